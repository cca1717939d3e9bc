"""Checks for notebook 05 (hyperparameter tuning).

The references come from the ecosystem, from numbers worked by hand and from properties, never from
a copy of an answer: scikit-learn's ``ParameterGrid`` and ``zero_one_loss``, SciPy's ``sem`` and ``binomtest``
(McNemar's exact test on counts the check builds), a
table of risks and standard errors for fixed labels, counts of each class in each part of a split,
what a toy learner saw and returned, and what Optuna recorded about a trial (its distributions, its
reported values, its state).

A split, a cross-validation or an Optuna trial has no single reference value, so their tables
name mistakes by properties: each entry's ``shows(record)`` returns where the mistake shows, in
words ('' where it does not), and the message puts that before the entry's hint.

Under the autograder these checks run in the grader's process on the notebook's functions as
``RemoteObject``s: a learner or an Optuna trial cannot be sent to the kernel, so the steps that need
one (:func:`recorded_cross_validation`, :func:`objective_trials`) run there through ``in_kernel`` and
answer in plain data, which the checks judge here.
"""
from __future__ import annotations

import functools
import math
import sys
from typing import NamedTuple

import numpy as np

from course_lib.checks.remote import forbid, in_kernel, runs_in_kernel
from course_lib.checks.toolkit import (CheckFailed, Mistake, as_array, call, close, compare, describe, diagnose, expect,
                                      fail, passed)

__all__ = [
    "without_course_lib", "check_stratified_split", "check_param_grid", "check_zero_one_risk", "check_mcnemar",
    "check_cross_validate", "check_objective",
]

TOL = 1e-9   # relative to the reference's scale: float64 rounding passes, float32 or another formula does not

# What the objective of section 5 must suggest: name -> (Optuna distribution, details), as the notebook states it.
SEARCH_SPACE = {
    "lr": ("FloatDistribution", {"low": 1e-4, "high": 3e-2, "log": True}),
    "weight_decay": ("FloatDistribution", {"low": 1e-5, "high": 3e-1, "log": True}),
    "batch_size": ("CategoricalDistribution", {"choices": (32, 64, 128, 256)}),
    "last_width": ("CategoricalDistribution", {"choices": (64, 128)}),
}
DISTRIBUTION_WORDS = {"FloatDistribution": "a float range", "IntDistribution": "an integer range",
                      "CategoricalDistribution": "a list of choices"}

USED_COURSE_LIB = "tuning.stratified_split.used_course_lib"
BOOLEAN_MASK = "tuning.stratified_split.boolean_mask"
USED_TEST_SET = "tuning.objective.used_test_set"
USED_FULL_SETS = "tuning.objective.used_full_sets"
SETTINGS_UNDEFINED = "tuning.objective.settings_undefined"


class _Stop(BaseException):
    """Stops the student's code at its first call into course_lib (``except Exception`` does not catch it)."""


def without_course_lib(fn):
    """``fn`` wrapped so that calling it fails when it calls into ``course_lib`` (any depth).

    ``course_lib.data`` has stratified splitters of its own; an exercise that asks for one is
    meant to be built on scikit-learn, so the check refuses a route through course_lib. A function
    in the notebook's kernel (a ``RemoteObject``) is judged by its source instead, read here.
    """
    name = getattr(fn, "__name__", "your function")
    advice = "build it on scikit-learn's splitters (sklearn.model_selection), not on course_lib's."
    if runs_in_kernel(fn):
        found = forbid(fn, ("course_lib",))
        expect(not found, f"{name} {found}: {advice}", USED_COURSE_LIB)
        return fn

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        found = []
        previous = sys.getprofile()

        def profile(frame, event, arg):
            if event == "call" and not found:
                module = frame.f_globals.get("__name__") or ""
                if module.partition(".")[0] == "course_lib" and not module.startswith(__name__):
                    called = frame.f_code.co_qualname
                    if frame.f_code.co_name == "__init__" and "self" in frame.f_locals:  # a class, by its name
                        called = type(frame.f_locals["self"]).__qualname__
                    found.append(f"{module}.{called}")
                    raise _Stop()

        sys.setprofile(profile)
        try:
            result = fn(*args, **kwargs)
        except _Stop:
            result = None
        finally:
            sys.setprofile(previous)
        expect(not found, f"{name} called {found[0] if found else ''}: {advice}", USED_COURSE_LIB)
        return result

    return guarded


# ---------------------------------------------------------------- shared helpers

def _diagnose_properties(record, mistakes) -> None:
    """Fail naming the first of ``mistakes`` whose ``shows(record)`` words where it shows (a property table)."""
    for mistake in mistakes:
        try:
            where = mistake.shows(record)
        except Exception:  # a property that cannot be judged on this record does not show
            where = ""
        if where:
            fail(f"{where}: {mistake.hint}", mistake.id)


def _number(value, what: str) -> float:
    """A Python, NumPy or 0-d torch number as a float; fails naming ``what`` otherwise."""
    if hasattr(value, "detach") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    expect(value is not None, f"{what} is None; expected one number.", "returned_none")
    expect(isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_)),
           f"{what} is {describe(value)}; expected one number.", "wrong_type")
    return float(value)


def _described(value) -> str:
    """:func:`describe`, with an empty list, tuple or dict called empty."""
    if isinstance(value, (list, tuple, dict)) and not value:
        return f"an empty {type(value).__name__}"
    return describe(value)


# ---------------------------------------------------------------- stratified_split

SPLIT_PARTS = ("train_idx", "val_idx", "test_idx")
FRACTIONS = ((0.8, 0.1, 0.1), (0.6, 0.3, 0.1))


class _Splits(NamedTuple):
    """What stratified_split gave on labels ``y``: ``parts[fractions]`` with seed 0, and for FRACTIONS[0]
    the same call ``again`` and one with seed 1 (each part a 1-D int64 index array)."""
    y: np.ndarray
    parts: dict
    again: tuple
    other_seed: tuple


def _per_split(find):
    """A table predicate over :class:`_Splits` from ``find(y, fractions, parts)``, which words where one split
    shows the mistake ('' where it does not)."""
    def shows(splits: _Splits) -> str:
        for fractions, parts in splits.parts.items():
            where = find(splits.y, fractions, parts)
            if where:
                return f"with fractions {fractions}, {where}"
        return ""
    return shows


def _labels_not_indices(y, fractions, parts) -> str:
    labels = np.unique(y)
    for part, name in zip(parts, SPLIT_PARTS):
        if len(part) > len(labels) and np.isin(part, labels).all():
            return f"{name} holds only the values {', '.join(str(v) for v in np.unique(part))}, each many times"
    return ""


