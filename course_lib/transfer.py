"""Transfer learning (notebook 06): the CIFAR-10 network of notebook 03 as a backbone for new data.

- ``Backbone``: a trained model with the input normalisation it was trained with
- ``load_backbone()``: notebook 03's saved ``FastCIFARNet`` (``settings.checkpoint_dir()``)
- ``train_backbone()``: notebook 03's recipe, for when that checkpoint is missing
- ``TransformedImages``: uint8 images with a per-image torchvision transform, for a ``DataLoader``
- ``imagenet_backbone()``: torchvision's ResNet-18 with ImageNet weights, where they can be downloaded
"""
from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from course_lib.errors import CourseFileNotFoundError
from course_lib.models import FastCIFARNet
from course_lib.settings import checkpoint_dir, downloads_allowed, fast_or_full, is_fast, seed_everything

__all__ = [
    "load_backbone", "Backbone", "BackboneNotFoundError", "TransformedImages", "imagenet_backbone", "backbone_path",
    "train_backbone", "write_json", "IMAGENET_MEAN", "IMAGENET_STD",
]

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class BackboneNotFoundError(CourseFileNotFoundError):
    """Notebook 03's checkpoint is not where notebook 06 looks for it."""


@dataclass
class Backbone:
    """A trained network and what its inputs must look like.

    - model: the network (its last ``nn.Linear`` is the classifier head)
    - mean, std: per input channel, on the [0, 1] scale: inputs are normalised as (x - mean) / std
    - description: where it came from and how good it was
    """

    model: nn.Module
    mean: tuple
    std: tuple
    description: str


def backbone_path(fast: bool | None = None) -> Path:
    """Where notebook 03 saves its best ``FastCIFARNet``: one file for fast mode, one for full mode."""
    fast = is_fast() if fast is None else fast
    return checkpoint_dir() / f"03_fastcifarnet_{'fast' if fast else 'full'}.pt"


def load_backbone(path=None, train_if_missing: bool = False) -> Backbone:
    """Notebook 03's ``FastCIFARNet`` (this mode's checkpoint, or ``path``) with its normalisation.

    A missing checkpoint raises ``BackboneNotFoundError`` naming notebook 03 and ``train_backbone``,
    unless ``train_if_missing``: then it is trained here first (seconds in fast mode).
    """
    path = Path(path) if path is not None else backbone_path()
    if not path.exists():
        if train_if_missing:
            print(f"no checkpoint at {path}: training one with notebook 03's recipe")
            return train_backbone(path=path)
        minutes = fast_or_full("under a minute", "about 20 minutes on 2 CPU cores, 1 on a GPU")
        raise BackboneNotFoundError(
            f"no CIFAR-10 model from notebook 03 at {path}.\n"
            f"Run notebook 03 to its end in {'fast' if is_fast() else 'full'} mode (it saves the model there), "
            f"or train it here with notebook 03's recipe ({minutes}):\n"
            "    backbone = train_backbone()")
    try:
        info = json.loads(path.with_suffix(".json").read_text())
    except (OSError, ValueError) as err:
        raise BackboneNotFoundError(f"{path} has no readable description beside it ({path.with_suffix('.json').name}: "
                                    f"{err}); run notebook 03's saving cell again, or train_backbone()") from None
    from course_lib.trainer import load_checkpoint

    model = FastCIFARNet(widths=info["widths"])
    load_checkpoint(path, model)
    mode = "fast" if info["fast_mode"] else "full"
    return Backbone(model.eval(), tuple(info["mean"]), tuple(info["std"]),
                    f"FastCIFARNet from notebook 03 ({mode} mode, {info['training_images']:,} training images, "
                    f"{info['test_accuracy']:.1%} CIFAR-10 test accuracy): {path}")


