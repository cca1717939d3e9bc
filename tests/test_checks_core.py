"""The check toolkit (course_lib.checks.toolkit) and the NumPy-only guard."""
import numpy as np
import pytest
import torch

from course_lib.checks.gradient_check import numerical_gradient, rel_error
from course_lib.checks.toolkit import (CheckFailed, Mistake, call, close, compare, describe, difference, expect_shape,
                                       passed)


def stub(x):
    raise NotImplementedError()


def crashes(x):
    return x @ np.ones((5, 2))


def test_call_turns_a_stub_into_a_clear_message():
    with pytest.raises(CheckFailed, match="stub is not implemented yet") as err:
        call(stub, np.ones(3))
    assert err.value.mistake == "not_implemented"


def test_call_names_the_function_the_inputs_and_the_error():
    with pytest.raises(CheckFailed, match=r"crashes\(array of shape \(4, 3\)\) raised ValueError") as err:
        call(crashes, np.ones((4, 3)))
    assert err.value.mistake == "crashed" and "\n" not in str(err.value)


def test_call_copies_the_arguments_so_in_place_updates_leave_the_callers_values():
    def in_place(w, v):
        v *= 0.9
        v += 1.0
        w -= 0.1 * v
        return w, v

    for to in (np.asarray, torch.as_tensor):
        w, v = to(np.ones(3)), to(np.zeros(3))
        w_new, v_new = call(in_place, w, v, returns=("w_new", "v_new"))
        assert close(w, np.ones(3)) and close(v, np.zeros(3))
        assert close(w_new, np.full(3, 0.9)) and close(v_new, np.ones(3))


def test_call_names_an_argument_the_contract_keeps():
    def relu(x):
        x[x < 0] = 0
        return x

    with pytest.raises(CheckFailed, match="relu changed its argument x in place") as err:
        call(relu, np.array([-1.0, 2.0]), keeps={0: "x"})
    assert err.value.mistake == "changed_argument"
    assert np.array_equal(call(relu, np.array([1.0, 2.0]), keeps={0: "x"}), [1.0, 2.0])


@pytest.mark.parametrize("result, returns, words", [
    (None, "array", "returned None"), (3.0, "array", "returned 3; expected an array"),
    ((1, 2), ("a", "b", "c"), r"should return a tuple \(a, b, c\); it returned \(1, 2\)"),
    ("0.1", "number", "returned '0.1'; expected one number"),
])
def test_call_names_a_result_of_the_wrong_kind(result, returns, words):
    with pytest.raises(CheckFailed, match=words):
        call(lambda: result, name="f", returns=returns)


@pytest.mark.parametrize("result, returns", [
    (np.float32(2.0), "number"), (torch.tensor(2.0), "number"), (2, "number"), (np.ones(2), "array"),
    (torch.ones(2), "array"), ([np.ones(2), 1.0], ("w", "v")), ((1, 2), ("w", "v")),
])
def test_call_accepts_every_valid_kind(result, returns):
    assert call(lambda: result, name="f", returns=returns) is result


def test_difference_says_where_a_value_first_differs():
    assert difference(np.ones((2, 3)), np.ones((2, 3))) is None
    assert difference(np.ones((3, 2)), np.ones((2, 3))) == "has shape (3, 2); expected (2, 3)"
    wrong = np.ones((2, 3))
    wrong[1, 1], wrong[1, 2] = 0.5, 0.25
    assert difference(wrong, np.ones((2, 3))) == "at [1, 1] is 0.5; expected 1 (1 more of 6 elements differ)"
    assert difference(np.array([1.0, np.nan]), np.ones(2)) == "is nan at [1]; expected 1"
    assert difference(0.05, 0.025) == "is 0.05; expected 0.025"
    assert difference("abc", 1.0) == "is 'abc'; expected a number"
    assert difference(np.ones(2), 1.0) == "is array of shape (2,); expected one number"


def test_closeness_is_judged_on_the_scale_of_the_whole_value():
    expected = np.array([1000.0, 1e-9])
    assert close(expected + np.array([1e-4, 1e-6]), expected)           # tiny error near zero: fine
    assert not close(expected * (1 + 1e-5), expected)
    assert close(np.zeros(3) + 1e-7, np.zeros(3))                      # all zeros: scale 1
    assert close(torch.tensor([1.0, 2.0]), np.array([1.0, 2.0]))      # a tensor against an array
    assert close(np.float32(0.1), 0.1, tol=1e-6)
    assert close(np.array([np.inf, 1.0]), np.array([np.inf, 1.0]))
    assert not close(np.array([-np.inf, 1.0]), np.array([np.inf, 1.0]))


SQUARE_MISTAKES = (
    Mistake("demo.square.doubled", "doubles x instead of squaring it.", returns=lambda x: 2 * x),
    Mistake("demo.square.negative", "is negative somewhere: a square never is.", shows=lambda out, x: (out < 0).any()),
)


def test_compare_names_the_first_mistake_the_value_reproduces():
    x = np.array([1.0, 3.0])
    compare(x ** 2, x ** 2, "square(x)", mistakes=SQUARE_MISTAKES, inputs=(x,))
    with pytest.raises(CheckFailed, match=r"^square\(x\) doubles x instead of squaring it\.$") as err:
        compare(2 * x, x ** 2, "square(x)", mistakes=SQUARE_MISTAKES, inputs=(x,))
    assert err.value.mistake == "demo.square.doubled"
    with pytest.raises(CheckFailed, match="is negative somewhere") as err:
        compare(-x, x ** 2, "square(x)", mistakes=SQUARE_MISTAKES, inputs=(x,))
    assert err.value.mistake == "demo.square.negative"
    with pytest.raises(CheckFailed, match=r"^square\(x\) at \[1\] is 10; the formula's value is 9\.$") as err:
        compare(np.array([1.0, 10.0]), x ** 2, "square(x)", mistakes=SQUARE_MISTAKES, inputs=(x,),
                expected_as="the formula's value", unexplained="demo.square.other")
    assert err.value.mistake == "demo.square.other"


def test_a_mistake_states_exactly_one_way_to_recognise_it():
    with pytest.raises(ValueError):
        Mistake("demo.x", "hint")
    with pytest.raises(ValueError):
        Mistake("demo.x", "hint", returns=abs, shows=abs)


def test_a_mistake_that_cannot_be_computed_is_not_the_one():
    broken = Mistake("demo.broken", "never", returns=lambda x: x @ np.ones((9, 9)))
    assert not broken.matches(np.ones(2), (np.ones(2),))


def test_describe_never_shows_an_objects_repr():
    assert describe(torch.nn.Sequential(torch.nn.Linear(2, 2))) == "a Sequential"
    assert describe(torch.ones(2, 3)) == "tensor of shape (2, 3)"
    assert describe(torch.tensor(0.5)) == "0.5"
    assert describe(list(range(100))) == "a list of 100"
    assert describe([0.1, 0.2]) == "[0.1, 0.2]"


def test_expect_shape_messages():
    with pytest.raises(AssertionError, match=r"should have shape \(2, 3\); it has \(3, 2\)"):
        expect_shape(np.ones((3, 2)), (2, 3), "probs")
    with pytest.raises(AssertionError, match="should be an array"):
        expect_shape([1, 2], (2,), "probs")


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

from course_lib.checks.numpy_only import NumpyOnlyError, numpy_only  # noqa: E402

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
        (lambda x: course_helper(x, x), np.ones(3), "course_lib.checks.gradient_check.rel_error"),
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
    with pytest.raises(AssertionError, match=r"crashes\(array of shape \(4, 3\)\) raised ValueError"):
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
