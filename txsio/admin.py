"""The server side of the Socket.IO Admin UI (npm ``@socket.io/admin-ui`` 0.5).

::

    import txsio
    from txsio.admin import instrument

    io = txsio.Server(cors_allowed_origins=["https://admin.socket.io"])
    # the password's bcrypt hash: python3 -c 'import bcrypt; print(bcrypt.hashpw(
    #     b"your password", bcrypt.gensalt()).decode())'
    password = "$2b$04$3CTjFYezPTC0HM797hl8suVaFOOdZwhOJx3hVQ/SBNJmvlEgZwbzi"
    instrument(io, auth={"type": "basic", "username": "admin", "password": password})

:func:`instrument` opens the admin namespace (``/admin``) that the UI connects to, and speaks
its protocol, as Node's ``instrument(io, options)`` does:

- to each admin socket, on connection: ``session`` (the id that spares the UI the password
  next time), ``config`` (the features the UI may offer), ``server_stats`` (then every 2 s)
  and, in development mode, ``all_sockets``;
- to every admin socket, in development mode: ``socket_connected``, ``socket_updated`` (a new
  transport, or changed ``socket.data``), ``socket_disconnected``, ``room_joined``,
  ``room_left``, ``event_received`` and ``event_sent``;
- from an admin socket, unless read-only: the commands ``emit``, ``join``, ``leave`` and
  ``_disconnect``.

Who calls what: :func:`instrument` registers :class:`Instrumentation`'s handlers on txsio's
public seams only: the admin namespace's middleware and ``"connection"`` handlers, each
namespace's ``"connection"`` handlers and its adapter's ``"join-room"`` / ``"leave-room"``
events, ``io.on("new_namespace")``, each socket's catch-alls (``on_any``,
``on_any_outgoing``) and ``"disconnect"`` handler, and the Engine.IO server's
``"connection"`` event with each session's ``"message"``, ``"upgrade"`` and ``"close"``
events (the dashboard's counts).  Its timer runs on the server's clock while an admin socket
is connected.

Basic authentication checks the password against a bcrypt hash, as the npm package does
(the ``admin`` extra, ``pip install '.[admin]'`` in txsio's source, brings the ``bcrypt``
package).
"""

from __future__ import annotations

import os
import re
import secrets
import socket as _socket
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Literal, Protocol

from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.interfaces import IReactorThreads
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger

from .exceptions import ConnectionRefusedError
from .protocol import RESERVED_EVENTS

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from .engineio.session import EngineSession
    from .namespace import Namespace
    from .server import Server
    from .socket import Handshake, Socket

__all__ = ["Feature", "InMemoryStore", "Instrumentation", "Store", "instrument"]

log = Logger()

#: Seconds between two ``server_stats`` (Node: 2000 ms).
STATS_INTERVAL = 2.0

#: The bytes of a password bcrypt reads (it ignores the rest, as bcryptjs does).
_BCRYPT_MAX_PASSWORD = 72
_BCRYPT_HASH = re.compile(r"\$2[abxy]?\$\d\d\$[./A-Za-z0-9]{53}")
#: How deep socket.data is copied for the UI (deeper values are shown as text).
_MAX_DEPTH = 32


class Feature:
    """The names in ``config.supportedFeatures``: what the UI may offer."""

    EMIT = "EMIT"
    JOIN = "JOIN"
    LEAVE = "LEAVE"
    DISCONNECT = "DISCONNECT"
    #: the commands on every socket of a namespace or room (Socket.IO 4's sockets_join...)
    MJOIN = "MJOIN"
    MLEAVE = "MLEAVE"
    MDISCONNECT = "MDISCONNECT"
    #: the dashboard's counts in ``server_stats``
    AGGREGATED_EVENTS = "AGGREGATED_EVENTS"
    #: the per-socket events (development mode)
    ALL_EVENTS = "ALL_EVENTS"

    COMMANDS = (EMIT, JOIN, LEAVE, DISCONNECT, MJOIN, MLEAVE, MDISCONNECT)


class Store(Protocol):
    """Where the ids of the UI's authenticated sessions are kept (Node's ``Store``)."""

    def does_session_exist(self, session_id: str) -> bool | Deferred[bool]:
        """Whether ``session_id`` was saved (a Deferred of it for a remote store)."""

    def save_session(self, session_id: str) -> object:
        """Keep ``session_id``."""


