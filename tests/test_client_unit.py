"""The client without a network: backoff, the Engine.IO client's state machine over fake
transports, polling over in-memory HTTP (treq's StubTreq), and the Socket.IO client's
connection flow, buffering, acks, retries, reconnection and recovery, all on a ``Clock``."""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Sequence
from typing import Any

from hypothesis import given
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

import txsio
from txsio.client import Backoff, Manager
from txsio.engineio import EngineServer
from txsio.engineio.client import (
    ClientTransport,
    EngineClient,
    EngineState,
    EngineURL,
    TransportError,
    TransportState,
    WebSocketTransport,
)
from txsio.engineio.packet import Packet as EPacket
from txsio.engineio.packet import PacketType as EType
from txsio.protocol import Decoder, encode
from txsio.protocol import Packet as SPacket
from txsio.protocol import PacketType as SType

from .typed import delayed_calls, recorded

URL = "http://127.0.0.1:9"


# -- fakes ----------------------------------------------------------------------------------


class FakeTransport(ClientTransport):
    """A transport the test plays the server of.

    ``sent`` holds what the client wrote; :meth:`accept`, :meth:`deliver`, :meth:`fail`,
    :meth:`server_close` act as the server; with ``auto_drain`` off, :meth:`drain` finishes
    a write (as a POST's response would).
    """

    def __init__(self, name: str, query: dict[str, str], clock: Clock) -> None:
        super().__init__(query, clock=clock, close_timeout=1.0)
        self.name = name
        self.sent: list[EPacket] = []
        self.auto_drain = True
        self.opened = False
        self.closed_by_client = False
        self.discarded = False
        self.writes = 0
        self._paused: Any = None

    def _do_open(self) -> None:
        self.opened = True

    def _do_close(self) -> None:
        self.closed_by_client = True

    def _do_discard(self) -> None:
        self.discarded = True

    def _write(self, packets: Any) -> None:
        self.writes += 1
        self.sent.extend(packets)
        self.writable = False
        if self.auto_drain:
            self.drain()

    def _cut(self) -> None:
        pass

    def _io_done(self) -> bool:
        return True

    def pause(self, on_paused: Any) -> None:
        # As polling: paused once the write in flight is done.
        self._paused = on_paused
        self.state = TransportState.PAUSING
        if self.writable:
            self._pause_now()

    def _pause_now(self) -> None:
        self.state = TransportState.PAUSED
        callback, self._paused = self._paused, None
        if callback is not None:
            callback()

    # -- the server's side -----------------------------------------------------------------

    def drain(self) -> None:
        self.writable = True
        if self.state is TransportState.PAUSING:
            self._pause_now()
        else:
            self._on_drain()

    def accept(self) -> None:
        self._on_open()

    def deliver(self, *packets: EPacket) -> None:
        for packet in packets:
            self._on_packet(packet)

    def fail(self, message: str = "xhr poll error", description: Any = None) -> None:
        self._on_error(message, description)

    def server_close(self) -> None:
        self._on_close("transport closed by the server")

    def messages(self) -> list[str | bytes]:
        return [p.data for p in self.sent if p.type is EType.MESSAGE and p.data is not None]


class Transports:
    """A transport factory that keeps every transport it made."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.made: list[FakeTransport] = []

    def __call__(self, name: str, query: dict[str, str]) -> FakeTransport:
        transport = FakeTransport(name, query, self.clock)
        self.made.append(transport)
        return transport

    @property
    def last(self) -> FakeTransport:
        return self.made[-1]


def handshake(transport: FakeTransport, sid: str = "e1", *, upgrades: list[str] | None = None,
              ping_interval: int = 25000, ping_timeout: int = 20000,
              max_payload: int = 1000000) -> None:
    """Open *transport* and deliver the Engine.IO handshake on it."""
    transport.accept()
    transport.deliver(EPacket(EType.OPEN, json.dumps({
        "sid": sid, "upgrades": upgrades or [], "pingInterval": ping_interval,
        "pingTimeout": ping_timeout, "maxPayload": max_payload})))


# -- backoff --------------------------------------------------------------------------------


class BackoffTests(SynchronousTestCase):
    """``Backoff``: socket.io-client's ``backo2`` formula, in seconds."""

    def test_sequence(self) -> None:
        """Without jitter the delays double from ``min`` and stop at ``max``."""
        backoff = Backoff(1.0, 5.0, 0)
        self.assertEqual([backoff.duration() for _ in range(6)], [1, 2, 4, 5, 5, 5])
        self.assertEqual(backoff.attempts, 6)
        backoff.reset()
        self.assertEqual(backoff.duration(), 1)

    def test_jitter_direction(self) -> None:
        """One draw both sizes the deviation and picks its direction (even tenth: down)."""
        down = Backoff(1.0, 100.0, 0.5, random=lambda: 0.25)  # floor(2.5) = 2: down
        self.assertEqual(down.duration(), (1000 - 125) / 1000)
        up = Backoff(1.0, 100.0, 0.5, random=lambda: 0.35)  # floor(3.5) = 3: up
        self.assertEqual(up.duration(), (1000 + 175) / 1000)

    def test_huge_attempts(self) -> None:
        """Thousands of attempts do not overflow; the cap holds."""
        backoff = Backoff(1.0, 5.0, 0.5, random=lambda: 0.99)
        backoff.attempts = 5000
        self.assertEqual(backoff.duration(), 5.0)

    def test_out_of_range_jitter_is_none(self) -> None:
        """A jitter outside (0, 1] means none, as in ``backo2``."""
        self.assertEqual(Backoff(1.0, 10.0, 1.5, random=lambda: 0.5).duration(), 1.0)

    @given(st.floats(0, 1, exclude_max=True), st.floats(0.01, 1),
           st.integers(0, 12), st.floats(0.001, 10), st.floats(0.001, 60))
    def test_jitter_bounds(self, rand: float, jitter: float, attempts: int, low: float,
                           high: float) -> None:
        """Each delay is within ``jitter`` of ``min * 2**n``, never above ``max``, in whole
        milliseconds."""
        backoff = Backoff(low, high, jitter, random=lambda: rand)
        backoff.attempts = attempts
        base = low * 1000 * 2**attempts
        ms = backoff.duration() * 1000
        self.assertLessEqual(ms, high * 1000 + 1e-6)
        self.assertGreaterEqual(ms, min(base * (1 - jitter), high * 1000) - 1.001)
        self.assertLessEqual(ms, base * (1 + jitter) + 1e-6)
        self.assertAlmostEqual(ms, round(ms), places=6)


# -- the Engine.IO client -------------------------------------------------------------------


