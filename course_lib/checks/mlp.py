"""Public checks for notebook 01: a two-layer MLP in NumPy.

One ``check_<function>(fn)`` per exercise, each its contract plus a table of the usual mistakes
(:mod:`course_lib.checks.toolkit`): the student's function is called on copies of small inputs,
its value compared with torch's (or with values worked by hand), and a wrong value named by the
first table entry that reproduces it. The student's functions are wrapped in
:func:`~course_lib.checks.numpy_only.numpy_only` first: this notebook is NumPy only.
"""
from __future__ import annotations

import itertools
import warnings

import numpy as np

from course_lib.checks.gradient_check import numerical_gradient, rel_error
from course_lib.checks.numpy_only import numpy_only
from course_lib.checks.toolkit import (Mistake, as_array, call, close, compare, describe, diagnose, expect,
                                       expect_shape, fail, passed)

__all__ = [
    "check_one_hot", "check_relu", "check_relu_backward", "check_sigmoid", "check_softmax",
    "check_cross_entropy", "check_mlp_forward", "check_mlp_backward", "check_sgd_step",
    "check_step_lr", "check_iterations_per_epoch", "check_l2_regularization",
]


# ---------------------------------------------------------------- helpers

def _t(array):
    import torch

    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def _torch():
    import torch

    return torch


def _torch_relu_grad(dout, z):
    """The gradient torch's autograd carries back through torch.relu at ``z`` from ``dout``."""
    zt = _t(z).requires_grad_(True)
    _torch().relu(zt).backward(_t(dout))
    return zt.grad.numpy()


def _call_recording(fn, *args, **options):
    """``call(fn, *args, **options)`` with NumPy's floating-point warnings recorded: (result, warning texts)."""
    with warnings.catch_warnings(record=True) as caught, \
            np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
        warnings.simplefilter("always")
        result = call(fn, *args, **options)
    return result, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _call_for_value(fn, *args, **options):
    """``call`` for a function that returns a dict, or a number or an array (kinds ``returns=`` cannot state):
    only None is refused here; the check judges the rest."""
    result = call(fn, *args, **options)
    expect(result is not None, f"{getattr(fn, '__name__', 'your function')} returned None: is the result "
                               "returned at the end of the function?", "returned_none")
    return result


def _finite(value) -> bool:
    try:
        return bool(np.all(np.isfinite(as_array(value))))
    except TypeError:
        return False


# ---------------------------------------------------------------- one-hot labels

def _torch_one_hot(y, num_classes):
    """torch.nn.functional.one_hot as a float64 NumPy array (N, num_classes)."""
    torch = _torch()
    return torch.nn.functional.one_hot(torch.as_tensor(y), num_classes).double().numpy()


def _whole_columns(y, num_classes):
    """Every row marks every label of the batch: each row is the union of torch's one-hot rows."""
    reference = _torch_one_hot(y, num_classes)
    return np.broadcast_to(reference.max(axis=0), reference.shape)


ONE_HOT_MISTAKES = (
    Mistake("mlp.one_hot.transposed", "is transposed: rows are samples and columns are classes, shape "
            "(N, num_classes).", returns=lambda y, num_classes: _torch_one_hot(y, num_classes).T),
    Mistake("mlp.one_hot.width_from_labels", "has the wrong number of columns: its width is num_classes, not "
            "y.max() + 1 or the number of distinct labels; a batch need not contain every class.",
            shows=lambda out, y, num_classes: np.ndim(out) == 2 and np.shape(out)[0] == len(y)
            and np.shape(out)[1] != num_classes),
    Mistake("mlp.one_hot.whole_columns", "has a 1 in every labelled column of every row: out[:, y] = 1 sets "
            "whole columns. Each row i needs a single 1, in column y[i]: the row indices and the labels go "
            "together one to one.", returns=_whole_columns),
)


def check_one_hot(one_hot) -> None:
    """one_hot(y, num_classes) against torch.nn.functional.one_hot on 4 labels and 6 classes, then on 1 label:
    a float array (N, num_classes) with one 1 per row, in the label's column. Contract: y is left as it was."""
    one_hot = numpy_only(one_hot)
    for y, num_classes, what in ((np.array([2, 0, 3, 2]), 6, "one_hot(y, 6) for the labels [2, 0, 3, 2]"),
                                 (np.array([9]), 10, "one_hot(y, 10) for the label [9]")):
        out = call(one_hot, y, num_classes, returns="array", keeps={0: "y"})
        compare(out, _torch_one_hot(y, num_classes), what, mistakes=ONE_HOT_MISTAKES, inputs=(y, num_classes))
        dtype = np.asarray(out).dtype
        expect(np.issubdtype(dtype, np.floating), f"one_hot returned {dtype} values; it should return floats (it is "
                                                  "combined with probabilities): the array you fill was created "
                                                  "with an integer dtype.", "mlp.one_hot.integer_dtype")
    passed("one_hot")


# ---------------------------------------------------------------- ReLU and sigmoid

RELU_MISTAKES = (
    Mistake("mlp.relu.reduction", "has lost z's shape: np.max(z, 0) is a reduction (the largest value along axis "
            "0), not a comparison of each entry with 0. NumPy has a separate function for the element-wise "
            "maximum of two arrays.", returns=lambda z: np.max(z, 0)),
    Mistake("mlp.relu.mask", "returned the mask (z > 0) as 0s and 1s; it should return the values max(z, 0).",
            returns=lambda z: (z > 0).astype(float)),
    Mistake("mlp.relu.absolute_value", "returned |z|: negative inputs must become 0, not positive.", returns=np.abs),
)


def check_relu(relu) -> None:
    """relu(z) against torch.relu on a (2, 5) array and a (2,) one: an array of z's shape.
    Contract: z is left as it was (the forward pass keeps it for the backward pass)."""
    import torch

    relu = numpy_only(relu)
    for z, what in ((np.array([[-2.0, -0.5, 0.0, 0.5, 3.0], [1.5, -1.0, 2.0, -3.0, 0.25]]), "relu(z)"),
                    (np.array([-1.0, 2.0]), "relu(z) for z = [-1, 2]")):
        out = call(relu, z, returns="array", keeps={0: "z"})
        compare(out, torch.relu(_t(z)).numpy(), what, mistakes=RELU_MISTAKES, inputs=(z,))
    passed("relu")


