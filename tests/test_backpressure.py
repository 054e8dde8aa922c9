"""Bounded send buffers and backpressure (issue 12, items 4 and 5).

A session's send queue is counted in bytes and bounded by ``max_buffered_bytes``: past it the
session closes with ``"send buffer full"``.  A WebSocket is not writable while its TCP
transport pauses it (Twisted's producer API), and stops reading from its peer meanwhile; a
polling POST waits while the queue is congested.  The tests run on a Clock and in memory,
except the last ones, on real connections over loopback.
"""

from __future__ import annotations

import json
import math
import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.interfaces import IConsumer, IPushProducer, ITCPTransport
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock, deferLater
from twisted.logger import LogLevel, capturedLogs
from twisted.protocols.policies import ProtocolWrapper
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.resource import Resource
from zope.interface import implementer

import txsio
from txsio import tap
from txsio.engineio import CloseReason, EngineServer, EngineSession
from txsio.engineio.packet import Packet, PacketType
from txsio.engineio.session import EngineOptions
from txsio.engineio.websocket import EngineWebSocketProtocol, _SendFlow
from txsio.testing import MemoryTransport, TestClient

from .support import serve
from .test_resource import ResourceTestCase, WebSocketClient, _client_frame, _WSTransport
from .test_session import SessionTestCase, msg

FULL = CloseReason.SEND_BUFFER_FULL


class OptionTests(SynchronousTestCase):
    """``max_buffered_bytes``: its default, its checks and its way through every layer."""

    def test_default(self) -> None:
        """A few MiB by default, for Engine.IO, Socket.IO and twistd sio alike."""
        self.assertEqual(EngineOptions().max_buffered_bytes, 4 * 1024 * 1024)
        self.assertEqual(txsio.Server(clock=Clock()).engine.options.max_buffered_bytes,
                         4 * 1024 * 1024)
        options = tap.Options()
        options.parseOptions([])
        self.assertEqual(options["max-buffered-bytes"], 4 * 1024 * 1024)

    def test_passed_through(self) -> None:
        """txsio.Server and twistd sio hand the option to the Engine.IO server."""
        io = txsio.Server(clock=Clock(), max_buffered_bytes=5000)
        self.assertEqual(io.engine.options.max_buffered_bytes, 5000)
        options = tap.Options()
        options.parseOptions(["--max-buffered-bytes", "65536"])
        self.assertEqual(options["max-buffered-bytes"], 65536)
        service = tap.makeService(options, reactor=Clock())
        self.assertEqual(service.io.engine.options.max_buffered_bytes, 65536)

    def test_refused(self) -> None:
        """Zero, negative or non-integral bounds are refused."""
        for bad in (0, -1):
            self.assertRaises(ValueError, EngineOptions, max_buffered_bytes=bad)
            self.assertRaises(ValueError, EngineServer, clock=Clock(), max_buffered_bytes=bad)
        for text in ("0", "-5", "1.5", "x", "4MiB"):
            options = tap.Options()
            self.assertRaises(usage.UsageError, options.parseOptions,
                              ["--max-buffered-bytes", text])


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


# -- WebSocket, in memory --------------------------------------------------------------------


class _FlowTransport(_WSTransport):
    """A StringTransport playing a TCP transport's flow control: its streaming producer is
    paused once more than ``buffer_size`` bytes wait to be sent, and resumed by
    :meth:`drain` (the kernel took everything), as Twisted's ``FileDescriptor`` does."""

    buffer_size = 2000
    waiting = 0
    producer_paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        self.waiting += len(data)
        if (self.waiting > self.buffer_size and self.producer is not None and self.streaming
                and not self.producer_paused):
            self.producer_paused = True
            self.producer.pauseProducing()

    def drain(self) -> None:
        self.waiting = 0
        if self.producer_paused and self.producer is not None:
            self.producer_paused = False
            self.producer.resumeProducing()


class _FlowClient(WebSocketClient):
    """A WebSocket client whose transport plays TCP flow control."""

    transport_class = _FlowTransport
    transport: _FlowTransport


