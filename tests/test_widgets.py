"""course_lib.widgets: the convolution explorer builds without a front end (as under nbval or
nbconvert), draws its first output at once, and redraws when a control changes; the feature-map grid."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from course_lib.widgets import PRESET_KERNELS, conv_explorer, grayscale, show_feature_maps

PNG = b"\x89PNG"


def torch_conv(x, w, b=None, stride=1, padding=0):
    """A correct conv2d with the exercise's signature, standing in for a student's."""
    as_tensor = lambda a: None if a is None else torch.from_numpy(np.asarray(a, dtype=np.float64))  # noqa: E731
    return F.conv2d(as_tensor(x), as_tensor(w), as_tensor(b), stride=stride, padding=padding).numpy()


@pytest.fixture
def images():
    """Three generated RGB images 32×32 (tests never need the real datasets)."""
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(3, 32, 32, 3), dtype=np.uint8)


def test_builds_headless_and_draws_the_first_output(images):
    explorer = conv_explorer(torch_conv, images, names=["a", "b", "c"])
    assert explorer.output_shape == (1, 1, 32, 32)  # Sobel x, stride 1, padding 1 keep the size
    assert bytes(explorer.output_view.value).startswith(PNG) and bytes(explorer.input_view.value).startswith(PNG)
    assert "output (1, 1, 32, 32)" in explorer.message
    assert [option[0] for option in explorer.image.options] == ["a", "b", "c"]
    bundle = explorer._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle  # what a notebook renders


def test_output_follows_the_controls(images):
    explorer = conv_explorer(torch_conv, images)
    first_png, first_map = bytes(explorer.output_view.value), explorer.output.copy()

    explorer.stride.value = 2
    assert explorer.output_shape == (1, 1, 16, 16)
    assert "padding 1 (padded 34×34) → output (1, 1, 16, 16): 16×16 window positions" in explorer.message
    assert "torch" not in explorer.message  # the size agrees with torch's
    assert bytes(explorer.output_view.value) != bytes(first_png)

    explorer.padding.value = 0
    assert explorer.output_shape == (1, 1, 15, 15)

    explorer.kernel.value = "box blur 5×5"
    assert explorer.output_shape == (1, 1, 14, 14)
    np.testing.assert_allclose(explorer.kernel_values, PRESET_KERNELS["box blur 5×5"])

    explorer.stride.value, explorer.padding.value, explorer.kernel.value = 1, 1, "Sobel x (vertical edges)"
    np.testing.assert_allclose(explorer.output, first_map)  # back to the start, same picture
    explorer.image.value = 1
    assert explorer.output.shape == first_map.shape and not np.allclose(explorer.output, first_map)


def test_output_is_the_convolution_of_the_chosen_image(images):
    explorer = conv_explorer(torch_conv, images)
    explorer.image.value = 2
    explorer.kernel.value = "Laplacian (edges, any direction)"
    kernel = PRESET_KERNELS["Laplacian (edges, any direction)"]
    expected = torch_conv(grayscale(images[2:3]), kernel[None, None], padding=1)[0, 0]
    np.testing.assert_allclose(explorer.output, expected)


def test_random_kernels_follow_the_seed(images):
    explorer = conv_explorer(torch_conv, images)
    explorer.kernel.value = "random 7×7"
    first = explorer.kernel_values.copy()
    assert first.shape == (7, 7) and explorer.output_shape == (1, 1, 28, 28)
    explorer.seed.value = 1
    assert not np.allclose(explorer.kernel_values, first)
    explorer.seed.value = 0
    np.testing.assert_allclose(explorer.kernel_values, first)


def test_images_of_different_sizes_and_layouts():
    digit = np.zeros((28, 28), dtype=np.uint8)
    digit[8:20, 12:16] = 255
    photo = np.random.default_rng(1).random((3, 32, 32))  # channels first, floats
    explorer = conv_explorer(torch_conv, [digit, photo])
    assert explorer.output_shape == (1, 1, 28, 28)
    explorer.image.value = 1
    assert explorer.output_shape == (1, 1, 32, 32)


def test_a_failing_conv_becomes_a_message_not_an_exception(images):
    def conv2d_fast(x, w, b=None, stride=1, padding=0):
        raise NotImplementedError()

    explorer = conv_explorer(conv2d_fast, images)
    assert explorer.output is None
    assert explorer.message == ("conv2d_fast is not implemented yet: replace the line raise NotImplementedError() in its "
                                "cell with your code, run that cell, then run this one again.")
    assert explorer.output_view.layout.display == "none"  # no empty image: a browser shows it as broken
    assert explorer._repr_mimebundle_()["text/plain"] == explorer.message  # an exported copy shows it once
    explorer.stride.value = 3  # still no exception
    assert "not implemented yet" in explorer.info.value


def test_the_output_comes_back_once_the_conv_works(images):
    def conv2d_fast(x, w, b=None, stride=1, padding=0):
        raise ValueError()

    explorer = conv_explorer(conv2d_fast, images)
    assert explorer.message == "conv2d_fast raised ValueError"  # no colon before an empty message
    explorer.conv = torch_conv
    explorer.stride.value = 2
    assert explorer.output_view.layout.display is None and bytes(explorer.output_view.value).startswith(PNG)
    assert explorer._repr_mimebundle_()["text/plain"].startswith("input (1, 1, 32, 32)")


def test_a_wrong_output_size_is_drawn_and_named(images):
    def conv2d_fast(x, w, b=None, stride=1, padding=0):  # one window position short on each axis
        return torch_conv(x, w, b, stride, padding)[:, :, :-1, :-1]

    explorer = conv_explorer(conv2d_fast, images)
    assert explorer.output_shape == (1, 1, 31, 31)
    assert "but torch's conv2d gives (1, 1, 32, 32)" in explorer.message


def test_no_output_size_formula_in_the_widget():
    import inspect

    import course_lib.widgets as widgets

    source = inspect.getsource(widgets).replace(" ", "")
    assert "//stride+1" not in source and "/stride⌋+1" not in source, \
        "the explorer must take the output size from the convolution, not from a written formula"


def test_a_kernel_that_does_not_fit_is_reported(images):
    explorer = conv_explorer(torch_conv, images[:, :4, :4])
    explorer.padding.value = 0
    explorer.kernel.value = "random 7×7"
    assert explorer.output is None and "does not fit" in explorer.message and "add padding" in explorer.message


def test_an_output_of_the_wrong_rank_is_named(images):
    explorer = conv_explorer(lambda x, w, b=None, stride=1, padding=0: torch_conv(x, w, b, stride, padding)[0], images)
    assert explorer.output is None and "returned shape (1, 32, 32): expected (1, 1, H_out, W_out)" in explorer.message


def test_grayscale_layouts():
    rgb = np.full((2, 4, 5, 3), 255, dtype=np.uint8)
    assert grayscale(rgb).shape == (2, 1, 4, 5) and np.allclose(grayscale(rgb), 1.0)
    assert grayscale(np.zeros((2, 3, 4, 5))).shape == (2, 1, 4, 5)
    assert grayscale(np.zeros((2, 4, 5))).shape == (2, 1, 4, 5)
    with pytest.raises(ValueError, match="expected images"):
        grayscale(np.zeros((2, 5, 4, 5, 6)))


def test_show_feature_maps_grid(images):
    maps = np.random.default_rng(2).standard_normal((3, 4, 8, 8))
    fig = show_feature_maps(maps, row_names=["a", "b", "c"], col_names=list("wxyz"), inputs=images)
    assert len(fig.axes) == 3 * 5
    assert fig.axes[0].get_title() == "input" and fig.axes[1].get_title() == "w"
    plt.close(fig)
    fig = show_feature_maps(torch.from_numpy(maps))
    assert len(fig.axes) == 12
    plt.close(fig)


# ---------------------------------------------------------------- optimizer paths

from course_lib.landscapes import Quadratic, Rosenbrock  # noqa: E402
from course_lib.widgets import path_explorer  # noqa: E402


def gradient_descent_paths(loss, start, sgd_lr, momentum, adam_lr, betas, steps):
    """Stands in for a student's: plain gradient descent at sgd_lr, and at adam_lr."""
    paths = {}
    for name, lr in (("sgd", sgd_lr), ("other", adam_lr)):
        w, path = np.array(start, dtype=float), [np.array(start, dtype=float)]
        for _ in range(steps):
            w = w - lr * loss.grad(w)
            path.append(w)
        paths[name] = np.array(path)
    return paths


