"""EngineSession: handshake, heartbeat, upgrade and close, on a Clock and a MemoryTransport."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio.engineio.packet import EngineIOParseError, Packet, PacketType
from txsio.engineio.session import (
    CloseReason,
    EngineOptions,
    EngineSession,
    SessionListener,
    SessionState,
    SessionTransport,
)
from txsio.server import Connection
from txsio.testing import MemoryTransport, TestClient

PING = Packet(PacketType.PING)
PONG = Packet(PacketType.PONG)
NOOP = Packet(PacketType.NOOP)
UPGRADE = Packet(PacketType.UPGRADE)
CLOSE = Packet(PacketType.CLOSE)
PROBE_PING = Packet(PacketType.PING, "probe")
PROBE_PONG = Packet(PacketType.PONG, "probe")


def msg(data: str | bytes) -> Packet:
    return Packet(PacketType.MESSAGE, data)


class SessionTestCase(SynchronousTestCase):
    """Helpers: a session on a fake transport, with its events recorded."""

    def make(self, *, protocol: int = 4, name: str = "polling", writable: bool = True,
             upgrades: list[str] | None = None, **options: Any) -> EngineSession:
        self.clock = Clock()
        self.transport = MemoryTransport(name, writable=True)
        self.session = EngineSession("sid1", EngineOptions(**options), protocol, self.transport,
                                     clock=self.clock)
        self.messages: list[str | bytes] = []
        self.closes: list[str] = []
        self.callbacks: list[str] = []
        self.upgrades: list[str] = []
        self.session.on("message", self.messages.append)
        self.session.on("close", self.closes.append)
        self.session.on("upgrade", self.upgrades.append)
        self.session.add_close_callback(lambda s, reason: self.callbacks.append(reason))
        self.session.open(["websocket"] if upgrades is None else upgrades)
        self.assertEqual([p.type for p in self.transport.sent], [PacketType.OPEN])
        self.transport.batches.clear()
        # polling: the open packet answered the first GET; ``writable`` says if another waits
        self.transport.writable = writable or name == "websocket"
        return self.session

    def assertOpen(self) -> None:
        self.assertIs(self.session.state, SessionState.OPEN)
        self.assertEqual(self.closes, [])

    def assertClosed(self, reason: str) -> None:
        self.assertIs(self.session.state, SessionState.CLOSED)
        self.assertEqual(self.closes, [reason])
        self.assertEqual(self.callbacks, [reason])
        self.assertEqual(self.session.close_reason, reason)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class OpenTests(SessionTestCase):
    """The open packet."""

    def test_open_packet(self) -> None:
        """The open packet carries the sid, the upgrades and the timings in milliseconds."""
        clock = Clock()
        transport = MemoryTransport("polling", writable=True)
        session = EngineSession("abc", EngineOptions(ping_interval=0.3, ping_timeout=0.2,
                                                     max_http_buffer_size=1234),
                                4, transport, clock=clock)
        session.open(["websocket"])
        [packet] = transport.sent
        self.assertIs(packet.type, PacketType.OPEN)
        assert isinstance(packet.data, str)
        self.assertEqual(json.loads(packet.data), {
            "sid": "abc", "upgrades": ["websocket"], "pingInterval": 300, "pingTimeout": 200,
            "maxPayload": 1234})

    def test_open_defaults(self) -> None:
        """With Node's defaults the open packet says 25000 / 20000 ms and 1e6 bytes."""
        clock = Clock()
        transport = MemoryTransport("polling", writable=True)
        EngineSession("s", EngineOptions(), 4, transport, clock=clock).open([])
        assert isinstance(transport.sent[0].data, str)
        opened = json.loads(transport.sent[0].data)
        self.assertEqual((opened["upgrades"], opened["pingInterval"], opened["pingTimeout"],
                          opened["maxPayload"]), ([], 25000, 20000, 1_000_000))

    def test_open_waits_for_a_get(self) -> None:
        """On polling with no GET pending, the open packet waits for the first GET."""
        clock = Clock()
        transport = MemoryTransport("polling", writable=False)
        session = EngineSession("s", EngineOptions(), 4, transport, clock=clock)
        session.open([])
        self.assertEqual(transport.sent, [])
        transport.get(session)
        self.assertEqual([p.type for p in transport.sent], [PacketType.OPEN])


