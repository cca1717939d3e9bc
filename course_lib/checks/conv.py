"""Checks for notebook 02 (convolution by hand): output sizes, convolutions, linear layers,
global average pooling and parameter counts, plus the single-thread benchmark; then the backward
passes of convolution, max pooling and global average pooling, against torch's autograd.

References come from torch, computed inside each check (``F.conv2d`` and its output shape,
``nn.Linear``, the parameters of ``nn.Conv2d`` and ``nn.Linear`` layers built there), and from
small hand-computed cases. When a result is wrong, the check also computes what the usual
mistakes would have returned (a flipped kernel, padding on one side, a missing bias, ...), from
torch as well, and names the one that matches. The student's functions are called through
:func:`course_lib.checks.numpy_only`: this notebook's exercises are NumPy only. What only the
notebook's kernel can see (how long a call takes, whether a returned array is writable) is measured
there (:func:`course_grading.verdict.in_kernel`).
"""
from __future__ import annotations

import contextlib
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks import NumpyOnlyError, call, expect, expect_shape, expect_tuple, numpy_only, passed
from course_lib.checks.remote import in_kernel

__all__ = [
    "check_conv_output_size", "check_conv2d_naive", "check_conv2d_fast", "check_linear",
    "check_global_avg_pool", "check_count_params_mlp", "check_count_params_conv",
    "check_conv2d_backward_naive", "check_conv2d_backward_fast", "check_max_pool2d", "check_max_pool2d_backward",
    "check_global_avg_pool_backward",
    "scaled_error", "tolerance", "one_thread", "best_time", "benchmark_conv2d",
]


def scaled_error(actual, expected) -> float:
    """max |actual − expected| / max |expected|: the error relative to the output's scale.

    Unlike an entry-by-entry relative error it does not blow up on outputs that happen to
    be close to zero (sums of products of either sign often are).
    """
    actual, expected = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    if actual.size == 0:
        return 0.0
    return float(np.max(np.abs(actual - expected)) / max(np.max(np.abs(expected)), 1e-30))


def tolerance(*arrays) -> float:
    """1e-10 when every input is float64, else 1e-5 (float32 keeps about 7 digits)."""
    return 1e-10 if all(np.asarray(a).dtype == np.float64 for a in arrays if a is not None) else 1e-5


def _name_mistake(actual, candidates, tol: float):
    """The hint of the first candidate (result of a known mistake) that ``actual`` reproduces."""
    for wrong, hint in candidates:
        if wrong is not None and np.shape(wrong) == np.shape(actual) and scaled_error(actual, wrong) <= tol:
            return hint
    return None


_CODE_WORDS = {"dx", "dw", "db", "dout"}  # names of arrays, kept in lower case at the start of a sentence


def _sentence(text: str) -> str:
    """``text`` with a capital first letter, unless it starts with code (``stride=2 ...``, ``w's ...``, ``dw ...``)."""
    first = text.split(" ", 1)[0]
    return text[0].upper() + text[1:] if first.isalpha() and first.islower() and first not in _CODE_WORDS else text


def _call(fn, *args, hint: str = "", **kwargs):
    """``call`` plus a hint appended when the student's code crashes (not when it is a stub)."""
    try:
        return call(fn, *args, **kwargs)
    except NumpyOnlyError:
        raise
    except AssertionError as err:
        if not hint or "not implemented" in str(err):
            raise
        raise AssertionError(f"{err} Hint: {hint}") from err.__cause__


def _int_result(result, what: str) -> int:
    expect(isinstance(result, (int, np.integer)) and not isinstance(result, bool),
           f"{what} should return an int, got {result!r} ({type(result).__name__})"
           + (" — / gives a float, floor division (//) an int." if isinstance(result, float) else "."))
    return int(result)


# ---------------------------------------------------------------- output size

_SIZE_CASES = [  # n, kernel, padding, stride, answer (worked by hand)
    (32, 5, 0, 1, 28), (28, 5, 2, 1, 28), (32, 3, 1, 1, 32), (32, 3, 1, 2, 16),
    (8, 3, 0, 2, 3), (7, 3, 0, 2, 3), (5, 5, 0, 1, 1), (227, 11, 0, 4, 55), (10, 4, 3, 3, 5),
]


def check_conv_output_size(conv_output_size) -> None:
    """``conv_output_size(n, kernel_size, padding=0, stride=1)`` on worked examples."""
    conv_output_size = numpy_only(conv_output_size)

    def positions(n, k, p=0, s=1):  # what torch's conv1d gives, for the usual mistakes below
        return F.conv1d(torch.empty(1, 1, n, device="meta"), torch.empty(1, 1, k, device="meta"),
                        stride=s, padding=p).shape[-1]

    for index, (n, k, p, s, answer) in enumerate(_SIZE_CASES):
        if index == 0:  # the text's first example, with the default padding and stride
            what = f"conv_output_size({n}, {k})"
            result = _int_result(call(conv_output_size, n, k), what)
        else:
            what = f"conv_output_size({n}, {k}, padding={p}, stride={s})"
            result = _int_result(call(conv_output_size, n, k, padding=p, stride=s), what)
        if result != answer:
            mistakes = [
                (answer - 1, "count the positions: the first window sits at 0, then one every S pixels, so add 1."),
                (positions(n + p, k, 0, s), "padding adds P pixels on *both* sides of the input."),
                (positions(n, k, p, 1), "the stride is missing: the window moves S pixels at a time, so there are "
                                        "about S times fewer positions than with stride 1."),
                (positions(n + s - 1, k, p, s),
                 "round down (floor), not up: a window that would stick out past the edge is not used."),
                (positions(n + 1, k, p, s) - 1, "the + 1 (the first window) comes after the division by S, not "
                                                "inside it."),
                (positions(n, k, 0, s) + 2 * p, "the padding belongs inside the division: the stride steps over "
                                                "padded pixels like any other."),
                (positions(n + 2 * k, k, p, s), "the kernel size is subtracted, not added: a larger kernel leaves "
                                                "fewer positions."),
            ]
            hint = next((h for wrong, h in mistakes if wrong == result and wrong != answer), None)
            raise AssertionError(f"{what} returned {result}, expected {answer} (a worked example in the text). "
                                 + _sentence(hint or "Count the window positions: the first starts at the padded "
                                                     "input's first pixel, each next one S pixels further, as long "
                                                     "as the whole window fits."))
    passed("conv_output_size", f"{len(_SIZE_CASES)} worked examples")


