"""Notebook 06's test cells must reject plausible wrong adaptations, transforms and parameter groups
with a short message that names the mistake (its stable id, from the tables of
``course_lib.checks.transfer``), and accept valid alternatives.

Each wrong answer is the solution with one mistake written in (a textual edit of the solution cell,
checked to apply), so the tests follow the notebook when it changes.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torchvision.transforms import v2

from course_lib.checks import transfer
from notebook_cells import cell_source, rejected, run_test_cell

NB = "06_transfer"


def define(name: str, edits=()):
    """The solution's ``name`` with ``edits`` applied."""
    source = cell_source(NB, name)
    for old, new in edits:
        assert old in source, f"the edit {old!r} no longer applies to the solution of {name}"
        source = source.replace(old, new)
    namespace = {"np": np, "torch": torch, "nn": nn, "v2": v2, "copy": copy}
    exec(source, namespace)
    return namespace[name]


def rejects(grade_id: str, match: str, mistake: str | None = None, **objects) -> str:
    """The message test cell ``grade_id`` rejects ``objects`` with (see ``notebook_cells.rejected``)."""
    return rejected(NB, grade_id, match, mistake, **objects)


def test_solutions_pass():
    run_test_cell(NB, "test_adapt_model", adapt_model=define("adapt_model"))
    run_test_cell(NB, "test_param_groups", param_groups=define("param_groups"))
    run_test_cell(NB, "test_photo_transforms", photo_transforms=define("photo_transforms"))
    run_test_cell(NB, "test_grad_cam", grad_cam=define("grad_cam"))


def test_stubs_fail():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for name in ("adapt_model", "param_groups", "photo_transforms", "grad_cam"):
        rejects(f"test_{name}", "not implemented yet", "not_implemented", **{name: stub})


# ---------------------------------------------------------------- adapt_model

ADAPT_MISTAKES = {
    "head not replaced": ([("    new_head = nn.Linear(old_head.in_features, num_classes)\n", "    new_head = old_head\n")],
                          "head was not replaced", "transfer.adapt_model.head_not_replaced"),
    "backbone not frozen in a probe": ([("            parameter.requires_grad_(False)\n",
                                         "            parameter.requires_grad_(True)\n")],
                                       "features.0.weight and 20 others of the backbone trainable.*only the new head "
                                       "learns", "transfer.adapt_model.backbone_trainable_in_probe"),
    "head frozen too in a probe": ([("        new_head.requires_grad_(True)\n", "")], "freezes the new head",
                                   "transfer.adapt_model.head_frozen"),
    "first layer summed": ([("first.weight.detach().mean(dim=1, keepdim=True)", "first.weight.detach().sum(dim=1, keepdim=True)")],
                           "sum of the RGB filters", "transfer.adapt_model.filters_summed"),
    "first layer takes the red filter": ([("first.weight.detach().mean(dim=1, keepdim=True)", "first.weight.detach()[:, :1]")],
                                         "one colour's filters", "transfer.adapt_model.filters_of_one_colour"),
    "colour filters averaged too": ([("    if in_channels != first.in_channels:\n", "    if True:\n")],
                                    "adapt_model\\(backbone, 5, 3, 'linear_probe'\\) are the RGB filters averaged",
                                    "transfer.adapt_model.colour_filters_averaged"),
    "first layer's in_channels not adapted": ([("        first.weight = nn.Parameter(averaged.repeat(1, in_channels, 1, 1))\n"
                                               "        first.in_channels = in_channels\n", "")],
                                             "first nn.Conv2d takes 3 channels: adapt it to 1-channel images",
                                             "transfer.adapt_model.first_layer_not_adapted"),
    "backbone changed in place": ([("model = copy.deepcopy(backbone)", "model = backbone")], "changed the backbone",
                                  "transfer.adapt_model.changed_backbone"),
    "scratch keeps the pretrained weights": ([('    if mode == "scratch":\n', '    if mode == "from scratch":\n')],
                                             "'scratch'\\) keeps the pretrained weights of features.3.weight",
                                             "transfer.adapt_model.scratch_keeps_pretrained"),
    "weights reset in every mode": ([('    if mode == "scratch":\n', '    if True:\n')],
                                    "'linear_probe'\\) changes the pretrained weights of features.3.weight",
                                    "transfer.adapt_model.pretrained_changed"),
    "unknown mode accepted": ([('    if mode not in ("linear_probe", "fine_tune", "scratch"):\n', "    if False:\n")],
                              "accepted mode='finetune'", "transfer.adapt_model.unknown_mode_accepted"),
    "no model returned": ([("    return model\n", "    return None\n")], "returned None, not a model", "returned_none"),
    "first layer's filters repeated wrongly": ([("averaged.repeat(1, in_channels, 1, 1)", "averaged.repeat(in_channels)")],
                                               "adapt_model\\(backbone, 5, 1, 'linear_probe'\\) raised RuntimeError",
                                               "crashed"),
    "frozen batch-norm scales unfrozen in fine-tuning": ([('    if mode == "linear_probe":\n',
                                                          '    if mode != "linear_probe":\n'
                                                          '        model.requires_grad_(True)\n'
                                                          '    if mode == "linear_probe":\n')],
                                                        "'fine_tune'\\) lets features.1.weight and 6 others learn, which "
                                                        "the backbone kept frozen",
                                                        "transfer.adapt_model.frozen_unfrozen"),
    "backbone frozen before it is copied": ([("    model = copy.deepcopy(backbone)\n",
                                              "    if mode == \"linear_probe\":\n"
                                              "        backbone.requires_grad_(False)\n"
                                              "    model = copy.deepcopy(backbone)\n")],
                                            "changed the backbone", "transfer.adapt_model.changed_backbone"),
    "backbone run in training mode to find its width": ([("    model = copy.deepcopy(backbone)\n",
                                                          "    backbone.train()(torch.zeros(2, 3, 32, 32))\n"
                                                          "    model = copy.deepcopy(backbone)\n")],
                                                        "changed the backbone", "transfer.adapt_model.changed_backbone"),
    "unknown mode raises KeyError": ([('        raise ValueError(f"mode must be', '        raise KeyError(f"mode must be')],
                                     "mode='finetune'\\) raised KeyError.*should raise ValueError",
                                     "transfer.adapt_model.unknown_mode_wrong_error"),
}


