"""The student distribution (scripts/student_dist.py, `make student-dist`) and the URLs that point at it.

The dist is built once into a temporary folder; then: its file list; its notebooks and course_lib
equal this repository's; no line of a solution, hidden test or model answer occurs in any of its
files; it holds no grading code (course_grading, the instructor's package, is neither shipped nor
imported, and its commands are refused by name); it installs on its own (a wheel built from it holds
course_lib only); a folder a user made is never written into. The stamping step is run on copies of the solution notebooks only. The last
test checks the real notebooks against course.toml: it fails until `make release` has stamped them.
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "student_dist.py"

_spec = importlib.util.spec_from_file_location("student_dist", SCRIPT)
sd = importlib.util.module_from_spec(_spec)
sys.modules["student_dist"] = sd          # dataclasses look the module up while the class is made
_spec.loader.exec_module(sd)

# A solution, hidden-test or model-answer line is searched for when, stripped, it has at least
# MIN_CHARS characters and is not a comment. Below 20 the lines are vocabulary that any code
# has ("return out", "loss.backward()", "for n in range(N):", "if b is not None:", "else:"), so a
# match would say nothing; from 20 on, the shortest one-line answers are still checked
# ("return np.maximum(z, 0)", "return dout * (z > 0)", "v_new = momentum * v + g").
MIN_CHARS = 20

# Lines that occur in course_lib by design, not as a leak: the models and the public checks use
# the same PyTorch idioms as an answer or a hidden test. Allowed in course_lib/*.py only; in a
# notebook or the README each still counts as a leak. Add a line only after reading both places.
COINCIDENCES = {
    # course_lib.models.PlainCNN (a model of notebook 03's comparison, no batch norm) is built as
    # ThreeBlockCNN's answer is: these lines are the idiom, the answer is its conv-BN-ReLU-pool blocks
    "layers, c_in = [], in_channels",
    "self.features = nn.Sequential(*layers)",
    "self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes))",
    "return self.classifier(self.features(x))",
    "for layer in model.modules():",           # models.py walks a model's layers, as notebook 03 asks
    # the public checks call and compare the student's code as the hidden tests do
    "got = first_layer_grad_norm(model)",
    "out = np.asarray(out, dtype=np.float64)",
    "expected = sum(p.numel() for p in layer.parameters())",
    "for t, g in enumerate(grads, start=1):",
    "with torch.random.fork_rng(devices=[]):",
    "torch.manual_seed(seed)",
    "if scheduler is not None:",
    "nn.functional.cross_entropy(model(x), y).backward()",
    "sizes = [d_in, *hidden_sizes, d_out]",    # the checks count torch Linear layers of these sizes
    "optimizer.zero_grad()",                   # a training step, as course_lib.trainer and the checks take it
    "for p, q in zip(a.parameters(), b.parameters()))",
    # scikit-learn imports: course_lib.data.split and check_param_grid use what notebook 05's
    # split answer and parameter-grid hidden test use
    "from sklearn.model_selection import train_test_split",
    "from sklearn.model_selection import ParameterGrid",
    # course_lib.transfer pretrains notebook 06's backbone with the course's recipe, which notebook 03's
    # open task (no single answer, graded by the accuracy reached) also starts from in its model answer
    "optimizer = torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.85, nesterov=True, weight_decay=5e-4)",
    # notebook 06's checks walk the student's model and branch on the three modes, as its answer does
    "for module in model.modules():",
    'if mode == "linear_probe":',
    'if mode == "scratch":',
    "torch.manual_seed(3)",
    # the checks and the hidden tests run steps in the student's kernel alike (course_grading.verdict)
    "model.load_state_dict(state)",
    "for p, q in zip(a, b))",
    "training = model.training",
    "if isinstance(m, nn.Conv2d)]",
    # notebook 06's public check and hidden test build the same small model to read param_groups on
    "model[1].weight.requires_grad_(False)",
    "names = {id(p): name for name, p in model.named_parameters()}",
    "for group in optimizer.param_groups]",
}

# A hidden test's imports and exception handlers name no answer and no test (they are the course's idiom).
SYNTAX_ONLY = re.compile(r"(from [\w.]+ )?import [\w., ]+$|except( [\w.]+)?( as \w+)?:$")

STUDENT_FILES = {".course-student-dist.json", ".gitignore", "Makefile", "README.md", "pyproject.toml",
                 "environment.yml"}
NEVER = {"solutions", "tests", "scripts", ".ci", "nbgrader_config.py", "gradebook.db", "CONTRIBUTING.md",
         "conftest.py", "build", "submitted", "autograded", "feedback", "release", "course.toml",
         "__pycache__", ".ipynb_checkpoints"}
INSTRUCTOR_WORDS = ("solutions/", "hidden test", "model answer", "nbgrader", "formgrader", "autograd",
                    "gradebook", "contributing", "course.toml", "instructor")
REGION_RE = {kind: re.compile(rf"### BEGIN {kind}\n(.*?)### END {kind}", re.S)
             for kind in ("SOLUTION", "HIDDEN TESTS")}


def run_script(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True, text=True)


def build(dest: Path, *extra: str) -> subprocess.CompletedProcess:
    return run_script("build", str(dest), "--allow-unstamped", *extra)


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("dist") / "course-student"
    done = build(dest)
    assert done.returncode == 0, done.stdout + done.stderr
    return dest


def dist_files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def repo_files(folder: str) -> set[str]:
    return {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).rglob("*")
            if p.is_file() and not sd._is_junk(p.relative_to(ROOT))}


# --- what the secret lines are ---------------------------------------------------------------

def _cell_text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


@lru_cache(maxsize=None)
def secret_and_public() -> tuple[tuple[tuple[str, str, str], ...], frozenset[str]]:
    """((notebook, kind, line), …) of every significant secret line, and every stripped line of
    the solution notebooks' visible text (what the release shows anyway)."""
    secrets, public = [], set()
    for path in sd.notebook_paths(sd.SOURCE_DIR):
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            text, meta = _cell_text(cell), cell["metadata"].get("nbgrader", {})
            if cell["cell_type"] == "markdown" and meta.get("solution"):
                secrets += [(path.stem, "model answer", line) for line in text.splitlines()]
                continue
            visible = text
            for kind, pattern in REGION_RE.items():
                secrets += [(path.stem, kind.lower(), line) for block in pattern.findall(text)
                            for line in block.splitlines()]
                visible = pattern.sub("", visible)
            if cell["cell_type"] == "code" and meta.get("solution") and "### BEGIN SOLUTION" not in text:
                secrets += [(path.stem, "solution", line) for line in text.splitlines()]   # whole cell replaced
                continue
            public |= {line.strip() for line in visible.splitlines()}
    significant = {(nb, kind, line.strip()) for nb, kind, line in secrets
                   if len(line.strip()) >= MIN_CHARS and not (kind != "model answer" and line.strip().startswith("#"))
                   and not (kind == "hidden tests" and SYNTAX_ONLY.match(line.strip()))}
    return tuple(sorted(significant)), frozenset(public)


