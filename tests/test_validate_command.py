"""``python -m course_grading validate``: nbgrader's Validator with a progress bar; the solution passes, the
release fails in every graded cell, and a release whose locked cell was edited is reported (fast mode, 02)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from notebook_cells import ROOT

pytestmark = pytest.mark.notebook
NAME = "02_convolution"


def validate(*args: str, course=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "COURSE_FAST": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "course_grading", "validate", *args, "--course", str(course)],
                          cwd=ROOT, env=env, capture_output=True, text=True)


def test_the_solution_passes_with_progress_shown():
    done = validate(NAME)
    assert done.returncode == 0 and done.stdout.strip() == f"{NAME}: passes", done.stdout + done.stderr[-2000:]
    bar = done.stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith(f"validating {NAME}: 100%") for line in bar), done.stderr[-500:]
    assert "Kernel is running" not in done.stderr and "WARNING" not in done.stderr, done.stderr[-2000:]


def test_the_release_fails_in_every_graded_cell():
    done = validate(NAME, "--release")
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]
    assert done.stdout.strip() == f"{NAME}: every graded cell fails before the student's work, as it should"


def test_a_release_with_an_edited_locked_cell_is_reported(tmp_path):
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    shutil.copytree(ROOT / "notebooks" / NAME, tmp_path / "notebooks" / NAME)
    path = tmp_path / "notebooks" / NAME / f"{NAME}.ipynb"
    nb = nbformat.read(path, as_version=4)
    test = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "test_conv_output_size")
    test.source = "pass"
    nbformat.write(nb, path)
    done = validate(NAME, "--release", course=tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert done.stdout.splitlines() == [f"{NAME}: 1 problem(s)", "  changed: pass"], done.stdout


def test_unknown_assignment_is_refused():
    done = validate("99_nothing")
    assert done.returncode == 2 and "no 99_nothing in" in done.stderr, done.stderr
