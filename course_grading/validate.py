"""Validate notebooks as nbgrader's *Validate* button does, with progress: ``python -m course_grading validate
[NN_name ...] [--release] [--course DIR]``.

nbgrader's Validator runs a notebook in a fresh kernel and fails a graded cell on any error or any output
to stderr; its button shows nothing for the minutes a notebook can take. This runs the same Validator, with
the course's configuration (``nbgrader_config.py``, as the button has it: each cell's time limit from the
solution's measured time) and a progress bar per notebook, then prints what failed. The solutions (the
default) must pass; ``--release`` validates the student versions the other way round (nbgrader's
``invert``): a graded cell that passes before the student did anything is the problem there. The mode is
the environment's: ``COURSE_FAST=1`` for fast mode.
"""
from __future__ import annotations

import argparse
import copy
import re
import subprocess
import sys
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from nbgrader.preprocessors import CheckCellMetadata, ClearOutput, Execute
from nbgrader.validator import Validator
from tqdm.auto import tqdm
from traitlets import Unicode
from traitlets.config import Config

from course_grading.course import course_config, course_folder


ANSI = re.compile(r"\x1b\[[0-9;]*m")


class QuietKernelManager(AsyncKernelManager):
    """A kernel whose own stderr (its start-up warnings) stays off the progress bar's screen."""

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        kw.setdefault("stderr", subprocess.DEVNULL)
        return await super()._async_launch_kernel(kernel_cmd, **kw)


class ExecuteWithProgress(Execute):
    """nbgrader's Execute, advancing a progress bar as each code cell finishes."""

    notebook_name = Unicode("", help="shown before the bar").tag(config=True)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("kernel_manager_class", QuietKernelManager)
        super().__init__(*args, **kwargs)

    def preprocess(self, nb, resources=None, km=None):
        cells = sum(cell.cell_type == "code" for cell in nb.cells)
        with tqdm(total=cells, desc=f"validating {self.notebook_name}", unit="cell", file=sys.stderr) as self._bar:
            return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell, resources, index):
        result = super().preprocess_cell(cell, resources, index)
        if cell.cell_type == "code":
            self._bar.update(1)
        return result


def validate(notebook: Path, course_config: Config, release: bool = False) -> list[str]:
    """What nbgrader's Validator, configured by ``course_config``, finds in ``notebook``, run in its own
    folder: cells whose type or locked source changed, and the graded cells that fail (or, for a
    ``release``, that pass); the first line of each cell and the last of its error."""
    config = copy.deepcopy(course_config)
    config.merge(Config({"Validator": {"invert": release}, "ExecuteWithProgress": {"notebook_name": notebook.stem}}))
    validator = Validator(config=config)
    validator.preprocessors = [ClearOutput, CheckCellMetadata, ExecuteWithProgress]
    result = validator.validate(str(notebook))
    problems = []
    for kind in ("type_changed", "changed", "failed", "passed"):
        for cell in result.get(kind, []):
            first = (cell.get("source") or "").strip().splitlines()[:1]
            lines = [line for line in ANSI.sub("", cell.get("raw_error") or "").splitlines()
                     if line.strip() and not line.startswith("→")]   # the check's own "what to do next"
            error = lines[-1:]
            problems.append(f"{kind}: {first[0] if first else '(empty cell)'}" + (f" -> {error[0]}" if error else ""))
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m course_grading validate", description=__doc__.split("\n\n")[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("assignments", nargs="*", help="e.g. 01_numpy_mlp (default: every assignment)")
    parser.add_argument("--release", action="store_true", help="validate notebooks/ instead of solutions/")
    parser.add_argument("--course", default=".", help="the course folder (with nbgrader_config.py)")
    args = parser.parse_args(argv)
    course = course_folder(parser, args.course)
    config = course_config(course)
    folder = course / ("notebooks" if args.release else "solutions")
    names = args.assignments or sorted(p.parent.name for p in folder.glob("*/*.ipynb") if p.stem == p.parent.name)
    missing = [name for name in names if not (folder / name / f"{name}.ipynb").is_file()]
    if missing or not names:
        parser.error(f"no {', '.join(missing) or 'notebooks'} in {folder} (expected {folder.name}/NN_name/NN_name.ipynb)")
    failed = 0
    for name in names:
        try:
            problems = validate(folder / name / f"{name}.ipynb", config, args.release)
        except Exception as err:  # the kernel died or could not start
            problems = [f"could not run: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[-1]}"]
        failed += bool(problems)
        expected = "every graded cell fails before the student's work, as it should" if args.release else "passes"
        print(f"{name}: " + (expected if not problems else f"{len(problems)} problem(s)"))
        for problem in problems[:20]:
            print(f"  {problem[:200]}")
    return 1 if failed else 0
