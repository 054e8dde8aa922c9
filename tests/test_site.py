"""EngineSite: request bodies bounded as they arrive, and overlapping POSTs refused."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web import http
from twisted.web.resource import Resource
from twisted.web.server import Site

from txsio.engineio import EngineServer, EngineSession, EngineSite, handshake
from txsio.engineio import site as site_module


class _Peer:
    """One raw HTTP connection to the site, in memory."""

    def __init__(self, site: Site) -> None:
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol = site.buildProtocol(None)
        self.protocol.makeConnection(self.transport)

    def send(self, data: bytes) -> None:
        self.protocol.dataReceived(data)

    def response(self) -> tuple[int, bytes]:
        raw = self.transport.value()
        head, _, body = raw.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, body


def _request(method: str, target: str, body: bytes = b"", *, headers: str = "",
             length: int | None = None) -> bytes:
    head = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
    if method == "POST" and "chunked" not in headers:
        head += f"Content-Length: {len(body) if length is None else length}\r\n"
    return head.encode() + b"\r\n" + body


class _EngineSiteCase(SynchronousTestCase):
    """An EngineServer (bodies bounded to 1000 bytes) behind an EngineSite, on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.server = EngineServer(clock=self.clock, max_http_buffer_size=1000)
        self.closed: list[str] = []
        self.messages: list[str | bytes] = []

        def connected(session: EngineSession) -> None:
            session.on("close", self.closed.append)
            session.on("message", self.messages.append)

        self.server.on("connection", connected)
        root = Resource()
        root.putChild(b"engine.io", self.server.resource())
        self.site = EngineSite(root, max_request_body=1000, reactor=self.clock)

    def _open(self) -> str:
        peer = _Peer(self.site)
        peer.send(_request("GET", "/engine.io/?EIO=4&transport=polling"))
        status, body = peer.response()
        self.assertEqual(status, 200)
        sid: str = json.loads(body[body.index(b"{"):body.rindex(b"}") + 1])["sid"]
        return sid


class EngineSiteTests(_EngineSiteCase):
    """Bodies past the bound are refused with 413 without being stored."""

    def test_small_post_accepted(self) -> None:
        """A POST within the bound reaches the session."""
        sid = self._open()
        peer = _Peer(self.site)
        peer.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4hello"))
        self.assertEqual(peer.response(), (200, b"ok"))
        self.assertEqual(self.messages, ["hello"])

    def test_announced_too_large(self) -> None:
        """A Content-Length past the bound gets a bare 413 and stores nothing; the session
        lives on, as Node's engine.io 6 (the reference)."""
        sid = self._open()
        peer = _Peer(self.site)
        peer.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}",
                           b"4" + b"x" * 5000))
        status, body = peer.response()
        self.assertEqual((status, body), (413, b""))
        self.assertEqual(self.closed, [])
        self.assertEqual(self.messages, [])
        self.assertEqual(dict(self.site.arriving_posts), {})

    def test_chunked_too_large(self) -> None:
        """A chunked body that grows past the bound is dropped as it arrives, then refused."""
        sid = self._open()
        peer = _Peer(self.site)
        peer.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}",
                           headers="Transfer-Encoding: chunked\r\n"))
        chunk = b"4" + b"y" * 799
        for _ in range(3):
            peer.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.assertEqual(self.site.arriving_posts[sid], 1)
        content = peer.protocol._channel.requests[-1].content
        content.seek(0, 2)
        self.assertLessEqual(content.tell(), 1000)
        peer.send(b"0\r\n\r\n")
        status, _ = peer.response()
        self.assertEqual(status, 413)
        self.assertEqual(self.closed, [])

    def test_overlapping_posts(self) -> None:
        """A POST completing while another POST of the session is still arriving gets a bare
        400 (Node's engine.io 6 is the reference; a JSON body with code 3 before)."""
        sid = self._open()
        slow = _Peer(self.site)
        slow.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4abc",
                           length=10))
        fast = _Peer(self.site)
        fast.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4def"))
        self.assertEqual(fast.response(), (400, b""))
        self.assertEqual(self.closed, ["transport error"])
        self.assertEqual(self.messages, [])

    def test_lost_connection_forgets_post(self) -> None:
        """A POST whose connection drops mid-body no longer counts as arriving."""
        sid = self._open()
        peer = _Peer(self.site)
        peer.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4ab",
                           length=10))
        self.assertEqual(self.site.arriving_posts[sid], 1)
        peer.protocol.connectionLost(None)
        self.assertNotIn(sid, self.site.arriving_posts)


