"""Which tagged cells grading may leave unrun: those whose names nothing that runs reads.

A solution tags ``skip-when-grading`` the cells whose results no graded cell needs (an experiment, its
plot, the summary). A submission may still read them: a student's answer can reuse a name such a cell
defines (``final_recipe = best_recipe``, a model class imported there). So a tagged cell is skipped only
when no cell that runs reads a name it defines:

- a name a cell reads at the top level (before the cell itself defines it) is served by the last cell
  above that defines it; if that cell is tagged, it runs;
- a name a function reads from the notebook's globals is read when the function is called, which may
  be at any running cell below its definition: the last cell above each of those that defines it runs;
- a cell that reaches names dynamically (``globals()``, ``eval``, ``exec``, ``vars``, ``get_ipython``,
  ``import *``) could read anything: then every cell runs;

repeated until no more cells are added (a tagged cell that runs reads names too).
"""
from __future__ import annotations

import ast
import builtins
import functools
from dataclasses import dataclass, field

DYNAMIC = {"globals", "locals", "vars", "eval", "exec", "get_ipython", "__import__"}
BUILTINS = set(dir(builtins))


@dataclass
class CellNames:
    defines: set = field(default_factory=set)     # names the cell binds at the notebook's top level
    reads_now: set = field(default_factory=set)   # names it reads while it runs, before binding them itself
    reads_later: set = field(default_factory=set)  # globals read by the functions it defines, when called
    dynamic: bool = False                          # reaches names through globals(), eval, exec ...


@functools.cache
def _transformer():
    from IPython.core.inputtransformer2 import TransformerManager

    return TransformerManager()


def python_source(source: str) -> str:
    """A cell's text as Python: IPython's magics and shell escapes turned into calls."""
    return _transformer().transform_cell(source)


def cell_names(source: str) -> CellNames:
    """The names a code cell binds and reads (see the module's docstring); a cell that does not parse
    binds and reads nothing (it fails before it runs)."""
    names = CellNames()
    try:
        tree = ast.parse(python_source(source))
    except SyntaxError:
        return names
    reader = _Reader(names)
    reader.statements(tree.body)
    names.defines = reader.bound
    return names


class _Reader:
    """Walks a cell in the order it runs: a name read before the cell binds it is read from the notebook."""

    def __init__(self, names: CellNames, bound: set | None = None):
        self.names = names
        self.bound = set() if bound is None else bound

    def statements(self, body) -> None:
        for statement in body:
            self.statement(statement)

    def statement(self, node) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            self.function(node)
            self.bound.add(node.name)
        elif isinstance(node, ast.ClassDef):
            self.expressions(node.bases + [k.value for k in node.keywords] + node.decorator_list)
            _Reader(self.names, set(self.bound)).statements(node.body)   # the class's own names stay its own
            self.bound.add(node.name)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            self.expressions([node.iter])
            self.bind(node.target)
            self.statements(node.body + node.orelse)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expressions([item.context_expr])
                if item.optional_vars is not None:
                    self.bind(item.optional_vars)
            self.statements(node.body)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            self.expressions([node.value] if node.value is not None else [])
            for target in getattr(node, "targets", [getattr(node, "target", None)]):
                self.bind(target)
        elif isinstance(node, ast.AugAssign):
            self.expressions([node.target, node.value])
            self.bind(node.target)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if alias.name == "*":
                    self.names.dynamic = True
                else:
                    self.bound.add((alias.asname or alias.name).split(".")[0])
        elif isinstance(node, ast.Try) or type(node).__name__ == "TryStar":
            self.statements(node.body)
            for handler in node.handlers:
                self.expressions([handler.type] if handler.type is not None else [])
                if handler.name:
                    self.bound.add(handler.name)
                self.statements(handler.body)
            self.statements(node.orelse + node.finalbody)
        elif isinstance(node, (ast.If, ast.While)):
            self.expressions([node.test])
            self.statements(node.body + node.orelse)
        else:   # expressions, return, del, assert, raise, global, match ...
            self.expressions(list(ast.iter_child_nodes(node)))

    def bind(self, target) -> None:
        """Bind the names of an assignment's target; an attribute or item target reads its object."""
        if isinstance(target, ast.Name):
            self.bound.add(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                self.bind(element)
        elif isinstance(target, ast.Starred):
            self.bind(target.value)
        elif target is not None:
            self.expressions([target])

    def expressions(self, nodes, local: frozenset = frozenset()) -> None:
        """Read the names in ``nodes``; ``local``: a comprehension's own variables."""
        todo = list(nodes)
        while todo:
            node = todo.pop()
            if isinstance(node, ast.Name):
                if isinstance(node.ctx, ast.Load):
                    if node.id in DYNAMIC:
                        self.names.dynamic = True
                    if node.id not in self.bound and node.id not in local and node.id not in BUILTINS:
                        self.names.reads_now.add(node.id)
                else:
                    self.bound.add(node.id)          # a walrus, a del
            elif isinstance(node, ast.Lambda):
                self.function(node)
            elif isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                inner = set(local)
                for generator in node.generators:
                    self.expressions([generator.iter], frozenset(inner))
                    inner |= {n.id for n in ast.walk(generator.target) if isinstance(n, ast.Name)}
                    self.expressions(generator.ifs, frozenset(inner))
                parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
                self.expressions(parts, frozenset(inner))
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.stmt)):
                self.statement(node)
            else:
                todo += list(ast.iter_child_nodes(node))

    def function(self, node) -> None:
        """A function's decorators and defaults are read now; the globals its body reads, when it is called."""
        arguments = node.args
        self.expressions(arguments.defaults + [d for d in arguments.kw_defaults if d is not None]
                         + getattr(node, "decorator_list", []))
        local = {a.arg for a in arguments.posonlyargs + arguments.args + arguments.kwonlyargs}
        local |= {a.arg for a in (arguments.vararg, arguments.kwarg) if a is not None}
        inner = CellNames()
        body = node.body if isinstance(node.body, list) else [ast.Expr(node.body)]
        reader = _Reader(inner, set(local))
        reader.statements(body)
        declared = {name for statement in body for n in ast.walk(statement) if isinstance(n, ast.Global)
                    for name in n.names}
        # a name bound anywhere in the body is the function's own (nested functions read it as a closure),
        # unless declared global
        self.names.reads_later |= (inner.reads_now | inner.reads_later) - (reader.bound - declared)
        self.names.dynamic |= inner.dynamic


def cells_to_run(sources: list[str], tagged: list[bool]) -> list[bool]:
    """For each code cell, in order, whether grading runs it: every untagged cell, and each tagged cell
    a running cell reads from (see the module's docstring)."""
    names = [cell_names(source) for source in sources]
    runs = [not flag for flag in tagged]

    def server(name: str, before: int) -> int | None:
        """The cell whose binding of ``name`` a read at cell ``before`` sees: the last one above it."""
        return max((j for j in range(before) if name in names[j].defines), default=None)

    changed = True
    while changed:
        if any(cell.dynamic for cell, run in zip(names, runs) if run):
            return [True] * len(sources)
        changed = False
        callable_reads: set = set()   # globals read by the functions defined so far, whenever they are called
        for index, cell in enumerate(names):
            if not runs[index]:
                continue
            callable_reads |= cell.reads_later
            needed = {server(name, index) for name in cell.reads_now}
            needed |= {server(name, index + 1) for name in callable_reads}
            for j in needed - {None}:
                if not runs[j]:
                    runs[j] = changed = True
    return runs