def _torch_relu(a):
    return _torch().relu(_t(a)).numpy()


RELU_BACKWARD_MISTAKES = (  # on (dout, z); z has no zeros
    Mistake("mlp.relu_backward.masked_by_dout", "is masked with dout > 0: the gradient flows where the forward "
            "input z was positive, so the mask comes from z (the sign of dout does not matter).",
            returns=lambda dout, z: _torch_relu(dout)),
    Mistake("mlp.relu_backward.mask_only", "returned the mask (z > 0) alone: by the chain rule the upstream "
            "gradient dout has to come in too.", returns=lambda dout, z: _torch_relu_grad(np.ones_like(z), z)),
    Mistake("mlp.relu_backward.unmasked", "passed dout through unchanged; it must be 0 where z <= 0.",
            returns=lambda dout, z: dout),
    Mistake("mlp.relu_backward.reversed_mask", "kept dout where z < 0 and dropped it where z > 0: the mask is "
            "reversed.", shows=lambda dz, dout, z: close(as_array(dz) + _torch_relu_grad(dout, z), dout)),
    Mistake("mlp.relu_backward.times_relu", "multiplied by relu(z); the local derivative of ReLU is 1 where z > 0 "
            "and 0 elsewhere, not relu(z).",
            shows=lambda dz, dout, z: close(dz, _torch_relu(z) * dout) or close(dz, _torch_relu(z))),
)


def check_relu_backward(relu_backward) -> None:
    """relu_backward(dout, z) against torch's autograd through torch.relu, for dout whose signs differ from z's:
    an array of z's shape. Contract: dout may be changed in place (it is not used again); the result counts."""
    relu_backward = numpy_only(relu_backward)
    z = np.array([[-2.0, -0.5, 1.0, 0.5, 3.0], [1.5, -1.0, 2.0, -3.0, 0.25]])
    dout = np.array([[0.3, -0.7, -1.2, 0.4, 2.0], [-0.5, 0.9, 1.1, -0.2, -0.6]])
    dz = call(relu_backward, dout, z, returns="array")
    compare(dz, _torch_relu_grad(dout, z), "relu_backward(dout, z)", mistakes=RELU_BACKWARD_MISTAKES, inputs=(dout, z))
    passed("relu_backward")


SIGMOID_MISTAKES = (
    Mistake("mlp.sigmoid.flipped_sign", "decreases (sigmoid(2) is below 0.5): the sign in the exponent is flipped.",
            returns=lambda z: _torch().sigmoid(_t(-z)).numpy()),
    Mistake("mlp.sigmoid.not_finite", "is NaN or inf for large |z|; it must stay in [0, 1] (inf/inf = NaN).",
            shows=lambda out, z: not _finite(out)),
    Mistake("mlp.sigmoid.lost_shape", "has lost z's shape: the values are there, but flattened into one axis; "
            "the result has z's shape, entry for entry.",
            shows=lambda out, z: np.size(out) == np.size(z) and np.shape(out) != np.shape(z)
            and close(np.ravel(as_array(out)), np.ravel(_torch().sigmoid(_t(z)).numpy()))),
)


def check_sigmoid(sigmoid) -> None:
    """sigmoid(z) against torch.sigmoid on (6,) values, on |z| up to 1e4 (no floating-point warning) and on a
    (2, 2) array: an array of z's shape. Contract: z is left as it was."""
    import torch

    sigmoid = numpy_only(sigmoid)
    z = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 4.0])
    out = call(sigmoid, z, returns="array", keeps={0: "z"})
    compare(out, torch.sigmoid(_t(z)).numpy(), "sigmoid(z)", mistakes=SIGMOID_MISTAKES, inputs=(z,))

    large = np.array([-1e4, -800.0, -50.0, 50.0, 800.0, 1e4])
    out, warned = _call_recording(sigmoid, large, returns="array", keeps={0: "z"})
    overflow = [m for m in warned if "overflow" in m]
    expect(not overflow, f"sigmoid warned '{overflow[0] if overflow else ''}' for z down to -10000: exp(-z) is too "
                         "big for floating point there. Negative z need the equal form of section 3, in which exp "
                         "never sees a large positive number, each form computed on its own entries only "
                         "(np.where evaluates both of its branches everywhere).", "mlp.sigmoid.overflow")
    compare(out, torch.sigmoid(_t(large)).numpy(), "sigmoid(z) for z from -10000 to 10000",
            mistakes=SIGMOID_MISTAKES, inputs=(large,))
    expect(not warned, f"sigmoid warned '{warned[0] if warned else ''}' for large |z|: a stable sigmoid computes "
                       "no inf along the way.", "mlp.sigmoid.computes_inf")

    matrix = np.array([[0.0, 1.0], [-1.0, 3.0]])
    out = call(sigmoid, matrix, returns="array", keeps={0: "z"})
    compare(out, torch.sigmoid(_t(matrix)).numpy(), "sigmoid of a 2×2 array", mistakes=SIGMOID_MISTAKES,
            inputs=(matrix,))
    passed("sigmoid")


# ---------------------------------------------------------------- softmax and cross-entropy

def _torch_softmax(logits):
    """torch.softmax over the classes (dim=1)."""
    return _torch().softmax(_t(logits), dim=1).numpy()


def _sums_to_one(probs, axis) -> bool:
    return bool(np.allclose(as_array(probs).sum(axis=axis), 1))


