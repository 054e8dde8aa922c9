"""Scale out on Redis, in the wire format of Node's ``@socket.io/redis-adapter`` 8.x.

A txsio node joins a cluster of Node ``socket.io`` nodes (or of txsio nodes, or both) as a full
peer: broadcasts, ``fetch_sockets``, ``sockets_join`` / ``sockets_leave`` /
``disconnect_sockets``, ``server_side_emit`` with acknowledgements and broadcasts with
acknowledgements all travel through Redis exactly as Node's classic (PUBLISH / SUBSCRIBE)
adapter sends them; :class:`Emitter` speaks ``@socket.io/redis-emitter`` 5.x::

    from txsio.redis import redis_adapter

    io = txsio.Server(adapter=redis_adapter("redis://127.0.0.1:6379", key="socket.io"))

What is here, bottom to top:

- a small RESP2 client on Twisted (:class:`RedisConnection`): payloads stay ``bytes`` from the
  socket to the adapter (msgpack must never go through a text codec), commands time out
  instead of hanging, and the connection comes back by itself with capped exponential backoff
  on an injected clock;
- the messages of the classic adapter (msgpack of ``[uid, packet, opts]`` for broadcasts, JSON
  or msgpack requests and responses, told apart by their first byte);
- :class:`RedisAdapter`, one per namespace, and :class:`RedisAdapterFactory` (what
  :func:`redis_adapter` returns), which shares one publishing and one subscribed connection
  between the namespaces of one :class:`~txsio.Server`;
- :class:`ShardedRedisAdapter`, the same in the format of Node's ``createShardedAdapter``
  (``redis_adapter(url, sharded=True)``: Redis 7 sharded pub/sub, ``{type, data, uid, nsp}``
  messages, room channels), sharing everything but the messages with the classic one;
- :class:`RemoteSocket` for the sockets that ``fetch_sockets`` finds on other nodes;
- :class:`Emitter`, for any Python process that is not a Socket.IO server.

Theory of operation
-------------------
Channels, per namespace ``NSP`` and key prefix ``P``: broadcasts on ``P#NSP#`` and, when a
broadcast names exactly one room, ``P#NSP#<room>#`` (every node ``PSUBSCRIBE``\\s ``P#NSP#*``);
requests on ``P-request#NSP#``; responses on ``P-response#NSP#`` (and
``P-response#NSP#<uid>#`` for responders that answer on the requester's own channel).  Each
adapter has a random six-character ``uid``.

Nodes are counted with ``PUBSUB NUMSUB P-request#NSP#``: every subscriber of the request channel
is a node, this one included.  So this node subscribes that channel exactly once, on one
connection, and answers every request that expects an answer (an empty one when it has
nothing), or Node requesters would wait for their timeout.

Own echoes: a broadcast or a server-side emit carrying this adapter's ``uid`` is dropped; a
``fetch_sockets`` / ``all_rooms`` / broadcast-with-ack request whose ``requestId`` this adapter
is waiting for is its own and is not answered.  ``sockets_join`` / ``sockets_leave`` /
``disconnect_sockets`` are applied locally when called and their echo (same ``uid``) is
dropped; Node applies them when its own echo comes back instead: either way, once.  Messages
without a ``uid`` (the emitter's) are always applied.

A broadcast is delivered locally at once and published once, without waiting for Redis; a
``local`` broadcast is never published.  When Redis is away, local delivery goes on, cluster
operations (``fetch_sockets``, ``all_rooms``, ``server_count``, acknowledged emits) fail at once
with :class:`RedisUnavailableError`, fire-and-forget ones are dropped, and the outage is logged
once, when it starts and when it ends.  The connections come back with backoff and re-subscribe.
"""

from __future__ import annotations

import dataclasses
import json
import math
import random
import secrets
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

import msgpack
from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from .adapter import Adapter, BroadcastFlags, BroadcastOptions, Recipient
from .broadcast import BroadcastOperator
from .exceptions import AckTimeoutError, SocketIOError
from .protocol import RESERVED_EVENTS, Packet, PacketType
from .socket import Handshake

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IAddress,
        IDelayedCall,
        IReactorTime,
        IStreamClientEndpoint,
    )

    from .namespace import Namespace

__all__ = [
    "Emitter",
    "EmitterBroadcastOperator",
    "MessageType",
    "RedisAdapter",
    "RedisAdapterFactory",
    "RedisAddress",
    "RedisConnection",
    "RedisError",
    "RedisProtocolError",
    "RedisReplyError",
    "RedisUnavailableError",
    "RemoteSocket",
    "RequestTimeoutError",
    "RequestType",
    "RespParser",
    "ShardedRedisAdapter",
    "encode_command",
    "redis_adapter",
]

log = Logger()


# ---- errors -------------------------------------------------------------------------------


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


class RequestTimeoutError(AckTimeoutError):
    """Not every node answered a cluster request (``fetch_sockets``, ``all_rooms``) in time.

    :attr:`responses` holds what did arrive (this node's own part included).
    """


# ---- Redis URL ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RedisAddress:
    """Where Redis is, from a URL ``redis://[[username]:password@]host[:port][/db]``.

    :ivar host: the host name or address (default ``127.0.0.1``).
    :ivar port: the TCP port (default 6379).
    :ivar username: for ``AUTH username password`` (Redis 6 ACLs), or ``None``.
    :ivar password: for ``AUTH``, or ``None``.
    :ivar db: the database selected on the publishing connection (pub/sub ignores it).
    """

    host: str = "127.0.0.1"
    port: int = 6379
    username: str | None = None
    password: str | None = None
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """Read a ``redis://`` URL.

        :raises ValueError: for another scheme (``rediss://``, TLS, is not supported) or a
            malformed URL.
        """
        parts = urlsplit(url)
        if parts.scheme != "redis":
            raise ValueError(f"not a redis:// URL: {url!r} (TLS, rediss://, is not supported)")
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        path = parts.path.strip("/")
        if path and not path.isdigit():
            raise ValueError(f"the path of a Redis URL is a database number, not {path!r}")
        return cls(
            host=parts.hostname or "127.0.0.1",
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            db=int(path) if path else 0,
        )

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


# ---- RESP2 --------------------------------------------------------------------------------


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


class _Incomplete(Exception):
    pass


_INCOMPLETE = _Incomplete()


class RespParser:
    """An incremental RESP2 reply parser: :meth:`feed` bytes, get the finished replies.

    Replies are ``str`` (simple strings), :class:`RedisReplyError` instances (error replies,
    returned, not raised), ``int``, ``bytes`` or ``None`` (bulk strings, kept raw) and lists
    or ``None`` (arrays).

    :param max_depth: the deepest nesting of arrays accepted.
    """

    def __init__(self, *, max_depth: int = 8) -> None:
        self._buffer = bytearray()
        self._max_depth = max_depth

    def feed(self, data: bytes) -> list[Any]:
        """Add ``data``; return the replies it completes, in order.

        :raises RedisProtocolError: when the data is not RESP2.
        """
        buffer = self._buffer
        buffer += data
        replies: list[Any] = []
        pos = 0
        size = len(buffer)
        try:
            while pos < size:
                reply, pos = self._parse(buffer, pos, 0)
                replies.append(reply)
        except _Incomplete:
            pass
        if pos:
            del buffer[:pos]
        return replies

    def _parse(self, buffer: bytearray, pos: int, depth: int) -> tuple[Any, int]:
        end = buffer.find(b"\r\n", pos)
        if end < 0:
            raise _INCOMPLETE
        kind = buffer[pos]
        line = bytes(buffer[pos + 1:end])
        pos = end + 2
        try:
            if kind == 0x24:  # $ bulk string
                length = int(line)
                if length < 0:
                    return None, pos
                stop = pos + length
                if len(buffer) < stop + 2:
                    raise _INCOMPLETE
                return bytes(buffer[pos:stop]), stop + 2
            if kind == 0x2A:  # * array
                count = int(line)
                if count < 0:
                    return None, pos
                if depth >= self._max_depth:
                    raise RedisProtocolError("RESP arrays nested too deeply")
                items = []
                for _ in range(count):
                    item, pos = self._parse(buffer, pos, depth + 1)
                    items.append(item)
                return items, pos
            if kind == 0x2B:  # + simple string
                return line.decode("utf-8", "replace"), pos
            if kind == 0x2D:  # - error
                return RedisReplyError(line.decode("utf-8", "replace")), pos
            if kind == 0x3A:  # : integer
                return int(line), pos
        except ValueError:
            raise RedisProtocolError(f"bad RESP line {line[:40]!r}") from None
        raise RedisProtocolError(f"unknown RESP type byte {kind:#04x}")


class _Pending:
    __slots__ = ("deferred", "remaining", "sent")

    def __init__(self, deferred: Deferred[Any], remaining: int, sent: float) -> None:
        self.deferred = deferred
        self.remaining = remaining
        self.sent = sent