class HeartbeatV4Tests(SessionTestCase):
    """EIO v4: the server pings."""

    def test_ping_at_interval(self) -> None:
        """The first ping goes out exactly ping_interval after the open."""
        self.make(name="websocket")
        self.clock.advance(24.5)
        self.assertEqual(self.transport.sent, [])
        self.clock.advance(0.5)
        self.assertEqual(self.transport.sent, [PING])

    def test_pong_resets(self) -> None:
        """A pong cancels the timeout and the next ping comes ping_interval after it."""
        self.make(name="websocket")
        beats: list[bool] = []
        self.session.on("heartbeat", lambda: beats.append(True))
        self.clock.advance(25)
        self.clock.advance(19.5)
        self.session.receive(PONG, self.transport)
        self.assertEqual(beats, [True])
        self.clock.advance(24.5)
        self.assertEqual(self.transport.sent, [PING])
        self.assertOpen()
        self.clock.advance(0.5)
        self.assertEqual(self.transport.sent, [PING, PING])
        self.session.receive(PONG, self.transport)
        self.assertOpen()

    def test_silent_client_times_out(self) -> None:
        """A client that never answers is closed with "ping timeout" at interval + timeout."""
        self.make(name="websocket")
        self.clock.advance(25)
        self.clock.advance(19.5)
        self.assertOpen()
        self.clock.advance(0.5)
        self.assertClosed(CloseReason.PING_TIMEOUT)
        self.assertEqual(self.transport.closes, [False])

    def test_silent_polling_client_times_out(self) -> None:
        """On polling the ping waits in the queue and the timeout still fires on time."""
        self.make(writable=False)
        self.clock.advance(25)
        self.clock.advance(19.5)
        self.assertOpen()
        self.clock.advance(0.5)
        self.assertClosed(CloseReason.PING_TIMEOUT)

    def test_ping_from_v4_client(self) -> None:
        """A ping from an EIO4 client is a transport error (wrong heartbeat direction)."""
        self.make(name="websocket")
        with capturedLogs() as events:
            self.session.receive(PING, self.transport)
        self.assertClosed(CloseReason.TRANSPORT_ERROR)
        self.assertTrue(any(e["log_level"] is LogLevel.warn for e in events))


class HeartbeatV3Tests(SessionTestCase):
    """EIO v3: the client pings."""

    def test_server_never_pings(self) -> None:
        """A v3 session sends no ping of its own."""
        self.make(protocol=3, name="websocket")
        self.clock.advance(25)
        self.assertEqual(self.transport.sent, [])

    def test_client_ping_answered(self) -> None:
        """A client ping is answered with a pong carrying the same data."""
        self.make(protocol=3, name="websocket")
        self.session.receive(PING, self.transport)
        self.session.receive(Packet(PacketType.PING, "x"), self.transport)
        self.assertEqual(self.transport.sent, [PONG, Packet(PacketType.PONG, "x")])
        self.assertOpen()

    def test_timeout(self) -> None:
        """A client silent for ping_interval + ping_timeout since its last ping is closed."""
        self.make(protocol=3, name="websocket")
        self.clock.advance(40)
        self.session.receive(PING, self.transport)
        self.clock.advance(44.5)
        self.assertOpen()
        self.clock.advance(0.5)
        self.assertClosed(CloseReason.PING_TIMEOUT)

    def test_timeout_without_any_ping(self) -> None:
        """A v3 client that never pings goes at ping_interval + ping_timeout after the open."""
        self.make(protocol=3, name="websocket")
        self.clock.advance(44.5)
        self.assertOpen()
        self.clock.advance(0.5)
        self.assertClosed(CloseReason.PING_TIMEOUT)

    def test_pong_from_v3_client(self) -> None:
        """A pong from an EIO3 client is a transport error."""
        self.make(protocol=3, name="websocket")
        self.session.receive(PONG, self.transport)
        self.assertClosed(CloseReason.TRANSPORT_ERROR)


