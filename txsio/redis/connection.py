"""Connections to Redis on Twisted: :class:`RedisAddress` (where), the RESP protocol of one
TCP connection, and :class:`RedisConnection`, which comes back by itself.

Who calls what: the adapter factory (:mod:`txsio.redis.factory`) and the emitter own
:class:`RedisConnection`\\ s and call :meth:`~RedisConnection.start`,
:meth:`~RedisConnection.command` and :meth:`~RedisConnection.close`; Twisted calls the
protocol's ``connectionMade`` / ``dataReceived`` / ``connectionLost``.

Payloads stay ``bytes`` from the socket to the adapter (msgpack must never go through a text
codec); commands time out instead of hanging (a watchdog on the injected clock drops a
connection whose oldest command went unanswered); a lost connection is made again with capped
exponential backoff.  A subscribed connection reads with hiredis (see :mod:`txsio.redis.resp`).

What waits for Redis is bounded: commands sent and not yet answered (or queued for the first
attempt) are at most ``max_pending_commands`` and, but for a lone one, ``max_pending_bytes``.
Beyond, a command fails at once with :class:`RedisUnavailableError` (a paused Redis must not
make the process buffer a stream of broadcasts); that is logged once when it starts, across
reconnections, and once when Redis has caught up (its replies brought the backlog down by
half).
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote, urlsplit

from twisted.internet.defer import CancelledError, Deferred, fail, succeed
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._twisted import cancel_call
from .errors import RedisProtocolError, RedisReplyError, RedisUnavailableError
from .resp import ReplyReader, RespParser, encode_command, push_reader

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IAddress,
        IDelayedCall,
        IReactorTime,
        IStreamClientEndpoint,
    )

__all__ = ["RedisAddress", "RedisConnection"]

log = Logger(namespace=__package__)  # "txsio.redis": one log source for the package


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


class _Pending:
    __slots__ = ("deferred", "remaining", "sent", "size")

    def __init__(self, deferred: Deferred[Any], remaining: int, sent: float,
                 size: int) -> None:
        self.deferred = deferred
        self.remaining = remaining
        self.sent = sent
        self.size = size


class _Backlog:
    # The bound on what waits for Redis on one RedisConnection, kept across its successive
    # protocols: an overflow is logged when it starts and when Redis caught up, not once per
    # reconnection in between.
    __slots__ = ("address", "max_bytes", "max_commands", "overflowing", "refused")

    def __init__(self, address: RedisAddress, max_commands: int, max_bytes: int) -> None:
        self.address = address
        self.max_commands = max_commands
        self.max_bytes = max_bytes
        self.overflowing = False
        self.refused = 0

    def admits(self, commands: int, size: int, more: int) -> bool:
        # A lone command passes whatever its size: the bound is on what piles up.
        return commands < self.max_commands and (commands == 0 or size + more <= self.max_bytes)

    def refuse(self) -> RedisUnavailableError:
        self.refused += 1
        if not self.overflowing:
            self.overflowing = True
            log.warn("{commands} commands or {size} bytes wait for Redis at {address}: "
                     "refusing more (they fail, local delivery goes on) until it catches up",
                     commands=self.max_commands, size=self.max_bytes, address=str(self.address))
        return RedisUnavailableError(f"too much waits for Redis at {self.address}: not sent")

    def drained(self, commands: int, size: int) -> None:
        if (self.overflowing and commands <= self.max_commands // 2
                and size <= self.max_bytes // 2):
            self.overflowing = False
            log.info("Redis at {address} caught up; {refused} commands were refused in all",
                     address=str(self.address), refused=self.refused)


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
                 on_push: Callable[[list[Any]], None] | None, backlog: _Backlog) -> None:
        self._clock = clock
        self._timeout = timeout
        self._on_push = on_push
        self._backlog = backlog
        self._pending_bytes = 0
        # A subscribed connection gets every message of the cluster: hiredis reads them.  A
        # command connection keeps the pure reader, whose simple strings are str ("PONG").
        self._parser: ReplyReader = push_reader() if on_push is not None else RespParser()
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
        :class:`RedisReplyError` or :class:`RedisUnavailableError` (also at once when too
        much waits for replies)."""
        return self.send(encode_command(args), replies)

    def send(self, data: bytes, replies: int = 1) -> Deferred[Any]:
        """Send one encoded command (see :meth:`command`)."""
        if self.lost or self.transport is None:
            return fail(RedisUnavailableError(f"connection lost: {self.why}"))
        if not self._backlog.admits(len(self._pending), self._pending_bytes, len(data)):
            return fail(self._backlog.refuse())
        d: Deferred[Any] = Deferred()
        self._pending.append(_Pending(d, replies, self._clock.seconds(), len(data)))
        self._pending_bytes += len(data)
        if self._watchdog is None:
            self._watchdog = self._clock.callLater(self._timeout, self._check)
        self.transport.write(data)
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
        self._pending_bytes -= entry.size
        self._backlog.drained(len(self._pending), self._pending_bytes)
        if not entry.deferred.called:
            if isinstance(reply, RedisReplyError):
                entry.deferred.errback(reply)
            else:
                entry.deferred.callback(reply)

    def _fail(self, why: str) -> None:
        self.why = why
        pending, self._pending = self._pending, deque()
        self._pending_bytes = 0
        for entry in pending:
            if not entry.deferred.called:
                entry.deferred.errback(RedisUnavailableError(why))

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.lost = True
        cancel_call(self._watchdog)
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
    :param max_pending_commands: the most commands that may wait for their replies (or for
        the first attempt); more fail at once with :class:`RedisUnavailableError`.
    :param max_pending_bytes: the most bytes of commands that may wait so (a single command
        goes whatever its size).
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
        max_pending_commands: int = 10_000,
        max_pending_bytes: int = 16 * 1024 * 1024,
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
        self._backlog = _Backlog(address, max_pending_commands, max_pending_bytes)
        self._queue: list[tuple[bytes, int, Deferred[Any]]] = []
        self._queued_bytes = 0
        self._gone: list[Deferred[None]] = []
        #: why the last attempt failed or the connection was lost
        self.last_error = ""
        #: how many times the connection was made (the first time included)
        self.connects = 0
        #: how many times it was lost or an attempt failed
        self.failures = 0

    @property
    def refused_commands(self) -> int:
        """How many commands failed at once because too much waited for Redis."""
        return self._backlog.refused

    @property
    def pending_commands(self) -> int:
        """How many commands wait for their replies (or for the first attempt)."""
        proto = self.protocol
        return len(proto._pending) if proto is not None else len(self._queue)

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
        return _RedisProtocol(self._clock, self.command_timeout, self._on_push, self._backlog)

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
        self.connects += 1
        self._attempt = 0
        self._ever_connected = True
        self.last_error = ""
        queue = self._take_queue()
        for data, replies, d in queue:
            proto.send(data, replies).chainDeferred(d)
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
        self.failures += 1
        queue = self._take_queue()
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

    def _take_queue(self) -> list[tuple[bytes, int, Deferred[Any]]]:
        # The commands queued for the first attempt, leaving the queue empty.
        queue, self._queue, self._queued_bytes = self._queue, [], 0
        return queue

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
            data = encode_command(args)
            if not self._backlog.admits(len(self._queue), self._queued_bytes, len(data)):
                return fail(self._backlog.refuse())
            d: Deferred[Any] = Deferred()
            self._queue.append((data, replies, d))
            self._queued_bytes += len(data)
            return d
        if self._closed:
            return fail(RedisUnavailableError(f"the connection to Redis at {self.address} "
                                              "is closed"))
        return fail(self._unavailable())

    def close(self) -> Deferred[None]:
        """Stop reconnecting and close the connection; fire once it is closed."""
        self._closed = True
        cancel_call(self._retry)
        self._retry = None
        queue = self._take_queue()
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


def _endpoint(reactor: Any, address: RedisAddress, timeout: float) -> IStreamClientEndpoint:
    from twisted.internet.endpoints import HostnameEndpoint

    return cast("IStreamClientEndpoint",
                HostnameEndpoint(reactor, address.host, address.port, timeout=timeout))
