"""nbgrader preprocessors that keep a grade honest when a submission is hostile or broken.

``nbgrader_config.py`` puts them into ``nbgrader autograde``:

- ``RestoreCellMetadata`` (sanitizing, after nbgrader's ``DeduplicateIds``): cells whose nbgrader
  metadata was edited (points, grade id, locked, cell type) or that were deleted are restored from
  the gradebook and recorded, so that nbgrader grades the honest cells instead of rejecting the
  whole notebook.
- ``GuardedExecute`` (instead of nbgrader's ``Execute``): runs the kernel in a bubblewrap sandbox
  that hides the course folder (solutions, gradebook, other students), runs each test cell there as
  students received it, and decides the cell's score here, in the grader's process, by running the
  whole cell (hidden tests included) against the kernel's answers in plain data
  (``course_grading.verdict``). Nothing the kernel does to its own libraries can change a verdict.
  A note at the top of the graded notebook (and so of the feedback) and ``<notebook>.integrity.json``
  beside it list what was found and what the instructor should look at; ``python -m course_grading
  integrity NN_name`` gathers them.
- ``CellTimeLimits`` and ``SkipExperiments`` (sanitizing, last): each cell's time limit from the
  solution's measured time, and the solution's experiments no graded cell depends on left unrun.
"""
from __future__ import annotations

import ast
import asyncio
import base64
import contextlib
import functools
import queue
import json
import os
import re
import time
from pathlib import Path

import nbformat
from jupyter_core.utils import ensure_async, run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import from_dict
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
from traitlets import Bool, Float, Integer

from course_grading.agent import agent_source
from course_grading.sandbox import Limits, SandboxedKernelManager
from course_grading.skips import cells_to_run
from course_lib.checks.source_rules import notebook_sources
from course_grading.verdict import Session, grader_namespace, run_verdict
from course_lib.settings import is_fast

REPORT_SUFFIX = ".integrity.json"
VERDICTS_SUFFIX = ".verdicts.json"   # every graded cell's verdict and named mistake, for the class report
# Evaluated in the kernel: the agent, defined from its source text in a namespace of its own, bound to the
# notebook's namespace as __course_agent__
INSTALL_AGENT = ("globals().__setitem__('__course_agent__', (lambda scope: exec(compile({source!r}, '<course agent>', "
                 "'exec'), scope) or scope['Agent'](globals()))({{'__name__': 'course_agent'}})) or 'ready'")
NOTE_MARKER = "course-integrity-note"
# In the source directory: {"fast" | "full": {notebook: {cell id: seconds}}}, scripts/measure_cell_times.py
CELL_TIMES = "cell_times.json"
TIME_LIMIT = "course_time_limit"
TIME_MARGIN, TIME_FLOOR = 3.0, 60   # a measured cell may take TIME_MARGIN times its time plus TIME_FLOOR seconds
# A solution's code cell tagged so (an experiment, its plot, a summary) has results no graded cell reads:
# grading leaves it unrun unless a cell that runs reads a name it defines (course_grading.skips)
SKIP_TAG = "skip-when-grading"
SKIPPED = "course_skipped"
SKIPPED_NOTE = ("[not run by the autograder: neither the graded cells nor your answers read what this cell "
                "defines; your own run of it is in your copy of the notebook]\n")

# Calls a course notebook never needs and that reach into the grader; they are listed for review.
SUSPICIOUS = {
    r"\bget_ipython\b|\b_ip\b": "uses the IPython shell object",
    r"set_custom_exc|events\.register|ast_transformers|input_transformers": "changes how IPython runs cells",
    r"sys\.(excepthook|displayhook|settrace|setprofile|modules)\b": "changes the interpreter's hooks or modules",
    r"\bbuiltins\b|__builtins__": "touches the built-in functions",
    r"\b(exec|eval|compile|__import__)\s*\(|importlib": "runs code built at run time",
    r"\bos\._exit\b|\bctypes\b|\bgc\.get_(objects|referrers)\b|\bsignal\.": "low-level process control",
    r"solutions/|gradebook|submitted/|autograded/": "names the instructor's files",
}


