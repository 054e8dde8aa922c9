"""The WebSocket opening handshake read once (txsio.engineio._wsopen): the same answers as
Autobahn's own handshake, the Autobahn internals it relies on, and real connections over
plain TCP and TLS."""

from __future__ import annotations

import ast
import inspect
import textwrap
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket import protocol as autobahn_protocol
from twisted.internet import reactor as global_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionDone
from twisted.internet.ssl import Certificate, PrivateCertificate, optionsForClientTLS
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import Site

import txsio
from txsio.engineio import EngineServer, EngineSite, _wsopen

from .support import listen_loopback, self_signed
from .test_resource import _client_frame, _server_frames, _WSTransport
from .test_websocket import _RawPeer

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
BASE = {
    "Host": "127.0.0.1",
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": KEY,
    "Sec-WebSocket-Version": "13",
}


class Answer:
    """What the server answered one upgrade request, in memory."""

    def __init__(self, case: SynchronousTestCase, server: EngineServer, request: bytes, *,
                 autobahn: bool) -> None:
        resource = server.resource()
        resource._ws_factory.setProtocolOptions(closeHandshakeTimeout=0)
        root = Resource()
        root.putChild(b"engine.io", resource)
        site = Site(root, reactor=Clock())
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        self.transport = _WSTransport(peerAddress=address)
        channel = site.buildProtocol(address)
        self.transport.protocol = channel
        channel.makeConnection(self.transport)
        self.fast = 0
        read = _wsopen.read_opening

        def counted(*args: Any) -> Any:
            opening = None if autobahn else read(*args)
            self.fast += opening is not None
            return opening

        case.patch(_wsopen, "read_opening", counted)
        try:
            channel.dataReceived(request)
        finally:
            case.patch(_wsopen, "read_opening", read)
        self.protocol: Any = self.transport.protocol
        self.head, _, self.rest = self.transport.value().partition(b"\r\n\r\n")

    @property
    def status(self) -> int:
        return int(self.head.split(b" ", 2)[1])


def upgrade(headers: dict[str, str] | None = None, *, drop: tuple[str, ...] = (),
            query: str = "EIO=4&transport=websocket", method: str = "GET",
            extra: bytes = b"") -> bytes:
    lines = {**BASE, **(headers or {})}
    head = f"{method} /engine.io/?{query} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in lines.items() if name not in drop)
    return head.encode("latin-1") + extra + b"\r\n"


