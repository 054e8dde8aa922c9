"""A real browser: headless Chromium on the demo chat served by ``twistd -n sio``.

``tests/browser/chat.mjs`` drives the pages with npm ``playwright-core`` and Debian's
``chromium`` (``/usr/bin/chromium``); this module starts ``twistd -n sio`` on a free loopback
port with ``--client-js`` (socket.io-client's browser bundle from ``tests/node``), runs the
script and asserts what the pages saw:

- two pages chat through the demo: nicknames, rooms, live counts, messages with delivery
  acks, and an image that arrives as the same bytes, in a binary WebSocket frame;
- a page forced to long-polling (``?transports=polling``) chats with a WebSocket page;
- the server is stopped and started again on the same port: the pages reconnect by
  themselves, are back in their room, and chat again.

A missing ``chromium`` or ``npm ci`` in ``tests/node`` fails these tests; nothing is skipped.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any

from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.trial.unittest import TestCase

from .support import (
    NODE_DIR,
    TESTS_DIR,
    PeerProcess,
    ProcessResult,
    require_node,
    run_node,
    self_signed_files,
    spawn,
)

ROOT = TESTS_DIR.parent
CHROMIUM = Path("/usr/bin/chromium")
SCRIPT = TESTS_DIR / "browser" / "chat.mjs"
CLIENT_JS = NODE_DIR / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
PLAYWRIGHT = NODE_DIR / "node_modules" / "playwright-core"
#: npm's socket.io-client 4.8.3: the same bytes as the CDN file the demo pins by its hash.
CDN_BUNDLE = NODE_DIR / "node_modules" / "socket.io-client-cdn" / "dist" / "socket.io.min.js"


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


class DemoServer:
    """``twistd -n sio`` (the demo, as no ``--app`` is given) on 127.0.0.1:``port``, with
    ``--client-js`` unless *client_js* is false, and *extra* arguments (more ``--port``)."""

    def __init__(self, port: int, *extra: str, client_js: bool = True) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ)
        # The working tree's txsio and its twisted/plugins/txsio_plugin.py.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
        # twistd itself, on this interpreter (the `twistd` script may belong to another one).
        self.argv = [
            sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
            "--pidfile=", "-n", "sio",
            "--port", f"tcp:{port}:interface=127.0.0.1",
            *(["--client-js", str(CLIENT_JS)] if client_js else []),
            *extra,
        ]
        self.process: PeerProcess = spawn(self.argv, env=env, cwd=ROOT)

    async def started(self, timeout: float = 15.0) -> DemoServer:
        """Wait until the port accepts connections (fail if twistd ends or is too slow)."""
        reactor = _reactor()
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.port, timeout=1)
        waited = 0.0
        while True:
            if self.process.result().exit_code is not None or self.process.result().signal:
                raise AssertionError("twistd ended before listening\n"
                                     + self.process.result().describe())
            try:
                connection = await endpoint.connect(
                    protocol.Factory.forProtocol(protocol.Protocol))
            except Exception:
                if waited >= timeout:
                    await self.process.stop()
                    raise AssertionError(f"twistd not listening after {timeout} s\n"
                                         + self.process.result().describe()) from None
                await task.deferLater(reactor, 0.1, lambda: None)
                waited += 0.1
                continue
            assert isinstance(connection, protocol.Protocol) and connection.transport
            connection.transport.loseConnection()
            return self

    def stop(self) -> defer.Deferred[ProcessResult]:
        """SIGTERM, and wait (bounded) for twistd to exit."""
        return self.process.stop(timeout=10)


def require_browser(test: TestCase) -> str:
    """The path of node; fail ``test`` (never skip) when something the browser needs is missing."""
    if not CHROMIUM.exists():
        test.fail(f"{CHROMIUM} is missing: install Debian's chromium "
                  "(apt-get install -y chromium), as .ci/run does")
    node = require_node()
    if not PLAYWRIGHT.is_dir():
        test.fail(f"{PLAYWRIGHT} is missing: run `npm ci` in tests/node")
    if not CLIENT_JS.is_file():
        test.fail(f"{CLIENT_JS} is missing: run `npm ci` in tests/node")
    return node


def results(run: ProcessResult) -> dict[str, dict[str, Any]]:
    """The script's results by scenario; an AssertionError with its output if it failed."""
    if run.exit_code != 0 or run.names()[-1:] != ["done"]:
        raise AssertionError(f"the browser script failed\n{run.describe()}")
    return {e["scenario"]: e for e in run.named("result")}