class WebSocketFlowTests(ResourceTestCase):
    """The WebSocket transport on Twisted's producer API."""

    def connect(self, **options: Any) -> tuple[_FlowClient, EngineSession]:
        self.start(**options)
        client = _FlowClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(client.status, 101)
        client.frames()
        client.transport.drain()
        [session] = self.sessions
        return client, session

    def test_producer_registered(self) -> None:
        """The connection is its TCP transport's streaming producer."""
        client, _ = self.connect()
        self.assertIsInstance(client.transport.producer, _SendFlow)
        self.assertTrue(client.transport.streaming)

    def test_paused_queues_and_stops_reading(self) -> None:
        """Paused, the connection is not writable: messages wait in the session, and the peer
        is not read; drained, the queue is written until the transport pauses again, and the
        peer is read again once everything is written."""
        client, session = self.connect()
        protocol: EngineWebSocketProtocol = client.protocol
        session.send("a" * 2500)  # past the transport's buffer: it pauses
        self.assertTrue(protocol.paused)
        self.assertFalse(protocol.writable)
        self.assertEqual(client.transport.producerState, "paused")
        for i in range(6):
            session.send(f"{i}" * 999)
        self.assertEqual(session.buffered_bytes, 6000)
        self.assertEqual(client.texts(), ["4" + "a" * 2500])
        # Each drain: two 1004-byte frames fill the 2000-byte buffer, the second pauses it.
        for left in (4000, 2000, 0):
            client.transport.drain()
            self.assertEqual(len(client.texts()), 2)
            self.assertEqual(session.buffered_bytes, left)
            self.assertEqual(client.transport.producerState, "paused")
        client.transport.drain()
        self.assertEqual(client.texts(), [])
        self.assertTrue(protocol.writable)
        self.assertEqual(client.transport.producerState, "producing")

    def test_past_the_mark_aborts(self) -> None:
        """Past the bound the session closes with "send buffer full" and the TCP connection
        is aborted, not closed behind what the peer does not read."""
        client, session = self.connect(max_buffered_bytes=5000)
        session.send("a" * 2500)
        for _ in range(5):
            session.send("b" * 999)
        self.assertEqual(self.closed, {})
        session.send("c")
        self.assertEqual(self.closed, {session.id: FULL})
        self.assertTrue(client.transport.disconnected)
        self.assertEqual(self.server.stats.send_buffer_full, 1)

    def test_graceful_close_reads_again(self) -> None:
        """A close while paused sends the close frame and reads again, for the peer's answer."""
        client, session = self.connect()
        session.send("a" * 2500)
        session.close()
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(self.closed, {session.id: CloseReason.FORCED_CLOSE})

    def test_acks_of_a_flood(self) -> None:
        """A client flooding events with acks it does not read: its acks wait in the session
        once the transport pauses, and it is no longer read."""
        io = txsio.Server(clock=Clock())
        io.on("connection", lambda socket: socket.on("echo", lambda data: data))
        client = _FlowClient(io.engine, "EIO=4&transport=websocket")
        client.send_text("40")
        client.frames()
        client.transport.drain()
        [session] = io.engine.sessions.values()
        event = json.dumps("x" * 1000)
        client.protocol.dataReceived(b"".join(
            _client_frame(f'42{i}["echo",{event}]'.encode()) for i in range(10)))
        self.assertEqual(client.transport.producerState, "paused")
        self.assertEqual(len(client.texts()), 2)  # the second ack paused the transport
        self.assertEqual(session.buffered_bytes, 8 * (len(event) + 5))  # 3<id>[...]
        for _ in range(4):  # two acks a time, the second pausing the transport again
            client.transport.drain()
            self.assertEqual(client.transport.producerState, "paused")
        self.assertEqual(session.buffered_bytes, 0)
        client.transport.drain()
        self.assertEqual(client.transport.producerState, "producing")
        self.assertEqual(len(client.texts()), 8)


# -- polling, over in-memory HTTP --------------------------------------------------------------


