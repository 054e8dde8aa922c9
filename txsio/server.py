"""``Server``: the Socket.IO server — namespaces, middlewares, options — over Engine.IO.

::

    import txsio
    from twisted.web.resource import Resource

    io = txsio.Server(cors_allowed_origins=["https://app.example"])

    @io.on("connection")
    def connected(socket):
        socket.emit("news", {"hello": "world"})

    root = Resource()
    root.putChild(b"socket.io", io.resource())

:class:`Connection` is one client's Engine.IO session seen from Socket.IO (Node calls it
``Client``): it decodes packets (reassembling binary attachments), routes them to the socket
of their namespace, runs the namespace connection flow, and enforces the connect timeout.
"""

from __future__ import annotations

import base64
import datetime
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from twisted.internet.defer import Deferred, gatherResults
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._settings import feature_settings
from ._stats import ServerStats, count, reason_label
from ._timers import call_later
from ._twisted import cancel_call, default_reactor
from .adapter import Adapter, EncodedPacket, SessionAwareAdapter
from .broadcast import Broadcasting, BroadcastOperator
from .engineio._compression import uncompressed
from .engineio.packet import Packet as EnginePacket
from .engineio.packet import PacketType as EnginePacketType
from .engineio.server import CorsOrigins, EngineServer
from .engineio.session import CloseReason
from .namespace import Namespace, NamespaceMatcher, ParentNamespace
from .parser import Parser, resolve_parser
from .protocol import Packet, PacketType, SocketIOParseError
from .socket import Handshake, Socket

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from .engineio.resource import EngineIOResource
    from .engineio.session import EngineSession
    from .metrics import MetricsResource

__all__ = ["Connection", "RecoveryOptions", "Server"]

log = Logger()

# Read on every packet: a module global costs a fraction of PacketType.CONNECT (an enum
# member read through its class).
_CONNECT = PacketType.CONNECT
_CONNECT_ERROR = PacketType.CONNECT_ERROR

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class RecoveryOptions:
    """Connection state recovery (Node 4.6): how long a disconnected socket's state is kept,
    and whether a recovered socket skips the middlewares."""

    max_disconnection_duration: float = 120.0
    skip_middlewares: bool = True


def _recovery(value: bool | Mapping[str, Any] | RecoveryOptions | None) -> RecoveryOptions | None:
    return feature_settings(RecoveryOptions, value)


