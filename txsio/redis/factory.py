"""The adapter factory: one publishing and one subscribed Redis connection per server, shared
by the adapters of its namespaces.

Who calls what: ``txsio.Server(adapter=factory)`` calls the factory with each namespace it
creates (:meth:`RedisAdapterFactory.__call__`); the adapters attach and detach their channels
(``_attach`` / ``_detach``, and ``_add_channel`` / ``_remove_channel`` for the sharded
format's room channels), publish (``_publish``) and count nodes (``_numsub``); the subscribed
connection hands each message to the handler of its channel or pattern (``_on_push``), unless
it is longer than ``max_message_size``; a message a handler refuses
(:class:`~txsio.cluster.PeerMessageError`) is dropped and counted there.

Subscriptions are kept here, so a new subscribed connection subscribes everything again, once
(``PUBSUB NUMSUB`` then counts this node once).  An outage is logged once when it starts and
once when it ends; each kind of refusal to publish is logged once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from .._cluster_limits import ClusterCounters, PeerLimits, PeerMessageError, log_excerpt
from .._twisted import default_reactor
from .base import RedisClusterAdapter
from .classic import RedisAdapter
from .connection import RedisAddress, RedisConnection, _endpoint
from .errors import RedisProtocolError, RedisUnavailableError
from .sharded import SUBSCRIPTION_MODES, ShardedRedisAdapter

if TYPE_CHECKING:
    from twisted.internet.interfaces import IStreamClientEndpoint

    from ..adapter import AdapterHost

__all__ = ["RedisAdapterFactory", "redis_adapter"]

log = Logger(namespace=__package__)  # "txsio.redis": one log source for the package

_LIMITS = PeerLimits()  # the defaults


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
    :param max_pending_commands: the most commands that may wait for Redis's replies on each
        connection (10,000): when Redis is paused or slow, more fail at once (a broadcast
        still reaches the local clients), logged once.
    :param max_pending_bytes: the most bytes of commands that may wait so (16 MiB).
    :param max_message_size: bytes; a longer message on the adapter's channels is dropped
        before it is decoded (1 MiB).  ``fetch_sockets`` answers are the longest messages (a
        socket with its handshake takes about 0.5 to 1 kB): raise it for clusters that fetch
        thousands of sockets at once.
    :param max_message_depth: how deeply containers may nest in such a message (72).
    :param max_message_items: the most rooms in one list, sockets in one ``fetch_sockets``
        answer and binary values in one message (10,000).
    :param max_ack_timeout: seconds; another node's broadcast with acknowledgements keeps
        this node's clients' acknowledgements at most this long, whatever its timeout (60).
    :param subscription_mode: with ``sharded``, Node's ``subscriptionMode``: ``"dynamic"``
        (a channel per room that is not a socket id), ``"dynamic-private"`` (a channel per
        room) or ``"static"`` (only the namespace's channels).  All nodes must agree.
    :ivar counters: the :class:`~txsio.cluster.ClusterCounters` of the factory's adapters.
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
        max_message_size: int = _LIMITS.max_message_size,
        max_message_depth: int = _LIMITS.max_depth,
        max_message_items: int = _LIMITS.max_items,
        max_ack_timeout: float = _LIMITS.max_timeout,
        max_pending_commands: int = 10_000,
        max_pending_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if subscription_mode not in SUBSCRIPTION_MODES:
            raise ValueError(f"subscription_mode must be one of {', '.join(SUBSCRIPTION_MODES)}"
                             f", not {subscription_mode!r}")
        reactor = default_reactor(reactor)
        self.address = RedisAddress.parse(url)
        self.key = key
        self.requests_timeout = float(requests_timeout)
        #: what a message of another node may cost (given to each adapter)
        self.limits = PeerLimits(max_message_size, max_message_depth, max_message_items,
                                 max_ack_timeout)
        self.publish_on_specific_response_channel = publish_on_specific_response_channel
        self.sharded = sharded
        self.subscription_mode = subscription_mode
        # The commands of (sharded) pub/sub.
        self._publish_command = b"SPUBLISH" if sharded else b"PUBLISH"
        self._numsub_command = b"SHARDNUMSUB" if sharded else b"NUMSUB"
        self._subscribe_command = b"SSUBSCRIBE" if sharded else b"SUBSCRIBE"
        self._unsubscribe_command = b"SUNSUBSCRIBE" if sharded else b"UNSUBSCRIBE"
        self.reactor = reactor
        #: what the adapters could not send and would not take (shared by them)
        self.counters = ClusterCounters(reactor, logger=log)
        if endpoint is None:
            endpoint = _endpoint(reactor, self.address, command_timeout)
        options: dict[str, Any] = {
            "clock": reactor,
            "command_timeout": command_timeout,
            "min_delay": min_reconnect_delay,
            "max_delay": max_reconnect_delay,
            "max_pending_commands": max_pending_commands,
            "max_pending_bytes": max_pending_bytes,
        }
        self.pub = RedisConnection(endpoint, self.address, on_ready=self._pub_ready,
                                   on_down=self._down, **options)
        self.sub = RedisConnection(endpoint, self.address, on_push=self._on_push,
                                   on_ready=self._sub_ready, on_down=self._down,
                                   select_db=False, **options)
        self.adapters: dict[str, RedisClusterAdapter] = {}
        self._channels: dict[bytes, Callable[[bytes, bytes], None]] = {}
        self._patterns: dict[bytes, Callable[[bytes, bytes], None]] = {}
        self._in_flight = 0
        self._waiters: list[Deferred[None]] = []
        self._down_since: float | None = None
        self._refusals: set[str] = set()
        self._started = False
        self._closing: Deferred[None] | None = None

    def __call__(self, nsp: AdapterHost) -> RedisClusterAdapter:
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

    def _attach(self, adapter: RedisClusterAdapter) -> Deferred[None]:
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

    def _detach(self, adapter: RedisClusterAdapter) -> Deferred[None]:
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
        channel: Any = reply[1:2]
        try:
            if reply[0] != b"pmessage" and len(reply) == 3:  # message, smessage
                handler = self._channels.get(reply[1])
                channel, data = reply[1], reply[2]
            elif reply[0] == b"pmessage" and len(reply) == 4:
                handler = self._patterns.get(reply[1])
                channel, data = reply[2], reply[3]
            else:
                return
            if handler is None or not isinstance(data, bytes) or not isinstance(channel, bytes):
                return
            if len(data) > self.limits.max_message_size:  # before anything reads it
                raise PeerMessageError("too large", f"{len(data)} bytes, more than "
                                                    f"{self.limits.max_message_size}")
            handler(channel, data)
        except PeerMessageError as e:
            self.counters.dropped_message(e.reason, e, channel)
        except Exception:
            self.counters.handling_failed(channel)

    # -- commands --------------------------------------------------------------------------

    def _publish(self, channel: str | bytes, message: bytes) -> Deferred[Any]:
        return self.pub.command(self._publish_command, channel, message)

    def _publish_failed(self, failure: Failure, what: str, nsp: str) -> None:
        why = log_excerpt(failure.getErrorMessage())
        if isinstance(failure.value, RedisUnavailableError) or why in self._refusals:
            # The outage itself is logged once, by _down; each refusal once too.
            log.debug("{what} of namespace {nsp} not published: {why}", what=what, nsp=nsp,
                      why=why)
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


def redis_adapter(url: str = "redis://127.0.0.1:6379", **options: Any) -> RedisAdapterFactory:
    """The adapter factory for ``txsio.Server(adapter=...)`` (Node's ``createAdapter``, or
    with ``sharded=True`` its ``createShardedAdapter``).

    ::

        import txsio
        from txsio.redis import redis_adapter

        url = "redis://127.0.0.1:6379"
        io = txsio.Server(adapter=redis_adapter(url, key="socket.io"))
        sharded = txsio.Server(adapter=redis_adapter(url, sharded=True,
                                                     subscription_mode="static"))

    :param url: where Redis is.
    :param options: see :class:`RedisAdapterFactory`.
    """
    return RedisAdapterFactory(url, **options)
