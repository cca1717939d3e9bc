"""The instructor's summary of what the autograder's integrity checks found in a class."""
from __future__ import annotations

import json
from pathlib import Path

from course_grading.preprocessors import REPORT_SUFFIX


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
