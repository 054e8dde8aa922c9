"""The Socket.IO client: :class:`Client`, its :class:`Manager` and :class:`ClientSocket`.

::

    import txsio

    client = txsio.Client()

    @client.on("news")
    def news(item):
        return "thanks"                           # the ack, when the server asked for one

    await client.connect("http://127.0.0.1:8080", auth={"token": "secret"})
    answer = await client.timeout(5).emit_with_ack("question", 42)
    await client.disconnect()

Like socket.io-client 4.8, a :class:`Manager` (``client.io``) owns one Engine.IO connection
(:class:`~txsio.engineio.client.EngineClient`), reconnects it with exponential backoff, and
multiplexes the namespaces over it; each namespace is a :class:`ClientSocket`.  A
:class:`Client` is the manager plus its ``"/"`` socket, so the common case reads like Node's
``io(url)``.

Called by the user: the public methods.  Called by the engine (its events): the manager's
``_engine_*`` methods.  Called by the manager: the sockets' ``_on_open``, ``_on_packet``,
``_on_error``, ``_on_close``.

Theory of operation
-------------------
Manager states (:class:`ManagerState`): ``CLOSED`` ─open()─► ``OPENING`` ─engine open─►
``OPEN`` ─engine close / parse error─► ``CLOSED``.  An engine failure while opening (or the
connect ``timeout``) is an ``error``; with reconnection on, a close or failure schedules the
next attempt after ``Backoff.duration()``: ``reconnection_delay * 2**attempt``, with
``randomization_factor`` jitter, capped at ``reconnection_delay_max`` (socket.io-client's
``backo2``).  After ``reconnection_attempts`` failed attempts: ``reconnect_failed``.

A socket is *active* from :meth:`ClientSocket.connect` until :meth:`ClientSocket.disconnect`,
a refusal (CONNECT_ERROR) or the server's DISCONNECT.  When the engine opens, every active
socket sends CONNECT (with its ``auth``, evaluated anew if it is a callable, plus ``pid`` and
``offset`` for connection state recovery); the reply makes it *connected*.  When the last
active socket goes, the manager closes the engine and does not reconnect.

Emits made while a socket is not connected wait in its send buffer and go out when it
connects (volatile ones are dropped).  Acks pending when the connection goes fail with
:class:`~txsio.DisconnectedError` — except those of buffered emits, which still wait.  With
``retries``, emits go through a queue, one at a time, each resent until acknowledged or tried
``retries + 1`` times (socket.io-client 4.6's at-least-once delivery).

Disconnect reasons, as Node's client: ``"io server disconnect"``, ``"io client disconnect"``,
``"ping timeout"``, ``"transport close"``, ``"transport error"``, ``"parse error"``.  A socket
that loses the connection before it was connected gets ``connect_error`` with the reason
instead of a ``disconnect`` without a ``connect`` (Node sends ``disconnect``).
"""

from __future__ import annotations

import enum
import math
import random as _random
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from twisted.internet.defer import Deferred, FirstError, fail, gatherResults, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._events import CatchAllEmitter, EventEmitter
from ._handlers import ack_args, ack_value, call_handler
from .engineio.client import (
    DEFAULT_MAX_PAYLOAD,
    EngineClient,
    EngineURL,
    TransportError,
    TransportFactory,
)
from .exceptions import AckTimeoutError, ConnectError, DisconnectedError
from .protocol import RESERVED_EVENTS, Decoder, Packet, PacketType, SocketIOParseError, encode

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.iweb import IPolicyForHTTPS

__all__ = ["Backoff", "Client", "ClientSocket", "Manager", "ManagerState"]

log = Logger()

_F = TypeVar("_F", bound=Callable[..., Any])

#: The events of the manager (``client.io.on``); :meth:`Client.on` routes the ``reconnect*``
#: ones there too.
MANAGER_EVENTS = frozenset({
    "open", "close", "error", "ping",
    "reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed",
})
_CLIENT_MANAGER_EVENTS = frozenset(
    {"reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"}
)

# A callback for an acknowledgement: (error or None, the ack's arguments).
_AckCallback = Callable[[Exception | None, list[Any]], None]

#: ``auth``: a dict, or a callable returning one (or a Deferred / coroutine of one).
Auth = Mapping[str, Any] | Callable[[], Any] | None


