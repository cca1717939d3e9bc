"""Checks for notebook 04 (optimizers and learning-rate schedules).

The references are PyTorch's own optimizers and schedulers (``torch.optim.SGD``, ``Adam``,
``AdamW``, ``StepLR``, ``CosineAnnealingLR``), run here on the same gradients, and a few values
computed by hand. Each exercise has a table of its usual mistakes (:class:`~course_lib.checks.toolkit.Mistake`):
what the update or schedule returns under that mistake (Nesterov off, the step counter one ahead,
bias correction gone, ε in another place, weight decay coupled instead of decoupled, ...), computed
by torch's own optimizers and schedulers with other settings or state, or recognised from the
values computed by hand; a
wrong result is named after the first entry it reproduces, or else by the step where it first differs.

The student's functions are called through :func:`~course_lib.checks.toolkit.call` on copies of the
check's arrays, so a step function may update its arrays in place as long as it returns them. Every
function may receive and return NumPy arrays or torch tensors; results are compared as float64 NumPy
arrays. The student's optimizer class trains networks built where it lives, in the notebook's kernel
under the grader (:func:`course_lib.checks.remote.in_kernel`); torch's reference is built here.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from course_lib.checks.remote import forbid, in_kernel
from course_lib.checks.toolkit import (
    CheckFailed, Mistake, as_array, call, close, compare, describe, diagnose, difference, expect, expect_shape,
    fail, passed,
)

__all__ = [
    "check_sgd_momentum_step", "check_adam_step", "check_step_decay", "check_inverse_time_decay",
    "check_warmup_cosine", "check_momentum_sgd",
]

TOL = 1e-9             # float64 runs: the same arithmetic as torch's, up to rounding
TOL_FLOAT32 = 1e-5     # float32 arrays and tensors keep about 7 digits


def _arrays(seed: int, shape=(6,), steps: int = 1, scale: float = 1.0):
    """(w0, [dw_1, ..., dw_steps]) float64, drawn from their own generator."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape), [scale * rng.standard_normal(shape) for _ in range(steps)]


def _setting(**values) -> str:
    """``lr=0.05, momentum=0.9``: the settings of a run as a message writes them."""
    return ", ".join(f"{k}={describe(v) if isinstance(v, float) else v}" for k, v in values.items())


def _own_update(fn, exercise: str) -> None:
    """The update must be written here, not borrowed from ``torch.optim`` (read from the source)."""
    used = forbid(fn, ("torch.optim",), allowed=("torch.optim.Optimizer",))
    expect(used is None, f"{getattr(fn, '__name__', 'your code')} {used}: this exercise rebuilds torch.optim's "
                         "update, so write the update yourself (torch.optim is what your result is compared with).",
           f"optim.{exercise}.borrows_torch_optim")


def _compare_steps(actual, expected, what: str, where, expected_as: str, *, tol: float = TOL, mistakes=(),
                   inputs=()) -> None:
    """:func:`compare` for a sequence of steps (row k of ``actual`` is step k, as in ``expected``): name the first
    of ``mistakes`` that reproduces ``actual``, else say at which step, ``where(k)``, it first differs."""
    if close(actual, expected, tol):
        return
    diagnose(actual, what, mistakes, inputs, tol)
    # the first step whose row alone, put into expected, makes a difference (on the whole value's scale)
    step = next(k for k in range(len(expected))
                if not close(np.concatenate([expected[:k], actual[k:k + 1], expected[k + 1:]]), expected, tol))
    # a row of zeros is judged on a scale of 1 alone: then name its first element that differs at all
    problem = difference(actual[step], expected[step], tol) or difference(actual[step], expected[step], 0.0)
    fail(f"{what}{where(step)} {problem.replace('; expected ', f'; {expected_as} ', 1)}.")


def _array_kinds(check, exercise: str) -> None:
    """Run ``check(label, to)`` on float32 NumPy arrays and on torch tensors; a crash on one of them is named."""
    for label, to in (("float32 NumPy arrays", lambda a: np.asarray(a, dtype=np.float32)),
                      ("torch tensors", lambda a: torch.tensor(np.asarray(a)))):
        try:
            check(label, to)
        except CheckFailed as failure:
            if failure.mistake != "crashed":
                raise
            fail(f"{failure} (on {label}). The same code must work on NumPy arrays and on torch tensors: use "
                 "arithmetic operators, which both have.", f"optim.{exercise}.one_kind_of_array")


# ---------------------------------------------------------------- SGD with momentum

def _torch_sgd(w0, grads, lr, momentum=0.0, nesterov=False, weight_decay=0.0, shrink_after=0.0):
    """torch.optim.SGD's (w, velocity) after each of ``grads``, as two arrays of shape (steps, *w0.shape); with
    ``shrink_after``, w also shrinks by shrink_after·(w before the step) after each of torch's steps."""
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    ws, vs = [], []
    for g in grads:
        before = p.detach().clone()
        p.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        if shrink_after:
            with torch.no_grad():
                p.sub_(shrink_after * before)
        buf = opt.state[p].get("momentum_buffer")
        ws.append(p.detach().numpy().copy())
        vs.append(np.zeros_like(w0) if buf is None else buf.numpy().copy())
    return np.array(ws), np.array(vs)