# Mistakes that the public check lets through and only the hidden tests catch (through the kernel): no id.
ADAPT_MISTAKES_HIDDEN = {
    "scratch keeps the batch norms' statistics": ([("            if hasattr(module, \"reset_parameters\"):\n",
                                                    "            if isinstance(module, (nn.Conv2d, nn.Linear)):\n")],
                                                  "kept the backbone's running statistics", None),
    "fine-tuning resets the batch norms' statistics": ([('    if mode == "scratch":\n',
                                                         '    for module in model.modules():\n'
                                                         '        if mode != "scratch" and isinstance(module, nn.BatchNorm2d):\n'
                                                         '            module.reset_running_stats()\n'
                                                         '    if mode == "scratch":\n')],
                                                       "pretrained shifts or statistics changed", None),
    "only 'finetune' rejected": ([('    if mode not in ("linear_probe", "fine_tune", "scratch"):\n',
                                   '    if mode == "finetune":\n')], "mode='probe' was accepted", None),
}


@pytest.mark.parametrize("mistake", {**ADAPT_MISTAKES, **ADAPT_MISTAKES_HIDDEN})
def test_adapt_model_mistake_is_named(mistake):
    edits, match, mistake_id = {**ADAPT_MISTAKES, **ADAPT_MISTAKES_HIDDEN}[mistake]
    rejects("test_adapt_model", match, mistake_id, adapt_model=define("adapt_model", edits))


def probe_frozen_after_the_head(backbone, num_classes, in_channels=3, mode="fine_tune"):
    """Wrong: the probe freezes everything after replacing the head, the new head included."""
    model = define("adapt_model")(backbone, num_classes, in_channels, "fine_tune" if mode == "linear_probe" else mode)
    if mode == "linear_probe":
        model.requires_grad_(False)
    return model


def fine_tune_frozen(backbone, num_classes, in_channels=3, mode="fine_tune"):
    """Wrong: fine-tuning with the convolutional layers frozen (a probe under another name)."""
    return define("adapt_model")(backbone, num_classes, in_channels, "linear_probe" if mode == "fine_tune" else mode)


def scratch_zero_weights(backbone, num_classes, in_channels=3, mode="fine_tune"):
    """Wrong: 'from scratch' as all-zero weights."""
    model = define("adapt_model")(backbone, num_classes, in_channels, mode)
    if mode == "scratch":
        with torch.no_grad():
            for module in model.modules():
                if isinstance(module, nn.Conv2d):
                    module.weight.zero_()
    return model


