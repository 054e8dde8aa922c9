"""RESP2, the Redis protocol: commands out (:func:`encode_command`), replies in (a reader).

Who calls what: the connection protocol (:mod:`txsio.redis.connection`) encodes each command
with :func:`encode_command` and feeds every chunk the socket delivers to its reader, taking
back the replies it completes.  Readers have one method, ``feed(data) -> list[reply]``:

- :class:`RespParser`, pure Python: simple strings come back as ``str``, bulk strings as
  ``bytes``.  The command connection uses it, because callers see its replies (``PING``
  answers the text ``"PONG"``), and its replies are few and small;
- :func:`push_reader`, ``hiredis.Reader`` (C) when hiredis is installed (a dependency of
  txsio), else a :class:`RespParser`.  The subscribed connection uses it: every message of
  the cluster arrives there, and every reply there is an array (pushes and subscription
  confirmations), where hiredis's one difference — a simple string comes back as ``bytes``,
  like a bulk string — cannot show.

Both readers are incremental: an unfinished reply is kept as far as it was read, and the next
chunk continues it, so a reply of ``n`` items fed in any number of chunks costs ``O(n)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from .errors import RedisProtocolError, RedisReplyError

__all__ = ["ReplyReader", "RespParser", "encode_command", "push_reader"]


def encode_command(args: Sequence[bytes | str | int]) -> bytes:
    """One command as a RESP array of bulk strings (``str`` as UTF-8)."""
    out = [b"*%d\r\n" % len(args)]
    for arg in args:
        if isinstance(arg, str):
            arg = arg.encode("utf-8")
        elif isinstance(arg, int):
            arg = b"%d" % arg
        out.append(b"$%d\r\n" % len(arg))
        out.append(arg)
        out.append(b"\r\n")
    return b"".join(out)


class ReplyReader(Protocol):
    """What the connection protocol needs of a RESP reader."""

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return the replies it completes, in order.

        :raises RedisProtocolError: when the data is not RESP2.
        """


class RespParser:
    """An incremental RESP2 reply parser: :meth:`feed` bytes, get the finished replies.

    Replies are ``str`` (simple strings), :class:`RedisReplyError` instances (error replies,
    returned, not raised), ``int``, ``bytes`` or ``None`` (bulk strings, kept raw) and lists
    or ``None`` (arrays).

    Theory of operation: ``_buffer`` holds the data not read yet; the arrays being filled are
    on ``_stack`` (their items so far, and how many they get); ``_bulk`` is
    the length of a bulk string whose header was read and whose body has not arrived yet
    (``-1`` when none); ``_scan`` is where to go on looking for the end of an unfinished
    line.  Nothing is read twice; what was read is dropped from the buffer after each feed.

    :param max_depth: the deepest nesting of arrays accepted.
    """

    def __init__(self, *, max_depth: int = 8) -> None:
        self._buffer = bytearray()
        self._max_depth = max_depth
        self._scan = 0
        self._bulk = -1
        self._stack: list[tuple[list[Any], int]] = []

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return the replies it completes, in order.

        :raises RedisProtocolError: when the data is not RESP2.
        """
        buffer = self._buffer
        buffer += data
        replies: list[Any] = []
        stack = self._stack
        size = len(buffer)
        pos = 0
        value: Any
        while True:
            if self._bulk >= 0:  # the body of a bulk string
                stop = pos + self._bulk
                if size < stop + 2:
                    break
                if buffer[stop:stop + 2] != b"\r\n":
                    raise RedisProtocolError("a RESP bulk string does not end with CRLF")
                value = bytes(buffer[pos:stop])
                pos = stop + 2
                self._bulk = -1
            else:
                end = buffer.find(b"\r\n", max(pos, self._scan))
                if end < 0:
                    self._scan = max(pos, size - 1)  # a CR may be the last byte so far
                    break
                kind = buffer[pos]
                line = bytes(buffer[pos + 1:end])
                pos = end + 2
                try:
                    if kind == 0x24:  # $ bulk string
                        length = int(line)
                        if length >= 0:
                            self._bulk = length
                            continue
                        value = None
                    elif kind == 0x2A:  # * array
                        count = int(line)
                        if count > 0:
                            if len(stack) >= self._max_depth:
                                raise RedisProtocolError("RESP arrays nested too deeply")
                            stack.append(([], count))
                            continue
                        value = [] if count == 0 else None
                    elif kind == 0x2B:  # + simple string
                        value = line.decode("utf-8", "replace")
                    elif kind == 0x2D:  # - error
                        value = RedisReplyError(line.decode("utf-8", "replace"))
                    elif kind == 0x3A:  # : integer
                        value = int(line)
                    else:
                        raise RedisProtocolError(f"unknown RESP type byte {kind:#04x}")
                except ValueError:
                    raise RedisProtocolError(f"bad RESP line {line[:40]!r}") from None
            # A value is complete: it fills the innermost open array, perhaps completing it
            # (and its parents) in turn, or it is a reply.
            while stack:
                items, count = stack[-1]
                items.append(value)
                if len(items) < count:
                    break
                stack.pop()
                value = items
            else:
                replies.append(value)
        if pos:
            del buffer[:pos]
            self._scan = max(0, self._scan - pos)
        return replies


class _HiredisReader:
    # hiredis.Reader behind the ReplyReader interface.
    __slots__ = ("_reader",)

    def __init__(self, reader: Any) -> None:
        self._reader = reader

    def feed(self, data: bytes) -> list[Any]:
        reader = self._reader
        reader.feed(data)
        replies = []
        reply = reader.gets()
        while reply is not False:  # False: no complete reply (RESP2 has no booleans)
            replies.append(reply)
            reply = reader.gets()
        return replies


def push_reader() -> ReplyReader:
    """A reader for a subscribed connection: ``hiredis.Reader`` when hiredis is installed
    (error replies as :class:`RedisReplyError`, bad data raising
    :class:`RedisProtocolError`), else a :class:`RespParser`."""
    try:
        import hiredis
    except ImportError:  # pragma: no cover - hiredis is a dependency
        return RespParser()
    return _HiredisReader(hiredis.Reader(protocolError=RedisProtocolError,
                                         replyError=RedisReplyError))