def _torch_sgd_with(**changed):
    """A mistake table's ``returns``: torch.optim.SGD's weights on (w0, grads, settings), ``changed`` settings
    replacing the check's (a function of the settings when callable)."""
    def weights(w0, grads, settings):
        options = {k: v(settings) if callable(v) else v for k, v in changed.items()}
        return _torch_sgd(w0, grads, **{**settings, **options})[0]
    return weights


SGD_PLAIN_STEP_MISTAKES = (      # inputs: (w0, dw, lr)
    Mistake("optim.sgd_momentum_step.uphill", "moves the weights up the gradient: a descent step goes against the "
            "gradient.", returns=lambda w0, g, lr: w0 + lr * g),
    Mistake("optim.sgd_momentum_step.lr_ignored", "takes a step of the whole gradient: the learning rate scales "
            "the step.", returns=lambda w0, g, lr: w0 - g),
)

SGD_VELOCITY_MISTAKES = (        # inputs: (dw, lr, momentum)
    Mistake("optim.sgd_momentum_step.dampened_velocity", "is (1 − momentum)·dw, a dampened average. PyTorch's "
            "velocity adds the whole gradient (dampening 0): see the velocity update in section 2.",
            returns=lambda g, lr, mu: (1 - mu) * g),
    Mistake("optim.sgd_momentum_step.lr_in_velocity", "holds ±lr·dw, so the learning rate is inside it (the CS231n "
            "convention). In PyTorch's formulation the velocity accumulates gradients only and lr multiplies it in "
            "the weight update; the two differ as soon as a schedule changes lr.",
            shows=lambda v, g, lr, mu: close(v, lr * g, TOL) or close(v, -lr * g, TOL)),
)

SGD_MISTAKES = (                 # inputs: (w0, grads, settings)
    Mistake("optim.sgd_momentum_step.nesterov_when_off", "takes Nesterov steps: use the look-ahead only when "
            "nesterov=True.", returns=_torch_sgd_with(nesterov=True)),
    Mistake("optim.sgd_momentum_step.nesterov_ignored", "takes the same steps as plain momentum: the Nesterov "
            "look-ahead is missing (section 2, the update direction when nesterov=True).",
            returns=_torch_sgd_with(nesterov=False)),
    Mistake("optim.sgd_momentum_step.raw_gradient_step", "moves the weights by −lr·dw, the raw gradient, although "
            "momentum is on: the weight update should use the velocity.",
            returns=_torch_sgd_with(momentum=0.0, nesterov=False)),
    Mistake("optim.sgd_momentum_step.weight_decay_ignored", "takes the steps it takes without weight decay: "
            "weight_decay is ignored.", returns=_torch_sgd_with(weight_decay=0.0)),
    Mistake("optim.sgd_momentum_step.decay_after_step", "applies weight decay after the momentum step (it shrinks w "
            "directly): in PyTorch's SGD, weight decay is an L2 term added to the gradient before the velocity "
            "update, so it enters the velocity too.",
            returns=_torch_sgd_with(weight_decay=0.0, shrink_after=lambda s: s["lr"] * s["weight_decay"])),
)


def _run_sgd(fn, w0, grads, settings: dict, to=np.asarray):
    """The student's (w, v) after each gradient from v = 0, as two float64 arrays of shape (steps, *w0.shape)."""
    w, v, ws, vs = to(np.array(w0)), to(np.zeros_like(w0)), [], []
    shown, options = f"w, dw, v, {_setting(**settings)}", {k: s for k, s in settings.items() if k != "lr"}
    for g in grads:
        w_new, v_new = call(fn, w, to(np.array(g)), v, settings["lr"], name="sgd_momentum_step", shown=shown,
                            returns=("w_new", "v_new"), **options)
        for value, label in ((w_new, "w_new"), (v_new, "v_new")):
            expect_shape(as_array(value), w0.shape, label)
        ws.append(as_array(w_new))
        vs.append(as_array(v_new))
        w, v = to(ws[-1]), to(vs[-1])
    return np.array(ws), np.array(vs)


