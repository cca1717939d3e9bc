"""The sandbox a submission's kernel runs in: bubblewrap namespaces and resource limits.

What the kernel sees and may use:

- files: the whole system read-only, except the course folder and the course's checkout (hidden:
  solutions, gradebook, other students), a private ``/tmp`` (in memory, at most ``file_size``
  bytes), and its own submission folder (writable; the grader stops a notebook that leaves more
  than its ``disk_limit`` there);
- an environment made only of ``KERNEL_ENVIRONMENT``: no secret of the grader's machine;
- no network: a network namespace of its own. The grader talks to it over Unix sockets in a private
  folder (ZeroMQ's ``ipc`` transport, for this kernel only), since TCP on loopback cannot cross into
  that namespace;
- its own process, IPC and host-name namespaces, killed with the grader;
- limits: ``memory`` bytes of data per process (``RLIMIT_DATA``: a 5 GiB array fails with
  ``MemoryError`` in that cell), ``processes`` at once (a cgroup ``pids.max`` where one can be made,
  else ``RLIMIT_NPROC``, which does not bind root), ``file_size`` bytes per file written, no core
  dumps.

bubblewrap (Debian's ``bubblewrap``) does the namespaces without a daemon or root; cgroups do
what rlimits cannot (count the sandbox's processes together). ``python -m
course_grading.sandbox`` is the small launcher that applies them on each side of bwrap.
"""
from __future__ import annotations

import argparse
import ctypes
import os
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from jupyter_client.manager import AsyncKernelManager
from traitlets import Dict, Instance, List, Unicode

GiB = 1024 ** 3
PR_SET_PDEATHSIG = 1  # prctl option, <linux/prctl.h>


@dataclass(frozen=True)
class Limits:
    memory: int = 4 * GiB        # bytes of data per process
    processes: int = 256         # processes and threads at once
    file_size: int = 1 * GiB     # bytes per file written


# ---------------------------------------------------------------- a pids cgroup per sandbox

def _pids_hierarchy() -> Path | None:
    """The folder of this process's cgroup in a hierarchy with the pids controller, or None."""
    mounts = {}
    try:
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            fields, _, tail = line.partition(" - ")
            fields, tail = fields.split(), tail.split()
            if tail[0] == "cgroup2" or (tail[0] == "cgroup" and "pids" in tail[2].split(",")):
                mounts[tail[0]] = (fields[3], fields[4])   # (root of the mount, mount point)
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            number, controllers, path = line.split(":", 2)
            kind = "cgroup" if "pids" in controllers.split(",") else "cgroup2" if number == "0" else None
            if kind in mounts:
                root, point = mounts[kind]
                folder = Path(point) / os.path.relpath(path, root)
                if kind == "cgroup" or "pids" in (folder / "cgroup.subtree_control").read_text().split():
                    return folder
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stale(parent: Path, prefix: str) -> list[Path]:
    """The folders ``<prefix><pid>-…`` whose grader (``pid``) is gone: it was killed before it cleaned up."""
    folders = []
    for folder in parent.glob(prefix + "*"):
        pid = folder.name[len(prefix):].split("-")[0]
        if pid.isdigit() and not Path("/proc", pid).exists():
            folders.append(folder)
    return folders