# ---------------------------------------------------------------- convolution

def _tensor(a):
    """A NumPy array (or None) as a float64 tensor."""
    return None if a is None else torch.as_tensor(np.ascontiguousarray(a, dtype=np.float64))


def _meta(shape):
    return torch.empty(tuple(shape), device="meta")


def _conv_shape_mistakes(x, w, stride, padding, expected):
    """(output shape a usual mistake gives, hint), the shapes from torch's conv2d on the meta device."""
    (n, c), f = x.shape[:2], w.shape[0]
    ho, wo = expected[2:]

    def shape(x_shape, w_shape, s, p):
        return tuple(F.conv2d(_meta(x_shape), _meta(w_shape), stride=s, padding=p).shape)

    one_side = (n, c, x.shape[2] + padding, x.shape[3] + padding)
    return [
        (shape(x.shape, w.shape, stride, 0),
         f"padding={padding} was ignored: add P zeros on every side of the image before sliding the kernel."),
        (shape(x.shape, w.shape, 1, padding),
         f"stride={stride} was ignored: the window moves S pixels at a time, so each axis has about S times "
         "fewer positions than with stride 1."),
        (shape(one_side, w.shape, stride, 0),
         "the image was padded on one side only: P zeros go on every side (top, bottom, left and right)."),
        (shape(x.shape, (*w.shape[:2], w.shape[3], w.shape[2]), stride, padding),
         "KH and KW are mixed up: w has torch's layout (F, C, KH, KW), KH rows by KW columns."),
        ((n, f, ho - 1, wo - 1), "one window position is missing on each axis: count the first window, at the "
                                 "padded image's first pixel, too."),
        ((f, n, ho, wo), "the axes are (F, N, ...): return (N, F, H_out, W_out), images first."),
        ((n, ho, wo, f), "the output is channels-last: return (N, F, H_out, W_out) like torch."),
        ((n, c, ho, wo), "one map per *input* channel: each of the F filters sums over all C input channels "
                         "and gives one output map, so the result has F channels."),
    ]


def _conv_value_mistakes(x, w, b, stride, padding, expected):
    """(output a usual mistake gives, hint), each computed with torch's conv2d."""
    c, (kh, kw), (ho, wo) = x.shape[1], w.shape[2:], expected.shape[2:]
    xt, wt, bt = _tensor(x), _tensor(w), _tensor(b)

    def conv(image=xt, kernel=wt, bias=bt, s=stride, p=padding):
        return F.conv2d(image, kernel, bias, stride=s, padding=p).numpy()

    mistakes = [
        (conv(kernel=wt.flip(2, 3)),
         "the kernel is flipped: that is the textbook convolution. Deep-learning frameworks compute "
         "cross-correlation, which multiplies each window with w as it is, without flipping it (section 2)."),
    ]
    if b is not None:
        mistakes.append((conv(bias=None), "the bias is missing: add b[f] to every pixel of output map f."))
        for times in sorted({c, kh * kw, c * kh * kw} - {1}):
            mistakes.append((conv(bias=times * bt),
                             f"the bias was added {times} times per output pixel: add b[f] once, after the sum."))
    if stride > 1:
        mistakes.append((conv(s=1)[:, :, :ho, :wo],
                         f"stride={stride} is ignored when placing the windows: the output has the right size, "
                         "but neighbouring windows must start S pixels apart, not 1."))
    if padding:
        for sides, pads in (("top/left", (2 * padding, 0) * 2), ("bottom/right", (0, 2 * padding) * 2)):
            mistakes.append((conv(image=F.pad(xt, pads), p=0),
                             f"the image was padded on one side only ({sides}, 2P zeros): "
                             "put P zeros on every side instead."))
        for mode, how in (("replicate", "repeating the edge pixels"), ("reflect", "reflection")):
            if padding < min(x.shape[2:]):  # reflection needs an image larger than the padding
                mistakes.append((conv(image=F.pad(xt, (padding,) * 4, mode=mode), p=0),
                                 f"the border was padded by {how}: pad with zeros (np.pad's default mode)."))
    if w.shape[0] == w.shape[1]:
        mistakes.append((conv(kernel=wt.transpose(0, 1)),
                         "w's first two axes are swapped: w[f, c] is the kernel of filter f on input channel c."))
    if kh == kw:
        mistakes.append((conv(kernel=wt.transpose(2, 3)),
                         "the kernel is transposed: w[f, c, u, v] multiplies the pixel u rows down and "
                         "v columns right of the window's corner."))
    return mistakes


