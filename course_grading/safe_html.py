"""What a student wrote or printed, shown on Formgrader's pages and in feedback without running.

nbgrader renders a submission's markdown and outputs as HTML as they are, in the instructor's logged-in
Formgrader: a ``<script>`` or an ``onerror=`` in a markdown cell, or an HTML or JavaScript output printed
by the student's code, would run there with the instructor's rights (and could change grades through
Formgrader's API). ``nbgrader_config.py`` gives every ``HTMLExporter`` (nbgrader's only use of it: the
grading page and the feedback files) two things from here:

- ``markdown2html``, the markdown filter the templates call, which renders as nbconvert does and then
  keeps only an allow-list of tags, attributes, URL schemes and CSS properties (MathML included); the one
  exception is the course's own MathJax stand-in (course_grading/formulas.py), a constant;
- ``SafeOutputs``, which applies the same allow-list to HTML and markdown outputs, removes the outputs that
  are code (JavaScript, SVG, widgets and other rich types), and keeps of an output's metadata only an
  image's width and height, as numbers (the template writes them into the tag unquoted); text and PNG/JPEG
  images stay.

Found by attacking it (a helper agent, rendering in Chromium): image sizes that close the tag, data-*
attributes that Bootstrap 3 on the grading page turns into HTML, and a ``files/javascript:`` link that
nbconvert's ``strip_files_prefix``, applied after this filter, would turn into a script URL.
"""
from __future__ import annotations

import re

from bleach import Cleaner
from bleach.css_sanitizer import CSSSanitizer
from jinja2 import pass_context
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbconvert.filters.strings import strip_files_prefix
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
MATHML_ATTRIBUTES = {"xmlns", "display", "mathvariant", "displaystyle", "scriptlevel", "mathcolor", "mathbackground",
                     "mathsize", "lspace", "rspace", "stretchy", "symmetric", "largeop", "movablelimits", "accent",
                     "accentunder", "fence", "separator", "form", "minsize", "maxsize", "linethickness",
                     "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines", "frame",
                     "width", "height", "depth", "voffset", "notation", "encoding", "class", "id", "style"}
# nbconvert's strip_files_prefix, which the templates apply after this filter, removes these from URLs
FILES_PREFIX = re.compile(r"^\s*/?files/", re.I)
IMAGES = ("image/png", "image/jpeg")
CSS = ["text-align", "vertical-align", "color", "background-color", "font-weight", "font-style", "width",
       "height", "max-width", "margin", "padding", "border", "border-collapse", "white-space"]


def allowed_attribute(tag: str, name: str, value: str) -> bool:
    """A short list of HTML's attributes and of MathML's presentation attributes; no URL nbconvert rewrites later."""
    if name in ("href", "src") and FILES_PREFIX.match(value):
        return False
    return name in (MATHML_ATTRIBUTES if tag in MATHML else HTML_ATTRIBUTES)


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
    html = MarkdownWithMath(renderer=renderer).render(source)
    while (stripped := strip_files_prefix(html)) != html:  # as the template will, so that it finds nothing left
        html = stripped
    return safe_html(html)


def image_sizes(metadata: dict) -> dict:
    """Of an output's metadata, only the width and height of its images (top level or per type), as integers."""
    def sizes(entry) -> dict:
        return {k: int(v) for k, v in entry.items() if k in ("width", "height") and re.fullmatch(r"\d{1,5}", str(v))}

    kept = {kind: sizes(entry) for kind, entry in metadata.items() if kind in IMAGES and isinstance(entry, dict)}
    return {**sizes(metadata), **{kind: entry for kind, entry in kept.items() if entry}}


class SafeOutputs(SanitizeHTML):
    """Outputs through ``safe_html``; rich outputs that are code (JavaScript, SVG, widget views) removed."""

    def preprocess_cell(self, cell, resources, index):
        if cell.cell_type == "code":
            cell.outputs = self.sanitize_code_outputs(cell.outputs)
            for output in cell.outputs:
                if "metadata" in output:
                    output.metadata = image_sizes(output.metadata)
        return cell, resources

    def sanitize_html_tags(self, html_str):
        return safe_html(html_str)
