"""Notebook 05's test cells must reject plausible wrong splits, risks, cross-validations, grids and
Optuna objectives with a short message that names the mistake (its stable id), and accept valid
alternatives.

Most wrong answers are the solution with one mistake written in (a textual edit of the solution cell,
checked to apply), so the tests follow the notebook when it changes.
"""
from __future__ import annotations

import itertools
import linecache
import math

import numpy as np
import pytest

from notebook_cells import cell_source, rejected, run_test_cell

NB = "05_tuning"


def solution_source(name: str, edits=()) -> str:
    source = cell_source(NB, name)
    for old, new in edits:
        assert old in source, f"the edit {old!r} no longer applies to the solution of {name}"
        source = source.replace(old, new)
    return source


def define(name: str, edits=(), **extra):
    """The solution's ``name`` with ``edits`` applied, defined next to ``extra`` as a notebook cell defines it
    (the grader reads its source)."""
    source = solution_source(name, edits)
    filename = f"<{NB} {name} {abs(hash(source))}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"np": np, "math": math, **extra}
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


zero_one_risk = define("zero_one_risk")


def test_solutions_pass():
    run_test_cell(NB, "test_stratified_split", stratified_split=define("stratified_split"))
    run_test_cell(NB, "test_zero_one_risk", zero_one_risk=zero_one_risk)
    run_test_cell(NB, "test_cross_validate", cross_validate=define("cross_validate", zero_one_risk=zero_one_risk))
    run_test_cell(NB, "test_param_grid", param_grid=define("param_grid"))
    run_test_cell(NB, "test_mcnemar", mcnemar=define("mcnemar"))


@pytest.mark.parametrize("name", ["stratified_split", "zero_one_risk", "cross_validate", "param_grid", "mcnemar"])
def test_stubs_fail(name):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    rejected(NB, f"test_{name}", "not implemented yet", "not_implemented", **{name: stub})


@pytest.mark.parametrize("name", ["stratified_split", "zero_one_risk", "cross_validate", "param_grid", "mcnemar"])
def test_a_missing_return_is_named(name):
    def returns_nothing(*args, **kwargs):
        pass

    rejected(NB, f"test_{name}", "returned None: is the result returned at the end of the function", "returned_none",
             **{name: returns_nothing})


# ---------------------------------------------------------------- stratified_split

def split_not_stratified(y, fractions=(0.8, 0.1, 0.1), seed=0):
    order = np.random.default_rng(seed).permutation(len(y))
    a, b = int(fractions[0] * len(y)), int((fractions[0] + fractions[1]) * len(y))
    return order[:a], order[a:b], order[b:]


def split_with_course_lib(y, fractions=(0.8, 0.1, 0.1), seed=0):
    from course_lib.data import ImageArrays, split

    parts = split(ImageArrays(np.arange(len(y)), np.asarray(y), [str(c) for c in range(int(max(y)) + 1)]), fractions, seed)
    return parts.train.x, parts.val.x, parts.test.x


def split_with_the_notebooks_split():
    """course_lib's split, which the notebook's data cell imports: no import of it in the student's cell."""
    from course_lib.data import ImageArrays, split

    body = ("parts = split(ImageArrays(np.arange(len(y)), y, [str(c) for c in range(int(y.max()) + 1)]), fractions, seed)\n"
            "    return parts.train.x, parts.val.x, parts.test.x\n")
    return define("stratified_split", [("from sklearn.model_selection import train_test_split\n", body)],
                  split=split, ImageArrays=ImageArrays)


def split_as_masks(y, fractions=(0.8, 0.1, 0.1), seed=0):
    parts = define("stratified_split")(y, fractions, seed)
    masks = [np.zeros(len(y), dtype=bool) for _ in parts]
    for mask, part in zip(masks, parts):
        mask[part] = True
    return tuple(masks)


def split_of_the_labels(y, fractions=(0.8, 0.1, 0.1), seed=0):
    """Wrong: splits the labels themselves, not the examples' positions."""
    from sklearn.model_selection import train_test_split

    y = np.asarray(y)
    train, rest = train_test_split(y, train_size=fractions[0], stratify=y, random_state=seed)
    val, test = train_test_split(rest, test_size=fractions[2] / (fractions[1] + fractions[2]), stratify=rest,
                                 random_state=seed)
    return train, val, test


def split_drawn_with_replacement(y, fractions=(0.8, 0.1, 0.1), seed=0):
    """Wrong: draws each class's order with rng.choice, which draws with replacement."""
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for label in np.unique(y):
        members = rng.choice(np.flatnonzero(np.asarray(y) == label), np.count_nonzero(np.asarray(y) == label))
        a, b = round(fractions[0] * len(members)), round((fractions[0] + fractions[1]) * len(members))
        for part, chunk in zip(parts, (members[:a], members[a:b], members[b:])):
            part.extend(chunk)
    return tuple(np.array(part) for part in parts)


