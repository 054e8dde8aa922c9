"""The parser option (:mod:`txsio.parser`): choosing one, the msgpack codec's format and bounds,
and every packet of a server and a client going through the chosen parser."""

from __future__ import annotations

import math
from typing import Any

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio import _msgpack_parser
from txsio.adapter import EncodedPacket
from txsio.engineio.packet import PacketType as EnginePacketType
from txsio.parser import (
    DEFAULT_PARSER,
    DefaultParser,
    MsgpackParser,
    PacketDecoder,
    Parser,
    resolve_parser,
)
from txsio.protocol import DEFAULT_MAX_DEPTH, Decoder, Packet, PacketType, SocketIOParseError
from txsio.testing import TestClient

from .test_layout import impure, modules_loaded_by


def pack(obj: Any) -> bytes:
    """``obj`` as msgpack, written by the msgpack package itself."""
    data: bytes = msgpack.packb(obj)
    return data


def event(*args: Any, nsp: str = "/", id: int | None = None) -> Packet:
    """An EVENT packet."""
    return Packet(PacketType.EVENT, nsp, list(args), id)


class CountingParser:
    """The default format, recording each packet it encodes and each decoder it makes."""

    def __init__(self) -> None:
        self.encoded: list[Packet] = []
        self.decoders = 0

    def encode(self, packet: Packet, *, protocol: int = 5) -> list[str | bytes]:
        self.encoded.append(packet)
        return DEFAULT_PARSER.encode(packet, protocol=protocol)

    def decoder(self, *, protocol: int = 5, max_attachments: int = 10) -> PacketDecoder:
        self.decoders += 1
        return DEFAULT_PARSER.decoder(protocol=protocol, max_attachments=max_attachments)


class ParserPurityTests(SynchronousTestCase):
    """The parsers are codecs too: sans-I/O."""

    def test_pure(self) -> None:
        """``import txsio.parser`` (the msgpack parser with it) loads no twisted, autobahn,
        treq or zope module."""
        loaded = modules_loaded_by("import txsio.parser")
        self.assertIn("txsio._msgpack_parser", loaded)
        self.assertEqual(impure(loaded), [])


class ResolveParserTests(SynchronousTestCase):
    """``parser=`` takes a name or an object with the interface."""

    def test_names(self) -> None:
        """``None`` and ``"default"`` are the default parser, ``"msgpack"`` a MsgpackParser."""
        self.assertIs(resolve_parser(None), DEFAULT_PARSER)
        self.assertIs(resolve_parser("default"), DEFAULT_PARSER)
        self.assertIsInstance(resolve_parser("msgpack"), MsgpackParser)

    def test_object(self) -> None:
        """An object with ``encode`` and ``decoder`` is used as it is."""
        parser = CountingParser()
        self.assertIs(resolve_parser(parser), parser)

    def test_unknown_name(self) -> None:
        """Another name is a ValueError naming the choices, from the Server and the Client."""
        for make in (lambda: txsio.Server(parser="json", clock=Clock()),
                     lambda: txsio.Client(parser="json", clock=Clock())):
            error = self.assertRaises(ValueError, make)
            self.assertIn("'default', 'msgpack'", str(error))

    def test_not_a_parser(self) -> None:
        """An object without the interface is a TypeError naming its type."""
        error = self.assertRaises(TypeError, resolve_parser, object())
        self.assertIn("'object'", str(error))

    def test_default_is_the_protocol_codec(self) -> None:
        """The default parser is txsio.protocol's encoder and Decoder."""
        self.assertEqual(DefaultParser().encode(event("a", b"\x01")),
                         ['51-["a",{"_placeholder":true,"num":0}]', b"\x01"])
        self.assertIsInstance(DefaultParser().decoder(), Decoder)


