"""Checks for notebook 02 (convolution by hand): output sizes, convolutions, linear layers,
global average pooling and parameter counts, plus the single-thread benchmark; then the backward
passes of convolution, max pooling and global average pooling, against torch's autograd.

Each check is a contract and a table of usual mistakes (:mod:`course_lib.checks.toolkit`). The
references come from torch, computed inside the check (``F.conv2d`` and its output shape,
``nn.Linear``, the parameters of ``nn.Conv2d`` and ``nn.Linear`` layers built there, autograd), or
from worked examples; so does what each usual mistake returns (a flipped kernel, padding on one
side, a missing bias, ...). Where a result has no value to compare (a float count, a wrong shape)
or a mistake shows in which case first fails (overlapping windows, tied maxima), the table entry
says how to recognise it (``shows=``).

The student's functions are called through :func:`numpy_only`: this notebook's exercises are NumPy
only. What only the notebook's kernel can see (how long a call takes, whether a returned array is
writable) is measured there (:func:`course_lib.checks.remote.in_kernel`).
"""
from __future__ import annotations

import contextlib
import time
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks.numpy_only import numpy_only
from course_lib.checks.remote import in_kernel
from course_lib.checks.toolkit import (CheckFailed, Mistake, as_array, call, close, compare, describe, diagnose,
                                       expect, expect_tuple, fail, passed)

__all__ = [
    "check_conv_output_size", "check_conv2d_naive", "check_conv2d_fast", "check_linear",
    "check_global_avg_pool", "check_count_params_mlp", "check_count_params_conv",
    "check_conv2d_backward_naive", "check_conv2d_backward_fast", "check_max_pool2d", "check_max_pool2d_backward",
    "check_global_avg_pool_backward",
    "one_thread", "best_time", "benchmark_conv2d",
]


def _tolerance(*arrays) -> float:
    """1e-10 when every input is float64, else 1e-5 (float32 keeps about 7 digits)."""
    return 1e-10 if all(np.asarray(a).dtype == np.float64 for a in arrays if a is not None) else 1e-5


def _tensor(a):
    """A NumPy array (or None) as a float64 tensor."""
    return None if a is None else torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))


def _meta(shape):
    return torch.empty(tuple(shape), device="meta")


def _holds_nan_or_inf(value, *inputs) -> bool:
    """``shows=`` for an array that holds NaN or inf (np.empty's leftovers, a division by zero)."""
    return not np.all(np.isfinite(as_array(value)))


def _call(fn, *args, crash_hint: str, **kwargs):
    """:func:`call`, with ``crash_hint`` added to the message when the student's code raises (the layout of the
    arguments is the usual cause)."""
    try:
        return call(fn, *args, **kwargs)
    except CheckFailed as failure:
        if failure.mistake != "crashed":
            raise
        fail(f"{str(failure).rstrip('.')}. {crash_hint}", failure.mistake)


def _where_it_runs(step, fn, *args, keeps=None, **kwargs):
    """``step(fn, *args, **kwargs)`` through :func:`call`, run where ``fn`` lives: under the grader, in the
    notebook's kernel (``in_kernel``), for what only the kernel sees (how long fn took, the array it returned).
    ``step`` returns a pair whose first item is what ``fn`` returned."""
    remote = in_kernel(step)

    def through(*args, **kwargs):
        return remote(fn, *args, **kwargs)

    through.__name__ = getattr(fn, "__name__", "your function")
    result = call(through, *args, keeps=keeps, **kwargs)
    expect(result[0] is not None, f"{through.__name__} returned None: is the result returned at the end of the "
                                  "function?", "returned_none")
    return result


def _clocked(fn, *args, **kwargs) -> tuple:
    """``(fn(*args, **kwargs), seconds it took)``."""
    import time
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, time.perf_counter() - start


def _writable(fn, *args) -> tuple:
    """``(fn(*args), whether the caller may write into it)``: what the grader receives is always a copy."""
    import numpy
    result = fn(*args)
    return result, not isinstance(result, numpy.ndarray) or bool(result.flags.writeable)


# ---------------------------------------------------------------- counts (output size, parameters)

def _true_division(exercise: str, why: str) -> Mistake:
    return Mistake(f"conv.{exercise}.true_division", f"returned a float: {why}",
                   shows=lambda result, *inputs: isinstance(result, (float, np.floating)))


_WHOLE_COUNT = "a number of parameters is a whole number, an int."


def _compare_count(result, expected: int, what: str, mistakes, inputs, reference: str) -> None:
    """:func:`compare` for a count: an int equal to ``expected``, written in full (1,578,506) where compare
    writes six digits; ``reference`` says where ``expected`` comes from ("nn.Conv2d has")."""
    is_int = isinstance(result, (int, np.integer)) and not isinstance(result, bool)
    if is_int and result == expected:
        return
    diagnose(result, what, mistakes, inputs, tol=0)
    expect(is_int, f"{what} returned {describe(result)}; expected an int.", "wrong_type")
    fail(f"{what} returned {int(result):,}; {reference} {expected:,}.")


def _positions(n, k, p=0, s=1) -> int:
    """How many positions torch's conv1d gives a window of ``k`` on ``n`` pixels (padding ``p``, stride ``s``)."""
    return F.conv1d(_meta((1, 1, n)), _meta((1, 1, k)), stride=s, padding=p).shape[-1]


CONV_OUTPUT_SIZE_MISTAKES = (  # inputs: n, kernel_size, padding, stride
    _true_division("conv_output_size", "the size is a whole number of window positions (rounded down), an int."),
    Mistake("conv.conv_output_size.no_plus_one",
            "counts one window position too few: the first window, at the padded axis's first pixel, is a position "
            "too.", returns=lambda n, k, p, s: _positions(n, k, p, s) - 1),
    Mistake("conv.conv_output_size.padding_once", "adds the padding once: P pixels go on both sides of the input.",
            returns=lambda n, k, p, s: _positions(n + p, k, 0, s)),
    Mistake("conv.conv_output_size.stride_ignored",
            "ignores the stride: the window moves S pixels at a time, so there are about S times fewer positions "
            "than with stride 1.", returns=lambda n, k, p, s: _positions(n, k, p, 1)),
    Mistake("conv.conv_output_size.rounded_up",
            "rounds up: a window that would stick out past the edge is not used, so round down (floor).",
            returns=lambda n, k, p, s: _positions(n + s - 1, k, p, s)),
    Mistake("conv.conv_output_size.kernel_added",
            "adds the kernel size: a larger kernel leaves fewer positions, so subtract it.",
            returns=lambda n, k, p, s: _positions(n + 2 * k, k, p, s)),
)

_SIZE_CASES = [  # n, kernel, padding, stride, answer (worked by hand)
    (32, 5, 0, 1, 28), (28, 5, 2, 1, 28), (32, 3, 1, 1, 32), (32, 3, 1, 2, 16),
    (8, 3, 0, 2, 3), (7, 3, 0, 2, 3), (5, 5, 0, 1, 1), (227, 11, 0, 4, 55), (10, 4, 3, 3, 5),
]


def check_conv_output_size(conv_output_size) -> None:
    """``conv_output_size(n, kernel_size, padding=0, stride=1)`` → an int, on worked examples (the first with the
    default padding and stride)."""
    conv_output_size = numpy_only(conv_output_size)
    for index, (n, k, p, s, answer) in enumerate(_SIZE_CASES):
        if index == 0:
            what = f"conv_output_size({n}, {k})"
            result = call(conv_output_size, n, k, shown=f"{n}, {k}", returns="number")
        else:
            what = f"conv_output_size({n}, {k}, padding={p}, stride={s})"
            result = call(conv_output_size, n, k, padding=p, stride=s, shown=f"{n}, {k}, padding={p}, stride={s}",
                          returns="number")
        _compare_count(result, answer, what, CONV_OUTPUT_SIZE_MISTAKES, (n, k, p, s), "the worked example gives")
    passed("conv_output_size", f"{len(_SIZE_CASES)} worked examples")


# ---------------------------------------------------------------- convolution

