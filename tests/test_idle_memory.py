"""What an idle connection holds: of Autobahn's protocol, shared options, no initial state or
handshake leftovers, a list for the write queue (and the Autobahn internals that relies on);
the strings handshake records share; no set of namespaces being joined once joined; the
heartbeat timers of all sessions queued behind one reactor timer; sessions and connections in
slots."""

from __future__ import annotations

import gc
import weakref
from collections import deque
from typing import Any

import txaio.tx
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import AlreadyCalled
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio import _timers
from txsio.engineio import _wslean
from txsio.engineio.packet import PacketType as EnginePacketType

from .sio_memory import MemoryClient
from .test_resource import ResourceTestCase, WebSocketClient, _client_frame

_HANDSHAKE = (
    b"GET /ws?x=1 HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Version: 13\r\nOrigin: http://127.0.0.1\r\n\r\n")


def _stock_open_protocol() -> Any:
    """A stock Autobahn server connection, opened over an in-memory transport."""
    factory = WebSocketServerFactory()
    factory.protocol = WebSocketServerProtocol
    factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
    protocol: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    protocol.makeConnection(StringTransport())
    protocol.dataReceived(_HANDSHAKE)
    assert protocol.state == protocol.STATE_OPEN
    return protocol


class AutobahnInternalsTests(SynchronousTestCase):
    """The Autobahn internals _wslean relies on are where it expects them."""

    def test_options_copied_unless_present(self) -> None:
        """Autobahn's options are its CONFIG_ATTRS, and it copies none the connection's class
        already has."""
        self.assertIn("maxMessagePayloadSize", WebSocketServerProtocol.CONFIG_ATTRS)
        factory = WebSocketServerFactory()
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        cls = _wslean.options_class(WebSocketServerProtocol, factory)
        protocol = cls()
        protocol.factory = factory
        protocol.makeConnection(StringTransport())
        self.assertEqual(set(vars(protocol)) & set(cls.CONFIG_ATTRS), set())

    def test_handshake_leftovers_and_idle_state(self) -> None:
        """An open stock connection holds each handshake leftover, each listed state
        attribute at its listed value, and its write queue as a deque."""
        state = vars(_stock_open_protocol())
        for name in _wslean.HANDSHAKE_LEFTOVERS:
            self.assertIn(name, state)
        for name, value in _wslean.IDLE_STATE.items():
            self.assertIn(name, state)
            self.assertEqual((name, state[name]), (name, value))
        self.assertIsInstance(state["send_queue"], deque)
        self.assertEqual((state["_valid_events"], state["_results"]),
                         (["message"], {"message": None}))
        validator = state["utf8validator"]
        validator.reset()
        self.assertTrue(validator.validate("é".encode())[0])

    def test_every_internal_listed(self) -> None:
        """AUTOBAHN_INTERNALS names each internal the module relies on."""
        listed = set(_wslean.AUTOBAHN_INTERNALS)
        self.assertTrue({"CONFIG_ATTRS", "send_queue"} <= listed)
        self.assertTrue(set(_wslean.HANDSHAKE_LEFTOVERS) <= listed)
        self.assertTrue(set(_wslean.IDLE_STATE) <= listed)


class SendQueueTests(SynchronousTestCase):
    """The write queue is a list with deque's popleft."""

    def test_fifo(self) -> None:
        """Writes come out in the order they were queued."""
        queue = _wslean.SendQueue()
        queue.append(1)
        queue.append(2)
        self.assertEqual((len(queue), queue.popleft(), queue.popleft(), len(queue)), (2, 1, 2, 0))