class EquivalenceTests(SynchronousTestCase):
    """Each request gets, byte for byte, the answer Autobahn's own handshake gives it; the
    requests Autobahn would accept as they are take the direct path."""

    def both(self, request: bytes, *, fast: bool, **options: Any) -> tuple[Answer, Answer]:
        what = request.decode("latin-1")
        ours = Answer(self, EngineServer(clock=Clock(), **options), request, autobahn=False)
        theirs = Answer(self, EngineServer(clock=Clock(), **options), request, autobahn=True)
        self.assertEqual(ours.head, theirs.head, what)
        self.assertEqual(ours.fast, 1 if fast else 0, what)
        self.assertEqual(theirs.fast, 0)
        self.assertEqual(ours.transport.disconnecting, theirs.transport.disconnecting)
        if ours.status == 101:
            # the same open packet follows (the sids differ), compressed or not
            [(opcode, packet)] = _server_frames(ours.rest)
            self.assertEqual(opcode, 1)
            self.assertEqual(ours.rest[0], theirs.rest[0])
            if not ours.rest[0] & 0x40:
                self.assertTrue(packet.startswith(b'0{"sid":'), packet)
            self.assertEqual(len(_server_frames(theirs.rest)), 1)
        return ours, theirs

    def test_accepted_directly(self) -> None:
        """A plain request, an Origin the server allows, a Host with its port, tokens in
        lists, repeated headers: 101, with Autobahn's headers, on the direct path."""
        for headers in [
            {},
            {"Origin": "http://127.0.0.1"},
            {"Host": "127.0.0.1:8080", "Origin": "http://127.0.0.1:8080"},
            {"Connection": "keep-alive, Upgrade", "Upgrade": "WebSocket"},
            {"Sec-WebSocket-Key": f"  {KEY}", "Sec-WebSocket-Version": "+13"},
            {"X-Forwarded-For": "10.0.0.1", "User-Agent": "node"},
        ]:
            ours, _ = self.both(upgrade(headers), fast=True)
            self.assertEqual(ours.status, 101, headers)
            self.assertIn(b"\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", ours.head)

    def test_added_headers(self) -> None:
        """The engine's ``initial_headers`` / ``headers`` handlers' headers are in the 101,
        a list as repeated lines, as Autobahn writes them."""
        for autobahn in (False, True):
            server = EngineServer(clock=Clock())

            def initial(headers: dict[str, Any], request: Any) -> None:
                headers["Set-Cookie"] = ["a=1", "b=2"]

            server.on("initial_headers", initial)
            server.on("headers", lambda headers, request: headers.update({"X-Test": "yes"}))
            answer = Answer(self, server, upgrade(), autobahn=autobahn)
            self.assertEqual(answer.fast, 0 if autobahn else 1)
            self.assertEqual(answer.status, 101)
            self.assertIn(b"\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\nX-Test: yes\r\n",
                          answer.head)
        other = Answer(self, server, upgrade(), autobahn=True)
        self.assertEqual(answer.head.replace(b"\r\n", b"|"), other.head.replace(b"\r\n", b"|"))

    def test_deflate_negotiated(self) -> None:
        """permessage-deflate offers are answered as Autobahn answers them, with compression
        on (and its options) or off, and a bad offer fails the handshake the same way."""
        offers = ["permessage-deflate; client_max_window_bits",
                  "permessage-deflate; server_no_context_takeover; client_max_window_bits=10",
                  "x-webkit-deflate-frame, permessage-deflate"]
        for deflate in ({"threshold": 0}, {"server_no_context_takeover": True}, None):
            for offer in offers:
                ours, theirs = self.both(upgrade({"Sec-WebSocket-Extensions": offer}),
                                         fast=True, per_message_deflate=deflate)
                self.assertEqual(ours.status, 101)
                self.assertEqual(b"Sec-WebSocket-Extensions" in ours.head, deflate is not None)
                self.assertEqual(type(ours.protocol._perMessageCompress),
                                 type(theirs.protocol._perMessageCompress))
        ours, _ = self.both(upgrade({"Sec-WebSocket-Extensions":
                                     "permessage-deflate; client_max_window_bits=99"}),
                            fast=True, per_message_deflate={"threshold": 0})
        self.assertEqual(ours.status, 400)
        self.assertTrue(ours.transport.disconnecting)

    def test_compressed_messages(self) -> None:
        """A connection whose deflate was negotiated here sends compressed frames (RSV1)."""
        answer = Answer(self, EngineServer(clock=Clock(), per_message_deflate={"threshold": 0}),
                        upgrade({"Sec-WebSocket-Extensions": "permessage-deflate"}),
                        autobahn=False)
        self.assertEqual(answer.fast, 1)
        self.assertIn(b"Sec-WebSocket-Extensions: permessage-deflate", answer.head)
        self.assertEqual(answer.rest[0] & 0x40, 0x40)  # the open packet, compressed

    def test_refused_or_left_to_autobahn(self) -> None:
        """Anything else goes to Autobahn, which answers as it always has: refusals of a bad
        or missing key, an unknown version (with the versions it speaks), a bad Host port,
        control characters; a subprotocol offer or version 8, accepted."""
        for request, status in [
            (upgrade({"Sec-WebSocket-Key": "short=="}), 400),
            (upgrade({"Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ!="}), 400),
            (upgrade({"Sec-WebSocket-Key": KEY + "," + KEY}), 400),
            (upgrade(drop=("Sec-WebSocket-Key",)), 400),
            (upgrade({"Sec-WebSocket-Version": "12"}), 400),
            (upgrade({"Sec-WebSocket-Version": "x"}), 400),
            (upgrade(drop=("Sec-WebSocket-Version",)), 400),
            (upgrade({"Sec-WebSocket-Version": "8"}), 101),
            (upgrade({"Host": "127.0.0.1:x"}), 400),
            (upgrade({"Connection": "keep-alive"}), 400),
            (upgrade({"X-Odd": "a\x01b"}), 400),
            (upgrade({"Sec-WebSocket-Protocol": "chat, chat"}), 400),
            (upgrade({"Sec-WebSocket-Protocol": "chat"}), 101),
        ]:
            ours, _ = self.both(request, fast=False)
            self.assertEqual(ours.status, status, request.decode("latin-1"))
            if status == 101:
                ours.transport.clear()
                ours.protocol.session.send("hi")
                self.assertEqual(_server_frames(ours.transport.value()), [(1, b"4hi")])

    def test_version_refusal_names_versions(self) -> None:
        """An unknown version is refused with the versions Autobahn speaks."""
        ours, _ = self.both(upgrade({"Sec-WebSocket-Version": "12"}), fast=False)
        self.assertIn(b"\r\nSec-WebSocket-Version: 13,8", ours.head)

    def test_origin_rules(self) -> None:
        """An Origin the server's CORS allows but Autobahn refuses (``null``: Autobahn's
        allowNullOrigin is off) or cannot read is left to Autobahn, which refuses it."""
        cors = {"origin": "*"}
        for origin in ["null", "file:///home", "http://[::1"]:
            ours, _ = self.both(upgrade({"Origin": origin}), fast=False, cors=cors)
            self.assertEqual(ours.status, 400, origin)
        ours, _ = self.both(upgrade({"Origin": "https://other.example"}), fast=True, cors=cors)
        self.assertEqual(ours.status, 101)

    def test_factory_options(self) -> None:
        """A factory option that changes Autobahn's handshake sends every request its way."""
        choices: list[dict[str, Any]] = [{"maxConnections": 5}, {"trustXForwardedFor": 1},
                                         {"autoPingInterval": 10}, {"versions": [8]}]
        for option in choices:
            server = EngineServer(clock=Clock())
            server.resource()._ws_factory.setProtocolOptions(**option)
            answer = Answer(self, server, upgrade(), autobahn=False)
            self.assertEqual(answer.fast, 0, option)
            answer.protocol.connectionLost(Failure(ConnectionDone()))

    def test_allowed_later(self) -> None:
        """An allow_request that answers later: the 101 (on the direct path) once it says
        yes, with the open packet after it."""
        answers: list[Deferred[bool]] = []

        def allow(request: Any) -> Deferred[bool]:
            answers.append(Deferred())
            return answers[-1]

        answer = Answer(self, EngineServer(clock=Clock(), allow_request=allow), upgrade(),
                        autobahn=False)
        self.assertEqual((answer.transport.value(), answer.fast), (b"", 0))
        read = _wsopen.read_opening
        opened: list[object] = []

        def reading(*args: Any) -> Any:
            opened.append(read(*args))
            return opened[-1]

        self.patch(_wsopen, "read_opening", reading)
        answers[0].callback(True)
        self.assertIsNotNone(opened[0])
        head, _, rest = answer.transport.value().partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head)
        self.assertTrue(_server_frames(rest)[0][1].startswith(b'0{"sid":'))

    def test_body_after_the_request(self) -> None:
        """What the request carried after its headers is read as frames once open, as
        Autobahn's resource replays it."""
        frame = _client_frame(b"4hello")
        server = EngineServer(clock=Clock())
        messages: list[object] = []
        server.on("connection", lambda session: session.on("message", messages.append))
        answer = Answer(self, server, upgrade({"Content-Length": str(len(frame))}) + frame,
                        autobahn=False)
        self.assertEqual((answer.fast, answer.status), (1, 101))
        self.assertEqual(messages, ["hello"])

    def test_protocol_state_as_autobahn(self) -> None:
        """Once open, the connection's Autobahn state is what Autobahn's handshake leaves."""
        ours, theirs = self.both(upgrade(), fast=True)
        for name in ["state", "websocket_version", "websocket_extensions_in_use",
                     "_perMessageCompress", "inside_message", "current_frame",
                     "openHandshakeTimeoutCall", "websocket_protocol_in_use", "data"]:
            self.assertEqual(getattr(ours.protocol, name), getattr(theirs.protocol, name), name)
        self.assertTrue(ours.protocol.is_open.called)
        self.assertEqual(ours.protocol.trafficStats.preopenOutgoingOctetsWireLevel,
                         theirs.protocol.trafficStats.preopenOutgoingOctetsWireLevel)
        self.assertEqual(sorted(vars(ours.protocol)), sorted(vars(theirs.protocol)))


