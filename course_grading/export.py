"""Grades out to an LMS: ``python -m course_grading export [--course DIR] [--db URL] [--out DIR]
[--canvas-columns FILE] [--student-id-as login|sis]``.

Reads nbgrader's gradebook (SQLite or PostgreSQL) and writes two CSV files into ``--out`` (default
``<course>/grades/``):

``canvas.csv``, for Canvas's Grades > Import. Canvas's importer (``GradebookImporter`` in
instructure/canvas-lms, app/models/gradebook_importer.rb) wants the header of its own gradebook export:

- ``Student``: the student's name, "Last, First" like Canvas's sortable name (the id when nbgrader
  has no name); Canvas matches on it only when no id below matched;
- ``ID``: the Canvas user id, nbgrader's ``lms_user_id`` when set; Canvas matches on it first;
- ``SIS User ID`` and ``SIS Login ID``: nbgrader's student id goes into one of them, the other stays
  empty. The default is ``SIS Login ID`` (``--student-id-as login``): nbgrader's ids are JupyterHub
  user names, usually the institution's login. Use ``--student-id-as sis`` when they are student
  numbers (Canvas's SIS User ID);
- ``Section``: empty (nbgrader knows no sections; Canvas needs the column, not a value);
- one column per nbgrader assignment, in name order: its score. A header "Name (12345)" updates the
  existing Canvas assignment 12345, a header that is exactly an assignment's title updates that one,
  any other header creates a new assignment. The headers are nbgrader's names unless
  ``--canvas-columns`` maps them (a JSON or TOML file: ``{"01_numpy_mlp": "Notebook 01 (12345)"}``).

The second row, ``Points Possible``, holds each assignment's maximum; Canvas gives it to the
assignments the import creates.

``grades.csv``, one row per student: ``student_id, first_name, last_name, email``, then for each
assignment its score and ``<assignment>_max`` (its maximum), then ``total`` (the sum of the student's
scores) and ``max_total`` (the sum of all maxima). Every row reads on its own: no special rows.

A score is what ``nbgrader export`` writes: nbgrader's ``SubmittedAssignment.score`` (each graded
cell's manual score, else its autograded score, plus extra credit) less the late-submission penalty,
and never below 0. A student without a submission of an assignment gets an empty cell, not 0, so
that the LMS can tell a missing submission from a zero; it counts 0 in ``total``. (To Canvas an empty
cell is "no grade": review its import preview where Canvas already holds a grade.) Numbers have at
most two decimals (17.5, 20), the precision Canvas shows and exports.

An existing file is never overwritten: when ``canvas.csv`` or ``grades.csv`` exists, both are written
as ``canvas-2.csv`` and ``grades-2.csv`` (then -3, ...).
"""
from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
from pathlib import Path

from course_grading.course import course_config, course_folder, gradebook_url

# Headers Canvas reads as student information or as totals, never as an assignment
CANVAS_STUDENT_COLUMNS = ("Student", "ID", "SIS User ID", "SIS Login ID", "Section")
CANVAS_RESERVED = ("LastName", "FirstName", "Integration ID", "Root Account", "Current Score", "Current Points",
                   "Current Grade", "Final Score", "Final Points", "Final Grade", "Override Score",
                   "Override Grade", "Override Status")
ID_COLUMNS = {"login": "SIS Login ID", "sis": "SIS User ID"}


class ExportError(Exception):
    """Bad input, with what to do about it."""


def number(value: float) -> str:
    """17.5, 20, 0.33: at most two decimals, no trailing zeros."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def display_name(student) -> str:
    """"Last, First" as Canvas's sortable name; the part there is; else the id."""
    parts = [part for part in (student.last_name, student.first_name) if part]
    return ", ".join(parts) or student.id


