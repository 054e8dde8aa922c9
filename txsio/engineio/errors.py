"""Engine.IO's value types for refusals and endings: error codes, request errors, close reasons.

Pure (stdlib only), so that the session, the transports and the server import them without
importing one another.  :class:`EngineRequestError` is raised by the server's checks and
answered by the resource and the polling transport (:meth:`EngineRequestError.render`);
:class:`CloseReason` is what a session's ``close`` event reports.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from twisted.web.server import Request

__all__ = ["CloseReason", "EngineRequestError", "ErrorCode", "TransportError"]


class ErrorCode(enum.IntEnum):
    """The error codes of an Engine.IO HTTP error response body ``{"code", "message"}``."""

    UNKNOWN_TRANSPORT = 0
    UNKNOWN_SID = 1
    BAD_HANDSHAKE_METHOD = 2
    BAD_REQUEST = 3
    FORBIDDEN = 4
    UNSUPPORTED_PROTOCOL_VERSION = 5

    #: the standard message of each code, as Node's ``engine.io`` sends it
    MESSAGES: ClassVar[dict[int, str]]

    @property
    def message(self) -> str:
        """The standard message of this code."""
        return ErrorCode.MESSAGES[self]


ErrorCode.MESSAGES = {
    ErrorCode.UNKNOWN_TRANSPORT: "Transport unknown",
    ErrorCode.UNKNOWN_SID: "Session ID unknown",
    ErrorCode.BAD_HANDSHAKE_METHOD: "Bad handshake method",
    ErrorCode.BAD_REQUEST: "Bad request",
    ErrorCode.FORBIDDEN: "Forbidden",
    ErrorCode.UNSUPPORTED_PROTOCOL_VERSION: "Unsupported protocol version",
}


class EngineRequestError(Exception):
    """A request the server refuses, carrying how to answer it on the wire.

    :param code: the Engine.IO error code (:class:`ErrorCode`).
    :param status: the HTTP status.
    :param message: the ``message`` of the JSON body (defaults to the code's standard text).
    :param context: what the ``connection_error`` event reports about it, as Node's
        ``err.context`` (e.g. ``{"sid": ...}`` for an unknown session).
    """

    def __init__(self, code: int, status: int = 400, message: str | None = None,
                 context: Mapping[str, Any] | None = None) -> None:
        self.code = code
        self.status = status
        self.message = message if message is not None else ErrorCode.MESSAGES[code]
        self.context: Mapping[str, Any] = context if context is not None else {}
        super().__init__(code, status, self.message)

    def body(self) -> bytes:
        """The JSON body of the error response."""
        return json.dumps({"code": int(self.code), "message": self.message},
                          separators=(",", ":")).encode()  # compact, as Node's

    def render(self, request: Request) -> bytes:
        """Set the status and content type of ``request``'s response; return the body.

        :param request: the twisted.web request being refused.
        :returns: the JSON body, for ``render`` to return (or to write).
        """
        request.setResponseCode(self.status)
        request.setHeader(b"content-type", b"application/json")
        return self.body()


class TransportError(Exception):
    """A transport failed, as engine.io's and engine.io-client's ``TransportError``.

    The client's transports raise it; on the server it is the description of a session
    closed with ``"transport error"`` (what a ``disconnect`` handler gets beside the reason,
    as Node's).

    :param message: what failed, in Node's words: ``"xhr poll error"``, ``"xhr post error"``,
        ``"websocket error"``, ``"parse error"``, ``"probe error"``, ``"timeout"``; on the
        server, what the client did (``"POST body larger than max_http_buffer_size"``...).
    :param description: the detail: an HTTP status, the reason text, or ``None``.
    """

    #: Node's ``err.type``
    type = "TransportError"

    def __init__(self, message: str, description: Any = None) -> None:
        super().__init__(message if description is None else f"{message}: {description}")
        self.message = message
        self.description = description


class CloseReason(str, enum.Enum):
    """The reasons a session closes with, spelled as Node's ``engine.io``.

    Each member is the string itself (``CloseReason.PING_TIMEOUT == "ping timeout"``, and
    ``str()`` and formatting give the text), so handlers may compare with either.
    """

    #: the client closed the transport (close packet, or the connection went away)
    TRANSPORT_CLOSE = "transport close"
    #: the client did not answer a ping in time
    PING_TIMEOUT = "ping timeout"
    #: the server called :meth:`~txsio.engineio.EngineSession.close`
    FORCED_CLOSE = "forced close"
    #: the client broke the transport's rules (overlapping requests, ...)
    TRANSPORT_ERROR = "transport error"
    #: the client sent a packet that does not parse
    PARSE_ERROR = "parse error"
    #: the server is stopping
    SERVER_SHUTTING_DOWN = "server shutting down"
    #: more than ``max_buffered_bytes`` waited for a client that does not read (txsio's own:
    #: Node buffers without bound)
    SEND_BUFFER_FULL = "send buffer full"

    # enum.StrEnum's behaviour (Python 3.11+), spelled out for 3.10: the text, not the name.
    def __str__(self) -> str:
        return str.__str__(self)

    def __format__(self, spec: str) -> str:
        return str.__format__(str.__str__(self), spec)