class _RedisProtocol(Protocol):
    """One TCP connection speaking RESP2.

    Twisted calls ``connectionMade``, ``dataReceived`` and ``connectionLost``;
    :class:`RedisConnection` calls :meth:`command`.  Replies are matched to commands in order;
    on a subscribed connection, ``message`` / ``pmessage`` / ``smessage`` pushes go to
    ``on_push`` instead.
    A command left unanswered for ``timeout`` seconds drops the connection (replies could no
    longer be matched), failing every pending command.
    """

    def __init__(self, clock: IReactorTime, timeout: float,
                 on_push: Callable[[list[Any]], None] | None) -> None:
        self._clock = clock
        self._timeout = timeout
        self._on_push = on_push
        self._parser = RespParser()
        self._pending: deque[_Pending] = deque()
        self._watchdog: IDelayedCall | None = None
        self.on_lost: Callable[[_RedisProtocol, Failure], None] | None = None
        self.lost = False
        self.why = ""

    def connectionMade(self) -> None:
        transport = self.transport
        set_keepalive = getattr(transport, "setTcpKeepAlive", None)
        if set_keepalive is not None:
            set_keepalive(1)

    def command(self, args: Sequence[bytes | str | int], replies: int = 1) -> Deferred[Any]:
        """Send one command; the Deferred fires with its (last) reply, or fails with
        :class:`RedisReplyError` or :class:`RedisUnavailableError`."""
        if self.lost or self.transport is None:
            return fail(RedisUnavailableError(f"connection lost: {self.why}"))
        d: Deferred[Any] = Deferred()
        self._pending.append(_Pending(d, replies, self._clock.seconds()))
        if self._watchdog is None:
            self._watchdog = self._clock.callLater(self._timeout, self._check)
        self.transport.write(encode_command(args))
        return d

    def _check(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        now = self._clock.seconds()
        due = self._pending[0].sent + self._timeout
        if now < due:
            self._watchdog = self._clock.callLater(due - now, self._check)
            return
        self._fail(f"no reply from Redis within {self._timeout:g} s")
        if self.transport is not None:
            self.transport.abortConnection()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self._parser.feed(data)
        except RedisProtocolError as e:
            log.warn("dropping the Redis connection: {why}", why=e)
            self._fail(str(e))
            if self.transport is not None:
                self.transport.abortConnection()  # type: ignore[attr-defined]
            return
        for reply in replies:
            self._reply(reply)

    def _reply(self, reply: Any) -> None:
        if self._on_push is not None and isinstance(reply, list) and reply and (
                reply[0] in _PUSHES):
            self._on_push(reply)
            return
        if not self._pending:
            log.debug("unexpected Redis reply {reply!r}", reply=reply)
            return
        entry = self._pending[0]
        entry.remaining -= 1
        if entry.remaining > 0:
            return
        self._pending.popleft()
        if not entry.deferred.called:
            if isinstance(reply, RedisReplyError):
                entry.deferred.errback(reply)
            else:
                entry.deferred.callback(reply)

    def _fail(self, why: str) -> None:
        self.why = why
        pending, self._pending = self._pending, deque()
        for entry in pending:
            if not entry.deferred.called:
                entry.deferred.errback(RedisUnavailableError(why))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        if self._watchdog is not None:
            if self._watchdog.active():
                self._watchdog.cancel()
            self._watchdog = None
        self._fail(self.why or f"connection lost: {reason.getErrorMessage()}")
        if self.on_lost is not None:
            self.on_lost(self, reason)


#: The replies a subscribed connection gets unasked: messages of (sharded) channels and
#: patterns.
_PUSHES = frozenset((b"message", b"pmessage", b"smessage"))


def _ignore_cancelled(failure: Failure) -> None:
    if not isinstance(failure.value, CancelledError):
        log.failure("connecting to Redis failed", failure)


class _ProtocolFactory(Factory):
    noisy = False

    def __init__(self, build: Callable[[], _RedisProtocol]) -> None:
        self._build = build

    def buildProtocol(self, addr: IAddress | None) -> _RedisProtocol:
        return self._build()


class RedisConnection:
    """A connection to Redis that comes back by itself.

    It connects when :meth:`start` is called.  Commands sent while the *first* attempt is in
    progress wait for it; after that, a command sent while disconnected fails at once with
    :class:`RedisUnavailableError` (never waits for a reconnection).  A lost or failed
    connection is retried after ``min_delay`` seconds, doubling up to ``max_delay`` (with some
    jitter), on ``clock``.

    :param endpoint: how to reach Redis (e.g. a ``HostnameEndpoint``).
    :param address: the address (for ``AUTH`` / ``SELECT`` and messages).
    :param clock: the clock of every timer.
    :param on_push: for a subscribed connection: called with each ``message`` / ``pmessage``
        reply (a list of bytes).
    :param on_ready: called each time the connection is (again) usable.
    :param on_down: called with the reason each time it stops being usable, or an attempt
        fails.
    :param command_timeout: seconds a command may wait for its reply before the connection is
        considered dead.
    :param select_db: whether to ``SELECT`` the address's database.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        address: RedisAddress,
        *,
        clock: IReactorTime,
        on_push: Callable[[list[Any]], None] | None = None,
        on_ready: Callable[[], None] | None = None,
        on_down: Callable[[str], None] | None = None,
        command_timeout: float = 5.0,
        min_delay: float = 0.1,
        max_delay: float = 5.0,
        select_db: bool = True,
    ) -> None:
        self.endpoint = endpoint
        self.address = address
        self._clock = clock
        self._on_push = on_push
        self._on_ready = on_ready
        self._on_down = on_down
        self.command_timeout = command_timeout
        self.min_delay = min_delay
        self.max_delay = max_delay
        self._select_db = select_db
        #: the usable protocol, or None
        self.protocol: _RedisProtocol | None = None
        self._closed = True
        self._ever_connected = False
        self._attempt = 0
        self._connecting: Deferred[_RedisProtocol] | None = None
        self._retry: IDelayedCall | None = None
        self._queue: list[tuple[Sequence[bytes | str | int], int, Deferred[Any]]] = []
        self._gone: list[Deferred[None]] = []
        #: why the last attempt failed or the connection was lost
        self.last_error = ""

    @property
    def ready(self) -> bool:
        """Whether commands can be sent now."""
        return self.protocol is not None

    def start(self) -> None:
        """Start connecting (nothing if already started)."""
        if not self._closed:
            return
        self._closed = False
        self._ever_connected = False
        self._attempt = 0
        self._connect()

    # -- connecting ------------------------------------------------------------------------

    def _build(self) -> _RedisProtocol:
        return _RedisProtocol(self._clock, self.command_timeout, self._on_push)

    def _connect(self) -> None:
        self._retry = None
        d = Deferred.fromCoroutine(self._open())
        self._connecting = d
        d.addCallbacks(self._opened, self._open_failed)

    async def _open(self) -> _RedisProtocol:
        proto = cast(_RedisProtocol, await self.endpoint.connect(_ProtocolFactory(self._build)))
        try:
            address = self.address
            if address.password is not None:
                auth: list[bytes | str | int] = ["AUTH"]
                if address.username is not None:
                    auth.append(address.username)
                auth.append(address.password)
                await proto.command(auth)
            if self._select_db and address.db:
                await proto.command(["SELECT", address.db])
        except BaseException:
            if proto.transport is not None:
                proto.transport.abortConnection()  # type: ignore[attr-defined]
            raise
        return proto

    def _opened(self, proto: _RedisProtocol) -> None:
        self._connecting = None
        if self._closed or proto.lost:
            if not proto.lost and proto.transport is not None:
                proto.transport.loseConnection()
            if not self._closed:
                self._down("connection lost during the handshake")
            return
        proto.on_lost = self._lost
        self.protocol = proto
        self._attempt = 0
        self._ever_connected = True
        self.last_error = ""
        queue, self._queue = self._queue, []
        for args, replies, d in queue:
            proto.command(args, replies).chainDeferred(d)
        if self._on_ready is not None:
            self._on_ready()

    def _open_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self._closed:
            return
        self._down(failure.getErrorMessage() or repr(failure.value))

    def _lost(self, proto: _RedisProtocol, reason: Failure) -> None:
        if proto is not self.protocol:
            return
        self.protocol = None
        if self._closed:
            gone, self._gone = self._gone, []
            for d in gone:
                d.callback(None)
            return
        self._down(proto.why or f"connection lost: {reason.getErrorMessage()}")

    def _down(self, why: str) -> None:
        self.last_error = why
        queue, self._queue = self._queue, []
        for _, _, d in queue:
            d.errback(self._unavailable())
        delay = min(self.max_delay, self.min_delay * 2 ** min(self._attempt, 30))
        self._attempt += 1
        self._retry = self._clock.callLater(delay * random.uniform(0.8, 1.0), self._connect)
        if self._on_down is not None:
            self._on_down(why)

    def _unavailable(self) -> RedisUnavailableError:
        return RedisUnavailableError(
            f"Redis at {self.address} is unavailable ({self.last_error or 'not connected'})")

    # -- commands --------------------------------------------------------------------------

    def command(self, *args: bytes | str | int, replies: int = 1) -> Deferred[Any]:
        """Send a command; fire with its reply.

        :param replies: how many replies the command gets (``SUBSCRIBE`` gets one per channel).
        :raises RedisUnavailableError: (in the Deferred) when not connected.
        :raises RedisReplyError: (in the Deferred) for an error reply.
        """
        proto = self.protocol
        if proto is not None:
            return proto.command(args, replies)
        if not self._closed and not self._ever_connected and self._connecting is not None:
            d: Deferred[Any] = Deferred()
            self._queue.append((args, replies, d))
            return d
        if self._closed:
            return fail(RedisUnavailableError(f"the connection to Redis at {self.address} "
                                              "is closed"))
        return fail(self._unavailable())

    def close(self) -> Deferred[None]:
        """Stop reconnecting and close the connection; fire once it is closed."""
        self._closed = True
        if self._retry is not None:
            if self._retry.active():
                self._retry.cancel()
            self._retry = None
        queue, self._queue = self._queue, []
        for _, _, d in queue:
            d.errback(RedisUnavailableError("the connection to Redis was closed"))
        if self._connecting is not None:
            connecting, self._connecting = self._connecting, None
            connecting.addErrback(_ignore_cancelled)
            connecting.cancel()
        proto = self.protocol
        if proto is None or proto.transport is None:
            self.protocol = None
            return succeed(None)
        gone: Deferred[None] = Deferred()
        self._gone.append(gone)
        proto.transport.loseConnection()
        return gone


# ---- encoding -----------------------------------------------------------------------------


class RequestType:
    """Request and response types of the classic adapter (and of the emitter)."""

    SOCKETS = 0
    ALL_ROOMS = 1
    REMOTE_JOIN = 2
    REMOTE_LEAVE = 3
    REMOTE_DISCONNECT = 4
    REMOTE_FETCH = 5
    SERVER_SIDE_EMIT = 6
    BROADCAST = 7
    BROADCAST_CLIENT_COUNT = 8
    BROADCAST_ACK = 9


_UID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def new_uid() -> str:
    """A random 6-character id, like Node's ``uid2(6)`` (adapter uids and request ids)."""
    return "".join(secrets.choice(_UID_CHARS) for _ in range(6))


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _js_date(ms: float) -> str | None:
    # Date.prototype.toJSON: what a Node node's client would see for a Date.
    try:
        when = _EPOCH + timedelta(milliseconds=ms)
    except (OverflowError, ValueError):
        return None
    return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:"
            f"{when.minute:02d}:{when.second:02d}.{when.microsecond // 1000:03d}Z")


def _ext_hook(code: int, data: bytes) -> Any:
    # notepack.io's extension types other than the timestamp (-1, which msgpack decodes).
    if code == 0:
        if len(data) == 1:
            return None  # notepack's legacy "undefined"
        if len(data) == 8:
            return _js_date(int.from_bytes(data[:4], "big", signed=True) * 2 ** 32
                            + int.from_bytes(data[4:], "big"))  # legacy Date
        return bytes(data)  # legacy ArrayBuffer
    return [code, bytes(data)]  # notepack.io decodes other types as [type, buffer]


# Timestamp headers: fixext 4 / fixext 8 / ext 8 (length 12), type -1.
_TIMESTAMP_MARKS = (b"\xd6\xff", b"\xd7\xff", b"\xc7\x0c\xff")


def unpack(data: bytes) -> Any:
    """Decode notepack.io's msgpack: ``bin`` as ``bytes``, dates (timestamps) as the ISO text
    ``Date.toJSON`` gives, ``undefined`` as ``None``."""
    value = msgpack.unpackb(data, raw=False, strict_map_key=False, ext_hook=_ext_hook)
    if any(mark in data for mark in _TIMESTAMP_MARKS):
        value = _replace_timestamps(value)
    return value