class EngineCase(SynchronousTestCase):
    """An ``EngineClient`` over fake transports, recording its events."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.transports = Transports(self.clock)
        self.events: list[tuple[Any, ...]] = []

    def engine(self, **options: Any) -> EngineClient:
        engine = EngineClient(URL, clock=self.clock, transport_factory=self.transports,
                              **options)
        for name in ("open", "message", "ping", "close", "error", "upgrade", "upgrade_error"):
            engine.on(name, lambda *args, name=name: self.events.append((name, *args)))
        return engine

    def names(self) -> list[str]:
        return [event[0] for event in self.events]

    def opened(self, **options: Any) -> tuple[EngineClient, FakeTransport]:
        upgrades = options.pop("upgrades", None)
        engine = self.engine(**options)
        engine.open()
        transport = self.transports.last
        handshake(transport, upgrades=upgrades)
        return engine, transport


class EngineClientTests(EngineCase):
    """``EngineClient``: handshake, heartbeat, buffering, closing."""

    def test_url(self) -> None:
        """URLs: the path gets a slash, the query keeps the user's parameters first, the
        default port is left out, and IPv6 hosts get brackets."""
        url = EngineURL.parse("https://example.com/ignored?tag=1", "/socket.io")
        self.assertEqual(url.http({"EIO": "4", "transport": "polling"}),
                         "https://example.com/socket.io/?tag=1&EIO=4&transport=polling")
        self.assertEqual(EngineURL.parse("ws://[::1]:8080", "/engine.io/").ws({"a": "b"}),
                         "ws://[::1]:8080/engine.io/?a=b")
        self.assertRaises(ValueError, EngineURL.parse, "ftp://example.com")
        self.assertRaises(ValueError, EngineClient, URL, transports=("carrier-pigeon",),
                          clock=self.clock)
        self.assertRaises(ValueError, EngineClient, URL, transports=(), clock=self.clock)

    def test_url_query_encoding(self) -> None:
        """Every query name and value reaches a form decoder as given, in order, whatever
        characters it holds."""
        pairs = [("tag", "a b+c&d=e/f?g#h%i"), ("é", "ü"), ("blank", ""), ("k y", "~*'()!")]
        url = EngineURL.parse("http://example.com/?" + urllib.parse.urlencode(pairs[:2]),
                              "/socket.io", dict(pairs[2:]))
        self.assertEqual(url.query, tuple(pairs))
        built = urllib.parse.urlsplit(url.http({"EIO": "4", "sid": "a-b_c"}))
        self.assertEqual(urllib.parse.parse_qsl(built.query, keep_blank_values=True),
                         [*pairs, ("EIO", "4"), ("sid", "a-b_c")])
        self.assertEqual(EngineURL.parse("http://h/?a&&b=").query, (("a", ""), ("b", "")))

    def test_url_edge_cases(self) -> None:
        """A path without its leading slash still gets one, a query that is not UTF-8
        percent-encoding or a port out of range is refused, and the host is lower-cased."""
        self.assertEqual(EngineURL.parse("http://h:81", "socket.io").http({}),
                         "http://h:81/socket.io/")
        self.assertRaises(ValueError, EngineURL.parse, "http://h/?a=%FF")
        self.assertRaises(ValueError, EngineURL.parse, "http://h:65536/")
        self.assertEqual(EngineURL.parse("WSS://Example.COM").ws({}),
                         "wss://example.com/engine.io/")

    def test_handshake(self) -> None:
        """The handshake opens the session: sid, timings, the sid in later requests."""
        engine = self.engine()
        engine.open()
        transport = self.transports.last
        self.assertEqual((transport.name, transport.query),
                         ("polling", {"EIO": "4", "transport": "polling"}))
        self.assertIs(engine.state, EngineState.OPENING)
        handshake(transport, "abc", ping_interval=300, ping_timeout=200, max_payload=10)
        self.assertIs(engine.state, EngineState.OPEN)
        self.assertEqual((engine.sid, engine.ping_interval, engine.ping_timeout,
                          engine.max_payload), ("abc", 0.3, 0.2, 10))
        self.assertEqual(transport.query["sid"], "abc")
        self.assertEqual(self.names(), ["open"])
        self.assertRaises(RuntimeError, engine.open)

    def test_messages_both_ways(self) -> None:
        """Messages sent before the handshake wait for it; received ones are events."""
        engine = self.engine()
        engine.open()
        engine.send("early")
        engine.send(b"\x00bin")
        transport = self.transports.last
        self.assertEqual(transport.sent, [])
        handshake(transport)
        self.assertEqual(transport.messages(), ["early", b"\x00bin"])
        transport.deliver(EPacket(EType.MESSAGE, "hi"), EPacket(EType.MESSAGE, b"\x01"))
        self.assertEqual(self.events[1:], [("message", "hi"), ("message", b"\x01")])

    def test_batching(self) -> None:
        """While a write is out the buffer grows; the next write carries it all, at most
        ``maxPayload`` bytes of it (but always one packet)."""
        engine = self.engine()
        engine.open()
        transport = self.transports.last
        handshake(transport, max_payload=12)
        transport.auto_drain = False
        engine.send("a")
        for text in ("b", "c", "12345678901234567890", "d"):
            engine.send(text)
        self.assertEqual(transport.writes, 1)
        transport.drain()
        self.assertEqual(transport.messages(), ["a", "b", "c"])
        transport.drain()
        self.assertEqual(transport.messages()[3:], ["12345678901234567890"])
        transport.drain()
        self.assertEqual(transport.messages()[4:], ["d"])
        self.assertEqual(transport.writes, 4)

    def test_ping_answered(self) -> None:
        """A ping is answered with a pong at once and restarts the heartbeat timer."""
        engine, transport = self.opened()
        self.clock.advance(44)
        transport.deliver(EPacket(EType.PING))
        self.assertEqual(transport.sent[-1], EPacket(EType.PONG))
        self.assertEqual(self.names(), ["open", "ping"])
        self.clock.advance(44)
        self.assertIs(engine.state, EngineState.OPEN)

    def test_ping_timeout(self) -> None:
        """Silence for pingInterval + pingTimeout closes with ``"ping timeout"``."""
        engine, transport = self.opened()
        self.clock.advance(44.9)
        self.assertIs(engine.state, EngineState.OPEN)
        self.clock.advance(0.2)
        self.assertIs(engine.state, EngineState.CLOSED)
        self.assertEqual(self.events[-1], ("close", "ping timeout", None))
        self.assertTrue(transport.closed_by_client)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_packet_before_handshake(self) -> None:
        """Anything but the handshake first is a transport error."""
        engine = self.engine()
        engine.open()
        self.transports.last.deliver(EPacket(EType.MESSAGE, "nope"))
        self.assertEqual(self.names(), ["error", "close"])
        self.assertEqual(self.events[-1][1], "transport error")
        self.assertEqual(self.events[0][1].message, "parse error")

    def test_bad_handshakes(self) -> None:
        """A handshake that is not JSON, or lacks or mistypes a field, is a transport error."""
        for data in ("{", "[]", '{"upgrades": []}', '{"sid": 1, "pingInterval": 1, '
                     '"pingTimeout": 1}', '{"sid": "s", "pingInterval": "1", "pingTimeout": 1}',
                     '{"sid": "s", "pingInterval": 1, "pingTimeout": -1}',
                     '{"sid": "s", "pingInterval": 1, "pingTimeout": 1, "upgrades": [1]}'):
            self.events.clear()
            engine = self.engine()
            engine.open()
            transport = self.transports.last
            transport.accept()
            transport.deliver(EPacket(EType.OPEN, data))
            self.assertEqual(self.names(), ["error", "close"], data)
            self.assertIs(engine.state, EngineState.CLOSED)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_transport_error(self) -> None:
        """A transport error is an ``error`` event, then ``close`` with
        ``"transport error"``."""
        _, transport = self.opened()
        transport.fail("xhr poll error", 500)
        self.assertEqual(self.names(), ["open", "error", "close"])
        error = self.events[1][1]
        self.assertIsInstance(error, TransportError)
        self.assertEqual((error.message, error.description), ("xhr poll error", 500))
        self.assertEqual(self.events[2][1:], ("transport error", error))

    def test_server_close(self) -> None:
        """The server closing the transport (or sending ``close``) is ``"transport close"``."""
        engine, transport = self.opened()
        transport.server_close()
        self.assertEqual(self.events[-1][:2], ("close", "transport close"))
        engine, transport = self.opened()
        transport.deliver(EPacket(EType.CLOSE))
        self.assertEqual(self.events[-1][:2], ("close", "transport close"))
        self.assertIs(engine.state, EngineState.CLOSED)

    def test_close_waits_for_drain(self) -> None:
        """``close()`` lets the buffer drain first, then closes with ``"forced close"``; sends
        after it are dropped; its Deferred fires once the transport is released."""
        engine, transport = self.opened()
        transport.auto_drain = False
        engine.send("one")
        engine.send("two")
        closing = engine.close()
        engine.send("dropped")
        self.assertIs(engine.state, EngineState.CLOSING)
        self.assertNoResult(closing)
        transport.drain()
        transport.drain()
        self.assertEqual(transport.messages(), ["one", "two"])
        self.assertIs(engine.state, EngineState.CLOSED)
        self.assertEqual(self.events[-1], ("close", "forced close", None))
        self.assertTrue(transport.closed_by_client)
        self.assertIsNone(self.successResultOf(closing))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_close_bounded(self) -> None:
        """A buffer that never drains does not hold ``close()`` past ``close_timeout``."""
        engine, transport = self.opened(close_timeout=3)
        transport.auto_drain = False
        engine.send("one")
        engine.send("stuck")
        closing = engine.close()
        self.clock.advance(3)
        self.assertIs(engine.state, EngineState.CLOSED)
        self.successResultOf(closing)

    def test_close_before_open(self) -> None:
        """Closing a new or opening engine works and releases at once."""
        engine = self.engine()
        self.successResultOf(engine.close())
        engine = self.engine()
        engine.open()
        self.successResultOf(engine.close())
        self.assertEqual(self.names(), ["close"])

    def test_handler_errors_contained(self) -> None:
        """A failing event handler is logged; the engine carries on."""
        engine, transport = self.opened()

        def boom(data: Any) -> None:
            raise RuntimeError("user bug")

        engine.on("message", boom)
        transport.deliver(EPacket(EType.MESSAGE, "x"), EPacket(EType.PING))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(transport.sent[-1], EPacket(EType.PONG))


class UpgradeTests(EngineCase):
    """The upgrade from polling to WebSocket."""

    def start(self) -> tuple[EngineClient, FakeTransport, FakeTransport]:
        engine, polling = self.opened(upgrades=["websocket"])
        probe = self.transports.last
        self.assertEqual((probe.name, probe.query["sid"]), ("websocket", "e1"))
        self.assertTrue(probe.opened)
        return engine, polling, probe

    def test_upgrade(self) -> None:
        """Probe, pause polling, switch, ``5``; what was sent meanwhile goes on the
        WebSocket."""
        engine, polling, probe = self.start()
        probe.accept()
        self.assertEqual(probe.sent, [EPacket(EType.PING, "probe")])
        polling.auto_drain = False
        engine.send("during")
        self.assertEqual(polling.messages(), ["during"])
        probe.deliver(EPacket(EType.PONG, "probe"))
        engine.send("queued")
        self.assertIs(polling.state, TransportState.PAUSING)  # a POST is out
        polling.drain()
        self.assertIs(engine.transport, probe)
        self.assertTrue(polling.discarded)
        self.assertFalse(polling.closed_by_client)
        self.assertEqual(probe.sent[1:], [EPacket(EType.UPGRADE), EPacket(EType.MESSAGE, "queued")])
        self.assertEqual(self.events[-1], ("upgrade", "websocket"))
        engine.send("after")
        self.assertEqual(probe.messages()[-1], "after")
        probe.deliver(EPacket(EType.PING))
        self.assertEqual(probe.sent[-1], EPacket(EType.PONG))

    def test_upgrade_not_offered_or_refused(self) -> None:
        """No probe when the server offers none, when WebSocket is not allowed, or with
        ``upgrade=False``."""
        self.opened()
        self.opened(transports=("polling",), upgrades=["websocket"])
        self.opened(upgrade=False, upgrades=["websocket"])
        self.assertEqual([t.name for t in self.transports.made], ["polling"] * 3)

    def test_bad_probe_answer(self) -> None:
        """A wrong answer to the probe abandons the upgrade; polling carries on."""
        engine, polling, probe = self.start()
        probe.accept()
        probe.deliver(EPacket(EType.MESSAGE, "nonsense"))
        self.assertEqual(self.names()[-1], "upgrade_error")
        self.assertTrue(probe.discarded)
        self.assertIs(engine.transport, polling)
        engine.send("still polling")
        self.assertEqual(polling.messages(), ["still polling"])

    def test_probe_fails_after_pause(self) -> None:
        """A probe that dies while polling pauses leaves the session polling again."""
        engine, polling, probe = self.start()
        probe.accept()
        polling.auto_drain = False
        engine.send("x")
        probe.deliver(EPacket(EType.PONG, "probe"))
        probe.fail("websocket error")
        self.assertEqual(self.names()[-1], "upgrade_error")
        self.assertIs(polling.state, TransportState.OPEN)
        polling.drain()
        engine.send("y")
        self.assertEqual(polling.messages(), ["x", "y"])

    def test_close_during_probe(self) -> None:
        """Closing while probing abandons the probe."""
        engine, _, probe = self.start()
        self.successResultOf(engine.close())
        self.assertTrue(probe.discarded)
        self.assertEqual(self.names()[-2:], ["upgrade_error", "close"])

    def test_websocket_only(self) -> None:
        """WebSocket only: the handshake arrives on the WebSocket."""
        engine = self.engine(transports=("websocket",))
        engine.open()
        transport = self.transports.last
        self.assertEqual(transport.name, "websocket")
        handshake(transport, upgrades=[])
        self.assertEqual(engine.transport, transport)
        self.assertEqual(self.names(), ["open"])


class _Script(Resource):
    """A resource answering each request with the next scripted (code, body)."""

    isLeaf = True

    def __init__(self, *answers: tuple[int, bytes]) -> None:
        super().__init__()
        self.answers = list(answers)
        self.requests: list[tuple[bytes, bytes, bytes, dict[bytes, Sequence[bytes]]]] = []

    def render(self, request: Request) -> Any:
        assert request.content is not None and request.method is not None
        headers = dict(request.requestHeaders.getAllRawHeaders())
        self.requests.append((request.method, request.uri, request.content.read(), headers))
        if request.method == b"POST":
            return b"ok"
        if not self.answers:
            return NOT_DONE_YET  # a long poll with nothing to say
        code, body = self.answers.pop(0)
        request.setResponseCode(code)
        return body


class PollingTests(SynchronousTestCase):
    """``PollingTransport`` over in-memory HTTP."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.events: list[tuple[Any, ...]] = []

    def client(self, resource: Resource, **options: Any) -> EngineClient:
        self.stub = StubTreq(resource)
        engine = EngineClient(URL, path="/engine.io", transports=("polling",), http=self.stub,
                              clock=self.clock, reactor=object(), **options)
        for name in ("open", "message", "close", "error"):
            engine.on(name, lambda *args, name=name: self.events.append((name, *args)))
        return engine

    def test_against_txsio_server(self) -> None:
        """Handshake, messages both ways (text and binary), heartbeat and close against
        txsio's own EngineServer."""
        server = EngineServer(clock=self.clock, ping_interval=10, ping_timeout=5,
                              transports=["polling"])
        sessions: list[Any] = []
        received: list[Any] = []

        def connected(session: Any) -> None:
            sessions.append(session)
            session.on("message", received.append)

        server.on("connection", connected)
        root = Resource()
        root.putChild(b"engine.io", server.resource())
        engine = self.client(root, extra_headers={"X-Test": "yes"})
        engine.open()
        self.stub.flush()
        self.assertEqual(self.events[0], ("open",))
        self.assertEqual(engine.sid, sessions[0].id)
        self.assertEqual(sessions[0].request.headers.get("x-test"), "yes")
        engine.send("héllo")
        engine.send(b"\x00\xff")
        self.stub.flush()
        self.assertEqual(received, ["héllo", b"\x00\xff"])
        sessions[0].send("back")
        sessions[0].send(b"\x01")
        self.stub.flush()
        self.assertEqual(self.events[1:], [("message", "back"), ("message", b"\x01")])
        for _ in range(3):
            self.clock.advance(10)  # the server pings; the client answers
            self.stub.flush()
        self.assertIs(engine.state, EngineState.OPEN)
        closing = engine.close()
        self.stub.flush()
        self.clock.advance(1)
        self.stub.flush()
        self.successResultOf(closing)
        self.assertEqual(self.events[-1][:2], ("close", "forced close"))
        self.assertEqual(server.sessions, {})

    def test_http_error(self) -> None:
        """An HTTP error on a poll is ``xhr poll error`` with the status: a transport
        error."""
        engine = self.client(_Script((500, b"{}")))
        engine.open()
        self.stub.flush()
        self.assertEqual(self.events[0][0], "error")
        self.assertEqual((self.events[0][1].message, self.events[0][1].description),
                         ("xhr poll error", 500))
        self.assertEqual(self.events[1][:2], ("close", "transport error"))

    def test_garbage(self) -> None:
        """A body that is not UTF-8 or not a payload is a parse error."""
        for body in (b"\xff\xfe", b"9", b"0{}\x1ebad-base64"):
            self.events.clear()
            engine = self.client(_Script((200, body)))
            engine.open()
            self.stub.flush()
            self.assertEqual(self.events[0][1].message, "parse error", body)
            self.assertIs(engine.state, EngineState.CLOSED)

    def test_response_too_large(self) -> None:
        """A response larger than ``max_payload`` is refused."""
        engine = self.client(_Script((200, b"4" + b"x" * 100)), max_payload=50)
        engine.open()
        self.stub.flush()
        self.assertEqual(self.events[0][1].description, "response too large")

    def test_requests(self) -> None:
        """GETs carry EIO, transport and sid; POSTs carry the payload as text/plain; the
        close sends ``1``."""
        opening = '0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'
        script = _Script((200, opening.encode()))
        engine = self.client(script)
        engine.open()
        self.stub.flush()
        engine.send("a")
        engine.send(b"\x01")
        self.stub.flush()
        method, uri, _, _ = script.requests[0]
        self.assertEqual((method, uri), (b"GET", b"/engine.io/?EIO=4&transport=polling"))
        posts = [r for r in script.requests if r[0] == b"POST"]
        self.assertEqual(posts[0][1], b"/engine.io/?EIO=4&transport=polling&sid=s")
        self.assertEqual([post[2] for post in posts], [b"4a", b"bAQ=="])
        self.assertEqual(posts[0][3][b"Content-Type"], [b"text/plain;charset=UTF-8"])
        engine.close()
        self.stub.flush()
        self.assertEqual([r[2] for r in script.requests if r[0] == b"POST"][-1], b"1")

    def test_server_close_packet(self) -> None:
        """A close packet in a poll response closes with ``"transport close"``."""
        opening = '0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000}'
        engine = self.client(_Script((200, opening.encode()), (200, b"4bye\x1e1")))
        engine.open()
        self.stub.flush()
        self.assertEqual(self.events[1:], [("message", "bye"),
                                           ("close", "transport close",
                                            "transport closed by the server")])
        self.clock.advance(5)
        self.assertIs(engine.state, EngineState.CLOSED)


