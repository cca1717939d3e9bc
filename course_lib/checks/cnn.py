"""Checks for notebook 03 (building CNNs): a CNN built to a written specification, the first layer's gradient
norm recorded during training, and the student's own training loop (one epoch of training, and evaluation).

Each check is written with :mod:`course_lib.checks.toolkit`: its contract, then tables of the usual mistakes,
each a :class:`~course_lib.checks.toolkit.Mistake` with a stable id (``"cnn.<exercise>.<mistake>"``) that the
instructor's class report counts. The specification of ``ThreeBlockCNN`` is held here as data (the layer types
in order and the shape of every parameter), not as code that builds the model; when a model differs from it,
the check names the first difference and, from the tables, the mistake that explains it (a missing padding, the
conv biases, the batch norms, a layer out of order).

Under the autograder the student's class or function stays in the notebook's kernel: the steps that touch it
(the ``_..._step`` functions) run there through ``in_kernel`` and take and return plain data, and every verdict
is decided here on that data, against references built here. ``logits_of`` is such a step for the hidden tests:
the grader sends images, the kernel answers with the model's logits.
"""
from __future__ import annotations

import math
import numbers
import statistics

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.checks.remote import in_kernel
from course_lib.checks.toolkit import (CheckFailed, Mistake, call, compare, describe, diagnose, expect, expect_shape,
                                       expect_tuple, fail, passed)

__all__ = ["check_three_block_cnn", "check_first_layer_grad_norm", "check_train_one_epoch", "check_evaluate",
           "logits_of"]


def _call(fn, *args, crashes=(), **options):
    """:func:`~course_lib.checks.toolkit.call`, where a crash whose message shows one of ``crashes`` (mistakes
    whose ``shows`` reads the crash message) fails naming that mistake."""
    try:
        return call(fn, *args, **options)
    except CheckFailed as failure:
        if failure.mistake == "crashed":
            diagnose(str(failure), f"{str(failure).rstrip('.')}.", crashes)
        raise


def _tensor_in_words(value) -> str:
    """A returned tensor, for a message: "a tensor holding 0.81", or "a tensor of shape (3,)"."""
    return f"a tensor holding {describe(value)}" if value.dim() == 0 else f"a {describe(value)}"


# ---------------------------------------------------------------- ThreeBlockCNN: the specification as data

_WIDTHS = (32, 64, 128)
_BLOCK = ("Conv2d", "BatchNorm2d", "ReLU", "MaxPool2d")           # one block of self.features
_HEAD = ("AdaptiveAvgPool2d", "Flatten", "Linear")               # self.classifier
_ORDINAL = {1: "1st", 2: "2nd", 3: "3rd"}
_CONV = {"kernel_size": {(3, 3)}, "stride": {(1, 1)}, "dilation": {(1, 1)}, "padding": {(1, 1), "same"}}
_MAX_POOL = {"kernel_size": {(2, 2)}, "stride": {(2, 2)}, "padding": {(0, 0)}}


def _spec_params() -> list[tuple[str, str, tuple]]:
    """(layer, parameter name, shape) of every parameter of ``ThreeBlockCNN()`` (3 input channels, 10 classes),
    in order."""
    shapes, c_in = [], 3
    for block, width in enumerate(_WIDTHS, start=1):
        shapes += [(f"the {_ORDINAL[block]} Conv2d", "weight", (width, c_in, 3, 3)),
                   (f"the {_ORDINAL[block]} BatchNorm2d", "weight", (width,)),
                   (f"the {_ORDINAL[block]} BatchNorm2d", "bias", (width,))]
        c_in = width
    return shapes + [("the Linear layer", "weight", (10, c_in)), ("the Linear layer", "bias", (10,))]


_SPEC_PARAMS = _spec_params()
_SPEC_COUNT = sum(math.prod(shape) for *_, shape in _SPEC_PARAMS)      # 94,762


def _leaf_layers(module: nn.Module) -> list[nn.Module]:
    """The modules without children, in the order they were registered (nested blocks flattened)."""
    return [m for m in module.modules() if not list(m.children())]


def _own_params(model: nn.Module) -> list[tuple[str, str, tuple]]:
    """(layer type, parameter name, shape) of every parameter of ``model``, in order."""
    return [(type(layer).__name__, name, tuple(p.shape))
            for layer in model.modules() for name, p in layer.named_parameters(recurse=False)]


