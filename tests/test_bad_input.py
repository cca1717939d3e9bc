"""Every mistake of issue 15, one test each: course_lib's own error type, and the words that say what
was wrong, the value given, and what to do. Small generated data and scikit-learn's digits only."""
from __future__ import annotations

import io
import json
import math
import tarfile
import warnings
import zipfile

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

from course_lib import data, landscapes, models, plots, results, settings, trainer, tuning, widgets  # noqa: E402
from course_lib.errors import (  # noqa: E402
    CheckpointError, CourseError, CourseFileNotFoundError, CourseRuntimeError, CourseTypeError, CourseValueError,
    DatasetNotFoundError, FolderError, NonFiniteLossError, SettingError, SkippedFileWarning,
)

DIGITS = data.load_digits()


@pytest.fixture(autouse=True)
def on_cpu(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "cpu")
    monkeypatch.delenv("COURSE_FAST", raising=False)


def digits_loader(n=256, batch_size=64, **kwargs):
    return trainer.DeviceLoader(DIGITS.x[:n], DIGITS.y[:n], batch_size, **kwargs)


def small_mlp():
    return models.MLP1(in_channels=1, image_size=8, hidden=16)


def sgd(model, lr=0.1):
    return torch.optim.SGD(model.parameters(), lr=lr)


def raises(kind, *words):
    """pytest.raises(kind) that also checks every word of ``words`` is in the message."""
    class Check:
        def __enter__(self):
            self.context = pytest.raises(kind)
            self.info = self.context.__enter__()
            return self.info

        def __exit__(self, *exc):
            handled = self.context.__exit__(*exc)
            message = str(self.info.value)
            assert isinstance(self.info.value, CourseError), f"{type(self.info.value).__name__}: {message}"
            for word in words:
                assert word in message, f"{word!r} not in: {message}"
            return handled
    return Check()


# ----------------------------------------------------------------------------------------------
# settings
# ----------------------------------------------------------------------------------------------
def test_course_fast_maybe_is_an_error_naming_the_variable_and_the_values(monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "maybe")
    with raises(SettingError, "COURSE_FAST", "'maybe'", "1, true, yes, on", "0, false, no, off"):
        settings.is_fast()
    for value, fast in (("off", False), ("No", False), (" TRUE ", True), ("", False)):
        monkeypatch.setenv("COURSE_FAST", value)
        assert settings.is_fast() is fast


def test_course_download_accepts_switch_words_and_rejects_others(monkeypatch, isolated_dirs):
    for value, allowed in (("0", False), ("no", False), ("false", False), ("1", True), ("", True)):
        monkeypatch.setenv("COURSE_DOWNLOAD", value)
        assert settings.downloads_allowed() is allowed
    monkeypatch.setenv("COURSE_DOWNLOAD", "off")
    with pytest.raises(DatasetNotFoundError, match="turned off by COURSE_DOWNLOAD"):
        data.load_mnist("test")
    monkeypatch.setenv("COURSE_DOWNLOAD", "perhaps")
    with raises(SettingError, "COURSE_DOWNLOAD", "'perhaps'"):
        data.load_mnist("test")


def test_course_device_tpu_names_the_variable_and_the_devices(monkeypatch):
    monkeypatch.setenv("COURSE_DEVICE", "tpu")
    with raises(SettingError, "COURSE_DEVICE", "'tpu'", "cuda, mps, cpu", "available here: cpu"):
        settings.get_device()
    with raises(CourseValueError, "device argument", "'tpu'"):
        settings.get_device("tpu")
    with raises(CourseTypeError, "device must be a name"):
        settings.get_device(3)


def test_a_gpu_index_beyond_the_machine_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with raises(CourseRuntimeError, "'cuda:3'", "1 CUDA device", "'cuda:0'"):
        settings.get_device("cuda:3")


@pytest.mark.parametrize("seed, kind", [(1.5, CourseTypeError), ("3", CourseTypeError), (True, CourseTypeError),
                                        (-1, CourseValueError), (2**32, CourseValueError)])
def test_seeds_must_be_whole_numbers_in_numpys_range(seed, kind):
    with raises(kind, "seed", str(seed)):
        settings.seed_everything(seed)
    with raises(kind, "seed"):
        data.split(DIGITS, seed=seed)
    with raises(kind, "seed"):
        DIGITS.sample(100, seed=seed)
    settings.seed_everything(np.int64(3))                                 # NumPy integers are fine


def test_folder_settings_that_name_a_file(monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "a-file"))
    with raises(FolderError, "COURSE_CHECKPOINT_DIR", "a-file", "folder"):
        settings.checkpoint_dir()
    monkeypatch.setenv("COURSE_CACHE_DIR", str(tmp_path / "a-file" / "below"))
    with pytest.raises(OSError):                                          # still an OSError for fallbacks
        settings.cache_dir()


