"""Notebook 03's test cells must reject plausible wrong implementations with a short message that
names the mistake (and carries its stable id), and accept valid alternatives (nested blocks, in-place
ReLUs, padding="same", other ways to take the norm)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import notebook_cells
from notebook_cells import cell_source, run_test_cell

NB = "03_building_cnns"


def rejected(grade_id: str, match: str, mistake: str | None = None, **objects) -> str:
    """The message with which test cell ``grade_id`` rejects ``objects`` (see ``notebook_cells.rejected``)."""
    return notebook_cells.rejected(NB, grade_id, match, mistake, **objects)


def solution(name: str):
    """The solution notebook's own ``name`` (a class or a function)."""
    namespace = {"np": np, "torch": torch, "nn": nn}
    exec(cell_source(NB, name), namespace)
    return namespace[name]


def test_stubs_fail():
    class ThreeBlockCNN(nn.Module):
        def __init__(self, in_channels=3, num_classes=10):
            super().__init__()
            raise NotImplementedError()

    def first_layer_grad_norm(model):
        raise NotImplementedError()

    rejected("test_ThreeBlockCNN", "not implemented yet", "not_implemented", ThreeBlockCNN=ThreeBlockCNN)
    rejected("test_first_layer_grad_norm", "not implemented yet", "not_implemented",
             first_layer_grad_norm=first_layer_grad_norm)


def test_forward_stub_fails():
    class ThreeBlockCNN(solution("ThreeBlockCNN")):
        def forward(self, x):
            raise NotImplementedError()

    rejected("test_ThreeBlockCNN", "ThreeBlockCNN.forward is not implemented yet", "not_implemented",
             ThreeBlockCNN=ThreeBlockCNN)


def test_solutions_pass():
    run_test_cell(NB, "test_ThreeBlockCNN", ThreeBlockCNN=solution("ThreeBlockCNN"))
    run_test_cell(NB, "test_first_layer_grad_norm", first_layer_grad_norm=solution("first_layer_grad_norm"))
    run_test_cell(NB, "test_train_one_epoch", train_one_epoch=solution("train_one_epoch"))
    run_test_cell(NB, "test_evaluate", evaluate=solution("evaluate"))


@pytest.mark.parametrize("name", ["train_one_epoch", "evaluate"])
def test_loop_stubs_fail(name):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    rejected(f"test_{name}", "not implemented yet", "not_implemented", **{name: stub})


# ---------------------------------------------------------------- ThreeBlockCNN

def cnn_variant(padding=1, conv_bias=False, batch_norm=True, widths=(32, 64, 128), order=("conv", "bn", "relu", "pool"),
                head="gap", linear_in=None, use_in_channels=True, use_num_classes=True, nested=False, inplace=False,
                pool_output=1, linear_bias=True, dilation=1, pool=(2,)):
    """A ThreeBlockCNN, correct with the defaults; each argument plants one mistake (or a valid variation)."""

    class ThreeBlockCNN(nn.Module):
        def __init__(self, in_channels=3, num_classes=10):
            super().__init__()
            c_in = in_channels if use_in_channels else 3
            classes = num_classes if use_num_classes else 10
            blocks = []
            for width in widths:
                parts = {"conv": nn.Conv2d(c_in, width, 3, padding=padding, dilation=dilation, bias=conv_bias),
                         "bn": nn.BatchNorm2d(width) if batch_norm else None,
                         "relu": nn.ReLU(inplace=inplace), "pool": nn.MaxPool2d(*pool)}
                block = [parts[name] for name in order if parts[name] is not None]
                blocks.append(nn.Sequential(*block) if nested else block)
                c_in = width
            self.features = nn.Sequential(*blocks) if nested else nn.Sequential(*[m for b in blocks for m in b])
            if head == "gap":
                layers = [nn.AdaptiveAvgPool2d(pool_output), nn.Flatten()]
                d_in = linear_in or c_in * (pool_output if isinstance(pool_output, int) else 1) ** 2
            else:                                           # flatten the 4×4 maps of 32×32 images
                layers, d_in = [nn.Flatten()], linear_in or c_in * 16
            self.classifier = nn.Sequential(*layers, nn.Linear(d_in, classes, bias=linear_bias))

        def forward(self, x):
            return self.classifier(self.features(x))

    return ThreeBlockCNN