def check_sgd_momentum_step(sgd_momentum_step) -> None:
    """``sgd_momentum_step(w, dw, v, lr, momentum, nesterov, weight_decay) -> (w_new, v_new)`` against
    torch.optim.SGD, on weights of shape (6,) over up to 12 steps from v = 0.

    Contract: w, dw, v are arrays of one shape (NumPy or torch); w_new and v_new have that shape. The function
    may update w and v in place, but must return them (the check passes copies, so in-place updates are
    harmless here).
    """
    name = "sgd_momentum_step"
    _own_update(sgd_momentum_step, name)

    plain = dict(lr=0.1, momentum=0.0, nesterov=False, weight_decay=0.0)
    w0, grads = _arrays(0)
    (w1,), _ = _run_sgd(sgd_momentum_step, w0, grads, plain)
    compare(w1, w0 - 0.1 * grads[0], f"{name}({_setting(**plain)}), one plain gradient step: w_new",
            mistakes=SGD_PLAIN_STEP_MISTAKES, inputs=(w0, grads[0], 0.1))

    momentum = dict(lr=0.05, momentum=0.9, nesterov=False, weight_decay=0.0)
    w0, grads = _arrays(1)
    _, vs = _run_sgd(sgd_momentum_step, w0, grads, momentum)
    _, torch_vs = _torch_sgd(w0, grads[:1], **momentum)
    compare(vs[0], torch_vs[0], f"{name}({_setting(**momentum)}): v_new after one step from v = 0",
            mistakes=SGD_VELOCITY_MISTAKES, inputs=(grads[0], 0.05, 0.9),
            expected_as="torch.optim.SGD's momentum buffer")

    for settings, seed in ((momentum, 1), ({**momentum, "nesterov": True}, 1), ({**momentum, "weight_decay": 0.1}, 2)):
        w0, grads = _arrays(seed, steps=12)
        ws, _ = _run_sgd(sgd_momentum_step, w0, grads, settings)
        _compare_steps(ws, _torch_sgd(w0, grads, **settings)[0], f"{name}({_setting(**settings)})",
                       lambda k: f", 12 steps from v = 0: w after step {k + 1}", "torch.optim.SGD's is",
                       mistakes=SGD_MISTAKES, inputs=(w0, grads, settings))

    w0, grads = _arrays(3, steps=5)
    settings = dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)
    expected, _ = _torch_sgd(w0, grads, **settings)

    def on(label, to):
        ws, _ = _run_sgd(sgd_momentum_step, w0, grads, settings, to=to)
        expect(close(ws, expected, TOL_FLOAT32), f"{name} on {label} differs from torch.optim.SGD (it is right on "
                                                 "float64 NumPy arrays): avoid code that only works for one kind of "
                                                 "array.", "optim.sgd_momentum_step.one_kind_of_array")

    _array_kinds(on, name)
    passed(name, "plain SGD, momentum, Nesterov and weight decay equal torch.optim.SGD, on NumPy and torch")


# ---------------------------------------------------------------- Adam

