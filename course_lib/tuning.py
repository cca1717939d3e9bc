"""Optuna studies that persist, resume after a restart, and spread over many workers.

    study = open_study(study_name("lr-search", objective, settings))   # created, or loaded and resumed
    optimize(study, objective, n_trials=30)        # runs only the trials still missing
    plot_best_so_far({"TPE": study})

Where studies live: ``COURSE_OPTUNA_STORAGE`` (any SQLAlchemy URL, e.g. a PostgreSQL database
shared by several machines), else a SQLite file in the course cache (``default_storage_url()``).
When that folder cannot be written (the autograder's sandbox), the study lives in memory only.

Many workers: ``python -m course_lib tune STUDY --objective file.py:function --trials N
--storage URL``, started on as many machines as you like, share one study until it holds N
finished trials. Every running trial sends a heartbeat; a trial whose worker died (no heartbeat
for three intervals) is marked FAIL and queued again, at most three times, for whichever worker
asks next. A trial whose training went NaN (``NonFiniteLossError`` from ``fit``) is recorded as
FAIL with its message, and the study goes on.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna
import sqlalchemy
from optuna.trial import TrialState

from course_lib.errors import CourseFileNotFoundError, CourseTypeError, CourseValueError, NonFiniteLossError
from course_lib.settings import cache_dir
from course_lib.validation import SEED_LIMIT, check_callable, check_choice, check_int, check_number, describe

__all__ = [
    "STORAGE_VARIABLE", "StorageError", "default_storage_url", "open_storage", "study_name", "open_study",
    "finished_trials", "optimize", "best_so_far", "plot_best_so_far", "load_objective", "main",
    "mask_password", "describe_storage", "optuna_logging", "build_parser", "summary",
]

STORAGE_VARIABLE = "COURSE_OPTUNA_STORAGE"
_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
_RETRIES = 3
_TABLE_ATTEMPTS = 5
_DEFAULT_SOURCE = "the default storage"
_URL_EXAMPLES = "an SQLAlchemy URL such as postgresql://user:password@host/db or sqlite:///path/studies.db"


class StorageError(CourseValueError):
    """A storage URL that Optuna cannot open; the message says where the URL came from and what to do."""


# ----------------------------------------------------------------------------------------------
# Storage
# ----------------------------------------------------------------------------------------------
def default_storage_url() -> str:
    """``sqlite:///<cache dir>/optuna/studies.db``; creates the folder."""
    folder = (cache_dir() / "optuna").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'studies.db'}"


def open_storage(url: str | None = None, *, heartbeat: float = 10, source: str = "storage"):
    """The Optuna storage at ``url``, with heartbeats every ``heartbeat`` seconds and stale trials retried.

    ``url`` None: ``$COURSE_OPTUNA_STORAGE`` if set, else ``default_storage_url()``; when the
    default's folder cannot be written, an ``InMemoryStorage`` (and a line saying so).
    ``source`` names where an explicit ``url`` came from in error messages (the CLI passes
    ``"--storage"``). Raises ``StorageError`` when the storage cannot be opened.
    """
    heartbeat = check_number("heartbeat", heartbeat, low=0, low_open=True, hint="seconds between a trial's beats")
    if url is not None and not isinstance(url, str):
        raise CourseTypeError(f"storage must be a database URL ({_URL_EXAMPLES}), an Optuna storage or None, got "
                              f"{describe(url)}")
    if url is None and os.environ.get(STORAGE_VARIABLE):
        url, source = os.environ[STORAGE_VARIABLE], STORAGE_VARIABLE
    elif url is None:
        try:
            url, source = default_storage_url(), _DEFAULT_SOURCE
            _require_writable(cache_dir() / "optuna")
        except OSError as err:
            print(f"the course cache cannot be written ({err}): this study lives in memory only this time; "
                  f"set {STORAGE_VARIABLE} to a database URL to keep it")
            return optuna.storages.InMemoryStorage()
    try:
        return _rdb_storage(url, heartbeat)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError, RuntimeError, OSError) as err:
        reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0]
        if isinstance(err, ImportError):
            reason = f"its database driver is missing ({err.__cause__ or err}): pip install it"
        shown = mask_password(url)
        named = f"the default storage {shown}" if source == _DEFAULT_SOURCE else f"{source}={shown!r}"
        raise StorageError(f"{named} could not be opened: {reason.replace(url, shown)}. {_advice(source)}") from err