ADAPT_OTHER_MISTAKES = [
    (probe_frozen_after_the_head, "freezes the new head", "transfer.adapt_model.head_frozen"),
    (fine_tune_frozen, "'fine_tune'\\) freezes features.0.weight and 6 others: this mode trains the whole network",
     "transfer.adapt_model.network_frozen"),
    (scratch_zero_weights, "'scratch'\\) starts features.0.weight and 6 others from weights that are all zero",
     "transfer.adapt_model.scratch_from_zeros"),
]


@pytest.mark.parametrize("wrong, match, mistake", ADAPT_OTHER_MISTAKES)
def test_adapt_model_other_mistakes_are_named(wrong, match, mistake):
    rejects("test_adapt_model", match, mistake, adapt_model=wrong)


def rebuilt_as_sequential(backbone, num_classes, in_channels=3, mode="fine_tune"):
    """Valid: a new nn.Sequential of the backbone's features and a new head, built without deepcopy
    of the whole model, registering the head first."""
    features = copy.deepcopy(backbone.features)
    if in_channels == 1:
        conv = features[0]
        new = nn.Conv2d(1, conv.out_channels, conv.kernel_size, padding=conv.padding, bias=False)
        with torch.no_grad():
            new.weight.copy_(conv.weight.mean(1, keepdim=True))
        features[0] = new

    class Adapted(nn.Module):
        def __init__(self):
            super().__init__()
            self.classify = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(features[-3].out_channels, num_classes))
            self.body = features

        def forward(self, x):
            return self.classify(self.body(x))

    model = Adapted()
    # registration order: classify's Linear comes first in modules(), so put it last for the "last Linear" rule
    model = nn.Sequential(model.body, model.classify)
    if mode == "scratch":
        for module in model.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    elif mode == "linear_probe":
        model[0].requires_grad_(False)
    elif mode not in ("fine_tune",):
        raise ValueError(mode)
    return model


def test_adapt_model_written_differently_passes():
    run_test_cell(NB, "test_adapt_model", adapt_model=rebuilt_as_sequential)


# ---------------------------------------------------------------- param_groups

GROUP_MISTAKES = {
    "learning rates swapped": ([('"lr": lr_backbone}', '"lr": lr_head}'), ('"lr": lr_head}]', '"lr": lr_backbone}]')],
                               "swapped", "transfer.param_groups.swapped"),
    "frozen parameters included": ([("learning = [p for p in model.parameters() if p.requires_grad]",
                                     "learning = list(model.parameters())")],
                                   "frozen parameters \\(requires_grad False\\) in a group: 0.1.weight and 6 others",
                                   "transfer.param_groups.frozen_included"),
    "head in both groups": ([("[p for p in learning if id(p) not in head_ids]", "learning")],
                            "puts 5.bias and 5.weight in two groups", "transfer.param_groups.in_two_groups"),
    "no lr per group": ([('"lr": lr_backbone}', '}'), ('"lr": lr_head}]', '}]')], "no 'lr' of its own",
                        "transfer.param_groups.no_lr"),
    "head is the first linear layer": ([("[m for m in model.modules() if isinstance(m, nn.Linear)][-1]",
                                         "[m for m in model.modules() if isinstance(m, nn.Linear)][0]")],
                                       "an earlier nn.Linear \\(3.weight and 3.bias\\) lr_head",
                                       "transfer.param_groups.earlier_linear_as_head"),
    "backbone left out": ([("    return [group for group in groups if group[\"params\"]]\n",
                            "    return groups[1:]\n")], "in no group: 0.0.weight and 15 others",
                          "transfer.param_groups.left_out"),
    "one dict instead of a list": ([("    return [group for group in groups if group[\"params\"]]\n",
                                     "    return groups[0]\n")],
                                   "returned a dict: param_groups should return a list of dicts", "wrong_type"),
    "the state dict's tensors": ([("learning = [p for p in model.parameters() if p.requires_grad]",
                                   "learning = list(model.state_dict().values())")],
                                 "items that are not the model's own parameters",
                                 "transfer.param_groups.not_the_parameters"),
    "parameters as a set": ([("    return [group for group in groups if group[\"params\"]]\n",
                              "    return [{**group, \"params\": set(group[\"params\"])} for group in groups]\n")],
                            "torch.optim.SGD does not take the groups of param_groups\\(model, 0.001, 0.01\\): "
                            "TypeError: optimizer parameters need to be organized in ordered collections",
                            "unidentified"),
    # the public check's head is model[5]; the hidden test's model[5] is the earlier nn.Linear
    "head taken by its index": ([("[m for m in model.modules() if isinstance(m, nn.Linear)][-1]", "model[5]")],
                                "head learning rate", None),
}


