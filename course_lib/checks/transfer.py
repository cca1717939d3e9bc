"""Checks for notebook 06 (transfer to new datasets): a backbone adapted to new data, photo
transforms for training and evaluation, parameter groups with their own learning rates, and the
weighting of Grad-CAM's heat maps.

References come from properties, not from a model answer: a small random ``FastCIFARNet`` is
adapted and inspected (which parameters learn, which weights were kept, what the first layer's
filters became), and the transforms are run on synthetic photos whose expected output is known (a
constant grey, a centre square between coloured borders, a left-to-right ramp). Each check is its
contract plus tables of the usual mistakes (:class:`~course_lib.checks.toolkit.Mistake`), tried in
order on a view of what the student's code gave: the head not replaced, the backbone not frozen in a
probe, the RGB filters summed instead of averaged, augmentation at evaluation, ImageNet's statistics
instead of the backbone's, the learning rates swapped, and so on.

The student's models, transforms and optimizers stay where they were made: when graded, the steps
that build and run them (the ``*_in_kernel`` functions) run in the notebook's kernel
(:func:`~course_lib.checks.remote.in_kernel`) and answer with plain data (parameters by name, flags,
outputs on inputs the check sends), which the check compares with references it computes itself.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks.remote import in_kernel
from course_lib.checks.toolkit import (Mistake, call, close, compare, describe, diagnose, error_line, expect, fail,
                                       passed)
from course_lib.models import FastCIFARNet

__all__ = ["check_adapt_model", "check_photo_transforms", "check_param_groups", "check_grad_cam"]

MODES = ("linear_probe", "fine_tune", "scratch")
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)     # a backbone's statistics, for the transform checks
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
NEW_CLASSES = 5            # outputs of the head that adapt_model is asked for


def tiny_backbone(seed: int = 0, widths=(4, 8, 8, 8)) -> FastCIFARNet:
    """A small ``FastCIFARNet`` (10 classes) with random weights and batch-norm statistics, as if trained."""
    torch.manual_seed(seed)
    model = FastCIFARNet(widths=widths)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.normal_()
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _named(names) -> str:
    """A few parameter names in words ("" for none): ``features.0.weight and 6 others``."""
    names = list(names)
    if len(names) <= 2:
        return " and ".join(names)
    return f"{names[0]} and {len(names) - 1} others"


def _name_mistake(view: dict, what: str, mistakes) -> None:
    """:func:`~course_lib.checks.toolkit.diagnose` for a view of the student's result (a dict), whose hints
    name the view's entries (``{frozen}``), so that the message says which layer or parameter."""
    for mistake in mistakes:
        if mistake.matches(view):
            fail(f"{what} {mistake.hint.format_map(view)}", mistake.id)


# ---------------------------------------------------------------- adapt_model

# Tried in order on _adapt_view's view of one adapted model; each hint follows "adapt_model(backbone, 5, 1,
# 'linear_probe')" and may name the view's entries.
ADAPT_MODEL_MISTAKES = (
    Mistake("transfer.adapt_model.changed_backbone",
            "changed the backbone it was given: adapt a copy, so that every mode starts from the same pretrained "
            "network.", shows=lambda v: v["backbone_changed"]),
    Mistake("transfer.adapt_model.first_layer_not_adapted",
            "returns a model whose first nn.Conv2d takes {stem_channels} channels: adapt it to {in_channels}-channel "
            "images.", shows=lambda v: v["stem_channels"] != v["in_channels"]),
    Mistake("transfer.adapt_model.head_not_replaced",
            "keeps the backbone's head ({outputs} outputs per image): the head was not replaced by a new nn.Linear "
            "with one output per class.", shows=lambda v: v["outputs"] == v["backbone_outputs"]),
    Mistake("transfer.adapt_model.head_frozen",
            "freezes the new head (requires_grad False): the head learns in every mode.",
            shows=lambda v: not v["head_trainable"]),
    Mistake("transfer.adapt_model.backbone_trainable_in_probe",
            "leaves {trainable_backbone} of the backbone trainable (requires_grad): in a linear probe only the new "
            "head learns.", shows=lambda v: v["mode"] == "linear_probe" and v["trainable_backbone"]),
    Mistake("transfer.adapt_model.network_frozen",
            "freezes {frozen}: this mode trains the whole network.",
            shows=lambda v: v["mode"] != "linear_probe" and v["frozen"]),
    Mistake("transfer.adapt_model.frozen_unfrozen",
            "lets {unfrozen} learn, which the backbone kept frozen (the batch norms' scales): a mode decides which of "
            "the backbone's learning parameters learn, and what it froze stays frozen.",
            shows=lambda v: v["unfrozen"]),
    Mistake("transfer.adapt_model.scratch_from_zeros",
            "starts {zero} from weights that are all zero: a network that starts from zeros cannot learn different "
            "filters.", shows=lambda v: v["mode"] == "scratch" and v["zero"]),
    Mistake("transfer.adapt_model.scratch_keeps_pretrained",
            "keeps the pretrained weights of {kept}: a model trained from scratch starts from fresh random weights.",
            shows=lambda v: v["mode"] == "scratch" and v["kept"]),
    Mistake("transfer.adapt_model.pretrained_changed",
            "changes the pretrained weights of {changed}: transfer starts from the backbone's weights.",
            shows=lambda v: v["mode"] != "scratch" and v["changed"]),
)

