"""Notebook 01 (NumPy MLP): every test cell rejects plausible wrong implementations with a message
naming the mistake, accepts valid alternatives, and passes the solution's own functions."""
from __future__ import annotations

import math
import re

import numpy as np
import pytest

from notebook_cells import cell_source, rejected, run_test_cell

NB = "01_numpy_mlp"
FUNCTIONS = ["one_hot", "relu", "relu_backward", "sigmoid", "softmax", "cross_entropy", "mlp_forward",
             "mlp_backward", "l2_regularization", "sgd_step", "step_lr", "iterations_per_epoch"]


@pytest.fixture(scope="module")
def solution() -> dict:
    """The solution notebook's own functions, executed from its solution cells in order."""
    namespace = {"np": np}
    for name in FUNCTIONS:
        exec(compile(cell_source(NB, name), f"<{NB} {name}>", "exec"), namespace)
    return namespace


def rejects(test_cell: str, match: str, mistake: str | None = None, **functions) -> str:
    """The test cell fails with a short plain message matching ``match`` and naming ``mistake``; the message."""
    return rejected(NB, test_cell, match, mistake, **functions)


# ---------------------------------------------------------------- the solution and the stubs

@pytest.mark.parametrize("name", FUNCTIONS)
def test_solution_passes_its_test_cell(solution, name):
    extra = {"mlp_forward": solution["mlp_forward"]} if name == "mlp_backward" else {}
    run_test_cell(NB, f"test_{name}", **{name: solution[name]}, **extra)


@pytest.mark.parametrize("name", FUNCTIONS)
def test_untouched_stub_fails_with_a_clear_message(solution, name):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    stub.__name__ = name
    extra = {"mlp_forward": solution["mlp_forward"]} if name == "mlp_backward" else {}
    rejects(f"test_{name}", "not implemented yet", "not_implemented", **{name: stub}, **extra)


def test_accuracy_is_recomputed_from_the_trained_params(monkeypatch):
    """A typed-in accuracy earns nothing: the hidden test evaluates ``params`` on the test set itself."""
    from conftest import real_data_dir

    real_data_dir()
    untrained = {"W1": np.zeros((3072, 8), np.float32), "b1": np.zeros(8, np.float32),
                 "W2": np.zeros((8, 10), np.float32), "b2": np.zeros(10, np.float32)}
    monkeypatch.setenv("COURSE_FAST", "1")
    rejects("test_accuracy", "trained params .* below 38%", test_accuracy=0.99, params=untrained)
    rejects("test_accuracy", "close to chance", test_accuracy=0.11, params=untrained)
    monkeypatch.setenv("COURSE_FAST", "0")
    rejects("test_accuracy", "trained params .* below 52%", test_accuracy=0.99, params=untrained)


# ---------------------------------------------------------------- one_hot

def one_hot_max_label(y, num_classes):
    return np.eye(y.max() + 1)[y]


def one_hot_transposed(y, num_classes):
    return np.eye(num_classes)[y].T


def one_hot_columns(y, num_classes):
    out = np.zeros((len(y), num_classes))
    out[:, y] = 1
    return out


def one_hot_int(y, num_classes):
    return np.eye(num_classes, dtype=np.int64)[y]


@pytest.mark.parametrize("wrong, match, mistake", [
    (one_hot_max_label, r"y\.max\(\) \+ 1", "width_from_labels"),
    (one_hot_transposed, "transposed", "transposed"),
    (one_hot_columns, r"out\[:, y\] = 1 sets whole columns", "whole_columns"),
    (one_hot_int, "should return floats", "integer_dtype"),
])
def test_one_hot_rejects(wrong, match, mistake):
    rejects("test_one_hot", match, f"mlp.one_hot.{mistake}", one_hot=wrong)


@pytest.mark.parametrize("valid", [
    lambda y, num_classes: np.eye(num_classes)[y],
    lambda y, num_classes: (y[:, None] == np.arange(num_classes)).astype(np.float32),
])
def test_one_hot_accepts(valid):
    run_test_cell(NB, "test_one_hot", one_hot=valid)


# ---------------------------------------------------------------- relu, relu_backward, sigmoid

def relu_reduction(z):
    return np.max(z, 0)


def relu_mask(z):
    return (z > 0).astype(float)


def relu_abs(z):
    return np.abs(z)


def relu_in_place(z):
    z[z < 0] = 0
    return z


@pytest.mark.parametrize("wrong, match, mistake", [
    (relu_reduction, r"np\.max\(z, 0\) is a reduction", "mlp.relu.reduction"),
    (relu_mask, r"returned the mask \(z > 0\)", "mlp.relu.mask"),
    (relu_abs, r"returned \|z\|", "mlp.relu.absolute_value"),
    (relu_in_place, "relu changed its argument z in place", "changed_argument"),
])
def test_relu_rejects(wrong, match, mistake):
    rejects("test_relu", match, mistake, relu=wrong)


