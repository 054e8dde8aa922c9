"""Disconnect details: ``disconnect`` handlers get Node's ``(reason, description)``.

In memory (server sockets on a :class:`~tests.sio_memory.MemoryClient`, the client on fake
transports), and against Node's socket.io 4.8 over loopback for a transport error a raw
HTTP peer causes (a long-poll GET that goes away).
"""

from __future__ import annotations

import json
from typing import Any, cast

from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

import txsio
from txsio.engineio.errors import TransportError

from .sio_memory import MemoryClient
from .test_client_unit import ClientCase
from .test_node_options import fetch, serve_io, start_node, until


def recorders(socket: Any, seen: list[tuple[str, tuple[Any, ...]]], event: str) -> None:
    """Handlers of ``event`` of each shape: two parameters, one, and ``*args``."""
    socket.on(event, lambda reason, description: seen.append(("two", (reason, description))))
    socket.on(event, lambda reason: seen.append(("one", (reason,))))
    socket.on(event, lambda *args: seen.append(("args", args)))


class ServerTests(SynchronousTestCase):
    """Server sockets' ``disconnecting`` and ``disconnect``."""

    def joined(self) -> tuple[MemoryClient, list[tuple[str, tuple[Any, ...]]]]:
        io = txsio.Server(clock=Clock())
        client = MemoryClient(io)
        sid = client.connect_ok("/")["sid"]
        seen: list[tuple[str, tuple[Any, ...]]] = []
        socket = io.of("/").sockets[sid]
        recorders(socket, seen, "disconnecting")
        recorders(socket, seen, "disconnect")
        return client, seen

    def test_transport_error(self) -> None:
        """A transport error's description is a TransportError naming what the client did
        (Node's Error with ``type`` "TransportError"), for handlers that take it; handlers of
        the reason alone (or ``*args``) get the reason alone."""
        client, seen = self.joined()
        client.session.transport_error(client.transport, "overlapping GET requests")
        self.assertEqual([shape for shape, _ in seen], ["two", "one", "args"] * 2)
        description = seen[0][1][1]
        self.assertIsInstance(description, TransportError)
        self.assertEqual((description.message, description.type),
                         ("overlapping GET requests", "TransportError"))
        self.assertEqual(seen[1:3], [("one", ("transport error",)),
                                     ("args", ("transport error",))])
        self.assertIs(seen[3][1][1], description)

    def test_no_description(self) -> None:
        """Reasons without a description in Node (a transport closed, a parse error) give
        ``None`` to a handler that takes one."""
        client, seen = self.joined()
        client.session.transport_closed(client.transport)
        self.assertEqual(seen[3], ("two", ("transport close", None)))


class ClientTests(ClientCase):
    """The client socket's ``disconnect``."""

    def test_transport_error_and_close(self) -> None:
        """A transport error gives its TransportError, a transport closed by the server its
        detail, to a handler of two parameters; one of the reason alone still works."""
        client = self.connected(reconnection=False)
        seen: list[tuple[str, tuple[Any, ...]]] = []
        recorders(client, seen, "disconnect")
        self.transports.last.fail("xhr post error", 502)
        shape, (reason, description) = seen[0]
        self.assertEqual((shape, reason), ("two", "transport error"))
        self.assertIsInstance(description, TransportError)
        self.assertEqual((description.message, description.description), ("xhr post error", 502))
        self.assertEqual(seen[1:], [("one", ("transport error",)), ("args", ("transport error",))])

        client = self.connected(reconnection=False)
        seen.clear()
        recorders(client, seen, "disconnect")
        self.transports.last.server_close()
        self.assertEqual(seen[0], ("two", ("transport close", "transport closed by the server")))


class _Abandoning(Protocol):
    """Sends one request and waits (the test aborts the connection)."""

    def __init__(self, request: bytes) -> None:
        self.request = request

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(self.request)


