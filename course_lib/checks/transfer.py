"""Checks for notebook 06 (transfer to new datasets): a backbone adapted to new data, photo
transforms for training and evaluation, and parameter groups with their own learning rates.

References come from properties, not from a model answer: a small random ``FastCIFARNet`` is
adapted and inspected (which parameters learn, where gradients arrive, which weights were kept,
what the first layer's filters became), and the transforms are run on synthetic photos whose
expected output is known (a constant grey, a centre square between coloured borders, a left-to-right
ramp). A wrong result is matched against what the usual mistakes give: the head not replaced, the
backbone not frozen in a probe, the RGB filters summed instead of averaged, augmentation at
evaluation, ImageNet's statistics instead of the backbone's, and so on.

The student's models, transforms and optimizers stay where they were made: when graded, the steps
that build and run them (the ``*_in_kernel`` functions) run in the notebook's kernel
(``course_grading.verdict.in_kernel``) and answer with plain data (parameters by name, flags,
outputs on inputs the check sends), which the check compares with references it computes itself.
"""
from __future__ import annotations

import torch
from torch import nn

from course_lib.checks import call, call_step, expect, passed
from course_lib.checks.remote import in_kernel
from course_lib.models import FastCIFARNet

__all__ = ["MODES", "tiny_backbone", "groups_model", "check_adapt_model", "check_photo_transforms",
           "check_param_groups"]

MODES = ("linear_probe", "fine_tune", "scratch")
MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)     # a backbone's statistics, for the transform checks
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def tiny_backbone(seed: int = 0, widths=(4, 8, 8, 8)) -> FastCIFARNet:
    """A small ``FastCIFARNet`` with random weights and batch-norm statistics, as if trained."""
    torch.manual_seed(seed)
    model = FastCIFARNet(widths=widths)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.bias.normal_()
                module.running_mean.normal_()
                module.running_var.uniform_(0.5, 2.0)
    return model.eval()


def _stem_weight(params: dict) -> torch.Tensor:
    """The first convolution's weight: the first 4-d parameter (the check's models have one stem)."""
    return next(p for p in params.values() if p.dim() == 4)


def _head_names(params: dict, num_classes: int) -> set:
    """Names of the head's parameters: no other parameter of the check's models has ``num_classes`` rows."""
    return {name for name, p in params.items() if p.dim() <= 2 and p.shape[0] == num_classes}


def _snapshot(model: nn.Module) -> dict:
    return {"state": {k: v.detach().clone() for k, v in model.state_dict().items()},
            "trainable": {k: p.requires_grad for k, p in model.named_parameters()}}


def _same(a: dict, b: dict) -> bool:
    return (a["trainable"] == b["trainable"] and a["state"].keys() == b["state"].keys()
            and all(torch.equal(a["state"][k], b["state"][k]) for k in a["state"]))


def _adapt_in_kernel(adapt_model, num_classes, in_channels, mode, x, x_grad):
    """``adapt_model`` on a fresh ``tiny_backbone()``, as plain data: the backbone afterwards, the model's
    parameters and their requires_grad, its outputs on ``x`` (eval mode) and, for a linear probe, the
    gradients of one training step on ``x_grad``."""
    import torch
    from torch import nn

    from course_lib.checks.transfer import tiny_backbone

    backbone = tiny_backbone()
    model = adapt_model(backbone, num_classes, in_channels, mode)
    if not isinstance(model, nn.Module):
        return {"module": False, "type": type(model).__name__}
    params = dict(model.named_parameters())
    found = {"module": True, "same_object": model is backbone,
             "backbone": {"state": {k: v.detach().clone() for k, v in backbone.state_dict().items()},
                          "trainable": {k: p.requires_grad for k, p in backbone.named_parameters()}},
             "params": {k: p.detach().clone() for k, p in params.items()},
             "trainable": {k: p.requires_grad is True for k, p in params.items()}}
    try:
        found["out"] = model.eval()(x).detach()
    except Exception as err:
        found["failed"] = f"{type(err).__name__}: {err}"
        return found
    if mode == "linear_probe":
        try:
            model.zero_grad(set_to_none=True)
            model.train()(x_grad).square().mean().backward()
            found["grads"] = {k: p.grad.detach().clone() for k, p in params.items() if p.grad is not None}
        except Exception as err:
            found["grads_failed"] = f"{type(err).__name__}: {err}"
        model.eval()
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


