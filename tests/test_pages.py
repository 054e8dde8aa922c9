"""The files ``twistd sio`` serves beside the endpoint: ``--static``, the demo, ``--client-js``.

Each test runs :func:`txsio.tap.makeService` in this process on a free loopback port and
talks raw HTTP/1.1 to it over TCP (:func:`http`), so that a path reaches the server exactly as
written (``%2f``, ``..``, ``%00``: a client library could normalise them) and a client can go
away in the middle of a response.  What is checked: only regular, non-hidden files under the
root are served (after percent-decoding, symlinks resolved), malformed paths are 400s without a
traceback, at most one byte range is served, and no file stays open once its client is gone.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from twisted.internet import reactor, task
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol, connectionDone
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from txsio import tap
from txsio._pages import DEMO_CSP

from . import test_tap
from .test_tap import temp_dir


@dataclass
class Response:
    """What came back on one connection: status, headers (lower-case names), body."""

    status: int
    headers: dict[bytes, list[bytes]] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: bytes) -> bytes | None:
        """The one value of header *name*, or None."""
        values = self.headers.get(name, [])
        return values[0] if len(values) == 1 else None


class _RawClient(Protocol):
    """Sends one request as given; collects the response until the server closes (at most
    *limit* bytes), or, given *on_first*, calls it when the first bytes arrive and goes away."""

    def __init__(self, request: bytes, limit: int,
                 on_first: Callable[[], object] | None = None) -> None:
        self._request = request
        self._limit = limit
        self._on_first = on_first
        self.received = bytearray()
        #: fires with the received bytes once the connection is closed
        self.done: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self._request)

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.received += data
        if self._on_first is not None:
            on_first, self._on_first = self._on_first, None
            on_first()
            cast(ITCPTransport, self.transport).abortConnection()
        elif len(self.received) > self._limit:
            cast(ITCPTransport, self.transport).abortConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.done.callback(bytes(self.received))


def _parse(raw: bytes) -> Response:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    response = Response(int(status_line.split(b" ")[1]), body=body)
    for line in lines:
        name, _, value = line.partition(b":")
        response.headers.setdefault(name.strip().lower(), []).append(value.strip())
    return response


def _request(target: bytes, method: bytes, headers: dict[bytes, bytes]) -> bytes:
    lines = [method + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    lines += [name + b": " + value for name, value in headers.items()]
    return b"\r\n".join(lines) + b"\r\n\r\n"


async def connect(port: int, client: _RawClient) -> None:
    """Connect *client* to 127.0.0.1:*port* (bounded)."""
    endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", port)
    await connectProtocol(endpoint, client).addTimeout(5, reactor)


async def http(port: int, target: bytes, method: bytes = b"GET",
               headers: dict[bytes, bytes] | None = None, limit: int = 1 << 20) -> Response:
    """One raw HTTP/1.1 request for *target* exactly as given; the response (bounded in
    time, and in size by *limit*: a longer response is cut there)."""
    client = _RawClient(_request(target, method, headers or {}), limit)
    await connect(port, client)
    raw = await client.done.addTimeout(10, reactor)
    return _parse(raw)


def open_descriptors(path: Path) -> int:
    """How many of this process's file descriptors are open on *path*."""
    count, real = 0, os.path.realpath(path)
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == real:
                count += 1
        except OSError:  # closed since listdir
            pass
    return count


async def until_closed(path: Path, timeout: float = 5.0) -> int:
    """Wait (bounded) until no descriptor is open on *path*; how many still are."""
    deadline = reactor.seconds() + timeout
    while open_descriptors(path) and reactor.seconds() < deadline:
        await task.deferLater(reactor, 0.02)
    return open_descriptors(path)


class _Served(TestCase):
    """A service on loopback in this process, stopped when the test ends."""

    async def serve(self, *argv: str) -> int:
        """Start the service for *argv* on a free loopback port (as test_tap's resource
        tests do); the port."""
        base = await test_tap.ResourceTests.serve(self, *argv)  # type: ignore[arg-type]
        return int(base.rsplit(":", 1)[1])

    def assertNotFound(self, response: Response, what: Any = None) -> None:
        """*response* is the plain-text 404."""
        self.assertEqual((response.status, response.body), (404, b"Not found\n"), repr(what))

    def assertBadRequest(self, response: Response, what: Any = None) -> None:
        """*response* is a plain-text 400 that shows no traceback."""
        self.assertEqual(response.status, 400, repr(what))
        self.assertEqual(response.header(b"content-type"), b"text/plain; charset=utf-8")
        self.assertNotIn(b"Traceback", response.body)


