"""EngineIOResource and PollingTransport over in-memory HTTP (treq's StubTreq), no sockets."""

from __future__ import annotations

import base64
import json
import struct
from types import MethodType
from typing import Any
from urllib.parse import quote

from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone
from twisted.internet.interfaces import IProtocol
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.client import ResponseNeverReceived
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource
from twisted.web.server import Site

import txsio
from txsio._timers import TimerQueue
from txsio.engineio import CloseReason, EngineServer, EngineSession, SessionState
from txsio.engineio.packet import Packet, PacketType
from txsio.engineio.websocket import _SendFlow
from txsio.testing import MemoryTransport

from .typed import appended, delayed_calls, recorded

BASE = "http://127.0.0.1/engine.io/"


class Response:
    """A finished response: status, headers and body."""

    def __init__(self, code: int, headers: Any, body: bytes) -> None:
        self.code = code
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        values = self.headers.getRawHeaders(name.encode("ascii"))
        return None if values is None else ",".join(v.decode("latin-1") for v in values)

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


class ResourceTestCase(SynchronousTestCase):
    """Helpers: an EngineServer mounted at /engine.io/ behind StubTreq, echoing messages."""

    echo = True

    def setUp(self) -> None:
        self.start()

    def start(self, **kwargs: Any) -> None:
        self.clock = Clock()
        self.server = EngineServer(clock=self.clock, **kwargs)
        self.sessions: list[EngineSession] = []
        self.closed: dict[str, str] = {}
        self.server.on("connection", self._connected)
        root = Resource()
        root.putChild(b"engine.io", self.server.resource())
        # Any: StubTreq sets its treq functions (request, ...) as attributes at run time, so
        # the type checker does not see them.
        self.stub: Any = StubTreq(root)

    def _connected(self, session: EngineSession) -> None:
        self.sessions.append(session)
        session.on("close", lambda reason: self.closed.__setitem__(session.id, reason))
        if self.echo:
            session.on("message", session.send)

    # -- requests ---------------------------------------------------------------------------

    def url(self, sid: str | None = None, *, eio: str | None = "4",
            transport: str = "polling", **extra: str) -> str:
        query = []
        if eio is not None:
            query.append(f"EIO={eio}")
        query.append(f"transport={transport}")
        if sid is not None:
            query.append(f"sid={quote(sid)}")
        query.extend(f"{k}={quote(v)}" for k, v in extra.items())
        return BASE + "?" + "&".join(query)

    def start_request(self, method: str, url: str, *, headers: Any = None,
                      **kwargs: Any) -> Deferred[Any]:
        # Header names as bytes only: mixing str and bytes names trips BytesWarning (python -bb).
        raw = Headers({name.encode("ascii"): [v.encode("latin-1") for v in values]
                       for name, values in (headers or {}).items()})
        d: Deferred[Any] = self.stub.request(method, url, headers=raw, **kwargs)
        self.stub.flush()
        return d

    def finish(self, d: Deferred[Any]) -> Response:
        """The response of a request that must have been answered by now."""
        self.stub.flush()
        response = self.successResultOf(d)
        body = response.content()
        self.stub.flush()
        return Response(response.code, response.headers, self.successResultOf(body))

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        return self.finish(self.start_request(method, url, **kwargs))

    def get(self, sid: str | None = None, **kwargs: Any) -> Response:
        headers = kwargs.pop("headers", None)
        return self.request("GET", self.url(sid, **kwargs), headers=headers)

    def post(self, sid: str | None, data: bytes | str, *, headers: Any = None,
             **kwargs: Any) -> Response:
        if isinstance(data, str):
            data = data.encode("utf-8")
        return self.request("POST", self.url(sid, **kwargs), data=data, headers=headers)

    def handshake(self, **kwargs: Any) -> tuple[str, dict[str, Any]]:
        """Open a v4 session; return its sid and open packet."""
        response = self.get(**kwargs)
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.text[0], "0")
        opened = json.loads(response.text[1:])
        return opened["sid"], opened

    def assertBare(self, response: Response, status: int = 400) -> None:
        """``response`` is a refusal as Node's engine.io writes it: the status, no body, no
        content type."""
        self.assertEqual((response.code, response.body), (status, b""))
        self.assertIsNone(response.header("content-type"))

    def assertError(self, response: Response, code: int, status: int = 400) -> None:
        self.assertEqual((response.code, response.json()["code"]), (status, code),
                         response.body)
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertIsInstance(response.json()["message"], str)


class HandshakeTests(ResourceTestCase):
    """The first GET."""

    def test_handshake(self) -> None:
        """A GET without sid opens a session; the body is its open packet."""
        sid, opened = self.handshake()
        self.assertEqual(opened, {"sid": sid, "upgrades": ["websocket"], "pingInterval": 25000,
                                  "pingTimeout": 20000, "maxPayload": 1_000_000})
        self.assertEqual(len(sid), 20)
        self.assertEqual(list(self.server.sessions), [sid])
        self.assertEqual(self.sessions[0].id, sid)

    def test_handshake_request_recorded(self) -> None:
        """The session carries what the handshake request had: headers, query, address."""
        self.handshake(headers={"X-Custom": ["yes"]})
        request = self.sessions[0].request
        self.assertEqual(request.method, "GET")
        self.assertEqual(request.headers["x-custom"], "yes")
        self.assertEqual(request.query["EIO"], "4")
        self.assertEqual(request.address, "127.0.0.1")
        self.assertFalse(request.secure)

    def test_forwarded_address_from_trusted_proxies_only(self) -> None:
        """``X-Forwarded-For`` names the client only when the peer is a trusted proxy (the
        test's peer is 127.0.0.1); otherwise the peer's address stays, whatever it claims."""
        self.handshake(headers={"X-Forwarded-For": ["203.0.113.9"]})
        self.assertEqual(self.sessions[-1].request.address, "127.0.0.1")
        self.start(trusted_proxies=["127.0.0.0/8"])
        self.handshake(headers={"X-Forwarded-For": ["198.51.100.1, 203.0.113.9"]})
        self.assertEqual(self.sessions[-1].request.address, "203.0.113.9")
        self.start(trusted_proxies=["10.0.0.0/8"])
        self.handshake(headers={"X-Forwarded-For": ["203.0.113.9"]})
        self.assertEqual(self.sessions[-1].request.address, "127.0.0.1")

    def test_response_headers(self) -> None:
        """Polling responses are text/plain UTF-8 and never cached."""
        response = self.get()
        self.assertEqual(response.header("content-type"), "text/plain; charset=UTF-8")
        self.assertEqual(response.header("cache-control"), "no-store")

    def test_no_upgrades_without_websocket(self) -> None:
        """A server without WebSocket, or with upgrades off, offers none."""
        for kwargs in ({"transports": ["polling"]}, {"allow_upgrades": False}):
            self.start(**kwargs)
            _, opened = self.handshake()
            self.assertEqual(opened["upgrades"], [])

    def test_each_handshake_is_a_new_session(self) -> None:
        """Two handshakes give two sessions with different ids."""
        sid1, _ = self.handshake()
        sid2, _ = self.handshake()
        self.assertNotEqual(sid1, sid2)
        self.assertEqual(set(self.server.sessions), {sid1, sid2})