# ----------------------------------------------------------------------------------------------
# data: ImageArrays, splits, named datasets
# ----------------------------------------------------------------------------------------------
def test_image_arrays_reject_labels_that_do_not_fit():
    x = np.zeros((4, 8, 8), np.uint8)
    with raises(CourseValueError, "labels run from 0 to 5", "2 class names"):
        data.ImageArrays(x, np.array([0, 1, 5, 1]), ["a", "b"])
    with raises(CourseTypeError, "integer class indices", "float64"):
        data.ImageArrays(x, np.array([0.0, 1.0, 0.5, 1.0]), ["a", "b"])
    with raises(CourseValueError, "4 images but 3 labels"):
        data.ImageArrays(x, np.array([0, 1, 1]), ["a", "b"])
    with raises(CourseTypeError, "class_names"):
        data.ImageArrays(x, np.array([0, 1, 1, 0]), "ab")
    with raises(CourseTypeError, "data.x[2]", "data[2:2 + 1]"):
        DIGITS[2]
    with raises(CourseValueError, "cannot index 1797 images"):
        DIGITS[np.array([5000])]


def test_samples_and_splits_too_small_for_their_classes():
    with raises(CourseValueError, "cannot take a sample of 5 from 1797 images of 10 classes"):
        DIGITS.sample(5)
    with raises(CourseValueError, "n must be a whole number >= 1, got 0"):
        DIGITS.sample(0)
    with raises(CourseTypeError, "n must be a whole number", "2.5"):
        DIGITS.sample(2.5)
    with raises(CourseValueError, "three positive numbers that sum to 1"):
        data.split(DIGITS, (0.8, float("nan"), 0.2))
    with raises(CourseTypeError, "split takes ImageArrays"):
        data.split((DIGITS.x, DIGITS.y))
    tiny = DIGITS[np.flatnonzero(DIGITS.y < 2)[:12]]
    with raises(CourseValueError, "validation and test parts", "left of 12", "of 2 classes"):
        data.split(tiny, (0.8, 0.1, 0.1))


def test_named_datasets_check_their_arguments_before_loading(isolated_dirs):
    with raises(CourseValueError, "scheme", "'official', '80/10/10'", "'70/30'"):
        data.cifar10_splits("70/30")
    with raises(CourseValueError, "val_fraction", "1.5"):
        data.cifar10_splits(val_fraction=1.5)
    with raises(CourseValueError, "split", "'validation'"):
        data.load_mnist("validation")


def test_a_damaged_copy_is_named_and_the_next_place_tried(isolated_dirs):
    folder = isolated_dirs / "data" / "mnist"
    folder.mkdir(parents=True)
    (folder / "mnist_test.npz").write_bytes(b"not a zip file")
    with raises(DatasetNotFoundError, "mnist_test.npz is there but could not be read", "MNIST/raw"):
        data.load_mnist("test")


# ----------------------------------------------------------------------------------------------
# data: image folders (damaged files are left out with a warning; photos of any mode load as RGB)
# ----------------------------------------------------------------------------------------------
def png_bytes(image: Image.Image, format="PNG", **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **kwargs)
    return buffer.getvalue()


def class_tree(root, files: dict):
    """files: "class/name" -> bytes."""
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    return root


def good(value, size=(6, 4)):
    return png_bytes(Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)))