def test_path_explorer_draws_at_once_and_follows_the_controls():
    explorer = path_explorer(gradient_descent_paths, {"bowl": Quadratic(), "banana": Rosenbrock()}, steps=20)
    assert bytes(explorer.picture.value).startswith(PNG)
    assert explorer.paths["sgd"].shape == (21, 2)
    np.testing.assert_allclose(explorer.paths["sgd"][0], Quadratic().start)
    assert "application/vnd.jupyter.widget-view+json" in explorer._repr_mimebundle_()

    explorer.steps.value = 30
    assert explorer.paths["sgd"].shape == (31, 2) and explorer.settings["steps"] == 30
    explorer.sgd_lr.value = 0.1                      # past 2/50 on the bowl: gradient descent diverges
    assert "sgd diverged" in explorer.message

    explorer.loss.value = "banana"                   # the start moves to the new loss's default
    np.testing.assert_allclose(explorer.paths["sgd"][0], Rosenbrock().start)
    assert (explorer.start_x.min, explorer.start_x.max) == Rosenbrock().view[0]
    explorer.start_x.value = 0.5
    assert explorer.paths["sgd"][0][0] == 0.5


def test_path_explorer_shows_an_error_instead_of_breaking():
    def broken(loss, start, **settings):
        raise ValueError("shapes do not match")

    explorer = path_explorer(broken, {"bowl": Quadratic()})
    assert explorer.paths == {} and explorer.message == "broken raised ValueError: shapes do not match"
    assert explorer.picture.layout.display == "none"
