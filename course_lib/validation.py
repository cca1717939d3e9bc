"""Checks that public functions run on their arguments before doing any work.

Each raises one of :mod:`course_lib.errors`' types with a message in three parts: what was wrong,
the value that was given (``describe``), and what to do. They cost microseconds: they look at
types, shapes and a handful of numbers, never at every element of a large array.
"""
from __future__ import annotations

import math
import numbers
import traceback
from pathlib import Path

from course_lib.errors import CourseTypeError, CourseValueError

__all__ = [
    "describe", "check_int", "check_number", "check_seed", "check_choice", "check_callable", "check_path",
    "check_module", "check_batches", "check_batch", "explain_forward_error", "first_layer", "SEED_LIMIT",
]

SEED_LIMIT = 2**32  # NumPy's and scikit-learn's seeds are below it


def describe(value) -> str:
    """A short description of ``value`` for a message: arrays and tensors by dtype and shape."""
    shape = getattr(value, "shape", None)
    if shape is not None and hasattr(value, "dtype") and len(shape) > 0:
        kind = "tensor" if type(value).__module__.startswith("torch") else "array"
        return f"a {str(value.dtype).removeprefix('torch.')} {kind} of shape {tuple(shape)}"
    if isinstance(value, type):
        return f"the class {value.__name__}"
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    if isinstance(value, (bool, numbers.Number, str)) or value is None:
        return text
    return f"{text} ({type(value).__name__})"


