"""One Engine.IO session: handshake, heartbeat, upgrade, send queue and close reasons.

The session does not know which transport it talks over.  A transport object
(:class:`SessionTransport`) hands it what the peer sent through one entry,
:meth:`EngineSession.receive`, and takes what the session writes through one entry,
:meth:`SessionTransport.send`; the session owns every timer, through the clock it is given.
The layer above (Socket.IO's :class:`~txsio.server.Connection`) is the session's
:class:`SessionListener`: the session calls it directly for each message and once when it
closes.  Users of plain Engine.IO register handlers instead (``session.on("message", f)``);
both are called, the listener first.

Theory of operation
-------------------
States (:class:`SessionState`)::

    OPEN ──close()──► CLOSING ──close packet delivered (or close_timeout)──► CLOSED
      │                                                                       ▲
      └── ping timeout / transport closed / transport error / parse error ────┘

- ``OPEN``: packets flow both ways.  Outgoing packets go into the send queue, which is written
  to the transport whenever the transport is *writable* (a WebSocket while its peer reads;
  polling while a GET is pending).
- ``CLOSING``: :meth:`EngineSession.close` was called.  The queue is flushed, then the transport
  is asked to close gracefully: a WebSocket closes at once; polling answers the pending GET (or
  the next one) with a close packet and reports :meth:`EngineSession.close_delivered`.
  Incoming packets are ignored.  ``close`` fires with ``"forced close"``.
- ``CLOSED``: terminal.  Timers are cancelled, the queue is dropped, ``close`` has fired once.

Heartbeat (EIO v4): the server sends ``ping`` every ``ping_interval``; a client that does not
answer ``pong`` within ``ping_timeout`` of a ping is closed with ``"ping timeout"`` — so a
silent client goes at ``ping_interval + ping_timeout``, by a timer, with no extra grace.
(EIO v3: the client pings; the server answers ``pong`` and closes a client silent for
``ping_interval + ping_timeout``.)

Send buffer bound: what waits in the send queue is counted in bytes
(:attr:`~EngineSession.buffered_bytes`: text in characters, a byte for each packet's type).  A
WebSocket stops being writable when its TCP transport pauses it (Twisted's own buffer is full:
the peer does not read as fast as the server writes), so the queue holds what the peer has not
taken, and a flush writes only what the transport takes before it pauses again (it reports the
rest, which stays queued).  A queue past ``max_buffered_bytes`` closes the session with ``"send
buffer full"`` (:attr:`CloseReason.SEND_BUFFER_FULL`), logged once: one client that stops
reading never holds more than the bound of the server's memory.  The Socket.IO layer drops
volatile packets while the transport is not writable, so they never fill the queue.  While the
queue holds more than half the bound (:attr:`EngineSession.congested`), a polling transport
keeps the client's next POST waiting until a GET takes the queue; a WebSocket stops reading
whenever it is paused: a client that does not read what the server sends is not read either.

Upgrade (polling → WebSocket): a WebSocket that arrives with the session's sid becomes the
*probe* transport.  The client sends ``ping probe``; the session answers ``pong probe`` on the
probe and releases any pending polling GET with a ``noop``; later GETs during the upgrade get a
``noop`` at once.  The client then sends ``upgrade``: the WebSocket becomes the session's
transport, the polling transport is discarded and the queue flushes through the WebSocket.
Any other packet on the probe, the probe closing, or ``upgrade_timeout`` passing abandons the
upgrade (the probe is closed; the session continues on polling).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

from twisted.logger import Logger

from .._events import EventEmitter
from .._timers import call_later
from .._twisted import cancel_call
from ._compression import DeflateOptions, HttpCompression
from .errors import CloseReason, TransportError
from .packet import Packet, PacketType
from .wire import open_payload, wire_format

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from .._stats import EngineStats

__all__ = [
    "CloseReason",
    "EngineOptions",
    "EngineSession",
    "Outgoing",
    "SessionListener",
    "SessionState",
    "SessionTransport",
    "SharedMessage",
]

log = Logger()

_NOOP = Packet(PacketType.NOOP)


def _default_transports() -> tuple[str, ...]:
    return ("polling", "websocket")


@dataclass(frozen=True)
class EngineOptions:
    """The options of an Engine.IO server, in seconds and bytes (milliseconds only on the wire).

    Defaults equal Node's ``engine.io``.  :class:`~txsio.engineio.EngineServer` documents each.
    """

    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_http_buffer_size: int = 1_000_000
    transports: tuple[str, ...] = field(default_factory=_default_transports)
    allow_upgrades: bool = True
    upgrade_timeout: float = 10.0
    close_timeout: float = 30.0
    allow_eio3: bool = False
    max_payload_packets: int = 10_000
    allow_jsonp: bool = False
    max_buffered_bytes: int = 4 * 1024 * 1024
    #: polling responses' compression (``None``: off); Node's default is on
    http_compression: HttpCompression | None = field(default_factory=HttpCompression)
    #: WebSocket messages' compression (``None``: off, Node's default)
    per_message_deflate: DeflateOptions | None = None

    def __post_init__(self) -> None:
        if self.ping_interval <= 0 or self.ping_timeout <= 0:
            raise ValueError("ping_interval and ping_timeout must be positive")
        if self.max_http_buffer_size <= 0:
            raise ValueError("max_http_buffer_size must be positive")
        if self.max_buffered_bytes <= 0:
            raise ValueError("max_buffered_bytes must be positive")
        unknown = set(self.transports) - {"polling", "websocket"}
        if unknown or not self.transports:
            raise ValueError(f"transports must be a non-empty subset of polling, websocket: "
                             f"{sorted(unknown)!r}")


class SharedMessage(Protocol):
    """A message encoded once for many sessions (a broadcast), handed to each transport.

    Socket.IO's :class:`~txsio.adapter.EncodedPacket` is one.
    """

    def prepared_frame(self, factory: Any) -> Any:
        """Its WebSocket frame prepared once by ``factory`` (Autobahn's ``prepareMessage``),
        or ``None`` when it has none."""


#: What a session hands :meth:`SessionTransport.send`: packets to write now, one message's
#: payload (``str`` text, ``bytes`` binary), or a :class:`SharedMessage`.
Outgoing = Union[list[Packet], str, bytes, SharedMessage]  # noqa: UP007


@runtime_checkable
class SessionTransport(Protocol):
    """What a session needs from a transport (polling, WebSocket, or a test's
    :class:`~txsio.testing.MemoryTransport`).

    The transport calls the session's :meth:`~EngineSession.receive` with what the peer sent,
    and reports its own life with :meth:`~EngineSession.transport_ready`,
    :meth:`~EngineSession.transport_closed`, :meth:`~EngineSession.transport_error`,
    :meth:`~EngineSession.parse_error` and :meth:`~EngineSession.close_delivered`.  The
    session calls :meth:`send` and :meth:`close`, and reads :attr:`writable`.
    """

    #: the transport's name for the peer and the logs: ``"polling"`` or ``"websocket"``
    name: str
    #: the transports a session on this one may upgrade to (polling: ``("websocket",)``)
    upgrades_to: tuple[str, ...]

    @property
    def writable(self) -> bool:
        """Whether :meth:`send` may be given packets now (not while the peer is not reading:
        the transport calls :meth:`~EngineSession.transport_ready` when it is again)."""

    def send(self, data: Outgoing) -> bool:
        """Write ``data`` to the peer, if the transport can now: the one way out.

        - packets (a list): written in order; the session only sends them while
          :attr:`writable`.  A transport that can take only the first ones now (a WebSocket
          whose TCP transport paused it midway) removes those it wrote from the list and
          returns ``False``: the rest stays queued until :meth:`~EngineSession.transport_ready`.
        - a message's payload (``str`` or ``bytes``): written at once as one message packet if
          the transport can (an open WebSocket);
        - a :class:`SharedMessage`: its frame prepared once for every recipient, if the
          transport can.

        :returns: whether it was written (all of it); ``False`` makes the session queue the
            message (or the shared message's packets, or the packets left in the list) until
            the transport is writable.
        """

    def close(self, *, graceful: bool) -> bool:
        """Close the transport.

        ``graceful``: deliver a close packet first (polling answers the pending GET, or the next
        one, with it, and reports :meth:`~EngineSession.close_delivered`); otherwise stop now.

        :returns: whether the transport is closed now (a WebSocket); ``False`` while a close
            packet waits for its delivery.
        """


@runtime_checkable
class SessionListener(Protocol):
    """What the layer above an Engine.IO session (Socket.IO's
    :class:`~txsio.server.Connection`) is told by the session, directly."""

    def on_message(self, data: str | bytes) -> None:
        """A message arrived: ``str`` text, ``bytes`` binary."""

    def on_close(self, reason: str) -> None:
        """The session closed (once), for ``reason`` (a :class:`CloseReason` or the reason
        given to :meth:`~EngineSession.close`); its detail is the session's
        :attr:`~EngineSession.close_description`, set by then."""


class SessionState(enum.Enum):
    """The states of :class:`EngineSession`; the module docstring gives the transitions."""

    #: packets flow both ways
    OPEN = "open"
    #: the server asked to close; the close packet is on its way
    CLOSING = "closing"
    #: terminal
    CLOSED = "closed"


# The states and the message type as module globals for the per-message paths: reading an
# enum member through its class (``SessionState.OPEN``) costs several times a global's.
_OPEN = SessionState.OPEN
_CLOSED = SessionState.CLOSED
_MESSAGE = PacketType.MESSAGE


class EngineSession(EventEmitter):
    """One Engine.IO session.

    Events, for plain Engine.IO users' handlers: ``"message"`` (``data``: ``str`` or
    ``bytes``), ``"close"`` (``reason``: a :class:`CloseReason` or the reason given to
    :meth:`close`), ``"upgrading"`` and ``"upgrade"`` (the new transport's name),
    ``"heartbeat"``.  The layer above is told first, through :attr:`listener`.

    :param sid: the session id.
    :param options: the server's options.
    :param protocol: the Engine.IO protocol revision, 3 or 4.
    :param transport: the transport the session starts on.
    :param clock: the clock for every timer.
    :param request: what the handshake request carried (headers, query, address...), for the
        layers above; opaque to the session.
    :param stats: its engine's counters, where an abandoned upgrade is counted
        (``upgrade_failures``), or ``None``.

    :ivar listener: the :class:`SessionListener` the session calls for each message and when
        it closes (Socket.IO's connection sets itself here), or ``None``.
    :ivar wire: the :class:`~txsio.engineio.wire.WireFormat` of ``protocol``.
    """

    # A session lives as long as its client: its state in slots, no attribute dict unless
    # someone sets an attribute of their own or it closes (``__dict__``, made then).
    __slots__ = ("__dict__", "__weakref__", "_clock", "_close_timer", "_on_closed",
                 "_ping_timer", "_probe", "_probed", "_queue", "_queued_bytes", "_stats",
                 "_timeout_timer", "_upgrade_timer", "close_description", "close_reason", "id",
                 "listener", "options", "protocol", "request", "state", "transport", "upgraded",
                 "wire")

    def __init__(
        self,
        sid: str,
        options: EngineOptions,
        protocol: int,
        transport: SessionTransport,
        *,
        clock: IReactorTime,
        request: Any = None,
        stats: EngineStats | None = None,
    ) -> None:
        super().__init__()
        self.id = sid
        self.options = options
        self.protocol = protocol
        self.wire = wire_format(protocol)
        self.transport = transport
        self.request = request
        self._stats = stats
        self.listener: SessionListener | None = None
        self.state = SessionState.OPEN
        self.upgraded = False
        self.close_reason: str | None = None
        #: the detail of :attr:`close_reason`, as Node's ``close`` event's description: a
        #: :class:`~txsio.engineio.client.TransportError` for ``"transport error"``, else
        #: ``None``
        self.close_description: TransportError | None = None
        self._clock = clock
        self._queue: list[Packet] = []
        self._queued_bytes = 0
        self._probe: SessionTransport | None = None
        self._probed = False
        self._upgrade_timer: IDelayedCall | None = None
        self._ping_timer: IDelayedCall | None = None
        self._timeout_timer: IDelayedCall | None = None
        self._close_timer: IDelayedCall | None = None
        self._on_closed: list[Callable[[EngineSession, str], None]] = []

    # -- opening ---------------------------------------------------------------------------

    def open(self, upgrades: list[str]) -> None:
        """Queue the open packet and start the heartbeat.

        :param upgrades: the transports this session may upgrade to (sent to the client).
        """
        opts = self.options
        if self.wire.server_pings:
            self._schedule_ping()
        else:
            self._reset_v3_timeout()
        self._enqueue([Packet(PacketType.OPEN, open_payload(
            self.id, upgrades, opts.ping_interval, opts.ping_timeout, opts.max_http_buffer_size))])

    def add_close_callback(self, callback: Callable[[EngineSession, str], None]) -> None:
        """Have ``callback(session, reason)`` run when the session closes, before ``close``.

        Used by the server to drop the session from its table.
        """
        self._on_closed.append(callback)

    @property
    def upgrading(self) -> bool:
        """Whether a WebSocket probe is in progress."""
        return self._probe is not None

    @property
    def buffered_bytes(self) -> int:
        """The bytes waiting in the send queue for the client (text counted in characters, a
        byte for each packet's type): what the transport could not take yet.  Past
        ``max_buffered_bytes`` the session closes with ``"send buffer full"``.

        A WebSocket's TCP transport holds at most about 64 KiB more (Twisted's own buffer)
        plus the one message whose write filled it.
        """
        return self._queued_bytes

    @property
    def congested(self) -> bool:
        """Whether more than half of ``max_buffered_bytes`` waits in the send queue: a
        polling transport then keeps the client's POST waiting until a GET takes the queue."""
        return self._queued_bytes * 2 > self.options.max_buffered_bytes

    # -- sending ---------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Send a message (``str`` as text, ``bytes`` as binary); ignored once closing.

        :param data: the message.
        """
        if self.state is not _OPEN:
            return
        if not self._queue:
            # The hot path: a transport that can write one message now does so, with no packet
            # object and no queue (a WebSocket whose peer reads; polling always queues).
            if self.transport.send(data):
                return
        self._enqueue([Packet(_MESSAGE, data)], len(data) + 1)

    def send_packets(self, packets: list[Packet]) -> None:
        """Queue several packets at once and flush; ignored once closing.

        :param packets: the packets, in order.
        """
        if self.state is not _OPEN:
            return
        self._enqueue(packets)

    def send_encoded(self, packets: list[Packet], frame: SharedMessage) -> None:
        """Send message packets encoded once for many sessions (a broadcast).

        On an idle WebSocket the transport may write the frame of ``frame`` prepared once for
        every recipient (its ``send(frame)`` returning true); otherwise the packets are queued
        as usual.

        :param packets: the message packets.
        :param frame: the broadcast's encoded packet.
        """
        if self.state is not _OPEN:
            return
        if not self._queue and self.transport.send(frame):
            return
        self._enqueue(packets)

    def _enqueue(self, packets: list[Packet], size: int = -1) -> None:
        # Every packet goes through here, counted, then the queue is flushed; what the
        # transport cannot take stays, and past the bound the session closes.
        self._queue.extend(packets)
        self._queued_bytes += _size(packets) if size < 0 else size
        self.flush()
        if self._queued_bytes > self.options.max_buffered_bytes:
            self._overflow()

    def flush(self) -> None:
        """Write the queue to the transport if it is writable (as much as it takes)."""
        if self._queue and self.state is not _CLOSED and self.transport.writable:
            queue, self._queue = self._queue, []
            queued, self._queued_bytes = self._queued_bytes, 0
            handed = queue.copy() if len(queue) > 1 else queue
            if self.transport.send(queue) or not queue or self._dropped():
                return
            # The transport wrote the first packets only (its peer stopped reading) and removed
            # them from the list: the rest waits, before anything queued meanwhile.  Counting
            # what was written, not what is left, keeps draining a long queue piece by piece
            # linear.
            written = _size(handed[:len(handed) - len(queue)])
            queue.extend(self._queue)
            self._queue = queue
            self._queued_bytes += queued - written

    def _dropped(self) -> bool:
        # Whether the session closed (and dropped its queue) while the transport wrote.
        return self.state is _CLOSED

    def transport_ready(self, transport: SessionTransport) -> None:
        """Called by a transport that became writable (a polling GET arrived, a paused
        WebSocket drained)."""
        if transport is not self.transport:
            return
        if self._probed and self._probe is not None:
            # Upgrading: release the poll at once so the client can finish the upgrade.
            transport.send([_NOOP])
            return
        self.flush()

    def _overflow(self) -> None:
        log.warn("session {sid}: closing, {queued} bytes wait for a client that does not read "
                 "them (max_buffered_bytes is {limit})", sid=self.id,
                 queued=self._queued_bytes, limit=self.options.max_buffered_bytes)
        self._closed(CloseReason.SEND_BUFFER_FULL, graceful=False)

    # -- receiving -------------------------------------------------------------------------

    def receive(self, packet: Packet | str | bytes, transport: SessionTransport) -> None:
        """Handle what ``transport`` received from the client: the one way in.

        :param packet: a packet, or the payload of a message packet (``str`` text, ``bytes``
            binary), which a transport hands over without building a packet.
        :param transport: the transport it came from.
        """
        if not isinstance(packet, Packet):
            self.receive_message(packet, transport)
            return
        if transport is not self.transport:
            if transport is self._probe:
                self._receive_probe(packet, transport)
            return
        if self.state is not _OPEN:
            return
        if packet.type is not _MESSAGE:
            self._receive_control(packet)
            return
        data = packet.data
        assert data is not None
        self.receive_message(data, transport)

    def receive_message(self, data: str | bytes, transport: SessionTransport) -> None:
        """The same as :meth:`receive` with a message's payload: the hot path, which a
        WebSocket takes for every message (no packet built, the listener called directly,
        the ``"message"`` handlers only when there are some)."""
        if transport is not self.transport:
            if transport is self._probe:
                self._receive_probe(Packet(PacketType.MESSAGE, data), transport)
            return
        if self.state is not _OPEN:
            return
        listener = self.listener
        if listener is not None:
            try:
                listener.on_message(data)
            except Exception:
                log.failure("session {sid}: the listener failed on a message", sid=self.id)
        if self._handlers.get("message"):
            self.emit("message", data)

    def _receive_control(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype is PacketType.PONG:
            if not self.wire.server_pings:
                self._fail(CloseReason.TRANSPORT_ERROR, "pong from an EIO3 client")
                return
            cancel_call(self._timeout_timer)
            self._timeout_timer = None
            self._schedule_ping()
            self.emit("heartbeat")
        elif ptype is PacketType.PING:
            if self.wire.server_pings:
                self._fail(CloseReason.TRANSPORT_ERROR, "ping from an EIO4 client")
                return
            self._reset_v3_timeout()
            self._enqueue([Packet(PacketType.PONG, packet.data)])
            if self.state is SessionState.OPEN:
                self.emit("heartbeat")
        elif ptype is PacketType.CLOSE:
            self._closed(CloseReason.TRANSPORT_CLOSE, graceful=False)
        elif ptype is PacketType.NOOP:
            pass
        else:
            # OPEN and UPGRADE are never sent by a client on an established transport.
            self._fail(CloseReason.PARSE_ERROR, f"unexpected {ptype.name} packet")

    def parse_error(self, transport: SessionTransport, why: object) -> None:
        """Called by a transport that received something that does not parse."""
        if transport is self._probe:
            log.warn("bad packet on the upgrade probe of {sid}: {why}", sid=self.id, why=why)
            self._abandon_upgrade()
            return
        if transport is self.transport:
            self._fail(CloseReason.PARSE_ERROR, why)

    def transport_error(self, transport: SessionTransport, why: str) -> None:
        """Called by a transport whose client broke its rules (e.g. overlapping requests)."""
        if transport is self._probe:
            self._abandon_upgrade()
        elif transport is self.transport:
            self._fail(CloseReason.TRANSPORT_ERROR, why, TransportError(why))

    def transport_closed(self, transport: SessionTransport) -> None:
        """Called by a transport whose connection went away."""
        if transport is self._probe:
            self._abandon_upgrade(close_probe=False)
        elif transport is self.transport:
            if self.state is SessionState.CLOSING:
                self._closed(CloseReason.FORCED_CLOSE, graceful=False)
            else:
                self._closed(CloseReason.TRANSPORT_CLOSE, graceful=False)

    def close_delivered(self, transport: SessionTransport) -> None:
        """Called by a transport once the close packet of a graceful close is written."""
        if transport is self.transport and self.state is SessionState.CLOSING:
            self._closed(CloseReason.FORCED_CLOSE, graceful=False)

    # -- upgrade ---------------------------------------------------------------------------

    def can_upgrade(self) -> bool:
        """Whether a WebSocket may start probing now."""
        return (self.state is SessionState.OPEN and not self.upgraded
                and self._probe is None and bool(self.transport.upgrades_to))

    def begin_upgrade(self, probe: SessionTransport) -> None:
        """Make ``probe`` (a new WebSocket) the upgrade candidate."""
        if not self.can_upgrade():
            probe.close(graceful=False)
            return
        self._probe = probe
        self._probed = False
        self._upgrade_timer = self._clock.callLater(
            self.options.upgrade_timeout, self._upgrade_timed_out)

    def _receive_probe(self, packet: Packet, probe: SessionTransport) -> None:
        if packet.type is PacketType.PING and packet.data == "probe" and not self._probed:
            self._probed = True
            probe.send([Packet(PacketType.PONG, "probe")])
            if self.transport.writable:
                self.transport.send([_NOOP])
            self.emit("upgrading", probe.name)
        elif packet.type is PacketType.UPGRADE and self._probed and self.state is not \
                SessionState.CLOSED:
            cancel_call(self._upgrade_timer)
            self._upgrade_timer = None
            old = self.transport
            self._probe = None
            self._probed = False
            self.transport = probe
            self.upgraded = True
            old.close(graceful=False)
            self.emit("upgrade", probe.name)
            if self.state is SessionState.CLOSING:
                self._start_graceful_close()
            else:
                self.flush()
        else:
            log.warn("unexpected {ptype} packet on the upgrade probe of {sid}",
                     ptype=packet.type.name, sid=self.id)
            self._abandon_upgrade()

    def _upgrade_timed_out(self) -> None:
        self._upgrade_timer = None
        log.info("session {sid}: the client did not complete the upgrade", sid=self.id)
        self._abandon_upgrade()

    def _abandon_upgrade(self, *, close_probe: bool = True) -> None:
        probe, self._probe = self._probe, None
        probed, self._probed = self._probed, False
        cancel_call(self._upgrade_timer)
        self._upgrade_timer = None
        if probe is not None and self._stats is not None:
            self._stats.upgrade_failures += 1
        if probe is not None and close_probe:
            probe.close(graceful=False)
        if probed and self.state is SessionState.CLOSING:
            # close() waited for this upgrade to finish; close over polling instead.
            self._start_graceful_close()

    # -- heartbeat -------------------------------------------------------------------------

    def _schedule_ping(self) -> None:
        cancel_call(self._ping_timer)
        self._ping_timer = None
        # Queued with every session's ping of this interval, behind one reactor timer.
        self._ping_timer = call_later(self._clock, self.options.ping_interval, _ping, self)

    def _ping(self) -> None:
        self._ping_timer = None
        if self.state is not SessionState.OPEN:
            return
        self._timeout_timer = call_later(self._clock, self.options.ping_timeout, _timed_out,
                                         self)
        self._enqueue([Packet(PacketType.PING)])

    def _reset_v3_timeout(self) -> None:
        cancel_call(self._timeout_timer)
        self._timeout_timer = None
        self._timeout_timer = call_later(
            self._clock, self.options.ping_interval + self.options.ping_timeout, _timed_out, self)

    def _timed_out(self) -> None:
        self._timeout_timer = None
        log.info("session {sid}: ping timeout", sid=self.id)
        self._closed(CloseReason.PING_TIMEOUT, graceful=False)

    # -- closing ---------------------------------------------------------------------------

    def close(self, reason: str = CloseReason.FORCED_CLOSE) -> None:
        """Close the session from the server side, after the queued packets are delivered.

        The ``close`` event fires once the client got the close packet (or at once on a
        WebSocket).  Calling it again, or on a closed session, does nothing.

        :param reason: the reason the ``close`` event reports.
        """
        if self.state is not SessionState.OPEN:
            return
        self.state = SessionState.CLOSING
        self._graceful_reason = reason
        cancel_call(self._ping_timer)
        self._ping_timer = None
        cancel_call(self._timeout_timer)
        self._timeout_timer = None
        if self._probe is not None and not self._probed:
            self._abandon_upgrade()
        if self._probe is None:
            self._start_graceful_close()
        # else: the upgrade completes or is abandoned first (see _receive_probe).

    def terminate(self, reason: str) -> None:
        """Close the session now, without waiting for queued packets (server shutdown).

        A pending polling request still gets the close packet; a WebSocket is closed.

        :param reason: the reason the ``close`` event reports.
        """
        self._closed(reason, graceful=True)

    def _start_graceful_close(self) -> None:
        self.flush()
        if self.transport.close(graceful=True):
            # Closed at once (a WebSocket, or polling with a GET pending).
            self._closed(self._graceful_reason, graceful=None)
        elif self.state is SessionState.CLOSING:
            # The close packet goes out with the next GET, or never.
            self._close_timer = self._clock.callLater(self.options.close_timeout,
                                                      self._close_expired)

    def _close_expired(self) -> None:
        self._close_timer = None
        self._closed(self._graceful_reason, graceful=False)

    def _fail(self, reason: str, why: object, description: TransportError | None = None
              ) -> None:
        log.warn("closing session {sid} ({reason}): {why}", sid=self.id, reason=reason, why=why)
        self._closed(reason, graceful=False, description=description)

    def _closed(self, reason: str, *, graceful: bool | None,
                description: TransportError | None = None) -> None:
        # graceful: how to close the transport; None when it is closed already.
        if self.state is SessionState.CLOSED:
            return
        if self.state is SessionState.CLOSING and reason != CloseReason.PING_TIMEOUT:
            reason = self._graceful_reason
            description = None
        self.state = SessionState.CLOSED
        self.close_reason = reason
        self.close_description = description
        for timer in (self._ping_timer, self._timeout_timer, self._upgrade_timer,
                      self._close_timer):
            cancel_call(timer)
        self._ping_timer = self._timeout_timer = self._upgrade_timer = self._close_timer = None
        self._queue = []
        self._queued_bytes = 0
        probe, self._probe = self._probe, None
        if probe is not None:
            probe.close(graceful=False)
        if graceful is not None:
            self.transport.close(graceful=graceful)
        for callback in self._on_closed:
            callback(self, reason)
        if self.listener is not None:
            _call_logged(self.listener.on_close, reason, self.id)
        self.emit("close", reason)

    _graceful_reason: str = CloseReason.FORCED_CLOSE


def _size(packets: list[Packet]) -> int:
    """What ``packets`` count for against ``max_buffered_bytes``: each payload's length (text
    in characters: exact for ASCII, which JSON mostly is) and a byte for each type."""
    total = len(packets)
    for packet in packets:
        data = packet.data
        if data is not None:
            total += len(data)
    return total


def _call_logged(callback: Callable[[str], None], arg: str, sid: str) -> None:
    # The layer above failing must not stop the session's own work (nor users' handlers).
    try:
        callback(arg)
    except Exception:
        log.failure("session {sid}: its listener failed", sid=sid)


# The heartbeat timers' callbacks: plain functions, so a queued timer holds no bound method.
def _ping(session: EngineSession) -> None:
    session._ping()


def _timed_out(session: EngineSession) -> None:
    session._timed_out()
