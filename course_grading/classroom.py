"""Autograding a whole class: ``python -m course_grading grade NN_name [--workers N] [--cluster ADDRESS]``.

nbgrader's ``autograde`` runs one submission after another. ``ClassAutograde`` is the same converter
(its gradebook, its preprocessors, its files) with the expensive step, running the notebook, done
elsewhere and in parallel:

1. here, one student at a time: nbgrader's set-up of the submission (student, timestamp, files) and
   its sanitizing preprocessors, which read the gradebook;
2. on a worker (a local process, or a Dask worker anywhere): the sanitized notebook runs in the
   course's sandbox (``GuardedExecute``), in a fresh temporary copy of that submission only; the
   worker needs neither the gradebook nor the course folder;
3. here again, as results come back: the rest of nbgrader's autograde preprocessors
   (``SaveAutoGrades`` and the others), so the gradebook has one writer, SQLite or PostgreSQL alike.

A student is finished once a record is written under ``autograded/.course-grade/`` (after their
grades are saved); a killed run, started again, keeps the finished students and grades the others.
A resubmission (a newer ``timestamp.txt``) is graded again.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from nbgrader import utils
from nbgrader.api import Gradebook, MissingEntry
from nbgrader.converters import Autograde, BaseConverter
from nbgrader.preprocessors import Execute
from sqlalchemy.exc import SAWarning
from traitlets import import_item
from traitlets.config import Config

from course_grading.course import course_config, course_folder
from course_grading.preprocessors import REPORT_SUFFIX, VERDICTS_SUFFIX, submission_links
from course_grading.sandbox import sandbox_problem

RECORDS = ".course-grade"
# What a worker needs from the instructor's configuration to run a notebook as `nbgrader autograde` would
EXECUTION_SECTIONS = ("ExecutePreprocessor", "Execute", "GuardedExecute", "NotebookClient")
# ... and from the grader's environment: the mode the notebooks run in (data and cache folders are each worker's)
GRADER_ENVIRONMENT = ("COURSE_FAST",)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def execute_submission(job: dict) -> dict:
    """Run one sanitized submission in the sandbox; runs on a worker. ``job``: student, assignment,
    files ({relative path: bytes}, the notebooks among them), notebooks (their names), config (the
    execution settings and the course folder to hide) and environment (variables for the kernel).
    Returns the executed notebooks, the grader's records of each (integrity report, verdicts) and the seconds
    taken."""
    import nbformat

    from course_grading.preprocessors import GuardedExecute

    start = time.perf_counter()
    config = Config(job["config"])
    result = {"notebooks": {}, "records": {}}
    with tempfile.TemporaryDirectory(prefix="course-grade-") as tmp:
        workdir = Path(tmp, job["student"], job["assignment"])
        for relative, content in job["files"].items():
            path = workdir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        for name in job["notebooks"]:
            nb = nbformat.reads(job["files"][name].decode(), as_version=4)
            resources = {"metadata": {"path": str(workdir)},
                         "nbgrader": {"student": job["student"], "assignment": job["assignment"],
                                      "notebook": Path(name).stem, "links": job.get("links", [])}}
            with utils.setenv(NBGRADER_EXECUTION="autograde", **job["environment"]):
                nb, _ = GuardedExecute(config=config).preprocess(nb, resources)
            result["notebooks"][name] = nbformat.writes(nb)
            for suffix in (REPORT_SUFFIX, VERDICTS_SUFFIX):
                record = workdir / (Path(name).stem + suffix)
                if record.is_file():
                    result["records"][record.name] = record.read_text()
    result["seconds"] = time.perf_counter() - start
    return result


class ClassAutograde(Autograde):
    """nbgrader's Autograde with the notebooks run by ``executor`` (a ``concurrent.futures`` executor);
    ``environment``: variables set for each notebook's kernel."""

    def __init__(self, executor, progress=None, environment=None, **kwargs):
        super().__init__(**kwargs)
        self.executor, self.progress, self.outcomes = executor, progress, {}
        self.environment = dict(environment or {})

    # ------------------------------------------------------------ records of finished students
    def _record_path(self, assignment_id: str, student_id: str) -> Path:
        return Path(self.coursedir.root, self.coursedir.autograded_directory, RECORDS, assignment_id, f"{student_id}.json")

    def _submitted_at(self, assignment_id: str, student_id: str):
        timestamp = self.coursedir.get_existing_timestamp(self._format_source(assignment_id, student_id))
        return None if timestamp is None else timestamp.isoformat()

    def finished(self, assignment_id: str, student_id: str) -> dict | None:
        """The record of a finished grading of this very submission, or None."""
        path = self._record_path(assignment_id, student_id)
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        if self.force or record.get("submitted_at") != self._submitted_at(assignment_id, student_id):
            return None
        return record

    # ------------------------------------------------------------ the three steps
    def convert_notebooks(self) -> None:
        pending = {}
        for assignment in sorted(self.assignments):
            match = re.match(self._format_source("(?P<assignment_id>.*)", "(?P<student_id>.*)", escape=True), assignment)
            assignment_id, student_id = match["assignment_id"], match["student_id"]
            if self.coursedir.student_id_exclude and student_id in self.coursedir.student_id_exclude.split(","):
                continue
            record = self.finished(assignment_id, student_id)
            if record is not None:
                self.outcomes[student_id] = {**record, "outcome": "kept (graded before)"}
                self._advance(student_id, self.outcomes[student_id])
                continue
            self.notebooks = sorted(self.assignments[assignment])
            try:
                job = self._prepare(assignment_id, student_id)
            except Exception as err:  # nbgrader could not read or set up this submission
                self._failed(assignment_id, student_id, err)
                continue
            pending[self.executor.submit(execute_submission, job)] = (assignment_id, student_id, job["notebooks"])
        for future in cf.as_completed(pending):
            assignment_id, student_id, notebooks = pending[future]
            try:
                self._finish(assignment_id, student_id, notebooks, future.result())
            except Exception as err:
                self._failed(assignment_id, student_id, err)

    def _prepare(self, assignment_id: str, student_id: str) -> dict:
        """nbgrader's set-up and sanitizing of one submission; the job a worker runs."""
        self._record_path(assignment_id, student_id).unlink(missing_ok=True)
        dest = Path(self._format_dest(assignment_id, student_id))
        if dest.exists():
            shutil.rmtree(dest)
        self.run_pre_convert_hook()
        self.init_assignment(assignment_id, student_id)
        self._sanitizing = True
        self._init_preprocessors()
        for notebook in self.notebooks:
            BaseConverter.convert_single_notebook(self, notebook)
        files = {str(path.relative_to(dest)): path.read_bytes() for path in sorted(dest.rglob("*"))
                 if path.is_file() and not path.is_symlink()}
        links = submission_links(Path(self._format_source(assignment_id, student_id)), dest)
        config = {section: dict(self.config[section]) for section in EXECUTION_SECTIONS if section in self.config}
        config["CourseDirectory"] = {"root": str(Path(self.coursedir.root).resolve())}
        return {"student": student_id, "assignment": assignment_id, "files": files, "links": links, "config": config,
                "environment": self.environment,
                "notebooks": [os.path.basename(notebook) for notebook in self.notebooks]}

    def _finish(self, assignment_id: str, student_id: str, notebooks: list, result: dict) -> None:
        """The executed notebooks back into ``autograded/``, then nbgrader's remaining preprocessors."""
        dest = Path(self._format_dest(assignment_id, student_id))
        for name, record in result["records"].items():
            (dest / name).write_text(record)
        self._sanitizing = False
        self.exporter._preprocessors = []
        for preprocessor in self.autograde_preprocessors:
            preprocessor = import_item(preprocessor) if isinstance(preprocessor, str) else preprocessor
            if not issubclass(preprocessor, Execute):  # the notebook already ran, on the worker
                self.exporter.register_preprocessor(preprocessor)
        for name in notebooks:
            (dest / name).write_text(result["notebooks"][name])
            with utils.setenv(NBGRADER_EXECUTION="autograde"):
                BaseConverter.convert_single_notebook(self, str(dest / name))
        self._sanitizing = True
        self.set_permissions(assignment_id, student_id)
        self.run_post_convert_hook()
        record = {"student": student_id, "submitted_at": self._submitted_at(assignment_id, student_id),
                  "seconds": round(result["seconds"], 1), **self._score(assignment_id, student_id),
                  "outcome": "graded, with integrity findings" if any(name.endswith(REPORT_SUFFIX) for name in
                                                                      result["records"]) else "graded"}
        path = self._record_path(assignment_id, student_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.with_suffix(".tmp").write_text(json.dumps(record))
        path.with_suffix(".tmp").replace(path)
        self.outcomes[student_id] = record
        self._advance(student_id, record)

    def _score(self, assignment_id: str, student_id: str) -> dict:
        with Gradebook(self.coursedir.db_url, self.coursedir.course_id) as gradebook:
            try:
                submission = gradebook.find_submission(assignment_id, student_id)
            except MissingEntry:
                return {"score": None, "max_score": None}
            return {"score": submission.score, "max_score": submission.max_score}

    def _failed(self, assignment_id: str, student_id: str, err: Exception) -> None:
        self.log.error("could not grade %s's %s: %s: %s", student_id, assignment_id, type(err).__name__, err)
        dest = Path(self._format_dest(assignment_id, student_id))
        if dest.exists():
            shutil.rmtree(dest)
        self.outcomes[student_id] = {"student": student_id, "score": None, "max_score": None, "seconds": None,
                                     "outcome": f"failed: {type(err).__name__}: {err}"[:200]}
        self._advance(student_id, self.outcomes[student_id])

    def _advance(self, student_id: str, record: dict) -> None:
        if self.progress is not None:
            self.progress(student_id, record)


# ---------------------------------------------------------------- the command

def outcome_table(outcomes: dict) -> str:
    rows = [("student", "score", "seconds", "outcome")]
    for student in sorted(outcomes):
        record = outcomes[student]
        score = "-" if record.get("score") is None else f"{record['score']:g} / {record['max_score']:g}"
        seconds = "-" if record.get("seconds") is None else f"{record['seconds']:.1f}"
        rows.append((student, score, seconds, record["outcome"]))
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(f"{a:<{widths[0]}}  {b:>{widths[1]}}  {c:>{widths[2]}}  {d}" for a, b, c, d in rows)


def make_executor(workers: int | None, cluster: str | None):
    """Local worker processes, or a ``concurrent.futures`` view of a Dask cluster at ``cluster``."""
    if cluster:
        try:
            from distributed import Client
        except ImportError:
            sys.exit("grading on a cluster needs Dask's distributed: pip install distributed")
        try:
            client = Client(cluster, timeout="20s")
        except OSError as err:
            sys.exit(f"no Dask scheduler answers at {cluster} ({err}); start one with "
                     f"'dask scheduler' and workers with 'dask worker {cluster} --nthreads 1'")
        return client.get_executor(pure=False), client.close
    executor = cf.ProcessPoolExecutor(max_workers=workers or os.cpu_count(),
                                      mp_context=multiprocessing.get_context("spawn"))
    return executor, executor.shutdown


GRADE_HELP = """\
mode:       full mode, unless COURSE_FAST=1 is set in this shell (every kernel gets the same); grade a
            class in full mode, whose thresholds the trained models' tests then use. Experiments whose
            results no graded cell reads (cells the solution tags 'skip-when-grading') are left unrun
            unless a student's cell reads what they define, or --run-all-cells is given.
sandbox:    each notebook runs in bubblewrap (bwrap must be installed), on a private copy of that one
            submission, without network, the gradebook, solutions/ or other students' files.
database:   nbgrader's gradebook: SQLite in COURSE/gradebook.db, or PostgreSQL when
            NBGRADER_DB_URL=postgresql://user@host/gradebook is set (nbgrader_config.py reads it).
cluster:    --cluster tcp://HOST:8786 sends the notebooks to Dask workers (dask worker ADDRESS
            --nthreads 1) instead of local processes; the gradebook stays on this machine.
folders:    reads COURSE/submitted/STUDENT/ASSIGNMENT/, writes COURSE/autograded/STUDENT/ASSIGNMENT/
            (the graded notebook and its *.verdicts.json) and a record per finished student under
            COURSE/autograded/.course-grade/ (what makes a run resumable).
afterwards: nbgrader generate_feedback ASSIGNMENT; python -m course_grading report ASSIGNMENT;
            python -m course_grading export (grades for an LMS)."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_grading grade", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Autograde every submission of an assignment in parallel, each in a sandbox, "
                    "through nbgrader's gradebook.\nRun it again after a crash: finished students are kept.",
        epilog=GRADE_HELP)
    parser.add_argument("assignment", help="the assignment, e.g. 01_numpy_mlp")
    parser.add_argument("--workers", type=int, default=None, help="local worker processes (default: one per core)")
    parser.add_argument("--cluster", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://10.0.0.5:8786")
    parser.add_argument("--student", default="*", help="only these students (nbgrader's pattern, default all)")
    parser.add_argument("--course", default=".", help="the course folder (with nbgrader_config.py)")
    parser.add_argument("--force", action="store_true", help="grade finished students again")
    parser.add_argument("--cell-timeout", type=int, help="seconds per cell (default: the course's configuration)")
    parser.add_argument("--notebook-timeout", type=int, help="seconds per notebook")
    parser.add_argument("--memory", type=float, help="GiB of data each process of a kernel may hold")
    parser.add_argument("--output-limit", type=float, help="MiB of output a notebook may produce")
    parser.add_argument("--run-all-cells", action="store_true",
                        help="also run the cells tagged skip-when-grading (with --force for students graded before)")
    args = parser.parse_args(argv)
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be at least 1, got {args.workers}")
    for option in ("cell_timeout", "notebook_timeout", "memory", "output_limit"):
        value = getattr(args, option)
        if value is not None and not value > 0:
            parser.error(f"--{option.replace('_', '-')} must be a positive number, got {value}")
    course = course_folder(parser, args.course)
    if not list(course.glob(f"submitted/*/{args.assignment}")):
        parser.error(f"no submissions of {args.assignment!r} in {course / 'submitted'} "
                     "(expected submitted/<student>/<assignment>/)")
    from nbgrader.coursedir import CourseDirectory
    from tqdm.auto import tqdm
    config = course_config(course)
    problem = sandbox_problem() if config.GuardedExecute.get("sandbox", True) else None
    if problem:
        parser.error(f"the sandbox cannot start on this machine: {problem}")
    config.CourseDirectory.root = str(course)
    config.CourseDirectory.assignment_id = args.assignment
    config.CourseDirectory.student_id = args.student
    for option, section, name, scale in (("cell_timeout", "ExecutePreprocessor", "timeout", 1),
                                         ("notebook_timeout", "GuardedExecute", "notebook_timeout", 1),
                                         ("memory", "GuardedExecute", "memory_limit", 1024 ** 3),
                                         ("output_limit", "GuardedExecute", "output_limit", 1024 ** 2)):
        value = getattr(args, option)
        if value is not None:
            config[section][name] = int(value * scale)
    if args.run_all_cells:
        config.SkipExperiments.enabled = False
    total = len(list(course.glob(f"submitted/{args.student}/{args.assignment}")))
    bar = tqdm(total=total, desc=f"grading {args.assignment}", unit="student")
    counts = {"done": 0, "failed": 0}

    def progress(student, record):
        counts["failed" if record["outcome"].startswith("failed") else "done"] += 1
        bar.update(1)
        bar.set_postfix(done=counts["done"], failed=counts["failed"], remaining=total - bar.n)

    environment = {name: os.environ[name] for name in GRADER_ENVIRONMENT if name in os.environ}
    if not args.cluster:  # local workers share this machine's cores (a cluster's workers set their own)
        threads = str(max(1, (os.cpu_count() or 1) // (args.workers or os.cpu_count() or 1)))
        environment.update({name: os.environ.get(name, threads) for name in THREAD_VARIABLES})
    executor, close = make_executor(args.workers, args.cluster)
    coursedir = CourseDirectory(config=config)
    grader = ClassAutograde(executor, progress=progress, environment=environment, coursedir=coursedir,
                            config=config)
    grader.force = args.force
    start = time.perf_counter()
    try:
        with warnings.catch_warnings():  # nbgrader's gradebook makes SQLAlchemy warn about its own sessions
            warnings.filterwarnings("ignore", r"Object of type <Submitted\w*> not in session", SAWarning)
            grader.start()
    finally:
        bar.close()
        close()
    print(outcome_table(grader.outcomes))
    print(f"{counts['done']} graded or kept, {counts['failed']} failed, in {time.perf_counter() - start:.0f} s; "
          f"feedback: nbgrader generate_feedback {args.assignment}; grades: nbgrader export")
    return 1 if counts["failed"] else 0