def _torch_adam(w0, grads, lr, betas, eps, weight_decay=0.0, decoupled=False, first_t=1):
    """torch's Adam (AdamW when ``decoupled``): w after each of ``grads``, shape (steps, *w0.shape); its step
    counter starts at ``first_t`` (from m = v = 0)."""
    p = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    opt = cls([p], lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
    ws = []
    for i, g in enumerate(grads):
        p.grad = torch.tensor(g, dtype=torch.float64)
        if i == 0 and first_t != 1:
            opt.state[p].update(step=torch.tensor(float(first_t - 1)), exp_avg=torch.zeros_like(p),
                                exp_avg_sq=torch.zeros_like(p))
        opt.step()
        ws.append(p.detach().numpy().copy())
    return np.array(ws)


def _eps_sized(ws, torch_ws) -> bool:
    """Whether ``ws`` are torch's weights to within EPS_SIZED but not to within TOL: an ε-sized difference."""
    return close(ws, torch_ws, EPS_SIZED) and not close(ws, torch_ws, TOL)


def _torch_adam_with(**changed):
    """A mistake table's ``returns``: torch's Adam (AdamW) weights on (w0, grads, settings), ``changed`` settings
    replacing the check's (a function of the settings when callable)."""
    def weights(w0, grads, settings):
        options = {k: v(settings) if callable(v) else v for k, v in changed.items()}
        return _torch_adam(w0, grads, **{**settings, **options})
    return weights


EPS_SIZED = 1e-3      # a difference this small (on the value's scale) is ε in another place
FIXED_EPSILONS = (1e-8, 1e-7, 1e-6, 1e-5, 1e-10, 1e-12)   # the ε a student may write in place of the argument

ADAM_M_MISTAKES = (              # inputs: (dw, betas)
    Mistake("optim.adam_step.m_whole_gradient", "equals the whole gradient: in a moving average the new gradient "
            "comes in with a weight, not whole. See section 3.", returns=lambda g, betas: g),
)

ADAM_V_MISTAKES = (              # inputs: (dw, betas)
    Mistake("optim.adam_step.v_of_abs", "averages |dw|, not the squared gradient. See section 3.",
            returns=lambda g, betas: (1 - betas[1]) * np.abs(g)),
    Mistake("optim.adam_step.v_whole_square", "equals the squared gradient: in a moving average the new term comes "
            "in with a weight, not whole. See section 3.", returns=lambda g, betas: g * g),
)

ADAM_MISTAKES = (                # inputs: (w0, grads, settings)
    Mistake("optim.adam_step.t_from_zero", "gives NaN or inf: t counts from 1, so the bias corrections 1 − β^t are "
            "never zero. Did you count t from 0, or divide by zero elsewhere?",
            shows=lambda ws, *inputs: not np.all(np.isfinite(as_array(ws)))),
    Mistake("optim.adam_step.no_bias_correction", "takes the steps of Adam without bias correction. m and v start "
            "at 0, so early on they underestimate the averages; the bias correction of section 3 fixes that. At t=1 "
            "the corrected step is about lr in size, yours about 3·lr.", returns=_torch_adam_with(first_t=10**7)),
    Mistake("optim.adam_step.bias_correction_next_t", "uses the next step's t in its bias correction (as if t "
            "counted from 0): the first call has t=1, and the correction uses that t.",
            returns=_torch_adam_with(first_t=2)),
    Mistake("optim.adam_step.eps_fixed", "takes the steps of another ε: use the eps argument (not a number of your "
            "own), outside the square root of v̂, in the denominator (section 3).",
            shows=lambda ws, w0, grads, s: any(close(ws, _torch_adam(w0, grads, **{**s, "eps": eps}), TOL)
                                               for eps in FIXED_EPSILONS)),
    Mistake("optim.adam_step.weight_decay_ignored", "takes the steps of Adam without weight decay: weight_decay is "
            "ignored.", returns=_torch_adam_with(weight_decay=0.0)),
    Mistake("optim.adam_step.decoupled_as_l2", "gives Adam's steps: decoupled=True shrinks the weights directly "
            "(AdamW) instead of adding the L2 term to the gradient.", returns=_torch_adam_with(decoupled=False)),
    Mistake("optim.adam_step.l2_as_decoupled", "gives AdamW's steps: decoupled=False puts the L2 term into the "
            "gradient, as torch.optim.Adam does.", returns=_torch_adam_with(decoupled=True)),
    Mistake("optim.adam_step.decay_without_lr", "shrinks w by the factor (1 − λ) each step: AdamW's decay is scaled "
            "by the learning rate too (section 3).",   # AdamW shrinks by lr·weight_decay: this is a shrink by λ
            returns=_torch_adam_with(weight_decay=lambda s: s["weight_decay"] / s["lr"])),
    Mistake("optim.adam_step.eps_misplaced", "differs from torch's steps by about ε: ε belongs outside the square "
            "root of the bias-corrected v̂, and only in the denominator (section 3).",
            shows=lambda ws, w0, grads, s: _eps_sized(ws, _torch_adam(w0, grads, **s))),
)


def _run_adam(fn, w0, grads, settings: dict, to=np.asarray):
    """The student's (w, m, v) after each gradient from m = v = 0 and t = 1, 2, ..., as three float64 arrays of
    shape (steps, *w0.shape)."""
    w, m, v, out = to(np.array(w0)), to(np.zeros_like(w0)), to(np.zeros_like(w0)), []
    for t, g in enumerate(grads, start=1):
        result = call(fn, w, to(np.array(g)), m, v, t, name="adam_step", returns=("w_new", "m_new", "v_new"),
                      shown=f"w, dw, m, v, t={t}, {_setting(**settings)}", **settings)
        for value, label in zip(result, ("w_new", "m_new", "v_new")):
            expect_shape(as_array(value), w0.shape, label)
        out.append([as_array(r) for r in result])
        w, m, v = (to(r) for r in out[-1])
    return tuple(np.array(states) for states in zip(*out))


def _compare_adam(adam_step, w0, grads, settings: dict) -> None:
    """The student's weights over ``grads`` from t = 1 against torch's Adam (AdamW), named by ADAM_MISTAKES."""
    ws, _, _ = _run_adam(adam_step, w0, grads, settings)
    reference = "torch.optim.AdamW's is" if settings["decoupled"] else "torch.optim.Adam's is"
    _compare_steps(ws, _torch_adam(w0, grads, **settings), f"adam_step({_setting(**settings)})",
                   lambda k: f", {len(grads)} steps from t=1: w at t={k + 1}", reference,
                   mistakes=ADAM_MISTAKES, inputs=(w0, grads, settings))


def check_adam_step(adam_step) -> None:
    """``adam_step(w, dw, m, v, t, lr, betas, eps, weight_decay, decoupled) -> (w_new, m_new, v_new)`` against
    torch's Adam and AdamW, on weights of shape (6,) over up to 15 steps from m = v = 0 and t = 1.

    Contract: w, dw, m, v are arrays of one shape (NumPy or torch), t counts the calls from 1; the three results
    have that shape. The function may update w, m and v in place, but must return them (the check passes copies,
    so in-place updates are harmless here).
    """
    name = "adam_step"
    _own_update(adam_step, name)
    adam = dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False)
    w0, grads = _arrays(4)
    _, m1, v1 = _run_adam(adam_step, w0, grads, adam)
    g, (beta1, beta2) = grads[0], adam["betas"]
    compare(m1[0], (1 - beta1) * g, f"{name}: after one step from m = 0, m_new", mistakes=ADAM_M_MISTAKES,
            inputs=(g, adam["betas"]), expected_as="torch's first moment, the moving average of the gradients,")
    compare(v1[0], (1 - beta2) * g * g, f"{name}: after one step from v = 0, v_new", mistakes=ADAM_V_MISTAKES,
            inputs=(g, adam["betas"]),
            expected_as="torch's second moment, the moving average of the squared gradients,")

    _compare_adam(adam_step, *_arrays(5, steps=15), adam)
    # small gradients (|dw| ≈ 1e-2): ε inside the square root moves the steps by about 1e-6 here (eps_misplaced)
    _compare_adam(adam_step, *_arrays(9, steps=10, scale=1e-2), adam)
    for eps in (1e-8, 1e-6):                   # tiny gradients (|dw| ≈ 1e-7), where ε matters
        _compare_adam(adam_step, *_arrays(6, steps=5, scale=1e-7), {**adam, "eps": eps})
    for decoupled in (False, True):
        _compare_adam(adam_step, *_arrays(7, steps=10), {**adam, "weight_decay": 0.1, "decoupled": decoupled})

    w0, grads = _arrays(8, steps=5)
    settings = dict(lr=0.01, betas=(0.5, 0.99), eps=1e-6, weight_decay=0.1, decoupled=True)
    expected = _torch_adam(w0, grads, **settings)

    def on(label, to):
        ws, _, _ = _run_adam(adam_step, w0, grads, settings, to=to)
        expect(close(ws, expected, TOL_FLOAT32), f"{name} on {label} differs from torch.optim.AdamW (it is right on "
                                                 "float64 NumPy arrays): avoid code that only works for one kind of "
                                                 "array.", "optim.adam_step.one_kind_of_array")

    _array_kinds(on, name)
    passed(name, "Adam and AdamW equal torch's, with bias correction, ε and weight decay, on NumPy and torch")


