"""The autograder's sandbox launcher: a sandboxed kernel never outlives the grader that started it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course_grading.sandbox import ProcessCap

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the sandbox is Linux-only")
LAUNCHER = [sys.executable, "-m", "course_grading.sandbox"]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] != "Z"


def wait_until(condition, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_a_launch_whose_grader_is_already_gone_does_not_start():
    done = subprocess.run([*LAUNCHER, "join", "--parent", "1", "--", "sleep", "60"], timeout=30)
    assert done.returncode == 1


def test_the_command_is_killed_with_the_grader(tmp_path):
    """A grader (here a shell) starts the launcher, which becomes ``sleep``; the grader is SIGKILLed."""
    pid_file = tmp_path / "child.pid"
    grader = subprocess.Popen(["bash", "-c", f'{" ".join(LAUNCHER)} join --parent $$ -- sleep 60 & '
                                              f'echo $! > {pid_file}; wait'], start_new_session=True)
    assert wait_until(lambda: pid_file.is_file() and pid_file.read_text().strip())
    child = int(pid_file.read_text())
    assert wait_until(lambda: Path(f"/proc/{child}/cmdline").read_bytes().startswith(b"sleep"))
    os.kill(grader.pid, signal.SIGKILL)
    grader.wait()
    assert wait_until(lambda: not alive(child)), "the sandboxed command outlived its grader"


def test_a_killed_graders_sandboxes_are_killed_by_the_next_one():
    cap = ProcessCap.create(64)
    if cap is None:
        if os.environ.get("CI"):
            pytest.fail("CI runs as root, where a pids cgroup can be made")
        pytest.skip("this process may not make a pids cgroup (not root?)")
    orphan = subprocess.Popen([*LAUNCHER, "join", "--parent", str(os.getpid()), "--cgroup", str(cap.folder),
                               "--", "sleep", "60"])
    assert wait_until(lambda: str(orphan.pid) in (cap.folder / "cgroup.procs").read_text().split())
    # as if the grader that made it had died: its pid in the folder's name no longer exists
    stale = cap.folder.with_name(f"course-sandbox-{a_dead_pid()}-{cap.folder.name.rsplit('-', 1)[1]}")
    cap.folder.rename(stale)
    fresh = ProcessCap.create(64)
    try:
        assert orphan.wait(timeout=10) == -signal.SIGKILL
        assert not stale.exists()
    finally:
        fresh.remove()


def a_dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_machine_whose_sandbox_cannot_start_is_told_why(tmp_path, monkeypatch):
    from course_grading.sandbox import sandbox_problem

    assert sandbox_problem() is None                      # this machine: bwrap works
    refusing = tmp_path / "bwrap"                         # a host that forbids user namespaces answers like this
    refusing.write_text("#!/bin/sh\necho 'bwrap: setting up uid map: Permission denied' >&2\nexit 1\n")
    refusing.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    assert sandbox_problem() == "bwrap says: bwrap: setting up uid map: Permission denied"
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert sandbox_problem().startswith("bubblewrap (bwrap) is not installed")