def static_tree(test: TestCase) -> Path:
    """A static root (with a directory ``outside`` beside it): files, dotfiles, symlinks in
    and out."""
    base = temp_dir(test)
    root, outside = base / "public", base / "outside"
    (root / "sub" / ".git").mkdir(parents=True)
    outside.mkdir()
    (root / "index.html").write_text("home")
    (root / "sub" / "page.txt").write_text("page")
    (root / "sub" / ".git" / "config").write_text("[core]")
    (root / ".env").write_text("SECRET=1")
    (outside / "secret.txt").write_text("outside")
    (root / "out.txt").symlink_to(outside / "secret.txt")
    (root / "outdir").symlink_to(outside)
    (root / "alias.txt").symlink_to(root / "sub" / "page.txt")
    (root / "env.txt").symlink_to(root / ".env")
    return root


class StaticPathTests(_Served):
    """``--static``: which paths are served, after decoding, and which are refused."""

    async def test_encoded_slash(self) -> None:
        """An encoded slash is decoded into a separator before the rules apply: it reaches
        neither a dotfile nor anything outside the root."""
        root = static_tree(self)
        port = await self.serve("--static", str(root))
        for target in [b"/x%2f..%2f.env", b"/sub%2f..%2f.env", b"/sub/x%2f..%2f..%2f.env",
                       b"/..%2foutside%2fsecret.txt", b"/sub%2f.git%2fconfig",
                       b"/%2e%2e/outside/secret.txt", b"/x%2F..%2F.env"]:
            self.assertNotFound(await http(port, target), target)
        response = await http(port, b"/sub%2fpage.txt")
        self.assertEqual((response.status, response.body), (200, b"page"))

    async def test_dot_segments(self) -> None:
        """``..``, ``.`` and hidden segments anywhere in the path are 404s."""
        root = static_tree(self)
        port = await self.serve("--static", str(root))
        for target in [b"/../outside/secret.txt", b"/sub/../.env", b"/sub/../index.html",
                       b"/./index.html", b"/sub/.git/config", b"/.env", b"/sub//page.txt",
                       b"//sub/page.txt"]:
            self.assertNotFound(await http(port, target), target)

    async def test_symlinks(self) -> None:
        """A symlink is followed only to a non-hidden file inside the root."""
        root = static_tree(self)
        port = await self.serve("--static", str(root))
        for target in [b"/out.txt", b"/outdir/secret.txt", b"/env.txt"]:
            self.assertNotFound(await http(port, target), target)
        response = await http(port, b"/alias.txt")
        self.assertEqual((response.status, response.body), (200, b"page"))

    async def test_malformed(self) -> None:
        """A NUL or a byte that is not UTF-8 in the path is a plain 400: no traceback, no
        error logged."""
        root = static_tree(self)
        port = await self.serve("--static", str(root))
        for target in [b"/a%00b", b"/index.html%00.txt", b"/sub/%00", b"/%ff", b"/sub%2f%c3"]:
            self.assertBadRequest(await http(port, target), target)
        self.assertEqual(self.flushLoggedErrors(), [])

    async def test_regular_files_only(self) -> None:
        """A FIFO is not opened (it would block the server) and a directory is no file: 404;
        a directory with an index.html is redirected to its slash, and served there."""
        root = static_tree(self)
        os.mkfifo(root / "pipe.txt")
        (root / "docs").mkdir()
        (root / "docs" / "index.html").write_text("docs")
        port = await self.serve("--static", str(root))
        for target in [b"/pipe.txt", b"/sub/", b"/sub", b"/missing", b"/missing/"]:
            self.assertNotFound(await http(port, target), target)
        response = await http(port, b"/docs?a=1")
        self.assertEqual((response.status, response.header(b"location")),
                         (302, b"/docs/?a=1"))
        response = await http(port, b"/docs/")
        self.assertEqual((response.status, response.body), (200, b"docs"))

    async def test_headers_and_methods(self) -> None:
        """Files carry nosniff, their type and length; HEAD has no body; other methods are a
        plain 405; a type the extension does not name is not guessed as HTML."""
        root = static_tree(self)
        (root / "LICENSE").write_text("<script>alert(1)</script>")
        port = await self.serve("--static", str(root))
        response = await http(port, b"/sub/page.txt")
        self.assertEqual(response.header(b"x-content-type-options"), b"nosniff")
        self.assertEqual(response.header(b"content-type"), b"text/plain")
        self.assertEqual(response.header(b"content-length"), b"4")
        response = await http(port, b"/LICENSE")
        self.assertEqual(response.header(b"content-type"), b"application/octet-stream")
        response = await http(port, b"/sub/page.txt", method=b"HEAD")
        self.assertEqual((response.status, response.header(b"content-length"), response.body),
                         (200, b"4", b""))
        response = await http(port, b"/sub/page.txt", method=b"POST")
        self.assertEqual((response.status, response.header(b"allow")), (405, b"GET, HEAD"))
        self.assertEqual(response.header(b"content-type"), b"text/plain; charset=utf-8")


