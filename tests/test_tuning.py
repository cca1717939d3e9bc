"""course_lib.tuning: studies that persist, resume in a new process, and share work between workers.

The PostgreSQL tests need a server: ``eval "$(scripts/postgres_for_tests.sh start)"`` starts a
throwaway one and sets ``COURSE_TEST_POSTGRES_URL``; without it they are skipped (and fail in CI).
"""
import os
import re
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import optuna
import pytest
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from course_lib import tuning
from tuning_objectives import quadratic

REPO = Path(__file__).resolve().parents[1]
OBJECTIVES = Path(__file__).with_name("tuning_objectives.py")
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


@pytest.fixture
def store(isolated_dirs, monkeypatch):
    """An empty course cache and no COURSE_OPTUNA_STORAGE: studies go to the default SQLite file."""
    monkeypatch.delenv(tuning.STORAGE_VARIABLE, raising=False)
    return isolated_dirs


def tune_command(study: str, objective: str, trials: int, *options: str) -> list:
    return [sys.executable, "-m", "course_lib", "tune", study, "--objective", f"{OBJECTIVES}:{objective}",
            "--trials", str(trials), *options]


def tune(study: str, objective: str, trials: int, *options: str) -> subprocess.CompletedProcess:
    """One worker run to the end in a new process."""
    return subprocess.run(tune_command(study, objective, trials, *options), cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})


