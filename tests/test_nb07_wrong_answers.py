"""Notebook 07's test cells must reject plausible wrong initialisations, batch norms, dropouts and residual
networks with a short message that names the mistake (its stable id, from the tables and checks of
``course_lib.checks.modern``), and accept valid alternatives.

Most wrong answers are the solution with one mistake written in (a textual edit of the solution cell, checked to
apply), so the tests follow the notebook when it changes. Each is defined as a notebook cell defines it, so that
the grader can read its source (``define``).
"""
from __future__ import annotations

import linecache
import math
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from course_lib.checks import modern
from notebook_cells import cell_source, rejected, run_test_cell

NB = "07_modern_cnn"


def define(name: str, edits=(), cell: str | None = None, **extra):
    """The solution's ``name`` (from the cell whose grade_id is ``cell``, ``name`` by default) with ``edits``
    applied, defined next to ``extra`` in a module of its own whose source the grader can read."""
    source = cell_source(NB, cell or name)
    for old, new in edits:
        assert old in source, f"the edit {old!r} no longer applies to the solution of {name}"
        source = source.replace(old, new)
    key = f"{abs(hash((name, source))):x}"
    filename = f"<{NB} {name} {key}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    module = types.ModuleType(f"nb07_cell_{name}_{key}")
    module.__file__ = filename
    module.__dict__.update({"torch": torch, "nn": nn, "math": math, "np": np, **extra})
    sys.modules[module.__name__] = module
    exec(compile(source, filename, "exec"), module.__dict__)
    return module.__dict__[name]


def rejects(grade_id: str, match: str, mistake: str | None = None, **objects) -> str:
    """The message test cell ``grade_id`` rejects ``objects`` with (see ``notebook_cells.rejected``)."""
    return rejected(NB, grade_id, match, mistake, **objects)


def batchnorm_pair(forward_edits=(), backward_edits=()) -> dict:
    """The solution's batchnorm_forward and batchnorm_backward, each with its edits."""
    return {"batchnorm_forward": define("batchnorm_forward", forward_edits),
            "batchnorm_backward": define("batchnorm_backward", backward_edits)}


def batchnorm_layer(edits=(), layer=None) -> dict:
    """BatchNorm2dByHand (the solution with ``edits``, or ``layer``) on the solution's functions through the locked
    cell's BatchNormFunction, with every name of the notebook it reads."""
    functions = batchnorm_pair()
    function = define("BatchNormFunction", cell="batchnorm_function", **functions)
    if layer is None:
        layer = define("BatchNorm2dByHand", edits, BatchNormFunction=function, **functions)
    return {"BatchNorm2dByHand": layer, "BatchNormFunction": function, **functions}


def dropout_pair(forward_edits=(), backward_edits=()) -> dict:
    return {"dropout_forward": define("dropout_forward", forward_edits),
            "dropout_backward": define("dropout_backward", backward_edits)}


def resnet(edits=(), block=None) -> dict:
    """ResNet (the solution with ``edits``) on ``block`` (the solution's BasicBlock by default)."""
    block = block or define("BasicBlock")
    return {"ResNet": define("ResNet", edits, BasicBlock=block), "BasicBlock": block}


def test_solutions_pass():
    run_test_cell(NB, "test_kaiming_normal_", kaiming_normal_=define("kaiming_normal_"))
    run_test_cell(NB, "test_batchnorm_forward", batchnorm_forward=define("batchnorm_forward"))
    run_test_cell(NB, "test_batchnorm_backward", **batchnorm_pair())
    run_test_cell(NB, "test_BatchNorm2dByHand", **batchnorm_layer())
    run_test_cell(NB, "test_BasicBlock", BasicBlock=define("BasicBlock"))
    run_test_cell(NB, "test_ResNet", **resnet())


@pytest.mark.parametrize("grade_id", ["test_dropout_forward", "test_dropout_backward"])
def test_dropout_solutions_pass(grade_id):
    run_test_cell(NB, grade_id, **dropout_pair())


def stub(*args, **kwargs):
    raise NotImplementedError()


class StubModule(nn.Module):
    """The release's classes: the constructor's body is ``raise NotImplementedError()``."""

    def __init__(self, *args, **kwargs):
        super().__init__()
        raise NotImplementedError()


@pytest.mark.parametrize("grade_id, objects", [
    ("test_kaiming_normal_", {"kaiming_normal_": stub}),
    ("test_batchnorm_forward", {"batchnorm_forward": stub}),
    ("test_batchnorm_backward", {"batchnorm_forward": stub, "batchnorm_backward": stub}),
    ("test_batchnorm_backward", {"batchnorm_backward": stub}),
    ("test_BatchNorm2dByHand", {"BatchNorm2dByHand": StubModule}),
    ("test_dropout_forward", {"dropout_forward": stub}),
    ("test_dropout_backward", {"dropout_forward": stub, "dropout_backward": stub}),
    ("test_dropout_backward", {"dropout_backward": stub}),
    ("test_BasicBlock", {"BasicBlock": StubModule}),
    ("test_ResNet", {"ResNet": StubModule}),
], ids=lambda value: value if isinstance(value, str) else "-".join(value))
def test_stubs_fail(grade_id, objects):
    solutions = {**batchnorm_pair(), **dropout_pair(), "BasicBlock": define("BasicBlock")}
    rejects(grade_id, "not implemented yet", "not_implemented", **{**solutions, **objects})


# ---------------------------------------------------------------- 1. initialisation: kaiming_normal_

KAIMING_STD = "gain / math.sqrt(fan)"
KAIMING_FAN = "    fan = (tensor.shape[1] if mode == \"fan_in\" else tensor.shape[0]) * receptive\n"
KAIMING_DRAW = "        return tensor.normal_(0.0, gain / math.sqrt(fan), generator=generator)\n"
KAIMING_CHECK = ("    if tensor.dim() < 2:\n"
                 "        raise ValueError(f\"a tensor of {tensor.dim()} dimension(s) has no fan: initialise a "
                 "weight of 2 or more \"\n                         \"dimensions\")\n")

