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
- Mixed precision: ``amp="auto"`` turns autocast on for CUDA only (bfloat16 where the GPU has it,
  else float16 with a ``GradScaler``); ``amp=True`` also turns it on for CPU (bfloat16) and MPS.
- No host synchronisation per step: loss and correct counts are summed on the device and read
  once per epoch, or when the progress bar refreshes (at most twice a second).
- Schedulers: OneCycleLR and CyclicLR are stepped after every batch, every other scheduler once
  per epoch (ReduceLROnPlateau with the validation loss, or the training loss when ``val`` is
  None). ``scheduler_step="batch"`` or ``"epoch"`` overrides the rule.
- Models may output (N, K) logits with K >= 2 (cross-entropy, prediction = argmax) or a single
  logit (N,) / (N, 1) for two classes (binary cross-entropy, prediction = logit > 0).
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from course_lib.settings import describe_device, get_device

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
        return getattr(self, key)[self.best_epoch(key) - 1]

    def best_epoch(self, key: str = "val_acc") -> int:
        """The epoch (counting from 1) where ``key`` was best."""
        values = getattr(self, key)
        if not values:
            raise ValueError(f"History.{key} is empty: did fit run with val=None, or for 0 epochs?")
        pick = max if key.endswith("acc") else min
        return values.index(pick(values)) + 1

    def as_dict(self) -> dict:
        """Plain dict of lists of floats (``json.dumps`` works on it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: dict) -> "History":
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
        k = num_classes or int(max(self.predictions.max(), self.targets.max())) + 1
        return np.bincount(self.targets * k + self.predictions, minlength=k * k).reshape(k, k)


# ----------------------------------------------------------------------------------------------
# Data held on the device
# ----------------------------------------------------------------------------------------------
def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translations: reflect-pad each image by ``padding`` and cut a window of the old size.

    x: (B, C, H, W) float. Returns (B, C, H, W); every image gets its own offset in
    [0, 2 * padding] along each axis, all gathered in one indexing operation.
    """
    B, C, H, W = x.shape
    padded = F.pad(x, (padding,) * 4, mode="reflect")                                    # (B, C, H+2p, W+2p)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, B, 1), device=x.device, generator=generator)
    rows = dy + torch.arange(H, device=x.device)                                         # (B, H)
    cols = dx + torch.arange(W, device=x.device)                                         # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None]                              # (B, 1, 1)
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]        # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2. x: (B, C, H, W) -> (B, C, H, W)."""
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
        x, y = torch.as_tensor(x), torch.as_tensor(y)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if len(x) == 0:
            raise ValueError("DeviceLoader got an empty data set (0 samples)")
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x[..., None]                                      # (N, H, W) -> (N, H, W, 1)
            if x.ndim != 4:
                raise ValueError(f"uint8 images must be (N, H, W, C) or (N, H, W), got {tuple(x.shape)}")
            channels, scale = x.shape[3], 1 / 255
        else:
            if x.ndim != 4:
                raise ValueError(f"float images must be (N, C, H, W), got {tuple(x.shape)}")
            x, channels, scale = x.float(), x.shape[1], 1.0
        self.x = x.to(self.device).contiguous()
        self.y = y.to(self.device, torch.int64)
        # One multiply-add per batch: x * scale + shift == (x * 1/255 - mean) / std, shapes (1, C, 1, 1).
        mean = torch.as_tensor(0.0 if mean is None else mean, dtype=torch.float32).expand(channels)
        std = torch.as_tensor(1.0 if std is None else std, dtype=torch.float32).expand(channels)
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
        time_limit: float | None = None) -> History:
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
    time_limit: seconds of wall-clock time from the call (validation included). The step that
        reaches it is the last: its epoch is closed as usual (validated, recorded, ``on_epoch``
        called) and ``fit`` returns with ``history.time_limit_reached`` True. None: no limit.

    Returns a ``History``; the model is left in eval mode.
    """
    started = time.perf_counter()
    if time_limit is not None and (isinstance(time_limit, bool) or not isinstance(time_limit, (int, float))
                                   or not time_limit > 0):
        raise ValueError(f"time_limit must be a positive number of seconds, or None for no limit; got {time_limit!r}")
    if hasattr(train, "__len__") and len(train) == 0:
        raise ValueError(_EMPTY_TRAIN)
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
    history = History()
    for epoch in range(epochs):
        start = time.perf_counter()
        history.lr.append(optimizer.param_groups[0]["lr"])
        model.train()
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        count = 0
        for x, y in train:
            x, y_device = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
            with autocast():
                logits = forward(x) if count else _first_forward(forward, x, device)
                label_check(y, logits)
                loss = loss_fn(logits, y_device)
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
            bar.step(loss_sum, correct, count)
            if time_limit is not None and time.perf_counter() - started >= time_limit:
                history.time_limit_reached = True
                break
        if count == 0:
            raise ValueError(_EMPTY_TRAIN)
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
            try:
                on_epoch(epoch, history)
            except BaseException:
                bar.close()
                model.eval()
                raise
        if history.time_limit_reached:
            bar.note(f"stopped at the time limit of {time_limit:g} s, in epoch {epoch + 1} of {epochs}")
            break
    bar.close()
    model.eval()
    return history


def evaluate(model: nn.Module, data, *, loss_fn=None, device=None, amp="auto", tta_flip: bool = False) -> EvalResult:
    """Loss, accuracy and per-sample predictions of ``model`` on ``data`` (batches of (x, y)).

    tta_flip: average the logits of each image and its mirror image (test-time augmentation).
    device: as in ``fit`` (the model is moved there). The model's train/eval mode is restored.
    """
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
        end = int(np.argmin(self.smoothed)) + 1
        begin = min(len(self.lrs) // 10, max(end - 2, 0))
        if end - begin < 2:
            raise ValueError("the range test has too few steps before the loss's minimum to find a slope: "
                             "use a smaller lr_min or more steps")
        slope = np.gradient(self.smoothed[begin:end], np.log(self.lrs[begin:end]))
        return float(self.lrs[begin + int(np.argmin(slope))])

    def minimum(self) -> float:
        """The learning rate at the smoothed loss's minimum (past it, training becomes unstable)."""
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
    """
    steps = steps or len(train)
    if steps < 2 or not 0 < lr_min < lr_max:
        raise ValueError(f"need steps >= 2 and 0 < lr_min < lr_max, got steps={steps}, lr_min={lr_min}, "
                         f"lr_max={lr_max}")
    device = _pick_device(device, train)
    _move_model(model, optimizer, device, channels_last=False)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    was_training, loss_fn = model.training, loss_fn or default_loss
    lrs, losses, smoothed, average = [], [], [], 0.0
    try:
        model.train()
        batches = _repeat(train)
        for i in range(steps):
            lr = lr_min * (lr_max / lr_min) ** (i / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches)
            loss = loss_fn(model(x.to(device, non_blocking=True)), y.to(device, non_blocking=True))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            value = loss.item()
            if not math.isfinite(value):
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
            raise ValueError(_EMPTY_TRAIN)


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
        for x, y in data:
            x, y_device = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
            logits = forward(x)
            if tta_flip:
                logits = (logits + forward(x.flip(3))) / 2
            label_check(y, logits)
            loss_sum += loss_fn(logits, y_device).float() * len(y)
            predictions.append(predict(logits))
            targets.append(y_device)
            count += len(y)
    if count == 0:
        raise ValueError("the evaluation data gave no batches: is the data set empty?")
    predictions, targets = torch.cat(predictions), torch.cat(targets)
    accuracy = (predictions == targets).sum().item() / count
    return loss_sum.item() / count, accuracy, predictions, targets


# ----------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------
def save_checkpoint(path, model: nn.Module, optimizer: torch.optim.Optimizer | None = None,
                    history: History | None = None) -> Path:
    """Save weights, optimizer state and history to ``path`` (an existing file is replaced).

    Written to a temporary file first and renamed, so a crash never leaves half a checkpoint.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
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
    ``optimizer``), on whatever device they are; returns the saved ``History`` or None."""
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(checkpoint["model"])
    if optimizer is not None:
        if checkpoint["optimizer"] is None:
            raise ValueError(f"{path} holds no optimizer state; call load_checkpoint without an optimizer")
        optimizer.load_state_dict(checkpoint["optimizer"])
    return History.from_dict(checkpoint["history"]) if checkpoint["history"] is not None else None


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
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float16 if device.type == "mps" else torch.bfloat16
    if amp is False or amp is None or amp == "auto":
        return None
    raise ValueError(f"amp must be 'auto', True, False, 'bf16' or 'fp16', got {amp!r}")


class _Autocast:
    """Calling it gives a fresh autocast context for ``dtype``, or a no-op one when dtype is None."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.device_type, self.dtype = device.type, dtype

    def __call__(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


def _first_forward(forward, x, device):
    """The first forward pass, with a clear message when part of the model stayed on another device."""
    try:
        return forward(x)
    except RuntimeError as err:
        if "device" not in str(err):
            raise
        raise RuntimeError(
            f"the model was moved to {device} with model.to(), but one of its tensors was not. Tensors "
            f"kept as plain attributes are not moved: register them with self.register_buffer(name, "
            f"tensor), or make them nn.Parameter. Original error: {err}") from err


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
            raise ValueError(f"labels must be class indices >= 0, but found the label {low}")
        if outputs == 1 and high > 1:
            raise ValueError(
                f"the model has 1 output (a binary classifier for labels 0 and 1), but labels go up to {high}: "
                f"build it with num_classes={high + 1}")
        if outputs > 1 and high >= outputs:
            raise ValueError(
                f"labels go up to {high} but the model has {outputs} outputs (classes 0..{outputs - 1}): "
                f"build it with num_classes={high + 1} (or check the labels; they should run from 0)")


def _steps_each_batch(scheduler, scheduler_step: str) -> bool:
    if scheduler_step not in ("auto", "batch", "epoch"):
        raise ValueError(f"scheduler_step must be 'auto', 'batch' or 'epoch', got {scheduler_step!r}")
    if scheduler is None:
        return False
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and scheduler_step == "batch":
        raise ValueError("ReduceLROnPlateau needs an epoch's loss: use scheduler_step='epoch'")
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
        raise ValueError(
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

    def step(self, loss_sum, correct, count):
        if not self.enabled:
            return
        self.bar.update()
        now = time.monotonic()
        if now - self.last >= self.interval:
            self.last = now
            self.bar.set_postfix_str(f"loss {loss_sum.item() / count:.3f}, acc {correct.item() / count:.1%}",
                                     refresh=False)

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
