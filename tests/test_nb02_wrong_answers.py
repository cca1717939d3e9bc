"""Notebook 02 (convolution): the test cells reject plausible wrong answers with a short message that
names the mistake (its id in course_lib.checks.conv's tables), and accept valid alternatives (loops or
vectorised, float32 or float64)."""
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


def rejects(grade_id: str, match: str, mistake: str | None = None, **functions) -> str:
    """The message of test cell ``grade_id`` rejecting ``functions`` (see notebook_cells.rejected)."""
    return notebook_cells.rejected(NB, grade_id, match, mistake, **functions)


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
    rejects(f"test_{name}", "not implemented yet", "not_implemented", **{name: stub})


@pytest.mark.parametrize("name", FUNCTIONS)
def test_solution_passes(name):
    run_test_cell(NB, f"test_{name}", **{name: solution(name)})


# ---------------------------------------------------------------- conv_output_size

@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda n, kernel_size, padding=0, stride=1: (n - kernel_size + 2 * padding) // stride,
     "counts one window position too few", "no_plus_one"),
    (lambda n, kernel_size, padding=0, stride=1: (n - kernel_size + padding) // stride + 1,
     "adds the padding once: P pixels go on both sides", "padding_once"),
    (lambda n, kernel_size, padding=0, stride=1: n - kernel_size + 2 * padding + 1, "ignores the stride",
     "stride_ignored"),
    (lambda n, kernel_size, padding=0, stride=1: (n - kernel_size + 2 * padding) / stride + 1,
     r"returned a float: the size is a whole number of window positions", "true_division"),
    (lambda n, kernel_size, padding=0, stride=1: math.ceil((n - kernel_size + 2 * padding) / stride) + 1,
     "rounds up.*round down", "rounded_up"),
    (lambda n, kernel_size, padding=0, stride=1: (n + kernel_size + 2 * padding) // stride + 1,
     "adds the kernel size", "kernel_added"),
], ids=["no_plus_one", "padding_once", "stride_ignored", "true_division", "ceil", "kernel_added"])
def test_conv_output_size_rejects(wrong, match, mistake):
    rejects("test_conv_output_size", match, f"conv.conv_output_size.{mistake}", conv_output_size=wrong)


def test_conv_output_size_says_where_an_unknown_mistake_differs():
    def conv_output_size(n, kernel_size, padding=0, stride=1):
        return (n - kernel_size + 2 * padding) // stride + 1 + (stride == 4)

    rejects("test_conv_output_size",
            r"^conv_output_size\(227, 11, padding=0, stride=4\) returned 56; the worked example gives 55\.$",
            "unidentified", conv_output_size=conv_output_size)


@pytest.mark.parametrize("valid", [
    lambda n, kernel_size, padding=0, stride=1: len(range(0, n + 2 * padding - kernel_size + 1, stride)),
    lambda n, kernel_size, padding=0, stride=1: int(np.floor((n - kernel_size + 2 * padding) / stride)) + 1,
], ids=["count_positions", "floor"])
def test_conv_output_size_accepts(valid):
    run_test_cell(NB, "test_conv_output_size", conv_output_size=valid)


# ---------------------------------------------------------------- conv2d_naive (loops)

PADS = {"both": lambda p: (p, p), "top_left_2p": lambda p: (2 * p, 0), "bottom_right_2p": lambda p: (0, 2 * p),
        "bottom_right_p": lambda p: (0, p), "none": lambda p: (0, 0)}


def naive_variant(flip=False, pad="both", stride_in_windows=True, stride_in_size=True, bias="once",
                  accumulate=None, channels_last=False):
    """A loop convolution, correct with the defaults; each argument plants one mistake."""
    def conv2d_naive(x, w, b=None, stride=1, padding=0):
        N, C, H, W = x.shape
        F, _, KH, KW = w.shape
        pads = PADS[pad](padding)
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
                            if b is not None and bias == "per_weight":
                                out[n, f, i, j] += np.sum(window * kernels[f, c] + b[f])
                            else:
                                out[n, f, i, j] += np.sum(window * kernels[f, c])
                            if b is not None and bias == "per_channel":
                                out[n, f, i, j] += b[f]
                if b is not None and bias == "once":
                    out[n, f] += b[f]
        return out.transpose(0, 2, 3, 1) if channels_last else out
    return conv2d_naive


