"""Interop: txsio's client against real Socket.IO servers over loopback.

Three servers run the same app: ``txsio.Server`` in this process (:func:`install_app`),
Node's ``socket.io`` 4.8 (``tests/node/sio_server_for_client.mjs``, whose header describes the
app) and python-socketio's ``AsyncServer`` on aiohttp (``tests/peers/pysio_server.py``).  Each
scenario runs against each server: polling only, WebSocket only, the upgrade; namespaces;
auth refusal with data; acks and binary both ways; the server's disconnect; the server
killed and restarted (reconnection, buffered emits delivered); connection state recovery
(txsio and Node).

Needs ``npm ci`` in ``tests/node`` and python-socketio with aiohttp (a missing peer is an
error, not a skip).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from twisted.internet import defer
from twisted.internet.interfaces import IReactorTCP
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

import txsio

from .support import (
    NODE_DIR,
    PEERS_DIR,
    EventLog,
    PeerProcess,
    abort_connection,
    bytes_from_json,
    listen_loopback,
    require_node,
    self_signed,
    spawn,
)

#: Heartbeat of the servers, in seconds.
PING_INTERVAL = 0.5
PING_TIMEOUT = 0.5

#: The bound of every wait, in seconds.
WAIT = 5.0

#: What the traffic scenario echoes: text, a number, binary nested and at the top level.
PAYLOAD: tuple[Any, ...] = (
    "text ünïcödé ✓ 😀",
    42,
    {"nested": {"buf": b"\x01\x02\x03", "none": None}, "list": [bytes(range(256)), ""]},
    bytes(i % 251 for i in range(2000)),
)


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def within(d: defer.Deferred[Any], what: str, seconds: float = WAIT) -> defer.Deferred[Any]:
    """*d*, failing with an AssertionError naming *what* after *seconds*."""

    def timed_out(failure: Failure) -> Failure:
        failure.trap(defer.TimeoutError)
        return Failure(AssertionError(f"{what}: nothing within {seconds} s"))

    return d.addTimeout(seconds, _reactor()).addErrback(timed_out)


def next_event(target: Any, event: str) -> defer.Deferred[tuple[Any, ...]]:
    """A Deferred of the arguments of the next *event* on *target* (a socket or manager)."""
    d: defer.Deferred[tuple[Any, ...]] = defer.Deferred()

    def handler(*args: Any) -> None:
        target.off(event, handler)
        if not d.called:
            d.callback(args)

    target.on(event, handler)
    return d


# -- the servers ----------------------------------------------------------------------------


def install_app(io: txsio.Server, log: EventLog, reactor: Any) -> None:
    """The test app of ``sio_server_for_client.mjs`` on a ``txsio.Server``."""

    def setup(socket: Any) -> None:
        name = socket.nsp.name
        log.add({"event": "connection", "nsp": name, "id": socket.id,
                 "auth": dict(socket.handshake.auth), "recovered": socket.recovered})
        socket.on("echo", lambda *args: args)

        def echo_event(*args: Any) -> str:
            socket.emit("echo", *args)
            return "sent"

        async def ask(request: dict[str, Any]) -> dict[str, Any]:
            try:
                answer = await socket.timeout(request["timeout"]).emit_with_ack(
                    request["event"], *request.get("args", []))
            except txsio.AckTimeoutError:
                return {"error": "timeout"}
            answers = list(answer) if isinstance(answer, tuple) else (
                [] if answer is None else [answer])
            return {"answer": answers}

        def record(*args: Any) -> str:
            log.add({"event": "record", "nsp": name, "args": list(args)})
            return "recorded"

        def drop() -> None:
            socket.conn.session.close()  # graceful, as Node's socket.conn.close()
            reactor.callLater(0.02, io.emit, "missed", "while-away")

        socket.on("echo-event", echo_event)
        socket.on("whoami", lambda: {"nsp": name, "id": socket.id,
                                     "recovered": socket.recovered})
        socket.on("ask", ask)
        socket.on("record", record)
        socket.on("disconnect-me", lambda: socket.disconnect())
        socket.on("drop", drop)
        socket.on("disconnect", lambda reason: log.add(
            {"event": "disconnect", "nsp": name, "id": socket.id, "reason": reason}))
        socket.emit("hello", name)

    def private(socket: Any) -> None:
        if socket.handshake.auth.get("token") != "secret":
            raise txsio.ConnectionRefusedError("not authorized",
                                               {"code": 401, "reason": "bad token"})

    io.on("connection", setup)
    io.of("/chat").on("connection", setup)
    io.of("/private").use(private)
    io.of("/private").on("connection", setup)


class _Tracked(ProtocolWrapper):
    def connectionLost(self, reason: Failure = connectionDone) -> None:
        try:
            super().connectionLost(reason)
        finally:
            gone = self.factory.live.pop(self, None)
            if gone is not None:
                gone.callback(None)


class _TrackingFactory(WrappingFactory):
    protocol = _Tracked

    def __init__(self, wrapped: Any) -> None:
        super().__init__(wrapped)
        self.live: dict[_Tracked, defer.Deferred[None]] = {}

    def registerProtocol(self, p: Any) -> None:
        super().registerProtocol(p)
        self.live[p] = defer.Deferred()


class AppServer:
    """The app on one kind of server, on 127.0.0.1; :meth:`kill` and :meth:`start` again
    reuse the port; ``log`` collects what the app saw, across restarts."""

    kind = ""

    def __init__(self, *, recovery: bool = False) -> None:
        self.reactor = _reactor()
        self.log = EventLog(self.reactor)
        self.recovery = recovery
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> AppServer:
        raise NotImplementedError

    async def kill(self) -> None:
        """Stop abruptly: connections cut, nothing said to the clients."""
        raise NotImplementedError


class TxsioAppServer(AppServer):
    """The app on ``txsio.Server``, in this process (over TLS given ``tls``, a server
    context factory)."""

    kind = "txsio"
    io: txsio.Server | None = None
    tls: Any = None
    #: more options of the server (a subclass's)
    server_options: dict[str, Any] = {}
    _listening: Any = None
    _factory: _TrackingFactory | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    async def start(self) -> AppServer:
        io = self.io = txsio.Server(clock=self.reactor, ping_interval=PING_INTERVAL,
                                    ping_timeout=PING_TIMEOUT,
                                    connection_state_recovery=self.recovery or None,
                                    **self.server_options)
        install_app(io, self.log, self.reactor)
        root = Resource()
        root.putChild(b"socket.io", io.resource())
        site: Any = Site(root)
        if self.tls is not None:
            # TLS inside the tracking wrapper, so the site sees a TLS transport.
            from twisted.protocols.tls import TLSMemoryBIOFactory

            site = TLSMemoryBIOFactory(self.tls, False, site)
        factory = self._factory = _TrackingFactory(site)
        assert IReactorTCP.providedBy(self.reactor)
        self._listening = listen_loopback(self.reactor, self.port, factory)
        self.port = self._listening.getHost().port
        return self

    async def kill(self) -> None:
        if self._listening is None or self._factory is None:
            return
        listening, self._listening = self._listening, None
        await listening.stopListening()
        live = list(self._factory.live.values())
        for connection in list(self._factory.live):
            abort_connection(connection)
        await within(defer.DeferredList(live), "txsio server connections closing")
        if self.io is not None:
            self.io.close()


class ProcessAppServer(AppServer):
    """The app in a subprocess printing its :class:`EventLog` events."""

    process: PeerProcess | None = None

    def argv(self, options: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    async def start(self) -> AppServer:
        listening: defer.Deferred[int] = defer.Deferred()

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") == "listening":
                if not listening.called:
                    listening.callback(event["port"])
            else:
                self.log.add(bytes_from_json(event))

        options = {"port": self.port, "pingInterval": round(PING_INTERVAL * 1000),
                   "pingTimeout": round(PING_TIMEOUT * 1000), "recovery": self.recovery}
        self.process = spawn(self.argv(options), on_event=on_event, cwd=NODE_DIR)
        try:
            self.port = await within(listening, f"{self.kind} server start", 15)
        except AssertionError:
            result = await self.process.stop()
            raise AssertionError(
                f"{self.kind} server did not start\n{result.describe()}") from None
        return self

    async def kill(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            process.kill("KILL")
            await process.wait(WAIT)


class NodeAppServer(ProcessAppServer):
    """The app on Node's ``socket.io``."""

    kind = "node"

    def argv(self, options: dict[str, Any]) -> list[str]:
        return [require_node(), str(NODE_DIR / "sio_server_for_client.mjs"), json.dumps(options)]