def _model_facts_step(model):
    """What the check reads of a model's structure, as plain data: whether it is a module; the leaf layers' types
    of self.features and self.classifier (None for a missing one); its parameters (``_own_params``); the settings
    of the convolutions and max poolings of self.features; the output sizes of the classifier's adaptive average
    poolings. Runs where the model lives."""
    from torch import nn

    from course_lib.checks.cnn import _leaf_layers, _own_params

    facts = {"module": isinstance(model, nn.Module), "type": type(model).__name__}
    if not facts["module"]:
        return facts
    parts = {part: getattr(model, part, None) for part in ("features", "classifier")}
    parts = {part: module if isinstance(module, nn.Module) else None for part, module in parts.items()}
    facts["parts"] = {part: None if module is None else [type(m).__name__ for m in _leaf_layers(module)]
                      for part, module in parts.items()}
    facts["params"] = _own_params(model)
    features, classifier = ([] if module is None else list(module.modules()) for module in parts.values())
    facts["convs"] = [{"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding, "dilation": m.dilation}
                      for m in features if isinstance(m, nn.Conv2d)]
    facts["max_pools"] = [{"kernel_size": m.kernel_size, "stride": m.stride, "padding": m.padding}
                          for m in features if isinstance(m, nn.MaxPool2d)]
    facts["avg_pools"] = [m.output_size for m in classifier if isinstance(m, nn.AdaptiveAvgPool2d)]
    return facts


def _has(facts: dict, layer: str, name: str) -> bool:
    """Whether a layer of type ``layer`` of the model has a parameter ``name``."""
    return any((kind, param) == (layer, name) for kind, param, _ in facts["params"])


def _follows(layers: list, first: str, then: str) -> bool:
    """Whether a layer ``then`` comes right after a layer ``first`` somewhere in ``layers``."""
    return any(pair == (first, then) for pair in zip(layers, layers[1:]))


# Crashes: their ``shows`` reads the crash's message.
CONSTRUCTION_CRASHES = (
    Mistake("cnn.three_block_cnn.no_super_init", "The layers were assigned before nn.Module's own initialisation "
                                                 "ran: __init__ initialises the base class first, before creating "
                                                 "any layer.",
            shows=lambda message: "before Module.__init__() call" in message),
)
FORWARD_CRASHES = (
    Mistake("cnn.three_block_cnn.linear_inputs", "After global average pooling each image is 128 numbers, one per "
                                                 "channel, so the classifier's Linear layer takes 128 inputs.",
            shows=lambda message: "mat1 and mat2 shapes cannot be multiplied" in message),
)
# The shape (N, C, H, W) that self.features gives for a batch (4, 3, 32, 32), when it is not (4, 128, 4, 4).
FEATURES_MISTAKES = (
    Mistake("cnn.three_block_cnn.features_not_maps",
            "self.features should end with the 3rd block's max pool and keep the (N, C, H, W) layout; global "
            "average pooling and flattening belong in self.classifier.",
            shows=lambda shape: len(shape) != 4),
    Mistake("cnn.three_block_cnn.no_padding",
            "the maps are 2×2 instead of 4×4: unpadded, every 3×3 convolution trims a pixel on each side "
            "(32 → 30 → pool 15 → 13 → pool 6 → 4 → pool 2); the specification pads each convolution by one pixel "
            "so that it keeps the size.",
            shows=lambda shape: shape[2:] == (2, 2)),
    Mistake("cnn.three_block_cnn.missing_max_pool",
            "the maps are larger than 4×4: is a MaxPool2d(2) missing? Each of the three blocks ends with one, "
            "halving the size: 32 → 16 → 8 → 4.",
            shows=lambda shape: shape[2] > 4),
    Mistake("cnn.three_block_cnn.last_width",
            "the last convolution should have 128 output channels (widths 32, 64, 128).",
            shows=lambda shape: shape[1] != _WIDTHS[-1]),
)
# A model (its facts, see ``_model_facts_step``) whose number of parameters is not the specification's.
PARAMETER_MISTAKES = (
    Mistake("cnn.three_block_cnn.plain_cnn",
            "the convs have biases and there is no BatchNorm2d: that is PlainCNN, not this specification, whose "
            "convs have no bias and are each followed by a BatchNorm2d.",
            shows=lambda facts: _has(facts, "Conv2d", "bias") and not _has(facts, "BatchNorm2d", "weight")),
    Mistake("cnn.three_block_cnn.conv_bias",
            "the convolutions' biases (32 + 64 + 128 = 224 parameters) are not in the specification: its convs have "
            "no bias, because the batch norm right after each conv has its own shift, which makes a conv bias "
            "redundant.",
            shows=lambda facts: _has(facts, "Conv2d", "bias")),
    Mistake("cnn.three_block_cnn.no_batch_norm",
            "the batch norms' scales and shifts (2 × (32 + 64 + 128) = 448 parameters) are missing: is there a "
            "BatchNorm2d after each convolution?",
            shows=lambda facts: not _has(facts, "BatchNorm2d", "weight")),
    Mistake("cnn.three_block_cnn.linear_no_bias",
            "the final Linear layer has no bias; the specification's has one, as nn.Linear has by default.",
            shows=lambda facts: _has(facts, "Linear", "weight") and not _has(facts, "Linear", "bias")),
    Mistake("cnn.three_block_cnn.flattened_maps",
            "the Linear layer reads 2,048 = 128·4·4 inputs instead of 128: the 4×4 maps were flattened as they are, "
            "where global average pooling first averages each channel's map to one number. A flatten size tied to "
            "32×32 inputs would also break on 28×28 images.",
            shows=lambda facts: any(kind == "Linear" and shape[1:] == (128 * 16,)
                                    for kind, _, shape in facts["params"])),
    Mistake("cnn.three_block_cnn.pooled_to_more",
            "the classifier's average pooling keeps more than one number per channel, so the Linear layer reads "
            "more than 128 inputs: global average pooling averages each channel's whole map to a single number.",
            shows=lambda facts: any(size not in (1, (1, 1)) for size in facts["avg_pools"])),
)
# A model (its facts) whose layers of self.features are not in the specification's order.
LAYER_ORDER_MISTAKES = (
    Mistake("cnn.three_block_cnn.relu_not_a_layer",
            "each block's ReLU should be a layer of self.features (nn.ReLU), not a function applied in forward.",
            shows=lambda facts: "ReLU" not in facts["parts"]["features"]),
    Mistake("cnn.three_block_cnn.relu_before_batch_norm",
            "the batch norm normalises the conv's output before the non-linearity: each block is Conv2d → "
            "BatchNorm2d → ReLU → MaxPool2d.",
            shows=lambda facts: _follows(facts["parts"]["features"], "Conv2d", "ReLU")),
    Mistake("cnn.three_block_cnn.pool_before_relu",
            "each block ends with its max pooling, after the ReLU: Conv2d → BatchNorm2d → ReLU → MaxPool2d.",
            shows=lambda facts: _follows(facts["parts"]["features"], "BatchNorm2d", "MaxPool2d")),
)
_RULES = {"features": "each block is Conv2d → BatchNorm2d → ReLU → MaxPool2d.",
          "classifier": "the classifier is AdaptiveAvgPool2d → Flatten → Linear."}


def _first_parameter_difference(params: list) -> str:
    """Where the model's parameters (``_own_params``) first differ from the specification's, in order."""
    for (kind, name, shape), (layer, spec_name, spec_shape) in zip(params, _SPEC_PARAMS):
        if (name, shape) != (spec_name, spec_shape):
            return (f"in order, the parameters differ first at {layer}: its {spec_name} should have shape "
                    f"{spec_shape}, yours is {kind}.{name} of shape {shape}. Compare the widths "
                    f"({', '.join(map(str, _WIDTHS))}) and kernel sizes (3×3) with the table.")
    if len(params) > len(_SPEC_PARAMS):
        kind, name, shape = params[len(_SPEC_PARAMS)]
        return f"after the specification's layers there is one more parameter, {kind}.{name} of shape {shape}."
    return "some layers are missing: compare yours with the table, layer by layer."


def _layer_order_difference(parts: dict) -> tuple[str, str] | None:
    """(where self.features or self.classifier first differs from the specification's layers, in words; which
    part), or None when both match."""
    for part, expected in (("features", _BLOCK * len(_WIDTHS)), ("classifier", _HEAD)):
        layers = parts[part]
        for i, (mine, spec) in enumerate(zip(layers, expected), start=1):
            if mine != spec:
                return f"layer {i} of self.{part} is {mine} where the specification has {spec};", part
        if len(layers) > len(expected):
            return (f"self.{part} has {len(layers)} layers where the specification has {len(expected)}: after its "
                    f"last one, {expected[-1]}, comes a {layers[len(expected)]};", part)
        if len(layers) < len(expected):
            return (f"self.{part} has {len(layers)} layers where the specification has {len(expected)}: it goes on "
                    f"with {expected[len(layers)]};", part)
    return None


def _first_setting_difference(settings: dict, allowed: dict) -> str | None:
    """The first of ``settings`` (a layer's) whose value ``allowed`` (the values the specification allows, as
    pairs) does not hold, as ``"padding=(2, 2)"``; None when all are allowed. A number n stands for (n, n)."""
    for key, values in allowed.items():
        value = settings[key]
        pair = (value, value) if isinstance(value, int) else tuple(value) if isinstance(value, (list, tuple)) else value
        if pair not in values:
            return f"{key}={describe(value)}"
    return None


def check_three_block_cnn(ThreeBlockCNN) -> None:
    """``ThreeBlockCNN()`` (in_channels=3, num_classes=10) against the specification in the text: its output
    (4, 10) and self.features' maps (4, 128, 4, 4) for a batch (4, 3, 32, 32), the shapes of its parameters,
    the order of its layers and their settings. The model gets a copy of the batch; nothing else is passed."""
    name = "ThreeBlockCNN()"
    model = _call(ThreeBlockCNN, name="ThreeBlockCNN", shown="", crashes=CONSTRUCTION_CRASHES)
    facts = in_kernel(_model_facts_step)(model)
    expect(facts["module"], f"{name} is a {facts['type']}; the class should subclass nn.Module.",
           "cnn.three_block_cnn.not_a_module")
    for part in ("features", "classifier"):
        expect(facts["parts"][part] is not None,
               f"{name} has no submodule self.{part}: build self.features (the three blocks) and "
               "self.classifier (pooling, flatten, linear) as nn.Sequential in __init__.",
               "cnn.three_block_cnn.missing_submodule")

    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.train()
    out = _call(model, x, name="ThreeBlockCNN.forward", returns="array", crashes=FORWARD_CRASHES)
    expect_shape(out, (4, 10), f"{name}'s output for a batch of 4 images 3×32×32")
    features = _call(model.features, x, name="self.features", returns="array")
    shape, expected_shape = tuple(getattr(features, "shape", ())), (4, _WIDTHS[-1], 4, 4)
    if shape != expected_shape:
        what = f"self.features gives shape {shape} for a batch (4, 3, 32, 32), the specification {expected_shape}:"
        diagnose(shape, what, FEATURES_MISTAKES)
        fail(f"{what} compare your layers with the table: 3×3 convs padded to keep the size, each block ending in "
             "2×2 max pooling.", "cnn.three_block_cnn.features_shape")

    count = sum(math.prod(shape) for *_, shape in facts["params"])
    if count != _SPEC_COUNT:
        what = (f"{name} has {count:,} parameters, {abs(count - _SPEC_COUNT):,} "
                f"{'more' if count > _SPEC_COUNT else 'fewer'} than the specification's {_SPEC_COUNT:,}:")
        diagnose(facts, what, PARAMETER_MISTAKES)
        fail(f"{what} {_first_parameter_difference(facts['params'])}", "cnn.three_block_cnn.parameter_shapes")

    order = _layer_order_difference(facts["parts"])
    if order is not None:
        what, part = order
        diagnose(facts, what, LAYER_ORDER_MISTAKES)
        fail(f"{what} {_RULES[part]}", "cnn.three_block_cnn.layer_order")

    for i, conv in enumerate(facts["convs"], start=1):
        setting = _first_setting_difference(conv, _CONV)
        expect(setting is None, f"the {_ORDINAL.get(i, f'{i}th')} Conv2d has {setting}; the specification's "
                                "convolutions are 3×3 with padding 1 and stride 1, without dilation.",
               "cnn.three_block_cnn.conv_settings")
    for i, pool in enumerate(facts["max_pools"], start=1):
        setting = _first_setting_difference(pool, _MAX_POOL)
        expect(setting is None, f"the {_ORDINAL.get(i, f'{i}th')} MaxPool2d has {setting}; the specification's "
                                "max pooling takes 2×2 windows with stride 2 and no padding.",
               "cnn.three_block_cnn.max_pool_settings")
    passed("ThreeBlockCNN", f"output (4, 10), features (4, 128, 4, 4), {_SPEC_COUNT:,} parameters, "
                            "layers in the specified order")


# ---------------------------------------------------------------- first_layer_grad_norm

class _Scaled(nn.Module):
    """A learnable input scale registered before the layers: its parameter comes first in
    ``parameters()``, but it is not a layer with weights."""

    def __init__(self):
        super().__init__()
        self.input_scale = nn.Parameter(torch.tensor(1.5))
        self.pool = nn.AvgPool2d(2)
        self.body = nn.Sequential(
            nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.ReLU()),
            nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3),
        )

    def forward(self, x):
        return self.body(self.pool(x * self.input_scale))