def test_one_corrupt_jpeg_is_left_out_and_named(isolated_dirs):
    jpeg = png_bytes(Image.fromarray(np.full((4, 6, 3), 200, np.uint8)), "JPEG")
    tree = class_tree(isolated_dirs / "pets", {
        "cat/0.png": good(10), "cat/1.png": good(11), "dog/0.png": good(20),
        "dog/broken.jpg": b"\xff\xd8\xff\xe0 this is not really a JPEG",
        "dog/truncated.jpg": jpeg[: len(jpeg) // 2],
        "dog/page.jpg": b"<html>an error page saved as .jpg</html>",
        "dog/notes.txt": b"a note",
    })
    with pytest.warns(SkippedFileWarning) as caught:
        loaded = data.load_image_folder(tree)
    message = str(caught[0].message)
    for name in ("dog/broken.jpg", "dog/truncated.jpg", "dog/page.jpg", "dog/notes.txt: not an image"):
        assert name in message, message
    assert loaded.class_names == ["cat", "dog"] and loaded.x.shape == (3, 4, 6, 3)
    np.testing.assert_array_equal(loaded.y, [0, 0, 1])
    with pytest.warns(SkippedFileWarning, match="dog/broken.jpg"):       # the cached load says so again
        again = data.load_image_folder(tree)
    np.testing.assert_array_equal(again.x, loaded.x)


def test_nothing_readable_left_is_a_clear_error(isolated_dirs):
    tree = class_tree(isolated_dirs / "bad", {"a/0.jpg": b"junk", "b/0.png": b"junk"})
    with raises(DatasetNotFoundError, "none of the 2 image files", "a/0.jpg", "b/0.png"):
        data.load_image_folder(tree)


def test_photos_of_any_mode_load_as_rgb_uint8(isolated_dirs):
    gradient = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    rgba = np.zeros((4, 6, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 255
    rgba[0, 0, 3] = 0                                                   # one transparent pixel
    palette = Image.fromarray(gradient).convert("P")
    palette.info["transparency"] = 0
    sixteen = Image.fromarray((gradient.astype(np.uint16) * 257)).convert("I;16")
    rotated = Image.fromarray(np.tile(np.arange(6, dtype=np.uint8)[None, :, None] * 40, (4, 1, 3)))
    exif = rotated.getexif()
    exif[0x0112] = 6                                                    # "rotate 90° clockwise to view"
    files = {
        "modes/gray.png": png_bytes(Image.fromarray(gradient)),
        "modes/rgba.png": png_bytes(Image.fromarray(rgba)),
        "modes/palette.png": png_bytes(palette, transparency=0),
        "modes/sixteen.png": png_bytes(sixteen),
        "modes/cmyk.jpg": png_bytes(Image.new("CMYK", (6, 4), (0, 255, 255, 0)), "JPEG", quality=100),
        "modes/rotated.jpg": png_bytes(rotated, "JPEG", exif=exif, quality=100),
        "modes/big.png": png_bytes(Image.new("RGB", (300, 200), (0, 0, 255))),
    }
    tree = class_tree(isolated_dirs / "modes", files)
    loaded = data.load_image_folder(tree, image_size=(4, 6))
    assert loaded.x.dtype == np.uint8 and loaded.x.shape == (7, 4, 6, 3)
    images = dict(zip(sorted(files), loaded.x))
    np.testing.assert_array_equal(images["modes/gray.png"][..., 0], gradient)
    assert images["modes/rgba.png"][1, 1].tolist() == [255, 0, 0]
    assert images["modes/rgba.png"][0, 0].tolist() == [255, 255, 255]  # transparent on white
    np.testing.assert_allclose(images["modes/sixteen.png"][..., 1], gradient, atol=1)
    assert images["modes/cmyk.jpg"].mean(axis=(0, 1)).round().tolist()[0] > 200        # red stays red
    assert images["modes/big.png"][..., 2].min() == 255
    upright = data.load_image_folder(class_tree(isolated_dirs / "rot", {"r/0.jpg": files["modes/rotated.jpg"]}))
    assert upright.x.shape == (1, 6, 4, 3)                              # EXIF rotation applied: 4 wide, 6 high
    column = upright.x[0, :, 0, 0].astype(int)
    assert column[-1] > column[0] + 100                                 # the left-right ramp now runs top-down


def test_archives_with_damage_keep_what_they_can(isolated_dirs):
    tree = class_tree(isolated_dirs / "src", {f"c{i % 2}/{i}.png": good(i) for i in range(6)})
    with zipfile.ZipFile(isolated_dirs / "set.zip", "w") as archive:
        for path in sorted(tree.rglob("*.png")):
            archive.write(path, path.relative_to(tree).as_posix())
        archive.writestr("c0/broken.png", b"junk")
    with pytest.warns(SkippedFileWarning, match="c0/broken.png"):
        assert len(data.load_image_folder(isolated_dirs / "set.zip")) == 6
    (isolated_dirs / "cut.zip").write_bytes((isolated_dirs / "set.zip").read_bytes()[:-30])
    with raises(DatasetNotFoundError, "cut.zip is a damaged archive", "again"):
        data.load_image_folder(isolated_dirs / "cut.zip")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        archive.add(tree, arcname="set")
    whole = buffer.getvalue()
    (isolated_dirs / "cut.tar.gz").write_bytes(whole[: len(whole) * 2 // 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            part = data.load_image_folder(isolated_dirs / "cut.tar.gz")
            assert len(part) < 6
        except DatasetNotFoundError as err:                             # cut before the first image
            assert "damaged" in str(err)
    assert all(issubclass(w.category, SkippedFileWarning) for w in caught)


def test_image_folder_arguments(isolated_dirs):
    tree = class_tree(isolated_dirs / "mixed", {"a/0.png": good(1), "a/1.png": good(2, (9, 9)), "b/0.png": good(3)})
    with raises(CourseValueError, "differ in size", "4x6", "9x9", "a/1.png", "image_size=(height, width)"):
        data.load_image_folder(tree)
    with raises(CourseValueError, "image_size", "0"):
        data.load_image_folder(tree, image_size=0)
    with raises(CourseTypeError, "image_size", "'64'"):
        data.load_image_folder(tree, image_size="64")
    with raises(CourseTypeError, "source must be a path"):
        data.load_image_folder(None)
    with raises(DatasetNotFoundError, "no image folder or archive"):
        data.load_image_folder(isolated_dirs / "nowhere")
    (isolated_dirs / "notes.txt").write_text("hello")
    with raises(CourseValueError, "neither a folder nor a .zip or .tar"):
        data.load_image_folder(isolated_dirs / "notes.txt")


# ----------------------------------------------------------------------------------------------
# trainer: fit's arguments
# ----------------------------------------------------------------------------------------------
def test_fit_with_a_pair_or_arrays_instead_of_batches():
    model = small_mlp()
    for wrong, word in (((DIGITS.x, DIGITS.y), "tuple of arrays"), (DIGITS, "ImageArrays"),
                        (DIGITS.x, "uint8 array"), (5, "5")):
        with raises(CourseTypeError, "train must give batches of (x, y)", word, "DeviceLoader("):
            trainer.fit(model, wrong, None, 1, sgd(model), progress=False)
    with raises(CourseTypeError, "val must give batches"):
        trainer.fit(model, digits_loader(), (DIGITS.x, DIGITS.y), 1, sgd(model), progress=False)


def test_fit_epochs_batch_size_and_options():
    model = small_mlp()
    with raises(CourseValueError, "epochs must be a whole number >= 0, got -1", "epochs=5"):
        trainer.fit(model, digits_loader(), None, -1, sgd(model), progress=False)
    with raises(CourseTypeError, "epochs", "2.5"):
        trainer.fit(model, digits_loader(), None, 2.5, sgd(model), progress=False)
    with raises(CourseValueError, "batch_size must be a whole number >= 1, got 0"):
        digits_loader(batch_size=0)
    with raises(CourseTypeError, "loss_fn must be a function"):
        trainer.fit(model, digits_loader(), None, 1, sgd(model), loss_fn="cross_entropy", progress=False)
    assert trainer.fit(model, digits_loader(), None, 0, sgd(model), progress=False).train_loss == []


def test_fit_with_an_optimizer_or_scheduler_of_something_else():
    model = small_mlp()
    with raises(CourseTypeError, "the class SGD", "SGD(model.parameters()"):
        trainer.fit(model, digits_loader(), None, 1, torch.optim.SGD, progress=False)
    with raises(CourseValueError, "updates none of this model's parameters"):
        trainer.fit(model, digits_loader(), None, 1, sgd(small_mlp()), progress=False)
    other = sgd(small_mlp())
    with raises(CourseValueError, "scheduler was built on another optimizer"):
        trainer.fit(model, digits_loader(), None, 1, sgd(model), torch.optim.lr_scheduler.StepLR(other, 1),
                    progress=False)
    with raises(CourseTypeError, "the class MLP1", "MLP1()"):
        trainer.fit(models.MLP1, digits_loader(), None, 1, sgd(model), progress=False)


def test_images_of_the_wrong_shape_name_what_the_model_takes():
    mlp = models.MLP1()                                                # built for 3x32x32
    with raises(CourseValueError, "(1, 8, 8) = 64 numbers", "net.1 (Linear)", "3072 numbers per image",
                "mat1 and mat2"):
        trainer.fit(mlp, digits_loader(), None, 1, sgd(mlp), progress=False)
    cnn = models.SimpleCNN()
    with raises(CourseValueError, "features.0 (Conv2d)", "3 channels", "in_channels"):
        trainer.evaluate(cnn, digits_loader())
    with raises(CourseValueError, "input_shape", "(C, H, W)"):
        models.count_macs(models.MLP1(in_channels=1, image_size=28), (3, 32, 32))


def test_labels_and_outputs_that_do_not_fit():
    model = small_mlp()
    x = torch.rand(8, 1, 8, 8)
    floats = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.rand(8)), 4)
    with raises(CourseTypeError, "integer class indices", "y.long()"):
        trainer.fit(model, floats, None, 1, sgd(model), progress=False)
    one_hot = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.eye(8)[:, :4].long()), 4)
    with raises(CourseValueError, "(N,) class indices", "one-hot", "argmax(1)"):
        trainer.fit(model, one_hot, None, 1, sgd(model), progress=False)
    with raises(CourseValueError, "y must be (N,) class indices", "argmax(1)"):
        trainer.DeviceLoader(DIGITS.x[:8], np.eye(8)[:, :4], 4)
    single = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), 4)
    with raises(CourseTypeError, "pair (x, y)", "1 items"):
        trainer.fit(model, single, None, 1, sgd(model), progress=False)
    three_d = nn.Sequential(nn.Flatten(), nn.Linear(64, 10), nn.Unflatten(1, (10, 1)))
    with raises(CourseValueError, "returned a float32 tensor of shape (64, 10, 1)", "(N, num_classes)"):
        trainer.fit(three_d, digits_loader(), None, 1, sgd(three_d), progress=False)


