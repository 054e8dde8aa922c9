"""Tests for :mod:`txsio.engineio.packet`: Engine.IO v4 and v3 packets and payloads."""

from __future__ import annotations

import json
import tracemalloc
import urllib.parse
from collections.abc import Callable
from typing import Any

from hypothesis import assume, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txsio.engineio.packet import (
    DEFAULT_MAX_PACKETS,
    EngineIOParseError,
    Packet,
    PacketType,
    decode_jsonp_body,
    decode_packet,
    decode_packet_v3,
    decode_payload,
    decode_payload_v3,
    encode_jsonp_payload,
    encode_packet,
    encode_packet_v3,
    encode_payload,
    encode_payload_v3,
)
from txsio.engineio.wire import open_payload

MESSAGE = PacketType.MESSAGE
PING = PacketType.PING
PONG = PacketType.PONG

SETTINGS = settings(max_examples=150, deadline=None)
FUZZ = settings(max_examples=300, deadline=None)

# Text with the characters that matter here well represented: beyond the BMP (two UTF-16
# units), multi-byte UTF-8, the separators and digits of the payload formats; st.characters()
# also yields lone surrogates, which a browser never sends but a Packet may hold.
_SPECIAL = "€😀𝄞\u2028\u2029\x1e:b40\\\n\x00"
texts = st.text() | st.text(alphabet=st.sampled_from(_SPECIAL) | st.characters())
utf8_texts = st.text(alphabet=st.sampled_from(_SPECIAL) | st.characters(codec="utf-8"))


def text_packets(data: st.SearchStrategy[str] = texts) -> st.SearchStrategy[Packet]:
    """Packets of any type with a text payload or none."""
    return st.builds(Packet, st.sampled_from(PacketType), st.none() | data)


binary_packets = st.builds(Packet, st.just(MESSAGE), st.binary())
packets = text_packets() | binary_packets

# EIO v4 polling cannot carry the record separator in text.
texts_v4 = st.text(alphabet=st.characters(exclude_characters="\x1e"))
packets_v4 = text_packets(texts_v4) | binary_packets

# Peer input: arbitrary text or bytes, and text/bytes built from the formats' own tokens so
# that the fuzzing reaches past the first check.
fuzz_text = st.text() | st.text(
    alphabet=st.sampled_from([*"0123456789:b4AQ=/+\x1e€😀", "\ud83d", "\ude00"])
)
fuzz_bytes = st.binary() | st.lists(
    st.sampled_from([b"\x00", b"\x01", b"\x02", b"\x04", b"\x09", b"\xff", b"4", b"\xe2\x82\xac"])
).map(b"".join)


def decodes_or_parse_error(decoder: Callable[[Any], object], data: object) -> object:
    """Call ``decoder(data)``; return its result, or ``None`` if it raised EngineIOParseError."""
    try:
        return decoder(data)
    except EngineIOParseError:
        return None


