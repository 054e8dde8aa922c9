"""The sharded format: Node's ``createShardedAdapter`` (``@socket.io/redis-adapter`` 8.x,
Redis 7 ``SPUBLISH`` / ``SSUBSCRIBE``), which carries the cluster core's messages as they are.

Who calls what: the factory subscribes the channels :meth:`ShardedRedisAdapter._subscriptions`
lists (and the room channels the adapter adds and removes as rooms come and go) and calls
:meth:`~ShardedRedisAdapter._on_published` / :meth:`~ShardedRedisAdapter._on_answer` with
what arrives, which hand it to the cluster core.

Theory of operation
-------------------
Every message is ``{type, data, uid, nsp}`` (Node's ``ClusterMessage``): JSON, or msgpack when
its ``data`` holds binary (only possible for broadcasts, acknowledgements, fetch answers and
server-side emits and their answers).  Channels: ``P#NSP#`` for every node, ``P#NSP#<uid>#``
for the answers to one node, and in the ``dynamic`` subscription mode ``P#NSP#<room>#`` for
each room that exists here and is not a socket id (``dynamic-private``: socket ids too;
``static``: none); a broadcast to exactly one such room goes to its channel.  Nodes are counted
with ``PUBSUB SHARDNUMSUB P#NSP#``.  There is no ``all_rooms`` request in this format.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail

from .._jsjson import has_binary
from ..cluster import ClusterMessage, MessageType, PeerMessageError
from .base import Handler, RedisClusterAdapter
from .errors import RedisError
from .wire import dumps, pack, to_well_formed

if TYPE_CHECKING:
    from ..adapter import AdapterHost
    from .factory import RedisAdapterFactory

__all__ = [
    "SUBSCRIPTION_MODES",
    "ShardedRedisAdapter",
    "encode_cluster_message",
    "looks_like_a_socket_id",
]

SUBSCRIPTION_MODES = ("dynamic", "dynamic-private", "static")

#: The types whose ``data`` Node checks for binary (then msgpack, else JSON).
_MAY_CONTAIN_BINARY = frozenset((
    MessageType.BROADCAST, MessageType.BROADCAST_ACK, MessageType.FETCH_SOCKETS_RESPONSE,
    MessageType.SERVER_SIDE_EMIT, MessageType.SERVER_SIDE_EMIT_RESPONSE))


def encode_cluster_message(mtype: int, data: Mapping[str, Any], uid: str, nsp: str, *,
                           lenient: bool = False) -> bytes:
    """A message of the sharded adapter, ``{type, data, uid, nsp}``: msgpack when ``data``
    holds binary (types 3, 8, 9, 10 and 12 only), else JSON.

    :raises TypeError, ValueError, OverflowError: for what the message cannot carry (a
        reference cycle or nesting too deep: ``ValueError``).
    """
    message = {"type": int(mtype), "data": data, "uid": uid, "nsp": nsp}
    if mtype in _MAY_CONTAIN_BINARY and has_binary(data):
        return pack(message)
    return dumps(message, lenient=lenient)


def looks_like_a_socket_id(room: str) -> bool:
    """Node's sharded adapter takes a 20-character room for a socket id (no own channel)."""
    return len(room) == 20


def _message_type(value: Any) -> MessageType | None:
    try:
        return MessageType(value)
    except (TypeError, ValueError):
        return None


