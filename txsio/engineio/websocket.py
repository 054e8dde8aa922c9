"""The WebSocket transport: an Autobahn protocol feeding an Engine.IO session.

:class:`~txsio.engineio.resource.EngineIOResource` checks each WebSocket request once, then
hands the connection to Autobahn with :meth:`EngineWebSocketFactory.take_over`, together with
what it decided (an :class:`Admission`: the wire format, and the handshake record of a new
session or the session to upgrade).

Called by Autobahn (Twisted's reactor underneath): :meth:`EngineWebSocketProtocol.onConnect`,
``onOpen``, and through :class:`~txsio.engineio._wsfast.FastServerProtocol` (which reads and
writes the frames) the hooks ``text_received``, ``binary_received`` and ``closed``.

Called by the session: :attr:`~EngineWebSocketProtocol.writable`,
:meth:`~EngineWebSocketProtocol.send`, :meth:`~EngineWebSocketProtocol.close`.

Called by the TCP transport (Twisted's producer/consumer API): the connection registers a
streaming producer (:class:`_SendFlow`) with its transport when it is made, in place of
twisted.web's channel, whose request the connection was.  The transport pauses it when its
write buffer passes its ``bufferSize`` (64 KiB: the kernel's buffer is full, the peer is not
reading as fast as the server writes) and resumes it when the buffer is empty.  While paused
the connection is not :attr:`~EngineWebSocketProtocol.writable`: the session queues what it
sends (within ``max_buffered_bytes``) and volatile packets are dropped; and the connection
stops reading from the peer (backpressure on the receiving side: a client flooding events
whose acks it does not read is not read either).  When the transport resumes, the session
writes its queue until the transport pauses again, then reading resumes.  These are Twisted's
public signals only: nothing reads the transport's private buffer.

Counted in the engine's ``stats.websocket`` (:class:`~txsio._stats.TransportStats`): each
message read or written, and its payload's bytes (see :mod:`txsio.engineio._wsfast`), a
broadcast's prepared frame included.

Each Engine.IO packet travels in its own frame: text packets as text frames, binary messages
as binary frames (EIO v4: the raw bytes; v3: a ``0x04`` type byte first).  Autobahn's own
auto-ping is off (the Engine.IO heartbeat is ours), and Autobahn refuses frames and messages
larger than ``max_http_buffer_size`` before buffering them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.util import create_transport_details
from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.util import _is_tls_error, _maybe_tls_reason
from autobahn.wamp.types import TransportDetails
from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import IConsumer, IPushProducer, ITransport
from twisted.internet.protocol import connectionDone
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET
from zope.interface import implementer

from . import _wsopen
from ._compression import accept_deflate
from ._writepath import DirectWriter
from ._wsfast import FastServerProtocol
from ._wslean import LeanServerFactory, LeanServerProtocol
from ._wsopen import Opening, OpeningServerProtocol
from .errors import ErrorCode
from .packet import EngineIOParseError

if TYPE_CHECKING:
    from twisted.web.server import Request

    from ._compression import DeflateOptions
    from .handshake import HandshakeRequest
    from .server import EngineServer
    from .session import EngineSession, Outgoing
    from .wire import WireFormat

__all__ = ["AUTOBAHN_INTERNALS", "Admission", "EngineWebSocketFactory", "EngineWebSocketProtocol"]

#: Autobahn's open state, read as a global on the paths run for every message
_OPEN = WebSocketProtocol.STATE_OPEN


@dataclass(frozen=True)
class Admission:
    """What the resource decided about a WebSocket request, for the connection it becomes.

    :ivar wire: the wire format of the request's ``EIO``.
    :ivar handshake: for a new session, the record of its request.
    :ivar session: for an upgrade, the session to probe.
    :ivar headers: the headers the ``initial_headers`` / ``headers`` handlers added, for
        the response that accepts the WebSocket.
    """

    wire: WireFormat
    handshake: HandshakeRequest | None = None
    session: EngineSession | None = None
    headers: Mapping[str, str | list[str]] | None = None


@implementer(IPushProducer)
class _SendFlow:
    """The connection's producer, registered with its TCP transport: the transport pauses it
    when its write buffer is full and resumes it once the buffer is empty."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: EngineWebSocketProtocol) -> None:
        self._protocol = protocol

    def pauseProducing(self) -> None:
        """The peer does not read as fast as the server writes."""
        self._protocol.send_paused()

    def resumeProducing(self) -> None:
        """Everything written so far is in the kernel's hands."""
        self._protocol.send_resumed()

    def stopProducing(self) -> None:
        """The connection is gone; :meth:`EngineWebSocketProtocol.closed` tells the session."""


