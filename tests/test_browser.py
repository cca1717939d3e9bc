"""The course as people use it: JupyterLab driven in headless Chromium, as a student and an instructor.

``make lab``'s own command (read from ``make -n lab``) serves a copy of this checkout on loopback,
with a temporary cache, exchange and Jupyter settings. In it: each student notebook runs its setup
cell and its first exercise's check, before and after running the stub (in ``work/``, the copies
``make lab`` makes); notebook 02's explorer shows an unfinished ``conv2d_fast`` once, then the
student's finished one, and follows a slider; Formgrader's Generate rewrites a release without
touching an edited work copy; Formgrader lists every assignment and releases one, which the
Assignment List fetches and submits and Formgrader collects; once autograded, its grading page shows
each written answer's model answer, which its feedback does not, and both show their formulas as MathML
with nothing outside loopback answering (no MathJax from a CDN); the class report opens. Any JavaScript
error, console error, failed request or broken image fails the test. Screenshots go to
``COURSE_BROWSER_ARTIFACTS`` (default ``build/browser``).

Needs Chromium (Debian's ``chromium``; ``make test`` installs it when run as root; another binary:
``COURSE_CHROMIUM``) and Playwright from PyPI (never ``playwright install``). Without them the test
is skipped with the reason, and under CI (``CI=true``) it fails.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from notebook_cells import ROOT

pytestmark = pytest.mark.notebook
ARTIFACTS = Path(os.environ.get("COURSE_BROWSER_ARTIFACTS") or ROOT / "build" / "browser")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Outside loopback (the Colab badge): images get this placeholder, anything else is refused.
PLACEHOLDER = '<svg xmlns="http://www.w3.org/2000/svg" width="117" height="20"><rect width="117" height="20" fill="#ddd"/></svg>'
JUPYTER_SETTINGS = {  # the notebook keeps every cell in the page; no news pop-up over the screenshots
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}
# A finished conv2d_fast, as the student would type it (torch stands in for their NumPy code).
FINISHED_CONV = ("import torch.nn.functional as F\n\n"
                 "def conv2d_fast(x, w, b=None, stride=1, padding=0):\n"
                 "    t = lambda a: None if a is None else torch.from_numpy(np.asarray(a, dtype=np.float64))\n"
                 "    return F.conv2d(t(x), t(w), t(b), stride=stride, padding=padding).numpy()\n")
BROKEN_IMAGES = """() => Array.from(document.images)
    .filter(i => i.complete && i.naturalWidth === 0 && i.getClientRects().length > 0)
    .map(i => i.outerHTML.slice(0, 160))"""
# Formulas the page shows as MathML, and markdown cells still showing TeX (a backslash macro between dollars)
FORMULAS = """() => [document.querySelectorAll("math").length,
    Array.from(document.querySelectorAll(".text_cell_render"))
        .filter(cell => /\\$[^$\\s][^$]*\\\\[a-zA-Z]+/.test(cell.innerText))
        .map(cell => cell.innerText.slice(0, 120))]"""
# What a planted script would do if it ran, and how a page tells
PLANTED = "window.studentScriptRan = true"
SCRIPT_RAN = "() => window.studentScriptRan"
ANSI = re.compile(r"\x1b\[[0-9;]*m")
CELLS = ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-Cell"  # of the notebook in front


def chromium() -> str:
    """The Chromium binary, or a skip (a failure under CI) saying what is missing."""
    path = os.environ.get("COURSE_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
    missing = []
    if not Path(path).is_file():
        missing.append(f"Chromium ({path}; Debian: apt-get install chromium, or set COURSE_CHROMIUM)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright (pip install playwright; its own browser download is not needed)")
    if shutil.which("make") is None:
        missing.append("make")
    if missing:
        why = "the browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def lab_commands(checkout: Path, lab_args: str) -> tuple[list[str], list[str]]:
    """The commands ``make lab`` runs, as ``make -n`` prints them (the set-up steps before them are
    skipped): the one making the work copies, and the server."""
    dry = subprocess.run(["make", "-n", "lab", f"VENV={sys.prefix}", f"LAB_ARGS={lab_args}"], cwd=checkout,
                         capture_output=True, text=True, check=True).stdout.splitlines()
    copies = [line for line in dry if "scripts/work_copies.py" in line][-1]
    server = [line for line in dry if re.search(r"/jupyter lab\b", line)][-1]
    return shlex.split(copies), shlex.split(server)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(base URL, token, the checkout's copy, Chromium) of a running ``make lab`` server on loopback."""
    executable = chromium()
    work = tmp_path_factory.mktemp("browser")
    checkout = work / "course"
    shutil.copytree(ROOT, checkout, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "__pycache__", ".pytest_cache", ".ipynb_checkpoints", "gradebook.db",
        "exchange", "dl-images", "submitted", "autograded", "feedback", "nbgrader.log", "work"))
    settings = work / "lab-settings"
    for name, values in JUPYTER_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    port, token = free_port(), "course-browser-test"
    env = {**os.environ, "PYTHONPATH": str(checkout), "COURSE_FAST": "1", "COURSE_CACHE_DIR": str(work / "cache"),
           "COURSE_CHECKPOINT_DIR": str(work / "checkpoints"), "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTERLAB_WORKSPACES_DIR": str(work / "workspaces"), "JUPYTER_DATA_DIR": str(work / "jupyter-data"),
           "JUPYTER_RUNTIME_DIR": str(work / "jupyter-runtime"), "IPYTHONDIR": str(work / "ipython")}
    env.pop("COURSE_RESULTS_DIR", None)
    copies, command = lab_commands(checkout, f"--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} "
                                    f"--ServerApp.port_retries=0 --IdentityProvider.token={token}")
    made = subprocess.run(copies, cwd=checkout, env=env, capture_output=True, text=True, check=True).stdout
    assert made.count("work copy made: work/") == len(list((checkout / "notebooks").glob("*/*.ipynb"))), made
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log = open(ARTIFACTS / "jupyter-lab.log", "w")
    server = subprocess.Popen(command, cwd=checkout, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2)
                break
            except OSError:
                assert server.poll() is None, f"jupyter lab exited: see {ARTIFACTS / 'jupyter-lab.log'}"
                assert time.monotonic() < deadline, "jupyter lab did not answer within 120 s"
                time.sleep(0.5)
        yield base, token, checkout, executable
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
        log.close()