class MsgpackEncodeTests(SynchronousTestCase):
    """What the msgpack parser writes: socket.io-msgpack-parser's map, one binary message."""

    parser = MsgpackParser()

    def encode(self, packet: Packet, protocol: int = 5) -> Any:
        """The packet's one message, decoded by the msgpack package."""
        parts = self.parser.encode(packet, protocol=protocol)
        self.assertEqual(len(parts), 1)
        self.assertIsInstance(parts[0], bytes)
        return msgpack.unpackb(parts[0])

    def test_event_bytes(self) -> None:
        """An event is the map type, data, nsp (and id), exactly as notepack.io writes it."""
        self.assertEqual(self.parser.encode(event("a")),
                         [b"\x83\xa4type\x02\xa4data\x91\xa1a\xa3nsp\xa1/"])
        self.assertEqual(self.encode(event("a", 1, nsp="/chat", id=7)),
                         {"type": 2, "data": ["a", 1], "nsp": "/chat", "id": 7})

    def test_binary_in_place(self) -> None:
        """Binary values are msgpack bin where they are, in the one message; a BINARY_EVENT
        or BINARY_ACK is sent as EVENT or ACK (the format has no binary types)."""
        data = ["b", b"\x00\xff", {"k": [bytearray(b"x"), memoryview(b"yz")]}]
        self.assertEqual(self.encode(Packet(PacketType.BINARY_EVENT, "/", data)),
                         {"type": 2, "nsp": "/", "data": ["b", b"\x00\xff", {"k": [b"x", b"yz"]}]})
        self.assertEqual(self.encode(Packet(PacketType.BINARY_ACK, "/", [b"1"], 3))["type"], 3)

    def test_no_data(self) -> None:
        """A packet without data has no ``data`` key (Node's decoder reads it as undefined)."""
        self.assertEqual(self.encode(Packet(PacketType.CONNECT, "/a")), {"type": 0, "nsp": "/a"})
        self.assertEqual(self.encode(Packet(PacketType.DISCONNECT, "/")), {"type": 1, "nsp": "/"})

    def test_connect_error(self) -> None:
        """CONNECT_ERROR carries its object (v5) or its message (v4)."""
        packet = Packet(PacketType.CONNECT_ERROR, "/", {"message": "no", "data": {"c": 1}})
        self.assertEqual(self.encode(packet)["data"], {"message": "no", "data": {"c": 1}})
        self.assertEqual(self.encode(packet, protocol=4)["data"], "no")
        connect = Packet(PacketType.CONNECT, "/", {"sid": "x"})
        self.assertEqual(self.encode(connect, protocol=4), {"type": 0, "nsp": "/"})

    def test_integers(self) -> None:
        """64-bit integers travel exactly; past them, the double JavaScript would hold."""
        sent = self.encode(event("n", 2**64 - 1, -(2**63), 2**64, -(2**70), 10**400, -(10**400)))
        self.assertEqual(sent["data"], ["n", 2**64 - 1, -(2**63), float(2**64), float(-(2**70)),
                                        math.inf, -math.inf])

    def test_floats(self) -> None:
        """Floats are float64, NaN and the infinities as they are (msgpack carries them)."""
        data = self.encode(event("f", 0.1, math.inf, math.nan))["data"]
        self.assertEqual(data[:3], ["f", 0.1, math.inf])
        self.assertTrue(math.isnan(data[3]))

    def test_unsupported_values(self) -> None:
        """A value msgpack cannot carry is a TypeError naming it and what can be sent."""
        error = self.assertRaises(TypeError, self.parser.encode, event("s", {1, 2}))
        self.assertIn("'set' is none of dict, list", str(error))

    def test_cycle(self) -> None:
        """A reference cycle is a ValueError, and the parser works on afterwards."""
        loop: list[Any] = []
        loop.append(loop)
        self.assertRaises(ValueError, self.parser.encode, event("c", loop))
        self.assertEqual(self.encode(event("after"))["data"], ["after"])

    def test_unsupported_protocol(self) -> None:
        """Protocols other than 4 and 5 are refused, for encoders and decoders."""
        self.assertRaises(ValueError, self.parser.encode, Packet(PacketType.CONNECT, "/"),
                          protocol=3)
        self.assertRaises(ValueError, self.parser.decoder, protocol=3)


