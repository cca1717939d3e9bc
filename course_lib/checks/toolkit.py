"""The one way to write a public check: a contract, and a table of the usual mistakes.

A check calls the student's function with :func:`call`, which copies the arguments first (the
check's own arrays never change under it), and turns a stub, a crash, ``None`` or a value of the
wrong kind into a message. It then hands the result to :func:`compare` with the reference value
and the exercise's table of :class:`Mistake` entries::

    RELU_MISTAKES = (
        Mistake("mlp.relu.clipped_at_one", "clips at 1 as well as at 0: ReLU is unbounded above.",
                returns=lambda x: np.clip(x, 0, 1)),
    )

    def check_relu(relu):
        x = np.linspace(-3, 3, 13)
        out = call(relu, x, returns="array")
        compare(out, np.maximum(x, 0), "relu(x)", mistakes=RELU_MISTAKES, inputs=(x,))
        passed("relu")

When the values differ, the table's entries are tried in order and the first that reproduces the
student's value is named; when none does, the message says where the value first differs. A
failure is a :class:`CheckFailed` (an ``AssertionError``) that carries its mistake's stable id,
which is what the instructor's class report counts. Messages are plain text of a few lines: what
was expected in words, where the value first differs, the named mistake; never an object's repr
or more than a few numbers.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NoReturn

import numpy as np

__all__ = [
    "CheckFailed", "Mistake", "fail", "expect", "call", "compare", "diagnose", "difference", "close",
    "as_array", "copied", "describe", "error_line", "expect_tuple", "expect_shape", "passed", "UNIDENTIFIED",
]

UNIDENTIFIED = "unidentified"   # the id of a failure that no table entry explains
MAX_MESSAGE = 120               # characters of an error message of the student's code kept in a message


class CheckFailed(AssertionError):
    """A check's verdict on the student's code: the message for the student, and ``mistake``, the stable
    id of the usual mistake it names (:data:`UNIDENTIFIED` when none)."""

    def __init__(self, message: str, mistake: str = UNIDENTIFIED):
        super().__init__(message)
        self.mistake = mistake


def fail(message: str, mistake: str = UNIDENTIFIED) -> NoReturn:
    """Raise :class:`CheckFailed`."""
    raise CheckFailed(message, mistake)


def expect(condition, message: str, mistake: str = UNIDENTIFIED) -> None:
    """Raise :class:`CheckFailed` unless ``condition`` holds."""
    if not condition:
        fail(message, mistake)


@dataclass(frozen=True)
class Mistake:
    """One usual mistake of an exercise.

    ``id`` is stable (``"optim.sgd.dampened_velocity"``); ``hint`` says what the student did, in words,
    and follows the value's name in the message. Either ``returns(*inputs)`` computes what the mistake
    returns (compared with the student's value as the reference is), or ``shows(actual, *inputs)`` tells
    whether the student's value shows it.
    """

    id: str
    hint: str
    returns: Callable | None = None
    shows: Callable | None = None

    def __post_init__(self):
        if (self.returns is None) == (self.shows is None):
            raise ValueError(f"mistake {self.id}: give exactly one of returns= and shows=")

    def matches(self, actual, inputs=(), tol: float = 1e-6) -> bool:
        """Whether the student's ``actual`` is what this mistake gives on ``inputs``."""
        try:
            if self.shows is not None:
                return bool(self.shows(actual, *inputs))
            return close(actual, self.returns(*inputs), tol)
        except Exception:  # a mistake that cannot be computed on these inputs is not the one
            return False


# ---------------------------------------------------------------- values

def as_array(value) -> np.ndarray:
    """A number, sequence, NumPy array or torch tensor as a float64 NumPy array (``TypeError`` if it holds
    anything but numbers)."""
    if type(value).__module__.partition(".")[0] == "torch" and hasattr(value, "detach"):
        value = value.detach().cpu().double().numpy()
    try:
        array = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{describe(value)} is not an array of numbers") from err
    return array


def copied(value):
    """A copy of ``value`` deep enough that the student's code cannot change the original: arrays and
    tensors are copied, lists, tuples and dicts rebuilt; anything else is passed as it is."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if type(value).__module__.partition(".")[0] == "torch" and hasattr(value, "clone"):
        return value.clone()
    if isinstance(value, (list, tuple)) and type(value) in (list, tuple):
        return type(value)(copied(v) for v in value)
    if type(value) is dict:
        return {k: copied(v) for k, v in value.items()}
    return value


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray) or type(a).__module__.partition(".")[0] == "torch":
        try:
            return np.array_equal(as_array(a), as_array(b), equal_nan=True)
        except TypeError:
            return True
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return True


def describe(value) -> str:
    """A few words for ``value`` in a message: a number, a short sequence, an array's shape, or a type name
    (never an object's repr)."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        return repr(value)
    if isinstance(value, (int, float, np.integer, np.floating)):
        return f"{value:.6g}"
    if type(value).__module__.partition(".")[0] == "torch" and hasattr(value, "detach"):
        value = value.detach()
    shape = getattr(value, "shape", None)
    if shape is not None and not callable(shape):
        if len(shape) == 0:
            try:
                return f"{float(value):.6g}"
            except (TypeError, ValueError):
                pass
        kind = "tensor" if type(value).__module__.partition(".")[0] == "torch" else "array"
        return f"{kind} of shape {tuple(shape)}"
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:37] + "...")
    if isinstance(value, (list, tuple)) and len(value) <= 4 and all(
            isinstance(v, (int, float, str, np.number)) for v in value):
        inner = ", ".join(describe(v) for v in value)
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' if len(value) == 1 else ''})"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"


