"""The WebSocket transport: an Autobahn protocol feeding an Engine.IO session.

Called by Autobahn (Twisted's reactor underneath): :meth:`EngineWebSocketProtocol.onConnect`,
``onOpen``, ``onMessage``, ``onClose``.

Called by the session: :attr:`~EngineWebSocketProtocol.writable`,
:meth:`~EngineWebSocketProtocol.send`, :meth:`~EngineWebSocketProtocol.close`.

Each Engine.IO packet travels in its own frame: text packets as text frames, binary messages
as binary frames (EIO v4: the raw bytes; v3: a ``0x04`` type byte first).  Autobahn's own
auto-ping is off (the Engine.IO heartbeat is ours), and Autobahn refuses frames and messages
larger than ``max_http_buffer_size`` before buffering them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.types import ConnectionDeny
from twisted.internet.interfaces import ISSLTransport
from twisted.logger import Logger

from .errors import EngineRequestError
from .handshake import HandshakeRequest
from .packet import EngineIOParseError
from .wire import V4, WireFormat, wire_format

if TYPE_CHECKING:
    from .server import EngineServer
    from .session import EngineSession, Outgoing

__all__ = ["EngineWebSocketFactory", "EngineWebSocketProtocol"]

log = Logger()



def _unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (RFC 6455 section 5.3), via big ints."""
    n = len(payload)
    if not n:
        return b""
    repeats = n // 4 + 1
    key = int.from_bytes(mask * repeats, "big") >> (8 * (4 * repeats - n))
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


