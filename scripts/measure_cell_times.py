"""Measure how long each cell of the solution notebooks takes, as the autograder's kernel runs them.

Each notebook runs in a fresh kernel with its test cells as students received them (the hidden tests
run in the grader, not the kernel); every code cell's wall time is stored by cell id in
``solutions/cell_times.json`` under the mode (``fast`` with COURSE_FAST=1, else ``full``). The
autograder gives each cell of a submission ``CellTimeLimits.margin`` times that, plus ``floor``
seconds, and so does the Validator (``ValidatorTimeLimits``); cells the table does not know keep the
global limit.

    COURSE_FAST=1 python scripts/measure_cell_times.py [NN_name ...]   # every notebook by default
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from course_grading.preprocessors import CELL_TIMES, released_source  # noqa: E402
from course_lib.settings import is_fast  # noqa: E402


class TimedClient(NotebookClient):
    """nbclient's client, recording each code cell's wall time by cell id."""

    def __init__(self, nb, **kwargs):
        super().__init__(nb, **kwargs)
        self.seconds: dict = {}

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        start = time.perf_counter()
        cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        if cell.cell_type == "code" and cell.get("id"):
            self.seconds[cell.id] = round(time.perf_counter() - start, 2)
        return cell


def measure(name: str) -> dict:
    folder = ROOT / "solutions" / name
    nb = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            cell.source = released_source(cell.source)
    client = TimedClient(nb, timeout=3600, kernel_name="python3", resources={"metadata": {"path": str(folder)}})
    client.execute()
    return client.seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="NN_name (default: every solution notebook)")
    args = parser.parse_args()
    names = args.notebooks or sorted(p.name for p in (ROOT / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())
    path = ROOT / "solutions" / CELL_TIMES
    table = json.loads(path.read_text()) if path.exists() else {}
    mode = "fast" if is_fast() else "full"
    for name in names:
        start = time.perf_counter()
        table.setdefault(mode, {})[name] = measure(name)
        print(f"{name} ({mode} mode): {time.perf_counter() - start:.0f} s, longest cell "
              f"{max(table[mode][name].values()):.1f} s, threads {os.environ.get('OMP_NUM_THREADS', 'all')}")
        path.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
