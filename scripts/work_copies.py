#!/usr/bin/env python3
"""Copies of the release to work in: ``work/NN_name/`` from ``notebooks/NN_name/`` (``make lab`` runs this).

``notebooks/`` is nbgrader's release folder: Formgrader's Generate and ``make release`` delete and rewrite
it. Work done there would be lost, so ``make lab`` opens ``work/`` instead. A file already in ``work/``
is never replaced; when the release has changed since it was copied, this says so and leaves both.
Only the standard library is needed.
"""
from __future__ import annotations

import filecmp
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE, WORK = ROOT / "notebooks", ROOT / "work"


def main() -> int:
    if not RELEASE.is_dir():
        print(f"no release in {RELEASE}: run `make release` first", file=sys.stderr)
        return 1
    copied, differ = [], []
    for source in sorted(RELEASE.rglob("*")):
        if not source.is_file() or ".ipynb_checkpoints" in source.parts:
            continue
        target = WORK / source.relative_to(RELEASE)
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            copied.append(target)
        elif source.stat().st_mtime > target.stat().st_mtime and not filecmp.cmp(source, target, shallow=False):
            differ.append(target)
    for target in copied:
        print(f"work copy made: {target.relative_to(ROOT)}")
    for target in differ:
        print(f"kept your {target.relative_to(ROOT)}; the release in notebooks/ is newer "
              f"(rename yours and run `make lab` again to get a fresh copy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
