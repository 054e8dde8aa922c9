"""``twistd sio``: the command-line :class:`Options` and :func:`makeService`.

::

    twistd -n sio --port 8080                          # the demo chat at http://localhost:8080/
    twistd -n sio --port tcp:8080:interface=127.0.0.1 --app myapp.chat:setup --static public
    twistd -n sio --port ssl:8443:privateKey=key.pem:certKey=cert.pem --port unix:/run/sio.sock

``twisted/plugins/txsio_plugin.py`` only names this module.  An existing Twisted application
(here, that of a ``.tac`` file) embeds the same service:

.. test-setup:
   # myapp/chat.py
   def setup(io):
       pass

::

    from twisted.application import service
    from txsio import tap

    application = service.Application("chat")
    options = tap.Options()
    options.parseOptions(["--port", "tcp:8080", "--app", "myapp.chat:setup"])
    tap.makeService(options).setServiceParent(application)

What the service serves
-----------------------
One :class:`txsio.Server` mounted at ``--path`` (default ``/socket.io``), with ``--client-js``
at ``<path>/socket.io.js`` (the server's ``serve_client``: the ``.min.js`` and ``.map`` files
beside it too), and ``--static`` (or, without it, the demo page of
``txsio/demo/``) at ``/``, all in one :class:`~txsio.engineio.site.EngineSite` (request
bodies bounded by ``--max-http-buffer-size``; ``--idle-timeout``, ``--headers-timeout``,
``--body-timeout`` and ``--max-pending-connections`` bound the time and the number of
connections that have not sent a whole request) listening on every ``--port``.  ``--app``
names a callable that receives the server and registers the handlers; without it the demo
chat's handlers run.  One log line per client connection and one per disconnection (its
reason, duration and transport), under its Engine.IO session id; under twistd the log has a
level (``--log-level``, default ``info``), a format (``--log-format text`` or ``json``) and
guards against a peer that floods it (:mod:`txsio._tap_log`).

:meth:`SocketIOService.stopService` stops gracefully (:mod:`txsio._service` tells how), and
under twistd SIGTERM then ends the process with exit status 0.

Where the parts are: this module parses the command line (:class:`Options`, the ``--app``
loader) and assembles the service (:func:`makeService`); :mod:`txsio._service` is the service
itself (listeners, graceful stop, connection tracking, SIGTERM); :mod:`txsio._pages` is what
the site serves beside the endpoint; :mod:`txsio._tap_log` is twistd's log observer.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import platform
import sys
import traceback
from collections.abc import Callable, Coroutine
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from twisted.copyright import version as twisted_version
from twisted.internet import endpoints
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.resource import IResource

from ._pages import Health, _DemoFiles, _Placeholder, _Root, _StaticFiles
from ._service import SHUTDOWN_TIMEOUT, SocketIOService, _Listener, _TapSite
from ._tap_log import FORMATS, LEVELS, TapLogObserver, clip, twistd_output
from ._tap_metrics import serve_metrics
from ._twisted import default_reactor
from ._version import __version__
from .engineio.handshake import TrustedProxies
from .server import Server

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

    from .engineio.session import EngineSession

__all__ = ["DEFAULT_PORT", "SHUTDOWN_TIMEOUT", "Options", "SocketIOService", "makeService"]

log = Logger()

#: Where ``twistd sio`` listens without ``--port``.
DEFAULT_PORT = "tcp:8080"
#: The demo served at ``/`` without ``--static`` (``index.html`` and its assets).
DEMO_DIR = Path(__file__).resolve().parent / "demo"


# -- options ----------------------------------------------------------------------------------


class Options(usage.Options):
    """The options of ``twistd sio``; a bad value raises :class:`usage.UsageError`.

    After :meth:`parseOptions`: ``self["port"]`` (endpoint strings), ``self["path"]``,
    ``self["static"]``, ``self["client-js"]`` (absolute paths or ``None``),
    ``self["cors-origin"]`` (a list), ``self["ping-interval"]``, ``self["ping-timeout"]``
    (seconds), ``self["max-http-buffer-size"]`` (bytes), ``self["idle-timeout"]``,
    ``self["headers-timeout"]``, ``self["body-timeout"]`` (seconds),
    ``self["max-pending-connections"]`` (``None``: the site's default), ``self["allow-eio3"]``,
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
        "repeated.  A port number alone (--port 8080) listens on every network interface: "
        "use --port tcp:8080:interface=127.0.0.1 to listen on loopback only (behind a proxy "
        "on the same host).  SIGTERM stops gracefully: clients are disconnected with the reason "
        "'server shutting down' and reconnect by themselves to the next server."
    )
    optFlags = [
        ["allow-eio3", None, "Also serve socket.io-client 2.x (Engine.IO v3, Socket.IO v4)."],
        ["allow-jsonp", None, "With --allow-eio3: also JSONP polling, cross-origin by nature "
         "(any page can read what the app sends to its visitor's session)."],
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
        self["trusted-proxy"] = []
        self["ping-interval"] = 25.0
        self["ping-timeout"] = 20.0
        self["max-http-buffer-size"] = 1_000_000
        self["idle-timeout"] = 5.0
        self["headers-timeout"] = 60.0
        self["body-timeout"] = 60.0
        self["max-pending-connections"] = None
        self["max-buffered-bytes"] = 4 * 1024 * 1024
        self["redis"] = None
        self["redis-key"] = "socket.io"
        self["health"] = None
        self["drain-period"] = 5.0
        self["metrics"] = None
        self["metrics-port"] = None
        self["log-level"] = "info"
        self["log-format"] = "text"
        #: the callable named by ``--app``, once loaded
        self.app: Callable[[Server], object] | None = None

    def opt_port(self, value: str) -> None:
        """A port number (every interface) or a server endpoint string
        (tcp:8080:interface=127.0.0.1 for loopback only); repeatable [8080]."""
        self["port"].append(endpoint_description(value))

    opt_p = opt_port

    def opt_version(self) -> None:
        """Print txsio's version and exit."""
        print(f"txsio {__version__} (Twisted {twisted_version}, "
              f"Python {platform.python_version()})")
        raise SystemExit(0)

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
        """A file served at <path>/socket.io.js, e.g. socket.io-client's dist/socket.io.js
        (its .min.js and .map files beside it too)."""
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

    def opt_trusted_proxy(self, value: str) -> None:
        """A proxy (address or CIDR network) whose X-Forwarded-For / Forwarded header names
        the client, in handshake.address and the log; repeatable [none]."""
        try:
            TrustedProxies([value])
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxy: {e}") from None
        self["trusted-proxy"].append(value)

    def opt_ping_interval(self, value: str) -> None:
        """Seconds between heartbeats [25]."""
        self["ping-interval"] = _positive_seconds("ping-interval", value)

    def opt_ping_timeout(self, value: str) -> None:
        """Seconds a client has to answer a heartbeat [20]."""
        self["ping-timeout"] = _positive_seconds("ping-timeout", value)

    def opt_health(self, value: str) -> None:
        """A path answering 200 while serving and 503 once SIGTERM began a graceful stop
        (for a load balancer's health check), e.g. /healthz."""
        if not value.startswith("/") or value.strip("/") == "" or "?" in value:
            raise usage.UsageError(f"--health {value!r}: expected a path such as /healthz")
        self["health"] = value

    def opt_drain_period(self, value: str) -> None:
        """With --health: seconds a graceful stop keeps serving, the health check failing,
        before it disconnects the clients [5]."""
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number >= 0):
            raise usage.UsageError(f"--drain-period {value!r}: expected seconds (0 or more)")
        self["drain-period"] = number

    def opt_metrics(self, value: str) -> None:
        """A path serving Prometheus metrics, e.g. /metrics: on every --port unless
        --metrics-port is given (protect it: see docs/metrics.rst)."""
        if not value.startswith("/") or value.strip("/") == "" or "?" in value:
            raise usage.UsageError(f"--metrics {value!r}: expected a path such as /metrics")
        self["metrics"] = value

    def opt_metrics_port(self, value: str) -> None:
        """Serve the metrics on this endpoint only (tcp:9100:interface=127.0.0.1), at
        --metrics' path [/metrics]."""
        self["metrics-port"] = endpoint_description(value, option="--metrics-port")

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

    def opt_max_buffered_bytes(self, value: str) -> None:
        """The most bytes waiting for one client that does not read what it is sent; past it
        the client is disconnected ("send buffer full") [4194304]."""
        self["max-buffered-bytes"] = _positive_whole("max-buffered-bytes", value, "bytes")

    def opt_idle_timeout(self, value: str) -> None:
        """Seconds a connection may stay open with no request in progress: a new one, or one
        kept alive after a response [5]."""
        self["idle-timeout"] = _positive_seconds("idle-timeout", value)

    def opt_headers_timeout(self, value: str) -> None:
        """Seconds a client has to send a request's headers, from their first byte [60]."""
        self["headers-timeout"] = _positive_seconds("headers-timeout", value)

    def opt_body_timeout(self, value: str) -> None:
        """Seconds a client has to send a request's body, once its headers are in [60]."""
        self["body-timeout"] = _positive_seconds("body-timeout", value)

    def opt_max_pending_connections(self, value: str) -> None:
        """The most connections at once that have not sent a whole request; one more closes
        the one that has waited longest [a quarter of the descriptor limit, 64 to 10000]."""
        self["max-pending-connections"] = _positive_whole("max-pending-connections", value)

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

    def opt_log_level(self, value: str) -> None:
        """The lowest level logged: debug, info, warn or error [info]."""
        level = value.strip().lower()
        if level not in LEVELS:
            raise usage.UsageError(f"--log-level {value!r}: expected one of {', '.join(LEVELS)}")
        self["log-level"] = level

    def opt_log_format(self, value: str) -> None:
        """text (twistd's lines) or json (one JSON object per line) [text]."""
        fmt = value.strip().lower()
        if fmt not in FORMATS:
            raise usage.UsageError(f"--log-format {value!r}: expected text or json")
        self["log-format"] = fmt

    def postOptions(self) -> None:
        """Listen on :data:`DEFAULT_PORT` when no ``--port`` was given; ``--redis-sharded``
        needs ``--redis``."""
        if not self["port"]:
            self["port"] = [DEFAULT_PORT]
        if self["redis-sharded"] and self["redis"] is None:
            raise usage.UsageError("--redis-sharded: needs --redis URL")
        if self["health"] is not None and (
                _Root.segments_of(self["health"]) == _Root.segments_of(self["path"])):
            raise usage.UsageError("--health and --path name the same path")
        if self["metrics"] is not None and self["metrics-port"] is None and (
                _Root.segments_of(self["metrics"]) in (
                    _Root.segments_of(self["path"]), _Root.segments_of(self["health"] or "/"))):
            raise usage.UsageError("--metrics names the path of --path or --health")