def split_shuffling_y(y, fractions=(0.8, 0.1, 0.1), seed=0):
    """Wrong: shuffles the caller's labels in place before splitting."""
    y = np.asarray(y)
    np.random.default_rng(seed).shuffle(y)
    return define("stratified_split")(y, fractions, seed)


@pytest.mark.parametrize("wrong, match, mistake", [
    (split_not_stratified, "not stratified", "tuning.stratified_split.not_stratified"),
    (define("stratified_split", [("stratify=y, random_state", "random_state")]), "not stratified",
     "tuning.stratified_split.not_stratified"),
    (define("stratified_split", [("train_test_split(rest, test_size", "train_test_split(everything, test_size"),
                                 ("stratify=y[rest]", "stratify=y")]), "share .* indices",
     "tuning.stratified_split.overlapping_parts"),
    (define("stratified_split", [("test_size=test_share / (val_share + test_share)", "test_size=test_share")]),
     "fractions", "tuning.stratified_split.wrong_fractions"),
    (define("stratified_split", [("test_size=test_share / (val_share + test_share)",
                                  "train_size=val_share, test_size=test_share")]),
     "hold 840 of the 1000 examples", "tuning.stratified_split.missing_examples"),
    (define("stratified_split", [("random_state=seed)\n    val_idx", "random_state=None)\n    val_idx")]),
     "different splits", "tuning.stratified_split.seed_unused"),
    (define("stratified_split", [("random_state=seed)\n    ### END", "random_state=0)\n    ### END"),
                                 ("random_state=seed)\n    val_idx", "random_state=0)\n    val_idx")]),
     "same split", "tuning.stratified_split.seed_ignored"),
    (split_of_the_labels, "holds only the values 0, 1, 2, 3", "tuning.stratified_split.labels_not_indices"),
    (split_drawn_with_replacement, "more than once", "tuning.stratified_split.repeated_indices"),
    (split_as_masks, "boolean mask", "tuning.stratified_split.boolean_mask"),
    (split_with_course_lib, "called course_lib.data.split", "tuning.stratified_split.used_course_lib"),
    (split_with_the_notebooks_split(), "called course_lib.data.split", "tuning.stratified_split.used_course_lib"),
    (split_shuffling_y, "changed its argument y in place", "changed_argument"),
    (lambda y, fractions=(0.8, 0.1, 0.1), seed=0: tuple(p + 1 for p in define("stratified_split")(y, fractions, seed)),
     "run from 1 to 1000, but y has 1000 labels", "out_of_range"),
    (lambda y, fractions=(0.8, 0.1, 0.1), seed=0: (), r"should return a tuple \(train_idx, val_idx, test_idx\); it "
                                                     "returned \\(\\)", "wrong_type"),
    (lambda y, fractions=(0.8, 0.1, 0.1), seed=0: tuple(p[:, None] for p in define("stratified_split")(y, fractions, seed)),
     "train_idx should be a 1-D array of indices", "wrong_shape"),
    (lambda y, fractions=(0.8, 0.1, 0.1), seed=0: tuple(p.astype(float) for p in define("stratified_split")(y, fractions, seed)),
     "train_idx should hold integer indices; it holds float64 values", "wrong_type"),
])
def test_stratified_split_rejects(wrong, match, mistake):
    rejected(NB, "test_stratified_split", match, mistake, stratified_split=wrong)


def test_a_split_through_course_lib_is_refused_outside_the_grader_too():
    """In the student's own kernel the check runs the function, and stops it at its first call into course_lib."""
    from course_lib.checks.toolkit import CheckFailed
    from course_lib.checks.tuning import check_stratified_split

    with pytest.raises(CheckFailed, match="split_with_course_lib called course_lib.data.ImageArrays: build it on "
                                          "scikit-learn's splitters") as caught:
        check_stratified_split(split_with_course_lib)
    assert caught.value.mistake == "tuning.stratified_split.used_course_lib"


def split_with_shuffle_splits(y, fractions=(0.8, 0.1, 0.1), seed=0):
    from sklearn.model_selection import StratifiedShuffleSplit

    y = np.asarray(y)
    first = StratifiedShuffleSplit(1, train_size=fractions[0], random_state=seed)
    train, rest = next(first.split(np.zeros(len(y)), y))
    second = StratifiedShuffleSplit(1, train_size=fractions[1] / (fractions[1] + fractions[2]), random_state=seed)
    val, test = next(second.split(np.zeros(len(rest)), y[rest]))
    return list(train), list(rest[val]), list(rest[test])


