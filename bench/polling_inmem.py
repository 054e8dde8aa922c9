"""CPU per long-polling round trip, in memory: no sockets, no load generator, no noise from
other processes' scheduling.

Usage: PYTHONPATH=<txsio tree> python bench/polling_inmem.py [--rounds 20000] [--plain]

One Socket.IO session over polling, in an ``EngineSite`` (``--plain``: a twisted.web
``Site``) on a fake clock; two kept-alive in-memory connections, one for POSTs and one for
GETs.  Each round POSTs an event with an ack id and GETs the ack, as ``load_polling.mjs``
does.  Prints the best of five runs of the process CPU time per round, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import time

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web.resource import Resource
from twisted.web.server import Site

import txsio
from txsio.engineio import EngineSite

PAYLOAD = json.dumps({"text": "hello world, this is a benchmark message", "n": 42})


class Connection:
    """One kept-alive HTTP/1.1 connection to the site."""

    def __init__(self, site: Site) -> None:
        address = IPv4Address("TCP", "127.0.0.1", 40000)
        self.transport = StringTransport(peerAddress=address)
        self.protocol = site.buildProtocol(address)
        self.protocol.makeConnection(self.transport)

    def request(self, method: str, target: str, body: str = "") -> bytes:
        head = (f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "User-Agent: node\r\nAccept: */*\r\nConnection: keep-alive\r\n")
        if method == "POST":
            head += (f"Content-Type: text/plain;charset=UTF-8\r\n"
                     f"Content-Length: {len(body.encode())}\r\n")
        self.protocol.dataReceived(head.encode() + b"\r\n" + body.encode())
        raw = self.transport.value()
        self.transport.clear()
        return raw.partition(b"\r\n\r\n")[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20000)
    parser.add_argument("--plain", action="store_true")
    args = parser.parse_args()
    clock = Clock()
    io = txsio.Server(clock=clock)

    @io.on("connection")
    def connected(socket: txsio.Socket) -> None:
        socket.on("echo", lambda data: data)

    root = Resource()
    root.putChild(b"socket.io", io.resource())
    site = Site(root, reactor=clock) if args.plain else EngineSite(root, reactor=clock)
    site.noisy = False
    site.startFactory()
    get, post = Connection(site), Connection(site)
    base = "/socket.io/?EIO=4&transport=polling"
    sid = json.loads(get.request("GET", base)[1:])["sid"]
    target = f"{base}&sid={sid}"
    assert post.request("POST", target, "40") == b"ok"
    assert get.request("GET", target).startswith(b"40")
    ack = 0

    def rounds(n: int) -> None:
        nonlocal ack
        for _ in range(n):
            ack += 1
            post.request("POST", target, f'42{ack}["echo",{PAYLOAD}]')
            body = get.request("GET", target)
            assert body.startswith(b"43%d[" % ack), body

    rounds(500)
    best = min(_timed(rounds, args.rounds) for _ in range(5))
    print(f"{best * 1e6 / args.rounds:.1f} us CPU per round trip (POST event + GET ack)")


def _timed(rounds: object, n: int) -> float:
    start = time.process_time()
    rounds(n)  # type: ignore[operator]
    return time.process_time() - start


if __name__ == "__main__":
    main()
