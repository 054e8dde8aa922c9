"""Engine.IO for Twisted: the transport layer under Socket.IO, usable on its own.

Like Node's ``engine.io`` package::

    from txsio.engineio import EngineServer

    server = EngineServer()

    @server.on("connection")
    def connected(session):
        session.on("message", session.send)        # echo every message

    root.putChild(b"engine.io", server.resource())
"""

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
