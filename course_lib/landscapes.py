"""Two-dimensional losses for watching optimizers move, and a plot of their paths.

- :class:`Quadratic`: f(x, y) = (a x² + b y²) / 2, an ill-conditioned bowl (condition number b / a)
- :class:`Rosenbrock`: f(x, y) = (a − x)² + b (y − x²)², a curved, flat-bottomed valley
- :func:`plot_paths`: the loss's contours with one path per optimizer drawn on them
- :func:`finite_part`: a path cut where it diverged

A loss takes points of shape (..., 2) and returns values of shape (...); ``grad`` takes one
point (2,) and returns its gradient (2,). Paths are (T + 1, 2) arrays, the start first.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["Quadratic", "Rosenbrock", "finite_part", "plot_paths"]


@dataclass(frozen=True)
class Quadratic:
    """f(x, y) = (a x² + b y²) / 2; minimum 0 at (0, 0). Plain gradient descent is stable for lr < 2 / b."""

    a: float = 1.0
    b: float = 50.0
    start: tuple = (-4.5, 1.5)
    view: tuple = ((-5.0, 5.0), (-2.5, 2.5))

    @property
    def name(self) -> str:
        return f"ill-conditioned quadratic ({self.a:g}x² + {self.b:g}y²)/2"

    @property
    def minimum(self) -> np.ndarray:
        return np.zeros(2)

    def __call__(self, w) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64)
        return (self.a * w[..., 0] ** 2 + self.b * w[..., 1] ** 2) / 2

    def grad(self, w) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64)
        return np.array([self.a * w[0], self.b * w[1]])


@dataclass(frozen=True)
class Rosenbrock:
    """f(x, y) = (a − x)² + b (y − x²)²; minimum 0 at (a, a²), at the end of a long curved valley."""

    a: float = 1.0
    b: float = 100.0
    start: tuple = (-1.2, 1.0)
    view: tuple = ((-2.0, 2.0), (-1.0, 3.0))

    @property
    def name(self) -> str:
        return f"Rosenbrock (a={self.a:g}, b={self.b:g})"

    @property
    def minimum(self) -> np.ndarray:
        return np.array([self.a, self.a ** 2])

    def __call__(self, w) -> np.ndarray:
        w = np.asarray(w, dtype=np.float64)
        x, y = w[..., 0], w[..., 1]
        return (self.a - x) ** 2 + self.b * (y - x ** 2) ** 2

    def grad(self, w) -> np.ndarray:
        x, y = np.asarray(w, dtype=np.float64)
        return np.array([-2 * (self.a - x) - 4 * self.b * x * (y - x ** 2), 2 * self.b * (y - x ** 2)])


def finite_part(path, limit: float = 1e6) -> np.ndarray:
    """The path up to its first point that is not finite or is beyond ``limit`` (where a run diverged)."""
    path = np.asarray(path, dtype=np.float64).reshape(-1, 2)
    bad = ~np.all(np.isfinite(path) & (np.abs(path) < limit), axis=1)
    return path[: int(np.argmax(bad))] if bad.any() else path


def plot_paths(loss, paths: dict, ax=None, title: str | None = None, levels: int = 30):
    """Contours of ``loss`` (log-spaced levels) and each path of ``paths`` (name → (T + 1, 2) array).

    The legend gives each path's final loss, or "diverged" for a path that leaves every bound
    (drawn up to that point). Returns the axes.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    (x0, x1), (y0, y1) = loss.view
    grid = np.stack(np.meshgrid(np.linspace(x0, x1, 300), np.linspace(y0, y1, 300)), axis=-1)
    values = loss(grid)
    low = max(values.min(), 1e-3)
    ax.contour(grid[..., 0], grid[..., 1], values, levels=np.geomspace(low, values.max(), levels),
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
