"""Tests for :mod:`txsio.protocol`: Socket.IO v5 and v4 packets, binary attachments, bounds."""

from __future__ import annotations

import functools
import json
import math
import warnings
from collections.abc import Callable
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from txsio.protocol import (
    ACK,
    BINARY_ACK,
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    DEFAULT_MAX_ATTACHMENTS,
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_NSP_LENGTH,
    DISCONNECT,
    EVENT,
    MAX_ACK_ID,
    RESERVED_EVENTS,
    Decoder,
    Packet,
    PacketType,
    SocketIOParseError,
    encode,
    has_binary,
    trusted_packet,
)

SETTINGS = settings(max_examples=75, deadline=None)
FUZZ = settings(max_examples=200, deadline=None)

# Enough attachments for any generated packet (4 values of at most 12 leaves, and a name).
MANY = 64


def hypothesis_mixes_bytes_and_str(test: Callable[..., None]) -> Callable[..., None]:
    """Ignore the BytesWarning that Hypothesis itself trips under ``python -bb``.

    Its example cache compares choice sequences, and a ``str`` and a ``bytes`` of the same
    ASCII content hash alike; only warnings raised inside Hypothesis are ignored.
    """

    @functools.wraps(test)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=BytesWarning, module=r"hypothesis\.")
            test(*args, **kwargs)

    return wrapper


def decode(*messages: str | bytes, protocol: int = 5, **bounds: int) -> Packet | None:
    """Feed messages to a fresh decoder; return what the last one gave."""
    decoder = Decoder(protocol=protocol, **bounds)
    result = None
    for message in messages:
        result = decoder.feed(message)
    return result


def placeholder(num: int) -> str:
    """The JSON Node writes for attachment ``num``."""
    return f'{{"_placeholder":true,"num":{num}}}'


# The placeholders of attachments 0 to 3.
P0, P1, P2, P3 = (placeholder(num) for num in range(4))


def json_depth(value: Any) -> int:
    """The nesting of ``value`` in containers (a reference, recursive: small data only)."""
    if isinstance(value, list):
        return 1 + max((json_depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((json_depth(v) for v in value.values()), default=0)
    return 0


# ---- strategies ---------------------------------------------------------------------------

# Text with what matters here well represented: JSON's quotes, escapes and brackets (the
# depth check reads them), non-ASCII, and lone surrogates (escaped on the way out).
# (Only high surrogates: a high and a low one side by side are one character in JSON.)
_SPECIAL = ['"', "\\", "[", "]", "{", "}", ",", "é", "😀", "\u2028", "\ud800", "\udbff", "/"]
texts = st.text(max_size=8) | st.text(st.sampled_from(_SPECIAL) | st.characters(), max_size=8)
keys = texts.filter(lambda k: k != "_placeholder")
scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
binaries: st.SearchStrategy[bytes | bytearray | memoryview] = (
    st.binary(max_size=8)
    | st.binary(max_size=8).map(bytearray)
    # a lambda: typeshed's generic memoryview constructor is not a callable mypy can solve
    | st.binary(max_size=8).map(lambda b: memoryview(b))
)


def json_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """JSON-able values built from ``leaves``, nested in lists and dicts."""
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4) | st.dictionaries(keys, children, max_size=4)
        ),
        max_leaves=12,
    )


plain_values = json_values(scalars)
mixed_values = json_values(scalars | binaries)
namespaces = st.just("/") | st.text(st.characters(exclude_characters=","), max_size=8).map(
    lambda s: "/" + s
)
ack_ids = st.none() | st.integers(0, MAX_ACK_ID)


@st.composite
def packets(draw: st.DrawFn, values: st.SearchStrategy[Any] = mixed_values) -> Packet:
    """Valid packets whose type says whether their data holds binary."""
    ptype = draw(st.sampled_from(PacketType))
    nsp = draw(namespaces)
    ack_id = None
    data: Any
    if ptype is CONNECT:
        data = draw(st.none() | st.dictionaries(keys, values, max_size=4))
    elif ptype is DISCONNECT:
        data = None
    elif ptype is CONNECT_ERROR:
        data = draw(
            texts
            | st.dictionaries(keys, plain_values, max_size=4)
            | st.fixed_dictionaries({"message": texts, "data": plain_values})
        )
    else:
        data = draw(st.lists(values, max_size=4))
        if ptype in (EVENT, BINARY_EVENT):
            name = draw(texts | st.integers(0, 2**40) | st.floats(0, 1e6))
            data = [name, *data]
        if ptype in (BINARY_EVENT, BINARY_ACK) and not has_binary(data):
            data.append(draw(binaries))
        elif has_binary(data):
            ptype = BINARY_EVENT if ptype in (EVENT, BINARY_EVENT) else BINARY_ACK
        ack_id = draw(ack_ids)
    if ptype is CONNECT or ptype is CONNECT_ERROR or ptype is DISCONNECT:
        # Only EVENT and ACK types carry binary: keep binary out of the others.
        if has_binary(data):
            data = None if ptype is not CONNECT_ERROR else "x"
    return Packet(ptype, nsp, data, ack_id)


# Peer input: arbitrary text and bytes, and text built from the format's own tokens so that
# the fuzzing reaches past the first checks.
_TOKENS = [
    *"0123456789",
    "-",
    "/",
    ",",
    "?",
    "[",
    "]",
    "{",
    "}",
    '"',
    ":",
    "\\",
    " ",
    "_placeholder",
    "num",
    "true",
    "null",
    "NaN",
    '"a"',
    "1e400",
    "é",
    "\ud800",
]
fuzz_text = st.text() | st.lists(st.sampled_from(_TOKENS), max_size=30).map("".join)
fuzz_messages = st.lists(fuzz_text | st.binary(max_size=8), max_size=8)


# ---- the packet ---------------------------------------------------------------------------