class InMemoryStore:
    """A :class:`Store` in this process's memory (Node's ``InMemoryStore``): a UI that
    authenticated once reconnects with its session id until the process ends."""

    def __init__(self) -> None:
        self._sessions: set[str] = set()

    def does_session_exist(self, session_id: str) -> bool:
        """Whether ``session_id`` was saved."""
        return session_id in self._sessions

    def save_session(self, session_id: str) -> None:
        """Keep ``session_id``."""
        self._sessions.add(session_id)


def instrument(
    io: Server,
    *,
    auth: Literal[False] | Mapping[str, str],
    mode: Literal["development", "production"] = "development",
    read_only: bool = False,
    server_id: str | None = None,
    namespace_name: str = "/admin",
    store: Store | None = None,
) -> Instrumentation:
    """Serve the Socket.IO Admin UI's protocol on ``io`` (Node's ``instrument(io, opts)``).

    The UI is a web page (hosted at https://admin.socket.io, or the ``ui/dist`` directory of
    the npm package served from anywhere): allow its origin in the server's
    ``cors_allowed_origins``.

    :param io: the server to watch.
    :param auth: ``False`` (no authentication: anyone who reaches the server administers it),
        or ``{"type": "basic", "username": ..., "password": <a bcrypt hash>}``.  Required, as
        in Node, so that no server is left open by mistake.
    :param mode: ``"development"`` sends every socket, room and event to the UI;
        ``"production"`` only the server's statistics and counts (cheaper on a busy server).
    :param read_only: refuse the UI's commands (emit, join, leave, disconnect).
    :param server_id: this server's name in the UI (default: the host name).
    :param namespace_name: the admin namespace.
    :param store: where the UI's session ids are kept (default: an :class:`InMemoryStore`).
    :returns: the :class:`Instrumentation`.
    :raises ValueError: for an ``auth`` or ``mode`` that is not one of the above.
    :raises ImportError: for basic authentication without the ``bcrypt`` package.
    """
    return Instrumentation(io, auth=auth, mode=mode, read_only=read_only, server_id=server_id,
                           namespace_name=namespace_name, store=store)


