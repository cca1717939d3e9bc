"""What a student wrote or printed is shown on Formgrader's grading page and in feedback, never run
(course_grading/safe_html.py), through nbgrader's own templates and the course's nbgrader_config.py."""
from __future__ import annotations

import re

import nbformat
import pytest
from bs4 import BeautifulSoup
from nbconvert import HTMLExporter
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output
from nbgrader.server_extensions.formgrader.handlers import template_path
from traitlets.config import Config

from course_grading.course import course_config
from notebook_cells import ROOT

# Each payload calls alert(n) for its own n if it runs
MARKDOWN = ("my answer <img src=x onerror=alert(1)> <script>alert(2)</script> $\\text{<script>alert(3)</script>}$ "
            "[a link](javascript:alert(4)) <a href='javascript:alert(5)'>b</a> <iframe src='javascript:alert(6)'></iframe>"
            " <svg onload=alert(7)></svg> <math><mi href='javascript:alert(8)'>x</mi></math>"
            " <div style=\"background:url(javascript:alert(9))\">c</div> <style>*{x:expression(alert(10))}</style>"
            " <math data-spy=\"affix\" data-target=\"<img src=x onerror=alert(16)>\"></math>"  # Bootstrap 3 builds it
            " [d](files/javascript:alert(17)) [e](files/files/javascript:alert(18))\n\n"  # nbconvert strips files/
            "| a | b |\n|:--|--:|\n| $x^2$ | <b>bold</b> |\n\n```python\nx = 1 < 2\n```\n")
OUTPUTS = [{"text/html": "<b>ok</b><img src=x onerror=alert(11)><script>alert(12)</script>", "text/plain": "html"},
           {"application/javascript": "alert(13)", "text/plain": "javascript"},
           {"image/svg+xml": "<svg onload=alert(14)></svg>", "text/plain": "svg"},
           {"text/markdown": "<iframe src=javascript:alert(15)></iframe> *md*"},
           {"application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
            "text/plain": "widget"},
           {"image/png": "iVBORw0KGgo=", "text/plain": "png"}]
# Output metadata the template writes unquoted into an image's tag
METADATA = [{"width": "1 onerror=alert(19)"}, {"image/png": {"height": "1 onerror=alert(20)"}, "width": 40}]
RESOURCES = {"formgrade": {"base_url": "/", "submission_id": "x", "index": 0, "total": 1, "notebook_id": "n",
                           "assignment_id": "a", "student": "s", "last": 1, "notebook_path": "p"},
             "feedback": {"nbgrader": {"notebook": "n", "score": 0, "max_score": 1, "late_penalty": 0}},
             "classic": {}}


def page(template: str, notebook) -> str:
    config = Config(course_config(ROOT))  # the course's HTMLExporter settings, as nbgrader loads them
    config.HTMLExporter.template_name = template
    config.HTMLExporter.extra_template_basedirs = [template_path]
    config.HTMLExporter.extra_template_paths = [template_path.replace("templates", "static/node_modules/bootstrap/dist/css")]
    return HTMLExporter(config=config).from_notebook_node(notebook, resources=RESOURCES[template])[0]


@pytest.fixture(scope="module", params=["formgrade", "feedback"])
def hostile(request):
    outputs = [new_output("display_data", data=data) for data in OUTPUTS]
    outputs += [new_output("display_data", data={"image/png": "iVBORw0KGgo="}, metadata=m) for m in METADATA]
    return page(request.param, new_notebook(cells=[new_markdown_cell(MARKDOWN), new_code_cell("x", outputs=outputs)]))


def test_nothing_the_student_wrote_or_printed_can_run(hostile):
    """Parsed: no payload in an element's attribute, a script or a frame; payloads show as text."""
    page = BeautifulSoup(hostile, "html.parser")
    document = page.find(id="notebook-container") or page  # the notebook, without the grading page's own tags
    live = [f"<{e.name} {name}={value!r}>" for e in document.find_all(True) for name, value in e.attrs.items()
            if "alert(" in str(value) or name.startswith(("on", "data-"))]
    scripts = [e.get_text() for e in page.find_all("script") if "alert(" in e.get_text()]
    frames = [e.name for e in document.find_all(["iframe", "svg", "object", "embed", "style"]) if "alert(" in str(e)]
    assert not live and not scripts and not frames, (live, scripts, frames)
    assert 'width="40"' in hostile  # a plain number stays


def test_what_is_safe_still_shows(hostile):
    body = hostile[hostile.index("my answer"):]
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in body  # shown as text, as the student typed it
    assert "<table>" in body and "<b>bold</b>" in body and 'style="text-align:left;"' in body
    assert '<span class="o">&lt;</span>' in body  # the code block, highlighted
    assert body.count("<math") >= 2 and "<msup><mi>x</mi><mn>2</mn></msup>" in body
    assert "<b>ok</b>" in body and "data:image/png;base64,iVBORw0KGgo=" in body
    for text in ("javascript", "svg", "widget"):  # outputs that are code: their plain-text form instead
        assert f"<pre>{text}</pre>" in body


def test_every_course_notebook_renders_unchanged_in_substance():
    """The sanitizer keeps the course's own markdown: every heading, table, image and formula of each notebook
    (rendered with the course's markdown filter in nbconvert's template, which graded cells' scores need not fill)."""
    for path in sorted((ROOT / "notebooks").glob("*/*.ipynb")):
        notebook = nbformat.read(path, as_version=4)
        body = page("classic", notebook)
        headings = sum(len(re.findall(r"^#+ ", c.source, re.M)) for c in notebook.cells if c.cell_type == "markdown")
        assert len(re.findall(r"<h[1-6] id=", body)) >= headings, path.name
        escaped = re.findall(r"&lt;/?[a-zA-Z]\w*", body)
        assert not escaped, f"{path.name}: the sanitizer escaped {escaped}"