# ---------------------------------------------------------------- schedules

def _rates(fn, name: str, steps, *args, **kwargs) -> np.ndarray:
    """The student's schedule ``fn(step, *args, **kwargs)`` at each of ``steps``, as a float64 array."""
    settings = ", ".join([describe(a) for a in args] + [f"{k}={describe(v)}" for k, v in kwargs.items()])
    return np.array([float(as_array(call(fn, step, *args, name=name, returns="number", shown=f"{step}, {settings}",
                                         **kwargs))) for step in steps])


def _torch_lrs(make_scheduler, lr0: float, steps: int) -> np.ndarray:
    """The learning rate a scheduler gives at steps 0, 1, ..., steps - 1 (stepped once per step)."""
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr0)
    scheduler = make_scheduler(opt)
    lrs = []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        scheduler.step()
    return np.array(lrs)


STEP_DECAY_MISTAKES = (          # inputs: (steps, lr0, step_size, gamma)
    Mistake("optim.step_decay.smooth", "decays smoothly, a little every step. StepLR keeps the rate constant for "
            "step_size steps and then multiplies it by gamma: a staircase.",
            returns=lambda s, lr0, size, gamma: _torch_exponential(lr0, gamma ** (1 / size), len(s))),
    Mistake("optim.step_decay.every_step", "multiplies by gamma at every step: the decay should come once every "
            "step_size steps.", returns=lambda s, lr0, size, gamma: _torch_exponential(lr0, gamma, len(s))),
    Mistake("optim.step_decay.one_step_ahead", "is one step ahead: its value at step s is StepLR's at step s + 1. "
            "Steps count from 0, and step 0 has the starting learning rate.",
            returns=lambda s, lr0, size, gamma: _torch_step_decay(lr0, size, gamma, len(s) + 1)[1:]),
    Mistake("optim.step_decay.one_step_behind", "is one step behind: its value at step s is StepLR's at step s − 1. "
            "Steps count from 0.", returns=lambda s, lr0, size, gamma: np.r_[lr0, _torch_step_decay(lr0, size, gamma, len(s))[:-1]]),
)


def _torch_exponential(lr0, gamma, steps):
    """torch's ExponentialLR (the rate times gamma at every step) at steps 0, 1, ..., steps - 1."""
    return _torch_lrs(lambda o: torch.optim.lr_scheduler.ExponentialLR(o, gamma), lr0, steps)


def _torch_step_decay(lr0, size, gamma, steps):
    """torch's StepLR at steps 0, 1, ..., steps - 1."""
    return _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, size, gamma), lr0, steps)


def check_step_decay(step_decay) -> None:
    """``step_decay(step, lr0, step_size, gamma) -> lr`` (one number) against torch's StepLR, step for step."""
    name = "step_decay"
    for lr0, size, gamma, n in ((0.1, 5, 0.5, 23), (0.3, 1, 0.9, 8), (1e-3, 7, 0.1, 30)):
        steps = np.arange(n)
        rates = _rates(step_decay, name, steps, lr0, size, gamma)
        expected = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, size, gamma), lr0, n)
        _compare_steps(rates, expected, f"{name}({_setting(lr0=lr0, step_size=size, gamma=gamma)})",
                       lambda k: f" at step {k}", "torch's StepLR gives", mistakes=STEP_DECAY_MISTAKES,
                       inputs=(steps, lr0, size, gamma))
    passed(name, "equal to torch.optim.lr_scheduler.StepLR, step for step")