class Instrumentation:
    """What :func:`instrument` set up on a server (see the module docstring for who calls
    what).

    :ivar namespace: the admin :class:`~txsio.Namespace`.
    :ivar features: the features the UI is told of (``config.supportedFeatures``).
    :ivar development: whether the per-socket events are sent.
    :ivar server_id: this server's name in the UI.
    """

    def __init__(self, io: Server, *, auth: Literal[False] | Mapping[str, str], mode: str,
                 read_only: bool, server_id: str | None, namespace_name: str,
                 store: Store | None) -> None:
        if mode not in ("development", "production"):
            raise ValueError(f'mode is "development" or "production", not {mode!r}')
        self._io = io
        self._clock = io.clock
        self._started = self._clock.seconds()
        self.development = mode == "development"
        self._hostname = _socket.gethostname()
        self.server_id = server_id or self._hostname
        self._store: Store = store if store is not None else InMemoryStore()
        self._password_hash = _basic_auth_hash(auth)
        self._username = auth["username"] if auth is not False else ""
        self.features: list[str] = [] if read_only else list(Feature.COMMANDS)
        self.features.append(Feature.AGGREGATED_EVENTS)
        if self.development:
            self.features.append(Feature.ALL_EVENTS)
        #: the session id given to a socket that authenticated with the password, sent to it
        #: once it is connected (a socket cannot receive events before)
        self._new_sessions: weakref.WeakKeyDictionary[Socket, str] = (
            weakref.WeakKeyDictionary())
        #: what the UI last saw of each socket's data, to tell it of changes
        self._data_seen: weakref.WeakKeyDictionary[Socket, Any] = weakref.WeakKeyDictionary()
        self._counts: dict[tuple[int, str, str | None], int] = {}
        self._timer: IDelayedCall | None = None
        self._watched: weakref.WeakSet[Namespace] = weakref.WeakSet()

        self.namespace = io.of(namespace_name)
        if self._password_hash is None:
            log.warn("the admin namespace {nsp} has no authentication: anyone who reaches "
                     "the server administers it", nsp=self.namespace.name)
        else:
            self.namespace.use(self._authenticate)
        if self.development:
            for nsp in list(io.namespaces.values()):
                self._watch(nsp)
            io.on("new_namespace", self._watch)
        self.namespace.on("connection", self._admin_connected)
        io.engine.on("connection", self._engine_connection)

    # -- authentication --------------------------------------------------------------------

    async def _authenticate(self, socket: Socket) -> None:
        auth = socket.handshake.auth
        session_id = auth.get("sessionId")
        if isinstance(session_id, str) and session_id:
            known = self._store.does_session_exist(session_id)
            if await known if isinstance(known, Deferred) else known:
                return
        username, password = auth.get("username"), auth.get("password")
        if (isinstance(username, str) and isinstance(password, str)
                and secrets.compare_digest(_utf8(username), _utf8(self._username))
                and await self._check_password(password)):
            session_id = secrets.token_hex(8)
            self._store.save_session(session_id)
            self._new_sessions[socket] = session_id
            return
        log.warn("admin UI: invalid credentials from {address}",
                 address=socket.handshake.address)
        raise ConnectionRefusedError("invalid credentials")

    def _check_password(self, password: str) -> Deferred[bool]:
        assert self._password_hash is not None
        import bcrypt

        secret = _utf8(password)[:_BCRYPT_MAX_PASSWORD]
        hashed = self._password_hash

        def check() -> bool:
            try:
                return bool(bcrypt.checkpw(secret, hashed))
            except ValueError:  # e.g. a NUL byte in the password
                return False

        clock = self._clock
        # bcrypt is slow on purpose (tens of ms): off the reactor thread when the server's
        # clock is a reactor with threads; inline on a test's Clock.
        if IReactorThreads.providedBy(clock):
            threads: Any = clock
            return deferToThreadPool(threads, threads.getThreadPool(), check)
        return succeed(check())

    # -- the admin sockets -----------------------------------------------------------------

    async def _admin_connected(self, socket: Socket) -> None:
        log.info("admin UI {sid} connected from {address}", sid=socket.id,
                 address=socket.handshake.address)
        session_id = self._new_sessions.pop(socket, None)
        if session_id is not None:
            socket.emit("session", session_id)
        self._register_commands(socket)
        socket.on("disconnect", lambda reason: self._admin_disconnected())
        socket.emit("config", {"supportedFeatures": list(self.features)})
        # Node sends the first statistics up to 2 s later; the UI shows them at once here.
        socket.emit("server_stats", self._stats(aggregated=[]))
        if self._timer is None:
            self._timer = self._clock.callLater(STATS_INTERVAL, self._tick)
        if self.development:
            sockets = await self._all_sockets()
            socket.emit("all_sockets", sockets)

    def _admin_disconnected(self) -> None:
        if not self.namespace.sockets and self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
            self._counts.clear()

    def _register_commands(self, socket: Socket) -> None:
        if Feature.EMIT not in self.features:
            for command in ("emit", "join", "leave", "_disconnect"):
                socket.on(command, _refuse(command, socket))
            return
        socket.on("emit", self._emit_command)
        socket.on("join", self._join_command)
        socket.on("leave", self._leave_command)
        socket.on("_disconnect", self._disconnect_command)

    def _target(self, nsp: object, room_filter: object) -> Any:
        """The broadcast operator of ``nsp`` (restricted to the room ``room_filter``), or
        ``None`` for a namespace that does not exist (an admin does not create one)."""
        namespace = self._io.namespaces.get(nsp) if isinstance(nsp, str) else None
        if namespace is None:
            log.warn("admin UI: a command for the unknown namespace {nsp!r}", nsp=nsp)
            return None
        if isinstance(room_filter, str) and room_filter:
            return namespace.in_(room_filter)
        return namespace

    def _emit_command(self, nsp: object, room_filter: object, event: object,
                      *args: Any) -> None:
        target = self._target(nsp, room_filter)
        if target is None:
            return
        if not isinstance(event, str) or event in RESERVED_EVENTS:
            log.warn("admin UI: cannot emit the event {event!r}", event=event)
            return
        target.emit(event, *args)

    def _join_command(self, nsp: object, room: object, room_filter: object = None) -> None:
        target = self._target(nsp, room_filter)
        if target is not None and isinstance(room, str):
            target.sockets_join(room)

    def _leave_command(self, nsp: object, room: object, room_filter: object = None) -> None:
        target = self._target(nsp, room_filter)
        if target is not None and isinstance(room, str):
            target.sockets_leave(room)

    def _disconnect_command(self, nsp: object, close: object,
                            room_filter: object = None) -> None:
        target = self._target(nsp, room_filter)
        if target is not None:
            target.disconnect_sockets(close is True)

    # -- statistics ------------------------------------------------------------------------

    def _tick(self) -> None:
        self._timer = self._clock.callLater(STATS_INTERVAL, self._tick)
        aggregated = [
            {"timestamp": second, "type": kind, **({} if sub is None else {"subType": sub}),
             "count": count}
            for (second, kind, sub), count in self._counts.items()]
        self._counts.clear()
        self.namespace.emit("server_stats", self._stats(aggregated))
        if self.development:
            self._send_data_changes()

    def _stats(self, aggregated: list[dict[str, Any]]) -> dict[str, Any]:
        sessions = self._io.engine.sessions
        return {
            "serverId": self.server_id,
            "hostname": self._hostname,
            "pid": os.getpid(),
            # Node reports the process's uptime; here, the time since instrument().
            "uptime": self._clock.seconds() - self._started,
            "clientsCount": len(sessions),
            "pollingClientsCount": sum(1 for s in sessions.values()
                                       if s.transport.name == "polling"),
            "aggregatedEvents": aggregated,
            "namespaces": [{"name": name, "socketsCount": len(nsp.sockets)}
                           for name, nsp in self._io.namespaces.items()],
        }

    def _count(self, kind: str, sub: str | None = None, count: int = 1) -> None:
        # Only while an admin watches: nobody else empties the table.
        if self._timer is None:
            return
        key = (int(self._clock.seconds()) * 1000, kind, sub)
        self._counts[key] = self._counts.get(key, 0) + count

    def _engine_connection(self, session: EngineSession) -> None:
        self._count("rawConnection")

        def received(data: str | bytes) -> None:
            if self._timer is not None:
                self._count("packetsIn")
                self._count("bytesIn", count=len(data.encode() if isinstance(data, str)
                                                 else data))

        session.on("message", received)
        session.on("close", lambda reason: self._count("rawDisconnection", str(reason)))

    # -- development mode: every socket, room and event ------------------------------------

    def _emit(self, event: str, *args: Any) -> None:
        self.namespace.emit(event, *args)

    def _now(self) -> str:
        return _iso(self._clock.seconds())

    def _watch(self, nsp: Namespace) -> None:
        if nsp in self._watched:
            return
        self._watched.add(nsp)
        name = nsp.name
        for socket in list(nsp.sockets.values()):  # connected before instrument()
            self._track(nsp, socket)
        nsp.on("connection", lambda socket: self._socket_connected(nsp, socket))
        nsp.adapter.on("join-room", lambda room, sid: self._emit(
            "room_joined", name, room, sid, self._now()))
        nsp.adapter.on("leave-room", lambda room, sid: self._emit(
            "room_left", name, room, sid, self._now()))

    def _socket_connected(self, nsp: Namespace, socket: Socket) -> None:
        self._track(nsp, socket)
        self._emit("socket_connected", self._serialize(socket, nsp.name), self._now())

    def _track(self, nsp: Namespace, socket: Socket) -> None:
        """Watch one socket: its upgrade, events, data and disconnection."""
        session = socket.conn.session
        # In socket.data, as Node's, so that the other nodes of a cluster see them too.
        admin = {"clientId": socket.conn.id[:12], "transport": session.transport.name}
        socket.data["_admin"] = admin
        self._data_seen[socket] = _plain_data(socket.data)

        def upgraded(transport: str) -> None:
            if socket.connected:
                admin["transport"] = transport
                self._emit("socket_updated", {"id": socket.id, "nsp": nsp.name,
                                              "transport": transport})

        def disconnected(reason: str) -> None:
            session.off("upgrade", upgraded)
            self._emit("socket_disconnected", nsp.name, socket.id, str(reason),
                       self._now())

        session.on("upgrade", upgraded)
        if nsp is not self.namespace:
            socket.on_any(lambda event, *args: self._emit(
                "event_received", nsp.name, socket.id, [event, *args], self._now()))
            socket.on_any_outgoing(lambda event, *args: self._emit(
                "event_sent", nsp.name, socket.id, [event, *args], self._now()))
        socket.on("disconnect", disconnected)

    def _send_data_changes(self) -> None:
        # Node wraps socket.data in a Proxy that reports each change; a dict cannot be
        # watched without changing its type, so each tick compares what the UI last saw.
        for socket, seen in list(self._data_seen.items()):
            if not socket.connected:
                del self._data_seen[socket]
                continue
            data = _plain_data(socket.data)
            if data != seen:
                self._data_seen[socket] = data
                self._emit("socket_updated", {"id": socket.id, "nsp": socket.nsp.name,
                                              "data": data})

    async def _all_sockets(self) -> list[dict[str, Any]]:
        namespaces = list(self._io.namespaces.values())
        found = await DeferredList([nsp.fetch_sockets() for nsp in namespaces],
                                   consumeErrors=True)
        result: list[dict[str, Any]] = []
        for nsp, (ok, outcome) in zip(namespaces, found, strict=True):
            if ok:
                sockets: list[Any] = outcome
            else:
                # A cluster that does not answer: this node's sockets at least.
                failure: Any = outcome  # DeferredList's type knows only the results
                log.failure("admin UI: fetching the sockets of {nsp} failed", failure,
                            nsp=nsp.name)
                sockets = list(nsp.sockets.values())
            result.extend(self._serialize(s, nsp.name) for s in sockets)
        return result

    def _serialize(self, socket: Any, nsp: str) -> dict[str, Any]:
        """A socket (local, or a cluster's remote one) as the UI shows it."""
        data = socket.data if isinstance(socket.data, dict) else {}
        admin = data.get("_admin")
        admin = admin if isinstance(admin, dict) else {}
        conn = getattr(socket, "conn", None)
        client_id = conn.id[:12] if conn is not None else admin.get("clientId")
        transport = (conn.session.transport.name if conn is not None
                     else admin.get("transport"))
        return {
            "id": socket.id,
            "clientId": client_id,
            "transport": transport,
            "nsp": nsp,
            "data": _plain_data(data),
            "handshake": _handshake(socket.handshake),
            "rooms": sorted(socket.rooms),
        }


