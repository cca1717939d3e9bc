import numpy as np
import pytest

from course_lib.checks import call, expect_close, expect_shape, numerical_gradient, passed, rel_error


def stub(x):
    raise NotImplementedError()


def crashes(x):
    return x @ np.ones((5, 2))


def test_call_turns_a_stub_into_a_clear_message():
    with pytest.raises(AssertionError, match="stub is not implemented yet"):
        call(stub, np.ones(3))


def test_call_names_the_function_the_inputs_and_the_error():
    with pytest.raises(AssertionError, match=r"crashes\(array\(4, 3\)\) raised ValueError"):
        call(crashes, np.ones((4, 3)))


def test_expect_shape_and_close_messages():
    with pytest.raises(AssertionError, match=r"should have shape \(2, 3\), got \(3, 2\)"):
        expect_shape(np.ones((3, 2)), (2, 3), "probs")
    with pytest.raises(AssertionError, match="should be an array"):
        expect_shape([1, 2], (2,), "probs")
    with pytest.raises(AssertionError, match="probs is off .* did you"):
        expect_close(np.ones(3), np.zeros(3), "probs", hint="did you normalise?")
    with pytest.raises(AssertionError, match="NaN or inf"):
        expect_close(np.array([np.nan]), np.zeros(1), "loss")
    expect_close(np.ones(3) + 1e-9, np.ones(3), "probs")


def test_passed_prints_one_line(capsys):
    passed("softmax")
    assert capsys.readouterr().out == "✔ softmax: all public checks passed\n"


def test_numerical_gradient_matches_the_analytic_one():
    rng = np.random.default_rng(0)
    A, x = rng.normal(size=(4, 4)), rng.normal(size=4)
    f = lambda: float(x @ A @ x)
    assert rel_error(numerical_gradient(f, x), (A + A.T) @ x) < 1e-8
    assert rel_error(np.ones(2), np.ones(2)) == 0.0
    assert rel_error(np.ones(2), -np.ones(2)) == 1.0


# ---------------------------------------------------------------- numpy_only

import gc  # noqa: E402
import sys  # noqa: E402

from numpy.lib.stride_tricks import sliding_window_view  # noqa: E402

from course_lib.checks import NumpyOnlyError, numpy_only  # noqa: E402

NUMPY_ONLY = "— this exercise is NumPy only"


def numpy_conv(x, w):
    x_pad = np.pad(x, 1)
    windows = sliding_window_view(x_pad, w.shape)
    return np.einsum("hwuv,uv->hw", windows, w, optimize=True) + np.vectorize(abs)(np.zeros(1))


def test_numpy_and_the_standard_library_stay_allowed():
    import math

    x, w = np.arange(16.0).reshape(4, 4), np.ones((3, 3))
    assert numpy_only(numpy_conv)(x, w).shape == (4, 4)
    assert numpy_only(lambda v: math.ceil(v / 2) + len(np.linalg.svd(np.eye(3))[1]))(5) == 6


def test_torch_calls_are_rejected_with_the_function_named():
    import torch
    import torch.nn.functional as F

    def relu(z):
        return F.relu(torch.from_numpy(z)).numpy()

    with pytest.raises(NumpyOnlyError, match=rf"^relu called torch.from_numpy {NUMPY_ONLY}"):
        numpy_only(relu)(np.ones(3))

    def conv(x, w):
        return F.conv2d(x, w)  # the first call into torch is conv2d itself

    with pytest.raises(NumpyOnlyError, match=rf"^conv called torch.nn.functional.conv2d {NUMPY_ONLY}"):
        numpy_only(conv)(torch.ones(1, 1, 3, 3), torch.ones(1, 1, 2, 2))
    with pytest.raises(NumpyOnlyError, match=r"^relu called torch.relu"):  # a torch function handed over as is
        numpy_only(torch.relu)(torch.ones(2))


def test_calls_through_helpers_and_bound_methods_are_rejected():
    import torch

    def to_numpy(t):
        return t.numpy()

    def relu(z):
        return np.maximum(to_numpy(z), 0)

    with pytest.raises(NumpyOnlyError, match=rf"^relu called torch.Tensor.numpy \(in {to_numpy.__qualname__}\)"):
        numpy_only(relu)(torch.ones(2))