def _where(index: tuple) -> str:
    return f"[{', '.join(str(i) for i in index)}]"


def difference(actual, expected, tol: float = 1e-6) -> str | None:
    """None when ``actual`` is close to ``expected``, else where it first differs, in words that follow the
    value's name (``"at [2, 1] is 0.53; expected 0.71"``).

    Close means: the same shape, finite where the expected value is, and every element within ``tol``
    times the expected value's scale (its largest magnitude; 1 if it is all zeros), so that elements
    near zero are judged on the scale of the whole value.
    """
    try:
        a = as_array(actual)
    except TypeError:
        return f"is {describe(actual)}; expected {'a number' if np.ndim(expected) == 0 else 'an array of numbers'}"
    e = as_array(expected)
    if a.shape != e.shape:
        if e.ndim == 0:
            return f"is {describe(actual)}; expected one number"
        return f"has shape {a.shape}; expected {e.shape}"
    finite = np.isfinite(e)
    broken = finite & ~np.isfinite(a)
    if broken.any():
        index = tuple(int(i) for i in np.argwhere(broken)[0])
        value = a[index] if index else a[()]
        return f"is {value}" + (f" at {_where(index)}" if index else "") + f"; expected {e[index] if index else e[()]:.6g}"
    scale = float(np.max(np.abs(e[finite]), initial=0.0)) or 1.0
    with np.errstate(invalid="ignore", over="ignore"):
        wrong = (np.abs(a - e) > tol * scale) & finite | (~finite & (a != e))
    if not wrong.any():
        return None
    index = tuple(int(i) for i in np.argwhere(wrong)[0])
    if not index:
        return f"is {a[()]:.6g}; expected {e[()]:.6g}"
    others = int(wrong.sum()) - 1
    more = f" ({others} more of {a.size} elements differ)" if others else ""
    return f"at {_where(index)} is {a[index]:.6g}; expected {e[index]:.6g}{more}"


def close(actual, expected, tol: float = 1e-6) -> bool:
    """Whether ``actual`` is close to ``expected`` as :func:`difference` judges it."""
    return difference(actual, expected, tol) is None


def diagnose(actual, what: str, mistakes=(), inputs=(), tol: float = 1e-6) -> None:
    """Fail naming the first of ``mistakes`` that ``actual`` shows (on ``inputs``); return if none does."""
    for mistake in mistakes:
        if mistake.matches(actual, inputs, tol):
            fail(f"{what} {mistake.hint}", mistake.id)


def compare(actual, expected, what: str, *, tol: float = 1e-6, mistakes=(), inputs=(), expected_as: str = "",
            unexplained: str = UNIDENTIFIED) -> None:
    """Return if ``actual`` is close to ``expected`` (:func:`difference`); else fail naming the first of
    ``mistakes`` that reproduces it, or saying where it first differs (``expected_as`` names the reference
    in words, e.g. ``"torch.optim.SGD's"``; ``unexplained`` is the failure's id then)."""
    problem = difference(actual, expected, tol)
    if problem is None:
        return
    diagnose(actual, what, mistakes, inputs, tol)
    if expected_as:
        problem = problem.replace("; expected ", f"; {expected_as} is ", 1)
    fail(f"{what} {problem}.", unexplained)