class CloseFrameTests(SynchronousTestCase):
    """A lone close frame from the peer, read by the fast path, ends the connection exactly
    as Autobahn's own reader would (the reply, the TCP close, what Autobahn records)."""

    def closed(self, frame: bytes, *, autobahn: bool) -> tuple[Answer, list[str]]:
        from autobahn.websocket.protocol import WebSocketProtocol

        server = EngineServer(clock=Clock())
        reasons: list[str] = []
        server.on("connection", lambda session: session.on("close", reasons.append))
        answer = Answer(self, server, upgrade(), autobahn=False)
        answer.transport.clear()
        protocol = answer.protocol
        if autobahn:
            WebSocketProtocol._dataReceived(protocol, frame)
        else:
            protocol.dataReceived(frame)
        if answer.transport.disconnecting:
            protocol.connectionLost(Failure(ConnectionDone()))
        return answer, reasons

    def test_same_end_as_autobahn(self) -> None:
        """With a code, a code and a reason, no payload, an invalid code, a reason that is not
        UTF-8, a 1-byte payload: the same bytes written, the same close, the same record."""
        for payload in [b"\x03\xe8", b"\x03\xe9going", b"", b"\x03\xe7", b"\x0f\xa0app",
                        b"\x03\xe8\xff\xfe", b"\x03"]:
            ours, our_reasons = self.closed(_client_frame(payload, 8), autobahn=False)
            theirs, their_reasons = self.closed(_client_frame(payload, 8), autobahn=True)
            self.assertEqual(ours.transport.value(), theirs.transport.value(), payload)
            self.assertEqual(our_reasons, their_reasons, payload)
            self.assertTrue(our_reasons, payload)
            for name in ["wasClean", "remoteCloseCode", "remoteCloseReason", "localCloseCode",
                         "closedByMe", "failedByMe", "droppedByMe", "state"]:
                self.assertEqual(getattr(ours.protocol, name),
                                 getattr(theirs.protocol, name), (name, payload))
        self.assertEqual(_server_frames(ours.transport.value())[0][0], 8)

    def test_read_without_autobahns_reader(self) -> None:
        """A well-formed close frame does not go through Autobahn's frame reader; a 1-byte
        one (a protocol error Autobahn's reader reports) does."""
        from autobahn.websocket.protocol import WebSocketProtocol

        read: list[bytes] = []
        process = WebSocketProtocol.processData

        def counted(protocol: Any) -> Any:
            read.append(protocol.data)
            return process(protocol)

        self.patch(WebSocketProtocol, "processData", counted)
        self.closed(_client_frame(b"\x03\xe8", 8), autobahn=False)
        self.closed(_client_frame(b"", 8), autobahn=False)
        self.assertEqual(read, [])
        self.closed(_client_frame(b"\x03", 8), autobahn=False)
        self.assertEqual(len(read), 1)

    def test_close_after_a_message(self) -> None:
        """A message and the close frame in one read: the message is delivered, then the
        connection closes cleanly."""
        server = EngineServer(clock=Clock())
        messages: list[object] = []
        server.on("connection", lambda session: session.on("message", messages.append))
        answer = Answer(self, server, upgrade(), autobahn=False)
        answer.transport.clear()
        answer.protocol.dataReceived(_client_frame(b"4hi") + _client_frame(b"\x03\xe8", 8))
        self.assertEqual(messages, ["hi"])
        self.assertEqual(_server_frames(answer.transport.value()), [(8, b"\x03\xe8")])
        self.assertTrue(answer.protocol.wasClean)
        self.assertTrue(answer.transport.disconnecting)


