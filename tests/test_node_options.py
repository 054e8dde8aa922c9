"""Single options of the server, side by side with Node's socket.io 4.8 given the same ones.

Each test starts Node's server (``tests/node/options_server.mjs``, the options as JSON) and a
``txsio.Server`` with the same options in Python's spelling, both on loopback, sends both the
same raw HTTP requests with treq, and compares what matters of the answers (the CORS headers,
the client bundle's caching headers...).  Where txsio differs on purpose (a refused origin is a
403), the test says so and checks txsio's own answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock, deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.http_headers import Headers
from twisted.web.resource import Resource

import txsio

from .support import NODE_DIR, require_node, serve, spawn
from .test_tap import temp_dir


async def start_node(test: TestCase, options: dict[str, Any],
                     events: list[dict[str, Any]] | None = None) -> str:
    """Start Node's server with ``options``; its URL (stopped when the test ends).  The
    lines it prints after listening go to ``events``."""
    listening: Deferred[int] = Deferred()

    def event(line: dict[str, Any]) -> None:
        if line.get("event") == "listening":
            listening.callback(line["port"])
        elif events is not None:
            events.append(line)

    peer = spawn([require_node(), str(NODE_DIR / "options_server.mjs"), json.dumps(options)],
                 on_event=event, cwd=NODE_DIR)
    test.addCleanup(peer.stop)
    port = await listening.addTimeout(10, reactor)
    return f"http://127.0.0.1:{port}"


async def until(condition: Callable[[], object], seconds: float = 2.5) -> None:
    """Wait (on the reactor) until ``condition()`` is true, or ``seconds`` have passed."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await deferLater(reactor, 0.05)


def start_txsio(test: TestCase, **options: Any) -> str:
    """Serve a ``txsio.Server`` with ``options`` at ``/socket.io``; its URL."""
    return serve_io(test, txsio.Server(**options))


def serve_io(test: TestCase, io: txsio.Server) -> str:
    """Serve ``io`` at ``/socket.io`` until the test ends; its URL."""
    root = Resource()
    root.putChild(b"socket.io", io.resource())
    site = serve(root)
    test.addCleanup(site.stop)
    test.addCleanup(io.close)
    return site.url


async def fetch(url: str, method: str = "GET", *, data: bytes | None = None,
                **headers: str) -> tuple[int, Headers, bytes]:
    """One request (header names in snake_case); its status, headers and body."""
    # Header names as bytes only: mixing str and bytes names trips BytesWarning (python -bb).
    raw = Headers({k.replace("_", "-").encode(): [v.encode()] for k, v in headers.items()})
    response = await treq.request(method, url, headers=raw, data=data, persistent=False)
    body = await treq.content(response)
    return response.code, response.headers, body


def cors_of(headers: Headers) -> dict[str, str]:
    """The CORS headers (and Vary) of an answer, names in lower case."""
    return {name.decode().lower(): ", ".join(v.decode() for v in values)
            for name, values in headers.getAllRawHeaders()
            if name.lower().startswith(b"access-control-") or name.lower() == b"vary"}


HANDSHAKE = "/socket.io/?EIO=4&transport=polling"


