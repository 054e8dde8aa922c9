"""JSON as JavaScript's ``JSON.stringify`` writes it, its integers as ``JSON.parse`` reads
them where Python cannot, and the one ``has_binary`` (pure, stdlib only).

Who calls what: :mod:`txsio.protocol` encodes Socket.IO payloads with :func:`stringify` (and
:func:`stringify_with_attachments` when they hold binary); :mod:`txsio.redis.wire` encodes the
cluster's JSON messages with :func:`stringify` and a ``default`` of its own (a Node peer sees a
``Buffer`` as ``{"type":"Buffer","data":[..]}``); both ask :func:`has_binary`.

Theory of operation
-------------------
Python's C encoder does the work, set up as Node writes JSON: compact, non-ASCII characters as
they are.  Three places differ from ``json.dumps`` and are mended here, for every caller alike:

- NaN and the infinities: ``JSON.stringify`` writes ``null``; Python would write invalid JSON,
  so it is told to refuse them (``allow_nan=False``) and, on that ``ValueError``, the value is
  encoded again from a copy with them replaced by ``None`` (:func:`_finite_copy`: iterative,
  and a container met twice is copied once, so a reference cycle stays a cycle and is refused
  again, as a ``ValueError``).
- Lone surrogates: ``JSON.stringify`` (ES2019) escapes them as ``\\udxxx``; Python leaves them
  raw, and raw they cannot even be encoded as UTF-8.  They can only occur inside strings, so
  the text is searched for them (only when it is not ASCII) and they are escaped.
- Nesting: the C encoder recurses; Python's ``RecursionError`` becomes ``ValueError``.

:func:`has_binary` walks containers iteratively with a depth bound, so a reference cycle raises
``ValueError`` instead of walking forever.

Reading: :mod:`txsio.protocol` decodes with Python's C scanner, which turns an integer literal
into an ``int``, and ``int()`` refuses a literal longer than Python's limit on int-string
conversion (4,300 digits by default: past it the conversion takes quadratic time).
``JSON.parse`` reads every number as a double, so such a literal is an infinity in Node, never
an error.  :func:`js_int` is the ``parse_int`` that reads it so (the decoder uses it only when
the fast scan failed): an ``int`` where Python can, the ``float`` ``JSON.parse`` gives past the
limit (infinite once it overflows, which :func:`stringify` writes as ``null``, as Node does).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from json.encoder import c_make_encoder as _c_make_encoder  # type: ignore[attr-defined]
from json.encoder import encode_basestring
from typing import Any

__all__ = [
    "BINARY_TYPES",
    "DEFAULT_MAX_DEPTH",
    "BinaryFound",
    "has_binary",
    "js_int",
    "not_json",
    "stringify",
    "stringify_with_attachments",
]

#: The values that travel as binary: Socket.IO attachments, msgpack ``bin``, Node Buffers.
BINARY_TYPES = (bytes, bytearray, memoryview)

#: Default bound on the nesting of a JSON payload, counted in containers: ``["a"]`` is 1 deep,
#: ``["a",{"b":[]}]`` 3 deep.  Application data is rarely a tenth as deep; it keeps any code
#: that recurses over decoded data (``json.dumps`` on an echo, user handlers) far from
#: Python's recursion limit.
DEFAULT_MAX_DEPTH: int = 64


class BinaryFound(TypeError):
    """:func:`stringify` without a ``default`` met a binary value (JSON has no form for it)."""


def not_json(value: object) -> TypeError:
    """The error for a value JSON cannot carry."""
    return TypeError(f"{value!r:.60} cannot be sent as JSON: a {type(value).__name__!r} "
                     "is none of dict, list, tuple, str, int, float, bool, None or bytes")


def _refuse(value: object) -> object:
    if isinstance(value, BINARY_TYPES):
        raise BinaryFound("binary data cannot be sent as JSON")
    raise not_json(value)


_OPTIONS: dict[str, Any] = {
    "separators": (",", ":"),
    "ensure_ascii": False,
    "allow_nan": False,
}
# The common case: a text payload without binary.
_encode_refusing = json.JSONEncoder(**_OPTIONS, default=_refuse).encode


def _encode_plain(value: Any) -> str:
    # What _encode_refusing returns, without its two Python frames around the C encoder
    # (built per call, as JSONEncoder builds it: its markers, which find reference cycles,
    # must start empty).
    if _c_make_encoder is None:
        return _encode_refusing(value)
    return "".join(_c_make_encoder({}, _refuse, encode_basestring, None, ":", ",",
                                   False, False, False)(value, 0))


_SURROGATE = re.compile("[\ud800-\udfff]")


def _escape_surrogate(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def stringify(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``value`` as the text ``JSON.stringify`` gives: compact, non-ASCII as is, NaN and the
    infinities as ``null``, lone surrogates escaped.

    :param value: the value: dicts with ``str`` keys, lists, tuples, strings, numbers, ``None``.
    :param default: called with each value JSON has no form for; returns what to write instead,
        or raises ``TypeError``.  Without it such a value raises ``TypeError``
        (:class:`BinaryFound` for a binary one).
    :raises TypeError: for a value JSON cannot carry.
    :raises ValueError: for a reference cycle, or nesting too deep for Python's recursion
        limit.
    """
    if default is None:
        return _stringify(value, _encode_plain)
    return _stringify(value, json.JSONEncoder(**_OPTIONS, default=default).encode)


