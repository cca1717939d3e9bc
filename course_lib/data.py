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
import warnings
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from sklearn.model_selection import train_test_split

from course_lib.errors import CourseTypeError, CourseValueError, DatasetNotFoundError, SkippedFileWarning
from course_lib.settings import cache_dir, data_dir, downloads_allowed
from course_lib.validation import check_choice, check_int, check_number, check_path, check_seed, describe

__all__ = [
    "IMAGE_SUFFIXES", "CIFAR10_CLASSES", "FASHION_MNIST_CLASSES", "ImageArrays", "Splits", "split",
    "load_image_folder", "load_cifar10", "cifar10_splits", "load_mnist", "load_fashion_mnist", "mnist_splits",
    "load_muffin_chihuahua", "load_digits", "prepare_cache",
]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
_NOT_DATA = {"thumbs.db", "desktop.ini", "__macosx"}  # what file managers leave in folders
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@dataclass
class ImageArrays:
    """Images with labels.

    - x: uint8 array, (N, H, W, C) for colour or (N, H, W) for grayscale (any array with N rows works)
    - y: int64 array (N,), values in [0, len(class_names))
    - class_names: one name per label

    Index with a slice, an index array or a boolean mask to get a part (``data[:100]``); arrays and
    tensors are turned into NumPy arrays, integer labels into int64.
    """

    x: np.ndarray
    y: np.ndarray
    class_names: list[str]

    def __post_init__(self):
        if isinstance(self.class_names, (str, bytes)) or not isinstance(self.class_names, Iterable):
            raise CourseTypeError(f"class_names must be a list of names, one per label, got "
                                  f"{describe(self.class_names)}")
        self.class_names = [str(name) for name in self.class_names]
        self.x, self.y = _as_array("x (the images)", self.x), _as_array("y (the labels)", self.y)
        if self.x.ndim == 0 or self.y.ndim != 1:
            raise CourseValueError(f"ImageArrays needs x with one row per image and y of shape (N,), got x "
                                   f"{describe(self.x)} and y {describe(self.y)}")
        if len(self.x) != len(self.y):
            raise CourseValueError(f"{len(self.x)} images but {len(self.y)} labels: give one label per image")
        if self.y.dtype.kind not in "iub":
            raise CourseTypeError(f"labels must be integer class indices, got {describe(self.y)}: convert whole "
                                  f"numbers with y.astype(np.int64)")
        self.y = self.y.astype(np.int64, copy=False)
        if len(self.y) and (self.y.min() < 0 or self.y.max() >= len(self.class_names)):
            raise CourseValueError(
                f"labels run from {self.y.min()} to {self.y.max()} but there are {len(self.class_names)} class names, "
                f"so labels must lie in 0..{len(self.class_names) - 1}: give one name per class, in label order")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index) -> ImageArrays:
        if isinstance(index, (int, np.integer)):
            raise CourseTypeError(f"ImageArrays[{index}] would be one image: use data.x[{index}] and data.y[{index}], "
                                  f"or data[{index}:{index} + 1] for ImageArrays of one")
        try:
            return ImageArrays(self.x[index], self.y[index], self.class_names)
        except IndexError as err:
            raise CourseValueError(f"cannot index {len(self)} images with {describe(index)}: {err}") from None

    def sample(self, n: int | None, seed: int = 0) -> ImageArrays:
        """A stratified random subset of ``n`` images (all of them when ``n`` is None or too big)."""
        n = None if n is None else check_int("n", n, low=1, hint="the number of images to keep, or None for all")
        seed = check_seed("seed", seed)
        if n is None or n >= len(self):
            return self
        index, _ = _stratified(np.arange(len(self)), self.y, seed, f"a sample of {n}", train_size=n)
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
    if not isinstance(data, ImageArrays):
        raise CourseTypeError(f"split takes ImageArrays (images with labels), got {describe(data)}: "
                              f"build one with ImageArrays(x, y, class_names)")
    try:
        fractions = [float(f) for f in fractions]
    except (TypeError, ValueError):
        fractions = None
    if fractions is None or len(fractions) != 3 or not np.all(np.isfinite(fractions)) \
            or abs(sum(fractions) - 1) > 1e-9 or min(fractions) <= 0:
        raise CourseValueError(f"fractions must be three positive numbers that sum to 1 (train, validation, "
                               f"test), got {describe(fractions)}; for example (0.8, 0.1, 0.1)")
    seed = check_seed("seed", seed)
    index = np.arange(len(data))
    train, rest = _stratified(index, data.y, seed, f"a {fractions[0]:g} training part", train_size=fractions[0])
    val_share = fractions[1] / (fractions[1] + fractions[2])
    val, test = _stratified(rest, data.y[rest], seed, f"validation and test parts (the images left of {len(data)} "
                                                                 f"after the training part)", train_size=val_share)
    return Splits(data[np.sort(train)], data[np.sort(val)], data[np.sort(test)])