class FragmentMarkTests(_EngineSiteCase):
    """A request target holding "#" is refused (400, code 3) by every reader alike, so the
    tracker of arriving POSTs and the resource never disagree about a sid."""

    def setUp(self) -> None:
        # The same server and EngineSite as EngineSiteTests, and a plain Site beside it.
        super().setUp()
        self.plain_site = Site(self.site.resource, reactor=self.clock)

    def test_overlap_behind_a_fragment_mark(self) -> None:
        """A slow POST whose sid follows "#" does not slip past the overlap check: it is
        refused, and only the other POST's packets reach the session."""
        sid = self._open()
        slow = _Peer(self.site)
        slow.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&t=1#&sid={sid}",
                           b"4abc", length=10))
        fast = _Peer(self.site)
        fast.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4def"))
        self.assertEqual(fast.response(), (200, b"ok"))
        slow.send(b"xxxxxx")
        status, body = slow.response()
        self.assertEqual((status, json.loads(body)["code"]), (400, 3))
        self.assertEqual(self.messages, ["def"])
        self.assertEqual(dict(self.site.arriving_posts), {})

    def test_refused_in_any_site(self) -> None:
        """A handshake or a POST with "#" in its target is a bad request, in an EngineSite as
        in a plain Site, and leaves the session open."""
        for site in (self.site, self.plain_site):
            sid = self._open()
            for request in (_request("GET", "/engine.io/?EIO=4&transport=polling#x"),
                            _request("POST", f"/engine.io/?EIO=4&transport=polling#&sid={sid}",
                                     b"4x"),
                            _request("POST", f"/engine.io/#?EIO=4&transport=polling&sid={sid}",
                                     b"4x")):
                peer = _Peer(site)
                peer.send(request)
                status, body = peer.response()
                self.assertEqual((status, json.loads(body)["code"]), (400, 3),
                                 request.decode())
            self.assertEqual(self.closed, [])
        self.assertEqual(self.messages, [])
        self.assertEqual(len(self.server.sessions), 2)

    def test_encoded_fragment_mark_is_data(self) -> None:
        """An encoded "#" (%23) is an ordinary character of a value."""
        sid = self._open()
        peer = _Peer(self.site)
        peer.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&t=%23&sid={sid}",
                           b"4ok"))
        self.assertEqual(peer.response(), (200, b"ok"))
        self.assertEqual(self.messages, ["ok"])


class LeanRequestTests(_EngineSiteCase):
    """An EngineRequest leaves out work nobody needs, and keeps what a resource may read."""

    def setUp(self) -> None:
        super().setUp()
        # Every Content-Type twisted.web reads through the email package, to find forms.
        self.parsed: list[bytes] = []
        original = http._parseContentType

        def parse(line: bytes) -> bytes:
            self.parsed.append(line)
            return original(line)

        self.patch(http, "_parseContentType", parse)

    def test_polling_post_content_type_not_parsed(self) -> None:
        """A polling POST's text/plain body is not read as a possible form, and reaches the
        session."""
        sid = self._open()
        peer = _Peer(self.site)
        peer.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4hi",
                           headers="Content-Type: text/plain;charset=UTF-8\r\n"))
        self.assertEqual(peer.response(), (200, b"ok"))
        self.assertEqual(self.messages, ["hi"])
        self.assertEqual(self.parsed, [])

    def test_forms_still_parsed(self) -> None:
        """A form-encoded POST body still becomes request.args, as twisted.web makes it, in
        whatever case or with whatever parameters its Content-Type comes."""
        seen: list[dict[bytes, list[bytes]]] = []

        class Form(Resource):
            isLeaf = True

            def render_POST(self, request: Any) -> bytes:
                seen.append(request.args)
                return b"done"

        self.site.resource.putChild(b"form", Form())
        for content_type in ("application/x-www-form-urlencoded",
                             "Application/X-WWW-Form-URLEncoded; charset=utf-8"):
            peer = _Peer(self.site)
            peer.send(_request("POST", "/form?q=1", b"a=b",
                               headers=f"Content-Type: {content_type}\r\n"))
            self.assertEqual(peer.response(), (200, b"done"))
        self.assertEqual(seen, [{b"q": [b"1"], b"a": [b"b"]}] * 2)
        self.assertEqual(len(self.parsed), 2)

    def test_post_target_read_once(self) -> None:
        """The query the site read from a POST's target, for its sid, is the one the resource
        routes it by (the target is not read a second time)."""
        sid = self._open()
        reads: list[bytes] = []
        original = handshake.target_query

        def target_query(target: bytes) -> dict[str, str]:
            reads.append(target)
            return original(target)

        self.patch(handshake, "target_query", target_query)
        self.patch(site_module, "target_query", target_query)
        peer = _Peer(self.site)
        target = f"/engine.io/?EIO=4&transport=polling&sid={sid}"
        peer.send(_request("POST", target, b"4x"))
        self.assertEqual(peer.response(), (200, b"ok"))
        self.assertEqual(reads, [target.encode()])
        self.assertEqual(self.messages, ["x"])