class DemoPathTests(_Served):
    """The demo directory follows the same rules, and has an icon of its own."""

    async def test_same_rules(self) -> None:
        """Encoded slashes, symlinks out and NULs get no further in the demo directory."""
        demo = static_tree(self)
        (demo / "app.py").write_text("secret = 1")
        self.patch(tap, "DEMO_DIR", demo)
        port = await self.serve()
        for target in [b"/x%2f..%2f.env", b"/out.txt", b"/outdir/secret.txt", b"/app%2epy",
                       b"/x%2f..%2fapp.py"]:
            self.assertNotFound(await http(port, target), target)
        self.assertBadRequest(await http(port, b"/index.html%00"))
        response = await http(port, b"/index.html")
        self.assertEqual((response.status, response.body), (200, b"home"))
        self.assertEqual(response.header(b"content-security-policy"), DEMO_CSP.encode())

    async def test_favicon(self) -> None:
        """The demo page names its icon, a small SVG file served from this origin with the
        demo's CSP, so the browser asks for no missing /favicon.ico."""
        port = await self.serve()
        page = await http(port, b"/")
        self.assertEqual(page.status, 200)
        self.assertIn(b'<link rel="icon" href="favicon.svg">', page.body)
        icon = await http(port, b"/favicon.svg")
        self.assertEqual((icon.status, icon.header(b"content-type")), (200, b"image/svg+xml"))
        self.assertEqual(icon.header(b"content-security-policy"), DEMO_CSP.encode())
        self.assertLess(len(icon.body), 2048)
        svg = ET.fromstring(icon.body)
        self.assertEqual(svg.tag, "{http://www.w3.org/2000/svg}svg")
        self.assertEqual([e for e in svg.iter() if e.tag.endswith(("script", "style"))], [])


def big_file(test: TestCase, size: int = 150_000) -> Path:
    """A static root holding ``data.bin``: *size* bytes, each its offset modulo 251."""
    root = temp_dir(test)
    path = root / "data.bin"
    path.write_bytes(bytes(i % 251 for i in range(size)))
    return path


