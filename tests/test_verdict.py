"""The grader's side of a verdict: the plain-data format, remote objects, and reading a function's source."""
from __future__ import annotations

import base64
import io
import json
import zipfile
from collections import OrderedDict, namedtuple

import numpy as np
import pytest
import torch

from course_grading.agent import Agent, WireError, decode, encode
from course_grading.verdict import RemoteError, RemoteObject, Session, loopback, notebook_names, run_cell, run_verdict
from course_lib.checks.remote import in_kernel
from course_lib.checks.source_rules import forbidden_uses, notebook_sources


def roundtrip(value, **kwargs):
    return decode(encode(value), torch=torch, **kwargs)


# ---------------------------------------------------------------- the format

def test_plain_data_survives_the_trip():
    value = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": [1, 2.5, None, True, "x"], "c": (np.int64(3),),
             "d": torch.ones(2, dtype=torch.bfloat16), "e": float("nan"), "big": 2 ** 70, 3: np.float16(1.5)}
    back = roundtrip(value)
    assert back["a"].dtype == np.float32 and np.array_equal(back["a"], value["a"])
    assert back["b"] == [1, 2.5, None, True, "x"] and isinstance(back["c"], tuple)
    assert isinstance(back["c"][0], np.int64) and back["c"][0] == 3
    assert isinstance(back["d"], torch.Tensor) and back["d"].dtype == torch.bfloat16
    assert np.isnan(back["e"]) and back["big"] == 2 ** 70 and back[3] == np.float16(1.5)


def test_subclasses_travel_as_what_they_hold():
    class Liar(np.ndarray):
        def __eq__(self, other):
            return True

    class Loud(float):
        def __float__(self):
            return 99.0

    Pair = namedtuple("Pair", "loss accuracy")
    back = roundtrip({"liar": np.zeros(3).view(Liar), "ordered": OrderedDict(w=np.ones(2)), "pair": Pair(1.0, 0.5),
                      "loud": Loud(0.25)})
    assert type(back["liar"]) is np.ndarray and not np.any(back["liar"] == 1)
    assert type(back["ordered"]) is dict and type(back["pair"]) is tuple and back["pair"] == (1.0, 0.5)
    assert back["loud"] == 0.25


def test_objects_do_not_travel_without_a_handle():
    with pytest.raises(WireError, match="not plain data"):
        encode({"f": lambda x: x})
    with pytest.raises(WireError, match="not plain data"):
        encode(np.array(["a", "b"]))


def npz(manifest, **arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.frombuffer(json.dumps(manifest).encode(), np.uint8), **arrays)
    return buffer.getvalue()


@pytest.mark.parametrize("message, match", [
    (npz({"$": "array", "i": 0}, a0=np.array([object()], dtype=object)), "not plain data"),  # a pickle
    (npz({"$": "array", "i": 0}, a0=np.array(["text"])), "non-numeric"),
    (npz({"$": "handle", "id": 1}), "tagged 'handle'"),
    (npz({"$": "eval", "v": "__import__('os')"}), "tagged 'eval'"),
    (npz([{"$": "list", "v": []}]), "not of the format"),
    (b"not a zip", "not plain data"),
])
def test_decode_refuses_what_is_not_plain_data(message, match):
    with pytest.raises(WireError, match=match):
        decode(message)


def test_decode_refuses_deep_and_large_messages():
    deep = {"$": "list", "v": []}
    for _ in range(40):
        deep = {"$": "list", "v": [deep]}
    with pytest.raises(WireError, match="too deeply"):
        decode(npz(deep))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:  # 512 MiB of zeros, under a MB packed
        archive.writestr("manifest.npy", b"")
        with archive.open("a0.npy", "w", force_zip64=True) as member:
            for _ in range(512):
                member.write(bytes(1024 ** 2))
    with pytest.raises(WireError, match="more than 256 MiB"):
        decode(buffer.getvalue())


# ---------------------------------------------------------------- a session with a kernel

def session_on(namespace, sources=()):
    return Session(loopback(namespace), sources)


