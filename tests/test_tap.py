"""``twistd sio``: :mod:`txsio.tap`'s options and service, then the real ``twistd -n sio``.

The unit tests parse options and drive :func:`txsio.tap.makeService` on a
``MemoryReactorClock`` (the graceful stop with HTTP over ``StringTransport`` under the
service's own site); the resource tests run the service in this process on loopback.  The
integration tests run ``twistd -n sio`` as a subprocess with ``PYTHONPATH`` set to the
checkout (so ``twisted/plugins/txsio_plugin.py`` is found) and twistd's log as JSON lines
(``--logger tests.tap_app.json_log``), listening on free loopback ports, and talk to it with
treq, python-socketio's client (``python -m tests.tap_app``) and npm's socket.io-client.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, cast

import treq
from twisted.application.service import Application
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.endpoints import UNIXClientEndpoint
from twisted.internet.error import CannotListenError, ConnectionDone
from twisted.internet.interfaces import IProtocolNegotiationFactory
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import ILogObserver, LogLevel, capturedLogs, formatEvent
from twisted.python import usage
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer
from zope.interface.verify import verifyObject

import txsio
from txsio import _service, _tap_log, tap
from txsio.engineio.handshake import HandshakeRequest
from txsio.engineio.packet import Packet as EnginePacket
from txsio.engineio.packet import PacketType as EnginePacketType
from txsio.testing import MemoryTransport

from . import tap_app
from .sio_memory import MemoryClient
from .support import (
    NODE_DIR,
    EventLog,
    PeerProcess,
    ProcessResult,
    listen_loopback,
    require_node,
    run_process,
    self_signed_files,
    spawn,
)

REPO = Path(__file__).resolve().parent.parent


def temp_dir(test: SynchronousTestCase) -> Path:
    """A new directory, removed when *test* ends (short: UNIX socket paths are bounded)."""
    path = Path(tempfile.mkdtemp(prefix="txsio-tap-"))
    test.addCleanup(shutil.rmtree, path, True)
    return path


def parse(*argv: str) -> tap.Options:
    """Options parsed from *argv*."""
    options = tap.Options()
    options.parseOptions(list(argv))
    return options


def make(*argv: str, clock: MemoryReactorClock | None = None,
         **kwargs: Any) -> tuple[tap.SocketIOService, MemoryReactorClock]:
    """The service for *argv* on a memory reactor (not started)."""
    clock = clock or MemoryReactorClock()
    return tap.makeService(parse(*argv), reactor=clock, **kwargs), clock


class OptionsTests(SynchronousTestCase):
    """Parsing ``twistd sio``'s command line."""

    def test_defaults(self) -> None:
        """Without options: port 8080, /socket.io, Node's defaults, the demo."""
        options = parse()
        self.assertEqual(options["port"], ["tcp:8080"])
        self.assertEqual(options["path"], "/socket.io")
        self.assertEqual((options["ping-interval"], options["ping-timeout"]), (25.0, 20.0))
        self.assertEqual(options["max-http-buffer-size"], 1_000_000)
        self.assertEqual(options["cors-origin"], [])
        self.assertIsNone(options["static"])
        self.assertIsNone(options["client-js"])
        self.assertIsNone(options.app)
        self.assertFalse(options["allow-eio3"])

    def test_port_number_and_endpoint_strings(self) -> None:
        """--port takes a number or endpoint strings, repeatedly, under three names."""
        options = parse("--port", "9000", "--port", "tcp:0:interface=127.0.0.1",
                        "-p", "unix:/tmp/sio.sock", "--listen", "tcp6:0:interface=\\:\\:1")
        self.assertEqual(options["port"], ["tcp:9000", "tcp:0:interface=127.0.0.1",
                                           "unix:/tmp/sio.sock", "tcp6:0:interface=\\:\\:1"])

    def test_bad_port(self) -> None:
        """A port that does not parse, or an ssl: port without its key, is a usage error."""
        for value in ["70000", "tcp:abc", "nope:80", "ssl:0:privateKey=/nonexistent/key.pem"]:
            with self.assertRaises(usage.UsageError) as caught:
                parse("--port", value)
            self.assertIn("--port", str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))

    def test_version(self) -> None:
        """--version prints txsio's version (then Twisted's and Python's) and exits 0."""
        out = io.StringIO()
        self.patch(sys, "stdout", out)
        with self.assertRaises(SystemExit) as caught:
            parse("--version")
        self.assertEqual(caught.exception.code, 0)
        self.assertTrue(out.getvalue().startswith(f"txsio {txsio.__version__} (Twisted "),
                        out.getvalue())

    def test_help_says_where_a_port_listens(self) -> None:
        """--help says that a bare port number listens on every interface and how to listen
        on loopback only."""
        text = " ".join(str(tap.Options()).split())
        self.assertIn("A port number alone (--port 8080) listens on every network interface: "
                      "use --port tcp:8080:interface=127.0.0.1 to listen on loopback only",
                      text)

    def test_numbers(self) -> None:
        """Heartbeat seconds may be fractions; the buffer size takes 1e6 notation."""
        options = parse("--ping-interval", "0.5", "--ping-timeout", "2",
                        "--max-http-buffer-size", "1e6")
        self.assertEqual((options["ping-interval"], options["ping-timeout"]), (0.5, 2.0))
        self.assertEqual(options["max-http-buffer-size"], 1_000_000)
        self.assertIsInstance(options["max-http-buffer-size"], int)

    def test_bad_numbers(self) -> None:
        """Non-positive, non-finite or non-numeric values are one-line usage errors."""
        bad = [("--ping-interval", v) for v in ["abc", "0", "-1", "inf", "nan", ""]]
        bad += [("--ping-timeout", "0")]
        bad += [("--max-http-buffer-size", v) for v in ["0", "1.5", "x", "-5"]]
        for option, value in bad:
            with self.assertRaises(usage.UsageError, msg=(option, value)) as caught:
                parse(option, value)
            self.assertIn(option, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))

    def test_cors_origins(self) -> None:
        """--cors-origin is repeatable and takes * or origins; other text is refused."""
        options = parse("--cors-origin", "https://a.example/", "--cors-origin",
                        "http://b.example:8080")
        self.assertEqual(options["cors-origin"], ["https://a.example", "http://b.example:8080"])
        self.assertEqual(parse("--cors-origin", "*")["cors-origin"], ["*"])
        for value in ["a.example", "https://a.example/path", "https://"]:
            self.assertRaises(usage.UsageError, parse, "--cors-origin", value)

    def test_path(self) -> None:
        """--path is normalised to one leading slash; / alone is refused."""
        self.assertEqual(parse("--path", "rt")["path"], "/rt")
        self.assertEqual(parse("--path", "/a/b/")["path"], "/a/b")
        for value in ["/", "", "/a/../b", "/a?b"]:
            self.assertRaises(usage.UsageError, parse, "--path", value)

    def test_static_and_client_js(self) -> None:
        """--static needs a directory and --client-js a file; both become absolute."""
        directory = temp_dir(self)
        script = directory / "client.js"
        script.write_text("// js")
        options = parse("--static", str(directory), "--client-js", str(script))
        self.assertEqual(options["static"], str(directory.resolve()))
        self.assertEqual(options["client-js"], str(script.resolve()))
        self.assertRaises(usage.UsageError, parse, "--static", str(script))
        self.assertRaises(usage.UsageError, parse, "--static", str(directory / "missing"))
        self.assertRaises(usage.UsageError, parse, "--client-js", str(directory))

    def test_app(self) -> None:
        """--app module:callable loads the callable (a dotted attribute works too)."""
        options = parse("--app", "tests.tap_app:setup")
        self.assertIs(options.app, tap_app.setup)
        self.assertEqual(options["app"], "tests.tap_app:setup")
        self.assertEqual(parse("-a", "tests.tap_app:PENDING.append").app, tap_app.PENDING.append)

    def in_a_new_directory(self, **modules: str) -> Path:
        """Work in a new directory holding *modules* (name: source) until the test ends."""
        directory = temp_dir(self)
        for name, source in modules.items():
            (directory / f"{name}.py").write_text(source)
            self.addCleanup(sys.modules.pop, name, None)
        here = os.getcwd()
        os.chdir(directory)
        self.addCleanup(os.chdir, here)
        def forget() -> None:
            if str(directory) in sys.path:
                sys.path.remove(str(directory))

        self.addCleanup(forget)
        return directory

    def app_error(self, spec: str) -> str:
        """The usage error of ``--app spec``, checked to be one line."""
        with self.assertRaises(usage.UsageError) as caught:
            parse("--app", spec)
        message = str(caught.exception)
        self.assertTrue(message.startswith(f"--app {spec!r}: "), message)
        self.assertNotIn("\n", message)
        return message

    def test_app_in_the_current_directory(self) -> None:
        """--app finds a module in the current directory, which twistd does not search."""
        self.in_a_new_directory(txsio_tap_cwd_app="def setup(io):\n    pass\n")
        app = parse("--app", "txsio_tap_cwd_app:setup").app
        assert app is not None
        self.assertEqual(app.__name__, "setup")

    def test_app_given_as_a_file(self) -> None:
        """A path or a file name given to --app is a usage error that says which module
        name to write, without running the file."""
        directory = self.in_a_new_directory(
            txsio_tap_chat="raise AssertionError('imported')\ndef setup(io): pass\n")
        for spec in ["./txsio_tap_chat:setup", "txsio_tap_chat.py:setup",
                     "./sub/txsio_tap_chat.py:setup"]:
            expected = "sub.txsio_tap_chat" if "sub" in spec else "txsio_tap_chat"
            self.assertIn(f"a module name, not a file: write --app {expected}:setup",
                          self.app_error(spec))
        message = self.app_error(f"{directory}/txsio_tap_chat.py:setup")
        self.assertTrue(message.endswith(
            f"write --app txsio_tap_chat:setup, run from {directory} (or with it on "
            "PYTHONPATH)"), message)
        self.assertIn("a module name, not a file name: --app txsio_tap_none:setup",
                      self.app_error("txsio_tap_none.py:setup"))
        self.assertIn("run twistd in the directory that holds it",
                      self.app_error("txsio_tap_none:setup"))

    def test_app_whose_import_fails(self) -> None:
        """An app module whose own import fails is a usage error naming the real cause, the
        line it was raised at and the fix, never "No module named" the app."""
        directory = self.in_a_new_directory(
            txsio_tap_needs="import json\nimport txsio_tap_no_such_dependency\n",
            txsio_tap_raises="def setup(io): pass\nraise RuntimeError('no config ' * 50)\n",
            txsio_tap_syntax="def setup(io):\n    return (\n")
        message = self.app_error("txsio_tap_needs:setup")
        self.assertIn("importing txsio_tap_needs failed: it imports "
                      "'txsio_tap_no_such_dependency', which is not installed "
                      f"({directory / 'txsio_tap_needs.py'}, line 2); install it", message)
        message = self.app_error("txsio_tap_raises:setup")
        self.assertIn("importing txsio_tap_raises failed: RuntimeError: no config no config",
                      message)
        self.assertIn(f"({directory / 'txsio_tap_raises.py'}, line 2); fix it", message)
        self.assertLess(len(message), 500)
        message = self.app_error("txsio_tap_syntax:setup")
        self.assertIn("importing txsio_tap_syntax failed: SyntaxError: ", message)
        self.assertIn("line 2", message)
        for name in ["txsio_tap_needs", "txsio_tap_raises", "txsio_tap_syntax"]:
            self.assertNotIn(f"No module named '{name}'", self.app_error(f"{name}:setup"))

    def test_bad_app(self) -> None:
        """A missing module or attribute, a non-callable or a malformed spec is a usage
        error."""
        for value in ["tests.tap_app", "tests.tap_app:", ":setup", "no_such_module_x:setup",
                      "tests.no_such_module_x:setup", "tests.tap_app:nothing",
                      "tests.tap_app:not_callable"]:
            with self.assertRaises(usage.UsageError, msg=value) as caught:
                parse("--app", value)
            self.assertIn("--app", str(caught.exception))