class RangeTests(_Served):
    """At most one byte range: one satisfiable range is a 206, several are the whole file."""

    async def test_single_range(self) -> None:
        """A single range is served as a 206 with its Content-Range; an unsatisfiable one is
        a 416 that names the size; a malformed Range is ignored."""
        path = big_file(self)
        data = path.read_bytes()
        port = await self.serve("--static", str(path.parent))
        cases = [(b"bytes=10-19", 10, 19), (b"bytes=149990-", 149990, 149999),
                 (b"bytes=-5", 149995, 149999), (b"bytes=0-999999", 0, 149999),
                 (b"bytes = 7-7 ,", 7, 7)]
        for header, first, last in cases:
            response = await http(port, b"/data.bin", headers={b"range": header})
            self.assertEqual(response.status, 206, repr(header))
            self.assertEqual(response.header(b"content-range"),
                             b"bytes %d-%d/150000" % (first, last))
            self.assertEqual(response.body, data[first:last + 1])
        for header in [b"bytes=150000-", b"bytes=-0", b"bytes=999999-1000000"]:
            response = await http(port, b"/data.bin", headers={b"range": header})
            self.assertEqual((response.status, response.header(b"content-range")),
                             (416, b"bytes */150000"), repr(header))
        for header in [b"items=0-1", b"bytes=5-1", b"bytes=a-b", b"bytes=1", b"bytes=\xb2-"]:
            response = await http(port, b"/data.bin", headers={b"range": header})
            self.assertEqual((response.status, response.body), (200, data), repr(header))

    async def test_several_ranges(self) -> None:
        """Several ranges (200 overlapping ones here) get the whole file once, with a 200."""
        path = big_file(self)
        data = path.read_bytes()
        port = await self.serve("--static", str(path.parent))
        for header in [b"bytes=" + b",".join([b"0-"] * 200), b"bytes=0-1,5-9"]:
            response = await http(port, b"/data.bin", headers={b"range": header},
                                  limit=2 * len(data))
            self.assertEqual(response.status, 200)
            self.assertEqual(response.header(b"content-length"), b"150000")
            self.assertEqual(len(response.body), len(data))
            self.assertEqual(response.body, data)

    async def test_if_range(self) -> None:
        """The range is served only when If-Range names the file's Last-Modified date."""
        path = big_file(self)
        port = await self.serve("--static", str(path.parent))
        modified = (await http(port, b"/data.bin", method=b"HEAD")).header(b"last-modified")
        assert modified is not None
        response = await http(port, b"/data.bin",
                              headers={b"range": b"bytes=0-0", b"if-range": modified})
        self.assertEqual((response.status, response.body), (206, b"\x00"))
        for other in [b"Thu, 01 Jan 1970 00:00:00 GMT", b'"an-etag"']:
            response = await http(port, b"/data.bin",
                                  headers={b"range": b"bytes=0-0", b"if-range": other})
            self.assertEqual(response.status, 200, repr(other))

    async def test_client_js(self) -> None:
        """``--client-js`` follows the same range rules and carries nosniff."""
        path = big_file(self)
        data = path.read_bytes()
        port = await self.serve("--client-js", str(path))
        response = await http(port, b"/socket.io/socket.io.js",
                              headers={b"range": b"bytes=" + b",".join([b"0-"] * 200)},
                              limit=2 * len(data))
        self.assertEqual((response.status, len(response.body)), (200, len(data)))
        self.assertEqual(response.header(b"x-content-type-options"), b"nosniff")
        response = await http(port, b"/socket.io/socket.io.js",
                              headers={b"range": b"bytes=1-2"})
        self.assertEqual((response.status, response.body), (206, data[1:3]))


class DescriptorTests(_Served):
    """No file stays open once the client that asked for it has gone."""

    async def _abandon(self, port: int, target: bytes, path: Path,
                       headers: dict[bytes, bytes]) -> None:
        """Ask for *target*, go away after the first bytes (*path* still open then): no
        descriptor of *path* stays."""
        open_then: list[int] = []
        client = _RawClient(_request(target, b"GET", headers), 0,
                            lambda: open_then.append(open_descriptors(path)))
        await connect(port, client)
        await client.done.addTimeout(10, reactor)
        self.assertEqual(len(open_then), 1)
        self.assertGreater(open_then[0], 0, "the response was over before the client went")
        self.assertEqual(await until_closed(path), 0, f"{path} still open")

    def large_file(self) -> Path:
        """64 MiB of zeros (sparse), more than the socket buffers hold."""
        path = temp_dir(self) / "large.bin"
        with path.open("wb") as f:
            f.truncate(64 << 20)
        return path

    async def test_client_goes_mid_response(self) -> None:
        """A client that goes in the middle of a large file leaves it closed."""
        path = self.large_file()
        port = await self.serve("--static", str(path.parent))
        await self._abandon(port, b"/large.bin", path, {})
        await self._abandon(port, b"/large.bin", path, {b"range": b"bytes=1-"})

    async def test_client_goes_during_many_ranges(self) -> None:
        """A client that goes during a many-range request leaves the file closed (the static
        root and --client-js)."""
        path = self.large_file()
        port = await self.serve("--static", str(path.parent), "--client-js", str(path))
        ranges = {b"range": b"bytes=" + b",".join([b"0-"] * 200)}
        await self._abandon(port, b"/large.bin", path, ranges)
        await self._abandon(port, b"/socket.io/socket.io.js", path, ranges)
