"""``twistd sio``: the command-line :class:`Options` and :func:`makeService`.

::

    twistd -n sio --port 8080                          # the demo chat at http://localhost:8080/
    twistd -n sio --port tcp:8080:interface=127.0.0.1 --app myapp.chat:setup --static public
    twistd -n sio --port ssl:8443:privateKey=key.pem:certKey=cert.pem --port unix:/run/sio.sock

``twisted/plugins/txsio_plugin.py`` only names this module.  An existing Twisted application
embeds the same service::

    options = txsio.tap.Options()
    options.parseOptions(["--port", "tcp:8080", "--app", "myapp.chat:setup"])
    txsio.tap.makeService(options).setServiceParent(application)

What the service serves
-----------------------
One :class:`txsio.Server` mounted at ``--path`` (default ``/socket.io``), with ``--client-js``
at ``<path>/socket.io.js``, and ``--static`` (or, without it, the demo page of
``txsio/demo/``) at ``/``, all in one :class:`~txsio.engineio.site.EngineSite` (request
bodies bounded by ``--max-http-buffer-size``) listening on every ``--port``.  ``--app``
names a callable that receives the server and registers the handlers; without it the demo
chat's handlers run.  One log line per client connection and one per disconnection, with the
reason.

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
handler would re-raise the signal, so the process would die of it instead).
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import math
import os
import signal
import sys
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote, urlsplit

from twisted.application.service import MultiService, Service
from twisted.internet import endpoints
from twisted.internet.defer import CancelledError, Deferred, TimeoutError, maybeDeferred
from twisted.internet.error import ReactorNotRunning
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.web.resource import IResource, Resource
from twisted.web.static import File
from zope.interface import implementer

from ._twisted import default_reactor
from ._version import __version__
from .engineio.site import EngineRequest, EngineSite
from .server import Server

if TYPE_CHECKING:
    from twisted.internet.interfaces import (
        IAddress,
        IListeningPort,
        IProtocol,
        IReactorTime,
        IStreamServerEndpoint,
        ITransport,
    )
    from twisted.web.http import Request as HTTPRequest
    from twisted.web.server import Request

    from .engineio.session import EngineSession

__all__ = ["DEFAULT_PORT", "Options", "SocketIOService", "makeService"]

log = Logger()

#: Where ``twistd sio`` listens without ``--port``.
DEFAULT_PORT = "tcp:8080"
#: How long a graceful stop waits for the connections to close before aborting them.
SHUTDOWN_TIMEOUT = 3.0
#: The demo served at ``/`` without ``--static`` (``index.html`` and its assets).
DEMO_DIR = Path(__file__).resolve().parent / "demo"


# -- options ----------------------------------------------------------------------------------


class Options(usage.Options):
    """The options of ``twistd sio``; a bad value raises :class:`usage.UsageError`.

    After :meth:`parseOptions`: ``self["port"]`` (endpoint strings), ``self["path"]``,
    ``self["static"]``, ``self["client-js"]`` (absolute paths or ``None``),
    ``self["cors-origin"]`` (a list), ``self["ping-interval"]``, ``self["ping-timeout"]``
    (seconds), ``self["max-http-buffer-size"]`` (bytes), ``self["allow-eio3"]``,
    ``self["access-log"]``, ``self["app"]`` (the ``module:callable`` text) and :attr:`app`
    (the callable it names, or ``None``).
    """

    synopsis = "[options]"
    longdesc = (
        "Run a Socket.IO server.  Without --app it serves the demo chat at / .  "
        "--app module:callable names a function that receives the txsio.Server and "
        "registers your handlers; it may return a Deferred, or be a coroutine function, "
        "and the server listens once it has finished.  --port takes a port number or any "
        "Twisted server endpoint string (tcp:8080:interface=127.0.0.1, "
        "ssl:8443:privateKey=key.pem:certKey=cert.pem, unix:/run/sio.sock), and may be "
        "repeated.  SIGTERM stops gracefully: clients are disconnected with the reason "
        "'server shutting down' and reconnect by themselves to the next server."
    )
    optFlags = [
        ["allow-eio3", None, "Also serve socket.io-client 2.x (Engine.IO v3, Socket.IO v4)."],
        ["access-log", None, "Log every HTTP request (long-polling clients make many)."],
        ["redis-sharded", None, "With --redis: Node's sharded Redis adapter "
         "(createShardedAdapter: SPUBLISH/SSUBSCRIBE, Redis 7 or later)."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["port"] = []
        self["app"] = None
        self["path"] = "/socket.io"
        self["static"] = None
        self["client-js"] = None
        self["cors-origin"] = []
        self["ping-interval"] = 25.0
        self["ping-timeout"] = 20.0
        self["max-http-buffer-size"] = 1_000_000
        self["redis"] = None
        self["redis-key"] = "socket.io"
        #: the callable named by ``--app``, once loaded
        self.app: Callable[[Server], object] | None = None

    def opt_port(self, value: str) -> None:
        """A port number or a server endpoint string; repeat to listen on several [8080]."""
        self["port"].append(endpoint_description(value))

    opt_p = opt_port

    def opt_listen(self, value: str) -> None:
        """The same as --port."""
        self.opt_port(value)

    def opt_app(self, value: str) -> None:
        """module:callable that registers your handlers on the server [the demo chat]."""
        self.app = load_app(value)
        self["app"] = value

    opt_a = opt_app

    def opt_path(self, value: str) -> None:
        """Where the Socket.IO endpoint is [/socket.io]."""
        segments = [s for s in value.strip().split("/") if s]
        if not segments or any(c in value for c in "?#%\\") or ".." in segments:
            raise usage.UsageError(f"--path {value!r}: expected a path such as /socket.io")
        self["path"] = "/" + "/".join(segments)

    def opt_static(self, value: str) -> None:
        """A directory served at / (index.html, no listings, no dotfiles) [the demo]."""
        path = Path(value).expanduser()
        if not path.is_dir():
            raise usage.UsageError(f"--static {value!r}: not a directory")
        self["static"] = str(path.resolve())

    opt_s = opt_static

    def opt_client_js(self, value: str) -> None:
        """A file served at <path>/socket.io.js, e.g. socket.io-client's dist/socket.io.js."""
        path = Path(value).expanduser()
        if not path.is_file():
            raise usage.UsageError(f"--client-js {value!r}: not a file")
        self["client-js"] = str(path.resolve())

    def opt_cors_origin(self, value: str) -> None:
        """An origin allowed from other sites (https://app.example) or *; repeatable."""
        origin = value.strip().rstrip("/")
        if origin != "*":
            try:
                parts = urlsplit(origin)
            except ValueError:
                parts = urlsplit("")
            if not parts.scheme or not parts.netloc or parts.path or parts.query \
                    or parts.fragment:
                raise usage.UsageError(
                    f"--cors-origin {value!r}: expected * or an origin such as "
                    "https://app.example")
        self["cors-origin"].append(origin)

    def opt_ping_interval(self, value: str) -> None:
        """Seconds between heartbeats [25]."""
        self["ping-interval"] = _positive_seconds("ping-interval", value)

    def opt_ping_timeout(self, value: str) -> None:
        """Seconds a client has to answer a heartbeat [20]."""
        self["ping-timeout"] = _positive_seconds("ping-timeout", value)

    def opt_max_http_buffer_size(self, value: str) -> None:
        """The largest message or HTTP request body, in bytes [1000000]."""
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number.is_integer() and number >= 1):
            raise usage.UsageError(
                f"--max-http-buffer-size {value!r}: expected a positive number of bytes")
        self["max-http-buffer-size"] = int(number)

    def opt_redis(self, value: str) -> None:
        """Join a cluster through Redis (redis://host:port[/db]), in the wire format of
        Node's @socket.io/redis-adapter."""
        from .redis import RedisAddress

        try:
            RedisAddress.parse(value.strip())
        except ValueError as e:
            raise usage.UsageError(f"--redis {value!r}: {e}") from None
        self["redis"] = value.strip()

    def opt_redis_key(self, value: str) -> None:
        """The Redis channel prefix shared by the cluster [socket.io]."""
        if not value.strip():
            raise usage.UsageError("--redis-key: expected a non-empty prefix")
        self["redis-key"] = value.strip()

    def postOptions(self) -> None:
        """Listen on :data:`DEFAULT_PORT` when no ``--port`` was given; ``--redis-sharded``
        needs ``--redis``."""
        if not self["port"]:
            self["port"] = [DEFAULT_PORT]
        if self["redis-sharded"] and self["redis"] is None:
            raise usage.UsageError("--redis-sharded: needs --redis URL")


