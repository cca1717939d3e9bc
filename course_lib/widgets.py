"""Interactive explorers: convolutions (notebook 02) and optimizer paths (notebook 04).

- :data:`PRESET_KERNELS`: identity, blurs, edge detectors and sharpening, as 2-D arrays
- :func:`grayscale`: images of any course layout → (N, 1, H, W) floats in [0, 1]
- :func:`show_feature_maps`: maps (N, F, H, W) as a grid, one row per image, one column per filter
- :func:`conv_explorer`: pick an image, a kernel, the stride and the padding and see the output
  map of *your* convolution and its shape. It renders its first output when it is built and
  never waits for input, so notebooks that show it also run headless (nbval, nbconvert).
- :func:`path_explorer`: learning rates, momentum, betas and the starting point as sliders, and
  the paths of *your* optimizers on a 2-D loss redrawn at every change (same headless rule).
"""
from __future__ import annotations

import html
import io

import matplotlib.pyplot as plt
import numpy as np

from course_lib.errors import CourseTypeError, CourseValueError, describe_failure
from course_lib.plots import MAX_IMAGES, scaled_for_display
from course_lib.validation import check_callable, check_int, check_number, describe

__all__ = ["PRESET_KERNELS", "grayscale", "show_feature_maps", "conv_explorer", "ConvExplorer", "path_explorer",
           "PathExplorer"]

_GAUSS = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1]) / 256.0
PRESET_KERNELS = {
    "identity 3×3": np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]], dtype=float),
    "box blur 3×3": np.full((3, 3), 1 / 9),
    "box blur 5×5": np.full((5, 5), 1 / 25),
    "Gaussian blur 5×5": _GAUSS,
    "Sobel x (vertical edges)": np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=float),
    "Sobel y (horizontal edges)": np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], dtype=float),
    "Laplacian (edges, any direction)": np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=float),
    "sharpen 3×3": np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], dtype=float),
}
_RANDOM = {"random 3×3": 3, "random 5×5": 5, "random 7×7": 7}
_LUMA = np.array([0.299, 0.587, 0.114])


def grayscale(images) -> np.ndarray:
    """(N, H, W), (N, H, W, 3) or (N, C, H, W) images, uint8 or float → (N, 1, H, W) float64.

    uint8 images are scaled to [0, 1]; colour becomes luminance (0.299 R + 0.587 G + 0.114 B).

    Not torchvision's ``rgb_to_grayscale``, measured against it (torchvision 0.29): its weights are
    0.2989, 0.587 and 0.114, which sum to 0.9999, so a white image comes out 0.9999 instead of 1.0
    (255 becomes 254 in uint8) and every pixel differs by up to 1e-4; and it takes channels-first
    tensors only, so the layouts above would still be sorted out here for one line it replaces.
    """
    x = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if x.dtype.kind not in "biuf":
        raise CourseTypeError(f"images must be an array of numbers, got {describe(images)}")
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] == 3 and x.shape[1] != 3:
        return (x @ _LUMA)[:, None]
    if x.ndim == 4 and x.shape[1] in (1, 3):
        return x if x.shape[1] == 1 else np.einsum("nchw,c->nhw", x, _LUMA)[:, None]
    raise CourseValueError(f"expected images (N, H, W), (N, H, W, 3) or (N, C, H, W), got shape {x.shape}: for "
                           f"one image, use image[None]")