def _compare_conv(fn, name, x, w, b=None, stride=1, padding=0, use_defaults=False) -> None:
    """Call the student's conv on one case and compare with torch, naming a recognised mistake."""
    case = f"x {x.shape}, w {w.shape}, {'no bias' if b is None else 'bias'}, stride={stride}, padding={padding}"
    if x.dtype == np.float32:
        case += ", float32"
    hint = ("x is (N, C, H, W) and w is (F, C, KH, KW), torch's layout: each filter w[f] has shape "
            "(C, KH, KW) and covers all C channels of one KH×KW window of the padded image.")
    if use_defaults:
        out = _call(fn, x, w, hint=hint)
    else:
        out = _call(fn, x, w, b, stride=stride, padding=padding, hint=hint)
    expected = F.conv2d(_tensor(x), _tensor(w), _tensor(b), stride=stride, padding=padding).numpy()
    got_shape = getattr(out, "shape", None)
    if got_shape is not None and tuple(got_shape) != expected.shape:
        hint = next((h for shape, h in _conv_shape_mistakes(x, w, stride, padding, expected.shape)
                     if shape == tuple(got_shape) and shape != expected.shape), None)
        raise AssertionError(f"{name} ({case}) returned shape {tuple(got_shape)}, expected {expected.shape} "
                             "(torch's conv2d). " + _sentence(hint or "The output is (N, F, H_out, W_out): one "
                                                              "map per filter, one value per window position."))
    expect_shape(out, expected.shape, f"{name}'s output ({case})")
    out = np.asarray(out, dtype=np.float64)
    expect(np.all(np.isfinite(out)), f"{name} ({case}) returned NaN or inf: is the output array initialised "
           "(np.zeros, not np.empty)?")
    tol = tolerance(x, w, b)
    err = scaled_error(out, expected)
    if err > tol:
        hint = _name_mistake(out, _conv_value_mistakes(x, w, b, stride, padding, expected), max(tol, 1e-5) * 10)
        raise AssertionError(f"{name} ({case}) differs from torch's conv2d (relative error {err:.1e}, "
                             f"allowed {tol:.0e}). " + _sentence(hint or "Check which window each output value "
                             "reads (where it starts in the padded image for output position (i, j)) and that "
                             "every filter sums over all input channels and kernel offsets, then adds its bias."))


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


def _where_it_runs(step, fn, *args, **kwargs):
    """``step(fn, *args, **kwargs)`` through :func:`call`, run where ``fn`` lives: under the grader, in the
    notebook's kernel (``in_kernel``), for what only the kernel sees (how long fn took, the array it returned)."""
    remote = in_kernel(step)

    def through(*args, **kwargs):
        return remote(fn, *args, **kwargs)

    through.__name__ = getattr(fn, "__name__", "your function")
    return call(through, *args, **kwargs)


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


def check_conv2d_naive(conv2d_naive) -> None:
    """``conv2d_naive(x, w, b=None, stride=1, padding=0)`` against torch on small cases."""
    n = _check_conv(numpy_only(conv2d_naive), "conv2d_naive")
    passed("conv2d_naive", f"equal to torch's conv2d on {n} cases")


def check_conv2d_fast(conv2d_fast, max_seconds: float = 0.5) -> None:
    """As :func:`check_conv2d_naive`, then a CIFAR-sized batch that must take under ``max_seconds``."""
    conv2d_fast = numpy_only(conv2d_fast)
    n = _check_conv(conv2d_fast, "conv2d_fast")
    x, w, b = _cifar_batch(seed=3, third=(16,))
    # timed in the kernel, without the grader's round trip: the kernel reports this number (a speed
    # requirement, not correctness, which is checked here on out)
    out, seconds = _where_it_runs(_clocked, conv2d_fast, x, w, b, stride=1, padding=1)
    expect(seconds <= max_seconds,
           f"conv2d_fast took {seconds:.2f} s on 16 images 3×32×32 with 16 filters 3×3 (allowed {max_seconds} s): "
           "it is not vectorised. Python loops over images, filters or output pixels are what make conv2d_naive "
           "slow; section 3 shows how to get all windows at once and combine them with the filters in one "
           "NumPy call.")
    expect_shape(out, (16, 16, 32, 32), "conv2d_fast's output on 16 images")
    err = scaled_error(out, F.conv2d(_tensor(x), _tensor(w), _tensor(b), padding=1).numpy())
    expect(err <= 1e-10, f"conv2d_fast is off on 16 images 3×32×32 with 16 filters (relative error {err:.1e}).")
    passed("conv2d_fast", f"equal to torch's conv2d on {n + 1} cases; 16 CIFAR-sized images in {1000 * seconds:.0f} ms")


# ---------------------------------------------------------------- linear layer and pooling

def check_linear(linear) -> None:
    """``linear(x, weight, bias)`` with torch.nn.Linear's layout against ``nn.Linear``."""
    linear = numpy_only(linear)
    rng = np.random.default_rng(4)
    layout = ("torch.nn.Linear stores weight as (out_features, in_features), one row per output unit: "
              "check which axis of weight meets the features of x.")
    cases = [
        (rng.standard_normal((3, 4)), rng.standard_normal((4, 4)), rng.standard_normal(4)),
        (rng.standard_normal((5, 3)), rng.standard_normal((2, 3)), rng.standard_normal(2)),
        (rng.standard_normal((1, 7)).astype(np.float32), rng.standard_normal((3, 7)).astype(np.float32),
         rng.standard_normal(3).astype(np.float32)),
    ]
    for x, weight, bias in cases:
        case = f"x {x.shape}, weight {weight.shape}, bias {bias.shape}" + (", float32" if x.dtype == np.float32 else "")
        out = _call(linear, x, weight, bias, hint=layout)
        layer = nn.Linear(weight.shape[1], weight.shape[0], dtype=torch.float64)
        with torch.no_grad():
            layer.weight.copy_(_tensor(weight))
            layer.bias.copy_(_tensor(bias))
            expected = layer(_tensor(x)).numpy()
        got_shape = getattr(out, "shape", None)
        if got_shape is not None and tuple(got_shape) == expected.shape[::-1] != expected.shape:
            raise AssertionError(f"linear ({case}) returned shape {tuple(got_shape)}, expected {expected.shape} "
                                 f"(N, out_features): one row per example. {layout}")
        expect_shape(out, expected.shape, f"linear's output ({case})")
        tol = tolerance(x, weight, bias)
        err = scaled_error(out, expected)
        if err > tol:
            xt, wt, bt = _tensor(x), _tensor(weight), _tensor(bias)
            square = weight.shape[0] == weight.shape[1]  # only then does the untransposed product run
            mistakes = [(F.linear(xt, wt.T, bt).numpy() if square else None, f"weight was not transposed. {layout}"),
                        (F.linear(xt, wt).numpy(), "the bias is missing: add it to every row."),
                        (F.linear(xt, wt.T).numpy() if square else None,
                         f"weight was not transposed and the bias is missing. {layout}")]
            hint = _name_mistake(out, mistakes, 1e-4)
            raise AssertionError(f"linear ({case}) differs from torch.nn.Linear (relative error {err:.1e}, "
                                 f"allowed {tol:.0e}). " + _sentence(hint or layout))
    passed("linear", f"equal to torch.nn.Linear on {len(cases)} cases")


