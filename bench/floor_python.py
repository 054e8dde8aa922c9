"""The floor of any Python server for the benchmark's WebSocket scenarios: no framework.

Usage: python floor_python.py <port>.  The standard library only (``select.epoll``, blocking
nothing): the WebSocket opening handshake, masked client frames read, and the replies of the
benchmark's app ("echo" acked, "join" into one room, "fanout" one frame to every member, written
with one ``send()`` per member at once).  No validation, no heartbeat, no buffering beyond what
the kernel takes (a benchmark peer always reads).  It shows what the kernel's socket calls and
a bare Python loop cost per operation, the bound under which no Python server can go: with
``bench/run.py --servers pyfloor`` next to txsio and Node.
"""

from __future__ import annotations

import base64
import hashlib
import select
import socket
import sys

from floor_sio import NEWS_PACKET, ack_packet, connect_packet, new_sid, open_packet, read_event

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """An unmasked server frame holding ``payload``."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 1 << 16:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


NEWS_FRAME = frame(NEWS_PACKET)


class Peer:
    """One connection: its socket, what it sent that is not read yet, its session id."""

    __slots__ = ("buffer", "open", "sid", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""
        self.open = False
        self.sid = new_sid()


def frames(peer: Peer) -> list[tuple[int, bytes]]:
    """The complete (masked) client frames at the head of ``peer.buffer``, unmasked."""
    out = []
    buf = peer.buffer
    while len(buf) >= 6:
        opcode, n = buf[0] & 0x0F, buf[1] & 0x7F
        at = 2
        if n == 126:
            n, at = int.from_bytes(buf[2:4], "big"), 4
        elif n == 127:
            n, at = int.from_bytes(buf[2:10], "big"), 10
        if len(buf) < at + 4 + n:
            break
        mask = buf[at:at + 4]
        data = buf[at + 4:at + 4 + n]
        key = int.from_bytes(mask * (n // 4 + 1), "big") >> (8 * (4 * (n // 4 + 1) - n))
        out.append((opcode, (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")))
        buf = buf[at + 4 + n:]
    peer.buffer = buf
    return out


def main(port: int) -> None:
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(1024)
    listener.setblocking(False)
    poll = select.epoll()
    poll.register(listener.fileno(), select.EPOLLIN)
    peers: dict[int, Peer] = {}
    room: list[socket.socket] = []
    print("ready", flush=True)

    def close(fd: int) -> None:
        peer = peers.pop(fd)
        poll.unregister(fd)
        if peer.sock in room:
            room.remove(peer.sock)
        peer.sock.close()

    while True:
        for fd, _ in poll.poll():
            if fd == listener.fileno():
                try:
                    sock, _ = listener.accept()
                except BlockingIOError:
                    continue
                sock.setblocking(False)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                peers[sock.fileno()] = Peer(sock)
                poll.register(sock.fileno(), select.EPOLLIN)
                continue
            peer = peers[fd]
            try:
                data = peer.sock.recv(262144)
            except ConnectionError:
                data = b""
            if not data:
                close(fd)
                continue
            peer.buffer += data
            if not peer.open:
                end = peer.buffer.find(b"\r\n\r\n")
                if end < 0:
                    continue
                head, peer.buffer = peer.buffer[:end], peer.buffer[end + 4:]
                key = b""
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"sec-websocket-key":
                        key = value.strip()
                accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
                peer.sock.send(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept
                               + b"\r\n\r\n" + frame(open_packet(peer.sid)))
                peer.open = True
            for opcode, payload in frames(peer):
                if opcode == 8:
                    peer.sock.send(frame(payload[:2], 8))
                    close(fd)
                    break
                if payload == b"40":
                    peer.sock.send(frame(connect_packet(peer.sid)))
                elif payload[:2] == b"42":
                    ack_id, args = read_event(payload)
                    if args[0] == "fanout":
                        for member in room:
                            member.send(NEWS_FRAME)
                    elif args[0] == "join":
                        room.append(peer.sock)
                        peer.sock.send(frame(ack_packet(ack_id, [True])))
                    elif args[0] == "echo":
                        peer.sock.send(frame(ack_packet(ack_id, args[1:])))


if __name__ == "__main__":
    main(int(sys.argv[1]))