def _stratified(index, y, seed: int, what: str, **size):
    """``train_test_split(index, **size)`` stratified by ``y``; a clear error when the classes are too small."""
    try:
        return train_test_split(index, **size, stratify=y, random_state=seed)
    except ValueError as err:
        counts = np.bincount(y) if len(y) else np.zeros(0, int)
        counts = counts[counts > 0]
        raise CourseValueError(
            f"cannot take {what} from {len(y)} images of {len(counts)} classes (the smallest has "
            f"{counts.min() if len(counts) else 0}) with every class on both sides ({err}): every class needs at least "
            f"2 images, and each part at least one image per class; use more images or larger parts") from None


# ---------------------------------------------------------------- image folders and archives

def load_image_folder(source, subfolder: str | None = None, image_size=None) -> ImageArrays:
    """Images in class folders, from a folder, a ``.zip`` or a ``.tar.gz``.

    The layout is ``<root>/<class name>/<image>`` where ``<root>`` is ``source`` itself, its
    ``subfolder`` (for archives holding ``train/`` and ``test/``), or the single folder that an
    archive wraps everything in. Labels follow the sorted class names.

    - image_size: int or (height, width) to resize to; needed when the images differ in size.

    Photos of any size and mode load as RGB: the EXIF orientation is applied, grayscale, palette,
    CMYK and 16-bit images are converted, and transparent parts become white. A file that cannot
    be read as an image (damaged, truncated, or not an image at all), or that lies outside the
    class folders, is left out with one ``SkippedFileWarning`` naming it; the load fails only when
    no image is left.

    Returns ImageArrays with x of shape (N, H, W, 3).
    """
    source = check_path("source", source)
    if subfolder is not None:
        if not isinstance(subfolder, str) or not subfolder.strip("/"):
            raise CourseTypeError(f"subfolder must be the name of a folder inside {source} (e.g. 'train'), "
                                  f"or None, got {describe(subfolder)}")
        subfolder = subfolder.strip("/")
    size = _image_size(image_size)
    if not source.exists():
        raise DatasetNotFoundError(f"no image folder or archive at {source}: check the path (relative to "
                                   f"{Path.cwd()}), or use a folder of <class>/<image> files, a .zip or a .tar.gz")
    key = f"v2|{source.resolve()}|{_fingerprint(source)}|{subfolder}|{size}"
    return _cached(f"folder-{source.name}", key, lambda: _decode_folder(source, subfolder, size), source)


def _image_size(image_size) -> tuple[int, int] | None:
    """None, or (height, width) from an int or a pair of ints."""
    if image_size is None:
        return None
    hint = "give one whole number for square images (image_size=64) or (height, width)"
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        return tuple(check_int("image_size", side, low=1, hint=hint) for side in image_size)
    return (check_int("image_size", image_size, low=1, hint=hint),) * 2


def _fingerprint(path: Path) -> str:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return hashlib.sha1("".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files).encode()).hexdigest()


