"""The WebSocket transport: one check per request, the handshake record, the transport
interface, and the Autobahn internals the frame fast path relies on."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from txsio.engineio import EngineServer, _wsfast
from txsio.engineio.polling import PollingTransport
from txsio.engineio.session import SessionState, SessionTransport
from txsio.engineio.websocket import EngineWebSocketFactory
from txsio.engineio.wire import V4

from .support import serve
from .test_resource import (
    ResourceTestCase,
    WebSocketClient,
    _client_frame,
    _server_frames,
    _WSTransport,
)


class CountedChecks:
    """Counts the calls of a server's ``check_request``."""

    def __init__(self, case: ResourceTestCase) -> None:
        self.calls = 0
        check = case.server.check_request

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls += 1
            return check(*args, **kwargs)

        case.patch(case.server, "check_request", counted)


class AdmissionTests(ResourceTestCase):
    """The resource checks a WebSocket request once and hands Autobahn what it decided."""

    def test_check_request_once_for_a_new_session(self) -> None:
        """A WebSocket handshake runs check_request once (the resource's), not again when
        Autobahn connects."""
        checks = CountedChecks(self)
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(client.status, 101)
        self.assertEqual(len(self.sessions), 1)
        self.assertEqual(checks.calls, 1)

    def test_check_request_once_for_an_upgrade(self) -> None:
        """An upgrade runs check_request once, and the probe reaches the session."""
        sid, _ = self.handshake()
        checks = CountedChecks(self)
        client = WebSocketClient(self.server, f"EIO=4&transport=websocket&sid={sid}")
        self.assertEqual(client.status, 101)
        self.assertTrue(self.server.sessions[sid].upgrading)
        self.assertEqual(checks.calls, 1)

    def test_handshake_record_as_polling(self) -> None:
        """A WebSocket session's handshake record is read from the HTTP request as a polling
        one's is: the URL as sent, lower-cased headers, the query, the peer's address."""
        WebSocketClient(self.server, "EIO=4&transport=websocket&x=a%20b",
                        headers={"X-Custom": "yes"})
        request = self.sessions[0].request
        self.assertEqual(request.method, "GET")
        self.assertEqual(request.url, "/engine.io/?EIO=4&transport=websocket&x=a%20b")
        self.assertEqual(request.headers["x-custom"], "yes")
        self.assertEqual(request.headers["upgrade"], "websocket")
        self.assertEqual(dict(request.query), {"EIO": "4", "transport": "websocket",
                                               "x": "a b"})
        self.assertEqual(request.address, "127.0.0.1")
        self.assertFalse(request.secure)

    def test_handshake_record_released(self) -> None:
        """Once open, the connection no longer holds what the resource decided (the session
        keeps the handshake record)."""
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertIsNone(client.protocol.admission)
        self.assertIsNotNone(self.sessions[0].request)

    def test_factory_alone_refuses(self) -> None:
        """A connection that did not come through the resource (which checks every request)
        is refused with 400."""
        factory = EngineWebSocketFactory(self.server)
        factory.setProtocolOptions(openHandshakeTimeout=0, closeHandshakeTimeout=0)
        protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 80))
        transport = _WSTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.makeConnection(transport)
        protocol.dataReceived(
            b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 400 "))
        self.assertEqual(self.sessions, [])


class TransportInterfaceTests(ResourceTestCase):
    """Both Twisted transports provide the whole session transport interface."""

    def test_websocket(self) -> None:
        """An open WebSocket connection is a SessionTransport that cannot be upgraded."""
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertIsInstance(client.protocol, SessionTransport)
        self.assertEqual(client.protocol.upgrades_to, ())

    def test_polling(self) -> None:
        """A polling transport is a SessionTransport that upgrades to WebSocket."""
        polling = PollingTransport(V4, max_body=10, max_packets=10)
        self.assertIsInstance(polling, SessionTransport)
        self.assertEqual(polling.upgrades_to, ("websocket",))


def _attributes_read(cls: type) -> set[str]:
    """The names of the ``self.<name>`` attributes the methods of ``cls`` touch."""
    tree = ast.parse(inspect.getsource(cls))
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == "self"}


class FastPathInternalsTests(ResourceTestCase):
    """The Autobahn internals the fast path touches are listed, and all still exist."""

    def test_each_internal_exists(self) -> None:
        """Every listed internal is an attribute of an open Autobahn connection (an Autobahn
        upgrade that moves one fails here)."""
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        for dotted in _wsfast.AUTOBAHN_INTERNALS:
            target: object = client.protocol
            for name in dotted.split("."):
                self.assertTrue(hasattr(target, name), f"Autobahn has no {dotted}")
                target = getattr(target, name)

    def test_list_is_complete(self) -> None:
        """The fast path touches no attribute of Autobahn's protocol beyond its own, the
        public API and the listed internals."""
        cls = _wsfast.FastServerProtocol
        own = set(vars(cls)) | set(cls.__annotations__)
        public = {"transport", "sendFrame", "sendMessage"}
        listed = {dotted.split(".")[0] for dotted in _wsfast.AUTOBAHN_INTERNALS}
        unlisted = _attributes_read(cls) - (own - listed) - public - listed
        self.assertEqual(unlisted, set())