@pytest.mark.parametrize("mistake", GROUP_MISTAKES)
def test_param_groups_mistake_is_named(mistake):
    edits, match, mistake_id = GROUP_MISTAKES[mistake]
    rejects("test_param_groups", match, mistake_id, param_groups=define("param_groups", edits))


def head_by_attribute(model, lr_backbone, lr_head):
    """Wrong: the head looked up by a name this model does not have."""
    return [{"params": model.fc.parameters(), "lr": lr_head}]


def head_not_found(model, lr_backbone, lr_head):
    """Wrong: gives up with the model's repr (33 lines) in its message."""
    raise ValueError(f"no head found in {model}")


def modules_as_params(model, lr_backbone, lr_head):
    """Wrong: modules where their parameters belong."""
    return [{"params": model[:5], "lr": lr_backbone}, {"params": model[5], "lr": lr_head}]


def test_a_failed_param_groups_check_names_the_problem_not_the_model():
    """Issue 24: a failed param_groups check printed the whole model's repr (35 lines) before its point. Its
    messages name the call (the model as the word model), what went wrong and what was expected."""
    message = rejects("test_param_groups", "raised AttributeError", "crashed", param_groups=head_by_attribute)
    assert message == ("param_groups(model, 0.001, 0.01) raised AttributeError: 'Sequential' object has no "
                       "attribute 'fc'")
    message = rejects("test_param_groups", "raised ValueError: no head found in", "crashed",
                      param_groups=head_not_found)
    assert "\n" not in message and "(0):" not in message and "Linear(" not in message
    message = rejects("test_param_groups", "returned a group whose 'params' is a Sequential", "wrong_type",
                      param_groups=modules_as_params)
    assert message == ("param_groups(model, 0.001, 0.01) returned a group whose 'params' is a Sequential: param_groups "
                       "should return a list of dicts, each with 'params' (a list of parameters) and 'lr'.")
    message = rejects("test_param_groups", "frozen parameters", "transfer.param_groups.frozen_included",
                      param_groups=define("param_groups", GROUP_MISTAKES["frozen parameters included"][0]))
    assert message == ("param_groups(model, 0.001, 0.01) puts frozen parameters (requires_grad False) in a group: "
                       "0.1.weight and 6 others; leave out what does not learn.")


def groups_by_name(model, lr_backbone, lr_head):
    """Valid: names instead of identities, a generator, an empty backbone group kept."""
    head_name = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)][-1]
    params = dict(model.named_parameters())
    head = [p for n, p in params.items() if n.startswith(head_name + ".") and p.requires_grad]
    rest = [p for n, p in params.items() if not n.startswith(head_name + ".") and p.requires_grad]
    yield {"params": rest, "lr": lr_backbone, "weight_decay": 5e-4}
    yield {"params": head, "lr": lr_head}


def groups_of_generators(model, lr_backbone, lr_head):
    """Valid: 'params' as generators, which torch.optim reads once."""
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    in_head = {id(p) for p in head.parameters()}
    return [{"params": (p for p in model.parameters() if p.requires_grad and id(p) not in in_head), "lr": lr_backbone},
            {"params": head.parameters(), "lr": lr_head}]


def one_group_per_parameter(model, lr_backbone, lr_head):
    """Valid: one group per trainable parameter, its 'params' the tensor itself."""
    in_head = {id(p) for p in [m for m in model.modules() if isinstance(m, nn.Linear)][-1].parameters()}
    return [{"params": p, "lr": lr_head if id(p) in in_head else lr_backbone}
            for p in model.parameters() if p.requires_grad]


@pytest.mark.parametrize("valid", [groups_by_name, groups_of_generators, one_group_per_parameter])
def test_param_groups_written_differently_passes(valid):
    run_test_cell(NB, "test_param_groups", param_groups=valid)


# ---------------------------------------------------------------- photo_transforms

