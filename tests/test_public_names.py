"""Which names of course_lib a student may use: each module's ``__all__``.

Every module of course_lib (checks included) declares ``__all__``, and every name in it exists;
outside course_lib.checks it lists exactly the public names the module defines (no leading
underscore). The solution and release notebooks import only those names, so what a notebook
shows a student is never a private helper that may change without notice.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import pkgutil
import re
from pathlib import Path

import pytest

import course_lib

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "solutions").glob("*/*.ipynb")) + sorted((ROOT / "notebooks").glob("*/*.ipynb"))
# ``python -m course_lib``: a program, not a module to import (importing it runs the command line).
MODULES = sorted(name for _, name, _ in pkgutil.walk_packages(course_lib.__path__, "course_lib.")
                 if not name.endswith(".__main__")) + ["course_lib"]


def declared(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} declares no __all__: list its public names"
    assert isinstance(names, (list, tuple)) and all(isinstance(name, str) for name in names), \
        f"{module_name}.__all__ must be a list of names, got {names!r}"
    return list(names)


def defined_public_names(path: Path) -> set[str]:
    """The names a module's own top-level code defines (functions, classes, assignments), without a
    leading underscore; imported names are not counted."""
    names = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names |= {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}
    return {name for name in names if not name.startswith("_")}


@pytest.mark.parametrize("module_name", MODULES)
def test_every_module_declares_all_and_each_name_exists(module_name):
    names = declared(module_name)
    module = importlib.import_module(module_name)
    assert [name for name in names if not hasattr(module, name)] == [], f"{module_name}.__all__ names what it lacks"
    assert [name for name in names if name.startswith("_")] == [], f"{module_name}.__all__ lists private names"
    assert len(set(names)) == len(names), f"{module_name}.__all__ lists a name twice"


@pytest.mark.parametrize("module_name", [name for name in MODULES if not name.startswith("course_lib.checks")])
def test_all_lists_exactly_the_public_names_a_module_defines(module_name):
    """Outside the checks: a public name is in __all__, or starts with an underscore. A package's
    __init__ may add names it re-exports from its modules."""
    module = importlib.import_module(module_name)
    names = set(declared(module_name))
    path = Path(module.__file__)
    missing = sorted(defined_public_names(path) - names)
    assert missing == [], (f"{module_name} defines public names that its __all__ lacks: {missing}; list them, "
                           f"or start their names with an underscore")
    if path.name != "__init__.py":
        imported = sorted(names - defined_public_names(path))
        assert imported == [], f"{module_name}.__all__ lists names it only imports: {imported}"


def code_cells(notebook: Path):
    """(index, source) of every code cell, IPython magics and shell lines left out."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            source = "".join(cell["source"])
            yield index, "\n".join("" if re.match(r"\s*[%!]", line) else line for line in source.splitlines())


def course_lib_imports(tree: ast.AST):
    """(module, name or None, line) for each ``from course_lib... import name`` and ``import course_lib...``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "course_lib":
            for alias in node.names:
                yield node.module, alias.name, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "course_lib":
                    yield alias.name, None, node.lineno


def test_the_notebooks_are_found():
    assert len([nb for nb in NOTEBOOKS if nb.parts[-3] == "solutions"]) >= 6
    assert len([nb for nb in NOTEBOOKS if nb.parts[-3] == "notebooks"]) >= 6


def non_public_imports(tree: ast.AST) -> tuple[int, list[str]]:
    """(how many course_lib imports ``tree`` holds, those of names not in their module's __all__)."""
    wrong, seen = [], 0
    for module_name, name, line in sorted(course_lib_imports(tree), key=lambda found: found[2]):
        seen += 1
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            wrong.append(f"line {line}: {module_name} is not a module of course_lib")
            continue
        if name is None or name == "*":
            continue
        if hasattr(module, "__path__") and importlib.util.find_spec(f"{module_name}.{name}"):   # a submodule: checks.cnn
            continue
        if name not in declared(module_name):
            wrong.append(f"line {line}: {name} is not in {module_name}.__all__")
    return seen, wrong


def test_the_rule_tells_private_names_from_public_ones():
    tree = ast.parse("from course_lib.trainer import fit, DeviceLoader as _Loader\n"
                     "from course_lib.checks import cnn as checks\n"
                     "import course_lib.data\n"
                     "def f():\n    from course_lib.trainer.training import _NonFiniteCheck\n"
                     "from course_lib.plots import _nothing_public\n"
                     "from course_lib.no_such_module import x\n")
    seen, wrong = non_public_imports(tree)
    assert seen == 7
    assert wrong == ["line 5: _NonFiniteCheck is not in course_lib.trainer.training.__all__",
                     "line 6: _nothing_public is not in course_lib.plots.__all__",
                     "line 7: course_lib.no_such_module is not a module of course_lib"]


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda path: f"{path.parts[-3]}/{path.name}")
def test_notebooks_import_only_public_names(notebook):
    wrong, seen = [], 0
    for index, source in code_cells(notebook):
        try:
            tree = ast.parse(source)
        except SyntaxError as err:
            pytest.fail(f"{notebook.name}, cell {index}: not Python ({err})")
        found, mistakes = non_public_imports(tree)
        seen += found
        wrong += [f"cell {index}, {mistake}" for mistake in mistakes]
    assert seen, f"{notebook.name} imports nothing from course_lib"
    assert wrong == [], f"{notebook.name} imports names that are not public:\n" + "\n".join(wrong)