class BadRequestTests(ResourceTestCase):
    """Every refused request gets 400 (or 403) and the spec's JSON body."""

    def test_missing_eio(self) -> None:
        """No EIO parameter is an unsupported protocol version."""
        self.assertError(self.get(eio=None), 5)

    def test_bad_eio(self) -> None:
        """EIO=abc (or 5) is an unsupported protocol version."""
        self.assertError(self.get(eio="abc"), 5)
        self.assertError(self.get(eio="5"), 5)

    def test_eio3_off(self) -> None:
        """EIO=3 is refused with code 5 unless allow_eio3 is on."""
        self.assertError(self.get(eio="3"), 5)
        self.assertEqual(self.server.sessions, {})

    def test_unknown_transport(self) -> None:
        """An unknown transport is code 0, and so is one the server does not allow."""
        self.assertError(self.get(transport="flash"), 0)
        self.start(transports=["polling"])
        self.assertError(self.get(transport="websocket"), 0)

    def test_websocket_without_upgrade(self) -> None:
        """transport=websocket on a plain GET (no Upgrade header) is a bad request."""
        self.assertError(self.get(transport="websocket"), 3)
        sid, _ = self.handshake()
        self.assertError(self.get(sid, transport="websocket"), 3)

    def test_post_without_sid(self) -> None:
        """A POST or PUT without sid is a bad handshake method."""
        self.assertError(self.post(None, "4hello"), 2)
        self.assertError(self.request("PUT", self.url(), data=b"4x"), 2)
        self.assertEqual(self.server.sessions, {})

    def test_options_without_cors(self) -> None:
        """With CORS off, OPTIONS is just a bad handshake method."""
        self.assertError(self.request("OPTIONS", self.url()), 2)

    def test_bad_method_with_sid(self) -> None:
        """A PUT with a valid sid is a bad method, and the session lives on."""
        sid, _ = self.handshake()
        self.assertError(self.request("PUT", self.url(sid), data=b"4x"), 2)
        self.assertIn(sid, self.server.sessions)

    def test_unknown_sid(self) -> None:
        """An unknown sid is code 1, for GET and POST alike."""
        self.assertError(self.get("nope"), 1)
        self.assertError(self.post("nope", "4x"), 1)

    def test_polling_after_upgrade(self) -> None:
        """Polling requests for a session that upgraded to WebSocket are refused with code 3."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        ws = MemoryTransport("websocket")
        session.begin_upgrade(ws)
        session.receive(Packet(PacketType.PING, "probe"), ws)
        session.receive(Packet(PacketType.UPGRADE), ws)
        self.assertIs(session.transport, ws)
        self.assertError(self.get(sid), 3)
        self.assertError(self.post(sid, "4x"), 3)
        self.assertIs(session.state, SessionState.OPEN)

    def test_malformed_post(self) -> None:
        """A POST body that does not parse is answered "ok" (as Node's engine.io 6, the
        reference), logged, and ends the session."""
        for body in (b"", b"9x", b"4a\x1e", b"b!!!", b"\xff\xfe"):
            self.start()
            sid, _ = self.handshake()
            with capturedLogs() as events:
                response = self.post(sid, body)
            self.assertEqual((response.code, response.text, response.header("content-type")),
                             (200, "ok", "text/html"), body)
            self.assertEqual(self.closed, {sid: CloseReason.PARSE_ERROR})
            self.assertTrue(any(e["log_level"] is LogLevel.warn and e.get("sid") == sid
                                for e in events), body)
            self.assertError(self.get(sid), 1)

    def test_malformed_post_releases_poll(self) -> None:
        """A parse error answers the session's pending GET with a close packet."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        self.assertNoResult(poll)
        self.assertEqual(self.post(sid, "x").text, "ok")  # Node's answer
        self.assertEqual(self.finish(poll).text, "1")

    def test_concurrent_gets(self) -> None:
        """A second GET while one is pending is refused with a bare 400 (Node's engine.io 6 /
        socket.io 4.8 is the reference; txsio sent a JSON body with code 3 before); the session
        ends with a close packet."""
        sid, _ = self.handshake()
        first = self.start_request("GET", self.url(sid))
        self.assertNoResult(first)
        self.assertBare(self.get(sid))
        self.assertEqual(self.finish(first).text, "1")
        self.assertEqual(self.closed, {sid: CloseReason.TRANSPORT_ERROR})
        self.assertEqual(self.server.sessions, {})

    def test_post_too_large(self) -> None:
        """A POST body over max_http_buffer_size is a bare 413 (no body, no content type), its
        packets dropped, and the session lives on, as Node's engine.io 6 (the reference)."""
        self.start(max_http_buffer_size=10)
        sid, opened = self.handshake()
        self.assertEqual(opened["maxPayload"], 10)
        self.assertEqual(self.post(sid, "4" + "x" * 9).code, 200)
        response = self.post(sid, "4" + "x" * 10)
        self.assertEqual((response.code, response.body), (413, b""))
        self.assertIsNone(response.header("content-type"))
        self.assertIsNone(response.header("cache-control"))
        self.assertEqual(self.closed, {})
        self.assertEqual(self.post(sid, "4y").text, "ok")
        self.assertEqual(self.get(sid).text, "4" + "x" * 9 + "\x1e4y")

    def test_binary_post_from_eio4(self) -> None:
        """An application/octet-stream POST from an EIO4 client is a bare 400 (as Node's
        engine.io 6, the reference; a JSON body with code 3 before) and ends the session."""
        sid, _ = self.handshake()
        response = self.post(sid, b"\x04abc",
                             headers={"Content-Type": ["application/octet-stream"]})
        self.assertBare(response)
        self.assertEqual(self.closed, {sid: CloseReason.TRANSPORT_ERROR})

    def test_good_packets_before_garbage(self) -> None:
        """The packets of a POST before a bad record are received, then the session closes
        with "parse error" (Node's engine.io 6 / engine.io-parser 5 is the reference; txsio
        dropped the whole body before)."""
        received: list[object] = []
        sid, _ = self.handshake()
        self.sessions[0].on("message", received.append)
        self.assertEqual(self.post(sid, "4a\x1e4b\x1ex\x1e4c").text, "ok")
        self.assertEqual(received, ["a", "b"])
        self.assertEqual(self.closed, {sid: CloseReason.PARSE_ERROR})

    def test_close_before_garbage(self) -> None:
        """A close packet before a bad record closes the session as the client's close, as
        Node's (the bad record is not read once the session is closed)."""
        sid, _ = self.handshake()
        self.assertEqual(self.post(sid, "1\x1ex").text, "ok")
        self.assertEqual(self.closed, {sid: CloseReason.TRANSPORT_CLOSE})

    def test_others_unaffected(self) -> None:
        """One session's bad input closes that session only."""
        good, _ = self.handshake()
        bad, _ = self.handshake()
        poll = self.start_request("GET", self.url(good))
        self.assertEqual(self.post(bad, "garbage").text, "ok")  # Node's answer
        self.assertError(self.get(bad), 1)
        self.assertNoResult(poll)
        self.assertEqual(self.post(good, "4still").text, "ok")
        self.assertEqual(self.finish(poll).text, "4still")
        self.assertEqual(list(self.server.sessions), [good])


