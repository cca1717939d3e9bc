"""course_lib.transfer (notebook 06's backbone, photo datasets) and the data sets it reads."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
import torch
from torch import nn
from PIL import Image

from conftest import real_data_dir
from course_lib.data import DatasetNotFoundError, load_muffin_chihuahua, mnist_splits, prepare_cache
from course_lib.models import FastCIFARNet
from course_lib.trainer import save_checkpoint
from course_lib.transfer import (BackboneNotFoundError, TransformedImages, backbone_path, imagenet_backbone,
                                 load_backbone, train_backbone)


@pytest.fixture
def checkpoints(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    return tmp_path / "checkpoints"


def save_fake_backbone(path, fast=True):
    torch.manual_seed(0)
    model = FastCIFARNet()
    save_checkpoint(path, model)
    path.with_suffix(".json").write_text(json.dumps({
        "widths": [16, 32, 64, 64], "fast_mode": fast, "training_images": 1000, "test_accuracy": 0.5,
        "mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]}))
    return model


def test_a_missing_backbone_names_notebook_03_and_the_call_that_trains_it(checkpoints, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    with pytest.raises(BackboneNotFoundError, match="notebook 03") as error:
        load_backbone()
    assert "backbone = train_backbone()" in str(error.value)
    assert str(checkpoints / "03_fastcifarnet_fast.pt") in str(error.value)
    assert isinstance(error.value, FileNotFoundError)


def test_each_mode_has_its_own_checkpoint(checkpoints, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    assert backbone_path() == checkpoints / "03_fastcifarnet_fast.pt"
    monkeypatch.setenv("COURSE_FAST", "0")
    assert backbone_path() == checkpoints / "03_fastcifarnet_full.pt"


def test_the_saved_backbone_loads_with_its_normalisation(checkpoints, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "0")
    model = save_fake_backbone(backbone_path(), fast=False)
    backbone = load_backbone()
    assert backbone.mean == (0.5, 0.4, 0.3) and backbone.std == (0.2, 0.25, 0.3)
    assert "full mode" in backbone.description and "50.0%" in backbone.description
    for name, value in model.state_dict().items():
        assert torch.equal(backbone.model.state_dict()[name], value), name
    assert not backbone.model.training


def test_an_unreadable_description_is_named(checkpoints, monkeypatch):
    monkeypatch.setenv("COURSE_FAST", "1")
    save_fake_backbone(backbone_path())
    backbone_path().with_suffix(".json").write_text("{ half a file")
    with pytest.raises(BackboneNotFoundError, match="no readable description"):
        load_backbone()


def test_train_backbone_saves_what_load_backbone_reads(checkpoints, monkeypatch):
    real_data_dir()
    monkeypatch.setenv("COURSE_FAST", "1")
    backbone = load_backbone(train_if_missing=True)
    assert backbone_path().is_file() and backbone_path().with_suffix(".json").is_file()
    info = json.loads(backbone_path().with_suffix(".json").read_text())
    assert info["training_images"] == 1024 and info["epochs"] == 2 and info["fast_mode"] is True
    assert np.allclose(backbone.mean, info["mean"]) and 0.2 < np.mean(backbone.mean) < 0.6
    assert backbone.model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    again = train_backbone(images=256, epochs=1, path=checkpoints / "other.pt")
    assert "256 training images" in again.description


def test_a_backbone_trained_where_nothing_can_be_written_still_serves(monkeypatch, capsys):
    """The grader's sandbox sees the cache read-only: a backbone trained there is kept in memory."""
    real_data_dir()
    monkeypatch.setenv("COURSE_FAST", "1")
    monkeypatch.setenv("COURSE_CHECKPOINT_DIR", "/sys/course-checkpoints")   # unwritable, even for root
    backbone = load_backbone(train_if_missing=True)
    assert "could not save it" in capsys.readouterr().out and not backbone_path().exists()
    assert "not saved" in backbone.description and 0.2 < np.mean(backbone.mean) < 0.6
    assert backbone.model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_transformed_images_hand_each_image_to_the_transform_as_a_uint8_tensor():
    seen = []

    def transform(image):
        seen.append((image.dtype, tuple(image.shape)))
        return image.float()

    colour = TransformedImages(np.zeros((3, 5, 7, 3), np.uint8), [0, 1, 1], transform)
    grey = TransformedImages(np.zeros((2, 5, 7), np.uint8), np.array([1, 0]), transform)
    assert len(colour) == 3 and colour[1][1] == 1 and grey[0][1] == 1
    assert seen == [(torch.uint8, (3, 5, 7)), (torch.uint8, (1, 5, 7))]
    loader = torch.utils.data.DataLoader(colour, batch_size=2)
    x, y = next(iter(loader))
    assert x.shape == (2, 3, 5, 7) and y.tolist() == [0, 1]
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        TransformedImages(np.zeros((3, 5, 7)), [0, 1], transform)