class Browser:
    """One Chromium page on the lab, recording every JavaScript error, console error and outside request."""

    def __init__(self, playwright, lab):
        self.base, self.token, self.checkout, executable = lab
        self.errors, self.outside = [], []
        self.browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        self.page = self.browser.new_page(viewport={"width": 1400, "height": 1000})
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(f"JavaScript: {e}"))
        self.page.on("response", lambda r: r.status >= 400 and self.errors.append(f"HTTP {r.status}: {r.url}"))
        self.page.on("dialog", lambda d: d.accept())
        self.page.route(lambda url: not url.startswith(self.base), self._outside)

    def _console(self, message):
        refused = not message.location.get("url", self.base).startswith(self.base)  # by _outside, below
        if message.type == "error" and not refused:
            self.errors.append(f"console: {message.text}")

    def _outside(self, route):
        self.outside.append(route.request.url)
        if route.request.resource_type == "image":
            route.fulfill(status=200, content_type="image/svg+xml", body=PLACEHOLDER)
        else:
            route.abort()

    def open(self, path: str):
        self.page.goto(f"{self.base}/lab/tree/{path}?reset&token={self.token}")
        self.page.locator(".lm-MenuBar-itemLabel", has_text="Nbgrader").wait_for(timeout=60_000)

    def menu(self, menu: str, item: str):
        self.page.locator(".lm-MenuBar-itemLabel", has_text=menu).click()
        self.page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()

    def screenshot(self, name: str):
        self.page.screenshot(path=ARTIFACTS / f"{name}.png")

    def check_page(self, where: str):
        """No JavaScript or console error so far, and no broken image in any frame."""
        broken = [image for frame in self.page.frames for image in frame.evaluate(BROKEN_IMAGES)]
        assert not broken, f"{where}: broken images {broken}"
        assert not self.errors, f"{where}: {self.errors}"

    def check_formulas(self, where: str):
        """The page shows its formulas as MathML, and no markdown cell as raw TeX."""
        shown, raw = self.page.evaluate(FORMULAS)
        assert shown > 0 and not raw, f"{where}: {shown} formulas in MathML; cells showing TeX: {raw}"
        self.page.locator('math[display="block"]').first.scroll_into_view_if_needed()  # for the screenshot

    def close(self):
        self.browser.close()


