"""A catalogue of hostile and broken submissions, each autograded for real by ``nbgrader autograde``.

One temporary course for notebook 01 (fast mode), one class of students, one autograde run with the
course's configuration (``nbgrader_config.py``: restored cells, sandboxed kernel, verdicts decided in
the grader). Each case states the autograded score it must get: a trick played on the kernel neither
earns a point nor costs an honest one, so each is played in a submission whose honest answers earn
exactly 8 points; what the grader restores or refuses is named in the student's integrity note.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_output
from nbgrader.api import Gradebook, MissingEntry

from course_grading.preprocessors import CELL_TIMES, SKIP_TAG, SKIPPED
from notebook_cells import ROOT
from test_autograder import nbgrader

pytestmark = pytest.mark.notebook
NAME = "01_numpy_mlp"
FULL = 20  # autograded points of notebook 01
BEFORE_MLP_FORWARD = 8  # one_hot, relu, relu_backward, sigmoid (1 each), softmax, cross_entropy (2 each)

HOOKS = {
    "custom_exception_handler": "ip = get_ipython()\n"
                                "ip.set_custom_exc((BaseException,), lambda *args, **kwargs: None)\n"
                                "ip.events.register('post_run_cell', lambda result: setattr(result, 'error_in_exec', None))",
    "showtraceback_disabled": "ip = get_ipython()\nip.showtraceback = lambda *args, **kwargs: None\n"
                              "ip.events.register('post_run_cell', lambda result: setattr(result, 'error_in_exec', None))",
    "sys_excepthook": "import sys\nsys.excepthook = lambda *args: None",
    "assertion_error_patched": "import builtins\nbuiltins.AssertionError = type('AssertionError', (Warning,), {})",
    "builtins_patched": "import builtins\nbuiltins.abs = lambda x: 0.0",
    "checks_no_ops": "for _name in dir(checks):\n    if _name.startswith('check_'):\n"
                     "        setattr(checks, _name, lambda *args, **kwargs: None)",
    "checks_rebound": "class _Anything:\n    def __getattr__(self, name):\n        return lambda *a, **k: None\n"
                      "checks = _Anything()",
    "sys_modules_swapped": "import sys, types\nfake = types.ModuleType('numpy')\nfake.__dict__.update(np.__dict__)\n"
                           "fake.allclose = lambda *a, **k: True\nsys.modules['numpy'] = fake",
    "ast_transformer": "import ast\nclass _Swallow(ast.NodeTransformer):\n"
                       "    def visit_Module(self, node):\n"
                       "        handler = ast.ExceptHandler(type=ast.Name('BaseException', ast.Load()), name=None, body=[ast.Pass()])\n"
                       "        return ast.fix_missing_locations(ast.Module([ast.Try(node.body, [handler], [], [])], []))\n"
                       "get_ipython().ast_transformers.append(_Swallow())",
    "input_transformer": "get_ipython().input_transformers_cleanup.append("
                         "lambda lines: [] if any('check' in line for line in lines) else lines)",
    "reads_instructor_files": "import glob, json, os, pathlib, course_lib\n"
                              "roots = ['../../..', str(pathlib.Path(course_lib.__file__).parents[1])]\n"
                              "found = [p for r in roots for p in glob.glob(r + '/**/solutions/**/*.ipynb', recursive=True)]\n"
                              "for path in found:\n"
                              "    for cell in json.load(open(path))['cells']:\n"
                              "        if cell['cell_type'] == 'code' and 'BEGIN SOLUTION' in ''.join(cell['source']):\n"
                              "            exec(''.join(cell['source']))\n"
                              "for db in glob.glob('../../../gradebook.db') + glob.glob('../../../submitted/*/*/*.ipynb'):\n"
                              "    open(db, 'w').write('')\n"
                              "print(len(found), 'solution notebooks found')",
}


def release() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / NAME / f"{NAME}.ipynb", as_version=4)


def solution() -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "solutions" / NAME / f"{NAME}.ipynb", as_version=4)


def index_of(nb, grade_id: str) -> int:
    return [c.metadata.get("nbgrader", {}).get("grade_id") for c in nb.cells].index(grade_id)


def with_cell(nb, source: str, before: str = "one_hot"):
    nb.cells.insert(index_of(nb, before), new_code_cell(source))
    return nb


def edited(nb, cell: str, **changes):
    meta = nb.cells[index_of(nb, cell)].metadata.nbgrader
    meta.update(changes)
    return nb


def deleted(nb, grade_id: str):
    del nb.cells[index_of(nb, grade_id)]
    return nb


def locked_cell_emptied(nb):
    nb.cells[index_of(nb, "test_relu")].source = "pass"
    return nb


def fake_outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code" and cell.metadata.get("nbgrader", {}).get("grade"):
            cell.outputs = [new_output("stream", name="stdout", text="✓ passed\n")]
            cell.execution_count = 1
    return nb


def warns(nb):
    cell = nb.cells[index_of(nb, "relu")]
    cell.source = cell.source.replace("### BEGIN SOLUTION", "### BEGIN SOLUTION\n    import warnings\n"
                                      "    warnings.warn('relu: a correct answer that warns')")
    return nb


def without_ids(nb):
    nb.nbformat_minor = 4
    for cell in nb.cells:
        cell.pop("id", None)
    return nb


def honest_until(grade_id: str = "mlp_forward"):
    """The solution's answers before ``grade_id``, the release's stubs from there on: a submission whose
    honest work earns exactly ``BEFORE_MLP_FORWARD`` points."""
    nb, stubs = solution(), release()
    stub_of = {c.metadata.get("nbgrader", {}).get("grade_id"): c.source for c in stubs.cells}
    for cell in nb.cells[index_of(nb, grade_id):]:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution"):
            cell.source = stub_of[meta["grade_id"]]
    return nb


def tagged(nb, tag: str):
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata.setdefault("tags", []).append(tag)
    return nb


def skips_planted(nb):
    """Every graded cell tagged for skipping and marked skipped, as the grader marks the cells it leaves unrun."""
    for cell in tagged(nb, SKIP_TAG).cells:
        if cell.metadata.get("nbgrader", {}).get("grade"):
            cell.metadata[SKIPPED] = True
    return nb


def with_function(nb, grade_id: str, source: str):
    """``nb`` with the answer cell ``grade_id`` replaced by ``source``."""
    nb.cells[index_of(nb, grade_id)].source = source
    return nb


def padded(nb, cells: int):
    nb.cells += [new_code_cell("") for _ in range(cells)]
    return nb


# Kernel changes that once fooled tests run in the kernel; a verdict decided in the grader ignores them.
TRICKS = {
    # nbgrader reads a test cell's first displayed number as partial credit, even when an error follows
    "displays_a_number_first": "ip = get_ipython()\nip.events.register('pre_run_cell', lambda info: ip.displayhook(1.0))",
    # the code of the checks and of NumPy's Python functions swapped, not the functions replaced
    "code_swapped": "for _name in dir(checks):\n"
                    "    if _name.startswith('check_'):\n"
                    "        getattr(checks, _name).__code__ = (lambda *args, **kwargs: None).__code__\n"
                    "np.allclose.__code__ = (lambda *args, **kwargs: True).__code__\n"
                    "np.testing.assert_allclose.__code__ = (lambda *args, **kwargs: None).__code__",
    # a patch made when a test cell starts and undone after it
    "patched_during_test_cells": "import numpy, torch\nip = get_ipython()\nsaved = (numpy.allclose, torch.allclose)\n"
                                 "def _patch(info):\n"
                                 "    numpy.allclose = torch.allclose = lambda *a, **k: True\n"
                                 "def _undo(result):\n    numpy.allclose, torch.allclose = saved\n"
                                 "ip.events.register('pre_run_cell', _patch)\nip.events.register('post_run_cell', _undo)",
    # everything at once: NumPy, torch, course_lib's checks and errors
    "patches_everything": "import numpy, torch, course_lib.checks, course_lib.errors\n"
                          "numpy.allclose = numpy.array_equal = torch.allclose = lambda *a, **k: True\n"
                          "numpy.testing.assert_allclose = lambda *a, **k: None\n"
                          "torch.softmax = lambda x, dim=None: x\n"
                          "course_lib.checks.numpy_only = lambda fn: fn\n"
                          "course_lib.checks.expect_close = lambda *a, **k: None\n"
                          "for _name in dir(checks):\n    if _name.startswith('check_'):\n"
                          "        setattr(checks, _name, lambda *a, **k: None)",
}
# Objects that lie to comparisons, returned by every function from mlp_forward on: NumPy and torch in the
# kernel would take them for the right answer.
LIARS = ("class Liar(np.ndarray):\n"
         "    def __eq__(self, other): return np.ones(np.shape(other), bool)\n"
         "    def __array_function__(self, *args, **kwargs): return True\n"
         "    def __array_ufunc__(self, *args, **kwargs): return True\n"
         "class Pretender(float):\n"
         "    def __eq__(self, other): return True\n"
         "    def __array__(self, *args, **kwargs): return np.zeros(())\n"
         "    def __float__(self): return 0.1\n"
         "class Anything(dict):\n"
         "    def __getitem__(self, key): return np.zeros((1, 1)).view(Liar)\n"
         "    def __eq__(self, other): return True")


def lying(nb):
    """``honest_until()`` whose stubs return objects that lie (``LIARS``) instead of raising."""
    nb = with_cell(nb, LIARS)
    for cell in nb.cells[index_of(nb, "mlp_forward"):]:
        meta = cell.metadata.get("nbgrader", {})
        if meta.get("solution") and cell.cell_type == "code":
            name = meta["grade_id"]
            result = {"step_lr": "Pretender(0.1)", "iterations_per_epoch": "Pretender(3)",
                      "mlp_forward": "np.zeros((2, 2)).view(Liar), Anything()",
                      "l2_regularization": "Pretender(0.5), Anything()"}.get(name, "Anything()")
            cell.source = f"def {name}(*args, **kwargs):\n    return {result}"
    return nb


# A correct sigmoid through torch, with the run-time NumPy-only watch turned off for the call.
SIGMOID_THROUGH_TORCH = ("def sigmoid(z):\n    import sys, torch\n    sys.setprofile(None)\n"
                         "    return torch.sigmoid(torch.as_tensor(z)).numpy()")
# Links planted for the grader to write through: the kernel's own notebook and report point at a classmate's
PLANT_LINKS = ("import os\nvictim = '../../../submitted/victim/01_numpy_mlp/01_numpy_mlp.ipynb'\n"
               "for name in ('01_numpy_mlp.ipynb', '01_numpy_mlp.integrity.json'):\n"
               "    if os.path.lexists(name):\n        os.remove(name)\n    os.symlink(victim, name)")
SECRET = "grader-secret-7f3a9c"
PRINT_ENVIRONMENT = "import os\nprint(dict(os.environ))"

# student -> (submission, autograded score it must get, words its integrity note must contain or None)
CASES = {
    "correct": (solution, FULL, None),
    "correct_nbformat3": (lambda: nbformat.convert(solution(), 3), FULL, None),
    "correct_without_cell_ids": (lambda: without_ids(solution()), FULL, None),
    "correct_that_warns": (lambda: warns(solution()), FULL, None),
    # a cell whose last line shows a callable (a model, a function): IPython keeps it as displayhook._
    "correct_that_displays_a_function": (lambda: with_cell(solution(), "def shown(x):\n    return x\n\nshown"),
                                         FULL, None),
    "victim": (solution, FULL, None),
    "untouched": (release, 0, None),
    # each trick in a submission whose honest answers earn 8 points: it gets those 8, no more, no fewer
    **{name: (lambda source=source: with_cell(honest_until(), source), BEFORE_MLP_FORWARD, None)
       for name, source in {**HOOKS, **TRICKS}.items() if name != "reads_instructor_files"},
    "answers_that_lie": (lambda: lying(honest_until()), BEFORE_MLP_FORWARD, None),
    "reads_instructor_files": (lambda: with_cell(release(), HOOKS["reads_instructor_files"]), 0, None),
    "numpy_patched_after_honest_cells": (
        lambda: with_cell(solution(), "np.allclose = lambda *args, **kwargs: True", before="mlp_forward"), FULL, None),
    "torch_reference_patched": (lambda: with_cell(release(), "import torch\ntorch.relu = lambda z: z * 0"), 0, None),
    "sigmoid_through_torch": (lambda: with_function(solution(), "sigmoid", SIGMOID_THROUGH_TORCH), FULL - 1, None),
    "skip_execution_tags": (lambda: tagged(release(), "skip-execution"), 0, None),
    "skip_marks_planted": (lambda: skips_planted(release()), 0, None),
    "plants_links": (lambda: with_cell(release(), PLANT_LINKS), 0, "a link the kernel left in its folder was removed"),
    "prints_environment": (lambda: with_cell(solution(), PRINT_ENVIRONMENT), FULL, None),
    "twenty_thousand_cells": (lambda: padded(release(), 20_000), 0, "more than the 1000 the grader runs"),
    "symlink_to_solution": ("symlink", 0, "links are not graded"),
    # the cell that defines relu then loops forever: it is stopped at the limit measured for it (a minute, plus
    # three times the solution's time), not at the 300 s a cell the table does not know may take, and the
    # notebook goes on
    "loops_forever": (lambda: with_function(solution(), "relu", solution().cells[index_of(solution(), "relu")].source
                                            + "\nwhile True:\n    pass"), FULL, None),
    # a cell left from trying another mode (the header's `%env COURSE_FAST=1`): the grader sets its own
    # mode back, so the notebook is graded in that mode and loses nothing
    "correct_mode_switched": (lambda: with_cell(solution(), "%env COURSE_FAST=0", before="setup"), FULL,
                              "set COURSE_FAST to '0'"),
    "typed_test_accuracy": (lambda: with_cell(release(), "test_accuracy = 0.99", before="test_accuracy"), 0, None),
    "locked_cell_edited": (lambda: locked_cell_emptied(release()), 0, "locked cell 'test_relu' had been edited"),
    "correct_locked_cell_edited": (lambda: locked_cell_emptied(solution()), FULL, "locked cell 'test_relu'"),
    "correct_points_raised": (lambda: edited(solution(), "test_relu", points=100), FULL, "points (100"),
    "correct_grade_id_renamed": (lambda: edited(solution(), "test_relu", grade_id="test_relu_mine"), FULL,
                                 "'test_relu_mine'"),
    "correct_test_cell_deleted": (lambda: deleted(solution(), "test_relu"), FULL, "'test_relu' was deleted"),
    "test_cell_deleted": (lambda: deleted(release(), "test_relu"), 0, "'test_relu' was deleted"),
    "outputs_faked": (lambda: fake_outputs(release()), 0, None),
    # nbgrader itself fails on it (its log names the student): no report, no points
    "other_assignment": (lambda: nbformat.read(ROOT / "notebooks" / "02_convolution" / "02_convolution.ipynb", 4),
                         0, None),
    "invalid_json": ("{ this is not a notebook", 0, None),
}
# what the review list of the integrity note must name for a trick (costs no points by itself)
REVIEWED = {"custom_exception_handler": "uses the IPython shell object", "sys_excepthook": "changes the interpreter's hooks",
            "assertion_error_patched": "touches the built-in functions", "ast_transformer": "changes how IPython runs cells",
            "sys_modules_swapped": "changes the interpreter's hooks or modules",
            "displays_a_number_first": "uses the IPython shell object"}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """Every case submitted by its own student and autograded in one run."""
    from conftest import real_data_dir
    from course_lib.data import cifar10_splits

    real_data_dir()
    cifar10_splits("official")  # decoded into the cache now: the sandbox sees the cache read-only
    root = tmp_path_factory.mktemp("hostile-course")
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / NAME, root / "solutions" / NAME)
    shutil.copy(ROOT / "solutions" / CELL_TIMES, root / "solutions")
    nbgrader(root, "generate_assignment", NAME, "--force")
    for student, (make, _, _) in CASES.items():
        folder = root / "submitted" / student / NAME
        folder.mkdir(parents=True)
        path = folder / f"{NAME}.ipynb"
        if make == "symlink":
            path.symlink_to(root / "solutions" / NAME / f"{NAME}.ipynb")
        elif isinstance(make, str):
            path.write_text(make)
        else:
            nb = make()
            nbformat.write(nb, path, version=nb.nbformat)
    shutil.copy(root / "submitted" / "victim" / NAME / f"{NAME}.ipynb", root / "victim.ipynb")  # as submitted
    os.environ["COURSE_GRADER_TOKEN"] = SECRET  # a secret of the grader's machine, which no kernel may see
    try:
        log = nbgrader(root, "autograde", NAME, "--force", "--create", "--ExecutePreprocessor.timeout=300", check=False)
    finally:
        del os.environ["COURSE_GRADER_TOKEN"]
    scores = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        for student in CASES:
            try:
                notebook = gradebook.find_submission_notebook(NAME, NAME, student)
            except MissingEntry:  # nbgrader could not read it at all
                scores[student] = 0
                continue
            scores[student] = sum(g.score or 0 for g in notebook.grades if g.cell.cell_type == "code")
    return root, scores, log


@pytest.mark.parametrize("student", CASES)
def test_case_gets_its_score(graded, student):
    root, scores, log = graded
    _, expected, _ = CASES[student]
    assert scores[student] == expected, f"{student}: {scores[student]} points instead of {expected}\n{log[-3000:]}"


@pytest.mark.parametrize("student", [s for s, (_, _, words) in CASES.items() if words] + list(REVIEWED))
def test_tampering_is_reported(graded, student):
    root, _, _ = graded
    words = CASES[student][2] or REVIEWED[student]
    report = root / "autograded" / student / NAME / f"{NAME}.integrity.json"
    assert report.is_file(), f"{student}: no integrity report"
    content = json.loads(report.read_text())
    findings = content["findings"] + content["review"]
    assert any(words in finding for finding in findings), f"{student}: {words!r} not in {findings}"
    note = nbformat.read(root / "autograded" / student / NAME / f"{NAME}.ipynb", as_version=4).cells[0]
    assert note.cell_type == "markdown" and "Integrity report" in note.source and words in note.source


def test_honest_submissions_have_no_findings(graded):
    root, _, _ = graded
    for student in ("correct", "correct_nbformat3", "correct_without_cell_ids", "correct_that_warns",
                    "correct_that_displays_a_function", "victim", "untouched"):
        assert not (root / "autograded" / student / NAME / f"{NAME}.integrity.json").exists(), student


def test_instructor_files_stay_out_of_reach(graded):
    root, scores, _ = graded
    notebook = nbformat.read(root / "autograded" / "reads_instructor_files" / NAME / f"{NAME}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") for c in notebook.cells if c.cell_type == "code" for o in c.outputs)
    assert "0 solution notebooks found" in printed, printed[:2000]
    assert (root / "gradebook.db").stat().st_size > 0
    assert scores["correct"] == FULL  # its submitted notebook was not overwritten by a classmate


def test_instructor_report_lists_every_flagged_student(graded):
    import subprocess
    import sys

    root, _, _ = graded
    done = subprocess.run([sys.executable, "-m", "course_grading", "integrity", NAME, str(root)],
                          capture_output=True, text=True, check=True)
    for student, (_, _, words) in CASES.items():
        if words or student in REVIEWED:
            assert f"\n{student} ({NAME})" in done.stdout, student
    assert "\ncorrect (" not in done.stdout


def test_class_report_counts_each_cells_verdicts_and_named_mistakes(graded, tmp_path):
    import csv
    import subprocess
    import sys

    from course_grading.report import verdict_records

    root, scores, _ = graded
    records = {record["student"]: record for record in verdict_records(root, NAME)}
    assert {"correct", "untouched", "victim"} <= records.keys()
    for student, record in records.items():   # the records agree with nbgrader's gradebook, cell by cell
        earned = sum(cell["points"] for cell in record["cells"] if cell["verdict"] is None)
        assert earned == scores[student], (student, earned, scores[student])
    assert all(cell["verdict"] is None and cell["mistake"] is None for cell in records["correct"]["cells"])
    untouched = records["untouched"]["cells"]
    assert sum(cell["mistake"] == "not_implemented" for cell in untouched) >= len(untouched) - 2, untouched
    done = subprocess.run([sys.executable, "-m", "course_grading", "report", NAME, str(root)],
                          capture_output=True, text=True, check=True)
    assert f"{NAME}: {len(records)} graded submission(s)" in done.stdout and "not_implemented" in done.stdout
    folder = root / "reports" / NAME
    with open(folder / "mistakes.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert any(row["mistake"] == "not_implemented" and int(row["students"]) >= 1 for row in rows)
    cells = {row["cell"]: row for row in csv.DictReader(open(folder / "cells.csv"))}
    assert int(cells["test_relu"]["full_marks"]) == sum(
        1 for record in records.values() for cell in record["cells"] if cell["grade_id"] == "test_relu"
        and cell["verdict"] is None)
    assert "What the class got wrong" in (folder / "report.html").read_text()


def test_no_secret_of_the_grader_reaches_the_student(graded):
    root, _, _ = graded
    folder = root / "autograded" / "prints_environment" / NAME
    printed = (folder / f"{NAME}.ipynb").read_text()
    assert "COURSE_DATA_DIR" in printed, "the environment was not printed: the case tests nothing"
    for secret in (SECRET, "NBGRADER_DB_URL", "COURSE_GRADER_TOKEN", "JUPYTERHUB"):
        assert secret not in printed, secret


def test_feedback_shows_no_hidden_test(graded):
    root, _, _ = graded
    nbgrader(root, "generate_feedback", NAME, "--force")
    hidden = [line.strip() for cell in solution().cells if "BEGIN HIDDEN TESTS" in cell.source
              for line in cell.source.split("### BEGIN HIDDEN TESTS")[1].split("### END HIDDEN TESTS")[0].splitlines()
              if len(line.strip()) > 25]
    assert len(hidden) > 20
    pages = list((root / "feedback").glob(f"*/{NAME}/{NAME}.html"))
    assert len(pages) > 20
    import html
    for page in pages:
        text = html.unescape(re.sub(r"<[^>]+>", "", page.read_text()))
        student = page.parent.parent.name
        submitted = (root / "submitted" / student / NAME / f"{NAME}.ipynb").read_text()
        if "BEGIN HIDDEN TESTS" in submitted:  # made from the solution: its own cells hold them (a renamed test cell)
            continue
        assert "BEGIN HIDDEN TESTS" not in text, page
        leaked = [line for line in hidden if line in text]
        assert not leaked, f"{page.parent.parent.name}: {leaked[:3]}"
        assert SECRET not in text


def test_links_are_never_followed(graded):
    root, scores, _ = graded
    assert scores["victim"] == FULL
    victim = root / "submitted" / "victim" / NAME / f"{NAME}.ipynb"
    assert not victim.is_symlink() and victim.read_bytes() == (root / "victim.ipynb").read_bytes()
    planted = root / "autograded" / "plants_links" / NAME
    assert not any(p.is_symlink() for p in planted.iterdir())


def test_a_cell_is_stopped_at_its_measured_limit(graded):
    root, _, _ = graded
    notebook = nbformat.read(root / "autograded" / "loops_forever" / NAME / f"{NAME}.ipynb", as_version=4)
    printed = "".join(o.get("text", "") + o.get("ename", "") for o in notebook.cells[index_of(notebook, "relu")].outputs)
    assert "CellTimeoutError" in printed and "limit of 60 s" in printed, printed
