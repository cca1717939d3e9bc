"""Checkpoints: ``save_checkpoint`` writes a model's weights, its optimizer's state and its
``History`` to one file, atomically; ``load_checkpoint`` reads them back, and names what does not fit."""
from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path

import torch
from torch import nn

from course_lib.errors import CheckpointError, CourseFileNotFoundError, CourseTypeError, CourseValueError
from course_lib.trainer.training import History
from course_lib.validation import check_module, check_path, describe

__all__ = ["save_checkpoint", "load_checkpoint"]


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
