"""The msgpack parser: the wire format of npm ``socket.io-msgpack-parser`` 3.x (pure: stdlib
and msgpack).

Made by :func:`txsio.parser.resolve_parser` for ``parser="msgpack"``; public as
:class:`txsio.parser.MsgpackParser`.

The format
----------
A packet is one msgpack map sent as one binary Engine.IO message: ``type`` (0 CONNECT,
1 DISCONNECT, 2 EVENT, 3 ACK, 4 CONNECT_ERROR: there are no binary types), ``nsp``, ``data``
when there is a payload, ``id`` when there is an ack id.  Binary values are msgpack ``bin``
inside the data, where they are: nothing is split into attachments.  Other keys are ignored
(socket.io-client adds ``options``).  Node's encoder is notepack.io 2.2, whose extensions
(type 0) are read as JavaScript's ``JSON.stringify`` would have carried them:

- ``undefined`` (fixext 1) is ``None`` (a CONNECT without auth sends ``data: undefined``; a
  ``pid`` Node's server leaves undefined arrives as ``None``);
- a ``Date`` (fixext 8) is its ``toJSON()`` text, ``"2024-01-31T12:00:00.000Z"``;
- an ``ArrayBuffer`` or a typed array (ext) is ``bytes``.  msgpack cannot tell these lengths
  apart from the two above: a typed array of one byte ``0`` arrives as ``None``, one of eight
  bytes as a date.  Send a ``Buffer`` (``bin``) to be exact.
- a msgpack timestamp (notepack.io 3) is read as a ``Date``; any other extension type is an
  error.

Numbers: integers up to 64 bits travel exactly (JavaScript reads those past ``2**53`` as the
nearest double); a Python ``int`` past 64 bits is sent as the double JavaScript would hold
(an infinity past the double's range), floats as float64 (NaN and the infinities as they are:
msgpack carries them, unlike JSON).  Strings are UTF-8, a lone surrogate passed through
(WTF-8), as a txsio peer reads it back.  Map keys are strings: a Python key ``1``, ``True``
or ``None`` is sent as it is and read back as JavaScript names it (``"1"``, ``"true"``,
``"null"``).

Bounds: the Engine.IO layer bounds the message (``max_http_buffer_size``), so msgpack's own
length bounds (each container or string at most the message's length) hold, and nothing is
allocated past what the message holds.  Data nested deeper than ``max_depth`` containers
(:data:`txsio.protocol.DEFAULT_MAX_DEPTH`), a namespace longer than ``max_nsp_length``, an ack
id that is not an integer from 0 to ``2**53 - 1``, an unknown packet type or extension, a map
key that is no string, number, boolean or nil, a text message and trailing bytes are errors
(:exc:`~txsio.protocol.SocketIOParseError`), as are the payloads the default decoder refuses
(Node's ``isPayloadValid``).  ``max_attachments`` does not apply: binary values are part of
the one message.  Nothing here recurses over peer data.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import msgpack

from ._jsjson import BINARY_TYPES, DEFAULT_MAX_DEPTH
from .protocol import (
    DEFAULT_MAX_ATTACHMENTS,
    DEFAULT_MAX_NSP_LENGTH,
    Packet,
    PacketType,
    SocketIOParseError,
    payload_for,
)

__all__ = ["MsgpackDecoder", "MsgpackParser"]

# The packet types the format has (socket.io-msgpack-parser's checkPacket: 0 to 4).
_TYPES: dict[int, PacketType] = {int(t): t for t in PacketType if t <= PacketType.CONNECT_ERROR}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _unpackable(value: object) -> object:
    # The Packer's default: called for each value msgpack has no form for.
    if isinstance(value, int):
        # Past 64 bits: the double JavaScript holds (an infinity past its range).
        try:
            return float(value)
        except OverflowError:
            return math.inf if value > 0 else -math.inf
    raise TypeError(f"{value!r:.60} cannot be sent with the msgpack parser: a "
                    f"{type(value).__name__!r} is none of dict, list, tuple, str, int, float, "
                    "bool, None or bytes")


class MsgpackParser:
    """The format of npm ``socket.io-msgpack-parser`` 3.x (see :mod:`txsio.parser`): each
    packet one msgpack map in one binary message.

    :param max_depth: the deepest nesting a decoder accepts in a packet's data, in
        containers (``["a"]`` is 1 deep).
    :param max_nsp_length: the longest namespace a decoder accepts, in characters.
    """

    def __init__(self, *, max_depth: int = DEFAULT_MAX_DEPTH,
                 max_nsp_length: int = DEFAULT_MAX_NSP_LENGTH) -> None:
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        if max_nsp_length < 1:
            raise ValueError("max_nsp_length must be at least 1")
        self.max_depth = max_depth
        self.max_nsp_length = max_nsp_length
        # One packer for every packet (it resets itself when a value fails).
        self._pack = msgpack.Packer(default=_unpackable, unicode_errors="surrogatepass",
                                    datetime=False).pack

    def encode(self, packet: Packet, *, protocol: int = 5) -> list[str | bytes]:
        """``packet`` as one binary message: the msgpack map ``{type, data, nsp, id}``.

        An EVENT or ACK holding binary keeps its type (the format has no binary types), and
        a BINARY_EVENT or BINARY_ACK is sent as EVENT or ACK.

        :raises TypeError: for a value msgpack cannot carry (a ``set``, a ``datetime``...).
        :raises ValueError: for a reference cycle or nesting past msgpack's own limit;
            for ``protocol`` as :func:`txsio.protocol.payload_for`.
        """
        ptype = packet.type
        if ptype is PacketType.BINARY_EVENT:
            ptype = PacketType.EVENT
        elif ptype is PacketType.BINARY_ACK:
            ptype = PacketType.ACK
        data = packet.data if protocol == 5 else payload_for(packet, protocol)
        obj: dict[str, Any] = {"type": int(ptype)}
        if data is not None:
            obj["data"] = data
        obj["nsp"] = packet.nsp
        if packet.id is not None:
            obj["id"] = packet.id
        try:
            return [cast(bytes, self._pack(obj))]
        except ValueError as e:
            raise ValueError(f"cannot encode with msgpack: {e}") from None

    def decoder(self, *, protocol: int = 5,
                max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> MsgpackDecoder:
        """A :class:`MsgpackDecoder` with this parser's bounds (``max_attachments`` does not
        apply: binary values travel inside the packet's one message)."""
        if protocol not in (4, 5):
            raise ValueError(f"unsupported Socket.IO protocol {protocol!r}")
        return MsgpackDecoder(max_depth=self.max_depth, max_nsp_length=self.max_nsp_length)