class PacketTests(SynchronousTestCase):
    """The packet value, validated when built."""

    def test_types(self) -> None:
        """The packet types carry the numbers of the spec, CONNECT to BINARY_ACK."""
        self.assertEqual(
            [(t.name, int(t)) for t in PacketType],
            [
                ("CONNECT", 0),
                ("DISCONNECT", 1),
                ("EVENT", 2),
                ("ACK", 3),
                ("CONNECT_ERROR", 4),
                ("BINARY_EVENT", 5),
                ("BINARY_ACK", 6),
            ],
        )

    def test_trusted_packet(self) -> None:
        """``trusted_packet`` builds the packet ``Packet(...)`` builds from the same valid
        fields: equal, frozen, and encoded the same."""
        for fields in [(ACK, "/", [{"a": 1}], 7), (EVENT, "/chat", ["x", 1], None),
                       (BINARY_ACK, "/", [b"\x00"], 0), (CONNECT, "/", None, None)]:
            packet = trusted_packet(*fields)
            self.assertEqual(packet, Packet(*fields))
            self.assertEqual(repr(packet), repr(Packet(*fields)))
            self.assertEqual(encode(packet), encode(Packet(*fields)))
            with self.assertRaises(AttributeError):
                packet.nsp = "/other"  # type: ignore[misc]

    def test_reserved_events(self) -> None:
        """The reserved event names are Node's six."""
        self.assertEqual(
            RESERVED_EVENTS,
            {
                "connect",
                "connect_error",
                "disconnect",
                "disconnecting",
                "newListener",
                "removeListener",
            },
        )

    def test_defaults(self) -> None:
        """A packet defaults to the main namespace, no data and no ack id."""
        packet = Packet(DISCONNECT)
        self.assertEqual((packet.nsp, packet.data, packet.id), ("/", None, None))

    def test_type_must_be_packet_type(self) -> None:
        """A plain int is not accepted as a packet type."""
        self.assertRaises(TypeError, Packet, 2, "/", ["a"])

    def test_namespace(self) -> None:
        """A namespace is a str starting with '/' and without ','."""
        self.assertRaises(TypeError, Packet, DISCONNECT, b"/")
        for nsp in ["", "admin", "/a,b"]:
            with self.subTest(nsp=nsp):
                self.assertRaises(ValueError, Packet, DISCONNECT, nsp)
        self.assertEqual(Packet(DISCONNECT, "/admin?x=1").nsp, "/admin?x=1")

    def test_ack_id(self) -> None:
        """An ack id is an int from 0 to 2**53 - 1, on EVENT and ACK types only."""
        self.assertRaises(TypeError, Packet, EVENT, "/", ["a"], True)
        self.assertRaises(TypeError, Packet, EVENT, "/", ["a"], "1")
        self.assertRaises(ValueError, Packet, EVENT, "/", ["a"], -1)
        self.assertRaises(ValueError, Packet, EVENT, "/", ["a"], MAX_ACK_ID + 1)
        self.assertEqual(Packet(EVENT, "/", ["a"], MAX_ACK_ID).id, MAX_ACK_ID)
        for ptype, data in [(CONNECT, None), (DISCONNECT, None), (CONNECT_ERROR, "x")]:
            with self.subTest(ptype=ptype):
                self.assertRaises(ValueError, Packet, ptype, "/", data, 1)

    def test_event_data(self) -> None:
        """EVENT data is a non-empty list led by a string or a number."""
        for data in [None, [], ("a",), "a", {"a": 1}, [None], [True], [["a"]], [b"a"]]:
            for ptype in (EVENT, BINARY_EVENT):
                with self.subTest(data=data, ptype=ptype):
                    self.assertRaises(ValueError, Packet, ptype, "/", data)
        for name in ["a", "", 1, 1.5]:
            self.assertEqual(Packet(EVENT, "/", [name]).data, [name])

    def test_reserved_name_allowed(self) -> None:
        """A reserved event name makes a valid packet: the server decides."""
        self.assertEqual(Packet(EVENT, "/", ["disconnect"]).data, ["disconnect"])

    def test_ack_data(self) -> None:
        """ACK data is a list, possibly empty."""
        self.assertEqual(Packet(ACK, "/", [], 1).data, [])
        data: object
        for data in [None, "a", {}, ()]:
            for ptype in (ACK, BINARY_ACK):
                with self.subTest(data=data, ptype=ptype):
                    self.assertRaises(ValueError, Packet, ptype, "/", data, 1)

    def test_connect_data(self) -> None:
        """CONNECT data is a dict or None."""
        self.assertEqual(Packet(CONNECT, "/", {"token": "1"}).data, {"token": "1"})
        for data in [[], "a", 1]:
            self.assertRaises(ValueError, Packet, CONNECT, "/", data)

    def test_connect_error_data(self) -> None:
        """CONNECT_ERROR data is a dict (v5) or a str (v4)."""
        self.assertEqual(Packet(CONNECT_ERROR, "/", "no").data, "no")
        self.assertEqual(Packet(CONNECT_ERROR, "/", {"message": "no"}).data, {"message": "no"})
        data: object
        for data in [None, [], 1]:
            self.assertRaises(ValueError, Packet, CONNECT_ERROR, "/", data)

    def test_disconnect_data(self) -> None:
        """DISCONNECT has no data."""
        self.assertRaises(ValueError, Packet, DISCONNECT, "/", {})

    def test_frozen(self) -> None:
        """A packet cannot be changed once built."""
        packet = Packet(EVENT, "/", ["a"])
        self.assertRaises(AttributeError, setattr, packet, "data", ["b"])

    def test_parse_error_is_value_error(self) -> None:
        """The decoder's error is a ValueError."""
        self.assertTrue(issubclass(SocketIOParseError, ValueError))


# ---- the spec's examples ------------------------------------------------------------------

