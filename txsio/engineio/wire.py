"""How each Engine.IO revision puts packets on the wire: one :class:`WireFormat` per revision.

Pure (stdlib only).  The server picks :data:`V4` or :data:`V3` when a session opens
(:func:`wire_format`), from the request's ``EIO`` parameter, and hands that one object to the
session and its transports; they ask it instead of testing the revision themselves.

What differs between the revisions, and nothing else, lives here:

- WebSocket frames: a binary message is the frame's raw bytes (v4) or ``0x04`` and the bytes
  (v3) — :attr:`WireFormat.binary_prefix`, :meth:`WireFormat.decode_binary_frame`.  Text frames
  are ``<type digit><data>`` in both, so a ``"4…"`` text frame is a message in either.
- Polling bodies: v4 joins text records with ``\\x1e`` (binary as ``b<base64>``); v3 prefixes
  lengths, has a binary form for XHR2 clients, and wraps JSONP — :meth:`WireFormat.decode_poll`,
  :meth:`WireFormat.encode_poll`.
- The heartbeat's direction: the v4 server pings; a v3 client does
  (:attr:`WireFormat.server_pings`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from typing import NamedTuple

from . import packet as codec
from .packet import EngineIOParseError, Packet, PacketType

__all__ = ["V3", "V4", "PollBody", "WireFormat", "open_payload", "wire_format"]

_NOOP = Packet(PacketType.NOOP)
_RS = "\x1e"
_TEXT = b"text/plain; charset=UTF-8"


class PollBody(NamedTuple):
    """A polling response body and its content type."""

    #: the body
    body: bytes
    #: the ``Content-Type``
    content_type: bytes
    #: how many messages were left out because polling cannot carry them
    dropped: int


class WireFormat:
    """The wire format of one Engine.IO revision (use :data:`V4` or :data:`V3`).

    :ivar revision: the revision, ``4`` or ``3`` (the ``EIO`` query parameter).
    :ivar server_pings: whether the server sends the pings (v4) or answers the client's (v3).
    :ivar binary_polling: whether a polling POST may carry a binary
        (``application/octet-stream``) body.
    :ivar binary_prefix: what precedes a binary message's bytes in its WebSocket frame.
    """

    def __init__(self, revision: int, *, server_pings: bool, binary_polling: bool,
                 binary_prefix: bytes) -> None:
        self.revision = revision
        self.server_pings = server_pings
        self.binary_polling = binary_polling
        self.binary_prefix = binary_prefix

    def __repr__(self) -> str:
        return f"<WireFormat EIO={self.revision}>"

    def encode_frame(self, packet: Packet) -> str | bytes:
        """The payload of the WebSocket frame of ``packet``: ``str`` text, ``bytes`` binary."""
        raise NotImplementedError

    def decode_frame(self, data: str | bytes) -> Packet:
        """The packet of a WebSocket frame's payload.

        :raises EngineIOParseError: the frame is no packet.
        """
        raise NotImplementedError

    def decode_binary_frame(self, payload: bytes) -> bytes:
        """The message a binary WebSocket frame carries.

        :raises EngineIOParseError: the frame is no binary message.
        """
        raise NotImplementedError

    def decode_poll(self, body: bytes, *, binary: bool, jsonp: bool,
                    max_packets: int) -> list[Packet]:
        """The packets of a polling POST body.

        :param body: the body.
        :param binary: whether it was sent as ``application/octet-stream`` (only where
            :attr:`binary_polling`).
        :param jsonp: whether the request is a JSONP one (a ``j`` query parameter).
        :param max_packets: the most packets accepted.
        :raises EngineIOParseError: the body does not parse.
        """
        raise NotImplementedError

    def encode_poll(self, packets: Sequence[Packet], *, jsonp: str | None,
                    b64: bool) -> PollBody:
        """The body answering a polling GET with ``packets``.

        :param packets: the packets, at least one.
        :param jsonp: the JSONP callback index (the ``j`` query parameter), if any.
        :param b64: whether the client asked for base64 instead of binary (``b64``).
        """
        raise NotImplementedError


class _V4(WireFormat):
    encode_frame = staticmethod(codec.encode_packet)
    decode_frame = staticmethod(codec.decode_packet)

    def decode_binary_frame(self, payload: bytes) -> bytes:
        return payload  # the frame is the message

    def decode_poll(self, body: bytes, *, binary: bool, jsonp: bool,
                    max_packets: int) -> list[Packet]:
        return codec.decode_payload(_utf8(body), max_packets=max_packets)

    def encode_poll(self, packets: Sequence[Packet], *, jsonp: str | None,
                    b64: bool) -> PollBody:
        kept = [p for p in packets if not (isinstance(p.data, str) and _RS in p.data)]
        # A v4 payload is split on the record separator: a message holding one cannot travel
        # over polling intact (it would forge packets), so it is left out.
        dropped = len(packets) - len(kept)
        body = codec.encode_payload(kept if kept else [_NOOP]).encode("utf-8")
        return PollBody(body, _TEXT, dropped)


class _V3(WireFormat):
    encode_frame = staticmethod(codec.encode_packet_v3)
    decode_frame = staticmethod(codec.decode_packet_v3)

    def decode_binary_frame(self, payload: bytes) -> bytes:
        data = codec.decode_packet_v3(payload).data
        assert isinstance(data, bytes)  # a binary v3 frame can only be a binary message
        return data

    def decode_poll(self, body: bytes, *, binary: bool, jsonp: bool,
                    max_packets: int) -> list[Packet]:
        if binary:
            return codec.decode_payload_v3(body, max_packets=max_packets)
        text = codec.decode_jsonp_body(body) if jsonp else _utf8(body)
        return codec.decode_payload_v3(text, max_packets=max_packets)

    def encode_poll(self, packets: Sequence[Packet], *, jsonp: str | None,
                    b64: bool) -> PollBody:
        payload = codec.encode_payload_v3(packets, supports_binary=jsonp is None and not b64)
        if isinstance(payload, bytes):
            return PollBody(payload, b"application/octet-stream", 0)
        if jsonp is not None:
            return PollBody(codec.encode_jsonp_payload(payload, jsonp).encode("utf-8"),
                            b"text/javascript; charset=UTF-8", 0)
        return PollBody(payload.encode("utf-8"), _TEXT, 0)


#: Engine.IO v4 (engine.io-client 4+, socket.io-client 3+)
V4: WireFormat = _V4(4, server_pings=True, binary_polling=False, binary_prefix=b"")
#: Engine.IO v3 (socket.io-client 2.x)
V3: WireFormat = _V3(3, server_pings=False, binary_polling=True, binary_prefix=b"\x04")


def wire_format(revision: int) -> WireFormat:
    """The wire format of the Engine.IO ``revision`` (3 or 4).

    :raises ValueError: for another revision.
    """
    if revision == 4:
        return V4
    if revision == 3:
        return V3
    raise ValueError(f"no Engine.IO revision {revision!r}")


def open_payload(sid: str, upgrades: list[str], ping_interval: float, ping_timeout: float,
                 max_payload: int) -> str:
    """The JSON of the open packet (the same in both revisions), timings in milliseconds."""
    # Only the sid differs from one session of a server to the next: the rest is written once.
    return '{"sid":' + json.dumps(sid) + _open_rest(tuple(upgrades), ping_interval,
                                                    ping_timeout, max_payload)


@functools.lru_cache(maxsize=32)
def _open_rest(upgrades: tuple[str, ...], ping_interval: float, ping_timeout: float,
               max_payload: int) -> str:
    """What follows the sid in :func:`open_payload`'s JSON."""
    return "," + json.dumps({
        "upgrades": list(upgrades),
        "pingInterval": round(ping_interval * 1000),
        "pingTimeout": round(ping_timeout * 1000),
        "maxPayload": max_payload,
    }, separators=(",", ":"))[1:]


def _utf8(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise EngineIOParseError(f"POST body is not UTF-8: {e}") from None
