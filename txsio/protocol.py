"""Socket.IO packets, protocol v5 and v4 (sans-I/O, stdlib only).

Theory of operation
-------------------
A :class:`Packet` is a type, a namespace, a payload and an optional ack id, validated when
built.  :func:`encode` turns a packet into the Engine.IO message payloads to send: the packet's
text, then one ``bytes`` attachment per binary value in its data.  A :class:`Decoder` is fed
the Engine.IO message payloads a peer sent, in order, and gives packets back; on bad input it
raises :exc:`SocketIOParseError` -- the only exception it raises on peer data -- and the
connection that sent it is to be closed.  Nothing here does I/O.

The text form (spec, "Packet encoding")::

    <type digit>[<attachment count>-][<namespace>,][<ack id>][<JSON payload>]

The namespace is written only when it is not ``/``; the attachment count only for the binary
types.  Binary values (``bytes``, ``bytearray``, ``memoryview``) in the payload are replaced by
``{"_placeholder":true,"num":<i>}`` and sent as the ``i``-th attachment, each in its own
Engine.IO binary message right after the text.  An EVENT or ACK whose data holds binary is
sent as BINARY_EVENT or BINARY_ACK, and decodes as such with the ``bytes`` back in place.

Protocol v4 (socket.io-client 2.x, Engine.IO v3) differs in two places handled here: the
client's CONNECT carries its query string in the namespace (``0/admin?token=1,``), which the
decoder turns into the packet's data; and CONNECT_ERROR carries a plain string, and the
server's CONNECT reply no payload, which the encoder writes.

Bounds
------
The Engine.IO layer bounds the size of each message (``maxPayload``) before it gets here.  The
decoder bounds what is built from a message, each bound a constructor argument:

- at most ``max_attachments`` attachments per packet (Node's ``maxAttachments``), checked on
  the count in the text before the payload is parsed or any attachment is awaited;
- JSON nested at most ``max_depth`` containers deep.  ``json.loads`` itself stops at Python's
  recursion limit (``RecursionError``, caught).  A payload shorter than ``2 * (max_depth + 1)``
  characters, or with no more openers ``[``/``{`` than ``max_depth``, cannot be deeper, so the
  common packet is parsed and nothing more.  Any other has its depth read from its text with
  a few C-level passes (brackets kept, strings dropped, innermost pairs stripped level by
  level), or, if its strings hold brackets or escapes, from the decoded data by an iterative
  walk.  A binary packet is always walked, to find its placeholders.  No code here recurses;
- a namespace of at most ``max_nsp_length`` characters, and an ack id of at most 16 digits and
  no more than ``2**53 - 1`` (JavaScript's largest safe integer).

Validation follows Node's ``isPayloadValid`` (``socket.io-parser``): an EVENT payload is a
non-empty array led by a string or a number, an ACK payload an array, a CONNECT payload an
object or none, a CONNECT_ERROR payload a string or an object, a DISCONNECT no payload; a
``null`` payload is none of these.  JSON is what ``JSON.parse`` accepts (no ``NaN``, no
``Infinity``; whitespace around it allowed).  An integer is an ``int``; one too long for
Python's ``int()`` (its limit on int-string conversion, 4,300 digits by default) is read as
``JSON.parse`` reads it, a ``float`` (infinite: sent back, it is ``null``), never an error
(:func:`txsio._jsjson.js_int`).  Reserved event names are not refused here: that
is the server's decision (see :data:`RESERVED_EVENTS`).  The decoder is stricter than Node
where Node accepts garbage: an empty packet is an error (Node reads a CONNECT), the attachment
count and ack id are ASCII digits only, a binary packet announces at least one attachment,
EVENT and ACK must have a payload, only EVENT and ACK take an ack id, and a placeholder object
is exactly ``_placeholder`` and an integer ``num`` in range.
"""

from __future__ import annotations

import enum
import json
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._jsjson import (
    BINARY_TYPES,
    DEFAULT_MAX_DEPTH,
    BinaryFound,
    has_binary,
    js_int,
    stringify,
    stringify_with_attachments,
)

