"""Public checks that give a student immediate feedback on an exercise.

Each ``check_<function>`` of a topic module (``course_lib.checks.mlp``, ``conv``, ``cnn``, ``optim``,
``tuning``, ``transfer``) calls the student's function on small inputs and prints one success line,
or raises :class:`~course_lib.checks.toolkit.CheckFailed`, whose message names the likely mistake.
Every check is written with :mod:`course_lib.checks.toolkit` (a contract and a table of usual
mistakes); :mod:`~course_lib.checks.numpy_only` keeps NumPy-only exercises NumPy only,
:mod:`~course_lib.checks.remote` says where a step runs under the grader, and
:mod:`~course_lib.checks.gradient_check` holds the numerical gradient the notebooks use too.
"""

__all__: list[str] = []   # the topic modules and the toolkit are imported as modules