def _replace_timestamps(value: Any) -> Any:
    def convert(item: Any) -> Any:
        if isinstance(item, msgpack.Timestamp):
            return _js_date(item.seconds * 1000 + item.nanoseconds // 1_000_000)
        return item

    if not isinstance(value, (list, dict)):
        return convert(value)
    stack: list[Any] = [value]
    while stack:
        container = stack.pop()
        keys = container.keys() if isinstance(container, dict) else range(len(container))
        for key in keys:
            item = container[key]
            if isinstance(item, (list, dict)):
                stack.append(item)
            elif isinstance(item, msgpack.Timestamp):
                container[key] = convert(item)
    return value


def pack(value: Any) -> bytes:
    """Encode as notepack.io does: ``bytes`` as ``bin``, ``str`` as ``str``, tuples as arrays."""
    return cast(bytes, msgpack.packb(value, use_bin_type=True, datetime=False))


def _buffer_json(value: bytes | bytearray | memoryview) -> dict[str, Any]:
    return {"type": "Buffer", "data": list(bytes(value))}


def _json_default(value: Any) -> Any:
    # What JSON.stringify makes of the values a Node peer would have in their place.
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _buffer_json(value)
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return _js_date((aware - _EPOCH) / timedelta(milliseconds=1))
    if isinstance(value, (set, frozenset)):
        return {}  # JSON.stringify(new Set([1])) is {}
    raise TypeError(f"{type(value).__name__} cannot be sent as JSON")


def _lenient_default(value: Any) -> Any:
    try:
        return _json_default(value)
    except TypeError:
        return None


def _finite(value: Any) -> Any:
    # A copy with NaN and the infinities as None (JSON.stringify writes null for them).
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any, *, lenient: bool = False) -> bytes:
    """JSON text as Node's ``JSON.stringify`` writes it (compact, UTF-8, NaN as ``null``,
    ``bytes`` as ``{"type":"Buffer","data":[..]}``).

    :param lenient: write ``null`` for values JSON cannot carry instead of raising (for the
        answers this node owes its peers).
    :raises TypeError: for a value JSON cannot carry (unless ``lenient``).
    :raises ValueError: for a reference cycle or nesting too deep.
    """
    default = _lenient_default if lenient else _json_default
    try:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                          default=default)
    except ValueError:
        try:
            text = json.dumps(_finite(value), separators=(",", ":"), ensure_ascii=False,
                              allow_nan=False, default=default)
        except RecursionError:
            raise ValueError("data nested too deeply to encode") from None
    except RecursionError:
        raise ValueError("data nested too deeply to encode") from None
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them, as JSON.stringify does
        return json.dumps(json.loads(text), separators=(",", ":")).encode("ascii")


def decode_message(data: bytes) -> Any:
    """A request or response body: JSON when it starts with ``{``, else msgpack.

    :raises ValueError: when it is neither.
    """
    if data[:1] == b"{":
        return json.loads(data)
    try:
        return unpack(data)
    except Exception as e:
        raise ValueError(f"not msgpack: {e}") from None


def _flags_to_wire(flags: BroadcastFlags) -> dict[str, Any]:
    wire: dict[str, Any] = {}
    if flags.volatile:
        wire["volatile"] = True
    if flags.timeout is not None:
        wire["timeout"] = round(flags.timeout * 1000)
    return wire


def _flags_from_wire(flags: Any) -> BroadcastFlags:
    if not isinstance(flags, dict) or not flags:
        return BroadcastFlags()
    timeout = flags.get("timeout")
    return BroadcastFlags(
        volatile=bool(flags.get("volatile")),
        timeout=timeout / 1000 if isinstance(timeout, (int, float)) and timeout > 0 else None,
    )


def _room_names(value: Any) -> frozenset[str]:
    # Room names are strings; socket.io tolerates numbers, which travel as JSON numbers.
    if not isinstance(value, list):
        return frozenset()
    return frozenset(_room_name(room) for room in value if isinstance(room, (str, int, float))
                     and not isinstance(room, bool))


def _room_name(room: str | int | float) -> str:
    if isinstance(room, float) and room.is_integer():
        return str(int(room))
    return str(room)


def _options_from_wire(opts: Any) -> BroadcastOptions:
    if not isinstance(opts, dict):
        return BroadcastOptions()
    return BroadcastOptions(_room_names(opts.get("rooms")), _room_names(opts.get("except")),
                            _flags_from_wire(opts.get("flags")))


def _wire_packet(packet: Packet, nsp: str) -> dict[str, Any]:
    return {"type": int(PacketType.EVENT), "data": packet.data, "nsp": nsp}


def broadcast_channel(prefix: str, rooms: Iterable[str]) -> str:
    """The channel of a broadcast: ``P#NSP#<room>#`` for exactly one room, else ``P#NSP#``.

    :param prefix: ``P#NSP#``.
    """
    rooms = list(rooms)
    return f"{prefix}{rooms[0]}#" if len(rooms) == 1 else prefix


def encode_broadcast(uid: str, packet: Packet, opts: BroadcastOptions) -> bytes:
    """The msgpack message of a broadcast: ``[uid, packet, {rooms, except, flags}]``."""
    return pack([uid, _wire_packet(packet, packet.nsp), {
        "rooms": sorted(opts.rooms),
        "except": sorted(opts.except_rooms),
        "flags": _flags_to_wire(opts.flags),
    }])


def _wire_opts(opts: BroadcastOptions) -> dict[str, Any]:
    return {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms)}


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _handshake_from_wire(value: Any) -> Handshake:
    hs = value if isinstance(value, dict) else {}

    def text(key: str) -> str:
        item = hs.get(key)
        return item if isinstance(item, str) else ""

    def mapping(key: str) -> dict[str, Any]:
        item = hs.get(key)
        return dict(item) if isinstance(item, dict) else {}

    issued = hs.get("issued")
    return Handshake(
        headers=mapping("headers"),
        time=text("time"),
        address=text("address"),
        xdomain=bool(hs.get("xdomain")),
        secure=bool(hs.get("secure")),
        issued=int(issued) if isinstance(issued, (int, float)) else 0,
        url=text("url"),
        query=mapping("query"),
        auth=mapping("auth"),
    )


def socket_details(socket: Recipient) -> dict[str, Any]:
    """What a ``fetch_sockets`` answer says of a local socket: ``id``, ``handshake`` (Node's
    shape), ``rooms`` (its own id first) and ``data``."""
    rooms = socket.rooms
    rooms.discard(socket.id)
    return {
        "id": socket.id,
        "handshake": dataclasses.asdict(socket.handshake),
        "rooms": [socket.id, *sorted(rooms)],
        "data": socket.data,
    }


# ---- remote sockets -----------------------------------------------------------------------


