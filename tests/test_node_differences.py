"""Differences from Node's socket.io 4.8 that were closed (issue 15), side by side with it.

Each server-side test runs Node's server (``tests/node/options_server.mjs``) and a
``txsio.Server`` on loopback, sends both the same raw polling requests, and compares the
answers and the reasons the server's sockets disconnect with; the client's tests run against
a ``txsio.Server``.  Node's socket.io 4.8 is the reference: where txsio's
older tests pinned another behaviour, they now assert Node's.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from http.cookiejar import CookieJar
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.http_headers import Headers
from twisted.web.server import Request

import txsio

from .test_node_options import fetch, serve_io, start_node, until

POLL = "/socket.io/?EIO=4&transport=polling"


def recording_server(seen: list[dict[str, Any]], **options: Any) -> txsio.Server:
    """A server whose sockets of "/" record their ``error`` and ``disconnect`` as the Node
    script prints them."""
    io = txsio.Server(**options)

    def connected(socket: txsio.Socket) -> None:
        socket.on("error", lambda error: seen.append({"event": "socket-error",
                                                      "message": str(error)}))
        socket.on("disconnect", lambda reason: seen.append({"event": "disconnect",
                                                            "reason": reason}))

    io.on("connection", connected)
    return io


async def joined(base: str) -> str:
    """Open a polling session at ``base`` and join "/"; the session's URL."""
    _, _, body = await fetch(base + POLL)
    url = f"{base}{POLL}&sid={json.loads(body[1:])['sid']}"
    await fetch(url, "POST", data=b"40", content_type="text/plain;charset=UTF-8")
    await fetch(url)
    return url


class InvalidStateTests(TestCase):
    """A packet for a namespace not joined, a second CONNECT, a CONNECT_ERROR from the client:
    the connection closes, as Node's ``Client`` does ("invalid state")."""

    PROBES = [b'42/chat,["x"]', b"40", b'44{"message":"x"}']

    async def probe(self, base: str, text: bytes) -> tuple[tuple[int, bytes], tuple[int, bytes],
                                                           tuple[int, bytes]]:
        """POST ``text`` on a joined session, then poll twice: the three answers."""
        url = await joined(base)
        code, _, body = await fetch(url, "POST", data=text, content_type="text/plain;charset=UTF-8")
        post = (code, body)
        code, _, body = await fetch(url)
        first = (code, body)
        code, _, body = await fetch(url)
        return post, first, (code, body)

    async def test_closed_as_node(self) -> None:
        """Both answer the POST "ok", the next poll with the close packet (Node's has a NOOP
        before it: the same to a client), the one after with "Session ID unknown"; the socket
        disconnects with "forced server close" and gets no ``error``."""
        node_events: list[dict[str, Any]] = []
        node = await start_node(self, {}, node_events)
        seen: list[dict[str, Any]] = []
        ours = serve_io(self, recording_server(seen))
        unknown = (400, b'{"code":1,"message":"Session ID unknown"}')
        for text in self.PROBES:
            del node_events[:], seen[:]
            self.assertEqual(await self.probe(node, text),
                             ((200, b"ok"), (200, b"6\x1e1"), unknown), text)
            self.assertEqual(await self.probe(ours, text),
                             ((200, b"ok"), (200, b"1"), unknown), text)
            await until(lambda: node_events and seen)
            self.assertEqual([(e["event"], e.get("reason")) for e in seen],
                             [(e["event"], e.get("reason")) for e in node_events], text)
            self.assertEqual(seen, [{"event": "disconnect", "reason": "forced server close"}])

    async def test_reserved_event(self) -> None:
        """An event named "disconnect" from the client: Node's parser refuses it as an invalid
        payload; both give the socket an ``error``, then close with "forced close"."""
        node_events: list[dict[str, Any]] = []
        node = await start_node(self, {}, node_events)
        seen: list[dict[str, Any]] = []
        ours = serve_io(self, recording_server(seen))
        for base in (node, ours):
            self.assertEqual((await self.probe(base, b'42["disconnect"]'))[:2],
                             ((200, b"ok"), (200, b"6\x1e1" if base == node else b"1")))
        await until(lambda: len(node_events) >= 2 and len(seen) >= 2)
        self.assertEqual([(e["event"], e.get("reason")) for e in seen],
                         [(e["event"], e.get("reason")) for e in node_events])
        self.assertEqual([e["event"] for e in seen], ["socket-error", "disconnect"])
        self.assertEqual(seen[1]["reason"], "forced close")