@pytest.mark.parametrize("valid", [
    lambda z: z * (z > 0),
    lambda z: np.where(z > 0, z, 0.0),
    lambda z: np.clip(z, 0, None),
])
def test_relu_accepts(valid):
    run_test_cell(NB, "test_relu", relu=valid)


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda dout, z: dout * (dout > 0), "masked with dout > 0", "masked_by_dout"),
    (lambda dout, z: (z > 0).astype(float), r"returned the mask \(z > 0\) alone", "mask_only"),
    (lambda dout, z: dout, "passed dout through unchanged", "unmasked"),
    (lambda dout, z: dout * (z < 0), "reversed", "reversed_mask"),
    (lambda dout, z: dout * np.maximum(z, 0), r"not relu\(z\)", "times_relu"),
    (lambda dout, z: dout * (z >= 0), "at exactly z = 0", None),  # a hidden test: the docstring promises 0 there
])
def test_relu_backward_rejects(wrong, match, mistake):
    rejects("test_relu_backward", match, mistake and f"mlp.relu_backward.{mistake}", relu_backward=wrong)


def relu_backward_in_place(dout, z):
    dout[z <= 0] = 0
    return dout


@pytest.mark.parametrize("valid", [
    lambda dout, z: np.where(z > 0, dout, 0.0),
    relu_backward_in_place,
])
def test_relu_backward_accepts(valid):
    run_test_cell(NB, "test_relu_backward", relu_backward=valid)


def sigmoid_naive(z):
    return 1 / (1 + np.exp(-z))


def sigmoid_where(z):  # np.where evaluates both branches everywhere
    return np.where(z >= 0, 1 / (1 + np.exp(-z)), np.exp(z) / (1 + np.exp(z)))


def sigmoid_sign(z):
    return 1 / (1 + np.exp(z))


def sigmoid_quiet_nan(z):  # warnings silenced: exp(z) / (1 + exp(z)) is inf/inf for large z
    with np.errstate(all="ignore"):
        return np.exp(z) / (1 + np.exp(z))


def sigmoid_divides_by_zero(z):  # right values, but 1 / exp(-10000) divides by zero on the way
    return 1 / (1 + 1 / np.exp(np.minimum(z, 700)))


@pytest.mark.parametrize("wrong, match, mistake", [
    (sigmoid_naive, "overflow", "overflow"),
    (sigmoid_where, "overflow", "overflow"),
    (sigmoid_sign, "sign in the exponent is flipped", "flipped_sign"),
    (sigmoid_quiet_nan, r"NaN or inf for large \|z\|", "not_finite"),
    (sigmoid_divides_by_zero, "warned 'divide by zero.*computes no inf", "computes_inf"),
])
def test_sigmoid_rejects(wrong, match, mistake):
    rejects("test_sigmoid", match, f"mlp.sigmoid.{mistake}", sigmoid=wrong)


def sigmoid_flattened(z):  # the piecewise form written on z.ravel(): the values right, the shape lost
    z = np.ravel(z)
    return 0.5 * (1 + np.tanh(z / 2))


def sigmoid_in_place(z):  # computes into z itself
    z[...] = 0.5 * (1 + np.tanh(z / 2))
    return z


@pytest.mark.parametrize("wrong, match, mistake", [
    (sigmoid_flattened, "has lost z's shape", "mlp.sigmoid.lost_shape"),
    (sigmoid_in_place, "sigmoid changed its argument z in place", "changed_argument"),
])
def test_sigmoid_rejects_breaking_its_contract(wrong, match, mistake):
    rejects("test_sigmoid", match, mistake, sigmoid=wrong)


@pytest.mark.parametrize("valid", [
    lambda z: 0.5 * (1 + np.tanh(z / 2)),
    lambda z: 1 / (1 + np.exp(-np.clip(z, -500, 500))),
    lambda z: np.exp(-np.logaddexp(0, -z)),
])
def test_sigmoid_accepts(valid):
    run_test_cell(NB, "test_sigmoid", sigmoid=valid)


# ---------------------------------------------------------------- softmax

def softmax_axis0(logits):
    e = np.exp(logits - logits.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def softmax_unshifted(logits):
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def softmax_global_max(logits):
    e = np.exp(logits - logits.max())
    return e / e.sum(axis=1, keepdims=True)


def softmax_no_keepdims(logits):
    e = np.exp(logits - logits.max(axis=1))
    return e / e.sum(axis=1)


def softmax_in_place(logits):
    logits -= logits.max(axis=1, keepdims=True)
    e = np.exp(logits)
    return e / e.sum(axis=1, keepdims=True)


def softmax_whole(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum()


def softmax_no_keepdims_on_sum(logits):
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1)


def softmax_unnormalised(logits):
    return np.exp(logits - logits.max(axis=1, keepdims=True))


@pytest.mark.parametrize("wrong, match, mistake", [
    (softmax_axis0, "normalise over axis 0", "mlp.softmax.normalised_over_batch"),
    (softmax_unshifted, r"logits around 1000 overflows.*unchanged by subtracting a constant from a row",
     "mlp.softmax.unshifted"),
    (softmax_global_max, "one shift for the whole array", "mlp.softmax.global_max"),
    (softmax_no_keepdims, "broadcasts along the columns, not the rows", "mlp.softmax.no_keepdims"),
    (softmax_no_keepdims_on_sum, "broadcasts along the columns, not the rows", "mlp.softmax.no_keepdims"),
    (softmax_in_place, "softmax changed its argument logits in place", "changed_argument"),
    (softmax_whole, "summed over every entry", "mlp.softmax.whole_array"),
    (softmax_unnormalised, "rows that do not sum to 1", "mlp.softmax.rows_not_normalised"),
])
def test_softmax_rejects(wrong, match, mistake):
    rejects("test_softmax", match, mistake, softmax=wrong)


def softmax_logsumexp(logits):
    m = logits.max(axis=1, keepdims=True)
    return np.exp(logits - m - np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))


