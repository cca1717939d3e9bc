"""The instructor's command line.

- ``python -m course_grading grade NN_name [--workers N] [--cluster ADDRESS] ...``: autograde a whole
  class in parallel, each submission sandboxed, resumable (``grade --help`` lists the options)
- ``python -m course_grading integrity NN_name [COURSE_DIR]``: what the autograder's integrity checks
  found in each submission of an assignment (after ``nbgrader autograde``)
- ``python -m course_grading report NN_name [COURSE_DIR]``: what the class got wrong, per graded cell and
  per named mistake; writes reports/NN_name/report.html and CSVs
"""
import sys

USAGE = ("usage: python -m course_grading grade ASSIGNMENT [options, see grade --help] | integrity ASSIGNMENT "
         "[COURSE_DIR] | report ASSIGNMENT [COURSE_DIR]")

command, args = (sys.argv[1], sys.argv[2:]) if len(sys.argv) > 1 else (None, [])
if command == "integrity" and len(args) in (1, 2):
    from course_grading.report import integrity_table

    print(integrity_table(args[1] if len(args) == 2 else ".", args[0]))
elif command == "report" and len(args) in (1, 2):
    from course_grading.report import class_report

    print(class_report(args[1] if len(args) == 2 else ".", args[0]))
elif command == "grade":
    from course_grading.classroom import main

    sys.exit(main(args))
else:
    sys.exit(USAGE)