class PollingBoundTests(ResourceTestCase):
    """A polling session's queue and its POSTs."""

    echo = False

    def fill(self, session: EngineSession, size: int) -> None:
        """Queue ``size`` bytes (one message) for the client."""
        session.send("q" * (size - 1))

    def held_post(self, body: bytes) -> tuple[str, EngineSession, Deferred[Any]]:
        """A session bounded at 1000 bytes with 501 waiting, and a POST of ``body`` started."""
        self.start(max_buffered_bytes=1000)
        sid, _ = self.handshake()
        [session] = self.sessions
        self.fill(session, 501)
        return sid, session, self.start_request("POST", self.url(sid), data=body)

    def test_queue_bound(self) -> None:
        """A client that stops polling is closed once its queue passes the bound; its next
        GET is for an unknown session."""
        self.start(max_buffered_bytes=1000)
        sid, _ = self.handshake()
        [session] = self.sessions
        self.fill(session, 600)
        self.fill(session, 400)
        self.assertEqual(self.closed, {})
        self.fill(session, 1)
        self.assertEqual(self.closed, {sid: FULL})
        self.assertError(self.get(sid), 1)

    def test_post_held_while_congested(self) -> None:
        """A POST arriving while more than half the bound waits is held, unread, until a GET
        takes the queue; then it is read and answered."""
        sid, session, pending = self.held_post(b"4hello")
        received: list[str | bytes] = []
        session.on("message", received.append)
        self.assertNoResult(pending)
        self.assertEqual(received, [])
        response = self.get(sid)
        self.assertEqual(response.text, "4" + "q" * 500)
        self.assertEqual(received, ["hello"])
        self.assertEqual(self.finish(pending).text, "ok")
        self.assertEqual(self.post(sid, "4again").text, "ok")
        self.assertEqual(received, ["hello", "again"])

    def test_post_not_held_under_half(self) -> None:
        """Half the bound waiting or less, a POST is read at once."""
        self.start(max_buffered_bytes=1000)
        sid, _ = self.handshake()
        self.fill(self.sessions[0], 500)
        self.assertEqual(self.post(sid, "4x").text, "ok")

    def test_second_post_while_held(self) -> None:
        """A POST while another is held overlaps it: refused with a bare 400 (Node's engine.io
        6 is the reference; a JSON body with code 3 before), and the session closes."""
        sid, _, pending = self.held_post(b"4one")
        response = self.post(sid, "4two")
        self.assertEqual((response.code, response.body), (400, b""))
        self.assertEqual(self.closed, {sid: CloseReason.TRANSPORT_ERROR})
        self.assertEqual(self.finish(pending).json()["code"], 1)

    def test_held_post_when_the_session_closes(self) -> None:
        """A held POST whose session closes is answered as for an unknown session."""
        sid, session, pending = self.held_post(b"4late")
        self.fill(session, 600)
        self.assertEqual(self.closed, {sid: FULL})
        response = self.finish(pending)
        self.assertEqual((response.code, response.json()["code"]), (400, 1))

    def test_held_post_whose_client_goes(self) -> None:
        """A held POST whose client goes away closes the session with "transport error", as
        Node closes a session whose POST goes before it is answered."""
        sid, _, pending = self.held_post(b"4gone")
        pending.cancel()
        self.stub.flush()
        self.failureResultOf(pending, ResponseNeverReceived)
        self.assertEqual(self.closed, {sid: CloseReason.TRANSPORT_ERROR})


# -- over loopback -----------------------------------------------------------------------------


def _server_frames_from(buffer: bytearray) -> list[tuple[int, bytes]]:
    """The complete unmasked frames at the start of ``buffer``, removed from it."""
    frames = []
    pos = 0
    while len(buffer) - pos >= 2:
        length = buffer[pos + 1] & 0x7F
        head = 2
        if length == 126:
            head = 4
            length = int.from_bytes(buffer[pos + 2:pos + 4], "big")
        elif length == 127:
            head = 10
            length = int.from_bytes(buffer[pos + 2:pos + 10], "big")
        if len(buffer) - pos < head + length:
            break
        frames.append((buffer[pos] & 0x0F, bytes(buffer[pos + head:pos + head + length])))
        pos += head + length
    del buffer[:pos]
    return frames


def _small_buffers(transport: Any) -> None:
    """Shrink a TCP connection's kernel buffers, which are not the server's memory, so that
    they fill after a few messages and what the test measures is the server's own buffering."""
    handle = transport.getHandle()
    for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
        handle.setsockopt(socket.SOL_SOCKET, option, 32768)


def _twisted_buffered(protocol: Any) -> int:
    """What the server's TCP transport holds for a connection, read from Twisted's private
    buffer: the test's own check of what the producer signals let the server bound."""
    tcp = protocol.transport
    if isinstance(tcp, ProtocolWrapper):  # serve()'s tracking of connections
        tcp = tcp.transport
    return int(len(tcp.dataBuffer) - tcp.offset + tcp._tempDataLen)


