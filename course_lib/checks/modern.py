"""Checks for notebook 07 (inside a modern CNN): He initialisation, batch normalisation and dropout written by
hand, a batch-norm layer built on them, and a residual block and a small ResNet built from a table.

Each check is written with :mod:`course_lib.checks.toolkit`: the contract, then a table of usual mistakes with
stable ids (``"modern.<exercise>.<mistake>"``). Random functions are judged by statistics of many draws (their
spread, their mean, their shape) and by reproducibility with a seeded generator, never by one exact draw.
References come from torch (``nn.init``'s gains, ``F.batch_norm``, autograd, ``nn.BatchNorm2d``); the residual
networks are compared with a specification held here as data (the layers in the order forward meets them, and
what each stage does), from which the reference is built with torch's layers.

Under the autograder the student's functions and classes stay in the notebook's kernel: the steps that touch a
class (``_..._step``) run there through ``in_kernel`` and exchange plain data; every verdict is decided here.
"""
from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks.cnn import logits_of
from course_lib.checks.remote import forbid, in_kernel
from course_lib.checks.toolkit import (CheckFailed, Mistake, as_array, call, close, compare, describe, diagnose,
                                       difference, expect, expect_shape, expect_tuple, fail, passed)

__all__ = ["check_kaiming_normal", "check_batchnorm_forward", "check_batchnorm_backward", "check_batchnorm_layer",
           "check_dropout_forward", "check_dropout_backward", "check_basic_block", "check_resnet",
           "logits_of"]


def _call(fn, *args, crashes=(), crash_inputs=(), **options):
    """``call``, where a crash whose message shows one of ``crashes`` (given ``crash_inputs``) fails naming that
    mistake."""
    try:
        return call(fn, *args, **options)
    except CheckFailed as failure:
        if failure.mistake == "crashed":
            diagnose(str(failure), f"{str(failure).rstrip('.')}.", crashes, inputs=crash_inputs)
        raise


def _own_work(fn, exercise: str, borrowed, what: str) -> None:
    """The exercise must be written here, not borrowed from torch (read from the source)."""
    used = forbid(fn, borrowed)
    expect(used is None, f"{getattr(fn, '__name__', 'your code')} {used}: this exercise writes {what} yourself "
                         "(torch's version is what your result is compared with).", f"modern.{exercise}.borrows_torch")


def _tensor(value, what: str) -> torch.Tensor:
    expect(isinstance(value, torch.Tensor), f"{what} is {describe(value)}; expected a torch tensor.", "wrong_type")
    return value.detach()


# ---------------------------------------------------------------- He (Kaiming) initialisation

GAINS = {"linear": 1.0, "sigmoid": 1.0, "tanh": 5 / 3, "relu": 2 ** 0.5}


def _gain(nonlinearity: str, a: float) -> float:
    return math.sqrt(2.0 / (1 + a * a)) if nonlinearity == "leaky_relu" else GAINS[nonlinearity]


def _fans(shape) -> tuple[int, int]:
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _std(shape, a, mode, nonlinearity) -> float:
    fan_in, fan_out = _fans(shape)
    return _gain(nonlinearity, a) / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def _spread_is(factor):
    """A mistake whose samples' standard deviation is ``factor(shape, a, mode, nonlinearity)`` (within 3%)."""
    def shows(stats, shape, a, mode, nonlinearity):
        expected = factor(shape, a, mode, nonlinearity)
        return expected > 0 and abs(stats["std"] / expected - 1) < 0.03
    return shows


KAIMING_MISTAKES = (
    Mistake("modern.kaiming_normal.uniform", "has the right spread but the wrong shape: its values are spread "
            "evenly over an interval (a uniform distribution, as kaiming_uniform_ draws); He's rule here draws "
            "from a normal distribution.", shows=lambda stats, *case: abs(stats["kurtosis"] - 1.8) < 0.15),
    Mistake("modern.kaiming_normal.other_mode", "has the spread of the other mode: fan_in counts the inputs of "
            "one output unit (the input channels times the kernel's area), fan_out the outputs of one input unit "
            "(the output channels times the kernel's area).", shows=_spread_is(
                lambda s, a, m, n: _std(s, a, "fan_out" if m == "fan_in" else "fan_in", n))),
    Mistake("modern.kaiming_normal.no_receptive_field", "counts the fan without the kernel's area: a 3×3 "
            "convolution's output unit sees its input channels × 3 × 3 inputs.", shows=_spread_is(
                lambda s, a, m, n: _gain(n, a) / math.sqrt(s[1] if m == "fan_in" else s[0]) if len(s) > 2 else 0)),
    Mistake("modern.kaiming_normal.xavier", "has Glorot's (Xavier's) spread, which averages fan_in and fan_out; "
            "He's rule divides by one fan, chosen by mode.", shows=_spread_is(
                lambda s, a, m, n: _gain(n, a) * math.sqrt(2.0 / sum(_fans(s))))),
    Mistake("modern.kaiming_normal.no_gain", "leaves out the gain: the standard deviation is gain / sqrt(fan), "
            "and the gain depends on the nonlinearity (and on a for leaky_relu).",
            shows=_spread_is(lambda s, a, m, n: _std(s, a, m, "linear") if _gain(n, a) != 1 else 0)),
    Mistake("modern.kaiming_normal.gain_squared", "uses the gain squared (2 for ReLU): the variance is "
            "gain² / fan, so the standard deviation is gain / sqrt(fan).",
            shows=_spread_is(lambda s, a, m, n: _std(s, a, m, n) * _gain(n, a) if _gain(n, a) != 1 else 0)),
    Mistake("modern.kaiming_normal.variance_as_std", "uses the variance gain² / fan as the standard deviation: "
            "take its square root.", shows=_spread_is(lambda s, a, m, n: _std(s, a, m, n) ** 2)),
    Mistake("modern.kaiming_normal.no_square_root", "divides by the fan, not by its square root.",
            shows=_spread_is(lambda s, a, m, n: _std(s, a, m, n) / math.sqrt(_fans(s)[0 if m == "fan_in" else 1]))),
    Mistake("modern.kaiming_normal.slope_ignored", "ignores a: a leaky ReLU with negative slope a has gain "
            "sqrt(2 / (1 + a²)), not ReLU's sqrt(2).",
            shows=_spread_is(lambda s, a, m, n: _std(s, 0.0, m, n) if n == "leaky_relu" and a else 0)),
    Mistake("modern.kaiming_normal.relu_gain_everywhere", "uses ReLU's gain for another nonlinearity: tanh's "
            "gain is 5/3, linear's and sigmoid's 1.",
            shows=_spread_is(lambda s, a, m, n: _std(s, 0.0, m, "relu") if n in GAINS and n != "relu" else 0)),
)


def _kaiming_step(kaiming_normal_, shape, options, seed, fill, dtype="float32"):
    """kaiming_normal_ on a tensor of ``shape`` and ``dtype`` filled with ``fill`` that requires gradients (as a
    layer's weight does), with a generator seeded ``seed`` (None: none given), as (values, whether the result is
    that tensor, the tensor after the call, whether it still requires gradients). Runs where the function lives."""
    import torch

    tensor = torch.full(shape, float(fill), dtype=getattr(torch, dtype)).requires_grad_(True)
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    result = kaiming_normal_(tensor, **options, **({} if generator is None else {"generator": generator}))
    values = result.detach().clone() if isinstance(result, torch.Tensor) else result
    return values, result is tensor, tensor.detach().clone(), tensor.requires_grad


def _moments(values: torch.Tensor) -> dict:
    x = values.double().flatten()
    mean, std = float(x.mean()), float(x.std())
    kurtosis = float((((x - mean) / std) ** 4).mean()) if std > 0 else float("nan")
    return {"mean": mean, "std": std, "kurtosis": kurtosis, "n": x.numel()}


KAIMING_CRASHES = (
    Mistake("modern.kaiming_normal.recorded_by_autograd", "A weight that requires gradients cannot be changed in "
            "place while autograd records: fill it with autograd off (torch.no_grad()), which leaves its "
            "requires_grad as it is.", shows=lambda message: "requires grad is being used in an in-place" in message),
)

