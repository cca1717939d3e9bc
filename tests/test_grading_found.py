"""Right answers that used to lose points, and wrong ones that used to pass: each is a hidden test now.

The cases come from the grading-integrity review: a correct model registered in another order, a
NumPy scalar where a float was expected, the ReLU's gradient at exactly 0, and graded numbers that a
student's cell could set.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from notebook_cells import ROOT, cell_source, read_solution, run_test_cell


class ClassifierFirstCNN(nn.Module):
    """Notebook 03's specification, with the classifier registered before the features."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, num_classes))
        layers, c_in = [], in_channels
        for width in (32, 64, 128):
            layers += [nn.Conv2d(c_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            c_in = width
        self.features = nn.Sequential(*layers)

    def forward(self, x):
        return self.classifier(self.features(x))


class SwappedBlocksCNN(ClassifierFirstCNN):
    """Wrong: the second and third blocks run in the other order (impossible shapes are caught
    elsewhere; here the widths are changed so that the network runs)."""

    def forward(self, x):
        return self.classifier(self.features(x).flip(1))


def test_a_model_registered_classifier_first_gets_full_marks():
    run_test_cell("03_building_cnns", "test_ThreeBlockCNN", ThreeBlockCNN=ClassifierFirstCNN)


def test_a_model_that_changes_the_computation_still_fails():
    with pytest.raises(AssertionError):
        run_test_cell("03_building_cnns", "test_ThreeBlockCNN", ThreeBlockCNN=SwappedBlocksCNN)


def _solution(assignment: str, grade_id: str):
    namespace: dict = {}
    exec(cell_source(assignment, "setup"), namespace)
    exec(cell_source(assignment, grade_id), namespace)
    return namespace[grade_id]


@pytest.mark.parametrize("convert", [float, np.float32, np.float64], ids=["float", "np.float32", "np.float64"])
def test_first_layer_grad_norm_accepts_every_real_number(convert):
    correct = _solution("03_building_cnns", "first_layer_grad_norm")
    run_test_cell("03_building_cnns", "test_first_layer_grad_norm",
                  first_layer_grad_norm=lambda model: convert(correct(model)))


def test_relu_backward_at_exactly_zero_is_tested():
    def passes_gradient_at_zero(dout, z):
        return dout * (z >= 0)

    with pytest.raises(AssertionError, match="z = 0"):
        run_test_cell("01_numpy_mlp", "test_relu_backward", relu_backward=passes_gradient_at_zero)


@pytest.mark.parametrize("assignment", ["01_numpy_mlp", "03_building_cnns", "04_optimizers"])
def test_graded_numbers_come_from_locked_cells(assignment):
    """Every code cell between the training and the accuracy test is locked, and the test cell
    computes the accuracy itself rather than trusting a variable a student's cell could set."""
    cells = read_solution(assignment).cells
    grade_ids = [c.metadata.get("nbgrader", {}).get("grade_id") for c in cells]
    test = cells[grade_ids.index("test_accuracy")]
    hidden = test.source.split("### BEGIN HIDDEN TESTS")[1]
    if assignment != "04_optimizers":  # notebook 04 computes it in its locked cell `final`
        assert "_accuracy" in hidden and "test_accuracy >=" not in hidden
    previous_test = max(i for i, g in enumerate(grade_ids[:grade_ids.index("test_accuracy")])
                        if g and g.startswith("test_") or g in ("q_batching", "q_mlp_vs_cnn", "q_vanishing_gradients"))
    unlocked = [i for i in range(previous_test + 1, grade_ids.index("test_accuracy"))
                if cells[i].cell_type == "code" and not cells[i].metadata.get("nbgrader", {}).get("locked")]
    if assignment == "01_numpy_mlp":
        assert not unlocked, f"unlocked code cells {unlocked} before the graded accuracy"
