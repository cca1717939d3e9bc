"""A class graded by ``python -m course_grading grade``: parallel, sandboxed, resumable, on a cluster.

One class of notebook-01 submissions (fast mode): correct, partial and untouched ones, and the
hostile ones of the instructors' list (a loop, a fork bomb, a memory bomb, 200 MB of output,
``os._exit``, a segfault, ``sys.exit()``, the network, reading solutions, wiping the gradebook,
overwriting a classmate). It is graded by two local workers into SQLite, killed after the first
students and started again; then by a Dask scheduler and two workers (separate processes) into
PostgreSQL. Each submission must get the score it deserves, honest ones the score serial
``nbgrader autograde`` gives, and no hostile one may cost anybody else anything.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell
from nbgrader.api import Gradebook

from conftest import service
from notebook_cells import ROOT
from test_autograder import NBGRADER, nbgrader
from test_hostile_submissions import HOOKS, index_of, release, solution, without_ids

pytestmark = pytest.mark.notebook
NAME = "01_numpy_mlp"
FULL = 20
BEFORE_MLP_FORWARD = 8      # the points of the tests before mlp_forward
CELL_TIMEOUT = 30
RECORDS = Path("autograded", ".course-grade", NAME)


def partial():
    """The first six functions answered, the rest left as released."""
    nb, answers = release(), solution()
    for grade_id in ("one_hot", "relu", "relu_backward", "sigmoid", "softmax", "cross_entropy"):
        nb.cells[index_of(nb, grade_id)].source = answers.cells[index_of(answers, grade_id)].source
    return nb


def before_mlp_forward(source: str):
    nb = solution()
    nb.cells.insert(index_of(nb, "mlp_forward"), new_code_cell(source))
    return nb


REACH_OUT = """import socket
try:
    socket.create_connection(("127.0.0.1", {port}), timeout=3).sendall(b"leaked")
    print("network reached")
except OSError as err:
    print("no network:", err)
"""

WIPE = """import glob, pathlib
root = pathlib.Path({root!r})
for path in [root / "gradebook.db", *root.glob("submitted/*/*/*.ipynb")]:
    try:
        path.write_text("")
        print("overwrote", path)
    except OSError as err:
        print("could not overwrite", path, err)
print(len(glob.glob(str(root / "solutions/**/*.ipynb"), recursive=True)), "solution notebooks seen")
"""

# student -> (submission, autograded score it must get, words its integrity note must contain or None)
CASES = {
    "correct": (solution, FULL, None),
    "correct_without_cell_ids": (lambda: without_ids(solution()), FULL, None),
    "partial": (partial, BEFORE_MLP_FORWARD, None),
    "untouched": (release, 0, None),
    "infinite_loop": (lambda: before_mlp_forward("while True:\n    pass"), FULL, None),
    "fork_bomb": (lambda: before_mlp_forward("import os\nwhile True:\n    os.fork()"), BEFORE_MLP_FORWARD, "fork bomb"),
    "memory_bomb": (lambda: before_mlp_forward("import numpy\nbig = numpy.ones(5 * 2**30 // 8)"), FULL, None),
    "floods_output": (lambda: before_mlp_forward("for _ in range(200):\n    print('x' * 1_000_000)"), FULL,
                      "the output beyond that was dropped"),
    "os_exit": (lambda: before_mlp_forward("import os\nos._exit(3)"), BEFORE_MLP_FORWARD, "the kernel died"),
    "segfault": (lambda: before_mlp_forward("import ctypes\nctypes.string_at(0)"), BEFORE_MLP_FORWARD, "the kernel died"),
    "sys_exit": (lambda: before_mlp_forward("import sys\nsys.exit()"), FULL, None),
    "network": (lambda: before_mlp_forward(REACH_OUT.format(port=LISTENER_PORT)), FULL, None),
    "wipes_and_reads": (lambda: before_mlp_forward(WIPE.format(root=str(COURSE_ROOT))), FULL, None),
    "reads_instructor_files": (lambda: before_mlp_forward(HOOKS["reads_instructor_files"]), FULL, None),
}
HONEST = ("correct", "correct_without_cell_ids", "partial", "untouched")
LISTENER_PORT = 0       # set by the listener fixture
COURSE_ROOT = Path()    # set by make_course: the folder the hostile submissions aim at


@pytest.fixture(scope="module")
def listener():
    """A TCP server on the host's loopback; records every connection made to it."""
    global LISTENER_PORT
    server = socket.create_server(("127.0.0.1", 0))
    LISTENER_PORT = server.getsockname()[1]
    connections = []

    def accept():
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connections.append(connection.recv(100))
            connection.close()

    threading.Thread(target=accept, daemon=True).start()
    yield connections
    server.close()


