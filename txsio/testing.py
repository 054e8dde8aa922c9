"""Helpers for testing your own txsio handlers, in memory: no sockets, no sleeps.

:class:`TestClient` connects to a :class:`txsio.Server` through an in-memory Engine.IO session
and speaks real Socket.IO packets to it, so your handlers, middlewares, rooms and acks run as
they do in production.  Give the server a :class:`twisted.internet.task.Clock` and step time
with ``clock.advance(...)``: heartbeats, connect timeouts and ack timeouts fire when you say.

::

    from twisted.internet.task import Clock
    from twisted.trial.unittest import SynchronousTestCase

    import txsio
    from txsio.testing import TestClient

    def setup(io):                                           # your handlers
        @io.of("/chat").on("connection")
        def connected(socket):
            @socket.on("say")
            def say(text):
                socket.emit("said", socket.handshake.auth["name"], text)
                return "delivered"

    class ChatTests(SynchronousTestCase):
        def test_greeting(self):
            clock = Clock()
            io = txsio.Server(clock=clock)
            setup(io)
            client = TestClient(io)
            chat = self.successResultOf(client.connect("/chat", auth={"name": "ada"}))
            ack = self.successResultOf(chat.emit_with_ack("say", "hello"))
            self.assertEqual(ack, "delivered")
            self.assertIn(("said", ("ada", "hello")), chat.received)

Works the same from trial and pytest-twisted tests.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger

from ._handlers import Listeners, PendingAcks, ack_args, event_name
from .engineio.packet import Packet as EnginePacket
from .engineio.packet import PacketType as EnginePacketType
from .engineio.server import HandshakeRequest
from .engineio.session import SessionState
from .exceptions import ConnectionRefusedError, DisconnectedError
from .protocol import Packet, PacketType

if TYPE_CHECKING:

    from .engineio.session import EngineSession, Outgoing
    from .server import Server

__all__ = ["MemoryTransport", "TestClient", "TestSocket"]

log = Logger()


class MemoryTransport:
    """An Engine.IO transport in memory: what a session writes is recorded and handed on.

    It provides the :class:`~txsio.engineio.session.SessionTransport` interface, so an
    :class:`~txsio.engineio.EngineSession` runs on it exactly as on a real transport, with no
    sockets: :class:`TestClient` talks to the server through one, and txsio's own tests drive
    sessions with it.  Hand the session what the peer sends with ``session.receive(packet,
    transport)`` (a :class:`~txsio.engineio.packet.Packet`, or a message's payload).

    The session's messages are always queued and written as packets (:meth:`send` refuses a
    lone message or a broadcast's frame), so :attr:`batches` shows every one of them.

    :param name: ``"websocket"``: writable until closed, and a graceful close completes at
        once.  ``"polling"``: writable only while a GET is pending (:meth:`get`), each write
        answers that GET, and a graceful close waits: the test plays the delivery of the close
        packet with ``session.close_delivered(transport)``.
    :param writable: whether a polling transport starts with a GET pending.
    :param on_packet: called with each packet the session writes, in order.
    :param on_close: called with ``graceful`` each time the session closes the transport.

    :ivar writable: whether the session may write now; set it to ``False`` (or call
        :meth:`pause`) to play a client that is not ready to receive (the session queues, up
        to ``max_buffered_bytes``, and volatile packets are dropped).
    :ivar batches: every batch of packets written, in order.
    :ivar closes: the ``graceful`` flag of each close, in order.
    """

    def __init__(self, name: str = "websocket", *, writable: bool = True,
                 on_packet: Callable[[EnginePacket], object] | None = None,
                 on_close: Callable[[bool], object] | None = None) -> None:
        self.name = name
        self._polling = name == "polling"
        self.upgrades_to: tuple[str, ...] = ("websocket",) if self._polling else ()
        self.writable = writable if self._polling else True
        self.batches: list[list[EnginePacket]] = []
        self.closes: list[bool] = []
        self._on_packet = on_packet
        self._on_close = on_close

    @property
    def sent(self) -> list[EnginePacket]:
        """Every packet written, in order."""
        return [p for batch in self.batches for p in batch]

    def send(self, data: Outgoing) -> bool:
        """Record a batch of packets (and hand each to ``on_packet``); refuse anything else,
        so the session queues it and writes it as packets."""
        if not isinstance(data, list):
            return False
        if not self.writable:
            raise AssertionError("the session wrote to a transport that is not writable")
        packets = list(data)
        self.batches.append(packets)
        if self._polling:
            self.writable = False  # the write answered the pending GET
        if self._on_packet is not None:
            for packet in packets:
                self._on_packet(packet)
        return True

    def close(self, *, graceful: bool) -> bool:
        """Record the close; a WebSocket one is closed at once, a polling one only when not
        graceful."""
        self.closes.append(graceful)
        if not self._polling:
            self.writable = False
        if self._on_close is not None:
            self._on_close(graceful)
        return not (self._polling and graceful)

    def get(self, session: EngineSession) -> None:
        """A polling GET arrives: the transport is writable, and tells ``session`` so."""
        self.writable = True
        session.transport_ready(self)

    def pause(self) -> None:
        """Play a peer that stopped reading (a WebSocket whose TCP transport paused): not
        writable until :meth:`resume`."""
        self.writable = False

    def resume(self, session: EngineSession) -> None:
        """The peer reads again: the transport is writable, and tells ``session`` so (which
        writes its queue)."""
        self.get(session)


class TestSocket:
    """The client side of one namespace connection of a :class:`TestClient`.

    :ivar nsp: the namespace name.
    :ivar id: the socket id the server gave (``None`` until connected).
    :ivar connected: whether the namespace connection is up.
    :ivar received: every event the server sent, as ``(event, args)`` tuples, in order.
    :ivar disconnect_reason: why the server disconnected this socket, if it did.
    """

    __test__ = False  # not a test case, whatever pytest thinks of the name

    def __init__(self, client: TestClient, nsp: str) -> None:
        self.client = client
        self.nsp = nsp
        self.id: str | None = None
        self.connected = False
        self.received: list[tuple[str, tuple[Any, ...]]] = []
        self.disconnect_reason: str | None = None
        self._listeners = Listeners(self)
        self._acks = PendingAcks(client.io.clock)
        self._connecting: Deferred[TestSocket] | None = None

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Answer the server's ``event`` with ``handler``; its return value is the ack
        (a tuple for several arguments, ``None`` for none; Deferreds and coroutines too)."""
        self._listeners.on(event, handler)

    def events(self, name: str) -> list[tuple[Any, ...]]:
        """The arguments of each ``name`` event received, in order."""
        return [args for event, args in self.received if event == name]

    def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` with ``args`` to the server (``bytes`` travel as binary)."""
        self.client._send(Packet(PacketType.EVENT, self.nsp, [event, *args]))

    def emit_with_ack(self, event: str, *args: Any, timeout: float | None = None
                      ) -> Deferred[Any]:
        """Send ``event`` asking for an acknowledgement.

        :param timeout: fail with :class:`~txsio.AckTimeoutError` after this many seconds
            of the server's clock.
        :returns: a Deferred of the server's answer: one value, a tuple for several, ``None``
            for none.
        """
        if not self.connected:
            return fail(DisconnectedError("not connected"))
        ack_id = self.client._next_id()
        d = self._acks.deferred(ack_id, timeout)
        self.client._send(Packet(PacketType.EVENT, self.nsp, [event, *args], ack_id))
        return d

    def disconnect(self) -> None:
        """Leave the namespace (the server sees ``"client namespace disconnect"``)."""
        if self.connected:
            self.client._send(Packet(PacketType.DISCONNECT, self.nsp))
            self._closed("io client disconnect")

    # -- from the server -------------------------------------------------------------------

    def _on_packet(self, packet: Packet) -> None:
        ptype = packet.type
        if ptype is PacketType.CONNECT:
            self.id = packet.data.get("sid") if isinstance(packet.data, dict) else None
            self.connected = True
            if self._connecting is not None:
                d, self._connecting = self._connecting, None
                d.callback(self)
        elif ptype is PacketType.CONNECT_ERROR:
            data = packet.data
            message = data.get("message", "") if isinstance(data, dict) else str(data)
            extra = data.get("data") if isinstance(data, dict) else None
            if self._connecting is not None:
                d, self._connecting = self._connecting, None
                d.errback(ConnectionRefusedError(message, extra))
        elif ptype in (PacketType.EVENT, PacketType.BINARY_EVENT):
            event, args = event_name(packet.data[0]), packet.data[1:]
            self.received.append((event, tuple(args)))
            self._listeners.dispatch(event, args, self._replier(packet.id))
        elif ptype in (PacketType.ACK, PacketType.BINARY_ACK):
            assert packet.id is not None
            self._acks.resolve(packet.id, packet.data)
        elif ptype is PacketType.DISCONNECT:
            self._closed("io server disconnect")

    def _replier(self, ack_id: int | None) -> Callable[[Any], None] | None:
        # What sends a handler's result as the ack of ack_id (None: no ack was asked for).
        if ack_id is None:
            return None
        return lambda value: self.client._send(
            Packet(PacketType.ACK, self.nsp, ack_args(value), ack_id))

    def _closed(self, reason: str) -> None:
        if not self.connected and self._connecting is None:
            return
        self.connected = False
        self.disconnect_reason = reason
        if self._connecting is not None:
            d, self._connecting = self._connecting, None
            d.errback(DisconnectedError(reason))
        self._acks.fail_all(DisconnectedError(reason))


class TestClient:
    """A client connected to ``io`` in memory (one Engine.IO session, many namespaces).

    Pings from the server are answered automatically (set :attr:`auto_pong` to ``False`` to
    play a client that went silent).

    :param io: the server under test.
    :param headers: the handshake request's headers.
    :param query: the handshake request's query parameters.
    :param address: the client's address as the server sees it.
    """

    __test__ = False  # not a test case, whatever pytest thinks of the name

    def __init__(self, io: Server, *, headers: dict[str, str] | None = None,
                 query: dict[str, str] | None = None, address: str = "127.0.0.1") -> None:
        self.io = io
        self.auto_pong = True
        self.sockets: dict[str, TestSocket] = {}
        self._decoder = io.parser.decoder()
        self._ids = 0
        self._transport = MemoryTransport(on_packet=self._from_server,
                                          on_close=lambda graceful: self._engine_closed())
        query = {"EIO": "4", "transport": "websocket", **(query or {})}
        request = HandshakeRequest(
            method="GET", url="/socket.io/?" + "&".join(f"{k}={v}" for k, v in query.items()),
            headers={k.lower(): v for k, v in (headers or {}).items()}, query=query,
            address=address, secure=False)
        self.session: EngineSession = io.engine.create_session(4, self._transport, request)

    @property
    def closed(self) -> bool:
        """Whether the connection is closed."""
        return self.session.state is SessionState.CLOSED

    def socket(self, nsp: str = "/") -> TestSocket:
        """The :class:`TestSocket` of ``nsp`` (not connected until :meth:`connect`)."""
        sock = self.sockets.get(nsp)
        if sock is None:
            sock = self.sockets[nsp] = TestSocket(self, nsp)
        return sock

    def connect(self, nsp: str = "/", auth: dict[str, Any] | None = None
                ) -> Deferred[TestSocket]:
        """Connect to ``nsp`` with ``auth``.

        :returns: a Deferred of the connected :class:`TestSocket`, failing with
            :class:`~txsio.ConnectionRefusedError` (message and data) when refused.
        """
        sock = self.socket(nsp)
        if sock.connected:
            return succeed(sock)
        d: Deferred[TestSocket] = Deferred()
        sock._connecting = d
        self._send(Packet(PacketType.CONNECT, nsp, auth))
        return d

    def close(self) -> None:
        """Drop the connection (the server sees ``"transport close"``)."""
        if not self.closed:
            self.session.receive(EnginePacket(EnginePacketType.CLOSE), self._transport)

    # -- plumbing --------------------------------------------------------------------------

    def _next_id(self) -> int:
        self._ids += 1
        return self._ids

    def _send(self, packet: Packet) -> None:
        if self.closed:
            return
        for part in self.io.parser.encode(packet):
            self.session.receive(part, self._transport)

    def _from_server(self, packet: EnginePacket) -> None:
        if packet.type is EnginePacketType.PING:
            if self.auto_pong:
                self.io.clock.callLater(0, self._pong)
            return
        if packet.type is not EnginePacketType.MESSAGE or packet.data is None:
            return
        decoded = self._decoder.feed(packet.data)
        if decoded is not None:
            self.socket(decoded.nsp)._on_packet(decoded)

    def _pong(self) -> None:
        if not self.closed:
            self.session.receive(EnginePacket(EnginePacketType.PONG), self._transport)

    def _engine_closed(self) -> None:
        for sock in self.sockets.values():
            sock._closed("transport close")
