"""One Engine.IO connection of the Socket.IO client, its reconnection, and the namespaces
over it: :class:`Manager`, :class:`ManagerState`.

Made by :class:`~txsio.client.Client` (``client.io``).  Called by the client: ``_configure``,
:meth:`~Manager.socket`, :meth:`~Manager.open`, ``_close``, :meth:`~Manager.wait_released`.
Called by its sockets: ``_write``, ``_destroy``, :meth:`~Manager.open`.  Called by the
engine (its events, subscribed per connection attempt): ``_engine_open``, ``_open_failed``,
``_on_data``, ``_on_close``.  It calls the sockets' ``_open``, ``_on_open``, ``_on_packet``,
``_on_error``, ``_on_close`` and ``_fire_waiters``.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.logger import Logger

from .._events import EventEmitter
from .._twisted import cancel_call
from ..engineio.client.engine import EngineClient, TransportFactory
from ..engineio.client.transport import TransportError
from ..engineio.client.url import EngineURL
from ..exceptions import ConnectError
from ..parser import Parser
from ..protocol import SocketIOParseError
from .backoff import Backoff
from .socket import Auth, ClientSocket

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime
    from twisted.web.iweb import IPolicyForHTTPS

__all__ = ["Manager", "ManagerState"]

log = Logger()


class ManagerState(enum.Enum):
    """The states of a :class:`Manager` (socket.io-client's ``_readyState``)."""

    #: no connection (and perhaps a reconnection scheduled)
    CLOSED = "closed"
    #: the engine is connecting
    OPENING = "opening"
    #: the engine is open
    OPEN = "open"


@dataclass
class _Target:
    url: str
    path: str
    transports: tuple[str, ...]
    query: dict[str, str]


class Manager(EventEmitter):
    """One Engine.IO connection, its reconnection, and the namespaces over it.

    Made by :class:`Client` (``client.io``), which documents the options.  Events
    (:meth:`on`): ``"open"``, ``"close"`` (reason), ``"error"`` (a
    :class:`~txsio.ConnectError`), ``"ping"``, ``"reconnect_attempt"`` (attempt number),
    ``"reconnect"`` (attempts it took), ``"reconnect_error"`` (the error),
    ``"reconnect_failed"``.
    """

    def __init__(
        self,
        *,
        reconnection: bool,
        reconnection_attempts: int | None,
        reconnection_delay: float,
        reconnection_delay_max: float,
        randomization_factor: float,
        timeout: float | None,
        ack_timeout: float | None,
        retries: int,
        extra_headers: Mapping[str, str] | None,
        clock: IReactorTime,
        reactor: Any,
        http: Any,
        tls: IPolicyForHTTPS | None,
        transport_factory: TransportFactory | None,
        random: Callable[[], float],
        max_payload: int,
        close_timeout: float,
        parser: Parser,
        upgrade: bool = True,
        remember_upgrade: bool = False,
        try_all_transports: bool = False,
        auto_connect: bool = True,
        cookie_jar: CookieJar | None = None,
    ) -> None:
        super().__init__()
        self.reconnection = reconnection
        #: whether a socket made by :meth:`socket` while connected joins at once
        self.auto_connect = auto_connect
        self.remember_upgrade = remember_upgrade
        # engine.io-client's priorWebsocketSuccess, per manager (Node's is per page).
        self._prior_websocket_success = False
        self.reconnection_attempts = (
            math.inf if reconnection_attempts is None else reconnection_attempts
        )
        self.timeout = timeout
        self.ack_timeout = ack_timeout
        self.retries = retries
        self.clock = clock
        self._reactor = reactor
        self._engine_options: dict[str, Any] = {
            "extra_headers": extra_headers, "http": http, "tls": tls,
            "transport_factory": transport_factory, "max_payload": max_payload,
            "close_timeout": close_timeout, "upgrade": upgrade,
            "try_all_transports": try_all_transports,
            # One jar for every connection, as a browser's: a reconnection (and each
            # upgrade) carries the cookies the server set.
            "cookie_jar": cookie_jar if cookie_jar is not None else CookieJar(),
        }
        self._backoff = Backoff(reconnection_delay, reconnection_delay_max,
                                randomization_factor, random=random)
        self._nsps: dict[str, ClientSocket] = {}
        #: the parser of every packet, read and written (:mod:`txsio.parser`)
        self.parser = parser
        self._decoder = parser.decoder()
        self.state = ManagerState.CLOSED
        #: the current Engine.IO connection (``None`` before the first)
        self.engine: EngineClient | None = None
        self._engines: list[EngineClient] = []
        self._target: _Target | None = None
        self._reconnecting = False
        self._skip_reconnect = False
        self._timers: list[IDelayedCall] = []
        # Bumped by _cleanup: callbacks of an older generation are stale.
        self._generation = 0

    # -- state -----------------------------------------------------------------------------

    @property
    def active(self) -> bool:
        """Whether the manager is connected, connecting or waiting to reconnect."""
        return self.state is not ManagerState.CLOSED or self._reconnecting

    @property
    def is_open(self) -> bool:
        """Whether the Engine.IO connection is open (its sockets can join namespaces)."""
        return self.state is ManagerState.OPEN

    @property
    def reconnecting(self) -> bool:
        """Whether a reconnection attempt is scheduled or under way."""
        return self._reconnecting

    @property
    def writable(self) -> bool:
        """Whether a packet written now goes out at once."""
        return self.engine is not None and self.engine.writable

    @property
    def transport(self) -> str | None:
        """The name of the engine's transport (``"polling"``, ``"websocket"``) while open."""
        engine = self.engine
        if self.state is not ManagerState.OPEN or engine is None or engine.transport is None:
            return None
        return engine.transport.name

    def _configure(self, url: str, path: str, transports: Iterable[str],
                   query: Mapping[str, str] | None) -> None:
        names = tuple(transports)
        # Validate now, not on the first attempt.
        EngineURL.parse(url, path, query)
        if not names or not set(names) <= {"polling", "websocket"}:
            raise ValueError(f"transports are 'polling' and 'websocket', not {names!r}")
        self._target = _Target(url, path, names, dict(query or {}))

    def socket(self, nsp: str, auth: Auth = None) -> ClientSocket:
        """The socket of namespace *nsp* (made on first use; connected at once if the
        manager is active)."""
        if not nsp.startswith("/"):
            nsp = "/" + nsp
        socket = self._nsps.get(nsp)
        if socket is None:
            socket = self._nsps[nsp] = ClientSocket(self, nsp, auth)
        elif auth is not None:
            socket.auth = auth
        if self.active and not socket.active and self.auto_connect:
            socket._open()
        return socket

    # -- opening ---------------------------------------------------------------------------

    def open(self, callback: Callable[[ConnectError | None], None] | None = None) -> None:
        """Open the connection (if closed); *callback* gets ``None`` or the error."""
        if self.state is not ManagerState.CLOSED:
            return
        target = self._target
        if target is None:
            raise RuntimeError("connect() first: no server URL")
        transports = target.transports
        if self.remember_upgrade and self._prior_websocket_success \
                and "websocket" in transports:
            # The last connection upgraded: start on WebSocket (engine.io-client's
            # rememberUpgrade), the others after it.
            transports = ("websocket", *(t for t in transports if t != "websocket"))
        engine = EngineClient(
            target.url, path=target.path, transports=transports, query=target.query,
            clock=self.clock, reactor=self._reactor, **self._engine_options,
        )
        engine.on("upgrade", self._remember_transport)
        engine.on("upgrade_error", lambda error: self._remember_transport("polling"))
        engine.on("error", lambda error: self._remember_transport("polling"))
        self.engine = engine
        self._engines.append(engine)
        engine.wait_released().addCallback(lambda _: self._engines.remove(engine))
        self.state = ManagerState.OPENING
        self._skip_reconnect = False
        generation = self._generation

        def current() -> bool:
            return self._generation == generation and self.engine is engine

        def on_open() -> None:
            if current():
                self._engine_open(engine, callback)

        def on_error(error: TransportError) -> None:
            if current():
                self._open_failed(ConnectError(error.message, error.description), callback)

        def on_close(reason: str, description: Any) -> None:
            if current():
                self._open_failed(ConnectError(reason, description), callback)

        def on_timeout() -> None:
            if current():
                log.info("connection attempt timed out after {t} s", t=self.timeout)
                self._open_failed(ConnectError("timeout"), callback)
                engine.close()

        engine.on("open", on_open)
        engine.on("error", on_error)
        engine.on("close", on_close)
        if self.timeout is not None:
            self._timers.append(self.clock.callLater(self.timeout, on_timeout))
        engine.open()

    def _remember_transport(self, name: str) -> None:
        self._prior_websocket_success = name == "websocket"

    def _open_failed(self, error: ConnectError,
                     callback: Callable[[ConnectError | None], None] | None) -> None:
        self._cleanup()
        self.state = ManagerState.CLOSED
        self.emit("error", error)
        for socket in self._active_sockets():
            socket._on_error(error)
        if callback is not None:
            callback(error)
        else:
            self._maybe_reconnect_on_open()

    def _engine_open(self, engine: EngineClient,
                     callback: Callable[[ConnectError | None], None] | None) -> None:
        if engine.transport is not None:
            self._remember_transport(engine.transport.name)
        self._cleanup()
        self.state = ManagerState.OPEN
        generation = self._generation

        def current() -> bool:
            return self._generation == generation and self.engine is engine

        def on_ping() -> None:
            if current():
                self.emit("ping")

        def on_message(data: str | bytes) -> None:
            if current():
                self._on_data(data)

        def on_error(error: TransportError) -> None:
            if current():
                self.emit("error", ConnectError(error.message, error.description))

        def on_close(reason: str, description: Any) -> None:
            if current():
                self._on_close(reason, description)

        engine.on("ping", on_ping)
        engine.on("message", on_message)
        engine.on("error", on_error)
        engine.on("close", on_close)
        self.emit("open")
        for socket in self._active_sockets():
            if self._generation != generation:
                break
            socket._on_open()
        if callback is not None and self._generation == generation:
            callback(None)

    def _maybe_reconnect_on_open(self) -> None:
        # Only on a first connection (a reconnection loop handles its own failures).
        if not self._reconnecting and self.reconnection and self._backoff.attempts == 0:
            self._reconnect()

    # -- traffic ---------------------------------------------------------------------------

    def _on_data(self, data: str | bytes) -> None:
        try:
            packet = self._decoder.feed(data)
        except SocketIOParseError as e:
            log.warn("bad Socket.IO packet from the server: {why}", why=e)
            self._on_close("parse error", e)
            return
        if packet is None:
            return
        socket = self._nsps.get(packet.nsp)
        if socket is None or not socket.active:
            log.debug("packet for namespace {nsp}, not joined", nsp=packet.nsp)
            return
        socket._on_packet(packet)

    def _write(self, encoded: Sequence[str | bytes]) -> None:
        engine = self.engine
        if engine is not None:
            engine.send_all(encoded)

    def _active_sockets(self) -> list[ClientSocket]:
        return [s for s in self._nsps.values() if s.active]

    # -- closing ---------------------------------------------------------------------------

    def _destroy(self, socket: ClientSocket) -> None:
        # A socket went inactive: close when none is left.
        if not self._active_sockets():
            self._close()

    def _cleanup(self) -> None:
        self._generation += 1
        for timer in self._timers:
            cancel_call(timer)
        self._timers = []
        self._decoder.reset()

    def _close(self) -> None:
        self._skip_reconnect = True
        self._reconnecting = False
        self._on_close("forced close")

    def _on_close(self, reason: str, description: Any = None) -> None:
        log.info("connection closed ({reason})", reason=reason)
        self._cleanup()
        engine = self.engine
        if engine is not None:
            engine.close()
        self._backoff.reset()
        was_closed = self.state is ManagerState.CLOSED
        self.state = ManagerState.CLOSED
        if not was_closed:
            self.emit("close", reason, description)
            for socket in self._active_sockets():
                socket._on_close(reason, description)
        if self.reconnection and not self._skip_reconnect:
            self._reconnect()

    def wait_released(self) -> Deferred[None]:
        """Fire once every closed connection's I/O is over (never fails)."""
        engines = [e for e in self._engines if e is not self.engine or not self.active]
        if not engines:
            return succeed(None)
        return gatherResults([e.wait_released() for e in engines]).addCallback(lambda _: None)

    # -- reconnecting ----------------------------------------------------------------------

    def _reconnect(self) -> None:
        if self._reconnecting or self._skip_reconnect:
            return
        if self._backoff.attempts >= self.reconnection_attempts:
            log.info("reconnection failed")
            self._backoff.reset()
            self._reconnecting = False
            self.emit("reconnect_failed")
            error = ConnectError("reconnect failed")
            for socket in list(self._nsps.values()):
                socket._fire_waiters(error)
            return
        delay = self._backoff.duration()
        log.info("reconnecting in {delay} s", delay=delay)
        self._reconnecting = True
        self._timers.append(self.clock.callLater(delay, self._attempt))

    def _attempt(self) -> None:
        if self._skip_reconnect:
            return
        self.emit("reconnect_attempt", self._backoff.attempts)
        if self._skip_reconnect:
            return
        self.open(self._attempt_done)

    def _attempt_done(self, error: ConnectError | None) -> None:
        if error is not None:
            self._reconnecting = False
            self._reconnect()
            self.emit("reconnect_error", error)
        else:
            attempts = self._backoff.attempts
            self._reconnecting = False
            self._backoff.reset()
            self.emit("reconnect", attempts)