@pytest.mark.parametrize("options, match, mistake", [
    ({"flip": True}, "flips the kernel: that is the textbook convolution", "flipped_kernel"),
    ({"pad": "top_left_2p"}, r"pads the image on one side only \(2P zeros at the top and left\)",
     "padded_top_left_only"),
    ({"pad": "bottom_right_2p"}, r"pads the image on one side only \(2P zeros at the bottom and right\)",
     "padded_bottom_right_only"),
    ({"pad": "bottom_right_p"}, "has the shape of an image padded on one side only", "padded_one_side"),
    ({"pad": "none"}, r"padding=1\) has the shape of the unpadded image", "padding_ignored"),
    ({"stride_in_windows": False}, r"stride=2, padding=0\) places the windows 1 pixel apart",
     "windows_one_pixel_apart"),
    ({"stride_in_size": False, "stride_in_windows": False}, r"stride=2, padding=0\) has the shape of stride 1",
     "stride_ignored"),
    ({"bias": "none"}, "leaves out the bias", "bias_missing"),
    ({"bias": "per_channel"}, "adds the bias once per input channel, C times per output pixel",
     "bias_added_repeatedly"),
    ({"bias": "per_weight"}, "adds the bias once per weight, C·KH·KW times per output pixel",
     "bias_added_repeatedly"),
    ({"channels_last": True}, "is channels-last", "channels_last"),
], ids=["flipped", "one_side_2p", "other_side_2p", "one_side_p", "no_padding", "stride_windows", "stride_ignored",
        "no_bias", "bias_per_channel", "bias_per_weight", "channels_last"])
def test_conv2d_naive_rejects(options, match, mistake):
    rejects("test_conv2d_naive", match, f"conv.conv2d.{mistake}", conv2d_naive=naive_variant(**options))


def test_conv2d_naive_rejects_swapped_kernel_axes():
    def conv2d_naive(x, w, b=None, stride=1, padding=0):  # takes KH for the width and KW for the height
        return naive_variant()(x, w.transpose(0, 1, 3, 2), b, stride, padding)

    rejects("test_conv2d_naive", "mixes up KH and KW", "conv.conv2d.kernel_height_and_width_swapped",
            conv2d_naive=conv2d_naive)


def test_conv2d_naive_rejects_changing_x():
    def conv2d_naive(x, w, b=None, stride=1, padding=0):
        out = naive_variant()(x, w, b, stride, padding)
        x[...] = 0  # reuses x as scratch space once done with it
        return out

    rejects("test_conv2d_naive", "^conv2d_naive changed its argument x in place", "changed_argument",
            conv2d_naive=conv2d_naive)


def test_conv2d_naive_says_where_an_unknown_mistake_differs():
    def conv2d_naive(x, w, b=None, stride=1, padding=0):
        out = naive_variant()(x, w, b, stride, padding)
        out[:, :, 1, 2] += 1.0
        return out

    rejects("test_conv2d_naive", r"^conv2d_naive \(x \(1, 1, 4, 5\), w \(1, 1, 2, 3\), no bias, stride=1, padding=0\) "
            r"at \[0, 0, 1, 2\] is -?[\d.e+-]+; torch's is -?[\d.e+-]+\.$", "unidentified", conv2d_naive=conv2d_naive)


@pytest.mark.parametrize("valid", [naive_variant(), naive_variant(accumulate=np.float64)],
                         ids=["loops_over_channels_too", "float64_accumulator"])
def test_conv2d_naive_accepts_loops(valid):
    run_test_cell(NB, "test_conv2d_naive", conv2d_naive=valid)


def test_conv2d_naive_accepts_vectorised():
    run_test_cell(NB, "test_conv2d_naive", conv2d_naive=im2col_conv)


# ---------------------------------------------------------------- conv2d_fast (vectorised)

def windows_of(x, w, stride, padding, pads=None, mode="constant"):
    pads = pads or (padding, padding)
    x_pad = np.pad(x, ((0, 0), (0, 0), pads, pads), mode=mode)
    return sliding_window_view(x_pad, w.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]


def with_bias(out, b):
    return out if b is None else out + b[None, :, None, None]


def fast_flipped(x, w, b=None, stride=1, padding=0):
    return with_bias(np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding), w[:, :, ::-1, ::-1]), b)


def fast_no_stride(x, w, b=None, stride=1, padding=0):
    return with_bias(np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, 1, padding), w), b)


def fast_one_side(x, w, b=None, stride=1, padding=0):
    return with_bias(np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding, pads=(2 * padding, 0)), w), b)


def fast_no_bias(x, w, b=None, stride=1, padding=0):
    return np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding), w)


def fast_bias_last_axis(x, w, b=None, stride=1, padding=0):
    out = np.einsum("nchwuv,fcuv->nhwf", windows_of(x, w, stride, padding), w)
    return out if b is None else out + b


def fast_edge_padding(x, w, b=None, stride=1, padding=0):
    return with_bias(np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding, mode="edge"), w), b)


def fast_reflect_padding(x, w, b=None, stride=1, padding=0):
    return with_bias(np.einsum("nchwuv,fcuv->nfhw", windows_of(x, w, stride, padding, mode="reflect"), w), b)


def fast_one_position_short(x, w, b=None, stride=1, padding=0):
    return im2col_conv(x, w, b, stride, padding)[:, :, :-1, :-1]  # H_out = (H - KH + 2P) // S, without the + 1


def fast_filters_first(x, w, b=None, stride=1, padding=0):
    return im2col_conv(x, w, b, stride, padding).transpose(1, 0, 2, 3)


def fast_maps_per_input_channel(x, w, b=None, stride=1, padding=0):
    return np.einsum("nchwuv,fcuv->nchw", windows_of(x, w, stride, padding), w)  # sums over the filters