def _row_and_column_factors(probs, logits) -> bool:
    """Whether ``probs`` is torch's softmax with each row scaled by one factor and each column by another, the
    column factors not all equal: what a per-row max or sum gives when it meets the columns instead of the rows
    (log(probs / torch's) is a row term plus a column term)."""
    ratio = np.log(as_array(probs)) - np.log(_torch_softmax(logits))
    if ratio.ndim != 2 or not np.all(np.isfinite(ratio)):
        return False
    columns = ratio - ratio.mean(axis=1, keepdims=True)  # the column term, once per row
    return bool(np.allclose(columns, columns[0], atol=1e-8) and np.ptp(columns[0]) > 1e-6)


SOFTMAX_MISTAKES = (
    Mistake("mlp.softmax.normalised_over_batch", "has columns that sum to 1, not rows: did you normalise over "
            "axis 0 (the batch) instead of axis 1 (the classes)?",
            shows=lambda probs, logits: _sums_to_one(probs, 0) and not _sums_to_one(probs, 1)),
    Mistake("mlp.softmax.whole_array", "sums to 1 over the whole array: you summed over every entry; sum over "
            "axis 1 (the classes) only.", shows=lambda probs, logits: np.isclose(as_array(probs).sum(), 1)),
    Mistake("mlp.softmax.no_keepdims", "meets each row with another row's max or sum: a max or a sum over axis 1 "
            "has shape (N,), which broadcasts along the columns, not the rows. Each row must meet its own value, "
            "held as a column of shape (N, 1).", shows=_row_and_column_factors),
    Mistake("mlp.softmax.rows_not_normalised", "has rows that do not sum to 1: each row must be divided by its "
            "own total.", shows=lambda probs, logits: not _sums_to_one(probs, 1)),
)

SOFTMAX_UNSHIFTED = Mistake(
    "mlp.softmax.unshifted", "overflows (exp(1000) = inf, and inf/inf = NaN): exp overflows for large logits, "
    "while softmax is unchanged by subtracting a constant from a row (section 4, Stability).",
    shows=lambda probs, logits: not _finite(probs))
SOFTMAX_GLOBAL_SHIFT = Mistake(
    "mlp.softmax.global_max", "is NaN in the row far below the other: one shift for the whole array (its largest "
    "value) makes every exp of that row underflow to 0, and 0/0 = NaN; the shift is a constant per row.",
    shows=lambda probs, logits: not _finite(probs))


def check_softmax(softmax) -> None:
    """Row-wise softmax against torch.softmax(dim=1) on a square (3, 3) and a (4, 3) array, then on rows around
    1000 and rows of very different scale: probabilities of the logits' shape, each row summing to 1.
    Contract: logits are left as they were (the caller keeps them)."""
    softmax = numpy_only(softmax)
    cases = (
        (np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0], [-2.0, 1.0, 0.5]]), "softmax of a 3×3 array", ()),
        (np.random.default_rng(1).normal(0, 2, size=(4, 3)), "softmax of a 4×3 array", ()),
        (np.array([[1000.0, 1001.0, 1002.0], [1002.0, 1000.0, 1001.0]]), "softmax for logits around 1000",
         (SOFTMAX_UNSHIFTED,)),
        (np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]]),
         "softmax for a row of -1000 next to a row of 1000", (SOFTMAX_GLOBAL_SHIFT,)),
    )
    for logits, what, stability in cases:
        probs, warned = _call_recording(softmax, logits, returns="array", keeps={0: "logits"})
        if stability and any("overflow" in m for m in warned):
            fail(f"{what} {stability[0].hint}", stability[0].id)
        compare(probs, _torch_softmax(logits), what, mistakes=stability + SOFTMAX_MISTAKES,
                inputs=(logits,))
    passed("softmax")


def _torch_nll(probs, labels) -> float:
    """torch's mean negative log-likelihood of ``labels`` under ``probs`` (nll_loss of log(probs))."""
    torch = _torch()
    return float(torch.nn.functional.nll_loss(torch.log(_t(probs)), torch.as_tensor(np.asarray(labels))))


def _every_label_for_every_row(probs, labels) -> float:
    """torch's mean loss when each of ``labels`` in turn is given as the label of every row, averaged."""
    return float(np.mean([_torch_nll(probs, np.full(len(probs), label)) for label in labels]))


def _close_and_finite(loss, value) -> bool:
    """Whether ``loss`` is close to ``value``, a finite number (an infinite loss is no evidence of a mistake's
    arithmetic: the mistakes that give one are named by what makes it infinite)."""
    return bool(np.isfinite(value)) and close(loss, value)


CROSS_ENTROPY_MISTAKES = (  # on (probs, y)
    Mistake("mlp.cross_entropy.all_pairs", "uses probs[:, y], which picks in every row the entries of all N labels "
            "(an N×N block). Each sample needs one entry only, its own true class: the row indices and the labels "
            "go together one to one.",
            shows=lambda loss, probs, y: np.shape(loss) == (len(y), len(y))
            or _close_and_finite(loss, _every_label_for_every_row(probs, y))),
    Mistake("mlp.cross_entropy.per_sample", "is one loss per sample; it should be one number, the mean over the "
            "batch.", shows=lambda loss, probs, y: np.shape(loss) == (len(y),)),
    Mistake("mlp.cross_entropy.negative", "is negative: -log p is positive for p < 1; did you drop the minus sign?",
            shows=lambda loss, probs, y: np.ndim(loss) == 0 and float(loss) < 0),
    Mistake("mlp.cross_entropy.summed", "is N times too large (N the batch size): you summed over the batch "
            "instead of averaging, and a summed loss grows with the batch size.",
            shows=lambda loss, probs, y: _close_and_finite(loss, len(y) * _torch_nll(probs, y))),
    Mistake("mlp.cross_entropy.every_class", "averaged -log p over every class; only each sample's true-class "
            "probability counts.",
            shows=lambda loss, probs, y: _close_and_finite(loss, _every_label_for_every_row(probs,
                                                                                      range(probs.shape[1])))),
    Mistake("mlp.cross_entropy.zero_times_log_zero", "is NaN when a wrong class has probability 0: one_hot · "
            "log(probs) gives 0 · (-inf) = NaN there. Only each row's true-class probability needs its log, and "
            "the log of 0 has to be kept from happening.",
            shows=lambda loss, probs, y: not _finite(loss) and np.isfinite(_torch_nll(probs, y))),
    Mistake("mlp.cross_entropy.unclipped", "is not finite when the true class has probability 0 (log 0 = -inf): "
            "the probabilities are not clipped away from 0 before the log (section 5, Numerics).",
            shows=lambda loss, probs, y: not _finite(loss) and not np.isfinite(_torch_nll(probs, y))),
)


