"""Public checks for notebook 01: a two-layer MLP in NumPy.

One ``check_<function>(fn)`` per exercise. Each calls the student's function on small inputs and
compares with torch, with hand-computed values or with properties (rows sum to 1, a numerical
gradient). On a mismatch it raises ``AssertionError`` naming the likely mistake; to do so it
sometimes computes what a *wrong* implementation would return and says so when it matches.
The student's functions are called through :func:`course_lib.checks.numpy_only`: this notebook
is NumPy only.
"""
from __future__ import annotations

import warnings

import numpy as np

from course_lib.checks import (call, expect, expect_close, expect_shape, expect_tuple, numerical_gradient, numpy_only,
                               passed, rel_error)

__all__ = [
    "check_one_hot", "check_relu", "check_relu_backward", "check_sigmoid", "check_softmax",
    "check_cross_entropy", "check_mlp_forward", "check_mlp_backward", "check_sgd_step",
    "check_step_lr", "check_iterations_per_epoch", "check_l2_regularization",
]


# ---------------------------------------------------------------- helpers

def _t(array):
    import torch

    return torch.as_tensor(np.asarray(array, dtype=np.float64))


def _close(actual, expected, tol: float = 1e-6) -> bool:
    """True when ``actual`` has ``expected``'s shape, is finite and matches within ``tol``."""
    try:
        actual = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        return False
    expected = np.asarray(expected, dtype=np.float64)
    return (actual.shape == expected.shape and bool(np.all(np.isfinite(actual)))
            and rel_error(actual, expected) <= tol)


def _call_recording(fn, *args):
    """``call(fn, *args)`` with NumPy's floating-point warnings recorded: (result, messages)."""
    with warnings.catch_warnings(record=True) as caught, np.errstate(over="warn", divide="warn", invalid="warn", under="ignore"):
        warnings.simplefilter("always")
        result = call(fn, *args)
    return result, [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]


def _call_with_broadcast_hint(fn, *args, hint: str):
    try:
        return call(fn, *args)
    except AssertionError as err:
        if "broadcast" in str(err):
            raise AssertionError(f"{err} — {hint}") from None
        raise


def _unchanged(before, after, message: str) -> None:
    expect(np.array_equal(before, after), message)


def _fmt(values) -> str:
    return np.array2string(np.asarray(values, dtype=float), precision=3, separator=", ")


# ---------------------------------------------------------------- one-hot labels

def check_one_hot(one_hot) -> None:
    """one_hot on 4 labels and 6 classes (shape, dtype, one 1 per row in the label's column), then 1 label."""
    one_hot = numpy_only(one_hot)
    y = np.array([2, 0, 3, 2])  # labels 0..3 only, but there are 6 classes
    y_before = y.copy()
    out = call(one_hot, y, 6)
    shape = getattr(out, "shape", None)
    expect(shape is not None, f"one_hot should return a NumPy array, got {type(out).__name__}.")
    if tuple(shape) == (6, 4):
        raise AssertionError("one_hot returned shape (6, 4) for 4 labels and 6 classes — transposed: "
                             "rows are samples and columns are classes, shape (N, num_classes).")
    if len(shape) == 2 and shape[0] == 4 and shape[1] != 6:
        raise AssertionError(f"one_hot(y, 6) has {shape[1]} columns but num_classes is 6 — did you use "
                             "y.max() + 1 (or the number of distinct labels) instead of num_classes? "
                             "A batch need not contain every class.")
    expect_shape(out, (4, 6), "one_hot(y, 6) for 4 labels")
    expect(np.issubdtype(out.dtype, np.floating),
           f"one_hot should return floats (it is combined with probabilities), got dtype {out.dtype} — "
           "the array you fill was created with an integer dtype.")
    expect(np.all((out == 0) | (out == 1)), f"one_hot should hold only 0s and 1s, got values {_fmt(np.unique(out))}.")
    ones = out.sum(axis=1)
    if not np.all(ones == 1):
        raise AssertionError(f"each row of one_hot should hold exactly one 1; the rows hold {_fmt(ones)} — "
                             "out[:, y] = 1 sets whole columns: every row gets a 1 in every labelled column. Each "
                             "row i needs a single entry set, the one in column y[i] — pair the row indices with "
                             "the labels one to one.")
    wrong = np.flatnonzero(out.argmax(axis=1) != y)
    if wrong.size:
        i = wrong[0]
        raise AssertionError(f"row {i} of one_hot has its 1 in column {out.argmax(axis=1)[i]}, but its label is "
                             f"{y[i]}: row i needs its 1 in column y[i].")
    _unchanged(y_before, y, "one_hot changed the labels y in place; leave its input as it is.")
    single = call(one_hot, np.array([9]), 10)
    expect_shape(single, (1, 10), "one_hot(np.array([9]), 10)")
    expect(single[0, 9] == 1 and single.sum() == 1, "one_hot(np.array([9]), 10) should have its 1 in the last column.")
    passed("one_hot")