def _grad_norm_cases():
    """(description, model, its named parts) with gradients of a cross-entropy loss. The parts are known by hand
    for each of the check's own models: "first", its first layer (the one the exercise asks about), "second" and
    "last", its 2nd and last layers with weights, and "first_parameter", the parameter that ``parameters()``
    yields first."""
    g = torch.Generator().manual_seed(3)
    with torch.random.fork_rng(devices=[]):  # fixed weights, without touching the notebook's random state
        torch.manual_seed(3)
        cnn = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.ReLU(),
                            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5))
        mlp = nn.Sequential(nn.Flatten(), nn.Linear(48, 16), nn.Sigmoid(), nn.Linear(16, 7))
        nested = _Scaled()
    cases = [
        ("a small CNN: conv, conv, linear", cnn, torch.randn(8, 3, 6, 6, generator=g), 5,
         {"first": cnn[0], "second": cnn[2], "last": cnn[6], "first_parameter": cnn[0].weight}),
        ("an MLP: flatten, linear, sigmoid, linear", mlp, torch.randn(8, 3, 4, 4, generator=g), 7,
         {"first": mlp[1], "second": mlp[3], "last": mlp[3], "first_parameter": mlp[1].weight}),
        ("a model whose first conv sits in a nested block, after a learnable input scale", nested,
         torch.randn(8, 2, 8, 8, generator=g), 3,
         {"first": nested.body[0][0], "second": nested.body[1], "last": nested.body[5],
          "first_parameter": nested.input_scale}),
    ]
    for _, model, x, classes, _ in cases:
        y = torch.randint(0, classes, (len(x),), generator=g)
        F.cross_entropy(model(x), y).backward()
    return [(what, model, parts) for what, model, _, _, parts in cases]


