"""The classic format: Node's ``createAdapter`` (``@socket.io/redis-adapter`` 8.x, Redis
``PUBLISH`` / ``SUBSCRIBE``).

Who calls what: the factory subscribes the channels :meth:`RedisAdapter._subscriptions` lists
and calls :meth:`~RedisAdapter._on_broadcast_message`, :meth:`~RedisAdapter._on_request` and
:meth:`~RedisAdapter._on_response_message` with what arrives; they turn the classic messages
into the cluster core's (:class:`~txsio.cluster.ClusterMessage`), and
:meth:`~RedisAdapter._encode` / :meth:`~RedisAdapter._encode_response` turn the core's into
classic ones.

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

Messages: a broadcast is msgpack ``[uid, packet, opts]``; requests and responses are JSON,
except a broadcast with acknowledgements (type 7) and each client's acknowledgement (type 9),
which are msgpack.  Responses carry no ``uid``, and those to ``fetch_sockets`` and
``all_rooms`` no type: they are told apart by the request they answer.  This format alone has
``all_rooms`` (type 1), the legacy ``sockets`` request (type 0) and the legacy single-socket
forms of types 2 to 4, which 8.x never sends but which are still answered.

Own echoes (the core's rule, by ``uid`` or request id) match Node's behaviour: Node applies its
own ``sockets_join`` / ``sockets_leave`` / ``disconnect_sockets`` when their echo comes back;
txsio applies them when called and drops the echo: either way, once.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from ..adapter import BroadcastOptions
from ..cluster import (
    ClusterMessage,
    MessageType,
    PeerMessageError,
    RequestTimeoutError,
    encode_options,
    room_names,
)
from ..protocol import Packet, PacketType
from .base import Handler, RedisClusterAdapter
from .wire import (
    RequestType,
    broadcast_channel,
    dumps,
    glob_escape,
    new_uid,
    pack,
    unpack,
)

if TYPE_CHECKING:
    from ..adapter import AdapterHost, Recipient
    from ..cluster import _Request
    from .factory import RedisAdapterFactory

__all__ = ["RedisAdapter", "encode_broadcast", "replace_nsp"]

log = Logger(namespace=__package__)  # "txsio.redis": one log source for the package

#: The operations on sockets: the core's types and the classic ones.
_OPERATIONS = {
    MessageType.SOCKETS_JOIN: RequestType.REMOTE_JOIN,
    MessageType.SOCKETS_LEAVE: RequestType.REMOTE_LEAVE,
    MessageType.DISCONNECT_SOCKETS: RequestType.REMOTE_DISCONNECT,
}
_FROM_CLASSIC = {int(classic): core for core, classic in _OPERATIONS.items()}


def _broadcast_bytes(uid: str, wire_packet: dict[str, Any], wire_opts: dict[str, Any]) -> bytes:
    return pack([uid, wire_packet, wire_opts])


def encode_broadcast(uid: str, packet: Packet, opts: BroadcastOptions) -> bytes:
    """The msgpack message of a broadcast: ``[uid, packet, {rooms, except, flags}]``."""
    return _broadcast_bytes(uid, {"type": int(PacketType.EVENT), "data": packet.data,
                                  "nsp": packet.nsp}, encode_options(opts))


def replace_nsp(packet: Packet, nsp: str) -> Packet:
    """``packet`` in namespace ``nsp`` (the same object when it already is)."""
    return packet if packet.nsp == nsp else dataclasses.replace(packet, nsp=nsp)


def _rooms_and_except(wire_opts: dict[str, Any]) -> dict[str, Any]:
    # Requests other than broadcasts carry no flags.
    return {"rooms": wire_opts["rooms"], "except": wire_opts["except"]}


def _sender(uid: Any) -> str | None:
    return uid if isinstance(uid, str) else None


class RedisAdapter(RedisClusterAdapter):
    """The Redis adapter of one namespace (made by :class:`RedisAdapterFactory`), in the
    classic format (Node's ``createAdapter``).

    Rooms and local delivery are the in-memory adapter's, requests and answers the cluster
    core's (:class:`~txsio.cluster.ClusterAdapter`); this class speaks the classic messages.

    :param nsp: the namespace.
    :param factory: the factory that owns the Redis connections.
    :ivar uid: this adapter's random id on the wire.
    """

    def __init__(self, nsp: AdapterHost, factory: RedisAdapterFactory) -> None:
        super().__init__(nsp, factory, new_uid())
        key, name = factory.key, nsp.name
        self.request_channel = f"{key}-request#{name}#"
        self.response_channel = f"{key}-response#{name}#"
        self.specific_response_channel = f"{self.response_channel}{self.uid}#"
        self.pattern = glob_escape(self.channel) + "*"
        self._request_bytes = self.request_channel.encode("utf-8")

    def _new_id(self) -> str:
        return new_uid()

    def _fetch_timeout(self, opts: BroadcastOptions) -> float:
        return self.requests_timeout  # Node's requestsTimeout, whatever the operation says

    def _subscriptions(self) -> tuple[dict[bytes, Handler], dict[bytes, Handler]]:
        channels: dict[bytes, Handler] = {
            self._request_bytes: self._on_request,
            self.response_channel.encode("utf-8"): self._on_response_message,
            self.specific_response_channel.encode("utf-8"): self._on_response_message,
        }
        return channels, {self.pattern.encode("utf-8"): self._on_broadcast_message}

    def server_count(self) -> Deferred[int]:
        """The number of nodes that serve this namespace (``PUBSUB NUMSUB`` of the request
        channel), this one included; fails with :class:`RedisUnavailableError` when Redis is
        away."""
        return self.factory._numsub(self._request_bytes)

    # -- the core's messages, in the classic format ----------------------------------------

    def _encode(self, message: ClusterMessage) -> tuple[str, bytes]:
        data = message.data
        mtype = message.type
        if mtype == MessageType.BROADCAST:
            packet = {**data["packet"], "nsp": self.nsp.name}
            if "requestId" not in data:
                return (broadcast_channel(self.channel, data["opts"]["rooms"]),
                        _broadcast_bytes(self.uid, packet, data["opts"]))
            return self.request_channel, pack({
                "uid": self.uid, "requestId": data["requestId"],
                "type": int(RequestType.BROADCAST), "packet": packet, "opts": data["opts"]})
        operation = _OPERATIONS.get(mtype)
        if operation is not None:  # the rest of data: rooms, or close
            return self.request_channel, dumps({
                "uid": self.uid, "type": int(operation),
                "opts": _rooms_and_except(data["opts"]),
                **{key: value for key, value in data.items() if key != "opts"}})
        if mtype == MessageType.FETCH_SOCKETS:
            return self.request_channel, dumps({
                "uid": self.uid, "requestId": data["requestId"],
                "type": int(RequestType.REMOTE_FETCH), "opts": _rooms_and_except(data["opts"])})
        if mtype == MessageType.SERVER_SIDE_EMIT:
            body: dict[str, Any] = {"uid": self.uid}
            if "requestId" in data:
                body["requestId"] = data["requestId"]
            body.update(type=int(RequestType.SERVER_SIDE_EMIT), data=data["packet"])
            return self.request_channel, dumps(body)
        raise ValueError(f"the classic Redis format has no {mtype.name} message")

    def _response_channel(self, requester: Any) -> str:
        if self.factory.publish_on_specific_response_channel and isinstance(requester, str):
            return f"{self.response_channel}{requester}#"
        return self.response_channel

    def _encode_response(self, request: ClusterMessage,
                         response: ClusterMessage) -> tuple[str, bytes] | None:
        data = response.data
        mtype = response.type
        body: dict[str, Any]
        if mtype == MessageType.SERVER_SIDE_EMIT_RESPONSE:
            body = {"type": int(RequestType.SERVER_SIDE_EMIT), "requestId": data["requestId"]}
            if "packet" in data:
                body["data"] = data["packet"]
            # Always the shared response channel (Node ignores the specific one here).
            return self.response_channel, dumps(body, lenient=True)
        channel = self._response_channel(request.uid)
        if mtype == MessageType.FETCH_SOCKETS_RESPONSE:
            return channel, dumps({"requestId": data["requestId"], "sockets": data["sockets"]},
                                  lenient=True)
        if mtype == MessageType.BROADCAST_CLIENT_COUNT:
            return channel, dumps({"type": int(RequestType.BROADCAST_CLIENT_COUNT),
                                   "requestId": data["requestId"],
                                   "clientCount": data["clientCount"]})
        body = {"type": int(RequestType.BROADCAST_ACK), "requestId": data["requestId"]}
        if "packet" in data:
            body["packet"] = data["packet"]
        return channel, pack(body)

    def _answer(self, request: dict[str, Any], body: dict[str, Any]) -> None:
        # The answers only this format has (all_rooms, legacy requests): JSON, lenient.
        channel = self._response_channel(request.get("uid"))
        self._publish(channel, dumps(body, lenient=True)).addErrback(self._publish_failed,
                                                                     "a response")

    # -- what arrives ----------------------------------------------------------------------

    def _on_broadcast_message(self, channel: bytes, data: bytes) -> None:
        """A message on ``P#NSP#`` or ``P#NSP#<room>#`` (called by the factory)."""
        if self._closed:
            return
        room = channel[len(self._channel_bytes):-1]
        if room and room.decode("utf-8", "replace") not in self.rooms:
            return  # a room without members here: not even decoded
        try:
            message = unpack(data)
        except Exception as e:
            raise PeerMessageError("malformed", f"a broadcast that is not msgpack ({e})") from None
        self._check_shape(message)
        if not isinstance(message, list) or len(message) < 3 or not isinstance(message[1], dict):
            raise PeerMessageError("malformed", "a broadcast that is not [uid, packet, opts]")
        uid, wire_packet, opts = message[0], message[1], message[2]
        if wire_packet.get("nsp", "/") != self.nsp.name:
            return
        self._on_message(ClusterMessage(MessageType.BROADCAST,
                                        {"packet": wire_packet, "opts": opts}, _sender(uid)))

    def _on_request(self, channel: bytes, data: bytes) -> None:
        """A message on ``P-request#NSP#`` (called by the factory)."""
        request = self._decode(data, "request")
        if request is None:
            return
        rtype = request.get("type")
        handler = self._classic_handlers.get(rtype) if isinstance(rtype, int) else None
        if handler is None:
            raise PeerMessageError("unexpected", f"a request of unknown type {rtype!r}")
        handler(self, request)

    def _on_operation(self, request: dict[str, Any]) -> None:
        # sockets_join / sockets_leave / disconnect_sockets: the core's, but for the legacy
        # form (sid and room instead of opts), which acts on one local socket.
        rtype = request["type"]
        if "opts" in request:
            self._on_message(ClusterMessage(_FROM_CLASSIC[rtype], request,
                                            _sender(request.get("uid"))))
            return
        sid = request.get("sid")
        socket = self.nsp.sockets.get(sid) if isinstance(sid, str) else None
        if socket is None:
            return
        if rtype == RequestType.REMOTE_DISCONNECT:
            socket.disconnect(bool(request.get("close")))
        else:
            room = request.get("room")
            if not isinstance(room, str):
                return
            if rtype == RequestType.REMOTE_JOIN:
                socket.join(room)
            else:
                socket.leave(room)
        self._answer(request, {"requestId": request.get("requestId")})

    def _on_fetch(self, request: dict[str, Any]) -> None:
        self._on_message(ClusterMessage(MessageType.FETCH_SOCKETS, request,
                                        _sender(request.get("uid"))))

    def _on_server_side_emit_request(self, request: dict[str, Any]) -> None:
        self._on_message(ClusterMessage(
            MessageType.SERVER_SIDE_EMIT,
            {"packet": request.get("data"), "requestId": request.get("requestId")},
            _sender(request.get("uid"))))

    def _on_broadcast_request(self, request: dict[str, Any]) -> None:
        self._on_message(ClusterMessage(MessageType.BROADCAST, request,
                                        _sender(request.get("uid"))))

    def _on_sockets(self, request: dict[str, Any]) -> None:
        if self._waits_for(request.get("requestId")):
            return
        sids: list[str] = []

        def add(socket: Recipient) -> None:
            sids.append(socket.id)

        self._apply(BroadcastOptions(room_names(request.get("rooms"), self.limits.max_items)),
                    add)
        self._answer(request, {"requestId": request.get("requestId"), "sockets": sids})

    def _on_all_rooms(self, request: dict[str, Any]) -> None:
        if self._waits_for(request.get("requestId")):
            return
        self._answer(request, {"requestId": request.get("requestId"),
                               "rooms": list(self.rooms)})

    _classic_handlers: dict[int, Callable[[RedisAdapter, dict[str, Any]], None]] = {
        RequestType.SOCKETS: _on_sockets,
        RequestType.ALL_ROOMS: _on_all_rooms,
        RequestType.REMOTE_JOIN: _on_operation,
        RequestType.REMOTE_LEAVE: _on_operation,
        RequestType.REMOTE_DISCONNECT: _on_operation,
        RequestType.REMOTE_FETCH: _on_fetch,
        RequestType.SERVER_SIDE_EMIT: _on_server_side_emit_request,
        RequestType.BROADCAST: _on_broadcast_request,
    }

    def _on_response_message(self, channel: bytes, data: bytes) -> None:
        """A message on ``P-response#NSP#`` or this adapter's own response channel."""
        response = self._decode(data, "response")
        if response is None:
            return
        request_id = response.get("requestId")
        if not isinstance(request_id, str):
            raise PeerMessageError("malformed", "a response without a request id")
        rtype = response.get("type")
        if rtype == RequestType.BROADCAST_CLIENT_COUNT:
            self._on_response(ClusterMessage(MessageType.BROADCAST_CLIENT_COUNT, response))
        elif rtype == RequestType.BROADCAST_ACK:
            self._on_response(ClusterMessage(MessageType.BROADCAST_ACK, response))
        elif rtype == RequestType.SERVER_SIDE_EMIT:
            self._on_response(ClusterMessage(MessageType.SERVER_SIDE_EMIT_RESPONSE,
                                             {"requestId": request_id,
                                              "packet": response.get("data")}))
        elif self._waiting(request_id, "fetch_sockets") is not None:
            self._on_response(ClusterMessage(MessageType.FETCH_SOCKETS_RESPONSE, response))
        else:
            request = self._waiting(request_id, "all_rooms")
            if request is not None:
                self._answered(request_id, request, room_names(response.get("rooms")))

    # -- all_rooms, this format's own request ----------------------------------------------

    def all_rooms(self) -> Deferred[set[str]]:
        """Every room of the namespace across the cluster (socket-id rooms included).

        Fails with :class:`RequestTimeoutError` when a node does not answer within the
        factory's ``requests_timeout``, or :class:`RedisUnavailableError`.
        """
        return Deferred.fromCoroutine(self._all_rooms())

    async def _all_rooms(self) -> set[str]:
        local = set(self.rooms)
        expected = await self.server_count() - 1  # not this node
        if expected <= 0:
            return local

        def timed_out(request: _Request) -> Exception:
            return RequestTimeoutError("timeout reached while waiting for allRooms response",
                                       responses=sorted(set(request.responses)))

        request_id = self._new_id()
        encoded = (self.request_channel, dumps({"uid": self.uid, "requestId": request_id,
                                                "type": int(RequestType.ALL_ROOMS)}))
        rooms: list[str] = await self._request("all_rooms", expected, list(local), request_id,
                                               encoded, timed_out)
        return set(rooms)
