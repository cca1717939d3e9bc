"""Transfer learning (notebook 06): the CIFAR-10 network of notebook 03 as a backbone for new data.

- ``Backbone``: a trained model with the input normalisation it was trained with
- ``load_backbone()``: notebook 03's saved ``FastCIFARNet`` (``settings.checkpoint_dir()``)
- ``train_backbone()``: notebook 03's recipe, for when that checkpoint is missing
- ``TransformedImages``: uint8 images with a per-image torchvision transform, for a ``DataLoader``
- ``imagenet_backbone()``: torchvision's ResNet-18 with ImageNet weights, where they can be downloaded
- ``keep_frozen_norms_in_eval()``: a true linear probe: frozen batch norms stay in evaluation mode in training
- ``stratified_folds()``: fold indices for k-fold cross-validation, each class spread evenly over the folds
- ``activations_and_gradients()``, ``saliency()``: what a model's class score depends on, for heat maps
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
    "train_backbone", "write_json", "IMAGENET_MEAN", "IMAGENET_STD", "keep_frozen_norms_in_eval", "stratified_folds",
    "activations_and_gradients", "saliency", "backbone_blocks",
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
    weights = list(model.parameters())
    optimizer = torch.optim.SGD(weights, lr=0.4, momentum=0.85, nesterov=True, weight_decay=5e-4)
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


# ---------------------------------------------------------------- frozen batch norms

_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _frozen_norms_to_eval(model: nn.Module, inputs) -> None:
    """Forward pre-hook of ``keep_frozen_norms_in_eval``."""
    if model.training:
        for module in model.modules():
            if isinstance(module, _NORMS) and not any(p.requires_grad for p in module.parameters()):
                module.eval()


def keep_frozen_norms_in_eval(model: nn.Module) -> nn.Module:
    """Keep ``model``'s frozen batch norms in evaluation mode while it trains; returns ``model``.

    ``requires_grad`` stops a batch norm's scale and shift from learning, but not its running statistics:
    in training mode a batch norm normalises with each batch's own mean and variance and moves its running
    ones towards them. ``fit`` puts the whole model in training mode at every epoch, so a "frozen" backbone
    would still change what it computes. After this call, every forward pass in training mode first puts back
    in evaluation mode each batch norm none of whose parameters learns (checked at each pass, so layers
    unfrozen later train as usual): they normalise with the running statistics they came with and keep them.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"keep_frozen_norms_in_eval takes a model (an nn.Module), got a {type(model).__name__}")
    if not getattr(model, "_keeps_frozen_norms_in_eval", False):
        model.register_forward_pre_hook(_frozen_norms_to_eval)
        model._keeps_frozen_norms_in_eval = True
    return model


def backbone_blocks(model: nn.Module) -> list:
    """A ``FastCIFARNet``'s stem and its three blocks, bottom to top: four lists of layers (leaf modules).

    Found from the order of its convolutions (the stem's, then two per block; a block starts at its first), so
    it works on any model built from the same layers in the same order; the head's ``nn.Linear`` is in none.
    """
    leaves = [m for m in model.modules() if not list(m.children())]
    convs = [m for m in leaves if isinstance(m, nn.Conv2d)]
    if len(convs) != 7:
        raise ValueError(f"backbone_blocks expects FastCIFARNet's 7 convolutions, found {len(convs)}")
    starts = {id(convs[i]) for i in (0, 1, 3, 5)}
    blocks: list = []
    for module in leaves:
        if id(module) in starts:
            blocks.append([])
        if blocks and not isinstance(module, nn.Linear):
            blocks[-1].append(module)
    return blocks


# ---------------------------------------------------------------- folds

def stratified_folds(y, k: int = 5, seed: int = 0) -> list:
    """``k`` folds for cross-validation: a list of ``(train_index, held_out_index)`` pairs, sorted index arrays.

    Each example is held out exactly once. Each class is shuffled (``seed``) and dealt out in turn, so every
    fold holds its share of each class to within one example, and the folds' sizes differ by at most one.
    """
    y = np.asarray(y)
    if y.ndim != 1 or not 2 <= int(k) <= len(y):
        raise ValueError(f"stratified_folds needs 1-D labels and 2 <= k <= {len(y)}, got shape {y.shape} and k={k}")
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(y), dtype=np.int64)
    dealt = 0
    for label in np.unique(y):
        members = rng.permutation(np.flatnonzero(y == label))
        fold_of[members] = (dealt + np.arange(len(members))) % k     # carry on where the last class stopped
        dealt += len(members)
    return [(np.flatnonzero(fold_of != fold), np.flatnonzero(fold_of == fold)) for fold in range(int(k))]


# ---------------------------------------------------------------- what the model looks at

def activations_and_gradients(model: nn.Module, layer: nn.Module, images: torch.Tensor, classes) -> tuple:
    """What ``layer`` of ``model`` gives for ``images``, and how each image's score for its class depends on it.

    images: normalised (N, C, H, W); classes: (N,) one class per image (the true or the predicted one).
    Returns ``(activations, gradients)``, both (N, K, h, w) and detached: ``layer``'s output, and the
    gradient of the logit ``model(images)[i, classes[i]]`` with respect to it. The model runs in evaluation
    mode and is left in the mode it was in; its parameters' gradients are not touched.
    """
    saved = {}

    def keep(module, inputs, output):
        output.retain_grad()
        saved["out"] = output

    classes = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    was_training = model.training
    handle = layer.register_forward_hook(keep)
    try:
        model.eval()
        with torch.set_grad_enabled(True):
            logits = model(images.detach().clone().requires_grad_(True))
            if "out" not in saved:
                raise ValueError("the layer given to activations_and_gradients did not run in the model's forward pass")
            score = logits.gather(1, classes[:, None].to(logits.device)).sum()
            gradients, = torch.autograd.grad(score, saved["out"])
    finally:
        handle.remove()
        model.train(was_training)
    return saved["out"].detach(), gradients.detach()


def saliency(model: nn.Module, images: torch.Tensor, classes) -> torch.Tensor:
    """A saliency map per image (Simonyan, Vedaldi and Zisserman, 2014): how strongly the logit of its class
    reacts to each pixel, the largest absolute gradient over the colour channels. images: normalised (N, C, H, W);
    classes: (N,). Returns (N, H, W), detached; the model runs in evaluation mode and is left as it was."""
    classes = torch.as_tensor(np.asarray(classes), dtype=torch.long)
    was_training = model.training
    try:
        model.eval()
        with torch.set_grad_enabled(True):
            pixels = images.detach().clone().requires_grad_(True)
            score = model(pixels).gather(1, classes[:, None]).sum()
            gradient, = torch.autograd.grad(score, pixels)
    finally:
        model.train(was_training)
    return gradient.abs().amax(dim=1)
