"""The Socket.IO client: :class:`Client`, its :class:`Manager` and :class:`ClientSocket`.

.. test-setup:
   import txsio
   io = txsio.Server()
   io.on("connection", lambda socket: socket.on("question", lambda n: n + 1))
   serve(io)

::

    import txsio

    client = txsio.Client()

    @client.on("news")
    def news(item):
        return "thanks"                           # the ack, when the server asked for one

    await client.connect("http://127.0.0.1:8080", auth={"token": "secret"})
    answer = await client.timeout(5).emit_with_ack("question", 42)
    await client.disconnect()

Like socket.io-client 4.8, a :class:`Manager` (``client.io``) owns one Engine.IO connection
(:class:`~txsio.engineio.client.EngineClient`), reconnects it with exponential backoff, and
multiplexes the namespaces over it; each namespace is a :class:`ClientSocket`.  A
:class:`Client` is the manager plus its ``"/"`` socket, so the common case reads like Node's
``io(url)``.

Called by the user: the public methods.  Called by the engine (its events): the manager's
``_engine_open``, ``_open_failed``, ``_on_data`` and ``_on_close``.  Called by the manager:
the sockets' ``_on_open``, ``_on_packet``, ``_on_error``, ``_on_close``.

The package, one concept a module (this module is the :class:`Client` façade and re-exports
the others' public names):

- :mod:`~txsio.client.manager`: :class:`Manager` and :class:`ManagerState`: the connection,
  its reconnection, the namespaces over it.
- :mod:`~txsio.client.socket`: :class:`ClientSocket`: buffers, acks, the retry queue.
- :mod:`~txsio.client.backoff`: :class:`Backoff`, the reconnection delays.

Theory of operation
-------------------
Manager states (:class:`ManagerState`): ``CLOSED`` ─open()─► ``OPENING`` ─engine open─►
``OPEN`` ─engine close / parse error─► ``CLOSED``.  An engine failure while opening (or the
connect ``timeout``) is an ``error``; with reconnection on, a close or failure schedules the
next attempt after ``Backoff.duration()``: ``reconnection_delay * 2**attempt``, with
``randomization_factor`` jitter, capped at ``reconnection_delay_max`` (socket.io-client's
``backo2``).  After ``reconnection_attempts`` failed attempts: ``reconnect_failed``.

A socket is *active* from :meth:`ClientSocket.connect` until :meth:`ClientSocket.disconnect`,
a refusal (CONNECT_ERROR) or the server's DISCONNECT.  When the engine opens, every active
socket sends CONNECT (with its ``auth``, evaluated anew if it is a callable, plus ``pid`` and
``offset`` for connection state recovery); the reply makes it *connected*.  When the last
active socket goes, the manager closes the engine and does not reconnect.

Emits made while a socket is not connected wait in its send buffer and go out when it
connects (volatile ones are dropped).  Acks pending when the connection goes fail with
:class:`~txsio.DisconnectedError` — except those of buffered emits, which still wait.  With
``retries``, emits go through a queue, one at a time, each resent until acknowledged or tried
``retries + 1`` times (socket.io-client 4.6's at-least-once delivery).

Disconnect reasons, as Node's client: ``"io server disconnect"``, ``"io client disconnect"``,
``"ping timeout"``, ``"transport close"``, ``"transport error"``, ``"parse error"``.  A socket
that loses the connection before it was connected gets ``connect_error`` with the reason
instead of a ``disconnect`` without a ``connect`` (Node sends ``disconnect``).
"""

from __future__ import annotations

import random as _random
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast, overload

from twisted.internet.defer import Deferred, FirstError, fail, gatherResults
from twisted.python.failure import Failure

from .._handlers import FlaggedEmitter, HandlerMethods, Listeners
from .._twisted import default_reactor
from ..engineio.client.transport import DEFAULT_MAX_PAYLOAD
from ..parser import Parser, resolve_parser
from .backoff import Backoff
from .manager import Manager, ManagerState
from .socket import Auth, ClientSocket