def fast_bias_per_offset(x, w, b=None, stride=1, padding=0):
    per_offset = np.einsum("nchwuv,fcuv->nfhwuv", windows_of(x, w, stride, padding), w)
    return (per_offset if b is None else per_offset + b[None, :, None, None, None, None]).sum(axis=(4, 5))


def fast_last_column_unfilled(x, w, b=None, stride=1, padding=0):
    """Fills all output columns but the last: np.empty's leftovers stay there (NaN here, to be sure)."""
    full = im2col_conv(x, w, b, stride, padding)
    out = np.full(full.shape, np.nan)
    out[..., :-1] = full[..., :-1]
    return out


@pytest.mark.parametrize("wrong, match, mistake", [
    (fast_flipped, "flips the kernel", "conv.conv2d.flipped_kernel"),
    (fast_no_stride, "has the shape of stride 1", "conv.conv2d.stride_ignored"),
    (fast_one_side, "pads the image on one side only", "conv.conv2d.padded_top_left_only"),
    (fast_no_bias, "leaves out the bias", "conv.conv2d.bias_missing"),
    (fast_bias_last_axis, "is channels-last", "conv.conv2d.channels_last"),
    (fast_edge_padding, "pads by repeating the edge pixels", "conv.conv2d.edge_padding"),
    (fast_reflect_padding, "pads by reflection", "conv.conv2d.reflect_padding"),
    (fast_one_position_short, "has one window position too few on each axis", "conv.conv2d.one_position_missing"),
    (fast_filters_first, r"has its axes as \(F, N, ...\)", "conv.conv2d.filters_first"),
    (fast_maps_per_input_channel, "has one map per input channel", "conv.conv2d.maps_per_input_channel"),
    (fast_bias_per_offset, "adds the bias once per kernel offset, KH·KW times", "conv.conv2d.bias_added_repeatedly"),
    (fast_last_column_unfilled, r"holds NaN or inf: is the output array initialised \(np.zeros, not np.empty\)",
     "conv.conv2d.not_finite"),
    (None, "not vectorised", "conv.conv2d_fast.not_vectorised"),  # the solution's conv2d_naive: loops
], ids=["flipped", "stride_ignored", "one_side", "no_bias", "channels_last", "edge_padding", "reflect_padding",
        "one_position_short", "filters_first", "maps_per_input_channel", "bias_per_offset", "last_column_unfilled",
        "loops"])
def test_conv2d_fast_rejects(wrong, match, mistake):
    wrong = wrong or solution("conv2d_naive")
    rejects("test_conv2d_fast", match, mistake, conv2d_fast=wrong)


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

@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda x, weight, bias: x @ weight + bias, r"uses weight as if it were \(in_features, out_features\)",
     "weight_not_transposed"),
    (lambda x, weight, bias: x @ weight.T, "leaves out the bias", "bias_missing"),
    (lambda x, weight, bias: weight @ x.T + bias[:, None], "one row per example", "examples_last"),
    (lambda x, weight, bias: x @ weight, r"as if it were \(in_features, out_features\) and leaves out the bias",
     "weight_not_transposed_and_bias_missing"),
], ids=["untransposed", "no_bias", "outputs_first", "untransposed_no_bias"])
def test_linear_rejects(wrong, match, mistake):
    rejects("test_linear", match, f"conv.linear.{mistake}", linear=wrong)


def test_linear_crash_names_the_layout():
    rejects("test_linear", r"^linear\(x \(3, 4\), weight \(4, 4\), bias \(4,\)\) raised ValueError: .* torch.nn.Linear "
            r"stores weight as \(out_features, in_features\)", "crashed",
            linear=lambda x, weight, bias: np.dot(weight, x) + bias)


@pytest.mark.parametrize("valid", [
    lambda x, weight, bias: np.einsum("ni,oi->no", x, weight) + bias,
    lambda x, weight, bias: (weight @ x.T).T + bias,
    lambda x, weight, bias: np.asarray(x, np.float64) @ np.asarray(weight, np.float64).T + bias,
], ids=["einsum", "transpose_after", "float64"])
def test_linear_accepts(valid):
    run_test_cell(NB, "test_linear", linear=valid)


# ---------------------------------------------------------------- global_avg_pool

@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda x: x.sum(axis=(2, 3)), "is H·W times the average, a sum", "sum"),
    (lambda x: x.mean(axis=(2, 3), keepdims=True), "no keepdims", "keepdims"),
    (lambda x: x.max(axis=(2, 3)), r"takes each map's maximum \(global max pooling\)", "max"),
    (lambda x: x.reshape(len(x), -1).mean(axis=1), "averages the channels too", "channels_averaged"),
], ids=["sum", "keepdims", "max", "all_axes"])
def test_global_avg_pool_rejects(wrong, match, mistake):
    rejects("test_global_avg_pool", match, f"conv.global_avg_pool.{mistake}", global_avg_pool=wrong)


