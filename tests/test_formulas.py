"""Formulas on Formgrader's grading page and in feedback as MathML (course_grading/formulas.py)."""
from __future__ import annotations

import re

import nbformat
import pytest
from nbconvert import HTMLExporter
from traitlets.config import Configurable

from course_grading.formulas import MATHJAX_STAND_IN, FormulasAsMathML, formulas_as_mathml
from notebook_cells import ROOT, assignments

MATH = '<math xmlns="http://www.w3.org/1998/Math/MathML"'


@pytest.mark.parametrize("text", ["costs $5 and $10", "in `$HOME` or ```\n$x$\n```", r"an escaped \$x\$",
                                  "$ x$ (a space after the opening dollar)", "$x\n\ny$ (two paragraphs)"])
def test_what_is_not_a_formula_stays_as_written(text):
    assert formulas_as_mathml(text) == text


def test_inline_and_display_formulas_become_mathml():
    out = formulas_as_mathml("the loss $L = -\\log p_y$ of\na batch, $x\ny$, and\n$$\n\\sum_i L_i\n$$\n")
    assert out.count(MATH) == 3 and "$" not in out
    assert out.count('display="block"') == 1 and out.count('display="inline"') == 2


def test_markdown_cannot_read_the_mathml():
    """No emphasis, code, link or table cell starts inside a formula; its text keeps its characters."""
    out = formulas_as_mathml(r"| $a*b*c$ | $\text{max_pool}[x]$ | $\lvert x \rvert$ |")
    inside = re.findall(r"<math.*?</math>", out)
    assert len(inside) == 3 and not any(re.search(r">[^<]*[*_`\[\]|~\\][^<]*<", m) for m in inside)
    html = HTMLExporter(template_name="classic").from_notebook_node(
        nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"x {inside[1]} y")]))[0]
    formula = html.split("x <math")[1].split("</math>")[0]
    assert re.search(r"max(_|&#95;)pool", formula) and "<em>" not in formula


def test_every_formula_of_the_course_is_converted():
    for name in assignments():
        notebook = nbformat.read(ROOT / "solutions" / name / f"{name}.ipynb", as_version=4)
        for cell in notebook.cells:
            if cell.cell_type == "markdown":
                left = re.sub(r"`[^`\n]*`", "", formulas_as_mathml(cell.source))
                assert not re.search(r"\$[^$]*\\[a-zA-Z]+", left), f"{name}: TeX left in {cell.source[:200]!r}"


@pytest.mark.parametrize("template, converted", [("formgrade", True), ("feedback", True), ("classic", False),
                                                 ("lab", False)])
def test_only_formgrader_and_feedback_pages_are_converted(template, converted):
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("$x^2$")])
    exporter = Configurable()
    exporter.template_name = template  # what FormulasAsMathML reads of the HTMLExporter running it
    out, _ = FormulasAsMathML(parent=exporter).preprocess(notebook, {})
    assert (MATH in out.cells[-1].source) == converted
    assert (MATHJAX_STAND_IN in out.cells[0].source) == (template == "formgrade")
