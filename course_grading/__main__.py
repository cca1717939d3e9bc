"""The instructor's command line.

- ``python -m course_grading grade NN_name [--workers N] [--cluster ADDRESS] ...``: autograde a whole
  class in parallel, each submission sandboxed, resumable (``grade --help`` lists the options)
- ``python -m course_grading integrity NN_name [COURSE_DIR]``: what the autograder's integrity checks
  found in each submission of an assignment (after ``nbgrader autograde``)
- ``python -m course_grading report NN_name [COURSE_DIR]``: what the class got wrong, per graded cell and
  per named mistake; writes reports/NN_name/report.html and CSVs (``report --all``: every graded assignment,
  and reports/index.html across them)
- ``python -m course_grading validate [NN_name ...] [--release]``: nbgrader's Validator on the solutions (or
  the release), with a progress bar
- ``python -m course_grading export [options, see export --help]``: grades for an LMS (Canvas) and a plain
  CSV of every assignment, from the gradebook
"""
import sys

USAGE = ("usage: python -m course_grading grade ASSIGNMENT [options, see grade --help] | integrity ASSIGNMENT "
         "[COURSE_DIR] | report ASSIGNMENT|--all [COURSE_DIR] | export [options, see export --help] "
         "| validate [ASSIGNMENT ...] [--release]")

command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else (None, [])
if command == "integrity" and len(args) in (1, 2):
    from course_grading.report import integrity_table

    print(integrity_table(args[1] if len(args) == 2 else ".", args[0]))
elif command == "report" and len(args) in (1, 2):
    from course_grading.report import class_report, course_report

    folder = args[1] if len(args) == 2 else "."
    print(course_report(folder) if args[0] == "--all" else class_report(folder, args[0]))
elif command == "export":
    from course_grading.export import main

    sys.exit(main(args))
elif command == "validate":
    from course_grading.validate import main

    sys.exit(main(args))
elif command == "grade":
    from course_grading.classroom import main

    sys.exit(main(args))
else:
    sys.exit(USAGE)
