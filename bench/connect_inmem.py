"""CPU per connect (Engine.IO handshake over WebSocket + Socket.IO CONNECT), in memory: no
sockets, no load generator, no noise from other processes' scheduling.

Usage: PYTHONPATH=<txsio tree> python bench/connect_inmem.py [--connects 3000] [--plain | --floor]
[--instructions]

Each connect, as ``load_connect.mjs`` makes it: an in-memory connection to an ``EngineSite``
(``--plain``: a twisted.web ``Site``; ``--floor``: the bare twisted.web + Autobahn floor of
``floor_server.py``) on a fake clock sends a WebSocket upgrade for a new
session, reads the open packet, sends CONNECT ("40"), reads the CONNECT answer, sends a close
frame (code 1000, as ``ws.close()``), reads the server's close frame, and the connection goes
away.  Prints the best of five runs of the process CPU time per connect, in microseconds; with
``--instructions``, the instructions per connect counted by valgrind's callgrind (two runs of
different sizes, the difference divided by the connects between them: the same figure on a
busy machine as on an idle one).
"""

from __future__ import annotations

import re
import subprocess
import sys

from polling_inmem import best_per_op, setup
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

UPGRADE = (b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1\r\n"
           b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
#: "40" in a masked text frame (a zero mask leaves the payload as it is)
CONNECT = b"\x81\x82\x00\x00\x00\x0040"
#: a masked close frame, code 1000
CLOSE = b"\x88\x82\x00\x00\x00\x00\x03\xe8"


class Transport(StringTransport):
    """An in-memory TCP transport, with what Autobahn's takeover looks for."""

    protocol: object = None

    def abortConnection(self) -> None:
        self.loseConnection()


def instructions(n: int) -> float:
    """Instructions per connect, by callgrind: ``n`` connects less ``n // 5``."""
    def count(connects: int) -> int:
        out = subprocess.run(
            ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
             *[a for a in sys.argv if a != "--instructions"], "--once", "--connects",
             str(connects)], capture_output=True, text=True, check=True)
        return int(re.findall(r"Collected : (\d+)", out.stderr)[-1])

    small = n // 5
    return (count(n) - count(small)) / (n - small)


def main() -> None:
    once = "--once" in sys.argv
    counted = "--instructions" in sys.argv
    if once or counted:
        sys.argv = [a for a in sys.argv if a not in ("--once", "--instructions")]
    if counted:
        n = 500
        for i, arg in enumerate(sys.argv):
            if arg == "--connects":
                n = int(sys.argv[i + 1])
        print(f"{instructions(n):,.0f} instructions per connect (handshake + CONNECT + close)")
        return
    n, site = setup(__doc__, "connects", 3000)
    address = IPv4Address("TCP", "127.0.0.1", 40000)

    def connects(n: int) -> None:
        for _ in range(n):
            transport = Transport(peerAddress=address)
            channel = site.buildProtocol(address)
            transport.protocol = channel
            channel.makeConnection(transport)
            channel.dataReceived(UPGRADE)
            protocol = transport.protocol
            assert b" 101 " in transport.value()[:20], transport.value()[:200]
            transport.clear()
            protocol.dataReceived(CONNECT)  # type: ignore[attr-defined]
            assert b"40{" in transport.value(), transport.value()
            transport.clear()
            protocol.dataReceived(CLOSE)  # type: ignore[attr-defined]
            assert transport.value().startswith(b"\x88"), transport.value()
            assert transport.disconnecting
            protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]

    if once:
        connects(n)
        return
    cpu = best_per_op(connects, n)
    print(f"{cpu:.1f} us CPU per connect (handshake + CONNECT + close)")


if __name__ == "__main__":
    main()