class PollingPostTests(TestCase):
    """Engine.IO polling POSTs that are refused or do not parse, answered as Node's."""

    async def test_too_large(self) -> None:
        """A POST over the size bound: a bare 413 (no body, no content type) on both, and the
        session lives on (its next POST is "ok")."""
        node = await start_node(self, {"maxHttpBufferSize": 100})
        ours = serve_io(self, txsio.Server(max_http_buffer_size=100))
        answers: list[tuple[object, ...]] = []
        for base in (node, ours):
            url = await joined(base)
            code, headers, body = await fetch(url, "POST", data=b'42["x","' + b"a" * 300 + b'"]',
                                              content_type="text/plain;charset=UTF-8")
            answers.append((code, body, headers.getRawHeaders(b"content-type")))
            code, _, body = await fetch(url, "POST", data=b'42["x"]',
                                        content_type="text/plain;charset=UTF-8")
            answers.append((code, body))
        self.assertEqual(answers[2:], answers[:2])
        self.assertEqual(answers[:2], [(413, b"", None), (200, b"ok")])

    async def test_garbage(self) -> None:
        """An Engine.IO payload that does not parse: the POST is answered "ok" (text/html) on
        both, the session is closed with "parse error" and the next poll gets "Session ID
        unknown"."""
        node_events: list[dict[str, Any]] = []
        node = await start_node(self, {}, node_events)
        seen: list[dict[str, Any]] = []
        ours = serve_io(self, recording_server(seen))
        answers: list[tuple[object, ...]] = []
        for base in (node, ours):
            url = await joined(base)
            code, headers, body = await fetch(url, "POST", data=b"9garbage",
                                              content_type="text/plain;charset=UTF-8")
            answers.append((code, body, headers.getRawHeaders(b"content-type")))
            code, _, body = await fetch(url)
            answers.append((code, body))
        self.assertEqual(answers[2:], answers[:2])
        self.assertEqual(answers[:2], [(200, b"ok", [b"text/html"]),
                                       (400, b'{"code":1,"message":"Session ID unknown"}')])
        await until(lambda: node_events and seen)
        self.assertEqual([e.get("reason") for e in seen], [e.get("reason") for e in node_events])
        self.assertEqual(seen, [{"event": "disconnect", "reason": "parse error"}])


class PartlyGoodPostTests(TestCase):
    """A polling POST whose good packets are followed by garbage: the good ones are delivered,
    then the session closes with "parse error", as Node's engine.io-parser 5 decodes a payload
    in order and stops at the first bad record (Node's engine.io 6 / socket.io 4.8 is the
    reference; txsio dropped the whole body before)."""

    async def test_good_then_garbage(self) -> None:
        """Both deliver the two events before the bad record, answer the POST "ok" and close
        the session with "parse error"; the event after the bad record is not delivered."""
        node_events: list[dict[str, Any]] = []
        node = await start_node(self, {"record": True}, node_events)
        seen: list[dict[str, Any]] = []
        io = recording_server(seen)
        io.on("connection", lambda socket: socket.on_any(
            lambda name, *args: seen.append({"event": "message", "name": name,
                                             "args": list(args)})))
        ours = serve_io(self, io)
        body = b'42["a",1]\x1e42["b","\xc3\xa9"]\x1e9garbage\x1e42["c"]'
        answers: list[tuple[object, ...]] = []
        for base in (node, ours):
            url = await joined(base)
            code, _, text = await fetch(url, "POST", data=body,
                                        content_type="text/plain;charset=UTF-8")
            answers.append((code, text))
            code, _, text = await fetch(url)
            answers.append((code, text))
        self.assertEqual(answers[2:], answers[:2])
        self.assertEqual(answers[:2], [(200, b"ok"),
                                       (400, b'{"code":1,"message":"Session ID unknown"}')])
        await until(lambda: len(node_events) >= 3 and len(seen) >= 3)
        # Node dispatches events a tick later, so its sockets get them after the disconnect;
        # txsio hands them on first.  What each gets is compared, not that order.
        theirs = [{k: v for k, v in e.items() if k not in ("id", "description")}
                  for e in node_events]
        self.assertEqual(sorted(json.dumps(e, sort_keys=True) for e in seen),
                         sorted(json.dumps(e, sort_keys=True) for e in theirs))
        self.assertEqual(seen, [{"event": "message", "name": "a", "args": [1]},
                                {"event": "message", "name": "b", "args": ["\u00e9"]},
                                {"event": "disconnect", "reason": "parse error"}])