class PacketTests(SynchronousTestCase):
    """The packet value: validation and the one representation per wire encoding."""

    def test_types(self) -> None:
        """The packet types carry the numbers of the spec, open to noop."""
        self.assertEqual(
            [(t.name, int(t)) for t in PacketType],
            [
                ("OPEN", 0),
                ("CLOSE", 1),
                ("PING", 2),
                ("PONG", 3),
                ("MESSAGE", 4),
                ("UPGRADE", 5),
                ("NOOP", 6),
            ],
        )

    def test_type_must_be_packet_type(self) -> None:
        """A plain int is not accepted as a packet type."""
        self.assertRaises(TypeError, Packet, 4, "hello")

    def test_data_type(self) -> None:
        """Data other than str, bytes or None is refused."""
        self.assertRaises(TypeError, Packet, MESSAGE, bytearray(b"x"))
        self.assertRaises(TypeError, Packet, MESSAGE, 4)

    def test_bytes_only_for_message(self) -> None:
        """Only a message packet can carry bytes."""
        for ptype in PacketType:
            if ptype is not MESSAGE:
                self.assertRaises(ValueError, Packet, ptype, b"x")
        self.assertEqual(Packet(MESSAGE, b"x").data, b"x")

    def test_message_has_data(self) -> None:
        """A message without data has the empty string as its data."""
        self.assertEqual(Packet(MESSAGE).data, "")
        self.assertEqual(Packet(MESSAGE), Packet(MESSAGE, ""))

    def test_empty_text_is_none(self) -> None:
        """Any type other than message has None, not the empty string, for no payload."""
        self.assertIsNone(Packet(PING, "").data)
        self.assertEqual(Packet(PING, ""), Packet(PING))

    def test_empty_bytes_kept(self) -> None:
        """An empty binary message stays binary."""
        self.assertEqual(Packet(MESSAGE, b"").data, b"")

    def test_frozen(self) -> None:
        """A packet cannot be changed once built."""
        packet = Packet(MESSAGE, "x")
        self.assertRaises(AttributeError, setattr, packet, "data", "y")

    def test_parse_error_is_value_error(self) -> None:
        """The decoders' error is a ValueError."""
        self.assertTrue(issubclass(EngineIOParseError, ValueError))

    def test_default_max_packets(self) -> None:
        """The default bound on packets per payload is a positive int."""
        self.assertIsInstance(DEFAULT_MAX_PACKETS, int)
        self.assertGreater(DEFAULT_MAX_PACKETS, 0)


class V4PacketTests(SynchronousTestCase):
    """EIO v4 WebSocket frames."""

    def test_spec_message(self) -> None:
        """The spec's ``4hello`` is a message with data ``hello``, both ways."""
        self.assertEqual(decode_packet("4hello"), Packet(MESSAGE, "hello"))
        self.assertEqual(encode_packet(Packet(MESSAGE, "hello")), "4hello")

    def test_spec_probe(self) -> None:
        """The upgrade probe is ``2probe`` and its answer ``3probe``."""
        self.assertEqual(decode_packet("2probe"), Packet(PING, "probe"))
        self.assertEqual(encode_packet(Packet(PONG, "probe")), "3probe")

    def test_type_only(self) -> None:
        """A packet without payload is its type digit alone."""
        for ptype in PacketType:
            self.assertEqual(encode_packet(Packet(ptype)), str(int(ptype)))
            self.assertEqual(decode_packet(str(int(ptype))), Packet(ptype))

    def test_binary_frame_as_is(self) -> None:
        """A binary message is the frame's bytes, without a type byte."""
        self.assertEqual(encode_packet(Packet(MESSAGE, b"\x01\x02")), b"\x01\x02")
        self.assertEqual(decode_packet(b"\x01\x02"), Packet(MESSAGE, b"\x01\x02"))
        self.assertEqual(decode_packet(b""), Packet(MESSAGE, b""))

    def test_base64_text_frame(self) -> None:
        """A text frame ``b<base64>`` is a binary message, as Node decodes it."""
        self.assertEqual(decode_packet("bAQIDBA=="), Packet(MESSAGE, b"\x01\x02\x03\x04"))

    def test_errors(self) -> None:
        """Empty text, an unknown type and bad base64 are parse errors."""
        for frame in ["", "7", "x4", " 4", "\u0664hello", "bAQ", "b!!!!", "bAQ==AQ==", "b€"]:
            with self.subTest(frame=frame):
                self.assertRaises(EngineIOParseError, decode_packet, frame)

    def test_not_a_frame(self) -> None:
        """Data that is neither str nor bytes is the caller's error, a TypeError."""
        self.assertRaises(TypeError, decode_packet, 4)

    @SETTINGS
    @given(packets)
    def test_round_trip(self, packet: Packet) -> None:
        """Decoding an encoded packet gives the packet back."""
        self.assertEqual(decode_packet(encode_packet(packet)), packet)

    @FUZZ
    @given(fuzz_text | fuzz_bytes)
    def test_fuzz(self, data: str | bytes) -> None:
        """Arbitrary text or bytes decode to a packet or raise EngineIOParseError."""
        result = decodes_or_parse_error(decode_packet, data)
        self.assertIsInstance(result, (Packet, type(None)))


