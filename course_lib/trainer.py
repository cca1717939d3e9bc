"""Training and evaluation for the course's PyTorch notebooks (03-06).

    train = DeviceLoader(x_train, y_train, batch_size=256, shuffle=True, crop_padding=4, flip=True)
    test = DeviceLoader(x_test, y_test, batch_size=1000)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=10 * len(train))
    history = fit(model, train, test, 10, optimizer, scheduler)
    result = evaluate(model, test, tta_flip=True)     # result.accuracy, result.predictions
    save_checkpoint("model.pt", model, optimizer, history)

What ``fit`` does for you, and the rules it follows:

- Device: ``device=None`` uses the data's device for a ``DeviceLoader`` and ``settings.get_device()``
  (CUDA > MPS > CPU, or ``COURSE_DEVICE``) otherwise. The model (and any optimizer state) is moved
  to that device in place, and the progress header says so; every batch is copied there too.
- Mixed precision: ``amp="auto"`` turns autocast on for CUDA only (bfloat16 from compute capability
  8.0 on, as on an A100 or H100; float16 with a ``GradScaler`` below, as on Colab's T4); ``amp=True`` also turns it on for CPU (bfloat16) and MPS.
- No host synchronisation per step: loss and correct counts are summed on the device and read
  once per epoch, or when the progress bar refreshes (at most twice a second).
- Schedulers: OneCycleLR and CyclicLR are stepped after every batch, every other scheduler once
  per epoch (ReduceLROnPlateau with the validation loss, or the training loss when ``val`` is
  None). ``scheduler_step="batch"`` or ``"epoch"`` overrides the rule.
- Models may output (N, K) logits with K >= 2 (cross-entropy, prediction = argmax) or a single
  logit (N,) / (N, 1) for two classes (binary cross-entropy, prediction = logit > 0).
- Mistakes stop before training, with a message that says what to do (``course_lib.errors``): a
  pair (x, y) or an array instead of batches, epochs < 0, an optimizer built on another model's
  parameters, images of a shape the model does not take (found by the first batch), labels beyond
  the model's outputs. A loss that turns NaN or infinite stops ``fit`` at once on a CPU, and at the
  next progress-bar refresh or epoch end on a GPU (so as not to wait for the GPU at every step),
  naming the epoch and step where it first happened; ``stop_on_nonfinite=False`` trains on.
- Time budget: ``time_limit=seconds`` ends training after the step that reaches it (that epoch is
  still validated and recorded); ``History.time_limit_reached`` says whether it did.
"""
from __future__ import annotations

import contextlib
import copy
import math
import os
import tempfile
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_lib.errors import (CheckpointError, CourseFileNotFoundError, CourseRuntimeError, CourseTypeError,
                               CourseValueError, NonFiniteLossError)
from course_lib.settings import describe_device, get_device
from course_lib.validation import (check_batch, check_batches, check_callable, check_choice, check_int, check_module,
                                   check_number, check_path, check_seed, describe, explain_forward_error)

__all__ = [
    "History", "EvalResult", "DeviceLoader", "fit", "evaluate", "save_checkpoint", "load_checkpoint",
    "random_crop", "random_flip", "RangeTest", "lr_range_test",
]

_PER_BATCH_SCHEDULERS = (torch.optim.lr_scheduler.OneCycleLR, torch.optim.lr_scheduler.CyclicLR)


# ----------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------
@dataclass
class History:
    """Per-epoch training record; every list field holds one float per epoch.

    ``lr`` is the learning rate of the first parameter group when the epoch started, ``seconds``
    the epoch's wall-clock time (validation included). ``val_loss`` and ``val_acc`` stay empty
    when ``fit`` ran without validation data. Accuracies are fractions in [0, 1].
    ``time_limit_reached`` is True when ``fit`` stopped at its ``time_limit``: then the last
    epoch is the partial one it stopped in.
    """

    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    lr: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    time_limit_reached: bool = False

    def __len__(self) -> int:
        return len(self.train_loss)

    def best(self, key: str = "val_acc") -> float:
        """The best value of ``key``: the largest accuracy or the smallest loss."""
        epoch = self.best_epoch(key)
        return getattr(self, key)[epoch - 1]

    def best_epoch(self, key: str = "val_acc") -> int:
        """The epoch (counting from 1) where ``key`` was best."""
        values = getattr(self, check_choice("key", key, tuple(self.as_dict())))
        if not values:
            raise CourseValueError(f"History.{key} is empty: did fit run with val=None, or for 0 epochs?")
        pick = max if key.endswith("acc") else min
        return values.index(pick(values)) + 1

    def as_dict(self) -> dict:
        """Plain dict of lists of floats (``json.dumps`` works on it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "History":
        """The History that ``as_dict`` gave ``record``."""
        names = tuple(cls().as_dict())
        if not isinstance(record, dict) or not set(record) <= set(names):
            raise CourseValueError(f"History.from_dict takes a dict with some of the keys {', '.join(names)}, "
                                   f"got {describe(record)}")
        return cls(**{key: list(value) if isinstance(value, (list, tuple)) else value
                      for key, value in record.items()})


@dataclass
class EvalResult:
    """What ``evaluate`` measured: mean loss, accuracy in [0, 1], and per-sample predictions and
    targets as int64 arrays of shape (N,) in the data's order."""

    loss: float
    accuracy: float
    predictions: np.ndarray
    targets: np.ndarray

    def confusion_matrix(self, num_classes: int | None = None) -> np.ndarray:
        """(K, K) counts: row = true class, column = predicted class."""
        largest = int(max(self.predictions.max(initial=0), self.targets.max(initial=0)))
        k = largest + 1 if num_classes is None else check_int(
            "num_classes", num_classes, low=largest + 1, hint=f"the labels and predictions go up to {largest}")
        return np.bincount(self.targets * k + self.predictions, minlength=k * k).reshape(k, k)