def checked_lines() -> list[tuple[str, str, str]]:
    """The secret lines the leak test looks for: significant, and not shown in the notebooks anyway."""
    secrets, public = secret_and_public()
    return [s for s in secrets if s[2] not in public]


def searchable(path: Path) -> str:
    """A file's text; for a notebook also every string in its JSON, unescaped, sources joined."""
    raw = path.read_bytes().decode("utf-8", errors="replace")
    if path.suffix != ".ipynb":
        return raw
    strings = []

    def walk(node):
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            if node and all(isinstance(v, str) for v in node):
                strings.append("".join(node))
            else:
                for value in node:
                    walk(value)
        elif isinstance(node, str):
            strings.append(node)

    walk(json.loads(raw))
    return raw + "\n" + "\n".join(strings)


def leaks(texts: dict[str, str]) -> list[str]:
    found = []
    for notebook, kind, line in checked_lines():
        for name, text in texts.items():
            if line in text and not (line in COINCIDENCES and name.startswith("course_lib/") and name.endswith(".py")):
                found.append(f"{name}: {kind} line of {notebook}: {line}")
    return found


# --- the dist --------------------------------------------------------------------------------

def test_dist_holds_the_student_files_only(dist):
    files = dist_files(dist)
    licenses = {n for n in sd.LICENSE_NAMES if (ROOT / n).is_file()}
    expected = STUDENT_FILES | licenses | repo_files("notebooks") | repo_files("course_lib")
    assert files == expected, f"missing: {sorted(expected - files)}; unexpected: {sorted(files - expected)}"
    parts = {part for f in files for part in Path(f).parts}
    assert not parts & NEVER, f"instructor material in the dist: {sorted(parts & NEVER)}"
    assert not [f for f in files if f.endswith((".pyc", ".db")) or ".egg-info" in f]
    manifest = json.loads((dist / sd.MARKER).read_text())
    assert set(manifest["files"]) == files - {sd.MARKER}