def _refuse(command: str, socket: Socket) -> Callable[..., None]:
    def refuse(*args: Any) -> None:
        log.warn("admin UI {sid}: the command {command!r} is refused (read_only)",
                 sid=socket.id, command=command)

    return refuse


def _basic_auth_hash(auth: object) -> bytes | None:
    """The bcrypt hash of ``auth`` (``None`` for ``False``); bcrypt is imported here so that
    a missing package is said at :func:`instrument`, not at the first login."""
    if auth is False:
        return None
    if not isinstance(auth, Mapping) or auth.get("type") != "basic":
        raise ValueError('auth is False or {"type": "basic", "username": ..., '
                         f'"password": <bcrypt hash>}}, not {auth!r:.80}')
    username, password = auth.get("username"), auth.get("password")
    if not isinstance(username, str) or not isinstance(password, str):
        raise ValueError("auth: the username and the password (a bcrypt hash) are strings")
    if not _BCRYPT_HASH.fullmatch(password):
        raise ValueError("auth: the password field must be a bcrypt hash ($2b$10$...), "
                         "e.g. from python3 -c 'import bcrypt; "
                         "print(bcrypt.hashpw(b\"secret\", bcrypt.gensalt()).decode())'")
    try:
        import bcrypt  # noqa: F401
    except ImportError as e:
        raise ImportError("the admin UI's basic authentication needs the bcrypt package: "
                          "pip install bcrypt") from e
    return password.encode("ascii")


