"""The package's shape: no import cycle, pure codecs and value types, lazy package
``__init__``s, modules of a readable size.

The import graph is read from the source (``ast``); the purity of what an import really loads
is checked in a fresh interpreter (``sys.executable -c``), since this one has imported
everything already.
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

import txsio
import txsio.engineio

REPO = Path(__file__).resolve().parent.parent

#: The top-level packages a pure module must not load, directly or through its parents.
IMPURE = ("twisted", "autobahn", "treq", "zope")


def modules_loaded_by(statement: str) -> list[str]:
    """The names in ``sys.modules`` after *statement* ran in a fresh interpreter."""
    code = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    # From the checkout's root, so that its txsio is the one imported.
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=60, check=True)
    return result.stdout.split()


def impure(modules: list[str]) -> list[str]:
    """The *modules* of Twisted, Autobahn, treq or zope."""
    return [name for name in modules if name.split(".")[0] in IMPURE]


class CodecPurityTests(SynchronousTestCase):
    """The wire codecs are sans-I/O: importing one loads nothing of Twisted and its kin."""

    def assert_pure(self, module: str) -> None:
        """Importing *module* in a fresh interpreter loads no impure module."""
        loaded = modules_loaded_by(f"import {module}")
        self.assertIn(module, loaded)
        offending = impure(loaded)
        if offending:
            self.fail(f"import {module} loads {len(offending)} impure module(s): "
                      + ", ".join(offending))

    def test_socketio_codec(self) -> None:
        """``import txsio.protocol`` loads no twisted, autobahn, treq or zope module."""
        self.assert_pure("txsio.protocol")

    def test_engineio_codec(self) -> None:
        """``import txsio.engineio.packet`` loads no twisted, autobahn, treq or zope module."""
        self.assert_pure("txsio.engineio.packet")

    def test_exceptions(self) -> None:
        """``import txsio.exceptions`` (the public errors) loads none either."""
        self.assert_pure("txsio.exceptions")


def type_checking_imports(init: Path) -> dict[str, str]:
    """Name -> module of the ``from .x import Name`` lines under ``if TYPE_CHECKING:`` in
    the package ``__init__`` *init* (modules made absolute)."""
    package = ".".join(init.parent.relative_to(REPO).parts)
    found: dict[str, str] = {}
    for node in ast.parse(init.read_text()).body:
        if not (isinstance(node, ast.If) and isinstance(node.test, ast.Name)
                and node.test.id == "TYPE_CHECKING"):
            continue
        for statement in node.body:
            if isinstance(statement, ast.ImportFrom) and statement.level == 1:
                module = f"{package}.{statement.module}"
                for alias in statement.names:
                    found[alias.asname or alias.name] = module
    return found


class LazyPackageTests(SynchronousTestCase):
    """``txsio`` and ``txsio.engineio`` import their public names on first use (PEP 562)."""

    packages = (txsio, txsio.engineio)

    def test_exports_table(self) -> None:
        """Each package's export table covers ``__all__`` (beside ``__version__``), and names
        the module its ``TYPE_CHECKING`` import names, so that mypy sees what runs."""
        for package in self.packages:
            table: dict[str, str] = package._EXPORTS
            self.assertEqual(set(table), set(package.__all__) - {"__version__"},
                             package.__name__)
            init = Path(package.__file__ or "")
            self.assertEqual(type_checking_imports(init), table, package.__name__)

    def test_names_are_their_modules_objects(self) -> None:
        """Each exported name is the object of that name in the module the table names."""
        for package in self.packages:
            table: dict[str, str] = package._EXPORTS
            for name, module in table.items():
                self.assertIs(getattr(package, name),
                              getattr(importlib.import_module(module), name), name)

    def test_engineio_exports(self) -> None:
        """``txsio.engineio`` exports the names it always has, each a class of its own
        package."""
        self.assertEqual(sorted(txsio.engineio.__all__), [
            "CloseReason", "EngineIOResource", "EngineOptions", "EngineRequest",
            "EngineRequestError", "EngineServer", "EngineSession", "EngineSite", "ErrorCode",
            "HandshakeRequest", "SessionState",
        ])
        for name in txsio.engineio.__all__:
            self.assertTrue(
                getattr(txsio.engineio, name).__module__.startswith("txsio.engineio."), name)

    def test_dir_and_unknown_names(self) -> None:
        """``dir()`` lists every exported name before its first use; an unknown name is an
        ``AttributeError`` naming the package."""
        for package in self.packages:
            self.assertLessEqual(set(package.__all__), set(dir(package)), package.__name__)
            with self.assertRaises(AttributeError) as caught:
                package.NoSuchName  # noqa: B018
            self.assertIn(package.__name__, str(caught.exception))
            self.assertIn("NoSuchName", str(caught.exception))

    def test_submodules_after_importing_the_package(self) -> None:
        """After ``import txsio`` alone, its submodules are attributes, as they were when the
        package imported them all: ``txsio.protocol``, ``txsio.engineio.session``."""
        code = ("import txsio; print(txsio.protocol.__name__, txsio.engineio.session.__name__,"
                " txsio.tap.Options.__name__)")
        result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                                text=True, timeout=60)
        self.assertEqual(result.stdout.split(),
                         ["txsio.protocol", "txsio.engineio.session", "Options"], result.stderr)

    def test_star_import(self) -> None:
        """``from txsio import *`` binds every name of ``__all__``."""
        namespace: dict[str, object] = {}
        exec("from txsio import *", namespace)
        self.assertLessEqual(set(txsio.__all__), set(namespace))


#: The longest a module under ``txsio/`` may be.
MAX_LINES = 900


class ModuleSizeTests(SynchronousTestCase):
    """Every module stays readable in one sitting."""

    def test_no_module_over_the_limit(self) -> None:
        """No ``.py`` file under ``txsio/`` is longer than :data:`MAX_LINES` lines."""
        too_long = []
        for path in sorted((REPO / "txsio").rglob("*.py")):
            with path.open(encoding="utf-8") as f:
                count = sum(1 for _ in f)
            if count > MAX_LINES:
                too_long.append(f"{path.relative_to(REPO)}: {count} lines")
        if too_long:
            self.fail(f"over {MAX_LINES} lines: {'; '.join(too_long)}")


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


class ImportGraphTests(SynchronousTestCase):
    """No import cycle anywhere in txsio, and the value-type modules stay pure."""

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
        """No txsio module imports itself back at runtime, however indirectly (imports inside
        functions count: they hide a cycle, they do not remove it)."""
        self.assertEqual(_cycles(_graph()), [])

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