# The first layer of a model adapted to grey images, judged by how it responds to a grey image (torch's conv2d with
# its filters alone), compared with the pretrained layer's responses to the same grey shown in colour (``inputs``:
# ``_pretrained_responses``); each hint follows "the first layer of adapt_model(...), on a grey image,".
GREY_STEM_MISTAKES = (
    Mistake("transfer.adapt_model.filters_summed",
            "responds as the pretrained layer does to the same grey in all three colours at once, three times too "
            "strongly: its filters are the sum of the RGB filters, where the notebook asks for their average.",
            returns=lambda responses: responses["all_colours"]),
    Mistake("transfer.adapt_model.filters_of_one_colour",
            "responds as the pretrained layer does to the grey shown in one colour channel alone: its filters are "
            "one colour's filters, where the notebook asks for the average of the three.",
            shows=lambda stem, responses: any(close(stem, one) for one in responses["one_colour"])),
)
# The first layer's filters of a model adapted to colour images; each hint follows "the first-layer filters of
# adapt_model(...)".
COLOUR_STEM_MISTAKES = (
    Mistake("transfer.adapt_model.colour_filters_averaged",
            "are the RGB filters averaged (each filter is the same for the three colours): for colour images keep "
            "the pretrained filters as they are.",
            shows=lambda stem: stem.shape[1] > 1 and all(close(stem[:, c], stem[:, 0]) for c in range(1, stem.shape[1]))),
)


def _pretrained_responses(rgb: torch.Tensor, grey: torch.Tensor) -> dict:
    """The pretrained first layer's responses (torch's conv2d with its filters ``rgb`` alone) to the grey image
    ``grey`` (1, 1, H, W) shown in each colour channel alone ("one_colour", one per channel, with the other
    channels black) and in all three channels at once ("all_colours")."""
    black = torch.zeros_like(grey)
    alone = [torch.cat([grey if channel == shown else black for channel in range(rgb.shape[1])], dim=1)
             for shown in range(rgb.shape[1])]
    return {"one_colour": [F.conv2d(image, rgb) for image in alone],
            "all_colours": F.conv2d(grey.expand(-1, rgb.shape[1], -1, -1), rgb)}


def _adapt_in_kernel(adapt_model, num_classes, in_channels, mode, x):
    """``adapt_model`` on a fresh ``tiny_backbone()``, as plain data: the backbone afterwards, the model's
    parameters and their requires_grad, its outputs on ``x`` (eval mode) or why it failed."""
    import torch
    from torch import nn

    from course_lib.checks.transfer import _snapshot, tiny_backbone

    backbone = tiny_backbone()
    model = adapt_model(backbone, num_classes, in_channels, mode)
    if not isinstance(model, nn.Module):
        return {"module": False, "type": type(model).__name__}
    found = {"module": True, "same_object": model is backbone, "backbone": _snapshot(backbone),
             "params": {k: p.detach().clone() for k, p in model.named_parameters()},
             "trainable": {k: p.requires_grad is True for k, p in model.named_parameters()}}
    try:
        with torch.no_grad():
            found["out"] = model.eval()(x)
    except Exception as err:
        found["failed"] = f"{type(err).__name__}: {err}"
    return found


def _unknown_mode_in_kernel(adapt_model, mode):
    """What ``adapt_model`` raises for ``mode`` on a fresh ``tiny_backbone()``: None, or (whether it is a
    ValueError, its type's name, its message)."""
    from course_lib.checks.transfer import tiny_backbone

    try:
        adapt_model(tiny_backbone(), 5, 3, mode)
    except Exception as err:
        return [isinstance(err, ValueError), type(err).__name__, str(err)]
    return None


def _snapshot(model: nn.Module) -> dict:
    """A model's state and which of its parameters learn, as plain data."""
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "trainable": {k: p.requires_grad for k, p in model.named_parameters()}}


def _unchanged(before: dict, after: dict) -> bool:
    return (before["trainable"] == after["trainable"] and before["state"].keys() == after["state"].keys()
            and all(torch.equal(before["state"][k], after["state"][k]) for k in before["state"]))


def _stem_weight(weights: dict) -> torch.Tensor:
    """The first convolution's weight: the first 4-d parameter (the check's models have one stem)."""
    return next(p for p in weights.values() if p.dim() == 4)


