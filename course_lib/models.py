"""Small image classifiers used across the course, from an MLP to a fast CIFAR-10 ConvNet.

Every model takes ``in_channels`` and ``num_classes`` (MLPs also ``image_size``), so the same
class works on CIFAR-10 (3x32x32, 10 classes), MNIST (1x28x28) and two-class problems. Inputs are
float tensors of shape (N, C, H, W); outputs are logits of shape (N, num_classes).

Parameter counts in the docstrings are for the default arguments (3x32x32 input, 10 classes);
``tests/test_models.py`` checks them. Sizes that cannot build a model (0 channels, 2.5 classes, a
dropout of 1.5) raise ``CourseValueError`` or ``CourseTypeError`` naming the argument.

| model          | idea                                                    | parameters |
|----------------|---------------------------------------------------------|-----------:|
| ``MLP1``       | flatten, one hidden layer                               |  1,578,506 |
| ``MLP2``       | flatten, two hidden layers                              |  1,707,274 |
| ``PlainCNN``   | 3, 4 or 5 conv layers, no normalisation                 |     94,538 |
| ``SimpleCNN``  | two conv layers and a two-layer classifier              |    151,882 |
| ``DeepCNN``    | six conv layers with batch norm and dropout             |    288,746 |
| ``TwoBranchNet``| pooled-input MLP branch + conv branch, logits summed   |     33,140 |
| ``FastCIFARNet``| airbench-style, ~17.5M multiply-adds per image         |    144,592 |
"""
from __future__ import annotations

import math

import torch
from torch import nn

from course_lib.errors import CourseValueError
from course_lib.validation import check_int, check_module, check_number, describe, explain_forward_error

__all__ = [
    "MLP1", "MLP2", "PlainCNN", "SimpleCNN", "DeepCNN", "TwoBranchNet",
    "FastCIFARNet", "count_params", "count_macs",
]


_MAX_WIDTH = 4096               # channels or units of one layer: a 3x3 conv of 4096 to 4096 fits in 1 GiB
_MAX_CLASSES = 65536
_MAX_LAYER_WEIGHTS = 2**28      # one layer's weights: 1 GiB of float32


def _num_pixels(image_size) -> int:
    """32 -> 1024, (28, 28) -> 784."""
    hint = "the images' side in pixels (image_size=32) or (height, width)"
    if isinstance(image_size, (tuple, list)) and len(image_size) == 2:
        height, width = (check_int("image_size", side, low=1, high=4096, hint=hint) for side in image_size)
    else:
        height = width = check_int("image_size", image_size, low=1, high=4096, hint=hint)
    return height * width


def _sizes(in_channels, num_classes, **widths) -> None:
    """Check the arguments every model takes, and any layer widths, as whole numbers >= 1."""
    check_int("in_channels", in_channels, low=1, high=_MAX_WIDTH, hint="3 for colour images, 1 for grayscale")
    check_int("num_classes", num_classes, low=1, high=_MAX_CLASSES,
              hint="the number of classes (1 gives one logit for two classes)")
    for name, value in widths.items():
        for width in value if isinstance(value, (tuple, list)) else [value]:
            check_int(name, width, low=1, high=_MAX_WIDTH, hint="layer widths are whole numbers of units or channels")


def _flattened(model: str, in_channels: int, image_size, hidden: int) -> int:
    """C * H * W, the inputs of an MLP's first layer, if that layer (times ``hidden``) fits in memory."""
    inputs = in_channels * _num_pixels(image_size)
    if inputs * hidden > _MAX_LAYER_WEIGHTS:
        raise CourseValueError(
            f"{model}'s first layer would hold {inputs:,} x {hidden:,} = {inputs * hidden:,} weights, more than "
            f"{_MAX_LAYER_WEIGHTS:,} (1 GiB): use a smaller image_size or hidden, or a ConvNet for images this large")
    return inputs


class MLP1(nn.Module):
    """Flatten, one hidden ReLU layer, linear classifier.

    Input (N, C, H, W), output (N, num_classes).
    Defaults (3x32x32, hidden 512, 10 classes): 1,578,506 parameters.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size=32, hidden: int = 512):
        super().__init__()
        _sizes(in_channels, num_classes, hidden=hidden)
        self.net = nn.Sequential(
            nn.Flatten(),                                                # (N, C*H*W)
            nn.Linear(_flattened("MLP1", in_channels, image_size, hidden), hidden),
            nn.ReLU(),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.net(x)


class MLP2(nn.Module):
    """Flatten, two hidden ReLU layers, linear classifier.

    Input (N, C, H, W), output (N, num_classes).
    Defaults (3x32x32, hidden (512, 256), 10 classes): 1,707,274 parameters.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size=32, hidden=(512, 256)):
        super().__init__()
        if not isinstance(hidden, (tuple, list)) or len(hidden) != 2:
            raise CourseValueError(f"MLP2's hidden must be two widths (h1, h2), got {describe(hidden)}")
        _sizes(in_channels, num_classes, hidden=hidden)
        h1, h2 = hidden
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(_flattened("MLP2", in_channels, image_size, h1), h1),
            nn.ReLU(),
            nn.Linear(h1, h2),
            nn.ReLU(),
            nn.Linear(h2, num_classes),
        )

    def forward(self, x):
        return self.net(x)