def start_worker(study: str, objective: str, trials: int, *options: str) -> subprocess.Popen:
    return subprocess.Popen(tune_command(study, objective, trials, *options), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def finish(worker: subprocess.Popen) -> str:
    """Wait for ``worker`` and return its output; fail with it unless the worker succeeded."""
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 0, f"worker {worker.pid} exited with {worker.returncode}:\n{out}\n{err}"
    assert "Traceback" not in err and "database is locked" not in err, err
    return out


def wait_until(condition, timeout: float = 30):
    """Poll ``condition()`` until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = condition()
        if found:
            return found
        time.sleep(0.05)
    pytest.fail(f"waited {timeout} s in vain for {condition.__doc__}")


# ----------------------------------------------------------------------------------------------
# Resuming, names, bad URLs, read-only cache
# ----------------------------------------------------------------------------------------------
def test_a_study_resumes_in_a_new_process_without_duplicates(store, capsys):
    study = tuning.open_study("resume")
    assert capsys.readouterr().out == f"new study resume in {tuning.default_storage_url()}\n"
    assert tuning.default_storage_url() == f"sqlite:///{store / 'cache' / 'optuna' / 'studies.db'}"
    tuning.optimize(study, quadratic, 4, progress=False)
    assert len(tuning.finished_trials(study)) == 4

    resumed = tune("resume", "quadratic", 6)
    assert resumed.returncode == 0, resumed.stderr
    assert "4 trials finished (4 complete, 0 pruned), resuming" in resumed.stdout
    assert "study resume: 6 finished (0 pruned), 0 failed; best value" in resumed.stdout

    trials = tuning.open_study("resume").get_trials()
    assert [trial.number for trial in trials] == [0, 1, 2, 3, 4, 5]
    assert [trial.state for trial in trials] == [TrialState.COMPLETE] * 6
    pids = [trial.user_attrs["pid"] for trial in trials]
    assert pids[:4] == [os.getpid()] * 4 and os.getpid() not in pids[4:]

    again = tune("resume", "quadratic", 6)
    assert again.returncode == 0, again.stderr
    assert "already holds 6 finished trials (asked for 6): nothing to run" in again.stdout
    assert len(tuning.open_study("resume").get_trials()) == 6


def objective_a(trial):
    return trial.suggest_float("x", 0, 1)


def objective_b(trial):
    return trial.suggest_float("x", 0, 2)


def test_study_name_changes_with_the_objective_or_the_settings(tmp_path):
    base = tuning.study_name("lr", objective_a, {"lr": 0.1, "epochs": 3})
    assert re.fullmatch(r"lr-[0-9a-f]{8}", base)
    assert tuning.study_name("lr", objective_a, {"lr": 0.1, "epochs": 3}) == base
    assert tuning.study_name("lr", objective_b, {"lr": 0.1, "epochs": 3}) != base
    assert tuning.study_name("lr", objective_a, {"lr": 0.2, "epochs": 3}) != base
    assert tuning.study_name("lr", objective_a) != base

    # an edited file gives a new name; the same source in another process gives the same one
    source = tmp_path / "edited.py"
    source.write_text("def objective(trial):\n    return trial.suggest_float('x', 0, 1)\n")
    before = tuning.study_name("lr", tuning.load_objective(f"{source}:objective"))
    source.write_text("def objective(trial):\n    return 2 * trial.suggest_float('x', 0, 1)\n")
    after = tuning.study_name("lr", tuning.load_objective(f"{source}:objective"))
    assert after != before
    elsewhere = subprocess.run(
        [sys.executable, "-c", "import sys; from course_lib.tuning import load_objective, study_name; "
                               f"print(study_name('lr', load_objective(sys.argv[1])))", f"{source}:objective"],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert elsewhere.stdout.strip() == after, elsewhere.stderr


@pytest.mark.parametrize("url, reason", [
    ("nosuchdb://x", "Can't load plugin: sqlalchemy.dialects:nosuchdb"),
    ("postgresql://nobody@127.0.0.1:1/none", "Connection refused"),
    ("postgresql://nobody:secret@127.0.0.1:1/none", "Connection refused"),
])
def test_a_bad_storage_variable_says_where_it_came_from(store, monkeypatch, url, reason):
    monkeypatch.setenv(tuning.STORAGE_VARIABLE, url)
    with pytest.raises(tuning.StorageError) as caught:
        tuning.open_storage()
    message = str(caught.value)
    assert message.startswith(f"COURSE_OPTUNA_STORAGE='{url.replace(':secret@', ':***@')}' could not be opened")
    assert reason in message and "unset COURSE_OPTUNA_STORAGE" in message and "sqlite:///" in message
    assert "secret" not in message


def test_the_command_line_rejects_a_bad_storage_without_a_traceback(store):
    run = tune("bad", "quadratic", 1, "--storage", "bad")
    assert run.returncode == 2
    assert "--storage='bad' could not be opened: Could not parse SQLAlchemy URL" in run.stderr
    assert "leave out --storage" in run.stderr and "Traceback" not in run.stderr


def test_load_objective_names_what_is_missing(tmp_path):
    assert tuning.load_objective(f"{OBJECTIVES}:quadratic").__name__ == "quadratic"
    assert tuning.load_objective("tuning_objectives:slow_quadratic").__name__ == "slow_quadratic"
    with pytest.raises(FileNotFoundError, match="objective file .*nowhere.py not found"):
        tuning.load_objective(f"{tmp_path}/nowhere.py:objective")
    with pytest.raises(ModuleNotFoundError, match="objective module no_such_module cannot be imported"):
        tuning.load_objective("no_such_module:objective")
    with pytest.raises(AttributeError, match="has no function 'nothing'; its functions: quadratic, slow_quadratic"):
        tuning.load_objective(f"{OBJECTIVES}:nothing")
    with pytest.raises(ValueError, match="should look like path/to/file.py:function"):
        tuning.load_objective("quadratic")


def test_a_read_only_cache_keeps_the_study_in_memory(store, monkeypatch, capsys):
    cache = store / "read-only-cache"
    cache.mkdir()
    cache.chmod(0o555)
    try:
        if os.access(cache, os.W_OK):  # root writes anyway: a folder under a file cannot be created at all
            (store / "a-file").write_text("")
            cache = store / "a-file" / "cache"
        monkeypatch.setenv("COURSE_CACHE_DIR", str(cache))
        study = tuning.open_study("memory")
        output = capsys.readouterr().out
        assert "this study lives in memory only this time" in output
        assert "new study memory in memory" in output
        tuning.optimize(study, quadratic, 3, progress=False)
        assert len(tuning.finished_trials(study)) == 3
        assert not (cache / "optuna").exists()
    finally:
        (store / "read-only-cache").chmod(0o755)


def test_a_study_keeps_its_direction():
    storage = optuna.storages.InMemoryStorage()
    tuning.open_study("loss", storage=storage, direction="minimize")
    with pytest.raises(ValueError, match="was created to minimize, not to maximize"):
        tuning.open_study("loss", storage=storage, direction="maximize")


# ----------------------------------------------------------------------------------------------
# Many workers: SQLite file and PostgreSQL server
# ----------------------------------------------------------------------------------------------
def test_two_workers_share_the_default_sqlite_file(store):
    workers = [start_worker("sqlite-shared", "slow_quadratic", 12, "--heartbeat", "1") for _ in range(2)]
    for worker in workers:
        finish(worker)
    trials = tuning.open_study("sqlite-shared").get_trials()
    # each worker stops after its own trial once 12 are finished: the other may finish one more
    assert 12 <= len(trials) <= 13
    assert all(trial.state in FINISHED for trial in trials)
    assert sorted(trial.number for trial in trials) == list(range(len(trials)))
    assert {trial.user_attrs["pid"] for trial in trials} == {worker.pid for worker in workers}


def test_two_workers_share_a_postgres_study(store, postgres_url):
    workers = [start_worker("pg-shared", "slow_quadratic", 12, "--storage", postgres_url, "--heartbeat", "1")
               for _ in range(2)]
    for worker in workers:
        finish(worker)
    study = optuna.load_study(study_name="pg-shared", storage=tuning.open_storage(postgres_url))
    trials = study.get_trials()
    assert 12 <= len(trials) <= 13
    assert all(trial.state in FINISHED for trial in trials)
    assert sorted(trial.number for trial in trials) == list(range(len(trials)))
    assert {trial.user_attrs["pid"] for trial in trials} == {worker.pid for worker in workers}


@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
def test_a_killed_workers_trial_is_retried_by_the_other(store, postgres_url):
    options = ("--storage", postgres_url, "--heartbeat", "1", "--pruner", "none")
    victim = start_worker("pg-killed", "slow_quadratic", 16, *options)
    survivor = start_worker("pg-killed", "slow_quadratic", 16, *options)
    storage = tuning.open_storage(postgres_url)
    study = wait_until(lambda: "pg-killed" in optuna.get_all_study_names(storage)
                       and optuna.load_study(study_name="pg-killed", storage=storage))

    def victims_running_trial():
        """a trial of the victim that has reported a step and is still running"""
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        return next((trial for trial in running
                     if trial.user_attrs.get("pid") == victim.pid and trial.intermediate_values), None)

    killed_number = wait_until(victims_running_trial).number
    os.kill(victim.pid, signal.SIGKILL)
    victim.communicate(timeout=30)
    assert "1 failed" in finish(survivor)

    trials = optuna.load_study(study_name="pg-killed", storage=storage).get_trials()
    killed = trials[killed_number]
    assert killed.state == TrialState.FAIL
    retries = [trial for trial in trials if RetryHeartbeatStaleTrialCallback.retried_trial_number(trial) == killed_number]
    assert len(retries) == 1
    assert RetryHeartbeatStaleTrialCallback.retry_history(retries[0]) == [killed_number]
    assert retries[0].state == TrialState.COMPLETE and retries[0].params == killed.params
    assert retries[0].user_attrs["pid"] == survivor.pid
    assert [trial.number for trial in trials if trial.state not in FINISHED] == [killed_number]
    assert len([trial for trial in trials if trial.state in FINISHED]) == 16
    study = optuna.load_study(study_name="pg-killed", storage=storage)
    assert study.best_value == max(trial.value for trial in trials if trial.state == TrialState.COMPLETE)


# ----------------------------------------------------------------------------------------------
# Best so far
# ----------------------------------------------------------------------------------------------
def study_with_known_trials(direction: str):
    """Five finished trials (two pruned with high last values) and a failed one, completing out of order."""
    study = optuna.create_study(direction=direction)
    start = datetime(2026, 1, 1)
    distributions = {"x": optuna.distributions.FloatDistribution(-1, 1)}
    # number: state, value, start second, duration seconds
    plan = {0: (TrialState.PRUNED, 9.0, 0, 1), 1: (TrialState.COMPLETE, 2.0, 0, 4), 2: (TrialState.COMPLETE, 5.0, 1, 2),
            3: (TrialState.PRUNED, 10.0, 3, 2), 4: (TrialState.COMPLETE, 3.0, 4, 3), 5: (TrialState.FAIL, None, 5, 1)}
    for number, (state, value, begin, seconds) in plan.items():
        study.add_trial(optuna.trial.FrozenTrial(
            number=number, trial_id=number, state=state, value=value, params={"x": 0.0}, distributions=distributions,
            user_attrs={}, system_attrs={}, intermediate_values={} if value is None else {0: value},
            datetime_start=start + timedelta(seconds=begin), datetime_complete=start + timedelta(seconds=begin + seconds)))
    return study


def test_best_so_far_follows_completion_and_ignores_pruned_values():
    # completion order: trial 0 (t=1 s), 2 (3 s), 1 (4 s), 3 (5 s), 4 (7 s); trial 5 failed
    curve = tuning.best_so_far(study_with_known_trials("maximize"))
    np.testing.assert_array_equal(curve["trial"], [1, 2, 3, 4, 5])
    np.testing.assert_array_equal(curve["seconds"], [1, 3, 7, 9, 12])
    np.testing.assert_array_equal(curve["best"], [np.nan, 5, 5, 5, 5])
    np.testing.assert_array_equal(tuning.best_so_far(study_with_known_trials("minimize"))["best"],
                                  [np.nan, 5, 2, 2, 2])


def test_plot_best_so_far_draws_both_panels():
    import matplotlib.pyplot as plt

    studies = {"maximize": study_with_known_trials("maximize"), "minimize": study_with_known_trials("minimize")}
    fig = tuning.plot_best_so_far(studies)
    try:
        assert len(fig.axes) == 2
        by_trials, by_seconds = fig.axes
        assert [line.get_label() for line in by_seconds.lines] == ["maximize", "minimize"]
        np.testing.assert_array_equal(by_trials.lines[1].get_ydata(), [np.nan, 5, 2, 2, 2])
        np.testing.assert_array_equal(by_seconds.lines[0].get_xdata(), [1, 3, 7, 9, 12])
    finally:
        plt.close(fig)


def test_best_so_far_counts_reports_as_steps():
    # each finished trial reported once; completion order 0, 2, 1, 3, 4
    curve = tuning.best_so_far(study_with_known_trials("maximize"))
    np.testing.assert_array_equal(curve["steps"], [1, 2, 3, 4, 5])


def test_plot_best_so_far_averages_seeds_with_error_bars_and_plots_steps():
    import matplotlib.pyplot as plt

    races = {"seeds": [study_with_known_trials("maximize"), study_with_known_trials("minimize")],
             "one": study_with_known_trials("maximize")}
    fig = tuning.plot_best_so_far(races, compute="steps")
    try:
        by_trials, by_compute = fig.axes
        (bars,) = by_trials.containers
        np.testing.assert_array_equal(bars.lines[0].get_ydata(), [np.nan, 5, 3.5, 3.5, 3.5])
        assert "mean ± SD of 2" in bars.get_label()
        assert len(by_compute.lines) == 3 and by_compute.get_xlabel().startswith("epochs trained")
        np.testing.assert_array_equal(by_compute.lines[0].get_xdata(), [1, 2, 3, 4, 5])
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="compute"):
        tuning.plot_best_so_far(races, compute="minutes")
    with pytest.raises(Exception, match="list of studies"):
        tuning.plot_best_so_far({"empty": []})