def _rdb_storage(url: str, heartbeat: float):
    """``RDBStorage`` with heartbeats and retries; tolerates another worker creating the tables at the same time."""
    for attempt in range(_TABLE_ATTEMPTS):
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", r".*(heartbeat_interval|grace_period|RetryHeartbeatStaleTrialCallback)",
                                        optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(
                    _with_installed_driver(url), engine_kwargs=_engine_kwargs(url),
                    heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=_RETRIES),
                )
        except sqlalchemy.exc.DatabaseError as err:
            if attempt == _TABLE_ATTEMPTS - 1 or not _lost_table_race(err):
                raise
            time.sleep(0.2 * (attempt + 1))


def _lost_table_race(err: Exception) -> bool:
    """True when another worker created Optuna's tables or version record first (opening again then works)."""
    return isinstance(err, sqlalchemy.exc.IntegrityError) or "already exists" in str(err)


def _advice(source: str) -> str:
    """What to do about a storage URL that cannot be opened, given where it came from."""
    if source == _DEFAULT_SOURCE:
        return f"Set {STORAGE_VARIABLE} to {_URL_EXAMPLES} to use another one"
    undo = f"unset {STORAGE_VARIABLE}" if source == STORAGE_VARIABLE else f"leave out {source}"
    return f"Set it to {_URL_EXAMPLES}, or {undo} to use the default SQLite file <course cache>/optuna/studies.db"


def _require_writable(folder: Path) -> None:
    """Raise ``PermissionError`` unless this process may create files in ``folder``."""
    if not os.access(folder, os.W_OK):
        raise PermissionError(f"{folder} is read-only")


def _engine_kwargs(url: str) -> dict:
    """SQLite waits up to a minute for a lock (several workers share the file); servers time out connecting."""
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 60}}
    if url.startswith("postgresql"):
        return {"connect_args": {"connect_timeout": 10}}
    return {}


def _with_installed_driver(url: str) -> str:
    """``postgresql://`` means psycopg2 to SQLAlchemy; use psycopg 3 (what the course installs) without it."""
    if url.startswith("postgresql://") and importlib.util.find_spec("psycopg2") is None:
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


def mask_password(url: str) -> str:
    """``url`` with any password replaced by ``***``, for messages."""
    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except sqlalchemy.exc.ArgumentError:  # not a URL SQLAlchemy can parse: mask by pattern
        return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def describe_storage(storage) -> str:
    """Where ``storage`` keeps its studies: its URL (password masked) or "memory"."""
    if isinstance(storage, optuna.storages.RDBStorage):
        return mask_password(storage.url)
    if isinstance(storage, optuna.storages.InMemoryStorage):
        return "memory (lost when this process ends)"
    return type(storage).__name__


# ----------------------------------------------------------------------------------------------
# Studies
# ----------------------------------------------------------------------------------------------
def study_name(name: str, *parts) -> str:
    """``name`` plus 8 hex digits that change whenever the objective's source or the settings change.

    A function in ``parts`` contributes its source code (its qualified name when the source is
    not available), anything else its ``repr``: give settings as plain values (numbers, strings,
    lists, dicts). Functions the objective calls are not included: pass them too if they change.
    """
    _check_name(name)
    description = "\n".join(_describe_part(part) for part in parts)
    return f"{name}-{hashlib.sha1(description.encode()).hexdigest()[:8]}"


def _check_name(name) -> None:
    if not isinstance(name, str) or not name.strip():
        raise CourseValueError(f"a study's name must be a non-empty string, e.g. 'lr-search', got {describe(name)}")


def _describe_part(part) -> str:
    """The source of a function (or its qualified name), the ``repr`` of anything else."""
    if not (inspect.isfunction(part) or inspect.ismethod(part)):
        return repr(part)
    try:
        return inspect.getsource(part)
    except (OSError, TypeError):  # defined in a REPL or built dynamically
        return part.__qualname__