__all__ = [
    "DEFAULT_MAX_ATTACHMENTS",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NSP_LENGTH",
    "MAX_ACK_ID",
    "RESERVED_EVENTS",
    "Decoder",
    "Packet",
    "PacketType",
    "SocketIOParseError",
    "encode",
    "has_binary",
    "payload_for",
    "trusted_packet",
]


class PacketType(enum.IntEnum):
    """The Socket.IO packet types; the value is the digit sent on the wire."""

    #: join a namespace (client, with an optional auth object), or the server's acceptance
    CONNECT = 0
    #: leave a namespace (either side)
    DISCONNECT = 1
    #: an event: the name, then its arguments
    EVENT = 2
    #: the answer to an event sent with an ack id
    ACK = 3
    #: the server refuses to let the client join a namespace (v4: ``ERROR``)
    CONNECT_ERROR = 4
    #: an event whose arguments hold binary attachments
    BINARY_EVENT = 5
    #: an ack whose arguments hold binary attachments
    BINARY_ACK = 6


CONNECT = PacketType.CONNECT
DISCONNECT = PacketType.DISCONNECT
EVENT = PacketType.EVENT
ACK = PacketType.ACK
CONNECT_ERROR = PacketType.CONNECT_ERROR
BINARY_EVENT = PacketType.BINARY_EVENT
BINARY_ACK = PacketType.BINARY_ACK


class SocketIOParseError(ValueError):
    """The one exception :class:`Decoder` raises on bad input.

    It means the peer broke the protocol: the connection that sent the input is to be closed.
    Its message names the fault, never the payload.
    """


#: Event names a client may not emit (Node's ``RESERVED_EVENTS``): the decoder lets them
#: through, the server refuses them.
RESERVED_EVENTS: frozenset[str] = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

#: Default bound on the binary attachments of one packet (Node's ``maxAttachments``).
DEFAULT_MAX_ATTACHMENTS: int = 10

#: Default bound on the characters of a namespace.  Generous, because a v4 client sends its
#: query string in the namespace of CONNECT (URLs are commonly capped at 8 KiB).
DEFAULT_MAX_NSP_LENGTH: int = 8192

#: The largest ack id: JavaScript's ``Number.MAX_SAFE_INTEGER``, beyond which a JavaScript
#: peer could not give the id back exactly.
MAX_ACK_ID: int = 2**53 - 1

# The digits of MAX_ACK_ID: a longer id is garbage, refused before int() reads it.
_MAX_ACK_ID_DIGITS = len(str(MAX_ACK_ID))

# An attachment count of more digits than this is refused before int() reads it.
_MAX_COUNT_DIGITS = 10

_BINARY = BINARY_TYPES
_DIGITS = "0123456789"
_DIGIT_SET = frozenset(_DIGITS)

# Decoding the type is one lookup here; a missing key is an empty packet or an unknown type.
_TYPE_BY_CHAR: dict[str, PacketType] = {str(int(t)): t for t in PacketType}

# The head of a packet sent without attachments: a binary type with no binary is sent as
# the plain type (Node's encoder only uses the binary types when there is binary).
_TEXT_DIGIT: dict[PacketType, str] = {
    t: str(int({BINARY_EVENT: EVENT, BINARY_ACK: ACK}.get(t, t))) for t in PacketType
}

# The type a packet with attachments is sent as.
_BINARY_TYPE: dict[PacketType, PacketType] = {
    EVENT: BINARY_EVENT,
    ACK: BINARY_ACK,
    BINARY_EVENT: BINARY_EVENT,
    BINARY_ACK: BINARY_ACK,
}


# ---- the packet ---------------------------------------------------------------------------


def _data_error(ptype: PacketType, data: Any) -> str | None:
    # The payload rules of Node's isPayloadValid; None if the data fits the type.
    if ptype is EVENT or ptype is BINARY_EVENT:
        if not isinstance(data, list):
            return f"{ptype.name} data must be a list"
        if not data:
            return f"{ptype.name} data must not be empty"
        name = data[0]
        if isinstance(name, str) or (isinstance(name, (int, float)) and not isinstance(name, bool)):
            return None
        return "an event name must be a string or a number"
    if ptype is ACK or ptype is BINARY_ACK:
        return None if isinstance(data, list) else f"{ptype.name} data must be a list"
    if ptype is CONNECT:
        return None if data is None or isinstance(data, dict) else "CONNECT data must be a dict"
    if ptype is CONNECT_ERROR:
        if isinstance(data, (str, dict)):
            return None
        return "CONNECT_ERROR data must be a dict or a str"
    return None if data is None else "DISCONNECT has no data"


