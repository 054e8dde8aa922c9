"""txsio echo-with-ack server in an ``EngineSite``. Usage: python txsio_site_server.py <port>.

As ``txsio_server.py`` (which mounts txsio in a plain twisted.web ``Site``), but in the site
txsio's own service uses: request bodies bounded as they arrive, connection deadlines.
"""

import sys

from twisted.internet import endpoints, reactor
from twisted.web.resource import Resource

import txsio
from txsio.engineio import EngineSite

io = txsio.Server()


@io.on("connection")
def connected(socket: txsio.Socket) -> None:
    socket.on("echo", lambda data: data)


def main(port: int) -> None:
    """Serve ``io`` at /socket.io/ in an EngineSite on ``port`` until stopped."""
    root = Resource()
    root.putChild(b"socket.io", io.resource())
    site = EngineSite(root)
    site.noisy = False
    endpoints.TCP4ServerEndpoint(reactor, port, interface="127.0.0.1").listen(site)
    print("ready", flush=True)
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main(int(sys.argv[1]))