class ReceiveTests(SessionTestCase):
    """Incoming packets on the session's own transport."""

    def test_message(self) -> None:
        """Text and binary messages are emitted as they are."""
        self.make(name="websocket")
        self.session.receive(msg("hi"), self.transport)
        self.session.receive(msg(b"\x00\x01"), self.transport)
        self.session.receive_message("fast", self.transport)
        self.assertEqual(self.messages, ["hi", b"\x00\x01", "fast"])

    def test_noop_ignored(self) -> None:
        """A noop from the client does nothing."""
        self.make()
        self.session.receive(NOOP, self.transport)
        self.assertOpen()

    def test_unexpected_types(self) -> None:
        """An open or upgrade packet on an established transport is a parse error."""
        for ptype in (PacketType.OPEN, PacketType.UPGRADE):
            self.make(name="websocket")
            self.session.receive(Packet(ptype), self.transport)
            self.assertClosed(CloseReason.PARSE_ERROR)

    def test_other_transport_ignored(self) -> None:
        """Packets from a transport that is neither the session's nor its probe are ignored."""
        self.make(name="websocket")
        stranger = MemoryTransport("websocket")
        self.session.receive(msg("x"), stranger)
        self.session.receive_message("x", stranger)
        self.session.receive(CLOSE, stranger)
        self.session.parse_error(stranger, "bad")
        self.session.transport_error(stranger, "bad")
        self.session.transport_closed(stranger)
        self.assertEqual(self.messages, [])
        self.assertOpen()

    def test_handler_exception_logged(self) -> None:
        """A "message" handler that raises is logged; later handlers and packets still run."""
        self.make(name="websocket")

        def broken(data: object) -> None:
            raise ZeroDivisionError("user bug")

        self.session.off("message")
        self.session.on("message", broken)
        self.session.on("message", self.messages.append)
        with capturedLogs() as events:
            self.session.receive(msg("one"), self.transport)
            self.session.receive_message("two", self.transport)
        self.assertEqual(self.messages, ["one", "two"])
        failures = [e for e in events if "log_failure" in e]
        self.assertEqual(len(failures), 2)
        self.assertEqual(failures[0]["event"], "message")
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)
        self.assertOpen()
        self.session.send("still")
        self.assertEqual(self.transport.sent, [msg("still")])

    def test_close_handler_exception(self) -> None:
        """A "close" handler that raises is logged, and the session is closed all the same."""
        self.make(name="websocket")

        def broken(reason: str) -> None:
            raise ZeroDivisionError("user bug")

        self.session.off("close")
        self.session.on("close", broken)
        self.session.on("close", self.closes.append)
        self.session.receive(CLOSE, self.transport)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertClosed(CloseReason.TRANSPORT_CLOSE)


class SendTests(SessionTestCase):
    """The send queue."""

    def test_queue_until_writable(self) -> None:
        """Messages wait for a GET, then all go out in one batch, in order."""
        self.make(writable=False)
        self.session.send("a")
        self.session.send(b"b")
        self.session.send_packets([msg("c"), msg("d")])
        self.assertEqual(self.transport.sent, [])
        self.transport.get(self.session)
        self.assertEqual(self.transport.batches, [[msg("a"), msg(b"b"), msg("c"), msg("d")]])

    def test_websocket_sends_at_once(self) -> None:
        """On a WebSocket each send is written at once."""
        self.make(name="websocket")
        self.session.send("a")
        self.session.send("b")
        self.assertEqual(self.transport.batches, [[msg("a")], [msg("b")]])

    def test_sends_after_close_ignored(self) -> None:
        """Sending on a closing or closed session does nothing."""
        self.make(writable=False)
        self.session.close()
        self.session.send("late")
        self.session.send_packets([msg("late")])
        self.transport.get(self.session)
        self.assertEqual(self.transport.sent, [])
        self.session.close_delivered(self.transport)
        self.assertClosed(CloseReason.FORCED_CLOSE)
        self.session.send("later")
        self.session.send_packets([msg("later")])
        self.session.flush()
        self.assertEqual(self.transport.sent, [])


