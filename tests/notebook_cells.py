"""Read a solution notebook's cells, and run its test cells outside Jupyter on other code."""
from __future__ import annotations

import contextlib
import functools
import inspect
import textwrap
from pathlib import Path

import nbformat
from nbgrader import utils

from course_grading.verdict import Session, grader_namespace, loopback, run_cell
from course_lib.checks.source_rules import notebook_sources

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
    """Run test cell ``grade_id`` on ``functions`` as the autograder does; returns the kernel's namespace.

    The setup cell runs in a namespace that stands for the student's kernel, with ``functions`` put in
    it. The whole test cell (public check and hidden tests) then runs in a namespace of its own, as in
    the grader's process: the names it takes from the notebook are answered by that kernel namespace
    through the grader's plain-data format, and the source of ``functions`` is what the grader reads to
    decide what they call. Raises what the test cell raises (``AssertionError`` for a wrong
    implementation).
    """
    namespace: dict = {}
    exec(compile(cell_source(assignment, "setup"), f"<{assignment} setup>", "exec"), namespace)
    namespace.update(functions)
    locked = [c.source for c in read_solution(assignment).cells if c.cell_type == "code" and utils.is_locked(c)]
    notebook = notebook_sources([(source, True) for source in locked]) + sources(functions)
    run_cell(cell_source(assignment, grade_id), grader_namespace(locked), Session(loopback(namespace), notebook),
             f"<{assignment} {grade_id}>")
    return namespace


def sources(functions: dict) -> list[str]:
    """What the grader would read in a notebook defining ``functions``: their modules' source, and each
    bound under the name the notebook gives it."""
    found = []
    for name, value in functions.items():
        with contextlib.suppress(TypeError, OSError):
            found.append(inspect.getsource(inspect.getmodule(value)))
        with contextlib.suppress(TypeError, OSError):
            found.append(textwrap.dedent(inspect.getsource(value)))
        code = getattr(value, "__code__", None)
        defined = code.co_name if code is not None else getattr(value, "__name__", name)
        if defined != name:
            found.append(f"{name} = {defined}")
    return found


MAX_LINES, MAX_CHARACTERS = 4, 480   # a check's message is a few lines of plain text
MARKUP = ("**", "`", "<b>", "](")


def readable(message: str) -> str:
    """``message`` if it is as short and plain as a check's message must be; an AssertionError otherwise."""
    assert len(message) <= MAX_CHARACTERS and message.count("\n") < MAX_LINES, f"message too long:\n{message}"
    assert not any(mark in message for mark in MARKUP) and " *" not in message, f"raw markup in:\n{message}"
    return message


def rejected(assignment: str, grade_id: str, match: str, mistake: str | None = None, **functions) -> str:
    """Run test cell ``grade_id`` on ``functions``, which must fail with a message that matches ``match``
    (a regular expression), is :func:`readable`, and (when given) names the usual mistake ``mistake`` (the
    stable id that ``CheckFailed`` carries). Returns the message."""
    import re

    try:
        run_test_cell(assignment, grade_id, **functions)
    except AssertionError as err:
        message = str(err)
        assert re.search(match, message), f"expected a message matching {match!r}, got:\n{message}"
        if mistake is not None:
            assert getattr(err, "mistake", None) == mistake, (
                f"expected mistake {mistake!r}, got {getattr(err, 'mistake', None)!r}:\n{message}")
        return readable(message)
    raise AssertionError(f"{grade_id} accepted {sorted(functions)}; expected a failure matching {match!r}")