class _RemoteEmitter:
    """``remote_socket.timeout(s)``: an emit that waits for the client's acknowledgement."""

    __slots__ = ("_socket", "_timeout")

    def __init__(self, socket: RemoteSocket, timeout: float) -> None:
        self._socket = socket
        self._timeout = timeout

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit ``event``; fire with the client's acknowledgement (one value, a tuple for
        several), or fail with :class:`~txsio.AckTimeoutError`."""
        operator = self._socket._operator().timeout(self._timeout)
        d = operator.emit_with_ack(event, *args)

        def single(answers: list[Any]) -> Any:
            if not answers:
                raise AckTimeoutError("the socket did not acknowledge")
            return answers[0]

        return d.addCallback(single)


class RemoteSocket:
    """A socket connected to another node of the cluster, as ``fetch_sockets`` reports it
    (Node's ``RemoteSocket``).

    Its methods act through the cluster: :meth:`emit` is a broadcast to the socket's own room,
    :meth:`join` / :meth:`leave` / :meth:`disconnect` are ``sockets_join`` /
    ``sockets_leave`` / ``disconnect_sockets`` on it.

    :ivar id: the socket id.
    :ivar handshake: its :class:`~txsio.Handshake`, as the other node reported it.
    :ivar rooms: the rooms it was in (its own id included).
    :ivar data: its ``data``, as JSON carried it.
    """

    def __init__(self, nsp: Namespace, details: Mapping[str, Any]) -> None:
        self.nsp = nsp
        self.id: str = str(details["id"])
        self.handshake = _handshake_from_wire(details.get("handshake"))
        rooms = details.get("rooms")
        self.rooms: set[str] = set(_room_names(rooms)) if isinstance(rooms, list) else set()
        self.data: Any = details.get("data")

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} {self.nsp.name}>"

    def _operator(self) -> BroadcastOperator:
        return BroadcastOperator(self.nsp, frozenset((self.id,)))

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` to this socket's client."""
        self._operator().emit(event, *args)

    def timeout(self, seconds: float) -> _RemoteEmitter:
        """``remote.timeout(5).emit_with_ack(...)``: wait at most 5 s for the answer."""
        return _RemoteEmitter(self, float(seconds))

    def join(self, room: str | Iterable[str]) -> None:
        """Make the socket join ``room`` (a name or several)."""
        self._operator().sockets_join(room)

    def leave(self, room: str) -> None:
        """Make the socket leave ``room``."""
        self._operator().sockets_leave(room)

    def disconnect(self, close: bool = False) -> RemoteSocket:
        """Disconnect the socket (``close``: its whole connection)."""
        self._operator().disconnect_sockets(close)
        return self


# ---- the adapter --------------------------------------------------------------------------


class _Request:
    __slots__ = ("deferred", "items", "msg_count", "num_sub", "timer", "type")

    def __init__(self, rtype: int, num_sub: int, deferred: Deferred[Any], items: Any) -> None:
        self.type = rtype
        self.num_sub = num_sub
        self.deferred = deferred
        self.items = items
        self.msg_count = 1
        self.timer: IDelayedCall | None = None


class _AckRequest:
    __slots__ = ("ack", "client_count_callback", "timer")

    def __init__(self, client_count_callback: Callable[[int], None],
                 ack: Callable[[list[Any]], None]) -> None:
        self.client_count_callback = client_count_callback
        self.ack = ack
        self.timer: IDelayedCall | None = None


#: What handles the messages of a channel: ``handler(channel, message)``.
_Handler = Callable[[bytes, bytes], None]


class RedisAdapter(Adapter):
    """The Redis adapter of one namespace (made by :class:`RedisAdapterFactory`), in the
    classic format (Node's ``createAdapter``).

    Rooms and local delivery are the in-memory adapter's; this class adds the cluster: it
    publishes what other nodes must see and applies what they publish.  What travels how is
    in the ``_..._message`` and ``_reply_...`` methods, which :class:`ShardedRedisAdapter`
    overrides; the rest is shared.

    :param nsp: the namespace.
    :param factory: the factory that owns the Redis connections.
    :ivar uid: this adapter's random id on the wire.
    """

    def __init__(self, nsp: Namespace, factory: RedisAdapterFactory) -> None:
        super().__init__(nsp)
        #: the namespace itself, for the broadcast operators of the remote sockets it finds
        self.namespace = nsp
        self.factory = factory
        self.uid = self._new_id()
        self._clock = nsp.server.clock
        key = factory.key
        name = nsp.name
        self.channel = f"{key}#{name}#"
        self._channel_bytes = self.channel.encode("utf-8")
        self._requests: dict[str, _Request] = {}
        self._ack_requests: dict[str, _AckRequest] = {}
        self._timers: set[IDelayedCall] = set()
        self._closed = False
        self._init_channels(key, name)

    def _init_channels(self, key: str, name: str) -> None:
        self.request_channel = f"{key}-request#{name}#"
        self.response_channel = f"{key}-response#{name}#"
        self.specific_response_channel = f"{self.response_channel}{self.uid}#"
        self.pattern = _glob_escape(self.channel) + "*"
        self._request_bytes = self.request_channel.encode("utf-8")

    @staticmethod
    def _new_id() -> str:
        return new_uid()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.nsp.name} uid={self.uid}>"

    # -- lifecycle -------------------------------------------------------------------------

    def init(self) -> Deferred[None]:
        """Subscribe this namespace's channels; fires once Redis confirmed them (or, without
        failing, when the factory is closed first)."""
        return self.factory._attach(self).addErrback(lambda _: None)

    def _subscriptions(self) -> tuple[dict[bytes, _Handler], dict[bytes, _Handler]]:
        """The channels and the patterns this adapter listens to, with their handlers."""
        channels: dict[bytes, _Handler] = {
            self.request_channel.encode("utf-8"): self._on_request,
            self.response_channel.encode("utf-8"): self._on_response,
            self.specific_response_channel.encode("utf-8"): self._on_response,
        }
        return channels, {self.pattern.encode("utf-8"): self._on_broadcast}

    def close(self) -> Deferred[None]:
        """Unsubscribe, fail the requests still waiting, and let the factory close its
        connections when no namespace uses them any more."""
        if self._closed:
            return succeed(None)
        self._closed = True
        requests, self._requests = self._requests, {}
        for request in requests.values():
            self._cancel_timer(request.timer)
            if not request.deferred.called:
                request.deferred.errback(RedisError(
                    f"the Redis adapter of namespace {self.nsp.name} was closed"))
        ack_requests, self._ack_requests = self._ack_requests, {}
        for ack_request in ack_requests.values():
            self._cancel_timer(ack_request.timer)
        timers, self._timers = self._timers, set()
        for timer in timers:
            self._cancel_timer(timer)
        return self.factory._detach(self)

    @staticmethod
    def _cancel_timer(timer: IDelayedCall | None) -> None:
        if timer is not None and timer.active():
            timer.cancel()

    def server_count(self) -> Deferred[int]:
        """The number of nodes that serve this namespace (``PUBSUB NUMSUB`` of the request
        channel), this one included; fails with :class:`RedisUnavailableError` when Redis is
        away."""
        return self.factory._numsub(self._request_bytes)

    # -- the classic messages (ShardedRedisAdapter has its own) ----------------------------

    def _broadcast_message(self, packet: Packet, opts: BroadcastOptions) -> tuple[str, bytes]:
        message = encode_broadcast(self.uid, replace_nsp(packet, self.nsp.name), opts)
        return broadcast_channel(self.channel, opts.rooms), message

    def _broadcast_ack_message(self, request_id: str, packet: Packet,
                               opts: BroadcastOptions) -> tuple[str, bytes]:
        return self.request_channel, pack({
            "uid": self.uid,
            "requestId": request_id,
            "type": RequestType.BROADCAST,
            "packet": _wire_packet(packet, self.nsp.name),
            "opts": {**_wire_opts(opts), "flags": _flags_to_wire(opts.flags)},
        })

    def _operation_message(self, rtype: int, opts: BroadcastOptions,
                           fields: dict[str, Any]) -> tuple[str, bytes]:
        # sockets_join / sockets_leave / disconnect_sockets (classic request types 2, 3, 4)
        return self.request_channel, dumps({"uid": self.uid, "type": rtype,
                                            "opts": _wire_opts(opts), **fields})

    def _fetch_message(self, request_id: str, opts: BroadcastOptions) -> tuple[str, bytes]:
        return self.request_channel, dumps({"uid": self.uid, "requestId": request_id,
                                            "type": RequestType.REMOTE_FETCH,
                                            "opts": _wire_opts(opts)})

    def _server_side_emit_message(self, args: list[Any],
                                  request_id: str | None) -> tuple[str, bytes]:
        body: dict[str, Any] = {"uid": self.uid}
        if request_id is not None:
            body["requestId"] = request_id
        body.update(type=RequestType.SERVER_SIDE_EMIT, data=args)
        return self.request_channel, dumps(body)

    def _response_channel(self, request: Mapping[str, Any]) -> str:
        channel = self.response_channel
        uid = request.get("uid")
        if self.factory.publish_on_specific_response_channel and isinstance(uid, str):
            channel = f"{channel}{uid}#"
        return channel

    def _publish_response(self, request: Mapping[str, Any], message: bytes) -> None:
        self._publish(self._response_channel(request), message, "a response")

    def _reply_sockets(self, request: Mapping[str, Any], request_id: Any,
                       sockets: list[dict[str, Any]]) -> None:
        self._publish_response(request, dumps({"requestId": request_id, "sockets": sockets},
                                              lenient=True))

    def _reply_answer(self, request: Mapping[str, Any], request_id: Any, value: Any) -> None:
        body: dict[str, Any] = {"type": RequestType.SERVER_SIDE_EMIT, "requestId": request_id}
        if value is not None:
            body["data"] = value
        # Always the shared response channel (Node ignores the specific one here).
        self._publish(self.response_channel, dumps(body, lenient=True), "an acknowledgement")

    def _reply_client_count(self, request: Mapping[str, Any], request_id: Any,
                            count: int) -> None:
        self._publish_response(request, dumps({
            "type": RequestType.BROADCAST_CLIENT_COUNT,
            "requestId": request_id,
            "clientCount": count,
        }))

    def _reply_client_ack(self, request: Mapping[str, Any], request_id: Any,
                          args: list[Any]) -> None:
        body: dict[str, Any] = {"type": RequestType.BROADCAST_ACK, "requestId": request_id}
        if args:
            body["packet"] = args[0]
        try:
            message = pack(body)
        except (TypeError, ValueError, OverflowError) as e:
            log.warn("cannot forward a client's acknowledgement: {why}", why=e)
            return
        self._publish_response(request, message)

    # -- publishing ------------------------------------------------------------------------

    def _publish(self, channel: str | bytes, message: bytes, what: str) -> None:
        d = self.factory._publish(channel, message)
        d.addErrback(self.factory._publish_failed, what, self.nsp.name)

    # -- broadcasts ------------------------------------------------------------------------

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Deliver locally, and publish once for the other nodes (unless ``local``)."""
        if not opts.flags.local:
            self._publish(*self._broadcast_message(packet, opts), "a broadcast")
        super().broadcast(packet, opts)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count_callback: Callable[[int], None],
        ack: Callable[[list[Any]], None],
    ) -> None:
        """Deliver locally with acknowledgements and ask the other nodes to do the same: each
        answers with its client count, then with each client's acknowledgement."""
        if not opts.flags.local:
            request_id = self._new_id()
            timeout = opts.flags.timeout
            if timeout is None:
                timeout = self.factory.requests_timeout
            channel, message = self._broadcast_ack_message(request_id, packet, opts)
            entry = _AckRequest(client_count_callback, ack)
            self._ack_requests[request_id] = entry
            # Answers cannot be told complete here: forget the request after its timeout.
            entry.timer = self._clock.callLater(timeout, self._ack_requests.pop, request_id,
                                                None)
            self._publish(channel, message, "a broadcast with acknowledgements")
        super().broadcast_with_ack(packet, opts, client_count_callback, ack)

    def _on_broadcast(self, channel: bytes, data: bytes) -> None:
        """A message on ``P#NSP#`` or ``P#NSP#<room>#`` (called by the factory)."""
        if self._closed:
            return
        room = channel[len(self._channel_bytes):-1]
        if room and room.decode("utf-8", "replace") not in self.rooms:
            return  # a room without members here: not even decoded
        try:
            message = unpack(data)
        except Exception as e:
            log.debug("ignoring a malformed broadcast on {channel!r}: {why}", channel=channel,
                      why=e)
            return
        if not isinstance(message, list) or len(message) < 3:
            return
        uid, wire_packet, opts = message[0], message[1], message[2]
        if uid == self.uid or not isinstance(wire_packet, dict):
            return
        if wire_packet.get("nsp", "/") != self.nsp.name:
            return
        self._apply_broadcast(wire_packet, opts)

    def _apply_broadcast(self, wire_packet: Mapping[str, Any], opts: Any) -> None:
        # Another node's broadcast, to the sockets here.
        data_list = wire_packet.get("data")
        if not isinstance(data_list, list) or not data_list:
            return
        try:
            packet = Packet(PacketType.EVENT, self.nsp.name, data_list)
        except (TypeError, ValueError) as e:
            log.debug("ignoring a broadcast with a bad packet: {why}", why=e)
            return
        Adapter.broadcast(self, packet, _options_from_wire(opts))

    # -- requests from other nodes ---------------------------------------------------------

    def _decode(self, data: bytes, what: str) -> dict[str, Any] | None:
        try:
            message = decode_message(data)
        except ValueError as e:
            log.debug("ignoring a malformed {what}: {why}", what=what, why=e)
            return None
        return message if isinstance(message, dict) else None

    def _on_request(self, channel: bytes, data: bytes) -> None:
        """A message on ``P-request#NSP#`` (called by the factory)."""
        if self._closed:
            return
        request = self._decode(data, "request")
        if request is None:
            return
        rtype = request.get("type")
        handler = self._request_handlers.get(rtype) if isinstance(rtype, int) else None
        if handler is None:
            log.debug("ignoring a request of unknown type {type!r}", type=rtype)
            return
        handler(self, request)

    def _own(self, request: Mapping[str, Any]) -> bool:
        return request.get("requestId") in self._requests

    def _on_sockets(self, request: dict[str, Any]) -> None:
        if self._own(request):
            return
        opts = BroadcastOptions(_room_names(request.get("rooms")))
        sids: list[str] = []
        self._apply(opts, lambda socket: sids.append(socket.id))
        self._publish_response(request, dumps({"requestId": request.get("requestId"),
                                               "sockets": sids}))

    def _on_all_rooms(self, request: dict[str, Any]) -> None:
        if self._own(request):
            return
        self._publish_response(request, dumps({"requestId": request.get("requestId"),
                                               "rooms": list(self.rooms)}))

    def _legacy_socket(self, request: dict[str, Any]) -> Recipient | None:
        sid = request.get("sid")
        return self.nsp.sockets.get(sid) if isinstance(sid, str) else None

    def _legacy_done(self, request: dict[str, Any]) -> None:
        self._publish_response(request, dumps({"requestId": request.get("requestId")}))

    def _apply_join(self, request: Mapping[str, Any]) -> None:
        rooms = sorted(_room_names(request.get("rooms")))
        Adapter.add_sockets(self, _options_from_wire(request.get("opts")), rooms)

    def _apply_leave(self, request: Mapping[str, Any]) -> None:
        rooms = sorted(_room_names(request.get("rooms")))
        Adapter.del_sockets(self, _options_from_wire(request.get("opts")), rooms)

    def _apply_disconnect(self, request: Mapping[str, Any]) -> None:
        Adapter.disconnect_sockets(self, _options_from_wire(request.get("opts")),
                                   bool(request.get("close")))

    def _on_remote_join(self, request: dict[str, Any]) -> None:
        if "opts" in request:
            if request.get("uid") != self.uid:  # applied locally when it was sent
                self._apply_join(request)
            return
        socket = self._legacy_socket(request)
        room = request.get("room")
        if socket is not None and isinstance(room, str):
            socket.join(room)
            self._legacy_done(request)

    def _on_remote_leave(self, request: dict[str, Any]) -> None:
        if "opts" in request:
            if request.get("uid") != self.uid:
                self._apply_leave(request)
            return
        socket = self._legacy_socket(request)
        room = request.get("room")
        if socket is not None and isinstance(room, str):
            socket.leave(room)
            self._legacy_done(request)

    def _on_remote_disconnect(self, request: dict[str, Any]) -> None:
        if "opts" in request:
            if request.get("uid") != self.uid:
                self._apply_disconnect(request)
            return
        socket = self._legacy_socket(request)
        if socket is not None:
            socket.disconnect(bool(request.get("close")))
            self._legacy_done(request)

    def _on_remote_fetch(self, request: dict[str, Any]) -> None:
        if self._own(request):
            return
        self._answer_fetch(request, request)

    def _answer_fetch(self, request: Mapping[str, Any], body: Mapping[str, Any]) -> None:
        found: list[Any] = []
        self._apply(_options_from_wire(body.get("opts")), found.append)
        self._reply_sockets(request, body.get("requestId"),
                            [socket_details(socket) for socket in found])

    def _on_server_side_emit(self, request: dict[str, Any]) -> None:
        if request.get("uid") == self.uid:
            return
        self._answer_server_side_emit(request, request.get("data"), request.get("requestId"))

    def _answer_server_side_emit(self, request: Mapping[str, Any], args: Any,
                                 request_id: Any) -> None:
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            return
        if request_id is None:
            self.nsp.on_server_side_emit(args, None)
            return
        answered = False

        def answer(value: Any) -> None:
            nonlocal answered
            if answered or self._closed:
                return
            answered = True
            self._reply_answer(request, request_id, value)

        self.nsp.on_server_side_emit(args, answer)

    def _on_broadcast_request(self, request: dict[str, Any]) -> None:
        if request.get("requestId") in self._ack_requests:
            return  # our own
        self._answer_broadcast_with_ack(request, request)

    def _answer_broadcast_with_ack(self, request: Mapping[str, Any],
                                   body: Mapping[str, Any]) -> None:
        request_id = body.get("requestId")
        wire_packet = body.get("packet")
        if not isinstance(wire_packet, dict):
            return
        data_list = wire_packet.get("data")
        if not isinstance(data_list, list) or not data_list:
            return
        opts = _options_from_wire(body.get("opts"))
        try:
            packet = Packet(PacketType.EVENT, self.nsp.name, data_list, self.nsp.next_ack_id())
        except (TypeError, ValueError) as e:
            log.debug("ignoring a broadcast with a bad packet: {why}", why=e)
            return

        def client_count(count: int) -> None:
            self._reply_client_count(request, request_id, count)

        def ack(args: list[Any]) -> None:
            self._reply_client_ack(request, request_id, args)

        Adapter.broadcast_with_ack(self, packet, opts, client_count, ack)
        # The requester stops waiting after the timeout: so do the sockets here.
        ack_id = packet.id
        assert ack_id is not None
        timeout = opts.flags.timeout or self.factory.requests_timeout
        timers = self._timers

        def forget() -> None:
            timers.discard(timer)
            self._forget_acks(ack_id, ack)

        timer = self._clock.callLater(timeout, forget)
        timers.add(timer)

    def _forget_acks(self, ack_id: int, ack: Callable[[list[Any]], None]) -> None:
        for socket in self.nsp.sockets.values():
            socket.forget_ack(ack_id, ack)

    _request_handlers: dict[int, Callable[[RedisAdapter, dict[str, Any]], None]] = {
        RequestType.SOCKETS: _on_sockets,
        RequestType.ALL_ROOMS: _on_all_rooms,
        RequestType.REMOTE_JOIN: _on_remote_join,
        RequestType.REMOTE_LEAVE: _on_remote_leave,
        RequestType.REMOTE_DISCONNECT: _on_remote_disconnect,
        RequestType.REMOTE_FETCH: _on_remote_fetch,
        RequestType.SERVER_SIDE_EMIT: _on_server_side_emit,
        RequestType.BROADCAST: _on_broadcast_request,
    }

    # -- responses -------------------------------------------------------------------------

    def _on_response(self, channel: bytes, data: bytes) -> None:
        """A message on ``P-response#NSP#`` or this adapter's own response channel."""
        if self._closed:
            return
        response = self._decode(data, "response")
        if response is None:
            return
        request_id = response.get("requestId")
        if not isinstance(request_id, str):
            return
        rtype = response.get("type")
        if rtype == RequestType.BROADCAST_CLIENT_COUNT:
            self._got_client_count(request_id, response.get("clientCount"))
        elif rtype == RequestType.BROADCAST_ACK:
            self._got_client_ack(request_id, response)
        elif rtype == RequestType.SERVER_SIDE_EMIT:
            self._got_answer(request_id, response.get("data"))
        else:
            request = self._requests.get(request_id)
            if request is None:
                return
            if request.type == RequestType.REMOTE_FETCH:
                self._got_sockets(request_id, response.get("sockets"))
            elif request.type == RequestType.ALL_ROOMS:
                rooms = response.get("rooms")
                if isinstance(rooms, list):
                    request.items.update(_room_names(rooms))
                self._got_one(request_id, request)

    def _got_client_count(self, request_id: Any, count: Any) -> None:
        ack_request = self._ack_requests.get(request_id)
        if ack_request is not None and isinstance(count, int):
            ack_request.client_count_callback(count)

    def _got_client_ack(self, request_id: Any, body: Mapping[str, Any]) -> None:
        ack_request = self._ack_requests.get(request_id)
        if ack_request is not None:
            ack_request.ack([body["packet"]] if "packet" in body else [])

    def _got_answer(self, request_id: Any, value: Any) -> None:
        request = self._requests.get(request_id)
        if request is None or request.type != RequestType.SERVER_SIDE_EMIT:
            return
        request.items.append(value)
        if len(request.items) >= request.num_sub:
            self._finish(request_id, request.items)

    def _got_sockets(self, request_id: Any, sockets: Any) -> None:
        request = self._requests.get(request_id)
        if request is None or request.type != RequestType.REMOTE_FETCH:
            return
        if isinstance(sockets, list):
            for details in sockets:
                if isinstance(details, dict) and "id" in details:
                    request.items.append(RemoteSocket(self.namespace, details))
        self._got_one(request_id, request)

    def _got_one(self, request_id: str, request: _Request) -> None:
        request.msg_count += 1
        if request.msg_count >= request.num_sub:
            self._finish(request_id, request.items)

    def _finish(self, request_id: str, result: Any) -> None:
        request = self._requests.pop(request_id, None)
        if request is None:
            return
        self._cancel_timer(request.timer)
        if not request.deferred.called:
            request.deferred.callback(result)

    # -- cluster requests ------------------------------------------------------------------

    def _request(self, rtype: int, num_sub: int, items: Any, request_id: str,
                 message: tuple[str, bytes], on_timeout: Callable[[_Request], Exception],
                 timeout: float | None = None) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        request = _Request(rtype, num_sub, d, items)
        self._requests[request_id] = request

        def expire() -> None:
            request.timer = None
            if self._requests.pop(request_id, None) is not None and not d.called:
                d.errback(on_timeout(request))

        request.timer = self._clock.callLater(
            self.factory.requests_timeout if timeout is None else timeout, expire)
        published = self.factory._publish(*message)

        def not_sent(failure: Failure) -> None:
            if self._requests.pop(request_id, None) is not None:
                self._cancel_timer(request.timer)
                if not d.called:
                    d.errback(failure)

        published.addErrback(not_sent)
        return d

    def all_rooms(self) -> Deferred[set[str]]:
        """Every room of the namespace across the cluster (socket-id rooms included).

        Fails with :class:`RequestTimeoutError` when a node does not answer within the
        factory's ``requests_timeout``, or :class:`RedisUnavailableError`.
        """
        return Deferred.fromCoroutine(self._all_rooms())

    async def _all_rooms(self) -> set[str]:
        local = set(self.rooms)
        num_sub = await self.server_count()
        if num_sub <= 1:
            return local

        def timed_out(request: _Request) -> Exception:
            return RequestTimeoutError("timeout reached while waiting for allRooms response",
                                       responses=sorted(request.items))

        request_id = self._new_id()
        message = (self.request_channel, dumps({"uid": self.uid, "requestId": request_id,
                                                "type": RequestType.ALL_ROOMS}))
        result: set[str] = await self._request(RequestType.ALL_ROOMS, num_sub, local,
                                               request_id, message, timed_out)
        return result

    def fetch_sockets(self, opts: BroadcastOptions) -> Deferred[list[Any]]:
        """The sockets ``opts`` selects: local :class:`~txsio.Socket`\\ s, then the
        :class:`RemoteSocket`\\ s of the other nodes (only local ones with ``local``).

        Fails with :class:`RequestTimeoutError` when a node does not answer in time, or
        :class:`RedisUnavailableError`.
        """
        local: list[Any] = []
        self._apply(opts, local.append)
        if opts.flags.local:
            return succeed(local)
        return Deferred.fromCoroutine(self._fetch_sockets(opts, local))

    async def _fetch_sockets(self, opts: BroadcastOptions, local: list[Any]) -> list[Any]:
        num_sub = await self.server_count()
        if num_sub <= 1:
            return local

        def timed_out(request: _Request) -> Exception:
            return RequestTimeoutError("timeout reached while waiting for fetchSockets response",
                                       responses=list(request.items))

        request_id = self._new_id()
        result: list[Any] = await self._request(
            RequestType.REMOTE_FETCH, num_sub, local, request_id,
            self._fetch_message(request_id, opts), timed_out, self._fetch_timeout(opts))
        return result

    def _fetch_timeout(self, opts: BroadcastOptions) -> float | None:
        return None

    def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make the selected sockets of every node join ``rooms``."""
        if not opts.flags.local:
            self._publish(*self._operation_message(RequestType.REMOTE_JOIN, opts,
                                                   {"rooms": list(rooms)}), "sockets_join")
        super().add_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make the selected sockets of every node leave ``rooms``."""
        if not opts.flags.local:
            self._publish(*self._operation_message(RequestType.REMOTE_LEAVE, opts,
                                                   {"rooms": list(rooms)}), "sockets_leave")
        super().del_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        """Disconnect the selected sockets of every node."""
        if not opts.flags.local:
            self._publish(*self._operation_message(RequestType.REMOTE_DISCONNECT, opts,
                                                   {"close": close}), "disconnect_sockets")
        super().disconnect_sockets(opts, close)

    def server_side_emit(self, args: list[Any]) -> None:
        """Send ``[event, *args]`` to the other nodes' server-side handlers."""
        self._publish(*self._server_side_emit_message(list(args), None), "server_side_emit")

    def server_side_emit_with_ack(self, args: list[Any],
                                  timeout: float | None = None) -> Deferred[list[Any]]:
        """Send ``[event, *args]`` to the other nodes; fire with one answer per node.

        :param timeout: seconds to wait (default: the factory's ``requests_timeout``).
        :returns: a Deferred of the answers; it fails with :class:`~txsio.AckTimeoutError`
            (its ``responses`` holding those that arrived) when a node does not answer in
            time, or with :class:`RedisUnavailableError`.
        """
        request_id = self._new_id()
        try:  # fail now for what the message cannot carry
            message = self._server_side_emit_message(list(args), request_id)
        except (TypeError, ValueError, OverflowError) as e:
            return fail(e)
        return Deferred.fromCoroutine(
            self._server_side_emit_with_ack(request_id, message, timeout))

    async def _server_side_emit_with_ack(self, request_id: str, message: tuple[str, bytes],
                                         timeout: float | None) -> list[Any]:
        num_sub = await self.server_count() - 1  # not this node
        if num_sub <= 0:
            return []

        def timed_out(request: _Request) -> Exception:
            return AckTimeoutError(f"timeout reached: only {len(request.items)} responses "
                                   f"received out of {request.num_sub}",
                                   responses=list(request.items))

        result: list[Any] = await self._request(RequestType.SERVER_SIDE_EMIT, num_sub, [],
                                                request_id, message, timed_out, timeout)
        return result