class CloseTests(SessionTestCase):
    """Every way a session ends."""

    def test_close_with_queued_packets(self) -> None:
        """close() delivers the queue, then the close packet, then fires "forced close"."""
        self.make(writable=False)
        self.session.send("a")
        self.session.close()
        self.assertIs(self.session.state, SessionState.CLOSING)
        self.assertEqual(self.transport.closes, [True])
        self.assertEqual(self.closes, [])
        self.transport.get(self.session)
        self.assertEqual(self.transport.sent, [msg("a")])
        self.assertIs(self.session.state, SessionState.CLOSING)
        self.session.close_delivered(self.transport)
        self.assertClosed(CloseReason.FORCED_CLOSE)

    def test_closing_ignores_incoming(self) -> None:
        """A closing session drops incoming packets and has no heartbeat."""
        self.make(writable=False)
        self.session.close()
        self.session.receive(msg("x"), self.transport)
        self.session.receive_message("x", self.transport)
        self.session.receive(PING, self.transport)
        self.assertEqual(self.messages, [])
        self.assertIs(self.session.state, SessionState.CLOSING)
        self.assertEqual([c.getTime() for c in self.clock.getDelayedCalls()], [30.0])

    def test_close_with_reason(self) -> None:
        """close(reason) reports that reason once the close packet is delivered."""
        self.make(writable=False)
        self.session.close("bye")
        self.session.close_delivered(self.transport)
        self.assertClosed("bye")

    def test_close_on_websocket(self) -> None:
        """On a WebSocket, close() flushes and closes at once with "forced close"."""
        self.make(name="websocket")
        self.session.close()
        self.assertClosed(CloseReason.FORCED_CLOSE)
        self.assertEqual(self.transport.closes, [True])

    def test_close_timeout(self) -> None:
        """A close packet no GET comes for is given up after close_timeout."""
        self.make(writable=False)
        self.session.close()
        self.clock.advance(29.5)
        self.assertIs(self.session.state, SessionState.CLOSING)
        self.clock.advance(0.5)
        self.assertClosed(CloseReason.FORCED_CLOSE)

    def test_close_twice(self) -> None:
        """A second close(), terminate() or transport event after closing fires nothing."""
        self.make(name="websocket")
        self.session.close()
        self.session.close()
        self.session.terminate("again")
        self.session.transport_closed(self.transport)
        self.session.transport_error(self.transport, "x")
        self.session.parse_error(self.transport, "x")
        self.session.close_delivered(self.transport)
        self.session.receive(CLOSE, self.transport)
        self.clock.advance(1000)
        self.assertClosed(CloseReason.FORCED_CLOSE)
        self.assertEqual(self.transport.closes, [True])

    def test_closing_then_transport_closed(self) -> None:
        """A transport that goes away while the session is closing ends it as "forced close"."""
        self.make(writable=False)
        self.session.close()
        self.session.transport_closed(self.transport)
        self.assertClosed(CloseReason.FORCED_CLOSE)

    def test_client_close_packet(self) -> None:
        """A close packet from the client ends the session with "transport close"."""
        self.make(writable=False)
        self.session.send("dropped")
        self.session.receive(CLOSE, self.transport)
        self.assertClosed(CloseReason.TRANSPORT_CLOSE)
        self.transport.get(self.session)
        self.assertEqual(self.transport.sent, [])

    def test_transport_closed(self) -> None:
        """The connection going away ends the session with "transport close"."""
        self.make(name="websocket")
        self.session.transport_closed(self.transport)
        self.assertClosed(CloseReason.TRANSPORT_CLOSE)

    def test_transport_error(self) -> None:
        """A transport error ends the session with "transport error" and a warning."""
        self.make()
        with capturedLogs() as events:
            self.session.transport_error(self.transport, "overlapping GET requests")
        self.assertClosed(CloseReason.TRANSPORT_ERROR)
        warnings = [e for e in events if e["log_level"] is LogLevel.warn]
        self.assertEqual(len(warnings), 1)
        self.assertEqual(warnings[0]["sid"], "sid1")

    def test_parse_error(self) -> None:
        """A parse error ends the session with "parse error"."""
        self.make()
        self.session.parse_error(self.transport, EngineIOParseError("empty packet"))
        self.assertClosed(CloseReason.PARSE_ERROR)
        self.assertEqual(self.transport.closes, [False])

    def test_terminate(self) -> None:
        """terminate() closes at once with its reason, asking for a close packet."""
        self.make(writable=False)
        self.session.send("dropped")
        self.session.terminate(CloseReason.SERVER_SHUTTING_DOWN)
        self.assertClosed(CloseReason.SERVER_SHUTTING_DOWN)
        self.assertEqual(self.transport.closes, [True])

    def test_close_callbacks_before_event(self) -> None:
        """Close callbacks run before the "close" event."""
        self.make(name="websocket")
        order: list[str] = []
        self.session.add_close_callback(lambda s, r: order.append("callback"))
        self.session.on("close", lambda r: order.append("event"))
        self.session.transport_closed(self.transport)
        self.assertEqual(order, ["callback", "event"])