def test_python_functions_of_torch_scipy_sklearn_and_course_lib_are_rejected():
    import scipy.signal
    import sklearn.metrics
    import torch

    from course_lib.checks.gradient_check import rel_error as course_helper

    cases = [
        (lambda z: torch.nn.functional.hardtanh(z), torch.ones(2), "torch.nn.functional.hardtanh"),
        (lambda x: scipy.signal.correlate(x, x), np.ones(3), "scipy.signal.correlate"),
        (lambda p: sklearn.metrics.log_loss([0, 1], p), np.array([[0.9, 0.1], [0.2, 0.8]]), "sklearn.metrics.log_loss"),
        (lambda x: course_helper(x, x), np.ones(3), "course_lib.checks.rel_error"),
    ]
    for fn, arg, called in cases:
        with pytest.raises(NumpyOnlyError, match=rf"^<lambda> called {called} {NUMPY_ONLY}"):
            numpy_only(fn)(arg)


def test_scipy_ufuncs_are_rejected_however_they_are_imported():
    import scipy.special
    from scipy.special import expit

    def global_name(z):
        return expit(z)

    def dotted(z):
        return scipy.special.expit(z)

    def local_import(z):
        from scipy.special import expit as sigmoid
        return sigmoid(z)

    def local_alias(z):
        import scipy.special as sp
        return sp.expit(z)

    for fn in (global_name, dotted, local_import, local_alias, expit):
        with pytest.raises(NumpyOnlyError, match=rf"called scipy.special.expit {NUMPY_ONLY}"):
            numpy_only(fn)(np.zeros(2))


def test_importing_a_forbidden_module_during_the_call_is_rejected(monkeypatch):
    import scipy

    monkeypatch.delitem(sys.modules, "scipy.constants", raising=False)
    monkeypatch.delattr(scipy, "constants", raising=False)

    def iterations(n):
        import scipy.constants
        return n

    with pytest.raises(NumpyOnlyError, match=rf"^iterations imports scipy.constants {NUMPY_ONLY}"):
        numpy_only(iterations)(3)


def test_the_student_cannot_catch_the_rejection():
    import torch

    def softmax(logits):
        try:
            return torch.softmax(torch.as_tensor(logits), dim=1).numpy()
        except Exception:
            return np.zeros_like(logits)

    def bare(logits):
        try:
            return torch.as_tensor(logits).numpy()
        except:  # noqa: E722
            return logits

    for fn in (softmax, bare):
        with pytest.raises(NumpyOnlyError, match="called torch.as_tensor"):
            numpy_only(fn)(np.ones((2, 2)))


def test_call_passes_the_rejection_on_and_still_names_crashes():
    import torch

    def relu(z):
        return torch.relu(z)

    with pytest.raises(NumpyOnlyError, match=r"^relu called torch.relu"):
        call(numpy_only(relu), np.ones(2))
    with pytest.raises(AssertionError, match=r"crashes\(array\(4, 3\)\) raised ValueError"):
        call(numpy_only(crashes), np.ones((4, 3)))
    with pytest.raises(AssertionError, match="stub is not implemented yet"):
        call(numpy_only(stub), np.ones(3))


def test_the_profiler_is_restored_and_chained():
    events = []

    def previous(frame, event, arg):
        events.append(event)

    sys.setprofile(previous)
    try:
        numpy_only(lambda x: np.sum(x))(np.ones(3))
        with pytest.raises(AssertionError):
            call(numpy_only(crashes), np.ones((4, 3)))
        import torch
        with pytest.raises(NumpyOnlyError):
            numpy_only(lambda x: torch.as_tensor(x))(np.ones(2))
        assert sys.getprofile() is previous
    finally:
        sys.setprofile(None)
    assert "call" in events and "c_call" in events  # the previous profiler kept receiving events
    assert sys.getprofile() is None
    guarded = numpy_only(stub)
    assert numpy_only(guarded) is guarded and guarded.__name__ == "stub"


def test_a_running_cprofile_is_enabled_again():
    import cProfile

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        numpy_only(lambda x: np.sum(x))(np.ones(3))
        assert sys.getprofile() is profiler
    finally:
        profiler.disable()


def test_finalizers_run_by_the_garbage_collector_do_not_count():
    import torch

    class Holder:
        def __del__(self):
            torch.zeros(1)  # a torch call made by the collector, not by the student

    def relu(z):
        holder = Holder()
        holder.cycle = holder
        del holder
        gc.collect()
        return np.maximum(z, 0) * 1

    assert numpy_only(relu)(np.array([-1.0, 2.0])).tolist() == [0.0, 2.0]
