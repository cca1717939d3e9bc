"""No answer reaches the students: no solution expression appears in ``course_lib`` (which the
students get installed, check messages and docstrings included) or in the release notebooks.

The solution expressions are the sub-expressions of the solution notebooks' code between
``### BEGIN SOLUTION`` and ``### END SOLUTION``: every expression node that contains a call, a
subscript or a binary operation, written out by ``ast.unparse`` and normalised (no whitespace,
one kind of quote), of at least ``MIN_LENGTH`` characters, except a variable's named entry alone
(``params["W1"]``) and the few fragments in ``GENERIC``. A text contains a fragment when its
normalised form does; for Python files the normalised source and the normalised
``ast.unparse`` of it are searched, so that neither spacing, parentheses nor quotes, nor string
literals split over lines, hide a fragment.
"""
from __future__ import annotations

import ast
import json
import re
import textwrap
from functools import lru_cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MIN_LENGTH = 12

# Fragments too generic to give an exercise away, spelled as they are normalised. Keep this list
# short: a fragment belongs here only when it is vocabulary that the course's own code and text
# must use for other purposes, never a step of an answer (longer fragments that contain these
# are still searched for).
GENERIC = {
    # single torch layers named by notebook 03's specification table; notebook 02's demos and the
    # models of course_lib.models use them too: the answer is their arrangement, not any one of them
    "nn.Flatten()", "nn.AdaptiveAvgPool2d(1)", "nn.MaxPool2d(2)", "nn.Sequential(*layers)",
    # the layers of notebook 07's basic-block table, one at a time (course_lib.models builds its networks from
    # the same torch layers); the exercise is their arrangement and the shortcut
    "nn.BatchNorm2d(c_out)", "nn.Conv2d(c_out,c_out,3,padding=1,bias=False)", "nn.Sequential(*blocks)",
    # the Python and torch interfaces an exercise is told to use: nn.Module and Optimizer subclasses
    # start with super().__init__, notebook 03 names model.modules() as the order of the layers,
    # notebook 04 section 6 explains param_groups, group['params'] and self.state[p]
    "super().__init__", "model.modules()", "self.param_groups", "self.state[p]",
    "torch.zeros_like(p)",
    # how strongly a decoupled decay shrinks w: the optimizer check builds it to recognise weight
    # decay applied after the momentum step (a mistake), and section 3 of notebook 04 says so in words
    "lr*weight_decay",
    # notebook 03's specification table lists the classifier's layers and says that forward runs
    # self.features, then self.classifier: this code transcribes the table, and the course's other
    # models (SimpleCNN, DeepCNN) are written the same way
    "self.features(x)", "self.classifier(self.features(x))", "nn.Linear(c_in,num_classes)",
    "nn.Sequential(nn.AdaptiveAvgPool2d(1),nn.Flatten(),nn.Linear(c_in,num_classes))",
    # the signature of notebook 01's one_hot, which mlp_backward's solution calls
    "one_hot(y,num_classes)",
    # Optuna's pruning protocol, which notebook 05 section 5 explains in words and code names
    "trial.should_prune()",
    # the PyTorch calls of a training step and of evaluation, which PyTorch's 60-minute blitz (notebook
    # 03's prerequisite) teaches and notebook 03 section 3 names one by one; course_lib.trainer's fit,
    # handed out right after the exercise, and the notebooks' own loops use them. The exercise is
    # putting them in order with the bookkeeping around them.
    "model.train()", "model.eval()", "torch.no_grad()", "optimizer.zero_grad()", "loss.backward()",
    "optimizer.step()",
    # torch's vocabulary for walking a model, which notebook 03 teaches and course_lib's models,
    # trainer and checks use throughout; notebook 06's answers are what is done with the layers found
    "model.parameters()", "head.parameters()", "isinstance(m,nn.Conv2d)", "isinstance(m,nn.Linear)",
    # the call of a loss function as course_lib.trainer documents it, and train_one_epoch's docstring states it
    "loss_fn(logits,y)",
}

# Open tasks have no single answer to give away: their model answer is one design among many (notebook 03's
# is the FastCIFARNet recipe its section 7 trains in plain sight), and its tiers are graded on what it reaches.
OPEN_TASKS = {"my_model", "make_my_optimizer", "my_search", "my_photo_recipe", "my_resnet"}

_SOLUTION = re.compile(r"^[ \t]*### BEGIN SOLUTION[^\n]*\n(.*?)^[ \t]*### END SOLUTION", re.M | re.S)