@pytest.fixture
def browser(lab, request):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        session = Browser(playwright, lab)
        try:
            yield session
        finally:
            session.screenshot(f"{request.node.name}-at-the-end")  # where a failing test stopped
            (ARTIFACTS / f"{request.node.name}-outside-requests.txt").write_text("\n".join(session.outside))
            session.close()
            stop_kernels(lab)


def stop_kernels(lab):
    base, token = lab[0], lab[1]
    kernels = json.load(urllib.request.urlopen(f"{base}/api/kernels?token={token}"))
    for kernel in kernels:
        request = urllib.request.Request(f"{base}/api/kernels/{kernel['id']}?token={token}", method="DELETE")
        urllib.request.urlopen(request)


class Notebook:
    """An open notebook: run a cell as a student does (select it, Ctrl+Enter) and read its output."""

    def __init__(self, browser: Browser, path: Path):
        self.browser, self.page = browser, browser.page
        self.nb = nbformat.read(path, as_version=4)
        browser.open(path.relative_to(browser.checkout).as_posix())
        self.cells = self.page.locator(CELLS)
        self.page.wait_for_function("([cells, n]) => document.querySelectorAll(cells).length === n",
                                    arg=[CELLS, len(self.nb.cells)], timeout=60_000)  # windowing is off
        self.page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$")).wait_for(timeout=120_000)

    def index(self, test) -> int:
        return next(i for i, cell in enumerate(self.nb.cells) if test(cell))

    def run(self, i: int, timeout: float = 120) -> str:
        cell = self.cells.nth(i)
        count = cell.locator(".jp-InputPrompt").inner_text()
        cell.locator(".jp-InputPrompt").click()
        self.page.keyboard.press("Control+Enter")
        self.page.wait_for_function(
            """([cells, i, before]) => { const now = document.querySelectorAll(cells)[i]
                 .querySelector('.jp-InputPrompt').innerText;
               return /\\[\\d+\\]/.test(now) && now !== before; }""", arg=[CELLS, i, count], timeout=timeout * 1000)
        return self.output(i)

    def output(self, i: int) -> str:
        return ANSI.sub("", self.cells.nth(i).locator(".jp-OutputArea").inner_text())

    def errors(self, i: int) -> int:
        """How many error blocks cell ``i`` shows."""
        return self.cells.nth(i).locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count()

    def type_into(self, i: int, source: str):
        """Replace cell ``i``'s code as a student would: select all of it and type over it."""
        editor = self.cells.nth(i).locator(".cm-content")
        editor.click()
        self.page.keyboard.press("Control+A")
        self.page.keyboard.insert_text(source)
        self.page.keyboard.press("Escape")


def plant_scripts(submission: Path):
    """What a student could put in a submission to run script in the instructor's Formgrader: a script and an
    event handler in a written answer, and HTML and JavaScript displayed by a cell of their own."""
    notebook = nbformat.read(submission, as_version=4)
    answer = next(c for c in notebook.cells if c.cell_type == "markdown" and c.metadata.get("nbgrader", {}).get("solution"))
    answer.source += f"\n\n<script>{PLANTED}</script> <details open ontoggle=\"{PLANTED}\">x</details>"
    notebook.cells.append(nbformat.v4.new_code_cell(
        "from IPython.display import HTML, Javascript, display\n"
        f"display(HTML('<details open ontoggle=\"{PLANTED}\">y</details>'), Javascript('{PLANTED}'))"))
    nbformat.write(notebook, submission)


def grade_id(cell) -> str | None:
    return cell.metadata.get("nbgrader", {}).get("grade_id")


def student_notebooks() -> list[str]:
    return sorted(p.parent.name for p in (ROOT / "notebooks").glob("*/*.ipynb") if p.stem == p.parent.name)