def test_stratified_split_accepts_other_splitters_and_lists():
    run_test_cell(NB, "test_stratified_split", stratified_split=split_with_shuffle_splits)


# ---------------------------------------------------------------- zero_one_risk

def risk_of_lists_compared_whole(y_true, y_pred):
    """Wrong: compares the inputs as they come, which for two lists is one True or False."""
    risk = float(np.mean(y_true != y_pred))
    return risk, math.sqrt(risk * (1 - risk) / len(y_true))


@pytest.mark.parametrize("wrong, match, mistake", [
    (define("zero_one_risk", [("mistakes = np.asarray(y_true) != np.asarray(y_pred)",
                               "mistakes = np.asarray(y_true) == np.asarray(y_pred)")]),
     "on 400 labels returned the accuracy as the risk", "tuning.zero_one_risk.accuracy"),
    (define("zero_one_risk", [("standard_error = math.sqrt(risk * (1 - risk) / len(mistakes))",
                               "standard_error = risk * (1 - risk) / len(mistakes)")]),
     "variance", "tuning.zero_one_risk.variance"),
    (define("zero_one_risk", [("/ len(mistakes))", "/ (len(mistakes) - 1))")]), "n − 1",
     "tuning.zero_one_risk.n_minus_one"),
    (define("zero_one_risk", [("standard_error = math.sqrt(risk * (1 - risk) / len(mistakes))",
                               "standard_error = math.sqrt(risk * (1 - risk))")]),
     "spread of single", "tuning.zero_one_risk.spread_of_single_losses"),
    (risk_of_lists_compared_whole, "on Python lists compared the two lists as wholes",
     "tuning.zero_one_risk.lists_compared_whole"),
    (define("zero_one_risk", [("return risk, standard_error", "return risk")]),
     r"should return a pair \(risk, standard_error\); it returned 0.375", "wrong_type"),
    (define("zero_one_risk", [("return risk, standard_error", "return risk, None")]),
     "zero_one_risk's standard error is None; expected one number", "returned_none"),
    (define("zero_one_risk", [("risk = float(mistakes.mean())", "risk = round(float(mistakes.mean()), 2)")]),
     "the risk from zero_one_risk on 400 labels is 0.38; the share of mistakes is 0.375", "unidentified"),
])
def test_zero_one_risk_rejects(wrong, match, mistake):
    rejected(NB, "test_zero_one_risk", match, mistake, zero_one_risk=wrong)


def risk_of_a_bool_tensor(y_true, y_pred):
    """Wrong for tensors: the mean of a boolean tensor, which torch refuses."""
    mistakes = y_true != y_pred if hasattr(y_true, "detach") else np.asarray(y_true) != np.asarray(y_pred)
    risk = float(mistakes.mean())
    return risk, math.sqrt(risk * (1 - risk) / len(mistakes))


def test_zero_one_risk_on_tensors_is_checked():
    rejected(NB, "test_zero_one_risk", "raised RuntimeError: mean", "crashed", zero_one_risk=risk_of_a_bool_tensor)


def risk_as_numpy_and_tensor(y_true, y_pred):
    import torch

    losses = (np.asarray(y_true) != np.asarray(y_pred)).astype(float)
    return np.mean(losses), torch.tensor(np.std(losses) / np.sqrt(len(losses)))


def test_zero_one_risk_accepts_numpy_scalars_and_tensors():
    run_test_cell(NB, "test_zero_one_risk", zero_one_risk=risk_as_numpy_and_tensor)


# ---------------------------------------------------------------- mcnemar

def mcnemar_chi_square(correction):
    def mcnemar(y_true, pred_a, pred_b):
        """Wrong: the chi-square approximation, not the exact binomial form the contract asks for."""
        from scipy.stats import chi2

        truth = np.asarray(y_true)
        a_right, b_right = np.asarray(pred_a) == truth, np.asarray(pred_b) == truth
        b, c = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
        return b, c, float(chi2.sf((abs(b - c) - correction) ** 2 / (b + c), 1))
    return mcnemar


def mcnemar_unpaired(y_true, pred_a, pred_b):
    """Wrong: a normal test on the two accuracies with the unpaired standard error."""
    from scipy.stats import norm

    truth = np.asarray(y_true)
    a_right, b_right = np.asarray(pred_a) == truth, np.asarray(pred_b) == truth
    accuracy_a, accuracy_b = a_right.mean(), b_right.mean()
    error = math.sqrt((accuracy_a * (1 - accuracy_a) + accuracy_b * (1 - accuracy_b)) / len(truth))
    return int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right)), 2 * norm.sf(abs(accuracy_a - accuracy_b) / error)


def mcnemar_lists_whole(y_true, pred_a, pred_b):
    """Wrong: compares the inputs as they come, which for two lists is one True or False."""
    a_right, b_right = np.asarray(pred_a == y_true), np.asarray(pred_b == y_true)
    b, c = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
    return b, c, min(1.0, 2 * sum(math.comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c))


