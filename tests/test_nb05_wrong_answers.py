"""Notebook 05's test cells must reject plausible wrong splits, risks, cross-validations, grids and
Optuna objectives with a message that names the mistake, and accept valid alternatives.

Each wrong answer is the solution with one mistake written in (a textual edit of the solution cell,
checked to apply), so the tests follow the notebook when it changes.
"""
from __future__ import annotations

import linecache
import math

import numpy as np
import pytest

from notebook_cells import cell_source, run_test_cell

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


def rejects(grade_id: str, match: str, **objects) -> None:
    with pytest.raises(AssertionError, match=match):
        run_test_cell(NB, grade_id, **objects)


zero_one_risk = define("zero_one_risk")


def test_solutions_pass():
    run_test_cell(NB, "test_stratified_split", stratified_split=define("stratified_split"))
    run_test_cell(NB, "test_zero_one_risk", zero_one_risk=zero_one_risk)
    run_test_cell(NB, "test_cross_validate", cross_validate=define("cross_validate", zero_one_risk=zero_one_risk))
    run_test_cell(NB, "test_param_grid", param_grid=define("param_grid"))


def test_stubs_fail():
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for name in ("stratified_split", "zero_one_risk", "cross_validate", "param_grid"):
        rejects(f"test_{name}", "not implemented yet", **{name: stub})


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


@pytest.mark.parametrize("wrong, match", [
    (split_not_stratified, "not stratified"),
    (define("stratified_split", [("stratify=y, random_state", "random_state")]), "not stratified"),
    (define("stratified_split", [("train_test_split(rest, test_size", "train_test_split(everything, test_size"),
                                 ("stratify=y[rest]", "stratify=y")]), "share .* indices"),
    (define("stratified_split", [("test_size=test_share / (val_share + test_share)", "test_size=test_share")]),
     "fractions"),
    (define("stratified_split", [("random_state=seed)\n    val_idx", "random_state=None)\n    val_idx")]),
     "different splits"),
    (define("stratified_split", [("random_state=seed)\n    ### END", "random_state=0)\n    ### END"),
                                 ("random_state=seed)\n    val_idx", "random_state=0)\n    val_idx")]),
     "same split"),
    (split_as_masks, "boolean mask"),
    (split_with_course_lib, "called course_lib.data.split"),
    (split_with_the_notebooks_split(), "called course_lib.data.split"),
])
def test_stratified_split_rejects(wrong, match):
    rejects("test_stratified_split", match, stratified_split=wrong)


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

@pytest.mark.parametrize("edits, match", [
    ([("mistakes = np.asarray(y_true) != np.asarray(y_pred)", "mistakes = np.asarray(y_true) == np.asarray(y_pred)")],
     "accuracy"),
    ([("standard_error = math.sqrt(risk * (1 - risk) / len(mistakes))", "standard_error = risk * (1 - risk) / len(mistakes)")],
     "variance"),
    ([("/ len(mistakes))", "/ (len(mistakes) - 1))")], "n − 1"),
    ([("standard_error = math.sqrt(risk * (1 - risk) / len(mistakes))", "standard_error = math.sqrt(risk * (1 - risk))")],
     "spread of single"),
    ([("return risk, standard_error", "return risk")], "without its error"),
])
def test_zero_one_risk_rejects(edits, match):
    rejects("test_zero_one_risk", match, zero_one_risk=define("zero_one_risk", edits))


def risk_as_numpy_and_tensor(y_true, y_pred):
    import torch

    losses = (np.asarray(y_true) != np.asarray(y_pred)).astype(float)
    return np.mean(losses), torch.tensor(np.std(losses) / np.sqrt(len(losses)))


def test_zero_one_risk_accepts_numpy_scalars_and_tensors():
    run_test_cell(NB, "test_zero_one_risk", zero_one_risk=risk_as_numpy_and_tensor)


# ---------------------------------------------------------------- cross_validate

def cv(edits=()):
    return define("cross_validate", edits, zero_one_risk=zero_one_risk)


