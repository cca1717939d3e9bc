"""Each notebook's first cells: its run times as measured, from one source (README, Results), how to turn
fast mode on, and a Colab install pinned to the release."""
from __future__ import annotations

import re

import nbformat
import pytest

from notebook_cells import ROOT, assignments, read_solution

RESULT = re.compile(r"[\d,]+(?:–[\d,]+)?")  # 591, 1,200 or 944–958


def measured_times() -> dict[str, dict[str, str]]:
    """notebook → {"full": seconds, "fast": seconds} as the README's Results table writes them."""
    section = ROOT.joinpath("README.md").read_text().split("\n## Results", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("|")]
    columns = [cell.strip() for cell in lines[0].strip("|").split("|")]
    full, fast = columns.index("notebook s"), columns.index("fast-mode s")
    times = {}
    for line in lines[2:]:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        times[cells[0]] = {"full": RESULT.match(cells[full]).group(), "fast": RESULT.match(cells[fast]).group()}
    return times


def read_notebook(path):
    return nbformat.read(path, as_version=4)


def header(assignment: str) -> str:
    return read_solution(assignment).cells[0].source


@pytest.mark.parametrize("assignment", assignments())
def test_header_shows_the_measured_times(assignment):
    times = measured_times()
    assert assignment in times, f"README's Results table has no row for {assignment}: measure it (make results)"
    text = header(assignment)
    for mode, label in (("full", "full mode"), ("fast", "fast mode")):
        shown = re.findall(rf"{label}: ({RESULT.pattern}) s\b", text)
        assert shown == [times[assignment][mode]], \
            f"{assignment}'s header should say '{label}: {times[assignment][mode]} s' once (README, Results), found {shown}"


@pytest.mark.parametrize("assignment", assignments())
def test_header_says_how_to_turn_on_fast_mode(assignment):
    text = header(assignment)
    assert "COURSE_FAST=1 make lab" in text and "%env COURSE_FAST=1" in text, \
        f"{assignment}'s header should say how to turn fast mode on, in a shell and in a notebook (Colab)"


def test_the_times_are_read_from_the_table():
    times = measured_times()
    assert times["03_building_cnns"]["full"] == "660" and times["04_optimizers"]["full"] == "1,339"


def test_colab_installs_the_release_the_notebook_came_from():
    """The setup cell pins course_lib to course.toml's tag, not a branch that moves on (`main`)."""
    config = dict(re.findall(r'^(\w+) = "([^"]*)"', ROOT.joinpath("course.toml").read_text(), re.M))
    assert re.fullmatch(r"v\d+(\.\d+)+", config["student_ref"]), \
        f"course.toml's student_ref {config['student_ref']!r} should be a release tag such as v0.1.0, not a branch"
    pinned = f"course_lib @ git+https://github.com/{config['student_repository']}@{config['student_ref']}"
    for path in sorted(ROOT.glob("notebooks/*/*.ipynb")):
        setup = next(c.source for c in read_notebook(path).cells if c.metadata.get("nbgrader", {}).get("grade_id") == "setup")
        assert pinned in setup, f"{path.name}'s setup cell should install {pinned}"