def mcnemar_marking_mistakes(y_true, pred_a, pred_b):
    """Wrong: marks A's wrong predictions in the caller's array."""
    truth, a = np.asarray(y_true), np.asarray(pred_a)
    a[a != truth] = -1
    return define("mcnemar")(truth, a, pred_b)


def mcnemar_scipy_unguarded(y_true, pred_a, pred_b):
    """Wrong: SciPy's binomial test, which refuses b + c = 0."""
    from scipy.stats import binomtest

    truth = np.asarray(y_true)
    a_right, b_right = np.asarray(pred_a) == truth, np.asarray(pred_b) == truth
    b, c = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))
    return b, c, binomtest(b, b + c).pvalue


COUNT_B = "b, c = int(np.sum(a_right & ~b_right)), int(np.sum(~a_right & b_right))"


@pytest.mark.parametrize("wrong, match, mistake", [
    (define("mcnemar", [("return b, c, p_value", "return c, b, p_value")]), "other order", "tuning.mcnemar.swapped"),
    (define("mcnemar", [(COUNT_B, "b = int(np.sum(a_right & ~b_right))\n"
                                  "    c = int(np.sum(np.asarray(pred_a) != np.asarray(pred_b))) - b")]),
     "on 300 labels counts the examples where the two predictions differ but both are wrong",
     "tuning.mcnemar.every_disagreement"),
    (define("mcnemar", [("tail = sum(math.comb(b + c, i) for i in range(min(b, c) + 1)) / 2 ** (b + c)",
                         "n = int(np.sum(np.asarray(pred_a) != np.asarray(pred_b)))\n"
                         "    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n")]),
     "both are wrong", "tuning.mcnemar.every_disagreement"),
    (define("mcnemar", [("p_value = min(1.0, 2 * tail)", "p_value = min(1.0, tail)")]), "one-sided",
     "tuning.mcnemar.one_sided"),
    (mcnemar_chi_square(1.0), "chi-square approximation \\(with the continuity correction\\)",
     "tuning.mcnemar.chi_square_corrected"),
    (mcnemar_chi_square(0.0), "without the continuity correction", "tuning.mcnemar.chi_square"),
    (mcnemar_unpaired, "independent test sets", "tuning.mcnemar.unpaired"),
    (define("mcnemar", [("p_value = min(1.0, 2 * tail)", "p_value = 2 * tail")]), "with b = c is above 1",
     "tuning.mcnemar.uncapped"),
    (define("mcnemar", [("p_value = min(1.0, 2 * tail)", "p_value = min(1.0, 2 * tail) if b + c else float('nan')")]),
     "when no example is right for only one model is not 1", "tuning.mcnemar.no_disagreement"),
    (mcnemar_scipy_unguarded, "raised ValueError: .* b \\+ c = 0, and the exact test gives p = 1",
     "tuning.mcnemar.no_disagreement"),
    (mcnemar_lists_whole, "on 60 labels as Python lists looks like the lists were compared as wholes",
     "tuning.mcnemar.lists_compared_whole"),
    (define("mcnemar", [(COUNT_B, "b, c = int(np.sum(a_right)), int(np.sum(b_right))")]),
     "counts every example that a model gets right", "tuning.mcnemar.accuracies_counted"),
    (mcnemar_marking_mistakes, "changed its argument pred_a in place", "changed_argument"),
    (define("mcnemar", [("return b, c, p_value", "return p_value")]),
     r"should return a tuple \(b, c, p_value\)", "wrong_type"),
    (define("mcnemar", [("return b, c, p_value", "return b / len(truth), c / len(truth), p_value")]),
     "mcnemar's b is 0.0766667; expected a count of examples", "wrong_type"),
    (define("mcnemar", [("for i in range(min(b, c) + 1)", "for i in range(min(b, c))")]),
     "on 300 labels: p_value is .*; the exact two-sided binomial test's is", "unidentified"),
])
def test_mcnemar_rejects(wrong, match, mistake):
    rejected(NB, "test_mcnemar", match, mistake, mcnemar=wrong)


def mcnemar_with_scipy(y_true, pred_a, pred_b):
    from scipy.stats import binomtest

    truth = np.asarray(y_true)
    a_right, b_right = np.asarray(pred_a) == truth, np.asarray(pred_b) == truth
    b, c = np.sum(a_right & ~b_right), np.sum(b_right & ~a_right)
    return b, c, binomtest(int(min(b, c)), int(b + c)).pvalue if b + c else 1


