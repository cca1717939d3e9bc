"""The first and last cells of every notebook: set-up report, and results beside their promises."""
from __future__ import annotations

import operator
import time

from collections.abc import Mapping

from course_lib.errors import CourseTypeError, CourseValueError, show_errors_briefly
from course_lib.results import format_value, results_dir, write_results
from course_lib.settings import data_dir, describe_device, get_device, is_fast, seed_everything
from course_lib.validation import describe

__all__ = ["setup_notebook", "NotebookRun"]

_COMPARE = {">=": operator.ge, "<=": operator.le}


class NotebookRun:
    """Created by :func:`setup_notebook`; knows the notebook's name, mode, device and start time."""

    def __init__(self, name: str, seed: int, use_torch: bool):
        self.name = name
        self.seed = seed
        self.fast = is_fast()
        self.started = time.perf_counter()
        seed_everything(seed)
        self.device = get_device() if use_torch else None

    def report(self) -> str:
        mode = "fast mode (COURSE_FAST=1): small subsets, few epochs" if self.fast else "full mode"
        device = describe_device(self.device) if self.device is not None else "NumPy on the CPU"
        return f"{self.name} · {mode} · seed {self.seed} · device: {device} · data: {data_dir()}"

    def finish(self, results: dict, promised: dict) -> dict:
        """Record ``results`` (plus ``seconds`` since set-up) and show them beside ``promised``.

        - results: name → number, e.g. ``{"test_accuracy": 0.53, "train_seconds": 61.0}``
        - promised: name → (">=" or "<=", number): what full mode promises.

        Writes ``<COURSE_RESULTS_DIR>/<name>.json`` when that variable is set; returns the numbers.
        """
        if not isinstance(results, Mapping) or not isinstance(promised, Mapping):
            raise CourseTypeError(f"finish takes two dicts, results and promised, got {describe(results)} and "
                                  f"{describe(promised)}")
        for key, promise in promised.items():
            if not (isinstance(promise, tuple) and len(promise) == 2 and promise[0] in _COMPARE):
                raise CourseValueError(f"promised[{key!r}] must be ('>=' or '<=', number), got {describe(promise)}")
        bad = [key for key, value in results.items() if isinstance(value, bool) or not hasattr(value, "__float__")]
        if bad:
            raise CourseTypeError(f"results must be numbers; {bad[0]!r} is {describe(results[bad[0]])}")
        numbers = {**{k: float(v) for k, v in results.items()}, "seconds": time.perf_counter() - self.started}
        path = write_results(self.name, numbers)
        print(f"{'result':<20} {'reached':>10}   promised (full mode)")
        for key, value in numbers.items():
            line = f"{key:<20} {format_value(key, value):>10}"
            if key in promised:
                sign, target = promised[key]
                met = "✔" if _COMPARE[sign](value, target) else ("✘" if not self.fast else "· fast mode")
                line += f"   {sign} {format_value(key, target)} {met}"
            print(line)
        if path is not None:
            print(f"saved to {path}")
        elif results_dir() is None:
            print("(set COURSE_RESULTS_DIR to save these numbers)")
        return numbers


def setup_notebook(name: str, seed: int = 0, use_torch: bool = True) -> NotebookRun:
    """Seed everything, pick the device, start the clock and print one line about the set-up.

    In IPython, failed checks, stubs and names not defined yet show as one brief block each
    (:func:`course_lib.errors.show_errors_briefly`).
    """
    show_errors_briefly()
    run = NotebookRun(name, seed, use_torch)
    print(run.report())
    return run