@pytest.mark.parametrize("edits, match", [
    ([("from sklearn.model_selection import StratifiedKFold", "from sklearn.model_selection import KFold"),
      ("StratifiedKFold(n_splits=k", "KFold(n_splits=k")], "not stratified"),
    ([("shuffle=True, random_state=seed", "shuffle=False")], "same folds|consecutive block"),
    ([("train_and_predict(X[fold_fit], y[fold_fit], X[fold_held])", "train_and_predict(X, y, X[fold_held])")], "leaks"),
    ([("np.std(fold_risks, ddof=1)", "np.std(fold_risks)")], "ddof"),
    ([("np.std(fold_risks, ddof=1) / math.sqrt(k)", "np.std(fold_risks, ddof=1)")], "√k"),
    ([("n_splits=k,", "n_splits=5,")], "k=4"),
    ([("fold_risks.append(zero_one_risk(y[fold_held], predicted)[0])",
       "fold_risks.append(1 - zero_one_risk(y[fold_held], predicted)[0])")], "fold risks"),
])
def test_cross_validate_rejects(edits, match):
    rejects("test_cross_validate", match, cross_validate=cv(edits))


def test_cross_validate_accepts_sklearn_metrics_and_arrays():
    edits = [("fold_risks.append(zero_one_risk(y[fold_held], predicted)[0])",
              "from sklearn.metrics import zero_one_loss\n        fold_risks.append(np.float64(zero_one_loss(y[fold_held], predicted)))"),
             ('return {"fold_risks": fold_risks', 'return {"fold_risks": np.array(fold_risks)')]
    run_test_cell(NB, "test_cross_validate", cross_validate=cv(edits))


# ---------------------------------------------------------------- param_grid

def grid_first_key_fastest(space):
    names = list(space)[::-1]
    import itertools

    return [dict(zip(names, values)) for values in itertools.product(*(space[n] for n in names))]


def grid_one_dict(space):
    import itertools

    combination, grid = {}, []
    for values in itertools.product(*space.values()):
        combination.update(zip(space, values))
        grid.append(combination)
    return grid


@pytest.mark.parametrize("wrong, match", [
    (lambda space: [dict(zip(space, values)) for values in zip(*space.values())], "not paired up"),
    (grid_first_key_fastest, "first key varies fastest"),
    (lambda space: list(__import__("sklearn.model_selection").model_selection.ParameterGrid(space)), "alphabetical"),
    (grid_one_dict, "appear twice|one and the same dict"),
    (lambda space: define("param_grid")(space) if space else [], "empty space"),
])
def test_param_grid_rejects(wrong, match):
    rejects("test_param_grid", match, param_grid=wrong)


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
    run_test_cell(NB, "test_objective", **{name: namespace[name] for name in
                                            ("objective", "train", "val", "test", "tune_train", "tune_val", "TUNE_EPOCHS")})


def test_objective_solution_passes():
    run_objective_test()


def test_objective_stub_fails():
    with pytest.raises(AssertionError, match="objective is not implemented yet"):
        run_objective_test(source="def objective(trial):\n    raise NotImplementedError()\n")


@pytest.mark.parametrize("edits, match", [
    ([('trial.suggest_float("lr", 1e-4, 3e-2, log=True)', 'trial.suggest_float("lr", 1e-4, 3e-2)')], "log scale"),
    ([('"last_width": trial.suggest_categorical("last_width", [64, 128]),', '"last_width": 64,')], "'last_width' is missing"),
    ([("[32, 64, 128, 256]", "[32, 64, 128]")], "choices"),
    ([("trial.report(history.val_acc[epoch], epoch)", "pass")], "never reported"),
    ([("trial.report(history.val_acc[epoch], epoch)", "trial.report(history.val_acc[epoch], epoch + 1)")],
     "step being the epoch"),
    ([("        if trial.should_prune():\n            raise optuna.TrialPruned()\n", "")], "never asked whether to prune"),
    ([("raise optuna.TrialPruned()", "pass")], "went on"),
    ([("val=tune_val", "val=test")], "used the test set"),
    ([("*_, final_accuracy = history.val_acc", "*_, final_accuracy = history.train_acc")], "return the final validation accuracy"),
])
def test_objective_rejects(edits, match):
    with pytest.raises(AssertionError, match=match):
        run_objective_test(edits)


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
    rejects("test_accuracy", "official test accuracy of tuned_model .* is below",
            tuned_model=FastCIFARNet(widths=(16, 32, 64, 64)), test_accuracy=0.9)