def _adapted(adapt, adapt_model, reference: dict, num_classes: int, in_channels: int, mode: str) -> dict:
    """What ``_adapt_in_kernel`` found, once the model is one, left the backbone alone and runs."""
    x = torch.randn(4, in_channels, 32, 32, generator=torch.Generator().manual_seed(1))
    x_grad = torch.randn(8, in_channels, 32, 32, generator=torch.Generator().manual_seed(2))
    found = call_step(adapt, "adapt_model", adapt_model, num_classes, in_channels, mode, x, x_grad,
                      shown=f"backbone, {num_classes}, {in_channels}, {mode!r}")
    expect(found["module"], f"adapt_model(..., mode={mode!r}) returned {found.get('type')}, not a model (nn.Module): "
                            "did it return the adapted model?")
    expect(_same(reference, found["backbone"]) and not found["same_object"],
           f"adapt_model(..., mode={mode!r}) changed the backbone it was given: work on a copy, so that every "
           "mode starts from the same pretrained network.")
    expect("failed" not in found, f"the model adapted to {in_channels}-channel images (mode={mode!r}) fails on a "
                                  f"batch of shape {tuple(x.shape)}: {found.get('failed')}")
    out = found["out"]
    expect(out.shape == (4, num_classes),
           f"the adapted model (mode={mode!r}) gives outputs of shape {tuple(out.shape)}, expected (4, {num_classes}): "
           + ("the classifier head was not replaced (its last nn.Linear still has the old number of outputs)."
              if out.shape[-1:] == (10,) else "the new head should have one output per class."))
    return found


def check_adapt_model(adapt_model) -> None:
    """``adapt_model(backbone, num_classes, in_channels, mode)`` in its three modes, 3- and 1-channel."""
    backbone = tiny_backbone()
    reference = _snapshot(backbone)
    rgb = _stem_weight(dict(backbone.named_parameters())).detach()
    convs = [name for name, m in backbone.named_modules() if isinstance(m, nn.Conv2d)]
    adapt = in_kernel(_adapt_in_kernel)
    for in_channels in (3, 1):
        for mode in MODES:
            found = _adapted(adapt, adapt_model, reference, 5, in_channels, mode)
            params, trainable = found["params"], {name for name, t in found["trainable"].items() if t}
            head_names, where = _head_names(params, 5), f"(mode={mode!r}, {in_channels}-channel input)"
            expect(head_names & trainable, f"the new head is frozen {where}: it must learn in every mode.")
            stem = _stem_weight(params)
            expect(stem.shape[1] == in_channels,
                   f"the first layer takes {stem.shape[1]} channels {where}: adapt it to {in_channels}.")
            if mode == "linear_probe":
                extra = sorted(trainable - head_names)
                expect(not extra, f"in a linear probe only the new head learns, but {len(extra)} other parameters "
                                  f"are still trainable (requires_grad), e.g. {extra[:1]}: freeze the backbone.")
                expect("grads_failed" not in found, f"one training step of the linear probe fails "
                                                    f"{where}: {found.get('grads_failed')}")
                reached = sorted({name for name, g in found["grads"].items() if g.abs().sum() > 0} - head_names)
                expect(not reached, f"in a linear probe gradients reached {reached[:1]} of the backbone: freeze it.")
            else:
                frozen = [c for c in convs if f"{c}.weight" in params and f"{c}.weight" not in trainable]
                expect(not frozen, f"mode={mode!r} trains the whole network, but {frozen[:1]} is frozen.")
            if mode == "scratch":
                kept = [c for c in convs[1:] if f"{c}.weight" in params
                        and torch.equal(params[f"{c}.weight"], backbone.get_parameter(f"{c}.weight").detach())]
                expect(not kept, f"mode='scratch' kept the pretrained weights of {kept[:1]}: a model "
                                 "trained from scratch starts from fresh random weights.")
                expect(stem.abs().sum() > 0, "mode='scratch' made the first layer's weights all zero: a network "
                                             "that starts from zeros cannot learn different filters.")
                continue
            later = [c for c in convs[1:] if f"{c}.weight" in params
                     and not torch.equal(params[f"{c}.weight"], backbone.get_parameter(f"{c}.weight").detach())]
            expect(not later, f"mode={mode!r} changed the pretrained weights of {later[:1]}: transfer "
                              "starts from the backbone's weights.")
            if in_channels == 3:
                expect(torch.equal(stem, rgb), f"the first layer's pretrained filters were changed {where}.")
            else:
                _expect_averaged(stem, rgb, where)
    raised = in_kernel(_unknown_mode_in_kernel)(adapt_model, "finetune")
    if raised is not None and not raised[0]:
        raise AssertionError(f"adapt_model(..., mode='finetune') raised {raised[1]}: {raised[2]}; an unknown "
                             "mode should raise ValueError naming the three modes.")
    expect(raised is not None, "adapt_model accepted mode='finetune', which is not one of the three modes: raise "
                               "ValueError naming them.")
    passed("adapt_model", "three modes, 3- and 1-channel inputs")


