"""Checks for notebook 05 (hyperparameter tuning).

The references come from the ecosystem and from properties, never from a copy of an answer:
scikit-learn's ``ParameterGrid`` and ``zero_one_loss``, SciPy's ``sem``, counts of each class
in each part of a split, what a toy learner saw and returned, and what Optuna recorded about a
trial (its distributions, its reported values, its state).

Under the autograder these checks run in the grader's process on the notebook's functions as
``RemoteObject``s: a learner or an Optuna trial cannot be sent to the kernel, so the steps that need
one (:func:`recorded_cross_validation`, :func:`objective_trials`) run there through ``in_kernel`` and
answer in plain data, which the checks judge here.
"""
from __future__ import annotations

import functools
import math
import numbers
import sys

import numpy as np

from course_lib.checks import expect, passed
from course_lib.checks.remote import forbid, in_kernel, runs_in_kernel

__all__ = [
    "without_course_lib", "check_stratified_split", "check_param_grid", "check_zero_one_risk",
    "check_cross_validate", "check_objective", "as_indices", "as_number", "SEARCH_SPACE",
    "recorded_cross_validation", "objective_trials",
]

_STUB = "is not implemented yet: replace `raise NotImplementedError()` with your code."

# What the objective of section 5 must suggest: name -> (kind, details), as the notebook states it.
SEARCH_SPACE = {
    "lr": ("float", {"low": 1e-4, "high": 3e-2, "log": True}),
    "weight_decay": ("float", {"low": 1e-5, "high": 3e-1, "log": True}),
    "batch_size": ("categorical", {"choices": (32, 64, 128, 256)}),
    "last_width": ("categorical", {"choices": (64, 128)}),
}


class CourseLibUsedError(AssertionError):
    """A tuning exercise called into course_lib, whose own splitters hold the answer."""


class _Stop(BaseException):
    """Stops the student's code at its first call into course_lib (``except Exception`` does not catch it)."""


def without_course_lib(fn):
    """``fn`` wrapped so that calling it fails when it calls into ``course_lib`` (any depth).

    ``course_lib.data`` has stratified splitters of its own; an exercise that asks for one is
    meant to be built on scikit-learn, so the check refuses a route through course_lib. A function
    in the notebook's kernel (a ``RemoteObject``) is judged by its source instead, read here.
    """
    name = getattr(fn, "__name__", "your function")
    if runs_in_kernel(fn):
        found = forbid(fn, ("course_lib",))
        if found:
            raise CourseLibUsedError(f"{name} {found}: build it on scikit-learn's splitters "
                                     "(sklearn.model_selection), not on course_lib's.")
        return fn

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        found = []
        previous = sys.getprofile()

        def profile(frame, event, arg):
            if event == "call" and not found:
                module = frame.f_globals.get("__name__") or ""
                if module.partition(".")[0] == "course_lib" and not module.startswith(__name__):
                    found.append(f"{module}.{frame.f_code.co_qualname}")
                    raise _Stop()

        sys.setprofile(profile)
        try:
            result = fn(*args, **kwargs)
        except _Stop:
            result = None
        finally:
            sys.setprofile(previous)
        if found:
            raise CourseLibUsedError(f"{name} called {found[0]}: build it on scikit-learn's splitters "
                                     "(sklearn.model_selection), not on course_lib's.")
        return result

    return guarded