def make_course(root: Path, env: dict) -> None:
    global COURSE_ROOT
    COURSE_ROOT = root
    root.mkdir(parents=True)
    shutil.copy(ROOT / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "solutions" / NAME, root / "solutions" / NAME)
    done = subprocess.run([NBGRADER, "generate_assignment", NAME, "--force"], cwd=root, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for student, (make, _, _) in CASES.items():
        folder = root / "submitted" / student / NAME
        folder.mkdir(parents=True)
        nb = make()
        nbformat.write(nb, folder / f"{NAME}.ipynb", version=nb.nbformat)


def environment(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "NBGRADER_DB_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PATH"] = os.pathsep.join([str(Path(NBGRADER).parent), env["PATH"]])
    env["COURSE_FAST"] = "1"
    return {**env, **extra}


def grade_command(root: Path, *args: str) -> list:
    return [sys.executable, "-m", "course_grading", "grade", NAME, "--course", str(root),
            "--cell-timeout", str(CELL_TIMEOUT), *args]


def scores(db_url: str) -> dict:
    """student -> {grade id: score} of the autograded cells."""
    with Gradebook(db_url) as gradebook:
        return {student: {g.name: g.score for g in gradebook.find_submission_notebook(NAME, NAME, student).grades
                          if g.cell.cell_type == "code"}
                for student in CASES}


def digests(root: Path) -> dict:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((root / "submitted").rglob("*.ipynb"))}