# ---------------------------------------------------------------- ReLU and sigmoid

def check_relu(relu) -> None:
    """relu against torch.relu: same shape as z, z left unchanged."""
    import torch

    relu = numpy_only(relu)
    z = np.array([[-2.0, -0.5, 0.0, 0.5, 3.0], [1.5, -1.0, 2.0, -3.0, 0.25]])
    z_before = z.copy()
    out = call(relu, z)
    expected = torch.relu(_t(z)).numpy()
    shape = getattr(out, "shape", None)
    if shape is not None and tuple(shape) != z.shape:
        raise AssertionError(f"relu(z) for z of shape {z.shape} returned shape {tuple(shape)}: np.max(z, 0) "
                             "is a reduction (the largest value along axis 0), not a comparison of every entry "
                             "with 0. NumPy has a separate function for the element-wise maximum of two arrays; "
                             "the result must keep z's shape.")
    expect_shape(out, z.shape, "relu(z)")
    _unchanged(z_before, z, "relu changed its input array in place (z[z < 0] = 0?). The forward pass keeps z for "
                            "the backward pass, so leave z as it is and return a new array.")
    if np.array_equal(np.asarray(out, dtype=float), (z > 0).astype(float)):
        raise AssertionError("relu returned the mask (z > 0) as 0s and 1s; it should return the values max(z, 0).")
    if _close(out, np.abs(z)):
        raise AssertionError("relu returned |z|: negative inputs must become 0, not positive.")
    expect_close(out, expected, "relu(z)", hint="compare with the definition in section 3, entry by entry")
    expect_close(call(relu, np.array([-1.0, 2.0])), [0.0, 2.0], "relu(np.array([-1.0, 2.0]))",
                 hint="it should work on arrays of any shape")
    passed("relu")


def check_relu_backward(relu_backward) -> None:
    """relu_backward against torch's autograd through torch.relu."""
    import torch

    relu_backward = numpy_only(relu_backward)
    z = np.array([[-2.0, -0.5, 1.0, 0.5, 3.0], [1.5, -1.0, 2.0, -3.0, 0.25]])
    dout = np.array([[0.3, -0.7, -1.2, 0.4, 2.0], [-0.5, 0.9, 1.1, -0.2, -0.6]])  # signs differ from z's
    z_in, dout_in = z.copy(), dout.copy()
    dz = call(relu_backward, dout_in, z_in)
    zt = _t(z).requires_grad_(True)
    torch.relu(zt).backward(_t(dout))
    expected = zt.grad.numpy()
    relu_z = torch.relu(_t(z)).numpy()
    expect_shape(dz, z.shape, "relu_backward(dout, z)")
    if _close(dz, dout * (dout > 0)):
        raise AssertionError("relu_backward masked with dout > 0: the gradient flows where the forward input "
                             "z was positive, so the mask comes from z (the sign of dout does not matter).")
    if _close(dz, (z > 0).astype(float)):
        raise AssertionError("relu_backward returned the mask (z > 0) alone: by the chain rule the upstream "
                             "gradient dout has to come in too.")
    if _close(dz, dout):
        raise AssertionError("relu_backward passed dout through unchanged; it must be 0 where z <= 0.")
    if _close(dz, dout * (z < 0)):
        raise AssertionError("relu_backward kept dout where z < 0 — the mask is reversed: keep it where z > 0.")
    if _close(dz, relu_z * dout) or _close(dz, relu_z):
        raise AssertionError("relu_backward multiplied by relu(z); the local derivative of ReLU is 1 where "
                             "z > 0 and 0 elsewhere, not relu(z).")
    expect_close(dz, expected, "relu_backward(dout, z)",
                 hint="compare with the chain rule of section 3, entry by entry")
    passed("relu_backward")