class ServiceTests(SynchronousTestCase):
    """``makeService`` on a memory reactor."""

    def test_listeners(self) -> None:
        """Each --port is a child service listening on its endpoint once started."""
        service, clock = make("--port", "tcp:0:interface=127.0.0.1", "--port",
                              "unix:/tmp/txsio-test.sock")
        self.assertEqual(len(list(service)), 2)
        self.assertEqual((clock.tcpServers, clock.unixServers), ([], []))
        service.privilegedStartService()
        service.startService()
        [(port, factory, _, interface)] = clock.tcpServers
        self.assertEqual((port, interface), (0, "127.0.0.1"))
        self.assertIs(factory, service.connections)
        [(address, unix_factory, *_)] = clock.unixServers
        self.assertEqual((address, unix_factory), ("/tmp/txsio-test.sock", factory))
        self.successResultOf(service.stopService())

    def test_server_options(self) -> None:
        """The options reach txsio.Server, its Engine.IO server and the site."""
        service, _ = make("--path", "/rt", "--ping-interval", "3", "--ping-timeout", "4",
                          "--max-http-buffer-size", "5000", "--allow-eio3",
                          "--cors-origin", "https://a.example")
        io = service.io
        self.assertIsInstance(io, txsio.Server)
        self.assertEqual(io.path, "/rt")
        engine = io.engine.options
        self.assertEqual((engine.ping_interval, engine.ping_timeout), (3.0, 4.0))
        self.assertEqual((engine.max_http_buffer_size, engine.allow_eio3), (5000, True))
        self.assertTrue(io.engine.cors_allows("https://a.example"))
        self.assertFalse(io.engine.cors_allows("https://b.example"))
        self.assertEqual(service.site.max_request_body, 5000)
        any_origin, _ = make("--cors-origin", "*", "--cors-origin", "https://a.example")
        self.assertTrue(any_origin.io.engine.cors_allows("https://anything.example"))
        # Forwarding headers believed from the trusted proxies only.
        proxied, _ = make("--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "::1")
        trusted = proxied.io.engine.trusted_proxies
        assert trusted is not None
        self.assertEqual([str(n) for n in trusted.networks], ["10.0.0.0/8", "::1/128"])
        self.assertIsNone(io.engine.trusted_proxies)
        self.assertRaises(usage.UsageError, parse, "--trusted-proxy", "proxy.local")
        # JSONP only when asked for on its own, EIO3 or not.
        self.assertFalse(engine.allow_jsonp)
        jsonp, _ = make("--allow-eio3", "--allow-jsonp")
        self.assertTrue(jsonp.io.engine.options.allow_jsonp)

    def test_app_receives_the_server(self) -> None:
        """--app is called with the server and its handlers serve the clients."""
        service, _ = make("--app", "tests.tap_app:setup")
        client = MemoryClient(service.io)
        client.connect_ok()
        client.emit("echo", "hi", 42, ack_id=1)
        [ack] = client.received()
        self.assertEqual((ack.id, ack.data), (1, ["hi", 42]))

    def test_deferred_app(self) -> None:
        """Listeners start only once the app's Deferred has fired."""
        service, clock = make("--port", "tcp:0", "--app", "tests.tap_app:setup_deferred")
        pending = tap_app.PENDING.pop()
        service.privilegedStartService()
        service.startService()
        self.assertEqual(clock.tcpServers, [])
        pending.callback(None)
        self.assertEqual(len(clock.tcpServers), 1)
        self.successResultOf(service.stopService())

    def test_coroutine_app(self) -> None:
        """An ``async def`` app is awaited; it finished at once, so listening does too."""
        service, clock = make("--port", "tcp:0", "--app", "tests.tap_app:setup_async")
        service.privilegedStartService()
        service.startService()
        self.assertEqual(len(clock.tcpServers), 1)
        self.successResultOf(service.stopService())

    def test_failed_app(self) -> None:
        """An app whose Deferred fails is logged and the service never listens."""
        service, clock = make("--port", "tcp:0", "--app", "tests.tap_app:setup_fails")
        pending = tap_app.PENDING.pop()
        service.startService()
        pending.errback(ValueError("no database"))
        self.assertEqual(clock.tcpServers, [])
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.successResultOf(service.stopService())

    def test_failed_app_under_twistd(self) -> None:
        """Under twistd, an app that failed while the service was being built is logged once,
        when the service starts (twistd's log has begun then), and the process is set to
        exit with status 1 once the reactor has stopped; so is one failing later."""
        statuses: list[int] = []
        self.patch(_service, "_exit_status_at_exit", statuses.append)
        with capturedLogs() as events:
            service, clock = make("--port", "tcp:0", "--app",
                                  "tests.tap_app:setup_async_fails_at_once", owns_process=True)
            self.assertEqual(([e for e in events if "log_failure" in e], statuses), ([], []))
            service.privilegedStartService()
            service.startService()
        [failed] = [e for e in events if "log_failure" in e]
        self.assertEqual(failed["log_format"], "the app {app} failed to start{exiting}")
        self.assertEqual(failed["exiting"], ": twistd exits with status 1")
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual((statuses, clock.tcpServers), ([1], []))
        hooks = [hook for hook, _, _ in clock.whenRunningHooks]
        self.assertIn(service._stop_reactor, hooks)
        self.successResultOf(service.stopService())

        service, clock = make("--port", "tcp:0", "--app", "tests.tap_app:setup_fails",
                              owns_process=True)
        pending = tap_app.PENDING.pop()
        service.startService()
        pending.errback(ValueError("no database"))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertEqual(statuses, [1, 1])
        self.successResultOf(service.stopService())

    def test_stopped_before_the_app_is_ready(self) -> None:
        """Stopping while the app's Deferred is pending cancels it quietly."""
        service, clock = make("--port", "tcp:0", "--app", "tests.tap_app:setup_deferred")
        pending = tap_app.PENDING.pop()
        service.startService()
        self.successResultOf(service.stopService())
        self.assertTrue(pending.called)  # cancelled, and the CancelledError not logged
        self.assertEqual(clock.tcpServers, [])

    def test_port_in_use(self) -> None:
        """A port that cannot be bound raises; under twistd it is a one-line exit."""

        class Busy(MemoryReactorClock):
            def listenTCP(self, port: int, *args: Any, **kwargs: Any) -> Any:
                raise CannotListenError("127.0.0.1", port, OSError(98, "Address in use"))

        service, _ = make("--port", "tcp:80", clock=Busy())
        self.assertRaises(CannotListenError, service.privilegedStartService)
        service, _ = make("--port", "tcp:80", clock=Busy(), owns_process=True)
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        message = str(caught.exception.code)
        self.assertIn("Couldn't listen on 127.0.0.1:80", message)
        self.assertNotIn("\n", message)

    def test_owns_process_under_twistd(self) -> None:
        """Options parsed as twistd's subcommand make the service own the process."""
        options = parse()
        self.assertFalse(tap.makeService(options, reactor=MemoryReactorClock())._owns_process)
        options.parent = usage.Options()
        self.assertTrue(tap.makeService(options, reactor=MemoryReactorClock())._owns_process)


class ResourceTests(TestCase):
    """What the site serves where, the service listening on loopback in this process."""

    async def serve(self, *argv: str) -> str:
        """Start the service for *argv* on a free loopback port; its base URL."""
        service = tap.makeService(parse("--port", "tcp:0:interface=127.0.0.1", *argv))
        service.startService()
        self.addCleanup(service.stopService)
        [listener] = list(service)
        port = listener.port
        return f"http://127.0.0.1:{port.getHost().port}"

    async def get(self, url: str) -> tuple[int, str, bytes]:
        """GET *url* (bounded): status, content type, body."""
        response = await treq.get(url, persistent=False).addTimeout(5, reactor)
        body = await treq.content(response).addTimeout(5, reactor)
        content_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0]
        return response.code, content_type.decode(), body

    async def test_demo(self) -> None:
        """Without --static, the demo directory is served at / (index.html first), without
        its Python files."""
        demo = temp_dir(self)
        (demo / "index.html").write_text("<title>demo</title>")
        (demo / "app.py").write_text("secret = 1")
        (demo / "demo.js").write_text("// demo")
        self.patch(tap, "DEMO_DIR", demo)
        base = await self.serve()
        self.assertEqual(await self.get(base + "/"), (200, "text/html", b"<title>demo</title>"))
        status, content_type, body = await self.get(base + "/demo.js")
        self.assertEqual((status, body), (200, b"// demo"))
        self.assertIn("javascript", content_type)
        for hidden in ["/app.py", "/__pycache__/", "/missing"]:
            status, content_type, _ = await self.get(base + hidden)
            self.assertEqual((status, content_type), (404, "text/plain; charset=utf-8"), hidden)

    async def test_demo_content_security_policy(self) -> None:
        """The demo's page and assets carry a Content-Security-Policy that allows scripts from
        the page's own origin and the one pinned CDN file only, and nothing inline."""
        base = await self.serve()
        for path in ["/", "/demo.js", "/demo.css"]:
            response = await treq.get(base + path, persistent=False).addTimeout(5, reactor)
            await treq.content(response).addTimeout(5, reactor)
            self.assertEqual(response.code, 200, path)
            [csp] = response.headers.getRawHeaders(b"content-security-policy")
            directives = dict(d.strip().split(" ", 1) for d in csp.decode().split(";"))
            self.assertEqual(directives["script-src"],
                             "'self' https://cdn.socket.io/4.8.3/socket.io.min.js", path)
            self.assertEqual(directives["default-src"], "'self'")
            self.assertEqual(directives["object-src"], "'none'")
            self.assertNotIn("unsafe", csp.decode())
            self.assertEqual(response.headers.getRawHeaders(b"x-content-type-options"),
                             [b"nosniff"])

    async def test_demo_on_another_path(self) -> None:
        """With another --path, / redirects to the demo page told where the endpoint is."""
        demo = temp_dir(self)
        (demo / "index.html").write_text("<title>demo</title>")
        self.patch(tap, "DEMO_DIR", demo)
        base = await self.serve("--path", "/rt/io")
        response = await treq.get(base + "/", persistent=False,
                                  allow_redirects=False).addTimeout(5, reactor)
        await treq.content(response).addTimeout(5, reactor)
        self.assertEqual((response.code, response.headers.getRawHeaders(b"location")),
                         (302, [b"/?path=/rt/io"]))
        self.assertEqual(await self.get(base + "/?path=/rt/io"),
                         (200, "text/html", b"<title>demo</title>"))

    def test_demo_handlers(self) -> None:
        """Without --app, the demo's handlers are installed (when the demo is there)."""
        setup, name = tap._demo_setup()
        service = tap.makeService(parse(), reactor=MemoryReactorClock())
        self.assertEqual(service._app_name, name)
        if setup is not None:
            self.assertEqual(name, "txsio.demo.app:setup")

    async def test_placeholder(self) -> None:
        """Without --static nor a demo, / is a small page naming the endpoint; other paths
        are plain-text 404s."""
        self.patch(tap, "DEMO_DIR", temp_dir(self) / "none")
        base = await self.serve("--path", "/rt")
        status, content_type, body = await self.get(base + "/")
        self.assertEqual((status, content_type), (200, "text/html; charset=utf-8"))
        self.assertIn(b"<code>/rt/</code>", body)
        status, content_type, _ = await self.get(base + "/other")
        self.assertEqual((status, content_type), (404, "text/plain; charset=utf-8"))

    async def test_no_demo_page_with_an_app(self) -> None:
        """With --app and no --static, / is the placeholder: the demo page needs the demo's
        handlers."""
        base = await self.serve("--app", "tests.tap_app:setup")
        status, _, body = await self.get(base + "/")
        self.assertEqual(status, 200)
        self.assertIn(b"txsio is running", body)

    async def test_static(self) -> None:
        """--static serves files and index.html, but no listings and no dotfiles."""
        root = temp_dir(self)
        (root / "sub").mkdir()
        (root / "index.html").write_text("home")
        (root / "sub" / "page.txt").write_text("page")
        (root / ".env").write_text("SECRET=1")
        base = await self.serve("--static", str(root))
        self.assertEqual(await self.get(base + "/"), (200, "text/html", b"home"))
        self.assertEqual(await self.get(base + "/sub/page.txt"), (200, "text/plain", b"page"))
        for hidden in ["/.env", "/sub/", "/missing"]:
            self.assertEqual((await self.get(base + hidden))[0], 404, hidden)

    async def test_endpoint_and_client_js(self) -> None:
        """<path>/socket.io.js is the --client-js file; the rest of <path> is Engine.IO,
        however deep the path; the static root does not shadow it."""
        root = temp_dir(self)
        (root / "rt" / "io").mkdir(parents=True)
        (root / "rt" / "io" / "index.html").write_text("shadowed")
        script = root / "bundle.js"
        script.write_text("window.io = 1;")
        base = await self.serve("--static", str(root), "--path", "/rt/io",
                                "--client-js", str(script))
        status, content_type, body = await self.get(base + "/rt/io/socket.io.js")
        self.assertEqual((status, body), (200, b"window.io = 1;"))
        self.assertIn("javascript", content_type)
        status, _, body = await self.get(base + "/rt/io/?EIO=4&transport=polling")
        self.assertEqual(status, 200)
        self.assertTrue(body.startswith(b'0{"sid":'), body)
        status, _, body = await self.get(base + "/rt/io/")
        self.assertEqual((status, json.loads(body)["code"]), (400, 0))

    async def test_no_client_js(self) -> None:
        """Without --client-js, <path>/socket.io.js is an Engine.IO request (refused)."""
        base = await self.serve()
        status, _, body = await self.get(base + "/socket.io/socket.io.js")
        self.assertEqual(status, 400)
        self.assertEqual(json.loads(body)["message"], "Transport unknown")