class V4PayloadTests(SynchronousTestCase):
    """EIO v4 polling payloads."""

    def test_spec_example(self) -> None:
        """The spec's ``4hello\\x1e2\\x1e4world`` is message, ping, message, both ways."""
        packets = [Packet(MESSAGE, "hello"), Packet(PING), Packet(MESSAGE, "world")]
        self.assertEqual(decode_payload("4hello\x1e2\x1e4world"), packets)
        self.assertEqual(encode_payload(packets), "4hello\x1e2\x1e4world")

    def test_spec_binary_example(self) -> None:
        """The spec's ``4hello\\x1ebAQIDBA==`` carries the bytes 01 02 03 04, both ways."""
        packets = [Packet(MESSAGE, "hello"), Packet(MESSAGE, b"\x01\x02\x03\x04")]
        self.assertEqual(decode_payload("4hello\x1ebAQIDBA=="), packets)
        self.assertEqual(encode_payload(packets), "4hello\x1ebAQIDBA==")

    def test_single(self) -> None:
        """A payload of one packet has no separator."""
        self.assertEqual(encode_payload([Packet(PacketType.NOOP)]), "6")
        self.assertEqual(decode_payload("6"), [Packet(PacketType.NOOP)])

    def test_empty_binary(self) -> None:
        """An empty binary message is ``b`` alone."""
        self.assertEqual(encode_payload([Packet(MESSAGE, b"")]), "b")
        self.assertEqual(decode_payload("b"), [Packet(MESSAGE, b"")])

    def test_no_packets(self) -> None:
        """No packets encode to the empty string, which does not decode."""
        self.assertEqual(encode_payload([]), "")
        self.assertRaises(EngineIOParseError, decode_payload, "")

    def test_separator_in_text_refused(self) -> None:
        """Text containing the record separator cannot be encoded: it would forge packets."""
        self.assertRaises(ValueError, encode_payload, [Packet(MESSAGE, "a\x1e1")])
        self.assertRaises(ValueError, encode_payload, [Packet(PING), Packet(MESSAGE, "\x1e")])

    def test_errors(self) -> None:
        """Empty records, unknown types and bad base64 are parse errors."""
        for body in ["", "\x1e", "4a\x1e", "\x1e4a", "4a\x1e\x1e4b", "9", "4a\x1ebAQ", "4a\x1ex"]:
            with self.subTest(body=body):
                self.assertRaises(EngineIOParseError, decode_payload, body)

    def test_packets_before_the_error(self) -> None:
        """A parse error carries the packets of the records before the bad one, as Node's
        engine.io-parser 5 decodes them in order and stops at the first bad one (Node's
        engine.io 6 is the reference); a payload over the bound carries none."""
        with self.assertRaises(EngineIOParseError) as caught:
            decode_payload("4a\x1ebAQID\x1e9x\x1e4b")
        self.assertEqual(list(caught.exception.packets),
                         [Packet(MESSAGE, "a"), Packet(MESSAGE, b"\x01\x02\x03")])
        with self.assertRaises(EngineIOParseError) as caught:
            decode_payload("x\x1e4a")
        self.assertEqual(list(caught.exception.packets), [])
        with self.assertRaises(EngineIOParseError) as caught:
            decode_payload("4a\x1e4b\x1ex", max_packets=2)
        self.assertEqual(list(caught.exception.packets), [])

    def test_max_packets(self) -> None:
        """A payload may hold max_packets packets and no more."""
        self.assertEqual(len(decode_payload("\x1e".join(["3"] * 5), max_packets=5)), 5)
        self.assertRaises(EngineIOParseError, decode_payload, "\x1e".join(["3"] * 6), max_packets=5)

    def test_max_packets_default(self) -> None:
        """By default a payload may hold DEFAULT_MAX_PACKETS packets and no more."""
        body = "\x1e".join(["3"] * DEFAULT_MAX_PACKETS)
        self.assertEqual(len(decode_payload(body)), DEFAULT_MAX_PACKETS)
        self.assertRaises(EngineIOParseError, decode_payload, body + "\x1e3")

    def test_max_packets_at_least_one(self) -> None:
        """A bound below one is the caller's error (a negative one would lift the split bound)."""
        self.assertRaises(ValueError, decode_payload, "3", max_packets=0)
        self.assertRaises(ValueError, decode_payload, "3", max_packets=-1)

    def test_max_packets_memory(self) -> None:
        """Too many records are refused without building an object per record."""
        body = "\x1e" * 1_000_000
        tracemalloc.start()
        try:
            self.assertRaises(EngineIOParseError, decode_payload, body, max_packets=10)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        self.assertLess(peak, 4 * len(body))

    @SETTINGS
    @given(st.lists(packets_v4, min_size=1, max_size=8))
    def test_round_trip(self, packets: list[Packet]) -> None:
        """Decoding an encoded payload gives the packets back."""
        self.assertEqual(decode_payload(encode_payload(packets)), packets)

    @FUZZ
    @given(fuzz_text)
    def test_fuzz(self, body: str) -> None:
        """Arbitrary text decodes to packets or raises EngineIOParseError."""
        result = decodes_or_parse_error(decode_payload, body)
        self.assertIsInstance(result, (list, type(None)))


