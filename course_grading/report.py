"""The instructor's summaries of a graded class: what the integrity checks found, and what the class got
wrong (each graded cell's verdicts and the named mistakes of the course's checks)."""
from __future__ import annotations

import csv
import html
import json
from pathlib import Path

from course_grading.preprocessors import REPORT_SUFFIX, VERDICTS_SUFFIX


def integrity_reports(course_root, assignment: str) -> list[dict]:
    """Every ``<notebook>.integrity.json`` that ``nbgrader autograde`` wrote for ``assignment``."""
    folder = Path(course_root) / "autograded"
    return [json.loads(path.read_text()) for path in sorted(folder.glob(f"*/{assignment}/*{REPORT_SUFFIX}"))]


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
    """Every ``<notebook>.verdicts.json`` that ``nbgrader autograde`` wrote for ``assignment``: one per
    submission, each graded cell's verdict (None: full marks) and the id of the mistake it was failed on."""
    folder = Path(course_root) / "autograded"
    return [json.loads(path.read_text()) for path in sorted(folder.glob(f"*/{assignment}/*{VERDICTS_SUFFIX}"))]


def class_summary(records: list[dict]) -> dict:
    """Per graded cell: submissions, full marks, points; per named mistake: how many students made it, in
    which cell, with one example message; grading seconds per submission."""
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
    return {"submissions": len(records), "cells": cells,
            "mistakes": [{"cell": cell, "mistake": key, "students": len(entry["students"]),
                          "example": entry["example"]} for (cell, key), entry in ranked],
            "seconds": sorted(record.get("seconds", 0.0) for record in records)}


def class_report(course_root, assignment: str, out_dir=None) -> str:
    """Print-ready summary of ``assignment``'s graded class; writes ``cells.csv``, ``mistakes.csv`` and
    ``report.html`` into ``out_dir`` (default ``reports/<assignment>`` in the course folder)."""
    records = verdict_records(course_root, assignment)
    if not records:
        return (f"{assignment}: no graded submissions in {Path(course_root) / 'autograded'} "
                "(run python -m course_grading grade first)")
    summary = class_summary(records)
    out = Path(out_dir) if out_dir else Path(course_root) / "reports" / assignment
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "cells.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cell", "points", "submissions", "full_marks"])
        for name, row in summary["cells"].items():
            writer.writerow([name, row["points"], row["submissions"], row["full_marks"]])
    with open(out / "mistakes.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cell", "mistake", "students", "example"])
        for row in summary["mistakes"]:
            writer.writerow([row["cell"], row["mistake"], row["students"], row["example"]])
    (out / "report.html").write_text(_html(assignment, summary), encoding="utf-8")
    seconds = summary["seconds"]
    lines = [f"{assignment}: {summary['submissions']} graded submission(s); grading took "
             f"{seconds[len(seconds) // 2]:.0f} s per submission (median), {seconds[-1]:.0f} s at most", "",
             "cell                              full marks"]
    lines += [f"  {name:<32}{row['full_marks']:>4} / {row['submissions']}  ({row['points']} points)"
              for name, row in summary["cells"].items()]
    lines += ["", "what the class got wrong (students, cell, mistake)"]
    lines += [f"  {row['students']:>4}  {row['cell']}  {row['mistake']}" for row in summary["mistakes"][:15]]
    lines += ["", f"written: {out / 'report.html'}, {out / 'cells.csv'}, {out / 'mistakes.csv'}"]
    return "\n".join(lines)


def _html(assignment: str, summary: dict) -> str:
    def table(header, rows):
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in row) + "</tr>" for row in rows)
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    cells = [(name, row["points"], f"{row['full_marks']} / {row['submissions']}") for name, row in summary["cells"].items()]
    mistakes = [(row["students"], row["cell"], row["mistake"], row["example"]) for row in summary["mistakes"]]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(assignment)}: class report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}"
            "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}</style></head><body>"
            f"<h1>{html.escape(assignment)}</h1><p>{summary['submissions']} graded submission(s)</p>"
            "<h2>Graded cells</h2>" + table(("cell", "points", "full marks"), cells) +
            "<h2>What the class got wrong</h2>" + table(("students", "cell", "mistake", "example message"), mistakes) +
            "</body></html>")