def _decode_folder(source: Path, subfolder, size) -> tuple[ImageArrays, list[str]]:
    """The images under ``source``'s class folders, and the files left out (each "path: reason")."""
    images, others, skipped = [], [], []  # (path parts, reader) of image files and of other files
    for path, read in _iter_files(source, skipped):
        parts = PurePosixPath(path).parts
        if any(part.startswith(".") or part.lower() in _NOT_DATA for part in parts):
            continue
        (images if PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES else others).append((parts, read))
    if not images:
        raise DatasetNotFoundError(f"{source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})"
                                   + _listed("; files left out", skipped))
    root = _root([parts for parts, _ in images], subfolder, source)
    depth = len(root) + 2  # root/<class>/<image>
    below = lambda entries: [(parts, read) for parts, read in entries if parts[:len(root)] == root]  # noqa: E731
    images, others = below(images), below(others)
    skipped += [f"{'/'.join(parts)}: not in a class folder" for parts, _ in images if len(parts) != depth]
    skipped += [f"{'/'.join(parts)}: not an image ({PurePosixPath(*parts).suffix or 'no suffix'})"
                for parts, _ in others if len(parts) == depth]
    images = sorted(((parts, read) for parts, read in images if len(parts) == depth), key=lambda entry: entry[0])
    class_names = sorted({parts[-2] for parts, _ in images})
    label = {name: i for i, name in enumerate(class_names)}
    pixels, labels, names = [], [], []
    for parts, read in images:
        try:
            pixels.append(_decode_image(read(), size))
        except Exception as err:  # PIL's errors for damaged, truncated and non-image files vary
            skipped.append(f"{'/'.join(parts)}: not a readable image ({type(err).__name__}: {err})")
            continue
        labels.append(label[parts[-2]])
        names.append("/".join(parts))
    if not pixels:
        raise DatasetNotFoundError(f"none of the {len(images)} image files in {source} could be read"
                                   + _listed("", skipped) + "\nReplace them, or point at another folder or archive.")
    shapes = Counter(image.shape[:2] for image in pixels)
    if len(shapes) > 1:
        (common, _), (other, _) = shapes.most_common(2)
        examples = [names[[im.shape[:2] for im in pixels].index(shape)] for shape in (common, other)]
        raise CourseValueError(
            f"images in {source} differ in size ({len(shapes)} sizes, e.g. {common[0]}x{common[1]} in {examples[0]} "
            f"and {other[0]}x{other[1]} in {examples[1]}): pass image_size=(height, width) to resize them all")
    return ImageArrays(np.stack(pixels), np.array(labels, dtype=np.int64), class_names), skipped


def _decode_image(data: bytes, size) -> np.ndarray:
    """One image file's bytes -> (H, W, 3) uint8 RGB, upright (EXIF), resized to ``size`` = (height, width)."""
    from PIL import Image, ImageOps

    with Image.open(io.BytesIO(data)) as opened:
        opened.load()
        try:
            upright = ImageOps.exif_transpose(opened)
        except Exception:  # a broken EXIF block: keep the pixels as stored
            upright = opened
        image = _rgb(upright)
    if size is not None:
        image = image.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(image)


