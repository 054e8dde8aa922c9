"""The cluster adapter: what a node of a Socket.IO cluster does, whatever carries its messages
(Node's ``ClusterAdapter``, ``socket.io-adapter/lib/cluster-adapter.ts``).

Who calls what
--------------
:class:`ClusterAdapter` is an :class:`~txsio.adapter.Adapter` (rooms and local delivery stay
the in-memory adapter's) that also reaches the other nodes of its namespace.  The server and
the broadcast operators call the :class:`~txsio.adapter.Adapter` methods, as on any adapter.
A *format* (:mod:`txsio.redis`: the classic format and the sharded one) subclasses it and

- implements :meth:`~ClusterAdapter._encode` (a message for the other nodes as a channel and
  bytes), :meth:`~ClusterAdapter._encode_response` (an answer to one node),
  :meth:`~ClusterAdapter._publish`, :meth:`~ClusterAdapter.server_count` and
  :meth:`~ClusterAdapter._new_id` (request ids);
- turns what arrives into :class:`ClusterMessage`\\ s and calls
  :meth:`~ClusterAdapter._on_message` (requests and broadcasts of other nodes) or
  :meth:`~ClusterAdapter._on_response` (answers to this node's requests).

Messages are Node's: a :class:`MessageType` and ``data`` in the shape of Node's
``ClusterMessage`` (``opts`` as :func:`encode_options` writes them, packets as
``{"type": 2, "data": [event, *args]}``); each format maps them to its own wire form.

Theory of operation
-------------------
*Requests* (``fetch_sockets``, ``server_side_emit_with_ack``; the classic format's
``all_rooms``) count the nodes first (:meth:`~ClusterAdapter.server_count`, this node
included) and expect one answer from each other node; with no other node nothing is
published.  Each waits under its request id, with a timer: it fires once every answer arrived,
or fails at the timeout with the answers that did (``responses``).

*Broadcasts with acknowledgements* remember their request id for the broadcast's timeout; each
other node answers with its client count, then with each client's acknowledgement, and the
broadcast operator does the counting.  A node that delivers one forgets its clients' pending
acknowledgements after the same timeout.

*Own echoes*: a message carrying this adapter's ``uid``, or a request whose id this adapter is
waiting for, is its own and is dropped.  So the sender applies everything locally itself, at
once: broadcasts, ``sockets_join`` / ``sockets_leave``, ``disconnect_sockets``.  Messages
without a ``uid`` (an emitter's) are always applied.

*Local first*: a broadcast (with acknowledgements or not) reaches the local clients before it
is published.  A value the local encoding refuses raises at once (as with the in-memory
adapter), and nothing is published; a value only the cluster's encoding refuses (msgpack has no
lone surrogates and no integers from ``2**64``) still reaches the local clients, and the
failure is counted and logged (:class:`ClusterCounters`, rate-limited); so are room
operations.  ``server_side_emit``, which has no local part, raises it (counted too).
What cannot be published (the broker is away) is logged by
:meth:`~ClusterAdapter._publish_failed`; requests fail with the publishing error.

*Peers' messages* cost what :class:`PeerLimits` allows: the handlers raise
:class:`PeerMessageError` for lists too long, answers nobody expects any more, malformed
packets; the format's entry point drops the message and counts it.  A peer's acknowledgement
timeout is clamped.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._cluster_limits import ClusterCounters, PeerLimits, PeerMessageError, log_excerpt
from ._handlers import NO_FLAGS, EmitFlags, FlaggedEmitter, ack_value
from ._twisted import cancel_call
from .adapter import AckCallback, Adapter, BroadcastFlags, BroadcastOptions, Recipient
from .exceptions import AckTimeoutError, SocketIOError
from .protocol import RESERVED_EVENTS, Packet, PacketType
from .socket import Handshake

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

    from .adapter import AdapterHost

__all__ = [
    "ClusterAdapter",
    "ClusterCounters",
    "ClusterMessage",
    "MessageType",
    "PeerLimits",
    "PeerMessageError",
    "RemoteSocket",
    "RequestTimeoutError",
    "decode_options",
    "encode_options",
    "room_names",
    "socket_details",
]

log = Logger()


class MessageType(enum.IntEnum):
    """The message types of Node's ``ClusterAdapter`` (the sharded Redis format's numbers)."""

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


#: The answers to a request of this node.
_RESPONSES = frozenset((
    MessageType.FETCH_SOCKETS_RESPONSE, MessageType.SERVER_SIDE_EMIT_RESPONSE,
    MessageType.BROADCAST_CLIENT_COUNT, MessageType.BROADCAST_ACK))


class RequestTimeoutError(AckTimeoutError):
    """Not every node answered a cluster request (``fetch_sockets``, ``all_rooms``) in time.

    :attr:`responses` holds what did arrive (this node's own part included).
    """


@dataclasses.dataclass(frozen=True, slots=True)
class ClusterMessage:
    """One message between the nodes of a namespace, as Node's ``ClusterMessage``.

    :ivar type: what it is.
    :ivar data: its content, in Node's shape (see the module docstring).
    :ivar uid: the adapter that sent it; ``None`` for an emitter's request.
    """

    type: MessageType
    data: Mapping[str, Any]
    uid: str | None = None


# ---- options, rooms, sockets on the wire ---------------------------------------------------


def _flags_to_wire(flags: BroadcastFlags) -> dict[str, Any]:
    wire: dict[str, Any] = {}
    if flags.volatile:
        wire["volatile"] = True
    if flags.timeout is not None:
        wire["timeout"] = round(flags.timeout * 1000)
    if not flags.compress:
        wire["compress"] = False  # as Node's flags carry it
    return wire


def _flags_from_wire(flags: Any) -> BroadcastFlags:
    if not isinstance(flags, dict) or not flags:
        return BroadcastFlags()
    timeout = flags.get("timeout")
    return BroadcastFlags(
        volatile=bool(flags.get("volatile")),
        compress=flags.get("compress") is not False,
        # min(): an integer too large for a float still compares (and NaN is no timeout).
        timeout=min(timeout, 1e18) / 1000 if isinstance(timeout, (int, float)) and timeout > 0
        else None,
    )


def encode_options(opts: BroadcastOptions) -> dict[str, Any]:
    """Who a broadcast reaches, on the wire: ``{rooms, except, flags}`` (timeout in ms)."""
    return {"rooms": sorted(opts.rooms), "except": sorted(opts.except_rooms),
            "flags": _flags_to_wire(opts.flags)}


def decode_options(opts: Any, max_rooms: int | None = None) -> BroadcastOptions:
    """The :class:`~txsio.adapter.BroadcastOptions` of wire options (anything else: every
    socket).

    :raises PeerMessageError: for a list of more than ``max_rooms`` rooms.
    """
    if not isinstance(opts, dict):
        return BroadcastOptions()
    return BroadcastOptions(room_names(opts.get("rooms"), max_rooms),
                            room_names(opts.get("except"), max_rooms),
                            _flags_from_wire(opts.get("flags")))


def room_names(value: Any, limit: int | None = None) -> frozenset[str]:
    """The room names of a wire list.  Rooms are strings; socket.io tolerates numbers, which
    travel as JSON numbers and are read as their text.

    :raises PeerMessageError: for a list of more than ``limit`` rooms.
    """
    if not isinstance(value, list):
        return frozenset()
    if limit is not None and len(value) > limit:
        raise PeerMessageError("too many items", f"a list of {len(value)} rooms")
    return frozenset(_room_name(room) for room in value if isinstance(room, (str, int, float))
                     and not isinstance(room, bool))


def _room_name(room: str | int | float) -> str:
    if isinstance(room, float) and room.is_integer():
        return str(int(room))
    return str(room)


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
        issued=int(issued) if isinstance(issued, int) or (
            isinstance(issued, float) and math.isfinite(issued)) else 0,
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


def _wire_event(packet: Packet) -> dict[str, Any]:
    # A packet as Node's cluster messages carry it: always an EVENT (binary stays in data).
    return {"type": int(PacketType.EVENT), "data": packet.data}


# ---- remote sockets -----------------------------------------------------------------------


class RemoteSocket:
    """A socket connected to another node of the cluster, as ``fetch_sockets`` reports it
    (Node's ``RemoteSocket``).

    Its methods act through the cluster: :meth:`emit` is a broadcast to the socket's own room,
    :meth:`join` / :meth:`leave` / :meth:`disconnect` are ``sockets_join`` /
    ``sockets_leave`` / ``disconnect_sockets`` on it.

    :param adapter: the cluster adapter of the namespace that found it.
    :param details: what its node reported (``id``, ``handshake``, ``rooms``, ``data``).
    :ivar id: the socket id.
    :ivar handshake: its :class:`~txsio.Handshake`, as the other node reported it.
    :ivar rooms: the rooms it was in (its own id included).
    :ivar data: its ``data``, as JSON carried it.
    """

    def __init__(self, adapter: ClusterAdapter, details: Mapping[str, Any]) -> None:
        self.adapter = adapter
        self.nsp = adapter.nsp
        self.id: str = str(details["id"])
        self.handshake = _handshake_from_wire(details.get("handshake"))
        rooms = details.get("rooms")
        self.rooms: set[str] = set(room_names(rooms, adapter.limits.max_items))
        self.data: Any = details.get("data")

    def __repr__(self) -> str:
        return f"<RemoteSocket {self.id} {self.nsp.name}>"

    def _options(self, flags: EmitFlags = NO_FLAGS) -> BroadcastOptions:
        return BroadcastOptions(frozenset((self.id,)), flags=BroadcastFlags(
            volatile=flags.volatile, timeout=flags.timeout, compress=flags.compress))

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` to this socket's client.

        :raises ValueError: for a reserved event name.
        """
        self._emit(event, args, NO_FLAGS)

    def timeout(self, seconds: float) -> FlaggedEmitter:
        """``remote.timeout(5).emit_with_ack(...)``: wait at most 5 s for the answer."""
        return FlaggedEmitter(self._emit, self._emit_with_ack, EmitFlags(timeout=float(seconds)))

    def _emit(self, event: str, args: tuple[Any, ...], flags: EmitFlags) -> None:
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        self.adapter.broadcast(Packet(PacketType.EVENT, self.nsp.name, [event, *args]),
                               self._options(flags))

    def _emit_with_ack(self, event: str, args: tuple[Any, ...],
                       flags: EmitFlags) -> Deferred[Any]:
        """Emit ``event``; fire with the client's acknowledgement (one value, a tuple for
        several), or fail with :class:`~txsio.AckTimeoutError` (at once when every node
        reported that it does not have the socket), or with the error of counting the
        nodes (e.g. :class:`~txsio.redis.RedisUnavailableError`)."""
        if event in RESERVED_EVENTS:
            return fail(ValueError(f'"{event}" is a reserved event name'))
        if flags.timeout is None:
            return fail(ValueError("emit_with_ack on a remote socket needs a timeout: "
                                   "use .timeout(seconds) first"))
        adapter = self.adapter
        host = self.nsp
        d: Deferred[Any] = Deferred()
        nodes: list[int] = []  # how many nodes there are, once server_count() answered
        counts: list[int] = []  # how many clients each node reached (0 or 1)

        def answered(args: list[Any]) -> None:
            if not d.called:
                cancel_call(timer)
                d.callback(ack_value(args))

        def settle() -> None:
            # Every node counted its clients and none has the socket: no answer will come.
            if not d.called and nodes and len(counts) >= nodes[0] and not any(counts):
                cancel_call(timer)
                d.errback(AckTimeoutError("the socket did not acknowledge"))

        def counted(count: int) -> None:
            counts.append(count)
            settle()

        def node_count(count: int) -> None:
            nodes.append(count)
            settle()

        def not_counted(failure: Failure) -> None:
            if not d.called:  # the cluster cannot be reached: fail now
                cancel_call(timer)
                d.errback(failure)

        def timed_out() -> None:
            if not d.called:
                d.errback(AckTimeoutError())

        timer = host.clock.callLater(flags.timeout, timed_out)
        packet = Packet(PacketType.EVENT, host.name, [event, *args], host.next_ack_id())
        try:
            adapter.broadcast_with_ack(packet, self._options(flags), counted, answered)
        except Exception as e:
            cancel_call(timer)
            return fail(e)
        adapter.server_count().addCallbacks(node_count, not_counted)
        return d

    def join(self, room: str | Iterable[str]) -> None:
        """Make the socket join ``room`` (a name or several)."""
        rooms = [room] if isinstance(room, str) else sorted(set(room))
        self.adapter.add_sockets(self._options(), rooms)

    def leave(self, room: str) -> None:
        """Make the socket leave ``room``."""
        self.adapter.del_sockets(self._options(), [room])

    def disconnect(self, close: bool = False) -> RemoteSocket:
        """Disconnect the socket (``close``: its whole connection)."""
        self.adapter.disconnect_sockets(self._options(), close)
        return self


# ---- the adapter --------------------------------------------------------------------------


class _Request:
    # A request of this node waiting for the answers of the others.
    __slots__ = ("current", "deferred", "expected", "kind", "responses", "started", "timer")

    def __init__(self, kind: str, expected: int, deferred: Deferred[Any],
                 responses: list[Any], started: float) -> None:
        self.started = started
        self.kind = kind
        self.expected = expected
        self.current = 0
        self.deferred = deferred
        self.responses = responses
        self.timer: IDelayedCall | None = None


class _AckRequest:
    # A broadcast with acknowledgements of this node, for the others' answers: no more
    # acknowledgements than the clients they counted.
    __slots__ = ("ack", "acks_left", "client_count_callback", "timer")

    def __init__(self, client_count_callback: Callable[[int], None], ack: AckCallback) -> None:
        self.client_count_callback = client_count_callback
        self.ack = ack
        self.acks_left = 0
        self.timer: IDelayedCall | None = None


class ClusterAdapter(Adapter):
    """An adapter whose namespace spans the nodes of a cluster (see the module docstring for
    who calls what).

    :param nsp: the namespace.
    :param uid: this adapter's id on the wire.
    :param requests_timeout: seconds to wait for the other nodes' answers when the operation
        gives no timeout of its own.
    :param counters: where to count (and log) what cannot be sent or is dropped; shared by
        the adapters of one server (default: the adapter's own).
    :param limits: what another node's message may cost (default: the defaults of
        :class:`PeerLimits`).
    :ivar uid: this adapter's id on the wire.
    :ivar counters: the :class:`ClusterCounters`.
    :ivar limits: the :class:`PeerLimits`.
    """

    def __init__(self, nsp: AdapterHost, *, uid: str, requests_timeout: float = 5.0,
                 counters: ClusterCounters | None = None,
                 limits: PeerLimits | None = None) -> None:
        super().__init__(nsp)
        self.uid = uid
        self.requests_timeout = requests_timeout
        self._clock = nsp.clock
        self.counters = ClusterCounters(nsp.clock) if counters is None else counters
        self.limits = PeerLimits() if limits is None else limits
        self._requests: dict[str, _Request] = {}
        self._ack_requests: dict[str, _AckRequest] = {}
        self._closed = False

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.nsp.name} uid={self.uid}>"

    # -- what a format provides ------------------------------------------------------------

    def server_count(self) -> Deferred[int]:
        """The number of nodes that serve this namespace, this one included."""
        raise NotImplementedError

    @property
    def pending_requests(self) -> int:
        """How many requests of this node wait for the other nodes' answers (for the
        metrics)."""
        return len(self._requests)

    def _new_id(self) -> str:
        """A new request id."""
        raise NotImplementedError

    def _encode(self, message: ClusterMessage) -> tuple[str, bytes]:
        """The channel and bytes of a message for the other nodes.

        :raises TypeError, ValueError, OverflowError: for what the wire format cannot carry.
        """
        raise NotImplementedError

    def _encode_response(self, request: ClusterMessage,
                         response: ClusterMessage) -> tuple[str, bytes] | None:
        """The channel and bytes of the answer to ``request``; ``None`` when it cannot be
        answered (its sender is unknown).

        :raises TypeError, ValueError, OverflowError: for what the wire format cannot carry.
        """
        raise NotImplementedError

    def _publish(self, channel: str, message: bytes) -> Deferred[Any]:
        """Publish encoded bytes on ``channel``."""
        raise NotImplementedError

    def _publish_failed(self, failure: Failure, what: str) -> None:
        """Log that ``what`` (e.g. "a broadcast") could not be published."""
        log.warn("{what} of namespace {nsp} not published: {why}", what=what,
                 nsp=self.nsp.name, why=log_excerpt(failure.getErrorMessage()))

    def _closed_error(self) -> Exception:
        """What the requests still waiting fail with when the adapter closes."""
        return SocketIOError(f"the adapter of namespace {self.nsp.name} was closed")

    def _fetch_timeout(self, opts: BroadcastOptions) -> float:
        """How long ``fetch_sockets`` waits: the operation's timeout, else the default."""
        return opts.flags.timeout or self.requests_timeout

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> Deferred[None] | None:
        """Fail the requests still waiting and stop every timer."""
        if self._closed:
            return None
        self._closed = True
        requests, self._requests = self._requests, {}
        for request in requests.values():
            cancel_call(request.timer)
            if not request.deferred.called:
                request.deferred.errback(self._closed_error())
        ack_requests, self._ack_requests = self._ack_requests, {}
        for ack_request in ack_requests.values():
            cancel_call(ack_request.timer)
        return None

    # -- publishing ------------------------------------------------------------------------

    def _send(self, message: ClusterMessage, what: str) -> None:
        # A message that expects no answer, sent before its local part is done: what the
        # wire cannot carry is counted and logged, and the local part still happens.
        encoded = self._encode_or_count(message, what)
        if encoded is not None:
            self._publish(*encoded).addErrback(self._publish_failed, what)

    def _encode_or_count(self, message: ClusterMessage, what: str, *,
                         raise_it: bool = False) -> tuple[str, bytes] | None:
        # The message on the wire, or None (raise_it: the error) when the cluster's encoding
        # refuses it; either way it is counted.
        try:
            return self._encode(message)
        except (TypeError, ValueError, OverflowError) as e:
            self.counters.encode_failed(what, self.nsp.name, e, log_it=not raise_it)
            if raise_it:
                raise
            return None

    def _respond(self, request: ClusterMessage, mtype: MessageType,
                 data: dict[str, Any]) -> None:
        try:
            encoded = self._encode_response(request, ClusterMessage(mtype, data, self.uid))
        except (TypeError, ValueError, OverflowError) as e:  # requests may come in floods
            self.counters.encode_failed("an answer to another node", self.nsp.name, e)
            return
        if encoded is not None:
            self._publish(*encoded).addErrback(self._publish_failed, "a response")

    # -- broadcasts ------------------------------------------------------------------------

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Deliver locally, then publish once for the other nodes (unless ``local``)."""
        super().broadcast(packet, opts)
        if not opts.flags.local:
            self._send(ClusterMessage(MessageType.BROADCAST, {
                "packet": _wire_event(packet), "opts": encode_options(opts)}, self.uid),
                "a broadcast")

    def broadcast_with_ack(self, packet: Packet, opts: BroadcastOptions,
                           client_count_callback: Callable[[int], None],
                           ack: AckCallback) -> None:
        """Deliver locally with acknowledgements and ask the other nodes to do the same: each
        answers with its client count, then with each client's acknowledgement.  When the
        cluster's encoding refuses the packet, only the local clients get it (counted,
        logged): the other nodes' counts never come, and the wait ends at its timeout."""
        super().broadcast_with_ack(packet, opts, client_count_callback, ack)
        if opts.flags.local:
            return
        request_id = self._new_id()
        encoded = self._encode_or_count(ClusterMessage(MessageType.BROADCAST, {
            "packet": _wire_event(packet), "requestId": request_id,
            "opts": encode_options(opts)}, self.uid), "a broadcast with acknowledgements")
        if encoded is None:
            return
        timeout = opts.flags.timeout
        entry = _AckRequest(client_count_callback, ack)
        self._ack_requests[request_id] = entry
        # Answers cannot be told complete here: forget the request after its timeout.
        entry.timer = self._clock.callLater(
            self.requests_timeout if timeout is None else timeout,
            self._ack_requests.pop, request_id, None)
        self._publish(*encoded).addErrback(self._publish_failed,
                                           "a broadcast with acknowledgements")

    # -- operations on the sockets of every node -------------------------------------------

    def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make the selected sockets of every node join ``rooms``."""
        if not opts.flags.local:
            self._send(ClusterMessage(MessageType.SOCKETS_JOIN, {
                "opts": encode_options(opts), "rooms": list(rooms)}, self.uid), "sockets_join")
        super().add_sockets(opts, rooms)

    def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make the selected sockets of every node leave ``rooms``."""
        if not opts.flags.local:
            self._send(ClusterMessage(MessageType.SOCKETS_LEAVE, {
                "opts": encode_options(opts), "rooms": list(rooms)}, self.uid),
                "sockets_leave")
        super().del_sockets(opts, rooms)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        """Disconnect the selected sockets of every node."""
        if not opts.flags.local:
            self._send(ClusterMessage(MessageType.DISCONNECT_SOCKETS, {
                "opts": encode_options(opts), "close": close}, self.uid),
                "disconnect_sockets")
        super().disconnect_sockets(opts, close)

    def server_side_emit(self, args: list[Any]) -> None:
        """Send ``[event, *args]`` to the other nodes' server-side handlers.

        :raises TypeError, ValueError, OverflowError: at once (counted) for what the cluster's
            encoding cannot carry: nothing else was done.
        """
        encoded = self._encode_or_count(ClusterMessage(
            MessageType.SERVER_SIDE_EMIT, {"packet": list(args)}, self.uid),
            "server_side_emit", raise_it=True)
        assert encoded is not None
        self._publish(*encoded).addErrback(self._publish_failed, "server_side_emit")

    # -- requests --------------------------------------------------------------------------

    def _request(self, kind: str, expected: int, responses: list[Any], request_id: str,
                 encoded: tuple[str, bytes], on_timeout: Callable[[_Request], Exception],
                 timeout: float | None = None) -> Deferred[Any]:
        # Publish a request; fire with the responses once ``expected`` nodes answered.
        d: Deferred[Any] = Deferred()
        request = _Request(kind, expected, d, responses, self._clock.seconds())
        self._requests[request_id] = request

        def expire() -> None:
            request.timer = None
            if self._requests.pop(request_id, None) is not None and not d.called:
                self.counters.request_timed_out(kind)
                d.errback(on_timeout(request))

        def not_sent(failure: Failure) -> None:
            if self._requests.pop(request_id, None) is not None:
                cancel_call(request.timer)
                if not d.called:
                    d.errback(failure)

        request.timer = self._clock.callLater(
            self.requests_timeout if timeout is None else timeout, expire)
        self._publish(*encoded).addErrback(not_sent)
        return d

    def _waits_for(self, request_id: object) -> bool:
        # Whether request_id is one of this node's requests (its echo is to be dropped).
        return isinstance(request_id, str) and (request_id in self._requests
                                                or request_id in self._ack_requests)

    def _waiting(self, request_id: str, kind: str) -> _Request | None:
        # The request of this node that an answer is for, if any.
        request = self._requests.get(request_id)
        return request if request is not None and request.kind == kind else None

    def _answered(self, request_id: str, request: _Request, items: Iterable[Any]) -> None:
        # One more node answered.
        request.responses.extend(items)
        request.current += 1
        if request.current >= request.expected:
            del self._requests[request_id]
            cancel_call(request.timer)
            self.counters.request_answered(request.kind,
                                           self._clock.seconds() - request.started)
            if not request.deferred.called:
                request.deferred.callback(request.responses)

    def fetch_sockets(self, opts: BroadcastOptions) -> Deferred[list[Any]]:
        """The sockets ``opts`` selects: local :class:`~txsio.Socket`\\ s, then the
        :class:`RemoteSocket`\\ s of the other nodes (only local ones with ``local``).

        Fails with :class:`RequestTimeoutError` when a node does not answer in time, or with
        the error of publishing the request.
        """
        local: list[Any] = []
        self._apply(opts, local.append)
        if opts.flags.local:
            return succeed(local)
        return Deferred.fromCoroutine(self._fetch_sockets(opts, local))

    async def _fetch_sockets(self, opts: BroadcastOptions, local: list[Any]) -> list[Any]:
        expected = await self.server_count() - 1  # not this node
        if expected <= 0:
            return local

        def timed_out(request: _Request) -> Exception:
            return RequestTimeoutError("timeout reached while waiting for fetchSockets response",
                                       responses=list(request.responses))

        request_id = self._new_id()
        encoded = self._encode(ClusterMessage(MessageType.FETCH_SOCKETS, {
            "opts": encode_options(opts), "requestId": request_id}, self.uid))
        result: list[Any] = await self._request("fetch_sockets", expected, local, request_id,
                                                encoded, timed_out, self._fetch_timeout(opts))
        return result

    def server_side_emit_with_ack(self, args: list[Any],
                                  timeout: float | None = None) -> Deferred[list[Any]]:
        """Send ``[event, *args]`` to the other nodes; fire with one answer per node.

        :param timeout: seconds to wait (default: ``requests_timeout``).
        :returns: a Deferred of the answers; it fails with :class:`~txsio.AckTimeoutError`
            (its ``responses`` holding those that arrived) when a node does not answer in
            time, or with the error of publishing the request.
        """
        request_id = self._new_id()
        try:  # fail now for what the message cannot carry
            encoded = self._encode_or_count(ClusterMessage(MessageType.SERVER_SIDE_EMIT, {
                "requestId": request_id, "packet": list(args)}, self.uid),
                "server_side_emit_with_ack", raise_it=True)
        except (TypeError, ValueError, OverflowError) as e:
            return fail(e)
        assert encoded is not None
        return Deferred.fromCoroutine(
            self._server_side_emit_with_ack(request_id, encoded, timeout))

    async def _server_side_emit_with_ack(self, request_id: str, encoded: tuple[str, bytes],
                                         timeout: float | None) -> list[Any]:
        expected = await self.server_count() - 1  # not this node
        if expected <= 0:
            return []

        def timed_out(request: _Request) -> Exception:
            return AckTimeoutError(f"timeout reached: only {request.current} responses "
                                   f"received out of {request.expected}",
                                   responses=list(request.responses))

        result: list[Any] = await self._request("server_side_emit", expected, [], request_id,
                                                encoded, timed_out, timeout)
        return result

    # -- what other nodes send -------------------------------------------------------------

    def _on_message(self, message: ClusterMessage) -> None:
        """A message of another node: a request or a broadcast (answers are passed on to
        :meth:`_on_response`).  Called by the format."""
        if self._closed or message.uid == self.uid:
            return
        mtype = message.type
        if mtype in _RESPONSES:
            self._on_response(message)
            return
        request_id = message.data.get("requestId")
        if request_id is not None and not isinstance(request_id, str):
            raise PeerMessageError("malformed", "a request id that is not a string")
        if self._waits_for(request_id):
            return  # this node's own request
        handler = self._message_handlers.get(mtype)
        if handler is None:
            log.debug("ignoring a cluster message of type {type!r}", type=mtype)
            return
        handler(self, message)

    def _on_broadcast(self, message: ClusterMessage) -> None:
        data = message.data
        wire_packet = data.get("packet")
        data_list = wire_packet.get("data") if isinstance(wire_packet, dict) else None
        if not isinstance(data_list, list) or not data_list:
            raise PeerMessageError("malformed", "a broadcast without an event")
        opts = decode_options(data.get("opts"), self.limits.max_items)
        if "requestId" in data:
            self._answer_broadcast_with_ack(message, data_list, opts)
        else:  # another node's broadcast, to the sockets here
            self._locally(Adapter.broadcast, self, self._peer_packet(data_list), opts)

    def _peer_packet(self, data: list[Any], ack_id: int | None = None) -> Packet:
        try:
            return Packet(PacketType.EVENT, self.nsp.name, data, ack_id)
        except (TypeError, ValueError) as e:
            raise PeerMessageError("malformed", f"a bad packet ({e})") from None

    @staticmethod
    def _locally(deliver: Callable[..., None], *args: Any) -> None:
        # What this node cannot encode for its clients (nothing was sent yet) is the peer's.
        try:
            deliver(*args)
        except (TypeError, ValueError) as e:
            raise PeerMessageError("malformed", f"a packet this node cannot encode ({e})"
                                   ) from None

    def _answer_broadcast_with_ack(self, message: ClusterMessage, data_list: list[Any],
                                   opts: BroadcastOptions) -> None:
        request_id = message.data.get("requestId")
        # The requester stops waiting after its timeout, and so do the clients here (each
        # keeps an ack, with one timer): never later than max_timeout, whatever it says.
        timeout = min(opts.flags.timeout or self.requests_timeout, self.limits.max_timeout)
        opts = dataclasses.replace(opts, flags=dataclasses.replace(opts.flags, timeout=timeout))
        packet = self._peer_packet(data_list, self.nsp.next_ack_id())

        def client_count(count: int) -> None:
            self._respond(message, MessageType.BROADCAST_CLIENT_COUNT,
                          {"requestId": request_id, "clientCount": count})

        def ack(args: list[Any]) -> None:
            answer: dict[str, Any] = {"requestId": request_id}
            if args:
                answer["packet"] = args[0]
            self._respond(message, MessageType.BROADCAST_ACK, answer)

        self._locally(Adapter.broadcast_with_ack, self, packet, opts, client_count, ack)

    def _on_sockets_join(self, message: ClusterMessage) -> None:
        data, most = message.data, self.limits.max_items
        Adapter.add_sockets(self, decode_options(data.get("opts"), most),
                            sorted(room_names(data.get("rooms"), most)))

    def _on_sockets_leave(self, message: ClusterMessage) -> None:
        data, most = message.data, self.limits.max_items
        Adapter.del_sockets(self, decode_options(data.get("opts"), most),
                            sorted(room_names(data.get("rooms"), most)))

    def _on_disconnect_sockets(self, message: ClusterMessage) -> None:
        data = message.data
        Adapter.disconnect_sockets(self, decode_options(data.get("opts"), self.limits.max_items),
                                   bool(data.get("close")))

    def _on_fetch_sockets(self, message: ClusterMessage) -> None:
        found: list[Recipient] = []
        self._apply(decode_options(message.data.get("opts"), self.limits.max_items),
                    found.append)
        self._respond(message, MessageType.FETCH_SOCKETS_RESPONSE, {
            "requestId": message.data.get("requestId"),
            "sockets": [socket_details(socket) for socket in found]})

    def _on_server_side_emit(self, message: ClusterMessage) -> None:
        args = message.data.get("packet")
        request_id = message.data.get("requestId")
        if not isinstance(args, list) or not args or not isinstance(args[0], str):
            return
        if request_id is None:
            self.nsp.on_server_side_emit(args, None)
            return
        answered = False

        def answer(value: Any) -> None:
            # Only the first handler's answer counts, as in Node.
            nonlocal answered
            if answered or self._closed:
                return
            answered = True
            data: dict[str, Any] = {"requestId": request_id}
            if value is not None:
                data["packet"] = value
            self._respond(message, MessageType.SERVER_SIDE_EMIT_RESPONSE, data)

        self.nsp.on_server_side_emit(args, answer)

    _message_handlers: dict[MessageType, Callable[[ClusterAdapter, ClusterMessage], None]] = {
        MessageType.BROADCAST: _on_broadcast,
        MessageType.SOCKETS_JOIN: _on_sockets_join,
        MessageType.SOCKETS_LEAVE: _on_sockets_leave,
        MessageType.DISCONNECT_SOCKETS: _on_disconnect_sockets,
        MessageType.FETCH_SOCKETS: _on_fetch_sockets,
        MessageType.SERVER_SIDE_EMIT: _on_server_side_emit,
    }

    # -- answers to this node's requests ---------------------------------------------------

    def _on_response(self, response: ClusterMessage) -> None:
        """Another node's answer to a request of this node (answers to other nodes' requests
        are ignored), up to what the request expects.  Called by the format.

        :raises PeerMessageError: for an answer beyond those or beyond the limits."""
        if self._closed:
            return
        data = response.data
        request_id = data.get("requestId")
        if not isinstance(request_id, str):
            return
        mtype = response.type
        if mtype == MessageType.BROADCAST_CLIENT_COUNT:
            ack_request = self._ack_requests.get(request_id)
            count = data.get("clientCount")
            if ack_request is not None:
                if not isinstance(count, int) or isinstance(count, bool) or count < 0:
                    raise PeerMessageError("malformed", "a client count that is not a count")
                ack_request.acks_left += count
                ack_request.client_count_callback(count)
        elif mtype == MessageType.BROADCAST_ACK:
            ack_request = self._ack_requests.get(request_id)
            if ack_request is not None:
                if ack_request.acks_left <= 0:
                    raise PeerMessageError("unexpected", "more acknowledgements than clients")
                ack_request.acks_left -= 1
                ack_request.ack([data["packet"]] if "packet" in data else [])
        elif mtype == MessageType.FETCH_SOCKETS_RESPONSE:
            request = self._waiting(request_id, "fetch_sockets")
            if request is not None:
                sockets = data.get("sockets")
                found = sockets if isinstance(sockets, list) else []
                if len(found) > self.limits.max_items:
                    raise PeerMessageError("too many items", f"an answer of {len(found)} "
                                                             "sockets")
                self._answered(request_id, request, [
                    RemoteSocket(self, details) for details in found
                    if isinstance(details, dict) and isinstance(details.get("id"), str)])
        elif mtype == MessageType.SERVER_SIDE_EMIT_RESPONSE:
            request = self._waiting(request_id, "server_side_emit")
            if request is not None:
                self._answered(request_id, request, [data.get("packet")])
