"""The base of the Engine.IO client transports, and what they tell their owner.

Called by :class:`~txsio.engineio.client.EngineClient`: :class:`ClientTransport`'s
:meth:`~ClientTransport.open`, :meth:`~ClientTransport.send`, :meth:`~ClientTransport.close`,
:meth:`~ClientTransport.pause`, :meth:`~ClientTransport.resume`,
:meth:`~ClientTransport.discard` and :meth:`~ClientTransport.wait_released`.  The transports
(:class:`~txsio.engineio.client.polling.HTTPPollingTransport`,
:class:`~txsio.engineio.client.websocket.WebSocketTransport`) subclass it and report to the
engine through its :class:`TransportListener` methods.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..._twisted import cancel_call
from ..errors import TransportError
from ..packet import Packet

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "ClientTransport",
    "TransportError",
    "TransportListener",
    "TransportState",
]

log = Logger()

#: The largest polling response or WebSocket message the client accepts, in bytes: 100 MiB,
#: the default ``maxPayload`` of Node's ``ws`` client.  A larger one is a transport error.
DEFAULT_MAX_PAYLOAD: int = 100 * 1024 * 1024


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
    :attr:`listener`, :attr:`query`.  Subclasses implement ``_do_open``, ``_do_close``,
    ``_write``, ``_cut`` (abort the I/O left) and ``_io_done`` (whether none is left), and may
    override ``_do_discard``, ``pause``, ``resume`` and ``_release_resources``; they report
    through ``_on_open``, ``_on_packet``, ``_on_error``, ``_on_close``, ``_on_drain``, and call
    ``_check_released`` whenever one of their requests or connections ends: once the
    transport is closed and ``_io_done``, the base releases it (``_release``, which fires
    :meth:`wait_released`).

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
        cancel_call(self._grace)
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



def describe_failure(failure: Failure) -> str:
    """The detail of a :class:`TransportError` for a failed connection or request."""
    return failure.getErrorMessage() or getattr(failure.type, "__name__", "error")