TRANSFORM_MISTAKES = {
    "augmentation at evaluation": ([("        steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]",
                                     "        steps = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]")],
                                   "random augmentation at evaluation",
                                   "transfer.photo_transforms.random_at_evaluation"),
    # a fixed factor: random jitter would leave the grey at 128 once in about 80 tries (uint8 rounding)
    "brightened at evaluation": ([("v2.Compose([*steps, ",
                                   "v2.Compose([*steps, v2.ColorJitter(brightness=(1.2, 1.2)), ")],
                                 "the evaluation transform, on a grey photo of 128, is another grey",
                                 "transfer.photo_transforms.colours_changed"),
    "photo squashed at evaluation": ([("v2.Resize(size, antialias=True), v2.CenterCrop(size)",
                                       "v2.Resize((size, size), antialias=True)")], "squashed",
                                     "transfer.photo_transforms.squashed"),
    "flip at evaluation": ([("v2.Resize(size, antialias=True), v2.CenterCrop(size)",
                             "v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.RandomHorizontalFlip(p=1.0)")],
                           "flipped left to right", "transfer.photo_transforms.flipped_at_evaluation"),
    "not normalised": ([(", v2.Normalize(mean, std)])", "])")], "does not normalise",
                       "transfer.photo_transforms.not_normalised"),
    "ImageNet statistics": ([("v2.Normalize(mean, std)", "v2.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])")],
                            "ImageNet's statistics", "transfer.photo_transforms.imagenet_statistics"),
    "not scaled to [0, 1]": ([("v2.ToDtype(torch.float32, scale=True)", "v2.ToDtype(torch.float32)")],
                             "not scaled to \\[0, 1\\]", "transfer.photo_transforms.not_scaled"),
    "scaled twice": ([("v2.ToDtype(torch.float32, scale=True), ",
                       "v2.ToDtype(torch.float32, scale=True), v2.Lambda(lambda x: x / 255), ")],
                     "scaled to \\[0, 1\\] twice", "transfer.photo_transforms.scaled_twice"),
    "no augmentation in training": ([("""        steps = [v2.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True), v2.RandomHorizontalFlip(),
                 v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3)]""",
                                      "        steps = [v2.Resize(size, antialias=True), v2.CenterCrop(size)]")],
                                    "same tensor every time", "transfer.photo_transforms.not_random"),
    "no flips in training": ([("v2.RandomHorizontalFlip(),\n", "\n")], "never flips",
                             "transfer.photo_transforms.never_flips"),
    "always flipped in training": ([("v2.RandomHorizontalFlip(),", "v2.RandomHorizontalFlip(p=1.0),")],
                                   "flips every time", "transfer.photo_transforms.always_flips"),
    "no colour jitter": ([(",\n                 v2.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3)]", "]")],
                         "colour jitter", "transfer.photo_transforms.no_colour_jitter"),
    "wrong output size": ([("v2.CenterCrop(size)", "v2.CenterCrop(size - 2)")], "expected \\(3, 48, 48\\)",
                          "wrong_shape"),
    "normalised before scaling": ([("v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)",
                                    "v2.Normalize(mean, std), v2.ToDtype(torch.float32, scale=True)")],
                                  "photo_transforms\\(48, False, mean, std\\)\\(a uint8 photo \\(3, 60, 90\\)\\) "
                                  "raised TypeError", "crashed"),
    "arrays instead of tensors": ([("    return v2.Compose([", "    return lambda photo: v2.Compose(["),
                                   ("v2.Normalize(mean, std)])", "v2.Normalize(mean, std)])(photo).numpy()")],
                                  "returned ndarray, not a tensor", "wrong_type"),
    # the public check's own statistics typed in: only the hidden test, with other statistics, sees it
    "the check's statistics instead of the arguments": ([("v2.Normalize(mean, std)",
                                                          "v2.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26))")],
                                                        "not the normalised centre square", None),
}


@pytest.mark.parametrize("mistake", TRANSFORM_MISTAKES)
def test_photo_transforms_mistake_is_named(mistake):
    edits, match, mistake_id = TRANSFORM_MISTAKES[mistake]
    rejects("test_photo_transforms", match, mistake_id, photo_transforms=define("photo_transforms", edits))


def training_without_normalising(size, train, mean, std):
    """Wrong: the training branch forgets Normalize (evaluation is right)."""
    transform = define("photo_transforms")(size, train, mean, std)
    return v2.Compose(transform.transforms[:-1]) if train else transform