def softmax_float32(logits):
    x = np.asarray(logits, dtype=np.float32)
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("valid", [softmax_logsumexp, softmax_float32])
def test_softmax_accepts(valid):
    run_test_cell(NB, "test_softmax", softmax=valid)


# ---------------------------------------------------------------- cross_entropy

def _true(probs, y):
    return probs[np.arange(len(y)), y]


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda probs, y: -np.sum(np.log(np.clip(_true(probs, y), 1e-12, 1))), "summed over the batch", "summed"),
    (lambda probs, y: -np.mean(np.log(_true(probs, y))), r"not clipped away from 0", "unclipped"),
    (lambda probs, y: -np.log(np.clip(probs[:, y], 1e-12, 1)), "N×N", "all_pairs"),
    (lambda probs, y: -np.mean(np.log(np.clip(probs[:, y], 1e-12, 1))), "N×N", "all_pairs"),
    (lambda probs, y: np.mean(np.log(np.clip(_true(probs, y), 1e-12, 1))), "minus sign", "negative"),
    (lambda probs, y: -np.log(np.clip(_true(probs, y), 1e-12, 1)), "one number", "per_sample"),
    (lambda probs, y: -np.mean(np.log(np.clip(probs, 1e-12, 1))), "every class", "every_class"),
    (lambda probs, y: -np.mean(np.sum(np.eye(probs.shape[1])[y] * np.log(probs), axis=1)), r"0 · \(-inf\) = NaN",
     "zero_times_log_zero"),
    (lambda probs, y: -np.mean(np.log(np.clip(_true(probs, y), 0.01, 1))), "eps you clip with is too large",
     "eps_too_large"),
])
def test_cross_entropy_rejects(wrong, match, mistake):
    rejects("test_cross_entropy", match, f"mlp.cross_entropy.{mistake}", cross_entropy=wrong)


def cross_entropy_clips_in_place(probs, y):
    np.clip(probs, 1e-12, 1, out=probs)  # the caller's probabilities (the forward pass's cache) change
    return float(-np.mean(np.log(_true(probs, y))))


def test_cross_entropy_rejects_changing_probs():
    rejects("test_cross_entropy", "cross_entropy changed its argument probs in place", "changed_argument",
            cross_entropy=cross_entropy_clips_in_place)


@pytest.mark.parametrize("valid", [
    lambda probs, y: np.float32(-np.mean(np.log(np.clip(_true(probs, y), 1e-12, 1)))),
    lambda probs, y: -np.mean(np.sum(np.eye(probs.shape[1])[y] * np.log(np.clip(probs, 1e-12, 1)), axis=1)),
    lambda probs, y: -np.log(np.maximum(_true(probs, y), 1e-15)).mean(),
    lambda probs, y: float(-np.mean(np.log(_true(probs, y) + 1e-10))),
    lambda probs, y: -np.mean(np.log(np.clip(_true(probs, y), 1e-7, 1.0))),
])
def test_cross_entropy_accepts(valid):
    run_test_cell(NB, "test_cross_entropy", cross_entropy=valid)


# ---------------------------------------------------------------- mlp_forward

def _relu(z):
    return np.maximum(z, 0)


def _softmax(s):
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def forward_no_relu(params, X):
    z = X @ params["W1"] + params["b1"]
    probs = _softmax(z @ params["W2"] + params["b2"])
    return probs, (X, z, z, probs)


def forward_logits(params, X):
    z = X @ params["W1"] + params["b1"]
    h = _relu(z)
    scores = h @ params["W2"] + params["b2"]
    return scores, (X, z, h, scores)


def forward_no_bias(params, X):
    z = X @ params["W1"]
    h = _relu(z)
    probs = _softmax(h @ params["W2"])
    return probs, (X, z, h, probs)


def forward_relu_out(params, X):
    z = X @ params["W1"] + params["b1"]
    h = _relu(z)
    probs = _softmax(_relu(h @ params["W2"] + params["b2"]))
    return probs, (X, z, h, probs)