def _adapt_view(found: dict, backbone: nn.Module, reference: dict, mode: str, in_channels: int) -> dict:
    """What ``ADAPT_MODEL_MISTAKES`` read in one adapted model (``found``, from ``_adapt_in_kernel``): flags,
    numbers, and parameter names in words ("" for none). The head's parameters are the only ones with
    ``NEW_CLASSES`` rows; the later convolutions are compared with the backbone's by name."""
    weights = found["params"]
    trainable = {name for name, learns in found["trainable"].items() if learns}
    head = {name for name, p in weights.items() if p.dim() <= 2 and p.shape[0] == NEW_CLASSES}
    pretrained = {f"{name}.weight": m.weight.detach() for name, m in backbone.named_modules()
                  if isinstance(m, nn.Conv2d)}
    convs = [name for name in pretrained if name in weights]
    later = convs[1:]
    return {
        "mode": mode, "in_channels": in_channels,
        "backbone_changed": found["same_object"] or not _unchanged(reference, found["backbone"]),
        "stem_channels": _stem_weight(weights).shape[1],
        "outputs": found["out"].shape[-1] if "out" in found else None,
        "backbone_outputs": backbone.head[-1].out_features,
        "head_trainable": bool(head & trainable),
        "trainable_backbone": _named(sorted(trainable - head)),
        "frozen": _named(name for name in convs if name not in trainable),
        "unfrozen": _named(sorted(name for name in trainable - head if reference["trainable"].get(name) is False)),
        "zero": _named(name for name in convs if not weights[name].abs().sum() > 0),
        "kept": _named(name for name in later if torch.equal(weights[name], pretrained[name])),
        "changed": _named(name for name in later if not torch.equal(weights[name], pretrained[name])),
    }


def check_adapt_model(adapt_model) -> None:
    """``adapt_model(backbone, num_classes, in_channels, mode)`` in its three modes, 3- and 1-channel.

    Contract: it returns a new model (an nn.Module) and leaves the backbone it is given unchanged (the
    backbone is read in the kernel after the call; changing it is the mistake
    transfer.adapt_model.changed_backbone). The model maps (N, in_channels, 32, 32) to (N, num_classes);
    the head learns in every mode, only the head in a linear probe, everything otherwise; the pretrained
    weights are kept (the first layer's filters averaged over the colours for 1-channel images) except from
    scratch, which starts from fresh random weights. An unknown mode raises ValueError.
    """
    backbone = tiny_backbone()
    reference = _snapshot(backbone)
    rgb = _stem_weight(dict(backbone.named_parameters())).detach()
    grey = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(2))     # a grey image, one channel
    responses = _pretrained_responses(rgb, grey)
    adapt = in_kernel(_adapt_in_kernel)
    for in_channels in (3, 1):
        x = torch.randn(4, in_channels, 32, 32, generator=torch.Generator().manual_seed(1))
        for mode in MODES:
            what = f"adapt_model(backbone, {NEW_CLASSES}, {in_channels}, {mode!r})"
            found = call(adapt, adapt_model, NEW_CLASSES, in_channels, mode, x, name="adapt_model",
                         shown=f"backbone, {NEW_CLASSES}, {in_channels}, {mode!r}")
            if not found["module"]:
                returned = "None" if found["type"] == "NoneType" else f"a {found['type']}"
                fail(f"{what} returned {returned}, not a model (an nn.Module): return the adapted model.",
                     "returned_none" if returned == "None" else "wrong_type")
            _name_mistake(_adapt_view(found, backbone, reference, mode, in_channels), what, ADAPT_MODEL_MISTAKES)
            expect("failed" not in found, f"the model of {what} fails on a batch of shape {tuple(x.shape)}: "
                                          f"{error_line(found.get('failed', ''))}", "crashed")
            out_shape = tuple(found["out"].shape)
            expect(out_shape == (len(x), NEW_CLASSES), f"the model of {what} gives outputs of shape {out_shape}; "
                                                       f"expected {(len(x), NEW_CLASSES)}, one output per class.",
                   "wrong_shape")
            if mode != "scratch" and in_channels == 1:
                # the grey image's response should be the average of the pretrained layer's responses to the grey
                # shown in each colour alone
                compare(F.conv2d(grey, _stem_weight(found["params"])), torch.stack(responses["one_colour"]).mean(0),
                        f"the first layer of {what}, on a grey image,", tol=1e-5, mistakes=GREY_STEM_MISTAKES,
                        inputs=(responses,), expected_as="the average of the pretrained layer's responses to the grey "
                                                         "in each colour alone")
            elif mode != "scratch":
                compare(_stem_weight(found["params"]), rgb, f"the first-layer filters of {what}",
                        mistakes=COLOUR_STEM_MISTAKES, expected_as="the pretrained value")
    raised = in_kernel(_unknown_mode_in_kernel)(adapt_model, "finetune")
    expect(raised is not None, "adapt_model accepted mode='finetune', which is not one of the three modes: raise "
                               "ValueError naming them.", "transfer.adapt_model.unknown_mode_accepted")
    expect(raised[0], f"adapt_model(..., mode='finetune') raised {raised[1]}: {error_line(raised[2])}; an unknown "
                      "mode should raise ValueError naming the three modes.",
           "transfer.adapt_model.unknown_mode_wrong_error")
    passed("adapt_model", "three modes, 3- and 1-channel inputs")


