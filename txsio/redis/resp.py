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
        pos = head = end = 0
        bulk = self._bulk
        scan = self._scan
        value: Any = None
        try:
            while True:
                if bulk < 0:  # a line: a reply's type byte and text, up to CRLF
                    end = buffer.find(b"\r\n", scan if scan > pos else pos)
                    if end < 0:
                        scan = size - 1 if size - 1 > pos else pos  # a CR may end the data
                        break
                    kind = buffer[pos]
                    head = pos + 1
                    pos = end + 2
                    if kind == 0x24:  # $ bulk string: its body follows
                        bulk = int(buffer[head:end])
                        if bulk < 0:
                            bulk = -1
                            value = None
                    elif kind == 0x2A:  # * array
                        count = int(buffer[head:end])
                        if count > 0:
                            if len(stack) >= self._max_depth:
                                raise RedisProtocolError("RESP arrays nested too deeply")
                            stack.append(([], count))
                            continue
                        value = [] if count == 0 else None
                    elif kind == 0x3A:  # : integer
                        value = int(buffer[head:end])
                    elif kind == 0x2B:  # + simple string
                        value = buffer[head:end].decode("utf-8", "replace")
                    elif kind == 0x2D:  # - error
                        value = RedisReplyError(buffer[head:end].decode("utf-8", "replace"))
                    else:
                        raise RedisProtocolError(f"unknown RESP type byte {kind:#04x}")
                if bulk >= 0:  # the body of a bulk string
                    stop = pos + bulk
                    if size < stop + 2:
                        break
                    if buffer[stop] != 0x0D or buffer[stop + 1] != 0x0A:
                        raise RedisProtocolError("a RESP bulk string does not end with CRLF")
                    value = bytes(buffer[pos:stop])
                    pos = stop + 2
                    bulk = -1
                # A value is complete: it fills the innermost open array, perhaps completing
                # it (and its parents) in turn, or it is a reply.
                while stack:
                    items, count = stack[-1]
                    items.append(value)
                    if len(items) < count:
                        break
                    stack.pop()
                    value = items
                else:
                    replies.append(value)
        except ValueError:
            raise RedisProtocolError(f"bad RESP line {bytes(buffer[head:end][:40])!r}") from None
        self._bulk = bulk
        if pos:
            del buffer[:pos]
            scan = scan - pos if scan > pos else 0
        self._scan = scan
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