def _norm(t) -> float:
    """torch's L2 norm of a tensor, all its entries together."""
    return float(torch.linalg.vector_norm(t.detach().double()))


# What each mistake returns for a model with gradients and its named parts (see ``_grad_norm_cases``).
GRAD_NORM_MISTAKES = (
    Mistake("cnn.first_layer_grad_norm.weights_not_gradient",
            "is the norm of the first layer's weights, not of their gradient.",
            returns=lambda model, parts: _norm(parts["first"].weight)),
    Mistake("cnn.first_layer_grad_norm.squared",
            "is the squared norm (the sum of the squares), without the square root.",
            returns=lambda model, parts: _norm(parts["first"].weight.grad) ** 2),
    Mistake("cnn.first_layer_grad_norm.with_bias",
            "includes the bias's gradient: the norm is of the first layer's weight gradient only.",
            returns=lambda model, parts: math.hypot(_norm(parts["first"].weight.grad), _norm(parts["first"].bias.grad))),
    Mistake("cnn.first_layer_grad_norm.bias_gradient",
            "is the norm of the first layer's bias gradient; the exercise asks for the gradient of its weight.",
            returns=lambda model, parts: _norm(parts["first"].bias.grad)),
    Mistake("cnn.first_layer_grad_norm.last_layer",
            "is the last layer's gradient norm: the first layer is the one the input goes into, the first "
            "nn.Conv2d or nn.Linear in model.modules().",
            returns=lambda model, parts: _norm(parts["last"].weight.grad)),
    Mistake("cnn.first_layer_grad_norm.second_layer",
            "is the 2nd layer's gradient norm: the first layer is the first nn.Conv2d or nn.Linear in "
            "model.modules().",
            returns=lambda model, parts: _norm(parts["second"].weight.grad)),
    Mistake("cnn.first_layer_grad_norm.all_parameters",
            "is the norm of all the parameters' gradients together; the exercise asks for the first layer's "
            "weight only.",
            returns=lambda model, parts: math.sqrt(sum(_norm(p.grad) ** 2 for p in model.parameters()
                                                                       if p.grad is not None))),
    Mistake("cnn.first_layer_grad_norm.mean_absolute",
            "is the mean absolute gradient: the L2 norm is the square root of the sum of the squared entries.",
            returns=lambda model, parts: float(parts["first"].weight.grad.abs().mean())),
    Mistake("cnn.first_layer_grad_norm.largest_absolute",
            "is the largest absolute gradient: the L2 norm is the square root of the sum of the squared entries.",
            returns=lambda model, parts: float(parts["first"].weight.grad.abs().max())),
    Mistake("cnn.first_layer_grad_norm.l1_norm",
            "is the L1 norm (the sum of the absolute values), not the L2 norm.",
            returns=lambda model, parts: float(parts["first"].weight.grad.abs().sum())),
    Mistake("cnn.first_layer_grad_norm.first_parameter",
            "is the gradient norm of the model's first parameter, which need not belong to a layer (here a "
            "learnable input scale): the first layer is the first nn.Conv2d or nn.Linear in model.modules().",
            returns=lambda model, parts: _norm(parts["first_parameter"].grad)),
)


def _grad_norm_step(first_layer_grad_norm, case: int, weights, grads):
    """``first_layer_grad_norm`` on the model of ``_grad_norm_cases()[case]`` holding ``weights`` and ``grads``;
    (its result, the gradients and the weights after the call). Runs where the function lives."""
    import torch

    from course_lib.checks.cnn import _grad_norm_cases

    model = _grad_norm_cases()[case][1]
    with torch.no_grad():
        for p, w, g in zip(model.parameters(), weights, grads):
            p.copy_(w)
            p.grad = g.clone()
    got = first_layer_grad_norm(model)
    return got, [p.grad for p in model.parameters()], [p.detach() for p in model.parameters()]