class CorsTests(TestCase):
    """The ``cors`` option answers an allowed origin with Node's headers."""

    async def compare(self, node_cors: dict[str, Any], cors: dict[str, Any],
                      origin: str) -> dict[str, str]:
        """The CORS headers of a handshake and of a preflight from ``origin``, the same on
        both servers; txsio's preflight headers."""
        node = await start_node(self, {"cors": node_cors})
        ours = start_txsio(self, cors=cors)
        preflight = {"access_control_request_method": "POST",
                     "access_control_request_headers": "content-type, x-token"}
        answers = []
        for base in (node, ours):
            code, headers, _ = await fetch(base + HANDSHAKE, origin=origin)
            self.assertEqual(code, 200)
            p_code, p_headers, p_body = await fetch(
                base + HANDSHAKE, "OPTIONS", origin=origin,
                access_control_request_method=preflight["access_control_request_method"],
                access_control_request_headers=preflight["access_control_request_headers"])
            self.assertEqual((p_code, p_body), (204, b""))
            answers.append((cors_of(headers), cors_of(p_headers)))
        self.assertEqual(answers[1], answers[0])
        return answers[1][1]

    async def test_node_defaults(self) -> None:
        """An empty mapping is Node's defaults: any origin ("*"), no credentials, Node's
        methods, the requested headers reflected, no max age."""
        headers = await self.compare({}, {}, "https://a.example")
        self.assertEqual(headers["access-control-allow-origin"], "*")
        self.assertNotIn("access-control-allow-credentials", headers)

    async def test_list_with_credentials(self) -> None:
        """A list of an origin and a regex, credentials, methods, headers, max age: the same
        headers as Node's."""
        node = {"origin": ["https://a.example", {"$regex": r"\.b\.example$"}],
                "credentials": True, "methods": ["GET", "POST"],
                "allowedHeaders": ["x-token"], "exposedHeaders": "x-id, x-trace",
                "maxAge": 600}
        ours = {"origin": ["https://a.example", re.compile(r"\.b\.example$")],
                "credentials": True, "methods": ["GET", "POST"],
                "allowed_headers": ["x-token"], "exposed_headers": "x-id, x-trace",
                "max_age": 600}
        headers = await self.compare(node, ours, "https://x.b.example")
        self.assertEqual(headers["access-control-allow-origin"], "https://x.b.example")
        self.assertEqual(headers["access-control-allow-credentials"], "true")
        await self.compare(node, ours, "https://a.example")

    async def test_function_deferred(self) -> None:
        """An origin function answering with a Deferred: the request waits for it; an allowed
        origin gets the same headers as from Node's function; a refused one gets 403 from
        txsio (a documented difference: Node answers without CORS headers)."""
        asked: list[str] = []

        def origin(value: str) -> Deferred[bool]:
            asked.append(value)
            d: Deferred[bool] = Deferred()
            reactor.callLater(0.01, d.callback, value.endswith(".good.example"))
            return d

        ours = start_txsio(self, cors={"origin": origin, "credentials": True})
        code, headers, _ = await fetch(ours + HANDSHAKE, origin="https://a.good.example")
        self.assertEqual(code, 200)
        self.assertEqual(cors_of(headers), {
            "access-control-allow-origin": "https://a.good.example",
            "access-control-allow-credentials": "true", "vary": "Origin"})
        code, headers, _ = await fetch(ours + HANDSHAKE, origin="https://evil.example")
        self.assertEqual((code, cors_of(headers)), (403, {}))
        self.assertEqual(asked, ["https://a.good.example", "https://evil.example"])


CLIENT_DIST = NODE_DIR / "node_modules" / "socket.io-client" / "dist"


class CorsAllowsTests(SynchronousTestCase):
    """``EngineServer.cors_allows`` with an origin function answering a Deferred."""

    def test_answer_kept(self) -> None:
        """Asking leaves the function's Deferred with its answer for whoever else waits."""
        answer: Deferred[bool] = succeed(True)
        io = txsio.Server(cors={"origin": lambda origin: answer})
        self.assertTrue(io.engine.cors_allows("https://a.example"))
        self.assertIs(self.successResultOf(answer), True)


