#!/usr/bin/env python3
"""The student distribution of the course, and the URLs in the notebooks that point students at it.

This repository holds the solutions, hidden tests and model answers, so it stays private; students
get a separate repository (``student_repository`` in course.toml), published at a tag
(``student_ref``). Three commands:

  build DIR   write the student tree into DIR: notebooks/ (the release), course_lib/, a student
              README, pyproject.toml, environment.yml, a Makefile with `make lab`, a LICENSE if
              there is one. DIR must be new, empty (a `.git` alone is fine) or a previous build,
              which is replaced except for its .git and .venv; outside this repository.
              (`make student-dist DIR=…`)
  stamp [NB]  write course.toml's repository and ref into the solution notebooks' Open-in-Colab
              badge (first markdown cell) and setup-cell install line (grade_id "setup"); nothing
              else in the files changes. Idempotent. (`make release` runs it before nbgrader.)
  check       every solution and release notebook's badge and install line match course.toml.

Exit status: 0 done, 1 a notebook or file is not as expected, 2 refused (bad arguments or DIR).
Only the standard library is needed, except for `stamp` (nbformat).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "course.toml"
TEMPLATES = Path(__file__).resolve().parent / "student_templates"
MARKER = ".course-student-dist.json"
RELEASE_DIR = "notebooks"    # nbgrader's release directory (nbgrader_config.py), also the dist's
SOURCE_DIR = "solutions"     # nbgrader's source directory
SHIPPED_DIRS = ("notebooks", "course_lib")
COPIED_FILES = ("environment.yml",)                         # copied as they are
LICENSE_NAMES = ("LICENSE", "LICENSE.md", "LICENSE.txt", "COPYING")
KEPT_IN_DIR = (".git", ".venv")                             # a rebuild leaves these in place
JUNK_PARTS = {"__pycache__", ".ipynb_checkpoints", ".pytest_cache"}
JUNK_SUFFIXES = (".pyc", ".pyo", ".egg-info")

BADGE_URL_RE = re.compile(r"https://colab\.research\.google\.com/github/[^\s()\[\]<>\"']+?\.ipynb")
INSTALL_RE = re.compile(r"course_lib @ git\+https://github\.com/[^\s\"'\\]+")
REPOSITORY_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+")
REF_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")          # no '/': it would make Colab's URL ambiguous


class Refused(Exception):
    """The command cannot go on; the message says why and what to do (exit status 2)."""


class NotebookProblem(Exception):
    """A notebook lacks what the command needs, or does not match the configuration (exit status 1)."""


# --- configuration ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Config:
    student_repository: str
    student_ref: str

    def colab_url(self, name: str) -> str:
        """The Open-in-Colab URL of release notebook ``name`` in the student repository."""
        return (f"https://colab.research.google.com/github/{self.student_repository}/blob/"
                f"{self.student_ref}/{RELEASE_DIR}/{name}/{name}.ipynb")

    @property
    def install_spec(self) -> str:
        """What the setup cell gives to pip on Colab: course_lib from the student repository's ref."""
        return f"course_lib @ git+https://github.com/{self.student_repository}@{self.student_ref}"

    @property
    def homepage(self) -> str:
        return f"https://github.com/{self.student_repository}"


def parse_simple_toml(text: str, name: str = "course.toml") -> dict[str, str]:
    """The subset of TOML course.toml uses: ``key = "string"`` lines, comments, blank lines.

    Used where Python has no ``tomllib`` (3.10); on 3.11+ ``tomllib`` reads the file and this
    function's answer is the same (tests/test_student_dist.py checks it).
    """
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = re.fullmatch(r'([A-Za-z0-9_-]+)\s*=\s*"([^"\\]*)"\s*(#.*)?', stripped)
        if not match:
            raise Refused(f"{name}, line {number}: only `key = \"string\"` lines are understood "
                          f"(without backslashes), got: {stripped}")
        if match.group(1) in values:
            raise Refused(f"{name}, line {number}: {match.group(1)} is set twice")
        values[match.group(1)] = match.group(2)
    return values