class EngineWebSocketProtocol(WebSocketServerProtocol):
    """One WebSocket connection: a new session, or an upgrade probe for a polling one."""

    name = "websocket"
    upgrades_to: tuple[str, ...] = ()
    factory: EngineWebSocketFactory

    session: EngineSession | None = None
    _wire: WireFormat = V4
    _handshake: HandshakeRequest | None = None
    _upgrade_sid: str | None = None
    _closing = False

    # -- called by Autobahn ----------------------------------------------------------------

    def onConnect(self, request: Any) -> Any:
        """Check the query again (the session may have gone since the resource checked it)."""
        server = self.factory.engine
        query = {k: v[0] for k, v in request.params.items() if v}
        try:
            protocol, _, session = server.check_request("GET", query, upgrade=True)
        except EngineRequestError as e:
            raise ConnectionDeny(e.status, e.message) from None
        self._wire = wire_format(protocol)
        assert self.transport is not None
        peer = self.transport.getPeer()
        self._handshake = HandshakeRequest(
            method="GET",
            url=request.path + ("?" + _query_string(request.params) if request.params else ""),
            headers=dict(request.headers),
            query=query,
            address=getattr(peer, "host", ""),
            secure=ISSLTransport.providedBy(self.transport),
        )
        if session is not None:
            self._upgrade_sid = session.id
        return None

    def onOpen(self) -> None:
        """Start a new session, or offer this connection as an upgrade."""
        server = self.factory.engine
        if self._upgrade_sid is None:
            assert self._handshake is not None
            self.session = server.create_session(self._wire.revision, self, self._handshake)
            return
        session = server.sessions.get(self._upgrade_sid)
        if session is None or not session.can_upgrade():
            self.close(graceful=True)
            return
        self.session = session
        session.begin_upgrade(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """A message Autobahn assembled (the path for what the fast path leaves to it)."""
        if isBinary:
            self._binary_message(payload)
        else:
            self._text_message(payload.decode("utf-8"))  # Autobahn validated the UTF-8

    def _text_message(self, text: str) -> None:
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

    def _binary_message(self, payload: bytes) -> None:
        session = self.session
        if session is None:
            return
        try:
            data = self._wire.decode_binary_frame(payload)
        except EngineIOParseError as e:
            session.parse_error(self, e)
            return
        session.receive(data, self)

    def dataReceived(self, data: bytes) -> None:
        """Read complete, small, unfragmented data frames directly; leave the rest to Autobahn.

        Theory of operation: almost every frame a Socket.IO client sends is one masked,
        unfragmented text or binary frame under 64 KiB, often several in one read.  While the
        connection is open and Autobahn holds no partial frame or message, such frames are
        unmasked and dispatched here, which skips Autobahn's per-frame machinery (a masker
        object, several callbacks and Deferreds, debug formatting) — most of the server's time
        under load.  Anything else — control frames (ping, pong, close), fragments, larger
        or oversized frames, invalid UTF-8, a frame cut by the read, or any state but open —
        goes to Autobahn from that byte on, which then handles it (and fails the connection
        where the RFC says so) exactly as it would have.
        """
        if (self.state != self.STATE_OPEN or self.data or self.current_frame is not None
                or self._perMessageCompress is not None or self.logOctets):
            self._dataReceived(data)
            return
        pos = 0
        end_of_data = len(data)
        limit = self._fast_limit
        while pos + 6 <= end_of_data:
            first = data[pos]
            second = data[pos + 1]
            if (first != 0x81 and first != 0x82) or second < 0x80:
                break  # not FIN + text/binary, or not masked
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                if start + 2 > end_of_data:
                    break
                length = (data[start] << 8) | data[start + 1]
                start += 2
            elif length == 127:
                break
            if length > limit:
                break
            end = start + 4 + length
            if end > end_of_data:
                break
            payload = _unmask(data[start + 4:end], data[start:start + 4])
            if first == 0x81:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # Autobahn fails the connection (1007)
                pos = end
                self._text_message(text)
            else:
                pos = end
                self._binary_message(payload)
            if self.state != self.STATE_OPEN:
                break
        if pos < end_of_data:
            self._dataReceived(data[pos:] if pos else data)

    @property
    def _fast_limit(self) -> int:
        # The largest payload the fast path reads: 16-bit lengths, within Autobahn's limits.
        limit = 65535
        for bound in (getattr(self, "maxMessagePayloadSize", 0),
                      getattr(self, "maxFramePayloadSize", 0)):
            if bound and bound < limit:
                limit = bound
        return limit

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Tell the session its transport went away."""
        # Autobahn leaves its close handshake timer behind when the peer drops the TCP
        # connection before answering our close frame: cancel it, or it outlives us.
        timer = getattr(self, "closeHandshakeTimeoutCall", None)
        if timer is not None:
            self.closeHandshakeTimeoutCall = None
            try:
                timer.cancel()
            except Exception:  # already fired or cancelled
                pass
        self._closing = True
        session, self.session = self.session, None
        if session is None:
            return
        if self.failedByMe:
            # Autobahn failed the connection: a bad frame, invalid UTF-8, a message over
            # max_http_buffer_size (Node's ws emits "error": "transport error").
            session.transport_error(self, f"WebSocket failed: {self.wasNotCleanReason}")
        else:
            session.transport_closed(self)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Autobahn's frame writer, minus its per-frame debug logging on the common path.

        Autobahn formats (colours) the arguments of a debug log line for every frame it
        writes, even with debug logging off: a tenth of the server's time under load.  The
        common case — an open connection, nothing queued, no chopping — writes directly.
        """
        transport = self.transport
        if (chopsize or sync or self.send_queue or getattr(self, "logOctets", True)
                or self.state != self.STATE_OPEN or transport is None):
            super().sendData(data, sync, chopsize)
            return
        transport.write(data)
        self.trafficStats.outgoingOctetsWireLevel += len(data)

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
            self._send_message(("4" + data).encode("utf-8"), False)
        elif isinstance(data, bytes):
            self._send_message(self._wire.binary_prefix + data, True)
        elif isinstance(data, list):
            encode = self._wire.encode_frame
            for packet in data:
                frame = encode(packet)
                if isinstance(frame, str):
                    self._send_message(frame.encode("utf-8"), False)
                else:
                    self._send_message(frame, True)
        else:
            prepared = data.prepared_frame(self.factory)
            if prepared is None:
                return False
            self.sendPreparedMessage(prepared)
        return True

    def _send_message(self, payload: bytes, binary: bool) -> None:
        transport = self.transport
        if (self._perMessageCompress is None and not self.send_queue
                and transport is not None and not getattr(self, "logFrames", True)
                and not getattr(self, "autoFragmentSize", 0)):
            # One unmasked, unfragmented frame (RFC 6455 section 5.2), written directly:
            # what Autobahn's sendMessage would write, without its per-frame machinery.
            length = len(payload)
            opcode = 0x82 if binary else 0x81
            if length < 126:
                header = bytes((opcode, length))
            elif length < 65536:
                header = bytes((opcode, 126)) + length.to_bytes(2, "big")
            else:
                header = bytes((opcode, 127)) + length.to_bytes(8, "big")
            transport.write(header + payload)
            return
        if len(payload) > self.factory.engine.options.max_http_buffer_size:
            # max_http_buffer_size bounds what the client sends (Node's maxHttpBufferSize), but
            # Autobahn's sendMessage applies maxMessagePayloadSize to outgoing messages too and
            # raises: send a larger message as one frame.
            self.sendFrame(opcode=2 if binary else 1, payload=payload)
        else:
            self.sendMessage(payload, binary)

    def close(self, *, graceful: bool) -> bool:
        """Close the connection with a normal closing handshake (at once, either way)."""
        if not self._closing:
            self._closing = True
            self.session = None
            self.sendClose(1000)
        return True


class EngineWebSocketFactory(WebSocketServerFactory):
    """Autobahn's factory for the WebSocket connections of one :class:`EngineServer`."""

    protocol = EngineWebSocketProtocol  # type: ignore[assignment]

    def __init__(self, engine: EngineServer) -> None:
        super().__init__()
        self.engine = engine
        limit = engine.options.max_http_buffer_size
        self.setProtocolOptions(
            # The Engine.IO heartbeat is ours: no WebSocket-level pings.
            autoPingInterval=0,
            maxMessagePayloadSize=limit,
            maxFramePayloadSize=limit,
            openHandshakeTimeout=10,
            closeHandshakeTimeout=2,
        )


def _query_string(params: dict[str, list[str]]) -> str:
    from urllib.parse import urlencode

    return urlencode([(k, v) for k, vs in params.items() for v in vs])