def released_source(source: str) -> str:
    """A locked cell's text as students received it: without its hidden tests."""
    cell = new_code_cell(source)
    ClearHiddenTests()._remove_hidden_test_region(cell)
    return cell.source


class RestoreCellMetadata(NbGraderPreprocessor):
    """Keep of each cell only its nbgrader metadata (``normalise``), restore edited or deleted nbgrader
    cells from the gradebook and record each change."""

    def preprocess(self, nb, resources):
        normalise(nb)
        info = resources["nbgrader"]
        with Gradebook(info["db_url"]) as gradebook:
            source = gradebook.find_notebook(info["notebook"], info["assignment"])
            cells = {cell.name: cell for cell in source.source_cells}
            points = {cell.name: float(cell.max_score) for cell in source.grade_cells}
            solutions = {cell.name for cell in source.solution_cells}
        findings, seen = [], set()
        for cell in nb.cells:
            meta = cell.metadata.get("nbgrader")
            if meta is None:
                continue
            if not meta:  # emptied by nbgrader's DeduplicateIds, which grades the last copy
                findings.append("a graded or locked cell appeared more than once: only its last copy was graded")
                continue
            grade_id = meta.get("grade_id")
            if grade_id not in cells:
                findings.append(f"a cell carried the grade id {grade_id!r}, which this assignment does not have "
                                "(renamed?): it ran as an ordinary cell, and the assignment's cell was graded instead")
                del cell.metadata["nbgrader"]
                continue
            seen.add(grade_id)
            findings += self._restore(cell, meta, cells[grade_id], points.get(grade_id), grade_id in solutions)
        for grade_id in cells.keys() - seen:
            what = "added back and run" if grade_id in points else "not added back"
            findings.append(f"cell {grade_id!r} was deleted ({what})")
        nb.metadata["course_integrity"] = {"cells": findings}
        for finding in findings:
            self.log.warning("%s/%s: %s", info["student"], info["notebook"], finding)
        return nb, resources

    @staticmethod
    def _restore(cell, meta, source, points, is_solution) -> list:
        expected = {"grade": points is not None, "solution": is_solution, "locked": bool(source.locked)}
        changed = [key for key, value in expected.items() if bool(meta.get(key, False)) != value]
        if points is not None and float(meta.get("points", -1)) != points:
            changed.append(f"points ({meta.get('points')!r} instead of {points:g})")
        meta.update(expected)
        if points is not None:
            meta["points"] = points
        else:
            meta.pop("points", None)
        findings = [f"cell {source.name!r}: its {', '.join(changed)} had been edited and were restored"] if changed else []
        if cell.cell_type != source.cell_type:
            findings.append(f"cell {source.name!r} was turned into a {cell.cell_type} cell; it was restored")
        elif source.locked and cell.source not in (source.source, released_source(source.source)):
            findings.append(f"locked cell {source.name!r} had been edited: the assignment's version ran instead")
        return findings


def suspicious_code(nb) -> list:
    """Lines of the student's cells that use what a course notebook never needs, for review."""
    flags = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type != "code" or utils.is_locked(cell):
            continue
        for number, line in enumerate(cell.source.splitlines(), start=1):
            for pattern, why in SUSPICIOUS.items():
                if re.search(pattern, line):
                    flags.append(f"cell {index + 1}, line {number}: {why}: {line.strip()[:120]}")
    return flags


@functools.lru_cache(maxsize=None)
def _prepare_cache(data: str, cache: str) -> tuple[str, ...]:
    """Once per grading process and folder pair: the data sets decoded into the cache, which the
    sandboxes can only read (else every student's kernel would decode CIFAR-10 again)."""
    from course_lib.data import prepare_cache

    return tuple(prepare_cache())


