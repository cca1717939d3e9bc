"""Checks for notebook 04 (optimizers and learning-rate schedules).

The references are PyTorch's own optimizers and schedulers (``torch.optim.SGD``, ``Adam``,
``AdamW``, ``StepLR``, ``CosineAnnealingLR``), run here on the same gradients, and a few values
computed by hand. When a student's result differs, it is compared with what torch returns under
the settings a usual mistake amounts to (Nesterov off, dampening on, the step counter one
ahead, bias correction gone, weight decay coupled instead of decoupled, ...) to name the mistake.

Every function may receive and return NumPy arrays or torch tensors; results are compared as
float64 NumPy arrays. The student's optimizer class trains networks built where it lives, in the
notebook's kernel under the grader (:func:`course_grading.verdict.in_kernel`); torch's
reference is built here.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from course_lib.checks import expect, expect_tuple, passed, rel_error
from course_lib.checks.remote import forbid, in_kernel

__all__ = [
    "as_numpy", "check_sgd_momentum_step", "check_adam_step", "check_step_decay", "check_inverse_time_decay",
    "check_warmup_cosine", "check_momentum_sgd",
]

_STUB = "is not implemented yet: replace `raise NotImplementedError()` with your code."


def as_numpy(value) -> np.ndarray:
    """A NumPy array, torch tensor or number as a float64 NumPy array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double().numpy()
    return np.asarray(value, dtype=np.float64)


def _call(fn, name: str, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise AssertionError(f"{name} {_STUB}") from None
    except Exception as err:
        kinds = {type(a).__module__.split(".")[0] for a in args if hasattr(a, "shape")}
        what = (f" on {' and '.join(sorted(kinds))} arrays" if kinds else "") + f": {err}"
        hint = ("; the same code must work on NumPy arrays and on torch tensors (use arithmetic operators, which "
                "both have)." if kinds else ".")
        raise AssertionError(f"{name} raised {type(err).__name__}{what}{hint}") from err


def _unpack(result, name: str, names: tuple) -> list[np.ndarray]:
    expect_tuple(result, names, name)
    return [as_numpy(r) for r in result]


def _close(a, b, tol: float) -> bool:
    a, b = as_numpy(a), as_numpy(b)
    return a.shape == b.shape and bool(np.all(np.isfinite(a))) and rel_error(a, b) <= tol


def _arrays(seed: int, shape=(6,), steps: int = 1, scale: float = 1.0):
    """(w0, [dw_1, ..., dw_steps]) float64, drawn from their own generator."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), [scale * rng.standard_normal(shape) for _ in range(steps)]


# ---------------------------------------------------------------- SGD with momentum

def _torch_sgd(w0, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0, dampening=0.0):
    """torch.optim.SGD's weights after each of ``grads``: list of (w, velocity or None)."""
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                          dampening=dampening)
    out = []
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        buf = opt.state[p].get("momentum_buffer")
        out.append((p.detach().numpy().copy(), None if buf is None else buf.numpy().copy()))
    return out


def _decay_after_step(w0, grads, lr, momentum, nesterov, weight_decay):
    """The weights when weight decay shrinks w after the momentum step instead of joining the gradient."""
    out = []
    plain = nn.Parameter(torch.tensor(w0))
    opt = torch.optim.SGD([plain], lr=lr, momentum=momentum, nesterov=nesterov)
    for g in grads:
        before = plain.detach().clone()
        plain.grad = torch.tensor(g)
        opt.step()
        with torch.no_grad():
            plain -= lr * weight_decay * before
        out.append(plain.detach().numpy().copy())
    return out


def _run_sgd(fn, w0, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0, to=np.asarray):
    """The student's (w, v) after each gradient, starting from v = 0."""
    w, v, out = to(np.array(w0)), to(np.zeros_like(w0)), []
    for g in grads:
        result = _call(fn, "sgd_momentum_step", w, to(np.array(g)), v, lr, momentum=momentum, nesterov=nesterov,
                       weight_decay=weight_decay)
        w, v = _unpack(result, "sgd_momentum_step", ("w_new", "v_new"))
        out.append((w, v))
        w, v = to(w), to(v)
    return out


def _first_difference(mine, reference, tol: float) -> int | None:
    """Index of the first step whose weights differ, or None."""
    for k, ((w, _), ref) in enumerate(zip(mine, reference)):
        if not _close(w, ref[0] if isinstance(ref, tuple) else ref, tol):
            return k
    return None


