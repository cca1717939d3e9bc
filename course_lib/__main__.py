"""Command line.

- ``python -m course_lib results DIR``: the results table of DIR
- ``python -m course_lib integrity NN_name [COURSE_DIR]``: what the autograder's integrity checks
  found in each submission of an assignment (after ``nbgrader autograde``)
- ``python -m course_lib grade NN_name [--workers N] [--cluster ADDRESS] ...``: autograde a whole class
  in parallel, each submission sandboxed, resumable (``grade --help`` lists the options)
- ``python -m course_lib tune STUDY --objective SPEC --trials N [--storage URL] ...``: one worker
  on an Optuna study, run on as many machines as you like (``tune --help`` lists the options)
"""
import sys

from course_lib.errors import CourseError

USAGE = ("usage: python -m course_lib results RESULTS_DIR | integrity ASSIGNMENT [COURSE_DIR]"
         " | grade ASSIGNMENT [options, see grade --help] | tune STUDY --objective SPEC --trials N [options, see tune --help]")

command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else (None, [])
if command == "results" and len(args) == 1:
    from course_lib.results import table

    try:
        print(table(args[0]))
    except CourseError as err:
        sys.exit(f"error: {err}")
elif command == "integrity" and len(args) in (1, 2):
    from course_lib.grading.report import integrity_table

    print(integrity_table(args[1] if len(args) == 2 else ".", args[0]))
elif command == "grade":
    from course_lib.grading.classroom import main

    sys.exit(main(args))
elif command == "tune":
    from course_lib.tuning import main

    main(args)
else:
    sys.exit(USAGE)
