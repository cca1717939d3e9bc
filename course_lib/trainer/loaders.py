"""Data held whole on one device, batched and augmented there: ``DeviceLoader``, and the two
augmentations it applies to a whole batch at once, ``random_crop`` and ``random_flip``."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from course_lib.errors import CourseTypeError, CourseValueError
from course_lib.settings import get_device
from course_lib.validation import check_int, check_seed, describe

__all__ = ["DeviceLoader", "random_crop", "random_flip"]


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random translations: reflect-pad each image by ``padding`` and cut a window of the old size.

    x: (B, C, H, W) float. Returns (B, C, H, W); every image gets its own offset in
    [0, 2 * padding] along each axis, all gathered in one indexing operation.
    """
    _check_image_batch("random_crop", x)
    B, C, H, W = x.shape
    check_int("padding", padding, low=0, high=min(H, W) - 1, hint=f"reflect padding must be smaller than the "
              f"image ({H}x{W})")
    padded = F.pad(x, (padding,) * 4, mode="reflect")                                    # (B, C, H+2p, W+2p)
    dy, dx = torch.randint(0, 2 * padding + 1, (2, B, 1), device=x.device, generator=generator)
    rows = dy + torch.arange(H, device=x.device)                                         # (B, H)
    cols = dx + torch.arange(W, device=x.device)                                         # (B, W)
    batch = torch.arange(B, device=x.device)[:, None, None]                              # (B, 1, 1)
    crops = padded.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]        # (B, H, W, C)
    return crops.permute(0, 3, 1, 2)