# ---------------------------------------------------------------- photo transforms

GREY = 128                 # the grey photo's pixel value
GREY_NORMALISED = [(GREY / 255 - m) / s for m, s in zip(MEAN, STD)]


def _grey_on(value, mean, std) -> bool:
    """Whether ``value`` (one number per channel) is a grey pixel once ``(x - mean) / std`` is undone."""
    pixel = torch.as_tensor(value) * torch.tensor(std) + torch.tensor(mean)
    return bool(pixel.max() - pixel.min() < 0.01)


# Tried on a transform's output for a grey photo (its mean per channel); each hint follows "the evaluation
# transform, on a grey photo of 128,". The last, a grey of another brightness, is a mistake at evaluation only.
GREY_PHOTO_MISTAKES = (
    Mistake("transfer.photo_transforms.not_scaled",
            "gives values in the hundreds: the uint8 pixels were not scaled to [0, 1] before normalising.",
            shows=lambda value: value.abs().max() > 20),
    Mistake("transfer.photo_transforms.scaled_twice",
            "is almost black once the normalisation is undone: the pixels were scaled to [0, 1] twice.",
            returns=lambda: [(GREY / 255 / 255 - m) / s for m, s in zip(MEAN, STD)]),
    Mistake("transfer.photo_transforms.not_normalised",
            "gives the same value in every channel: it scales the pixels to [0, 1] but does not normalise them "
            "with the backbone's mean and std.", shows=lambda value: _grey_on(value, (0, 0, 0), (1, 1, 1))),
    Mistake("transfer.photo_transforms.imagenet_statistics",
            "is normalised with ImageNet's statistics; use the mean and std the backbone was trained with (the "
            "arguments).", shows=lambda value: _grey_on(value, IMAGENET_MEAN, IMAGENET_STD)),
    Mistake("transfer.photo_transforms.colours_changed",
            "is another grey once the normalisation is undone: the evaluation transform should not change colours "
            "(no colour jitter).",
            shows=lambda value: _grey_on(value, MEAN, STD)),
)

# Tried on _evaluation_view's view of the evaluation transform; each hint follows "the evaluation transform".
EVALUATION_MISTAKES = (
    Mistake("transfer.photo_transforms.random_at_evaluation",
            "gives a different tensor each time for the same photo: random augmentation at evaluation makes the "
            "measured accuracy noisy; keep it deterministic.", shows=lambda v: not v["deterministic"]),
    Mistake("transfer.photo_transforms.squashed",
            "keeps the photo's red left and right borders: the photo was squashed to a square; resize its shorter "
            "side and crop the centre instead.", shows=lambda v: v["red"] >= 0.5),
    Mistake("transfer.photo_transforms.flipped_at_evaluation",
            "returns the photo flipped left to right: flips are for training only.",
            shows=lambda v: v["left"] >= v["right"]),
)

# Tried on _training_view's view of the training transform; each hint follows "the training transform".
TRAINING_MISTAKES = (
    Mistake("transfer.photo_transforms.not_random",
            "gives the same tensor every time: it should augment at random.", shows=lambda v: not v["random"]),
    Mistake("transfer.photo_transforms.never_flips",
            "never flips the photo left to right ({tries} tries): flip at random, half of the time.",
            shows=lambda v: v["flipped"] == 0),
    Mistake("transfer.photo_transforms.always_flips",
            "flips every time ({tries} tries): flip at random, half of the time.",
            shows=lambda v: v["flipped"] == v["tries"]),
    Mistake("transfer.photo_transforms.no_colour_jitter",
            "leaves a grey photo exactly as it was in {grey_tries} tries: add colour jitter (brightness, contrast, "
            "saturation).", shows=lambda v: v["brightness_spread"] <= 1e-3),
)


def _ramp_photo(height: int = 60, width: int = 90) -> torch.Tensor:
    """A landscape photo: pure red borders left and right of a centre square that is blue, with a
    brightness ramp from dark (left) to bright (right). uint8 (3, H, W)."""
    photo = torch.zeros(3, height, width, dtype=torch.uint8)
    left = (width - height) // 2
    photo[0, :, :left] = photo[0, :, left + height:] = 255
    photo[2, :, left:left + height] = torch.linspace(40, 255, height).round().to(torch.uint8)
    return photo


def _full_ramp(height: int = 60, width: int = 90) -> torch.Tensor:
    """A photo whose blue channel ramps from dark (left) to bright (right) across its whole width."""
    photo = torch.zeros(3, height, width, dtype=torch.uint8)
    photo[2] = torch.linspace(20, 255, width).round().to(torch.uint8)
    return photo


