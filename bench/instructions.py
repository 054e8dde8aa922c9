"""User-space instructions per operation of a benchmark server on real sockets, counted by
valgrind's callgrind: the same figure on a busy machine as on an idle one.

Usage::

    python bench/instructions.py [--mode fanout|ack] [--clients 100] [--server SCRIPT]
                                 [--txsio CHECKOUT]

The server (default ``bench/txsio_server.py``; ``bench/floor_python.py`` for the no-framework
Python floor) runs under ``valgrind --tool=callgrind`` on a loopback port, importing txsio from
``--txsio`` (default: this checkout), so that two trees compare with the same command.  This
script is its client, over raw WebSocket frames: ``--clients`` connections join the room, then
run rounds, each one ``fanout`` (client 0 emits "fanout", the server emits "news" to the room,
every client reads it: ``--clients`` deliveries) or ``ack`` (each client sends three "echo"
events with acks in one segment and reads the three acks).  Two server runs with different
numbers of rounds are counted; the difference, divided by the operations between them, leaves
out start-up and connecting.  Python runs about fifty times slower under valgrind: a count
takes a minute or two.  Kernel time is not counted (``bench/fanout_strace.py`` counts the
system calls; ``bench/run.py`` measures CPU time).  A benchmark, not a test.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MASK = b"\x11\x22\x33\x44"
UPGRADE = (b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def frame(payload: bytes) -> bytes:
    """A masked client text frame (payloads under 126 bytes)."""
    assert len(payload) < 126
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + MASK + masked


class Client:
    """One raw WebSocket connection of the Socket.IO namespace ``/``."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buffer = bytearray()
        self.sock.sendall(UPGRADE)
        while b"\r\n\r\n" not in self.buffer:
            self.fill()
        del self.buffer[:self.buffer.index(b"\r\n\r\n") + 4]
        if not self.read().startswith(b"0"):
            raise RuntimeError("no open packet")
        self.sock.sendall(frame(b"40"))
        if not self.read().startswith(b"40"):
            raise RuntimeError("no CONNECT answer")

    def fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def read(self) -> bytes:
        """The next text message, pings answered on the way."""
        while True:
            if len(self.buffer) >= 2:
                n, at = self.buffer[1] & 0x7F, 2
                if n == 126:
                    n, at = int.from_bytes(self.buffer[2:4], "big"), 4
                if len(self.buffer) >= at + n:
                    payload = bytes(self.buffer[at:at + n])
                    del self.buffer[:at + n]
                    if payload == b"2":
                        self.sock.sendall(frame(b"3"))
                        continue
                    return payload
            self.fill()


def count(args: argparse.Namespace, rounds: int) -> int:
    """The server's instruction count for ``rounds`` rounds (and its start and connects)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = Path(tempfile.mkdtemp()) / "callgrind.out"
    env = dict(os.environ, PYTHONPATH=str(args.txsio))
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable,
         str(args.server), str(port)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.2)
        clients = [Client(port) for _ in range(args.clients)]
        if args.mode == "fanout":
            for client in clients:
                client.sock.sendall(frame(b'420["join"]'))
                if not client.read().startswith(b"430"):
                    raise RuntimeError("join not acknowledged")
        for r in range(rounds):
            if args.mode == "fanout":
                clients[0].sock.sendall(frame(b'42["fanout"]'))
                for client in clients:
                    if not client.read().startswith(b'42["news"'):
                        raise RuntimeError("no news")
            else:
                for client in clients:
                    client.sock.sendall(b"".join(
                        frame(b'42%d["echo",{"text":"hello world","n":42}]' % (3 * r + i))
                        for i in range(3)))
                for client in clients:
                    for _ in range(3):
                        if not client.read().startswith(b"43"):
                            raise RuntimeError("no ack")
        for client in clients:
            client.sock.close()
    finally:
        server.terminate()  # callgrind writes its counts on SIGTERM
        server.wait(timeout=120)
    match = re.search(rb"^(?:summary|totals): (\d+)", out.read_bytes(), re.M)
    shutil.rmtree(out.parent)
    if match is None:
        raise RuntimeError("callgrind wrote no total")
    return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("fanout", "ack"), default="fanout")
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--rounds", type=int, nargs=2, default=[20, 120],
                        help="the two round counts whose difference is measured")
    parser.add_argument("--server", type=Path, default=HERE / "txsio_server.py")
    parser.add_argument("--txsio", type=Path, default=ROOT,
                        help="the checkout whose txsio the server imports")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("this needs valgrind")
    low, high = args.rounds
    ops = (high - low) * args.clients * (1 if args.mode == "fanout" else 3)
    per_op = (count(args, high) - count(args, low)) / ops
    what = "delivery" if args.mode == "fanout" else "ack"
    print(f"{per_op:,.0f} instructions per {what} ({args.server.name}, txsio from {args.txsio})")


if __name__ == "__main__":
    main()
