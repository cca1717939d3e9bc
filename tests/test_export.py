"""``python -m course_grading export``: a real nbgrader gradebook, SQLite and PostgreSQL, to Canvas's
import CSV and a plain one, cell by cell.

The class: Ada (Canvas id 1001) with manual scores, a manual score over an autograded one, extra
credit and half a point of late penalty; Grace, late by 3 points, with no submission of the second
assignment; a student known by id alone, with a real zero and a penalty larger than the score, whose
written answer is not graded yet; Jane, who submitted nothing.
"""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from nbgrader.api import Gradebook

from course_grading import export
from course_grading.course import gradebook_url
from notebook_cells import ROOT

# nbgrader's add_submission itself makes SQLAlchemy warn, in any gradebook
pytestmark = pytest.mark.filterwarnings("ignore:Object of type:sqlalchemy.exc.SAWarning")

CANVAS = [
    ["Student", "ID", "SIS User ID", "SIS Login ID", "Section", "01_numpy_mlp", "02_backprop"],
    ["Points Possible", "", "", "", "", "20", "10"],
    ["anon42", "", "", "anon42", "", "0", "0"],
    ["Doe-Smith, Jane", "", "", "jdoe", "", "", ""],
    ["Hopper, Grace", "", "", "ghopper", "", "17", ""],
    ["Lovelace, Ada", "1001", "", "alovelace", "", "17.5", "9.5"],
]
PLAIN = [
    ["student_id", "first_name", "last_name", "email", "01_numpy_mlp", "01_numpy_mlp_max", "02_backprop",
     "02_backprop_max", "total", "max_total"],
    ["anon42", "", "", "", "0", "20", "0", "10", "0", "30"],
    ["jdoe", "Jane", "Doe-Smith", "jane@example.org", "", "20", "", "10", "0", "30"],
    ["ghopper", "Grace", "Hopper", "", "17", "20", "", "10", "17", "30"],
    ["alovelace", "Ada", "Lovelace", "ada@example.org", "17.5", "20", "9.5", "10", "27", "30"],
]


def alembic_on_path(monkeypatch) -> None:
    """nbgrader runs ``alembic`` (next to this Python) when it creates a gradebook."""
    monkeypatch.setenv("PATH", os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))


@pytest.fixture(autouse=True)
def alembic(monkeypatch):
    alembic_on_path(monkeypatch)


def grade(gb, cell, notebook, assignment, student, auto=None, manual=None, extra=None, penalty=None):
    g = gb.find_grade(cell, notebook, assignment, student)
    g.auto_score, g.manual_score, g.extra_credit = auto, manual, extra
    g.needs_manual_grade = manual is None and g.cell_type == "markdown"
    if penalty is not None:
        gb.find_submission_notebook(notebook, assignment, student).late_submission_penalty = penalty
    gb.db.commit()


def build_class(db_url: str, students: bool = True) -> None:
    """The gradebook of the module's docstring: 01_numpy_mlp (two notebooks, 20 points), 02_backprop (10)."""
    with Gradebook(gradebook_url(db_url), course_id="dl-images") as gb:
        # assignments added out of name order, with due dates that sort the other way
        gb.add_assignment("02_backprop", duedate="2030-01-01 00:00:00")
        gb.add_notebook("bp", "02_backprop")
        gb.add_grade_cell("c1", "bp", "02_backprop", max_score=7.5, cell_type="code")
        gb.add_grade_cell("w1", "bp", "02_backprop", max_score=2.5, cell_type="markdown")
        gb.add_assignment("01_numpy_mlp", duedate="2031-01-01 00:00:00")
        gb.add_notebook("forward", "01_numpy_mlp")
        gb.add_grade_cell("c1", "forward", "01_numpy_mlp", max_score=5, cell_type="code")
        gb.add_grade_cell("w1", "forward", "01_numpy_mlp", max_score=5, cell_type="markdown")
        gb.add_notebook("train", "01_numpy_mlp")
        gb.add_grade_cell("c2", "train", "01_numpy_mlp", max_score=10, cell_type="code")
        if not students:
            return
        gb.add_student("alovelace", first_name="Ada", last_name="Lovelace", email="ada@example.org",
                       lms_user_id="1001")
        gb.add_student("ghopper", first_name="Grace", last_name="Hopper")
        gb.add_student("anon42")
        gb.add_student("jdoe", first_name="Jane", last_name="Doe-Smith", email="jane@example.org")

        gb.add_submission("01_numpy_mlp", "alovelace")  # 5 + (4 + 1 extra) + 8 (manual over auto 6) - 0.5
        grade(gb, "c1", "forward", "01_numpy_mlp", "alovelace", auto=5)
        grade(gb, "w1", "forward", "01_numpy_mlp", "alovelace", manual=4, extra=1, penalty=0.5)
        grade(gb, "c2", "train", "01_numpy_mlp", "alovelace", auto=6, manual=8)
        gb.add_submission("02_backprop", "alovelace")  # 7.5 + 2
        grade(gb, "c1", "bp", "02_backprop", "alovelace", auto=7.5)
        grade(gb, "w1", "bp", "02_backprop", "alovelace", manual=2)

        gb.add_submission("01_numpy_mlp", "ghopper")  # 20 - 3
        grade(gb, "c1", "forward", "01_numpy_mlp", "ghopper", auto=5)
        grade(gb, "w1", "forward", "01_numpy_mlp", "ghopper", manual=5)
        grade(gb, "c2", "train", "01_numpy_mlp", "ghopper", auto=10, penalty=3)

        gb.add_submission("01_numpy_mlp", "anon42")  # a real zero
        grade(gb, "c1", "forward", "01_numpy_mlp", "anon42", auto=0)
        grade(gb, "w1", "forward", "01_numpy_mlp", "anon42", manual=0)
        grade(gb, "c2", "train", "01_numpy_mlp", "anon42", auto=0)
        gb.add_submission("02_backprop", "anon42")  # 2.5 - 5, never below 0; w1 not graded yet
        grade(gb, "c1", "bp", "02_backprop", "anon42", auto=2.5, penalty=5)