def check_sigmoid(sigmoid) -> None:
    """sigmoid against torch.sigmoid; no overflow warning for |z| up to 1e4."""
    import torch

    sigmoid = numpy_only(sigmoid)
    z = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 4.0])
    out = call(sigmoid, z)
    expect_shape(out, z.shape, "sigmoid(z)")
    if _close(out, torch.sigmoid(-_t(z)).numpy()):
        raise AssertionError(f"sigmoid decreases: sigmoid(2) = {float(out[4]):.3f} but should be above 0.5 — "
                             "the sign in the exponent is flipped.")
    expect_close(out, torch.sigmoid(_t(z)).numpy(), "sigmoid(z)", hint="compare with the definition in section 3")

    large = np.array([-1e4, -800.0, -50.0, 50.0, 800.0, 1e4])
    out, messages = _call_recording(sigmoid, large)
    overflow = [m for m in messages if "overflow" in m]
    if overflow:
        raise AssertionError(f"sigmoid warned '{overflow[0]}' for z in {_fmt(large)}: for z = -10000, exp(-z) is "
                             "too big for floating point. Negative z need the equal form of section 3, in which "
                             "exp never sees a large positive number; and each form must be computed only on its "
                             "own entries, since np.where evaluates both of its branches everywhere.")
    expect_shape(out, large.shape, "sigmoid(z) for large |z|")
    expect(np.all(np.isfinite(np.asarray(out, dtype=float))),
           f"sigmoid gave NaN or inf for z in {_fmt(large)}; it must stay in [0, 1] (inf/inf = NaN).")
    expect(not messages, f"sigmoid warned '{messages[0] if messages else ''}' for large |z|; a stable sigmoid "
                         "computes no inf along the way.")
    expect_close(out, torch.sigmoid(_t(large)).numpy(), "sigmoid(z) for large |z|", tol=1e-6,
                 hint="it should be 0 for very negative and 1 for very positive z")
    matrix = np.array([[0.0, 1.0], [-1.0, 3.0]])
    expect_close(call(sigmoid, matrix), torch.sigmoid(_t(matrix)).numpy(), "sigmoid of a 2×2 array",
                 hint="it should work element by element on arrays of any shape")
    passed("sigmoid")


# ---------------------------------------------------------------- softmax and cross-entropy

_KEEPDIMS = ("a max or a sum over axis 1 has shape (N,), which broadcasts along the columns, not the rows: "
             "keep the reduced axis (keepdims=True) so that each row meets its own value.")


def check_softmax(softmax) -> None:
    """Row-wise softmax compared with torch.softmax(dim=1); stable for logits around 1e3."""
    import torch

    softmax = numpy_only(softmax)
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 2, size=(4, 3))
    before = logits.copy()
    probs = _call_with_broadcast_hint(softmax, logits, hint=_KEEPDIMS)
    expect_shape(probs, (4, 3), "softmax(logits) for logits of shape (4, 3)")
    probs = np.asarray(probs, dtype=float)
    _unchanged(before, logits, "softmax changed its input in place (logits -= ...): the caller's array must stay "
                               "as it was; put the shifted scores in a new array instead.")
    expect(np.all(np.isfinite(probs)), "softmax returned NaN or inf for small logits.")
    rows, cols = probs.sum(axis=1), probs.sum(axis=0)
    if not np.allclose(rows, 1):
        if np.allclose(cols, 1):
            raise AssertionError(f"softmax rows should sum to 1; they sum to {_fmt(rows)} while each column sums to "
                                 "1 — did you normalise over axis 0 (the batch) instead of axis 1 (the classes)?")
        if np.isclose(probs.sum(), 1):
            raise AssertionError("the whole softmax array sums to 1: you summed over every entry; sum over "
                                 "axis 1 (the classes) only, with keepdims=True.")
        raise AssertionError(f"softmax rows should sum to 1; they sum to {_fmt(rows)} — each row must be "
                             "normalised by its own total.")
    expect_close(probs, torch.softmax(_t(logits), dim=1).numpy(), "softmax(logits)",
                 hint="compare with the definition in section 4, row by row")

    square = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 5.0], [-2.0, 1.0, 0.5]])
    expect_close(call(softmax, square), torch.softmax(_t(square), dim=1).numpy(), "softmax of a 3×3 array",
                 hint="right for non-square inputs but not for square ones: a (N,) max or sum broadcasts "
                      "along the wrong axis — keep the reduced axis (keepdims=True)")

    big = np.array([[1000.0, 1001.0, 1002.0], [1002.0, 1000.0, 1001.0]])
    probs, messages = _call_recording(softmax, big)
    if not np.all(np.isfinite(np.asarray(probs, dtype=float))) or any("overflow" in m for m in messages):
        raise AssertionError("softmax overflows for logits around 1000 (exp(1000) = inf, and inf/inf = NaN). "
                             "Subtract each row's max before exp: shifting a row changes nothing (section 4, "
                             "Stability).")
    expect_close(probs, torch.softmax(_t(big), dim=1).numpy(), "softmax for logits around 1000",
                 hint="shift each row by its own max before exp")

    apart = np.array([[1000.0, 1001.0, 1002.0], [-1000.0, -1001.0, -1002.0]])
    probs, _ = _call_recording(softmax, apart)
    if not np.all(np.isfinite(np.asarray(probs, dtype=float))):
        raise AssertionError("softmax gives NaN for a row far below the others ([-1000, -1001, -1002] next to "
                             "[1000, 1001, 1002]): subtract each row's own max, not the largest value of the "
                             "whole array, or exp underflows to 0/0.")
    expect_close(probs, torch.softmax(_t(apart), dim=1).numpy(), "softmax for rows of very different scale",
                 hint="shift each row by its own max, not by the array's")
    passed("softmax")


