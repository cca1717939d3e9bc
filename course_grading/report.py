"""The instructor's summaries of a graded class: what the integrity checks found, and what the class got
wrong (each graded cell's verdicts and the named mistakes of the course's checks)."""
from __future__ import annotations

import csv
import html
import json
import math
import statistics
from pathlib import Path

from course_grading.preprocessors import REPORT_SUFFIX, VERDICTS_SUFFIX


def grader_records(course_root, assignment: str, suffix: str) -> list[dict]:
    """The grader's ``<notebook><suffix>`` files of ``assignment`` in ``autograded/<student>/``, for the
    assignment's own notebooks only (those of ``solutions/<assignment>/``, when it is there). The student and
    the notebook are taken from the path, never from the file: a submission's kernel could write one."""
    root = Path(course_root)
    notebooks = {path.stem for path in (root / "solutions" / assignment).glob("*.ipynb")}
    records = []
    for path in sorted((root / "autograded").glob(f"*/{assignment}/*{suffix}")):
        notebook = path.name[:-len(suffix)]
        if notebooks and notebook not in notebooks:
            continue
        try:
            record = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(record, dict):
            records.append({**record, "student": path.parent.parent.name, "notebook": notebook})
    return records


def integrity_reports(course_root, assignment: str) -> list[dict]:
    """Every ``<notebook>.integrity.json`` the autograder wrote for ``assignment``."""
    return grader_records(course_root, assignment, REPORT_SUFFIX)


def integrity_table(course_root, assignment: str) -> str:
    """One block per flagged student: what cost points, then what to look at."""
    reports = integrity_reports(course_root, assignment)
    if not reports:
        return f"{assignment}: no integrity findings in {Path(course_root) / 'autograded'}"
    lines = [f"{assignment}: {len(reports)} submission(s) with integrity findings"]
    for report in reports:
        lines.append(f"\n{report['student']} ({report['notebook']})")
        lines += [f"  - {finding}" for finding in report["findings"]]
        lines += [f"  ? {flag}" for flag in report["review"]]
    return "\n".join(lines)


# ---------------------------------------------------------------- what the class got wrong

def verdict_records(course_root, assignment: str) -> list[dict]:
    """Every ``<notebook>.verdicts.json`` the autograder wrote for ``assignment``: one per submitted notebook,
    each graded cell's verdict (None: full marks) and the id of the mistake it was failed on."""
    return grader_records(course_root, assignment, VERDICTS_SUFFIX)


# A cell most of the class got right: points lost there say more about the student than about the exercise
MOSTLY_RIGHT = 0.75


def class_summary(records: list[dict]) -> dict:
    """Per graded cell: submissions, full marks, points; per named mistake: how many students made it, in
    which cell, with one example message; per student: points earned (autograded cells are all or nothing),
    grading seconds, and the points lost on cells at least ``MOSTLY_RIGHT`` of the class got right."""
    cells: dict = {}
    mistakes: dict = {}
    for record in records:
        for cell in record["cells"]:
            row = cells.setdefault(cell["grade_id"], {"points": cell["points"], "submissions": 0, "full_marks": 0})
            row["submissions"] += 1
            row["full_marks"] += cell["verdict"] is None
            if cell["verdict"] is not None:
                key = cell.get("mistake") or "(not named)"
                entry = mistakes.setdefault((cell["grade_id"], key), {"students": [], "example": cell["verdict"]})
                entry["students"].append(record["student"])
    ranked = sorted(mistakes.items(), key=lambda item: (-len(item[1]["students"]), item[0]))
    easy = {name for name, row in cells.items() if row["full_marks"] >= MOSTLY_RIGHT * row["submissions"]}
    students: dict = {}
    for record in records:   # a student's notebooks add up
        lost = [cell for cell in record["cells"] if cell["verdict"] is not None and cell["grade_id"] in easy]
        row = students.setdefault(record["student"], {"earned": 0, "max": 0, "seconds": 0.0,
                                                      "lost_where_class_did_not": 0,
                                                      "cells_lost_where_class_did_not": []})
        row["earned"] += sum(cell["points"] for cell in record["cells"] if cell["verdict"] is None)
        row["max"] += sum(cell["points"] for cell in record["cells"])
        row["seconds"] += record.get("seconds", 0.0)
        row["lost_where_class_did_not"] += sum(cell["points"] for cell in lost)
        row["cells_lost_where_class_did_not"] += [cell["grade_id"] for cell in lost]
    return {"submissions": len(records), "cells": cells, "students": students,
            "mistakes": [{"cell": cell, "mistake": key, "students": len(entry["students"]),
                          "example": entry["example"]} for (cell, key), entry in ranked],
            "seconds": sorted(record.get("seconds", 0.0) for record in records)}


