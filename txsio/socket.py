"""``Socket``: one client's connection to one namespace — events, acknowledgements, rooms.

Called by the connection (:class:`~txsio.server.Connection`): ``_on_packet``, ``_on_close``,
``_connected``.  Called by the adapter, as a :class:`~txsio.adapter.Recipient`:
``write_encoded``, ``expect_ack``, ``forget_ack``.  The rest is the public API, mirroring
Node's ``Socket``.

Acknowledgements
----------------
A handler's return value is the acknowledgement sent back when the client asked for one: a
plain value, a Deferred or a coroutine (their result), a tuple for several arguments, ``None``
for none.  The dispatch, the ack table and the emit flags are the peer-socket core's
(:mod:`txsio._handlers`), shared with the client's socket.
``emit_with_ack`` returns a Deferred; ``timeout(s)`` in front makes it fail with
:class:`~txsio.AckTimeoutError` after ``s`` seconds.  Acknowledgements still pending when the
socket disconnects fail with :class:`~txsio.DisconnectedError`, so no Deferred is left hanging.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger

from ._handlers import (
    NO_FLAGS,
    EmitFlags,
    FlaggedEmitter,
    HandlerMethods,
    Listeners,
    PendingAcks,
    ack_args,
    event_name,
    run_middlewares,
)
from .adapter import BroadcastFlags, BroadcastOptions, EncodedPacket, PersistedSession, room_names
from .broadcast import BroadcastOperator, Selecting
from .exceptions import DisconnectedError
from .protocol import RESERVED_EVENTS, Packet, PacketType, SocketIOParseError, trusted_packet

if TYPE_CHECKING:
    from .namespace import Namespace
    from .server import Connection

__all__ = ["Handshake", "Socket"]

log = Logger()

# Enum members as module globals for the per-message paths (a member read through its class,
# ``PacketType.EVENT``, costs several times a global's).
_EVENT, _BINARY_EVENT = PacketType.EVENT, PacketType.BINARY_EVENT
_ACK, _BINARY_ACK = PacketType.ACK, PacketType.BINARY_ACK

#: Disconnection reasons after which connection state recovery keeps the socket's state.
RECOVERABLE_REASONS = frozenset({
    "transport error", "transport close", "forced close", "ping timeout",
    "server shutting down", "forced server close",
})


@dataclass(frozen=True, slots=True)
class Handshake:
    """What the client sent when it connected, as Node's ``socket.handshake``.

    :ivar headers: the HTTP headers of the first request (names lower-cased).
    :ivar time: when the connection was made, as JavaScript's ``Date.toString()`` writes
        it (Node's form: ``Thu Jan 01 1970 00:00:00 GMT+0000 (Coordinated Universal Time)``).
    :ivar address: the client's IP address.
    :ivar xdomain: whether the request was cross-origin.
    :ivar secure: whether it came over TLS.
    :ivar issued: when the connection was made, in milliseconds since the epoch.
    :ivar url: the request URL (path and query).
    :ivar query: the query parameters.
    :ivar auth: the auth payload of the client's CONNECT packet.
    """

    headers: dict[str, str]
    time: str
    address: str
    xdomain: bool
    secure: bool
    issued: int
    url: str
    query: dict[str, str]
    auth: dict[str, Any] = field(default_factory=dict)


class Socket(Selecting, HandlerMethods):
    """A client connected to a namespace.

    :ivar id: the socket id (not the Engine.IO session id).
    :ivar nsp: the :class:`~txsio.namespace.Namespace`.
    :ivar handshake: the :class:`Handshake`.
    :ivar data: a free-form dict for the application (kept across recovery, visible to
        ``fetch_sockets``).
    :ivar connected: whether the socket is connected.
    :ivar recovered: whether connection state recovery restored this socket.

    Handlers (``socket.on(event, f)`` or ``@socket.on(event)``) get the event's arguments;
    the first handler's return value (plain, Deferred or coroutine result; a tuple for several
    arguments) is the acknowledgement when the client asked for one.  ``"disconnecting"`` and
    ``"disconnect"`` handlers get the reason, and its description (Node's) when they take a
    second argument: a :class:`~txsio.engineio.client.TransportError` for
    ``"transport error"``, else ``None``.
    """

    def __init__(self, nsp: Namespace, conn: Connection, auth: dict[str, Any],
                 previous: PersistedSession | None = None) -> None:
        #: the user's handlers of this socket's events
        self.listeners = Listeners(self)
        self.nsp = nsp
        self.server = nsp.server
        self.conn = conn
        self.adapter = nsp.adapter
        self.recovered = previous is not None
        if previous is not None:
            self.id = previous.sid
            self.pid: str | None = previous.pid
            self.data: dict[str, Any] = previous.data if isinstance(previous.data, dict) else {}
        else:
            self.id = conn.socket_id(nsp.name)
            self.pid = conn.new_pid() if self.server.connection_state_recovery else None
            self.data = {}
        self.handshake = conn.handshake(auth)
        self.connected = False
        self._middlewares: list[Callable[[list[Any]], Any]] = []
        #: the acks this socket waits for: its own emits' and broadcasts' (adapters)
        self._acks = PendingAcks(self.server.clock, nsp.stats)

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.nsp.name}>"

    # -- handlers --------------------------------------------------------------------------

    def use(self, middleware: Callable[[list[Any]], Any]) -> None:
        """Run ``middleware([event, *args])`` before each incoming event's handlers.

        It may return a Deferred; raising (or failing) drops the event and emits ``"error"``
        on this socket with the exception.
        """
        self._middlewares.append(middleware)

    # -- emitting --------------------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` with ``args`` to this client.

        :param event: the event name (not a reserved one).
        :param args: JSON-able values; ``bytes`` anywhere travel as binary attachments.
        :raises ValueError: for a reserved event name.
        """
        self._emit(event, args, NO_FLAGS)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        self._emit("message", args, NO_FLAGS)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit ``event`` and return a Deferred of the client's acknowledgement.

        The Deferred fires with the single argument the client acknowledged with, a tuple for
        several, ``None`` for none.  Use :meth:`timeout` in front to bound the wait.
        """
        return self._emit_with_ack(event, args, NO_FLAGS)

    def timeout(self, seconds: float) -> FlaggedEmitter:
        """``socket.timeout(5).emit_with_ack(...)`` fails with
        :class:`~txsio.AckTimeoutError` after 5 seconds."""
        return FlaggedEmitter(self._emit, self._emit_with_ack, EmitFlags(timeout=float(seconds)))

    @property
    def volatile(self) -> FlaggedEmitter:
        """``socket.volatile.emit(...)``: dropped if the client is not ready to receive it."""
        return FlaggedEmitter(self._emit, self._emit_with_ack, EmitFlags(volatile=True))

    def compress(self, compress: bool) -> FlaggedEmitter:
        """``socket.compress(False).emit(...)``: sent without compression (see
        :doc:`/server`, "Compression")."""
        return FlaggedEmitter(self._emit, self._emit_with_ack, EmitFlags(compress=bool(compress)))

    def _emit(self, event: str, args: tuple[Any, ...], flags: EmitFlags) -> None:
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        packet = Packet(PacketType.EVENT, self.nsp.name, [event, *args])
        if self.server.connection_state_recovery and not flags.volatile:
            # Through the adapter, so that the packet is logged with an offset (the adapter
            # tells the outgoing catch-alls).
            self.adapter.broadcast(packet, BroadcastOptions(
                frozenset((self.id,)), flags=BroadcastFlags(compress=flags.compress)))
            return
        self.notify_outgoing(packet.data)
        self._write_packet(packet, flags.volatile, flags.compress)

    def _emit_with_ack(self, event: str, args: tuple[Any, ...],
                       flags: EmitFlags) -> Deferred[Any]:
        if event in RESERVED_EVENTS:
            return fail(ValueError(f'"{event}" is a reserved event name'))
        if not self.connected:
            return fail(DisconnectedError("not connected"))
        ack_id = self.nsp.next_ack_id()
        d = self._acks.deferred(ack_id, flags.timeout)
        packet = Packet(PacketType.EVENT, self.nsp.name, [event, *args], ack_id)
        self.notify_outgoing(packet.data)
        self._write_packet(packet, flags.volatile, flags.compress)
        return d

    def _write_packet(self, packet: Packet, volatile: bool = False, compress: bool = True) -> None:
        if self.connected:
            self.conn.write_packet(packet, volatile, compress)

    def write_encoded(self, encoded: EncodedPacket, volatile: bool) -> None:
        """Write a packet an adapter encoded once for many recipients, after telling the
        catch-alls of outgoing events about its event (for adapters: the one call per
        recipient of a broadcast)."""
        listeners = self.listeners
        if listeners.outgoing and encoded.data is not None:
            data = encoded.data
            listeners.notify_outgoing(data[0], data[1:])
        if self.connected:
            self.conn.write_encoded(encoded, volatile)

    def notify_outgoing(self, data: list[Any]) -> None:
        """Tell the catch-alls of outgoing events about the event ``data`` (``[event,
        *args]``) sent to this client."""
        if self.listeners.outgoing:
            self.listeners.notify_outgoing(data[0], data[1:])

    def expect_ack(self, ack_id: int, callback: Callable[[list[Any]], None]) -> None:
        """Call ``callback`` with the client's ack of ``ack_id`` (for adapters)."""
        self._acks.expect(ack_id, callback)

    def forget_ack(self, ack_id: int, callback: Callable[[list[Any]], None]) -> None:
        """Stop expecting the ack of ``ack_id`` if ``callback`` still waits (for adapters)."""
        self._acks.forget(ack_id, callback)

    @property
    def disconnected(self) -> bool:
        """Whether the socket is not connected (Node's ``socket.disconnected``)."""
        return not self.connected

    # -- rooms -----------------------------------------------------------------------------

    @property
    def rooms(self) -> set[str]:
        """The rooms this socket is in (a copy; it is always in the room of its own id)."""
        return set(self.adapter.socket_rooms(self.id) or ())

    def join(self, room: str | Iterable[str]) -> None:
        """Join ``room`` (a name or several).

        :raises TypeError: when ``room`` is not a string or an iterable of strings.
        """
        self.adapter.add_all(self.id, room_names(room))

    def leave(self, room: str) -> None:
        """Leave ``room``.

        :raises TypeError: when ``room`` is not a string.
        """
        if not isinstance(room, str):
            raise TypeError(f"a room name is a string, not {type(room).__name__} "
                            f"({room!r:.40})")
        self.adapter.delete(self.id, room)

    # -- broadcasting from this socket -----------------------------------------------------

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self.nsp, frozenset(), frozenset((self.id,)))

    @property
    def broadcast(self) -> BroadcastOperator:
        """Every other socket of the namespace."""
        return self._operator()

    # -- disconnecting ---------------------------------------------------------------------

    def disconnect(self, close: bool = False) -> Socket:
        """Disconnect from the namespace (reason ``"server namespace disconnect"``).

        :param close: close the whole underlying connection instead (every namespace).
        :returns: this socket.
        """
        if not self.connected:
            return self
        if close:
            self.conn.disconnect_all()
        else:
            self._write_packet(Packet(PacketType.DISCONNECT, self.nsp.name))
            self._on_close("server namespace disconnect")
        return self

    # -- called by the connection ----------------------------------------------------------

    def _connected(self) -> None:
        self.connected = True
        self.join(self.id)
        data: dict[str, Any] = {"sid": self.id}
        if self.pid is not None:
            data["pid"] = self.pid
        self.conn.write_packet(Packet(PacketType.CONNECT, self.nsp.name, data))

    def _on_packet(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype is _EVENT or ptype is _BINARY_EVENT:
            self._on_event(packet.data, packet.id)
        elif ptype is _ACK or ptype is _BINARY_ACK:
            if packet.id is None or not self._acks.resolve(packet.id, packet.data):
                log.debug("socket {sid}: ack for unknown id {id}", sid=self.id, id=packet.id)
        elif ptype is PacketType.DISCONNECT:
            self._on_close("client namespace disconnect")
        else:
            log.warn("socket {sid}: unexpected {ptype} packet", sid=self.id, ptype=ptype.name)

    def _on_event(self, args: list[Any], ack_id: int | None) -> None:
        raw = args[0]
        if isinstance(raw, str) and raw in RESERVED_EVENTS:
            # A client may not trigger lifecycle handlers: Node's parser refuses these as an
            # invalid payload, which closes the connection.
            self.conn.invalid_packet(SocketIOParseError(
                f"invalid payload: the reserved event name {raw!r}"))
            return
        event = raw if raw.__class__ is str else event_name(raw)
        params = args[1:]
        # As Node: the catch-alls see the event before the middlewares may refuse it.
        self.listeners.notify_any(event, params)
        if self._middlewares:
            d = Deferred.fromCoroutine(self._run_middlewares(args))
            d.addCallback(lambda ok: self._dispatch(event, params, ack_id) if ok else None)
            d.addErrback(lambda f: log.failure(
                "error in the handler of event {event!r} of {socket}", f,
                event=event, socket=self))
            return
        self.listeners.call_handlers(   # _dispatch, one call less on every event
            event, params, None if ack_id is None else lambda r: self._send_ack(r, ack_id))

    async def _run_middlewares(self, args: list[Any]) -> bool:
        # Whether the event goes on to its handlers.
        try:
            await run_middlewares(self._middlewares, args)
        except Exception as e:
            self.listeners.emit_local("error", e)
            return False
        return self.connected

    def _dispatch(self, event: str, params: list[Any], ack_id: int | None) -> None:
        self.listeners.call_handlers(
            event, params, None if ack_id is None else lambda r: self._send_ack(r, ack_id))

    def _send_ack(self, result: Any, ack_id: int) -> None:
        if self.connected:
            # The namespace and the id came from the decoded event, ack_args gives a list.
            self.conn.write_packet(trusted_packet(_ACK, self.nsp.name,
                                                  ack_args(result), ack_id))

    def _on_close(self, reason: str, description: object = None) -> None:
        if not self.connected:
            return
        self.listeners.emit_described("disconnecting", reason, description)
        if self.pid is not None and reason in RECOVERABLE_REASONS:
            self.adapter.persist_session(PersistedSession(
                sid=self.id, pid=self.pid, rooms=sorted(self.rooms), data=self.data))
        self.adapter.delete_all(self.id)
        self.nsp._remove(self)
        self.conn._remove(self)
        self.connected = False
        self.nsp.stats.disconnected(reason)
        self._acks.fail_all(DisconnectedError(reason))
        self.listeners.emit_described("disconnect", reason, description)