def test_remote_functions_classes_and_models():
    namespace = {"double": lambda x: 2 * x, "net": torch.nn.Linear(3, 2), "params": {"W": np.eye(2)}}
    values = session_on(namespace).resolve({"double", "net", "params", "missing"})
    assert "missing" not in values and np.array_equal(values["params"]["W"], np.eye(2))
    assert isinstance(values["double"], RemoteObject) and values["double"].__name__ == "double"
    assert np.array_equal(values["double"](np.arange(3)), [0, 2, 4])
    out = values["net"](torch.ones(4, 3))
    assert isinstance(out, torch.Tensor) and out.shape == (4, 2)
    assert len(list(values["net"].parameters())) == 2
    assert values["net"].out_features == 2


def test_arguments_changed_in_place_come_back():
    def step(params, grads, lr):
        for k in params:
            params[k] -= lr * grads[k]

    params = {"W": np.ones(3)}
    kept = params["W"]
    remote = session_on({"step": step}).resolve({"step"})["step"]
    assert remote(params, {"W": np.ones(3)}, 0.5) is None
    assert kept is params["W"] and np.allclose(kept, 0.5)


def test_arrays_changed_inside_a_tuple_come_back():
    def backward(dout, cache):
        x, w = cache
        x[...] = 0.0            # a backward pass that spoils the forward pass's cache
        return dout * w

    cache = (np.ones(3), np.full(3, 2.0))
    remote = session_on({"backward": backward}).resolve({"backward"})["backward"]
    assert np.allclose(remote(np.ones(3), cache), 2.0)
    assert np.array_equal(cache[0], np.zeros(3)) and np.array_equal(cache[1], np.full(3, 2.0))


def test_errors_in_the_kernel_keep_builtin_types_only():
    def stub(*args):
        raise NotImplementedError("not yet")

    class Custom(Exception):
        pass

    def custom():
        raise Custom("mine")

    values = session_on({"stub": stub, "custom": custom}).resolve({"stub", "custom"})
    with pytest.raises(NotImplementedError, match="not yet") as caught:
        values["stub"](1)
    assert isinstance(caught.value, RemoteError)
    with pytest.raises(RemoteError, match="mine") as caught:
        values["custom"]()
    assert type(caught.value).__name__ == "Custom" and not isinstance(caught.value, NotImplementedError)


def test_an_answer_that_is_not_plain_data_fails_the_cell():
    def liar(message):
        return b"garbage"

    session = Session(liar)
    with pytest.raises(AssertionError, match="other than plain data"):
        session.resolve({"x"})


def test_grader_objects_cannot_be_sent():
    remote = session_on({"f": lambda m: m}).resolve({"f"})["f"]
    with pytest.raises(WireError, match="cannot be sent to the kernel"):
        remote(torch.nn.Linear(2, 2))


def test_notebook_names_are_the_free_globals():
    source = ("import torch\nx = softmax(np.ones(3))\ndef helper(a):\n    return mlp_forward(a) + a\n"
              "for _k in params:\n    pass\nprint(len(test_accuracy))\n")
    assert notebook_names(source) == {"softmax", "np", "mlp_forward", "params", "test_accuracy"}


def test_in_kernel_runs_there_only_under_the_grader():
    source = ("from course_lib.checks.remote import in_kernel\n"
              "@in_kernel\ndef probe(n):\n    model = Net(n)\n    return {'out': model.weight.detach().numpy(), 'where': WHERE}\n"
              "result = probe(3)\nassert result['where'] == 'kernel', result['where']\n"
              "assert result['out'].shape == (3, 3)\n")
    kernel = {"Net": lambda n: torch.nn.Linear(n, n), "WHERE": "kernel"}
    run_cell(source, {}, session_on(kernel))
    local = dict(kernel, WHERE="here")
    with pytest.raises(AssertionError, match="here"):
        exec(source, local)