class UpgradeTests(SessionTestCase):
    """Polling → WebSocket."""

    def setUp(self) -> None:
        self.make(writable=False)
        self.probe = MemoryTransport("websocket")
        self.upgrading: list[str] = []
        self.session.on("upgrading", self.upgrading.append)

    def start_probe(self) -> None:
        self.assertTrue(self.session.can_upgrade())
        self.session.begin_upgrade(self.probe)
        self.assertTrue(self.session.upgrading)
        self.session.receive(PROBE_PING, self.probe)

    def test_probe(self) -> None:
        """ping probe gets pong probe on the probe and releases the pending GET with a noop."""
        self.transport.get(self.session)
        self.start_probe()
        self.assertEqual(self.probe.sent, [PROBE_PONG])
        self.assertEqual(self.transport.sent, [NOOP])
        self.assertEqual(self.upgrading, ["websocket"])
        self.assertIs(self.session.transport, self.transport)

    def test_upgrade(self) -> None:
        """The upgrade packet switches transports and flushes the queue on the WebSocket."""
        self.start_probe()
        self.session.send("queued")
        self.session.receive(UPGRADE, self.probe)
        self.assertIs(self.session.transport, self.probe)
        self.assertTrue(self.session.upgraded)
        self.assertFalse(self.session.upgrading)
        self.assertEqual(self.upgrades, ["websocket"])
        self.assertEqual(self.transport.closes, [False])
        self.assertEqual(self.probe.sent, [PROBE_PONG, msg("queued")])
        self.assertFalse(self.session.can_upgrade())
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 25.0)  # only the ping
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)
        self.session.receive(msg("over ws"), self.probe)
        self.session.receive(msg("over polling"), self.transport)
        self.assertEqual(self.messages, ["over ws"])

    def test_heartbeat_after_upgrade(self) -> None:
        """After the upgrade, pings go out over the WebSocket."""
        self.start_probe()
        self.session.receive(UPGRADE, self.probe)
        self.clock.advance(25)
        self.assertEqual(self.probe.sent, [PROBE_PONG, PING])
        self.session.receive(PONG, self.probe)
        self.clock.advance(44)
        self.assertOpen()

    def test_get_mid_upgrade(self) -> None:
        """A GET arriving after the probe is answered with a noop at once."""
        self.start_probe()
        self.session.send("held")
        self.transport.get(self.session)
        self.assertEqual(self.transport.sent, [NOOP])
        self.session.receive(UPGRADE, self.probe)
        self.assertEqual(self.probe.sent, [PROBE_PONG, msg("held")])

    def test_get_before_probe_ping(self) -> None:
        """Before the probe ping, a GET is served normally."""
        self.session.begin_upgrade(self.probe)
        self.session.send("a")
        self.transport.get(self.session)
        self.assertEqual(self.transport.sent, [msg("a")])

    def test_upgrade_timeout(self) -> None:
        """A client that does not finish the upgrade in time loses the probe, not the session."""
        self.start_probe()
        self.clock.advance(9.5)
        self.assertTrue(self.session.upgrading)
        self.clock.advance(0.5)
        self.assertFalse(self.session.upgrading)
        self.assertEqual(self.probe.closes, [False])
        self.assertIs(self.session.transport, self.transport)
        self.assertOpen()
        self.session.send("a")
        self.transport.get(self.session)
        self.assertEqual(self.transport.sent, [msg("a")])
        self.assertTrue(self.session.can_upgrade())

    def test_wrong_packet_on_probe(self) -> None:
        """Any other packet on the probe abandons the upgrade."""
        for packet in (msg("x"), PING, UPGRADE, CLOSE):
            self.setUp()
            self.session.begin_upgrade(self.probe)
            with capturedLogs() as events:
                self.session.receive(packet, self.probe)
            self.assertFalse(self.session.upgrading, packet)
            self.assertEqual(self.probe.closes, [False])
            self.assertTrue(any(e["log_level"] is LogLevel.warn for e in events))
            self.assertOpen()
            self.assertEqual(len(self.clock.getDelayedCalls()), 1)  # only the ping

    def test_second_probe_ping(self) -> None:
        """A second ping probe after the first abandons the upgrade."""
        self.start_probe()
        self.session.receive(PROBE_PING, self.probe)
        self.assertFalse(self.session.upgrading)
        self.assertOpen()

    def test_message_on_probe(self) -> None:
        """A message through the fast path on the probe abandons the upgrade, not emitted."""
        self.start_probe()
        self.session.receive_message("x", self.probe)
        self.assertFalse(self.session.upgrading)
        self.assertEqual(self.messages, [])

    def test_parse_error_on_probe(self) -> None:
        """Garbage on the probe abandons the upgrade and keeps the session."""
        self.start_probe()
        self.session.parse_error(self.probe, "bad")
        self.assertFalse(self.session.upgrading)
        self.assertEqual(self.probe.closes, [False])
        self.assertOpen()

    def test_probe_closes(self) -> None:
        """The probe's connection going away abandons the upgrade."""
        self.start_probe()
        self.session.transport_closed(self.probe)
        self.assertFalse(self.session.upgrading)
        self.assertEqual(self.probe.closes, [])
        self.assertOpen()
        self.assertEqual(len(self.clock.getDelayedCalls()), 1)

    def test_second_probe_refused(self) -> None:
        """A WebSocket arriving while another probes is closed at once."""
        self.session.begin_upgrade(self.probe)
        other = MemoryTransport("websocket")
        self.assertFalse(self.session.can_upgrade())
        self.session.begin_upgrade(other)
        self.assertEqual(other.closes, [False])
        self.assertIs(self.session._probe, self.probe)

    def test_close_before_probe_ping(self) -> None:
        """close() while a probe waits for its ping drops the probe and closes on polling."""
        self.session.begin_upgrade(self.probe)
        self.session.close()
        self.assertEqual(self.probe.closes, [False])
        self.assertEqual(self.transport.closes, [True])
        self.session.close_delivered(self.transport)
        self.assertClosed(CloseReason.FORCED_CLOSE)

    def test_close_during_upgrade_completes(self) -> None:
        """close() after the probe ping waits for the upgrade, then closes the WebSocket."""
        self.start_probe()
        self.session.close()
        self.assertIs(self.session.state, SessionState.CLOSING)
        self.session.receive(UPGRADE, self.probe)
        self.assertIs(self.session.transport, self.probe)
        self.assertClosed(CloseReason.FORCED_CLOSE)
        self.assertEqual(self.probe.closes, [True])

    def test_close_during_upgrade_timeout(self) -> None:
        """close() after the probe ping, then no upgrade: the close goes on over polling."""
        self.start_probe()
        self.session.close()
        self.clock.advance(10)
        self.assertEqual(self.probe.closes, [False])
        self.assertEqual(self.transport.closes, [True])
        self.session.close_delivered(self.transport)
        self.assertClosed(CloseReason.FORCED_CLOSE)

    def test_close_during_upgrade_probe_lost(self) -> None:
        """close() after the probe ping, then the probe goes: the close ends by close_timeout."""
        self.start_probe()
        self.session.close()
        self.session.transport_closed(self.probe)
        self.clock.advance(30)
        self.assertClosed(CloseReason.FORCED_CLOSE)

    def test_session_closed_during_upgrade(self) -> None:
        """A session that ends while probing closes the probe too."""
        self.start_probe()
        self.session.transport_error(self.transport, "x")
        self.assertEqual(self.probe.closes, [False])
        self.assertClosed(CloseReason.TRANSPORT_ERROR)
        self.session.receive(UPGRADE, self.probe)
        self.assertIs(self.session.transport, self.transport)

    def test_no_upgrade_from_websocket(self) -> None:
        """A session already on WebSocket cannot upgrade."""
        self.make(name="websocket")
        self.assertFalse(self.session.can_upgrade())
        probe = MemoryTransport("websocket")
        self.session.begin_upgrade(probe)
        self.assertEqual(probe.closes, [False])


