"""EngineSite's connection deadlines: idle, request headers, request body, the cap on
connections waiting for a request; on a Clock, then against real loopback sockets."""

from __future__ import annotations

import json
import os
import resource
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from twisted.internet import defer
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import ClientFactory, Protocol, connectionDone
from twisted.internet.task import Clock, LoopingCall, deferLater
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.resource import Resource

import txsio
from txsio import tap
from txsio.engineio import EngineServer, EngineSite

from .support import LoopbackSite, _TrackingFactory, spawn
from .test_resource import _WSTransport

#: the deadlines of the Clock tests, each its own so that a test tells which one closed
IDLE, HEADERS, BODY = 5.0, 10.0, 20.0
#: how often the site checks them: every second (a quarter of the shortest is longer)
CHECK = 1.0


class _Connection:
    """One raw HTTP connection to a site, in memory."""

    def __init__(self, site: EngineSite, transport: StringTransport | None = None) -> None:
        self.transport = transport or StringTransport(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol: Any = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport.protocol = self.protocol  # type: ignore[attr-defined]
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    @property
    def closed(self) -> bool:
        return bool(self.transport.disconnecting)

    def answer(self) -> bytes:
        """What the site wrote, then forget it."""
        data: bytes = self.transport.value()
        self.transport.clear()
        return data

    def lost(self) -> None:
        """The peer's side of a close: twisted.web learns the connection is gone."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


def _get(target: str, headers: str = "") -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode()


class _DeadlineCase(SynchronousTestCase):
    """An EngineServer behind an EngineSite with short, distinct deadlines, on a Clock."""

    max_pending: int | None = 100

    def setUp(self) -> None:
        self.clock = Clock()
        # A heartbeat far away: nothing but the site's deadlines closes a connection here.
        self.server = EngineServer(clock=self.clock, ping_interval=1000, ping_timeout=1000)
        self.root = Resource()
        self.root.putChild(b"engine.io", self.server.resource())
        self.site = self.make_site()

    def make_site(self, **options: Any) -> EngineSite:
        options.setdefault("idle_timeout", IDLE)
        options.setdefault("headers_timeout", HEADERS)
        options.setdefault("body_timeout", BODY)
        options.setdefault("max_pending_connections", self.max_pending)
        return EngineSite(self.root, reactor=self.clock, **options)

    def connect(self) -> _Connection:
        return _Connection(self.site)

    def checks(self) -> list[object]:
        """The site's pending deadline checks (twisted.web's own timeouts left out)."""
        return [call for call in self.clock.getDelayedCalls()
                if call.func == self.site._deadlines._check]  # type: ignore[attr-defined]

    def trickle(self, connection: _Connection, data: bytes, until: float,
                every: float = 1.0) -> None:
        """Send ``data`` a byte at a time, one every ``every`` seconds, until the clock says
        ``until`` (or the bytes run out)."""
        for byte in data:
            if self.clock.seconds() + every > until:
                return
            self.clock.advance(every)
            connection.send(bytes([byte]))

    def assert_closed_after(self, connection: _Connection, seconds: float,
                            early: float = 0.5) -> None:
        """``connection`` is still open ``seconds`` (less ``early``) from now, and closed
        by the check that follows."""
        self.clock.advance(seconds - early)
        self.assertFalse(connection.closed)
        self.clock.advance(early + CHECK)
        self.assertTrue(connection.closed)

    def handshake(self, connection: _Connection) -> str:
        connection.send(_get("/engine.io/?EIO=4&transport=polling"))
        head, _, body = connection.answer().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        sid: str = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])["sid"]
        return sid


class IdleDeadlineTests(_DeadlineCase):
    """A connection with no request in progress closes at the idle deadline."""

    def test_silent_connection(self) -> None:
        """A connection that sends nothing is closed once the idle deadline has passed, and
        told nothing."""
        connection = self.connect()
        self.assert_closed_after(connection, IDLE)
        self.assertEqual(connection.answer(), b"")
        self.assertEqual(self.site.deadline_closes, {"idle": 1})

    def test_keep_alive(self) -> None:
        """A kept-alive connection may send its next request within the idle deadline, which
        then starts again from that response; past it, the connection is closed."""
        connection = self.connect()
        self.clock.advance(IDLE - 1)
        sid = self.handshake(connection)
        self.assertTrue(sid)
        self.clock.advance(IDLE - 1)
        connection.send(_get("/nothing"))
        self.assertIn(b"HTTP/1.1 404 ", connection.answer())
        self.assert_closed_after(connection, IDLE, early=1)
        self.assertEqual(self.site.deadline_closes, {"idle": 1})

    def test_long_poll_is_not_idle(self) -> None:
        """A long-poll GET held open is not idle, however long the session leaves it open;
        once answered, the connection is idle again."""
        connection = self.connect()
        sid = self.handshake(connection)
        connection.send(_get(f"/engine.io/?EIO=4&transport=polling&sid={sid}"))
        self.assertEqual(connection.answer(), b"")
        self.clock.advance(10 * BODY)
        self.assertFalse(connection.closed)
        self.assertEqual(self.site.pending_connections, 0)
        self.server.sessions[sid].send("late")
        self.assertIn(b"late", connection.answer())
        self.clock.advance(IDLE + CHECK)
        self.assertTrue(connection.closed)

    def test_websocket_is_not_idle(self) -> None:
        """A WebSocket, which took its connection over, is never closed by the site, and the
        site keeps no record of it."""
        ws = self.server.resource()
        ws._ws_factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        root = Resource()
        root.putChild(b"engine.io", ws)
        site = EngineSite(root, reactor=self.clock, idle_timeout=IDLE, headers_timeout=HEADERS)
        connection = _Connection(site, _WSTransport(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)))
        connection.send(_get("/engine.io/?EIO=4&transport=websocket",
                             "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                             "Sec-WebSocket-Version: 13\r\n"))
        self.assertTrue(connection.answer().startswith(b"HTTP/1.1 101 "))
        self.assertIsNot(connection.transport.protocol, connection.protocol)  # type: ignore
        self.clock.advance(10 * HEADERS)
        self.assertFalse(connection.closed)
        self.assertEqual(site.pending_connections, 0)
        self.assertEqual(site._deadlines._tracked, 0)
        self.assertEqual(site.deadline_closes, {})


class HeadersDeadlineTests(_DeadlineCase):
    """A request's headers must all arrive within the headers deadline of its first byte."""

    def test_trickled_headers(self) -> None:
        """Headers sent a byte a second, which twisted.web's inactivity timeout would wait
        for forever, are answered 408 and closed at the deadline."""
        connection = self.connect()
        start = self.clock.seconds() + 1
        self.trickle(connection, _get("/engine.io/?EIO=4&transport=polling") * 2,
                     until=start + HEADERS - 0.5)
        self.assertFalse(connection.closed)
        self.trickle(connection, b"X-Slow: yes\r\n", until=start + HEADERS + CHECK + 0.5)
        self.assertTrue(connection.closed)
        self.assertEqual(connection.answer(),
                         b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n"
                         b"Content-Length: 0\r\n\r\n")
        self.assertEqual(self.site.deadline_closes, {"headers": 1})
        self.assertEqual(self.server.sessions, {})

    def test_half_request_line(self) -> None:
        """Half a request line, then silence, is closed at the headers deadline (the idle
        one no longer applies)."""
        connection = self.connect()
        connection.send(b"GET /engine.io/?EIO=4&tra")
        self.assert_closed_after(connection, HEADERS)
        self.assertIn(b" 408 ", connection.answer())

    def test_next_request_on_a_kept_alive_connection(self) -> None:
        """The next request's headers on a kept-alive connection have their own deadline."""
        connection = self.connect()
        self.handshake(connection)
        self.clock.advance(IDLE - 1)
        connection.send(b"GET / HTTP/1.1\r\n")
        self.assert_closed_after(connection, HEADERS)
        self.assertEqual(self.site.deadline_closes, {"headers": 1})

    def test_pipelined_request(self) -> None:
        """Bytes of a next request that arrived while a long-poll was held start its headers
        deadline once the long-poll is answered."""
        connection = self.connect()
        sid = self.handshake(connection)
        connection.send(_get(f"/engine.io/?EIO=4&transport=polling&sid={sid}") + b"GET / HT")
        self.clock.advance(2 * HEADERS)
        self.assertFalse(connection.closed)
        self.server.sessions[sid].send("x")
        connection.answer()
        self.assert_closed_after(connection, HEADERS)
        self.assertEqual(self.site.deadline_closes, {"headers": 1})