def mcnemar_with_torch(y_true, pred_a, pred_b):
    import torch
    from scipy.stats import binom

    truth = torch.as_tensor(y_true)
    a_right, b_right = torch.as_tensor(pred_a) == truth, torch.as_tensor(pred_b) == truth
    b, c = (a_right & ~b_right).sum(), (b_right & ~a_right).sum()
    return b, c, torch.tensor(min(1.0, 2 * binom.cdf(int(min(b, c)), int(b + c), 0.5)))


def mcnemar_with_loops(y_true, pred_a, pred_b):
    pairs = [(int(a == t), int(p == t)) for t, a, p in zip(y_true, pred_a, pred_b)]
    b, c = pairs.count((1, 0)), pairs.count((0, 1))
    tail = sum(math.comb(b + c, i) * 0.5 ** (b + c) for i in range(min(b, c) + 1))
    return [b, c, min(1, 2 * tail)]


@pytest.mark.parametrize("valid", [mcnemar_with_scipy, mcnemar_with_torch, mcnemar_with_loops])
def test_mcnemar_accepts_scipy_torch_and_plain_python(valid):
    run_test_cell(NB, "test_mcnemar", mcnemar=valid)


# ---------------------------------------------------------------- cross_validate

def cv(edits=()):
    return define("cross_validate", edits, zero_one_risk=zero_one_risk)


def cv_training_on_one_fold(train_and_predict, X, y, k=5, seed=0):
    """Wrong: trains each fold on the next fold's examples only, not on all the others."""
    from sklearn.model_selection import StratifiedKFold

    X, y = np.asarray(X), np.asarray(y)
    held_parts = [held for _, held in StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)]
    fold_risks = []
    for fold, held in enumerate(held_parts):
        fit = held_parts[(fold + 1) % k]
        fold_risks.append(zero_one_risk(y[held], train_and_predict(X[fit], y[fit], X[held]))[0])
    return {"fold_risks": fold_risks, "mean": float(np.mean(fold_risks)),
            "standard_error": float(np.std(fold_risks, ddof=1) / math.sqrt(k))}


@pytest.mark.parametrize("wrong, match, mistake", [
    (cv([("from sklearn.model_selection import StratifiedKFold", "from sklearn.model_selection import KFold"),
         ("StratifiedKFold(n_splits=k", "KFold(n_splits=k")]), "not stratified", "tuning.cross_validate.not_stratified"),
    (cv([("shuffle=True, random_state=seed", "shuffle=False")]), "same folds", "tuning.cross_validate.seed_ignored"),
    (cv([("shuffle=True, random_state=seed", "shuffle=True")]), "different folds", "tuning.cross_validate.seed_unused"),
    (cv([("train_and_predict(X[fold_fit], y[fold_fit], X[fold_held])", "train_and_predict(X, y, X[fold_held])")]),
     "leaks", "tuning.cross_validate.validation_in_training"),
    (cv_training_on_one_fold, "trains and validates on 40 of the 100 examples", "tuning.cross_validate.dropped_examples"),
    (cv([("import StratifiedKFold", "import StratifiedShuffleSplit"),
         ("StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)",
          "StratifiedShuffleSplit(n_splits=k, test_size=1 / k, random_state=seed)")]),
     "validated more than once", "tuning.cross_validate.not_a_partition"),
    (cv([("np.std(fold_risks, ddof=1)", "np.std(fold_risks)")]), "divides by k, .* divides by k − 1",
     "tuning.cross_validate.ddof_zero"),
    (cv([("np.std(fold_risks, ddof=1) / math.sqrt(k)", "np.std(fold_risks, ddof=1)")]), "√k",
     "tuning.cross_validate.spread_not_error"),
    (cv([("n_splits=k,", "n_splits=5,")]), "k=4", "tuning.cross_validate.k_ignored"),
    (cv([("fold_risks.append(zero_one_risk(y[fold_held], predicted)[0])",
          "fold_risks.append(1 - zero_one_risk(y[fold_held], predicted)[0])")]),
     "fold 0's risk is 0.6, its share of correct predictions",
     "tuning.cross_validate.accuracies"),
    (cv([("mean = float(np.mean(fold_risks))", "mean = float(np.median(fold_risks))")]),
     "with k=4 and seed=2, mean is .*; the fold risks' mean is", "unidentified"),
    (cv([('return {"fold_risks": fold_risks, "mean": mean, ', 'return {"fold_risks": fold_risks, ')]),
     "dict lacks mean", "wrong_type"),
])
def test_cross_validate_rejects(wrong, match, mistake):
    rejected(NB, "test_cross_validate", match, mistake, cross_validate=wrong)