# ----------------------------------------------------------------------------------------------
# Data held on the device
# ----------------------------------------------------------------------------------------------
def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translations: reflect-pad each image by ``padding`` and cut a window of the old size.

    x: (B, C, H, W) float. Returns (B, C, H, W); every image gets its own offset in
    [0, 2 * padding] along each axis, all gathered in one indexing operation.
    """
    _check_image_batch("random_crop", x)
    B, C, H, W = x.shape
    check_int("padding", padding, low=0, high=min(H, W) - 1, hint=f"reflect padding must be smaller than the "
              f"image ({H}x{W})")
    padded = F.pad(x, (padding,) * 4, mode="reflect")                                    # (B, C, H+2p, W+2p)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, B, 1), device=x.device, generator=generator)
    rows = dy + torch.arange(H, device=x.device)                                         # (B, H)
    cols = dx + torch.arange(W, device=x.device)                                         # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None]                              # (B, 1, 1)
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]        # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2. x: (B, C, H, W) -> (B, C, H, W)."""
    _check_image_batch("random_flip", x)
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class DeviceLoader:
    """Batches from a data set held whole on one device; augmentation runs there as tensor ops.

    The fast path for small image sets (CIFAR-10's training set is 150 MB as uint8): no worker
    processes and no per-image Python. Each epoch draws one permutation; crops and flips are
    applied to a whole batch at once, on the CPU as on a GPU.

    x: uint8 images (N, H, W, C) or (N, H, W), numpy or torch, as ``course_lib.data`` hands them
       out; kept as uint8 on the device and scaled to [0, 1] per batch. Or float images
       (N, C, H, W), numpy or torch, used as given.
    y: (N,) integer labels.
    mean, std: per-channel values (on the [0, 1] scale) to normalise with: x -> (x - mean) / std.
    crop_padding: if > 0, random crops of the original size from the image reflect-padded by it.
    flip: random horizontal flips.
    seed: seeds the loader's own ``torch.Generator`` (shuffling, crops, flips); None draws the
       seed from torch's global generator, so ``seed_everything`` makes runs repeat.

    Iterating gives (x, y): x float32 (B, C, H, W), y int64 (B,), both on ``self.device``.
    """

    def __init__(self, x, y, batch_size: int = 256, *, shuffle: bool = False, crop_padding: int = 0,
                 flip: bool = False, mean=None, std=None, drop_last: bool = False, device=None,
                 seed: int | None = None):
        self.device = get_device(device)
        batch_size = check_int("batch_size", batch_size, low=1, hint="the number of images per batch, e.g. 256")
        crop_padding = check_int("crop_padding", crop_padding, low=0, hint="0 for no crops, e.g. 4 for CIFAR-10")
        seed = check_seed("seed", seed, allow_none=True)
        x, y = _as_tensor("x (the images)", x), _as_tensor("y (the labels)", y)
        if len(x) != len(y):
            raise CourseValueError(f"x has {len(x)} samples but y has {len(y)}: give one label per image")
        if len(x) == 0:
            raise CourseValueError("DeviceLoader got an empty data set (0 samples): check how x and y were selected")
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x[..., None]                                      # (N, H, W) -> (N, H, W, 1)
            if x.ndim != 4:
                raise CourseValueError(f"uint8 images must be (N, H, W, C) or (N, H, W), got {tuple(x.shape)}")
            channels, scale = x.shape[3], 1 / 255
        elif x.is_floating_point():
            if x.ndim != 4:
                raise CourseValueError(f"float images must be (N, C, H, W), got {tuple(x.shape)}"
                                       + (": add the channel axis with x[:, None]" if x.ndim == 3 else ""))
            if x.shape[1] > 4 and x.shape[3] in (1, 3):                     # (N, 32, 32, 3): channels last
                raise CourseValueError(f"float images must be (N, C, H, W) (channels first), but {tuple(x.shape)} "
                                       f"looks channels last: use x.permute(0, 3, 1, 2) (torch) or "
                                       f"x.transpose(0, 3, 1, 2) (NumPy)")
            x, channels, scale = x.float(), x.shape[1], 1.0
            if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():   # one cheap pass; exact only if needed
                bad = int((~torch.isfinite(x)).flatten(1).any(1).nonzero()[0])
                raise CourseValueError(f"x holds NaN or infinite values (the first in image {bad}): training on "
                                       f"them gives a NaN loss; fix or drop those images")
        else:
            raise CourseTypeError(f"images must be uint8 (N, H, W, C) with values 0..255, or float (N, C, H, W); "
                                  f"got {describe(x)}: convert with x.astype(np.uint8) if the values are 0..255, "
                                  f"else x.astype(np.float32)")
        if 0 in x.shape[1:]:
            raise CourseValueError(f"images must have at least one channel and one pixel, got shape {tuple(x.shape)}")
        if y.ndim != 1:
            raise CourseValueError(f"y must be (N,) class indices, got {describe(y)}"
                                   + (": one-hot? pass y.argmax(1)" if y.ndim == 2 else ""))
        if y.is_complex() or (y.is_floating_point() and not bool((y == y.round()).all())):
            raise CourseTypeError(f"y must hold class indices (whole numbers), got {describe(y)} with values such as "
                                  f"{y.flatten()[:3].tolist()}: pass the labels, not scores or probabilities")
        height, width = x.shape[1:3] if x.dtype == torch.uint8 else x.shape[2:4]
        if crop_padding >= min(height, width):
            raise CourseValueError(f"crop_padding must be smaller than the images ({height}x{width}), got "
                                   f"{crop_padding}: reflect padding cannot be wider than the image")
        self.x = x.to(self.device).contiguous()
        self.y = y.to(self.device, torch.int64)
        # One multiply-add per batch: x * scale + shift == (x * 1/255 - mean) / std, shapes (1, C, 1, 1).
        mean = _per_channel("mean", 0.0 if mean is None else mean, channels)
        std = _per_channel("std", 1.0 if std is None else std, channels)
        if not bool((std > 0).all()):
            raise CourseValueError(f"std must be positive for every channel, got {std.tolist()}")
        self._scale = (scale / std).reshape(1, channels, 1, 1).to(self.device)
        self._shift = (-mean / std).reshape(1, channels, 1, 1).to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.crop_padding, self.flip = crop_padding, flip
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(torch.randint(2**62, ()).item()) if seed is None else seed)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            yield self._images(self.x[index]), self.y[index]

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        """Stored batch -> normalised, augmented float32 (B, C, H, W)."""
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2)              # (B, H, W, C) -> (B, C, H, W) view, channels-last memory
        x = torch.addcmul(self._shift, x.float(), self._scale)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, self.generator)
        if self.flip:
            x = random_flip(x, self.generator)
        return x

    def __repr__(self) -> str:
        return (f"DeviceLoader({len(self.y)} samples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"crop_padding={self.crop_padding}, flip={self.flip}, device={self.device})")


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------
def fit(model: nn.Module, train, val, epochs: int, optimizer: torch.optim.Optimizer, scheduler=None, *,
        loss_fn=None, device=None, amp="auto", channels_last: bool = False, compile: bool = False,
        scheduler_step: str = "auto", progress: bool = True, on_step=None, on_epoch=None,
        stop_on_nonfinite: bool = True, time_limit: float | None = None) -> History:
    """Train ``model`` for ``epochs`` passes over ``train``; evaluate on ``val`` after each.

    model: outputs logits (N, K), or (N,) / (N, 1) for a binary problem.
    train, val: a ``DeviceLoader``, a ``torch.utils.data.DataLoader`` or any iterable of
        (x, y) batches; ``val`` may be None.
    optimizer, scheduler: built on ``model.parameters()``; see the module docstring for when the
        scheduler is stepped (``scheduler_step`` = "auto", "batch" or "epoch").
    loss_fn: ``loss_fn(logits, y)`` -> mean loss; default cross-entropy (binary for one logit).
    device: None picks it (see the module docstring); the model is moved there in place.
    amp: "auto" (CUDA only), True (any device), False, "bf16" or "fp16": autocast for the forward.
    channels_last: store the model's weights and the images as NHWC (faster convs on GPUs and CPUs).
    compile: run the model through ``torch.compile`` (first epoch slower, later ones faster).
    progress: a tqdm bar with live loss and accuracy, and one summary line per epoch.
    on_step: called as ``on_step(model)`` after every optimizer step, while each parameter's
        ``.grad`` still holds that step's gradient (unscaled, unless fp16 autocast is on).
    on_epoch: called as ``on_epoch(epoch, history)`` after every epoch (0, 1, ...), once ``history``
        holds it: report to a tuner, stop early by raising (the exception leaves ``fit``).
    stop_on_nonfinite: raise ``NonFiniteLossError`` at the first loss that is NaN or infinite
        (naming its epoch and step); False trains on regardless.
    time_limit: seconds of wall-clock time from the call (validation included). The step that
        reaches it is the last: its epoch is closed as usual (validated, recorded, ``on_epoch``
        called) and ``fit`` returns with ``history.time_limit_reached`` True. None: no limit.

    Returns a ``History``; the model is left in eval mode.
    """
    started = time.perf_counter()
    check_module("model", model)
    check_batches("train", train)
    check_batches("val", val, allow_none=True)
    epochs = check_int("epochs", epochs, low=0, hint="the number of passes over the training data, e.g. epochs=5")
    _check_optimizer(optimizer, model)
    _check_scheduler(scheduler, optimizer)
    for name, function in (("loss_fn", loss_fn), ("on_step", on_step), ("on_epoch", on_epoch)):
        check_callable(name, function, allow_none=True)
    if time_limit is not None:
        time_limit = check_number("time_limit", time_limit, low=0, low_open=True,
                                  hint="seconds of training, or None for no limit")
    if hasattr(train, "__len__") and len(train) == 0:
        raise CourseValueError(_EMPTY_TRAIN)
    device = _pick_device(device, train)
    moved_from = _move_model(model, optimizer, device, channels_last)
    amp_dtype = _amp_dtype(amp, device)
    autocast = _Autocast(device, amp_dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    loss_fn = loss_fn or default_loss
    step_each_batch = _steps_each_batch(scheduler, scheduler_step)
    _check_schedule(scheduler, step_each_batch, epochs, train)
    forward = torch.compile(model) if compile else model
    label_check = _LabelCheck(train)

    bar = _Progress(progress, epochs, train)
    bar.header(device, moved_from, amp_dtype, channels_last, compile)
    nonfinite = _NonFiniteCheck(stop_on_nonfinite, device, epochs, train, optimizer)
    history = History()
    try:
        for epoch in range(epochs):
            start = time.perf_counter()
            history.lr.append(optimizer.param_groups[0]["lr"])
            model.train()
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.int64)
            count = 0
            for batch in train:
                x, y = batch if count else check_batch("train", batch)
                x, y_device = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
                with autocast():
                    logits = forward(x) if count else _first_forward(forward, model, x, device)
                    label_check(y, logits)
                    loss = loss_fn(logits, y_device)
                if not count:
                    _check_loss(loss)
                nonfinite.step(loss, epoch, x)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
                if on_step is not None:
                    on_step(model)
                if step_each_batch:
                    scheduler.step()
                loss_sum += loss.detach().float() * len(y)
                correct += (predict(logits) == y_device).sum()
                count += len(y)
                if bar.step(loss_sum, correct, count):
                    nonfinite.check(epoch)
                if time_limit is not None and time.perf_counter() - started >= time_limit:
                    history.time_limit_reached = True
                    break
            if count == 0:
                raise CourseValueError(_EMPTY_TRAIN)
            nonfinite.check(epoch)
            history.train_loss.append(loss_sum.item() / count)
            history.train_acc.append(correct.item() / count)
            if val is not None:
                val_loss, val_acc, _, _ = _run_eval(forward, model, val, loss_fn, device, autocast, channels_last)
                history.val_loss.append(val_loss)
                history.val_acc.append(val_acc)
            if scheduler is not None and not step_each_batch:
                if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                    scheduler.step((history.val_loss or history.train_loss)[-1])
                else:
                    scheduler.step()
            history.seconds.append(time.perf_counter() - start)
            bar.epoch_done(epoch, epochs, history)
            if on_epoch is not None:
                on_epoch(epoch, history)
            if history.time_limit_reached:
                bar.note(f"stopped at the time limit of {time_limit:g} s, in epoch {epoch + 1} of {epochs}")
                break
    finally:
        bar.close()
        model.eval()
    return history