class BodyDeadlineTests(_DeadlineCase):
    """A request's body must all arrive within the body deadline of its headers."""

    def test_trickled_body(self) -> None:
        """A body sent a byte a second is answered 408 and closed at the body deadline,
        counted from the end of the headers, and never reaches the session."""
        connection = self.connect()
        sid = self.handshake(connection)
        messages: list[object] = []
        self.server.sessions[sid].on("message", messages.append)
        connection.send(f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                        "Host: 127.0.0.1\r\nContent-Length: 100\r\n\r\n".encode())
        start = self.clock.seconds()
        self.trickle(connection, b"4" + b"x" * 99, until=start + BODY - 0.5)
        self.assertFalse(connection.closed)
        self.trickle(connection, b"x" * 99, until=start + BODY + CHECK + 0.5)
        self.assertTrue(connection.closed)
        self.assertIn(b" 408 ", connection.answer())
        self.assertEqual(self.site.deadline_closes, {"body": 1})
        self.assertEqual(messages, [])
        connection.lost()
        self.assertEqual(dict(self.site.arriving_posts), {})

    def test_body_in_time(self) -> None:
        """A body that arrives within its deadline is served, and the connection is then
        idle."""
        connection = self.connect()
        sid = self.handshake(connection)
        connection.send(f"POST /engine.io/?EIO=4&transport=polling&sid={sid} HTTP/1.1\r\n"
                        "Host: 127.0.0.1\r\nContent-Length: 6\r\n\r\n4".encode())
        self.clock.advance(BODY - 1)
        connection.send(b"hello")
        self.assertIn(b"HTTP/1.1 200 ", connection.answer())
        self.clock.advance(IDLE + CHECK)
        self.assertEqual(self.site.deadline_closes, {"idle": 1})