def check_first_layer_grad_norm(first_layer_grad_norm) -> None:
    """``first_layer_grad_norm(model)`` on three models with gradients, against torch's L2 norm of the gradient of
    the first layer's weight (the first nn.Conv2d or nn.Linear in ``model.modules()``; for the check's own
    models, which layer that is is known by hand): a Python float, within 1e-5 of it. The function only reads
    the model: changing its weights or gradients is a mistake."""
    cases = _grad_norm_cases()
    step = in_kernel(_grad_norm_step)
    for case, (what, model, parts) in enumerate(cases):
        call_of = f"first_layer_grad_norm({what})"
        grads = [p.grad.clone() for p in model.parameters()]
        weights = [p.detach().clone() for p in model.parameters()]
        got, grads_after, weights_after = _call(step, first_layer_grad_norm, case, weights, grads,
                                                name="first_layer_grad_norm", shown=what)
        changed = [part for part, after, before in (("gradients", grads_after, grads),
                                                     ("weights", weights_after, weights))
                   if not all(a is not None and torch.equal(a, b) for a, b in zip(after, before))]
        expect(not changed, f"first_layer_grad_norm changed the model's {' and '.join(changed)}: it should only read "
                            "them, neither resetting them nor changing them in place.",
               "changed_argument")
        if isinstance(got, torch.Tensor):
            fail(f"{call_of} returned {_tensor_in_words(got)}: return a Python number, so that a list of them can be "
                 "plotted and the tensor's memory is freed.",
                 "cnn.first_layer_grad_norm.returned_tensor")
        expect(isinstance(got, numbers.Real) and not isinstance(got, bool),
               f"{call_of} returned {describe(got)}; expected a float.", "wrong_type")
        compare(float(got), _norm(parts["first"].weight.grad), call_of, tol=1e-5, mistakes=GRAD_NORM_MISTAKES,
                inputs=(model, parts), expected_as="torch's L2 norm of its first layer's weight gradient")
    passed("first_layer_grad_norm",
           f"equal to torch's norm of the first layer's weight gradient on {len(cases)} models")


# ---------------------------------------------------------------- the training loop
#
# References: ``course_lib.trainer.fit`` for one epoch and ``course_lib.trainer.evaluate``, the
# course's own loops, run on copies of the same model with the same data. A probe module at the
# model's input records, at every forward pass, the train/eval mode, whether gradients are being
# recorded and whether the batch was moved with ``.to(device)``; batches arrive as a tensor subclass
# that only ``.to()`` turns back into a plain tensor, so a batch used as it came is recognised even
# on a machine without a GPU.

class _Unmoved(torch.Tensor):
    """A batch as the loader hands it out: ``.to(...)`` returns a plain tensor, other operations keep the type."""

    @classmethod
    def __torch_function__(cls, func, types, args=(), kwargs=None):
        out = super().__torch_function__(func, types, args, kwargs or {})
        if func is torch.Tensor.to and isinstance(out, cls):
            return out.as_subclass(torch.Tensor)
        return out


class _Probe(nn.Module):
    """Identity at the model's input that records how each forward pass was made."""

    def __init__(self):
        super().__init__()
        self.calls = []                      # (training, grad enabled, input moved) per forward pass

    def forward(self, x):
        self.calls.append((self.training, torch.is_grad_enabled(), not isinstance(x, _Unmoved)))
        return x.as_subclass(torch.Tensor) if isinstance(x, _Unmoved) else x


