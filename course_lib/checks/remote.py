"""Where a check's steps run: here, or in the student's kernel while the grader decides a verdict.

The grader (the instructor's package ``course_grading``) runs a test cell in its own process; the
names the cell takes from the notebook then stand for objects in the student's kernel, and a step
on objects that cannot travel (build a model, train it one epoch) must run there. Outside the
grader (a student's notebook, nbval, the course's tests) these functions change nothing.
"""
from __future__ import annotations

import contextlib
import inspect
import textwrap
import threading

from course_lib.checks.source_rules import forbidden_uses

__all__ = ["in_kernel", "forbid", "runs_in_kernel", "kernel_session"]

_active = threading.local()


@contextlib.contextmanager
def kernel_session(session):
    """While this lasts, in this thread, :func:`in_kernel` hands functions to ``session.define(function)``,
    which returns a callable that runs them in the kernel (the grader's use only)."""
    previous = getattr(_active, "session", None)
    _active.session = session
    try:
        yield session
    finally:
        _active.session = previous


def in_kernel(function):
    """``function`` run in the student's kernel while the grader decides a verdict (it must take and return
    plain data, import what it uses, and see the notebook's names as globals); elsewhere ``function`` itself."""
    session = getattr(_active, "session", None)
    return function if session is None else session.define(function)


def runs_in_kernel(obj) -> bool:
    """Whether ``obj`` stands for an object of the student's kernel (under the grader)."""
    return getattr(type(obj), "in_kernel", False) is True


def forbid(obj, forbidden, allowed=()) -> str | None:
    """The first use of ``forbidden`` but not ``allowed`` (dotted names: ``torch.optim``) that the source of
    ``obj`` reaches, worded as ``called torch.optim.SGD``, or None. Under the grader the notebook's source is
    read; here the source of ``obj`` where ``inspect`` finds it (a function of a cell), else None (the
    grader decides)."""
    if runs_in_kernel(obj):
        return obj.forbidden_use(forbidden, allowed)
    try:
        found, _ = forbidden_uses([textwrap.dedent(inspect.getsource(obj))], getattr(obj, "__name__", ""),
                                  forbidden, allowed)
    except (OSError, TypeError):
        return None
    return found[0] if found else None