def random_flip(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2. x: (B, C, H, W) -> (B, C, H, W)."""
    _check_image_batch("random_flip", x)
    flip = torch.rand(x.shape[0], device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class DeviceLoader:
    """Batches from a data set held whole on one device; augmentation runs there as tensor ops.

    The fast path for small image sets (CIFAR-10's training set is 150 MB as uint8): no worker
    processes and no per-image Python. Each epoch draws one permutation; crops and flips are
    applied to a whole batch at once, on the CPU as on a GPU.

    x: uint8 images (N, H, W, C) or (N, H, W), numpy or torch, as ``course_lib.data`` hands them
       out; kept as uint8 on the device and scaled to [0, 1] per batch. Or float images
       (N, C, H, W), numpy or torch, used as given.
    y: (N,) integer labels.
    mean, std: per-channel values (on the [0, 1] scale) to normalise with: x -> (x - mean) / std.
    crop_padding: if > 0, random crops of the original size from the image reflect-padded by it.
    flip: random horizontal flips.
    seed: seeds the loader's own ``torch.Generator`` (shuffling, crops, flips); None draws the
       seed from torch's global generator, so ``seed_everything`` makes runs repeat.

    Iterating gives (x, y): x float32 (B, C, H, W), y int64 (B,), both on ``self.device``.
    """

    def __init__(self, x, y, batch_size: int = 256, *, shuffle: bool = False, crop_padding: int = 0,
                 flip: bool = False, mean=None, std=None, drop_last: bool = False, device=None,
                 seed: int | None = None):
        self.device = get_device(device)
        batch_size = check_int("batch_size", batch_size, low=1, hint="the number of images per batch, e.g. 256")
        crop_padding = check_int("crop_padding", crop_padding, low=0, hint="0 for no crops, e.g. 4 for CIFAR-10")
        seed = check_seed("seed", seed, allow_none=True)
        x, y = _as_tensor("x (the images)", x), _as_tensor("y (the labels)", y)
        if len(x) != len(y):
            raise CourseValueError(f"x has {len(x)} samples but y has {len(y)}: give one label per image")
        if len(x) == 0:
            raise CourseValueError("DeviceLoader got an empty data set (0 samples): check how x and y were selected")
        if x.dtype == torch.uint8:
            if x.ndim == 3:
                x = x[..., None]                                      # (N, H, W) -> (N, H, W, 1)
            if x.ndim != 4:
                raise CourseValueError(f"uint8 images must be (N, H, W, C) or (N, H, W), got {tuple(x.shape)}")
            channels, scale = x.shape[3], 1 / 255
        elif x.is_floating_point():
            if x.ndim != 4:
                raise CourseValueError(f"float images must be (N, C, H, W), got {tuple(x.shape)}"
                                       + (": add the channel axis with x[:, None]" if x.ndim == 3 else ""))
            if x.shape[1] > 4 and x.shape[3] in (1, 3):                     # (N, 32, 32, 3): channels last
                raise CourseValueError(f"float images must be (N, C, H, W) (channels first), but {tuple(x.shape)} "
                                       f"looks channels last: use x.permute(0, 3, 1, 2) (torch) or "
                                       f"x.transpose(0, 3, 1, 2) (NumPy)")
            x, channels, scale = x.float(), x.shape[1], 1.0
            if not torch.isfinite(x.sum()) and not torch.isfinite(x).all():   # one cheap pass; exact only if needed
                bad = int((~torch.isfinite(x)).flatten(1).any(1).nonzero()[0])
                raise CourseValueError(f"x holds NaN or infinite values (the first in image {bad}): training on "
                                       f"them gives a NaN loss; fix or drop those images")
        else:
            raise CourseTypeError(f"images must be uint8 (N, H, W, C) with values 0..255, or float (N, C, H, W); "
                                  f"got {describe(x)}: convert with x.astype(np.uint8) if the values are 0..255, "
                                  f"else x.astype(np.float32)")
        if 0 in x.shape[1:]:
            raise CourseValueError(f"images must have at least one channel and one pixel, got shape {tuple(x.shape)}")
        if y.ndim != 1:
            raise CourseValueError(f"y must be (N,) class indices, got {describe(y)}"
                                   + (": one-hot? pass y.argmax(1)" if y.ndim == 2 else ""))
        if y.is_complex() or (y.is_floating_point() and not bool((y == y.round()).all())):
            raise CourseTypeError(f"y must hold class indices (whole numbers), got {describe(y)} with values such as "
                                  f"{y.flatten()[:3].tolist()}: pass the labels, not scores or probabilities")
        height, width = x.shape[1:3] if x.dtype == torch.uint8 else x.shape[2:4]
        if crop_padding >= min(height, width):
            raise CourseValueError(f"crop_padding must be smaller than the images ({height}x{width}), got "
                                   f"{crop_padding}: reflect padding cannot be wider than the image")
        self.x = x.to(self.device).contiguous()
        self.y = y.to(self.device, torch.int64)
        # One multiply-add per batch: x * scale + shift == (x * 1/255 - mean) / std, shapes (1, C, 1, 1).
        mean = _per_channel("mean", 0.0 if mean is None else mean, channels)
        std = _per_channel("std", 1.0 if std is None else std, channels)
        if not bool((std > 0).all()):
            raise CourseValueError(f"std must be positive for every channel, got {std.tolist()}")
        self._scale = (scale / std).reshape(1, channels, 1, 1).to(self.device)
        self._shift = (-mean / std).reshape(1, channels, 1, 1).to(self.device)
        self.batch_size, self.shuffle, self.drop_last = batch_size, shuffle, drop_last
        self.crop_padding, self.flip = crop_padding, flip
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(int(torch.randint(2**62, ()).item()) if seed is None else seed)

    def __len__(self) -> int:
        """Batches per epoch."""
        n = len(self.y)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self):
        n = len(self.y)
        order = torch.randperm(n, device=self.device, generator=self.generator) if self.shuffle else None
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            index = slice(start, start + self.batch_size) if order is None else order[start:start + self.batch_size]
            yield self._images(self.x[index]), self.y[index]

    def _images(self, x: torch.Tensor) -> torch.Tensor:
        """Stored batch -> normalised, augmented float32 (B, C, H, W)."""
        if x.dtype == torch.uint8:
            x = x.permute(0, 3, 1, 2)              # (B, H, W, C) -> (B, C, H, W) view, channels-last memory
        x = torch.addcmul(self._shift, x.float(), self._scale)
        if self.crop_padding:
            x = random_crop(x, self.crop_padding, self.generator)
        if self.flip:
            x = random_flip(x, self.generator)
        return x

    def __repr__(self) -> str:
        return (f"DeviceLoader({len(self.y)} samples, batch_size={self.batch_size}, shuffle={self.shuffle}, "
                f"crop_padding={self.crop_padding}, flip={self.flip}, device={self.device})")


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------
def _check_image_batch(name: str, x) -> None:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or not x.is_floating_point():
        raise CourseValueError(f"{name} takes a float tensor of images (B, C, H, W), got {describe(x)}")


def _as_tensor(name: str, values) -> torch.Tensor:
    """``values`` (array, tensor, nested lists) as a tensor; a clear error for anything else."""
    if hasattr(values, "x") and hasattr(values, "y") and hasattr(values, "class_names"):
        raise CourseTypeError(f"{name} must be an array, got images with labels ({type(values).__name__}): pass "
                              f"data.x and data.y, as in DeviceLoader(data.x, data.y, batch_size=256)")
    try:
        tensor = torch.as_tensor(values)
    except (TypeError, ValueError, RuntimeError) as err:
        raise CourseTypeError(f"{name} must be an array or tensor of numbers, got {describe(values)} ({err})") from None
    if tensor.ndim == 0:
        raise CourseValueError(f"{name} must hold one entry per sample, got the single number {describe(values)}")
    return tensor


def _per_channel(name: str, values, channels: int) -> torch.Tensor:
    """``mean`` or ``std`` as ``channels`` float32 numbers (one number is used for every channel)."""
    try:
        tensor = torch.as_tensor(values, dtype=torch.float32).flatten()
    except (TypeError, ValueError, RuntimeError):
        tensor = None
    if tensor is None or len(tensor) not in (1, channels) or not bool(torch.isfinite(tensor).all()):
        raise CourseValueError(f"{name} must be one finite number or {channels} (one per channel), got "
                               f"{describe(values)}")
    return tensor.expand(channels)