class RecordingListener:
    """A SessionListener that records what the session told it, and when."""

    def __init__(self, order: list[str] | None = None, *, broken: bool = False) -> None:
        self.messages: list[str | bytes] = []
        self.reasons: list[str] = []
        self.order = order if order is not None else []
        self.broken = broken

    def on_message(self, data: str | bytes) -> None:
        self.order.append("listener")
        self.messages.append(data)
        if self.broken:
            raise ZeroDivisionError("listener bug")

    def on_close(self, reason: str) -> None:
        self.order.append("listener close")
        self.reasons.append(reason)
        if self.broken:
            raise ZeroDivisionError("listener bug")


class ListenerTests(SessionTestCase):
    """The layer above is the session's listener, called directly."""

    def test_messages_and_close(self) -> None:
        """Every message reaches the listener, packet or bare payload; the close once."""
        self.make(name="websocket")
        listener = RecordingListener()
        self.session.listener = listener
        self.session.receive(msg("packet"), self.transport)
        self.session.receive("payload", self.transport)
        self.session.receive(b"\x01", self.transport)
        self.session.receive(CLOSE, self.transport)
        self.session.receive("late", self.transport)
        self.assertEqual(listener.messages, ["packet", "payload", b"\x01"])
        self.assertEqual(listener.reasons, [CloseReason.TRANSPORT_CLOSE])
        self.assertEqual(self.messages, ["packet", "payload", b"\x01"])

    def test_listener_before_handlers(self) -> None:
        """The listener hears of a message and of the close before the users' handlers."""
        self.make(name="websocket")
        order: list[str] = []
        self.session.listener = RecordingListener(order)
        self.session.on("message", lambda data: order.append("handler"))
        self.session.on("close", lambda reason: order.append("handler close"))
        self.session.receive("x", self.transport)
        self.session.close()
        self.assertEqual(order, ["listener", "handler", "listener close", "handler close"])

    def test_listener_failure_logged(self) -> None:
        """A listener that raises is logged; the session and the users' handlers go on."""
        self.make(name="websocket")
        self.session.listener = RecordingListener(broken=True)
        self.session.receive("x", self.transport)
        self.assertEqual(self.messages, ["x"])
        self.assertOpen()
        self.session.close()
        self.assertClosed(CloseReason.FORCED_CLOSE)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 2)

    def test_probe_messages_not_delivered(self) -> None:
        """A message on an upgrade probe is not the listener's: it abandons the upgrade."""
        self.make(writable=False)
        listener = RecordingListener()
        self.session.listener = listener
        probe = MemoryTransport("websocket")
        self.session.begin_upgrade(probe)
        self.session.receive("x", probe)
        self.assertFalse(self.session.upgrading)
        self.assertEqual(listener.messages, [])