def _own_update(fn) -> None:
    """The update must be written here, not borrowed from ``torch.optim`` (read from the source)."""
    used = forbid(fn, ("torch.optim",), allowed=("torch.optim.Optimizer",))
    expect(used is None, f"{getattr(fn, '__name__', 'your code')} {used}: this exercise rebuilds torch.optim's update, so write the update "
                         "yourself (torch.optim is what your result is compared with).")


def check_sgd_momentum_step(sgd_momentum_step) -> None:
    """``sgd_momentum_step(w, dw, v, lr, momentum, nesterov, weight_decay)`` against torch.optim.SGD."""
    name, tol = "sgd_momentum_step", 1e-9
    _own_update(sgd_momentum_step)
    w0, (g,) = _arrays(0)
    (w1, v1), = _run_sgd(sgd_momentum_step, w0, [g], 0.1)
    expect(w1.shape == w0.shape, f"{name} returned w_new of shape {w1.shape} for w of shape {w0.shape}.")
    if not _close(w1, w0 - 0.1 * g, tol):
        if _close(w1, w0 + 0.1 * g, tol):
            raise AssertionError(f"{name} with momentum=0 moved the weights *up* the gradient: a descent step "
                                 "goes against the gradient.")
        if _close(w1, w0 - g, tol):
            raise AssertionError(f"{name} with momentum=0 and lr=0.1 took a step of the whole gradient: the "
                                 "learning rate scales the step.")
        raise AssertionError(f"{name} with momentum=0 (plain SGD, one step) gives the wrong w_new: with no momentum "
                             "and no weight decay it is one plain gradient step.")

    lr, mu = 0.05, 0.9
    w0, grads = _arrays(1, steps=12)
    mine = _run_sgd(sgd_momentum_step, w0, grads, lr, momentum=mu)
    reference = _torch_sgd(w0, grads, lr, momentum=mu)
    v_first, g_first = mine[0][1], grads[0]
    if not _close(v_first, reference[0][1], tol):
        if _close(v_first, (1 - mu) * g_first, tol):
            raise AssertionError(f"{name}: after one step from v = 0 your velocity is (1 − momentum)·dw, a "
                                 "dampened average. PyTorch's velocity adds the whole gradient (dampening 0): "
                                 "see the velocity update in section 2.")
        for factor, sign in ((-lr, "−lr"), (lr, "lr")):
            if _close(v_first, factor * g_first, tol):
                raise AssertionError(f"{name}: your velocity holds {sign}·dw after one step, so the learning rate "
                                     "is inside it (the CS231n convention). In PyTorch's formulation the velocity "
                                     "accumulates gradients only and the learning rate multiplies it in the "
                                     "weight update; the two differ as soon as a schedule changes lr.")
        raise AssertionError(f"{name}: after one step from v = 0 the velocity v_new differs from torch.optim.SGD's "
                             "momentum buffer (momentum=0.9): compare with the velocity update in section 2.")
    k = _first_difference(mine, reference, 1e-8)
    if k is not None:
        if _first_difference(mine, _torch_sgd(w0, grads, lr, momentum=mu, nesterov=True), 1e-8) is None:
            raise AssertionError(f"{name} with nesterov=False takes Nesterov steps: use the look-ahead only "
                                 "when nesterov=True.")
        if all(_close(w, w_prev - lr * dw, 1e-8) for (w, _), w_prev, dw in
               zip(mine, [w0] + [m[0] for m in mine[:-1]], grads)):
            raise AssertionError(f"{name}: the weights move by −lr·dw, the raw gradient, although momentum=0.9: "
                                 "the weight update should use the velocity.")
        raise AssertionError(f"{name} with momentum=0.9 agrees with torch.optim.SGD for {k} step(s), then differs "
                             f"at step {k + 1}: is the velocity passed back in each step, and used in the update?")

    mine = _run_sgd(sgd_momentum_step, w0, grads, lr, momentum=mu, nesterov=True)
    k = _first_difference(mine, _torch_sgd(w0, grads, lr, momentum=mu, nesterov=True), 1e-8)
    if k is not None:
        if _first_difference(mine, _torch_sgd(w0, grads, lr, momentum=mu), 1e-8) is None:
            raise AssertionError(f"{name} with nesterov=True takes the same steps as plain momentum: the Nesterov "
                                 "look-ahead is missing (section 2, the update direction when nesterov=True).")
        raise AssertionError(f"{name} with nesterov=True differs from torch.optim.SGD(nesterov=True) at step "
                             f"{k + 1}: the look-ahead direction combines the gradient with the *new* velocity "
                             "(section 2).")

    wd = 0.1
    w0, grads = _arrays(2, steps=12)
    mine = _run_sgd(sgd_momentum_step, w0, grads, lr, momentum=mu, weight_decay=wd)
    k = _first_difference(mine, _torch_sgd(w0, grads, lr, momentum=mu, weight_decay=wd), 1e-8)
    if k is not None:
        if _first_difference(mine, _torch_sgd(w0, grads, lr, momentum=mu), 1e-8) is None:
            raise AssertionError(f"{name} ignores weight_decay: with weight_decay=0.1 the steps equal those "
                                 "without it.")
        decayed_after = _decay_after_step(w0, grads, lr, mu, False, wd)
        if all(_close(w, d, 1e-8) for (w, _), d in zip(mine, decayed_after)):
            raise AssertionError(f"{name} applies weight decay after the momentum step (it shrinks w directly): "
                                 "in PyTorch's SGD, weight decay is an L2 term added to the gradient *before* "
                                 "the velocity update, so it enters the velocity too.")
        raise AssertionError(f"{name} with weight_decay=0.1 differs from torch.optim.SGD at step {k + 1}: weight "
                             "decay is an L2 term that joins the gradient before everything else (section 2).")

    w0, grads = _arrays(3, steps=5)
    config = dict(momentum=mu, nesterov=True, weight_decay=wd)
    reference = _torch_sgd(w0, grads, lr, **config)
    for label, to in (("float32 NumPy arrays", lambda a: np.asarray(a, dtype=np.float32)),
                      ("torch tensors", lambda a: torch.tensor(np.asarray(a)))):
        mine = _run_sgd(sgd_momentum_step, w0, grads, lr, to=to, **config)
        k = _first_difference(mine, reference, 1e-5)
        expect(k is None, f"{name} on {label} differs from torch.optim.SGD at step {(k or 0) + 1} (it is right on "
                          "float64 NumPy arrays): avoid code that only works for one kind of array.")
    passed(name, "plain SGD, momentum, Nesterov and weight decay equal torch.optim.SGD, on NumPy and torch")


