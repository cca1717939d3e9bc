import tarfile
import time
import zipfile

import numpy as np
import pytest
from PIL import Image

from conftest import real_data_dir
from course_lib import data
from course_lib.data import DatasetNotFoundError, ImageArrays, load_image_folder, split


def make_tree(root, classes=("cat", "dog"), per_class=3, size=(8, 6)):
    """Class folders of small PNGs whose pixels encode (class, index)."""
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = np.full((size[1], size[0], 3), (40 * c + i) % 256, dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i:04d}.png")
    return root


def test_folder_zip_and_targz_give_the_same_arrays(isolated_dirs):
    tree = make_tree(isolated_dirs / "pets" / "train")
    zip_path = isolated_dirs / "pets.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        for path in sorted(tree.rglob("*.png")):
            archive.write(path, path.relative_to(isolated_dirs).as_posix())
    tar_path = isolated_dirs / "pets.tar.gz"
    with tarfile.open(tar_path, "w:gz") as archive:
        archive.add(isolated_dirs / "pets", arcname="pets")

    loaded = [load_image_folder(tree), load_image_folder(zip_path), load_image_folder(tar_path)]
    for result in loaded:
        assert result.class_names == ["cat", "dog"]
        assert result.x.shape == (6, 6, 8, 3) and result.x.dtype == np.uint8
        np.testing.assert_array_equal(result.y, [0, 0, 0, 1, 1, 1])
        np.testing.assert_array_equal(result.x[:, 0, 0, 0], [0, 1, 2, 40, 41, 42])


def test_subfolder_picks_one_part_of_an_archive(isolated_dirs):
    make_tree(isolated_dirs / "set" / "train", per_class=2)
    make_tree(isolated_dirs / "set" / "test", per_class=1)
    with pytest.raises(ValueError, match="subfolder"):
        load_image_folder(isolated_dirs / "set")
    assert len(load_image_folder(isolated_dirs / "set", subfolder="train")) == 4
    assert len(load_image_folder(isolated_dirs / "set", subfolder="test")) == 2


def test_second_load_comes_from_the_cache_and_changes_invalidate_it(isolated_dirs, monkeypatch):
    tree = make_tree(isolated_dirs / "tree")
    first = load_image_folder(tree)
    assert list((isolated_dirs / "cache" / "arrays").glob("folder-tree-*.npz"))

    def no_decoding(*args):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(data, "_decode_folder", no_decoding)
    again = load_image_folder(tree)
    np.testing.assert_array_equal(first.x, again.x)
    assert again.class_names == first.class_names

    monkeypatch.undo()
    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(tree / "cat" / "0099.png")
    assert len(load_image_folder(tree)) == 7


def test_mixed_sizes_need_image_size(isolated_dirs):
    tree = make_tree(isolated_dirs / "mixed")
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tree / "dog" / "big.png")
    with pytest.raises(ValueError, match="image_size"):
        load_image_folder(tree)
    assert load_image_folder(tree, image_size=16).x.shape == (7, 16, 16, 3)


def test_missing_folder_and_empty_folder_errors(isolated_dirs):
    with pytest.raises(DatasetNotFoundError, match="no image folder"):
        load_image_folder(isolated_dirs / "nowhere")
    (isolated_dirs / "empty").mkdir()
    with pytest.raises(DatasetNotFoundError, match="holds no images"):
        load_image_folder(isolated_dirs / "empty")


def test_missing_cifar10_names_every_place_and_the_setting(isolated_dirs):
    with pytest.raises(DatasetNotFoundError) as error:
        data.load_cifar10("train")
    message = str(error.value)
    assert str(isolated_dirs / "data" / "cifar10" / "cifar10_jpeg_train.tar.gz") in message
    assert str(isolated_dirs / "data" / "cifar10" / "train") in message
    assert str(isolated_dirs / "cache" / "torchvision" / "cifar-10-batches-py") in message
    assert "COURSE_DATA_DIR" in message and "COURSE_DOWNLOAD=0" in message


def test_cifar10_is_found_in_a_class_folder_tree(isolated_dirs):
    make_tree(isolated_dirs / "data" / "cifar10" / "test", classes=data.CIFAR10_CLASSES, per_class=2, size=(32, 32))
    test = data.load_cifar10("test")
    assert test.x.shape == (20, 32, 32, 3)
    assert test.class_names == data.CIFAR10_CLASSES