def _torch_conv(x, w, b=None, stride=1, padding=0, mode="zeros") -> np.ndarray:
    """torch's conv2d in float64: x (N, C, H, W), w (F, C, KH, KW), b (F,) or None → (N, F, H_out, W_out);
    ``mode`` is how the border is padded (torch's ``F.pad`` modes: "replicate", "reflect")."""
    image = _tensor(x)
    if mode != "zeros":
        image, padding = F.pad(image, (padding,) * 4, mode=mode), 0
    return F.conv2d(image, _tensor(w), _tensor(b), stride=stride, padding=padding).numpy()


def _conv_shape(x_shape, w_shape, stride=1, padding=0) -> tuple:
    """The output shape (N, F, H_out, W_out) of torch's conv2d, from the meta device."""
    return tuple(F.conv2d(_meta(x_shape), _meta(w_shape), stride=stride, padding=padding).shape)


def _padded(x, before, after):
    """x (N, C, H, W) with ``before`` rows and columns of zeros at the top and left, ``after`` at the bottom and
    right."""
    return np.pad(x, ((0, 0), (0, 0), (before, after), (before, after)))


def _rounded(reference):
    """``shows=`` for a result that is ``reference(*inputs)`` stored at a lower precision than the inputs': whole
    numbers, or float32 from float64 inputs."""
    def shows(out, *inputs):
        kind, expected = np.asarray(out).dtype, reference(*inputs)
        inputs_kind = np.result_type(*(a.dtype for a in inputs if isinstance(a, np.ndarray)))
        if np.shape(out) != np.shape(expected):
            return False
        if np.issubdtype(kind, np.integer):
            return True
        return kind == np.float32 and inputs_kind == np.float64 and close(out, expected, 1e-5)
    return shows


def _conv_gives_shape(shape_of):
    """``shows=`` for a mistake recognised by its output shape ``shape_of(x, w, stride, padding)``, where that
    differs from torch's."""
    def shows(out, x, w, b, stride, padding):
        return np.shape(out) == tuple(shape_of(x, w, stride, padding)) != _conv_shape(x.shape, w.shape, stride, padding)
    return shows


def _bias_added(times):
    """``returns=`` for a convolution that adds b[f] ``times(C, KH, KW)`` times to each output pixel."""
    def returns(x, w, b, stride, padding):
        return _torch_conv(x, w, times(*w.shape[1:]) * b, stride, padding)
    return returns


def _rotated(kernels) -> np.ndarray:
    """``kernels`` (F, C, KH, KW) rotated by 180° in their last two axes, by torch.flip."""
    return torch.flip(_tensor(kernels), dims=(2, 3)).numpy()


def _windows_one_apart(x, w, b, stride, padding):
    """The output's size is right, but its windows start 1 pixel apart, as with stride 1."""
    h_out, w_out = _conv_shape(x.shape, w.shape, stride, padding)[2:]
    return _torch_conv(x, w, b, 1, padding)[:, :, :h_out, :w_out]


CONV2D_MISTAKES = (  # conv2d_naive and conv2d_fast; inputs: x, w, b, stride, padding
    Mistake("conv.conv2d.not_finite", "holds NaN or inf: is the output array initialised (np.zeros, not np.empty)?",
            shows=_holds_nan_or_inf),
    Mistake("conv.conv2d.lost_precision",
            "is stored at a lower precision than x and w (whole numbers, or float32 from float64 inputs): every "
            "entry was rounded when it was written. The result keeps the inputs' precision, so the array that "
            "receives the sums needs their dtype.",
            shows=_rounded(lambda x, w, b, s, p: _torch_conv(x, w, b, s, p))),
    Mistake("conv.conv2d.padding_ignored",
            "has the shape of the unpadded image: add P zeros on every side of the image before sliding the kernel.",
            shows=_conv_gives_shape(lambda x, w, s, p: _conv_shape(x.shape, w.shape, s, 0))),
    Mistake("conv.conv2d.stride_ignored",
            "has the shape of stride 1: the window moves S pixels at a time, so each axis has about S times fewer "
            "positions.", shows=_conv_gives_shape(lambda x, w, s, p: _conv_shape(x.shape, w.shape, 1, p))),
    Mistake("conv.conv2d.padded_one_side",
            "has the shape of an image padded on one side only: P zeros go on every side (top, bottom, left and "
            "right).",
            shows=_conv_gives_shape(lambda x, w, s, p: _conv_shape(_padded(x, 0, p).shape, w.shape, s))),
    Mistake("conv.conv2d.kernel_height_and_width_swapped",
            "mixes up KH and KW: w has torch's layout (F, C, KH, KW), KH rows by KW columns.",
            shows=_conv_gives_shape(lambda x, w, s, p: _conv_shape(x.shape, w.transpose(0, 1, 3, 2).shape, s, p))),
    Mistake("conv.conv2d.one_position_missing",
            "has one window position too few on each axis: count the first window, at the padded image's first "
            "pixel, too.", shows=_conv_gives_shape(
                lambda x, w, s, p: np.subtract(_conv_shape(x.shape, w.shape, s, p), (0, 0, 1, 1)))),
    Mistake("conv.conv2d.filters_first", "has its axes as (F, N, ...): return (N, F, H_out, W_out), images first.",
            shows=_conv_gives_shape(lambda x, w, s, p: np.take(_conv_shape(x.shape, w.shape, s, p), (1, 0, 2, 3)))),
    Mistake("conv.conv2d.channels_last", "is channels-last: return (N, F, H_out, W_out) like torch.",
            shows=_conv_gives_shape(lambda x, w, s, p: np.take(_conv_shape(x.shape, w.shape, s, p), (0, 2, 3, 1)))),
    Mistake("conv.conv2d.maps_per_input_channel",
            "has one map per input channel: each of the F filters sums over all C input channels and gives one "
            "output map, so the result has F channels.",
            shows=_conv_gives_shape(lambda x, w, s, p: (len(x), x.shape[1], *_conv_shape(x.shape, w.shape, s, p)[2:]))),
    Mistake("conv.conv2d.flipped_kernel",
            "flips the kernel: that is the textbook convolution. Deep-learning frameworks compute cross-correlation, "
            "which multiplies each window with w as it is, without flipping it (section 2).",
            returns=lambda x, w, b, s, p: _torch_conv(x, _rotated(w), b, s, p)),
    Mistake("conv.conv2d.bias_missing", "leaves out the bias: add b[f] to every pixel of output map f.",
            returns=lambda x, w, b, s, p: _torch_conv(x, w, None, s, p)),
    Mistake("conv.conv2d.bias_added_repeatedly",
            "adds the bias once per input channel, C times per output pixel: add b[f] once, after the sum.",
            returns=_bias_added(lambda c, kh, kw: c)),
    Mistake("conv.conv2d.bias_added_repeatedly",
            "adds the bias once per kernel offset, KH·KW times per output pixel: add b[f] once, after the sum.",
            returns=_bias_added(lambda c, kh, kw: kh * kw)),
    Mistake("conv.conv2d.bias_added_repeatedly",
            "adds the bias once per weight, C·KH·KW times per output pixel: add b[f] once, after the sum.",
            returns=_bias_added(lambda c, kh, kw: c * kh * kw)),
    Mistake("conv.conv2d.windows_one_pixel_apart",
            "places the windows 1 pixel apart: the output has the right size, but neighbouring windows must start "
            "S pixels apart.", returns=_windows_one_apart),
    Mistake("conv.conv2d.padded_top_left_only",
            "pads the image on one side only (2P zeros at the top and left): put P zeros on every side instead.",
            returns=lambda x, w, b, s, p: _torch_conv(_padded(x, 2 * p, 0), w, b, s)),
    Mistake("conv.conv2d.padded_bottom_right_only",
            "pads the image on one side only (2P zeros at the bottom and right): put P zeros on every side instead.",
            returns=lambda x, w, b, s, p: _torch_conv(_padded(x, 0, 2 * p), w, b, s)),
    Mistake("conv.conv2d.edge_padding", "pads by repeating the edge pixels: pad with zeros (np.pad's default mode).",
            returns=lambda x, w, b, s, p: _torch_conv(x, w, b, s, p, mode="replicate")),
    Mistake("conv.conv2d.reflect_padding", "pads by reflection: pad with zeros (np.pad's default mode).",
            returns=lambda x, w, b, s, p: _torch_conv(x, w, b, s, p, mode="reflect")),
)