class ServeClientTests(TestCase):
    """``serve_client`` serves the bundle as Node's ``serveClient`` does."""

    async def test_as_node(self) -> None:
        """The bundle, its minified build and a source map: the same status, caching headers
        and content types as Node's; the ETag answered with 304 (also weak), another with 200;
        the bytes are the file's."""
        node = await start_node(self, {})
        ours = start_txsio(self, serve_client=CLIENT_DIST / "socket.io.js")
        for name in ("socket.io.js", "socket.io.min.js", "socket.io.js.map"):
            seen = []
            for base in (node, ours):
                url = f"{base}/socket.io/{name}"
                code, headers, body = await fetch(url)
                etag = headers.getRawHeaders(b"etag", [b""])[0].decode()
                self.assertTrue(etag.startswith('"') and etag.endswith('"'), etag)
                not_modified = [(await fetch(url, if_none_match=tag))[0]
                                for tag in (etag, "W/" + etag, '"other"', f'"x", {etag}')]
                seen.append((code, headers.getRawHeaders(b"cache-control"),
                             headers.getRawHeaders(b"content-type"), not_modified[:3]))
            # A list naming the tag is a match (RFC 9110); Node compares the whole header.
            self.assertEqual(not_modified[3], 304)
            self.assertEqual(seen[1], seen[0], name)
            self.assertEqual(seen[1][3], [304, 304, 200])
            self.assertEqual(body, (CLIENT_DIST / name).read_bytes())

    async def test_only_files_beside(self) -> None:
        """A file of another name is served at socket.io.js; names of Node's list that are
        not beside it, and other names, are Engine.IO requests as before (400)."""
        bundle = temp_dir(self) / "bundle.js"
        bundle.write_text("window.io = 1;")
        ours = start_txsio(self, serve_client=bundle)
        code, _, body = await fetch(ours + "/socket.io/socket.io.js")
        self.assertEqual((code, body), (200, b"window.io = 1;"))
        for name in ("socket.io.min.js", "bundle.js"):
            code, _, body = await fetch(f"{ours}/socket.io/{name}")
            self.assertEqual((code, body), (400, b'{"code":0,"message":"Transport unknown"}'))


class ErrorBodyTests(TestCase):
    """Refused Engine.IO requests are answered byte for byte as Node answers them."""

    async def test_same_bodies(self) -> None:
        """Unknown transport, unknown session, bad method, unsupported protocol: the same
        status, content type and compact JSON body as Node's."""
        node = await start_node(self, {})
        ours = start_txsio(self)
        requests = [("GET", "/socket.io/?EIO=4&transport=carrier-pigeon"),
                    ("GET", "/socket.io/?EIO=4&transport=polling&sid=nope"),
                    ("PUT", "/socket.io/?EIO=4&transport=polling"),
                    ("GET", "/socket.io/?EIO=9&transport=polling")]
        for method, target in requests:
            answers = []
            for base in (node, ours):
                code, headers, body = await fetch(base + target, method)
                answers.append((code, headers.getRawHeaders(b"content-type"), body))
            self.assertEqual(answers[1], answers[0], target)


class RegexNamespaceTests(TestCase):
    """A regex namespace matches as Node's does (JavaScript's ``RegExp.test``)."""

    async def joins(self, url: str, name: str) -> bool:
        """Whether txsio's client joins namespace ``name`` of the server at ``url``."""
        client = txsio.Client(reconnection=False, timeout=5)
        self.addCleanup(client.disconnect)
        d = client.connect(url, namespaces=[name], transports=["websocket"])
        try:
            await d
        except txsio.ConnectError:
            return False
        return True

    async def test_unanchored(self) -> None:
        """JavaScript's ``/sub\\d/`` (Python's ``sub\\d``) accepts ``/a-sub1-b`` and
        ``/sub2`` and refuses ``/a-subx``, on both; an anchored one refuses ``/a-sub1-b`` on
        both."""
        for pattern, names in [(r"sub\d", ["/a-sub1-b", "/sub2", "/a-subx"]),
                               (r"^/sub\d$", ["/a-sub1-b", "/sub2"])]:
            node = await start_node(self, {"dynamic": {"$regex": pattern}})
            io = txsio.Server()
            io.of(re.compile(pattern))
            ours = serve_io(self, io)
            for name in names:
                self.assertEqual(await self.joins(ours, name),
                                 await self.joins(node, name), (pattern, name))
            self.assertTrue(await self.joins(ours, "/sub2"))
            self.assertEqual(await self.joins(ours, "/a-sub1-b"), pattern == r"sub\d")