class MessageType:
    """Message types of the sharded adapter (socket.io-adapter's ``ClusterAdapter``)."""

    INITIAL_HEARTBEAT = 1
    HEARTBEAT = 2
    BROADCAST = 3
    SOCKETS_JOIN = 4
    SOCKETS_LEAVE = 5
    DISCONNECT_SOCKETS = 6
    FETCH_SOCKETS = 7
    FETCH_SOCKETS_RESPONSE = 8
    SERVER_SIDE_EMIT = 9
    SERVER_SIDE_EMIT_RESPONSE = 10
    BROADCAST_CLIENT_COUNT = 11
    BROADCAST_ACK = 12
    ADAPTER_CLOSE = 13


#: The types whose ``data`` Node checks for binary (then msgpack, else JSON).
_MAY_CONTAIN_BINARY = frozenset((
    MessageType.BROADCAST, MessageType.BROADCAST_ACK, MessageType.FETCH_SOCKETS_RESPONSE,
    MessageType.SERVER_SIDE_EMIT, MessageType.SERVER_SIDE_EMIT_RESPONSE))

#: The classic operation types, as the sharded adapter numbers them.
_SHARDED_OPERATIONS = {
    RequestType.REMOTE_JOIN: MessageType.SOCKETS_JOIN,
    RequestType.REMOTE_LEAVE: MessageType.SOCKETS_LEAVE,
    RequestType.REMOTE_DISCONNECT: MessageType.DISCONNECT_SOCKETS,
}

