"""Plots the notebooks share: training curves, image grids, confusion matrices.

Each function checks what it is given first: a wrong layout, a label beyond the class names or
an empty input is a ``CourseValueError`` / ``CourseTypeError`` that says what to pass instead.
"""
from __future__ import annotations

from collections.abc import Mapping

import matplotlib.pyplot as plt
import numpy as np

from course_lib.errors import CourseTypeError, CourseValueError
from course_lib.validation import check_int, check_number, describe

__all__ = [
    "plot_history", "show_images", "plot_confusion_matrix", "compare_histories", "plot_spread", "scaled_for_display",
    "MAX_IMAGES",
    "CURVES",
    "show_heat_maps",
]

MAX_IMAGES = 256  # more than this in one grid takes minutes to draw and shows nothing
CURVES = ("train_loss", "train_acc", "val_loss", "val_acc")


def plot_history(history, title: str | None = None):
    """Loss and accuracy per epoch, train vs validation, side by side.

    ``history``: a mapping (or an object with ``as_dict()``) holding lists ``train_loss``,
    ``train_acc`` and, optionally, ``val_loss`` and ``val_acc``. Returns the figure.
    """
    curves = _curves("history", history)
    if not any(len(curves.get(key, [])) for key in CURVES):
        raise CourseValueError(f"history has no values for any of {', '.join(CURVES)} (keys: "
                               f"{', '.join(map(str, curves)) or 'none'}): pass what fit returned, after at least "
                               f"one epoch")
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, metric, label in ((axes[0], "loss", "loss"), (axes[1], "acc", "accuracy")):
        for part, style in (("train", "-"), ("val", "--")):
            values = curves.get(f"{part}_{metric}")
            if values is not None and len(values):
                ax.plot(np.arange(1, len(values) + 1), values, style, marker="o", ms=3,
                        label="validation" if part == "val" else part)
        ax.set(xlabel="epoch", ylabel=label)
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_images(images, labels=None, class_names=None, ncols: int = 8, scale: float = 1.3, title: str | None = None):
    """A grid of images: (N, H, W), (N, H, W, C) uint8/float, or (N, C, H, W) tensors/arrays.

    At most ``MAX_IMAGES`` (256) images; C is 1, 3 (RGB) or 4 (RGBA).
    """
    images = _numbers("images", images)
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3, 4):
        images = images.transpose(0, 2, 3, 1)
    if images.ndim not in (3, 4) or (images.ndim == 4 and images.shape[-1] not in (1, 3, 4)) \
            or 0 in images.shape[1:]:
        raise CourseValueError(f"images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with C = 1, 3 or 4, got "
                               f"{describe(images)}: for one image, use images[None]")
    if not 0 < len(images) <= MAX_IMAGES:
        raise CourseValueError(f"show_images draws 1 to {MAX_IMAGES} images, got {len(images)}: pass a slice, "
                               f"e.g. images[:32]")
    if images.dtype == bool:
        images = images.astype(np.uint8) * 255
    ncols = check_int("ncols", ncols, low=1, hint="images per row")
    scale = check_number("scale", scale, low=0, high=10, low_open=True, hint="inches per image, e.g. 1.3")
    if class_names is not None and (isinstance(class_names, str) or not hasattr(class_names, "__len__")):
        raise CourseTypeError(f"class_names must be a list of names, got {describe(class_names)}")
    if labels is not None:
        labels = _labels("labels", labels, len(class_names) if class_names else None)
        if len(labels) != len(images):
            raise CourseValueError(f"{len(images)} images but {len(labels)} labels: give one label per image")
    fig, axes = _image_grid(len(images), ncols, scale)
    for i, ax in enumerate(axes):
        image = images[i][..., 0] if images[i].ndim == 3 and images[i].shape[-1] == 1 else images[i]
        ax.imshow(scaled_for_display(image), cmap="gray" if image.ndim == 2 else None)
        if labels is not None:
            label = int(labels[i])
            ax.set_title(class_names[label] if class_names else str(label), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def show_heat_maps(images, maps, titles=None, ncols: int = 6, alpha: float = 0.5, scale: float = 1.6,
                   title: str | None = None):
    """Heat maps over their images: ``images`` (N, H, W, 3) uint8 or in [0, 1], ``maps`` (N, h, w) numbers >= 0
    (a tensor or an array; a coarse map is stretched smoothly to H x W). Each map is shown on its own scale,
    from 0 (transparent) to its maximum (red); a map that is 0 everywhere shows nothing. ``titles``: one short
    string per image."""
    import torch
    import torch.nn.functional as F

    images = _numbers("images", images)
    maps = _numbers("maps", maps)
    if images.ndim != 4 or images.shape[-1] != 3 or maps.ndim != 3 or len(maps) != len(images):
        raise CourseValueError(f"show_heat_maps needs images (N, H, W, 3) and maps (N, h, w) for the same N, got "
                               f"{describe(images)} and {describe(maps)}")
    if not 0 < len(images) <= MAX_IMAGES:
        raise CourseValueError(f"show_heat_maps draws 1 to {MAX_IMAGES} images, got {len(images)}: pass a slice")
    if titles is not None and len(titles) != len(images):
        raise CourseValueError(f"{len(images)} images but {len(titles)} titles")
    ncols = check_int("ncols", ncols, low=1, hint="images per row")
    stretched = F.interpolate(torch.as_tensor(np.nan_to_num(maps), dtype=torch.float32)[:, None],
                              size=images.shape[1:3], mode="bilinear", align_corners=False)[:, 0].numpy()
    peaks = stretched.max(axis=(1, 2), keepdims=True)
    stretched = np.where(peaks > 0, stretched / np.where(peaks > 0, peaks, 1), 0.0)
    fig, axes = _image_grid(len(images), min(ncols, len(images)), scale)
    for i, ax in enumerate(axes):
        ax.imshow(scaled_for_display(images[i]))
        ax.imshow(stretched[i], cmap="jet", alpha=alpha * stretched[i], vmin=0, vmax=1)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def scaled_for_display(image: np.ndarray) -> np.ndarray:
    """uint8 as it is; anything else scaled from its finite range to [0, 1] (NaN and inf as 0)."""
    if image.dtype == np.uint8:
        return image
    image = image.astype(np.float64)
    finite = np.isfinite(image)
    if not finite.any():
        return np.zeros_like(image)
    low, high = image[finite].min(), image[finite].max()
    scaled = (image - low) / (high - low) if high > low else np.zeros_like(image)
    return np.where(finite, scaled, 0.0)


def plot_confusion_matrix(targets, predictions, class_names, normalize: bool = True, title: str | None = None):
    """Confusion matrix (rows: true class, columns: predicted), as fractions of each row by default.

    targets, predictions: (N,) class indices in [0, len(class_names)).
    """
    from sklearn.metrics import confusion_matrix

    if isinstance(class_names, str) or not hasattr(class_names, "__len__") or not len(class_names):
        raise CourseTypeError(f"class_names must be a list of names, one per class, got {describe(class_names)}")
    targets, predictions = (_labels(name, values, len(class_names))
                            for name, values in (("targets", targets), ("predictions", predictions)))
    if len(targets) != len(predictions) or not len(targets):
        raise CourseValueError(f"targets and predictions must be as long as each other and not empty, got "
                               f"{len(targets)} targets and {len(predictions)} predictions")
    matrix = confusion_matrix(targets, predictions, labels=range(len(class_names)))
    if normalize:
        matrix = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(0.6 * len(class_names) + 2, 0.6 * len(class_names) + 1.5))
    shown = ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(class_names)), yticks=range(len(class_names)), xlabel="predicted", ylabel="true")
    ax.set_xticklabels(class_names, rotation=45, ha="right")
    ax.set_yticklabels(class_names)
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, f"{value:.2f}" if normalize else str(value), ha="center", va="center", fontsize=7,
                color="white" if value > matrix.max() / 2 else "black")
    fig.colorbar(shown, ax=ax, fraction=0.046)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