class LocalAddressTests(_EngineSiteCase):
    """A connection's local address is read from its transport once, not per request."""

    def test_read_once(self) -> None:
        """Three requests on one kept-alive connection each see the local address, which the
        transport was asked for once."""
        peer = _Peer(self.site)
        asked: list[object] = []
        get_host = peer.transport.getHost

        def getHost() -> object:
            asked.append(True)
            return get_host()

        self.patch(peer.transport, "getHost", getHost)
        hosts: list[object] = []

        class Host(Resource):
            isLeaf = True

            def render_GET(self, request: Any) -> bytes:
                hosts.append(request.getHost())
                return b"here"

        self.site.resource.putChild(b"host", Host())
        for _ in range(3):
            peer.send(_request("GET", "/host"))
        self.assertEqual(hosts, [get_host()] * 3)
        self.assertEqual(len(asked), 1)


class AccessLogTests(_EngineSiteCase):
    """An EngineSite logs a line per request only when asked to (or given a file for it)."""

    def _lines(self, site: EngineSite) -> list[str]:
        written: list[str] = []
        self.patch(site, "_logFile", type("F", (), {"write": written.append})())
        peer = _Peer(site)
        peer.send(_request("GET", "/engine.io/?EIO=4&transport=polling"))
        self.assertEqual(peer.response()[0], 200)
        return written

    def test_none_by_default(self) -> None:
        """Without a log file, no access line is formatted or written."""
        self.assertFalse(self.site.access_log)
        self.assertEqual(self._lines(self.site), [])

    def test_asked_for(self) -> None:
        """access_log=True writes twisted.web's line for each request; a log file asks for
        it too."""
        site = EngineSite(self.site.resource, access_log=True, reactor=self.clock)
        lines = self._lines(site)
        self.assertEqual(len(lines), 1)
        self.assertIn('"GET /engine.io/?EIO=4&transport=polling HTTP/1.1" 200', lines[0])
        path = self.mktemp()
        self.assertTrue(EngineSite(self.site.resource, logPath=path).access_log)
        self.assertFalse(EngineSite(self.site.resource, logPath=path,
                                    access_log=False).access_log)


class TargetQueryTests(SynchronousTestCase):
    """target_query reads a target as urllib's parse_qsl reads its query (first value of
    each name kept), whether or not the query needs decoding."""

    def test_as_parse_qsl(self) -> None:
        """Blank values, names without "=", empty fields, "=" in values, repeated names,
        "+" and percent escapes: all read as parse_qsl reads them."""
        for query in ("", "a", "a=", "=b", "&&a=1&&", "a=b=c", "a=1&a=2", "EIO=4&sid=x-Y_z",
                      "a+b=c+d", "a=%41%zz&b=%C3%A9", "é=ü", "a=1&b&c=&=d"):
            expected: dict[str, str] = {}
            for key, value in parse_qsl(query, keep_blank_values=True):
                expected.setdefault(key, value)
            target = b"/engine.io/?" + query.encode("latin-1")
            self.assertEqual(handshake.target_query(target), expected, query)
        self.assertEqual(handshake.target_query(b"/engine.io/"), {})