@pytest.mark.parametrize("name", student_notebooks())
def test_setup_and_first_check_as_a_student(browser, name):
    """The setup cell runs; the first exercise's check says which cell to run, then what to write."""
    notebook = Notebook(browser, browser.checkout / "work" / name / f"{name}.ipynb")
    setup = notebook.index(lambda c: grade_id(c) == "setup")
    shown = notebook.run(setup, timeout=40)
    assert f"{name} · fast mode" in shown and notebook.errors(setup) == 0, shown
    test = notebook.index(lambda c: c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))
    stub = max(i for i in range(test) if notebook.nb.cells[i].metadata.get("nbgrader", {}).get("solution")
               and notebook.nb.cells[i].cell_type == "code")
    function = re.search(r"^(?:def|class) (\w+)", notebook.nb.cells[stub].source, re.M).group(1)

    shown = notebook.run(test)
    assert notebook.errors(test) == 1 and "Traceback" not in shown, shown
    assert f"name '{function}' is not defined" in shown and f"Run the cell that defines `{function}` first" in shown
    notebook.run(stub)
    shown = notebook.run(test)
    notebook.cells.nth(test).scroll_into_view_if_needed()
    browser.screenshot(f"{name}-first-check")
    assert notebook.errors(test) == 1 and "Traceback" not in shown and "course_lib" not in shown, shown
    assert f"✘ {function}: a public check failed" in shown and "is not implemented yet" in shown
    assert "→ Edit" in shown and "run that cell, then run this one again" in shown
    browser.check_page(name)


def test_convolution_explorer_unfinished_then_finished(browser):
    """Notebook 02's explorer says once what to finish, then draws the finished conv2d_fast and
    follows the stride slider."""
    name = "02_convolution"
    notebook = Notebook(browser, browser.checkout / "work" / name / f"{name}.ipynb")
    explorer = notebook.index(lambda c: c.cell_type == "code" and "conv_explorer(" in c.source)
    stub = notebook.index(lambda c: grade_id(c) == "conv2d_fast")
    for i, cell in enumerate(notebook.nb.cells[:explorer]):
        if cell.cell_type == "code":
            notebook.run(i, timeout=180)   # stubs and their checks fail, as in a student's first run
    notebook.run(explorer)
    view = notebook.cells.nth(explorer)
    view.locator(".widget-image").first.wait_for(timeout=60_000)
    view.scroll_into_view_if_needed()
    browser.screenshot(f"{name}-explorer-unfinished")
    shown = notebook.output(explorer)
    assert shown.count("conv2d_fast is not implemented yet: replace the line raise NotImplementedError() in cell In[") == 1, shown
    messages = view.locator(".widget-html").all_inner_texts()
    assert not [m for m in messages if m.rstrip().endswith(":")], f"a message ends in a colon: {messages}"
    assert view.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stdout']").count() == 0
    browser.check_page(f"{name} explorer, unfinished")

    notebook.type_into(stub, FINISHED_CONV)
    notebook.run(stub)
    notebook.run(explorer)
    images = view.locator(".widget-image:visible")
    images.nth(1).wait_for(timeout=60_000)  # the input and the output map
    info = view.locator(".widget-html", has_text="window positions")
    info.wait_for(timeout=60_000)
    before, picture = info.inner_text(), images.nth(1).get_attribute("src")
    assert "stride 1" in before and "→ output (1, 1, 32, 32)" in before, before
    view.scroll_into_view_if_needed()
    browser.screenshot(f"{name}-explorer-finished")

    slider = view.locator(".widget-slider", has_text="stride S").locator(".noUi-handle")
    slider.focus()
    browser.page.keyboard.press("ArrowRight")
    browser.page.wait_for_function("t => !document.body.innerText.includes(t)", arg=before, timeout=30_000)
    after = info.inner_text()
    assert "stride 2" in after and "→ output (1, 1, 16, 16)" in after, after
    assert images.nth(1).get_attribute("src") != picture, "the output map should be redrawn"
    shown_input, shown_output = (images.nth(i).bounding_box()["width"] for i in (0, 1))
    assert shown_output == pytest.approx(shown_input / 2, abs=2), "16×16 from 32×32: shown at the same scale"
    browser.screenshot(f"{name}-explorer-stride-2")
    browser.check_page(f"{name} explorer, finished")