def _to_pixels(x: torch.Tensor, mean=MEAN, std=STD) -> torch.Tensor:
    """Undo the normalisation: values on the [0, 1] scale."""
    return x * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]


def _blue_sides(view: torch.Tensor) -> tuple[float, float]:
    """The mean blue of the left and right thirds of an output (3, size, size), on the [0, 1] scale."""
    blue, third = _to_pixels(view)[2], view.shape[-1] // 3
    return float(blue[:, :third].mean()), float(blue[:, -third:].mean())


def _transformed_in_kernel(transform, photos, repeats):
    """``transform`` applied ``repeats[i]`` times to a copy of ``photos[i]``, each output in turn; a tensor
    comes back as a plain tensor (a ``tv_tensors.Image`` too), anything else as its type's name."""
    import torch

    outs = []
    for photo, count in zip(photos, repeats):
        for _ in range(count):
            out = transform(photo.clone())
            outs.append(out.as_subclass(torch.Tensor) if isinstance(out, torch.Tensor) else type(out).__name__)
    return outs


def _outputs(transform, phase: str, size: int, train: bool, photos, repeats) -> list:
    """The outputs of ``transform`` (the ``phase`` transform) on ``photos``, each a float32 tensor (3, size,
    size), or a failure naming what it gives instead."""
    outs = call(in_kernel(_transformed_in_kernel), transform, photos, repeats,
                name=f"photo_transforms({size}, {train}, mean, std)", shown=f"a uint8 photo {tuple(photos[0].shape)}")
    shapes = [photo.shape for photo, count in zip(photos, repeats) for _ in range(count)]
    for out, shape in zip(outs, shapes):
        expect(isinstance(out, torch.Tensor), f"the {phase} transform returned {out}, not a tensor: it should return "
                                              f"a float32 tensor of shape (3, {size}, {size}).", "wrong_type")
        expect(tuple(out.shape) == (3, size, size), f"the {phase} transform gives shape {tuple(out.shape)} for a "
                                                    f"{shape[1]}×{shape[2]} photo; expected (3, {size}, {size}).",
               "wrong_shape")
        expect(out.dtype == torch.float32, f"the {phase} transform gives {out.dtype}; expected torch.float32 (scaled "
                                           "to [0, 1], then normalised).", "wrong_type")
    return outs


def _evaluation_view(views: list) -> dict:
    """What ``EVALUATION_MISTAKES`` read in the evaluation outputs of ``_ramp_photo`` (the same photo each)."""
    left, right = _blue_sides(views[0])
    return {"deterministic": all(torch.equal(views[0], view) for view in views[1:]),
            "red": float(_to_pixels(views[0])[0].max()), "left": left, "right": right}


def _training_view(views: list, greys: list) -> dict:
    """What ``TRAINING_MISTAKES`` read in the training outputs of ``_full_ramp`` and of a grey photo."""
    sides = [_blue_sides(view) for view in views]
    return {"random": any(not torch.equal(views[0], view) for view in views[1:]),
            "flipped": sum(left > right for left, right in sides), "tries": len(views),
            "brightness_spread": float(torch.stack([grey.mean() for grey in greys]).std()), "grey_tries": len(greys)}


def check_photo_transforms(photo_transforms, size: int = 48) -> None:
    """``photo_transforms(size, train, mean, std)``: deterministic resize and centre crop for evaluation,
    random crops, flips and colour jitter for training; both scaled and normalised like the backbone's inputs.

    Contract: each call returns a transform (a callable) that maps a uint8 photo (3, H, W) to a float32 tensor
    (3, size, size); each transform is given its own copy of a photo, which it may change.
    """
    evaluation = call(photo_transforms, size, False, MEAN, STD, shown=f"{size}, False, mean, std")
    training = call(photo_transforms, size, True, MEAN, STD, shown=f"{size}, True, mean, std")
    expect(callable(evaluation) and callable(training), "photo_transforms should return a transform (callable), "
                                                         "e.g. a torchvision.transforms.v2.Compose.", "wrong_type")
    photo, grey, ramp = _ramp_photo(), torch.full((3, 50, 70), GREY, dtype=torch.uint8), _full_ramp()

    outs = _outputs(evaluation, "evaluation", size, False, [photo, grey], [6, 1])
    compare(outs[6].mean(dim=(1, 2)), GREY_NORMALISED, f"the evaluation transform, on a grey photo of {GREY},",
            tol=1e-3, mistakes=GREY_PHOTO_MISTAKES, expected_as=f"({GREY} / 255 - mean) / std")
    diagnose(_evaluation_view(outs[:6]), "the evaluation transform", EVALUATION_MISTAKES)

    outs = _outputs(training, "training", size, True, [ramp, grey], [40, 30])
    views, greys = outs[:40], outs[40:]
    for value in (out.mean(dim=(1, 2)) for out in greys):
        if not _grey_on(value, MEAN, STD):   # colour jitter keeps a grey photo grey
            what = f"the training transform, on a grey photo of {GREY},"
            diagnose(value, what, GREY_PHOTO_MISTAKES)
            fail(f"{what} is not grey once (x - mean) / std is undone with the backbone's mean and std.")
    _name_mistake(_training_view(views, greys), "the training transform", TRAINING_MISTAKES)
    passed("photo_transforms", f"evaluation deterministic and centre-cropped, training random, {size}×{size} outputs")


