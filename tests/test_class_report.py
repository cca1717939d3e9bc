"""The class report from the records the autograder writes (``*.verdicts.json``, ``*.integrity.json``): the
numbers per cell, mistake and student, the students who lost points where the class did not, the HTML page
and the report across assignments. The records here are written by hand, as plain data; the hostile class in
test_hostile_submissions checks that real autograde writes them."""
from __future__ import annotations

import csv
import json
import subprocess
import sys

from course_grading.report import class_report, class_summary, course_report, outliers


def cell(grade_id, points, verdict=None, mistake=None):
    return {"grade_id": grade_id, "points": points, "verdict": verdict, "mistake": mistake}


RIGHT = [cell("test_a", 2), cell("test_b", 3), cell("test_c", 1)]


def write_class(root, assignment="01_x", students=None):
    """Five students: three right, one missing test_b's named mistake (also missed by another student),
    one who lost test_a, which everybody else got."""
    students = students or {
        "ann": RIGHT, "bob": RIGHT, "cid": RIGHT,
        "dee": [cell("test_a", 2), cell("test_b", 3, "it is off by one", "x.b.off_by_one"), cell("test_c", 1)],
        "eve": [cell("test_a", 2, "returned None", "x.a.none"), cell("test_b", 3, "it is off by two", "x.b.off_by_one"),
                cell("test_c", 1)],
    }
    for i, (student, cells) in enumerate(students.items()):
        folder = root / "autograded" / student / assignment
        folder.mkdir(parents=True)
        record = {"student": student, "assignment": assignment, "notebook": assignment, "seconds": 10.0 + i,
                  "cells": cells}
        (folder / f"{assignment}.verdicts.json").write_text(json.dumps(record))
    if "eve" in students:
        report = {"student": "eve", "notebook": assignment, "findings": ["test cell test_a was edited and restored"],
                  "review": []}
        (root / "autograded" / "eve" / assignment / f"{assignment}.integrity.json").write_text(json.dumps(report))


def test_summary_counts_cells_mistakes_and_students(tmp_path):
    write_class(tmp_path)
    from course_grading.report import verdict_records

    summary = class_summary(verdict_records(tmp_path, "01_x"))
    assert summary["cells"]["test_a"] == {"points": 2, "submissions": 5, "full_marks": 4}
    assert summary["cells"]["test_b"]["full_marks"] == 3
    assert summary["mistakes"][0] == {"cell": "test_b", "mistake": "x.b.off_by_one", "students": 2,
                                      "example": "it is off by one"}
    assert summary["students"]["eve"]["earned"] == 1 and summary["students"]["eve"]["max"] == 6
    assert summary["students"]["dee"]["earned"] == 3
    # test_a: 4 of 5 right (80% >= 75%); test_b: 3 of 5 (60%): only eve's test_a counts
    assert outliers(summary) == [("eve", 2, ["test_a"])]


def test_report_writes_csvs_and_a_page_with_the_distribution(tmp_path):
    write_class(tmp_path)
    printed = class_report(tmp_path, "01_x")
    assert printed.startswith("01_x: 5 graded submission(s); autograded points: median 6 of 6")
    assert "     2  eve  test_a" in printed and "integrity findings: 1 submission(s)" in printed
    folder = tmp_path / "reports" / "01_x"
    students = {row["student"]: row for row in csv.DictReader(open(folder / "students.csv"))}
    assert students["eve"] == {"student": "eve", "earned": "1", "max": "6", "lost_where_class_did_not": "2",
                               "seconds": "14.0"}
    page = (folder / "report.html").read_text()
    assert "3 student(s) with 6 point(s)" in page and "1 student(s) with 1 point(s)" in page
    assert "aria-label='80%'" in page                       # test_a's share with full marks
    assert "test cell test_a was edited and restored" in page
    assert "&lt;" not in page.split("<body>")[1].split("<svg")[0]   # the page's own markup is not escaped