def test_loss_functions_that_do_not_give_one_differentiable_number():
    model = small_mlp()
    with raises(CourseValueError, "0-d tensor", "shape (64,)", "reduction='mean'"):
        trainer.fit(model, digits_loader(), None, 1, sgd(model), progress=False,
                    loss_fn=lambda logits, y: F.cross_entropy(logits, y, reduction="none"))
    with raises(CourseValueError, "does not depend on the model's parameters", ".item()"):
        trainer.fit(model, digits_loader(), None, 1, sgd(model), progress=False,
                    loss_fn=lambda logits, y: F.cross_entropy(logits, y).detach())


def test_device_loader_rejects_what_it_cannot_batch():
    x, y = DIGITS.x[:16], DIGITS.y[:16]
    with raises(CourseTypeError, "images with labels", "data.x and data.y"):
        trainer.DeviceLoader(DIGITS, DIGITS.y)
    with raises(CourseValueError, "looks channels last", "permute(0, 3, 1, 2)"):
        trainer.DeviceLoader(np.random.rand(16, 8, 8, 3).astype(np.float32), y)
    with raises(CourseTypeError, "uint8", "int64", "astype(np.uint8)"):
        trainer.DeviceLoader(x.astype(np.int64), y)
    with raises(CourseValueError, "crop_padding must be smaller than the images (8x8)"):
        trainer.DeviceLoader(x, y, crop_padding=8)
    with raises(CourseValueError, "std must be positive", "0.0"):
        trainer.DeviceLoader(x, y, std=0.0)
    with raises(CourseValueError, "mean must be one finite number or 1", "[0.5, 0.5, 0.5]"):
        trainer.DeviceLoader(x, y, mean=[0.5, 0.5, 0.5])
    with raises(CourseTypeError, "class indices (whole numbers)", "0.25"):
        trainer.DeviceLoader(x, y + 0.25)
    with raises(CourseTypeError, "seed", "'a'"):
        trainer.DeviceLoader(x, y, seed="a")
    images = x.astype(np.float32)[:, None] / 255
    images[3, 0, 2, 2] = np.inf
    with raises(CourseValueError, "NaN or infinite", "image 3"):
        trainer.DeviceLoader(images, y)
    whole = trainer.DeviceLoader(x, y.astype(np.float64), 4)              # whole-number float labels are fine
    assert next(iter(whole))[1].dtype == torch.int64