def open_study(name: str, *, storage=None, direction: str = "maximize", sampler=None, pruner=None,
               heartbeat: float = 10) -> optuna.Study:
    """Create the study ``name``, or load it to resume; prints one line saying which.

    ``storage``: None (see ``open_storage``), a URL or an Optuna storage. Loading a study that
    was created with the other direction raises ``CourseValueError``.
    """
    _check_name(name)
    check_choice("direction", direction, ("maximize", "minimize"))
    for what, value, kind in (("sampler", sampler, optuna.samplers.BaseSampler),
                              ("pruner", pruner, optuna.pruners.BasePruner)):
        if value is not None and not isinstance(value, kind):
            build = ": call it to build one" if isinstance(value, type) else ""
            raise CourseTypeError(f"{what} must be an Optuna {what} or None (e.g. optuna.samplers.TPESampler(), "
                                  f"optuna.pruners.MedianPruner()), got {describe(value)}{build}")
    if not isinstance(storage, optuna.storages.BaseStorage):
        storage = open_storage(storage, heartbeat=heartbeat)
    where = describe_storage(storage)
    with optuna_logging(optuna.logging.WARNING):
        study = optuna.create_study(study_name=name, storage=storage, direction=direction, sampler=sampler,
                                    pruner=pruner, load_if_exists=True)
    if study.directions != [optuna.study.StudyDirection[direction.upper()]]:
        created = study.direction.name.lower()
        raise CourseValueError(f"study {name} in {where} was created to {created}, not to {direction}: ask for "
                               f"direction {created!r} or choose another study name")
    trials = study.get_trials(deepcopy=False)
    if not trials:
        print(f"new study {name} in {where}")
    else:
        complete = sum(trial.state == TrialState.COMPLETE for trial in trials)
        pruned = sum(trial.state == TrialState.PRUNED for trial in trials)
        print(f"study {name} in {where}: {complete + pruned} trials finished "
              f"({complete} complete, {pruned} pruned), resuming")
    return study


@contextlib.contextmanager
def optuna_logging(level: int):
    """Set Optuna's verbosity to ``level`` inside the block and restore it afterwards."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(level)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def finished_trials(study) -> list:
    """The study's COMPLETE and PRUNED trials, in order of trial number."""
    return study.get_trials(deepcopy=False, states=_FINISHED)


def optimize(study, objective, n_trials: int, *, progress: bool = True):
    """Run trials until ``study`` holds ``n_trials`` finished (complete or pruned) trials.

    Trials already in the study count, so running this again after a restart only adds the
    missing ones. Several workers on one study stop together near ``n_trials`` (one that is in
    a trial when the target is reached still finishes it). A trial whose training went NaN
    (``NonFiniteLossError``) is recorded as FAIL and does not count: run again to replace it.
    Returns the study.
    """
    if not isinstance(study, optuna.Study):
        raise CourseTypeError(f"study must be an Optuna study (open_study(...) gives one), got {describe(study)}")
    check_callable("objective", objective, example="objective(trial) -> a number")
    n_trials = check_int("n_trials", n_trials, low=0, hint="the number of finished trials the study should hold")
    remaining = n_trials - len(finished_trials(study))
    if remaining <= 0:
        print(f"study {study.study_name} already holds {n_trials - remaining} finished trials "
              f"(asked for {n_trials}): nothing to run")
        return study
    with optuna_logging(optuna.logging.WARNING):
        study.optimize(objective, n_trials=remaining, show_progress_bar=progress, catch=(NonFiniteLossError,),
                       callbacks=[optuna.study.MaxTrialsCallback(n_trials, states=_FINISHED)])
    return study


# ----------------------------------------------------------------------------------------------
# Progress of a study
# ----------------------------------------------------------------------------------------------
def best_so_far(study) -> dict:
    """Best value after each finished trial, in order of completion.

    Returns arrays ``trial`` (1..n), ``seconds`` (summed duration of the finished trials so far,
    pruned ones included), ``steps`` (summed number of intermediate reports of the finished trials
    so far: epochs trained, for an objective that reports once per epoch) and ``best`` (best value
    of the complete trials so far; NaN before the first one). A pruned trial's last reported value
    never counts as a best.
    """
    trials = sorted(finished_trials(study), key=lambda trial: (trial.datetime_complete, trial.number))
    pick = max if study.direction == optuna.study.StudyDirection.MAXIMIZE else min
    best, bests = None, []
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            best = trial.value if best is None else pick(best, trial.value)
        bests.append(np.nan if best is None else best)
    seconds = [(trial.datetime_complete - trial.datetime_start).total_seconds() for trial in trials]
    steps = [len(trial.intermediate_values) for trial in trials]
    return {"trial": np.arange(1, len(trials) + 1), "seconds": np.cumsum(seconds, dtype=float),
            "steps": np.cumsum(steps, dtype=float), "best": np.array(bests, dtype=float)}