class AutobahnOptionsTests(ResourceTestCase):
    """A connection gets its factory's Autobahn options without Autobahn pretty-printing them
    for a debug line on every connect."""

    def test_options_copied_without_formatting(self) -> None:
        """Each of Autobahn's server options is the factory's on the connection, and none of
        them is pretty-printed while connecting."""
        from autobahn.websocket import protocol as autobahn_protocol
        from autobahn.websocket.protocol import WebSocketServerProtocol

        formatted: list[object] = []

        def pformat(value: object) -> str:
            formatted.append(value)
            return ""

        self.patch(autobahn_protocol, "pformat", pformat)
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(client.status, 101)
        factory = self.server.resource()._ws_factory
        options = WebSocketServerProtocol.CONFIG_ATTRS
        self.assertIn("maxMessagePayloadSize", options)
        for name in options:
            self.assertEqual(getattr(client.protocol, name), getattr(factory, name), name)
        self.assertEqual(client.protocol.maxMessagePayloadSize,
                         self.server.options.max_http_buffer_size)
        self.assertEqual(formatted, [])  # nothing formatted for Autobahn's debug line
        client.protocol.session.send("hi")
        self.assertEqual(client.texts()[-1], "4hi")

    def test_no_opening_handshake_timer(self) -> None:
        """The factory sets no timer for the opening handshake (over before take_over
        returns), and a connection taken over is open at once."""
        self.assertEqual(EngineWebSocketFactory(self.server).openHandshakeTimeout, 0)
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(client.protocol.state, client.protocol.STATE_OPEN)
        self.assertIsNone(client.protocol.openHandshakeTimeoutCall)

    def test_connection_count_without_formatting(self) -> None:
        """The factory counts each connection made and lost, as Autobahn's server protocol
        does, and neither the lost connection's reason nor the two steps are formatted for
        Autobahn's debug lines."""
        from autobahn.websocket import protocol as autobahn_protocol
        from twisted.python.failure import Failure

        formatted: list[object] = []

        def hl(value: object, *args: object, **kwargs: object) -> str:
            formatted.append(value)
            return ""

        for name in ("hltype", "hlval"):
            self.patch(autobahn_protocol, name, hl)
        factory = self.server.resource()._ws_factory
        before = factory.countConnections
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(factory.countConnections, before + 1)
        session = client.protocol.session
        client.protocol.connectionLost(Failure(ConnectionDone()))
        self.assertEqual(factory.countConnections, before)
        self.assertIs(session.state, SessionState.CLOSED)
        self.assertEqual([v for v in formatted if isinstance(v, Failure)
                          or getattr(v, "__name__", "") in ("_connectionMade", "_connectionLost")],
                         [])

    def test_made_and_lost_without_formatting(self) -> None:
        """Autobahn's Twisted adapter steps run without their debug lines' formatting, and
        leave what Autobahn's leave: the transport's details and the peer; a TLS failure is
        still logged as an error."""
        from autobahn.twisted import websocket as autobahn_twisted
        from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
        from twisted.python.failure import Failure

        from txsio.engineio import websocket as engine_websocket

        formatted: list[object] = []

        def hl(value: object, *args: object, **kwargs: object) -> str:
            formatted.append(value)
            return ""

        for name in ("hltype", "hlval"):
            self.patch(autobahn_twisted, name, hl)
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        stock_factory = WebSocketServerFactory()
        stock_factory.protocol = WebSocketServerProtocol
        stock_factory.setProtocolOptions(openHandshakeTimeout=0)
        stock: Any = stock_factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 80))
        stock.makeConnection(_WSTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)))
        self.assertEqual(len(formatted), 2)  # the stock connection's own debug line
        for name in engine_websocket.AUTOBAHN_INTERNALS:
            self.assertTrue(hasattr(stock, name) or hasattr(stock.factory, name),
                            f"Autobahn has no {name}")
        self.assertEqual(client.protocol.peer, stock.peer)
        self.assertEqual(client.protocol._transport_details.peer,
                         stock._transport_details.peer)
        self.assertEqual(client.protocol._transport_details.channel_framing,
                         stock._transport_details.channel_framing)
        # Autobahn's setup leaves on a new connection what txsio's leaves, value for value
        # (a class attribute standing for an initial value), objects of the same types.
        ours: Any = self.server.resource()._ws_factory.buildProtocol(
            IPv4Address("TCP", "127.0.0.1", 80))
        ours.makeConnection(_WSTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000)))
        for name, value in vars(stock).items():
            if name in WebSocketServerProtocol.CONFIG_ATTRS:
                continue  # the factories' options (see test_options_copied_without_formatting)
            self.assertTrue(hasattr(ours, name), name)
            mine = getattr(ours, name)
            if isinstance(value, (bool, int, float, str, bytes, type(None))):
                self.assertEqual(mine, value, name)
            elif name not in ("transport", "factory", "_transport_details", "is_open",
                              "is_closed",
                              # lean by design (_wslean): a list, a tuple, a mapping
                              "send_queue", "_valid_events", "_results"):
                self.assertEqual(type(mine).__name__, type(value).__name__, name)
        ours.connectionLost(Failure(ConnectionDone()))
        from OpenSSL.SSL import Error as TLSError

        errors: list[object] = []
        self.patch(client.protocol.log, "error", errors.append)
        client.protocol.connectionLost(Failure(TLSError([("x", "y", "bad record mac")])))
        self.assertEqual(len(formatted), 2)
        self.assertEqual(len(errors), 1)
        self.assertIs(client.protocol.state, client.protocol.STATE_CLOSED)


