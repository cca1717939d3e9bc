import json

import pytest

from course_lib import setup_notebook
from course_lib.results import table, write_results


def test_write_results_is_flat_json(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    path = write_results("01_x", {"test_accuracy": 0.5, "seconds": 3})
    assert json.loads(path.read_text()) == {"seconds": 3, "test_accuracy": 0.5}
    with pytest.raises(ValueError, match="finite number"):
        write_results("01_x", {"test_accuracy": float("nan")})


def test_nothing_is_written_without_a_results_dir(monkeypatch):
    monkeypatch.delenv("COURSE_RESULTS_DIR", raising=False)
    assert write_results("01_x", {"seconds": 1.0}) is None


def test_finish_records_seconds_and_shows_promises(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    monkeypatch.delenv("COURSE_FAST", raising=False)
    run = setup_notebook("03_demo", seed=1, use_torch=False)
    numbers = run.finish({"test_accuracy": 0.9, "train_seconds": 200}, {"test_accuracy": (">=", 0.85), "train_seconds": ("<=", 100)})
    out = capsys.readouterr().out
    assert "03_demo · full mode · seed 1" in out
    assert "90.0%" in out and ">= 85.0% ✔" in out and "<= 100 s ✘" in out
    saved = json.loads((tmp_path / "03_demo.json").read_text())
    assert saved == numbers and saved["seconds"] >= 0 and saved["test_accuracy"] == 0.9
    assert "| 03_demo | 90.0% |" in table(tmp_path)
    write_results("02_no_classifier", {"seconds": 5.0, "speedup": 2.5})
    assert "| 02_no_classifier | — | 5 | speedup 2.5 |" in table(tmp_path)
