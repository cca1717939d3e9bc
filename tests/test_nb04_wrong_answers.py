"""Notebook 04's test cells must reject plausible wrong optimizers and schedules with a short message
that names the mistake (its stable id in ``course_lib.checks.optim``'s tables), and accept valid
alternatives (in-place updates, NumPy functions, other return types, another name for the optimizer's
state)."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.checks import optim as checks
from course_lib.checks.toolkit import UNIDENTIFIED
from notebook_cells import cell_source, rejected, run_test_cell

NB = "04_optimizers"


def rejects(grade_id: str, match: str, mistake: str | None = None, **objects) -> str:
    """The message test cell ``grade_id`` rejects ``objects`` with (see ``notebook_cells.rejected``)."""
    return rejected(NB, grade_id, match, mistake, **objects)


def solution(name: str, **extra):
    """The solution notebook's own ``name`` (a function or a class), defined next to ``extra``."""
    namespace = {"np": np, "torch": torch, "nn": nn, "math": math, **extra}
    exec(cell_source(NB, name), namespace)
    return namespace[name]


sgd_momentum_step = solution("sgd_momentum_step")
adam_step = solution("adam_step")
step_decay = solution("step_decay")
inverse_time_decay = solution("inverse_time_decay")
warmup_cosine = solution("warmup_cosine")


def momentum_sgd(step=sgd_momentum_step):
    """The solution's MomentumSGD, built on ``step``."""
    return solution("MomentumSGD", sgd_momentum_step=step)


def test_solutions_pass():
    for name, fn in [("sgd_momentum_step", sgd_momentum_step), ("adam_step", adam_step), ("step_decay", step_decay),
                     ("inverse_time_decay", inverse_time_decay), ("warmup_cosine", warmup_cosine),
                     ("MomentumSGD", momentum_sgd())]:
        run_test_cell(NB, f"test_{name}", **{name: fn})


def test_stubs_fail():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for name in ("sgd_momentum_step", "adam_step", "step_decay", "inverse_time_decay", "warmup_cosine"):
        rejects(f"test_{name}", "not implemented yet", "not_implemented", **{name: stub})

    class MomentumSGD(torch.optim.Optimizer):
        def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
            raise NotImplementedError()

    rejects("test_MomentumSGD", "not implemented yet", "not_implemented", MomentumSGD=MomentumSGD)


# ---------------------------------------------------------------- sgd_momentum_step