class PendingCapTests(_DeadlineCase):
    """At most ``max_pending_connections`` connections wait for a request at once."""

    max_pending = 3

    def test_oldest_closed_to_make_room(self) -> None:
        """One connection past the cap closes the one that has waited longest: a silent one
        without a word, one whose request had begun with a 503; connections handling a
        request or idle after one do not count."""
        busy = self.connect()
        sid = self.handshake(busy)
        busy.send(_get(f"/engine.io/?EIO=4&transport=polling&sid={sid}"))  # held long-poll
        kept = self.connect()
        self.handshake(kept)  # idle after a response
        silent = self.connect()
        self.clock.advance(0.1)
        started = self.connect()
        started.send(b"GET / HT")
        self.clock.advance(0.1)
        third = self.connect()
        self.assertEqual(self.site.pending_connections, 3)
        self.clock.advance(0.1)
        fourth = self.connect()
        self.assertTrue(silent.closed)
        self.assertEqual(silent.answer(), b"")
        self.assertEqual(self.site.pending_connections, 3)
        fifth = self.connect()
        self.assertTrue(started.closed)
        self.assertIn(b"HTTP/1.1 503 Service Unavailable\r\n", started.answer())
        for connection in (busy, kept, third, fourth, fifth):
            self.assertFalse(connection.closed)
        self.assertEqual(self.site.deadline_closes, {"pending": 2})

    def test_cap_logged_once_a_check(self) -> None:
        """Closing to stay within the cap is a warning, one line a check, with the count."""
        with capturedLogs() as events:
            for _ in range(self.max_pending + 4):
                self.connect()
            self.clock.advance(CHECK)
        lines = [e for e in events if "max_pending_connections" in e.get("log_format", "")]
        self.assertEqual([(e["count"], e["limit"]) for e in lines], [(4, 3)])

    def test_default_cap(self) -> None:
        """Without a cap given, it is a quarter of the descriptor limit, 64 to 10,000."""
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        site = EngineSite(self.root, reactor=self.clock)
        expected = 10_000 if soft == resource.RLIM_INFINITY else max(64, min(10_000, soft // 4))
        self.assertEqual(site.max_pending_connections, expected)


class CheckTests(_DeadlineCase):
    """The periodic check: what it leaves behind, aborts, logs; options."""

    def test_no_timer_without_connections(self) -> None:
        """The check runs only while a connection waits for something: none is pending
        before the first connection nor after the last has gone."""
        self.assertEqual(self.clock.getDelayedCalls(), [])
        connections = [self.connect() for _ in range(3)]
        self.assertEqual(len(self.checks()), 1)
        for connection in connections:
            connection.lost()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_check_goes_on_while_listening(self) -> None:
        """While the site listens, the check goes on with no connection waiting (instead of
        stopping and starting again with each request of a lone client); once it stops
        listening, the check stops with the last waiting connection."""
        self.site.doStart()
        connection = self.connect()
        connection.lost()
        self.clock.advance(3 * CHECK)
        self.assertEqual(len(self.checks()), 1)
        connection = self.connect()
        self.site.doStop()
        self.assertEqual(len(self.checks()), 1)
        connection.lost()
        self.assertEqual(self.checks(), [])

    def test_abort_a_connection_that_does_not_go(self) -> None:
        """A connection closed for a deadline that is still open twisted.web's abortTimeout
        later is aborted."""
        connection = self.connect()
        self.clock.advance(IDLE + CHECK)
        self.assertTrue(connection.closed)
        self.assertFalse(connection.transport.disconnected)
        self.clock.advance(15 + CHECK)
        self.assertTrue(connection.transport.disconnected)
        self.assertEqual(self.site.deadline_closes, {"idle": 1, "aborted": 1})
        connection.lost()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closes_logged(self) -> None:
        """Connections closed past their headers or body deadline are logged, one line a
        check with the counts (here one check, the clock jumping past every deadline); idle
        ones, routine, are not."""
        with capturedLogs() as events:
            self.connect()
            self.connect().send(b"GET")
            self.connect().send(b"GET / HTTP/1.1\r\n")
            self.connect().send(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            self.clock.advance(BODY + CHECK)
        lines = [e for e in events if "deadline" in e.get("log_format", "")]
        self.assertEqual([(e["count"], e["causes"]) for e in lines], [(3, "1 body, 2 headers")])
        self.assertEqual(self.site.deadline_closes, {"idle": 1, "headers": 2, "body": 1})

    def test_inactivity_timeout_first(self) -> None:
        """twisted.web's inactivity timeout, when shorter than a deadline (or as long), closes
        a connection as that deadline does: a 408 for a request begun, counted, logged with
        the others rather than a line each."""
        site = self.make_site(timeout=3)
        silent, started = _Connection(site), _Connection(site)
        started.send(b"GET / HTTP/1.1\r\n")
        with capturedLogs() as events:
            self.clock.advance(3)
            self.assertTrue(silent.closed and started.closed)
            self.assertEqual(events, [])
            self.clock.advance(CHECK)
        self.assertEqual((silent.answer(), started.answer()[:30]),
                         (b"", b"HTTP/1.1 408 Request Timeout\r\n"))
        self.assertEqual(site.deadline_closes, {"idle": 1, "headers": 1})
        self.assertEqual([e.get("causes") for e in events], ["1 headers"])

    def test_no_deadline(self) -> None:
        """A deadline given as None does not apply."""
        # twisted.web's inactivity timeout off too: it would close both after a minute.
        site = self.make_site(idle_timeout=None, headers_timeout=None, timeout=None)
        silent = _Connection(site)
        started = _Connection(site)
        started.send(b"GET / HTTP/1.1\r\n")
        self.clock.advance(1000)
        self.assertFalse(silent.closed or started.closed)

    def test_bad_options(self) -> None:
        """A deadline must be a positive number of seconds, the cap at least 1."""
        for options in ({"idle_timeout": 0}, {"headers_timeout": -1.0},
                        {"body_timeout": float("nan")}, {"idle_timeout": float("inf")},
                        {"max_pending_connections": 0}):
            with self.assertRaises(ValueError):
                EngineSite(self.root, reactor=self.clock, **options)

    def test_http2_channel_left_alone(self) -> None:
        """A connection that negotiated HTTP/2 (twisted.web replaced its HTTP/1.1 channel) is
        not closed by the deadlines of the channel it no longer uses."""
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        transport.negotiatedProtocol = b"h2"  # type: ignore[attr-defined]
        connection = _Connection(self.site, transport)
        self.clock.advance(IDLE + CHECK)
        self.assertFalse(connection.closed)
        self.assertEqual(self.site.pending_connections, 0)
        self.assertEqual(self.checks(), [])


class TwistdOptionsTests(SynchronousTestCase):
    """``twistd sio``'s options for the deadlines reach its site."""

    def service_site(self, *argv: str) -> EngineSite:
        options = tap.Options()
        options.parseOptions(list(argv))
        service = tap.makeService(options, reactor=MemoryReactorClock())
        return service.site

    def test_defaults(self) -> None:
        """Without options, the site has EngineSite's defaults."""
        site = self.service_site()
        default = EngineSite(Resource(), reactor=Clock())
        for name in ("idle_timeout", "headers_timeout", "body_timeout",
                     "max_pending_connections"):
            self.assertEqual(getattr(site, name), getattr(default, name), name)
        self.assertEqual((site.idle_timeout, site.headers_timeout, site.body_timeout),
                         (5.0, 60.0, 60.0))

    def test_given(self) -> None:
        """Each option sets its bound of the site."""
        site = self.service_site("--idle-timeout", "7.5", "--headers-timeout", "30",
                                 "--body-timeout", "45", "--max-pending-connections", "500")
        self.assertEqual((site.idle_timeout, site.headers_timeout, site.body_timeout,
                          site.max_pending_connections), (7.5, 30.0, 45.0, 500))

    def test_bad_values(self) -> None:
        """A deadline that is not a positive number of seconds, or a cap that is not a
        positive whole number, is a one-line usage error naming the option."""
        for option, value in [("--idle-timeout", "0"), ("--headers-timeout", "-1"),
                              ("--body-timeout", "soon"), ("--idle-timeout", "inf"),
                              ("--max-pending-connections", "0"),
                              ("--max-pending-connections", "1.5"),
                              ("--max-pending-connections", "many")]:
            with self.assertRaises(usage.UsageError) as caught:
                tap.Options().parseOptions([option, value])
            self.assertIn(option, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))


# -- real loopback sockets ----------------------------------------------------------------------


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


#: what each kind of attacking connection sends when it opens, and then trickles a byte at a
#: time (never the end of its request)
_TRICKLED = (b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1\r\n"
             + b"X-Slow: " + b"a" * 1000)
_ATTACKS: dict[str, tuple[bytes, bytes]] = {
    "silent": (b"", b""),
    "half request line": (b"GET /socket.io/?EIO=4&transport=pol", b""),
    "trickled headers": (_TRICKLED[:1], _TRICKLED[1:]),
    "trickled body": (b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                      b"Host: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n", b"4" * 1000),
}


class _Attacker(Protocol):
    """One connection that never finishes a request; notes when it opened and was closed."""

    def __init__(self, kind: str, clock: Any) -> None:
        self.kind = kind
        self.clock = clock
        self.opened: defer.Deferred[None] = defer.Deferred()
        self.gone: defer.Deferred[None] = defer.Deferred()
        self.opened_at = self.closed_at = 0.0
        self._rest = _ATTACKS[kind][1]

    def connectionMade(self) -> None:
        self.opened_at = self.clock.seconds()
        first = _ATTACKS[self.kind][0]
        if first:
            self.transport.write(first)  # type: ignore[union-attr]
        self.opened.callback(None)

    def trickle(self) -> None:
        """Send the next byte, if this kind trickles and is connected (a peer whose
        connection is not made yet, on a busy machine, waits for the next tick)."""
        if self._rest and self.transport is not None and not self.gone.called:
            byte, self._rest = self._rest[:1], self._rest[1:]
            self.transport.write(byte)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.closed_at = self.clock.seconds()
        self.gone.callback(None)

    def lifetime(self) -> float:
        return self.closed_at - self.opened_at


class _Attack(ClientFactory):
    """Opens attacking connections to a port and trickles their bytes."""

    def __init__(self, port: int, every: float = 0.25) -> None:
        self.reactor = _reactor()
        self.port = port
        self.peers: list[_Attacker] = []
        self._next: list[_Attacker] = []
        self._trickling = LoopingCall(self._trickle)
        self._trickling.clock = self.reactor
        self._every = every

    def open(self, kind: str, count: int) -> list[_Attacker]:
        peers = [_Attacker(kind, self.reactor) for _ in range(count)]
        for peer in peers:
            self._next.append(peer)
            self.reactor.connectTCP("127.0.0.1", self.port, self)
        self.peers.extend(peers)
        if not self._trickling.running:
            self._trickling.start(self._every, now=False)
        return peers

    def buildProtocol(self, addr: Any) -> _Attacker:
        return self._next.pop(0)

    def clientConnectionFailed(self, connector: Any, reason: Failure) -> None:
        peer = self._next.pop(0)
        peer.opened.errback(reason)

    def _trickle(self) -> None:
        for peer in self.peers:
            peer.trickle()

    def gone(self, peers: Iterable[_Attacker], timeout: float) -> defer.Deferred[Any]:
        """Fires once every peer of ``peers`` is closed, or after ``timeout`` seconds."""
        waiting = defer.DeferredList([p.gone for p in peers])
        return waiting.addTimeout(timeout, self.reactor).addErrback(
            lambda f: f.trap(defer.TimeoutError))

    async def stop(self) -> None:
        """Stop trickling; abort every peer still open and wait (bounded) for it to go."""
        if self._trickling.running:
            self._trickling.stop()
        open_peers = [p for p in self.peers if p.transport is not None and not p.gone.called]
        for peer in open_peers:
            peer.transport.abortConnection()  # type: ignore[union-attr]
        await self.gone(open_peers, 5)


def _descriptors_for(count: int) -> int:
    """How many connections of each kind fit this process's descriptor limit (both ends of
    each are ours), at most ``count``."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return count
    return min(count, (soft - 200) // (2 * len(_ATTACKS)))


class LoopbackAttackTests(TestCase):
    """Hundreds of connections of each kind that never finish a request, against a server on
    loopback with 2 s deadlines, and a Socket.IO client among them."""

    DEADLINE = 2.0
    #: how late past its deadline a connection may be closed: the check runs every 0.5 s,
    #: and the machine may be busy
    SLACK = 2.0

    def serve(self, **options: Any) -> tuple[LoopbackSite, EngineSite]:
        io = txsio.Server()

        @io.on("connection")
        def connected(socket: txsio.Socket) -> None:
            socket.on("echo", lambda value: value)

        self.addCleanup(io.close)
        root = Resource()
        root.putChild(b"socket.io", io.resource())
        site = EngineSite(root, **options)
        factory = _TrackingFactory(site)
        reactor = _reactor()
        # A backlog for hundreds of connections opened at once.
        listening = reactor.listenTCP(0, factory, interface="127.0.0.1", backlog=2048)
        port = listening.getHost().port
        served = LoopbackSite(port, f"http://127.0.0.1:{port}", site, listening, factory,
                              reactor)
        self.addCleanup(served.stop)
        return served, site

    async def round_trip(self, url: str) -> float:
        """A Socket.IO client connects over polling and gets an ack: how long it took."""
        reactor = _reactor()
        started = reactor.seconds()
        client = txsio.Client(reconnection=False, timeout=5)
        self.addCleanup(client.disconnect)
        await client.connect(url, transports=("polling",)).addTimeout(5, reactor)
        answer = await client.emit_with_ack("echo", "hello").addTimeout(5, reactor)
        self.assertEqual(answer, "hello")
        await client.disconnect()
        return float(reactor.seconds() - started)

    async def test_deadlines_hold(self) -> None:
        """At least 90 % of the connections of each kind (silent, half a request line,
        headers or a body trickled a byte every 0.25 s) are closed by their deadline, none
        before, and a Socket.IO client connects and gets its ack meanwhile."""
        count = _descriptors_for(250)
        if count < 25:
            raise SkipTest("too few file descriptors for the attack")
        served, site = self.serve(idle_timeout=self.DEADLINE, headers_timeout=self.DEADLINE,
                                  body_timeout=self.DEADLINE, max_pending_connections=10_000)
        attack = _Attack(served.port)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(attack.stop()))
        kinds = {kind: attack.open(kind, count) for kind in _ATTACKS}
        await defer.gatherResults([p.opened for p in attack.peers]).addTimeout(10, _reactor())

        took = await self.round_trip(served.url)
        still_open = sum(not p.gone.called for p in attack.peers)

        await attack.gone(attack.peers, self.DEADLINE + self.SLACK + 3)
        for kind, peers in kinds.items():
            in_time = [p for p in peers
                       if p.gone.called and p.lifetime() <= self.DEADLINE + self.SLACK]
            early = [p.lifetime() for p in peers
                     if p.gone.called and p.lifetime() < self.DEADLINE - 0.2]
            self.assertGreaterEqual(len(in_time), 0.9 * count,
                                    f"{kind}: {len(in_time)} of {count} closed in time")
            self.assertEqual(early, [], kind)
        # The client was served while the attack went on.
        self.assertGreaterEqual(still_open, 0.5 * len(attack.peers),
                                f"the client took {took:.2f} s")
        closes = site.deadline_closes
        self.assertGreaterEqual(closes["idle"], 0.9 * count)
        self.assertGreaterEqual(closes["headers"], 0.9 * 2 * count)
        self.assertGreaterEqual(closes["body"], 0.9 * count)
        self.assertEqual(closes["pending"], 0)

    async def test_pending_cap_holds(self) -> None:
        """Past ``max_pending_connections`` silent connections, the oldest are closed at once
        (their deadline is far away), and a Socket.IO client is still served."""
        count = _descriptors_for(300)
        cap = 50
        if count < 2 * cap:
            raise SkipTest("too few file descriptors for the attack")
        served, site = self.serve(idle_timeout=60, max_pending_connections=cap)
        attack = _Attack(served.port)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(attack.stop()))
        peers = attack.open("silent", count)
        await defer.gatherResults([p.opened for p in peers]).addTimeout(10, _reactor())
        await self.round_trip(served.url)
        await attack.gone(peers[:count - cap], 5)
        self.assertEqual([p for p in peers[:count - cap] if not p.gone.called], [])
        self.assertLessEqual(site.pending_connections, cap)
        self.assertEqual(site.deadline_closes["idle"], 0)
        self.assertGreaterEqual(site.deadline_closes["pending"], count - cap)


#: A server with few descriptors: an EngineSite serving "ok" at /, its deadlines and cap out of
#: the way so that silent connections use up the descriptors.
_SMALL_SERVER = """
import json, os, resource, sys
_, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[1]), hard))
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.static import Data
from txsio.engineio import EngineSite
root = Resource()
root.putChild(b"", Data(b"ok", "text/plain"))
site = EngineSite(root, idle_timeout=600, max_pending_connections=10000)
port = reactor.listenTCP(0, site, interface="127.0.0.1", backlog=128)
print(json.dumps({"event": "listening", "port": port.getHost().port, "pid": os.getpid()}),
      flush=True)