class PySioAppServer(ProcessAppServer):
    """The app on python-socketio's ``AsyncServer`` (aiohttp)."""

    kind = "python-socketio"

    def argv(self, options: dict[str, Any]) -> list[str]:
        return [sys.executable, str(PEERS_DIR / "pysio_server.py"), json.dumps(options)]


# -- the scenarios --------------------------------------------------------------------------


class _Scenarios:
    """The scenarios; each subclass names the server (a trial ``TestCase``)."""

    server_class: type[AppServer]

    # (TestCase's, for the type checker)
    addCleanup: Callable[..., Any]
    assertEqual: Callable[..., Any]
    assertTrue: Callable[..., Any]
    assertFalse: Callable[..., Any]
    assertIsInstance: Callable[..., Any]
    assertIn: Callable[..., Any]
    assertIs: Callable[..., Any]

    async def server(self, *, recovery: bool = False) -> AppServer:
        server = await self.server_class(recovery=recovery).start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(server.kill()))
        return server

    def client(self, **options: Any) -> txsio.Client:
        options.setdefault("reconnection_delay", 0.1)
        options.setdefault("reconnection_delay_max", 0.3)
        options.setdefault("randomization_factor", 0)
        options.setdefault("timeout", WAIT)
        client = txsio.Client(**options)
        self.addCleanup(client.disconnect)
        return client

    async def check_traffic(self, socket: txsio.Client | txsio.ClientSocket) -> None:
        """Acks and binary both ways on *socket*."""
        answer = await within(socket.emit_with_ack("echo", *PAYLOAD), "the echo ack")
        self.assertEqual(answer, PAYLOAD)
        echoed = next_event(socket, "echo")
        sent = await within(socket.emit_with_ack("echo-event", {"bin": b"\x00\xff"}, "x"),
                            "the echo-event ack")
        self.assertEqual(sent, "sent")
        self.assertEqual(await within(echoed, "the echo event"), ({"bin": b"\x00\xff"}, "x"))

        @socket.on("question")
        def question(*args: Any) -> tuple[Any, ...]:
            return ("answer", b"\x09\x08", *args)

        result = await within(
            socket.emit_with_ack("ask", {"event": "question", "args": [1, "two"], "timeout": 3}),
            "the ask ack")
        self.assertEqual(result, {"answer": ["answer", b"\x09\x08", 1, "two"]})

    async def connect_and_check(self, transports: tuple[str, ...], expected: str) -> None:
        server = await self.server()
        client = self.client()
        hello = next_event(client, "hello")
        await within(client.connect(server.url, transports=transports), "connect")
        self.assertTrue(client.connected)
        self.assertEqual((await within(hello, "hello"))[0], "/")
        await self.check_traffic(client)
        if expected == "websocket" and client.transport != "websocket":
            await within(next_event(client.io.engine, "upgrade"), "the upgrade")
        self.assertEqual(client.transport, expected)
        await self.check_traffic(client)
        connection = await within(server.log.first("connection", nsp="/"), "server connection")
        self.assertEqual(connection["id"], client.id)

    async def test_polling_only(self) -> None:
        """Polling only: connect, acks and binary both ways."""
        await self.connect_and_check(("polling",), "polling")

    async def test_websocket_only(self) -> None:
        """WebSocket only: connect, acks and binary both ways."""
        await self.connect_and_check(("websocket",), "websocket")

    async def test_upgrade(self) -> None:
        """Polling, then the upgrade to WebSocket, with traffic before and after."""
        await self.connect_and_check(("polling", "websocket"), "websocket")

    async def test_namespaces(self) -> None:
        """Two namespaces over one connection, each with its own id and events."""
        server = await self.server()
        client = self.client()
        chat = client.socket("/chat")
        hellos = [next_event(client, "hello"), next_event(chat, "hello")]
        await within(client.connect(server.url, namespaces=["/", "/chat"]), "connect")
        self.assertTrue(client.connected and chat.connected)
        self.assertEqual([(await within(h, "hello"))[0] for h in hellos], ["/", "/chat"])
        main = await within(client.emit_with_ack("whoami"), "whoami /")
        other = await within(chat.emit_with_ack("whoami"), "whoami /chat")
        self.assertEqual((main["nsp"], main["id"]), ("/", client.id))
        self.assertEqual((other["nsp"], other["id"]), ("/chat", chat.id))
        await self.check_traffic(chat)
        # A namespace joined later rides the same connection.
        engine = client.io.engine
        private = client.socket("/private", auth={"token": "secret"})
        await within(private.connect(), "connect /private")
        self.assertIs(client.io.engine, engine)
        self.assertEqual((await within(private.emit_with_ack("whoami"), "whoami"))["nsp"],
                         "/private")

    async def test_auth_refusal(self) -> None:
        """A refusal fails connect() with the server's message and data; a callable auth is
        evaluated on each attempt."""
        server = await self.server()
        client = self.client()
        errors: list[Any] = []
        client.socket("/private").on("connect_error", errors.append)
        error = await within(
            client.connect(server.url, namespaces=["/private"], auth={"token": "nope"})
            .addCallbacks(lambda _: None, lambda f: f.value), "the refusal")
        self.assertIsInstance(error, txsio.ConnectError)
        self.assertEqual((error.message, error.data, error.refused),
                         ("not authorized", {"code": 401, "reason": "bad token"}, True))
        self.assertEqual([e.message for e in errors], ["not authorized"])
        self.assertFalse(client.io.active)
        calls: list[int] = []

        def auth() -> dict[str, str]:
            calls.append(1)
            return {"token": "secret"}

        await within(client.connect(server.url, namespaces=["/private"], auth=auth), "connect")
        private = client.socket("/private")
        self.assertTrue(private.connected)
        self.assertEqual(calls, [1])
        connection = await within(server.log.first("connection", nsp="/private"), "connection")
        self.assertEqual(connection["auth"], {"token": "secret"})

    async def test_server_disconnect(self) -> None:
        """The server's disconnect is ``"io server disconnect"``, and is not reconnected."""
        server = await self.server()
        client = self.client()
        await within(client.connect(server.url), "connect")
        gone = next_event(client, "disconnect")
        client.emit("disconnect-me")
        self.assertEqual(await within(gone, "disconnect"), ("io server disconnect",))
        self.assertFalse(client.connected)
        self.assertFalse(client.io.reconnecting)
        await within(client.io.wait_released(), "the connection closing")

    async def test_restart(self) -> None:
        """The server killed and restarted: the client reconnects every namespace, and what
        it emitted meanwhile is delivered."""
        server = await self.server()
        client = self.client()
        chat = client.socket("/chat")
        await within(client.connect(server.url, namespaces=["/", "/chat"]), "connect")
        client.emit("record", "before")
        await within(server.log.first("record", args=["before"]), "the first record")
        disconnected = [next_event(client, "disconnect"), next_event(chat, "disconnect")]
        await server.kill()
        reasons = [(await within(d, "disconnect"))[0] for d in disconnected]
        self.assertTrue(set(reasons) <= {"transport close", "transport error"}, reasons)
        client.emit("record", "buffered")
        answer = client.emit_with_ack("record", "buffered-ack")
        chat.emit("record", "buffered-chat")
        reconnected = next_event(client, "reconnect")
        rejoined = [next_event(client, "connect"), next_event(chat, "connect")]
        await server.start()
        await within(reconnected, "reconnect")
        for d in rejoined:
            await within(d, "connect again")
        self.assertEqual(await within(answer, "the buffered ack"), "recorded")
        await within(server.log.first("record", args=["buffered"], nsp="/"), "buffered")
        await within(server.log.first("record", args=["buffered-chat"], nsp="/chat"), "chat")
        self.assertTrue(client.connected and chat.connected)