@pytest.mark.parametrize("options, match, mistake", [
    ({"padding": 0}, r"2×2 instead of 4×4.*pads each convolution by one pixel", "no_padding"),
    ({"conv_bias": True}, r"224 more.*convolutions' biases.*convs have no bias", "conv_bias"),
    ({"batch_norm": False}, r"448 fewer.*batch norms.*BatchNorm2d", "no_batch_norm"),
    ({"batch_norm": False, "conv_bias": True}, r"224 fewer.*no BatchNorm2d.*PlainCNN", "plain_cnn"),
    ({"widths": (32, 64, 64)}, r"\(4, 64, 4, 4\).*128 output channels", "last_width"),
    ({"widths": (16, 32, 128)}, r"differ first at the 1st Conv2d.*\(32, 3, 3, 3\)", "parameter_shapes"),
    ({"order": ("conv", "bn", "relu")}, r"\(4, 128, 32, 32\).*is a MaxPool2d\(2\) missing", "missing_max_pool"),
    ({"head": "flatten"}, r"19,200 more.*4×4 maps were flattened.*averages each channel's map to one number", "flattened_maps"),
    ({"linear_in": 128 * 16}, r"shapes cannot be multiplied.*Linear layer takes 128 inputs", "linear_inputs"),
    ({"order": ("conv", "relu", "bn", "pool")}, r"layer 2 of self.features is ReLU.*BatchNorm2d",
     "relu_before_batch_norm"),
    ({"order": ("conv", "bn", "pool", "relu")}, r"layer 3 of self.features is MaxPool2d.*ReLU", "pool_before_relu"),
    ({"pool_output": 2, "linear_in": 512}, r"3,840 more.*more than one number per channel.*whole map to a single number",
     "pooled_to_more"),
    ({"linear_bias": False}, r"10 fewer.*no bias", "linear_no_bias"),
    ({"dilation": 2, "padding": 2}, r"the 1st Conv2d has dilation=\(2, 2\); .*without dilation", "conv_settings"),
    ({"pool": (3, 2, 1)}, r"the 1st MaxPool2d has kernel_size=3; .*2×2 windows", "max_pool_settings"),
    ({"pool": (3, 2)}, r"self.features gives shape \(4, 128, 3, 3\).*compare your layers with the table",
     "features_shape"),
], ids=["no_padding", "conv_bias", "no_batch_norm", "plain_cnn", "narrow_last_block", "wrong_widths", "no_max_pool",
        "flatten_2048", "linear_2048_after_gap", "relu_before_bn", "pool_before_relu", "pool_to_2x2",
        "linear_no_bias", "dilated_convs", "overlapping_pools", "unpadded_3x3_pools"])
def test_three_block_cnn_rejects(options, match, mistake):
    rejected("test_ThreeBlockCNN", match, f"cnn.three_block_cnn.{mistake}", ThreeBlockCNN=cnn_variant(**options))


@pytest.mark.parametrize("options, match", [
    ({"use_in_channels": False}, r"in_channels=1.*do in_channels and num_classes set"),
    ({"use_num_classes": False}, r"num_classes=2.*do in_channels and num_classes set"),
], ids=["in_channels_ignored", "num_classes_ignored"])
def test_three_block_cnn_hidden_tests_reject(options, match):
    rejected("test_ThreeBlockCNN", match, ThreeBlockCNN=cnn_variant(**options))


def test_three_block_cnn_rejects_missing_super_init():
    class ThreeBlockCNN(nn.Module):
        def __init__(self, in_channels=3, num_classes=10):
            self.features = nn.Sequential(nn.Conv2d(in_channels, 32, 3, padding=1, bias=False))

    rejected("test_ThreeBlockCNN", r"^ThreeBlockCNN\(\) raised AttributeError: .*before nn.Module's own initialisation ran",
             "cnn.three_block_cnn.no_super_init", ThreeBlockCNN=ThreeBlockCNN)


def test_three_block_cnn_rejects_a_class_that_is_not_a_module():
    class ThreeBlockCNN:
        def __init__(self, in_channels=3, num_classes=10):
            self.net = cnn_variant()(in_channels, num_classes)

        def __call__(self, x):
            return self.net(x)

    rejected("test_ThreeBlockCNN", r"is a ThreeBlockCNN; the class should subclass nn.Module",
             "cnn.three_block_cnn.not_a_module", ThreeBlockCNN=ThreeBlockCNN)