class LeanConnectionTests(ResourceTestCase):
    """An Engine.IO WebSocket connection holds no copy of the options, initial state or
    handshake once open, and behaves as before."""

    echo = False

    def connect(self, headers: dict[str, str] | None = None) -> WebSocketClient:
        client = WebSocketClient(self.server, "EIO=4&transport=websocket", headers)
        self.assertEqual(client.status, 101)
        return client

    def test_options_shared(self) -> None:
        """The connection reads its factory's options from its class, not its own copies."""
        protocol = self.connect().protocol
        factory = protocol.factory
        for name in protocol.CONFIG_ATTRS:
            self.assertNotIn(name, vars(protocol))
            self.assertEqual((name, getattr(protocol, name)), (name, getattr(factory, name)))
        self.assertEqual(protocol.maxMessagePayloadSize,
                         self.server.options.max_http_buffer_size)

    def test_options_changed_later(self) -> None:
        """Options changed on the factory apply to the connections made afterwards; an open
        one keeps those it was made with, as with Autobahn."""
        first = self.connect().protocol
        first.factory.setProtocolOptions(maxFramePayloadSize=1234)
        self.assertNotEqual(first.maxFramePayloadSize, 1234)
        second = self.connect().protocol
        self.assertIs(second.factory, first.factory)
        self.assertEqual(second.maxFramePayloadSize, 1234)
        first.factory.resetProtocolOptions()
        self.assertEqual(self.connect().protocol.maxFramePayloadSize, 0)

    def test_open_connection_sheds(self) -> None:
        """Once open, the connection holds no handshake leftover and no state attribute at
        its idle value; reading them gives None and the idle values."""
        protocol = self.connect().protocol
        state = vars(protocol)
        for name in _wslean.HANDSHAKE_LEFTOVERS:
            self.assertNotIn(name, state)
            self.assertIsNone(getattr(protocol, name))
        for name, value in _wslean.IDLE_STATE.items():
            self.assertNotIn(name, state)
            self.assertEqual(getattr(protocol, name), value)
        self.assertNotIn("admission", state)
        self.assertNotIn("utf8validator", state)
        self.assertNotIn("_valid_events", state)
        self.assertNotIn("_results", state)
        protocol.on("message", lambda *args: None)
        self.assertRaises(RuntimeError, protocol.on, "bogus", lambda *args: None)
        self.assertIsInstance(protocol.send_queue, _wslean.SendQueue)

    def test_compression_offer(self) -> None:
        """A client offering permessage-deflate still connects (the factory's accept function
        is called as a function) and its session opens."""
        client = self.connect({"Sec-WebSocket-Extensions": "permessage-deflate"})
        self.assertEqual([text[:1] for text in client.texts()], ["0"])
        self.assertEqual(len(self.sessions), 1)

    def test_messages_after_shedding(self) -> None:
        """Messages flow both ways after the connection shed its state, and state set
        later (a close) is the connection's own again."""
        client = self.connect()
        client.texts()
        session = self.sessions[0]
        received: list[Any] = []
        session.on("message", received.append)
        client.send_text("4hello")
        session.send("world")
        self.assertEqual((received, client.texts()), (["hello"], ["4world"]))
        session.close()
        self.assertTrue(client.protocol.closedByMe)
        self.assertFalse(type(client.protocol).closedByMe)

    def test_validator_made_on_use(self) -> None:
        """A text message Autobahn reads itself (a fragmented one: the fast path reads only
        whole messages) is validated by a validator made for it, kept for the next; invalid
        UTF-8 still fails the connection."""
        client = self.connect()
        client.texts()
        session = self.sessions[0]
        received: list[Any] = []
        session.on("message", received.append)
        text = "4" + "é" * 40_000
        client.protocol.dataReceived(_fragmented(text.encode()))
        client.protocol.dataReceived(_fragmented(text.encode()))
        self.assertEqual(received, [text[1:]] * 2)
        validator = vars(client.protocol)["utf8validator"]
        client.protocol.dataReceived(_fragmented(b"4" + b"\xff" * 70_000))
        self.assertIs(vars(client.protocol)["utf8validator"], validator)
        self.assertEqual(len(received), 2)
        self.assertEqual(client.protocol.wasNotCleanReason[:24], "I dropped the WebSocket ")

    def test_synced_writes_through_list_queue(self) -> None:
        """Autobahn's synced writes go through the list queue in order, one per reactor
        turn."""
        clock = Clock()
        self.patch(txaio.tx.config, "loop", clock)
        client = self.connect()
        client.transport.clear()
        client.protocol.sendData(b"a", sync=True)
        client.protocol.sendData(b"b", sync=True)
        self.assertEqual(client.transport.value(), b"a")
        clock.advance(1)
        self.assertEqual(client.transport.value(), b"ab")
        clock.advance(1)
        self.assertEqual(len(client.protocol.send_queue), 0)