_CONV_LAYOUT = ("x is (N, C, H, W) and w is (F, C, KH, KW), torch's layout: each filter w[f] covers all C "
                "channels of one KH×KW window of the padded image.")


def _compare_conv(fn, name, x, w, b=None, stride=1, padding=0, use_defaults=False) -> None:
    """Call the student's conv on one case (``use_defaults``: as ``fn(x, w)``) and compare with torch's."""
    case = (f"x {x.shape}, w {w.shape}, {'no bias' if b is None else 'bias'}, stride={stride}, padding={padding}"
            + (", float32" if x.dtype == np.float32 else ""))
    if use_defaults:
        out = _call(fn, x, w, crash_hint=_CONV_LAYOUT, name=name, shown=case, returns="array",
                    keeps={0: "x", 1: "w"})
    else:
        out = _call(fn, x, w, b, stride=stride, padding=padding, crash_hint=_CONV_LAYOUT, name=name, shown=case,
                    returns="array", keeps={0: "x", 1: "w"})
    compare(out, _torch_conv(x, w, b, stride, padding), f"{name} ({case})", tol=_tolerance(x, w, b),
            mistakes=CONV2D_MISTAKES, inputs=(x, w, b, stride, padding), expected_as="torch's")


def _conv_cases(rng):
    """Small cases, from one channel without bias to strides, padding and float32 together."""
    def r(*shape):
        return rng.standard_normal(shape)

    return [  # x, w, b, stride, padding, call with defaults
        (r(1, 1, 4, 5), r(1, 1, 2, 3), None, 1, 0, True),
        (r(2, 3, 5, 6), r(4, 3, 3, 3), r(4), 1, 0, False),
        (r(2, 2, 5, 5), r(3, 2, 3, 3), r(3), 1, 1, False),
        (r(2, 3, 7, 8), r(2, 3, 3, 2), r(2), 2, 0, False),
        (r(1, 3, 6, 7), r(3, 3, 3, 3), r(3), 2, 1, False),
        (r(2, 2, 9, 8), r(3, 2, 2, 3), r(3), 3, 2, False),
        (r(2, 3, 6, 7).astype(np.float32), r(2, 3, 3, 2).astype(np.float32), r(2).astype(np.float32), 2, 1, False),
    ]


def _check_conv(fn, name: str) -> int:
    cases = _conv_cases(np.random.default_rng(2))
    for x, w, b, stride, padding, use_defaults in cases:
        _compare_conv(fn, name, x, w, b, stride, padding, use_defaults)
    return len(cases)


def _cifar_batch(seed: int, third: tuple) -> tuple:
    """A speed test's inputs: 16 images (16, 3, 32, 32), 16 filters (16, 3, 3, 3) and a third array of
    shape ``third`` (biases, or the gradient of the output)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((16, 3, 32, 32)), rng.standard_normal((16, 3, 3, 3)), rng.standard_normal(third)


def check_conv2d_naive(conv2d_naive) -> None:
    """``conv2d_naive(x, w, b=None, stride=1, padding=0)``: x (N, C, H, W), w (F, C, KH, KW), b (F,) →
    (N, F, H_out, W_out), against torch's conv2d on small cases, in the inputs' precision. It must leave x and w
    as they were."""
    n = _check_conv(numpy_only(conv2d_naive), "conv2d_naive")
    passed("conv2d_naive", f"equal to torch's conv2d on {n} cases")


def check_conv2d_fast(conv2d_fast, max_seconds: float = 0.3) -> None:
    """As :func:`check_conv2d_naive`, then a CIFAR-sized batch that must take under ``max_seconds``."""
    conv2d_fast = numpy_only(conv2d_fast)
    n = _check_conv(conv2d_fast, "conv2d_fast")
    x, w, b = _cifar_batch(seed=3, third=(16,))
    # timed in the kernel, without the grader's round trip: the kernel reports this number (a speed
    # requirement, not correctness, which is checked here on out). Measured on one core: the solution's
    # loops 0.74 s, its vectorised version 1-5 ms, so 0.3 s leaves 2.5x below the loops and 60x above
    # the vectorised one
    out, seconds = _where_it_runs(_clocked, conv2d_fast, x, w, b, stride=1, padding=1)
    expect(seconds <= max_seconds,
           f"conv2d_fast took {seconds:.2f} s on 16 images 3×32×32 with 16 filters 3×3 (allowed {max_seconds} s): "
           "it is not vectorised. Python loops over images, filters or output pixels are what make conv2d_naive "
           "slow; section 3 shows how to get all windows at once and combine them with the filters in one "
           "NumPy call.", "conv.conv2d_fast.not_vectorised")
    compare(out, _torch_conv(x, w, b, padding=1), "conv2d_fast on 16 images 3×32×32 with 16 filters", tol=1e-10,
            expected_as="torch's")
    passed("conv2d_fast", f"equal to torch's conv2d on {n + 1} cases; 16 CIFAR-sized images in {1000 * seconds:.0f} ms")


# ---------------------------------------------------------------- linear layer and pooling

_LINEAR_LAYOUT = "torch.nn.Linear stores weight as (out_features, in_features), one row per output unit."


def _torch_linear(x, weight, bias=None) -> np.ndarray:
    """torch's F.linear in float64: x (N, in_features), weight (out_features, in_features), bias (out_features,)."""
    return F.linear(_tensor(x), _tensor(weight), _tensor(bias)).numpy()


LINEAR_MISTAKES = (  # inputs: x, weight, bias
    Mistake("conv.linear.examples_last",
            "has shape (out_features, N): return one row per example, (N, out_features).",
            shows=lambda out, x, weight, bias: np.shape(out) == (len(weight), len(x)) != (len(x), len(weight))),
    Mistake("conv.linear.weight_not_transposed", f"uses weight as if it were (in_features, out_features): "
                                                 f"{_LINEAR_LAYOUT}",
            returns=lambda x, weight, bias: _torch_linear(x, weight.T, bias)),
    Mistake("conv.linear.bias_missing", "leaves out the bias: add it to every row.",
            returns=lambda x, weight, bias: _torch_linear(x, weight)),
    Mistake("conv.linear.weight_not_transposed_and_bias_missing",
            f"uses weight as if it were (in_features, out_features) and leaves out the bias: {_LINEAR_LAYOUT}",
            returns=lambda x, weight, bias: _torch_linear(x, weight.T)),
)


def check_linear(linear) -> None:
    """``linear(x, weight, bias)``: x (N, in_features), weight (out_features, in_features), bias (out_features,)
    → (N, out_features), against ``nn.Linear``. Its arguments are copies: changing them is not checked."""
    linear = numpy_only(linear)
    rng = np.random.default_rng(4)
    cases = [
        (rng.standard_normal((3, 4)), rng.standard_normal((4, 4)), rng.standard_normal(4)),
        (rng.standard_normal((5, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)),
        (rng.standard_normal((1, 7)).astype(np.float32), rng.standard_normal((3, 7)).astype(np.float32),
         rng.standard_normal(3).astype(np.float32)),
    ]
    for x, weight, bias in cases:
        case = f"x {x.shape}, weight {weight.shape}, bias {bias.shape}" + (", float32" if x.dtype == np.float32 else "")
        out = _call(linear, x, weight, bias, crash_hint=_LINEAR_LAYOUT, shown=case, returns="array")
        layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(_tensor(weight))
            layer.bias.copy_(_tensor(bias))
            expected = layer(_tensor(x)).numpy()
        compare(out, expected, f"linear ({case})", tol=_tolerance(x, weight, bias), mistakes=LINEAR_MISTAKES,
                inputs=(x, weight, bias), expected_as="nn.Linear's")
    passed("linear", f"equal to torch.nn.Linear on {len(cases)} cases")


def _torch_global_avg_pool(x) -> np.ndarray:
    """torch's global average pooling in float64: x (N, C, H, W) → (N, C)."""
    return F.adaptive_avg_pool2d(_tensor(x), 1).flatten(1).numpy()


GLOBAL_AVG_POOL_MISTAKES = (  # inputs: x
    Mistake("conv.global_avg_pool.keepdims",
            "has shape (N, C, 1, 1): return (N, C), without the two axes of size 1 (no keepdims), so that a linear "
            "layer can take it.", shows=lambda out, x: np.shape(out) == (*x.shape[:2], 1, 1)),
    Mistake("conv.global_avg_pool.channels_averaged",
            "averages the channels too: keep one number per channel, the mean over H and W only.",
            shows=lambda out, x: np.shape(out) == x.shape[:1]),
    *(Mistake("conv.global_avg_pool.wrong_axes",
              f"averages over axes {axes}: each value should be the average of one feature map, one image's one "
              "channel, over its H×W pixels.",
              returns=lambda x, axes=axes: torch.mean(_tensor(x), dim=axes).numpy())
      for axes in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3))),
    Mistake("conv.global_avg_pool.sum", "is H·W times the average, a sum: each map's H·W values should be averaged.",
            returns=lambda x: _torch_global_avg_pool(x) * x[0, 0].size),
    Mistake("conv.global_avg_pool.max",
            "takes each map's maximum (global max pooling): average its H·W values instead.",
            returns=lambda x: F.adaptive_max_pool2d(_tensor(x), 1).flatten(1).numpy()),
    Mistake("conv.global_avg_pool.lost_precision",
            "is stored at a lower precision than x (whole numbers, or float32 from float64 maps): the means keep x's "
            "precision.", shows=_rounded(_torch_global_avg_pool)),
)


