"""The NumPy-only guard: a student's function of a NumPy-only exercise (notebooks 01 and 02) run so that
it fails at its first call into torch, SciPy, scikit-learn or course_lib (:func:`numpy_only`)."""
from __future__ import annotations

import builtins
import dis
import functools
import gc
import re
import sys
import types

import numpy as np

from course_lib.checks.source_rules import FORBIDDEN_IN_NUMPY_EXERCISES

__all__ = ["numpy_only", "NumpyOnlyError", "FORBIDDEN_IN_NUMPY_EXERCISES"]


class NumpyOnlyError(AssertionError):
    """A NumPy-only exercise called into one of :data:`FORBIDDEN_IN_NUMPY_EXERCISES`."""


class _Forbidden(BaseException):
    """Stops the student's code at its first forbidden call (a BaseException: ``except Exception``
    in the student's code does not swallow it)."""


def numpy_only(fn):
    """``fn`` wrapped so that calling it fails if it calls into torch, SciPy, scikit-learn or course_lib.

    Any such call made while ``fn`` runs, directly or through helpers, stops it and raises
    :class:`NumpyOnlyError` naming the function called. NumPy (and the standard library) stay
    allowed. Use it on every student function of a NumPy-only exercise before the check calls it:
    ``relu = numpy_only(relu)``; :func:`call` passes the error on unchanged.

    How: ``sys.setprofile`` during the call sees every Python function entered (``'call'``: the
    module of its globals) and every builtin called from Python code (``'c_call'``: the builtin's
    ``__module__``, or the type of the object it is bound to). Ufuncs are not reported by the
    profiler, so the code of every non-NumPy function entered is also read once for names that
    resolve to a ufunc of a forbidden package (``scipy.special.expit``). A previous profile function
    keeps receiving the events and is restored afterwards, also when ``fn`` raises (cProfile misses
    the call and is re-enabled after it); finalizers run by the garbage collector during the call
    are ignored. With Python 3.11's profiler, loop-heavy code runs about 2.7 times slower.
    """
    if getattr(fn, "__numpy_only__", False):
        return fn
    if hasattr(type(fn), "numpy_only"):  # a function in the notebook's kernel: the grader reads its source
        return fn.numpy_only()
    name = getattr(fn, "__name__", "your function")

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        forbidden = _forbidden_callable(fn)
        if forbidden:
            raise NumpyOnlyError(_numpy_only_message(name, forbidden, None))
        return _run_numpy_only(fn, name, args, kwargs)

    guarded.__numpy_only__ = True
    return guarded


def _numpy_only_message(name: str, target: str, via: str | None) -> str:
    where = f" (in {via})" if via else ""
    what = f"imports {target[len('import '):]}" if target.startswith("import ") else f"called {target}"
    return (f"{name} {what}{where} — this exercise is NumPy only; write it with NumPy "
            "(torch, SciPy, scikit-learn and course_lib are not allowed here).")


def _forbidden_package(module) -> str | None:
    """The forbidden top-level package that module name ``module`` belongs to, or None."""
    if not isinstance(module, str):
        return None
    top = module.partition(".")[0]
    return top if top in FORBIDDEN_IN_NUMPY_EXERCISES else None


def _public(module: str) -> str:
    """``scipy.signal._signaltools`` → ``scipy.signal``: the module path up to its first private part."""
    parts = module.split(".")
    private = next((i for i, part in enumerate(parts) if i and part.startswith("_")), len(parts))
    return ".".join(parts[:private])


def _public_name(module: str, qualname: str) -> str:
    """``module.qualname`` from the shortest parent package that exports the same object
    (``torch.nn.modules.linear``, ``Linear.__init__`` → ``torch.nn.Linear``)."""
    qualname = qualname.removesuffix(".__init__")
    head = qualname.partition(".")[0]
    obj = getattr(sys.modules.get(module), head, _MISSING)
    parts = module.split(".")
    for i in range(1, len(parts)):
        parent = ".".join(parts[:i])
        if obj is not _MISSING and getattr(sys.modules.get(parent), head, None) is obj:
            return f"{parent}.{qualname}"
    return f"{_public(module)}.{qualname}"


def _builtin_origin(fn) -> tuple[str | None, str]:
    """(module, qualified name) of a builtin function or bound builtin method."""
    owner = getattr(fn, "__self__", None)
    short = getattr(fn, "__name__", "?")
    module = getattr(fn, "__module__", None)
    if isinstance(module, str) and module:
        return module, _public_name(module, short)
    if isinstance(owner, types.ModuleType):
        return owner.__name__, _public_name(owner.__name__, short)
    kind = owner if isinstance(owner, type) else type(owner)
    module = getattr(kind, "__module__", None)
    if not isinstance(module, str):
        return None, short
    return module, f"{_public(module)}.{kind.__qualname__}.{short}"


