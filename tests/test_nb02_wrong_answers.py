"""Notebook 02 (convolution): the test cells reject plausible wrong answers with a message that
names the mistake, and accept valid alternatives (loops or vectorised, float32 or float64)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from numpy.lib.stride_tricks import as_strided, sliding_window_view

from course_grading.verdict import loopback
import notebook_cells
from notebook_cells import cell_source, run_test_cell

NB = "02_convolution"
FUNCTIONS = ["conv_output_size", "conv2d_naive", "conv2d_fast", "linear", "global_avg_pool",
             "count_params_mlp", "count_params_conv", "conv2d_backward_naive", "conv2d_backward_fast",
             "max_pool2d", "max_pool2d_backward", "global_avg_pool_backward"]


def rejects(grade_id: str, match: str, **functions) -> None:
    with pytest.raises(AssertionError, match=match):
        run_test_cell(NB, grade_id, **functions)


def solution(name: str):
    """The solution notebook's own function ``name``."""
    namespace = {"np": np}
    exec(cell_source(NB, name), namespace)
    return namespace[name]


@pytest.mark.parametrize("name", FUNCTIONS)
def test_stub_fails(name):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    stub.__name__ = name
    rejects(f"test_{name}", "not implemented yet", **{name: stub})


@pytest.mark.parametrize("name", FUNCTIONS)
def test_solution_passes(name):
    run_test_cell(NB, f"test_{name}", **{name: solution(name)})


# ---------------------------------------------------------------- conv_output_size

@pytest.mark.parametrize("wrong, match", [
    (lambda n, kernel_size, padding=0, stride=1: (n - kernel_size + 2 * padding) // stride, "add 1"),
    (lambda n, kernel_size, padding=0, stride=1: (n - kernel_size + padding) // stride + 1, "both"),
    (lambda n, kernel_size, padding=0, stride=1: n - kernel_size + 2 * padding + 1, "stride is missing"),
    (lambda n, kernel_size, padding=0, stride=1: (n - kernel_size + 2 * padding) / stride + 1, r"int.*//"),
    (lambda n, kernel_size, padding=0, stride=1: math.ceil((n - kernel_size + 2 * padding) / stride) + 1,
     "Round down"),
], ids=["no_plus_one", "padding_once", "stride_ignored", "true_division", "ceil"])
def test_conv_output_size_rejects(wrong, match):
    rejects("test_conv_output_size", match, conv_output_size=wrong)


@pytest.mark.parametrize("valid", [
    lambda n, kernel_size, padding=0, stride=1: len(range(0, n + 2 * padding - kernel_size + 1, stride)),
    lambda n, kernel_size, padding=0, stride=1: int(np.floor((n - kernel_size + 2 * padding) / stride)) + 1,
], ids=["count_positions", "floor"])
def test_conv_output_size_accepts(valid):
    run_test_cell(NB, "test_conv_output_size", conv_output_size=valid)


# ---------------------------------------------------------------- conv2d_naive (loops)

def naive_variant(flip=False, pad="both", stride_in_windows=True, stride_in_size=True, bias="once",
                  accumulate=None, channels_last=False):
    """A loop convolution, correct with the defaults; each argument plants one mistake."""
    def conv2d_naive(x, w, b=None, stride=1, padding=0):
        N, C, H, W = x.shape
        F, _, KH, KW = w.shape
        pads = {"both": (padding, padding), "before": (2 * padding, 0), "after_only": (0, padding)}[pad]
        x_pad = np.pad(x, ((0, 0), (0, 0), pads, pads))
        s = stride if stride_in_size else 1
        H_out, W_out = (x_pad.shape[2] - KH) // s + 1, (x_pad.shape[3] - KW) // s + 1
        step = stride if stride_in_windows else 1
        kernels = w[:, :, ::-1, ::-1] if flip else w
        out = np.zeros((N, F, H_out, W_out), dtype=accumulate or np.result_type(x, w))
        for n in range(N):
            for f in range(F):
                for i in range(H_out):
                    for j in range(W_out):
                        for c in range(C):
                            window = x_pad[n, c, i * step:i * step + KH, j * step:j * step + KW]
                            out[n, f, i, j] += np.sum(window * kernels[f, c])
                            if b is not None and bias == "per_channel":
                                out[n, f, i, j] += b[f]
                if b is not None and bias == "once":
                    out[n, f] += b[f]
        return out.transpose(0, 2, 3, 1) if channels_last else out
    return conv2d_naive


@pytest.mark.parametrize("options, match", [
    ({"flip": True}, "kernel is flipped"),
    ({"pad": "before"}, "padded on one side only"),
    ({"pad": "after_only"}, "padded on one side only"),
    ({"stride_in_windows": False}, "stride=2 is ignored when placing the windows"),
    ({"stride_in_size": False, "stride_in_windows": False}, "stride=2 was ignored"),
    ({"bias": "none"}, "bias is missing"),
    ({"bias": "per_channel"}, "bias was added 3 times"),
    ({"channels_last": True}, "channels-last"),
], ids=["flipped", "one_side_2p", "one_side_p", "stride_windows", "stride_ignored", "no_bias", "bias_per_channel",
        "channels_last"])
def test_conv2d_naive_rejects(options, match):
    rejects("test_conv2d_naive", match, conv2d_naive=naive_variant(**options))


def test_conv2d_naive_rejects_swapped_kernel_axes():
    def conv2d_naive(x, w, b=None, stride=1, padding=0):  # takes KH for the width and KW for the height
        return naive_variant()(x, w.transpose(0, 1, 3, 2), b, stride, padding)

    rejects("test_conv2d_naive", "KH and KW are mixed up", conv2d_naive=conv2d_naive)


@pytest.mark.parametrize("valid", [naive_variant(), naive_variant(accumulate=np.float64)],
                         ids=["loops_over_channels_too", "float64_accumulator"])
def test_conv2d_naive_accepts_loops(valid):
    run_test_cell(NB, "test_conv2d_naive", conv2d_naive=valid)


def test_conv2d_naive_accepts_vectorised():
    run_test_cell(NB, "test_conv2d_naive", conv2d_naive=im2col_conv)


# ---------------------------------------------------------------- conv2d_fast (vectorised)

def windows_of(x, w, stride, padding, pads=None):
    pads = pads or (padding, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), pads, pads))
    return sliding_window_view(x_pad, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]