class ShardedRedisAdapter(RedisClusterAdapter):
    """The Redis adapter of one namespace in the sharded format (Node's
    ``createShardedAdapter``: ``SPUBLISH`` / ``SSUBSCRIBE``, Redis 7 or later); made by
    :class:`RedisAdapterFactory` with ``sharded=True``.

    Channels: ``P#NSP#`` for every node, ``P#NSP#<uid>#`` for the answers to this node, and
    in the ``dynamic`` subscription mode ``P#NSP#<room>#`` for each room that exists here
    and is not a socket id (``dynamic-private``: socket ids too; ``static``: none).  Every
    message is ``{type, data, uid, nsp}``; messages with this adapter's ``uid`` are dropped
    (the sender applies everything locally itself).  Nodes are counted with
    ``PUBSUB SHARDNUMSUB P#NSP#``.  There is no ``all_rooms`` request in this format.

    :param nsp: the namespace.
    :param factory: the factory that owns the Redis connections.
    :ivar uid: this adapter's random id on the wire (16 hex digits).
    """

    def __init__(self, nsp: AdapterHost, factory: RedisAdapterFactory) -> None:
        super().__init__(nsp, factory, secrets.token_hex(8))
        self.mode = factory.subscription_mode
        self.response_channel = f"{self.channel}{self.uid}#"
        self._response_bytes = self.response_channel.encode("utf-8")
        #: room -> its channel, for the rooms whose channel this adapter subscribed
        self._room_channels: dict[str, bytes] = {}
        #: channel -> how many of those rooms use it (rooms that differ only by lone
        #: surrogates share one, as with Node)
        self._channel_rooms: dict[bytes, int] = {}

    def _new_id(self) -> str:
        return secrets.token_hex(8)

    def _subscriptions(self) -> tuple[dict[bytes, Handler], dict[bytes, Handler]]:
        channels: dict[bytes, Handler] = {self._channel_bytes: self._on_published,
                                          self._response_bytes: self._on_answer}
        channels.update(dict.fromkeys(self._room_channels.values(), self._on_published))
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
                channel = self._room_channel(room).encode()
                self._room_channels[room] = channel
                self._channel_rooms[channel] = self._channel_rooms.get(channel, 0) + 1
                self.factory._add_channel(channel, self._on_published)

    def _room_channel(self, room: str) -> str:
        # A room name may hold lone surrogates, which UTF-8 cannot: named as Node names it.
        return f"{self.channel}{to_well_formed(room)}#"

    def _del(self, room: str, sid: str) -> None:
        super()._del(room, sid)
        channel = self._room_channels.get(room)
        if channel is not None and room not in self.rooms:
            del self._room_channels[room]
            users = self._channel_rooms.pop(channel) - 1
            if users:
                self._channel_rooms[channel] = users
            else:
                self.factory._remove_channel(channel)

    # -- the core's messages, as they are --------------------------------------------------

    def _encode(self, message: ClusterMessage) -> tuple[str, bytes]:
        data = message.data
        channel = self.channel
        if message.type == MessageType.BROADCAST and "requestId" not in data:
            # A broadcast with acks always goes to the namespace's channel: every node counts
            # its clients.  A plain one to one room goes to that room's channel, if it has one.
            rooms = data["opts"]["rooms"]
            if len(rooms) == 1 and self.mode != "static":
                [room] = rooms
                if self.mode == "dynamic-private" or not looks_like_a_socket_id(room):
                    channel = self._room_channel(room)
        return channel, encode_cluster_message(message.type, data, self.uid, self.nsp.name)

    def _encode_response(self, request: ClusterMessage,
                         response: ClusterMessage) -> tuple[str, bytes] | None:
        if request.uid is None:
            return None  # an answer needs the requester's channel
        return (f"{self.channel}{request.uid}#",
                encode_cluster_message(response.type, response.data, self.uid,
                                       self.nsp.name, lenient=True))

    # -- receiving -------------------------------------------------------------------------

    def _decode_cluster(self, data: bytes) -> tuple[ClusterMessage, Any] | None:
        # The message and the namespace it names, or None when it is not a cluster message.
        message = self._decode(data, "message")
        if message is None:
            return None
        body = message.get("data", {})  # Node's heartbeats and ADAPTER_CLOSE have none
        mtype = _message_type(message.get("type"))
        if not isinstance(body, dict) or mtype is None:
            raise PeerMessageError("malformed", "not a {type, data, uid, nsp} message")
        uid = message.get("uid")
        return (ClusterMessage(mtype, body, uid if isinstance(uid, str) else None),
                message.get("nsp"))

    def _on_published(self, channel: bytes, data: bytes) -> None:
        """A message on ``P#NSP#`` or a room's channel (called by the factory)."""
        decoded = self._decode_cluster(data)
        if decoded is not None and decoded[1] == self.nsp.name:
            self._on_message(decoded[0])

    def _on_answer(self, channel: bytes, data: bytes) -> None:
        """A message on this adapter's own channel: answers to its requests."""
        decoded = self._decode_cluster(data)
        if decoded is not None:
            self._on_response(decoded[0])