def endpoint_description(value: str) -> str:
    """Check a ``--port`` value; return it as a server endpoint string.

    :param value: a port number (``8080`` means ``tcp:8080``) or an endpoint string.
    :raises usage.UsageError: the endpoint string does not parse, or names missing files.
    """
    text = value.strip()
    if text.isdecimal():
        number = int(text)
        if number > 65535:
            raise usage.UsageError(f"--port {value!r}: a port number is 0 to 65535")
        return f"tcp:{number}"
    try:
        # Only builds the endpoint (reading an ssl: endpoint's key and certificate).
        endpoints.serverFromString(default_reactor(), text)
    except Exception as e:
        hint = " (write a colon inside a value as \\:)" if isinstance(e, TypeError) else ""
        raise usage.UsageError(f"--port {value!r}: {e}{hint}") from None
    return text


def load_app(spec: str) -> Callable[[Server], object]:
    """The callable that ``--app module:callable`` names.

    The current directory is searched for the module too, as ``python -m`` does.

    :param spec: ``package.module:name`` (``name`` may be dotted: ``module:App.setup``).
    :raises usage.UsageError: the module or the name does not exist, or is not callable.
    """
    module_name, sep, attribute = spec.strip().partition(":")
    if not sep or not module_name or not attribute:
        raise usage.UsageError(f"--app {spec!r}: expected module:callable, e.g. myapp:setup")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only the named module missing is a usage error; a missing import inside it is a bug
        # in the app, and its traceback says where.
        if not _names(e, module_name):
            raise
        cwd = os.getcwd()
        if cwd in sys.path or "" in sys.path:
            raise usage.UsageError(f"--app {spec!r}: no module named {e.name!r}") from None
        # twistd does not search the current directory; python -m does.
        sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if not _names(e, module_name):
                raise
            sys.path.remove(cwd)
            raise usage.UsageError(f"--app {spec!r}: no module named {e.name!r}") from None
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise usage.UsageError(
                f"--app {spec!r}: {module_name} has no attribute {attribute!r}") from None
    if not callable(target):
        raise usage.UsageError(f"--app {spec!r}: {attribute} is not callable")
    return cast("Callable[[Server], object]", target)