class _RecoveryScenario:
    """Connection state recovery, against the servers that have it (python-socketio has not,
    so its class does not include this scenario)."""

    server: Callable[..., Any]
    client: Callable[..., Any]
    assertFalse: Callable[..., Any]
    assertTrue: Callable[..., Any]
    assertEqual: Callable[..., Any]

    async def test_recovery(self) -> None:
        """Connection state recovery: same id after a lost connection, and the event missed
        meanwhile replayed."""
        server = await self.server(recovery=True)
        client = self.client(reconnection_delay=0.3)
        hello = next_event(client, "hello")
        await within(client.connect(server.url), "connect")
        await within(hello, "hello")
        first_id = client.id
        self.assertFalse(client.recovered)
        gone = next_event(client, "disconnect")
        missed = next_event(client, "missed")
        back = next_event(client, "connect")
        client.emit("drop")
        self.assertEqual((await within(gone, "disconnect"))[0], "transport close")
        await within(back, "reconnection")
        self.assertEqual((await within(missed, "the missed event"))[0], "while-away")
        self.assertTrue(client.recovered)
        self.assertEqual(client.id, first_id)
        await within(server.log.first("connection", recovered=True), "recovered connection")



class TxsioServerTests(_RecoveryScenario, _Scenarios, TestCase):
    """txsio's client against ``txsio.Server``."""

    server_class = TxsioAppServer