_LABELS = {"train_loss": "training loss", "train_acc": "training accuracy", "val_loss": "validation loss",
           "val_acc": "validation accuracy", "lr": "learning rate (epoch start)", "seconds": "seconds per epoch"}


def compare_histories(histories: dict, keys=("train_loss", "val_acc"), title: str | None = None, axes=None):
    """Several runs overlaid: one panel per ``History`` field in ``keys``, one line per run.

    ``histories``: run name → a ``History`` (or a mapping of lists), or a list of them (the same
    run with several seeds: their mean is drawn, with a band from the lowest to the highest seed).
    Losses get a log axis. ``axes``: one matplotlib axes per key to draw into (default: a new
    figure). Returns the figure.
    """
    if not isinstance(histories, Mapping) or not histories:
        raise CourseTypeError(f"histories must be a dict of run name -> History with at least one run, got "
                              f"{describe(histories)}")
    curves = {name: _seed_curves(f"histories[{name!r}]", history) for name, history in histories.items()}
    keys = (keys,) if isinstance(keys, str) else tuple(keys)
    for name, record in curves.items():
        missing = [key for key in keys if key not in record]
        if missing:
            raise CourseValueError(f"run {name!r} has no {', '.join(missing)}; it has {', '.join(map(str, record))}: "
                                   f"pick keys from those")
    if not keys:
        raise CourseValueError("keys is empty: name at least one History field, e.g. keys=('val_acc',)")
    if axes is None:
        axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.6), squeeze=False)[1][0]
    axes = [axes] if hasattr(axes, "plot") else list(np.ravel(np.asarray(axes, dtype=object)))
    if len(axes) != len(keys):
        raise CourseValueError(f"got {len(axes)} axes for {len(keys)} keys {keys}: pass one axes per key")
    for ax, key in zip(axes, keys):
        for name, record in curves.items():
            values = np.atleast_2d(np.asarray(record[key], dtype=float))    # (seeds, epochs)
            epochs = np.arange(1, values.shape[1] + 1)
            line, = ax.plot(epochs, values.mean(axis=0), marker="o", ms=3,
                            label=name if len(values) == 1 else f"{name} ({len(values)} seeds)")
            if len(values) > 1:
                ax.fill_between(epochs, values.min(axis=0), values.max(axis=0), color=line.get_color(), alpha=0.15)
        ax.set(xlabel="epoch", ylabel=_LABELS.get(key, key), yscale="log" if key.endswith("loss") else "linear")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    fig = axes[0].figure
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _image_grid(n: int, ncols: int, scale: float):
    """A figure of ceil(n / ncols) rows of ``ncols`` axes, all without ticks; returns it and its first n axes."""
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    return fig, list(axes.flat)[:n]


