"""Engine.IO for Twisted: the transport layer under Socket.IO, usable on its own.

Like Node's ``engine.io`` package::

    from twisted.web.resource import Resource
    from txsio.engineio import EngineServer

    server = EngineServer()

    @server.on("connection")
    def connected(session):
        session.on("message", session.send)        # echo every message

    root = Resource()
    root.putChild(b"engine.io", server.resource())
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .. import _lazy

# The public names are imported on first use (PEP 562), so that importing the pure codec
# (txsio.engineio.packet) does not import Twisted through this package.  One line per name:
# where it is defined.  The TYPE_CHECKING imports below say the same for mypy
# (tests/test_layout.py checks that they agree).
_EXPORTS = {
    "CloseReason": "txsio.engineio.session",
    "EngineIOResource": "txsio.engineio.resource",
    "EngineOptions": "txsio.engineio.session",
    "EngineRequest": "txsio.engineio.site",
    "EngineRequestError": "txsio.engineio.server",
    "EngineServer": "txsio.engineio.server",
    "EngineSession": "txsio.engineio.session",
    "EngineSite": "txsio.engineio.site",
    "ErrorCode": "txsio.engineio.server",
    "HandshakeRequest": "txsio.engineio.server",
    "SessionState": "txsio.engineio.session",
}

if TYPE_CHECKING:
    from .resource import EngineIOResource
    from .server import EngineRequestError, EngineServer, ErrorCode, HandshakeRequest
    from .session import CloseReason, EngineOptions, EngineSession, SessionState
    from .site import EngineRequest, EngineSite

__all__ = [
    "CloseReason",
    "EngineIOResource",
    "EngineOptions",
    "EngineRequest",
    "EngineRequestError",
    "EngineServer",
    "EngineSession",
    "EngineSite",
    "ErrorCode",
    "HandshakeRequest",
    "SessionState",
]


def __getattr__(name: str) -> object:
    """Import a public name on its first use."""
    return _lazy.load(__name__, _EXPORTS, name)


def __dir__() -> list[str]:
    return _lazy.names(__name__, __all__)