def test_imagenet_weights_that_cannot_be_had_give_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_DOWNLOAD", "0")
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(BackboneNotFoundError, match="COURSE_DOWNLOAD=0"):
        imagenet_backbone()


# ---------------------------------------------------------------- data sets of notebook 06

def save_npz(path, n, classes=10, seed=0):
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), y=np.arange(n) % classes)


def test_mnist_splits_use_both_official_sets_when_there_are(isolated_dirs):
    save_npz(isolated_dirs / "data" / "mnist" / "mnist_train.npz", 2_000)
    save_npz(isolated_dirs / "data" / "mnist" / "mnist_test.npz", 1_000, seed=1)
    parts = mnist_splits("mnist")
    assert (len(parts.train), len(parts.val), len(parts.test)) == (1_800, 200, 1_000)
    assert "official test set (1,000)" in parts.origin
    assert np.bincount(parts.val.y).tolist() == [20] * 10


def test_mnist_splits_split_the_training_set_when_the_test_set_is_too_small(isolated_dirs):
    save_npz(isolated_dirs / "data" / "fashion_mnist" / "fashion_mnist_train10k.npz", 1_000)
    save_npz(isolated_dirs / "data" / "fashion_mnist" / "fashion_mnist_test20.npz", 20, seed=1)
    parts = mnist_splits("fashion_mnist")
    assert (len(parts.train), len(parts.val), len(parts.test)) == (800, 100, 100)
    assert "split 80/10/10" in parts.origin and "only 20 images" in parts.origin


def test_mnist_splits_split_the_test_set_only_when_there_is_no_training_set(isolated_dirs):
    save_npz(isolated_dirs / "data" / "mnist" / "mnist_test10k.npz", 1_000)
    parts = mnist_splits("mnist")
    assert (len(parts.train), len(parts.val), len(parts.test)) == (800, 100, 100)
    assert "no training set was found" in parts.origin


def test_mnist_splits_without_data_or_with_a_wrong_name(isolated_dirs):
    with pytest.raises(DatasetNotFoundError, match="MNIST was not found"):
        mnist_splits("mnist")
    with pytest.raises(ValueError, match="fashion_mnist"):
        mnist_splits("kmnist")


def photo_tree(root, per_class=3):
    for subset in ("train", "test"):
        for label, name in enumerate(("chihuahua", "muffin")):
            (root / subset / name).mkdir(parents=True)
            for i in range(per_class):
                size = (40 + 10 * i, 30 + 5 * label)
                Image.new("RGB", size, (200 * label, 50, 10 * i)).save(root / subset / name / f"{i}.jpg")


def test_muffins_pool_every_subset_from_a_folder_or_kaggles_zip(isolated_dirs):
    folder = isolated_dirs / "data" / "muffin_chihuahua"
    photo_tree(folder)
    photos = load_muffin_chihuahua(image_size=16)
    assert photos.x.shape == (12, 16, 16, 3) and photos.class_names == ["chihuahua", "muffin"]
    assert np.bincount(photos.y).tolist() == [6, 6]
    archive = isolated_dirs / "data" / "archive.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(folder.rglob("*.jpg")):
            zipped.write(path, path.relative_to(folder).as_posix())
    for path in sorted(folder.rglob("*.jpg"), reverse=True):
        path.unlink()
    assert np.array_equal(load_muffin_chihuahua(image_size=16).y, photos.y)


def test_prepare_cache_decodes_the_image_data_sets_once(isolated_dirs):
    """What the grader runs before its read-only sandboxes: afterwards loads only read arrays."""
    assert prepare_cache() == []                                   # nothing here: nothing done, no error
    photo_tree(isolated_dirs / "data" / "muffin_chihuahua")
    for split in ("train", "test"):                                  # CIFAR-10 as a class-folder tree
        for label, name in enumerate(("cat", "dog")):
            (isolated_dirs / "data" / "cifar10" / split / name).mkdir(parents=True)
            Image.new("RGB", (32, 32), (100 * label, 0, 0)).save(isolated_dirs / "data" / "cifar10" / split / name / "0.png")
    assert prepare_cache() == ["CIFAR-10 train", "CIFAR-10 test", "muffin vs chihuahua"]
    cached = {path: path.stat().st_mtime_ns for path in (isolated_dirs / "cache" / "arrays").glob("*.npz")}
    assert len(cached) == 4  # CIFAR-10's two splits, the photos' two subsets at 64x64
    assert prepare_cache() == ["CIFAR-10 train", "CIFAR-10 test", "muffin vs chihuahua"]
    assert {path: path.stat().st_mtime_ns for path in cached} == cached, "decoded again"
    (isolated_dirs / "data" / "cifar10" / "test" / "dog" / "0.png").unlink()
    prepare_cache()
    assert len(list((isolated_dirs / "cache" / "arrays").glob("*.npz"))) == 5  # a changed folder is decoded anew