# (shape, options): conv weights, a linear weight; every mode and gain. Each mistake of KAIMING_MISTAKES changes the
# spread by at least 6% in the first case where it changes it at all, and no earlier mistake has that spread there.
KAIMING_CASES = (
    ((40, 56, 3, 3), {"mode": "fan_in", "nonlinearity": "relu"}),
    ((48, 96, 3, 3), {"mode": "fan_out", "nonlinearity": "relu"}),
    ((300, 700), {"mode": "fan_in", "nonlinearity": "relu"}),
    ((64, 24, 5, 5), {"a": 0.5, "mode": "fan_in", "nonlinearity": "leaky_relu"}),
    ((300, 500), {"mode": "fan_in", "nonlinearity": "tanh"}),
    ((40, 80, 3, 3), {"mode": "fan_in", "nonlinearity": "linear"}),
)


def check_kaiming_normal(kaiming_normal_) -> None:
    """kaiming_normal_(tensor, a, mode, nonlinearity, generator) on conv and linear weights, every mode and gain:
    the samples' standard deviation within 3% of torch's gain / sqrt(fan) (over at least 18,000 draws, its
    standard error is under 0.6%), mean 0, a normal distribution's kurtosis (3), the tensor filled in place and
    returned, reproducible with a seeded generator; a weight that requires gradients keeps requiring them, a
    float64 tensor stays float64; a tensor of fewer than 2 dimensions raises ValueError."""
    _own_work(kaiming_normal_, "kaiming_normal", ("torch.nn.init",), "He's initialisation")
    step = in_kernel(_kaiming_step)
    for shape, options in KAIMING_CASES:
        case = (shape, options.get("a", 0.0), options["mode"], options["nonlinearity"])
        settings = ", ".join(f"{k}={v!r}" for k, v in options.items())
        what = f"kaiming_normal_ on a tensor of shape {shape} ({settings})"
        values, same, after, learns = _call(step, kaiming_normal_, shape, options, 7, 0.0, name="kaiming_normal_",
                                            shown=f"tensor of shape {shape}, {settings}", crashes=KAIMING_CRASHES)
        expect(values is not None, f"{what} returned None: return the tensor you filled (as torch's "
                                   "in-place initialisers do).", "returned_none")
        values = _tensor(values, f"{what}'s result")
        expect_shape(values, shape, f"{what}'s result")
        expect(same or not torch.equal(after, torch.zeros(shape)),
               f"{what} left the tensor as it was and returned a new one: an initialiser fills the tensor it is "
               "given, in place (a layer's weight is that tensor), and returns it.", "modern.kaiming_normal.not_in_place")
        expect(torch.equal(after, values), f"{what} returned values other than those it wrote into the tensor.",
               "modern.kaiming_normal.not_in_place")
        expect(learns, f"{what} turned off requires_grad of a tensor that required gradients: a layer's weight must "
                       "go on learning; fill it with autograd off instead.", "modern.kaiming_normal.requires_grad_lost")
        stats = _moments(values)
        expected = _std(*case)
        expect(abs(stats["mean"]) < 5 * expected / math.sqrt(stats["n"]),
               f"{what} has mean {stats['mean']:.3g} over {stats['n']:,} draws; He's weights are centred on 0.",
               "modern.kaiming_normal.not_centred")
        if abs(stats["std"] / expected - 1) >= 0.03 or abs(stats["kurtosis"] - 3) >= 0.2:
            where = (f"{what} draws values with standard deviation {stats['std']:.4g} and kurtosis "
                     f"{stats['kurtosis']:.2f}, torch's {expected:.4g} and 3 (a normal distribution):")
            diagnose(stats, where, KAIMING_MISTAKES, inputs=case)
            fail(f"{where} the standard deviation is gain / sqrt(fan), with the gain of the nonlinearity and the "
                 "fan of the mode.", "modern.kaiming_normal.spread")
    shape, options = KAIMING_CASES[0]
    first, second = (_call(step, kaiming_normal_, shape, options, 11, 0.0, name="kaiming_normal_")[0]
                     for _ in range(2))
    other = _call(step, kaiming_normal_, shape, options, 12, 0.0, name="kaiming_normal_")[0]
    expect(torch.equal(first, second) and not torch.equal(first, other),
           "kaiming_normal_ with two generators seeded alike drew different values (or with different seeds the "
           "same ones): draw every value from the generator it is given.", "modern.kaiming_normal.ignores_generator")
    values, _, after, _ = _call(step, kaiming_normal_, shape, options, 11, 0.0, "float64", name="kaiming_normal_",
                                shown=f"float64 tensor of shape {shape}")
    kinds = {str(t.dtype).replace("torch.", "") for t in (_tensor(values, "kaiming_normal_'s result"), after)}
    expect(kinds == {"float64"}, f"kaiming_normal_ on a float64 tensor of shape {shape} left it (or returned it) as "
                                 f"{' and '.join(sorted(kinds))}: fill the tensor in its own dtype, in place.",
           "modern.kaiming_normal.dtype_changed")
    try:
        in_kernel(_kaiming_step)(kaiming_normal_, (10,), {"mode": "fan_in", "nonlinearity": "relu"}, 0, 0.0)
    except ValueError:
        pass
    except Exception as err:
        fail(f"kaiming_normal_ on a tensor of shape (10,) raised {type(err).__name__}; a tensor of fewer than 2 "
             "dimensions has no fan: raise ValueError, saying so.", "modern.kaiming_normal.no_value_error")
    else:
        fail("kaiming_normal_ on a tensor of shape (10,) did not raise: a tensor of fewer than 2 dimensions has no "
             "fan_in or fan_out; raise ValueError, saying so.", "modern.kaiming_normal.no_value_error")
    passed("kaiming_normal_", f"{len(KAIMING_CASES)} shapes and settings, spread within 3% of torch's")


# ---------------------------------------------------------------- batch normalisation by hand

def _axes(x: torch.Tensor) -> tuple:
    """The axes batch norm averages over: every axis but the channels' (axis 1)."""
    return tuple(axis for axis in range(x.dim()) if axis != 1)


def _per_channel(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(1, -1) if x.dim() == 2 else v.view(1, -1, 1, 1)


def _torch_bn(x, gamma, beta, state, train, momentum, eps):
    """torch's batch norm: (out, running_mean, running_var after the call)."""
    mean, var = state["running_mean"].clone(), state["running_var"].clone()
    out = F.batch_norm(x, mean, var, gamma, beta, training=train, momentum=momentum, eps=eps)
    return out, mean, var


def _batch_stats(x, unbiased=False):
    return x.mean(_axes(x)), x.var(_axes(x), unbiased=unbiased)


def _normalised_by(x, gamma, beta, mean, var, eps):
    """torch's batch norm in evaluation mode with the statistics (mean, var)."""
    return F.batch_norm(x, mean, var, gamma, beta, training=False, eps=eps)


def _eps_outside_root(x, gamma, beta, state, train, momentum, eps):
    mean, var = _batch_stats(x) if train else tuple(state[k] for k in ("running_mean", "running_var"))
    return _normalised_by(x, gamma, beta, mean, (var.sqrt() + eps) ** 2 - eps, eps)


def _eps_ignored(out, x, gamma, beta, state, train, momentum, eps) -> bool:
    """Whether out is batch norm's with eps 0 or torch's default 1e-5 in place of the argument eps."""
    stats = _batch_stats(x) if train else tuple(state[k] for k in ("running_mean", "running_var"))
    return any(close(out, _normalised_by(x, gamma, beta, *stats, other)) for other in (0.0, 1e-5) if other != eps)


def _per_sample(x, gamma, beta, state, train, momentum, eps):
    out = F.layer_norm(x, x.shape[1:], eps=eps)
    return out * _per_channel(gamma, x) + _per_channel(beta, x)


def _over_batch_axis_only(x, gamma, beta, state, train, momentum, eps):
    if x.dim() == 2:
        return None
    mean, var = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)
    return (x - mean) / (var + eps).sqrt() * _per_channel(gamma, x) + _per_channel(beta, x)