class V3PacketTests(SynchronousTestCase):
    """EIO v3 WebSocket frames (engine.io-client 3.x)."""

    def test_text(self) -> None:
        """Text packets are the same as in v4."""
        self.assertEqual(encode_packet_v3(Packet(MESSAGE, "hello")), "4hello")
        self.assertEqual(decode_packet_v3("2probe"), Packet(PING, "probe"))
        self.assertEqual(decode_packet_v3("2"), Packet(PING))

    def test_spec_binary(self) -> None:
        """The spec's binary message ``4|0|1|2|3|4|5`` starts with the type byte."""
        frame = bytes([4, 0, 1, 2, 3, 4, 5])
        packet = Packet(MESSAGE, bytes([0, 1, 2, 3, 4, 5]))
        self.assertEqual(decode_packet_v3(frame), packet)
        self.assertEqual(encode_packet_v3(packet), frame)
        self.assertEqual(encode_packet_v3(packet, supports_binary=True), frame)

    def test_base64(self) -> None:
        """Without binary support a binary message is ``b4`` and base64."""
        packet = Packet(MESSAGE, b"\x01\x02\x03\x04")
        self.assertEqual(encode_packet_v3(packet, supports_binary=False), "b4AQIDBA==")
        self.assertEqual(decode_packet_v3("b4AQIDBA=="), packet)

    def test_errors(self) -> None:
        """Empty data, unknown types, a non-message binary packet and bad base64 are errors."""
        for frame in ["", "7", "x", "b", "b2AQ==", "b4AQ", b"", b"\x07", b"\x02probe", b"4"]:
            with self.subTest(frame=frame):
                self.assertRaises(EngineIOParseError, decode_packet_v3, frame)

    @SETTINGS
    @given(packets, st.booleans())
    def test_round_trip(self, packet: Packet, supports_binary: bool) -> None:
        """Decoding an encoded packet gives the packet back, with or without binary support."""
        encoded = encode_packet_v3(packet, supports_binary=supports_binary)
        self.assertEqual(decode_packet_v3(encoded), packet)

    @FUZZ
    @given(fuzz_text | fuzz_bytes)
    def test_fuzz(self, data: str | bytes) -> None:
        """Arbitrary text or bytes decode to a packet or raise EngineIOParseError."""
        result = decodes_or_parse_error(decode_packet_v3, data)
        self.assertIsInstance(result, (Packet, type(None)))