@pytest.fixture(scope="module")
def local_class(tmp_path_factory, listener):
    """Graded by two local workers into SQLite: killed once two students are finished, then run again."""
    from conftest import real_data_dir
    from course_lib.data import cifar10_splits

    real_data_dir()
    cifar10_splits("official")  # decoded into the cache now: the sandbox sees the cache read-only
    root = tmp_path_factory.mktemp("class") / "course"
    env = environment()
    make_course(root, env)
    submitted = digests(root)
    first = subprocess.Popen(grade_command(root, "--workers", "2"), env=env, start_new_session=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 900
    while len(list((root / RECORDS).glob("*.json"))) < 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    os.killpg(first.pid, signal.SIGKILL)
    first_log = first.communicate()[0]
    before = {p.stem: (p.read_text(), (root / "autograded" / p.stem / NAME / f"{NAME}.ipynb").stat().st_mtime)
              for p in (root / RECORDS).glob("*.json")}
    assert 2 <= len(before) < len(CASES), f"{len(before)} students finished before the kill\n{first_log[-3000:]}"
    second = subprocess.run(grade_command(root, "--workers", "2"), env=env, capture_output=True, text=True)
    return root, before, second, submitted


def test_every_submission_gets_the_score_it_deserves(local_class):
    root, _, second, _ = local_class
    got = {student: sum(s or 0 for s in cells.values()) for student, cells in scores(f"sqlite:///{root}/gradebook.db").items()}
    expected = {student: points for student, (_, points, _) in CASES.items()}
    assert got == expected, second.stdout[-4000:] + second.stderr[-4000:]
    assert second.returncode == 0


def test_the_screen_holds_progress_and_the_table_only(local_class):
    _, _, second, _ = local_class
    assert "Warning" not in second.stderr and "Traceback" not in second.stderr, second.stderr[-3000:]
    table = second.stdout.splitlines()
    assert table[0].split() == ["student", "score", "seconds", "outcome"], second.stdout
    assert len(table) == len(CASES) + 2 and table[-1].startswith(f"{len(CASES)} graded or kept, 0 failed"), second.stdout


def test_the_class_report_reads_what_grade_left(local_class):
    from course_grading.report import class_summary, verdict_records

    root = local_class[0]
    summary = class_summary(verdict_records(root, NAME))
    assert set(summary["students"]) == set(CASES)
    earned = {student: row["earned"] for student, row in summary["students"].items()}
    assert earned == {student: sum(s or 0 for s in cells.values())
                      for student, cells in scores(f"sqlite:///{root}/gradebook.db").items()}


def test_help_explains_mode_sandbox_database_cluster_and_folders():
    done = subprocess.run([sys.executable, "-m", "course_grading", "grade", "--help"], env=environment(),
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    for needed in ("COURSE_FAST=1", "bubblewrap", "NBGRADER_DB_URL", "--cluster", "submitted/STUDENT/ASSIGNMENT",
                   "autograded/.course-grade"):
        assert needed in done.stdout, f"grade --help does not mention {needed}"


def test_a_killed_run_resumes_without_grading_anyone_twice(local_class):
    root, before, second, _ = local_class
    for student, (record, mtime) in before.items():
        assert (root / RECORDS / f"{student}.json").read_text() == record, f"{student} was graded again"
        assert (root / "autograded" / student / NAME / f"{NAME}.ipynb").stat().st_mtime == mtime
    assert sorted(p.stem for p in (root / RECORDS).glob("*.json")) == sorted(CASES)
    table = second.stdout
    assert table.count("kept (graded before)") == len(before), table
    with Gradebook(f"sqlite:///{root}/gradebook.db") as gradebook:
        assert sorted(s.student.id for s in gradebook.find_assignment(NAME).submissions) == sorted(CASES)


def test_honest_scores_equal_serial_nbgraders(local_class, tmp_path):
    root, _, _, _ = local_class
    serial = tmp_path / "serial"
    serial.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", serial)
    shutil.copytree(ROOT / "solutions" / NAME, serial / "solutions" / NAME)
    nbgrader(serial, "generate_assignment", NAME, "--force")
    for student in HONEST:
        shutil.copytree(root / "submitted" / student, serial / "submitted" / student)
    nbgrader(serial, "autograde", NAME, "--create", f"--ExecutePreprocessor.timeout={CELL_TIMEOUT * 10}")
    with Gradebook(f"sqlite:///{serial}/gradebook.db") as gradebook:
        by_nbgrader = {s: {g.name: g.score for g in gradebook.find_submission_notebook(NAME, NAME, s).grades
                           if g.cell.cell_type == "code"} for s in HONEST}
    by_grade = scores(f"sqlite:///{root}/gradebook.db")
    for student in HONEST:
        assert by_grade[student] == by_nbgrader[student], student


@pytest.mark.parametrize("student", [s for s, (_, _, words) in CASES.items() if words])
def test_hostile_submission_is_named_in_its_feedback(local_class, student):
    root, _, _, _ = local_class
    words = CASES[student][2]
    report = json.loads((root / "autograded" / student / NAME / f"{NAME}.integrity.json").read_text())
    assert any(words in finding for finding in report["findings"]), report
    note = nbformat.read(root / "autograded" / student / NAME / f"{NAME}.ipynb", as_version=4).cells[0]
    assert "Integrity report" in note.source and words in note.source


def printed(root: Path, student: str) -> str:
    nb = nbformat.read(root / "autograded" / student / NAME / f"{NAME}.ipynb", as_version=4)
    return "".join(o.get("text", "") + o.get("ename", "") + o.get("evalue", "")
                   for c in nb.cells if c.cell_type == "code" for o in c.outputs)


def test_hostile_submissions_are_contained(local_class, listener):
    root, _, _, submitted = local_class
    assert "Unable to allocate 5.00 GiB" in printed(root, "memory_bomb")
    assert "no network" in printed(root, "network") and listener == [], listener
    assert (root / "autograded" / "floods_output" / NAME / f"{NAME}.ipynb").stat().st_size < 25 * 2 ** 20
    wiped = printed(root, "wipes_and_reads")
    # it wrote into the empty folder that hides the course in its sandbox, not into the gradebook
    assert "0 solution notebooks seen" in wiped and "submitted" not in wiped, wiped
    assert (root / "gradebook.db").read_bytes()[:16] == b"SQLite format 3\x00"
    assert "0 solution notebooks found" in printed(root, "reads_instructor_files")
    assert digests(root) == submitted, "a submitted notebook was changed"
    assert "CellTimeoutError" in printed(root, "infinite_loop")


def test_feedback_and_export_see_the_grades(local_class):
    root, _, _, _ = local_class
    nbgrader(root, "generate_feedback", NAME)
    feedback = root / "feedback" / "floods_output" / NAME / f"{NAME}.html"
    assert feedback.is_file() and feedback.stat().st_size < 25 * 2 ** 20
    nbgrader(root, "export", "--to", str(root / "grades.csv"))
    rows = (root / "grades.csv").read_text().splitlines()
    correct = next(row for row in rows if f",correct," in row)
    assert f",{float(FULL)}," in correct, correct


@pytest.fixture
def dask_scheduler():
    return service("COURSE_TEST_DASK_SCHEDULER", "tcp://host:port, a Dask scheduler",
                   'eval "$(scripts/dask_for_tests.sh start)" starts a scheduler and two workers and sets it')


def test_a_cluster_with_postgres_grades_the_same(local_class, tmp_path, dask_scheduler, postgres_url):
    root, _, _, _ = local_class
    env = environment(NBGRADER_DB_URL=postgres_url)
    cluster_root = tmp_path / "course"
    make_course(cluster_root, env)
    done = subprocess.run(grade_command(cluster_root, "--cluster", dask_scheduler), env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert not (cluster_root / "gradebook.db").exists()
    by_cluster = scores(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    by_local = scores(f"sqlite:///{root}/gradebook.db")
    differ = {student: {cell: (score, by_local[student][cell]) for cell, score in cells.items()
                        if score != by_local[student][cell]}
              for student, cells in by_cluster.items() if cells != by_local[student]}
    assert not differ, f"(cluster, local) scores differ: {differ}\n{done.stdout[-3000:]}"
    workers = subprocess.run([sys.executable, "-c", "import sys, distributed; c = distributed.Client(sys.argv[1]); "
                              "print(len(c.scheduler_info()['workers']))", dask_scheduler],
                             capture_output=True, text=True, check=True)
    assert int(workers.stdout) == 2