class PlainCNN(nn.Module):
    """A plain stack of ``depth`` 3x3 conv + ReLU layers, then global average pooling.

    Channels grow as width, 2*width, 4*width, 4*width, 4*width; the first three layers are each
    followed by 2x2 max pooling (32 -> 16 -> 8 -> 4; 28 -> 14 -> 7 -> 3). No normalisation and no
    shortcuts, so it shows what depth alone does.

    Input (N, C, H, W), output (N, num_classes).
    Defaults (3x32x32, depth 3, width 32, 10 classes): 94,538 parameters (depth 4: 242,122; depth 5: 389,706).
    """

    def __init__(self, depth: int = 3, in_channels: int = 3, num_classes: int = 10, width: int = 32):
        super().__init__()
        if isinstance(depth, bool) or depth not in (3, 4, 5):
            raise CourseValueError(f"PlainCNN depth must be 3, 4 or 5, got {describe(depth)}")
        _sizes(in_channels, num_classes)
        check_int("width", width, low=1, high=_MAX_WIDTH // 4, hint="its deepest layers have 4 * width channels")
        channels = [width, 2 * width, 4 * width, 4 * width, 4 * width][:depth]
        layers, c_in = [], in_channels
        for i, c_out in enumerate(channels):
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU()]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, num_classes)

    def forward(self, x):
        return self.head(self.features(x).mean(dim=(2, 3)))  # global average pooling


