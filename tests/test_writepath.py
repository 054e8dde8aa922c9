"""The direct write path (:mod:`txsio.engineio._writepath`) on real TCP connections over
loopback: bytes for an idle connection leave in one ``send()`` at the end of the reactor turn,
without the reactor's writer registration; what the kernel does not take, and everything while
Twisted holds bytes, goes through Twisted's buffer, in order; producers, closes and errors
behave as Twisted's own ``write`` makes them behave.  Then the Twisted internals the path reads
are checked, the WebSocket transport is shown using it, and the loopback tests of bounded send
buffers run again on connections that take it.
"""

from __future__ import annotations

import ast
import gc
import inspect
import json
import socket
import struct
from dataclasses import dataclass
from typing import Any

from twisted.internet import tcp
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock, deferLater
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

import txsio
from txsio.engineio import _writepath
from txsio.engineio._writepath import DirectWriter, direct_writer

from . import test_backpressure
from .support import listen_loopback
from .test_backpressure import _Peer
from .test_resource import _client_frame


class _Collector(Protocol):
    """The peer: collects what it reads; :meth:`received` fires once it has ``n`` bytes."""

    def __init__(self) -> None:
        self.data = bytearray()
        #: fires with the reason's exception
        self.lost: Deferred[BaseException] = Deferred()
        self._waiting: list[tuple[int, Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for entry in list(self._waiting):
            if len(self.data) >= entry[0]:
                self._waiting.remove(entry)
                entry[1].callback(None)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(ConnectionDone() if reason is None else _value(reason))

    def received(self, n: int) -> Deferred[None]:
        if len(self.data) >= n:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((n, d))
        return d


class _Server(Protocol):
    """The server's side: reports its connection and its end."""

    def __init__(self, made: Deferred[_Server]) -> None:
        self.made = made
        #: fires with the reason's exception
        self.lost: Deferred[BaseException] = Deferred()

    def connectionMade(self) -> None:
        self.made.callback(self)

    def connectionLost(self, reason: Failure | None = None) -> None:
        self.lost.callback(ConnectionDone() if reason is None else _value(reason))


def _value(reason: Failure) -> BaseException:
    assert reason.value is not None
    return reason.value


@implementer(IPushProducer)
class _Producer:
    """A streaming producer that records what the transport tells it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class _CountingSocket:
    """A socket whose ``send`` and ``sendmsg`` calls are counted (and may be made to fail)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sends = 0
        #: how many of the sends were gathered (``sendmsg``), and their pieces
        self.gathered: list[int] = []
        self.fail: OSError | None = None

    def send(self, data: bytes) -> int:
        self.sends += 1
        if self.fail is not None:
            raise self.fail
        return self.sock.send(data)

    def sendmsg(self, pieces: list[bytes]) -> int:
        self.sends += 1
        self.gathered.append(len(pieces))
        if self.fail is not None:
            raise self.fail
        return self.sock.sendmsg(pieces)


def _pattern(n: int, seed: int) -> bytes:
    """``n`` bytes that show any reordering (a counter, not a repeated byte)."""
    return b"".join(struct.pack(">I", seed + i) for i in range(n // 4 + 1))[:n]


async def _connect(case: TestCase, wrap: bool = False) -> tuple[Any, _Collector, _Server]:
    """A loopback connection, closed when ``case`` ends: the server's transport, the peer,
    the server's protocol."""
    from twisted.internet import reactor

    made: Deferred[_Server] = Deferred()
    factory: Any = Factory.forProtocol(lambda: _Server(made))
    if wrap:
        factory = WrappingFactory(factory)
    port = listen_loopback(reactor, 0, factory)
    case.addCleanup(port.stopListening)
    peer = _Collector()
    address: Any = port.getHost()
    await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), peer)
    server = await made
    case.addCleanup(_close, peer, server)
    return server.transport, peer, server


async def _close(peer: _Collector, server: _Server) -> None:
    for side in (peer, server):
        transport: Any = side.transport
        if transport is not None and transport.connected:
            transport.abortConnection()
    await peer.lost
    await server.lost


class DirectWriterTests(TestCase):
    """A DirectWriter on a real loopback TCP connection."""

    timeout = 30

    def connect(self, wrap: bool = False) -> Any:
        return _connect(self, wrap)

    def writer(self, transport: Any, eager: bool = False,
               ) -> tuple[DirectWriter, _CountingSocket, list[int]]:
        """A writer for ``transport``, its counted socket, and the count of the transport's
        writer registrations."""
        writer = direct_writer(transport, eager=eager)
        assert writer is not None
        counting = _CountingSocket(transport.getHandle())
        writer._socket = counting
        registered = [0]
        start = transport.startWriting

        def startWriting() -> None:
            registered[0] += 1
            start()

        self.patch(transport, "startWriting", startWriting)
        return writer, counting, registered

    def small_buffers(self, transport: Any, peer: _Collector) -> None:
        """Shrink both kernel buffers and stop the peer reading, so that the kernel fills."""
        transport.getHandle().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        assert peer.transport is not None
        peer.transport.getHandle().setsockopt(  # type: ignore[attr-defined]
            socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
        peer.transport.pauseProducing()  # type: ignore[attr-defined]

    async def test_burst_in_one_send(self) -> None:
        """Three writes in one turn leave in one send() at the end of the turn, and the
        socket is never registered as a writer."""
        transport, peer, _ = await self.connect()
        writer, counting, registered = self.writer(transport)
        writer.write(b"one ")
        writer.write(b"two ")
        writer.write(b"three")
        self.assertEqual(counting.sends, 0)  # not before the turn ends
        await peer.received(13)
        self.assertEqual(bytes(peer.data), b"one two three")
        self.assertEqual((counting.sends, registered[0]), (1, 0))
        self.assertEqual(len(transport.dataBuffer) + transport._tempDataLen, 0)

    async def test_eager_first_write_at_once(self) -> None:
        """An eager writer sends its first write of a turn at once; the turn's later writes
        leave together in one send() at its end; the next turn's first write goes at once
        again.  Never a writer registration."""
        transport, peer, _ = await self.connect()
        writer, counting, registered = self.writer(transport, eager=True)
        writer.write(b"first ")
        self.assertEqual(counting.sends, 1)  # at once, before the turn ends
        writer.write(b"second ")
        writer.write(b"third ")
        self.assertEqual(counting.sends, 1)  # kept for the turn's flush
        await peer.received(19)
        self.assertEqual(bytes(peer.data), b"first second third ")
        self.assertEqual(counting.sends, 2)
        writer.write(b"next turn")
        self.assertEqual(counting.sends, 3)
        await peer.received(28)
        self.assertEqual(bytes(peer.data), b"first second third next turn")
        self.assertEqual(registered[0], 0)

    async def test_held_writes_leave_on_release(self) -> None:
        """While held, an eager writer keeps its writes; release sends them in one send(),
        at once; writes after it in the same turn wait for the turn's flush."""
        transport, peer, _ = await self.connect()
        writer, counting, registered = self.writer(transport, eager=True)
        writer.hold()
        writer.write(b"answer one, ")
        writer.write(b"answer two")
        self.assertEqual(counting.sends, 0)
        writer.release()
        self.assertEqual(counting.sends, 1)
        writer.write(b"; later")
        self.assertEqual(counting.sends, 1)
        await peer.received(29)
        self.assertEqual(bytes(peer.data), b"answer one, answer two; later")
        self.assertEqual((counting.sends, registered[0]), (2, 0))

    async def test_eager_behind_twisted_buffer(self) -> None:
        """An eager writer sends nothing at once while Twisted holds bytes for the connection:
        its writes go behind them, in order."""
        transport, peer, _ = await self.connect()
        self.small_buffers(transport, peer)
        writer, counting, _ = self.writer(transport, eager=True)
        big = _pattern(400_000, 0)
        writer.write(big)  # at once: what the kernel leaves goes to Twisted
        self.assertEqual(counting.sends, 1)
        self.assertGreater(len(transport.dataBuffer) + transport._tempDataLen, 0)
        await deferLater(transport.reactor, 0)  # a new turn: eager again, but Twisted holds
        tail = _pattern(1000, 10**6)
        writer.write(tail)
        self.assertEqual(counting.sends, 1)
        assert peer.transport is not None
        peer.transport.resumeProducing()
        await peer.received(len(big) + len(tail))
        self.assertEqual(bytes(peer.data), big + tail)

    async def test_partial_send_falls_back(self) -> None:
        """What the kernel does not take goes to Twisted's buffer (the socket registered as a
        writer); later writes queue behind it, and all arrives in order."""
        transport, peer, _ = await self.connect()
        self.small_buffers(transport, peer)
        writer, counting, registered = self.writer(transport)
        big = _pattern(400_000, 0)
        writer.write(big)  # past bufferSize: sent at once
        self.assertEqual(counting.sends, 1)
        held = len(transport.dataBuffer) + transport._tempDataLen
        self.assertGreater(held, 0)
        self.assertLess(held, len(big))
        self.assertEqual(registered[0], 1)
        tail = _pattern(1000, 10**6)
        writer.write(tail)  # behind Twisted's bytes, not kept
        self.assertEqual(len(transport.dataBuffer) + transport._tempDataLen, held + len(tail))
        assert peer.transport is not None
        peer.transport.resumeProducing()
        await peer.received(len(big) + len(tail))
        self.assertEqual(bytes(peer.data), big + tail)
        self.assertEqual(counting.sends, 1)  # the rest went through Twisted's doWrite
        # Twisted's buffer drained: the connection is idle again, and direct.
        await deferLater(transport.reactor, 0)
        before = registered[0]
        writer.write(b"again")
        await peer.received(len(big) + len(tail) + 5)
        self.assertEqual((counting.sends, registered[0]), (2, before))

    async def test_large_pieces_gathered(self) -> None:
        """Large pieces kept in one turn (a frame's header, its payload) leave in one
        sendmsg(), not joined first; small ones are joined into one send()."""
        transport, peer, _ = await self.connect()
        writer, counting, registered = self.writer(transport)
        pieces = [b"text frame", b"header", _pattern(30_000, 0)]
        for piece in pieces:
            writer.write(piece)
        await peer.received(sum(map(len, pieces)))
        self.assertEqual(bytes(peer.data), b"".join(pieces))
        self.assertEqual((counting.sends, counting.gathered, registered[0]), (1, [3], 0))
        writer.write(b"small ")
        writer.write(b"ones")
        await peer.received(sum(map(len, pieces)) + 10)
        self.assertEqual((counting.sends, counting.gathered), (2, [3]))
        self.assertEqual(bytes(peer.data)[-10:], b"small ones")

    async def test_many_pieces_joined(self) -> None:
        """More pieces than one sendmsg() gathers are joined into one send()."""
        transport, peer, _ = await self.connect()
        writer, counting, _ = self.writer(transport)
        pieces = [_pattern(400, 400 * i) for i in range(100)]  # 40 KB in 100 pieces
        for piece in pieces:
            writer.write(piece)
        await peer.received(40_000)
        self.assertEqual(bytes(peer.data), b"".join(pieces))
        self.assertEqual((counting.sends, counting.gathered), (1, []))

    async def test_partial_gathered_send_falls_back(self) -> None:
        """What the kernel does not take of a gathered send — a piece cut anywhere — goes to
        Twisted's buffer, in order, and arrives after what was sent."""
        transport, peer, _ = await self.connect()
        self.small_buffers(transport, peer)
        writer, counting, registered = self.writer(transport)
        pieces = [_pattern(10, 0), _pattern(20_000, 10**6), _pattern(300_000, 2 * 10**6),
                  _pattern(70_000, 3 * 10**6)]
        for piece in pieces[:-1]:
            writer.write(piece)  # the third is past bufferSize: all sent at once
        self.assertEqual((counting.sends, counting.gathered), (1, [3]))
        held = len(transport.dataBuffer) + transport._tempDataLen
        self.assertGreater(held, 0)
        self.assertLess(held, 320_010)
        self.assertEqual(registered[0], 1)
        writer.write(pieces[-1])  # behind Twisted's bytes
        assert peer.transport is not None
        peer.transport.resumeProducing()
        await peer.received(sum(map(len, pieces)))
        self.assertEqual(bytes(peer.data), b"".join(pieces))
        self.assertEqual(counting.sends, 1)

    def test_unsent(self) -> None:
        """What is left of pieces once some bytes are sent, cut at every boundary."""
        pieces = [b"ab", b"cde", b"", b"f"]
        whole = b"".join(pieces)
        for sent in range(len(whole) + 1):
            rest = _writepath._unsent(pieces, sent)
            self.assertEqual(b"".join(rest), whole[sent:], sent)
        self.assertEqual(_writepath._unsent(pieces, 2), [b"cde", b"", b"f"])

    async def test_no_room_leaves_to_twisted(self) -> None:
        """A send the kernel refuses (its buffer full: EAGAIN) leaves the bytes to Twisted,
        which sends them, in order, once the peer reads."""
        transport, peer, _ = await self.connect()
        self.small_buffers(transport, peer)
        filler = bytearray()
        sock = transport.getHandle()
        while True:
            chunk = _pattern(4096, len(filler))
            try:
                sent = sock.send(chunk)
            except BlockingIOError:
                break
            filler += chunk[:sent]
        writer, counting, registered = self.writer(transport)
        writer.write(b"after")
        await deferLater(transport.reactor, 0)  # the turn's flush: EAGAIN
        self.assertEqual(counting.sends, 1)
        self.assertEqual((transport._tempDataLen, registered[0]), (5, 1))
        assert peer.transport is not None
        peer.transport.resumeProducing()
        await peer.received(len(filler) + 5)
        self.assertEqual(bytes(peer.data), bytes(filler) + b"after")

    async def test_producer_paused_and_resumed(self) -> None:
        """A streaming producer is paused once more than bufferSize bytes wait in user space
        (kept or in Twisted's buffer), and resumed when Twisted's buffer is empty."""
        transport, peer, _ = await self.connect()
        self.small_buffers(transport, peer)
        producer = _Producer()
        transport.registerProducer(producer, True)
        writer, _, _ = self.writer(transport)
        chunk = _pattern(8192, 0)
        written = 0
        while "pause" not in producer.calls:
            writer.write(chunk)
            written += len(chunk)
            self.assertLess(written, 10_000_000)
        self.assertGreater(len(transport.dataBuffer) + transport._tempDataLen,
                           transport.bufferSize)
        assert peer.transport is not None
        peer.transport.resumeProducing()
        await peer.received(written)
        await deferLater(transport.reactor, 0)
        self.assertEqual(producer.calls, ["pause", "resume"])
        self.assertEqual(bytes(peer.data), chunk * (written // len(chunk)))
        transport.unregisterProducer()

    async def test_lose_connection_after_writes(self) -> None:
        """Bytes written before loseConnection are sent before the connection closes, whether
        the close comes in the same turn (from a timed call) or after a flush."""
        transport, peer, server = await self.connect()
        writer, _, _ = self.writer(transport)
        done: Deferred[None] = Deferred()

        def timed() -> None:
            # A timed call: its turn's flush runs after one more poll, so the writer's own
            # caller flushes before closing (as FastServerProtocol._closeConnection does).
            writer.write(b"last words")
            writer.flush()
            transport.loseConnection()
            done.callback(None)

        transport.reactor.callLater(0, timed)
        await done
        reason = await peer.lost
        self.assertEqual(bytes(peer.data), b"last words")
        self.assertIsInstance(reason, ConnectionDone)
        await server.lost

    async def test_kept_bytes_after_lose_connection_go_first(self) -> None:
        """Bytes kept when loseConnection comes (without a flush) go to Twisted's buffer at
        the turn's flush, which sends them before it closes."""
        transport, peer, _ = await self.connect()
        writer, _, _ = self.writer(transport)
        writer.write(b"kept")
        transport.loseConnection()
        await peer.lost
        self.assertEqual(bytes(peer.data), b"kept")

    async def test_half_close_after_writes(self) -> None:
        """Bytes written before the write side shuts down (loseWriteConnection), kept or in
        Twisted's buffer, are sent before it shuts down, in order."""
        transport, peer, _ = await self.connect()
        writer, _, _ = self.writer(transport)
        writer.write(b"half")
        transport.loseWriteConnection()
        writer.write(b" more")  # Twisted's buffer: sent before the shutdown, as Twisted does
        reason = await peer.lost
        self.assertEqual(bytes(peer.data), b"half more")
        self.assertIsInstance(reason, ConnectionDone)

    async def test_abort_drops_kept_bytes(self) -> None:
        """Bytes kept when the connection is aborted are not sent (Twisted drops its buffer
        on an abort)."""
        transport, peer, _ = await self.connect()
        writer, counting, _ = self.writer(transport)
        writer.write(b"never")
        transport.abortConnection()
        await peer.lost
        self.assertEqual((bytes(peer.data), counting.sends), (b"", 0))

    async def test_reset_peer_connection_lost(self) -> None:
        """A send to a peer that reset the connection ends in connectionLost with
        ConnectionLost, reported by Twisted as for a failed write of its own."""
        transport, peer, server = await self.connect()
        writer, counting, _ = self.writer(transport)
        transport.stopReading()  # so that the server learns of the reset by writing
        assert peer.transport is not None
        peer.transport.getHandle().setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        peer.transport.loseConnection()  # closing with a zero linger: a reset
        await peer.lost
        writer.write(b"to nobody")
        reason = await server.lost
        self.assertEqual(counting.sends, 1)
        self.assertIsInstance(reason, ConnectionLost)

    async def test_error_reported_when_send_fails(self) -> None:
        """Any send error but "no room" ends in connectionLost, whatever the kernel says
        next."""
        transport, _, server = await self.connect()
        writer, counting, _ = self.writer(transport)
        counting.fail = ConnectionResetError(104, "reset")
        transport.socket.shutdown(socket.SHUT_WR)  # Twisted's own send fails too (EPIPE)
        writer.write(b"x")
        reason = await server.lost
        self.assertIsInstance(reason, ConnectionLost)

    async def test_only_plain_tcp(self) -> None:
        """A wrapped transport, a TLS one, one whose class writes otherwise and a test's
        transport keep the normal path."""
        wrapper, _, _ = await self.connect(wrap=True)
        self.assertIsInstance(wrapper, ProtocolWrapper)
        self.assertIsNone(direct_writer(wrapper))
        wrapped = wrapper.transport
        self.assertIsInstance(wrapped, tcp.Server)
        self.assertIsNotNone(direct_writer(wrapped))
        self.assertIsNone(direct_writer(StringTransport()))

        class Writing(tcp.Server):
            def writeSomeData(self, data: bytes) -> int:
                return 0

        self.patch(wrapped, "__class__", Writing)
        self.assertIsNone(direct_writer(wrapped))
        self.patch(wrapped, "__class__", tcp.Server)
        self.patch(wrapped, "TLS", True)
        self.assertIsNone(direct_writer(wrapped))


class TwistedInternalsTests(TestCase):
    """The Twisted internals the write path touches are listed, and all still exist."""

    timeout = 30

    async def test_each_internal_exists(self) -> None:
        """Every listed internal is an attribute of an open Twisted TCP connection, and its
        writing methods are still Twisted's own (a Twisted upgrade that moves one, or that
        would leave the path unused, fails here)."""
        transport, _, _ = await _connect(self)
        self.assertIsNotNone(direct_writer(transport))
        for name in _writepath.TWISTED_INTERNALS:
            self.assertTrue(hasattr(transport, name), f"Twisted has no {name}")
        self.assertEqual(transport.dataBuffer, b"")
        self.assertEqual(transport._tempDataLen, 0)

    def test_list_is_complete(self) -> None:
        """The write path reads no attribute of the transport beyond the public API and the
        listed internals."""
        tree = ast.parse(inspect.getsource(_writepath))
        read = {node.attr for node in ast.walk(tree)
                if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id == "transport"}
        public = {"write", "writeSequence", "getHandle", "stopReading", "bufferSize", "reactor"}
        self.assertEqual(read - public - set(_writepath.TWISTED_INTERNALS), set())


class _WSPeer(_Peer):
    """A raw WebSocket client of the Socket.IO namespace ``/`` that also keeps every byte it
    reads, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = bytearray()

    def dataReceived(self, data: bytes) -> None:
        self.raw += data
        super().dataReceived(data)


class WebSocketTests(TestCase):
    """The WebSocket transport writes through the direct path on a plain TCP connection."""

    timeout = 30

    async def test_broadcast_and_close(self) -> None:
        """A broadcast reaches every socket without writer registration, and a message
        written right before a server-side disconnect arrives before the close frame."""
        from twisted.internet import reactor

        io = txsio.Server(clock=Clock())
        peers = await _connected_peers(self, io, 3)
        sessions = [io.engine.sessions[peer.sid] for peer in peers]
        protocols: list[Any] = [session.transport for session in sessions]
        transports = [protocol.transport for protocol in protocols]
        registered = [0]
        for transport in transports:
            self.assertIsNotNone(transport.protocol._direct)
            start = transport.startWriting

            def counted(start: Any = start) -> None:
                registered[0] += 1
                start()

            self.patch(transport, "startWriting", counted)
        marks = [len(peer.raw) for peer in peers]
        io.emit("news", {"n": 1})
        frame = b"\x81" + bytes((len('42["news",{"n":1}]'),)) + b'42["news",{"n":1}]'
        for peer, mark in zip(peers, marks, strict=True):
            await peer.wait_for(lambda p=peer: p.events == 1)  # type: ignore[misc]
            self.assertEqual(bytes(peer.raw[mark:]), frame)
        self.assertEqual(registered[0], 0)
        # A timed call writes and disconnects in the same turn: the message, then the
        # Socket.IO disconnect packet, then the close frame.
        first = next(iter(io.connections[peers[0].sid].sockets.values()))
        done: Deferred[None] = Deferred()

        def timed() -> None:
            first.emit("bye", json.dumps("x"))
            first.disconnect(close=True)
            done.callback(None)

        mark = len(peers[0].raw)
        reactor.callLater(0, timed)
        await done
        await peers[0].wait_for(lambda: b"\x88" in peers[0].raw[mark:])
        tail = bytes(peers[0].raw[mark:])
        self.assertLess(tail.index(b'42["bye"'), tail.index(b"41"))
        self.assertLess(tail.index(b"41"), tail.index(b"\x88"))


    async def test_answers_to_one_read_in_one_send(self) -> None:
        """Three events asking for acks in one TCP segment are answered in one send(), as
        soon as the read is handled; a broadcast one of them causes reaches another
        connection at once, while the read is still being handled."""

        io = txsio.Server(clock=Clock())
        sends_at_broadcast: list[int] = []

        @io.on("connection")
        def connected(socket: txsio.Socket) -> None:
            socket.on("echo", lambda data: data)

            @socket.on("shout")
            def shout() -> str:
                socket.broadcast.emit("heard", 1)
                sends_at_broadcast.append(counted[1].sends)
                return "shouted"

        peers = await _connected_peers(self, io, 2)
        counted = []
        for peer in peers:
            transport: Any = io.engine.sessions[peer.sid].transport.transport  # type: ignore
            counting = _CountingSocket(transport.getHandle())
            transport.protocol._direct._socket = counting
            counted.append(counting)
        mark = len(peers[0].raw)
        assert peers[0].transport is not None
        peers[0].transport.write(b"".join(
            _client_frame(text)
            for text in (b'421["echo","a"]', b'422["shout"]', b'423["echo","b"]')))
        await peers[0].wait_for(lambda: peers[0].raw.count(b"43", mark) >= 3)
        await peers[1].wait_for(lambda: peers[1].events == 1)
        tail = bytes(peers[0].raw[mark:])
        self.assertLess(tail.index(b'431["a"]'), tail.index(b'432["shouted"]'))
        self.assertLess(tail.index(b'432["shouted"]'), tail.index(b'433["b"]'))
        self.assertEqual(counted[0].sends, 1)  # the three acks, together
        self.assertEqual(sends_at_broadcast, [1])  # the other connection's frame: at once
        self.assertEqual(counted[1].sends, 1)


async def _connected_peers(case: TestCase, io: txsio.Server, n: int) -> list[_WSPeer]:
    """``io`` served on a loopback port (a twisted.web ``Site``) and ``n`` raw WebSocket peers
    connected to its namespace ``/``, all closed when ``case`` ends."""
    from twisted.internet import reactor

    root = Resource()
    root.putChild(b"socket.io", io.resource())
    port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")  # type: ignore
    case.addCleanup(port.stopListening)
    address: Any = port.getHost()
    peers = []
    for _ in range(n):
        peer = _WSPeer()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", address.port), peer)
        case.addCleanup(_abort, peer)
        await peer.wait_for(lambda p=peer: b'40{"sid"' in p.raw)  # type: ignore[misc]
        peers.append(peer)
    return peers


async def _abort(peer: _Peer) -> None:
    transport: Any = peer.transport
    if transport is not None and transport.connected:
        transport.abortConnection()
    await peer.lost


@dataclass
class _PlainSite:
    """Where a plain Site listens (what LoopbackTests reads of its site)."""

    port: int


class DirectLoopbackTests(test_backpressure.LoopbackTests):
    """The loopback tests of bounded send buffers again, on connections that take the direct
    write path: a plain Site on listenTCP (as twistd sio and the benchmarks serve), where the
    tests' own server wraps each connection."""

    def setUp(self) -> None:
        super().setUp()
        listening = self.reactor.listenTCP(0, Site(self.site.site.resource),
                                           interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        self.site = _PlainSite(listening.getHost().port)  # type: ignore[assignment]

    async def connect(self, count: int) -> list[_Peer]:
        """As LoopbackTests connects, each server side on the direct write path."""
        peers = await super().connect(count)
        for peer in peers:
            protocol: Any = self.session(peer).transport
            self.assertIsNotNone(protocol._direct)
        return peers


class TurnTests(SynchronousTestCase):
    """The turn's flush: one timed call for all connections, on the transport's reactor."""

    def test_one_call_per_turn(self) -> None:
        """Writers that keep bytes in one turn share one callLater(0); a failing one does
        not keep the others' bytes."""
        clock = Clock()
        turn = _writepath._Turn(clock)
        flushed: list[str] = []

        class Fake:
            def __init__(self, name: str, fail: bool = False) -> None:
                self.name = name
                self.fail = fail

            def flush(self) -> None:
                if self.fail:
                    raise RuntimeError("boom")
                flushed.append(self.name)

        for writer in (Fake("a"), Fake("b", fail=True), Fake("c")):
            turn.add(writer)  # type: ignore[arg-type]
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual(flushed, ["a", "c"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_reactor_not_kept(self) -> None:
        """The turns are kept by reactor without keeping the reactor: a test's goes with it."""
        clock = Clock()
        turn = _writepath._turn_of(clock)
        self.assertIs(_writepath._turn_of(clock), turn)
        before = len(_writepath._turns)
        del clock
        gc.collect()
        self.assertEqual(len(_writepath._turns), before - 1)

    def test_generation_counts_turns(self) -> None:
        """An eager send schedules the turn's end, which counts a generation; a send made
        by the turn's own flush schedules nothing more."""
        clock = Clock()
        turn = _writepath._Turn(clock)
        turn.sent()
        turn.sent()
        self.assertEqual(len(clock.getDelayedCalls()), 1)
        clock.advance(0)
        self.assertEqual((turn.generation, clock.getDelayedCalls()), (1, []))

        class Sending:
            def flush(self) -> None:
                turn.sent()  # as a writer's flush from the turn's end does

        turn.add(Sending())  # type: ignore[arg-type]
        clock.advance(0)
        self.assertEqual((turn.generation, clock.getDelayedCalls()), (2, []))