def _names_read(function: Any, owner: str) -> set[str]:
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    return {node.attr for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
            and node.value.id == owner}


class InternalsTests(SynchronousTestCase):
    """The Autobahn internals the direct handshake relies on exist on a stock Autobahn
    connection, and the list names every one it touches."""

    def test_each_internal_exists(self) -> None:
        """Each listed name is an attribute of a stock Autobahn server connection opened by
        Autobahn's own handshake (or of its factory), and the origin rules and the extension
        table are where the module imports them from."""
        factory = WebSocketServerFactory()
        factory.protocol = WebSocketServerProtocol
        factory.setProtocolOptions(openHandshakeTimeout=0)
        protocol: Any = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 80))
        transport = _WSTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        protocol.makeConnection(transport)
        protocol.dataReceived(upgrade().replace(b"/engine.io/?EIO=4&transport=websocket",
                                                b"/"))
        self.assertTrue(transport.value().startswith(b"HTTP/1.1 101 "))
        self.assertEqual(protocol.state, WebSocketServerProtocol.STATE_OPEN)
        for name in _wsopen.AUTOBAHN_INTERNALS:
            self.assertTrue(hasattr(protocol, name) or hasattr(factory, name),
                            f"Autobahn has no {name}")
        self.assertTrue(callable(autobahn_protocol._url_to_origin))
        self.assertTrue(callable(autobahn_protocol._is_same_origin))
        self.assertEqual(autobahn_protocol._url_to_origin("http://a:1"), ("http", "a", 1))
        from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
        self.assertIn("permessage-deflate", PERMESSAGE_COMPRESSION_EXTENSION)
        protocol.connectionLost(Failure(ConnectionDone()))

    def test_list_is_complete(self) -> None:
        """The module touches no attribute of Autobahn's protocol or factory beyond the public
        API and the listed internals."""
        public = {"factory", "transport", "makeConnection", "dataReceived"}
        listed = set(_wsopen.AUTOBAHN_INTERNALS)
        read = _names_read(_wsopen.OpeningServerProtocol, "self") - {"accept_opening"}
        self.assertEqual(read - public - listed, set())
        read = _names_read(_wsopen.read_opening, "factory") | _names_read(
            _wsopen.OpeningServerProtocol, "factory")
        self.assertEqual(read - public - listed, set())