class MsgpackDecodeTests(SynchronousTestCase):
    """What the msgpack parser reads, and what it refuses."""

    def setUp(self) -> None:
        self.decoder = MsgpackParser().decoder()

    def feed(self, obj: Any) -> Packet | None:
        """Decode ``obj`` written as msgpack."""
        return self.decoder.feed(pack(obj))

    def refused(self, data: Any, message: str) -> None:
        """``data`` (msgpack bytes, or an object to write so) is refused with ``message``."""
        raw = data if isinstance(data, (bytes, str)) else pack(data)
        error = self.assertRaises(SocketIOParseError, self.decoder.feed, raw)
        self.assertIn(message, str(error))

    def test_packets(self) -> None:
        """Each packet type decodes; unknown keys (socket.io-client's ``options``) are
        ignored; an event holding bytes stays an EVENT."""
        self.assertEqual(self.feed({"type": 0, "nsp": "/", "data": {"token": "t"}}),
                         Packet(PacketType.CONNECT, "/", {"token": "t"}))
        self.assertEqual(self.feed({"type": 2, "data": ["e", b"\x01"], "nsp": "/c", "id": 4,
                                    "options": {"compress": True}}),
                         Packet(PacketType.EVENT, "/c", ["e", b"\x01"], 4))
        self.assertEqual(self.feed({"type": 4, "nsp": "/", "data": "refused"}),
                         Packet(PacketType.CONNECT_ERROR, "/", "refused"))

    def test_javascript_extensions(self) -> None:
        """notepack.io's undefined is None, a Date its toJSON() text, an ArrayBuffer bytes, a
        msgpack timestamp a date too."""
        raw = (b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x95\xa1x\xd4\x00\x00"
               b"\xd7\x00\x00\x00\x01\x8d\x5f\x63\xea\x05"
               b"\xc7\x03\x00\x01\x02\x03\xd6\xff\x00\x00\x00\x00")
        self.assertEqual(self.decoder.feed(raw), event(
            "x", None, "2024-01-31T12:00:00.005Z", b"\x01\x02\x03", "1970-01-01T00:00:00.000Z"))
        # undefined data is no data (socket.io-client's CONNECT without auth)
        self.assertEqual(self.decoder.feed(b"\x83\xa4type\x00\xa4data\xd4\x00\x00\xa3nsp\xa1/"),
                         Packet(PacketType.CONNECT, "/"))

    def test_timestamps_in_any_extension_form(self) -> None:
        """A msgpack timestamp is read as a date in each of its forms (fixext 4 and 8, ext 8,
        16 and 32), however short the message."""
        head = b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1t"
        one_second = [b"\xd6\xff\x00\x00\x00\x01", b"\xd7\xff" + bytes(7) + b"\x01",
                      b"\xc7\x0c\xff" + bytes(11) + b"\x01",
                      b"\xc8\x00\x0c\xff" + bytes(11) + b"\x01",
                      b"\xc9\x00\x00\x00\x08\xff" + bytes(7) + b"\x01"]
        for ext in one_second:
            self.assertEqual(self.decoder.feed(head + ext),
                             event("t", "1970-01-01T00:00:01.000Z"), ext)

    def test_keys(self) -> None:
        """A key that is a number, a boolean or nil is named as JavaScript names it."""
        packet = self.feed({"type": 2, "nsp": "/",
                            "data": ["k", {1: "a", None: "c", 1.5: "d", 3.0: "e"}, {False: 0}]})
        assert packet is not None
        self.assertEqual(packet.data[1:], [{"1": "a", "null": "c", "1.5": "d", "3": "e"},
                                           {"false": 0}])
        self.refused(b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1k\x81\xc4\x01x\x01",
                     "a map key must be a string")

    def test_depth(self) -> None:
        """Data nested ``max_depth`` containers deep is read; one deeper is refused."""
        deep: Any = []
        for _ in range(DEFAULT_MAX_DEPTH - 2):
            deep = [deep]
        # the data list, then 63 levels: 64 deep
        self.assertIsNotNone(self.feed({"type": 2, "nsp": "/", "data": ["x", deep]}))
        self.refused({"type": 2, "nsp": "/", "data": ["x", [deep]]}, "nested deeper than 64")
        self.refused({"type": 2, "nsp": "/", "data": ["x", {"a": deep}]}, "nested deeper")
        shallow = MsgpackParser(max_depth=2).decoder()
        self.assertRaises(SocketIOParseError, shallow.feed,
                          pack({"type": 2, "nsp": "/", "data": ["x", [[1]]]}))

    def test_refusals(self) -> None:
        """Every fault is a SocketIOParseError naming it, never the data."""
        self.refused("2[\"text\"]", "a text message is no msgpack packet")
        self.refused(b"", "invalid msgpack")
        self.refused(b"\xc1", "invalid msgpack")
        self.refused(pack({"type": 0, "nsp": "/"}) + b"\x00", "invalid msgpack (ExtraData)")
        self.refused(["type", 2], "a msgpack packet is a map")
        for code in (5, 6, 7, -1, "2", True, 2.0, None):
            self.refused({"type": code, "nsp": "/", "data": ["e"]}, "unknown packet type")
        self.refused({"type": 2, "data": ["e"]}, "the namespace must be a string")
        self.refused({"type": 2, "nsp": "chat", "data": ["e"]}, "a namespace starts with '/'")
        self.refused({"type": 2, "nsp": "/" + "n" * 9000, "data": ["e"]}, "namespace too long")
        self.refused({"type": 2, "nsp": "/", "data": []}, "must not be empty")
        self.refused({"type": 2, "nsp": "/", "data": [{"no": "name"}]}, "event name")
        self.refused({"type": 0, "nsp": "/", "data": [1]}, "CONNECT data must be a dict")
        self.refused({"type": 1, "nsp": "/", "data": {}}, "DISCONNECT has no data")
        self.refused({"type": 2, "nsp": "/", "data": ["e"], "id": 1.5}, "ack id must be an int")
        self.refused({"type": 2, "nsp": "/", "data": ["e"], "id": -1}, "from 0 to 2**53 - 1")
        self.refused({"type": 2, "nsp": "/", "data": ["e"], "id": 2**53}, "from 0 to 2**53 - 1")
        self.refused({"type": 0, "nsp": "/", "id": 1}, "CONNECT takes no ack id")
        self.refused(b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x92\xa1e\xd4\x05\x00",
                     "unknown msgpack extension type 5")
        self.refused(b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x91\xa2\xff\xfe", "invalid msgpack")

    def test_lengths_bounded_by_the_message(self) -> None:
        """A header announcing more items than the message holds is refused at once, nothing
        allocated for them."""
        self.refused(b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\xdd\xff\xff\xff\xff",
                     "invalid msgpack")
        self.refused(b"\xdf\xff\xff\xff\xff", "invalid msgpack")
        self.refused(b"\x83\xa4type\x02\xa3nsp\xa1/\xa4data\x91\xc6\xff\xff\xff\xff",
                     "invalid msgpack")

    def test_not_a_message(self) -> None:
        """Neither text nor binary is a TypeError (a caller's bug, not the peer's)."""
        self.assertRaises(TypeError, self.decoder.feed, 42)

    def test_reset(self) -> None:
        """A decoder keeps nothing between messages: reset is a no-op."""
        self.decoder.reset()
        self.assertEqual(self.feed({"type": 1, "nsp": "/"}), Packet(PacketType.DISCONNECT, "/"))


_json_leaves = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1)
                | st.floats(allow_nan=False) | st.text() | st.binary())