def check_cross_entropy(cross_entropy) -> None:
    """Mean cross-entropy over a batch of 4 (one number) against torch's nll_loss of log(probs); then finite
    when a wrong class has probability 0, and large but finite when the true class has.
    Contract: probs are left as they were (the cache of the forward pass holds them)."""
    cross_entropy = numpy_only(cross_entropy)
    cases = ((np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5], [0.6, 0.3, 0.1]]), np.array([0, 1, 2, 1]),
              "cross_entropy(probs, y) for a batch of 4"),
             (np.array([[0.5, 0.5, 0.0]]), np.array([0]), "cross_entropy(probs, y) for probs [[0.5, 0.5, 0]] and y [0]"))
    for probs, y, what in cases:
        loss = _call_for_value(cross_entropy, probs, y, keeps={0: "probs"})
        compare(loss, _torch_nll(probs, y), what, mistakes=CROSS_ENTROPY_MISTAKES, inputs=(probs, y))

    # the true class at probability 0: no exact value (it depends on the eps clipped with), but large and finite
    probs, y = np.array([[0.0, 0.6, 0.4], [0.5, 0.3, 0.2]]), np.array([0, 0])
    what = "cross_entropy(probs, y) for probs [[0, 0.6, 0.4], [0.5, 0.3, 0.2]] and y [0, 0]"
    loss, _ = _call_recording(cross_entropy, probs, y, returns="number", keeps={0: "probs"})
    if not (_finite(loss) and float(loss) > 3):
        diagnose(loss, what, CROSS_ENTROPY_MISTAKES, inputs=(probs, y))
        fail(f"{what} is only {float(loss):.3g}; it should be large, the first sample being a confident mistake: "
             "the eps you clip with is too large (section 5, Numerics).", "mlp.cross_entropy.eps_too_large")
    passed("cross_entropy")


# ---------------------------------------------------------------- the network

def _mlp_case(seed: int, n: int = 5, d: int = 4, h: int = 6, c: int = 3):
    """Small float64 parameters and inputs whose hidden pre-activations keep away from 0: (params, X, y)."""
    import torch

    rng = np.random.default_rng(seed)
    while True:
        W1, b1 = rng.normal(0, 1, (d, h)), rng.normal(0, 0.5, h)
        W2, b2 = rng.normal(0, 1, (h, c)), rng.normal(0, 0.5, c)
        X = rng.normal(0, 1, (n, d))
        z = torch.nn.functional.linear(_t(X), _t(W1).T, _t(b1)).numpy()  # the hidden pre-activations
        if np.abs(z).min() > 0.05 and 0.25 < (z > 0).mean() < 0.75:
            return {"W1": W1, "b1": b1, "W2": W2, "b2": b2}, X, rng.integers(0, c, n)


def _torch_probs(params, X, relu_hidden=True, biases=True, relu_out=False):
    """(N, C) probabilities of torch's layers holding ``params`` (nn.Linear stores the transposed weight),
    stacked as section 6 specifies; the switches build the network of a usual mistake instead."""
    import torch
    from torch import nn

    def layer(weight, bias):
        linear = nn.Linear(*np.shape(weight), bias=biases).double()
        with torch.no_grad():
            linear.weight.copy_(_t(weight).T)
            if biases:
                linear.bias.copy_(_t(bias))
        return linear

    stack = [layer(params["W1"], params["b1"]), nn.ReLU() if relu_hidden else nn.Identity(),
             layer(params["W2"], params["b2"]), nn.ReLU() if relu_out else nn.Identity(), nn.Softmax(dim=1)]
    with torch.no_grad():
        return nn.Sequential(*stack)(_t(X)).numpy()


MLP_FORWARD_MISTAKES = (
    Mistake("mlp.mlp_forward.scores", "do not sum to 1 along each row: return the softmax probabilities, not the "
            "scores (logits) of the last layer.",
            shows=lambda probs, params, X: not np.allclose(as_array(probs).sum(axis=1), 1)),
    Mistake("mlp.mlp_forward.no_relu", "match a network without the ReLU: the hidden pre-activations must go "
            "through relu; without it the two layers collapse into one linear map.",
            returns=lambda params, X: _torch_probs(params, X, relu_hidden=False)),
    Mistake("mlp.mlp_forward.no_biases", "match a network without biases: both layers add their bias, b1 and b2.",
            returns=lambda params, X: _torch_probs(params, X, biases=False)),
    Mistake("mlp.mlp_forward.relu_on_scores", "match a network with a ReLU on the output scores too: the last "
            "layer's scores go into softmax directly.",
            returns=lambda params, X: _torch_probs(params, X, relu_out=True)),
)


def check_mlp_forward(mlp_forward) -> None:
    """mlp_forward(params, X) -> (probs, cache) for N=5 samples, D=4 features, H=6 hidden units, C=3 classes:
    probs (5, 3) as the same network in torch gives them; the cache may be anything.
    Contract: params and X are left as they were (the forward pass only reads them)."""
    mlp_forward = numpy_only(mlp_forward)
    params, X, _ = _mlp_case(seed=2)
    probs, _ = call(mlp_forward, params, X, returns=("probs", "cache"), keeps={0: "params", 1: "X"})
    compare(probs, _torch_probs(params, X), "probs from mlp_forward(params, X)", mistakes=MLP_FORWARD_MISTAKES,
            inputs=(params, X))
    passed("mlp_forward")


_BATCH = 5  # the batch size of check_mlp_backward's case, as its hints say it


def _scaled(grads, numeric, scale, keys=("W1", "b1", "W2", "b2")) -> bool:
    return all(close(grads[k], scale * numeric[k], 1e-5) for k in keys)