def stringify_with_attachments(value: Any) -> tuple[str, list[bytes]]:
    """``value`` as :func:`stringify` writes it, each binary value replaced by the Socket.IO
    placeholder ``{"_placeholder":true,"num":<i>}``, in JSON order (list order, dict insertion
    order, as Node's ``deconstructPacket`` walks).

    :returns: the text and the binary values, in the order of their numbers.
    :raises TypeError: for a value JSON cannot carry (binary excepted).
    :raises ValueError: as :func:`stringify`.
    """
    attachments: list[bytes] = []

    def placeholder(item: object) -> object:
        if isinstance(item, BINARY_TYPES):
            attachments.append(bytes(item))
            return {"_placeholder": True, "num": len(attachments) - 1}
        raise not_json(item)

    encode = json.JSONEncoder(**_OPTIONS, default=placeholder).encode
    # A second pass (NaN) starts over.
    return _stringify(value, encode, attachments.clear), attachments


def _stringify(value: Any, encode: Callable[[Any], str],
               before_retry: Callable[[], None] | None = None) -> str:
    try:
        try:
            text = encode(value)
        except ValueError:
            # NaN or an infinity, which JSON.stringify writes as null; for a reference cycle
            # this raises the same error again.
            if before_retry is not None:
                before_retry()
            text = encode(_finite_copy(value))
    except RecursionError:
        raise ValueError("data nested too deeply to encode") from None
    if not text.isascii() and _SURROGATE.search(text) is not None:
        text = _SURROGATE.sub(_escape_surrogate, text)
    return text


def _finite_copy(data: Any) -> Any:
    # A copy of the containers in data, NaN and the infinities replaced by None.  Iterative;
    # a container met twice is copied once, so shared parts stay shared and a cycle stays a
    # cycle (which the encoder then refuses).
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if not isinstance(data, (list, tuple, dict)):
        return data
    copies: dict[int, Any] = {}
    root: Any = {} if isinstance(data, dict) else []
    copies[id(data)] = root
    stack: list[tuple[Any, Any]] = [(data, root)]
    while stack:
        source, target = stack.pop()
        items = source.items() if isinstance(source, dict) else enumerate(source)
        for key, value in items:
            if isinstance(value, (list, tuple, dict)):
                copy = copies.get(id(value))
                if copy is None:
                    copy = copies[id(value)] = {} if isinstance(value, dict) else []
                    stack.append((value, copy))
                value = copy
            elif isinstance(value, float) and not math.isfinite(value):
                value = None
            if target.__class__ is list:
                target.append(value)
            else:
                target[key] = value
    return root


def js_int(digits: str) -> int | float:
    """An integer literal of JSON text: an ``int``, or past Python's limit on int-string
    conversion the ``float`` ``JSON.parse`` gives (an infinity once it overflows).

    :param digits: the literal, as the JSON scanner found it (``-?(0|[1-9][0-9]*)``).
    """
    try:
        return int(digits)
    except ValueError:
        # Only the length can fail a literal the scanner matched; float() has no such limit
        # and overflows to an infinity, as JavaScript's number does.
        return float(digits)


def has_binary(data: Any, *, max_depth: int = DEFAULT_MAX_DEPTH) -> bool:
    """Tell whether data holds a binary value, at any depth (Node's ``hasBinary``).

    Lists, tuples and dicts (their values) are searched iteratively.

    :param data: the data.
    :param max_depth: the most containers deep to search; ``data`` itself is depth 1.
    :returns: whether a ``bytes``, ``bytearray`` or ``memoryview`` is in ``data`` or is
        ``data``.
    :raises ValueError: if ``data`` nests containers deeper than ``max_depth`` (as a
        reference cycle does) before a binary value is found.
    """
    if isinstance(data, BINARY_TYPES):
        return True
    if not isinstance(data, (list, tuple, dict)):
        return False
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        for value in node.values() if isinstance(node, dict) else node:
            if isinstance(value, BINARY_TYPES):
                return True
            if isinstance(value, (list, tuple, dict)):
                if depth >= max_depth:
                    raise ValueError(f"data nested deeper than {max_depth}")
                stack.append((value, depth + 1))
    return False