def read_config(path: Path = CONFIG) -> Config:
    """course.toml, checked: both keys present, no others, values usable in URLs."""
    if not path.is_file():
        raise Refused(f"no configuration at {path}: it names the student repository and ref")
    text = path.read_text(encoding="utf-8")
    try:
        import tomllib
    except ImportError:        # Python 3.10
        values = parse_simple_toml(text, path.name)
    else:
        try:
            values = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise Refused(f"{path.name} is not valid TOML: {err}") from None
    fields = {"student_repository": REPOSITORY_RE, "student_ref": REF_RE}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise Refused(f"{path.name}: unknown setting(s) {', '.join(unknown)}; it has {', '.join(fields)}")
    examples = {"student_repository": '"owner/name"', "student_ref": '"v0.1.0" (no "/")'}
    for key, pattern in fields.items():
        value = values.get(key)
        if not isinstance(value, str) or not pattern.fullmatch(value):
            raise Refused(f"{path.name}: {key} must be a string like {examples[key]}, got {value!r}")
    return Config(values["student_repository"], values["student_ref"])


# --- the two URLs in a notebook --------------------------------------------------------------

def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def badge_cell(nb: dict, path: Path):
    """The first markdown cell (the one with the Open-in-Colab badge)."""
    for cell in nb["cells"]:
        if cell.get("cell_type") == "markdown":
            return cell
    raise NotebookProblem(f"{path}: no markdown cell, so no Open-in-Colab badge")


def setup_cell(nb: dict, path: Path):
    """The locked setup cell (nbgrader grade_id "setup")."""
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == "setup":
            return cell
    raise NotebookProblem(f"{path}: no setup cell (a cell whose nbgrader grade_id is \"setup\")")


def _only(pattern: re.Pattern, text: str, path: Path, what: str) -> str:
    found = pattern.findall(text)
    if len(found) != 1:
        raise NotebookProblem(f"{path}: expected exactly one {what}, found {len(found)}" +
                              (f": {', '.join(found)}" if found else f" (pattern {pattern.pattern})"))
    return found[0]


def notebook_urls(nb: dict, path: Path) -> tuple[str, str]:
    """(badge URL, pip install spec) of a notebook; NotebookProblem if either is missing or doubled."""
    badge = _only(BADGE_URL_RE, _source(badge_cell(nb, path)), path,
                  "Open-in-Colab URL in the first markdown cell")
    install = _only(INSTALL_RE, _source(setup_cell(nb, path)), path,
                    "`course_lib @ git+https://github.com/…` install line in the setup cell")
    return badge, install


def notebook_paths(folder: str) -> list[Path]:
    """``folder/NN_name/NN_name.ipynb`` for every assignment, in course order."""
    base = ROOT / folder
    return sorted(p / f"{p.name}.ipynb" for p in base.iterdir() if (p / f"{p.name}.ipynb").is_file()) \
        if base.is_dir() else []


def check(config: Config, folders=(SOURCE_DIR, RELEASE_DIR)) -> list[str]:
    """What differs from the configuration, one line per problem; empty when all match."""
    problems = []
    for folder in folders:
        for path in notebook_paths(folder):
            rel = path.relative_to(ROOT)
            try:
                badge, install = notebook_urls(json.loads(path.read_text(encoding="utf-8")), rel)
            except NotebookProblem as err:
                problems.append(str(err))
                continue
            if badge != config.colab_url(path.stem):
                problems.append(f"{rel}: badge {badge}, course.toml says {config.colab_url(path.stem)}")
            if install != config.install_spec:
                problems.append(f"{rel}: setup cell installs {install!r}, course.toml says {config.install_spec!r}")
    return problems


# --- stamp -----------------------------------------------------------------------------------