def _connection(service: tap.SocketIOService) -> tuple[Any, StringTransport]:
    """An accepted connection to the service's site, over a StringTransport."""
    peer = IPv4Address("TCP", "127.0.0.1", 40000)
    protocol = service.connections.buildProtocol(peer)
    assert protocol is not None
    transport = StringTransport(peerAddress=peer)
    protocol.makeConnection(transport)
    return protocol, transport


def _get(service: tap.SocketIOService, path: str) -> bytes:
    """What the service's site answers a GET of *path* on a new connection."""
    protocol, transport = _connection(service)
    protocol.dataReceived(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    answer: bytes = transport.value()
    return answer


class HealthTests(SynchronousTestCase):
    """``--health PATH`` and ``--drain-period``: a load balancer's health check."""

    def test_options(self) -> None:
        """The health path is a path other than the endpoint's; the drain period is a
        number of seconds (default 5)."""
        self.assertEqual((parse()["health"], parse()["drain-period"]), (None, 5.0))
        options = parse("--health", "/healthz", "--drain-period", "0.5")
        self.assertEqual((options["health"], options["drain-period"]), ("/healthz", 0.5))
        for argv in (["--health", "healthz"], ["--health", "/"], ["--drain-period", "-1"],
                     ["--drain-period", "soon"], ["--health", "/socket.io/"]):
            self.assertRaises(usage.UsageError, parse, *argv)

    def test_drain(self) -> None:
        """200 while serving; once the graceful stop begins, 503 for the drain period while
        the clients stay connected, then the usual stop."""
        service, clock = make("--port", "tcp:0:interface=127.0.0.1", "--app",
                              "tests.tap_app:setup", "--health", "/-/health",
                              "--drain-period", "2")
        reasons: list[str] = []
        service.io.on("connection", lambda s: s.on("disconnect", reasons.append))
        service.privilegedStartService()
        service.startService()
        MemoryClient(service.io).connect()
        ok = _get(service, "/-/health")
        self.assertTrue(ok.startswith(b"HTTP/1.1 200 "), ok)
        self.assertTrue(ok.endswith(b'{"status":"ok"}'), ok)
        self.assertIn(b"Cache-Control: no-store", ok)
        self.assertIn(b"404", _get(service, "/-/health/more").split(b"\r\n")[0])
        with capturedLogs():
            stopping = service.stopService()
            draining = _get(service, "/-/health")
            self.assertTrue(draining.startswith(b"HTTP/1.1 503 "), draining)
            self.assertTrue(draining.endswith(b'{"status":"draining"}'), draining)
            clock.advance(1.9)
            self.assertEqual(reasons, [])
            self.assertNoResult(stopping)
            clock.advance(0.1)
            self.assertEqual(reasons, ["server shutting down"])
            # (The rest of the stop is GracefulStopTests'.)
            clock.advance(tap.SHUTDOWN_TIMEOUT + 1)


class TLSNegotiationTests(SynchronousTestCase):
    """The factory the listeners use answers for the site's TLS protocol negotiation."""

    def test_listening_factory_offers_alpn(self) -> None:
        """The connection-tracking factory provides ``IProtocolNegotiationFactory`` with the
        site's protocols: Twisted asks the listening factory, and one that does not answer
        fails every TLS client that offers ALPN."""
        service, _ = make("--port", "tcp:0:interface=127.0.0.1")
        factory = service.connections
        self.assertTrue(verifyObject(IProtocolNegotiationFactory, factory))
        self.assertIn(b"http/1.1", factory.acceptableProtocols())
        self.assertEqual(factory.acceptableProtocols(), factory.site.acceptableProtocols())


class GracefulStopTests(SynchronousTestCase):
    """``stopService``: stop accepting, disconnect every socket, close every connection."""

    def test_graceful_stop(self) -> None:
        """Sockets disconnect with "server shutting down" and their pending acks fail; idle
        connections close at once, a held long-poll once it got the close packet, and a
        connection still busy when the timeout passes is aborted."""
        service, clock = make("--port", "tcp:0:interface=127.0.0.1", "--app",
                              "tests.tap_app:setup")
        seen: list[Any] = []

        @service.io.on("connection")
        def connected(socket: txsio.Socket) -> None:
            socket.on("disconnect", lambda reason: seen.append(reason))
            seen.append(socket.emit_with_ack("question"))

        with capturedLogs() as events:
            service.privilegedStartService()
            service.startService()
            MemoryClient(service.io).connect()
            [ack] = seen
            # A handshake over polling on one connection (then idle), the long-poll GET held
            # on a second, a request whose headers are still arriving on a third.
            idle, idle_transport = _connection(service)
            idle.dataReceived(b"GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\n"
                              b"Host: x\r\n\r\n")
            match = re.search(rb'"sid":"([^"]+)"', idle_transport.value())
            assert match is not None
            poll, poll_transport = _connection(service)
            poll.dataReceived(b"GET /socket.io/?EIO=4&transport=polling&sid="
                              + match.group(1) + b" HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertEqual(poll_transport.value(), b"")
            busy, busy_transport = _connection(service)
            busy.dataReceived(b"GET / HTTP/1.1\r\n")

            stopping = service.stopService()

        self.assertEqual(seen[1:], ["server shutting down"])
        self.failureResultOf(ack, txsio.DisconnectedError)
        self.assertTrue(idle_transport.disconnecting)
        self.assertTrue(poll_transport.disconnecting)
        self.assertTrue(poll_transport.value().endswith(b"\r\n\r\n1"), poll_transport.value())
        self.assertFalse(busy_transport.disconnecting)
        for protocol in (idle, poll):
            protocol.connectionLost(Failure(ConnectionDone()))
        clock.advance(0)
        self.assertNoResult(stopping)
        clock.advance(tap.SHUTDOWN_TIMEOUT)
        self.assertTrue(busy_transport.disconnected)  # aborted
        busy.connectionLost(Failure(ConnectionDone()))
        self.assertNoResult(stopping)  # the transport may still be inside connectionLost
        clock.advance(0)
        self.successResultOf(stopping)

        lines = [(e["log_format"], e.get("reason")) for e in events
                 if e.get("log_namespace") == "txsio.tap" and "sid" in e]
        self.assertEqual(lines, [
            ("client {sid} connected from {address} over {transport}", None),
            ("client {sid} connected from {address} over {transport}", None),
            (DISCONNECTED, "server shutting down"),
            (DISCONNECTED, "server shutting down"),
        ])


CONNECTED = "client {sid} connected from {address} over {transport}"
DISCONNECTED = "client {sid} disconnected: {reason} (after {duration:.1f} s over {transport})"


def _event(level: LogLevel = LogLevel.info, namespace: str = "txsio.socket",
           when: float = 1000.0, **fields: Any) -> dict[str, Any]:
    """A log event as twisted.logger makes them."""
    return {"log_level": level, "log_namespace": namespace, "log_time": when,
            "log_format": fields.pop("log_format", "socket {sid}: unexpected packet"),
            **fields}


class TapLogTests(SynchronousTestCase):
    """twistd sio's log: the level, the JSON lines, clipping and the repeat limiter."""

    def observer(self, level: LogLevel = LogLevel.info) -> tuple[Any, list[dict[str, Any]]]:
        """A TapLogObserver at *level* and the events it let through."""
        seen: list[dict[str, Any]] = []
        return _tap_log.TapLogObserver(cast(ILogObserver, seen.append), level), seen

    def test_options(self) -> None:
        """--log-level takes debug, info, warn or error (info by default); --log-format text
        or json (text by default); other values are one-line usage errors."""
        self.assertEqual((parse()["log-level"], parse()["log-format"]), ("info", "text"))
        options = parse("--log-level", "DEBUG", "--log-format", "json")
        self.assertEqual((options["log-level"], options["log-format"]), ("debug", "json"))
        for option, value in [("--log-level", "verbose"), ("--log-level", "critical"),
                              ("--log-format", "xml")]:
            with self.assertRaises(usage.UsageError) as caught:
                parse(option, value)
            self.assertIn(option, str(caught.exception))
            self.assertNotIn("\n", str(caught.exception))

    def test_level(self) -> None:
        """Events below the level are dropped; events without a level pass."""
        observer, seen = self.observer()
        for level in [LogLevel.debug, LogLevel.info, LogLevel.warn, LogLevel.critical]:
            observer(_event(level, namespace="app", log_format=level.name))
        observer({"log_format": "no level"})
        self.assertEqual([e["log_format"] for e in seen], ["info", "warn", "critical",
                                                           "no level"])
        observer, seen = self.observer(LogLevel.error)
        observer(_event(LogLevel.warn, namespace="app"))
        self.assertEqual(seen, [])

    def test_clipping(self) -> None:
        """Long texts, bytes and exception messages in fields are cut to 200 characters, a
        line written to stdout to 2000; Twisted's keys and short fields are kept as they are."""
        observer, seen = self.observer()
        event = _event(namespace="app", uri="u" * 8000, data=b"b" * 8000,
                       why=ValueError("w" * 8000), short="ok", number=7)
        observer(event)
        observer(_event(namespace="stdout", log_format="{log_io}", log_io="p" * 9000))
        [clipped, printed] = seen
        self.assertEqual(clipped["uri"], "u" * 200 + "... [7800 more]")
        self.assertEqual(clipped["data"], b"b" * 200 + b"...")
        self.assertEqual(clipped["why"], "w" * 200 + "... [7800 more]")
        self.assertEqual((clipped["short"], clipped["number"]), ("ok", 7))
        self.assertEqual(event["uri"], "u" * 8000)  # the original event is not changed
        self.assertEqual(printed["log_io"], "p" * 2000 + "... [7000 more]")
        short = _event(namespace="app", uri="/socket.io/")
        self.assertIs(_tap_log.clip_fields(short), short)

    def test_repeat_limiter(self) -> None:
        """A txsio line repeated for one peer is logged ten times a minute, then once as a
        notice; after the minute, the count not logged comes first.  Other peers, the
        connection lines of txsio.tap and the app's lines are not limited."""
        observer, seen = self.observer()
        for i in range(100):
            observer(_event(LogLevel.warn, when=1000 + i / 100, sid="A"))
            observer(_event(LogLevel.warn, namespace="txsio.tap", when=1000 + i / 100,
                            sid="A", log_format=CONNECTED))
            observer(_event(LogLevel.warn, namespace="chat", when=1000 + i / 100, sid="A"))
        observer(_event(LogLevel.warn, when=1001, sid="B"))
        limited = [e for e in seen if e["log_namespace"] == "txsio.socket"]
        self.assertEqual(len(limited), 12)
        self.assertEqual([e.get("sid") for e in limited[:10]], ["A"] * 10)
        notice = limited[10]
        self.assertEqual(notice["log_level"], LogLevel.warn)
        self.assertEqual(formatEvent(notice), "not logging lines like 'socket {sid}: "
                         "unexpected packet' (sid A) for up to 60 s: repeated too often")
        self.assertEqual(limited[11]["sid"], "B")
        self.assertEqual(len([e for e in seen if e["log_namespace"] == "txsio.tap"]), 100)
        self.assertEqual(len([e for e in seen if e["log_namespace"] == "chat"]), 100)

        del seen[:]
        observer(_event(LogLevel.warn, when=1061, sid="A"))
        summary, line = seen
        self.assertEqual(formatEvent(summary), "90 line(s) like 'socket {sid}: unexpected "
                         "packet' (sid A) were not logged in the 60 s before: repeated too "
                         "often")
        self.assertEqual(line["sid"], "A")

    def test_repeat_limiter_memory(self) -> None:
        """The limiter remembers a bounded number of (line, peer) windows."""
        limiter = _tap_log.RepeatLimiter(burst=1, window=10, max_keys=100)
        for i in range(1000):
            self.assertEqual(limiter.admit(("line", i), 1000 + i / 1000)[0], limiter.PASS)
            self.assertLessEqual(len(limiter._windows), 100)
        self.assertEqual(limiter.admit(("line", 999), 1001)[0], limiter.NOTICE)

    def test_json_line(self) -> None:
        """A JSON line has the time (UTC), level, namespace, the formatted message, the
        traceback of a failure and the event's fields (text where JSON has no value)."""
        try:
            raise ValueError("bad value")
        except ValueError:
            failure = Failure()
        event = _event(LogLevel.error, namespace="txsio.tap", when=1_700_000_000.25,
                       log_format="client {sid} gone after {duration} s", sid="S",
                       duration=1.5, ratio=float("nan"), peer=IPv4Address("TCP", "1.2.3.4", 5),
                       log_failure=failure)
        record = json.loads(_tap_log.json_line(event))
        self.assertEqual(record["time"], "2023-11-14T22:13:20.250+00:00")
        self.assertEqual((record["level"], record["namespace"], record["message"]),
                         ("error", "txsio.tap", "client S gone after 1.5 s"))
        self.assertEqual(record["format"], "client {sid} gone after {duration} s")
        self.assertIn("ValueError: bad value", record["traceback"])
        self.assertEqual((record["sid"], record["duration"], record["ratio"]), ("S", 1.5, "nan"))
        self.assertIn("1.2.3.4", record["peer"])
        self.assertFalse([k for k in record if k.startswith("log_")])

    def test_observer_given_to_twistd(self) -> None:
        """Under twistd, the service makes its log observer when attached to the application
        and gives it the application (twistd then logs to it); not with twistd --logger, nor
        over a .tac file's own, nor outside twistd."""
        directory = temp_dir(self)
        self.patch(_tap_log, "_rotate_on_sigusr1", lambda logfile: None)

        def attached(*argv: str, application: Any = None,
                     **twistd: Any) -> tuple[ILogObserver | None, Any]:
            options = parse("--log-format", "json", *argv)
            # twistd's ServerOptions, played by the keys the service reads
            options.parent = {  # type: ignore[assignment]
                "nodaemon": False, "logfile": str(directory / "sio.log"), **twistd}
            service = tap.makeService(options, reactor=MemoryReactorClock())
            self.assertIsNone(service.log_observer)  # nothing opened before
            application = application or Application("sio")
            service.setServiceParent(application)
            return service.log_observer, application.getComponent(ILogObserver)

        observer, component = attached()
        assert isinstance(observer, _tap_log.TapLogObserver)
        self.assertIs(component, observer)
        self.assertEqual(observer.level, LogLevel.info)
        observer(_event(namespace="app", log_format="hello {who}", who="you"))
        self.assertEqual(json.loads((directory / "sio.log").read_text())["message"],
                         "hello you")
        text, _ = attached("--log-format", "text", logfile=str(directory / "text.log"))
        assert text is not None
        text(_event(namespace="app", log_format="hello {who}", who="you"))
        self.assertRegex((directory / "text.log").read_text(), r"^\S+ \[app#info\] hello you\n$")
        observer, _ = attached("--log-level", "warn")
        assert isinstance(observer, _tap_log.TapLogObserver)
        self.assertEqual(observer.level, LogLevel.warn)

        own = Application("sio")
        own.setComponent(ILogObserver, print)
        self.assertEqual(attached(application=own), (None, print))
        self.assertEqual(attached(logger="tests.tap_app.json_log"), (None, None))
        self.assertEqual(attached(logfile="-"), (None, None))  # twistd refuses it itself
        service, _ = make()
        service.setServiceParent(Application("sio"))
        self.assertIsNone(service.log_observer)

    def test_demo_lines_under_the_connection_id(self) -> None:
        """The demo's own lines name the connection by the id of twistd's connection lines
        (the Engine.IO session id), not by a second id."""
        service, _ = make()
        with capturedLogs() as events:
            client = MemoryClient(service.io)
            client.connect("/", {"nick": "ada"})
            client.close_engine()
        ids = {e["sid"] for e in events if "sid" in e
               and str(e.get("log_format", "")).startswith(("demo: ", "client {sid}"))}
        self.assertEqual(ids, {client.session.id})

    def test_connection_lines(self) -> None:
        """One line when a client connects and one when it goes, both under its Engine.IO
        session id: the address and transport it came over, then the reason, how long it
        stayed and the transport it ended on (after an upgrade, websocket)."""
        service, clock = make("--app", "tests.tap_app:setup")
        clock.advance(100)
        polling, websocket = MemoryTransport("polling"), MemoryTransport()
        request = HandshakeRequest(method="GET", url="/socket.io/?EIO=4&transport=polling",
                                   headers={}, query={}, address="192.0.2.1" + "x" * 500,
                                   secure=False)
        with capturedLogs() as events:
            session = service.io.engine.create_session(4, polling, request)
            clock.advance(2)
            session.begin_upgrade(websocket)
            session.receive(EnginePacket(EnginePacketType.PING, "probe"), websocket)
            session.receive(EnginePacket(EnginePacketType.UPGRADE), websocket)
            clock.advance(3)
            session.receive(EnginePacket(EnginePacketType.CLOSE), websocket)
        lines = [e for e in events if e.get("log_namespace") == "txsio.tap"
                 and e["log_level"] >= LogLevel.info]
        self.assertEqual([e["log_format"] for e in lines], [CONNECTED, DISCONNECTED])
        self.assertEqual({e["sid"] for e in lines}, {session.id})
        self.assertEqual(formatEvent(lines[0]), f"client {session.id} connected from "
                         f"{'192.0.2.1' + 'x' * 191}... [309 more] over polling")
        self.assertEqual(formatEvent(lines[1]), f"client {session.id} disconnected: "
                         "transport close (after 5.0 s over websocket)")
        self.assertEqual(lines[1]["duration"], 5.0)

    def test_access_log_line(self) -> None:
        """An access log line is the combined log format, what the peer sent escaped and
        cut to 200 characters."""
        service, _ = make("--access-log")
        protocol, _ = _connection(service)
        written: list[str] = []
        self.patch(service.site, "_logFile", type("F", (), {"write": written.append})())
        protocol.dataReceived(b"GET /" + b"x" * 8000 + b' HTTP/1.1\r\nHost: h\r\n'
                              b'User-Agent: "evil"\x01\r\n\r\n')
        [line] = written
        self.assertLess(len(line), 700)
        self.assertRegex(line, r'^"127\.0\.0\.1" - - .*? "GET /x{199}\.\.\. \[7801 more\] '
                         r'HTTP/1\.1" 404 \d+ "-" "\\"evil\\"\\x01"\n$')


# -- the real twistd ----------------------------------------------------------------------------

TWISTD = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"

#: npm's socket.io-client (polling, then the upgrade), run with ``node -e SCRIPT URL PATH``:
#: asks ``echo`` for an ack, is ``ready`` once on WebSocket, then reports the disconnect and
#: its first reconnection attempt.  (It accepts the TLS tests' self-signed certificate.)
NODE_CLIENT = """
import { io } from "socket.io-client";
const [url, path] = process.argv.slice(-2);
const out = (event) => process.stdout.write(JSON.stringify({ who: "node", ...event }) + "\\n");
setTimeout(() => { out({ event: "timeout" }); process.exit(3); }, 20000).unref();
const socket = io(url, {
  path, reconnectionDelay: 100, reconnectionDelayMax: 100, rejectUnauthorized: false,
});
socket.once("connect", () => {
  socket.timeout(5000).emit("echo", "hi", 42, (err, ...args) => {
    out(err ? { event: "error", message: err.message } : { event: "ack", args });
    const engine = socket.io.engine;
    const ready = () => out({ event: "ready", transport: engine.transport.name });
    if (engine.transport.name === "websocket") ready();
    else engine.once("upgrade", ready);
  });
});
socket.on("connect_error", (e) => out({ event: "error", message: e.message }));
socket.on("disconnect", (reason) => out({ event: "disconnect", reason }));
socket.io.on("reconnect_attempt", () => {
  out({ event: "reconnect_attempt" });
  socket.close();
});
"""


def require_curl(test: TestCase) -> str:
    """The path of curl; fail *test* (never skip) when it is missing."""
    curl = shutil.which("curl")
    if curl is None:
        test.fail("curl is missing: install Debian's curl (apt-get install -y curl), "
                  "as .ci/run does")
    return curl


def checkout_env() -> dict[str, str]:
    """The environment with the checkout first on PYTHONPATH (its twisted/plugins too)."""
    env = os.environ.copy()
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def twistd_argv(*args: str, json_log: bool = True) -> list[str]:
    """``twistd -n`` with no pid file (and a JSON log on stdout) then *args*."""
    logger = ["--logger", "tests.tap_app.json_log"] if json_log else []
    return [sys.executable, "-c", TWISTD, "-n", "--pidfile=", *logger, *args]


def tap_events(events: list[dict[str, Any]], prefix: str, **fields: Any) -> list[dict[str, Any]]:
    """The logged events whose format starts with *prefix* and whose fields match (in
    twistd's JSON, or in the lines of ``--log-format json``)."""
    return [e for e in events if str(e.get("log_format", e.get("format", ""))).startswith(prefix)
            and all(e.get(k) == v for k, v in fields.items())]


def assert_clean(test: TestCase, result: ProcessResult) -> None:
    """No traceback and no logged failure anywhere in a twistd run's output."""
    text = json.dumps(result.events) + "\n".join(result.other_output) + result.stderr
    test.assertNotIn("Traceback", text, result.describe())
    test.assertEqual([e for e in result.events if "log_failure" in e], [], result.describe())


class Twistd:
    """``twistd -n sio ARGS`` as a subprocess, its JSON log events in :attr:`log` (twistd's
    JSON, or without *logger* the service's own ``--log-format json`` when ARGS ask)."""

    def __init__(self, test: TestCase, *args: str, logger: bool = True) -> None:
        self.log = EventLog(reactor)
        self.process: PeerProcess = spawn(twistd_argv("sio", *args, json_log=logger),
                                          on_event=self.log.add, env=checkout_env(),
                                          cwd=temp_dir(test))
        test.addCleanup(self.process.stop)

    async def listening(self, count: int) -> list[dict[str, Any]]:
        """The ``listening on`` events, once there are *count* (bounded)."""
        def found() -> list[dict[str, Any]] | None:
            listening = tap_events(self.log.events, "listening on")
            return listening if len(listening) >= count else None

        try:
            events: list[dict[str, Any]] = await self.log.wait_for(
                found, f"{count} listeners", timeout=15)
            return events
        except AssertionError:
            result = await self.process.stop()
            raise AssertionError(f"twistd did not start\n{result.describe()}") from None

    async def terminate(self, timeout: float = 8.0) -> tuple[ProcessResult, float]:
        """SIGTERM; the process's result and how long it took to exit."""
        started = reactor.seconds()
        self.process.kill("TERM")
        result = await self.process.wait(timeout)
        return result, reactor.seconds() - started


@implementer(IAgentEndpointFactory)
class _UnixEndpoints:
    """Every URL's connection goes to one UNIX socket."""

    def __init__(self, path: str) -> None:
        self.path = path

    def endpointForURI(self, uri: Any) -> UNIXClientEndpoint:
        return UNIXClientEndpoint(reactor, self.path)


async def fetch(url: str, agent: Any = None) -> tuple[int, bytes]:
    """GET *url* (bounded): the status and body."""
    if agent is None:
        d = treq.get(url, persistent=False)
    else:
        d = treq.get(url, agent=agent)
    response = await d.addTimeout(5, reactor)
    body = await treq.content(response).addTimeout(5, reactor)
    return response.code, body


class TwistdTests(TestCase):
    """The real ``twistd -n sio``, with the checkout on PYTHONPATH."""

    async def test_plugin_is_listed(self) -> None:
        """``twistd --help`` lists the sio plugin."""
        peer = spawn(twistd_argv("--help", json_log=False), env=checkout_env())
        peer.close_stdin()
        result = await peer.wait(15)
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertTrue(any(re.match(r"sio\s+Socket\.IO server", line)
                            for line in result.other_output), result.describe())

    async def test_plugin_is_installed(self) -> None:
        """``twistd --help`` lists sio outside the checkout, with no PYTHONPATH: the plugin
        of the installed txsio (an editable install hides it; .ci/run installs as users do)."""
        env = os.environ.copy()
        env.pop("PYTHONPATH", None)
        peer = spawn(twistd_argv("--help", json_log=False), env=env, cwd="/")
        peer.close_stdin()
        result = await peer.wait(15)
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertTrue(any(re.match(r"sio\s+Socket\.IO server", line)
                            for line in result.other_output),
                        "the installed txsio has no twistd plugin (an editable install? run "
                        f"pip install '.[test,docs]' as .ci/run does)\n{result.describe()}")

    async def test_demo_over_tcp_and_unix(self) -> None:
        """With no --app, the page at / answers on a TCP and a UNIX endpoint at once, and so
        does the Engine.IO endpoint; SIGTERM then exits with status 0, cleanly."""
        path = str(temp_dir(self) / "sio.sock")
        server = Twistd(self, "--port", "tcp:0:interface=127.0.0.1", "--port", f"unix:{path}")
        tcp, unix = await server.listening(2)
        self.assertEqual(unix["unix"], path)
        status, body = await fetch(f"http://127.0.0.1:{tcp['port']}/")
        self.assertEqual(status, 200)
        self.assertIn(b"<title>", body)
        agent = Agent.usingEndpointFactory(reactor, _UnixEndpoints(path),
                                           pool=HTTPConnectionPool(reactor, persistent=False))
        self.assertEqual((await fetch("http://sio/", agent))[0], 200)
        status, body = await fetch("http://sio/socket.io/?EIO=4&transport=polling", agent)
        self.assertEqual(status, 200)
        self.assertTrue(body.startswith(b'0{"sid":'), body)

        result, elapsed = await server.terminate()
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertLess(elapsed, 5.0)
        assert_clean(self, result)
        self.assertEqual(len(tap_events(result.events, "stopped")), 1, result.describe())

    async def test_health_during_drain(self) -> None:
        """--health answers 200; after SIGTERM it answers 503 while the drain period runs,
        then twistd stops cleanly with status 0."""
        server = Twistd(self, "--port", "tcp:0:interface=127.0.0.1", "--health", "/healthz",
                        "--drain-period", "1.5")
        [tcp] = await server.listening(1)
        url = f"http://127.0.0.1:{tcp['port']}/healthz"
        self.assertEqual(await fetch(url), (200, b'{"status":"ok"}'))
        server.process.kill("TERM")
        await server.log.wait_for(lambda: tap_events(server.log.events, "draining"),
                                  "the drain", timeout=5)
        self.assertEqual(await fetch(url), (503, b'{"status":"draining"}'))
        result = await server.process.wait(10)
        self.assertEqual((result.exit_code, result.signal), (0, None), result.describe())
        assert_clean(self, result)

    async def test_metrics_port(self) -> None:
        """--metrics-port serves the metrics at --metrics' path on a listener of its own, read
        by Prometheus's text parser (a client that opened a session is counted), and not on
        --port; SIGTERM still stops cleanly with status 0."""
        from prometheus_client.parser import text_string_to_metric_families

        public, private = "tcp:0:interface=127.0.0.1", "tcp:port=0:interface=127.0.0.1"
        server = Twistd(self, "--port", public, "--metrics", "/-/metrics", "--metrics-port",
                        private)
        ports = {e["description"]: e["port"] for e in await server.listening(2)}
        status, body = await fetch(
            f"http://127.0.0.1:{ports[public]}/socket.io/?EIO=4&transport=polling")
        self.assertEqual(status, 200, body)
        self.assertEqual((await fetch(f"http://127.0.0.1:{ports[public]}/-/metrics"))[0], 404)
        status, body = await fetch(f"http://127.0.0.1:{ports[private]}/-/metrics")
        self.assertEqual(status, 200, body)
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(body.decode("utf-8"))
                   for s in f.samples}
        self.assertEqual(samples[("txsio_connections_opened_total",
                                  (("transport", "polling"),))], 1)
        self.assertIn(("process_open_fds", ()), samples)
        result, _ = await server.terminate()
        self.assertEqual((result.exit_code, result.signal), (0, None), result.describe())
        assert_clean(self, result)

    async def test_app_and_sigterm(self) -> None:
        """An --app (ready through a Deferred) answers Socket.IO clients at a custom path,
        next to the --client-js file; on SIGTERM each socket's disconnect handler runs
        with "server shutting down", every client (python-socketio on polling and on
        WebSocket, npm's socket.io-client) sees its connection close and npm's starts
        reconnecting by itself, and twistd exits with status 0 within a few seconds."""
        script = temp_dir(self) / "bundle.js"
        script.write_text("/* the client bundle */")
        server = Twistd(self, "--port", "tcp:0:interface=127.0.0.1", "--path", "/rt/sio",
                        "--app", "tests.tap_app:setup_soon", "--client-js", str(script))
        [tcp] = await server.listening(1)
        base = f"http://127.0.0.1:{tcp['port']}"
        self.assertEqual(await fetch(base + "/rt/sio/socket.io.js"),
                         (200, b"/* the client bundle */"))

        clients = EventLog(reactor)
        python = spawn([sys.executable, "-m", "tests.tap_app", base, "rt/sio"],
                       on_event=clients.add, env=checkout_env(), cwd=REPO)
        self.addCleanup(python.stop)
        node = spawn([require_node(), "--input-type=module", "-e", NODE_CLIENT, base,
                      "/rt/sio"], on_event=clients.add, cwd=NODE_DIR)
        self.addCleanup(node.stop)

        def ready_or_failed() -> Any:
            if clients.where("error") or clients.where("timeout"):
                return "failed"
            return "ready" if len(clients.where("ready")) == 3 else None

        outcome = await clients.wait_for(ready_or_failed, "three clients ready", timeout=15)
        self.assertEqual(outcome, "ready", f"{clients}\n{python.result().describe()}\n"
                                           f"{node.result().describe()}")
        self.assertEqual([e["args"] for e in clients.where("ack")], [["hi", 42]] * 3)
        self.assertEqual(sorted(e["transport"] for e in clients.where("ready")),
                         ["polling", "websocket", "websocket"])

        result, elapsed = await server.terminate()
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertLess(elapsed, 5.0)
        assert_clean(self, result)
        app_reasons = [e["reason"] for e in tap_events(result.events, "app: socket")
                       if "reason" in e]
        self.assertEqual(app_reasons, ["server shutting down"] * 3, result.describe())
        self.assertEqual(len(tap_events(result.events, "client {sid} connected")), 3)
        self.assertEqual(len(tap_events(result.events, "client {sid} disconnected",
                                        reason="server shutting down")), 3)

        seen = await python.wait(10)
        self.assertEqual(seen.exit_code, 0, seen.describe())
        self.assertEqual(sorted(e["who"] for e in seen.named("disconnect")),
                         ["polling", "websocket"], seen.describe())
        seen = await node.wait(10)
        self.assertEqual(seen.exit_code, 0, seen.describe())
        self.assertEqual([(e["event"], e.get("reason")) for e in seen.events[-2:]],
                         [("disconnect", "transport close"), ("reconnect_attempt", None)],
                         seen.describe())

    async def test_tls_websocket(self) -> None:
        """On an ssl: endpoint, npm's client connects over HTTPS and upgrades to a secure
        WebSocket; SIGTERM closes it cleanly and the client tries to reconnect."""
        key, cert = self_signed_files(temp_dir(self))
        server = Twistd(self, "--port", f"ssl:0:privateKey={key}:certKey={cert}"
                        ":interface=127.0.0.1", "--app", "tests.tap_app:setup")
        [tls] = await server.listening(1)
        # curl offers ALPN (h2, http/1.1), as browsers do: the handshake must still succeed.
        curl = await run_process([require_curl(self), "-sS", "-k", "--max-time", "10", "-w",
                                  '\n{"event": "curl", "status": %{http_code}, '
                                  '"http": "%{http_version}"}\n',
                                  f"https://127.0.0.1:{tls['port']}/socket.io/"
                                  "?EIO=4&transport=polling"], 15)
        self.assertEqual(curl.exit_code, 0, curl.describe())
        self.assertEqual(curl.first("curl"), {"event": "curl", "status": 200, "http": "1.1"})
        self.assertRegex(curl.other_output[0], r'^0\{"sid":"')
        clients = EventLog(reactor)
        node = spawn([require_node(), "--input-type=module", "-e", NODE_CLIENT,
                      f"https://127.0.0.1:{tls['port']}", "/socket.io"],
                     on_event=clients.add, cwd=NODE_DIR)
        self.addCleanup(node.stop)
        ready = await clients.wait_for(lambda: next(iter(
            clients.where("ready") + clients.where("error") + clients.where("timeout")), None),
            "the client ready", timeout=15)
        self.assertEqual(ready, {"who": "node", "event": "ready", "transport": "websocket"},
                         node.result().describe())

        result, elapsed = await server.terminate()
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertLess(elapsed, 5.0)
        assert_clean(self, result)
        # curl's polling session and the npm client's.
        self.assertEqual(len(tap_events(result.events, "client {sid} disconnected",
                                        reason="server shutting down")), 2)
        seen = await node.wait(10)
        self.assertEqual([(e["event"], e.get("reason")) for e in seen.events[-2:]],
                         [("disconnect", "transport close"), ("reconnect_attempt", None)],
                         seen.describe())

    async def test_failed_app_exits_non_zero(self) -> None:
        """An async app that fails, at once or once the reactor has turned, ends twistd with
        status 1 (systemd's Restart=on-failure restarts it), its traceback logged once."""
        for app in ["setup_async_fails", "setup_async_fails_at_once"]:
            server = Twistd(self, "--port", "tcp:0:interface=127.0.0.1",
                            "--app", f"tests.tap_app:{app}")
            result = await server.process.wait(15)
            self.assertEqual(result.exit_code, 1, result.describe())
            [failed] = [e for e in result.events if "log_failure" in e]
            self.assertEqual(failed["app"], f"tests.tap_app:{app}", result.describe())
            self.assertEqual(failed["log_failure"]["type"]["__name__"], "RuntimeError")
            self.assertNotIn("Traceback", "\n".join(result.other_output) + result.stderr)
            self.assertEqual(tap_events(result.events, "listening on"), [])

    async def test_version(self) -> None:
        """``twistd sio --version`` prints txsio's version and exits 0."""
        peer = spawn(twistd_argv("sio", "--version", json_log=False), env=checkout_env())
        peer.close_stdin()
        result = await peer.wait(15)
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertTrue(result.other_output[0].startswith(f"txsio {txsio.__version__} "),
                        result.describe())

    async def test_log_volume_under_a_flood(self) -> None:
        """At the default level, 400 bad requests with 8 kB of garbage each (in the URI, or
        in an Origin the server refuses) add a few kB of log, not megabytes: no debug line,
        every field cut, and the repeated refusal logged ten times, then once as a notice."""
        server = Twistd(self, "--port", "tcp:0:interface=127.0.0.1", "--log-format", "json",
                        logger=False)
        [tcp] = await server.listening(1)
        base = f"http://127.0.0.1:{tcp['port']}/socket.io/?EIO=4&transport="
        garbage = "g" * 8000
        pool = HTTPConnectionPool(reactor)
        self.addCleanup(pool.closeCachedConnections)
        for _ in range(200):
            response = await treq.get(base + "bogus&" + garbage, pool=pool)
            self.assertEqual(response.code, 400)
            await treq.content(response)
            # bytes header names, as everywhere (str ones trip BytesWarning under -bb)
            headers: dict[bytes | str, list[bytes | str]] = {
                b"origin": [f"https://{garbage}.example".encode()]}
            response = await treq.get(base + "polling", pool=pool, headers=headers)
            self.assertEqual(response.code, 403)
            await treq.content(response)

        result, _ = await server.terminate()
        self.assertEqual(result.exit_code, 0, result.describe())
        volume = sum(len(json.dumps(e)) for e in result.events)
        self.assertLess(volume, 40_000, result.describe())
        self.assertEqual([e for e in result.events if e["level"] == "debug"], [])
        refused = tap_events(result.events, "refused a request from origin")
        self.assertEqual(len(refused), 10)
        self.assertLess(max(len(e["origin"]) for e in refused), 250)
        [notice] = tap_events(result.events, "not logging lines like")
        self.assertIn("'refused a request from origin {origin!r}' (any peer)", notice["message"])

    async def test_log_level_debug_and_connection_lines(self) -> None:
        """With --log-level debug the debug lines are logged too; a client's connection and
        disconnection are one line each, under one id, the second with its reason, duration
        and transport."""
        server = Twistd(self, "--port", "tcp:0:interface=127.0.0.1", "--log-format", "json",
                        "--log-level", "debug", logger=False)
        [tcp] = await server.listening(1)
        status, body = await fetch(f"http://127.0.0.1:{tcp['port']}/socket.io/"
                                   "?EIO=4&transport=polling")
        self.assertEqual(status, 200)
        sid = json.loads(body[1:])["sid"]
        result, _ = await server.terminate()
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertTrue([e for e in result.events if e["level"] == "debug"], result.describe())
        lines = tap_events(result.events, "client {sid}")
        self.assertEqual([(e["format"], e["sid"]) for e in lines if e["level"] == "info"],
                         [(CONNECTED, sid), (DISCONNECTED, sid)], result.describe())
        gone = lines[-1]
        self.assertEqual((gone["reason"], gone["transport"]), ("server shutting down",
                                                               "polling"))
        self.assertGreaterEqual(gone["duration"], 0)
        self.assertEqual(gone["message"], f"client {sid} disconnected: server shutting down "
                         f"(after {gone['duration']:.1f} s over polling)")

    async def test_usage_error(self) -> None:
        """A bad option value ends twistd with a one-line usage error, no traceback."""
        peer = spawn(twistd_argv("sio", "--ping-interval", "soon", json_log=False),
                     env=checkout_env())
        peer.close_stdin()
        result = await peer.wait(15)
        self.assertEqual(result.exit_code, 1, result.describe())
        self.assertTrue(result.other_output[-1].endswith(
            "--ping-interval 'soon': expected a positive number of seconds"), result.describe())
        self.assertNotIn("Traceback", "\n".join(result.other_output) + result.stderr)

    async def test_app_usage_errors(self) -> None:
        """A path, a file name, and an app whose own import fails each end twistd with a
        one-line usage error naming the cause and the fix, and no traceback."""
        directory = temp_dir(self)
        (directory / "chat.py").write_text("import txsio_tap_no_such_dependency\n")
        expected = {
            "./chat:setup": "a module name, not a file: write --app chat:setup",
            "chat.py:setup": "a module name, not a file: write --app chat:setup",
            "chat:setup": "importing chat failed: it imports 'txsio_tap_no_such_dependency', "
                          "which is not installed",
        }
        for spec, message in expected.items():
            peer = spawn(twistd_argv("sio", "--app", spec, json_log=False),
                         env=checkout_env(), cwd=directory)
            peer.close_stdin()
            result = await peer.wait(15)
            self.assertEqual(result.exit_code, 1, result.describe())
            self.assertIn(f"--app {spec!r}: {message}", result.other_output[-1],
                          result.describe())
            self.assertNotIn("Traceback", "\n".join(result.other_output) + result.stderr)

    async def test_port_in_use(self) -> None:
        """A port already taken ends twistd with a one-line error and status 1."""
        taken = listen_loopback(reactor, 0, Factory.forProtocol(Protocol))
        self.addCleanup(taken.stopListening)
        port = cast(IPv4Address, taken.getHost()).port
        server = Twistd(self, "--port", f"tcp:{port}:interface=127.0.0.1")
        result = await server.process.wait(15)
        self.assertEqual(result.exit_code, 1, result.describe())
        output = "\n".join(result.other_output) + result.stderr + json.dumps(result.events)
        self.assertIn(f"Couldn't listen on 127.0.0.1:{port}", output)
        self.assertNotIn("Traceback", output)


class DocsTests(SynchronousTestCase):
    """What README.md, docs/ and .ci/run say about running and testing twistd sio."""

    def test_readme_commands(self) -> None:
        """README.md has exactly its two commands, the run command and the test command, and
        says in prose where a bare port listens."""
        readme = (REPO / "README.md").read_text()
        commands = re.findall(r"```sh\n(.*?)\n```", readme, re.S)
        self.assertEqual(commands, ["pip install . && twistd -n sio --port 8080",
                                    "bash .ci/run"])
        prose = " ".join(readme.split())
        self.assertIn("A port number alone listens on every network interface", prose)
        self.assertIn("`--port tcp:8080:interface=127.0.0.1` instead to listen on loopback "
                      "only", prose)

    def test_ci_installs_as_a_user_does(self) -> None:
        """.ci/run installs txsio without -e, then checks that twistd run from / with no
        PYTHONPATH lists sio (an editable install hides the plugin)."""
        script = (REPO / ".ci" / "run").read_text()
        installs = re.findall(r"^python3 -m pip install .*$", script, re.M)
        self.assertEqual(installs[0], "python3 -m pip install --quiet '.[test,docs]'")
        self.assertNotIn(" -e ", script)
        after = script[script.index(installs[0]):]
        self.assertIn("twistd_help=$(cd / && env -u PYTHONPATH twistd --help)", after)

    def test_apt_packages_are_documented(self) -> None:
        """README.md names every Debian package .ci/run installs with apt."""
        packages = re.findall(r"missing\+=\(([\w.-]+)\)", (REPO / ".ci" / "run").read_text())
        self.assertEqual(sorted(packages), ["chromium", "curl", "haproxy", "nginx-light",
                                            "redis-server"])
        readme = (REPO / "README.md").read_text()
        for package in packages:
            self.assertIn(f"`{package}`", readme)

    def test_every_option_is_documented(self) -> None:
        """docs/deployment.rst names every option of twistd sio."""
        text = (REPO / "docs" / "deployment.rst").read_text()
        names = [n.rstrip("=") for n in tap.Options().longOpt if n != "help"]
        self.assertEqual([n for n in names if f"--{n}" not in text], [])

    def test_mypy_zope_is_documented(self) -> None:
        """The getting-started page says that mypy --strict on user code wants mypy-zope."""
        text = (REPO / "docs" / "getting-started.rst").read_text()
        self.assertIn("pip install mypy-zope", text)
        self.assertIn('plugins = ["mypy_zope:plugin"]', text)


class RedisOptionTests(SynchronousTestCase):
    """--redis makes the server a cluster node on Redis; bad URLs are usage errors."""

    def test_redis_adapter(self) -> None:
        """--redis and --redis-key give the server a Redis adapter factory with that prefix."""
        from txsio.redis import RedisAdapterFactory

        options = tap.Options()
        options.parseOptions(["--port", "tcp:0", "--redis", "redis://127.0.0.1:6390/2",
                              "--redis-key", "chat"])
        factory = tap._redis_adapter(options, MemoryReactorClock())
        self.assertIsInstance(factory, RedisAdapterFactory)
        self.assertEqual((factory.key, str(factory.address), factory.address.db),
                         ("chat", "127.0.0.1:6390", 2))

    def test_redis_sharded(self) -> None:
        """--redis-sharded gives a factory of Node's sharded format; alone it is a usage error."""
        options = tap.Options()
        options.parseOptions(["--port", "tcp:0", "--redis", "redis://127.0.0.1:6390",
                              "--redis-sharded"])
        factory = tap._redis_adapter(options, MemoryReactorClock())
        self.assertEqual((factory.sharded, factory.subscription_mode), (True, "dynamic"))
        options = tap.Options()
        options.parseOptions(["--port", "tcp:0", "--redis", "redis://127.0.0.1:6390"])
        self.assertFalse(tap._redis_adapter(options, MemoryReactorClock()).sharded)
        with self.assertRaises(usage.UsageError) as caught:
            tap.Options().parseOptions(["--redis-sharded"])
        self.assertIn("--redis", str(caught.exception))

    def test_no_redis(self) -> None:
        """Without --redis the server keeps its in-memory adapter."""
        options = tap.Options()
        options.parseOptions(["--port", "tcp:0"])
        self.assertIsNone(tap._redis_adapter(options, None))

    def test_bad_redis_url(self) -> None:
        """A URL that is not redis:// is a one-line usage error."""
        with self.assertRaises(usage.UsageError) as caught:
            tap.Options().parseOptions(["--redis", "http://127.0.0.1:6379"])
        self.assertIn("--redis", str(caught.exception))
