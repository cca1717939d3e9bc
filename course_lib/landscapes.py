"""Two-dimensional losses for watching optimizers move, and a plot of their paths.

- :class:`Quadratic`: f(x, y) = (a x² + b y²) / 2, an ill-conditioned bowl (condition number b / a)
- :class:`Rosenbrock`: f(x, y) = (a − x)² + b (y − x²)², a curved, flat-bottomed valley
- :func:`plot_paths`: the loss's contours with one path per optimizer drawn on them
- :func:`finite_part`: a path cut where it diverged

A loss takes points of shape (..., 2) and returns values of shape (...); ``grad`` takes one
point (2,) and returns its gradient (2,). Paths are (T + 1, 2) arrays, the start first. Other
shapes, and constants that make no bowl or valley, raise ``CourseValueError``.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

from course_lib.errors import CourseTypeError, CourseValueError
from course_lib.validation import check_int, check_number, describe

__all__ = ["Quadratic", "Rosenbrock", "finite_part", "plot_paths", "points"]


def points(w, one: bool = False, name: str = "w") -> np.ndarray:
    """``w`` as float64 points (..., 2), or as one point (2,) when ``one``; a clear error for other shapes."""
    try:
        w = np.asarray(w, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise CourseTypeError(f"{name} must be numbers, got {describe(w)} ({err})") from None
    if (one and w.shape != (2,)) or (not one and (w.ndim == 0 or w.shape[-1] != 2)):
        wanted = "one point (x, y), shape (2,)" if one else "points (x, y), shape (..., 2)"
        raise CourseValueError(f"{name} must be {wanted}, got {describe(w)}")
    return w


def _check_constants(loss, **constants) -> None:
    """Finite constants (each above its lower bound, if any), a start point and a view of two ranges."""
    for name, (low, open_low) in constants.items():
        check_number(f"{type(loss).__name__}'s {name}", getattr(loss, name), low=low, low_open=open_low)
    points(loss.start, one=True, name="start")
    try:
        view = np.asarray(loss.view, dtype=np.float64)
    except (TypeError, ValueError):
        view = np.zeros(0)
    if view.shape != (2, 2) or not np.all(np.isfinite(view)) or not np.all(view[:, 0] < view[:, 1]):
        raise CourseValueError(f"view must be ((x_min, x_max), (y_min, y_max)) with min < max, got "
                               f"{describe(loss.view)}")


@dataclass(frozen=True)
class Quadratic:
    """f(x, y) = (a x² + b y²) / 2; minimum 0 at (0, 0). Plain gradient descent is stable for lr < 2 / b."""

    a: float = 1.0
    b: float = 50.0
    start: tuple = (-4.5, 1.5)
    view: tuple = ((-5.0, 5.0), (-2.5, 2.5))

    def __post_init__(self):
        _check_constants(self, a=(0, True), b=(0, True))

    @property
    def name(self) -> str:
        return f"ill-conditioned quadratic ({self.a:g}x² + {self.b:g}y²)/2"

    @property
    def minimum(self) -> np.ndarray:
        return np.zeros(2)

    def __call__(self, w) -> np.ndarray:
        w = points(w)
        return (self.a * w[..., 0] ** 2 + self.b * w[..., 1] ** 2) / 2

    def grad(self, w) -> np.ndarray:
        w = points(w, one=True)
        return np.array([self.a * w[0], self.b * w[1]])


@dataclass(frozen=True)
class Rosenbrock:
    """f(x, y) = (a − x)² + b (y − x²)²; minimum 0 at (a, a²), at the end of a long curved valley."""

    a: float = 1.0
    b: float = 100.0
    start: tuple = (-1.2, 1.0)
    view: tuple = ((-2.0, 2.0), (-1.0, 3.0))

    def __post_init__(self):
        _check_constants(self, a=(None, False), b=(0, True))

    @property
    def name(self) -> str:
        return f"Rosenbrock (a={self.a:g}, b={self.b:g})"

    @property
    def minimum(self) -> np.ndarray:
        return np.array([self.a, self.a ** 2])

    def __call__(self, w) -> np.ndarray:
        w = points(w)
        x, y = w[..., 0], w[..., 1]
        return (self.a - x) ** 2 + self.b * (y - x ** 2) ** 2

    def grad(self, w) -> np.ndarray:
        x, y = points(w, one=True)
        return np.array([-2 * (self.a - x) - 4 * self.b * x * (y - x ** 2), 2 * self.b * (y - x ** 2)])


def finite_part(path, limit: float = 1e6) -> np.ndarray:
    """The path up to its first point that is not finite or is beyond ``limit`` (where a run diverged)."""
    limit = check_number("limit", limit, low=0, low_open=True, hint="e.g. 1e6")
    path = points(path, name="path")
    if path.ndim > 2:
        raise CourseValueError(f"a path must be (T, 2) points, got {describe(path)}")
    path = path.reshape(-1, 2)
    bad = ~np.all(np.isfinite(path) & (np.abs(path) < limit), axis=1)
    return path[: int(np.argmax(bad))] if bad.any() else path


def plot_paths(loss, paths: dict, ax=None, title: str | None = None, levels: int = 30):
    """Contours of ``loss`` (log-spaced levels) and each path of ``paths`` (name → (T + 1, 2) array).

    The legend gives each path's final loss, or "diverged" for a path that leaves every bound
    (drawn up to that point). Returns the axes.
    """
    if not all(hasattr(loss, name) for name in ("view", "minimum", "name")) or not callable(loss):
        raise CourseTypeError(f"loss must be a loss from course_lib.landscapes (Quadratic(), Rosenbrock()), got "
                              f"{describe(loss)}")
    if not isinstance(paths, Mapping):
        raise CourseTypeError(f"paths must be a dict of name -> (T + 1, 2) array, got {describe(paths)}")
    paths = {name: points(path, name=f"paths[{name!r}]") for name, path in paths.items()}
    empty = [name for name, path in paths.items() if path.ndim != 2 or len(path) == 0]
    if empty:
        raise CourseValueError(f"paths[{empty[0]!r}] must be (T + 1, 2) points with the start first, got "
                               f"{describe(paths[empty[0]])}")
    levels = check_int("levels", levels, low=2, high=200, hint="the number of contour lines, e.g. 30")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    (x0, x1), (y0, y1) = loss.view
    grid = np.stack(np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300)), axis=-1)
    values = loss(grid)
    low = max(values.min(), 1e-3)
    ax.contour(grid[..., 0], grid[..., 1], values, levels=np.geomspace(low, max(values.max(), 10 * low), levels),
               cmap="Greys", linewidths=0.6, alpha=0.8)
    ax.plot(*loss.minimum, marker="*", color="black", ms=12, ls="none", label="minimum")
    for name, path in paths.items():
        shown = finite_part(path)
        diverged = len(shown) < len(np.asarray(path).reshape(-1, 2))
        end = "diverged" if diverged else f"loss {float(loss(shown[-1])):.2g}"
        line, = ax.plot(shown[:, 0], shown[:, 1], marker=".", ms=3, lw=1.2, label=f"{name}: {end}")
        if len(shown):
            ax.plot(*shown[0], marker="o", color=line.get_color(), ms=6)
    ax.set(xlim=(x0, x1), ylim=(y0, y1), xlabel="x", ylabel="y", title=title or loss.name)
    ax.legend(fontsize=7, loc="best")
    return ax
