"""How errors look in a notebook: cells run in a real IPython shell, output read as the student sees it.

A failed public check, a stub's NotImplementedError and a NameError show as one block (what, where,
what to do) without course_lib's frames; other errors keep IPython's traceback; each cell still fails.
"""
from __future__ import annotations

import re

import pytest
from IPython.core.interactiveshell import InteractiveShell
from traitlets.config import Config

from course_lib import errors

ANSI = re.compile(r"\x1b\[[0-9;]*m")
SETUP = ("import numpy as np\nfrom course_lib import setup_notebook\nfrom course_lib.checks import mlp as checks\n"
         "run = setup_notebook('01_numpy_mlp', use_torch=False)")
STUB = "def sigmoid(x):\n    '''The logistic function.'''\n    raise NotImplementedError()"


@pytest.fixture
def shell():
    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    yield shell
    InteractiveShell.clear_instance()


@pytest.fixture
def notebook(shell, capsys):
    """run(source) -> (the cell's result, what the cell printed without colours); the setup cell ran first."""
    def run(source: str):
        capsys.readouterr()
        result = shell.run_cell(source, store_history=True)
        out = capsys.readouterr()
        return result, ANSI.sub("", out.out + out.err)

    result, _ = run(SETUP)
    assert result.success
    return run


def test_a_name_not_defined_yet_says_which_cell_to_run(notebook):
    result, shown = notebook("checks.check_sigmoid(sigmoid)")
    assert not result.success and isinstance(result.error_in_exec, NameError)
    assert shown.splitlines()[0] == "NameError: name 'sigmoid' is not defined"
    assert "→ Run the cell that defines `sigmoid` first" in shown
    assert "Traceback" not in shown and len(shown.splitlines()) == 2


def test_a_stub_in_a_check_names_the_exercise_and_its_cell(notebook):
    notebook(STUB)
    result, shown = notebook("checks.check_sigmoid(sigmoid)")
    assert not result.success and isinstance(result.error_in_exec, AssertionError)
    assert shown.splitlines() == [
        "✘ sigmoid: a public check failed (the exercise in cell In[2])",
        "sigmoid is not implemented yet: replace the line raise NotImplementedError() with your code.",
        "→ Edit `sigmoid` in cell In[2], run that cell, then run this one again."]


def test_a_wrong_answer_shows_the_checks_hint_without_its_code(notebook):
    notebook("def sigmoid(x):\n    return 1 / (1 + np.exp(x))")
    result, shown = notebook("checks.check_sigmoid(sigmoid)")
    assert not result.success
    assert "the sign in the exponent is flipped" in shown.splitlines()[1]
    assert "course_lib" not in shown and "Traceback" not in shown and "np.array([-3.0" not in shown


def test_a_crash_in_the_students_code_shows_their_line_only(notebook):
    notebook("def sigmoid(x):\n    z = np.exp(-x)\n    return 1 / (1 + z) @ np.ones((7, 2))")
    result, shown = notebook("checks.check_sigmoid(sigmoid)")
    assert not result.success
    assert "sigmoid(array of shape (6,)) raised ValueError" in shown
    assert "  cell In[2], line 3, in `sigmoid`: return 1 / (1 + z) @ np.ones((7, 2))" in shown.splitlines()
    assert "course_lib" not in shown and "Traceback" not in shown


def test_a_stub_called_directly_says_what_to_replace(notebook):
    notebook(STUB)
    result, shown = notebook("sigmoid(np.zeros(3))")
    assert isinstance(result.error_in_exec, NotImplementedError)
    assert shown.splitlines() == [
        "NotImplementedError: sigmoid is not implemented yet",
        "cell In[2], line 3, in `sigmoid`: raise NotImplementedError()",
        "→ Replace `raise NotImplementedError()` in `sigmoid` with your code, run that cell, then run this one again."]


def test_a_name_missing_inside_a_function_points_at_its_line(notebook):
    notebook("def relu(x):\n    return x * (y > 0)")
    _, shown = notebook("relu(1)")
    assert shown.splitlines()[1:] == [
        "cell In[2], line 2, in `relu`: return x * (y > 0)",
        "→ `relu` uses `y`, which no cell run so far defines: define it, or run the cell that does, "
        "then run this one again."]


