"""What a student's function calls, read from the notebook's source in the grader's process.

A NumPy-only exercise (notebooks 01 and 02) must not reach torch, SciPy, scikit-learn or course_lib;
notebook 04's optimizers must not reach ``torch.optim`` (but for the ``Optimizer`` base class),
which they rebuild.
The grader cannot watch the kernel do it (the kernel could hide it), so it reads the source: the
function's definition and, through the names it uses, every function and class of the notebook it
calls, and every import that binds a name it uses. Dynamic access that could hide a call
(``getattr`` with a computed name, ``exec``, ``eval``, ``__import__``, ``importlib``, ``globals()``)
cannot be decided from the source: it goes to the instructor's review list, not to a zero.
"""
from __future__ import annotations

import ast
import re

__all__ = ["FORBIDDEN_IN_NUMPY_EXERCISES", "DYNAMIC", "parse_cells", "notebook_sources", "forbidden_uses"]

FORBIDDEN_IN_NUMPY_EXERCISES = ("torch", "scipy", "sklearn", "course_lib", "tensorflow", "jax", "keras",
                                "cupy", "numba", "autograd")
DYNAMIC = {"exec", "eval", "compile", "__import__", "globals", "vars", "locals", "importlib", "__builtins__",
           "builtins", "modules", "get_ipython"}


def parse_cells(sources) -> list:
    """Each cell's module AST (IPython magics and shell lines blanked out; cells that do not parse skipped)."""
    trees = []
    for source in sources:
        text = re.sub(r"(?m)^\s*[%!].*$", "", source)
        try:
            trees.append(ast.parse(text))
        except SyntaxError:
            continue
    return trees


def notebook_sources(cells) -> list[str]:
    """What the grader reads of a notebook: the imports of its locked cells (the names they bind are the
    notebook's too), then its other code cells. ``cells``: (source, locked) pairs."""
    cells, imports = list(cells), []
    for tree in parse_cells(source for source, locked in cells if locked):
        imports += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return ["\n".join(imports), *(source for source, locked in cells if not locked)]


def _definitions(trees) -> tuple[dict, dict]:
    """Top-level definitions (name -> node to read) and import aliases (name -> module path)."""
    defs, imports = {}, {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    imports[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module:
                for alias in node.names:
                    imports[alias.asname or alias.name] = f"{node.module}.{alias.name}"
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[node.name] = node
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        defs[target.id] = node.value
    for name in defs:  # a name the notebook defines itself is no longer the one it imported
        imports.pop(name, None)
    return defs, imports


def _chain(node) -> tuple[ast.Name | None, list]:
    """``a.b.c`` as (the Name ``a``, ["b", "c"])."""
    attrs = []
    while isinstance(node, ast.Attribute):
        attrs.insert(0, node.attr)
        node = node.value
    return (node if isinstance(node, ast.Name) else None), attrs


def _local_names(node) -> set:
    """Names a function binds itself (its parameters and assignments), which hide the notebook's."""
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
        return set()
    names = {a.arg for a in ast.walk(node.args) if isinstance(a, ast.arg)}
    names |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)}
    return names


def _matches(path: str | None, forbidden) -> bool:
    """``path`` (``torch.optim.SGD``) is, or lies inside, one of the dotted names ``forbidden``."""
    return bool(path) and any(path == f or path.startswith(f + ".") for f in forbidden)


def forbidden_uses(sources, name: str, forbidden=FORBIDDEN_IN_NUMPY_EXERCISES, allowed=()) -> tuple[list, list]:
    """(uses of ``forbidden`` (packages or dotted names: ``torch.optim``) but not of ``allowed``
    (``torch.optim.Optimizer``) reached from ``name`` (a function or class, bases included), dynamic
    access to review), each a short line such as ``called torch.as_tensor (in helper)``, in the
    order the code reads."""
    defs, imports = _definitions(parse_cells(sources))
    banned = lambda path: _matches(path, forbidden) and not _matches(path, allowed)  # noqa: E731
    found, review, seen, queue = [], [], set(), [(name, "")]
    while queue:
        current, where = queue.pop(0)
        if current in seen or current not in defs:
            continue
        seen.add(current)
        if isinstance(defs[current], ast.Name):  # ``softmax = my_softmax``: the same function
            queue.append((defs[current].id, where))
            continue
        where = f" (in {current})" if where is None else where
        local = _local_names(defs[current])
        uses, chained = [], set()
        nodes = sorted((n for n in ast.walk(defs[current]) if hasattr(n, "lineno")),
                       key=lambda n: (n.lineno, n.col_offset))
        for node in nodes:
            if isinstance(node, ast.Attribute) and id(node) not in chained:
                root, attrs = _chain(node)
                sub = node.value
                while isinstance(sub, ast.Attribute):
                    chained.add(id(sub))
                    sub = sub.value
                if root is not None and root.id not in local:
                    chained.add(id(root))
                    module = imports.get(root.id, root.id if root.id not in defs else None)
                    if module and banned(".".join([module, *attrs])):
                        uses.append(f"called {'.'.join([module, *attrs])}{where}")
                if node.attr in DYNAMIC:
                    review.append(f"{current} uses .{node.attr}{where}: a call it could hide cannot be read")
            elif isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                for alias in node.names:
                    imports.setdefault(alias.asname or alias.name.split(".")[0],
                                       alias.name if isinstance(node, ast.Import) else f"{node.module}.{alias.name}")
                uses += [f"imported {m}{where}" for m in modules if banned(m) and
                         not isinstance(node, ast.ImportFrom)]
            elif isinstance(node, ast.Name) and id(node) not in chained and node.id not in local:
                module = imports.get(node.id)
                if banned(module):
                    uses.append(f"called {module}{where}")
                elif node.id in DYNAMIC:
                    review.append(f"{current} uses {node.id}{where}: a call it could hide cannot be read")
                elif node.id in defs:
                    queue.append((node.id, None))
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "setattr")
                  and len(node.args) > 1 and not isinstance(node.args[1], ast.Constant)):
                review.append(f"{current} calls {node.func.id} with a computed name{where}")
        found += [use for use in uses if not use.startswith("imported")] + [u for u in uses if u.startswith("imported")]
    return list(dict.fromkeys(found)), list(dict.fromkeys(review))