def test_cross_validate_accepts_sklearn_metrics_and_arrays():
    edits = [("fold_risks.append(zero_one_risk(y[fold_held], predicted)[0])",
              "from sklearn.metrics import zero_one_loss\n        fold_risks.append(np.float64(zero_one_loss(y[fold_held], predicted)))"),
             ('return {"fold_risks": fold_risks', 'return {"fold_risks": np.array(fold_risks)')]
    run_test_cell(NB, "test_cross_validate", cross_validate=cv(edits))


# ---------------------------------------------------------------- param_grid

def grid_first_key_fastest(space):
    names = list(space)[::-1]
    return [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]


def grid_one_dict(space):
    combination, grid = {}, []
    for values in itertools.product(*space.values()):
        combination.update(zip(space, values))
        grid.append(combination)
    return grid


def grid_with_sorted_values(space):
    """Wrong: sorts each key's values, so that lr runs from 0.001 up."""
    return [dict(zip(space, values)) for values in itertools.product(*(sorted(v) for v in space.values()))]


def grid_popping_keys(space):
    """Wrong: a recursion that takes its keys out of the caller's space."""
    if not space:
        return [{}]
    first, values = next(iter(space.items()))
    del space[first]
    return [{first: value, **combination} for value in values for combination in grid_popping_keys(space)]


@pytest.mark.parametrize("wrong, match, mistake", [
    (lambda space: [dict(zip(space, values)) for values in zip(*space.values())], "position by position",
     "tuning.param_grid.paired_up"),
    (grid_first_key_fastest, "first key fastest", "tuning.param_grid.first_key_fastest"),
    (lambda space: list(__import__("sklearn.model_selection").model_selection.ParameterGrid(space)), "alphabetical",
     "tuning.param_grid.alphabetical_order"),
    (grid_one_dict, "one and the same dict", "tuning.param_grid.one_shared_dict"),
    (lambda space: define("param_grid")(space) if space else [], "on an empty space returned no combination",
     "tuning.param_grid.empty_space"),
    (grid_with_sorted_values, "right combinations in another order", "tuning.param_grid.other_order"),
    (grid_popping_keys, "changed its argument space in place", "changed_argument"),
    (lambda space: list(itertools.product(*space.values())), "entry 0 is .*; expected one dict per combination",
     "wrong_type"),
    (lambda space: [{key: value for key, value in combination.items() if len(space[key]) > 1}
                    for combination in define("param_grid")(space)],
     "combination 0 is the empty dict; expected every key of the space", "unidentified"),
    (lambda space: define("param_grid")(space)[:-1],
     "on a space of 3 × 2 × 2 values gave 11 combinations; expected 12", "unidentified"),
])
def test_param_grid_rejects(wrong, match, mistake):
    rejected(NB, "test_param_grid", match, mistake, param_grid=wrong)


@pytest.mark.parametrize("returned, message, mistake", [
    (None, "param_grid returned None: is the result returned at the end of the function?", "returned_none"),
    ([], "param_grid on a space of 3 × 2 × 2 values returned an empty list, but every value of each key meets every "
         "value of the others in a combination of its own, one dict for each.", "tuning.param_grid.no_combinations"),
    ({}, "param_grid on a space of 3 × 2 × 2 values returned an empty dict; expected a list of dicts, one per "
         "combination.", "wrong_type"),
])
def test_param_grid_that_returns_nothing_gets_a_message(returned, message, mistake):
    """Issue 24: an empty grid crashed the check with an IndexError from inside course_lib."""
    got = rejected(NB, "test_param_grid", "", mistake, param_grid=lambda space: returned)
    assert got == message


def grid_by_recursion(space):
    if not space:
        return [{}]
    first, *rest = space
    tail = grid_by_recursion({name: space[name] for name in rest})
    return [{first: value, **combination} for value in space[first] for combination in tail]


def test_param_grid_accepts_recursion():
    run_test_cell(NB, "test_param_grid", param_grid=grid_by_recursion)


# ---------------------------------------------------------------- objective (synthetic images: no data needed)

def synthetic(n: int, seed: int):
    from course_lib.data import ImageArrays

    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 10
    # a colour that depends on the class, under heavy noise: learnable, but not in two epochs for sure
    images = rng.integers(0, 160, (n, 32, 32, 3)) + 8 * labels[:, None, None, None]
    return ImageArrays(images.astype(np.uint8), labels, [str(c) for c in range(10)])


OBJECTIVE_NAMES = ("objective", "train", "val", "test", "tune_train", "tune_val", "TUNE_EPOCHS")