def test_generate_keeps_the_work_copy_someone_edited(browser):
    """A notebook edited in work/ (where make lab opens) survives Formgrader's Generate, which rewrites the
    release in notebooks/; make lab's copying step keeps it too."""
    name = "04_optimizers"
    work = browser.checkout / "work" / name / f"{name}.ipynb"
    edited = nbformat.read(work, as_version=4)
    next(c for c in edited.cells if c.metadata.get("nbgrader", {}).get("solution")).source = "answer = 'my own work'"
    nbformat.write(edited, work)   # a saved edit
    release = browser.checkout / "notebooks" / name / f"{name}.ipynb"
    release_before = release.stat().st_mtime_ns

    browser.open("work")
    browser.menu("Nbgrader", "Formgrader")
    formgrader = browser.page.frame_locator("iframe").first
    formgrader.locator("td.name", has_text=name).wait_for(timeout=60_000)
    formgrader.locator("#main-table tbody tr, table tbody tr").filter(has_text=name).locator("td.assign a").click()
    formgrader.get_by_text(f"Successfully created the student version of '{name}'").wait_for(timeout=120_000)
    browser.screenshot("formgrader-generate")
    formgrader.locator(".modal-footer button", has_text="OK").click()
    assert release.stat().st_mtime_ns > release_before, "Generate did not rewrite the release"
    assert release.read_bytes() == (ROOT / "notebooks" / name / f"{name}.ipynb").read_bytes()
    assert "my own work" in work.read_text(), "Generate destroyed the edited work copy"

    copies, _ = lab_commands(browser.checkout, "")
    again = subprocess.run(copies, cwd=browser.checkout, capture_output=True, text=True, check=True).stdout
    assert "my own work" in work.read_text(), "make lab replaced the edited work copy"
    assert f"work/{name}/" not in again, again    # the release regenerated the same: nothing to say
    browser.check_page("Generate in Formgrader")