def check_cross_entropy(cross_entropy) -> None:
    """Mean cross-entropy over the batch, compared with torch's nll_loss of log(probs); finite when p = 0."""
    import torch

    cross_entropy = numpy_only(cross_entropy)
    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.25, 0.25, 0.5], [0.6, 0.3, 0.1]])
    y = np.array([0, 1, 2, 1])
    n = len(y)
    expected = float(torch.nn.functional.nll_loss(torch.log(_t(probs)), torch.as_tensor(y)))
    before = probs.copy()
    loss = call(cross_entropy, probs, y)
    shape = np.shape(loss)
    if shape == (n, n):
        raise AssertionError("cross_entropy returned an N×N array: probs[:, y] picks, in every row, the entries "
                             "of all N labels. Each sample needs one entry only, its own true class: pair the row "
                             "indices with the labels one to one.")
    if shape != ():
        raise AssertionError(f"cross_entropy should return one number (the mean over the batch), got an array of "
                             f"shape {shape} — average the per-sample losses.")
    _unchanged(before, probs, "cross_entropy changed probs in place; clip into a new array instead.")
    loss = float(loss)
    expect(np.isfinite(loss), "cross_entropy returned NaN or inf for probabilities between 0.1 and 0.8.")
    if loss < 0:
        raise AssertionError(f"cross_entropy is negative ({loss:.3f}): -log p is positive for p < 1 — did you "
                             "drop the minus sign?")
    if np.isclose(loss, n * expected, rtol=1e-6):
        raise AssertionError(f"cross_entropy is {n} times too large for a batch of {n}: you summed over the batch "
                             "instead of averaging (a summed loss grows with the batch size).")
    if np.isclose(loss, -np.mean(np.log(probs[:, y])), rtol=1e-6):
        raise AssertionError("cross_entropy averaged over an N×N block: probs[:, y] picks, in every row, the "
                             "entries of all N labels. Each sample needs one entry only: pair the row indices with "
                             "the labels one to one.")
    if np.isclose(loss, -np.mean(np.log(probs)), rtol=1e-6):
        raise AssertionError("cross_entropy averaged -log p over every class; only each sample's true-class "
                             "probability counts.")
    expect_close(loss, expected, "cross_entropy(probs, y)",
                 hint="compare with the loss of a batch in section 5")

    zero_other = np.array([[0.5, 0.5, 0.0]])
    loss, _ = _call_recording(cross_entropy, zero_other, np.array([0]))
    if not np.isfinite(float(np.asarray(loss, dtype=float).ravel()[0])):
        raise AssertionError("cross_entropy is NaN when a wrong class has probability 0: one_hot · log(probs) "
                             "gives 0 · (-inf) = NaN there. Take the log of each row's true-class probability "
                             "only, or clip the probabilities before the log.")
    expect_close(loss, np.log(2), "cross_entropy([[0.5, 0.5, 0]], [0])",
                 hint="a 0 on a wrong class should not change the loss")

    zero_true = np.array([[0.0, 0.6, 0.4], [0.5, 0.3, 0.2]])
    loss, _ = _call_recording(cross_entropy, zero_true, np.array([0, 0]))
    loss = float(np.asarray(loss, dtype=float).ravel()[0]) if np.size(loss) else float("nan")
    if not np.isfinite(loss):
        raise AssertionError(f"cross_entropy is {loss} when the true class has probability 0 (log 0 = -inf): "
                             "clip the probabilities first, keeping them away from 0 (section 5, Numerics).")
    expect(loss > 3, f"cross_entropy is only {loss:.3f} when the true class has probability 0; it should be large "
                     "(a confident mistake): the eps you clip with is too large (section 5, Numerics).")
    passed("cross_entropy")


# ---------------------------------------------------------------- the network

def _mlp_case(seed: int = 2, n: int = 5, d: int = 4, h: int = 6, c: int = 3):
    """Small float64 parameters and inputs whose hidden pre-activations keep away from 0."""
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
    import torch

    W1, b1, W2, b2 = (_t(params[k]) for k in ("W1", "b1", "W2", "b2"))
    z = _t(X) @ W1 + (b1 if biases else 0)
    hidden = torch.relu(z) if relu_hidden else z
    scores = hidden @ W2 + (b2 if biases else 0)
    return torch.softmax(torch.relu(scores) if relu_out else scores, dim=1).numpy()


def _copy(params):
    return {k: np.array(v, copy=True) for k, v in params.items()}


def _forward_probs(mlp_forward, params, X, what="mlp_forward(params, X)"):
    out = call(mlp_forward, params, X)
    expect_tuple(out, ("probs", "cache"), what)
    return out