#: The Autobahn internals :class:`_Unlogged` touches (attributes of a server connection; and
#: ``create_transport_details``, ``TransportDetails``, ``_is_tls_error`` and
#: ``_maybe_tls_reason``, imported from where Autobahn's adapter imports them).
AUTOBAHN_INTERNALS: tuple[str, ...] = (
    "_transport_details", "peer", "is_server", "tcpNoDelay", "_connectionMade",
    "_connectionLost", "log",
    # EngineWebSocketProtocol._connectionMade
    "trafficStats", "state", "STATE_CONNECTING", "openHandshakeTimeout",
    "openHandshakeTimeoutCall", "onOpenHandshakeTimeout", "countConnections",
    "_batched_timer",
)


class _Unlogged(WebSocketServerProtocol):
    """Autobahn's Twisted adapter steps for a connection made and lost, without their debug
    lines: Autobahn formats their arguments (colour codes for the method's name, through
    ``click``) whether or not debug is logged, on every connect."""

    def connectionMade(self) -> None:
        """Autobahn's: the transport's details, no Nagle, then the protocol's own setup."""
        transport: Any = self.transport
        details = create_transport_details(transport, self.is_server)
        details.channel_framing = TransportDetails.CHANNEL_FRAMING_WEBSOCKET
        self._transport_details = details
        self.peer = details.peer
        try:
            transport.setTcpNoDelay(self.tcpNoDelay)  # type: ignore[attr-defined]
        except Exception:  # as Autobahn: a transport without it (a UNIX socket, a test's)
            pass
        self._connectionMade()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        """Autobahn's: a TLS failure is logged as an error; then the protocol's cleanup."""
        if _is_tls_error(reason.value):
            self.log.error(_maybe_tls_reason(reason.value))
        self._connectionLost(reason)  # type: ignore[arg-type]