@pytest.mark.parametrize("axes", [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3)])
def test_global_avg_pool_rejects_wrong_axes(axes):
    rejects("test_global_avg_pool", rf"averages over axes \({axes[0]}, {axes[1]}\): each value should be the average "
            "of one feature map",
            "conv.global_avg_pool.wrong_axes", global_avg_pool=lambda x: x.mean(axis=axes))


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


def mlp_loop(d_in, hidden_sizes, d_out):
    total, previous = 0, d_in
    for size in [*hidden_sizes, d_out]:
        total += previous * size + size
        previous = size
    return total


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda d_in, hidden, d_out: sum(a * b for a, b in layer_sizes(d_in, hidden, d_out)), "counts the weights only",
     "weights_only"),
    (lambda d_in, hidden, d_out: sum(a * b + b for a, b in layer_sizes(d_in, hidden, d_out)[:-1]),
     "leaves out the last layer", "no_output_layer"),
    (lambda d_in, hidden, d_out: sum(a * b + a for a, b in layer_sizes(d_in, hidden, d_out)),
     "counts one bias per input unit: a layer has one bias per output unit", "biases_per_input"),
    (lambda d_in, hidden, d_out: sum(a * b + b for a, b in layer_sizes(d_in, hidden, d_out)[1:]),
     "leaves out the first layer", "no_input_layer"),
    (lambda d_in, hidden, d_out: mlp_loop(d_in, hidden, d_out) - d_out, "leaves out the output layer's biases",
     "no_output_biases"),
    (lambda d_in, hidden, d_out: mlp_loop(d_in, hidden, d_out) - sum(a * b for a, b in zip(hidden, hidden[1:])),
     "leaves out the weights between consecutive hidden layers", "no_hidden_to_hidden_weights"),
    (lambda d_in, hidden, d_out: mlp_loop(d_in, hidden or [d_in], d_out),  # no hidden layer taken as one of D_in
     r"^count_params_mlp\(10, \[\], 3\) goes wrong without hidden layers", "no_hidden_layers"),
    (lambda d_in, hidden, d_out: float(mlp_loop(d_in, hidden, d_out)), "returned a float", "true_division"),
], ids=["no_biases", "no_output_layer", "biases_per_input", "no_input_layer", "no_output_biases",
        "no_hidden_to_hidden_weights", "no_hidden_layers", "float"])
def test_count_params_mlp_rejects(wrong, match, mistake):
    rejects("test_count_params_mlp", match, f"conv.count_params_mlp.{mistake}", count_params_mlp=wrong)


def test_count_params_mlp_writes_large_counts_in_full():
    rejects("test_count_params_mlp", r"^count_params_mlp\(3072, \[512\], 10\) returned 1,578,507; the matching torch "
            r"Linear layers have 1,578,506\.$", "unidentified",
            count_params_mlp=lambda d_in, hidden, d_out: mlp_loop(d_in, hidden, d_out) + (d_in == 3072))


@pytest.mark.parametrize("valid", [
    mlp_loop,
    lambda d_in, hidden, d_out: np.int64(sum((a + 1) * b for a, b in layer_sizes(d_in, hidden, d_out))),
], ids=["loop", "numpy_int"])
def test_count_params_mlp_accepts(valid):
    run_test_cell(NB, "test_count_params_mlp", count_params_mlp=valid)


# ---------------------------------------------------------------- count_params_conv

def kernel_area(kernel_size):
    return kernel_size ** 2 if isinstance(kernel_size, int) else math.prod(kernel_size)


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda c_in, c_out, k, bias=True: c_in * kernel_area(k) * c_out, "leaves out the biases", "biases_missing"),
    (lambda c_in, c_out, k, bias=True: c_in * kernel_area(k) * c_out + c_out,
     r"^count_params_conv\(64, 128, 3, bias=False\) counts biases although bias=False", "bias_flag_ignored"),
    (lambda c_in, c_out, k, bias=True: kernel_area(k) * c_out + c_out * bias, "leaves out the input channels",
     "input_channels_missing"),
    (lambda c_in, c_out, k, bias=True: c_in * (k if isinstance(k, int) else math.prod(k)) * c_out + c_out * bias,
     "counts one row of each kernel: a kernel_size k means a k×k kernel", "one_kernel_row"),
    (lambda c_in, c_out, k, bias=True: c_in * kernel_area(k) * c_out + c_in * bias,
     r"counts one bias per input channel: a conv layer has one per output channel \(filter\)", "biases_per_input"),
    (lambda c_in, c_out, k, bias=True: (c_in + bias) * kernel_area(k) * c_out, "counts one bias per kernel position",
     "biases_per_weight"),
    (lambda c_in, c_out, k, bias=True: c_out * (c_in * kernel_area(k) + bias) / 1, "returned a float",
     "true_division"),
], ids=["no_bias", "bias_flag_ignored", "no_input_channels", "kernel_not_squared", "bias_per_input",
        "bias_per_position", "float"])
def test_count_params_conv_rejects(wrong, match, mistake):
    rejects("test_count_params_conv", match, f"conv.count_params_conv.{mistake}", count_params_conv=wrong)


