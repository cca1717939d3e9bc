"""The parts of a training step that ``fit``, ``evaluate`` and ``lr_range_test`` share: the default
loss and the prediction it implies, the device and the model moved to it, and the checks that make
the first batch fail with a message (an optimizer on another model, images the model cannot take,
labels beyond its outputs, a loss that is not one number)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.errors import CourseRuntimeError, CourseTypeError, CourseValueError
from course_lib.settings import get_device
from course_lib.trainer.loaders import DeviceLoader
from course_lib.validation import describe, explain_forward_error

__all__ = [
    "default_loss", "predict", "pick_device", "move_model", "check_optimizer", "first_forward", "check_first_loss",
    "LabelCheck", "EMPTY_TRAINING_DATA",
]

#: The message of the error ``fit`` and ``lr_range_test`` raise when the training data gives no batch.
EMPTY_TRAINING_DATA = ("the training data gave no batches: is the data set empty, or is batch_size larger "
                       "than the data set with drop_last=True?")


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


def pick_device(device, data) -> torch.device:
    """The argument, else a DeviceLoader's device, else settings.get_device(); with its index ("cuda:0")."""
    if device is None and isinstance(data, DeviceLoader):
        device = data.device
    return torch.empty(0, device=get_device(device)).device


def move_model(model, optimizer, device, channels_last) -> torch.device | None:
    """Move the model (and optimizer state) to ``device``; returns the device it came from, if other."""
    param = next(model.parameters(), None)
    old = param.device if param is not None else device
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if old != device and optimizer.state:
        optimizer.load_state_dict(optimizer.state_dict())   # re-places the state next to its parameters
    return old if old != device else None


def check_optimizer(optimizer, model) -> None:
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


def first_forward(forward, model, x, device):
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


def check_first_loss(loss) -> None:
    """The first step's loss must be one number that gradients flow back through."""
    if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
        raise CourseValueError(f"loss_fn must return the batch's mean loss as one number (a 0-d tensor), got "
                               f"{describe(loss)}: average it (reduction='mean', or .mean())")
    if not loss.requires_grad:
        raise CourseValueError("loss_fn returned a loss that does not depend on the model's parameters (no "
                               "gradient): compute it with torch operations on the logits, without .item(), "
                               ".detach() or NumPy")


class LabelCheck:
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