@dataclass(frozen=True, slots=True)
class Packet:
    """One Socket.IO packet, validated when built.

    Binary values (``bytes``, ``bytearray``, ``memoryview``) may appear anywhere in the data of
    an EVENT or ACK, nested in lists and dicts; :func:`encode` sends them as attachments.  The
    decoder gives such packets as BINARY_EVENT or BINARY_ACK with ``bytes`` in place, so
    ``decode(encode(p)) == p`` holds when the type says whether the data holds binary (EVENT
    and ACK without, BINARY_EVENT and BINARY_ACK with).  Only the top level of the data is
    checked here; :func:`encode` finds what JSON cannot carry.

    :param type: the packet type.
    :param nsp: the namespace: ``"/"``, or a name starting with ``/`` and without ``,``.
    :param data: the payload.  CONNECT: a dict (v5 auth, or the server's ``{"sid": ...}``;
        v4: the client's query) or ``None``; DISCONNECT: ``None``; EVENT and BINARY_EVENT: a
        non-empty list led by the event name, a string (or a number, as Node accepts);
        ACK and BINARY_ACK: a list of arguments; CONNECT_ERROR: a dict (v5,
        ``{"message": ..., "data": ...}``) or a str (v4).
    :param id: the ack id, for EVENT and ACK types only: an int from 0 to :data:`MAX_ACK_ID`,
        or ``None``.
    :raises TypeError: if ``type`` is not a :class:`PacketType`, ``nsp`` not a str, or ``id``
        not an int or ``None``.
    :raises ValueError: if ``nsp``, ``data`` or ``id`` does not fit the rules above.
    """

    #: the packet type
    type: PacketType
    #: the namespace, ``"/"`` for the main one
    nsp: str = "/"
    #: the payload; see the class docstring for what each type carries
    data: Any = None
    #: the ack id, or ``None``
    id: int | None = None

    def __post_init__(self) -> None:
        ptype = self.type
        if ptype.__class__ is not PacketType:
            raise TypeError(f"packet type must be a PacketType, not {type(ptype).__name__}")
        nsp = self.nsp
        if not isinstance(nsp, str):
            raise TypeError(f"a namespace must be a str, not {type(nsp).__name__}")
        if nsp != "/" and (nsp[:1] != "/" or "," in nsp):
            raise ValueError("a namespace starts with '/' and has no ','")
        ack_id = self.id
        if ack_id is not None:
            if ack_id.__class__ is not int:
                raise TypeError(f"an ack id must be an int, not {type(ack_id).__name__}")
            if not 0 <= ack_id <= MAX_ACK_ID:
                raise ValueError("an ack id must be from 0 to 2**53 - 1")
            if ptype not in _BINARY_TYPE:
                raise ValueError(f"{ptype.name} takes no ack id")
        error = _data_error(ptype, self.data)
        if error is not None:
            raise ValueError(error)


# The slots of Packet, written directly by trusted_packet (a frozen dataclass refuses setattr).
_new_packet = object.__new__
_set_type = Packet.__dict__["type"].__set__
_set_nsp = Packet.__dict__["nsp"].__set__
_set_data = Packet.__dict__["data"].__set__
_set_id = Packet.__dict__["id"].__set__


def trusted_packet(ptype: PacketType, nsp: str, data: Any, ack_id: int | None) -> Packet:
    """A :class:`Packet` whose fields the caller has already checked against the rules of
    :class:`Packet`, built without checking them again (half the cost of ``Packet(...)``).

    For the hot paths only: the :class:`Decoder`, which checks what it reads as it reads it,
    and a socket answering an ack (the namespace and id came from a decoded packet, the
    arguments are a list).  Anything else builds packets with ``Packet(...)``.
    """
    packet: Packet = _new_packet(Packet)
    _set_type(packet, ptype)
    _set_nsp(packet, nsp)
    _set_data(packet, data)
    _set_id(packet, ack_id)
    return packet