def check_global_avg_pool(global_avg_pool) -> None:
    """``global_avg_pool(x)``: (N, C, H, W) → (N, C), against ``F.adaptive_avg_pool2d(x, 1)``."""
    global_avg_pool = numpy_only(global_avg_pool)
    rng = np.random.default_rng(5)
    cases = [rng.standard_normal((4, 4, 4, 4)), rng.standard_normal((2, 3, 5, 7)),
             (100 * rng.standard_normal((3, 5, 6, 6))).astype(np.float32)]
    for x in cases:
        case = f"x {x.shape}" + (", float32" if x.dtype == np.float32 else "")
        out = call(global_avg_pool, x)
        n, c, h, w = x.shape
        expected = F.adaptive_avg_pool2d(torch.as_tensor(x.astype(np.float64)), 1).flatten(1).numpy()
        got_shape = getattr(out, "shape", None)
        if got_shape is not None and tuple(got_shape) == (n, c, 1, 1):
            raise AssertionError(f"global_avg_pool ({case}) returned shape {(n, c, 1, 1)}: return (N, C), without "
                                 "the two axes of size 1 (no keepdims), so that a linear layer can take it.")
        if got_shape is not None and tuple(got_shape) == (n,):
            raise AssertionError(f"global_avg_pool ({case}) returned shape {(n,)}: it averaged the channels too. "
                                 "Keep one number per channel: average over H and W only.")
        expect_shape(out, (n, c), f"global_avg_pool's output ({case}); pool over H and W (axes 2 and 3)")
        tol = tolerance(x)
        err = scaled_error(out, expected)
        if err > tol:
            mistakes = [(x.mean(axis=axes), f"it averaged over axes {axes}: the spatial axes of (N, C, H, W) are "
                         "2 and 3 (H and W).") for axes in ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3))]
            mistakes += [(x.sum(axis=(2, 3)), f"it summed instead of averaging (too large by a factor H·W = {h * w})."),
                         (x.max(axis=(2, 3)), "that is global *max* pooling; average the H·W values instead.")]
            hint = _name_mistake(out, mistakes, 1e-4)
            raise AssertionError(f"global_avg_pool ({case}) is off (relative error {err:.1e}, allowed {tol:.0e}). "
                                 + _sentence(hint or "Average each (image, channel) map over its H·W pixels."))
    passed("global_avg_pool", f"equal to torch's adaptive_avg_pool2d(x, 1) on {len(cases)} cases")


# ---------------------------------------------------------------- parameter counts

def check_count_params_mlp(count_params_mlp) -> None:
    """``count_params_mlp(d_in, hidden_sizes, d_out)`` against torch Linear layers."""
    count_params_mlp = numpy_only(count_params_mlp)
    cases = [(20, [8, 6], 4), (3072, [512], 10), (784, (256, 128, 64), 10), (10, [], 3)]
    for d_in, hidden, d_out in cases:
        what = f"count_params_mlp({d_in}, {hidden!r}, {d_out})"
        result = _int_result(call(count_params_mlp, d_in, hidden, d_out), what)
        sizes = [d_in, *hidden, d_out]
        layers = [nn.Linear(a, b, device="meta") for a, b in zip(sizes, sizes[1:])]
        counts = [(layer.weight.numel(), layer.bias.numel()) for layer in layers]
        expected = sum(weights + biases for weights, biases in counts)
        if result != expected:
            weights = sum(w for w, _ in counts)
            mistakes = [
                (weights, "these are the weights only: every Linear layer also has one bias per output unit."),
                (expected - counts[-1][1], f"the output layer's {d_out} biases are missing."),
                (weights + sum(layer.in_features for layer in layers),
                 "a layer has one bias per *output* unit, not per input."),
                (expected - sum(counts[-1]), f"the last layer (H_K → D_out = {d_out}) is missing."),
                (expected - sum(counts[0]), f"the first layer (D_in = {d_in} → H_1) is missing."),
                (expected - sum(w for w, _ in counts[1:-1]),
                 "the weights between consecutive hidden layers (H_k → H_k+1) are missing."),
            ]
            hint = next((h for wrong, h in mistakes if wrong == result != expected), None)
            if not hidden:
                hint = hint or "with no hidden layers the MLP is a single Linear layer D_in → D_out."
            raise AssertionError(f"{what} returned {result:,}, but the matching torch Linear layers have {expected:,} "
                                 "parameters. "
                                 + _sentence(hint or "Count every layer — input → first hidden, between the hidden "
                                                     "layers, last hidden → output — each with its weights and its "
                                                     "biases."))
    passed("count_params_mlp", f"equal to torch's count on {len(cases)} MLPs")


