"""Every Python example of the documentation runs here, one test per example, so that an
example that stops working fails CI, naming its file and line.

Where the examples are (found when this module is imported):

- ``docs/*.rst``: the ``.. code-block:: python`` blocks, and the ``::`` literal blocks that are
  Python: those that compile, and those that look like Python (an import, a ``def``, a
  decorator, an ``await``), which then must compile.  Anything else goes in a
  ``.. code-block:: text`` (or ``sh``, ``ini``...) block;
- ``README.md``: its ```` ```python ```` fences;
- the docstrings (of the module, its classes and its functions) of txsio's public modules
  (no part of the path starts with ``_``, ``__init__.py`` aside): their Python ``::`` blocks.

Each example is a test method ``test_line_<N>`` of a class named after its file
(``DocsServerRstExamples``, ``TxsioTestingPyExamples``...), ``N`` being the line of its first
line of code.  Its code is compiled under that file name and line numbers, so a traceback
shows the line of the doc.

How an example runs:

- An example whose first line is a comment naming a file (``# chat.py``, ``# myapp/chat.py``)
  is that module: it is imported (its checks see its names), and the examples after it in
  the same file can import it (``import myapp``, ``--app chat:setup``).
- An example that calls ``task.react(...)`` is a program: it runs in a subprocess, as
  ``python example.py`` with txsio from this checkout, and must exit with status 0 (its
  setups and checks run in this process, before and after it).
- Any other example is executed in a namespace of its own, top-level ``await`` allowed (it is
  awaited on the reactor).  There ``from twisted.internet import reactor`` gives a
  ``MemoryReactorClock`` (the global reactor is left alone), so ``reactor.listenTCP(8080,
  ...)`` and ``reactor.run()`` record the call and return.  ``print`` appends to a list
  (``printed``), there and in module examples.
- Every ``TestCase`` class an example defines is run (testing.rst, :mod:`txsio.testing`): the
  example fails if one of its tests fails, or if it has none.  They must be
  ``SynchronousTestCase`` classes (the reactor is already running).
- ``8080`` in an example becomes a free loopback port, and a Redis URL
  (``redis://host:6379``) the URL of a ``redis-server`` started for the test.
- A literal block right after an example, introduced by a paragraph that ends in
  ``prints::``, is the example's output: what it printed must match it line by line
  (``...`` matches anything, as in doctest).
- At the end, every ``txsio.Server``, ``EngineServer``, ``Client``, ``EngineClient`` and
  ``Emitter`` left in the namespace is closed.

What an example needs and what it must do are rst comments, which the built docs do not show
(in README.md, HTML comments ``<!-- test-check: ... -->``)::

    .. test-setup:
       # Python run before the next example, in its namespace.  With a first line
       # "# name.py", it is instead a module file the example can import.
    .. test-check:
       # Python run after the previous example, in its namespace: it asserts what the
       # example does (that a client gets through its handlers, that its site answers...).

Setup and check code also see ``test`` (the running trial ``TestCase``: ``test.addCleanup``),
``PORT`` (what ``8080`` became), ``REDIS_URL``, ``memory_reactor``, ``printed`` (the lines
printed so far; ``output`` for a program's), and three helpers: ``http(site_or_resource,
path, method="GET", body=b"")`` makes one request in memory and returns ``(status, body)``;
``serve(io_or_resource, port=PORT)`` serves on ``127.0.0.1`` (``io.resource()`` at
``/socket.io``, an ``EngineServer``'s at ``/engine.io``) until the test ends; ``wait(d,
timeout=10)`` bounds a Deferred.
"""

from __future__ import annotations

import ast
import builtins
import doctest
import inspect
import os
import re
import shutil
import sys
import tempfile
import textwrap
import types
import unittest
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docutils import nodes
from docutils.frontend import get_default_settings
from docutils.parsers.rst import Parser
from docutils.utils import new_document
from twisted.internet import defer, error, protocol
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure
from twisted.trial.reporter import TestResult
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import IResource, Resource
from twisted.web.server import Site

import txsio.testing

from .test_redis_cluster import RedisServer, free_port

REPO = Path(__file__).resolve().parent.parent

#: Lines that make a literal block that does not compile count as (broken) Python.
_PYTHONISH = re.compile(
    r"^\s*(import \w|from [\w.]+ import |(async )?def \w+\(|class \w+[(:]|await |yield |"
    r"@[\w.]+(\(.*\))?\s*$)", re.M)