# -- the Socket.IO client -------------------------------------------------------------------


class ClientCase(SynchronousTestCase):
    """A ``txsio.Client`` on a Clock over fake transports; the test plays the server."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.transports = Transports(self.clock)
        self.decoders: dict[int, tuple[Decoder, int]] = {}
        self.events: list[tuple[Any, ...]] = []

    def client(self, **options: Any) -> txsio.Client:
        options.setdefault("randomization_factor", 0)
        client = txsio.Client(clock=self.clock, transport_factory=self.transports, **options)
        for name in ("connect", "connect_error", "disconnect"):
            client.on(name, lambda *args, name=name: self.events.append((name, *args)))
        for name in ("reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"):
            client.on(name, lambda *args, name=name: self.events.append((name, *args)))
        return client

    def names(self) -> list[str]:
        return [event[0] for event in self.events]

    def taken(self, transport: FakeTransport | None = None) -> list[SPacket]:
        """The Socket.IO packets the client sent on *transport* since the last call."""
        transport = transport or self.transports.last
        decoder, seen = self.decoders.get(id(transport), (Decoder(), 0))
        packets = []
        messages = transport.messages()
        for message in messages[seen:]:
            packet = decoder.feed(message)
            if packet is not None:
                packets.append(packet)
        self.decoders[id(transport)] = (decoder, len(messages))
        return packets

    def reply(self, packet: SPacket, transport: FakeTransport | None = None) -> None:
        """Deliver a Socket.IO packet from the server."""
        transport = transport or self.transports.last
        for part in encode(packet):
            transport.deliver(EPacket(EType.MESSAGE, part))

    def accept(self, nsp: str = "/", sid: str = "s1", pid: str | None = None,
               transport: FakeTransport | None = None) -> None:
        data = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
        self.reply(SPacket(SType.CONNECT, nsp, data), transport)

    def connected(self, client: txsio.Client | None = None, namespaces: list[str] | None = None,
                  **options: Any) -> txsio.Client:
        """A client connected to *namespaces* (default ``["/"]``)."""
        client = client or self.client(**options)
        namespaces = namespaces or ["/"]
        d = client.connect(URL, namespaces=namespaces)
        transport = self.transports.last
        handshake(transport)
        sent = self.taken(transport)
        self.assertEqual([(p.type, p.nsp) for p in sent], [(SType.CONNECT, n) for n in namespaces])
        for i, nsp in enumerate(namespaces):
            self.accept(nsp, f"s{i}")
        self.assertIsNone(self.successResultOf(d))
        return client

    def tearDown(self) -> None:
        self.assertEqual(self.flushLoggedErrors(), [])

    def assertOnlyHeartbeat(self) -> None:
        """No timer is left but the connection's heartbeat."""
        calls = delayed_calls(self.clock)
        self.assertEqual([(c.func.__name__, c.args) for c in calls],
                         [("_on_close", ("ping timeout",))])


