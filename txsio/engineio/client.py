"""The Engine.IO v4 client: long-polling over treq, WebSocket over Autobahn, and the upgrade.

Like Node's ``engine.io-client`` 6::

    from txsio.engineio.client import EngineClient

    engine = EngineClient("http://127.0.0.1:8080", path="/engine.io")
    engine.on("open", lambda: engine.send("hello"))
    engine.on("message", print)
    engine.on("close", lambda reason, description: print("closed:", reason))
    engine.open()

Called by the user (or by :class:`txsio.Client`): :meth:`EngineClient.open`,
:meth:`~EngineClient.send`, :meth:`~EngineClient.close`, :meth:`~EngineClient.on`.  Called by
the transports (the engine is their :class:`TransportListener`): ``transport_open``,
``transport_packet``, ``transport_error``, ``transport_close``, ``transport_drain``.  Called by
treq and Autobahn: the transports' request callbacks and :class:`_WebSocketClientProtocol`'s
``onOpen`` / ``onMessage`` / ``onClose``.

Theory of operation
-------------------
States of the engine (:class:`EngineState`)::

    NEW ─open()─► OPENING ─handshake (open packet)─► OPEN ─close()─► CLOSING ─drained─► CLOSED
                     │                                  │                                 ▲
                     └── transport error / close / ping timeout / bad handshake ──────────┘

- ``OPENING``: the first transport (``transports[0]``) is opening; the first packet must be the
  handshake, ``0{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}``.  Anything
  else is a protocol error (``"transport error"``).
- ``OPEN``: messages flow.  Outgoing packets wait in the write buffer until the transport is
  *writable* (polling: no POST in flight; WebSocket: always) and no upgrade is under way, then
  go out together: one POST carries the whole buffer (at most ``maxPayload`` bytes of it).
- ``CLOSING``: :meth:`EngineClient.close` waits for the write buffer to drain (bounded by
  ``close_timeout``) and for an upgrade in progress to settle, then closes with
  ``"forced close"``.
- ``CLOSED``: terminal.  ``close`` has fired once with the reason: ``"forced close"``,
  ``"transport close"`` (the server closed), ``"transport error"`` (an HTTP error, a refused
  connection, garbage), or ``"ping timeout"``.

Heartbeat (EIO v4): the server pings, the client answers ``pong`` at once.  Silence for
``pingInterval + pingTimeout`` after the handshake or the last ping means the connection is
lost (``"ping timeout"``).

Upgrade: once open on polling, for each transport of ``upgrades`` that the caller allows, the
client opens a WebSocket with the sid, sends ``2probe`` and expects ``3probe``; then it pauses
polling (waits for the pending GET, which the server releases with a ``noop``, and the pending
POST), switches to the WebSocket, sends ``5`` and flushes the buffer there.  A probe that fails
is closed and reported as ``upgrade_error``; the session carries on polling.

Every transport reports when its I/O is over (:meth:`ClientTransport.wait_released`): the
requests finished or were cancelled ``close_timeout`` after the close, the TCP connection gone,
the connection pool's idle connections closed.  :meth:`EngineClient.close` returns a Deferred
of that, so a test can end with a clean reactor.
"""

from __future__ import annotations

import enum
import json
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import CancelledError, Deferred, DeferredList, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._events import EventEmitter
from .packet import (
    EngineIOParseError,
    Packet,
    PacketType,
    decode_packet,
    decode_payload,
    encode_packet,
    encode_payload,
)

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.iweb import IPolicyForHTTPS, IResponse

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "ClientTransport",
    "EngineClient",
    "EngineState",
    "EngineURL",
    "PollingTransport",
    "TransportError",
    "TransportListener",
    "TransportState",
    "WebSocketTransport",
]

log = Logger()

_F = TypeVar("_F", bound=Callable[..., Any])

#: The largest polling response or WebSocket message the client accepts, in bytes: 100 MiB,
#: the default ``maxPayload`` of Node's ``ws`` client.  A larger one is a transport error.
DEFAULT_MAX_PAYLOAD: int = 100 * 1024 * 1024

#: The Engine.IO protocol revision the client speaks.
PROTOCOL = 4

_TRANSPORT_NAMES = ("polling", "websocket")


class TransportError(Exception):
    """A transport failed, as engine.io-client's ``TransportError``.

    :param message: what failed, in Node's words: ``"xhr poll error"``, ``"xhr post error"``,
        ``"websocket error"``, ``"parse error"``, ``"probe error"``, ``"timeout"``.
    :param description: the detail: an HTTP status, the reason text, or ``None``.
    """

    def __init__(self, message: str, description: Any = None) -> None:
        super().__init__(message if description is None else f"{message}: {description}")
        self.message = message
        self.description = description


# ---- URLs ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineURL:
    """Where the Engine.IO endpoint is: scheme, host, port, path and the user's query.

    :ivar secure: TLS (``https`` / ``wss``).
    :ivar host: the host name or address (an IPv6 address without brackets).
    :ivar port: the TCP port.
    :ivar path: the endpoint path, with a trailing slash (``/engine.io/``).
    :ivar query: the user's query parameters, in order.
    """

    secure: bool
    host: str
    port: int
    path: str
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls, url: str, path: str = "/engine.io", query: Mapping[str, str] | None = None
    ) -> EngineURL:
        """Read ``http(s)://`` or ``ws(s)://`` *url*; its path is ignored for *path*.

        :param url: the server's URL; its query string is kept.
        :param path: the endpoint path (a trailing slash is added, as Node's client does).
        :param query: more query parameters, after the URL's.
        :raises ValueError: for another scheme, or no host.
        """
        parts = urllib.parse.urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https", "ws", "wss"):
            raise ValueError(f"an Engine.IO URL is http(s):// or ws(s)://, not {url!r}")
        if not parts.hostname:
            raise ValueError(f"no host in {url!r}")
        secure = scheme in ("https", "wss")
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        if query:
            pairs.extend((str(k), str(v)) for k, v in query.items())
        return cls(
            secure=secure,
            host=parts.hostname,
            port=parts.port or (443 if secure else 80),
            path=path.rstrip("/") + "/",
            query=tuple(pairs),
        )

    def _netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"

    def http(self, query: Mapping[str, str]) -> str:
        """The polling URL with *query* (``EIO``, ``transport``, ``sid``) after the user's."""
        return self._url("https" if self.secure else "http", query)

    def ws(self, query: Mapping[str, str]) -> str:
        """The WebSocket URL with *query* after the user's."""
        return self._url("wss" if self.secure else "ws", query)

    def _url(self, scheme: str, query: Mapping[str, str]) -> str:
        text = urllib.parse.urlencode([*self.query, *query.items()])
        return f"{scheme}://{self._netloc()}{self.path}" + (f"?{text}" if text else "")