def check_count_params_conv(count_params_conv) -> None:
    """``count_params_conv(in_channels, out_channels, kernel_size, bias=True)`` against ``nn.Conv2d``."""
    count_params_conv = numpy_only(count_params_conv)
    # the first case tells the usual mistakes apart (no two of them give the same wrong count)
    cases = [(3, 8, 5, True), (3, 16, 3, True), (1, 6, 5, True), (3, 64, (5, 3), True), (64, 128, 3, False),
             (16, 32, (1, 7), True)]
    for c_in, c_out, k, bias in cases:
        what = f"count_params_conv({c_in}, {c_out}, {k!r}, bias={bias})"
        result = _int_result(call(count_params_conv, c_in, c_out, k, bias=bias), what)
        layer = nn.Conv2d(c_in, c_out, k, bias=bias, device="meta")
        expected = sum(p.numel() for p in layer.parameters())
        if result != expected:
            (kh, kw), weights = layer.kernel_size, layer.weight.numel()
            biases = c_out if bias else 0  # what bias=True would add
            mistakes = [
                (weights, f"the biases are missing: a conv layer has one bias per filter ({c_out})."),
                (weights + c_out, "bias=False means the layer has no biases."),
                (weights // c_in + biases, f"each filter spans all {c_in} input channels, with one kernel each."),
                (weights // kw + biases,
                 f"a kernel_size of {k!r} means a {kh}×{kw} kernel: count every one of its positions."),
                (weights + (c_in if bias else 0), "one bias per *output* channel (filter), not per input channel."),
                (weights + (c_out * kh * kw if bias else 0), "one bias per filter, not one per kernel weight."),
            ]
            hint = next((h for wrong, h in mistakes if wrong == result != expected), None)
            raise AssertionError(f"{what} returned {result:,}, but nn.Conv2d has {expected:,} parameters. "
                                 + _sentence(hint or "Each filter has one weight per input channel and kernel "
                                                     "position, and (with bias=True) one bias."))
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
    tol = tolerance(x, w, b)
    for name, out in (("conv2d_fast", conv2d_fast(x, w, b, stride=stride, padding=padding)),
                      ("conv2d_naive", naive_out)):
        err = scaled_error(out, reference[:len(out)])
        expect(err <= tol, f"{name} differs from torch's conv2d in the benchmark (relative error {err:.1e})")
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
# the first failing case names what it added. Known mistakes are recognised from what torch gives
# for them (a kernel that is not rotated, an average instead of a sum, ...).

def _grads_of(forward, inputs: dict, dout) -> dict:
    """{name: gradient} of ``(forward(**tensors) * dout).sum()`` for float64 tensors of ``inputs``."""
    tensors = {name: _tensor(value).requires_grad_(True) for name, value in inputs.items()}
    forward(**tensors).backward(_tensor(dout))
    return {name: tensor.grad.numpy() for name, tensor in tensors.items()}


def _three_arrays(result, name: str, names=("dx", "dw", "db")):
    """The student's (dx, dw, db), with a clear message when it is something else."""
    expect_tuple(result, names, name)
    for label, value in zip(names, result):
        expect(getattr(value, "shape", None) is not None,
               f"{name}'s {label} should be a NumPy array, got {type(value).__name__}.")
    return result


def _unchanged(arrays: dict, saved: dict, name: str) -> None:
    for label, value in arrays.items():
        expect(np.array_equal(value, saved[label]), f"{name} changed its input {label} in place: a backward pass "
                                                    "only reads dout and the cache, and returns new arrays.")


_CONV_BACKWARD_NEW = {  # what each case adds, and where to look when it is the first to fail
    "windows": "with a 1×1 kernel each output entry read one pixel of x, times the kernel's one weight.",
    "overlap": ("here the windows overlap (stride 1, kernel wider than 1): an entry of x that lies in several "
                "windows receives a contribution from each of them — add them up instead of overwriting."),
    "batch": ("this case has several images, channels and filters: dx sums over the filters, dw and db over the "
              "images (and the positions), and each filter's kernel covers every input channel."),
    "padding": ("this is the first case with padding: the forward pass slid the kernel over x_pad, so the "
                "gradient flows into x_pad first; the P rows and columns on each side are not inputs, and dx is "
                "what is left in the middle, where x sits in x_pad."),
    "stride": ("this is the first case with stride 2: output (i, j) read the window that starts at "
               "(i·S, j·S) of x_pad, so its gradient goes back to that window; rows or columns of x_pad that "
               "no window reached get 0."),
    "float32": "this case is float32: check the dtype of the arrays you create (an integer array rounds every entry).",
}


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


def _conv_backward_mistakes(part, x, w, dout, stride, padding, expected):
    """(what a known mistake gives for ``part``, hint), each computed with torch."""
    xt, wt, dt = _tensor(x), _tensor(w), _tensor(dout)
    n, (ho, wo) = x.shape[0], dout.shape[-2:]
    grad_input = torch.nn.grad.conv2d_input
    if part == "dx":
        mistakes = [(grad_input(x.shape, wt.flip(2, 3), dt, stride=stride, padding=padding).numpy(),
                     "dx matches the kernels used as they are: going backwards, kernel offset (u, v) carries "
                     "dout from output (i, j) to the input pixel (i·S + u, j·S + v). Written as a correlation "
                     "over dout, that is the kernel rotated by 180° (section 7).")]
        if w.shape[0] == w.shape[1]:
            mistakes.append((grad_input(x.shape, wt.transpose(0, 1), dt, stride=stride, padding=padding).numpy(),
                             "w's first two axes are swapped: dx[n, c] collects, over the filters f, dout[n, f] "
                             "through the kernel w[f, c]."))
        if padding:
            padded = (x.shape[0], x.shape[1], x.shape[2] + 2 * padding, x.shape[3] + 2 * padding)
            dx_pad = grad_input(padded, wt, dt, stride=stride).numpy()
            mistakes += [(dx_pad[:, :, :x.shape[2], :x.shape[3]], "dx was cut from the top left corner of the "
                          "padded image's gradient: x sits in its middle, P rows and columns in from each side."),
                         (dx_pad[:, :, 2 * padding:, 2 * padding:], "dx was cut from the bottom right corner of "
                          "the padded image's gradient: x sits in its middle, P rows and columns in from each side.")]
        return mistakes
    if part == "dw":
        return [(expected / n, f"dw is {n} times too small: it is the *sum* over the batch, not the mean."),
                (expected[:, :, ::-1, ::-1], "dw is rotated by 180°: weight w[f, c, u, v] multiplied the pixel u "
                                             "rows down and v columns right of each window's corner, so dw[f, c, u, "
                                             "v] collects that pixel times the window's entry of dout."),
                (expected / (ho * wo), f"dw is {ho * wo} times too small: sum over the output positions, don't "
                                       "average.")]
    return [(expected / (n * ho * wo), "db is the mean of dout: it is the sum over the images and positions."),
            (expected / n, f"db is {n} times too small: sum over the images too, don't average."),
            (expected / (ho * wo), f"db is {ho * wo} times too small: sum over the positions, don't average.")]


def _shape_hint(part, shape, x, w, dout, padding) -> str:
    n, f, ho, wo = dout.shape
    c = x.shape[1]
    hints = {
        "dx": {(n, c, x.shape[2] + 2 * padding, x.shape[3] + 2 * padding):
               "that is the padded image's shape: drop the P rows and columns of padding on each side."},
        "dw": {(n, *w.shape): "one dw per image: sum over the batch axis.",
               (c, f, *w.shape[2:]): "the first two axes are swapped: dw has w's layout (F, C, KH, KW)."},
        "db": {(n, f): "one db per image: sum over the images too.",
               (f, ho, wo): "one db per position: sum over the positions too.",
               (n, f, ho, wo): "that is dout's shape: sum it over the images and positions.",
               (): "one number for all filters: each filter has its own bias, so db has one entry per filter."},
    }
    return hints[part].get(tuple(shape), f"{part} has the shape of what it is the gradient of.")


def _check_conv_backward(fn, name: str) -> int:
    rng = np.random.default_rng(6)
    cases = _conv_backward_cases(rng)
    for new, x, w, stride, padding in cases:
        b = rng.standard_normal(w.shape[0]).astype(x.dtype)
        out_shape = F.conv2d(_meta(x.shape), _meta(w.shape), stride=stride, padding=padding).shape
        dout = rng.standard_normal(tuple(out_shape)).astype(x.dtype)
        expected = _grads_of(lambda x, w, b: F.conv2d(x, w, b, stride=stride, padding=padding),
                             {"x": x, "w": w, "b": b}, dout)
        case = (f"x {x.shape}, w {w.shape}, stride={stride}, padding={padding}"
                + (", float32" if x.dtype == np.float32 else ""))
        saved = {"dout": dout.copy(), "x": x.copy(), "w": w.copy()}
        result = _three_arrays(_call(fn, dout, (x, w, stride, padding)), name)
        _unchanged({"dout": dout, "x": x, "w": w}, saved, name)
        tol = tolerance(x, w)
        for part, got, key in zip(("dx", "dw", "db"), result, ("x", "w", "b")):
            want = expected[key]
            if tuple(got.shape) != want.shape:
                raise AssertionError(f"{name} ({case}): {part} has shape {tuple(got.shape)}, expected {want.shape}: "
                                     + _shape_hint(part, got.shape, x, w, dout, padding))
            expect(np.all(np.isfinite(np.asarray(got, dtype=np.float64))),
                   f"{name} ({case}): {part} contains NaN or inf: is every array you fill initialised (np.zeros, "
                   "not np.empty)?")
            err = scaled_error(got, want)
            if err > tol:
                mistakes = _conv_backward_mistakes(part, x, w, dout, stride, padding, want)
                hint = _name_mistake(got, mistakes, max(tol, 1e-5) * 10) or _CONV_BACKWARD_NEW[new] or (
                    f"compare {part} with the formula of section 7, on this small case by hand.")
                raise AssertionError(f"{name} ({case}): {part} differs from torch's autograd (relative error "
                                     f"{err:.1e}, allowed {tol:.0e}). " + _sentence(hint))
    return len(cases)


def check_conv2d_backward_naive(conv2d_backward_naive) -> None:
    """``conv2d_backward_naive(dout, cache)`` with cache = (x, w, stride, padding), against torch's autograd."""
    n = _check_conv_backward(numpy_only(conv2d_backward_naive), "conv2d_backward_naive")
    passed("conv2d_backward_naive", f"dx, dw and db equal to torch's autograd on {n} cases")


def check_conv2d_backward_fast(conv2d_backward_fast, max_seconds: float = 1.0) -> None:
    """As :func:`check_conv2d_backward_naive`, then a CIFAR-sized batch that must take under ``max_seconds``."""
    conv2d_backward_fast = numpy_only(conv2d_backward_fast)
    n = _check_conv_backward(conv2d_backward_fast, "conv2d_backward_fast")
    x, w, dout = _cifar_batch(seed=7, third=(16, 16, 32, 32))
    # timed in the kernel, as in check_conv2d_fast: a speed requirement the kernel reports
    result, seconds = _where_it_runs(_clocked, conv2d_backward_fast, dout, (x, w, 1, 1))
    expect(seconds <= max_seconds,
           f"conv2d_backward_fast took {seconds:.2f} s on 16 images 3×32×32 with 16 filters 3×3 (allowed "
           f"{max_seconds} s): it is not vectorised. Loops over images, filters or output pixels are what make "
           "conv2d_backward_naive slow; section 7 writes dw and dx as contractions over all windows at once.")
    expected = _grads_of(lambda x, w: F.conv2d(x, w, padding=1), {"x": x, "w": w}, dout)
    for part, got, key in zip(("dx", "dw"), _three_arrays(result, "conv2d_backward_fast")[:2], ("x", "w")):
        err = scaled_error(got, expected[key]) if tuple(got.shape) == expected[key].shape else np.inf
        expect(err <= 1e-10, f"conv2d_backward_fast's {part} is off on 16 images 3×32×32 (relative error {err:.1e}).")
    passed("conv2d_backward_fast", f"equal to torch's autograd on {n + 1} cases; 16 CIFAR-sized images in "
                                   f"{1000 * seconds:.0f} ms")


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


_POOL_NEW = {
    "windows": "",
    "batch": "this case has several images and channels: each channel of each image is pooled on its own.",
    "kernel": "this case uses kernel_size=3 (and so stride 3): windows of 3×3, one every 3 pixels.",
    "odd": ("here the size is not a multiple of the stride (5×7 with 2×2 windows): the last row and column fit "
            "no window and are dropped, as in conv_output_size."),
    "overlap": ("here the stride is smaller than the window, so windows overlap: an entry of x can be the "
                "maximum of several windows and then collects the gradient of each of them — add, don't overwrite."),
    "float32": "this case is float32: check the dtype of the arrays you create (an integer array rounds every entry).",
}


def _pool_case(x, k, stride) -> str:
    return (f"x {x.shape}, kernel_size={k}" + ("" if stride is None else f", stride={stride}")
            + (", float32" if x.dtype == np.float32 else ""))


def check_max_pool2d(max_pool2d) -> None:
    """``max_pool2d(x, kernel_size=2, stride=None)`` against torch's ``F.max_pool2d``."""
    max_pool2d = numpy_only(max_pool2d)
    cases = _pool_cases(np.random.default_rng(8))
    for new, x, k, stride in cases:
        case = _pool_case(x, k, stride)
        before = x.copy()
        out = call(max_pool2d, x, k) if stride is None else call(max_pool2d, x, k, stride)
        _unchanged({"x": x}, {"x": before}, "max_pool2d")
        xt = _tensor(x)
        expected = F.max_pool2d(xt, k, stride).numpy()
        if isinstance(out, tuple):
            raise AssertionError(f"max_pool2d ({case}) returned a tuple: return the pooled array only (the backward "
                                 "pass gets the forward's inputs as its cache).")
        shape = tuple(getattr(out, "shape", ()))
        if shape != expected.shape:
            hints = {tuple(F.max_pool2d(xt, k, 1).shape): "the default stride is kernel_size (windows side by "
                                                          "side, as nn.MaxPool2d), not 1.",
                     tuple(F.max_pool2d(xt, k, stride, ceil_mode=True).shape):
                         "a window that would stick out past the edge is not used: round down.",
                     (x.shape[0], *expected.shape[2:]): "it pooled over the channels too: pool each channel on its own.",
                     tuple(np.moveaxis(expected, 1, -1).shape): "the output is channels-last: keep (N, C, H_out, W_out)."}
            raise AssertionError(f"max_pool2d ({case}) returned shape {shape}, expected {expected.shape}. "
                                 + _sentence(hints.get(shape, "Each of the C maps of each image gives a map of "
                                                              "window maxima, one per window position.")))
        tol = tolerance(x)
        err = scaled_error(out, expected)
        if err > tol:
            mistakes = [(F.avg_pool2d(xt, k, stride).numpy(), "that is average pooling: take each window's maximum."),
                        (-F.max_pool2d(-xt, k, stride).numpy(), "that is each window's minimum: take the maximum."),
                        (F.max_pool2d(xt.transpose(2, 3), k, stride).transpose(2, 3).numpy()
                         if x.shape[2] != x.shape[3] else None,
                         "rows and columns are mixed up: output (i, j) is the maximum of the window at row i·S, "
                         "column j·S.")]
            hint = _name_mistake(out, mistakes, 1e-6) or _POOL_NEW[new] or "compare with the definition of section 7."
            raise AssertionError(f"max_pool2d ({case}) differs from torch's max_pool2d (relative error {err:.1e}). "
                                 + _sentence(hint))
    passed("max_pool2d", f"equal to torch's max_pool2d on {len(cases)} cases")


def check_max_pool2d_backward(max_pool2d_backward) -> None:
    """``max_pool2d_backward(dout, cache)`` with cache = (x, kernel_size, stride), against torch's autograd;
    windows with tied maxima send the gradient to the first of them, as torch does."""
    max_pool2d_backward = numpy_only(max_pool2d_backward)
    rng = np.random.default_rng(9)
    ties = np.maximum(rng.standard_normal((2, 2, 6, 6)).round(0), 0)   # as after a ReLU: many windows all 0
    cases = [*_pool_cases(rng), ("ties", ties, 2, None)]
    for new, x, k, stride in cases:
        case = _pool_case(x, k, stride)
        shape = tuple(F.max_pool2d(_meta(x.shape), k, stride).shape)
        dout = (rng.uniform(0.5, 2.0, shape) * rng.choice([-1, 1], shape)).astype(x.dtype)
        expected = _grads_of(lambda x: F.max_pool2d(x, k, stride), {"x": x}, dout)["x"]
        saved = {"dout": dout.copy(), "x": x.copy()}
        dx = call(max_pool2d_backward, dout, (x, k, stride or k))
        _unchanged({"dout": dout, "x": x}, saved, "max_pool2d_backward")
        got_shape = tuple(getattr(dx, "shape", ()))
        if got_shape != x.shape:
            raise AssertionError(f"max_pool2d_backward ({case}) returned shape {got_shape}, expected x's {x.shape}: "
                                 + ("that is dout's shape; dx has one entry per entry of x." if got_shape == shape
                                    else "dx has one entry per entry of x, most of them 0."))
        tol = tolerance(x)
        err = scaled_error(dx, expected)
        if err > tol:
            xt, ones = _tensor(x), np.ones(shape)
            mistakes = [
                (_grads_of(lambda x: F.avg_pool2d(x, k, stride), {"x": x}, dout)["x"],
                 "dx spreads dout evenly over each window, as average pooling would: in max pooling only the "
                 "window's maximum reached the output, so only it receives the gradient."),
                (_grads_of(lambda x: F.max_pool2d(x, k, stride), {"x": x}, ones)["x"],
                 "dx marks where the maxima are but ignores dout: by the chain rule the maximum receives dout "
                 "of its window (times 1)."),
                (expected * x, "dx multiplies by x: the maximum passed x through unchanged, so its local "
                               "derivative is 1 and it receives dout as it is."),
                (_grads_of(lambda x: -F.max_pool2d(-x, k, stride), {"x": x}, dout)["x"],
                 "dx routes the gradient to each window's minimum: it goes to the maximum."),
            ]
            hint = _name_mistake(dx, mistakes, 1e-6)
            if hint is None and new == "ties":
                hint = ("in this case many windows hold several equal maxima (zeros, as after a ReLU). The maximum "
                        "passed on one value, so one entry must receive the gradient: the first maximum in "
                        "row-by-row order, as PyTorch picks it (np.argmax returns the first). dx sums to "
                        f"{float(np.sum(dx)):.3g} here, dout to {float(np.sum(dout)):.3g}: they must be equal.")
            raise AssertionError(f"max_pool2d_backward ({case}) differs from torch's autograd (relative error "
                                 f"{err:.1e}). " + _sentence(hint or _POOL_NEW[new]
                                                             or "each window's gradient goes to its maximum only."))
    passed("max_pool2d_backward", f"equal to torch's autograd on {len(cases)} cases, tied maxima included")


def check_global_avg_pool_backward(global_avg_pool_backward) -> None:
    """``global_avg_pool_backward(dout, cache)`` with cache = x, against torch's autograd."""
    global_avg_pool_backward = numpy_only(global_avg_pool_backward)
    rng = np.random.default_rng(11)
    cases = [rng.standard_normal((2, 3, 4, 4)), rng.standard_normal((3, 2, 5, 7)), rng.standard_normal((2, 4, 1, 1)),
             rng.standard_normal((3, 3, 2, 5)), rng.standard_normal((2, 3, 6, 3)).astype(np.float32)]
    for x in cases:
        n, c, h, w = x.shape
        case = f"x {x.shape}" + (", float32" if x.dtype == np.float32 else "")
        dout = rng.standard_normal((n, c)).astype(x.dtype)
        expected = _grads_of(lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1), {"x": x}, dout)["x"]
        saved = {"dout": dout.copy(), "x": x.copy()}
        dx, writable = _where_it_runs(_writable, global_avg_pool_backward, dout, x)
        _unchanged({"dout": dout, "x": x}, saved, "global_avg_pool_backward")
        shape = tuple(getattr(dx, "shape", ()))
        if shape != x.shape:
            hints = {(n, c, 1, 1): "each of the H·W pixels of a map gets its share: broadcast to x's full shape.",
                     (n, h, w, c): "the result is channels-last: keep x's layout (N, C, H, W).",
                     (n, c): "that is dout's shape: dx has one entry per pixel of x."}
            raise AssertionError(f"global_avg_pool_backward ({case}) returned shape {shape}, expected x's {x.shape}: "
                                 + hints.get(shape, "dx has x's shape."))
        tol = tolerance(x)
        err = scaled_error(dx, expected)
        if err > tol:
            mistakes = [(expected * h * w, f"dx is H·W = {h * w} times too large: the mean divides by H·W, and so "
                                           "does its gradient."),
                         (expected * h, f"dx is {h} times too large: divide by H·W, the number of pixels averaged."),
                         (expected * w, f"dx is {w} times too large: divide by H·W, the number of pixels averaged."),
                         (expected / n, f"dx is {n} times too small: each image's map is averaged on its own; "
                                        "do not divide by the batch size."),
                         (np.broadcast_to(expected.mean(axis=0), x.shape), "every image got the same gradient: "
                                                                            "each keeps its own dout[n, c]."),
                         (np.full(x.shape, 1 / (h * w)), "dx ignores dout: by the chain rule each pixel receives "
                                                         "dout[n, c] times its local derivative 1/(H·W)."),
                         (expected * x, "dx multiplies by x: the mean is linear, so its local derivative is the "
                                        "constant 1/(H·W), not x.")]
            if n == c:
                mistakes.append((_grads_of(lambda x: F.adaptive_avg_pool2d(x, 1).flatten(1), {"x": x}, dout.T)["x"],
                                 "dout's axes are swapped: dout[n, c] belongs to image n, channel c."))
            hint = _name_mistake(dx, mistakes, 1e-6)
            raise AssertionError(f"global_avg_pool_backward ({case}) differs from torch's autograd (relative error "
                                 f"{err:.1e}). " + _sentence(hint or "every pixel of map (n, c) contributed 1/(H·W) "
                                                                     "of itself to g[n, c]."))
        expect(writable, f"global_avg_pool_backward ({case}) returned a read-only view (np.broadcast_to shares "
                         "one value per map): return an array of its own, which the layer before may change in place.")
    passed("global_avg_pool_backward", f"equal to torch's autograd on {len(cases)} cases")