class PollingTests(ResourceTestCase):
    """Round trips over long polling."""

    def test_round_trip(self) -> None:
        """POST "4hello" is echoed back on the next GET."""
        sid, _ = self.handshake()
        response = self.post(sid, "4hello")
        self.assertEqual((response.code, response.text), (200, "ok"))
        self.assertEqual(self.get(sid).text, "4hello")

    def test_long_poll(self) -> None:
        """A GET with nothing to send waits until a message arrives."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        self.assertNoResult(poll)
        self.server.sessions[sid].send("later")
        self.assertEqual(self.finish(poll).text, "4later")

    def test_several_packets(self) -> None:
        """Several packets in a POST are received in order and sent back in one payload."""
        sid, _ = self.handshake()
        self.post(sid, "4a\x1e4b\x1e6\x1e4c")
        self.assertEqual(self.get(sid).text, "4a\x1e4b\x1e4c")

    def test_binary(self) -> None:
        """A "b" + base64 record is a binary message, and a binary message is sent that way."""
        received: list[object] = []
        sid, _ = self.handshake()
        self.sessions[0].on("message", received.append)
        self.post(sid, "b" + base64.b64encode(b"\x00\x01\xff").decode())
        self.assertEqual(received, [b"\x00\x01\xff"])
        self.assertEqual(self.get(sid).text, "bAAH/")

    def test_record_separator_dropped(self) -> None:
        """A message holding U+001E cannot travel over v4 polling: dropped with a warning."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        session.send("a\x1eb")
        session.send("ok")
        with capturedLogs() as events:
            self.assertEqual(self.get(sid).text, "4ok")
        self.assertTrue(any(e["log_level"] is LogLevel.warn for e in events))
        session.send("only\x1e")
        self.assertEqual(self.get(sid).text, "6")
        self.assertIs(session.state, SessionState.OPEN)

    def test_utf8(self) -> None:
        """Non-ASCII text crosses both ways as UTF-8."""
        sid, _ = self.handshake()
        self.post(sid, "4héllo €😀")
        self.assertEqual(self.get(sid).body, "4héllo €😀".encode())

    def test_ping_pong(self) -> None:
        """The server's ping goes out on a pending GET; the client's pong keeps the session."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        self.clock.advance(25)
        self.assertEqual(self.finish(poll).text, "2")
        self.clock.advance(19)
        self.post(sid, "3")
        self.clock.advance(1)
        self.assertIn(sid, self.server.sessions)

    def test_ping_timeout(self) -> None:
        """A client that does not answer is closed with "ping timeout" and its poll released."""
        sid, _ = self.handshake()
        self.clock.advance(25)
        self.assertEqual(self.get(sid).text, "2")
        poll = self.start_request("GET", self.url(sid))
        self.clock.advance(20)
        self.assertEqual(self.finish(poll).text, "1")
        self.assertEqual(self.closed, {sid: CloseReason.PING_TIMEOUT})

    def test_client_close(self) -> None:
        """A close packet releases the pending GET with a noop and ends the session."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        self.assertEqual(self.post(sid, "1").text, "ok")
        self.assertEqual(self.finish(poll).text, "6")
        self.assertEqual(self.closed, {sid: CloseReason.TRANSPORT_CLOSE})
        self.assertError(self.get(sid), 1)

    def test_server_close_pending_get(self) -> None:
        """session.close() answers the pending GET with the close packet: "forced close"."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        self.server.sessions[sid].close()
        self.assertEqual(self.finish(poll).text, "1")
        self.assertEqual(self.closed, {sid: CloseReason.FORCED_CLOSE})

    def test_server_close_queued(self) -> None:
        """session.close() with queued messages delivers them before the close packet."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        session.send("a")
        session.send("b")
        session.close()
        self.assertEqual(self.closed, {})
        self.assertEqual(self.get(sid).text, "4a\x1e4b\x1e1")
        self.assertEqual(self.closed, {sid: CloseReason.FORCED_CLOSE})

    def test_server_close_timeout(self) -> None:
        """A closing session no GET comes for is dropped after close_timeout."""
        sid, _ = self.handshake()
        self.server.sessions[sid].close()
        self.clock.advance(30)
        self.assertEqual(self.closed, {sid: CloseReason.FORCED_CLOSE})
        self.assertError(self.get(sid), 1)

    def test_client_goes_away(self) -> None:
        """A poll cancelled by its client closes the session; nothing is written afterwards."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        poll = self.start_request("GET", self.url(sid))
        poll.cancel()
        self.stub.flush()
        self.failureResultOf(poll, ResponseNeverReceived)
        self.assertEqual(self.closed, {sid: CloseReason.TRANSPORT_ERROR})
        self.assertEqual(self.server.sessions, {})
        session.send("ignored")
        session.close()
        self.clock.advance(100)
        self.stub.flush()
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_upgrade_releases_poll(self) -> None:
        """During an upgrade the pending GET and any later GET are answered with a noop."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        poll = self.start_request("GET", self.url(sid))
        ws = MemoryTransport("websocket")
        session.begin_upgrade(ws)
        session.receive(Packet(PacketType.PING, "probe"), ws)
        self.assertEqual(ws.sent, [Packet(PacketType.PONG, "probe")])
        self.assertEqual(self.finish(poll).text, "6")
        self.assertEqual(self.get(sid).text, "6")
        session.send("after")
        session.receive(Packet(PacketType.UPGRADE), ws)
        self.assertEqual(ws.sent[1:], [Packet(PacketType.MESSAGE, "after")])

    def test_server_shutdown(self) -> None:
        """EngineServer.close() ends every session with "server shutting down"."""
        sid1, _ = self.handshake()
        sid2, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid1))
        self.server.close()
        self.assertEqual(self.finish(poll).text, "1")
        self.assertEqual(self.closed, {sid1: CloseReason.SERVER_SHUTTING_DOWN,
                                       sid2: CloseReason.SERVER_SHUTTING_DOWN})
        self.assertEqual(self.server.sessions, {})
        self.assertError(self.get(sid2), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])


class EIO3Tests(ResourceTestCase):
    """Engine.IO v3 clients (allow_eio3=True)."""

    def setUp(self) -> None:
        self.start(allow_eio3=True, allow_jsonp=True)

    def handshake3(self, **extra: str) -> str:
        response = self.get(eio="3", **extra)
        self.assertEqual(response.code, 200, response.body)
        text = response.text
        if "j" in extra:
            prefix = f"___eio[{extra['j']}]("
            self.assertTrue(text.startswith(prefix) and text.endswith(");"), text)
            text = json.loads(text[len(prefix):-2])
        length, _, packet = text.partition(":")
        self.assertEqual(int(length), len(packet))
        self.assertEqual(packet[0], "0")
        sid: str = json.loads(packet[1:])["sid"]
        self.assertEqual(self.sessions[-1].protocol, 3)
        return sid

    def test_round_trip(self) -> None:
        """Length-prefixed payloads both ways, lengths in UTF-16 code units."""
        sid = self.handshake3()
        self.assertEqual(self.post(sid, "6:4hello3:4😀", eio="3").text, "ok")
        response = self.get(sid, eio="3")
        self.assertEqual(response.text, "6:4hello3:4😀")
        self.assertEqual(response.header("content-type"), "text/plain; charset=UTF-8")

    def test_ping(self) -> None:
        """A v3 client's ping is answered with a pong."""
        sid = self.handshake3()
        self.post(sid, "1:2", eio="3")
        self.assertEqual(self.get(sid, eio="3").text, "1:3")

    def test_binary_payload(self) -> None:
        """A binary message goes out as a binary payload to a client that supports it."""
        sid = self.handshake3()
        self.sessions[0].send(b"\x01\x02")
        response = self.get(sid, eio="3")
        self.assertEqual(response.header("content-type"), "application/octet-stream")
        self.assertEqual(response.body, b"\x01\x03\xff\x04\x01\x02")

    def test_binary_post(self) -> None:
        """A binary POST (octet-stream) from a v3 client is decoded and echoed."""
        sid = self.handshake3()
        body = b"\x01\x04\xff\x04abc" + b"\x00\x02\xff4x"
        self.assertEqual(self.post(sid, body, eio="3",
                                   headers={"Content-Type": ["application/octet-stream"]}).text,
                         "ok")
        response = self.get(sid, eio="3")
        self.assertEqual(response.body, b"\x01\x04\xff\x04abc\x00\x02\xff4x")

    def test_b64(self) -> None:
        """With b64=1 binary messages come as "b4" + base64 in a string payload."""
        sid = self.handshake3(b64="1")
        self.sessions[0].send(b"\x01\x02")
        response = self.get(sid, eio="3", b64="1")
        self.assertEqual(response.text, "6:b4AQI=")
        self.assertEqual(response.header("content-type"), "text/plain; charset=UTF-8")

    def test_jsonp(self) -> None:
        """JSONP: the GET is JavaScript calling ___eio[j], the POST a form with field d."""
        sid = self.handshake3(j="0")
        response = self.request(
            "POST", self.url(sid, eio="3", j="0"), data=b"d=" + quote("6:4hello").encode(),
            headers={"Content-Type": ["application/x-www-form-urlencoded"]})
        self.assertEqual((response.code, response.text), (200, "ok"))
        self.sessions[0].send(b"\x01")
        response = self.get(sid, eio="3", j="0")
        self.assertEqual(response.header("content-type"), "text/javascript; charset=UTF-8")
        self.assertEqual(response.text, '___eio[0]("6:4hello6:b4AQ==");')

    def test_jsonp_bad_index(self) -> None:
        """A JSONP index that is not digits is a bad request, never a 500 or a session."""
        for index in ("abc", "1);alert(1", ""):
            self.assertError(self.get(eio="3", j=index), 3)
        self.assertEqual(self.server.sessions, {})

    def test_jsonp_bad_form(self) -> None:
        """A JSONP POST without the field d is a parse error."""
        sid = self.handshake3(j="0")
        response = self.request(
            "POST", self.url(sid, eio="3", j="0"), data=b"x=1",
            headers={"Content-Type": ["application/x-www-form-urlencoded"]})
        self.assertEqual((response.code, response.text), (200, "ok"))  # Node's answer
        self.assertEqual(self.closed, {sid: CloseReason.PARSE_ERROR})

    def test_eio4_and_eio3_side_by_side(self) -> None:
        """A v4 session on the same server still uses v4 payloads."""
        sid3 = self.handshake3()
        sid4, _ = self.handshake()
        self.post(sid4, "4a\x1e4b")
        self.post(sid3, "2:4a2:4b", eio="3")
        self.assertEqual(self.get(sid4).text, "4a\x1e4b")
        self.assertEqual(self.get(sid3, eio="3").text, "2:4a2:4b")