def test_run_verdict_gives_one_line_without_source():
    session = session_on({"f": lambda: 1})
    assert run_verdict("assert f() == 1, 'f'", {}, session) is None
    assert run_verdict("assert f() == 2, 'f should return 2'", {}, session) == "AssertionError: f should return 2"
    assert "NameError" in run_verdict("g()", {}, session)


def test_the_agent_answers_as_a_user_expression_that_no_cell_hook_sees():
    import ast

    from IPython.core.interactiveshell import InteractiveShell

    from course_grading.agent import agent_source
    from course_grading.preprocessors import INSTALL_AGENT

    shell = InteractiveShell.instance()
    shell.run_cell("answer = 41")
    shell.input_transformers_cleanup.append(lambda lines: [])      # every cell emptied from now on
    shell.events.register("pre_run_cell", lambda info: shell.user_ns.update(answer=0))
    try:
        installed = shell.user_expressions({"v": INSTALL_AGENT.format(source=agent_source())})
        assert installed["v"]["data"]["text/plain"] == "'ready'", installed
        request = base64.b64encode(encode({"op": "resolve", "names": ["answer"]})).decode()
        answer = shell.user_expressions({"v": f"__course_agent__.serve({request!r})"})
        reply = decode(base64.b64decode(ast.literal_eval(answer["v"]["data"]["text/plain"])))
    finally:
        shell.input_transformers_cleanup.pop()
    assert reply == {"ok": {"values": {"answer": 41}, "missing": []}}
    assert type(shell.user_ns["__course_agent__"]) is not Agent  # defined from the text, not imported


# ---------------------------------------------------------------- reading the source

CELLS = ["import numpy as np\nimport torch\nfrom scipy.special import expit as sigmoid_ref\n",
         "def helper(z):\n    return torch.as_tensor(z).numpy()\n",
         "def softmax(s):\n    e = np.exp(s - s.max(axis=1, keepdims=True))\n    return e / e.sum(axis=1, keepdims=True)\n",
         "def relu(z):\n    return helper(np.maximum(z, 0))\n",
         "def sigmoid(z):\n    return sigmoid_ref(z)\n",
         "def conv(x, F):\n    F = F.shape[0]\n    return x * F\n",
         "def tricky(x):\n    return getattr(np, name_of(x))(x)\n",
         "%timeit softmax(np.ones((2, 2)))\n",
         "my_relu = relu\n"]


@pytest.mark.parametrize("name, found", [
    ("softmax", []), ("relu", ["called torch.as_tensor (in helper)"]), ("sigmoid", ["called scipy.special.expit"]),
    ("conv", []), ("my_relu", ["called torch.as_tensor (in helper)"]),
])
def test_forbidden_uses_follow_the_functions_a_function_calls(name, found):
    assert forbidden_uses(CELLS, name)[0] == found


def test_dynamic_access_goes_to_review():
    found, review = forbidden_uses(CELLS, "tricky")
    assert found == [] and review == ["tricky calls getattr with a computed name"]


@pytest.mark.parametrize("source, found", [
    ("MomentumSGD = torch.optim.SGD", ["called torch.optim.SGD"]),
    ("from torch import optim\nclass MomentumSGD(optim.Optimizer):\n    def step(self):\n        optim.sgd(self)",
     ["called torch.optim.sgd"]),
    ("class MomentumSGD(torch.optim.Optimizer):\n    def __init__(self, p):\n        torch.optim.Optimizer.__init__(self, p, {})\n"
     "    def step(self):\n        pass", []),
])
def test_torch_optim_rule_reads_classes_and_aliases(source, found):
    cells = ["import torch", source]
    assert forbidden_uses(cells, "MomentumSGD", ("torch.optim",), ("torch.optim.Optimizer",))[0] == found


def test_notebook_sources_read_every_cell_once():
    cells = iter([("from course_lib.data import split\nx = 1", True), ("def f(y):\n    return split(y)", False)])
    sources = notebook_sources(cells)
    assert sources == ["from course_lib.data import split", "def f(y):\n    return split(y)"]
    assert forbidden_uses(sources, "f", ("course_lib",))[0] == ["called course_lib.data.split"]