def stamped_text(path: Path, config: Config) -> str:
    """The notebook's file text with the badge URL and install line set from ``config``.

    The notebook goes through nbformat as Jupyter and nbgrader write it (sorted keys, one-space
    indent, a final newline); if that would change any line other than the two stamped ones (a
    notebook last written by another tool), NotebookProblem is raised and nothing is written.
    """
    try:
        import nbformat
    except ImportError:
        raise NotebookProblem("stamping needs nbformat: run it with the course's environment "
                              "(`make release` does: .venv/bin/python scripts/student_dist.py stamp)") from None

    text = path.read_text(encoding="utf-8")
    nb = nbformat.reads(text, as_version=nbformat.NO_CONVERT)
    badge, install = notebook_urls(nb, path)
    new_badge, new_install = config.colab_url(path.stem), config.install_spec
    first, setup = badge_cell(nb, path), setup_cell(nb, path)
    first.source = first.source.replace(badge, new_badge)
    setup.source = setup.source.replace(install, new_install)
    new_text = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    if not new_text.endswith("\n"):
        new_text += "\n"
    old_lines, new_lines = text.splitlines(), new_text.splitlines()
    unexpected = [i for i, (a, b) in enumerate(zip(old_lines, new_lines), start=1)
                  if a != b and not (new_badge in b or new_install in b)]
    if len(old_lines) != len(new_lines) or unexpected or (text.endswith("\n") != new_text.endswith("\n")):
        where = f"line {unexpected[0]}" if unexpected else "its line count or final newline"
        raise NotebookProblem(f"{path}: writing it back with nbformat would change more than the two URLs "
                              f"({where}); open and save it in Jupyter once, then stamp again")
    return new_text