# ---- transports ---------------------------------------------------------------------------


class TransportListener(Protocol):
    """What a transport tells its owner (the :class:`EngineClient`).

    Every call names the transport, so the owner can ignore a transport it no longer uses.
    """

    def transport_open(self, transport: ClientTransport) -> None:
        """The transport is open (polling: the handshake arrived; WebSocket: connected)."""

    def transport_packet(self, transport: ClientTransport, packet: Packet) -> None:
        """A packet arrived."""

    def transport_error(self, transport: ClientTransport, error: TransportError) -> None:
        """The transport failed; the owner closes it."""

    def transport_close(self, transport: ClientTransport, description: str) -> None:
        """The server closed the transport."""

    def transport_drain(self, transport: ClientTransport) -> None:
        """The packets given to :meth:`ClientTransport.send` are written; it is writable."""


class TransportState(enum.Enum):
    """The states of a client transport (engine.io-client's ``Transport.readyState``)."""

    #: created, not opened yet
    NEW = "new"
    #: connecting (polling: the handshake GET is out)
    OPENING = "opening"
    #: open: packets flow
    OPEN = "open"
    #: polling only: waiting for the pending requests before the upgrade
    PAUSING = "pausing"
    #: polling only: no request is out and none will be, until resumed
    PAUSED = "paused"
    #: closed; nothing more is reported
    CLOSED = "closed"


class ClientTransport:
    """The base of the client transports: the state machine shared by polling and WebSocket.

    Called by the engine: :meth:`open`, :meth:`send`, :meth:`close`, :meth:`pause`,
    :meth:`resume`, :meth:`discard`, :meth:`wait_released`, :attr:`writable`,
    :attr:`listener`, :attr:`query`.  Subclasses implement ``_do_open``, ``_do_close`` and
    ``_write`` and report through ``_on_open``, ``_on_packet``, ``_on_error``, ``_on_close``,
    ``_on_drain``; they call ``_release_done`` once their I/O is over.

    :param query: the query parameters of its requests (``EIO``, ``transport``, ``sid``);
        the engine adds ``sid`` to it after the handshake.
    :param clock: the clock for the close grace period.
    :param close_timeout: seconds to let requests and connections end by themselves after a
        close, before they are cut.
    """

    #: ``"polling"`` or ``"websocket"``
    name = "transport"

    def __init__(
        self, query: dict[str, str], *, clock: IReactorTime, close_timeout: float = 2.0
    ) -> None:
        self.query = query
        self.listener: TransportListener | None = None
        self.state = TransportState.NEW
        #: whether :meth:`send` may be called now
        self.writable = False
        self._clock = clock
        self._close_timeout = close_timeout
        self._grace: IDelayedCall | None = None
        self._released = False
        self._release_waiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.state.value}>"

    # -- called by the engine --------------------------------------------------------------

    def open(self) -> None:
        """Start connecting."""
        self.state = TransportState.OPENING
        self._do_open()

    def send(self, packets: Sequence[Packet]) -> None:
        """Write *packets* (only while :attr:`writable`); ``transport_drain`` follows."""
        if self.state in (TransportState.OPEN, TransportState.PAUSING, TransportState.PAUSED):
            self._write(packets)
        else:
            log.debug("{transport}: not open, {n} packets dropped", transport=self, n=len(packets))

    def close(self) -> None:
        """Close: tell the server (polling: a close packet; WebSocket: a close frame)."""
        if self.state in (TransportState.OPENING, TransportState.OPEN, TransportState.PAUSING,
                          TransportState.PAUSED):
            self._do_close()
            self._on_close("transport closed by the client")
        elif self.state is TransportState.NEW:
            self._set_closed()

    def pause(self, on_paused: Callable[[], None]) -> None:
        """Stop reading, then call *on_paused* (polling waits for its pending requests)."""
        self.state = TransportState.PAUSED
        on_paused()

    def resume(self) -> None:
        """Undo :meth:`pause` after a failed upgrade."""
        if self.state in (TransportState.PAUSING, TransportState.PAUSED):
            self.state = TransportState.OPEN

    def discard(self) -> None:
        """Stop silently (after an upgrade, or a failed probe): nothing more is reported, and
        the session is not closed (no close packet)."""
        self.listener = None
        if self.state is not TransportState.CLOSED:
            self._do_discard()
            self._set_closed()

    def wait_released(self) -> Deferred[None]:
        """Fire once the transport is closed and its I/O is over (never fails)."""
        if self._released:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._release_waiters.append(d)
        return d

    # -- for subclasses --------------------------------------------------------------------

    def _do_open(self) -> None:
        raise NotImplementedError

    def _do_close(self) -> None:
        raise NotImplementedError

    def _do_discard(self) -> None:
        """Stop without closing the session (by default, as :meth:`_do_close`)."""
        self._do_close()

    def _write(self, packets: Sequence[Packet]) -> None:
        raise NotImplementedError

    def _cut(self) -> None:
        """Abort whatever I/O is left (the close grace period is over)."""
        raise NotImplementedError

    def _io_done(self) -> bool:
        """Whether no request or connection is left."""
        raise NotImplementedError

    def _is_closed(self) -> bool:
        # (A method, so that type checkers do not narrow the state across callbacks.)
        return self.state is TransportState.CLOSED

    def _on_open(self) -> None:
        self.state = TransportState.OPEN
        self.writable = True
        if self.listener is not None:
            self.listener.transport_open(self)

    def _on_packet(self, packet: Packet) -> None:
        if self.listener is not None:
            self.listener.transport_packet(self, packet)

    def _on_error(self, message: str, description: Any = None) -> None:
        if self.listener is not None:
            self.listener.transport_error(self, TransportError(message, description))

    def _on_close(self, description: str) -> None:
        if self.state is TransportState.CLOSED:
            return
        self._set_closed()
        if self.listener is not None:
            self.listener.transport_close(self, description)

    def _on_drain(self) -> None:
        if self.listener is not None and self.state is not TransportState.CLOSED:
            self.listener.transport_drain(self)

    def _set_closed(self) -> None:
        self.state = TransportState.CLOSED
        self.writable = False
        if self._io_done():
            self._release()
        elif self._grace is None:
            self._grace = self._clock.callLater(self._close_timeout, self._grace_over)

    def _grace_over(self) -> None:
        self._grace = None
        self._cut()
        if self._io_done():
            self._release()

    def _check_released(self) -> None:
        # A request or connection ended: if the transport is closed and nothing is left,
        # it is released.
        if self.state is TransportState.CLOSED and self._io_done():
            self._release()

    def _release(self) -> None:
        if self._released:
            return
        if self._grace is not None:
            if self._grace.active():
                self._grace.cancel()
            self._grace = None
        self._released = True
        d = self._release_resources()
        waiters, self._release_waiters = self._release_waiters, []

        def fire(_: object) -> None:
            for waiter in waiters:
                waiter.callback(None)

        d.addErrback(lambda f: log.failure("releasing {t}", f, t=self)).addCallback(fire)

    def _release_resources(self) -> Deferred[None]:
        """Free what outlives the I/O (a connection pool); a Deferred of when it is done."""
        return succeed(None)


