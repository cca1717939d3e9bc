"""Command line.

- ``python -m course_lib results DIR``: the results table of DIR
- ``python -m course_lib tune STUDY --objective SPEC --trials N [--storage URL] ...``: one worker
  on an Optuna study, run on as many machines as you like (``tune --help`` lists the options)

The instructor's commands (``grade``, ``integrity``) are ``python -m course_grading``.
"""
import sys

from course_lib.errors import CourseError

USAGE = ("usage: python -m course_lib results RESULTS_DIR | tune STUDY --objective SPEC --trials N "
         "[options, see tune --help]")

command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else (None, [])
if command == "results" and len(args) == 1:
    from course_lib.results import table

    try:
        print(table(args[0]))
    except CourseError as err:
        sys.exit(f"error: {err}")
elif command == "tune":
    from course_lib.tuning import main

    main(args)
elif command in ("grade", "integrity"):
    sys.exit(f"{command} is an instructor's command: python -m course_grading {command} ...")
else:
    sys.exit(USAGE)
