"""The Adapter: rooms, room membership and the broadcast fan-out of one namespace.

:class:`Adapter` is the interface and the in-memory implementation (the default);
:class:`SessionAwareAdapter` adds the packet log of connection state recovery.  A cluster
adapter (Redis) subclasses :class:`Adapter` and adds cross-node delivery and requests.

Theory of operation: a broadcast encodes its packet **once** (:class:`EncodedPacket`), then
writes the same encoded parts to every recipient; on an idle WebSocket the frame itself is
prepared once and written as is.  Methods that a cluster adapter answers over the network
return Deferreds; the in-memory adapter returns already-fired ones.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from ._handlers import EventMethods, Listeners
from ._stats import NamespaceStats
from ._twisted import cancel_call
from .engineio._compression import uncompressed
from .engineio.packet import Packet as EnginePacket
from .engineio.packet import PacketType as EnginePacketType
from .parser import DEFAULT_PARSER, Parser
from .protocol import Packet, PacketType

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from .socket import Handshake

__all__ = [
    "Adapter",
    "AdapterHost",
    "BroadcastFlags",
    "BroadcastOptions",
    "EncodedPacket",
    "PersistedSession",
    "Recipient",
    "SessionAwareAdapter",
]

log = Logger()


@dataclass(frozen=True, slots=True)
class BroadcastFlags:
    """Flags of a broadcast: ``volatile`` (drop for clients not ready), ``local`` (this node
    only), ``timeout`` (seconds to wait for acknowledgements), ``compress`` (``False``: sent
    uncompressed)."""

    volatile: bool = False
    local: bool = False
    timeout: float | None = None
    compress: bool = True


_NO_FLAGS = BroadcastFlags()


@dataclass(frozen=True, slots=True)
class BroadcastOptions:
    """Who a broadcast reaches: sockets in any of ``rooms`` (all when empty), minus sockets in
    any of ``except_rooms``."""

    rooms: frozenset[str] = frozenset()
    except_rooms: frozenset[str] = frozenset()
    flags: BroadcastFlags = field(default=_NO_FLAGS)


@dataclass
class PersistedSession:
    """What connection state recovery keeps of a disconnected socket."""

    sid: str
    pid: str
    rooms: list[str]
    data: Any
    disconnected_at: float = 0.0
    missed_packets: list[list[Any]] = field(default_factory=list)


class EncodedPacket:
    """A Socket.IO packet encoded once, for any number of recipients.

    :ivar parts: the encoded text packet, then its binary attachments.
    :ivar engine_packets: the same, as Engine.IO message packets.
    :ivar compress: ``False`` when it goes uncompressed (its parts are marked so).
    :ivar data: the event (``[event, *args]``) the catch-alls of outgoing events of each
        recipient are told about, or ``None``.
    """

    __slots__ = ("_prepared", "compress", "data", "engine_packets", "parts")

    def __init__(self, parts: list[str | bytes], data: list[Any] | None = None,
                 compress: bool = True) -> None:
        if not compress:
            parts = [uncompressed(part) for part in parts]
        self.compress = compress
        self.parts = parts
        self.engine_packets = [EnginePacket(EnginePacketType.MESSAGE, p) for p in parts]
        self.data = data
        self._prepared: Any = None

    @classmethod
    def of(cls, packet: Packet, protocol: int = 5, compress: bool = True,
           parser: Parser = DEFAULT_PARSER) -> EncodedPacket:
        """Encode ``packet`` (an event: its data is what the outgoing catch-alls see).

        :param packet: the Socket.IO packet.
        :param protocol: the Socket.IO protocol revision (5, or 4 for EIO3 clients).
        :param compress: ``False``: to be sent uncompressed.
        :param parser: the server's parser (:mod:`txsio.parser`).
        """
        return cls(parser.encode(packet, protocol=protocol), packet.data, compress)

    def prepared_frame(self, factory: Any) -> Any:
        """The WebSocket frame of a packet that is one text message, prepared once (``None``
        for one with attachments, or a binary message: its frame's prefix depends on the
        Engine.IO revision of each recipient, so each transport frames it).

        :param factory: the Autobahn factory that prepares it (``prepareMessage``).
        """
        if len(self.parts) != 1:
            return None
        if self._prepared is None:
            text = self.parts[0]
            if not isinstance(text, str):
                return None
            self._prepared = factory.prepareMessage(("4" + text).encode("utf-8"), False)
        return self._prepared


def room_names(room: str | Iterable[str]) -> frozenset[str]:
    """The room names ``room`` stands for: one name, or several.

    :raises TypeError: for anything but a string or an iterable of strings (room names are
        strings, as in Node's adapter), naming what was given.
    """
    if isinstance(room, str):
        return frozenset((room,))
    if isinstance(room, (bytes, bytearray)) or not isinstance(room, Iterable):
        raise TypeError(f"a room is a string or an iterable of strings, not "
                        f"{type(room).__name__} ({room!r:.40})")
    names = frozenset(room)
    for name in names:
        if not isinstance(name, str):
            raise TypeError(f"a room name is a string, not {type(name).__name__} "
                            f"({name!r:.40})")
    return names


#: What an adapter calls with each acknowledgement of a broadcast: the ack's arguments.
AckCallback = Callable[[list[Any]], None]


class Recipient(Protocol):
    """What an adapter needs of a socket of its namespace (:class:`~txsio.socket.Socket`).

    The socket alone owns its acknowledgements: an adapter registers the callback of a
    broadcast's ack with :meth:`expect_ack` and takes it back with :meth:`forget_ack`.
    """

    @property
    def id(self) -> str:
        """The socket id."""

    @property
    def handshake(self) -> Handshake:
        """What the client sent when it connected."""

    @property
    def rooms(self) -> set[str]:
        """The rooms the socket is in."""

    @property
    def data(self) -> dict[str, Any]:
        """The application's free-form data of the socket."""

    def write_encoded(self, encoded: EncodedPacket, volatile: bool) -> None:
        """Tell the socket's catch-alls of outgoing events about ``encoded.data``, then write
        a packet encoded once for many recipients (dropped when not connected): the one call
        per recipient of a broadcast."""

    def expect_ack(self, ack_id: int, callback: AckCallback) -> None:
        """Call ``callback`` with the arguments of the client's ack of ``ack_id``."""

    def forget_ack(self, ack_id: int, callback: AckCallback) -> None:
        """Stop expecting the ack of ``ack_id``, if ``callback`` is still the one waiting."""

    def join(self, room: str | Iterable[str]) -> None:
        """Join one room or several."""

    def leave(self, room: str) -> None:
        """Leave a room."""

    def disconnect(self, close: bool = False) -> object:
        """Disconnect from the namespace (``close``: the whole connection)."""


class AdapterHost(Protocol):
    """What an adapter needs of its namespace (:class:`~txsio.namespace.Namespace`)."""

    @property
    def name(self) -> str:
        """The namespace name."""

    @property
    def sockets(self) -> Mapping[str, Recipient]:
        """The namespace's connected sockets by id."""

    @property
    def clock(self) -> IReactorTime:
        """The server's clock."""

    @property
    def parser(self) -> Parser:
        """The server's parser: how a broadcast's packet is encoded for the clients."""

    def next_ack_id(self) -> int:
        """A new acknowledgement id, unique in the namespace."""

    def on_server_side_emit(self, args: list[Any],
                            ack: Callable[[Any], None] | None = None) -> None:
        """Run the handlers of another node's server-side event ``[event, *args]``."""


def new_offset() -> str:
    """A new, unique, opaque offset for the recovery packet log."""
    return base64.urlsafe_b64encode(os.urandom(9)).decode("ascii")


class Adapter(EventMethods):
    """Rooms and broadcasts of one namespace, in memory (the default adapter).

    Events (``adapter.on(event, f)``), as Node's adapter emits them: ``"create-room"``
    (room) when a room gets its first member, ``"join-room"`` (room, socket id) when a socket
    joins one, ``"leave-room"`` (room, socket id) when it leaves one, ``"delete-room"`` (room)
    when a room's last member left.  The room of a socket's own id counts too.

    :param nsp: the namespace (an :class:`AdapterHost`).
    """

    def __init__(self, nsp: AdapterHost) -> None:
        #: the user's handlers of the room events
        self.listeners = Listeners(self)
        self.nsp = nsp
        #: room -> socket ids
        self.rooms: dict[str, set[str]] = {}
        #: socket id -> rooms
        self.sids: dict[str, set[str]] = {}
        # The fan-out and ack timeouts are counted in the namespace's metrics (an adapter of
        # another host counts in its own).
        stats = getattr(nsp, "stats", None)
        self._stats = stats if isinstance(stats, NamespaceStats) else NamespaceStats(nsp.name)

    # -- lifecycle -------------------------------------------------------------------------

    def init(self) -> Deferred[None] | None:
        """Called once when the namespace is created."""
        return None

    def close(self) -> Deferred[None] | None:
        """Called when the server closes."""
        return None

    def server_count(self) -> Deferred[int]:
        """The number of nodes in the cluster (1 in memory)."""
        return succeed(1)

    # -- rooms -----------------------------------------------------------------------------

    def add_all(self, sid: str, rooms: Iterable[str]) -> None:
        """Add socket ``sid`` to ``rooms``."""
        own = self.sids.get(sid)
        if own is None:
            own = self.sids[sid] = set()
        emit = self.listeners.emit_local
        for room in rooms:
            own.add(room)
            members = self.rooms.get(room)
            if members is None:
                members = self.rooms[room] = set()
                emit("create-room", room)
            if sid not in members:
                members.add(sid)
                emit("join-room", room, sid)

    def delete(self, sid: str, room: str) -> None:
        """Remove socket ``sid`` from ``room``."""
        own = self.sids.get(sid)
        if own is not None:
            own.discard(room)
        self._del(room, sid)

    def _del(self, room: str, sid: str) -> None:
        members = self.rooms.get(room)
        if members is not None and sid in members:
            members.discard(sid)
            self.listeners.emit_local("leave-room", room, sid)
            if not members:
                del self.rooms[room]
                self.listeners.emit_local("delete-room", room)

    def delete_all(self, sid: str) -> None:
        """Remove socket ``sid`` from every room."""
        own = self.sids.pop(sid, None)
        if own is None:
            return
        for room in own:
            self._del(room, sid)

    def socket_rooms(self, sid: str) -> set[str] | None:
        """The rooms of socket ``sid`` (``None`` if unknown)."""
        return self.sids.get(sid)

    def all_rooms(self) -> Deferred[set[str]]:
        """Every room name (across the cluster, for a cluster adapter)."""
        return succeed(set(self.rooms))

    # -- fan-out ---------------------------------------------------------------------------

    def _select(self, opts: BroadcastOptions) -> Iterator[Recipient]:
        # The sockets opts selects, each once, each looked up when it is reached (so that a
        # socket that went meanwhile is passed over).  A generator: the fan-out loops call
        # each recipient directly, with no callback between.
        sockets = self.nsp.sockets
        except_sids: set[str] = set()
        for room in opts.except_rooms:
            members = self.rooms.get(room)
            if members:
                except_sids.update(members)
        if opts.rooms:
            seen: set[str] = set()
            for room in opts.rooms:
                members = self.rooms.get(room)
                if not members:
                    continue
                for sid in tuple(members):
                    if sid in seen or sid in except_sids:
                        continue
                    seen.add(sid)
                    socket = sockets.get(sid)
                    if socket is not None:
                        yield socket
        else:
            for sid in tuple(self.sids):
                if sid in except_sids:
                    continue
                socket = sockets.get(sid)
                if socket is not None:
                    yield socket

    def _apply(self, opts: BroadcastOptions, callback: Callable[[Recipient], None]) -> int:
        # Call callback with each socket opts selects; return how many there were.
        called = 0
        for socket in self._select(opts):
            callback(socket)
            called += 1
        return called

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Write ``packet`` (encoded once) to every socket ``opts`` selects."""
        encoded = EncodedPacket.of(packet, compress=opts.flags.compress, parser=self.nsp.parser)
        volatile = opts.flags.volatile
        recipients = 0
        rooms = opts.rooms
        if len(rooms) == 1 and not opts.except_rooms:
            # One room, no exceptions (a plain ``to(room).emit``): the members, each looked
            # up when it is reached, with no generator between (one step per recipient).
            members = self.rooms.get(next(iter(rooms)))
            if members:
                sockets = self.nsp.sockets
                for sid in tuple(members):
                    socket = sockets.get(sid)
                    if socket is not None:
                        socket.write_encoded(encoded, volatile)
                        recipients += 1
        else:
            for socket in self._select(opts):
                socket.write_encoded(encoded, volatile)
                recipients += 1
        self._stats.fanout.observe(recipients)

    def broadcast_with_ack(
        self,
        packet: Packet,
        opts: BroadcastOptions,
        client_count_callback: Callable[[int], None],
        ack: Callable[[list[Any]], None],
    ) -> None:
        """Broadcast a packet that asks each recipient for an acknowledgement.

        Each recipient waits for its answer until it comes or ``opts.flags.timeout`` passes:
        then the recipients that did not answer forget the ack (one timer per broadcast).

        :param client_count_callback: called once with the number of recipients.
        :param ack: called with each recipient's acknowledgement arguments.
        """
        encoded = EncodedPacket.of(packet, compress=opts.flags.compress, parser=self.nsp.parser)
        volatile = opts.flags.volatile
        ack_id = packet.id
        assert ack_id is not None
        recipients: list[Recipient] = []
        # How many have not answered yet: counted as they are written to, since one may
        # answer at once (an in-memory client), before the fan-out is over.
        recipients_left = [0]
        timer: IDelayedCall | None = None

        def answered(args: list[Any]) -> None:
            # The recipient already dropped its entry; the last answer ends the wait.
            recipients_left[0] -= 1
            if recipients_left[0] == 0:
                cancel_call(timer)
            ack(args)

        def send(socket: Recipient) -> None:
            recipients.append(socket)
            recipients_left[0] += 1
            socket.expect_ack(ack_id, answered)
            socket.write_encoded(encoded, volatile)

        def expired() -> None:
            self._stats.acks_timed_out += recipients_left[0]
            for socket in recipients:
                socket.forget_ack(ack_id, answered)

        self._stats.fanout.observe(self._apply(opts, send))
        if recipients_left[0] and opts.flags.timeout is not None:
            timer = self.nsp.clock.callLater(opts.flags.timeout, expired)
        client_count_callback(len(recipients))

    def sockets(self, rooms: Iterable[str]) -> Deferred[set[str]]:
        """The ids of the sockets in ``rooms`` (all sockets when empty)."""
        sids: set[str] = set()
        self._apply(BroadcastOptions(rooms=frozenset(rooms)), lambda s: sids.add(s.id))
        return succeed(sids)

    def fetch_sockets(self, opts: BroadcastOptions) -> Deferred[list[Any]]:
        """The sockets ``opts`` selects."""
        found: list[Any] = []
        self._apply(opts, found.append)
        return succeed(found)

    def add_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make the sockets ``opts`` selects join ``rooms``."""
        self._apply(opts, lambda socket: socket.join(rooms))

    def del_sockets(self, opts: BroadcastOptions, rooms: list[str]) -> None:
        """Make the sockets ``opts`` selects leave ``rooms``."""

        def leave(socket: Recipient) -> None:
            for room in rooms:
                socket.leave(room)

        self._apply(opts, leave)

    def disconnect_sockets(self, opts: BroadcastOptions, close: bool) -> None:
        """Disconnect the sockets ``opts`` selects (``close``: their whole connection)."""
        def disconnect(socket: Recipient) -> None:
            socket.disconnect(close)

        self._apply(opts, disconnect)

    def server_side_emit(self, args: list[Any]) -> Deferred[list[Any]] | None:
        """Send an event to the other nodes of the cluster (no other node in memory)."""
        return None

    # -- connection state recovery ---------------------------------------------------------

    def persist_session(self, session: PersistedSession) -> None:
        """Keep a disconnected socket's state (only :class:`SessionAwareAdapter` does)."""

    def restore_session(self, pid: str, offset: str) -> Deferred[PersistedSession | None]:
        """The state of a socket that disconnected, with the packets it missed since
        ``offset``; ``None`` when unknown or expired."""
        return succeed(None)


@dataclass
class _LoggedPacket:
    offset: str
    emitted_at: float
    data: list[Any]
    opts: BroadcastOptions


class SessionAwareAdapter(Adapter):
    """An in-memory adapter that logs broadcasts for connection state recovery.

    Each event broadcast without acknowledgement and not volatile gets an offset, appended as
    its last argument and kept for ``max_disconnection_duration``; a socket that reconnects in
    time with its private id and last offset gets the packets it missed.

    :param nsp: the namespace.
    :param max_disconnection_duration: seconds a disconnected socket's state is kept.
    """

    def __init__(self, nsp: AdapterHost, max_disconnection_duration: float) -> None:
        super().__init__(nsp)
        self.max_disconnection_duration = max_disconnection_duration
        self._clock = nsp.clock
        self._sessions: dict[str, PersistedSession] = {}
        self._packets: list[_LoggedPacket] = []

    def _expire(self) -> None:
        threshold = self._clock.seconds() - self.max_disconnection_duration
        for pid in [p for p, s in self._sessions.items() if s.disconnected_at < threshold]:
            del self._sessions[pid]
        self._expire_packets(threshold)

    def _expire_packets(self, threshold: float) -> None:
        # The log is in emission order: drop its expired head.
        packets = self._packets
        stale = 0
        while stale < len(packets) and packets[stale].emitted_at < threshold:
            stale += 1
        if stale:
            del packets[:stale]

    def persist_session(self, session: PersistedSession) -> None:
        """Keep ``session`` for ``max_disconnection_duration`` seconds."""
        self._expire()
        session.disconnected_at = self._clock.seconds()
        self._sessions[session.pid] = session

    def restore_session(self, pid: str, offset: str) -> Deferred[PersistedSession | None]:
        """The session of ``pid`` with the packets logged after ``offset``, if both are known."""
        self._expire()
        session = self._sessions.pop(pid, None)
        if session is None:
            return succeed(None)
        index = next((i for i, p in enumerate(self._packets) if p.offset == offset), -1)
        if index == -1:
            return succeed(None)
        rooms = set(session.rooms)
        session.missed_packets = [
            logged.data for logged in self._packets[index + 1:]
            if _should_include(rooms, logged.opts)
        ]
        return succeed(session)

    def broadcast(self, packet: Packet, opts: BroadcastOptions) -> None:
        """Log an event (appending its offset) before broadcasting it."""
        if packet.type is PacketType.EVENT and packet.id is None and not opts.flags.volatile:
            offset = new_offset()
            data = [*packet.data, offset]
            packet = Packet(packet.type, packet.nsp, data, None)
            now = self._clock.seconds()
            # Bounded even when no socket ever disconnects (Node expires on a timer).
            self._expire_packets(now - self.max_disconnection_duration)
            self._packets.append(_LoggedPacket(offset, now, data, opts))
        super().broadcast(packet, opts)


def _should_include(rooms: set[str], opts: BroadcastOptions) -> bool:
    included = not opts.rooms or bool(rooms & opts.rooms)
    return included and not (rooms & opts.except_rooms)
