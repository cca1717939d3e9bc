"""Headline results of notebooks: recorded as JSON, gathered into the README's table.

A notebook records one flat JSON object of name → number at ``<COURSE_RESULTS_DIR>/<notebook>.json``
(accuracies as fractions in [0, 1], times in seconds). ``python -m course_lib results DIR``
prints the Markdown table that ``make results`` writes.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path


def results_dir() -> Path | None:
    """``COURSE_RESULTS_DIR`` as a path, or None when results are not being written."""
    value = os.environ.get("COURSE_RESULTS_DIR")
    return Path(value).expanduser() if value else None


def write_results(notebook: str, numbers: dict) -> Path | None:
    """Write ``numbers`` to ``<COURSE_RESULTS_DIR>/<notebook>.json``; returns the path, or None if unset."""
    for name, value in numbers.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
            raise ValueError(f"result {name!r} must be a finite number, got {value!r}")
    folder = results_dir()
    if folder is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{notebook}.json"
    path.write_text(json.dumps(numbers, indent=2, sort_keys=True) + "\n")
    return path


def format_value(name: str, value: float) -> str:
    """``0.534`` → ``53.4%`` for accuracies, ``55.2`` → ``55 s`` for times, else 4 significant digits."""
    if "accuracy" in name:
        return f"{100 * value:.1f}%"
    if "seconds" in name:
        return f"{value:.0f} s"
    return f"{value:.4g}"


def table(folder) -> str:
    """A Markdown table of every ``*.json`` result in ``folder``, one row per notebook."""
    rows = []
    for path in sorted(Path(folder).glob("*.json")):
        numbers = json.loads(path.read_text())
        cells = ", ".join(f"{name} {format_value(name, value)}" for name, value in sorted(numbers.items()) if name != "seconds")
        accuracy = format_value("test_accuracy", numbers["test_accuracy"]) if "test_accuracy" in numbers else "—"
        rows.append(f"| {path.stem} | {accuracy} | {numbers['seconds']:.0f} | {cells} |")
    header = "| notebook | test accuracy | seconds | all results |\n|---|---|---|---|"
    return "\n".join([header, *rows])