KAIMING_WRONG = {
    "fans swapped": (
        [("(tensor.shape[1] if mode == \"fan_in\" else tensor.shape[0])",
          "(tensor.shape[0] if mode == \"fan_in\" else tensor.shape[1])")],
        "spread of the other mode", "modern.kaiming_normal.other_mode"),
    "kernel's area left out of the fan": (
        [(") * receptive\n", ")\n")],
        "without the kernel's area", "modern.kaiming_normal.no_receptive_field"),
    "Glorot's average of the fans": (
        [(KAIMING_FAN, "    fan = (tensor.shape[0] + tensor.shape[1]) * receptive / 2\n")],
        "Glorot's \\(Xavier's\\) spread", "modern.kaiming_normal.xavier"),
    "no gain": (
        [(KAIMING_STD, "1 / math.sqrt(fan)")],
        "leaves out the gain", "modern.kaiming_normal.no_gain"),
    "gain squared": (
        [(KAIMING_STD, "gain ** 2 / math.sqrt(fan)")],
        "uses the gain squared", "modern.kaiming_normal.gain_squared"),
    "variance as the standard deviation": (
        [(KAIMING_STD, "gain ** 2 / fan")],
        "uses the variance", "modern.kaiming_normal.variance_as_std"),
    "no square root of the fan": (
        [(KAIMING_STD, "gain / fan")],
        "not by its square root", "modern.kaiming_normal.no_square_root"),
    "leaky ReLU's slope ignored": (
        [("math.sqrt(2.0 / (1 + a ** 2))", "math.sqrt(2.0)")],
        "ignores a", "modern.kaiming_normal.slope_ignored"),
    "ReLU's gain for every nonlinearity": (
        [("{\"linear\": 1.0, \"sigmoid\": 1.0, \"tanh\": 5 / 3, \"relu\": math.sqrt(2.0),\n"
          "            \"leaky_relu\": math.sqrt(2.0 / (1 + a ** 2))}[nonlinearity]",
          "math.sqrt(2.0 / (1 + a ** 2))")],
        "uses ReLU's gain for another nonlinearity", "modern.kaiming_normal.relu_gain_everywhere"),
    "uniform draws of the right spread": (
        [(KAIMING_DRAW, "        bound = math.sqrt(3.0) * gain / math.sqrt(fan)\n"
                        "        return tensor.uniform_(-bound, bound, generator=generator)\n")],
        "uniform distribution", "modern.kaiming_normal.uniform"),
    "draws clipped at two standard deviations": (
        [(KAIMING_DRAW, "        std = gain / math.sqrt(fan)\n"
                        "        tensor.normal_(0.0, std, generator=generator)\n"
                        "        return tensor.clamp_(-2 * std, 2 * std)\n")],
        "draws values with standard deviation .* the standard deviation is gain "
        "/ sqrt\\(fan\\)",
        "modern.kaiming_normal.spread"),
    "weights all positive": (
        [(KAIMING_DRAW, KAIMING_DRAW.rstrip("\n") + ".abs_()\n")],
        "centred on 0", "modern.kaiming_normal.not_centred"),
    "generator not used": (
        [(", generator=generator)", ")")],
        "two generators seeded alike", "modern.kaiming_normal.ignores_generator"),
    "a fresh generator of its own": (
        [(", generator=generator)", ", generator=torch.Generator())")],
        "two generators seeded alike", "modern.kaiming_normal.ignores_generator"),
    "new tensor returned, the argument left as it was": (
        [(KAIMING_DRAW, "        return torch.randn(tensor.shape, "
          "generator=generator) * (gain / math.sqrt(fan))\n")],
        "left the tensor as it was and returned a new one", "modern.kaiming_normal.not_in_place"),
    "filled with autograd on": (
        [("    with torch.no_grad():\n        return tensor.normal_(",
          "    if True:\n        return tensor.normal_(")],
        "requires grad is being used in an in-place operation.*fill it with autograd off",
        "modern.kaiming_normal.recorded_by_autograd"),
    "requires_grad turned off to fill": (
        [("    with torch.no_grad():\n        return tensor.normal_(",
          "    tensor.requires_grad_(False)\n    if True:\n        return tensor.normal_(")],
        "turned off requires_grad", "modern.kaiming_normal.requires_grad_lost"),
    "filled but not returned": (
        [("        return tensor.normal_(", "        tensor.normal_(")],
        "returned None", "returned_none"),
    "drawn in float32 into the tensor's data": (
        [(KAIMING_DRAW, "        tensor.data = torch.randn(tensor.shape, "
          "generator=generator) * (gain / math.sqrt(fan))\n        return tensor\n")],
        "float64 tensor", "modern.kaiming_normal.dtype_changed"),
    "no ValueError for a vector": (
        [(KAIMING_CHECK, "")],
        "shape \\(10,\\) raised IndexError.*raise ValueError", "modern.kaiming_normal.no_value_error"),
    "TypeError for a vector": (
        [("        raise ValueError(", "        raise TypeError(")],
        "shape \\(10,\\) raised TypeError", "modern.kaiming_normal.no_value_error"),
    "only an empty shape refused": (
        [("if tensor.dim() < 2:", "if tensor.dim() == 0:")],
        "shape \\(10,\\) raised IndexError", "modern.kaiming_normal.no_value_error"),
}


@pytest.mark.parametrize("mistake", KAIMING_WRONG)
def test_kaiming_normal_mistake_is_named(mistake):
    edits, match, mistake_id = KAIMING_WRONG[mistake]
    rejects("test_kaiming_normal_", match, mistake_id, kaiming_normal_=define("kaiming_normal_", edits))


