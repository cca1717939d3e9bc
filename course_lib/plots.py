"""Plots the notebooks share: training curves, image grids, confusion matrices."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def plot_history(history, title: str | None = None):
    """Loss and accuracy per epoch, train vs validation, side by side.

    ``history``: a mapping (or an object with ``as_dict()``) holding lists ``train_loss``,
    ``train_acc`` and, optionally, ``val_loss`` and ``val_acc``. Returns the figure.
    """
    curves = history.as_dict() if hasattr(history, "as_dict") else dict(history)
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
    """A grid of images: (N, H, W), (N, H, W, C) uint8/float, or (N, C, H, W) tensors/arrays."""
    images = np.asarray(images.detach().cpu() if hasattr(images, "detach") else images)
    if images.ndim == 4 and images.shape[1] in (1, 3) and images.shape[-1] not in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(scale * ncols, scale * nrows), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= n:
            continue
        image = images[i].squeeze()
        ax.imshow(_displayable(image), cmap="gray" if image.ndim == 2 else None)
        if labels is not None:
            label = int(labels[i])
            ax.set_title(class_names[label] if class_names else str(label), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _displayable(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint8:
        return image
    low, high = image.min(), image.max()
    return (image - low) / (high - low) if high > low else np.zeros_like(image, dtype=float)


def plot_confusion_matrix(targets, predictions, class_names, normalize: bool = True, title: str | None = None):
    """Confusion matrix (rows: true class, columns: predicted), as fractions of each row by default."""
    from sklearn.metrics import confusion_matrix

    matrix = confusion_matrix(np.asarray(targets), np.asarray(predictions), labels=range(len(class_names)))
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

    ``histories``: run name → a ``History`` (or a mapping of lists). Losses get a log axis.
    ``axes``: one matplotlib axes per key to draw into (default: a new figure). Returns the figure.
    """
    if axes is None:
        axes = plt.subplots(1, len(keys), figsize=(5.2 * len(keys), 3.6), squeeze=False)[1][0]
    if len(axes) != len(keys):
        raise ValueError(f"got {len(axes)} axes for {len(keys)} keys {keys}")
    for ax, key in zip(axes, keys):
        for name, history in histories.items():
            values = (history.as_dict() if hasattr(history, "as_dict") else dict(history))[key]
            ax.plot(np.arange(1, len(values) + 1), values, marker="o", ms=3, label=name)
        ax.set(xlabel="epoch", ylabel=_LABELS.get(key, key), yscale="log" if key.endswith("loss") else "linear")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="best")
    fig = axes[0].figure
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
