"""Engine.IO packets and polling payloads, protocol v4 and v3 (sans-I/O, stdlib only).

Theory of operation
-------------------
A :class:`Packet` is a type and an optional payload.  Encoding turns packets into what a
transport writes; decoding turns what a transport read into packets, or raises
:exc:`EngineIOParseError` -- the only exception any decoder raises on peer data.  Nothing here
does I/O: the WebSocket and polling adapters hand in a frame or a request body, already decoded
from UTF-8 where the wire form is text.

There are three wire forms per protocol version:

- **WebSocket frame** (:func:`encode_packet` / :func:`decode_packet`, and the ``_v3`` pair): one
  packet per frame.  Text packets are ``<type digit><data>``.  A binary message is the frame's
  raw bytes in v4, and a ``\\x04`` byte followed by the bytes in v3.
- **v4 polling payload** (:func:`encode_payload` / :func:`decode_payload`): text packets joined
  by the record separator ``\\x1e``; a binary message is ``b`` + base64.
- **v3 polling payload** (:func:`encode_payload_v3` / :func:`decode_payload_v3`): either the
  string form ``<length>:<packet>...`` with lengths counted in UTF-16 code units (JavaScript's
  ``String.length``; binary messages as ``b4`` + base64), or, when the client supports binary
  and a packet is binary, the binary form: per packet ``0x00`` (text) or ``0x01`` (binary), the
  decimal digits of the length as bytes 0-9, ``0xff``, then the packet (text as UTF-8, binary as
  the type byte and the data).  JSONP wraps the string form (:func:`encode_jsonp_payload`,
  :func:`decode_jsonp_body`).

Each wire form has exactly one packet for each encoding, so ``decode(encode(p)) == p``: a
:class:`Packet` normalises an empty payload when it is built (see :class:`Packet`).

Bounds
------
The caller bounds a payload's size in bytes (``maxPayload``) before decoding.  Decoders bound
the rest: a payload holds at most ``max_packets`` records (:data:`DEFAULT_MAX_PACKETS`), checked
before the records are materialised, and a v3 length prefix has at most 15 digits, so no huge
number is parsed from garbage.  Decoding is
iterative; nothing recurses over peer data.

Decoders are stricter than Node's where Node accepts garbage: base64 must be canonical
(standard alphabet, padded), a length prefix is ASCII digits only, a truncated record is an
error, and a binary payload is only a message (Node would build a binary ping nobody sends).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "DEFAULT_MAX_PACKETS",
    "EngineIOParseError",
    "Packet",
    "PacketType",
    "decode_jsonp_body",
    "decode_packet",
    "decode_packet_v3",
    "decode_payload",
    "decode_payload_v3",
    "encode_jsonp_payload",
    "encode_packet",
    "encode_packet_v3",
    "encode_payload",
    "encode_payload_v3",
]


class PacketType(enum.IntEnum):
    """The Engine.IO packet types; the value is the digit sent on the wire (v3 and v4)."""

    #: the server's handshake, with the session parameters as JSON
    OPEN = 0
    #: the transport may be closed
    CLOSE = 1
    #: heartbeat (v4: sent by the server; v3: by the client), and the upgrade probe ``2probe``
    PING = 2
    #: answer to a ping (``3probe`` answers the upgrade probe)
    PONG = 3
    #: application data, text or binary
    MESSAGE = 4
    #: the client switches to the probed transport
    UPGRADE = 5
    #: does nothing; releases a pending polling request during an upgrade
    NOOP = 6


class EngineIOParseError(ValueError):
    """The one exception every decoder raises on bad input.

    It means the peer broke the protocol: the session that read the input is closed with a
    parse error.  Its message names the fault, never the payload.
    """

    #: the packets of a polling payload decoded before the faulty record, in order (empty for
    #: anything else, and when a bound refused the whole payload): Node's parsers hand them on
    #: before they stop, and so does the polling transport
    packets: Sequence[Packet] = ()


@dataclass(frozen=True, slots=True)
class Packet:
    """One Engine.IO packet, validated when built.

    Each packet has exactly one representation, so that packets decoded from the wire compare
    equal to the packets that were encoded: a message always has a payload (``None`` becomes
    ``""``), and any other type has ``None`` for an empty payload (``""`` becomes ``None``).

    :param type: the packet type.
    :param data: the payload: text (``str``), binary (``bytes``, for :attr:`PacketType.MESSAGE`
        only) or ``None`` for none.
    :raises TypeError: if ``type`` is not a :class:`PacketType` or ``data`` is not ``str``,
        ``bytes`` or ``None``.
    :raises ValueError: if ``data`` is ``bytes`` and ``type`` is not a message.
    """

    #: the packet type
    type: PacketType
    #: the payload: ``str`` for text, ``bytes`` for a binary message, ``None`` for none
    data: str | bytes | None = None

    def __post_init__(self) -> None:
        ptype = self.type
        if not isinstance(ptype, PacketType):
            raise TypeError(f"packet type must be a PacketType, not {type(ptype).__name__}")
        data = self.data
        if isinstance(data, str):
            if not data and ptype is not PacketType.MESSAGE:
                object.__setattr__(self, "data", None)
        elif data is None:
            if ptype is PacketType.MESSAGE:
                object.__setattr__(self, "data", "")
        elif isinstance(data, bytes):
            if ptype is not PacketType.MESSAGE:
                raise ValueError(f"only a message packet can carry bytes, not {ptype.name}")
        else:
            raise TypeError(f"packet data must be str, bytes or None, not {type(data).__name__}")


#: Default bound on the packets (records) in one polling payload.  Decoding a payload of more
#: records raises :exc:`EngineIOParseError`.  The byte size of a payload is bounded by the caller
#: (``maxPayload``) before decoding; this bounds the objects built from it.
DEFAULT_MAX_PACKETS: int = 10_000

# A v3 length prefix of more digits than this (a packet of a petabyte or more) is garbage.
_MAX_LENGTH_DIGITS = 15

# The type digit of each packet type, indexed by the type's value.
_TYPE_DIGITS = "0123456"

# Decoding a text packet is one lookup here: a missing key is an empty packet, an unknown
# type, or the base64 prefix "b".
_TYPE_BY_DIGIT: dict[str, PacketType] = {_TYPE_DIGITS[t]: t for t in PacketType}

# EIO v4 polling: the record separator between packets.
_SEPARATOR = "\x1e"

# EIO v3 binary payload: the length digits are the byte values 0-9.
_ASCII_TO_DIGIT_BYTES = bytes.maketrans(b"0123456789", bytes(range(10)))
_DIGIT_BYTES_TO_ASCII = bytes.maketrans(bytes(range(10)), b"0123456789")
_DIGIT_BYTES = bytes(range(10))

# Characters outside the Basic Multilingual Plane: two UTF-16 code units in JavaScript.
_ASTRAL = re.compile("[\U00010000-\U0010ffff]")

# JSONP: characters JSON allows raw in a string but a JavaScript literal (before ES2019) or a
# UTF-8 encoder does not.
_JS_UNSAFE = re.compile(r"[\u2028\u2029\ud800-\udfff]")

# JSONP POST: the client sends a newline as "\n" and an escaped newline "\n" as "\\n"
# (engine.io polling-jsonp.ts).
_JSONP_NEWLINE = re.compile(r"(\\)?\\n")


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as e:
        raise EngineIOParseError("invalid base64 in a binary packet") from e


def _encode_text(packet: Packet) -> str:
    # The text form shared by every wire form; only called for str/None data.
    data = packet.data
    assert not isinstance(data, bytes)
    if data is None:
        return _TYPE_DIGITS[packet.type]
    return _TYPE_DIGITS[packet.type] + data


def _unknown_type(text: str) -> EngineIOParseError:
    if not text:
        return EngineIOParseError("empty packet")
    return EngineIOParseError(f"unknown packet type {text[0]!r}")


# ---- v4 ----------------------------------------------------------------------------------


def _decode_text(text: str) -> Packet:
    # EIO v4: "<type digit>[data]", or "b<base64>" for a binary message (polling; Node also
    # accepts it in a WebSocket text frame).
    ptype = _TYPE_BY_DIGIT.get(text[:1])
    if ptype is not None:
        return Packet(ptype, text[1:])
    if text[:1] == "b":
        return Packet(PacketType.MESSAGE, _b64decode(text[1:]))
    raise _unknown_type(text)


def encode_packet(packet: Packet) -> str | bytes:
    """Encode one packet as a WebSocket frame (EIO v4).

    :param packet: the packet.
    :returns: the text of a text frame (``"4hello"``), or for a binary message the bytes of a
        binary frame, as they are.
    """
    data = packet.data
    if isinstance(data, bytes):
        return data
    return _encode_text(packet)


def decode_packet(data: str | bytes) -> Packet:
    """Decode one WebSocket frame (EIO v4).

    :param data: the payload of a text frame (``str``) or of a binary frame (``bytes``).
    :returns: the packet; a binary frame is always a binary message.
    :raises EngineIOParseError: if a text frame is empty, has an unknown type or, in the form
        ``b<base64>``, invalid base64.
    :raises TypeError: if ``data`` is neither ``str`` nor ``bytes``.
    """
    if isinstance(data, str):
        return _decode_text(data)
    if isinstance(data, bytes):
        return Packet(PacketType.MESSAGE, data)
    raise TypeError(f"a frame is str or bytes, not {type(data).__name__}")


def encode_payload(packets: Sequence[Packet]) -> str:
    """Encode packets as a polling payload (EIO v4): records joined by ``\\x1e``.

    A binary message becomes ``b`` followed by its base64.  No packets give ``""``, which is
    not a valid payload: send at least one packet.

    :param packets: the packets, in order.
    :returns: the payload text.
    :raises ValueError: if a text packet contains ``\\x1e``, which EIO v4 polling cannot carry
        (sending it would let the data forge packets).
    """
    if not packets:
        return ""
    body = _SEPARATOR.join(
        "b" + _b64encode(p.data) if isinstance(p.data, bytes) else _encode_text(p) for p in packets
    )
    # base64 never contains the separator, so any extra one came from text data.
    if body.count(_SEPARATOR) != len(packets) - 1:
        raise ValueError("a text packet contains the record separator \\x1e")
    return body


def decode_payload(body: str, *, max_packets: int = DEFAULT_MAX_PACKETS) -> list[Packet]:
    """Decode a polling payload (EIO v4).

    :param body: the request or response body, decoded from UTF-8.
    :param max_packets: the most packets accepted; more is an error.  At most this many
        records are split off before the count is checked.
    :returns: the packets, in order (at least one).
    :raises EngineIOParseError: if a record is empty, has an unknown type or invalid base64
        (its :attr:`~EngineIOParseError.packets` are those of the records before), or if there
        are more than ``max_packets`` records (none decoded).
    :raises ValueError: if ``max_packets`` is less than 1.
    """
    if max_packets < 1:
        raise ValueError("max_packets must be at least 1")
    records = body.split(_SEPARATOR, max_packets)
    if len(records) > max_packets:
        raise EngineIOParseError(f"more than {max_packets} packets in a payload")
    packets: list[Packet] = []
    try:
        for record in records:
            packets.append(_decode_text(record))
    except EngineIOParseError as e:
        e.packets = packets  # the good records before the bad one, as Node's decodePayload
        raise
    return packets


# ---- v3 ----------------------------------------------------------------------------------


def encode_packet_v3(packet: Packet, *, supports_binary: bool = True) -> str | bytes:
    """Encode one packet as a WebSocket frame (EIO v3).

    :param packet: the packet.
    :param supports_binary: whether the client takes binary frames; if not, a binary message
        is sent as text, ``b4`` followed by its base64.
    :returns: the text of a text frame, or the bytes of a binary frame: the type byte ``0x04``
        followed by the message.
    """
    data = packet.data
    if isinstance(data, bytes):
        if supports_binary:
            return b"\x04" + data
        return "b4" + _b64encode(data)
    return _encode_text(packet)


def decode_packet_v3(data: str | bytes) -> Packet:
    """Decode one WebSocket frame (EIO v3), or one record of a v3 polling payload.

    :param data: text (``"<type digit>[data]"`` or ``"b4<base64>"``) or bytes (the type byte,
        then the data).
    :returns: the packet.
    :raises EngineIOParseError: if the data is empty, has an unknown type or invalid base64, or
        is binary with a type other than message.
    :raises TypeError: if ``data`` is neither ``str`` nor ``bytes``.
    """
    if isinstance(data, str):
        ptype = _TYPE_BY_DIGIT.get(data[:1])
        if ptype is not None:
            return Packet(ptype, data[1:])
        if data[:1] == "b":
            if data[1:2] != "4":
                raise EngineIOParseError("a base64 packet must be a message")
            return Packet(PacketType.MESSAGE, _b64decode(data[2:]))
        raise _unknown_type(data)
    if isinstance(data, bytes):
        if not data:
            raise EngineIOParseError("empty packet")
        if data[0] != PacketType.MESSAGE:
            raise EngineIOParseError(f"a binary packet must be a message, not type {data[0]}")
        return Packet(PacketType.MESSAGE, data[1:])
    raise TypeError(f"a frame is str or bytes, not {type(data).__name__}")


def _js_length(text: str) -> int:
    # JavaScript's String.length: UTF-16 code units.
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _surrogate_pair(match: re.Match[str]) -> str:
    code = ord(match.group()) - 0x10000
    return chr(0xD800 | (code >> 10)) + chr(0xDC00 | (code & 0x3FF))


def _length_digits(length: int) -> bytes:
    return str(length).encode("ascii").translate(_ASCII_TO_DIGIT_BYTES)


def _encode_binary_payload_v3(packets: Sequence[Packet]) -> bytes:
    out = bytearray()
    for packet in packets:
        data = packet.data
        if isinstance(data, bytes):
            out += b"\x01" + _length_digits(len(data) + 1) + b"\xff\x04"
            out += data
        else:
            # Node's utf8.js encodes lone surrogates too (strict: false): surrogatepass.
            text = _encode_text(packet).encode("utf-8", "surrogatepass")
            out += b"\x00" + _length_digits(len(text)) + b"\xff"
            out += text
    return bytes(out)


def encode_payload_v3(packets: Sequence[Packet], *, supports_binary: bool) -> str | bytes:
    """Encode packets as a polling payload (EIO v3).

    If ``supports_binary`` and a packet is binary, the result is the binary form (``bytes``).
    Otherwise it is the string form ``<length>:<packet>...``, lengths counted in UTF-16 code
    units as JavaScript counts them (``"€"`` is 1, ``"😀"`` is 2), binary messages as
    ``b4<base64>``; no packets give ``"0:"``, as Node sends.

    :param packets: the packets, in order.
    :param supports_binary: whether the client takes binary payloads (XHR2; never for JSONP).
    :returns: the payload: ``str`` for the string form, ``bytes`` for the binary form.
    """
    if supports_binary and any(isinstance(p.data, bytes) for p in packets):
        return _encode_binary_payload_v3(packets)
    if not packets:
        return "0:"
    parts = []
    for packet in packets:
        data = packet.data
        text = "b4" + _b64encode(data) if isinstance(data, bytes) else _encode_text(packet)
        parts.append(f"{_js_length(text)}:{text}")
    return "".join(parts)


def _decode_string_payload_v3(body: str, max_packets: int) -> list[Packet]:
    if not body:
        raise EngineIOParseError("empty payload")
    # Lengths count UTF-16 code units.  If the body has characters beyond the BMP, index a copy
    # in which each is its surrogate pair, and rejoin the pairs of every record sliced from it.
    # A length that splits a pair leaves a lone low surrogate where the next length must start,
    # which fails as a bad length prefix, as it does in Node.
    units = body if body.isascii() else _ASTRAL.sub(_surrogate_pair, body)
    rejoin = len(units) != len(body)
    end = len(units)
    packets: list[Packet] = []
    pos = 0
    records = 0
    try:
        while pos < end:
            records += 1
            if records > max_packets:
                raise EngineIOParseError(f"more than {max_packets} packets in a payload")
            colon = units.find(":", pos, pos + _MAX_LENGTH_DIGITS + 1)
            digits = units[pos:colon] if colon >= 0 else ""
            if not (digits.isascii() and digits.isdigit()):
                raise EngineIOParseError("bad length prefix in a payload")
            start = colon + 1
            pos = start + int(digits)
            if pos > end:
                raise EngineIOParseError("truncated packet in a payload")
            if pos > start:  # Node skips a zero-length record ("0:" is an empty payload)
                record = units[start:pos]
                if rejoin:
                    record = record.encode("utf-16-le", "surrogatepass").decode(
                        "utf-16-le", "surrogatepass"
                    )
                packets.append(decode_packet_v3(record))
    except EngineIOParseError as e:
        if records <= max_packets:
            # Node's v3 parser hands on each record as it reads it, up to the bad one; past
            # the bound nothing is handed on.
            e.packets = packets
        raise
    return packets


def _decode_binary_payload_v3(body: bytes, max_packets: int) -> list[Packet]:
    end = len(body)
    packets: list[Packet] = []
    pos = 0
    records = 0
    while pos < end:
        records += 1
        if records > max_packets:
            raise EngineIOParseError(f"more than {max_packets} packets in a payload")
        flag = body[pos]
        if flag > 1:
            raise EngineIOParseError("bad record flag in a binary payload")
        sep = body.find(b"\xff", pos + 1, pos + 2 + _MAX_LENGTH_DIGITS)
        digits = body[pos + 1 : sep] if sep >= 0 else b""
        if not digits or digits.translate(None, _DIGIT_BYTES):
            raise EngineIOParseError("bad length prefix in a binary payload")
        start = sep + 1
        pos = start + int(digits.translate(_DIGIT_BYTES_TO_ASCII))
        if pos > end:
            raise EngineIOParseError("truncated packet in a binary payload")
        if flag:
            packets.append(decode_packet_v3(body[start:pos]))
        else:
            try:
                text = body[start:pos].decode("utf-8", "surrogatepass")
            except UnicodeDecodeError as e:
                raise EngineIOParseError("invalid UTF-8 in a binary payload") from e
            packets.append(decode_packet_v3(text))
    return packets


def decode_payload_v3(body: str | bytes, *, max_packets: int = DEFAULT_MAX_PACKETS) -> list[Packet]:
    """Decode a polling payload (EIO v3), in the string or the binary form.

    The string form ``<length>:<packet>...`` counts lengths in UTF-16 code units; a zero length
    is skipped, so ``"0:"`` gives no packets, but ``""`` is an error (as in Node).  The binary
    form is decoded from ``bytes`` (``b""`` gives no packets, as in Node).

    :param body: the request body: ``str`` (decoded from UTF-8) or ``bytes`` when it was sent
        as ``application/octet-stream``.
    :param max_packets: the most records accepted; more is an error.
    :returns: the packets, in order.
    :raises EngineIOParseError: if a length prefix is not 1 to 15 ASCII digits (byte values 0-9
        in the binary form), a record is truncated or does not decode as a packet, a record
        flag is not 0 or 1, text is not UTF-8, or there are more than ``max_packets`` records;
        in the string form, its :attr:`~EngineIOParseError.packets` are those of the records
        before the fault (none past the bound).
    :raises ValueError: if ``max_packets`` is less than 1.
    :raises TypeError: if ``body`` is neither ``str`` nor ``bytes``.
    """
    if max_packets < 1:
        raise ValueError("max_packets must be at least 1")
    if isinstance(body, str):
        return _decode_string_payload_v3(body, max_packets)
    if isinstance(body, bytes):
        return _decode_binary_payload_v3(body, max_packets)
    raise TypeError(f"a payload is str or bytes, not {type(body).__name__}")


def encode_jsonp_payload(payload: str, index: str) -> str:
    """Wrap a v3 string payload as the JavaScript of a JSONP polling response.

    The payload becomes a JSON string literal in which U+2028, U+2029 (raw in JSON but line
    terminators in JavaScript before ES2019) and lone surrogates (not encodable as UTF-8) are
    escaped, as Node's ``JSON.stringify`` plus its own escaping produce.

    :param payload: the string form of a v3 payload (:func:`encode_payload_v3` with
        ``supports_binary=False``).
    :param index: the client's callback index, the ``j`` query parameter.
    :returns: ``___eio[<index>]("<payload>");``
    :raises ValueError: if ``index`` is not one or more ASCII digits.
    """
    if not (index.isascii() and index.isdigit()):
        raise ValueError("a JSONP index is ASCII digits")
    literal = _JS_UNSAFE.sub(
        lambda m: f"\\u{ord(m.group()):04x}", json.dumps(payload, ensure_ascii=False)
    )
    return f"___eio[{index}]({literal});"


def _unescape_newline(match: re.Match[str]) -> str:
    return match.group() if match.group(1) else "\n"


def decode_jsonp_body(body: bytes) -> str:
    """Extract the v3 payload from the body of a JSONP polling POST.

    The body is a form, ``application/x-www-form-urlencoded``, whose field ``d`` holds the
    payload with newlines escaped by the client; they are unescaped as Node does
    (``polling-jsonp.ts``): ``\\n`` becomes a newline, then ``\\\\n`` becomes ``\\n``.

    :param body: the request body.
    :returns: the payload, for :func:`decode_payload_v3`.
    :raises EngineIOParseError: if the body is not UTF-8, or a percent escape is not UTF-8, or
        the form has no field ``d`` or more than one.
    """
    try:
        fields = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, errors="strict"
        )
    except UnicodeDecodeError as e:
        raise EngineIOParseError("a JSONP form is not UTF-8") from e
    values = [value for name, value in fields if name == "d"]
    if len(values) != 1:
        raise EngineIOParseError("a JSONP form needs exactly one field d")
    return _JSONP_NEWLINE.sub(_unescape_newline, values[0]).replace("\\\\n", "\\n")