def fast_flipped(x, w, b=None, stride=1, padding=0):
    out = np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding), w[:, :, ::-1, ::-1], optimize=True)
    return out if b is None else out + b[None, :, None, None]


def fast_no_stride(x, w, b=None, stride=1, padding=0):
    out = np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, 1, padding), w, optimize=True)
    return out if b is None else out + b[None, :, None, None]


def fast_one_side(x, w, b=None, stride=1, padding=0):
    out = np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding, pads=(2 * padding, 0)), w, optimize=True)
    return out if b is None else out + b[None, :, None, None]


def fast_no_bias(x, w, b=None, stride=1, padding=0):
    return np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding), w, optimize=True)


def fast_bias_last_axis(x, w, b=None, stride=1, padding=0):
    out = np.einsum("nchwuv,fcuv->nhwf", windows_of(x, w, stride, padding), w, optimize=True)
    return out if b is None else out + b


def fast_edge_padding(x, w, b=None, stride=1, padding=0):
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)), mode="edge")
    windows = sliding_window_view(x_pad, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    out = np.einsum("nchwuv,fcuv->nfhw", windows, w, optimize=True)
    return out if b is None else out + b[None, :, None, None]


@pytest.mark.parametrize("wrong, match", [
    (fast_flipped, "kernel is flipped"),
    (fast_no_stride, "stride=2 was ignored"),
    (fast_one_side, "padded on one side only"),
    (fast_no_bias, "bias is missing"),
    (fast_bias_last_axis, "channels-last"),
    (fast_edge_padding, "repeating the edge pixels"),
    (None, "not vectorised"),  # the solution's conv2d_naive: loops
], ids=["flipped", "stride_ignored", "one_side", "no_bias", "channels_last", "edge_padding", "loops"])
def test_conv2d_fast_rejects(wrong, match):
    wrong = wrong or solution("conv2d_naive")
    rejects("test_conv2d_fast", match, conv2d_fast=wrong)


def im2col_conv(x, w, b=None, stride=1, padding=0):
    """CS231n-style im2col with fancy indexing, then one matrix product."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    H_out, W_out = (H - KH + 2 * padding) // stride + 1, (W - KW + 2 * padding) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    rows = (np.arange(H_out) * stride)[:, None, None, None] + np.arange(KH)[None, None, :, None]
    cols = (np.arange(W_out) * stride)[None, :, None, None] + np.arange(KW)[None, None, None, :]
    patches = x_pad[:, :, rows, cols]                      # (N, C, H_out, W_out, KH, KW)
    columns = patches.transpose(0, 2, 3, 1, 4, 5).reshape(N * H_out * W_out, C * KH * KW)
    out = (columns @ w.reshape(F, -1).T).reshape(N, H_out, W_out, F).transpose(0, 3, 1, 2)
    return out if b is None else out + b[None, :, None, None]


def kernel_offset_loops(x, w, b=None, stride=1, padding=0):
    """Loops over the KH·KW kernel offsets only, each a product over all images and channels."""
    N, C, H, W = x.shape
    F, _, KH, KW = w.shape
    H_out, W_out = (H - KH + 2 * padding) // stride + 1, (W - KW + 2 * padding) // stride + 1
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.zeros((N, F, H_out, W_out), dtype=np.result_type(x, w))
    for u in range(KH):
        for v in range(KW):
            shifted = x_pad[:, :, u:u + stride * (H_out - 1) + 1:stride, v:v + stride * (W_out - 1) + 1:stride]
            out += np.einsum("nchw,fc->nfhw", shifted, w[:, :, u, v])
    return out if b is None else out + b[None, :, None, None]


def float64_tensordot(x, w, b=None, stride=1, padding=0):
    """Computes in float64 whatever the input dtype, with tensordot instead of einsum."""
    x, w = np.asarray(x, dtype=np.float64), np.asarray(w, dtype=np.float64)
    out = np.tensordot(windows_of(x, w, stride, padding), w, axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
    return out if b is None else out + np.asarray(b, dtype=np.float64)[None, :, None, None]


@pytest.mark.parametrize("valid", [im2col_conv, kernel_offset_loops, float64_tensordot],
                         ids=["im2col", "kernel_offset_loops", "float64_tensordot"])
def test_conv2d_fast_accepts(valid):
    run_test_cell(NB, "test_conv2d_fast", conv2d_fast=valid)


# ---------------------------------------------------------------- linear

@pytest.mark.parametrize("wrong, match", [
    (lambda x, weight, bias: x @ weight + bias, "not transposed"),
    (lambda x, weight, bias: x @ weight.T, "bias is missing"),
    (lambda x, weight, bias: weight @ x.T + bias[:, None], "one row per example"),
], ids=["untransposed", "no_bias", "outputs_first"])
def test_linear_rejects(wrong, match):
    rejects("test_linear", match, linear=wrong)


@pytest.mark.parametrize("valid", [
    lambda x, weight, bias: np.einsum("ni,oi->no", x, weight) + bias,
    lambda x, weight, bias: (weight @ x.T).T + bias,
    lambda x, weight, bias: np.asarray(x, np.float64) @ np.asarray(weight, np.float64).T + bias,
], ids=["einsum", "transpose_after", "float64"])
def test_linear_accepts(valid):
    run_test_cell(NB, "test_linear", linear=valid)


# ---------------------------------------------------------------- global_avg_pool

@pytest.mark.parametrize("wrong, match", [
    (lambda x: x.mean(axis=(1, 2)), r"averaged over axes \(1, 2\)"),
    (lambda x: x.sum(axis=(2, 3)), "summed instead of averaging"),
    (lambda x: x.mean(axis=(2, 3), keepdims=True), "no keepdims"),
    (lambda x: x.max(axis=(2, 3)), r"\*max\* pooling"),
    (lambda x: x.reshape(len(x), -1).mean(axis=1), "averaged the channels too"),
], ids=["wrong_axes", "sum", "keepdims", "max", "all_axes"])
def test_global_avg_pool_rejects(wrong, match):
    rejects("test_global_avg_pool", match, global_avg_pool=wrong)


@pytest.mark.parametrize("valid", [
    lambda x: x.reshape(x.shape[0], x.shape[1], -1).mean(axis=-1),
    lambda x: x.mean(axis=3).mean(axis=2),
    lambda x: x.astype(np.float64).sum(axis=(2, 3)) / (x.shape[2] * x.shape[3]),
], ids=["reshape", "twice", "float64_sum"])
def test_global_avg_pool_accepts(valid):
    run_test_cell(NB, "test_global_avg_pool", global_avg_pool=valid)


# ---------------------------------------------------------------- count_params_mlp

def layer_sizes(d_in, hidden_sizes, d_out):
    sizes = [d_in, *hidden_sizes, d_out]
    return list(zip(sizes[:-1], sizes[1:]))


@pytest.mark.parametrize("wrong, match", [
    (lambda d_in, hidden, d_out: sum(a * b for a, b in layer_sizes(d_in, hidden, d_out)), "weights only"),
    (lambda d_in, hidden, d_out: sum(a * b + b for a, b in layer_sizes(d_in, hidden, d_out)[:-1]), "last layer"),
    (lambda d_in, hidden, d_out: sum(a * b + a for a, b in layer_sizes(d_in, hidden, d_out)), r"per \*output\* unit"),
    (lambda d_in, hidden, d_out: sum(a * b + b for a, b in layer_sizes(d_in, hidden, d_out)[1:]), "first layer"),
], ids=["no_biases", "no_output_layer", "biases_per_input", "no_input_layer"])
def test_count_params_mlp_rejects(wrong, match):
    rejects("test_count_params_mlp", match, count_params_mlp=wrong)


def mlp_loop(d_in, hidden_sizes, d_out):
    total, previous = 0, d_in
    for size in [*hidden_sizes, d_out]:
        total += previous * size + size
        previous = size
    return total


@pytest.mark.parametrize("valid", [
    mlp_loop,
    lambda d_in, hidden, d_out: np.int64(sum((a + 1) * b for a, b in layer_sizes(d_in, hidden, d_out))),
], ids=["loop", "numpy_int"])
def test_count_params_mlp_accepts(valid):
    run_test_cell(NB, "test_count_params_mlp", count_params_mlp=valid)


# ---------------------------------------------------------------- count_params_conv

def kernel_area(kernel_size):
    return kernel_size ** 2 if isinstance(kernel_size, int) else math.prod(kernel_size)


@pytest.mark.parametrize("wrong, match", [
    (lambda c_in, c_out, k, bias=True: c_in * kernel_area(k) * c_out, "biases are missing"),
    (lambda c_in, c_out, k, bias=True: c_in * kernel_area(k) * c_out + c_out, "bias=False"),
    (lambda c_in, c_out, k, bias=True: kernel_area(k) * c_out + c_out * bias, r"all \d+ input channels"),
    (lambda c_in, c_out, k, bias=True: c_in * (k if isinstance(k, int) else math.prod(k)) * c_out + c_out * bias,
     r"means a \d×\d kernel"),
    (lambda c_in, c_out, k, bias=True: c_in * kernel_area(k) * c_out + c_in * bias, r"per \*output\* channel"),
], ids=["no_bias", "bias_flag_ignored", "no_input_channels", "kernel_not_squared", "bias_per_input"])
def test_count_params_conv_rejects(wrong, match):
    rejects("test_count_params_conv", match, count_params_conv=wrong)


@pytest.mark.parametrize("valid", [
    lambda c_in, c_out, k, bias=True: int(np.prod(np.broadcast_to(k, 2))) * c_in * c_out + (c_out if bias else 0),
    lambda c_in, c_out, k, bias=True: np.int64((c_in * kernel_area(k) + bias) * c_out),
], ids=["broadcast_kernel", "numpy_int"])
def test_count_params_conv_accepts(valid):
    run_test_cell(NB, "test_count_params_conv", count_params_conv=valid)


# ---------------------------------------------------------------- conv2d_backward (naive and fast)

def padded(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


def backward_loops(overwrite=False, crop="middle", batch_mean_dw=False, rotate_dw=False, db_mean=False,
                   db_per_image=False, dw_per_image=False, reads_only_dx_dw=False, float64=False):
    """A loop backward pass, correct with the defaults; each argument plants one mistake (or a valid variation)."""
    def conv2d_backward(dout, cache):
        x, w, stride, padding = cache
        if float64:
            x, w, dout = (np.asarray(a, dtype=np.float64) for a in (x, w, dout))
        F, _, KH, KW = w.shape
        N, _, H_out, W_out = dout.shape
        x_pad = padded(x, padding)
        dx_pad, dw = np.zeros(x_pad.shape), np.zeros((N, *w.shape))
        for n in range(N):
            for f in range(F):
                for i in range(H_out):
                    for j in range(W_out):
                        rows, cols = slice(i * stride, i * stride + KH), slice(j * stride, j * stride + KW)
                        dw[n, f] += dout[n, f, i, j] * x_pad[n, :, rows, cols]
                        if overwrite:
                            dx_pad[n, :, rows, cols] = dout[n, f, i, j] * w[f]
                        else:
                            dx_pad[n, :, rows, cols] += dout[n, f, i, j] * w[f]
        H, W = x.shape[2:]
        dx = {"middle": dx_pad[:, :, padding:padding + H, padding:padding + W], "none": dx_pad,
              "top_left": dx_pad[:, :, :H, :W]}[crop]
        if not dw_per_image:
            dw = dw.mean(axis=0) if batch_mean_dw else dw.sum(axis=0)
        if rotate_dw:
            dw = dw[:, :, ::-1, ::-1]
        db = dout.sum(axis=(2, 3)) if db_per_image else dout.mean(axis=(0, 2, 3)) if db_mean else dout.sum(axis=(0, 2, 3))
        return (dx, dw) if reads_only_dx_dw else (dx, dw, db)
    return conv2d_backward


def transposed_conv(rotate=True, spread_by_stride=True, float64=False):
    """The solution's vectorised recipe; each argument plants one mistake (or a valid variation)."""
    def conv2d_backward_fast(dout, cache):
        x, w, stride, padding = cache
        if float64:
            x, w, dout = (np.asarray(a, dtype=np.float64) for a in (x, w, dout))
        N, C, H, W = x.shape
        F, _, KH, KW = w.shape
        H_out, W_out = dout.shape[2:]
        windows = sliding_window_view(padded(x, padding), (KH, KW), axis=(2, 3))[:, :, ::stride, ::stride]
        dw = np.einsum("nchwuv,nfhw->fcuv", windows, dout)
        step = stride if spread_by_stride else 1
        spread = np.zeros((N, F, (H_out - 1) * step + 1, (W_out - 1) * step + 1))
        spread[:, :, ::step, ::step] = dout
        spread = np.pad(spread, ((0, 0), (0, 0), (KH - 1, KH - 1), (KW - 1, KW - 1)))
        kernels = w[:, :, ::-1, ::-1] if rotate else w
        reached = np.einsum("nfhwuv,fcuv->nchw", sliding_window_view(spread, (KH, KW), axis=(2, 3)), kernels)
        dx_pad = np.zeros((N, C, H + 2 * padding, W + 2 * padding))
        dx_pad[:, :, :reached.shape[2], :reached.shape[3]] = reached
        return dx_pad[:, :, padding:padding + H, padding:padding + W], dw, dout.sum(axis=(0, 2, 3))
    return conv2d_backward_fast


def backward_changes_dout(dout, cache):
    result = transposed_conv()(dout, cache)
    dout *= 2
    return result


CONV_BACKWARD_WRONG = [
    (backward_loops(overwrite=True), "overlap.*add them up instead of overwriting"),
    (backward_loops(crop="none"), "padded image's shape"),
    (backward_loops(crop="top_left"), "top left corner"),
    (backward_loops(batch_mean_dw=True), r"dw is 2 times too small: it is the \*sum\* over the batch"),
    (backward_loops(rotate_dw=True), "dw is rotated by 180°"),
    (backward_loops(db_mean=True), "db is the mean of dout"),
    (backward_loops(db_per_image=True), "one db per image"),
    (backward_loops(dw_per_image=True), "one dw per image"),
    (backward_loops(reads_only_dx_dw=True), r"should return a tuple \(dx, dw, db\)"),
    (transposed_conv(rotate=False), "kernels used as they are.*rotated by 180°"),
    (transposed_conv(spread_by_stride=False), "first case with stride 2"),
    (backward_changes_dout, "changed its input dout in place"),
]
CONV_BACKWARD_IDS = ["overwrite", "padding_kept", "cropped_top_left", "dw_batch_mean", "dw_rotated", "db_mean",
                     "db_per_image", "dw_per_image", "two_results", "kernel_not_rotated", "stride_not_spread",
                     "dout_changed"]


@pytest.mark.parametrize("name", ["conv2d_backward_naive", "conv2d_backward_fast"])
@pytest.mark.parametrize("wrong, match", CONV_BACKWARD_WRONG, ids=CONV_BACKWARD_IDS)
def test_conv2d_backward_rejects(name, wrong, match):
    rejects(f"test_{name}", match, **{name: wrong})


def test_conv2d_backward_fast_rejects_loops():
    rejects("test_conv2d_backward_fast", "not vectorised", conv2d_backward_fast=solution("conv2d_backward_naive"))


def scatter_windows(dout, cache):
    """dw by einsum over the windows, dx by scattering every window's gradient back with np.add.at (col2im)."""
    x, w, stride, padding = cache
    KH, KW = w.shape[2:]
    x_pad = padded(x, padding)
    windows = sliding_window_view(x_pad, (KH, KW), axis=(2, 3))[:, :, ::stride, ::stride]
    dw = np.einsum("nchwuv,nfhw->fcuv", windows, dout, optimize=True)
    per_window = np.einsum("nfhw,fcuv->nchwuv", dout, w, optimize=True)        # (N, C, H_out, W_out, KH, KW)
    H_out, W_out = dout.shape[2:]
    rows = (np.arange(H_out) * stride)[:, None, None, None] + np.arange(KH)[None, None, :, None]
    cols = (np.arange(W_out) * stride)[None, :, None, None] + np.arange(KW)[None, None, None, :]
    dx_pad = np.zeros(x_pad.shape, dtype=per_window.dtype)
    np.add.at(dx_pad, (slice(None), slice(None), rows, cols), per_window)
    H, W = x.shape[2:]
    return dx_pad[:, :, padding:padding + H, padding:padding + W], dw, dout.sum(axis=(0, 2, 3))


def kernel_offset_backward(dout, cache):
    """A loop over the KH·KW kernel offsets only, each a product over the whole batch."""
    x, w, stride, padding = cache
    F, C, KH, KW = w.shape
    H_out, W_out = dout.shape[2:]
    x_pad = padded(x, padding)
    dx_pad, dw = np.zeros(x_pad.shape, dtype=np.result_type(x, w, dout)), np.zeros(w.shape, dtype=np.result_type(x, dout))
    for u in range(KH):
        for v in range(KW):
            rows = slice(u, u + stride * (H_out - 1) + 1, stride)
            cols = slice(v, v + stride * (W_out - 1) + 1, stride)
            dw[:, :, u, v] = np.einsum("nfhw,nchw->fc", dout, x_pad[:, :, rows, cols])
            dx_pad[:, :, rows, cols] += np.einsum("nfhw,fc->nchw", dout, w[:, :, u, v])
    H, W = x.shape[2:]
    return dx_pad[:, :, padding:padding + H, padding:padding + W], dw, dout.sum(axis=(0, 2, 3))


@pytest.mark.parametrize("name", ["conv2d_backward_naive", "conv2d_backward_fast"])
@pytest.mark.parametrize("valid", [scatter_windows, kernel_offset_backward, transposed_conv(float64=True),
                                   lambda dout, cache: list(transposed_conv()(dout, cache))],
                         ids=["scatter_add_at", "kernel_offset_loops", "float64", "list"])
def test_conv2d_backward_accepts(name, valid):
    run_test_cell(NB, f"test_{name}", **{name: valid})


def test_conv2d_backward_naive_accepts_loops_in_float64():
    run_test_cell(NB, "test_conv2d_backward_naive", conv2d_backward_naive=backward_loops(float64=True))


# ---------------------------------------------------------------- max pooling

def pool_windows(x, k, stride):
    return sliding_window_view(x, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]


def max_pool_ceil(x, kernel_size=2, stride=None):
    stride = stride or kernel_size
    H, W = x.shape[2:]
    extra = [(-(-(n - kernel_size) // stride)) * stride + kernel_size - n for n in (H, W)]
    x = np.pad(x, ((0, 0), (0, 0), (0, extra[0]), (0, extra[1])), constant_values=-np.inf)
    return pool_windows(x, kernel_size, stride).max(axis=(4, 5))


@pytest.mark.parametrize("wrong, match", [
    (lambda x, kernel_size=2, stride=None: pool_windows(x, kernel_size, stride or kernel_size).mean(axis=(4, 5)),
     "average pooling"),
    (lambda x, kernel_size=2, stride=None: pool_windows(x, kernel_size, stride or kernel_size).min(axis=(4, 5)),
     "minimum"),
    (lambda x, kernel_size=2, stride=None: pool_windows(x, kernel_size, stride or 1).max(axis=(4, 5)),
     "default stride is kernel_size"),
    (max_pool_ceil, "round down"),
    (lambda x, kernel_size=2, stride=None: (pool_windows(x, kernel_size, stride or kernel_size).max(axis=(4, 5)),
                                            (x, kernel_size, stride)), "returned a tuple"),
    (lambda x, kernel_size=2, stride=None:
     np.moveaxis(pool_windows(x, kernel_size, stride or kernel_size).max(axis=(4, 5)), 1, -1), "channels-last"),
], ids=["average", "minimum", "stride_1_by_default", "ceil", "tuple", "channels_last"])
def test_max_pool2d_rejects(wrong, match):
    rejects("test_max_pool2d", match, max_pool2d=wrong)


def max_pool_contiguous_strides(x, kernel_size=2, stride=None):
    """Windows by as_strided with the strides of a C-contiguous array: wrong on a transposed view."""
    stride = stride or kernel_size
    N, C, H, W = x.shape
    H_out, W_out = (H - kernel_size) // stride + 1, (W - kernel_size) // stride + 1
    s = x.itemsize
    windows = as_strided(x, (N, C, H_out, W_out, kernel_size, kernel_size),
                         (C * H * W * s, H * W * s, stride * W * s, stride * s, W * s, s))
    return windows.max(axis=(4, 5))


def test_max_pool2d_rejects_views_read_as_contiguous():
    # the transposed view is made in the kernel: arrays reach it as contiguous copies
    rejects("test_max_pool2d", "a non-contiguous input", max_pool2d=max_pool_contiguous_strides)


def max_pool_loops(x, kernel_size=2, stride=None):
    stride = stride or kernel_size
    N, C, H, W = x.shape
    H_out, W_out = (H - kernel_size) // stride + 1, (W - kernel_size) // stride + 1
    out = np.empty((N, C, H_out, W_out), dtype=x.dtype)
    for i in range(H_out):
        for j in range(W_out):
            out[:, :, i, j] = x[:, :, i * stride:i * stride + kernel_size, j * stride:j * stride + kernel_size].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("valid", [max_pool_loops,
                                   lambda x, kernel_size=2, stride=None: np.asarray(max_pool_loops(x, kernel_size, stride),
                                                                                     dtype=np.float64)],
                         ids=["loops", "float64"])
def test_max_pool2d_accepts(valid):
    run_test_cell(NB, "test_max_pool2d", max_pool2d=valid)


def pool_backward(route="first", weight="dout", accumulate=True, swap_offsets=False):
    """A loop backward pass of max pooling, correct with the defaults; each argument plants one mistake."""
    def max_pool2d_backward(dout, cache):
        x, k, stride = cache
        N, C, H_out, W_out = dout.shape
        dx = np.zeros(x.shape)
        for i in range(H_out):
            for j in range(W_out):
                rows, cols = slice(i * stride, i * stride + k), slice(j * stride, j * stride + k)
                window = x[:, :, rows, cols]
                flat = window.reshape(N, C, -1)
                if route == "all":
                    share = (window == window.max(axis=(2, 3), keepdims=True)).astype(float)
                elif route == "even":
                    share = np.full(window.shape, 1 / (k * k))
                else:
                    first = (flat.argmin if route == "min" else flat.argmax)(axis=2)
                    u, v = np.divmod(first, k)
                    if swap_offsets:
                        u, v = v, u
                    share = np.zeros(window.shape)
                    n, c = np.indices((N, C))
                    share[n, c, u, v] = 1.0
                value = {"dout": dout[:, :, i, j][:, :, None, None], "ones": 1.0,
                         "x": dout[:, :, i, j][:, :, None, None] * window}[weight]
                if accumulate:
                    dx[:, :, rows, cols] += share * value
                else:
                    dx[:, :, rows, cols] = np.where(share > 0, share * value, dx[:, :, rows, cols])
        return dx
    return max_pool2d_backward


@pytest.mark.parametrize("wrong, match", [
    (pool_backward(route="all"), "several equal maxima.*first maximum"),
    (pool_backward(route="even"), "spreads dout evenly"),
    (pool_backward(weight="ones"), "ignores dout"),
    (pool_backward(weight="x"), "multiplies by x"),
    (pool_backward(route="min"), "minimum"),
    (pool_backward(accumulate=False), "windows overlap.*add, don't overwrite"),
    (pool_backward(swap_offsets=True), "gradient goes to its maximum only"),
    (lambda dout, cache: dout.copy(), "that is dout's shape"),
], ids=["all_ties", "even", "ignores_dout", "times_x", "argmin", "overwrite", "offsets_swapped", "returns_dout"])
def test_max_pool2d_backward_rejects(wrong, match):
    rejects("test_max_pool2d_backward", match, max_pool2d_backward=wrong)


def pool_backward_vectorised(dout, cache):
    """argmax over all windows at once, then np.add.at."""
    x, k, stride = cache
    N, C, H_out, W_out = dout.shape
    first = pool_windows(x, k, stride).reshape(N, C, H_out, W_out, k * k).argmax(axis=-1)
    u, v = np.divmod(first, k)
    n, c, i, j = np.indices((N, C, H_out, W_out))
    dx = np.zeros(x.shape, dtype=np.result_type(x, dout))
    np.add.at(dx, (n, c, i * stride + u, j * stride + v), dout)
    return dx


@pytest.mark.parametrize("valid", [pool_backward(), pool_backward_vectorised], ids=["loops", "add_at"])
def test_max_pool2d_backward_accepts(valid):
    run_test_cell(NB, "test_max_pool2d_backward", max_pool2d_backward=valid)


# ---------------------------------------------------------------- global_avg_pool_backward

def spread(dout, shape, scale):
    return np.broadcast_to(dout[:, :, None, None] * scale, shape).copy()


@pytest.mark.parametrize("wrong, match", [
    (lambda dout, x: spread(dout, x.shape, 1.0), r"H·W = \d+ times too large"),
    (lambda dout, x: spread(dout, x.shape, 1 / x.shape[2]), r"times too large: divide by H·W"),
    (lambda dout, x: dout[:, :, None, None] / (x.shape[2] * x.shape[3]), "broadcast to x's full shape"),
    (lambda dout, x: np.full(x.shape, 1 / (x.shape[2] * x.shape[3])), "ignores dout"),
    (lambda dout, x: spread(dout, x.shape, 1 / (x.shape[0] * x.shape[2] * x.shape[3])),
     "do not divide by the batch size"),
    (lambda dout, x: spread(dout, x.shape, 1 / (x.shape[2] * x.shape[3])) * x, "multiplies by x"),
    (lambda dout, x: dout.copy(), "that is dout's shape"),
    (lambda dout, x: np.moveaxis(spread(dout, x.shape, 1 / (x.shape[2] * x.shape[3])), 1, -1), "channels-last"),
    (lambda dout, x: spread(np.broadcast_to(dout.mean(axis=0), dout.shape), x.shape, 1 / (x.shape[2] * x.shape[3])),
     "Every image got the same gradient"),
    (lambda dout, x: spread(dout.T, x.shape, 1 / (x.shape[2] * x.shape[3])) if dout.shape[0] == dout.shape[1]
     else spread(dout, x.shape, 1 / (x.shape[2] * x.shape[3])), "dout's axes are swapped"),
    (lambda dout, x: np.broadcast_to(dout[:, :, None, None] / (x.shape[2] * x.shape[3]), x.shape), "read-only view"),
], ids=["no_division", "divided_by_h", "keepdims", "ignores_dout", "divided_by_n", "times_x", "returns_dout",
        "channels_last", "batch_mean", "dout_transposed", "read_only_view"])
def test_global_avg_pool_backward_rejects(wrong, match):
    rejects("test_global_avg_pool_backward", match, global_avg_pool_backward=wrong)


@pytest.mark.parametrize("valid", [
    lambda dout, x: np.repeat(np.repeat(dout[:, :, None, None], x.shape[2], 2), x.shape[3], 3) / (x.shape[2] * x.shape[3]),
    lambda dout, x: np.ones_like(x, dtype=np.float64) * dout[:, :, None, None] / x[0, 0].size,
    lambda dout, x: np.einsum("nc,hw->nchw", dout, np.full(x.shape[2:], 1 / (x.shape[2] * x.shape[3]))),
], ids=["repeat", "ones_like", "einsum"])
def test_global_avg_pool_backward_accepts(valid):
    run_test_cell(NB, "test_global_avg_pool_backward", global_avg_pool_backward=valid)


# ---------------------------------------------------------------- NumPy only

def conv_torch(x, w, b=None, stride=1, padding=0):
    import torch
    import torch.nn.functional as F
    def as_tensor(a):
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
    return F.conv2d(as_tensor(x), as_tensor(w), as_tensor(b), stride=stride, padding=padding).numpy()


def conv_scipy(x, w, b=None, stride=1, padding=0):
    from scipy.signal import correlate
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    out = np.stack([np.stack([correlate(image, kernel, mode="valid")[0] for kernel in w]) for image in x_pad])
    out = out[:, :, ::stride, ::stride]
    return out if b is None else out + b[None, :, None, None]


def _windows_by_torch(x_pad, kh, kw, stride):  # a student's own helper that calls torch
    import torch
    return torch.from_numpy(x_pad).unfold(2, kh, stride).unfold(3, kw, stride).numpy()


def conv_torch_helper(x, w, b=None, stride=1, padding=0):
    x_pad = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = _windows_by_torch(x_pad, w.shape[2], w.shape[3], stride)
    out = np.einsum("nchwuv,fcuv->nfhw", windows, w)
    return out if b is None else out + b[None, :, None, None]


def conv_course_lib(x, w, b=None, stride=1, padding=0):
    from course_lib.checks import conv  # course_lib's own torch helpers are installed with it
    import torch.nn.functional as F
    tensors = conv._tensor(x), conv._tensor(w), conv._tensor(b)
    return F.conv2d(*tensors, stride=stride, padding=padding).numpy()


@pytest.mark.parametrize("wrong, called", [
    (conv_torch, "torch.from_numpy"),  # in its nested helper
    (conv_scipy, "scipy.signal.correlate"),
    (conv_torch_helper, r"torch.from_numpy \(in _windows_by_torch\)"),
    (conv_course_lib, "course_lib.checks.conv._tensor"),
], ids=["torch", "scipy_signal", "student_helper_torch", "course_lib_helper"])
@pytest.mark.parametrize("name", ["conv2d_naive", "conv2d_fast"])
def test_conv_rejects_other_libraries(name, wrong, called):
    rejects(f"test_{name}", rf"{name} called {called} — this exercise is NumPy only", **{name: wrong})


def test_course_lib_helpers_are_rejected():
    from course_lib.checks.gradient_check import rel_error

    def conv_output_size(n, kernel_size, padding=0, stride=1):
        return int(rel_error(0.0, 0.0)) + (n - kernel_size + 2 * padding) // stride + 1

    rejects("test_conv_output_size", "conv_output_size called course_lib.checks.gradient_check.rel_error — this "
            "exercise is NumPy only", conv_output_size=conv_output_size)


def conv_output_size_torch(n, kernel_size, padding=0, stride=1):
    import torch
    return torch.nn.functional.conv1d(torch.zeros(1, 1, n), torch.zeros(1, 1, kernel_size), stride=stride,
                                      padding=padding).shape[-1]


def linear_torch(x, weight, bias):
    import torch.nn.functional as F
    return F.linear(*(np.asarray(a) for a in (x, weight, bias)))  # torch refuses NumPy arrays: it must fail here


def global_avg_pool_scipy(x):
    import scipy.ndimage
    return np.array([[scipy.ndimage.mean(channel) for channel in image] for image in x])


def count_params_mlp_torch(d_in, hidden_sizes, d_out):
    from torch import nn
    layers = [nn.Linear(a, b, device="meta") for a, b in layer_sizes(d_in, hidden_sizes, d_out)]
    return sum(p.numel() for layer in layers for p in layer.parameters())


def count_params_conv_torch(in_channels, out_channels, kernel_size, bias=True):
    import torch
    layer = torch.nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias, device="meta")
    return sum(p.numel() for p in layer.parameters())


def conv2d_backward_torch(dout, cache):
    import torch
    x, w, stride, padding = cache
    dout_t = torch.from_numpy(np.asarray(dout, dtype=np.float64))
    dx = torch.nn.grad.conv2d_input(x.shape, torch.from_numpy(np.asarray(w, dtype=np.float64)), dout_t, stride, padding)
    dw = torch.nn.grad.conv2d_weight(torch.from_numpy(np.asarray(x, dtype=np.float64)), w.shape, dout_t, stride, padding)
    return dx.numpy(), dw.numpy(), dout.sum(axis=(0, 2, 3))


def max_pool2d_torch(x, kernel_size=2, stride=None):
    import torch
    return torch.nn.functional.max_pool2d(torch.from_numpy(x), kernel_size, stride).numpy()


def max_pool2d_backward_torch(dout, cache):
    import torch
    x, kernel_size, stride = cache
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.max_pool2d(xt, kernel_size, stride).backward(torch.from_numpy(dout))
    return xt.grad.numpy()


def global_avg_pool_backward_scipy(dout, x):
    import scipy.ndimage
    return scipy.ndimage.zoom(dout[:, :, None, None], (1, 1, *x.shape[2:]), order=0) / (x.shape[2] * x.shape[3])


@pytest.mark.parametrize("name, wrong, called", [
    ("conv2d_backward_naive", conv2d_backward_torch, "torch.from_numpy"),
    ("conv2d_backward_fast", conv2d_backward_torch, "torch.from_numpy"),
    ("max_pool2d", max_pool2d_torch, "torch.nn.functional.max_pool2d"),
    ("max_pool2d_backward", max_pool2d_backward_torch, "torch.tensor"),
    ("global_avg_pool_backward", global_avg_pool_backward_scipy, "scipy.ndimage.zoom"),
    ("conv_output_size", conv_output_size_torch, "torch.nn.functional.conv1d"),
    ("linear", linear_torch, "torch.nn.functional.linear"),
    ("global_avg_pool", global_avg_pool_scipy, "scipy.ndimage.mean"),
    ("count_params_mlp", count_params_mlp_torch, "torch.nn.Linear"),
    ("count_params_conv", count_params_conv_torch, "torch.nn.Conv2d"),
], ids=["conv2d_backward_naive", "conv2d_backward_fast", "max_pool2d", "max_pool2d_backward",
        "global_avg_pool_backward", "conv_output_size", "linear", "global_avg_pool", "count_params_mlp",
        "count_params_conv"])
def test_every_exercise_of_the_notebook_is_numpy_only(name, wrong, called):
    rejects(f"test_{name}", rf"{name} called {called} — this exercise is NumPy only", **{name: wrong})


# ---------------------------------------------------------------- timed in the kernel

@pytest.mark.parametrize("name", ["conv2d_fast", "conv2d_backward_fast"])
def test_speed_is_timed_in_the_kernel(name, monkeypatch):
    """A slow trip to the kernel (1.2 s for the CIFAR-sized batch, over either time limit) does not count."""
    def slow_loopback(namespace):
        answer = loopback(namespace)

        def channel(message):
            if len(message) > 300_000:  # only the CIFAR-sized batch is this large
                time.sleep(1.2)
            return answer(message)
        return channel

    monkeypatch.setattr(notebook_cells, "loopback", slow_loopback)
    run_test_cell(NB, f"test_{name}", **{name: solution(name)})