def _seed_curves(name: str, history) -> dict:
    """One run's curves, or several seeds' (a list of runs): key -> list of numbers, or list of such lists."""
    if not isinstance(history, (list, tuple)):
        return _curves(name, history)
    if not history:
        raise CourseValueError(f"{name} is an empty list: give at least one History")
    runs = [_curves(f"{name}[{i}]", run) for i, run in enumerate(history)]
    keys = [key for key in runs[0] if all(key in run and isinstance(run[key], (list, tuple)) for run in runs)]
    lengths = {key: {len(run[key]) for run in runs} for key in keys}
    uneven = [key for key in keys if len(lengths[key]) > 1]
    if uneven:
        raise CourseValueError(f"the runs of {name} have {uneven[0]} of different lengths {sorted(lengths[uneven[0]])}: "
                               "give runs of the same number of epochs")
    return {key: [list(run[key]) for run in runs] for key in keys}


def plot_spread(results: dict, xlabel: str = "validation accuracy", title: str | None = None, ax=None):
    """Each run's value over several seeds: one row per name, a dot per seed, the mean ± one standard deviation.

    ``results``: name → a list of numbers (one per seed), drawn top to bottom in the dict's order.
    Returns the axes.
    """
    if not isinstance(results, Mapping) or not results:
        raise CourseTypeError(f"results must be a dict of name -> list of numbers, got {describe(results)}")
    values = {name: _numbers(f"results[{name!r}]", numbers).reshape(-1) for name, numbers in results.items()}
    empty = [name for name, numbers in values.items() if not len(numbers)]
    if empty:
        raise CourseValueError(f"results[{empty[0]!r}] is empty: give one number per seed")
    if ax is None:
        ax = plt.subplots(figsize=(7, 0.32 * len(values) + 1.2))[1]
    for row, (name, numbers) in enumerate(values.items()):
        spread = numbers.std(ddof=1) if len(numbers) > 1 else 0.0
        ax.errorbar(numbers.mean(), row, xerr=spread, fmt="o", color="C0", capsize=3)
        ax.plot(numbers, np.full(len(numbers), row), "|", color="C1", ms=9)
    ax.set_yticks(range(len(values)), list(values), fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=f"{xlabel}: mean ± standard deviation (dot, bar) and each seed (ticks)")
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title)
    ax.figure.tight_layout()
    return ax


def _curves(name: str, history) -> dict:
    """A History (or a mapping of lists) as a dict of name -> list of numbers."""
    if hasattr(history, "as_dict"):
        history = history.as_dict()
    if not isinstance(history, Mapping):
        raise CourseTypeError(f"{name} must be a History (what fit returns) or a dict of lists, got "
                              f"{describe(history)}")
    return dict(history)


def _numbers(name: str, values) -> np.ndarray:
    """An array or tensor (any device) as a NumPy array of numbers."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    try:
        array = np.asarray(values)
    except (TypeError, ValueError) as err:
        raise CourseTypeError(f"{name} must be an array of numbers, got {describe(values)} ({err})") from None
    if array.dtype.kind not in "biuf":
        raise CourseTypeError(f"{name} must hold numbers, got {describe(values)} of dtype {array.dtype}")
    return array


def _labels(name: str, values, num_classes: int | None) -> np.ndarray:
    """(N,) class indices as int64, each in [0, num_classes) when that is known."""
    array = _numbers(name, values).reshape(-1) if np.ndim(values) <= 1 else None
    if array is None or (array.dtype.kind == "f" and not np.all(array == np.round(array))):
        raise CourseValueError(f"{name} must be (N,) class indices (whole numbers), got {describe(values)}")
    array = array.astype(np.int64)
    if len(array) and array.min() < 0:
        raise CourseValueError(f"{name} must be class indices >= 0, but found {array.min()}")
    if len(array) and num_classes is not None and array.max() >= num_classes:
        raise CourseValueError(f"{name} go up to {array.max()}, but there are {num_classes} class names "
                               f"(labels 0..{num_classes - 1}): pass one name per class")
    return array