# ---------------------------------------------------------------- Adam

def _torch_adam(w0, grads, lr, betas, eps, weight_decay=0.0, decoupled=False, first_t=1):
    """torch's Adam (or AdamW) after each of ``grads``: list of (w, m, v); the step counter starts at ``first_t``."""
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    out = []
    for i, g in enumerate(grads):
        p.grad = torch.tensor(g, dtype=torch.float64)
        if i == 0 and first_t != 1:
            opt.state[p].update(step=torch.tensor(float(first_t - 1)), exp_avg=torch.zeros_like(p),
                                exp_avg_sq=torch.zeros_like(p))
        opt.step()
        state = opt.state[p]
        out.append((p.detach().numpy().copy(), state["exp_avg"].numpy().copy(), state["exp_avg_sq"].numpy().copy()))
    return out


def _run_adam(fn, w0, grads, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
              to=np.asarray):
    """The student's (w, m, v) after each gradient, from m = v = 0 and t = 1, 2, ..."""
    w, m, v, out = to(np.array(w0)), to(np.zeros_like(w0)), to(np.zeros_like(w0)), []
    for t, g in enumerate(grads, start=1):
        result = _call(fn, "adam_step", w, to(np.array(g)), m, v, t, lr=lr, betas=betas, eps=eps,
                       weight_decay=weight_decay, decoupled=decoupled)
        w, m, v = _unpack(result, "adam_step", ("w_new", "m_new", "v_new"))
        out.append((w, m, v))
        w, m, v = to(w), to(m), to(v)
    return out


def _same_weights(mine, reference, tol: float = 1e-8) -> bool:
    return all(_close(a[0], b[0], tol) for a, b in zip(mine, reference))