class CorsTests(ResourceTestCase):
    """Origins and CORS headers."""

    def cors_headers(self, response: Response) -> dict[str, str]:
        return {name.decode().lower(): ",".join(v.decode() for v in values)
                for name, values in response.headers.getAllRawHeaders()
                if name.lower().startswith(b"access-control-") or name.lower() == b"vary"}

    def test_origins_checked_when_built(self) -> None:
        """An allowed origin that no browser could send (no scheme, a path) is refused when
        the server is built, with a message that shows the right form; "*" and real origins
        (a trailing slash forgiven) are accepted."""
        for bad in ["app.example", ["https://ok.example", "app.example"],
                    "https://app.example/path", "//app.example"]:
            error = self.assertRaises(ValueError, EngineServer, cors_allowed_origins=bad)
            self.assertIn("https://app.example", str(error))
        self.assertRaises(TypeError, EngineServer, cors_allowed_origins=[42])
        for good in ["*", "https://app.example/", ["http://localhost:8080"]]:
            EngineServer(cors_allowed_origins=good, clock=Clock())
        self.assertRaises(ValueError, txsio.Server, cors_allowed_origins="app.example",
                          clock=Clock())

    def test_default_no_origin(self) -> None:
        """By default a request without Origin is served with no CORS headers."""
        response = self.get()
        self.assertEqual(response.code, 200)
        self.assertEqual(self.cors_headers(response), {})

    def test_default_foreign_origin(self) -> None:
        """By default a request from a foreign Origin is refused with 403, code 4."""
        response = self.get(headers={"Origin": ["http://evil.example"]})
        self.assertError(response, 4, 403)
        self.assertEqual(self.cors_headers(response), {})
        self.assertEqual(self.server.sessions, {})

    def test_default_foreign_origin_on_session(self) -> None:
        """A foreign Origin is refused on a session's requests too, and the session lives on."""
        sid, _ = self.handshake()
        evil = {"Origin": ["http://evil.example"]}
        self.assertError(self.get(sid, headers=evil), 4, 403)
        self.assertError(self.post(sid, "4x", headers=evil), 4, 403)
        self.assertIn(sid, self.server.sessions)

    def test_same_origin(self) -> None:
        """An Origin matching the Host header is served (same origin), without CORS headers."""
        for origin in ("http://127.0.0.1", "http://127.0.0.1:80"):
            response = self.get(headers={"Origin": [origin]})
            self.assertEqual(response.code, 200, origin)
            self.assertEqual(self.cors_headers(response), {})
        self.assertError(self.get(headers={"Origin": ["https://127.0.0.1"]}), 4, 403)
        self.assertError(self.get(headers={"Origin": ["http://127.0.0.1:8080"]}), 4, 403)

    def test_default_preflight(self) -> None:
        """By default a foreign preflight is refused."""
        response = self.request("OPTIONS", self.url(), headers={
            "Origin": ["http://evil.example"], "Access-Control-Request-Method": ["POST"]})
        self.assertError(response, 4, 403)

    def check_allowed(self, origin: str, allow_origin: str) -> None:
        headers = {"Origin": [origin]}
        response = self.get(headers=headers)
        self.assertEqual(response.code, 200)
        cors = self.cors_headers(response)
        self.assertEqual(cors["access-control-allow-origin"], allow_origin)
        preflight = self.request("OPTIONS", self.url(), headers={
            "Origin": [origin], "Access-Control-Request-Method": ["POST"],
            "Access-Control-Request-Headers": ["content-type, x-custom"]})
        self.assertEqual(preflight.code, 204)
        self.assertEqual(preflight.body, b"")
        cors = self.cors_headers(preflight)
        self.assertEqual(cors["access-control-allow-origin"], allow_origin)
        self.assertIn("POST", cors["access-control-allow-methods"])
        self.assertIn("GET", cors["access-control-allow-methods"])
        self.assertEqual(cors["access-control-allow-headers"], "content-type, x-custom")
        self.assertEqual(self.server.sessions.keys() - {s.id for s in self.sessions}, set())

    def check_refused(self, origin: str) -> None:
        self.assertError(self.get(headers={"Origin": [origin]}), 4, 403)
        preflight = self.request("OPTIONS", self.url(), headers={
            "Origin": [origin], "Access-Control-Request-Method": ["POST"]})
        self.assertError(preflight, 4, 403)
        self.assertEqual(self.cors_headers(preflight), {})

    def test_list(self) -> None:
        """A list of origins: those are served with CORS headers; others refused."""
        self.start(cors_allowed_origins=["https://app.example", "http://other.example/"])
        self.check_allowed("https://app.example", "https://app.example")
        self.check_allowed("http://other.example", "http://other.example")
        response = self.get(headers={"Origin": ["https://app.example"]})
        cors = self.cors_headers(response)
        self.assertEqual(cors["access-control-allow-credentials"], "true")
        self.assertEqual(cors["vary"], "Origin")
        self.check_refused("https://evil.example")
        self.check_refused("http://app.example")

    def test_single_string(self) -> None:
        """A single origin string is a list of one."""
        self.start(cors_allowed_origins="https://app.example")
        self.check_allowed("https://app.example", "https://app.example")
        self.check_refused("https://evil.example")

    def test_star(self) -> None:
        """"*" allows any origin, answering with "*"."""
        self.start(cors_allowed_origins="*")
        self.check_allowed("https://anything.example", "*")
        self.assertEqual(self.cors_headers(self.get()), {})

    def test_error_responses_carry_cors(self) -> None:
        """An allowed origin can read error responses: they carry the CORS headers too."""
        self.start(cors_allowed_origins=["https://app.example"])
        response = self.get("nope", headers={"Origin": ["https://app.example"]})
        self.assertError(response, 1)
        self.assertEqual(self.cors_headers(response)["access-control-allow-origin"],
                         "https://app.example")

    def test_callable(self) -> None:
        """A callable decides per origin."""
        asked: list[str] = []

        def allowed(origin: str) -> bool:
            asked.append(origin)
            return origin.endswith(".good.example")

        self.start(cors_allowed_origins=allowed)
        self.check_allowed("https://a.good.example", "https://a.good.example")
        self.check_refused("https://bad.example")
        self.assertIn("https://bad.example", asked)

    def test_callable_raises(self) -> None:
        """A callable that raises refuses the origin, and the error is logged."""
        def broken(origin: str) -> bool:
            raise ZeroDivisionError

        self.start(cors_allowed_origins=broken)
        self.assertError(self.get(headers={"Origin": ["https://x.example"]}), 4, 403)
        self.assertTrue(self.flushLoggedErrors(ZeroDivisionError))