def kaiming_from_torch(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """Wrong: torch's own initialiser under another name."""
    return nn.init.kaiming_normal_(tensor, a=a, mode=mode, nonlinearity=nonlinearity)


def kaiming_with_torch_gain(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """Wrong: the draws by hand, the gain from torch.nn.init."""
    fan = tensor[0].numel() if mode == "fan_in" else tensor[:, 0].numel()
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


@pytest.mark.parametrize("wrong", [kaiming_from_torch, kaiming_with_torch_gain])
def test_kaiming_normal_is_not_borrowed(wrong):
    rejects("test_kaiming_normal_", "called torch.nn.init.* He's initialisation yourself",
            "modern.kaiming_normal.borrows_torch", kaiming_normal_=wrong)


def he_by_cases(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """Valid: the fan from a slice's size, the squared gain by cases, the draws made apart and copied in (in the
    tensor's dtype), the variance's square root taken at the end."""
    if tensor.ndim < 2:
        raise ValueError("He's initialisation needs a weight of at least 2 dimensions")
    fan = tensor[0].numel() if mode == "fan_in" else tensor[:, 0].numel()
    if nonlinearity in ("linear", "sigmoid"):
        gain_squared = 1.0
    elif nonlinearity == "tanh":
        gain_squared = 25 / 9
    elif nonlinearity == "relu":
        gain_squared = 2.0
    else:
        gain_squared = 2.0 / (1 + a * a)
    draws = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype)
    with torch.no_grad():
        tensor.copy_(draws * math.sqrt(gain_squared / fan))
    return tensor


def he_by_box_muller(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """Valid: normal draws made from uniform ones (Box-Muller) in float64, written into the tensor by indexing."""
    if len(tensor.shape) < 2:
        raise ValueError(f"shape {tuple(tensor.shape)}: no fan_in or fan_out for fewer than 2 dimensions")
    out_units, in_units = tensor.shape[:2]
    area = tensor.numel() // (out_units * in_units)
    gain = {"relu": 2.0 ** 0.5, "tanh": 5.0 / 3.0, "leaky_relu": (2.0 / (1.0 + a ** 2)) ** 0.5}.get(nonlinearity, 1.0)
    std = gain / ((in_units if mode == "fan_in" else out_units) * area) ** 0.5
    u = torch.rand((2, *tensor.shape), generator=generator, dtype=torch.float64)
    z = torch.sqrt(-2.0 * torch.log1p(-u[0])) * torch.cos(2 * math.pi * u[1])
    with torch.no_grad():
        tensor[...] = z * std
    return tensor


@pytest.mark.parametrize("valid", [he_by_cases, he_by_box_muller])
def test_kaiming_normal_written_differently_passes(valid):
    run_test_cell(NB, "test_kaiming_normal_", kaiming_normal_=valid)


# ---------------------------------------------------------------- 2. batch norm: forward, backward, the layer

BN_UPDATE_MEAN = "        state[\"running_mean\"] = (1 - momentum) * state[\"running_mean\"] + momentum * mean\n"
BN_UPDATE_VAR = ("        state[\"running_var\"] = (1 - momentum) * state[\"running_var\"] + momentum * var * m / "
                 "(m - 1)\n")
BN_EVAL = "    else:\n        mean, var = state[\"running_mean\"], state[\"running_var\"]\n"
BN_RETURN = "    return gamma.view(shape) * xhat + beta.view(shape), (xhat, gamma, inv_std, train)\n"

FORWARD_WRONG = {
    "normalised with the unbiased variance": (
        [("x.var(axes, unbiased=False)", "x.var(axes)"),
         ("momentum * var * m / (m - 1)", "momentum * var")],
        "unbiased variance \\(divided by m - 1\\)", "modern.batchnorm_forward.unbiased_variance"),
    "eps outside the square root": (
        [("1 / torch.sqrt(var + eps)", "1 / (torch.sqrt(var) + eps)")],
        "adds eps outside the square root", "modern.batchnorm_forward.eps_outside_root"),
    "no eps": (
        [("1 / torch.sqrt(var + eps)", "1 / torch.sqrt(var)")],
        "ignores the argument eps", "modern.batchnorm_forward.eps_ignored"),
    "eps fixed at its default": (
        [("1 / torch.sqrt(var + eps)", "1 / torch.sqrt(var + 1e-5)")],
        "ignores the argument eps", "modern.batchnorm_forward.eps_ignored"),
    "gamma and beta swapped": (
        [("gamma.view(shape) * xhat + beta.view(shape)", "beta.view(shape) * xhat + gamma.view(shape)")],
        "gamma as the shift and beta as the scale", "modern.batchnorm_forward.gamma_beta_swapped"),
    "no scale and shift": (
        [("gamma.view(shape) * xhat + beta.view(shape), (", "xhat, (")],
        "normalised x̂ alone", "modern.batchnorm_forward.no_affine"),
    "running statistics in training": (
        [(BN_EVAL, ""), ("    inv_std = ", "    mean, var = state[\"running_mean\"], "
                                          "state[\"running_var\"]\n    inv_std = ")],
        "running statistics \\(just updated\\) in training mode", "modern.batchnorm_forward.running_stats_in_training"),
    "batch statistics in evaluation": (
        [("    if train:\n", "    if True:\n")],
        "batch's statistics in evaluation mode", "modern.batchnorm_forward.batch_stats_in_eval"),
    "running statistics updated in evaluation": (
        [("    if train:\n        mean, var",
          "    old = state[\"running_mean\"], state[\"running_var\"]\n"
          "    if True:\n        mean, var"),
         (BN_EVAL, "    if not train:\n        mean, var = old\n")],
        "changed in evaluation mode", "modern.batchnorm_forward.updated_in_eval"),
    "running statistics never written into state": (
        [("        state[\"running_mean\"] = ", "        running_mean = "),
         ("        state[\"running_var\"] = ", "        running_var = ")],
        "did not change in training mode", "modern.batchnorm_forward.running_not_updated"),
    "biased variance in the running average": (
        [("momentum * var * m / (m - 1)", "momentum * var")],
        "averages the biased variance", "modern.batchnorm_forward.biased_running_variance"),
    "momentum reversed": (
        [(BN_UPDATE_MEAN, "        state[\"running_mean\"] = momentum * state[\"running_mean\"] + "
                          "(1 - momentum) * mean\n"),
         (BN_UPDATE_VAR, "        state[\"running_var\"] = momentum * state[\"running_var\"] + "
                         "(1 - momentum) * var * m / (m - 1)\n")],
        "weight 1 - momentum", "modern.batchnorm_forward.momentum_reversed"),
    "variance corrected with the batch size alone": (
        [("    m = x.numel() // x.shape[1]\n", "    m = x.shape[0]\n")],
        "with the batch size N alone", "modern.batchnorm_forward.correction_by_batch_size"),
    "running statistics popped out of state": (
        [(BN_UPDATE_MEAN, "        state[\"mean\"] = (1 - momentum) * "
                          "state.pop(\"running_mean\") + momentum * mean\n"),
         (BN_UPDATE_VAR, "        state[\"var\"] = (1 - momentum) * "
                         "state.pop(\"running_var\") + momentum * var * m / (m - 1)\n")],
        "state lost its keys", "modern.batchnorm_forward.state_keys"),
    "x centred in place": (
        [("    xhat = (x - mean.view(shape)) * inv_std.view(shape)\n",
          "    x -= mean.view(shape)\n    xhat = x * inv_std.view(shape)\n")],
        "changed x, gamma or beta in place", "changed_argument"),
    "out alone returned": (
        [(BN_RETURN, "    return gamma.view(shape) * xhat + beta.view(shape)\n")],
        "should return a pair \\(out, cache\\)", "wrong_type"),
    "gamma shaped for images only": (
        [("    shape = (1, -1) + (1,) * (x.dim() - 2)", "    shape = (1, -1, 1, 1)")],
        "x of shape \\(8, 5\\).*should have shape \\(8, 5\\)", "wrong_shape"),
    "axes of images only": (
        [("    axes = (0,) if x.dim() == 2 else (0, 2, 3)", "    axes = (0, 2, 3)")],
        "x of shape \\(8, 5\\), gamma, beta, state, train=True\\) raised IndexError", "crashed"),
}


@pytest.mark.parametrize("mistake", FORWARD_WRONG)
def test_batchnorm_forward_mistake_is_named(mistake):
    edits, match, mistake_id = FORWARD_WRONG[mistake]
    rejects("test_batchnorm_forward", match, mistake_id, batchnorm_forward=define("batchnorm_forward", edits))


def batchnorm_per_sample(x, gamma, beta, state, train, momentum=0.1, eps=1e-5):
    """Wrong: each sample normalised over its own channels and pixels (layer norm's statistics)."""
    dims = tuple(range(1, x.dim()))
    mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    xhat = (x - mean) / torch.sqrt(var + eps)
    return gamma.view(shape) * xhat + beta.view(shape), (xhat, gamma, train)


def batchnorm_per_pixel(x, gamma, beta, state, train, momentum=0.1, eps=1e-5):
    """Wrong: statistics over the batch axis alone, one per channel and pixel."""
    mean, var = x.mean(0, keepdim=True), x.var(0, unbiased=False, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    xhat = (x - mean) / torch.sqrt(var + eps)
    return gamma.view(shape) * xhat + beta.view(shape), (xhat, gamma, train)


def batchnorm_from_torch(x, gamma, beta, state, train, momentum=0.1, eps=1e-5):
    """Wrong: torch's batch norm does the work."""
    out = torch.nn.functional.batch_norm(x, state["running_mean"], state["running_var"], gamma, beta, train,
                                         momentum, eps)
    return out, (x, gamma, beta, train, eps)


@pytest.mark.parametrize("wrong, match, mistake_id", [
    (batchnorm_per_sample, "normalised per sample", "modern.batchnorm_forward.per_sample"),
    (batchnorm_per_pixel, "statistics per channel and pixel", "modern.batchnorm_forward.pixels_not_pooled"),
    (batchnorm_from_torch, "called torch.nn.functional.batch_norm", "modern.batchnorm_forward.borrows_torch"),
])
def test_other_batchnorm_forward_mistakes_are_named(wrong, match, mistake_id):
    rejects("test_batchnorm_forward", match, mistake_id, batchnorm_forward=wrong)


BN_BACK_MEAN = "dxhat.mean(axes, keepdim=True)"
BN_BACK_VAR = "(dxhat * xhat).mean(axes, keepdim=True)"
BN_BACK_EVAL = ("    if not train:                                         # the statistics are constants\n"
                "        return dxhat * inv_std.view(shape), dgamma, dbeta\n")

BACKWARD_WRONG = {
    "batch statistics as constants": (
        (),
        [(BN_BACK_EVAL, BN_BACK_EVAL.replace("if not train:", "if True:     "))],
        "treats the batch's mean and variance as constants", "modern.batchnorm_backward.statistics_as_constants"),
    "no gradient through the variance": (
        (),
        [("\n                                - xhat * " + BN_BACK_VAR, "")],
        "through the mean but not through the variance", "modern.batchnorm_backward.mean_path_only"),
    "no gradient through the mean": (
        (),
        [(f"dxhat - {BN_BACK_MEAN}\n", "dxhat\n")],
        "through the variance but not through the mean", "modern.batchnorm_backward.variance_path_only"),
    "the unbiased variance, forward and backward": (
        [("x.var(axes, unbiased=False)", "x.var(axes)"),
         ("momentum * var * m / (m - 1)", "momentum * var")],
        [(BN_BACK_VAR, "(dxhat * xhat).sum(axes, keepdim=True) / "
                       "(dout.numel() // dout.shape[1] - 1)")],
        "normalisation by the unbiased variance", "modern.batchnorm_backward.unbiased_variance"),
    "gamma left out": (
        (),
        [("    dxhat = dout * gamma.view(shape)\n", "    dxhat = dout\n")],
        "leaves out gamma", "modern.batchnorm_backward.gamma_left_out"),
    "training formula in evaluation mode": (
        (),
        [(BN_BACK_EVAL, "")],
        "training-mode gradient for a pass in evaluation", "modern.batchnorm_backward.training_formula_in_eval"),
    "averages over the batch size alone": (
        (),
        [(BN_BACK_MEAN, "dxhat.sum(axes, keepdim=True) / dout.shape[0]"),
         (BN_BACK_VAR, "(dxhat * xhat).sum(axes, keepdim=True) / dout.shape[0]")],
        "averages over the batch size N alone", "modern.batchnorm_backward.count_by_batch_size"),
    "dgamma from x": (
        [("(xhat, gamma, inv_std, train)", "(xhat, gamma, inv_std, train, x)")],
        [("    xhat, gamma, inv_std, train = cache\n", "    xhat, gamma, inv_std, train, x = cache\n"),
         ("(dout * xhat).sum(axes)", "(dout * x).sum(axes)")],
        "dgamma is the sum of dout · x", "modern.batchnorm_backward.dgamma_of_x"),
    "dgamma averaged": (
        (),
        [("(dout * xhat).sum(axes)", "(dout * xhat).mean(axes)")],
        "dgamma is an average", "modern.batchnorm_backward.dgamma_averaged"),
    "dbeta averaged": (
        (),
        [("dbeta, dgamma = dout.sum(axes)", "dbeta, dgamma = dout.mean(axes)")],
        "dbeta is an average", "modern.batchnorm_backward.dbeta_averaged"),
    "dgamma and dbeta with the summed axes kept": (
        (),
        [("dout.sum(axes), (dout * xhat).sum(axes)",
          "dout.sum(axes, keepdim=True), (dout * xhat).sum(axes, keepdim=True)")],
        "dgamma has shape \\(1, 3, 1, 1\\)", "modern.batchnorm_backward.param_shape"),
    "dx alone returned": (
        (),
        [("    return dx, dgamma, dbeta\n", "    return dx\n")],
        "should return a tuple \\(dx, dgamma, dbeta\\)", "wrong_type"),
    "axes of images only": (
        (),
        [("    axes = (0,) if dout.dim() == 2 else (0, 2, 3)", "    axes = (0, 2, 3)")],
        "dout of shape \\(8, 5\\), cache\\) raised IndexError", "crashed"),
}


@pytest.mark.parametrize("mistake", BACKWARD_WRONG)
def test_batchnorm_backward_mistake_is_named(mistake):
    forward_edits, backward_edits, match, mistake_id = BACKWARD_WRONG[mistake]
    rejects("test_batchnorm_backward", match, mistake_id, **batchnorm_pair(forward_edits, backward_edits))


def batchnorm_backward_by_autograd(dout, cache):
    """Wrong: autograd through the forward pass again."""
    xhat, gamma, inv_std, train = cache
    shape = (1, -1) + (1,) * (dout.dim() - 2)
    g = gamma.clone().requires_grad_(True)
    b = torch.zeros_like(gamma, requires_grad=True)
    x = xhat.clone().requires_grad_(True)
    out = g.view(shape) * x + b.view(shape)
    dxhat, dgamma, dbeta = torch.autograd.grad(out, (x, g, b), dout)
    return dxhat * inv_std.view(shape), dgamma, dbeta


def test_batchnorm_backward_is_not_borrowed():
    rejects("test_batchnorm_backward", "called torch.autograd", "modern.batchnorm_backward.borrows_torch",
            batchnorm_forward=define("batchnorm_forward"), batchnorm_backward=batchnorm_backward_by_autograd)


def forward_flattened(x, gamma, beta, state, train, momentum=0.1, eps=1e-5):
    """Valid: each channel's values as one row, the variance as the mean squared deviation, the running statistics
    changed in place, the raw statistics cached."""
    c = x.shape[1]
    rows = x.transpose(0, 1).reshape(c, -1)
    count = rows.shape[1]
    if train:
        mean = rows.mean(1)
        var = ((rows - mean[:, None]) ** 2).mean(1)
        state["running_mean"].mul_(1 - momentum).add_(momentum * mean)
        state["running_var"].mul_(1 - momentum).add_(momentum * count / (count - 1) * var)
    else:
        mean, var = state["running_mean"].clone(), state["running_var"].clone()
    per_channel = [1] * x.dim()
    per_channel[1] = c
    centred = x - mean.reshape(per_channel)
    out = centred / torch.sqrt(var.reshape(per_channel) + eps) * gamma.reshape(per_channel) + beta.reshape(per_channel)
    return out, {"centred": centred, "var": var, "eps": eps, "gamma": gamma, "train": train}


def backward_staged(dout, cache):
    """Valid: the gradient stage by stage through the graph (the variance, then the mean), summed by einsum-free
    reductions over the non-channel axes."""
    centred, var, eps, gamma, train = (cache[k] for k in ("centred", "var", "eps", "gamma", "train"))
    dims = [d for d in range(dout.dim()) if d != 1]
    per_channel = [1] * dout.dim()
    per_channel[1] = dout.shape[1]
    std = torch.sqrt(var + eps).reshape(per_channel)
    xhat = centred / std
    dgamma = (dout * xhat).sum(dims)
    dbeta = dout.sum(dims)
    dxhat = dout * gamma.reshape(per_channel)
    if not train:
        return dxhat / std, dgamma, dbeta
    count = dout.numel() // dout.shape[1]
    dvar = (dxhat * centred).sum(dims, keepdim=True) * -0.5 * std ** -3
    dmean = -(dxhat / std).sum(dims, keepdim=True) + dvar * (-2.0 / count) * centred.sum(dims, keepdim=True)
    return dxhat / std + dvar * 2.0 * centred / count + dmean / count, dgamma, dbeta


def backward_by_sums(dout, cache):
    """Valid: the solution's cache, the gradient written with sums and the count m."""
    xhat, gamma, inv_std, train = cache
    axes = [0] + list(range(2, dout.dim()))
    view = (1, -1) + (1,) * (dout.dim() - 2)
    dxhat = dout * gamma.view(view)
    if not train:
        return dxhat * inv_std.view(view), (dout * xhat).sum(axes), dout.sum(axes)
    m = dout.numel() / dout.shape[1]
    dx = inv_std.view(view) / m * (m * dxhat - dxhat.sum(axes, keepdim=True)
                                   - xhat * (dxhat * xhat).sum(axes, keepdim=True))
    return dx, (dout * xhat).sum(axes), dout.sum(axes)


def test_batchnorm_written_differently_passes():
    run_test_cell(NB, "test_batchnorm_forward", batchnorm_forward=forward_flattened)
    run_test_cell(NB, "test_batchnorm_backward", batchnorm_forward=forward_flattened,
                  batchnorm_backward=backward_staged)
    run_test_cell(NB, "test_batchnorm_backward", batchnorm_forward=define("batchnorm_forward"),
                  batchnorm_backward=backward_by_sums)


LAYER_APPLY = "BatchNormFunction.apply(x, self.weight, self.bias, state, self.training, self.momentum, self.eps)"

LAYER_WRONG = {
    "running statistics as frozen parameters": (
        [("self.register_buffer(\"running_mean\", torch.zeros(num_features))",
          "self.running_mean = nn.Parameter(torch.zeros(num_features), "
          "requires_grad=False)"),
         ("self.register_buffer(\"running_var\", torch.ones(num_features))",
          "self.running_var = nn.Parameter(torch.ones(num_features), "
          "requires_grad=False)")],
        "has running_mean as a parameter", "modern.batchnorm_layer.statistics_as_parameters"),
    "running statistics as plain attributes": (
        [("self.register_buffer(\"running_mean\", torch.zeros(num_features))",
          "self.running_mean = torch.zeros(num_features)"),
         ("self.register_buffer(\"running_var\", torch.ones(num_features))",
          "self.running_var = torch.ones(num_features)")],
        "has no buffer running_mean", "modern.batchnorm_layer.statistics_not_buffers"),
    "parameters named gamma and beta": (
        [("self.weight = ", "self.gamma = "), ("self.bias = ", "self.beta = "),
         ("self.weight, self.bias, state", "self.gamma, self.beta, state")],
        "has the parameters \\['beta', 'gamma'\\]", "modern.batchnorm_layer.parameters"),
    "parameters shaped to broadcast": (
        [("nn.Parameter(torch.ones(num_features))", "nn.Parameter(torch.ones(1, num_features, 1, 1))"),
         ("nn.Parameter(torch.zeros(num_features))",
          "nn.Parameter(torch.zeros(1, num_features, 1, 1))")],
        "weight has shape \\(1, 4, 1, 1\\)", "modern.batchnorm_layer.shapes"),
    "running variance starting at 0": (
        [("self.register_buffer(\"running_var\", torch.ones(num_features))",
          "self.register_buffer(\"running_var\", torch.zeros(num_features))")],
        "starts with running_var", "modern.batchnorm_layer.initial_values"),
    "random scale at the start": (
        [("nn.Parameter(torch.ones(num_features))", "nn.Parameter(torch.randn(num_features))")],
        "starts with weight", "modern.batchnorm_layer.initial_values"),
    "eps of the default": (
        [(LAYER_APPLY, LAYER_APPLY.replace("self.eps)", "1e-5)"))],
        "match eps 1e-5", "modern.batchnorm_layer.default_eps"),
    "momentum of the default": (
        [(LAYER_APPLY, LAYER_APPLY.replace("self.momentum,", "0.1,"))],
        "match momentum 0.1", "modern.batchnorm_layer.default_momentum"),
    "always in training mode": (
        [(LAYER_APPLY, LAYER_APPLY.replace("self.training,", "True,"))],
        "match the batch's own statistics", "modern.batchnorm_layer.ignores_mode"),
    "running statistics not copied back": (
        [("        if self.training:\n", "        if False:\n")],
        "running statistics after 6 training steps", "modern.batchnorm_layer.running_statistics"),
    "the whole forward pass without gradients": (
        [("        state = {", "        torch.set_grad_enabled(False)\n"
                               "        state = {"),
         ("        return out\n", "        torch.set_grad_enabled(True)\n"
                                "        return out.detach()\n")],
        "the losses of the 6 training steps", "modern.batchnorm_layer.training"),
    "not a module": (
        [("class BatchNorm2dByHand(nn.Module):", "class BatchNorm2dByHand:")],
        "no attribute 'register_buffer'. The layer is not an nn.Module", "modern.batchnorm_layer.not_a_module"),
    "not a module, statistics as attributes": (
        [("class BatchNorm2dByHand(nn.Module):", "class BatchNorm2dByHand:"),
         ("self.register_buffer(\"running_mean\", torch.zeros(num_features))",
          "self.running_mean = torch.zeros(num_features)"),
         ("self.register_buffer(\"running_var\", torch.ones(num_features))",
          "self.running_var = torch.ones(num_features)")],
        "is not an nn.Module: subclass nn.Module", "modern.batchnorm_layer.not_a_module"),
    "input detached": (
        [(LAYER_APPLY, LAYER_APPLY.replace("apply(x,", "apply(x.detach(),"))],
        "the losses of the 6 training steps", "modern.batchnorm_layer.training"),
}


@pytest.mark.parametrize("mistake", LAYER_WRONG)
def test_batchnorm_layer_mistake_is_named(mistake):
    edits, match, mistake_id = LAYER_WRONG[mistake]
    rejects("test_BatchNorm2dByHand", match, mistake_id, **batchnorm_layer(edits))


class LayerOnTorch(nn.Module):
    """Wrong: the layer on torch's batch norm instead of the hand-written functions."""

    def __init__(self, num_features, momentum=0.1, eps=1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        return nn.functional.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, self.training,
                                        self.momentum, self.eps)


def test_batchnorm_layer_is_not_borrowed():
    rejects("test_BatchNorm2dByHand", "called torch.nn.functional.batch_norm", "modern.batchnorm_layer.borrows_torch",
            **batchnorm_layer(layer=LayerOnTorch))


def layer_assigning_buffers(function):
    """Valid: parameters and buffers made with torch.full, the running statistics given as copies and the new ones
    assigned to the buffers' names (which keeps them buffers), the mode read once."""

    class Layer(nn.Module):
        def __init__(self, num_features, momentum=0.1, eps=1e-5):
            super().__init__()
            self.settings = {"momentum": momentum, "eps": eps}
            self.weight = nn.Parameter(torch.full((num_features,), 1.0))
            self.bias = nn.Parameter(torch.full((num_features,), 0.0))
            self.register_buffer("running_var", torch.full((num_features,), 1.0))
            self.register_buffer("running_mean", torch.full((num_features,), 0.0))

        def forward(self, x):
            training = self.training
            state = {"running_mean": self.running_mean.clone(), "running_var": self.running_var.clone()}
            out = function.apply(x, self.weight, self.bias, state, training, self.settings["momentum"],
                                 self.settings["eps"])
            if training:
                self.running_mean = state["running_mean"].detach()
                self.running_var = state["running_var"].detach()
            return out

    return Layer


def test_batchnorm_layer_written_differently_passes():
    functions = batchnorm_layer()
    run_test_cell(NB, "test_BatchNorm2dByHand",
                  **{**functions, "BatchNorm2dByHand": layer_assigning_buffers(functions["BatchNormFunction"])})
    # on the valid functions above, which change the running statistics in place and cache other things
    pair = {"batchnorm_forward": forward_flattened, "batchnorm_backward": backward_staged}
    function = define("BatchNormFunction", cell="batchnorm_function", **pair)
    layer = define("BatchNorm2dByHand", BatchNormFunction=function, **pair)
    run_test_cell(NB, "test_BatchNorm2dByHand", BatchNorm2dByHand=layer, BatchNormFunction=function, **pair)


# ---------------------------------------------------------------- 3. dropout: forward and backward

DROP_KEEP = "    keep = torch.rand(x.shape, generator=generator, dtype=x.dtype, device=x.device) >= p\n"
DROP_RETURN = "    return x * scaled_mask, scaled_mask\n"

DROPOUT_WRONG = {
    "p read as the probability of keeping": (
        [(">= p\n", "< p\n")],
        "drops a fraction 1 - p", "modern.dropout_forward.keep_probability"),
    "one mask for the whole batch": (
        [("torch.rand(x.shape,", "torch.rand(x.shape[1:],")],
        "drops the same units in every sample", "modern.dropout_forward.same_mask_every_row"),
    "kept values not rescaled": (
        [("keep.to(x.dtype) / (1 - p)", "keep.to(x.dtype)")],
        "keeps the values unchanged", "modern.dropout_forward.not_rescaled"),
    "kept values multiplied by 1 - p": (
        [("keep.to(x.dtype) / (1 - p)", "keep.to(x.dtype) * (1 - p)")],
        "multiplies the kept values by 1 - p", "modern.dropout_forward.scaled_by_keep"),
    "kept values divided by p": (
        [("keep.to(x.dtype) / (1 - p)", "keep.to(x.dtype) / p")],
        "divides the kept values by p", "modern.dropout_forward.divided_by_p"),
    "normal draws for the mask": (
        [("torch.rand(x.shape,", "torch.randn(x.shape,")],
        "should have about 30% zeros", "modern.dropout_forward.distribution"),
    "drops in evaluation too": (
        [("    if not train or p == 0:\n", "    if p == 0:\n")],
        "has zeros in evaluation mode", "modern.dropout_forward.drops_in_eval"),
    "scaled by 1 - p in evaluation": (
        [("        return x.clone(), None\n",
          "        return x * (1 - p), None\n")],
        "rescaled in evaluation mode", "modern.dropout_forward.scales_in_eval"),
    "generator not used": (
        [("generator=generator, ", "")],
        "two generators seeded alike", "modern.dropout_forward.ignores_generator"),
    "x dropped in place": (
        [(DROP_RETURN, "    return x.mul_(scaled_mask), scaled_mask\n")],
        "changed x in place", "changed_argument"),
    "out alone returned": (
        [(DROP_RETURN, "    return x * scaled_mask\n")],
        "should return a pair \\(out, cache\\)", "wrong_type"),
    "a mask for (N, D) inputs only": (
        [("torch.rand(x.shape,", "torch.rand(x.shape[0], x.shape[1],")],
        "x of shape \\(50, 3, 20, 20\\), p=0.5, train=True, generator\\) raised RuntimeError", "crashed"),
}


@pytest.mark.parametrize("mistake", DROPOUT_WRONG)
def test_dropout_forward_mistake_is_named(mistake):
    edits, match, mistake_id = DROPOUT_WRONG[mistake]
    rejects("test_dropout_forward", match, mistake_id, dropout_forward=define("dropout_forward", edits))


def dropout_from_torch(x, p, train, generator=None):
    """Wrong: torch's dropout (whose draws ignore the generator)."""
    return torch.nn.functional.dropout(x, p, train), p


def test_dropout_forward_is_not_borrowed():
    rejects("test_dropout_forward", "called torch.nn.functional.dropout", "modern.dropout_forward.borrows_torch",
            dropout_forward=dropout_from_torch)


DROPOUT_BACKWARD_WRONG = {
    "dout passed through": (
        (),
        [("dout.clone() if cache is None else dout * cache", "dout.clone()")],
        "passes dout through unchanged", "modern.dropout_backward.unmasked"),
    "the mask cached without its scale": (
        [(DROP_RETURN, "    return x * scaled_mask, keep\n")],
        (),
        "masked but not rescaled", "modern.dropout_backward.not_rescaled"),
    "divided by 1 - p again": (
        [(DROP_RETURN, "    return x * scaled_mask, (scaled_mask, p)\n")],
        [("dout.clone() if cache is None else dout * cache",
          "dout.clone() if cache is None else dout * cache[0] / (1 - cache[1])")],
        "divided by 1 - p twice", "modern.dropout_backward.rescaled_twice"),
    "a new mask drawn": (
        [(DROP_RETURN, "    return x * scaled_mask, p\n")],
        [("dout.clone() if cache is None else dout * cache",
          "dout.clone() if cache is None else dout * (torch.rand(dout.shape, dtype=dout.dtype) >= cache) "
          "/ (1 - cache)")],
        "reuse its mask", "modern.dropout_backward.new_mask"),
    "evaluation's cache not handled": (
        (),
        [("dout.clone() if cache is None else dout * cache",
          "dout * cache.to(dout.dtype)")],
        "dropout_backward\\(dout, cache\\) raised AttributeError", "crashed"),
    "dout masked in place": (
        (),
        [("dout.clone() if cache is None else dout * cache",
          "dout.clone() if cache is None else dout.mul_(cache)")],
        "changed its argument dout in place", "changed_argument"),
    "no gradient in evaluation": (
        (),
        [("dout.clone() if cache is None", "torch.zeros_like(dout) if cache is None")],
        "evaluation mode: dx", "modern.dropout_backward.gradient"),
    "dx paired with nothing": (
        (),
        [("    return dout.clone() if cache is None else dout * cache\n",
          "    return (dout.clone() if cache is None else dout * cache), None\n")],
        "dx is a tuple", "wrong_type"),
}


@pytest.mark.parametrize("mistake", DROPOUT_BACKWARD_WRONG)
def test_dropout_backward_mistake_is_named(mistake):
    forward_edits, backward_edits, match, mistake_id = DROPOUT_BACKWARD_WRONG[mistake]
    rejects("test_dropout_backward", match, mistake_id, **dropout_pair(forward_edits, backward_edits))


def dropout_backward_by_autograd(dout, cache):
    """Wrong: autograd through the forward's product again."""
    if cache is None:
        return dout.clone()
    x = torch.ones_like(dout, requires_grad=True)
    (dx,) = torch.autograd.grad(x * cache, x, dout)
    return dx


def test_dropout_backward_is_not_borrowed():
    rejects("test_dropout_backward", "called torch.autograd", "modern.dropout_backward.borrows_torch",
            dropout_forward=define("dropout_forward"), dropout_backward=dropout_backward_by_autograd)


def dropout_by_bernoulli(x, p, train, generator=None):
    """Valid: a Bernoulli mask, torch.where, the mask and p cached, x itself returned in evaluation mode."""
    if not train:
        return x, None
    kept = torch.bernoulli(torch.full_like(x, 1.0 - p), generator=generator).bool()
    return torch.where(kept, x / (1.0 - p), torch.zeros_like(x)), (kept, p)


def dropout_backward_by_where(dout, cache):
    """Valid: the cached mask and p."""
    if cache is None:
        return dout
    kept, p = cache
    return torch.where(kept, dout / (1.0 - p), torch.zeros_like(dout))


def dropout_by_uniform(x, p, train, generator=None):
    """Valid: uniform draws filled in place into a new tensor, the kept values' scale applied to the output."""
    if not train or p == 0:
        return x.clone(), torch.ones_like(x)
    draws = torch.empty(x.shape, dtype=torch.float64).uniform_(0, 1, generator=generator)
    scale = (draws > p).to(x.dtype) * (1.0 / (1.0 - p))
    return scale * x, scale


def dropout_backward_by_scale(dout, cache):
    """Valid: the cached scale (ones in evaluation mode)."""
    return cache * dout


@pytest.mark.parametrize("forward, backward", [(dropout_by_bernoulli, dropout_backward_by_where),
                                               (dropout_by_uniform, dropout_backward_by_scale)])
def test_dropout_written_differently_passes_the_public_checks(forward, backward):
    modern.check_dropout_forward(forward)
    modern.check_dropout_backward(backward, forward)


@pytest.mark.parametrize("grade_id", ["test_dropout_forward", "test_dropout_backward"])
@pytest.mark.parametrize("forward, backward", [(dropout_by_bernoulli, dropout_backward_by_where),
                                               (dropout_by_uniform, dropout_backward_by_scale)])
def test_dropout_written_differently_passes(forward, backward, grade_id):
    run_test_cell(NB, grade_id, dropout_forward=forward, dropout_backward=backward)


# ---------------------------------------------------------------- 4. residual networks: BasicBlock and ResNet

BLOCK_MAIN = "        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))\n"
BLOCK_RETURN = "        return torch.relu(out)\n"
BLOCK_PROJECTION = ("            self.projection = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=stride, "
                    "bias=False),\n"
                    "                                            nn.BatchNorm2d(c_out))\n")
BLOCK_NEEDS_PROJECTION = "        if residual and (stride != 1 or c_in != c_out):\n"

BLOCK_WRONG = {
    "ReLU before the addition": (
        [(BLOCK_MAIN, BLOCK_MAIN.replace("out = self.bn2(", "out = torch.relu(self.bn2(")
          .replace("(x)))))\n", "(x))))))\n")), (BLOCK_RETURN, "        return out\n")],
        "ReLU on the main path before the addition", "modern.basic_block.relu_before_add"),
    "no ReLU after the addition": (
        [(BLOCK_RETURN, "        return out\n")],
        "without the ReLU after the addition", "modern.basic_block.no_final_relu"),
    "ReLU after the second batch norm": (
        [(BLOCK_MAIN, BLOCK_MAIN.replace("out = self.bn2(", "out = torch.relu(self.bn2(")
          .replace("(x)))))\n", "(x))))))\n"))],
        "ReLU after the second batch norm", "modern.basic_block.relu_after_second_norm"),
    "no ReLU between the convolutions": (
        [(BLOCK_MAIN, "        out = self.bn2(self.conv2(self.bn1(self.conv1(x))))\n")],
        "without the ReLU between its two convolutions", "modern.basic_block.no_inner_relu"),
    "stride on the second convolution": (
        [("nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)",
          "nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)"),
         ("nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)",
          "nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1, bias=False)")],
        "stride on the second convolution", "modern.basic_block.stride_on_second_conv"),
    "plain block adds its input": (
        [("        if self.residual:\n", "        if self.projection is None or self.residual:\n")],
        "adds its input with residual=False", "modern.basic_block.plain_adds_input"),
    "no projection": (
        [(BLOCK_NEEDS_PROJECTION, "        if False:\n")],
        "shortcut is a 1×1 convolution with the block's "
        "stride",
        "modern.basic_block.shortcut_shape"),
    "projection without the stride": (
        [("nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)",
          "nn.Conv2d(c_in, c_out, 1, bias=False)")],
        "shortcut's output does not match", "modern.basic_block.shortcut_shape"),
    "second convolution without padding": (
        [("nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)",
          "nn.Conv2d(c_out, c_out, 3, bias=False)")],
        "with padding 1", "modern.basic_block.main_path_size"),
    "stride on both convolutions": (
        [("nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)",
          "nn.Conv2d(c_out, c_out, 3, stride=stride, padding=1, bias=False)")],
        "only the block's first convolution", "modern.basic_block.main_path_size"),
    "convolutions with biases": (
        [("nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)",
          "nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)")],
        "biases in its convolutions", "modern.basic_block.conv_biases"),
    "projection on every residual block": (
        [(BLOCK_NEEDS_PROJECTION, "        if residual:\n")],
        "input and output shapes are equal", "modern.basic_block.projection_not_needed"),
    "projection in plain blocks": (
        [(BLOCK_NEEDS_PROJECTION, "        if stride != 1 or c_in != c_out:\n")],
        "residual=False\\) has a 1×1 convolution: a plain block has no shortcut",
        "modern.basic_block.projection_not_needed"),
    "projection without batch norm": (
        [(BLOCK_PROJECTION, "            self.projection = nn.Conv2d(c_in, c_out, 1, "
                            "stride=stride, bias=False)\n")],
        "no batch norm after its 1×1 convolution", "modern.basic_block.shortcut_without_norm"),
    "projection as a 3×3 convolution": (
        [("nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)",
          "nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)")],
        "parameters, the specification", "modern.basic_block.parameters"),
    "batch norm before each convolution": (
        [("self.bn1 = nn.BatchNorm2d(c_out)", "self.bn1 = nn.BatchNorm2d(c_in)"),
         (BLOCK_MAIN, "        out = self.conv2(torch.relu(self.bn2(self.conv1("
                      "torch.relu(self.bn1(x))))))\n")],
        "an nn.BatchNorm2d right after each convolution", "modern.basic_block.layer_order"),
    "ReLU on the input": (
        [(BLOCK_MAIN, "        x = torch.relu(x)\n" + BLOCK_MAIN)],
        "outputs in evaluation mode at", "modern.basic_block.output"),
    "batch norms with Keras's momentum": (
        [("self.bn1 = nn.BatchNorm2d(c_out)", "self.bn1 = nn.BatchNorm2d(c_out, momentum=0.99)"),
         ("self.bn2 = nn.BatchNorm2d(c_out)", "self.bn2 = nn.BatchNorm2d(c_out, momentum=0.99)")],
        "momentum=0.99.*nn.BatchNorm2d with its defaults", "modern.basic_block.norm_settings"),
    "batch norms without running statistics": (
        [("self.bn2 = nn.BatchNorm2d(c_out)",
          "self.bn2 = nn.BatchNorm2d(c_out, track_running_stats=False)")],
        "track_running_stats=False", "modern.basic_block.norm_settings"),
    "not a module": (
        [("class BasicBlock(nn.Module):", "class BasicBlock:")],
        "subclass nn.Module", "modern.basic_block.not_a_module"),
    "its own batch norm layer": (
        [("nn.BatchNorm2d(c_out)", "BatchNorm2dByHand(c_out)")],
        "an nn.BatchNorm2d right after", "modern.basic_block.layer_order"),
    "second convolution from c_in channels": (
        [("nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)",
          "nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)")],
        "BasicBlock\\(4, 8, stride=2, residual=True\\) raised RuntimeError", "crashed"),
}


@pytest.mark.parametrize("mistake", BLOCK_WRONG)
def test_basic_block_mistake_is_named(mistake):
    edits, match, mistake_id = BLOCK_WRONG[mistake]
    own_layer = batchnorm_layer()["BatchNorm2dByHand"]          # the notebook's own batch norm, for one of them
    rejects("test_BasicBlock", match, mistake_id, BasicBlock=define("BasicBlock", edits, BatchNorm2dByHand=own_layer))


class BlockShortcutFirst(nn.Module):
    """Valid: the shortcut computed before the main path, which is an nn.Sequential with ReLU modules; nn.Identity
    for the identity shortcut, no shortcut at all in a plain block; an in-place ReLU at the end."""

    def __init__(self, c_in, c_out, stride=1, residual=True):
        super().__init__()
        if not residual:
            self.shortcut = None
        elif stride == 1 and c_in == c_out:
            self.shortcut = nn.Identity()
        else:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=1, stride=stride, bias=False),
                                          nn.BatchNorm2d(c_out))
        self.main = nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(),
                                  nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        skip = None if self.shortcut is None else self.shortcut(x)
        out = self.main(x)
        if skip is not None:
            out = out + skip
        return nn.functional.relu(out, inplace=True)


class BlockOfParts(nn.Module):
    """Valid: separate projection layers created in another order, an empty nn.Sequential as the identity, the
    ReLU as one module used twice."""

    def __init__(self, c_in, c_out, stride=1, residual=True):
        super().__init__()
        self.residual = residual
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if residual and (stride > 1 or c_out != c_in):
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, (1, 1), (stride, stride), bias=False),
                                          nn.BatchNorm2d(c_out))
        self.norm_b = nn.BatchNorm2d(c_out)
        self.conv_b = nn.Conv2d(c_out, c_out, (3, 3), padding=(1, 1), bias=False)
        self.norm_a = nn.BatchNorm2d(c_out)
        self.conv_a = nn.Conv2d(c_in, c_out, (3, 3), stride=(stride, stride), padding=(1, 1), bias=False)

    def forward(self, x):
        h = self.relu(self.norm_a(self.conv_a(x)))
        h = self.norm_b(self.conv_b(h))
        return self.relu(h + self.shortcut(x) if self.residual else h)


