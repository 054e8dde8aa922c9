"""txsio echo-with-ack server for the benchmark. Usage: python txsio_server.py <port>."""

import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

import txsio

io = txsio.Server()


NEWS = {"text": "hello world, this is a broadcast message", "n": 42}


def burst(n: int) -> None:
    for _ in range(n):
        io.emit("news", NEWS)


@io.on("connection")
def connected(socket: txsio.Socket) -> None:
    socket.on("echo", lambda data: data)
    socket.on("burst", burst)


root = Resource()
root.putChild(b"socket.io", io.resource())
site = Site(root)
site.noisy = False
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")  # type: ignore[attr-defined]
print("ready", flush=True)
reactor.run()  # type: ignore[attr-defined]