def objective_namespace(edits=(), source=None) -> dict:
    """setup, train_model and the (edited) objective, or ``source``, in one namespace, as in the notebook."""
    namespace: dict = {}
    exec(cell_source(NB, "setup"), namespace)
    exec("from course_lib.data import ImageArrays\nfrom course_lib.models import FastCIFARNet\n"
         "from course_lib.trainer import DeviceLoader, evaluate, fit", namespace)
    train, val, test = synthetic(120, 1), synthetic(60, 2), synthetic(60, 3)
    namespace.update(train=train, val=val, test=test, pool=train, mean=np.full(3, 0.5), std=np.full(3, 0.25),
                     tune_train=train, tune_val=val, TUNE_EPOCHS=2)
    exec(cell_source(NB, "train_model").split("def learner")[0].replace("from course_lib.models import MLP1, SimpleCNN", ""),
         namespace)
    exec(source or solution_source("objective", edits), namespace)
    return namespace


def run_objective_test(edits=(), source=None) -> None:
    """The objective's test cell as the grader runs it, the objective living in the notebook's namespace."""
    namespace = objective_namespace(edits, source)
    run_test_cell(NB, "test_objective", **{name: namespace[name] for name in OBJECTIVE_NAMES})


def objective_rejected(match: str, mistake: str, edits=(), source=None) -> str:
    namespace = objective_namespace(edits, source)
    return rejected(NB, "test_objective", match, mistake, **{name: namespace[name] for name in OBJECTIVE_NAMES})


def test_objective_solution_passes():
    run_objective_test()


def test_objective_stub_fails():
    objective_rejected("objective is not implemented yet", "not_implemented",
                       source="def objective(trial):\n    raise NotImplementedError()\n")


UNSEEDED_OBJECTIVE = '''
results = iter(range(1, 100))


def objective(trial):
    """Wrong: its result changes from one call to the next, as an unseeded run's does (no training here)."""
    trial.suggest_float("lr", 1e-4, 3e-2, log=True)
    trial.suggest_float("weight_decay", 1e-5, 3e-1, log=True)
    trial.suggest_categorical("batch_size", [32, 64, 128, 256])
    trial.suggest_categorical("last_width", [64, 128])
    accuracy = next(results) / 100
    for epoch in range(TUNE_EPOCHS):
        trial.report(accuracy, epoch)
        if trial.should_prune():
            raise optuna.TrialPruned()
    return accuracy
'''

PRUNE_AT_THE_END = [("        if trial.should_prune():\n            raise optuna.TrialPruned()\n", ""),
                    ("    *_, final_accuracy", "    if trial.should_prune():\n        raise optuna.TrialPruned()\n"
                                             "    *_, final_accuracy")]


@pytest.mark.parametrize("edits, match, mistake", [
    ([('trial.suggest_float("lr", 1e-4, 3e-2, log=True)', 'trial.suggest_float("lr", 1e-4, 3e-2)')], "log scale",
     "tuning.objective.linear_scale"),
    ([('"last_width": trial.suggest_categorical("last_width", [64, 128]),', '"last_width": 64,')], "'last_width' is missing",
     "tuning.objective.missing_hyperparameter"),
    ([("[32, 64, 128, 256]", "[32, 64, 128]")], "choices", "tuning.objective.wrong_choices"),
    ([('trial.suggest_categorical("batch_size", [32, 64, 128, 256])', 'trial.suggest_int("batch_size", 32, 256)')],
     "'batch_size' is suggested from an integer range, not from a list of choices", "tuning.objective.wrong_kind"),
    ([('trial.suggest_float("lr", 1e-4, 3e-2, log=True)', 'trial.suggest_float("lr", 1e-5, 3e-2, log=True)')],
     "'lr' ranges from 1e-05 to 0.03", "tuning.objective.wrong_range"),
    ([('"last_width": trial.suggest_categorical("last_width", [64, 128]),',
       '"last_width": trial.suggest_categorical("last_width", [64, 128]),\n'
       '        "momentum": trial.suggest_float("momentum", 0.8, 0.99),')], "also suggested 'momentum'",
     "tuning.objective.extra_hyperparameter"),
    ([("trial.report(history.val_acc[epoch], epoch)", "pass")], "never reported", "tuning.objective.never_reported"),
    ([("trial.report(history.val_acc[epoch], epoch)", "trial.report(history.val_acc[epoch], epoch + 1)")],
     "step being the epoch", "tuning.objective.steps_not_epochs"),
    ([("trial.report(history.val_acc[epoch], epoch)", "trial.report(history.val_loss[epoch], epoch)")],
     "report the validation accuracy \\(0 to 1\\)", "tuning.objective.not_accuracy"),
    ([("        if trial.should_prune():\n            raise optuna.TrialPruned()\n", "")], "never asked whether to prune",
     "tuning.objective.never_asked_to_prune"),
    ([("raise optuna.TrialPruned()", "pass")], "went on", "tuning.objective.pruning_ignored"),
    (PRUNE_AT_THE_END, "pruned after 2 reports", "tuning.objective.pruned_late"),
    ([("val=tune_val", "val=test")], "used the test set", "tuning.objective.used_test_set"),
    ([("train_model(params, tune_train,", "train_model(params, train,")], "the objective read train: its trials train on "
     "tune_train", "tuning.objective.used_full_sets"),
    ([("val=tune_val", "val=val")], "the objective read val", "tuning.objective.used_full_sets"),
    ([("TUNE_EPOCHS, val=tune_val", "3, val=tune_val")], "reported at steps \\[0, 1, 2\\] for 2 epochs",
     "tuning.objective.steps_not_epochs"),
    ([("*_, final_accuracy = history.val_acc", "*_, final_accuracy = history.train_acc")],
     "return the final validation accuracy", "tuning.objective.last_report_not_returned"),
    ([("    return final_accuracy", "    final_accuracy")], "objective returned None", "returned_none"),
])
def test_objective_rejects(edits, match, mistake):
    objective_rejected(match, mistake, edits)


