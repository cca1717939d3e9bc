"""``make lab``'s work copies (scripts/work_copies.py): made once, never replaced, a changed release named."""
from __future__ import annotations

import importlib.util

from notebook_cells import ROOT

spec = importlib.util.spec_from_file_location("work_copies", ROOT / "scripts" / "work_copies.py")
work_copies = importlib.util.module_from_spec(spec)
spec.loader.exec_module(work_copies)


def release(root, text="release 1"):
    (root / "notebooks" / "01_a").mkdir(parents=True, exist_ok=True)
    (root / "notebooks" / "01_a" / "01_a.ipynb").write_text(text)


def test_copies_once_then_keeps_an_edit_and_names_a_changed_release(tmp_path):
    release(tmp_path)
    assert work_copies.make_copies(tmp_path) == ["work copy made: work/01_a/01_a.ipynb"]
    mine = tmp_path / "work" / "01_a" / "01_a.ipynb"
    mine.write_text("my work")
    assert work_copies.make_copies(tmp_path) == []                      # an edit is not a changed release
    release(tmp_path, "release 2")
    mine.write_text("my work, later")                                   # edited after the release changed
    said = work_copies.make_copies(tmp_path)
    assert said == ["kept your work/01_a/01_a.ipynb; the release in notebooks/ has changed since it was copied "
                    "(rename yours and run `make lab` again to get a fresh copy)"]
    assert mine.read_text() == "my work, later"
    mine.rename(mine.with_name("old.ipynb"))
    assert work_copies.make_copies(tmp_path) == ["work copy made: work/01_a/01_a.ipynb"]
    assert mine.read_text() == "release 2" and work_copies.make_copies(tmp_path) == []


def test_a_file_where_a_folder_goes_is_named_not_a_crash(tmp_path):
    release(tmp_path)
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "01_a").write_text("a file")
    assert work_copies.make_copies(tmp_path) == [
        "cannot copy 01_a/01_a.ipynb: a file in work/ stands where its folder goes (rename it)"]


def test_no_release_says_what_to_run(tmp_path):
    assert work_copies.make_copies(tmp_path) == [f"no release in {tmp_path / 'notebooks'}: run `make release` first"]
