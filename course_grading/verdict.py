"""A test cell's verdict, decided in the grader's process on plain data from the student's kernel.

The grader runs a whole test cell (the public check and the hidden tests) in its own interpreter,
with its own NumPy, torch and ``course_lib``. The names the cell takes from the student's notebook
(``softmax``, ``params``, ``best_model``) are bound to what the kernel answers for them: plain data
(numbers, arrays, tensors, lists, dicts) arrives as such; a function, class or model becomes a
:class:`RemoteObject`, whose calls run in the kernel on arguments the grader sends and return plain
data (``course_grading.agent``). Arrays, lists and dicts passed to a call come back as the
kernel left them, so a function that updates its arguments in place behaves as it would locally.

A hidden test that needs several steps on objects that cannot travel (build a model, train it one
epoch, read its weights) puts them in a function decorated with ``course_lib.checks.remote.in_kernel``: run by the
grader, that function is sent to the kernel and returns plain data there; run anywhere else (the
solution notebook executed in Jupyter, nbval) it is an ordinary function.
"""
from __future__ import annotations

import builtins
import contextlib
import inspect
import io
import linecache
import symtable
import textwrap
import warnings

import numpy as np

from course_grading.agent import Agent, WireError, decode, encode
from course_lib.checks.remote import kernel_session
from course_lib.checks.source_rules import forbidden_uses

class RemoteError(Exception):
    """The student's code raised this in the kernel (its type's name and message)."""


_remote_types: dict = {}


def remote_exception(name: str, message: str, builtin: bool) -> Exception:
    """An exception of the grader's to stand for the kernel's: a built-in one (``NotImplementedError``,
    ``ValueError``) keeps its type, so that a check's ``except`` treats it as it would locally."""
    base = getattr(builtins, name, None) if builtin else None
    if not (isinstance(base, type) and issubclass(base, Exception)):
        base = None
    key = (name, base)
    if key not in _remote_types:
        _remote_types[key] = type(name, (RemoteError, base) if base else (RemoteError,), {"__module__": "student"})
    return _remote_types[key](message)


class Session:
    """One test cell's conversation with the kernel; ``channel(bytes) -> bytes`` carries a request."""

    def __init__(self, channel, sources=()):
        self.channel = channel
        self.sources = list(sources)   # the student's code cells, for what the source says
        self.review: list = []         # what the grader could not decide, for the instructor
        self.mistake: str | None = None  # the id of the named mistake the cell failed on (CheckFailed.mistake)

    def request(self, **request):
        try:
            import torch
        except ImportError:  # notebooks 01-02 need no torch
            torch = None
        answer = self.channel(encode(request, self._handle_of))
        try:
            reply = decode(answer, self._proxy, torch)
        except WireError as err:
            raise AssertionError(f"the notebook's kernel answered with something other than plain data: {err}") from None
        if not isinstance(reply, dict):
            raise AssertionError("the notebook's kernel answered out of turn")
        if "error" in reply:
            raise remote_exception(str(reply["error"]), str(reply.get("message", "")), bool(reply.get("builtin")))
        return reply.get("ok")

    def _handle_of(self, value) -> int:
        if isinstance(value, RemoteObject) and value._session is self:
            return value._id
        raise WireError(f"a {type(value).__name__} of the grader's cannot be sent to the kernel: "
                        "build it in the kernel (in_kernel) or send plain data")

    def _proxy(self, handle: dict):
        return RemoteObject(self, handle["id"], handle["type"])

    def define(self, function) -> "RemoteObject":
        """``function`` (its source, decorators left out) defined in the kernel among the notebook's names."""
        lines = textwrap.dedent(inspect.getsource(function)).splitlines()
        while lines and lines[0].lstrip().startswith("@"):
            lines.pop(0)
        remote = self.request(op="define", source="\n".join(lines) + "\n", name=function.__name__,
                              filename=f"<grader: {function.__name__}>")
        if not isinstance(remote, RemoteObject):
            raise AssertionError(f"the kernel did not define {function.__name__} as sent")
        return remote

    def resolve(self, names) -> dict:
        """The kernel's values for ``names``; names the notebook does not define are left out."""
        if not names:
            return {}
        answer = self.request(op="resolve", names=sorted(names))
        values = answer.get("values", {}) if isinstance(answer, dict) else {}
        for name, value in values.items():
            if isinstance(value, RemoteObject):
                object.__setattr__(value, "__name__", name)
        return values


