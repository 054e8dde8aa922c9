"""Scale out on Redis, in the wire format of Node's ``@socket.io/redis-adapter`` 8.x.

A txsio node joins a cluster of Node ``socket.io`` nodes (or of txsio nodes, or both) as a full
peer: broadcasts, ``fetch_sockets``, ``sockets_join`` / ``sockets_leave`` /
``disconnect_sockets``, ``server_side_emit`` with acknowledgements and broadcasts with
acknowledgements all travel through Redis exactly as Node's adapters send them;
:class:`Emitter` speaks ``@socket.io/redis-emitter`` 5.x::

    import txsio
    from txsio.redis import redis_adapter

    io = txsio.Server(adapter=redis_adapter("redis://127.0.0.1:6379", key="socket.io"))

What is here, bottom to top (each module's docstring says who calls what):

- :mod:`~txsio.redis.resp` and :mod:`~txsio.redis.connection`: a small RESP2 client on
  Twisted (:class:`RedisConnection`): payloads stay ``bytes`` from the socket to the adapter,
  commands time out instead of hanging, and the connection comes back by itself with capped
  exponential backoff on an injected clock; the subscribed connection reads with hiredis;
- :mod:`~txsio.redis.wire`: notepack.io's msgpack and ``JSON.stringify`` text;
- the two formats, peers on the cluster core (:class:`txsio.cluster.ClusterAdapter`:
  requests, answers, own echoes, timeouts, :class:`RemoteSocket`):
  :class:`RedisAdapter` (:mod:`~txsio.redis.classic`, Node's ``createAdapter``: PUBLISH /
  SUBSCRIBE) and :class:`ShardedRedisAdapter` (:mod:`~txsio.redis.sharded`,
  ``redis_adapter(url, sharded=True)``, Node's ``createShardedAdapter``: Redis 7 sharded
  pub/sub, room channels);
- :class:`RedisAdapterFactory` (:mod:`~txsio.redis.factory`, what :func:`redis_adapter`
  returns), which shares one publishing and one subscribed connection between the namespaces
  of one :class:`~txsio.Server`;
- :class:`Emitter` (:mod:`~txsio.redis.emitter`), for any Python process that is not a
  Socket.IO server.

A broadcast is delivered locally at once and published once, without waiting for Redis; a
``local`` broadcast is never published.  When Redis is away, local delivery goes on, cluster
operations (``fetch_sockets``, ``all_rooms``, ``server_count``, acknowledged emits) fail at once
with :class:`RedisUnavailableError`, fire-and-forget ones are dropped, and the outage is logged
once, when it starts and when it ends.  The connections come back with backoff and re-subscribe.
"""

from __future__ import annotations

from .._jsjson import has_binary
from ..cluster import (
    ClusterCounters,
    MessageType,
    RemoteSocket,
    RequestTimeoutError,
    socket_details,
)
from .base import RedisClusterAdapter
from .classic import RedisAdapter, encode_broadcast, replace_nsp
from .connection import RedisAddress, RedisConnection
from .emitter import Emitter, EmitterBroadcastOperator
from .errors import RedisError, RedisProtocolError, RedisReplyError, RedisUnavailableError
from .factory import RedisAdapterFactory, redis_adapter
from .resp import RespParser, encode_command
from .sharded import (
    SUBSCRIPTION_MODES,
    ShardedRedisAdapter,
    encode_cluster_message,
    looks_like_a_socket_id,
)
from .wire import RequestType, broadcast_channel, decode_message, dumps, new_uid, pack, unpack

__all__ = [
    "SUBSCRIPTION_MODES",
    "ClusterCounters",
    "Emitter",
    "EmitterBroadcastOperator",
    "MessageType",
    "RedisAdapter",
    "RedisAdapterFactory",
    "RedisAddress",
    "RedisClusterAdapter",
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
    "broadcast_channel",
    "decode_message",
    "dumps",
    "encode_broadcast",
    "encode_cluster_message",
    "encode_command",
    "has_binary",
    "looks_like_a_socket_id",
    "new_uid",
    "pack",
    "redis_adapter",
    "replace_nsp",
    "socket_details",
    "unpack",
]