BATCHNORM_OUT_MISTAKES = (
    Mistake("modern.batchnorm_forward.unbiased_variance", "is normalised with the unbiased variance (divided by "
            "m - 1): training mode normalises with the batch's biased variance (divided by m, the values per "
            "channel); only the running average stores the unbiased one.",
            returns=lambda x, g, b, s, train, m, eps: _normalised_by(x, g, b, *_batch_stats(x, True), eps)
            if train else None),
    Mistake("modern.batchnorm_forward.per_sample", "is normalised per sample (over its channels and pixels, as "
            "layer norm does): batch norm's statistics are per channel, over the batch (and the pixels).",
            returns=_per_sample),
    Mistake("modern.batchnorm_forward.pixels_not_pooled", "has statistics per channel and pixel, over the batch "
            "only: for (N, C, H, W) each channel's mean and variance run over N, H and W together.",
            returns=_over_batch_axis_only),
    Mistake("modern.batchnorm_forward.eps_outside_root", "adds eps outside the square root: the denominator is "
            "sqrt(var + eps).", returns=_eps_outside_root),
    Mistake("modern.batchnorm_forward.eps_ignored", "ignores the argument eps (it matches eps 0 or the default "
            "1e-5): add the given eps to the variance.", shows=_eps_ignored),
    Mistake("modern.batchnorm_forward.gamma_beta_swapped", "uses gamma as the shift and beta as the scale: out = "
            "gamma · x̂ + beta.", returns=lambda x, g, b, s, train, m, eps: _torch_bn(x, b, g, s, train, m, eps)[0]),
    Mistake("modern.batchnorm_forward.no_affine", "is the normalised x̂ alone: scale it by gamma and shift it by "
            "beta.", returns=lambda x, g, b, s, train, m, eps: _torch_bn(x, None, None, s, train, m, eps)[0]),
    Mistake("modern.batchnorm_forward.running_stats_in_training", "is normalised with the running statistics in "
            "training mode: training normalises with the batch's own mean and variance.",
            returns=lambda x, g, b, s, train, m, eps: _torch_bn(x, g, b, s, False, m, eps)[0] if train else None),
    Mistake("modern.batchnorm_forward.running_stats_in_training", "is normalised with the running statistics "
            "(just updated) in training mode: training normalises with the batch's own mean and variance.",
            returns=lambda x, g, b, s, train, m, eps: _normalised_by(x, g, b, *_running_update(x, s, m), eps)
            if train else None),
    Mistake("modern.batchnorm_forward.batch_stats_in_eval", "is normalised with the batch's statistics in "
            "evaluation mode: evaluation uses the running statistics, so that an image's output does not depend "
            "on the other images of its batch.",
            returns=lambda x, g, b, s, train, m, eps: _torch_bn(x, g, b, s, True, m, eps)[0] if not train else None),
)


def _running_update(x, state, momentum, unbiased=True, reversed_momentum=False, count=None):
    """The running statistics after a training batch x; ``count``: the variance made unbiased with count values
    per channel instead of the true count."""
    mean, var = _batch_stats(x, unbiased)
    if count is not None:
        var = _batch_stats(x)[1] * count / (count - 1)
    weight = 1 - momentum if reversed_momentum else momentum
    return ((1 - weight) * state["running_mean"] + weight * mean, (1 - weight) * state["running_var"] + weight * var)


RUNNING_MISTAKES = (
    Mistake("modern.batchnorm_forward.running_not_updated", "did not change in training mode: update the running "
            "mean and variance in state with each training batch.",
            returns=lambda x, s, train, m: tuple(s[k] for k in ("running_mean", "running_var")) if train else None),
    Mistake("modern.batchnorm_forward.updated_in_eval", "changed in evaluation mode: evaluation reads the running "
            "statistics and leaves them as they are.",
            returns=lambda x, s, train, m: _running_update(x, s, m) if not train else None),
    Mistake("modern.batchnorm_forward.biased_running_variance", "averages the biased variance (divided by m): "
            "nn.BatchNorm2d keeps the unbiased one (divided by m - 1, m the values per channel) in running_var.",
            returns=lambda x, s, train, m: _running_update(x, s, m, unbiased=False) if train else None),
    Mistake("modern.batchnorm_forward.momentum_reversed", "gives the new batch the weight 1 - momentum: in torch's "
            "convention the new statistics get the weight momentum, the old running value 1 - momentum.",
            returns=lambda x, s, train, m: _running_update(x, s, m, reversed_momentum=True) if train else None),
    Mistake("modern.batchnorm_forward.correction_by_batch_size", "makes the variance unbiased with the batch size N "
            "alone: it divides by m - 1, m the values per channel (N·H·W for images).",
            returns=lambda x, s, train, m: _running_update(x, s, m, count=x.shape[0]) if train and x.dim() > 2
            else None),
)


def _bn_case(seed: int, shape, train: bool, momentum=0.1, eps=1e-5):
    g = torch.Generator().manual_seed(seed)
    c = shape[1]
    scale = 0.5 + 2 * torch.rand(c, generator=g, dtype=torch.float64)
    shift = 3 * torch.randn(c, generator=g, dtype=torch.float64)
    x = torch.randn(shape, generator=g, dtype=torch.float64) * _per_channel(scale, torch.empty(shape)) \
        + _per_channel(shift, torch.empty(shape))
    gamma = 0.5 + torch.rand(c, generator=g, dtype=torch.float64)
    beta = torch.randn(c, generator=g, dtype=torch.float64)
    state = {"running_mean": torch.randn(c, generator=g, dtype=torch.float64),
             "running_var": 0.5 + torch.rand(c, generator=g, dtype=torch.float64)}
    return x, gamma, beta, state, train, momentum, eps


BN_CASES = (   # (seed, shape, train, momentum, eps): both layouts, both modes; eps large enough to be seen
    (0, (6, 3, 4, 5), True, 0.1, 1e-5),
    (1, (8, 5), True, 0.3, 0.1),
    (2, (6, 3, 4, 5), False, 0.1, 1e-5),
    (3, (8, 5), False, 0.1, 0.1),
    (4, (2, 4, 3, 3), True, 0.2, 0.5),
)


def _describe_case(x, train, momentum, eps) -> str:
    return (f"batchnorm_forward on x of shape {tuple(x.shape)} in {'training' if train else 'evaluation'} mode "
            f"(momentum={momentum}, eps={eps})")


def _run_forward(batchnorm_forward, case):
    """(out, cache, state after the call) of the student's forward pass on a copy of ``case``."""
    x, gamma, beta, state, train, momentum, eps = case
    sent = {k: v.clone() for k, v in state.items()}
    xs, gs, bs = x.clone(), gamma.clone(), beta.clone()
    result = _call(lambda: batchnorm_forward(xs, gs, bs, sent, train, momentum=momentum, eps=eps),
                   name="batchnorm_forward", shown=f"x of shape {tuple(x.shape)}, gamma, beta, state, train={train}",
                   returns=("out", "cache"))
    expect(torch.equal(xs, x) and torch.equal(gs, gamma) and torch.equal(bs, beta),
           "batchnorm_forward changed x, gamma or beta in place: leave them as they are (the backward pass and the "
           "next step need them).", "changed_argument")
    return result[0], result[1], sent


def check_batchnorm_forward(batchnorm_forward) -> None:
    """batchnorm_forward(x, gamma, beta, state, train, momentum, eps) against torch's F.batch_norm (float64) on
    (N, C, H, W) and (N, C) inputs in both modes: out, and state's running_mean and running_var afterwards
    (updated in training mode with the unbiased variance, unchanged in evaluation mode)."""
    _own_work(batchnorm_forward, "batchnorm_forward", ("torch.nn.functional.batch_norm", "torch.batch_norm",
                                                       "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d",
                                                       "torch.nn.functional.layer_norm"), "batch normalisation")
    for seed, shape, train, momentum, eps in BN_CASES:
        case = _bn_case(seed, shape, train, momentum, eps)
        x, gamma, beta, state = case[:4]
        what = _describe_case(x, train, momentum, eps)
        out, _, after = _run_forward(batchnorm_forward, case)
        expected, mean, var = _torch_bn(*case)
        expect_shape(_tensor(out, f"{what}: out"), x.shape, f"{what}: out")
        compare(_tensor(out, f"{what}: out"), expected, f"{what}: out", mistakes=BATCHNORM_OUT_MISTAKES,
                inputs=case, expected_as="torch's")
        expect(isinstance(after, dict) and {"running_mean", "running_var"} <= set(after),
               f"{what}: state lost its keys running_mean and running_var: update their values, keep the keys.",
               "modern.batchnorm_forward.state_keys")
        running = (_tensor(after["running_mean"], "state['running_mean']"),
                   _tensor(after["running_var"], "state['running_var']"))
        compare(running, (mean, var), f"{what}: the running statistics (running_mean, running_var)",
                mistakes=RUNNING_MISTAKES, inputs=(x, state, train, momentum), expected_as="nn.BatchNorm2d's")
    passed("batchnorm_forward", "both layouts and both modes, running statistics as nn.BatchNorm2d keeps them")