def _rgb(image):
    """A PIL image of any mode as RGB: 16-bit and float scaled to 8 bits, transparency on white."""
    from PIL import Image

    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max(initial=0) > 255 else 255.0
        image = Image.fromarray(np.clip(np.round(values * (255 / top)), 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return image.convert("RGB")


def _root(paths, subfolder, source) -> tuple:
    """The path parts of the folder that holds the class folders: ``subfolder`` (or ``()``), then
    down through any single folder that wraps everything. Images at other depths than
    <root>/<class>/<image> are left for the caller to skip, unless there are no images at that depth."""
    root = PurePosixPath(subfolder).parts if subfolder is not None else ()
    paths = [parts[len(root):] for parts in paths if parts[:len(root)] == root]
    if not paths:
        raise DatasetNotFoundError(f"{source} has no images under {subfolder}/")
    while len({parts[0] for parts in paths}) == 1 and min(len(parts) for parts in paths) > 2:
        root += (paths[0][0],)
        paths = [parts[1:] for parts in paths]
    depths = Counter(len(parts) for parts in paths)
    if depths.most_common(1)[0][0] != 2:
        raise CourseValueError(
            f"{source}: expected <class>/<image> below the root, found images at depths {sorted(depths)}; "
            "pass subfolder='train' (or similar) to pick one part"
        )
    return root


def _iter_files(source: Path, skipped: list):
    """Yield (relative posix path, reader) for every file in a folder, zip or tar archive.

    A damaged archive yields the files before the damage and adds a line about it to ``skipped``.
    """
    if source.is_dir():
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            yield path.relative_to(source).as_posix(), path.read_bytes
    elif zipfile.is_zipfile(source):
        archive = zipfile.ZipFile(source)
        for info in archive.infolist():
            if not info.is_dir():
                yield info.filename, (lambda name=info.filename: archive.read(name))
    elif tarfile.is_tarfile(source):
        try:
            with tarfile.open(source) as archive:
                for member in archive:
                    if member.isfile():
                        data = archive.extractfile(member).read()
                        yield member.name, (lambda data=data: data)
        except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
            skipped.append(f"the rest of {source.name}: the archive is damaged ({type(err).__name__}: {err})")
    elif source.name.lower().endswith((".zip", ".tar", ".tar.gz", ".tgz")):
        raise DatasetNotFoundError(f"{source} is a damaged archive (cut short while downloading or copying?): "
                                   f"nothing in it can be read; download or copy it again")
    else:
        raise CourseValueError(f"{source} is neither a folder nor a .zip or .tar(.gz) archive: unpack it, or "
                               f"give a folder of <class>/<image> files")


def _listed(title: str, skipped: list, shown: int = 10) -> str:
    """Lines naming the first ``shown`` skipped files, and how many more there are."""
    if not skipped:
        return ""
    more = f"\n  ... and {len(skipped) - shown} more" if len(skipped) > shown else ""
    return f"{title}:\n" + "\n".join(f"  - {line}" for line in skipped[:shown]) + more


def _warn_skipped(source: Path, skipped: list) -> None:
    if skipped:
        warnings.warn(f"{source}: left out {len(skipped)} file(s) that are not readable images in a class folder"
                      + _listed("", skipped), SkippedFileWarning, stacklevel=4)


def _cached(stem: str, key: str, build, source: Path) -> ImageArrays:
    """Load ``build()``'s result from the cache, or build and store it (atomically); warn about the
    files ``build`` left out either way."""
    path = cache_dir() / "arrays" / f"{stem}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.exists():
        with np.load(path) as saved:
            _warn_skipped(source, list(saved["skipped"]) if "skipped" in saved.files else [])
            return ImageArrays(saved["x"], saved["y"], list(saved["class_names"]))
    data, skipped = build()
    _warn_skipped(source, skipped)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return data  # a read-only cache (the grader's sandbox): decode again next time
    if not os.access(path.parent, os.W_OK):
        return data
    partial = path.with_suffix(f".{os.getpid()}.partial.npz")
    np.savez(partial, x=data.x, y=data.y, class_names=np.array(data.class_names), skipped=np.array(skipped, dtype=str))
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
        except Exception as err:  # a damaged copy: say so, and try the next place
            tried.append(f"  - {description}: {path} is there but could not be read ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})")
    if download is not None and downloads_allowed():
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
    _check_split(split, ("train", "test"))
    import torchvision

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
    check_choice("scheme", scheme, ("official", "80/10/10"))
    val_fraction = check_number("val_fraction", val_fraction, low=0, high=1, low_open=True, high_open=True,
                                hint="the share of the official training set held out, e.g. 0.1")
    seed = check_seed("seed", seed)
    train, test = load_cifar10("train"), load_cifar10("test")
    if scheme == "80/10/10":
        pooled = ImageArrays(np.concatenate([train.x, test.x]), np.concatenate([train.y, test.y]), CIFAR10_CLASSES)
        return split(pooled, (0.8, 0.1, 0.1), seed)
    fit, val = _stratified(np.arange(len(train)), train.y, seed, f"{val_fraction:g} for validation",
                          test_size=val_fraction)
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
    _check_split(split, ("train", "test"))
    import torchvision

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


def prepare_cache() -> list[str]:
    """Decode the data sets stored as images (CIFAR-10's class-folder JPEGs, the muffin photos at
    notebook 06's 64×64) into the cache, so that later loads only read arrays; the autograder's
    sandboxes see the cache read-only and would otherwise decode them for every student.

    Returns the names of those found; nothing is downloaded.
    """
    folder = data_dir() / "cifar10"
    loads = {f"CIFAR-10 {split}": lambda split=split: load_cifar10(split) for split in ("train", "test")
             if (folder / f"cifar10_jpeg_{split}.tar.gz").is_file() or (folder / split).is_dir()}
    loads["muffin vs chihuahua"] = load_muffin_chihuahua
    prepared = []
    for name, load in loads.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # skipped files: each notebook that loads them says so
            try:
                load()
            except DatasetNotFoundError:
                continue
        prepared.append(name)
    return prepared


def load_digits() -> ImageArrays:
    """scikit-learn's bundled 8×8 digits (1,797 images, x (N, 8, 8), pixels scaled to 0..255): always offline."""
    from sklearn.datasets import load_digits as sklearn_digits

    digits = sklearn_digits()
    x = np.round(digits.images * (255 / 16)).astype(np.uint8)
    return ImageArrays(x, digits.target.astype(np.int64), [str(d) for d in range(10)])


def _check_split(split: str, allowed) -> None:
    check_choice("split", split, allowed)


def _as_array(name: str, values) -> np.ndarray:
    """``values`` (array, tensor on any device, nested lists) as a NumPy array of numbers."""
    if hasattr(values, "detach"):
        values = values.detach().cpu()
    try:
        array = np.asarray(values)
    except (ValueError, TypeError) as err:
        raise CourseValueError(f"{name} must be an array of numbers with one row per image, got {describe(values)} "
                               f"({err})") from None
    if array.dtype.kind not in "biuf":
        raise CourseTypeError(f"{name} must hold numbers, got {describe(values)} with dtype {array.dtype}")
    return array