_data = st.recursive(_json_leaves, lambda inner: st.lists(inner, max_size=4)
                     | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


class MsgpackPropertyTests(SynchronousTestCase):
    """Properties of the msgpack codec over generated packets and bytes."""

    @settings(max_examples=200, deadline=None)
    @given(name=st.text(min_size=1), args=st.lists(_data, max_size=4),
           nsp=st.sampled_from(["/", "/chat", "/ü"]),
           ack_id=st.none() | st.integers(0, 2**53 - 1), ack=st.booleans())
    def test_round_trip(self, name: str, args: list[Any], nsp: str, ack_id: int | None,
                        ack: bool) -> None:
        """``decode(encode(p)) == p`` for events and acks."""
        parser = MsgpackParser()
        packet = (Packet(PacketType.ACK, nsp, args, ack_id or 0) if ack
                  else Packet(PacketType.EVENT, nsp, [name, *args], ack_id))
        [message] = parser.encode(packet)
        self.assertEqual(parser.decoder().feed(message), packet)
        # The walk the decoder skips when the bytes tell it cannot matter changes nothing.
        skipping = _msgpack_parser._needs_walk
        _msgpack_parser._needs_walk = lambda data, max_depth: True
        try:
            self.assertEqual(parser.decoder().feed(message), packet)
        finally:
            _msgpack_parser._needs_walk = skipping

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=200))
    def test_garbage(self, data: bytes) -> None:
        """Arbitrary bytes decode to a packet or raise SocketIOParseError, nothing else."""
        try:
            MsgpackParser().decoder().feed(data)
        except SocketIOParseError:
            pass


