"""The grader's agent in a submission's kernel, and the plain-data format both sides speak.

The grader decides every verdict in its own process (``course_grading.verdict``). The kernel
only runs the student's code on what the grader sends and answers with plain data: ``None``,
booleans, numbers, short strings, NumPy arrays and torch tensors of a numeric dtype, and lists,
tuples and dicts of these. Anything else (a model, a function, a generator) stays in the kernel
and travels as an opaque handle number that a later request can name.

Subclasses travel as what they hold: an ``OrderedDict`` (a ``state_dict``) as a dict, a named tuple
as a tuple, an ndarray subclass as its numbers; whatever methods they override stay behind.

On the wire a message is one ``.npz`` file (``allow_pickle=False``): the arrays, and a JSON
manifest that describes the structure around them. Neither can carry code or objects, and
:func:`decode` checks every array's dtype and the message's size and depth before it is used.

The grader sends this file's source to the kernel as text (``agent_source``) and executes it
there in a namespace of its own: the kernel never imports it. Whatever the kernel does to its own
NumPy, torch or this agent can only change the data it answers with, which the grader checks.
"""
from __future__ import annotations

import base64
import io
import json
import math
import sys
import zipfile

import numpy as np

NUMERIC_KINDS = "biufc"
MAX_DEPTH = 32
MAX_NODES = 200_000
MAX_STRING = 20_000
MAX_BYTES = 256 * 1024 ** 2  # arrays in one message, uncompressed
MAX_LIST = 1_000_000         # items the agent lists from an iterable


class WireError(ValueError):
    """A message that is not plain data, or is too large or too deep."""


def _is_tensor(value) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def encode(value, register=None) -> bytes:
    """``value`` as a message; objects that are not plain data go through ``register`` (object ->
    handle number) when it is given, and are refused otherwise."""
    arrays: list = []
    count = [0]

    def walk(v, depth):
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_NODES:
            raise WireError("the value is nested too deeply or has too many parts")
        if v is None or type(v) is bool:
            return v
        if isinstance(v, str):
            return str.__str__(v)[:MAX_STRING]
        if isinstance(v, int) and not isinstance(v, bool):
            v = int.__int__(v)
            return v if abs(v) < 2 ** 53 else {"$": "int", "v": str(v)}
        if isinstance(v, float):
            v = float.__float__(v)
            return v if math.isfinite(v) else {"$": "float", "v": repr(v)}
        if isinstance(v, np.generic) and np.dtype(type(v)).kind in NUMERIC_KINDS:
            arrays.append(np.asarray(v))
            return {"$": "scalar", "i": len(arrays) - 1}
        if isinstance(v, np.ndarray) and v.dtype.kind in NUMERIC_KINDS and v.dtype.fields is None:
            arrays.append(v.view(np.ndarray))  # a subclass travels as the numbers it holds
            return {"$": "array", "i": len(arrays) - 1}
        if _is_tensor(v) and not v.is_complex() and str(v.layout) == "torch.strided":
            data = v.detach().cpu().as_subclass(sys.modules["torch"].Tensor)  # a subclass as the numbers it holds
            kind = str(data.dtype).replace("torch.", "")
            if kind == "bfloat16":
                data = data.float()
            arrays.append(data.numpy())
            return {"$": "tensor", "i": len(arrays) - 1, "dtype": kind}
        if isinstance(v, (list, tuple)):
            kind = "list" if isinstance(v, list) else "tuple"
            items = list.__iter__(v) if kind == "list" else tuple.__iter__(v)
            return {"$": kind, "v": [walk(item, depth + 1) for item in items]}
        if isinstance(v, dict) and all(type(k) in (str, int) for k in dict.keys(v)):
            pairs = list(dict.items(v))  # what the dict holds, whatever its class says
            return {"$": "dict", "k": [k for k, _ in pairs], "v": [walk(item, depth + 1) for _, item in pairs]}
        if type(v).__module__ == "torch" and type(v).__name__ in ("device", "dtype"):
            return {"$": type(v).__name__, "v": str(v)}
        if register is None:
            raise WireError(f"a {type(v).__name__} is not plain data (numbers, arrays, lists, tuples, dicts)")
        return {"$": "handle", "id": register(v), "type": type(v).__name__, "callable": callable(v)}

    manifest = walk(value, 0)
    buffer = io.BytesIO()
    np.savez(buffer, manifest=np.frombuffer(json.dumps(manifest).encode(), dtype=np.uint8),
             **{f"a{i}": array for i, array in enumerate(arrays)})
    return buffer.getvalue()


