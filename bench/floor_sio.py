"""Just enough Engine.IO v4 / Socket.IO v5 for the benchmark's bare floor servers.

``floor_ws.py`` (bare Twisted + Autobahn) and ``floor_polling.py`` (bare twisted.web) import
this: the open packet, the CONNECT answer and the reading of an event with an ack id.  No
validation, no namespaces, no heartbeat: the floors measure what Twisted itself costs under
the load generator's frames, not a Socket.IO server.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

NEWS = {"text": "hello world, this is a broadcast message", "n": 42}
NEWS_PACKET = b"42" + json.dumps(["news", NEWS], separators=(",", ":")).encode()


def new_sid() -> bytes:
    """A fresh session id."""
    return secrets.token_urlsafe(15).encode()


def open_packet(sid: bytes, upgrades: str = "[]") -> bytes:
    """The Engine.IO open packet for ``sid``."""
    return (b'0{"sid":"' + sid + b'","upgrades":' + upgrades.encode()
            + b',"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}')


def connect_packet(sid: bytes) -> bytes:
    """The answer to the main namespace's CONNECT ("40")."""
    return b'40{"sid":"' + sid + b'"}'


def read_event(packet: bytes) -> tuple[bytes, list[Any]]:
    """The ack id (possibly empty) and the arguments of an EVENT packet ``42<id>[...]``."""
    start = packet.index(b"[")
    return packet[2:start], json.loads(packet[start:])


def ack_packet(ack_id: bytes, args: list[Any]) -> bytes:
    """The ACK packet ``43<id>[...]`` answering ``ack_id`` with ``args``."""
    return b"43" + ack_id + json.dumps(args, separators=(",", ":")).encode()
