"""An Engine.IO echo server: every message comes back to its sender.

Run: ``python examples/engineio_echo.py --port 3000`` (the configuration the official
Engine.IO test suite expects: pingInterval 300 ms, pingTimeout 200 ms, path /engine.io/).
"""

from __future__ import annotations

import argparse
import sys

from twisted.internet import reactor
from twisted.logger import globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Site

from txsio.engineio import EngineServer, EngineSession


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=3000)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--ping-interval", type=float, default=0.3)
    parser.add_argument("--ping-timeout", type=float, default=0.2)
    parser.add_argument("--allow-eio3", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args()

    server = EngineServer(ping_interval=args.ping_interval, ping_timeout=args.ping_timeout,
                          max_http_buffer_size=1_000_000, cors_allowed_origins="*",
                          allow_eio3=args.allow_eio3)

    @server.on("connection")
    def connected(session: EngineSession) -> None:
        session.on("message", session.send)

    root = Resource()
    root.putChild(b"engine.io", server.resource())
    if args.verbose:
        globalLogBeginner.beginLoggingTo([textFileLogObserver(sys.stderr)])
    reactor.listenTCP(args.port, Site(root), interface=args.interface)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