def check_global_avg_pool(global_avg_pool) -> None:
    """``global_avg_pool(x)``: (N, C, H, W) → (N, C), against ``F.adaptive_avg_pool2d(x, 1)``. Its argument is a
    copy: changing it is not checked."""
    global_avg_pool = numpy_only(global_avg_pool)
    rng = np.random.default_rng(5)
    cases = [rng.standard_normal((4, 4, 4, 4)), rng.standard_normal((2, 3, 5, 7)),
             (100 * rng.standard_normal((3, 5, 6, 6))).astype(np.float32)]
    for x in cases:
        case = f"x {x.shape}" + (", float32" if x.dtype == np.float32 else "")
        out = call(global_avg_pool, x, shown=case, returns="array")
        compare(out, _torch_global_avg_pool(x), f"global_avg_pool ({case})", tol=_tolerance(x), mistakes=GLOBAL_AVG_POOL_MISTAKES,
                inputs=(x,), expected_as="torch's")
    passed("global_avg_pool", f"equal to torch's adaptive_avg_pool2d(x, 1) on {len(cases)} cases")


# ---------------------------------------------------------------- parameter counts

def _weights(layers) -> int:
    return sum(layer.weight.numel() for layer in layers)


def _biases(layers) -> int:
    return sum(layer.bias.numel() for layer in layers)


def _parameters(layers) -> int:
    return sum(parameter.numel() for layer in layers for parameter in layer.parameters())


def _mlp(count):
    """``returns=`` for a count of the MLP's torch Linear layers: ``count(layers)``."""
    def returns(d_in, hidden_sizes, d_out):
        sizes = [d_in, *hidden_sizes, d_out]
        return count([nn.Linear(a, b, device="meta") for a, b in zip(sizes, sizes[1:])])
    return returns


COUNT_PARAMS_MLP_MISTAKES = (  # inputs: d_in, hidden_sizes, d_out
    _true_division("count_params_mlp", _WHOLE_COUNT),
    Mistake("conv.count_params_mlp.weights_only",
            "counts the weights only: every Linear layer also has one bias per output unit.", returns=_mlp(_weights)),
    Mistake("conv.count_params_mlp.no_output_biases", "leaves out the output layer's biases, one per output unit.",
            returns=_mlp(lambda layers: _weights(layers) + _biases(layers[:-1]))),
    Mistake("conv.count_params_mlp.biases_per_input",
            "counts one bias per input unit: a layer has one bias per output unit.",
            returns=_mlp(lambda layers: _weights(layers) + sum(layer.in_features for layer in layers))),
    Mistake("conv.count_params_mlp.no_output_layer", "leaves out the last layer (H_K → D_out).",
            returns=_mlp(lambda layers: _parameters(layers[:-1]))),
    Mistake("conv.count_params_mlp.no_input_layer", "leaves out the first layer (D_in → H_1).",
            returns=_mlp(lambda layers: _parameters(layers[1:]))),
    Mistake("conv.count_params_mlp.no_hidden_to_hidden_weights",
            "leaves out the weights between consecutive hidden layers (H_k → H_k+1).",
            returns=_mlp(lambda layers: _weights(layers[:1] + layers[-1:]) + _biases(layers))),
    Mistake("conv.count_params_mlp.no_hidden_layers",
            "goes wrong without hidden layers: then the MLP is a single Linear layer D_in → D_out.",
            shows=lambda result, d_in, hidden_sizes, d_out: len(hidden_sizes) == 0),
)


def check_count_params_mlp(count_params_mlp) -> None:
    """``count_params_mlp(d_in, hidden_sizes, d_out)`` → an int, against torch Linear layers."""
    count_params_mlp = numpy_only(count_params_mlp)
    cases = [(20, [8, 6], 4), (3072, [512], 10), (784, (256, 128, 64), 10), (10, [], 3)]
    for d_in, hidden, d_out in cases:
        shown = f"{d_in}, {hidden!r}, {d_out}"
        result = call(count_params_mlp, d_in, hidden, d_out, shown=shown, returns="number")
        expected = _mlp(_parameters)(d_in, hidden, d_out)
        _compare_count(result, expected, f"count_params_mlp({shown})", COUNT_PARAMS_MLP_MISTAKES,
                       (d_in, hidden, d_out), "the matching torch Linear layers have")
    passed("count_params_mlp", f"equal to torch's count on {len(cases)} MLPs")


def _conv_count(**changed):
    """``returns=`` for the parameter count of an nn.Conv2d layer built with ``changed`` settings replacing the
    check's (each a function of the check's settings: in_channels, out_channels, kernel_size, bias)."""
    def returns(c_in, c_out, kernel_size, bias):
        settings = dict(in_channels=c_in, out_channels=c_out, kernel_size=kernel_size, bias=bias)
        settings.update({k: v(**settings) for k, v in changed.items()})
        return _parameters([nn.Conv2d(**settings, device="meta")])
    return returns


def _kernel_rows(kernel_size) -> tuple:
    """One column of a kernel of ``kernel_size``: (KH, 1)."""
    return nn.Conv2d(1, 1, kernel_size, device="meta").kernel_size[0], 1


COUNT_PARAMS_CONV_MISTAKES = (  # inputs: in_channels, out_channels, kernel_size, bias
    _true_division("count_params_conv", _WHOLE_COUNT),
    Mistake("conv.count_params_conv.biases_missing",
            "leaves out the biases: a conv layer has one bias per filter (output channel).",
            returns=_conv_count(bias=lambda **s: False)),
    Mistake("conv.count_params_conv.bias_flag_ignored", "counts biases although bias=False: then the layer has none.",
            returns=_conv_count(bias=lambda **s: True)),
    Mistake("conv.count_params_conv.input_channels_missing",
            "leaves out the input channels: each filter spans all C_in of them, with one kernel each.",
            returns=_conv_count(in_channels=lambda **s: 1)),
    Mistake("conv.count_params_conv.one_kernel_row",
            "counts one row of each kernel: a kernel_size k means a k×k kernel, (KH, KW) a KH×KW one; count all "
            "its positions.",
            returns=_conv_count(kernel_size=lambda kernel_size, **s: _kernel_rows(kernel_size))),
    Mistake("conv.count_params_conv.square_of_first_size",
            "counts a (KH, KW) kernel as KH×KH: a pair gives the kernel's height and its width, which may differ.",
            returns=_conv_count(kernel_size=lambda kernel_size, **s:
                                nn.Conv2d(1, 1, kernel_size, device="meta").kernel_size[0])),
    Mistake("conv.count_params_conv.biases_per_input",
            "counts one bias per input channel: a conv layer has one per output channel (filter).",
            # the layer with C_in and C_out swapped: as many weights, one bias per input channel
            returns=_conv_count(in_channels=lambda out_channels, **s: out_channels,
                                out_channels=lambda in_channels, **s: in_channels)),
    Mistake("conv.count_params_conv.biases_per_weight",
            "counts one bias per kernel position: a conv layer has one per filter.",
            # as many as the weights of one more input channel
            returns=_conv_count(in_channels=lambda in_channels, bias, **s: in_channels + bool(bias),
                                bias=lambda **s: False)),
)