# (packet, its encoded text, its attachments), from the spec's "Packet encoding" examples.
SPEC_EXAMPLES: list[tuple[Packet, str, list[bytes]]] = [
    (Packet(CONNECT), "0", []),
    (
        Packet(CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
        '0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}',
        [],
    ),
    (
        Packet(CONNECT_ERROR, "/", {"message": "Not authorized"}),
        '4{"message":"Not authorized"}',
        [],
    ),
    (Packet(EVENT, "/", ["foo"]), '2["foo"]', []),
    (Packet(EVENT, "/admin", ["bar"]), '2/admin,["bar"]', []),
    (
        Packet(BINARY_EVENT, "/", ["baz", b"\x01\x02\x03\x04"]),
        '51-["baz",{"_placeholder":true,"num":0}]',
        [b"\x01\x02\x03\x04"],
    ),
    (
        Packet(BINARY_EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"]),
        '52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        [b"\x01\x02", b"\x03\x04"],
    ),
    (Packet(EVENT, "/", ["foo"], 12), '212["foo"]', []),
    (Packet(ACK, "/admin", ["bar"], 13), '3/admin,13["bar"]', []),
    (
        Packet(BINARY_ACK, "/", ["bar", b"\x01\x02\x03\x04"], 15),
        '61-15["bar",{"_placeholder":true,"num":0}]',
        [b"\x01\x02\x03\x04"],
    ),
    (Packet(DISCONNECT), "1", []),
    (Packet(DISCONNECT, "/admin"), "1/admin,", []),
]

# The Socket.IO packets of the spec's sample session (each sent after Engine.IO's "4").
SAMPLE_SESSION: list[tuple[str, Packet]] = [
    ("0", Packet(CONNECT)),
    ('0{"sid":"wZX3oN0bSVIhsaknAAAI"}', Packet(CONNECT, "/", {"sid": "wZX3oN0bSVIhsaknAAAI"})),
    ('2["hey","Jude"]', Packet(EVENT, "/", ["hey", "Jude"])),
    ('2["hello"]', Packet(EVENT, "/", ["hello"])),
    ("0/admin,", Packet(CONNECT, "/admin")),
    (
        '0/admin,{"sid":"-G5j-67EZFp-q59rADQM"}',
        Packet(CONNECT, "/admin", {"sid": "-G5j-67EZFp-q59rADQM"}),
    ),
    ('2/admin,1["tellme"]', Packet(EVENT, "/admin", ["tellme"], 1)),
]


class SpecTests(SynchronousTestCase):
    """The examples of the Socket.IO v5 specification, both ways."""

    def test_encode_examples(self) -> None:
        """Each example packet encodes to the spec's text and attachments exactly."""
        for packet, text, attachments in SPEC_EXAMPLES:
            with self.subTest(text=text):
                self.assertEqual(encode(packet), [text, *attachments])

    def test_decode_examples(self) -> None:
        """Each example's text and attachments decode to the example packet."""
        for packet, text, attachments in SPEC_EXAMPLES:
            with self.subTest(text=text):
                self.assertEqual(decode(text, *attachments), packet)

    def test_sample_session(self) -> None:
        """The packets of the sample session decode as the spec describes them."""
        decoder = Decoder()
        for text, packet in SAMPLE_SESSION:
            with self.subTest(text=text):
                self.assertEqual(decoder.feed(text), packet)
                self.assertEqual(encode(packet), [text])

    def test_sample_session_binary_ack(self) -> None:
        """The session's BINARY_ACK, ``61-/admin,1[placeholder]`` and a frame, round-trips."""
        text = "61-/admin,1[" + placeholder(0) + "]"
        packet = Packet(BINARY_ACK, "/admin", [b"\xff\x00"], 1)
        self.assertEqual(decode(text, b"\xff\x00"), packet)
        self.assertEqual(encode(Packet(ACK, "/admin", [b"\xff\x00"], 1)), [text, b"\xff\x00"])


# ---- encoding -----------------------------------------------------------------------------


class EncodeTests(SynchronousTestCase):
    """Packets to Engine.IO message payloads."""

    def test_compact_non_ascii(self) -> None:
        """JSON is compact and keeps non-ASCII characters as they are, as Node writes it."""
        packet = Packet(EVENT, "/", ["é", {"a": [1, 2.5, None, True]}, "😀"])
        self.assertEqual(encode(packet), ['2["é",{"a":[1,2.5,null,true]},"😀"]'])

    def test_lone_surrogates_escaped(self) -> None:
        """Lone surrogates, not encodable as UTF-8, are escaped as JSON.stringify does."""
        [text] = encode(Packet(EVENT, "/", ["a\ud800", {"\udfff": "é"}]))
        self.assertEqual(text, '2["a\\ud800",{"\\udfff":"é"}]')
        assert isinstance(text, str)
        text.encode("utf-8")
        self.assertEqual(decode(text), Packet(EVENT, "/", ["a\ud800", {"\udfff": "é"}]))

    def test_nested_binary(self) -> None:
        """bytes, bytearray and memoryview in a list in a dict in a list become attachments."""
        data = ["up", [{"k": [b"\x00", bytearray(b"\x01")], "m": memoryview(b"\x02")}], b"\x03"]
        message = encode(Packet(EVENT, "/", data, 7))
        self.assertEqual(
            message,
            [
                f'54-7["up",[{{"k":[{P0},{P1}],"m":{P2}}}],{P3}]',
                b"\x00",
                b"\x01",
                b"\x02",
                b"\x03",
            ],
        )
        for attachment in message[1:]:
            self.assertIs(type(attachment), bytes)
        expected = ["up", [{"k": [b"\x00", b"\x01"], "m": b"\x02"}], b"\x03"]
        self.assertEqual(decode(*message), Packet(BINARY_EVENT, "/", expected, 7))

    def test_binary_ack(self) -> None:
        """An ACK whose data holds binary is sent as BINARY_ACK."""
        self.assertEqual(
            encode(Packet(ACK, "/x", [{"b": b""}], 3)),
            [f'61-/x,3[{{"b":{P0}}}]', b""],
        )

    def test_binary_type_without_binary(self) -> None:
        """A BINARY_EVENT or BINARY_ACK without binary is sent as EVENT or ACK."""
        self.assertEqual(encode(Packet(BINARY_EVENT, "/", ["a"])), ['2["a"]'])
        self.assertEqual(encode(Packet(BINARY_ACK, "/", [], 1)), ["31[]"])

    def test_binary_only_in_event_and_ack(self) -> None:
        """Binary data in a CONNECT or CONNECT_ERROR is the caller's error."""
        self.assertRaises(ValueError, encode, Packet(CONNECT, "/", {"a": b"x"}))
        self.assertRaises(ValueError, encode, Packet(CONNECT_ERROR, "/", {"data": [b"x"]}))

    def test_not_json(self) -> None:
        """A value JSON cannot carry is a TypeError, with or without binary beside it."""
        self.assertRaises(TypeError, encode, Packet(EVENT, "/", ["a", {1, 2}]))
        self.assertRaises(TypeError, encode, Packet(EVENT, "/", ["a", b"x", object()]))

    def test_non_finite_floats(self) -> None:
        """NaN and the infinities are sent as null, as JSON.stringify sends them."""
        shared = [float("inf"), b"x"]
        data: list[Any] = ["a", float("nan"), {"b": (float("-inf"), 1.5)}, shared, shared]
        self.assertEqual(
            encode(Packet(EVENT, "/", data, 1)),
            [
                f'52-1["a",null,{{"b":[null,1.5]}},[null,{P0}],[null,{P1}]]',
                b"x",
                b"x",
            ],
        )
        self.assertEqual(encode(Packet(CONNECT, "/", {"x": float("nan")})), ['0{"x":null}'])
        # The caller's data is left as it was.
        self.assertTrue(math.isnan(data[1]))
        self.assertEqual(data[2:], [{"b": (float("-inf"), 1.5)}, shared, shared])

    def test_overflowing_number_echoed_as_null(self) -> None:
        """A number too large for a float decodes as infinity and is sent back as null."""
        packet = decode('2["a",1e400]')
        assert packet is not None
        self.assertEqual(encode(packet), ['2["a",null]'])

    def test_cycle(self) -> None:
        """Data that contains itself is a ValueError."""
        data: list[Any] = ["a"]
        data.append(data)
        self.assertRaises(ValueError, encode, Packet(EVENT, "/", data))

    def test_too_deep(self) -> None:
        """Data nested beyond Python's recursion limit is a ValueError, binary or not."""
        deep: list[Any] = []
        for _ in range(100_000):
            deep = [deep]
        self.assertRaises(ValueError, encode, Packet(EVENT, "/", ["a", deep]))
        self.assertRaises(ValueError, encode, Packet(EVENT, "/", ["a", b"x", deep]))

    def test_tuples(self) -> None:
        """Tuples in the data are sent as arrays, and binary inside them is found."""
        self.assertEqual(
            encode(Packet(EVENT, "/", ["a", (1, (b"x",))])),
            [f'51-["a",[1,[{P0}]]]', b"x"],
        )

    def test_unknown_protocol(self) -> None:
        """Only protocols 4 and 5 are known."""
        self.assertRaises(ValueError, encode, Packet(EVENT, "/", ["a"]), protocol=3)

    def test_v4_connect(self) -> None:
        """For v4, the server's CONNECT reply has no payload."""
        self.assertEqual(encode(Packet(CONNECT, "/", {"sid": "x"}), protocol=4), ["0"])
        self.assertEqual(encode(Packet(CONNECT, "/admin", {"sid": "x"}), protocol=4), ["0/admin,"])

    def test_v4_connect_error(self) -> None:
        """For v4, CONNECT_ERROR carries a string: the message of a dict."""
        self.assertEqual(
            encode(Packet(CONNECT_ERROR, "/admin", "Invalid namespace"), protocol=4),
            ['4/admin,"Invalid namespace"'],
        )
        self.assertEqual(
            encode(Packet(CONNECT_ERROR, "/", {"message": "no", "data": {}}), protocol=4),
            ['4"no"'],
        )
        self.assertRaises(ValueError, encode, Packet(CONNECT_ERROR, "/", {"data": 1}), protocol=4)

    def test_v4_others_unchanged(self) -> None:
        """For v4, events, acks and binary are encoded as for v5."""
        for packet, text, attachments in SPEC_EXAMPLES:
            if packet.type not in (CONNECT, CONNECT_ERROR):
                self.assertEqual(encode(packet, protocol=4), [text, *attachments])


class HasBinaryTests(SynchronousTestCase):
    """Finding binary values in data."""

    def test_found(self) -> None:
        """Binary values are found at the top and nested in lists, tuples and dict values."""
        for data in [b"", bytearray(), memoryview(b""), [1, {"a": (2, [b"x"])}]]:
            self.assertTrue(has_binary(data))

    def test_not_found(self) -> None:
        """Data without binary values, including dict keys, has none."""
        for data in [None, "x", 1, [], {}, ["a", {"b": [1, "c"]}], {b"k": 1}]:
            self.assertFalse(has_binary(data))

    def test_depth_bound(self) -> None:
        """Nesting deeper than max_depth, or a cycle, is a ValueError."""
        self.assertTrue(has_binary([[b"x"]], max_depth=2))
        self.assertRaises(ValueError, has_binary, [[[b"x"]]], max_depth=2)
        cycle: list[Any] = []
        cycle.append(cycle)
        self.assertRaises(ValueError, has_binary, cycle)


# ---- decoding -----------------------------------------------------------------------------


class DecoderTests(SynchronousTestCase):
    """Engine.IO message payloads to packets."""

    def assertParseError(self, *messages: str | bytes, **options: int) -> SocketIOParseError:
        """Assert that feeding ``messages`` to a fresh decoder raises SocketIOParseError."""
        error: SocketIOParseError = self.assertRaises(
            SocketIOParseError, decode, *messages, **options
        )
        return error

    def test_bad_type(self) -> None:
        """An empty packet or an unknown type is a parse error."""
        for text in ["", "7", "x", " 2[]", '\u0662["a"]', "-1"]:
            with self.subTest(text=text):
                self.assertParseError(text)

    def test_event_payload(self) -> None:
        """EVENT needs a non-empty array led by a string or a number, as Node checks."""
        for text in ["2", "2[]", '2{"a":1}', '2"a"', "2[null]", "2[true]", '2[["a"]]', "2[{}]"]:
            with self.subTest(text=text):
                self.assertParseError(text)
        self.assertEqual(decode("2[1,2]"), Packet(EVENT, "/", [1, 2]))
        self.assertEqual(decode("2[1.5]"), Packet(EVENT, "/", [1.5]))

    def test_reserved_event_decoded(self) -> None:
        """A reserved event name is decoded: refusing it is the server's decision."""
        for name in sorted(RESERVED_EVENTS):
            self.assertEqual(decode(f'2["{name}"]'), Packet(EVENT, "/", [name]))

    def test_ack_payload(self) -> None:
        """ACK needs an array payload, possibly empty."""
        self.assertEqual(decode("31[]"), Packet(ACK, "/", [], 1))
        self.assertEqual(decode('3["a"]'), Packet(ACK, "/", ["a"]))
        for text in ["31", '31{"a":1}', '31"a"', "31null"]:
            with self.subTest(text=text):
                self.assertParseError(text)

    def test_connect_payload(self) -> None:
        """CONNECT takes an object or no payload."""
        self.assertEqual(decode('0{"token":"1"}'), Packet(CONNECT, "/", {"token": "1"}))
        for text in ["0[]", '0"a"', "0null", "0/admin,1"]:
            with self.subTest(text=text):
                self.assertParseError(text)

    def test_connect_error_payload(self) -> None:
        """CONNECT_ERROR takes a string or an object."""
        self.assertEqual(decode('4"no"'), Packet(CONNECT_ERROR, "/", "no"))
        for text in ["4", "4[]", "41", "4null"]:
            with self.subTest(text=text):
                self.assertParseError(text)

    def test_disconnect_payload(self) -> None:
        """DISCONNECT takes no payload."""
        for text in ["1{}", "1[]", '1/admin,"x"', "1/admin,1"]:
            with self.subTest(text=text):
                self.assertParseError(text)

    def test_invalid_json(self) -> None:
        """Invalid JSON, NaN, Infinity and data after the payload are parse errors."""
        for text in ['2["a"', '2["a",]', "2['a']", '2["a",NaN]', '2["a",-Infinity]', '2["a"]x']:
            with self.subTest(text=text):
                self.assertParseError(text)

    def test_json_whitespace(self) -> None:
        """Whitespace around the JSON payload is allowed, as JSON.parse allows it."""
        self.assertEqual(decode('2/a, ["a"] \n'), Packet(EVENT, "/a", ["a"]))
        self.assertEqual(decode('21\t["a"]'), Packet(EVENT, "/", ["a"], 1))

    def test_namespace_without_comma(self) -> None:
        """A namespace runs to the end of a packet without ',' (Node's reading)."""
        self.assertEqual(decode("1/admin"), Packet(DISCONNECT, "/admin"))
        self.assertEqual(decode("0/admin"), Packet(CONNECT, "/admin"))

    def test_main_namespace_spelled_out(self) -> None:
        """``/,`` is the main namespace."""
        self.assertEqual(decode('2/,["a"]'), Packet(EVENT, "/", ["a"]))

    def test_namespace_bound(self) -> None:
        """A namespace longer than max_nsp_length is a parse error, comma or not."""
        nsp = "/" + "a" * 9
        self.assertEqual(decode("1" + nsp + ",", max_nsp_length=10), Packet(DISCONNECT, nsp))
        self.assertEqual(decode("1" + nsp, max_nsp_length=10), Packet(DISCONNECT, nsp))
        self.assertParseError("1" + nsp + "a,", max_nsp_length=10)
        self.assertParseError("1" + nsp + "a", max_nsp_length=10)
        long = "/" + "a" * DEFAULT_MAX_NSP_LENGTH
        self.assertParseError("2" + long + ',["a"]')

    def test_v5_keeps_query_in_namespace(self) -> None:
        """For v5 a '?' is part of the namespace (the server will not know it)."""
        self.assertEqual(decode("0/admin?x=1,"), Packet(CONNECT, "/admin?x=1"))

    def test_ack_ids(self) -> None:
        """An ack id is 1 to 16 ASCII digits, at most 2**53 - 1."""
        self.assertEqual(decode('20["a"]'), Packet(EVENT, "/", ["a"], 0))
        self.assertEqual(decode('2007["a"]'), Packet(EVENT, "/", ["a"], 7))
        self.assertEqual(decode(f'2{MAX_ACK_ID}["a"]'), Packet(EVENT, "/", ["a"], MAX_ACK_ID))
        for text in [
            f'2{MAX_ACK_ID + 1}["a"]',
            "2" + "1" * 17 + '["a"]',
            "2" + "1" * 100_000,
            '2\u0661["a"]',
            '2-1["a"]',
            '21a["a"]',
            '2 1["a"]',
        ]:
            with self.subTest(text=text[:30]):
                self.assertParseError(text)

    def test_not_a_message(self) -> None:
        """Data that is neither str nor bytes is the caller's error, a TypeError."""
        self.assertRaises(TypeError, Decoder().feed, 2)

    def test_constructor(self) -> None:
        """Unknown protocols and out-of-range bounds are refused."""
        self.assertRaises(ValueError, Decoder, protocol=3)
        self.assertRaises(ValueError, Decoder, max_attachments=-1)
        self.assertRaises(ValueError, Decoder, max_depth=0)
        self.assertRaises(ValueError, Decoder, max_nsp_length=0)

    def test_default_bounds(self) -> None:
        """The default bounds: Node's 10 attachments, 64 levels, 8 KiB namespaces."""
        self.assertEqual(
            (DEFAULT_MAX_ATTACHMENTS, DEFAULT_MAX_DEPTH, DEFAULT_MAX_NSP_LENGTH),
            (10, 64, 8192),
        )


class BinaryDecoderTests(SynchronousTestCase):
    """Binary packets and their attachments."""

    def test_attachments_complete_the_packet(self) -> None:
        """The text and all but the last attachment give None; the last gives the packet."""
        decoder = Decoder()
        self.assertFalse(decoder.awaiting_attachments)
        text = f'53-/a,9["e",{P2},{{"x":[{P0}]}},{P1}]'
        self.assertIsNone(decoder.feed(text))
        self.assertTrue(decoder.awaiting_attachments)
        self.assertIsNone(decoder.feed(b"zero"))
        self.assertIsNone(decoder.feed(bytearray(b"one")))
        packet = decoder.feed(memoryview(b"two"))
        self.assertFalse(decoder.awaiting_attachments)
        self.assertEqual(
            packet, Packet(BINARY_EVENT, "/a", ["e", b"two", {"x": [b"zero"]}, b"one"], 9)
        )
        assert packet is not None
        self.assertIs(type(packet.data[1]), bytes)

    def test_attachment_reused_or_unused(self) -> None:
        """As in Node, an attachment may be referred to twice, or not at all."""
        text = f"62-1[{P1},{P1}]"
        self.assertEqual(decode(text, b"a", b"b"), Packet(BINARY_ACK, "/", [b"b", b"b"], 1))

    def test_placeholder_lookalike_outside_binary_packet(self) -> None:
        """A placeholder object in a non-binary packet is plain data, as in Node."""
        text = f'2["a",{P0}]'
        self.assertEqual(decode(text), Packet(EVENT, "/", ["a", {"_placeholder": True, "num": 0}]))

    def test_false_placeholder_is_data(self) -> None:
        """An object whose _placeholder is not true is plain data, as in Node."""
        text = f'51-["a",{P0},{{"_placeholder":false,"num":5}},{{"_placeholder":1}}]'
        self.assertEqual(
            decode(text, b"x"),
            Packet(
                BINARY_EVENT,
                "/",
                ["a", b"x", {"_placeholder": False, "num": 5}, {"_placeholder": 1}],
            ),
        )

    def test_attachment_count_bound(self) -> None:
        """More attachments than max_attachments is refused at once, before any JSON is read."""
        decoder = Decoder()
        error = self.assertRaises(SocketIOParseError, decoder.feed, "511-[" + "[" * 100_000)
        self.assertIn("more than 10 attachments", str(error))
        self.assertFalse(decoder.awaiting_attachments)
        self.assertRaises(SocketIOParseError, decoder.feed, b"x")
        self.assertIsNone(decode(f'52-["a",{P1}]', max_attachments=2))
        self.assertParseError(f'53-["a",{P2}]', max_attachments=2)
        self.assertParseError(f'51-["a",{P0}]', max_attachments=0)

    def test_attachment_count_syntax(self) -> None:
        """The count is ASCII digits, at least 1, then '-'."""
        for text in [
            '5-["a"]',
            '50-["a"]',
            '5x-["a"]',
            '51["a"]',
            "5",
            f'5\u0661-["a",{P0}]',
            "5" + "9" * 100_000 + '-["a"]',
            f'5 1-["a",{P0}]',
        ]:
            with self.subTest(text=text[:30]):
                self.assertParseError(text)
        self.assertIsNone(decode(f'601-1["a",{P0}]'))

    def assertParseError(self, *messages: str | bytes, **options: int) -> SocketIOParseError:
        """Assert that feeding ``messages`` to a fresh decoder raises SocketIOParseError."""
        error: SocketIOParseError = self.assertRaises(
            SocketIOParseError, decode, *messages, **options
        )
        return error

    def test_placeholder_out_of_range(self) -> None:
        """A placeholder's num must name one of the announced attachments."""
        self.assertParseError(f'51-["a",{P1}]')
        self.assertParseError(f'52-["a",{{"x":[{placeholder(-1)}]}}]')

    def test_placeholder_shape(self) -> None:
        """A placeholder is exactly _placeholder: true and an integer num."""
        for obj in [
            '{"_placeholder":true}',
            '{"_placeholder":true,"num":"0"}',
            '{"_placeholder":true,"num":0.0}',
            '{"_placeholder":true,"num":true}',
            '{"_placeholder":true,"num":null}',
            '{"_placeholder":true,"num":0,"x":1}',
        ]:
            with self.subTest(obj=obj):
                self.assertParseError(f'51-["a",{obj}]')

    def test_placeholder_not_event_name(self) -> None:
        """A BINARY_EVENT is led by a name, not an attachment (checked before attachments)."""
        self.assertParseError(f"51-[{P0}]")

    def test_binary_payload_rules(self) -> None:
        """A binary packet's payload follows the rules of its plain type."""
        for text in ["51-", "51-[]", "51-{}", "61-1", f'61-1{{"a":{P0}}}']:
            with self.subTest(text=text):
                self.assertParseError(text)

    def test_unexpected_binary(self) -> None:
        """Bytes when no attachment is awaited are a parse error."""
        self.assertParseError(b"x")
        self.assertParseError('2["a"]', b"x")
        self.assertParseError(f'51-["a",{P0}]', b"x", b"y")

    def test_text_while_awaiting(self) -> None:
        """Text while attachments are awaited is a parse error, and the decoder starts over."""
        decoder = Decoder()
        decoder.feed(f'52-["a",{P0}]')
        decoder.feed(b"x")
        self.assertRaises(SocketIOParseError, decoder.feed, '2["b"]')
        self.assertFalse(decoder.awaiting_attachments)
        self.assertEqual(decoder.feed('2["b"]'), Packet(EVENT, "/", ["b"]))

    def test_reset(self) -> None:
        """Reset drops a packet awaiting attachments."""
        decoder = Decoder()
        decoder.feed(f'51-["a",{P0}]')
        decoder.reset()
        self.assertFalse(decoder.awaiting_attachments)
        self.assertRaises(SocketIOParseError, decoder.feed, b"x")
        self.assertEqual(decoder.feed('2["b"]'), Packet(EVENT, "/", ["b"]))


class DepthTests(SynchronousTestCase):
    """The bound on JSON nesting."""

    def assertParseError(self, *messages: str | bytes, **options: int) -> SocketIOParseError:
        """Assert that feeding ``messages`` to a fresh decoder raises SocketIOParseError."""
        error: SocketIOParseError = self.assertRaises(
            SocketIOParseError, decode, *messages, **options
        )
        return error

    def test_beyond_recursion_limit(self) -> None:
        """JSON nested far beyond Python's recursion limit is a parse error, not a crash."""
        self.assertParseError("2" + "[" * 100_000 + "]" * 100_000)
        self.assertParseError("2" + '{"a":' * 100_000 + "1" + "}" * 100_000)
        self.assertParseError('2["a",' + "[" * 100_000 + "]" * 100_000 + "]")
        self.assertParseError("51-" + "[" * 100_000 + "]" * 100_000)

    def test_beyond_max_depth(self) -> None:
        """JSON parseable but nested deeper than max_depth is a parse error."""
        for depth in [DEFAULT_MAX_DEPTH + 1, 500]:
            with self.subTest(depth=depth):
                nested = '"a",' + "[" * (depth - 1) + "]" * (depth - 1)
                self.assertParseError("2[" + nested + "]")
        nested = '"a",' + "[" * DEFAULT_MAX_DEPTH + "]" * DEFAULT_MAX_DEPTH
        self.assertEqual(json_depth(json.loads("[" + nested + "]")), DEFAULT_MAX_DEPTH + 1)

    def test_at_max_depth(self) -> None:
        """JSON nested exactly max_depth deep is accepted."""
        nested = '"a",' + "[" * (DEFAULT_MAX_DEPTH - 1) + "]" * (DEFAULT_MAX_DEPTH - 1)
        self.assertIsNotNone(decode("2[" + nested + "]"))

    def test_binary_beyond_max_depth(self) -> None:
        """A binary packet whose JSON is too deep is refused before its attachments come."""
        deep = "[" * DEFAULT_MAX_DEPTH + placeholder(0) + "]" * DEFAULT_MAX_DEPTH
        self.assertParseError('51-["a",' + deep + "]")
        self.assertParseError('51-["a",' + "[" * 500 + placeholder(0) + "]" * 500 + "]")
        shallow = "[" * (DEFAULT_MAX_DEPTH - 2) + placeholder(0) + "]" * (DEFAULT_MAX_DEPTH - 2)
        packet = decode('51-["a",' + shallow + "]", b"x")
        assert packet is not None
        self.assertEqual(json_depth(packet.data), DEFAULT_MAX_DEPTH - 1)

    def test_many_shallow_containers(self) -> None:
        """Many containers side by side are not depth: a wide payload is accepted."""
        text = '2["a",' + ",".join(['{"b":[1,{"c":"[[[[\\"]]"}]}'] * 200) + "]"
        packet = decode(text)
        assert packet is not None
        self.assertEqual(len(packet.data), 201)

    def test_brackets_in_strings(self) -> None:
        """Brackets and escapes inside strings do not count as nesting."""
        for inner in ['"[[[[[["', '"]]]]]]"', '"\\"[[[["', '"\\\\"', '"{{{{{{"']:
            with self.subTest(inner=inner):
                self.assertIsNotNone(decode(f'2["a",[[{inner}]],{inner}]', max_depth=3))
                self.assertParseError(f'2["a",[[[{inner}]]],{inner}]', max_depth=3)

    @SETTINGS
    @given(plain_values, st.integers(1, 5))
    def test_depth_property(self, value: Any, max_depth: int) -> None:
        """An event is accepted exactly when its JSON nests at most max_depth deep."""
        data = ["e", value]
        text = encode(Packet(EVENT, "/", data))[0]
        assert isinstance(text, str)
        if json_depth(data) <= max_depth:
            self.assertEqual(decode(text, max_depth=max_depth), Packet(EVENT, "/", data))
        else:
            self.assertParseError(text, max_depth=max_depth)


class V4DecoderTests(SynchronousTestCase):
    """Protocol v4 (socket.io-client 2.x)."""

    def test_connect_query(self) -> None:
        """The query in a CONNECT's namespace becomes its data, as a dict of strings."""
        self.assertEqual(
            decode("0/admin?token=1,", protocol=4), Packet(CONNECT, "/admin", {"token": "1"})
        )
        self.assertEqual(
            decode("0/admin?a=%C3%A9%20x&b=&a=2&c", protocol=4),
            Packet(CONNECT, "/admin", {"a": "2", "b": "", "c": ""}),
        )
        self.assertEqual(decode("0/?t=1,", protocol=4), Packet(CONNECT, "/", {"t": "1"}))

    def test_connect_without_query(self) -> None:
        """A v4 CONNECT without a query has no data."""
        self.assertEqual(decode("0/admin,", protocol=4), Packet(CONNECT, "/admin"))
        self.assertEqual(decode("0", protocol=4), Packet(CONNECT))

    def test_connect_query_and_payload(self) -> None:
        """A v4 CONNECT with both a query and a payload is a parse error."""
        self.assertRaises(SocketIOParseError, decode, '0/a?x=1,{"y":2}', protocol=4)

    def test_query_only_in_connect(self) -> None:
        """Other packet types keep a '?' in their namespace."""
        self.assertEqual(decode('2/a?x,["e"]', protocol=4), Packet(EVENT, "/a?x", ["e"]))

    def test_connect_error_string(self) -> None:
        """A v4 CONNECT_ERROR carries a plain string."""
        self.assertEqual(
            decode('4/admin,"Invalid namespace"', protocol=4),
            Packet(CONNECT_ERROR, "/admin", "Invalid namespace"),
        )

    def test_binary(self) -> None:
        """v4 binary events and acks decode as in v5."""
        for packet, text, attachments in SPEC_EXAMPLES:
            if packet.type in (BINARY_EVENT, BINARY_ACK):
                self.assertEqual(decode(text, *attachments, protocol=4), packet)


# ---- properties ---------------------------------------------------------------------------


class NotJSONTests(SynchronousTestCase):
    """A value JSON cannot carry is refused with a message that says what and why."""

    def test_message(self) -> None:
        """The message names the value and its type and lists what can be sent (not "a
        object cannot be sent as JSON")."""
        for value, name in ((object(), "'object'"), ({1, 2}, "'set'")):
            error = self.assertRaises(TypeError, encode,
                                      Packet(PacketType.EVENT, "/", ["e", value]))
            self.assertIn(f"a {name} is none of dict, list", str(error))
            self.assertTrue(str(error).startswith(repr(value)[:20]), str(error))


class PropertyTests(SynchronousTestCase):
    """Round trips and fuzzing."""

    @hypothesis_mixes_bytes_and_str
    @SETTINGS
    @given(packets())
    def test_round_trip(self, packet: Packet) -> None:
        """Decoding an encoded packet gives the packet back."""
        self.assertEqual(decode(*encode(packet), max_attachments=MANY), packet)

    @hypothesis_mixes_bytes_and_str
    @SETTINGS
    @given(packets())
    @example(Packet(CONNECT, "/?"))
    def test_round_trip_v4(self, packet: Packet) -> None:
        """For v4, packets round-trip but for CONNECT data and CONNECT_ERROR dicts, not sent."""
        if packet.type is CONNECT_ERROR and isinstance(packet.data, dict):
            message = packet.data.get("message")
            if not isinstance(message, str):
                self.assertRaises(ValueError, encode, packet, protocol=4)
                return
            expected = Packet(CONNECT_ERROR, packet.nsp, message)
        elif packet.type is CONNECT:
            if "?" in packet.nsp:  # where a v4 CONNECT's query starts
                self.assertRaises(ValueError, encode, packet, protocol=4)
                return
            expected = Packet(CONNECT, packet.nsp)
        else:
            expected = packet
        message = encode(packet, protocol=4)
        self.assertEqual(decode(*message, protocol=4, max_attachments=MANY), expected)

    @hypothesis_mixes_bytes_and_str
    @SETTINGS
    @given(packets())
    def test_one_decoder_many_packets(self, packet: Packet) -> None:
        """A decoder goes on decoding after a binary packet."""
        decoder = Decoder(max_attachments=MANY)
        for _ in range(2):
            *parts, last = encode(packet)
            for part in parts:
                self.assertIsNone(decoder.feed(part))
            self.assertEqual(decoder.feed(last), packet)

    @hypothesis_mixes_bytes_and_str
    @FUZZ
    @given(fuzz_messages, st.sampled_from([4, 5]))
    def test_fuzz(self, messages: list[str | bytes], protocol: int) -> None:
        """Arbitrary messages give packets (that encode again) or None, or SocketIOParseError."""
        decoder = Decoder(protocol=protocol, max_depth=4)
        for message in messages:
            try:
                result = decoder.feed(message)
            except SocketIOParseError:
                continue
            self.assertIsInstance(result, (Packet, type(None)))
            if result is not None:
                encode(result)

    @hypothesis_mixes_bytes_and_str
    @FUZZ
    @given(st.sampled_from("0123456"), fuzz_text, st.lists(st.binary(max_size=4), max_size=3))
    def test_fuzz_after_type(self, digit: str, rest: str, attachments: list[bytes]) -> None:
        """A valid type digit followed by anything decodes or raises SocketIOParseError."""
        decoder = Decoder(max_depth=4)
        try:
            decoder.feed(digit + rest)
            for attachment in attachments:
                decoder.feed(attachment)
        except SocketIOParseError:
            pass


class LongIntegerTests(SynchronousTestCase):
    """An integer too long for Python's int() (its int-string limit, 4,300 digits by default)
    is read as JSON.parse reads it, a float, never a parse error (Node acks it with null)."""

    long = "1" * 5000

    def test_event_argument(self) -> None:
        """A long integer argument is an infinity, positive or negative; the packet decodes."""
        packet = Decoder().feed(f'21["e",{self.long},-{self.long}]')
        assert packet is not None
        self.assertEqual(packet.data, ["e", math.inf, -math.inf])
        self.assertEqual(packet.id, 1)

    def test_limit_itself(self) -> None:
        """An integer within the limit stays an exact int."""
        digits = "9" * 4300
        packet = Decoder().feed(f'2["e",{digits}]')
        assert packet is not None
        self.assertEqual(packet.data, ["e", int(digits)])

    def test_nested_and_after_whitespace(self) -> None:
        """Deep in an object, and on the whitespace path, it is read the same way."""
        packet = Decoder().feed(f'0{{"auth":{{"n":[{self.long}]}}}}')
        assert packet is not None
        self.assertEqual(packet.data, {"auth": {"n": [math.inf]}})
        packet = Decoder().feed(f'2 \n["e",{self.long}]')
        assert packet is not None
        self.assertEqual(packet.data, ["e", math.inf])

    def test_binary_event(self) -> None:
        """In a binary event, beside a placeholder, too."""
        decoder = Decoder()
        self.assertIsNone(decoder.feed(f'51-["e",{self.long},{{"_placeholder":true,"num":0}}]'))
        packet = decoder.feed(b"\x01")
        assert packet is not None
        self.assertEqual(packet.data, ["e", math.inf, b"\x01"])

    def test_invalid_json_still_refused(self) -> None:
        """Invalid JSON holding a long integer is still a parse error."""
        for text in (f'2["e",{self.long}', f'2["e",{self.long}x]', f'2["e",0{self.long}]'):
            self.assertRaises(SocketIOParseError, Decoder().feed, text)

    def test_echo_is_null(self) -> None:
        """Sent back, the infinity is null, as JSON.stringify writes it."""
        packet = Decoder().feed(f'21["e",{self.long}]')
        assert packet is not None
        self.assertEqual(encode(Packet(PacketType.ACK, "/", packet.data[1:], 1)), ["31[null]"])

    def test_js_int(self) -> None:
        """The codec's parse_int: an int where Python can, the float JSON.parse gives past."""
        from txsio._jsjson import js_int

        self.assertEqual(js_int("-12"), -12)
        self.assertIsInstance(js_int("7"), int)
        self.assertEqual(js_int(self.long), math.inf)
        self.assertEqual(js_int("-" + self.long), -math.inf)
