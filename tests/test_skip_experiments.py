"""Grading skips the experiments no grade depends on, and nothing else.

A solution's code cell tagged ``skip-when-grading`` is an experiment (or the summary recording it) whose
results no graded cell reads. ``SkipExperiments`` marks a submission's cell for skipping only when its
text is exactly that of a tagged cell: a cell the student changed, a graded cell and an answer cell run.
The real round trip in ``test_autograder.py`` checks, for every notebook, that the solution still gets
full marks and that no cell it runs fails without the skipped ones.
"""
from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from course_grading.preprocessors import NOT_RERUN, SKIP_TAG, SkipExperiments
from notebook_cells import ROOT, assignments

EXPERIMENT = "results = [train(seed) for seed in range(3)]"
SUMMARY = "run.finish({'results': results})"


def nbgrader_cell(source: str, grade_id: str, **flags):
    meta = {"grade": False, "solution": False, "locked": False, "schema_version": 3, "grade_id": grade_id}
    meta.update(flags)
    return new_code_cell(source, metadata={"nbgrader": meta})


def skipped(tmp_path, submission, enabled=True) -> list:
    """The sources of ``submission`` that SkipExperiments marks, with a solution that tags EXPERIMENT and SUMMARY."""
    solution = new_notebook(cells=[
        new_code_cell("import numpy as np"),
        new_code_cell(EXPERIMENT, metadata={"tags": [SKIP_TAG]}),
        new_code_cell(SUMMARY, metadata={"tags": ["parameters", SKIP_TAG]}),
    ])
    folder = tmp_path / "solutions" / "01_x"
    folder.mkdir(parents=True)
    nbformat.write(solution, folder / "01_x.ipynb")
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    config.CourseDirectory.source_directory = "solutions"
    config.SkipExperiments.enabled = enabled
    resources = {"nbgrader": {"assignment": "01_x", "notebook": "01_x"}}
    nb, _ = SkipExperiments(config=config).preprocess(submission, resources)
    return [cell.source for cell in nb.cells if cell.metadata.get(NOT_RERUN)]


def test_an_untouched_experiment_and_summary_are_skipped(tmp_path):
    submission = new_notebook(cells=[new_code_cell("import numpy as np"), new_code_cell(EXPERIMENT + "\n"),
                                     new_code_cell(SUMMARY)])
    assert skipped(tmp_path, submission) == [EXPERIMENT + "\n", SUMMARY]


def test_a_changed_experiment_runs(tmp_path):
    submission = new_notebook(cells=[new_code_cell(EXPERIMENT.replace("3", "30")), new_code_cell(SUMMARY)])
    assert skipped(tmp_path, submission) == [SUMMARY]


def test_graded_and_answer_cells_always_run(tmp_path):
    """Even with a tagged cell's text: what is graded, or the student's answer, is never skipped."""
    submission = new_notebook(cells=[nbgrader_cell(EXPERIMENT, "answer", solution=True),
                                     nbgrader_cell(SUMMARY, "test", grade=True, locked=True, points=1)])
    assert skipped(tmp_path, submission) == []


def test_nothing_is_skipped_when_disabled_or_without_the_solution(tmp_path):
    submission = new_notebook(cells=[new_code_cell(EXPERIMENT)])
    assert skipped(tmp_path, submission, enabled=False) == []
    config = Config()
    config.CourseDirectory.root = str(tmp_path / "elsewhere")
    nb, _ = SkipExperiments(config=config).preprocess(submission, {"nbgrader": {"assignment": "a", "notebook": "a"}})
    assert not any(cell.metadata.get(NOT_RERUN) for cell in nb.cells)


@pytest.mark.parametrize("assignment", assignments())
def test_only_ungraded_cells_are_tagged(assignment):
    """A tag on a graded or answer cell would be ignored by the grader: it is a mistake in the solution."""
    notebook = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    wrong = [cell.metadata["nbgrader"].get("grade_id") for cell in notebook.cells
             if SKIP_TAG in cell.metadata.get("tags", []) and
             (cell.metadata.get("nbgrader", {}).get("grade") or cell.metadata.get("nbgrader", {}).get("solution"))]
    assert not wrong, f"{assignment}: graded or answer cells tagged {SKIP_TAG!r}: {wrong}"
