"""The bare Twisted + Autobahn floor for the benchmark's WebSocket scenarios.

Usage: python floor_ws.py <port>.  An Autobahn ``WebSocketServerProtocol`` on a plain
``listenTCP`` (no twisted.web, no Socket.IO layer) that answers the load generator's frames
the way the benchmark's app does: "echo" acked with its argument (a binary attachment echoed
as a binary ack), "join" into one room, "fanout" one prepared frame written to every member,
"burst" (n) n frames to every connection.  ``bench/run.py`` uses it as the "floor" server:
what Twisted and Autobahn cost before any Socket.IO work.
"""

from __future__ import annotations

import sys
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from floor_sio import NEWS_PACKET, ack_packet, connect_packet, new_sid, open_packet, read_event
from twisted.internet import reactor

ROOM: set[FloorProtocol] = set()
EVERYONE: set[FloorProtocol] = set()


class FloorProtocol(WebSocketServerProtocol):  # type: ignore[misc]
    """One connection: Engine.IO open, Socket.IO CONNECT, then events by name."""

    sid = b""
    #: the binary ack header waiting for its attachment (a "451-<id>[...]" event)
    binary_ack: bytes | None = None

    def onOpen(self) -> None:
        self.sid = new_sid()
        EVERYONE.add(self)
        self.sendMessage(open_packet(self.sid))

    def onClose(self, wasClean: bool, code: Any, reason: Any) -> None:
        EVERYONE.discard(self)
        ROOM.discard(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        if isBinary:
            if self.binary_ack is not None:
                self.sendMessage(self.binary_ack)
                self.sendMessage(payload, isBinary=True)
                self.binary_ack = None
            return
        kind = payload[:2]
        if kind == b"42":
            ack_id, args = read_event(payload)
            name = args[0]
            if name == "echo":
                self.sendMessage(ack_packet(ack_id, args[1:]))
            elif name == "join":
                ROOM.add(self)
                self.sendMessage(ack_packet(ack_id, [True]))
            elif name == "fanout":
                broadcast(ROOM, 1)
            elif name == "burst":
                broadcast(EVERYONE, int(args[1]))
        elif kind == b"45":
            # "451-<id>[...]": one attachment follows; the ack names it the same way.
            start = payload.index(b"[")
            ack_id = payload[payload.index(b"-") + 1:start]
            self.binary_ack = b"461-" + ack_id + b'[{"_placeholder":true,"num":0}]'
        elif payload == b"40":
            self.sendMessage(connect_packet(self.sid))


def broadcast(members: set[FloorProtocol], times: int) -> None:
    """Write one prepared "news" frame ``times`` to each of ``members``."""
    frame = FACTORY.prepareMessage(NEWS_PACKET)
    for _ in range(times):
        for member in members:
            member.sendPreparedMessage(frame)


FACTORY = WebSocketServerFactory()
FACTORY.protocol = FloorProtocol
FACTORY.setProtocolOptions(perMessageCompressionAccept=lambda offers: None)

if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), FACTORY, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]
