"""``BroadcastOperator``: who an emit reaches — ``to`` / ``in_`` / ``except_`` / ``volatile`` /
``local`` / ``timeout`` — and what to do with them.

Operators are immutable: each modifier returns a new operator, as Node's
``BroadcastOperator``, so ``io.to("a")`` can be kept and reused.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._handlers import ack_value
from ._twisted import cancel_call
from .adapter import BroadcastFlags, BroadcastOptions, room_names
from .exceptions import AckTimeoutError
from .protocol import RESERVED_EVENTS, Packet, PacketType

if TYPE_CHECKING:
    from .adapter import Adapter
    from .namespace import Namespace

__all__ = ["BroadcastOperator", "Broadcasting", "Selecting"]

log = Logger()

_NO_FLAGS = BroadcastFlags()


class BroadcastOperator:
    """A selection of sockets of one namespace, and the operations on them.

    :param nsp: the namespace.
    :param rooms: the rooms to reach (every socket when empty).
    :param except_rooms: the rooms to leave out.
    :param flags: volatile / local / timeout.
    """

    __slots__ = ("_except", "_flags", "_nsp", "_rooms")

    def __init__(self, nsp: Namespace, rooms: frozenset[str] = frozenset(),
                 except_rooms: frozenset[str] = frozenset(),
                 flags: BroadcastFlags = _NO_FLAGS) -> None:
        self._nsp = nsp
        self._rooms = rooms
        self._except = except_rooms
        self._flags = flags

    @property
    def adapter(self) -> Adapter:
        """The adapter of the namespace."""
        return self._nsp.adapter

    # -- modifiers -------------------------------------------------------------------------

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Also reach the sockets in ``room`` (a name or several).

        :param room: a room name, or an iterable of them.
        """
        return BroadcastOperator(self._nsp, self._rooms | room_names(room), self._except,
                                 self._flags)

    def in_(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Same as :meth:`to`."""
        return self.to(room)

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Leave out the sockets in ``room`` (a name or several).

        :param room: a room name, or an iterable of them.
        """
        return BroadcastOperator(self._nsp, self._rooms, self._except | room_names(room),
                                 self._flags)

    @property
    def volatile(self) -> BroadcastOperator:
        """Drop the packet for clients that are not ready to receive it now."""
        return BroadcastOperator(self._nsp, self._rooms, self._except,
                                 replace(self._flags, volatile=True))

    @property
    def local(self) -> BroadcastOperator:
        """Reach the sockets of this node only (in a cluster)."""
        return BroadcastOperator(self._nsp, self._rooms, self._except,
                                 replace(self._flags, local=True))

    def timeout(self, seconds: float) -> BroadcastOperator:
        """Wait at most ``seconds`` for the acknowledgements of :meth:`emit_with_ack`.

        :param seconds: the timeout.
        """
        return BroadcastOperator(self._nsp, self._rooms, self._except,
                                 replace(self._flags, timeout=float(seconds)))

    def compress(self, compress: bool) -> BroadcastOperator:
        """``False``: send without compression (Node's ``compress(false)``).

        :param compress: whether the packet may be compressed (the default).
        """
        return BroadcastOperator(self._nsp, self._rooms, self._except,
                                 replace(self._flags, compress=bool(compress)))

    def _options(self) -> BroadcastOptions:
        return BroadcastOptions(self._rooms, self._except, self._flags)

    # -- operations ------------------------------------------------------------------------

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` with ``args`` to every selected socket (encoded once).

        :param event: the event name (not a reserved one).
        :param args: JSON-able values; ``bytes`` anywhere travel as binary attachments.
        :raises ValueError: for a reserved event name.
        """
        if event in RESERVED_EVENTS:
            raise ValueError(f'"{event}" is a reserved event name')
        packet = Packet(PacketType.EVENT, self._nsp.name, [event, *args])
        self.adapter.broadcast(packet, self._options())

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        self.emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[list[Any]]:
        """Emit ``event`` and collect every recipient's acknowledgement.

        Needs :meth:`timeout` first.  Each answer is one value (a tuple when the client
        acknowledged with several arguments, ``None`` with none).

        :returns: a Deferred firing with the list of answers once every recipient answered, or
            failing with :class:`~txsio.AckTimeoutError` (its ``responses`` holding the answers
            that arrived) when the timeout passes first.
        """
        if event in RESERVED_EVENTS:
            return fail(ValueError(f'"{event}" is a reserved event name'))
        timeout = self._flags.timeout
        if timeout is None:
            return fail(ValueError("emit_with_ack on a broadcast needs a timeout: "
                                   "use .timeout(seconds) first"))
        nsp = self._nsp
        clock = nsp.server.clock
        responses: list[Any] = []
        # As Node: done when every node reported its client count (the adapter's
        # server_count() says how many nodes there are) and every client answered.
        expected_servers = -1
        actual_servers = 0
        expected_clients = 0
        d: Deferred[list[Any]] = Deferred()

        def check() -> None:
            if (not d.called and actual_servers >= expected_servers >= 0
                    and len(responses) >= expected_clients):
                cancel_call(timer)
                d.callback(responses)

        def on_timeout() -> None:
            if not d.called:
                d.errback(AckTimeoutError(responses=list(responses)))

        def on_count(count: int) -> None:
            nonlocal actual_servers, expected_clients
            actual_servers += 1
            expected_clients += count
            check()

        def on_ack(args: list[Any]) -> None:
            if d.called:
                return
            responses.append(ack_value(args))
            check()

        def on_server_count(count: int) -> None:
            nonlocal expected_servers
            expected_servers = count
            check()

        def on_server_count_failed(failure: Failure) -> None:
            # The cluster cannot be counted (e.g. its broker is away): fail now.
            if not d.called:
                cancel_call(timer)
                d.errback(failure)

        timer = clock.callLater(timeout, on_timeout)
        packet = Packet(PacketType.EVENT, nsp.name, [event, *args], nsp.next_ack_id())
        self.adapter.broadcast_with_ack(packet, self._options(), on_count, on_ack)
        if self._flags.local:
            on_server_count(1)  # this node only: no need to count the others
        else:
            self.adapter.server_count().addCallbacks(on_server_count, on_server_count_failed)
        return d

    def server_side_emit_with_ack(self, event: str, *args: Any) -> Deferred[list[Any]]:
        """Emit ``event`` to the other nodes of the cluster and collect one answer per node
        (the return value of its handler, ``io.on(event)``).

        The rooms of this operator do not apply; :meth:`timeout` bounds the wait (default:
        the adapter's own, 5 s for Redis).

        :returns: a Deferred of the answers (``[]`` with no other node); it fails with
            :class:`~txsio.AckTimeoutError`, its ``responses`` holding the answers that
            arrived, when a node does not answer in time.
        """
        if event in RESERVED_EVENTS:
            return fail(ValueError(f'"{event}" is a reserved event name'))
        emit_with_ack = getattr(self.adapter, "server_side_emit_with_ack", None)
        if emit_with_ack is None:
            return succeed([])  # the in-memory adapter: no other node
        return cast("Deferred[list[Any]]", emit_with_ack([event, *args], self._flags.timeout))

    def fetch_sockets(self) -> Deferred[list[Any]]:
        """The selected sockets (remote ones too, in a cluster)."""
        return self.adapter.fetch_sockets(self._options())

    def sockets_join(self, room: str | Iterable[str]) -> None:
        """Make the selected sockets join ``room`` (a name or several)."""
        self.adapter.add_sockets(self._options(), sorted(room_names(room)))

    def sockets_leave(self, room: str | Iterable[str]) -> None:
        """Make the selected sockets leave ``room`` (a name or several)."""
        self.adapter.del_sockets(self._options(), sorted(room_names(room)))

    def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect the selected sockets.

        :param close: also close their underlying connections.
        """
        self.adapter.disconnect_sockets(self._options(), close)


class Selecting:
    """``to`` / ``in_`` / ``except_`` on whatever :meth:`_operator` selects (every socket of a
    namespace; for a socket, every *other* socket of its namespace)."""

    def _operator(self) -> BroadcastOperator:
        raise NotImplementedError

    def to(self, room: str | Iterable[str]) -> BroadcastOperator:
        """The sockets in ``room`` (a name or several)."""
        return self._operator().to(room)

    def in_(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Same as :meth:`to`."""
        return self._operator().to(room)

    def except_(self, room: str | Iterable[str]) -> BroadcastOperator:
        """Leave out the sockets in ``room`` (a name or several)."""
        return self._operator().except_(room)


class Broadcasting(Selecting):
    """The broadcast operations of a namespace (and of the server, for its main namespace),
    each a shortcut for the same on :class:`BroadcastOperator`."""

    @property
    def volatile(self) -> BroadcastOperator:
        """Broadcasts dropped for clients not ready to receive them."""
        return self._operator().volatile

    @property
    def local(self) -> BroadcastOperator:
        """Broadcasts to this node's sockets only."""
        return self._operator().local

    def timeout(self, seconds: float) -> BroadcastOperator:
        """Bound the wait of :meth:`BroadcastOperator.emit_with_ack`."""
        return self._operator().timeout(seconds)

    def compress(self, compress: bool) -> BroadcastOperator:
        """Broadcasts sent without compression when ``False``."""
        return self._operator().compress(compress)

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` to every socket."""
        self._operator().emit(event, *args)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event to every socket."""
        self._operator().emit("message", *args)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[list[Any]]:
        """Emit to every socket and collect their acknowledgements (needs :meth:`timeout`)."""
        return self._operator().emit_with_ack(event, *args)

    def fetch_sockets(self) -> Deferred[list[Any]]:
        """Every socket (remote ones too, in a cluster)."""
        return self._operator().fetch_sockets()

    def sockets_join(self, room: str | Iterable[str]) -> None:
        """Make every socket join ``room``."""
        self._operator().sockets_join(room)

    def sockets_leave(self, room: str | Iterable[str]) -> None:
        """Make every socket leave ``room``."""
        self._operator().sockets_leave(room)

    def disconnect_sockets(self, close: bool = False) -> None:
        """Disconnect every socket (``close``: their connections too)."""
        self._operator().disconnect_sockets(close)