def check_count_params_conv(count_params_conv) -> None:
    """``count_params_conv(in_channels, out_channels, kernel_size, bias=True)`` → an int, against ``nn.Conv2d``."""
    count_params_conv = numpy_only(count_params_conv)
    # the first case tells the usual mistakes apart (no two of them give the same wrong count)
    cases = [(3, 8, 5, True), (3, 16, 3, True), (1, 6, 5, True), (3, 64, (5, 3), True), (64, 128, 3, False),
             (16, 32, (1, 7), True)]
    for c_in, c_out, k, bias in cases:
        shown = f"{c_in}, {c_out}, {k!r}, bias={bias}"
        result = call(count_params_conv, c_in, c_out, k, bias=bias, shown=shown, returns="number")
        expected = _parameters([nn.Conv2d(c_in, c_out, k, bias=bias, device="meta")])
        _compare_count(result, expected, f"count_params_conv({shown})", COUNT_PARAMS_CONV_MISTAKES,
                       (c_in, c_out, k, bias), "nn.Conv2d has")
    passed("count_params_conv", f"equal to nn.Conv2d's count on {len(cases)} layers")


# ---------------------------------------------------------------- benchmark

@contextlib.contextmanager
def one_thread():
    """Run torch and NumPy's BLAS on one CPU thread inside the block (threadpoolctl if installed)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without it NumPy may use several BLAS threads; set OPENBLAS_NUM_THREADS=1 instead
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(limits=1)
    try:
        with limits:
            yield
    finally:
        torch.set_num_threads(before)


def _settle_allocator() -> None:
    """Free one large block first, so that malloc reuses memory during the timings.

    glibc's malloc gives blocks over 128 KiB back to the operating system when they are freed,
    so each call pays for fresh pages, until a large block has been freed once: then it raises
    that threshold and reuses memory, as any long-running program finds it. Without this,
    torch's time here changes about fivefold depending on what ran before it.
    """
    block = np.ones(2**24 // 8)  # 16 MiB: below glibc's 32 MiB cap on that threshold
    del block


def best_time(fn, repeats: int) -> float:
    """Shortest wall time of ``repeats`` calls of ``fn()`` after one warm-up call (as timeit advises)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def benchmark_conv2d(conv2d_naive, conv2d_fast, x, w, b=None, stride=1, padding=1,
                     naive_images: int | None = None, repeats: int = 5) -> dict:
    """Time ``conv2d_naive``, ``conv2d_fast`` and torch's ``conv2d`` on one CPU thread.

    - x (N, C, H, W), w (F, C, KH, KW), b (F,): NumPy arrays (float32 is what torch uses by default).
    - naive_images: time conv2d_naive once on the first ``naive_images`` images only and scale
      the time up to all N (it is slow); None runs it on all of them.

    Checks that the two outputs equal torch's, prints a table and returns
    ``{"naive_seconds", "fast_seconds", "torch_seconds", "fast_vs_torch"}``.
    """
    n = len(x)
    subset = n if naive_images is None else min(naive_images, n)
    xt, wt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(w))
    bt = None if b is None else torch.from_numpy(np.ascontiguousarray(b))
    _settle_allocator()
    with one_thread(), torch.no_grad():
        reference = F.conv2d(xt, wt, bt, stride=stride, padding=padding).numpy()
        torch_seconds = best_time(lambda: F.conv2d(xt, wt, bt, stride=stride, padding=padding), repeats)
        fast_seconds = best_time(lambda: conv2d_fast(x, w, b, stride=stride, padding=padding), repeats)
        start = time.perf_counter()
        naive_out = conv2d_naive(x[:subset], w, b, stride=stride, padding=padding)
        naive_seconds = (time.perf_counter() - start) * n / subset
    for name, out in (("conv2d_fast", conv2d_fast(x, w, b, stride=stride, padding=padding)),
                      ("conv2d_naive", naive_out)):
        compare(out, reference[:len(out)], f"{name} in the benchmark", tol=_tolerance(x, w, b), expected_as="torch's")
    result = {"naive_seconds": naive_seconds, "fast_seconds": fast_seconds, "torch_seconds": torch_seconds,
              "fast_vs_torch": fast_seconds / torch_seconds}
    print(f"{n} images {tuple(x.shape[1:])}, {w.shape[0]} filters {w.shape[2]}×{w.shape[3]}, stride {stride}, "
          f"padding {padding}, {x.dtype}, one CPU thread (best of {repeats}):")
    note = "" if subset == n else f"   (timed on {subset} images, × {n / subset:g})"
    rows = (("conv2d_naive", "naive_seconds"), ("conv2d_fast", "fast_seconds"), ("torch conv2d", "torch_seconds"))
    for label, key in rows:
        print(f"  {label:<13} {result[key] * 1000:10.1f} ms   {result[key] / torch_seconds:8.1f} × torch"
              + (note if key == "naive_seconds" else ""))
    return result



# ---------------------------------------------------------------- backward passes
#
# References come from torch's autograd: the same forward pass in torch, then .backward(dout).
# Cases run from simple to hard (one image and one 1×1 filter, whose windows do not overlap, then
# overlapping windows, several images, channels and filters, padding, strides, float32), so that
# the first failing case tells what it added. Known mistakes are recognised from what torch gives
# for them (a kernel that is not rotated, an average instead of a sum, ...), and, last, from the
# case that first fails (overlapping windows: contributions overwritten instead of added).

def _grads_of(forward, inputs: dict, dout) -> dict:
    """{name: gradient} of ``(forward(**tensors) * dout).sum()`` for float64 tensors of ``inputs``."""
    tensors = {name: _tensor(value).requires_grad_(True) for name, value in inputs.items()}
    forward(**tensors).backward(_tensor(dout))
    return {name: tensor.grad.numpy() for name, tensor in tensors.items()}


class _ConvGradCase(NamedTuple):
    """One case of the convolution's backward pass: what it adds to the cases before it, its arrays, and
    torch's gradients ``grads`` {"dx": (N, C, H, W), "dw": (F, C, KH, KW), "db": (F,)}."""
    new: str
    x: np.ndarray        # (N, C, H, W)
    w: np.ndarray        # (F, C, KH, KW)
    dout: np.ndarray     # (N, F, H_out, W_out)
    stride: int
    padding: int
    grads: dict


def _dx_of_padded(case) -> np.ndarray:
    """The gradient of the padded image x_pad, (N, C, H + 2P, W + 2P)."""
    n, c, h, w = case.x.shape
    padded = (n, c, h + 2 * case.padding, w + 2 * case.padding)
    return torch.nn.grad.conv2d_input(padded, _tensor(case.w), _tensor(case.dout), stride=case.stride).numpy()


def _part_shows_shape(part: str, shape_of):
    """``shows=`` for a mistake recognised by the shape ``shape_of(case)`` of ``part``, where torch's differs."""
    return lambda got, case: np.shape(got) == tuple(shape_of(case)) != case.grads[part].shape


def _times(part: str, factor):
    """``shows=`` for a result that is torch's ``part`` divided by ``factor(case)`` (an average where torch sums)."""
    return lambda got, case: np.shape(got) == case.grads[part].shape and close(as_array(got) * factor(case),
                                                                               case.grads[part], 1e-5)


def _first_fails_at(new: str, part: str):
    """``shows=`` for a mistake recognised by the first case that fails, the one that adds ``new`` (``part`` has
    the right shape)."""
    return lambda got, case: case.new == new and np.shape(got) == case.grads[part].shape


def _conv_backward_tail(part: str) -> tuple:
    """The mistakes that the first failing case names, for each of dx, dw and db."""
    return (
        Mistake("conv.conv2d_backward.overlapping_windows",
                "goes wrong where windows first overlap (stride 1, kernel wider than 1): an entry that lies in several "
                "windows receives a contribution from each of them; add them up instead of overwriting.",
                shows=_first_fails_at("overlap", part)),
        Mistake("conv.conv2d_backward.stride",
                "goes wrong at the first stride above 1: output (i, j) read the window that starts at (i·S, j·S) "
                "of x_pad, so its gradient goes back to that window; rows or columns of x_pad that no window "
                "reached get 0.", shows=_first_fails_at("stride", part)),
    )