def _expect_averaged(weights: torch.Tensor, rgb: torch.Tensor, where: str) -> None:
    expect(tuple(weights.shape) == (rgb.shape[0], 1, *rgb.shape[2:]),
           f"the first layer's weights have shape {tuple(weights.shape)} {where}, expected "
           f"{(rgb.shape[0], 1, *rgb.shape[2:])}.")
    if torch.allclose(weights, rgb.mean(1, keepdim=True), atol=1e-6):
        return
    if torch.allclose(weights, rgb.sum(1, keepdim=True), atol=1e-6):
        raise AssertionError(f"the 1-channel filters are the SUM of the RGB filters {where}, three times too large: "
                             "average them.")
    if any(torch.allclose(weights, rgb[:, c:c + 1]) for c in range(rgb.shape[1])):
        raise AssertionError(f"the 1-channel filters are one colour's filters {where}: average the three.")
    raise AssertionError(f"the 1-channel filters {where} are neither the pretrained RGB filters averaged nor any "
                         "one colour of them: average the three channels of each filter.")


# ---------------------------------------------------------------- photo transforms

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


def _transformed(transform, what: str, photos, repeats) -> list:
    try:
        return in_kernel(_transformed_in_kernel)(transform, photos, repeats)
    except Exception as err:
        raise AssertionError(f"the {what} transform raised {type(err).__name__} on a uint8 photo (3, H, W): "
                             f"{err}.") from err


def _output(out, what: str, size: int, photo: torch.Tensor) -> torch.Tensor:
    expect(isinstance(out, torch.Tensor), f"the {what} transform returned {out}, not a tensor.")
    expect(tuple(out.shape) == (3, size, size),
           f"the {what} transform gives shape {tuple(out.shape)} for a {photo.shape[1]}×{photo.shape[2]} photo, "
           f"expected (3, {size}, {size}).")
    expect(out.dtype == torch.float32, f"the {what} transform gives {out.dtype}, expected torch.float32 (scaled "
                                       "to [0, 1], then normalised).")
    return out


def _grey_on(value: torch.Tensor, mean, std) -> bool:
    """Whether ``value`` (one number per channel) is a grey pixel once ``(x - mean) / std`` is undone."""
    pixel = value * torch.tensor(std) + torch.tensor(mean)
    return bool(pixel.max() - pixel.min() < 0.01)


def _expect_normalised(out: torch.Tensor, what: str, exact: bool) -> None:
    """``out``: the transform's output for a constant grey photo of 128; colour jitter may have made it
    brighter or darker (``exact`` False), but it must stay grey."""
    value = out.mean(dim=(1, 2))
    expect(value.abs().max() < 20, f"the {what} transform gives values around {value.mean():.0f} for a grey pixel "
                                   "of 128: the uint8 pixels were not scaled to [0, 1] before normalising.")
    if _grey_on(value, MEAN, STD):
        pixel = float((value * torch.tensor(STD) + torch.tensor(MEAN)).mean())
        expect(not exact or abs(pixel - 128 / 255) < 0.01,
               f"the {what} transform turns a grey pixel of 128 into one of {255 * pixel:.0f} (once the normalisation "
               "is undone): it should not change the colours.")
        return
    expect(not _grey_on(value, (0, 0, 0), (1, 1, 1)), f"the {what} transform scales pixels to [0, 1] but does not "
                                                       "normalise them with the backbone's mean and std.")
    expect(not _grey_on(value, IMAGENET_MEAN, IMAGENET_STD),
           f"the {what} transform normalises with ImageNet's statistics; use the mean and std the backbone was "
           "trained with (the arguments).")
    expect(False, f"the {what} transform maps a grey pixel of 128 to {value.numpy().round(3).tolist()}: expected "
                  "(pixel / 255 - mean) / std in each channel, with the mean and std given.")