def digits_splits(seed):
    return split(data.load_digits(), (0.8, 0.1, 0.1), seed=seed)


def test_splits_are_disjoint_complete_stratified_and_reproducible():
    digits = data.load_digits()
    assert digits.x.shape == (1797, 8, 8) and digits.x.max() == 255
    parts = digits_splits(seed=0)
    sizes = [len(parts.train), len(parts.val), len(parts.test)]
    assert sum(sizes) == 1797 and abs(sizes[0] - 0.8 * 1797) <= 1 and abs(sizes[1] - sizes[2]) <= 1
    # Images are not unique, so identify them by row in the original set.
    rows = {tuple(x.ravel()): i for i, x in enumerate(digits.x)}
    ids = [{rows[tuple(x.ravel())] for x in part.x} for part in (parts.train, parts.val, parts.test)]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    for part in (parts.train, parts.val, parts.test):
        assert np.bincount(part.y, minlength=10).min() >= 0.7 * len(part) / 10
    again = digits_splits(seed=0)
    np.testing.assert_array_equal(again.val.x, parts.val.x)
    assert not np.array_equal(digits_splits(seed=1).val.x, parts.val.x)


def test_split_rejects_bad_fractions():
    with pytest.raises(ValueError, match="sum to 1"):
        split(data.load_digits(), (0.8, 0.3, 0.1))


def test_sample_is_stratified_and_as_float_scales():
    digits = data.load_digits()
    subset = digits.sample(100, seed=0)
    assert len(subset) == 100 and np.bincount(subset.y).min() >= 9
    assert digits.sample(None) is digits
    flat = subset.as_float(flatten=True)
    assert flat.shape == (100, 64) and flat.dtype == np.float32 and flat.max() == 1.0
    with pytest.raises(ValueError, match="labels"):
        ImageArrays(digits.x[:3], digits.y[:2], digits.class_names)


# ---------------------------------------------------------------- real data (COURSE_DATA_DIR)

@pytest.fixture
def real_data():
    return real_data_dir()


def test_real_cifar10_official_splits(real_data):
    splits = data.cifar10_splits()
    assert (len(splits.train), len(splits.val), len(splits.test)) == (45000, 5000, 10000)
    assert splits.train.x.shape[1:] == (32, 32, 3)
    assert np.bincount(splits.val.y).tolist() == [500] * 10
    assert np.bincount(splits.test.y).tolist() == [1000] * 10
    pooled = data.cifar10_splits("80/10/10", seed=0)
    assert (len(pooled.train), len(pooled.val), len(pooled.test)) == (48000, 6000, 6000)


def test_real_cifar10_test_images_are_in_official_order(real_data):
    """Official test image i must match the exact-pixel copy (JPEG error about 6/255)."""
    test = data.load_cifar10("test")
    with np.load(real_data / "cifar10" / "cifar10_test1k.npz") as exact:
        order = exact["index"]
        official_x, official_y = exact["x"], exact["y"]
    # The JPEG tree sorts by class, then by rank within the class: rebuild the official order.
    by_class = {c: np.flatnonzero(test.y == c) for c in range(10)}
    rank = {c: 0 for c in range(10)}
    matched = []
    for label in official_y:
        matched.append(by_class[label][rank[label]])
        rank[label] += 1
    difference = np.abs(test.x[matched].astype(int) - official_x.astype(int)).mean()
    assert np.array_equal(order, np.arange(1000)) and difference < 10, difference


def test_real_cifar10_second_load_is_fast(real_data):
    data.load_cifar10("train")
    start = time.perf_counter()
    data.load_cifar10("train")
    elapsed = time.perf_counter() - start
    print(f"cached CIFAR-10 train load: {elapsed:.2f} s")  # target < 2 s, reported in the README


def test_real_mnist_fashion_and_muffins(real_data):
    mnist = data.load_mnist("test")
    assert mnist.x.shape == (10000, 28, 28) and np.bincount(mnist.y).min() > 800
    fashion = data.load_fashion_mnist("train")
    assert fashion.x.shape[1:] == (28, 28) and fashion.class_names[0] == "T-shirt/top"
    muffins = load_image_folder(real_data / "muffin_chihuahua", subfolder="train", image_size=(64, 64))
    assert muffins.class_names == ["chihuahua", "muffin"] and muffins.x.shape == (120, 64, 64, 3)
