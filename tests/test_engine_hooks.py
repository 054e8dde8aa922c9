"""The engine's hooks, as Node's ``engine.io``: ``initial_headers`` / ``headers``,
``connection_error``, ``use`` (middlewares) and ``allow_request`` refusing with a message.

In memory through StubTreq for the details; on the wire with ``tests/node/hooks_peer.mjs``,
whose probe reads the same answers from txsio and from Node's reference server running the
same hooks.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import Request

import txsio
from txsio.engineio import EngineRequestError, ErrorCode
from txsio.engineio._hooks import ConnectionErrorEvent, ResponseHeaders

from .support import NODE_DIR, ProcessResult, require_node, run_node, serve, spawn
from .test_resource import ResourceTestCase
from .typed import appended


def _query(request: Request) -> bytes:
    return request.uri.partition(b"?")[2]


class HeadersTests(ResourceTestCase):
    """initial_headers and headers on polling responses."""

    def setUp(self) -> None:
        super().setUp()
        self.seen: list[tuple[str, bool]] = []

        def initial(headers: ResponseHeaders, request: Request) -> None:
            self.seen.append(("initial", isinstance(request, Request)))
            headers["X-Initial"] = "yes"

        def every(headers: ResponseHeaders, request: Request) -> None:
            self.seen.append(("every", "X-Initial" in headers))
            headers["X-Every"] = ["a", "b"]

        self.server.on("initial_headers", initial)
        self.server.on("headers", every)

    def test_handshake(self) -> None:
        """The handshake carries both, initial_headers' first (headers sees what it added)."""
        response = self.get()
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("x-initial"), "yes")
        self.assertEqual(response.headers.getRawHeaders(b"x-every"), [b"a", b"b"])
        self.assertEqual(self.seen, [("initial", True), ("every", True)])

    def test_later_responses(self) -> None:
        """Each later poll and POST carries the headers of ``headers`` only."""
        sid, _ = self.handshake()
        self.seen.clear()
        posted = self.post(sid, "4x")
        self.assertEqual(posted.text, "ok")
        polled = self.get(sid)
        for response in (posted, polled):
            self.assertIsNone(response.header("x-initial"))
            self.assertEqual(response.header("x-every"), "a,b")
        self.assertEqual(self.seen, [("every", False), ("every", False)])

    def test_not_on_refusals(self) -> None:
        """A refused request gets none (Node adds them to a session's responses only)."""
        response = self.get("nope")
        self.assertError(response, 1)
        self.assertIsNone(response.header("x-every"))

    def test_line_breaks(self) -> None:
        """A line break in a value cannot start a header of its own."""
        self.server.on("headers", lambda headers, request:
                       headers.__setitem__("X-Evil", "a\r\nSet-Cookie: x=1"))
        response = self.get()
        self.assertIsNone(response.header("set-cookie"))
        self.assertEqual(response.header("x-evil"), "a Set-Cookie: x=1")


class ConnectionErrorTests(ResourceTestCase):
    """connection_error: Node's code, message and context for each refusal."""

    def setUp(self) -> None:
        super().setUp()
        self.errors: list[ConnectionErrorEvent] = []
        self.server.on("connection_error", self.errors.append)

    def restart(self, **kwargs: Any) -> None:
        self.start(**kwargs)
        self.server.on("connection_error", self.errors.append)

    def assertReported(self, code: int, context: dict[str, Any]) -> None:
        self.assertEqual(len(self.errors), 1, self.errors)
        error = self.errors.pop()
        self.assertEqual((error.code, error.message, dict(error.context)),
                         (code, ErrorCode.MESSAGES[code], context))
        self.assertIsInstance(error.request, Request)
        self.assertIs(error.req, error.request)

    def test_contexts(self) -> None:
        """Unknown transport, protocol, sid; bad method; websocket without upgrade."""
        self.get(transport="carrier-pigeon")
        self.assertReported(0, {"transport": "carrier-pigeon"})
        self.get(eio="3")
        self.assertReported(5, {"protocol": 3})
        self.get("nope")
        self.assertReported(1, {"sid": "nope"})
        self.request("PUT", self.url())
        self.assertReported(2, {"method": "PUT"})
        self.get(transport="websocket")
        self.assertReported(3, {"name": "TRANSPORT_HANDSHAKE_ERROR"})
        sid, _ = self.handshake()
        self.get(sid, transport="websocket")
        self.assertReported(3, {"name": "TRANSPORT_MISMATCH", "transport": "websocket",
                                "previousTransport": "polling"})
        self.assertEqual(self.errors, [])

    def test_allow_request_false(self) -> None:
        """allow_request saying no: 403 "Forbidden", reported with no message of its own."""
        self.restart(allow_request=lambda request: False)
        self.assertError(self.get(), 4, 403)
        self.assertReported(4, {"message": None})

    def test_allow_request_message(self) -> None:
        """ConnectionRefusedError(message): the client reads that message, the event keeps
        "Forbidden" and has the message in its context, as Node's."""
        def refuse(request: Request) -> bool:
            raise txsio.ConnectionRefusedError("no thanks")

        self.restart(allow_request=refuse)
        response = self.get()
        self.assertEqual((response.code, response.json()),
                         (403, {"code": 4, "message": "no thanks"}))
        self.assertReported(4, {"message": "no thanks"})

    def test_allow_request_message_later(self) -> None:
        """The same from a Deferred that fails with it."""
        answers: list[Deferred[bool]] = []

        def later(request: Request) -> Deferred[bool]:
            answers.append(Deferred())
            return answers[-1]

        self.restart(allow_request=later)
        pending = self.start_request("GET", self.url())
        answers[0].errback(txsio.ConnectionRefusedError("not now"))
        response = self.finish(pending)
        self.assertEqual((response.code, response.json()),
                         (403, {"code": 4, "message": "not now"}))
        self.assertReported(4, {"message": "not now"})