class GuardedExecute(Execute):
    """nbgrader's Execute, sandboxed, with every test cell's verdict decided here in the grader.

    The kernel runs each test cell as students received it (the public check, which teaches); the
    grader then runs the whole cell, hidden tests included, in its own process against the kernel
    (``course_grading.verdict``), and the cell's score is that verdict alone. The kernel's own
    output is kept for the student, with errors and displayed values made plain text, so that
    nbgrader neither zeroes a cell for them nor reads a displayed number as partial credit."""

    sandbox = Bool(True, help="run the kernel in a bubblewrap sandbox").tag(config=True)
    probe_timeout = Integer(60, help="seconds the kernel has to answer the grader's own requests").tag(config=True)
    notebook_timeout = Integer(7200, help="seconds the whole notebook may run (each cell also has `timeout`); "
                                          "the cells after that are not run and score 0").tag(config=True)
    memory_limit = Integer(Limits.memory, help="bytes of data each process of the kernel may hold").tag(config=True)
    process_limit = Integer(Limits.processes, help="processes and threads the kernel may run at once").tag(config=True)
    output_limit = Integer(20 * 1024 ** 2, help="bytes of output the notebook may produce (text, images); "
                                                "beyond that its output is dropped").tag(config=True)
    cell_limit = Integer(1000, help="cells a submission may have; one with more is not run").tag(config=True)
    disk_limit = Integer(2 * 1024 ** 3, help="bytes the kernel may leave in the submission's folder; the cells "
                                             "after the one that passes it are not run").tag(config=True)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.timeout_func = None  # each cell's limit is its metadata's (CellTimeLimits): not the Validator's

    def preprocess(self, nb, resources, km=None):
        self._findings = list(nb.metadata.pop("course_integrity", {}).get("cells", []))
        self._review: list = []
        self._verdicts: list = []  # one per graded cell: grade_id, points, verdict (None: full marks), mistake
        started = time.monotonic()
        self._stopped = None       # why the cells after this point are not run
        self._deadline = time.monotonic() + self.notebook_timeout
        self._output_bytes, self._output_dropped = 0, False
        self._cell_timeout = self.timeout
        self._mode = os.environ.get("COURSE_FAST")
        workdir = resources.get("metadata", {}).get("path") or os.getcwd()
        info = resources.get("nbgrader", {})
        self._namespace = grader_namespace(c.source for c in nb.cells if c.cell_type == "code" and utils.is_locked(c))
        self._sources = notebook_sources((c.source, utils.is_locked(c)) for c in nb.cells if c.cell_type == "code")
        links = list(info.get("links", [])) + submission_links(self._submitted_folder(info), workdir)
        if links:
            self._stopped = (f"the submission holds links ({', '.join(links[:3])}): links are not graded; "
                             "submit the notebook file itself")
        elif len(nb.cells) > self.cell_limit:
            self._stopped = (f"the notebook has {len(nb.cells)} cells, more than the {self.cell_limit} the grader "
                             "runs: delete the cells you added in bulk")
        if self._stopped:
            self._findings.append(f"{self._stopped}; no cell was run and every autograded one scores 0")
        own_kernel = self.sandbox and km is None and self._stopped is None
        if own_kernel:
            km = self._sandboxed_manager(nb, os.path.abspath(workdir))
        try:
            if self._stopped is None:
                nb, resources = super().preprocess(nb, resources, km=km)
            else:
                self.nb = nb
                for cell in nb.cells:
                    self._not_run(cell)
        finally:  # nbclient shuts down only the kernels of managers it made itself
            self.timeout = self._cell_timeout
            if own_kernel and self.km is not None:
                self._cleanup_kernel()
        self._findings += [f"a link the kernel left in its folder was removed before the grader wrote there: {link}"
                           for link in remove_links(workdir)]
        if self._output_dropped:
            self._findings.append(f"the notebook printed or displayed more than {self.output_limit / 2 ** 20:g} MiB: "
                                  "the output beyond that was dropped (the cells still ran and were graded)")
        self._report(nb, resources, workdir)
        self._record_verdicts(resources, workdir, time.monotonic() - started)
        return nb, resources

    def _record_verdicts(self, resources, workdir: str, seconds: float) -> None:
        info = resources.get("nbgrader", {})
        record = {"student": info.get("student"), "assignment": info.get("assignment"),
                  "notebook": info.get("notebook"), "seconds": round(seconds, 1), "cells": self._verdicts}
        write_new(Path(workdir, (info.get("notebook") or "notebook") + VERDICTS_SUFFIX), json.dumps(record, indent=2))

    def _submitted_folder(self, info) -> Path | None:
        root = self.config.CourseDirectory.get("root")
        if not root or not info.get("student") or not info.get("assignment"):
            return None
        return Path(root, "submitted", info["student"], info["assignment"])

    def _sandboxed_manager(self, nb, workdir: str):
        import course_lib
        from course_lib.settings import cache_dir, data_dir

        package = Path(course_lib.__file__).resolve().parent
        launcher = Path(__file__).resolve().parent   # course_grading.sandbox starts the kernel inside the sandbox
        course_root = Path(self.config.CourseDirectory.get("root") or Path(workdir).parents[2]).resolve()
        hidden = {str(course_root)}
        if (package.parent / "solutions").exists():  # course_lib imported from the course's checkout
            hidden.add(str(package.parent))
        data, cache = str(data_dir().resolve()), str(cache_dir().resolve())
        prepared = _prepare_cache(data, cache)
        if prepared:
            self.log.debug("data in the cache, read-only for the sandbox: %s", ", ".join(prepared))
        limits = Limits(memory=self.memory_limit, processes=self.process_limit)
        km = SandboxedKernelManager(kernel_name=self.kernel_name or nb.metadata.get("kernelspec", {}).get("name", "python3"),
                                    hidden=sorted(hidden), visible=[str(package), str(launcher), data, cache], workdir=workdir,
                                    environment={"COURSE_DATA_DIR": data, "COURSE_CACHE_DIR": cache}, limits=limits,
                                    config=self.config)
        return km

    async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
        if cell.cell_type != "code" or not cell.source.strip():
            return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        remaining = self._deadline - time.monotonic()
        if self._stopped is None and remaining <= 0:
            self._stop(f"the notebook reached its time limit ({self.notebook_timeout} s)", cell, cell_index)
        if self._stopped is not None:  # nothing after this is run; a graded cell scores 0
            return self._not_run(cell)
        if cell.metadata.get(SKIPPED) and not utils.is_grade(cell) and not utils.is_solution(cell):
            cell.outputs = [new_output("stream", name="stdout", text=SKIPPED_NOTE)]
            return cell
        graded = utils.is_grade(cell) and not utils.is_solution(cell)
        test_source = cell.source
        if graded:  # the kernel runs the cell as students received it; the hidden tests run only here
            cell.source = released_source(test_source)
        limit = cell.metadata.get(TIME_LIMIT) or self._cell_timeout or remaining
        self.timeout = max(1, min(limit, int(remaining)))
        try:
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except DeadKernelError:
            cell.outputs.append(new_output("error", ename="DeadKernelError", evalue="the kernel died",
                                           traceback=["DeadKernelError: the kernel died while running this cell"]))
            self._stop(self._why_dead(), cell, cell_index)
        except CellTimeoutError:  # over its time, or the kernel stopped sending its output (forked copies of it)
            cell.outputs.append(new_output("error", ename="CellTimeoutError", evalue="the cell ran out of time",
                                           traceback=[f"CellTimeoutError: this cell ran longer than its "
                                                      f"{self.timeout} s, or the kernel stopped answering"]))
            cap = getattr(self.km, "process_cap", None)
            self._stop(self._why_dead("stopped answering") if cap is not None and cap.hits() else
                       f"it ran longer than its {self.timeout} s, or the kernel stopped answering", cell, cell_index)
        finally:
            self.timeout = self._cell_timeout
        if any(o.output_type == "error" and o.ename == "CellTimeoutError" for o in cell.outputs):
            cell.outputs.append(new_output("stream", name="stdout", text=f"[the autograder stopped this cell at its "
                                                                          f"limit of {int(limit)} s]\n"))
        cap = getattr(self.km, "process_cap", None)
        if self._stopped is None and cap is not None and cap.hits():  # a fork bomb: stopped before it does more
            cap.kill()
            self._stop(f"it tried to start more than {self.process_limit} processes (a fork bomb?): "
                       "the kernel was stopped", cell, cell_index)
        if self._stopped is None and time.monotonic() >= self._deadline:
            self._stop(f"the notebook reached its time limit ({self.notebook_timeout} s) in this cell", cell, cell_index)
        if self._stopped is None:
            written = folder_bytes(self._workdir())
            if written > self.disk_limit:
                self._stop(f"the notebook's folder holds {written / 2 ** 30:.1f} GiB, more than the "
                           f"{self.disk_limit / 2 ** 30:g} GiB allowed", cell, cell_index)
        if self._stopped is None:
            await self._restore_mode(cell, cell_index)
        if not graded:
            return cell
        timed_out = any(o.output_type == "error" and o.ename == "CellTimeoutError" for o in cell.outputs)
        plain_outputs(cell)
        self._mistake = None
        verdict = self._stopped or (f"the cell ran past its limit of {int(limit)} s" if timed_out else
                                    await self._verdict(test_source, cell, cell_index))
        grade = cell.metadata.get("nbgrader", {})
        self._verdicts.append({"grade_id": grade.get("grade_id"), "points": grade.get("points", 0), "verdict": verdict,
                               "mistake": self._mistake if verdict else None})
        if verdict:
            cell.outputs.append(new_output("error", ename="Autograder", evalue=verdict,
                                           traceback=[f"Autograder: this cell scores 0: {verdict}"]))
        return cell

    def _workdir(self) -> str:
        return self.resources.get("metadata", {}).get("path") or os.getcwd()

    def _not_run(self, cell):
        if cell.cell_type != "code":
            return cell
        cell.outputs = []
        if utils.is_grade(cell) and cell.cell_type == "code":
            grade = cell.metadata.get("nbgrader", {})
            if not utils.is_solution(cell):
                self._verdicts.append({"grade_id": grade.get("grade_id"), "points": grade.get("points", 0),
                                       "verdict": f"not run: {self._stopped}", "mistake": None})
            cell.source = released_source(cell.source)
            cell.outputs.append(new_output("error", ename="NotRun", evalue=self._stopped,
                                           traceback=[f"NotRun: this cell was not run: {self._stopped}"]))
        return cell

    async def _verdict(self, source: str, cell, cell_index: int) -> str | None:
        """The cell's verdict, decided here on what the kernel answers (None: full marks). Each request may
        take a cell's global time: the hidden tests' steps in the kernel are not in the measured times."""
        limit = self._cell_timeout or self.probe_timeout
        try:
            await self._evaluate(INSTALL_AGENT.format(source=agent_source()), self.probe_timeout, cell, cell_index)
        except AssertionError as err:
            return f"the grader could not reach the notebook's kernel: {err}"
        loop = asyncio.get_running_loop()

        def channel(message: bytes) -> bytes:
            expression = f"__course_agent__.serve({base64.b64encode(message).decode()!r})"
            future = asyncio.run_coroutine_threadsafe(self._evaluate(expression, limit, cell, cell_index), loop)
            return base64.b64decode(ast.literal_eval(future.result()))

        session = Session(channel, self._sources)
        name = cell.metadata.get("nbgrader", {}).get("grade_id", "test cell")
        verdict = await loop.run_in_executor(None, run_verdict, source, self._namespace, session, f"<{name}>")
        self._review += [f"{self._where(cell, cell_index)}: {line}" for line in session.review]
        self._mistake = session.mistake
        return verdict

    async def _evaluate(self, expression: str, timeout: float, cell, cell_index: int) -> str:
        """Evaluate ``expression`` in the kernel as a user expression of a silent execute request, and return
        its text form. No cell runs, so IPython's transformers, cell hooks and history never see it, and
        what the student's code prints meanwhile is not kept. Raises ``AssertionError`` with what went wrong;
        a kernel that died or is stuck also stops the notebook."""
        remaining = max(1, int(self._deadline - time.monotonic()))
        timeout = max(1, min(timeout, remaining))
        msg_id = self.kc.execute("", silent=True, store_history=False, user_expressions={"value": expression},
                                 allow_stdin=False, stop_on_error=False)
        deadline, interrupted = time.monotonic() + timeout, False
        while True:
            if time.monotonic() > deadline:
                if interrupted:
                    self._stop("the kernel stopped answering the grader", cell, cell_index)
                    raise AssertionError("the notebook's kernel stopped answering the grader")
                await ensure_async(self.km.interrupt_kernel())
                deadline, interrupted = time.monotonic() + self.probe_timeout, True
            try:
                msg = await ensure_async(self.kc.shell_channel.get_msg(timeout=1))
            except queue.Empty:
                if not await ensure_async(self.km.is_alive()):
                    self._stop(self._why_dead(), cell, cell_index)
                    raise AssertionError("the notebook's kernel died while the grader ran its tests") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") == msg_id:
                break
        if interrupted:
            raise AssertionError(f"the notebook's code gave no answer within {int(timeout)} s: the call was stopped")
        value = msg["content"].get("user_expressions", {}).get("value", {})
        if value.get("status") != "ok":
            raise AssertionError(f"the grader's request failed in the kernel ({value.get('ename')}: {value.get('evalue')})")
        text = value.get("data", {}).get("text/plain")
        if not isinstance(text, str):
            raise AssertionError("the notebook's kernel answered the grader with something other than text")
        return text

    async def _restore_mode(self, cell, cell_index: int) -> None:
        """Fast and full mode train on different sizes: the grader's mode holds in the kernel throughout."""
        environ = "__import__('os').environ"
        put_back = (f"{environ}.__setitem__('COURSE_FAST', {self._mode!r})" if self._mode is not None
                    else f"{environ}.pop('COURSE_FAST', None)")
        try:
            text = await self._evaluate(f"({environ}.get('COURSE_FAST'), {put_back})[0]", self.probe_timeout,
                                        cell, cell_index)
        except AssertionError:
            return
        if text != repr(self._mode):
            self._findings.append(f"{self._where(cell, cell_index)} set COURSE_FAST to {text}: it was put back to "
                                  f"the grader's {self._mode!r} (noted, no points lost)")

    def _why_dead(self, what: str = "died") -> str:
        cap = getattr(self.km, "process_cap", None)
        if cap is not None and cap.hits():
            cap.kill()
            return f"the kernel {what} after trying to start more than {self.process_limit} processes (a fork bomb?)"
        if what == "died":
            return "the kernel died while running it (os._exit, a crash, running out of memory or a killed process)"
        return f"the kernel {what} while running it"

    def output(self, outs, msg, display_id, cell_index):
        """nbclient's handler for one output message, with the notebook's output capped at ``output_limit``."""
        content = msg.get("content", {})
        size = len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
        self._output_bytes += size
        if self._output_bytes > self.output_limit and msg["msg_type"] in ("stream", "display_data", "execute_result",
                                                                          "update_display_data"):
            if not self._output_dropped:
                self._output_dropped = True
                outs.append(new_output("stream", name="stdout", text=f"\n[the autograder dropped the output beyond "
                                                                     f"{self.output_limit / 2 ** 20:g} MiB]\n"))
            return None
        return super().output(outs, msg, display_id, cell_index)

    def _stop(self, why: str, cell, cell_index: int) -> None:
        self._stopped = f"{self._where(cell, cell_index)}: {why}"
        self._findings.append(f"{self._stopped}; the cells after it were not run and every autograded one scores 0")
        self.log.warning("stopped at %s", self._stopped)

    execute_cell = run_sync(async_execute_cell)  # nbclient's sync wrapper would call its own method

    @staticmethod
    def _where(cell, cell_index: int) -> str:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {cell_index + 1}" + (f" ({grade_id})" if grade_id else "")

    def _report(self, nb, resources, workdir: str) -> None:
        flags = suspicious_code(nb) + self._review
        if not self._findings and not flags:
            return
        info = resources.get("nbgrader", {})
        lines = ["**Integrity report** (from the autograder; your instructor sees it too).", ""]
        lines += [f"- {finding}" for finding in self._findings]
        if flags:
            lines += ["", "Code for your instructor to look at (costs no points by itself):", ""]
            lines += [f"- `{flag}`" for flag in flags]
        note = new_markdown_cell("\n".join(lines), metadata={"tags": [NOTE_MARKER]})
        nb.cells.insert(0, note)
        report = {"student": info.get("student"), "assignment": info.get("assignment"),
                  "notebook": info.get("notebook"), "findings": self._findings, "review": flags}
        name = info.get("notebook") or "notebook"
        write_new(Path(workdir, name + REPORT_SUFFIX), json.dumps(report, indent=2))
        for finding in self._findings:
            self.log.warning("%s/%s: %s", info.get("student"), name, finding)


