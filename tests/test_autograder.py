"""Autograder self-check: a real nbgrader round trip for every assignment.

In a temporary course: ``generate_assignment`` must reproduce the committed release; the
solution, submitted by student ``solution``, must score full marks on every autograded cell;
the untouched release, submitted by ``untouched``, must score zero on every graded cell; then
manual grading, feedback and the CSV export must work as an instructor uses them.
"""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook

from course_grading.preprocessors import SKIP_TAG, SKIPPED_NOTE
from notebook_cells import ROOT, assignments

pytestmark = pytest.mark.notebook
NBGRADER = str(Path(sys.executable).with_name("nbgrader"))
STUDENTS = {"solution": "solutions", "untouched": "notebooks"}
# What an instructor prepares before grading (README, "Grading a whole class"): notebook 06's hidden
# test reads notebook 03's saved model from the cache, which the sandbox only lets it read.
PREPARE = {"06_transfer": "from course_lib.transfer import backbone_path, train_backbone\n"
                          "if not backbone_path().exists():\n    train_backbone()"}


def nbgrader(root: Path, *args: str, check: bool = True) -> str:
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_DB_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(NBGRADER).parent), env["PATH"]])  # nbgrader runs alembic
    done = subprocess.run([NBGRADER, *args], cwd=root, env=env, capture_output=True, text=True)
    assert done.returncode == 0 or not check, f"nbgrader {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


@pytest.fixture(scope="module", params=assignments())
def course(request, tmp_path_factory):
    """A temporary course in which one assignment went through generate → submit → autograde."""
    name = request.param
    root = tmp_path_factory.mktemp(f"course-{name}")
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / name, root / "solutions" / name)
    nbgrader(root, "generate_assignment", name, "--force")
    for student, folder in STUDENTS.items():
        source = (root if folder == "notebooks" else ROOT) / folder / name
        shutil.copytree(source, root / "submitted" / student / name)
    if name in PREPARE:
        subprocess.run([sys.executable, "-c", PREPARE[name]], check=True, capture_output=True)
    log = nbgrader(root, "autograde", name, "--force", "--create")
    return name, root, log


def grades(root: Path, name: str, student: str) -> dict:
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(name, name, student)
        return {g.name: (g.cell.cell_type, g.score, g.max_score, g.needs_manual_grade) for g in notebook.grades}


def comparable(notebook_path: Path) -> list:
    notebook = nbformat.read(notebook_path, as_version=4)
    return [(c.cell_type, c.source, c.metadata.get("nbgrader")) for c in notebook.cells]


def test_release_is_in_sync(course):
    name, root, _ = course
    committed = ROOT / "notebooks" / name
    generated = root / "notebooks" / name
    files = lambda folder: sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert files(committed) == files(generated), "release folder differs: run `make release`"
    assert comparable(committed / f"{name}.ipynb") == comparable(generated / f"{name}.ipynb"), \
        f"notebooks/{name} is out of date: run `make release` and commit it"


def test_release_has_no_solutions_or_hidden_tests(course):
    name, root, _ = course
    text = (ROOT / "notebooks" / name / f"{name}.ipynb").read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS"):
        assert marker not in text


def test_solution_scores_full_marks(course):
    name, root, _ = course
    result = grades(root, name, "solution")
    autograded = {k: v for k, v in result.items() if v[0] == "code"}
    assert autograded, f"{name} has no autograded cells"
    failed = {k: f"{score}/{points}" for k, (_, score, points, _) in autograded.items() if score != points}
    assert not failed, f"the solution loses points on {failed}"
    written = {k for k, v in result.items() if v[0] == "markdown"}
    assert len(written) >= 2, f"{name} needs at least two written questions, has {sorted(written)}"
    assert all(result[k][3] for k in written), "written answers of the solution must await manual grading"


def skipped_and_tagged(root: Path, name: str, student: str) -> tuple[list, list]:
    """The sources of the cells grading left unrun in ``student``'s graded notebook, and of the cells the solution tags."""
    graded = nbformat.read(root / "autograded" / student / name / f"{name}.ipynb", as_version=4)
    solution = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
    tagged = [cell.source for cell in solution.cells
              if cell.cell_type == "code" and SKIP_TAG in cell.metadata.get("tags", [])]
    skipped = [cell.source for cell in graded.cells
               if cell.cell_type == "code" and [o.get("text") for o in cell.outputs] == [SKIPPED_NOTE]]
    return skipped, tagged


def test_solution_runs_without_errors_and_without_its_experiments(course):
    """Grading leaves unrun every cell the solution tags skip-when-grading, and nothing the others need."""
    name, root, _ = course
    graded = nbformat.read(root / "autograded" / "solution" / name / f"{name}.ipynb", as_version=4)
    failed = [f"cell {i}: {o.ename}: {o.evalue}" for i, cell in enumerate(graded.cells) if cell.cell_type == "code"
              for o in cell.outputs if o.output_type == "error"]
    assert not failed, f"cells of the graded solution fail:\n" + "\n".join(failed)
    skipped, tagged = skipped_and_tagged(root, name, "solution")
    assert skipped == tagged, "a tagged cell ran: a cell that runs reads a name it defines"


def test_untouched_release_skips_the_same_cells(course):
    name, root, _ = course
    skipped, tagged = skipped_and_tagged(root, name, "untouched")
    assert skipped == tagged


def test_untouched_release_scores_zero(course):
    name, root, _ = course
    result = grades(root, name, "untouched")
    scored = {k: score for k, (_, score, _, _) in result.items() if score}
    assert not scored, f"the untouched release earns points on {scored}: these tests cannot fail"


def test_manual_grading_feedback_and_export(course):
    name, root, _ = course
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        notebook = gradebook.find_submission_notebook(name, name, "solution")
        for grade in notebook.grades:
            if grade.needs_manual_grade:
                grade.manual_score = grade.max_score  # what an instructor does in formgrader
        gradebook.db.commit()
        max_score = gradebook.find_assignment(name).max_score
    nbgrader(root, "generate_feedback", name, "--force")
    for student in STUDENTS:
        assert (root / "feedback" / student / name / f"{name}.html").is_file()
    nbgrader(root, "export", "--to", str(root / "grades.csv"))
    with open(root / "grades.csv") as handle:
        scores = {row["student_id"]: float(row["score"]) for row in csv.DictReader(handle) if row["assignment"] == name}
    assert scores == {"solution": max_score, "untouched": 0.0}