class SimpleCNN(nn.Module):
    """Two conv + ReLU + max-pool blocks, then a two-layer classifier on a 4x4 feature map.

    (N, C, 32, 32) -> conv 32 -> (N, 32, 16, 16) -> conv 64 -> (N, 64, 8, 8)
    -> adaptive average pool -> (N, 64, 4, 4) -> linear 128 -> linear num_classes.
    The adaptive pool makes any input size of at least 4x4 after pooling work (28x28 too).

    Input (N, C, H, W), output (N, num_classes).
    Defaults (3x32x32, 10 classes): 151,882 parameters.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        _sizes(in_channels, num_classes)
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(64 * 4 * 4, 128), nn.ReLU(), nn.Linear(128, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


def _conv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
    """3x3 conv (no bias: batch norm has one) + batch norm + ReLU; keeps H and W."""
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class DeepCNN(nn.Module):
    """VGG-style: three blocks of two conv-BN-ReLU layers, max pooling and dropout.

    (N, C, 32, 32) -> (N, w, 16, 16) -> (N, 2w, 8, 8) -> (N, 4w, 4, 4) -> global average pool
    -> dropout -> linear.

    Input (N, C, H, W), output (N, num_classes).
    Defaults (3x32x32, width 32, 10 classes): 288,746 parameters.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, width: int = 32, dropout: float = 0.25):
        super().__init__()
        _sizes(in_channels, num_classes)
        check_int("width", width, low=1, high=_MAX_WIDTH // 4, hint="its last block has 4 * width channels")
        check_number("dropout", dropout, low=0, high=1, high_open=True, hint="the probability of zeroing a unit")
        blocks, c_in = [], in_channels
        for c_out in (width, 2 * width, 4 * width):
            blocks += [_conv_bn_relu(c_in, c_out), _conv_bn_relu(c_out, c_out), nn.MaxPool2d(2), nn.Dropout(dropout)]
            c_in = c_out
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(c_in, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.features(x))


class TwoBranchNet(nn.Module):
    """Two models in one: an MLP on a pooled copy of the input plus a small ConvNet; logits summed.

    MLP branch:  (N, C, H, W) -> average pool to 8x8 -> (N, C*64) -> linear 64 -> ReLU -> linear.
    Conv branch: (N, C, H, W) -> two conv-BN-ReLU + max-pool blocks (32, 64) -> global average pool -> linear.
    Output: mlp(x) + conv(x), shape (N, num_classes). The forward pass is not a single chain, which
    is why this cannot be an ``nn.Sequential``.

    Defaults (3x32x32, 10 classes): 33,140 parameters.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, hidden: int = 64):
        super().__init__()
        _sizes(in_channels, num_classes, hidden=hidden)
        self.mlp_branch = nn.Sequential(
            nn.AdaptiveAvgPool2d(8), nn.Flatten(),
            nn.Linear(in_channels * 64, hidden), nn.ReLU(), nn.Linear(hidden, num_classes),
        )
        self.conv_branch = nn.Sequential(
            _conv_bn_relu(in_channels, 32), nn.MaxPool2d(2),
            _conv_bn_relu(32, 64), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, num_classes),
        )

    def forward(self, x):
        return self.mlp_branch(x) + self.conv_branch(x)


class FastCIFARNet(nn.Module):
    """A small, fast CIFAR-10 ConvNet in the spirit of airbench (Jordan, 2024).

    stem:   3x3 conv -> BN -> GELU                      (N, 16, 32, 32)
    block:  3x3 conv -> 2x2 max pool -> BN -> GELU -> 3x3 conv -> BN -> GELU, three times:
            (N, 32, 16, 16) -> (N, 64, 8, 8) -> (N, 64, 4, 4)
    head:   global max pool -> linear (no bias) -> times ``logit_scale``   (N, num_classes)

    Pooling right after the first conv of a block makes the second conv 4x cheaper. The batch
    norms learn only a shift (their scale stays 1), as in airbench. ``widths`` = (stem, block 1,
    block 2, block 3).

    Input (N, C, H, W), output (N, num_classes).
    Defaults (3x32x32, widths (16, 32, 64, 64), 10 classes): 144,592 parameters and about
    17.5M multiply-adds per image.

    Recipe (``scripts/bench_trainer.py --cifar``): 10 epochs of batch 256 from a ``DeviceLoader``
    with random crops (reflect padding 2) and flips; SGD with Nesterov momentum 0.85, weight decay
    5e-4, OneCycleLR to 0.4 (20% warm-up, linear); label smoothing 0.2; channels_last; flip
    averaging at test time. CIFAR-10 test accuracy 85.6-86.0% (3 seeds); about 47 s per epoch on
    2 CPU cores.
    """

    def __init__(self, in_channels: int = 3, num_classes: int = 10, widths=(16, 32, 64, 64),
                 logit_scale: float = 1 / 8):
        super().__init__()
        if not isinstance(widths, (tuple, list)) or len(widths) < 2:
            raise CourseValueError(f"FastCIFARNet's widths must be (stem, block 1, ...), at least two widths, got "
                                   f"{describe(widths)}")
        _sizes(in_channels, num_classes, widths=widths)
        check_number("logit_scale", logit_scale, low=0, low_open=True, hint="e.g. 1/8")
        stem, *block_widths = widths
        layers = [nn.Conv2d(in_channels, stem, 3, padding=1, bias=False), _shift_only_bn(stem), nn.GELU()]
        c_in = stem
        for c_out in block_widths:
            layers += [
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.MaxPool2d(2), _shift_only_bn(c_out), nn.GELU(),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), _shift_only_bn(c_out), nn.GELU(),
            ]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c_in, num_classes, bias=False))
        self.logit_scale = logit_scale

    def forward(self, x):
        return self.head(self.features(x)) * self.logit_scale


def _shift_only_bn(channels: int) -> nn.BatchNorm2d:
    """Batch norm whose scale is fixed at 1 (only the shift is learned); fast running statistics."""
    bn = nn.BatchNorm2d(channels, momentum=0.4, eps=1e-12)
    bn.weight.requires_grad_(False)
    return bn


def count_params(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (elements, not tensors); ``trainable_only`` skips frozen ones."""
    check_module("model", model)
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def count_macs(model: nn.Module, input_shape=(3, 32, 32)) -> int:
    """Multiply-adds of one forward pass for one input of shape (C, H, W) (or any other per-sample shape).

    Counted by torch's ``torch.utils.flop_counter.FlopCounterMode``, which sees every operation the
    forward runs, not only layers: convolutions of any dimension (transposed and grouped ones too),
    ``nn.Linear``, matrix products (``x @ w``, ``F.linear``, ``F.conv2d`` in a ``forward``) and
    attention. It counts 2 FLOPs per multiply-add, so this is its total / 2; element-wise work
    (biases, batch norm, activations, pooling) counts nothing, as it is small next to these. Runs
    one forward pass, on a zero input, in eval mode and without gradients.
    """
    from torch.utils.flop_counter import FlopCounterMode   # imported here: it costs 0.25 s on first use

    check_module("model", model)
    if not isinstance(input_shape, (tuple, list, torch.Size)) or not input_shape:
        raise CourseValueError(f"input_shape must be the shape of one input, e.g. (3, 32, 32) for (C, H, W), got "
                               f"{describe(input_shape)}")
    input_shape = tuple(check_int("input_shape", side, low=1, hint="sizes of one input") for side in input_shape)
    if math.prod(input_shape) > 2**26:
        raise CourseValueError(f"input_shape {input_shape} is {math.prod(input_shape):,} numbers per input, more than "
                               f"2**26: pass the shape of one input the model is used with, e.g. (3, 32, 32)")
    was_training = model.training
    param = next(model.parameters(), torch.zeros(()))
    x = torch.zeros(1, *input_shape, device=param.device, dtype=param.dtype)
    counter = FlopCounterMode(display=False)
    try:
        model.eval()
        with torch.no_grad(), counter:
            model(x)
    except RuntimeError as err:
        explained = explain_forward_error(model, x, err, "Pass the (C, H, W) of the images the model was built "
                                          "for as input_shape.")
        if explained is None:
            raise
        raise explained from err
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2
