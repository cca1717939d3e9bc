"""Errors a student or instructor can act on, and how errors look in a notebook.

Each message says what was wrong, the value that was given and what to do. In a notebook (IPython)
a ``CourseError`` shows as that message alone, without the frames inside ``course_lib`` that a
traceback would print above it; Python outside IPython prints the usual traceback.

:func:`show_errors_briefly` (called by ``setup_notebook``) does the same for the errors a student
meets most: a public check that fails, a stub's ``NotImplementedError`` and a ``NameError`` (a cell
not run yet). Each shows as one block: what is wrong, in which exercise and cell, what to do next.
Any other error keeps IPython's traceback, and ``%tb`` prints the full one after a brief block.
nbgrader still sees the cell fail: the block is the cell's error output.
"""
from __future__ import annotations

import inspect
import linecache
import re
import sys
import traceback

__all__ = [
    "CourseError", "CourseValueError", "CourseTypeError", "CourseRuntimeError", "CourseFileNotFoundError",
    "DatasetNotFoundError", "SettingError", "FolderError", "NonFiniteLossError", "CheckpointError",
    "SkippedFileWarning", "BRIEF", "show_errors_briefly", "brief_lines", "describe_failure",
]

_RED, _BOLD, _RESET = "\x1b[31m", "\x1b[1m", "\x1b[0m"
BRIEF = (AssertionError, NameError, NotImplementedError)  # shown briefly when raised where described below
_CHECKS_PACKAGE = "course_lib.checks"


class CourseError(Exception):
    """Base of course_lib's own errors (subclass it together with ``ValueError``, ``TypeError``, …)."""

    def _render_traceback_(self) -> list[str]:
        """What IPython prints instead of the traceback: the error's name, its message and the line of
        the notebook that called course_lib."""
        title, *rest = str(self).splitlines() or [""]
        shell = _shell()
        cells = _cell_frames(self.__traceback__, shell)
        where = [f"called from {_where(cells[-1], shell)}"] if cells else []
        return _block(f"{type(self).__name__}: {title}", [*rest, *where])


class CourseValueError(CourseError, ValueError):
    """A value of the right type that cannot be used (a negative epoch count, an unknown device)."""


class CourseTypeError(CourseError, TypeError):
    """An argument of the wrong type (a tuple where a data loader was expected)."""


class CourseRuntimeError(CourseError, RuntimeError):
    """Something that stops a run and that the user can fix (a device that is not there, a model
    tensor left on another device)."""


class CourseFileNotFoundError(CourseError, FileNotFoundError):
    """A file or folder that is not where it was looked for; the message says where it looked."""


class DatasetNotFoundError(CourseFileNotFoundError):
    """No copy of a dataset was found and none could be downloaded, or nothing in it could be read."""


class SettingError(CourseValueError):
    """An environment variable (``COURSE_FAST``, ``COURSE_DEVICE``, ...) set to a value course_lib cannot use."""


class FolderError(SettingError, NotADirectoryError):
    """A folder setting (``COURSE_CACHE_DIR``, ...) that names a file, or a path inside one. Also an
    ``OSError``, so code that falls back when a folder cannot be written does so here too."""


class NonFiniteLossError(CourseError, FloatingPointError):
    """Training produced a loss that is NaN or infinite; the message names the epoch and step."""


class CheckpointError(CourseValueError):
    """A checkpoint that is missing, damaged, or holds another model or optimizer than the one given."""


class SkippedFileWarning(UserWarning):
    """Files of a dataset that could not be read and were left out (the warning names them)."""


def show_errors_briefly(shell=None) -> None:
    """Show failed checks, stubs and undefined names in IPython as one block each (module docstring).

    Installs an IPython custom exception handler for :data:`BRIEF`; does nothing outside IPython or
    when it is installed already (the autograder installs it before the first cell, so that the setup
    cell, which calls this again, changes nothing it watches).
    """
    shell = shell or _shell()
    if shell is None or shell.custom_exceptions is BRIEF:
        return
    shell.set_custom_exc(BRIEF, _show)


def brief_lines(value: BaseException, tb, shell=None) -> list[str] | None:
    """The lines that :func:`show_errors_briefly` shows for ``value`` raised along ``tb``, or None
    where IPython's usual traceback is more useful (an error inside a library, a failed ``assert`` in
    a test cell)."""
    shell = shell or _shell()
    frames = list(traceback.walk_tb(tb))
    if not frames:
        return None
    cells = _cell_frames(tb, shell)
    if isinstance(value, AssertionError):
        return _failed_check(value, frames, shell)
    if isinstance(value, NameError) and _is_cell(frames[-1], shell):
        return _undefined_name(value, tb, frames[-1], shell)
    if (isinstance(value, NotImplementedError) and cells and frames[-1] == cells[-1]
            and cells[-1][0].f_code.co_name != "<module>"):
        name = _qualname(cells[-1][0].f_code)
        return _block(f"NotImplementedError: {name} is not implemented yet",
                      [_where(cells[-1], shell),
                       f"→ Replace `raise NotImplementedError()` in `{name}` with your code, run that cell, "
                       "then run this one again."])
    return None


def describe_failure(name: str, err: BaseException) -> str:
    """One line about ``err``, raised by the student's ``name``, for a widget in an error state:
    what to finish for a stub, else the error and the line of the student's code that raised it."""
    shell = _shell()
    cells = _cell_frames(err.__traceback__, shell)
    if isinstance(err, NotImplementedError):
        cell = _cell_label(cells[-1][0].f_code.co_filename, shell) if cells else None
        return (f"{name} is not implemented yet: replace the line raise NotImplementedError() in "
                f"{cell or 'its cell'} with your code, run that cell, then run this one again.")
    detail = str(err).strip()
    line = f"{name} raised {type(err).__name__}" + (f": {detail}" if detail else "")
    return line + (f" ({_where(cells[-1], shell)})" if cells else "")