class AllowRequestTests(ResourceTestCase):
    """The allow_request hook."""

    def test_false(self) -> None:
        """allow_request returning False refuses the handshake with 403, code 4."""
        seen: list[object] = []
        self.start(allow_request=lambda request: recorded(seen, request, False))
        self.assertError(self.get(), 4, 403)
        self.assertEqual(len(seen), 1)
        self.assertEqual(self.server.sessions, {})

    def test_true(self) -> None:
        """allow_request returning True lets the handshake through."""
        self.start(allow_request=lambda request: True)
        self.handshake()

    def test_only_handshakes(self) -> None:
        """allow_request is asked once per session, not for its later requests."""
        seen: list[object] = []
        self.start(allow_request=lambda request: recorded(seen, request, True))
        sid, _ = self.handshake()
        self.post(sid, "4x")
        self.get(sid)
        self.assertEqual(len(seen), 1)

    def test_deferred_true(self) -> None:
        """A Deferred answer holds the handshake until it fires True."""
        answers: list[Deferred[bool]] = []
        self.start(allow_request=lambda request: appended(answers, Deferred()))
        pending = self.start_request("GET", self.url())
        self.assertNoResult(pending)
        self.assertEqual(self.server.sessions, {})
        answers[0].callback(True)
        response = self.finish(pending)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.text[0], "0")
        self.assertEqual(len(self.server.sessions), 1)

    def test_deferred_false(self) -> None:
        """A Deferred firing False refuses the handshake."""
        answers: list[Deferred[bool]] = []
        self.start(allow_request=lambda request: appended(answers, Deferred()))
        pending = self.start_request("GET", self.url())
        answers[0].callback(False)
        self.assertError(self.finish(pending), 4, 403)
        self.assertEqual(self.server.sessions, {})

    def test_deferred_fails(self) -> None:
        """A Deferred that fails refuses the handshake and logs the failure."""
        answers: list[Deferred[bool]] = []
        self.start(allow_request=lambda request: appended(answers, Deferred()))
        pending = self.start_request("GET", self.url())
        answers[0].errback(ZeroDivisionError())
        self.assertError(self.finish(pending), 4, 403)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_deferred_client_gone(self) -> None:
        """A client that leaves before the answer gets no session and no write."""
        answers: list[Deferred[bool]] = []
        self.start(allow_request=lambda request: appended(answers, Deferred()))
        pending = self.start_request("GET", self.url())
        pending.cancel()
        self.stub.flush()
        self.failureResultOf(pending, ResponseNeverReceived)
        answers[0].callback(True)
        self.stub.flush()
        self.assertEqual(self.server.sessions, {})
        self.assertEqual(self.sessions, [])

    def test_raises(self) -> None:
        """allow_request raising refuses the handshake and logs the error."""
        def broken(request: object) -> bool:
            raise ZeroDivisionError

        self.start(allow_request=broken)
        self.assertError(self.get(), 4, 403)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)


class CookieTests(ResourceTestCase):
    """The io cookie."""

    def test_no_cookie_by_default(self) -> None:
        """Without the option, no cookie is set."""
        self.assertIsNone(self.get().header("set-cookie"))

    def test_cookie_on_handshake_only(self) -> None:
        """cookie=True sets io=<sid> on the handshake response and nowhere else."""
        self.start(cookie=True)
        response = self.get()
        sid = json.loads(response.text[1:])["sid"]
        self.assertEqual(response.header("set-cookie"),
                         f"io={sid}; Path=/; HttpOnly; SameSite=lax")
        self.assertIsNone(self.post(sid, "4x").header("set-cookie"))
        self.assertIsNone(self.get(sid).header("set-cookie"))

    def test_cookie_name(self) -> None:
        """A string names the cookie."""
        self.start(cookie="sticky")
        response = self.get()
        self.assertTrue((response.header("set-cookie") or "").startswith("sticky="))

    def test_cookie_attributes(self) -> None:
        """Every cookie option is written, extra attributes last."""
        self.start(cookie={"name": "sticky", "path": "/app", "domain": "example.com",
                           "max_age": 60, "secure": True, "http_only": False,
                           "same_site": "None", "extra": ("Partitioned",)})
        response = self.get()
        sid = json.loads(response.text[1:])["sid"]
        self.assertEqual(response.header("set-cookie"),
                         f"sticky={sid}; Domain=example.com; Path=/app; Max-Age=60; Secure; "
                         "SameSite=none; Partitioned")


# -- WebSocket, in memory ----------------------------------------------------------------------


class _TCPLikeTransport(StringTransport):
    """A StringTransport that names its protocol, as a TCP transport does (Autobahn's
    WebSocket takeover reads it and replaces it)."""

    protocol: IProtocol


class _WSTransport(_TCPLikeTransport):
    """A StringTransport that, like a TCP transport, lets Autobahn unregister no producer."""

    def unregisterProducer(self) -> None:
        self.producer = None