_UFUNC_ORIGIN: dict[int, tuple[object, str | None]] = {}


def _foreign_ufunc(obj) -> str | None:
    """The public name of ``obj`` if it is a ufunc of a forbidden package (scipy.special.expit), else None."""
    if not isinstance(obj, np.ufunc) or getattr(np, obj.__name__, None) is obj:
        return None
    cached = _UFUNC_ORIGIN.get(id(obj))
    if cached is not None and cached[0] is obj:
        return cached[1]
    names = [f"{_public(module)}.{obj.__name__}" for module, value in list(sys.modules.items())
             if _forbidden_package(module) and getattr(value, obj.__name__, None) is obj]
    origin = min(names, key=lambda n: (n.count("_"), len(n))) if names else None
    _UFUNC_ORIGIN[id(obj)] = (obj, origin)
    return origin


_FUNCTIONS = (types.FunctionType, types.BuiltinFunctionType, types.MethodType, types.BuiltinMethodType, type)


def _forbidden_callable(fn) -> str | None:
    """The name of ``fn`` when it is a function or class of a forbidden package, else None."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    ufunc = _foreign_ufunc(fn)
    if ufunc:
        return ufunc
    if not isinstance(fn, _FUNCTIONS):
        return None
    if isinstance(fn, (types.BuiltinFunctionType, types.BuiltinMethodType)):
        module, qualified = _builtin_origin(fn)
        return qualified if _forbidden_package(module) else None
    module = getattr(fn, "__module__", None)
    if _forbidden_package(module):
        return f"{_public(module)}.{getattr(fn, '__qualname__', getattr(fn, '__name__', '?'))}"
    return None


_LOADS = {"LOAD_GLOBAL": "global", "LOAD_NAME": "global", "LOAD_FAST": "local", "LOAD_DEREF": "local"}
_STORES = ("STORE_FAST", "STORE_NAME", "STORE_GLOBAL", "STORE_DEREF")
_CODE_NAMES: dict[int, tuple[object, list]] = {}


def _name_chains(code) -> list:
    """The dotted names ``code`` loads: (offset of the last load, (root kind, root, attributes)).

    Import aliases are followed: ``scipy.special.expit`` → ("global", "scipy", ("special", "expit"));
    ``from scipy.special import expit`` and ``import scipy.special as sp; sp.expit`` → ("module",
    "scipy.special", ("expit",)). Nested functions and comprehensions have code objects of their
    own, read when they run.
    """
    cached = _CODE_NAMES.get(id(code))
    if cached is not None and cached[0] is code:
        return cached[1]
    chains, aliases, current, end, last_const = [], {}, None, 0, None
    importing = bound = None  # the module IMPORT_NAME pushed (the named one with a fromlist, else its top
    fromlist = False          # package) and the object the import statement binds next
    for ins in dis.get_instructions(code):
        op, value = ins.opname, ins.argval
        if op in ("LOAD_ATTR", "LOAD_METHOD") and current is not None:
            current, end = (current[0], current[1], current[2] + (value,)), ins.offset
            continue
        if current is not None:
            chains.append((end, current))
            current = None
        if op in _LOADS and isinstance(value, str):
            current = (("global", value, ()) if _LOADS[op] == "global"
                       else aliases.get(value, ("local", value, ())))  # a local: an argument or a closure's
            end = ins.offset
        elif op == "IMPORT_NAME" and isinstance(value, str):
            fromlist = last_const is not None
            importing = value if fromlist else value.partition(".")[0]
            bound = ("module", importing, ())
        elif op == "IMPORT_FROM" and importing is not None:
            # from a.b import c: a.b.c; import a.b.c as d: a, then .b, then .c
            bound = ("module", importing, (value,)) if fromlist or bound is None else bound[:2] + (bound[2] + (value,),)
            chains.append((ins.offset, bound))
        elif op in _STORES and bound is not None:
            aliases[value] = bound
            bound = None
            if not fromlist:
                importing = None
        elif op not in ("POP_TOP", "SWAP"):
            importing = bound = None
        last_const = value if op == "LOAD_CONST" else None
    if current is not None:
        chains.append((end, current))
    _CODE_NAMES[id(code)] = (code, chains)
    return chains


def _resolve(chain, f_globals, f_locals):
    """(the object a chain names, its name written from the real module) or (None, "")."""
    kind, root, attrs = chain
    if kind == "module":
        obj, name = sys.modules.get(root), root
    else:
        if kind == "local":
            obj = f_locals.get(root)
        else:
            obj = f_globals.get(root, _MISSING)
            if obj is _MISSING:
                obj = getattr(builtins, root, None)
        if isinstance(obj, types.ModuleType):
            name = obj.__name__
        else:
            module = getattr(obj, "__module__", None)
            name = _public_name(module, getattr(obj, "__qualname__", root)) if isinstance(module, str) else root
    for attr in attrs:
        if not isinstance(obj, types.ModuleType):
            return None, ""
        obj, name = getattr(obj, attr, None), f"{name}.{attr}"
    return obj, name


_MISSING = object()


def _ufunc_in(frame) -> str | None:
    """The first forbidden ufunc that the code of ``frame`` names (locals: the arguments and closures)."""
    f_globals, f_locals = frame.f_globals, frame.f_locals
    for _, chain in _name_chains(frame.f_code):
        origin = _foreign_ufunc(_resolve(chain, f_globals, f_locals)[0])
        if origin:
            return origin
    return None


def _called_name(frame) -> str | None:
    """How the code of ``frame`` named the forbidden callable it is calling: the last dotted name it
    loaded before the call that resolves to one, written from the real module (``F.conv2d`` →
    ``torch.nn.functional.conv2d``), or None."""
    if frame is None:
        return None
    try:
        for end, chain in reversed(_name_chains(frame.f_code)):
            if end <= frame.f_lasti:
                obj, name = _resolve(chain, frame.f_globals, frame.f_locals)
                if obj is not None and _forbidden_callable(obj):
                    return name
    except Exception:  # naming is a courtesy; the check fails all the same
        pass
    return None


_NOT_STUDENT = ("numpy", "importlib", "_frozen_importlib", "_frozen_importlib_external")
_INNER = re.compile(r"(?:(?:\.<locals>)?\.<(?:listcomp|dictcomp|setcomp|genexpr|lambda)>)+$")


def _student_frame(frame, top_code) -> str | None:
    """The name of the student's function that made the call ``frame`` is in (frames of NumPy, the
    import system and forbidden packages skipped), or None when it is the checked function itself."""
    while frame is not None:
        module = frame.f_globals.get("__name__")
        top = module.partition(".")[0] if isinstance(module, str) else None
        if top not in _NOT_STUDENT and top not in FORBIDDEN_IN_NUMPY_EXERCISES:
            if frame.f_code is top_code:
                return None
            name = _INNER.sub("", frame.f_code.co_qualname)  # a comprehension or lambda: its function
            return None if top_code is not None and name == _INNER.sub("", top_code.co_qualname) else name
        frame = frame.f_back
    return None


def _run_numpy_only(fn, name: str, args, kwargs):
    found: list[str] = []
    top_code = getattr(fn, "__code__", None)
    in_gc = [False]
    previous = sys.getprofile()  # a Python function, or the object of a C profiler (cProfile), or None
    chained = previous if callable(previous) else None

    def gc_start(phase, info):
        if phase == "start":
            in_gc[0] = True

    def gc_stop(phase, info):
        if phase == "stop":
            in_gc[0] = False

    own = (gc_start.__code__, gc_stop.__code__)

    def stop(target: str, via: str | None):
        found.append(_numpy_only_message(name, target, via))
        raise _Forbidden()

    def profile(frame, event, arg):
        if chained is not None:
            chained(frame, event, arg)
        if event == "call":
            if in_gc[0] or found:
                return
            module = frame.f_globals.get("__name__")
            top = module.partition(".")[0] if isinstance(module, str) else None
            if top == "numpy":
                return
            code = frame.f_code
            if top in FORBIDDEN_IN_NUMPY_EXERCISES:
                if code is own[0] or code is own[1]:
                    return
                caller = frame.f_back
                if code.co_name == "<module>":
                    what = f"import {_public(module)}"
                else:
                    what = _called_name(caller) or _public_name(module, code.co_qualname)
                stop(what, _student_frame(caller, top_code))
            ufunc = _ufunc_in(frame)
            if ufunc:
                stop(ufunc, _student_frame(frame, top_code))
        elif event == "c_call":
            if in_gc[0] or found:
                return
            module = getattr(arg, "__module__", None)
            if module is None:  # a bound method: the module of the object it is bound to
                module = _builtin_origin(arg)[0]
            if isinstance(module, str) and module.partition(".")[0] in FORBIDDEN_IN_NUMPY_EXERCISES:
                stop(_called_name(frame) or _builtin_origin(arg)[1], _student_frame(frame, top_code))

    gc.callbacks.insert(0, gc_start)
    gc.callbacks.append(gc_stop)
    sys.setprofile(profile)
    try:
        result = fn(*args, **kwargs)
    except _Forbidden:
        result = None
    finally:
        if previous is None or chained is not None:
            sys.setprofile(previous)
        else:  # a C profiler cannot be set again from Python; cProfile's can re-enable itself
            sys.setprofile(None)
            getattr(previous, "enable", lambda: None)()
        for callback in (gc_start, gc_stop):
            if callback in gc.callbacks:
                gc.callbacks.remove(callback)
    if found:
        raise NumpyOnlyError(found[0])
    return result