def check_adam_step(adam_step) -> None:
    """``adam_step(w, dw, m, v, t, lr, betas, eps, weight_decay, decoupled)`` against torch's Adam and AdamW."""
    name, lr, betas, eps = "adam_step", 0.01, (0.9, 0.999), 1e-8
    _own_update(adam_step)
    w0, (g,) = _arrays(4)
    (w1, m1, v1), = _run_adam(adam_step, w0, [g], lr)
    (_, m_ref, v_ref), = _torch_adam(w0, [g], lr, betas, eps)
    expect(w1.shape == w0.shape, f"{name} returned w_new of shape {w1.shape} for w of shape {w0.shape}.")
    expect(np.all(np.isfinite(w1)), f"{name} at t=1 returned NaN or inf: t counts from 1, so the bias corrections "
                                    "1 − β^t are never zero. Did you count t from 0, or divide by zero elsewhere?")
    if not _close(m1, m_ref, 1e-9):
        hint = (" It equals the whole gradient: in a moving average the new gradient comes in with a weight, "
                "not whole." if _close(m1, g, 1e-9) else "")
        raise AssertionError(f"{name}: after one step from m = 0, m_new is not torch's first moment, the moving "
                             f"average of the gradients (β1 = 0.9).{hint} See section 3.")
    if not _close(v1, v_ref, 1e-9):
        hint = (" It averages |dw|, not the squared gradient." if _close(v1, (1 - betas[1]) * np.abs(g), 1e-9) else
                " It equals the squared gradient: in a moving average the new term comes in with a weight, not "
                "whole." if _close(v1, g ** 2, 1e-9)
                else "")
        raise AssertionError(f"{name}: after one step from v = 0, v_new is not torch's second moment, the moving "
                             f"average of the squared gradients (β2 = 0.999).{hint} See section 3.")
    w0, grads = _arrays(5, steps=15)
    mine = _run_adam(adam_step, w0, grads, lr)
    if not _same_weights(mine, _torch_adam(w0, grads, lr, betas, eps)):
        if _same_weights(mine, _torch_adam(w0, grads, lr, betas, eps, first_t=10**7)):
            raise AssertionError(f"{name}: your steps are those of Adam *without bias correction*. m and v start at "
                                 "0, so early on they underestimate the averages; the bias correction of section 3 "
                                 "fixes that. At t=1 the corrected step is about lr in size, yours about 3·lr.")
        if _same_weights(mine, _torch_adam(w0, grads, lr, betas, eps, first_t=2)):
            raise AssertionError(f"{name}: your bias correction uses the next step's t (as if t counted from 0): "
                                 "the first call has t=1, and the correction uses that t.")
        raise AssertionError(f"{name} differs from torch.optim.Adam over 15 steps from t=1 (lr=0.01): compare the "
                             "bias-corrected m̂ and v̂ and the update with section 3.")

    tiny_w0, tiny = _arrays(6, steps=5, scale=1e-7)
    if not _same_weights(_run_adam(adam_step, tiny_w0, tiny, lr), _torch_adam(tiny_w0, tiny, lr, betas, eps), 1e-6):
        raise AssertionError(f"{name} is right for ordinary gradients but not for tiny ones (|dw| ≈ 1e-7), where ε "
                             "matters: check where ε enters — outside the square root, and only in the "
                             "denominator (section 3).")

    wd = 0.1
    w0, grads = _arrays(7, steps=10)
    for decoupled, label in ((False, "Adam"), (True, "AdamW")):
        mine = _run_adam(adam_step, w0, grads, lr, weight_decay=wd, decoupled=decoupled)
        if _same_weights(mine, _torch_adam(w0, grads, lr, betas, eps, wd, decoupled)):
            continue
        if _same_weights(mine, _torch_adam(w0, grads, lr, betas, eps)):
            raise AssertionError(f"{name} ignores weight_decay when decoupled={decoupled}.")
        if _same_weights(mine, _torch_adam(w0, grads, lr, betas, eps, wd, not decoupled)):
            raise AssertionError(
                f"{name} with decoupled={decoupled} gives {'AdamW' if not decoupled else 'Adam'}'s steps: "
                + ("decoupled=True shrinks the weights directly (AdamW) instead of adding the L2 term to the "
                   "gradient." if decoupled else "decoupled=False puts the L2 term into the gradient, as "
                   "torch.optim.Adam does."))
        if decoupled and _same_weights(mine, _torch_adam(w0, grads, lr, betas, eps, wd / lr, True)):
            raise AssertionError(f"{name} with decoupled=True shrinks w by the factor (1 − λ) each step: AdamW's "
                                 "decay is scaled by the learning rate too (section 3).")
        raise AssertionError(f"{name} with weight_decay=0.1, decoupled={decoupled} differs from torch.optim.{label}.")

    w0, grads = _arrays(8, steps=5)
    reference = _torch_adam(w0, grads, lr, (0.5, 0.99), 1e-6, wd, True)
    for label, to in (("float32 NumPy arrays", lambda a: np.asarray(a, dtype=np.float32)),
                      ("torch tensors", lambda a: torch.tensor(np.asarray(a)))):
        mine = _run_adam(adam_step, w0, grads, lr, betas=(0.5, 0.99), eps=1e-6, weight_decay=wd, decoupled=True,
                         to=to)
        expect(_same_weights(mine, reference, 1e-5),
               f"{name} on {label} differs from torch.optim.AdamW (it is right on float64 NumPy arrays): avoid code "
               "that only works for one kind of array.")
    passed(name, "Adam and AdamW equal torch's, with bias correction and weight decay, on NumPy and torch")


