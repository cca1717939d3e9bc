"""Seconds to autograde a class: serial ``nbgrader autograde`` vs ``python -m course_grading grade``.

    python scripts/bench_grading.py [--students 24] [--assignment 01_numpy_mlp] [--workers 2]
    python scripts/bench_grading.py --students 2 --assignment 07_modern_cnn --only grade   # one notebook's cost

In a temporary course, ``--students`` copies of the solution are graded four ways, each into a fresh
gradebook (and each run reports how many got full marks, which must be all): nbgrader's own
``autograde`` with the course's configuration, once without the sandbox (``GuardedExecute.sandbox =
False``) and once with it (their difference is the sandbox's overhead), then ``grade --workers 1`` and
``grade --workers N``; one untimed submission first pays the cold start. It prints the seconds of each,
the per-submission times and the ratios. Use ``COURSE_FAST=1`` (the default here) for fast-mode
notebooks and ``COURSE_FAST=0`` for full mode. ``--only grade`` runs ``grade --workers 1`` alone: the
seconds per submission of one worker, from which the class-of-300 table in the README is computed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from course_lib.settings import is_fast  # noqa: E402
NBGRADER = str(Path(sys.executable).with_name("nbgrader"))


def make_course(root: Path, assignment: str, students: int, env: dict) -> None:
    root.mkdir(parents=True)
    shutil.copy(REPO / "nbgrader_config.py", root)
    shutil.copytree(REPO / "solutions" / assignment, root / "solutions" / assignment)
    subprocess.run([NBGRADER, "generate_assignment", assignment, "--force"], cwd=root, env=env, check=True,
                   capture_output=True)
    for student in range(students):
        shutil.copytree(REPO / "solutions" / assignment, root / "submitted" / f"student{student:03d}" / assignment)


def timed(command: list, root: Path, env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds


def full_marks(root: Path, assignment: str) -> int:
    """How many submissions got every autograded point (each is a copy of the solution)."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gradebook:
        return sum(1 for submission in gradebook.find_assignment(assignment).submissions
                   if submission.code_score == submission.max_code_score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--students", type=int, default=24)
    parser.add_argument("--assignment", default="01_numpy_mlp")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    parser.add_argument("--only", choices=["grade"], help="only grade --workers 1 (a notebook's cost per submission)")
    args = parser.parse_args()
    os.environ.setdefault("COURSE_FAST", "1")
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_DB_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(NBGRADER).parent), env["PATH"]])  # nbgrader runs alembic
    autograde = [NBGRADER, "autograde", args.assignment, "--create"]
    grade = [sys.executable, "-m", "course_grading", "grade", args.assignment]
    runs = {"nbgrader autograde, no sandbox": autograde + ["--GuardedExecute.sandbox=False"],
            "nbgrader autograde, sandboxed": autograde,
            "grade --workers 1": grade + ["--workers", "1"],
            f"grade --workers {args.workers}": grade + ["--workers", str(args.workers)]}
    if args.only:
        runs = {"grade --workers 1": runs["grade --workers 1"]}
    seconds = {}
    with tempfile.TemporaryDirectory(prefix="bench-grading-") as folder:
        # one submission graded first, untimed: the first run would otherwise pay the cold start (libraries
        # and data read from disk) that the runs after it do not
        make_course(Path(folder, "warm-up"), args.assignment, 1, env)
        timed(autograde, Path(folder, "warm-up"), env)
        for number, (name, command) in enumerate(runs.items()):
            root = Path(folder, f"course{number}")
            make_course(root, args.assignment, args.students, env)
            seconds[name] = timed(command, root, env)
            print(f"{name:<32} {seconds[name]:7.1f} s  ({seconds[name] / args.students:5.1f} s per submission), "
                  f"{full_marks(root, args.assignment)}/{args.students} full marks", flush=True)
    mode = "fast" if is_fast() else "full"
    if args.only:
        print(f"{args.assignment}, {mode} mode, {os.cpu_count()} cores: "
              f"{seconds['grade --workers 1'] / args.students:.1f} s per submission")
        return
    plain, sandboxed, serial, parallel = seconds.values()
    print(f"sandbox overhead: {100 * (sandboxed / plain - 1):+.1f}% of a submission's time; "
          f"grade --workers {args.workers} vs serial nbgrader (sandboxed): {sandboxed / parallel:.2f}x; "
          f"vs grade --workers 1: {serial / parallel:.2f}x ({args.students} submissions of {args.assignment}, "
          f"{mode} mode, {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