def test_three_block_cnn_rejects_functional_relu():
    class ThreeBlockCNN(cnn_variant(order=("conv", "bn", "pool"))):   # ReLU applied in forward instead
        def forward(self, x):
            for layer in self.features:
                x = layer(x)
                if isinstance(layer, nn.BatchNorm2d):
                    x = torch.relu(x)
            return self.classifier(x)

    rejected("test_ThreeBlockCNN", r"layer 3 of self.features is MaxPool2d where the specification has ReLU; .*"
             r"a layer of self.features", "cnn.three_block_cnn.relu_not_a_layer", ThreeBlockCNN=ThreeBlockCNN)


def test_three_block_cnn_rejects_global_pooling_in_features():
    class ThreeBlockCNN(cnn_variant()):
        def __init__(self, in_channels=3, num_classes=10):
            super().__init__(in_channels, num_classes)
            self.features.extend([nn.AdaptiveAvgPool2d(1), nn.Flatten()])
            self.classifier = nn.Sequential(nn.Linear(128, num_classes))

    rejected("test_ThreeBlockCNN", r"self.features gives shape \(4, 128\).*pooling and flattening belong in "
             r"self.classifier", "cnn.three_block_cnn.features_not_maps", ThreeBlockCNN=ThreeBlockCNN)


def test_three_block_cnn_rejects_an_extra_layer():
    class ThreeBlockCNN(cnn_variant()):
        def __init__(self, in_channels=3, num_classes=10):
            super().__init__(in_channels, num_classes)
            self.features.append(nn.Dropout(0.2))

    message = rejected("test_ThreeBlockCNN", r"self.features has 13 layers where the specification has 12: after "
                       r"its last one, MaxPool2d, comes a Dropout", "cnn.three_block_cnn.layer_order",
                       ThreeBlockCNN=ThreeBlockCNN)
    assert message.endswith("each block is Conv2d → BatchNorm2d → ReLU → MaxPool2d.")


def test_three_block_cnn_rejects_missing_attributes():
    class ThreeBlockCNN(nn.Module):
        def __init__(self, in_channels=3, num_classes=10):
            super().__init__()
            self.net = cnn_variant()(in_channels, num_classes)

        def forward(self, x):
            return self.net(x)

    rejected("test_ThreeBlockCNN", r"no submodule self.features", "cnn.three_block_cnn.missing_submodule",
             ThreeBlockCNN=ThreeBlockCNN)


def test_three_block_cnn_rejects_skipped_layer_in_forward():
    class ThreeBlockCNN(cnn_variant()):          # the layers are all there, but forward skips the classifier's pool
        def forward(self, x):
            return self.classifier[2](self.features(x).mean((2, 3)) * 2)

    rejected("test_ThreeBlockCNN", r"differs from the specification's network", ThreeBlockCNN=ThreeBlockCNN)


def test_three_block_cnn_messages_name_settings_not_layer_reprs():
    """A layer's settings in words, never the layer's repr (issue 24)."""
    message = rejected("test_ThreeBlockCNN", r"dilation", "cnn.three_block_cnn.conv_settings",
                       ThreeBlockCNN=cnn_variant(dilation=2, padding=2))
    assert "Conv2d(" not in message and "kernel_size=(3, 3)" not in message


@pytest.mark.parametrize("options", [{"nested": True}, {"inplace": True}, {"pool_output": (1, 1)},
                                     {"padding": "same"}],
                         ids=["nested_blocks", "inplace_relu", "pool_output_tuple", "padding_same"])
def test_three_block_cnn_accepts(options):
    run_test_cell(NB, "test_ThreeBlockCNN", ThreeBlockCNN=cnn_variant(**options))


# ---------------------------------------------------------------- first_layer_grad_norm

def first_layer(model):
    return next(m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))


def last_layer(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))][-1]


def layers(model):
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


