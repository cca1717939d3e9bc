"""Formgrader's manual grading with the model answer beside the student's.

``ModelAnswers`` is an nbconvert preprocessor that ``nbgrader_config.py`` gives to every ``HTMLExporter``.
It acts only on Formgrader's grading page (the exporter's ``formgrade`` template): after each written
answer (a graded markdown cell the student writes) it inserts the model answer, read from that cell of
the source notebook (``solutions/NN_name/NN_name.ipynb``). Feedback (the ``feedback`` template) and every
other export are left as they were, so no model answer reaches a student.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_markdown_cell
from nbgrader.coursedir import CourseDirectory

GRADING_TEMPLATE = "formgrade"


def written_answers(nb) -> dict:
    """grade_id -> source of each graded markdown cell the student writes."""
    return {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in nb.cells
            if cell.cell_type == "markdown" and cell.metadata.get("nbgrader", {}).get("solution")
            and cell.metadata["nbgrader"].get("grade")}


class ModelAnswers(Preprocessor):
    """Insert the model answer after each written answer on Formgrader's grading page (see the module)."""

    def preprocess(self, nb, resources):
        assignment, notebook = resources.get("assignment_id"), resources.get("notebook_id")
        if getattr(self.parent, "template_name", None) != GRADING_TEMPLATE or not (assignment and notebook):
            return nb, resources
        coursedir = CourseDirectory(config=self.config)
        source = Path(coursedir.format_path(coursedir.source_directory, ".", assignment), f"{notebook}.ipynb")
        if not source.is_file():
            return nb, resources
        answers = written_answers(nbformat.read(source, as_version=4))
        cells = []
        for cell in nb.cells:
            cells.append(cell)
            grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
            if cell.cell_type == "markdown" and grade_id in answers:
                cells.append(new_markdown_cell(
                    f"> **Model answer to `{grade_id}`** (for graders: from `solutions/`, never in feedback)\n>\n"
                    + "\n".join(f"> {line}" for line in answers[grade_id].splitlines())))
        nb.cells = cells
        return nb, resources