@pytest.mark.parametrize("valid", [BlockShortcutFirst, BlockOfParts])
def test_basic_block_written_differently_passes(valid):
    run_test_cell(NB, "test_BasicBlock", BasicBlock=valid)


RESNET_LOOP = ("            for i in range(n_blocks):\n"
               "                blocks.append(BasicBlock(width, c_out, stride if i == 0 else 1, residual))\n"
               "                width = c_out\n")
RESNET_STEM = ("nn.BatchNorm2d(width),\n"
               "                                  nn.ReLU())")

RESNET_WRONG = {
    "a transition block before the stage's blocks": (
        [(RESNET_LOOP, "            blocks.append(BasicBlock(width, c_out, "
                       "stride, residual))\n"
                       "            width = c_out\n" + RESNET_LOOP.replace(
                           "stride if i == 0 else 1", "1"))],
        "has 8 BasicBlock modules; the table asks for 5", "modern.resnet.block_count"),
    "blocks kept in a Python list": (
        [("        self.blocks = nn.Sequential(*blocks)\n", "        self.blocks = blocks\n"),
         ("self.head(self.blocks(self.stem(x)).mean((2, 3)))",
          "self.head(self.run_blocks(self.stem(x)).mean((2, 3)))\n\n"
          "    def run_blocks(self, h):\n"
          "        for block in self.blocks:\n"
          "            h = block(h)\n"
          "        return h")],
        "has no BasicBlock among its modules.*Python list", "modern.resnet.block_count"),
    "every block of a stage strided": (
        [("stride if i == 0 else 1", "stride")],
        "the first of each with the stage's "
        "stride",
        "modern.resnet.parameters"),
    "the stages' strides ignored": (
        [("stride if i == 0 else 1", "1")],
        "3×3 convolution number 6 gives maps "
        "\\(2, 16, 32, 32\\), the table \\(2, 16, 16, 16\\)",
        "modern.resnet.strides"),
    "stages' tuples read as (width, stride, blocks)": (
        [("for c_out, n_blocks, stride in stages:",
          "for c_out, stride, n_blocks in stages:")],
        "parameters, the table", "modern.resnet.parameters"),
    "classes fixed at 10": (
        [("nn.Linear(width, num_classes)", "nn.Linear(width, 10)")],
        "parameters, the table", "modern.resnet.parameters"),
    "residual not passed to the blocks": (
        [("stride if i == 0 else 1, residual))", "stride if i == 0 else 1))")],
        "residual=False\\) has .* parameters, the table", "modern.resnet.parameters"),
    "stem without batch norm": (
        [(RESNET_STEM, "nn.ReLU())")],
        "parameters, the table", "modern.resnet.parameters"),
    "stem without ReLU": (
        [(RESNET_STEM, "nn.BatchNorm2d(width))")],
        "without the ReLU", "modern.resnet.stem_without_relu"),
    "ImageNet's max-pool in the stem": (
        [(RESNET_STEM, RESNET_STEM.replace("nn.ReLU())", "nn.ReLU(), nn.MaxPool2d(2))"))],
        "first block's input is not the stem's output", "modern.resnet.stem"),
    "stem without padding": (
        [("nn.Conv2d(in_channels, width, 3, padding=1, bias=False)",
          "nn.Conv2d(in_channels, width, 3, bias=False)")],
        "at x's size", "modern.resnet.stem"),
    "head pools by the maximum": (
        [(".mean((2, 3))", ".amax((2, 3))")],
        "\\(it is their maximum\\)", "modern.resnet.head_pooling"),
    "head on one corner of the maps": (
        [(".mean((2, 3))", "[:, :, 0, 0]")],
        "not the average of each channel", "modern.resnet.head_pooling"),
    "in_channels ignored": (
        [("nn.Conv2d(in_channels, width,", "nn.Conv2d(3, width,")],
        "in_channels=1, residual=False\\) raised RuntimeError", "crashed"),
    "not a module": (
        [("class ResNet(nn.Module):", "class ResNet:")],
        "subclass nn.Module", "modern.resnet.not_a_module"),
}