GRAD_NORM = "cnn.first_layer_grad_norm."   # the ids of this exercise's mistakes


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda model: first_layer(model).weight.norm().item(), r"first layer's weights, not of their gradient",
     GRAD_NORM + "weights_not_gradient"),
    (lambda model: first_layer(model).weight.grad.pow(2).sum().item(), r"squared norm", GRAD_NORM + "squared"),
    (lambda model: last_layer(model).weight.grad.norm().item(), r"last layer's gradient norm",
     GRAD_NORM + "last_layer"),
    (lambda model: layers(model)[1].weight.grad.norm().item(), r"2nd layer's gradient norm",
     GRAD_NORM + "second_layer"),
    (lambda model: torch.cat([p.grad.flatten() for p in first_layer(model).parameters()]).norm().item(),
     r"includes the bias's gradient", GRAD_NORM + "with_bias"),
    (lambda model: first_layer(model).bias.grad.norm().item(), r"bias gradient", GRAD_NORM + "bias_gradient"),
    (lambda model: torch.cat([p.grad.flatten() for p in model.parameters()]).norm().item(),
     r"all the parameters' gradients", GRAD_NORM + "all_parameters"),
    (lambda model: next(model.parameters()).grad.norm().item(),
     r"^first_layer_grad_norm\(a model whose first conv sits in a nested block.*model's first parameter",
     GRAD_NORM + "first_parameter"),
    (lambda model: first_layer(model).weight.grad.abs().mean().item(), r"mean absolute gradient",
     GRAD_NORM + "mean_absolute"),
    (lambda model: first_layer(model).weight.grad.abs().max().item(), r"largest absolute gradient",
     GRAD_NORM + "largest_absolute"),
    (lambda model: first_layer(model).weight.grad.abs().sum().item(), r"L1 norm", GRAD_NORM + "l1_norm"),
    (lambda model: first_layer(model).weight.grad.norm(), r"returned a tensor holding [\d.]+: return a Python number",
     GRAD_NORM + "returned_tensor"),
    (lambda model: first_layer(model).weight.grad.pow_(2).sum().sqrt().item(), r"changed the model's gradients",
     "changed_argument"),
    (lambda model: 2 * first_layer(model).weight.grad.norm().item(),
     r"^first_layer_grad_norm\(a small CNN: conv, conv, linear\) is [\d.]+; torch's L2 norm of its first layer's "
     r"weight gradient is [\d.]+\.$", "unidentified"),
], ids=["weights_not_grads", "squared", "last_layer", "second_layer", "with_bias", "bias_gradient", "all_parameters",
        "first_parameter", "mean_abs", "largest_abs", "l1", "tensor", "in_place", "unidentified"])
def test_first_layer_grad_norm_rejects(wrong, match, mistake):
    rejected("test_first_layer_grad_norm", match, mistake, first_layer_grad_norm=wrong)


def test_first_layer_grad_norm_rejects_module_index():
    def first_layer_grad_norm(model):          # works for an nn.Sequential whose first entry is a layer
        return model[0].weight.grad.norm().item()

    rejected("test_first_layer_grad_norm", r"^first_layer_grad_norm\(an MLP: .*\) raised AttributeError", "crashed",
             first_layer_grad_norm=first_layer_grad_norm)


def test_first_layer_grad_norm_messages_are_plain_text():
    """The hints once stressed words with *asterisks*, and a tensor was shown by its repr (issue 24)."""
    message = rejected("test_first_layer_grad_norm", r"returned a tensor",
                       "cnn.first_layer_grad_norm.returned_tensor",
                       first_layer_grad_norm=lambda model: first_layer(model).weight.grad.norm())
    assert "tensor(" not in message and "grad_fn" not in message
    message = rejected("test_first_layer_grad_norm", r"weights", "cnn.first_layer_grad_norm.weights_not_gradient",
                       first_layer_grad_norm=lambda model: first_layer(model).weight.norm().item())
    assert "*" not in message


def numpy_norm(model):
    grad = first_layer(model).weight.grad.detach().cpu().double().numpy()
    return float(np.sqrt((grad ** 2).sum()))


def children_walk(model):
    def walk(module):
        for child in module.children():
            if isinstance(child, (nn.Conv2d, nn.Linear)):
                return child
            found = walk(child)
            if found is not None:
                return found
        return None
    return float(torch.linalg.vector_norm(walk(model).weight.grad))


