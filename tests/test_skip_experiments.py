"""Grading skips the experiments no grade depends on, and nothing else.

A solution's code cell tagged ``skip-when-grading`` is an experiment (or the summary recording it) whose
results no graded cell reads. ``SkipExperiments`` marks a submission's cell for skipping only when its
text is exactly that of a tagged cell and no cell that runs reads a name it defines
(``course_grading.skips``): a cell the student changed, a graded cell and an answer cell run, and so
does an experiment whose result an answer reuses. The real round trip in ``test_autograder.py`` checks,
for every notebook, that the solution and the untouched release skip every tagged cell and that no cell
the solution runs fails without them.
"""
from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook
from traitlets.config import Config

from course_grading.preprocessors import SKIP_TAG, SKIPPED, SkipExperiments
from course_grading.skips import cell_names, cells_to_run
from notebook_cells import ROOT, assignments

EXPERIMENT = "results = [train(seed) for seed in range(3)]"
SUMMARY = "run.finish({'best': max(results)})"


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
    return [cell.source for cell in nb.cells if cell.metadata.get(SKIPPED)]


def test_an_untouched_experiment_and_summary_are_skipped(tmp_path):
    submission = new_notebook(cells=[new_code_cell("import numpy as np"), new_code_cell(EXPERIMENT + "\n"),
                                     new_code_cell(SUMMARY)])
    assert skipped(tmp_path, submission) == [EXPERIMENT + "\n", SUMMARY]


def test_a_changed_experiment_runs(tmp_path):
    """The untouched summary after it stays skipped: it reads the experiment's names, but nothing reads its own."""
    submission = new_notebook(cells=[new_code_cell(EXPERIMENT.replace("3", "30")), new_code_cell(SUMMARY)])
    assert skipped(tmp_path, submission) == [SUMMARY]


def test_an_answer_that_reuses_an_experiment_makes_it_run(tmp_path):
    submission = new_notebook(cells=[new_code_cell(EXPERIMENT), new_code_cell(SUMMARY),
                                     nbgrader_cell("choice = max(results)", "choice", solution=True)])
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
    assert not any(cell.metadata.get(SKIPPED) for cell in nb.cells)


@pytest.mark.parametrize("assignment", assignments())
def test_only_ungraded_cells_are_tagged(assignment):
    """A tag on a graded or answer cell would be ignored by the grader: it is a mistake in the solution."""
    notebook = nbformat.read(ROOT / "solutions" / assignment / f"{assignment}.ipynb", as_version=4)
    wrong = [cell.metadata["nbgrader"].get("grade_id") for cell in notebook.cells
             if SKIP_TAG in cell.metadata.get("tags", []) and
             (cell.metadata.get("nbgrader", {}).get("grade") or cell.metadata.get("nbgrader", {}).get("solution"))]
    assert not wrong, f"{assignment}: graded or answer cells tagged {SKIP_TAG!r}: {wrong}"


def runs(*cells: str, tagged: str = "") -> str:
    """Which of ``cells`` run: a string of 'r' (runs) and '-' (skipped); ``tagged`` marks the tagged ones with 't'."""
    flags = cells_to_run(list(cells), [mark == "t" for mark in tagged.ljust(len(cells), ".")])
    return "".join("r" if flag else "-" for flag in flags)


def test_a_name_read_later_is_served_by_the_last_cell_that_binds_it():
    assert runs("best = 1", "best = 2", "print(best)", tagged=".t.") == "rrr"
    assert runs("best = 2", "best = 1", "print(best)", tagged="t..") == "-rr"
    assert runs("x = 1", "print(x)", tagged="t.") == "rr"


def test_a_cell_that_binds_a_name_before_reading_it_needs_nothing():
    assert runs("model = 1; fig = 2", "model = 3\nprint(model)", "for fig in [1]:\n    print(fig)",
                "print([model for model in range(3)])", tagged="t...") == "-rrr"


def test_a_function_reads_its_globals_when_it_is_called():
    """A helper defined above a tagged cell reads the name that cell rebinds when it is called below."""
    assert runs("lr = 0.1\ndef step():\n    return lr", "lr = 0.5", "step()", tagged=".t.") == "rrr"
    assert runs("def step():\n    rate = 1\n    return rate", "rate = 0.5", "step()", tagged=".t.") == "r-r"
    assert runs("def outer():\n    rates = []\n    return lambda: rates", "rates = 1", "outer()",
                tagged=".t.") == "r-r"


def test_imports_classes_and_magics_are_names_too():
    assert runs("from course_lib.models import DeepCNN", "model = DeepCNN()", tagged="t.") == "rr"
    assert runs("class Net:\n    width = 3", "Net()", tagged="t.") == "rr"
    assert runs("class Net:\n    width = 3", "print(width)", tagged="t.") == "-r"
    assert runs("%matplotlib inline\nresults = 1", "!ls\nprint(results)", tagged="t.") == "rr"


@pytest.mark.parametrize("dynamic", ["globals()['results']", "eval('results')", "exec('print(results)')",
                                     "vars()['results']", "get_ipython().user_ns['results']",
                                     "from builtins import *"])
def test_dynamic_access_runs_every_cell(dynamic):
    assert runs("results = 1", dynamic, tagged="t.") == "rr"


def test_a_cell_that_does_not_parse_reads_nothing():
    assert runs("results = 1", "print(results", tagged="t.") == "-r"
    assert cell_names("def broken(:\n").defines == set()