def source_notebook_folder(config) -> Path:
    """The course's source folder (the solutions), from nbgrader's configuration."""
    return Path(config.CourseDirectory.get("root") or ".", config.CourseDirectory.get("source_directory") or "source")


def measured_seconds(folder: Path, notebook: str) -> dict[str, float]:
    """The solution's measured seconds per cell id of ``notebook`` in the environment's mode, from
    ``folder/CELL_TIMES`` (empty where the table or the notebook is missing)."""
    path = folder / CELL_TIMES
    if not path.is_file():
        return {}
    return json.loads(path.read_text()).get("fast" if is_fast() else "full", {}).get(notebook, {})


class CellTimeLimits(NbGraderPreprocessor):
    """Give each cell the solution's measured time in the grader's mode (``CELL_TIMES``) times ``margin``,
    plus ``floor`` seconds, as its time limit; a cell the table does not know keeps the global one."""

    margin = Float(TIME_MARGIN, help="times the solution's measured time a cell may take").tag(config=True)
    floor = Integer(TIME_FLOOR, help="seconds added to every measured limit").tag(config=True)

    def preprocess(self, nb, resources):
        seconds = measured_seconds(source_notebook_folder(self.config), resources["nbgrader"]["notebook"])
        for cell in nb.cells:
            if cell.get("id") in seconds:
                cell.metadata[TIME_LIMIT] = int(self.floor + self.margin * seconds[cell.id])
        return nb, resources