class SharedRecordStringsTests(ResourceTestCase):
    """The handshake records of many sessions share one copy of the strings that recur."""

    def test_records_share_strings(self) -> None:
        """Two sessions' records hold the same string objects for the header names, the
        values that recur, the query and the address; not the per-request WebSocket key."""
        for _ in range(2):
            self.assertEqual(WebSocketClient(self.server, "EIO=4&transport=websocket").status,
                             101)
        first, second = (session.request for session in self.sessions)
        for name in first.headers:
            other = next(key for key in second.headers if key == name)
            self.assertIs(other, name)
        self.assertIs(first.headers["upgrade"], second.headers["upgrade"])
        self.assertIsNot(first.headers["sec-websocket-key"],
                         second.headers["sec-websocket-key"])
        self.assertIs(first.query["transport"], second.query["transport"])
        self.assertIs(first.url, second.url)
        self.assertIs(first.address, second.address)

    def test_bounded(self) -> None:
        """Once the shared strings are at their bound, new ones are not kept."""
        from txsio.engineio import handshake

        self.patch(handshake, "_SHARED", {})
        self.patch(handshake, "_SHARED_MAX", 1)
        self.assertEqual(handshake._shared("a" * 3), "aaa")
        self.assertEqual(handshake._shared("b" * 3), "bbb")
        self.assertEqual(list(handshake._SHARED), ["aaa"])

    def test_long_header_names_not_kept(self) -> None:
        """A header name too long to be shared is not kept in the cache of names either: a
        client sending new long names cannot pin up to _SHARED_MAX of them (twisted.web lets
        a name run to its 16 KiB header limit) nor fill the cache for the usual names."""
        from txsio.engineio import handshake

        self.patch(handshake, "_NAMES", {})
        long_name = "X-" + "a" * (handshake._SHARED_LENGTH + 1)
        self.assertEqual(WebSocketClient(self.server, "EIO=4&transport=websocket",
                                         {long_name: "1"}).status, 101)
        record = self.sessions[-1].request
        self.assertIn(long_name.lower(), record.headers)  # still read
        self.assertTrue(all(len(name) <= handshake._SHARED_LENGTH
                            for name in handshake._NAMES))
        self.assertIn(b"Upgrade", handshake._NAMES)  # the usual names are still cached


class ConnectingTests(SynchronousTestCase):
    """A connection keeps a set of the namespaces being joined only while there are any."""

    def test_joined(self) -> None:
        """A CONNECT repeated while the first waits for a middleware is ignored; once
        joined, the connection holds no set."""
        io = txsio.Server(clock=Clock())
        waiting: Deferred[None] = Deferred()
        io.use(lambda socket: waiting)
        client = MemoryClient(io)
        client.connect()
        client.connect()
        waiting.callback(None)
        self.assertEqual(len(io.sockets.sockets), 1)
        conn = next(iter(io.sockets.sockets.values())).conn
        self.assertIsNone(conn._connecting)


