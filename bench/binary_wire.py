"""Instructions per binary echo in the whole txsio server process: sockets, Twisted, Autobahn
and txsio, counted with valgrind's callgrind.

Usage::

    python bench/binary_wire.py [--echoes 300] [--size 65536] [--inflight 2] [--out DIR]

``bench/txsio_server.py`` runs under callgrind; a raw WebSocket client in this process (its
frames masked once, beforehand: the client costs next to nothing) opens one Socket.IO
connection and keeps ``--inflight`` echoes of one ``--size`` attachment in flight, as the
``binary`` scenario of ``bench/run.py`` does: ``451-<id>["echo",{"_placeholder":true,...}]``
and the attachment's binary frame; the server answers ``461-<id>[...]`` and the attachment.
Two runs, of ``--echoes`` and five times as many, are counted; the difference divided by the
echoes between them is what one echo costs the server, whatever starting and stopping cost.
Counts do not depend on how busy the machine is (TCP may cut the frames at other places
from one run to the next, so they move by a percent or so).  With ``--out`` the callgrind
files of both runs are kept there, for ``callgrind_annotate``.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MASK = b"\x11\x22\x33\x44"


def frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 section 5.2), with the fixed mask."""
    n = len(payload)
    if n < 126:
        header = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        header = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    key = (MASK * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    return header + MASK + masked


class Client:
    """A blocking raw WebSocket client reading the server's (unmasked) frames."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n".encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"no WebSocket: {head!r}")

    def fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise SystemExit("the server closed the connection")
        self.buffer += data

    def read(self) -> tuple[int, bytes]:
        while True:
            buf = self.buffer
            if len(buf) >= 2:
                n, start = buf[1] & 0x7F, 2
                if n == 126:
                    n, start = int.from_bytes(buf[2:4], "big"), 4
                elif n == 127:
                    n, start = int.from_bytes(buf[2:10], "big"), 10
                if len(buf) >= start and len(buf) >= start + n:
                    self.buffer = buf[start + n:]
                    payload = buf[start:start + n]
                    if buf[0] == 0x81 and payload == b"2":
                        self.sock.sendall(frame(1, b"3"))  # the Engine.IO heartbeat
                        continue
                    return buf[0] & 0x0F, payload
            self.fill()


def echoes(port: int, count: int, size: int, inflight: int) -> None:
    client = Client(port)
    opcode, payload = client.read()
    if not payload.startswith(b"0{"):
        raise SystemExit(f"no open packet: {payload!r}")
    client.sock.sendall(frame(1, b"40"))
    if not client.read()[1].startswith(b"40"):
        raise SystemExit("no CONNECT answer")
    attachment = frame(2, b"\x07" * size)
    sent = done = 0

    def send() -> None:
        nonlocal sent
        event = f'451-{sent}["echo",{{"_placeholder":true,"num":0}}]'.encode()
        client.sock.sendall(frame(1, event))
        client.sock.sendall(attachment)
        sent += 1

    for _ in range(min(inflight, count)):
        send()
    while done < count:
        opcode, payload = client.read()
        if opcode == 1:
            if not payload.startswith(b"461-"):
                raise SystemExit(f"unexpected {payload!r}")
            continue
        if len(payload) != size:
            raise SystemExit(f"an attachment of {len(payload)} bytes")
        done += 1
        if sent < count:
            send()
    client.sock.close()


def count(echo_count: int, args: argparse.Namespace, out: Path | None) -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    target = str(out / f"callgrind.{echo_count}") if out else "/dev/null"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={target}", sys.executable,
         str(HERE / "txsio_server.py"), str(port)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert server.stdout is not None and server.stderr is not None
    try:
        if server.stdout.readline().strip() != "ready":
            raise SystemExit(f"the server did not start: {server.stderr.read()[-2000:]}")
        echoes(port, echo_count, args.size, args.inflight)
        time.sleep(0.5)  # the server notices the close
        server.send_signal(signal.SIGINT)  # the reactor stops, callgrind counts
        _, err = server.communicate(timeout=600)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    return int(re.findall(r"Collected : (\d+)", err)[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--echoes", type=int, default=300)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--inflight", type=int, default=2)
    parser.add_argument("--out", type=Path, help="keep the callgrind files in this directory")
    args = parser.parse_args()
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
    small, large = args.echoes, args.echoes * 5
    low = count(small, args, args.out)
    high = count(large, args, args.out)
    print(f"binary echo {args.size} B: {(high - low) / (large - small):,.0f} instructions/echo "
          f"(txsio server process, {small} and {large} echoes)")


if __name__ == "__main__":
    main()