# ---- encoding -----------------------------------------------------------------------------


def _dumps(ptype: PacketType, data: Any) -> tuple[str, list[bytes] | None]:
    # The fast path is one C encoder pass that stops at the first binary value, if any.
    try:
        return stringify(data), None
    except BinaryFound:
        pass
    if ptype not in _BINARY_TYPE:
        raise ValueError(f"{ptype.name} cannot carry binary data")
    return stringify_with_attachments(data)


def encode(packet: Packet, *, protocol: int = 5) -> list[str | bytes]:
    """Encode a packet as the Engine.IO message payloads to send, in order.

    The JSON is compact and keeps non-ASCII characters as they are, as Node writes it; lone
    surrogates are escaped (``\\ud800``), as ``JSON.stringify`` does.  An EVENT or ACK whose
    data holds binary is sent as BINARY_EVENT or BINARY_ACK (``51-["a",{"_placeholder":
    true,"num":0}]``); a BINARY_EVENT or BINARY_ACK whose data holds none is sent as EVENT or
    ACK.

    NaN and the infinities are sent as ``null``, as ``JSON.stringify`` sends them.

    :param packet: the packet.
    :param protocol: the client's Socket.IO protocol, 5 or 4.  For 4, a CONNECT is sent
        without data (the v4 server's reply to a join) and a CONNECT_ERROR with a string
        payload: the data's ``"message"`` if the data is a dict.
    :returns: the packet's text (without Engine.IO's message type ``4``), then the bytes of
        each attachment.
    :raises ValueError: if ``protocol`` is not 4 or 5; if the data holds a reference cycle,
        or nesting too deep for Python's recursion limit; if a type other than EVENT and ACK
        holds binary; if a v4 CONNECT_ERROR dict has no string ``"message"``; or if a v4
        CONNECT's namespace holds a ``?`` (there, the start of the client's query).
    :raises TypeError: if the data holds a value JSON cannot carry.
    """
    ptype = packet.type
    data = packet.data if protocol == 5 else payload_for(packet, protocol)
    attachments: list[bytes] | None = None
    if data is None:
        body = ""
    else:
        body, attachments = _dumps(ptype, data)
    if attachments:
        head = f"{int(_BINARY_TYPE[ptype])}{len(attachments)}-"
    else:
        head = _TEXT_DIGIT[ptype]
    nsp = packet.nsp
    if nsp != "/":
        head += nsp + ","
    if packet.id is not None:
        head += str(packet.id)
    if attachments:
        return [head + body, *attachments]
    return [head + body]


def payload_for(packet: Packet, protocol: int) -> Any:
    """The payload ``packet`` carries to a peer of Socket.IO ``protocol`` (for every parser).

    Protocol 5 sends the data as it is.  Protocol 4 (socket.io-client 2.x) differs in two
    packets: the server accepts a join with a bare CONNECT (no data), and a CONNECT_ERROR
    (then ``ERROR``) carries a string, the data's ``"message"``.

    :raises ValueError: if ``protocol`` is not 4 or 5; if a v4 CONNECT_ERROR dict has no
        string ``"message"``; or if a v4 CONNECT's namespace holds a ``?``.
    """
    ptype = packet.type
    data = packet.data
    if protocol != 5:
        if protocol != 4:
            raise ValueError(f"unsupported Socket.IO protocol {protocol!r}")
        if ptype is CONNECT:
            # SIO v4: the server accepts a join with a bare CONNECT.  A "?" would start the
            # query that a v4 CONNECT carries in its namespace: no such name can be sent.
            if "?" in packet.nsp:
                raise ValueError(f"a v4 CONNECT cannot name the namespace {packet.nsp!r:.40}:"
                                 " '?' starts its query")
            data = None
        elif ptype is CONNECT_ERROR and isinstance(data, dict):
            # SIO v4: CONNECT_ERROR (then ERROR) carries a string.
            message = data.get("message")
            if not isinstance(message, str):
                raise ValueError("a v4 CONNECT_ERROR needs a string message")
            data = message
    return data