class MiddlewareTests(ResourceTestCase):
    """engine.use: middlewares before every request."""

    def test_every_request_in_order(self) -> None:
        """Each request passes every middleware, in order, and they may set headers."""
        calls: list[str] = []

        @self.server.use
        def first(request: Request) -> None:
            calls.append("first")
            request.setHeader(b"x-frame-options", b"DENY")

        self.server.use(lambda request: calls.append("second"))
        sid, _ = self.handshake()
        response = self.post(sid, "4x")
        self.assertEqual(calls, ["first", "second"] * 2)
        self.assertEqual(response.header("x-frame-options"), "DENY")

    def test_failure(self) -> None:
        """An error refuses the request as Node does: 400, code 3, MIDDLEWARE_FAILURE."""
        errors: list[ConnectionErrorEvent] = []
        self.server.on("connection_error", errors.append)

        def broken(request: Request) -> None:
            raise ZeroDivisionError

        self.server.use(broken)
        self.assertError(self.get(), 3)
        self.assertEqual(self.server.sessions, {})
        self.assertEqual([(e.code, dict(e.context)) for e in errors],
                         [(3, {"name": "MIDDLEWARE_FAILURE"})])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_own_refusal(self) -> None:
        """An EngineRequestError is answered as it says."""
        def unauthorized(request: Request) -> None:
            raise EngineRequestError(ErrorCode.FORBIDDEN, 401, "Who are you?")

        self.server.use(unauthorized)
        response = self.get()
        self.assertEqual((response.code, response.json()),
                         (401, {"code": 4, "message": "Who are you?"}))

    def test_asynchronous(self) -> None:
        """A middleware returning a Deferred holds the request until it fires."""
        waiting: list[Deferred[None]] = []
        self.server.use(lambda request: appended(waiting, Deferred()))
        pending = self.start_request("GET", self.url())
        self.assertNoResult(pending)
        self.assertEqual(self.server.sessions, {})
        waiting[0].callback(None)
        response = self.finish(pending)
        self.assertEqual(response.text[0], "0")
        self.assertEqual(len(self.server.sessions), 1)

    def test_coroutine_refusal(self) -> None:
        """A coroutine middleware may refuse too."""
        async def refuse(request: Request) -> None:
            raise EngineRequestError(ErrorCode.BAD_REQUEST, 400, "nope")

        self.server.use(refuse)
        self.assertEqual(self.get().json(), {"code": 3, "message": "nope"})

    def test_answers_itself(self) -> None:
        """A middleware that finishes the request ends it there."""
        def challenge(request: Request) -> None:
            request.setResponseCode(401)
            request.setHeader(b"www-authenticate", b"Basic")
            request.setHeader(b"content-length", b"4")  # not chunked: see test_resource
            request.write(b"who?")
            request.finish()

        self.server.use(challenge)
        response = self.get()
        self.assertEqual((response.code, response.header("www-authenticate"), response.body),
                         (401, "Basic", b"who?"))
        self.assertEqual(self.server.sessions, {})


