"""``Socket``: one client's connection to one namespace — events, acknowledgements, rooms.

Called by the connection (:class:`~txsio.server.Connection`): ``_on_packet``, ``_on_close``,
``_connected``.  Called by the adapter, as a :class:`~txsio.adapter.Recipient`:
``write_encoded``, ``expect_ack``, ``forget_ack``.  The rest is the public API, mirroring
Node's ``Socket``.

Acknowledgements
----------------
A handler's return value is the acknowledgement sent back when the client asked for one: a
plain value, a Deferred or a coroutine (their result), a tuple for several arguments, ``None``
for none.  One helper (:func:`call_handler`) normalises the three kinds of result.
``emit_with_ack`` returns a Deferred; ``timeout(s)`` in front makes it fail with
:class:`~txsio.AckTimeoutError` after ``s`` seconds.  Acknowledgements still pending when the
socket disconnects fail with :class:`~txsio.DisconnectedError`, so no Deferred is left hanging.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from twisted.internet.defer import Deferred, fail
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._events import CatchAllEmitter, EventEmitter
from .adapter import BroadcastOptions, EncodedPacket, PersistedSession
from .broadcast import BroadcastOperator, Selecting, ack_args, ack_value
from .exceptions import AckTimeoutError, DisconnectedError
from .protocol import RESERVED_EVENTS, Packet, PacketType

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from .namespace import Namespace
    from .server import Connection

__all__ = ["Handshake", "Socket", "call_handler", "fit_arguments"]

log = Logger()

_F = TypeVar("_F", bound=Callable[..., Any])

#: Disconnection reasons after which connection state recovery keeps the socket's state.
RECOVERABLE_REASONS = frozenset({
    "transport error", "transport close", "forced close", "ping timeout",
    "server shutting down", "forced server close",
})


@dataclass(frozen=True)
class Handshake:
    """What the client sent when it connected, as Node's ``socket.handshake``.

    :ivar headers: the HTTP headers of the first request (names lower-cased).
    :ivar time: when the connection was made, as text.
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


def call_handler(handler: Callable[..., Any], *args: Any) -> Any:
    """Call a user handler; its result, or a Deferred of it for Deferreds and coroutines.

    As a JavaScript listener would, a handler gets ``None`` for arguments the peer did not
    send, and extra arguments are dropped when it takes no ``*args`` (see
    :func:`fit_arguments`).  Exceptions propagate to the caller, which logs them.
    """
    try:
        result = handler(*args)
    except TypeError:
        fitted = fit_arguments(handler, args)
        if fitted is None:
            raise
        result = handler(*fitted)
    if inspect.iscoroutine(result):
        return Deferred.fromCoroutine(result)
    return result


def fit_arguments(handler: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """``args`` fitted to ``handler``'s positional parameters, or ``None`` if they fit already.

    Only called after a ``TypeError``: when ``args`` do not bind to the signature, the handler's
    body never ran, so calling it again with missing arguments as ``None`` (JavaScript's
    ``undefined``) and surplus ones dropped is safe.
    """
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args)
        return None  # the TypeError came from inside the handler
    except TypeError:
        pass
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
           for p in params):
        return None
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    fitted = args if variadic else args[:len(positional)]
    required = sum(1 for p in positional if p.default is inspect.Parameter.empty)
    if len(fitted) < required:
        fitted = fitted + (None,) * (required - len(fitted))
    try:
        signature.bind(*fitted)
    except TypeError:
        return None
    return fitted


def _log_handler_error(failure: Failure, event: str, nsp: str, sid: str) -> None:
    log.failure("error in the handler of event {event!r} (namespace {nsp}, socket {sid})",
                failure, event=event, nsp=nsp, sid=sid)