def _torch_bn_grads(x, gamma, beta, state, train, momentum, eps, dout, unbiased=False, constant=(), unit_gamma=False,
                    running_as_batch=False):
    """Autograd's (dx, dgamma, dbeta) through batch norm; ``constant``: the batch statistics ("mean", "var") it
    treats as constants; ``unbiased``: normalising with the unbiased variance; ``unit_gamma``: dx as if gamma
    were 1; ``running_as_batch``: in evaluation mode, statistics equal to the running ones that change with x as
    a batch's mean and mean squared deviation (from the running mean) would."""
    x, g, b = (t.clone().requires_grad_(True) for t in (x, gamma, beta))
    if train:
        mean, var = _batch_stats(x, unbiased)
        mean = mean.detach() if "mean" in constant else mean
        var = var.detach() if "var" in constant else var
    elif running_as_batch:
        batch_mean = x.mean(_axes(x))
        spread = ((x - _per_channel(state["running_mean"], x)) ** 2).mean(_axes(x))
        mean = state["running_mean"] + batch_mean - batch_mean.detach()
        var = state["running_var"] + spread - spread.detach()
    else:
        mean, var = (state[key] for key in ("running_mean", "running_var"))
    xhat = (x - _per_channel(mean, x)) / (_per_channel(var, x) + eps).sqrt()
    scale = torch.ones_like(g) if unit_gamma else g
    (xhat * _per_channel(scale, x) + _per_channel(b, x)).backward(dout)
    return x.grad, g.grad, b.grad


def _dx_mistake(**variant):
    return lambda *case: _torch_bn_grads(*case, **variant)[0] if case[4] or not variant.get("constant") else None


def _dx_averaged_over_batch_size(*case):
    """dx whose terms through the statistics average over the N samples alone, not the m values of a channel:
    autograd's terms through the statistics scaled by m / N."""
    x, train = case[0], case[4]
    if not train or x.dim() == 2:
        return None
    exact, frozen = _torch_bn_grads(*case)[0], _torch_bn_grads(*case, constant=("mean", "var"))[0]
    return frozen + (exact - frozen) * (_count(x) / x.shape[0])


EVAL_FORMULA = ("uses the training-mode gradient for a pass in evaluation mode: there the statistics are the running "
                "ones, constants, and x̂ is linear in x.")

BATCHNORM_DX_MISTAKES = (
    Mistake("modern.batchnorm_backward.statistics_as_constants", "treats the batch's mean and variance as "
            "constants: in training mode both depend on every x of the channel, and the gradient flows through "
            "them too.", returns=_dx_mistake(constant=("mean", "var"))),
    Mistake("modern.batchnorm_backward.mean_path_only", "follows the gradient through the mean but not through "
            "the variance: the variance depends on x as well.", returns=_dx_mistake(constant=("var",))),
    Mistake("modern.batchnorm_backward.variance_path_only", "follows the gradient through the variance but not "
            "through the mean: the mean depends on x as well.", returns=_dx_mistake(constant=("mean",))),
    Mistake("modern.batchnorm_backward.unbiased_variance", "is the gradient of a normalisation by the unbiased "
            "variance (m - 1): the forward pass divides by m.", returns=_dx_mistake(unbiased=True)),
    Mistake("modern.batchnorm_backward.gamma_left_out", "leaves out gamma: out = gamma · x̂ + beta, so the "
            "gradient reaching x̂ is dout times gamma.", returns=_dx_mistake(unit_gamma=True)),
    Mistake("modern.batchnorm_backward.training_formula_in_eval", EVAL_FORMULA,     # the batch's statistics again
            returns=lambda x, g, b, s, train, m, eps, dout: None if train else
            _torch_bn_grads(x, g, b, s, True, m, eps, dout)[0]),
    Mistake("modern.batchnorm_backward.training_formula_in_eval", EVAL_FORMULA,     # on the cached running ones
            returns=lambda *case: None if case[4] else _torch_bn_grads(*case, running_as_batch=True)[0]),
    Mistake("modern.batchnorm_backward.count_by_batch_size", "averages over the batch size N alone: the mean and "
            "variance of a channel run over its m values (N·H·W for images), and so do the sums in dx.",
            returns=_dx_averaged_over_batch_size),
)

def _count(x) -> int:
    return math.prod(x.shape) // x.shape[1]


DGAMMA_MISTAKES = (
    Mistake("modern.batchnorm_backward.dgamma_of_x", "is the sum of dout · x: gamma scales the normalised x̂, so "
            "its gradient sums dout · x̂.", returns=lambda x, g, b, s, train, m, eps, dout: (dout * x).sum(_axes(x))),
    Mistake("modern.batchnorm_backward.dgamma_averaged", "is an average over the batch: gamma is shared by every "
            "value of its channel, so its gradient is the sum of theirs.",
            returns=lambda *case: _torch_bn_grads(*case)[1] / _count(case[0])),
)
DBETA_MISTAKES = (
    Mistake("modern.batchnorm_backward.dbeta_averaged", "is an average over the batch: beta is shared by every "
            "value of its channel, so its gradient is the sum of theirs.",
            returns=lambda x, g, b, s, train, m, eps, dout: dout.mean(_axes(x))),
)


def check_batchnorm_backward(batchnorm_backward, batchnorm_forward) -> None:
    """batchnorm_backward(dout, cache), with the cache of your batchnorm_forward, against torch's autograd through
    batch norm (float64) on (N, C, H, W) and (N, C) inputs in both modes: (dx, dgamma, dbeta), each of its
    argument's shape."""
    _own_work(batchnorm_backward, "batchnorm_backward", ("torch.autograd", "torch.nn.functional"),
              "the backward pass")
    for seed, shape, train, momentum, eps in BN_CASES:
        case = _bn_case(seed, shape, train, momentum, eps)
        x = case[0]
        dout = torch.randn(x.shape, generator=torch.Generator().manual_seed(100 + seed), dtype=torch.float64)
        _, cache, _ = _run_forward(batchnorm_forward, case)
        what = (f"batchnorm_backward after a forward pass on x of shape {tuple(x.shape)} in "
                f"{'training' if train else 'evaluation'} mode")
        grads = _call(batchnorm_backward, dout, cache, name="batchnorm_backward",
                      shown=f"dout of shape {tuple(x.shape)}, cache", returns=("dx", "dgamma", "dbeta"))
        dx, dgamma, dbeta = (_tensor(v, f"{what}: {name}") for v, name in zip(grads, ("dx", "dgamma", "dbeta")))
        expect_shape(dx, x.shape, f"{what}: dx")
        for value, name in ((dgamma, "dgamma"), (dbeta, "dbeta")):
            if tuple(value.shape) != (x.shape[1],):
                fail(f"{what}: {name} has shape {tuple(value.shape)}; it should have gamma's shape ({x.shape[1]},): "
                     "sum over every axis but the channels'.", "modern.batchnorm_backward.param_shape")
        expected = _torch_bn_grads(*case, dout)
        inputs = (*case, dout)
        compare(dx, expected[0], f"{what}: dx", mistakes=BATCHNORM_DX_MISTAKES, inputs=inputs, expected_as="autograd's")
        compare(dgamma, expected[1], f"{what}: dgamma", mistakes=DGAMMA_MISTAKES, inputs=inputs,
                expected_as="autograd's")
        compare(dbeta, expected[2], f"{what}: dbeta", mistakes=DBETA_MISTAKES, inputs=inputs, expected_as="autograd's")
    passed("batchnorm_backward", "dx, dgamma and dbeta as autograd's, both layouts and both modes")


# ---------------------------------------------------------------- a batch-norm layer on the hand-written functions

def _bn_layer_step(layer_class, weights, batches, lr, momentum, eps):
    """A small network with ``layer_class(4, momentum=..., eps=...)`` after its convolution, given ``weights``
    (conv, batch-norm weight and bias, linear), trained with plain SGD on ``batches``: what the layer registered,
    its state when new, the loss of every step, the layer's state at the end and the network's outputs in
    evaluation mode. Runs where the class lives."""
    from torch import nn

    from course_lib.checks.modern import _train_small_network

    layer = layer_class(4, momentum=momentum, eps=eps)
    if not isinstance(layer, nn.Module):
        return {"module": False}
    fresh = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    facts = {"module": True, "params": [(n, tuple(p.shape)) for n, p in layer.named_parameters()],
             "buffers": [(n, tuple(b.shape)) for n, b in layer.named_buffers()], "fresh": fresh}
    shapes = dict(facts["params"] + facts["buffers"])
    if {n for n, _ in facts["params"]} != {"weight", "bias"} or any(
            shapes.get(key, (4,)) != (4,) for key in ("weight", "bias", "running_mean", "running_var")):
        return facts                       # the check names what is missing or misshapen; training could crash
    facts["losses"], facts["eval"] = _train_small_network(layer, weights, batches, lr)
    facts["state"] = {k: v.detach().clone() for k, v in layer.state_dict().items()}
    return facts