def _server(parser: Any) -> txsio.Server:
    io = txsio.Server(clock=Clock(), parser=parser)

    @io.on("connection")
    def connected(socket: txsio.Socket) -> None:
        socket.join("room")

        @socket.on("echo")
        def echo(*args: Any) -> tuple[Any, ...]:
            return args

        @socket.on("shout")
        def shout(*args: Any) -> None:
            io.to("room").emit("shouted", *args)

        @socket.on("leave")
        def leave() -> None:
            socket.disconnect()

    @io.of("/private").use
    def refuse(socket: txsio.Socket) -> None:
        raise txsio.ConnectionRefusedError("no", {"code": 1})

    return io


class ServerParserTests(SynchronousTestCase):
    """A server's every packet goes through its parser."""

    def test_msgpack_server(self) -> None:
        """With ``parser="msgpack"``, CONNECT, events, acks, broadcasts and binary are binary
        messages on the wire, and a TestClient speaks them."""
        io = _server("msgpack")
        self.assertIsInstance(io.parser, MsgpackParser)
        a, b = TestClient(io), TestClient(io)
        sock_a = self.successResultOf(a.connect())
        sock_b = self.successResultOf(b.connect())
        answer = self.successResultOf(sock_a.emit_with_ack("echo", b"\x00\x01", {"n": [1]}))
        self.assertEqual(answer, (b"\x00\x01", {"n": [1]}))
        sock_a.emit("shout", b"\xff")
        self.assertEqual(sock_b.events("shouted"), [(b"\xff",)])
        self.assertEqual(sock_a.events("shouted"), [(b"\xff",)])
        messages = [p.data for p in b._transport.sent if p.type is EnginePacketType.MESSAGE]
        self.assertTrue(messages)
        self.assertTrue(all(isinstance(m, bytes) for m in messages), messages)
        self.assertEqual(msgpack.unpackb(messages[-1]),
                         {"type": 2, "data": ["shouted", b"\xff"], "nsp": "/"})

    def test_msgpack_refusal_and_disconnect(self) -> None:
        """CONNECT_ERROR (with its data) and the server's DISCONNECT go through the parser."""
        io = _server("msgpack")
        client = TestClient(io)
        failure = self.failureResultOf(client.connect("/private"))
        self.assertEqual((failure.value.message, failure.value.data), ("no", {"code": 1}))
        sock = self.successResultOf(client.connect())
        sock.emit("leave")
        self.assertFalse(sock.connected)
        self.assertEqual(sock.disconnect_reason, "io server disconnect")
        last = [p.data for p in client._transport.sent if p.type is EnginePacketType.MESSAGE][-1]
        self.assertEqual(msgpack.unpackb(last), {"type": 1, "nsp": "/"})

    def test_text_to_msgpack_server(self) -> None:
        """A client speaking the default format to a msgpack server is closed as Node's
        socket.io 4.8 (the reference) closes it on an undecodable packet: "forced close"."""
        io = _server("msgpack")
        client = TestClient(io)
        client.session.receive("0", client._transport)
        self.assertTrue(client.closed)
        self.assertEqual(io.stats.connections_closed, {"forced close": 1})

    def test_custom_parser(self) -> None:
        """A parser object of the user's encodes every packet (CONNECT, ACK, CONNECT_ERROR,
        DISCONNECT) and gives each connection a decoder; a broadcast is encoded once for all
        its recipients."""
        parser = CountingParser()
        io = _server(parser)
        clients = [TestClient(io) for _ in range(3)]
        # one for each connection on the server, one for each TestClient (its server's parser)
        self.assertEqual(parser.decoders, 6)
        sockets = [self.successResultOf(c.connect()) for c in clients]
        # The TestClients use their server's parser too: each CONNECT, then its answer.
        self.assertEqual([p.type for p in parser.encoded], [PacketType.CONNECT] * 6)
        del parser.encoded[:]
        sockets[0].emit("shout", "hi")
        self.assertEqual([s.events("shouted") for s in sockets], [[("hi",)]] * 3)
        # the client's event, then the broadcast, encoded once
        self.assertEqual(parser.encoded, [event("shout", "hi"), event("shouted", "hi")])
        del parser.encoded[:]
        self.successResultOf(sockets[1].emit_with_ack("echo", 1))
        self.failureResultOf(clients[2].connect("/private"))
        sockets[0].emit("leave")
        self.assertEqual([p.type for p in parser.encoded],
                         [PacketType.EVENT, PacketType.ACK, PacketType.CONNECT,
                          PacketType.CONNECT_ERROR, PacketType.EVENT, PacketType.DISCONNECT])

    def test_broadcast_with_ack(self) -> None:
        """A broadcast asking for acks is encoded once by the msgpack parser, and the answers
        come back through it."""
        io = _server("msgpack")
        sockets = [self.successResultOf(TestClient(io).connect()) for _ in range(2)]
        for n, sock in enumerate(sockets):
            sock.on("question", lambda x, n=n: [x, n])
        answers = self.successResultOf(io.timeout(5).emit_with_ack("question", b"?"))
        self.assertEqual(sorted(answers), [[b"?", 0], [b"?", 1]])

    def test_binary_broadcast_frame_not_prepared(self) -> None:
        """A broadcast that is one binary message has no prepared WebSocket frame (its
        prefix depends on each recipient's Engine.IO revision); a text one has."""

        class Factory:
            def prepareMessage(self, payload: bytes, binary: bool) -> tuple[bytes, bool]:
                return payload, binary

        binary = EncodedPacket.of(event("x"), parser=MsgpackParser())
        self.assertIsNone(binary.prepared_frame(Factory()))
        self.assertEqual(EncodedPacket.of(event("x")).prepared_frame(Factory()),
                         (b'42["x"]', False))


class ClientParserTests(SynchronousTestCase):
    """The client's manager holds its parser."""

    def test_client_parser(self) -> None:
        """``txsio.Client(parser=...)`` reaches the manager; the default is the default."""
        self.assertIsInstance(txsio.Client(parser="msgpack", clock=Clock()).io.parser,
                              MsgpackParser)
        self.assertIs(txsio.Client(clock=Clock()).io.parser, DEFAULT_PARSER)
        parser: Parser = CountingParser()
        self.assertIs(txsio.Client(parser=parser, clock=Clock()).io.parser, parser)