class CookieJarTests(TestCase):
    """txsio's client sends the cookies polling got on the WebSocket upgrade too."""

    async def test_sticky_cookie_on_upgrade(self) -> None:
        """Node's server with ``cookie: true`` sets ``io``; the upgrade's Cookie header
        carries it (Node's client does so with its cookie jar)."""
        events: list[dict[str, Any]] = []
        node = await start_node(self, {"cookie": True}, events)
        client = txsio.Client(reconnection=False, timeout=5)
        self.addCleanup(client.disconnect)
        await client.connect(node)
        await until(lambda: client.transport == "websocket" and events, 5)
        self.assertEqual(client.transport, "websocket")
        [upgrade] = [e for e in events if e["event"] == "upgrade-cookie"]
        self.assertEqual(upgrade["cookie"], f"io={upgrade['sid']}")


class HandshakeTimeTests(TestCase):
    """``handshake.time`` is written as Node writes it (``new Date() + ""``)."""

    async def test_date_string(self) -> None:
        """In UTC (and the process's time zone set to it), the same text as Node's for the
        same instants; a socket's ``handshake.time`` has that form."""
        import os

        from txsio.server import js_date_string

        from .support import run_process

        _in_zone(self, "UTC")
        instants = [0, 1_700_000_000, 1_709_251_199, 951_782_400]
        script = (f"for (const s of {json.dumps(instants)}) "
                  "console.log(JSON.stringify({date: new Date(s * 1000) + ''}))")
        result = await run_process([require_node(), "-e", script],
                                   env={**os.environ, "TZ": "UTC"})
        self.assertEqual([js_date_string(s) for s in instants],
                         [e["date"] for e in result.events])
        io = txsio.Server(clock=Clock())
        from txsio.testing import TestClient

        client = self.successResultOf(TestClient(io).connect())
        [socket] = io.of("/").sockets.values()
        self.assertEqual(socket.handshake.time, js_date_string(0))
        self.assertEqual(client.id, socket.id)

    def test_date_string_kept_per_second_and_zone(self) -> None:
        """Within one second the same text (JavaScript truncates its milliseconds), the next
        second its own; a change of the process's time zone is seen at once."""
        import os
        import time

        from txsio.server import js_date_string

        _in_zone(self, "UTC")
        self.assertEqual(js_date_string(59.9999999),
                         "Thu Jan 01 1970 00:00:59 GMT+0000 (Coordinated Universal Time)")
        self.assertEqual(js_date_string(59.0), js_date_string(59.9999999))
        self.assertEqual(js_date_string(60.0),
                         "Thu Jan 01 1970 00:01:00 GMT+0000 (Coordinated Universal Time)")
        os.environ["TZ"] = "CET-1"
        time.tzset()
        self.assertEqual(js_date_string(60.0), "Thu Jan 01 1970 01:01:00 GMT+0100 (CET)")


class CorsWebSocketTests(TestCase):
    """The origin check of a WebSocket upgrade waits for an origin function's Deferred."""

    async def test_websocket_waits(self) -> None:
        """An allowed origin's WebSocket opens once the function answers; a refused one's
        connection fails."""
        def origin(value: str) -> Deferred[bool]:
            d: Deferred[bool] = Deferred()
            reactor.callLater(0.01, d.callback, value == "https://good.example")
            return d

        url = start_txsio(self, cors={"origin": origin})
        for page, joins in (("https://good.example", True), ("https://evil.example", False)):
            client = txsio.Client(reconnection=False, timeout=5, extra_headers={"Origin": page})
            self.addCleanup(client.disconnect)
            try:
                await client.connect(url, transports=["websocket"])
            except txsio.ConnectError:
                self.assertFalse(joins, page)
            else:
                self.assertTrue(joins, page)
                self.assertEqual(client.transport, "websocket")


def _in_zone(case: SynchronousTestCase, zone: str) -> None:
    """Set the process's time zone (``TZ``) to ``zone`` until ``case`` ends."""
    import os
    import time

    old = os.environ.get("TZ")

    def restore() -> None:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()

    case.addCleanup(restore)
    os.environ["TZ"] = zone
    time.tzset()