# ----------------------------------------------------------------------------------------------
# trainer: non-finite losses
# ----------------------------------------------------------------------------------------------
def nan_batches():
    x = torch.tensor(DIGITS.x[:128, None] / 255, dtype=torch.float32)
    x[70, 0, 3, 3] = float("nan")                                      # in the second batch of 64
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.tensor(DIGITS.y[:128])), 64)


def test_nan_inputs_stop_fit_at_their_step_with_the_weights_before_it():
    settings.seed_everything(0)
    model = small_mlp()
    optimizer = sgd(model)
    before = {}

    def remember(m):
        before.update({k: v.clone() for k, v in m.state_dict().items()})

    with raises(NonFiniteLossError, "nan", "epoch 1/3, step 2/2", "this batch's images hold NaN or inf",
                "stop_on_nonfinite=False"):
        trainer.fit(model, nan_batches(), None, 3, optimizer, progress=False, on_step=remember)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "weights from before that step"
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert not model.training


def test_a_diverging_learning_rate_is_named_and_can_be_trained_through():
    settings.seed_everything(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with raises(NonFiniteLossError, "epoch 1/2, step 2/4", "learning rate too large", "1e+37",
                "(not this batch's: its images are finite)"):
        trainer.fit(model, digits_loader(), None, 2, sgd(model, lr=1e37), progress=False)
    history = trainer.fit(model, digits_loader(), None, 2, sgd(model, lr=1e37), progress=False,
                          stop_on_nonfinite=False)
    assert len(history) == 2 and not math.isfinite(history.train_loss[-1])


def test_on_a_gpu_the_losses_are_checked_later_but_the_first_bad_step_is_exact():
    """The GPU path (no host sync per step), run on the CPU: losses are kept and looked at together."""
    from course_lib.trainer.training import _NonFiniteCheck

    check = _NonFiniteCheck(True, torch.device("cpu"), epochs=2, train=range(10), optimizer=sgd(small_mlp()))
    check.immediate = False
    for step, value in enumerate([1.0, 0.5, 0.4]):
        check.step(torch.tensor(value), 0, None)
    check.check(0)                                                      # all finite: nothing happens
    for step, value in enumerate([0.3, float("inf"), float("nan")]):
        check.step(torch.tensor(value), 0, None)
    with raises(NonFiniteLossError, "inf", "epoch 1/2, step 5/10", "weights may hold NaN by now"):
        check.check(0)


def test_range_test_with_nan_inputs_and_bad_arguments():
    model = small_mlp()
    with raises(NonFiniteLossError, "first step of the range test", "inputs"):
        trainer.lr_range_test(model, nan_batches_first(), sgd(model), steps=5)
    with raises(CourseValueError, "smoothing", "1.0"):
        trainer.lr_range_test(model, digits_loader(), sgd(model), smoothing=1.0)
    with raises(CourseValueError, "pass steps="):
        trainer.lr_range_test(model, iter(digits_loader()), sgd(model))
    with raises(CourseValueError, "0 < lr_min < lr_max"):
        trainer.lr_range_test(model, digits_loader(), sgd(model), 1.0, 0.1)
    with raises(CourseValueError, "lr_min", "nan"):
        trainer.lr_range_test(model, digits_loader(), sgd(model), float("nan"), 0.1)


def nan_batches_first():
    x = torch.full((16, 1, 8, 8), float("nan"))
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, torch.zeros(16, dtype=torch.int64)), 8)


