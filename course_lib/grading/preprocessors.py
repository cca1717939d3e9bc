"""nbgrader preprocessors that keep a grade honest when a submission is hostile or broken.

``nbgrader_config.py`` puts them into ``nbgrader autograde``:

- ``RestoreCellMetadata`` (sanitizing, after nbgrader's ``DeduplicateIds``): cells whose nbgrader
  metadata was edited (points, grade id, locked, cell type) or that were deleted are restored from
  the gradebook and recorded, so that nbgrader grades the honest cells instead of rejecting the
  whole notebook.
- ``GuardedExecute`` (instead of nbgrader's ``Execute``): runs the kernel in a bubblewrap sandbox
  that hides the course folder (solutions, gradebook, other students) and, after every cell, asks the
  kernel what changed among the things a hidden test relies on (``kernel_state``). From the first
  change on, every autograded cell scores zero with an ``IntegrityError`` that says why. A note at
  the top of the graded notebook (and so of the feedback) and ``<notebook>.integrity.json`` beside it
  list what was found; ``python -m course_lib integrity NN_name`` gathers them for the instructor.
"""
from __future__ import annotations

import ast
import functools
import json
import os
import re
import secrets
import time
from pathlib import Path

from jupyter_core.utils import run_sync
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output
from nbgrader import utils
from nbgrader.api import Gradebook
from nbgrader.preprocessors import ClearHiddenTests, Execute, NbGraderPreprocessor
from traitlets import Bool, Integer

from course_lib.grading.sandbox import Limits, SandboxedKernelManager

REPORT_SUFFIX = ".integrity.json"
NOTE_MARKER = "course-integrity-note"

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
    """Restore edited or deleted nbgrader cells from the gradebook and record each change."""

    def preprocess(self, nb, resources):
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


