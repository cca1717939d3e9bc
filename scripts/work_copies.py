#!/usr/bin/env python3
"""Copies of the release to work in: ``work/NN_name/`` from ``notebooks/NN_name/`` (``make lab`` runs this).

``notebooks/`` is nbgrader's release folder: Formgrader's Generate and ``make release`` delete and rewrite
it. Work done there would be lost, so ``make lab`` opens ``work/`` instead. A file already in ``work/``
is never replaced. ``work/.release.json`` keeps a digest of each release file as it was copied, so that when
the release changes later this says so (and still leaves both). Only the standard library is needed.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DIGESTS = ".release.json"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_copies(root: Path = ROOT) -> list[str]:
    """Copy what ``work/`` lacks; the lines to print."""
    release, work = root / "notebooks", root / "work"
    if not release.is_dir():
        return [f"no release in {release}: run `make release` first"]
    work.mkdir(exist_ok=True)
    try:
        copied_from = json.loads((work / DIGESTS).read_text())
    except (OSError, ValueError):
        copied_from = {}
    lines = []
    for source in sorted(release.rglob("*")):
        if not source.is_file() or ".ipynb_checkpoints" in source.parts:
            continue
        name = source.relative_to(release).as_posix()
        target = work / name
        if not target.exists():
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                lines.append(f"cannot copy {name}: a file in work/ stands where its folder goes (rename it)")
                continue
            shutil.copy2(source, target)
            copied_from[name] = digest(source)
            lines.append(f"work copy made: work/{name}")
        elif copied_from.get(name) not in (None, digest(source)):
            lines.append(f"kept your work/{name}; the release in notebooks/ has changed since it was copied "
                         "(rename yours and run `make lab` again to get a fresh copy)")
    (work / DIGESTS).write_text(json.dumps(copied_from, indent=1, sort_keys=True))
    return lines


if __name__ == "__main__":
    printed = make_copies()
    print("\n".join(printed))
    sys.exit(1 if printed and printed[0].startswith("no release") else 0)
