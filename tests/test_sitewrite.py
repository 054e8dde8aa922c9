"""EngineSite's responses on the direct write path (:mod:`txsio.engineio._writepath`), on real
TCP connections over loopback: a polling round trip's responses each leave in one ``send()``
without the reactor's writer registration; pipelined responses keep their order; a closing
response is sent whole before the close; a static file streamed by a producer falls back to
Twisted's buffer and its producer signals when the kernel is full; a WebSocket upgrade takes
the connection over after the responses written before it.
"""

from __future__ import annotations

import json
import socket
import tempfile
from collections.abc import Callable
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request
from twisted.web.static import File

from txsio.engineio import EngineServer, EngineSession, EngineSite

from .support import listen_loopback
from .test_writepath import _CountingSocket, _pattern


class _Text(Resource):
    """A leaf answering every GET with a fixed body naming its path."""

    isLeaf = True

    def render_GET(self, request: Request) -> bytes:
        return b"page " + request.path


class _Client(Protocol):
    """A raw HTTP/1.1 client: keeps every byte it reads, in order."""

    def __init__(self) -> None:
        self.data = bytearray()
        #: fires with the reason's exception
        self.lost: Deferred[BaseException] = Deferred()
        #: fires at the next arrival (while someone waits)
        self._arrival: Deferred[None] | None = None

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        arrival, self._arrival = self._arrival, None
        if arrival is not None:
            arrival.callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        value = None if reason is None else reason.value
        self.lost.callback(value if value is not None else ConnectionDone())

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Returns once ``predicate()`` holds (checked as bytes arrive)."""
        while not predicate():
            self._arrival = Deferred()
            await self._arrival

    def responses(self) -> list[tuple[int, dict[bytes, bytes], bytes]]:
        """The complete responses read so far: status, headers (lower-case names), body (by
        Content-Length; none for a 101)."""
        found = []
        rest = bytes(self.data)
        while b"\r\n\r\n" in rest:
            head, _, after = rest.partition(b"\r\n\r\n")
            lines = head.split(b"\r\n")
            status = int(lines[0].split(b" ", 2)[1])
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            if status == 101:
                found.append((status, headers, b""))
                break  # WebSocket frames follow
            length = int(headers.get(b"content-length", b"0"))
            if len(after) < length:
                break
            found.append((status, headers, after[:length]))
            rest = after[length:]
        return found

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)


def _get(path: str, extra: str = "", version: str = "1.1") -> bytes:
    return f"GET {path} HTTP/{version}\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()


def _post(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body


class SiteWriteTests(TestCase):
    """An EngineSite on loopback, its server-side sockets' sends and writer registrations
    counted."""

    timeout = 30

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.engine = EngineServer(clock=Clock())

        def connected(session: EngineSession) -> None:
            session.on("message", lambda data: session.send(f"echo {data}"))

        self.engine.on("connection", connected)
        root = Resource()
        root.putChild(b"engine.io", self.engine.resource())
        root.putChild(b"page", _Text())
        directory = FilePath(tempfile.mkdtemp())
        self.addCleanup(directory.remove)
        self.file = directory.child("file")
        self.file.setContent(_pattern(2_000_000, 0))
        root.putChild(b"file", File(self.file.path))
        self.site = EngineSite(root)
        self.channels: list[Any] = []
        build = self.site.protocol

        def protocol() -> Any:
            made = build()
            self.channels.append(made._channel)
            return made

        self.site.protocol = protocol  # type: ignore[method-assign]
        port = listen_loopback(reactor, 0, self.site)
        self.addCleanup(port.stopListening)
        self.port: int = port.getHost().port  # type: ignore[attr-defined]
        self.registered = [0]
        self.sockets: list[_CountingSocket] = []
        start = tcp.Server.startWriting
        handle = tcp.Server.getHandle

        def startWriting(transport: tcp.Server) -> None:
            self.registered[0] += 1
            start(transport)

        def getHandle(transport: tcp.Server) -> _CountingSocket:
            # Only the direct path asks for the handle to send; Twisted uses its socket.
            counting = _CountingSocket(handle(transport))
            self.sockets.append(counting)
            return counting

        self.patch(tcp.Server, "startWriting", startWriting)
        self.patch(tcp.Server, "getHandle", getHandle)

    @property
    def sends(self) -> int:
        """How many send() calls the direct path made."""
        return sum(counting.sends for counting in self.sockets)

    async def connect(self) -> _Client:
        client = _Client()
        await connectProtocol(TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port), client)
        self.addCleanup(self._close, client)
        return client

    async def _close(self, client: _Client) -> None:
        transport: Any = client.transport
        if transport is not None and transport.connected:
            transport.abortConnection()
        await client.lost
        for channel in self.channels:  # the server side gone too
            if channel.transport is not None and channel.transport.connected:
                await deferLater(self.reactor, 0)

    async def exchange(self, client: _Client, request: bytes) -> tuple[int, bytes]:
        """Send ``request`` and wait for one more complete response."""
        count = len(client.responses())
        client.send(request)
        await client.wait_for(lambda: len(client.responses()) > count)
        status, _, body = client.responses()[count]
        return status, body

    async def test_polling_round_trip(self) -> None:
        """A handshake, a POST and a GET on one kept-alive connection: each response leaves
        in one send(), and the socket is never registered as a writer."""
        client = await self.connect()
        status, body = await self.exchange(client, _get("/engine.io/?EIO=4&transport=polling"))
        self.assertEqual(status, 200)
        sid = json.loads(body[1:])["sid"]
        status, body = await self.exchange(
            client, _post(f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4hello"))
        self.assertEqual((status, body), (200, b"ok"))
        status, body = await self.exchange(
            client, _get(f"/engine.io/?EIO=4&transport=polling&sid={sid}"))
        self.assertEqual((status, body), (200, b"4echo hello"))
        self.assertEqual((self.sends, self.registered[0]), (3, 0))

    async def test_pipelined_in_order(self) -> None:
        """Requests pipelined in one segment are answered in order, each without writer
        registration."""
        client = await self.connect()
        client.send(b"".join(_get(f"/page/{n}") for n in range(5)))
        await client.wait_for(lambda: len(client.responses()) == 5)
        self.assertEqual([body for _, _, body in client.responses()],
                         [f"page /page/{n}".encode() for n in range(5)])
        self.assertEqual(self.registered[0], 0)
        self.assertGreater(self.sends, 0)

    async def test_connection_close(self) -> None:
        """A response to ``Connection: close``, or to HTTP/1.0, is sent whole, in one send(),
        before the server closes the connection."""
        for request in (_get("/page/a", "Connection: close\r\n"), _get("/page/b", "", "1.0")):
            client = await self.connect()
            before = self.sends
            client.send(request)
            reason = await client.lost
            self.assertIsInstance(reason, ConnectionDone)
            [(status, _, body)] = client.responses()
            self.assertEqual(status, 200)
            self.assertIn(body, (b"page /page/a", b"page /page/b"))
            self.assertEqual(self.sends, before + 1)

    async def test_static_file_producer(self) -> None:
        """A file streamed by its producer to a client that stops reading: the direct path
        leaves what the kernel refuses to Twisted's buffer (the producer paused), the file
        arrives whole and in order once the client reads, and the next response on the
        connection is direct again."""
        client = await self.connect()
        transport: Any = client.transport
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        transport.pauseProducing()
        for _ in range(1000):
            if self.channels and self.channels[0].transport is not None:
                break
            await deferLater(self.reactor, 0)
        channel = self.channels[0]
        channel.transport.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        client.send(_get("/file"))
        for _ in range(1000):
            await deferLater(self.reactor, 0)
            if channel._waitingForTransport:
                break
        self.assertTrue(channel._waitingForTransport)  # the producer paused by Twisted
        self.assertGreater(self.sends, 0)  # the first bytes went direct
        self.assertGreater(self.registered[0], 0)  # the rest waits in Twisted's buffer
        transport.resumeProducing()
        await client.wait_for(lambda: len(client.responses()) == 1)
        [(status, _, body)] = client.responses()
        self.assertEqual(status, 200)
        self.assertEqual(body, self.file.getContent())
        server: Any = channel.transport
        for _ in range(1000):
            if not server.dataBuffer and not server._tempDataLen:
                break
            await deferLater(self.reactor, 0)
        registered, sends = self.registered[0], self.sends
        status, body = await self.exchange(client, _get("/page/next"))
        self.assertEqual((status, body), (200, b"page /page/next"))
        self.assertEqual((self.registered[0], self.sends), (registered, sends + 1))

    async def test_upgrade_after_pipelined_response(self) -> None:
        """A response and a WebSocket upgrade pipelined on one connection: the response,
        then the 101, then the WebSocket's first frame (the open packet), in that order."""
        client = await self.connect()
        upgrade = _get("/engine.io/?EIO=4&transport=websocket",
                       "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                       "Sec-WebSocket-Version: 13\r\n")
        client.send(_get("/page/first") + upgrade)
        await client.wait_for(lambda: b'0{"sid"' in client.data)
        raw = bytes(client.data)
        self.assertTrue(raw.startswith(b"HTTP/1.1 200 "))
        self.assertLess(raw.index(b"page /page/first"), raw.index(b"HTTP/1.1 101 "))
        self.assertLess(raw.index(b"HTTP/1.1 101 "), raw.index(b'\x81'))
        self.assertLess(raw.index(b'\x81'), raw.index(b'0{"sid"'))
        self.assertEqual(len(self.engine.sessions), 1)
        # The 200, direct; then the 101 with the open packet, direct too, in one send().
        self.assertEqual(self.sends, 2)
        # The WebSocket writes through its own writer: a message reaches the client.
        session = next(iter(self.engine.sessions.values()))
        mark = len(client.data)
        session.send("after")
        await client.wait_for(lambda: b"4after" in client.data[mark:])
        self.assertEqual(bytes(client.data[mark:]), b"\x81\x064after")

    async def test_websocket_opening_in_one_send(self) -> None:
        """A WebSocket upgrade: the 101 and the open packet leave together in one send(),
        and the socket is never registered as a writer."""
        client = await self.connect()
        client.send(_get("/engine.io/?EIO=4&transport=websocket",
                         "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n"))
        await client.wait_for(lambda: b'0{"sid"' in client.data)
        self.assertTrue(bytes(client.data).startswith(b"HTTP/1.1 101 Switching Protocols\r\n"))
        self.assertEqual((self.sends, self.registered[0]), (1, 0))
        session = next(iter(self.engine.sessions.values()))
        mark = len(client.data)
        session.send("after")
        await client.wait_for(lambda: b"4after" in client.data[mark:])
        self.assertEqual(bytes(client.data[mark:]), b"\x81\x064after")