@pytest.mark.parametrize("valid", [
    lambda c_in, c_out, k, bias=True: int(np.prod(np.broadcast_to(k, 2))) * c_in * c_out + (c_out if bias else 0),
    lambda c_in, c_out, k, bias=True: np.int64((c_in * kernel_area(k) + bias) * c_out),
], ids=["broadcast_kernel", "numpy_int"])
def test_count_params_conv_accepts(valid):
    run_test_cell(NB, "test_count_params_conv", count_params_conv=valid)


# ---------------------------------------------------------------- conv2d_backward (naive and fast)

def padded(x, padding):
    return np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))


DB = {"sum": lambda dout: dout.sum(axis=(0, 2, 3)), "mean": lambda dout: dout.mean(axis=(0, 2, 3)),
      "per_image": lambda dout: dout.sum(axis=(2, 3)), "batch_mean": lambda dout: dout.sum(axis=(2, 3)).mean(axis=0),
      "per_position": lambda dout: dout.sum(axis=0), "dout": lambda dout: dout.copy(), "total": lambda dout: dout.sum()}


def backward_loops(overwrite=False, crop="middle", dw_over_images="sum", dw_over_positions="sum", rotate_dw=False,
                   db="sum", reads_only_dx_dw=False, nan_start=False, float64=False):
    """A loop backward pass, correct with the defaults; each argument plants one mistake (or a valid variation)."""
    def conv2d_backward(dout, cache):
        x, w, stride, padding = cache
        if float64:
            x, w, dout = (np.asarray(a, dtype=np.float64) for a in (x, w, dout))
        F, _, KH, KW = w.shape
        N, _, H_out, W_out = dout.shape
        x_pad = padded(x, padding)
        dx_pad, dw = np.full(x_pad.shape, np.nan) if nan_start else np.zeros(x_pad.shape), np.zeros((N, *w.shape))
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
              "top_left": dx_pad[:, :, :H, :W], "bottom_right": dx_pad[:, :, 2 * padding:, 2 * padding:]}[crop]
        dw = {"sum": dw.sum(axis=0), "mean": dw.mean(axis=0), "none": dw}[dw_over_images]
        if dw_over_positions == "mean":
            dw = dw / (H_out * W_out)
        if rotate_dw:
            dw = dw[:, :, ::-1, ::-1]
        return (dx, dw) if reads_only_dx_dw else (dx, dw, DB[db](dout))
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


def backward_rotates_w_in_place(dout, cache):
    x, w, stride, padding = cache
    w[...] = w[:, :, ::-1, ::-1].copy()  # the rotated kernel of section 7, written over w
    return transposed_conv(rotate=False)(dout, cache)


def backward_dw_axes_swapped(dout, cache):
    dx, dw, db = transposed_conv()(dout, cache)
    return dx, dw.transpose(1, 0, 2, 3), db


CONV_BACKWARD_WRONG = [
    (backward_loops(overwrite=True), "goes wrong where windows first overlap.*add them up instead of overwriting",
     "conv.conv2d_backward.overlapping_windows"),
    (backward_loops(crop="none"), "dx .* has the padded image's shape", "conv.conv2d_backward.dx_padded"),
    (backward_loops(crop="top_left"), "dx .* was cut from the top left corner", "conv.conv2d_backward.dx_cut_top_left"),
    (backward_loops(dw_over_images="mean"), r"dw \(x \(2, 3, 5, 6\), .*\) is the mean over the images",
     "conv.conv2d_backward.dw_batch_mean"),
    (backward_loops(rotate_dw=True), r"dw \(.*\) is rotated by 180°", "conv.conv2d_backward.dw_rotated"),
    (backward_loops(db="mean"), r"db \(.*\) is the mean of dout", "conv.conv2d_backward.db_mean"),
    (backward_loops(db="per_image"), r"db \(.*\) has one db per image", "conv.conv2d_backward.db_per_image"),
    (backward_loops(dw_over_images="none"), r"dw \(.*\) has one dw per image", "conv.conv2d_backward.dw_per_image"),
    (backward_loops(reads_only_dx_dw=True), r"should return a tuple \(dx, dw, db\)", "wrong_type"),
    (transposed_conv(rotate=False), "is what the kernels used as they are give.*rotated by 180°",
     "conv.conv2d_backward.kernel_not_rotated"),
    (transposed_conv(spread_by_stride=False), r"stride=2, padding=0\) goes wrong at the first stride above 1",
     "conv.conv2d_backward.stride"),
    (backward_changes_dout, "changed its argument dout in place", "changed_argument"),
]
CONV_BACKWARD_IDS = ["overwrite", "padding_kept", "cropped_top_left", "dw_batch_mean", "dw_rotated", "db_mean",
                     "db_per_image", "dw_per_image", "two_results", "kernel_not_rotated", "stride_not_spread",
                     "dout_changed"]