class Server(Broadcasting):
    """A Socket.IO server.

    :param path: where the endpoint is meant to be mounted (informational for
        :meth:`resource`, used by the twistd plugin); default ``"/socket.io"``.
    :param ping_interval: seconds between heartbeats (Node: 25).
    :param ping_timeout: seconds a client has to answer one (Node: 20).
    :param max_http_buffer_size: the largest message in bytes (Node: 1e6).
    :param max_buffered_bytes: the most bytes waiting for one client that does not read as
        fast as the server sends (4 MiB); past it the client is disconnected with the reason
        ``"send buffer full"`` (see :class:`~txsio.engineio.EngineServer`).
    :param cors_allowed_origins: ``None`` (no CORS; foreign browser origins refused),
        ``"*"``, a list of origins, or a callable ``f(origin) -> bool``; the shorthand of
        ``cors={"origin": X, "credentials": True}``.
    :param cors: Node's ``cors`` option in snake_case: ``origin`` (a string, a list, a
        compiled regex, or ``f(origin)`` returning a bool or a Deferred), ``credentials``,
        ``methods``, ``allowed_headers``, ``exposed_headers``, ``max_age`` (see
        :class:`~txsio.engineio.cors.CorsPolicy`); checked when the server is built.
    :param allow_request: ``f(request) -> bool`` or a Deferred of it, for each new connection.
    :param transports: from ``"polling"`` and ``"websocket"``.
    :param allow_upgrades: whether polling clients may upgrade to WebSocket (Node: true).
    :param upgrade_timeout: seconds a client has to complete an upgrade it started (Node: 10).
    :param allow_eio3: serve socket.io-client 2.x (Engine.IO v3, Socket.IO v4).
    :param allow_jsonp: serve JSONP polling (``j`` in the query), off by default even with
        ``allow_eio3``: it is cross-origin by nature (see
        :class:`~txsio.engineio.EngineServer`).
    :param connect_timeout: seconds a client has to join a namespace (Node: 45).
    :param cookie: the ``io`` cookie for sticky sessions (see
        :class:`~txsio.engineio.EngineServer`).
    :param connection_state_recovery: ``True``, a mapping of :class:`RecoveryOptions` fields,
        or ``None`` (off, the default).
    :param adapter: a factory ``f(namespace) -> Adapter`` (default: in memory).
    :param max_attachments: the most binary attachments one packet may announce.
    :param parser: how packets are written on the wire, for every client (Node's
        ``parser``): ``"default"``, ``"msgpack"`` (npm ``socket.io-msgpack-parser``, which
        the clients must use too) or an object with the :class:`~txsio.parser.Parser`
        interface (see :doc:`/parsers`).
    :param cleanup_empty_child_namespaces: remove a child of a dynamic namespace (and close
        its adapter) when its last socket leaves (Node's ``cleanupEmptyChildNamespaces``;
        default off: children stay).
    :param trusted_proxies: the proxies (networks, e.g. ``["10.0.0.0/8"]``) whose
        ``Forwarded`` / ``X-Forwarded-For`` headers name the client in ``handshake.address``
        (none by default: the peer's address, whatever the headers say).
    :param http_compression: gzip / deflate for polling responses of 1024 bytes and more
        (default on, as Node; ``False``, or a mapping with ``threshold`` and ``level``; see
        :class:`~txsio.engineio.EngineServer`).
    :param per_message_deflate: permessage-deflate for WebSocket messages (default off, as
        Node; ``True``, or a mapping with ``threshold`` and ``server_no_context_takeover``;
        see :class:`~txsio.engineio.EngineServer`).
    :param serve_client: the path of a built ``socket.io.js`` (npm socket.io-client's
        ``dist/socket.io.js``), served at ``<path>/socket.io.js`` with the ``.min.js``, ESM,
        msgpack and ``.map`` files found beside it, as Node's ``serveClient`` (ETag, 304,
        ``Cache-Control: public, max-age=0``); by default nothing is served there.
    :param clock: the clock for every timer (default: the global reactor).

    Events (``io.on(event, f)``): ``"connection"`` (the main namespace's new sockets),
    ``"new_namespace"`` (each namespace created after the server, dynamic children
    included), and any other name: a server-side event from another node of the cluster.
    """

    def __init__(
        self,
        *,
        path: str = "/socket.io",
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_http_buffer_size: int = 1_000_000,
        max_buffered_bytes: int = 4 * 1024 * 1024,
        cors_allowed_origins: CorsOrigins = None,
        cors: Mapping[str, Any] | None = None,
        allow_request: Callable[[Any], Any] | None = None,
        transports: Iterable[str] = ("polling", "websocket"),
        allow_upgrades: bool = True,
        upgrade_timeout: float = 10.0,
        allow_eio3: bool = False,
        allow_jsonp: bool = False,
        connect_timeout: float = 45.0,
        cookie: bool | str | Mapping[str, Any] | None = False,
        connection_state_recovery: bool | Mapping[str, Any] | RecoveryOptions | None = None,
        adapter: Callable[[Namespace], Adapter] | None = None,
        max_attachments: int = 10,
        parser: str | Parser = "default",
        cleanup_empty_child_namespaces: bool = False,
        trusted_proxies: Iterable[str] = (),
        http_compression: bool | Mapping[str, Any] | None = True,
        per_message_deflate: bool | Mapping[str, Any] | None = False,
        serve_client: str | os.PathLike[str] | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        self.clock: IReactorTime = default_reactor(clock)
        self.path = "/" + path.strip("/")
        self.connect_timeout = float(connect_timeout)
        self.max_attachments = max_attachments
        #: the parser of every connection and broadcast (:mod:`txsio.parser`)
        self.parser: Parser = resolve_parser(parser)
        self.cleanup_empty_child_namespaces = cleanup_empty_child_namespaces
        self.connection_state_recovery = _recovery(connection_state_recovery)
        self._adapter_factory = adapter
        self.engine = EngineServer(
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            max_http_buffer_size=max_http_buffer_size,
            max_buffered_bytes=max_buffered_bytes,
            transports=transports,
            allow_upgrades=allow_upgrades,
            upgrade_timeout=upgrade_timeout,
            allow_eio3=allow_eio3,
            allow_jsonp=allow_jsonp,
            cors_allowed_origins=cors_allowed_origins,
            cors=cors,
            allow_request=allow_request,
            cookie=cookie,
            trusted_proxies=trusted_proxies,
            http_compression=http_compression,
            per_message_deflate=per_message_deflate,
            clock=clock,
            on_session=self._on_engine_connection,
        )
        if serve_client is not None:
            from ._client_files import ClientFiles

            self.engine.resource().files.update(ClientFiles(serve_client).leaves)
        self._nsps: dict[str, Namespace] = {}
        self._parents: list[ParentNamespace] = []
        #: the open connections by Engine.IO session id
        self.connections: dict[str, Connection] = {}
        #: the counters the metrics read (:class:`txsio._stats.ServerStats`)
        self.stats = ServerStats()
        self._metrics_registry: CollectorRegistry | None = None
        self.sockets: Namespace = self.of("/")

    def _make_adapter(self, nsp: Namespace) -> Adapter:
        if self._adapter_factory is not None:
            return self._adapter_factory(nsp)
        if self.connection_state_recovery is not None:
            return SessionAwareAdapter(nsp, self.connection_state_recovery
                                       .max_disconnection_duration)
        return Adapter(nsp)

    # -- mounting --------------------------------------------------------------------------

    def resource(self) -> EngineIOResource:
        """The twisted.web resource of the endpoint (polling and WebSocket on one path).

        ``root.putChild(b"socket.io", io.resource())``.
        """
        return self.engine.resource()

    @property
    def metrics_registry(self) -> CollectorRegistry:
        """This server's ``prometheus_client`` registry (its own, never the global one): the
        :class:`txsio.metrics.ServerCollector` of this server, and whatever the application
        registers in it."""
        if self._metrics_registry is None:
            from .metrics import server_registry

            self._metrics_registry = server_registry(self)
        return self._metrics_registry

    def metrics_resource(self) -> MetricsResource:
        """A twisted.web resource serving :attr:`metrics_registry` to Prometheus (its text
        format, or OpenMetrics when the scraper asks for it).

        ``root.putChild(b"metrics", io.metrics_resource())``: mount it where only the
        monitoring can reach it (see :doc:`/metrics`).
        """
        from .metrics import MetricsResource

        return MetricsResource(self.metrics_registry)

    # -- namespaces ------------------------------------------------------------------------

    def of(self, name: str | re.Pattern[str] | NamespaceMatcher) -> Namespace:
        """The namespace ``name``, created if needed.

        :param name: a name (``"/chat"``), a compiled regex (searched in the client's
            namespace name, unanchored, as Node's ``RegExp.test``) or a callable
            ``f(name, auth) -> bool`` for a dynamic namespace.
        """
        if isinstance(name, str):
            if not name.startswith("/"):
                name = "/" + name
            nsp = self._nsps.get(name)
            if nsp is None:
                nsp = self._nsps[name] = Namespace(self, name)
                self._namespace_created(nsp)
            return nsp
        parent = ParentNamespace(self, name)
        self._parents.append(parent)
        return parent

    @property
    def namespaces(self) -> Mapping[str, Namespace]:
        """The namespaces by name, read-only and live: the main one, those made with
        :meth:`of` and the children of dynamic namespaces (not the dynamic parents)."""
        return MappingProxyType(self._nsps)

    def _namespace_created(self, nsp: Namespace) -> None:
        """Emit ``"new_namespace"`` (called for names given to :meth:`of` and for the
        children of dynamic namespaces; the main namespace, made with the server, has no
        handler yet to tell)."""
        main = self._nsps.get("/")
        if main is not None and main is not nsp:
            main.listeners.emit_local("new_namespace", nsp)

    def _namespace_emptied(self, nsp: Namespace) -> None:
        """A namespace's last socket left: remove it if it is a dynamic child and
        ``cleanup_empty_child_namespaces`` says so."""
        parent = nsp._parent
        if parent is None or not self.cleanup_empty_child_namespaces or nsp.sockets:
            return
        parent.children.discard(nsp)
        if self._nsps.get(nsp.name) is nsp:
            del self._nsps[nsp.name]
        _close_adapter(nsp)

    @overload
    def on(self, event: str) -> Callable[[_F], _F]: ...

    @overload
    def on(self, event: str, handler: _F) -> _F: ...

    def on(self, event: str, handler: _F | None = None) -> _F | Callable[[_F], _F]:
        """``"connection"`` / ``"connect"``: the main namespace's new sockets; any other
        event: a server-side event from another node of the cluster."""
        return self.sockets.on(event) if handler is None else self.sockets.on(event, handler)

    def use(self, middleware: Callable[[Socket], Any]) -> Callable[[Socket], Any]:
        """A middleware of the main namespace (see :meth:`Namespace.use`)."""
        return self.sockets.use(middleware)

    # -- main namespace shortcuts ----------------------------------------------------------

    def _operator(self) -> BroadcastOperator:
        # The broadcast shortcuts (to, emit, fetch_sockets, ...) act on the main namespace.
        return self.sockets._operator()

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` to the other nodes of the cluster."""
        self.sockets.server_side_emit(event, *args)

    def server_side_emit_with_ack(self, event: str, *args: Any) -> Deferred[list[Any]]:
        """Emit ``event`` to the other nodes of the cluster; a Deferred of one answer per
        node (``io.timeout(s).server_side_emit_with_ack(...)`` bounds the wait)."""
        return self.sockets.server_side_emit_with_ack(event, *args)

    # -- connections -----------------------------------------------------------------------

    def _on_engine_connection(self, session: EngineSession) -> None:
        conn = Connection(self, session)
        self.connections[session.id] = conn

    def _find_namespace(self, name: str, auth: dict[str, Any]) -> Deferred[Namespace | None]:
        nsp = self._nsps.get(name)
        if nsp is not None:
            return Deferred.fromCoroutine(_just(nsp))

        async def search() -> Namespace | None:
            for parent in tuple(self._parents):
                if await parent.matches(name, auth):
                    existing = self._nsps.get(name)
                    return existing if existing is not None else parent.create_child(name)
            return None

        return Deferred.fromCoroutine(search())

    def close(self) -> Deferred[None]:
        """Disconnect every client (reason ``"server shutting down"``), close the engine, then
        close every namespace's adapter.

        :returns: a Deferred that fires once every adapter has closed (one that failed to is
            logged, and does not fail it): ``await io.close()``.
        """
        for conn in list(self.connections.values()):
            conn.close(CloseReason.SERVER_SHUTTING_DOWN)
        self.engine.close()
        closing = [d for d in map(_close_adapter, list(self._nsps.values())) if d is not None]
        return gatherResults(closing).addCallback(lambda _: None)


def _as_dict(mapping: Mapping[str, str]) -> dict[str, str]:
    return mapping if isinstance(mapping, dict) else dict(mapping)


def _close_adapter(nsp: Namespace) -> Deferred[object] | None:
    """Close ``nsp``'s adapter; a Deferred when it closes later (its failure logged, never
    raised)."""
    try:
        result = nsp.adapter.close()
    except Exception:
        log.failure("closing the adapter of namespace {nsp} failed", nsp=nsp.name)
        return None
    if isinstance(result, Deferred):
        return result.addErrback(_log_close_failure, nsp.name)
    return None


def _log_close_failure(failure: Failure, nsp: str) -> None:
    log.failure("closing the adapter of namespace {nsp} failed", failure, nsp=nsp)


async def _just(nsp: Namespace) -> Namespace | None:
    return nsp


#: the last second :func:`js_date_string` wrote, the zone names it wrote it with, the text
_last_date: tuple[int, object, str] = (-1, None, "")


def js_date_string(seconds: float) -> str:
    """``seconds`` since the epoch as JavaScript's ``Date.prototype.toString`` writes it in
    this process's time zone (what Node puts in ``handshake.time``):
    ``Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)``.  The zone's name in
    parentheses is ICU's long name in Node; here it is that for UTC and the zone's
    abbreviation (``CET``) elsewhere.  Whole seconds, as JavaScript truncates its
    milliseconds; the text of the last second is kept (every connect of that second asks
    for it), as long as the process's zone is the same (``time.tzset`` replaces
    ``time.tzname``)."""
    global _last_date
    whole = math.floor(seconds)
    zone_names = time.tzname
    last = _last_date
    if last[0] == whole and last[1] is zone_names:
        return last[2]
    text = _date_text(whole)
    _last_date = (whole, zone_names, text)
    return text


def _date_text(seconds: int) -> str:
    local = datetime.datetime.fromtimestamp(seconds).astimezone()
    zone = local.tzname() or ""
    if zone == "UTC":
        zone = "Coordinated Universal Time"
    # The names of days and months in English whatever the locale, as JavaScript's.
    day = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[local.weekday()]
    month = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
             "Dec")[local.month - 1]
    return f"{day} {month} {local:%d %Y %H:%M:%S} GMT{local:%z} ({zone})"


def _random_id() -> str:
    return base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")


class Connection:
    """One client's Engine.IO session, seen from Socket.IO (Node's ``Client``).

    It is the session's :class:`~txsio.engineio.session.SessionListener`: the session calls
    :meth:`on_message` and :meth:`on_close` directly.

    :param server: the Socket.IO server.
    :param session: the Engine.IO session.
    """

    # One per client for its whole life: its state in slots, an attribute dict only for
    # attributes of one's own (made when set).
    __slots__ = ("__dict__", "__weakref__", "_closed", "_connecting", "_encode", "_stats",
                 "_timer", "decoder", "id", "protocol", "server", "session", "sockets")

    def __init__(self, server: Server, session: EngineSession) -> None:
        self.server = server
        self.session = session
        self.id = session.id
        # EIO3 clients (socket.io-client 2.x) speak Socket.IO v4.
        self.protocol = 4 if session.protocol == 3 else 5
        self.decoder = server.parser.decoder(protocol=self.protocol,
                                             max_attachments=server.max_attachments)
        self._encode = server.parser.encode
        self.sockets: dict[str, Socket] = {}  # by namespace name
        # Namespaces being joined: a set only while there are any (most connections never
        # hold one for longer than their first CONNECT).
        self._connecting: set[str] | None = None
        self._closed = False
        self._stats = server.stats
        count(self._stats.connections_opened, session.transport.name)
        # Queued with the other connections' (one delay for all: see txsio._timers).
        self._timer: IDelayedCall | None = call_later(
            server.clock, server.connect_timeout, Connection._connect_timed_out, self)
        session.listener = self
        if session.protocol == 3:
            # socket.io-client 2.x joins the main namespace without a CONNECT packet.
            self._connect("/", {})

    @property
    def is_open(self) -> bool:
        """Whether the underlying session is still open."""
        return not self._closed

    # -- ids and handshake -----------------------------------------------------------------

    def socket_id(self, nsp: str) -> str:
        """A new socket id (v4 clients: derived from the session id, as Node does)."""
        if self.protocol == 4:
            return self.id if nsp == "/" else f"{nsp}#{self.id}"
        return _random_id()

    def new_pid(self) -> str:
        """A new private session id for connection state recovery."""
        return _random_id()

    def handshake(self, auth: dict[str, Any]) -> Handshake:
        """The :class:`~txsio.socket.Handshake` of a socket connecting with ``auth``."""
        request = self.session.request
        now = self.server.clock.seconds()
        # The session's record is read once, here: share its dicts instead of copying them
        # (a copy per socket was a kilobyte per connection).
        headers = _as_dict(request.headers) if request is not None else {}
        origin = headers.get("origin")
        host = headers.get("host")
        return Handshake(
            headers=headers,
            time=js_date_string(now),
            address=request.address if request is not None else "",
            xdomain=origin is not None and host is not None and not origin.endswith("//" + host),
            secure=bool(request.secure) if request is not None else False,
            issued=int(now * 1000),
            url=request.url if request is not None else "",
            query=_as_dict(request.query) if request is not None else {},
            auth=auth,
        )

    # -- writing ---------------------------------------------------------------------------

    def write_packet(self, packet: Packet, volatile: bool = False, compress: bool = True) -> None:
        """Encode and send one packet to this client (``compress=False``: marked to go
        uncompressed)."""
        if self._closed:
            return
        session = self.session
        if volatile and not session.transport.writable:
            self._stats.volatile_dropped += 1
            return  # dropped before it is encoded
        parts = self._encode(packet, protocol=self.protocol)
        if not compress:
            parts = [uncompressed(part) for part in parts]
        self._stats.packets_sent += 1
        if len(parts) == 1:
            session.send(parts[0])
        else:
            session.send_packets([EnginePacket(EnginePacketType.MESSAGE, p) for p in parts])

    def write_encoded(self, encoded: EncodedPacket, volatile: bool) -> None:
        """Send a packet encoded once for many recipients."""
        if self._closed:
            return
        session = self.session
        if volatile and not session.transport.writable:
            self._stats.volatile_dropped += 1
            return
        self._stats.packets_sent += 1
        session.send_encoded(encoded.engine_packets, encoded)

    def connect_error(self, nsp: str, message: str, data: Any) -> None:
        """Refuse a namespace connection with CONNECT_ERROR."""
        if self.protocol == 4:
            payload: Any = message
        else:
            payload = {"message": message}
            if data is not None:
                payload["data"] = data
        self.write_packet(Packet(PacketType.CONNECT_ERROR, nsp, payload))

    # -- reading ---------------------------------------------------------------------------

    def on_message(self, data: str | bytes) -> None:
        """Called by the session with each message: a Socket.IO packet, or a part of one."""
        try:
            packet = self.decoder.feed(data)
        except SocketIOParseError as e:
            self.invalid_packet(e)
            return
        if packet is None:
            return
        self._stats.packets_received += 1
        ptype = packet.type
        socket = self.sockets.get(packet.nsp)
        if ptype is _CONNECT and socket is None:
            self._connect(packet.nsp, packet.data if isinstance(packet.data, dict) else {})
            return
        if socket is None or ptype is _CONNECT or ptype is _CONNECT_ERROR:
            # As Node's Client ("invalid state"): a packet for a namespace not joined, a
            # second CONNECT, or a CONNECT_ERROR (the server's to send) closes the connection.
            log.info("closing connection {sid}: {ptype} packet for namespace {nsp}, which it "
                     "has {joined}joined", sid=self.id, ptype=ptype.name, nsp=packet.nsp,
                     joined="" if socket is not None else "not ")
            self._force_close()
            return
        socket._on_packet(packet)

    def invalid_packet(self, error: Exception) -> None:
        """A packet that does not decode (or that Node's parser refuses, e.g. a reserved event
        name): every socket's ``error`` handlers get ``error``, then the session closes
        gracefully, as Node's (reason ``"forced close"``; a polling client gets the close packet
        on its next GET, not "Session ID unknown"; what it sends meanwhile is dropped)."""
        log.warn("closing connection {sid}: bad Socket.IO packet: {why}", sid=self.id,
                 why=error)
        for joined in list(self.sockets.values()):
            joined.listeners.emit_local("error", error)
        self.session.close()

    def _connect(self, name: str, auth: dict[str, Any]) -> None:
        connecting = self._connecting
        if connecting is not None and name in connecting:
            # Node would add a second socket (its table of joined namespaces is filled when
            # the first one's middlewares are done); one socket per namespace here.
            log.debug("connection {sid}: already connecting to {nsp}", sid=self.id, nsp=name)
            return
        if connecting is None:
            connecting = self._connecting = set()
        connecting.add(name)
        nsp = self.server._nsps.get(name)
        if nsp is not None and nsp._connects_at_once(auth):
            # The common case (a namespace that exists, no middleware, nothing to restore):
            # the flow below would run to its end at once; run it without coroutines.
            try:
                nsp._connect_now(self, auth)
            except Exception:
                log.failure("connecting {sid} to {nsp} failed", sid=self.id, nsp=name)
            finally:
                self._connected_to(name)
            return
        d = Deferred.fromCoroutine(self._connect_flow(name, auth))
        d.addErrback(lambda f: log.failure("connecting {sid} to {nsp} failed", f,
                                           sid=self.id, nsp=name))

    async def _connect_flow(self, name: str, auth: dict[str, Any]) -> None:
        try:
            nsp = await self.server._find_namespace(name, auth)
            if nsp is None:
                self.connect_error(name, "Invalid namespace", None)
                return
            await nsp._add(self, auth)
        finally:
            self._connected_to(name)

    def _connected_to(self, name: str) -> None:
        # The flow of a namespace connection is over (joined or refused).
        connecting = self._connecting
        if connecting is not None:
            connecting.discard(name)
            if not connecting:
                self._connecting = None

    def _add(self, socket: Socket) -> None:
        self.sockets[socket.nsp.name] = socket
        cancel_call(self._timer)
        self._timer = None

    def _remove(self, socket: Socket) -> None:
        if self.sockets.get(socket.nsp.name) is socket:
            del self.sockets[socket.nsp.name]

    def _connect_timed_out(self) -> None:
        self._timer = None
        if not self.sockets and not self._closed:
            log.info("connection {sid}: no namespace joined in time, closing", sid=self.id)
            self.session.close()

    # -- closing ---------------------------------------------------------------------------

    def disconnect_all(self) -> None:
        """``socket.disconnect(close=True)``: leave every namespace, then close the session."""
        for socket in list(self.sockets.values()):
            socket.disconnect()
        self.session.close()

    def _force_close(self) -> None:
        # Node's Client.close(): the session closes gracefully; when it closed at once (a
        # WebSocket, a GET pending) the sockets went with "forced close", else they go now
        # with "forced server close" and the client gets the close packet on its next GET.
        self.session.close()
        self.on_close("forced server close")

    def close(self, reason: str) -> None:
        """Disconnect every socket with ``reason`` and close the session now."""
        self.on_close(reason)
        self.session.terminate(reason)

    def on_close(self, reason: str) -> None:
        """Called by the session when it closes: every socket disconnects with ``reason``."""
        if self._closed:
            return
        self._closed = True
        count(self._stats.connections_closed, reason_label(reason))
        cancel_call(self._timer)
        self._timer = None
        # The transport's detail (Node's description), when the session closed for one.
        description = self.session.close_description \
            if self.session.close_reason == reason else None
        for socket in list(self.sockets.values()):
            socket._on_close(reason, description)
        self.sockets.clear()
        self.decoder.reset()
        self.server.connections.pop(self.id, None)
