"""``python -m course_grading validate``: nbgrader's Validator with a progress bar; the solution passes, the
release fails in every graded cell, and a release whose locked cell was edited is reported (fast mode, 02)."""
from __future__ import annotations

import json
import logging
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


def test_each_cell_gets_the_time_limit_autograde_gives_it(tmp_path):
    """A cell the solution's measured times know may take 3 times its time plus the floor; another cell the
    global limit. (The course's own floor is a minute; this course's is 1 s, its global limit 3 s.)"""
    from nbgrader.utils import compute_checksum

    (tmp_path / "nbgrader_config.py").write_text(
        "import os\nfrom course_grading.preprocessors import ValidatorTimeLimits\nc = get_config()\n"
        "c.ExecutePreprocessor.timeout = 3\n"
        "c.Execute.timeout_func = ValidatorTimeLimits(os.path.join(os.path.dirname(__file__), 'solutions'), "
        "default=3, floor=1)\n")
    folder = tmp_path / "solutions" / "99_timing"
    folder.mkdir(parents=True)
    (tmp_path / "solutions" / "cell_times.json").write_text('{"fast": {"99_timing": {"measured": 2.0}}}')
    cells = []
    for cell_id, seconds in (("measured", 4), ("unmeasured", 4)):
        cell = nbformat.v4.new_code_cell(f"# {cell_id}\nimport time\ntime.sleep({seconds})", id=cell_id)
        cell.metadata.nbgrader = {"grade": True, "grade_id": cell_id, "locked": True, "points": 1, "schema_version": 3,
                                  "solution": False, "task": False}
        cell.metadata.nbgrader["checksum"] = compute_checksum(cell)
        cells.append(cell)
    kernel = {"name": "python3", "display_name": "Python 3"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), folder / "99_timing.ipynb")
    done = validate("99_timing", course=tmp_path)
    assert done.returncode == 1 and done.stdout.splitlines() == [
        "99_timing: 1 problem(s)", "  failed: # unmeasured -> CellTimeoutError: No reply from kernel before timeout"
    ], done.stdout


def test_the_course_gives_its_limits_to_the_validator_only(monkeypatch, caplog):
    from nbgrader.preprocessors import Execute
    from nbgrader.server_extensions.validate_assignment.handlers import ValidateAssignmentHandler

    from course_grading.preprocessors import GuardedExecute, ValidatorTimeLimits

    monkeypatch.chdir(ROOT)   # the Validate button's server loads nbgrader_config.py from its working folder
    config = ValidateAssignmentHandler.load_config(None)
    limits = Execute(config=config).timeout_func
    assert isinstance(limits, ValidatorTimeLimits)
    with caplog.at_level(logging.WARNING):
        assert GuardedExecute(config=config).timeout_func is None   # autograde's limits are the cells' metadata
    assert "not recognized" not in caplog.text                    # and autograde's log has no warning about it
    monkeypatch.delenv("COURSE_FAST", raising=False)
    monkeypatch.chdir(ROOT / "solutions" / "07_modern_cnn")
    seconds = json.loads((ROOT / "solutions" / "cell_times.json").read_text())["full"]["07_modern_cnn"]["my-training"]
    assert limits(nbformat.v4.new_code_cell("", id="my-training")) == int(60 + 3 * seconds) > 1800
    assert limits(nbformat.v4.new_code_cell("", id="a-cell-of-mine")) == 1800
    monkeypatch.chdir(ROOT / "solutions")
    assert limits(nbformat.v4.new_code_cell("", id="my-training")) == 1800