class TransportSeamTests(SessionTestCase):
    """The session asks its transport what it can do, never what it is called."""

    def test_memory_transport_provides_the_interface(self) -> None:
        """MemoryTransport, in both kinds, provides the whole SessionTransport interface."""
        for name in ("polling", "websocket"):
            self.assertIsInstance(MemoryTransport(name), SessionTransport)

    def test_listener_protocol(self) -> None:
        """A listener with on_message and on_close is a SessionListener."""
        self.assertIsInstance(RecordingListener(), SessionListener)

    def test_connection_is_the_listener(self) -> None:
        """Socket.IO's connection is given to its session as the listener, not subscribed to
        the session's events."""
        io = txsio.Server(clock=Clock())
        session = TestClient(io).session
        self.assertIsInstance(session.listener, Connection)
        self.assertIsInstance(session.listener, SessionListener)
        self.assertFalse(session.has_listeners("message"))
        self.assertFalse(session.has_listeners("close"))

    def test_upgrade_by_capability(self) -> None:
        """A transport named neither polling nor websocket that offers upgrades can be
        upgraded, and its graceful close waits for the close packet's delivery."""
        self.make(writable=False)
        self.transport.name = "long-poll"
        self.assertTrue(self.session.can_upgrade())
        self.session.close()
        self.assertIs(self.session.state, SessionState.CLOSING)
        self.session.close_delivered(self.transport)
        self.assertClosed(CloseReason.FORCED_CLOSE)

    def test_closed_at_once_by_capability(self) -> None:
        """A transport that says its graceful close is done ends the session at once."""
        self.make(name="websocket")
        self.transport.name = "custom"
        self.session.close("bye")
        self.assertClosed("bye")
        self.assertEqual(self.transport.closes, [True])