class ValidatorTimeLimits:
    """nbclient's ``timeout_func`` for nbgrader's Validator (the *Validate* button, ``course_grading
    validate``): a cell of a notebook the solution's measured times know gets the limit autograde gives it
    (``CellTimeLimits``); any other cell ``default`` seconds. The Validator runs a notebook in its own
    folder, and a course notebook's folder has its name (``NN_name/NN_name.ipynb``): that names the table."""

    def __init__(self, source_folder: str | Path, default: int, margin: float = TIME_MARGIN, floor: int = TIME_FLOOR):
        self.source_folder, self.default, self.margin, self.floor = Path(source_folder), default, margin, floor

    def __call__(self, cell) -> int:
        seconds = measured_seconds(self.source_folder, Path.cwd().name).get(cell.get("id"))
        return self.default if seconds is None else int(self.floor + self.margin * seconds)


class SkipExperiments(NbGraderPreprocessor):
    """Mark the cells grading leaves unrun: a code cell whose text is that of a cell the solution tags
    ``skip-when-grading`` (an experiment whose results no graded cell reads, such as notebook 07's depth
    experiment, and the summary that records them), unless a cell that runs reads a name it defines
    (``course_grading.skips``: an answer may reuse an experiment's result). A graded or answer cell, and a
    cell the student changed, always runs."""

    enabled = Bool(True, help="leave unrun the solution's cells tagged 'skip-when-grading'").tag(config=True)

    def preprocess(self, nb, resources):
        if not self.enabled:
            return nb, resources
        info = resources.get("nbgrader", {})
        path = source_notebook_folder(self.config) / info.get("assignment", "") / (info.get("notebook", "") + ".ipynb")
        if not path.is_file():
            self.log.warning("no solution notebook at %s: every cell runs", path)
            return nb, resources
        solution = nbformat.read(path, as_version=4)
        tagged_sources = {cell.source.strip() for cell in solution.cells
                          if cell.cell_type == "code" and SKIP_TAG in cell.metadata.get("tags", [])}
        code = [cell for cell in nb.cells if cell.cell_type == "code"]
        tagged = [cell.source.strip() in tagged_sources and not utils.is_grade(cell) and not utils.is_solution(cell)
                  for cell in code]
        for cell, flag, runs in zip(code, tagged, cells_to_run([cell.source for cell in code], tagged)):
            if flag and not runs:
                cell.metadata[SKIPPED] = True
        return nb, resources


