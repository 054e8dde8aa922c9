"""``EngineIOResource``: the one twisted.web resource of an Engine.IO endpoint.

Called by twisted.web: :meth:`EngineIOResource.render` for every request under the mount
point.  It checks the origin and the query, answers CORS preflights, refuses bad requests with
the spec's JSON errors, and routes the rest: polling requests to the session's
:class:`~txsio.engineio.polling.PollingTransport`, WebSocket upgrades to Autobahn (which takes
the connection over, :meth:`~txsio.engineio.websocket.EngineWebSocketFactory.take_over`).

The engine's hooks (:mod:`txsio.engineio._hooks`) come in here: its middlewares run on each
request before the checks, each response of a session carries the headers its
``initial_headers`` / ``headers`` handlers add, and each refusal is reported to its
``connection_error`` handlers.

Each request is read once here, for both transports: its query is parsed once, checked once
(:meth:`~txsio.engineio.EngineServer.check_request`), and a request that opens a session gets
its :class:`~txsio.engineio.handshake.HandshakeRequest` built once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from ._hooks import add_headers, refusal, refuse, run_middlewares
from .errors import EngineRequestError, ErrorCode
from .handshake import HandshakeRequest, request_query
from .polling import PollingTransport
from .websocket import Admission, EngineWebSocketFactory
from .wire import WireFormat, wire_format

if TYPE_CHECKING:
    from twisted.web.resource import IResource
    from twisted.web.server import Request

    from .server import EngineServer

__all__ = ["EngineIOResource"]

log = Logger()


class EngineIOResource(Resource):
    """Serves one :class:`~txsio.engineio.EngineServer` at wherever it is mounted.

    Polling and WebSocket share the path, as the official clients expect.

    :param server: the Engine.IO server.
    """

    isLeaf = True

    def __init__(self, server: EngineServer) -> None:
        super().__init__()
        self.engine = server
        self._ws_factory = EngineWebSocketFactory(server)
        #: leaves answering a name right under the mount point before any Engine.IO check
        #: (the Socket.IO server's ``serve_client`` files, ``socket.io.js``...)
        self.files: dict[bytes, IResource] = {}

    def render(self, request: Request) -> int | bytes:
        """Check and route one request."""
        if self.files and request.postpath is not None and len(request.postpath) == 1:
            leaf = self.files.get(request.postpath[0])
            if leaf is not None:
                result: int | bytes = leaf.render(request)
                return result
        cors = self.engine.cors
        origin = _header(request, b"origin")
        if origin is None or cors is None:
            return self._render_from(request, origin, False)
        allowed = cors.allows(origin)
        if not isinstance(allowed, Deferred):
            return self._render_from(request, origin, allowed)
        # The user's origin function answers later: the request waits for it, as for
        # allow_request.  A failing function refuses the origin (logged).

        def decided(ok: object) -> int | bytes:
            if isinstance(ok, Failure):
                log.failure("the CORS origin function failed", ok)
            return self._render_from(request, origin, not isinstance(ok, Failure) and bool(ok))

        _answer_later(request, allowed, decided)
        return NOT_DONE_YET

    def _render_from(self, request: Request, origin: str | None, cors_allowed: bool
                     ) -> int | bytes:
        """Route a request whose origin CORS allows (``cors_allowed``) or not."""
        server = self.engine
        method = request.method.decode("ascii", "replace")
        if not cors_allowed and origin is not None \
                and not server.same_origin(origin, _header(request, b"host"), request.isSecure()):
            # Node would answer without CORS headers; a 403 refuses non-browser clients
            # that forge the header too (the same-origin default, see docs/migration.rst).
            log.info("refused a request from origin {origin!r}", origin=origin)
            return EngineRequestError(ErrorCode.FORBIDDEN, 403, "Origin not allowed").render(
                request)
        cors = server.cors if cors_allowed and origin is not None else None
        if cors is not None and method == "OPTIONS":
            # CORS preflight (only for origins the user allowed).
            assert origin is not None
            _set_headers(request, cors.preflight_headers(
                origin, _header(request, b"access-control-request-headers")))
            request.setResponseCode(204)
            request.setHeader(b"content-length", b"0")
            return b""
        if cors is not None:
            assert origin is not None
            _set_headers(request, cors.headers(origin))
        request.setHeader(b"cache-control", b"no-store")

        upgrade = (_header(request, b"upgrade") or "").lower() == "websocket"
        if server.middlewares:
            return self._after_middlewares(request, method, upgrade)
        return self._route(request, method, upgrade)

    def _route(self, request: Request, method: str, upgrade: bool) -> int | bytes:
        # What the middlewares let through (all of it, without any): checked, then routed.
        server = self.engine
        try:
            query = request_query(request)
            protocol, transport, session = server.check_request(method, query, upgrade=upgrade)
        except EngineRequestError as e:
            log.debug("bad request {method} {uri}: {message}", method=method,
                      uri=request.uri.decode("latin-1"), message=e.message)
            return refuse(server, request, e, upgrade=upgrade)
        wire = wire_format(protocol)

        if session is not None:
            if transport == "websocket":
                return self._websocket(request, Admission(
                    wire, session=session, headers=add_headers(server, request, initial=False,
                                                               into={})))
            polling = session.transport
            if not isinstance(polling, PollingTransport):  # pragma: no cover - checked above
                return EngineRequestError(ErrorCode.BAD_REQUEST).render(request)
            add_headers(server, request, initial=False)
            if method == "GET":
                return polling.handle_get(request, query)
            return polling.handle_post(request, query)

        # A handshake: ask allow_request (maybe asynchronously), then open the session.
        if server.allow_request is None:
            return self._handshake(request, query, wire, transport)
        d = maybeDeferred(server.allow_request, request)
        if d.called:
            result: list[Any] = []
            d.addBoth(result.append)
            outcome = result[0]
            if isinstance(outcome, Failure) or not outcome:
                return refuse(server, request, _forbidden(outcome), upgrade=upgrade)
            return self._handshake(request, query, wire, transport)
        self._handshake_later(d, request, query, wire, transport, upgrade)
        return NOT_DONE_YET

    def _handshake_later(self, d: Deferred[Any], request: Request, query: Mapping[str, str],
                         wire: WireFormat, transport: str, upgrade: bool) -> None:
        def allowed(ok: object) -> int | bytes:
            if isinstance(ok, Failure) or not ok:
                return refuse(self.engine, request, _forbidden(ok), upgrade=upgrade)
            return self._handshake(request, query, wire, transport)

        _answer_later(request, d, allowed)

    def _after_middlewares(self, request: Request, method: str, upgrade: bool) -> int | bytes:
        # engine.use(): the middlewares run before anything else looks at the request.
        d = run_middlewares(tuple(self.engine.middlewares), request)

        def passed(refused: EngineRequestError | None) -> int | bytes:
            if request.finished:
                return NOT_DONE_YET  # a middleware answered it
            if refused is not None:
                return refuse(self.engine, request, refused, upgrade=upgrade)
            return self._route(request, method, upgrade)

        if d.called:
            outcome: list[EngineRequestError | None] = []
            d.addCallback(outcome.append)
            return passed(outcome[0])
        _answer_later(request, d, passed)
        return NOT_DONE_YET

    def _handshake(self, request: Request, query: Mapping[str, str], wire: WireFormat,
                   transport: str) -> int | bytes:
        server = self.engine
        handshake = HandshakeRequest.of(request, query, server.trusted_proxies)
        if transport == "websocket":
            return self._websocket(request, Admission(
                wire, handshake=handshake, headers=add_headers(server, request, initial=True,
                                                               into={})))
        polling = PollingTransport(
            wire,
            max_body=server.options.max_http_buffer_size,
            max_packets=server.options.max_payload_packets,
            stats=server.stats.polling,
        )
        session = server.create_session(wire.revision, polling, handshake)
        polling.session = session
        if server.cookie is not None:
            server.cookie.set(request, session.id)
        add_headers(server, request, initial=True)
        return polling.handle_get(request, query)

    def _websocket(self, request: Request, admission: Admission) -> int | bytes:
        channel = request.channel
        transport = channel.transport
        result = self._ws_factory.take_over(request, admission)
        if transport is not None and channel.transport is None:
            # Autobahn took the connection over (and the WebSocket protocol replaced the HTTP
            # channel as the transport's producer).  The channel may still hold a timeout:
            # cancel it, or the channel and its request stay alive for the WebSocket's life.
            channel.setTimeout(None)
        return result


def _answer_later(request: Request, d: Deferred[Any], answer: Callable[[Any], int | bytes],
                  ) -> None:
    # Answer a request whose render returned NOT_DONE_YET once ``d`` fires (unless its
    # client went away meanwhile): with what ``answer`` returns for the outcome.
    gone: list[bool] = []
    request.notifyFinish().addBoth(lambda _: gone.append(True))

    def ready(outcome: object) -> None:
        if gone or request.finished:
            return
        _finish(request, answer(outcome))

    d.addBoth(ready).addErrback(
        lambda f: log.failure("error answering {uri}", f, uri=request.uri.decode("latin-1")))


def _forbidden(outcome: object) -> EngineRequestError:
    # allow_request said no: False, or an error saying how (see refusal()); another error
    # is a bug of the application's, refused as Forbidden.
    if isinstance(outcome, Failure):
        refused = refusal(outcome.value) if outcome.value is not None else None
        if refused is not None:
            return refused
        log.failure("allow_request failed", outcome)
    return EngineRequestError(ErrorCode.FORBIDDEN, 403, context={"message": None})


def _set_headers(request: Request, headers: list[tuple[str, str]]) -> None:
    for name, value in headers:
        # bytes names, as everywhere: Twisted's header-name cache is shared by str and
        # bytes keys, and mixing them trips BytesWarning under python -bb.
        request.setHeader(name.encode("latin-1"), value.encode("latin-1"))


def _finish(request: Request, result: int | bytes) -> None:
    """Finish a request whose answer was decided after render returned (a body), unless
    the answer is still on its way (``NOT_DONE_YET``)."""
    if not isinstance(result, bytes):
        return  # NOT_DONE_YET
    request.setHeader(b"content-length", b"%d" % len(result))
    request.write(result)
    request.finish()


def _header(request: Request, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    return value.decode("latin-1") if isinstance(value, bytes) else str(value)