def stamp(config: Config, paths: list[Path]) -> list[Path]:
    """Stamp every notebook in ``paths``; all are checked before any is written. Returns those changed."""
    if not paths:
        raise NotebookProblem(f"no notebooks to stamp (looked for {SOURCE_DIR}/NN_name/NN_name.ipynb)")
    new = {path: stamped_text(path, config) for path in paths}
    changed = []
    for path, text in new.items():
        if path.read_text(encoding="utf-8") == text:
            continue
        # Written beside it and renamed over it, so a notebook is never half written; a leftover
        # would be copied into the release by nbgrader (it copies every file of the folder).
        tmp = path.with_name(f".{path.name}.stamp-tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        changed.append(path)
    return changed


# --- build -----------------------------------------------------------------------------------

def _is_junk(rel: Path) -> bool:
    return bool(JUNK_PARTS & set(rel.parts)) or any(part.endswith(JUNK_SUFFIXES) for part in rel.parts)


def _git(*args: str) -> str | None:
    """Output of a git command in this repository, or None when this is no git checkout."""
    if not (ROOT / ".git").exists() or shutil.which("git") is None:
        return None
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
    return done.stdout if done.returncode == 0 else None


def shipped_sources() -> tuple[list[Path], list[Path]]:
    """(files, untracked): the files of notebooks/ and course_lib/ that go into the dist, relative
    to the repository, and those of them git does not track yet.

    In a git checkout: what git does not ignore, as it is in the working tree (so a new notebook
    that `make release` wrote ships before it is committed; the build names it). Elsewhere (an
    unpacked archive): every file. Caches and checkpoints never ship.
    """
    listed = _git("ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *SHIPPED_DIRS)
    if listed is None:
        files = [p.relative_to(ROOT) for d in SHIPPED_DIRS for p in (ROOT / d).rglob("*") if p.is_file()]
        untracked: list[Path] = []
    else:
        files = [Path(f) for f in listed.split("\0") if f]
        others = _git("ls-files", "-z", "--others", "--exclude-standard", "--", *SHIPPED_DIRS) or ""
        untracked = sorted(Path(f) for f in others.split("\0") if f)
    files = sorted({f for f in files if not _is_junk(f) and (ROOT / f).is_file()})
    return files, [f for f in untracked if f in files]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _dist_files(dest: Path) -> list[Path]:
    """Files in a dist folder, relative, leaving out what a rebuild keeps (.git, .venv)."""
    out = []
    for folder, dirs, files in os.walk(dest):
        if Path(folder) == dest:
            dirs[:] = [d for d in dirs if d not in KEPT_IN_DIR]
        out += [(Path(folder) / f).relative_to(dest) for f in files]
    return sorted(out)


def check_destination(dest: Path, force: bool) -> bool:
    """Refused unless ``dest`` may be written; True when it holds a previous build to replace."""
    if dest == ROOT or ROOT in dest.parents:
        raise Refused(f"{dest} is inside this repository: there the student tree sits next to the solutions, "
                      "one `git add -A` commits it into this repository, or, in an ignored folder such as "
                      "build/, `git clean -X` deletes it with its .git; choose a folder outside, e.g. "
                      "DIR=../course-student")
    if dest in ROOT.parents:
        raise Refused(f"{dest} contains this repository; choose a new folder, e.g. DIR=../course-student")
    if not dest.exists():
        return False
    if not dest.is_dir():
        raise Refused(f"{dest} exists and is not a folder")
    entries = {p.name for p in dest.iterdir()} - {".git"}
    if not entries:
        return False
    if MARKER not in entries:
        raise Refused(f"{dest} is not empty and is not a student dist (it has no {MARKER}); nothing was "
                      "written. Choose a new or empty folder (an empty clone with only .git is fine).")
    try:
        manifest = json.loads((dest / MARKER).read_text(encoding="utf-8"))["files"]
    except (ValueError, KeyError, TypeError):
        raise Refused(f"{dest / MARKER} is not a manifest this script wrote; nothing was written") from None
    changed = [str(rel) for rel in _dist_files(dest)
               if str(rel) != MARKER and not _is_junk(rel)
               and (manifest.get(rel.as_posix()) != _sha256(dest / rel))]
    if changed and not force:
        raise Refused(f"{dest} is a previous student dist, but these files were added or edited since it "
                      f"was built: {', '.join(changed[:10])}{' …' if len(changed) > 10 else ''}; nothing was "
                      "written. Move them away, or pass --force to replace them too.")
    return True


def _first_heading(path: Path) -> str:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for line in _source(badge_cell(nb, path)).splitlines():
        if line.startswith("# "):
            return re.sub(r"^\d+\s*·\s*", "", line[2:].strip())
    return path.stem


def render_readme(config: Config, notebooks: list[Path]) -> str:
    """The student README: the template with the notebooks' table and the configuration filled in."""
    rows = []
    for path in notebooks:
        rel = path.relative_to(ROOT).as_posix()
        badge = (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                 f"({config.colab_url(path.stem)})")
        rows.append(f"| {path.stem[:2]} | [{_first_heading(path)}]({rel}) | {badge} |")
    table = "| # | notebook | on Colab |\n|---|---|---|\n" + "\n".join(rows)
    text = (TEMPLATES / "README.md").read_text(encoding="utf-8")
    values = {"student_repository": config.student_repository, "student_ref": config.student_ref,
              "student_repository_name": config.student_repository.split("/")[1], "notebook_table": table}
    unknown = sorted(set(re.findall(r"\{\{(\w+)\}\}", text)) - set(values))
    if unknown:
        raise NotebookProblem(f"{TEMPLATES / 'README.md'}: unknown placeholder(s) {', '.join(unknown)}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: values[m.group(1)], text)


def student_pyproject(config: Config) -> str:
    """pyproject.toml with its Homepage pointing at the student repository, not this one."""
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return re.sub(r'(?m)^(Homepage\s*=\s*)"[^"]*"', lambda m: f'{m.group(1)}"{config.homepage}"', text)


def build(dest: Path, config: Config, allow_unstamped: bool = False, force: bool = False,
          report=lambda message: None) -> list[Path]:
    """Write the student tree into ``dest``; returns its files (relative). ``report`` gets notes."""
    dest = Path(os.path.abspath(dest.expanduser())).resolve()
    replace = check_destination(dest, force)
    if not allow_unstamped:
        problems = check(config, folders=(RELEASE_DIR,))
        if problems:
            raise NotebookProblem("the release notebooks do not point at course.toml's student repository "
                                  "(run `make release`, which stamps the solutions and regenerates "
                                  "notebooks/):\n  " + "\n  ".join(problems))
    sources, untracked = shipped_sources()
    notebooks = notebook_paths(RELEASE_DIR)
    if not notebooks:
        raise NotebookProblem(f"no release notebooks in {ROOT / RELEASE_DIR} (run `make release`)")
    generated = {
        "README.md": render_readme(config, notebooks),
        "pyproject.toml": student_pyproject(config),
        "Makefile": (TEMPLATES / "Makefile").read_text(encoding="utf-8"),
        ".gitignore": (TEMPLATES / "gitignore").read_text(encoding="utf-8"),
    }
    if untracked:
        report("note: shipping files git does not track yet: " + ", ".join(map(str, untracked)))
    copied = [Path(name) for name in COPIED_FILES + LICENSE_NAMES if (ROOT / name).is_file()]

    if replace:
        for entry in dest.iterdir():
            if entry.name in KEPT_IN_DIR:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    dest.mkdir(parents=True, exist_ok=True)
    for rel in sources + copied:
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, dest / rel)
    for name, text in generated.items():
        (dest / name).write_text(text, encoding="utf-8")
    files = sorted(set(sources) | set(copied) | {Path(name) for name in generated})
    manifest = {
        "about": "Written by the course's scripts/student_dist.py build; the next build replaces "
                 "every file here (not .git or .venv). Edit the course, not this tree.",
        "student_repository": config.student_repository,
        "student_ref": config.student_ref,
        "files": {rel.as_posix(): _sha256(dest / rel) for rel in files},
    }
    (dest / MARKER).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return files + [Path(MARKER)]


# --- command line ----------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=CONFIG, help="default: course.toml")
    commands = parser.add_subparsers(dest="command", required=True)
    b = commands.add_parser("build", help="write the student tree into DIR")
    b.add_argument("dir", type=Path, metavar="DIR")
    b.add_argument("--force", action="store_true",
                   help="replace a previous dist even where files in it were added or edited")
    b.add_argument("--allow-unstamped", action="store_true",
                   help="build even if the release notebooks point elsewhere than course.toml (tests)")
    s = commands.add_parser("stamp", help="write course.toml's URLs into the solution notebooks")
    s.add_argument("notebooks", nargs="*", type=Path,
                   help=f"default: every {SOURCE_DIR}/NN_name/NN_name.ipynb")
    commands.add_parser("check", help="do the solution and release notebooks match course.toml?")
    args = parser.parse_args(argv)

    try:
        config = read_config(args.config)
        if args.command == "build":
            files = build(args.dir, config, allow_unstamped=args.allow_unstamped, force=args.force, report=print)
            dest = Path(os.path.abspath(args.dir.expanduser())).resolve()
            dirty = _git("status", "--porcelain", "--", *SHIPPED_DIRS)
            if dirty:
                print("note: notebooks/ or course_lib/ have uncommitted changes, which the dist has too; "
                      "commit them before publishing, so that the student ref matches a commit here")
            ref = config.student_ref
            print(f"wrote {len(files)} files to {dest} for {config.student_repository}@{ref}\n"
                  f"to publish it (README.md, 'For instructors'):\n"
                  f"  cd {dest}\n"
                  f"  git init -b main && git remote add origin git@github.com:{config.student_repository}.git"
                  f"   # the first time only\n"
                  f"  git add -A && git commit -m 'Course {ref}' && git tag {ref} && git push origin main {ref}")
        elif args.command == "stamp":
            paths = [p.resolve() for p in args.notebooks] or notebook_paths(SOURCE_DIR)
            changed = stamp(config, paths)
            print(f"stamped {len(changed)} of {len(paths)} notebooks with "
                  f"{config.student_repository}@{config.student_ref}"
                  + "".join(f"\n  {p}" for p in changed))
        else:
            problems = check(config)
            if problems:
                print("\n".join(problems), file=sys.stderr)
                print("run `make release` (stamps the solutions, regenerates notebooks/)", file=sys.stderr)
                return 1
            print(f"every notebook points at {config.student_repository}@{config.student_ref}")
    except Refused as err:
        print(f"refused: {err}", file=sys.stderr)
        return 2
    except NotebookProblem as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
