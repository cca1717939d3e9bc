import sys
import types

import numpy as np
import pytest
import torch

from course_lib import settings


@pytest.mark.parametrize("value, fast", [("1", True), ("true", True), ("YES", True), ("0", False), ("", False)])
def test_fast_mode_from_environment(monkeypatch, value, fast):
    monkeypatch.setenv("COURSE_FAST", value)
    assert settings.is_fast() is fast
    assert settings.fast_or_full("small", "big") == ("small" if fast else "big")


def test_folders_follow_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_DATA_DIR", raising=False)
    assert settings.cache_dir() == tmp_path / "cache" and (tmp_path / "cache").is_dir()
    assert settings.data_dir() == tmp_path / "cache" / "data"
    monkeypatch.setenv("COURSE_DATA_DIR", str(tmp_path / "mine"))
    assert settings.data_dir() == tmp_path / "mine"


def test_checkpoints_go_where_the_student_keeps_them(monkeypatch, tmp_path):
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("COURSE_CHECKPOINT_DIR", raising=False)
    monkeypatch.setattr(settings, "COLAB_DRIVE", tmp_path / "drive" / "MyDrive")
    assert settings.checkpoint_dir() == tmp_path / "cache" / "checkpoints"    # no Drive mounted
    monkeypatch.setitem(sys.modules, "google.colab", types.ModuleType("google.colab"))
    with pytest.warns(UserWarning, match="Google Drive is not mounted.*drive.mount"):
        assert settings.checkpoint_dir() == tmp_path / "cache" / "checkpoints"  # on Colab: says how to keep them
    (tmp_path / "drive" / "MyDrive").mkdir(parents=True)                       # Colab, Drive mounted
    assert settings.checkpoint_dir() == tmp_path / "drive" / "MyDrive" / "course_lib" / "checkpoints"
    assert settings.checkpoint_dir().is_dir()
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "mine"))        # the variable wins
    assert settings.checkpoint_dir() == tmp_path / "mine" and (tmp_path / "mine").is_dir()


def test_seed_everything_repeats_numpy_and_torch():
    settings.seed_everything(3)
    first = np.random.rand(3), torch.rand(3)
    settings.seed_everything(3)
    second = np.random.rand(3), torch.rand(3)
    np.testing.assert_array_equal(first[0], second[0])
    assert torch.equal(first[1], second[1])


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.delenv("COURSE_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)


def test_device_falls_back_to_cpu(no_gpu):
    assert settings.get_device() == torch.device("cpu")
    assert settings.describe_device("cpu").startswith("cpu (")


def test_device_prefers_cuda_then_mps(no_gpu, monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert settings.get_device() == torch.device("mps")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert settings.get_device() == torch.device("cuda")
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    assert settings.get_device() == torch.device("cpu")
    assert settings.get_device("mps") == torch.device("mps")


def test_unavailable_or_unknown_device_is_a_clear_error(no_gpu, monkeypatch):
    with pytest.raises(RuntimeError, match="'cuda' was asked for .* available: cpu"):
        settings.get_device("cuda")
    monkeypatch.setenv("COURSE_DEVICE", "cuda:0")
    with pytest.raises(RuntimeError, match="Unset COURSE_DEVICE"):
        settings.get_device()
    with pytest.raises((ValueError, RuntimeError)):
        settings.get_device("tpu")
