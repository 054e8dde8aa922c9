"""txsio: Socket.IO and Engine.IO for Twisted.

::

    import txsio

    io = txsio.Server()

    @io.on("connection")
    def connected(socket):
        @socket.on("ping")
        def ping(*args):
            return args                      # the acknowledgement

    root.putChild(b"socket.io", io.resource())
"""

from ._version import __version__
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
