"""An in-memory Socket.IO client for unit tests of :class:`txsio.Server` (no sockets).

A :class:`MemoryClient` opens an Engine.IO session on a :class:`txsio.testing.MemoryTransport`
with ``io.engine.create_session``, feeds Socket.IO packets to it as Engine.IO messages, and
decodes what the server wrote with :class:`txsio.protocol.Decoder`::

    clock = Clock()
    io = txsio.Server(clock=clock)
    client = MemoryClient(io)
    client.connect("/chat", {"token": "t"})
    [reply] = client.received()          # Packet(CONNECT, "/chat", {"sid": ...})
"""

from __future__ import annotations

from typing import Any

from txsio import Server
from txsio.engineio.handshake import HandshakeRequest
from txsio.engineio.packet import Packet as EnginePacket
from txsio.engineio.packet import PacketType as EnginePacketType
from txsio.engineio.session import EngineSession, SessionState
from txsio.protocol import Decoder, Packet, PacketType, encode
from txsio.testing import MemoryTransport

__all__ = ["MemoryClient"]


class MemoryClient:
    """One client of ``io``, connected in memory.

    :param io: the server.
    :param eio: the Engine.IO protocol revision, 4 (Socket.IO v5) or 3 (Socket.IO v4).
    :param headers: the handshake request's headers.
    :param query: the handshake request's query parameters.
    """

    def __init__(self, io: Server, *, eio: int = 4, headers: dict[str, str] | None = None,
                 query: dict[str, str] | None = None, address: str = "127.0.0.1") -> None:
        self.io = io
        self.protocol = 5 if eio == 4 else 4
        self.transport = MemoryTransport()
        query = dict(query or {})
        query.setdefault("EIO", str(eio))
        query.setdefault("transport", "websocket")
        url = "/socket.io/?" + "&".join(f"{k}={v}" for k, v in query.items())
        request = HandshakeRequest(method="GET", url=url, headers=dict(headers or {}),
                                   query=query, address=address, secure=False)
        self.session: EngineSession = io.engine.create_session(eio, self.transport, request)
        self.decoder = Decoder(protocol=self.protocol, max_attachments=1000)
        # The open packet; an EIO3 client's automatic CONNECT reply may follow it.
        assert self.transport.sent[0].type is EnginePacketType.OPEN
        self._read = 1

    # -- to the server ---------------------------------------------------------------------

    def send_raw(self, data: str | bytes) -> None:
        """Deliver one Engine.IO message payload to the server."""
        self.session.receive(data, self.transport)

    def send(self, packet: Packet) -> None:
        """Encode ``packet`` and deliver its parts (text, then attachments)."""
        for part in encode(packet, protocol=self.protocol):
            self.send_raw(part)

    def connect(self, nsp: str = "/", auth: dict[str, Any] | None = None) -> None:
        """Send CONNECT to ``nsp`` with ``auth``."""
        self.send(Packet(PacketType.CONNECT, nsp, auth))

    def emit(self, event: str, *args: Any, nsp: str = "/", ack_id: int | None = None) -> None:
        """Send an EVENT (a BINARY_EVENT when ``args`` hold bytes)."""
        self.send(Packet(PacketType.EVENT, nsp, [event, *args], ack_id))

    def ack(self, ack_id: int, *args: Any, nsp: str = "/") -> None:
        """Send an ACK."""
        self.send(Packet(PacketType.ACK, nsp, list(args), ack_id))

    def disconnect(self, nsp: str = "/") -> None:
        """Send DISCONNECT for ``nsp``."""
        self.send(Packet(PacketType.DISCONNECT, nsp))

    def pong(self) -> None:
        """Answer the server's ping."""
        self.session.receive(EnginePacket(EnginePacketType.PONG), self.transport)

    def close_engine(self) -> None:
        """Send the Engine.IO close packet (the client went away)."""
        self.session.receive(EnginePacket(EnginePacketType.CLOSE), self.transport)

    # -- from the server -------------------------------------------------------------------

    def engine_packets(self) -> list[EnginePacket]:
        """The Engine.IO packets written since the last call."""
        sent = self.transport.sent
        new = sent[self._read:]
        self._read = len(sent)
        return new

    def raw(self) -> list[str | bytes]:
        """The Engine.IO message payloads written since the last call."""
        return [p.data for p in self.engine_packets()
                if p.type is EnginePacketType.MESSAGE and p.data is not None]

    def received(self) -> list[Packet]:
        """The Socket.IO packets written since the last call, attachments reassembled."""
        packets = []
        for data in self.raw():
            packet = self.decoder.feed(data)
            if packet is not None:
                packets.append(packet)
        return packets

    def events(self) -> list[list[Any]]:
        """The data (``[event, *args]``) of the EVENT packets written since the last call."""
        return [p.data for p in self.received()
                if p.type in (PacketType.EVENT, PacketType.BINARY_EVENT)]

    def connect_ok(self, nsp: str = "/", auth: dict[str, Any] | None = None) -> dict[str, Any]:
        """Connect to ``nsp`` and return the server's CONNECT payload (``{"sid": ...}``)."""
        self.connect(nsp, auth)
        [reply] = self.received()
        assert reply.type is PacketType.CONNECT and reply.nsp == nsp, reply
        assert isinstance(reply.data, dict)
        return reply.data

    @property
    def closed(self) -> bool:
        """Whether the Engine.IO session is closed."""
        return self.session.state is SessionState.CLOSED
