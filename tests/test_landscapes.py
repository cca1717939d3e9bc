"""course_lib.landscapes: the 2-D losses' gradients are right, and paths are drawn, divergent ones cut."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from course_lib.landscapes import Quadratic, Rosenbrock, plot_paths


@pytest.mark.parametrize("loss", [Quadratic(), Quadratic(a=2, b=7), Rosenbrock(), Rosenbrock(a=0.5, b=3)])
def test_gradient_equals_autograd_and_minimum_is_zero(loss):
    rng = np.random.default_rng(0)
    for w in rng.uniform(-2, 2, size=(5, 2)):
        point = torch.tensor(w, requires_grad=True)
        x, y = point
        value = (loss.a * x ** 2 + loss.b * y ** 2) / 2 if isinstance(loss, Quadratic) else \
            (loss.a - x) ** 2 + loss.b * (y - x ** 2) ** 2
        value.backward()
        np.testing.assert_allclose(loss.grad(w), point.grad.numpy(), rtol=1e-12)
        assert loss(w) == pytest.approx(value.item())
    assert loss(loss.minimum) == 0 and np.allclose(loss.grad(loss.minimum), 0)
    assert loss(np.zeros((3, 4, 2))).shape == (3, 4)            # a grid of points at once


def test_paths_are_drawn_and_a_divergent_one_is_cut():
    loss = Quadratic()
    good = np.array([loss.start, (-2.0, 0.5), (-1.0, 0.1)])
    bad = np.array([loss.start, (-9.0, 30.0), (1e7, 1e8), (np.inf, np.nan)])
    ax = plot_paths(loss, {"fine": good, "exploding": bad})
    labels = [line.get_label() for line in ax.lines]
    assert any(label.startswith("fine: loss 0.75") for label in labels)
    assert "exploding: diverged" in labels
    exploding = next(line for line in ax.lines if line.get_label() == "exploding: diverged")
    assert len(exploding.get_xdata()) == 2                       # drawn up to the last finite, bounded point
    plt.close(ax.figure)