MLP_BACKWARD_MISTAKES = (  # on (the student's grads, the numerical gradients, N)
    Mistake("mlp.mlp_backward.not_averaged", f"every gradient is {_BATCH} times too large for a batch of {_BATCH}: "
            "the loss is a mean over the batch, so the gradient of the scores is not averaged over the batch; look "
            "at where you divide by N.", shows=lambda grads, numeric, n: _scaled(grads, numeric, n)),
    Mistake("mlp.mlp_backward.wrong_sign", "every gradient has the wrong sign: look at the order of the "
            "subtraction in the gradient of the scores (section 7, step 1).",
            shows=lambda grads, numeric, n: _scaled(grads, numeric, -1)),
    Mistake("mlp.mlp_backward.averaged_biases", f"b1 and b2 are {_BATCH} times too small: the bias gradients are "
            "averaged over the batch, while the 1/N is already in the score gradient; the loss's gradient sums "
            "them over the batch.",
            shows=lambda grads, numeric, n: _scaled(grads, numeric, 1 / n, ("b1", "b2"))
            and _scaled(grads, numeric, 1, ("W1", "W2"))),
    Mistake("mlp.mlp_backward.hidden_layer", "W2 and b2 are right but W1 and b1 are off: check the step back "
            "through the hidden layer, how the gradient of the scores is carried back through W2 to h, then "
            "through the ReLU with its input z (section 7, steps 2 and 3).",
            shows=lambda grads, numeric, n: _scaled(grads, numeric, 1, ("W2", "b2"))),
)

GRADIENT_SHAPE_MISTAKES = (  # on (a gradient, its parameter's name, the parameter, N)
    Mistake("mlp.mlp_backward.bias_not_summed", "has one row per sample: a bias is shared by the whole batch, so "
            "sum its gradient over the batch axis (axis 0).",
            shows=lambda grad, key, value, n: key.startswith("b") and np.shape(grad) == (n, *value.shape)),
    Mistake("mlp.mlp_backward.transposed_weight", "is transposed: a weight's gradient has the weight's own shape; "
            "check the order of the factors (and which one is transposed) in the product that gives it.",
            shows=lambda grad, key, value, n: key.startswith("W") and value.shape[::-1] != value.shape
            and np.shape(grad) == value.shape[::-1]),
)


def check_mlp_backward(mlp_backward, mlp_forward) -> None:
    """mlp_backward(params, cache, y) -> dict of gradients (one per parameter, of its shape), compared with the
    numerical gradients of the mean cross-entropy of ``mlp_forward``, for N=5 samples; with float32 parameters
    (and a forward pass that keeps float32) the gradients are float32 too.
    Contract: params are left as they were (sgd_step updates them); the cache may change."""
    import torch

    mlp_backward, mlp_forward = numpy_only(mlp_backward), numpy_only(mlp_forward)
    params, X, y = _mlp_case(seed=3, n=_BATCH)
    probs, cache = call(mlp_forward, params, X, returns=("probs", "cache"))
    expect(close(probs, _torch_probs(params, X)), "mlp_forward is not right yet, and the gradient check "
                                                  "differentiates it: pass test_mlp_forward first.",
           "mlp.mlp_backward.forward_not_right")
    grads = _call_for_value(mlp_backward, params, cache, y, keeps={0: "params"})
    expect(isinstance(grads, dict), f"mlp_backward should return a dict of gradients; it returned {describe(grads)}.",
           "wrong_type")
    missing = [k for k in params if k not in grads]
    expect(not missing, f"mlp_backward's dict lacks {', '.join(missing)}: it needs one gradient per parameter, with "
                        f"the same keys ({', '.join(params)}).", "mlp.mlp_backward.missing_gradients")
    for key, value in params.items():
        diagnose(grads[key], f"grads['{key}']", GRADIENT_SHAPE_MISTAKES, inputs=(key, value, _BATCH))
        expect_shape(grads[key], value.shape, f"grads['{key}']")

    def loss():
        p, _ = call(mlp_forward, params, X, returns=("probs", "cache"))
        return float(torch.nn.functional.nll_loss(torch.log(_t(p)), torch.as_tensor(y)))

    numeric = {key: numerical_gradient(loss, params[key]) for key in params}
    if not all(close(grads[k], numeric[k]) for k in params):
        diagnose(grads, "mlp_backward:", MLP_BACKWARD_MISTAKES, inputs=(numeric, _BATCH))
    for key in params:
        compare(grads[key], numeric[key], f"grads['{key}']", expected_as="the numerical gradient")
    worst = max(rel_error(grads[k], numeric[k]) for k in params)

    # float32 parameters: float32 gradients (when mlp_forward kept float32, the backward pass must too)
    params32 = {k: v.astype(np.float32) for k, v in params.items()}
    probs32, cache32 = call(mlp_forward, params32, X.astype(np.float32), returns=("probs", "cache"))
    if np.asarray(probs32).dtype == np.float32:
        grads32 = _call_for_value(mlp_backward, params32, cache32, y)
        expect(isinstance(grads32, dict), f"mlp_backward should return a dict of gradients; it returned "
                                          f"{describe(grads32)}.", "wrong_type")
        widened = [k for k in params32 if k in grads32 and np.asarray(grads32[k]).dtype != np.float32]
        if widened:
            fail(f"mlp_backward on float32 parameters returned grads['{widened[0]}'] as "
                 f"{np.asarray(grads32[widened[0]]).dtype}: the gradients keep the parameters' dtype. A float64 array "
                 "met on the way (one_hot's result is one) turns every product after it into float64, which makes "
                 "training about twice as slow.", "mlp.mlp_backward.float64_gradients")
    passed("mlp_backward", f"largest relative error vs numerical gradient {worst:.1e}")


# ---------------------------------------------------------------- training helpers

