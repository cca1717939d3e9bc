"""What the grader checks inside a student's kernel: does anything a hidden test relies on still hold?

Runs in the kernel that executes a submission. ``take_snapshot`` records, before any student code,
the objects a test's verdict depends on: how IPython and ipykernel run a cell and report its error
(hooks, transformers, exception handlers, the methods that send the error to the grader), the
functions of ``builtins``, ``numpy``, ``torch`` and ``course_lib``, ``sys.modules``, the module
aliases the locked cells bind, and ``COURSE_FAST``. ``report`` prints, after every cell, what has
changed since, which the grader (``course_lib.grading.preprocessors``) reads. ``COURSE_FAST`` is not
a change but put back: fast and full mode have different tests, and a cell left from trying fast
mode (``%env COURSE_FAST=1``) must neither earn the easier tests nor cost the cells after it.
Additions made by installed libraries (matplotlib registering its figure flush) are allowed;
additions defined in the notebook are not.
"""
from __future__ import annotations

import builtins
import functools
import importlib
import json
import os
import sys
import sysconfig
import types

from course_lib.errors import show_errors_briefly

WATCHED_MODULES = (
    "builtins", "math", "numpy", "numpy.linalg", "numpy.random", "numpy.testing", "numpy.lib.stride_tricks",
    "torch", "torch.nn", "torch.nn.functional", "torch.linalg", "torch.testing", "torch.optim", "torch.autograd",
    "course_lib", "course_lib.checks", "course_lib.checks.mlp", "course_lib.checks.conv", "course_lib.checks.cnn",
    "course_lib.checks.optim", "course_lib.checks.tuning", "course_lib.checks.transfer",
    "course_lib.checks.gradient_check", "course_lib.settings", "course_lib.data", "course_lib.transfer",
    "course_lib.trainer", "course_lib.models", "course_lib.notebook", "course_lib.results", "course_lib.errors",
    "course_lib.grading.kernel_state",
)
SYS_HOOKS = ("excepthook", "displayhook", "breakpointhook", "unraisablehook")
# Fast and full mode have different tests (thresholds, data sizes): the grader's mode holds throughout.
WATCHED_ENVIRONMENT = ("COURSE_FAST",)
_LIBRARY_DIRS = tuple({os.path.realpath(sysconfig.get_paths()[key]) for key in ("stdlib", "purelib", "platlib")})

_snapshot: dict | None = None


def _kept(value) -> bool:
    """Objects whose replacement would change what code calling them does."""
    return callable(value) or isinstance(value, (types.ModuleType, type))


# ipykernel rebinds these for every request it runs; IPython's displayhook keeps the last three
# results a cell displayed (a model is callable) as its attributes _, __ and ___
REBOUND_PER_REQUEST = {"input", "raw_input", "_", "__", "___"}


def _callables(namespace: dict) -> dict:
    return {name: value for name, value in namespace.items() if _kept(value) and name not in REBOUND_PER_REQUEST}


def _is_library_code(obj) -> bool:
    """True for C functions and for code defined in an installed file, not in a notebook cell."""
    func = getattr(obj, "__func__", obj)
    while isinstance(func, functools.partial):
        func = func.func
    if isinstance(func, (types.BuiltinFunctionType, types.WrapperDescriptorType, types.MethodWrapperType,
                         types.MethodDescriptorType)):
        return True
    code = getattr(func, "__code__", None)
    if code is not None:
        filename = code.co_filename
    else:  # a callable object: where its class was defined
        filename = getattr(sys.modules.get(type(func).__module__), "__file__", None)
    return filename is not None and os.path.realpath(filename).startswith(_LIBRARY_DIRS)


def _shell_parts(shell) -> dict:
    """The objects through which IPython and ipykernel run a cell and send its outcome."""
    parts = {"shell": shell, "InteractiveTB": shell.InteractiveTB, "SyntaxTB": shell.SyntaxTB,
             "displayhook": shell.displayhook, "display_pub": shell.display_pub,
             "compile": shell.compile, "input_transformer_manager": shell.input_transformer_manager}
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        parts.update(kernel=kernel, session=kernel.session)
    return parts


def _hook_lists(shell) -> dict:
    manager = shell.input_transformer_manager
    lists = {"ast_transformers": shell.ast_transformers,
             "input_transformers_cleanup": shell.input_transformers_cleanup,
             "input_transformers_post": shell.input_transformers_post,
             "input_transformer_manager.line_transforms": getattr(manager, "line_transforms", []),
             "input_transformer_manager.token_transformers": getattr(manager, "token_transformers", [])}
    lists.update({f"events.{event}": callbacks for event, callbacks in shell.events.callbacks.items()})
    return {name: list(items) for name, items in lists.items()}


def _classes(parts: dict) -> list:
    seen = []
    for obj in parts.values():
        for cls in type(obj).__mro__[:-1]:
            if cls not in seen:
                seen.append(cls)
    import numpy
    import torch
    return seen + [torch.Tensor, torch.nn.Module, numpy.ndarray]