def endpoint_description(value: str, *, option: str = "--port") -> str:
    """Check a ``--port`` value; return it as a server endpoint string.

    :param value: a port number (``8080`` means ``tcp:8080``) or an endpoint string.
    :param option: the option the error messages name.
    :raises usage.UsageError: the endpoint string does not parse, or names missing files.
    """
    text = value.strip()
    if text.isdecimal():
        number = int(text)
        if number > 65535:
            raise usage.UsageError(f"{option} {value!r}: a port number is 0 to 65535")
        return f"tcp:{number}"
    try:
        # Only builds the endpoint (reading an ssl: endpoint's key and certificate).
        endpoints.serverFromString(default_reactor(), text)
    except Exception as e:
        hint = " (write a colon inside a value as \\:)" if isinstance(e, TypeError) else ""
        raise usage.UsageError(f"{option} {value!r}: {e}{hint}") from None
    return text


def load_app(spec: str) -> Callable[[Server], object]:
    """The callable that ``--app module:callable`` names.

    The current directory is searched for the module too, as ``python -m`` does.

    :param spec: ``package.module:name`` (``name`` may be dotted: ``module:App.setup``).
    :raises usage.UsageError: the module or the name does not exist, or is not callable; the
        spec names a file instead of a module; importing the module failed (the message
        names the exception and where it was raised).
    """
    module_name, sep, attribute = spec.strip().partition(":")
    if not sep or not module_name or not attribute:
        raise usage.UsageError(f"--app {spec!r}: expected module:callable, e.g. myapp:setup")
    if _looks_like_a_file(module_name):
        raise _file_error(spec, module_name, attribute)
    module = _import_app(spec, module_name, attribute)
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