def _show(shell, etype, value, tb, tb_offset=None):
    """IPython's custom exception handler: the brief block where there is one, else the usual traceback.

    Never raises: IPython would unregister a handler that does, and print the error without an error
    output, which nbgrader would not count as a failure.
    """
    try:
        lines = brief_lines(value, tb, shell)
    except Exception:
        lines = None
    if lines is None or hasattr(value, "_render_traceback_"):
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
        return None
    value._render_traceback_ = lambda: lines  # IPython's protocol for an exception that renders itself
    try:
        shell.showtraceback((etype, value, tb), tb_offset=tb_offset)
    finally:
        del value._render_traceback_  # %tb then prints the full traceback
    return None


def _failed_check(value, frames, shell) -> list[str] | None:
    """A public check's AssertionError: the check's message, the exercise, where to fix it."""
    in_checks = [(frame, line) for frame, line in frames if _module(frame).startswith(_CHECKS_PACKAGE)]
    if not in_checks:
        return None
    check = next((f for f, _ in in_checks if f.f_code.co_name.startswith("check_")), in_checks[0][0])
    student = _first_argument(check)
    name = _object_name(student) or check.f_code.co_name.removeprefix("check_")
    defined = _defined_in(student, shell)
    title = f"✘ {name}: a public check failed" + (f" (the exercise in {defined})" if defined else "")
    message = str(value).splitlines() or [""]
    cause = value.__cause__
    crash = [f"  {_where(cell, shell)}" for cell in _cell_frames(cause.__traceback__, shell)[-4:]] if cause else []
    if crash:
        crash.insert(0, "where your code raised it:")
    edit = f"`{name}` in {defined}" if defined else f"`{name}` in its cell"
    return _block(title, [*message, *crash, f"→ Edit {edit}, run that cell, then run this one again."])


def _undefined_name(value, tb, frame_line, shell) -> list[str]:
    """A NameError in a cell: which name, and that the cell defining it has to run first."""
    name = getattr(value, "name", None)
    summary = "".join(traceback.TracebackException(type(value), value, tb).format_exception_only()).strip()
    frame, _ = frame_line
    if frame.f_code.co_name == "<module>":
        advice = (f"→ Run the cell that defines `{name}` first (Run → Run All Above Selected Cell runs every "
                  "cell above this one), then run this one again." if name else
                  "→ Run the cells above this one first, then run this one again.")
    else:
        advice = (f"→ `{_qualname(frame.f_code)}` uses `{name}`, which no cell run so far defines: define it, "
                  "or run the cell that does, then run this one again.")
    return _block(summary, [advice] if frame.f_code.co_name == "<module>" else [_where(frame_line, shell), advice])


def _block(title: str, lines: list[str]) -> list[str]:
    return [f"{_RED}{_BOLD}{title}{_RESET}", *lines]


def _shell():
    """The running IPython shell, or None outside IPython."""
    ipython = sys.modules.get("IPython")
    return ipython.get_ipython() if ipython is not None else None


def _cell_label(filename: str, shell) -> str | None:
    """``cell In[7]`` for code typed in a notebook cell, None for code from a file."""
    if shell is None:
        return None
    format_code_name = getattr(shell.compile, "format_code_name", None)
    if format_code_name is None:  # IPython 7 (Colab) names a cell's code <ipython-input-7-…>
        match = re.fullmatch(r"<ipython-input-(\d+)-[0-9a-f]+>", filename)
        return f"cell In[{match.group(1)}]" if match else None
    named = format_code_name(filename)
    return f"cell {named[1]}" if named else None


def _is_cell(frame_line, shell) -> bool:
    return _cell_label(frame_line[0].f_code.co_filename, shell) is not None


def _cell_frames(tb, shell) -> list:
    """The (frame, line) pairs of ``tb`` that run code of notebook cells, outermost first."""
    return [fl for fl in traceback.walk_tb(tb) if _is_cell(fl, shell)] if tb is not None else []


def _where(frame_line, shell) -> str:
    """``cell In[7], line 3, in `relu`: return x * (x > 0)`` (no function at a cell's top level)."""
    frame, line = frame_line
    code = frame.f_code
    label = _cell_label(code.co_filename, shell) or code.co_filename
    function = "" if code.co_name == "<module>" else f", in `{_qualname(code)}`"
    text = linecache.getline(code.co_filename, line).strip()
    return f"{label}, line {line}{function}" + (f": {text}" if text else "")


def _qualname(code) -> str:
    return getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11


def _module(frame) -> str:
    name = frame.f_globals.get("__name__")
    return name if isinstance(name, str) else ""


def _first_argument(frame):
    code = frame.f_code
    return frame.f_locals.get(code.co_varnames[0]) if code.co_argcount else None


def _object_name(obj) -> str | None:
    name = getattr(obj, "__name__", None)
    return name if isinstance(name, str) and callable(obj) else None


def _defined_in(obj, shell) -> str | None:
    """The cell that defined a function or class of the student's, e.g. ``cell In[7]``."""
    obj = inspect.unwrap(obj) if callable(obj) else obj
    codes = [getattr(obj, "__code__", None)]
    if isinstance(obj, type):
        codes += [getattr(member, "__code__", None) for member in vars(obj).values()]
    for code in codes:
        if code is not None:
            return _cell_label(code.co_filename, shell)
    return None