def check_mlp_forward(mlp_forward) -> None:
    """The class probabilities of the network of section 6, compared with the same network in torch."""
    mlp_forward = numpy_only(mlp_forward)
    params, X, _ = _mlp_case()
    saved, X_before = _copy(params), X.copy()
    probs, _ = _forward_probs(mlp_forward, params, X)
    expect_shape(probs, (5, 3), "probs from mlp_forward for N=5 samples and C=3 classes")
    for key in params:
        _unchanged(saved[key], params[key], f"mlp_forward changed params['{key}'] in place; the forward pass "
                                            "must only read the parameters.")
    _unchanged(X_before, X, "mlp_forward changed X in place.")
    probs = np.asarray(probs, dtype=float)
    if not np.allclose(probs.sum(axis=1), 1):
        raise AssertionError(f"the rows of probs sum to {_fmt(probs.sum(axis=1))}, not 1: return the softmax "
                             "probabilities, not the scores (logits) of the last layer.")
    if _close(probs, _torch_probs(params, X, relu_hidden=False)):
        raise AssertionError("probs match a network without the ReLU: the hidden pre-activations must go "
                             "through relu — without it the two layers collapse into one linear map.")
    if _close(probs, _torch_probs(params, X, biases=False)):
        raise AssertionError("probs match a network without biases: both layers add their bias, b1 and b2.")
    if _close(probs, _torch_probs(params, X, relu_out=True)):
        raise AssertionError("probs match a network with a ReLU on the output scores too: the last layer's "
                             "scores go into softmax directly.")
    expect_close(probs, _torch_probs(params, X), "probs from mlp_forward",
                 hint="compare each step with the diagram of section 6: layer, ReLU, layer, softmax")
    passed("mlp_forward")


def check_mlp_backward(mlp_backward, mlp_forward) -> None:
    """Gradients of the mean cross-entropy, checked against numerical gradients of ``mlp_forward``."""
    import torch

    mlp_backward, mlp_forward = numpy_only(mlp_backward), numpy_only(mlp_forward)
    params, X, y = _mlp_case(seed=3)
    n = len(y)
    probs, cache = _forward_probs(mlp_forward, params, X)
    expect(_close(probs, _torch_probs(params, X)),
           "mlp_forward is not right yet, and the gradient check differentiates it: pass test_mlp_forward first.")
    saved = _copy(params)
    grads = call(mlp_backward, params, cache, y)
    expect(isinstance(grads, dict), f"mlp_backward should return a dict of gradients, got {type(grads).__name__}.")
    missing = [k for k in params if k not in grads]
    expect(not missing, f"mlp_backward's dict lacks {', '.join(missing)}: it needs one gradient per parameter, "
                        f"with the same keys ({', '.join(params)}).")
    for key in params:
        _unchanged(saved[key], params[key], f"mlp_backward changed params['{key}']; it computes gradients only "
                                            "(sgd_step updates the parameters).")
    for key, value in params.items():
        shape = tuple(getattr(grads[key], "shape", ()))
        if key.startswith("b") and shape == (n, value.shape[0]):
            raise AssertionError(f"grads['{key}'] has shape {shape}, one row per sample: a bias is shared by the "
                                 "whole batch, so sum its gradient over the batch axis (axis=0).")
        if key.startswith("W") and shape == value.shape[::-1] and shape != value.shape:
            raise AssertionError(f"grads['{key}'] has shape {shape} but {key} has shape {value.shape}: transposed — "
                                 "check the order of the factors (and which one is transposed) in the product that "
                                 "gives this weight's gradient: it must come out in the weight's own shape.")
        expect_shape(grads[key], value.shape, f"grads['{key}']")

    def loss():
        p, _ = call(mlp_forward, params, X)
        return float(torch.nn.functional.nll_loss(torch.log(_t(p)), torch.as_tensor(y)))

    numeric = {key: numerical_gradient(loss, params[key]) for key in params}
    errors = {key: rel_error(grads[key], numeric[key]) for key in params}
    if max(errors.values()) <= 1e-6:
        passed("mlp_backward", "largest relative error vs numerical gradient "
                               f"{max(errors.values()):.1e}")
        return

    def matches(scale, keys=tuple(params)):
        return all(_close(grads[k], scale * numeric[k], tol=1e-5) for k in keys)

    if matches(n):
        raise AssertionError(f"every gradient is {n} times too large for a batch of {n}: the loss is a mean over "
                             "the batch, so the gradient of the scores is not averaged over the batch — look at "
                             "where you divide by N.")
    if matches(-1):
        raise AssertionError("every gradient has the wrong sign: look at the order of the subtraction in the "
                             "gradient of the scores (section 7, step 1).")
    if matches(1 / n, ("b1", "b2")) and matches(1, ("W1", "W2")):
        raise AssertionError(f"b1 and b2 are {n} times too small: the 1/N is already in the score gradient, so "
                             "sum (do not average) the bias gradients over the batch.")
    if matches(1, ("W2", "b2")):
        raise AssertionError(f"W2 and b2 are right but W1 and b1 are off (relative errors {errors['W1']:.1e}, "
                             f"{errors['b1']:.1e}): check the step back through the hidden layer — how the "
                             "gradient of the scores is carried back through W2 to h, then through the ReLU with "
                             "its input z (section 7, steps 2 and 3).")
    worst = max(errors, key=errors.get)
    raise AssertionError(f"grads['{worst}'] differs from the numerical gradient (relative error "
                         f"{errors[worst]:.1e}, allowed 1e-06); errors: "
                         + ", ".join(f"{k} {v:.1e}" for k, v in errors.items()) + ".")