def test_results_of_training_reject_unknown_names():
    history = trainer.History(train_loss=[1.0], val_acc=[0.5])
    with raises(CourseValueError, "key must be one of", "'val_acc'", "'val_accuracy'"):
        history.best("val_accuracy")
    with raises(CourseValueError, "History.from_dict"):
        trainer.History.from_dict({"accuracy": [0.5]})
    result = trainer.EvalResult(0.1, 0.5, np.array([0, 9]), np.array([9, 0]))
    with raises(CourseValueError, "num_classes", "go up to 9"):
        result.confusion_matrix(3)
    with raises(CourseValueError, "tta_flip mirrors images", "tta_flip=False"):
        flat = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.rand(4, 64), torch.zeros(4).long()), 2)
        trainer.evaluate(nn.Linear(64, 3), flat, tta_flip=True)
    with raises(CourseValueError, "padding", "8x8"):
        trainer.random_crop(torch.rand(2, 1, 8, 8), 8)


# ----------------------------------------------------------------------------------------------
# trainer: checkpoints
# ----------------------------------------------------------------------------------------------
def test_load_checkpoint_missing_damaged_or_of_another_model(tmp_path):
    fast = models.FastCIFARNet()
    trainer.save_checkpoint(tmp_path / "fast.pt", fast)
    mlp = models.MLP1()
    mlp_weights = {k: v.clone() for k, v in mlp.state_dict().items()}

    with raises(CourseFileNotFoundError, "no checkpoint at", "missing.pt", "checkpoints in", "fast.pt"):
        trainer.load_checkpoint(tmp_path / "missing.pt", mlp)
    assert issubclass(CourseFileNotFoundError, FileNotFoundError)
    (tmp_path / "damaged.pt").write_bytes((tmp_path / "fast.pt").read_bytes()[:500])
    with raises(CheckpointError, "damaged.pt", "damaged", "save_checkpoint"):
        trainer.load_checkpoint(tmp_path / "damaged.pt", mlp)
    (tmp_path / "text.pt").write_text("hello")
    with raises(CheckpointError, "could not be read as a checkpoint"):
        trainer.load_checkpoint(tmp_path / "text.pt", mlp)
    with raises(CheckpointError, "this checkpoint", "holds a FastCIFARNet; you passed an MLP1"):
        trainer.load_checkpoint(tmp_path / "fast.pt", mlp)
    with raises(CheckpointError, "holds a FastCIFARNet of other sizes", "(64, 64, 3, 3) there and (128, 64, 3, 3)",
                "widths"):
        trainer.load_checkpoint(tmp_path / "fast.pt", models.FastCIFARNet(widths=(16, 32, 64, 128)))
    assert all(torch.equal(mlp_weights[k], v) for k, v in mlp.state_dict().items()), "a failed load changes nothing"


def test_old_checkpoints_and_plain_state_dicts(tmp_path):
    fast = models.FastCIFARNet()
    torch.save({"model": fast.state_dict(), "optimizer": None, "history": None}, tmp_path / "old.pt")
    with raises(CheckpointError, "do not fit this MLP1", "features.0.weight", "net.1.weight", "another model class"):
        trainer.load_checkpoint(tmp_path / "old.pt", models.MLP1())
    restored = models.FastCIFARNet()
    assert trainer.load_checkpoint(tmp_path / "old.pt", restored) is None
    assert torch.equal(restored.head[2].weight, fast.head[2].weight)
    torch.save(fast.state_dict(), tmp_path / "plain.pt")
    assert trainer.load_checkpoint(tmp_path / "plain.pt", models.FastCIFARNet()) is None
    class Renamed(models.FastCIFARNet):
        pass

    trainer.save_checkpoint(tmp_path / "fast.pt", fast)
    assert trainer.load_checkpoint(tmp_path / "fast.pt", Renamed()) is None       # the same layers load
    torch.save(fast, tmp_path / "pickled.pt")
    with raises(CheckpointError, "whole pickled object", "save_checkpoint(path, model)"):
        trainer.load_checkpoint(tmp_path / "pickled.pt", models.FastCIFARNet())


def test_checkpoint_optimizers_and_save_arguments(tmp_path):
    model = small_mlp()
    trainer.save_checkpoint(tmp_path / "sgd.pt", model, sgd(model))
    with raises(CheckpointError, "optimizer state is an SGD's; you passed an Adam"):
        trainer.load_checkpoint(tmp_path / "sgd.pt", model, torch.optim.Adam(model.parameters()))
    split_groups = torch.optim.SGD([{"params": model.net[1].parameters()}, {"params": model.net[3].parameters()}], 0.1)
    with raises(CheckpointError, "parameter groups of [4] tensors, yours [2, 2]"):
        trainer.load_checkpoint(tmp_path / "sgd.pt", model, split_groups)
    with raises(CourseValueError, "is a folder", "model.pt"):
        trainer.save_checkpoint(tmp_path, model)
    with raises(CourseTypeError, "history must be the History"):
        trainer.save_checkpoint(tmp_path / "h.pt", model, history={"train_loss": [1.0]})
    with raises(CourseTypeError, "path must be a path"):
        trainer.save_checkpoint(None, model)


