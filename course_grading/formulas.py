"""Formulas in Formgrader's grading page and the feedback files, drawn without MathJax.

nbgrader's ``formgrade`` and ``feedback`` templates load MathJax from a CDN, which no setting reaches, so
offline their formulas stayed raw LaTeX. ``FormulasAsMathML``, an nbconvert preprocessor that
``nbgrader_config.py`` gives to every ``HTMLExporter``, acts on those two templates only: it turns the
``$...$`` and ``$$...$$`` of each markdown cell into MathML (latex2mathml), which the browser draws itself,
online or not, from a file or under Jupyter's sandboxed ``/files/``. Code spans, fenced code and ``\\$`` are
left alone; a formula latex2mathml cannot read stays as it was written. The grading page's own script waits
for MathJax to finish before it scrolls to the cell being graded; where MathJax could not load, a stand-in
(``MATHJAX_STAND_IN``, first in the page) tells it MathJax is done.
"""
from __future__ import annotations

import re

from latex2mathml.converter import convert
from nbconvert.preprocessors import Preprocessor
from nbformat.v4 import new_markdown_cell

from course_grading.formgrade import GRADING_TEMPLATE

FEEDBACK = "feedback"
MATHJAX_STAND_IN = """<script>
if (!(window.MathJax && window.MathJax.Hub)) {  // MathJax did not load (the formulas are MathML anyway)
    window.MathJax = {Hub: {Startup: {signal: {Interest: function (listener) { listener("End"); }}}}};
}
</script>"""
CODE = re.compile(r"(```.*?```|~~~.*?~~~|`[^`\n]*`)", re.S)
# $$display$$, or $inline$: within a paragraph, no space after the opening dollar, no digit after the closing one
FORMULA = re.compile(r"(?<![\\$])\$\$(?P<display>.+?)\$\$"
                     r"|(?<![\\$])\$(?P<inline>[^\s$](?:[^$\n]|\n(?![ \t]*\n))*?)(?<!\\)\$(?!\d)", re.S)
# Characters markdown would read inside MathML's text (emphasis, code, links, tables, escapes)
MARKDOWN_SPECIAL = re.compile(r"[*_`\[\]|~\\]")


def mathml(tex: str, display: bool) -> str | None:
    """One line of MathML that markdown passes through untouched, or None where latex2mathml fails."""
    try:
        markup = convert(tex, display="block" if display else "inline")
    except Exception:  # latex2mathml raises many kinds of error on TeX it does not know
        return None
    text = lambda m: ">" + MARKDOWN_SPECIAL.sub(lambda c: f"&#{ord(c.group())};", m.group(1)) + "<"
    return re.sub(r">([^<]+)<", text, markup.replace("\n", " "))


def formulas_as_mathml(markdown: str) -> str:
    """The markdown with each formula outside code replaced by its MathML."""
    def replace(match):
        display = match.group("display") is not None
        markup = mathml(match.group("display") if display else match.group("inline"), display)
        return match.group() if markup is None else markup

    parts = CODE.split(markdown)  # odd items are code
    return "".join(part if i % 2 else FORMULA.sub(replace, part) for i, part in enumerate(parts))


class FormulasAsMathML(Preprocessor):
    """Turn the formulas of markdown cells into MathML on Formgrader's grading page and in feedback."""

    def preprocess(self, nb, resources):
        template = getattr(self.parent, "template_name", None)
        if template not in (GRADING_TEMPLATE, FEEDBACK):
            return nb, resources
        for cell in nb.cells:
            if cell.cell_type == "markdown":
                cell.source = formulas_as_mathml(cell.source)
        if template == GRADING_TEMPLATE:
            nb.cells.insert(0, new_markdown_cell(MATHJAX_STAND_IN))
        return nb, resources