# ---------------------------------------------------------------- training helpers

def check_sgd_step(sgd_step) -> None:
    """sgd_step on a hand-computed step with lr=0.1, then with lr=0.5."""
    sgd_step = numpy_only(sgd_step)
    params = {"W1": np.array([[1.0, -2.0], [0.5, 3.0]]), "b1": np.array([0.1, -0.1]),
              "W2": np.array([[2.0], [-1.0]]), "b2": np.array([0.5])}
    grads = {"W1": np.array([[0.5, -1.0], [2.0, 0.0]]), "b1": np.array([1.0, -2.0]),
             "W2": np.array([[0.2], [0.4]]), "b2": np.array([-3.0])}
    expected = {"W1": [[0.95, -1.9], [0.3, 3.0]], "b1": [0.0, 0.1], "W2": [[1.98], [-1.04]], "b2": [0.8]}
    grads_before = _copy(grads)
    new = call(sgd_step, _copy(params), grads, 0.1)
    expect(new is not None, "sgd_step returned None: it should return the params dict after the update.")
    expect(isinstance(new, dict), f"sgd_step should return the params dict, got {type(new).__name__}.")
    missing = [k for k in params if k not in new]
    expect(not missing, f"the dict sgd_step returns lacks {', '.join(missing)}: keep every parameter.")
    for key in grads:
        _unchanged(grads_before[key], grads[key], f"sgd_step changed grads['{key}'].")
    for key in params:
        value = np.asarray(new[key], dtype=float)
        if np.array_equal(value, params[key]):
            raise AssertionError(f"params['{key}'] did not change: update every key (loop over params).")
        if _close(value, params[key] + 0.1 * grads[key]):
            raise AssertionError(f"sgd_step moved params['{key}'] uphill: a step along the gradient increases the "
                                 "loss; gradient descent moves against it.")
        if _close(value, params[key] - grads[key]):
            raise AssertionError(f"sgd_step ignored the learning rate for '{key}': lr scales the step.")
        if _close(value, -0.1 * grads[key]) or _close(value, 0.1 * grads[key]):
            raise AssertionError(f"sgd_step returned the step for '{key}', not the parameter after the step.")
        expect_close(value, expected[key], f"params['{key}'] after one step with lr=0.1",
                     hint="compare with the update rule in section 8")
    again = call(sgd_step, _copy(params), grads, 0.5)
    expect_close(again["b1"], [-0.4, 0.9], "params['b1'] after one step with lr=0.5",
                 hint="use the lr argument, not a fixed number")
    passed("sgd_step")


def check_step_lr(step_lr) -> None:
    """step_lr on a schedule worked by hand (lr0 = 0.1 halved every 3 epochs, epochs counted from 0)."""
    step_lr = numpy_only(step_lr)
    # by hand: lr0 = 0.1, halved every 3 epochs
    expected = [0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.025, 0.025, 0.025, 0.0125]
    got = [call(step_lr, 0.1, epoch, 3, 0.5) for epoch in range(len(expected))]
    for value in got:
        expect(np.ndim(value) == 0, f"step_lr should return one number, got {type(value).__name__}.")
    got = [float(v) for v in got]
    if np.allclose(got, expected):
        expect(np.isclose(float(call(step_lr, 0.01, 7, 2, 0.1)), 0.01 * 0.1 ** 3),
               "step_lr(0.01, 7, 2, 0.1) is off: use every argument (lr0, step_size and gamma).")
        passed("step_lr")
        return
    if got[0] == 0:
        raise AssertionError("step_lr is 0 at epoch 0: gamma should appear as a power (once per decay so far), "
                             "not as a factor multiplied by the number of decays.")
    if got[0] > 0.1 + 1e-12:
        raise AssertionError(f"step_lr(0.1, epoch=0, ...) is {got[0]:.4g}, larger than lr0: epoch 0 must use lr0 "
                             "(no decay yet) — off by one?")
    if not np.isclose(got[1], got[0]):
        raise AssertionError(f"the rate changes every epoch ({', '.join(f'{v:.4g}' for v in got[:4])}, …) although "
                             "step_size is 3: epoch / step_size is a fraction, while the number of decays so far is "
                             "a whole number (rounded down).")
    first = next(i for i, (a, b) in enumerate(zip(got, expected)) if not np.isclose(a, b))
    if first == 2 and np.isclose(got[2], 0.05):
        raise AssertionError("the rate decays one epoch too early (at epoch 2 instead of 3 with step_size 3): "
                             "epochs count from 0, so epochs 0, 1, 2 use lr0 — is the epoch shifted by one before "
                             "the division?")
    if first == 3 and np.isclose(got[3], 0.1) and np.isclose(got[4], 0.05):
        raise AssertionError("the rate decays one epoch too late (at epoch 4 instead of 3 with step_size 3): "
                             "the first decay comes after step_size epochs, at epoch 3 — look at what you divide by.")
    raise AssertionError(f"step_lr(0.1, epoch={first}, step_size=3, gamma=0.5) gives {got[first]:.4g}; the rate "
                         "should be 0.1 for epochs 0–2, then halved every 3 epochs (section 8, Step decay).")