class V3StringPayloadTests(SynchronousTestCase):
    """EIO v3 polling payloads in the string form ``<length>:<packet>``."""

    def test_spec_example(self) -> None:
        """The spec's ``6:4hello2:4€`` counts ``4€`` as 2, both ways."""
        packets = [Packet(MESSAGE, "hello"), Packet(MESSAGE, "€")]
        self.assertEqual(decode_payload_v3("6:4hello2:4€"), packets)
        self.assertEqual(encode_payload_v3(packets, supports_binary=False), "6:4hello2:4€")
        self.assertEqual(encode_payload_v3(packets, supports_binary=True), "6:4hello2:4€")

    def test_spec_base64_example(self) -> None:
        """The spec's ``2:4€10:b4AQIDBA==`` is the form without binary support, both ways."""
        packets = [Packet(MESSAGE, "€"), Packet(MESSAGE, b"\x01\x02\x03\x04")]
        self.assertEqual(decode_payload_v3("2:4€10:b4AQIDBA=="), packets)
        self.assertEqual(encode_payload_v3(packets, supports_binary=False), "2:4€10:b4AQIDBA==")

    def test_non_bmp_counts_two(self) -> None:
        """A character beyond the BMP counts two UTF-16 units, as JavaScript's length does."""
        packets = [Packet(MESSAGE, "😀x"), Packet(MESSAGE, "𝄞")]
        self.assertEqual(encode_payload_v3(packets, supports_binary=False), "4:4😀x3:4𝄞")
        self.assertEqual(decode_payload_v3("4:4😀x3:4𝄞"), packets)

    def test_non_bmp_wrong_length(self) -> None:
        """A length counting code points, or splitting a surrogate pair, is an error."""
        for body in ["3:4😀x", "2:4😀", "2:4😀x", "2:4😀1:4", "1:4😀"]:
            with self.subTest(body=body):
                self.assertRaises(EngineIOParseError, decode_payload_v3, body)

    def test_no_packets(self) -> None:
        """No packets encode to ``0:``, as Node's encoder sends, which decodes to none."""
        self.assertEqual(encode_payload_v3([], supports_binary=False), "0:")
        self.assertEqual(encode_payload_v3([], supports_binary=True), "0:")
        self.assertEqual(decode_payload_v3("0:"), [])

    def test_zero_length_skipped(self) -> None:
        """A zero-length record is skipped, as in Node."""
        self.assertEqual(decode_payload_v3("0:1:21:3"), [Packet(PING), Packet(PONG)])

    def test_leading_zeros(self) -> None:
        """A length may have leading zeros, up to 15 digits."""
        fifteen, sixteen = "0" * 14 + "2", "0" * 15 + "2"
        self.assertEqual(decode_payload_v3(fifteen + ":4a"), [Packet(MESSAGE, "a")])
        self.assertRaises(EngineIOParseError, decode_payload_v3, sixteen + ":4a")

    def test_errors(self) -> None:
        """A bad or missing length, a truncated record and a bad packet are errors."""
        bodies = [
            "",
            ":",
            "1",
            "4a",
            "a:4",
            "1:",
            "2:4",
            "1:41",
            "1:4:",
            " 1:4",
            "-1:4",
            "+1:4",
            "1_0:4aaaaaaaaa",
            "\u0662:4a",
            "1:7",
            "1:b",
            "3:b4A",
            "99999999999999999999:4",
        ]
        for body in bodies:
            with self.subTest(body=body):
                self.assertRaises(EngineIOParseError, decode_payload_v3, body)

    def test_packets_before_the_error(self) -> None:
        """A parse error carries the packets of the records before the bad one, as Node's v3
        parser hands them on as it reads them; a payload over the bound carries none."""
        for body in ["2:4a1:320:4truncated", "2:4a1:3x:4b", "2:4a1:31:9"]:
            with self.subTest(body=body):
                with self.assertRaises(EngineIOParseError) as caught:
                    decode_payload_v3(body)
                self.assertEqual(list(caught.exception.packets),
                                 [Packet(MESSAGE, "a"), Packet(PONG)])
        with self.assertRaises(EngineIOParseError) as caught:
            decode_payload_v3("2:4a1:31:3", max_packets=2)
        self.assertEqual(list(caught.exception.packets), [])

    def test_max_packets(self) -> None:
        """A payload may hold max_packets records and no more."""
        self.assertEqual(len(decode_payload_v3("1:3" * 5, max_packets=5)), 5)
        self.assertRaises(EngineIOParseError, decode_payload_v3, "1:3" * 6, max_packets=5)
        self.assertRaises(EngineIOParseError, decode_payload_v3, "0:" * 6, max_packets=5)
        self.assertRaises(ValueError, decode_payload_v3, "1:3", max_packets=0)

    @SETTINGS
    @given(st.lists(packets, min_size=1, max_size=8))
    def test_round_trip(self, packets: list[Packet]) -> None:
        """Decoding an encoded string payload gives the packets back."""
        encoded = encode_payload_v3(packets, supports_binary=False)
        self.assertIsInstance(encoded, str)
        self.assertEqual(decode_payload_v3(encoded), packets)

    @SETTINGS
    @given(st.lists(text_packets(st.text(alphabet="a€😀𝄞", min_size=1)), min_size=1, max_size=5))
    def test_round_trip_non_bmp(self, packets: list[Packet]) -> None:
        """Lengths of text mixing BMP and non-BMP characters count UTF-16 units both ways."""
        encoded = encode_payload_v3(packets, supports_binary=False)
        assert isinstance(encoded, str)
        records: list[str] = []
        for p in packets:
            assert not isinstance(p.data, bytes)  # text packets only
            records.append(f"{int(p.type)}{p.data or ''}")
        expected = "".join(f"{len(r.encode('utf-16-le')) // 2}:{r}" for r in records)
        self.assertEqual(encoded, expected)
        self.assertEqual(decode_payload_v3(encoded), packets)

    @SETTINGS
    @given(st.lists(packets, min_size=1, max_size=4), st.data())
    def test_truncated(self, packets: list[Packet], data: st.DataObject) -> None:
        """A payload cut short decodes (at a record boundary) or raises EngineIOParseError."""
        encoded = encode_payload_v3(packets, supports_binary=False)
        cut = data.draw(st.integers(0, len(encoded) - 1))
        result = decodes_or_parse_error(decode_payload_v3, encoded[:cut])
        self.assertIsInstance(result, (list, type(None)))

    @FUZZ
    @given(fuzz_text)
    def test_fuzz(self, body: str) -> None:
        """Arbitrary text decodes to packets or raises EngineIOParseError."""
        result = decodes_or_parse_error(decode_payload_v3, body)
        self.assertIsInstance(result, (list, type(None)))


