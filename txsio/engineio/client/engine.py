"""The Engine.IO client's session: :class:`EngineClient`, the state machine of handshake,
heartbeat, write buffer and upgrade (its theory of operation is in the package docstring,
:mod:`txsio.engineio.client`).

Called by the user (or by the Socket.IO client's manager): :meth:`EngineClient.open`,
:meth:`~EngineClient.send`, :meth:`~EngineClient.send_all`, :meth:`~EngineClient.close`,
:meth:`~EngineClient.on`.  Called by its transports (the engine is their
:class:`~txsio.engineio.client.transport.TransportListener`): ``transport_open``,
``transport_packet``, ``transport_error``, ``transport_close``, ``transport_drain``.  It knows
the transports by name only: the treq and Autobahn ones are imported when first made.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Iterable, Mapping
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.logger import Logger

from ..._events import EventEmitter
from ..._twisted import cancel_call, default_reactor
from ..packet import Packet, PacketType
from .transport import DEFAULT_MAX_PAYLOAD, ClientTransport, TransportError
from .url import EngineURL, cookie_header

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.iweb import IPolicyForHTTPS

    from .websocket import WebSocketConnector

__all__ = ["PROTOCOL", "EngineClient", "EngineState", "TransportFactory"]

log = Logger()

#: The Engine.IO protocol revision the client speaks.
PROTOCOL = 4

_TRANSPORT_NAMES = ("polling", "websocket")


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
    :param try_all_transports: when the first transport fails to open, open the next one
        instead of failing (engine.io-client's ``tryAllTransports``; off by default).
    :param cookie_jar: the cookies (an ``http.cookiejar.CookieJar``) sent with every polling
        request (and stored from their answers) and with the WebSocket handshake (and stored
        from its answer, as a browser does), so a cookie-sticky load balancer sees them on the
        upgrade and on reconnections, over either transport; default: a jar of this
        connection's own.  Polling uses it only on the HTTP client txsio makes (not one
        given as ``http``).
    :param max_payload: the largest polling response or WebSocket message accepted, in bytes.
    :param clock: the clock for every timer (default: the global reactor).
    :param reactor: the reactor for the network (default: the global reactor).
    :param http: the HTTP client for polling (see
        :class:`~txsio.engineio.client.polling.HTTPPollingTransport`); default: treq
        on a persistent connection pool per polling transport.
    :param tls: the TLS policy for ``https`` / ``wss`` (an ``IPolicyForHTTPS``, e.g.
        ``BrowserLikePolicyForHTTPS(trustRoot=...)``); default: the system's trust roots.
    :param ws_connector: how WebSockets connect (see
        :data:`~txsio.engineio.client.websocket.WebSocketConnector`).
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
        try_all_transports: bool = False,
        cookie_jar: CookieJar | None = None,
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
            clock = default_reactor(reactor)
        self.url = EngineURL.parse(url, path, query)
        self._transports = names
        self._headers = dict(extra_headers or {})
        self._upgrade = upgrade
        self._try_all = try_all_transports
        #: the connection's cookies, sent with polling and the WebSocket handshake
        self.cookie_jar: CookieJar = cookie_jar if cookie_jar is not None else CookieJar()
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
            self._reactor = default_reactor()
        query = {"EIO": str(PROTOCOL), "transport": name}
        if self.sid is not None:
            query["sid"] = self.sid
        transport: ClientTransport
        if self._transport_factory is not None:
            transport = self._transport_factory(name, query)
        elif name == "polling":
            # (Imported here: the session module stays free of treq and Autobahn.)
            from .polling import HTTPPollingTransport

            transport = HTTPPollingTransport(
                self.url, query, clock=self._clock, reactor=self._reactor, http=self._http,
                headers=self._headers, max_payload=self._max_payload_in, tls=self._tls,
                close_timeout=self._close_timeout, cookie_jar=self.cookie_jar,
            )
        else:
            from .websocket import WebSocketTransport, default_ws_connector

            connector = self._ws_connector or default_ws_connector(self._reactor, self._tls)
            # The cookies polling got (a sticky load balancer's) go with the upgrade too,
            # as engine.io-client's cookie jar does in Node.
            headers = dict(self._headers)
            cookies = cookie_header(self.cookie_jar, self.url.http(query))
            if cookies and not any(k.lower() == "cookie" for k in headers):
                headers["Cookie"] = cookies
            transport = WebSocketTransport(
                self.url, query, clock=self._clock, connector=connector,
                headers=headers, max_payload=self._max_payload_in,
                close_timeout=self._close_timeout, cookie_jar=self.cookie_jar,
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
        """A transport failed: the session closes, unless it was a probe (or, with
        ``try_all_transports``, the first transport not yet open: then the next opens)."""
        if transport is self._probe:
            self._probe_failed(TransportError("probe error", error.message))
        elif transport is self.transport:
            if self._try_all and self.state is EngineState.OPENING \
                    and len(self._transports) > 1:
                log.info("engine: {name} failed to open ({error}), trying {next}",
                         name=transport.name, error=error, next=self._transports[1])
                self._transports = self._transports[1:]
                transport.discard()
                following = self._create_transport(self._transports[0])
                self._set_transport(following)
                following.open()
                return
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
        cancel_call(self._ping_timer)
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
        cancel_call(self._close_timer)
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
            cancel_call(timer)
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