# ---------------------------------------------------------------- schedules

def _lr(fn, name: str, step: int, *args, **kwargs) -> float:
    value = _call(fn, name, step, *args, **kwargs)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise AssertionError(f"{name}({step}, ...) returned {type(value).__name__} {value!r}: return one number, "
                             "the learning rate at that step.") from None


def _torch_lrs(make_scheduler, lr0: float, steps: int) -> list[float]:
    """The learning rate a scheduler gives at steps 0, 1, ..., steps - 1 (stepped once per step)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr0)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return lrs


def _compare_schedule(mine: list[float], expected: list[float], name: str, setting: str) -> None:
    """Names an off-by-one step before the general message."""
    if np.allclose(mine, expected, rtol=1e-9, atol=1e-15):
        return
    if np.allclose(mine[:-1], expected[1:], rtol=1e-9, atol=1e-15):
        raise AssertionError(f"{name}({setting}) is one step ahead: its value at step s is the reference's at step "
                             "s + 1. Steps count from 0, and step 0 has the starting learning rate.")
    if np.allclose(mine[1:], expected[:-1], rtol=1e-9, atol=1e-15):
        raise AssertionError(f"{name}({setting}) is one step behind: its value at step s is the reference's at step "
                             "s − 1. Steps count from 0.")
    first = int(np.flatnonzero(~np.isclose(mine, expected, rtol=1e-9, atol=1e-15))[0])
    raise AssertionError(f"{name}({setting}) is wrong from step {first} on: {mine[first]:.6g} where the reference "
                         "has a different value. Compare with the formula in section 5.")


def check_step_decay(step_decay) -> None:
    """``step_decay(step, lr0, step_size, gamma)`` against torch's StepLR, step for step."""
    name = "step_decay"
    for lr0, size, gamma, steps in ((0.1, 5, 0.5, 23), (0.3, 1, 0.9, 8), (1e-3, 7, 0.1, 30)):
        setting = f"lr0={lr0}, step_size={size}, gamma={gamma}"
        mine = [_lr(step_decay, name, s, lr0, size, gamma) for s in range(steps)]
        expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, size, gamma), lr0, steps)
        if size > 1 and np.allclose(mine, [lr0 * gamma ** (s / size) for s in range(steps)], rtol=1e-9):
            raise AssertionError(f"{name}({setting}) decays smoothly, a little every step. StepLR keeps the rate "
                                 "constant for step_size steps and then multiplies it by gamma: a staircase.")
        if size > 1 and np.allclose(mine, [lr0 * gamma ** s for s in range(steps)], rtol=1e-9):
            raise AssertionError(f"{name}({setting}) multiplies by gamma at every step: the decay should come "
                                 "once every step_size steps.")
        _compare_schedule(mine, expected, name, setting)
    passed(name, "equal to torch.optim.lr_scheduler.StepLR, step for step")


# Hand-computed: lr0 = 0.2, decay_rate = 0.5, decay_steps = 100.
_INVERSE_TIME_CASES = {0: 0.2, 1: 0.2 / 1.005, 50: 0.16, 100: 0.2 / 1.5, 150: 0.2 / 1.75, 300: 0.08,
                       1000: 0.2 / 6}