def locked_aliases(nb) -> dict:
    """Names the locked cells bind with ``import``: name -> [module, attribute or None]."""
    aliases = {}
    for cell in nb.cells:
        if cell.cell_type != "code" or not utils.is_locked(cell):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for name in node.names:
                    alias = name.asname or name.name.split(".")[0]
                    aliases[alias] = [name.name if name.asname else alias, None]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for name in node.names:
                    if name.name != "*":
                        aliases[name.asname or name.name] = [node.module, name.name]
    return aliases


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
    """nbgrader's Execute, sandboxed, with the kernel's integrity checked after every cell."""

    sandbox = Bool(True, help="run the kernel in a bubblewrap sandbox").tag(config=True)
    probe_timeout = Integer(60, help="seconds the kernel has to answer the integrity check").tag(config=True)
    notebook_timeout = Integer(7200, help="seconds the whole notebook may run (each cell also has `timeout`); "
                                          "the cells after that are not run and score 0").tag(config=True)
    memory_limit = Integer(Limits.memory, help="bytes of data each process of the kernel may hold").tag(config=True)
    process_limit = Integer(Limits.processes, help="processes and threads the kernel may run at once").tag(config=True)
    output_limit = Integer(20 * 1024 ** 2, help="bytes of output the notebook may produce (text, images); "
                                                "beyond that its output is dropped").tag(config=True)

    def preprocess(self, nb, resources, km=None):
        self._findings = list(nb.metadata.pop("course_integrity", {}).get("cells", []))
        self._tampered = None
        self._aliases = locked_aliases(nb)
        self._snapshot_taken = False
        self._stopped = None       # why the cells after this point are not run
        self._deadline = time.monotonic() + self.notebook_timeout
        self._output_bytes, self._output_dropped, self._probing = 0, False, False
        self._cell_timeout = self.timeout
        workdir = resources.get("metadata", {}).get("path") or os.getcwd()
        own_kernel = self.sandbox and km is None
        if own_kernel:
            km = self._sandboxed_manager(nb, os.path.abspath(workdir))
        try:
            nb, resources = super().preprocess(nb, resources, km=km)
        finally:  # nbclient shuts down only the kernels of managers it made itself
            self.timeout = self._cell_timeout
            if own_kernel and self.km is not None:
                self._cleanup_kernel()
        if self._tampered is None and not self._snapshot_taken:
            self._findings.append("no cell ran: the integrity check could not start")
        if self._output_dropped:
            self._findings.append(f"the notebook printed or displayed more than {self.output_limit / 2 ** 20:g} MiB: "
                                  "the output beyond that was dropped (the cells still ran and were graded)")
        self._report(nb, resources, workdir)
        return nb, resources

    def _sandboxed_manager(self, nb, workdir: str):
        import course_lib
        from course_lib.settings import cache_dir, data_dir

        package = Path(course_lib.__file__).resolve().parent
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
                                    hidden=sorted(hidden), visible=[str(package), data, cache], workdir=workdir,
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
            cell.outputs = []
            if utils.is_grade(cell):
                cell.outputs.append(new_output("error", ename="NotRun", evalue=self._stopped,
                                               traceback=[f"NotRun: this cell was not run: {self._stopped}"]))
            return self._zero_if_graded(cell)
        if not self._snapshot_taken:
            self._snapshot_taken = True
            problem = await self._run_guard_code(
                "import course_lib.grading.kernel_state as _course_state\n"
                f"_course_state.take_snapshot({self._aliases!r})\ndel _course_state", cell_index)
            if problem:
                self._tamper(f"the integrity check could not start: {problem}", cell, cell_index)
        self.timeout = max(1, min(self._cell_timeout or remaining, int(remaining)))
        try:
            cell = await super().async_execute_cell(cell, cell_index, execution_count, store_history)
        except DeadKernelError:
            cell.outputs.append(new_output("error", ename="DeadKernelError", evalue="the kernel died",
                                           traceback=["DeadKernelError: the kernel died while running this cell"]))
            self._stop(self._why_dead(), cell, cell_index)
            return self._zero_if_graded(cell)
        except CellTimeoutError:  # the kernel stopped sending its output (stuck, or forked copies of it)
            cell.outputs.append(new_output("error", ename="CellTimeoutError", evalue="the kernel stopped answering",
                                           traceback=["CellTimeoutError: the kernel stopped answering while running "
                                                      "this cell"]))
            self._stop(self._why_dead("stopped answering"), cell, cell_index)
            return self._zero_if_graded(cell)
        finally:
            self.timeout = self._cell_timeout
        cap = getattr(self.km, "process_cap", None)
        if cap is not None and cap.hits():  # a fork bomb: the sandbox is stopped before it does more
            cap.kill()
            self._stop(f"it tried to start more than {self.process_limit} processes (a fork bomb?): "
                       "the kernel was stopped", cell, cell_index)
            return self._zero_if_graded(cell)
        if self._stopped is None and time.monotonic() >= self._deadline:
            self._stop(f"the notebook reached its time limit ({self.notebook_timeout} s) in this cell", cell, cell_index)
        if self._stopped is None and self._tampered is None:
            nonce = secrets.token_hex(16)
            found = await self._run_guard_code(
                "import course_lib.grading.kernel_state as _course_state\n"
                f"_course_state.report({nonce!r})\ndel _course_state", cell_index, nonce)
            if isinstance(found, str):
                self._tamper(found, cell, cell_index)
            elif found:
                self._findings += [f"{self._where(cell, cell_index)}: {note}" for note in found["restored"]]
                if found["changes"]:
                    self._tamper("; ".join(found["changes"]), cell, cell_index)
        if utils.is_grade(cell):
            for output in cell.outputs:  # nbgrader zeroes a cell with any stderr: a warning is not a failure
                if output.output_type == "stream" and output.name == "stderr":
                    output.name = "stdout"
        return self._zero_if_graded(cell)

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
        if self._probing:  # the grader's own check: neither counted nor dropped
            return super().output(outs, msg, display_id, cell_index)
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

    def _zero_if_graded(self, cell):
        if self._tampered is not None and utils.is_grade(cell) and not utils.is_solution(cell):
            cell.outputs.append(new_output(
                "error", ename="IntegrityError", evalue=f"this cell scores 0: {self._tampered}",
                traceback=[f"IntegrityError: this cell ran after the notebook changed what the tests rely on "
                           f"({self._tampered}); it scores 0. See the note at the top of the notebook."]))
        return cell

    execute_cell = run_sync(async_execute_cell)  # nbclient's sync wrapper would call its own method

    @staticmethod
    def _where(cell, cell_index: int) -> str:
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        return f"cell {cell_index + 1}" + (f" ({grade_id})" if grade_id else "")

    def _tamper(self, what: str, cell, cell_index: int) -> None:
        self._tampered = f"after {self._where(cell, cell_index)}: {what}"
        self._findings.append(f"the kernel was changed {self._tampered}; every autograded cell from there on scores 0")

    async def _run_guard_code(self, source: str, cell_index: int, nonce: str | None = None):
        """Run the grader's own code in the kernel; returns None when all is well, else what went wrong
        (a string) or, with a ``nonce``, what the kernel reported (``kernel_state.report``)."""
        probe, cell, timeout = new_code_cell(source), self.nb.cells[cell_index], self.timeout
        self.timeout, self._probing = self.probe_timeout, True
        try:
            await super().async_execute_cell(probe, cell_index, store_history=False)
        except Exception as err:  # the kernel died or stopped answering
            self._stopped = self._stopped or "the kernel stopped answering the grader"
            return f"the kernel stopped answering the grader ({type(err).__name__})"
        finally:
            self.timeout, self._probing = timeout, False
            self.nb.cells[cell_index] = cell  # nbclient stores the cell it ran at that index
        errors = [o for o in probe.outputs if o.output_type == "error"]
        if any(o.ename == "CellTimeoutError" for o in errors):
            self._stopped = self._stopped or "the kernel stopped answering the grader"
            return "the kernel stopped answering the grader (no reply within the time limit)"
        if errors:
            return f"the grader's code failed in the kernel ({errors[0].ename}: {errors[0].evalue})"
        if nonce is None:
            return None
        text = "".join(o.get("text", "") for o in probe.outputs if o.output_type == "stream")
        for line in text.splitlines():
            if line.startswith(nonce + " "):
                found = json.loads(line[len(nonce) + 1:])
                return found if any(found.values()) else None
        return "the grader's check did not run as sent (its answer never came back)"

    def _report(self, nb, resources, workdir: str) -> None:
        flags = suspicious_code(nb)
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
        Path(workdir, name + REPORT_SUFFIX).write_text(json.dumps(report, indent=2))
        for finding in self._findings:
            self.log.warning("%s/%s: %s", info.get("student"), name, finding)