class ConnectTests(ClientCase):
    """Connecting: CONNECT, the reply, refusals, failures."""

    def test_connect(self) -> None:
        """CONNECT carries the auth; the reply gives the id and the ``connect`` event."""
        client = self.client()
        d = client.connect(URL, auth={"token": "t"}, transports=("websocket",))
        transport = self.transports.last
        self.assertEqual(transport.name, "websocket")
        self.assertNoResult(d)
        handshake(transport)
        self.assertEqual(self.taken(), [SPacket(SType.CONNECT, "/", {"token": "t"})])
        self.assertFalse(client.connected)
        self.accept(sid="abc")
        self.successResultOf(d)
        self.assertEqual((client.connected, client.id, client.recovered), (True, "abc", False))
        self.assertEqual(self.names(), ["connect"])
        self.assertEqual(client.transport, "websocket")

    def test_namespace_from_url(self) -> None:
        """A path in the URL names the namespace, as Node's ``io(url)``."""
        client = self.client()
        client.connect("http://127.0.0.1:9/chat")
        handshake(self.transports.last)
        self.assertEqual(self.taken(), [SPacket(SType.CONNECT, "/chat")])
        self.assertEqual(self.transports.last.query["transport"], "polling")

    def test_refusal(self) -> None:
        """CONNECT_ERROR fails connect() with the message and data; nothing is retried and
        nothing is left scheduled."""
        client = self.client()
        d = client.connect(URL)
        handshake(self.transports.last)
        self.reply(SPacket(SType.CONNECT_ERROR, "/", {"message": "no", "data": {"code": 7}}))
        error = self.failureResultOf(d, txsio.ConnectError).value
        self.assertEqual((error.message, error.data, error.refused), ("no", {"code": 7}, True))
        self.assertEqual(self.names(), ["connect_error"])
        self.assertFalse(client.io.active)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_refusal_of_one_namespace(self) -> None:
        """connect() is all or nothing: one refusal disconnects the others."""
        client = self.client()
        d = client.connect(URL, namespaces=["/", "/private"])
        transport = self.transports.last
        handshake(transport)
        self.taken()
        self.accept("/")
        self.reply(SPacket(SType.CONNECT_ERROR, "/private", {"message": "no"}))
        self.failureResultOf(d, txsio.ConnectError)
        self.assertEqual(self.taken(), [SPacket(SType.DISCONNECT, "/")])
        self.assertFalse(client.connected)
        self.assertEqual(self.names(), ["connect", "disconnect"])
        self.assertEqual(self.events[-1], ("disconnect", "io client disconnect"))

    def test_failure_without_retry(self) -> None:
        """A failed first attempt fails connect() and schedules nothing."""
        client = self.client()
        d = client.connect(URL)
        self.transports.last.fail("xhr poll error", "Connection refused")
        error = self.failureResultOf(d, txsio.ConnectError).value
        self.assertEqual((error.message, error.data, error.refused),
                         ("xhr poll error", "Connection refused", False))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(client.io.active)

    def test_failure_with_retry(self) -> None:
        """With ``retry=True`` the reconnection policy goes on until it succeeds."""
        client = self.client(reconnection_delay=1)
        d = client.connect(URL, retry=True)
        self.transports.last.fail()
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertEqual(len(self.transports.made), 2)
        self.transports.last.fail()
        self.clock.advance(2)
        handshake(self.transports.last)
        self.accept()
        self.successResultOf(d)
        self.assertEqual(self.names(), ["connect_error", "reconnect_attempt", "connect_error",
                                        "reconnect_error", "reconnect_attempt", "reconnect",
                                        "connect"])

    def test_retry_gives_up(self) -> None:
        """With ``retry=True`` and limited attempts, connect() fails on ``reconnect_failed``."""
        client = self.client(reconnection_attempts=2, reconnection_delay=1)
        d = client.connect(URL, retry=True)
        for delay in (1, 2):
            self.transports.last.fail()
            self.clock.advance(delay)
        self.transports.last.fail()
        error = self.failureResultOf(d, txsio.ConnectError).value
        self.assertEqual(error.message, "reconnect failed")
        self.assertIn("reconnect_failed", self.names())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_connect_timeout(self) -> None:
        """A server that never answers the handshake fails the attempt after ``timeout``."""
        client = self.client(timeout=3)
        d = client.connect(URL)
        self.clock.advance(3)
        self.assertEqual(self.failureResultOf(d, txsio.ConnectError).value.message, "timeout")
        self.assertTrue(self.transports.last.closed_by_client)

    def test_closed_before_reply(self) -> None:
        """The connection lost before the CONNECT reply is a ``connect_error``."""
        client = self.client()
        d = client.connect(URL)
        handshake(self.transports.last)
        self.transports.last.server_close()
        self.assertEqual(self.failureResultOf(d, txsio.ConnectError).value.message,
                         "transport close")
        self.assertEqual(self.names(), ["connect_error"])

    def test_v2_server(self) -> None:
        """A CONNECT reply without a sid (a 2.x server) is a connect_error."""
        client = self.client()
        d = client.connect(URL)
        handshake(self.transports.last)
        self.reply(SPacket(SType.CONNECT, "/", {}))
        self.assertIn("v2.x", self.failureResultOf(d, txsio.ConnectError).value.message)

    def test_cancel(self) -> None:
        """Cancelling connect() disconnects."""
        client = self.client()
        d = client.connect(URL)
        handshake(self.transports.last)
        d.cancel()
        self.failureResultOf(d)
        self.assertFalse(client.io.active)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_already_connected(self) -> None:
        """connect() twice is refused; after disconnect() it works again."""
        client = self.connected()
        self.failureResultOf(client.connect(URL), RuntimeError)
        self.successResultOf(client.disconnect())
        self.connected(client)

    def test_auth_callable(self) -> None:
        """A callable auth is called on every attempt; a Deferred result is awaited."""
        calls: list[int] = []
        waiting: Deferred[dict[str, Any]] = Deferred()

        def auth() -> Any:
            calls.append(1)
            return succeed({"n": len(calls)}) if len(calls) == 1 else waiting

        client = self.client(reconnection_delay=1)
        d = client.connect(URL, auth=auth)
        handshake(self.transports.last)
        self.assertEqual(self.taken(), [SPacket(SType.CONNECT, "/", {"n": 1})])
        self.accept()
        self.successResultOf(d)
        self.transports.last.server_close()
        self.clock.advance(1)
        handshake(self.transports.last)
        self.assertEqual(self.taken(), [])
        waiting.callback({"n": 2})
        self.assertEqual(self.taken(), [SPacket(SType.CONNECT, "/", {"n": 2})])

    def test_auth_failure(self) -> None:
        """An auth callable that raises, or returns no dict, refuses the connection locally."""
        for auth in (lambda: 1 / 0, lambda: ["not", "a", "dict"]):
            client = self.client()
            d = client.connect(URL, auth=auth)
            handshake(self.transports.last)
            error = self.failureResultOf(d, txsio.ConnectError).value
            self.assertEqual((error.message, error.refused), ("auth failed", True))
            self.assertFalse(client.io.active)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_socket_joins_later(self) -> None:
        """A namespace asked for once connected rides the same connection."""
        client = self.connected()
        chat = client.socket("/chat", auth={"a": 1})
        self.assertIs(client.socket("chat"), chat)
        d = chat.connect()
        self.assertEqual(self.taken(), [SPacket(SType.CONNECT, "/chat", {"a": 1})])
        self.accept("/chat", "c1")
        self.successResultOf(d)
        self.assertEqual((chat.id, chat.connected, len(self.transports.made)), ("c1", True, 1))
        self.successResultOf(chat.connect())


