"""txsio: Socket.IO and Engine.IO for Twisted.

::

    import txsio
    from twisted.web.resource import Resource

    io = txsio.Server()

    @io.on("connection")
    def connected(socket):
        @socket.on("ping")
        def ping(*args):
            return args                      # the acknowledgement

    root = Resource()
    root.putChild(b"socket.io", io.resource())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import _lazy
from ._version import __version__

# The public names are imported on first use (PEP 562), so that importing a pure module
# (txsio.protocol, txsio.engineio.packet) does not import Twisted through this package.
# One line per name: where it is defined.  The TYPE_CHECKING imports below say the same
# for mypy (tests/test_layout.py checks that they agree).
_EXPORTS = {
    "AckTimeoutError": "txsio.exceptions",
    "Adapter": "txsio.adapter",
    "BroadcastOperator": "txsio.broadcast",
    "Client": "txsio.client",
    "ClientSocket": "txsio.client",
    "ConnectError": "txsio.exceptions",
    "ConnectionRefusedError": "txsio.exceptions",
    "DisconnectedError": "txsio.exceptions",
    "Handshake": "txsio.socket",
    "Namespace": "txsio.namespace",
    "Server": "txsio.server",
    "SessionAwareAdapter": "txsio.adapter",
    "Socket": "txsio.socket",
    "SocketIOError": "txsio.exceptions",
}

if TYPE_CHECKING:
    from .adapter import Adapter, SessionAwareAdapter
    from .broadcast import BroadcastOperator
    from .client import Client, ClientSocket
    from .exceptions import (
        AckTimeoutError,
        ConnectError,
        ConnectionRefusedError,
        DisconnectedError,
        SocketIOError,
    )
    from .namespace import Namespace
    from .server import Server
    from .socket import Handshake, Socket

__all__ = [
    "AckTimeoutError",
    "Adapter",
    "BroadcastOperator",
    "Client",
    "ClientSocket",
    "ConnectError",
    "ConnectionRefusedError",
    "DisconnectedError",
    "Handshake",
    "Namespace",
    "Server",
    "SessionAwareAdapter",
    "Socket",
    "SocketIOError",
    "__version__",
]


def __getattr__(name: str) -> object:
    """Import a public name on its first use."""
    return _lazy.load(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return _lazy.names(__name__, __all__)