def _train_small_network(layer, weights, batches, lr):
    """A convolution, ``layer`` (a batch norm of 4 channels), ReLU, pooling and a linear layer in float64, from
    ``weights``, trained with plain SGD on ``batches``: (the loss of every step, the outputs in evaluation mode on
    the first batch). Runs in the kernel for the student's layer, here for torch's."""
    import torch
    from torch import nn

    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1, bias=False), layer, nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(4, 3)).double()
    with torch.no_grad():
        model[0].weight.copy_(weights["conv"])
        layer.weight.copy_(weights["gamma"])
        layer.bias.copy_(weights["beta"])
        model[5].weight.copy_(weights["linear"])
        model[5].bias.zero_()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    model.train()
    losses = []
    for x, y in batches:
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        return losses, model(batches[0][0])


def _reference_run(weights, batches, lr, momentum, eps, track=True):
    layer = nn.BatchNorm2d(4, momentum=momentum, eps=eps, track_running_stats=track).double()
    losses, out = _train_small_network(layer, weights, batches, lr)
    return {"losses": losses, "eval": out, "state": layer.state_dict()}


def _run_with(key: str, **changes):
    """What the reference network gives for ``key`` ("losses", "running", "eval") with other settings."""
    def returns(weights, batches, lr, momentum, eps):
        settings = {"momentum": momentum, "eps": eps, "track": True, **changes}
        run = _reference_run(weights, batches, lr, **settings)
        return (run["state"]["running_mean"], run["state"]["running_var"]) if key == "running" else run[key]
    return returns


LAYER_CRASHES = (
    Mistake("modern.batchnorm_layer.not_a_module", "The layer is not an nn.Module: subclass nn.Module, whose "
            "register_buffer and parameters the layer needs.",
            shows=lambda message: "object has no attribute 'register_buffer'" in message),
)

LAYER_MISTAKES = {
    "losses": (Mistake("modern.batchnorm_layer.default_eps", "match eps 1e-5: pass the layer's eps on to "
                       "batchnorm_forward.", returns=_run_with("losses", eps=1e-5)),),
    "running": (Mistake("modern.batchnorm_layer.default_momentum", "match momentum 0.1: pass the layer's momentum "
                        "on to batchnorm_forward.", returns=_run_with("running", momentum=0.1)),),
    "eval": (Mistake("modern.batchnorm_layer.ignores_mode", "match the batch's own statistics: in evaluation mode "
                     "the layer normalises with its running statistics.",
                     returns=_run_with("eval", track=False)),),
}


def check_batchnorm_layer(layer_class) -> None:
    """``layer_class(4, momentum=0.3, eps=0.01)`` in a small network trained 6 steps with SGD, against the same
    network with ``nn.BatchNorm2d``: parameters weight and bias (C,), buffers running_mean and running_var (C,)
    (new: 1, 0, 0 and 1), every step's loss, the running statistics at the end and the outputs in evaluation
    mode."""
    name = getattr(layer_class, "__name__", "your layer")
    _own_work(layer_class, "batchnorm_layer", ("torch.nn.functional.batch_norm", "torch.batch_norm",
                                               "torch.nn.BatchNorm1d", "torch.nn.BatchNorm2d"),
              "the layer on your own functions")
    g = torch.Generator().manual_seed(5)
    weights = {"conv": 0.3 * torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64),
               "gamma": 0.5 + torch.rand(4, generator=g, dtype=torch.float64),
               "beta": 0.1 * torch.randn(4, generator=g, dtype=torch.float64),
               "linear": torch.randn(3, 4, generator=g, dtype=torch.float64)}
    batches = [(torch.randn(8, 3, 6, 6, generator=g, dtype=torch.float64) * 2 + 1,
                torch.randint(0, 3, (8,), generator=g)) for _ in range(6)]
    lr, momentum, eps = 0.5, 0.3, 0.01
    facts = _call(in_kernel(_bn_layer_step), layer_class, weights, batches, lr, momentum, eps, name=name,
                  shown="4, momentum=0.3, eps=0.01", crashes=LAYER_CRASHES)
    expect(facts["module"], f"{name}(4) is not an nn.Module: subclass nn.Module.", "modern.batchnorm_layer.not_a_module")
    params, buffers = dict(facts["params"]), dict(facts["buffers"])
    for key in ("running_mean", "running_var"):
        expect(key not in params, f"{name}(4) has {key} as a parameter: the optimizer would change it. Running "
                                  "statistics are state, not learned: register them as buffers.",
               "modern.batchnorm_layer.statistics_as_parameters")
        expect(key in buffers, f"{name}(4) has no buffer {key}: register the running statistics as buffers (they "
                               "are then saved with the model and moved with it to a device).",
               "modern.batchnorm_layer.statistics_not_buffers")
    expect(set(params) == {"weight", "bias"}, f"{name}(4) has the parameters {sorted(params) or 'none'}; it should "
                                              "learn exactly two, weight (gamma) and bias (beta).",
           "modern.batchnorm_layer.parameters")
    for key, shape in (*params.items(), *((k, buffers[k]) for k in ("running_mean", "running_var"))):
        expect(shape == (4,), f"{name}(4)'s {key} has shape {shape}; it should have shape (4,), one value per channel.",
               "modern.batchnorm_layer.shapes")
    fresh = nn.BatchNorm2d(4).state_dict()
    for key in ("weight", "bias", "running_mean", "running_var"):
        expect(torch.equal(facts["fresh"][key].double(), fresh[key].double()),
               f"a new {name}(4) starts with {key} {describe(facts['fresh'][key])} not all "
               f"{float(fresh[key][0]):g}: a new layer is the identity (weight 1, bias 0) with running statistics "
               "of a standard normal (mean 0, variance 1).", "modern.batchnorm_layer.initial_values")
    reference = _reference_run(weights, batches, lr, momentum, eps)
    inputs = (weights, batches, lr, momentum, eps)
    compare(facts["losses"], reference["losses"], f"with {name}, the losses of the 6 training steps",
            mistakes=LAYER_MISTAKES["losses"], inputs=inputs, expected_as="nn.BatchNorm2d's",
            unexplained="modern.batchnorm_layer.training")
    compare((facts["state"]["running_mean"], facts["state"]["running_var"]),
            (reference["state"]["running_mean"], reference["state"]["running_var"]),
            f"{name}'s running statistics after 6 training steps", mistakes=LAYER_MISTAKES["running"], inputs=inputs,
            expected_as="nn.BatchNorm2d's", unexplained="modern.batchnorm_layer.running_statistics")
    compare(facts["eval"], reference["eval"], "the outputs in evaluation mode", mistakes=LAYER_MISTAKES["eval"],
            inputs=inputs, expected_as="nn.BatchNorm2d's", unexplained="modern.batchnorm_layer.evaluation")
    passed(name, "trains as nn.BatchNorm2d does, running statistics and evaluation mode included")


# ---------------------------------------------------------------- dropout by hand

def _dropout_step(dropout_forward, x, p, train, seed):
    """dropout_forward on a copy of x with a generator seeded ``seed``: (what it returned, x after the call)."""
    import torch

    sent = x.clone()
    result = dropout_forward(sent, p, train, generator=torch.Generator().manual_seed(seed))
    return result, sent


def _dropout_view(out: torch.Tensor, x: torch.Tensor) -> dict:
    """What a dropout output shows: the fraction of zeros, the ratios out / x where not zero, whether every row
    has the same zeros."""
    zero = out == 0
    ratio = (out / x)[~zero]
    return {"zeros": float(zero.double().mean()), "ratios": ratio, "same_rows": bool((zero == zero[:1]).all())}


def _kept_ratio_is(value):
    return lambda view, p: view["ratios"].numel() > 0 and bool(torch.allclose(view["ratios"], torch.full_like(
        view["ratios"], value(p)), rtol=1e-9))