# ---------------------------------------------------------------- parameter groups

_GROUPS_HEAD = ("5.weight", "5.bias")     # the parameters of groups_model's head, by name


def groups_model(probe: bool = False) -> nn.Sequential:
    """The model ``param_groups`` is checked on: a tiny backbone's features (their batch norms' scales are
    frozen), an earlier ``nn.Linear`` (index 3) and the head (index 5); ``probe``: only the head's parameters,
    named in ``_GROUPS_HEAD``, learn."""
    model = nn.Sequential(tiny_backbone().features, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 8), nn.GELU(),
                          nn.Linear(8, 3))
    for name, weight in model.named_parameters():
        if probe and name not in _GROUPS_HEAD:
            weight.requires_grad = False
    return model


# Tried in order on _groups_view's view of what param_groups returned; each hint follows "param_groups(model,
# 0.001, 0.01)" and may name the view's entries.
PARAM_GROUPS_MISTAKES = (
    Mistake("transfer.param_groups.in_two_groups",
            "puts {in_two_groups} in two groups: each parameter belongs to exactly one.",
            shows=lambda v: v["in_two_groups"]),
    Mistake("transfer.param_groups.not_the_parameters",
            "puts {foreign} items that are not the model's own parameters in its groups (copies, detached tensors "
            "or buffers, as a state dict holds): the optimizer must be given the parameters themselves.",
            shows=lambda v: v["foreign"]),
    Mistake("transfer.param_groups.frozen_included",
            "puts frozen parameters (requires_grad False) in a group: {frozen}; leave out what does not learn.",
            shows=lambda v: v["frozen"]),
    Mistake("transfer.param_groups.left_out",
            "leaves trainable parameters in no group: {missing}; the optimizer would never update them.",
            shows=lambda v: v["missing"]),
    Mistake("transfer.param_groups.no_lr",
            "returns a group with no 'lr' of its own, so it would train at the optimizer's default rate: give each "
            "group its learning rate.", shows=lambda v: v["without_lr"]),
    Mistake("transfer.param_groups.swapped",
            "gives the head lr_backbone and the rest lr_head: the learning rates are swapped.",
            shows=lambda v: v["head_at"] == "lr_backbone" and v["rest_at"] == "lr_head"),
    Mistake("transfer.param_groups.earlier_linear_as_head",
            "gives an earlier nn.Linear ({earlier}) lr_head and the head lr_backbone: the head is the model's last "
            "nn.Linear; the earlier one belongs to the backbone.",
            shows=lambda v: v["earlier_at"] == "lr_head" and v["head_at"] == "lr_backbone"),
)


def _groups_in_kernel(param_groups, lr_backbone, lr_head, probe):
    """``param_groups`` on ``groups_model(probe)``, as plain data, each parameter by its name (None for anything
    else): the groups as returned ([names, lr or None] each; a generator of parameters is read once and handed
    on as a list), and whether ``torch.optim.SGD`` takes them; or what was returned, if it is not groups."""
    from collections.abc import Iterable, Iterator

    import torch
    from torch import nn

    from course_lib.checks.transfer import groups_model

    model = groups_model(probe)
    names = {id(p): name for name, p in model.named_parameters()}
    returned = param_groups(model, lr_backbone, lr_head)
    if isinstance(returned, (dict, str, torch.Tensor, nn.Module)) or not isinstance(returned, Iterable):
        return {"unreadable": f"a {type(returned).__name__}"}
    groups = []
    for group in returned:
        if not isinstance(group, dict):
            return {"unreadable": f"a {type(returned).__name__} holding a {type(group).__name__}"}
        if "params" not in group:
            return {"unreadable": "a group without 'params'"}
        params = group["params"]
        if isinstance(params, torch.Tensor):
            params = [params]
        elif isinstance(params, (str, nn.Module)) or not isinstance(params, Iterable):
            return {"unreadable": f"a group whose 'params' is a {type(params).__name__}"}
        elif isinstance(params, Iterator):
            params = list(params)
        groups.append({**group, "params": params})
    found = {"groups": [[[names.get(id(p)) for p in group["params"]], group.get("lr")] for group in groups]}
    try:
        torch.optim.SGD(groups, lr=123.0)
    except Exception as err:
        found["sgd_failed"] = f"{type(err).__name__}: {err}"
    return found


