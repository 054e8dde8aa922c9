"""The Socket.IO server the official conformance suite expects (socketio/socket.io-protocol).

Run: ``python examples/socketio_conformance.py --port 3000``, then the suite's ``npm test``.
Namespaces ``/`` and ``/custom`` emit ``auth`` with the CONNECT payload right after connecting;
on ``/``, ``message`` is answered by ``message-back`` with the same arguments and
``message-with-ack`` is acknowledged with them.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site

import txsio


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    io = txsio.Server(ping_interval=0.3, ping_timeout=0.2, max_http_buffer_size=1_000_000,
                      connect_timeout=1.0, cors_allowed_origins="*")

    @io.on("connection")
    def connected(socket: txsio.Socket) -> None:
        socket.emit("auth", socket.handshake.auth)

        @socket.on("message")
        def message(*args: Any) -> None:
            socket.emit("message-back", *args)

        @socket.on("message-with-ack")
        def message_with_ack(*args: Any) -> tuple[Any, ...]:
            return args

    @io.of("/custom").on("connection")
    def custom(socket: txsio.Socket) -> None:
        socket.emit("auth", socket.handshake.auth)

    root = Resource()
    root.putChild(b"socket.io", io.resource())
    if args.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    reactor.listenTCP(args.port, Site(root), interface=args.interface)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