def outliers(summary: dict, count: int = 10) -> list:
    """(student, points lost on cells most of the class got right, those cells), most points first."""
    rows = [(student, row["lost_where_class_did_not"], row["cells_lost_where_class_did_not"])
            for student, row in summary["students"].items() if row["lost_where_class_did_not"]]
    return sorted(rows, key=lambda row: (-row[1], row[0]))[:count]


def class_report(course_root, assignment: str, out_dir=None) -> str:
    """Print-ready summary of ``assignment``'s graded class; writes ``cells.csv``, ``mistakes.csv``,
    ``students.csv`` and ``report.html`` into ``out_dir`` (default ``reports/<assignment>`` in the course folder)."""
    records = verdict_records(course_root, assignment)
    if not records:
        return (f"{assignment}: no graded submissions in {Path(course_root) / 'autograded'} "
                "(run python -m course_grading grade first)")
    out = Path(out_dir) if out_dir else Path(course_root) / "reports" / assignment
    return write_class_report(assignment, class_summary(records), integrity_reports(course_root, assignment), out)


def write_class_report(assignment: str, summary: dict, integrity: list, out: Path) -> str:
    """The files of :func:`class_report` from a :func:`class_summary`; returns the printed summary."""
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "cells.csv", ["cell", "points", "submissions", "full_marks"],
               [[name, row["points"], row["submissions"], row["full_marks"]] for name, row in summary["cells"].items()])
    _write_csv(out / "mistakes.csv", ["cell", "mistake", "students", "example"],
               [[row["cell"], row["mistake"], row["students"], row["example"]] for row in summary["mistakes"]])
    _write_csv(out / "students.csv", ["student", "earned", "max", "lost_where_class_did_not", "seconds"],
               [[student, row["earned"], row["max"], row["lost_where_class_did_not"], row["seconds"]]
                for student, row in sorted(summary["students"].items())])
    (out / "report.html").write_text(_html(assignment, summary, integrity), encoding="utf-8")
    seconds = summary["seconds"]
    earned = [row["earned"] for row in summary["students"].values()]
    lines = [f"{assignment}: {summary['submissions']} graded submission(s); autograded points: median "
             f"{statistics.median(earned):g} of {max(row['max'] for row in summary['students'].values()):g}; "
             f"grading took {statistics.median(seconds):.0f} s per submission (median), {seconds[-1]:.0f} s at most",
             "", "cell                              full marks"]
    lines += [f"  {name:<32}{row['full_marks']:>4} / {row['submissions']}  ({row['points']} points)"
              for name, row in summary["cells"].items()]
    lines += ["", "what the class got wrong (students, cell, mistake)"]
    lines += [f"  {row['students']:>4}  {row['cell']}  {row['mistake']}" for row in summary["mistakes"][:15]]
    lost = outliers(summary)
    if lost:
        lines += ["", f"lost points where most of the class ({MOSTLY_RIGHT:.0%}) did not (points, student, cells)"]
        lines += [f"  {points:>4g}  {student}  {', '.join(cells)}" for student, points, cells in lost]
    lines += ["", f"integrity findings: {len(integrity)} submission(s)"
              + (f" (python -m course_grading integrity {assignment})" if integrity else "")]
    lines += ["", f"written: {out / 'report.html'}, cells.csv, mistakes.csv, students.csv"]
    return "\n".join(lines)


def course_report(course_root, out_dir=None) -> str:
    """Every graded assignment's report (as :func:`class_report`), and across them ``reports/index.html``
    (one row per assignment, links to each) and ``reports/students.csv`` (each student's points per assignment)."""
    root = Path(course_root)
    assignments = sorted({path.parent.name for path in (root / "autograded").glob(f"*/*/*{VERDICTS_SUFFIX}")})
    if not assignments:
        return f"no graded submissions in {root / 'autograded'} (run python -m course_grading grade first)"
    out = Path(out_dir) if out_dir else root / "reports"
    rows, points = [], {}
    for assignment in assignments:
        records = verdict_records(root, assignment)
        if not records:   # only records of notebooks that are not the assignment's
            continue
        summary = class_summary(records)
        write_class_report(assignment, summary, integrity_reports(root, assignment), out / assignment)
        earned = [row["earned"] for row in summary["students"].values()]
        top = max(row["max"] for row in summary["students"].values())
        hardest = min(summary["cells"].items(), key=lambda item: item[1]["full_marks"] / item[1]["submissions"],
                      default=("-", {"full_marks": 0, "submissions": 0}))
        common = summary["mistakes"][0] if summary["mistakes"] else None
        rows.append((assignment, summary["submissions"], f"{statistics.median(earned):g} / {top:g}",
                     f"{hardest[0]} ({hardest[1]['full_marks']} / {hardest[1]['submissions']})",
                     f"{common['mistake']} in {common['cell']} ({common['students']})" if common else "-"))
        for student, row in summary["students"].items():
            points.setdefault(student, {})[assignment] = row["earned"]
    assignments = [row[0] for row in rows]
    out.mkdir(parents=True, exist_ok=True)
    _write_csv(out / "students.csv", ["student", *assignments],
               [[student, *(points[student].get(a, "") for a in assignments)] for student in sorted(points)])
    linked = [(Markup(f"<a href='{html.escape(row[0])}/report.html'>{html.escape(row[0])}</a>"), *row[1:]) for row in rows]
    header = ("assignment", "graded", "median points", "fewest full marks", "most common mistake (students)")
    (out / "index.html").write_text(
        f"<!doctype html><html><head><meta charset='utf-8'><title>Class report</title><style>{STYLE}</style>"
        f"</head><body><h1>Class report</h1><p>{len(points)} student(s), {len(assignments)} assignment(s)</p>"
        + _table(header, linked) + "</body></html>", encoding="utf-8")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(f"{str(v):<{w}}" for v, w in zip(row, widths)).rstrip() for row in [header, *rows]]
    return "\n".join(lines + ["", f"written: {out / 'index.html'}, {out / 'students.csv'} and each assignment's report"])