class TimerQueueTests(SynchronousTestCase):
    """Timers of one delay fire as callLater would, behind one reactor timer."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.fired: list[tuple[str, float]] = []

    def record(self, name: object) -> None:
        self.fired.append((str(name), self.clock.seconds()))

    def test_clock_not_kept(self) -> None:
        """The table of queues does not keep a clock alive: once the last reference to a
        clock goes (its timers fired or cancelled), so does its entry."""
        clock = Clock()
        _timers.call_later(clock, 5, self.record, "a").cancel()
        fired = _timers.call_later(clock, 7, self.record, "b")
        clock.advance(7)
        self.assertIsNone(fired.getTime() if fired.active() else None)
        gone = weakref.ref(clock)
        del clock
        gc.collect()
        self.assertIsNone(gone())

    def test_fire_in_time_and_order(self) -> None:
        """Timers set at different times fire each at its time plus the delay, those due
        together in the order set, behind a single reactor timer."""
        queue = _timers.timer_queue(self.clock, 10)
        self.assertIs(_timers.timer_queue(self.clock, 10), queue)
        queue.call_later(self.record, "a")
        queue.call_later(self.record, "b")
        self.clock.advance(3)
        timer = _timers.call_later(self.clock, 10, self.record, "c")
        self.assertEqual(timer.getTime(), 13)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.clock.advance(7)
        self.assertEqual(self.fired, [("a", 10), ("b", 10)])
        self.assertTrue(timer.active())
        self.clock.advance(3)
        self.assertEqual(self.fired[2:], [("c", 13)])
        self.assertFalse(timer.active())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_cancel(self) -> None:
        """A cancelled timer does not fire, cancelling it again raises as a DelayedCall
        does, and with its last timer cancelled the queue leaves no reactor timer."""
        first = _timers.call_later(self.clock, 5, self.record, "a")
        second = _timers.call_later(self.clock, 5, self.record, "b")
        first.cancel()
        self.assertRaises(AlreadyCalled, first.cancel)
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        second.cancel()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.clock.advance(10)
        self.assertEqual(self.fired, [])

    def test_set_while_firing(self) -> None:
        """A timer set by a timer's callback fires a full delay later."""
        queue = _timers.timer_queue(self.clock, 4)

        def again(name: object) -> None:
            self.record(name)
            if name == "a":
                queue.call_later(self.record, "b")

        queue.call_later(again, "a")
        self.clock.advance(4)
        self.clock.advance(4)
        self.assertEqual(self.fired, [("a", 4), ("b", 8)])

    def test_failure_logged(self) -> None:
        """A callback that raises is logged and the others due with it still fire."""
        def broken(name: object) -> None:
            raise RuntimeError(name)

        _timers.call_later(self.clock, 1, broken, "a")
        _timers.call_later(self.clock, 1, self.record, "b")
        self.clock.advance(1)
        self.assertEqual(self.fired, [("b", 1)])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_sessions_share_the_ping_timer(self) -> None:
        """Three sessions on one clock wait for their pings behind one reactor timer, and
        each is pinged at its own time."""
        io = txsio.Server(clock=self.clock)
        clients = [MemoryClient(io)]
        self.clock.advance(1)
        clients += [MemoryClient(io), MemoryClient(io)]
        self.assertEqual([call.getTime() for call in self.clock.getDelayedCalls()
                          if 25 <= call.getTime() < 45], [25])  # not the connect timeouts

        def pings() -> list[int]:
            return [sum(packet.type is EnginePacketType.PING for packet in client.transport.sent)
                    for client in clients]

        self.clock.advance(24)
        self.assertEqual(pings(), [1, 0, 0])
        self.clock.advance(1)
        self.assertEqual(pings(), [1, 1, 1])


class SessionSlotsTests(SynchronousTestCase):
    """An Engine.IO session and a Socket.IO connection keep their state in slots, and still
    take attributes of one's own and weak references."""

    def test_slots(self) -> None:
        """The session's state is not in an attribute dict; an attribute of one's own works,
        and so does a weak reference."""
        session = MemoryClient(txsio.Server(clock=Clock())).session
        session.user = "someone"  # type: ignore[attr-defined]
        self.assertEqual(vars(session), {"user": "someone"})
        self.assertIs(weakref.ref(session)(), session)

    def test_connection_slots(self) -> None:
        """So does a Socket.IO connection (``socket.conn``)."""
        io = txsio.Server(clock=Clock())
        MemoryClient(io).connect_ok()
        conn = next(iter(io.sockets.sockets.values())).conn
        conn.user = "someone"  # type: ignore[attr-defined]
        self.assertEqual(vars(conn), {"user": "someone"})
        self.assertIs(weakref.ref(conn)(), conn)


def _fragmented(text: bytes) -> bytes:
    """A text message in two fragments (RFC 6455 section 5.4), masked."""
    first = bytearray(_client_frame(text[:10]))
    first[0] = 0x01  # not FIN, text
    last = bytearray(_client_frame(text[10:], 0))  # FIN, continuation
    return bytes(first + last)
