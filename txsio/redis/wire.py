"""The encodings of Node's Redis packages: notepack.io's msgpack, ``JSON.stringify`` text, and
the classic format's request types (pure: no I/O).

Who calls what: the classic and sharded formats (:mod:`txsio.redis.classic`,
:mod:`txsio.redis.sharded`) and the emitter encode with :func:`pack` and :func:`dumps` and
decode with :func:`decode_message` (JSON when the message starts with ``{``, else msgpack:
msgpack maps and arrays never start with that byte).

Dates: notepack.io sends a ``Date`` as a msgpack timestamp; a Node node's clients would see
it as ``Date.toJSON``'s text, so it is decoded as that text.
"""

from __future__ import annotations

import enum
import json
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from typing import Any, cast

import msgpack

from .._jsjson import BINARY_TYPES, not_json, stringify

__all__ = [
    "RequestType",
    "broadcast_channel",
    "decode_message",
    "dumps",
    "glob_escape",
    "new_uid",
    "pack",
    "shape_problem",
    "to_well_formed",
    "unpack",
]


class RequestType(enum.IntEnum):
    """Request and response types of the classic adapter (and of the emitter)."""

    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


_UID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def new_uid() -> str:
    """A random 6-character id, like Node's ``uid2(6)`` (adapter uids and request ids)."""
    return "".join(secrets.choice(_UID_CHARS) for _ in range(6))


# ---- msgpack ------------------------------------------------------------------------------

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _js_date(ms: float) -> str | None:
    # Date.prototype.toJSON: what a Node node's client would see for a Date.
    try:
        when = _EPOCH + timedelta(milliseconds=ms)
    except (OverflowError, ValueError):
        return None
    return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:"
            f"{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}Z")


def _ext_hook(code: int, data: bytes) -> Any:
    # notepack.io's extension types other than the timestamp (-1, which msgpack decodes).
    if code == 0:
        if len(data) == 1:
            return None  # notepack's legacy "undefined"
        if len(data) == 8:
            return _js_date(int.from_bytes(data[:4], "big", signed=True) * 2 ** 32
                            + int.from_bytes(data[4:], "big"))  # legacy Date
        return bytes(data)  # legacy ArrayBuffer
    return [code, bytes(data)]  # notepack.io decodes other types as [type, buffer]


# Timestamp headers: fixext 4 / fixext 8 / ext 8 (length 12), type -1.
_TIMESTAMP_MARKS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


def unpack(data: bytes) -> Any:
    """Decode notepack.io's msgpack: ``bin`` as ``bytes``, dates (timestamps) as the ISO text
    ``Date.toJSON`` gives, ``undefined`` as ``None``."""
    value = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)
    if any(mark in data for mark in _TIMESTAMP_MARKS):
        value = _replace_timestamps(value)
    return value


def _replace_timestamps(value: Any) -> Any:
    def convert(item: Any) -> Any:
        if isinstance(item, msgpack.Timestamp):
            return _js_date(item.seconds * 1000 + item.nanoseconds // 1_000_000)
        return item

    if not isinstance(value, (list, dict)):
        return convert(value)
    stack: list[Any] = [value]
    while stack:
        container = stack.pop()
        keys = container.keys() if isinstance(container, dict) else range(len(container))
        for key in keys:
            item = container[key]
            if isinstance(item, (list, dict)):
                stack.append(item)
            elif isinstance(item, msgpack.Timestamp):
                container[key] = convert(item)
    return value


def pack(value: Any) -> bytes:
    """Encode as notepack.io does: ``bytes`` as ``bin``, ``str`` as ``str``, tuples as arrays.

    :raises TypeError, ValueError, OverflowError: for what msgpack cannot carry (a lone
        surrogate in a string, an integer from ``2**64``, nesting too deep).
    """
    return cast(bytes, msgpack.packb(value, use_bin_type=True, datetime=False))


# ---- JSON ---------------------------------------------------------------------------------


def _json_default(value: Any) -> Any:
    # What JSON.stringify makes of the values a Node peer would have in their place.
    if isinstance(value, BINARY_TYPES):
        return {"type": "Buffer", "data": list(bytes(value))}
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return _js_date((aware - _EPOCH) / timedelta(milliseconds=1))
    if isinstance(value, (set, frozenset)):
        return {}  # JSON.stringify(new Set([1])) is {}
    raise not_json(value)


def _lenient_default(value: Any) -> Any:
    try:
        return _json_default(value)
    except TypeError:
        return None


def dumps(value: Any, *, lenient: bool = False) -> bytes:
    """JSON text as Node's ``JSON.stringify`` writes it (compact, UTF-8, NaN as ``null``,
    lone surrogates escaped, ``bytes`` as ``{"type":"Buffer","data":[..]}``).

    :param lenient: write ``null`` for values JSON cannot carry instead of raising (for the
        answers this node owes its peers).
    :raises TypeError: for a value JSON cannot carry (unless ``lenient``).
    :raises ValueError: for a reference cycle or nesting too deep.
    """
    return stringify(value, _lenient_default if lenient else _json_default).encode("utf-8")


def decode_message(data: bytes) -> Any:
    """A request or response body: JSON when it starts with ``{``, else msgpack.

    :raises ValueError: when it is neither (or nests deeper than the decoder can go).
    """
    if data[:1] == b"{":
        try:
            return json.loads(data)
        except RecursionError:  # json's C scanner recurses: a peer's "[[[[..." gets here
            raise ValueError("JSON nested deeper than Python's recursion limit") from None
    try:
        return unpack(data)
    except Exception as e:
        raise ValueError(f"not msgpack: {e}") from None


def shape_problem(value: Any, *, max_depth: int, max_items: int) -> str | None:
    """Why a decoded message breaks its bounds, or ``None``: ``"too deep"`` when containers
    nest deeper than ``max_depth`` (``value`` itself is 1 deep), ``"too many items"`` when it
    holds more than ``max_items`` binary values (msgpack ``bin``, and extension types, which
    decode as ``[type, bytes]``).  Iterative, one step per item; stops at the first problem.
    """
    if not isinstance(value, (list, dict)):
        return None
    binaries = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        for item in node.values() if isinstance(node, dict) else node:
            if isinstance(item, (list, dict)):
                if depth >= max_depth:
                    return "too deep"
                stack.append((item, depth + 1))
            elif isinstance(item, bytes):
                binaries += 1
                if binaries > max_items:
                    return "too many items"
    return None


# ---- channels -----------------------------------------------------------------------------


def broadcast_channel(prefix: str, rooms: Iterable[str]) -> str:
    """The channel of a broadcast: ``P#NSP#<room>#`` for exactly one room, else ``P#NSP#``.

    :param prefix: ``P#NSP#``.
    """
    rooms = list(rooms)
    return f"{prefix}{rooms[0]}#" if len(rooms) == 1 else prefix


def to_well_formed(text: str) -> str:
    """``text`` with each lone surrogate replaced by U+FFFD, as JavaScript's
    ``String.prototype.toWellFormed`` does and as Node's Redis clients encode a channel name
    (a surrogate pair split over two code points is joined, as in a JS string)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
    return text


def glob_escape(text: str) -> str:
    """``text`` matched literally in a ``PSUBSCRIBE`` pattern."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