_CONV_BACKWARD_NOT_FINITE = Mistake(
    "conv.conv2d_backward.not_finite",
    "holds NaN or inf: is every array you fill initialised (np.zeros, not np.empty)?", shows=_holds_nan_or_inf)

CONV2D_BACKWARD_DX_MISTAKES = (  # conv2d_backward_naive and _fast; inputs: a _ConvGradCase
    _CONV_BACKWARD_NOT_FINITE,
    Mistake("conv.conv2d_backward.dx_padded",
            "has the padded image's shape: drop the P rows and columns of padding on each side.",
            shows=_part_shows_shape("dx", lambda case: _dx_of_padded(case).shape)),
    Mistake("conv.conv2d_backward.kernel_not_rotated",
            "is what the kernels used as they are give: going backwards, kernel offset (u, v) carries dout from "
            "output (i, j) to the input pixel (i·S + u, j·S + v). Written as a correlation over dout, that is the "
            "kernel rotated by 180° (section 7).",
            returns=lambda case: torch.nn.grad.conv2d_input(case.x.shape, torch.flip(_tensor(case.w), dims=(2, 3)),
                                                            _tensor(case.dout), stride=case.stride,
                                                            padding=case.padding).numpy()),
    Mistake("conv.conv2d_backward.dx_cut_top_left",
            "was cut from the top left corner of the padded image's gradient: x sits in its middle, P rows and "
            "columns in from each side.",
            returns=lambda case: _dx_of_padded(case)[:, :, :case.x.shape[2], :case.x.shape[3]]),
    Mistake("conv.conv2d_backward.dx_cut_bottom_right",
            "was cut from the bottom right corner of the padded image's gradient: x sits in its middle, P rows and "
            "columns in from each side.",
            returns=lambda case: _dx_of_padded(case)[:, :, 2 * case.padding:, 2 * case.padding:]),
    *_conv_backward_tail("dx"),
)

CONV2D_BACKWARD_DW_MISTAKES = (
    _CONV_BACKWARD_NOT_FINITE,
    Mistake("conv.conv2d_backward.dw_per_image", "has one dw per image: sum over the images (the batch axis).",
            shows=_part_shows_shape("dw", lambda case: (len(case.x), *case.w.shape))),
    Mistake("conv.conv2d_backward.dw_axes_swapped",
            "has its first two axes swapped: dw has w's layout (F, C, KH, KW).",
            shows=_part_shows_shape("dw", lambda case: np.take(case.w.shape, (1, 0, 2, 3)))),
    Mistake("conv.conv2d_backward.dw_batch_mean",
            "is the mean over the images: dw is their sum, N times larger.",
            returns=lambda case: case.grads["dw"] / len(case.x)),
    Mistake("conv.conv2d_backward.dw_rotated",
            "is rotated by 180°: weight w[f, c, u, v] multiplied the pixel u rows down and v columns right of each "
            "window's corner, so dw[f, c, u, v] collects that pixel times the window's entry of dout.",
            returns=lambda case: _rotated(case.grads["dw"])),
    Mistake("conv.conv2d_backward.dw_position_mean",
            "is the mean over the output positions: dw is their sum, H_out·W_out times larger.",
            shows=_times("dw", lambda case: case.dout[0, 0].size)),
    *_conv_backward_tail("dw"),
)

CONV2D_BACKWARD_DB_MISTAKES = (
    _CONV_BACKWARD_NOT_FINITE,
    Mistake("conv.conv2d_backward.db_per_image", "has one db per image: sum over the images too.",
            shows=_part_shows_shape("db", lambda case: case.dout.shape[:2])),
    Mistake("conv.conv2d_backward.db_per_position", "has one db per output position: sum over the positions too.",
            shows=_part_shows_shape("db", lambda case: case.dout.shape[1:])),
    Mistake("conv.conv2d_backward.db_is_dout", "has dout's shape: sum dout over the images and positions.",
            shows=_part_shows_shape("db", lambda case: case.dout.shape)),
    Mistake("conv.conv2d_backward.db_one_number",
            "is one number for all filters: each filter has its own bias, so db has one entry per filter.",
            shows=_part_shows_shape("db", lambda case: ())),
    Mistake("conv.conv2d_backward.db_mean", "is the mean of dout: db is its sum over the images and positions.",
            shows=_times("db", lambda case: case.dout[:, 0].size)),
    Mistake("conv.conv2d_backward.db_batch_mean", "is the mean over the images: sum over them too, don't average.",
            returns=lambda case: case.grads["db"] / len(case.x)),
    *_conv_backward_tail("db"),
)


def _conv_backward_cases(rng):
    def r(*shape):
        return rng.standard_normal(shape)

    return [  # (what is new, x, w, stride, padding)
        ("windows", r(1, 1, 4, 5), r(1, 1, 1, 1), 1, 0),
        ("overlap", r(1, 1, 4, 5), r(1, 1, 2, 3), 1, 0),
        ("batch", r(2, 3, 5, 6), r(4, 3, 3, 2), 1, 0),
        ("padding", r(2, 2, 5, 5), r(3, 2, 3, 3), 1, 1),
        ("stride", r(2, 3, 8, 7), r(2, 3, 3, 3), 2, 0),
        ("stride", r(1, 2, 7, 9), r(3, 2, 2, 3), 3, 2),
        ("float32", r(2, 3, 6, 7).astype(np.float32), r(3, 3, 3, 2).astype(np.float32), 2, 1),
    ]


_CONV_BACKWARD_PARTS = (("dx", CONV2D_BACKWARD_DX_MISTAKES), ("dw", CONV2D_BACKWARD_DW_MISTAKES),
                        ("db", CONV2D_BACKWARD_DB_MISTAKES))


def _check_conv_backward(fn, name: str) -> int:
    rng = np.random.default_rng(6)
    cases = _conv_backward_cases(rng)
    for new, x, w, stride, padding in cases:
        b = rng.standard_normal(w.shape[0]).astype(x.dtype)
        dout = rng.standard_normal(_conv_shape(x.shape, w.shape, stride, padding)).astype(x.dtype)
        grads = _grads_of(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
                          {"x": x, "w": w, "b": b}, dout)
        case = _ConvGradCase(new, x, w, dout, stride, padding, {f"d{key}": grad for key, grad in grads.items()})
        shown = (f"x {x.shape}, w {w.shape}, stride={stride}, padding={padding}"
                 + (", float32" if x.dtype == np.float32 else ""))
        result = call(fn, dout, (x, w, stride, padding), name=name, shown=f"dout, cache with {shown}",
                      returns=("dx", "dw", "db"), keeps={0: "dout", 1: "cache"})
        for (part, mistakes), got in zip(_CONV_BACKWARD_PARTS, result):
            compare(got, case.grads[part], f"{name}'s {part} ({shown})", tol=_tolerance(x, w), mistakes=mistakes,
                    inputs=(case,), expected_as="torch's")
    return len(cases)


def check_conv2d_backward_naive(conv2d_backward_naive) -> None:
    """``conv2d_backward_naive(dout, cache)`` with cache = (x, w, stride, padding): dout (N, F, H_out, W_out) →
    (dx, dw, db) of shapes (N, C, H, W), (F, C, KH, KW), (F,), against torch's autograd. It must leave dout and the
    cache as they were (a backward pass only reads them)."""
    n = _check_conv_backward(numpy_only(conv2d_backward_naive), "conv2d_backward_naive")
    passed("conv2d_backward_naive", f"dx, dw and db equal to torch's autograd on {n} cases")