# ----------------------------------------------------------------------------------------------
# models
# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("build, words", [
    (lambda: models.MLP1(in_channels=0), ("in_channels", ">= 1", "got 0")),
    (lambda: models.MLP1(num_classes=2.5), ("num_classes", "2.5")),
    (lambda: models.MLP1(image_size=(28,)), ("image_size", "(28,)")),
    (lambda: models.MLP2(hidden=512), ("hidden", "(h1, h2)")),
    (lambda: models.DeepCNN(dropout=1.5), ("dropout", "1.5")),
    (lambda: models.FastCIFARNet(widths=(16,)), ("widths", "(16,)")),
    (lambda: models.PlainCNN(depth=True), ("depth must be 3, 4 or 5",)),
    (lambda: models.count_params(models.MLP1), ("the class MLP1", "MLP1()")),
])
def test_models_that_cannot_be_built(build, words):
    with raises(CourseError, *words):
        build()


# ----------------------------------------------------------------------------------------------
# plots, widgets, landscapes, results
# ----------------------------------------------------------------------------------------------
def test_plots_reject_what_they_cannot_draw():
    with raises(CourseValueError, "1 to 256 images, got 0"):
        plots.show_images(np.zeros((0, 8, 8)))
    with raises(CourseValueError, "got 1000", "images[:32]"):
        plots.show_images(np.zeros((1000, 8, 8)))
    with raises(CourseValueError, "C = 1, 3 or 4", "(2, 8, 8, 2)"):
        plots.show_images(np.zeros((2, 8, 8, 2)))
    with raises(CourseValueError, "labels go up to 5", "2 class names"):
        plots.show_images(np.zeros((2, 8, 8)), labels=[0, 5], class_names=["a", "b"])
    with raises(CourseValueError, "predictions go up to 12", "10 class names"):
        plots.plot_confusion_matrix([0, 1], [0, 12], [str(i) for i in range(10)])
    with raises(CourseValueError, "2 targets and 3 predictions"):
        plots.plot_confusion_matrix([0, 1], [0, 1, 1], ["a", "b"])
    with raises(CourseValueError, "no values for any of"):
        plots.plot_history({})
    with raises(CourseTypeError, "History"):
        plots.plot_history([1.0, 0.5])
    with raises(CourseValueError, "run 'a' has no val_acc", "train_loss"):
        plots.compare_histories({"a": {"train_loss": [1.0]}})
    fig = plots.compare_histories({"a": {"train_loss": [1.0, 0.5]}}, keys="train_loss")  # one key as a str
    assert len(fig.axes) == 1
    fig = plots.show_images(np.full((2, 4, 4), np.nan))                 # NaN images draw as black, no error
    plt.close("all")


def test_widgets_check_their_inputs():
    with raises(CourseTypeError, "images must be an array of numbers"):
        widgets.grayscale(np.array([["a"]]))
    with raises(CourseValueError, "(N, F, H, W)"):
        widgets.show_feature_maps(np.zeros((2, 8, 8)))
    with raises(CourseValueError, "col_names (one per filter) must hold 3 names"):
        widgets.show_feature_maps(np.zeros((1, 3, 4, 4)), col_names=["a"])
    with raises(CourseTypeError, "conv must be a function"):
        widgets.conv_explorer("conv2d", np.zeros((1, 8, 8)))
    with raises(CourseValueError, "steps", "5", "500"):
        widgets.path_explorer(lambda *a, **k: {}, {"bowl": landscapes.Quadratic()}, steps=1000)
    plt.close("all")


def test_landscapes_need_points_of_two_numbers():
    with raises(CourseValueError, "Quadratic's a", "> 0", "-1.0"):
        landscapes.Quadratic(a=-1)
    with raises(CourseValueError, "Rosenbrock's b", "nan"):
        landscapes.Rosenbrock(b=float("nan"))
    with raises(CourseValueError, "view"):
        landscapes.Quadratic(view=((1, -1), (0, 1)))
    with raises(CourseValueError, "shape (..., 2)", "(3,)"):
        landscapes.Quadratic()(np.zeros(3))
    with raises(CourseValueError, "one point (x, y)", "(2, 2)"):
        landscapes.Rosenbrock().grad(np.zeros((2, 2)))
    with raises(CourseValueError, "path must be points", "(5, 3)"):
        landscapes.finite_part(np.zeros((5, 3)))
    with raises(CourseValueError, "paths['empty']", "(T + 1, 2)"):
        landscapes.plot_paths(landscapes.Quadratic(), {"empty": np.zeros((0, 2))})
    plt.close("all")


