"""Course-wide settings read from the environment: fast mode, folders, seeds, device.

| variable            | meaning                                             | default                    |
|---------------------|-----------------------------------------------------|----------------------------|
| ``COURSE_FAST``     | ``1`` shrinks data and epochs (CI, quick checks)    | off                        |
| ``COURSE_DATA_DIR`` | folder with the datasets (read only is fine)        | ``<cache dir>/data``       |
| ``COURSE_CACHE_DIR``| where decoded arrays and downloads are kept         | ``~/.cache/course_lib``    |
| ``COURSE_DEVICE``   | force ``cuda``, ``mps`` or ``cpu``                  | best available             |
| ``COURSE_RESULTS_DIR`` | where notebooks write their results as JSON      | not written                |
| ``COURSE_CHECKPOINT_DIR`` | where trained models are kept for later notebooks | Google Drive on Colab when mounted, else ``<cache dir>/checkpoints`` |
"""
from __future__ import annotations

import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np

_TRUE = {"1", "true", "yes", "on"}


def is_fast() -> bool:
    """True when ``COURSE_FAST`` asks for small subsets and few epochs."""
    return os.environ.get("COURSE_FAST", "").strip().lower() in _TRUE


def fast_or_full(fast, full):
    """Return ``fast`` in fast mode and ``full`` otherwise: ``epochs = fast_or_full(1, 20)``."""
    return fast if is_fast() else full


def cache_dir() -> Path:
    """Writable folder for decoded datasets and downloads (created on demand)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "course_lib"
    path = Path(os.environ.get("COURSE_CACHE_DIR", default)).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    return path


def data_dir() -> Path:
    """Folder the datasets are looked for in: ``COURSE_DATA_DIR``, else ``<cache dir>/data``."""
    if os.environ.get("COURSE_DATA_DIR"):
        return Path(os.environ["COURSE_DATA_DIR"]).expanduser()
    return cache_dir() / "data"


# Where Colab mounts Google Drive (``from google.colab import drive; drive.mount("/content/drive")``).
COLAB_DRIVE = Path("/content/drive/MyDrive")


def checkpoint_dir() -> Path:
    """Folder where notebooks keep trained models that later notebooks load (created on demand).

    ``COURSE_CHECKPOINT_DIR``; else, on Colab with Google Drive mounted, ``MyDrive/course_lib/checkpoints``
    (a Colab session's own disk is wiped when it ends); else ``<cache dir>/checkpoints``.
    """
    if os.environ.get("COURSE_CHECKPOINT_DIR"):
        path = Path(os.environ["COURSE_CHECKPOINT_DIR"]).expanduser()
    elif COLAB_DRIVE.is_dir():
        path = COLAB_DRIVE / "course_lib" / "checkpoints"
    else:
        path = cache_dir() / "checkpoints"
        if "google.colab" in sys.modules:
            warnings.warn(f"Google Drive is not mounted, so checkpoints go to {path}, which is deleted when this "
                          'Colab session ends: run `from google.colab import drive; drive.mount("/content/drive")` '
                          "to keep them in your Drive (MyDrive/course_lib/checkpoints).", stacklevel=2)
    path.mkdir(parents=True, exist_ok=True)
    return path


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and GPU) so that CPU runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:  # NumPy-only notebooks still get seeded
        return
    torch.manual_seed(seed)  # also seeds every CUDA and MPS device


_DEVICES = ("cuda", "mps", "cpu")


def get_device(preferred: str | None = None):
    """The ``torch.device`` to compute on.

    Order: the ``preferred`` argument, then ``COURSE_DEVICE``, then CUDA, Apple MPS, CPU.
    Asking for a device that is not available raises ``RuntimeError`` saying what is.
    """
    import torch

    available = [name for name in _DEVICES if _is_available(name)]
    choice = preferred or os.environ.get("COURSE_DEVICE") or available[0]
    kind = torch.device(choice).type
    if kind not in _DEVICES:
        raise ValueError(f"unknown device {choice!r}: use one of {', '.join(_DEVICES)}")
    if kind not in available:
        raise RuntimeError(
            f"device {choice!r} was asked for (argument or COURSE_DEVICE) but is not available here; "
            f"available: {', '.join(available)}. Unset COURSE_DEVICE or pass one of those."
        )
    return torch.device(choice)


def _is_available(name: str) -> bool:
    import torch

    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def describe_device(device) -> str:
    """One line about ``device``: the GPU's name and memory, or the CPU thread count."""
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"