SUBSCRIPTION_MODES = ("dynamic", "dynamic-private", "static")


def has_binary(value: Any) -> bool:
    """Whether ``value`` holds ``bytes`` anywhere (Node's ``hasBinary``)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, (bytes, bytearray, memoryview)):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return False


def encode_cluster_message(mtype: int, data: Mapping[str, Any], uid: str, nsp: str, *,
                           lenient: bool = False) -> bytes:
    """A message of the sharded adapter, ``{type, data, uid, nsp}``: msgpack when ``data``
    holds binary (types 3, 8, 9, 10 and 12 only), else JSON."""
    message = {"type": mtype, "data": data, "uid": uid, "nsp": nsp}
    if mtype in _MAY_CONTAIN_BINARY and has_binary(data):
        return pack(message)
    return dumps(message, lenient=lenient)


def _cluster_opts(opts: BroadcastOptions) -> dict[str, Any]:
    return {**_wire_opts(opts), "flags": _flags_to_wire(opts.flags)}


def looks_like_a_socket_id(room: str) -> bool:
    """Node's sharded adapter takes a 20-character room for a socket id (no own channel)."""
    return len(room) == 20


class ShardedRedisAdapter(RedisAdapter):
    """The Redis adapter of one namespace in the sharded format (Node's
    ``createShardedAdapter``: ``SPUBLISH`` / ``SSUBSCRIBE``, Redis 7 or later); made by
    :class:`RedisAdapterFactory` with ``sharded=True``.

    Channels: ``P#NSP#`` for every node, ``P#NSP#<uid>#`` for the answers to this node, and
    in the ``dynamic`` subscription mode ``P#NSP#<room>#`` for each room that exists here
    and is not a socket id (``dynamic-private``: socket ids too; ``static``: none).  Every
    message is ``{type, data, uid, nsp}``; messages with this adapter's ``uid`` are dropped
    (the sender applies everything locally itself).  Nodes are counted with
    ``PUBSUB SHARDNUMSUB P#NSP#``.  There is no ``all_rooms`` request in this format.
    """

    def _init_channels(self, key: str, name: str) -> None:
        self.mode = self.factory.subscription_mode
        self.response_channel = f"{self.channel}{self.uid}#"
        self._response_bytes = self.response_channel.encode("utf-8")
        #: room -> its channel, for the rooms whose channel this adapter subscribed
        self._room_channels: dict[str, bytes] = {}

    @staticmethod
    def _new_id() -> str:
        return secrets.token_hex(8)

    def _subscriptions(self) -> tuple[dict[bytes, _Handler], dict[bytes, _Handler]]:
        channels: dict[bytes, _Handler] = {self._channel_bytes: self._on_message,
                    self._response_bytes: self._on_message}
        channels.update(dict.fromkeys(self._room_channels.values(), self._on_message))
        return channels, {}

    def server_count(self) -> Deferred[int]:
        """The number of nodes that serve this namespace (``PUBSUB SHARDNUMSUB P#NSP#``),
        this one included."""
        return self.factory._numsub(self._channel_bytes)

    def all_rooms(self) -> Deferred[set[str]]:
        """Not in the sharded format: fails with :class:`RedisError`."""
        return fail(RedisError("all_rooms is not available with the sharded Redis adapter"))

    # -- dynamic room channels -------------------------------------------------------------

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        """Add socket ``sid`` to ``rooms``; subscribe the channel of each room created
        (in the dynamic modes)."""
        if self.mode == "static":
            super().add_all(sid, rooms)
            return
        rooms = list(rooms)
        created = [room for room in rooms if room not in self.rooms]
        super().add_all(sid, rooms)
        if self._closed:
            return
        for room in created:
            if self.mode == "dynamic-private" or room not in self.sids:
                channel = f"{self.channel}{room}#".encode()
                self._room_channels[room] = channel
                self.factory._add_channel(channel, self._on_message)

    def _del(self, room: str, sid: str) -> None:
        super()._del(room, sid)
        channel = self._room_channels.get(room)
        if channel is not None and room not in self.rooms:
            del self._room_channels[room]
            self.factory._remove_channel(channel)

    # -- the sharded messages --------------------------------------------------------------

    def _message(self, mtype: int, data: dict[str, Any], *, lenient: bool = False) -> bytes:
        return encode_cluster_message(mtype, data, self.uid, self.nsp.name, lenient=lenient)

    def _broadcast_message(self, packet: Packet, opts: BroadcastOptions) -> tuple[str, bytes]:
        channel = self.channel
        if len(opts.rooms) == 1 and self.mode != "static":
            [room] = opts.rooms
            if self.mode == "dynamic-private" or not looks_like_a_socket_id(room):
                channel = f"{self.channel}{room}#"
        return channel, self._message(MessageType.BROADCAST, {
            "packet": {"type": int(PacketType.EVENT), "data": packet.data},
            "opts": _cluster_opts(opts)})

    def _broadcast_ack_message(self, request_id: str, packet: Packet,
                               opts: BroadcastOptions) -> tuple[str, bytes]:
        # Always the namespace's channel: every node counts its clients.
        return self.channel, self._message(MessageType.BROADCAST, {
            "packet": {"type": int(PacketType.EVENT), "data": packet.data},
            "requestId": request_id, "opts": _cluster_opts(opts)})

    def _operation_message(self, rtype: int, opts: BroadcastOptions,
                           fields: dict[str, Any]) -> tuple[str, bytes]:
        return self.channel, self._message(_SHARDED_OPERATIONS[rtype],
                                           {"opts": _cluster_opts(opts), **fields})

    def _fetch_message(self, request_id: str, opts: BroadcastOptions) -> tuple[str, bytes]:
        return self.channel, self._message(MessageType.FETCH_SOCKETS,
                                           {"opts": _cluster_opts(opts),
                                            "requestId": request_id})

    def _fetch_timeout(self, opts: BroadcastOptions) -> float | None:
        return opts.flags.timeout

    def _server_side_emit_message(self, args: list[Any],
                                  request_id: str | None) -> tuple[str, bytes]:
        data: dict[str, Any] = {"packet": args}
        if request_id is not None:
            data = {"requestId": request_id, **data}
        return self.channel, self._message(MessageType.SERVER_SIDE_EMIT, data)

    def _respond(self, request: Mapping[str, Any], mtype: int, data: dict[str, Any]) -> None:
        uid = request.get("uid")
        if not isinstance(uid, str):
            return
        try:
            message = self._message(mtype, data, lenient=True)
        except (TypeError, ValueError, OverflowError) as e:
            log.warn("cannot answer a request of another node: {why}", why=e)
            return
        self._publish(f"{self.channel}{uid}#", message, "a response")

    def _reply_sockets(self, request: Mapping[str, Any], request_id: Any,
                       sockets: list[dict[str, Any]]) -> None:
        self._respond(request, MessageType.FETCH_SOCKETS_RESPONSE,
                      {"requestId": request_id, "sockets": sockets})

    def _reply_answer(self, request: Mapping[str, Any], request_id: Any, value: Any) -> None:
        data: dict[str, Any] = {"requestId": request_id}
        if value is not None:
            data["packet"] = value
        self._respond(request, MessageType.SERVER_SIDE_EMIT_RESPONSE, data)

    def _reply_client_count(self, request: Mapping[str, Any], request_id: Any,
                            count: int) -> None:
        self._respond(request, MessageType.BROADCAST_CLIENT_COUNT,
                      {"requestId": request_id, "clientCount": count})

    def _reply_client_ack(self, request: Mapping[str, Any], request_id: Any,
                          args: list[Any]) -> None:
        data: dict[str, Any] = {"requestId": request_id}
        if args:
            data["packet"] = args[0]
        self._respond(request, MessageType.BROADCAST_ACK, data)

    # -- receiving -------------------------------------------------------------------------

    def _on_message(self, channel: bytes, data: bytes) -> None:
        """A message on any of this adapter's channels (called by the factory)."""
        if self._closed:
            return
        message = self._decode(data, "message")
        if message is None:
            return
        if channel == self._response_bytes:
            self._on_cluster_response(message)
            return
        if message.get("uid") == self.uid or message.get("nsp") != self.nsp.name:
            return
        mtype = message.get("type")
        body = message.get("data")
        if not isinstance(body, dict):
            return
        if mtype == MessageType.BROADCAST:
            if "requestId" in body:
                self._answer_broadcast_with_ack(message, body)
            elif isinstance(body.get("packet"), dict):
                self._apply_broadcast(body["packet"], body.get("opts"))
        elif mtype == MessageType.SOCKETS_JOIN:
            self._apply_join(body)
        elif mtype == MessageType.SOCKETS_LEAVE:
            self._apply_leave(body)
        elif mtype == MessageType.DISCONNECT_SOCKETS:
            self._apply_disconnect(body)
        elif mtype == MessageType.FETCH_SOCKETS:
            self._answer_fetch(message, body)
        elif mtype == MessageType.SERVER_SIDE_EMIT:
            self._answer_server_side_emit(message, body.get("packet"), body.get("requestId"))
        else:
            self._on_cluster_response(message)

    def _on_cluster_response(self, message: Mapping[str, Any]) -> None:
        body = message.get("data")
        if not isinstance(body, dict) or not isinstance(body.get("requestId"), str):
            return
        request_id = body["requestId"]
        mtype = message.get("type")
        if mtype == MessageType.BROADCAST_CLIENT_COUNT:
            self._got_client_count(request_id, body.get("clientCount"))
        elif mtype == MessageType.BROADCAST_ACK:
            self._got_client_ack(request_id, body)
        elif mtype == MessageType.FETCH_SOCKETS_RESPONSE:
            self._got_sockets(request_id, body.get("sockets"))
        elif mtype == MessageType.SERVER_SIDE_EMIT_RESPONSE:
            self._got_answer(request_id, body.get("packet"))