# ---- backoff ------------------------------------------------------------------------------


class Backoff:
    """Exponential backoff with jitter, as socket.io-client's ``backo2``.

    The *n*-th :meth:`duration` (from 0) is ``min * factor**n``; with jitter ``j``, one
    random draw ``r`` moves it by ``floor(r * j * ms)`` milliseconds, down when
    ``floor(r * 10)`` is even, up when odd; the result is capped at ``max`` and truncated to
    whole milliseconds.

    :param min: the first delay, in seconds.
    :param max: the largest delay, in seconds.
    :param jitter: the randomization factor, in ``(0, 1]``; anything else means none.
    :param factor: the growth factor.
    :param random: a function returning a float in ``[0, 1)``.
    """

    def __init__(self, min: float = 0.1, max: float = 10.0, jitter: float = 0.0,
                 factor: float = 2.0, random: Callable[[], float] = _random.random) -> None:
        self.ms = min * 1000
        self.max = max * 1000
        self.factor = factor
        self.jitter = jitter if 0 < jitter <= 1 else 0.0
        self.random = random
        #: the attempts made since the last :meth:`reset`
        self.attempts = 0

    def duration(self) -> float:
        """The next delay, in seconds; counts an attempt."""
        # Past 2**1000 the float overflows; the cap has long applied by then.
        ms = self.ms * self.factor ** min(self.attempts, 1000)
        self.attempts += 1
        if self.jitter:
            rand = self.random()
            deviation = math.floor(rand * self.jitter * ms)
            ms = ms - deviation if math.floor(rand * 10) & 1 == 0 else ms + deviation
        return math.floor(min(ms, self.max)) / 1000

    def reset(self) -> None:
        """Start again from the first delay."""
        self.attempts = 0


# ---- the socket ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _Flags:
    timeout: float | None = None
    volatile: bool = False
    from_queue: bool = False


@dataclass
class _Queued:
    # A packet of the retry queue.
    event: str
    args: tuple[Any, ...]
    flags: _Flags
    ack: _AckCallback | None
    tries: int = 0
    pending: bool = False
    cancelled: bool = False


class _PendingAck:
    __slots__ = ("callback", "timer")

    def __init__(self, callback: _AckCallback, timer: IDelayedCall | None) -> None:
        self.callback = callback
        self.timer = timer

    def stop_timer(self) -> None:
        if self.timer is not None and self.timer.active():
            self.timer.cancel()
        self.timer = None