def sgd_uphill(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    w_new, v_new = sgd_momentum_step(w, dw, v, lr, momentum, nesterov, weight_decay)
    return 2 * w - w_new, v_new


def sgd_no_lr(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    return sgd_momentum_step(w, dw, v, 1.0, momentum, nesterov, weight_decay)


def sgd_dampened(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    g = dw + weight_decay * w
    v_new = momentum * v + (1 - momentum) * g
    return w - lr * (g + momentum * v_new if nesterov else v_new), v_new


def sgd_cs231n(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    v_new = momentum * v - lr * (dw + weight_decay * w)
    return w + v_new, v_new


def sgd_no_nesterov(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    return sgd_momentum_step(w, dw, v, lr, momentum, False, weight_decay)


def sgd_always_nesterov(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    return sgd_momentum_step(w, dw, v, lr, momentum, True, weight_decay)


def sgd_no_weight_decay(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    return sgd_momentum_step(w, dw, v, lr, momentum, nesterov, 0.0)


def sgd_decay_after_step(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    w_new, v_new = sgd_momentum_step(w, dw, v, lr, momentum, nesterov, 0.0)
    return w_new - lr * weight_decay * w, v_new


def sgd_raw_gradient_step(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    g = dw + weight_decay * w
    return w - lr * g, momentum * v + g


def sgd_numpy_only(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    w = w.copy()                                     # tensors have clone(), not copy()
    return sgd_momentum_step(w, dw, v, lr, momentum, nesterov, weight_decay)


def sgd_tensor_branch_without_decay(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Right on NumPy arrays; its branch for tensors forgets weight decay."""
    if isinstance(w, torch.Tensor):
        weight_decay = 0.0
    return sgd_momentum_step(w, dw, v, lr, momentum, nesterov, weight_decay)


@pytest.mark.parametrize("wrong, match, mistake", [
    (sgd_uphill, r"one plain gradient step: w_new moves the weights up the gradient", "uphill"),
    (sgd_no_lr, r"learning rate scales the step", "lr_ignored"),
    (sgd_dampened, r"v_new after one step from v = 0 is \(1 − momentum\)·dw, a dampened average",
     "dampened_velocity"),
    (sgd_cs231n, r"learning rate is inside it \(the CS231n convention\)", "lr_in_velocity"),
    (sgd_no_nesterov, r"nesterov=True, weight_decay=0\) takes the same steps as plain momentum: the Nesterov "
                      r"look-ahead is missing", "nesterov_ignored"),
    (sgd_always_nesterov, r"nesterov=False, weight_decay=0\) takes Nesterov steps", "nesterov_when_off"),
    (sgd_no_weight_decay, r"weight_decay=0.1\) takes the steps it takes without weight decay", "weight_decay_ignored"),
    (sgd_decay_after_step, r"after the momentum step", "decay_after_step"),
    (sgd_raw_gradient_step, r"raw gradient", "raw_gradient_step"),
    (sgd_numpy_only, r"raised AttributeError: 'Tensor' object has no attribute 'copy' \(on torch tensors\)\. "
                     r"The same code must work on NumPy arrays and on torch tensors", "one_kind_of_array"),
    (sgd_tensor_branch_without_decay, r"on torch tensors differs from torch.optim.SGD \(it is right on float64 NumPy",
     "one_kind_of_array"),
], ids=lambda value: getattr(value, "__name__", "")[4:] or None)
def test_sgd_momentum_step_rejects(wrong, match, mistake):
    rejects("test_sgd_momentum_step", match, f"optim.sgd_momentum_step.{mistake}", sgd_momentum_step=wrong)


def sgd_in_place_torch(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Valid: torch's in-place style, on copies, for tensors and arrays alike."""
    w, dw, v = (torch.as_tensor(a).clone() for a in (w, dw, v))
    g = dw.add(w, alpha=weight_decay)
    v.mul_(momentum).add_(g)
    step = g.add(v, alpha=momentum) if nesterov else v
    return w.add_(step, alpha=-lr), v


def sgd_like_old_torch(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Valid: an old copy of torch's own SGD, which updates the caller's arrays in place (torch.as_tensor shares
    a NumPy array's memory) and returns them."""
    p, d_p, buf = torch.as_tensor(w), torch.as_tensor(dw), torch.as_tensor(v)
    if weight_decay != 0:
        d_p = d_p.add(p, alpha=weight_decay)
    if momentum != 0:
        buf.mul_(momentum).add_(d_p)
        d_p = d_p.add(buf, alpha=momentum) if nesterov else buf
    p.add_(d_p, alpha=-lr)
    return p, buf


def sgd_in_place_operators(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Valid: in-place operators on the arrays it is given (NumPy arrays or tensors), which it returns."""
    g = dw + weight_decay * w
    v *= momentum
    v += g
    w -= lr * (g + momentum * v if nesterov else v)
    return w, v


def sgd_returns_list(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    """Valid: a list instead of a tuple, and NumPy's own functions."""
    g = np.add(dw, weight_decay * w) if isinstance(w, np.ndarray) else dw + weight_decay * w
    v_new = momentum * v + g
    return [w - lr * (g + momentum * v_new if nesterov else v_new), v_new]


def sgd_flattens(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    w_new, v_new = sgd_momentum_step(w, dw, v, lr, momentum, nesterov, weight_decay)
    return w_new.reshape(-1), v_new.reshape(-1)


def test_sgd_momentum_step_hidden_tests_reject_a_flattened_result():
    """Right on the public check's vectors; the hidden tests' (3, 4) weights come back flat."""
    rejects("test_sgd_momentum_step", r"w_new has shape \(12,\), w has \(3, 4\)", sgd_momentum_step=sgd_flattens)


@pytest.mark.parametrize("valid", [sgd_in_place_torch, sgd_returns_list])
def test_sgd_momentum_step_accepts(valid):
    run_test_cell(NB, "test_sgd_momentum_step", sgd_momentum_step=valid)


@pytest.mark.parametrize("in_place", [sgd_like_old_torch, sgd_in_place_operators])
def test_sgd_momentum_step_public_check_accepts_updates_in_place(in_place):
    checks.check_sgd_momentum_step(in_place)


@pytest.mark.parametrize("in_place", [sgd_like_old_torch, sgd_in_place_operators])
def test_sgd_momentum_step_accepts_updates_in_place(in_place):
    run_test_cell(NB, "test_sgd_momentum_step", sgd_momentum_step=in_place)


# ---------------------------------------------------------------- adam_step

def adam_variant(bias_correction=True, t_shift=0, eps_at="outside", fixed_eps=None, m_weight=None, v_weight=None,
                 v_of_abs=False, decoupled_as_l2=False, decay_without_lr=False, ignore_weight_decay=False):
    """adam_step, correct with the defaults; each argument plants one mistake."""

    def adam(w, dw, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        beta1, beta2 = betas
        eps = eps if fixed_eps is None else fixed_eps
        weight_decay = 0.0 if ignore_weight_decay else weight_decay
        decoupled = decoupled and not decoupled_as_l2
        if decoupled:
            w = w * (1 - (1 if decay_without_lr else lr) * weight_decay)
        else:
            dw = dw + weight_decay * w
        m_new = beta1 * m + (1 - beta1 if m_weight is None else m_weight) * dw
        v_new = beta2 * v + (1 - beta2 if v_weight is None else v_weight) * (abs(dw) if v_of_abs else dw * dw)
        t = t + t_shift
        m_hat = m_new / (1 - beta1 ** t) if bias_correction else m_new
        v_hat = v_new / (1 - beta2 ** t) if bias_correction else v_new
        denominator = {"outside": v_hat ** 0.5 + eps,
                       "inside": (v_hat + eps) ** 0.5,
                       "before": ((v_new + eps) / (1 - beta2 ** t)) ** 0.5,
                       "uncorrected": (v_new ** 0.5 + eps) / (1 - beta2 ** t) ** 0.5}[eps_at]
        return w - lr * m_hat / denominator, m_new, v_new

    return adam


def adam_numpy_only(w, dw, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    w = w.copy()                                     # tensors have clone(), not copy()
    return adam_step(w, dw, m, v, t, lr, betas, eps, weight_decay, decoupled)


@pytest.mark.parametrize("options, match, mistake", [
    ({"bias_correction": False}, r"without bias correction", "no_bias_correction"),
    ({"t_shift": 1}, r"next step's t in its bias correction \(as if t counted from 0\)", "bias_correction_next_t"),
    ({"t_shift": -1}, r"NaN or inf.*t counts from 1", "t_from_zero"),
    ({"eps_at": "inside"}, r"differs from torch's steps by about ε: ε belongs outside the square root",
     "eps_misplaced"),
    ({"eps_at": "before"}, r"differs from torch's steps by about ε: ε belongs outside", "eps_misplaced"),
    ({"eps_at": "uncorrected"}, r"differs from torch's steps by about ε: ε belongs outside", "eps_misplaced"),
    ({"fixed_eps": 1e-8}, r"eps=1e-06, .*takes the steps of another ε: use the eps argument", "eps_fixed"),
    ({"fixed_eps": 1e-7}, r"eps=1e-08, .*takes the steps of another ε: use the eps argument", "eps_fixed"),
    ({"m_weight": 1.0}, r"m_new equals the whole gradient", "m_whole_gradient"),
    ({"v_weight": 1.0}, r"v_new equals the squared gradient", "v_whole_square"),
    ({"v_of_abs": True}, r"averages \|dw\|", "v_of_abs"),
    ({"ignore_weight_decay": True}, r"weight_decay=0.1, decoupled=False\) takes the steps of Adam without weight "
                                    r"decay", "weight_decay_ignored"),
    ({"decoupled_as_l2": True}, r"decoupled=True\) gives Adam's steps", "decoupled_as_l2"),
    ({"decay_without_lr": True}, r"factor \(1 − λ\)", "decay_without_lr"),
], ids=lambda value: "_".join(str(v) for v in next(iter(value.items()))) if isinstance(value, dict) else None)
def test_adam_step_rejects(options, match, mistake):
    rejects("test_adam_step", match, f"optim.adam_step.{mistake}", adam_step=adam_variant(**options))


def test_adam_step_rejects_l2_when_decoupled_is_false():
    def adam(w, dw, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        return adam_step(w, dw, m, v, t, lr, betas, eps, weight_decay, True)

    rejects("test_adam_step", r"decoupled=False\) gives AdamW's steps", "optim.adam_step.l2_as_decoupled",
            adam_step=adam)


def test_adam_step_rejects_numpy_only_code():
    rejects("test_adam_step", r"raised AttributeError.*\(on torch tensors\)\. The same code must work",
            "optim.adam_step.one_kind_of_array", adam_step=adam_numpy_only)


def adam_numpy_functions(w, dw, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """Valid: np.sqrt and np.square (which also take torch tensors), a list as the result."""
    beta1, beta2 = betas
    g = dw if decoupled else dw + weight_decay * w
    w = w - lr * weight_decay * w if decoupled else w
    m_new = beta1 * m + (1 - beta1) * g
    v_new = beta2 * v + (1 - beta2) * np.square(g)
    step_size = lr / (1 - beta1 ** t)
    denominator = np.sqrt(v_new) / math.sqrt(1 - beta2 ** t) + eps
    return [w - step_size * m_new / denominator, m_new, v_new]


def adam_in_place(w, dw, m, v, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
    """Valid: in-place operators on w, m and v (NumPy arrays or tensors), which it returns."""
    beta1, beta2 = betas
    if decoupled:
        w *= 1 - lr * weight_decay
    else:
        dw = dw + weight_decay * w
    m *= beta1
    m += (1 - beta1) * dw
    v *= beta2
    v += (1 - beta2) * dw * dw
    w -= lr * (m / (1 - beta1 ** t)) / ((v / (1 - beta2 ** t)) ** 0.5 + eps)
    return w, m, v


def test_adam_step_accepts_numpy_functions():
    run_test_cell(NB, "test_adam_step", adam_step=adam_numpy_functions)


def test_adam_step_public_check_accepts_updates_in_place():
    checks.check_adam_step(adam_in_place)


def test_adam_step_accepts_updates_in_place():
    run_test_cell(NB, "test_adam_step", adam_step=adam_in_place)


# ---------------------------------------------------------------- schedules

@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda step, lr0, size, gamma: lr0 * gamma ** ((step + 1) // size), r"one step ahead", "one_step_ahead"),
    (lambda step, lr0, size, gamma: lr0 * gamma ** (max(step - 1, 0) // size), r"one step behind", "one_step_behind"),
    (lambda step, lr0, size, gamma: lr0 * gamma ** (step / size), r"decays smoothly", "smooth"),
    (lambda step, lr0, size, gamma: lr0 * gamma ** step, r"multiplies by gamma at every step", "every_step"),
], ids=["off_by_one", "behind", "smooth", "every_step"])
def test_step_decay_rejects(wrong, match, mistake):
    rejects("test_step_decay", match, f"optim.step_decay.{mistake}", step_decay=wrong)


@pytest.mark.parametrize("wrong, message", [
    (lambda step, lr0, size, gamma: lr0 * gamma ** max(step // size - 1, 0),
     "step_decay(lr0=0.1, step_size=5, gamma=0.5) at step 5 is 0.1; torch's StepLR gives 0.05."),
    (lambda step, lr0, size, gamma: lr0 * gamma ** round(step / size),
     "step_decay(lr0=0.1, step_size=5, gamma=0.5) at step 3 is 0.05; torch's StepLR gives 0.1."),
    (lambda step, lr0, size, gamma: lr0 * gamma ** math.ceil(step / size),
     "step_decay(lr0=0.1, step_size=5, gamma=0.5) at step 1 is 0.05; torch's StepLR gives 0.1."),
], ids=["late", "rounded", "ceil"])
def test_step_decay_names_the_setting_and_step_where_it_differs(wrong, message):
    assert rejects("test_step_decay", re.escape(message), UNIDENTIFIED, step_decay=wrong) == message


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda step, lr0, rate, steps: lr0 / (1 + rate * (step // steps)), r"staircase", "staircase"),
    (lambda step, lr0, rate, steps: lr0 * rate ** (step / steps), r"exponential decay", "exponential"),
    (lambda step, lr0, rate, steps: lr0 / (1 + rate * (step + 1) / steps), r"one step ahead.*step 0 should start "
                                                                           r"at lr0", "one_step_ahead"),
    (lambda step, lr0, rate, steps: lr0 / (1 + rate * step / steps) ** 2, r"its denominator is squared",
     "squared_denominator"),
    (lambda step, lr0, rate, steps: lr0 / (1 + step / steps), r"as if decay_rate were 1", "decay_rate_ignored"),
    (lambda step, lr0, rate, steps: 1 / (1 + rate * step / steps), r"decay_steps=100\) never uses lr0",
     "lr0_ignored"),
], ids=["staircase", "exponential", "off_by_one", "squared", "no_decay_rate", "no_lr0"])
def test_inverse_time_decay_rejects(wrong, match, mistake):
    rejects("test_inverse_time_decay", match, f"optim.inverse_time_decay.{mistake}", inverse_time_decay=wrong)


def cosine_variant(warmup_shift=0, span_all=False, ignore_min=False, clamp=True):
    def schedule(step, lr0, warmup_steps, total_steps, lr_min=0.0):
        if step < warmup_steps:
            return lr0 * (step + warmup_shift) / warmup_steps
        low = 0.0 if ignore_min else lr_min
        start, length = (0, total_steps) if span_all else (warmup_steps, total_steps - warmup_steps)
        progress = (step - start) / length
        progress = min(progress, 1.0) if clamp else progress
        return low + (lr0 - low) * (1 + math.cos(math.pi * progress)) / 2

    return schedule


@pytest.mark.parametrize("options, match, mistake", [
    ({"warmup_shift": 1}, r"one step ahead", "warmup_ahead"),
    ({"span_all": True}, r"spans all total_steps", "cosine_from_step_0"),
    ({"ignore_min": True}, r"lr_min=1e-05\) ends at 0 instead of lr_min", "lr_min_ignored"),
    ({"clamp": False}, r"after total_steps the rate should stay at lr_min", "not_clamped"),
], ids=["warmup_off_by_one", "cosine_from_step_0", "lr_min_ignored", "no_clamp"])
def test_warmup_cosine_rejects(options, match, mistake):
    rejects("test_warmup_cosine", match, f"optim.warmup_cosine.{mistake}", warmup_cosine=cosine_variant(**options))


def test_warmup_cosine_names_the_step_where_it_differs():
    def quadratic_warmup(step, lr0, warmup_steps, total_steps, lr_min=0.0):
        return lr0 * (step / warmup_steps) ** 2 if step < warmup_steps else warmup_cosine(step, lr0, warmup_steps,
                                                                                          total_steps, lr_min)

    rejects("test_warmup_cosine", r"^warmup_cosine\(lr0=0\.4, warmup_steps=10, total_steps=50, lr_min=0\) at step 1 "
                                  r"is 0\.004; the linear warm-up, then torch's CosineAnnealingLR, gives 0\.04\.$",
            UNIDENTIFIED, warmup_cosine=quadratic_warmup)


def test_schedules_accept_other_number_types():
    run_test_cell(NB, "test_step_decay", step_decay=lambda *a: np.float64(step_decay(*a)))
    run_test_cell(NB, "test_inverse_time_decay", inverse_time_decay=lambda *a: torch.tensor(inverse_time_decay(*a),
                                                                                             dtype=torch.float64))

    def numpy_cosine(step, lr0, warmup_steps, total_steps, lr_min=0.0):
        """Valid: branch-free NumPy."""
        progress = np.clip((step - warmup_steps) / max(total_steps - warmup_steps, 1), 0.0, 1.0)
        cosine = lr_min + (lr0 - lr_min) * (1 + np.cos(np.pi * progress)) / 2
        return np.where(step < warmup_steps, lr0 * step / max(warmup_steps, 1), cosine)

    run_test_cell(NB, "test_warmup_cosine", warmup_cosine=numpy_cosine)


def test_schedules_reject_what_is_not_a_number():
    rejects("test_step_decay", r"step_decay returned '0\.1'; expected one number", "wrong_type",
            step_decay=lambda *a: "0.1")


# ---------------------------------------------------------------- MomentumSGD

class _Base(torch.optim.Optimizer):
    """A correct optimizer whose pieces the wrong ones below override."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))

    def settings(self, group):
        return group["lr"], group["momentum"], group["nesterov"], group["weight_decay"]

    def velocity(self, p):
        return self.state[p].setdefault("velocity", torch.zeros_like(p))

    def update(self, p, w_new):
        p.copy_(w_new)

    def parameters_of(self, group):
        return [p for p in group["params"] if p.grad is not None]

    def gradient(self, p):
        return p.grad

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in self.parameters_of(group):
                w_new, self.state[p]["velocity"] = sgd_momentum_step(p, self.gradient(p), self.velocity(p),
                                                                     *self.settings(group))
                self.update(p, w_new)
        return loss


class NoSkip(_Base):
    def parameters_of(self, group):
        return group["params"]


class ZeroGradientWhenNone(NoSkip):
    """Steps a frozen parameter as if its gradient were zero: weight decay still moves it."""

    def gradient(self, p):
        return torch.zeros_like(p) if p.grad is None else p.grad


class SettingsOnSelf(_Base):
    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        torch.optim.Optimizer.__init__(self, params, {})
        self.fixed = (lr, momentum, nesterov, weight_decay)

    def settings(self, group):
        return self.fixed


class LrFromInit(_Base):
    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, lr, momentum, nesterov, weight_decay)
        self.fixed = (lr, momentum, nesterov, weight_decay)

    def settings(self, group):
        return self.fixed


class FreshVelocity(_Base):
    def velocity(self, p):
        return torch.zeros_like(p)


class Rebinds(_Base):
    def update(self, p, w_new):
        p = w_new  # noqa: F841 (the mistake: a local name, the model is untouched)


class WithGrad(_Base):
    def step(self, closure=None):
        for group in self.param_groups:
            for p in self.parameters_of(group):
                w_new, self.state[p]["velocity"] = sgd_momentum_step(p, p.grad, self.velocity(p), *self.settings(group))
                p.copy_(w_new)


class VelocityAsAttribute(_Base):
    """Velocities in a dict of its own: trains right, but state_dict() saves none of them."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.velocities = {}

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in self.parameters_of(group):
                v = self.velocities.get(p, torch.zeros_like(p))
                w_new, self.velocities[p] = sgd_momentum_step(p, p.grad, v, *self.settings(group))
                p.copy_(w_new)


class IgnoresClosure(_Base):
    @torch.no_grad()
    def step(self, closure=None):
        super().step()


class MomentumFromDefaults(_Base):
    """Reads lr from each group, the other settings from the defaults: right while groups differ in lr only."""

    def settings(self, group):
        return group["lr"], self.defaults["momentum"], self.defaults["nesterov"], self.defaults["weight_decay"]


class NotAnOptimizer:
    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.params = list(params)


@pytest.mark.parametrize("wrong, match, mistake", [
    (NoSkip, r"raised TypeError: .*NoneType.*\.grad is None.*skip such parameters", "frozen_parameter_not_skipped"),
    (ZeroGradientWhenNone, r"changed a parameter whose \.grad is None", "frozen_parameter_not_skipped"),
    (SettingsOnSelf, r"each parameter group must hold lr, momentum, nesterov and weight_decay",
     "settings_not_in_groups"),
    (LrFromInit, r"a learning rate changed by a scheduler between steps is not used", "settings_not_from_groups"),
    (FreshVelocity, r"the velocity is not kept from one step to the next", "velocity_not_kept"),
    (Rebinds, r"did not change any parameter", "parameters_not_updated"),
    (WithGrad, r"The update is recorded by autograd", "update_recorded_by_autograd"),
    (VelocityAsAttribute, r"the velocities are not in the optimizer's state as tensors", "velocity_outside_state"),
    (IgnoresClosure, r"step\(closure\) returned None", "closure_ignored"),
    (NotAnOptimizer, r"subclasses torch.optim.Optimizer", "not_an_optimizer"),
], ids=lambda value: getattr(value, "__name__", None))
def test_momentum_sgd_rejects(wrong, match, mistake):
    rejects("test_MomentumSGD", match, f"optim.momentum_sgd.{mistake}", MomentumSGD=wrong)


def test_momentum_sgd_rejects_a_wrong_step_function():
    rejects("test_MomentumSGD", r"after one step the parameters differ from torch.optim.SGD's with lr=0.1, "
                                r"momentum=0.9, nesterov=True, weight_decay=0.01", UNIDENTIFIED,
            MomentumSGD=momentum_sgd(sgd_no_nesterov))


def test_momentum_sgd_hidden_tests_reject_settings_from_the_defaults():
    rejects("test_MomentumSGD", r"groups with their own settings", MomentumSGD=MomentumFromDefaults)


def test_momentum_sgd_accepts_another_state_name_and_p_data():
    class Valid(_Base):
        def velocity(self, p):
            return self.state[p].setdefault("momentum_buffer", torch.zeros_like(p))

        @torch.no_grad()
        def step(self, closure=None):
            loss = None
            if closure is not None:
                with torch.enable_grad():
                    loss = closure()
            for group in self.param_groups:
                for p in self.parameters_of(group):
                    w_new, self.state[p]["momentum_buffer"] = sgd_momentum_step(p, p.grad, self.velocity(p),
                                                                                *self.settings(group))
                    p.data = torch.as_tensor(w_new, dtype=p.dtype)
            return loss

    run_test_cell(NB, "test_MomentumSGD", MomentumSGD=Valid)


# ---------------------------------------------------------------- trained networks, scored by the grader

def zeroed_cnn():
    """A SimpleCNN of zeros: every image gets class 0 (a tenth of a stratified sample)."""
    from course_lib.models import SimpleCNN

    model = SimpleCNN()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    return model


def cnn_trained_by(optimizer_class):
    """A SimpleCNN trained as section 7 trains it, by ``optimizer_class``."""
    from course_lib import fast_or_full, seed_everything
    from course_lib.data import cifar10_splits
    from course_lib.models import SimpleCNN
    from course_lib.trainer import DeviceLoader, fit

    splits = cifar10_splits("official")
    pixels = splits.train.sample(fast_or_full(192, 2_000)).x.reshape(-1, 3) / 255
    data = splits.train.sample(fast_or_full(768, 4_000))
    seed_everything(0)
    model = SimpleCNN()
    fit(model, DeviceLoader(data.x, data.y, fast_or_full(64, 128), shuffle=True, crop_padding=2, flip=True,
                            mean=pixels.mean(axis=0), std=pixels.std(axis=0), drop_last=True, seed=0), None, 2,
        optimizer_class(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4),
        channels_last=True, progress=False)
    return model


@pytest.mark.parametrize("model, match", [
    (zeroed_cnn, r"validation accuracy 9\.\d% is too close to chance"),
    (lambda: cnn_trained_by(FreshVelocity), r"your MomentumSGD's network reaches [\d.]+% validation accuracy where "
                                            r"torch.optim.SGD's reaches"),
], ids=["untrained", "no_momentum"])
def test_momentum_sgd_training_scores_the_network_not_the_numbers(model, match):
    rejects("test_MomentumSGD_training", match, my_model=model(), momentum_sgd_val_accuracy=0.4,
            torch_sgd_val_accuracy=0.4)


@pytest.mark.parametrize("final_recipe, match", [
    ("Adam", r"final_recipe is 'Adam': it must be the name of one of the recipes raced in section 9: SGD 0\.1 constant, "),
    (3, r"final_recipe is 3: it must be the name of one of the recipes"),
    (["Nesterov, one-cycle"], r"final_recipe is \['Nesterov, one-cycle'\]: it must be the name of one of the recipes"),
], ids=["unknown_name", "a_number", "a_list"])
def test_final_training_names_a_wrong_final_recipe(final_recipe, match):
    """The locked cell that trains the student's pick says what is wrong before it trains anything."""
    recipes = {"SGD 0.1 constant": None, "Nesterov, one-cycle": None}
    with pytest.raises(ValueError, match=match):
        exec(cell_source(NB, "final"), {"final_recipe": final_recipe, "recipes": recipes})


def test_accuracy_scores_the_network_not_the_number():
    rejects("test_accuracy", r"test accuracy 10\.0% is below 17%", final_model=zeroed_cnn(), test_accuracy=0.9)


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_my_recipe_tiers_score_the_network_not_the_number(tier):
    rejects(f"test_my_recipe_tier_{tier}", rf"my_model's validation accuracy \d+\.\d% is below tier {tier}",
            my_model=zeroed_cnn(), my_val_accuracy=0.99, TIERS=(0.0, 0.0, 0.0))


def test_my_recipe_tiers_pass_a_network_that_reaches_them():
    """The tier is the network's: a model with the solution's validation predictions passes every tier."""
    from course_lib import fast_or_full
    from course_lib.data import cifar10_splits

    labels = torch.as_tensor(cifar10_splits("official").val.sample(fast_or_full(192, 2_000)).y)

    class Oracle(nn.Module):
        """Answers the validation images' labels in order, as a network that learnt them would."""

        def __init__(self):
            super().__init__()
            self.seen = 0
            self.weight = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            classes = labels[self.seen:self.seen + len(x)]
            self.seen = (self.seen + len(x)) % len(labels)
            return nn.functional.one_hot(classes, 10).float() + 0 * self.weight

    for tier in (1, 2, 3):
        run_test_cell(NB, f"test_my_recipe_tier_{tier}", my_model=Oracle(), my_val_accuracy=0.99, TIERS=(0.0, 0.0, 0.0))


# ---------------------------------------------------------------- torch.optim is what is rebuilt, not a tool

class InheritedStep(torch.optim.SGD):
    """torch's SGD under another name: its step is torch's."""


class BorrowedStep(torch.optim.Optimizer):
    """Right numbers, from torch's own SGD."""

    def __init__(self, params, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(params, dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay))
        self.inner = torch.optim.SGD(self.param_groups[0]["params"], lr=lr, momentum=momentum, nesterov=nesterov,
                                     weight_decay=weight_decay)

    def step(self, closure=None):
        return self.inner.step(closure)


def sgd_step_through_torch(w, dw, v, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    w_t = torch.nn.Parameter(torch.as_tensor(w).clone())
    optimizer = torch.optim.SGD([w_t], lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    if v is not None and momentum:
        optimizer.state[w_t]["momentum_buffer"] = torch.as_tensor(v).clone()
    w_t.grad = torch.as_tensor(dw).clone()
    optimizer.step()
    return w_t.detach().numpy(), optimizer.state[w_t].get("momentum_buffer", torch.zeros_like(w_t)).numpy()


@pytest.mark.parametrize("cell, name, wrong, called, mistake", [
    ("test_MomentumSGD", "MomentumSGD", InheritedStep, "MomentumSGD called torch.optim.SGD",
     "optim.momentum_sgd.borrows_torch_optim"),
    ("test_MomentumSGD", "MomentumSGD", BorrowedStep, "MomentumSGD called torch.optim.SGD: this exercise rebuilds",
     "optim.momentum_sgd.borrows_torch_optim"),
    ("test_sgd_momentum_step", "sgd_momentum_step", sgd_step_through_torch, "called torch.optim.SGD",
     "optim.sgd_momentum_step.borrows_torch_optim"),
])
def test_torch_optim_is_not_borrowed(cell, name, wrong, called, mistake):
    rejects(cell, called, mistake, **{name: wrong})