def _probed_model(seed: int) -> nn.Sequential:
    """A small float64 classifier with batch norm (whose statistics depend on the mode): 12 inputs, 3 classes."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return nn.Sequential(_Probe(), nn.Linear(12, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 3)).double()


def _batches(seed: int, sizes=(8, 8, 5)) -> list:
    """(x, y) batches of the given sizes (the last one smaller), float64 inputs of 12 features, 3 classes."""
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(n, 12, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g))
            for n in sizes]


def _as_loader(batches) -> list:
    """The batches as a loader hands them out (see ``_Unmoved``)."""
    return [(x.as_subclass(_Unmoved), y.as_subclass(_Unmoved)) for x, y in batches]


class _Recorded:
    """Cross-entropy that keeps, per call, the logits and labels it was given (detached copies, for the check to
    measure), and whether the labels were moved with ``.to(device)``."""

    def __init__(self):
        self.given, self.labels_moved = [], []

    def __call__(self, logits, target):
        self.labels_moved.append(not isinstance(target, _Unmoved))
        target = target.as_subclass(torch.Tensor) if isinstance(target, _Unmoved) else target
        self.given.append((logits.detach().clone(), target.clone()))
        return F.cross_entropy(logits, target)


class _KeepsGradients(torch.optim.SGD):
    """SGD whose zero_grad does nothing: what a loop without zero_grad computes."""

    def zero_grad(self, set_to_none=True):
        pass


def _train_step(train_one_epoch, layers: str, state, batches, lr: float, momentum: float, as_generator=False):
    """``train_one_epoch`` on a probed model holding ``state`` (``layers``: "linear", a Linear(12, 3) behind the
    probe, or "batch_norm", ``_probed_model``'s), in evaluation mode at first, with SGD, the batches as a loader
    hands them out (``as_generator``: a generator of them, which has no len()) and a recording cross-entropy; what
    the check reads, as plain data. Runs where the function lives."""
    import torch
    from torch import nn

    from course_lib.checks.cnn import _as_loader, _Probe, _probed_model, _Recorded

    model = _probed_model(0) if layers == "batch_norm" else nn.Sequential(_Probe(), nn.Linear(12, 3)).double()
    model.load_state_dict(state)
    model.eval()
    recorded = _Recorded()
    loader = _as_loader([(x.clone(), y.clone()) for x, y in batches])
    if as_generator:
        loader = (batch for batch in loader)
    result = train_one_epoch(model, loader, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum), recorded,
                             torch.device("cpu"))
    return {"result": result, "calls": model[0].calls, "given": recorded.given, "labels_moved": recorded.labels_moved,
            "weights": [p.detach() for p in model.parameters()], "training": model.training}


def _evaluate_step(evaluate, state, batches):
    """``evaluate`` on ``_probed_model``'s model holding ``state``, in training mode at first, the batches as a
    loader hands them out; what the check reads, as plain data. Runs where the function lives."""
    import torch

    from course_lib.checks.cnn import _as_loader, _probed_model

    model = _probed_model(0)
    model.load_state_dict(state)
    model.train()
    result = evaluate(model, _as_loader([(x.clone(), y.clone()) for x, y in batches]), torch.device("cpu"))
    return {"result": result, "calls": model[0].calls,
            "state": {key: value.clone() for key, value in model.state_dict().items()},
            "no_grads": [p.grad is None for p in model.parameters()]}


def _state(model) -> dict:
    """``model``'s weights and buffers, as plain data."""
    return {key: value.detach().clone() for key, value in model.state_dict().items()}


def _weights(model) -> list:
    return [p.detach().clone() for p in model.parameters()]


def _batch_view(parts: list, loss: float, accuracy: float) -> dict:
    """What the loss and accuracy mistakes read: each batch measured on its own by course_lib's evaluate
    (``parts``, its results), the reference's mean loss and accuracy over all the samples, and their number."""
    return {"batch_losses": [part.loss for part in parts], "batch_accuracies": [part.accuracy for part in parts],
            "loss": loss, "accuracy": accuracy, "samples": sum(len(part.targets) for part in parts)}


def _loss_mistakes(exercise: str) -> tuple:
    """How a loop's mean loss goes wrong; ``returns`` takes a ``_batch_view`` (batches of 8, 8, 5)."""
    return (
        Mistake(f"cnn.{exercise}.mean_of_batch_means",
                "is the mean of the batch means: the last batch is smaller (8, 8, 5 samples), so each batch's mean "
                "loss counts as many times as it has samples, and the total is shared among the samples.",
                returns=lambda view: statistics.fmean(view["batch_losses"])),
        Mistake(f"cnn.{exercise}.summed_loss", "is the sum over the samples, not their mean.",
                returns=lambda view: view["loss"] * view["samples"]),
        Mistake(f"cnn.{exercise}.sum_of_batch_means", "is the sum of the batch means: average over the samples.",
                returns=lambda view: sum(view["batch_losses"])),
    )


def _accuracy_mistakes(exercise: str) -> tuple:
    """How a loop's accuracy goes wrong; ``returns`` takes a ``_batch_view``."""
    return (
        Mistake(f"cnn.{exercise}.correct_count",
                "is the number of correct predictions, not the fraction of the samples they make.",
                returns=lambda view: view["accuracy"] * view["samples"]),
        Mistake(f"cnn.{exercise}.mean_of_batch_accuracies",
                "is the mean of the batch accuracies: the last batch is smaller (8, 8, 5 samples), so its accuracy "
                "weighs too much; the accuracy is the fraction of all the samples predicted correctly.",
                returns=lambda view: statistics.fmean(view["batch_accuracies"])),
    )


TRAIN_CRASHES = (
    Mistake("cnn.train_one_epoch.no_gradients", "The forward pass ran with gradient recording turned off, so the "
                                                "loss has no graph to backpropagate through: training records it.",
            shows=lambda message: "does not require grad" in message),
    Mistake("cnn.train_one_epoch.needs_len", "The loader here is a generator of batches, which has no len(): a "
                                             "loader is any iterable of batches, so the samples are counted as the "
                                             "batches go by.",
            shows=lambda message: "has no len()" in message),
)
TRAIN_LOSS_MISTAKES = _loss_mistakes("train_one_epoch")
TRAIN_ACCURACY_MISTAKES = _accuracy_mistakes("train_one_epoch")
# What a parameter is after the epoch, given it before the epoch and after an epoch that never resets the gradients.
TRAIN_WEIGHT_MISTAKES = (
    Mistake("cnn.train_one_epoch.no_update",
            "did not change: the optimizer never updated the weights with a batch's gradients (no update step, or "
            "the gradients were reset after the backward pass and before the update).",
            returns=lambda before, without_reset: before),
    Mistake("cnn.train_one_epoch.no_zero_grad",
            "is what a loop that never resets the gradients gives: PyTorch adds every backward pass's gradients "
            "to those already stored, so each batch's step also used all the earlier batches' gradients; each "
            "step should use its own batch's gradients only.",
            returns=lambda before, without_reset: without_reset),
)
EVALUATE_LOSS_MISTAKES = _loss_mistakes("evaluate") + (
    Mistake("cnn.evaluate.softmax_before_loss",
            "is the cross-entropy of softmax probabilities: cross-entropy applies its own log-softmax, so it takes "
            "the logits.",
            returns=lambda view: view["softmax_loss"]),
    Mistake("cnn.evaluate.nll_of_logits",
            "is the negative log-likelihood of the raw logits: that loss expects log-probabilities, so it is not "
            "the cross-entropy, which takes the logits and applies the log-softmax itself.",
            returns=lambda view: view["nll_of_logits"]),
)
EVALUATE_ACCURACY_MISTAKES = _accuracy_mistakes("evaluate") + (
    Mistake("cnn.evaluate.last_batch_accuracy",
            "is the last batch's accuracy; the accuracy is the fraction of all the samples, of every batch, "
            "predicted correctly.",
            returns=lambda view: view["batch_accuracies"][-1]),
)
_PARAMETERS = {"1.weight": "the first Linear layer's weight", "1.bias": "the first Linear layer's bias",  # in
               "2.weight": "the batch norm's scale", "2.bias": "the batch norm's shift",                 # _probed_model
               "4.weight": "the last Linear layer's weight", "4.bias": "the last Linear layer's bias"}


def _times(n: int) -> str:
    return "once" if n == 1 else f"{n} times"


def _two_numbers(result, exercise: str) -> tuple[float, float]:
    """The (mean loss, accuracy) that ``exercise`` returned, each a Python float."""
    expect_tuple(result, ("mean_loss", "accuracy"), exercise)
    values = []
    for value, what in zip(result, ("mean loss", "accuracy")):
        if isinstance(value, torch.Tensor):
            fail(f"{exercise} returned the {what} as {_tensor_in_words(value)}: return a Python float (a tensor "
                 "summed over the batches also keeps every batch's graph, and its memory, alive).",
                 f"cnn.{exercise}.returned_tensor")
        expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
               f"{exercise} should return the {what} as a float; it returned {describe(value)}.", "wrong_type")
        values.append(float(value))
    return values[0], values[1]