class NodeServerTests(_RecoveryScenario, _Scenarios, TestCase):
    """txsio's client against Node's ``socket.io`` 4.8."""

    server_class = NodeAppServer


class PythonSocketIOServerTests(_Scenarios, TestCase):
    """txsio's client against python-socketio's ``AsyncServer`` on aiohttp."""

    server_class = PySioAppServer


class TLSTests(TestCase):
    """``https://`` and ``wss://`` against txsio's server with a self-signed certificate."""

    async def connect(self, transports: tuple[str, ...], trusted: bool) -> txsio.Client:
        from twisted.internet import ssl
        from twisted.web.client import BrowserLikePolicyForHTTPS

        cert_pem, key_pem = self_signed()
        server = TxsioAppServer()
        server.tls = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
        await server.start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(server.kill()))
        policy = BrowserLikePolicyForHTTPS(
            trustRoot=ssl.Certificate.loadPEM(cert_pem) if trusted else None)
        client = txsio.Client(tls=policy, reconnection=False, timeout=WAIT)
        self.addCleanup(client.disconnect)
        self.assertTrue(server.url.startswith("https://"))
        await within(client.connect(server.url, transports=transports), "connect over TLS")
        return client

    async def test_https_then_wss(self) -> None:
        """Polling over HTTPS, then the upgrade to WSS, with binary acks."""
        client = await self.connect(("polling", "websocket"), trusted=True)
        answer = await within(client.emit_with_ack("echo", b"\x00tls"), "echo")
        self.assertEqual(answer, b"\x00tls")
        if client.transport != "websocket":
            await within(next_event(client.io.engine, "upgrade"), "the upgrade")
        self.assertEqual(await within(client.emit_with_ack("echo", "wss"), "echo"), "wss")

    async def test_wss_only(self) -> None:
        """WebSocket only over WSS."""
        client = await self.connect(("websocket",), trusted=True)
        self.assertEqual(await within(client.emit_with_ack("echo", 1), "echo"), 1)

    async def test_untrusted_certificate(self) -> None:
        """A certificate the client does not trust fails the connection."""
        from twisted.internet import ssl
        from twisted.web.client import BrowserLikePolicyForHTTPS

        cert_pem, key_pem = self_signed()
        server = TxsioAppServer()
        server.tls = ssl.PrivateCertificate.loadPEM(cert_pem + key_pem).options()
        await server.start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(server.kill()))
        for transports in (("polling",), ("websocket",)):
            client = txsio.Client(tls=BrowserLikePolicyForHTTPS(), reconnection=False,
                                  timeout=WAIT)
            self.addCleanup(client.disconnect)
            error = await within(client.connect(server.url, transports=transports)
                                 .addCallbacks(lambda _: None, lambda f: f.value), "refusal")
            self.assertIsInstance(error, txsio.ConnectError)
            self.assertFalse(error.refused)