def test_a_training_only_normalisation_mistake_is_named():
    rejects("test_photo_transforms", "the training transform, on a grey photo of 128, gives the same value in every "
            "channel", "transfer.photo_transforms.not_normalised", photo_transforms=training_without_normalising)


def transforms_in_another_order(size, train, mean, std):
    """Valid: floats first, then geometry, v1-style tensors, a list of steps run in a function."""
    scale = v2.ToDtype(torch.float32, scale=True)
    if train:
        steps = [v2.ToImage(), scale, v2.RandomHorizontalFlip(0.5), v2.RandomResizedCrop((size, size)),
                 v2.ColorJitter(0.2, 0.2, 0.2, 0.02)]
    else:
        steps = [v2.ToImage(), scale, v2.Resize(size), v2.CenterCrop((size, size))]
    normalise = v2.Normalize(list(mean), list(std))

    def transform(image):
        for step in steps:
            image = step(image)
        return normalise(image)

    return transform


def test_photo_transforms_written_differently_pass():
    run_test_cell(NB, "test_photo_transforms", photo_transforms=transforms_in_another_order)


def test_every_usual_mistake_has_a_wrong_answer():
    tables = (transfer.ADAPT_MODEL_MISTAKES + transfer.GREY_STEM_MISTAKES + transfer.COLOUR_STEM_MISTAKES
              + transfer.GREY_PHOTO_MISTAKES + transfer.EVALUATION_MISTAKES + transfer.TRAINING_MISTAKES + transfer.PARAM_GROUPS_MISTAKES)
    answered = {mistake for table in (ADAPT_MISTAKES, GROUP_MISTAKES, TRANSFORM_MISTAKES)
                for _, _, mistake in table.values()}
    answered |= {mistake for _, _, mistake in ADAPT_OTHER_MISTAKES}
    assert {m.id for m in tables} - answered == set()


# ---------------------------------------------------------------- grad_cam

GRAD_CAM_WEIGHTS = "    channel_weights = gradients.mean(dim=(2, 3), keepdim=True)\n"
GRAD_CAM_RETURN = "    return torch.relu((channel_weights * activations).sum(dim=1))\n"
GRAD_CAM_MISTAKES = {
    "no ReLU": ([(GRAD_CAM_RETURN, "    return (channel_weights * activations).sum(dim=1)\n")], "not passed through a ReLU",
                "transfer.grad_cam.no_relu"),
    "absolute value for ReLU": ([(GRAD_CAM_RETURN, "    return (channel_weights * activations).sum(dim=1).abs()\n")],
                                "magnitude is taken", "transfer.grad_cam.absolute_value"),
    "weights summed over the positions": ([("gradients.mean(dim=(2, 3)", "gradients.sum(dim=(2, 3)")], "H·W times too large",
                                          "transfer.grad_cam.weights_summed"),
    "maps averaged over the channels": ([(".sum(dim=1))", ".mean(dim=1))")], "C times too small",
                                        "transfer.grad_cam.channels_averaged"),
    "gradients multiplied in position by position": ([(GRAD_CAM_WEIGHTS, "    channel_weights = gradients\n")],
                                                     "gradient at the same position",
                                                     "transfer.grad_cam.elementwise_gradients"),
    "weights averaged over the channel axis": ([("gradients.mean(dim=(2, 3)", "gradients.mean(dim=1")],
                                               "one weight per position", "transfer.grad_cam.weights_per_position"),
    "weights averaged over the batch too": ([("gradients.mean(dim=(2, 3)", "gradients.mean(dim=(0, 2, 3)")],
                                            "same channel weights", "transfer.grad_cam.weights_shared_by_images"),
    "ReLU before the sum": ([(GRAD_CAM_RETURN, "    return torch.relu(channel_weights * activations).sum(dim=1)\n")],
                            "ReLU of each channel's weighted map", "transfer.grad_cam.relu_before_sum"),
    "rescaled to a maximum of 1": ([(GRAD_CAM_RETURN, "    maps = torch.relu((channel_weights * activations).sum(dim=1))\n"
                                                      "    return maps / maps.amax(dim=(1, 2), keepdim=True)\n")],
                                   "maximum is 1", "transfer.grad_cam.rescaled"),
    "activations weighted in place": ([(GRAD_CAM_RETURN, "    activations.mul_(channel_weights)\n"
                                                         "    return torch.relu(activations.sum(dim=1))\n")],
                                      "changed its argument activations in place", "changed_argument"),
    "the channel axis kept": ([(".sum(dim=1))", ".sum(dim=1, keepdim=True))")], "expected \\(3, 4, 6\\)", "wrong_shape"),
    "stretched to another size": ([(GRAD_CAM_RETURN, "    maps = torch.relu((channel_weights * activations).sum(dim=1))\n"
                                                     "    return torch.nn.functional.interpolate(maps[:, None], size=(32, 32))[:, 0]\n")],
                                  "returned shape \\(3, 32, 32\\)", "wrong_shape"),
    "averaged over the wrong axes": ([("gradients.mean(dim=(2, 3)", "gradients.mean(dim=(1, 2)")], "grad_cam\\(activations",
                                     None),
    "nothing returned": ([(GRAD_CAM_RETURN, "    torch.relu((channel_weights * activations).sum(dim=1))\n")],
                         "returned None", "returned_none"),
}