def check_iterations_per_epoch(iterations_per_epoch) -> None:
    """Number of mini-batches per epoch, with and without drop_last, on cases worked by hand."""
    iterations_per_epoch = numpy_only(iterations_per_epoch)

    def run(n, b, drop_last=None):
        value = call(iterations_per_epoch, n, b) if drop_last is None else \
            call(iterations_per_epoch, n, b, drop_last=drop_last)
        expect(isinstance(value, (int, np.integer)) and not isinstance(value, bool),
               f"iterations_per_epoch({n}, {b}) returned {value!r} of type {type(value).__name__}: return an int "
               "(/ and np.ceil give floats).")
        return int(value)

    got = run(48_000, 32)
    expect(got == 1500, f"iterations_per_epoch(48000, 32) gives {got}: 48,000 samples in batches of 32 make "
                        "48000 / 32 batches per epoch.")
    got = run(45_000, 128)
    if got == 351:
        raise AssertionError("iterations_per_epoch(45000, 128) gives 351: 45,000 samples in batches of 128 leave a "
                             "last batch of 72, and with drop_last=False it still counts — round up, not down.")
    expect(got == 352, f"iterations_per_epoch(45000, 128) gives {got}: 351 full batches plus one of 72 samples.")
    got = run(45_000, 128, drop_last=True)
    if got == 352:
        raise AssertionError("iterations_per_epoch(45000, 128, drop_last=True) gives 352: with drop_last=True the "
                             "last, incomplete batch is skipped — round down.")
    expect(got == 351, f"iterations_per_epoch(45000, 128, drop_last=True) gives {got}: 351 full batches.")
    got = run(10, 32)
    expect(got == 1, f"iterations_per_epoch(10, 32) gives {got}: 10 samples still make one (small) batch.")
    got = run(10, 32, drop_last=True)
    expect(got == 0, f"iterations_per_epoch(10, 32, drop_last=True) gives {got}: no full batch of 32 fits in 10.")
    got = run(1000, 1000, drop_last=False)
    expect(got == 1, f"iterations_per_epoch(1000, 1000) gives {got}: one batch holds all samples.")
    passed("iterations_per_epoch")


# ---------------------------------------------------------------- L2 regularisation

def _l2_case():
    """Weights and biases whose mistakes give different numbers: (params, reg)."""
    params = {"W1": np.array([[1.0, -2.0, 0.5], [0.0, 3.0, -1.5]]), "b1": np.array([0.5, -0.5, 2.0]),
              "W2": np.array([[2.0, 1.0], [-1.0, 0.5], [0.25, -3.0]]), "b2": np.array([1.5, -1.0])}
    return params, 0.1


def _l2_reference(params, reg):
    """(penalty, gradients) from torch's autograd of reg / 2 times the squared norms of the weights."""
    import torch

    tensors = {k: _t(v).requires_grad_(True) for k, v in params.items()}
    penalty = reg / 2 * sum(torch.linalg.vector_norm(t) ** 2 for k, t in tensors.items() if k.startswith("W"))
    penalty.backward()
    return float(penalty.detach()), {k: (t.grad.numpy() if t.grad is not None else np.zeros(t.shape)) for k, t in tensors.items()}


def _penalty_hint(penalty, params, reg, expected) -> str | None:
    """Which usual mistake ``penalty`` (a number) reproduces, if any."""
    import torch

    weights = [_t(v) for k, v in params.items() if k.startswith("W")]
    everything = [_t(v) for v in params.values()]
    squares = float(sum(w.square().sum() for w in weights))
    candidates = [
        (reg * squares, "the penalty is twice too large: it is λ/2 times the sum of squares (the 1/2 makes its "
                        "gradient exactly λW)."),
        (reg / 2 * float(sum(w.square().sum() for w in everything)),
         "the penalty includes the biases: only the weights (the names starting with \"W\") are penalised."),
        (reg / 2 * float(sum(w.square().mean() for w in weights)),
         "the penalty averages the squares: it is the *sum* of the squares of every weight."),
        (reg / 2 * float(sum(torch.linalg.vector_norm(w) for w in weights)),
         "the penalty uses the norms, not the squared norms: no square root."),
        (reg / 2 * float(sum(w.abs().sum() for w in weights)),
         "that is an L1 penalty (absolute values): square the weights instead."),
        (reg * float(sum(w.abs().sum() for w in weights)),
         "that is an L1 penalty (absolute values): square the weights instead."),
        (reg / 2 * float(weights[0].square().sum()), "only W1 is penalised: every weight counts (W1 and W2 here)."),
        (squares / 2, "the penalty ignores reg: it is λ/2 times the sum of squares."),
        (-expected, "the penalty is negative: it adds a price on large weights, so it is positive."),
    ]
    return next((hint for value, hint in candidates if np.isclose(penalty, value, rtol=1e-6) and
                 not np.isclose(value, expected, rtol=1e-6)), None)