SGD_STEP_MISTAKES = (  # on (a parameter, its value after the step worked by hand, lr)
    Mistake("mlp.sgd_step.not_updated", "did not change: update every key (loop over params).",
            shows=lambda new, value, expected, lr: close(new, value)),
    Mistake("mlp.sgd_step.uphill", "moved uphill: a step along the gradient increases the loss; gradient descent "
            "moves against it.", shows=lambda new, value, expected, lr: close(new, value - (expected - value))),
    Mistake("mlp.sgd_step.ignores_lr", "ignored the learning rate: lr scales the step.",
            shows=lambda new, value, expected, lr: close(new, value + (expected - value) / lr)),
    Mistake("mlp.sgd_step.returned_step", "is the step itself: sgd_step returned the step, not the parameter after "
            "the step.", shows=lambda new, value, expected, lr: close(new, expected - value)
            or close(new, value - expected)),
    Mistake("mlp.sgd_step.fixed_lr", "is a step with lr=0.1: use the lr argument, not a fixed number.",
            shows=lambda new, value, expected, lr: close(new, value + (expected - value) * 0.1 / lr)),
)


def check_sgd_step(sgd_step) -> None:
    """sgd_step(params, grads, lr) -> params after one step, on a step worked by hand with lr=0.1, then with lr=0.5.
    Contract: params may be updated in place or replaced (the returned dict counts); grads are left as they were."""
    sgd_step = numpy_only(sgd_step)
    params = {"W1": np.array([[1.0, -2.0], [0.5, 3.0]]), "b1": np.array([0.1, -0.1]),
              "W2": np.array([[2.0], [-1.0]]), "b2": np.array([0.5])}
    grads = {"W1": np.array([[0.5, -1.0], [2.0, 0.0]]), "b1": np.array([1.0, -2.0]),
             "W2": np.array([[0.2], [0.4]]), "b2": np.array([-3.0])}
    by_hand = {0.1: {"W1": [[0.95, -1.9], [0.3, 3.0]], "b1": [0.0, 0.1], "W2": [[1.98], [-1.04]], "b2": [0.8]},
               0.5: {"W1": [[0.75, -1.5], [-0.5, 3.0]], "b1": [-0.4, 0.9], "W2": [[1.9], [-1.2]], "b2": [2.0]}}
    for lr, expected in by_hand.items():
        new = _call_for_value(sgd_step, params, grads, lr, keeps={1: "grads"})
        expect(isinstance(new, dict), f"sgd_step should return the params dict; it returned {describe(new)}.",
               "wrong_type")
        missing = [k for k in params if k not in new]
        expect(not missing, f"the dict sgd_step returns lacks {', '.join(missing)}: keep every parameter.",
               "mlp.sgd_step.missing_parameters")
        for key, value in params.items():
            compare(new[key], expected[key], f"params['{key}'] after a step with lr={lr}", mistakes=SGD_STEP_MISTAKES,
                    inputs=(value, np.asarray(expected[key]), lr))
    passed("sgd_step")


def _torch_step_lr(lr0, epochs, step_size, gamma):
    """torch's StepLR at ``epochs`` (an int or an array of them)."""
    import torch

    epochs = np.asarray(epochs)
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr0)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size, gamma)
    rates = []
    for _ in range(int(epochs.max()) + 1):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.asarray(rates)[epochs]


STEP_LR_MISTAKES = (  # on (the rates of epochs 0, 1, ...; lr0, those epochs, step_size, gamma)
    Mistake("mlp.step_lr.gamma_times_decays", "is 0 at epoch 0: gamma should appear as a power (once per decay so "
            "far), not as a factor multiplied by the number of decays.",
            shows=lambda rates, lr0, epochs, step_size, gamma: rates[0] == 0),
    Mistake("mlp.step_lr.above_lr0", "is larger than lr0 at epoch 0: epoch 0 must use lr0 (no decay yet); off by "
            "one?", shows=lambda rates, lr0, epochs, step_size, gamma: rates[0] > lr0 * (1 + 1e-9)),
    Mistake("mlp.step_lr.fractional_decays", "changes from epoch 0 to epoch 1, before step_size epochs have passed: "
            "epoch / step_size is a fraction, while the number of decays so far is a whole number (rounded down).",
            shows=lambda rates, lr0, epochs, step_size, gamma: step_size > 1 and not np.isclose(rates[1], rates[0])),
    Mistake("mlp.step_lr.decays_early", "decays one epoch too early: epochs count from 0, so epochs 0 to "
            "step_size - 1 use lr0; is the epoch shifted by one before the division?",
            returns=lambda lr0, epochs, step_size, gamma: _torch_step_lr(lr0, epochs + 1, step_size, gamma)),
    Mistake("mlp.step_lr.decays_late", "decays one epoch too late: the first decay comes after step_size epochs, "
            "at epoch step_size; look at what you divide by.",
            returns=lambda lr0, epochs, step_size, gamma: _torch_step_lr(lr0, epochs, step_size + 1, gamma)),
)

_FIRST_SETTINGS = (0.1, 3, 0.5)  # lr0, step_size, gamma of the schedule check_step_lr checks first


def _with_first_settings(rate, lr0, epoch, step_size, gamma) -> bool:
    """Whether ``rate`` is what one or more of lr0, step_size, gamma fixed at the first schedule's value give."""
    ours = (lr0, step_size, gamma)
    for fixed in itertools.product((False, True), repeat=3):
        settings = [first if f else own for f, first, own in zip(fixed, _FIRST_SETTINGS, ours)]
        if any(fixed) and close(rate, _torch_step_lr(settings[0], epoch, settings[1], settings[2])):
            return True
    return False


STEP_LR_ARGUMENT_MISTAKES = (
    Mistake("mlp.step_lr.fixed_settings", "is what lr0=0.1, step_size=3 or gamma=0.5 (the first schedule's) would "
            "give: use every argument (lr0, step_size and gamma).", shows=_with_first_settings),
)