DROPOUT_MISTAKES = (
    Mistake("modern.dropout_forward.keep_probability", "drops a fraction 1 - p of the values: p is the probability "
            "of dropping a value, not of keeping it.", shows=lambda view, p: abs(view["zeros"] - (1 - p)) < 0.02),
    Mistake("modern.dropout_forward.same_mask_every_row", "drops the same units in every sample of the batch: each "
            "value is dropped on its own, with its own draw.", shows=lambda view, p: view["same_rows"]),
    Mistake("modern.dropout_forward.not_rescaled", "keeps the values unchanged: inverted dropout divides the kept "
            "values by 1 - p, so that the expected output equals x and evaluation needs no change.",
            shows=_kept_ratio_is(lambda p: 1.0)),
    Mistake("modern.dropout_forward.scaled_by_keep", "multiplies the kept values by 1 - p: inverted dropout divides "
            "them by 1 - p (the output's expectation is then x).", shows=_kept_ratio_is(lambda p: 1 - p)),
    Mistake("modern.dropout_forward.divided_by_p", "divides the kept values by p: divide by the probability of "
            "keeping a value, 1 - p.", shows=_kept_ratio_is(lambda p: 1 / p)),
)
DROPOUT_EVAL_MISTAKES = (
    Mistake("modern.dropout_forward.drops_in_eval", "has zeros in evaluation mode: evaluation keeps every value.",
            shows=lambda out, x, p: bool((out == 0).any())),
    Mistake("modern.dropout_forward.scales_in_eval", "is rescaled in evaluation mode: with inverted dropout the "
            "rescaling happens in training, and evaluation returns x unchanged.",
            shows=lambda out, x, p: bool(torch.allclose(out, x * (1 - p))) or bool(torch.allclose(out, x / (1 - p)))),
)


def _dropout_input(seed: int, shape=(200, 300)) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (1 + torch.rand(shape, generator=g, dtype=torch.float64)) * torch.where(
        torch.rand(shape, generator=g) < 0.5, -1.0, 1.0).double()


def _checked_dropout(dropout_forward, x, p, train, seed):
    what = f"dropout_forward on x of shape {tuple(x.shape)} with p={p} in {'training' if train else 'evaluation'} mode"
    out_cache, after = _call(in_kernel(_dropout_step), dropout_forward, x, p, train, seed, name="dropout_forward",
                             shown=f"x of shape {tuple(x.shape)}, p={p}, train={train}, generator")
    expect_tuple(out_cache, ("out", "cache"), "dropout_forward")
    expect(torch.equal(after, x), "dropout_forward changed x in place: return a new tensor and leave x as it was.",
           "changed_argument")
    out = _tensor(out_cache[0], f"{what}: out")
    expect_shape(out, x.shape, f"{what}: out")
    return out, out_cache[1], what


def check_dropout_forward(dropout_forward) -> None:
    """dropout_forward(x, p, train, generator) on 60,000 values, as a matrix and as images: in training mode each
    value is 0 with probability p (the fraction of zeros within 0.015 of p, about 8 standard errors) or x / (1 - p),
    each drawn on its own and reproducible with a seeded generator; in evaluation mode out is x."""
    _own_work(dropout_forward, "dropout_forward", ("torch.nn.functional.dropout", "torch.dropout", "torch.nn.Dropout",
                                                   "torch.nn.functional.dropout2d"), "dropout")
    x = _dropout_input(0)
    for values, p in ((x, 0.3), (x, 0.6), (_dropout_input(7, (50, 3, 20, 20)), 0.5)):
        out, _, what = _checked_dropout(dropout_forward, values, p, True, 1)
        view = _dropout_view(out, values)
        kept_right = view["ratios"].numel() > 0 and bool(torch.allclose(view["ratios"], torch.full_like(
            view["ratios"], 1 / (1 - p)), rtol=1e-9))
        if not kept_right or abs(view["zeros"] - p) > 0.015 or view["same_rows"]:
            where = f"{what}: out has {view['zeros']:.1%} zeros and"
            diagnose(view, where, DROPOUT_MISTAKES, inputs=(p,))
            fail(f"{where} should have about {p:.0%} zeros, every other value x / (1 - p), each value dropped on its "
                 "own.", "modern.dropout_forward.distribution")
    out, _, what = _checked_dropout(dropout_forward, x, 0.0, True, 1)
    compare(out, x, f"{what}: out", unexplained="modern.dropout_forward.p_zero")
    first = _checked_dropout(dropout_forward, x, 0.5, True, 3)[0]
    again = _checked_dropout(dropout_forward, x, 0.5, True, 3)[0]
    other = _checked_dropout(dropout_forward, x, 0.5, True, 4)[0]
    expect(torch.equal(first, again) and not torch.equal(first, other),
           "dropout_forward with two generators seeded alike dropped different values (or with different seeds the "
           "same ones): draw the mask from the generator it is given.", "modern.dropout_forward.ignores_generator")
    for p in (0.3, 0.6):
        out, _, what = _checked_dropout(dropout_forward, x, p, False, 1)
        compare(out, x, f"{what}: out", mistakes=DROPOUT_EVAL_MISTAKES, inputs=(x, p),
                unexplained="modern.dropout_forward.eval")
    passed("dropout_forward", "inverted dropout, reproducible, identity in evaluation mode")


DROPOUT_BACKWARD_MISTAKES = (   # the first two are told apart by what dx shows, tried before the others
    Mistake("modern.dropout_backward.unmasked", "passes dout through unchanged: the dropped values got no gradient, "
            "the kept ones were scaled.", shows=lambda dx, dout, out, p: bool(torch.equal(dx, dout)) and p > 0),
    Mistake("modern.dropout_backward.new_mask", "is zero at other places than the forward pass's output: the "
            "gradient flows through the values the forward pass kept, so reuse its mask (from the cache) instead of "
            "drawing a new one.", shows=lambda dx, dout, out, p: bool(((dx == 0) != (out == 0)).any())),
    Mistake("modern.dropout_backward.not_rescaled", "is masked but not rescaled: the forward pass divided the kept "
            "values by 1 - p, so their gradients are divided by 1 - p too.",
            returns=lambda dout, out, p: dout * (out != 0)),
    Mistake("modern.dropout_backward.rescaled_twice", "is divided by 1 - p twice: the scaled mask already holds it.",
            returns=lambda dout, out, p: dout * (out != 0) / (1 - p) ** 2),
)


def check_dropout_backward(dropout_backward, dropout_forward) -> None:
    """dropout_backward(dout, cache) with the cache of your dropout_forward: in training mode dout times the mask
    the forward pass used (0 where it dropped, 1 / (1 - p) where it kept); in evaluation mode dout; dout is left
    as it was."""
    _own_work(dropout_backward, "dropout_backward", ("torch.autograd",), "the backward pass")
    x = _dropout_input(5, (40, 50))
    dout = torch.randn(x.shape, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for p, train in ((0.3, True), (0.6, True), (0.3, False)):
        out, cache, what = _checked_dropout(dropout_forward, x, p, train, 2)
        dx = _tensor(_call(dropout_backward, dout, cache, name="dropout_backward", shown="dout, cache",
                           returns="array", keeps={0: "dout"}), "dropout_backward's dx")
        expect_shape(dx, x.shape, f"dropout_backward after {what}: dx")
        expected = dout * out / x
        where = f"dropout_backward after {what}: dx"
        if train and difference(dx, expected, 1e-9):
            diagnose(dx, where, DROPOUT_BACKWARD_MISTAKES[:2], inputs=(dout, out, p))
        compare(dx, expected, where, mistakes=DROPOUT_BACKWARD_MISTAKES[2:], inputs=(dout, out, p), tol=1e-9,
                unexplained="modern.dropout_backward.gradient")
    passed("dropout_backward", "the forward pass's mask, scaled, and the identity in evaluation mode")


# ---------------------------------------------------------------- residual blocks and a ResNet from a table

def _layers_step(model_class, args, kwargs, x, block_class=None):
    """``model_class(*args, **kwargs)`` in evaluation mode: its parameters (layer type, name, shape) in registration
    order; its convolutions, batch norms and linear layers in the order forward calls them, each with its weights,
    its settings and its output's shape; its output on x; with ``block_class``, the first such block's input, the
    last one's output and the input of the last linear layer. Runs where the classes live."""
    import torch
    from torch import nn

    model = model_class(*args, **kwargs)
    facts = {"module": isinstance(model, nn.Module), "type": type(model).__name__}
    if not facts["module"]:
        return facts
    facts["params"] = [(type(m).__name__, n, tuple(p.shape)) for m in model.modules()
                       for n, p in m.named_parameters(recurse=False)]
    called, hooks, seen = [], [], {}

    def record(module, inputs, output):
        entry = {"type": type(module).__name__, "out": tuple(output.shape),
                 "state": {k: v.detach().clone() for k, v in module.state_dict().items()}}
        if isinstance(module, nn.Conv2d):
            entry.update(kernel=module.kernel_size, stride=module.stride, padding=module.padding)
        if isinstance(module, nn.BatchNorm2d):
            entry.update(eps=module.eps, momentum=module.momentum, tracks=module.track_running_stats)
        if isinstance(module, nn.Linear):
            seen["linear_in"] = inputs[0].detach().clone()
        if block_class is not None and isinstance(module, block_class):
            seen.setdefault("block_in", inputs[0].detach().clone())
            seen["block_out"] = output.detach().clone()
            return
        called.append(entry)

    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.Linear)) or (block_class is not None and isinstance(m, block_class)):
            hooks.append(m.register_forward_hook(record))
    model.eval()
    try:
        with torch.no_grad():
            facts["out"] = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    facts["layers"] = called
    facts.update(seen)
    facts["blocks"] = 0 if block_class is None else sum(isinstance(m, block_class) for m in model.modules())
    return facts