def check_inverse_time_decay(inverse_time_decay) -> None:
    """``inverse_time_decay(step, lr0, decay_rate, decay_steps)`` on values computed by hand."""
    name, setting = "inverse_time_decay", "lr0=0.2, decay_rate=0.5, decay_steps=100"
    mine = {s: _lr(inverse_time_decay, name, s, 0.2, 0.5, 100) for s in _INVERSE_TIME_CASES}
    if all(math.isclose(mine[s], v, rel_tol=1e-9) for s, v in _INVERSE_TIME_CASES.items()):
        passed(name, "values at 7 steps equal the formula's")
        return
    expect(math.isclose(mine[0], 0.2, rel_tol=1e-9),
           f"{name}({setting}) at step 0 is {mine[0]:.6g}; it should start at lr0. Is the step off by one?")
    if math.isclose(mine[100], 0.2 / 1.5, rel_tol=1e-9) and math.isclose(mine[50], 0.2, rel_tol=1e-9):
        raise AssertionError(f"{name}({setting}) at step 50 is still lr0: that is the staircase version. The formula "
                             "divides step by decay_steps as real numbers, so the rate falls a little every step.")
    if math.isclose(mine[100], 0.2 * 0.5, rel_tol=1e-9):
        raise AssertionError(f"{name}({setting}) at step 100 is lr0·decay_rate: that is exponential decay. Inverse "
                             "time decay divides lr0 by a term that grows linearly with the step (section 5).")
    if math.isclose(mine[100], 0.2 / 1.5 ** 2, rel_tol=1e-6) or math.isclose(mine[100], 0.2 / 2.0, rel_tol=1e-9):
        raise AssertionError(f"{name}({setting}) at step 100 is {mine[100]:.6g}: check where decay_rate and "
                             "decay_steps enter the denominator (section 5).")
    wrong = next(s for s, v in _INVERSE_TIME_CASES.items() if not math.isclose(mine[s], v, rel_tol=1e-9))
    raise AssertionError(f"{name}({setting}) at step {wrong} is {mine[wrong]:.6g}, not the formula's value: compare "
                         "with section 5.")


def check_warmup_cosine(warmup_cosine) -> None:
    """``warmup_cosine(step, lr0, warmup_steps, total_steps, lr_min)``: linear warm-up from 0, then torch's
    CosineAnnealingLR down to ``lr_min`` at ``total_steps``, and ``lr_min`` after it."""
    name = "warmup_cosine"
    for lr0, warmup, total, lr_min in ((0.4, 10, 50, 0.0), (1e-3, 4, 30, 1e-5), (0.1, 0, 12, 0.01)):
        setting = f"lr0={lr0}, warmup_steps={warmup}, total_steps={total}, lr_min={lr_min}"
        mine = [_lr(warmup_cosine, name, s, lr0, warmup, total, lr_min=lr_min) for s in range(total + 5)]
        if warmup:
            expect(mine[0] == 0.0 or abs(mine[0]) < 1e-15,
                   f"{name}({setting}) at step 0 is {mine[0]:.6g}: the warm-up starts from 0"
                   + (" — it is one step ahead (steps count from 0)." if math.isclose(mine[0], lr0 / warmup) else "."))
            ramp = np.diff(mine[:warmup])
            expect(np.allclose(ramp, lr0 / warmup, rtol=1e-9),
                   f"{name}({setting}) does not rise linearly during the warm-up, from 0 at step 0 towards lr0 at "
                   f"step warmup_steps: the rise per step should be lr0 / warmup_steps = {lr0 / warmup:.4g}, yours is "
                   f"{ramp.min():.4g} … {ramp.max():.4g}.")
        cosine = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, total - warmup, lr_min), lr0,
                            total - warmup + 1)
        after = mine[warmup:total + 1]
        if not np.allclose(after, cosine, rtol=1e-7, atol=1e-12):
            if lr_min and abs(mine[total]) < 1e-12:
                raise AssertionError(f"{name}({setting}) ends at 0 instead of lr_min: the cosine runs from lr0 down to "
                                     "lr_min.")
            long = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, total, lr_min), lr0, total + 1)
            if warmup and np.allclose(after, long[warmup:], rtol=1e-7, atol=1e-12):
                raise AssertionError(f"{name}({setting}): your cosine spans all total_steps, from step 0; it should "
                                     "start at lr0 when the warm-up ends and span the remaining "
                                     "total_steps − warmup_steps steps.")
            first = int(np.flatnonzero(~np.isclose(after, cosine, rtol=1e-7, atol=1e-12))[0])
            raise AssertionError(f"{name}({setting}) after the warm-up differs from torch's CosineAnnealingLR("
                                 f"T_max=total_steps − warmup_steps, eta_min=lr_min) at step {warmup + first}: "
                                 f"{after[first]:.6g} instead of {cosine[first]:.6g}.")
        expect(np.allclose(mine[total:], lr_min, rtol=1e-9, atol=1e-15),
               f"{name}({setting}) after total_steps should stay at lr_min, got {mine[total + 1]:.6g}.")
    passed(name, "linear warm-up, then equal to torch's CosineAnnealingLR, then lr_min")