_COMPUTE_LABELS = {"seconds": "compute seconds (all trials summed)",
                   "steps": "epochs trained (reports of all trials summed)"}


def plot_best_so_far(studies: dict, axes=None, compute: str = "seconds"):
    """Best value so far against finished trials and against compute, one line per study.

    ``studies``: label → study, or label → a list of studies (the same race run with several
    seeds): then the left panel shows the mean over the studies with error bars of ± one standard
    deviation at each number of trials (over the studies that have that many), and the right
    panel one thin line per study. ``axes``: two matplotlib axes to draw into (default: a new
    figure). ``compute``: ``"seconds"`` adds up every trial's duration, whichever worker ran it;
    ``"steps"`` adds up the trials' intermediate reports (epochs, when the objective reports once
    per epoch), which does not depend on the machine. Returns the figure.
    """
    import matplotlib.pyplot as plt

    def is_study(value) -> bool:
        return isinstance(value, optuna.Study)

    def is_group(value) -> bool:
        return isinstance(value, (list, tuple)) and bool(value) and all(is_study(s) for s in value)

    if not isinstance(studies, dict) or not studies or not all(is_study(s) or is_group(s) for s in studies.values()):
        raise CourseTypeError(f"studies must be a dict of label -> Optuna study (or a non-empty list of studies), "
                              f"with at least one, got {describe(studies)}")
    check_choice("compute", compute, tuple(_COMPUTE_LABELS))
    if axes is None:
        axes = plt.subplots(1, 2, figsize=(10, 3.6))[1]
    if len(axes) != 2:
        raise CourseValueError(f"plot_best_so_far draws two panels, got {len(axes)} axes")
    for number, (label, value) in enumerate(studies.items()):
        colour = f"C{number % 10}"
        if is_study(value):
            curve = best_so_far(value)
            axes[0].step(curve["trial"], curve["best"], where="post", marker="o", ms=3, label=label, color=colour)
            axes[1].step(curve[compute], curve["best"], where="post", marker="o", ms=3, label=label, color=colour)
            continue
        curves = [best_so_far(study) for study in value]
        longest = max(len(curve["best"]) for curve in curves)
        table = np.full((len(curves), longest), np.nan)
        for row, curve in zip(table, curves):
            row[:len(curve["best"])] = curve["best"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)   # a column without any value yet
            mean, spread = np.nanmean(table, axis=0), np.nanstd(table, axis=0)
        trials = np.arange(1, longest + 1)
        axes[0].errorbar(trials + 0.06 * (number - len(studies) / 2), mean, yerr=spread, marker="o", ms=3,
                         capsize=2, color=colour, label=f"{label} (mean ± SD of {len(curves)})")
        for index, curve in enumerate(curves):
            axes[1].step(curve[compute], curve["best"], where="post", lw=1, alpha=0.7, color=colour,
                         label=label if index == 0 else None)
    axes[0].set(xlabel="finished trials", ylabel="best value so far")
    axes[1].set(xlabel=_COMPUTE_LABELS[compute], ylabel="best value so far")
    for ax in axes:
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8, loc="best")
    fig = axes[0].figure
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Command line: one worker
# ----------------------------------------------------------------------------------------------
def load_objective(spec: str):
    """The function named by ``"path/to/file.py:function"`` or ``"package.module:function"``."""
    where, sep, name = spec.rpartition(":") if isinstance(spec, str) else ("", "", "")
    if not sep or not where or not name:
        raise CourseValueError(f"objective {spec!r} should look like path/to/file.py:function or "
                               f"package.module:function")
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise CourseFileNotFoundError(f"objective file {where} not found (relative to {Path.cwd()})")
        module_spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[path.stem] = module
        try:
            module_spec.loader.exec_module(module)
        except Exception as err:  # a syntax error or a failing import in the objective's file
            raise CourseValueError(f"objective file {where} failed to run: {type(err).__name__}: {err}") from err
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(f"objective module {where} cannot be imported ({err}): "
                                      f"check its name, or give a file as path/to/file.py:{name}") from err
    objective = getattr(module, name, None)
    if not callable(objective):
        functions = sorted(key for key, value in vars(module).items() if inspect.isfunction(value))
        raise AttributeError(f"{where} has no function {name!r}; its functions: {', '.join(functions) or 'none'}")
    return objective


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m course_lib tune`` command line."""
    parser = argparse.ArgumentParser(
        prog="python -m course_lib tune",
        description="Start one worker on an Optuna study (created, or loaded to resume) and run trials until "
                    "the study holds --trials finished trials. Start it on as many machines as you like with "
                    "the same --storage; a worker that dies has its trial retried by the others.")
    parser.add_argument("study", help="study name (the same for every worker)")
    parser.add_argument("--objective", required=True, metavar="SPEC",
                        help="path/to/file.py:function or package.module:function, taking an optuna.Trial")
    parser.add_argument("--trials", required=True, type=int, metavar="N",
                        help="finished (complete or pruned) trials the study should hold, all workers together")
    parser.add_argument("--storage", metavar="URL",
                        help=f"SQLAlchemy URL of the database (default: ${STORAGE_VARIABLE}, else a SQLite file in "
                             "the course cache)")
    parser.add_argument("--sampler", choices=("tpe", "random"), default="tpe", help="default: tpe")
    parser.add_argument("--pruner", choices=("median", "none"), default="median",
                        help="median: stop a trial whose reported value is worse than the median of earlier trials "
                             "at the same step (default); none: never prune")
    parser.add_argument("--seed", type=int, help="sampler seed; give each worker its own (default: random)")
    parser.add_argument("--heartbeat", type=float, default=10, metavar="SECONDS",
                        help="a running trial's heartbeat interval; after three missed beats it is failed and "
                             "retried (default: 10)")
    parser.add_argument("--direction", choices=("maximize", "minimize"), default="maximize",
                        help="default: maximize")
    return parser


def summary(study) -> str:
    """One line: finished, pruned and failed trials, best value and parameters."""
    counts = {state: len(study.get_trials(deepcopy=False, states=(state,))) for state in TrialState}
    line = (f"study {study.study_name}: {counts[TrialState.COMPLETE] + counts[TrialState.PRUNED]} finished "
            f"({counts[TrialState.PRUNED]} pruned), {counts[TrialState.FAIL]} failed")
    if counts[TrialState.COMPLETE] == 0:
        return line + "; no complete trial yet"
    return line + f"; best value {study.best_value:.6g} with {study.best_params}"


def main(argv: list[str]) -> None:
    """``python -m course_lib tune ...``: one worker on a study (see ``build_parser``)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.trials < 1 or not args.heartbeat > 0 or args.heartbeat == float("inf"):
        parser.error("--trials and --heartbeat must be positive (and --heartbeat finite)")
    if args.seed is not None and not 0 <= args.seed < SEED_LIMIT:
        parser.error(f"--seed must be a whole number from 0 to {SEED_LIMIT - 1}, got {args.seed}")
    if not args.study.strip():
        parser.error("the study name is empty: give every worker the same, non-empty name")
    try:
        objective = load_objective(args.objective)
    except (ValueError, ImportError, OSError, AttributeError) as err:
        parser.error(f"--objective: {err}")
    samplers = {"tpe": optuna.samplers.TPESampler, "random": optuna.samplers.RandomSampler}
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=1) if args.pruner == "median"
              else optuna.pruners.NopPruner())
    try:
        storage = open_storage(args.storage, heartbeat=args.heartbeat, source="--storage")
        study = open_study(args.study, storage=storage, direction=args.direction,
                           sampler=samplers[args.sampler](seed=args.seed), pruner=pruner)
    except ValueError as err:  # StorageError, or a study created with the other direction
        parser.error(str(err))
    optimize(study, objective, args.trials, progress=sys.stderr.isatty())
    print(summary(study))