def test_messages_are_escaped_in_the_page(tmp_path):
    write_class(tmp_path, students={"ann": [cell("test_a", 2, "<script>alert(1)</script>", "x.a.html")]})
    class_report(tmp_path, "01_x")
    page = (tmp_path / "reports" / "01_x" / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def test_report_across_assignments(tmp_path):
    write_class(tmp_path, "01_x")
    write_class(tmp_path, "02_y", students={"ann": RIGHT, "fay": [cell("test_a", 2), cell("test_b", 3, "no", "y.b.no"),
                                                                 cell("test_c", 1)]})
    done = subprocess.run([sys.executable, "-m", "course_grading", "report", "--all", str(tmp_path)],
                          capture_output=True, text=True, check=True)
    assert "01_x        5       6 / 6" in done.stdout and "x.b.off_by_one in test_b (2)" in done.stdout, done.stdout
    rows = {row["student"]: row for row in csv.DictReader(open(tmp_path / "reports" / "students.csv"))}
    assert rows["ann"] == {"student": "ann", "01_x": "6", "02_y": "6"}
    assert rows["fay"] == {"student": "fay", "01_x": "", "02_y": "3"}
    index = (tmp_path / "reports" / "index.html").read_text()
    assert "<a href='01_x/report.html'>01_x</a>" in index and (tmp_path / "reports" / "02_y" / "report.html").is_file()


def test_nothing_graded_says_what_to_run(tmp_path):
    assert "run python -m course_grading grade first" in course_report(tmp_path)
    assert "run python -m course_grading grade first" in class_report(tmp_path, "01_x")


def test_records_a_submission_could_plant_are_ignored(tmp_path):
    """Only the assignment's own notebooks' records count, and the student is the folder's, not the file's."""
    write_class(tmp_path)
    (tmp_path / "solutions" / "01_x").mkdir(parents=True)
    (tmp_path / "solutions" / "01_x" / "01_x.ipynb").write_text("{}")
    eve = tmp_path / "autograded" / "eve" / "01_x"
    forged = {"student": "ann", "cells": [cell("test_a", 2, "forged", "x.a.forged")]}
    (eve / "zz.verdicts.json").write_text(json.dumps(forged))                   # not a notebook of 01_x
    (eve / "zz.integrity.json").write_text(json.dumps({"student": "bob", "findings": ["forged"], "review": []}))
    (tmp_path / "autograded" / "eve" / "01_x" / "01_x.verdicts.json").write_text(
        json.dumps({**forged, "cells": [cell("test_a", 2)]}))                   # eve's own file, naming ann
    from course_grading.report import integrity_reports, verdict_records

    records = verdict_records(tmp_path, "01_x")
    assert sorted(record["student"] for record in records) == ["ann", "bob", "cid", "dee", "eve"]
    assert all("forged" not in json.dumps(record) for record in records)
    assert [report["student"] for report in integrity_reports(tmp_path, "01_x")] == ["eve"]


def test_a_median_of_an_even_class_is_the_mean_of_the_middle_two(tmp_path):
    write_class(tmp_path, students={"ann": RIGHT, "bob": [cell("test_a", 2, "no", "x.a.no"), cell("test_b", 3, "no", "x.b.no"),
                                                          cell("test_c", 1, "no", "x.c.no")]})
    assert class_report(tmp_path, "01_x").startswith("01_x: 2 graded submission(s); autograded points: median 3 of 6")


def test_a_message_a_spreadsheet_would_run_is_made_inert(tmp_path):
    write_class(tmp_path, students={"ann": [cell("test_a", 2, "=HYPERLINK(\"http://x\")", "x.a.formula")]})
    class_report(tmp_path, "01_x")
    rows = list(csv.DictReader(open(tmp_path / "reports" / "01_x" / "mistakes.csv")))
    assert rows[0]["example"] == "'=HYPERLINK(\"http://x\")"