def replace_nsp(packet: Packet, nsp: str) -> Packet:
    """``packet`` in namespace ``nsp`` (the same object when it already is)."""
    return packet if packet.nsp == nsp else dataclasses.replace(packet, nsp=nsp)


# ---- the factory: one pub and one sub connection per server ------------------------------


class RedisAdapterFactory:
    """Makes the :class:`RedisAdapter` of each namespace of one :class:`~txsio.Server`, and
    owns the two Redis connections they share: one to publish and send commands, one
    subscribed.  Use one factory per server (a node): two servers sharing one would count as
    one node.

    Connections open when the first namespace is created and close when the last adapter is
    closed (``io.close()``); :meth:`close` closes them at once and fires when they are gone.

    :param url: ``redis://[[username]:password@]host[:port][/db]``.
    :param key: the channel prefix (Node's ``key`` option).
    :param requests_timeout: seconds to wait for the other nodes' answers (Node's
        ``requestsTimeout``, 5 s).
    :param publish_on_specific_response_channel: answer requests on the requester's own
        response channel (Node's option of that name).
    :param reactor: for the TCP connections and reconnection timers (default: the global
        reactor).
    :param command_timeout: seconds a Redis command may go unanswered before its connection
        is considered dead.
    :param min_reconnect_delay: first delay before reconnecting, in seconds; it doubles up
        to ``max_reconnect_delay``.
    :param max_reconnect_delay: the longest delay between two attempts.
    :param endpoint: how to reach Redis instead of the URL's host and port (any
        ``IStreamClientEndpoint``: a UNIX socket, TLS, or an in-memory one in tests).
    :param sharded: speak the format of Node's ``createShardedAdapter`` (sharded pub/sub,
        ``SPUBLISH`` / ``SSUBSCRIBE``, Redis 7 or later) instead of ``createAdapter``'s:
        each namespace gets a :class:`ShardedRedisAdapter` and ``key`` is Node's
        ``channelPrefix``.  Every node of a cluster must use the same format.
    :param subscription_mode: with ``sharded``, Node's ``subscriptionMode``: ``"dynamic"``
        (a channel per room that is not a socket id), ``"dynamic-private"`` (a channel per
        room) or ``"static"`` (only the namespace's channels).  All nodes must agree.
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379",
        *,
        key: str = "socket.io",
        requests_timeout: float = 5.0,
        publish_on_specific_response_channel: bool = False,
        reactor: Any = None,
        command_timeout: float = 5.0,
        min_reconnect_delay: float = 0.1,
        max_reconnect_delay: float = 5.0,
        endpoint: IStreamClientEndpoint | None = None,
        sharded: bool = False,
        subscription_mode: str = "dynamic",
    ) -> None:
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise ValueError(f"subscription_mode must be one of {', '.join(SUBSCRIPTION_MODES)}"
                             f", not {subscription_mode!r}")
        if reactor is None:
            from twisted.internet import reactor as global_reactor

            reactor = global_reactor
        self.address = RedisAddress.parse(url)
        self.key = key
        self.requests_timeout = float(requests_timeout)
        self.publish_on_specific_response_channel = publish_on_specific_response_channel
        self.sharded = sharded
        self.subscription_mode = subscription_mode
        # The commands of (sharded) pub/sub.
        self._publish_command = b"SPUBLISH" if sharded else b"PUBLISH"
        self._numsub_command = b"SHARDNUMSUB" if sharded else b"NUMSUB"
        self._subscribe_command = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
        self._unsubscribe_command = b"SUNSUBSCRIBE" if sharded else b"UNSUBSCRIBE"
        self.reactor = reactor
        if endpoint is None:
            endpoint = _endpoint(reactor, self.address, command_timeout)
        options: dict[str, Any] = {
            "clock": reactor,
            "command_timeout": command_timeout,
            "min_delay": min_reconnect_delay,
            "max_delay": max_reconnect_delay,
        }
        self.pub = RedisConnection(endpoint, self.address, on_ready=self._pub_ready,
                                   on_down=self._down, **options)
        self.sub = RedisConnection(endpoint, self.address, on_push=self._on_push,
                                   on_ready=self._sub_ready, on_down=self._down,
                                   select_db=False, **options)
        self.adapters: dict[str, RedisAdapter] = {}
        self._channels: dict[bytes, Callable[[bytes, bytes], None]] = {}
        self._patterns: dict[bytes, Callable[[bytes, bytes], None]] = {}
        self._in_flight = 0
        self._waiters: list[Deferred[None]] = []
        self._down_since: float | None = None
        self._refusals: set[str] = set()
        self._started = False
        self._closing: Deferred[None] | None = None

    def __call__(self, nsp: Namespace) -> RedisAdapter:
        """The adapter of ``nsp`` (``txsio.Server(adapter=factory)`` calls this)."""
        return (ShardedRedisAdapter if self.sharded else RedisAdapter)(nsp, self)

    def __repr__(self) -> str:
        sharded = f" sharded={self.subscription_mode}" if self.sharded else ""
        return f"<RedisAdapterFactory {self.address} key={self.key!r}{sharded}>"

    # -- connections -----------------------------------------------------------------------

    def _start(self) -> None:
        if self._started:
            return
        self._started = True
        self._closing = None
        self.pub.start()
        self.sub.start()

    def close(self) -> Deferred[None]:
        """Close both connections (the adapters stop reaching the cluster); fire once closed."""
        if self._closing is None:
            self._started = False
            self._closing = Deferred.fromCoroutine(self._close())
        return _chain(self._closing)

    async def _close(self) -> None:
        pub, sub = self.pub.close(), self.sub.close()
        await pub
        await sub
        for d in self._take_waiters():
            d.errback(RedisUnavailableError("the Redis adapter was closed"))

    def ready(self) -> Deferred[None]:
        """Fire once both connections are up and every subscription is confirmed (at once
        when they are).  For tests and orderly starts; nothing requires waiting for it."""
        if self._is_ready():
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._waiters.append(d)
        return d

    def _is_ready(self) -> bool:
        return self.pub.ready and self.sub.ready and self._in_flight == 0

    def _take_waiters(self) -> list[Deferred[None]]:
        waiters, self._waiters = self._waiters, []
        return waiters

    def _check_ready(self) -> None:
        if self._is_ready():
            for d in self._take_waiters():
                d.callback(None)

    def _pub_ready(self) -> None:
        self._up()

    def _sub_ready(self) -> None:
        # A new connection: subscribe everything again (NUMSUB then counts this node once).
        if self._channels:
            self._subscribe(self._subscribe_command, list(self._channels))
        if self._patterns:
            self._subscribe(b"PSUBSCRIBE", list(self._patterns))
        self._up()

    def _up(self) -> None:
        if self.pub.ready and self.sub.ready:
            if self._down_since is not None:
                log.info("Redis at {address} is back after {seconds:.1f} s: the adapter "
                         "re-subscribed and reaches the cluster again",
                         address=str(self.address),
                         seconds=self.reactor.seconds() - self._down_since)
                self._down_since = None
            else:
                log.info("connected to Redis at {address}", address=str(self.address))
        self._check_ready()

    def _down(self, why: str) -> None:
        if self._down_since is None and self._started:
            self._down_since = self.reactor.seconds()
            log.warn("Redis at {address} is unavailable ({why}): local delivery goes on, "
                     "cluster operations fail until it is back; reconnecting",
                     address=str(self.address), why=why)

    # -- subscriptions ---------------------------------------------------------------------

    def _subscribe(self, command: bytes, names: list[bytes]) -> Deferred[None]:
        self._in_flight += 1
        d = self.sub.command(command, *names, replies=len(names))

        def done(result: Any) -> None:
            self._in_flight -= 1
            if isinstance(result, Failure) and self._started:
                log.debug("{command} failed: {why}", command=command.decode(),
                          why=result.getErrorMessage())
            self._check_ready()

        d.addBoth(done)
        return d

    def _attach(self, adapter: RedisAdapter) -> Deferred[None]:
        name = adapter.nsp.name
        if name in self.adapters:
            raise ValueError(f"namespace {name} already has an adapter of this factory: "
                             "use one redis_adapter() per txsio.Server")
        self.adapters[name] = adapter
        channels, patterns = adapter._subscriptions()
        self._channels.update(channels)
        self._patterns.update(patterns)
        if self.sub.ready:  # else _sub_ready subscribes everything once connected
            self._subscribe(self._subscribe_command, list(channels))
            if patterns:
                self._subscribe(b"PSUBSCRIBE", list(patterns))
        self._start()
        return self.ready()

    def _detach(self, adapter: RedisAdapter) -> Deferred[None]:
        if self.adapters.get(adapter.nsp.name) is not adapter:
            return succeed(None)
        del self.adapters[adapter.nsp.name]
        channels, patterns = adapter._subscriptions()
        for channel in channels:
            self._channels.pop(channel, None)
        for pattern in patterns:
            self._patterns.pop(pattern, None)
        if not self.adapters:
            return self.close()  # e.g. io.close(): no need to unsubscribe first
        if self.sub.ready:
            self._subscribe(self._unsubscribe_command, list(channels))
            if patterns:
                self._subscribe(b"PUNSUBSCRIBE", list(patterns))
        return succeed(None)

    def _add_channel(self, channel: bytes, handler: Callable[[bytes, bytes], None]) -> None:
        """Subscribe one more channel (a room's, for the sharded adapter)."""
        if channel in self._channels:
            return
        self._channels[channel] = handler
        if self.sub.ready:
            self._subscribe(self._subscribe_command, [channel])

    def _remove_channel(self, channel: bytes) -> None:
        """Unsubscribe a channel :meth:`_add_channel` subscribed."""
        if self._channels.pop(channel, None) is not None and self.sub.ready:
            self._subscribe(self._unsubscribe_command, [channel])

    def _on_push(self, reply: list[Any]) -> None:
        try:
            if reply[0] != b"pmessage" and len(reply) == 3:  # message, smessage
                handler = self._channels.get(reply[1])
                channel, data = reply[1], reply[2]
            elif reply[0] == b"pmessage" and len(reply) == 4:
                handler = self._patterns.get(reply[1])
                channel, data = reply[2], reply[3]
            else:
                return
            if handler is not None and isinstance(data, bytes) and isinstance(channel, bytes):
                handler(channel, data)
        except Exception:
            log.failure("error handling a Redis message on {channel!r}", channel=reply[1:2])

    # -- commands --------------------------------------------------------------------------

    def _publish(self, channel: str | bytes, message: bytes) -> Deferred[Any]:
        return self.pub.command(self._publish_command, channel, message)

    def _publish_failed(self, failure: Failure, what: str, nsp: str) -> None:
        why = failure.getErrorMessage()
        if isinstance(failure.value, RedisUnavailableError) or why in self._refusals:
            # The outage itself is logged once, by _down; each refusal once too.
            log.debug("{what} of namespace {nsp} not published: {why}", what=what, nsp=nsp,
                      why=failure.getErrorMessage())
        else:
            if len(self._refusals) < 100:
                self._refusals.add(why)
            log.warn("{what} of namespace {nsp} not published: {why} (logged once)",
                     what=what, nsp=nsp, why=why)

    def _numsub(self, channel: bytes) -> Deferred[int]:
        d = self.pub.command(b"PUBSUB", self._numsub_command, channel)

        def count(reply: Any) -> int:
            if isinstance(reply, list) and len(reply) >= 2 and isinstance(reply[1], int):
                return reply[1]
            raise RedisProtocolError(f"unexpected PUBSUB reply {reply!r}")

        return d.addCallback(count)


def _chain(d: Deferred[None]) -> Deferred[None]:
    # A new Deferred with d's result, d keeping it for the next caller.
    out: Deferred[None] = Deferred()

    def relay(result: Any) -> Any:
        if isinstance(result, Failure):
            out.errback(result)
        else:
            out.callback(None)
        return result

    d.addBoth(relay)
    return out


def _endpoint(reactor: Any, address: RedisAddress, timeout: float) -> IStreamClientEndpoint:
    from twisted.internet.endpoints import HostnameEndpoint

    return cast("IStreamClientEndpoint",
                HostnameEndpoint(reactor, address.host, address.port, timeout=timeout))


def redis_adapter(url: str = "redis://127.0.0.1:6379", **options: Any) -> RedisAdapterFactory:
    """The adapter factory for ``txsio.Server(adapter=...)`` (Node's ``createAdapter``, or
    with ``sharded=True`` its ``createShardedAdapter``).

    ::

        io = txsio.Server(adapter=redis_adapter("redis://127.0.0.1:6379", key="socket.io"))
        io = txsio.Server(adapter=redis_adapter(url, sharded=True, subscription_mode="static"))

    :param url: where Redis is.
    :param options: see :class:`RedisAdapterFactory`.
    """
    return RedisAdapterFactory(url, **options)


# ---- the emitter --------------------------------------------------------------------------


class _EmitterTarget:
    # Where an emitter's messages go, shared by Emitter.of() and its operators.
    def __init__(self, key: str, publish: Callable[[str, bytes], Any],
                 connection: RedisConnection | None) -> None:
        self.key = key
        self.publish = publish
        self.connection = connection


class EmitterBroadcastOperator:
    """The sockets an :class:`Emitter` reaches, and what to do with them (immutable)."""

    __slots__ = ("_except", "_flags", "_nsp", "_rooms", "_target")

    def __init__(self, target: _EmitterTarget, nsp: str, rooms: tuple[str, ...] = (),
                 except_rooms: tuple[str, ...] = (),
                 flags: tuple[tuple[str, Any], ...] = ()) -> None:
        self._target = target
        self._nsp = nsp
        self._rooms = rooms
        self._except = except_rooms
        self._flags = flags

    def _with(self, *, rooms: tuple[str, ...] | None = None,
              except_rooms: tuple[str, ...] | None = None,
              flag: tuple[str, Any] | None = None) -> EmitterBroadcastOperator:
        flags = self._flags
        if flag is not None:
            flags = (*(f for f in flags if f[0] != flag[0]), flag)
        return EmitterBroadcastOperator(
            self._target, self._nsp,
            self._rooms if rooms is None else rooms,
            self._except if except_rooms is None else except_rooms, flags)

    def to(self, room: str | Iterable[str]) -> EmitterBroadcastOperator:
        """Also reach the sockets in ``room`` (a name or several)."""
        return self._with(rooms=_add_rooms(self._rooms, room))

    def in_(self, room: str | Iterable[str]) -> EmitterBroadcastOperator:
        """Same as :meth:`to`."""
        return self.to(room)

    def except_(self, room: str | Iterable[str]) -> EmitterBroadcastOperator:
        """Leave out the sockets in ``room`` (a name or several)."""
        return self._with(except_rooms=_add_rooms(self._except, room))

    @property
    def volatile(self) -> EmitterBroadcastOperator:
        """Dropped for clients not ready to receive it."""
        return self._with(flag=("volatile", True))

    def compress(self, compress: bool) -> EmitterBroadcastOperator:
        """Set the ``compress`` flag (Node's per-message deflate hint)."""
        return self._with(flag=("compress", bool(compress)))

    def _opts(self) -> dict[str, Any]:
        return {"rooms": list(self._rooms), "except": list(self._except)}

    def _send(self, channel: str, message: bytes) -> Any:
        return self._target.publish(channel, message)

    def emit(self, event: str, *args: Any) -> Any:
        """Emit ``event`` to the selected sockets of every node.

        :returns: what publishing returns: a Deferred of the number of subscribers reached
            (``PUBLISH``'s reply) for a URL emitter.
        :raises ValueError: for a reserved event name.
        """
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        message = pack(["emitter", {"type": int(PacketType.EVENT), "data": [event, *args],
                                    "nsp": self._nsp},
                        {"rooms": list(self._rooms), "flags": dict(self._flags),
                         "except": list(self._except)}])
        prefix = f"{self._target.key}#{self._nsp}#"
        return self._send(broadcast_channel(prefix, self._rooms), message)

    def _request(self, body: dict[str, Any]) -> Any:
        return self._send(f"{self._target.key}-request#{self._nsp}#", dumps(body))

    def sockets_join(self, room: str | Iterable[str]) -> Any:
        """Make the selected sockets join ``room`` (a name or several)."""
        return self._request({"type": RequestType.REMOTE_JOIN, "opts": self._opts(),
                              "rooms": list(_add_rooms((), room))})

    def sockets_leave(self, room: str | Iterable[str]) -> Any:
        """Make the selected sockets leave ``room`` (a name or several)."""
        return self._request({"type": RequestType.REMOTE_LEAVE, "opts": self._opts(),
                              "rooms": list(_add_rooms((), room))})

    def disconnect_sockets(self, close: bool = False) -> Any:
        """Disconnect the selected sockets (``close``: their whole connections)."""
        return self._request({"type": RequestType.REMOTE_DISCONNECT, "opts": self._opts(),
                              "close": bool(close)})


def _add_rooms(rooms: tuple[str, ...], room: str | Iterable[str]) -> tuple[str, ...]:
    new = (room,) if isinstance(room, str) else tuple(room)
    return (*rooms, *(r for r in new if r not in rooms))


class Emitter:
    """Emit to a Socket.IO cluster through Redis from any Python process, without being a
    Socket.IO server (Node's ``@socket.io/redis-emitter`` 5.x, same messages)::

        emitter = Emitter("redis://127.0.0.1:6379")
        yield emitter.to("room1").emit("news", {"hello": "world"})
        emitter.of("/admin").sockets_join("audit")
        yield emitter.close()

    Either ``url`` (a Twisted connection is made: methods return Deferreds, and commands
    sent before the connection is up wait for the first attempt) or ``publish`` (any function
    ``publish(channel: str, message: bytes)``, e.g. redis-py's ``Redis().publish``, whose
    result methods return).

    :param url: ``redis://...``.
    :param key: the channel prefix (``socket.io``).
    :param publish: a publishing function instead of a URL.
    :param nsp: the namespace (see :meth:`of`).
    :param reactor: for the connection (default: the global reactor).
    """

    def __init__(self, url: str | None = None, *, key: str = "socket.io",
                 publish: Callable[[str, bytes], Any] | None = None, nsp: str = "/",
                 reactor: Any = None, command_timeout: float = 5.0,
                 min_reconnect_delay: float = 0.1, max_reconnect_delay: float = 5.0) -> None:
        connection: RedisConnection | None = None
        if publish is None:
            if url is None:
                raise ValueError("an Emitter needs a Redis URL or a publish function")
            if reactor is None:
                from twisted.internet import reactor as global_reactor

                reactor = global_reactor
            address = RedisAddress.parse(url)
            down = _OutageLog(address, reactor)
            connection = RedisConnection(
                _endpoint(reactor, address, command_timeout), address, clock=reactor,
                on_ready=down.up, on_down=down.down, command_timeout=command_timeout,
                min_delay=min_reconnect_delay, max_delay=max_reconnect_delay)
            connection.start()

            def publish_command(channel: str, message: bytes) -> Deferred[Any]:
                assert connection is not None
                return connection.command(b"PUBLISH", channel, message)

            publish = publish_command
        self._target = _EmitterTarget(key, publish, connection)
        self.nsp = "/" + nsp.lstrip("/") if nsp != "/" else "/"

    def _operator(self) -> EmitterBroadcastOperator:
        return EmitterBroadcastOperator(self._target, self.nsp)

    def of(self, nsp: str) -> Emitter:
        """The same emitter for namespace ``nsp`` (a missing leading ``/`` is added)."""
        other = Emitter.__new__(Emitter)
        other._target = self._target
        other.nsp = nsp if nsp.startswith("/") else "/" + nsp
        return other

    def to(self, room: str | Iterable[str]) -> EmitterBroadcastOperator:
        """The sockets in ``room`` (a name or several)."""
        return self._operator().to(room)

    def in_(self, room: str | Iterable[str]) -> EmitterBroadcastOperator:
        """Same as :meth:`to`."""
        return self.to(room)

    def except_(self, room: str | Iterable[str]) -> EmitterBroadcastOperator:
        """Every socket but those in ``room``."""
        return self._operator().except_(room)

    @property
    def volatile(self) -> EmitterBroadcastOperator:
        """Emits dropped for clients not ready to receive them."""
        return self._operator().volatile

    def compress(self, compress: bool) -> EmitterBroadcastOperator:
        """Set the ``compress`` flag."""
        return self._operator().compress(compress)

    def emit(self, event: str, *args: Any) -> Any:
        """Emit ``event`` to every socket of the namespace, on every node."""
        return self._operator().emit(event, *args)

    def sockets_join(self, room: str | Iterable[str]) -> Any:
        """Make every socket of the namespace join ``room``."""
        return self._operator().sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> Any:
        """Make every socket of the namespace leave ``room``."""
        return self._operator().sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> Any:
        """Disconnect every socket of the namespace."""
        return self._operator().disconnect_sockets(close)

    def server_side_emit(self, event: str, *args: Any) -> Any:
        """Call the ``event`` handlers of every node's namespace (``io.on(event)``); no
        acknowledgements.

        :raises ValueError: for a reserved event name.
        """
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        return self._target.publish(f"{self._target.key}-request#{self.nsp}#", dumps({
            "uid": "emitter", "type": RequestType.SERVER_SIDE_EMIT, "data": [event, *args]}))

    def ready(self) -> Deferred[None]:
        """Fire once the Redis connection is up (a URL emitter)."""
        connection = self._target.connection
        if connection is None:
            return succeed(None)
        return connection.command(b"PING").addCallback(lambda _: None)

    def close(self) -> Deferred[None]:
        """Close the Redis connection (a URL emitter); fire once closed."""
        connection = self._target.connection
        if connection is None:
            return succeed(None)
        return connection.close()


class _OutageLog:
    # Logs an emitter's outage once, when it starts and when it ends.
    def __init__(self, address: RedisAddress, clock: IReactorTime) -> None:
        self.address = address
        self.clock = clock
        self.since: float | None = None

    def down(self, why: str) -> None:
        if self.since is None:
            self.since = self.clock.seconds()
            log.warn("Redis at {address} is unavailable ({why}); the emitter reconnects",
                     address=str(self.address), why=why)

    def up(self) -> None:
        if self.since is not None:
            log.info("Redis at {address} is back after {seconds:.1f} s",
                     address=str(self.address), seconds=self.clock.seconds() - self.since)
            self.since = None