class _HTTPStatusError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


class _TooLarge(Exception):
    pass


class PollingTransport(ClientTransport):
    """Long-polling over treq: one GET always out, POSTs one at a time.

    Called by treq (through Deferreds): the completion of each GET and POST.  The engine
    batches the packets of each POST; the transport decodes each GET's payload.

    :param url: the endpoint.
    :param query: see :class:`ClientTransport`.
    :param clock: see :class:`ClientTransport`.
    :param reactor: the reactor of the default HTTP client (a persistent connection pool).
    :param http: an HTTP client with treq's ``request(method, url, *, headers, data,
        unbuffered)`` (a :class:`treq.client.HTTPClient`, or :class:`treq.testing.StubTreq`);
        default: one on a persistent pool of its own, closed when the transport is released.
    :param headers: extra HTTP headers for every request.
    :param max_payload: the largest response body accepted, in bytes.
    :param tls: the TLS policy of the default HTTP client (default: the system's trust
        roots, with host name checks).
    :param close_timeout: see :class:`ClientTransport`.
    """

    name = "polling"

    def __init__(
        self,
        url: EngineURL,
        query: dict[str, str],
        *,
        clock: IReactorTime,
        reactor: Any = None,
        http: Any = None,
        headers: Mapping[str, str] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        tls: IPolicyForHTTPS | None = None,
        close_timeout: float = 2.0,
    ) -> None:
        super().__init__(query, clock=clock, close_timeout=close_timeout)
        self._url = url
        self._pool: Any = None
        if http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            if reactor is None:
                from twisted.internet import reactor as global_reactor

                reactor = global_reactor
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            agent = (Agent(reactor, pool=self._pool) if tls is None
                     else Agent(reactor, contextFactory=tls, pool=self._pool))
            http = HTTPClient(agent)
        self._http = http
        # Header names as bytes only (str and bytes names mixed trip BytesWarning).
        self._headers = {k.encode("latin-1"): [v.encode("latin-1")]
                         for k, v in (headers or {}).items()}
        self._max_payload = max_payload
        self._requests: set[Deferred[bytes]] = set()
        self._polling = False
        self._get: Deferred[bytes] | None = None
        self._pause_callback: Callable[[], None] | None = None

    # -- requests --------------------------------------------------------------------------

    def _request(self, method: str, body: bytes | None = None) -> Deferred[bytes]:
        headers = dict(self._headers)
        if body is not None:
            headers[b"Content-Type"] = [b"text/plain;charset=UTF-8"]
        url = self._url.http(self.query)
        d = Deferred.fromCoroutine(self._fetch(method, url, headers, body))
        self._requests.add(d)

        def done(result: object) -> object:
            self._requests.discard(d)
            self._check_released()
            return result

        return d.addBoth(done)

    async def _fetch(
        self, method: str, url: str, headers: dict[bytes, list[bytes]], body: bytes | None
    ) -> bytes:
        import treq

        response: IResponse = await self._http.request(
            method, url, headers=headers, data=body, unbuffered=True
        )
        length = response.length
        if isinstance(length, int) and length > self._max_payload:
            response.deliverBody(_Discard())
            raise _TooLarge()
        chunks: list[bytes] = []
        size = 0

        def collect(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > self._max_payload:
                raise _TooLarge()
            chunks.append(chunk)

        await treq.collect(response, collect)
        if response.code != 200:
            raise _HTTPStatusError(response.code)
        return b"".join(chunks)

    def _io_done(self) -> bool:
        return not self._requests

    def _cut(self) -> None:
        for d in list(self._requests):
            d.cancel()

    def _release_resources(self) -> Deferred[None]:
        if self._pool is None:
            return succeed(None)
        pool, self._pool = self._pool, None
        # On the next turn: a connection whose response just ended goes back to the pool
        # after the response's callbacks have run.
        d: Deferred[None] = Deferred()

        def close_pool() -> None:
            pool.closeCachedConnections().chainDeferred(d)

        self._clock.callLater(0, close_pool)
        return d

    # -- the transport ---------------------------------------------------------------------

    def _do_open(self) -> None:
        self._poll()

    def _poll(self) -> None:
        self._polling = True
        d = self._get = self._request("GET")
        d.addCallbacks(self._on_poll_data, self._on_poll_failure)
        d.addErrback(lambda f: log.failure("polling", f))

    def _on_poll_failure(self, failure: Failure) -> None:
        self._get = None
        self._polling = False
        if self.state is TransportState.CLOSED or failure.check(CancelledError):
            return
        self._on_error("xhr poll error", _describe(failure))

    def _on_poll_data(self, body: bytes) -> None:
        self._get = None
        if self.state is TransportState.CLOSED:
            return
        try:
            packets = decode_payload(body.decode("utf-8"))
        except (UnicodeDecodeError, EngineIOParseError) as e:
            self._polling = False
            self._on_error("parse error", str(e))
            return
        for packet in packets:
            if self.state is TransportState.OPENING and packet.type is PacketType.OPEN:
                self._on_open()
            if packet.type is PacketType.CLOSE:
                self._polling = False
                self._on_close("transport closed by the server")
                return
            self._on_packet(packet)
            if self._is_closed():
                return
        self._polling = False
        if self.state is TransportState.PAUSING:
            self._maybe_paused()
        elif self.state is TransportState.OPEN:
            self._poll()
        elif self.state is TransportState.OPENING:
            # No handshake in the first response: a protocol error.
            self._on_error("parse error", "the first response has no handshake")

    def _write(self, packets: Sequence[Packet]) -> None:
        # EIO v4 polling cannot carry a text packet with the record separator in it; such a
        # packet (never produced by Socket.IO, whose JSON escapes it) is dropped.
        carried = [p for p in packets if not (isinstance(p.data, str) and "\x1e" in p.data)]
        if len(carried) != len(packets):
            log.warn("polling cannot carry a message containing \\x1e: dropped")
        self.writable = False
        if not carried:
            self.writable = True
            self._on_drain()
            return
        d = self._request("POST", encode_payload(carried).encode("utf-8"))
        d.addCallbacks(self._on_post_done, self._on_post_failure)
        d.addErrback(lambda f: log.failure("posting", f))

    def _on_post_done(self, _: bytes) -> None:
        self.writable = True
        if self.state is TransportState.PAUSING:
            self._maybe_paused()
        else:
            self._on_drain()

    def _on_post_failure(self, failure: Failure) -> None:
        if self.state is TransportState.CLOSED or failure.check(CancelledError):
            return
        self._on_error("xhr post error", _describe(failure))

    def _do_close(self) -> None:
        if self.state is TransportState.OPENING:
            # No session yet (or not known): nothing to tell the server.
            self._cut()
            return
        if self.writable:
            # (Not while a POST is out: overlapping POSTs break the session anyway.)
            d = self._request("POST", b"1")
            d.addErrback(lambda f: None)
        # The server answers the pending GET when it reads the close packet; the grace
        # period cuts it otherwise.

    def _do_discard(self) -> None:
        # After an upgrade the session lives on, on the WebSocket: no close packet.  Paused,
        # no request is out; anything left is cut by the grace period.
        pass

    def pause(self, on_paused: Callable[[], None]) -> None:
        """Wait for the pending GET (the server releases it) and POST, then *on_paused*."""
        self.state = TransportState.PAUSING
        self._pause_callback = on_paused
        self._maybe_paused()

    def _maybe_paused(self) -> None:
        if self.state is not TransportState.PAUSING or self._polling or not self.writable:
            return
        self.state = TransportState.PAUSED
        callback, self._pause_callback = self._pause_callback, None
        if callback is not None:
            callback()

    def resume(self) -> None:
        """Poll again after a failed upgrade."""
        if self.state not in (TransportState.PAUSING, TransportState.PAUSED):
            return
        self.state = TransportState.OPEN
        self._pause_callback = None
        if not self._polling:
            self._poll()
        if self.writable:
            self._on_drain()


class _Discard:
    # An IProtocol that swallows a response body.
    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


def _describe(failure: Failure) -> Any:
    if failure.check(_HTTPStatusError):
        return cast(_HTTPStatusError, failure.value).code
    if failure.check(_TooLarge):
        return "response too large"
    return failure.getErrorMessage() or getattr(failure.type, "__name__", "error")


class _WebSocketClientProtocol(WebSocketClientProtocol):
    """Autobahn's side of :class:`WebSocketTransport`.

    Called by Autobahn: ``onOpen``, ``onMessage``, ``onClose``.  Called by the transport:
    ``sendMessage``, ``sendClose``, ``dropConnection``.
    """

    factory: _WebSocketClientFactory

    def onOpen(self) -> None:
        owner = self.factory.owner
        if owner is not None:
            owner._ws_open(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        owner = self.factory.owner
        if owner is not None:
            owner._ws_message(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Autobahn leaves the close handshake timer behind when the server drops the TCP
        # connection before answering our close frame.
        timer = self.closeHandshakeTimeoutCall
        if timer is not None:
            self.closeHandshakeTimeoutCall = None
            try:
                timer.cancel()
            except Exception:  # already fired
                pass
        owner = self.factory.owner
        if owner is not None:
            owner._ws_closed(self, wasClean, code, reason)


class _WebSocketClientFactory(WebSocketClientFactory):
    protocol = _WebSocketClientProtocol  # type: ignore[assignment]  # (typeshed: a callable)
    owner: WebSocketTransport | None = None


#: Connects a WebSocket client factory: ``connect(factory, url) -> Deferred[protocol]``.
WebSocketConnector = Callable[[WebSocketClientFactory, EngineURL], "Deferred[Any]"]


def default_ws_connector(reactor: Any, tls: IPolicyForHTTPS | None = None) -> WebSocketConnector:
    """A :data:`WebSocketConnector` over TCP (and TLS for ``wss``) on *reactor*.

    :param reactor: an ``IReactorTCP`` and ``IReactorTime``.
    :param tls: the TLS policy (default: the system's trust roots, with host name checks).
    """

    def connect(factory: WebSocketClientFactory, url: EngineURL) -> Deferred[Any]:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        endpoint: Any = HostnameEndpoint(reactor, url.host, url.port)
        if url.secure:
            if tls is None:
                from twisted.internet.ssl import optionsForClientTLS

                creator: Any = optionsForClientTLS(url.host)
            else:
                creator = tls.creatorForNetloc(url.host.encode("idna"), url.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return cast("Deferred[Any]", endpoint.connect(factory))

    return connect


class WebSocketTransport(ClientTransport):
    """The WebSocket transport: one Engine.IO packet per frame, over Autobahn.

    Called by Autobahn through :class:`_WebSocketClientProtocol`: ``_ws_open``,
    ``_ws_message``, ``_ws_closed``.  Autobahn's auto-ping is off (the Engine.IO heartbeat
    is the server's), and it refuses messages larger than ``max_payload``.

    :param url: the endpoint.
    :param query: see :class:`ClientTransport`.
    :param clock: see :class:`ClientTransport`.
    :param connector: how to connect (default: TCP/TLS on the global reactor).
    :param headers: extra HTTP headers for the opening handshake.
    :param max_payload: the largest message accepted, in bytes.
    :param close_timeout: see :class:`ClientTransport`.
    """

    name = "websocket"

    def __init__(
        self,
        url: EngineURL,
        query: dict[str, str],
        *,
        clock: IReactorTime,
        connector: WebSocketConnector | None = None,
        headers: Mapping[str, str] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        close_timeout: float = 2.0,
    ) -> None:
        super().__init__(query, clock=clock, close_timeout=close_timeout)
        if connector is None:
            from twisted.internet import reactor

            connector = default_ws_connector(reactor)
        self._url = url
        self._connector = connector
        self._headers = dict(headers or {})
        self._max_payload = max_payload
        self._connecting: Deferred[Any] | None = None
        self._protocol: _WebSocketClientProtocol | None = None
        self._connected = False

    def _do_open(self) -> None:
        factory = _WebSocketClientFactory(self._url.ws(self.query), headers=self._headers or None)
        factory.owner = self
        factory.setProtocolOptions(
            autoPingInterval=0,
            maxFramePayloadSize=self._max_payload,
            maxMessagePayloadSize=self._max_payload,
            closeHandshakeTimeout=self._close_timeout,
            serverConnectionDropTimeout=self._close_timeout,
        )
        self._factory = factory
        try:
            d = self._connecting = self._connector(factory, self._url)
        except Exception as e:
            self._clock.callLater(0, self._on_error, "websocket error", str(e))
            return
        d.addCallbacks(self._on_connected, self._on_connect_failed)
        d.addErrback(lambda f: log.failure("connecting a WebSocket", f))

    def _on_connected(self, protocol: Any) -> None:
        self._connecting = None
        self._connected = True
        self._protocol = protocol
        if self.state is TransportState.CLOSED:
            protocol.dropConnection(abort=True)

    def _on_connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self.state is not TransportState.CLOSED and not failure.check(CancelledError):
            self._on_error("websocket error", _describe(failure))
        self._check_released()

    # -- called by the protocol ------------------------------------------------------------

    def _ws_open(self, protocol: _WebSocketClientProtocol) -> None:
        self._protocol = protocol
        if self.state is TransportState.OPENING:
            self._on_open()

    def _ws_message(self, payload: bytes, is_binary: bool) -> None:
        if self.state not in (TransportState.OPEN, TransportState.PAUSED):
            return
        try:
            packet = decode_packet(payload if is_binary else payload.decode("utf-8"))
        except (UnicodeDecodeError, EngineIOParseError) as e:
            self._on_error("parse error", str(e))
            return
        self._on_packet(packet)

    def _ws_closed(
        self, protocol: _WebSocketClientProtocol, clean: bool, code: int | None,
        reason: str | None,
    ) -> None:
        self._connected = False
        self._protocol = None
        self._factory.owner = None
        if self.state is TransportState.OPENING:
            self._on_error("websocket error", reason or f"closed with code {code}")
        elif self.state is not TransportState.CLOSED:
            self._on_close("websocket connection closed")
        self._check_released()

    # -- the transport ---------------------------------------------------------------------

    def _write(self, packets: Sequence[Packet]) -> None:
        protocol = self._protocol
        if protocol is not None:
            for packet in packets:
                frame = encode_packet(packet)
                if isinstance(frame, bytes):
                    protocol.sendMessage(frame, isBinary=True)
                else:
                    protocol.sendMessage(frame.encode("utf-8"), isBinary=False)
        # Frames are written at once: the transport stays writable.
        self.writable = True
        self._on_drain()

    def _do_close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._protocol is not None:
            if self.state is TransportState.OPENING:
                self._protocol.dropConnection(abort=True)
            else:
                self._protocol.sendClose(1000)

    def _io_done(self) -> bool:
        return self._connecting is None and not self._connected

    def _cut(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            cast(Any, protocol.transport).abortConnection()


def _global_reactor() -> Any:
    from twisted.internet import reactor

    return reactor


# ---- the engine ---------------------------------------------------------------------------


class EngineState(enum.Enum):
    """The states of an :class:`EngineClient` (see the module docstring)."""

    #: created; :meth:`EngineClient.open` not called yet
    NEW = "new"
    #: waiting for the handshake
    OPENING = "opening"
    #: the session is established
    OPEN = "open"
    #: :meth:`EngineClient.close` waits for the write buffer to drain
    CLOSING = "closing"
    #: terminal
    CLOSED = "closed"


#: Builds a transport: ``factory(name, query) -> ClientTransport`` (for tests: fakes).
TransportFactory = Callable[[str, dict[str, str]], ClientTransport]


class EngineClient(EventEmitter):
    """An Engine.IO v4 client session.

    Events (:meth:`on`): ``"open"`` (), ``"handshake"`` (the handshake dict),
    ``"message"`` (``str`` or ``bytes``), ``"ping"`` (), ``"drain"`` (),
    ``"upgrading"`` / ``"upgrade"`` (the transport name), ``"upgrade_error"``
    (:class:`TransportError`), ``"error"`` (:class:`TransportError`, before the ``close`` it
    causes), ``"close"`` (reason, description).  A handler's exception is logged, never raised
    into the transport.

    :param url: the server, ``http(s)://host:port`` or ``ws(s)://``; its query string is sent.
    :param path: the endpoint path (Node's default ``/engine.io``; Socket.IO uses
        ``/socket.io``).
    :param transports: the transports allowed, the first one opened first: ``("polling",
        "websocket")`` upgrades from polling to WebSocket; ``("websocket",)`` is WebSocket
        only.
    :param query: more query parameters for every request.
    :param extra_headers: HTTP headers for every request and the WebSocket handshake.
    :param upgrade: whether to try the upgrades the server offers.
    :param max_payload: the largest polling response or WebSocket message accepted, in bytes.
    :param clock: the clock for every timer (default: the global reactor).
    :param reactor: the reactor for the network (default: the global reactor).
    :param http: the HTTP client for polling (see :class:`PollingTransport`); default: treq
        on a persistent connection pool per polling transport.
    :param tls: the TLS policy for ``https`` / ``wss`` (an ``IPolicyForHTTPS``, e.g.
        ``BrowserLikePolicyForHTTPS(trustRoot=...)``); default: the system's trust roots.
    :param ws_connector: how WebSockets connect (see :data:`WebSocketConnector`).
    :param transport_factory: builds the transports instead (for tests).
    :param close_timeout: seconds a close may take (draining the buffer, then the requests
        and connections) before it is forced.
    :raises ValueError: for an unknown transport or none, or a bad URL.
    """

    def __init__(
        self,
        url: str,
        *,
        path: str = "/engine.io",
        transports: Iterable[str] = _TRANSPORT_NAMES,
        query: Mapping[str, str] | None = None,
        extra_headers: Mapping[str, str] | None = None,
        upgrade: bool = True,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        clock: IReactorTime | None = None,
        reactor: Any = None,
        http: Any = None,
        tls: IPolicyForHTTPS | None = None,
        ws_connector: WebSocketConnector | None = None,
        transport_factory: TransportFactory | None = None,
        close_timeout: float = 2.0,
    ) -> None:
        super().__init__()
        names = tuple(transports)
        if not names:
            raise ValueError("no transports")
        for name in names:
            if name not in _TRANSPORT_NAMES:
                raise ValueError(f"unknown transport {name!r}")
        if clock is None:
            clock = reactor if reactor is not None else _global_reactor()
        self.url = EngineURL.parse(url, path, query)
        self._transports = names
        self._headers = dict(extra_headers or {})
        self._upgrade = upgrade
        self._max_payload_in = max_payload
        self._clock: IReactorTime = clock
        self._reactor = reactor
        self._http = http
        self._tls = tls
        self._ws_connector = ws_connector
        self._transport_factory = transport_factory
        self._close_timeout = close_timeout

        self.state = EngineState.NEW
        #: the session id, from the handshake (``None`` before and after)
        self.sid: str | None = None
        #: seconds, from the handshake
        self.ping_interval = 0.0
        self.ping_timeout = 0.0
        #: the largest payload the server accepts in one POST, in bytes (0: no limit)
        self.max_payload = 0
        #: the current transport
        self.transport: ClientTransport | None = None
        self._upgrades: list[str] = []
        self._upgrading = False
        self._probe: ClientTransport | None = None
        self._probe_waiting = False
        self._write_buffer: list[Packet] = []
        self._prev_buffer_len = 0
        self._ping_timer: IDelayedCall | None = None
        self._close_timer: IDelayedCall | None = None
        self._all_transports: list[ClientTransport] = []
        self._closed_waiters: list[Deferred[None]] = []

    def __repr__(self) -> str:
        name = self.transport.name if self.transport is not None else None
        return f"<EngineClient {self.sid} {self.state.value} {name}>"

    # -- events ----------------------------------------------------------------------------


    # -- public API ------------------------------------------------------------------------

    def open(self) -> None:
        """Open the first transport and start the handshake.

        :raises RuntimeError: if already opened.
        """
        if self.state is not EngineState.NEW:
            raise RuntimeError(f"open() in state {self.state.value}")
        self.state = EngineState.OPENING
        transport = self._create_transport(self._transports[0])
        self._set_transport(transport)
        transport.open()

    def send(self, data: str | bytes) -> None:
        """Send a message, text or binary (dropped once closing or closed, as in Node)."""
        self._send_packet(Packet(PacketType.MESSAGE, data))

    def send_all(self, messages: Iterable[str | bytes]) -> None:
        """Send several messages together (one POST when polling): a packet and its
        attachments."""
        if self.state in (EngineState.CLOSING, EngineState.CLOSED):
            return
        self._write_buffer.extend(Packet(PacketType.MESSAGE, data) for data in messages)
        self._flush()

    def close(self) -> Deferred[None]:
        """Close (``"forced close"``) once the write buffer has drained.

        :returns: a Deferred that fires once the session is closed and every transport's I/O
            is over (never fails).
        """
        if self.state is EngineState.NEW:
            self.state = EngineState.CLOSED
            waiters, self._closed_waiters = self._closed_waiters, []
            for d in waiters:
                d.callback(None)
        elif self.state in (EngineState.OPENING, EngineState.OPEN):
            self.state = EngineState.CLOSING
            if self._write_buffer or self._upgrading:
                self._close_timer = self._clock.callLater(self._close_timeout, self._force_close)
            else:
                self._force_close()
        return self.wait_released()

    def wait_released(self) -> Deferred[None]:
        """Fire once closed and every transport's I/O is over (never fails)."""
        d: Deferred[None] = Deferred()
        if self.state is EngineState.CLOSED:
            self._gather_released(d)
        else:
            self._closed_waiters.append(d)
        return d

    def _gather_released(self, d: Deferred[None]) -> None:
        released = [t.wait_released() for t in self._all_transports]
        DeferredList(released).addCallback(lambda _: d.callback(None))

    @property
    def writable(self) -> bool:
        """Whether a message sent now goes out at once (a volatile emit needs this)."""
        transport = self.transport
        return (self.state is EngineState.OPEN and transport is not None
                and transport.writable and not self._upgrading)

    # -- transports ------------------------------------------------------------------------

    def _create_transport(self, name: str) -> ClientTransport:
        if self._reactor is None and self._transport_factory is None:
            self._reactor = _global_reactor()
        query = {"EIO": str(PROTOCOL), "transport": name}
        if self.sid is not None:
            query["sid"] = self.sid
        transport: ClientTransport
        if self._transport_factory is not None:
            transport = self._transport_factory(name, query)
        elif name == "polling":
            transport = PollingTransport(
                self.url, query, clock=self._clock, reactor=self._reactor, http=self._http,
                headers=self._headers, max_payload=self._max_payload_in, tls=self._tls,
                close_timeout=self._close_timeout,
            )
        else:
            connector = self._ws_connector or default_ws_connector(self._reactor, self._tls)
            transport = WebSocketTransport(
                self.url, query, clock=self._clock, connector=connector,
                headers=self._headers, max_payload=self._max_payload_in,
                close_timeout=self._close_timeout,
            )
        self._all_transports.append(transport)
        return transport

    def _set_transport(self, transport: ClientTransport) -> None:
        if self.transport is not None:
            self.transport.listener = None
        self.transport = transport
        transport.listener = self

    # -- TransportListener -----------------------------------------------------------------

    def transport_open(self, transport: ClientTransport) -> None:
        """A transport opened: for the probe, send ``2probe``."""
        if transport is self._probe:
            self._probe_waiting = True
            transport.send([Packet(PacketType.PING, "probe")])

    def transport_packet(self, transport: ClientTransport, packet: Packet) -> None:
        """A packet arrived on *transport*."""
        if transport is self._probe:
            self._probe_packet(transport, packet)
            return
        if transport is not self.transport or self.state not in (
            EngineState.OPENING, EngineState.OPEN, EngineState.CLOSING
        ):
            return
        ptype = packet.type
        log.debug("engine {sid}: received {ptype}", sid=self.sid, ptype=ptype.name)
        if self.state is EngineState.OPENING:
            if ptype is PacketType.OPEN:
                self._on_handshake(packet.data)
            else:
                self._on_error(TransportError("parse error", f"{ptype.name} before the handshake"))
            return
        if ptype is PacketType.PING:
            # EIO v4: the server pings, the client answers at once.
            self._send_packet(Packet(PacketType.PONG))
            self.emit("ping")
            self._reset_ping_timeout()
        elif ptype is PacketType.MESSAGE:
            assert packet.data is not None
            self.emit("message", packet.data)
        elif ptype is PacketType.CLOSE:
            self._on_close("transport close", "transport closed by the server")
        elif ptype is PacketType.OPEN:
            log.warn("engine {sid}: a second handshake, ignored", sid=self.sid)

    def transport_error(self, transport: ClientTransport, error: TransportError) -> None:
        """A transport failed: the session closes, unless it was a probe."""
        if transport is self._probe:
            self._probe_failed(TransportError("probe error", error.message))
        elif transport is self.transport:
            self._on_error(error)

    def transport_close(self, transport: ClientTransport, description: str) -> None:
        """A transport closed: the session closes, unless it was a probe."""
        if transport is self._probe:
            self._probe_failed(TransportError("probe error", "transport closed"))
        elif transport is self.transport:
            self._on_close("transport close", description)

    def transport_drain(self, transport: ClientTransport) -> None:
        """The transport wrote what it was given."""
        if transport is not self.transport:
            return
        del self._write_buffer[: self._prev_buffer_len]
        self._prev_buffer_len = 0
        if not self._write_buffer:
            self.emit("drain")
            if self.state is EngineState.CLOSING and not self._upgrading:
                self._force_close()
        else:
            self._flush()

    # -- the session -----------------------------------------------------------------------

    def _on_handshake(self, data: Any) -> None:
        try:
            info = json.loads(data) if isinstance(data, str) else None
            if not isinstance(info, dict):
                raise ValueError("not an object")
            sid = info["sid"]
            upgrades = info.get("upgrades", [])
            interval = info["pingInterval"]
            timeout = info["pingTimeout"]
            max_payload = info.get("maxPayload", 0)
            if not isinstance(sid, str) or not sid:
                raise ValueError("no sid")
            if not isinstance(upgrades, list) or not all(isinstance(u, str) for u in upgrades):
                raise ValueError("bad upgrades")
            for number in (interval, timeout, max_payload):
                if isinstance(number, bool) or not isinstance(number, (int, float)) or number < 0:
                    raise ValueError("bad number")
        except (ValueError, KeyError) as e:
            self._on_error(TransportError("parse error", f"bad handshake ({e})"))
            return
        self.sid = sid
        assert self.transport is not None
        self.transport.query["sid"] = sid
        self.ping_interval = interval / 1000
        self.ping_timeout = timeout / 1000
        self.max_payload = int(max_payload)
        self._upgrades = [
            u for u in upgrades if u in self._transports and u != self.transport.name
        ]
        self.emit("handshake", info)
        self.state = EngineState.OPEN
        log.info("engine {sid}: open on {transport}", sid=sid, transport=self.transport.name)
        self.emit("open")
        self._flush()
        if self.state is EngineState.OPEN and self._upgrade:
            for name in self._upgrades[:1]:
                self._start_probe(name)
        if self.state is not EngineState.CLOSED:
            self._reset_ping_timeout()

    def _reset_ping_timeout(self) -> None:
        if self._ping_timer is not None and self._ping_timer.active():
            self._ping_timer.cancel()
        self._ping_timer = self._clock.callLater(
            self.ping_interval + self.ping_timeout, self._on_close, "ping timeout"
        )

    def _send_packet(self, packet: Packet) -> None:
        if self.state in (EngineState.CLOSING, EngineState.CLOSED):
            return
        self._write_buffer.append(packet)
        self._flush()

    def _flush(self) -> None:
        transport = self.transport
        if (
            self.state in (EngineState.OPEN, EngineState.CLOSING)
            and transport is not None
            and transport.writable
            and not self._upgrading
            and self._write_buffer
        ):
            packets = self._writable_packets(transport)
            self._prev_buffer_len = len(packets)
            transport.send(packets)

    def _writable_packets(self, transport: ClientTransport) -> list[Packet]:
        # A POST carries at most maxPayload bytes (as Node's client counts them), but
        # always at least one packet.
        buffer = self._write_buffer
        if not self.max_payload or transport.name != "polling" or len(buffer) < 2:
            return list(buffer)
        size = 1
        for i, packet in enumerate(buffer):
            data = packet.data
            if isinstance(data, bytes):
                size += 1 + (len(data) + 2) // 3 * 4
            elif data:
                size += len(data.encode("utf-8"))
            if i > 0 and size > self.max_payload:
                return buffer[:i]
            size += 2
        return list(buffer)

    def _force_close(self) -> None:
        if self._close_timer is not None:
            if self._close_timer.active():
                self._close_timer.cancel()
            self._close_timer = None
        self._on_close("forced close")

    def _on_error(self, error: TransportError) -> None:
        log.info("engine {sid}: {error}", sid=self.sid, error=error)
        self.emit("error", error)
        self._on_close("transport error", error)

    def _on_close(self, reason: str, description: Any = None) -> None:
        if self.state not in (EngineState.OPENING, EngineState.OPEN, EngineState.CLOSING):
            return
        log.info("engine {sid}: closed ({reason})", sid=self.sid, reason=reason)
        for timer in (self._ping_timer, self._close_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._ping_timer = self._close_timer = None
        self.state = EngineState.CLOSED
        if self._probe is not None:
            self._probe_failed(TransportError("probe error", "socket closed"))
        transport = self.transport
        if transport is not None:
            transport.listener = None
            transport.close()
        self.sid = None
        self.emit("close", reason, description)
        self._write_buffer = []
        self._prev_buffer_len = 0
        waiters, self._closed_waiters = self._closed_waiters, []
        for d in waiters:
            self._gather_released(d)

    # -- upgrade ---------------------------------------------------------------------------

    def _start_probe(self, name: str) -> None:
        probe = self._probe = self._create_transport(name)
        probe.listener = self
        self._probe_waiting = False
        probe.open()

    def _probe_packet(self, probe: ClientTransport, packet: Packet) -> None:
        if not self._probe_waiting:
            return
        self._probe_waiting = False
        if packet.type is not PacketType.PONG or packet.data != "probe":
            self._probe_failed(TransportError("probe error", f"got {packet.type.name}"))
            return
        self._upgrading = True
        self.emit("upgrading", probe.name)
        current = self.transport
        if current is None or self._probe is not probe:
            return
        current.pause(lambda: self._probe_paused(probe))

    def _probe_paused(self, probe: ClientTransport) -> None:
        if self._probe is not probe or self.state is EngineState.CLOSED:
            return
        self._probe = None
        old = self.transport
        self._set_transport(probe)
        if old is not None:
            old.discard()
        probe.send([Packet(PacketType.UPGRADE)])
        log.info("engine {sid}: upgraded to {name}", sid=self.sid, name=probe.name)
        self.emit("upgrade", probe.name)
        self._upgrading = False
        if self.state is EngineState.CLOSING and not self._write_buffer:
            self._force_close()
        else:
            self._flush()

    def _probe_failed(self, error: TransportError) -> None:
        probe, self._probe = self._probe, None
        if probe is None:
            return
        self._probe_waiting = False
        probe.discard()
        was_upgrading, self._upgrading = self._upgrading, False
        log.info("engine {sid}: upgrade failed ({error})", sid=self.sid, error=error)
        self.emit("upgrade_error", error)
        if self.state is EngineState.CLOSED:
            return
        if was_upgrading and self.transport is not None:
            self.transport.resume()
        if self.state is EngineState.CLOSING and not self._write_buffer:
            self._force_close()
        else:
            self._flush()