@pytest.mark.parametrize("mistake", RESNET_WRONG)
def test_resnet_mistake_is_named(mistake):
    edits, match, mistake_id = RESNET_WRONG[mistake]
    rejects("test_ResNet", match, mistake_id, **resnet(edits))


SOLUTION_BLOCK = define("BasicBlock")


class ResNetOfStages(nn.Module):
    """Valid: one nn.Sequential per stage in an nn.ModuleList, the stem's layers as attributes with a functional
    ReLU, a head of pooling, flattening and the linear layer."""

    def __init__(self, stages, num_classes=10, in_channels=3, residual=True):
        super().__init__()
        block = SOLUTION_BLOCK
        self.conv = nn.Conv2d(in_channels, stages[0][0], kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(stages[0][0])
        self.stages = nn.ModuleList()
        c_in = stages[0][0]
        for width, count, stride in stages:
            layers = [block(c_in, width, stride, residual)]
            layers += [block(width, width, 1, residual) for _ in range(count - 1)]
            self.stages.append(nn.Sequential(*layers))
            c_in = width
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))

    def forward(self, x):
        h = nn.functional.relu(self.norm(self.conv(x)))
        for stage in self.stages:
            h = stage(h)
        return self.head(h)


class ResNetOfBlocks(nn.Module):
    """Valid: blocks in one nn.ModuleList, pooling by two means, the ReLU as a module of the stem."""

    def __init__(self, stages, num_classes=10, in_channels=3, residual=True):
        super().__init__()
        block = SOLUTION_BLOCK
        channels = [stages[0][0]]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, channels[0], 3, 1, 1, bias=False), nn.BatchNorm2d(channels[0]),
                                  nn.ReLU(inplace=True))
        self.blocks = nn.ModuleList()
        for width, count, stride in stages:
            for i in range(count):
                self.blocks.append(block(channels[-1], width, stride=stride if i == 0 else 1, residual=residual))
                channels.append(width)
        self.fc = nn.Linear(channels[-1], num_classes)

    def forward(self, x):
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.fc(h.mean(3).mean(2))