def _repeated_indices(y, fractions, parts) -> str:
    for part, name in zip(parts, SPLIT_PARTS):
        repeated = len(part) - len(np.unique(part))
        if repeated:
            return f"{name} holds {repeated} indices more than once"
    return ""


def _overlapping_parts(y, fractions, parts) -> str:
    for (a, b), (first, second) in zip([(0, 1), (0, 2), (1, 2)], [("train", "val"), ("train", "test"), ("val", "test")]):
        shared = len(np.intersect1d(parts[a], parts[b]))
        if shared:
            return f"{first} and {second} share {shared} indices"
    return ""


def _missing_examples(y, fractions, parts) -> str:
    held = sum(len(part) for part in parts)
    return f"the three parts hold {held} of the {len(y)} examples" if held != len(y) else ""


def _wrong_sizes(y, fractions, parts) -> str:
    for part, fraction, name in zip(parts, fractions, ("train", "val", "test")):
        if abs(len(part) - fraction * len(y)) > len(np.unique(y)):
            return f"{name} has {len(part)} examples, not about {fraction * len(y):.0f}"
    return ""


def _not_stratified(y, fractions, parts) -> str:
    for part, fraction, name in zip(parts, fractions, ("train", "val", "test")):
        wanted = fraction * np.bincount(y)
        got = np.bincount(y[part], minlength=len(wanted))
        worst = int(np.argmax(np.abs(got - wanted)))
        if abs(got[worst] - wanted[worst]) > 1:
            return (f"{name} has {got[worst]} examples of class {worst}, about {wanted[worst]:.0f} expected "
                    f"({fraction:.0%} of them)")
    return ""


def _same_split(first, second) -> bool:
    return all(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(first, second))


STRATIFIED_SPLIT_MISTAKES = (
    Mistake("tuning.stratified_split.labels_not_indices", "these look like y's labels, but each part holds the "
            "positions of its examples (indices into y).", shows=_per_split(_labels_not_indices)),
    Mistake("tuning.stratified_split.repeated_indices", "an example must appear once, as when the indices are "
            "drawn without replacement.", shows=_per_split(_repeated_indices)),
    Mistake("tuning.stratified_split.overlapping_parts", "an example must land in exactly one part, or the "
            "validation and test sets leak into training.", shows=_per_split(_overlapping_parts)),
    Mistake("tuning.stratified_split.missing_examples", "every example must be in one of them.",
            shows=_per_split(_missing_examples)),
    Mistake("tuning.stratified_split.wrong_fractions", "are the fractions used in the order (train, val, test), "
            "the last two as shares of the whole set?", shows=_per_split(_wrong_sizes)),
    Mistake("tuning.stratified_split.not_stratified", "the split is not stratified; each class must keep its "
            "proportion in every part (the stratify argument of scikit-learn's splitters).",
            shows=_per_split(_not_stratified)),
    Mistake("tuning.stratified_split.seed_unused", "use the seed (random_state) so that a split repeats.",
            shows=lambda splits: "" if _same_split(splits.parts[FRACTIONS[0]], splits.again) else
            "two calls with seed=0 gave different splits"),
    Mistake("tuning.stratified_split.seed_ignored", "is the seed passed on to the splitter?",
            shows=lambda splits: "seed=0 and seed=1 gave the same split" if _same_split(splits.again, splits.other_seed)
            else ""),
)


