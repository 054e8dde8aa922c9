"""CPU per connect (Engine.IO handshake over WebSocket + Socket.IO CONNECT), in memory: no
sockets, no load generator, no noise from other processes' scheduling.

Usage: PYTHONPATH=<txsio tree> python bench/connect_inmem.py [--connects 3000] [--plain | --floor]

Each connect, as ``load_connect.mjs`` makes it: an in-memory connection to an ``EngineSite``
(``--plain``: a twisted.web ``Site``; ``--floor``: the bare twisted.web + Autobahn floor of
``floor_server.py``) on a fake clock sends a WebSocket upgrade for a new
session, reads the open packet, sends CONNECT ("40"), reads the CONNECT answer, and goes
away.  Prints the best of five runs of the process CPU time per connect, in microseconds.
"""

from __future__ import annotations

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


class Transport(StringTransport):
    """An in-memory TCP transport, with what Autobahn's takeover looks for."""

    protocol: object = None

    def abortConnection(self) -> None:
        self.loseConnection()


def main() -> None:
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
            protocol.connectionLost(Failure(ConnectionDone()))  # type: ignore[attr-defined]

    cpu = best_per_op(connects, n)
    print(f"{cpu:.1f} us CPU per connect (handshake + CONNECT + close)")


if __name__ == "__main__":
    main()
