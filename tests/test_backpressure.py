"""Bounded send buffers and backpressure (issue 12, items 4 and 5).

A session's send queue is counted in bytes and bounded by ``max_buffered_bytes``: past it the
session closes with ``"send buffer full"``.  A WebSocket is not writable while its TCP
transport pauses it (Twisted's producer API), and stops reading from its peer meanwhile; a
polling POST waits while the queue is congested.  The tests run on a Clock and in memory.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio.engineio import CloseReason, EngineServer, EngineSession
from txsio.engineio.packet import Packet, PacketType
from txsio.engineio.session import EngineOptions
from txsio.testing import MemoryTransport, TestClient

from .test_session import SessionTestCase, msg

FULL = CloseReason.SEND_BUFFER_FULL


class OptionTests(SynchronousTestCase):
    """``max_buffered_bytes``: its default, its checks and its way through every layer."""

    def test_default(self) -> None:
        """A few MiB by default, for Engine.IO, Socket.IO and twistd sio alike."""
        self.assertEqual(EngineOptions().max_buffered_bytes, 4 * 1024 * 1024)
        self.assertEqual(txsio.Server(clock=Clock()).engine.options.max_buffered_bytes,
                         4 * 1024 * 1024)

    def test_passed_through(self) -> None:
        """txsio.Server and twistd sio hand the option to the Engine.IO server."""
        io = txsio.Server(clock=Clock(), max_buffered_bytes=5000)
        self.assertEqual(io.engine.options.max_buffered_bytes, 5000)

    def test_refused(self) -> None:
        """Zero, negative or non-integral bounds are refused."""
        for bad in (0, -1):
            self.assertRaises(ValueError, EngineOptions, max_buffered_bytes=bad)
            self.assertRaises(ValueError, EngineServer, clock=Clock(), max_buffered_bytes=bad)


class SessionBoundTests(SessionTestCase):
    """The session's queue, counted in bytes and bounded."""

    def test_counted(self) -> None:
        """What waits is counted (payload and type byte) and written when the peer reads."""
        session = self.make(name="websocket", max_buffered_bytes=1000)
        self.transport.pause()
        session.send("a" * 99)
        session.send(b"\x01" * 49)
        self.assertEqual(session.buffered_bytes, 150)
        self.assertEqual(self.transport.sent, [])
        self.transport.resume(session)
        self.assertEqual(self.transport.sent, [msg("a" * 99), msg(b"\x01" * 49)])
        self.assertEqual(session.buffered_bytes, 0)
        self.assertOpen()

    def test_at_the_mark(self) -> None:
        """Exactly max_buffered_bytes waiting is within the bound."""
        session = self.make(name="websocket", max_buffered_bytes=300)
        self.transport.pause()
        for _ in range(3):
            session.send("x" * 99)
        self.assertEqual(session.buffered_bytes, 300)
        self.assertOpen()

    def test_past_the_mark(self) -> None:
        """One byte past the mark closes the session with "send buffer full", logged once,
        its queue dropped and its transport closed at once."""
        session = self.make(name="websocket", max_buffered_bytes=300)
        self.transport.pause()
        with capturedLogs() as events:
            for _ in range(3):
                session.send("x" * 99)
            session.send("y")
            session.send("z" * 1000)  # closed: ignored
        self.assertClosed(FULL)
        self.assertEqual(session.buffered_bytes, 0)
        self.assertEqual(self.transport.closes, [False])
        warnings = [e for e in events if e["log_level"] is LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual((warnings[0]["queued"], warnings[0]["limit"]), (302, 300))
        self.assertEqual(str(FULL), "send buffer full")

    def test_polling_queue(self) -> None:
        """A polling session whose client stops polling has the same bound on its queue."""
        session = self.make(max_buffered_bytes=1000, writable=False)
        for _ in range(9):
            session.send("m" * 99)
        self.assertOpen()
        self.assertTrue(session.congested)
        session.send("m" * 99)
        self.assertOpen()
        session.send("!")
        self.assertClosed(FULL)

    def test_packets_and_pings_counted(self) -> None:
        """Every packet counts, whichever way it was queued: pings, several packets at once,
        a broadcast's packets."""
        session = self.make(max_buffered_bytes=1000, writable=False)
        session.send_packets([msg("ab"), msg("cd")])
        self.clock.advance(25)  # the ping
        self.assertEqual(session.buffered_bytes, 3 + 3 + 1)
        self.transport.get(session)
        self.assertEqual(session.buffered_bytes, 0)
        self.assertEqual(len(self.transport.sent), 3)

    def test_congested(self) -> None:
        """Congested once more than half the bound waits."""
        session = self.make(name="websocket", max_buffered_bytes=200)
        self.transport.pause()
        session.send("x" * 99)
        self.assertFalse(session.congested)
        session.send("")
        self.assertTrue(session.congested)


class _Partial(MemoryTransport):
    """A WebSocket-like memory transport that takes ``take`` packets of a batch, then pauses
    (as a WebSocket does when its TCP buffer fills midway)."""

    take = 2

    def send(self, data: Any) -> bool:
        if not isinstance(data, list) or len(data) <= self.take:
            return super().send(data)
        super().send(data[:self.take])
        del data[:self.take]
        self.writable = False
        return False


class PartialFlushTests(SessionTestCase):
    """A transport that takes only the first packets of the queue."""

    def test_rest_stays_counted(self) -> None:
        """The rest stays queued, in order, counted; each resume writes the next part."""
        self.clock = Clock()
        transport = _Partial("websocket")
        session = EngineSession("sid1", EngineOptions(max_buffered_bytes=10_000), 4, transport,
                                clock=self.clock)
        session.open([])
        transport.pause()
        for i in range(5):
            session.send(f"{i}" * 10)
        self.assertEqual(session.buffered_bytes, 55)
        transport.resume(session)
        self.assertEqual(session.buffered_bytes, 33)
        transport.resume(session)
        self.assertEqual(session.buffered_bytes, 11)
        session.send("5" * 10)
        self.assertEqual(session.buffered_bytes, 22)
        transport.resume(session)
        self.assertEqual(session.buffered_bytes, 0)
        self.assertEqual([p.data for p in transport.sent[1:]],
                         [f"{i}" * 10 for i in range(6)])


class PacketSizeTests(SynchronousTestCase):
    """What a packet counts for."""

    def test_sizes(self) -> None:
        """Payload length plus one for the type; nothing more for an empty packet."""
        from txsio.engineio.session import _size

        self.assertEqual(_size([Packet(PacketType.PING)]), 1)
        self.assertEqual(_size([msg("abc"), msg(b"\x00\x01")]), 4 + 3)


class SocketIOTests(SynchronousTestCase):
    """What the Socket.IO layer sees of the bound."""

    def test_volatile_dropped_others_queued(self) -> None:
        """While the client does not read, volatile events are dropped and the others wait;
        past the bound its sockets disconnect with "send buffer full", counted by the engine."""
        io = txsio.Server(clock=Clock(), max_buffered_bytes=2000)
        reasons: list[str] = []
        io.on("connection", lambda socket: socket.on("disconnect", reasons.append))
        client = TestClient(io)
        sock = self.successResultOf(client.connect())
        transport = client._transport
        transport.pause()
        io.volatile.emit("tick", "v" * 500)
        self.assertEqual(client.session.buffered_bytes, 0)
        io.emit("news", "n" * 500)
        queued = client.session.buffered_bytes
        self.assertGreater(queued, 500)
        transport.resume(client.session)
        self.assertEqual(sock.events("news"), [("n" * 500,)])
        self.assertEqual(sock.events("tick"), [])
        transport.pause()
        for _ in range(4):
            io.emit("news", "n" * 500)
        self.assertEqual(reasons, ["send buffer full"])
        self.assertEqual(io.engine.stats.send_buffer_full, 1)
        self.assertEqual(io.engine.sessions, {})
        self.assertEqual(io.sockets.sockets, {})