class UnmaskTests(SynchronousTestCase):
    """The fast path's unmasking, on both sides of the size where the native masker takes
    over from big-int XOR."""

    def test_unmask(self) -> None:
        """Each payload comes out as the byte-by-byte XOR with the repeated mask (RFC 6455
        section 5.3), small, at the switch and up to the fast path's 64 KiB bound."""
        mask = b"\x8f\x01\xfe\x42"
        for size in (0, 1, 3, 125, 2047, 2048, 2049, 4099, 65535):
            payload = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
            expected = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
            self.assertEqual(_wsfast._unmask(payload, mask), expected, size)


class LongIntegerEndToEndTests(SynchronousTestCase):
    """An event carrying an integer too long for Python's int() keeps the connection open and
    is acked as Node acks it."""

    def test_echo_acked_with_null(self) -> None:
        """The echo of a 5,000-digit integer is acked with [null], and the socket stays."""
        import txsio

        io = txsio.Server(clock=Clock())
        io.on("connection", lambda socket: socket.on("echo", lambda value: value))
        client = WebSocketClient(io.engine, "EIO=4&transport=websocket")
        self.assertEqual(client.status, 101)
        client.send_text("40")
        self.assertEqual([text[:2] for text in client.texts()], ["0{", "40"])
        client.send_text('421["echo",' + "1" * 5000 + "]")
        client.send_text('422["echo",-' + "9" * 5000 + "]")
        self.assertEqual(client.texts(), ["431[null]", "432[null]"])
        self.assertEqual(len(io.sockets.sockets), 1)
        self.assertEqual(len(io.engine.sessions), 1)


class _RawPeer(Protocol):
    """A raw TCP client speaking WebSocket frames by hand: what it received, and waits."""

    def __init__(self) -> None:
        self.received = b""
        self.lost: Deferred[list[Any]] = Deferred()
        self._waiting: list[tuple[Callable[[bytes], bool], Deferred[None]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        for entry in list(self._waiting):
            if entry[0](self.received):
                self._waiting.remove(entry)
                entry[1].callback(None)

    def connectionLost(self, reason: Any = None) -> None:
        self.lost.callback([reason])  # in a list: a Failure would errback

    def wait_for(self, predicate: Callable[[bytes], bool]) -> Deferred[None]:
        """A Deferred firing once ``predicate(received)`` holds."""
        if predicate(self.received):
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiting.append((predicate, d))
        return d

    def frames(self) -> list[tuple[int, bytes]]:
        """The frames received after the HTTP response."""
        return _server_frames(self.received.partition(b"\r\n\r\n")[2])


class FragmentedMessageLoopbackTests(TestCase):
    """Over a real loopback connection, a data frame inside a fragmented message gets the 1002
    close frame, and then a clean TCP close (not an abort that would lose the frame)."""

    timeout = 10

    async def run_case(self, *, separate: bool) -> None:
        from twisted.internet import reactor

        server = EngineServer(clock=Clock())
        messages: list[object] = []
        server.on("connection", lambda session: session.on("message", messages.append))
        server.resource()._ws_factory.setProtocolOptions(openHandshakeTimeout=0,
                                                         closeHandshakeTimeout=0)
        root = Resource()
        root.putChild(b"engine.io", server.resource())
        site = serve(root)
        self.addCleanup(site.stop)
        peer = _RawPeer()
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", site.port), peer)
        assert peer.transport is not None
        write = peer.transport.write
        write(b"GET /engine.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
              b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
        await peer.wait_for(lambda data: b"\r\n\r\n" in data and len(peer.frames()) == 1)
        fragment = bytearray(_client_frame(b"4frag"))
        fragment[0] = 0x01  # not FIN, text
        data_frame = _client_frame(b"4data")
        if separate:
            # A ping inside the message: its pong shows the server read the fragment alone.
            write(bytes(fragment) + _client_frame(b"p", 9))
            await peer.wait_for(lambda _: (10, b"p") in peer.frames())
            write(data_frame)
        else:
            write(bytes(fragment) + data_frame)
        [reason] = await peer.lost
        opcode, payload = peer.frames()[-1]
        self.assertEqual((opcode, payload[:2]), (8, b"\x03\xea"))
        self.assertTrue(reason.check(ConnectionDone), reason)
        self.assertEqual(messages, [])
        self.assertEqual(server.sessions, {})

    async def test_separate_writes(self) -> None:
        """The fragment, then the data frame in a write of its own."""
        await self.run_case(separate=True)

    async def test_one_write(self) -> None:
        """The fragment and the data frame in one write."""
        await self.run_case(separate=False)