class ProcessCap:
    """A cgroup that holds one sandbox's processes, at most ``limit`` at once."""

    def __init__(self, folder: Path):
        self.folder = folder

    @classmethod
    def create(cls, limit: int) -> ProcessCap | None:
        """A fresh cgroup with ``pids.max = limit``, or None where this process may not make one."""
        parent = _pids_hierarchy()
        if parent is None:
            return None
        for stale in _stale(parent, "course-sandbox-"):
            cls(stale).remove()  # a killed grader's sandboxes: kill what still runs there
        folder = parent / f"course-sandbox-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            folder.mkdir()
            (folder / "pids.max").write_text(str(limit))
        except OSError:
            if folder.exists():
                folder.rmdir()
            return None
        return cls(folder)

    def hits(self) -> int:
        """How often a process could not start because the cap was reached."""
        try:
            text = (self.folder / "pids.events").read_text()
        except OSError:
            return 0
        return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("max "))

    def kill(self) -> None:
        """SIGKILL every process in the cgroup (a fork bomb does not wait for its turn)."""
        try:
            (self.folder / "cgroup.kill").write_text("1")   # cgroup v2
            return
        except OSError:
            pass
        try:
            pids = (self.folder / "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            try:
                os.kill(int(pid), 9)
            except OSError:
                pass

    def remove(self) -> None:
        """Kill what is left and remove the cgroup (its last processes may take a moment to go)."""
        for attempt in range(50):
            try:
                self.folder.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                self.kill()
                time.sleep(0.1)


# ---------------------------------------------------------------- the kernel manager

# The only variables of the grader's environment a kernel sees: what Python, the numeric libraries and
# course_lib need to run. Anything else (a database URL, a hub token, a password) stays with the grader.
KERNEL_ENVIRONMENT = ("PATH", "LANG", "LANGUAGE", "TZ", "PYTHONPATH", "PYTHONHASHSEED", "PYTHONUNBUFFERED",
                      "VIRTUAL_ENV", "LD_LIBRARY_PATH", "COURSE_FAST", "COURSE_DEVICE", "COURSE_CHECKPOINT_DIR",
                      "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "CUDA_VISIBLE_DEVICES")
KERNEL_ENVIRONMENT_PREFIXES = ("LC_", "OMP_", "MKL_", "OPENBLAS_NUM_", "NUMEXPR_")


def kernel_environment(environment) -> dict:
    """The allowed part of ``environment`` (``KERNEL_ENVIRONMENT``)."""
    return {name: value for name, value in environment.items()
            if name in KERNEL_ENVIRONMENT or name.startswith(KERNEL_ENVIRONMENT_PREFIXES)}


class SandboxedKernelManager(AsyncKernelManager):
    """Starts the kernel inside bubblewrap with the course folder hidden, no network and ``limits``
    (see the module's docstring), and an environment made only of ``KERNEL_ENVIRONMENT``."""

    hidden = List(Unicode(), help="folders the kernel must not see").tag(config=True)
    visible = List(Unicode(), help="folders inside hidden ones that stay readable").tag(config=True)
    workdir = Unicode(help="the submission's folder, writable").tag(config=True)
    environment = Dict(help="variables set in the sandbox (paths resolved, so that links into a hidden "
                            "folder still lead somewhere)").tag(config=True)
    limits = Instance(Limits, args=())
    process_cap = Instance(ProcessCap, allow_none=True)

    def __init__(self, **kwargs):
        # A private folder for the kernel's sockets, short enough for a Unix socket's path.
        for stale in _stale(Path(tempfile.gettempdir()), "course-kernel-"):
            shutil.rmtree(stale, ignore_errors=True)
        sockets = tempfile.mkdtemp(prefix=f"course-kernel-{os.getpid()}-")
        super().__init__(transport="ipc", ip=os.path.join(sockets, "kernel"), **kwargs)
        self._sockets = sockets

    def format_kernel_cmd(self, extra_arguments=None):
        command = super().format_kernel_cmd(extra_arguments)
        self.kernel_spec.interrupt_mode = "message"  # a signal would reach bwrap, not the kernel
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise RuntimeError("bubblewrap (bwrap) is needed to grade in a sandbox: install it "
                               "(Debian/Ubuntu: apt-get install bubblewrap), or set "
                               "c.GuardedExecute.sandbox = False to grade without isolation "
                               "(students' code could then read solutions/ and the gradebook)")
        args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                "--size", str(self.limits.file_size), "--tmpfs", "/tmp"]
        for folder in self.hidden:
            if os.path.isdir(folder):
                args += ["--tmpfs", folder]
        for folder in [*self.visible, sys.prefix, os.path.realpath(self.connection_file)]:
            if os.path.exists(folder):
                args += ["--ro-bind", folder, folder]
        environment = {**kernel_environment(os.environ), "HOME": "/tmp/home", "MPLCONFIGDIR": "/tmp/matplotlib",
                       "COURSE_DOWNLOAD": "0", **self.environment}
        args += ["--bind", self.workdir, self.workdir, "--bind", self._sockets, self._sockets,
                 "--chdir", self.workdir, "--dir", "/tmp/home", "--dir", "/tmp/matplotlib", "--clearenv",
                 *[arg for name, value in environment.items() for arg in ("--setenv", name, value)],
                 "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session",
                 "--die-with-parent", "--"]
        limits = self.limits
        inner = [sys.executable, "-m", "course_grading.sandbox", "limit", "--memory", str(limits.memory),
                 "--processes", str(limits.processes), "--file-size", str(limits.file_size), "--"]
        if self.process_cap is None:
            self.process_cap = ProcessCap.create(limits.processes)
        outer = [sys.executable, "-m", "course_grading.sandbox", "join", "--parent", str(os.getpid()),
                 *([] if self.process_cap is None else ["--cgroup", str(self.process_cap.folder)]), "--"]
        self.log.debug("kernel command: %s", outer + args + inner + command)
        return outer + args + inner + command

    async def _async_launch_kernel(self, kernel_cmd, **kw):
        # the kernel's own streams (its banner, its warnings, whatever student code writes to file descriptors
        # 1 and 2) reach nobody: nothing a submission does may write on the grader's screen
        # (bwrap's own complaints go with them: sandbox_problem() is how a grader learns it cannot start)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        return await super()._async_launch_kernel(kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._sockets, ignore_errors=True)
            if self.process_cap is not None:
                self.process_cap.remove()
                self.process_cap = None

    cleanup_resources = _async_cleanup_resources  # AsyncKernelManager binds its base class's function


# ---------------------------------------------------------------- the launcher

def sandbox_problem() -> str | None:
    """Why a sandbox cannot start on this machine (bwrap missing, or its namespaces refused, as on hosts that
    forbid unprivileged user namespaces), or None when it can."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap (bwrap) is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
    done = subprocess.run([bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-net",
                           "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--new-session", "true"],
                          capture_output=True, text=True)
    return None if done.returncode == 0 else f"bwrap says: {done.stderr.strip()[:300] or f'exit status {done.returncode}'}"


def die_with(parent: int) -> None:
    """Have the kernel SIGKILLed when the grader process ``parent`` ends (Linux's parent-death signal,
    kept through ``exec``), and end now if it already has. bwrap's ``--die-with-parent`` alone leaves
    a window: a grader killed while bwrap starts leaves a sandbox with init as its parent."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:
        os._exit(1)


def main(argv=None) -> None:
    """``join --parent PID [--cgroup CGROUP] -- command`` (outside bwrap) or ``limit --memory B
    --processes N --file-size B -- command`` (inside): apply, then become ``command``."""
    parser = argparse.ArgumentParser(prog="python -m course_grading.sandbox")
    steps = parser.add_subparsers(dest="step", required=True)
    join = steps.add_parser("join", help="die with the grader; enter a cgroup")
    join.add_argument("--parent", type=int, required=True, help="the grader's process id")
    join.add_argument("--cgroup", help="the cgroup folder to enter")
    limit = steps.add_parser("limit", help="set resource limits")
    for name in ("--memory", "--processes", "--file-size"):
        limit.add_argument(name, type=int, required=True)
    for step in (join, limit):
        step.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("no command after --")
    if args.step == "join":
        die_with(args.parent)
        if args.cgroup:
            Path(args.cgroup, "cgroup.procs").write_text(str(os.getpid()))
    else:
        resource.setrlimit(resource.RLIMIT_DATA, (args.memory, args.memory))
        resource.setrlimit(resource.RLIMIT_NPROC, (args.processes, args.processes))
        resource.setrlimit(resource.RLIMIT_FSIZE, (args.file_size, args.file_size))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