@pytest.mark.parametrize("name", ["conv2d_backward_naive", "conv2d_backward_fast"])
@pytest.mark.parametrize("wrong, match, mistake", CONV_BACKWARD_WRONG, ids=CONV_BACKWARD_IDS)
def test_conv2d_backward_rejects(name, wrong, match, mistake):
    rejects(f"test_{name}", match, mistake, **{name: wrong})


@pytest.mark.parametrize("wrong, match, mistake", [
    (backward_loops(crop="bottom_right"), "dx .* was cut from the bottom right corner", "dx_cut_bottom_right"),
    (backward_loops(dw_over_positions="mean"), r"dw \(x \(1, 1, 4, 5\), .*\) is the mean over the output positions",
     "dw_position_mean"),
    (backward_dw_axes_swapped, r"dw \(.*\) has its first two axes swapped", "dw_axes_swapped"),
    (backward_loops(db="batch_mean"), r"db \(x \(2, 3, 5, 6\), .*\) is the mean over the images", "db_batch_mean"),
    (backward_loops(db="per_position"), r"db \(.*\) has one db per output position", "db_per_position"),
    (backward_loops(db="dout"), r"db \(.*\) has dout's shape", "db_is_dout"),
    (backward_loops(db="total"), r"db \(.*\) is one number for all filters", "db_one_number"),
    (backward_loops(nan_start=True), r"dx \(.*\) holds NaN or inf", "not_finite"),
], ids=["cropped_bottom_right", "dw_position_mean", "dw_axes_swapped", "db_batch_mean", "db_per_position",
        "db_is_dout", "db_one_number", "nan_start"])
def test_conv2d_backward_naive_rejects(wrong, match, mistake):
    rejects("test_conv2d_backward_naive", match, f"conv.conv2d_backward.{mistake}", conv2d_backward_naive=wrong)


def test_conv2d_backward_rejects_changing_the_cache():
    # called as in the student's notebook: under the grader an array changed inside the cache (a tuple) does
    # not travel back from the kernel (course_grading.verdict.write_back updates arrays, lists and dicts only)
    from course_lib.checks import conv
    from course_lib.checks.toolkit import CheckFailed

    with pytest.raises(CheckFailed, match="^conv2d_backward_naive changed its argument cache in place") as failure:
        conv.check_conv2d_backward_naive(backward_rotates_w_in_place)
    assert failure.value.mistake == "changed_argument"
    notebook_cells.readable(str(failure.value))


def test_conv2d_backward_fast_rejects_loops():
    rejects("test_conv2d_backward_fast", "not vectorised", "conv.conv2d_backward_fast.not_vectorised",
            conv2d_backward_fast=solution("conv2d_backward_naive"))


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


def max_pool_rows_for_columns(x, kernel_size=2, stride=None):
    """Loops whose output (i, j) reads the window at row j·S, column i·S."""
    stride = stride or kernel_size
    H_out, W_out = (x.shape[2] - kernel_size) // stride + 1, (x.shape[3] - kernel_size) // stride + 1
    out = np.zeros((*x.shape[:2], H_out, W_out))
    for i in range(H_out):
        for j in range(W_out):
            rows, cols = slice(j * stride, j * stride + kernel_size), slice(i * stride, i * stride + kernel_size)
            out[:, :, i, j] = x[:, :, rows, cols].max(axis=(2, 3))
    return out


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda x, kernel_size=2, stride=None: pool_windows(x, kernel_size, stride or kernel_size).mean(axis=(4, 5)),
     "is average pooling", "average"),
    (lambda x, kernel_size=2, stride=None: pool_windows(x, kernel_size, stride or kernel_size).min(axis=(4, 5)),
     "takes each window's minimum", "minimum"),
    (lambda x, kernel_size=2, stride=None: pool_windows(x, kernel_size, stride or 1).max(axis=(4, 5)),
     "default stride is kernel_size", "stride_one_by_default"),
    (max_pool_ceil, "round down", "rounded_up"),
    (lambda x, kernel_size=2, stride=None: (pool_windows(x, kernel_size, stride or kernel_size).max(axis=(4, 5)),
                                            (x, kernel_size, stride)), "returned a tuple", "returns_tuple"),
    (lambda x, kernel_size=2, stride=None:
     np.moveaxis(pool_windows(x, kernel_size, stride or kernel_size).max(axis=(4, 5)), 1, -1), "is channels-last",
     "channels_last"),
    (lambda x, kernel_size=2, stride=None: pool_windows(x, kernel_size, stride or kernel_size).max(axis=(1, 4, 5)),
     "pools over the channels too", "channels_pooled"),
    (max_pool_rows_for_columns, "mixes up rows and columns", "rows_and_columns_swapped"),
], ids=["average", "minimum", "stride_1_by_default", "ceil", "tuple", "channels_last", "channels_pooled",
        "rows_for_columns"])
def test_max_pool2d_rejects(wrong, match, mistake):
    rejects("test_max_pool2d", match, f"conv.max_pool2d.{mistake}", max_pool2d=wrong)


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
    # the transposed view is made in the kernel: arrays reach it as contiguous copies (a hidden test's assert)
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