def _expect_moved(recorded: dict, exercise: str) -> None:
    """Every batch moved with .to(device), images and labels (``recorded``: what a ``_..._step`` returned)."""
    expect(all(moved for *_, moved in recorded["calls"]),
           f"{exercise} gave the model a batch of images as the loader handed it out, not moved to the model's "
           "device. Here everything is on the CPU, but on a GPU the model's weights live on the GPU and "
           "a batch left on the CPU stops the forward pass.", f"cnn.{exercise}.images_not_moved")
    expect(all(recorded.get("labels_moved", ())),
           f"{exercise} gave loss_fn the labels as the loader handed them out, not moved to the model's device: "
           "on a GPU the loss would compare GPU logits with CPU labels.", f"cnn.{exercise}.labels_not_moved")


def _per_batch(given: list, device) -> list:
    """course_lib's evaluate of each (logits, labels) that a loop gave loss_fn, one batch at a time."""
    from course_lib.trainer import evaluate

    return [evaluate(nn.Identity(), [batch], device=device) for batch in given]


def check_train_one_epoch(train_one_epoch) -> None:
    """``train_one_epoch(model, loader, optimizer, loss_fn, device)`` against ``course_lib.trainer.fit`` for one
    epoch, on a known case (zero weights, lr = 0) and on a small model with batch norm; it returns (mean loss,
    accuracy) as Python floats. The function trains the model it is given in place (its weights are part of the
    result); the batches and the model are the check's copies."""
    from course_lib.trainer import fit

    name, device, shown = "train_one_epoch", torch.device("cpu"), "model, loader, optimizer, loss_fn, device"
    step = in_kernel(_train_step)
    # Known numbers: zero weights give equal logits (loss ln 3, prediction class 0); lr = 0 keeps them.
    batches = _batches(0)
    zeros = {"1.weight": torch.zeros(3, 12, dtype=torch.float64), "1.bias": torch.zeros(3, dtype=torch.float64)}
    known = _call(step, train_one_epoch, "linear", zeros, batches, 0.0, 0.0, True, name=name,
                  shown="model, loader (a generator of batches), optimizer, loss_fn, device", crashes=TRAIN_CRASHES)
    loss, accuracy = _two_numbers(known["result"], name)
    expect(known["given"] or not known["calls"],
           f"{name} never called loss_fn: each batch's loss comes from the loss_fn it is given (the caller chooses "
           "the loss, with label smoothing for instance), not from a loss of your own.",
           "cnn.train_one_epoch.loss_fn_unused")
    expect(len(known["given"]) >= len(batches),
           f"{name} called loss_fn {_times(len(known['given']))} for a loader of {len(batches)} batches: every batch "
           "needs its loss (loop over all of the loader's batches).", "cnn.train_one_epoch.skipped_batches")
    _expect_moved(known, name)
    class_0 = sum(int((y == 0).sum()) for _, y in batches) / sum(len(y) for _, y in batches)
    view = _batch_view(_per_batch(known["given"], device), math.log(3), class_0)
    compare(loss, math.log(3), f"{name}'s mean loss with all logits equal", mistakes=TRAIN_LOSS_MISTAKES,
            inputs=(view,), expected_as="ln 3, the cross-entropy of equal logits,")
    compare(accuracy, class_0, f"{name}'s accuracy when every prediction is class 0", mistakes=TRAIN_ACCURACY_MISTAKES,
            inputs=(view,), expected_as="the fraction of labels equal to 0")

    # A small model with batch norm, SGD with momentum, batches of 8, 8 and 5, against fit's epoch.
    batches = _batches(1)
    reference, without_reset = _probed_model(1), _probed_model(1)
    before = _weights(reference)
    mine = _call(step, train_one_epoch, "batch_norm", _state(reference), batches, 0.1, 0.9, name=name, shown=shown,
                 crashes=TRAIN_CRASHES)
    loss, accuracy = _two_numbers(mine["result"], name)
    _expect_moved(mine, name)
    calls = mine["calls"]
    expect(all(training for training, *_ in calls),
           f"{name} ran the model in evaluation mode (the model came in eval mode) and never switched it to "
           "training mode, so batch norm used its running statistics and dropout was off.",
           "cnn.train_one_epoch.no_train_mode")
    expect(all(grad for _, grad, _ in calls), f"{name} ran a forward pass without gradients, with their recording "
                                              "turned off: training needs them.", "cnn.train_one_epoch.no_gradients")
    expect(len(calls) == len(batches),
           f"{name} ran {len(calls)} forward passes for {len(batches)} batches: one per batch (compute the "
           "loss and the accuracy from the same logits).", "cnn.train_one_epoch.extra_forward")
    expect(mine["training"], f"{name} left the model in evaluation mode: it trains in training mode and leaves the "
                             "model there (the caller decides when to evaluate).", "cnn.train_one_epoch.left_in_eval_mode")
    history = fit(reference, batches, None, 1, torch.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9),
                  loss_fn=F.cross_entropy, device=device, progress=False)
    fit(without_reset, batches, None, 1, _KeepsGradients(without_reset.parameters(), lr=0.1, momentum=0.9),
        loss_fn=F.cross_entropy, device=device, progress=False)
    for (key, expected), got, start, kept in zip(reference.named_parameters(), mine["weights"], before,
                                                 _weights(without_reset)):
        compare(got, expected.detach(), f"after {name}, {_PARAMETERS[key]}", mistakes=TRAIN_WEIGHT_MISTAKES,
                inputs=(start, kept), expected_as="fit's")
    view = _batch_view(_per_batch(mine["given"], device), history.train_loss[0], history.train_acc[0])
    compare(loss, history.train_loss[0], f"{name}'s mean loss", mistakes=TRAIN_LOSS_MISTAKES, inputs=(view,),
            expected_as="fit's")
    compare(accuracy, history.train_acc[0], f"{name}'s accuracy", mistakes=TRAIN_ACCURACY_MISTAKES, inputs=(view,),
            expected_as="fit's")
    passed("train_one_epoch", "equal to course_lib's fit on a known case and a model with batch norm")


