"""CPU per long-polling round trip, in memory: no sockets, no load generator, no noise from
other processes' scheduling.

Usage: PYTHONPATH=<txsio tree> python bench/polling_inmem.py [--rounds 20000] [--plain | --floor]

One Socket.IO session over polling, in an ``EngineSite`` (``--plain``: a twisted.web
``Site``; ``--floor``: the bare twisted.web floor of ``floor_server.py`` instead) on a fake
clock; two kept-alive in-memory connections, one for POSTs and one for
GETs.  Each round POSTs an event with an ack id and GETs the ack, as ``load_polling.mjs``
does.  Prints the best of five runs of the process CPU time per round, in microseconds.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable

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


def serve(plain: bool, floor: bool = False) -> Site:
    """The benchmark's Socket.IO app ("echo" acks its argument) at /socket.io/, in an
    EngineSite (a plain Site if ``plain``) on a fake clock, started; or, if ``floor``,
    ``floor_server.py``'s bare twisted.web resource in a plain Site."""
    clock = Clock()
    if floor:
        from floor_server import floor_site

        site = floor_site(clock)
        site.startFactory()
        return site
    io = txsio.Server(clock=clock)

    @io.on("connection")
    def connected(socket: txsio.Socket) -> None:
        socket.on("echo", lambda data: data)

    root = Resource()
    root.putChild(b"socket.io", io.resource())
    site = Site(root, reactor=clock) if plain else EngineSite(root, reactor=clock)
    site.noisy = False
    site.startFactory()
    return site


def best_per_op(run: Callable[[int], None], n: int) -> float:
    """The least process CPU time, in microseconds, of five runs of ``run(n)``, per op."""
    run(max(1, n // 10))  # warm up
    best = math.inf
    for _ in range(5):
        start = time.process_time()
        run(n)
        best = min(best, time.process_time() - start)
    return best * 1e6 / n


def setup(doc: str, count: str, default: int) -> tuple[int, Site]:
    """Read the command line (``--<count> N``, ``--plain``): N and the site to measure."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument(f"--{count}", type=int, default=default, dest="n")
    parser.add_argument("--plain", action="store_true")
    parser.add_argument("--floor", action="store_true",
                        help="floor_server.py's bare twisted.web resource instead of txsio")
    args = parser.parse_args()
    return args.n, serve(args.plain, args.floor)


def main() -> None:
    n, site = setup(__doc__, "rounds", 20000)
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

    cpu = best_per_op(rounds, n)
    print(f"{cpu:.1f} us CPU per round trip (POST event + GET ack)")


if __name__ == "__main__":
    main()