class TrafficTests(ClientCase):
    """Events and acknowledgements both ways."""

    def test_events_and_acks(self) -> None:
        """A handler's return value is the ack: one value, a tuple, None, a Deferred."""
        client = self.connected()
        client.on("one", lambda x: x + 1)
        client.on("two", lambda: ("a", b"\x00"))
        client.on("none", lambda: None)
        later: Deferred[str] = Deferred()
        client.on("later", lambda: later)
        seen: list[Any] = []
        client.on_any(lambda *args: seen.append(args))
        self.reply(SPacket(SType.EVENT, "/", ["one", 1], 5))
        self.reply(SPacket(SType.EVENT, "/", ["two"], 6))
        self.reply(SPacket(SType.EVENT, "/", ["none"], 7))
        self.reply(SPacket(SType.EVENT, "/", ["later"], 8))
        self.reply(SPacket(SType.EVENT, "/", ["one", 10]))
        self.assertEqual(self.taken(), [SPacket(SType.ACK, "/", [2], 5),
                                        SPacket(SType.BINARY_ACK, "/", ["a", b"\x00"], 6),
                                        SPacket(SType.ACK, "/", [], 7)])
        later.callback("done")
        self.assertEqual(self.taken(), [SPacket(SType.ACK, "/", ["done"], 8)])
        self.assertEqual(seen, [("one", 1), ("two",), ("none",), ("later",), ("one", 10)])

    def test_outgoing_catch_alls(self) -> None:
        """``on_any_outgoing`` sees each event when it is written: at once when connected,
        and when the buffer is flushed for an emit made before the connection."""
        client = self.client()
        seen: list[tuple[Any, ...]] = []
        client.on_any_outgoing(lambda *args: seen.append(args))
        client.emit("early", 0)
        self.assertEqual(seen, [])  # buffered: not written yet
        self.connected(client)
        self.assertEqual(seen, [("early", 0)])
        client.emit("now", 1)
        self.assertEqual(seen, [("early", 0), ("now", 1)])
        self.assertEqual(client.listeners_any_outgoing(), client.socket("/")
                         .listeners_any_outgoing())

    def test_numeric_event_name(self) -> None:
        """An event named by a number reaches the handler of its text, as on the server (and
        as Node keys listeners): ``on("1")`` gets the event ``1``."""
        client = self.connected()
        seen: list[Any] = []
        client.on("1", lambda x: recorded(seen, x, "one"))
        self.reply(SPacket(SType.EVENT, "/", [1, "a"], 3))
        self.assertEqual(seen, ["a"])
        self.assertEqual(self.taken(), [SPacket(SType.ACK, "/", ["one"], 3)])

    def test_coroutine_and_failing_handlers(self) -> None:
        """A coroutine's result is the ack; a handler that raises sends none and is logged."""
        client = self.connected()

        async def coro(x: int) -> int:
            return x * 2

        def bad() -> None:
            raise ValueError("bug")

        client.on("coro", coro)
        client.on("bad", bad)
        self.reply(SPacket(SType.EVENT, "/", ["coro", 4], 1))
        self.reply(SPacket(SType.EVENT, "/", ["bad"], 2))
        self.assertEqual(self.taken(), [SPacket(SType.ACK, "/", [8], 1)])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)

    def test_emit_with_ack(self) -> None:
        """emit_with_ack fires with one value, a tuple, or None; binary goes both ways."""
        client = self.connected()
        results = [client.emit_with_ack("q", i, b"\x01") for i in range(3)]
        sent = self.taken()
        self.assertEqual(sent[0], SPacket(SType.BINARY_EVENT, "/", ["q", 0, b"\x01"], 0))
        self.reply(SPacket(SType.ACK, "/", [b"\x02"], 0))
        self.reply(SPacket(SType.ACK, "/", [1, 2], 1))
        self.reply(SPacket(SType.ACK, "/", [], 2))
        self.reply(SPacket(SType.ACK, "/", [], 99))  # unknown: ignored
        self.assertEqual([self.successResultOf(d) for d in results], [b"\x02", (1, 2), None])

    def test_reserved_and_bad_data(self) -> None:
        """Reserved names and data JSON cannot carry are the caller's error."""
        client = self.connected()
        self.assertRaises(ValueError, client.emit, "connect")
        self.failureResultOf(client.emit_with_ack("disconnect"), ValueError)
        self.assertRaises(TypeError, client.emit, "x", object())
        self.failureResultOf(client.emit_with_ack("x", {1, 2}), TypeError)
        self.assertEqual(self.taken(), [])

    def test_ack_timeout(self) -> None:
        """``timeout(s)`` fails the ack after s seconds; a late ack is ignored."""
        client = self.connected()
        d = client.timeout(2).emit_with_ack("slow")
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.failureResultOf(d, txsio.AckTimeoutError)
        self.reply(SPacket(SType.ACK, "/", ["late"], 0))
        self.assertOnlyHeartbeat()

    def test_default_ack_timeout(self) -> None:
        """``ack_timeout`` applies to every emit_with_ack; an ack in time cancels it."""
        client = self.connected(ack_timeout=5)
        fast = client.emit_with_ack("fast")
        slow = client.emit_with_ack("slow")
        self.reply(SPacket(SType.ACK, "/", ["ok"], 0))
        self.assertEqual(self.successResultOf(fast), "ok")
        self.clock.advance(5)
        self.failureResultOf(slow, txsio.AckTimeoutError)
        self.assertOnlyHeartbeat()

    def test_cancel_ack(self) -> None:
        """Cancelling emit_with_ack forgets the ack and its timer."""
        client = self.connected()
        d = client.timeout(5).emit_with_ack("x")
        d.cancel()
        self.failureResultOf(d)
        self.assertOnlyHeartbeat()
        self.reply(SPacket(SType.ACK, "/", ["ignored"], 0))

    def test_namespaces_routed(self) -> None:
        """Packets go to the socket of their namespace; unknown namespaces are ignored."""
        client = self.connected(namespaces=["/", "/chat"])
        chat = client.socket("/chat")
        got: list[Any] = []
        client.on("e", lambda *a: got.append(("/", *a)))
        chat.on("e", lambda *a: got.append(("/chat", *a)))
        self.reply(SPacket(SType.EVENT, "/chat", ["e", 1]))
        self.reply(SPacket(SType.EVENT, "/", ["e", 2]))
        self.reply(SPacket(SType.EVENT, "/elsewhere", ["e", 3]))
        self.assertEqual(got, [("/chat", 1), ("/", 2)])
        chat.emit("hi")
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/chat", ["hi"])])