#: An example's first line naming the module file it is: ``# chat.py``, ``# myapp/chat.py``.
_MODULE_LINE = re.compile(r"#\s*([\w/]+)\.py\b")
_REDIS_URL = re.compile(r"redis://[\w.-]+:6379")
_MARKER = re.compile(r"test-(setup|check):[ \t]*\n?")


# -- finding the examples ------------------------------------------------------------------


@dataclass
class Snippet:
    """Code of one source file, and the line of that file where it starts."""

    path: str
    line: int
    code: str

    @property
    def module_file(self) -> str | None:
        """``chat.py`` for code whose first line is ``# chat.py ...``, else ``None``."""
        match = _MODULE_LINE.match(self.code.lstrip("\n"))
        return match.group(1) + ".py" if match else None

    def compile(self) -> types.CodeType:
        """The code, compiled so that tracebacks name the source file and its lines."""
        code: types.CodeType = compile(
            "\n" * (self.line - 1) + self.code, str(REPO / self.path), "exec",
            flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
        return code


@dataclass
class Example(Snippet):
    """One example, with what the docs say it needs and does."""

    setups: list[Snippet] = field(default_factory=list)
    checks: list[Snippet] = field(default_factory=list)
    #: the modules that examples before it in the same file are (importable from it)
    modules: list[Snippet] = field(default_factory=list)
    #: what it prints, when the docs show it
    output: str | None = None

    @property
    def is_program(self) -> bool:
        """Whether it is a whole program run by ``task.react``."""
        return "task.react(" in self.code


def _compiles(code: str) -> bool:
    try:
        compile(code, "<doc>", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True)
    except SyntaxError:
        return False
    return True


def _is_python(code: str) -> bool:
    return _compiles(code) or bool(_PYTHONISH.search(code))


def _rst_items(text: str, path: str) -> Iterator[tuple[str, str, nodes.Node]]:
    """``(kind, code, node)`` in document order: kind is ``python``, ``output``,
    ``setup`` or ``check``."""
    settings = get_default_settings(Parser)
    settings.report_level = 5
    settings.halt_level = 5
    settings.syntax_highlight = "none"
    document = new_document(path, settings)
    Parser().parse(text, document)
    for node in document.findall(lambda n: isinstance(n, (nodes.literal_block, nodes.comment))):
        if any(isinstance(p, nodes.system_message) for p in _ancestors(node)):
            continue  # a directive docutils does not know (autoclass...), quoted in its error
        code = node.astext()
        if isinstance(node, nodes.comment):
            marker = _MARKER.match(code)
            if marker:
                yield marker.group(1), code[marker.end():], node
            continue
        classes: list[str] = node.get("classes", []) if isinstance(node, nodes.Element) else []
        if "code" in classes:  # a code-block directive: its language says
            if "python" in classes:
                yield "python", code, node
        elif _introduces_output(node):
            yield "output", code, node
        elif _is_python(code):
            yield "python", code, node


def _ancestors(node: nodes.Node) -> Iterator[nodes.Node]:
    parent = node.parent
    while parent is not None:
        yield parent
        parent = parent.parent


def _introduces_output(node: nodes.Node) -> bool:
    parent = node.parent
    index = parent.index(node) if parent is not None else 0
    previous = parent[index - 1] if index > 0 else None
    return isinstance(previous, nodes.paragraph) and previous.astext().endswith("prints:")


def _locate(lines: list[str], code: str, start: int) -> int:
    """The index of the line at or after ``start`` where ``code`` begins."""
    first = next((line.strip() for line in code.splitlines() if line.strip()), "")
    for index in range(start, len(lines)):
        if lines[index].strip() == first:
            return index
    raise ValueError(f"cannot find {first!r} after line {start + 1}")


def rst_snippets(text: str, path: str, offset: int = 0) -> list[tuple[str, Snippet]]:
    """The examples, setups, checks and outputs of an rst text, with their lines (the text
    starting at line ``offset + 1`` of ``path``)."""
    lines = text.splitlines()
    found: list[tuple[str, Snippet]] = []
    cursor = 0
    for kind, code, _ in _rst_items(text, path):
        index = _locate(lines, code, cursor)
        cursor = index + max(1, len(code.splitlines()) - 1)
        found.append((kind, Snippet(path, offset + index + 1, code)))
    return found


def markdown_snippets(text: str, path: str) -> list[tuple[str, Snippet]]:
    """The ```` ```python ```` fences and ``<!-- test-...: -->`` comments of a Markdown text."""
    pattern = re.compile(r"^```python\n(.*?)^```$|<!-- test-(setup|check):\n(.*?)-->",
                         re.S | re.M)
    found = []
    for match in pattern.finditer(text):
        group = 1 if match.group(1) is not None else 3
        line = text.count("\n", 0, match.start(group)) + 1
        kind = "python" if group == 1 else match.group(2)
        found.append((kind, Snippet(path, line, match.group(group))))
    return found


def docstring_snippets(source: str, path: str) -> list[tuple[str, Snippet]]:
    """The snippets of every docstring of a module (module, classes, functions)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                 ast.AsyncFunctionDef)):
            continue
        body = node.body
        if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value,
                                                                     ast.Constant)
                and isinstance(body[0].value.value, str)):
            continue
        raw = body[0].value.value
        first, _, rest = raw.partition("\n")
        text = first.strip() + "\n" + textwrap.dedent(rest)
        if "::" in text:
            found.extend(rst_snippets(text, path, offset=body[0].value.lineno - 1))
    found.sort(key=lambda item: item[1].line)
    return found


def assemble(found: list[tuple[str, Snippet]]) -> list[Example]:
    """Attach each setup to the example after it, each check and output to the one before."""
    examples: list[Example] = []
    setups: list[Snippet] = []
    modules: list[Snippet] = []
    for kind, snippet in found:
        if kind == "setup":
            setups.append(snippet)
        elif kind == "python":
            example = Example(snippet.path, snippet.line, snippet.code, setups=setups,
                              modules=list(modules))
            examples.append(example)
            setups = []
            if example.module_file:
                modules.append(snippet)
        elif not examples:
            raise ValueError(f"{snippet.path}:{snippet.line}: a {kind} with no example before")
        elif kind == "check":
            examples[-1].checks.append(snippet)
        else:
            examples[-1].output = snippet.code
    if setups:
        raise ValueError(f"{setups[0].path}:{setups[0].line}: a setup with no example after")
    return examples


def public_modules() -> list[Path]:
    """txsio's modules whose path has no private part."""
    return sorted(p for p in (REPO / "txsio").rglob("*.py")
                  if not any(part.startswith("_") and part != "__init__.py"
                             for part in p.relative_to(REPO).parts))


def find_examples() -> dict[str, list[Example]]:
    """Every example, by the path of its file (relative to the checkout)."""
    sources: dict[str, list[tuple[str, Snippet]]] = {}
    for rst in sorted((REPO / "docs").glob("*.rst")):
        path = rst.relative_to(REPO).as_posix()
        sources[path] = rst_snippets(rst.read_text("utf-8"), path)
    sources["README.md"] = markdown_snippets((REPO / "README.md").read_text("utf-8"),
                                             "README.md")
    for module in public_modules():
        path = module.relative_to(REPO).as_posix()
        sources[path] = docstring_snippets(module.read_text("utf-8"), path)
    return {path: examples for path, found in sources.items() if (examples := assemble(found))}


EXAMPLES = find_examples()


# -- running them ---------------------------------------------------------------------------


class _ReactorView(types.ModuleType):
    """``twisted.internet`` as an example sees it: its ``reactor`` is the memory one."""

    def __init__(self, real: types.ModuleType, reactor: MemoryReactorClock) -> None:
        super().__init__(real.__name__)
        self._real = real
        self.reactor = reactor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def http(target: Site | IResource, path: str, method: str = "GET",
         body: bytes = b"") -> tuple[int, bytes]:
    """Make one HTTP/1.0 request to a site (or a resource, in a ``Site``) in memory; return
    the status and what the body has so far (a long-poll that waits has none)."""
    site = target if isinstance(target, Site) else Site(target)
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    channel.makeConnection(transport)
    head = f"{method} {path} HTTP/1.0\r\nHost: localhost\r\nContent-Length: {len(body)}\r\n"
    channel.dataReceived(head.encode() + b"\r\n" + body)
    raw = transport.value()
    channel.connectionLost(Failure(error.ConnectionDone()))  # its timers go with it
    status_line, _, rest = raw.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


class _Output(protocol.ProcessProtocol):
    """Collects a program's output (stdout and stderr) and its exit code."""

    def __init__(self) -> None:
        self.out: list[bytes] = []
        self.err: list[bytes] = []
        self.code: int | None = None
        self.finished = False
        self._waiters: list[defer.Deferred[int | None]] = []

    def outReceived(self, data: bytes) -> None:
        self.out.append(data)

    def errReceived(self, data: bytes) -> None:
        self.err.append(data)

    def ended(self) -> defer.Deferred[int | None]:
        """Fire with the exit code once the program has ended."""
        d: defer.Deferred[int | None] = defer.Deferred()
        if self.finished:
            d.callback(self.code)
        else:
            self._waiters.append(d)
        return d

    def processEnded(self, reason: Failure) -> None:
        self.finished = True
        self.code = 0 if reason.check(error.ProcessDone) else getattr(reason.value, "exitCode",
                                                                      None)
        for d in self._waiters:
            if not d.called:  # a wait that timed out was cancelled
                d.callback(self.code)


class Harness:
    """What one example runs with: its namespace, a scratch directory for its modules, a port,
    and Redis when it needs it."""

    def __init__(self, test: TestCase, example: Example) -> None:
        from twisted.internet import reactor

        self.test = test
        self.example = example
        self.reactor: Any = reactor
        self.port = free_port()
        self.redis_url: str | None = None
        self.directory = Path(tempfile.mkdtemp(prefix="txsio-doc-"))
        test.addCleanup(shutil.rmtree, self.directory, True)
        self.printed: list[str] = []
        self.loaded: list[str] = []
        self.memory_reactor = MemoryReactorClock()
        self.builtins = dict(vars(builtins), print=self._print, __import__=self._import)
        self.namespace: dict[str, Any] = {
            "__name__": "__doc_example__", "__builtins__": self.builtins, "test": test,
            "PORT": self.port, "memory_reactor": self.memory_reactor, "printed": self.printed,
            "http": http, "serve": self.serve, "wait": self.wait}

    def _print(self, *args: Any, sep: str | None = " ", end: str | None = "\n",
               file: Any = None, flush: bool = False) -> None:
        if file is not None and file is not sys.stdout:
            print(*args, sep=sep, end=end, file=file, flush=flush)
            return
        self.printed.extend((" " if sep is None else sep).join(map(str, args)).splitlines())

    def _import(self, name: str, globals: Any = None, locals: Any = None,
                fromlist: Any = (), level: int = 0) -> Any:
        module = builtins.__import__(name, globals, locals, fromlist, level)
        if name == "twisted.internet" and fromlist and "reactor" in fromlist:
            return _ReactorView(module, self.memory_reactor)
        return module

    def wait(self, d: Any, timeout: float = 10.0) -> defer.Deferred[Any]:
        """``d`` (a Deferred or a coroutine), failing after ``timeout`` seconds."""
        waiting: defer.Deferred[Any] = defer.ensureDeferred(d)
        return waiting.addTimeout(timeout, self.reactor)

    def serve(self, thing: Any, port: int | None = None) -> None:
        """Serve a server's resource (or a resource) on 127.0.0.1 until the test ends."""
        from txsio.engineio import EngineServer

        from .support import LoopbackSite, _TrackingFactory

        root = Resource()
        if isinstance(thing, txsio.Server):
            root.putChild(b"socket.io", thing.resource())
        elif isinstance(thing, EngineServer):
            root.putChild(b"engine.io", thing.resource())
        else:
            root = thing
        site = Site(root)
        factory = _TrackingFactory(site)
        port = self.port if port is None else port
        listening = self.reactor.listenTCP(port, factory, interface="127.0.0.1")
        served = LoopbackSite(port, f"http://127.0.0.1:{port}", site, listening, factory,
                              self.reactor)
        self.test.addCleanup(served.stop)

    def substitute(self, code: str) -> str:
        """The code with the test's port for ``8080`` and its Redis for any Redis URL."""
        code = re.sub(r"\b8080\b", str(self.port), code)
        if self.redis_url is not None:
            code = _REDIS_URL.sub(self.redis_url, code)
        return code

    async def start(self) -> None:
        """Start Redis if the example or its setups and checks name it."""
        texts = [self.example.code] + [s.code for s in self.example.setups + self.example.checks]
        if any("redis://" in text or "REDIS_URL" in text for text in texts):
            redis = RedisServer(self.reactor)
            await redis.start()
            self.test.addCleanup(lambda: defer.ensureDeferred(redis.stop()))
            self.redis_url = redis.url
            self.namespace["REDIS_URL"] = redis.url
        sys.path.insert(0, str(self.directory))
        self.test.addCleanup(self._forget_modules, set(sys.modules))

    def _forget_modules(self, before: set[str]) -> None:
        sys.path.remove(str(self.directory))
        for name in set(sys.modules) - before:
            module = sys.modules[name]
            places = [getattr(module, "__file__", None), *getattr(module, "__path__", [])]
            if name in self.loaded or any(str(self.directory) in str(p) for p in places):
                del sys.modules[name]

    def load_module(self, snippet: Snippet) -> types.ModuleType:
        """Write the module a snippet is into the scratch directory and import it (its
        ``print`` goes to :attr:`printed` too)."""
        relative = snippet.module_file
        assert relative is not None
        file = self.directory / relative
        file.parent.mkdir(parents=True, exist_ok=True)
        code = self.substitute(snippet.code)
        file.write_text(code, "utf-8")
        name = relative[:-3].replace("/", ".")
        module = types.ModuleType(name)
        module.__file__ = str(file)
        module.__dict__["__builtins__"] = self.builtins
        sys.modules[name] = module
        self.loaded.append(name)
        exec(Snippet(snippet.path, snippet.line, code).compile(), module.__dict__)
        return module

    async def run_code(self, snippet: Snippet) -> None:
        """Execute a snippet in the namespace, awaiting it if it awaits."""
        if snippet.module_file:
            self.load_module(snippet)
            return
        code = Snippet(snippet.path, snippet.line, self.substitute(snippet.code)).compile()
        result = eval(code, self.namespace)
        if inspect.iscoroutine(result):
            await self.wait(result, 30)

    async def run_program(self, example: Example) -> list[str]:
        """Run a program example as ``python example.py``; its output lines."""
        script = self.directory / "example.py"
        script.write_text("\n" * (example.line - 1) + self.substitute(example.code), "utf-8")
        paths = [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(paths))
        process = _Output()
        transport = self.reactor.spawnProcess(
            process, sys.executable, [sys.executable, str(script)], env=env,
            path=str(self.directory))
        try:
            code = await self.wait(process.ended(), 60)
        except defer.TimeoutError:
            transport.signalProcess("KILL")
            await self.wait(process.ended())
            raise
        output = b"".join(process.out).decode("utf-8", "replace")
        errors = b"".join(process.err).decode("utf-8", "replace")
        if code != 0:
            raise AssertionError(f"{example.path}:{example.line} exited with {code}:\n"
                                 f"{output}{errors}")
        return output.splitlines()

    async def close(self) -> None:
        """Close what the example left open."""
        from txsio.engineio import EngineServer
        from txsio.engineio.client import EngineClient
        from txsio.redis import Emitter

        for value in list(self.namespace.values()):
            if isinstance(value, (txsio.Server, txsio.Client, EngineClient, Emitter)):
                closing = value.disconnect() if isinstance(value, txsio.Client) \
                    else value.close()
                if isinstance(closing, defer.Deferred):
                    await self.wait(closing)
            elif isinstance(value, EngineServer):
                value.close()


def run_testcases(namespace: dict[str, Any], only: str | None = None) -> TestResult:
    """Run the TestCase classes defined in a namespace (or only its method ``only``)."""
    suite = unittest.TestSuite()
    for value in list(namespace.values()):
        if isinstance(value, type) and issubclass(value, unittest.TestCase) \
                and value.__module__ == namespace["__name__"]:
            if only is not None:
                if hasattr(value, only):
                    suite.addTest(value(only))
            else:
                suite.addTests(unittest.defaultTestLoader.loadTestsFromTestCase(value))
    result = TestResult()
    suite.run(result)
    return result


def _describe(result: TestResult) -> str:
    return "\n".join(
        f"{test}:\n{failure.getTraceback() if isinstance(failure, Failure) else failure}"
        for test, failure in result.errors + result.failures)


async def prepare(test: TestCase, example: Example) -> Harness:
    """A harness for an example, with Redis if it needs it, the modules before it loaded and
    its setups run; the caller closes it."""
    harness = Harness(test, example)
    await harness.start()
    for module in example.modules:
        harness.load_module(module)
    for setup in example.setups:
        await harness.run_code(setup)
    return harness


async def run_example(test: TestCase, example: Example) -> None:
    """Run an example with its setups, its TestCases and its checks."""
    harness = await prepare(test, example)
    try:
        if example.module_file:
            module = harness.load_module(example)
            harness.namespace.update(
                (k, v) for k, v in vars(module).items() if not k.startswith("__"))
        elif example.is_program:
            harness.namespace["output"] = await harness.run_program(example)
            harness.printed.extend(harness.namespace["output"])
        else:
            await harness.run_code(example)
            result = run_testcases(harness.namespace)
            if result.errors or result.failures:
                raise AssertionError(f"the example's tests fail:\n{_describe(result)}")
            if "TestCase" in example.code and result.testsRun == 0:
                raise AssertionError("the example's TestCase has no test")
        if example.output is not None:
            want, got = example.output + "\n", "\n".join(harness.printed) + "\n"
            if not doctest.OutputChecker().check_output(want, got, doctest.ELLIPSIS):
                raise AssertionError(f"the example printed:\n{got}\nthe docs say:\n{want}")
        for check in example.checks:
            await harness.run_code(check)
    finally:
        await harness.close()


def _class_name(path: str) -> str:
    words = re.split(r"[^A-Za-z0-9]+", path.replace("__init__", "init"))
    return "".join(w[:1].upper() + w[1:] for w in words if w) + "Examples"


def _make_test(example: Example) -> Callable[[TestCase], defer.Deferred[None]]:
    def test(self: TestCase) -> defer.Deferred[None]:
        return defer.Deferred.fromCoroutine(run_example(self, example))

    test.__name__ = f"test_line_{example.line}"
    test.__doc__ = f"The example at {example.path}, line {example.line}, runs as the docs say."
    return test


for _path, _examples in EXAMPLES.items():
    _name = _class_name(_path)
    globals()[_name] = type(_name, (TestCase,), {
        "__doc__": f"The Python examples of {_path}.", "__module__": __name__,
        **{f"test_line_{e.line}": _make_test(e) for e in _examples}})


# -- the harness itself, and what the docs must not say ------------------------------------


def _example(path: str, needle: str) -> Example:
    """The example of ``path`` whose code contains ``needle``."""
    return next(e for e in EXAMPLES[path] if needle in e.code)


class HeartbeatExampleTests(TestCase):
    """testing.rst's ``test_survives_heartbeats`` tests what it says: it fails when the client
    does not answer the pings."""

    async def _run_doc_test(self) -> TestResult:
        harness = await prepare(self, _example("docs/testing.rst", "test_survives_heartbeats"))
        try:
            await harness.run_code(_example("docs/testing.rst", "test_survives_heartbeats"))
            return run_testcases(harness.namespace, only="test_survives_heartbeats")
        finally:
            await harness.close()

    async def test_passes_as_written(self) -> None:
        """As written, the doc's test passes."""
        result = await self._run_doc_test()
        self.assertEqual((result.testsRun, result.errors, result.failures), (1, [], []))

    async def test_fails_without_pongs(self) -> None:
        """With every TestClient silent (auto_pong off), the doc's test fails."""
        init = txsio.testing.TestClient.__init__

        def silent(client: txsio.testing.TestClient, *args: Any, **kwargs: Any) -> None:
            init(client, *args, **kwargs)
            client.auto_pong = False

        self.patch(txsio.testing.TestClient, "__init__", silent)
        result = await self._run_doc_test()
        self.assertEqual((result.testsRun, result.errors, len(result.failures)), (1, [], 1))


class HarnessTests(TestCase):
    """The harness fails an example that does not do what its docs say."""

    def _example(self, code: str, output: str | None = None) -> Example:
        return Example("docs/made-up.rst", 1, textwrap.dedent(code), output=output)

    async def _fails(self, example: Example) -> str:
        try:
            await run_example(self, example)
        except AssertionError as e:
            return str(e)
        raise self.failureException("the example passed")

    async def test_output_must_match(self) -> None:
        """What an example prints must be the output its docs show."""
        await run_example(self, self._example("print('connected as', 42)",
                                              "connected as ..."))
        message = await self._fails(self._example("print('connected')", "disconnected"))
        self.assertIn("the docs say:\ndisconnected", message)

    async def test_program_output(self) -> None:
        """A program runs in a subprocess, and must exit with 0."""
        await run_example(self, self._example("""\
            from twisted.internet import defer, task
            task.react(lambda reactor: defer.succeed(print("ran")))
        """, "ran"))
        message = await self._fails(self._example("""\
            from twisted.internet import defer, task
            task.react(lambda reactor: defer.succeed(1 / 0))
        """))
        self.assertIn("ZeroDivisionError", message)

    async def test_testcase_failure(self) -> None:
        """A TestCase in an example is run: one of its tests failing fails the example."""
        message = await self._fails(self._example("""\
            from twisted.trial.unittest import SynchronousTestCase
            class Tests(SynchronousTestCase):
                def test_it(self):
                    self.assertEqual(1, 2)
        """))
        self.assertIn("test_it", message)

    async def test_memory_reactor(self) -> None:
        """An example's reactor is a MemoryReactorClock; the global one is not touched."""
        from twisted.internet import reactor as global_reactor

        harness = await prepare(self, self._example(""))
        try:
            await harness.run_code(self._example("""\
                from twisted.internet import reactor
                reactor.listenTCP(8080, None)
                reactor.run()
            """))
        finally:
            await harness.close()
        self.assertIs(harness.namespace["reactor"], harness.memory_reactor)
        self.assertEqual(harness.memory_reactor.tcpServers[0][0], harness.port)
        self.assertIsNot(harness.memory_reactor, global_reactor)


class DiscoveryTests(SynchronousTestCase):
    """Every Python example is found, and nothing else."""

    def test_every_python_code_block(self) -> None:
        """Each ``.. code-block:: python`` of docs/ is an example, found at its line."""
        for rst in sorted((REPO / "docs").glob("*.rst")):
            path = rst.relative_to(REPO).as_posix()
            lines = rst.read_text("utf-8").splitlines()
            directives = [i + 1 for i, line in enumerate(lines)
                          if line.strip() == ".. code-block:: python"]
            found = [e.line for e in EXAMPLES.get(path, [])
                     if lines[e.line - 3].strip() == ".. code-block:: python"]
            self.assertEqual(found, [line + 2 for line in directives], path)

    def test_literal_blocks(self) -> None:
        """A ``::`` block is an example when it compiles or looks like Python (then a broken
        one fails); other blocks and a "prints::" block are not."""
        text = ("Code::\n\n   x = 1\n\nBroken::\n\n   yield emitter.close()\n\nShell::\n\n"
                "   twistd -n sio --port 8080\n\nIt prints::\n\n   2 + 3 = 5\n\n"
                "Packages::\n\n   @socket.io/redis-adapter 8.3\n\nDecorated::\n\n"
                "   @io.on('connection')\n   handler +\n")
        kinds = [(kind, s.line) for kind, s in rst_snippets(text, "x.rst")]
        self.assertEqual(kinds, [("python", 3), ("python", 7), ("output", 15), ("python", 23)])

    def test_markers(self) -> None:
        """A setup goes with the example after it, a check with the one before."""
        text = (".. test-setup:\n   a = 1\n\n.. code-block:: python\n\n   b = a\n\n"
                ".. test-check:\n   assert b == 1\n")
        [example] = assemble(rst_snippets(text, "x.rst"))
        self.assertEqual((example.line, example.code), (6, "b = a"))
        self.assertEqual([(s.line, s.code) for s in example.setups], [(2, "a = 1")])
        self.assertEqual([(s.line, s.code) for s in example.checks], [(9, "assert b == 1")])

    def test_docstrings(self) -> None:
        """The examples of public modules' docstrings are found, private modules' are not."""
        self.assertIn("txsio/testing.py", EXAMPLES)
        self.assertIn("txsio/__init__.py", EXAMPLES)
        self.assertFalse([p for p in EXAMPLES if "/_" in p.replace("/__init__", "")])


class InstallDocsTests(SynchronousTestCase):
    """No doc tells to install txsio from a package index, where it is not yet."""

    def test_no_pip_install_txsio(self) -> None:
        """README.md, docs/ and the docstrings install txsio from its source only."""
        files = [REPO / "README.md", *sorted((REPO / "docs").glob("*.rst")),
                 *sorted((REPO / "txsio").rglob("*.py"))]
        pattern = re.compile(r"pip3? install\b[^\n`]*?[\s'\"]txsio\b", re.I)
        said = [f"{f.relative_to(REPO)}: {m.group(0)}" for f in files
                for m in pattern.finditer(f.read_text("utf-8"))]
        self.assertEqual(said, [])
        for page in (REPO / "README.md", REPO / "docs" / "getting-started.rst"):
            self.assertIn("pip install .", page.read_text("utf-8"))