def test_dist_notebooks_and_course_lib_equal_the_repository(dist):
    shipped = repo_files("notebooks") | repo_files("course_lib")
    assert {f for f in shipped if f.startswith("notebooks/")}, "no release notebooks"
    different = [f for f in sorted(shipped) if (dist / f).read_bytes() != (ROOT / f).read_bytes()]
    assert not different, f"differ from the repository: {different}"
    assert (dist / "environment.yml").read_bytes() == (ROOT / "environment.yml").read_bytes()


def test_no_solution_hidden_test_or_model_answer_in_the_dist(dist):
    lines = checked_lines()
    kinds = {kind for _, kind, _ in lines}
    assert len(lines) > 300 and kinds == {"solution", "hidden tests", "model answer"}, \
        f"only {len(lines)} lines ({kinds}) found in the solution notebooks: are the markers still spelled so?"
    for path in sd.notebook_paths(sd.SOURCE_DIR):
        assert any(nb == path.stem for nb, _, _ in lines), f"no secret line found in {path.name}"
    texts = {f: searchable(dist / f) for f in sorted(dist_files(dist))}
    assert leaks({"probe.txt": lines[0][2]}), "the search itself finds nothing"
    found = leaks(texts)
    assert not found, f"{len(found)} secret lines in the dist:\n" + "\n".join(found[:20])
    for name, text in texts.items():
        if not name.startswith("course_lib/"):
            assert "### BEGIN SOLUTION" not in text and "### BEGIN HIDDEN TESTS" not in text, name


def test_student_readme_and_makefile_are_for_students(dist):
    readme = (dist / "README.md").read_text()
    for word in INSTRUCTOR_WORDS:
        for name in ("README.md", "Makefile", ".gitignore"):
            assert word not in (dist / name).read_text().lower(), f"{name} mentions {word!r}"
    config = sd.read_config()
    for needed in ("COURSE_FAST=1", 'pip install -e ".[notebooks]"', "environment.yml", "make lab",
                   "COURSE_DATA_DIR", config.colab_url("01_numpy_mlp")[:60], config.student_ref):
        assert needed in readme, f"the student README lacks {needed!r}"
    for path in sd.notebook_paths(sd.RELEASE_DIR):
        assert config.colab_url(path.stem) in readme and f"notebooks/{path.stem}/{path.name}" in readme
    assert "{{" not in readme
    assert re.search(r"(?m)^lab: setup$", (dist / "Makefile").read_text())


def test_dist_installs_on_its_own(dist, tmp_path):
    """The wheel pip builds from the dist (Colab's `pip install git+…`, a student's `pip install -e .`)
    holds course_lib and its metadata only, with the student README and repository."""
    tree = tmp_path / "tree"
    shutil.copytree(dist, tree)
    code = "import sys; from setuptools import build_meta as b; print(b.build_wheel(sys.argv[1]))"
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "wheel")], cwd=tree,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheel = tmp_path / "wheel" / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"course_lib"}, sorted(top)
    packaged = {n for n in names if n.startswith("course_lib/")}
    assert packaged == {f for f in repo_files("course_lib") if f.endswith(".py")}
    assert f"https://github.com/{sd.read_config().student_repository}" in metadata
    assert "Deep learning for images — the course notebooks" in metadata   # the student README