@pytest.mark.parametrize("valid", [
    numpy_norm,
    children_walk,
    lambda model: first_layer(model).weight.grad.norm(2).item(),
    lambda model: float(first_layer(model).weight.grad.square().sum().sqrt()),
], ids=["numpy", "children_walk", "norm_2", "sqrt_sum_squares"])
def test_first_layer_grad_norm_accepts(valid):
    run_test_cell(NB, "test_first_layer_grad_norm", first_layer_grad_norm=valid)


# ---------------------------------------------------------------- train_one_epoch and evaluate

def train_variant(train_mode=True, move_x=True, move_y=True, zero_grad="before", step=True, weigh=True,
                  divide=True, accuracy="fraction", as_float=True, forward_again=False, no_grad=False,
                  first_batch_only=False):
    """A training epoch, correct with the defaults; each argument plants one mistake (or a valid variation)."""
    def train_one_epoch(model, loader, optimizer, loss_fn, device):
        if train_mode:
            model.train()
        total, correct, seen, batch_losses, batch_accuracies = 0.0, 0, 0, [], []
        for x, y in [next(iter(loader))] if first_batch_only else loader:
            if move_x:
                x = x.to(device)
            if move_y:
                y = y.to(device)
            with torch.no_grad() if no_grad else torch.enable_grad():
                logits = model(x)
            loss = loss_fn(logits, y)
            if zero_grad == "before":
                optimizer.zero_grad()
            loss.backward()
            if zero_grad == "after_backward":
                optimizer.zero_grad()
            if step:
                optimizer.step()
            if forward_again:
                logits = model(x)
            hits = int((logits.argmax(1) == y).sum())
            total += float(loss) * (len(y) if weigh else 1)
            batch_losses.append(float(loss))
            batch_accuracies.append(hits / len(y))
            correct += hits
            seen += len(y)
        mean_loss = total / (seen if weigh else len(batch_losses)) if divide else total
        acc = {"fraction": correct / seen, "count": correct, "batch_mean": sum(batch_accuracies) / len(batch_accuracies)}[accuracy]
        return (mean_loss, acc) if as_float else (torch.tensor(mean_loss), torch.tensor(acc))
    return train_one_epoch


@pytest.mark.parametrize("options, match, mistake", [
    ({"train_mode": False}, r"evaluation mode.*never switched it to training mode", "no_train_mode"),
    ({"move_x": False}, r"batch of images as the loader handed it out", "images_not_moved"),
    ({"move_y": False}, r"labels as the loader handed them out", "labels_not_moved"),
    ({"zero_grad": "never"}, r"never resets the gradients", "no_zero_grad"),
    ({"zero_grad": "after_backward"}, r"^after train_one_epoch, the first Linear layer's weight did not change",
     "no_update"),
    ({"step": False}, r"weight did not change: the optimizer never updated the weights", "no_update"),
    ({"weigh": False}, r"mean of the batch means", "mean_of_batch_means"),
    ({"divide": False}, r"with all logits equal is the sum over the samples", "summed_loss"),
    ({"weigh": False, "divide": False}, r"is the sum of the batch means", "sum_of_batch_means"),
    ({"accuracy": "batch_mean"}, r"mean of the batch accuracies", "mean_of_batch_accuracies"),
    ({"accuracy": "count"}, r"number of correct predictions", "correct_count"),
    ({"as_float": False}, r"returned the mean loss as a tensor holding [\d.]+: return a Python float", "returned_tensor"),
    ({"forward_again": True}, r"forward passes for 3 batches", "extra_forward"),
    ({"no_grad": True}, r"does not require grad.*gradient recording turned off", "no_gradients"),
    ({"first_batch_only": True}, r"called loss_fn once for a loader of 3 batches", "skipped_batches"),
], ids=["no_train_mode", "x_not_moved", "y_not_moved", "no_zero_grad", "zero_grad_before_step", "no_step",
        "mean_of_batch_means", "summed_loss", "sum_of_batch_means", "mean_of_batch_accuracies", "correct_count",
        "tensors", "second_forward", "under_no_grad", "first_batch_only"])
def test_train_one_epoch_rejects(options, match, mistake):
    rejected("test_train_one_epoch", match, f"cnn.train_one_epoch.{mistake}", train_one_epoch=train_variant(**options))


