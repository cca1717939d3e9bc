"""Trials per minute of one worker and of two workers on one Optuna study.

    python scripts/bench_tuning_workers.py [--trials 16] [--storage URL]

Each worker is a separate ``python -m course_lib tune`` process with one thread (OMP_NUM_THREADS=1)
on ``tests/tuning_objectives.py:tiny_mlp`` (about a second per trial on one core), random sampler,
no pruning. A rate counts the study's finished trials over the time from its first trial's start
to its last trial's end, so process start-up is left out. Default storage: a temporary SQLite file.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import optuna

from course_lib.tuning import finished_trials, open_storage

REPO = Path(__file__).resolve().parents[1]
OBJECTIVE = f"{REPO / 'tests' / 'tuning_objectives.py'}:tiny_mlp"


def trials_per_minute(workers: int, trials: int, storage_url: str) -> float:
    """Run ``workers`` worker processes on a new study until it holds ``trials`` finished trials."""
    name = f"bench-{workers}-workers-{uuid.uuid4().hex[:8]}"
    command = [sys.executable, "-m", "course_lib", "tune", name, "--objective", OBJECTIVE, "--trials", str(trials),
               "--storage", storage_url, "--sampler", "random", "--pruner", "none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    processes = [subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL) for _ in range(workers)]
    for process in processes:
        if process.wait() != 0:
            sys.exit(f"a worker exited with {process.returncode} (its error is above)")
    trials_done = finished_trials(optuna.load_study(study_name=name, storage=open_storage(storage_url)))
    span = max(t.datetime_complete for t in trials_done) - min(t.datetime_start for t in trials_done)
    return len(trials_done) / (span.total_seconds() / 60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=16, help="finished trials per study (default: 16)")
    parser.add_argument("--storage", help="SQLAlchemy URL (default: a temporary SQLite file)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        storage_url = args.storage or f"sqlite:///{Path(folder) / 'bench.db'}"
        one = trials_per_minute(1, args.trials, storage_url)
        two = trials_per_minute(2, args.trials, storage_url)
    print(f"1 worker:  {one:.1f} trials/min\n2 workers: {two:.1f} trials/min\nratio:     {two / one:.2f}x "
          f"({os.cpu_count()} cores, {args.trials} trials each)")


if __name__ == "__main__":
    main()