def check_conv2d_backward_fast(conv2d_backward_fast, max_seconds: float = 0.3) -> None:
    """As :func:`check_conv2d_backward_naive`, then a CIFAR-sized batch that must take under ``max_seconds``."""
    conv2d_backward_fast = numpy_only(conv2d_backward_fast)
    n = _check_conv_backward(conv2d_backward_fast, "conv2d_backward_fast")
    x, w, dout = _cifar_batch(seed=7, third=(16, 16, 32, 32))
    # timed in the kernel, as in check_conv2d_fast: a speed requirement the kernel reports. Measured on one
    # core: the solution's loops 0.91 s, its vectorised version 5 ms (tens of ms for a loop over kernel offsets)
    result, seconds = _where_it_runs(_clocked, conv2d_backward_fast, dout, (x, w, 1, 1))
    expect(seconds <= max_seconds,
           f"conv2d_backward_fast took {seconds:.2f} s on 16 images 3×32×32 with 16 filters 3×3 (allowed "
           f"{max_seconds} s): it is not vectorised. Loops over images, filters or output pixels are what make "
           "conv2d_backward_naive slow; section 7 writes dw and dx as contractions over all windows at once.",
           "conv.conv2d_backward_fast.not_vectorised")
    expect_tuple(result, ("dx", "dw", "db"), "conv2d_backward_fast")
    expected = _grads_of(lambda x, w: F.conv2d(x, w, padding=1), {"x": x, "w": w}, dout)
    for part, got in zip(("dx", "dw"), result):
        compare(got, expected[part[1:]], f"conv2d_backward_fast's {part} on 16 images 3×32×32", tol=1e-10,
                expected_as="torch's")
    passed("conv2d_backward_fast", f"equal to torch's autograd on {n + 1} cases; 16 CIFAR-sized images in "
                                   f"{1000 * seconds:.0f} ms")


# ---------------------------------------------------------------- max pooling

def _pool_cases(rng):
    def r(*shape):
        return rng.standard_normal(shape)

    return [  # (what is new, x, kernel_size, stride or None for the default)
        ("windows", r(1, 1, 4, 4), 2, None),
        ("batch", r(2, 3, 6, 4), 2, None),
        ("kernel", r(2, 2, 6, 9), 3, None),
        ("odd", r(1, 2, 5, 7), 2, None),
        ("overlap", r(2, 2, 5, 6), 2, 1),
        ("overlap", r(1, 3, 7, 7), 3, 2),
        ("float32", r(2, 3, 6, 6).astype(np.float32), 2, None),
    ]


def _pool_case(x, k, stride) -> str:
    return (f"x {x.shape}, kernel_size={k}" + ("" if stride is None else f", stride={stride}")
            + (", float32" if x.dtype == np.float32 else ""))


def _torch_max_pool(x, k, stride=None) -> np.ndarray:
    """torch's max_pool2d in float64: x (N, C, H, W) → (N, C, H_out, W_out)."""
    return F.max_pool2d(_tensor(x), k, stride).numpy()


def _pool_shape(x_shape, k, stride=None, ceil_mode=False) -> tuple:
    return tuple(F.max_pool2d(_meta(x_shape), k, stride, ceil_mode=ceil_mode).shape)


def _pool_gives_shape(shape_of):
    """``shows=`` for a mistake recognised by its output shape ``shape_of(x, k, stride)``, where torch's differs."""
    def shows(out, x, k, stride):
        return np.shape(out) == tuple(shape_of(x, k, stride)) != _pool_shape(x.shape, k, stride)
    return shows


MAX_POOL2D_MISTAKES = (  # inputs: x, kernel_size, stride (None: the default)
    Mistake("conv.max_pool2d.returns_tuple",
            "returned a tuple: return the pooled array only (the backward pass gets the forward's inputs as its "
            "cache).", shows=lambda out, *inputs: isinstance(out, tuple)),
    Mistake("conv.max_pool2d.stride_one_by_default",
            "has the shape of stride 1: the default stride is kernel_size (windows side by side, as nn.MaxPool2d).",
            shows=lambda out, x, k, stride: stride is None and _pool_gives_shape(
                lambda x, k, stride: _pool_shape(x.shape, k, 1))(out, x, k, stride)),
    Mistake("conv.max_pool2d.rounded_up",
            "has a window more where the size is not a multiple of the stride: a window that would stick out past "
            "the edge is not used, so round down.",
            shows=_pool_gives_shape(lambda x, k, stride: _pool_shape(x.shape, k, stride, ceil_mode=True))),
    Mistake("conv.max_pool2d.channels_pooled", "pools over the channels too: pool each channel on its own.",
            shows=_pool_gives_shape(lambda x, k, stride: np.take(_pool_shape(x.shape, k, stride), (0, 2, 3)))),
    Mistake("conv.max_pool2d.channels_last", "is channels-last: keep (N, C, H_out, W_out).",
            shows=_pool_gives_shape(lambda x, k, stride: np.take(_pool_shape(x.shape, k, stride), (0, 2, 3, 1)))),
    Mistake("conv.max_pool2d.average", "is average pooling: take each window's maximum.",
            returns=lambda x, k, stride: F.avg_pool2d(_tensor(x), k, stride).numpy()),
    Mistake("conv.max_pool2d.minimum", "takes each window's minimum: take the maximum.",
            returns=lambda x, k, stride: -_torch_max_pool(-x, k, stride)),
    Mistake("conv.max_pool2d.rows_and_columns_swapped",
            "mixes up rows and columns: output (i, j) is the maximum of the window at row i·S, column j·S.",
            returns=lambda x, k, stride: _torch_max_pool(x, k, stride).transpose(0, 1, 3, 2)),
)


def check_max_pool2d(max_pool2d) -> None:
    """``max_pool2d(x, kernel_size=2, stride=None)``: x (N, C, H, W) → (N, C, H_out, W_out), against torch's
    ``F.max_pool2d``. It must leave x as it was."""
    max_pool2d = numpy_only(max_pool2d)
    cases = _pool_cases(np.random.default_rng(8))
    for new, x, k, stride in cases:
        case = _pool_case(x, k, stride)
        args = (x, k) if stride is None else (x, k, stride)
        out = call(max_pool2d, *args, shown=case, returns="array", keeps={0: "x"})
        compare(out, _torch_max_pool(x, k, stride), f"max_pool2d ({case})", tol=_tolerance(x),
                mistakes=MAX_POOL2D_MISTAKES, inputs=(x, k, stride), expected_as="torch's")
    passed("max_pool2d", f"equal to torch's max_pool2d on {len(cases)} cases")


class _PoolGradCase(NamedTuple):
    """One case of max pooling's backward pass: what it adds to the cases before it, its arrays, and torch's
    gradient ``dx``."""
    new: str
    x: np.ndarray        # (N, C, H, W)
    kernel_size: int
    stride: int
    dout: np.ndarray     # (N, C, H_out, W_out)
    dx: np.ndarray       # (N, C, H, W)


def _pool_grad(case, pool=F.max_pool2d, dout=None) -> np.ndarray:
    """The gradient of ``pool`` (torch's) for ``case``, of ``dout`` (the case's by default)."""
    forward = lambda x: pool(x, case.kernel_size, case.stride)  # noqa: E731
    return _grads_of(forward, {"x": case.x}, case.dout if dout is None else dout)["x"]


def _window_grads(case, transposed=False) -> np.ndarray:
    """dx from torch alone: each window of x (torch's unfold) pooled on its own by F.max_pool2d, whose autograd
    marks the window's maximum with its dout; each window's gradient (``transposed``: with its rows and columns
    swapped) then goes back to its place in x, overlapping windows adding up (torch's fold)."""
    x, k, s = _tensor(case.x), case.kernel_size, case.stride
    n, c, h, w = x.shape
    columns = F.unfold(x.reshape(n * c, 1, h, w), k, stride=s)                # (N·C, K·K, windows)
    windows = columns.transpose(1, 2).reshape(-1, 1, k, k).requires_grad_(True)
    F.max_pool2d(windows, k).backward(_tensor(case.dout).reshape(-1, 1, 1, 1))
    routed = windows.grad.transpose(2, 3) if transposed else windows.grad
    dx = F.fold(routed.reshape(n * c, -1, k * k).transpose(1, 2), (h, w), k, stride=s)
    return dx.reshape(n, c, h, w).numpy()


