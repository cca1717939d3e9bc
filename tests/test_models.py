"""course_lib.models: output shapes on CIFAR- and MNIST-sized inputs, and the documented sizes."""
import re

import pytest
import torch

from course_lib import models
from course_lib.models import (
    MLP1, MLP2, DeepCNN, FastCIFARNet, PlainCNN, SimpleCNN, TwoBranchNet, count_macs, count_params,
)

# Parameters for the default arguments on 3x32x32 inputs and 10 classes; the docstrings say the same.
EXPECTED_PARAMS = {
    "MLP1": (MLP1, 1_578_506),
    "MLP2": (MLP2, 1_707_274),
    "PlainCNN": (PlainCNN, 94_538),
    "SimpleCNN": (SimpleCNN, 151_882),
    "DeepCNN": (DeepCNN, 288_746),
    "TwoBranchNet": (TwoBranchNet, 33_140),
    "FastCIFARNet": (FastCIFARNet, 144_592),
}


def build(cls, in_channels, num_classes, image_size):
    if cls in (MLP1, MLP2):
        return cls(in_channels=in_channels, num_classes=num_classes, image_size=image_size)
    return cls(in_channels=in_channels, num_classes=num_classes)


@pytest.mark.parametrize("name", EXPECTED_PARAMS)
@pytest.mark.parametrize("in_channels, size, num_classes", [(3, 32, 10), (1, 28, 10), (3, 32, 2)])
def test_output_shape(name, in_channels, size, num_classes):
    torch.manual_seed(0)
    model = build(EXPECTED_PARAMS[name][0], in_channels, num_classes, size)
    x = torch.randn(4, in_channels, size, size)
    logits = model(x)
    assert logits.shape == (4, num_classes)
    assert torch.isfinite(logits).all()
    logits.sum().backward()                                   # every trainable parameter gets a gradient
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", EXPECTED_PARAMS)
def test_parameter_count_matches_the_docstring(name):
    cls, expected = EXPECTED_PARAMS[name]
    assert count_params(cls()) == expected
    assert f"{expected:,} parameters" in cls.__doc__, f"{name}'s docstring should say {expected:,} parameters"
    table_row = re.search(rf"``{name}``.*\|\s*([\d,]+)\s*\|", models.__doc__)
    assert table_row and table_row.group(1) == f"{expected:,}", f"the module table's row for {name}"


@pytest.mark.parametrize("depth, expected", [(3, 94_538), (4, 242_122), (5, 389_706)])
def test_plain_cnn_depths(depth, expected):
    model = PlainCNN(depth=depth)
    assert count_params(model) == expected and f"{expected:,}" in PlainCNN.__doc__
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.modules()) == depth
    assert model(torch.randn(2, 1, 28, 28).repeat(1, 3, 1, 1)).shape == (2, 10)
    with pytest.raises(ValueError, match="depth must be 3, 4 or 5"):
        PlainCNN(depth=6)


def test_fast_cifar_net_cost_and_frozen_batch_norm_scales():
    model = FastCIFARNet()
    assert count_macs(model) == 17_547_904                              # "about 17.5M multiply-adds"
    assert "17.5M multiply-adds" in FastCIFARNet.__doc__
    frozen = count_params(model) - count_params(model, trainable_only=True)
    assert frozen == 16 + 2 * 32 + 2 * 64 + 2 * 64                     # one BN scale per channel
    wider = FastCIFARNet(widths=(32, 64, 128, 128))
    assert count_macs(wider) > 3.5 * count_macs(model)


def test_count_macs_by_hand():
    linear = torch.nn.Linear(20, 5)
    assert count_macs(torch.nn.Sequential(torch.nn.Flatten(), linear), (4, 5)) == 100
    conv = torch.nn.Conv2d(3, 8, 3, padding=1)
    assert count_macs(conv, (3, 10, 10)) == 8 * 10 * 10 * 3 * 9
    assert conv.training                                                # mode restored