if TYPE_CHECKING:
    from http.cookiejar import CookieJar

    from twisted.internet.interfaces import IReactorTime
    from twisted.web.iweb import IPolicyForHTTPS

    from ..engineio.client.engine import TransportFactory

__all__ = ["Auth", "Backoff", "Client", "ClientSocket", "Manager", "ManagerState"]

_F = TypeVar("_F", bound=Callable[..., Any])

# The manager's events that Client.on routes to the manager (the others go to "/").
_CLIENT_MANAGER_EVENTS = frozenset(
    {"reconnect_attempt", "reconnect", "reconnect_error", "reconnect_failed"}
)


class Client(HandlerMethods):
    """A Socket.IO client: a :class:`Manager` and its ``"/"`` socket.

    ``client.on``, ``on_any``, ``emit``, ``emit_with_ack``, ``timeout``, ``volatile``,
    ``id``, ``connected`` and ``recovered`` are those of the ``"/"`` socket;
    :meth:`socket` gives the others.  ``client.on`` also takes the manager's reconnection
    events (``"reconnect_attempt"``, ``"reconnect"``, ``"reconnect_error"``,
    ``"reconnect_failed"``); ``client.io.on`` has all the manager's events.

    :param reconnection: reconnect after a lost connection (Node: on).
    :param reconnection_attempts: attempts before ``reconnect_failed`` (``None``: no limit).
    :param reconnection_delay: the first delay, in seconds (Node: 1).
    :param reconnection_delay_max: the largest delay, in seconds (Node: 5).
    :param randomization_factor: the jitter, from 0 to 1 (Node: 0.5).
    :param timeout: seconds a connection attempt may take (Node: 20); ``None``: no limit.
    :param ack_timeout: the default timeout of :meth:`emit_with_ack`, in seconds (``None``:
        none).
    :param retries: resend each emit until acknowledged, up to this many more times (0: off).
    :param extra_headers: HTTP headers for every request and the WebSocket handshake.
    :param clock: the clock for every timer (default: the reactor).
    :param reactor: the reactor for the network (default: the global reactor).
    :param http: the HTTP client for polling (treq's API; default: treq on a persistent
        pool).
    :param tls: the TLS policy for ``https`` / ``wss`` (default: the system's trust roots).
    :param transport_factory: builds the Engine.IO transports instead (for tests).
    :param random: a function giving floats in ``[0, 1)``, for the jitter.
    :param max_payload: the largest message accepted from the server, in bytes.
    :param close_timeout: seconds a close may take before it is forced.
    :param parser: how packets are written on the wire (socket.io-client's ``parser``):
        ``"default"``, ``"msgpack"`` (npm ``socket.io-msgpack-parser``, which the server must
        use too) or an object with the :class:`~txsio.parser.Parser` interface.
    :param upgrade: whether a connection that starts on polling upgrades to WebSocket
        (Node: true); ``False`` stays on the first transport.
    :param remember_upgrade: start on WebSocket when the last connection upgraded to it (or
        opened on it), as Node's ``rememberUpgrade``; remembered per client (Node's is per
        page).
    :param try_all_transports: when the first transport fails to open, try the next one of
        ``transports`` instead of failing (Node's ``tryAllTransports``).
    :param auto_connect: whether :meth:`socket` joins a namespace at once while connected
        (Node's ``autoConnect``, default true); with ``False`` a socket made later joins on
        its own ``connect()``.
    :param cookie_jar: an ``http.cookiejar.CookieJar`` for the cookies the server sets (a
        load balancer's sticky one) on polling answers or the WebSocket handshake's, sent with
        polling and the WebSocket handshake alike, on every reconnection too; default: a new
        one.
    """

    def __init__(
        self,
        *,
        reconnection: bool = True,
        reconnection_attempts: int | None = None,
        reconnection_delay: float = 1.0,
        reconnection_delay_max: float = 5.0,
        randomization_factor: float = 0.5,
        timeout: float | None = 20.0,
        ack_timeout: float | None = None,
        retries: int = 0,
        extra_headers: Mapping[str, str] | None = None,
        clock: IReactorTime | None = None,
        reactor: Any = None,
        http: Any = None,
        tls: IPolicyForHTTPS | None = None,
        transport_factory: TransportFactory | None = None,
        random: Callable[[], float] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        close_timeout: float = 2.0,
        parser: str | Parser = "default",
        upgrade: bool = True,
        remember_upgrade: bool = False,
        try_all_transports: bool = False,
        auto_connect: bool = True,
        cookie_jar: CookieJar | None = None,
    ) -> None:
        if clock is None:
            clock = cast("IReactorTime", default_reactor(reactor))
        #: the manager: the connection and its reconnection
        self.io = Manager(
            reconnection=reconnection, reconnection_attempts=reconnection_attempts,
            reconnection_delay=reconnection_delay, reconnection_delay_max=reconnection_delay_max,
            randomization_factor=randomization_factor, timeout=timeout,
            ack_timeout=ack_timeout, retries=retries, extra_headers=extra_headers, clock=clock,
            reactor=reactor, http=http, tls=tls, transport_factory=transport_factory,
            random=random if random is not None else _random.random, max_payload=max_payload,
            close_timeout=close_timeout, parser=resolve_parser(parser),
            upgrade=upgrade, remember_upgrade=remember_upgrade,
            try_all_transports=try_all_transports, auto_connect=auto_connect,
            cookie_jar=cookie_jar,
        )
        self._main = self.io.socket("/")
        #: the ``"/"`` socket's handlers: ``on_any``, ``on_any_outgoing`` and the rest of the
        #: catch-all family act on them
        self.listeners: Listeners = self._main.listeners

    def __repr__(self) -> str:
        return f"<Client {self.io.state.value} {sorted(self.io._nsps)}>"

    # -- connecting ------------------------------------------------------------------------

    def connect(
        self,
        url: str,
        namespaces: str | Iterable[str] | None = None,
        auth: Auth = None,
        transports: Iterable[str] = ("polling", "websocket"),
        path: str = "/socket.io",
        *,
        query: Mapping[str, str] | None = None,
        retry: bool = False,
    ) -> Deferred[None]:
        """Connect to *url* and join *namespaces*.

        :param url: ``http(s)://host:port`` (or ``ws(s)://``); a path in it names the
            namespace when *namespaces* is not given (``http://host/chat``, as Node's
            ``io()``), and its query string is sent.
        :param namespaces: the namespaces to join (default: ``["/"]``).
        :param auth: the CONNECT payload of each: a dict, or a callable returning one (or a
            Deferred or coroutine of one), called on every (re)connection.
        :param transports: ``("polling", "websocket")`` (polling, then upgrade),
            ``("websocket",)`` or ``("polling",)``.
        :param path: the server's endpoint path.
        :param query: more query parameters.
        :param retry: whether a failed first attempt goes on with the reconnection policy;
            by default it fails the Deferred and leaves the client disconnected.
        :returns: a Deferred that fires once every namespace is joined, or fails with a
            :class:`~txsio.ConnectError` (the server's refusal with its ``message`` and
            ``data``, or the connection failure), the client then disconnected.  Cancelling
            it disconnects.  Once connected, a lost connection is reconnected by the policy.
        """
        if self.io.active or any(s.active for s in self.io._nsps.values()):
            return fail(RuntimeError("already connected or connecting: disconnect() first"))
        parts = urllib.parse.urlsplit(url)
        if namespaces is None:
            namespaces = [parts.path] if parts.path not in ("", "/") else ["/"]
        elif isinstance(namespaces, str):
            namespaces = [namespaces]
        names = list(dict.fromkeys(namespaces))
        if not names:
            return fail(ValueError("no namespaces"))
        try:
            self.io._configure(urllib.parse.urlunsplit(parts._replace(path="")), path,
                               transports, query)
        except (ValueError, TypeError) as e:
            return fail(e)
        sockets = [self.io.socket(name) for name in names]
        for socket in sockets:
            if auth is not None:
                socket.auth = auth
        waiting = [socket._wait_connected(retry) for socket in sockets]
        result: Deferred[None] = Deferred(lambda _: self._abandon(sockets))
        for socket in sockets:
            socket._open()

        def connected(_: object) -> None:
            if not result.called:
                result.callback(None)

        def failed(failure: Failure) -> None:
            failure = failure.value.subFailure if isinstance(failure.value, FirstError) \
                else failure
            self._abandon(sockets)
            if not result.called:
                result.errback(failure)

        gatherResults(waiting, consumeErrors=True).addCallbacks(connected, failed)
        return result

    def _abandon(self, sockets: Sequence[ClientSocket]) -> None:
        for socket in sockets:
            if socket.active or socket.connected:
                socket.disconnect()
        if self.io.active and not self.io._active_sockets():
            self.io._close()

    def socket(self, nsp: str, auth: Auth = None) -> ClientSocket:
        """The socket of namespace *nsp*, made on first use (and connected at once if the
        client is connected or connecting).

        :param nsp: the namespace, ``"/chat"``.
        :param auth: its CONNECT payload (default: none), as for :meth:`connect`.
        """
        return self.io.socket(nsp, auth)

    def disconnect(self) -> Deferred[None]:
        """Leave every namespace and close the connection; no reconnection.

        :returns: a Deferred that fires once the connection's I/O is over (never fails).
        """
        for socket in list(self.io._nsps.values()):
            if socket.active or socket.connected:
                socket.disconnect()
        if self.io.active:
            self.io._close()
        return self.io.wait_released()

    def close(self) -> Deferred[None]:
        """Same as :meth:`disconnect`."""
        return self.disconnect()

    # -- the "/" socket --------------------------------------------------------------------

    @property
    def id(self) -> str | None:
        """The ``"/"`` socket's id (``None`` while not connected)."""
        return self._main.id

    @property
    def connected(self) -> bool:
        """Whether the ``"/"`` socket is connected."""
        return self._main.connected

    @property
    def disconnected(self) -> bool:
        """Whether the ``"/"`` socket is not connected (Node's ``socket.disconnected``)."""
        return self._main.disconnected

    @property
    def recovered(self) -> bool:
        """Whether the ``"/"`` socket's last connection recovered its session."""
        return self._main.recovered

    @property
    def transport(self) -> str | None:
        """The current transport's name (``"polling"``, ``"websocket"``), or ``None``."""
        return self.io.transport

    @overload
    def on(self, event: str) -> Callable[[_F], _F]: ...

    @overload
    def on(self, event: str, handler: _F) -> _F: ...

    def on(self, event: str, handler: _F | None = None) -> _F | Callable[[_F], _F]:
        """Register *handler* on the ``"/"`` socket (or, for the ``reconnect*`` events, on
        the manager); without *handler*, return a decorator."""
        target: Any = self.io if event in _CLIENT_MANAGER_EVENTS else self._main
        if handler is None:
            return cast("Callable[[_F], _F]", target.on(event))
        return cast("_F", target.on(event, handler))

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        """Remove *handler* (or every handler) of *event*."""
        if event in _CLIENT_MANAGER_EVENTS:
            self.io.off(event, handler)
        else:
            self._main.off(event, handler)

    def emit(self, event: str, *args: Any) -> None:
        """Emit on the ``"/"`` socket (see :meth:`ClientSocket.emit`)."""
        self._main.emit(event, *args)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event on the ``"/"`` socket."""
        self._main.send(*args)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit on ``"/"`` and return a Deferred of the ack (see
        :meth:`ClientSocket.emit_with_ack`)."""
        return self._main.emit_with_ack(event, *args)

    def timeout(self, seconds: float) -> FlaggedEmitter:
        """``client.timeout(5).emit_with_ack(...)`` on the ``"/"`` socket."""
        return self._main.timeout(seconds)

    @property
    def volatile(self) -> FlaggedEmitter:
        """``client.volatile.emit(...)`` on the ``"/"`` socket."""
        return self._main.volatile

    def compress(self, compress: bool) -> FlaggedEmitter:
        """``client.compress(False).emit(...)`` on the ``"/"`` socket."""
        return self._main.compress(compress)