def _names(error: ModuleNotFoundError, module_name: str) -> bool:
    """Whether the missing module is ``module_name`` or one of its parents."""
    return error.name is not None and (
        module_name == error.name or module_name.startswith(error.name + "."))


def _positive_seconds(option: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise usage.UsageError(f"--{option} {value!r}: expected a positive number of seconds")
    return seconds


# -- the service ------------------------------------------------------------------------------


def _redis_adapter(options: Options, reactor: Any) -> Any:
    """The Redis adapter factory of ``--redis``, or ``None`` (the in-memory adapter)."""
    if options["redis"] is None:
        return None
    from .redis import redis_adapter

    return redis_adapter(options["redis"], key=options["redis-key"], reactor=reactor,
                         sharded=bool(options["redis-sharded"]))


def makeService(
    options: Options,
    *,
    reactor: Any = None,
    owns_process: bool | None = None,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
) -> SocketIOService:
    """Build the ``sio`` service from parsed :class:`Options`.

    Calls the ``--app`` callable (or the demo's ``setup``) with the new server now; when it
    returns a Deferred (or is a coroutine function), the listeners start once that fires.

    :param options: the parsed options.
    :param reactor: the reactor for the endpoints and every timer (default: the global one).
    :param owns_process: whether the service is the whole process, as under twistd (the
        default when ``options.parent`` is set): SIGTERM then exits with status 0 after the
        graceful stop, and a port that cannot be bound ends the process with a one-line error.
    :param shutdown_timeout: seconds the graceful stop waits for connections to close.
    :returns: a :class:`SocketIOService`, a ``MultiService`` with one child per endpoint.
    """
    reactor = default_reactor(reactor)
    cors = list(options["cors-origin"])
    io = Server(
        path=options["path"],
        ping_interval=options["ping-interval"],
        ping_timeout=options["ping-timeout"],
        max_http_buffer_size=options["max-http-buffer-size"],
        cors_allowed_origins="*" if "*" in cors else (cors or None),
        allow_eio3=bool(options["allow-eio3"]),
        adapter=_redis_adapter(options, reactor),
        clock=reactor,
    )
    _log_sessions(io)

    if options["static"] is not None:
        site_root: IResource = _StaticFiles(options["static"])
        content = f"static files from {options['static']}"
    elif options.app is None and (DEMO_DIR / "index.html").is_file():
        # The demo page needs the demo's handlers: only without --app.
        demo = _DemoFiles(str(DEMO_DIR))
        demo.sio_path = options["path"]
        site_root = demo
        content = "the demo page at /"
    else:
        site_root = _Placeholder(options["path"])
        content = "a placeholder page at /"
    client_js = File(options["client-js"]) if options["client-js"] is not None else None
    root = _Root(io.resource(), options["path"], site_root, client_js)
    site = _TapSite(root, max_request_body=options["max-http-buffer-size"],
                    access_log=bool(options["access-log"]), reactor=reactor)

    app = options.app
    app_name = options["app"]
    if app is None:
        app, app_name = _demo_setup()
    ready: Deferred[object] | None = None
    if app is not None:
        result = app(io)
        if isinstance(result, Coroutine):
            result = Deferred.fromCoroutine(result)
        if isinstance(result, Deferred):
            ready = result

    if owns_process is None:
        owns_process = getattr(options, "parent", None) is not None
    service = SocketIOService(io, site, reactor=reactor, ready=ready, app_name=app_name,
                              owns_process=owns_process, shutdown_timeout=shutdown_timeout)
    for description in options["port"]:
        _Listener(description, service.connections, reactor).setServiceParent(service)
    log.info("txsio {version}: Socket.IO at {path}, app {app}, {content}",
             version=__version__, path=io.path, app=app_name or "none", content=content)
    return service


def _demo_setup() -> tuple[Callable[[Server], object] | None, str | None]:
    """The demo chat's ``setup`` (``txsio.demo.app``), if the demo is there."""
    try:
        found = importlib.util.find_spec("txsio.demo.app")
    except ModuleNotFoundError:
        found = None
    if found is None:
        return None, None
    module = importlib.import_module("txsio.demo.app")
    setup: Callable[[Server], object] = module.setup
    return setup, "txsio.demo.app:setup"


def _log_sessions(io: Server) -> None:
    """One log line per client connection (Engine.IO session) and one per disconnection."""

    def connected(session: EngineSession) -> None:
        sid = session.id
        request = session.request
        log.info("client {sid} connected from {address} over {transport}", sid=sid,
                 address=getattr(request, "address", "") or "?",
                 transport=session.transport.name)

        def closed(reason: str, *_: object) -> None:
            log.info("client {sid} disconnected: {reason}", sid=sid, reason=reason)

        session.on("close", closed)

    io.engine.on("connection", connected)


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
    :ivar connections: the factory the listeners listen with; it tracks every connection.
    """

    def __init__(self, io: Server, site: EngineSite, *, reactor: Any,
                 ready: Deferred[object] | None = None, app_name: str | None = None,
                 owns_process: bool = False,
                 shutdown_timeout: float = SHUTDOWN_TIMEOUT) -> None:
        super().__init__()
        self.io = io
        self.site = site
        self.connections = _ConnectionTracker(cast("_TapSite", site), reactor)
        self._reactor = reactor
        self._ready = ready
        self._app_name = app_name
        self._owns_process = owns_process
        self._shutdown_timeout = shutdown_timeout
        self._terminating = False
        if ready is not None:
            ready.addCallbacks(self._app_ready, self._app_failed)

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
        log.failure("the app {app} failed to start", failure, app=self._app_name)
        self._give_up()

    def _give_up(self) -> None:
        # A service that will never listen: under twistd, end the process.
        if self._owns_process:
            self._reactor.callWhenRunning(self._stop_reactor)

    def stopService(self) -> Deferred[None]:
        """Stop gracefully (see the module docstring)."""
        return Deferred.fromCoroutine(self._stop())

    async def _stop(self) -> None:
        if self._ready is not None:
            self._ready.cancel()
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
    """The site of ``twistd sio``: bounded request bodies, an optional access log."""

    #: the connection tracker the listeners use (set by it)
    tracker: _ConnectionTracker | None = None

    def __init__(self, resource: IResource, *, max_request_body: int,
                 access_log: bool = False, reactor: Any = None) -> None:
        super().__init__(resource, max_request_body=max_request_body,
                         requestFactory=_TrackedRequest, reactor=reactor)
        self.displayTracebacks = False
        self.noisy = False
        self._access_log = access_log

    def log(self, request: HTTPRequest) -> None:
        """Write the access log line, when ``--access-log`` asked for one."""
        if self._access_log:
            super().log(request)


# -- resources --------------------------------------------------------------------------------


class _Root(Resource):
    """Routes ``<path>/socket.io.js`` to the client file, the rest of ``<path>`` to the
    Engine.IO resource (a leaf), and everything else to the site's own root."""

    def __init__(self, engine: IResource, path: str, site_root: IResource,
                 client_js: IResource | None) -> None:
        super().__init__()
        self._engine = engine
        self._segments = [s.encode("utf-8") for s in path.strip("/").split("/")]
        self._site_root = site_root
        self._client_js = client_js

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        """Match the whole endpoint path, whatever its depth, before the site's root."""
        # Twisted already moved ``path`` from request.postpath to request.prepath.
        n = len(self._segments)
        segments = [path, *(request.postpath or [])[: n - 1]]
        if segments != self._segments:
            return self._site_root.getChildWithDefault(path, request)
        _consume(request, n - 1)
        if self._client_js is not None and request.postpath == [b"socket.io.js"]:
            _consume(request, 1)
            return self._client_js
        return self._engine

    def render(self, request: Request) -> bytes | int:
        """The site root renders a request for the root itself."""
        result: bytes | int = self._site_root.render(request)
        return result


def _consume(request: Request, count: int) -> None:
    assert request.prepath is not None and request.postpath is not None
    for _ in range(count):
        request.prepath.append(request.postpath.pop(0))


class _NotFound(Resource):
    """A plain-text 404 (no HTML error page)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Not found\n"


class _StaticFiles(File):
    """``--static``: files and ``index.html``, no directory listings, no dotfiles."""

    indexNames = ["index.html"]
    # Twisted's own is an HTML error page.
    childNotFound = _NotFound()  # type: ignore[assignment]

    def hidden(self, name: str) -> bool:
        """Whether a file or directory name is not served."""
        return name.startswith(".")

    def getChild(self, path: bytes, request: Request) -> IResource:
        name = path.decode("utf-8", "replace")
        if self.hidden(name):
            return self.childNotFound
        child: IResource = super().getChild(path, request)
        return child

    def directoryListing(self) -> IResource:
        return self.childNotFound


#: The demo's Content-Security-Policy: scripts from this origin and the one CDN file the page
#: pins by its hash (its fallback without ``--client-js``), connections to this origin (its
#: WebSocket included) and to the ``blob:`` URLs of received images, nothing inline.
DEMO_CSP = (
    "default-src 'self'; script-src 'self' https://cdn.socket.io/4.8.3/socket.io.min.js; "
    "connect-src 'self' blob:; img-src 'self' blob:; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class _DemoFiles(_StaticFiles):
    """The demo page's directory, without its Python modules, served with :data:`DEMO_CSP`.

    The page finds the endpoint at ``?path=`` (default ``/socket.io``): with another
    ``--path``, ``/`` redirects to ``/?path=<path>`` so that the page finds this server's.
    """

    sio_path = "/socket.io"

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"content-security-policy", DEMO_CSP.encode("ascii"))
        request.setHeader(b"x-content-type-options", b"nosniff")
        result: bytes | int = super().render(request)
        return result

    def hidden(self, name: str) -> bool:
        return super().hidden(name) or name.startswith("_") or name.endswith((".py", ".pyc"))

    def getChild(self, path: bytes, request: Request) -> IResource:
        if (path == b"" and not request.postpath and self.sio_path != "/socket.io"
                and b"path" not in (request.args or {})):
            return _Redirect("/?path=" + quote(self.sio_path, safe="/"))
        return super().getChild(path, request)


class _Redirect(Resource):
    """A 302 to ``location``."""

    isLeaf = True

    def __init__(self, location: str) -> None:
        super().__init__()
        self._location = location.encode("ascii")

    def render(self, request: Request) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", self._location)
        request.setHeader(b"content-length", b"0")
        return b""


class _Placeholder(Resource):
    """The page at ``/`` when there is neither ``--static`` nor the demo."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"" and not request.postpath:
            return self
        return _NotFound()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        path = html.escape(self._path)
        return (
            "<!doctype html>\n<meta charset=utf-8>\n<title>txsio</title>\n"
            "<h1>txsio is running</h1>\n"
            f"<p>The Socket.IO endpoint is at <code>{path}/</code>. "
            "Serve your page with <code>--static DIR</code> and your handlers with "
            "<code>--app module:callable</code>.</p>\n"
        ).encode()

    render_HEAD = render_GET
