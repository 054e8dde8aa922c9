"""The client's connection to one namespace: :class:`ClientSocket`, with its send and receive
buffers, its pending acks and its retry queue.

Made by the :class:`~txsio.client.Manager` (``manager.socket(nsp)``).  Called by the user: the
public methods (``on``, ``emit``, ``emit_with_ack``, ``timeout``, ``volatile``, ``compress``,
``connect``, ``disconnect``).  Called by the manager: ``_open``, ``_on_open``, ``_on_packet``,
``_on_error``, ``_on_close``, ``_fire_waiters``.  It writes through the manager's ``_write``
and reads its ``state``, ``clock``, options and ``_generation``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._handlers import (
    NO_FLAGS,
    EmitFlags,
    FlaggedEmitter,
    HandlerMethods,
    Listeners,
    PendingAcks,
    ack_args,
    ack_value,
    call_handler,
    event_name,
)
from ..engineio._compression import uncompressed
from ..exceptions import ConnectError, DisconnectedError
from ..protocol import RESERVED_EVENTS, Packet, PacketType

if TYPE_CHECKING:
    from .manager import Manager

__all__ = ["Auth", "ClientSocket"]

log = Logger()

# A callback for an acknowledgement: (error or None, the ack's arguments).
_AckCallback = Callable[[Exception | None, list[Any]], None]

#: ``auth``: a dict, or a callable returning one (or a Deferred / coroutine of one).
Auth = Mapping[str, Any] | Callable[[], Any] | None


@dataclass
class _Queued:
    # A packet of the retry queue.
    event: str
    args: tuple[Any, ...]
    flags: EmitFlags
    ack: _AckCallback | None
    tries: int = 0
    pending: bool = False
    cancelled: bool = False


class ClientSocket(HandlerMethods):
    """The client's connection to one namespace (socket.io-client's ``Socket``).

    Get one with :meth:`Client.socket`.  Events (:meth:`on`): ``"connect"`` (),
    ``"connect_error"`` (a :class:`~txsio.ConnectError`), ``"disconnect"`` (the reason), and
    the server's events with their arguments; a handler's return value (plain, Deferred or
    coroutine result; a tuple for several arguments) is the acknowledgement when the server
    asked for one.

    :ivar nsp: the namespace name.
    :ivar id: the socket id the server gave (``None`` while not connected).
    :ivar connected: whether the server accepted the connection and it still holds.
    :ivar recovered: whether the last connection recovered the previous session's state
        (connection state recovery: same id, missed packets replayed).
    :ivar auth: the auth payload (a dict, or a callable evaluated on each connection).
    """

    def __init__(self, io: Manager, nsp: str, auth: Auth = None) -> None:
        #: the user's handlers of this socket's events
        self.listeners = Listeners(self)
        self.io = io
        self.nsp = nsp
        self.auth: Auth = auth
        self.id: str | None = None
        self.connected = False
        self.recovered = False
        self._pid: str | None = None
        self._last_offset: str | None = None
        self._active = False
        self._receive_buffer: list[tuple[list[Any], int | None]] = []
        #: emits waiting for the connection: (ack id, encoded packet, [event, *args])
        self._send_buffer: list[tuple[int | None, list[str | bytes], list[Any]]] = []
        self._queue: list[_Queued] = []
        self._ids = 0
        self._acks = PendingAcks(io.clock)
        self._waiters: list[tuple[Deferred[None], bool]] = []

    def __repr__(self) -> str:
        return f"<ClientSocket {self.nsp} {self.id or '-'}>"

    @property
    def disconnected(self) -> bool:
        """Whether the socket is not connected (Node's ``socket.disconnected``)."""
        return not self.connected

    @property
    def active(self) -> bool:
        """Whether the socket wants to be connected (it reconnects with the manager)."""
        return self._active

    # -- connecting ------------------------------------------------------------------------

    def connect(self) -> Deferred[None]:
        """Connect to the namespace (opening the manager's connection if needed).

        :returns: a Deferred that fires once connected, or fails with a
            :class:`~txsio.ConnectError`: at once if the server refuses, otherwise when the
            manager gives up (reconnection off, or ``reconnection_attempts`` exhausted).
        """
        if self.connected:
            return succeed(None)
        if self.io._target is None:
            return fail(RuntimeError("no server yet: call Client.connect(url) first"))
        d = self._wait_connected(retry=True)
        if not self._active:
            self._open()
        return d

    def _open(self) -> None:
        self._active = True
        io = self.io
        if not io.reconnecting:
            io.open()
        if io.is_open:
            self._on_open()

    def _wait_connected(self, retry: bool) -> Deferred[None]:
        d: Deferred[None] = Deferred(lambda _: self._forget_waiter(d))
        self._waiters.append((d, retry))
        return d

    def _forget_waiter(self, d: Deferred[None]) -> None:
        self._waiters = [(w, r) for w, r in self._waiters if w is not d]

    def _fire_waiters(self, error: ConnectError | None, *, final: bool = True) -> None:
        keep: list[tuple[Deferred[None], bool]] = []
        fire: list[Deferred[None]] = []
        for d, retry in self._waiters:
            if error is not None and not final and retry and self.io.reconnection:
                keep.append((d, retry))
            else:
                fire.append(d)
        self._waiters = keep
        for d in fire:
            if d.called:
                continue
            if error is None:
                d.callback(None)
            else:
                d.errback(error)

    def disconnect(self) -> Deferred[None]:
        """Leave the namespace (``"io client disconnect"``); no reconnection for it.

        When it was the last active socket, the manager closes the connection.

        :returns: a Deferred that fires once the connection's I/O is over if it was closed,
            at once otherwise.
        """
        was_connected = self.connected
        if was_connected:
            self._packet(Packet(PacketType.DISCONNECT, self.nsp))
        self._destroy()
        if was_connected:
            self._on_close("io client disconnect")
        self._fire_waiters(ConnectError("io client disconnect"))
        return self.io.wait_released()

    def close(self) -> Deferred[None]:
        """Same as :meth:`disconnect`."""
        return self.disconnect()

    def _destroy(self) -> None:
        if self._active:
            self._active = False
            self.io._destroy(self)

    # -- emitting --------------------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> None:
        """Emit *event* with *args* to the server; buffered until connected.

        :param event: the event name (not a reserved one).
        :param args: JSON-able values; ``bytes`` anywhere travel as binary attachments.
        :raises ValueError: for a reserved event name or data JSON cannot carry.
        :raises TypeError: for data JSON cannot carry.
        """
        self._emit(event, args, NO_FLAGS, None)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        self.emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit *event* and return a Deferred of the server's acknowledgement.

        It fires with the single argument the server acknowledged with, a tuple for several,
        ``None`` for none; it fails with :class:`~txsio.AckTimeoutError` after the timeout
        (:meth:`timeout`, or the client's ``ack_timeout``), or with
        :class:`~txsio.DisconnectedError` if the connection goes first (unless the emit is
        still buffered, or ``retries`` will send it again).  Cancelling it forgets the ack.
        """
        return self._emit_with_ack(event, args, NO_FLAGS)

    def timeout(self, seconds: float) -> FlaggedEmitter:
        """``socket.timeout(5).emit_with_ack(...)``: fail with
        :class:`~txsio.AckTimeoutError` after 5 seconds."""
        return self._flagged(EmitFlags(timeout=float(seconds)))

    @property
    def volatile(self) -> FlaggedEmitter:
        """``socket.volatile.emit(...)``: dropped unless it can be written now."""
        return self._flagged(EmitFlags(volatile=True))

    def compress(self, compress: bool) -> FlaggedEmitter:
        """``socket.compress(False).emit(...)``: socket.io-client's flag, passed to the
        transport; a WebSocket then sends the message without permessage-deflate."""
        return self._flagged(EmitFlags(compress=bool(compress)))

    def _flagged(self, flags: EmitFlags) -> FlaggedEmitter:
        return FlaggedEmitter(lambda event, args, f: self._emit(event, args, f, None),
                              self._emit_with_ack, flags)

    def _emit_with_ack(self, event: str, args: tuple[Any, ...],
                       flags: EmitFlags) -> Deferred[Any]:
        cancel: list[Callable[[], None]] = []
        d: Deferred[Any] = Deferred(lambda _: cancel[0]() if cancel else None)

        def on_ack(error: Exception | None, ack_args: list[Any]) -> None:
            if d.called:
                return
            if error is not None:
                d.errback(error)
            else:
                d.callback(ack_value(ack_args))

        try:
            cancel.append(self._emit(event, args, flags, on_ack))
        except Exception as e:
            return fail(e)
        return d

    def _emit(self, event: str, args: tuple[Any, ...], flags: EmitFlags,
              ack: _AckCallback | None, *, from_queue: bool = False) -> Callable[[], None]:
        # Returns what cancels the ack.
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        retries = self.io.retries
        if retries and not from_queue and not flags.volatile:
            return self._add_to_queue(event, args, flags, ack)
        ack_id = None
        if ack is not None:
            ack_id = self._ids
        encoded = self.io.parser.encode(Packet(PacketType.EVENT, self.nsp, [event, *args],
                                               ack_id))
        if not flags.compress:
            # The mark travels with each message down to the transport (see _compression).
            encoded = [uncompressed(part) for part in encoded]
        if ack is not None:
            self._ids += 1
            assert ack_id is not None
            self._register_ack(ack_id, ack, flags.timeout)
        if flags.volatile and not (self.connected and self.io.writable):
            log.debug("{socket}: volatile {event!r} dropped", socket=self, event=event)
        elif self.connected:
            self._write_event(encoded, [event, *args])
        else:
            self._send_buffer.append((ack_id, encoded, [event, *args]))
        if ack_id is None:
            return lambda: None
        return lambda: self._forget_ack(ack_id)

    def _register_ack(self, ack_id: int, callback: _AckCallback, timeout: float | None) -> None:
        def failed(error: Exception) -> None:
            # A timeout (or the disconnect of an emit not buffered): never send it now.
            self._unbuffer(ack_id)
            callback(error, [])

        self._acks.expect(ack_id, lambda args: callback(None, args),
                          timeout=self.io.ack_timeout if timeout is None else timeout,
                          on_error=failed)

    def _forget_ack(self, ack_id: int) -> None:
        self._acks.forget(ack_id)
        self._unbuffer(ack_id)

    def _unbuffer(self, ack_id: int) -> None:
        self._send_buffer = [entry for entry in self._send_buffer if entry[0] != ack_id]

    def _add_to_queue(self, event: str, args: tuple[Any, ...], flags: EmitFlags,
                      ack: _AckCallback | None) -> Callable[[], None]:
        # Fail now on data that cannot be sent, not when the queue gets to it.
        self.io.parser.encode(Packet(PacketType.EVENT, self.nsp, [event, *args], 0))
        queued = _Queued(event, args, flags, ack)
        self._queue.append(queued)
        self._drain_queue()

        def cancel() -> None:
            queued.cancelled = True
            queued.ack = None
            if not queued.pending and queued in self._queue:
                self._queue.remove(queued)

        return cancel

    def _queue_ack(self, queued: _Queued, error: Exception | None, args: list[Any]) -> None:
        if not self._queue or queued is not self._queue[0]:
            return  # already acknowledged
        if error is not None:
            if queued.tries > self.io.retries or queued.cancelled:
                self._queue.pop(0)
                if queued.ack is not None:
                    queued.ack(error, [])
        else:
            self._queue.pop(0)
            if queued.ack is not None:
                queued.ack(None, args)
        queued.pending = False
        self._drain_queue()

    def _drain_queue(self, force: bool = False) -> None:
        if not self.connected or not self._queue:
            return
        queued = self._queue[0]
        if queued.pending and not force:
            return
        queued.pending = True
        queued.tries += 1
        self._emit(queued.event, queued.args, queued.flags,
                   lambda error, args: self._queue_ack(queued, error, args), from_queue=True)

    def _write_event(self, encoded: list[str | bytes], data: list[Any]) -> None:
        # As socket.io-client: the outgoing catch-alls see an event when it is written.
        if self.listeners.has_outgoing:
            self.listeners.notify_outgoing(data[0], data[1:])
        self.io._write(encoded)

    def _packet(self, packet: Packet) -> None:
        self.io._write(self.io.parser.encode(packet))

    # -- called by the manager -------------------------------------------------------------

    def _on_open(self) -> None:
        # The engine is open: join the namespace.
        auth = self.auth
        if callable(auth):
            generation = self.io._generation
            try:
                result = call_handler(auth)
            except Exception as e:
                log.failure("the auth callable of {socket} failed", socket=self)
                self._auth_failed(str(e))
                return
            if isinstance(result, Deferred):
                def send(value: Any) -> None:
                    if self._active and self.io._generation == generation:
                        self._send_connect(value)

                def failed(failure: Failure) -> None:
                    log.failure("the auth callable of {socket} failed", failure, socket=self)
                    if self._active and self.io._generation == generation:
                        self._auth_failed(failure.getErrorMessage())

                result.addCallbacks(send, failed)
                result.addErrback(lambda f: log.failure("auth for {nsp}", f, nsp=self.nsp))
                return
            self._send_connect(result)
        else:
            self._send_connect(auth)

    def _auth_failed(self, detail: str) -> None:
        error = ConnectError("auth failed", detail, refused=True)
        self._destroy()
        self.listeners.emit_local("connect_error", error)
        self._fire_waiters(error)

    def _send_connect(self, auth: Any) -> None:
        if auth is not None and not isinstance(auth, Mapping):
            log.warn("the auth of {socket} is not a dict", socket=self)
            self._auth_failed(f"auth must be a dict, not {type(auth).__name__}")
            return
        data: dict[str, Any] | None = dict(auth) if auth is not None else None
        if self._pid is not None:
            # Connection state recovery: ask for the previous session back.
            recovery: dict[str, Any] = {"pid": self._pid}
            if self._last_offset is not None:
                recovery["offset"] = self._last_offset
            data = {**recovery, **(data or {})}
        try:
            self._packet(Packet(PacketType.CONNECT, self.nsp, data))
        except (TypeError, ValueError) as e:
            log.warn("the auth of {socket} cannot be sent: {why}", socket=self, why=e)
            self._auth_failed(str(e))

    def _on_error(self, error: ConnectError) -> None:
        if not self.connected:
            self._connect_error(error)

    def _connect_error(self, error: ConnectError) -> None:
        # The event first: a waiter's callbacks may run user code that expects it seen.
        self.listeners.emit_local("connect_error", error)
        self._fire_waiters(error, final=error.refused)

    def _on_packet(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype is PacketType.CONNECT:
            data = packet.data
            if isinstance(data, dict) and isinstance(data.get("sid"), str):
                pid = data.get("pid")
                self._on_connect(data["sid"], pid if isinstance(pid, str) else None)
            else:
                self._connect_error(ConnectError(
                    "It seems you are trying to reach a Socket.IO server in v2.x with a v3.x "
                    "client, but they are not compatible", data))
        elif ptype is PacketType.EVENT or ptype is PacketType.BINARY_EVENT:
            if self.connected:
                self._on_event(packet.data, packet.id)
            else:
                self._receive_buffer.append((packet.data, packet.id))
        elif ptype is PacketType.ACK or ptype is PacketType.BINARY_ACK:
            if packet.id is None or not self._acks.resolve(packet.id, packet.data):
                log.debug("{socket}: ack for unknown id {id}", socket=self, id=packet.id)
        elif ptype is PacketType.DISCONNECT:
            self._destroy()
            self._on_close("io server disconnect")
            self._fire_waiters(ConnectError("io server disconnect"))
        elif ptype is PacketType.CONNECT_ERROR:
            data = packet.data
            if isinstance(data, dict):
                message = data.get("message")
                error = ConnectError(message if isinstance(message, str) else str(message),
                                     data.get("data"), refused=True)
            else:
                error = ConnectError(str(data), refused=True)
            self._destroy()
            self.listeners.emit_local("connect_error", error)
            self._fire_waiters(error)

    def _on_connect(self, sid: str, pid: str | None) -> None:
        self.id = sid
        self.recovered = pid is not None and self._pid == pid
        self._pid = pid
        self.connected = True
        log.info("{socket}: connected{recovered}", socket=self,
                 recovered=" (recovered)" if self.recovered else "")
        received, self._receive_buffer = self._receive_buffer, []
        for args, ack_id in received:
            self._on_event(args, ack_id)
        buffered, self._send_buffer = self._send_buffer, []
        for _, encoded, data in buffered:
            self._write_event(encoded, data)
        self._drain_queue(force=True)
        self.listeners.emit_local("connect")
        self._fire_waiters(None)

    def _on_event(self, args: list[Any], ack_id: int | None) -> None:
        self.listeners.dispatch(
            event_name(args[0]), args[1:],
            None if ack_id is None else lambda result: self._send_ack(result, ack_id))
        if self._pid is not None and ack_id is None and isinstance(args[-1], str):
            # Connection state recovery: the server appends the packet's offset.
            self._last_offset = args[-1]

    def _send_ack(self, result: Any, ack_id: int) -> None:
        if self.connected:
            self._packet(Packet(PacketType.ACK, self.nsp, ack_args(result), ack_id))

    def _on_close(self, reason: str, description: Any = None) -> None:
        was_connected = self.connected
        self.connected = False
        self.id = None
        if was_connected:
            log.info("{nsp}: disconnected ({reason})", nsp=self.nsp, reason=reason)
        # Emits still buffered go when the connection is back: their acks keep waiting.
        self._acks.fail_all(DisconnectedError(reason),
                            keep={i for i, _, _ in self._send_buffer if i is not None})
        if was_connected:
            self.listeners.emit_described("disconnect", reason, description)
        elif self._active:
            self._connect_error(ConnectError(reason, description))
