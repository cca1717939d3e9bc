"""Headline results of notebooks: recorded as JSON, gathered into the README's table.

A notebook records one flat JSON object of name → number at ``<COURSE_RESULTS_DIR>/<notebook>.json``
(accuracies as fractions in [0, 1], times in seconds). ``python -m course_lib results DIR``
prints the Markdown table that ``make results`` writes.
"""
from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Mapping
from numbers import Integral, Real
from pathlib import Path

from course_lib.errors import (CourseFileNotFoundError, CourseTypeError, CourseValueError, FolderError,
                               SkippedFileWarning)
from course_lib.validation import describe

__all__ = ["results_dir", "write_results", "format_value", "table"]


def results_dir() -> Path | None:
    """``COURSE_RESULTS_DIR`` as a path, or None when results are not being written."""
    value = os.environ.get("COURSE_RESULTS_DIR")
    return Path(value).expanduser() if value else None


def write_results(notebook: str, numbers: dict) -> Path | None:
    """Write ``numbers`` to ``<COURSE_RESULTS_DIR>/<notebook>.json``; returns the path, or None if unset.

    notebook: the notebook's name, e.g. ``"03_building_cnns"``; numbers: name → finite number
    (NumPy and Python numbers alike).
    """
    if not isinstance(notebook, str) or not notebook.strip() or any(c in notebook for c in "/\\\0") \
            or notebook in (".", ".."):
        raise CourseValueError(f"notebook must be the notebook's name, e.g. '03_building_cnns', got "
                               f"{describe(notebook)}")
    if not isinstance(numbers, Mapping):
        raise CourseTypeError(f"numbers must be a dict of name -> number, got {describe(numbers)}")
    clean = {}
    for name, value in numbers.items():
        if not isinstance(name, str):
            raise CourseTypeError(f"result names must be strings, got {describe(name)}")
        if isinstance(value, bool) or not isinstance(value, Real) or not math.isfinite(value):
            raise CourseValueError(f"result {name!r} must be a finite number, got {value!r}")
        clean[name] = int(value) if isinstance(value, Integral) else float(value)
    folder = results_dir()
    if folder is None:
        return None
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FolderError(f"COURSE_RESULTS_DIR={str(folder)!r} is, or lies inside, a file: point it at a folder "
                           f"(it is created if missing)") from None
    path = folder / f"{notebook}.json"
    path.write_text(json.dumps(clean, indent=2, sort_keys=True) + "\n")
    return path


def format_value(name: str, value: float) -> str:
    """``0.534`` → ``53.4%`` for accuracies, ``55.2`` → ``55 s`` for times, else 4 significant digits."""
    if isinstance(value, bool) or not isinstance(value, Real):
        raise CourseTypeError(f"result {name!r} must be a number, got {describe(value)}")
    if "accuracy" in name:
        return f"{100 * value:.1f}%"
    if "seconds" in name:
        return f"{value:.0f} s"
    return f"{value:.4g}"


def table(folder) -> str:
    """A Markdown table of every ``*.json`` result in ``folder``, one row per notebook.

    A file that is not a flat JSON object of numbers with ``seconds`` is left out with a warning.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise CourseFileNotFoundError(f"no results folder at {folder}: run the notebooks with COURSE_RESULTS_DIR set "
                                      f"to it first (make results does)")
    rows = []
    for path in sorted(folder.glob("*.json")):
        try:
            numbers = json.loads(path.read_text())
            if not isinstance(numbers, dict) or not isinstance(numbers.get("seconds"), Real) or not all(
                    isinstance(value, Real) for value in numbers.values()):
                raise ValueError("not a flat object of numbers with 'seconds'")
        except (ValueError, OSError) as err:
            warnings.warn(f"left out {path}: {err}", SkippedFileWarning, stacklevel=2)
            continue
        cells = ", ".join(f"{name} {format_value(name, value)}" for name, value in sorted(numbers.items()) if name != "seconds")
        accuracy = format_value("test_accuracy", numbers["test_accuracy"]) if "test_accuracy" in numbers else "—"
        rows.append(f"| {path.stem} | {accuracy} | {numbers['seconds']:.0f} | {cells} |")
    header = "| notebook | test accuracy | seconds | all results |\n|---|---|---|---|"
    return "\n".join([header, *rows])

