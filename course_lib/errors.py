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
