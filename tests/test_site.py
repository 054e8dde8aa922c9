"""EngineSite: request bodies bounded as they arrive, and overlapping POSTs refused."""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

from txsio.engineio import EngineServer, EngineSession, EngineSite


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
        """A POST completing while another POST of the session is still arriving gets 400."""
        sid = self._open()
        slow = _Peer(self.site)
        slow.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4abc",
                           length=10))
        fast = _Peer(self.site)
        fast.send(_request("POST", f"/engine.io/?EIO=4&transport=polling&sid={sid}", b"4def"))
        status, body = fast.response()
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["code"], 3)
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