# ---------------------------------------------------------------- calling the student's code

_STUB = "is not implemented yet: replace the line raise NotImplementedError() with your code."


def call(fn, *args, name: str | None = None, shown: str | None = None, returns=None, keeps=None, **kwargs):
    """``fn(*args, **kwargs)`` on copies of the arguments, the student's failures turned into messages.

    ``name`` is how the student calls ``fn`` (its ``__name__`` by default), ``shown`` the arguments as the
    message writes them (their shapes by default). ``returns`` states the result's kind: ``"array"``, ``"number"``,
    or a tuple of names (``("w_new", "v_new")``) for a tuple of that length. ``keeps`` maps an argument (its
    position, or its keyword) to its name, for the arguments the contract says must not change: a function
    that changes one in place fails, naming it. Other arguments may change; the caller's values never do.
    """
    from course_lib.checks.numpy_only import NumpyOnlyError

    name = name or getattr(fn, "__name__", "your function")
    sent = [copied(a) for a in args]
    sent_kwargs = {k: copied(v) for k, v in kwargs.items()}
    try:
        result = fn(*sent, **sent_kwargs)
    except (CheckFailed, NumpyOnlyError):
        raise
    except NotImplementedError:
        fail(f"{name} {_STUB}", "not_implemented")
    except Exception as err:
        where = f"{name}({shown if shown is not None else ', '.join(describe(a) for a in args)})"
        message = error_line(err)
        raise CheckFailed(f"{where} raised {type(err).__name__}: {message}", "crashed") from err
    for key, label in (keeps or {}).items():
        before = args[key] if isinstance(key, int) else kwargs[key]
        after = sent[key] if isinstance(key, int) else sent_kwargs[key]
        expect(_same(before, after), f"{name} changed its argument {label} in place; it should leave {label} as "
                                     "it was and return new values.", "changed_argument")
    _expect_kind(result, returns, name)
    return result


def error_line(err) -> str:
    """The first line of an error's message (an exception, or its text), at most :data:`MAX_MESSAGE` characters, backticks as quotes (plain
    text for a check's message)."""
    text = str(err).strip()
    line = text.splitlines()[0].replace("`", "'") if text else "(no message)"
    return line if len(line) <= MAX_MESSAGE else line[:MAX_MESSAGE - 3] + "..."


def _expect_kind(result, returns, name: str) -> None:
    if returns is None:
        return
    if result is None:
        fail(f"{name} returned None: is the result returned at the end of the function?", "returned_none")
    if isinstance(returns, tuple):
        expect_tuple(result, returns, name)
    elif returns == "array":
        expect(hasattr(result, "shape") and not isinstance(result, (np.generic,)) or isinstance(result, (list, tuple)),
               f"{name} returned {describe(result)}; expected an array.", "wrong_type")
    elif returns == "number":
        try:
            value = float(as_array(result)) if np.ndim(as_array(result)) == 0 else None
        except TypeError:
            value = None
        expect(value is not None and not isinstance(result, (str, bytes)),
               f"{name} returned {describe(result)}; expected one number.", "wrong_type")
    else:
        raise ValueError(f"returns={returns!r}: use 'array', 'number' or a tuple of names")


def expect_tuple(result, names, what: str) -> None:
    """``result`` must be a tuple (or list) of one value per name in ``names``, e.g. ("probs", "cache");
    ``what`` names the function, as the student calls it."""
    kind = "a pair" if len(names) == 2 else "a tuple"
    expect(isinstance(result, (tuple, list)) and len(result) == len(names),
           f"{what} should return {kind} ({', '.join(names)}); it returned {describe(result)}.", "wrong_type")


def expect_shape(value, shape, what: str) -> None:
    """``value`` must be an array (NumPy or torch) of exactly ``shape``."""
    actual = getattr(value, "shape", None)
    expect(actual is not None and not callable(actual),
           f"{what} should be an array of shape {tuple(shape)}; it is {describe(value)}.", "wrong_type")
    expect(tuple(actual) == tuple(shape), f"{what} should have shape {tuple(shape)}; it has {tuple(actual)}.",
           "wrong_shape")


def passed(name: str, detail: str = "") -> None:
    """Print the one success line a student sees."""
    print(f"✔ {name}: all public checks passed" + (f" ({detail})" if detail else ""))