@pytest.mark.parametrize("valid", [ResNetOfStages, ResNetOfBlocks])
def test_resnet_written_differently_passes(valid):
    run_test_cell(NB, "test_ResNet", ResNet=valid, BasicBlock=SOLUTION_BLOCK)


# ---------------------------------------------------------------- every mistake the checks name has a wrong answer

# ids of modern.py that no plausible wrong answer reaches before another, more specific one names it
UNREACHED = {
    "modern.dropout_forward.p_zero",        # only a contrived answer is wrong at p = 0 and right at 0.3 and 0.6
    "modern.dropout_forward.eval",          # evaluation's output other than with drops or rescaled
    "modern.batchnorm_layer.evaluation",    # the layer evaluates through batchnorm_forward, which is checked apart
    "modern.resnet.head",                   # a head fed anything but (N, C) crashes in the linear layer first
}


def test_every_mistake_of_the_checks_has_a_wrong_answer():
    named = {entry[-1] for table in (KAIMING_WRONG, FORWARD_WRONG, BACKWARD_WRONG, LAYER_WRONG, DROPOUT_WRONG,
                                     DROPOUT_BACKWARD_WRONG, BLOCK_WRONG, RESNET_WRONG) for entry in table.values()}
    named |= {"modern.kaiming_normal.borrows_torch", "modern.batchnorm_forward.per_sample",
              "modern.batchnorm_forward.pixels_not_pooled", "modern.batchnorm_forward.borrows_torch",
              "modern.batchnorm_backward.borrows_torch", "modern.batchnorm_layer.borrows_torch",
              "modern.dropout_forward.borrows_torch", "modern.dropout_backward.borrows_torch"}
    source = Path(modern.__file__).read_text()
    ids = set(re.findall(r"\"(modern\.[a-z_]+\.[a-z_]+)\"", source))
    ids |= {f"modern.{exercise}.borrows_torch" for exercise in re.findall(r"_own_work\([^,]+, \"([a-z_]+)\"", source)}
    assert ids - named - UNREACHED == set()
    assert UNREACHED <= ids
