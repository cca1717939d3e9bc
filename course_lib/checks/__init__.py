"""Public checks that give a student immediate feedback on an exercise.

Each ``check_<function>`` of a topic module (``course_lib.checks.mlp``, ``conv``, ``cnn``, ``optim``,
``tuning``, ``transfer``) calls the student's function on small inputs and prints one success line,
or raises :class:`~course_lib.checks.toolkit.CheckFailed`, whose message names the likely mistake.
Every check is written with :mod:`course_lib.checks.toolkit` (a contract and a table of usual
mistakes); :mod:`~course_lib.checks.numpy_only` keeps NumPy-only exercises NumPy only,
:mod:`~course_lib.checks.remote` says where a step runs under the grader, and
:mod:`~course_lib.checks.gradient_check` holds the numerical gradient the notebooks use too.
"""
# Transitional: the names the topic modules imported from here before the toolkit.
from course_lib.checks.gradient_check import numerical_gradient, rel_error  # noqa: F401
from course_lib.checks.numpy_only import FORBIDDEN_IN_NUMPY_EXERCISES, NumpyOnlyError, numpy_only  # noqa: F401
from course_lib.checks.toolkit import call, expect, expect_shape, expect_tuple, passed  # noqa: F401
from course_lib.checks.toolkit import compare as _compare


def call_step(step, name, *args, shown=None):
    return call(step, *args, name=name, shown=shown)


def expect_close(actual, expected, what, tol=1e-6, hint=""):
    _compare(actual, expected, what, tol=tol)