def test_release_fetch_submit_collect_through_the_menus(browser):
    """Formgrader lists every assignment and releases one; the Assignment List fetches and submits
    it without an error; Formgrader collects it."""
    browser.open("work")
    browser.menu("Nbgrader", "Formgrader")
    formgrader = browser.page.frame_locator("iframe").first
    rows = formgrader.locator("#main-table tbody tr, table tbody tr")
    assignments = sorted(p.name for p in (browser.checkout / "solutions").iterdir() if (p / f"{p.name}.ipynb").is_file())
    formgrader.locator("td.name", has_text=assignments[-1]).wait_for(timeout=60_000)
    listed = sorted(t.strip() for t in formgrader.locator("td.name").all_inner_texts())
    assert listed == assignments
    assert formgrader.locator(".alert-warning:visible, .alert-danger:visible").count() == 0
    browser.screenshot("formgrader-manage-assignments")

    first = assignments[0]
    rows.filter(has_text=first).locator("td.assign a").click()   # Generate: its cells go into the gradebook
    formgrader.get_by_text(f"Successfully created the student version of '{first}'").wait_for(timeout=120_000)
    formgrader.locator(".modal-footer button", has_text="OK").click()
    rows.filter(has_text=first).locator("td.release a").click()
    formgrader.get_by_text(f"Successfully released '{first}'").wait_for(timeout=60_000)
    formgrader.locator(".modal-footer button", has_text="OK").click()

    browser.menu("Nbgrader", "Assignment List")
    released = browser.page.locator("#released_assignments_list")
    released.locator(".list_item", has_text=first).wait_for(timeout=60_000)
    assert "Error fetching courses" not in browser.page.locator(".lm-DockPanel").inner_text()
    assert browser.page.locator(".list_error:visible").count() == 0
    released.get_by_role("button", name="Fetch").click()
    fetched = browser.page.locator("#fetched_assignments_list .list_item", has_text=first)
    fetched.get_by_role("button", name="Submit").click()
    browser.page.locator("#submitted_assignments_list .list_item", has_text=first).wait_for(timeout=60_000)
    assert (browser.checkout / "dl-images" / first / f"{first}.ipynb").is_file()
    browser.screenshot("assignment-list")

    browser.page.locator(".lm-TabBar-tab", has_text="Formgrader").click()
    formgrader.get_by_text("Manage Assignments", exact=True).first.click()
    rows.filter(has_text=first).locator("td.collect a").click()
    formgrader.get_by_text(f"Successfully collected submissions of '{first}'", exact=False).wait_for(timeout=60_000)
    formgrader.locator(".modal-footer button", has_text="OK").click()
    submitted = list((browser.checkout / "submitted").glob(f"*/{first}/{first}.ipynb"))
    assert len(submitted) == 1
    formgrader.get_by_text("Manual Grading", exact=True).click()  # the README's path to the written answers
    formgrader.get_by_role("link", name=first).click()
    formgrader.get_by_role("link", name=first).wait_for(timeout=60_000)  # its notebook
    formgrader.get_by_role("link", name=first).click()
    formgrader.get_by_text("Submission ID").wait_for(timeout=60_000)  # the list autograded submissions join
    browser.screenshot("formgrader-manual-grading")
    browser.check_page("Formgrader and the Assignment List")

    # the instructor autogrades it, then grades its written answers with the model answers beside them
    env = {**os.environ, "PYTHONPATH": str(browser.checkout), "COURSE_FAST": "1",
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])}
    env.pop("NBGRADER_DB_URL", None)
    student = submitted[0].parent.parent.name
    plant_scripts(submitted[0])
    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "autograde", first],
                          cwd=browser.checkout, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{browser.checkout / 'gradebook.db'}") as gradebook:
        submission = gradebook.find_submission_notebook(first, first, student).id
    browser.page.goto(f"{browser.base}/formgrader/submissions/{submission}?token={browser.token}")
    solution = nbformat.read(browser.checkout / "solutions" / first / f"{first}.ipynb", as_version=4)
    written = [c for c in solution.cells if c.cell_type == "markdown" and grade_id(c)
               and c.metadata["nbgrader"].get("solution")]
    answers = browser.page.locator("blockquote", has_text="Model answer to")
    answers.first.wait_for(timeout=60_000)
    assert answers.count() == len(written) >= 1
    first_answer = answers.first.inner_text()
    assert grade_id(written[0]) in first_answer and "Model answer." in first_answer, first_answer
    browser.check_formulas("Formgrader's grading page")
    assert browser.page.evaluate(SCRIPT_RAN) is None, "the student's script ran in Formgrader"
    browser.screenshot("formgrader-formulas")
    answers.first.scroll_into_view_if_needed()
    browser.screenshot("formgrader-grading-with-model-answer")

    done = subprocess.run([str(Path(sys.executable).parent / "nbgrader"), "generate_feedback", first],
                          cwd=browser.checkout, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    feedback = (browser.checkout / "feedback" / student / first / f"{first}.html").read_text()
    assert "Model answer" not in feedback, "a model answer reached the student's feedback"
    browser.page.goto(f"{browser.base}/files/feedback/{student}/{first}/{first}.html?token={browser.token}")
    browser.check_formulas("the feedback")
    assert browser.page.evaluate(SCRIPT_RAN) is None, "the student's script ran in the feedback"
    browser.screenshot("feedback")
    browser.check_page("Formgrader's grading page and the feedback")


def test_class_report_in_the_browser(browser):
    """The class report across assignments and one assignment's page, as an instructor opens them from Lab's
    server: links work, the distribution is drawn, nothing broken (records as test_class_report writes them)."""
    from test_class_report import write_class

    write_class(browser.checkout / "graded-class", "01_x")
    subprocess.run([sys.executable, "-m", "course_grading", "report", "--all", str(browser.checkout / "graded-class")],
                   check=True, capture_output=True)
    page, reports = browser.page, f"{browser.base}/files/graded-class/reports"
    page.goto(f"{reports}/index.html?token={browser.token}")
    link = page.get_by_role("link", name="01_x").get_attribute("href")
    browser.screenshot("class-report-index")
    # Jupyter serves files in a sandbox that sends no referer, so following the link is refused: open it
    page.goto(f"{reports}/{link}?token={browser.token}")
    page.get_by_role("heading", name="What the class got wrong").wait_for(timeout=30_000)
    assert page.locator("svg[aria-label='points'] rect").count() == 7   # 0 to 6 points
    assert page.get_by_role("cell", name="x.b.off_by_one").count() == 1
    browser.screenshot("class-report")
    browser.check_page("class report")