def _write_csv(path: Path, header: list, rows: list) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows([[_inert(value) for value in row] for row in rows])


def _inert(value):
    """A text a spreadsheet would run as a formula (a message can quote a student's value) gets a leading '."""
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


# ---------------------------------------------------------------- the HTML page

STYLE = ("body{font-family:sans-serif;margin:2em;max-width:70em}table{border-collapse:collapse;margin-bottom:2em}"
         "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
         "svg text{font:12px sans-serif}")


class Markup(str):
    """HTML made here (a bar), not text to escape."""


def _table(header, rows) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{v if isinstance(v, Markup) else html.escape(str(v))}</td>" for v in row)
                   + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _bar(fraction: float, width: int = 160) -> Markup:
    """A horizontal bar: the share of the class with full marks."""
    filled = round(width * fraction)
    return Markup(f"<svg width='{width}' height='12' role='img' aria-label='{fraction:.0%}'>"
                  f"<rect width='{width}' height='12' fill='#eee'/><rect width='{filled}' height='12' fill='#4a7'/></svg>")


def _histogram(values: list, top: float, label: str) -> str:
    """Students per point total, one column per whole point from 0 to ``top`` (half points count below)."""
    counts = [sum(1 for v in values if math.floor(v) == points) for points in range(math.floor(top) + 1)]
    column, height = 18, 120
    peak = max(counts) or 1
    bars = "".join(
        f"<rect x='{i * column + 1}' y='{height - height * n / peak:.0f}' width='{column - 2}' "
        f"height='{height * n / peak:.0f}' fill='#47a'><title>{n} student(s) with {i} point(s)</title></rect>"
        f"<text x='{i * column + column / 2}' y='{height + 14}' text-anchor='middle'>{i}</text>"
        for i, n in enumerate(counts))
    return (f"<svg width='{column * len(counts)}' height='{height + 20}' role='img' aria-label='{html.escape(label)}'>"
            f"{bars}</svg>")


def _html(assignment: str, summary: dict, integrity: list) -> str:
    students = summary["students"]
    top = max(row["max"] for row in students.values())
    cells = [(name, row["points"], f"{row['full_marks']} / {row['submissions']}",
              _bar(row["full_marks"] / row["submissions"])) for name, row in summary["cells"].items()]
    mistakes = [(row["students"], row["cell"], row["mistake"], row["example"]) for row in summary["mistakes"]]
    lost = [(student, points, ", ".join(cells)) for student, points, cells in outliers(summary, len(students))]
    findings = [(report["student"], "; ".join(report["findings"] + report["review"])) for report in integrity]
    seconds = summary["seconds"]
    slowest = sorted(((row["seconds"], student) for student, row in students.items()), reverse=True)[:5]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(assignment)}: class report</title>"
            f"<style>{STYLE}</style></head><body>"
            f"<h1>{html.escape(assignment)}</h1><p>{summary['submissions']} graded submission(s)</p>"
            f"<h2>Autograded points per student</h2>{_histogram([r['earned'] for r in students.values()], top, 'points')}"
            "<h2>Graded cells</h2>" + _table(("cell", "points", "full marks", "share with full marks"), cells) +
            "<h2>What the class got wrong</h2>" + _table(("students", "cell", "mistake", "example message"), mistakes) +
            f"<h2>Points lost where at least {MOSTLY_RIGHT:.0%} of the class got full marks</h2>" +
            (_table(("student", "points", "cells"), lost) if lost else "<p>none</p>") +
            "<h2>Integrity findings</h2>" + (_table(("student", "findings"), findings) if findings else "<p>none</p>") +
            f"<h2>Grading time</h2><p>median {statistics.median(seconds):.0f} s, at most {seconds[-1]:.0f} s per "
            "submission</p>" + _table(("seconds", "student"), [(f"{s:.0f}", student) for s, student in slowest]) +
            "</body></html>")