class _Emitter:
    """``socket.timeout(s)`` / ``socket.volatile``: the socket's emits with flags set."""

    __slots__ = ("_flags", "_socket")

    def __init__(self, socket: ClientSocket, flags: _Flags) -> None:
        self._socket = socket
        self._flags = flags

    def timeout(self, seconds: float) -> _Emitter:
        """Fail :meth:`emit_with_ack` with :class:`~txsio.AckTimeoutError` after *seconds*."""
        return _Emitter(self._socket, replace(self._flags, timeout=float(seconds)))

    @property
    def volatile(self) -> _Emitter:
        """Drop the packet unless it can be written now."""
        return _Emitter(self._socket, replace(self._flags, volatile=True))

    def emit(self, event: str, *args: Any) -> None:
        """Emit *event* with *args* (see :meth:`ClientSocket.emit`)."""
        self._socket._emit(event, args, self._flags, None)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        self.emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit *event* and return a Deferred of the acknowledgement."""
        return self._socket._emit_with_ack(event, args, self._flags)


class ClientSocket(CatchAllEmitter):
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
        super().__init__()
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
        self._send_buffer: list[tuple[int | None, list[str | bytes]]] = []
        self._queue: list[_Queued] = []
        self._ids = 0
        self._acks: dict[int, _PendingAck] = {}
        self._waiters: list[tuple[Deferred[None], bool]] = []

    def __repr__(self) -> str:
        return f"<ClientSocket {self.nsp} {self.id or '-'}>"

    @property
    def active(self) -> bool:
        """Whether the socket wants to be connected (it reconnects with the manager)."""
        return self._active

    # -- handlers --------------------------------------------------------------------------

    def _emit_local(self, event: str, *args: Any) -> None:
        # ClientSocket.emit sends to the server: local events go through EventEmitter's.
        EventEmitter.emit(self, event, *args)

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
        if not io._reconnecting:
            io.open()
        if io.state is ManagerState.OPEN:
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
        self._emit(event, args, _Flags(), None)

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
        return self._emit_with_ack(event, args, _Flags())

    def timeout(self, seconds: float) -> _Emitter:
        """``socket.timeout(5).emit_with_ack(...)``: fail with
        :class:`~txsio.AckTimeoutError` after 5 seconds."""
        return _Emitter(self, _Flags(timeout=float(seconds)))

    @property
    def volatile(self) -> _Emitter:
        """``socket.volatile.emit(...)``: dropped unless it can be written now."""
        return _Emitter(self, _Flags(volatile=True))

    def _emit_with_ack(self, event: str, args: tuple[Any, ...], flags: _Flags) -> Deferred[Any]:
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

    def _emit(self, event: str, args: tuple[Any, ...], flags: _Flags,
              ack: _AckCallback | None) -> Callable[[], None]:
        # Returns what cancels the ack.
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        retries = self.io.retries
        if retries and not flags.from_queue and not flags.volatile:
            return self._add_to_queue(event, args, flags, ack)
        ack_id = None
        if ack is not None:
            ack_id = self._ids
        encoded = encode(Packet(PacketType.EVENT, self.nsp, [event, *args], ack_id))
        if ack is not None:
            self._ids += 1
            assert ack_id is not None
            self._register_ack(ack_id, ack, flags.timeout)
        if flags.volatile and not (self.connected and self.io.writable):
            log.debug("{socket}: volatile {event!r} dropped", socket=self, event=event)
        elif self.connected:
            self.io._write(encoded)
        else:
            self._send_buffer.append((ack_id, encoded))
        if ack_id is None:
            return lambda: None
        return lambda: self._forget_ack(ack_id)

    def _register_ack(self, ack_id: int, callback: _AckCallback, timeout: float | None) -> None:
        if timeout is None:
            timeout = self.io.ack_timeout
        timer = None
        if timeout is not None:
            timer = self.io.clock.callLater(timeout, self._ack_timed_out, ack_id)
        self._acks[ack_id] = _PendingAck(callback, timer)

    def _ack_timed_out(self, ack_id: int) -> None:
        pending = self._acks.pop(ack_id, None)
        self._send_buffer = [entry for entry in self._send_buffer if entry[0] != ack_id]
        if pending is not None:
            pending.timer = None
            pending.callback(AckTimeoutError(), [])

    def _forget_ack(self, ack_id: int) -> None:
        pending = self._acks.pop(ack_id, None)
        if pending is not None:
            pending.stop_timer()
        self._send_buffer = [entry for entry in self._send_buffer if entry[0] != ack_id]

    def _add_to_queue(self, event: str, args: tuple[Any, ...], flags: _Flags,
                      ack: _AckCallback | None) -> Callable[[], None]:
        # Fail now on data that cannot be sent, not when the queue gets to it.
        encode(Packet(PacketType.EVENT, self.nsp, [event, *args], 0))
        queued = _Queued(event, args, replace(flags, from_queue=True), ack)
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
                   lambda error, args: self._queue_ack(queued, error, args))

    def _packet(self, packet: Packet) -> None:
        self.io._write(encode(packet))

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
        self._emit_local("connect_error", error)
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
        self._emit_local("connect_error", error)
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
            pending = self._acks.pop(packet.id, None) if packet.id is not None else None
            if pending is None:
                log.debug("{socket}: ack for unknown id {id}", socket=self, id=packet.id)
                return
            pending.stop_timer()
            pending.callback(None, packet.data)
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
            self._emit_local("connect_error", error)
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
        for _, encoded in buffered:
            self.io._write(encoded)
        self._drain_queue(force=True)
        self._emit_local("connect")
        self._fire_waiters(None)

    def _on_event(self, args: list[Any], ack_id: int | None) -> None:
        event = args[0]
        params = args[1:]
        for handler in tuple(self._any):
            try:
                result = call_handler(handler, event, *params)
            except Exception:
                log.failure("error in a catch-all handler of {socket}", socket=self)
                continue
            if isinstance(result, Deferred):
                result.addErrback(_log_handler_failure, event, self.nsp)
        first = True
        for handler in tuple(self._handlers.get(event, ())):
            try:
                result = call_handler(handler, *params)
            except Exception:
                log.failure("error in the handler of event {event!r} of {socket}",
                            event=event, socket=self)
                first = False
                continue
            if isinstance(result, Deferred):
                if first and ack_id is not None:
                    result.addCallback(self._send_ack, ack_id)
                result.addErrback(_log_handler_failure, event, self.nsp)
            elif first and ack_id is not None:
                try:
                    self._send_ack(result, ack_id)
                except Exception:
                    log.failure("cannot send the ack of event {event!r} of {socket}",
                                event=event, socket=self)
            first = False
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
        buffered = {ack_id for ack_id, _ in self._send_buffer}
        for ack_id in [i for i in self._acks if i not in buffered]:
            pending = self._acks.pop(ack_id)
            pending.stop_timer()
            pending.callback(DisconnectedError(reason), [])
        if was_connected:
            self._emit_local("disconnect", reason)
        elif self._active:
            self._connect_error(ConnectError(reason, description))


def _log_handler_failure(failure: Failure, event: Any, nsp: str) -> None:
    log.failure("error in the handler of event {event!r} (namespace {nsp})", failure,
                event=event, nsp=nsp)


# ---- the manager --------------------------------------------------------------------------


class ManagerState(enum.Enum):
    """The states of a :class:`Manager` (socket.io-client's ``_readyState``)."""

    #: no connection (and perhaps a reconnection scheduled)
    CLOSED = "closed"
    #: the engine is connecting
    OPENING = "opening"
    #: the engine is open
    OPEN = "open"


@dataclass
class _Target:
    url: str
    path: str
    transports: tuple[str, ...]
    query: dict[str, str]


class Manager(EventEmitter):
    """One Engine.IO connection, its reconnection, and the namespaces over it.

    Made by :class:`Client` (``client.io``), which documents the options.  Events
    (:meth:`on`): ``"open"``, ``"close"`` (reason), ``"error"`` (a
    :class:`~txsio.ConnectError`), ``"ping"``, ``"reconnect_attempt"`` (attempt number),
    ``"reconnect"`` (attempts it took), ``"reconnect_error"`` (the error),
    ``"reconnect_failed"``.
    """

    def __init__(
        self,
        *,
        reconnection: bool,
        reconnection_attempts: int | None,
        reconnection_delay: float,
        reconnection_delay_max: float,
        randomization_factor: float,
        timeout: float | None,
        ack_timeout: float | None,
        retries: int,
        extra_headers: Mapping[str, str] | None,
        clock: IReactorTime,
        reactor: Any,
        http: Any,
        tls: IPolicyForHTTPS | None,
        transport_factory: TransportFactory | None,
        random: Callable[[], float],
        max_payload: int,
        close_timeout: float,
    ) -> None:
        super().__init__()
        self.reconnection = reconnection
        self.reconnection_attempts = (
            math.inf if reconnection_attempts is None else reconnection_attempts
        )
        self.timeout = timeout
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.clock = clock
        self._reactor = reactor
        self._engine_options: dict[str, Any] = {
            "extra_headers": extra_headers, "http": http, "tls": tls,
            "transport_factory": transport_factory, "max_payload": max_payload,
            "close_timeout": close_timeout,
        }
        self._backoff = Backoff(reconnection_delay, reconnection_delay_max,
                                randomization_factor, random=random)
        self._nsps: dict[str, ClientSocket] = {}
        self._decoder = Decoder()
        self.state = ManagerState.CLOSED
        #: the current Engine.IO connection (``None`` before the first)
        self.engine: EngineClient | None = None
        self._engines: list[EngineClient] = []
        self._target: _Target | None = None
        self._reconnecting = False
        self._skip_reconnect = False
        self._timers: list[IDelayedCall] = []
        # Bumped by _cleanup: callbacks of an older generation are stale.
        self._generation = 0

    # -- events ----------------------------------------------------------------------------


    # -- state -----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether the manager is connected, connecting or waiting to reconnect."""
        return self.state is not ManagerState.CLOSED or self._reconnecting

    @property
    def reconnecting(self) -> bool:
        """Whether a reconnection attempt is scheduled or under way."""
        return self._reconnecting

    @property
    def writable(self) -> bool:
        """Whether a packet written now goes out at once."""
        return self.engine is not None and self.engine.writable

    @property
    def transport(self) -> str | None:
        """The name of the engine's transport (``"polling"``, ``"websocket"``) while open."""
        engine = self.engine
        if self.state is not ManagerState.OPEN or engine is None or engine.transport is None:
            return None
        return engine.transport.name

    def _configure(self, url: str, path: str, transports: Iterable[str],
                   query: Mapping[str, str] | None) -> None:
        names = tuple(transports)
        # Validate now, not on the first attempt.
        EngineURL.parse(url, path, query)
        if not names or not set(names) <= {"polling", "websocket"}:
            raise ValueError(f"transports are 'polling' and 'websocket', not {names!r}")
        self._target = _Target(url, path, names, dict(query or {}))

    def socket(self, nsp: str, auth: Auth = None) -> ClientSocket:
        """The socket of namespace *nsp* (made on first use; connected at once if the
        manager is active)."""
        if not nsp.startswith("/"):
            nsp = "/" + nsp
        socket = self._nsps.get(nsp)
        if socket is None:
            socket = self._nsps[nsp] = ClientSocket(self, nsp, auth)
        elif auth is not None:
            socket.auth = auth
        if self.active and not socket.active:
            socket._open()
        return socket

    # -- opening ---------------------------------------------------------------------------

    def open(self, callback: Callable[[ConnectError | None], None] | None = None) -> None:
        """Open the connection (if closed); *callback* gets ``None`` or the error."""
        if self.state is not ManagerState.CLOSED:
            return
        target = self._target
        if target is None:
            raise RuntimeError("connect() first: no server URL")
        engine = EngineClient(
            target.url, path=target.path, transports=target.transports, query=target.query,
            clock=self.clock, reactor=self._reactor, **self._engine_options,
        )
        self.engine = engine
        self._engines.append(engine)
        engine.wait_released().addCallback(lambda _: self._engines.remove(engine))
        self.state = ManagerState.OPENING
        self._skip_reconnect = False
        generation = self._generation

        def current() -> bool:
            return self._generation == generation and self.engine is engine

        def on_open() -> None:
            if current():
                self._engine_open(engine, callback)

        def on_error(error: TransportError) -> None:
            if current():
                self._open_failed(ConnectError(error.message, error.description), callback)

        def on_close(reason: str, description: Any) -> None:
            if current():
                self._open_failed(ConnectError(reason, description), callback)

        def on_timeout() -> None:
            if current():
                log.info("connection attempt timed out after {t} s", t=self.timeout)
                self._open_failed(ConnectError("timeout"), callback)
                engine.close()

        engine.on("open", on_open)
        engine.on("error", on_error)
        engine.on("close", on_close)
        if self.timeout is not None:
            self._timers.append(self.clock.callLater(self.timeout, on_timeout))
        engine.open()

    def _open_failed(self, error: ConnectError,
                     callback: Callable[[ConnectError | None], None] | None) -> None:
        self._cleanup()
        self.state = ManagerState.CLOSED
        self.emit("error", error)
        for socket in self._active_sockets():
            socket._on_error(error)
        if callback is not None:
            callback(error)
        else:
            self._maybe_reconnect_on_open()

    def _engine_open(self, engine: EngineClient,
                     callback: Callable[[ConnectError | None], None] | None) -> None:
        self._cleanup()
        self.state = ManagerState.OPEN
        generation = self._generation

        def current() -> bool:
            return self._generation == generation and self.engine is engine

        def on_ping() -> None:
            if current():
                self.emit("ping")

        def on_message(data: str | bytes) -> None:
            if current():
                self._on_data(data)

        def on_error(error: TransportError) -> None:
            if current():
                self.emit("error", ConnectError(error.message, error.description))

        def on_close(reason: str, description: Any) -> None:
            if current():
                self._on_close(reason, description)

        engine.on("ping", on_ping)
        engine.on("message", on_message)
        engine.on("error", on_error)
        engine.on("close", on_close)
        self.emit("open")
        for socket in self._active_sockets():
            if self._generation != generation:
                break
            socket._on_open()
        if callback is not None and self._generation == generation:
            callback(None)

    def _maybe_reconnect_on_open(self) -> None:
        # Only on a first connection (a reconnection loop handles its own failures).
        if not self._reconnecting and self.reconnection and self._backoff.attempts == 0:
            self._reconnect()

    # -- traffic ---------------------------------------------------------------------------

    def _on_data(self, data: str | bytes) -> None:
        try:
            packet = self._decoder.feed(data)
        except SocketIOParseError as e:
            log.warn("bad Socket.IO packet from the server: {why}", why=e)
            self._on_close("parse error", e)
            return
        if packet is None:
            return
        socket = self._nsps.get(packet.nsp)
        if socket is None or not socket.active:
            log.debug("packet for namespace {nsp}, not joined", nsp=packet.nsp)
            return
        socket._on_packet(packet)

    def _write(self, encoded: Sequence[str | bytes]) -> None:
        engine = self.engine
        if engine is not None:
            engine.send_all(encoded)

    def _active_sockets(self) -> list[ClientSocket]:
        return [s for s in self._nsps.values() if s.active]

    # -- closing ---------------------------------------------------------------------------

    def _destroy(self, socket: ClientSocket) -> None:
        # A socket went inactive: close when none is left.
        if not self._active_sockets():
            self._close()

    def _cleanup(self) -> None:
        self._generation += 1
        for timer in self._timers:
            if timer.active():
                timer.cancel()
        self._timers = []
        self._decoder.reset()

    def _close(self) -> None:
        self._skip_reconnect = True
        self._reconnecting = False
        self._on_close("forced close")

    def _on_close(self, reason: str, description: Any = None) -> None:
        log.info("connection closed ({reason})", reason=reason)
        self._cleanup()
        engine = self.engine
        if engine is not None:
            engine.close()
        self._backoff.reset()
        was_closed = self.state is ManagerState.CLOSED
        self.state = ManagerState.CLOSED
        if not was_closed:
            self.emit("close", reason, description)
            for socket in self._active_sockets():
                socket._on_close(reason, description)
        if self.reconnection and not self._skip_reconnect:
            self._reconnect()

    def wait_released(self) -> Deferred[None]:
        """Fire once every closed connection's I/O is over (never fails)."""
        engines = [e for e in self._engines if e is not self.engine or not self.active]
        if not engines:
            return succeed(None)
        return gatherResults([e.wait_released() for e in engines]).addCallback(lambda _: None)

    # -- reconnecting ----------------------------------------------------------------------

    def _reconnect(self) -> None:
        if self._reconnecting or self._skip_reconnect:
            return
        if self._backoff.attempts >= self.reconnection_attempts:
            log.info("reconnection failed")
            self._backoff.reset()
            self._reconnecting = False
            self.emit("reconnect_failed")
            error = ConnectError("reconnect failed")
            for socket in list(self._nsps.values()):
                socket._fire_waiters(error)
            return
        delay = self._backoff.duration()
        log.info("reconnecting in {delay} s", delay=delay)
        self._reconnecting = True
        self._timers.append(self.clock.callLater(delay, self._attempt))

    def _attempt(self) -> None:
        if self._skip_reconnect:
            return
        self.emit("reconnect_attempt", self._backoff.attempts)
        if self._skip_reconnect:
            return
        self.open(self._attempt_done)

    def _attempt_done(self, error: ConnectError | None) -> None:
        if error is not None:
            self._reconnecting = False
            self._reconnect()
            self.emit("reconnect_error", error)
        else:
            attempts = self._backoff.attempts
            self._reconnecting = False
            self._backoff.reset()
            self.emit("reconnect", attempts)


# ---- the client ---------------------------------------------------------------------------


class Client:
    """A Socket.IO client: a :class:`Manager` and its ``"/"`` socket.

    ``client.on``, ``on_any``, ``emit``, ``emit_with_ack``, ``timeout``, ``volatile``,
    ``id``, ``connected`` and ``recovered`` are those of the ``"/"`` socket;
    :meth:`socket` gives the others.  ``client.on`` also takes the manager's reconnection
    events (``"reconnect_attempt"``, ``"reconnect"``, ``"reconnect_error"``,
    ``"reconnect_failed"``); ``client.io.on`` has all the manager's events.

    :param reconnection: reconnect after a lost connection (Node: on).
    :param reconnection_attempts: attempts before ``reconnect_failed`` (``None``: no limit).
    :param reconnection_delay: the first delay, in seconds (Node: 1).
    :param reconnection_delay_max: the largest delay, in seconds (Node: 5).
    :param randomization_factor: the jitter, from 0 to 1 (Node: 0.5).
    :param timeout: seconds a connection attempt may take (Node: 20); ``None``: no limit.
    :param ack_timeout: the default timeout of :meth:`emit_with_ack`, in seconds (``None``:
        none).
    :param retries: resend each emit until acknowledged, up to this many more times (0: off).
    :param extra_headers: HTTP headers for every request and the WebSocket handshake.
    :param clock: the clock for every timer (default: the reactor).
    :param reactor: the reactor for the network (default: the global reactor).
    :param http: the HTTP client for polling (treq's API; default: treq on a persistent
        pool).
    :param tls: the TLS policy for ``https`` / ``wss`` (default: the system's trust roots).
    :param transport_factory: builds the Engine.IO transports instead (for tests).
    :param random: a function giving floats in ``[0, 1)``, for the jitter.
    :param max_payload: the largest message accepted from the server, in bytes.
    :param close_timeout: seconds a close may take before it is forced.
    """

    def __init__(
        self,
        *,
        reconnection: bool = True,
        reconnection_attempts: int | None = None,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        timeout: float | None = 20.0,
        ack_timeout: float | None = None,
        retries: int = 0,
        extra_headers: Mapping[str, str] | None = None,
        clock: IReactorTime | None = None,
        reactor: Any = None,
        http: Any = None,
        tls: IPolicyForHTTPS | None = None,
        transport_factory: TransportFactory | None = None,
        random: Callable[[], float] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        close_timeout: float = 2.0,
    ) -> None:
        if clock is None:
            if reactor is None:
                from twisted.internet import reactor as global_reactor

                reactor = global_reactor
            clock = cast("IReactorTime", reactor)
        #: the manager: the connection and its reconnection
        self.io = Manager(
            reconnection=reconnection, reconnection_attempts=reconnection_attempts,
            reconnection_delay=reconnection_delay, reconnection_delay_max=reconnection_delay_max,
            randomization_factor=randomization_factor, timeout=timeout,
            ack_timeout=ack_timeout, retries=retries, extra_headers=extra_headers, clock=clock,
            reactor=reactor, http=http, tls=tls, transport_factory=transport_factory,
            random=random if random is not None else _random.random, max_payload=max_payload,
            close_timeout=close_timeout,
        )
        self._main = self.io.socket("/")

    def __repr__(self) -> str:
        return f"<Client {self.io.state.value} {sorted(self.io._nsps)}>"

    # -- connecting ------------------------------------------------------------------------

    def connect(
        self,
        url: str,
        namespaces: str | Iterable[str] | None = None,
        auth: Auth = None,
        transports: Iterable[str] = ("polling", "websocket"),
        path: str = "/socket.io",
        *,
        query: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> Deferred[None]:
        """Connect to *url* and join *namespaces*.

        :param url: ``http(s)://host:port`` (or ``ws(s)://``); a path in it names the
            namespace when *namespaces* is not given (``http://host/chat``, as Node's
            ``io()``), and its query string is sent.
        :param namespaces: the namespaces to join (default: ``["/"]``).
        :param auth: the CONNECT payload of each: a dict, or a callable returning one (or a
            Deferred or coroutine of one), called on every (re)connection.
        :param transports: ``("polling", "websocket")`` (polling, then upgrade),
            ``("websocket",)`` or ``("polling",)``.
        :param path: the server's endpoint path.
        :param query: more query parameters.
        :param retry: whether a failed first attempt goes on with the reconnection policy;
            by default it fails the Deferred and leaves the client disconnected.
        :returns: a Deferred that fires once every namespace is joined, or fails with a
            :class:`~txsio.ConnectError` (the server's refusal with its ``message`` and
            ``data``, or the connection failure), the client then disconnected.  Cancelling
            it disconnects.  Once connected, a lost connection is reconnected by the policy.
        """
        if self.io.active or any(s.active for s in self.io._nsps.values()):
            return fail(RuntimeError("already connected or connecting: disconnect() first"))
        parts = urllib.parse.urlsplit(url)
        if namespaces is None:
            namespaces = [parts.path] if parts.path not in ("", "/") else ["/"]
        elif isinstance(namespaces, str):
            namespaces = [namespaces]
        names = list(dict.fromkeys(namespaces))
        if not names:
            return fail(ValueError("no namespaces"))
        try:
            self.io._configure(urllib.parse.urlunsplit(parts._replace(path="")), path,
                               transports, query)
        except (ValueError, TypeError) as e:
            return fail(e)
        sockets = [self.io.socket(name) for name in names]
        for socket in sockets:
            if auth is not None:
                socket.auth = auth
        waiting = [socket._wait_connected(retry) for socket in sockets]
        result: Deferred[None] = Deferred(lambda _: self._abandon(sockets))
        for socket in sockets:
            socket._open()

        def connected(_: object) -> None:
            if not result.called:
                result.callback(None)

        def failed(failure: Failure) -> None:
            failure = failure.value.subFailure if isinstance(failure.value, FirstError) \
                else failure
            self._abandon(sockets)
            if not result.called:
                result.errback(failure)

        gatherResults(waiting, consumeErrors=True).addCallbacks(connected, failed)
        return result

    def _abandon(self, sockets: Sequence[ClientSocket]) -> None:
        for socket in sockets:
            if socket.active or socket.connected:
                socket.disconnect()
        if self.io.active and not self.io._active_sockets():
            self.io._close()

    def socket(self, nsp: str, auth: Auth = None) -> ClientSocket:
        """The socket of namespace *nsp*, made on first use (and connected at once if the
        client is connected or connecting).

        :param nsp: the namespace, ``"/chat"``.
        :param auth: its CONNECT payload (default: none), as for :meth:`connect`.
        """
        return self.io.socket(nsp, auth)

    def disconnect(self) -> Deferred[None]:
        """Leave every namespace and close the connection; no reconnection.

        :returns: a Deferred that fires once the connection's I/O is over (never fails).
        """
        for socket in list(self.io._nsps.values()):
            if socket.active or socket.connected:
                socket.disconnect()
        if self.io.active:
            self.io._close()
        return self.io.wait_released()

    def close(self) -> Deferred[None]:
        """Same as :meth:`disconnect`."""
        return self.disconnect()

    # -- the "/" socket --------------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The ``"/"`` socket's id (``None`` while not connected)."""
        return self._main.id

    @property
    def connected(self) -> bool:
        """Whether the ``"/"`` socket is connected."""
        return self._main.connected

    @property
    def recovered(self) -> bool:
        """Whether the ``"/"`` socket's last connection recovered its session."""
        return self._main.recovered

    @property
    def transport(self) -> str | None:
        """The current transport's name (``"polling"``, ``"websocket"``), or ``None``."""
        return self.io.transport

    @overload
    def on(self, event: str) -> Callable[[_F], _F]: ...

    @overload
    def on(self, event: str, handler: _F) -> _F: ...

    def on(self, event: str, handler: _F | None = None) -> _F | Callable[[_F], _F]:
        """Register *handler* on the ``"/"`` socket (or, for the ``reconnect*`` events, on
        the manager); without *handler*, return a decorator."""
        target: Any = self.io if event in _CLIENT_MANAGER_EVENTS else self._main
        if handler is None:
            return cast("Callable[[_F], _F]", target.on(event))
        return cast("_F", target.on(event, handler))

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        """Remove *handler* (or every handler) of *event*."""
        if event in _CLIENT_MANAGER_EVENTS:
            self.io.off(event, handler)
        else:
            self._main.off(event, handler)

    def on_any(self, handler: _F) -> _F:
        """Register ``handler(event, *args)`` for every event the server sends on ``"/"``."""
        return self._main.on_any(handler)

    def off_any(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove *handler* (or every catch-all handler)."""
        self._main.off_any(handler)

    def emit(self, event: str, *args: Any) -> None:
        """Emit on the ``"/"`` socket (see :meth:`ClientSocket.emit`)."""
        self._main.emit(event, *args)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event on the ``"/"`` socket."""
        self._main.send(*args)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit on ``"/"`` and return a Deferred of the ack (see
        :meth:`ClientSocket.emit_with_ack`)."""
        return self._main.emit_with_ack(event, *args)

    def timeout(self, seconds: float) -> _Emitter:
        """``client.timeout(5).emit_with_ack(...)`` on the ``"/"`` socket."""
        return self._main.timeout(seconds)

    @property
    def volatile(self) -> _Emitter:
        """``client.volatile.emit(...)`` on the ``"/"`` socket."""
        return self._main.volatile