# Hand-computed: lr0 = 0.2, decay_rate = 0.5, decay_steps = 100; each step with its neighbour one step later.
_INVERSE_TIME_SETTINGS = (0.2, 0.5, 100)
_INVERSE_TIME_CASES = {0: 0.2, 1: 0.2 / 1.005, 2: 0.2 / 1.01, 50: 0.16, 51: 0.2 / 1.255, 100: 0.2 / 1.5,
                       101: 0.2 / 1.505, 150: 0.2 / 1.75, 151: 0.2 / 1.755, 300: 0.08, 301: 0.2 / 2.505,
                       1000: 0.2 / 6, 1001: 0.2 / 6.005}


def _shifted(step_of):
    """``shows=`` for a schedule whose value at step s is the table's at step ``step_of(s)``, wherever the table
    has both (and those are not all the same step)."""
    def shows(rates, steps, expected, lr0, decay_rate, decay_steps):
        table = dict(zip(steps.tolist(), expected))
        pairs = [(k, step_of(s)) for k, s in enumerate(steps.tolist()) if step_of(s) in table and step_of(s) != s]
        return bool(pairs) and all(close(rates[k], table[s], TOL) for k, s in pairs)
    return shows


def _value_at(step, rates, steps) -> float:
    return rates[list(steps).index(step)]


INVERSE_TIME_MISTAKES = (        # inputs: (steps, the table's values there, lr0, decay_rate, decay_steps)
    Mistake("optim.inverse_time_decay.lr0_ignored", "never uses lr0: it starts at 1 instead of lr0, and every value "
            "is the right one divided by lr0. Inverse time decay divides lr0 by a term that grows linearly with the "
            "step (section 5).",
            shows=lambda rates, steps, expected, lr0, *rest: close(rates, expected / lr0, TOL)),
    Mistake("optim.inverse_time_decay.one_step_ahead", "is one step ahead: its value at step s is the right value "
            "at step s + 1. Steps count from 0, and step 0 should start at lr0.", shows=_shifted(lambda s: s + 1)),
    Mistake("optim.inverse_time_decay.staircase", "is still lr0 at step 50: that is the staircase version, which "
            "falls only once every decay_steps steps. Here step and decay_steps divide as real numbers, so the rate "
            "falls a little every step.",
            shows=lambda rates, steps, expected, lr0, rate, n: close(_value_at(50, rates, steps), lr0, TOL) and close(
                _value_at(n, rates, steps), _value_at(n, expected, steps), TOL)),
    Mistake("optim.inverse_time_decay.exponential", "is lr0·decay_rate at step decay_steps: that is exponential "
            "decay, which multiplies the rate by decay_rate every decay_steps steps. Inverse time decay divides lr0 by "
            "a term that grows linearly with the step (section 5).",
            shows=lambda rates, steps, expected, lr0, rate, n: close(_value_at(n, rates, steps), lr0 * rate, TOL)
            and close(_value_at(3 * n, rates, steps), lr0 * rate * rate * rate, TOL)),
    Mistake("optim.inverse_time_decay.squared_denominator", "is the right value squared and divided by lr0, at every "
            "step: its denominator is squared, where it should grow linearly with the step (section 5).",
            shows=lambda rates, steps, expected, lr0, *rest: close(rates, expected * expected / lr0, TOL)),
    Mistake("optim.inverse_time_decay.decay_rate_ignored", "falls twice as fast as it should: its value at step s is "
            "the right value at step 2·s, as if decay_rate were 1. decay_rate sets how fast the denominator grows "
            "(section 5).", shows=_shifted(lambda s: 2 * s)),
)


def check_inverse_time_decay(inverse_time_decay) -> None:
    """``inverse_time_decay(step, lr0, decay_rate, decay_steps) -> lr`` (one number) on values computed by hand."""
    name, settings = "inverse_time_decay", _INVERSE_TIME_SETTINGS
    steps, expected = np.array(list(_INVERSE_TIME_CASES)), np.array(list(_INVERSE_TIME_CASES.values()))
    rates = _rates(inverse_time_decay, name, steps, *settings)
    lr0, decay_rate, decay_steps = settings
    _compare_steps(rates, expected, f"{name}({_setting(lr0=lr0, decay_rate=decay_rate, decay_steps=decay_steps)})",
                   lambda k: f" at step {steps[k]}", "the formula gives", mistakes=INVERSE_TIME_MISTAKES,
                   inputs=(steps, expected, *settings))
    passed(name, f"values at {len(steps)} steps equal the formula's")


def _cosine(lr0: float, t_max: int, eta_min: float, steps: int) -> np.ndarray:
    """torch's CosineAnnealingLR(T_max=t_max, eta_min) at its steps 0, 1, ..., steps - 1."""
    return _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(o, t_max, eta_min), lr0, steps)