class BareRefusalTests(TestCase):
    """Requests that break the polling transport's rules get Node's bare 400 (no body, no
    content type) and close the session with "transport error".  Node's engine.io 6 /
    socket.io 4.8 is the reference (txsio answered a JSON body with code 3 before)."""

    @staticmethod
    def answer(code: int, headers: Headers, body: bytes) -> tuple[object, ...]:
        """What is compared of an answer: status, body and the transport's headers."""
        return (code, body, headers.getRawHeaders(b"content-type"),
                headers.getRawHeaders(b"cache-control"))

    async def compare(self, probe: Callable[[str], Awaitable[list[tuple[object, ...]]]]
                      ) -> list[tuple[object, ...]]:
        """Run ``probe(url)`` on a joined session of each server; its answers (the same on
        both), after checking both sockets disconnect with the same reason."""
        node_events: list[dict[str, Any]] = []
        node = await start_node(self, {}, node_events)
        seen: list[dict[str, Any]] = []
        ours = serve_io(self, recording_server(seen))
        answers = [await probe(await joined(base)) for base in (node, ours)]
        self.assertEqual(answers[1], answers[0])
        await until(lambda: node_events and seen)
        self.assertEqual([e.get("reason") for e in seen], [e.get("reason") for e in node_events])
        self.assertEqual(seen, [{"event": "disconnect", "reason": "transport error"}])
        return answers[1]

    async def test_overlapping_get(self) -> None:
        """A second GET while one is pending: a bare 400, and the pending GET gets the close
        packet."""
        async def probe(url: str) -> list[tuple[object, ...]]:
            pending = ensureDeferred(fetch(url))
            # Let the first GET reach the server and wait there before the second one.
            await deferLater(reactor, 0.3)
            second = self.answer(*await fetch(url))
            code, _, body = await pending
            return [second, (code, body)]

        self.assertEqual(await self.compare(probe),
                         [(400, b"", None, None), (200, b"1")])

    async def test_binary_post_from_eio4(self) -> None:
        """An ``application/octet-stream`` POST from an EIO4 client: a bare 400, and the
        session is gone."""
        async def probe(url: str) -> list[tuple[object, ...]]:
            post = self.answer(*await fetch(url, "POST", data=b"4abc",
                                            content_type="application/octet-stream"))
            code, _, body = await fetch(url)
            return [post, (code, body)]

        self.assertEqual(await self.compare(probe),
                         [(400, b"", None, None),
                          (400, b'{"code":1,"message":"Session ID unknown"}')])


class WebSocketCookieTests(TestCase):
    """The client keeps the cookies a WebSocket handshake's response sets."""

    async def test_cookie_from_websocket_handshake(self) -> None:
        """A WebSocket-only client of a server whose handshake response sets a sticky cookie
        (an ``initial_headers`` hook, as a load balancer's) has it in its jar and sends it on
        its next connection, as a browser's socket.io-client does (Node's server sets its
        ``io`` cookie on polling handshakes only, so txsio's server is the peer here)."""
        io = txsio.Server()
        cookies: list[str | None] = []

        def initial(headers: dict[str, str], request: Request) -> None:
            cookie = request.getHeader(b"cookie")
            cookies.append(cookie.decode() if cookie is not None else None)
            headers["Set-Cookie"] = f"lb=n{len(cookies)}; Path=/"

        io.engine.on("initial_headers", initial)
        url = serve_io(self, io)
        jar = CookieJar()
        client = txsio.Client(reconnection=False, timeout=5, cookie_jar=jar)
        self.addCleanup(client.disconnect)
        await client.connect(url, transports=["websocket"])
        self.assertEqual([(c.name, c.value) for c in jar], [("lb", "n1")])
        client.disconnect()
        await client.connect(url, transports=["websocket"])
        self.assertEqual(cookies, [None, "lb=n1"])
        self.assertEqual([(c.name, c.value) for c in jar], [("lb", "n2")])
