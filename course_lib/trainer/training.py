"""``fit`` and ``evaluate``, and what they return: ``History`` (per epoch) and ``EvalResult``.

The rules ``fit`` follows (device, mixed precision, schedulers, time limit, mistakes that stop it
before training) are in the docstring of ``course_lib.trainer``.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from course_lib.errors import CourseTypeError, CourseValueError, NonFiniteLossError
from course_lib.settings import describe_device
from course_lib.trainer.steps import (EMPTY_TRAINING_DATA, LabelCheck, check_first_loss, check_optimizer,
                                      default_loss, first_forward, move_model, pick_device, predict)
from course_lib.validation import (check_batch, check_batches, check_callable, check_choice, check_int, check_module,
                                   check_number, describe)

__all__ = ["History", "EvalResult", "fit", "evaluate", "autocast_dtype", "cpu_computes_bf16"]

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
        """(K, K) int64 counts: row = true class, column = predicted class (scikit-learn's
        ``confusion_matrix``); K is ``num_classes``, or the largest label or prediction + 1."""
        from sklearn.metrics import confusion_matrix   # imported here: scikit-learn takes a second to load

        largest = int(max(self.predictions.max(initial=0), self.targets.max(initial=0)))
        k = largest + 1 if num_classes is None else check_int(
            "num_classes", num_classes, low=largest + 1, hint=f"the labels and predictions go up to {largest}")
        if not len(self.targets):                      # scikit-learn refuses empty arrays
            return np.zeros((k, k), dtype=np.int64)
        return confusion_matrix(self.targets, self.predictions, labels=np.arange(k)).astype(np.int64, copy=False)


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
    amp: "auto" (CUDA only), "native" (CUDA, and CPUs with bfloat16 instructions), True (any device), False,
        "bf16" or "fp16": autocast for the forward.
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
    check_optimizer(optimizer, model)
    _check_scheduler(scheduler, optimizer)
    for name, function in (("loss_fn", loss_fn), ("on_step", on_step), ("on_epoch", on_epoch)):
        check_callable(name, function, allow_none=True)
    if time_limit is not None:
        time_limit = check_number("time_limit", time_limit, low=0, low_open=True,
                                  hint="seconds of training, or None for no limit")
    if hasattr(train, "__len__") and len(train) == 0:
        raise CourseValueError(EMPTY_TRAINING_DATA)
    device = pick_device(device, train)
    moved_from = move_model(model, optimizer, device, channels_last)
    amp_dtype = autocast_dtype(amp, device)
    autocast = _Autocast(device, amp_dtype)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype is torch.float16)
    loss_fn = loss_fn or default_loss
    step_each_batch = _steps_each_batch(scheduler, scheduler_step)
    _check_schedule(scheduler, step_each_batch, epochs, train)
    forward = torch.compile(model) if compile else model
    label_check = LabelCheck(train)

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
                    logits = forward(x) if count else first_forward(forward, model, x, device)
                    label_check(y, logits)
                    loss = loss_fn(logits, y_device)
                if not count:
                    check_first_loss(loss)
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
                raise CourseValueError(EMPTY_TRAINING_DATA)
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
    device = pick_device(device, data)
    model.to(device)
    channels_last = _has_channels_last_weights(model)
    was_training = model.training
    try:
        loss, accuracy, predictions, targets = _run_eval(
            model, model, data, loss_fn or default_loss, device, _Autocast(device, autocast_dtype(amp, device)),
            channels_last, tta_flip=tta_flip)
    finally:
        model.train(was_training)
    return EvalResult(loss, accuracy, predictions.cpu().numpy(), targets.cpu().numpy())


def _run_eval(forward, model, data, loss_fn, device, autocast, channels_last, *, tta_flip=False):
    """(mean loss, accuracy, predictions (N,), targets (N,)) over ``data``; one host sync at the end.

    ``forward`` is the model or its compiled version; ``model`` is switched to eval mode.
    """
    model.eval()
    label_check = LabelCheck(data)
    loss_sum = torch.zeros((), device=device)
    count, predictions, targets = 0, [], []
    with torch.no_grad(), autocast():
        for batch in data:
            x, y = batch if count else check_batch("the evaluation data", batch)
            x, y_device = _to_device(x, device, channels_last), y.to(device, non_blocking=True)
            if tta_flip and x.ndim != 4:
                raise CourseValueError(f"tta_flip mirrors images (N, C, H, W), but the batches hold {describe(x)}: "
                                       f"pass tta_flip=False")
            logits = forward(x) if count else first_forward(forward, model, x, device)
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
# Helpers
# ----------------------------------------------------------------------------------------------
def _to_device(x: torch.Tensor, device, channels_last: bool) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def _has_channels_last_weights(model) -> bool:
    conv = next((p for p in model.parameters() if p.ndim == 4 and p.shape[2] * p.shape[3] > 1), None)
    return conv is not None and not conv.is_contiguous() and conv.is_contiguous(memory_format=torch.channels_last)


def autocast_dtype(amp, device: torch.device) -> torch.dtype | None:
    """The autocast dtype that ``amp`` asks for on ``device``, or None for full precision."""
    if amp == "native":   # "auto", and bfloat16 on a CPU that computes it natively
        amp = "bf16" if device.type == "cpu" and cpu_computes_bf16() else "auto"
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
    raise CourseValueError(f"amp must be 'auto', 'native', True, False, 'bf16' or 'fp16', got {amp!r}")


def cpu_computes_bf16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX512-BF16 or AMX), where bf16 autocast is about twice as
    fast as float32 for convolutions; elsewhere it is emulated, and slower."""
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")   # torch.cpu's, private: absent means no
    return any(getattr(torch.cpu, probe, lambda: False)() for probe in probes)


class _Autocast:
    """Calling it gives a fresh autocast context for ``dtype``, or a no-op one when dtype is None."""

    def __init__(self, device: torch.device, dtype: torch.dtype | None):
        self.device_type, self.dtype = device.type, dtype

    def __call__(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)


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