def _block_spec(c_in, c_out, stride, residual) -> list:
    """(layer type, shape of its weight) of a basic block, main path first, then the projection shortcut."""
    spec = [("Conv2d", (c_out, c_in, 3, 3)), ("BatchNorm2d", (c_out,)), ("Conv2d", (c_out, c_out, 3, 3)),
            ("BatchNorm2d", (c_out,))]
    if residual and (c_in, stride) != (c_out, 1):
        spec += [("Conv2d", (c_out, c_in, 1, 1)), ("BatchNorm2d", (c_out,))]
    return spec


def _spec_count(spec) -> int:
    return sum(math.prod(shape) * (2 if kind == "BatchNorm2d" else 1) for kind, shape in spec)


def _by_role(layers: list) -> dict | None:
    """The layers of a basic block by role ("conv1", "bn1", "conv2", "bn2", "conv_s", "bn_s"), whatever the order
    forward calls the two paths in: a batch norm belongs to the convolution called just before it."""
    roles, threes = {}, 0
    for i, layer in enumerate(layers):
        if layer["type"] != "Conv2d":
            continue
        after = layers[i + 1] if i + 1 < len(layers) and layers[i + 1]["type"] == "BatchNorm2d" else None
        if tuple(layer["kernel"]) == (1, 1):
            roles["conv_s"], roles["bn_s"] = layer, after
        else:
            threes += 1
            roles[f"conv{threes}"], roles[f"bn{threes}"] = layer, after
    return roles if threes == 2 and all(v is not None for v in roles.values()) else None


def _bn_eval(x, bn):
    state = bn["state"]
    return F.batch_norm(x, state["running_mean"], state["running_var"], state["weight"], state["bias"],
                        training=False, eps=bn["eps"])


def _conv(x, conv, stride):
    return F.conv2d(x, conv["state"]["weight"], conv["state"].get("bias"), stride=stride, padding=conv["padding"])


def _block_by_spec(x, roles, stride, residual, *, relu_before_add=False, final_relu=True, relu_after_bn2=False,
                   stride_on_second=False, add_always=False, inner_relu=True):
    """The block's output in evaluation mode, computed from its own layers' weights by the specification (or, with
    a flag, by a usual misreading of it)."""
    h = _bn_eval(_conv(x, roles["conv1"], 1 if stride_on_second else stride), roles["bn1"])
    h = F.relu(h) if inner_relu else h
    main = _bn_eval(_conv(h, roles["conv2"], stride if stride_on_second else 1), roles["bn2"])
    if relu_after_bn2 or relu_before_add:
        main = F.relu(main)
    if "conv_s" in roles:
        shortcut = _bn_eval(_conv(x, roles["conv_s"], stride), roles["bn_s"])
    else:
        shortcut = x if residual or add_always else 0
    out = main + shortcut
    return out if relu_before_add or not final_relu else F.relu(out)


BLOCK_OUT_MISTAKES = (
    Mistake("modern.basic_block.relu_before_add", "match a ReLU on the main path before the addition and none after "
            "it: out = ReLU(F(x) + shortcut(x)), the ReLU after the sum.",
            returns=lambda x, r, s, res: _block_by_spec(x, r, s, res, relu_before_add=True)),
    Mistake("modern.basic_block.no_final_relu", "match a block without the ReLU after the addition.",
            returns=lambda x, r, s, res: _block_by_spec(x, r, s, res, final_relu=False)),
    Mistake("modern.basic_block.relu_after_second_norm", "match a ReLU after the second batch norm, before the "
            "addition: F(x) ends with the batch norm, so that the sum can be negative before the last ReLU.",
            returns=lambda x, r, s, res: _block_by_spec(x, r, s, res, relu_after_bn2=True)),
    Mistake("modern.basic_block.stride_on_second_conv", "match the stride on the second convolution: the first "
            "convolution of the block (and the shortcut) downsample.",
            returns=lambda x, r, s, res: _block_by_spec(x, r, s, res, stride_on_second=True) if s != 1 else None),
    Mistake("modern.basic_block.plain_adds_input", "match a block that adds its input with residual=False: the plain "
            "block has no shortcut at all, out = ReLU(F(x)).",
            returns=lambda x, r, s, res: _block_by_spec(x, r, s, res, add_always=True) if not res else None),
    Mistake("modern.basic_block.no_inner_relu", "match a block without the ReLU between its two convolutions: F(x) "
            "is a convolution, a batch norm, a ReLU, a convolution and a batch norm.",
            returns=lambda x, r, s, res: _block_by_spec(x, r, s, res, inner_relu=False)),
)


def _size_mismatch(message: str) -> tuple | None:
    """(size a, size b, dimension) of torch's message on adding tensors of different shapes, or None."""
    found = re.search(r"tensor a \((\d+)\) must match the size of tensor b \((\d+)\) at non-singleton dimension (\d+)",
                      message)
    return None if found is None else tuple(int(v) for v in found.groups())


def _main_path_shrinks(message: str, size=None) -> bool:
    """Whether the sum's maps (of side ``size`` in a block whose output has that side) are smaller than the block's
    output should be: a size lost on the main path, not a shortcut that keeps the input's."""
    found = _size_mismatch(message)
    return found is not None and size is not None and found[2] >= 2 and min(found[:2]) < size

BLOCK_CRASHES = (   # shown by torch's message on a sum of tensors of different shapes; inputs: the output's side
    Mistake("modern.basic_block.main_path_size", "The main path's maps are smaller than the block's output should "
            "be: a 3×3 convolution keeps H and W with padding 1, and only the block's first convolution (and its "
            "shortcut) has the stride.", shows=_main_path_shrinks),
    Mistake("modern.basic_block.shortcut_shape", "The shortcut's output does not match the main path's shape: when "
            "the stride is not 1 or the widths differ, the shortcut is a 1×1 convolution with the block's stride, "
            "followed by a batch norm.", shows=lambda message, size=None: "must match the size" in message
            or "size of tensor" in message),
)


def _params_message(facts, spec, what) -> str:
    count, expected = sum(math.prod(shape) for *_, shape in facts["params"]), _spec_count(spec)
    convs = [shape for kind, name, shape in facts["params"] if kind == "Conv2d" and name == "weight"]
    if any(kind == "Conv2d" and name == "bias" for kind, name, _ in facts["params"]):
        return (f"{what} has biases in its convolutions: a batch norm follows each one and its shift makes a bias "
                "useless: build the convolutions without one", "modern.basic_block.conv_biases")
    ones = [s for s in convs if tuple(s[2:]) == (1, 1)]
    wanted = [shape for kind, shape in spec if kind == "Conv2d" and tuple(shape[2:]) == (1, 1)]
    if len(ones) > len(wanted) and "residual=False" in what:
        return (f"{what} has a 1×1 convolution: a plain block has no shortcut at all, out = ReLU(F(x))",
                "modern.basic_block.projection_not_needed")
    if len(ones) > len(wanted):
        return (f"{what} has a 1×1 convolution on its shortcut although the input and output shapes are equal: "
                "then the shortcut is the identity (or, with residual=False, there is none)",
                "modern.basic_block.projection_not_needed")
    bns = sum(kind == "BatchNorm2d" and name == "weight" for kind, name, _ in facts["params"])
    if ones and bns < 3:
        return (f"{what}'s projection shortcut has no batch norm after its 1×1 convolution",
                "modern.basic_block.shortcut_without_norm")
    return (f"{what} has {count:,} parameters, the specification {expected:,}: "
            f"{', '.join(f'{kind} {shape}' for kind, shape in spec)}", "modern.basic_block.parameters")


BLOCK_CASES = ((8, 8, 1, True), (4, 8, 2, True), (6, 12, 1, True), (8, 8, 1, False), (4, 8, 2, False))


