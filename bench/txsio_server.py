"""txsio running the benchmark's app. Usage: python txsio_server.py <port>.

``bench/run.py`` starts it (its ``PYTHONPATH`` picks the txsio tree to measure).  "echo" acks
its argument (JSON or binary); "join" puts the socket in the room "room"; "fanout" emits one
"news" to that room; "burst" (n) emits n "news" to every socket.
"""

import sys

from twisted.internet import reactor
from twisted.web.resource import Resource

import txsio
from txsio.engineio import EngineSite

io = txsio.Server()


NEWS = {"text": "hello world, this is a broadcast message", "n": 42}


def burst(n: int) -> None:
    for _ in range(n):
        io.emit("news", NEWS)


def fanout() -> None:
    io.to("room").emit("news", NEWS)


@io.on("connection")
def connected(socket: txsio.Socket) -> None:
    socket.on("echo", lambda data: data)
    socket.on("burst", burst)
    socket.on("fanout", fanout)

    @socket.on("join")
    def join() -> bool:
        socket.join("room")
        return True


root = Resource()
root.putChild(b"socket.io", io.resource())
# The site the docs recommend (and ``twistd sio`` serves with).
site = EngineSite(root)
site.noisy = False
reactor.listenTCP(int(sys.argv[1]), site, interface="127.0.0.1")  # type: ignore[attr-defined]
print("ready", flush=True)
reactor.run()  # type: ignore[attr-defined]