def test_results_accept_numpy_numbers_and_reject_the_rest(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_RESULTS_DIR", str(tmp_path))
    path = results.write_results("nb", {"test_accuracy": np.float32(0.5), "epochs": np.int64(3), "seconds": 1.0})
    assert json.loads(path.read_text()) == {"test_accuracy": 0.5, "epochs": 3, "seconds": 1.0}
    with raises(CourseValueError, "notebook's name", "'../nb'"):
        results.write_results("../nb", {})
    with raises(CourseTypeError, "dict of name -> number"):
        results.write_results("nb", [0.5])
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.warns(SkippedFileWarning, match="broken.json"):
        assert "| nb |" in results.table(tmp_path)
    with raises(CourseFileNotFoundError, "no results folder"):
        results.table(tmp_path / "nowhere")


# ----------------------------------------------------------------------------------------------
# tuning
# ----------------------------------------------------------------------------------------------
def test_tuning_arguments(tmp_path):
    storage = optuna.storages.InMemoryStorage()
    with raises(CourseValueError, "non-empty string"):
        tuning.open_study("", storage=storage)
    with raises(CourseValueError, "direction", "'maximize', 'minimize'", "'up'"):
        tuning.open_study("s", storage=storage, direction="up")
    with raises(CourseTypeError, "sampler", "the class TPESampler", "call it"):
        tuning.open_study("s", storage=storage, sampler=optuna.samplers.TPESampler)
    with raises(CourseValueError, "heartbeat", "nan"):
        tuning.open_storage(f"sqlite:///{tmp_path / 'a.db'}", heartbeat=float("nan"))
    with raises(CourseValueError, "non-empty string"):
        tuning.study_name(3)
    study = tuning.open_study("s", storage=storage)
    with raises(CourseValueError, "n_trials", "-1"):
        tuning.optimize(study, lambda trial: 0.0, -1, progress=False)
    with raises(CourseTypeError, "objective must be a function"):
        tuning.optimize(study, "objective", 3, progress=False)
    with raises(CourseTypeError, "study must be an Optuna study"):
        tuning.optimize("s", lambda trial: 0.0, 3, progress=False)


def test_a_diverged_trial_fails_and_the_study_goes_on():
    study = tuning.open_study("diverges", storage=optuna.storages.InMemoryStorage(), direction="minimize")

    def objective(trial):
        x = trial.suggest_float("x", -1, 1)
        if trial.number == 1:
            raise NonFiniteLossError("the training loss is nan at epoch 1/1, step 1/1")
        return x * x

    tuning.optimize(study, objective, 4, progress=False)
    states = [trial.state for trial in study.trials]
    assert states[1] == optuna.trial.TrialState.FAIL and states.count(optuna.trial.TrialState.COMPLETE) == 3


@pytest.mark.parametrize("argv, words", [
    (["s", "--objective", "x.py:f", "--trials", "3", "--seed", "-1"], "--seed must be a whole number from 0"),
    (["s", "--objective", "x.py:f", "--trials", "3", "--heartbeat", "nan"], "--heartbeat must be positive"),
    ([" ", "--objective", "x.py:f", "--trials", "3"], "study name is empty"),
])
def test_the_tune_command_rejects_bad_options_without_a_traceback(argv, words, capsys):
    with pytest.raises(SystemExit) as exit_:
        tuning.main(argv)
    assert exit_.value.code == 2 and words in capsys.readouterr().err


@pytest.fixture
def course_with_a_submission(tmp_path):
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    (tmp_path / "submitted" / "ada" / "01_numpy_mlp").mkdir(parents=True)
    return tmp_path


@pytest.mark.parametrize("options, words", [
    (["--workers", "0"], "--workers must be at least 1, got 0"),
    (["--memory", "-1"], "--memory must be a positive number, got -1.0"),
    (["--cell-timeout", "0"], "--cell-timeout must be a positive number, got 0"),
    (["--output-limit", "0"], "--output-limit must be a positive number"),
])
def test_the_grade_command_rejects_bad_options_without_a_traceback(course_with_a_submission, options, words, capsys):
    from course_grading.classroom import main

    with pytest.raises(SystemExit) as exit_:
        main(["01_numpy_mlp", "--course", str(course_with_a_submission), *options])
    assert exit_.value.code == 2 and words in capsys.readouterr().err


def test_the_grade_command_names_what_is_missing(tmp_path, capsys):
    from course_grading.classroom import main

    with pytest.raises(SystemExit):
        main(["01_numpy_mlp", "--course", str(tmp_path)])
    assert "no nbgrader_config.py in" in capsys.readouterr().err
    (tmp_path / "nbgrader_config.py").write_text("c = get_config()\n")
    with pytest.raises(SystemExit):
        main(["02_convolution", "--course", str(tmp_path)])
    assert "no submissions of '02_convolution'" in capsys.readouterr().err