# Hand-computed: the linear warm-up of each of the check's settings (lr0, warmup_steps) at steps 0, ..., warmup_steps - 1,
# rising from 0 at step 0 by lr0 / warmup_steps per step.
_WARMUPS = {(0.4, 10): (0.0, 0.04, 0.08, 0.12, 0.16, 0.2, 0.24, 0.28, 0.32, 0.36),
            (1e-3, 4): (0.0, 2.5e-4, 5e-4, 7.5e-4),
            (0.1, 0): ()}


def _warmup(lr0: float, warmup: int, ahead: bool = False) -> np.ndarray:
    """The linear warm-up at steps 0, ..., warmup - 1 (``ahead``: one step ahead, reaching lr0 at its last step)."""
    values = _WARMUPS[lr0, warmup]
    return np.array([*values[1:], lr0] if ahead and values else values, dtype=float)


def _then(*parts, steps) -> np.ndarray:
    """``parts`` one after the other, the last value kept until there are len(steps) values."""
    rates = np.concatenate(parts)
    return np.concatenate([rates, np.full(len(steps) - len(rates), rates[-1])])[:len(steps)]


WARMUP_COSINE_MISTAKES = (       # inputs: (steps, lr0, warmup_steps, total_steps, lr_min)
    Mistake("optim.warmup_cosine.warmup_ahead", "is one step ahead during the warm-up: it starts from 0 at step 0 "
            "(steps count from 0) and rises by lr0 / warmup_steps per step.",
            returns=lambda s, lr0, warmup, total, low: _then(_warmup(lr0, warmup, ahead=True),
                                                             _cosine(lr0, total - warmup, low, total - warmup + 1),
                                                             steps=s)),
    Mistake("optim.warmup_cosine.lr_min_ignored", "ends at 0 instead of lr_min: the cosine runs from lr0 down to "
            "lr_min.", returns=lambda s, lr0, warmup, total, low: _then(_warmup(lr0, warmup),
                                                                        _cosine(lr0, total - warmup, 0.0,
                                                                                total - warmup + 1), steps=s)),
    Mistake("optim.warmup_cosine.cosine_from_step_0", "spans all total_steps with its cosine, from step 0; it should "
            "start at lr0 when the warm-up ends and span the remaining total_steps − warmup_steps steps.",
            returns=lambda s, lr0, warmup, total, low: _then(_warmup(lr0, warmup),
                                                             _cosine(lr0, total, low, total + 1)[warmup:], steps=s)),
    Mistake("optim.warmup_cosine.not_clamped", "rises again after total_steps: after total_steps the rate should stay "
            "at lr_min.", returns=lambda s, lr0, warmup, total, low: _then(_warmup(lr0, warmup),
                                                                           _cosine(lr0, total - warmup, low,
                                                                                   len(s) - warmup), steps=s)),
)


def check_warmup_cosine(warmup_cosine) -> None:
    """``warmup_cosine(step, lr0, warmup_steps, total_steps, lr_min) -> lr`` (one number): linear warm-up from 0,
    then torch's CosineAnnealingLR down to ``lr_min`` at ``total_steps``, and ``lr_min`` after it."""
    name = "warmup_cosine"
    for lr0, warmup, total, lr_min in ((0.4, 10, 50, 0.0), (1e-3, 4, 30, 1e-5), (0.1, 0, 12, 0.01)):
        steps = np.arange(total + 5)
        rates = _rates(warmup_cosine, name, steps, lr0, warmup, total, lr_min=lr_min)
        expected = _then(_warmup(lr0, warmup), _cosine(lr0, total - warmup, lr_min, total - warmup + 1),
                         np.full(4, lr_min), steps=steps)
        setting = _setting(lr0=lr0, warmup_steps=warmup, total_steps=total, lr_min=lr_min)
        _compare_steps(rates, expected, f"{name}({setting})", lambda k: f" at step {k}",
                       "the linear warm-up, then torch's CosineAnnealingLR, gives", mistakes=WARMUP_COSINE_MISTAKES,
                       inputs=(steps, lr0, warmup, total, lr_min))
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
    try:
        call(optimizer.step, name="MomentumSGD.step", shown="")
    except CheckFailed as failure:
        message = str(failure).rstrip(".")
        if failure.mistake != "crashed":
            raise
        if "leaf Variable that requires grad" in message:
            fail(f"{message}. The update is recorded by autograd: the parameters are changed while autograd "
                 "records operations, and the optimizer's own arithmetic must not become part of the graph.",
                 "optim.momentum_sgd.update_recorded_by_autograd")
        if "NoneType" in message:
            fail(f"{message}. This model has a parameter whose .grad is None (a frozen batch-norm scale, as in "
                 "FastCIFARNet): skip such parameters.", "optim.momentum_sgd.frozen_parameter_not_skipped")
        raise


def _same_parameters(a: list, b: list) -> bool:
    return len(a) == len(b) and all(close(p, q, TOL) for p, q in zip(a, b))


