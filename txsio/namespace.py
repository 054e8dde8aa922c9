"""``Namespace``: a communication channel multiplexed over each client connection.

A namespace has its own connection handlers, middlewares, sockets, rooms (through its
adapter) and broadcast operators.  :class:`ParentNamespace` is a *dynamic* namespace: a regex
or a callable that matches names, creating a child namespace the first time a client connects
to a matching name; its handlers and middlewares apply to every child, and a broadcast on it
reaches every child.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, overload

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ._handlers import EventMethods, Listeners, call_handler, run_middlewares
from ._stats import NamespaceStats, namespace_label
from .adapter import Adapter, BroadcastOptions, PersistedSession
from .broadcast import Broadcasting, BroadcastOperator
from .exceptions import ConnectionRefusedError
from .protocol import RESERVED_EVENTS
from .socket import Socket

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from .parser import Parser
    from .protocol import Packet
    from .server import Connection, Server

__all__ = ["Namespace", "ParentNamespace"]

log = Logger()

_F = TypeVar("_F", bound=Callable[..., Any])

Middleware = Callable[[Socket], Any]


class Namespace(Broadcasting, EventMethods):
    """One namespace of a :class:`~txsio.Server` (``io.of("/chat")``).

    Events: ``"connection"`` (alias ``"connect"``) with the new :class:`~txsio.socket.Socket`;
    any other event: a server-side event from another node of the cluster (for the main
    namespace, ``io.on(event)`` registers here too).

    :ivar name: the namespace name, like ``"/chat"``.
    :ivar sockets: the connected sockets by id.
    :ivar adapter: the :class:`~txsio.adapter.Adapter`.
    :ivar stats: the counters of its metrics (a dynamic namespace's children share theirs).
    """

    def __init__(self, server: Server, name: str, *,
                 stats: NamespaceStats | None = None) -> None:
        #: the user's handlers: connection, and other nodes' server-side events
        self.listeners = Listeners(self)
        self.server = server
        self.name = name
        self.stats = stats if stats is not None else server.stats.namespace(name)
        self.sockets: dict[str, Socket] = {}
        self._middlewares: list[Middleware] = []
        #: the dynamic namespace that created this one, whose middlewares and handlers apply
        self._parent: ParentNamespace | None = None
        self._ids = 0
        self.adapter: Adapter = self._make_adapter()
        self.adapter.init()

    def __repr__(self) -> str:
        return f"<Namespace {self.name}>"

    def _make_adapter(self) -> Adapter:
        return self.server._make_adapter(self)

    @overload
    def on(self, event: str) -> Callable[[_F], _F]: ...

    @overload
    def on(self, event: str, handler: _F) -> _F: ...

    def on(self, event: str, handler: _F | None = None) -> _F | Callable[[_F], _F]:
        """Register a handler: ``"connection"`` / ``"connect"`` get each new socket."""
        if event == "connect":
            event = "connection"
        return super().on(event) if handler is None else super().on(event, handler)

    def use(self, middleware: Middleware) -> Middleware:
        """Run ``middleware(socket)`` for each connecting socket, before ``connection``.

        It may return a Deferred or be a coroutine function.  Raising
        :class:`~txsio.ConnectionRefusedError` (or any exception) refuses the connection: the
        client gets CONNECT_ERROR with the message (and data).

        :returns: ``middleware`` (so it works as a decorator).
        """
        self._middlewares.append(middleware)
        return middleware

    @property
    def clock(self) -> IReactorTime:
        """The server's clock (for adapters)."""
        return self.server.clock

    @property
    def parser(self) -> Parser:
        """The server's parser, which encodes the packets of broadcasts (for adapters)."""
        return self.server.parser

    def next_ack_id(self) -> int:
        """A new acknowledgement id, unique in this namespace (for adapters)."""
        ack_id = self._ids
        self._ids += 1
        return ack_id

    # -- broadcasting ----------------------------------------------------------------------

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self)

    def server_side_emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` to the other nodes of the cluster (nothing with one node)."""
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        self.adapter.server_side_emit([event, *args])

    def server_side_emit_with_ack(self, event: str, *args: Any) -> Deferred[list[Any]]:
        """Emit ``event`` to the other nodes and collect one answer per node (the return
        value of their handler); see
        :meth:`~txsio.broadcast.BroadcastOperator.server_side_emit_with_ack`."""
        return self._operator().server_side_emit_with_ack(event, *args)

    def on_server_side_emit(self, args: list[Any],
                            ack: Callable[[Any], None] | None = None) -> None:
        """Called by a cluster adapter with another node's server-side event ``[event,
        *args]``: runs the namespace's handlers of that event (for ``/``, also those
        registered with ``io.on(event)``).  With ``ack``, the first handler's return value
        (plain, Deferred or coroutine result; the first item of a tuple) is the answer;
        ``None`` when no handler is registered."""
        event, params = args[0], args[1:]
        if (not isinstance(event, str) or event in RESERVED_EVENTS
                or event in ("connection", "new_namespace")):
            log.warn("ignoring the server-side event {event!r} of another node", event=event)
            return
        if not self.listeners.has_listeners(event):
            if ack is not None:
                ack(None)
            return
        self.listeners.dispatch(event, params,
                                None if ack is None else lambda value: ack(_first(value)))

    # -- connecting ------------------------------------------------------------------------

    def _add(self, conn: Connection, auth: dict[str, Any]) -> Deferred[Socket | None]:
        """Run the connection flow of a new socket; fire with it, or ``None`` if refused."""
        return Deferred.fromCoroutine(self._connect(conn, auth))

    def _connects_at_once(self, auth: dict[str, Any]) -> bool:
        """Whether a socket connecting with ``auth`` waits for nothing: no session to
        restore, no middleware to run (:meth:`_connect_now` connects it then)."""
        if self._middlewares:
            return False
        parent = self._parent
        if parent is not None and parent._middlewares:
            return False
        return not (self.server.connection_state_recovery
                    and isinstance(auth.get("pid"), str) and isinstance(auth.get("offset"), str))

    def _connect_now(self, conn: Connection, auth: dict[str, Any]) -> Socket | None:
        """The connection flow of a socket that waits for nothing (see
        :meth:`_connects_at_once`): what :meth:`_add` does, without a coroutine."""
        return self._admit(conn, Socket(self, conn, _auth_without_recovery(auth)), None)

    async def _connect(self, conn: Connection, auth: dict[str, Any]) -> Socket | None:
        previous: PersistedSession | None = None
        recovery = self.server.connection_state_recovery
        pid, offset = auth.get("pid"), auth.get("offset")
        if recovery and isinstance(pid, str) and isinstance(offset, str):
            try:
                previous = await self.adapter.restore_session(pid, offset)
            except Exception:
                # As Node: a failed restore gives a fresh socket, not a silent client.
                log.failure("restoring session {pid} failed", pid=pid)
        socket = Socket(self, conn, _auth_without_recovery(auth), previous)
        skip = previous is not None and recovery is not None and recovery.skip_middlewares
        if not skip:
            parent = self._parent
            inherited = parent._middlewares if parent is not None else []
            try:
                await run_middlewares([*inherited, *self._middlewares], socket)
            except ConnectionRefusedError as e:
                self.stats.connect_errors += 1
                self.adapter.delete_all(socket.id)  # rooms a middleware joined
                conn.connect_error(self.name, e.message, e.data)
                return None
            except Exception as e:
                log.failure("middleware of namespace {nsp} failed", nsp=self.name)
                self.stats.connect_errors += 1
                self.adapter.delete_all(socket.id)
                conn.connect_error(self.name, str(e) or type(e).__name__, None)
                return None
        return self._admit(conn, socket, previous)

    def _admit(self, conn: Connection, socket: Socket, previous: PersistedSession | None
               ) -> Socket | None:
        # The socket passed its middlewares: it joins, unless its connection went meanwhile.
        if not conn.is_open:
            self.adapter.delete_all(socket.id)
            return None
        self.sockets[socket.id] = socket
        self.stats.connects += 1
        conn._add(socket)
        socket._connected()
        if previous is not None:
            socket.join(previous.rooms)
            for data in previous.missed_packets:
                socket._write_packet(_event(self.name, data))
        if self._parent is not None:
            self._parent.listeners.emit_local("connection", socket)
        self.listeners.emit_local("connection", socket)
        return socket

    def _remove(self, socket: Socket) -> None:
        if self.sockets.get(socket.id) is socket:
            del self.sockets[socket.id]
            if not self.sockets:
                self.server._namespace_emptied(self)


def _first(value: Any) -> Any:
    # A server-side acknowledgement carries one value (Node keeps the first argument).
    if isinstance(value, tuple):
        return value[0] if value else None
    return value


def _auth_without_recovery(auth: dict[str, Any]) -> dict[str, Any]:
    if "pid" in auth or "offset" in auth:
        return {k: v for k, v in auth.items() if k not in ("pid", "offset")}
    return auth


def _event(nsp: str, data: list[Any]) -> Packet:
    from .protocol import Packet, PacketType

    return Packet(PacketType.EVENT, nsp, data)


NamespaceMatcher = Callable[[str, dict[str, Any]], Any]


class ParentNamespace(Namespace):
    """A dynamic namespace: children are created for the names that ``matcher`` accepts.

    :param matcher: a compiled regex (searched in the name, unanchored as JavaScript's
        ``RegExp.test``: write ``^`` and ``$`` for a whole name) or a callable
        ``f(name, auth) -> bool`` (or a Deferred of one).
    """

    _count = 0

    def __init__(self, server: Server, matcher: re.Pattern[str] | NamespaceMatcher) -> None:
        ParentNamespace._count += 1
        # Children's names come from clients: one metrics label for them all (the matcher's).
        super().__init__(server, f"/_{ParentNamespace._count}",
                         stats=server.stats.namespace(namespace_label(matcher)))
        self.matcher = matcher
        self.children: set[Namespace] = set()

    def _make_adapter(self) -> Adapter:
        # Not the server's adapter: a parent has no rooms of its own and is no cluster
        # member (a Redis adapter would subscribe channels for its internal name).
        return _ParentAdapter(self)

    def matches(self, name: str, auth: dict[str, Any]) -> Deferred[bool]:
        """Whether ``name`` belongs to this parent."""
        if isinstance(self.matcher, re.Pattern):
            # Unanchored, as Node tests its RegExp (RegExp.test): sub\d accepts "/a-sub1-b".
            return succeed(self.matcher.search(name) is not None)
        try:
            result = call_handler(self.matcher, name, auth)
        except Exception:
            log.failure("the matcher of a dynamic namespace raised for {name!r}", name=name)
            return succeed(False)
        if isinstance(result, Deferred):
            return result.addCallback(bool)
        return succeed(bool(result))

    def create_child(self, name: str) -> Namespace:
        """Create the child namespace ``name``, sharing this parent's handlers."""
        child = Namespace(self.server, name, stats=self.stats)
        # The parent's middlewares and handlers run first, later use() / on() calls included;
        # the child's own (io.of("/name").use(...)) apply to it alone.
        child._parent = self
        self.children.add(child)
        self.server._nsps[name] = child
        self.server._namespace_created(child)
        return child


class _ParentAdapter(Adapter):
    """Broadcasts of a parent namespace reach every child."""

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        assert isinstance(self.nsp, ParentNamespace)
        from dataclasses import replace

        for child in tuple(self.nsp.children):
            child.adapter.broadcast(replace(packet, nsp=child.name), opts)

    def fetch_sockets(self, opts: BroadcastOptions) -> Deferred[list[Any]]:
        assert isinstance(self.nsp, ParentNamespace)
        found: list[Any] = []
        for child in tuple(self.nsp.children):
            child.adapter._apply(opts, found.append)
        return succeed(found)