def _utf8(text: str) -> bytes:
    # A peer's JSON may carry a lone surrogate, which strict UTF-8 cannot encode.
    return text.encode("utf-8", "surrogatepass")


def _iso(seconds: float) -> str:
    """A time as JavaScript's ``Date`` becomes JSON: ``2024-05-01T12:00:00.000Z``."""
    moment = datetime.fromtimestamp(seconds, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _handshake(handshake: Handshake) -> dict[str, Any]:
    headers = handshake.headers
    # As Node's admin UI: the address a proxy reported, if any (it is only shown).
    address = (headers.get("cf-connecting-ip") or headers.get("x-forwarded-for")
               or handshake.address)
    return {
        "address": address,
        "headers": dict(headers),
        "query": dict(handshake.query),
        "issued": handshake.issued,
        "secure": handshake.secure,
        "time": handshake.time,
        "url": handshake.url,
        "xdomain": handshake.xdomain,
    }


def _plain_data(data: Mapping[Any, Any]) -> dict[str, Any]:
    """``socket.data`` without the admin's own key, as values JSON can carry."""
    return {str(k): _plain(v, 1) for k, v in data.items() if k != "_admin"}


def _plain(value: Any, depth: int) -> Any:
    # The UI only shows socket.data: what JSON cannot carry is shown as its repr.
    if value is None or isinstance(value, (str, bool, int, float, bytes)):
        return value
    if depth >= _MAX_DEPTH:
        return "…"
    if isinstance(value, Mapping):
        return {str(k): _plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v, depth + 1) for v in _ordered(value)]
    return repr(value)[:200]


def _ordered(values: Iterable[Any]) -> Iterable[Any]:
    if isinstance(values, (set, frozenset)):
        try:
            return sorted(values)
        except TypeError:
            return list(values)
    return values
