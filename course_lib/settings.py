"""Course-wide settings read from the environment: fast mode, folders, seeds, device.

| variable            | meaning                                             | default                    |
|---------------------|-----------------------------------------------------|----------------------------|
| ``COURSE_FAST``     | ``1`` shrinks data and epochs (CI, quick checks)    | off                        |
| ``COURSE_DATA_DIR`` | folder with the datasets (read only is fine)        | ``<cache dir>/data``       |
| ``COURSE_CACHE_DIR``| where decoded arrays and downloads are kept         | ``~/.cache/course_lib``    |
| ``COURSE_DEVICE``   | force ``cuda``, ``mps`` or ``cpu``                  | best available             |
| ``COURSE_DOWNLOAD`` | ``0`` forbids dataset downloads                     | allowed                    |
| ``COURSE_RESULTS_DIR`` | where notebooks write their results as JSON      | not written                |
| ``COURSE_CHECKPOINT_DIR`` | where trained models are kept for later notebooks | Google Drive on Colab when mounted, else ``<cache dir>/checkpoints`` |

Switches (``COURSE_FAST``, ``COURSE_DOWNLOAD``) take ``1``/``true``/``yes``/``on`` or
``0``/``false``/``no``/``off`` (any case; empty means the default); anything else is a
``SettingError`` naming the variable. So is a ``COURSE_DEVICE`` that is no device, and a folder
variable that names something that cannot be a folder.
"""
from __future__ import annotations

import errno
import os
import random
import sys
import warnings
from pathlib import Path

import numpy as np

from course_lib.errors import CourseRuntimeError, CourseTypeError, CourseValueError, FolderError, SettingError
from course_lib.validation import check_seed, describe

__all__ = [
    "is_fast", "fast_or_full", "downloads_allowed", "env_switch", "data_dir", "cache_dir", "checkpoint_dir",
    "COLAB_DRIVE", "seed_everything", "get_device", "describe_device",
]

_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def env_switch(variable: str, default: bool) -> bool:
    """The on/off environment variable ``variable``: ``default`` when unset or empty."""
    value = os.environ.get(variable, "").strip().lower()
    if not value:
        return default
    if value in _TRUE or value in _FALSE:
        return value in _TRUE
    raise SettingError(
        f"{variable}={os.environ[variable]!r} is neither on ({', '.join(_TRUE)}) nor off ({', '.join(_FALSE)}): "
        f"set it to one of those (any case), or unset it for the default ({'on' if default else 'off'})")


def is_fast() -> bool:
    """True when ``COURSE_FAST`` asks for small subsets and few epochs."""
    return env_switch("COURSE_FAST", default=False)


def downloads_allowed() -> bool:
    """False when ``COURSE_DOWNLOAD`` forbids downloading datasets (default: allowed)."""
    return env_switch("COURSE_DOWNLOAD", default=True)


def fast_or_full(fast, full):
    """Return ``fast`` in fast mode and ``full`` otherwise: ``epochs = fast_or_full(1, 20)``."""
    return fast if is_fast() else full


def cache_dir() -> Path:
    """Writable folder for decoded datasets and downloads (created on demand)."""
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "course_lib"
    return _folder("COURSE_CACHE_DIR", default)


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
    default = cache_dir() / "checkpoints"
    if not os.environ.get("COURSE_CHECKPOINT_DIR"):
        if COLAB_DRIVE.is_dir():
            default = COLAB_DRIVE / "course_lib" / "checkpoints"
        elif "google.colab" in sys.modules:
            warnings.warn(f"Google Drive is not mounted, so checkpoints go to {default}, which is deleted when this "
                          'Colab session ends: run `from google.colab import drive; drive.mount("/content/drive")` '
                          "to keep them in your Drive (MyDrive/course_lib/checkpoints).", stacklevel=2)
    return _folder("COURSE_CHECKPOINT_DIR", default)


def _folder(variable: str, default: Path) -> Path:
    """The folder ``$variable`` (else ``default``), created if missing; a file in its place is an error."""
    path = Path(os.environ.get(variable) or default).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        source = f"{variable}={os.environ[variable]!r}" if os.environ.get(variable) else f"the default {path}"
        raise FolderError(f"{source} is, or lies inside, a file, not a folder: point {variable} at a folder "
                           f"(it is created if missing)") from None
    except OSError as err:  # a read-only place (the grader's sandbox) still serves reads; a write there fails
        if err.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise
    return path


def seed_everything(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and GPU) so that CPU runs repeat exactly.

    seed: a whole number in [0, 2**32).
    """
    seed = check_seed("seed", seed)
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

    Order: the ``preferred`` argument (a str or ``torch.device``), then ``COURSE_DEVICE``, then CUDA,
    Apple MPS, CPU. A name that is no device raises ``CourseValueError`` (``SettingError`` for
    ``COURSE_DEVICE``); a device that is not available here a ``CourseRuntimeError`` saying what is.
    """
    import torch

    available = [name for name in _DEVICES if _is_available(name)]
    if preferred is not None and not isinstance(preferred, (str, torch.device)):
        raise CourseTypeError(f"device must be a name such as 'cuda', 'mps' or 'cpu' (or a torch.device), "
                              f"got {describe(preferred)}")
    source = "the device argument" if preferred else "COURSE_DEVICE" if os.environ.get("COURSE_DEVICE") else None
    choice = preferred or os.environ.get("COURSE_DEVICE") or available[0]
    try:
        device = torch.device(choice.strip().lower() if isinstance(choice, str) else choice)
    except RuntimeError:
        device = None
    if device is None or device.type not in _DEVICES:
        error = SettingError if source == "COURSE_DEVICE" else CourseValueError
        unset = " (or unset it to pick the best)" if source == "COURSE_DEVICE" else ""
        raise error(f"{source} is {str(choice)!r}, which is not a device course_lib can use: use one of "
                    f"{', '.join(_DEVICES)} (optionally with an index, e.g. 'cuda:1'); available here: "
                    f"{', '.join(available)}{unset}")
    if device.type not in available:
        raise CourseRuntimeError(
            f"device {str(choice)!r} was asked for ({source}) but is not available here; "
            f"available: {', '.join(available)}. Unset COURSE_DEVICE or pass one of those."
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise CourseRuntimeError(
            f"device {str(choice)!r} was asked for ({source}) but this machine has {torch.cuda.device_count()} "
            f"CUDA device(s), numbered from 0: use 'cuda' or 'cuda:0'")
    return device


def _is_available(name: str) -> bool:
    import torch

    if name == "cuda":
        return torch.cuda.is_available()
    if name == "mps":
        return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return True


def describe_device(device) -> str:
    """One line about ``device`` (checked as by :func:`get_device`): the GPU's name and memory, or the
    CPU thread count."""
    import torch

    device = get_device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    if device.type == "mps":
        return "mps (Apple GPU)"
    return f"cpu ({torch.get_num_threads()} threads)"