def _rss_mib() -> float:
    """This process's resident memory, in MiB (Linux), for the figures the tests print."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return math.nan


class _Peer(Protocol):
    """A raw WebSocket client of a Socket.IO server on loopback: it connects to ``/``, then
    reads frames as they come, or stops reading (:meth:`stop_reading`)."""

    def __init__(self) -> None:
        self.sid = ""
        self.events = 0
        self.buffer = bytearray()
        self.upgraded = False
        self.lost: Deferred[None] = Deferred()
        self._waiting: list[tuple[Callable[[], bool], Deferred[None]]] = []

    def connectionMade(self) -> None:
        assert self.transport is not None
        self.transport.write(
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, sep, _ = bytes(self.buffer).partition(b"\r\n\r\n")
            if not sep:
                return
            self.upgraded = True
            del self.buffer[:len(head) + 4]
        for opcode, payload in _server_frames_from(self.buffer):
            if opcode != 1:
                continue
            if payload.startswith(b"0{"):
                self.sid = json.loads(payload[1:])["sid"]
                self.send(b"40")
            elif payload.startswith(b"42"):
                self.events += 1
        for entry in list(self._waiting):
            if entry[0]():
                self._waiting.remove(entry)
                entry[1].callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback(None)

    def send(self, text: bytes) -> None:
        assert self.transport is not None
        self.transport.write(_client_frame(text))

    def wait_for(self, predicate: Callable[[], bool]) -> Deferred[None]:
        """A Deferred firing once ``predicate()`` holds after something arrived."""
        if predicate():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((predicate, d))
        return d

    def stop_reading(self) -> None:
        """Play a client that stops reading."""
        assert self.transport is not None
        _small_buffers(self.transport)
        IPushProducer(self.transport).pauseProducing()


@implementer(IPushProducer)
class _Flood:
    """Writes events asking for acks to ``peer`` as fast as its transport takes them, up to
    ``cap`` bytes; paused and resumed by the transport (the client's own flow control)."""

    def __init__(self, peer: _Peer, cap: int) -> None:
        self.peer = peer
        self.cap = cap
        self.sent = 0
        self.paused = False
        self._id = 0
        self._argument = json.dumps("x" * 1000)

    def start(self) -> None:
        transport = self.peer.transport
        assert transport is not None
        IConsumer(transport).registerProducer(self, True)
        self.resumeProducing()

    def pauseProducing(self) -> None:
        self.paused = True

    def stopProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        transport = self.peer.transport
        assert transport is not None
        while not self.paused and self.sent < self.cap:
            frames = []
            for _ in range(32):
                self._id += 1
                frames.append(_client_frame(f'42{self._id}["echo",{self._argument}]'.encode()))
            chunk = b"".join(frames)
            self.sent += len(chunk)
            transport.write(chunk)


class LoopbackTests(TestCase):
    """Real connections on loopback: slow consumers are disconnected past the bound while the
    others keep receiving; a flood of events whose acks are not read stops being read."""

    timeout = 60
    MARK = 1024 * 1024

    def setUp(self) -> None:
        from twisted.internet import reactor

        self.reactor: Any = reactor
        self.io = txsio.Server(clock=Clock(), max_buffered_bytes=self.MARK)
        self.io.engine.resource()._ws_factory.setProtocolOptions(openHandshakeTimeout=0,
                                                                 closeHandshakeTimeout=0)
        root = Resource()
        root.putChild(b"socket.io", self.io.resource())
        self.site = serve(root)
        self.addCleanup(self.site.stop)

    async def connect(self, count: int) -> list[_Peer]:
        """``count`` clients connected to ``/``, the server's side of each with small kernel
        buffers."""
        peers = []
        for _ in range(count):
            peer = _Peer()
            await connectProtocol(TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.site.port),
                                  peer)
            self.addCleanup(self.abort, peer)
            await peer.wait_for(lambda p=peer: p.sid in self.io.connections  # type: ignore
                                and bool(self.io.connections[p.sid].sockets))
            server_side: Any = self.session(peer).transport
            _small_buffers(server_side.transport)
            peers.append(peer)
        return peers

    def session(self, peer: _Peer) -> EngineSession:
        return self.io.engine.sessions[peer.sid]

    def abort(self, peer: _Peer) -> Deferred[None]:
        if peer.transport is not None and not peer.lost.called:
            ITCPTransport(peer.transport).abortConnection()
        return peer.lost

    async def until(self, predicate: Callable[[], bool], what: str) -> None:
        """Check ``predicate`` every 50 ms until it holds, for at most 20 s."""
        for _ in range(400):
            if predicate():
                return
            await deferLater(self.reactor, 0.05)
        self.fail(f"not within 20 s: {what}")

    async def test_slow_consumers(self) -> None:
        """Four clients that stop reading get 100 kB broadcasts until each is disconnected
        with "send buffer full" (logged once, counted), the server holding at most the mark
        plus one message for each; two clients that read get every broadcast."""
        reasons: dict[str, str] = {}
        self.io.on("connection", lambda s: s.on(
            "disconnect", lambda reason: reasons.__setitem__(s.conn.id, reason)))
        slow = await self.connect(4)
        good = await self.connect(2)
        for peer in slow:
            peer.stop_reading()
        payload = "b" * 100_000
        most_queued = most_in_twisted = 0
        before = _rss_mib()
        with capturedLogs() as events:
            for i in range(40):
                self.io.emit("big", payload)
                for peer in slow:
                    session = self.io.engine.sessions.get(peer.sid)
                    if session is not None:
                        most_queued = max(most_queued, session.buffered_bytes)
                        most_in_twisted = max(most_in_twisted,
                                              _twisted_buffered(session.transport))
                for peer in good:
                    await peer.wait_for(lambda p=peer, n=i + 1: p.events >= n)  # type: ignore
        print(f"\nslow consumers: RSS {before:.1f} -> {_rss_mib():.1f} MiB; most queued "
              f"{most_queued} B, most in Twisted {most_in_twisted} B")
        self.assertEqual(reasons, {peer.sid: "send buffer full" for peer in slow})
        self.assertEqual(self.io.engine.stats.send_buffer_full, 4)
        self.assertEqual([peer.events for peer in good], [40, 40])
        self.assertEqual(sorted(self.io.engine.sessions), sorted(p.sid for p in good))
        self.assertLessEqual(most_queued, self.MARK)
        self.assertLessEqual(most_in_twisted, 64 * 1024 + 100_020)
        warned = [e for e in events if e.get("log_level") is LogLevel.warn
                  and "wait for a client" in e.get("log_format", "")]
        self.assertEqual(len(warned), 4)

    async def test_ack_flood_rounds(self) -> None:
        """Round after round, three clients flood events with acks (1 kB arguments) and never
        read: each stops being read, what the server holds for each stays bounded, and each
        round's sessions go when their clients do."""
        handled: dict[str, int] = {}

        def connected(socket: txsio.Socket) -> None:
            def echo(data: str) -> str:
                sid = socket.conn.id  # the Engine.IO session's
                handled[sid] = handled.get(sid, 0) + 1
                return data

            socket.on("echo", echo)

        self.io.on("connection", connected)
        figures = [await self.flood_round(handled) for _ in range(3)]
        print("\nack flood rounds (queued, in Twisted, events handled, bytes sent, RSS MiB):")
        for row in figures:
            print(f"  {row}")

    async def flood_round(self, handled: dict[str, int]) -> tuple[Any, ...]:
        """One round of the ack flood, checked; its figures."""
        cap = 8 * 1024 * 1024
        peers = await self.connect(3)
        floods = []
        for peer in peers:
            peer.stop_reading()
            flood = _Flood(peer, cap)
            flood.start()
            floods.append(flood)
        protocols: list[Any] = [self.session(peer).transport for peer in peers]
        await self.until(lambda: all(f.paused or f.sent >= cap for f in floods)
                         and all(p.paused for p in protocols), "the floods stall")
        queued = [self.session(peer).buffered_bytes for peer in peers]
        in_twisted = [_twisted_buffered(p) for p in protocols]
        for flood in floods:
            self.assertLess(flood.sent, cap)  # not read past what the kernel holds
        for count in queued:
            self.assertLessEqual(count, self.MARK)
        for count in in_twisted:
            self.assertLessEqual(count, 64 * 1024 + 2048)
        for peer in peers:
            await self.abort(peer)
        await self.until(lambda: not self.io.engine.sessions, "the sessions close")
        return (queued, in_twisted, [handled[p.sid] for p in peers], [f.sent for f in floods],
                round(_rss_mib(), 1))