def _imbalanced_labels(seed: int, counts=(500, 300, 150, 50)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


def _as_indices(value, what: str) -> np.ndarray:
    """An index array (NumPy, list or torch) as a 1-D int64 NumPy array."""
    expect(value is not None, f"{what} is None; expected a 1-D array of indices.", "returned_none")
    array = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    expect(array.ndim == 1, f"{what} should be a 1-D array of indices; it is {_described(value)}.", "wrong_shape")
    expect(array.dtype != bool, f"{what} is a boolean mask: return the indices of the examples in each part.",
           BOOLEAN_MASK)
    expect(np.issubdtype(array.dtype, np.integer) or len(array) == 0,
           f"{what} should hold integer indices; it holds {array.dtype} values.", "wrong_type")
    return array.astype(np.int64)


def _split(fn, y, fractions, seed) -> tuple:
    """stratified_split(y, fractions, seed=seed) as three int64 index arrays, each within 0..len(y)-1."""
    parts = call(without_course_lib(fn), y, fractions, seed=seed, name="stratified_split",
                 shown=f"y, {fractions}, seed={seed}", returns=SPLIT_PARTS, keeps={0: "y"})
    parts = tuple(_as_indices(part, name) for part, name in zip(parts, SPLIT_PARTS))
    everything = np.concatenate(parts)
    expect(everything.min(initial=0) >= 0 and everything.max(initial=0) < len(y),
           f"the indices run from {everything.min()} to {everything.max()}, but y has {len(y)} labels.", "out_of_range")
    return parts


def check_stratified_split(fn) -> None:
    """Disjoint, covering, in the stated fractions and order, stratified, repeatable for a seed.

    stratified_split(y, fractions, seed) with y: (1000,) labels of 4 imbalanced classes must return three
    1-D integer index arrays. In place: y must stay as it was (the labels are the caller's); a split that
    changes it fails, naming it.
    """
    y = _imbalanced_labels(0)
    parts = {fractions: _split(fn, y, fractions, 0) for fractions in FRACTIONS}
    splits = _Splits(y, parts, again=_split(fn, y, FRACTIONS[0], 0), other_seed=_split(fn, y, FRACTIONS[0], 1))
    _diagnose_properties(splits, STRATIFIED_SPLIT_MISTAKES)
    passed("stratified_split")


# ---------------------------------------------------------------- param_grid
#
# The reference is scikit-learn's ParameterGrid, which holds every combination but in an order of its own (its
# keys alphabetically). A grid is judged against it as a set of combinations, and its order by the stated rule
# read on neighbours: where two neighbouring combinations first differ, reading the space's keys in turn, the
# later one holds a value listed further on.

def _combinations(space: dict) -> list:
    """ParameterGrid's combinations of ``space``, in ParameterGrid's order (not the stated one)."""
    from sklearn.model_selection import ParameterGrid

    return list(ParameterGrid(space))


def _same_combinations(grid: list, space: dict) -> bool:
    """Whether ``grid`` holds each of ParameterGrid's combinations of ``space`` exactly once, and nothing else."""
    reference = _combinations(space)
    return len(grid) == len(reference) and all(grid.count(combination) == 1 for combination in reference)


def _out_of_order(grid: list, space: dict, keys) -> int | None:
    """The first position whose combination breaks the order in which ``keys`` vary, the first slowest (None if
    none does): the first of ``keys`` in which it differs from the combination before must hold a value that
    ``space`` lists after that combination's."""
    for position in range(1, len(grid)):
        before, after = grid[position - 1], grid[position]
        key = next((key for key in keys if before[key] != after[key]), None)
        if key is None or list(space[key]).index(after[key]) < list(space[key]).index(before[key]):
            return position
    return None


def _varying_in_order(keys_of):
    """A table predicate: the grid holds the right combinations and varies its keys in the order ``keys_of(space)``
    gives, the first slowest."""
    return lambda grid, space: _same_combinations(grid, space) and _out_of_order(grid, space, keys_of(space)) is None


def _paired_by_position(grid: list, space: dict) -> bool:
    """Whether the grid has only as many combinations as the space's shortest list, combination i holding each
    key's i-th listed value."""
    shortest = min(len(values) for values in space.values())
    return (0 < len(grid) == shortest < len(_combinations(space))
            and all(combination == {key: list(values)[position] for key, values in space.items()}
                    for position, combination in enumerate(grid)))


PARAM_GRID_MISTAKES = (
    Mistake("tuning.param_grid.no_combinations", "returned an empty list, but every value of each key meets every "
            "value of the others in a combination of its own, one dict for each.",
            shows=lambda grid, space: grid == [] and bool(space)),
    Mistake("tuning.param_grid.empty_space", "returned no combination: an empty space has exactly one, the empty "
            "dict (as ParameterGrid gives).", shows=lambda grid, space: grid == [] and not space),
    Mistake("tuning.param_grid.paired_up", "pairs the keys' values up position by position, but every value of each "
            "key must meet every value of the others.", shows=_paired_by_position),
    Mistake("tuning.param_grid.first_key_fastest", "varies the first key fastest: the stated order has the first key "
            "varying slowest and the last key fastest, like nested loops in the space's key order.",
            shows=_varying_in_order(lambda space: list(space)[::-1])),
    Mistake("tuning.param_grid.alphabetical_order", "follows the keys in alphabetical order (as ParameterGrid does): "
            "the stated order follows the space's own key order.", shows=_varying_in_order(sorted)),
    Mistake("tuning.param_grid.one_shared_dict", "holds one and the same dict for every combination, changed in "
            "place and appended again: make a new dict for each.",
            shows=lambda grid, space: len(grid) > 1 and all(combination == grid[-1] for combination in grid)),
    Mistake("tuning.param_grid.other_order", "holds the right combinations in another order: the first key varies "
            "slowest, the last fastest, each key's values in their listed order.", shows=_same_combinations),
)


def _space_words(space: dict) -> str:
    if not space:
        return "an empty space"
    sizes = [len(values) for values in space.values()]
    return f"a space of {' × '.join(map(str, sizes))} value{'' if math.prod(sizes) == 1 else 's'}"


def _combination_words(combination: dict) -> str:
    return ", ".join(f"{key}={value!r}" for key, value in combination.items()) or "the empty dict"


def _judge_grid(fn, space: dict) -> None:
    """param_grid(space) must be a list of new dicts: ParameterGrid's combinations, in the stated order."""
    what = f"param_grid on {_space_words(space)}"
    grid = call(fn, space, name="param_grid", shown=_space_words(space), keeps={0: "space"})
    expect(grid is not None, "param_grid returned None: is the result returned at the end of the function?",
           "returned_none")
    expect(isinstance(grid, list), f"{what} returned {_described(grid)}; expected a list of dicts, one per combination.",
           "wrong_type")
    for position, combination in enumerate(grid):
        expect(isinstance(combination, dict), f"{what} returned a list whose entry {position} is "
                                              f"{_described(combination)}; expected one dict per combination.",
               "wrong_type")
    if _same_combinations(grid, space) and _out_of_order(grid, space, list(space)) is None:
        return
    diagnose(grid, what, PARAM_GRID_MISTAKES, inputs=(space,))
    reference = _combinations(space)
    expect(len(grid) == len(reference), f"{what} gave {len(grid)} combinations; expected {len(reference)}, one for "
                                        "each way to pick a value of every key.")
    for position, combination in enumerate(grid):
        expect(combination in reference, f"{what}: combination {position} is {_combination_words(combination)}; "
                                         "expected every key of the space, each with one of its listed values.")
        first = grid.index(combination)
        expect(first == position, f"{what}: combination {position} ({_combination_words(combination)}) repeats "
                                  f"combination {first}; each combination comes once.")
    position = _out_of_order(grid, space, list(space))
    fail(f"{what}: combination {position} ({_combination_words(grid[position])}) comes after combination "
         f"{position - 1} ({_combination_words(grid[position - 1])}), but the first key varies slowest and the last "
         "fastest, each key's values in their listed order.")


def check_param_grid(fn) -> None:
    """Every combination once, as new dicts, the first key varying slowest; the combinations are ParameterGrid's.

    param_grid(space) with space a dict name -> list of values must return a list of dicts. In place: space
    must stay as it was (it is the caller's search space); a grid that changes it fails, naming it.
    """
    for space in ({"lr": [0.1, 0.01, 0.001], "nesterov": [True, False], "batch_size": [256, 32]},
                  {"width": [64]}, {}):
        _judge_grid(fn, space)
    passed("param_grid")


# ---------------------------------------------------------------- zero_one_risk
#
# The reference is a table of numbers worked by hand for fixed labels, and so is what each usual mistake returns
# on them: a check names a mistake by the numbers it sees.

TRUE_ROW = (3, 1, 4, 1, 5, 9, 2, 6)   # the labels, repeated to the length a case needs
PREDICTED_ROW = (3, 7, 4, 1, 0, 9, 8, 6)   # the predictions: 3 of every 8 are wrong, the 2nd, 5th and 7th


class _RiskCase(NamedTuple):
    """Fixed labels for zero_one_risk and the numbers worked by hand for them: the ``risk`` and ``standard_error``
    expected, and ``usual``, what a usual mistake returns instead (a name -> (risk, standard error))."""
    setting: str
    y_true: object
    y_pred: object
    risk: float
    standard_error: float
    usual: dict


def _risk_cases() -> tuple:
    import torch

    labels, predictions = np.resize(TRUE_ROW, 400), np.resize(PREDICTED_ROW, 400)
    return (
        # 150 of the 400 predictions are wrong
        _RiskCase("on 400 labels", labels, predictions, 0.375, 0.024206145913796356, {
            "accuracy": (0.625, 0.024206145913796356),
            "n_minus_one": (0.375, 0.02423646044779629),
            "variance": (0.375, 0.0005859375),
            "spread_of_single_losses": (0.375, 0.4841229182759271),
        }),
        _RiskCase("with no mistakes", labels, labels.copy(), 0.0, 0.0, {"accuracy": (1.0, 0.0)}),
        # 7 of the 20 predictions are wrong; two lists that differ somewhere are unequal as wholes
        _RiskCase("on Python lists", labels[:20].tolist(), predictions[:20].tolist(), 0.35, 0.1066536450385077, {
            "accuracy": (0.65, 0.1066536450385077),
            "n_minus_one": (0.35, 0.1094243309804831),
            "variance": (0.35, 0.011375),
            "spread_of_single_losses": (0.35, 0.47696960070847283),
            "lists_compared_whole": (1.0, 0.0),
        }),
        # 15 of the 40 predictions are wrong, as CPU tensors
        _RiskCase("on CPU tensors", torch.as_tensor(labels[:40]), torch.as_tensor(predictions[:40]), 0.375,
                  0.07654655446197431, {
                      "accuracy": (0.625, 0.07654655446197431),
                      "n_minus_one": (0.375, 0.07752170911825529),
                      "variance": (0.375, 0.005859375),
                      "spread_of_single_losses": (0.375, 0.4841229182759271),
                  }),
    )


def _usual(name: str):
    """What the usual mistake ``name`` returns on a :class:`_RiskCase`, from its table."""
    return lambda case: case.usual[name]


ZERO_ONE_RISK_MISTAKES = (
    Mistake("tuning.zero_one_risk.accuracy", "returned the accuracy as the risk: the zero-one risk is the share of "
            "mistakes.", returns=_usual("accuracy")),
    Mistake("tuning.zero_one_risk.n_minus_one", "divides by n − 1 in the standard error: section 2's formula "
            "divides by n.", returns=_usual("n_minus_one")),
    Mistake("tuning.zero_one_risk.variance", "returned the variance of the risk as its standard error: the "
            "standard error is the standard deviation of the risk, in the risk's own units, not its variance.",
            returns=_usual("variance")),
    Mistake("tuning.zero_one_risk.spread_of_single_losses", "returned the spread of single 0/1 losses as the "
            "standard error: the error of their mean shrinks with the number of examples.",
            returns=_usual("spread_of_single_losses")),
    Mistake("tuning.zero_one_risk.lists_compared_whole", "compared the two lists as wholes (one True or False): "
            "turn y_true and y_pred into arrays before comparing them element by element.",
            returns=_usual("lists_compared_whole")),
)


def _judge_risk(fn, case: _RiskCase) -> None:
    """zero_one_risk(case's labels) must return the case's risk and standard error."""
    pair = call(fn, case.y_true, case.y_pred, name="zero_one_risk", returns=("risk", "standard_error"))
    risk, error = _number(pair[0], "zero_one_risk's risk"), _number(pair[1], "zero_one_risk's standard error")
    if close((risk, error), (case.risk, case.standard_error), TOL):
        return
    diagnose((risk, error), f"zero_one_risk {case.setting}", ZERO_ONE_RISK_MISTAKES, inputs=(case,), tol=TOL)
    compare(risk, case.risk, f"the risk from zero_one_risk {case.setting}", tol=TOL,
            expected_as="the share of mistakes")
    compare(error, case.standard_error, f"the standard error from zero_one_risk {case.setting}", tol=TOL,
            expected_as="section 2's formula")


def check_zero_one_risk(fn) -> None:
    """Risk = share of mistakes, with section 2's standard error, against numbers worked by hand for fixed labels.

    zero_one_risk(y_true, y_pred) with (n,) labels, as arrays, lists or CPU tensors, must return (risk, standard_error).
    In place: its arguments are copies, so changing them is not judged.
    """
    for case in _risk_cases():
        _judge_risk(fn, case)
    passed("zero_one_risk")


# ---------------------------------------------------------------- mcnemar
#
# The reference is SciPy's exact binomial test on the counts, which the check knows because it builds the
# predictions itself: each case is made of examples of five kinds (both models right, only A right, only B right,
# both wrong with the same label, both wrong with different labels) in counts it chooses. What a usual mistake
# returns comes from SciPy too, with other settings (one-sided, chi-square with or without the continuity
# correction, a normal test on the two accuracies as if they were independent), or is a property of the counts.

class _PairedCase(NamedTuple):
    """Labels and two models' predictions built from ``kinds``: (both right, only A right, only B right, both wrong
    alike, both wrong differently), as ``form`` says ("arrays", "python", "tensors" or "booleans")."""
    setting: str
    y_true: object
    pred_a: object
    pred_b: object
    only_a: int
    only_b: int
    disagreements: int


def _paired_case(setting: str, kinds, form: str = "arrays", seed: int = 0, classes: int = 10) -> _PairedCase:
    both, only_a, only_b, alike, unlike = kinds
    rng = np.random.default_rng(seed)
    n = sum(kinds)
    y = rng.integers(0, classes, n)
    wrong = (y + rng.integers(1, classes, n)) % classes           # a label other than y
    other = (wrong + 1) % classes
    other = np.where(other == y, (other + 1) % classes, other)   # neither y nor wrong (for more than 2 classes)
    kind = rng.permutation(np.repeat(np.arange(5), kinds))
    a = np.where(np.isin(kind, (0, 1)), y, wrong)
    b = np.select([np.isin(kind, (0, 2)), kind == 3], [y, wrong], other)
    if form == "booleans":
        y, a, b = y.astype(bool), a.astype(bool), b.astype(bool)
    elif form == "python":
        y, a, b = y.tolist(), a.tolist(), b.tolist()
    elif form == "tensors":
        import torch

        y, a, b = torch.as_tensor(y), torch.as_tensor(a), torch.as_tensor(b)
    return _PairedCase(setting, y, a, b, only_a, only_b, only_a + only_b + unlike)


def _exact(case: _PairedCase, alternative: str = "two-sided") -> float:
    """SciPy's exact binomial test of the discordant counts (1 when there are none)."""
    from scipy.stats import binomtest

    n = case.only_a + case.only_b
    return 1.0 if n == 0 else binomtest(min(case.only_a, case.only_b), n, 0.5, alternative=alternative).pvalue


def _chi_square(case: _PairedCase, correction: float) -> float:
    from scipy.stats import chi2

    b, c = case.only_a, case.only_b
    return chi2.sf((abs(b - c) - correction) ** 2 / (b + c), 1)


def _unpaired(case: _PairedCase) -> float:
    """The two-sided p-value of a normal test on the two accuracies as if they came from independent test sets."""
    from scipy.stats import norm

    truth = as_array(case.y_true)
    accuracies = [np.mean(as_array(pred) == truth) for pred in (case.pred_a, case.pred_b)]
    error = math.sqrt(sum(acc * (1 - acc) / truth.size for acc in accuracies))
    return 2 * norm.sf(abs(accuracies[0] - accuracies[1]) / error)


def _counts_as(only_a, only_b, p_value):
    """A mistake's ``returns``: (b, c, p) from functions of the case."""
    return lambda case: (only_a(case), only_b(case), p_value(case))


def _right(case: _PairedCase):
    return case.only_a, case.only_b


def _counted_every_disagreement(result, case: _PairedCase) -> bool:
    """b + c, or the number of trials behind p, counts the examples where both are wrong with different labels."""
    from scipy.stats import binomtest

    b, c, p = result
    if case.disagreements == case.only_a + case.only_b:
        return False
    if b + c == case.disagreements:
        return True
    small = min(case.only_a, case.only_b)
    return (b, c) == _right(case) and math.isclose(p, binomtest(small, case.disagreements, 0.5).pvalue, rel_tol=1e-6)


MCNEMAR_MISTAKES = (
    Mistake("tuning.mcnemar.swapped", "returned the two counts in the other order: b counts the examples that "
            "model A gets right and model B wrong, c the other way round.",
            returns=_counts_as(lambda case: case.only_b, lambda case: case.only_a, _exact)),
    Mistake("tuning.mcnemar.every_disagreement", "counts the examples where the two predictions differ but both are "
            "wrong: only the examples that exactly one of the two models gets right say which is better.",
            shows=_counted_every_disagreement),
    Mistake("tuning.mcnemar.one_sided", "returned a one-sided p-value: the exact two-sided one counts splits as "
            "lopsided as the one seen in either direction.",
            returns=_counts_as(lambda case: case.only_a, lambda case: case.only_b,
                               lambda case: _exact(case, "less"))),
    Mistake("tuning.mcnemar.chi_square_corrected", "returned the chi-square approximation (with the continuity "
            "correction): the contract asks for the exact binomial form, which is right for small b + c too.",
            returns=_counts_as(lambda case: case.only_a, lambda case: case.only_b,
                               lambda case: _chi_square(case, 1.0))),
    Mistake("tuning.mcnemar.chi_square", "returned the chi-square approximation without the continuity correction: "
            "the contract asks for the exact binomial form.",
            returns=_counts_as(lambda case: case.only_a, lambda case: case.only_b,
                               lambda case: _chi_square(case, 0.0))),
    Mistake("tuning.mcnemar.unpaired", "compares the two accuracies as if they came from independent test sets (the "
            "unpaired standard error): the paired test uses only the examples on which the models disagree.",
            returns=_counts_as(lambda case: case.only_a, lambda case: case.only_b, _unpaired)),
    Mistake("tuning.mcnemar.uncapped", "is above 1: twice the tail probability passes 1 when b and c are close, and a "
            "p-value is a probability, capped at 1.", shows=lambda result, case: result[2] > 1 + 1e-12),
    Mistake("tuning.mcnemar.no_disagreement", "is not 1: when no example is right for one model and wrong for the "
            "other, nothing speaks for either, and the exact test gives p = 1.",
            shows=lambda result, case: case.only_a + case.only_b == 0 and not result[2] == 1),
    Mistake("tuning.mcnemar.lists_compared_whole", "looks like the lists were compared as wholes (one True or False): "
            "compare the labels example by example.",
            shows=lambda result, case: isinstance(case.y_true, list) and result[0] + result[1] <= 1
            and case.only_a + case.only_b > 1),
    Mistake("tuning.mcnemar.accuracies_counted", "counts every example that a model gets right: b and c count only "
            "the examples that one model gets right and the other wrong.",
            shows=lambda result, case: result[0] >= case.only_a + 1 and result[1] >= case.only_b + 1
            and result[0] - result[1] == case.only_a - case.only_b),
)


def _paired_cases() -> tuple:
    return (
        _paired_case("on 300 labels", (200, 23, 11, 30, 36), seed=1),
        _paired_case("on 40 boolean labels", (29, 5, 0, 6, 0), form="booleans", seed=2, classes=2),
        _paired_case("on 120 labels as tensors", (80, 9, 21, 4, 6), form="tensors", seed=3),
        _paired_case("on 60 labels as Python lists", (35, 4, 12, 3, 6), form="python", seed=4),
        _paired_case("with b = c", (50, 6, 6, 5, 3), seed=5),
        _paired_case("when no example is right for only one model", (40, 0, 0, 5, 7), seed=6),
    )


def _count(value, what: str) -> float:
    number = _number(value, what)
    expect(number == int(number) and number >= 0, f"{what} is {number:g}; expected a count of examples.", "wrong_type")
    return number


def _judge_paired(fn, case: _PairedCase) -> None:
    """mcnemar(case's labels and predictions) must return (b, c, p) of SciPy's exact two-sided test."""
    try:
        result = call(fn, case.y_true, case.pred_a, case.pred_b, name="mcnemar", returns=("b", "c", "p_value"),
                      keeps={0: "y_true", 1: "pred_a", 2: "pred_b"})
    except CheckFailed as failure:
        if failure.mistake == "crashed" and case.only_a + case.only_b == 0:
            fail(f"{failure} It happened {case.setting}: then b + c = 0, and the exact test gives p = 1.",
                 "tuning.mcnemar.no_disagreement")
        raise
    result = (_count(result[0], "mcnemar's b"), _count(result[1], "mcnemar's c"),
              _number(result[2], "mcnemar's p_value"))
    expected = (case.only_a, case.only_b, _exact(case))
    if close(result, expected, TOL):
        return
    what = f"mcnemar {case.setting}"
    diagnose(result, what, MCNEMAR_MISTAKES, inputs=(case,), tol=TOL)
    compare(result[0], case.only_a, f"{what}: b", tol=TOL, expected_as="the count of examples only model A gets right")
    compare(result[1], case.only_b, f"{what}: c", tol=TOL, expected_as="the count of examples only model B gets right")
    compare(result[2], expected[2], f"{what}: p_value", tol=TOL, expected_as="the exact two-sided binomial test's")


def check_mcnemar(fn) -> None:
    """(b, c, p) of McNemar's exact two-sided test, against SciPy's binomial test on counts the check builds.

    mcnemar(y_true, pred_a, pred_b) with (n,) labels and two models' predictions (arrays, lists, CPU tensors;
    integer or boolean labels) must return (b, c, p_value). In place: its arguments must stay as they were.
    """
    for case in _paired_cases():
        _judge_paired(fn, case)
    passed("mcnemar")


# ---------------------------------------------------------------- cross_validate

def _sem(values, ddof: int) -> float:
    """SciPy's standard error of the mean of ``values``."""
    from scipy.stats import sem

    return sem(values, ddof=ddof)


def recorded_cross_validation(cross_validate, X, y, k, seed):
    """``cross_validate`` run with a deterministic learner that predicts its training labels' most common
    class and records what each call saw: (the result, [(training ids, validation ids) per call]).

    Runs where ``cross_validate`` lives (through ``in_kernel`` in the grader); takes and returns plain data.
    """
    import numpy as np

    calls = []

    def majority(X_train, y_train, X_val):
        X_train, y_train, X_val = (np.asarray(a) for a in (X_train, y_train, X_val))
        calls.append((X_train[:, 0].astype(int).copy(), X_val[:, 0].astype(int).copy()))
        return np.full(len(X_val), np.bincount(y_train).argmax())

    result = cross_validate(majority, X, y, k=k, seed=seed)
    return (dict(result) if isinstance(result, dict) else result), calls


class _CrossValidation(NamedTuple):
    """One run of cross_validate with the recording learner: the folds it saw (``calls``: (training ids,
    validation ids) per fold), the (k,) fold risks, mean and standard error it returned, and ``expected_risks``,
    the share of mistakes of the learner's predictions on each fold's validation part."""
    k: int
    seed: int
    y: np.ndarray
    calls: list
    risks: np.ndarray
    mean: float
    error: float
    expected_risks: np.ndarray


class _CrossValidations(NamedTuple):
    """The runs check_cross_validate judges: ``main`` (k=5, seed 0, all fold risks equal), ``uneven`` (k=4,
    seed 2, unequal fold risks), ``repeat`` (as main) and ``other_seed`` (as main, seed 1)."""
    main: _CrossValidation
    uneven: _CrossValidation
    repeat: _CrossValidation
    other_seed: _CrossValidation


def _per_run(find):
    """A table predicate over :class:`_CrossValidations` from ``find(run)``, which words where the main or the
    uneven run shows the mistake ('' where neither does)."""
    def shows(runs: _CrossValidations) -> str:
        for run in (runs.main, runs.uneven):
            where = find(run)
            if where:
                return f"with k={run.k}, {where}"
        return ""
    return shows


def _wrong_fold_count(run) -> str:
    if len(run.calls) == run.k and len(run.risks) == run.k:
        return ""
    return f"the learner was called {len(run.calls)} times and {len(run.risks)} fold risks came back"


def _validation_in_training(run) -> str:
    for fold, (train_ids, val_ids) in enumerate(run.calls):
        shared = len(np.intersect1d(train_ids, val_ids))
        if shared:
            return f"{shared} validation examples of fold {fold} are also in its training data"
    return ""


def _dropped_examples(run) -> str:
    for fold, (train_ids, val_ids) in enumerate(run.calls):
        if len(train_ids) + len(val_ids) != len(run.y):
            return f"fold {fold} trains and validates on {len(train_ids) + len(val_ids)} of the {len(run.y)} examples"
    return ""


def _not_validated_once(run) -> str:
    times = np.bincount(np.concatenate([val_ids for _, val_ids in run.calls]), minlength=len(run.y))
    if np.all(times == 1):
        return ""
    return (f"over the folds {np.count_nonzero(times > 1)} examples are validated more than once and "
            f"{np.count_nonzero(times == 0)} never")


def _unstratified_folds(run) -> str:
    shares = np.bincount(run.y) / len(run.y)
    for label, share in enumerate(shares):
        held = [int(np.count_nonzero(run.y[val_ids] == label)) for _, val_ids in run.calls]
        if any(abs(count - share * len(val_ids)) > 1 for count, (_, val_ids) in zip(held, run.calls)):
            return f"class {label} makes up {share:.0%} of y, but the validation folds hold {held} of it"
    return ""


def _accuracies_as_risks(run) -> str:
    if close(run.risks, 1 - run.expected_risks, TOL) and not close(run.risks, run.expected_risks, TOL):
        return f"fold 0's risk is {run.risks[0]:.3g}, its share of correct predictions"
    return ""


def _error_with_ddof_zero(run) -> str:
    """SciPy's standard error of the folds' mean with its ddof setting at 0."""
    error = _sem(run.risks, 0)
    if error > 0 and close(run.error, error, TOL):
        return f"the standard error is {run.error:.4g}"
    return ""


def _spread_as_error(run) -> str:
    """√k times SciPy's standard error of the folds' mean: their spread."""
    spread = _sem(run.risks, 1) * math.sqrt(run.k)
    if spread > 0 and close(run.error, spread, TOL):
        return f"the standard error is {run.error:.4g}, the folds' spread itself"
    return ""


def _same_folds(first: _CrossValidation, second: _CrossValidation) -> bool:
    return len(first.calls) == len(second.calls) and all(
        np.array_equal(np.sort(a[1]), np.sort(b[1])) for a, b in zip(first.calls, second.calls))


CROSS_VALIDATE_MISTAKES = (
    Mistake("tuning.cross_validate.k_ignored", "one call and one risk per fold: is k passed on to the splitter?",
            shows=_per_run(_wrong_fold_count)),
    Mistake("tuning.cross_validate.validation_in_training", "the fold's validation part leaks into training.",
            shows=_per_run(_validation_in_training)),
    Mistake("tuning.cross_validate.dropped_examples", "each fold trains on every example it does not validate on.",
            shows=_per_run(_dropped_examples)),
    Mistake("tuning.cross_validate.not_a_partition", "the folds' validation parts split the examples, so that each "
            "example is validated exactly once.", shows=_per_run(_not_validated_once)),
    Mistake("tuning.cross_validate.not_stratified", "the folds are not stratified (scikit-learn's stratified splitter "
            "keeps each class's share in every fold).", shows=_per_run(_unstratified_folds)),
    Mistake("tuning.cross_validate.accuracies", "a fold's risk is its share of mistakes on its validation part.",
            shows=_per_run(_accuracies_as_risks)),
    Mistake("tuning.cross_validate.ddof_zero", "the folds' spread in it divides by k, but section 3's standard "
            "error of the mean over k folds uses their sample spread, which divides by k − 1.",
            shows=_per_run(_error_with_ddof_zero)),
    Mistake("tuning.cross_validate.spread_not_error", "the error of their mean divides that spread by √k.",
            shows=_per_run(_spread_as_error)),
    Mistake("tuning.cross_validate.seed_unused", "pass the seed to the splitter so that the folds repeat.",
            shows=lambda runs: "" if _same_folds(runs.main, runs.repeat) else "two runs with seed=0 gave different folds"),
    Mistake("tuning.cross_validate.seed_ignored", "shuffle the folds with the seed.",
            shows=lambda runs: "seed=0 and seed=1 gave the same folds" if _same_folds(runs.main, runs.other_seed) else ""),
)


def _cross_validation(fn, y, k: int, seed: int) -> _CrossValidation:
    """cross_validate(recording learner, X = the examples' ids as one feature, y, k=k, seed=seed)."""
    from sklearn.metrics import zero_one_loss

    ids = np.arange(y.size).reshape(-1, 1)
    result, calls = call(in_kernel(recorded_cross_validation), fn, ids, y, k, seed, name="cross_validate",
                         shown=f"learner, X, y, k={k}, seed={seed}")
    expect(result is not None, "cross_validate returned None: is the result returned at the end of the function?",
           "returned_none")
    expect(isinstance(result, dict), f"cross_validate should return a dict; it returned {_described(result)}.",
           "wrong_type")
    missing = [key for key in ("fold_risks", "mean", "standard_error") if key not in result]
    expect(not missing, f"cross_validate's dict lacks {', '.join(missing)}: it holds the fold risks, their mean and "
                        "its standard error.", "wrong_type")
    risks = np.array([_number(risk, "each of cross_validate's fold risks")
                      for risk in np.asarray(result["fold_risks"], dtype=object).ravel()], dtype=float)
    calls = [(np.asarray(train_ids, dtype=int), np.asarray(val_ids, dtype=int)) for train_ids, val_ids in calls]
    expected = np.array([zero_one_loss(y[val_ids], np.full(len(val_ids), np.bincount(y[train_ids]).argmax()))
                         for train_ids, val_ids in calls])
    return _CrossValidation(k, seed, y, calls, risks, _number(result["mean"], "cross_validate's mean"),
                            _number(result["standard_error"], "cross_validate's standard error"), expected)


def check_cross_validate(fn) -> None:
    """Stratified, shuffled folds; each example validated once; risks, mean and error consistent.

    cross_validate(train_and_predict, X, y, k, seed) runs with a learner that predicts its training labels'
    most common class and records what it saw; it must return {"fold_risks": k numbers, "mean", "standard_error"}.
    In place: X and y are copies, so changing them is not judged.
    """
    y = np.random.default_rng(3).permutation(np.repeat([0, 1], [60, 40]))
    uneven = np.random.default_rng(4).permutation(np.repeat([0, 1, 2], [45, 40, 35]))
    runs = _CrossValidations(main=_cross_validation(fn, y, 5, 0), uneven=_cross_validation(fn, uneven, 4, 2),
                             repeat=_cross_validation(fn, y, 5, 0), other_seed=_cross_validation(fn, y, 5, 1))
    _diagnose_properties(runs, CROSS_VALIDATE_MISTAKES)
    for run in (runs.main, runs.uneven):
        setting = f"with k={run.k} and seed={run.seed},"
        compare(run.risks, run.expected_risks, f"{setting} fold_risks", tol=TOL,
                expected_as="the share of the learner's mistakes")
        compare(run.mean, np.mean(run.risks), f"{setting} mean", tol=TOL, expected_as="the fold risks' mean")
        compare(run.error, _sem(run.risks, 1), f"{setting} standard_error", tol=TOL, expected_as="section 3's s / √k")
    passed("cross_validate")


# ---------------------------------------------------------------- objective

def objective_trials(objective, tune_train, tune_val, epochs: int, n: int = 64) -> dict:
    """check_objective's runs of ``objective`` on tiny copies of the tuning sets (``n`` images, ``epochs``
    epochs), with the test set sealed: a trial, a trial whose pruner says stop after the first report,
    and two FixedTrials of the same parameters. What Optuna recorded, as plain data; ``used_test_set``
    says whether the objective touched the test set, ``missing`` names the settings the notebook lacks.

    Runs where ``objective`` lives (through ``in_kernel`` in the grader); the objective reads its settings
    from its globals, which are changed for the runs and restored.
    """
    import optuna

    used = []

    class Sealed:
        """Stands in for a set the objective must not read (``name``): any use of it is recorded, and fails."""

        def __init__(self, name):
            object.__setattr__(self, "sealed_name", name)

        def __getattr__(self, attribute):
            used.append(object.__getattribute__(self, "sealed_name"))
            raise RuntimeError(f"{object.__getattribute__(self, 'sealed_name')} is sealed while the objective is checked")

        def __len__(self):
            return self.__getattr__("__len__")

    class PruneAfterFirst(optuna.pruners.BasePruner):
        asked = 0

        def prune(self, study, trial):
            PruneAfterFirst.asked += 1
            return trial.last_step is not None

    def record(pruner):
        study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0),
                                    pruner=pruner)
        study.optimize(objective, n_trials=1, catch=())
        trial = study.trials[0]
        return {"state": trial.state.name, "value": trial.value, "reports": dict(trial.intermediate_values),
                "distributions": {name: {"kind": type(d).__name__, "low": getattr(d, "low", None),
                                         "high": getattr(d, "high", None), "log": getattr(d, "log", None),
                                         "choices": list(getattr(d, "choices", ()))}
                                  for name, d in trial.distributions.items()}}

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    namespace = getattr(objective, "__globals__", {})
    names = ("tune_train", "tune_val", "TUNE_EPOCHS")
    missing = [name for name in names if name not in namespace]
    if missing:
        return {"missing": missing}
    settings = {"tune_train": tune_train.sample(n, seed=1), "tune_val": tune_val.sample(n, seed=1), "TUNE_EPOCHS": epochs}
    for name in ("test", "train", "val"):
        if name in namespace:
            settings[name] = Sealed(name)
    saved = {name: namespace[name] for name in settings}
    namespace.update(settings)
    try:
        trial = record(optuna.pruners.NopPruner())
        fixed = {"lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32, "last_width": 64}
        # a hyperparameter outside the search space gets a value too, so that the check can name it
        fixed.update({name: (d["choices"] or [d["low"]])[0] for name, d in trial["distributions"].items()
                      if name not in fixed})
        runs = {"trial": trial, "pruned": record(PruneAfterFirst()), "asked": PruneAfterFirst.asked,
                "fixed": [objective(optuna.trial.FixedTrial(fixed)) for _ in range(2)],
                "images": len(settings["tune_train"]), "epochs": epochs}
    except Exception:
        if not used:
            raise
        runs = {}
    finally:
        namespace.update(saved)
    return {**runs, "used_test_set": "test" in used, "used_full_sets": sorted(set(used) - {"test"}), "missing": []}


def _distributions(runs: dict) -> dict:
    return runs["trial"]["distributions"]


def _quoted(names) -> str:
    return ", ".join(f"'{name}'" for name in names) or "nothing"


def _missing_hyperparameters(runs: dict) -> str:
    missing = [name for name in SEARCH_SPACE if name not in _distributions(runs)]
    if not missing:
        return ""
    verb = "is" if len(missing) == 1 else "are"
    return f"the trial suggested {_quoted(_distributions(runs))}; {_quoted(missing)} {verb} missing"


def _wrong_kind(runs: dict) -> str:
    for name, (kind, _) in SEARCH_SPACE.items():
        got = _distributions(runs)[name]["kind"]
        if got != kind:
            return f"'{name}' is suggested from {DISTRIBUTION_WORDS.get(got, got)}, not from {DISTRIBUTION_WORDS[kind]}"
    return ""


def _linear_scale(runs: dict) -> str:
    for name, (kind, details) in SEARCH_SPACE.items():
        if "log" in details and _distributions(runs)[name]["log"] != details["log"]:
            return f"'{name}' is suggested on a linear scale"
    return ""


def _wrong_range(runs: dict) -> str:
    for name, (kind, details) in SEARCH_SPACE.items():
        got = _distributions(runs)[name]
        if "low" in details and not all(math.isclose(got[end], details[end]) for end in ("low", "high")):
            return f"'{name}' ranges from {got['low']:g} to {got['high']:g}"
    return ""


def _wrong_choices(runs: dict) -> str:
    for name, (kind, details) in SEARCH_SPACE.items():
        got = tuple(_distributions(runs)[name]["choices"])
        if "choices" in details and got != details["choices"]:
            return f"'{name}' is chosen among {got}"
    return ""


def _reported(runs: dict) -> list:
    reports = runs["trial"]["reports"]
    return [reports[step] for step in sorted(reports)]


def _last_report_not_returned(runs: dict) -> str:
    value, last = runs["trial"]["value"], _reported(runs)[-1]
    return "" if math.isclose(value, last) else f"the objective returned {value:.4g}, but its last report is {last:.4g}"


def _not_repeatable(runs: dict) -> str:
    first, second = runs["fixed"]
    return "" if first == second else f"the same parameters gave {first:.4g} and {second:.4g}"


OBJECTIVE_MISTAKES = (
    Mistake("tuning.objective.missing_hyperparameter", "section 5 lists the search space.",
            shows=_missing_hyperparameters),
    Mistake("tuning.objective.wrong_kind", "section 5 gives each hyperparameter's kind.", shows=_wrong_kind),
    Mistake("tuning.objective.linear_scale", "a rate that spans several powers of ten is searched on a log scale.",
            shows=_linear_scale),
    Mistake("tuning.objective.wrong_range", "section 5 gives its range.", shows=_wrong_range),
    Mistake("tuning.objective.wrong_choices", "section 5 lists its choices.", shows=_wrong_choices),
    Mistake("tuning.objective.extra_hyperparameter", "only section 5's four hyperparameters are tuned.",
            shows=lambda runs: f"the trial also suggested {_quoted(sorted(set(_distributions(runs)) - set(SEARCH_SPACE)))}"
            if set(_distributions(runs)) - set(SEARCH_SPACE) else ""),
    Mistake("tuning.objective.never_reported", "report the validation accuracy after every epoch.",
            shows=lambda runs: "" if runs["trial"]["reports"] else "the objective never reported"),
    Mistake("tuning.objective.steps_not_epochs", "report once per epoch, the step being the epoch (0, 1, ...).",
            shows=lambda runs: "" if sorted(runs["trial"]["reports"]) == list(range(runs["epochs"])) else
            f"the objective reported at steps {sorted(runs['trial']['reports'])} for {runs['epochs']} epochs"),
    Mistake("tuning.objective.not_accuracy", "report the validation accuracy (0 to 1).",
            shows=lambda runs: "" if all(0 <= value <= 1 for value in _reported(runs)) else
            f"the objective reported {', '.join(f'{value:.4g}' for value in _reported(runs))}"),
    Mistake("tuning.objective.last_report_not_returned", "return the final validation accuracy.",
            shows=_last_report_not_returned),
    Mistake("tuning.objective.never_asked_to_prune", "ask the trial after each report.",
            shows=lambda runs: "" if runs["asked"] else "the objective never asked whether to prune"),
    Mistake("tuning.objective.pruning_ignored", "stop it the way Optuna expects when it should be pruned.",
            shows=lambda runs: "" if runs["pruned"]["state"] == "PRUNED" else
            f"the pruner said stop after the first epoch, but the trial went on and ended {runs['pruned']['state']}"),
    Mistake("tuning.objective.pruned_late", "stop right after the report at which the pruner says so.",
            shows=lambda runs: "" if len(runs["pruned"]["reports"]) == 1 else
            f"the trial was pruned after {len(runs['pruned']['reports'])} reports, not after the first"),
    Mistake("tuning.objective.not_repeatable", "seed everything at the start of the objective so that a trial's "
            "result depends only on its parameters.", shows=_not_repeatable),
)


def check_objective(objective, tune_train, tune_val) -> None:
    """Search space, one report per epoch, pruning obeyed, repeatable, FixedTrial accepted (tiny data).

    objective(trial) runs in Optuna studies on 64 images of tune_train and tune_val for 2 epochs (the notebook's
    globals are changed for the runs and restored); it must return the final validation accuracy.
    """
    epochs = 2
    runs = call(in_kernel(objective_trials), objective, tune_train, tune_val, epochs, name="objective", shown="trial")
    expect(not runs["missing"], f"{', '.join(runs['missing'])} is not defined: run the notebook's cells from the "
                                "top first.", SETTINGS_UNDEFINED)
    expect(not runs["used_test_set"], "the objective used the test set: tuning decisions (every trial) are made on "
                                      "training and validation data only; the test set is for the very end (section 1).",
           USED_TEST_SET)
    expect(not runs.get("used_full_sets"), f"the objective read {' and '.join(runs.get('used_full_sets', []))}: its "
                                           "trials train on tune_train and validate on tune_val, the smaller sets "
                                           "section 5 made for the search.", USED_FULL_SETS)
    for value in runs["fixed"]:
        expect(value is not None, "objective returned None: is the result returned at the end of the function?",
               "returned_none")
    runs["fixed"] = [_number(value, "objective's result") for value in runs["fixed"]]
    state = runs["trial"]["state"]
    expect(state == "COMPLETE", f"with a pruner that never prunes, the trial ended {state}.")
    _diagnose_properties(runs, OBJECTIVE_MISTAKES)
    passed("objective", f"{epochs} epochs on {runs['images']} images per trial")
