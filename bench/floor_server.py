"""The bare twisted.web floor for the polling and connect benchmarks.

Usage: python bench/floor_server.py <port>

No txsio: one twisted.web ``Resource`` that does only what the protocol needs for the load of
``load_polling.mjs`` and ``load_connect.mjs``: a session table lookup and JSON for a polling
request (handshake, CONNECT, an event answered with its ack, a held GET), and an Autobahn
WebSocket that sends the open packet and answers CONNECT.  What txsio does beyond this is its
own cost; this is what twisted.web and Autobahn cost.
"""

from __future__ import annotations

import base64
import json
import os
import sys
from typing import Any

from autobahn.twisted.resource import WebSocketResource
from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

OPEN = {"upgrades": [], "pingInterval": 25000, "pingTimeout": 20000, "maxPayload": 1000000}


def new_sid() -> str:
    return base64.urlsafe_b64encode(os.urandom(15)).decode("ascii")


def answer(packet: str, sid: str) -> str | None:
    """The answer to one Socket.IO packet (CONNECT, or an event with an ack id)."""
    if packet.startswith("40"):
        return "40" + json.dumps({"sid": new_sid()}, separators=(",", ":"))
    if packet.startswith("42"):
        i = 2
        while packet[i].isdigit():
            i += 1
        data = json.loads(packet[i:])
        return "43" + packet[2:i] + json.dumps(data[1:], separators=(",", ":"))
    return None


class Floor(Resource):
    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.queues: dict[str, list[str]] = {}
        self.held: dict[str, Request] = {}
        factory = WebSocketServerFactory()
        factory.protocol = FloorWebSocket
        self.ws = WebSocketResource(factory)

    def render_GET(self, request: Request) -> Any:
        if request.getHeader(b"upgrade"):
            return self.ws.render(request)
        sid = request.args.get(b"sid")
        if sid is None:
            new = new_sid()
            self.queues[new] = []
            return b"0" + json.dumps({"sid": new, **OPEN}, separators=(",", ":")).encode()
        key = sid[0].decode()
        queue = self.queues[key]
        if queue:
            body = "\x1e".join(queue).encode()
            queue.clear()
            return body
        self.held[key] = request
        return NOT_DONE_YET

    def render_POST(self, request: Request) -> bytes:
        key = request.args[b"sid"][0].decode()
        queue = self.queues[key]
        assert request.content is not None
        for packet in request.content.read().decode().split("\x1e"):
            reply = answer(packet, key)
            if reply is not None:
                queue.append(reply)
        held = self.held.pop(key, None)
        if held is not None and queue:
            held.write("\x1e".join(queue).encode())
            queue.clear()
            held.finish()
        return b"ok"


class FloorWebSocket(WebSocketServerProtocol):
    def onOpen(self) -> None:
        self.sid = new_sid()
        self.sendMessage(b"0" + json.dumps({"sid": self.sid, **OPEN},
                                           separators=(",", ":")).encode())

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        reply = answer(payload.decode(), self.sid)
        if reply is not None:
            self.sendMessage(reply.encode())


def floor_site(reactor: Any = None) -> Site:
    """The floor at /socket.io/ in a default twisted.web ``Site``."""
    root = Resource()
    root.putChild(b"socket.io", Floor())
    site = Site(root, reactor=reactor)
    site.noisy = False
    return site


if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), floor_site(),  # type: ignore[attr-defined]
                      interface="127.0.0.1")
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]