# -- misbehaving servers --------------------------------------------------------------------


class _Misbehaving(Resource):
    """An Engine.IO endpoint that misbehaves as told.

    ``mode``: ``"500"`` (every poll is an HTTP 500), ``"garbage"`` (polls get bytes that
    are no payload), ``"silent"`` (a valid handshake and CONNECT reply, then no ping, ever).
    """

    isLeaf = True

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.gets = 0
        self.pending: list[Any] = []
        self.connect_reply = False

    def render_GET(self, request: Any) -> Any:
        self.gets += 1
        if self.mode == "500":
            request.setResponseCode(500)
            return b"{}"
        if self.mode == "garbage":
            return b"\xff\xfe not a payload"
        if b"sid" not in request.args:
            return (b'0{"sid":"quiet","upgrades":[],"pingInterval":200,"pingTimeout":200,'
                    b'"maxPayload":1000000}')
        if self.connect_reply:
            self.connect_reply = False
            return b'40{"sid":"s-quiet"}'
        self.pending.append(request)
        request.notifyFinish().addErrback(lambda _: None)
        return NOT_DONE_YET

    def render_POST(self, request: Any) -> bytes:
        body = request.content.read()
        if body.startswith(b"40"):
            if self.pending:
                waiting = self.pending.pop(0)
                waiting.write(b'40{"sid":"s-quiet"}')
                waiting.finish()
            else:
                self.connect_reply = True
        return b"ok"