def _ext(code: int, data: bytes) -> Any:
    # notepack.io 2.2's extensions, all of type 0, told apart by their length.
    if code != 0:
        raise SocketIOParseError(f"unknown msgpack extension type {code}")
    if len(data) == 1:
        return None  # undefined
    if len(data) == 8:
        ms = int.from_bytes(data[:4], "big", signed=True) * 2**32 + int.from_bytes(data[4:], "big")
        return _date_json(ms)
    return bytes(data)  # an ArrayBuffer or a typed array


def _date_json(ms: int) -> str | None:
    # Date.prototype.toJSON: ISO 8601 in UTC with milliseconds; null for an invalid date
    # (past what Python's datetime holds: JavaScript's own range is wider).
    try:
        when = _EPOCH + timedelta(milliseconds=ms)
    except OverflowError:
        return None
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key(key: object) -> str:
    # A map key as JavaScript names an object's property.
    if key is None:
        return "null"
    if key is True or key is False:
        return "true" if key else "false"
    if key.__class__ is int:
        return str(key)
    if isinstance(key, float):
        if math.isnan(key):
            return "NaN"
        if math.isinf(key):
            return "Infinity" if key > 0 else "-Infinity"
        return str(int(key)) if key.is_integer() and abs(key) < 1e21 else repr(key)
    raise SocketIOParseError("a map key must be a string")


_SCALARS = frozenset({str, int, float, bool, bytes, type(None)})