# (mypy: Autobahn's two base classes annotate peer and _transport_details differently.)
class EngineWebSocketProtocol(FastServerProtocol, LeanServerProtocol,  # type: ignore[misc]
                              OpeningServerProtocol, _Unlogged):
    """One WebSocket connection: a new session, or an upgrade probe for a polling one.

    Once open it sheds what Autobahn keeps for nothing (see :mod:`txsio.engineio._wslean`).
    """

    name = "websocket"
    upgrades_to: tuple[str, ...] = ()
    factory: EngineWebSocketFactory

    session: EngineSession | None = None
    #: what the resource decided, until the connection opens
    admission: Admission | None = None
    _wire: WireFormat
    _closing = False
    #: whether the TCP transport paused the connection (its write buffer is full)
    paused = False
    #: the server's per_message_deflate, once the connection negotiated the extension
    deflate: DeflateOptions | None = None
    #: where a broadcast's prepared frame goes as it is, once open: the direct write path
    #: of a connection that compresses nothing and logs no octets (None: through Autobahn)
    _plain_direct: DirectWriter | None = None
    openHandshakeTimeout: float  # Autobahn's option (its factory's, on the options class)

    # -- called by Twisted and Autobahn ----------------------------------------------------

    def connectionMade(self) -> None:
        """Count in the engine's WebSocket counters; register as the transport's producer,
        in place of twisted.web's channel."""
        # Looked up once: the fast path adds to it for every message.
        self.traffic = self.factory.engine.stats.websocket
        super().connectionMade()
        consumer = IConsumer(self.transport)
        try:
            consumer.unregisterProducer()
        except RuntimeError:
            pass  # none was registered (a test's transport says so; Twisted's does not)
        consumer.registerProducer(_SendFlow(self), True)

    # Autobahn formats the arguments of its debug lines whether or not debug is logged: when
    # a connection is made, each of its options (``CONFIG_ATTRS``, copied from the factory
    # onto every connection) pretty-printed, a fifth of the server's work for a connect; when
    # it is lost, the reason's traceback.  The options are copied here, Autobahn is given
    # none to copy, and the server protocol's two steps around its base's (a debug line and
    # the factory's count of connections) are taken here without the line.
    CONFIG_ATTRS: list[str] = []

    def _connectionMade(self) -> None:
        # Autobahn's (WebSocketProtocol._connectionMade) also sets some thirty attributes to
        # their initial values and builds a UTF-8 validator: those values are the class's here
        # (_wslean's IDLE_STATE, the validator made on use), so only what differs is set, as
        # Autobahn sets it.
        factory = self.factory
        for name in WebSocketServerProtocol.CONFIG_ATTRS:
            if not hasattr(self, name):  # as Autobahn: an option set on the connection stays
                setattr(self, name, getattr(factory, name))
        self.trafficStats = TrafficStats()
        self.state = self.STATE_CONNECTING  # (LeanServerProtocol then sets the send queue)
        if self.openHandshakeTimeout > 0:
            self.openHandshakeTimeoutCall = factory._batched_timer.call_later(
                self.openHandshakeTimeout, self.onOpenHandshakeTimeout)
        factory.countConnections += 1

    def _connectionLost(self, reason: Any) -> None:
        WebSocketProtocol._connectionLost(self, reason)
        self.factory.countConnections -= 1

    def send_paused(self) -> None:
        """The TCP transport's write buffer is full: queue in the session, stop reading."""
        self.paused = True
        self._reading(False)

    def send_resumed(self) -> None:
        """The TCP transport's write buffer is empty: write the session's queue (until it
        fills again), then read again if it did not."""
        self.paused = False
        session = self.session
        if session is not None:
            session.transport_ready(self)
        if not self.paused:
            self._reading(True)

    def _reading(self, on: bool) -> None:
        # The TCP transport is the push producer of what the peer sends.
        if self._closing and not on:
            return  # closing: the peer's close frame must still be read
        producer = IPushProducer(self.transport, None)
        if producer is not None:
            if on:
                producer.resumeProducing()
            else:
                producer.pauseProducing()

    def onConnect(self, request: Any) -> Any:
        """Accept a connection the resource admitted (it checked the request already)."""
        admission = self.admission
        if admission is None:
            # Not through EngineIOResource, which checks every request before Autobahn sees it.
            raise ConnectionDeny(400, ErrorCode.BAD_REQUEST.message)
        self._wire = admission.wire
        if admission.headers:
            return None, dict(admission.headers)  # no subprotocol, and these headers
        return None

    def open_checked(self, opening: Opening) -> bool:
        """Accept an opening handshake the resource admitted and
        :func:`~txsio.engineio._wsopen.read_opening` read, without Autobahn reading it again;
        then the connection is open (see :mod:`~txsio.engineio._wsopen`).

        :returns: whether it opened.
        """
        admission = self.admission
        assert admission is not None
        self._wire = admission.wire
        return self.accept_opening(opening, admission.headers)

    def onOpen(self) -> None:
        """Start a new session, or offer this connection as an upgrade; then hold no more
        than an open connection needs."""
        self._start()
        self.shed()

    def _start(self) -> None:
        admission, self.admission = self.admission, None
        assert admission is not None
        extension = self._perMessageCompress
        deflate = self.factory.engine.options.per_message_deflate
        if extension is not None and deflate is not None:
            self.deflate = deflate.for_connection(bool(extension.server_no_context_takeover))
        if extension is None and not self.logOctets:
            self._plain_direct = self._direct
        session = admission.session
        if session is None:
            assert admission.handshake is not None
            self.session = self.factory.engine.create_session(
                admission.wire.revision, self, admission.handshake)
            return
        if not session.can_upgrade():
            self.close(graceful=True)
            return
        self.session = session
        session.begin_upgrade(self)

    def text_received(self, text: str) -> None:
        """A text frame: a message (the common case) or another packet."""
        session = self.session
        if session is None:
            return
        if text and text[0] == "4":
            # A text message (EIO v3 and v4 alike): handed over without building a packet.
            session.receive_message(text[1:], self)
            return
        try:
            packet = self._wire.decode_frame(text)
        except EngineIOParseError as e:
            session.parse_error(self, e)
            return
        session.receive(packet, self)

    def binary_received(self, payload: bytes) -> None:
        """A binary frame: a binary message."""
        session = self.session
        if session is None:
            return
        try:
            data = self._wire.decode_binary_frame(payload)
        except EngineIOParseError as e:
            session.parse_error(self, e)
            return
        session.receive_message(data, self)

    def closed(self, failure: str | None) -> None:
        """Tell the session its transport went away."""
        self._closing = True
        session, self.session = self.session, None
        if session is None:
            return
        if failure is not None:
            # Autobahn failed the connection: a bad frame, invalid UTF-8, a message over
            # max_http_buffer_size (Node's ws emits "error": "transport error").
            session.transport_error(self, failure)
        else:
            session.transport_closed(self)

    # -- called by the session -------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """A WebSocket takes packets while it is open and its TCP transport is not paused."""
        return not self._closing and not self.paused and self.state == _OPEN

    def send(self, data: Outgoing) -> bool:
        """Write ``data`` now: a message in one frame, each packet in its own frame, or a
        broadcast's frame prepared once (by ``data.prepared_frame``) for every recipient.

        Packets (a list) are written until the TCP transport pauses, the first one always
        (the session only hands them over while :attr:`writable`); those written are removed
        from the list, and the rest are left to the session.

        :returns: whether it was all written (not when closing or paused, nor a broadcast
            with no frame).
        """
        if self._closing or self.state != _OPEN:
            return False  # Autobahn is closing: its sendMessage would raise Disconnected
        if not isinstance(data, (str, bytes, list)):
            # A broadcast's frame, prepared once: the first case, the one per recipient.
            if self.paused:
                return False
            prepared = data.prepared_frame(self.factory)
            if prepared is None:
                return False
            direct = self._plain_direct
            if direct is not None and not self.send_queue:
                # What sendPreparedMessage would write (through sendData's common case).
                frame = prepared.payloadHybi
                direct.write(frame)
                self.trafficStats.outgoingOctetsWireLevel += len(frame)
            elif self.deflate is not None:
                # Compressed per connection (each has its own compressor): the threshold and
                # the message's flag decide, as for a message of its own.
                self.write_frame(prepared.payload, prepared.binary,
                                 getattr(data, "compress", True)
                                 and self.deflate.compresses(b"", len(prepared.payload)))
                return True
            else:
                self.sendPreparedMessage(prepared)
            traffic = self.traffic
            traffic.packets_out += 1
            # Autobahn keeps the payload it prepared (a frame prepared for compression too).
            traffic.bytes_out += len(prepared.payload)
            return True
        if self.paused and not isinstance(data, list):
            return False  # the session queues it (and the Socket.IO layer drops volatile ones)
        deflate = self.deflate
        if isinstance(data, str):
            payload = ("4" + data).encode("utf-8")
            self.write_frame(payload, False,
                             deflate is not None and deflate.compresses(data, len(payload)))
        elif isinstance(data, bytes):
            payload = self._wire.binary_prefix + data
            self.write_frame(payload, True,
                             deflate is not None and deflate.compresses(data, len(payload)))
        else:
            encode = self._wire.encode_frame
            for index, packet in enumerate(data):
                if index and self.paused:
                    del data[:index]
                    return False
                frame = encode(packet)
                payload = frame.encode("utf-8") if isinstance(frame, str) else frame
                self.write_frame(payload, not isinstance(frame, str),
                                 deflate is not None and packet.data is not None
                                 and deflate.compresses(packet.data, len(payload)))
        return True

    def close(self, *, graceful: bool) -> bool:
        """Close the connection with a normal closing handshake (at once, either way).

        Not graceful while the TCP transport is paused (a ping timeout, a send buffer past
        its bound): the close frame would wait behind what the peer does not read, so the
        TCP connection is aborted, and what Twisted buffered for it freed, at once.
        """
        if not self._closing:
            self._closing = True
            self.session = None
            if self.paused and not graceful and self.transport is not None:
                _abort(self.transport)
                return True
            # The peer's answer to the close frame must be read, even from a paused peer
            # (Autobahn's close handshake timeout bounds the wait).
            self._reading(True)
            self.sendClose(1000)
        return True


