"""Errors a student or instructor can act on.

Each message says what was wrong, the value that was given and what to do. In a notebook (IPython)
a ``CourseError`` shows as that message alone, without the frames inside ``course_lib`` that a
traceback would print above it; Python outside IPython prints the usual traceback. nbgrader still
sees the cell fail.
"""
from __future__ import annotations


class CourseError(Exception):
    """Base of course_lib's own errors (subclass it together with ``ValueError``, ``TypeError``, …)."""

    def _render_traceback_(self) -> list[str]:
        """What IPython prints instead of the traceback: the error's name and its message."""
        red, bold, reset = "\x1b[31m", "\x1b[1m", "\x1b[0m"
        title, *rest = str(self).splitlines() or [""]
        return [f"{red}{bold}{type(self).__name__}{reset}{red}: {title}{reset}", *rest]


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