class BufferingTests(ClientCase):
    """Emits while disconnected."""

    def test_buffered_until_connected(self) -> None:
        """Emits made before the connection go out, in order, once connected; volatile ones
        are dropped."""
        client = self.client()
        client.emit("first", 1)
        client.volatile.emit("dropped")
        answer = client.emit_with_ack("second")
        d = client.connect(URL)
        handshake(self.transports.last)
        client.emit("third")
        self.assertEqual([p.type for p in self.taken()], [SType.CONNECT])
        self.accept()
        self.successResultOf(d)
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/", ["first", 1]),
                                        SPacket(SType.EVENT, "/", ["second"], 0),
                                        SPacket(SType.EVENT, "/", ["third"])])
        self.reply(SPacket(SType.ACK, "/", ["yes"], 0))
        self.assertEqual(self.successResultOf(answer), "yes")
        client.volatile.emit("sent")
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/", ["sent"])])

    def test_buffered_timeout(self) -> None:
        """A buffered emit whose ack times out is not sent later."""
        client = self.client()
        d = client.timeout(1).emit_with_ack("never")
        self.clock.advance(1)
        self.failureResultOf(d, txsio.AckTimeoutError)
        self.connected(client)
        self.assertEqual(self.taken(), [])

    def test_pending_acks_fail_on_disconnect(self) -> None:
        """Acks pending when the connection goes fail with DisconnectedError, unless their
        emit is still buffered."""
        client = self.connected(reconnection=False)
        sent = client.emit_with_ack("sent")
        self.transports.last.server_close()
        buffered = client.emit_with_ack("buffered")
        error = self.failureResultOf(sent, txsio.DisconnectedError).value
        self.assertEqual(error.reason, "transport close")
        self.assertNoResult(buffered)
        self.assertEqual(self.events[-1], ("disconnect", "transport close"))

    def test_queued_during_reconnection(self) -> None:
        """Emits during the outage go out after the reconnection."""
        client = self.connected(reconnection_delay=1)
        self.transports.last.fail()
        client.emit("while-away")
        self.clock.advance(1)
        handshake(self.transports.last, "e2")
        self.assertEqual([p.type for p in self.taken()], [SType.CONNECT])
        self.accept(sid="s2")
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/", ["while-away"])])


class RetryTests(ClientCase):
    """``retries``: at-least-once delivery through a queue."""

    def test_retried_until_acked(self) -> None:
        """An unacknowledged emit is sent again after each timeout, one packet at a time."""
        client = self.connected(retries=2, ack_timeout=1)
        first = client.emit_with_ack("first")
        client.emit("second")
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/", ["first"], 0)])
        self.clock.advance(1)
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/", ["first"], 1)])
        self.reply(SPacket(SType.ACK, "/", ["got it"], 1))
        self.assertEqual(self.successResultOf(first), "got it")
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/", ["second"], 2)])
        self.reply(SPacket(SType.ACK, "/", [], 2))
        self.assertOnlyHeartbeat()

    def test_gives_up(self) -> None:
        """After ``retries + 1`` tries the emit fails with AckTimeoutError."""
        client = self.connected(retries=1, ack_timeout=1)
        d = client.emit_with_ack("x")
        self.clock.advance(1)
        self.clock.advance(1)
        self.failureResultOf(d, txsio.AckTimeoutError)
        self.assertEqual([p.id for p in self.taken()], [0, 1])

    def test_resent_after_reconnection(self) -> None:
        """A queued emit lost with the connection is sent again once reconnected."""
        client = self.connected(retries=3, reconnection_delay=1)
        d = client.emit_with_ack("x")
        self.assertEqual(len(self.taken()), 1)
        self.transports.last.server_close()
        self.clock.advance(1)
        handshake(self.transports.last, "e2")
        self.taken()
        self.accept(sid="s2")
        self.assertEqual(self.taken(), [SPacket(SType.EVENT, "/", ["x"], 1)])
        self.reply(SPacket(SType.ACK, "/", [1], 1))
        self.assertEqual(self.successResultOf(d), 1)