def normalise(text: str) -> str:
    """``text`` without whitespace and with every double quote made a single quote."""
    return re.sub(r"\s+", "", text).replace('"', "'")


def _cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _cell_name(cell: dict, index: int) -> str:
    grade_id = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
    return f"cell {index} ({grade_id})" if grade_id else f"cell {index}"


def _parse_block(block: str) -> ast.AST:
    """A solution block as a module; a block that only parses inside a function is wrapped in one."""
    text = textwrap.dedent(block)
    try:
        return ast.parse(text)
    except SyntaxError:
        return ast.parse("async def _solution_():\n" + textwrap.indent(text, "    "))


def _names_an_entry(node: ast.AST) -> bool:
    """``params["W1"]``, ``group["lr"]``: one named entry of a variable, which text and messages name too."""
    return (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name)
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str))


def _fragments_of(tree: ast.AST) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.expr) or isinstance(node, (ast.Name, ast.Constant)) or _names_an_entry(node):
            continue
        if not any(isinstance(inner, (ast.Call, ast.Subscript, ast.BinOp)) for inner in ast.walk(node)):
            continue
        text = normalise(ast.unparse(node))
        if len(text) >= MIN_LENGTH and text not in GENERIC:
            found.add(text)
    return found


@lru_cache(maxsize=None)
def solution_fragments() -> dict[str, str]:
    """Normalised fragment → where it comes from ("01_numpy_mlp cell 10 (relu)")."""
    fragments: dict[str, str] = {}
    for path in sorted((ROOT / "solutions").glob("*/*.ipynb")):
        for index, cell in enumerate(_cells(path)):
            if cell.get("cell_type") != "code" or cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") in OPEN_TASKS:
                continue
            for block in _SOLUTION.findall(_source(cell)):
                for fragment in _fragments_of(_parse_block(block)):
                    fragments.setdefault(fragment, f"{path.stem} {_cell_name(cell, index)}")
    return fragments


def _python_haystacks(text: str) -> list[str]:
    """The normalised source (comments included) and its normalised ``ast.unparse`` (code canonical)."""
    haystacks = [normalise(text)]
    try:
        haystacks.append(normalise(ast.unparse(ast.parse(text))))
    except SyntaxError:
        pass
    return haystacks


def find_fragments(texts: dict[str, list[str]]) -> list[str]:
    """``"where: fragment (from its solution cell)"`` for every fragment found in ``texts``."""
    fragments = solution_fragments()
    hits = []
    for where, haystacks in texts.items():
        for fragment, origin in sorted(fragments.items()):
            if any(fragment in haystack for haystack in haystacks):
                hits.append(f"{where}: {fragment}   (solution of {origin})")
    return hits


def _report(hits: list[str], what: str) -> str:
    return f"{len(hits)} solution fragment(s) in {what}:\n" + "\n".join(hits)


def test_the_fragments_are_found():
    fragments = solution_fragments()
    assert len(fragments) > 50, "the solution blocks could not be read"
    for expected in ("np.maximum(z,0)", "x@weight.T+bias", "(n-kernel_size+2*padding)//stride+1"):
        assert expected in fragments, f"{expected} should be a solution fragment"


def test_the_search_sees_through_spacing_quotes_and_split_strings():
    source = ('raise AssertionError("relu returned the wrong shape. Use np.maximum(z, "\n'
              '                     "0), which compares element by element.")\n')
    assert find_fragments({"example.py": _python_haystacks(source)})
    assert find_fragments({"example.py": _python_haystacks("expected = (  np.maximum(z,0))\n")})
    assert not find_fragments({"example.py": _python_haystacks("expected = np.maximum(z, 1)\n")})


@pytest.mark.parametrize("path", sorted((ROOT / "course_lib").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(ROOT / "course_lib")))
def test_course_lib_holds_no_answer(path):
    """course_lib is installed for the students: its code, messages, docstrings and comments."""
    where = str(path.relative_to(ROOT))
    hits = find_fragments({where: _python_haystacks(path.read_text(encoding="utf-8"))})
    assert not hits, _report(hits, f"{where} (students get course_lib installed)")


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*/*.ipynb")), ids=lambda p: p.stem)
def test_release_notebook_holds_no_answer(path):
    texts = {}
    for index, cell in enumerate(_cells(path)):
        source = _source(cell)
        haystacks = _python_haystacks(source) if cell.get("cell_type") == "code" else [normalise(source)]
        texts[f"{path.relative_to(ROOT)} {_cell_name(cell, index)}"] = haystacks
    hits = find_fragments(texts)
    assert not hits, _report(hits, f"the release notebook {path.relative_to(ROOT)}")