@pytest.mark.parametrize("mistake", GRAD_CAM_MISTAKES)
def test_grad_cam_mistake_is_named(mistake):
    edits, match, mistake_id = GRAD_CAM_MISTAKES[mistake]
    rejects("test_grad_cam", match, mistake_id, grad_cam=define("grad_cam", edits))


def grad_cam_in_numpy(activations, gradients):
    """Valid: NumPy inside, a NumPy array out."""
    a, g = np.asarray(activations, dtype=np.float64), np.asarray(gradients, dtype=np.float64)
    weights = g.reshape(*g.shape[:2], -1).mean(axis=2)
    return np.maximum(np.einsum("nc,nchw->nhw", weights, a), 0)


def grad_cam_pooled(activations, gradients):
    """Valid: torch's pooling, one image at a time, clamp for the ReLU, float64."""
    maps = []
    for a, g in zip(activations.double(), gradients.double()):
        weights = torch.nn.functional.adaptive_avg_pool2d(g, 1)
        maps.append((a * weights).sum(0).clamp(min=0))
    return torch.stack(maps)


@pytest.mark.parametrize("valid", [grad_cam_in_numpy, grad_cam_pooled])
def test_grad_cam_written_differently_passes(valid):
    run_test_cell(NB, "test_grad_cam", grad_cam=valid)


def test_every_grad_cam_mistake_has_a_wrong_answer():
    answered = {mistake for _, _, mistake in GRAD_CAM_MISTAKES.values()}
    assert {m.id for m in transfer.GRAD_CAM_MISTAKES} - answered == set()


# ---------------------------------------------------------------- the open task's tiers

class Constant(nn.Module):
    """Wrong: an untrained model that calls every image class 0."""

    def __init__(self, classes=10):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))
        self.classes = classes

    def forward(self, x):
        return nn.functional.one_hot(torch.zeros(len(x), dtype=torch.long), self.classes).float() + self.scale


class Memorised(nn.Module):
    """A model that knows every photo: its label by the nearest stored image (a stand-in for a perfect recipe)."""

    def __init__(self, images, labels):
        super().__init__()
        self.register_buffer("images", images.flatten(1))
        self.register_buffer("labels", torch.as_tensor(labels))

    def forward(self, x):
        nearest = torch.cdist(x.flatten(1), self.images).argmin(1)
        return nn.functional.one_hot(self.labels[nearest], 2).float()


@pytest.fixture
def memorised(saved_backbone):
    """Three fold models that know every photo, normalised as the hidden test does (fast mode)."""
    from conftest import real_data_dir
    from course_lib import transfer as transfer_lib
    from course_lib.data import load_muffin_chihuahua

    real_data_dir()
    photos = load_muffin_chihuahua(image_size=64)
    saved = transfer_lib.load_backbone()
    evaluation = define("photo_transforms")(32, False, saved.mean, saved.std)
    x = torch.stack([evaluation(torch.from_numpy(image).permute(2, 0, 1)) for image in photos.x])
    return [Memorised(x, photos.y) for _ in range(3)]