class ReconnectionTests(ClientCase):
    """Reconnection: backoff, events, every namespace rejoined, bad input."""

    def test_backoff_and_events(self) -> None:
        """Attempts follow the backoff; events report each; every namespace is rejoined."""
        client = self.connected(namespaces=["/", "/chat"], reconnection_delay=1,
                                reconnection_delay_max=5)
        self.events.clear()
        self.transports.last.server_close()
        self.assertEqual(self.names(), ["disconnect"])
        delays = []
        for _ in range(4):
            (call,) = self.clock.getDelayedCalls()
            delays.append(call.getTime() - self.clock.seconds())
            self.clock.advance(delays[-1])
            self.transports.last.fail()
        self.assertEqual(delays, [1, 2, 4, 5])
        self.clock.advance(5)
        handshake(self.transports.last, "e9")
        self.assertEqual([(p.type, p.nsp) for p in self.taken()],
                         [(SType.CONNECT, "/"), (SType.CONNECT, "/chat")])
        self.accept("/", "n1")
        self.accept("/chat", "n2")
        self.assertEqual(self.events[-2:], [("reconnect", 5), ("connect",)])
        self.assertEqual([e for e in self.events if e[0] == "reconnect_attempt"],
                         [("reconnect_attempt", n) for n in range(1, 6)])
        self.assertEqual(self.names().count("reconnect_error"), 4)
        self.assertTrue(client.socket("/chat").connected)

    def test_reconnection_attempts(self) -> None:
        """After ``reconnection_attempts`` failures: ``reconnect_failed``, and no timers."""
        client = self.connected(reconnection_attempts=2, reconnection_delay=1)
        self.transports.last.server_close()
        self.clock.advance(1)
        self.transports.last.fail()
        self.clock.advance(2)
        self.transports.last.fail()
        # (As in Node: reconnect_failed, then the last attempt's reconnect_error.)
        self.assertEqual(self.names()[-2:], ["reconnect_failed", "reconnect_error"])
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(client.io.active)

    def test_no_reconnection(self) -> None:
        """``reconnection=False``: a lost connection stays lost."""
        client = self.connected(reconnection=False)
        self.transports.last.server_close()
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertFalse(client.connected)

    def test_server_disconnect(self) -> None:
        """The server's DISCONNECT is ``"io server disconnect"``: no reconnection, and the
        last namespace gone closes the connection."""
        client = self.connected()
        self.reply(SPacket(SType.DISCONNECT, "/"))
        self.assertEqual(self.events[-1], ("disconnect", "io server disconnect"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        self.assertTrue(self.transports.last.closed_by_client)
        self.assertFalse(client.io.active)

    def test_parse_error(self) -> None:
        """Garbage from the server is ``"parse error"`` and reconnects by the policy."""
        client = self.connected(reconnection_delay=1)
        self.transports.last.deliver(EPacket(EType.MESSAGE, "9garbage"))
        self.assertEqual(self.events[-1], ("disconnect", "parse error"))
        self.assertTrue(client.io.reconnecting)
        self.clock.advance(1)
        handshake(self.transports.last, "e2")
        self.accept()
        self.assertTrue(client.connected)

    def test_ping_timeout_and_transport_error(self) -> None:
        """Heartbeat silence is ``"ping timeout"``; a failed request ``"transport error"``."""
        self.connected(reconnection_delay=1)
        self.clock.advance(45)
        self.assertEqual(self.events[-1], ("disconnect", "ping timeout"))
        self.clock.advance(1)
        handshake(self.transports.last, "e2")
        self.accept()
        self.transports.last.fail("xhr post error", 502)
        self.assertEqual(self.events[-1], ("disconnect", "transport error"))

    def test_disconnect_stops_everything(self) -> None:
        """disconnect() sends DISCONNECT for each namespace, closes, and stops
        reconnecting."""
        client = self.connected(namespaces=["/", "/chat"])
        transport = self.transports.last
        released = client.disconnect()
        self.assertEqual(self.taken(transport), [SPacket(SType.DISCONNECT, "/"),
                                                 SPacket(SType.DISCONNECT, "/chat")])
        self.successResultOf(released)
        self.assertTrue(transport.closed_by_client)
        self.assertEqual(self.events[-1], ("disconnect", "io client disconnect"))
        self.assertEqual(self.clock.getDelayedCalls(), [])
        # While waiting to reconnect, too.
        client = self.connected(reconnection_delay=1)
        self.transports.last.server_close()
        self.successResultOf(client.disconnect())
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_manager_events(self) -> None:
        """``client.io`` reports open, ping and close."""
        client = self.client()
        seen: list[Any] = []
        for name in ("open", "ping", "close"):
            client.io.on(name, lambda *a, name=name: seen.append((name, *a)))
        self.connected(client, reconnection=False)
        self.transports.last.deliver(EPacket(EType.PING))
        self.transports.last.server_close()
        self.assertEqual([s[0] for s in seen], ["open", "ping", "close"])
        self.assertIsInstance(client.io, Manager)


class RecoveryTests(ClientCase):
    """Connection state recovery on the client side."""

    def test_pid_and_offset_sent_back(self) -> None:
        """The pid of the CONNECT reply and the last offset go back in the next CONNECT; the
        same pid in the reply means recovered."""
        client = self.client(reconnection_delay=1)
        d = client.connect(URL, auth={"token": "t"})
        handshake(self.transports.last)
        self.taken()
        self.accept(sid="s1", pid="p1")
        self.successResultOf(d)
        got: list[Any] = []
        fixed: list[Any] = []
        client.on("news", lambda *args: got.append(args))
        client.on("news", lambda n: fixed.append(n))  # the offset is dropped for it
        self.reply(SPacket(SType.EVENT, "/", ["news", 1, "offset-1"]))
        self.reply(SPacket(SType.EVENT, "/", ["news", 2, "offset-2"]))
        self.reply(SPacket(SType.EVENT, "/", ["asked", "not-an-offset"], 3))
        self.assertEqual(got, [(1, "offset-1"), (2, "offset-2")])
        self.assertEqual(fixed, [1, 2])
        self.transports.last.server_close()
        self.clock.advance(1)
        handshake(self.transports.last, "e2")
        self.assertEqual(self.taken(), [SPacket(SType.CONNECT, "/", {
            "pid": "p1", "offset": "offset-2", "token": "t"})])
        self.accept(sid="s1", pid="p1")
        self.assertTrue(client.recovered)
        self.assertEqual(client.id, "s1")

    def test_not_recovered(self) -> None:
        """A new pid in the reply is a fresh session."""
        client = self.client(reconnection_delay=1)
        client.connect(URL)
        handshake(self.transports.last)
        self.accept(pid="p1")
        self.transports.last.server_close()
        self.clock.advance(1)
        handshake(self.transports.last, "e2")
        self.accept(sid="s2", pid="p2")
        self.assertFalse(client.recovered)


class ExportsTests(SynchronousTestCase):
    """The client's public names."""

    def test_exports(self) -> None:
        """``txsio.Client``, ``ClientSocket`` and ``ConnectError`` are the implementations."""
        from txsio import client, exceptions

        self.assertIs(txsio.Client, client.Client)
        self.assertIs(txsio.ClientSocket, client.ClientSocket)
        self.assertIs(txsio.ConnectError, exceptions.ConnectError)
        self.assertTrue(issubclass(txsio.ConnectError, txsio.SocketIOError))
        for name in ("Client", "ClientSocket", "ConnectError"):
            self.assertIn(name, txsio.__all__)

    def test_package_reexports(self) -> None:
        """The client packages re-export, at their former module paths, the names of the
        modules they were, as the objects of the modules that now define them."""
        from txsio import client
        from txsio.client import backoff, manager, socket
        from txsio.engineio import client as engine
        from txsio.engineio.client import engine as session
        from txsio.engineio.client import polling, transport, url, websocket

        homes = {
            client: {"Backoff": backoff, "ClientSocket": socket, "Auth": socket,
                     "Manager": manager, "ManagerState": manager},
            engine: {
                "DEFAULT_MAX_PAYLOAD": transport, "PROTOCOL": session,
                "ClientTransport": transport, "TransportError": transport,
                "TransportListener": transport, "TransportState": transport,
                "EngineURL": url, "EngineClient": session, "EngineState": session,
                "TransportFactory": session, "PollingTransport": polling,
                "HTTPPollingTransport": polling, "WebSocketTransport": websocket,
                "WebSocketConnector": websocket, "default_ws_connector": websocket,
            },
        }
        for package, names in homes.items():
            for name, module in names.items():
                self.assertIs(getattr(package, name), getattr(module, name), name)
                self.assertIn(name, package.__all__)
        self.assertIn("Client", client.__all__)
        self.assertIs(polling.PollingTransport, polling.HTTPPollingTransport)


class _FakeProtocol:
    """Stands in for Autobahn's client protocol: records what the transport sends."""

    def __init__(self) -> None:
        self.messages: list[tuple[bytes, bool]] = []
        self.closed: list[int] = []
        self.dropped = False
        self.transport = None

    def sendMessage(self, payload: bytes, isBinary: bool = False) -> None:
        self.messages.append((payload, isBinary))

    def sendClose(self, code: int) -> None:
        self.closed.append(code)

    def dropConnection(self, abort: bool = False) -> None:
        self.dropped = True


class WebSocketTransportTests(SynchronousTestCase):
    """``WebSocketTransport`` with a fake connector and protocol."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.connecting: Deferred[Any] = Deferred()
        self.factories: list[Any] = []
        self.events: list[tuple[Any, ...]] = []

        def connector(factory: Any, url: EngineURL) -> Deferred[Any]:
            self.factories.append(factory)
            return self.connecting

        self.transport = WebSocketTransport(
            EngineURL.parse("ws://127.0.0.1:9", "/socket.io"),
            {"EIO": "4", "transport": "websocket"}, clock=self.clock, connector=connector,
            headers={"X-Token": "t"}, max_payload=1000)
        test = self

        class Listener:
            def transport_open(self, t: Any) -> None:
                test.events.append(("open",))

            def transport_packet(self, t: Any, packet: EPacket) -> None:
                test.events.append(("packet", packet))

            def transport_error(self, t: Any, error: TransportError) -> None:
                test.events.append(("error", error.message, error.description))

            def transport_close(self, t: Any, description: str) -> None:
                test.events.append(("close", description))

            def transport_drain(self, t: Any) -> None:
                test.events.append(("drain",))

        self.transport.listener = Listener()

    def opened(self) -> _FakeProtocol:
        self.transport.open()
        protocol = _FakeProtocol()
        self.connecting.callback(protocol)
        self.transport._ws_open(protocol)  # type: ignore[arg-type]
        return protocol

    def test_factory(self) -> None:
        """The factory has the URL with the query, the headers, and auto-ping off."""
        self.transport.open()
        (factory,) = self.factories
        self.assertEqual(factory.url, "ws://127.0.0.1:9/socket.io/?EIO=4&transport=websocket")
        self.assertEqual(factory.headers, {"X-Token": "t"})
        self.assertEqual((factory.autoPingInterval, factory.maxMessagePayloadSize), (0, 1000))

    def test_frames(self) -> None:
        """Text frames are text packets, binary frames binary messages; writes choose the
        frame type."""
        protocol = self.opened()
        self.transport._ws_message(b"4h\xc3\xa9", False)
        self.transport._ws_message(b"\x00\x01", True)
        self.assertEqual(self.events, [("open",), ("packet", EPacket(EType.MESSAGE, "hé")),
                                       ("packet", EPacket(EType.MESSAGE, b"\x00\x01"))])
        self.transport.send([EPacket(EType.MESSAGE, "x"), EPacket(EType.MESSAGE, b"\x02"),
                             EPacket(EType.PONG)])
        self.assertEqual(protocol.messages, [(b"4x", False), (b"\x02", True), (b"3", False)])
        self.assertEqual(self.events[-1], ("drain",))
        self.assertTrue(self.transport.writable)

    def test_garbage(self) -> None:
        """A frame that is not UTF-8 or not a packet is a parse error."""
        self.opened()
        self.transport._ws_message(b"\xff", False)
        self.transport._ws_message(b"9", False)
        self.assertEqual([e[:2] for e in self.events[1:]],
                         [("error", "parse error"), ("error", "parse error")])

    def test_connect_failure(self) -> None:
        """A failed connection is a ``websocket error``; the transport is released."""
        self.transport.open()
        self.connecting.errback(ConnectionRefusedError("refused"))
        self.assertEqual(self.events[0][:2], ("error", "websocket error"))
        self.transport.close()
        self.successResultOf(self.transport.wait_released())

    def test_refused_handshake(self) -> None:
        """A connection closed before the WebSocket opened is a ``websocket error``."""
        self.transport.open()
        protocol = _FakeProtocol()
        self.connecting.callback(protocol)
        self.transport._ws_closed(protocol, False, 1006, "HTTP 400")  # type: ignore[arg-type]
        self.assertEqual(self.events, [("error", "websocket error", "HTTP 400")])

    def test_server_close(self) -> None:
        """The server closing is ``transport_close``; the transport is released."""
        protocol = self.opened()
        self.transport._ws_closed(protocol, True, 1000, None)  # type: ignore[arg-type]
        self.assertEqual(self.events[-1], ("close", "websocket connection closed"))
        self.successResultOf(self.transport.wait_released())

    def test_client_close(self) -> None:
        """``close()`` sends a close frame; released when the connection is gone, or cut
        after the grace period."""
        protocol = self.opened()
        self.transport.close()
        self.assertEqual(protocol.closed, [1000])
        released = self.transport.wait_released()
        self.assertNoResult(released)
        self.transport._ws_closed(protocol, True, 1000, None)  # type: ignore[arg-type]
        self.successResultOf(released)

    def test_close_while_connecting(self) -> None:
        """Closing while connecting cancels the connection attempt."""
        self.transport.open()
        self.transport.close()
        self.assertTrue(self.connecting.called)  # cancelled
        self.assertEqual(self.events, [("close", "transport closed by the client")])
        self.successResultOf(self.transport.wait_released())


class MisuseTests(ClientCase):
    """The caller's mistakes are reported, not crashes."""

    def test_socket_connect_before_client_connect(self) -> None:
        """A namespace cannot connect before the client knows its server."""
        client = self.client()
        self.failureResultOf(client.socket("/chat").connect(), RuntimeError)

    def test_bad_connect_arguments(self) -> None:
        """A bad URL, unknown transports or no namespaces fail connect()."""
        client = self.client()
        self.failureResultOf(client.connect("ftp://x"), ValueError)
        self.failureResultOf(client.connect(URL, transports=("smoke",)), ValueError)
        self.failureResultOf(client.connect(URL, namespaces=[]), ValueError)
        self.assertFalse(client.io.active)
