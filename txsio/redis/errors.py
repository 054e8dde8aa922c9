"""The Redis adapter's errors.

:class:`RedisUnavailableError` is what callers meet most: a cluster operation failed at once
because Redis cannot be reached (it is never queued until Redis is back).
"""

from __future__ import annotations

from ..cluster import RequestTimeoutError
from ..exceptions import SocketIOError

__all__ = [
    "RedisError",
    "RedisProtocolError",
    "RedisReplyError",
    "RedisUnavailableError",
    "RequestTimeoutError",
]


class RedisError(SocketIOError):
    """The base of the Redis adapter's errors."""


class RedisUnavailableError(RedisError):
    """Redis cannot be reached now: the cluster operation failed at once (nothing was sent).

    The connection is being re-established in the background.
    """


class RedisReplyError(RedisError):
    """Redis answered a command with an error reply (``-ERR ...``)."""


class RedisProtocolError(RedisError):
    """Redis sent something that is not RESP2; the connection is dropped and re-established."""