@pytest.mark.parametrize("tier", [1, 2, 3])
def test_the_tiers_are_recomputed_from_the_fold_models(tier, memorised, monkeypatch):
    """The grader loads the photos, makes the folds and normalises the held-out photos itself; the kernel's
    models only predict: a typed-in risk earns nothing, a wrong number of models is named."""
    monkeypatch.setenv("COURSE_FAST", "1")
    grade_id = f"test_my_photo_recipe_tier_{tier}"
    tiers = (0.42, 0.36, 0.32)            # what the locked cell sets in fast mode; the hidden test has its own
    run_test_cell(NB, grade_id, my_cv_risk=0.1, my_cv_models=memorised, PHOTO_TIERS=tiers)
    rejects(grade_id, f"above tier {tier}", my_cv_risk=0.0, my_cv_models=[Constant(2)] * 3, PHOTO_TIERS=tiers)
    rejects(grade_id, f"above tier {tier}", my_cv_risk=0.0, my_cv_models=[Constant(2)] * 3, PHOTO_TIERS=(1, 1, 1))
    rejects(grade_id, "my_cv_models holds 2 models for 3 folds", my_cv_risk=0.0, my_cv_models=memorised[:2],
            PHOTO_TIERS=tiers)
    rejects(grade_id, f"tier {tier} needs a cross-validated risk", my_cv_risk=0.9, my_cv_models=memorised,
            PHOTO_TIERS=tiers)


# ---------------------------------------------------------------- the Fashion-MNIST test accuracy

GREY_MEAN, GREY_STD = 0.3, 0.35   # what the hidden test reads from the saved backbone (patched in below)


class NearestMean(nn.Module):
    """A classifier of normalised grey images (N, 1, 28, 28): the nearest class mean, as a linear layer."""

    def __init__(self, x, y):
        super().__init__()
        means = torch.stack([x[y == k].flatten(1).mean(0) for k in range(10)])
        self.linear = nn.Linear(means.shape[1], 10)
        with torch.no_grad():
            self.linear.weight.copy_(means)
            self.linear.bias.copy_(-0.5 * means.square().sum(1))

    def forward(self, x):
        return self.linear(x.flatten(1))


@pytest.fixture(scope="module")
def nearest_mean():
    """A model of about 68% test accuracy, trained on images normalised as the hidden test does."""
    from conftest import real_data_dir
    from course_lib.data import mnist_splits

    real_data_dir()
    train = mnist_splits("fashion_mnist").train
    x = (torch.from_numpy(train.x[:6000]).float()[:, None] / 255 - GREY_MEAN) / GREY_STD
    return NearestMean(x, torch.from_numpy(train.y[:6000]))


@pytest.fixture
def saved_backbone(monkeypatch):
    """The backbone's saved statistics, without notebook 03's checkpoint."""
    from course_lib import transfer

    saved = transfer.Backbone(None, (GREY_MEAN - 0.1, GREY_MEAN, GREY_MEAN + 0.1), (GREY_STD,) * 3, "for the tests")
    monkeypatch.setattr(transfer, "load_backbone", lambda: saved)


class Unflattened(nn.Module):
    """Wrong: the nearest-mean classifier with an extra trailing axis, (N, 10, 1), whose classes would be
    compared with every label of the batch (N, N) if their shape went unchecked."""

    def __init__(self, classifier):
        super().__init__()
        self.classifier = classifier

    def forward(self, x):
        return self.classifier(x)[..., None]


def test_fashion_accuracy_is_recomputed_from_the_model(nearest_mean, saved_backbone, monkeypatch):
    """The grader normalises the test images, the kernel only predicts, the grader counts with its own
    labels: a typed-in accuracy earns nothing, and the full-mode threshold applies to the model."""
    monkeypatch.setenv("COURSE_FAST", "1")
    run_test_cell(NB, "test_fashion_accuracy", fashion_mnist_test_accuracy=0.25, fashion_model=nearest_mean)
    rejects("test_fashion_accuracy", "fashion_model (9|10)\\.\\d% is below 30%", fashion_mnist_test_accuracy=0.99,
            fashion_model=Constant())
    rejects("test_fashion_accuracy", "close to chance", fashion_mnist_test_accuracy=0.11, fashion_model=nearest_mean)
    rejects("test_fashion_accuracy", "predictions of shape \\(1000, 1\\) for 1000 images",
            fashion_mnist_test_accuracy=0.99, fashion_model=Unflattened(nearest_mean))
    monkeypatch.setenv("COURSE_FAST", "0")
    rejects("test_fashion_accuracy", "fashion_model \\d+\\.\\d% is below 85%", fashion_mnist_test_accuracy=0.99,
            fashion_model=nearest_mean)
