"""The WebSocket transport: one check per request, the handshake record, the transport
interface, and the Autobahn internals the frame fast path relies on."""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable
from itertools import pairwise
from typing import Any

from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.protocol import Protocol
from twisted.internet.task import Clock
from twisted.trial.unittest import SkipTest, SynchronousTestCase, TestCase
from twisted.web.resource import Resource

from txsio.engineio import EngineServer, _wsfast
from txsio.engineio.errors import CloseReason
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

    def test_native_masker_functions_exist(self) -> None:
        """With Autobahn's NVX extension, each C function of its masker called here exists
        (and the fast path uses them: a large payload is unmasked by them)."""
        from autobahn.websocket import USES_NVX

        if not USES_NVX:
            raise SkipTest("Autobahn runs without its NVX extension here")
        import _nvx_xormasker  # type: ignore[import-not-found]

        for name in _wsfast.NVX_INTERNALS:
            self.assertTrue(hasattr(_nvx_xormasker.lib, name), f"NVX has no {name}")
        called: list[str] = []
        real = getattr(_wsfast, "_nvx_lib")  # noqa: B009 (mypy: not exported)

        class Spy:
            def __getattr__(self, name: str) -> Any:
                called.append(name)
                return getattr(real, name)

        self.patch(_wsfast, "_nvx_lib", Spy())
        self.assertEqual(_wsfast._unmask(b"\x01" * 4096, b"\x01\x01\x01\x01"), b"\x00" * 4096)
        self.assertEqual(sorted(set(called)), sorted(_wsfast.NVX_INTERNALS))

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
        section 5.3), small, at the switch and past 64 KiB."""
        mask = b"\x8f\x01\xfe\x42"
        for size in (0, 1, 3, 125, 2047, 2048, 2049, 4099, 65535, 70001):
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


def _masked(first: int, payload: bytes, length_bytes: bytes | None = None,
            mask: bytes = b"\x9a\x0b\xc7\x31") -> bytes:
    """A masked client frame with first byte ``first`` (FIN, opcode); ``length_bytes``: the
    length field as given (for a length in a form that is not the shortest)."""
    n = len(payload)
    if length_bytes is None:
        if n < 126:
            length_bytes = bytes([0x80 | n])
        elif n < 65536:
            length_bytes = bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            length_bytes = bytes([0x80 | 127]) + n.to_bytes(8, "big")
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return bytes([first]) + length_bytes + mask + masked


def _patterned(n: int, seed: int) -> bytes:
    """``n`` bytes in which a byte out of place shows (no repeated 4-byte period)."""
    return bytes((i * 7 + seed + i // 251) & 0xFF for i in range(n))


class WholeFrameReadingTests(ResourceTestCase):
    """The fast path reads any unfragmented data frame within max_http_buffer_size, however
    the reads cut it; whatever else is Autobahn's, from the frame's first byte."""

    echo = False

    #: text (7-bit length), binary past 64 KiB (64-bit length), text of 2-byte characters
    #: (16-bit length, past the native unmasking size), small binary, binary of 3000
    MESSAGES: list[str | bytes] = ["4hello", _patterned(70_000, 1), "4" + "é" * 1500,
                                   b"\x00\x01\xff", _patterned(3000, 2)]

    def stream(self) -> tuple[bytes, list[int]]:
        """The frames of :attr:`MESSAGES` (EIO 4: the binary as is), and where each starts."""
        starts, data = [], b""
        for message in self.MESSAGES:
            starts.append(len(data))
            if isinstance(message, str):
                data += _masked(0x81, message.encode())
            else:
                data += _masked(0x82, message)
        return data, starts

    def expected(self) -> list[str | bytes]:
        return [m[1:] if isinstance(m, str) else m for m in self.MESSAGES]

    def open_session(self) -> tuple[WebSocketClient, list[object]]:
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        self.assertEqual(client.status, 101)
        client.frames()  # the open packet
        received: list[object] = []
        self.sessions[-1].on("message", received.append)
        return client, received

    def feed(self, client: WebSocketClient, data: bytes, cuts: list[int]) -> None:
        """``data`` in reads cut at ``cuts``; the pieces a frame is kept in stay bounded."""
        edges = [0, *cuts, len(data)]
        for start, stop in pairwise(edges):
            client.protocol.dataReceived(data[start:stop])
            partial = client.protocol._partial
            if partial is not None:
                self.assertLessEqual(len(partial.pieces), _wsfast._MAX_PIECES + 1)

    def assertRead(self, client: WebSocketClient, received: list[object],
                   message: str = "") -> None:
        """Every message was delivered, in order, on the fast path, and counted once."""
        self.assertEqual(received, self.expected(), message)
        self.assertIsNone(client.protocol._partial)
        self.assertEqual(client.protocol._head, b"")
        self.assertEqual(client.protocol.data, b"", "Autobahn read nothing")

    def test_cut_at_every_header_byte(self) -> None:
        """Cut once, anywhere in a frame's header (length and mask included), one byte
        before or after the end of its payload, or anywhere in a long payload."""
        data, starts = self.stream()
        cuts: set[int] = set()
        for start in starts:
            cuts.update(range(start + 1, start + 16))
        for start in [*starts[1:], len(data)]:
            cuts.update((start - 2, start - 1, start + 1))
        cuts.update(range(starts[1] + 20, starts[2], 9973))
        for cut in sorted(c for c in cuts if 0 < c < len(data)):
            client, received = self.open_session()
            stats = self.server.stats.websocket
            before = stats.packets_in, stats.bytes_in
            self.feed(client, data, [cut])
            self.assertRead(client, received, f"cut at {cut}")
            self.assertEqual((stats.packets_in - before[0], stats.bytes_in - before[1]),
                             (5, sum(len(m.encode() if isinstance(m, str) else m)
                                     for m in self.MESSAGES)))

    def test_many_reads(self) -> None:
        """Reads of 1, 2, 5, 1000 and 65536 bytes: every frame cut many times."""
        data, _ = self.stream()
        for size in (1, 2, 5, 1000, 65536):
            client, received = self.open_session()
            self.feed(client, data, list(range(size, len(data), size)))
            self.assertRead(client, received, f"reads of {size}")

    def test_frame_of_the_size_limit(self) -> None:
        """A frame of exactly max_http_buffer_size is read, across reads."""
        self.start(max_http_buffer_size=100_000)
        payload = _patterned(100_000, 3)
        client, received = self.open_session()
        data = _masked(0x82, payload)
        self.feed(client, data, [5, 40_000, 99_000])
        self.assertEqual(received, [payload])

    def refused(self, client: WebSocketClient, code: int) -> None:
        """The connection was failed with a close frame of ``code``, then closed."""
        self.assertTrue(client.transport.disconnecting)
        opcode, payload = client.frames()[-1]
        self.assertEqual((opcode, int.from_bytes(payload[:2], "big")), (8, code))
        session = self.sessions[-1]
        client.lose()
        self.assertEqual(self.closed[session.id], CloseReason.TRANSPORT_ERROR)

    def test_too_large_refused_at_its_header(self) -> None:
        """A frame over max_http_buffer_size is refused with 1009 as soon as its length is
        read, whether the header comes whole or cut, and nothing of it is kept."""
        self.start(max_http_buffer_size=100)
        for header_cut in (1, 2, 3):
            for first, payload in ((0x82, b"x" * 101), (0x81, b"4" + b"y" * 65_600)):
                client, received = self.open_session()
                data = _masked(first, payload)
                client.protocol.dataReceived(data[:header_cut])
                self.assertFalse(client.transport.disconnecting)
                client.protocol.dataReceived(data[header_cut:14])
                self.refused(client, 1009)
                self.assertEqual(received, [])
                self.assertIsNone(client.protocol._partial)

    def test_declared_huge_length(self) -> None:
        """A 64-bit length past max_http_buffer_size is refused at once (1009); past 2**63,
        where the RFC says the top bit is 0, it is a protocol error (1002), as Autobahn
        reads it."""
        for length, code in ((2**40, 1009), (2**63 + 5, 1002)):
            client, received = self.open_session()
            client.protocol.dataReceived(
                b"\x82\xff" + length.to_bytes(8, "big") + b"\x00\x00\x00\x00" + b"z" * 10)
            self.refused(client, code)
            self.assertEqual(received, [])

    def test_length_not_in_shortest_form(self) -> None:
        """A length written in a longer form than needed is a protocol error (1002), as
        Autobahn reads it."""
        for length_bytes in (bytes([0x80 | 126]) + (5).to_bytes(2, "big"),
                             bytes([0x80 | 127]) + (300).to_bytes(8, "big")):
            client, received = self.open_session()
            payload = b"abcde" if length_bytes[0] == 0x80 | 126 else b"q" * 300
            client.protocol.dataReceived(_masked(0x82, payload, length_bytes))
            self.refused(client, 1002)
            self.assertEqual(received, [])

    def test_unmasked_large_frame(self) -> None:
        """An unmasked client frame, large or not, is a protocol error (1002)."""
        client, received = self.open_session()
        client.protocol.dataReceived(b"\x82\x7f" + (70_000).to_bytes(8, "big") + b"u" * 1000)
        self.refused(client, 1002)
        self.assertEqual(received, [])

    def test_invalid_utf8_across_reads(self) -> None:
        """A text frame of invalid UTF-8 read in pieces fails the connection (1007) once it
        is whole, and nothing of it, nor after it, is delivered."""
        for size in (100, 5000):
            client, received = self.open_session()
            data = (_masked(0x81, b"4" + b"a" * size + b"\xc3")
                    + _masked(0x81, b"4after"))
            self.feed(client, data, [7, size // 2, size + 3])
            self.refused(client, 1007)
            self.assertEqual(received, [])

    def test_ping_after_a_frame_read_in_pieces(self) -> None:
        """A ping in the read that ends a long frame is answered after the frame is
        delivered, and the frame after it is read too."""
        client, received = self.open_session()
        payload = _patterned(70_000, 4)
        data = _masked(0x82, payload) + _masked(0x89, b"ping!") + _masked(0x81, b"4next")
        for cut in (10, 14, 30_000):
            client, received = self.open_session()
            self.feed(client, data, [cut])
            self.assertEqual(received, [payload, "next"])
            self.assertEqual(client.frames(), [(10, b"ping!")])

    def test_ping_inside_fragmented_message(self) -> None:
        """A ping between the fragments of a message (Autobahn's to read), cut anywhere by
        the reads, is answered, the message assembled, and the frames after it read."""
        first = _masked(0x02, b"\x01" * 3000)  # not FIN, binary
        last = _masked(0x80, b"\x02" * 70_000)  # FIN, continuation
        data = first + _masked(0x89, b"in") + last + _masked(0x82, b"\x03" * 5000)
        for cut in (1, 3000, len(first) + 1, len(first) + 7, len(first) + 9, len(data) - 4999):
            client, received = self.open_session()
            self.feed(client, data, [cut])
            self.assertEqual(received, [b"\x01" * 3000 + b"\x02" * 70_000, b"\x03" * 5000],
                             cut)
            self.assertEqual(client.frames(), [(10, b"in")], cut)

    def test_closing_while_a_frame_is_read(self) -> None:
        """The server closing while a long frame is half read: Autobahn reads the rest of
        it (not delivered: the session is gone) and the peer's close frame, and the
        closing handshake ends with the TCP close."""
        client, received = self.open_session()
        session = self.sessions[-1]
        data = _masked(0x82, _patterned(70_000, 5))
        client.protocol.dataReceived(data[:30_000])
        self.assertIsNotNone(client.protocol._partial)
        session.close()
        self.assertEqual([opcode for opcode, _ in client.frames()], [8])
        self.assertFalse(client.transport.disconnecting)
        client.protocol.dataReceived(data[30_000:] + _masked(0x88, b"\x03\xe8"))
        self.assertEqual(received, [])
        self.assertIsNone(client.protocol._partial)
        self.assertTrue(client.transport.disconnecting)
        client.lose()
        self.assertTrue(client.protocol.wasClean)

    def test_compressed_connection_is_autobahns(self) -> None:
        """With permessage-deflate negotiated every frame is Autobahn's, large ones too."""
        self.start(per_message_deflate=True)
        client = WebSocketClient(self.server, "EIO=4&transport=websocket",
                                 {"Sec-WebSocket-Extensions": "permessage-deflate"})
        self.assertIsNotNone(client.protocol._perMessageCompress)
        received: list[object] = []
        self.sessions[-1].on("message", received.append)
        payload = _patterned(70_000, 6)
        data = _masked(0x82, payload)
        self.feed(client, data, [100, 65_536])
        self.assertEqual(received, [payload])
        self.assertIsNone(client.protocol._partial)


class LargeFrameLoopbackTests(TestCase):
    """Over a real loopback connection, a binary message much larger than one read (Twisted
    reads 64 KiB at most) is read on the fast path and echoed whole, with the text frames
    around it."""

    timeout = 20

    async def test_echo(self) -> None:
        from twisted.internet import reactor

        server = EngineServer(clock=Clock(), max_http_buffer_size=1_000_000)
        server.on("connection", lambda session: session.on("message", session.send))
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
        big = _patterned(300_000, 7)
        write(_masked(0x81, b"4before") + _masked(0x82, big) + _masked(0x81, b"4after")
              + _masked(0x82, big[:65536]))
        # (frames() parses a frame still arriving too: wait for the last one whole)
        await peer.wait_for(lambda _: len(peer.frames()) == 5
                            and len(peer.frames()[-1][1]) == 65536)
        self.assertEqual(peer.frames()[1:],
                         [(1, b"4before"), (2, big), (1, b"4after"), (2, big[:65536])])
        stats = server.stats.websocket
        self.assertEqual((stats.packets_in, stats.bytes_in),
                         (4, 7 + 300_000 + 6 + 65_536))
        assert peer.transport is not None
        peer.transport.loseConnection()
        await peer.lost
