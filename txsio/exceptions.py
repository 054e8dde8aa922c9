"""The exceptions of txsio's public API."""

from __future__ import annotations

from typing import Any

__all__ = ["AckTimeoutError", "ConnectionRefusedError", "DisconnectedError", "SocketIOError"]


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
