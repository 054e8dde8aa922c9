"""The exceptions of txsio's public API."""

from __future__ import annotations

from typing import Any

__all__ = [
    "AckTimeoutError",
    "ConnectError",
    "ConnectionRefusedError",
    "DisconnectedError",
    "SocketIOError",
]


class SocketIOError(Exception):
    """The base of txsio's Socket.IO errors."""


class ConnectionRefusedError(SocketIOError):
    """Raised by a middleware (or a connection handler) to refuse a connection.

    The client receives a CONNECT_ERROR packet carrying ``message`` and ``data``, as with Node's
    ``next(new Error(message))`` (and ``err.data = data``).

    :param message: the reason the client sees.
    :param data: optional JSON-able details for the client.
    """

    def __init__(self, message: str = "Connection rejected by server", data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class AckTimeoutError(SocketIOError):
    """No acknowledgement arrived in time.

    For a broadcast with acknowledgements, :attr:`responses` holds the answers that did arrive.
    """

    def __init__(self, message: str = "operation has timed out",
                 responses: list[Any] | None = None) -> None:
        super().__init__(message)
        self.responses: list[Any] = responses if responses is not None else []


class DisconnectedError(SocketIOError):
    """The socket disconnected before the acknowledgement arrived.

    :param reason: the disconnection reason.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(f"the socket disconnected ({reason}) before acknowledging")
        self.reason = reason


class ConnectError(SocketIOError):
    """The client could not connect to a namespace (its ``connect_error`` event).

    Either the server refused (:attr:`refused`; :attr:`message` and :attr:`data` are what the
    server's middleware gave, e.g. ``ConnectionRefusedError("not authorized", {"code": 401})``)
    or the connection failed (:attr:`message` says how, as Node's client does: ``"xhr poll
    error"``, ``"websocket error"``, ``"timeout"``, ``"transport close"``...; :attr:`data`
    holds the detail).

    :param message: the reason.
    :param data: the server's details (a refusal), or the transport's (a failure).
    :param refused: whether this is final for the namespace: the server refused it (or the
        ``auth`` callable failed); the client does not try that namespace again by itself.
    """

    def __init__(self, message: str, data: Any = None, *, refused: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        self.refused = refused

    def __str__(self) -> str:
        """The reason and, for a failed connection, its cause: ``"xhr poll error: HTTP 404"``,
        ``"websocket error: Connection was refused by other side: 111: Connection refused."``
        (:attr:`message` stays Node's word alone)."""
        data = self.data
        if self.refused or data is None or isinstance(data, (dict, list)):
            return self.message
        is_status = isinstance(data, int) and not isinstance(data, bool)
        cause = f"HTTP {data}" if is_status else str(data)
        return f"{self.message}: {cause[:300]}"

    def __repr__(self) -> str:
        return f"ConnectError({self.message!r}, {self.data!r}, refused={self.refused})"