def test_train_one_epoch_rejects_predictions_made_without_gradients():
    def train_one_epoch(model, loader, optimizer, loss_fn, device):
        model.train()
        total, correct, seen = 0.0, 0, 0
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.no_grad():                       # the predictions, then a forward pass for the loss
                predictions = model(x).argmax(1)
            loss = loss_fn(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total, correct, seen = total + loss.item() * len(y), correct + int((predictions == y).sum()), seen + len(y)
        return total / seen, correct / seen

    rejected("test_train_one_epoch", r"ran a forward pass without gradients", "cnn.train_one_epoch.no_gradients",
             train_one_epoch=train_one_epoch)


def test_train_one_epoch_tensor_message_shows_no_repr():
    """A returned tensor is named in words, never by its repr (issue 24)."""
    message = rejected("test_train_one_epoch", r"as a tensor", "cnn.train_one_epoch.returned_tensor",
                       train_one_epoch=train_variant(as_float=False))
    assert "tensor(" not in message and "dtype" not in message


def train_on_device_tensors(model, loader, optimizer, loss_fn, device):
    """Sums on the device, one .item() at the end; model.zero_grad instead of the optimizer's."""
    model.train(True)
    total = torch.zeros((), dtype=torch.float64, device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    seen = 0
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device=device)
        model.zero_grad(set_to_none=True)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        total += loss.detach() * y.shape[0]
        correct += (logits.detach().max(dim=1).indices == y).sum()
        seen += y.shape[0]
    return np.float64(total.item() / seen), correct.item() / seen


@pytest.mark.parametrize("valid", [train_on_device_tensors, train_variant()], ids=["device_sums", "variant"])
def test_train_one_epoch_accepts(valid):
    run_test_cell(NB, "test_train_one_epoch", train_one_epoch=valid)


def eval_variant(eval_mode=True, no_grad=True, move_x=True, weigh=True, divide=True, accuracy="fraction",
                 as_float=True, forward_again=False, softmax_first=False, last_batch_accuracy=False,
                 zero_grads=False):
    """An evaluation, correct with the defaults; each argument plants one mistake (or a valid variation)."""
    def evaluate(model, loader, device):
        if eval_mode:
            model.eval()
        total, correct, seen, accuracies, last = 0.0, 0, 0, [], 0.0
        with torch.no_grad() if no_grad else torch.enable_grad():
            for x, y in loader:
                x = x.to(device) if move_x else x
                y = y.to(device)
                logits = model(x)
                if forward_again:
                    logits = model(x)
                scores = torch.softmax(logits, 1) if softmax_first else logits
                loss = float(nn.functional.cross_entropy(scores, y))
                hits = int((logits.argmax(1) == y).sum())
                total += loss * (len(y) if weigh else 1)
                correct += hits
                seen += len(y)
                last = hits / len(y)
                accuracies.append(last)
        if zero_grads:                                  # "to be safe": zero gradients where there were none
            for p in model.parameters():
                p.grad = torch.zeros_like(p)
        mean_loss = total / (seen if weigh else len(loader)) if divide else total
        acc = last if last_batch_accuracy else {"fraction": correct / seen, "count": correct,
                                                "batch_mean": sum(accuracies) / len(accuracies)}[accuracy]
        return (mean_loss, acc) if as_float else (torch.tensor(mean_loss), torch.tensor(acc))
    return evaluate


@pytest.mark.parametrize("options, match, mistake", [
    ({"eval_mode": False}, r"training mode.*left it there.*in evaluation mode", "cnn.evaluate.training_mode"),
    ({"no_grad": False}, r"recorded gradients.*gradient recording should be off", "cnn.evaluate.gradients"),
    ({"move_x": False}, r"batch of images as the loader handed it out", "cnn.evaluate.images_not_moved"),
    ({"weigh": False}, r"mean of the batch means", "cnn.evaluate.mean_of_batch_means"),
    ({"divide": False}, r"sum over the samples", "cnn.evaluate.summed_loss"),
    ({"weigh": False, "divide": False}, r"sum of the batch means", "cnn.evaluate.sum_of_batch_means"),
    ({"accuracy": "count"}, r"number of correct predictions", "cnn.evaluate.correct_count"),
    ({"accuracy": "batch_mean"}, r"mean of the batch accuracies", "cnn.evaluate.mean_of_batch_accuracies"),
    ({"last_batch_accuracy": True}, r"last batch's accuracy", "cnn.evaluate.last_batch_accuracy"),
    ({"as_float": False}, r"as a tensor holding", "cnn.evaluate.returned_tensor"),
    ({"forward_again": True}, r"forward passes for 3 batches", "cnn.evaluate.extra_forward"),
    ({"softmax_first": True}, r"mean loss is the cross-entropy of softmax probabilities",
     "cnn.evaluate.softmax_before_loss"),
    ({"zero_grads": True}, r"changed the model's gradients", "changed_argument"),
], ids=["no_eval_mode", "gradients", "x_not_moved", "mean_of_batch_means", "summed_loss", "sum_of_batch_means",
        "correct_count", "mean_of_batch_accuracies", "last_batch", "tensors", "second_forward", "softmax_twice",
        "zeroed_gradients"])
def test_evaluate_rejects(options, match, mistake):
    rejected("test_evaluate", match, mistake, evaluate=eval_variant(**options))


def evaluate_inference_mode(model, loader, device):
    model.train(False)
    losses, hits = [], []
    with torch.inference_mode():
        for x, y in loader:
            logits = model(x.to(device))
            y = y.to(device)
            losses.append(nn.functional.cross_entropy(logits, y, reduction="none"))
            hits.append(logits.argmax(1) == y)
    return torch.cat(losses).mean().item(), torch.cat(hits).double().mean().item()


@pytest.mark.parametrize("valid", [evaluate_inference_mode, eval_variant()], ids=["inference_mode", "variant"])
def test_evaluate_accepts(valid):
    run_test_cell(NB, "test_evaluate", evaluate=valid)


# ---------------------------------------------------------------- accuracies recomputed from the model's logits

def normalised(part: str, n_fast: int, n_full, batch: int | None = None):
    """A sample of a CIFAR-10 split (a batch of it for "batch") as the hidden tests normalise it, and its labels."""
    from course_lib import fast_or_full
    from course_lib.data import cifar10_splits
    from course_lib.trainer import DeviceLoader

    splits = cifar10_splits("official")
    pixels = splits.train.sample(5_000).x.reshape(-1, 3) / 255
    sample = getattr(splits, part).sample(fast_or_full(n_fast, n_full))
    if batch is not None:
        sample = sample.sample(32, seed=batch)
    loader = DeviceLoader(sample.x, sample.y, 1000, mean=pixels.mean(axis=0), std=pixels.std(axis=0), device="cpu")
    return torch.cat([x for x, _ in loader]), torch.as_tensor(sample.y)


class Lookup(nn.Module):
    """Answers the images it was given (or their mirror images) with the labels it was given, as one-hot logits;
    class 0 for any other image."""

    def __init__(self, x, labels):
        super().__init__()
        self.answers = {self.key(image): int(label) for images in (x, x.flip(3)) for image, label in zip(images, labels)}

    @staticmethod
    def key(image) -> bytes:
        return image.contiguous().numpy().tobytes()

    def forward(self, x):
        return nn.functional.one_hot(torch.tensor([self.answers.get(self.key(image), 0) for image in x]), 10).float()


def test_overfit_is_measured_on_the_batch_the_test_loads():
    run_test_cell(NB, "test_overfit_one_batch", overfit_net=Lookup(*normalised("train", 800, 5_000, batch=0)),
                  overfit_accuracy=1.0)
    rejected("test_overfit_one_batch", r"overfit_net classifies \d+% of its 32 training images",   # another batch
             overfit_net=Lookup(*normalised("train", 800, 5_000, batch=1)), overfit_accuracy=1.0)


def test_test_accuracy_is_measured_on_the_test_set_the_test_loads():
    x, y = normalised("test", 2_000, None)
    run_test_cell(NB, "test_accuracy", best_model=Lookup(x, y), test_accuracy=1.0, best_model_seconds=1.0)
    rejected("test_accuracy", r"test accuracy of best_model 10\.0% is below", best_model=Lookup(x[:0], y[:0]),
             test_accuracy=1.0, best_model_seconds=1.0)


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_tiers_use_the_tests_own_thresholds(tier):
    from course_lib import fast_or_full

    x, y = normalised("val", 500, None)
    run_test_cell(NB, f"test_my_model_tier_{tier}", my_model=Lookup(x, y), my_val_accuracy=1.0,
                  TIERS=fast_or_full((0.13, 0.16, 0.2), (0.55, 0.65, 0.72)))
    right = round(len(y) * (fast_or_full(0.13, 0.55) + fast_or_full(0.16, 0.65)) / 2)   # between tiers 1 and 2
    labels = torch.cat([y[:right], (y[right:] + 1) % 10])
    cheat = {"my_model": Lookup(x, labels), "my_val_accuracy": 1.0, "TIERS": (0.0, 0.0, 0.0)}
    if tier == 1:
        run_test_cell(NB, "test_my_model_tier_1", **cheat)
    else:
        rejected(f"test_my_model_tier_{tier}", rf"validation accuracy {100 * right / len(y):.1f}% is below tier {tier}",
                 **cheat)


# ---------------------------------------------------------------- every clause of the contracts (issue 21)

def train_then_eval_mode(model, loader, optimizer, loss_fn, device):
    """Right epoch, then "tidies up" by switching the model to evaluation mode."""
    result = train_variant()(model, loader, optimizer, loss_fn, device)
    model.eval()
    return result


def train_counting_with_len(model, loader, optimizer, loss_fn, device):
    """Counts the samples as len(loader) times the first batch's size: needs a loader with a length."""
    model.train()
    total, correct, batches, size = 0.0, 0, len(loader), None
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        size = size or len(y)
        logits = model(x)
        loss = loss_fn(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(y)
        correct += int((logits.argmax(1) == y).sum())
    return total / (batches * size), correct / (batches * size)


def train_with_its_own_loss(model, loader, optimizer, loss_fn, device):
    """Ignores the loss_fn it is given and uses a cross-entropy of its own."""
    model.train()
    total, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total, correct, seen = total + loss.item() * len(y), correct + int((logits.argmax(1) == y).sum()), seen + len(y)
    return total / seen, correct / seen


@pytest.mark.parametrize("wrong, match, mistake", [
    (train_then_eval_mode, r"left the model in evaluation mode", "cnn.train_one_epoch.left_in_eval_mode"),
    (train_counting_with_len, r"loader \(a generator of batches\).*raised TypeError.*has no len\(\).*any iterable",
     "cnn.train_one_epoch.needs_len"),
    (train_with_its_own_loss, r"never called loss_fn: each batch's loss comes from the loss_fn it is given",
     "cnn.train_one_epoch.loss_fn_unused"),
], ids=["left_in_eval_mode", "needs_len", "own_loss"])
def test_train_one_epoch_rejects_breaking_its_contract(wrong, match, mistake):
    rejected("test_train_one_epoch", match, mistake, train_one_epoch=wrong)


def train_zero_grad_after_step(model, loader, optimizer, loss_fn, device):
    """Resets the gradients after each step instead of before (the model's come in as None): the same steps."""
    model.train()
    total, correct, seen = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss = loss_fn(logits, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=False)
        total, correct, seen = total + float(loss) * y.numel(), correct + (logits.argmax(1) == y).sum().item(), seen + y.numel()
    return np.float64(total / seen), np.float64(correct / seen)


def test_train_one_epoch_accepts_zero_grad_after_the_step_and_numpy_floats():
    run_test_cell(NB, "test_train_one_epoch", train_one_epoch=train_zero_grad_after_step)


def evaluate_nll_of_logits(model, loader, device):
    model.eval()
    total, correct, seen = 0.0, 0, 0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            total += nn.functional.nll_loss(logits, y, reduction="sum").item()   # logits, not log-probabilities
            correct, seen = correct + int((logits.argmax(1) == y).sum()), seen + len(y)
    return total / seen, correct / seen


def test_evaluate_rejects_the_nll_of_raw_logits():
    rejected("test_evaluate", r"negative log-likelihood of the raw logits", "cnn.evaluate.nll_of_logits",
             evaluate=evaluate_nll_of_logits)


def evaluate_restores_mode(model, loader, device):
    """Evaluates in evaluation mode, then puts the model back in the mode it came in (also fine)."""
    was_training = model.training
    try:
        return eval_variant()(model, loader, device)
    finally:
        model.train(was_training)


def test_evaluate_accepts_restoring_the_mode():
    run_test_cell(NB, "test_evaluate", evaluate=evaluate_restores_mode)