class V3BinaryPayloadTests(SynchronousTestCase):
    """EIO v3 polling payloads in the binary form (XHR2)."""

    SPEC = bytes.fromhex("00 04 ff 34 e2 82 ac 01 05 ff 04 01 02 03 04")

    def test_spec_example(self) -> None:
        """The spec's binary example: a UTF-8 text record and a binary record, both ways."""
        packets = [Packet(MESSAGE, "€"), Packet(MESSAGE, b"\x01\x02\x03\x04")]
        self.assertEqual(encode_payload_v3(packets, supports_binary=True), self.SPEC)
        self.assertEqual(decode_payload_v3(self.SPEC), packets)

    def test_multi_digit_length(self) -> None:
        """A length of several digits is one byte 0-9 per digit."""
        packet = Packet(MESSAGE, bytes(11))
        encoded = encode_payload_v3([packet], supports_binary=True)
        self.assertEqual(encoded, b"\x01\x01\x02\xff\x04" + bytes(11))
        self.assertEqual(decode_payload_v3(encoded), [packet])

    def test_empty(self) -> None:
        """An empty binary payload has no packets, as in Node."""
        self.assertEqual(decode_payload_v3(b""), [])

    def test_errors(self) -> None:
        """Bad flags, bad or missing lengths, truncation and bad records are errors."""
        bodies = [
            b"\x02\x01\xff4",
            b"\x00\xff",
            b"\x00\x01",
            b"\x00\x0a\xff" + b"4" * 10,
            b"\x00\x02\xff4",
            b"\x00\x01\xff7",
            b"\x00\x02\xff4\xff",
            b"\x01\x02\xff\x02a",
            b"\x01\x01\xff\x07",
            b"\x00\x00\xff",
            b"\x01\x00\xff",
            b"\x00" + b"\x00" * 15 + b"\x01\xff4",
            b"\x00" + b"\x09" * 400 + b"\xff",
        ]
        for body in bodies:
            with self.subTest(body=body):
                self.assertRaises(EngineIOParseError, decode_payload_v3, body)

    def test_fifteen_digits(self) -> None:
        """A length of fifteen digits (leading zeros) is accepted."""
        body = b"\x00" + b"\x00" * 14 + b"\x01\xff4"
        self.assertEqual(decode_payload_v3(body), [Packet(MESSAGE)])

    def test_surrogates_like_node(self) -> None:
        """Lone surrogates in text are carried as Node's lenient utf8.js does."""
        packet = Packet(MESSAGE, "\ud83d")
        encoded = encode_payload_v3([packet, Packet(MESSAGE, b"")], supports_binary=True)
        self.assertEqual(encoded, b"\x00\x04\xff4\xed\xa0\xbd\x01\x01\xff\x04")
        self.assertEqual(decode_payload_v3(encoded), [packet, Packet(MESSAGE, b"")])

    def test_max_packets(self) -> None:
        """A binary payload may hold max_packets records and no more."""
        record = b"\x00\x01\xff3"
        self.assertEqual(len(decode_payload_v3(record * 5, max_packets=5)), 5)
        self.assertRaises(EngineIOParseError, decode_payload_v3, record * 6, max_packets=5)

    @SETTINGS
    @given(st.lists(packets, min_size=1, max_size=8), binary_packets, st.data())
    def test_round_trip(self, packets: list[Packet], binary: Packet, data: st.DataObject) -> None:
        """Decoding an encoded binary payload gives the packets back."""
        packets.insert(data.draw(st.integers(0, len(packets))), binary)
        encoded = encode_payload_v3(packets, supports_binary=True)
        self.assertIsInstance(encoded, bytes)
        self.assertEqual(decode_payload_v3(encoded), packets)

    @FUZZ
    @given(fuzz_bytes)
    def test_fuzz(self, body: bytes) -> None:
        """Arbitrary bytes decode to packets or raise EngineIOParseError."""
        result = decodes_or_parse_error(decode_payload_v3, body)
        self.assertIsInstance(result, (list, type(None)))