def _make(build, cls, weights, groups=None, **settings):
    """(model, optimizer): the tiny network, and the student's optimizer class over its parameters."""
    return call(build, cls, weights, groups, name="MomentumSGD", shown=f"params, {_setting(**settings)}", **settings)


def check_momentum_sgd(MomentumSGD) -> None:
    """``MomentumSGD(params, lr, momentum, nesterov, weight_decay)`` trains like torch.optim.SGD: the parameters of a
    tiny network (with a frozen parameter) over 15 steps, with parameter groups and a StepLR schedule, and
    ``step(closure)`` returns the closure's loss. The velocities live in the optimizer's state."""
    name = "MomentumSGD"
    subclasses, build, backward, step_lr, step_with_closure = (
        in_kernel(f) for f in (_subclasses_optimizer, _tiny_model, _backward, _step_lr, _step_with_closure))
    expect(subclasses(MomentumSGD), f"{name} should be a class that subclasses torch.optim.Optimizer.",
           "optim.momentum_sgd.not_an_optimizer")
    _own_update(MomentumSGD, "momentum_sgd")
    settings = dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)
    weights = _initial_weights(0)
    mine, optimizer = _make(build, MomentumSGD, weights, **settings)
    theirs, reference = _tiny_model(torch.optim.SGD, weights, **settings)
    groups = optimizer.param_groups
    expect(len(groups) == 1 and all(k in groups[0] for k in settings),
           f"{name}: its parameter groups do not hold its settings; each parameter group must hold lr, momentum, "
           "nesterov and weight_decay, as torch's optimizers' groups do.", "optim.momentum_sgd.settings_not_in_groups")
    before, batches = _parameters(mine), _batches(15, seed=1)
    _train(backward, mine, optimizer, batches[:1])
    changed = [not torch.equal(p, b) for p, b in zip(_parameters(mine), before)]
    expect(any(changed), f"{name}.step() did not change any parameter: the model's parameters must change in "
                         "place (a new value bound to a local name changes nothing in the model).",
           "optim.momentum_sgd.parameters_not_updated")
    expect(not changed[1], f"{name}.step() changed a parameter whose .grad is None (a frozen batch-norm scale): "
                           "skip such parameters.", "optim.momentum_sgd.frozen_parameter_not_skipped")
    _train(_backward, theirs, reference, batches[:1])
    expect(_same_parameters(_parameters(mine), _parameters(theirs)),
           f"{name}: after one step the parameters differ from torch.optim.SGD's with {_setting(**settings)}: does "
           "each parameter's update should be what sgd_momentum_step gives for its gradient and its group's settings.")
    _train(backward, mine, optimizer, batches[1:])
    _train(_backward, theirs, reference, batches[1:])
    expect(_same_parameters(_parameters(mine), _parameters(theirs)),
           f"{name}: the first step equals torch.optim.SGD's, but after 15 steps the parameters differ: the "
           "velocity is not kept from one step to the next in the optimizer's state.", "optim.momentum_sgd.velocity_not_kept")
    expect(any(isinstance(v, torch.Tensor) for s in optimizer.state.values() for v in s.values()),
           f"{name}: the velocities are not in the optimizer's state as tensors, so state_dict() does not save "
           "them and fit cannot move them to the GPU with the model.", "optim.momentum_sgd.velocity_outside_state")

    weights, batches, groups = _initial_weights(3), _batches(5, seed=4), [(0, {}), (4, {"lr": 0.01})]
    mine, optimizer = _make(build, MomentumSGD, weights, groups, lr=0.1, momentum=0.9)
    theirs, reference = _tiny_model(torch.optim.SGD, weights, groups, lr=0.1, momentum=0.9)
    _train(backward, mine, optimizer, batches, step_lr(optimizer, 2, 0.5))
    _train(_backward, theirs, reference, batches, _step_lr(reference, 2, 0.5))
    expect(_same_parameters(_parameters(mine), _parameters(theirs)),
           f"{name} with two parameter groups (lr 0.1 and 0.01) and a StepLR schedule differs from torch.optim.SGD: "
           "a learning rate changed by a scheduler between steps is not used, or a group's own settings are not: "
           "each step must use the current settings of each parameter's group.", "optim.momentum_sgd.settings_not_from_groups")
    model, optimizer = _make(build, MomentumSGD, _initial_weights(5), lr=0.01, momentum=0.9)
    x, y = torch.randn(4, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(6)), torch.arange(4)
    returned = call(step_with_closure, model, optimizer, x, y, name=f"{name}.step", shown="closure")
    if not (isinstance(returned, torch.Tensor) and returned.ndim == 0):
        fail(f"{name}.step(closure) returned {describe(returned)}: step(closure) must evaluate the closure and "
             "return its loss, as torch's optimizers do.", "optim.momentum_sgd.closure_ignored")
    passed(name, "equal to torch.optim.SGD over 15 steps, with parameter groups, a scheduler, frozen parameters "
                 "and a closure")