def normalise(nb) -> None:
    """Keep of each cell only what grading reads: its nbgrader metadata (tags such as ``skip-execution``,
    other metadata and outputs would change how it runs or what nbgrader scores)."""
    for cell in nb.cells:
        cell.metadata = from_dict({"nbgrader": cell.metadata["nbgrader"]} if "nbgrader" in cell.metadata else {})
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.pop("attachments", None)


def plain_outputs(cell) -> None:
    """A test cell's output from the kernel as text for the student: an error, a displayed value and
    stderr can neither zero the cell nor give partial credit in nbgrader; the verdict decides."""
    outputs = []
    for output in cell.outputs:
        if output.output_type == "error":
            outputs.append(new_output("stream", name="stdout", text=f"{output.ename}: {output.evalue}\n"))
        elif output.output_type == "execute_result":
            outputs.append(new_output("display_data", data=output.data, metadata=output.get("metadata", {})))
        elif output.output_type == "stream" and output.name == "stderr":
            outputs.append(new_output("stream", name="stdout", text=output.text))
        else:
            outputs.append(output)
    cell.outputs = outputs


def submission_links(*folders) -> list:
    """Symbolic links in the submission's folders (the grader never follows one)."""
    links = []
    for folder in folders:
        if folder is None or not os.path.lexists(folder):
            continue
        if os.path.islink(folder):
            links.append(str(folder))
            continue
        for parent, dirs, files in os.walk(folder):
            links += [os.path.join(parent, n) for n in dirs + files if os.path.islink(os.path.join(parent, n))]
    return links


def remove_links(folder) -> list:
    """Remove the symbolic links in ``folder`` (planted by the kernel, for the grader to write through)."""
    removed = submission_links(folder)
    for link in removed:
        os.unlink(link)
    return removed


def folder_bytes(folder) -> int:
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(parent, name)).st_size
    return total


def write_new(path: Path, text: str) -> None:
    """Write ``path`` without following a link that stands there."""
    if path.is_symlink():
        path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