def decode(data: bytes, resolve=None, torch=None):
    """The value a message holds. ``resolve`` turns a handle (its manifest entry) into an object;
    ``torch``, when given, turns tensors back into tensors (else they stay arrays)."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if sum(info.file_size for info in archive.infolist()) > MAX_BYTES:
                raise WireError(f"the message holds more than {MAX_BYTES // 1024 ** 2} MiB of arrays")
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            manifest = json.loads(bytes(npz["manifest"]).decode())
            arrays = {name: npz[name] for name in npz.files if name != "manifest"}
    except WireError:
        raise
    except Exception as err:  # a damaged archive, a pickled array, bad JSON
        raise WireError(f"the message is not plain data ({type(err).__name__}: {err})") from None
    count = [0]

    def array(index):
        value = arrays.get(f"a{index}")
        if value is None or value.dtype.kind not in NUMERIC_KINDS or value.dtype.fields is not None:
            raise WireError("an array of a non-numeric dtype")
        return value

    def walk(v, depth):
        count[0] += 1
        if depth > MAX_DEPTH or count[0] > MAX_NODES:
            raise WireError("the value is nested too deeply or has too many parts")
        if v is None or type(v) in (bool, int, float, str):
            return v
        if type(v) is list or type(v) is not dict or not isinstance(v.get("$"), str):
            raise WireError("an entry of the manifest is not of the format")
        tag = v["$"]
        if tag == "int":
            return int(v["v"])
        if tag == "float":
            return float(v["v"])
        if tag == "scalar":
            return array(v["i"])[()]
        if tag == "array":
            return array(v["i"])
        if tag == "tensor":
            value = array(v["i"])
            if torch is None:
                return value
            tensor = torch.from_numpy(np.array(value))
            return tensor.to(torch.bfloat16) if v.get("dtype") == "bfloat16" else tensor
        if tag in ("list", "tuple"):
            items = [walk(item, depth + 1) for item in v["v"]]
            return items if tag == "list" else tuple(items)
        if tag == "dict":
            keys = v["k"]
            if any(type(k) not in (str, int) for k in keys) or len(keys) != len(v["v"]):
                raise WireError("a dict's keys are not strings or numbers")
            return dict(zip(keys, (walk(item, depth + 1) for item in v["v"])))
        if tag in ("device", "dtype") and torch is not None:
            return torch.device(v["v"]) if tag == "device" else getattr(torch, str(v["v"]).replace("torch.", ""))
        if tag in ("device", "dtype"):
            return str(v["v"])
        if tag == "handle" and resolve is not None:
            return resolve({"id": int(v["id"]), "type": str(v.get("type", ""))[:100], "callable": bool(v.get("callable"))})
        raise WireError(f"an entry tagged {tag!r}")

    return walk(manifest, 0)


class Agent:
    """Kernel side: runs the grader's requests on the kernel's namespace. The grader reaches it through
    a user expression of a silent execute request (``serve``), which IPython evaluates without running
    a cell: no input or AST transformer, cell hook or history sees it."""

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.handles: dict = {}

    def register(self, obj) -> int:
        number = len(self.handles) + 1
        self.handles[number] = obj
        return number

    def torch(self):
        return sys.modules.get("torch")

    def serve(self, payload: str) -> str:
        """A request in base64, answered in base64."""
        return base64.b64encode(self.answer(base64.b64decode(payload))).decode()

    def answer(self, message: bytes) -> bytes:
        try:
            request = decode(message, lambda handle: self.handles[handle["id"]], self.torch())
            reply = {"ok": self.run(request)}
        except BaseException as err:  # the student's code failed: the grader decides what that means
            if isinstance(err, KeyboardInterrupt):
                raise
            reply = {"error": type(err).__name__, "message": str(err)[:MAX_STRING],
                     "builtin": type(err).__module__ == "builtins"}
        try:
            return encode(reply, self.register)
        except Exception as err:
            return encode({"error": "WireError", "message": f"the answer could not be sent: {err}", "builtin": False})

    def run(self, request: dict):
        op = request["op"]
        if op == "resolve":
            names = request["names"]
            return {"values": {n: self.namespace[n] for n in names if n in self.namespace},
                    "missing": [n for n in names if n not in self.namespace]}
        if op == "call":
            args, kwargs = request["args"], request["kwargs"]
            result = request["target"](*args, **kwargs)
            return {"result": result, "args": [a if _mutable(a) else None for a in args],
                    "kwargs": {k: (a if _mutable(a) else None) for k, a in kwargs.items()}}
        if op == "getattr":
            return getattr(request["target"], request["name"])
        if op == "setattr":
            setattr(request["target"], request["name"], request["value"])
            return None
        if op == "getitem":
            return request["target"][request["key"]]
        if op == "list":
            items = []
            for item in request["target"]:
                items.append(item)
                if len(items) > MAX_LIST:
                    raise ValueError("more items than the grader takes")
            return items
        if op == "len":
            return len(request["target"])
        if op == "define":
            scope = dict(self.namespace)
            exec(compile(request["source"], request.get("filename", "<grader>"), "exec"), scope)
            return scope[request["name"]]
        if op == "env":
            import os
            before = os.environ.get(request["name"])
            os.environ[request["name"]] = request["value"]
            return before
        raise ValueError(f"unknown request {op!r}")


def _mutable(value) -> bool:
    """Whether a call may have changed ``value`` in place (a tuple may hold what can change)."""
    if type(value) is tuple:
        return any(_mutable(v) for v in value)
    return type(value) in (list, dict, np.ndarray) or _is_tensor(value)


def agent_source() -> str:
    """This module's source, which the grader executes in the kernel (it is never imported there)."""
    from pathlib import Path
    return Path(__file__).read_text()