MAX_POOL2D_BACKWARD_MISTAKES = (  # inputs: a _PoolGradCase
    Mistake("conv.max_pool2d_backward.dout_shape",
            "has dout's shape: dx has one entry per entry of x, most of them 0.",
            shows=lambda dx, case: np.shape(dx) == case.dout.shape != case.x.shape),
    Mistake("conv.max_pool2d_backward.spread_evenly",
            "spreads dout evenly over each window, as average pooling would: in max pooling only the window's "
            "maximum reached the output, so only it receives the gradient.",
            returns=lambda case: _pool_grad(case, F.avg_pool2d)),
    Mistake("conv.max_pool2d_backward.ignores_dout",
            "marks where the maxima are but ignores dout: by the chain rule the maximum receives dout of its window "
            "(times 1).", returns=lambda case: _pool_grad(case, dout=np.ones(case.dout.shape))),
    Mistake("conv.max_pool2d_backward.times_x",
            "multiplies by x: the maximum passed x through unchanged, so its local derivative is 1 and it receives "
            "dout as it is.", returns=lambda case: case.dx * case.x),
    Mistake("conv.max_pool2d_backward.minimum", "routes the gradient to each window's minimum: it goes to the maximum.",
            returns=lambda case: _pool_grad(case, lambda x, k, s: -F.max_pool2d(-x, k, s))),
    Mistake("conv.max_pool2d_backward.offsets_swapped",
            "sends each window's gradient to the entry with the maximum's row and column offsets swapped: offset "
            "(u, v) in a window is u rows down and v columns right of its corner.",
            returns=lambda case: _window_grads(case, transposed=True)),
    Mistake("conv.max_pool2d_backward.tied_maxima",
            "goes wrong where windows hold several equal maxima (zeros, as after a ReLU). The maximum passed on one "
            "value, so one entry receives the gradient: the first maximum in row-by-row order, as PyTorch picks it "
            "(np.argmax returns the first). dx must sum to what dout sums to.",
            shows=lambda dx, case: case.new == "ties" and np.shape(dx) == case.x.shape),
    Mistake("conv.max_pool2d_backward.overlapping_windows",
            "goes wrong where windows overlap (stride smaller than the window): an entry of x can be the maximum of "
            "several windows and then collects the gradient of each of them; add, don't overwrite.",
            shows=lambda dx, case: case.new == "overlap" and np.shape(dx) == case.x.shape),
)


def check_max_pool2d_backward(max_pool2d_backward) -> None:
    """``max_pool2d_backward(dout, cache)`` with cache = (x, kernel_size, stride): dout (N, C, H_out, W_out) → dx
    (N, C, H, W), against torch's autograd; windows with tied maxima send the gradient to the first of them, as
    torch does. It must leave dout and the cache as they were."""
    max_pool2d_backward = numpy_only(max_pool2d_backward)
    rng = np.random.default_rng(9)
    ties = np.maximum(rng.standard_normal((2, 2, 6, 6)).round(0), 0)   # as after a ReLU: many windows all 0
    cases = [*_pool_cases(rng), ("ties", ties, 2, None)]
    for new, x, k, stride in cases:
        shown = _pool_case(x, k, stride)
        shape = _pool_shape(x.shape, k, stride)
        dout = (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(x.dtype)
        expected = _grads_of(lambda x: F.max_pool2d(x, k, stride), {"x": x}, dout)["x"]
        case = _PoolGradCase(new, x, k, stride or k, dout, expected)
        dx = call(max_pool2d_backward, dout, (x, k, stride or k), shown=f"dout, cache with {shown}", returns="array",
                  keeps={0: "dout", 1: "cache"})
        compare(dx, case.dx, f"max_pool2d_backward ({shown})", tol=_tolerance(x), mistakes=MAX_POOL2D_BACKWARD_MISTAKES,
                inputs=(case,), expected_as="torch's")
    passed("max_pool2d_backward", f"equal to torch's autograd on {len(cases)} cases, tied maxima included")


def _avg_pool_grad(dout, x) -> np.ndarray:
    """torch's gradient of global average pooling: dout (N, C), x (N, C, H, W) → (N, C, H, W)."""
    return _grads_of(lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1), {"x": x}, dout)["x"]


def _divided_by_one_side(dx, dout, x) -> bool:
    """Whether dx divides dout by H or by W only, not by H·W."""
    return any(close(dx, _avg_pool_grad(dout, x) * side) for side in x.shape[2:])


GLOBAL_AVG_POOL_BACKWARD_MISTAKES = (  # inputs: dout, x
    Mistake("conv.global_avg_pool_backward.keepdims",
            "has shape (N, C, 1, 1): each of the H·W pixels of a map gets its share, so broadcast to x's full shape.",
            shows=lambda dx, dout, x: np.shape(dx) == (*x.shape[:2], 1, 1) != x.shape),
    Mistake("conv.global_avg_pool_backward.channels_last", "is channels-last: keep x's layout (N, C, H, W).",
            shows=lambda dx, dout, x: np.shape(dx) == tuple(np.take(x.shape, (0, 2, 3, 1))) != x.shape),
    Mistake("conv.global_avg_pool_backward.dout_shape", "has dout's shape: dx has one entry per pixel of x.",
            shows=lambda dx, dout, x: np.shape(dx) == dout.shape),
    Mistake("conv.global_avg_pool_backward.not_divided",
            "is H·W times too large: the mean divides by H·W, and so does its gradient.",
            returns=lambda dout, x: _avg_pool_grad(dout, x) * x.shape[2] * x.shape[3]),
    Mistake("conv.global_avg_pool_backward.divided_by_one_side",
            "divides by H or by W only: divide by H·W, the number of pixels averaged.", shows=_divided_by_one_side),
    Mistake("conv.global_avg_pool_backward.divided_by_batch",
            "is N times too small: each image's map is averaged on its own; do not divide by the batch size.",
            returns=lambda dout, x: _avg_pool_grad(dout, x) / len(x)),
    Mistake("conv.global_avg_pool_backward.same_for_every_image",
            "gives every image the same gradient: each image keeps its own dout[n, c].",
            returns=lambda dout, x: _avg_pool_grad(np.tile(dout.mean(axis=0), (len(dout), 1)), x)),
    Mistake("conv.global_avg_pool_backward.ignores_dout",
            "ignores dout: by the chain rule each pixel receives dout[n, c] times its local derivative 1/(H·W).",
            returns=lambda dout, x: np.full(x.shape, 1 / (x.shape[2] * x.shape[3]))),
    Mistake("conv.global_avg_pool_backward.times_x",
            "multiplies by x: the mean is linear, so its local derivative is the constant 1/(H·W), not x.",
            returns=lambda dout, x: _avg_pool_grad(dout, x) * x),
    Mistake("conv.global_avg_pool_backward.dout_transposed",
            "swaps dout's axes: dout[n, c] belongs to image n, channel c.",
            returns=lambda dout, x: _avg_pool_grad(dout.T, x)),
)


def check_global_avg_pool_backward(global_avg_pool_backward) -> None:
    """``global_avg_pool_backward(dout, cache)`` with cache = x: dout (N, C) → dx (N, C, H, W), against torch's
    autograd; dx must be an array of its own (writable), and dout and x must stay as they were."""
    global_avg_pool_backward = numpy_only(global_avg_pool_backward)
    rng = np.random.default_rng(11)
    cases = [rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 2, 5, 7)), rng.standard_normal((2, 4, 1, 1)),
             rng.standard_normal((3, 3, 2, 5)), rng.standard_normal((2, 3, 6, 3)).astype(np.float32)]
    for x in cases:
        case = f"x {x.shape}" + (", float32" if x.dtype == np.float32 else "")
        dout = rng.standard_normal(x.shape[:2]).astype(x.dtype)
        dx, writable = _where_it_runs(_writable, global_avg_pool_backward, dout, x, keeps={0: "dout", 1: "x"})
        what = f"global_avg_pool_backward ({case})"
        compare(dx, _avg_pool_grad(dout, x), what, tol=_tolerance(x), mistakes=GLOBAL_AVG_POOL_BACKWARD_MISTAKES,
                inputs=(dout, x), expected_as="torch's")
        expect(writable, f"{what} returned a read-only view (one value shared by every pixel of a map): the result "
                         "must be an array of its own, which the layer before may change in place.",
               "conv.global_avg_pool_backward.read_only_view")
    passed("global_avg_pool_backward", f"equal to torch's autograd on {len(cases)} cases")