def check_step_lr(step_lr) -> None:
    """step_lr(lr0, epoch, step_size, gamma) -> one number, on a schedule worked by hand (lr0 = 0.1 halved every 3
    epochs, epochs 0 to 9 counted from 0), then on other settings."""
    step_lr = numpy_only(step_lr)
    lr0, step_size, gamma = _FIRST_SETTINGS
    epochs = np.arange(10)
    rates = np.array([float(call(step_lr, lr0, int(e), step_size, gamma, returns="number")) for e in epochs])
    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]
    if not close(rates, expected):
        diagnose(rates, "step_lr(0.1, epoch, step_size=3, gamma=0.5)", STEP_LR_MISTAKES,
                 inputs=(lr0, epochs, step_size, gamma))
        for epoch, rate in zip(epochs, rates):
            compare(rate, expected[epoch], f"step_lr(0.1, epoch={epoch}, step_size=3, gamma=0.5)")
    rate = call(step_lr, 0.01, 7, 2, 0.1, returns="number")
    compare(rate, 0.01 * 0.1 ** 3, "step_lr(0.01, epoch=7, step_size=2, gamma=0.1)", mistakes=STEP_LR_ARGUMENT_MISTAKES,
            inputs=(0.01, 7, 2, 0.1))
    passed("step_lr")


