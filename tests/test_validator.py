"""Every solution notebook passes nbgrader's own Validator, the *Validate* button a student clicks.

It runs the notebook in a fresh kernel and fails a graded cell on any error or any output to stderr
(a library's warning included). Fast mode; the notebooks alternate between one and two threads, so
that both settings of a grading machine are tried in every run.
"""
from __future__ import annotations

import os

import pytest

from notebook_cells import ROOT, assignments

pytestmark = pytest.mark.notebook


@pytest.mark.parametrize("name", assignments())
def test_solution_passes_nbgraders_validator(name, monkeypatch):
    from nbgrader.validator import Validator

    from course_grading.course import course_config

    threads = "1" if assignments().index(name) % 2 == 0 else "2"
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, threads)
    if name == "06_transfer":  # its backbone is notebook 03's model, trained once if missing
        from course_lib.transfer import backbone_path, train_backbone
        if not backbone_path().exists():
            train_backbone()
    monkeypatch.chdir(ROOT / "solutions" / name)
    # the course's configuration, as the Validate button loads it: each cell's time limit from the solution's
    # measured time (nbgrader's own default of 30 s stops a training cell)
    result = Validator(config=course_config(ROOT)).validate(str(ROOT / "solutions" / name / f"{name}.ipynb"))
    failed = [f"{cell['source'].splitlines()[0]}: {cell['error'][:500]}" for cell in result.get("failed", [])]
    assert not failed, f"{name} with {threads} thread(s): nbgrader's Validator fails\n" + "\n".join(failed)
    assert os.environ["OMP_NUM_THREADS"] == threads