class _Emitter:
    """``socket.timeout(s)`` / ``socket.volatile``: the socket's emits with flags set."""

    __slots__ = ("_socket", "_timeout", "_volatile")

    def __init__(self, socket: Socket, timeout: float | None, volatile: bool) -> None:
        self._socket = socket
        self._timeout = timeout
        self._volatile = volatile

    def timeout(self, seconds: float) -> _Emitter:
        """Fail :meth:`emit_with_ack` with :class:`~txsio.AckTimeoutError` after ``seconds``."""
        return _Emitter(self._socket, float(seconds), self._volatile)

    @property
    def volatile(self) -> _Emitter:
        """Drop the packet if the client is not ready to receive it now."""
        return _Emitter(self._socket, self._timeout, True)

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` with ``args`` to this socket's client."""
        self._socket._emit(event, args, volatile=self._volatile)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        self.emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit ``event`` and return a Deferred of the client's acknowledgement."""
        return self._socket._emit_with_ack(event, args, self._timeout, self._volatile)


class Socket(Selecting, CatchAllEmitter):
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
    ``"disconnect"`` handlers get the reason.
    """

    def __init__(self, nsp: Namespace, conn: Connection, auth: dict[str, Any],
                 previous: PersistedSession | None = None) -> None:
        super().__init__()
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
        self._acks: dict[int, Callable[[list[Any]], None]] = {}
        self._ack_timers: dict[int, IDelayedCall] = {}
        self._ack_deferreds: dict[int, Deferred[Any]] = {}

    def __repr__(self) -> str:
        return f"<Socket {self.id} {self.nsp.name}>"

    # -- handlers --------------------------------------------------------------------------

    def use(self, middleware: Callable[[list[Any]], Any]) -> None:
        """Run ``middleware([event, *args])`` before each incoming event's handlers.

        It may return a Deferred; raising (or failing) drops the event and emits ``"error"``
        on this socket with the exception.
        """
        self._middlewares.append(middleware)

    def _emit_local(self, event: str, *args: Any) -> None:
        # Socket.emit sends to the client: local events go through EventEmitter's.
        EventEmitter.emit(self, event, *args)

    # -- emitting --------------------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` with ``args`` to this client.

        :param event: the event name (not a reserved one).
        :param args: JSON-able values; ``bytes`` anywhere travel as binary attachments.
        :raises ValueError: for a reserved event name.
        """
        self._emit(event, args, volatile=False)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        self._emit("message", args, volatile=False)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit ``event`` and return a Deferred of the client's acknowledgement.

        The Deferred fires with the single argument the client acknowledged with, a tuple for
        several, ``None`` for none.  Use :meth:`timeout` in front to bound the wait.
        """
        return self._emit_with_ack(event, args, None, False)

    def timeout(self, seconds: float) -> _Emitter:
        """``socket.timeout(5).emit_with_ack(...)`` fails with
        :class:`~txsio.AckTimeoutError` after 5 seconds."""
        return _Emitter(self, float(seconds), False)

    @property
    def volatile(self) -> _Emitter:
        """``socket.volatile.emit(...)``: dropped if the client is not ready to receive it."""
        return _Emitter(self, None, True)

    def _emit(self, event: str, args: tuple[Any, ...], *, volatile: bool) -> None:
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        packet = Packet(PacketType.EVENT, self.nsp.name, [event, *args])
        if self.server.connection_state_recovery and not volatile:
            # Through the adapter, so that the packet is logged with an offset.
            self.adapter.broadcast(packet, BroadcastOptions(frozenset((self.id,))))
            return
        self._write_packet(packet, volatile)

    def _emit_with_ack(self, event: str, args: tuple[Any, ...], timeout: float | None,
                       volatile: bool) -> Deferred[Any]:
        if event in RESERVED_EVENTS:
            return fail(ValueError(f'"{event}" is a reserved event name'))
        if not self.connected:
            return fail(DisconnectedError("not connected"))
        ack_id = self.nsp.next_ack_id()
        d: Deferred[Any] = Deferred(lambda _: self._forget_ack(ack_id))

        def on_ack(ack_args: list[Any]) -> None:
            self._forget_ack(ack_id)
            d.callback(ack_value(ack_args))

        self._acks[ack_id] = on_ack
        self._ack_deferreds[ack_id] = d
        if timeout is not None:
            def on_timeout() -> None:
                self._ack_timers.pop(ack_id, None)
                self._forget_ack(ack_id)
                d.errback(AckTimeoutError())

            self._ack_timers[ack_id] = self.server.clock.callLater(timeout, on_timeout)
        self._write_packet(Packet(PacketType.EVENT, self.nsp.name, [event, *args], ack_id),
                           volatile)
        return d

    def _forget_ack(self, ack_id: int) -> None:
        self._acks.pop(ack_id, None)
        self._ack_deferreds.pop(ack_id, None)
        timer = self._ack_timers.pop(ack_id, None)
        if timer is not None and timer.active():
            timer.cancel()

    def _write_packet(self, packet: Packet, volatile: bool = False) -> None:
        if self.connected:
            self.conn.write_packet(packet, volatile)

    def write_encoded(self, encoded: EncodedPacket, volatile: bool) -> None:
        """Write a packet an adapter encoded once for many recipients (for adapters)."""
        if self.connected:
            self.conn.write_encoded(encoded, volatile)

    def expect_ack(self, ack_id: int, callback: Callable[[list[Any]], None]) -> None:
        """Call ``callback`` with the client's ack of ``ack_id`` (for adapters)."""
        self._acks[ack_id] = callback

    def forget_ack(self, ack_id: int, callback: Callable[[list[Any]], None]) -> None:
        """Stop expecting the ack of ``ack_id`` if ``callback`` still waits (for adapters)."""
        if self._acks.get(ack_id) is callback:
            del self._acks[ack_id]

    # -- rooms -----------------------------------------------------------------------------

    @property
    def rooms(self) -> set[str]:
        """The rooms this socket is in (a copy; it is always in the room of its own id)."""
        return set(self.adapter.socket_rooms(self.id) or ())

    def join(self, room: str | Iterable[str]) -> None:
        """Join ``room`` (a name or several)."""
        self.adapter.add_all(self.id, (room,) if isinstance(room, str) else room)

    def leave(self, room: str) -> None:
        """Leave ``room``."""
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
        if ptype is PacketType.EVENT or ptype is PacketType.BINARY_EVENT:
            self._on_event(packet.data, packet.id)
        elif ptype is PacketType.ACK or ptype is PacketType.BINARY_ACK:
            callback = self._acks.pop(packet.id, None) if packet.id is not None else None
            if callback is None:
                log.debug("socket {sid}: ack for unknown id {id}", sid=self.id, id=packet.id)
                return
            callback(packet.data)
        elif ptype is PacketType.DISCONNECT:
            self._on_close("client namespace disconnect")
        else:
            log.warn("socket {sid}: unexpected {ptype} packet", sid=self.id, ptype=ptype.name)

    def _on_event(self, args: list[Any], ack_id: int | None) -> None:
        event = args[0]
        if not isinstance(event, str):
            # Node's parser accepts a number as the event name; its listeners are keyed by
            # the name's text.
            event = (str(int(event)) if isinstance(event, float) and event.is_integer()
                     else str(event))
        elif event in RESERVED_EVENTS:
            # A client may not trigger lifecycle handlers (Node's parser refuses these).
            log.warn("socket {sid}: the client emitted the reserved event {event!r}",
                     sid=self.id, event=event)
            return
        params = args[1:]
        if self._middlewares:
            d = self._run_middlewares(args)
            d.addCallback(lambda ok: self._dispatch(event, params, ack_id) if ok else None)
            d.addErrback(_log_handler_error, event, self.nsp.name, self.id)
            return
        self._dispatch(event, params, ack_id)

    def _run_middlewares(self, args: list[Any]) -> Deferred[bool]:
        async def run() -> bool:
            for middleware in self._middlewares:
                try:
                    result = call_handler(middleware, args)
                    if isinstance(result, Deferred):
                        await result
                except Exception as e:
                    self._emit_local("error", e)
                    return False
            return self.connected

        return Deferred.fromCoroutine(run())

    def _dispatch(self, event: str, params: list[Any], ack_id: int | None) -> None:
        for handler in tuple(self._any):
            try:
                call_handler(handler, event, *params)
            except Exception:
                log.failure("error in the catch-all handler of socket {sid}", sid=self.id)
        handlers = self._handlers.get(event)
        if not handlers:
            return
        first = True
        for handler in tuple(handlers):
            try:
                result = call_handler(handler, *params)
            except Exception:
                log.failure("error in the handler of event {event!r} (namespace {nsp}, "
                            "socket {sid})", event=event, nsp=self.nsp.name, sid=self.id)
                first = False
                continue
            if isinstance(result, Deferred):
                if first and ack_id is not None:
                    result.addCallback(self._send_ack, ack_id)
                result.addErrback(_log_handler_error, event, self.nsp.name, self.id)
            elif first and ack_id is not None:
                try:
                    self._send_ack(result, ack_id)
                except Exception:  # e.g. a value JSON cannot carry
                    log.failure("cannot send the ack of event {event!r} (namespace {nsp}, "
                                "socket {sid})", event=event, nsp=self.nsp.name, sid=self.id)
            first = False

    def _send_ack(self, result: Any, ack_id: int) -> None:
        self._write_packet(Packet(PacketType.ACK, self.nsp.name, ack_args(result), ack_id))

    def _on_close(self, reason: str) -> None:
        if not self.connected:
            return
        self._emit_local("disconnecting", reason)
        if self.pid is not None and reason in RECOVERABLE_REASONS:
            self.adapter.persist_session(PersistedSession(
                sid=self.id, pid=self.pid, rooms=sorted(self.rooms), data=self.data))
        self.adapter.delete_all(self.id)
        self.nsp._remove(self)
        self.conn._remove(self)
        self.connected = False
        self._acks = {}
        for timer in self._ack_timers.values():
            if timer.active():
                timer.cancel()
        self._ack_timers.clear()
        pending, self._ack_deferreds = self._ack_deferreds, {}
        for d in pending.values():
            if not d.called:
                d.errback(DisconnectedError(reason))
        self._emit_local("disconnect", reason)