def _grads_hint(key, grad, value, reg, expected) -> str | None:
    candidates = [
        (2 * expected, f"grads['{key}'] is twice too large: the 1/2 in the penalty cancels the 2 of the square, so "
                       "the gradient is λW."),
        (reg * np.sign(value), f"grads['{key}'] is λ·sign(W), the gradient of an L1 penalty: the gradient of "
                               "(λ/2)·W² is λW."),
        (value, f"grads['{key}'] ignores reg: the gradient scales with λ."),
        (-expected, f"grads['{key}'] has the wrong sign: the penalty grows with |W|, so its gradient points "
                    "along W."),
        (reg * value ** 2 / 2, f"grads['{key}'] is the penalty of each entry, not its derivative."),
    ]
    if not key.startswith("W"):
        candidates.insert(0, (reg * value, f"grads['{key}'] penalises a bias: biases are not penalised, so their "
                                           "gradient is zero."))
    return next((hint for wrong, hint in candidates if _close(grad, wrong, tol=1e-6)), None)


def check_l2_regularization(l2_regularization) -> None:
    """Penalty and gradients against torch's autograd, on a worked example and a deeper network."""
    l2_regularization = numpy_only(l2_regularization)
    rng = np.random.default_rng(4)
    deeper = {"W1": rng.normal(size=(4, 5)), "b1": rng.normal(size=5), "W2": rng.normal(size=(5, 3)),
              "b2": rng.normal(size=3), "W3": rng.normal(size=(3, 2)), "b3": rng.normal(size=2)}
    for params, reg, what in ((*_l2_case(), "a two-layer network with reg=0.1"),
                              (deeper, 0.05, "a three-layer network (W1, W2, W3) with reg=0.05")):
        saved = _copy(params)
        out = call(l2_regularization, params, reg)
        expect_tuple(out, ("penalty", "grads"), "l2_regularization")
        penalty, grads = out
        for key in params:
            _unchanged(saved[key], params[key], f"l2_regularization changed params['{key}']: it only computes the "
                                                "penalty and its gradients (sgd_step updates the parameters).")
        expected_penalty, expected_grads = _l2_reference(params, reg)
        expect(np.ndim(penalty) == 0, f"the penalty should be one number for the whole network, got an array of shape "
                                      f"{np.shape(penalty)} — add up the sums of squares of every weight.")
        penalty = float(penalty)
        if not np.isclose(penalty, expected_penalty, rtol=1e-6):
            hint = _penalty_hint(penalty, params, reg, expected_penalty)
            raise AssertionError(f"the penalty of {what} is {penalty:.6g}, expected {expected_penalty:.6g}. "
                                 + (hint[0].upper() + hint[1:] if hint else
                                    "Compare with the formula and the worked example of the section."))
        expect(isinstance(grads, dict), f"grads should be a dict name -> gradient, got {type(grads).__name__}.")
        missing = [k for k in params if k not in grads]
        expect(not missing, f"grads lacks {', '.join(missing)}: it needs one entry per parameter, the biases "
                            "included (their gradient is zero), so that the training loop can add it to "
                            "mlp_backward's gradients key by key.")
        for key, value in params.items():
            expect_shape(grads[key], value.shape, f"grads['{key}']")
            if not _close(grads[key], expected_grads[key], tol=1e-6):
                hint = _grads_hint(key, grads[key], value, reg, expected_grads[key])
                raise AssertionError(f"grads['{key}'] for {what} differs from the gradient of the penalty. "
                                     + (hint if hint else ("The gradient of (λ/2)·W² is λW for a weight, and a "
                                                           "bias's is zero.")))
        numeric = {k: numerical_gradient(lambda: float(call(l2_regularization, params, reg)[0]), params[k])
                   for k in params}
        worst = max(params, key=lambda k: rel_error(grads[k], numeric[k]))
        expect(rel_error(grads[worst], numeric[worst]) <= 1e-6,
               f"grads['{worst}'] does not match the numerical gradient of your penalty.")
    passed("l2_regularization", "penalty and gradients equal to torch's autograd on 2 networks")
