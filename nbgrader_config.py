"""nbgrader settings for the course: solutions/ is nbgrader's source, notebooks/ its release."""
import os

c = get_config()  # noqa: F821 (provided by nbgrader)

c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.course_id = "dl-images"
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "notebooks"
# A course-local exchange, so that release, fetch, submit and collect work on one machine (`make lab`,
# JupyterLab's Nbgrader menu); fetched copies go to ./dl-images/NN_name. For a class on a shared
# server, point it at a folder every user can write instead (nbgrader's docs, "Setting up the exchange").
c.Exchange.root = os.path.join(c.CourseDirectory.root, "exchange")
c.Exchange.path_includes_course = True
os.makedirs(c.Exchange.root, exist_ok=True)  # nbgrader needs it to exist
# SQLite by default; point NBGRADER_DB_URL at PostgreSQL (postgresql://user@host/gradebook) for a class.
# (postgresql:// goes through psycopg 3, which the course installs, instead of SQLAlchemy's default psycopg2.)
from course_grading.course import gradebook_url  # noqa: E402

c.CourseDirectory.db_url = gradebook_url(
    os.environ.get("NBGRADER_DB_URL", "sqlite:///" + os.path.join(c.CourseDirectory.root, "gradebook.db")))
# A cell measured in the solution (solutions/cell_times.json) may take 3 times its time plus a minute, in
# autograde (CellTimeLimits) as in the Validator (the Validate button, `python -m course_grading validate`);
# a cell the table does not know, up to the half hour a full-mode training cell may need.
from course_grading.preprocessors import (  # noqa: E402
    CellTimeLimits, GuardedExecute, RestoreCellMetadata, SkipExperiments, ValidatorTimeLimits)

c.ExecutePreprocessor.timeout = 1800
c.Execute.timeout_func = ValidatorTimeLimits(os.path.join(c.CourseDirectory.root, c.CourseDirectory.source_directory),
                                             default=c.ExecutePreprocessor.timeout)
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Honest grades (course_grading/preprocessors.py): tampered cells are restored and recorded
# instead of failing the whole notebook; deleted test cells are added back; the kernel runs in a
# bubblewrap sandbox; every test cell's verdict is decided in the grader's process.
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties, CheckCellMetadata, ClearOutput, DeduplicateIds, IgnorePattern, LimitOutput,
    OverwriteCells, OverwriteKernelspec, SaveAutoGrades)
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402

c.OverwriteCells.add_missing_cells = True
# A submission's own files named like the grader's records are not copied into autograded/ (the report reads those)
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "*.verdicts.json",
                            "*.integrity.json"]
c.Autograde.sanitize_preprocessors = [ClearOutput, DeduplicateIds, RestoreCellMetadata, OverwriteKernelspec,
                                      OverwriteCells, CheckCellMetadata, CellTimeLimits, SkipExperiments]
c.Autograde.autograde_preprocessors = [GuardedExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
# nbgrader's HTML pages (Formgrader's grading page, the feedback): what the student wrote or printed is shown,
# never run (course_grading/safe_html.py); the grading page shows each written answer's model answer from
# solutions/ (feedback never does); formulas are MathML the browser draws, not TeX for MathJax from a CDN.
c.HTMLExporter.filters = {"markdown2html": "course_grading.safe_html.markdown2html"}
c.HTMLExporter.preprocessors = ["course_grading.safe_html.SafeOutputs", "course_grading.formgrade.ModelAnswers",
                                "course_grading.formulas.FormulasAsMathML"]