def _abort(transport: ITransport) -> None:
    # A TCP transport (TLS included) drops its buffer and closes now (abortConnection is
    # ITCPTransport's; looked up as Autobahn does, so that a test's transport may have it).
    abort = getattr(transport, "abortConnection", None)
    if abort is not None:
        abort()
    else:
        transport.loseConnection()


class EngineWebSocketFactory(LeanServerFactory):
    """Autobahn's factory for the WebSocket connections of one :class:`EngineServer`.

    Called by the resource: :meth:`take_over`.  Called by Autobahn: :meth:`buildProtocol`.
    """

    protocol = EngineWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, engine: EngineServer) -> None:
        super().__init__()
        self.engine = engine
        self._resource = WebSocketResource(self)
        self._admitting: Admission | None = None
        limit = engine.options.max_http_buffer_size
        self.setProtocolOptions(
            # The Engine.IO heartbeat is ours: no WebSocket-level pings.
            autoPingInterval=0,
            maxMessagePayloadSize=limit,
            maxFramePayloadSize=limit,
            # No timer for the opening handshake: take_over replays the whole request, checked
            # already, and onConnect answers at once, so the handshake is over before
            # take_over returns (a timer would be set and cancelled for every connect).
            openHandshakeTimeout=0,
            closeHandshakeTimeout=2,
        )
        deflate = engine.options.per_message_deflate
        if deflate is not None:
            self.setProtocolOptions(perMessageCompressionAccept=partial(
                accept_deflate, options=deflate, max_message_size=limit))

    def take_over(self, request: Request, admission: Admission) -> int | bytes:
        """Hand ``request``'s connection to Autobahn, admitted as ``admission``.

        A request Autobahn would accept as it is (:func:`~txsio.engineio._wsopen.read_opening`)
        is answered here and its connection opened at once; any other goes to Autobahn's
        ``WebSocketResource``, which builds the protocol and replays the request to it while
        this runs (so the protocol built now is this request's), and answers it.
        """
        if request.channel.transport is not None:  # (None: HTTP/2, Autobahn answers 426)
            opening = _wsopen.read_opening(request, self)
            if opening is not None:
                self._admitting = admission
                try:
                    protocol = self.buildProtocol(request.channel.transport.getPeer())
                finally:
                    self._admitting = None
                _wsopen.attach(protocol, request)
                if protocol.open_checked(opening):
                    # What came after the request (as Autobahn's resource replays it).
                    body = request.content.read() if request.content is not None else b""
                    if body:
                        protocol.dataReceived(body)
                return NOT_DONE_YET
        self._admitting = admission
        try:
            result: int | bytes = self._resource.render(request)
            return result
        finally:
            self._admitting = None

    def buildProtocol(self, addr: Any) -> Any:
        """A protocol for the connection being taken over, carrying its admission."""
        protocol = cast(EngineWebSocketProtocol, super().buildProtocol(addr))
        protocol.admission, self._admitting = self._admitting, None
        return protocol