def _nll_of_logits(model, batches) -> float:
    """The mean over the samples of ``F.nll_loss`` applied to ``model``'s raw logits (in evaluation mode)."""
    model.eval()
    with torch.no_grad():
        total = sum(float(F.nll_loss(model(x), y, reduction="sum")) for x, y in batches)
    return total / sum(len(y) for _, y in batches)


def check_evaluate(evaluate) -> None:
    """``evaluate(model, loader, device)`` against ``course_lib.trainer.evaluate``: (mean loss, accuracy) as Python
    floats, the model in evaluation mode, without gradients. The function only reads the model: changing its
    weights, running statistics or gradients is a mistake."""
    from course_lib.trainer import evaluate as reference_evaluate

    name, device = "evaluate", torch.device("cpu")
    batches = _batches(2)
    model = _probed_model(2)
    with torch.no_grad():                               # running statistics that differ from any batch's
        model[2].running_mean.uniform_(-1, 1), model[2].running_var.uniform_(0.5, 2)
    before = _state(model)
    mine = _call(in_kernel(_evaluate_step), evaluate, before, batches, name=name, shown="model, loader, device")
    loss, accuracy = _two_numbers(mine["result"], name)
    calls = mine["calls"]
    _expect_moved(mine, name)
    expect(not any(training for training, *_ in calls),
           f"{name} ran the model in training mode (it came in training mode) and left it there: batch norm used "
           "each batch's statistics instead of its running ones and dropout stayed on; evaluation runs the model "
           "in evaluation mode.", "cnn.evaluate.training_mode")
    expect(not any(grad for _, grad, _ in calls),
           f"{name} recorded gradients during the forward passes: evaluation never backpropagates, so the graph "
           "it records only costs memory and time; gradient recording should be off.", "cnn.evaluate.gradients")
    after = mine["state"]
    changed = [part for part, same in (
        ("weights or running statistics", after.keys() == before.keys()
         and all(torch.equal(value, after[key]) for key, value in before.items())),
        ("gradients (.grad)", all(mine["no_grads"]))) if not same]
    expect(not changed, f"{name} changed the model's {' and '.join(changed)}: evaluation only reads the model.",
           "changed_argument")
    expect(len(calls) == len(batches), f"{name} ran {len(calls)} forward passes for {len(batches)} "
                                       "batches: one per batch.", "cnn.evaluate.extra_forward")
    model.eval()
    expected = reference_evaluate(model, batches, device=device)
    view = {**_batch_view([reference_evaluate(model, [batch], device=device) for batch in batches], expected.loss,
                          expected.accuracy),
            # the same evaluation of a model that ends in a softmax: cross-entropy of probabilities
            "softmax_loss": reference_evaluate(nn.Sequential(model, nn.Softmax(dim=1)), batches, device=device).loss,
            # the mean of -logit of the true class: what nll_loss gives on logits
            "nll_of_logits": _nll_of_logits(model, batches)}
    compare(loss, expected.loss, f"{name}'s mean loss", mistakes=EVALUATE_LOSS_MISTAKES, inputs=(view,),
            expected_as="course_lib's evaluate's")
    compare(accuracy, expected.accuracy, f"{name}'s accuracy", mistakes=EVALUATE_ACCURACY_MISTAKES, inputs=(view,),
            expected_as="course_lib's evaluate's")
    passed("evaluate", "equal to course_lib's evaluate; evaluation mode, no gradients, model unchanged")


# ---------------------------------------------------------------- logits for the hidden tests

def _logits_step(model, images: tuple, flip: bool):
    """``model``'s logits for ``images[0]`` in evaluation mode, float32 on the CPU, and with ``flip`` those of the
    mirror images (else None); the model's mode is kept. Runs where the model lives."""
    import torch

    tensors = [*model.parameters(), *model.buffers()]
    x = images[0].to(tensors[0].device if tensors else "cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x).float().cpu(), model(x.flip(3)).float().cpu() if flip else None
    finally:
        model.train(was_training)


def logits_of(model, images, flip: bool = False, batch_size: int = 500):
    """``model``'s logits (N, K) for normalised ``images`` (N, C, H, W), in evaluation mode without gradients;
    with ``flip``, (logits, logits of the mirror images). Under the grader the model stays in the notebook's
    kernel: the images go there in batches and only logits come back."""
    step = in_kernel(_logits_step)
    parts = [step(model, (images[start:start + batch_size],), flip)   # in a tuple: the kernel sends no copy back
             for start in range(0, len(images), batch_size)]
    logits = torch.cat([part[0] for part in parts])
    return (logits, torch.cat([part[1] for part in parts])) if flip else logits