def _import_app(spec: str, module_name: str, attribute: str) -> object:
    """Import the app's module, from the current directory too; every failure is a one-line
    usage error (twistd would print a traceback that opens with the wrong cause)."""
    cwd = os.getcwd()
    searched = cwd in sys.path or "" in sys.path
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if not _names(e, module_name):
            raise _import_error(spec, module_name, e) from None
        if searched:
            raise _not_found(spec, module_name, e, attribute) from None
    except Exception as e:
        raise _import_error(spec, module_name, e) from None
    # twistd does not search the current directory; python -m does.  Out of the except
    # block, so that a failure below is not chained to the first "No module named".
    sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if not _names(e, module_name):
            raise _import_error(spec, module_name, e) from None
        sys.path.remove(cwd)
        raise _not_found(spec, module_name, e, attribute) from None
    except Exception as e:
        raise _import_error(spec, module_name, e) from None


def _looks_like_a_file(module_name: str) -> bool:
    """Whether ``--app`` was given a path (``./chat``, ``app/chat``, ``chat.py`` that
    exists here) rather than a module name."""
    return "/" in module_name or os.sep in module_name or (
        module_name.endswith(".py") and Path(module_name).is_file())


def _file_error(spec: str, path: str, attribute: str) -> usage.UsageError:
    """The usage error for a path given as ``--app``, naming the module it most likely
    means (``./app/chat.py`` is ``app.chat`` run from here)."""
    text = path.replace(os.sep, "/").removesuffix(".py")
    parts = [p for p in text.split("/") if p and p != "."]
    where = ""
    if text.startswith("/") or ".." in parts:
        directory = os.path.dirname(os.path.abspath(text))
        parts = parts[-1:]
        where = f", run from {directory} (or with it on PYTHONPATH)"
    module = ".".join(parts) or "module"
    return usage.UsageError(
        f"--app {spec!r}: a module name, not a file: write --app {module}:{attribute}{where}")