def _groups_view(groups: list, model: nn.Module, lr_backbone: float, lr_head: float) -> dict:
    """What ``PARAM_GROUPS_MISTAKES`` read in ``groups`` ([names, lr] each, from ``_groups_in_kernel``): names
    in words ("" for none), counts, and which learning rate the head, the rest and the earlier nn.Linear got
    ("lr_head", "lr_backbone", or "" for neither or a mix)."""
    grouped = [name for names, _ in groups for name in names if name is not None]
    lr_of = {name: lr for names, lr in groups for name in names if name is not None}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    head = [name for name in trainable if name.startswith("5.")]
    earlier = [f"3.{name}" for name, _ in model[3].named_parameters()]

    def rate(names) -> str:
        for label, lr in (("lr_head", lr_head), ("lr_backbone", lr_backbone)):
            if names and all(name in lr_of and close(lr_of[name], lr) for name in names):
                return label
        return ""

    return {
        "in_two_groups": _named(sorted({name for name in grouped if grouped.count(name) > 1})),
        "foreign": sum(name is None for names, _ in groups for name in names),
        "frozen": _named(name for name in lr_of if name not in trainable),
        "missing": _named(name for name in trainable if name not in lr_of),
        "without_lr": any(lr is None for _, lr in groups),
        "head_at": rate(head), "rest_at": rate([name for name in trainable if name not in head]),
        "earlier_at": rate(earlier), "earlier": _named(earlier),
    }


def check_param_groups(param_groups) -> None:
    """``param_groups(model, lr_backbone, lr_head)``: the head's parameters at ``lr_head``, the rest of
    the trainable ones at ``lr_backbone``, frozen ones left out; usable by any ``torch.optim`` optimizer.

    Contract: it returns an iterable of dicts, each with 'params' (the model's own parameters, not copies:
    a list, a generator or one tensor) and 'lr'; it reads the model and leaves it as it is. Checked on
    ``groups_model()`` at two pairs of learning rates, then with the backbone frozen (a linear probe).
    """
    groups_of = in_kernel(_groups_in_kernel)
    for lr_backbone, lr_head, probe in ((1e-3, 1e-2, False), (0.05, 0.005, False), (1e-3, 1e-2, True)):
        model = groups_model(probe)
        shown = f"model{' with a frozen backbone' if probe else ''}, {lr_backbone}, {lr_head}"
        what = f"param_groups({shown})"
        found = call(groups_of, param_groups, lr_backbone, lr_head, probe, name="param_groups", shown=shown)
        expect("unreadable" not in found, f"{what} returned {found.get('unreadable')}: param_groups should return a "
                                          "list of dicts, each with 'params' (a list of parameters) and 'lr'.",
               "wrong_type")
        _name_mistake(_groups_view(found["groups"], model, lr_backbone, lr_head), what, PARAM_GROUPS_MISTAKES)
        expect("sgd_failed" not in found, f"torch.optim.SGD does not take the groups of {what}: "
                                          f"{error_line(found.get('sgd_failed', ''))}")
        lr_of = {name: lr for names, lr in found["groups"] for name in names}
        for name, p in model.named_parameters():
            if p.requires_grad:
                part, lr = ("lr_head", lr_head) if name.startswith("5.") else ("lr_backbone", lr_backbone)
                expect(close(lr_of[name], lr), f"{what} trains {name} at {describe(lr_of[name])}; expected {part} = "
                                               f"{lr}.")
    passed("param_groups")


# ---------------------------------------------------------------- Grad-CAM

def _cam(activations: torch.Tensor, weights: torch.Tensor, relu: bool = True) -> torch.Tensor:
    """Each image's activation maps (N, C, H, W) combined by a 1x1 convolution with its own channel weights
    (N, C), then torch's ReLU unless ``relu`` is False: (N, H, W)."""
    maps = torch.cat([F.conv2d(a[None], w.reshape(1, -1, 1, 1)) for a, w in zip(activations, weights)])[:, 0]
    return F.relu(maps) if relu else maps


def _pooled(gradients: torch.Tensor) -> torch.Tensor:
    """torch's adaptive average pooling of each gradient map to one number: (N, C)."""
    return F.adaptive_avg_pool2d(gradients, 1).flatten(1)


def grad_cam_reference(activations: torch.Tensor, gradients: torch.Tensor) -> torch.Tensor:
    """Grad-CAM (Selvaraju et al., 2017) computed with torch's layers: the gradients pooled to one weight per
    image and channel, the activation maps combined by a 1x1 convolution with them, then ReLU."""
    return _cam(activations, _pooled(gradients))


def _rescaled(maps: torch.Tensor) -> torch.Tensor:
    peaks = maps.flatten(1).amax(1).clamp_min(1e-12)
    return maps / peaks[:, None, None]


