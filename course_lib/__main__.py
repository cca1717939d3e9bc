"""Command line: ``python -m course_lib results DIR`` prints the results table of DIR."""
import sys

from course_lib.results import table

if len(sys.argv) != 3 or sys.argv[1] != "results":
    sys.exit("usage: python -m course_lib results RESULTS_DIR")
print(table(sys.argv[2]))