class InteropTests(TestCase):
    """A long-poll GET that its client abandons, on Node's server and on txsio's."""

    async def abandon_poll(self, base: str) -> str:
        """Open a session on ``/``, then a long poll that goes away; the session id."""
        _, _, body = await fetch(base + "/socket.io/?EIO=4&transport=polling")
        sid = json.loads(body[1:])["sid"]
        url = f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"
        await fetch(url, "POST", data=b"40", content_type="text/plain;charset=UTF-8")
        await fetch(url)  # the CONNECT's answer
        protocol = _Abandoning((f"GET /socket.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                                f"Host: 127.0.0.1\r\n\r\n").encode())
        port = int(base.rsplit(":", 1)[1])
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), protocol)
        await deferLater(reactor, 0.2)
        cast(ITCPTransport, protocol.transport).abortConnection()
        return str(sid)

    async def test_poll_closed_prematurely(self) -> None:
        """Node and txsio report ``"transport error"`` with a TransportError described
        "poll connection closed prematurely"."""
        node_events: list[dict[str, Any]] = []
        node = await start_node(self, {}, node_events)
        await self.abandon_poll(node)
        await until(lambda: node_events)
        io = txsio.Server()
        ours: list[dict[str, Any]] = []

        def connected(socket: txsio.Socket) -> None:
            def gone(reason: str, description: Any) -> None:
                ours.append({"event": "disconnect", "id": socket.id, "reason": reason,
                             "description": {"message": description.message,
                                             "type": description.type,
                                             "description": description.description}})
            socket.on("disconnect", gone)

        io.on("connection", connected)
        await self.abandon_poll(serve_io(self, io))
        await until(lambda: ours)
        self.assertEqual(len(node_events), 1)
        self.assertEqual([{k: v for k, v in e.items() if k != "id"} for e in ours],
                         [{k: v for k, v in e.items() if k != "id"} for e in node_events])
        self.assertEqual(node_events[0]["description"]["message"],
                         "poll connection closed prematurely")


class ParseErrorTests(TestCase):
    """An undecodable Socket.IO packet from a polling client, on Node's server and txsio's."""

    async def garbage(self, base: str) -> tuple[int, bytes]:
        """Join "/", POST an undecodable packet, then poll: the poll's status and body."""
        _, _, body = await fetch(base + "/socket.io/?EIO=4&transport=polling")
        sid = json.loads(body[1:])["sid"]
        url = f"{base}/socket.io/?EIO=4&transport=polling&sid={sid}"
        await fetch(url, "POST", data=b"40", content_type="text/plain;charset=UTF-8")
        await fetch(url)
        await fetch(url, "POST", data=b"49garbage", content_type="text/plain;charset=UTF-8")
        code, _, body = await fetch(url)
        return code, body

    async def test_close_packet_and_error(self) -> None:
        """Both answer the next poll with the close packet (not "Session ID unknown"), and
        the socket's "error" handlers get the parse error first."""
        node_events: list[dict[str, Any]] = []
        node = await start_node(self, {}, node_events)
        node_answer = await self.garbage(node)
        io = txsio.Server()
        seen: list[str] = []

        def connected(socket: txsio.Socket) -> None:
            socket.on("error", lambda error: seen.append(f"error {error}"))
            socket.on("disconnect", lambda reason: seen.append(f"disconnect {reason}"))

        io.on("connection", connected)
        ours = serve_io(self, io)
        # Node's poll carries a NOOP before the close packet ("6\x1e1"): the same to a client.
        self.assertEqual(node_answer, (200, b"6\x1e1"))
        self.assertEqual(await self.garbage(ours), (200, b"1"))
        await until(lambda: len(node_events) >= 2)
        self.assertEqual([e["event"] for e in node_events], ["socket-error", "disconnect"])
        self.assertEqual([s.split()[0] for s in seen], ["error", "disconnect"])
        # Node's socket.io 4.8 is the reference (issue 15): the reason is "forced close" on both.
        self.assertEqual((seen[1], node_events[1]["reason"]),
                         ("disconnect forced close", "forced close"))