reactor.run()
"""

REPO = Path(__file__).resolve().parent.parent


def _cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (Linux's /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class _Get(Protocol):
    """``GET /`` on a new connection; fires with the whole answer once the server closes."""

    def __init__(self) -> None:
        self.answer: defer.Deferred[bytes] = defer.Deferred()
        self._data = b""

    def connectionMade(self) -> None:
        self.transport.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n"  # type: ignore
                             b"Connection: close\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self._data += data

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.answer.callback(self._data)


class DescriptorExhaustionTests(TestCase):
    """A server out of file descriptors (a child process with a low ``RLIMIT_NOFILE``)."""

    LIMIT = 64

    async def test_out_of_descriptors(self) -> None:
        """Out of descriptors, the server closes each new connection at once instead of
        spinning on its listening socket (a few percent of a CPU at most), and once
        descriptors come back it serves again."""
        if not Path("/proc/self/stat").exists():
            raise SkipTest("needs Linux's /proc to measure the server's CPU time")
        reactor = _reactor()
        listening: defer.Deferred[dict[str, Any]] = defer.Deferred()

        def event(e: dict[str, Any]) -> None:
            if e.get("event") == "listening" and not listening.called:
                listening.callback(e)

        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
        child = spawn([sys.executable, "-c", _SMALL_SERVER, str(self.LIMIT)], on_event=event,
                      env=env, cwd=REPO)
        self.addCleanup(child.stop)
        started = await listening.addTimeout(15, reactor)
        port, pid = started["port"], started["pid"]
        attack = _Attack(port)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(attack.stop()))

        # More connections than the server has descriptors: it keeps some, closes the rest.
        held = attack.open("silent", 2 * self.LIMIT)
        await defer.gatherResults([p.opened for p in held]).addTimeout(10, reactor)
        await deferLater(reactor, 0.5)
        refused = [p for p in held if p.gone.called]
        self.assertGreaterEqual(len(refused), self.LIMIT // 4)
        self.assertGreaterEqual(len(held) - len(refused), self.LIMIT // 4)

        # Still out of descriptors: new connections keep coming; the server must not spin.
        before = _cpu_seconds(pid)
        late: list[_Attacker] = []
        for _ in range(20):
            late.extend(attack.open("silent", 1))
            await deferLater(reactor, 0.1)
        await attack.gone(late, 5)
        used = _cpu_seconds(pid) - before
        self.assertEqual([p for p in late if not p.gone.called], [])
        self.assertLess(used, 0.5, f"{used:.2f} s of CPU in about 2 s out of descriptors")

        # Descriptors come back: the server accepts and answers again.
        await attack.stop()
        answer = b""
        for _ in range(20):
            get = _Get()
            await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), get)
            answer = await get.answer.addTimeout(5, reactor)
            if answer:
                break
            await deferLater(reactor, 0.2)
        self.assertTrue(answer.startswith(b"HTTP/1.1 200 "), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nok"), answer)