def show_feature_maps(maps, row_names=None, col_names=None, inputs=None, scale: float = 1.25, title: str | None = None):
    """Feature maps as a grid: one row per image, one column per filter (each map scaled to its range).

    - maps: (N, F, H, W) array or tensor
    - row_names, col_names: N and F labels (images and filters)
    - inputs: optional N images (any layout :func:`course_lib.plots.show_images` takes) for a first column
    Returns the figure.
    """
    maps = np.asarray(maps.detach().cpu() if hasattr(maps, "detach") else maps)
    if maps.ndim != 4 or maps.dtype.kind not in "biuf" or 0 in maps.shape:
        raise CourseValueError(f"maps must be numbers of shape (N, F, H, W), got {describe(maps)}")
    n, f = maps.shape[:2]
    if n * (f + (inputs is not None)) > MAX_IMAGES:
        raise CourseValueError(f"{n} images x {f} filters is more than the {MAX_IMAGES} panels one figure can show: "
                               f"pass fewer, e.g. maps[:4, :16]")
    for names, count, what in ((row_names, n, "row_names (one per image)"),
                               (col_names, f, "col_names (one per filter)")):
        if names is not None and (isinstance(names, str) or len(names) != count):
            raise CourseValueError(f"{what} must hold {count} names, got {describe(names)}")
    scale = check_number("scale", scale, low=0, high=10, low_open=True, hint="inches per panel")
    if inputs is not None:
        inputs = np.asarray(inputs)
        if inputs.ndim == 4 and inputs.shape[1] in (1, 3) and inputs.shape[-1] not in (1, 3):
            inputs = inputs.transpose(0, 2, 3, 1)
        if inputs.ndim not in (3, 4) or len(inputs) != n:
            raise CourseValueError(f"inputs must be the {n} images the maps came from, got {describe(inputs)}")
    extra = inputs is not None
    fig, axes = plt.subplots(n, f + extra, figsize=(scale * (f + extra), scale * n), squeeze=False)
    for i in range(n):
        if extra:
            image = inputs[i][..., 0] if inputs[i].ndim == 3 and inputs[i].shape[-1] == 1 else inputs[i]
            axes[i, 0].imshow(scaled_for_display(image), cmap="gray" if image.ndim == 2 else None)
        for j in range(f):
            axes[i, j + extra].imshow(scaled_for_display(maps[i, j]), cmap="gray")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    if extra:
        axes[0, 0].set_title("input", fontsize=8)
    for j, name in enumerate(col_names or []):
        axes[0, j + extra].set_title(str(name), fontsize=8)
    for i, name in enumerate(row_names or []):
        axes[i, 0].set_ylabel(str(name), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _png(image: np.ndarray, zoom: int) -> bytes:
    """A 2-D array as a grayscale PNG, scaled to its range and enlarged ``zoom`` times (nearest pixel)."""
    from PIL import Image

    pixels = np.round(255 * scaled_for_display(image.astype(np.float64))).astype(np.uint8)
    pixels = np.kron(pixels, np.ones((zoom, zoom), dtype=np.uint8))
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="png")
    return buffer.getvalue()