def forward_probs_only(params, X):
    return _softmax(_relu(X @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"])


@pytest.mark.parametrize("wrong, match, mistake", [
    (forward_no_relu, "without the ReLU", "mlp.mlp_forward.no_relu"),
    (forward_logits, r"not the scores \(logits\)", "mlp.mlp_forward.scores"),
    (forward_no_bias, "without biases", "mlp.mlp_forward.no_biases"),
    (forward_relu_out, "ReLU on the output scores", "mlp.mlp_forward.relu_on_scores"),
    (forward_probs_only, r"pair \(probs, cache\)", "wrong_type"),
])
def test_mlp_forward_rejects(wrong, match, mistake):
    rejects("test_mlp_forward", match, mistake, mlp_forward=wrong)


def forward_dict_cache(params, X):
    z = X @ params["W1"] + params["b1"]
    h = _relu(z)
    probs = _softmax(h @ params["W2"] + params["b2"])
    return probs, {"X": X, "z": z, "h": h, "probs": probs}


def test_mlp_forward_accepts_any_cache():
    run_test_cell(NB, "test_mlp_forward", mlp_forward=forward_dict_cache)


def forward_centres_x(params, X):
    X -= X.mean(axis=0)  # "normalises" the caller's batch in place
    return forward_dict_cache(params, X)


@pytest.mark.parametrize("wrong, match", [
    (forward_centres_x, "mlp_forward changed its argument X in place"),
], ids=["centres_x"])
def test_mlp_forward_rejects_changing_its_arguments(wrong, match):
    rejects("test_mlp_forward", match, "changed_argument", mlp_forward=wrong)


def forward_relu_in_place(params, X):  # in place on its own arrays only
    z = X @ params["W1"]
    z += params["b1"]
    h = np.maximum(z, 0, out=z.copy())
    s = h @ params["W2"]
    s += params["b2"]
    return _softmax(s), (X, z, h)


def test_mlp_forward_accepts_in_place_work_on_its_own_arrays():
    run_test_cell(NB, "test_mlp_forward", mlp_forward=forward_relu_in_place)


# ---------------------------------------------------------------- mlp_backward

def make_backward(scale_scores=True, sign=1, sum_bias=True, mean_bias=False, relu_mask=True, transpose_w1=False,
                  float64_labels=False, keys=("W1", "b1", "W2", "b2")):
    """A backward pass for the solution's cache (X, z, h, probs), with one mistake switched on."""
    def mlp_backward(params, cache, y):
        X, z, h, probs = cache
        n, c = probs.shape
        labels = np.eye(c)[y] if float64_labels else np.eye(c, dtype=probs.dtype)[y]
        dscores = sign * (probs - labels)
        if scale_scores:
            dscores = dscores / n
        dh = dscores @ params["W2"].T
        dz = dh * (z > 0) if relu_mask else dh
        reduce = (lambda a: a.mean(axis=0)) if mean_bias else (lambda a: a.sum(axis=0)) if sum_bias else (lambda a: a)
        grads = {"W1": dz.T @ X if transpose_w1 else X.T @ dz, "b1": reduce(dz),
                 "W2": h.T @ dscores, "b2": reduce(dscores)}
        return {k: grads[k] for k in keys}
    return mlp_backward


@pytest.mark.parametrize("wrong, match, mistake", [
    (make_backward(scale_scores=False), r"times too large.*not averaged over the batch.*divide by N", "not_averaged"),
    (make_backward(sign=-1), "wrong sign", "wrong_sign"),
    (make_backward(sum_bias=False), r"grads\['b1'\] has one row per sample.*sum its gradient over the batch axis",
     "bias_not_summed"),
    (make_backward(mean_bias=True), "times too small.*averaged over the batch", "averaged_biases"),
    (make_backward(relu_mask=False), "W2 and b2 are right but W1 and b1 are off", "hidden_layer"),
    (make_backward(transpose_w1=True), r"grads\['W1'\] is transposed", "transposed_weight"),
    (make_backward(keys=("W1", "W2")), "lacks b1, b2", "missing_gradients"),
])
def test_mlp_backward_rejects(solution, wrong, match, mistake):
    rejects("test_mlp_backward", match, f"mlp.mlp_backward.{mistake}", mlp_backward=wrong,
            mlp_forward=solution["mlp_forward"])


def test_mlp_backward_asks_for_a_correct_forward_first(solution):
    rejects("test_mlp_backward", "pass test_mlp_forward first", "mlp.mlp_backward.forward_not_right",
            mlp_backward=solution["mlp_backward"], mlp_forward=forward_no_bias)


def test_mlp_backward_rejects_float64_gradients_of_float32_parameters(solution):
    """The docstring promises the parameters' dtype: float64 one-hot labels widen every gradient after them."""
    message = rejects("test_mlp_backward", r"float32 parameters returned grads\['W1'\] as float64",
                      "mlp.mlp_backward.float64_gradients", mlp_backward=make_backward(float64_labels=True),
                      mlp_forward=solution["mlp_forward"])
    assert "astype" not in message  # the pitfall in words, not the fix as code


def test_mlp_backward_rejects_changing_params(solution):
    def mlp_backward(params, cache, y):  # takes the SGD step itself
        grads = make_backward()(params, cache, y)
        for key in params:
            params[key] -= 0.1 * grads[key]
        return grads

    rejects("test_mlp_backward", "mlp_backward changed its argument params in place", "changed_argument",
            mlp_backward=mlp_backward, mlp_forward=solution["mlp_forward"])


def test_mlp_backward_accepts_float64_everywhere(solution):
    """float64 labels are fine where the parameters are float64 (only float32 ones must stay float32)."""
    def mlp_backward(params, cache, y):
        grads = make_backward(float64_labels=True)(params, cache, y)
        return {k: v.astype(params[k].dtype) for k, v in grads.items()}

    run_test_cell(NB, "test_mlp_backward", mlp_backward=mlp_backward, mlp_forward=solution["mlp_forward"])


# ---------------------------------------------------------------- sgd_step, step_lr, iterations_per_epoch

def sgd_no_return(params, grads, lr):
    for key in params:
        params[key] -= lr * grads[key]


def sgd_weights_only(params, grads, lr):
    for key in ("W1", "W2"):
        params[key] = params[key] - lr * grads[key]
    return params


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda params, grads, lr: {k: params[k] + lr * grads[k] for k in params}, "uphill", "mlp.sgd_step.uphill"),
    (lambda params, grads, lr: {k: params[k] - grads[k] for k in params}, "ignored the learning rate",
     "mlp.sgd_step.ignores_lr"),
    (lambda params, grads, lr: {k: -lr * grads[k] for k in params}, "returned the step", "mlp.sgd_step.returned_step"),
    (lambda params, grads, lr: {k: params[k] - 0.1 * grads[k] for k in params}, "use the lr argument",
     "mlp.sgd_step.fixed_lr"),
    (lambda params, grads, lr: {k: params[k] - lr * grads[k] for k in ("W1", "W2")}, "lacks b1, b2",
     "mlp.sgd_step.missing_parameters"),
    (sgd_no_return, "returned None", "returned_none"),
    (sgd_weights_only, r"params\['b1'\] after a step with lr=0.1 did not change", "mlp.sgd_step.not_updated"),
])
def test_sgd_step_rejects(wrong, match, mistake):
    rejects("test_sgd_step", match, mistake, sgd_step=wrong)