def rows(path: Path) -> list[list[str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def built_class(tmp_path_factory):
    """The class in SQLite, built once (nbgrader takes seconds to create a gradebook)."""
    path = tmp_path_factory.mktemp("class") / "gradebook.db"
    with pytest.MonkeyPatch.context() as patch:
        alembic_on_path(patch)
        build_class(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(built_class, tmp_path):
    """A copy of the class's gradebook, for this test alone."""
    shutil.copy(built_class, tmp_path / "gradebook.db")
    return f"sqlite:///{tmp_path / 'gradebook.db'}"


def test_canvas_and_plain_csv_hold_each_score_and_leave_missing_submissions_empty(sqlite_url, tmp_path):
    written = export.export_grades(sqlite_url, tmp_path / "grades")
    assert written["canvas"] == tmp_path / "grades" / "canvas.csv"
    assert written["grades"] == tmp_path / "grades" / "grades.csv"
    assert rows(written["canvas"]) == CANVAS
    assert rows(written["grades"]) == PLAIN
    # names with commas are quoted, CSV lines end in CRLF (RFC 4180)
    assert '\r\n"Hopper, Grace",,,ghopper,,17,\r\n' in written["canvas"].read_bytes().decode("utf-8")
    assert written["needs_manual_grade"] == ["02_backprop: anon42"]


def test_the_same_export_from_postgres(postgres_url, tmp_path):
    build_class(postgres_url)
    written = export.export_grades(postgres_url, tmp_path / "grades")
    assert rows(written["canvas"]) == CANVAS
    assert rows(written["grades"]) == PLAIN
    assert written["needs_manual_grade"] == ["02_backprop: anon42"]


def test_an_empty_postgres_database_is_refused_and_left_empty(postgres_url, tmp_path):
    import sqlalchemy

    with pytest.raises(export.ExportError, match="holds no nbgrader gradebook: check --db"):
        export.export_grades(postgres_url, tmp_path / "grades")
    engine = sqlalchemy.create_engine(gradebook_url(postgres_url))
    try:
        assert sqlalchemy.inspect(engine).get_table_names() == []
    finally:
        engine.dispose()
    assert not (tmp_path / "grades").exists()


def test_canvas_columns_from_json_and_toml_name_existing_canvas_assignments(sqlite_url, tmp_path):
    mapping = tmp_path / "canvas.json"
    mapping.write_text(json.dumps({"01_numpy_mlp": "Notebook 01 (12345)"}))
    assert export.main(["--db", sqlite_url, "--out", str(tmp_path / "a"), "--canvas-columns", str(mapping)]) == 0
    header = [*CANVAS[0][:5], "Notebook 01 (12345)", "02_backprop"]
    assert rows(tmp_path / "a" / "canvas.csv") == [header, *CANVAS[1:]]
    assert rows(tmp_path / "a" / "grades.csv") == PLAIN  # the plain file keeps nbgrader's names

    toml = tmp_path / "canvas.toml"
    toml.write_text('"01_numpy_mlp" = "Notebook 01 (12345)"\n"02_backprop" = "Backprop, by hand (678)"\n')
    assert export.main(["--db", sqlite_url, "--out", str(tmp_path / "b"), "--canvas-columns", str(toml)]) == 0
    assert rows(tmp_path / "b" / "canvas.csv")[0] == [*CANVAS[0][:5], "Notebook 01 (12345)", "Backprop, by hand (678)"]


def test_student_ids_can_go_to_sis_user_id(sqlite_url, tmp_path):
    assert export.main(["--db", sqlite_url, "--out", str(tmp_path), "--student-id-as", "sis"]) == 0
    assert rows(tmp_path / "canvas.csv")[5] == ["Lovelace, Ada", "1001", "alovelace", "", "", "17.5", "9.5"]


def test_existing_files_are_never_overwritten(sqlite_url, tmp_path, capsys):
    out = tmp_path / "grades"
    out.mkdir()
    (out / "grades.csv").write_text("the instructor's own file\n")
    first = export.export_grades(sqlite_url, out)
    assert (first["canvas"].name, first["grades"].name) == ("canvas-2.csv", "grades-2.csv")
    assert (out / "grades.csv").read_text() == "the instructor's own file\n"
    assert not (out / "canvas.csv").exists()  # the pair keeps one number
    assert export.main(["--db", sqlite_url, "--out", str(out)]) == 0
    assert sorted(path.name for path in out.iterdir()) == ["canvas-2.csv", "canvas-3.csv", "grades-2.csv",
                                                           "grades-3.csv", "grades.csv"]
    assert rows(out / "canvas-3.csv") == rows(out / "canvas-2.csv") == CANVAS
    printed = capsys.readouterr()
    assert f"wrote {out / 'canvas-3.csv'} (Canvas: Grades > Import) and {out / 'grades-3.csv'}" in printed.out
    assert "warning: 1 submission(s) still need manual grading (nbgrader formgrader), their scores are partial: " \
           "02_backprop: anon42" in printed.err


def refused(argv, capsys) -> str:
    """main's message for bad input: argparse's error, exit status 2."""
    with pytest.raises(SystemExit) as exit_:
        export.main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("columns, message", [
    ({"01_numpy_mlp": "Notebook 01 (12345)", "03_cnn": "Notebook 03"},
     "no assignment '03_cnn' in the gradebook (it has 01_numpy_mlp, 02_backprop): fix the names"),
    ({"01_numpy_mlp": "Final Score"}, "Canvas would not read 'Final Score' (for 01_numpy_mlp) as an assignment"),
    ({"01_numpy_mlp": "SIS User ID"}, "Canvas would not read 'SIS User ID'"),
    ({"01_numpy_mlp": " "}, "Canvas would not read ''"),
    ({"01_numpy_mlp": "02_backprop"}, "two assignments would go into the same Canvas column '02_backprop'"),
])
def test_a_wrong_mapping_is_refused_and_nothing_written(sqlite_url, tmp_path, capsys, columns, message):
    mapping = tmp_path / "columns.json"
    mapping.write_text(json.dumps(columns))
    err = refused(["--db", sqlite_url, "--out", str(tmp_path / "out"), "--canvas-columns", str(mapping)], capsys)
    assert message in err
    assert not (tmp_path / "out").exists()


def test_unreadable_mapping_files_are_refused(sqlite_url, tmp_path, capsys):
    bad = tmp_path / "columns.json"
    bad.write_text('["01_numpy_mlp"]')
    assert "must map assignment names to Canvas column headers" in refused(
        ["--db", sqlite_url, "--canvas-columns", str(bad)], capsys)
    assert "could not read the Canvas columns from" in refused(
        ["--db", sqlite_url, "--canvas-columns", str(tmp_path / "missing.toml")], capsys)


def test_a_missing_gradebook_is_refused_and_not_created(tmp_path, capsys):
    missing = tmp_path / "gradebook.db"
    err = refused(["--db", f"sqlite:///{missing}", "--out", str(tmp_path / "out")], capsys)
    assert f"no gradebook at {missing}: grade first" in err
    assert not missing.exists() and not (tmp_path / "out").exists()
    assert "no nbgrader_config.py in" in refused(["--course", str(tmp_path)], capsys)


def test_an_empty_gradebook_is_refused(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'gradebook.db'}"
    Gradebook(url).close()
    assert "has no assignments: nbgrader generate_assignment adds them" in refused(["--db", url], capsys)
    build_class(url, students=False)
    assert "has no students" in refused(["--db", url, "--out", str(tmp_path / "out")], capsys)
    assert not (tmp_path / "out").exists()


def test_the_default_gradebook_and_folder_are_the_courses(sqlite_url, tmp_path):
    course = tmp_path / "course"
    course.mkdir()
    (course / "nbgrader_config.py").write_text(f"c = get_config()\nc.CourseDirectory.db_url = {sqlite_url!r}\n")
    assert export.main(["--course", str(course)]) == 0
    assert rows(course / "grades" / "canvas.csv") == CANVAS
    # without db_url, nbgrader's default: gradebook.db in the course folder
    (course / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "gradebook.db").rename(course / "gradebook.db")
    assert export.course_db_url(course) == f"sqlite:///{course / 'gradebook.db'}"
    assert export.main(["--course", str(course)]) == 0
    assert rows(course / "grades" / "grades-2.csv") == PLAIN


def test_the_command_line_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "course_grading.export", "--db", f"sqlite:///{tmp_path / 'x.db'}"],
                            capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert result.returncode == 2
    assert "usage: python -m course_grading export" in result.stderr
    assert "error: no gradebook at" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("value, text", [(17.5, "17.5"), (20.0, "20"), (0.1 + 0.2, "0.3"), (1 / 3, "0.33"),
                                         (1234567.0, "1234567"), (-0.001, "0")])
def test_numbers_are_plain(value, text):
    assert export.number(value) == text