class RemoteObject:
    """Something that lives in the student's kernel: calling it, reading an attribute or iterating
    it runs there, and what comes back is plain data or another remote object."""

    in_kernel = True   # what ``course_lib.checks.remote.runs_in_kernel`` looks for

    def __init__(self, session: Session, number: int, type_name: str):
        object.__setattr__(self, "_session", session)
        object.__setattr__(self, "_id", number)
        object.__setattr__(self, "_type", type_name)
        object.__setattr__(self, "__name__", type_name)

    def __call__(self, *args, **kwargs):
        answer = self._session.request(op="call", target=self, args=list(args), kwargs=kwargs)
        for sent, after in zip(args, answer["args"]):
            write_back(sent, after)
        for key, after in answer["kwargs"].items():
            write_back(kwargs[key], after)
        return answer["result"]

    def __getattr__(self, name):
        if name.startswith("__") and name.endswith("__"):
            raise AttributeError(name)
        return self._session.request(op="getattr", target=self, name=name)

    def __setattr__(self, name, value):
        self._session.request(op="setattr", target=self, name=name, value=value)

    def __getitem__(self, key):
        return self._session.request(op="getitem", target=self, key=key)

    def __iter__(self):
        return iter(self._session.request(op="list", target=self))

    def __len__(self):
        return self._session.request(op="len", target=self)

    def __repr__(self):
        return f"<{self._type} in the notebook's kernel>"

    def forbidden_use(self, forbidden, allowed=()) -> str | None:
        """The first use of ``forbidden`` but not ``allowed`` that this function's source in the notebook
        reaches (``course_lib.checks.remote.forbid``); what cannot be read goes to the review list."""
        found, review = forbidden_uses(self._session.sources, self.__name__, forbidden, allowed)
        self._session.review += [line for line in review if line not in self._session.review]
        return found[0] if found else None

    def numpy_only(self):
        """This function, once its source shows that it reaches no torch, SciPy, scikit-learn or course_lib
        (``course_lib.checks.numpy_only`` for code in the kernel, where watching the call proves nothing)."""
        from course_lib.checks.numpy_only import FORBIDDEN_IN_NUMPY_EXERCISES, NumpyOnlyError

        found = self.forbidden_use(FORBIDDEN_IN_NUMPY_EXERCISES)
        if found:
            raise NumpyOnlyError(f"{self.__name__} {found} — this exercise is NumPy only; write it with NumPy "
                                 "(torch, SciPy, scikit-learn and course_lib are not allowed here).")
        return self


def write_back(sent, after) -> None:
    """Make the grader's argument ``sent`` hold what the kernel's copy of it held after the call."""
    if after is None or sent is after:
        return
    if isinstance(sent, np.ndarray) and isinstance(after, np.ndarray):
        if sent.shape == after.shape and not np.array_equal(sent, after, equal_nan=True) and sent.flags.writeable:
            sent[...] = after
    elif isinstance(sent, dict) and isinstance(after, dict):
        for key, value in after.items():
            if key in sent and isinstance(sent[key], (np.ndarray, dict, list)) and type(value) is type(sent[key]):
                write_back(sent[key], value)
            else:
                sent[key] = value
        for key in [k for k in sent if k not in after]:
            del sent[key]
    elif isinstance(sent, list) and isinstance(after, list):
        sent[:] = after
    elif isinstance(sent, tuple) and isinstance(after, (tuple, list)) and len(sent) == len(after):
        for item, item_after in zip(sent, after):   # a tuple cannot change, what it holds can
            write_back(item, item_after)
    elif type(sent).__module__.startswith("torch") and type(after).__module__.startswith("torch"):
        import torch
        if sent.shape == after.shape and not torch.equal(sent.detach(), after.to(sent.dtype)):
            with torch.no_grad():
                sent.copy_(after)


def notebook_names(source: str) -> set:
    """The global names ``source`` reads without binding them itself."""
    table = symtable.symtable(source, "<test cell>", "exec")
    bound, read = set(), set()

    def visit(scope, top):
        for symbol in scope.get_symbols():
            name = symbol.get_name()
            if top and (symbol.is_assigned() or symbol.is_imported()):
                bound.add(name)
            elif symbol.is_global() or (not top and symbol.is_declared_global()):
                if symbol.is_assigned() and symbol.is_declared_global():
                    bound.add(name)
                if symbol.is_referenced():
                    read.add(name)
            elif top and symbol.is_referenced():
                read.add(name)
        for child in scope.get_children():
            visit(child, False)

    visit(table, True)
    return read - bound - set(dir(builtins))


def grader_namespace(locked_sources) -> dict:
    """The names the notebook's locked cells import, imported here in the grader (the kernel's copies of
    NumPy, torch and course_lib are never used for a verdict)."""
    import ast

    namespace: dict = {"__name__": "__grader__"}
    for source in locked_sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in tree.body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                with contextlib.suppress(ImportError):
                    exec(compile(ast.Module([node], []), "<locked cell>", "exec"), namespace)
    return namespace


def run_cell(source: str, namespace: dict, session: Session, filename: str = "<test cell>") -> None:
    """Run test cell ``source`` in the grader against the kernel of ``session``; raises what the cell raises."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    scope = dict(namespace)
    try:
        scope.update(session.resolve(notebook_names(source) - scope.keys()))
        with kernel_session(session), contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(source, filename, "exec"), scope)
    finally:
        linecache.cache.pop(filename, None)


def run_verdict(source: str, namespace: dict, session: Session, filename: str = "<test cell>") -> str | None:
    """:func:`run_cell` as a verdict: None when the cell passes, else what failed, as a line for the student
    (the exception's type and message; never the test's source)."""
    try:
        run_cell(source, namespace, session, filename)
    except NameError as err:
        return f"NameError: {err} (was the cell that defines it run, and did it run without an error?)"
    except SyntaxError as err:
        return f"SyntaxError in the test cell: {err}"
    except Exception as err:  # an assertion of the test, or the student's code failing in the kernel
        mistake = getattr(err, "mistake", None)
        session.mistake = mistake if isinstance(mistake, str) else None
        return f"{type(err).__name__}: {str(err).strip() or '(no message)'}"
    return None


def loopback(namespace: dict):
    """A channel to an agent on ``namespace`` in this process, through the same plain-data format: what
    the tests of the course use to run a test cell as the grader does, without a kernel."""
    agent = Agent(namespace)
    return agent.answer