class AbandonedSocketIOTests(SynchronousTestCase):
    """A Socket.IO client that vanishes is forgotten by every table at 45 s (the defaults'
    ping_interval + ping_timeout), its Engine.IO session and its sockets alike."""

    def run_to(self, clock: Clock, until: float) -> None:
        # Step by step: a timer scheduled by a timer counts from when it fired.
        while clock.seconds() < until:
            clock.advance(min(1.0, until - clock.seconds()))

    def assertGoneAt45(self, io: txsio.Server, clock: Clock, sid: str) -> None:
        """Every table holds the client until 45 s, none after, and no timer is left."""
        self.run_to(clock, 44.9)
        self.assertIn(sid, io.engine.sessions)
        self.assertIn(sid, io.connections)
        clock.advance(0.1)
        self.assertEqual(io.engine.sessions, {})
        self.assertEqual(io.connections, {})
        self.assertEqual(io.sockets.sockets, {})
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_never_connects_a_namespace(self) -> None:
        """A client silent after the Engine.IO handshake is gone at 45 s."""
        from .sio_memory import MemoryClient

        clock = Clock()
        io = txsio.Server(clock=clock)
        client = MemoryClient(io)
        self.assertGoneAt45(io, clock, client.session.id)
        self.assertTrue(client.closed)

    def test_connected_then_silent(self) -> None:
        """A client connected to "/" that stops answering pings is disconnected with
        "ping timeout" at 45 s."""
        from .sio_memory import MemoryClient

        clock = Clock()
        io = txsio.Server(clock=clock)
        reasons: list[str] = []
        io.on("connection", lambda socket: socket.on("disconnect", reasons.append))
        client = MemoryClient(io)
        client.connect_ok()
        self.assertEqual(len(io.sockets.sockets), 1)
        self.assertGoneAt45(io, clock, client.session.id)
        self.assertEqual(reasons, ["ping timeout"])
