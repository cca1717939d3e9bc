"""Datasets by name, as NumPy arrays: CIFAR-10, MNIST, Fashion-MNIST, image folders, digits.

Every loader returns :class:`ImageArrays` (uint8 images, channels last, int64 labels) and
looks in ``COURSE_DATA_DIR`` first, then in torchvision's format, then downloads with
torchvision (unless ``COURSE_DOWNLOAD=0``). Decoded arrays are cached as ``.npz`` in
``COURSE_CACHE_DIR`` so that a second load takes a fraction of a second.
"""
from __future__ import annotations

import hashlib
import io
import os
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.model_selection import train_test_split

from course_lib.settings import cache_dir, data_dir

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


class DatasetNotFoundError(FileNotFoundError):
    """No copy of a dataset was found and none could be downloaded."""


@dataclass
class ImageArrays:
    """Images with labels.

    - x: uint8 array, (N, H, W, C) for colour or (N, H, W) for grayscale
    - y: int64 array (N,), values in [0, len(class_names))
    - class_names: one name per label
    """

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]

    def __post_init__(self):
        self.class_names = [str(name) for name in self.class_names]
        if len(self.x) != len(self.y):
            raise ValueError(f"{len(self.x)} images but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index) -> ImageArrays:
        return ImageArrays(self.x[index], self.y[index], self.class_names)

    def sample(self, n: int | None, seed: int = 0) -> ImageArrays:
        """A stratified random subset of ``n`` images (all of them when ``n`` is None or too big)."""
        if n is None or n >= len(self):
            return self
        index, _ = train_test_split(np.arange(len(self)), train_size=n, stratify=self.y, random_state=seed)
        return self[np.sort(index)]

    def as_float(self, flatten: bool = False) -> np.ndarray:
        """Pixels scaled to [0, 1] as float32; (N, H*W*C) when ``flatten``."""
        x = self.x.astype(np.float32) / 255.0
        return x.reshape(len(x), -1) if flatten else x


@dataclass
class Splits:
    """Train, validation and test parts of one dataset; ``origin`` says which copies they came from."""

    train: ImageArrays
    val: ImageArrays
    test: ImageArrays
    origin: str = ""

    @property
    def class_names(self) -> list[str]:
        return self.train.class_names

    def __repr__(self) -> str:
        sizes = ", ".join(f"{name}={len(getattr(self, name)):,}" for name in ("train", "val", "test"))
        return f"Splits({sizes}, image shape {self.train.x.shape[1:]}, {len(self.class_names)} classes)"


def split(data: ImageArrays, fractions=(0.8, 0.1, 0.1), seed: int = 0) -> Splits:
    """Stratified train/validation/test split with fixed ``seed`` (the same seed gives the same split)."""
    if len(fractions) != 3 or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise ValueError(f"fractions must be three positive numbers that sum to 1, got {fractions}")
    index = np.arange(len(data))
    train, rest = train_test_split(index, train_size=fractions[0], stratify=data.y, random_state=seed)
    val_share = fractions[1] / (fractions[1] + fractions[2])
    val, test = train_test_split(rest, train_size=val_share, stratify=data.y[rest], random_state=seed)
    return Splits(data[np.sort(train)], data[np.sort(val)], data[np.sort(test)])


# ---------------------------------------------------------------- image folders and archives

def load_image_folder(source, subfolder: str | None = None, image_size=None) -> ImageArrays:
    """Images in class folders, from a folder, a ``.zip`` or a ``.tar.gz``.

    The layout is ``<root>/<class name>/<image>`` where ``<root>`` is ``source`` itself, its
    ``subfolder`` (for archives holding ``train/`` and ``test/``), or the single folder that an
    archive wraps everything in. Labels follow the sorted class names.

    - image_size: int or (height, width) to resize to; needed when the images differ in size.

    Returns ImageArrays with x of shape (N, H, W, 3).
    """
    source = Path(source).expanduser()
    if not source.exists():
        raise DatasetNotFoundError(f"no image folder or archive at {source}")
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    key = f"{source.resolve()}|{_fingerprint(source)}|{subfolder}|{size}"
    return _cached(f"folder-{source.name}", key, lambda: _decode_folder(source, subfolder, size))


def _fingerprint(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return hashlib.sha1("".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode()).hexdigest()


def _decode_folder(source: Path, subfolder, size) -> ImageArrays:
    from PIL import Image

    entries = []  # (class name, bytes)
    for path, read in _iter_files(source):
        parts = PurePosixPath(path).parts
        if PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES and not any(p.startswith(".") for p in parts):
            entries.append((parts, read))
    if not entries:
        raise DatasetNotFoundError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    entries = _under_root(entries, subfolder, source)
    class_names = sorted({parts[-2] for parts, _ in entries})
    label = {name: i for i, name in enumerate(class_names)}
    images, labels = [], []
    for parts, read in sorted(entries, key=lambda entry: entry[0]):
        image = Image.open(io.BytesIO(read())).convert("RGB")
        if size is not None:
            image = image.resize((size[1], size[0]), Image.BILINEAR)
        images.append(np.asarray(image))
        labels.append(label[parts[-2]])
    shapes = {im.shape for im in images}
    if len(shapes) > 1:
        raise ValueError(f"images in {source} differ in size ({len(shapes)} sizes); pass image_size=(height, width)")
    return ImageArrays(np.stack(images), np.array(labels, dtype=np.int64), class_names)


def _under_root(entries, subfolder, source):
    """Keep entries below ``subfolder`` (or a single wrapping folder) and make paths relative to it."""
    if subfolder is not None:
        prefix = PurePosixPath(subfolder).parts
        entries = [(parts[len(prefix):], read) for parts, read in entries if parts[:len(prefix)] == prefix]
        if not entries:
            raise DatasetNotFoundError(f"{source} has no images under {subfolder}/")
    while len({parts[0] for parts, _ in entries}) == 1 and min(len(parts) for parts, _ in entries) > 2:
        entries = [(parts[1:], read) for parts, read in entries]
    depths = {len(parts) for parts, _ in entries}
    if depths != {2}:
        raise ValueError(
            f"{source}: expected <class>/<image> below the root, found images at depths {sorted(depths)}; "
            "pass subfolder='train' (or similar) to pick one part"
        )
    return entries


def _iter_files(source: Path):
    """Yield (relative posix path, reader) for every file in a folder, zip or tar archive."""
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            yield path.relative_to(source).as_posix(), path.read_bytes
    elif zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        for info in archive.infolist():
            if not info.is_dir():
                yield info.filename, (lambda name=info.filename: archive.read(name))
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as archive:
            for member in archive:
                if member.isfile():
                    data = archive.extractfile(member).read()
                    yield member.name, (lambda data=data: data)
    else:
        raise ValueError(f"{source} is neither a folder nor a .zip or .tar(.gz) archive")


def _cached(stem: str, key: str, build) -> ImageArrays:
    """Load ``build()``'s result from the cache, or build and store it (atomically)."""
    path = cache_dir() / "arrays" / f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        with np.load(path) as saved:
            return ImageArrays(saved["x"], saved["y"], list(saved["class_names"]))
    data = build()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return data  # a read-only cache (the grader's sandbox): decode again next time
    if not os.access(path.parent, os.W_OK):
        return data
    partial = path.with_suffix(f".{os.getpid()}.partial.npz")
    np.savez(partial, x=data.x, y=data.y, class_names=np.array(data.class_names))
    os.replace(partial, path)
    return data


# ---------------------------------------------------------------- named datasets

def _find(name: str, candidates, download=None) -> ImageArrays:
    """First candidate that loads; else a download; else an error naming every place tried."""
    tried = []
    for description, path, load in candidates:
        if not path.exists():
            tried.append(f"  - {description}: {path}")
            continue
        try:
            return load()
        except RuntimeError as err:  # torchvision's folder from a download that did not finish
            tried.append(f"  - {description}: {path} is there but incomplete ({err})")
    if download is not None and os.environ.get("COURSE_DOWNLOAD", "1") != "0":
        try:
            return download()
        except Exception as err:  # no network, server down, ...
            tried.append(f"  - a torchvision download into {cache_dir() / 'torchvision'}: {type(err).__name__}: {err}")
    else:
        tried.append("  - a torchvision download: turned off by COURSE_DOWNLOAD=0")
    raise DatasetNotFoundError(
        f"{name} was not found. Looked in:\n" + "\n".join(tried) +
        f"\nSet COURSE_DATA_DIR to the folder that holds it (now {data_dir()}), or allow a download "
        "(network access, COURSE_DOWNLOAD unset)."
    )


def _npz(path: Path, class_names=None) -> ImageArrays:
    with np.load(path) as saved:
        names = list(saved["class_names"]) if "class_names" in saved.files else class_names
        return ImageArrays(saved["x"], saved["y"].astype(np.int64), names)


def _torchvision(dataset_class, train: bool, root: Path, download: bool, class_names) -> ImageArrays:
    dataset = dataset_class(root=str(root), train=train, download=download)
    return ImageArrays(np.asarray(dataset.data), np.asarray(dataset.targets, dtype=np.int64), class_names)


def load_cifar10(split: str = "train") -> ImageArrays:
    """The official CIFAR-10 ``"train"`` (50,000) or ``"test"`` (10,000) images, x (N, 32, 32, 3).

    Looks for, in order: ``<data dir>/cifar10/cifar10_jpeg_<split>.tar.gz`` (class-folder JPEGs),
    ``<data dir>/cifar10/<split>/<class>/*``, torchvision's ``cifar-10-batches-py`` in the data
    or cache folder, then a torchvision download. Krizhevsky (2009).
    """
    import torchvision

    _check_split(split, ("train", "test"))
    folder = data_dir() / "cifar10"
    train = split == "train"
    candidates = [
        ("class-folder JPEG archive", folder / f"cifar10_jpeg_{split}.tar.gz",
         lambda: load_image_folder(folder / f"cifar10_jpeg_{split}.tar.gz", subfolder=split)),
        ("class-folder tree", folder / split, lambda: load_image_folder(folder / split)),
    ]
    for root in (data_dir(), cache_dir() / "torchvision"):
        candidates.append(("torchvision's CIFAR-10", root / "cifar-10-batches-py", lambda root=root: _torchvision(
            torchvision.datasets.CIFAR10, train, root, False, CIFAR10_CLASSES)))
    data = _find("CIFAR-10", candidates, lambda: _torchvision(
        torchvision.datasets.CIFAR10, train, cache_dir() / "torchvision", True, CIFAR10_CLASSES))
    data.class_names = CIFAR10_CLASSES
    return data


def cifar10_splits(scheme: str = "official", val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """CIFAR-10 in train/validation/test parts, reproducible for a given ``seed``.

    - ``"official"``: the official test set; ``val_fraction`` of the official training set
      (stratified) becomes the validation set: 45,000 / 5,000 / 10,000 by default.
    - ``"80/10/10"``: all 60,000 images pooled and split 48,000 / 6,000 / 6,000.
    """
    train, test = load_cifar10("train"), load_cifar10("test")
    if scheme == "80/10/10":
        pooled = ImageArrays(np.concatenate([train.x, test.x]), np.concatenate([train.y, test.y]), CIFAR10_CLASSES)
        return split(pooled, (0.8, 0.1, 0.1), seed)
    if scheme != "official":
        raise ValueError(f"unknown scheme {scheme!r}: use 'official' or '80/10/10'")
    fit, val = train_test_split(np.arange(len(train)), test_size=val_fraction, stratify=train.y, random_state=seed)
    return Splits(train[np.sort(fit)], train[np.sort(val)], test)


def load_mnist(split: str = "test") -> ImageArrays:
    """MNIST digits, x (N, 28, 28). LeCun et al. (1998).

    Looks for ``<data dir>/mnist/mnist_<split>*.npz``, torchvision's ``MNIST`` folder in the data
    or cache folder, then a torchvision download.
    """
    return _mnist_like("MNIST", "mnist", split, [str(d) for d in range(10)])


def load_fashion_mnist(split: str = "train") -> ImageArrays:
    """Fashion-MNIST clothing images, x (N, 28, 28). Xiao, Rasul and Vollgraf (2017).

    Same search as :func:`load_mnist`, in ``<data dir>/fashion_mnist``; the largest matching
    ``.npz`` there wins.
    """
    return _mnist_like("Fashion-MNIST", "fashion_mnist", split, FASHION_MNIST_CLASSES)


def _mnist_like(name: str, folder_name: str, split: str, class_names) -> ImageArrays:
    import torchvision

    _check_split(split, ("train", "test"))
    dataset_class = {"mnist": torchvision.datasets.MNIST, "fashion_mnist": torchvision.datasets.FashionMNIST}[folder_name]
    folder = data_dir() / folder_name
    found = sorted(folder.glob(f"{folder_name}_{split}*.npz"), key=lambda p: p.stat().st_size) if folder.is_dir() else []
    npz = found[-1] if found else folder / f"{folder_name}_{split}*.npz"
    candidates = []
    for root in (data_dir(), cache_dir() / "torchvision"):
        candidates.append((f"torchvision's {name}", root / dataset_class.__name__ / "raw", lambda root=root: _torchvision(
            dataset_class, split == "train", root, False, class_names)))
    candidates.insert(0, (f"{name} arrays", npz, lambda: _npz(npz, class_names)))
    return _find(name, candidates, lambda: _torchvision(
        dataset_class, split == "train", cache_dir() / "torchvision", True, class_names))


def mnist_splits(name: str = "mnist", val_fraction: float = 0.1, seed: int = 0) -> Splits:
    """MNIST (``"mnist"``) or Fashion-MNIST (``"fashion_mnist"``) as train/validation/test, from the
    copies that can be found or downloaded; ``origin`` says which ran.

    - Both official sets (the test set has 1,000 images or more): the official test set, and
      ``val_fraction`` of the training set (stratified) for validation.
    - A training set but no usable test set (offline Fashion-MNIST holds 20 test images): the
      training set split 80/10/10.
    - No training set (offline MNIST holds only the official test set): the test set split 80/10/10.
    """
    loaders = {"mnist": (load_mnist, "MNIST"), "fashion_mnist": (load_fashion_mnist, "Fashion-MNIST")}
    if name not in loaders:
        raise ValueError(f"name must be one of {sorted(loaders)}, got {name!r}")
    load, title = loaders[name]
    found = {}
    for part in ("train", "test"):
        try:
            found[part] = load(part)
        except DatasetNotFoundError:
            pass
    train, test = found.get("train"), found.get("test")
    if train is not None and test is not None and len(test) >= 1000:
        fit, val = train_test_split(np.arange(len(train)), test_size=val_fraction, stratify=train.y, random_state=seed)
        return Splits(train[np.sort(fit)], train[np.sort(val)], test,
                      f"{title}: the official training set ({len(train):,} images, {val_fraction:.0%} of it held out "
                      f"for validation) and the official test set ({len(test):,})")
    if train is not None:
        why = f"its test set here has only {len(test)} images" if test is not None else "no test set was found"
        return _with_origin(split(train, (0.8, 0.1, 0.1), seed),
                            f"{title}: {len(train):,} training images split 80/10/10 into train/validation/test ({why})")
    if test is not None:
        return _with_origin(split(test, (0.8, 0.1, 0.1), seed),
                            f"{title}: no training set was found, so the official test set ({len(test):,} images) "
                            "is split 80/10/10 into train/validation/test")
    load("train")  # raises DatasetNotFoundError, naming every place it looked


def _with_origin(splits: Splits, origin: str) -> Splits:
    splits.origin = origin
    return splits


def load_muffin_chihuahua(image_size=64) -> ImageArrays:
    """Photos of muffins and chihuahuas (two classes), every subset pooled, resized to ``image_size``.

    Looks in ``<data dir>/muffin_chihuahua`` for a folder of ``<subset>/<class>/<image>`` (e.g. the
    course's 150 photos in ``train/`` and ``validation/``), or for Kaggle's download
    (``muffin-vs-chihuahua-image-classification.zip`` or ``archive.zip``, with ``train/`` and ``test/``)
    there or in the data folder itself. Pooling the subsets suits k-fold cross-validation.
    """
    folder = data_dir() / "muffin_chihuahua"
    archives = [place / name for place in (folder, data_dir())
                for name in ("muffin-vs-chihuahua-image-classification.zip", "archive.zip")]
    source = next((path for path in archives if path.is_file()), folder)
    if not source.exists():
        raise DatasetNotFoundError(
            f"muffin vs chihuahua was not found. Looked for the folder {folder} and for Kaggle's zip at:\n"
            + "\n".join(f"  - {path}" for path in archives)
            + "\nDownload it from kaggle.com/datasets/samuelcortinhas/muffin-vs-chihuahua-image-classification "
              f"into {folder}, or set COURSE_DATA_DIR.")
    subsets = sorted(path.name for path in source.iterdir() if path.is_dir()) if source.is_dir() else ["train", "test"]
    parts = [load_image_folder(source, subfolder=subset, image_size=image_size) for subset in subsets]
    return ImageArrays(np.concatenate([p.x for p in parts]), np.concatenate([p.y for p in parts]), parts[0].class_names)


def load_digits() -> ImageArrays:
    """scikit-learn's bundled 8×8 digits (1,797 images, x (N, 8, 8), pixels scaled to 0..255): always offline."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return ImageArrays(x, digits.target.astype(np.int64), [str(d) for d in range(10)])


def _check_split(split: str, allowed) -> None:
    if split not in allowed:
        raise ValueError(f"split must be one of {allowed}, got {split!r}")
