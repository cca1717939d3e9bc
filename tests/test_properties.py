"""Property-based tests (Hypothesis) over course_lib's public API.

Each test draws arguments a student or instructor could pass, right or wrong: random shapes and
dtypes, empty and huge sizes, NaN and inf, wrong types, damaged files. Every call must end in one
of two ways: a result that is checked against what it should be, or one of course_lib's own errors
(``CourseError``) with a message. Any other exception fails the test, and so does a result given
where an error was due. The examples are the same on every run (tests/conftest.py's profile).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import warnings
from collections import Counter
from pathlib import Path
from unittest import mock

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import event, given, settings as hypothesis_settings, strategies as st  # noqa: E402
from hypothesis.extra import numpy as hnp  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from course_lib import data, landscapes, models, plots, results, settings, trainer, tuning, widgets  # noqa: E402
from course_lib.errors import (  # noqa: E402
    CourseError, DatasetNotFoundError, NonFiniteLossError, SettingError, SkippedFileWarning,
)

TRUE, FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")
ENV_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=6)
ANYTHING = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
                     st.lists(st.integers(-2, 3), max_size=3))
SMALL = st.one_of(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4),
                  st.sampled_from([-1, 0, 10**7, 2.0, 2.5, True, None, "3"]))
SEEDS = st.one_of(st.integers(0, 2**32 - 1), st.integers(-5, 2**32 + 5),
                  st.sampled_from([0, 2**32 - 1, 1.5, 3.0, "7", True, None]))


def outcome(call, *args, **kwargs):
    """(result, None), or (None, the CourseError raised); any other exception fails the test."""
    try:
        result = call(*args, **kwargs)
    except CourseError as err:
        assert str(err).strip(), f"{type(err).__name__} without a message"
        event(f"{getattr(call, '__name__', 'call')}: {type(err).__name__}")
        return None, err
    event(f"{getattr(call, '__name__', 'call')}: a result")
    return result, None


def valid_seed(seed) -> bool:
    return isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and 0 <= seed < 2**32


@pytest.fixture(autouse=True, scope="module")
def isolated(tmp_path_factory):
    """CPU (one thread: tiny models), empty data and cache folders, no downloads, fast mode off."""
    root = tmp_path_factory.mktemp("properties")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COURSE_DEVICE", "cpu")
        patch.setenv("COURSE_DATA_DIR", str(root / "data"))
        patch.setenv("COURSE_CACHE_DIR", str(root / "cache"))
        patch.setenv("COURSE_DOWNLOAD", "0")
        patch.delenv("COURSE_FAST", raising=False)
        yield
    torch.set_num_threads(threads)


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------
@hypothesis_settings(max_examples=60)
@given(st.one_of(ENV_TEXT, st.sampled_from(["1", "0", " Yes ", "OFF", "maybe", "2", "", "tRuE"])))
def test_switches_are_on_off_default_or_a_setting_error(value):
    with mock.patch.dict(os.environ, {"COURSE_FAST": value, "COURSE_DOWNLOAD": value}):
        for read, variable, default in ((settings.is_fast, "COURSE_FAST", False),
                                        (settings.downloads_allowed, "COURSE_DOWNLOAD", True)):
            result, err = outcome(read)
            word = value.strip().lower()
            if word in TRUE or word in FALSE or not word:
                assert result is (word in TRUE if word else default)
            else:
                assert isinstance(err, SettingError) and variable in str(err) and repr(value) in str(err)


@hypothesis_settings(max_examples=60)
@given(preferred=st.one_of(st.none(), st.integers(-1, 2), ENV_TEXT, st.just(torch.device("cpu")),
                           st.sampled_from(["cpu", " CPU", "cuda", "mps", "cuda:0", "cpu:1", "tpu", "xla", ""])),
       variable=st.one_of(st.none(), ENV_TEXT, st.sampled_from(["cpu", "tpu", "cuda:1", "mps"])))
def test_devices_are_available_ones_or_a_clear_error(preferred, variable):
    available = {"cpu", *["cuda"] * torch.cuda.is_available(), *["mps"] * torch.backends.mps.is_available()}
    environment = {"COURSE_DEVICE": variable} if variable is not None else {}
    with mock.patch.dict(os.environ, environment):
        if variable is None:
            os.environ.pop("COURSE_DEVICE", None)
        device, err = outcome(settings.get_device, preferred)
    if err is None:
        assert isinstance(device, torch.device) and device.type in available


@hypothesis_settings(max_examples=60)
@given(SEEDS)
def test_seeds_are_accepted_exactly_when_numpy_and_scikit_learn_can_use_them(seed):
    _, err = outcome(settings.seed_everything, seed)
    assert (err is None) == valid_seed(seed)
    if err is None:
        first = np.random.rand(2), torch.rand(2)
        settings.seed_everything(seed)
        assert np.array_equal(first[0], np.random.rand(2)) and torch.equal(first[1], torch.rand(2))


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
@st.composite
def images_with_labels(draw):
    """(x, y, class_names): mostly consistent, sometimes with one mistake."""
    n = draw(st.integers(0, 5))
    wrong = draw(st.sampled_from([None] * 6 + ["names", "x", "y"]))                   # mostly right
    names = draw(st.lists(st.text(max_size=3), min_size=1, max_size=4) if wrong != "names"
                 else st.one_of(st.text(max_size=3), st.none(), st.just([])))
    x = draw(hnp.arrays(st.sampled_from([np.uint8, np.float32]),
                        st.tuples(st.just(n), st.integers(1, 3), st.integers(1, 3)))
             if wrong != "x" else hnp.arrays(st.sampled_from([np.uint8, np.int64, np.float32, np.bool_, np.complex64]),
                                             hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=4)))
    top = len(names) if isinstance(names, list) else 3
    y = draw(hnp.arrays(np.int64, n, elements=st.integers(0, max(top - 1, 0))) if wrong != "y"
             else hnp.arrays(st.sampled_from([np.int64, np.uint8, np.int8, np.float64, np.bool_]),
                             hnp.array_shapes(min_dims=0, max_dims=2, min_side=0, max_side=5)))
    return x, y, names


@hypothesis_settings(max_examples=80)
@given(images_with_labels())
def test_image_arrays_hold_one_valid_label_per_image_or_refuse(arrays):
    x, y, names = arrays
    result, err = outcome(data.ImageArrays, x, y, names)
    if err is None:
        assert result.y.dtype == np.int64 and result.y.ndim == 1 and len(result.x) == len(result.y) == len(x)
        # equal_nan: float images may hold NaN, which ImageArrays keeps as it is (NaN != NaN)
        assert np.array_equal(result.x, x, equal_nan=True) and np.array_equal(result.y, y)
        assert len(result.y) == 0 or (result.y.min() >= 0 and result.y.max() < len(result.class_names))


ENOUGH_LABELS = st.lists(st.integers(0, 2), min_size=20, max_size=60)
LABELS = st.one_of(ENOUGH_LABELS, ENOUGH_LABELS, st.lists(st.integers(0, 4), max_size=12))


def indexed(labels) -> data.ImageArrays:
    """Images that are their own index (as notebook 05 splits), so parts can be traced back."""
    return data.ImageArrays(np.arange(len(labels)), np.array(labels, dtype=np.int64), list("abcde"))


@hypothesis_settings(max_examples=80)
@given(labels=LABELS, seed=SEEDS,
       n=st.one_of(st.none(), st.integers(3, 45), st.integers(-2, 45), st.sampled_from([2.5, "10", True])))
def test_samples_are_stratified_subsets_or_refused(labels, n, seed):
    whole = indexed(labels)
    part, err = outcome(whole.sample, n, seed)
    if err is None:
        expected = len(whole) if n is None or n >= len(whole) else n
        assert len(part) == expected and len(set(part.x)) == expected
        assert np.array_equal(part.y, whole.y[part.x])
        for label, count in Counter(labels).items():
            assert abs(np.sum(part.y == label) - expected * count / len(whole)) <= 1
    else:
        small = isinstance(n, int) and not isinstance(n, bool) and 1 <= n < len(whole)
        assert not (small and valid_seed(seed) and n >= len(set(labels)) and len(whole) - n >= len(set(labels))
                    and min(Counter(labels).values()) >= 2), f"refused a sample that can be drawn: {err}"


VALID_FRACTIONS = st.sampled_from([(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (1 / 3, 1 / 3, 1 / 3), (0.5, 0.25, 0.25)])


@hypothesis_settings(max_examples=80)
@given(labels=LABELS, fractions=st.sampled_from(["ok"] * 4 + ["list", "nan", "other"]).flatmap(lambda kind: {
           "ok": VALID_FRACTIONS, "list": st.lists(st.floats(-1, 2), max_size=4),
           "nan": st.tuples(st.floats(allow_nan=True), st.just(0.1), st.just(0.1)),
           "other": st.sampled_from(["abc", None, 0.8])}[kind]), seed=SEEDS)
def test_splits_partition_the_data_in_the_fractions_asked_or_refuse(labels, fractions, seed):
    whole = indexed(labels)
    parts, err = outcome(data.split, whole, fractions, seed)
    if err is None:
        pieces = [parts.train.x, parts.val.x, parts.test.x]
        assert np.array_equal(np.sort(np.concatenate(pieces)), np.arange(len(whole)))        # disjoint and complete
        for piece, fraction in zip(pieces, fractions):
            assert abs(len(piece) - fraction * len(whole)) <= 2


IMAGE_KINDS = st.sampled_from([("RGB", "png"), ("RGBA", "png"), ("L", "png"), ("P", "png"), ("I;16", "png"),
                               ("LA", "png"), ("1", "png"), ("RGB", "jpg"), ("L", "jpg"), ("CMYK", "jpg"),
                               ("RGB", "bmp"), ("P", "gif"), ("RGBA", "webp")])
FILES = st.lists(st.tuples(
    st.sampled_from(["cat", "dog", "emu"]),
    st.one_of(st.tuples(st.just("image"), IMAGE_KINDS, st.integers(1, 7), st.integers(1, 7)),
              st.tuples(st.just("junk"), st.binary(max_size=40), st.sampled_from(["jpg", "png", "txt", "jpeg"])))),
    max_size=7)


def write_file(path: Path, kind) -> bool:
    """Write an image of the given mode and format, or junk; True for an image."""
    if kind[0] == "junk":
        path.with_suffix("." + kind[2]).write_bytes(kind[1])
        return False
    (mode, suffix), width, height = kind[1:]
    rng = np.random.default_rng(width * 10 + height)
    image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).convert(mode)
    image.save(path.with_suffix("." + suffix))
    return True


@hypothesis_settings(max_examples=40)
@given(files=FILES, image_size=st.one_of(st.none(), st.integers(-1, 9), st.tuples(st.integers(0, 9), st.integers(1, 9)),
                                         st.sampled_from(["8", 4.0])))
def test_image_folders_load_every_readable_image_and_name_the_rest(files, image_size):
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ, {"COURSE_CACHE_DIR": folder + "/cache"}):
        root = Path(folder) / "set"
        images, junk, sizes = Counter(), [], set()
        for i, (label, kind) in enumerate(files):
            (root / label).mkdir(parents=True, exist_ok=True)
            if write_file(root / label / f"{i}", kind):
                images[label] += 1
                sizes.add(kind[2:])
            else:
                junk.append(f"{label}/{i}.{kind[2]}")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            loaded, err = outcome(data.load_image_folder, root if files else Path(folder) / "nowhere",
                                  image_size=image_size)
        said = " ".join(str(w.message) for w in caught if issubclass(w.category, SkippedFileWarning))
    size_ok = image_size is None or (isinstance(image_size, int) and image_size >= 1) or (
        isinstance(image_size, tuple) and min(image_size) >= 1)
    if err is None:
        assert loaded.x.dtype == np.uint8 and loaded.x.ndim == 4 and loaded.x.shape[-1] == 3
        assert Counter(loaded.class_names[label] for label in loaded.y) == images
        if image_size is not None:
            side = (image_size, image_size) if isinstance(image_size, int) else image_size
            assert loaded.x.shape[1:3] == side
        for name in junk:
            assert name in said, f"{name} left out without a word: {said}"
    elif images and size_ok and (image_size is not None or len(sizes) == 1):
        pytest.fail(f"refused {dict(images)} readable images of sizes {sizes}: {err}")
    elif not images:
        assert isinstance(err, DatasetNotFoundError) or not size_ok


# ----------------------------------------------------------------------------------------------
# trainer
# ----------------------------------------------------------------------------------------------
SIDE = st.integers(1, 5)
IMAGE_BATCHES = st.one_of(
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), SIDE, SIDE, st.sampled_from([1, 3]))),          # (N, H, W, C)
    hnp.arrays(np.uint8, st.tuples(st.integers(1, 9), SIDE, SIDE)),                                      # (N, H, W)
    hnp.arrays(np.float32, st.tuples(st.integers(1, 9), st.sampled_from([1, 3]), SIDE, SIDE),
               elements=st.floats(-2, 2, width=32)),                                                     # (N, C, H, W)
    hnp.arrays(st.sampled_from([np.uint8, np.float32, np.float64, np.int32, np.bool_]),
               hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=5)))                        # anything


@hypothesis_settings(max_examples=80)
@given(x=IMAGE_BATCHES, labels=st.sampled_from(["ok", "ok", "float", "short", "fraction", "one-hot"]),
       batch_size=st.one_of(st.integers(1, 7), st.integers(-1, 7), st.sampled_from([10**9, 2.0, None, "4"])),
       crop_padding=st.one_of(st.just(0), st.integers(-1, 3)), drop_last=st.booleans(),
       seed=st.one_of(st.none(), SEEDS))
def test_device_loaders_give_every_sample_once_in_order_or_refuse(x, labels, batch_size, crop_padding, drop_last, seed):
    n = len(x)
    y = {"ok": np.arange(n) % 3, "short": np.arange(max(n - 1, 0)), "float": np.arange(n) * 1.0,
         "fraction": np.arange(n) + 0.5, "one-hot": np.eye(max(n, 1))[:n]}[labels]
    loader, err = outcome(trainer.DeviceLoader, x, y, batch_size, crop_padding=crop_padding, drop_last=drop_last,
                          seed=seed)
    if err is not None:
        return
    batches = list(loader)
    expected = n // batch_size * batch_size if drop_last else n
    assert len(batches) == len(loader) and sum(len(yb) for _, yb in batches) == expected
    if expected:
        xs = torch.cat([xb for xb, _ in batches])
        assert xs.dtype == torch.float32 and xs.ndim == 4 and bool(torch.isfinite(xs).all())
        assert torch.equal(torch.cat([yb for _, yb in batches]), torch.as_tensor(y[:expected]).long())
        if x.dtype == np.uint8 and not crop_padding:
            stored = x[:expected] if x.ndim == 4 else x[:expected, ..., None]
            assert torch.allclose(xs, torch.as_tensor(stored.transpose(0, 3, 1, 2) / 255, dtype=torch.float32))
    assert labels in ("ok", "float") and not (x.dtype.kind == "f" and not np.isfinite(x).all())


def tiny_model(kind, channels, height, width, outputs):
    torch.manual_seed(0)
    if kind == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(channels * height * width, 3), nn.ReLU(), nn.Linear(3, outputs))
    return nn.Sequential(nn.Conv2d(channels, 2, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2, outputs))


@hypothesis_settings(max_examples=60)
@given(image=st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6)),
       built_for=st.one_of(st.none(), st.none(), st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(1, 6))),
       kind=st.sampled_from(["mlp", "conv"]), outputs=st.integers(1, 4), top_label=st.integers(0, 5),
       n=st.one_of(st.integers(1, 12), st.just(0)),
       epochs=st.one_of(st.integers(0, 2), st.integers(1, 2), st.sampled_from([-1, 1.0, "2", None])),
       wrap=st.sampled_from(["DeviceLoader", "DeviceLoader", "DataLoader", "DataLoader", "list of batches", "pair",
                             "array"]),
       nan=st.sampled_from([False, False, False, True]), lr=st.sampled_from([0.1, 0.1, 0.1, 1e37]))
def test_fit_trains_or_says_why_not(image, built_for, kind, outputs, top_label, n, epochs, wrap, nan, lr):
    built_for = built_for or image
    model = tiny_model(kind, *built_for, outputs)
    rng = np.random.default_rng(n)
    x = rng.random((n, *image), dtype=np.float32)
    if nan and n:
        x[n // 2, 0, 0, 0] = np.nan
    y = np.arange(n) % (top_label + 1)
    xt, yt = torch.as_tensor(x), torch.as_tensor(y)
    train = {"DeviceLoader": lambda: trainer.DeviceLoader(x, y, 4),
             "DataLoader": lambda: torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xt, yt), 4),
             "list of batches": lambda: [(xt[i:i + 4], yt[i:i + 4]) for i in range(0, n, 4)],
             "pair": lambda: (x, y), "array": lambda: x}[wrap]
    history, err = outcome(lambda: trainer.fit(model, train(), None, epochs, torch.optim.SGD(model.parameters(), lr),
                                               progress=False))
    if err is None:
        assert len(history) == epochs and all(math.isfinite(v) for v in history.train_loss)
        assert all(0 <= a <= 1 for a in history.train_acc)
        if epochs and n:
            fits = (np.prod(image) == np.prod(built_for)) if kind == "mlp" else image[0] == built_for[0]
            assert fits and y.max() < max(outputs, 2) and not nan, "trained on data the model cannot take"
    if isinstance(err, NonFiniteLossError):
        assert "epoch" in str(err) and "step" in str(err)


CHECKPOINT_MODELS = {
    "MLP1 3": lambda: models.MLP1(in_channels=1, image_size=4, hidden=3, num_classes=2),
    "MLP1 5": lambda: models.MLP1(in_channels=1, image_size=4, hidden=5, num_classes=2),
    "FastCIFARNet 2-2": lambda: models.FastCIFARNet(in_channels=1, widths=(2, 2), num_classes=2),
    "FastCIFARNet 2-3": lambda: models.FastCIFARNet(in_channels=1, widths=(2, 3), num_classes=2),
    "Sequential": lambda: nn.Sequential(nn.Flatten(), nn.Linear(16, 2)),
}


@hypothesis_settings(max_examples=60)
@given(saved=st.sampled_from(sorted(CHECKPOINT_MODELS)),
       loaded=st.sampled_from(["the same"] * 3 + sorted(CHECKPOINT_MODELS)),
       damage=st.sampled_from([None, None, "cut", "flip", "flip", "junk", "missing"]).flatmap(lambda kind: {
           None: st.none(), "cut": st.tuples(st.just("cut"), st.floats(0, 1)),
           "flip": st.tuples(st.just("flip"), st.floats(0, 1), st.integers(0, 7)),
           "junk": st.tuples(st.just("junk"), st.binary(max_size=64)), "missing": st.just(("missing",))}[kind]),
       optimizer=st.booleans())
def test_checkpoints_load_exactly_what_was_saved_or_change_nothing(saved, loaded, damage, optimizer):
    loaded = saved if loaded == "the same" else loaded
    torch.manual_seed(1)
    source = CHECKPOINT_MODELS[saved]()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "model.pt"
        trainer.save_checkpoint(path, source, torch.optim.SGD(source.parameters(), 0.1) if optimizer else None)
        raw = path.read_bytes()
        if damage is not None and damage[0] == "cut":
            path.write_bytes(raw[: int(damage[1] * len(raw))])
        elif damage is not None and damage[0] == "flip":
            flipped = bytearray(raw)
            flipped[min(int(damage[1] * len(raw)), len(raw) - 1)] ^= 1 << damage[2]
            path.write_bytes(bytes(flipped))
        elif damage is not None and damage[0] == "junk":
            path.write_bytes(damage[1])
        elif damage is not None:
            path.unlink()
        target = CHECKPOINT_MODELS[loaded]()
        before = {k: v.clone() for k, v in target.state_dict().items()}
        _, err = outcome(trainer.load_checkpoint, path, target,
                         torch.optim.SGD(target.parameters(), 0.1) if optimizer else None)
    expected = source.state_dict() if err is None else before
    assert target.state_dict().keys() == expected.keys()
    assert all(torch.equal(v, expected[k]) for k, v in target.state_dict().items())
    if saved != loaded:
        assert err is not None


@hypothesis_settings(max_examples=50)
@given(lr_min=st.one_of(st.sampled_from([1e-5, 1e-3]), st.floats(1e-6, 0.1), st.floats(-1, 2),
                        st.sampled_from([0.0, float("nan")])),
       lr_max=st.one_of(st.sampled_from([1.0, 10.0]), st.floats(0.2, 20), st.floats(-1, 20), st.just(float("inf"))),
       steps=st.one_of(st.none(), st.integers(2, 12), st.integers(2, 12), st.integers(-1, 12),
                       st.sampled_from([2.0, "5"])),
       smoothing=st.one_of(st.just(0.9), st.floats(0, 0.99), st.floats(-0.5, 1.5)),
       stop_factor=st.one_of(st.just(4.0), st.floats(1.5, 10), st.floats(0, 10)))
def test_range_tests_sweep_from_lr_min_upwards_or_refuse(lr_min, lr_max, steps, smoothing, stop_factor):
    model = tiny_model("mlp", 1, 4, 4, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    x = np.random.default_rng(0).integers(0, 256, (24, 4, 4), dtype=np.uint8)
    loader = trainer.DeviceLoader(x, np.arange(24) % 3, 4)
    result, err = outcome(trainer.lr_range_test, model, loader, optimizer, lr_min, lr_max, steps,
                          stop_factor=stop_factor, smoothing=smoothing)
    if err is None:
        assert 0 < lr_min < lr_max < math.inf and 0 <= smoothing < 1 and stop_factor > 1
        assert 1 <= len(result.lrs) <= (steps or len(loader)) and result.lrs[0] == pytest.approx(lr_min)
        assert np.all(np.diff(result.lrs) > 0) and np.all(np.isfinite(result.losses))
        assert optimizer.param_groups[0]["lr"] == 0.01


@hypothesis_settings(max_examples=40)
@given(key=st.sampled_from(["val_acc", "train_loss", "lr"] * 2 + ["val_accuracy", "seconds", None, 3, ["lr"]]),
       values=st.sampled_from([True] * 4 + [False]).flatmap(
           lambda full: st.lists(st.floats(0, 1), min_size=1, max_size=3) if full else st.just([])))
def test_history_best_is_the_best_value_or_a_clear_error(key, values):
    history = trainer.History(train_loss=list(values), val_acc=list(values), lr=list(values))
    best, err = outcome(history.best, key)
    if err is None:
        assert best == (max if key.endswith("acc") else min)(values)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
@hypothesis_settings(max_examples=80)
@given(kind=st.sampled_from(["MLP1", "MLP2", "PlainCNN", "SimpleCNN", "DeepCNN", "TwoBranchNet",
                             "FastCIFARNet"]),
       in_channels=SMALL, num_classes=SMALL,
       size=st.one_of(st.integers(1, 6), st.tuples(st.integers(1, 6), st.integers(1, 6)),
                      st.sampled_from([0, -1, 10**5, (0, 3), (2, 2, 2)])),
       width=st.one_of(st.integers(1, 6), st.sampled_from([-1, 0, 10**6, 2.5])),
       extra=st.sampled_from(["none"] * 5 + ["tuple", "dropout", "bad depth"]))
def test_models_build_and_give_one_logit_row_per_image_or_refuse(kind, in_channels, num_classes, size, width, extra):
    kwargs = {"in_channels": in_channels, "num_classes": num_classes}
    if kind in ("MLP1", "TwoBranchNet"):
        kwargs["hidden"] = width
    if kind in ("MLP1", "MLP2"):
        kwargs["image_size"] = size
    if kind == "MLP2":
        kwargs["hidden"] = (width, 3) if extra == "tuple" else width
    if kind in ("PlainCNN", "DeepCNN"):
        kwargs["width"] = width
    if kind == "PlainCNN":
        kwargs["depth"] = 7 if extra == "bad depth" else 3
    if kind == "DeepCNN" and extra == "dropout":
        kwargs["dropout"] = 1.5
    if kind == "FastCIFARNet":
        kwargs["widths"] = (width, 2) if extra != "tuple" else width
    model, err = outcome(getattr(models, kind), **kwargs)
    if err is not None:
        return
    side = (size, size) if isinstance(size, int) else size
    x = torch.zeros(2, in_channels, *(side if kind.startswith("MLP") else (16, 16)))
    with torch.no_grad():
        assert model.eval()(x).shape == (2, num_classes)
    assert models.count_params(model) > 0


@hypothesis_settings(max_examples=40)
@given(shape=st.one_of(st.tuples(st.just(1), st.integers(4, 12), st.integers(4, 12)),
                       st.tuples(st.integers(-1, 3), st.integers(0, 9), st.integers(0, 9)),
                       st.lists(st.integers(1, 4), max_size=4), st.just((3, 10**5, 10**5)), st.just("3x32x32")))
def test_count_macs_counts_or_names_the_input_shape(shape):
    model = models.SimpleCNN(in_channels=1)
    macs, err = outcome(models.count_macs, model, shape)
    if err is None:
        assert isinstance(macs, int) and macs > 0 and shape[0] == 1 and len(shape) == 3
    else:
        assert "input_shape" in str(err) or "model cannot take" in str(err)


# ----------------------------------------------------------------------------------------------
# plots, widgets, landscapes, results
# ----------------------------------------------------------------------------------------------
@hypothesis_settings(max_examples=30)
@given(images=st.one_of(IMAGE_BATCHES, hnp.arrays(st.sampled_from([np.float64, np.bool_, np.int16]), st.tuples(
           st.integers(0, 6), SIDE, SIDE, st.sampled_from([1, 2, 3, 4])))),
       labels=st.sampled_from(["none", "fit", "fit", "one more", "negative", "beyond the names"]),
       class_names=st.sampled_from([None, ["a", "b", "c"], ["a", "b", "c"], "abc"]),
       ncols=st.one_of(st.integers(1, 5), st.sampled_from([-1, 0, 2.5])))
def test_image_grids_show_every_image_or_refuse(images, labels, class_names, ncols):
    n = len(images)
    labels = {"none": None, "fit": np.arange(n) % 3, "one more": np.arange(n + 1) % 3, "negative": -np.ones(n),
              "beyond the names": np.full(n, 3)}[labels]
    fig, err = outcome(plots.show_images, images, labels, class_names, ncols)
    if err is None:
        shown = sum(bool(ax.images) for ax in fig.axes)
        assert shown == len(images) and len(fig.axes) % ncols == 0
        if labels is not None and n:
            assert len(labels) == n and min(labels) >= 0 and (class_names is None or max(labels) < len(class_names))
        plt.close(fig)


@st.composite
def targets_and_predictions(draw):
    classes = draw(st.integers(1, 4))
    n = draw(st.integers(0, 8))
    wrong = draw(st.sampled_from([None] * 4 + ["label", "length"]))
    label = st.integers(0, classes - 1) if wrong != "label" else st.integers(-1, 4)
    targets = draw(st.lists(label, min_size=n, max_size=n))
    predictions = draw(st.lists(label, min_size=n, max_size=n) if wrong != "length" else st.lists(label, max_size=8))
    return targets, predictions, classes


@hypothesis_settings(max_examples=30)
@given(targets_and_predictions())
def test_confusion_matrices_count_every_sample_or_refuse(drawn):
    targets, predictions, classes = drawn
    fig, err = outcome(plots.plot_confusion_matrix, targets, predictions, [str(c) for c in range(classes)],
                       normalize=False)
    if err is None:
        counts = np.zeros((classes, classes))
        for t, p in zip(targets, predictions):
            counts[t, p] += 1
        np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), counts)
        plt.close(fig)
    else:
        assert (len(targets) != len(predictions) or not targets
                or min(targets + predictions) < 0 or max(targets + predictions) >= classes)


@hypothesis_settings(max_examples=60)
@given(images=st.one_of(IMAGE_BATCHES, hnp.arrays(st.sampled_from([np.int32, np.complex64]),
                                                  hnp.array_shapes(min_dims=1, max_dims=5, min_side=0, max_side=4))))
def test_grayscale_gives_n_single_channel_images_or_refuses(images):
    gray, err = outcome(widgets.grayscale, images)
    if err is None:
        assert gray.ndim == 4 and gray.shape[:2] == (len(images), 1) and gray.dtype == np.float64
        if images.dtype == np.uint8 and gray.size:
            assert 0 <= gray.min() and gray.max() <= 1


@hypothesis_settings(max_examples=60)
@given(a=st.floats(allow_nan=True, allow_infinity=True), b=st.floats(-10, 1e3),
       w=hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3),
                    elements=st.floats(-10, 10)))
def test_landscapes_give_the_formula_or_refuse(a, b, w):
    loss, err = outcome(landscapes.Quadratic, a, b)
    if err is not None:
        assert not (math.isfinite(a) and a > 0 and b > 0)
        return
    value, err = outcome(loss, w)
    if err is None:
        np.testing.assert_allclose(value, (a * w[..., 0] ** 2 + b * w[..., 1] ** 2) / 2)
    else:
        assert w.ndim == 0 or w.shape[-1] != 2
    grad, err = outcome(loss.grad, w)
    assert (err is None) == (w.shape == (2,))
    shown, err = outcome(landscapes.finite_part, w)
    if err is None:
        assert np.array_equal(shown, w.reshape(-1, 2)[: len(shown)])


@hypothesis_settings(max_examples=60)
@given(name=st.one_of(st.sampled_from(["03_building_cnns", "a/b", "", ".."]), st.text(max_size=4)),
       numbers=st.dictionaries(st.text(max_size=3), st.one_of(
           st.floats(allow_nan=True, allow_infinity=True), st.integers(-5, 5), st.booleans(), st.text(max_size=2),
           st.sampled_from([np.float32(0.25), np.int64(3), np.float64("nan")])), max_size=4))
def test_results_are_written_as_given_or_refused(name, numbers):
    with tempfile.TemporaryDirectory() as folder, mock.patch.dict(os.environ, {"COURSE_RESULTS_DIR": folder}):
        path, err = outcome(results.write_results, name, numbers)
        if err is None:
            assert json.loads(path.read_text()) == pytest.approx({k: float(v) for k, v in numbers.items()})
            assert all(not isinstance(v, bool) and math.isfinite(v) for v in numbers.values())


# ----------------------------------------------------------------------------------------------
# tuning
# ----------------------------------------------------------------------------------------------
@hypothesis_settings(max_examples=30)
@given(name=st.sampled_from(["ok"] * 4 + ["text", "anything"]).flatmap(
           lambda kind: {"ok": st.text("abc-_1", min_size=1, max_size=5), "text": st.text(max_size=5),
                         "anything": ANYTHING}[kind]),
       direction=st.sampled_from(["maximize", "minimize"] * 3 + ["up", None]),
       n_trials=st.one_of(st.integers(0, 4), st.integers(-2, 4), st.sampled_from([2.5, "3", None])),
       already=st.integers(0, 2))
def test_studies_hold_the_trials_asked_for_or_refuse(name, direction, n_trials, already):
    storage = optuna.storages.InMemoryStorage()
    with contextlib.redirect_stdout(io.StringIO()):
        study, err = outcome(tuning.open_study, name, storage=storage, direction=direction)
        if err is not None:
            assert not (isinstance(name, str) and name.strip() and direction in ("maximize", "minimize"))
            return
        assert study.study_name == name and tuning.study_name(name, 1).startswith(name + "-")
        objective = lambda trial: trial.suggest_float("x", 0, 1)  # noqa: E731
        tuning.optimize(study, objective, already, progress=False)
        _, err = outcome(tuning.optimize, study, objective, n_trials, progress=False)
    if err is None:
        assert len(tuning.finished_trials(study)) == max(n_trials, already)


@hypothesis_settings(max_examples=12)
@given(trials=st.sampled_from(["2", "0", "-1", "x"]), seed=st.sampled_from(["1", "-3", "4294967296", "z", None]),
       heartbeat=st.sampled_from(["5", "0", "nan", "inf", "-1"]), sampler=st.sampled_from(["tpe", "random", "grid"]))
def test_the_tune_command_runs_or_exits_with_a_usage_message(trials, seed, heartbeat, sampler):
    objective = Path(__file__).with_name("tuning_objectives.py")
    with tempfile.TemporaryDirectory() as folder:
        argv = ["prop", "--objective", f"{objective}:quadratic", "--trials", trials, "--heartbeat", heartbeat,
                "--sampler", sampler, "--storage", f"sqlite:///{folder}/studies.db"]
        argv += ["--seed", seed] if seed else []
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                tuning.main(argv)
                code = 0
            except SystemExit as exit_:
                code = exit_.code
    valid = (trials == "2" and heartbeat == "5" and sampler != "grid" and seed in (None, "1"))
    assert code == (0 if valid else 2), err.getvalue()
    if valid:
        assert "2 finished" in out.getvalue()
    else:
        assert "error:" in err.getvalue()