def evaluate(model: nn.Module, data, *, loss_fn=None, device=None, amp="auto", tta_flip: bool = False) -> EvalResult:
    """Loss, accuracy and per-sample predictions of ``model`` on ``data`` (batches of (x, y)).

    tta_flip: average the logits of each image and its mirror image (test-time augmentation).
    device: as in ``fit`` (the model is moved there). The model's train/eval mode is restored.
    """
    check_module("model", model)
    check_batches("data", data)
    check_callable("loss_fn", loss_fn, allow_none=True)
    device = _pick_device(device, data)
    model.to(device)
    channels_last = _has_channels_last_weights(model)
    was_training = model.training
    try:
        loss, accuracy, predictions, targets = _run_eval(
            model, model, data, loss_fn or default_loss, device, _Autocast(device, _amp_dtype(amp, device)),
            channels_last, tta_flip=tta_flip)
    finally:
        model.train(was_training)
    return EvalResult(loss, accuracy, predictions.cpu().numpy(), targets.cpu().numpy())


@dataclass
class RangeTest:
    """What ``lr_range_test`` measured, one entry per step: ``lrs``, the batch ``losses`` and the
    ``smoothed`` losses (an exponential moving average, bias-corrected), all float arrays (S,)."""

    lrs: np.ndarray
    losses: np.ndarray
    smoothed: np.ndarray

    def steepest(self) -> float:
        """The learning rate where the smoothed loss falls fastest per factor of lr (before its minimum)."""
        end = int(np.argmin(self.smoothed)) + 1 if len(self.smoothed) else 0
        begin = min(len(self.lrs) // 10, max(end - 2, 0))
        if end - begin < 2:
            raise CourseValueError("the range test has too few steps before the loss's minimum to find a slope: "
                                   "use a smaller lr_min or more steps")
        slope = np.gradient(self.smoothed[begin:end], np.log(self.lrs[begin:end]))
        return float(self.lrs[begin + int(np.argmin(slope))])

    def minimum(self) -> float:
        """The learning rate at the smoothed loss's minimum (past it, training becomes unstable)."""
        if not len(self.smoothed):
            raise CourseValueError("the range test recorded no step: run it with more steps")
        return float(self.lrs[int(np.argmin(self.smoothed))])

    def plot(self, ax=None, label: str | None = None):
        """Smoothed loss against learning rate (log axis), the steepest point marked; returns the axes."""
        import matplotlib.pyplot as plt

        ax = ax or plt.subplots(figsize=(6, 3.5))[1]
        line, = ax.plot(self.lrs, self.smoothed, label=label)
        ax.plot(self.lrs, self.losses, color=line.get_color(), alpha=0.2, lw=0.8)
        steep = self.steepest()
        ax.plot(steep, np.interp(np.log(steep), np.log(self.lrs), self.smoothed), "o", color=line.get_color())
        ax.set(xscale="log", xlabel="learning rate", ylabel="training loss (smoothed)")
        ax.grid(alpha=0.3, which="both")
        return ax


def lr_range_test(model: nn.Module, train, optimizer: torch.optim.Optimizer, lr_min: float = 1e-5,
                  lr_max: float = 1.0, steps: int | None = None, *, loss_fn=None, device=None,
                  stop_factor: float = 4.0, smoothing: float = 0.9) -> RangeTest:
    """The learning-rate range test (Smith, 2017): train with a learning rate that grows
    exponentially from ``lr_min`` to ``lr_max`` and record the loss of every batch.

    steps: how many batches (default one pass over ``train``; the data repeats if it is shorter).
    Stops early once the smoothed loss exceeds ``stop_factor`` times its minimum, or is not finite.
    Every parameter group gets the same learning rate. The model's weights, its train/eval mode
    and the optimizer's state and settings are restored afterwards, so the test changes nothing.
    A loss that is not finite already at ``lr_min`` raises ``NonFiniteLossError``.
    """
    check_module("model", model)
    check_batches("train", train)
    _check_optimizer(optimizer, model)
    check_callable("loss_fn", loss_fn, allow_none=True)
    if steps is None and not hasattr(train, "__len__"):
        raise CourseValueError(f"train has no length ({describe(train)}): pass steps=, the number of batches to try")
    steps = check_int("steps", len(train) if steps is None else steps, low=0, hint="the number of batches to try")
    lr_min = check_number("lr_min", lr_min, low=0, low_open=True, hint="the smallest learning rate, e.g. 1e-5")
    lr_max = check_number("lr_max", lr_max, low=0, low_open=True, hint="the largest learning rate, e.g. 1.0")
    stop_factor = check_number("stop_factor", stop_factor, low=1, low_open=True, hint="e.g. 4")
    smoothing = check_number("smoothing", smoothing, low=0, high=1, high_open=True, hint="e.g. 0.9")
    if steps < 2 or not lr_min < lr_max:
        raise CourseValueError(f"need steps >= 2 and 0 < lr_min < lr_max, got steps={steps}, lr_min={lr_min}, "
                               f"lr_max={lr_max}")
    device = _pick_device(device, train)
    _move_model(model, optimizer, device, channels_last=False)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    was_training, loss_fn = model.training, loss_fn or default_loss
    lrs, losses, smoothed, average = [], [], [], 0.0
    label_check = _LabelCheck(train)
    try:
        model.train()
        batches = _repeat(train)
        for i in range(steps):
            lr = lr_min * (lr_max / lr_min) ** (i / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches) if i else check_batch("train", next(batches))
            x = x.to(device, non_blocking=True)
            logits = model(x) if i else _first_forward(model, model, x, device)
            label_check(y, logits)
            loss = loss_fn(logits, y.to(device, non_blocking=True))
            if not i:
                _check_loss(loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
                if not i:
                    raise NonFiniteLossError(
                        f"the loss is already {value} at the first step of the range test (lr_min={lr_min:g}), so "
                        f"the learning rate is not the cause: check the inputs (NaN or inf in x?) and the loss_fn")
                break
            average = smoothing * average + (1 - smoothing) * value
            lrs.append(lr), losses.append(value), smoothed.append(average / (1 - smoothing ** (i + 1)))
            if smoothed[-1] > stop_factor * min(smoothed):
                break
    finally:
        model.load_state_dict(saved_model)
        optimizer.load_state_dict(saved_optimizer)
        model.train(was_training)
    return RangeTest(np.array(lrs), np.array(losses), np.array(smoothed))


def _repeat(data):
    """The batches of ``data``, pass after pass, without end."""
    while True:
        empty = True
        for batch in data:
            empty = False
            yield batch
        if empty:
            raise CourseValueError(_EMPTY_TRAIN)


def default_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy for (N, K) logits; binary cross-entropy for one logit per sample."""
    if logits.ndim == 2 and logits.shape[1] > 1:
        return F.cross_entropy(logits, y)
    return F.binary_cross_entropy_with_logits(logits.reshape(y.shape), y.to(logits.dtype))


def predict(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class per sample, (N,) int64: argmax, or logit > 0 for a single logit."""
    if logits.ndim == 2 and logits.shape[1] > 1:
        return logits.argmax(1)
    return (logits.reshape(len(logits)) > 0).long()


def _run_eval(forward, model, data, loss_fn, device, autocast, channels_last, *, tta_flip=False):
    """(mean loss, accuracy, predictions (N,), targets (N,)) over ``data``; one host sync at the end.

    ``forward`` is the model or its compiled version; ``model`` is switched to eval mode.
    """
    model.eval()
    label_check = _LabelCheck(data)
    loss_sum = torch.zeros((), device=device)
    count, predictions, targets = 0, [], []
    with torch.no_grad(), autocast():
        for batch in data:
            x, y = batch if count else check_batch("the evaluation data", batch)
            x, y_device = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
            if tta_flip and x.ndim != 4:
                raise CourseValueError(f"tta_flip mirrors images (N, C, H, W), but the batches hold {describe(x)}: "
                                       f"pass tta_flip=False")
            logits = forward(x) if count else _first_forward(forward, model, x, device)
            if tta_flip:
                logits = (logits + forward(x.flip(3))) / 2
            label_check(y, logits)
            loss_sum += loss_fn(logits, y_device).float() * len(y)
            predictions.append(predict(logits))
            targets.append(y_device)
            count += len(y)
    if count == 0:
        raise CourseValueError("the evaluation data gave no batches: is the data set empty?")
    predictions, targets = torch.cat(predictions), torch.cat(targets)
    accuracy = (predictions == targets).sum().item() / count
    return loss_sum.item() / count, accuracy, predictions, targets


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def save_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    history: History | None = None) -> Path:
    """Save weights, optimizer state and history to ``path`` (an existing file is replaced).

    Written to a temporary file first and renamed, so a crash never leaves half a checkpoint. The
    model's and optimizer's class names are saved too, so that loading into another class fails
    with a message naming both.
    """
    path = check_path("path", path)
    check_module("model", model)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise CourseTypeError(f"optimizer must be a torch.optim optimizer or None, got {describe(optimizer)}")
    if history is not None and not isinstance(history, History):
        raise CourseTypeError(f"history must be the History that fit returned, or None, got {describe(history)}")
    if path.is_dir():
        raise CourseValueError(f"{path} is a folder: give a file name in it, e.g. {path / 'model.pt'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": model.state_dict(),
        "model_class": type(model).__name__,
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "optimizer_class": type(optimizer).__name__ if optimizer is not None else None,
        "history": history.as_dict() if history is not None else None,
    }
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(checkpoint, tmp)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def load_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> History | None:
    """Load weights (and optimizer state) saved by ``save_checkpoint`` into ``model`` (and
    ``optimizer``), on whatever device they are; returns the saved ``History`` or None.

    A plain ``state_dict`` saved with ``torch.save`` loads too. Raises ``CourseFileNotFoundError``
    when there is no file at ``path``, and ``CheckpointError`` when it is damaged or holds another
    model or optimizer than the ones given; ``model`` and ``optimizer`` are then left as they were.
    """
    path = check_path("path", path)
    check_module("model", model)
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise CourseTypeError(f"optimizer must be a torch.optim optimizer or None, got {describe(optimizer)}")
    checkpoint = _read_checkpoint(path)
    _check_checkpoint_model(path, checkpoint, model)
    if optimizer is not None:
        _check_checkpoint_optimizer(path, checkpoint, optimizer)
    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        optimizer.load_state_dict(checkpoint["optimizer"])
    history = checkpoint.get("history")
    return History.from_dict(history) if history is not None else None


def _read_checkpoint(path: Path) -> dict:
    """The dict ``save_checkpoint`` wrote to ``path`` (a bare state_dict becomes its "model")."""
    if not path.is_file():
        near = sorted(p.name for p in path.parent.glob("*.pt")) if path.parent.is_dir() else []
        raise CourseFileNotFoundError(
            f"no checkpoint at {path}" + (" (it is a folder)" if path.is_dir() else "") + ": run the cell or notebook "
            f"that saves it first (save_checkpoint), or check the name" + (f"; checkpoints in {path.parent}: "
                                                                          f"{', '.join(near[:10])}" if near else ""))
    try:
        if zipfile.is_zipfile(path):  # torch's format: a zip whose CRCs torch.load does not check
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
            if damaged is not None:
                raise zipfile.BadZipFile(f"the checksum of {damaged} does not match its contents")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch's errors for a damaged or foreign file vary (unpickling, zip, EOF)
        if "Unsupported global" in str(err):
            raise CheckpointError(
                f"{path} holds a whole pickled object (torch.save(model)?), which is not loaded because unpickling "
                f"can run any code: save the weights with save_checkpoint(path, model) instead") from None
        raise CheckpointError(
            f"{path} could not be read as a checkpoint ({type(err).__name__}): it may be damaged (a copy or download "
            f"cut short) or not a checkpoint at all. Save it again with save_checkpoint") from None
    if isinstance(checkpoint, dict) and checkpoint and all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        checkpoint = {"model": checkpoint}
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model"), dict):
        raise CheckpointError(f"{path} holds {describe(checkpoint)}, not model weights: load files that "
                              f"save_checkpoint wrote (or a model's state_dict saved with torch.save)")
    return checkpoint


def _check_checkpoint_model(path: Path, checkpoint: dict, model: nn.Module) -> None:
    """Raise ``CheckpointError`` unless the checkpoint's weights fit ``model`` exactly (whatever its
    class is called: a subclass or a renamed copy with the same layers loads)."""
    saved, mine, yours = checkpoint["model"], model.state_dict(), type(model).__name__
    saved_class = checkpoint.get("model_class")
    missing, unexpected = [k for k in mine if k not in saved], [k for k in saved if k not in mine]
    wrong = [(k, tuple(saved[k].shape), tuple(mine[k].shape)) for k in mine
             if k in saved and isinstance(saved[k], torch.Tensor) and saved[k].shape != mine[k].shape]
    if (missing or unexpected or wrong) and saved_class is not None and saved_class != yours:
        raise CheckpointError(f"this checkpoint ({path}) holds {_a(saved_class)}; you passed {_a(yours)}: build "
                              f"{_a(saved_class)} with the arguments it was saved with and load into that")
    if missing or unexpected:
        raise CheckpointError(
            f"the weights in {path} do not fit this {yours}: {len(unexpected)} of the checkpoint's {len(saved)} "
            f"tensors have no place in it (e.g. {', '.join(unexpected[:3]) or 'none'}) and {len(missing)} of its "
            f"{len(mine)} are not in the checkpoint (e.g. {', '.join(missing[:3]) or 'none'}): was it saved from "
            f"another model class? Load it into the model it was saved from")
    if wrong:
        (key, there, here), more = wrong[0], f" (and {len(wrong) - 1} more tensors)" if len(wrong) > 1 else ""
        raise CheckpointError(
            f"this checkpoint holds {_a(saved_class or yours)} of other sizes than yours: {key} is {there} there and "
            f"{here} here{more}. Build the model with the arguments it was saved with (in_channels, num_classes, "
            f"widths, ...)")


def _check_checkpoint_optimizer(path: Path, checkpoint: dict, optimizer) -> None:
    """Raise ``CheckpointError`` unless the checkpoint's optimizer state fits ``optimizer``."""
    state, yours = checkpoint.get("optimizer"), type(optimizer).__name__
    if state is None:
        raise CheckpointError(f"{path} holds no optimizer state; call load_checkpoint without an optimizer")
    saved_class = checkpoint.get("optimizer_class")
    if saved_class is not None and saved_class != yours:
        raise CheckpointError(f"this checkpoint's optimizer state is {_a(saved_class)}'s; you passed {_a(yours)}: "
                              f"build {_a(saved_class)} on the model's parameters, or load without the optimizer")
    saved_sizes = [len(group["params"]) for group in state.get("param_groups", [])]
    sizes = [len(group["params"]) for group in optimizer.param_groups]
    if saved_sizes != sizes:
        raise CheckpointError(f"this checkpoint's optimizer has parameter groups of {saved_sizes} tensors, yours "
                              f"{sizes}: build the optimizer on the same parameters as when it was saved")


def _a(name: str) -> str:
    """'a FastCIFARNet', 'an MLP1', 'an Adam'."""
    vowel_sound = name[:1].lower() in "aeiou" or (name[:2].isupper() and name[:1] in "FHLMNRSX")
    return f"{'an' if vowel_sound else 'a'} {name}"


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
_EMPTY_TRAIN = ("the training data gave no batches: is the data set empty, or is batch_size larger "
                "than the data set with drop_last=True?")


def _pick_device(device, data) -> torch.device:
    """The argument, else a DeviceLoader's device, else settings.get_device(); with its index ("cuda:0")."""
    if device is None and isinstance(data, DeviceLoader):
        device = data.device
    return torch.empty(0, device=get_device(device)).device


def _move_model(model, optimizer, device, channels_last) -> torch.device | None:
    """Move the model (and optimizer state) to ``device``; returns the device it came from, if other."""
    param = next(model.parameters(), None)
    old = param.device if param is not None else device
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if old != device and optimizer.state:
        optimizer.load_state_dict(optimizer.state_dict())   # re-places the state next to its parameters
    return old if old != device else None


def _to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _has_channels_last_weights(model) -> bool:
    conv = next((p for p in model.parameters() if p.ndim == 4 and p.shape[2] * p.shape[3] > 1), None)
    return conv is not None and not conv.is_contiguous() and conv.is_contiguous(memory_format=torch.channels_last)


def _amp_dtype(amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype that ``amp`` asks for on ``device``, or None for full precision."""
    if amp in ("bf16", torch.bfloat16):
        return torch.bfloat16
    if amp in ("fp16", torch.float16):
        return torch.float16
    if amp is True or (amp == "auto" and device.type == "cuda"):
        if device.type == "cuda":
            # Not is_bf16_supported(): it is also true where bf16 is emulated (a T4), and slower than fp16 there.
            return torch.bfloat16 if torch.cuda.get_device_capability(device)[0] >= 8 else torch.float16
        return torch.float16 if device.type == "mps" else torch.bfloat16
    if amp is False or amp is None or amp == "auto":
        return None
    raise CourseValueError(f"amp must be 'auto', True, False, 'bf16' or 'fp16', got {amp!r}")


class _Autocast:
    """Calling it gives a fresh autocast context for ``dtype``, or a no-op one when dtype is None."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.device_type, self.dtype = device.type, dtype

    def __call__(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def _first_forward(forward, model, x, device):
    """The first forward pass, with a clear message when part of the model stayed on another device,
    when the images do not fit the model, or when it does not return logits (N, K) or (N,)."""
    try:
        logits = forward(x)
    except RuntimeError as err:
        if "device" in str(err):
            raise CourseRuntimeError(
                f"the model was moved to {device} with model.to(), but one of its tensors was not. Tensors "
                f"kept as plain attributes are not moved: register them with self.register_buffer(name, "
                f"tensor), or make them nn.Parameter. Original error: {err}") from err
        explained = explain_forward_error(model, x, err)
        if explained is None:
            raise
        raise explained from err
    if not isinstance(logits, torch.Tensor) or logits.ndim not in (1, 2) or len(logits) != len(x):
        raise CourseValueError(
            f"the model returned {describe(logits)} for a batch of {len(x)} images; the trainer needs logits of "
            f"shape (N, num_classes), or (N,) / (N, 1) for two classes: end forward with a Linear layer to the "
            f"classes (flatten first)")
    return logits


def _check_loss(loss) -> None:
    """The first step's loss must be one number that gradients flow back through."""
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise CourseValueError(f"loss_fn must return the batch's mean loss as one number (a 0-d tensor), got "
                               f"{describe(loss)}: average it (reduction='mean', or .mean())")
    if not loss.requires_grad:
        raise CourseValueError("loss_fn returned a loss that does not depend on the model's parameters (no "
                               "gradient): compute it with torch operations on the logits, without .item(), "
                               ".detach() or NumPy")


def _check_image_batch(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise CourseValueError(f"{name} takes a float tensor of images (B, C, H, W), got {describe(x)}")


def _as_tensor(name: str, values) -> torch.Tensor:
    """``values`` (array, tensor, nested lists) as a tensor; a clear error for anything else."""
    if hasattr(values, "x") and hasattr(values, "y") and hasattr(values, "class_names"):
        raise CourseTypeError(f"{name} must be an array, got images with labels ({type(values).__name__}): pass "
                              f"data.x and data.y, as in DeviceLoader(data.x, data.y, batch_size=256)")
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CourseTypeError(f"{name} must be an array or tensor of numbers, got {describe(values)} ({err})") from None
    if tensor.ndim == 0:
        raise CourseValueError(f"{name} must hold one entry per sample, got the single number {describe(values)}")
    return tensor


def _per_channel(name: str, values, channels: int) -> torch.Tensor:
    """``mean`` or ``std`` as ``channels`` float32 numbers (one number is used for every channel)."""
    try:
        tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        tensor = None
    if tensor is None or len(tensor) not in (1, channels) or not bool(torch.isfinite(tensor).all()):
        raise CourseValueError(f"{name} must be one finite number or {channels} (one per channel), got "
                               f"{describe(values)}")
    return tensor.expand(channels)


def _check_optimizer(optimizer, model) -> None:
    """An optimizer that updates at least one of ``model``'s parameters."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        built = (f"build one: {optimizer.__name__}(model.parameters(), lr=...)" if isinstance(optimizer, type)
                 else "e.g. torch.optim.SGD(model.parameters(), lr=0.1)")
        raise CourseTypeError(f"optimizer must be a torch.optim optimizer, got {describe(optimizer)}: {built}")
    mine = {id(p) for p in model.parameters()}
    if mine and not any(id(p) in mine for group in optimizer.param_groups for p in group["params"]):
        raise CourseValueError(
            f"the optimizer ({type(optimizer).__name__}) updates none of this model's parameters: it was built on "
            f"another model's (one made before this one?). Build it with {type(optimizer).__name__}"
            f"(model.parameters(), ...) after the model")


def _check_scheduler(scheduler, optimizer) -> None:
    """None, or a scheduler with ``step()`` built on ``optimizer``."""
    if scheduler is None:
        return
    if not callable(getattr(scheduler, "step", None)):
        raise CourseTypeError(f"scheduler must be a torch.optim.lr_scheduler scheduler (or None), got "
                              f"{describe(scheduler)}")
    if getattr(scheduler, "optimizer", optimizer) is not optimizer:
        raise CourseValueError("the scheduler was built on another optimizer than the one given to fit: build it "
                               "on this one, e.g. OneCycleLR(optimizer, ...)")


class _NonFiniteCheck:
    """Stops ``fit`` at the first loss that is NaN or infinite.

    On the CPU each loss is looked at before its backward pass (reading a number there costs
    nothing), so the model keeps the weights of the last finite step. On a GPU reading a number
    waits for the device, so the losses are kept as device tensors and looked at together where
    ``fit`` reads the device anyway (a progress-bar refresh, an epoch's end); the first non-finite
    one is still named exactly.
    """

    def __init__(self, enabled: bool, device: torch.device, epochs: int, train, optimizer):
        self.enabled, self.immediate = enabled, device.type == "cpu"
        self.epochs, self.optimizer = epochs, optimizer
        self.steps = len(train) if hasattr(train, "__len__") else None
        self.epoch, self.checked, self.pending = 0, 0, []  # steps of this epoch looked at; losses not yet

    def step(self, loss: torch.Tensor, epoch: int, x: torch.Tensor) -> None:
        """Called with every step's loss, before its backward pass."""
        if not self.enabled:
            return
        if epoch != self.epoch:
            self.epoch, self.checked = epoch, 0
        if not self.immediate:
            self.pending.append(loss.detach())
        elif not torch.isfinite(loss):
            raise self.error(epoch, self.checked, loss.item(), x)
        else:
            self.checked += 1

    def check(self, epoch: int) -> None:
        """Look at the losses kept since the last check (a GPU's)."""
        if not self.pending:
            return
        finite = torch.isfinite(torch.stack(self.pending).float())
        if not bool(finite.all()):
            first = int((~finite).nonzero()[0])
            raise self.error(epoch, self.checked + first, self.pending[first].item(), None)
        self.checked += len(self.pending)
        self.pending.clear()

    def error(self, epoch: int, step: int, value: float, x) -> NonFiniteLossError:
        of_steps = f"/{self.steps}" if self.steps else ""
        if x is None:
            state = ("the weights may hold NaN by now: build the model (and optimizer) again before training it "
                     "again")
            inputs = "inputs that hold NaN or inf"
        else:
            state = "the model keeps the weights from before that step"
            inputs = ("this batch's images hold NaN or inf (the cause: clean the data)"
                      if not bool(torch.isfinite(x).all())
                      else "inputs that hold NaN or inf (not this batch's: its images are finite)")
        return NonFiniteLossError(
            f"the training loss is {value} at epoch {epoch + 1}/{self.epochs}, step {step + 1}{of_steps}: training "
            f"stopped there, and {state}. Likely causes: a learning rate too large for this model (now "
            f"{self.optimizer.param_groups[0]['lr']:.3g}: try one 10 times smaller, or a warm-up); {inputs}; a "
            f"loss_fn that takes the log of 0. To train on regardless, pass stop_on_nonfinite=False to fit.")


class _LabelCheck:
    """Checks labels against the model's number of outputs, without per-step GPU syncs.

    Labels still on the host (a DataLoader's) are checked every batch, for free; labels of a
    DeviceLoader all at once on the first batch; other labels already on a GPU on the first batch.
    """

    def __init__(self, train):
        self.all_labels = train.y if isinstance(train, DeviceLoader) else None
        self.checked = False

    def __call__(self, y: torch.Tensor, logits: torch.Tensor):
        if self.checked and y.device.type != "cpu":
            return
        labels = self.all_labels if self.all_labels is not None and not self.checked else y
        self.checked = True
        outputs = logits.shape[1] if logits.ndim == 2 else 1
        low, high = int(labels.min()), int(labels.max())
        if low < 0:
            raise CourseValueError(f"labels must be class indices >= 0, but found the label {low}")
        if outputs == 1 and high > 1:
            raise CourseValueError(
                f"the model has 1 output (a binary classifier for labels 0 and 1), but labels go up to {high}: "
                f"build it with num_classes={high + 1}")
        if outputs > 1 and high >= outputs:
            raise CourseValueError(
                f"labels go up to {high} but the model has {outputs} outputs (classes 0..{outputs - 1}): "
                f"build it with num_classes={high + 1} (or check the labels; they should run from 0)")


def _steps_each_batch(scheduler, scheduler_step: str) -> bool:
    check_choice("scheduler_step", scheduler_step, ("auto", "batch", "epoch"))
    if scheduler is None:
        return False
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and scheduler_step == "batch":
        raise CourseValueError("ReduceLROnPlateau needs an epoch's loss: use scheduler_step='epoch'")
    if scheduler_step == "auto":
        return isinstance(scheduler, _PER_BATCH_SCHEDULERS)
    return scheduler_step == "batch"


def _check_schedule(scheduler, step_each_batch: bool, epochs: int, train):
    """Fail before training, not halfway, when a OneCycleLR is too short for this fit."""
    if not (isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and step_each_batch
            and hasattr(train, "__len__")):
        return
    needed, left = epochs * len(train), scheduler.total_steps - scheduler.last_epoch
    if needed > left:
        raise CourseValueError(
            f"OneCycleLR has {left} steps left but fit needs {needed} ({epochs} epochs x {len(train)} "
            f"batches): build it with total_steps=epochs * len(train), or epochs=..., steps_per_epoch=len(train)")


class _Progress:
    """One tqdm bar per fit (all epochs' steps) and one summary line per epoch.

    The postfix (live loss and accuracy) is read from the device at most every ``interval``
    seconds, so the bar costs no host synchronisation per step.
    """

    def __init__(self, enabled: bool, epochs: int, train, interval: float = 0.5):
        self.enabled, self.interval, self.last = enabled, interval, 0.0
        if enabled:
            total = epochs * len(train) if hasattr(train, "__len__") else None
            self.bar = tqdm(total=total, desc=f"epoch 1/{epochs}", unit="step", dynamic_ncols=True)

    def header(self, device, moved_from, amp_dtype, channels_last, compile):
        if not self.enabled:
            return
        notes = [describe_device(device)]
        if moved_from is not None:
            notes.append(f"model moved from {moved_from} to {device}")
        if amp_dtype is not None:
            notes.append(f"autocast {str(amp_dtype).removeprefix('torch.')}")
        notes += ["channels_last"] * channels_last + ["torch.compile"] * compile
        self.bar.write("training on " + ", ".join(notes))

    def step(self, loss_sum, correct, count) -> bool:
        """Count a step; True when the postfix was refreshed (which read the device)."""
        if not self.enabled:
            return False
        self.bar.update()
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.bar.set_postfix_str(f"loss {loss_sum.item() / count:.3f}, acc {correct.item() / count:.1%}",
                                     refresh=False)
            return True
        return False

    def note(self, text: str):
        if self.enabled:
            self.bar.write(text)

    def epoch_done(self, epoch, epochs, history):
        if not self.enabled:
            return
        line = (f"epoch {epoch + 1:>{len(str(epochs))}}/{epochs}  train loss {history.train_loss[-1]:.4f} "
                f"acc {history.train_acc[-1]:.2%}")
        if history.val_loss:
            line += f"  val loss {history.val_loss[-1]:.4f} acc {history.val_acc[-1]:.2%}"
        line += f"  lr {history.lr[-1]:.3g}  {history.seconds[-1]:.1f} s"
        self.bar.write(line)
        self.bar.set_postfix_str(f"loss {history.train_loss[-1]:.3f}, acc {history.train_acc[-1]:.1%}", refresh=False)
        if epoch + 1 < epochs:
            self.bar.set_description(f"epoch {epoch + 2}/{epochs}")

    def close(self):
        if self.enabled:
            self.bar.close()
