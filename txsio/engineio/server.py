"""The Engine.IO server: options, handshake checks, the session table, CORS and cookies.

:class:`EngineServer` is the public plain Engine.IO API, like Node's ``engine.io`` package::

    from twisted.web.resource import Resource
    from txsio.engineio import EngineServer

    server = EngineServer(ping_interval=25, ping_timeout=20)

    @server.on("connection")
    def connected(session):
        session.on("message", session.send)        # echo

    root = Resource()
    root.putChild(b"engine.io", server.resource())

The checks here are pure functions of the request's method, query and headers: the resource
runs them once per request, for polling and WebSocket alike, and tests can call them directly.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from .._events import EventEmitter
from .._stats import EngineStats
from .._twisted import default_reactor
from ._compression import (
    DeflateOptions,
    HttpCompression,
    deflate_options,
    http_compression_options,
)
from ._hooks import Middleware
from .cors import CorsOrigin, CorsOrigins, CorsPolicy, cors_policy
from .errors import CloseReason, EngineRequestError, ErrorCode
from .handshake import CookieOptions, HandshakeRequest, TrustedProxies, cookie_options
from .session import EngineOptions, EngineSession, SessionTransport

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from .resource import EngineIOResource

# EngineRequestError, ErrorCode (errors.py) and HandshakeRequest, CookieOptions (handshake.py)
# lived here first: importing them from this module keeps working.
__all__ = [
    "CookieOptions",
    "CorsOrigin",
    "CorsOrigins",
    "CorsPolicy",
    "EngineRequestError",
    "EngineServer",
    "EngineStats",
    "ErrorCode",
    "HandshakeRequest",
]

log = Logger()

def generate_id() -> str:
    """A new session id: 15 random bytes, URL-safe base64 (20 characters), as Node's."""
    return base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")