# ---- decoding -----------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    # JSON.parse refuses NaN and Infinity; so do we.
    raise ValueError(f"{name} is not JSON")


_JSON_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
# The hot path calls json's C scanner at the payload's offset: no slice, no whitespace
# regexes, no wrappers -- on a small packet a third of what json.loads costs.  It raises
# StopIteration for anything but a JSON value at the offset; json.loads then decides.
# (scan_once is what JSONDecoder.raw_decode calls; typeshed leaves it out.)
_scan_json: Callable[[str, int], tuple[Any, int]] = _JSON_DECODER.scan_once  # type: ignore[attr-defined]
# The slow paths: integers past Python's int-string limit read as JSON.parse reads them (a
# Python call per integer, so not on the hot path).
_JS_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_int=js_int)
_scan_js: Callable[[str, int], tuple[Any, int]] = _JS_DECODER.scan_once  # type: ignore[attr-defined]
_loads = _JS_DECODER.decode
_JSON_WHITESPACE = " \t\n\r"

# The depth of valid JSON from its text, at C speed: keep only the brackets (unified) and
# the quotes and backslashes, drop every string without brackets (a quote pair ``""``), then
# strip innermost ``[]`` pairs level by level.
_DEPTH_TABLE = bytes.maketrans(b"{}", b"[]")
_DEPTH_DELETE = bytes(sorted(set(range(256)) - set(b'[]{}"\\')))


def _text_depth_ok(text: str, max_depth: int) -> bool | None:
    # Whether valid JSON text nests at most max_depth deep; None if a string holds a bracket
    # or an escape, which only a walk of the decoded data can tell apart.
    skeleton = text.encode("utf-8", "surrogatepass").translate(_DEPTH_TABLE, _DEPTH_DELETE)
    if b"\\" in skeleton:
        return None
    skeleton = skeleton.replace(b'""', b"")
    if b'"' in skeleton:
        return None
    for _ in range(max_depth):
        if not skeleton:
            return True
        skeleton = skeleton.replace(b"[]", b"")
    return not skeleton


# A placeholder in the data, to be filled: (container, key or index, attachment number).
_Slot = tuple[Any, Any, int]


def _walk(data: list[Any] | dict[str, Any], max_depth: int, attachments: int) -> list[_Slot]:
    # Check the nesting of decoded JSON iteratively and, if the packet has attachments,
    # find its placeholders: each an object that is exactly {"_placeholder": true, "num": i},
    # 0 <= i < attachments (Node: any object whose _placeholder is true is one).
    slots: list[_Slot] = []
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        for key, value in enumerate(node) if node.__class__ is list else node.items():
            cls = value.__class__
            if cls is dict:
                if depth >= max_depth:
                    raise SocketIOParseError(f"JSON nested deeper than {max_depth}")
                if attachments and value.get("_placeholder") is True:
                    num = value.get("num")
                    if len(value) != 2 or num.__class__ is not int or not 0 <= num < attachments:
                        raise SocketIOParseError("invalid attachment placeholder")
                    slots.append((node, key, num))
                else:
                    stack.append((value, depth + 1))
            elif cls is list:
                if depth >= max_depth:
                    raise SocketIOParseError(f"JSON nested deeper than {max_depth}")
                stack.append((value, depth + 1))
    return slots


class _Partial:
    # A binary packet whose attachments are still arriving.
    __slots__ = ("buffers", "count", "data", "id", "nsp", "slots", "type")

    def __init__(
        self,
        ptype: PacketType,
        nsp: str,
        data: Any,
        ack_id: int | None,
        count: int,
        slots: list[_Slot],
    ) -> None:
        self.type = ptype
        self.nsp = nsp
        self.data = data
        self.id = ack_id
        self.count = count
        self.slots = slots
        self.buffers: list[bytes] = []

    def finish(self) -> Packet:
        buffers = self.buffers
        for container, key, num in self.slots:
            container[key] = buffers[num]
        # Checked when the text came: the placeholders were inside the data, never its
        # event name, so filling them in keeps it valid.
        return trusted_packet(self.type, self.nsp, self.data, self.id)


