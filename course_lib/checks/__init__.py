"""Public checks that give a student immediate feedback on an exercise.

Each ``check_<function>`` in the topic modules (``course_lib.checks.mlp``, ...) calls the
student's function on small inputs. It prints one success line, or raises
``AssertionError`` whose message names the likely mistake. The building blocks live here.
"""
from __future__ import annotations

import numpy as np

from course_lib.checks.gradient_check import numerical_gradient, rel_error

__all__ = ["call", "expect", "expect_shape", "expect_close", "passed", "numerical_gradient", "rel_error"]


def call(fn, *args, **kwargs):
    """Call the student's ``fn``; a missing implementation or a crash becomes a clear message."""
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise AssertionError(
            f"{name} is not implemented yet: replace `raise NotImplementedError()` with your code."
        ) from None
    except Exception as err:
        shapes = ", ".join(_describe(a) for a in args)
        raise AssertionError(
            f"{name}({shapes}) raised {type(err).__name__}: {err}. The traceback above shows the line."
        ) from err


def expect(condition, message: str) -> None:
    """Raise ``AssertionError(message)`` unless ``condition`` holds."""
    if not condition:
        raise AssertionError(message)


def expect_shape(value, shape, what: str) -> None:
    """``value`` must be an array (NumPy or torch) of exactly ``shape``."""
    actual = getattr(value, "shape", None)
    expect(actual is not None, f"{what} should be an array of shape {tuple(shape)}, got {type(value).__name__}.")
    expect(tuple(actual) == tuple(shape), f"{what} should have shape {tuple(shape)}, got {tuple(actual)}.")


def expect_close(actual, expected, what: str, tol: float = 1e-6, hint: str = "") -> None:
    """Relative error between ``actual`` and ``expected`` must be at most ``tol``."""
    actual, expected = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    expect_shape(actual, expected.shape, what)
    expect(np.all(np.isfinite(actual)), f"{what} contains NaN or inf" + (f" — {hint}" if hint else "."))
    err = rel_error(actual, expected)
    expect(err <= tol, f"{what} is off (relative error {err:.1e}, allowed {tol:.0e})" + (f" — {hint}" if hint else "."))


def passed(name: str, detail: str = "") -> None:
    """Print the one success line a student sees."""
    print(f"✔ {name}: all public checks passed" + (f" ({detail})" if detail else ""))


def _describe(value) -> str:
    shape = getattr(value, "shape", None)
    return f"array{tuple(shape)}" if shape is not None else repr(value)