def grading_imports(source: str) -> list[int]:
    """Lines of ``source`` that import course_grading: import statements, and import_module or
    __import__ calls given its name."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            modules = [node.module or ""]
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            modules = [str(node.args[0].value)] if called in ("import_module", "__import__") else []
        else:
            continue
        if any(module.split(".")[0] == "course_grading" for module in modules):
            lines.append(node.lineno)
    return sorted(lines)


def test_dist_holds_no_grading_code(dist):
    """The grading machinery (sandbox, nbgrader preprocessors, kernel-state checks) is the instructor's
    package course_grading: not shipped, imported by nothing shipped, its commands refused by name."""
    files = dist_files(dist)
    assert not [f for f in files if "course_grading" in Path(f).parts or "grading" in Path(f).parts]
    assert grading_imports("import course_grading.sandbox\nfrom course_grading import verdict\n"
                           "importlib.import_module('course_grading.report')\nx = 'course_grading'\n") == [1, 2, 3]
    shipped = sorted(f for f in files if f.endswith(".py"))
    assert "course_lib/__main__.py" in shipped and len(shipped) > 10
    importers = [f"{f}, line {line}" for f in shipped for line in grading_imports((dist / f).read_text())]
    assert importers == [], f"shipped code imports the instructor's package: {importers}"

    env = {**os.environ, "PYTHONPATH": str(dist)}
    for command in ("grade", "integrity"):
        done = subprocess.run([sys.executable, "-m", "course_lib", command, "submitted"], cwd=dist, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode != 0 and done.stdout == ""
        assert f"{command} is an instructor's command: python -m course_grading {command}" in done.stderr, \
            done.stderr


# --- where the dist may be written -----------------------------------------------------------

def test_refuses_a_folder_a_user_made(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    done = build(mine)
    assert done.returncode == 2 and "not a student dist" in done.stderr
    assert dist_files(mine) == {"notes.txt"}


def test_refuses_a_folder_inside_the_repository():
    target = ROOT / "build" / "student-dist-test"
    done = build(target)
    assert done.returncode == 2 and "inside this repository" in done.stderr
    assert not target.exists()
    assert run_script("build", "..", "--allow-unstamped").returncode == 2


def test_writes_into_an_empty_clone_and_replaces_a_previous_dist(tmp_path):
    dest = tmp_path / "clone"
    (dest / ".git").mkdir(parents=True)
    (dest / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    assert build(dest).returncode == 0
    before = dist_files(dest)
    (dest / "course_lib" / "__pycache__").mkdir()
    (dest / "course_lib" / "__pycache__" / "x.pyc").write_bytes(b"")
    (dest / ".venv").mkdir()
    (dest / ".venv" / "kept").write_text("")
    assert build(dest).returncode == 0, "a clean previous dist is replaced"
    assert dist_files(dest) == before | {".venv/kept"}, ".git and .venv stay, caches go"

    (dest / "notebooks" / "my_notes.ipynb").write_text("{}")
    (dest / "README.md").write_text("edited")
    done = build(dest)
    assert done.returncode == 2 and "my_notes.ipynb" in done.stderr and "README.md" in done.stderr
    assert (dest / "README.md").read_text() == "edited"
    assert build(dest, "--force").returncode == 0
    assert dist_files(dest) == before | {".venv/kept"}


def test_build_refuses_notebooks_that_point_elsewhere(tmp_path):
    config = tmp_path / "course.toml"
    config.write_text('student_repository = "someone/elsewhere"\nstudent_ref = "v9.9.9"\n')
    done = run_script("--config", str(config), "build", str(tmp_path / "out"))
    assert done.returncode == 1 and "make release" in done.stderr and "someone/elsewhere" in done.stderr
    assert not (tmp_path / "out").exists()


# --- configuration ---------------------------------------------------------------------------

def test_config_reads_the_same_without_tomllib():
    text = sd.CONFIG.read_text()
    simple = sd.parse_simple_toml(text)
    assert set(simple) == {"student_repository", "student_ref"}
    try:
        import tomllib
    except ImportError:
        pytest.skip("Python 3.10: no tomllib to compare with")
    assert simple == tomllib.loads(text)
    with pytest.raises(sd.Refused, match="line 1"):
        sd.parse_simple_toml("student_ref = [1]\n")


def test_config_is_read_on_python_3_10(monkeypatch):
    expected = sd.read_config()
    monkeypatch.setitem(sys.modules, "tomllib", None)      # `import tomllib` raises ImportError
    assert sd.read_config() == expected


@pytest.mark.parametrize("text, message", [
    ('student_repository = "a/b"\n', "student_ref"),
    ('student_repository = "a/b"\nstudent_ref = "v1/x"\n', "student_ref"),
    ('student_repository = "no-slash"\nstudent_ref = "v1"\n', "student_repository"),
    ('student_repository = "a/b"\nstudent_ref = "v1"\nstudent_branch = "x"\n', "unknown"),
])
def test_config_errors_are_clear(tmp_path, text, message):
    path = tmp_path / "course.toml"
    path.write_text(text)
    with pytest.raises(sd.Refused, match=message):
        sd.read_config(path)


# --- stamping (on copies only) ---------------------------------------------------------------

@pytest.fixture
def copies(tmp_path):
    """Copies of the solution notebooks and a configuration that differs from everything in them."""
    shutil.copytree(ROOT / sd.SOURCE_DIR, tmp_path / sd.SOURCE_DIR)
    config = tmp_path / "course.toml"
    config.write_text('# test\nstudent_repository = "someone/else-student"\nstudent_ref = "v9.8.7"\n')
    paths = sorted((tmp_path / sd.SOURCE_DIR).glob("*/*.ipynb"))
    return config, paths


def stamp(config: Path, paths: list[Path]) -> subprocess.CompletedProcess:
    return run_script("--config", str(config), "stamp", *map(str, paths))


def test_stamp_changes_the_two_urls_only_and_is_idempotent(copies):
    config_path, paths = copies
    config = sd.read_config(config_path)
    before = {p: p.read_text(encoding="utf-8") for p in paths}
    done = stamp(config_path, paths)
    assert done.returncode == 0, done.stderr
    for path in paths:
        old, new = before[path].splitlines(keepends=True), path.read_text(encoding="utf-8").splitlines(keepends=True)
        assert len(old) == len(new) and new[-1].endswith("\n")
        changed = [(a, b) for a, b in zip(old, new) if a != b]
        assert len(changed) == 2, f"{path.name}: {len(changed)} lines changed"
        assert config.colab_url(path.stem) in changed[0][1] and "colab.research.google.com" in changed[0][0]
        assert config.install_spec in changed[1][1] and "course_lib @ git+https://github.com/" in changed[1][0]
        for a, b in changed:   # nothing else on those lines changes either
            assert re.sub(sd.BADGE_URL_RE, "URL", re.sub(sd.INSTALL_RE, "SPEC", a)) == \
                   re.sub(sd.BADGE_URL_RE, "URL", re.sub(sd.INSTALL_RE, "SPEC", b))
        nb = nbformat.read(path, as_version=nbformat.NO_CONVERT)
        nbformat.validate(nb)
        assert sd.notebook_urls(nb, path) == (config.colab_url(path.stem), config.install_spec)
    after = {p: p.read_bytes() for p in paths}
    again = stamp(config_path, paths)
    assert again.returncode == 0 and "stamped 0 of" in again.stdout
    assert {p: p.read_bytes() for p in paths} == after


@pytest.mark.parametrize("what", ["badge", "install line"])
def test_stamp_fails_clearly_and_writes_nothing(copies, what):
    config_path, paths = copies
    broken = paths[-1]
    nb = nbformat.read(broken, as_version=nbformat.NO_CONVERT)
    cell = sd.badge_cell(nb, broken) if what == "badge" else sd.setup_cell(nb, broken)
    cell.source = re.sub(sd.BADGE_URL_RE if what == "badge" else sd.INSTALL_RE, "", cell.source)
    nbformat.write(nb, broken)
    before = {p: p.read_bytes() for p in paths}
    done = stamp(config_path, paths)
    assert done.returncode == 1
    assert broken.name in done.stderr and ("Open-in-Colab" if what == "badge" else "install line") in done.stderr
    assert {p: p.read_bytes() for p in paths} == before, "no notebook is written when one cannot be stamped"


# --- the real notebooks ----------------------------------------------------------------------

def test_notebooks_point_at_the_student_repository():
    """Every solution and release notebook's badge and setup cell name course.toml's repository and
    ref. Fails until `make release` (which stamps the solutions first) has run after a change of
    course.toml."""
    problems = sd.check(sd.read_config())
    assert not problems, "run `make release`:\n" + "\n".join(problems)