def _client_frame(payload: bytes, opcode: int = 1) -> bytes:
    """A masked client frame."""
    mask = b"\x12\x34\x56\x78"
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Parse the unmasked frames a server wrote: ``(opcode, payload)`` each."""
    frames = []
    pos = 0
    while pos < len(data):
        opcode = data[pos] & 0x0F
        n = data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            (n,) = struct.unpack("!H", data[pos:pos + 2])
            pos += 2
        elif n == 127:
            (n,) = struct.unpack("!Q", data[pos:pos + 8])
            pos += 8
        frames.append((opcode, data[pos:pos + n]))
        pos += n
    return frames


class WebSocketClient:
    """One in-memory WebSocket connection to an EngineServer, through its resource in a Site."""

    #: the transport the connection runs on
    transport_class: type[_WSTransport] = _WSTransport

    def __init__(self, server: EngineServer, query: str,
                 headers: dict[str, str] | None = None) -> None:
        resource = server.resource()
        # No Autobahn timers (they would go to the global reactor); the session has its own.
        resource._ws_factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        root = Resource()
        root.putChild(b"engine.io", resource)
        site = Site(root, reactor=Clock())
        self.transport = self.transport_class(
            peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport.protocol = channel  # as a TCP transport has; Autobahn replaces it
        channel.makeConnection(self.transport)
        channel.dataReceived((
            f"GET /engine.io/?{query} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
            + "\r\n").encode())
        self.protocol: Any = self.transport.protocol
        head, _, rest = self.transport.value().partition(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])
        self._frames = rest
        self.transport.clear()

    def frames(self) -> list[tuple[int, bytes]]:
        """The frames received since the last call."""
        data, self._frames = self._frames + self.transport.value(), b""
        self.transport.clear()
        return _server_frames(data)

    def texts(self) -> list[str]:
        return [payload.decode() for opcode, payload in self.frames() if opcode == 1]

    def send_text(self, text: str) -> None:
        self.protocol.dataReceived(_client_frame(text.encode()))

    def send_binary(self, data: bytes) -> None:
        self.protocol.dataReceived(_client_frame(data, 2))

    def lose(self) -> None:
        """The TCP connection ends (after Autobahn dropped it, or the peer went)."""
        self.protocol.connectionLost(Failure(ConnectionDone()))


class WebSocketTests(ResourceTestCase):
    """The WebSocket transport, driven through Autobahn with an in-memory transport."""

    def connect(self, query: str = "EIO=4&transport=websocket") -> WebSocketClient:
        client = WebSocketClient(self.server, query)
        self.assertEqual(client.status, 101)
        return client

    def open_session(self, query: str = "EIO=4&transport=websocket"
                     ) -> tuple[WebSocketClient, EngineSession]:
        client = self.connect(query)
        [opened] = client.texts()
        self.assertEqual(opened[0], "0")
        self.assertEqual(json.loads(opened[1:])["upgrades"], [])
        return client, self.sessions[-1]

    def test_text_message(self) -> None:
        """A "4..." text frame takes the hot path and is echoed as a text frame."""
        received: list[object] = []
        client, session = self.open_session()
        session.on("message", received.append)
        client.send_text("4hello €")
        client.send_text("4")
        self.assertEqual(received, ["hello €", ""])
        self.assertEqual(client.frames(), [(1, "4hello €".encode()), (1, b"4")])

    def test_binary_message(self) -> None:
        """A binary frame is a binary message, echoed as a binary frame of the raw bytes."""
        received: list[object] = []
        client, session = self.open_session()
        session.on("message", received.append)
        client.send_binary(b"\x00\x01\xff")
        self.assertEqual(received, [b"\x00\x01\xff"])
        self.assertEqual(client.frames(), [(2, b"\x00\x01\xff")])

    def test_heartbeat(self) -> None:
        """The server pings over the WebSocket and a pong frame keeps the session."""
        client, session = self.open_session()
        self.clock.advance(25)
        self.assertEqual(client.texts(), ["2"])
        self.clock.advance(19)
        client.send_text("3")
        self.clock.advance(1)
        self.assertIs(session.state, SessionState.OPEN)

    def test_ping_timeout(self) -> None:
        """A silent WebSocket client is closed with "ping timeout" and a close frame."""
        client, session = self.open_session()
        self.clock.advance(25)
        self.clock.advance(20)
        self.assertEqual(self.closed, {session.id: CloseReason.PING_TIMEOUT})
        self.assertEqual([opcode for opcode, _ in client.frames()], [1, 8])

    def test_malformed_frame(self) -> None:
        """A text frame that is no packet ends the session with "parse error"."""
        for text in ("", "x", "9", "b!!"):
            client, session = self.open_session()
            client.send_text(text)
            self.assertEqual(self.closed[session.id], CloseReason.PARSE_ERROR, text)
            self.assertEqual(client.frames()[-1][0], 8)
            client.lose()
        self.assertEqual(self.server.sessions, {})

    def test_frame_too_large(self) -> None:
        """Autobahn refuses a frame over max_http_buffer_size; the session ends."""
        self.start(max_http_buffer_size=100)
        client, session = self.open_session()
        client.send_text("4" + "x" * 100)
        self.assertTrue(client.transport.disconnecting)
        session.send("before the TCP close")  # Autobahn is closed: dropped, never raised
        self.clock.advance(25)
        client.lose()
        self.assertEqual(self.closed, {session.id: CloseReason.TRANSPORT_ERROR})

    def test_large_outgoing_message(self) -> None:
        """A message larger than max_http_buffer_size is still sent (the bound is incoming)."""
        self.start(max_http_buffer_size=100)
        client, session = self.open_session()
        session.send("y" * 500)
        session.send(b"z" * 500)
        self.assertEqual(client.frames(), [(1, b"4" + b"y" * 500), (2, b"z" * 500)])

    def test_client_closes(self) -> None:
        """A close frame from the client ends the session with "transport close"."""
        client, session = self.open_session()
        self.protocol_close(client)
        self.assertEqual(self.closed, {session.id: CloseReason.TRANSPORT_CLOSE})
        session.send("late")
        self.assertEqual(client.frames(), [(8, b"\x03\xe8")])

    def protocol_close(self, client: WebSocketClient) -> None:
        client.protocol.dataReceived(_client_frame(b"\x03\xe8", 8))
        client.lose()

    def test_server_close(self) -> None:
        """session.close() on a WebSocket sends a close frame and fires "forced close"."""
        client, session = self.open_session()
        session.send("last")
        session.close()
        self.assertEqual(self.closed, {session.id: CloseReason.FORCED_CLOSE})
        frames = client.frames()
        self.assertEqual(frames[0], (1, b"4last"))
        self.assertEqual(frames[1][0], 8)

    def test_server_shutdown(self) -> None:
        """EngineServer.close() closes WebSocket sessions with a close frame."""
        client, session = self.open_session()
        self.server.close()
        self.assertEqual(self.closed, {session.id: CloseReason.SERVER_SHUTTING_DOWN})
        self.assertEqual([opcode for opcode, _ in client.frames()], [8])
        client.lose()
        self.assertEqual(self.closed, {session.id: CloseReason.SERVER_SHUTTING_DOWN})

    def test_unknown_sid(self) -> None:
        """A WebSocket for an unknown sid is refused during the handshake with 400."""
        client = WebSocketClient(self.server, "EIO=4&transport=websocket&sid=nope")
        self.assertEqual(client.status, 400)
        self.assertEqual(self.sessions, [])

    def test_eio3(self) -> None:
        """EIO3 WebSocket: binary messages carry a leading 0x04 byte; the client pings."""
        self.start(allow_eio3=True)
        received: list[object] = []
        client, session = self.open_session("EIO=3&transport=websocket")
        session.on("message", received.append)
        client.send_binary(b"\x04\x01\x02")
        client.send_text("2")
        self.assertEqual(received, [b"\x01\x02"])
        self.assertEqual(client.frames(), [(2, b"\x04\x01\x02"), (1, b"3")])
        client.send_binary(b"\x02")  # binary, but not a message
        self.assertEqual(self.closed, {session.id: CloseReason.PARSE_ERROR})

    def test_upgrade(self) -> None:
        """Polling upgrades to WebSocket: 2probe/3probe, the poll gets a noop, then 5."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        poll = self.start_request("GET", self.url(sid))
        client = self.connect(f"EIO=4&transport=websocket&sid={sid}")
        self.assertEqual(client.frames(), [])
        self.assertTrue(session.upgrading)
        client.send_text("2probe")
        self.assertEqual(client.texts(), ["3probe"])
        self.assertEqual(self.finish(poll).text, "6")
        self.assertEqual(self.get(sid).text, "6")
        session.send("queued")
        client.send_text("5")
        self.assertEqual(client.texts(), ["4queued"])
        self.assertTrue(session.upgraded)
        self.assertError(self.get(sid), 3)
        client.send_text("4over ws")
        self.assertEqual(client.texts(), ["4over ws"])
        self.assertEqual(list(self.server.sessions), [sid])

    def test_upgrade_probe_garbage(self) -> None:
        """Garbage on the probe closes the probe, and the session goes on over polling."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        client = self.connect(f"EIO=4&transport=websocket&sid={sid}")
        client.send_text("x")
        self.assertFalse(session.upgrading)
        self.assertEqual([opcode for opcode, _ in client.frames()], [8])
        client.lose()
        self.assertIs(session.state, SessionState.OPEN)
        self.assertEqual(self.post(sid, "4still").text, "ok")
        self.assertEqual(self.get(sid).text, "4still")

    def test_upgrade_probe_lost(self) -> None:
        """A probe whose connection goes away leaves the session on polling."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        client = self.connect(f"EIO=4&transport=websocket&sid={sid}")
        client.send_text("2probe")
        client.lose()
        self.assertFalse(session.upgrading)
        self.assertIs(session.state, SessionState.OPEN)
        session.send("x")
        self.assertEqual(self.get(sid).text, "4x")

    def test_second_websocket_refused(self) -> None:
        """A WebSocket for a session that already upgraded is closed at once."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        first = self.connect(f"EIO=4&transport=websocket&sid={sid}")
        first.send_text("2probe")
        first.send_text("5")
        self.assertTrue(session.upgraded)
        second = self.connect(f"EIO=4&transport=websocket&sid={sid}")
        self.assertEqual([opcode for opcode, _ in second.frames()], [8])
        second.lose()
        self.assertIs(session.state, SessionState.OPEN)


class WebSocketTakeoverTests(SynchronousTestCase):
    """The upgrade through the resource hands the connection to Autobahn and frees HTTP."""

    def test_http_channel_released(self) -> None:
        """After the takeover the HTTP channel is no longer the transport's producer, so it
        and its request are not kept alive for the WebSocket's whole life."""
        from twisted.web.resource import Resource
        from twisted.web.server import Site

        clock = Clock()
        server = EngineServer(clock=clock)
        server.resource()._ws_factory.setProtocolOptions(openHandshakeTimeout=0,
                                                         closeHandshakeTimeout=0)
        root = Resource()
        root.putChild(b"engine.io", server.resource())
        site = Site(root, reactor=clock)
        transport = _TCPLikeTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        transport.protocol = channel  # as a TCP transport has; Autobahn replaces it
        channel.makeConnection(transport)
        self.assertIsNotNone(transport.producer)
        channel.dataReceived(
            b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        # The connection's own flow control took the channel's place (see test_backpressure).
        self.assertIsNot(transport.producer, channel)
        self.assertIsInstance(transport.producer, _SendFlow)
        self.assertEqual(len(server.sessions), 1)
        timer = delayed_calls(clock)[0].func  # the ping timers' queue
        assert isinstance(timer, MethodType) and isinstance(timer.__self__, TimerQueue)
        session = timer.__self__._timers[0]._target  # the ping timer's
        assert isinstance(session, EngineSession)
        self.assertEqual(session.id, next(iter(server.sessions)))


class _WebSocketCase(ResourceTestCase):
    """A WebSocket session opened in memory, with what its session receives."""

    def open_session(self) -> tuple[WebSocketClient, EngineSession, list[object]]:
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(client.status, 101)
        client.frames()  # the open packet
        session = self.sessions[-1]
        received: list[object] = []
        session.on("message", received.append)
        return client, session, received


class WebSocketFastPathTests(_WebSocketCase):
    """Small unfragmented data frames are read directly; everything else stays Autobahn's."""

    def test_several_frames_in_one_read(self) -> None:
        """Every frame of one read is delivered, in order, text and binary alike."""
        client, _, received = self.open_session()
        client.protocol.dataReceived(_client_frame(b"4a") + _client_frame(b"\x01\x02", 2)
                                     + _client_frame("4é".encode()))
        self.assertEqual(received, ["a", b"\x01\x02", "é"])

    def test_frame_split_across_reads(self) -> None:
        """A frame cut by the read is completed by the next one."""
        client, _, received = self.open_session()
        data = _client_frame(b"4first") + _client_frame(b"4second") + _client_frame(b"4third")
        client.protocol.dataReceived(data[:12])
        self.assertEqual(received, ["first"])
        client.protocol.dataReceived(data[12:])
        self.assertEqual(received, ["first", "second", "third"])

    def test_medium_frame(self) -> None:
        """A frame with a 16-bit length takes the fast path too."""
        client, _, received = self.open_session()
        client.protocol.dataReceived(_client_frame(b"4" + b"x" * 1000))
        self.assertEqual(received, ["x" * 1000])

    def test_ping_between_frames(self) -> None:
        """A WebSocket ping among data frames is answered by Autobahn; order is kept."""
        client, _, received = self.open_session()
        client.protocol.dataReceived(_client_frame(b"4a") + _client_frame(b"hi", 9)
                                     + _client_frame(b"4b"))
        self.assertEqual(received, ["a", "b"])
        # The echo app answers each message: the pong sits between the two echoes.
        self.assertEqual(client.frames(), [(1, b"4a"), (10, b"hi"), (1, b"4b")])

    def test_fragmented_message(self) -> None:
        """A message in fragments is assembled by Autobahn."""
        client, _, received = self.open_session()
        first = bytearray(_client_frame(b"4frag"))
        first[0] = 0x01  # not FIN, text
        last = bytearray(_client_frame(b"mented", 0))
        last[0] = 0x80  # FIN, continuation
        client.protocol.dataReceived(bytes(first) + bytes(last) + _client_frame(b"4after"))
        self.assertEqual(received, ["fragmented", "after"])

    def test_invalid_utf8(self) -> None:
        """A text frame of invalid UTF-8 fails the connection, as Autobahn does."""
        client, session, received = self.open_session()
        client.protocol.dataReceived(_client_frame(b"4\xff\xfe") + _client_frame(b"4b"))
        self.assertEqual(received, [])
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.assertEqual(self.closed, {session.id: CloseReason.TRANSPORT_ERROR})

    def test_unmasked_frame(self) -> None:
        """An unmasked client frame fails the connection, as the RFC requires."""
        client, session, received = self.open_session()
        client.protocol.dataReceived(b"\x81\x024a")
        self.assertEqual(received, [])
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.assertEqual(self.closed, {session.id: CloseReason.TRANSPORT_ERROR})

    def test_nothing_after_a_parse_error(self) -> None:
        """Frames after one that closed the session are not delivered."""
        client, session, received = self.open_session()
        client.protocol.dataReceived(_client_frame(b"4a") + _client_frame(b"x")
                                     + _client_frame(b"4b"))
        self.assertEqual(received, ["a"])
        self.assertEqual(self.closed, {session.id: CloseReason.PARSE_ERROR})

    def test_outgoing_frame_lengths(self) -> None:
        """Frames written directly carry 7-bit, 16-bit and 64-bit lengths correctly."""
        client, session, _ = self.open_session()
        sizes = [0, 124, 125, 126, 65534, 65535, 70000]
        for size in sizes:
            session.send("y" * size)
        session.send(b"\x00" * 300)
        frames = client.frames()
        self.assertEqual([(op, len(p)) for op, p in frames],
                         [(1, size + 1) for size in sizes] + [(2, 300)])
        self.assertEqual(frames[3][1], b"4" + b"y" * 126)


class AbandonedSessionTests(ResourceTestCase):
    """A client that vanishes, whatever state it leaves its session in, is closed and forgotten
    at ping_interval + ping_timeout (45 s with the defaults), with no timer left behind."""

    def assertGoneAt45(self, sid: str) -> None:
        """Open and in the server's table until 45 s; at 45 s closed with "ping timeout", out
        of the table, and no timer left on the clock."""
        while self.clock.seconds() < 44:
            self.clock.advance(1)  # step by step: a timer scheduled by a timer counts from it
        self.clock.advance(0.9)
        self.assertIn(sid, self.server.sessions)
        self.assertNotIn(sid, self.closed)
        self.clock.advance(0.1)
        self.assertEqual(self.closed, {sid: CloseReason.PING_TIMEOUT})
        self.assertEqual(self.server.sessions, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_after_polling_handshake(self) -> None:
        """A polling client that never polls after the handshake is gone at 45 s."""
        sid, _ = self.handshake()
        self.assertGoneAt45(sid)
        self.assertError(self.get(sid), 1)

    def test_after_websocket_handshake(self) -> None:
        """A WebSocket client silent after the open packet is gone at 45 s, with a close
        frame."""
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(client.status, 101)
        sid = self.sessions[0].id
        self.assertGoneAt45(sid)
        self.assertEqual([opcode for opcode, _ in client.frames()], [1, 1, 8])  # open, ping

    def test_after_eio3_handshake(self) -> None:
        """An EIO3 client (which should ping) that never does is gone at 45 s."""
        self.start(allow_eio3=True)
        response = self.get(eio="3")
        self.assertEqual(response.code, 200)
        self.assertGoneAt45(self.sessions[0].id)

    def test_with_a_get_pending(self) -> None:
        """A client that vanishes with its poll pending gets the ping on it at 25 s, and its
        session is gone at 45 s."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        self.clock.advance(24)
        self.assertNoResult(poll)
        self.clock.advance(1)
        self.assertEqual(self.finish(poll).text, "2")
        self.assertGoneAt45(sid)

    def test_with_a_get_pending_after_messages(self) -> None:
        """A client that vanishes with a poll pending after an exchange is gone 45 s after its
        last pong, not later."""
        sid, _ = self.handshake()
        self.clock.advance(25)
        self.assertEqual(self.get(sid).text, "2")
        self.clock.advance(5)
        self.assertEqual(self.post(sid, "3\x1e4hi").text, "ok")
        poll = self.start_request("GET", self.url(sid))
        self.assertEqual(self.finish(poll).text, "4hi")
        poll = self.start_request("GET", self.url(sid))
        for _ in range(25):
            self.clock.advance(1)
        self.assertEqual(self.finish(poll).text, "2")  # the ping at 30 + 25 s
        for _ in range(19):
            self.clock.advance(1)
        self.clock.advance(0.9)
        self.assertIn(sid, self.server.sessions)
        self.clock.advance(0.1)
        self.assertEqual(self.closed, {sid: CloseReason.PING_TIMEOUT})
        self.assertEqual(self.server.sessions, {})
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_mid_upgrade_before_probe(self) -> None:
        """A client that opens the upgrade WebSocket and says nothing more: the probe is closed
        at upgrade_timeout and the session is gone at 45 s."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        client = WebSocketClient(self.server, f"EIO=4&transport=websocket&sid={sid}")
        self.assertEqual(client.status, 101)
        self.assertTrue(self.server.sessions[sid].upgrading)
        self.clock.advance(10)
        self.assertFalse(self.server.sessions[sid].upgrading)
        self.assertEqual([opcode for opcode, _ in client.frames()], [8])
        self.assertGoneAt45(sid)
        self.assertEqual(self.finish(poll).text, "2")

    def test_mid_upgrade_after_probe(self) -> None:
        """A client that vanishes between "3probe" and "5", its poll released with a noop: the
        probe is closed at upgrade_timeout and the session is gone at 45 s."""
        sid, _ = self.handshake()
        poll = self.start_request("GET", self.url(sid))
        client = WebSocketClient(self.server, f"EIO=4&transport=websocket&sid={sid}")
        client.send_text("2probe")
        self.assertEqual(client.texts(), ["3probe"])
        self.assertEqual(self.finish(poll).text, "6")
        self.clock.advance(10)
        self.assertFalse(self.server.sessions[sid].upgrading)
        self.assertEqual([opcode for opcode, _ in client.frames()], [8])
        self.assertGoneAt45(sid)

    def test_mid_upgrade_probe_held_open(self) -> None:
        """With an upgrade_timeout past the heartbeat's deadline, a probe left hanging does not
        keep the session: it is gone at 45 s, the probe closed with it."""
        self.start(upgrade_timeout=100)
        sid, _ = self.handshake()
        client = WebSocketClient(self.server, f"EIO=4&transport=websocket&sid={sid}")
        client.send_text("2probe")
        self.assertEqual(client.texts(), ["3probe"])
        self.assertGoneAt45(sid)
        self.assertEqual([opcode for opcode, _ in client.frames()], [8])


class JsonpOptionTests(ResourceTestCase):
    """JSONP polling is served only with allow_jsonp (off by default, even with allow_eio3):
    a script GET carries no Origin, so any page could read a session through it."""

    def jsonp_error(self, response: Response) -> None:
        """The refusal of a JSONP request: an unknown transport, as Node answers."""
        self.assertError(response, 0)
        self.assertEqual(response.json()["message"], "Transport unknown")

    def test_off_by_default_with_eio3(self) -> None:
        """With allow_eio3 alone, a JSONP handshake is refused and opens no session."""
        self.start(allow_eio3=True)
        self.jsonp_error(self.get(eio="3", j="0"))
        self.assertEqual(self.server.sessions, {})

    def test_off_on_an_open_session(self) -> None:
        """A session opened over XHR cannot be polled or posted to as JSONP: refused, and what
        is queued for it stays unread."""
        self.start(allow_eio3=True)
        response = self.get(eio="3")
        sid: str = json.loads(response.text.partition(":")[2][1:])["sid"]
        self.sessions[0].send("secret")
        self.jsonp_error(self.get(sid, eio="3", j="0"))
        self.jsonp_error(self.request(
            "POST", self.url(sid, eio="3", j="0"), data=b"d=" + quote("6:4hello").encode(),
            headers={"Content-Type": ["application/x-www-form-urlencoded"]}))
        self.assertEqual(self.get(sid, eio="3").text, "7:4secret")

    def test_off_for_eio4(self) -> None:
        """An EIO4 request carrying j is refused too."""
        self.jsonp_error(self.get(j="0"))
        self.assertEqual(self.server.sessions, {})

    def test_on(self) -> None:
        """With allow_jsonp, the poll is the script calling ___eio[j]."""
        self.start(allow_eio3=True, allow_jsonp=True)
        response = self.get(eio="3", j="1")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("content-type"), "text/javascript; charset=UTF-8")
        self.assertTrue(response.text.startswith("___eio[1]("), response.text)
        self.assertEqual(len(self.server.sessions), 1)

    def test_server_option(self) -> None:
        """txsio.Server passes allow_jsonp to its Engine.IO server, off by default."""
        import txsio

        self.assertFalse(txsio.Server(allow_eio3=True).engine.options.allow_jsonp)
        self.assertTrue(txsio.Server(allow_jsonp=True).engine.options.allow_jsonp)


class FragmentedMessageTests(_WebSocketCase):
    """A data frame inside a fragmented message fails the connection with 1002 (RFC 6455
    section 5.4, as Node's ws), whether it comes in a read of its own or with the fragment."""

    def fragment(self) -> bytes:
        first = bytearray(_client_frame(b"4frag"))
        first[0] = 0x01  # not FIN, text: a message in progress
        return bytes(first)

    def assertFailed(self, client: WebSocketClient, session: EngineSession,
                     received: list[object]) -> None:
        """Nothing delivered, nothing echoed: a close frame with 1002, then the TCP close."""
        self.assertEqual(received, [])
        [(opcode, payload)] = client.frames()
        self.assertEqual((opcode, payload[:2]), (8, b"\x03\xea"))
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.assertEqual(self.closed, {session.id: CloseReason.TRANSPORT_ERROR})
        self.assertEqual(self.server.sessions, {})

    def test_data_frame_in_a_read_of_its_own(self) -> None:
        """The fragment, then a data frame in the next read: 1002."""
        client, session, received = self.open_session()
        client.protocol.dataReceived(self.fragment())
        client.protocol.dataReceived(_client_frame(b"4data"))
        self.assertFailed(client, session, received)

    def test_data_frame_in_the_same_read(self) -> None:
        """The fragment and a data frame in one read: 1002, not a silent drop."""
        client, session, received = self.open_session()
        client.protocol.dataReceived(self.fragment() + _client_frame(b"4data"))
        self.assertFailed(client, session, received)

    def test_binary_frame_after_fast_frames(self) -> None:
        """Frames the fast path reads, a fragment, then a binary frame: the first are
        delivered, the binary one fails the connection."""
        client, session, received = self.open_session()
        client.protocol.dataReceived(_client_frame(b"4a") + self.fragment())
        self.assertEqual(received, ["a"])
        self.assertEqual(client.frames(), [(1, b"4a")])
        received.clear()
        client.protocol.dataReceived(_client_frame(b"\x01", 2))
        self.assertFailed(client, session, received)

    def test_continuation_still_completes(self) -> None:
        """The message in progress completes with its continuation, and the fast path reads
        the frames after it."""
        client, _, received = self.open_session()
        client.protocol.dataReceived(self.fragment())
        last = bytearray(_client_frame(b"ment", 0))
        last[0] = 0x80  # FIN, continuation
        client.protocol.dataReceived(bytes(last))
        client.protocol.dataReceived(_client_frame(b"4next"))
        self.assertEqual(received, ["fragment", "next"])