class _HangUp(Protocol):
    """Reads the request, then closes the connection without an answer."""

    def dataReceived(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.loseConnection()


class _GarbageWebSocket(WebSocketServerProtocol):
    """Opens, then sends a handshake that is not JSON."""

    def onOpen(self) -> None:
        self.sendMessage(b"0{not json", isBinary=False)


class MisbehavingServerTests(TestCase):
    """Bad servers: the client reports them as ``connect_error`` / ``disconnect`` with a
    reason, follows its reconnection policy, and leaves nothing behind."""

    def listen(self, factory: Any) -> str:
        reactor = _reactor()
        tracking = _TrackingFactory(factory)
        port = reactor.listenTCP(0, tracking, interface="127.0.0.1")

        async def stop() -> None:
            await port.stopListening()
            live = list(tracking.live.values())
            for connection in list(tracking.live):
                abort_connection(connection)
            await within(defer.DeferredList(live), "connections closing")

        self.addCleanup(lambda: defer.Deferred.fromCoroutine(stop()))
        return f"http://127.0.0.1:{port.getHost().port}"

    def client(self, **options: Any) -> txsio.Client:
        options.setdefault("reconnection_delay", 0.05)
        options.setdefault("randomization_factor", 0)
        options.setdefault("close_timeout", 0.2)
        client = txsio.Client(timeout=WAIT, **options)
        self.addCleanup(client.disconnect)
        return client

    async def failure(self, client: txsio.Client, url: str, **options: Any) -> Any:
        return await within(client.connect(url, **options)
                            .addCallbacks(lambda _: None, lambda f: f.value), "the failure")

    def resource(self, mode: str) -> tuple[str, _Misbehaving]:
        endpoint = _Misbehaving(mode)
        root = Resource()
        root.putChild(b"socket.io", endpoint)
        return self.listen(Site(root)), endpoint

    async def test_refused(self) -> None:
        """Nothing listening: ``xhr poll error`` (or ``websocket error``)."""
        reactor = _reactor()
        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        url = f"http://127.0.0.1:{port.getHost().port}"
        await port.stopListening()
        for transports, message in ((("polling",), "xhr poll error"),
                                    (("websocket",), "websocket error")):
            error = await self.failure(self.client(), url, transports=transports)
            self.assertIsInstance(error, txsio.ConnectError)
            self.assertEqual((error.message, error.refused), (message, False))
            # The cause is in the error's text, not only in its data.
            self.assertRegex(str(error), rf"^{message}: .*refused", repr(error))

    async def test_retry_then_give_up(self) -> None:
        """``retry=True`` with ``reconnection_attempts``: each attempt fails, then
        ``reconnect_failed`` fails connect()."""
        url, endpoint = self.resource("500")
        client = self.client(reconnection_attempts=2)
        attempts: list[int] = []
        client.on("reconnect_attempt", attempts.append)
        error = await self.failure(client, url, retry=True)
        self.assertEqual(error.message, "reconnect failed")
        self.assertEqual((attempts, endpoint.gets), ([1, 2], 3))

    async def test_http_error(self) -> None:
        """Polls answered with HTTP 500: ``xhr poll error`` carrying the status."""
        url, _ = self.resource("500")
        error = await self.failure(self.client(), url)
        self.assertEqual((error.message, error.data), ("xhr poll error", 500))
        self.assertEqual(str(error), "xhr poll error: HTTP 500")

    async def test_garbage(self) -> None:
        """A poll answered with bytes that are no payload: ``parse error``."""
        url, _ = self.resource("garbage")
        error = await self.failure(self.client(), url)
        self.assertEqual(error.message, "parse error")

    async def test_hang_up(self) -> None:
        """A server that closes mid-handshake: ``xhr poll error``."""
        url = self.listen(Factory.forProtocol(_HangUp))
        error = await self.failure(self.client(), url)
        self.assertEqual(error.message, "xhr poll error")

    async def test_bad_websocket_handshake(self) -> None:
        """A WebSocket whose first frame is not a valid handshake: ``parse error``."""
        factory = WebSocketServerFactory()
        factory.protocol = _GarbageWebSocket
        url = self.listen(factory)
        error = await self.failure(self.client(), url, transports=("websocket",))
        self.assertEqual(error.message, "parse error")

    async def test_never_pings(self) -> None:
        """A server that stops pinging: ``"ping timeout"``, then a reconnection attempt."""
        url, _ = self.resource("silent")
        client = self.client()
        await within(client.connect(url, transports=("polling",)), "connect")
        self.assertEqual(client.id, "s-quiet")
        gone = next_event(client, "disconnect")
        attempt = next_event(client, "reconnect_attempt")
        self.assertEqual(await within(gone, "disconnect"), ("ping timeout",))
        self.assertEqual(await within(attempt, "reconnect attempt"), (1,))
