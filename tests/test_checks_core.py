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
