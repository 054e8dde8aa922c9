"""The bare twisted.web floor for the benchmark's long-polling scenario.

Usage: python floor_polling.py <port>.  One leaf ``Resource`` in a plain ``Site``: a GET
without ``sid`` opens a session; a POST reads its packets ("40" answered with the CONNECT,
"42<id>["echo", x]" with the ack); a GET returns what is queued, or waits for it.  Nothing
else: no validation, no heartbeat, no upgrade.  ``bench/run.py`` uses it as the "floor" server
for polling: a session lookup and JSON, and what twisted.web itself costs.
"""

from __future__ import annotations

import sys

from floor_sio import ack_packet, connect_packet, new_sid, open_packet, read_event
from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site


class Session:
    """What one polling client has queued, and its waiting GET."""

    __slots__ = ("queue", "sid", "waiting")

    def __init__(self, sid: bytes) -> None:
        self.sid = sid
        self.queue: list[bytes] = []
        self.waiting: Request | None = None

    def flush(self) -> None:
        """Answer the waiting GET with everything queued."""
        if self.waiting is not None and self.queue:
            request, self.waiting = self.waiting, None
            request.write(b"\x1e".join(self.queue))
            self.queue.clear()
            request.finish()


SESSIONS: dict[bytes, Session] = {}


class Polling(Resource):
    """The Engine.IO path: handshake, POST of packets, GET of what is queued."""

    isLeaf = True

    def session(self, request: Request) -> Session | None:
        request.setHeader(b"content-type", b"text/plain; charset=UTF-8")
        sid = request.args.get(b"sid")
        return SESSIONS.get(sid[0]) if sid else None

    def render_GET(self, request: Request) -> bytes | int:
        session = self.session(request)
        if session is None:
            sid = new_sid()
            SESSIONS[sid] = Session(sid)
            return open_packet(sid)
        if session.queue:
            body = b"\x1e".join(session.queue)
            session.queue.clear()
            return body
        session.waiting = request
        request.notifyFinish().addErrback(lambda _: setattr(session, "waiting", None))
        return NOT_DONE_YET

    def render_POST(self, request: Request) -> bytes:
        session = self.session(request)
        if session is None:
            request.setResponseCode(400)
            return b"unknown sid"
        for packet in request.content.read().split(b"\x1e"):
            if packet[:2] == b"42":
                ack_id, args = read_event(packet)
                session.queue.append(ack_packet(ack_id, args[1:]))
            elif packet == b"40":
                session.queue.append(connect_packet(session.sid))
        session.flush()
        return b"ok"


if __name__ == "__main__":
    site = Site(Polling())
    site.noisy = False
    reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")  # type: ignore[attr-defined]
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]