def check_photo_transforms(photo_transforms, size: int = 48) -> None:
    """``photo_transforms(size, train, mean, std)``: deterministic resize and centre crop for evaluation,
    random crops, flips and colour jitter for training; both scaled and normalised like the backbone's inputs."""
    evaluation = call(photo_transforms, size, False, MEAN, STD)
    training = call(photo_transforms, size, True, MEAN, STD)
    expect(callable(evaluation) and callable(training), "photo_transforms should return a transform (callable), "
                                                         "e.g. a torchvision.transforms.v2.Compose.")
    photo, grey, ramp = _ramp_photo(), torch.full((3, 50, 70), 128, dtype=torch.uint8), _full_ramp()
    outs = _transformed(evaluation, "evaluation", [photo, grey], [6, 1])
    first = _output(outs[0], "evaluation", size, photo)
    expect(all(torch.equal(first, _output(out, "evaluation", size, photo)) for out in outs[1:6]),
           "the evaluation transform gives a different tensor each time for the same photo: random augmentation "
           "at evaluation makes the measured accuracy noisy; keep it deterministic.")
    _expect_normalised(_output(outs[6], "evaluation", size, grey), "evaluation", exact=True)
    pixels = _to_pixels(first)
    expect(pixels[0].max() < 0.5, "the evaluation output holds the photo's red left and right borders: the photo was "
                                  "squashed to a square; resize its shorter side and crop the centre instead.")
    left, right = pixels[2, :, : size // 3].mean(), pixels[2, :, -(size // 3):].mean()
    expect(left < right, "the evaluation output is flipped left to right: flips are for training only.")

    outs = _transformed(training, "training", [ramp, grey], [40, 30])
    views = [_output(out, "training", size, ramp) for out in outs[:40]]
    expect(any(not torch.equal(views[0], view) for view in views[1:]),
           "the training transform gives the same tensor every time: it should augment at random.")
    blue = [_to_pixels(view)[2] for view in views]
    flipped = sum(bool(b[:, : size // 3].mean() > b[:, -(size // 3):].mean()) for b in blue)
    expect(0 < flipped < len(views), "the training transform never flips the photo left to right (40 tries)."
           if flipped == 0 else "the training transform flips every time: flip at random (half of the time).")
    greys = [_output(out, "training", size, grey) for out in outs[40:]]
    brightness = torch.stack([g.mean() for g in greys])
    expect(brightness.std() > 1e-3, "the training transform leaves a grey photo exactly as it was in 30 tries: "
                                    "add colour jitter (brightness, contrast, saturation).")
    for out in greys:
        _expect_normalised(out, "training", exact=False)
    passed("photo_transforms", f"evaluation deterministic and centre-cropped, training random, {size}×{size} outputs")


# ---------------------------------------------------------------- parameter groups

def groups_model(probe: bool = False) -> nn.Sequential:
    """The model ``param_groups`` is checked on: a tiny backbone's features (their batch norms' scales are
    frozen), an earlier ``nn.Linear`` (index 3) and the head (index 5); ``probe``: only the head learns."""
    model = nn.Sequential(tiny_backbone().features, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(8, 8), nn.GELU(),
                          nn.Linear(8, 3))
    if probe:
        for p in model.parameters():
            p.requires_grad_(False)
        model[5].requires_grad_(True)
    return model


def _groups_in_kernel(param_groups, lr_backbone, lr_head, probe):
    """``param_groups`` on ``groups_model(probe)``, as plain data, each parameter by its name: the groups as
    returned ([names, lr or None] each), and as ``torch.optim.SGD(groups, lr=123.0)`` holds them ([names, lr]
    each), or why either could not be read."""
    import torch

    from course_lib.checks.transfer import groups_model

    model = groups_model(probe)
    names = {id(p): name for name, p in model.named_parameters()}
    groups = param_groups(model, lr_backbone, lr_head)
    try:
        groups = list(groups)
        found = {"groups": [[[names.get(id(p), f"a tensor not of the model ({id(p)})") for p in group["params"]],
                             group["lr"] if "lr" in group else None] for group in groups]}
    except Exception as err:
        return {"unreadable": f"{type(err).__name__}: {err}"}
    try:
        optimizer = torch.optim.SGD(groups, lr=123.0)
    except Exception as err:
        return {**found, "sgd_failed": f"{type(err).__name__}: {err}"}
    found["optimizer"] = [[[names.get(id(p), f"a tensor not of the model ({id(p)})") for p in group["params"]],
                           group["lr"]] for group in optimizer.param_groups]
    return found


def check_param_groups(param_groups) -> None:
    """``param_groups(model, lr_backbone, lr_head)``: the head's parameters at ``lr_head``, the rest of
    the trainable ones at ``lr_backbone``, frozen ones left out; usable by any ``torch.optim`` optimizer."""
    model = groups_model()
    head = {f"5.{name}" for name, _ in model[5].named_parameters()}
    earlier = {f"3.{name}" for name, _ in model[3].named_parameters()}
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    frozen = {name for name, p in model.named_parameters() if not p.requires_grad}
    groups_of = in_kernel(_groups_in_kernel)
    for lr_backbone, lr_head in ((1e-3, 1e-2), (0.05, 0.005)):
        found = call_step(groups_of, "param_groups", param_groups, lr_backbone, lr_head, False,
                          shown=f"model, {lr_backbone}, {lr_head}")
        expect("unreadable" not in found, "param_groups should return a list of dicts, each with 'params' and 'lr' "
                                          f"({found.get('unreadable')}).")
        grouped = [name for names, _ in found["groups"] for name in names]
        expect(len(grouped) == len(set(grouped)), "a parameter is in two groups: each belongs to exactly one.")
        expect("sgd_failed" not in found, f"torch.optim.SGD could not use what param_groups returned "
                                          f"({found.get('sgd_failed')}): return a list of dicts, each with 'params' "
                                          "and 'lr'.")
        lrs = {name: lr for names, lr in found["optimizer"] for name in names}
        expect(123.0 not in lrs.values(), "a parameter group has no 'lr' of its own, so it trains at the optimizer's "
                                          "default rate: give each group its learning rate.")
        grouped_frozen = [name for name in lrs if name in frozen]
        expect(not grouped_frozen, f"{len(grouped_frozen)} frozen parameters (requires_grad False) are in a group: leave out what "
                           "does not learn.")
        missing = [name for name in trainable if name not in lrs]
        expect(not missing, f"{len(missing)} trainable parameters are in no group: the optimizer would never update them.")
        head_lrs = {lrs[name] for name in head}
        body_lrs = {lrs[name] for name in trainable if name not in head}
        if head_lrs == {lr_backbone} and body_lrs == {lr_head}:
            raise AssertionError("the learning rates are swapped: the head got lr_backbone and the backbone lr_head.")
        expect({lrs[name] for name in earlier} == {lr_backbone} or head_lrs == {lr_head},
               "an earlier nn.Linear got lr_head: the head is the model's LAST nn.Linear; the earlier one belongs "
               "to the backbone.")
        expect(head_lrs == {lr_head}, f"the head (the last nn.Linear) trains at {sorted(head_lrs)}, expected lr_head = "
                                      f"{lr_head}.")
        expect(body_lrs == {lr_backbone}, f"the backbone's trainable parameters train at {sorted(body_lrs)}, expected "
                                          f"lr_backbone = {lr_backbone}.")
    found = call_step(groups_of, "param_groups", param_groups, 1e-3, 1e-2, True, shown="model, 0.001, 0.01")
    lrs = {name: lr for names, lr in found.get("groups", []) for name in names}
    expect(set(lrs) == head and set(lrs.values()) == {1e-2},
           "with the backbone frozen (a linear probe) only the head's parameters belong in the groups.")
    passed("param_groups")