def _call(fn, name: str, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except CourseLibUsedError:
        raise
    except NotImplementedError:
        raise AssertionError(f"{name} {_STUB}") from None
    except Exception as err:
        raise AssertionError(f"{name} raised {type(err).__name__}: {err}.") from err


def as_indices(value, what: str) -> np.ndarray:
    """An integer index array (NumPy, list or torch) as a 1-D int64 NumPy array."""
    if hasattr(value, "detach"):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    expect(array.ndim == 1, f"{what} should be a 1-D array of indices, got shape {array.shape}.")
    expect(array.dtype != bool, f"{what} is a boolean mask: return the indices of the examples in each part.")
    expect(np.issubdtype(array.dtype, np.integer) or len(array) == 0,
           f"{what} should hold integer indices, got dtype {array.dtype}.")
    return array.astype(np.int64)


def as_number(value, what: str) -> float:
    """A Python, NumPy or 0-d torch number as a float."""
    if hasattr(value, "detach") and getattr(value, "ndim", 1) == 0:
        value = value.item()
    if isinstance(value, np.ndarray) and value.ndim == 0:
        value = value.item()
    expect(isinstance(value, numbers.Real) and not isinstance(value, bool),
           f"{what} should be a number, got {type(value).__name__}.")
    return float(value)


# ---------------------------------------------------------------- stratified_split

def _imbalanced_labels(seed: int, counts=(500, 300, 150, 50)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.permutation(np.repeat(np.arange(len(counts)), counts))


def _split_parts(fn, y, fractions, seed):
    result = _call(without_course_lib(fn), "stratified_split", y, fractions, seed=seed)
    expect(isinstance(result, (tuple, list)) and len(result) == 3,
           "stratified_split should return a tuple (train_idx, val_idx, test_idx).")
    return [as_indices(part, name) for part, name in zip(result, ("train_idx", "val_idx", "test_idx"))]


def check_stratified_split(fn) -> None:
    """Disjoint, covering, in the stated fractions and order, stratified, repeatable for a seed."""
    y = _imbalanced_labels(0)
    before = y.copy()
    for fractions in ((0.8, 0.1, 0.1), (0.6, 0.3, 0.1)):
        parts = _split_parts(fn, y, fractions, 0)
        expect(np.array_equal(y, before), "stratified_split changed y: leave the labels as they are.")
        everything = np.concatenate(parts)
        expect(everything.min(initial=0) >= 0 and everything.max(initial=0) < len(y),
               f"indices run from {everything.min()} to {everything.max()}, but y has {len(y)} labels.")
        for (a, b), (i, j) in zip([(0, 1), (0, 2), (1, 2)], [("train", "val"), ("train", "test"), ("val", "test")]):
            shared = np.intersect1d(parts[a], parts[b])
            expect(len(shared) == 0, f"{i} and {j} share {len(shared)} indices: an example must land in exactly one "
                                     "part, or the validation and test sets leak into training.")
        for part, name in zip(parts, ("train", "val", "test")):
            expect(len(np.unique(part)) == len(part), f"{name}_idx holds some indices twice.")
        expect(len(everything) == len(y), f"the three parts hold {len(everything)} of the {len(y)} examples: "
                                          "every example must be in one of them.")
        for part, fraction, name in zip(parts, fractions, ("train", "val", "test")):
            expected_size = fraction * len(y)
            expect(abs(len(part) - expected_size) <= len(np.unique(y)),
                   f"with fractions={fractions}, {name} has {len(part)} examples, not about {expected_size:.0f}: "
                   "are the fractions used in the order (train, val, test), the last two as shares of the whole set?")
            wanted = fraction * np.bincount(y)
            got = np.bincount(y[part], minlength=len(wanted))
            worst = int(np.argmax(np.abs(got - wanted)))
            expect(np.all(np.abs(got - wanted) <= 1),
                   f"{name} has {got[worst]} examples of class {worst}, about {wanted[worst]:.0f} expected "
                   f"({fraction:.0%} of them): the split is not stratified — each class must keep its proportion "
                   "in every part (the stratify argument of scikit-learn's splitters).")
    first, again = (_split_parts(fn, y, (0.8, 0.1, 0.1), 0) for _ in range(2))
    other = _split_parts(fn, y, (0.8, 0.1, 0.1), 1)
    expect(all(np.array_equal(np.sort(a), np.sort(b)) for a, b in zip(first, again)),
           "two calls with seed=0 gave different splits: use the seed (random_state) so a split repeats.")
    expect(not np.array_equal(np.sort(again[1]), np.sort(other[1])),
           "seed=0 and seed=1 gave the same split: is the seed passed on to the splitter?")
    passed("stratified_split")


# ---------------------------------------------------------------- param_grid

def _order_key(combination: dict, space: dict) -> tuple:
    """Where ``combination`` falls when the first key varies slowest and the last fastest."""
    return tuple(list(space[key]).index(combination[key]) for key in space)


def check_param_grid(fn) -> None:
    """Every combination once, as dicts, the first key varying slowest; equal as a set to ParameterGrid."""
    from sklearn.model_selection import ParameterGrid

    space = {"lr": [0.1, 0.01, 0.001], "nesterov": [True, False], "batch_size": [256, 32]}
    copy = {key: list(values) for key, values in space.items()}
    grid = _call(fn, "param_grid", space)
    expect(space == copy, "param_grid changed the space it was given: leave its lists as they are.")
    expect(isinstance(grid, list), f"param_grid should return a list of dicts, got {type(grid).__name__}.")
    expect(all(isinstance(g, dict) for g in grid),
           f"param_grid should return a list of dicts (one per combination), got {type(grid[0]).__name__} entries.")
    reference = list(ParameterGrid(space))
    size = math.prod(len(v) for v in space.values())
    expect(len(grid) == size, f"{len(grid)} combinations for a space of 3 × 2 × 2 values, expected {size}: every value of "
                              "each key must meet every value of the others (not paired up position by position).")
    expect(all(set(g) == set(space) for g in grid), "every combination should have exactly the space's keys.")
    as_set = {tuple(sorted(g.items())) for g in grid}
    expect(len(as_set) == size, f"only {len(as_set)} different combinations among {size}: some appear twice — "
                                "is one dict changed in place and appended again?")
    expect(as_set == {tuple(sorted(g.items())) for g in reference}, "the combinations differ from ParameterGrid's.")
    keys = [_order_key(g, space) for g in grid]
    if keys != sorted(keys):
        alphabetical = {key: space[key] for key in sorted(space)}
        if [_order_key(g, alphabetical) for g in grid] == sorted(_order_key(g, alphabetical) for g in grid):
            raise AssertionError("the combinations follow the keys in alphabetical order (as ParameterGrid does): "
                                 "the stated order follows the space's own key order.")
        reverse = {key: space[key] for key in reversed(space)}
        if [_order_key(g, reverse) for g in grid] == sorted(_order_key(g, reverse) for g in grid):
            raise AssertionError("the first key varies fastest: the stated order has the first key varying slowest "
                                 "and the last key fastest, like nested loops in the space's key order.")
        raise AssertionError("the combinations are not in the stated order (first key slowest, last key fastest, "
                             "each key's values in their listed order).")
    grid[0]["lr"] = "changed"
    expect(grid[1]["lr"] != "changed", "all combinations are one and the same dict: make a new dict for each.")
    one = _call(fn, "param_grid", {"width": [64]})
    expect(one == [{"width": 64}], f"param_grid({{'width': [64]}}) gave {one!r}: one key with one value is one combination.")
    empty = _call(fn, "param_grid", {})
    expect(empty == [{}], f"param_grid({{}}) gave {empty!r}: an empty space has exactly one combination, the empty "
                          "dict (as ParameterGrid gives).")
    passed("param_grid")


# ---------------------------------------------------------------- zero_one_risk

def _risk_pair(fn, y_true, y_pred):
    result = _call(fn, "zero_one_risk", y_true, y_pred)
    expect(isinstance(result, (tuple, list)) and len(result) == 2,
           "zero_one_risk should return a tuple (risk, standard_error); a risk without its error is half an answer.")
    return as_number(result[0], "the risk"), as_number(result[1], "the standard error")


def check_zero_one_risk(fn) -> None:
    """Risk = share of mistakes (scikit-learn's zero_one_loss); error = SciPy's sem of the 0/1 losses (ddof 0)."""
    from scipy.stats import sem
    from sklearn.metrics import zero_one_loss

    rng = np.random.default_rng(5)
    y_true = rng.integers(0, 10, 400)
    y_pred = np.where(rng.random(400) < 0.3, rng.integers(0, 10, 400), y_true)
    risk, error = _risk_pair(fn, y_true, y_pred)
    expected = zero_one_loss(y_true, y_pred)
    losses = (y_true != y_pred).astype(float)
    if abs(risk - (1 - expected)) < 1e-12:
        raise AssertionError(f"risk {risk:.4f} is the accuracy: the zero-one risk is the share of mistakes.")
    expect(abs(risk - expected) < 1e-12, f"risk {risk:.4f}, expected the share of mistakes, {expected:.4f}.")
    wanted = sem(losses, ddof=0)
    if abs(error - sem(losses, ddof=1)) < 1e-12 and abs(error - wanted) > 1e-12:
        raise AssertionError("the standard error uses n − 1: section 2's formula divides by n.")
    if abs(error - wanted ** 2) < 1e-12:
        raise AssertionError(f"standard error {error:.5f} is the variance of the risk: take its square root.")
    if abs(error - np.std(losses)) < 1e-12:
        raise AssertionError(f"standard error {error:.4f} is the spread of single 0/1 losses: the error of their "
                             "mean shrinks with the number of examples.")
    expect(abs(error - wanted) < 1e-12, f"standard error {error:.5f}, expected {wanted:.5f} (section 2's formula).")
    same, none = _risk_pair(fn, y_true, y_true)
    expect(same == 0 and none == 0, f"no mistakes should give (0, 0), got ({same}, {none}).")
    as_lists = _risk_pair(fn, list(y_true[:50]), list(y_pred[:50]))
    expect(abs(as_lists[0] - zero_one_loss(y_true[:50], y_pred[:50])) < 1e-12,
           "zero_one_risk on Python lists gave another risk: convert its inputs to arrays first.")
    passed("zero_one_risk")


# ---------------------------------------------------------------- cross_validate

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


def _run_cv(fn, X, y, k, seed):
    result, calls = _call(in_kernel(recorded_cross_validation), "cross_validate", fn, X, y, k, seed)
    expect(isinstance(result, dict), f"cross_validate should return a dict, got {type(result).__name__}.")
    missing = {"fold_risks", "mean", "standard_error"} - set(result)
    expect(not missing, f"cross_validate's dict lacks {sorted(missing)}: it holds the per-fold risks, their mean and "
                        "its standard error.")
    risks = np.asarray([as_number(r, "a fold risk") for r in np.asarray(result["fold_risks"], dtype=object).ravel()])
    return calls, risks, as_number(result["mean"], "the mean"), as_number(result["standard_error"], "the standard error")


def check_cross_validate(fn) -> None:
    """Stratified, shuffled folds; each example validated once; risks, mean and error consistent."""
    from scipy.stats import sem
    from sklearn.metrics import zero_one_loss

    y = np.random.default_rng(3).permutation(np.repeat([0, 1], [60, 40]))
    ids = np.arange(100)
    X = ids[:, None]
    calls, risks, mean, error = _run_cv(fn, X, y, 5, 0)
    expect(len(calls) == 5, f"the learner was called {len(calls)} times for k=5: once per fold.")
    expect(len(risks) == 5, f"{len(risks)} fold risks for k=5.")
    for fold, (train_ids, val_ids) in enumerate(calls):
        shared = np.intersect1d(train_ids, val_ids)
        expect(len(shared) == 0, f"fold {fold}: {len(shared)} validation examples are also in its training data — "
                                 "the fold's validation part leaks into training.")
        expect(len(train_ids) + len(val_ids) == len(y), f"fold {fold}: training and validation hold "
                                                        f"{len(train_ids) + len(val_ids)} of {len(y)} examples.")
    validated = np.sort(np.concatenate([v for _, v in calls]))
    expect(np.array_equal(validated, ids), "every example must be validated exactly once over the folds.")
    counts = [np.bincount(y[v], minlength=2) for _, v in calls]
    expect(all(abs(c[1] - 0.4 * c.sum()) <= 1 for c in counts),
           f"class 1 makes up 40% of y, but the validation folds hold {[int(c[1]) for c in counts]} of it: the folds "
           "are not stratified (scikit-learn's stratified splitter keeps each class's share in every fold).")
    recomputed = [zero_one_loss(y[v], np.full(len(v), np.bincount(y[t]).argmax())) for t, v in calls]
    expect(np.allclose(risks, recomputed), f"fold risks {np.round(risks, 3).tolist()}, but the learner's predictions give "
                                           f"{np.round(recomputed, 3).tolist()}: each fold's risk is measured on that "
                                           "fold's validation part.")
    expect(abs(mean - np.mean(risks)) < 1e-12, f"mean {mean:.4f} is not the mean of the fold risks.")
    expect(abs(error) < 1e-12, f"the fold risks are all equal here, so their standard error is 0, got {error:.4f}.")
    # uneven risks: another seed and labels give folds that differ
    y2 = np.random.default_rng(4).permutation(np.repeat([0, 1, 2], [45, 40, 35]))
    _, risks2, mean2, error2 = _run_cv(fn, np.arange(len(y2))[:, None], y2, 4, 2)
    expect(len(risks2) == 4, f"{len(risks2)} fold risks for k=4: is k used?")
    expect(abs(mean2 - np.mean(risks2)) < 1e-12, "the mean is not the mean of the fold risks.")
    if abs(error2 - np.std(risks2) / 2) < 1e-12 and np.std(risks2) > 0:
        raise AssertionError("the standard error of the mean over k folds uses the folds' spread with n − 1 "
                             "(ddof=1), as section 3 states; this one used ddof=0.")
    if abs(error2 - np.std(risks2, ddof=1)) < 1e-12 and np.std(risks2) > 0:
        raise AssertionError("the standard error is the folds' spread itself: the error of their mean divides it by √k.")
    expect(abs(error2 - sem(risks2)) < 1e-12, f"standard error {error2:.5f}, expected {sem(risks2):.5f} (section 3).")
    first, *_ = _run_cv(fn, X, y, 5, 0)
    other, *_ = _run_cv(fn, X, y, 5, 1)
    expect(all(np.array_equal(np.sort(a[1]), np.sort(b[1])) for a, b in zip(first, calls)),
           "the same seed gave other folds: pass the seed to the splitter.")
    expect(not all(np.array_equal(np.sort(a[1]), np.sort(b[1])) for a, b in zip(other, calls)),
           "seed 0 and seed 1 gave the same folds: shuffle them with the seed.")
    expect(not all(np.all(np.diff(v) == 1) for _, v in calls),
           "each validation fold is one consecutive block of examples: shuffle before splitting into folds (with the seed).")
    passed("cross_validate")


# ---------------------------------------------------------------- objective

def objective_trials(objective, tune_train, tune_val, epochs: int, n: int = 64) -> dict:
    """check_objective's runs of ``objective`` on tiny copies of the tuning sets (``n`` images, ``epochs``
    epochs), with the test set sealed: a trial, a trial whose pruner says stop after the first report,
    and two FixedTrials of the same parameters. What Optuna recorded, as plain data.

    Runs where ``objective`` lives (through ``in_kernel`` in the grader); the objective reads its settings
    from its globals, which are changed for the runs and restored.
    """
    import optuna

    class Sealed:
        """Stands in for the test set: any use of it fails, by name."""

        def __getattr__(self, name):
            raise AssertionError("the objective used the test set: tuning decisions (every trial) are made on "
                                 "training and validation data only; the test set is for the very end (section 1).")

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
    settings = {"tune_train": tune_train.sample(n, seed=1), "tune_val": tune_val.sample(n, seed=1), "TUNE_EPOCHS": epochs}
    missing = [name for name in settings if name not in namespace]
    if missing:
        raise AssertionError(f"{', '.join(missing)} is not defined: run the notebook's cells from the top first.")
    if "test" in namespace:
        settings["test"] = Sealed()
    saved = {name: namespace[name] for name in settings}
    namespace.update(settings)
    try:
        fixed = {"lr": 1e-3, "weight_decay": 1e-4, "batch_size": 32, "last_width": 64}
        return {"trial": record(optuna.pruners.NopPruner()), "pruned": record(PruneAfterFirst()),
                "asked": PruneAfterFirst.asked,
                "fixed": [objective(optuna.trial.FixedTrial(fixed)) for _ in range(2)],
                "images": len(settings["tune_train"])}
    finally:
        namespace.update(saved)


def _check_distributions(trial: dict) -> None:
    for name, (kind, details) in SEARCH_SPACE.items():
        expect(name in trial["distributions"], f"the trial suggested {sorted(trial['distributions'])}: "
                                                f"'{name}' is missing (section 5 lists the search space).")
        got = trial["distributions"][name]
        if kind == "float":
            expect(got["kind"] == "FloatDistribution", f"'{name}' should be a float suggestion, got {got['kind']}.")
            expect(got["log"] == details["log"], f"'{name}' is suggested on a linear scale: a rate that spans several "
                                                 "powers of ten is searched on a log scale.")
            expect(math.isclose(got["low"], details["low"]) and math.isclose(got["high"], details["high"]),
                   f"'{name}' ranges from {got['low']:g} to {got['high']:g}; section 5 gives its range.")
        else:
            expect(got["kind"] == "CategoricalDistribution",
                   f"'{name}' should be a categorical suggestion (one of a list), got {got['kind']}.")
            expect(tuple(got["choices"]) == details["choices"],
                   f"'{name}' is chosen among {tuple(got['choices'])}; section 5 lists its choices.")
    extra = set(trial["distributions"]) - set(SEARCH_SPACE)
    expect(not extra, f"the trial also suggested {sorted(extra)}: only section 5's four hyperparameters are tuned.")


def check_objective(objective, tune_train, tune_val) -> None:
    """Search space, one report per epoch, pruning obeyed, repeatable, FixedTrial accepted (tiny data)."""
    epochs = 2
    try:
        runs = in_kernel(objective_trials)(objective, tune_train, tune_val, epochs)
    except NotImplementedError:
        raise AssertionError(f"objective {_STUB}") from None
    except AssertionError:
        raise
    except Exception as err:
        raise AssertionError(f"objective raised {type(err).__name__}: {err}.") from err
    trial, pruned = runs["trial"], runs["pruned"]
    _check_distributions(trial)
    expect(trial["state"] == "COMPLETE", f"the trial ended {trial['state']}.")
    steps = sorted(trial["reports"])
    expect(len(steps) > 0, "the objective never reported: report the validation accuracy after every epoch.")
    expect(steps == list(range(epochs)), f"reported at steps {steps} for {epochs} epochs: report once per epoch, "
                                         "the step being the epoch (0, 1, ...).")
    values = [trial["reports"][s] for s in steps]
    expect(all(0 <= v <= 1 for v in values), f"reported {values}: report the validation accuracy (0 to 1).")
    expect(trial["value"] is not None and math.isclose(trial["value"], values[-1]),
           f"returned {trial['value']}, but the last reported accuracy is {values[-1]}: return the final "
           "validation accuracy.")
    expect(runs["asked"] > 0, "the objective never asked whether to prune: ask the trial after each report.")
    expect(pruned["state"] == "PRUNED", "the pruner said stop after the first epoch, but the trial went on and ended "
                                        f"{pruned['state']}: stop it the way Optuna expects when it should be pruned.")
    expect(len(pruned["reports"]) == 1,
           f"the trial was pruned after {len(pruned['reports'])} reports, not right after the first.")
    first, second = (as_number(value, "objective's result") for value in runs["fixed"])
    expect(first == second, f"the same parameters gave {first} and {second}: seed everything at the start of the "
                            "objective so that a trial's result depends only on its parameters.")
    passed("objective", f"{epochs} epochs on {runs['images']} images per trial")