# ---------------------------------------------------------------- the optimizer class
#
# Under the grader the student's class lives in the notebook's kernel, and so must the networks it trains: the
# functions marked "in the kernel" are sent there (``in_kernel``; they import what they use and take plain data),
# and the torch.optim.SGD reference is built here by the same functions.

def _subclasses_optimizer(cls) -> bool:
    """In the kernel: whether ``cls`` is a class that subclasses torch.optim.Optimizer."""
    import torch
    return isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer)


def _tiny_model(optimizer_class, weights, groups=None, **settings):
    """In the kernel: (model, optimizer) for the tiny network (conv, frozen batch-norm scale, linear; float64)
    holding ``weights`` (None: torch's initialisation), and ``optimizer_class`` over its parameters, or over
    ``groups`` [(module index, that group's settings)]."""
    import torch
    from torch import nn
    model = nn.Sequential(nn.Conv2d(2, 3, 3, bias=False), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                          nn.Linear(3 * 4 * 4, 4)).double()
    if weights is not None:
        with torch.no_grad():
            for p, w in zip(model.parameters(), weights):
                p.copy_(torch.as_tensor(w))
    model[1].weight.requires_grad_(False)        # a parameter whose .grad stays None, as in FastCIFARNet
    params = model.parameters() if groups is None else [{"params": model[i].parameters(), **g} for i, g in groups]
    return model, optimizer_class(params, **settings)


def _backward(model, optimizer, x, y) -> None:
    """In the kernel: zero the gradients, then backpropagate the cross-entropy of ``model`` on (x, y)."""
    import torch
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y)).backward()


def _step_lr(optimizer, step_size: int, gamma: float):
    """In the kernel: a StepLR schedule of ``optimizer``."""
    import torch
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)


def _step_with_closure(model, optimizer, x, y):
    """In the kernel: what ``optimizer.step(closure)`` returns for a closure that computes the loss on (x, y)."""
    import torch

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(torch.as_tensor(x)), torch.as_tensor(y))
        loss.backward()
        return loss

    return optimizer.step(closure)


