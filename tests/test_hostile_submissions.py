"""A catalogue of hostile and broken submissions, each autograded for real by ``nbgrader autograde``.

One temporary course for notebook 01 (fast mode), one class of students, one autograde run with the
course's configuration (``nbgrader_config.py``: restored cells, sandboxed kernel, integrity checks).
Each case states the autograded score it must get: no trick earns a point it did not deserve, no
correct submission loses one, and every trick is named in the student's integrity note.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_output
from nbgrader.api import Gradebook, MissingEntry

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


# student -> (submission, autograded score it must get, words its integrity note must contain or None)
CASES = {
    "correct": (solution, FULL, None),
    "correct_nbformat3": (lambda: nbformat.convert(solution(), 3), FULL, None),
    "correct_without_cell_ids": (lambda: without_ids(solution()), FULL, None),
    "correct_that_warns": (lambda: warns(solution()), FULL, None),
    # a cell whose last line shows a callable (a model, a function): IPython keeps it as displayhook._
    "correct_that_displays_a_function": (lambda: with_cell(solution(), "def shown(x):\n    return x\n\nshown"),
                                         FULL, None),
    "untouched": (release, 0, None),
    **{name: (lambda source=source: with_cell(release(), source), 0, "the kernel was changed")
       for name, source in HOOKS.items() if name not in ("reads_instructor_files", "sys_excepthook")},
    # IPython puts sys.excepthook back after every cell: the change is undone, and listed for review
    "sys_excepthook": (lambda: with_cell(release(), HOOKS["sys_excepthook"]), 0, "changes the interpreter's hooks"),
    "reads_instructor_files": (lambda: with_cell(release(), HOOKS["reads_instructor_files"]), 0, None),
    "numpy_patched_after_honest_cells": (
        lambda: with_cell(solution(), "np.allclose = lambda *args, **kwargs: True", before="mlp_forward"),
        BEFORE_MLP_FORWARD, "numpy.allclose was replaced"),
    "torch_reference_patched": (lambda: with_cell(release(), "import torch\ntorch.relu = lambda z: z * 0"),
                                0, "torch.relu was replaced"),
    # a cell left from trying another mode (the header's `%env COURSE_FAST=1`): the grader sets its own
    # mode back, so the notebook is graded in that mode and loses nothing
    "correct_mode_switched": (lambda: with_cell(solution(), "%env COURSE_FAST=0", before="setup"), FULL,
                              "COURSE_FAST was set to '0'; the grader set it back"),
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
    nbgrader(root, "generate_assignment", NAME, "--force")
    for student, (make, _, _) in CASES.items():
        folder = root / "submitted" / student / NAME
        folder.mkdir(parents=True)
        path = folder / f"{NAME}.ipynb"
        if isinstance(make, str):
            path.write_text(make)
        else:
            nb = make()
            nbformat.write(nb, path, version=nb.nbformat)
    log = nbgrader(root, "autograde", NAME, "--force", "--create", "--ExecutePreprocessor.timeout=300", check=False)
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


@pytest.mark.parametrize("student", [s for s, (_, _, words) in CASES.items() if words])
def test_tampering_is_reported(graded, student):
    root, _, _ = graded
    words = CASES[student][2]
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
                    "correct_that_displays_a_function", "untouched"):
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
    done = subprocess.run([sys.executable, "-m", "course_lib", "integrity", NAME, str(root)],
                          capture_output=True, text=True, check=True)
    for student, (_, _, words) in CASES.items():
        if words:
            assert f"\n{student} ({NAME})" in done.stdout, student
    assert "\ncorrect (" not in done.stdout