class BrowserTests(TestCase):
    """The demo chat in headless Chromium against ``twistd -n sio``."""

    timeout = 90

    async def _server(self, port: int, *extra: str, client_js: bool = True) -> DemoServer:
        server = await DemoServer(port, *extra, client_js=client_js).started()
        self.addCleanup(server.stop)
        return server

    def assertDelivered(self, receipt: dict[str, Any], recipients: int) -> None:
        self.assertEqual(receipt["status"], "delivered", receipt)
        self.assertEqual(receipt["receipt"], "✓ delivered")
        people = "person" if recipients == 1 else "people"
        self.assertEqual(receipt["detail"],
                         f"sent to {recipients} {people}" if recipients else "nobody else is here")
        self.assertRegex(receipt["id"], r"^m\d+$")

    @defer.inlineCallbacks
    def test_chat_and_polling(self) -> Any:
        """Two pages chat (acks, counts, rooms, a binary image); a polling-only page too; a
        page opened with a foreign ``?server=`` loads nothing from it; a page over TLS (ALPN
        offered, as Chromium does) chats with a page over plain HTTP."""
        require_browser(self)
        key, cert = self_signed_files(Path(tempfile.mkdtemp(prefix="txsio-browser-")))
        self.addCleanup(shutil.rmtree, key.parent, True)
        tls_port = free_port()
        server = yield defer.Deferred.fromCoroutine(self._server(
            free_port(), "--port",
            f"ssl:{tls_port}:privateKey={key}:certKey={cert}:interface=127.0.0.1"))
        run = yield run_node(str(SCRIPT), {
            "url": server.url, "tlsUrl": f"https://127.0.0.1:{tls_port}",
            "scenarios": ["chat", "polling", "inject", "tls"], "deadline": 50000}, timeout=55)
        found = results(run)

        chat = found["chat"]
        # The page loaded socket.io-client from <path>/socket.io.js (--client-js), not the CDN.
        self.assertEqual(chat["client"], "server")
        self.assertEqual(chat["together"]["online"], 2)
        self.assertEqual(chat["together"]["rooms"], {"lobby": 2, "random": 0, "twisted": 0})
        self.assertEqual(chat["members"], ["alice", "bob"])
        self.assertDelivered(chat["aliceSays"], 1)
        self.assertEqual(chat["bobHears"], {"nick": "alice", "id": chat["aliceSays"]["id"],
                                            "text": "Hi bob! Did the server get this?"})
        self.assertDelivered(chat["bobSays"], 1)
        self.assertEqual(chat["aliceHears"]["text"], "Loud and clear — over WebSocket.")
        self.assertEqual(chat["aliceHears"]["id"], chat["bobSays"]["id"])
        image = chat["image"]
        self.assertEqual(image["status"], "delivered")
        self.assertTrue(image["bytesMatch"], image)
        self.assertEqual(image["received"], image["sent"])
        self.assertEqual(image["width"], 160)
        # The bytes crossed the WebSocket as one binary frame (an attachment, not base64).
        self.assertEqual(image["binaryFrames"], [image["sent"]])
        # Rooms: apart, the counts follow and a message stays in its room.
        self.assertEqual(chat["apart"]["rooms"], {"lobby": 1, "random": 1, "twisted": 0})
        self.assertDelivered(chat["lonely"], 0)
        self.assertDelivered(chat["bobInRandom"], 0)
        self.assertEqual((chat["bobGotLobby"], chat["aliceGotRandom"]), (0, 0))
        self.assertEqual(chat["afterLeave"]["rooms"], {"lobby": 1, "random": 0, "twisted": 0})
        self.assertEqual(chat["alone"], {"online": 1,
                                         "rooms": {"lobby": 1, "random": 0, "twisted": 0}})

        polling = found["polling"]
        self.assertEqual(polling["transport"], "polling")
        self.assertEqual(polling["status"], "connected · polling")
        self.assertEqual(polling["websockets"], 0, "the polling page opened a WebSocket")
        self.assertEqual(polling["aliceTransport"], "websocket")
        self.assertDelivered(polling["carolSays"], 1)
        self.assertEqual(polling["aliceHears"]["text"], "Hello from long-polling")
        self.assertDelivered(polling["aliceSays"], 1)
        self.assertEqual(polling["carolHears"]["text"], "Hello back over WebSocket")
        self.assertEqual(polling["image"]["status"], "delivered")
        self.assertTrue(polling["image"]["bytesMatch"], polling["image"])

        inject = found["inject"]
        self.assertEqual(inject["evilAsked"], 0, "the page asked the ?server= origin")
        self.assertFalse(inject["pwned"])
        self.assertEqual(inject["client"], "server")
        self.assertIn(f"{server.url}/socket.io/socket.io.js", inject["scripts"])
        self.assertIn("script-src 'self' https://cdn.socket.io/4.8.3/socket.io.min.js;",
                      inject["csp"])
        self.assertDelivered(inject["mallorySays"], 1)
        self.assertEqual(inject["aliceHears"]["text"], "Hello from a crafted link")

        tls = found["tls"]
        self.assertEqual((tls["url"], tls["transport"]),
                         (f"https://127.0.0.1:{tls_port}", "websocket"))
        self.assertDelivered(tls["frankSays"], 1)
        self.assertEqual(tls["aliceHears"]["text"], "Hello over TLS")

    @defer.inlineCallbacks
    def test_cdn_fallback(self) -> Any:
        """Without ``--client-js`` the page loads the one CDN file it pins by hash and chats;
        a tampered copy is refused by the integrity check and the page names --client-js."""
        require_browser(self)
        if not CDN_BUNDLE.is_file():
            self.fail(f"{CDN_BUNDLE} is missing: run `npm ci` in tests/node")
        server = yield defer.Deferred.fromCoroutine(self._server(free_port(), client_js=False))
        run = yield run_node(str(SCRIPT), {"url": server.url, "cdnBundle": str(CDN_BUNDLE),
                                           "scenarios": ["cdn"], "deadline": 25000}, timeout=30)
        cdn = results(run)["cdn"]
        self.assertEqual(cdn["client"], "cdn")
        self.assertDelivered(cdn["ginaSays"], 0)
        self.assertEqual(cdn["fetched"], ["genuine", "tampered"])
        refused = cdn["refused"]
        self.assertEqual((refused["pwned"], refused["io"]), (False, "undefined"))
        self.assertEqual(refused["status"], "cannot load the Socket.IO client")
        self.assertIn("--client-js", refused["message"])

    @defer.inlineCallbacks
    def test_restart(self) -> Any:
        """The server stops and starts again on its port: the pages reconnect and chat on."""
        node = require_browser(self)
        port = free_port()
        first = yield defer.Deferred.fromCoroutine(DemoServer(port).started())
        servers = [first]

        async def stop_all() -> None:
            for server in servers:
                await server.stop()

        self.addCleanup(lambda: defer.Deferred.fromCoroutine(stop_all()))
        stopped: list[ProcessResult] = []
        restarted: defer.Deferred[None] = defer.Deferred()

        async def restart() -> None:
            stopped.append(await first.stop())
            servers.append(await DemoServer(port).started())

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") == "ready-for-restart" and not restarted.called:
                defer.Deferred.fromCoroutine(restart()).chainDeferred(restarted)

        options = {"url": first.url, "scenarios": ["restart"], "deadline": 35000}
        browser = spawn([node, str(SCRIPT), json.dumps(options)], on_event=on_event, cwd=NODE_DIR)
        run = yield browser.wait(40)
        self.assertTrue(restarted.called, f"no restart was asked for\n{run.describe()}")
        yield restarted  # a failure to restart is the error to report
        found = results(run)

        # twistd stopped cleanly on SIGTERM.
        self.assertEqual((stopped[0].exit_code, stopped[0].signal), (0, None),
                         stopped[0].describe())
        restart_result = found["restart"]
        self.assertDelivered(restart_result["before"], 1)
        self.assertEqual(restart_result["down"]["state"], "disconnected")
        self.assertEqual(restart_result["back"]["online"], 2)
        self.assertEqual(restart_result["back"]["rooms"]["lobby"], 2)
        self.assertEqual(restart_result["room"], "lobby")
        self.assertEqual(restart_result["nick"], "dave")
        self.assertTrue(restart_result["newId"])
        self.assertDelivered(restart_result["after"], 1)
        self.assertEqual(restart_result["erinHears"]["text"], "After the restart")
        self.assertDelivered(restart_result["erinSays"], 1)
        self.assertEqual(restart_result["daveHears"]["text"], "Welcome back")
        # The page kept what it showed before the restart.
        self.assertEqual(restart_result["keptHistory"], 1)