def _not_found(spec: str, module_name: str, error: ModuleNotFoundError,
               attribute: str) -> usage.UsageError:
    hint = "run twistd in the directory that holds it, or add that directory to PYTHONPATH"
    if module_name.endswith(".py"):
        hint = f"a module name, not a file name: --app {module_name[:-3]}:{attribute}"
    return usage.UsageError(f"--app {spec!r}: no module named {error.name!r} ({hint})")


def _import_error(spec: str, module_name: str, error: Exception) -> usage.UsageError:
    """The one-line usage error for an app module whose own import failed."""
    if isinstance(error, ModuleNotFoundError) and error.name:
        cause = f"it imports {error.name!r}, which is not installed"
        fix = f"install it into this Python ({sys.executable})"
    else:
        cause = f"{type(error).__name__}: {' '.join(str(error).split())}"
        fix = f"fix it, then check with: python -c 'import {module_name}'"
    where = "" if isinstance(error, SyntaxError) else _raised_at(error)
    return usage.UsageError(
        f"--app {spec!r}: importing {module_name} failed: {clip(cause)}{where}; {fix}")


def _raised_at(error: BaseException) -> str:
    """`` (file, line N)``: the innermost frame outside importlib and this module."""
    here = os.path.normcase(os.path.abspath(__file__))
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if not f.filename.startswith("<")
              and os.path.normcase(os.path.abspath(f.filename)) != here]
    if not frames:
        return ""
    return f" ({frames[-1].filename}, line {frames[-1].lineno})"


def _names(error: ModuleNotFoundError, module_name: str) -> bool:
    """Whether the missing module is ``module_name`` or one of its parents."""
    return error.name is not None and (
        module_name == error.name or module_name.startswith(error.name + "."))