def take_snapshot(aliases: dict | None = None) -> None:
    """Record the state; ``aliases`` maps a name that the locked cells import to ``[module, attribute]``
    (attribute ``None`` for ``import module as name``): what the name must still refer to."""
    global _snapshot
    for name in WATCHED_MODULES:
        importlib.import_module(name)
    shell = get_ipython()  # noqa: F821  (IPython's builtin)
    # The course's brief error display, installed now as the setup cell would install it: the setup
    # cell then changes nothing, and any later change of IPython's exception handler is a finding.
    show_errors_briefly(shell)
    # Imported now, not in a cell: pyplot registers the inline backend's hooks and torch._dynamo
    # wraps torch.manual_seed when they are first imported.
    import matplotlib.pyplot  # noqa: F401
    import torch._dynamo  # noqa: F401
    parts = _shell_parts(shell)
    _snapshot = {
        "modules": {name: (sys.modules[name], _callables(vars(sys.modules[name]))) for name in WATCHED_MODULES},
        "sys": {name: getattr(sys, name) for name in SYS_HOOKS},
        "trace": (sys.gettrace(), sys.getprofile()),
        "parts": {name: (obj, _callables(vars(obj)) if hasattr(obj, "__dict__") else {})
                  for name, obj in parts.items()},
        "classes": {cls: dict(vars(cls)) for cls in _classes(parts)},
        "hooks": _hook_lists(shell),
        "custom_exceptions": shell.custom_exceptions,
        "environment": {name: os.environ.get(name) for name in WATCHED_ENVIRONMENT},
        "aliases": dict(aliases or {}),
    }


def _namespace_changes(label: str, before: dict, now: dict, allow_new) -> list:
    changes = [f"{label}.{name} was replaced" for name, value in before.items()
               if name in now and now[name] is not value]
    changes += [f"{label}.{name} was deleted" for name in before if name not in now]
    changes += [f"{label}.{name} was added" for name, value in now.items()
                if name not in before and _kept(value) and not allow_new(value)]
    return changes


def changes() -> list:
    """Everything a hidden test relies on that differs from the snapshot, in words."""
    if _snapshot is None:
        return ["the grader's snapshot is missing (its module was reloaded or removed)"]
    found = []
    for name, (module, members) in _snapshot["modules"].items():
        if sys.modules.get(name) is not module:
            found.append(f"sys.modules[{name!r}] was replaced or removed")
            continue
        found += _namespace_changes(name, members, _callables(vars(module)),
                                    allow_new=lambda v: isinstance(v, types.ModuleType) or _is_library_code(v))
    # IPython sets sys.excepthook to a new bound method of the shell for each cell: compare by ==
    found += [f"sys.{name} was replaced" for name, hook in _snapshot["sys"].items() if getattr(sys, name) != hook]
    if (sys.gettrace(), sys.getprofile()) != _snapshot["trace"]:
        found.append("a trace or profile function was left installed (sys.settrace / sys.setprofile)")
    shell = get_ipython()  # noqa: F821
    parts = _shell_parts(shell)
    for name, (obj, members) in _snapshot["parts"].items():
        if parts.get(name) is not obj:
            found.append(f"the kernel's {name} was replaced")
        elif hasattr(obj, "__dict__"):
            found += _namespace_changes(name, members, _callables(vars(obj)), allow_new=lambda v: False)
    for cls, members in _snapshot["classes"].items():
        now = vars(cls)
        found += [f"{cls.__module__}.{cls.__qualname__}.{key} was changed"
                  for key in set(members) | set(now) if members.get(key, now) is not now.get(key, members)]
    if shell.custom_exceptions != _snapshot["custom_exceptions"]:
        found.append("a custom exception handler was installed (set_custom_exc)")
    for name, items in _hook_lists(shell).items():
        before = _snapshot["hooks"].get(name, [])
        removed = [item for item in before if not any(item is other for other in items)]
        added = [item for item in items if not any(item is other for other in before) and not _is_library_code(item)]
        if removed or added:
            found.append(f"IPython's {name} were changed ({len(added)} added, {len(removed)} removed)")
    namespace = shell.user_ns
    for alias, (module_name, attribute) in _snapshot["aliases"].items():
        expected = sys.modules.get(module_name)
        if attribute is not None:
            expected = getattr(expected, attribute, None)
        if alias in namespace and expected is not None and namespace[alias] is not expected:
            found.append(f"the name {alias!r} no longer refers to {module_name}{'.' + attribute if attribute else ''}")
    return sorted(set(found))


def restore_environment() -> list:
    """Set the variables of ``WATCHED_ENVIRONMENT`` back to the grader's values; what was changed, in words."""
    restored = []
    for name, value in _snapshot["environment"].items() if _snapshot else ():
        if os.environ.get(name) != value:
            restored.append(f"{name} was set to {os.environ.get(name)!r}; the grader set it back to {value!r}, so the "
                            "cells after it ran in the grader's mode")
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return restored


def report(nonce: str) -> None:
    """Print ``<nonce> <json {"changes": [...], "restored": [...]}>`` for the grader: what a hidden test
    relies on that changed (``changes``), and the settings put back (``restore_environment``)."""
    builtins.print(nonce, json.dumps({"changes": changes(), "restored": restore_environment()}), flush=True)