def _initial_weights(seed: int) -> list:
    """The tiny network's parameters as torch initialises them under ``seed``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, _ = _tiny_model(torch.optim.SGD, None, lr=0.0)
    return [p.detach().clone() for p in model.parameters()]


def _batches(steps: int, seed: int) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 2, 6, 6, generator=g, dtype=torch.float64), torch.randint(0, 4, (8,), generator=g))
            for _ in range(steps)]


def _parameters(model) -> list:
    return [p.detach().clone() for p in model.parameters()]


def _train(backward, model, optimizer, batches, scheduler=None) -> None:
    for x, y in batches:
        backward(model, optimizer, x, y)
        _step(optimizer)
        if scheduler is not None:
            scheduler.step()


def _step(optimizer) -> None:
    """optimizer.step(), with the two usual crashes of MomentumSGD named."""
    name = "MomentumSGD.step()"
    try:
        optimizer.step()
    except NotImplementedError:
        raise AssertionError(f"{name} {_STUB}") from None
    except Exception as err:
        if "leaf Variable that requires grad" in str(err):
            hint = (" The parameters are updated while autograd is recording: run the update under torch.no_grad() "
                    "(the optimizer's own arithmetic must not become part of the graph).")
        else:  # every network here has one
            hint = (" This model has a parameter whose .grad is None (a frozen batch-norm scale, as in "
                    "FastCIFARNet): skip such parameters.")
        raise AssertionError(f"{name} raised {type(err).__name__}: {err}.{hint}") from err


def _params_equal(a: list, b: list, tol: float = 1e-9) -> bool:
    return len(a) == len(b) and all(_close(p, q, tol) for p, q in zip(a, b))


def _make(build, name: str, cls, weights, groups=None, **settings):
    try:
        return build(cls, weights, groups, **settings)
    except NotImplementedError:
        raise AssertionError(f"{name} {_STUB}") from None
    except Exception as err:
        raise AssertionError(f"{name}(params, {', '.join(f'{k}={v}' for k, v in settings.items())}) raised "
                             f"{type(err).__name__}: {err}.") from err


def check_momentum_sgd(MomentumSGD) -> None:
    """``MomentumSGD(params, lr, momentum, nesterov, weight_decay)`` trains like torch.optim.SGD."""
    name = "MomentumSGD"
    subclasses, build, backward, step_lr, step_with_closure = (
        in_kernel(f) for f in (_subclasses_optimizer, _tiny_model, _backward, _step_lr, _step_with_closure))
    expect(subclasses(MomentumSGD), f"{name} should be a class that subclasses torch.optim.Optimizer.")
    _own_update(MomentumSGD)
    settings = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    weights = _initial_weights(0)
    mine, optimizer = _make(build, name, MomentumSGD, weights, **settings)
    theirs, reference = _tiny_model(torch.optim.SGD, weights, **settings)
    groups = optimizer.param_groups
    expect(len(groups) == 1 and all(k in groups[0] for k in settings),
           f"{name}: pass the settings to torch.optim.Optimizer.__init__ as its defaults, so that each parameter "
           "group holds lr, momentum, nesterov and weight_decay.")
    before, batches = _parameters(mine), _batches(15, seed=1)
    _train(backward, mine, optimizer, batches[:1])
    changed = [not torch.equal(p, b) for p, b in zip(_parameters(mine), before)]
    expect(any(changed), f"{name}.step() did not change any parameter: update each parameter in place (assigning "
                         "to a local variable changes nothing in the model).")
    expect(not changed[1], f"{name}.step() changed a parameter whose .grad is None (a frozen batch-norm scale): "
                           "skip such parameters.")
    _train(_backward, theirs, reference, batches[:1])
    expect(_params_equal(_parameters(mine), _parameters(theirs)),
           f"{name}: after one step the parameters differ from torch.optim.SGD's with {settings}: does step() call "
           "your sgd_momentum_step with each group's settings, on each parameter and its .grad?")
    _train(backward, mine, optimizer, batches[1:])
    _train(_backward, theirs, reference, batches[1:])
    expect(_params_equal(_parameters(mine), _parameters(theirs)),
           f"{name}: the first step equals torch.optim.SGD's, but after 15 steps the parameters differ: keep each "
           "parameter's velocity in self.state[p] from one step to the next.")
    expect(any(isinstance(v, torch.Tensor) for s in optimizer.state.values() for v in s.values()),
           f"{name}: keep each parameter's velocity as a tensor in self.state[p] (so that state_dict() saves it and "
           "fit can move it to the GPU with the model).")

    weights, batches, groups = _initial_weights(3), _batches(5, seed=4), [(0, {}), (4, {"lr": 0.01})]
    mine, optimizer = _make(build, name, MomentumSGD, weights, groups, lr=0.1, momentum=0.9)
    theirs, reference = _tiny_model(torch.optim.SGD, weights, groups, lr=0.1, momentum=0.9)
    _train(backward, mine, optimizer, batches, step_lr(optimizer, 2, 0.5))
    _train(_backward, theirs, reference, batches, _step_lr(reference, 2, 0.5))
    expect(_params_equal(_parameters(mine), _parameters(theirs)),
           f"{name} with two parameter groups (lr 0.1 and 0.01) and a StepLR schedule differs from torch.optim.SGD: "
           "read lr and the other settings from each group in self.param_groups on every step (a scheduler changes "
           "group['lr'] between steps).")
    model, optimizer = _make(build, name, MomentumSGD, _initial_weights(5), lr=0.01, momentum=0.9)
    x, y = torch.randn(4, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6)), torch.arange(4)
    returned = _call(lambda: step_with_closure(model, optimizer, x, y), f"{name}.step")
    expect(isinstance(returned, torch.Tensor) and returned.ndim == 0,
           f"{name}.step(closure) returned {returned!r}: when a closure is given, call it (with gradients enabled) "
           "and return the loss it returns, as torch's optimizers do.")
    passed(name, "equal to torch.optim.SGD over 15 steps, with parameter groups, a scheduler, frozen parameters "
                 "and a closure")