@pytest.mark.parametrize("wrong, match, mistake", [
    (pool_backward(route="all"), "several equal maxima.*first maximum", "tied_maxima"),
    (pool_backward(route="even"), "spreads dout evenly", "spread_evenly"),
    (pool_backward(weight="ones"), "ignores dout", "ignores_dout"),
    (pool_backward(weight="x"), "multiplies by x", "times_x"),
    (pool_backward(route="min"), "routes the gradient to each window's minimum", "minimum"),
    (pool_backward(accumulate=False), "windows overlap.*add, don't overwrite", "overlapping_windows"),
    (pool_backward(swap_offsets=True), "the maximum's row and column offsets swapped", "offsets_swapped"),
    (lambda dout, cache: dout.copy(), "has dout's shape", "dout_shape"),
], ids=["all_ties", "even", "ignores_dout", "times_x", "argmin", "overwrite", "offsets_swapped", "returns_dout"])
def test_max_pool2d_backward_rejects(wrong, match, mistake):
    rejects("test_max_pool2d_backward", match, f"conv.max_pool2d_backward.{mistake}", max_pool2d_backward=wrong)


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


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda dout, x: spread(dout, x.shape, 1.0), r"is H·W times too large", "not_divided"),
    (lambda dout, x: spread(dout, x.shape, 1 / x.shape[2]), r"divides by H or by W only: divide by H·W",
     "divided_by_one_side"),
    (lambda dout, x: spread(dout, x.shape, 1 / x.shape[3]), r"divides by H or by W only: divide by H·W",
     "divided_by_one_side"),
    (lambda dout, x: dout[:, :, None, None] / (x.shape[2] * x.shape[3]), "broadcast to x's full shape", "keepdims"),
    (lambda dout, x: np.full(x.shape, 1 / (x.shape[2] * x.shape[3])), "ignores dout", "ignores_dout"),
    (lambda dout, x: spread(dout, x.shape, 1 / (x.shape[0] * x.shape[2] * x.shape[3])),
     "do not divide by the batch size", "divided_by_batch"),
    (lambda dout, x: spread(dout, x.shape, 1 / (x.shape[2] * x.shape[3])) * x, "multiplies by x", "times_x"),
    (lambda dout, x: dout.copy(), "has dout's shape", "dout_shape"),
    (lambda dout, x: np.moveaxis(spread(dout, x.shape, 1 / (x.shape[2] * x.shape[3])), 1, -1), "is channels-last",
     "channels_last"),
    (lambda dout, x: spread(np.broadcast_to(dout.mean(axis=0), dout.shape), x.shape, 1 / (x.shape[2] * x.shape[3])),
     "gives every image the same gradient", "same_for_every_image"),
    (lambda dout, x: spread(dout.T, x.shape, 1 / (x.shape[2] * x.shape[3])) if dout.shape[0] == dout.shape[1]
     else spread(dout, x.shape, 1 / (x.shape[2] * x.shape[3])), r"^global_avg_pool_backward \(x \(3, 3, 2, 5\)\) "
     "swaps dout's axes", "dout_transposed"),
    (lambda dout, x: np.broadcast_to(dout[:, :, None, None] / (x.shape[2] * x.shape[3]), x.shape), "read-only view",
     "read_only_view"),
], ids=["no_division", "divided_by_h", "divided_by_w", "keepdims", "ignores_dout", "divided_by_n", "times_x",
        "returns_dout", "channels_last", "batch_mean", "dout_transposed", "read_only_view"])
def test_global_avg_pool_backward_rejects(wrong, match, mistake):
    rejects("test_global_avg_pool_backward", match, f"conv.global_avg_pool_backward.{mistake}",
            global_avg_pool_backward=wrong)


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


# ---------------------------------------------------------------- every clause of the contracts (issue 21)

def conv_into_float32(x, w, b=None, stride=1, padding=0):
    """Right sums, written into a float32 array whatever the inputs' dtype."""
    return naive_variant(accumulate=np.float32)(x, w, b, stride, padding)


def conv_into_integers(x, w, b=None, stride=1, padding=0):
    """Right sums, written into an integer array (np.zeros(..., dtype=int))."""
    return naive_variant(accumulate=np.int64)(x, w, b, stride, padding)


def conv_zeroes_w(x, w, b=None, stride=1, padding=0):
    out = im2col_conv(x, w, b, stride, padding)
    w[...] = 0  # reuses the filters' memory as scratch space once done
    return out


def conv_zeroes_x(x, w, b=None, stride=1, padding=0):
    out = im2col_conv(x, w, b, stride, padding)
    x[...] = 0
    return out


