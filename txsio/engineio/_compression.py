"""Compression of what the server sends: polling responses (gzip / deflate) and WebSocket
messages (permessage-deflate), with Node's defaults and thresholds.

Pure but for Autobahn's offer types (imported when an offer is answered).  Called by:

- :class:`~txsio.engineio.EngineServer`, once, to read its ``http_compression`` and
  ``per_message_deflate`` options (:func:`http_compression_options`,
  :func:`deflate_options`);
- the polling transport, for every response body it writes (:func:`compress_poll`);
- the WebSocket factory, for every connection's offers (:func:`accept_deflate`), and the
  WebSocket protocol, for every message it writes (:meth:`DeflateOptions.compresses`).

Per-message choice: a message the application sent with ``compress(False)`` carries
:class:`Uncompressed` text or :class:`UncompressedBytes` (the same value, marked), so the
flag travels with the payload through the session's queue to the transport unchanged.  As
Node's engine.io: a polling response is compressed unless every packet in it was marked,
and a WebSocket message below the threshold or marked is sent as is.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .._settings import feature_settings

if TYPE_CHECKING:
    from twisted.web.server import Request

    from .packet import Packet
    from .session import EngineSession

__all__ = [
    "DeflateOptions",
    "HttpCompression",
    "Uncompressed",
    "UncompressedBytes",
    "accept_deflate",
    "compress_poll",
    "deflate_options",
    "http_compression_options",
    "negotiate_encoding",
]


class Uncompressed(str):
    """Text the application asked not to compress (``socket.compress(False)``)."""

    __slots__ = ()


class UncompressedBytes(bytes):
    """Binary data the application asked not to compress."""

    __slots__ = ()


def uncompressed(data: str | bytes) -> str | bytes:
    """``data`` marked as not to be compressed."""
    return Uncompressed(data) if isinstance(data, str) else UncompressedBytes(data)


def marked_uncompressed(data: object) -> bool:
    """Whether ``data`` (a message's payload) was marked by :func:`uncompressed`."""
    return isinstance(data, (Uncompressed, UncompressedBytes))


@dataclass(frozen=True)
class HttpCompression:
    """How polling responses are compressed (Node's ``httpCompression``).

    :ivar threshold: the smallest body, in bytes, that is compressed (Node: 1024).
    :ivar level: the zlib level, 0-9, or -1 for zlib's default (as Node's ``level``).
    """

    threshold: int = 1024
    level: int = zlib.Z_DEFAULT_COMPRESSION

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("http_compression threshold must not be negative")
        if not -1 <= self.level <= 9:
            raise ValueError("http_compression level must be -1 to 9")


@dataclass(frozen=True)
class DeflateOptions:
    """How WebSocket messages are compressed (Node's ``perMessageDeflate``, the ``ws``
    package's options).

    :ivar threshold: the smallest message payload, in bytes, that is compressed (Node: 1024),
        when the server's compressor keeps no context between messages
        (``server_no_context_takeover``); otherwise every message is compressed, as Node's
        ``ws`` does (with the context of the messages before it, even a small one shrinks).
    :ivar server_no_context_takeover: reset the server's compressor after each message (less
        memory per connection, less compression; the threshold applies).
    :ivar client_no_context_takeover: ask the client to reset its own compressor after each
        message (the server's decompressor then keeps no window between messages).
    :ivar mem_level: zlib's ``memLevel`` for the server's compressor, 1-9 (zlib's default: 8).
    """

    threshold: int = 1024
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    mem_level: int = 8

    def __post_init__(self) -> None:
        if self.threshold < 0:
            raise ValueError("per_message_deflate threshold must not be negative")
        if not 1 <= self.mem_level <= 9:
            raise ValueError("per_message_deflate mem_level must be 1 to 9")

    def for_connection(self, server_no_context_takeover: bool) -> DeflateOptions:
        """The options for a connection that negotiated (or not) ``server_no_context_takeover``:
        without it, a threshold of 0 (every message compressed, as ``ws``)."""
        if server_no_context_takeover or not self.threshold:
            return self
        return replace(self, threshold=0)

    def compresses(self, payload: bytes | str, length: int) -> bool:
        """Whether a message of ``length`` bytes whose payload is ``payload`` is compressed."""
        return length >= self.threshold and not marked_uncompressed(payload)


def http_compression_options(value: bool | Mapping[str, Any] | HttpCompression | None,
                             ) -> HttpCompression | None:
    """The :class:`HttpCompression` of the ``http_compression`` option (``None``: off).

    ``True`` (the default) means Node's defaults; a mapping sets fields of
    :class:`HttpCompression`.
    """
    return feature_settings(HttpCompression, value)


def deflate_options(value: bool | Mapping[str, Any] | DeflateOptions | None,
                    ) -> DeflateOptions | None:
    """The :class:`DeflateOptions` of the ``per_message_deflate`` option (``None``: off, the
    default as in Node)."""
    return feature_settings(DeflateOptions, value)


# -- polling ----------------------------------------------------------------------------------

_ENCODINGS = ("gzip", "deflate")


def negotiate_encoding(accept_encoding: str | None) -> str | None:
    """The content coding, ``"gzip"`` or ``"deflate"``, an ``Accept-Encoding`` header asks
    for, or ``None`` for neither.

    As Node's ``accepts`` (RFC 9110 section 12.5.3): the highest ``q`` wins, an exact name
    before ``*``, then the header's order, then gzip before deflate; ``q=0`` refuses.
    """
    if not accept_encoding:
        return None
    best: tuple[float, int, int, int] | None = None
    chosen: str | None = None
    entries = _accept_entries(accept_encoding)
    for rank, encoding in enumerate(_ENCODINGS):
        match: tuple[float, int, int] | None = None  # (q, specificity, -position)
        for position, (name, q) in enumerate(entries):
            if name == encoding:
                candidate = (q, 1, -position)
            elif name == "*":
                candidate = (q, 0, -position)
            else:
                continue
            if match is None or candidate[1:] > match[1:]:
                match = candidate
        if match is None or match[0] <= 0:
            continue
        key = (match[0], match[1], match[2], -rank)
        if best is None or key > best:
            best, chosen = key, encoding
    return chosen


def _accept_entries(header: str) -> list[tuple[str, float]]:
    entries: list[tuple[str, float]] = []
    for item in header.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
        entries.append((name, q))
    return entries


def compress_body(body: bytes, encoding: str, level: int) -> bytes:
    """``body`` compressed as ``encoding``: gzip, or deflate in its zlib wrapper (what HTTP
    calls ``deflate``, and Node's ``zlib.createDeflate`` writes)."""
    wbits = 31 if encoding == "gzip" else 15
    compressor = zlib.compressobj(level, zlib.DEFLATED, wbits)
    return compressor.compress(body) + compressor.flush()


def compress_poll(request: Request, body: bytes, session: EngineSession | None,
                  packets: Iterable[Packet]) -> bytes:
    """The body of a polling response to ``request`` carrying ``packets``: compressed (its
    ``Content-Encoding`` set) when the options, the size, the client's ``Accept-Encoding``
    and the packets allow it, as is otherwise.

    :param request: the GET being answered.
    :param body: the encoded payload.
    :param session: the session answered (its options' ``http_compression`` applies).
    :param packets: the packets in the body: when every one was sent with
        ``compress(False)``, the body is not compressed (Node: compressed when any packet
        asks for it).
    """
    options = None if session is None else session.options.http_compression
    if options is None or len(body) < options.threshold:
        return body
    if all(marked_uncompressed(p.data) for p in packets):
        return body
    header = request.getHeader(b"accept-encoding")
    encoding = negotiate_encoding(header.decode("latin-1") if header is not None else None)
    if encoding is None:
        return body
    request.setHeader(b"content-encoding", encoding.encode("ascii"))
    return compress_body(body, encoding, options.level)


# -- WebSocket --------------------------------------------------------------------------------


def accept_deflate(offers: list[Any], options: DeflateOptions, max_message_size: int) -> Any:
    """Autobahn's answer to a client's permessage-deflate offers: accept the first one this
    server can honour, or ``None`` (the connection then goes uncompressed).

    The accepted extension inflates at most ``max_message_size`` bytes per message (Autobahn
    stops inflating there, and the connection is failed with 1009), so a small compressed
    frame cannot become a large message: the same bound as for an uncompressed one.
    """
    from autobahn.websocket.compress import PerMessageDeflateOffer, PerMessageDeflateOfferAccept

    for offer in offers:
        if not isinstance(offer, PerMessageDeflateOffer):
            continue
        return PerMessageDeflateOfferAccept(
            offer,
            request_no_context_takeover=options.client_no_context_takeover,
            no_context_takeover=True if options.server_no_context_takeover else None,
            mem_level=options.mem_level,
            max_message_size=max_message_size,
        )
    return None