ITERATIONS_MISTAKES = (  # on (the count; n_samples, batch_size, drop_last)
    Mistake("mlp.iterations_per_epoch.rounds_down", "leaves out the last, incomplete batch: with drop_last=False it "
            "still counts, so round up, not down.",
            shows=lambda count, n, size, drop_last: not drop_last and n % size and count == n // size),
    Mistake("mlp.iterations_per_epoch.counts_incomplete", "counts the last, incomplete batch: with drop_last=True "
            "it is skipped, so round down.",
            shows=lambda count, n, size, drop_last: drop_last and n % size and count == n // size + 1),
    Mistake("mlp.iterations_per_epoch.one_too_many", "counts one batch too many: when the samples fill the batches "
            "exactly, there is no last, incomplete batch to add.",
            shows=lambda count, n, size, drop_last: n % size == 0 and count == n // size + 1),
)


def check_iterations_per_epoch(iterations_per_epoch) -> None:
    """iterations_per_epoch(n_samples, batch_size, drop_last=False) -> an int, on cases worked by hand."""
    iterations_per_epoch = numpy_only(iterations_per_epoch)
    for n, size, drop_last, expected in ((48_000, 32, None, 1500), (45_000, 128, None, 352), (45_000, 128, True, 351),
                                         (10, 32, None, 1), (10, 32, True, 0), (1000, 1000, False, 1)):
        options = {} if drop_last is None else {"drop_last": drop_last}
        what = f"iterations_per_epoch({n}, {size}" + (f", drop_last={drop_last})" if options else ")")
        count = call(iterations_per_epoch, n, size, **options, returns="number")
        expect(isinstance(count, (int, np.integer)) and not isinstance(count, bool),
               f"{what} returned a {type(count).__name__} ({describe(count)}): return an int (/ and np.ceil give "
               "floats).", "mlp.iterations_per_epoch.not_an_int")
        compare(count, expected, what, mistakes=ITERATIONS_MISTAKES, inputs=(n, size, bool(drop_last)))
    passed("iterations_per_epoch")


# ---------------------------------------------------------------- L2 regularisation

def _torch_penalty(params, penalised, reg, term="squares"):
    """reg / 2 times the sum, over the parameters named in ``penalised``, of torch's ``term`` of each (the sum of
    squares by default), and its gradient by torch's autograd for every parameter (zeros where it does not
    depend on one): (penalty, gradients).

    The terms are torch's losses against zero: "squares" is mse_loss with reduction="sum", "mean squares" with
    its default mean, "absolutes" l1_loss with reduction="sum", "norms" the vector norm."""
    torch = _torch()
    F = torch.nn.functional
    terms = {"squares": lambda t: F.mse_loss(t, torch.zeros_like(t), reduction="sum"),
             "mean squares": lambda t: F.mse_loss(t, torch.zeros_like(t)),
             "absolutes": lambda t: F.l1_loss(t, torch.zeros_like(t), reduction="sum"),
             "norms": lambda t: torch.linalg.vector_norm(t)}
    tensors = {k: _t(v).requires_grad_(True) for k, v in params.items()}
    penalty = reg / 2 * sum(terms[term](tensors[k]) for k in penalised)
    penalty.backward()
    return float(penalty.detach()), {k: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape))
                                     for k, t in tensors.items()}


def _entry_penalties(W, reg):
    """reg / 2 times each entry's square: torch's mse_loss against zero with reduction="none"."""
    torch = _torch()
    t = _t(W)
    return reg / 2 * torch.nn.functional.mse_loss(t, torch.zeros_like(t), reduction="none").numpy()


PENALTY_MISTAKES = (  # on (torch's penalties by variant, reg); "reference" is the right one
    Mistake("mlp.l2_regularization.penalty_without_half", "is twice too large: it is λ/2 times the sum of squares "
            "(the 1/2 makes its gradient exactly λW).",
            shows=lambda penalty, by_torch, reg: close(penalty, 2 * by_torch["reference"])),
    Mistake("mlp.l2_regularization.penalised_biases", "includes the biases: only the weights (the names starting "
            "with W) are penalised.", shows=lambda penalty, by_torch, reg: close(penalty, by_torch["biases too"])),
    Mistake("mlp.l2_regularization.mean_of_squares", "averages the squares: it is the sum of the squares of every "
            "weight.", shows=lambda penalty, by_torch, reg: close(penalty, by_torch["mean squares"])),
    Mistake("mlp.l2_regularization.norm_not_squared", "uses the norms, not the squared norms: no square root.",
            shows=lambda penalty, by_torch, reg: close(penalty, by_torch["norms"])),
    Mistake("mlp.l2_regularization.l1_penalty", "is an L1 penalty (absolute values): square the weights instead.",
            shows=lambda penalty, by_torch, reg: any(close(penalty, factor * by_torch["absolutes"])
                                                     for factor in (1, 2))),
    Mistake("mlp.l2_regularization.only_first_weight", "penalises W1 only: every weight counts (W1, W2, ...).",
            shows=lambda penalty, by_torch, reg: close(penalty, by_torch["W1 only"])),
    Mistake("mlp.l2_regularization.fixed_weight_names", "leaves out W3: the weights are every parameter whose name "
            "starts with W, however many layers the network has, not a fixed list of names.",
            shows=lambda penalty, by_torch, reg: "W1 and W2 only" in by_torch
            and close(penalty, by_torch["W1 and W2 only"])),
    Mistake("mlp.l2_regularization.ignores_reg", "ignores reg: it is λ/2 times the sum of squares.",
            shows=lambda penalty, by_torch, reg: close(penalty, by_torch["reference"] / reg)),
    Mistake("mlp.l2_regularization.negative_penalty", "is negative: it adds a price on large weights, so it is "
            "positive.", shows=lambda penalty, by_torch, reg: float(penalty) < 0),
)

WEIGHT_GRADIENT_MISTAKES = (  # on (torch's gradient of this weight, that of an L1 penalty, the weight, reg)
    Mistake("mlp.l2_regularization.gradient_without_half", "is twice too large: the 1/2 in the penalty cancels the 2 "
            "of the square, so the gradient is λW.",
            shows=lambda grad, reference, l1, W, reg: close(grad, 2 * reference)),
    Mistake("mlp.l2_regularization.l1_gradient", "is λ·sign(W), the gradient of an L1 penalty: the gradient of "
            "(λ/2)·W² is λW.", shows=lambda grad, reference, l1, W, reg: close(grad, 2 * l1)),
    Mistake("mlp.l2_regularization.gradient_without_reg", "ignores reg: the gradient scales with λ.",
            shows=lambda grad, reference, l1, W, reg: close(grad, reference / reg)),
    Mistake("mlp.l2_regularization.gradient_sign", "has the wrong sign: the penalty grows with |W|, so its gradient "
            "points along W.", shows=lambda grad, reference, l1, W, reg: close(grad, -reference)),
    Mistake("mlp.l2_regularization.penalty_as_gradient", "is the penalty of each entry, not its derivative.",
            shows=lambda grad, reference, l1, W, reg: close(grad, _entry_penalties(W, reg))),
)

BIAS_GRADIENT_MISTAKES = (  # on (torch's gradient of this bias when the biases are penalised too)
    Mistake("mlp.l2_regularization.penalised_bias", "penalises a bias: biases are not penalised, so their gradient "
            "is zero.", shows=lambda grad, penalised: close(grad, penalised)),
)


def check_l2_regularization(l2_regularization) -> None:
    """l2_regularization(params, reg) -> (penalty, grads): one number and a gradient per parameter (zero for the
    biases), against torch's autograd on the two-layer example and on a three-layer network.
    Contract: params are left as they were (sgd_step updates them)."""
    l2_regularization = numpy_only(l2_regularization)
    rng = np.random.default_rng(4)
    example = {"W1": np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.5]]), "b1": np.array([0.5, -0.5, 2.0]),
               "W2": np.array([[2.0, 1.0], [-1.0, 0.5], [0.25, -3.0]]), "b2": np.array([1.5, -1.0])}
    deeper = {"W1": rng.normal(size=(4, 5)), "b1": rng.normal(size=5), "W2": rng.normal(size=(5, 3)),
              "b2": rng.normal(size=3), "W3": rng.normal(size=(3, 2)), "b3": rng.normal(size=2)}
    for params, weights, reg, case in (
            (example, ("W1", "W2"), 0.1, "the two-layer example with reg=0.1"),
            (deeper, ("W1", "W2", "W3"), 0.05, "a three-layer network (W1, W2, W3) with reg=0.05")):
        penalty, grads = call(l2_regularization, params, reg, returns=("penalty", "grads"), keeps={0: "params"})
        expected_penalty, expected_grads = _torch_penalty(params, weights, reg)
        variants = {"reference": expected_penalty, "biases too": _torch_penalty(params, params, reg)[0],
                    "W1 only": _torch_penalty(params, ("W1",), reg)[0],
                    **({"W1 and W2 only": _torch_penalty(params, ("W1", "W2"), reg)[0]} if "W3" in params else {}),
                    **{term: _torch_penalty(params, weights, reg, term)[0]
                       for term in ("mean squares", "absolutes", "norms")}}
        expect(np.ndim(penalty) == 0, f"the penalty should be one number for the whole network (add up the sums of "
                                      f"squares of every weight); l2_regularization returned {describe(penalty)}.",
               "wrong_type")
        compare(penalty, expected_penalty, f"the penalty of {case}", mistakes=PENALTY_MISTAKES, inputs=(variants, reg))
        expect(isinstance(grads, dict), f"grads should be a dict name -> gradient; it is {describe(grads)}.",
               "wrong_type")
        missing = [k for k in params if k not in grads]
        expect(not missing, f"grads lacks {', '.join(missing)}: it needs one entry per parameter, the biases included "
                            "(their gradient is zero), so that the training loop can add it to mlp_backward's "
                            "gradients key by key.", "mlp.l2_regularization.missing_gradients")
        l1_grads = _torch_penalty(params, weights, reg, "absolutes")[1]
        all_penalised = _torch_penalty(params, params, reg)[1]
        for key, value in params.items():
            expect_shape(grads[key], value.shape, f"grads['{key}']")
            if key in weights:
                table, inputs = WEIGHT_GRADIENT_MISTAKES, (expected_grads[key], l1_grads[key], value, reg)
            else:
                table, inputs = BIAS_GRADIENT_MISTAKES, (all_penalised[key],)
            compare(grads[key], expected_grads[key], f"grads['{key}'] for {case}", inputs=inputs, mistakes=table)
        # the gradients must be those of the student's own penalty, not only of torch's on this one point
        for key in params:
            numeric = numerical_gradient(lambda: float(call(l2_regularization, params, reg)[0]), params[key])
            compare(grads[key], numeric, f"grads['{key}']", expected_as="the numerical gradient of your penalty")
    passed("l2_regularization", "penalty and gradients equal to torch's autograd on 2 networks")
