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

Each Engine.IO packet travels in its own frame: text packets as text frames, binary messages
as binary frames (EIO v4: the raw bytes; v3: a ``0x04`` type byte first).  Autobahn's own
auto-ping is off (the Engine.IO heartbeat is ours), and Autobahn refuses frames and messages
larger than ``max_http_buffer_size`` before buffering them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory
from autobahn.websocket.types import ConnectionDeny

from ._wsfast import FastServerProtocol
from .errors import ErrorCode
from .packet import EngineIOParseError

if TYPE_CHECKING:
    from twisted.web.server import Request

    from .handshake import HandshakeRequest
    from .server import EngineServer
    from .session import EngineSession, Outgoing
    from .wire import WireFormat

__all__ = ["Admission", "EngineWebSocketFactory", "EngineWebSocketProtocol"]


@dataclass(frozen=True)
class Admission:
    """What the resource decided about a WebSocket request, for the connection it becomes.

    :ivar wire: the wire format of the request's ``EIO``.
    :ivar handshake: for a new session, the record of its request.
    :ivar session: for an upgrade, the session to probe.
    """

    wire: WireFormat
    handshake: HandshakeRequest | None = None
    session: EngineSession | None = None


class EngineWebSocketProtocol(FastServerProtocol):
    """One WebSocket connection: a new session, or an upgrade probe for a polling one."""

    name = "websocket"
    upgrades_to: tuple[str, ...] = ()
    factory: EngineWebSocketFactory

    session: EngineSession | None = None
    #: what the resource decided, until the connection opens
    admission: Admission | None = None
    _wire: WireFormat
    _closing = False

    # -- called by Autobahn ----------------------------------------------------------------

    def onConnect(self, request: Any) -> Any:
        """Accept a connection the resource admitted (it checked the request already)."""
        admission = self.admission
        if admission is None:
            # Not through EngineIOResource, which checks every request before Autobahn sees it.
            raise ConnectionDeny(400, ErrorCode.BAD_REQUEST.message)
        self._wire = admission.wire
        return None

    def onOpen(self) -> None:
        """Start a new session, or offer this connection as an upgrade."""
        admission, self.admission = self.admission, None
        assert admission is not None
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
            session.receive(text[1:], self)
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
        session.receive(data, self)

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
        """A WebSocket takes packets whenever it is open."""
        return not self._closing and self.state == self.STATE_OPEN

    def send(self, data: Outgoing) -> bool:
        """Write ``data`` now: a message in one frame, each packet in its own frame, or a
        broadcast's frame prepared once (by ``data.prepared_frame``) for every recipient.

        :returns: whether it was written (not when closing, nor a broadcast with no frame).
        """
        if self._closing or self.state != self.STATE_OPEN:
            return False  # Autobahn is closing: its sendMessage would raise Disconnected
        if isinstance(data, str):
            self.write_frame(("4" + data).encode("utf-8"), False)
        elif isinstance(data, bytes):
            self.write_frame(self._wire.binary_prefix + data, True)
        elif isinstance(data, list):
            encode = self._wire.encode_frame
            for packet in data:
                frame = encode(packet)
                if isinstance(frame, str):
                    self.write_frame(frame.encode("utf-8"), False)
                else:
                    self.write_frame(frame, True)
        else:
            prepared = data.prepared_frame(self.factory)
            if prepared is None:
                return False
            self.sendPreparedMessage(prepared)
        return True

    def close(self, *, graceful: bool) -> bool:
        """Close the connection with a normal closing handshake (at once, either way)."""
        if not self._closing:
            self._closing = True
            self.session = None
            self.sendClose(1000)
        return True


class EngineWebSocketFactory(WebSocketServerFactory):
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
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
        )

    def take_over(self, request: Request, admission: Admission) -> int | bytes:
        """Hand ``request``'s connection to Autobahn, admitted as ``admission``.

        Autobahn's ``WebSocketResource`` builds the protocol and replays the request to it
        while this runs, so the protocol built now is this request's.
        """
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