def sgd_in_place(params, grads, lr):
    for key in params:
        params[key] -= lr * grads[key]
    return params


@pytest.mark.parametrize("valid", [
    lambda params, grads, lr: {k: v - lr * grads[k] for k, v in params.items()},
    sgd_in_place,
], ids=["new_dict", "in_place"])
def test_sgd_step_accepts(valid):
    run_test_cell(NB, "test_sgd_step", sgd_step=valid)


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda lr0, epoch, step_size, gamma: lr0 * gamma ** (epoch / step_size), r"a whole number \(rounded down\)",
     "fractional_decays"),
    (lambda lr0, epoch, step_size, gamma: lr0 * gamma ** math.ceil(epoch / step_size),
     r"a whole number \(rounded down\)", "fractional_decays"),
    (lambda lr0, epoch, step_size, gamma: lr0 * gamma ** ((epoch + 1) // step_size), "one epoch too early",
     "decays_early"),
    (lambda lr0, epoch, step_size, gamma: lr0 * gamma ** (epoch // (step_size + 1)), "one epoch too late",
     "decays_late"),
    (lambda lr0, epoch, step_size, gamma: lr0 * gamma ** ((epoch - 1) // step_size), "larger than lr0", "above_lr0"),
    (lambda lr0, epoch, step_size, gamma: lr0 * gamma * (epoch // step_size), "0 at epoch 0", "gamma_times_decays"),
    (lambda lr0, epoch, step_size, gamma: 0.1 * 0.5 ** (epoch // 3), "use every argument", "fixed_settings"),
    (lambda lr0, epoch, step_size, gamma: lr0 * 0.5 ** (epoch // step_size), "use every argument", "fixed_settings"),
])
def test_step_lr_rejects(wrong, match, mistake):
    rejects("test_step_lr", match, f"mlp.step_lr.{mistake}", step_lr=wrong)


@pytest.mark.parametrize("valid", [
    lambda lr0, epoch, step_size, gamma: lr0 * gamma ** math.floor(epoch / step_size),
    lambda lr0, epoch, step_size, gamma: lr0 * np.power(gamma, epoch // step_size),
])
def test_step_lr_accepts(valid):
    run_test_cell(NB, "test_step_lr", step_lr=valid)


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda n_samples, batch_size, drop_last=False: n_samples // batch_size, "round up, not down", "rounds_down"),
    (lambda n_samples, batch_size, drop_last=False: math.ceil(n_samples / batch_size), "so round down",
     "counts_incomplete"),
    (lambda n_samples, batch_size, drop_last=False: n_samples / batch_size, "return an int", "not_an_int"),
    (lambda n_samples, batch_size, drop_last=False:
        np.floor(n_samples / batch_size) if drop_last else np.ceil(n_samples / batch_size), "return an int",
     "not_an_int"),
    (lambda n_samples, batch_size, drop_last=False: n_samples // batch_size + (0 if drop_last else 1),
     r"iterations_per_epoch\(48000, 32\) counts one batch too many", "one_too_many"),
])
def test_iterations_per_epoch_rejects(wrong, match, mistake):
    rejects("test_iterations_per_epoch", match, f"mlp.iterations_per_epoch.{mistake}", iterations_per_epoch=wrong)


@pytest.mark.parametrize("valid", [
    lambda n_samples, batch_size, drop_last=False:
        n_samples // batch_size if drop_last else math.ceil(n_samples / batch_size),
    lambda n_samples, batch_size, drop_last=False:
        len(range(0, n_samples - (n_samples % batch_size if drop_last else 0), batch_size)),
    lambda n_samples, batch_size, drop_last=False:
        int(np.floor(n_samples / batch_size)) if drop_last else int(np.ceil(n_samples / batch_size)),
])
def test_iterations_per_epoch_accepts(valid):
    run_test_cell(NB, "test_iterations_per_epoch", iterations_per_epoch=valid)


# ---------------------------------------------------------------- l2_regularization

def l2_variant(penalty_of=lambda W: 0.5 * np.sum(W ** 2), grad_of=lambda W, reg: reg * W, biases=False,
               bias_grads="zeros", keys=lambda params: [k for k in params if k.startswith("W")], as_float=True,
               scale=lambda reg: reg):
    """An L2 penalty, correct with the defaults; each argument plants one mistake (or a valid variation)."""
    def l2_regularization(params, reg):
        weights = keys(params)
        penalised = list(params) if biases else weights
        penalty = scale(reg) * sum(penalty_of(params[k]) for k in penalised)
        grads = {k: grad_of(v, reg) for k, v in params.items() if k in weights}
        for k, v in params.items():
            if k not in weights:
                if bias_grads == "zeros":
                    grads[k] = np.zeros_like(v)
                elif bias_grads == "decayed":
                    grads[k] = reg * v
        return (float(penalty) if as_float else np.array([penalty])), grads
    return l2_regularization


def l2_decays_in_place(params, reg):
    penalty = 0.5 * reg * sum(float(np.sum(v ** 2)) for k, v in params.items() if k.startswith("W"))
    grads = {k: (reg * v if k.startswith("W") else np.zeros_like(v)) for k, v in params.items()}
    for k in params:
        if k.startswith("W"):
            params[k] *= 1 - reg  # decays the weights itself
    return penalty, grads


@pytest.mark.parametrize("wrong, match, mistake", [
    (l2_variant(penalty_of=lambda W: np.sum(W ** 2), grad_of=lambda W, reg: reg * W), "penalty .* is twice too large",
     "penalty_without_half"),
    (l2_variant(grad_of=lambda W, reg: 2 * reg * W), "twice too large: the 1/2 in the penalty cancels",
     "gradient_without_half"),
    (l2_variant(biases=True), "penalty .* includes the biases", "penalised_biases"),
    (l2_variant(bias_grads="decayed"), "penalises a bias", "penalised_bias"),
    (l2_variant(bias_grads="missing"), r"grads lacks b1, b2", "missing_gradients"),
    (l2_variant(penalty_of=lambda W: 0.5 * np.mean(W ** 2)), r"averages the squares", "mean_of_squares"),
    (l2_variant(penalty_of=lambda W: 0.5 * np.sqrt(np.sum(W ** 2))), "norms, not the squared norms", "norm_not_squared"),
    (l2_variant(penalty_of=lambda W: 0.5 * np.sum(np.abs(W))), "L1 penalty", "l1_penalty"),
    (l2_variant(penalty_of=lambda W: np.sum(np.abs(W))), "L1 penalty", "l1_penalty"),
    (l2_variant(grad_of=lambda W, reg: reg * np.sign(W)), "gradient of an L1 penalty", "l1_gradient"),
    (l2_variant(grad_of=lambda W, reg: W), "ignores reg: the gradient scales", "gradient_without_reg"),
    (l2_variant(grad_of=lambda W, reg: -reg * W), "wrong sign", "gradient_sign"),
    (l2_variant(grad_of=lambda W, reg: reg * W ** 2 / 2), "the penalty of each entry, not its derivative",
     "penalty_as_gradient"),
    (l2_variant(keys=lambda params: ["W1"]), "penalises W1 only", "only_first_weight"),
    (l2_variant(scale=lambda reg: 1.0), "penalty .* ignores reg", "ignores_reg"),
    (l2_variant(scale=lambda reg: -reg), "penalty .* is negative", "negative_penalty"),
], ids=["penalty_without_half", "gradient_without_half", "biases_penalised", "bias_gradients", "bias_keys_missing",
        "mean", "norm", "l1_penalty", "l1_penalty_without_half", "l1_gradient", "gradient_without_reg",
        "gradient_sign", "penalty_as_gradient", "only_w1", "penalty_without_reg", "negative_penalty"])
def test_l2_regularization_rejects(wrong, match, mistake):
    rejects("test_l2_regularization", match, f"mlp.l2_regularization.{mistake}", l2_regularization=wrong)


@pytest.mark.parametrize("wrong, match, mistake", [
    (l2_variant(keys=lambda params: [k for k in ("W1", "W2") if k in params]), "leaves out W3: the weights are every "
     "parameter whose name starts with W", "mlp.l2_regularization.fixed_weight_names"),
    (lambda params, reg: (l2_loop(params, reg)[0], {k: (reg * v if k.startswith("W") else 0.0)
                                                    for k, v in params.items()}),
     r"grads\['b1'\] should be an array of shape \(3,\); it is 0", "wrong_type"),
], ids=["fixed_names", "scalar_bias_gradients"])
def test_l2_regularization_rejects_breaking_its_contract(wrong, match, mistake):
    rejects("test_l2_regularization", match, mistake, l2_regularization=wrong)


@pytest.mark.parametrize("wrong, match, mistake", [
    (l2_variant(as_float=False), "one number for the whole network", "wrong_type"),
    (l2_decays_in_place, "l2_regularization changed its argument params in place", "changed_argument"),
    (lambda params, reg: {k: reg * v for k, v in params.items()}, r"should return a pair \(penalty, grads\)",
     "wrong_type"),
], ids=["array", "in_place", "grads_only"])
def test_l2_regularization_rejects_the_wrong_kind_of_result(wrong, match, mistake):
    rejects("test_l2_regularization", match, mistake, l2_regularization=wrong)


def l2_loop(params, reg):
    penalty, grads = 0.0, {}
    for name, value in params.items():
        if name[0] == "W":
            penalty += 0.5 * reg * float((value * value).sum())
            grads[name] = value * reg
        else:
            grads[name] = 0 * value
    return penalty, grads


@pytest.mark.parametrize("valid", [
    l2_loop,
    l2_variant(penalty_of=lambda W: 0.5 * np.linalg.norm(W) ** 2),
    l2_variant(penalty_of=lambda W: 0.5 * np.einsum("ij,ij->", W, W), as_float=True),
    lambda params, reg: (np.float64(l2_loop(params, reg)[0]), l2_loop(params, reg)[1]),
    lambda params, reg: (l2_loop(params, reg)[0], {k: (reg * v if v.ndim == 2 else np.zeros(v.shape, v.dtype))
                                                   for k, v in params.items()}),
], ids=["loop", "linalg_norm", "einsum", "numpy_scalar", "zeros_by_shape"])
def test_l2_regularization_accepts(valid):
    run_test_cell(NB, "test_l2_regularization", l2_regularization=valid)


# ---------------------------------------------------------------- the cases of issue 24, with the messages they get

def returns_none(*args, **kwargs):
    return None


@pytest.mark.parametrize("name", FUNCTIONS)
def test_a_function_that_returns_nothing_gets_a_message_not_a_crash(solution, name):
    returns_none.__name__ = name
    extra = {"mlp_forward": solution["mlp_forward"]} if name == "mlp_backward" else {}
    message = rejects(f"test_{name}", "returned None", "returned_none", **{name: returns_none}, **extra)
    assert message == f"{name} returned None: is the result returned at the end of the function?"


def test_a_crash_in_the_students_code_is_a_message_naming_the_call():
    def softmax(logits):
        return np.exp(logits) / np.exp(logits).sum(axis=1) @ np.ones((7, 2))

    message = rejects("test_softmax", "raised ValueError", "crashed", softmax=softmax)
    assert message.startswith("softmax(array of shape (3, 3)) raised ValueError: matmul: ")


def test_an_argument_changed_in_place_is_named_where_the_contract_keeps_it():
    def sgd_step(params, grads, lr):  # scales the caller's gradients while stepping
        for key in params:
            grads[key] *= lr
            params[key] = params[key] - grads[key]
        return params

    assert rejects("test_sgd_step", "grads", "changed_argument", sgd_step=sgd_step) == (
        "sgd_step changed its argument grads in place; it should leave grads as it was and return new values.")


def test_messages_are_plain_text_without_markup_or_array_dumps():
    def l2_mean(params, reg):  # this hint showed *sum* with its markdown asterisks
        weights = [v for k, v in params.items() if k.startswith("W")]
        return 0.5 * reg * sum(np.mean(w ** 2) for w in weights), {
            k: (reg * v if k.startswith("W") else np.zeros_like(v)) for k, v in params.items()}

    assert rejects("test_l2_regularization", "averages the squares", "mlp.l2_regularization.mean_of_squares",
                   l2_regularization=l2_mean) == (
        "the penalty of the two-layer example with reg=0.1 averages the squares: it is the sum of the squares of "
        "every weight.")
    # this message used to print the rows' sums as an array
    assert rejects("test_softmax", "axis 0", "mlp.softmax.normalised_over_batch", softmax=softmax_axis0) == (
        "softmax of a 3×3 array has columns that sum to 1, not rows: did you normalise over axis 0 (the batch) "
        "instead of axis 1 (the classes)?")


def test_a_schedule_names_its_rounding_and_otherwise_the_first_epoch_that_differs():
    """A step decay with the wrong rounding is named; one that no table entry explains gets the epoch, its value
    and the expected one (not "a different value"); one that never uses an argument is told so."""
    rounded = rejects("test_step_lr", "too early", "mlp.step_lr.decays_early",
                      step_lr=lambda lr0, epoch, step_size, gamma: lr0 * gamma ** round(epoch / step_size))
    assert rounded == ("step_lr(0.1, epoch, step_size=3, gamma=0.5) decays one epoch too early: epochs count from 0, "
                       "so epochs 0 to step_size - 1 use lr0; is the epoch shifted by one before the division?")
    late_extra = rejects("test_step_lr", "epoch=9", "unidentified",
                         step_lr=lambda lr0, epoch, step_size, gamma: lr0 * gamma ** (epoch // step_size + epoch // 9))
    assert late_extra == "step_lr(0.1, epoch=9, step_size=3, gamma=0.5) is 0.00625; expected 0.0125."
    no_lr0 = rejects("test_step_lr", "use every argument", "mlp.step_lr.fixed_settings",
                     step_lr=lambda lr0, epoch, step_size, gamma: 0.1 * gamma ** (epoch // step_size))
    assert no_lr0 == ("step_lr(0.01, epoch=7, step_size=2, gamma=0.1) is what lr0=0.1, step_size=3 or gamma=0.5 "
                      "(the first schedule's) would give: use every argument (lr0, step_size and gamma).")


def test_an_unexplained_difference_says_where_it_first_is(solution):
    assert rejects("test_one_hot", "at", "unidentified", one_hot=lambda y, num_classes: np.eye(num_classes)[y][::-1]) \
        == "one_hot(y, 6) for the labels [2, 0, 3, 2] at [1, 0] is 0; expected 1 (3 more of 24 elements differ)."
    assert rejects("test_iterations_per_epoch", "1502", "unidentified",
                   iterations_per_epoch=lambda n_samples, batch_size, drop_last=False: n_samples // batch_size + 2) \
        == "iterations_per_epoch(48000, 32) is 1502; expected 1500."
    message = rejects("test_mlp_backward", "numerical gradient", "unidentified",
                      mlp_backward=lambda params, cache, y: {k: np.zeros_like(v) for k, v in params.items()},
                      mlp_forward=solution["mlp_forward"])
    assert re.fullmatch(r"grads\['W1'\] at \[0, \d\] is 0; the numerical gradient is -?[\d.e-]+"
                        r"( \(\d+ more of 24 elements differ\))?\.", message), message


# ---------------------------------------------------------------- NumPy only

def one_hot_torch(y, num_classes):
    import torch
    return torch.nn.functional.one_hot(torch.as_tensor(y), num_classes).double().numpy()


def relu_torch(z):
    import torch
    return torch.relu(torch.from_numpy(z)).numpy()


def sigmoid_scipy(z):
    from scipy.special import expit
    return expit(z)


def softmax_scipy(logits):
    import scipy.special
    return scipy.special.softmax(logits, axis=1)


def cross_entropy_sklearn(probs, y):
    from sklearn.metrics import log_loss
    return log_loss(y, np.clip(probs, 1e-12, 1), labels=np.arange(probs.shape[1]))


def _torch_logits(x):  # a student's own helper that hides the call
    import torch
    return torch.as_tensor(x)


def softmax_through_helper(logits):
    try:  # a fallback does not help: the first call into torch fails the check
        return _torch_logits(logits).softmax(dim=1).numpy()
    except Exception:
        return None


def relu_backward_course_lib(dout, z):
    from course_lib.checks.gradient_check import numerical_gradient  # the notebook's setup imports it too
    dz = np.zeros_like(z)
    return dz + dout * numerical_gradient(lambda: float(np.maximum(z, 0).sum()), z.copy())


def l2_regularization_torch(params, reg):
    import torch
    weights = [torch.as_tensor(v) for k, v in params.items() if k.startswith("W")]
    penalty = 0.5 * reg * float(sum(w.square().sum() for w in weights))
    return penalty, {k: (reg * v if k.startswith("W") else np.zeros_like(v)) for k, v in params.items()}


def iterations_per_epoch_torch(n_samples, batch_size, drop_last=False):
    from torch.utils.data import DataLoader
    return len(DataLoader(range(n_samples), batch_size=batch_size, drop_last=drop_last))


@pytest.mark.parametrize("name, wrong, called", [
    ("one_hot", one_hot_torch, "torch.nn.functional.one_hot"),  # the first use of torch, reading the source
    ("relu", relu_torch, "torch.relu"),
    ("relu_backward", relu_backward_course_lib, "course_lib.checks.gradient_check.numerical_gradient"),
    ("sigmoid", sigmoid_scipy, "scipy.special.expit"),
    ("softmax", softmax_scipy, "scipy.special.softmax"),
    ("softmax", softmax_through_helper, r"torch.as_tensor \(in _torch_logits\)"),
    ("cross_entropy", cross_entropy_sklearn, "sklearn.metrics.log_loss"),
    ("iterations_per_epoch", iterations_per_epoch_torch, "torch.utils.data.DataLoader"),
    ("l2_regularization", l2_regularization_torch, "torch.as_tensor"),
], ids=["one_hot_torch", "relu_torch", "relu_backward_course_lib", "sigmoid_scipy_expit", "softmax_scipy",
        "softmax_torch_helper", "cross_entropy_sklearn", "iterations_per_epoch_torch", "l2_regularization_torch"])
def test_numpy_only_exercises_reject_other_libraries(name, wrong, called):
    wrong.__name__ = name
    rejects(f"test_{name}", rf"{name} called {called} — this exercise is NumPy only", **{name: wrong})


def test_mlp_backward_through_torch_autograd_is_rejected(solution):
    def mlp_backward(params, cache, y):
        import torch
        X = torch.as_tensor(cache[0])
        t = {k: torch.tensor(v, requires_grad=True) for k, v in params.items()}
        scores = torch.relu(X @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"]
        torch.nn.functional.cross_entropy(scores, torch.as_tensor(y)).backward()
        return {k: v.grad.numpy() for k, v in t.items()}

    rejects("test_mlp_backward", "mlp_backward called torch.as_tensor — this exercise is NumPy only",
            mlp_backward=mlp_backward, mlp_forward=solution["mlp_forward"])


def test_mlp_forward_is_guarded_inside_mlp_backward_too(solution):
    def mlp_forward(params, X):  # right values, through torch
        import torch
        t = {k: torch.as_tensor(v) for k, v in params.items()}
        probs = torch.softmax(torch.relu(torch.as_tensor(X) @ t["W1"] + t["b1"]) @ t["W2"] + t["b2"], dim=1).numpy()
        return probs, None

    rejects("test_mlp_backward", "mlp_forward called torch.as_tensor",
            mlp_backward=solution["mlp_backward"], mlp_forward=mlp_forward)