class EngineServer(EventEmitter):
    """An Engine.IO server: the sessions of one endpoint.

    Events (``server.on(event, f)``), as Node's ``engine.io`` emits them:

    - ``"connection"``: ``f(session)``, the new
      :class:`~txsio.engineio.session.EngineSession`;
    - ``"initial_headers"``: ``f(headers, request)``, before the response to a handshake
      (polling, or the WebSocket's ``101``) goes out: add to the ``headers`` dict (a name and
      a value, or a list of values) what the response should carry; ``request`` is the
      twisted.web request;
    - ``"headers"``: the same for every response of a session (handshakes included, after
      ``initial_headers``): each poll, each POST, the WebSocket upgrade;
    - ``"connection_error"``: ``f(error)``, a request refused (a
      :class:`~txsio.engineio._hooks.ConnectionErrorEvent`: ``request``, ``code``,
      ``message``, ``context`` as Node's).

    :param ping_interval: seconds between the server's pings (Node: 25).
    :param ping_timeout: seconds a client has to answer a ping (Node: 20).
    :param max_http_buffer_size: the largest message or polling body in bytes (Node: 1e6);
        larger ones are refused and the session closed.
    :param transports: the transports allowed, from ``"polling"`` and ``"websocket"``.
    :param allow_upgrades: whether polling sessions may upgrade to WebSocket.
    :param upgrade_timeout: seconds a client has to complete an upgrade it started.
    :param max_buffered_bytes: the most bytes waiting for one client (4 MiB): past it the
        session closes with ``"send buffer full"`` (logged, counted in
        :attr:`stats`).  What a client does not read as fast as the server sends waits in its
        session's queue (a WebSocket's once Twisted's own 64 KiB buffer for it is full,
        polling's until the next GET), and a client that stops reading would otherwise keep
        all of it; Node has no such bound.  While more than half of it waits, the client's
        next polling POST is held until a GET takes the queue, and a WebSocket is not read
        while its TCP transport is paused: a client that does not read is not read either.
    :param allow_eio3: whether Engine.IO v3 clients (socket.io-client 2.x) are served; when
        off, they get the "unsupported protocol version" error.
    :param allow_jsonp: whether JSONP polling (a request with a ``j`` query parameter, which old
        v3 clients use where XHR cannot cross origins) is served; off by default, even with
        ``allow_eio3``.  JSONP is cross-origin by nature: the poll is a ``<script>`` that any
        page can include, sent with the visitor's cookies and no ``Origin`` header, so neither
        the origin check nor CORS applies and that page can read what the server sends.  When
        off, such a request is refused as an unknown transport (400, code 0).
    :param cors_allowed_origins: ``None`` (the default: no CORS headers, and a browser request
        from another origin is refused with 403), ``"*"`` (any origin), a list of origins
        (``"https://app.example"``), or a callable ``f(origin) -> bool``: the shorthand of
        ``cors={"origin": X, "credentials": True}`` (``"*"`` without credentials).
    :param cors: Node's ``cors`` option in snake_case, a mapping of ``origin`` (``"*"``, the
        default; an origin; a compiled regex, matched unanchored as JavaScript's
        ``RegExp.test``; a list of these; or ``f(origin)`` returning a bool or a Deferred of
        one), ``credentials`` (false by default), ``methods``, ``allowed_headers``,
        ``exposed_headers`` and ``max_age`` (seconds); see :class:`~txsio.engineio.cors.CorsPolicy`.
        Checked when the server is built (``ValueError`` for an origin without a scheme, an
        unknown key...).  Unlike Node, a browser request from an origin it does not allow is
        refused with 403 (not served without CORS headers).
    :param allow_request: ``f(request) -> bool`` (or a Deferred firing with one), called with
        the twisted.web request of every new session; a false answer refuses it with 403
        ``Forbidden``.  To refuse with a message of its own, as Node's
        ``callback(message, false)``, raise (or fail the Deferred with)
        :class:`txsio.ConnectionRefusedError` ``(message)``: polling gets 403 with that
        message in the JSON body, a WebSocket ``400 Bad Request`` with the message as its
        body, as Node answers.
    :param cookie: ``False`` (the default), ``True`` for the ``io`` cookie, a cookie name, or a
        mapping of :class:`~txsio.engineio.handshake.CookieOptions` fields.
    :param trusted_proxies: the proxies (networks in CIDR notation, e.g. ``["10.0.0.0/8"]``)
        whose ``Forwarded`` / ``X-Forwarded-For`` headers name the client, for
        ``handshake.address`` and the logs (see
        :class:`~txsio.engineio.handshake.TrustedProxies`); by default none: the address is
        the peer's, whatever the headers say.
    :param http_compression: compress polling responses (Node's ``httpCompression``): ``True``
        (the default, as Node: gzip or deflate as the client's ``Accept-Encoding`` asks, for
        bodies of 1024 bytes and more), ``False``, or a mapping of
        :class:`~txsio.engineio._compression.HttpCompression` fields (``threshold``,
        ``level``).
    :param per_message_deflate: compress WebSocket messages with the permessage-deflate
        extension, when the client offers it (Node's ``perMessageDeflate``): ``False`` (the
        default, as Node), ``True``, or a mapping of
        :class:`~txsio.engineio._compression.DeflateOptions` fields (``threshold``, 1024 by
        default: smaller messages are sent as they are when ``server_no_context_takeover``
        is set; otherwise every message is, as Node's ``ws``).  A compressed message the client
        sends may inflate to ``max_http_buffer_size`` bytes at most: past it the connection
        is closed with 1009, as an uncompressed message that large is.
    :param clock: the clock for every timer (default: the global reactor).
    :param on_session: called with each new session before the ``"connection"`` handlers
        (the Socket.IO server's way in: a direct call, not an event).
    """

    def __init__(
        self,
        *,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_http_buffer_size: int = 1_000_000,
        transports: Iterable[str] = ("polling", "websocket"),
        allow_upgrades: bool = True,
        upgrade_timeout: float = 10.0,
        max_buffered_bytes: int = 4 * 1024 * 1024,
        allow_eio3: bool = False,
        allow_jsonp: bool = False,
        cors_allowed_origins: CorsOrigins = None,
        cors: Mapping[str, Any] | None = None,
        allow_request: Callable[[Any], bool | Deferred[bool]] | None = None,
        cookie: bool | str | Mapping[str, Any] | None = False,
        trusted_proxies: Iterable[str] = (),
        http_compression: bool | Mapping[str, Any] | HttpCompression | None = True,
        per_message_deflate: bool | Mapping[str, Any] | DeflateOptions | None = False,
        clock: IReactorTime | None = None,
        on_session: Callable[[EngineSession], None] | None = None,
    ) -> None:
        super().__init__()
        self.clock: IReactorTime = default_reactor(clock)
        self._on_session = on_session
        self.options = EngineOptions(
            ping_interval=float(ping_interval),
            ping_timeout=float(ping_timeout),
            max_http_buffer_size=int(max_http_buffer_size),
            transports=tuple(transports),
            allow_upgrades=allow_upgrades,
            upgrade_timeout=float(upgrade_timeout),
            allow_eio3=allow_eio3,
            allow_jsonp=allow_jsonp,
            max_buffered_bytes=int(max_buffered_bytes),
            http_compression=http_compression_options(http_compression),
            per_message_deflate=deflate_options(per_message_deflate),
        )
        #: counters for metrics (see :class:`EngineStats`)
        self.stats = EngineStats()
        self.allow_request = allow_request
        proxies = TrustedProxies(trusted_proxies)
        #: the proxies believed about the client's address (``None``: none)
        self.trusted_proxies = proxies if proxies.networks else None
        self.cookie = cookie_options(cookie)
        #: the CORS policy (``None``: same-origin browser requests only)
        self.cors: CorsPolicy | None = cors_policy(cors, cors_allowed_origins)
        #: the open sessions by id
        self.sessions: dict[str, EngineSession] = {}
        #: the middlewares (:meth:`use`), in order
        self.middlewares: list[Middleware] = []
        self._resource: EngineIOResource | None = None

    # -- mounting --------------------------------------------------------------------------

    def resource(self) -> EngineIOResource:
        """The twisted.web resource serving this endpoint (polling and WebSocket).

        Mount it anywhere: ``root.putChild(b"engine.io", server.resource())``.  The same
        resource is returned on every call.
        """
        if self._resource is None:
            from .resource import EngineIOResource

            self._resource = EngineIOResource(self)
        return self._resource

    def use(self, middleware: Middleware) -> Middleware:
        """Run ``middleware`` on every request, before any check, as Node's ``engine.use``
        (usable as a decorator).

        ``middleware(request)`` gets the twisted.web request and may set response headers,
        read cookies, and so on.  It lets the request go on by returning (a Deferred or a
        coroutine is awaited first; the middlewares run in order, one after the other).  It
        refuses the request by raising: an
        :class:`~txsio.engineio.EngineRequestError` is answered as it says (its status, code
        and message), any other exception as Node answers a middleware's error, ``400``
        ``{"code":3,"message":"Bad request"}`` (and is logged).  A middleware may also
        answer the request itself (``request.finish()``): nothing else is done with it.

        :param middleware: the middleware.
        :returns: ``middleware``.
        """
        self.middlewares.append(middleware)
        return middleware

    # -- checks ----------------------------------------------------------------------------

    @property
    def cors_enabled(self) -> bool:
        """Whether the user configured any CORS origin."""
        return self.cors is not None

    def cors_allows(self, origin: str) -> bool:
        """Whether ``origin`` is one the user allowed for CORS (``False`` while an origin
        function's Deferred has not answered).

        :param origin: the ``Origin`` header.
        """
        answer = self.cors.allows(origin) if self.cors is not None else False
        if isinstance(answer, Deferred):
            result: list[bool] = []

            def seen(ok: bool) -> bool:
                result.append(ok)
                return ok  # the Deferred's result stays the answer, for whoever else waits

            answer.addCallback(seen)
            return bool(result and result[0])
        return answer

    def check_origin(self, origin: str | None, host: str | None, secure: bool) -> None:
        """Refuse a browser request from a foreign origin the user did not allow.

        Requests without ``Origin`` (non-browser clients) pass; so do same-origin requests.
        An origin function's pending answer refuses here (the resource waits for it).

        :param origin: the ``Origin`` header, if any.
        :param host: the ``Host`` header, if any.
        :param secure: whether the request came over TLS.
        :raises EngineRequestError: 403, code 4, for a refused origin.
        """
        if origin is None or _same_origin(origin, host, secure) or self.cors_allows(origin):
            return
        raise EngineRequestError(ErrorCode.FORBIDDEN, 403, "Origin not allowed")

    @staticmethod
    def same_origin(origin: str, host: str | None, secure: bool) -> bool:
        """Whether ``origin`` is the server's own (its scheme and ``Host``), which browsers
        let a page use without CORS.

        :param origin: the ``Origin`` header.
        :param host: the ``Host`` header, if any.
        :param secure: whether the request came over TLS.
        """
        return _same_origin(origin, host, secure)

    def cors_headers(self, origin: str | None) -> list[tuple[str, str]]:
        """The CORS response headers for an allowed request from ``origin`` (none unless
        configured).

        :param origin: the ``Origin`` header, if any.
        """
        if origin is None or self.cors is None or not self.cors_allows(origin):
            return []
        return self.cors.headers(origin)

    def check_request(
        self, method: str, query: Mapping[str, str], *, upgrade: bool
    ) -> tuple[int, str, EngineSession | None]:
        """Validate an Engine.IO request's method and query, as Node's ``verify``.

        :param method: the HTTP method.
        :param query: the query parameters.
        :param upgrade: whether the request asks for a WebSocket upgrade.
        :returns: ``(protocol, transport, session)``; ``session`` is ``None`` for a handshake.
        :raises EngineRequestError: the request is refused; the error says how to answer.
        """
        # Each refusal carries the context Node's "connection_error" event reports for it.
        transport = query.get("transport")
        if transport not in self.options.transports:
            raise EngineRequestError(ErrorCode.UNKNOWN_TRANSPORT,
                                     context={"transport": transport})
        eio = query.get("EIO")
        if eio == "4":
            protocol = 4
        elif eio == "3" and self.options.allow_eio3:
            protocol = 3
        else:
            raise EngineRequestError(ErrorCode.UNSUPPORTED_PROTOCOL_VERSION,
                                     context={"protocol": 4 if eio == "4" else 3})
        jsonp = query.get("j")
        if jsonp is not None and not self.options.allow_jsonp:
            # Node's JSONP is a transport of its own: off, it is an unknown one.  Refused for
            # every request, so a session opened over XHR cannot be read as a script either.
            raise EngineRequestError(ErrorCode.UNKNOWN_TRANSPORT,
                                     context={"transport": transport})
        if jsonp is not None and not (jsonp.isascii() and jsonp.isdigit()):
            # The JSONP callback index is written into the response's JavaScript: digits only.
            raise EngineRequestError(ErrorCode.BAD_REQUEST, context={"name": "INVALID_JSONP"})
        sid = query.get("sid")
        if sid is not None:
            session = self.sessions.get(sid)
            if session is None:
                raise EngineRequestError(ErrorCode.UNKNOWN_SID, context={"sid": sid})
            if transport == "websocket" and upgrade:
                # An upgrade for a session that cannot take one is accepted and then closed
                # (as Node does), so the caller decides with session.can_upgrade().
                pass
            elif transport == "websocket" or session.transport.name != transport:
                raise EngineRequestError(ErrorCode.BAD_REQUEST, context={
                    "name": "TRANSPORT_MISMATCH", "transport": transport,
                    "previousTransport": session.transport.name})
            elif method not in ("GET", "POST"):
                raise EngineRequestError(ErrorCode.BAD_HANDSHAKE_METHOD,
                                         context={"method": method})
            return protocol, transport, session
        if method != "GET":
            raise EngineRequestError(ErrorCode.BAD_HANDSHAKE_METHOD, context={"method": method})
        if transport == "websocket" and not upgrade:
            raise EngineRequestError(ErrorCode.BAD_REQUEST,
                                     context={"name": "TRANSPORT_HANDSHAKE_ERROR"})
        return protocol, transport, None

    def upgrades_for(self, transport: str) -> list[str]:
        """The upgrades offered in the open packet of a session that starts on ``transport``."""
        if transport == "polling" and self.options.allow_upgrades \
                and "websocket" in self.options.transports:
            return ["websocket"]
        return []

    # -- sessions --------------------------------------------------------------------------

    def create_session(
        self, protocol: int, transport: SessionTransport, request: HandshakeRequest
    ) -> EngineSession:
        """Open a new session on ``transport``: queue the open packet, emit ``connection``.

        :param protocol: the Engine.IO revision, 3 or 4.
        :param transport: the transport the session starts on.
        :param request: the handshake request.
        :returns: the new session.
        """
        sid = generate_id()
        while sid in self.sessions:  # pragma: no cover - 120 random bits
            sid = generate_id()
        session = EngineSession(sid, self.options, protocol, transport, clock=self.clock,
                                request=request, stats=self.stats)
        self.sessions[sid] = session
        session.add_close_callback(self._session_closed)
        session.open(self.upgrades_for(transport.name))
        log.debug("session {sid} opened over {transport}", sid=sid, transport=transport.name)
        session.on("upgrade", self._session_upgraded)
        if self._on_session is not None:
            self._on_session(session)
        self.emit("connection", session)
        return session

    def _session_upgraded(self, transport: str) -> None:
        self.stats.upgrades += 1

    def _session_closed(self, session: EngineSession, reason: str) -> None:
        if self.sessions.get(session.id) is session:
            del self.sessions[session.id]
        if reason == CloseReason.SEND_BUFFER_FULL:
            self.stats.send_buffer_full += 1
        log.debug("session {sid} closed: {reason}", sid=session.id, reason=reason)

    def close(self, reason: str = CloseReason.SERVER_SHUTTING_DOWN) -> None:
        """Close every session at once (the server is stopping).

        :param reason: the reason each session's ``close`` event reports.
        """
        for session in list(self.sessions.values()):
            session.terminate(reason)


def _same_origin(origin: str, host: str | None, secure: bool) -> bool:
    if host is None:
        return False
    try:
        parts = urlsplit(origin)
    except ValueError:
        return False
    scheme = "https" if secure else "http"
    if parts.scheme != scheme or parts.netloc == "":
        return False
    default_port = ":443" if secure else ":80"
    netloc = parts.netloc.lower()
    host = host.lower()
    return netloc == host or netloc + default_port == host or netloc == host + default_port \
        or (host.endswith(default_port) and netloc == host[: -len(default_port)])