def check_int(name: str, value, *, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """``value`` as an int, if it is a whole number (not a bool) in [low, high]; else a clear error."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise CourseTypeError(f"{name} must be a whole number, got {describe(value)}{_then(hint)}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise CourseValueError(f"{name} must be {_range_text(low, high)}, got {value}{_then(hint)}")
    return value


def check_number(name: str, value, *, low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, hint: str = "") -> float:
    """``value`` as a finite float in [low, high] (open ends when ``low_open`` / ``high_open``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise CourseTypeError(f"{name} must be a number, got {describe(value)}{_then(hint)}")
    value = float(value)
    below = low is not None and (value <= low if low_open else value < low)
    above = high is not None and (value >= high if high_open else value > high)
    if not math.isfinite(value) or below or above:
        wanted = _range_text(low, high, low_open, high_open, "a finite number")
        raise CourseValueError(f"{name} must be {wanted}, got {value}{_then(hint)}")
    return value


def check_seed(name: str, value, *, allow_none: bool = False) -> int | None:
    """A seed: a whole number in [0, 2**32) (NumPy's and scikit-learn's range), or None if allowed."""
    if value is None and allow_none:
        return None
    hint = "seeds are whole numbers such as 0 or 42" + (" (or None for a random one)" if allow_none else "")
    return check_int(name, value, low=0, high=SEED_LIMIT - 1, hint=hint)


def check_choice(name: str, value, choices):
    """``value`` if it is one of ``choices``; else an error listing them."""
    try:
        if value in choices:
            return value
    except TypeError:  # unhashable value
        pass
    listed = ", ".join(repr(choice) for choice in choices)
    raise CourseValueError(f"{name} must be one of {listed}; got {describe(value)}")


def check_callable(name: str, value, *, allow_none: bool = False, example: str = ""):
    """``value`` if it can be called (or is None, when allowed)."""
    if (value is None and allow_none) or callable(value):
        return value
    raise CourseTypeError(f"{name} must be a function{' or None' * allow_none}, got {describe(value)}"
                          f"{_then(example and 'for example ' + example)}")


def check_path(name: str, value) -> Path:
    """A ``str`` or ``os.PathLike`` as a ``Path`` (``~`` expanded)."""
    if not isinstance(value, (str, Path)) and not hasattr(value, "__fspath__"):
        raise CourseTypeError(f"{name} must be a path (a str or pathlib.Path), got {describe(value)}")
    if isinstance(value, str) and not value.strip():
        raise CourseValueError(f"{name} is an empty string: give the path of a file or folder")
    return Path(value).expanduser()


def check_module(name: str, value):
    """``value`` if it is a ``torch.nn.Module`` instance (a class, e.g. ``MLP1`` instead of ``MLP1()``, is not)."""
    from torch import nn

    if isinstance(value, nn.Module):
        return value
    if isinstance(value, type) and issubclass(value, nn.Module):
        raise CourseTypeError(f"{name} must be a model (an nn.Module instance), got the class {value.__name__}: "
                              f"build one first, e.g. {value.__name__}()")
    raise CourseTypeError(f"{name} must be a model (an nn.Module instance), got {describe(value)}")


def check_batches(name: str, value, *, allow_none: bool = False):
    """``value`` if it can be a source of (x, y) batches: a DeviceLoader, a DataLoader, any iterable
    of batches. Arrays, tensors, images-with-labels and an (x, y) pair are not."""
    if value is None and allow_none:
        return value
    make = "DeviceLoader(x, y, batch_size=256) (from course_lib.trainer)"
    if hasattr(value, "x") and hasattr(value, "y") and hasattr(value, "class_names"):
        raise CourseTypeError(f"{name} must give batches of (x, y), got images with labels ({type(value).__name__}): "
                              f"wrap them in {make.replace('x, y', 'data.x, data.y')}")
    if isinstance(value, (tuple, list)) and value and all(hasattr(item, "shape") for item in value):
        shapes = ", ".join(describe(item) for item in value)
        raise CourseTypeError(f"{name} must give batches of (x, y), got a {type(value).__name__} of arrays "
                              f"({shapes}): wrap images and labels in {make}")
    if hasattr(value, "shape") or isinstance(value, (str, bytes, dict, numbers.Number)) or value is None \
            or not hasattr(value, "__iter__"):
        raise CourseTypeError(f"{name} must give batches of (x, y) (a DeviceLoader, a DataLoader, or a list of "
                              f"(x, y) pairs), got {describe(value)}: wrap images and labels in {make}")
    return value


def check_batch(name: str, batch):
    """The first batch of ``name`` as (x, y) tensors, or an error saying what the batches are instead."""
    import torch

    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        got = f"a {type(batch).__name__} of {len(batch)} items" if isinstance(batch, (tuple, list)) else describe(batch)
        raise CourseTypeError(f"each batch of {name} must be a pair (x, y) of images and labels, got {got}: a "
                              f"DataLoader over TensorDataset(x, y), or DeviceLoader(x, y), gives such pairs")
    x, y = batch
    if not (isinstance(x, torch.Tensor) and isinstance(y, torch.Tensor)):
        raise CourseTypeError(f"the batches of {name} must hold torch tensors, got x as {describe(x)} and y as "
                              f"{describe(y)}: DeviceLoader(x, y) and DataLoader both give tensors")
    if y.ndim != 1 or len(y) != len(x):
        hint = " (one-hot? pass y.argmax(1) as the labels)" if y.ndim == 2 and len(y) == len(x) else ""
        raise CourseValueError(f"the labels of a batch of {name} must be (N,) class indices for N = {len(x)} images, "
                               f"got {describe(y)}{hint}")
    if y.is_floating_point() or y.is_complex():
        raise CourseTypeError(f"the labels of {name} must be integer class indices, got {describe(y)}: "
                              f"convert them with y.long() (or .astype(np.int64)) if they are whole numbers")
    return x, y


def explain_forward_error(model, x, err: Exception, advice: str = "Build the model for these images (in_channels, "
                          "image_size or num_classes), or reshape the images to what it takes."):
    """A ``CourseValueError`` saying why ``model`` could not take the batch ``x`` (B, ...), when ``err``
    (from its first forward pass) is a shape mismatch; None when it is something else."""
    text = str(err)
    if not isinstance(err, RuntimeError) or not any(clue in text for clue in _SHAPE_CLUES):
        return None
    first = first_layer(model)
    expected = ""
    if first is not None:
        layer_name, layer = first
        expected = f" Its first layer, {layer_name} ({type(layer).__name__}), takes {_takes(layer)}."
    return CourseValueError(
        f"the model cannot take these images: a batch is {tuple(x.shape)}, so each image is {_per_image(x)}; "
        f"torch said \"{text.splitlines()[0]}\"{_where(err)}.{expected} {advice}")


_SHAPE_CLUES = ("shape", "size", "channels", "Expected", "expected input", "dimension", "mat1", "must match")


def first_layer(model):
    """(name, module) of the first Conv or Linear layer in ``model``'s registration order, or None."""
    from torch import nn

    for name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            return name, module
    return None


def _takes(layer) -> str:
    from torch import nn

    if isinstance(layer, nn.Linear):
        return f"{layer.in_features} numbers per image (a flattened C x H x W image)"
    return f"images with {layer.in_channels} channels"


def _per_image(x) -> str:
    shape = tuple(x.shape)[1:]
    return f"{shape} = {math.prod(shape)} numbers"


def _where(err: Exception) -> str:
    """', in <function> at <file>:<line>' for the last frame of ``err`` outside torch, if any."""
    frames = [frame for frame in traceback.extract_tb(err.__traceback__)
              if "/torch/" not in frame.filename and "course_lib" not in frame.filename]
    if not frames:
        return ""
    frame = frames[-1]
    return f", in {frame.name} ({Path(frame.filename).name}, line {frame.lineno}: {frame.line})"


def _range_text(low, high, low_open=False, high_open=False, kind="a whole number") -> str:
    if low is not None and high is not None:
        return f"{kind} {'>' if low_open else '>='} {low} and {'<' if high_open else '<='} {high}"
    if low is not None:
        return f"{kind} {'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{kind} {'<' if high_open else '<='} {high}"
    return kind


def _then(hint: str) -> str:
    return f": {hint}" if hint else ""