def install_hooks(io: txsio.Server, errors: list[dict[str, Any]]) -> None:
    """The hooks of ``hooks_peer.mjs server``, on txsio (its middleware asynchronous)."""
    engine = io.engine
    engine.on("initial_headers",
              lambda headers, request: headers.__setitem__("x-initial", "yes"))
    engine.on("headers", lambda headers, request: headers.__setitem__("x-every", "yes"))
    engine.on("connection_error", lambda e: errors.append(
        {"event": "connection_error", "code": e.code, "message": e.message,
         "context": dict(e.context)}))

    async def middleware(request: Request) -> None:
        # Asynchronous, so that every request of the probe (the WebSocket handshake too) is
        # routed after render returned.
        from twisted.internet import reactor

        await deferLater(reactor, 0, lambda: None)
        if b"mw=fail" in _query(request):
            raise RuntimeError("middleware says no")

    engine.use(middleware)


def refuse_some(request: Request) -> bool:
    """allow_request of the wire tests: refuse ``?refuse=1`` with "no thanks"."""
    if b"refuse=1" in _query(request):
        raise txsio.ConnectionRefusedError("no thanks")
    return True


#: What the probe reads from both servers, and what they report.
EXPECTED_PROBE = [
    {"event": "poll", "step": "handshake", "status": 200, "initial": "yes", "every": "yes"},
    {"event": "poll", "step": "next", "status": 200, "initial": None, "every": "yes"},
    {"event": "ws", "status": 101, "initial": "yes", "every": "yes"},
    {"event": "refused", "transport": "polling", "why": "refuse", "status": 403,
     "type": "application/json", "body": '{"code":4,"message":"no thanks"}'},
    {"event": "refused", "transport": "websocket", "why": "refuse", "status": 400,
     "type": "text/html", "body": "no thanks"},
    {"event": "refused", "transport": "polling", "why": "mw", "status": 400,
     "type": "application/json", "body": '{"code":3,"message":"Bad request"}'},
    {"event": "refused", "transport": "websocket", "why": "mw", "status": 400,
     "type": "text/html", "body": "Bad request"},
    {"event": "refused", "transport": "polling", "why": "sid", "status": 400,
     "type": "application/json", "body": '{"code":1,"message":"Session ID unknown"}'},
    {"event": "done"},
]
EXPECTED_ERRORS = [
    {"event": "connection_error", "code": 4, "message": "Forbidden",
     "context": {"message": "no thanks"}},
    {"event": "connection_error", "code": 4, "message": "Forbidden",
     "context": {"message": "no thanks"}},
    {"event": "connection_error", "code": 3, "message": "Bad request",
     "context": {"name": "MIDDLEWARE_FAILURE"}},
    {"event": "connection_error", "code": 3, "message": "Bad request",
     "context": {"name": "MIDDLEWARE_FAILURE"}},
    {"event": "connection_error", "code": 1, "message": "Session ID unknown",
     "context": {"sid": "nope"}},
]


class WireTests(TestCase):
    """The probe against txsio and against Node's reference server."""

    def assertProbe(self, result: ProcessResult) -> None:
        self.assertEqual(result.exit_code, 0, result.describe())
        events = [{k: v for k, v in e.items()} for e in result.events]
        for event in events:
            if event.get("body", "").startswith("{"):
                # Node's JSON is compact; compared as text, so the spacing must match too.
                json.loads(event["body"])
        self.assertEqual(events, EXPECTED_PROBE, result.describe())

    async def test_txsio(self) -> None:
        """txsio answers every step as Node does and reports the same connection errors."""
        io = txsio.Server(allow_request=refuse_some)
        errors: list[dict[str, Any]] = []
        install_hooks(io, errors)
        root = Resource()
        root.putChild(b"socket.io", io.resource())
        site = serve(root)
        try:
            result = await run_node("hooks_peer.mjs", "probe", site.url)
        finally:
            io.close()
            await site.stop()
        self.assertProbe(result)
        self.assertEqual(errors, EXPECTED_ERRORS)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)

    async def test_node_reference(self) -> None:
        """Node's socket.io 4.8 with the same hooks gives what the txsio test expects."""
        listening: Deferred[int] = Deferred()
        reported: list[dict[str, Any]] = []

        def event(e: dict[str, Any]) -> None:
            if e.get("event") == "listening":
                listening.callback(e["port"])
            else:
                reported.append(e)

        from twisted.internet import reactor

        process = spawn([require_node(), str(NODE_DIR / "hooks_peer.mjs"), "server"],
                        on_event=event, cwd=NODE_DIR)
        try:
            port = await listening.addTimeout(10, reactor)
            result = await run_node("hooks_peer.mjs", "probe", f"http://127.0.0.1:{port}")
        finally:
            await process.stop()
        self.assertProbe(result)
        self.assertEqual(reported, EXPECTED_ERRORS)