def read_gradebook(db_url: str) -> dict:
    """Students, assignments (name: max score), scores ({(student, assignment): score}) and the
    submissions that still need manual grading, read without writing to the gradebook."""
    import sqlalchemy
    from nbgrader.api import Gradebook

    url = sqlalchemy.engine.make_url(gradebook_url(db_url))
    shown = url.render_as_string(hide_password=True)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        raise ExportError(f"no gradebook at {url.database}: grade first (nbgrader autograde or "
                          "python -m course_grading grade), or pass --db / --course")
    engine = sqlalchemy.create_engine(url)
    try:  # nbgrader's Gradebook would create the tables in an empty database: look first
        tables = sqlalchemy.inspect(engine).get_table_names()
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise ExportError(f"could not open the gradebook at {shown}: {getattr(err, 'orig', None) or err}") from None
    finally:
        engine.dispose()
    if "submitted_assignment" not in tables:
        raise ExportError(f"{shown} holds no nbgrader gradebook: check --db")
    try:  # course_id "": nbgrader adds no course row to the gradebook
        with Gradebook(url.render_as_string(hide_password=False), course_id="") as gradebook:
            assignments = {a.name: a.max_score for a in sorted(gradebook.assignments, key=lambda a: a.name)}
            students = sorted(gradebook.students, key=lambda s: (display_name(s).casefold(), s.id))
            scores, pending = {}, []
            for assignment in gradebook.assignments:
                for submission in assignment.submissions:
                    penalty = submission.late_submission_penalty or 0.0
                    scores[submission.student_id, assignment.name] = max(0.0, submission.score - penalty)
                    if submission.needs_manual_grade:
                        pending.append(f"{assignment.name}: {submission.student_id}")
            students = [{"id": s.id, "first_name": s.first_name or "", "last_name": s.last_name or "",
                         "email": s.email or "", "lms_user_id": s.lms_user_id or "", "name": display_name(s)}
                        for s in students]
    except sqlalchemy.exc.SQLAlchemyError as err:
        raise ExportError(f"could not read the gradebook at {shown}: {getattr(err, 'orig', None) or err} "
                          "(if nbgrader was upgraded since, run nbgrader db upgrade)") from None
    if not assignments:
        raise ExportError(f"the gradebook at {shown} has no assignments: nbgrader generate_assignment adds them")
    if not students:
        raise ExportError(f"the gradebook at {shown} has no students: nbgrader adds them as it "
                          "autogrades submissions (or nbgrader db student import)")
    return {"assignments": assignments, "students": students, "scores": scores, "pending": sorted(pending)}


def read_columns(path: Path) -> dict:
    """The Canvas column of nbgrader assignments, from a JSON or TOML file of ``"assignment" = "header"``."""
    try:
        if path.suffix.lower() == ".toml":
            import tomllib  # Python 3.11+

            mapping = tomllib.loads(path.read_text(encoding="utf-8"))
        else:
            mapping = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, ImportError) as err:
        raise ExportError(f"could not read the Canvas columns from {path}: {err}") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, str) for v in mapping.values()):
        raise ExportError(f"{path} must map assignment names to Canvas column headers, e.g. "
                          '{"01_numpy_mlp": "Notebook 01 (12345)"}')
    return mapping


def canvas_headers(assignments, canvas_columns: dict | None) -> list[str]:
    """Each assignment's Canvas header, after checking the mapping against the gradebook and Canvas."""
    canvas_columns = canvas_columns or {}
    unknown = sorted(set(canvas_columns) - set(assignments))
    if unknown:
        raise ExportError(f"no assignment {', '.join(map(repr, unknown))} in the gradebook (it has "
                          f"{', '.join(assignments)}): fix the names in the Canvas columns file")
    headers = [canvas_columns.get(name, name).strip() for name in assignments]
    for name, header in zip(assignments, headers):
        if not header or header in CANVAS_STUDENT_COLUMNS or any(word in header for word in CANVAS_RESERVED):
            raise ExportError(f"Canvas would not read {header!r} (for {name}) as an assignment: "
                              "give it an assignment's name, e.g. 'Notebook 01 (12345)'")
    repeated = sorted({header for header in headers if headers.count(header) > 1})
    if repeated:
        raise ExportError(f"two assignments would go into the same Canvas column {repeated[0]!r}: "
                          "give each its own header")
    return headers


def free_names(out_dir: Path, stems: tuple[str, ...]) -> list[Path]:
    """``stem.csv`` for each stem, else ``stem-2.csv``, ... : the first number free for all of them."""
    for n in itertools.count(1):
        paths = [out_dir / (f"{stem}.csv" if n == 1 else f"{stem}-{n}.csv") for stem in stems]
        if not any(path.exists() for path in paths):
            return paths


def write_csv(path: Path, rows) -> None:
    with open(path, "x", newline="", encoding="utf-8") as handle:  # "x": never overwrite
        csv.writer(handle).writerows(rows)


