"""``python -m course_grading validate``: nbgrader's Validator with a progress bar, the solution passing and the
release failing where the student has work to do (fast mode, notebook 02)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from notebook_cells import ROOT

pytestmark = pytest.mark.notebook
NAME = "02_convolution"


def validate(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COURSE_FAST": "1", "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "course_grading", "validate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True)


def test_the_solution_passes_with_progress_shown():
    done = validate(NAME)
    assert done.returncode == 0 and done.stdout.strip() == f"{NAME}: passes", done.stdout + done.stderr[-2000:]
    bar = done.stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith(f"validating {NAME}: 100%") for line in bar), done.stderr[-500:]


def test_the_release_fails_where_work_is_left():
    done = validate(NAME, "--release")
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"{NAME}: ") and lines[0].endswith("problem(s)"), done.stdout
    assert any(line.startswith("  failed: checks.check_conv_output_size") for line in lines), done.stdout
    assert "conv_output_size is not implemented yet" in done.stdout, done.stdout
    assert "Kernel is running" not in done.stderr and "WARNING" not in done.stderr, done.stderr[-2000:]


def test_unknown_assignment_is_refused():
    done = validate("99_nothing")
    assert done.returncode == 2 and "no 99_nothing in" in done.stderr, done.stderr
