"""The learning-rate range test (Smith, 2017): ``lr_range_test`` and what it returns, ``RangeTest``."""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from course_lib.errors import CourseValueError, NonFiniteLossError
from course_lib.trainer.steps import (EMPTY_TRAINING_DATA, LabelCheck, check_first_loss, check_optimizer,
                                      default_loss, first_forward, move_model, pick_device)
from course_lib.validation import (check_batch, check_batches, check_callable, check_int, check_module, check_number,
                                   describe)

__all__ = ["RangeTest", "lr_range_test"]


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
    check_optimizer(optimizer, model)
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
    device = pick_device(device, train)
    move_model(model, optimizer, device, channels_last=False)
    saved_model, saved_optimizer = copy.deepcopy(model.state_dict()), copy.deepcopy(optimizer.state_dict())
    was_training, loss_fn = model.training, loss_fn or default_loss
    lrs, losses, smoothed, average = [], [], [], 0.0
    label_check = LabelCheck(train)
    try:
        model.train()
        batches = _repeat(train)
        for i in range(steps):
            lr = lr_min * (lr_max / lr_min) ** (i / (steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = next(batches) if i else check_batch("train", next(batches))
            x = x.to(device, non_blocking=True)
            logits = model(x) if i else first_forward(model, model, x, device)
            label_check(y, logits)
            loss = loss_fn(logits, y.to(device, non_blocking=True))
            if not i:
                check_first_loss(loss)
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
            raise CourseValueError(EMPTY_TRAINING_DATA)
