"""Numerical gradients by central differences, in the spirit of CS231n's ``gradient_check.py``."""
from __future__ import annotations

import numpy as np

__all__ = ["numerical_gradient", "rel_error"]


def numerical_gradient(f, x: np.ndarray, h: float = 1e-5) -> np.ndarray:
    """Gradient of the scalar function ``f`` at ``x`` by central differences.

    Inputs:
    - f: callable taking no arguments and returning a float; it must read ``x`` (which is
      changed in place, one entry at a time, and restored).
    - x: float64 array of any shape.
    - h: step size.

    Returns an array of ``x``'s shape: (f(x + h e_i) - f(x - h e_i)) / 2h for every entry i.
    """
    grad = np.zeros_like(x, dtype=np.float64)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        f_plus = f()
        x[i] = old - h
        f_minus = f()
        x[i] = old
        grad[i] = (f_plus - f_minus) / (2 * h)
    return grad


def rel_error(a, b) -> float:
    """Largest relative error max |a - b| / max(|a| + |b|, 1e-8) over all entries."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))) if a.size else 0.0