def _positive_whole(option: str, value: str, unit: str = "") -> int:
    """``value`` as a positive whole number, or a usage error naming ``--option``."""
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        what = f"a positive whole number of {unit}" if unit else "a positive whole number"
        raise usage.UsageError(f"--{option} {value!r}: expected {what}")
    return number


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
    :returns: a :class:`SocketIOService`, a ``MultiService`` with one child per endpoint;
        under twistd it makes the log observer of ``--log-level`` and ``--log-format``
        (:mod:`txsio._tap_log`) when attached to twistd's application, and gives it twistd.
    """
    reactor = default_reactor(reactor)
    if owns_process is None:
        owns_process = getattr(options, "parent", None) is not None
    log_observer = partial(_log_observer, options) if owns_process else None
    cors = list(options["cors-origin"])
    io = Server(
        path=options["path"],
        ping_interval=options["ping-interval"],
        ping_timeout=options["ping-timeout"],
        max_http_buffer_size=options["max-http-buffer-size"],
        max_buffered_bytes=options["max-buffered-bytes"],
        cors_allowed_origins="*" if "*" in cors else (cors or None),
        allow_eio3=bool(options["allow-eio3"]),
        allow_jsonp=bool(options["allow-jsonp"]),
        trusted_proxies=options["trusted-proxy"],
        adapter=_redis_adapter(options, reactor),
        serve_client=options["client-js"],
        clock=reactor,
    )
    _log_sessions(io, reactor)

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
    health = Health(options["health"]) if options["health"] is not None else None
    metrics, metrics_listener = serve_metrics(options, io, reactor)
    # <path>/socket.io.js (--client-js) is the server's serve_client, answered by its resource.
    root = _Root(io.resource(), options["path"], site_root, health, metrics)
    site = _TapSite(root, max_request_body=options["max-http-buffer-size"],
                    access_log=bool(options["access-log"]), reactor=reactor,
                    idle_timeout=options["idle-timeout"],
                    headers_timeout=options["headers-timeout"],
                    body_timeout=options["body-timeout"],
                    max_pending_connections=options["max-pending-connections"])

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

    service = SocketIOService(io, site, reactor=reactor, ready=ready, app_name=app_name,
                              owns_process=owns_process, shutdown_timeout=shutdown_timeout,
                              health=health, drain_period=options["drain-period"],
                              log_observer=log_observer)
    for description in options["port"]:
        _Listener(description, service.connections, reactor).setServiceParent(service)
    if metrics_listener is not None:
        metrics_listener.setServiceParent(service)
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


def _log_observer(options: Options) -> TapLogObserver | None:
    """The observer of ``--log-level`` and ``--log-format`` for twistd's log, or ``None``
    where twistd keeps its own: ``twistd --logger`` named one (it gets every event), or
    twistd refuses the configuration itself."""
    config = getattr(options, "parent", None)
    if config is None:
        return None
    if config.get("logger"):
        if (options["log-level"], options["log-format"]) != ("info", "text"):
            log.warn("--log-level and --log-format do not apply: twistd --logger names the "
                     "observer, which gets every event")
        return None
    try:
        output = twistd_output(config, options["log-format"])
    except OSError as e:
        raise SystemExit(f"twistd sio: cannot open the log: {e}") from None
    if output is None:
        return None
    return TapLogObserver(output, LEVELS[options["log-level"]])


def _log_sessions(io: Server, clock: IReactorTime) -> None:
    """One log line per client connection and one per disconnection, both under the id of
    its Engine.IO session (the ``sid`` of its requests): where it came from and over which
    transport; then the reason, how long it lasted and the transport it ended on
    (``websocket`` once upgraded)."""

    def connected(session: EngineSession) -> None:
        sid = session.id
        started = clock.seconds()
        address = clip(str(getattr(session.request, "address", "") or "?"))
        log.info("client {sid} connected from {address} over {transport}", sid=sid,
                 address=address, transport=session.transport.name)

        def upgraded(transport: str, *_: object) -> None:
            log.debug("client {sid} upgraded to {transport} after {duration:.3f} s", sid=sid,
                      transport=transport, duration=clock.seconds() - started)

        def closed(reason: object, *_: object) -> None:
            log.info("client {sid} disconnected: {reason} (after {duration:.1f} s over "
                     "{transport})", sid=sid, address=address, reason=clip(str(reason)),
                     duration=round(clock.seconds() - started, 3),
                     transport=session.transport.name)

        session.on("upgrade", upgraded)
        session.on("close", closed)

    io.engine.on("connection", connected)