def test_objective_that_is_not_repeatable_is_named():
    objective_rejected("the same parameters gave 0.03 and 0.04", "tuning.objective.not_repeatable",
                       source=UNSEEDED_OBJECTIVE)


def test_objective_without_the_notebooks_settings_says_so():
    namespace = objective_namespace()
    names = {name: namespace[name] for name in OBJECTIVE_NAMES}
    del namespace["tune_train"]
    rejected(NB, "test_objective", "tune_train is not defined: run the notebook's cells from the top first",
             "tuning.objective.settings_undefined", **names)


def test_objective_accepts_another_order_and_a_numpy_result():
    edits = [('"lr": trial.suggest_float', '"last_width": trial.suggest_categorical("last_width", [64, 128]),\n'
                                           '        "lr": trial.suggest_float'),
             ('        "last_width": trial.suggest_categorical("last_width", [64, 128]),\n    }', "    }"),
             ("return final_accuracy", "return np.float64(final_accuracy)")]
    run_objective_test(edits)


# ---------------------------------------------------------------- test_accuracy (CIFAR-10's official test set)

@pytest.mark.notebook
def test_accuracy_comes_from_tuned_model_not_from_the_notebooks_number():
    import torch
    from course_lib.models import FastCIFARNet

    torch.manual_seed(0)
    rejected(NB, "test_accuracy", "official test accuracy of tuned_model .* is below",
             tuned_model=FastCIFARNet(widths=(16, 32, 64, 64)), test_accuracy=0.9)


# ---------------------------------------------------------------- the open task's tiers (CIFAR-10's official validation split)

class Lookup:
    """A stand-in for recheck_model: answers the normalised images it was given with the labels it was given, as
    one-hot logits; class 0 for any other image."""

    def __new__(cls, x, labels):
        import torch
        from torch import nn

        class Model(nn.Module):
            def __init__(self):
                super().__init__()
                self.scale = nn.Parameter(torch.ones(()))   # a parameter, so that the model has a device
                self.answers = {image.contiguous().numpy().tobytes(): int(label) for image, label in zip(x, labels)}

            def forward(self, images):
                found = [self.answers.get(image.detach().contiguous().cpu().numpy().tobytes(), 0) for image in images]
                return nn.functional.one_hot(torch.tensor(found), 10).float() * self.scale

        return Model()


@pytest.mark.notebook
@pytest.mark.parametrize("tier", [1, 2, 3])
def test_tiers_recompute_the_accuracy_from_recheck_model(tier):
    import torch
    from course_lib import fast_or_full
    from course_lib.data import cifar10_splits
    from course_lib.trainer import DeviceLoader

    splits = cifar10_splits("official")
    pixels = splits.train.sample(5_000).x.reshape(-1, 3) / 255
    val = splits.val.sample(fast_or_full(500, None))
    x = torch.cat([x for x, _ in DeviceLoader(val.x, val.y, 1000, mean=pixels.mean(axis=0), std=pixels.std(axis=0),
                                              device="cpu")])
    y = torch.as_tensor(val.y)
    tiers = fast_or_full((0.13, 0.16, 0.2), (0.55, 0.65, 0.69))
    run_test_cell(NB, f"test_my_search_tier_{tier}", recheck_model=Lookup(x, y), recheck_val_accuracy=1.0, TIERS=tiers)
    right = round(len(y) * (tiers[0] + tiers[1]) / 2)   # between tiers 1 and 2
    cheat = {"recheck_model": Lookup(x, torch.cat([y[:right], (y[right:] + 1) % 10])), "recheck_val_accuracy": 1.0,
             "TIERS": (0.0, 0.0, 0.0)}
    if tier == 1:
        run_test_cell(NB, "test_my_search_tier_1", **cheat)
    else:
        rejected(NB, f"test_my_search_tier_{tier}", rf"validation accuracy {100 * right / len(y):.1f}% is below tier {tier}",
                 **cheat)
