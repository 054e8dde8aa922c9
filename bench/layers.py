"""The cost of txsio's own layers per message, without sockets: Socket.IO over Engine.IO over
an in-memory WebSocket stand-in.

Usage::

    python bench/layers.py [--ops 20000]          # CPU microseconds per operation
    python bench/layers.py --instructions         # instructions per operation (valgrind)

Three operations, each through the real server (``txsio.Server`` with the echo handler of
``bench/txsio_server.py``) down to the transport's ``send``, which only takes
what it is given (as the WebSocket does: a message's payload, a broadcast's prepared frame,
packets): an event with ack answered with its data (``echo``), the same with a 64 KiB binary
attachment (``binary``), and one delivery of a broadcast to 200 sockets (``broadcast``).
Twisted, Autobahn and the kernel are left out: what is measured is what txsio adds on top.

CPU time is noisy on a shared machine; ``--instructions`` counts instructions with
valgrind's callgrind instead (two workloads of different sizes, the difference divided by
the operations between them), which gives the same figure on a busy machine as on an idle
one.  It takes about a minute per operation.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet.task import Clock

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's txsio

import txsio
from txsio.engineio.handshake import HandshakeRequest

NEWS = {"text": "hello world, this is a broadcast message", "n": 42}
ECHO = '20["echo",{"text":"hello world, this is a benchmark message","n":42}]'
BINARY_EVENT = '51-21["echo",{"_placeholder":true,"num":0}]'
ATTACHMENT = b"\x07" * 65536
BROADCAST_SOCKETS = 200


class _Frame:
    payload = b"x" * 60


class _Factory:
    def prepareMessage(self, payload: bytes, binary: bool) -> _Frame:  # Autobahn's name
        return _Frame()


class StandIn:
    """A WebSocket as the session sees it, writing nothing: always writable."""

    name = "websocket"
    upgrades_to: tuple[str, ...] = ()
    writable = True
    factory = _Factory()

    def send(self, data: Any) -> bool:
        if isinstance(data, str):
            ("4" + data).encode("utf-8")  # what the WebSocket does with a text message
        elif not isinstance(data, (bytes, list)):
            return data.prepared_frame(self.factory) is not None
        return True

    def close(self, *, graceful: bool) -> bool:
        return True


def server(sockets: int) -> tuple[txsio.Server, list[tuple[Any, StandIn]]]:
    io = txsio.Server(clock=Clock())
    # The echo handler of bench/txsio_server.py; broadcasts are emitted here directly.
    io.on("connection", lambda socket: socket.on("echo", lambda data: data))
    sessions = []
    for _ in range(sockets):
        transport = StandIn()
        query = {"EIO": "4", "transport": "websocket"}
        request = HandshakeRequest(method="GET", url="/socket.io/?EIO=4&transport=websocket",
                                   headers={}, query=query, address="127.0.0.1", secure=False)
        session = io.engine.create_session(4, transport, request)
        session.receive("0", transport)
        sessions.append((session, transport))
    return io, sessions


def workload(operation: str) -> Callable[[int], None]:
    """What runs ``ops`` operations (a broadcast counts one per recipient), on a server
    made for it."""
    io, sessions = server(BROADCAST_SOCKETS if operation == "broadcast" else 1)
    session, transport = sessions[0]
    receive = session.receive

    def echo(ops: int) -> None:
        for _ in range(ops):
            receive(ECHO, transport)

    def binary(ops: int) -> None:
        for _ in range(ops):
            receive(BINARY_EVENT, transport)
            receive(ATTACHMENT, transport)

    def broadcast(ops: int) -> None:
        for _ in range(ops // BROADCAST_SOCKETS):
            io.emit("news", NEWS)

    return {"echo": echo, "binary": binary, "broadcast": broadcast}[operation]


def cpu_us(operation: str, ops: int) -> float:
    run = workload(operation)
    best = float("inf")
    for _ in range(5):
        start = time.process_time()
        run(ops)
        best = min(best, (time.process_time() - start) * 1e6 / ops)
    return best


def instructions(operation: str, ops: int) -> float:
    def count(n: int) -> int:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             __file__, "--run", operation, str(n)], capture_output=True, text=True, check=True)
        return int(re.findall(r"Collected : (\d+)", out.stderr)[-1])

    small = ops // 5
    return (count(ops) - count(small)) / (ops - small)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ops", type=int, default=0, help="operations per measurement")
    parser.add_argument("--instructions", action="store_true", help="count with callgrind")
    parser.add_argument("--run", nargs=2, metavar=("OPERATION", "OPS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        workload(args.run[0])(int(args.run[1]))
        return
    if args.instructions and shutil.which("valgrind") is None:
        raise SystemExit("--instructions needs valgrind")
    for operation, default_ops, unit in (("echo", 20000, "ack"), ("binary", 2000, "echo"),
                                         ("broadcast", 200000, "delivery")):
        ops = args.ops or default_ops
        if args.instructions:
            ops = max(ops // 20, BROADCAST_SOCKETS * 5)
            print(f"{operation:9} {instructions(operation, ops):>10,.0f} instructions/{unit}")
        else:
            print(f"{operation:9} {cpu_us(operation, ops):>10.2f} us CPU/{unit}")


if __name__ == "__main__":
    main()
