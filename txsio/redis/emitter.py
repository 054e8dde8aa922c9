"""The emitter: emit to a Socket.IO cluster through Redis from any Python process (Node's
``@socket.io/redis-emitter`` 5.x, same messages, the classic format).

Who calls what: the application calls :class:`Emitter` (``to`` / ``emit`` / ``sockets_join``
/ ...); each operation encodes its message and hands it to the publishing function: its own
:class:`~txsio.redis.RedisConnection` (a URL emitter) or the caller's (``publish=``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from .._twisted import default_reactor
from ..protocol import RESERVED_EVENTS, PacketType
from .connection import RedisAddress, RedisConnection, _endpoint
from .wire import RequestType, broadcast_channel, dumps, pack

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["Emitter", "EmitterBroadcastOperator"]

log = Logger(namespace=__package__)  # "txsio.redis": one log source for the package


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

        from txsio.redis import Emitter

        emitter = Emitter("redis://127.0.0.1:6379")
        await emitter.to("room1").emit("news", {"hello": "world"})
        await emitter.of("/admin").sockets_join("audit")
        await emitter.close()

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
            reactor = default_reactor(reactor)
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