def train_backbone(images: int | None = None, epochs: int | None = None, path=None, seed: int = 0) -> Backbone:
    """Train ``FastCIFARNet`` on CIFAR-10 with notebook 03's recipe and save it where ``load_backbone``
    looks. Defaults: 1,024 images for 2 epochs in fast mode; all 50,000 for 10 epochs in full mode.

    Recipe: batches of 256 with random crops (reflect padding 2) and flips; SGD, Nesterov momentum
    0.85, weight decay 5e-4, one-cycle to 0.4 (20% warm-up, linear); label smoothing 0.2.
    """
    from course_lib.data import cifar10_splits, load_cifar10
    from course_lib.trainer import DeviceLoader, evaluate, fit, save_checkpoint

    images = fast_or_full(1_024, None) if images is None else images
    epochs = fast_or_full(2, 10) if epochs is None else epochs
    path = Path(path) if path is not None else backbone_path()
    train = load_cifar10("train").sample(images, seed=seed)
    pixels = train.sample(5_000).x.reshape(-1, 3) / 255
    mean, std = pixels.mean(axis=0), pixels.std(axis=0)
    test = cifar10_splits("official").test.sample(fast_or_full(1_000, None))
    seed_everything(seed)
    loader = DeviceLoader(train.x, train.y, 256, shuffle=True, crop_padding=2, flip=True, mean=mean, std=std,
                          drop_last=True)
    model = FastCIFARNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.85, nesterov=True, weight_decay=5e-4)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.4, total_steps=epochs * len(loader), pct_start=0.2,
                                                    anneal_strategy="linear", div_factor=10, final_div_factor=100)
    start = time.perf_counter()
    history = fit(model, loader, None, epochs, optimizer, scheduler, loss_fn=nn.CrossEntropyLoss(label_smoothing=0.2),
                  channels_last=True)
    seconds = time.perf_counter() - start
    accuracy = evaluate(model, DeviceLoader(test.x, test.y, 1000, mean=mean, std=std), tta_flip=True).accuracy
    try:
        save_checkpoint(path, model, optimizer, history)
        write_json(path.with_suffix(".json"), {
            "model": "FastCIFARNet", "widths": [16, 32, 64, 64], "notebook": "course_lib.transfer.train_backbone",
            "fast_mode": is_fast(), "training_images": len(train), "epochs": epochs, "mean": mean.tolist(),
            "std": std.tolist(), "test_accuracy": accuracy, "test_images": len(test), "train_seconds": seconds})
    except OSError as err:  # a read-only cache (the grader's sandbox): the model still serves this session
        print(f"could not save it ({err.strerror or err}): it is kept for this session only; set "
              "COURSE_CHECKPOINT_DIR to a writable folder to keep it")
        return Backbone(model.eval(), tuple(mean.tolist()), tuple(std.tolist()),
                        f"FastCIFARNet trained here ({len(train):,} images, {accuracy:.1%} CIFAR-10 test accuracy), "
                        "not saved")
    return load_backbone(path)


def write_json(path: Path, record: dict) -> None:
    """Write ``record`` through a temporary file, so that a reader never sees half of it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "w") as file:
        json.dump(record, file, indent=2)
    os.replace(tmp, path)


class TransformedImages(torch.utils.data.Dataset):
    """Images and labels for a ``DataLoader``: item ``i`` is ``(transform(image), label)``.

    x: uint8 (N, H, W, C) or (N, H, W); each image reaches ``transform`` as a uint8 tensor (C, H, W).
    y: (N,) integer labels. transform: e.g. a ``torchvision.transforms.v2.Compose``.
    """

    def __init__(self, x, y, transform):
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        self.x, self.y, self.transform = np.asarray(x), np.asarray(y, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        image = torch.from_numpy(self.x[index])
        image = image[None] if image.ndim == 2 else image.permute(2, 0, 1)
        return self.transform(image), int(self.y[index])


def imagenet_backbone() -> Backbone:
    """torchvision's ResNet-18 with its ImageNet weights (about 45 MB, downloaded once into torch's
    cache). Raises ``BackboneNotFoundError`` where they cannot be had (offline, ``COURSE_DOWNLOAD=0``)."""
    import torchvision

    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    if not downloads_allowed():
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.exists():
            raise BackboneNotFoundError(f"ImageNet weights are not in {cached.parent} and COURSE_DOWNLOAD=0 "
                                        "forbids downloading them; use load_backbone() instead")
    try:
        model = torchvision.models.resnet18(weights=weights)
    except Exception as err:  # no network, server down, ...
        raise BackboneNotFoundError(f"ImageNet weights could not be downloaded ({type(err).__name__}: {err}); "
                                    "use load_backbone() instead") from None
    return Backbone(model.eval(), IMAGENET_MEAN, IMAGENET_STD,
                    "ResNet-18 with torchvision's ImageNet weights (IMAGENET1K_V1, 69.8% top-1)")