def client_jsonp_form(payload: str) -> bytes:
    """Build a JSONP POST body as engine.io-client 3.x does: escape newlines, then form-encode."""
    escaped = payload.replace("\\n", "\\\n").replace("\n", "\\n")
    return urllib.parse.urlencode({"d": escaped}).encode("ascii")


def jsonp_argument(script: str, index: str) -> object:
    """Return the argument of a ``___eio[index](...);`` call, parsed as JSON."""
    head, foot = f"___eio[{index}](", ");"
    assert script.startswith(head) and script.endswith(foot), script
    return json.loads(script[len(head) : -len(foot)])


class JSONPTests(SynchronousTestCase):
    """EIO v3 JSONP polling: the script of a GET response and the form of a POST."""

    def test_encode(self) -> None:
        """A payload becomes a call of ``___eio[index]`` with a JavaScript string literal."""
        self.assertEqual(encode_jsonp_payload('6:4h"i\n', "3"), '___eio[3]("6:4h\\"i\\n");')

    def test_line_separators_escaped(self) -> None:
        """U+2028 and U+2029, line terminators in older JavaScript, are escaped."""
        script = encode_jsonp_payload("3:4\u2028\u2029", "0")
        self.assertEqual(script, '___eio[0]("3:4\\u2028\\u2029");')
        self.assertEqual(jsonp_argument(script, "0"), "3:4\u2028\u2029")

    def test_non_ascii_kept(self) -> None:
        """Other non-ASCII text is kept as it is."""
        self.assertEqual(encode_jsonp_payload("2:4€", "1"), '___eio[1]("2:4€");')

    def test_lone_surrogate_escaped(self) -> None:
        """A lone surrogate is escaped, as JSON.stringify does, so the script is valid UTF-8."""
        script = encode_jsonp_payload("2:4\ud83d", "1")
        self.assertEqual(script, '___eio[1]("2:4\\ud83d");')
        script.encode("utf-8")

    def test_index_digits_only(self) -> None:
        """An index that is not ASCII digits is refused."""
        for index in ["", "1a", "-1", "1]", "\u0661", " 1"]:
            with self.subTest(index=index):
                self.assertRaises(ValueError, encode_jsonp_payload, "0:", index)

    @SETTINGS
    @given(texts, st.integers(0, 10**6))
    def test_encode_is_a_js_string(self, payload: str, index: int) -> None:
        """The script's argument parses back to the payload and has no raw line terminator."""
        script = encode_jsonp_payload(payload, str(index))
        self.assertEqual(jsonp_argument(script, str(index)), payload)
        for terminator in "\n\r\u2028\u2029":
            self.assertNotIn(terminator, script)

    def test_decode(self) -> None:
        """The field ``d`` of the form is the payload, ``+`` and escapes decoded."""
        self.assertEqual(decode_jsonp_body(b"d=6%3A4hello+x"), "6:4hello x")

    def test_decode_newlines(self) -> None:
        """Node's rule: ``\\n`` becomes a newline, and ``\\\\n`` then becomes ``\\n``."""
        form = urllib.parse.urlencode({"d": "a\\nb\\\\nc"}).encode("ascii")
        self.assertEqual(decode_jsonp_body(form), "a\nb\\nc")

    def test_decode_errors(self) -> None:
        """A form without exactly one ``d``, or not UTF-8, is a parse error."""
        for body in [b"", b"x=1", b"d=1&d=2", b"d=%ff", b"d=\xff", b"D=1"]:
            with self.subTest(body=body):
                self.assertRaises(EngineIOParseError, decode_jsonp_body, body)

    def test_decode_blank(self) -> None:
        """A blank ``d`` is the empty payload (which the payload decoder then refuses)."""
        self.assertEqual(decode_jsonp_body(b"d="), "")
        self.assertEqual(decode_jsonp_body(b"d&x=1"), "")

    @SETTINGS
    @given(utf8_texts)
    def test_round_trip(self, payload: str) -> None:
        """What the v3 client sends decodes to its payload (unless a backslash precedes a newline,
        which the escaping cannot carry)."""
        assume("\\\n" not in payload)
        self.assertEqual(decode_jsonp_body(client_jsonp_form(payload)), payload)

    @FUZZ
    @given(fuzz_bytes | st.text().map(lambda t: t.encode("utf-8", "surrogatepass")))
    def test_fuzz(self, body: bytes) -> None:
        """Arbitrary bytes decode to a payload or raise EngineIOParseError."""
        result = decodes_or_parse_error(decode_jsonp_body, body)
        self.assertIsInstance(result, (str, type(None)))


class OpenPayloadTests(SynchronousTestCase):
    """The open packet's JSON, written from a cached tail, is what json.dumps writes."""

    def test_as_json_dumps(self) -> None:
        """For sids, upgrades and timings of several servers, one after the other, the JSON
        is the compact JSON of the whole object, in the same key order."""
        for sid, upgrades, interval, timeout, size in (
                ("a-B_c0123456789xyzAB", ["websocket"], 25.0, 20.0, 1_000_000),
                ("a-B_c0123456789xyzAB", [], 0.3, 0.2, 1000),
                ("zz", ["websocket"], 25.0, 20.0, 1_000_000),
                ('q"\u00e9', ["websocket"], 1.2345, 0.0005, 5)):
            expected = json.dumps({"sid": sid, "upgrades": upgrades,
                                   "pingInterval": round(interval * 1000),
                                   "pingTimeout": round(timeout * 1000), "maxPayload": size},
                                  separators=(",", ":"))
            self.assertEqual(open_payload(sid, upgrades, interval, timeout, size), expected)
