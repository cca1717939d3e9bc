"""What a student wrote or printed, shown on Formgrader's pages and in feedback without running.

nbgrader renders a submission's markdown and outputs as HTML as they are, in the instructor's logged-in
Formgrader: a ``<script>`` or an ``onerror=`` in a markdown cell, or an HTML or JavaScript output printed
by the student's code, would run there with the instructor's rights (and could change grades through
Formgrader's API). ``nbgrader_config.py`` gives every ``HTMLExporter`` (nbgrader's only use of it: the
grading page and the feedback files) two things from here:

- ``markdown2html``, the markdown filter the templates call, which renders as nbconvert does and then
  keeps only an allow-list of tags, attributes, URL schemes and CSS properties (MathML included); the one
  exception is the course's own MathJax stand-in (course_grading/formulas.py), a constant;
- ``SafeOutputs``, which applies the same allow-list to HTML and markdown outputs and removes the
  outputs that are code (JavaScript, SVG, widgets and other rich types); text and PNG/JPEG images stay.
"""
from __future__ import annotations

from bleach import Cleaner
from bleach.css_sanitizer import CSSSanitizer
from jinja2 import pass_context
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.preprocessors.sanitize import SanitizeHTML

from course_grading.formulas import MATHJAX_STAND_IN

MATHML = {"math", "mrow", "mi", "mo", "mn", "ms", "mtext", "mspace", "msub", "msup", "msubsup", "mfrac", "msqrt",
          "mroot", "mover", "munder", "munderover", "mtable", "mtr", "mtd", "mlabeledtr", "mstyle", "mpadded",
          "mphantom", "menclose", "merror", "mmultiscripts", "mprescripts", "none", "semantics", "annotation"}
HTML = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "a", "em", "strong", "b", "i", "u", "s", "del", "ins",
        "sub", "sup", "small", "mark", "code", "kbd", "samp", "var", "pre", "blockquote", "ul", "ol", "li", "dl",
        "dt", "dd", "table", "caption", "colgroup", "col", "thead", "tbody", "tfoot", "tr", "th", "td", "img",
        "div", "span", "details", "summary", "figure", "figcaption", "abbr", "cite", "q"}
HTML_ATTRIBUTES = {"class", "id", "title", "style", "align", "colspan", "rowspan", "alt", "width", "height",
                   "src", "href", "start"}
CSS = ["text-align", "vertical-align", "color", "background-color", "font-weight", "font-style", "width",
       "height", "max-width", "margin", "padding", "border", "border-collapse", "white-space"]


def allowed_attribute(tag: str, name: str, value: str) -> bool:
    """MathML's presentation attributes, and a short list for HTML; never an event handler or a link in MathML."""
    if name.startswith("on") or name in ("href", "xlink:href", "src") and tag in MATHML:
        return False
    return tag in MATHML or name in HTML_ATTRIBUTES


CLEANER = Cleaner(tags=HTML | MATHML, attributes=allowed_attribute, protocols=["http", "https", "mailto", "data"],
                  css_sanitizer=CSSSanitizer(allowed_css_properties=CSS), strip=False, strip_comments=True)


def safe_html(html: str) -> str:
    """The HTML with everything outside the allow-list escaped, so that it shows as text and never runs."""
    return CLEANER.clean(html)


@pass_context
def markdown2html(context, source: str) -> str:
    """nbconvert's HTMLExporter.markdown2html (attachments, anchor links), then ``safe_html``."""
    if source == MATHJAX_STAND_IN:
        return source
    cell = context.get("cell", {})
    path = context.get("resources", {}).get("metadata", {}).get("path", "")
    renderer = IPythonRenderer(escape=False, attachments=cell.get("attachments", {}), path=path)
    return safe_html(MarkdownWithMath(renderer=renderer).render(source))


class SafeOutputs(SanitizeHTML):
    """Outputs through ``safe_html``; rich outputs that are code (JavaScript, SVG, widget views) removed."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.outputs = self.sanitize_code_outputs(cell.outputs)
        return cell, resources

    def sanitize_html_tags(self, html_str):
        return safe_html(html_str)
