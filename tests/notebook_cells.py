"""Read a solution notebook's cells, and run its test cells outside Jupyter on other code."""
from __future__ import annotations

import functools
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]


def assignments() -> list[str]:
    """Every assignment with a solution notebook, in course order."""
    return sorted(p.name for p in (ROOT / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())


@functools.lru_cache(maxsize=None)
def read_solution(assignment: str):
    return nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)


def cell_source(assignment: str, grade_id: str) -> str:
    """Source of the cell whose nbgrader ``grade_id`` is ``grade_id``."""
    for cell in read_solution(assignment).cells:
        if cell.metadata.get("nbgrader", {}).get("grade_id") == grade_id:
            return cell.source
    raise KeyError(f"{assignment} has no cell with grade_id {grade_id!r}")


def run_test_cell(assignment: str, grade_id: str, **functions) -> dict:
    """Run the setup cell, put ``functions`` in its namespace, then run test cell ``grade_id``.

    Raises what the test cell raises (``AssertionError`` for a wrong implementation).
    """
    namespace: dict = {}
    exec(compile(cell_source(assignment, "setup"), f"<{assignment} setup>", "exec"), namespace)
    namespace.update(functions)
    exec(compile(cell_source(assignment, grade_id), f"<{assignment} {grade_id}>", "exec"), namespace)
    return namespace