def export_grades(db_url: str, out_dir: Path, canvas_columns: dict | None = None,
                  student_id_as: str = "login") -> dict:
    """Write ``canvas.csv`` and ``grades.csv`` (see the module's docstring) from the gradebook at
    ``db_url`` into ``out_dir``. ``canvas_columns``: {nbgrader assignment: Canvas header};
    ``student_id_as``: "login" or "sis", the Canvas column of nbgrader's student id. Returns the paths
    written ("canvas", "grades") and "needs_manual_grade": the submissions ("assignment: student")
    whose score still lacks a manual grade. Raises ExportError on bad input."""
    if student_id_as not in ID_COLUMNS:
        raise ExportError(f"student_id_as must be one of {', '.join(ID_COLUMNS)}, got {student_id_as!r}")
    book = read_gradebook(db_url)
    assignments, students, scores = book["assignments"], book["students"], book["scores"]
    headers = canvas_headers(assignments, canvas_columns)

    def score(student, name):
        value = scores.get((student["id"], name))
        return "" if value is None else number(value)

    id_column = ID_COLUMNS[student_id_as]
    canvas = [[*CANVAS_STUDENT_COLUMNS, *headers],
              ["Points Possible", "", "", "", "", *(number(m) for m in assignments.values())]]
    for student in students:
        ids = {column: student["id"] if column == id_column else "" for column in ID_COLUMNS.values()}
        canvas.append([student["name"], student["lms_user_id"], ids["SIS User ID"], ids["SIS Login ID"], "",
                       *(score(student, name) for name in assignments)])

    plain = [["student_id", "first_name", "last_name", "email",
              *itertools.chain.from_iterable((name, f"{name}_max") for name in assignments), "total", "max_total"]]
    if len(set(plain[0])) != len(plain[0]):
        raise ExportError(f"the assignment names {', '.join(assignments)} clash with grades.csv's columns")
    for student in students:
        total = sum(scores.get((student["id"], name), 0.0) for name in assignments)
        plain.append([student["id"], student["first_name"], student["last_name"], student["email"],
                      *itertools.chain.from_iterable((score(student, name), number(maximum))
                                                     for name, maximum in assignments.items()),
                      number(total), number(sum(assignments.values()))])

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        canvas_path, plain_path = free_names(out_dir, ("canvas", "grades"))
        write_csv(canvas_path, canvas)
        write_csv(plain_path, plain)
    except OSError as err:
        raise ExportError(f"could not write into {out_dir}: {err}") from None
    return {"canvas": canvas_path, "grades": plain_path, "needs_manual_grade": book["pending"]}


def course_db_url(course: Path) -> str:
    """The gradebook of the course's nbgrader configuration (``CourseDirectory.db_url``), else nbgrader's
    default, ``gradebook.db`` in the course folder."""
    config = course_config(course)
    if "db_url" in config.CourseDirectory:
        return config.CourseDirectory.db_url
    return "sqlite:///" + str(course / "gradebook.db")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course_grading export",
        description="Write the gradebook's grades as canvas.csv (Canvas: Grades > Import) and grades.csv "
                    "(one row per student). Existing files are kept: new ones get the next free number.")
    parser.add_argument("--course", default=".", help="the course folder (with nbgrader_config.py), default .")
    parser.add_argument("--db", metavar="URL", help="the gradebook (default: the course's configuration), "
                        "e.g. sqlite:///gradebook.db or postgresql://user@host/gradebook")
    parser.add_argument("--out", metavar="DIR", help="where to write (default: <course>/grades)")
    parser.add_argument("--canvas-columns", metavar="FILE", type=Path,
                        help='JSON or TOML file mapping assignments to Canvas headers, e.g. '
                             '{"01_numpy_mlp": "Notebook 01 (12345)"} (default: nbgrader\'s names)')
    parser.add_argument("--student-id-as", choices=sorted(ID_COLUMNS), default="login",
                        help="Canvas column for nbgrader's student id: SIS Login ID (login, default) "
                             "or SIS User ID (sis)")
    args = parser.parse_args(argv)
    course = Path(args.course).resolve()
    db_url = args.db
    if db_url is None:
        course = course_folder(parser, args.course, instead="--course or --db")
        try:
            db_url = course_db_url(course)
        except Exception as err:  # the configuration is the course's own Python
            parser.error(f"could not read {course / 'nbgrader_config.py'}: {type(err).__name__}: {err}")
    try:
        columns = read_columns(args.canvas_columns) if args.canvas_columns else None
        written = export_grades(db_url, Path(args.out) if args.out else course / "grades", columns,
                                args.student_id_as)
    except ExportError as err:
        parser.error(str(err))
    print(f"wrote {written['canvas']} (Canvas: Grades > Import) and {written['grades']}")
    if written["needs_manual_grade"]:
        print(f"warning: {len(written['needs_manual_grade'])} submission(s) still need manual grading "
              f"(nbgrader formgrader), their scores are partial: {', '.join(written['needs_manual_grade'])}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