def _check(data: list[Any] | dict[Any, Any], max_depth: int) -> None:
    # Walk the data iteratively: bound its depth, name its keys as JavaScript does, read
    # timestamps as dates, refuse anything else msgpack may have built.
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if node.__class__ is dict and any(k.__class__ is not str for k in node):
            renamed = {_key(k) if k.__class__ is not str else k: v for k, v in node.items()}
            node.clear()
            node.update(renamed)
        for key, value in enumerate(node) if node.__class__ is list else node.items():
            cls = value.__class__
            if cls is dict or cls is list:
                if depth >= max_depth:
                    raise SocketIOParseError(f"data nested deeper than {max_depth}")
                stack.append((value, depth + 1))
            elif cls not in _SCALARS:
                if cls is not msgpack.Timestamp:
                    raise SocketIOParseError(f"unsupported msgpack value {cls.__name__}")
                node[key] = _date_json(value.seconds * 1000 + value.nanoseconds // 1_000_000)


# The walk is skipped for a message that cannot need it, told at C speed from its bytes: the
# data nests at most as deep as the message has bytes that may open a container (fixmap,
# fixarray, array 16/32, map 16/32: also found inside strings, numbers and binary, so it is an
# upper bound), and only a ``bin`` (a map key it may be) or a timestamp's extension header
# (fixext 4 and 8, ext 8, 16 and 32) may give the walk something to refuse or convert besides
# keys that are not strings, which the fast unpacking refuses (then the message is read again).
_OPENERS = frozenset(range(0x80, 0xA0)) | {0xDC, 0xDD, 0xDE, 0xDF}
_FLAGGED = frozenset({0xC4, 0xC5, 0xC6, 0xC7, 0xC8, 0xC9, 0xD6, 0xD7})
_DROP_OTHERS = bytes(sorted(set(range(256)) - _OPENERS - _FLAGGED))
_DROP_OPENERS = bytes(sorted(_OPENERS))


def _needs_walk(data: bytes, max_depth: int) -> bool:
    kept = data.translate(None, _DROP_OTHERS)
    return len(kept) >= max_depth or bool(kept.translate(None, _DROP_OPENERS))


def _unpack(data: bytes, strict_map_key: bool) -> Any:
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=strict_map_key, ext_hook=_ext,
                               unicode_errors="surrogatepass")
    except SocketIOParseError:
        raise
    except (ValueError, TypeError, OverflowError, RecursionError, MemoryError) as e:
        # ExtraData, FormatError, StackError, bad UTF-8, a key strict_map_key refuses are
        # ValueErrors; an array as a map key is a TypeError.  The message names the fault,
        # never the data.
        raise SocketIOParseError(f"invalid msgpack ({type(e).__name__})") from None


class MsgpackDecoder:
    """Decodes the msgpack packets of one connection, each from one binary message (no state
    between messages).

    :param max_depth: the deepest nesting accepted in a packet's data, in containers.
    :param max_nsp_length: the longest namespace accepted, in characters.
    """

    def __init__(self, *, max_depth: int = DEFAULT_MAX_DEPTH,
                 max_nsp_length: int = DEFAULT_MAX_NSP_LENGTH) -> None:
        self._max_depth = max_depth
        self._max_nsp_length = max_nsp_length

    def reset(self) -> None:
        """Nothing waits between messages: nothing to drop."""

    def feed(self, data: str | bytes | bytearray | memoryview) -> Packet:
        """Decode one binary message as one packet.

        :raises SocketIOParseError: for a text message, invalid msgpack, or a packet the
            module docstring's rules refuse.
        :raises TypeError: if ``data`` is neither text nor binary.
        """
        if not isinstance(data, BINARY_TYPES):
            if isinstance(data, str):
                raise SocketIOParseError("a text message is no msgpack packet")
            raise TypeError(f"a message is str or bytes, not {type(data).__name__}")
        if data.__class__ is not bytes:
            data = bytes(data)
        walk = _needs_walk(data, self._max_depth)
        try:
            # Map keys are strings (or bin, which the walk refuses) ...
            obj = _unpack(data, True)
        except SocketIOParseError:
            # ... or, rarely, numbers to name as JavaScript does: read again, then walk.
            obj = _unpack(data, False)
            walk = True
        if obj.__class__ is not dict:
            raise SocketIOParseError("a msgpack packet is a map")
        code = obj.get("type")
        ptype = _TYPES.get(code) if code.__class__ is int else None
        if ptype is None:
            raise SocketIOParseError("unknown packet type")
        nsp = obj.get("nsp")
        if nsp.__class__ is not str:
            raise SocketIOParseError("the namespace must be a string")
        if len(nsp) > self._max_nsp_length:
            raise SocketIOParseError("namespace too long")
        payload = obj.get("data")
        if walk and (payload.__class__ is list or payload.__class__ is dict):
            _check(payload, self._max_depth)
        ack_id = obj.get("id")
        if ack_id is not None and ack_id.__class__ is not int:
            raise SocketIOParseError("the ack id must be an integer")
        try:
            return Packet(ptype, nsp, payload, ack_id)
        except ValueError as e:
            raise SocketIOParseError(str(e)) from None