class LoopbackTests(TestCase):
    """Real connections: the handshake, CONNECT and a clean close, over plain TCP (the direct
    write path) and over TLS."""

    timeout = 15

    async def connect_cycle(self, *, tls: bool) -> None:
        io = txsio.Server()
        self.addCleanup(io.close)
        connected: list[txsio.Socket] = []
        gone: Deferred[str] = Deferred()

        @io.on("connection")
        def connection(socket: txsio.Socket) -> None:
            connected.append(socket)
            socket.on("disconnect", gone.callback)

        root = Resource()
        root.putChild(b"socket.io", io.resource())
        site = EngineSite(root)
        site.noisy = False
        if tls:
            cert_pem, key_pem = self_signed()
            server_cert = PrivateCertificate.loadPEM(cert_pem + key_pem)
            port = global_reactor.listenSSL(  # type: ignore[attr-defined]
                0, site, server_cert.options(), interface="127.0.0.1")
        else:
            port = listen_loopback(global_reactor, 0, site)
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        if tls:
            options = optionsForClientTLS("127.0.0.1",
                                          trustRoot=Certificate.loadPEM(cert_pem))
            endpoint: Any = SSL4ClientEndpoint(global_reactor, "127.0.0.1", number, options)
        else:
            endpoint = TCP4ClientEndpoint(global_reactor, "127.0.0.1", number)
        peer = _RawPeer()
        await connectProtocol(endpoint, peer)
        assert peer.transport is not None
        peer.transport.write(upgrade({"Host": f"127.0.0.1:{number}"}).replace(
            b"/engine.io/", b"/socket.io/"))
        await peer.wait_for(lambda data: b"\r\n\r\n" in data and len(peer.frames()) == 1)
        head = peer.received.partition(b"\r\n\r\n")[0]
        self.assertTrue(head.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), head)
        self.assertIn(b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", head)
        peer.transport.write(_client_frame(b"40"))
        await peer.wait_for(lambda _: len(peer.frames()) == 2)
        self.assertTrue(peer.frames()[1][1].startswith(b'40{"sid":"'), peer.frames())
        self.assertEqual(len(connected), 1)
        peer.transport.write(_client_frame(b"\x03\xe8", 8))
        [reason] = await peer.lost
        self.assertTrue(reason.check(ConnectionDone), reason)
        self.assertEqual(peer.frames()[-1], (8, b"\x03\xe8"))
        self.assertEqual(await gone, "transport close")
        self.assertEqual(io.engine.sessions, {})

    async def test_plain_tcp(self) -> None:
        """Over plain TCP."""
        await self.connect_cycle(tls=False)

    async def test_tls(self) -> None:
        """Over TLS (the takeover of a wrapped transport)."""
        await self.connect_cycle(tls=True)

