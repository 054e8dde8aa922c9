"""The package's layout rules, checked on the source: import graph and pure modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import txsio

ROOT = Path(txsio.__file__).resolve().parent


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    """Every module of the txsio package by dotted name."""
    return {_module_name(path): path for path in sorted(ROOT.rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements that run at runtime: at any depth (functions included), except
    under ``if TYPE_CHECKING:``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _runtime_imports(ast.Module(body=node.orelse, type_ignores=[]))
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        yield from _runtime_imports(node)


def _imported_names(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules ``name`` imports at runtime: txsio modules by name, others by top level.

    A parent package that Python initialises on the way is not counted: only the module named.
    """
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
            continue
        base = package
        for _ in range(node.level - 1):
            base = base.rpartition(".")[0]
        target = node.module or ""
        if node.level:
            target = f"{base}.{target}" if target else base
        for alias in node.names:
            submodule = f"{target}.{alias.name}"
            found.add(submodule if submodule in modules else target)
    return {n if n.startswith("txsio") else n.split(".")[0] for n in found}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {n for n in _imported_names(name, path, modules) if n in modules}
            for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module, or with a self-import
    (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in graph[node]:
                        found.append(sorted(component))
    return found


class EngineIOLayoutTests(SynchronousTestCase):
    """The Engine.IO modules: no import cycle, and the value-type modules stay pure."""

    def test_cycle_detection(self) -> None:
        """The cycle finder reports a cycle through several modules, and no acyclic one."""
        self.assertEqual(_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}),
                         [["a", "b", "c"]])
        self.assertEqual(_cycles({"a": {"b"}, "b": set()}), [])

    def test_type_checking_imports_ignored(self) -> None:
        """Imports under ``if TYPE_CHECKING:`` are not runtime imports; others at any depth
        are."""
        tree = ast.parse(
            "import a\nif TYPE_CHECKING:\n    import b\nelse:\n    import c\n"
            "def f():\n    import d\n")
        names = {alias.name for node in _runtime_imports(tree) for alias in node.names}
        self.assertEqual(names, {"a", "c", "d"})

    def test_no_runtime_import_cycle(self) -> None:
        """No txsio.engineio module imports itself back at runtime, however indirectly."""
        cycles = [c for c in _cycles(_graph())
                  if any(m.startswith("txsio.engineio") for m in c)]
        self.assertEqual(cycles, [])

    def test_pure_modules(self) -> None:
        """The codec and value-type modules import nothing from Twisted, Autobahn or treq at
        runtime, so the transports, the session and the server can all import them."""
        modules = _modules()
        pure = ["txsio.engineio.errors", "txsio.engineio.handshake", "txsio.engineio.packet",
                "txsio.engineio.wire"]
        for name in pure:
            imported = _imported_names(name, modules[name], modules)
            self.assertEqual(imported & {"twisted", "autobahn", "treq", "txaio"}, set(), name)
            self.assertLessEqual({n for n in imported if n.startswith("txsio")},
                                 set(pure), name)