# Tried in order on the student's maps; ``returns`` takes (activations, gradients); each hint follows
# "grad_cam(activations, gradients)".
GRAD_CAM_MISTAKES = (
    Mistake("transfer.grad_cam.no_relu",
            "has negative values: the weighted sum of the activation maps is not passed through a ReLU, which keeps "
            "only the places that raise the class score.",
            returns=lambda a, g: _cam(a, _pooled(g), relu=False)),
    Mistake("transfer.grad_cam.absolute_value",
            "turns negative places positive: the weighted sum's magnitude is taken where a ReLU should set "
            "them to 0 (they lower the class score).",
            returns=lambda a, g: _cam(a, _pooled(g), relu=False).abs()),
    Mistake("transfer.grad_cam.relu_before_sum",
            "sums the ReLU of each channel's weighted map: the ReLU comes after the sum over the channels, so that "
            "channels pulling the score down cancel those pushing it up.",
            returns=lambda a, g: F.relu(a * _pooled(g)[:, :, None, None]).sum(1)),
    Mistake("transfer.grad_cam.weights_summed",
            "is H·W times too large: each channel's weight is the sum of its gradient over the positions, where the "
            "contract asks for their mean.",
            returns=lambda a, g: _cam(a, _pooled(g)) * g.shape[-2] * g.shape[-1]),
    Mistake("transfer.grad_cam.channels_averaged",
            "is C times too small: the weighted activation maps are averaged over the channels where the contract "
            "sums them.", returns=lambda a, g: _cam(a, _pooled(g)) / g.shape[1]),
    Mistake("transfer.grad_cam.elementwise_gradients",
            "multiplies each activation by the gradient at the same position: the weights should be one number per "
            "channel, the gradient's mean over the positions.",
            returns=lambda a, g: F.relu(torch.einsum("nchw,nchw->nhw", g, a))),
    Mistake("transfer.grad_cam.weights_per_position",
            "averages the gradients over the channels (one weight per position): average each channel's gradient "
            "over the positions, the last two axes.",
            returns=lambda a, g: F.relu(torch.einsum("nhw,nchw->nhw", g.mean(1), a))),
    Mistake("transfer.grad_cam.weights_shared_by_images",
            "gives every image the same channel weights, averaged over the whole batch: each image's weights come "
            "from its own gradients.",
            returns=lambda a, g: _cam(a, _pooled(g).mean(0, keepdim=True).expand(len(g), -1))),
    Mistake("transfer.grad_cam.rescaled",
            "rescales each map so that its maximum is 1: return the maps as computed (the plot rescales them).",
            shows=lambda m, a, g: close(m, _rescaled(_cam(a, _pooled(g))), 1e-4)),
)


def grad_cam_inputs(seed: int, n: int = 3, channels: int = 5, height: int = 4, width: int = 6) -> tuple:
    """Activations (N, C, H, W) as a GELU layer gives them and gradients whose spatial means vary by channel and
    image; the map of each image is positive in some places and clipped in others."""
    draws = torch.Generator().manual_seed(seed)
    activations = F.gelu(torch.randn(n, channels, height, width, generator=draws) * 1.5)
    gradients = (torch.randn(n, channels, 1, 1, generator=draws)
                 + torch.randn(n, channels, height, width, generator=draws))
    return activations, gradients


def check_grad_cam(grad_cam) -> None:
    """``grad_cam(activations, gradients)``: Grad-CAM's heat maps from a layer's activations and the class
    score's gradients with respect to them.

    Contract: activations and gradients are tensors (N, C, H, W); it returns (N, H, W) (a tensor, or a NumPy
    array): for each image, the weight of channel c is the mean over the H·W positions of its gradient, and the
    map is the ReLU of the sum over channels of weight times activation map, not rescaled; the inputs are left
    unchanged. Checked on random batches of two shapes (H differs from W, C from both).
    """
    for seed, shape in ((0, (3, 5, 4, 6)), (1, (2, 7, 5, 3))):
        activations, gradients = grad_cam_inputs(seed, *shape)
        n, c, h, w = shape
        shown = f"activations and gradients of shape {shape}"
        maps = call(grad_cam, activations, gradients, name="grad_cam", shown=shown, returns="array",
                    keeps={0: "activations", 1: "gradients"})
        expect(tuple(getattr(maps, "shape", ())) == (n, h, w),
               f"grad_cam({shown}) returned shape {tuple(getattr(maps, 'shape', ()))}; expected {(n, h, w)}: one "
               "H x W map per image, at the layer's resolution.", "wrong_shape")
        compare(maps, grad_cam_reference(activations, gradients), f"grad_cam({shown})", tol=1e-4,
                mistakes=GRAD_CAM_MISTAKES, inputs=(activations, gradients),
                expected_as="Grad-CAM (computed with torch's pooling and 1x1 convolution)")
    passed("grad_cam", "channel weights, weighted sum and ReLU on two batches")