def check_basic_block(BasicBlock) -> None:
    """``BasicBlock(c_in, c_out, stride, residual)`` for equal shapes, a stride of 2 with more channels, more channels
    alone, and plain blocks: its parameters against the specification's shapes, and its output in evaluation mode
    against the specification computed from its own weights with torch's functions (the paths may run in either
    order)."""
    g = torch.Generator().manual_seed(8)
    for c_in, c_out, stride, residual in BLOCK_CASES:
        what = f"BasicBlock({c_in}, {c_out}, stride={stride}, residual={residual})"
        x = torch.randn(3, c_in, 8, 8, generator=g)
        facts = _call(in_kernel(_layers_step), BasicBlock, (c_in, c_out), {"stride": stride, "residual": residual},
                      x, name="BasicBlock", shown=f"{c_in}, {c_out}, stride={stride}, residual={residual}",
                      crashes=BLOCK_CRASHES, crash_inputs=(8 // stride,))
        expect(facts["module"], f"{what} is a {facts['type']}; subclass nn.Module.", "modern.basic_block.not_a_module")
        spec = _block_spec(c_in, c_out, stride, residual)
        mine = sorted(shape for kind, name, shape in facts["params"] if name == "weight")
        if mine != sorted(shape for _, shape in spec) or len(facts["params"]) != sum(
                2 if kind == "BatchNorm2d" else 1 for kind, _ in spec):
            message, mistake = _params_message(facts, spec, what)
            fail(f"{message}.", mistake)
        roles = _by_role(facts["layers"])
        expect(roles is not None, f"{what}: forward does not call an nn.BatchNorm2d right after each convolution "
                                  "(conv → batch norm on the main path, twice, and on a projection shortcut).",
               "modern.basic_block.layer_order")
        odd = [layer for layer in facts["layers"] if layer["type"] == "BatchNorm2d"
               and (layer["eps"], layer["momentum"], layer["tracks"]) != (1e-5, 0.1, True)]
        expect(not odd, f"{what} has a batch norm with eps={odd[0]['eps']:g}, momentum={odd[0]['momentum']} and "
                        f"track_running_stats={odd[0]['tracks']}: the block's batch norms are nn.BatchNorm2d with its "
                        "defaults (1e-05, 0.1, True)." if odd else "", "modern.basic_block.norm_settings")
        out = _tensor(facts["out"], f"{what}'s output")
        expect_shape(out, (3, c_out, 8 // stride, 8 // stride), f"{what}'s output for x of shape {tuple(x.shape)}")
        compare(out, _block_by_spec(x, roles, stride, residual), f"{what}: the outputs in evaluation mode",
                mistakes=BLOCK_OUT_MISTAKES, inputs=(x, roles, stride, residual), tol=1e-5,
                expected_as="the specification's", unexplained="modern.basic_block.output")
    passed("BasicBlock", "identity and projection shortcuts, plain blocks, as specified")


def _resnet_spec(stages, in_channels, num_classes, residual) -> tuple[list, list]:
    """(parameters' (type, shape) of the whole network, the output shapes of its 3×3 convolutions in order for a
    (2, in_channels, 32, 32) input) for a ResNet built from ``stages`` [(width, blocks, stride), ...]."""
    width0 = next(iter(stages))[0]
    spec, shapes, size, c_in = [("Conv2d", (width0, in_channels, 3, 3)), ("BatchNorm2d", (width0,))], [], 32, width0
    shapes.append((2, width0, 32, 32))
    for width, blocks, stride in stages:
        for i in range(blocks):
            s = stride if i == 0 else 1
            spec += _block_spec(c_in, width, s, residual)
            size //= s
            shapes += [(2, width, size, size)] * 2
            c_in = width
    spec.append(("Linear", (num_classes, c_in)))
    return spec, shapes


def _expect_stem(facts, x, what) -> None:
    """The first block's input must be the stem's output: ReLU(batch norm(3×3 convolution of x)), at x's size."""
    stem = facts["layers"][:2]
    if [layer["type"] for layer in stem] == ["Conv2d", "BatchNorm2d"]:
        normed = _bn_eval(F.conv2d(x, stem[0]["state"]["weight"], stem[0]["state"].get("bias"), padding=1), stem[1])
        if close(facts["block_in"], F.relu(normed), 1e-5):
            return
        expect(not close(facts["block_in"], normed, 1e-5), f"{what}: the first block gets the stem's batch-norm output "
               "without the ReLU: the stem is a 3×3 convolution, a batch norm and a ReLU.",
               "modern.resnet.stem_without_relu")
    fail(f"{what}: the first block's input is not the stem's output, the ReLU of a batch norm of a 3×3 convolution "
         "of x, at x's size (the stem neither pools nor strides).", "modern.resnet.stem")


RESNET_CASES = (([(8, 2, 1), (16, 1, 2), (24, 2, 2)], 3, 10, True), ([(4, 1, 2), (8, 2, 1)], 1, 5, False))


def check_resnet(ResNet, BasicBlock) -> None:
    """``ResNet(stages, num_classes, in_channels, residual)`` built from ``BasicBlock`` for two tables: a stem (3×3
    convolution, batch norm, ReLU), the blocks of each stage (the first with the stage's stride), global average
    pooling and a linear layer: parameters, the output shapes of its 3×3 convolutions, the linear layer's input and
    the output (2, num_classes)."""
    g = torch.Generator().manual_seed(9)
    for stages, in_channels, num_classes, residual in RESNET_CASES:
        what = f"ResNet({stages}, num_classes={num_classes}, in_channels={in_channels}, residual={residual})"
        x = torch.randn(2, in_channels, 32, 32, generator=g)
        facts = _call(in_kernel(_layers_step), ResNet, (stages,), {"num_classes": num_classes,
                      "in_channels": in_channels, "residual": residual}, x, BasicBlock, name="ResNet",
                      shown=f"{stages}, num_classes={num_classes}, in_channels={in_channels}, residual={residual}",
                      crashes=BLOCK_CRASHES)
        expect(facts["module"], f"{what} is a {facts['type']}; subclass nn.Module.", "modern.resnet.not_a_module")
        blocks = sum(b for _, b, _ in stages)
        expect(facts["blocks"] == blocks, f"{what} has {facts['blocks']} BasicBlock modules; the table asks for "
                                          f"{blocks} (build the stages from your BasicBlock)." if facts["blocks"] else
               f"{what} has no BasicBlock among its modules: build the stages from your BasicBlock, kept in an "
               "nn.Sequential or nn.ModuleList (a Python list hides them from the model and its optimizer).",
               "modern.resnet.block_count")
        spec, shapes = _resnet_spec(stages, in_channels, num_classes, residual)
        count, expected = sum(math.prod(s) for *_, s in facts["params"]), sum(
            math.prod(shape) * (2 if kind == "BatchNorm2d" else 1) for kind, shape in spec) + num_classes
        expect(count == expected, f"{what} has {count:,} parameters, the table {expected:,}: a stem conv and batch "
                                  "norm, the stages' blocks (the first of each with the stage's stride and "
                                  "width), one linear layer.", "modern.resnet.parameters")
        _expect_stem(facts, x, what)
        mine = [layer["out"] for layer in facts["layers"] if layer["type"] == "Conv2d" and tuple(layer["kernel"]) != (1, 1)]
        if mine != shapes:
            k = next(i for i, (a, b) in enumerate(zip(mine + [None] * len(shapes), shapes)) if a != b)
            fail(f"{what}: 3×3 convolution number {k + 1} gives maps {mine[k] if k < len(mine) else 'none'}, the table "
                 f"{shapes[k]}: the first block of each stage has the stage's stride, the others stride 1.",
                 "modern.resnet.strides")
        last = facts["block_out"]
        pooled = facts.get("linear_in")
        expect(pooled is not None and tuple(pooled.shape) == (2, last.shape[1]),
               f"{what}: the linear layer should get one number per channel of the last block, "
               f"({2}, {last.shape[1]}).", "modern.resnet.head")
        if not torch.allclose(pooled, last.mean((2, 3)), atol=1e-5):
            fail(f"{what}: the linear layer's input is not the average of each channel of the last block's maps"
                 f"{' (it is their maximum)' if torch.allclose(pooled, last.amax((2, 3)), atol=1e-5) else ''}: the "
                 "head pools globally by the average.", "modern.resnet.head_pooling")
        expect_shape(_tensor(facts["out"], f"{what}'s output"), (2, num_classes), f"{what}'s output")
    passed("ResNet", "stem, stages and head as the tables say")