class Decoder:
    """Feed Engine.IO message payloads (str for packets, bytes for attachments); get packets.

    A text message is a packet.  A binary packet announces its attachments in its text; the
    next that many binary messages complete it.  Bounds are described in the module docstring.

    :param protocol: the peer's Socket.IO protocol, 5 or 4.  For 4, the query string a client
        puts in the namespace of CONNECT (``0/admin?token=1,``) is taken out of the namespace
        and becomes the packet's data, a ``dict[str, str]`` (the last value of a repeated
        name).
    :param max_attachments: the most binary attachments one packet may announce
        (:data:`DEFAULT_MAX_ATTACHMENTS`); 0 refuses binary packets.
    :param max_depth: the deepest JSON nesting accepted, in containers
        (:data:`DEFAULT_MAX_DEPTH`).
    :param max_nsp_length: the longest namespace accepted, in characters, the v4 query
        included (:data:`DEFAULT_MAX_NSP_LENGTH`).
    :raises ValueError: if ``protocol`` is not 4 or 5, or a bound is out of range.
    """

    def __init__(
        self,
        *,
        protocol: int = 5,
        max_attachments: int = DEFAULT_MAX_ATTACHMENTS,
        max_depth: int = DEFAULT_MAX_DEPTH,
        max_nsp_length: int = DEFAULT_MAX_NSP_LENGTH,
    ) -> None:
        if protocol not in (4, 5):
            raise ValueError(f"unsupported Socket.IO protocol {protocol!r}")
        if max_attachments < 0:
            raise ValueError("max_attachments must be at least 0")
        if max_depth < 1:
            raise ValueError("max_depth must be at least 1")
        if max_nsp_length < 1:
            raise ValueError("max_nsp_length must be at least 1")
        self._v4 = protocol == 4
        self._max_attachments = max_attachments
        self._max_depth = max_depth
        # A payload this short cannot nest deeper than max_depth: each level takes 2 chars.
        self._short = 2 * (max_depth + 1)
        self._max_nsp_length = max_nsp_length
        self._partial: _Partial | None = None

    @property
    def awaiting_attachments(self) -> bool:
        """Whether a binary packet is waiting for attachments: the next feed must be bytes."""
        return self._partial is not None

    def reset(self) -> None:
        """Drop a binary packet still waiting for attachments, if any."""
        self._partial = None

    def feed(self, data: str | bytes | bytearray | memoryview) -> Packet | None:
        """Decode one Engine.IO message payload.

        :param data: a text message (``str``), which is a packet, or a binary message
            (``bytes``, ``bytearray`` or ``memoryview``), which is an attachment of the binary
            packet before it.
        :returns: the decoded packet; or ``None`` when ``data`` is a binary packet's text or
            one of its attachments but the last.  The last attachment gives the packet, its
            placeholders replaced by the attachments' ``bytes``.
        :raises SocketIOParseError: if the text is not a valid packet, if it announces more
            than ``max_attachments`` attachments (checked first), if its JSON is invalid or
            nested deeper than ``max_depth``, if binary data comes when no attachment is
            awaited, or text when one is.  The decoder is then reset.
        :raises TypeError: if ``data`` is neither text nor binary.
        """
        if isinstance(data, str):
            if self._partial is not None:
                self._partial = None
                raise SocketIOParseError("a text packet came while attachments were awaited")
            return self._decode_text(data)
        if isinstance(data, _BINARY):
            partial = self._partial
            if partial is None:
                raise SocketIOParseError("binary data came when no attachment was awaited")
            partial.buffers.append(bytes(data))
            if len(partial.buffers) < partial.count:
                return None
            self._partial = None
            return partial.finish()
        raise TypeError(f"a message is str or bytes, not {type(data).__name__}")

    def _decode_text(self, text: str) -> Packet | None:
        # <type>[<count>-][<nsp>,][<id>][<json>]: a few slices and finds, one JSON scan.
        ptype = _TYPE_BY_CHAR.get(text[:1])
        if ptype is None:
            raise SocketIOParseError("empty packet" if not text else "unknown packet type")
        pos = 1
        count = 0
        if ptype is BINARY_EVENT or ptype is BINARY_ACK:
            dash = text.find("-", 1, 2 + _MAX_COUNT_DIGITS)
            digits = text[1:dash] if dash > 0 else ""
            if not (digits.isdigit() and digits.isascii()):
                raise SocketIOParseError("invalid attachment count")
            count = int(digits)
            if count > self._max_attachments:
                raise SocketIOParseError(f"more than {self._max_attachments} attachments")
            if count < 1:
                raise SocketIOParseError("a binary packet must have attachments")
            pos = dash + 1
        end = len(text)
        nsp = "/"
        if text.startswith("/", pos):
            # Node: the namespace runs to the first ',' or to the end.
            comma = text.find(",", pos, pos + self._max_nsp_length + 1)
            if comma < 0:
                if end - pos > self._max_nsp_length:
                    raise SocketIOParseError("namespace too long")
                nsp = text[pos:]
                pos = end
            else:
                nsp = text[pos:comma]
                pos = comma + 1
        ack_id = None
        if text[pos : pos + 1] in _DIGIT_SET:
            chunk = text[pos : pos + _MAX_ACK_ID_DIGITS + 1]
            length = len(chunk) - len(chunk.lstrip(_DIGITS))
            if length > _MAX_ACK_ID_DIGITS:
                raise SocketIOParseError("ack id too long")
            ack_id = int(chunk[:length])
            if ack_id > MAX_ACK_ID:
                raise SocketIOParseError("ack id too large")
            pos += length
        payload: Any = None
        if pos < end:
            try:
                payload, stop = _scan_json(text, pos)
            except StopIteration:
                # Leading whitespace (JSON.parse allows it), or invalid JSON.
                stop = end
                try:
                    payload = _loads(text[pos:])
                except (ValueError, RecursionError, TypeError):
                    raise SocketIOParseError("invalid JSON payload") from None
            except ValueError:
                # Invalid JSON, or an integer too long for int(): scanned again, reading such
                # an integer as JSON.parse does.
                try:
                    payload, stop = _scan_js(text, pos)
                except (StopIteration, ValueError, RecursionError, TypeError):
                    raise SocketIOParseError("invalid JSON payload") from None
            except (RecursionError, TypeError):
                raise SocketIOParseError("invalid JSON payload") from None
            if stop != end and text[stop:].strip(_JSON_WHITESPACE):
                raise SocketIOParseError("data after the JSON payload")
            if payload is None:
                # Node: null is no valid payload, not the absence of one.
                raise SocketIOParseError("a null payload")
        if self._v4 and ptype is CONNECT:
            query = nsp.find("?")
            if query >= 0:
                # SIO v4: the client's query rides in the namespace of CONNECT.
                if payload is not None:
                    raise SocketIOParseError("a v4 CONNECT with a query has no payload")
                payload = dict(
                    urllib.parse.parse_qsl(
                        nsp[query + 1 :], keep_blank_values=True, errors="replace"
                    )
                )
                nsp = nsp[:query]
        if count:
            error = _data_error(ptype, payload)
            if error is not None:
                raise SocketIOParseError(error)
            # The data is a list: the walk checks its depth and finds its placeholders.
            slots = _walk(payload, self._max_depth, count)
            self._partial = _Partial(ptype, nsp, payload, ack_id, count, slots)
            return None
        if (
            end - pos >= self._short
            and payload.__class__ in (list, dict)
            and text.count("[", pos) + text.count("{", pos) > self._max_depth
        ):
            # Rare: long and with many containers.  The text tells, unless strings hold
            # brackets or escapes; then the walk does.
            shallow = _text_depth_ok(text[pos:], self._max_depth)
            if shallow is None:
                _walk(payload, self._max_depth, 0)
            elif not shallow:
                raise SocketIOParseError(f"JSON nested deeper than {self._max_depth}")
        # What Packet would check, and the decoder has not yet: the payload's shape, and that
        # only an event or an ack carries an id (the namespace and the id were read so).
        if ack_id is not None and ptype not in _BINARY_TYPE:
            raise SocketIOParseError(f"{ptype.name} takes no ack id")
        error = _data_error(ptype, payload)
        if error is not None:
            raise SocketIOParseError(error)
        return trusted_packet(ptype, nsp, payload, ack_id)