def test_missing_muffins_name_kaggle_and_the_folder(isolated_dirs):
    with pytest.raises(DatasetNotFoundError, match="kaggle.com") as error:
        load_muffin_chihuahua()
    assert "muffin_chihuahua" in str(error.value)


def test_the_course_photos_load(monkeypatch):
    real_data_dir()
    photos = load_muffin_chihuahua(image_size=32)
    assert photos.x.shape == (150, 32, 32, 3) and photos.class_names == ["chihuahua", "muffin"]


# ---------------------------------------------------------------- folds, frozen batch norms, heat maps

def test_stratified_folds_hold_each_photo_out_once_and_keep_the_class_shares():
    from course_lib.transfer import stratified_folds

    y = np.array([0] * 82 + [1] * 68)
    folds = stratified_folds(y, 5, seed=0)
    held_out = np.concatenate([held for _, held in folds])
    assert sorted(held_out.tolist()) == list(range(len(y)))
    for train, held in folds:
        assert set(train.tolist()) | set(held.tolist()) == set(range(len(y))) and not set(train) & set(held)
        assert len(held) == 30 and abs((y[held] == 1).sum() - 68 / 5) < 1
    again = stratified_folds(y, 5, seed=0)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(folds, again))
    assert not all(np.array_equal(a[1], b[1]) for a, b in zip(folds, stratified_folds(y, 5, seed=1)))
    with pytest.raises(ValueError):
        stratified_folds(y, 1)


def test_a_frozen_backbone_keeps_its_batch_norm_statistics_in_training():
    from course_lib.trainer import fit
    from course_lib.transfer import keep_frozen_norms_in_eval

    torch.manual_seed(0)
    model = FastCIFARNet(widths=(4, 8, 8, 8), num_classes=2)
    model.features.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    assert keep_frozen_norms_in_eval(model) is model and keep_frozen_norms_in_eval(model) is model
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 2, (16,))
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    fit(model, [(x, y)], None, 2, optimizer, progress=False)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    model.features[-3:].requires_grad_(True)          # the top block's last conv and batch norm learn again
    model.features[-2].weight.requires_grad_(False)   # its scale stays frozen, as FastCIFARNet has it
    model.train()(x)
    assert model.features[-2].training and not model.features[1].training
    assert not torch.equal(before["features.22.running_mean"], model.state_dict()["features.22.running_mean"])


def test_backbone_blocks_split_fastcifarnet_at_its_blocks():
    from course_lib.transfer import backbone_blocks

    model = FastCIFARNet()
    blocks = backbone_blocks(model)
    assert [sum(isinstance(m, nn.Conv2d) for m in block) for block in blocks] == [1, 2, 2, 2]
    assert not any(isinstance(m, nn.Linear) for block in blocks for m in block)
    with pytest.raises(ValueError, match="7 convolutions"):
        backbone_blocks(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Linear(4, 2)))


def test_activations_and_gradients_match_autograd_and_leave_the_model_as_it_was():
    from course_lib.transfer import activations_and_gradients, saliency

    torch.manual_seed(1)
    model = FastCIFARNet(widths=(4, 8, 8, 8), num_classes=3).train()
    x, classes = torch.randn(2, 3, 16, 16), np.array([2, 0])
    layer = model.features[-1]
    acts, grads = activations_and_gradients(model, layer, x, classes)
    assert model.training and all(p.grad is None for p in model.parameters())
    model.eval()
    kept = {}
    handle = layer.register_forward_hook(lambda m, i, o: kept.setdefault("out", o))
    logits = model(x)
    handle.remove()
    want, = torch.autograd.grad(logits[[0, 1], [2, 0]].sum(), kept["out"])
    assert acts.shape == (2, 8, 2, 2) and torch.allclose(acts, kept["out"].detach()) and torch.allclose(grads, want)
    maps = saliency(model, x, classes)
    pixels = x.clone().requires_grad_(True)
    want, = torch.autograd.grad(model(pixels)[[0, 1], [2, 0]].sum(), pixels)
    assert maps.shape == (2, 16, 16) and torch.allclose(maps, want.abs().amax(1))


def test_show_heat_maps_draws_maps_over_photos():
    import matplotlib

    matplotlib.use("Agg")
    from course_lib.errors import CourseValueError
    from course_lib.plots import show_heat_maps

    images = np.random.default_rng(0).integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
    fig = show_heat_maps(images, torch.rand(3, 4, 4), ["a", "b", "c"], ncols=2, title="maps")
    assert len(fig.axes) == 4
    show_heat_maps(images / 255, np.zeros((3, 2, 2)))
    with pytest.raises(CourseValueError):
        show_heat_maps(images, torch.rand(2, 4, 4))