class ConvExplorer:
    """The widget that :func:`conv_explorer` returns; shown by putting it last in a cell.

    Attributes a test or a curious student can read after any change of a control:
    ``output`` (the last output map, (H_out, W_out), or None after an error), ``output_shape``
    (the full (1, 1, H_out, W_out)), ``kernel_values`` and ``message`` (the line under the images).
    The output's size is the one ``conv`` returns; the message says so when torch's conv2d gives
    another for the same settings.
    """

    def __init__(self, conv, images, names=None, kernels=None, display_size: int = 192):
        import ipywidgets as w

        self.conv = check_callable("conv", conv, example="your conv2d(x, w, b=None, stride=1, padding=0)")
        display_size = check_int("display_size", display_size, low=16, high=2048, hint="screen pixels, e.g. 192")
        if kernels is not None and (not isinstance(kernels, dict) or not kernels or any(
                np.ndim(kernel) != 2 or 0 in np.shape(kernel) for kernel in kernels.values())):
            raise CourseValueError(f"kernels must be a dict of name -> 2-D array, got {describe(kernels)}")
        if isinstance(images, (list, tuple)):  # single images, possibly of different sizes
            self.images = [grayscale(np.asarray(image)[None])[0] for image in images]
        else:
            self.images = list(grayscale(images))
        self.names = list(names) if names is not None else [f"image {i}" for i in range(len(self.images))]
        if len(self.names) != len(self.images):
            raise CourseValueError(f"{len(self.images)} images but {len(self.names)} names: give one name per image")
        if not self.images:
            raise CourseValueError("conv_explorer needs at least one image")
        self.kernels = {**(PRESET_KERNELS if kernels is None else kernels)}
        self.zoom = max(1, display_size // max(max(image.shape[1:]) for image in self.images))
        self.output = self.output_shape = self.kernel_values = None
        self.message = ""

        style = {"description_width": "initial"}
        self.image = w.Dropdown(options=[(name, i) for i, name in enumerate(self.names)], value=0,
                                description="image", style=style)
        first = "Sobel x (vertical edges)" if "Sobel x (vertical edges)" in self.kernels else next(iter(self.kernels))
        self.kernel = w.Dropdown(options=[*self.kernels, *_RANDOM], value=first, description="kernel", style=style)
        self.seed = w.IntSlider(value=0, min=0, max=99, description="seed (random kernels)", style=style)
        self.stride = w.IntSlider(value=1, min=1, max=4, description="stride S", style=style)
        self.padding = w.IntSlider(value=1, min=0, max=4, description="padding P", style=style)
        # At their own size (one zoom for both, so a smaller output looks smaller), not stretched to the title.
        self.input_view = w.Image(format="png", layout=w.Layout(align_self="flex-start"))
        self.output_view = w.Image(format="png", layout=w.Layout(align_self="flex-start"))
        self.kernel_view = w.HTML()
        self.info = w.HTML()
        self.controls = [self.image, self.kernel, self.seed, self.stride, self.padding]
        for control in self.controls:
            control.observe(self._changed, names="value")
        titled = lambda title, view: w.VBox([w.HTML(f"<b>{title}</b>"), view])  # noqa: E731
        self.widget = w.VBox([
            w.HBox([w.VBox(self.controls[:3]), w.VBox(self.controls[3:])]),
            w.HBox([titled("input (grayscale)", self.input_view), titled("kernel", self.kernel_view),
                    titled("output map (black = lowest, white = highest)", self.output_view)]),
            self.info,
        ])
        self.update()  # the first picture, drawn now: nothing waits for a click

    def current_kernel(self) -> np.ndarray:
        """The selected kernel as a (KH, KW) array (random ones drawn from a normal, seeded)."""
        name = self.kernel.value
        if name in _RANDOM:
            size = _RANDOM[name]
            return np.random.default_rng(self.seed.value).standard_normal((size, size)) / size
        return np.asarray(self.kernels[name], dtype=np.float64)

    def _changed(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Run the convolution for the current controls and redraw; errors become a message."""
        x = self.images[self.image.value][None]  # (1, 1, H, W)
        kernel = self.current_kernel()
        stride, padding = self.stride.value, self.padding.value
        self.kernel_values = kernel
        self.input_view.value = _png(x[0, 0], self.zoom)
        self.kernel_view.value = _kernel_table(kernel)
        (h, width), (kh, kw) = x.shape[2:], kernel.shape
        padded = (h + 2 * padding, width + 2 * padding)
        name = getattr(self.conv, "__name__", "conv")
        if kh > padded[0] or kw > padded[1]:
            return self._failed(f"a {kh}×{kw} kernel does not fit in the padded {padded[0]}×{padded[1]} image: "
                                "add padding or pick a smaller kernel")
        try:
            out = np.asarray(self.conv(x, kernel[None, None], None, stride=stride, padding=padding))
        except Exception as err:  # a student's bug must not break the widget
            return self._failed(describe_failure(name, err))
        if out.ndim != 4 or out.shape[:2] != (1, 1):
            return self._failed(f"{name} returned shape {out.shape}: expected (1, 1, H_out, W_out) for one image "
                                "and one filter")
        self.output, self.output_shape = out[0, 0], tuple(out.shape)
        self.output_view.value = _png(self.output, self.zoom)
        self.output_view.layout.display = None
        expected = _torch_output_shape(x.shape, (1, 1, kh, kw), stride, padding)
        self.message = (f"input {x.shape} · kernel {kh}×{kw} · stride {stride} · padding {padding} (padded "
                        f"{padded[0]}×{padded[1]}) → output {self.output_shape}: "
                        f"{self.output_shape[2]}×{self.output_shape[3]} window positions"
                        + ("" if self.output_shape == expected else f" — but torch's conv2d gives {expected}"))
        self.info.value = html.escape(self.message)

    def _failed(self, message: str) -> None:
        self.output = self.output_shape = None
        self.message = _error_state(self.output_view, self.info, message)

    def _repr_mimebundle_(self, **kwargs):
        return _bundle(self.widget, self.message, **kwargs)


def _bundle(widget, message: str, **kwargs) -> dict:
    """The widget for a live notebook; its message as the text of an exported or graded copy."""
    bundle = widget._repr_mimebundle_(**kwargs)
    return {**bundle, "text/plain": message} if bundle else bundle


def _error_state(picture, info, message: str) -> str:
    """A widget's error state: its picture hidden (an empty image would show as a broken one), the
    message shown once, in red; returns the message."""
    picture.layout.display = "none"
    info.value = f"<span style='color:#b00'>{html.escape(message)}</span>"
    return message


def _torch_output_shape(x_shape, w_shape, stride: int, padding: int) -> tuple:
    """The shape of torch's conv2d output, computed on the meta device (no data, no arithmetic)."""
    import torch
    import torch.nn.functional as F

    meta = lambda shape: torch.empty(shape, device="meta")  # noqa: E731
    return tuple(F.conv2d(meta(x_shape), meta(w_shape), stride=stride, padding=padding).shape)


def _kernel_table(kernel: np.ndarray) -> str:
    cells = "".join("<tr>" + "".join(f"<td style='padding:0 4px;text-align:right'>{v:.2f}</td>" for v in row)
                    + "</tr>" for row in kernel[:7, :7])
    return f"<table style='font-family:monospace;font-size:11px'>{cells}</table>"


def conv_explorer(conv, images, names=None, kernels=None, display_size: int = 192) -> ConvExplorer:
    """An interactive explorer of ``conv`` on ``images``; put it last in a cell to show it.

    - conv: your ``conv2d(x, w, b=None, stride=1, padding=0)`` (NumPy, torch's layout); it is
      called with x (1, 1, H, W) and w (1, 1, KH, KW)
    - images: (N, H, W), (N, H, W, 3) or (N, C, H, W), or a list of single images (H, W) or
      (H, W, 3) of different sizes; shown in grayscale
    - names: one label per image for the menu
    - kernels: name → 2-D array, replacing :data:`PRESET_KERNELS` (random kernels are always offered)
    - display_size: about how many screen pixels the input image spans
    """
    return ConvExplorer(conv, images, names, kernels, display_size)


class PathExplorer:
    """The widget that :func:`path_explorer` returns; shown by putting it last in a cell.

    After any change of a control, ``paths`` holds the last paths drawn (name → (T + 1, 2)
    array), ``settings`` the keyword arguments they were made with, and ``message`` the line
    under the picture (an error of your code, if it raised one).
    """

    def __init__(self, make_paths, losses: dict, steps: int = 60, display_width: int = 640):
        import ipywidgets as w

        check_callable("make_paths", make_paths,
                       example="make_paths(loss, start, sgd_lr, momentum, adam_lr, betas, steps)")
        if not isinstance(losses, dict) or not losses or not all(
                all(hasattr(loss, name) for name in ("view", "start", "minimum", "grad")) for loss in losses.values()):
            raise CourseTypeError(f"losses must be a dict of name -> loss from course_lib.landscapes (Quadratic(), "
                                  f"Rosenbrock()), got {describe(losses)}")
        steps = check_int("steps", steps, low=5, high=500, hint="the steps slider runs from 5 to 500")
        display_width = check_int("display_width", display_width, low=100, high=4000, hint="pixels, e.g. 640")
        self.make_paths, self.losses, self.width = make_paths, dict(losses), display_width
        self.paths, self.settings, self.message = {}, {}, ""
        style = {"description_width": "initial"}
        slider = lambda cls, description, **kw: cls(description=description, style=style, continuous_update=False, **kw)  # noqa: E731
        self.loss = w.Dropdown(options=list(self.losses), description="loss", style=style)
        self.sgd_lr = slider(w.FloatLogSlider, "SGD lr", value=0.025, base=10, min=-4, max=0, step=0.1)
        self.momentum = slider(w.FloatSlider, "momentum μ", value=0.8, min=0.0, max=0.99, step=0.01)
        self.adam_lr = slider(w.FloatLogSlider, "Adam lr", value=0.1, base=10, min=-3, max=0, step=0.1)
        self.beta1 = slider(w.FloatSlider, "β1", value=0.9, min=0.0, max=0.99, step=0.01)
        self.beta2 = slider(w.FloatSlider, "β2", value=0.999, min=0.5, max=0.9999, step=0.0001, readout_format=".4f")
        self.steps = slider(w.IntSlider, "steps", value=steps, min=5, max=500, step=5)
        self.start_x = slider(w.FloatSlider, "start x", value=0.0, min=-5.0, max=5.0, step=0.1)
        self.start_y = slider(w.FloatSlider, "start y", value=0.0, min=-3.0, max=3.0, step=0.1)
        self.picture = w.Image(format="png", layout=w.Layout(align_self="flex-start"))  # at its own size
        self.info = w.HTML()
        self.controls = [self.loss, self.sgd_lr, self.momentum, self.adam_lr, self.beta1, self.beta2, self.steps,
                         self.start_x, self.start_y]
        self._reset_start()
        self.loss.observe(self._loss_changed, names="value")
        for control in self.controls[1:]:
            control.observe(self._changed, names="value")
        self.widget = w.VBox([w.HBox([w.VBox(self.controls[:5]), w.VBox(self.controls[5:])]), self.picture, self.info])
        self.update()

    def _reset_start(self) -> None:
        """Put the start sliders on the selected loss's default start and range."""
        loss = self.losses[self.loss.value]
        for slider, (low, high), value in ((self.start_x, loss.view[0], loss.start[0]),
                                           (self.start_y, loss.view[1], loss.start[1])):
            slider.min, slider.max = min(low, slider.min), max(high, slider.max)   # widen first: value stays valid
            slider.value = value
            slider.min, slider.max = low, high

    def _loss_changed(self, change) -> None:
        for slider in (self.start_x, self.start_y):
            slider.unobserve(self._changed, names="value")
        self._reset_start()
        for slider in (self.start_x, self.start_y):
            slider.observe(self._changed, names="value")
        self.update()

    def _changed(self, change) -> None:
        self.update()

    def update(self) -> None:
        """Make the paths for the current controls with your code and redraw; errors become a message."""
        from course_lib.landscapes import finite_part, plot_paths

        loss = self.losses[self.loss.value]
        start = np.array([self.start_x.value, self.start_y.value])
        self.settings = dict(sgd_lr=self.sgd_lr.value, momentum=self.momentum.value, adam_lr=self.adam_lr.value,
                             betas=(self.beta1.value, self.beta2.value), steps=self.steps.value)
        try:
            paths = self.make_paths(loss, start, **self.settings)
        except Exception as err:  # a student's bug must not break the widget
            self.paths = {}
            self.message = _error_state(self.picture, self.info,
                                        describe_failure(getattr(self.make_paths, "__name__", "make_paths"), err))
            return
        self.paths = {name: np.asarray(path, dtype=np.float64) for name, path in paths.items()}
        fig, ax = plt.subplots(figsize=(self.width / 100, 0.6 * self.width / 100), dpi=100)
        plot_paths(loss, self.paths, ax=ax)
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches="tight")
        plt.close(fig)
        self.picture.value = buffer.getvalue()
        self.picture.layout.display = None
        finals = ", ".join(f"{name} diverged" if len(finite_part(p)) < len(p) else f"{name} {float(loss(p[-1])):.3g}"
                           for name, p in self.paths.items())
        self.message = f"{self.steps.value} steps from ({start[0]:.1f}, {start[1]:.1f}); final loss: {finals}"
        self.info.value = html.escape(self.message)

    def _repr_mimebundle_(self, **kwargs):
        return _bundle(self.widget, self.message, **kwargs)


def path_explorer(make_paths, losses: dict, steps: int = 60, display_width: int = 640) -> PathExplorer:
    """An interactive explorer of optimizer paths on 2-D losses; put it last in a cell to show it.

    - make_paths: ``make_paths(loss, start, sgd_lr, momentum, adam_lr, betas, steps)`` returns a
      dict name → path ((steps + 1, 2) array) made with your step functions
    - losses: menu name → a loss from :mod:`course_lib.landscapes` (anything with ``view``,
      ``start``, ``minimum``, ``__call__`` and ``grad``)
    - steps: the starting number of steps; display_width: the picture's width in pixels
    """
    return PathExplorer(make_paths, losses, steps, display_width)
