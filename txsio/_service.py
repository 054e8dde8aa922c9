"""The ``twistd sio`` service: listeners, graceful stop, connection tracking.

:func:`txsio.tap.makeService` builds a :class:`SocketIOService` with one :class:`_Listener`
child per ``--port``; twistd then calls its ``privilegedStartService``, ``startService`` and,
when stopping, ``stopService``.  The listeners listen with a :class:`_ConnectionTracker`,
which wraps each of the :class:`_TapSite`'s connections so that a graceful stop can close
every one of them.

Graceful stop (theory of operation)
-----------------------------------
:meth:`SocketIOService.stopService` runs when twistd stops (SIGTERM, SIGINT) and:

1. stops every listener, so no new connection is accepted;
2. calls :meth:`txsio.Server.close`: every socket's ``disconnect`` handlers run with the reason
   ``"server shutting down"``, its pending acknowledgements fail, and every Engine.IO session
   closes: a pending long-poll gets the close packet, a WebSocket the closing handshake (code
   1000).  Clients see a transport close and reconnect by themselves, as they do with Node;
3. closes every HTTP connection once its response is written (idle keep-alive connections at
   once, busy ones when their last request finishes); WebSocket connections end with their
   closing handshake;
4. waits for all connections to go, at most ``shutdown_timeout`` seconds, then aborts the rest.

Under twistd, SIGTERM ends the process with exit status 0 once this is done (twistd's own
handler would re-raise the signal, so the process would die of it instead).  An app that fails
to start (its Deferred or coroutine fails), or listeners that cannot listen once it is ready,
end the process with exit status 1, the cause logged once.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING, Any, cast

from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.internet.task import deferLater
from twisted.logger import ILogObserver, Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.components import Componentized
from twisted.python.failure import Failure
from zope.interface import implementer

from ._tap_log import clip
from .engineio.site import EngineRequest, EngineSite

if TYPE_CHECKING:
    from twisted.application.service import IServiceCollection
    from twisted.internet.interfaces import (
        IAddress,
        IListeningPort,
        IProtocol,
        IReactorTime,
        IStreamServerEndpoint,
        ITransport,
    )
    from twisted.web.http import Request as HTTPRequest
    from twisted.web.resource import IResource
    from twisted.web.server import Request

    from ._pages import Health
    from .server import Server

# The service's lines are twistd sio's log: one namespace for all of them, whichever module
# of the plugin writes them.
log = Logger(namespace="txsio.tap")

#: How long a graceful stop waits for the connections to close before aborting them.
SHUTDOWN_TIMEOUT = 3.0


class SocketIOService(MultiService):
    """The ``sio`` service: a Socket.IO server, its site, and one child per listener.

    twistd calls :meth:`privilegedStartService`, :meth:`startService` and, when stopping,
    :meth:`stopService` (see the module docstring for the graceful stop).

    :param io: the Socket.IO server.
    :param site: the site serving it.
    :param reactor: the reactor (timers, ``stop`` on SIGTERM).
    :param ready: fires once the app has registered its handlers; the listeners start then.
    :param app_name: what the app is called in the log.
    :param owns_process: the service is the whole process (twistd): SIGTERM stops the reactor
        for exit status 0, and a port that cannot be bound raises :class:`SystemExit`.
    :param shutdown_timeout: seconds the graceful stop waits for connections to close.
    :param health: the ``--health`` check, told when the graceful stop begins.
    :param drain_period: seconds the graceful stop keeps serving, its health check answering
        503, before it disconnects the clients (a load balancer's time to notice).
    :param log_observer: makes the observer twistd is to log to (``--log-level``,
        ``--log-format``), or ``None``; called when the service is attached to twistd's
        application (before twistd begins its log), and the observer set as the
        application's ``ILogObserver`` component.
    :ivar connections: the factory the listeners listen with; it tracks every connection.
    :ivar log_observer: the observer given to the application, once attached.
    """

    def __init__(self, io: Server, site: EngineSite, *, reactor: Any,
                 ready: Deferred[object] | None = None, app_name: str | None = None,
                 owns_process: bool = False,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT,
                 health: Health | None = None, drain_period: float = 0.0,
                 log_observer: Callable[[], ILogObserver | None] | None = None) -> None:
        super().__init__()
        self._health = health
        self._drain_period = drain_period
        self._make_log_observer = log_observer
        self.log_observer: ILogObserver | None = None
        self.io = io
        self.site = site
        self.connections = _ConnectionTracker(cast("_TapSite", site), reactor)
        self._reactor = reactor
        self._ready = ready
        self._app_name = app_name
        self._owns_process = owns_process
        self._shutdown_timeout = shutdown_timeout
        self._terminating = False
        #: the app's failure, kept until twistd's log has begun (see _app_failed)
        self._app_failure: Failure | None = None
        if ready is not None:
            ready.addCallbacks(self._app_ready, self._app_failed)

    def setServiceParent(self, parent: IServiceCollection) -> None:
        """Attach to ``parent``; give twistd's application the log observer, unless it has
        one (a ``.tac`` file may set its own)."""
        if self._make_log_observer is not None and isinstance(parent, Componentized) \
                and parent.getComponent(ILogObserver) is None:
            self.log_observer = self._make_log_observer()
            if self.log_observer is not None:
                parent.setComponent(ILogObserver, self.log_observer)
        super().setServiceParent(parent)

    def privilegedStartService(self) -> None:
        """Bind the listeners now, unless the app is still getting ready."""
        if self._ready is None:
            with self._listen_errors():
                super().privilegedStartService()
        else:
            Service.privilegedStartService(self)

    def startService(self) -> None:
        """Start listening (once the app is ready)."""
        if self._owns_process:
            self._reactor.callWhenRunning(self._install_sigterm)
        if self._app_failure is not None:
            Service.startService(self)
            self._report_app_failure()
            return
        if self._ready is None:
            with self._listen_errors():
                super().startService()
        else:
            Service.startService(self)

    @contextmanager
    def _listen_errors(self) -> Iterator[None]:
        try:
            yield
        except Exception as e:
            if not self._owns_process:
                raise
            # twistd would print a traceback for what is a configuration problem.
            raise SystemExit(f"twistd sio: {e}") from None

    def _app_ready(self, _: object) -> None:
        self._ready = None
        if not self.running:
            return  # privilegedStartService and startService will listen
        try:
            for child in self:
                child.startService()
        except Exception:
            log.failure("cannot listen")
            self._give_up()

    def _app_failed(self, failure: Failure) -> None:
        if failure.check(CancelledError):
            return  # stopped before the app was ready
        self._app_failure = failure
        if self.running or not self._owns_process:
            self._report_app_failure()
        # else: twistd has not begun its log yet (an app that failed at once, in makeService);
        # logged now, the failure would be printed to stderr and again in the log.

    def _report_app_failure(self) -> None:
        failure, self._app_failure = self._app_failure, None
        log.failure("the app {app} failed to start{exiting}", failure, app=self._app_name,
                    exiting=": twistd exits with status 1" if self._owns_process else "")
        self._give_up()

    def _give_up(self) -> None:
        # A service that will never listen: under twistd, end the process, with a status that
        # says so (systemd's Restart=on-failure restarts only a process that failed).
        if self._owns_process:
            _exit_status_at_exit(1)
            self._reactor.callWhenRunning(self._stop_reactor)

    def stopService(self) -> Deferred[None]:
        """Stop gracefully (see the module docstring)."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._ready is not None:
            self._ready.cancel()
        if self._health is not None:
            self._health.draining = True
            if self._drain_period > 0:
                # Still listening and serving: the health check now says 503.
                log.info("draining: health check failing, clients disconnected in "
                         "{seconds} s", seconds=self._drain_period)
                await deferLater(self._reactor, self._drain_period)
        await super().stopService()
        count = len(self.io.connections)
        log.info("stopping: closing {count} client connection(s)", count=count)
        self.io.close()
        await self.connections.close_all(self._shutdown_timeout)
        log.info("stopped")

    # -- SIGTERM: a graceful stop, then exit status 0 ----------------------------------------

    def _install_sigterm(self) -> None:
        # After the reactor installed its own handlers (callWhenRunning runs after them).
        try:
            signal.signal(signal.SIGTERM, self._on_sigterm)
        except ValueError:  # pragma: no cover - not the main thread
            log.warn("cannot handle SIGTERM outside the main thread")

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._reactor.callFromThread(self._sigterm)

    def _sigterm(self) -> None:
        if self._terminating:
            log.info("received SIGTERM again, still shutting down")
            return
        log.info("received SIGTERM, shutting down")
        self._stop_reactor()

    def _stop_reactor(self) -> None:
        self._terminating = True
        try:
            self._reactor.stop()
        except ReactorNotRunning:
            pass


def _exit_status_at_exit(status: int) -> None:
    """End the process with ``status`` once twistd is done.

    twistd returns normally once the reactor has stopped (exit status 0); only an exit at
    interpreter shutdown can change that.  Earlier ``atexit`` handlers do not run then, so
    the standard streams (twistd's log on stdout) are flushed first.
    """
    atexit.register(_exit_now, status)


def _exit_now(status: int) -> None:
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(status)


class _Listener(Service):
    """Listens on one endpoint while running; logs where."""

    def __init__(self, description: str, factory: _ConnectionTracker, reactor: Any) -> None:
        self.description = description
        self.endpoint: IStreamServerEndpoint = endpoints.serverFromString(reactor, description)
        self.factory = factory
        self.port: IListeningPort | None = None
        self._listening: Deferred[IListeningPort] | None = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        listening = self.endpoint.listen(self.factory)
        self._listening = listening
        failures: list[Failure] = []
        listening.addCallbacks(self._listened, failures.append)
        if failures:
            # As strports.service does: a port that cannot be bound stops the start-up.
            failures[0].raiseException()
        listening.addErrback(self._failed)

    def startService(self) -> None:
        super().startService()
        if self._listening is None and self.port is None:
            self.privilegedStartService()

    def _listened(self, port: IListeningPort) -> IListeningPort:
        self.port = port
        self._listening = None
        address = port.getHost()
        name = getattr(address, "name", None)
        log.info("listening on {address}", address=_describe(address),
                 description=self.description, port=getattr(address, "port", None),
                 unix=name.decode("utf-8", "replace") if isinstance(name, bytes) else name)
        return port

    def _failed(self, failure: Failure) -> None:
        log.failure("cannot listen on {description}", failure, description=self.description)

    def stopService(self) -> Deferred[object] | None:
        super().stopService()
        if self._listening is not None:
            self._listening.cancel()
            self._listening = None
        port, self.port = self.port, None
        if port is None:
            return None
        return maybeDeferred(port.stopListening)


def _describe(address: object) -> str:
    host = getattr(address, "host", None)
    port = getattr(address, "port", None)
    if host is not None and port is not None:
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    name = getattr(address, "name", None)
    if name is not None:
        return "unix:" + (name.decode("utf-8", "replace") if isinstance(name, bytes) else name)
    return str(address)


# -- connections ------------------------------------------------------------------------------
#
# Every accepted connection is a _TrackedConnection: the protocol the transport talks to, which
# relays to the site's HTTP channel.  The channel gets the transport itself (not a wrapper), so
# twisted.web and Autobahn see the real TCP or TLS transport: Autobahn's WebSocket takeover
# checks for TLS with isinstance, and request.isSecure() asks the transport.  The takeover
# makes Autobahn's protocol the transport's protocol; _TrackedRequest notices it right after
# rendering, and the tracked connection puts itself back in front, relaying to the WebSocket
# from then on, so that it still learns when the connection is lost.


class _TrackedConnection(Protocol):
    """One accepted connection, relaying to the site's HTTP channel.

    Twisted calls :meth:`makeConnection`, :meth:`dataReceived` and :meth:`connectionLost`;
    :class:`_TrackedRequest` calls :meth:`request_open`, :meth:`request_done` and
    :meth:`taken_over`; :meth:`_ConnectionTracker.close_all` calls :meth:`close_when_idle`.
    """

    def __init__(self, tracker: _ConnectionTracker, channel: IProtocol) -> None:
        self.tracker = tracker
        self.channel = channel
        #: the protocol that took the connection over (Autobahn's WebSocket), if one did
        self.websocket: IProtocol | None = None
        self._requests: set[Request] = set()
        self._closing = False

    def makeConnection(self, transport: ITransport) -> None:
        super().makeConnection(transport)
        self.tracker.opened(self)
        self.channel.makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.channel.dataReceived(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            self.channel.connectionLost(reason)
        finally:
            self.tracker.gone(self)

    def request_open(self, request: Request) -> None:
        self._requests.add(request)

    def request_done(self, request: Request) -> None:
        self._requests.discard(request)
        if self._closing and not self._requests and self.websocket is None:
            self._lose()

    def taken_over(self) -> None:
        """A WebSocket took the connection over: relay to it from now on."""
        transport: Any = self.transport
        # Where Autobahn's WebSocketResource put its protocol.
        attribute = "wrappedProtocol" if isinstance(transport, ProtocolWrapper) else "protocol"
        websocket = getattr(transport, attribute, None)
        if websocket is None or websocket is self:  # pragma: no cover - not Autobahn's way
            self.tracker.gone(self)
            return
        setattr(transport, attribute, self)
        self.channel = self.websocket = websocket

    def close_when_idle(self) -> None:
        """Close now if no request is open, else once the last one is done.  A WebSocket is
        left to its closing handshake (the server started it)."""
        self._closing = True
        if not self._requests and self.websocket is None:
            self._lose()

    def _lose(self) -> None:
        transport = self.transport
        if transport is not None:
            transport.loseConnection()

    def abort(self) -> None:
        """Drop the connection now."""
        transport = self.transport
        if transport is not None:
            getattr(transport, "abortConnection", transport.loseConnection)()


@implementer(IProtocolNegotiationFactory)
class _ConnectionTracker(Factory):
    """The factory the listeners listen with: the site's protocols, each in a
    :class:`_TrackedConnection`, so that a graceful stop knows every open connection.

    It provides what the site provides to the listening port beside ``buildProtocol``: on
    an ``ssl:`` endpoint Twisted asks the factory for its ALPN protocols
    (:class:`~twisted.internet.interfaces.IProtocolNegotiationFactory`), and a factory that
    does not answer makes every client that offers ALPN (browsers, curl) fail the handshake.
    """

    noisy = False

    def __init__(self, site: _TapSite, clock: IReactorTime) -> None:
        self.site = site
        self.clock = clock
        site.tracker = self
        #: the open connections, by transport
        self.connections: dict[object, _TrackedConnection] = {}
        self._waiting: list[Deferred[None]] = []

    def logPrefix(self) -> str:
        return "txsio"

    def doStart(self) -> None:
        self.site.doStart()
        super().doStart()

    def doStop(self) -> None:
        self.site.doStop()
        super().doStop()

    def acceptableProtocols(self) -> list[bytes]:
        """The site's ALPN protocols (``http/1.1``, and ``h2`` where Twisted has it)."""
        protocols: list[bytes] = self.site.acceptableProtocols()
        return protocols

    def buildProtocol(self, addr: IAddress) -> _TrackedConnection | None:  # type: ignore[override]
        channel = self.site.buildProtocol(addr)
        if channel is None:
            return None
        return _TrackedConnection(self, channel)

    def opened(self, connection: _TrackedConnection) -> None:
        self.connections[connection.transport] = connection

    def gone(self, connection: _TrackedConnection) -> None:
        if self.connections.get(connection.transport) is connection:
            del self.connections[connection.transport]
        if not self.connections and self._waiting:
            # On the next turn: the transport may still be inside its connectionLost, and the
            # waiter may end the reactor.
            self.clock.callLater(0, self._all_closed)

    def _all_closed(self) -> None:
        if not self.connections:
            waiting, self._waiting = self._waiting, []
            for d in waiting:
                if not d.called:
                    d.callback(None)

    def _all_gone(self, timeout: float) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if not self.connections:
            d.callback(None)
            return d
        self._waiting.append(d)
        return d.addTimeout(timeout, self.clock)

    async def close_all(self, timeout: float) -> None:
        """Close every connection cleanly; abort those still open after ``timeout`` seconds."""
        for connection in list(self.connections.values()):
            connection.close_when_idle()
        try:
            await self._all_gone(timeout)
            return
        except TimeoutError:
            pass
        log.warn("aborting {count} connection(s) still open after {timeout} s",
                 count=len(self.connections), timeout=timeout)
        for connection in list(self.connections.values()):
            connection.abort()
        try:
            await self._all_gone(1.0)
        except TimeoutError:
            log.warn("{count} connection(s) did not close", count=len(self.connections))


class _TrackedRequest(EngineRequest):
    """An :class:`EngineRequest` its connection knows about while it is open."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        tracker: _ConnectionTracker | None = getattr(self._site(), "tracker", None)
        connection = tracker.connections.get(self.transport) if tracker is not None else None
        self._connection = connection
        if connection is not None:
            connection.request_open(self)
            self.notifyFinish().addBoth(lambda _: connection.request_done(self))

    def process(self) -> None:
        """Render; then tell the connection if a WebSocket took it over."""
        super().process()
        # Autobahn's takeover sets the channel's transport to None; a request that finished
        # already has no channel any more.
        channel = getattr(self, "channel", None)
        if self._connection is not None and channel is not None and channel.transport is None:
            self._connection.taken_over()


class _TapSite(EngineSite):
    """The site of ``twistd sio``: bounded request bodies, connection deadlines (``deadlines``:
    the :class:`EngineSite` options), an optional access log (the combined log format, with
    what the peer sent cut: :func:`_access_line`)."""

    #: the connection tracker the listeners use (set by it)
    tracker: _ConnectionTracker | None = None

    def __init__(self, resource: IResource, *, max_request_body: int,
                 access_log: bool = False, reactor: Any = None, **deadlines: Any) -> None:
        super().__init__(resource, max_request_body=max_request_body,
                         requestFactory=_TrackedRequest, reactor=reactor,
                         logFormatter=_access_line, access_log=access_log, **deadlines)
        self.displayTracebacks = False
        self.noisy = False
        self._access_log = access_log

    def log(self, request: HTTPRequest) -> None:
        """Write the access log line, when ``--access-log`` asked for one."""
        if self._access_log:
            super().log(request)


def _access_line(timestamp: str, request: Any) -> str:
    """One access log line in the combined log format; every field the peer chose (method,
    URI, protocol, referrer, user agent) is escaped and cut to 200 characters."""
    host = getattr(request.getClientAddress(), "host", None) or "-"
    method, uri, protocol = (_quoted(v) for v in (request.method, request.uri,
                                                    request.clientproto))
    referrer = _quoted(request.getHeader(b"referer") or b"-")
    agent = _quoted(request.getHeader(b"user-agent") or b"-")
    return (f'"{_quoted(host)}" - - {timestamp} "{method} {uri} {protocol}" {request.code} '
            f'{request.sentLength or "-"} "{referrer}" "{agent}"')


def _quoted(value: bytes | str) -> str:
    """``value`` as printable ASCII that cannot end a quoted field, cut (a peer chose it)."""
    text = value.decode("latin-1") if isinstance(value, bytes) else value
    escaped = text.encode("unicode_escape").decode("ascii").replace('"', '\\"')
    return clip(escaped)