def test_other_errors_keep_the_usual_traceback_and_tb_shows_the_full_one(notebook):
    result, shown = notebook("assert 1 == 2, 'a hidden test'")
    assert not result.success and "Traceback" in shown and "AssertionError: a hidden test" in shown
    _, shown = notebook("np.zeros(2) @ np.zeros(3)")
    assert "Traceback" in shown and "ValueError" in shown
    notebook(STUB)
    notebook("checks.check_sigmoid(sigmoid)")
    _, shown = notebook("%tb")
    assert "Traceback" in shown and "course_lib/checks/mlp.py" in shown


def test_a_course_error_shows_its_message_and_the_calling_line(notebook):
    notebook("from course_lib.errors import CourseValueError\n"
             "def train(epochs):\n    raise CourseValueError(f'epochs must be at least 1, got {epochs}\\nPass epochs=1 or more.')")
    result, shown = notebook("train(-1)")
    assert isinstance(result.error_in_exec, ValueError)
    assert shown.splitlines() == ["CourseValueError: epochs must be at least 1, got -1", "Pass epochs=1 or more.",
                                  "called from cell In[2], line 3, in `train`: raise CourseValueError("
                                  "f'epochs must be at least 1, got {epochs}\\nPass epochs=1 or more.')"]


def test_installing_twice_changes_nothing(shell):
    errors.show_errors_briefly(shell)
    handler, handled = shell.CustomTB, shell.custom_exceptions
    errors.show_errors_briefly(shell)
    assert shell.CustomTB is handler and shell.custom_exceptions is handled is errors.BRIEF


def test_a_failure_of_the_display_falls_back_to_the_usual_traceback(notebook, shell, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the display")

    monkeypatch.setattr(errors, "brief_lines", broken)
    result, shown = notebook("checks.check_sigmoid(sigmoid)")
    assert not result.success and "Traceback" in shown and "NameError" in shown
    assert shell.custom_exceptions is errors.BRIEF  # still installed: IPython removes a handler that raises


def test_outside_ipython_nothing_is_installed():
    errors.show_errors_briefly()  # no shell: nothing to do, no error
    assert errors.brief_lines(AssertionError("x"), None) is None


def test_a_widget_names_the_cell_to_finish(notebook):
    notebook(STUB)
    result, shown = notebook("from course_lib.errors import describe_failure\n"
                             "try:\n    sigmoid(0)\nexcept Exception as err:\n    print(describe_failure('sigmoid', err))")
    assert result.success and shown.strip() == ("sigmoid is not implemented yet: replace the line raise NotImplementedError() "
                                                "in cell In[2] with your code, run that cell, then run this one again.")
    notebook("def sigmoid(x):\n    return 1 / (1 + np.exp(-x)) @ np.ones(7)")
    _, shown = notebook("try:\n    sigmoid(np.zeros(3))\nexcept Exception as err:\n    print(describe_failure('sigmoid', err))")
    assert shown.startswith("sigmoid raised ValueError: matmul") and \
        shown.strip().endswith("(cell In[4], line 2, in `sigmoid`: return 1 / (1 + np.exp(-x)) @ np.ones(7))")


def test_cells_are_named_under_ipython_7_too():
    """Colab runs IPython 7, whose compiler names a cell's code <ipython-input-N-hash> (no format_code_name)."""
    class OldCompiler:
        pass

    class OldShell:
        compile = OldCompiler()

    namespace = {}
    try:
        exec(compile("checks.check_sigmoid(sigmoid)", "<ipython-input-4-0123abcd>", "exec"), namespace)
    except NameError as err:
        lines = errors.brief_lines(err, err.__traceback__, OldShell())
    assert [ANSI.sub("", line) for line in lines] == [
        "NameError: name 'checks' is not defined",
        "→ Run the cell that defines `checks` first (Run → Run All Above Selected Cell runs every cell above this "
        "one), then run this one again."]