@pytest.mark.parametrize("name", ["conv2d_naive", "conv2d_fast"])
@pytest.mark.parametrize("wrong, match, mistake", [
    (conv_into_float32, r"is stored at a lower precision than x and w", "conv.conv2d.lost_precision"),
    (conv_into_integers, r"is stored at a lower precision than x and w", "conv.conv2d.lost_precision"),
    (conv_zeroes_w, r"changed its argument w in place", "changed_argument"),
    (conv_zeroes_x, r"changed its argument x in place", "changed_argument"),
], ids=["float32_output", "integer_output", "changes_w", "changes_x"])
def test_conv2d_rejects_breaking_its_contract(name, wrong, match, mistake):
    if name == "conv2d_fast" and wrong in (conv_into_float32, conv_into_integers):
        wrong = {conv_into_float32: lambda x, w, b=None, stride=1, padding=0:
                 im2col_conv(x, w, b, stride, padding).astype(np.float32),
                 conv_into_integers: lambda x, w, b=None, stride=1, padding=0:
                 im2col_conv(x, w, b, stride, padding).astype(np.int64)}[wrong]
    rejects(f"test_{name}", match, mistake, **{name: wrong})


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda x: x.mean(axis=(2, 3), dtype=np.float32), "is stored at a lower precision than x",
     "conv.global_avg_pool.lost_precision"),
    (lambda x: x.mean(axis=(2, 3)).astype(np.float32), "is stored at a lower precision than x",
     "conv.global_avg_pool.lost_precision"),
], ids=["float32_accumulator", "float32_result"])
def test_global_avg_pool_rejects_lost_precision(wrong, match, mistake):
    rejects("test_global_avg_pool", match, mistake, global_avg_pool=wrong)


def count_conv_square_of_first(in_channels, out_channels, kernel_size, bias=True):
    k = kernel_size if isinstance(kernel_size, int) else kernel_size[0]
    return in_channels * k * k * out_channels + (out_channels if bias else 0)


def test_count_params_conv_rejects_a_square_kernel_from_a_pair():
    rejects("test_count_params_conv", r"counts a \(KH, KW\) kernel as KH×KH",
            "conv.count_params_conv.square_of_first_size", count_params_conv=count_conv_square_of_first)


def test_count_params_conv_names_the_pair_that_crashes_an_int_only_count():
    rejects("test_count_params_conv", r"count_params_conv\(3, 64, \(5, 3\), bias=True\) raised TypeError", "crashed",
            count_params_conv=lambda c_in, c_out, k, bias=True: c_in * k * k * c_out + (c_out if bias else 0))


def count_mlp_from_a_list(d_in, hidden_sizes, d_out):
    sizes = [d_in] + hidden_sizes + [d_out]  # a tuple of hidden sizes cannot be added to a list
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def count_mlp_needs_a_hidden_layer(d_in, hidden_sizes, d_out):
    total = d_in * hidden_sizes[0] + hidden_sizes[0]
    for a, b in zip(hidden_sizes[:-1], hidden_sizes[1:]):
        total += a * b + b
    return total + hidden_sizes[-1] * d_out + d_out


@pytest.mark.parametrize("wrong, match", [
    (count_mlp_from_a_list, r"count_params_mlp\(784, \(256, 128, 64\), 10\) raised TypeError"),
    (count_mlp_needs_a_hidden_layer, r"count_params_mlp\(10, \[\], 3\) raised IndexError"),
], ids=["tuple_of_sizes", "no_hidden_layer"])
def test_count_params_mlp_names_the_case_its_contract_allows(wrong, match):
    rejects("test_count_params_mlp", match, "crashed", count_params_mlp=wrong)


def pool_zeroes_x(x, kernel_size=2, stride=None):
    out = max_pool_loops(x, kernel_size, stride)
    x[...] = 0
    return out


def pool_backward_masks_x(dout, cache):
    """Marks each maximum it has routed by overwriting it in x (the cache)."""
    x, k, stride = cache
    dx = pool_backward()(dout, cache)
    x[dx != 0] = -np.inf
    return dx


def pool_backward_scales_dout(dout, cache):
    dx = pool_backward()(dout, cache)
    dout *= 0
    return dx


@pytest.mark.parametrize("grade_id, wrong, match", [
    ("test_max_pool2d", pool_zeroes_x, "max_pool2d changed its argument x in place"),
    ("test_max_pool2d_backward", pool_backward_masks_x, "max_pool2d_backward changed its argument cache in place"),
    ("test_max_pool2d_backward", pool_backward_scales_dout, "max_pool2d_backward changed its argument dout in place"),
    ("test_global_avg_pool_backward", lambda dout, x: np.repeat(np.repeat(
        np.divide(dout, x.shape[2] * x.shape[3], out=dout)[:, :, None, None], x.shape[2], 2), x.shape[3], 3),
     "global_avg_pool_backward changed its argument dout in place"),
], ids=["pool_x", "pool_backward_cache", "pool_backward_dout", "gap_backward_dout"])
def test_pooling_rejects_changing_its_arguments(grade_id, wrong, match):
    name = grade_id.removeprefix("test_")
    rejects(grade_id, match, "changed_argument", **{name: wrong})


@pytest.mark.parametrize("valid", [
    lambda n, kernel_size, padding=0, stride=1: np.floor_divide(n - kernel_size + 2 * padding, stride) + 1,
], ids=["numpy_int"])
def test_conv_output_size_accepts_numpy_integers(valid):
    run_test_cell(NB, "test_conv_output_size", conv_output_size=valid)
