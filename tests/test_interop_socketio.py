"""Interop: txsio's Socket.IO server against real clients over loopback.

The peers are Node's ``socket.io-client`` 4.8 and 2.x (``tests/node/sio_client.mjs``, which
also has a raw ``ws`` client) and python-socketio's client (``tests/peers/pysio_client.py``),
each run as a subprocess printing JSON events. The server runs the test app below
(:func:`install_app`); ``TXSIO_INTEROP_SERVER=node`` runs the same tests against Node's
reference ``socket.io`` server running the same app (``tests/node/sio_reference_server.mjs``),
to check the expectations themselves. Each test asserts what the clients saw and what the
server saw (the app's :class:`~tests.support.EventLog`).

Needs ``npm ci`` in ``tests/node`` and python-socketio's client (a missing peer is an error,
not a skip).
"""

from __future__ import annotations

import json
import re
from typing import Any

from twisted.internet import defer, task
from twisted.trial.unittest import TestCase

from .support import (
    EventLog,
    ProcessResult,
    SocketIOServer,
    bytes_from_json,
    bytes_to_json,
    gather,
    require_node,
    run_node,
    run_python,
    start_socketio_server,
)

CLIENT = "sio_client.mjs"
PY_CLIENT = "pysio_client.py"

#: Heartbeat settings (seconds). A short interval lets polling clients end sooner (the
#: pending GET returns at the next ping); the timeout is roomy, as no test here is about
#: heartbeats and a loaded machine may answer late.
PING_INTERVAL = 0.5
PING_TIMEOUT = 2.0

#: What the "basic" scenarios echo: multi-byte text, a number, and binary nested in objects
#: and lists (including an empty buffer), then 2000 bytes at the top level.
PAYLOAD: list[Any] = [
    "text ünïcödé ✓ 😀",
    42,
    {
        "nested": {"buf": b"\x01\x02\x03", "n": None, "ok": True},
        "list": [bytes(range(256)), "x", {"deep": b""}],
    },
    bytes(i % 251 for i in range(2000)),
]

#: The answers the server gets when it asks a client "question" with each mode.
ANSWERS = {
    "ask-echo": {"answer": [{"bin": b"\x09\x08\x07\x00\xff"}, "second"], "count": 2},
    "ask-two": {"answer": ["a", {"n": 2}], "count": 2},
    "ask-none": {"answer": None, "count": 0},
    "ask-never": {"error": "timeout"},
}


def typed(value: Any) -> Any:
    """*value* with each leaf paired with its type name, so ``b"1" != "1"``, ``True != 1``
    and ``bytearray`` stands out; tuples compare as lists."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [typed(v) for v in value]
    return (type(value).__name__, value)


# -- the test app ---------------------------------------------------------------------------


def install_app(io: Any, log: EventLog) -> None:
    """The test app, the same as ``tests/node/sio_reference_server.mjs`` (whose header lists
    the events); what it sees goes to *log*.
    """
    import txsio

    gone: dict[tuple[str, str], defer.Deferred[None]] = {}

    def gone_deferred(nsp: str, sid: str) -> defer.Deferred[None]:
        return gone.setdefault((nsp, sid), defer.Deferred())

    def setup(socket: Any) -> None:
        nsp = socket.nsp
        name = nsp.name
        sid = socket.id
        log.add(
            {
                "event": "connection",
                "nsp": name,
                "id": sid,
                "auth": dict(socket.handshake.auth),
                "recovered": socket.recovered,
            }
        )

        def on_any(event: str, *args: Any) -> None:
            log.add(
                {"event": "client-event", "nsp": name, "id": sid, "name": event, "args": list(args)}
            )

        socket.on_any(on_any)
        socket.on("echo", lambda *args: args)

        def echo_event(*args: Any) -> str:
            socket.emit("echo", *args)
            return "sent"

        def whoami() -> dict[str, Any]:
            return {
                "nsp": name,
                "id": socket.id,
                "auth": dict(socket.handshake.auth),
                "tag": socket.handshake.query.get("tag"),
                "recovered": socket.recovered,
                "rooms": sorted(socket.rooms),
                "data": dict(socket.data),
            }

        async def ask(request: dict[str, Any]) -> dict[str, Any]:
            waiting = socket.timeout(request["timeout"]).emit_with_ack(
                request["event"], *request.get("args", [])
            )
            try:
                answer = await waiting
            except txsio.AckTimeoutError:
                result: dict[str, Any] = {"error": "timeout"}
            else:
                if isinstance(answer, tuple):
                    result = {"answer": list(answer), "count": len(answer)}
                else:
                    result = {"answer": answer, "count": 0 if answer is None else 1}
            log.add(
                {
                    "event": "answer",
                    "nsp": name,
                    "id": sid,
                    "question": request["event"],
                    "result": result,
                }
            )
            return result

        async def ask_all(request: dict[str, Any]) -> dict[str, Any]:
            try:
                answers = await nsp.timeout(request["timeout"]).emit_with_ack(request["event"])
            except txsio.AckTimeoutError as e:
                result = {"error": "timeout", "answers": sorted(getattr(e, "responses", []))}
            else:
                result = {"answers": sorted(answers)}
            log.add({"event": "answers", "nsp": name, "id": sid, "result": result})
            return result

        def join(room: str) -> list[str]:
            socket.join(room)
            return sorted(socket.rooms)

        def leave(room: str) -> list[str]:
            socket.leave(room)
            return sorted(socket.rooms)

        def to_room(room: str, event: str, *args: Any) -> bool:
            socket.to(room).emit(event, *args)
            return True

        def server_to(target: dict[str, Any], event: str, *args: Any) -> bool:
            nsp.to(target.get("to", [])).except_(target.get("except", [])).emit(event, *args)
            return True

        def broadcast(event: str, *args: Any) -> bool:
            socket.broadcast.emit(event, *args)
            return True

        def server_emit(event: str, *args: Any) -> bool:
            nsp.emit(event, *args)
            return True

        async def fetch(room: str) -> list[str]:
            sockets = await nsp.in_(room).fetch_sockets()
            return sorted(s.id for s in sockets)

        def sockets_join(room: str, other: str) -> bool:
            nsp.in_(room).sockets_join(other)
            return True

        def volatile(request: dict[str, Any]) -> None:
            for i in range(request["count"]):
                socket.volatile.emit(request["event"], i)
            socket.emit("volatile-done", request["count"])

        def disconnect_me(request: dict[str, Any] | None = None) -> None:
            socket.disconnect(bool((request or {}).get("close")))

        def kick_room(room: str) -> bool:
            nsp.in_(room).disconnect_sockets()
            return True

        async def await_gone(other: str) -> bool:
            await gone_deferred(name, other)
            return True

        def disconnected(reason: str) -> None:
            log.add({"event": "disconnect", "nsp": name, "id": sid, "reason": reason})
            waiting = gone_deferred(name, sid)
            if not waiting.called:
                waiting.callback(None)

        for event, handler in [
            ("echo-event", echo_event),
            ("whoami", whoami),
            ("ask", ask),
            ("ask-all", ask_all),
            ("join", join),
            ("leave", leave),
            ("to-room", to_room),
            ("server-to", server_to),
            ("broadcast", broadcast),
            ("server-emit", server_emit),
            ("fetch", fetch),
            ("sockets-join", sockets_join),
            ("volatile", volatile),
            ("disconnect-me", disconnect_me),
            ("kick-room", kick_room),
            ("await-gone", await_gone),
            ("disconnect", disconnected),
        ]:
            socket.on(event, handler)

    def root_middleware(socket: Any) -> None:
        auth = dict(socket.handshake.auth)
        log.add({"event": "middleware", "which": "root", "nsp": "/", "id": socket.id, "auth": auth})
        if auth.get("refuse"):
            raise txsio.ConnectionRefusedError("refused by root", data={"why": auth["refuse"]})

    def private_middleware(socket: Any) -> defer.Deferred[None]:
        auth = dict(socket.handshake.auth)
        log.add(
            {
                "event": "middleware",
                "which": "private",
                "nsp": "/private",
                "id": socket.id,
                "auth": auth,
            }
        )

        def check() -> None:
            if auth.get("token") != "secret":
                raise txsio.ConnectionRefusedError(
                    "not authorized", data={"code": 401, "reason": "bad token"}
                )
            socket.data["user"] = "alice"

        return task.deferLater(io.clock, 0.01, check)

    io.use(root_middleware)
    io.on("connection", setup)
    io.of("/chat").on("connection", setup)
    io.of(re.compile(r"^/dyn-\d+$")).on("connection", setup)
    private = io.of("/private")
    private.use(private_middleware)
    private.on("connection", setup)


# -- tests ----------------------------------------------------------------------------------


class SocketIOInteropTestCase(TestCase):
    """Starts the test app and holds the assertions the Socket.IO interop tests share."""

    #: trial's bound for one test, far above what any test here needs
    timeout = 60

    def setUp(self) -> None:
        require_node()

    async def start(self, **options: Any) -> SocketIOServer:
        """Start the test app (stopped at cleanup) with short heartbeats by default."""
        options.setdefault("ping_interval", PING_INTERVAL)
        options.setdefault("ping_timeout", PING_TIMEOUT)
        server = await start_socketio_server(install_app, **options)
        self.addCleanup(server.stop)
        return server

    def assertRan(self, result: ProcessResult) -> None:
        """The peer ran its scenario to the end (exit code 0, a "done" event)."""
        self.assertEqual(result.exit_code, 0, f"the peer failed\n{result.describe()}")
        result.first("done")

    def ack(self, result: ProcessResult, step: str, who: str | None = None) -> list[Any]:
        """The ack arguments the peer got for *step* (binary as bytes)."""
        for event in result.named("ack"):
            if event["step"] == step and (who is None or event.get("who") == who):
                args: list[Any] = bytes_from_json(event["args"])
                return args
        raise AssertionError(f"no ack for {step!r} ({who})\n{result.describe()}")

    def acks(self, result: ProcessResult, nsp: str) -> dict[str, list[Any]]:
        """The acks of one namespace (python-socketio reports which), by step."""
        return {
            e["step"]: bytes_from_json(e["args"])
            for e in result.named("ack")
            if e.get("nsp") == nsp
        }

    def received(self, result: ProcessResult, who: str, name: str) -> list[list[Any]]:
        """The arguments of each *name* event the peer's *who* got."""
        return [
            bytes_from_json(e["args"])
            for e in result.named("received")
            if e.get("who") == who and e["name"] == name
        ]

    def by_who(self, result: ProcessResult, event: str) -> dict[str, dict[str, Any]]:
        """The first *event* of each client of the peer, by its name."""
        found: dict[str, dict[str, Any]] = {}
        for e in result.named(event):
            found.setdefault(e["who"], e)
        return found

    async def assertServerReasons(
        self, server: SocketIOServer, expected: dict[tuple[str, str], str | tuple[str, ...]]
    ) -> None:
        """The server saw each socket ``(nsp, id)`` disconnect with that reason (or one of)."""
        for (nsp, sid), reason in expected.items():
            event = await server.log.first("disconnect", nsp=nsp, id=sid)
            allowed = (reason,) if isinstance(reason, str) else reason
            self.assertIn(event["reason"], allowed, f"{nsp} {sid}\n{server.log}")

    async def assertServerAsked(
        self, server: SocketIOServer, nsp: str, sid: str, steps: list[str]
    ) -> None:
        """The server's emit_with_ack calls on that socket got the expected answers."""
        expected = [ANSWERS[step] for step in steps]

        def check() -> list[Any] | None:
            seen = [e["result"] for e in server.log.where("answer", nsp=nsp, id=sid)]
            return seen if len(seen) >= len(expected) else None

        seen = await server.log.wait_for(check, f"{len(expected)} answers on {nsp} {sid}")
        self.assertEqual(typed(seen), typed(expected), f"{server.log}")

    async def assertBasic(
        self,
        server: SocketIOServer,
        result: ProcessResult,
        *,
        transport: str,
        auth: dict[str, Any],
        tag: str | None,
        recovered: bool | None = False,
    ) -> None:
        """Everything the "basic" scenario checks, on the client and on the server."""
        self.assertRan(result)
        connect = result.first("connect")
        sid = connect["id"]
        self.assertEqual(connect["recovered"], recovered)
        if transport == "upgrade":
            self.assertEqual(connect["opened"], "polling", result.describe())
            self.assertEqual(result.first("upgrade")["transport"], "websocket")
            final = "websocket"
        else:
            self.assertEqual(connect["opened"], transport, result.describe())
            self.assertEqual(connect["transport"], transport, result.describe())
            self.assertNotIn("upgrade", result.names(), result.describe())
            final = transport
        self.assertEqual(result.first("transport")["transport"], final)
        self.assertEqual(
            self.ack(result, "whoami"),
            [
                {
                    "nsp": "/",
                    "id": sid,
                    "auth": auth,
                    "tag": tag,
                    "recovered": False,
                    "rooms": [sid],
                    "data": {},
                }
            ],
            result.describe(),
        )
        self.assertEqual(typed(self.ack(result, "echo")), typed(PAYLOAD), result.describe())
        self.assertEqual(self.ack(result, "echo-event"), ["sent"])
        self.assertEqual(
            typed(self.received(result, "basic", "echo")), typed([PAYLOAD]), result.describe()
        )
        for step in ANSWERS:
            self.assertEqual(
                typed(self.ack(result, step)), typed([ANSWERS[step]]), result.describe()
            )
        self.assertEqual(result.first("disconnect")["reason"], "io client disconnect")
        # the server side
        log = server.log
        connection = await log.first("connection", nsp="/", id=sid)
        self.assertEqual(connection["auth"], auth)
        middleware = log.where("middleware", which="root", id=sid)
        self.assertEqual([m["auth"] for m in middleware], [auth], f"{log}")
        echo = await log.first("client-event", nsp="/", id=sid, name="echo")
        self.assertEqual(typed(echo["args"]), typed(PAYLOAD), f"{log}")
        await self.assertServerAsked(server, "/", sid, list(ANSWERS))
        await self.assertServerReasons(server, {("/", sid): "client namespace disconnect"})


class SocketIOClient4Tests(SocketIOInteropTestCase):
    """socket.io-client 4.8 (Engine.IO v4, Socket.IO v5)."""

    async def _basic(self, transport: str) -> None:
        server = await self.start()
        auth = {"user": "basic", "n": 1, "nested": {"ok": True}}
        transports = ["polling", "websocket"] if transport == "upgrade" else [transport]
        result = await run_node(
            CLIENT,
            "basic",
            server.url,
            {"transports": transports, "auth": auth, "tag": f"t-{transport}"},
        )
        await self.assertBasic(server, result, transport=transport, auth=auth, tag=f"t-{transport}")

    async def test_basic_polling(self) -> None:
        """On polling only: auth and query reach the server, events and acks both ways carry
        nested binary, and an unanswered emit_with_ack times out."""
        await self._basic("polling")

    async def test_basic_websocket(self) -> None:
        """On WebSocket only: the same events, acks, binary and timeout as on polling."""
        await self._basic("websocket")

    async def test_basic_upgrade(self) -> None:
        """Connecting on polling, upgrading to WebSocket, then the same events, acks, binary
        and timeout."""
        await self._basic("upgrade")

    async def test_namespaces(self) -> None:
        """One session joins "/", "/chat", a dynamic "/dyn-42" and "/private" (async middleware
        sets socket.data); unknown, badly authenticated and root-refused clients get
        connect_error with message and data."""
        server = await self.start()
        result = await run_node(CLIENT, "namespaces", server.url)
        self.assertRan(result)
        connects = self.by_who(result, "connect")
        self.assertEqual(set(connects), {"root", "chat", "dyn", "private"}, result.describe())
        expected = {
            "root": ("/", {"user": "n"}, {}),
            "chat": ("/chat", {"room": "lobby"}, {}),
            "dyn": ("/dyn-42", {}, {}),
            "private": ("/private", {"token": "secret"}, {"user": "alice"}),
        }
        for who, (nsp, auth, data) in expected.items():
            sid = connects[who]["id"]
            self.assertEqual(
                self.ack(result, "whoami", who),
                [
                    {
                        "nsp": nsp,
                        "id": sid,
                        "auth": auth,
                        "tag": None,
                        "recovered": False,
                        "rooms": [sid],
                        "data": data,
                    }
                ],
                result.describe(),
            )
            self.assertEqual(
                typed(self.ack(result, "echo", who)),
                typed([who, {"bin": who.encode()}]),
                result.describe(),
            )
        errors = self.by_who(result, "connect_error")
        self.assertEqual(
            {who: (e["nsp"], e["message"], e["data"]) for who, e in errors.items()},
            {
                "nope": ("/nope", "Invalid namespace", None),
                "private-bad": ("/private", "not authorized", {"code": 401, "reason": "bad token"}),
                "root-refused": ("/", "refused by root", {"why": "banned"}),
            },
            result.describe(),
        )
        disconnects = self.by_who(result, "disconnect")
        self.assertEqual(
            {who: disconnects[who]["reason"] for who in expected},
            dict.fromkeys(expected, "io client disconnect"),
        )
        # the server side
        log = server.log
        for who, (nsp, auth, _) in expected.items():
            connection = await log.first("connection", nsp=nsp, id=connects[who]["id"])
            self.assertEqual(connection["auth"], auth)
        await self.assertServerReasons(
            server,
            {
                (nsp, connects[who]["id"]): "client namespace disconnect"
                for who, (nsp, _, _) in expected.items()
            },
        )
        self.assertEqual(len(log.where("connection")), 4, f"{log}")
        private = log.where("middleware", which="private")
        self.assertEqual(sorted(m["auth"]["token"] for m in private), ["secret", "wrong"], f"{log}")
        self.assertEqual(len(log.where("middleware", auth={"refuse": "banned"})), 1, f"{log}")

    async def test_rooms_and_broadcasts(self) -> None:
        """Four clients: to(room) skips the sender, to().except_(), broadcast (with binary),
        fetch_sockets, sockets_join and a collective emit_with_ack reach exactly the right
        sockets."""
        server = await self.start()
        result = await run_node(CLIENT, "rooms", server.url)
        self.assertRan(result)
        got = {e["who"]: e for e in result.named("got")}
        self.assertEqual(
            {who: e["m"] for who, e in got.items()},
            {
                "A": ["3 C broadcast", "4 purple"],
                "B": ["1 A to red", "3 C broadcast", "4 purple"],
                "C": ["2 blue but not red"],
                "D": ["3 C broadcast"],
            },
            result.describe(),
        )
        ids = {who: e["id"] for who, e in got.items()}
        broadcasts = [a for a in self.received(result, "A", "m") if a[0] == "3 C broadcast"]
        self.assertEqual(typed(broadcasts), typed([["3 C broadcast", b"\x03\x03\x03"]]))
        self.assertEqual(self.ack(result, "fetch"), [sorted([ids["A"], ids["B"]])])
        self.assertEqual(self.ack(result, "ask-all"), [{"answers": ["A", "B", "C", "D"]}])
        # the server side
        answers = await server.log.first("answers", id=ids["D"])
        self.assertEqual(answers["result"], {"answers": ["A", "B", "C", "D"]})
        await self.assertServerReasons(
            server, {("/", sid): "client namespace disconnect" for sid in ids.values()}
        )

    async def test_volatile(self) -> None:
        """A burst of volatile emits is cut down to what the transport could take at once
        (polling) and never reordered; a normal emit after it always arrives."""
        server = await self.start()
        count = 20
        results = await gather(
            *(
                run_node(CLIENT, "volatile", server.url, {"transports": t, "count": count})
                for t in (["polling"], ["websocket"])
            )
        )
        for result in results:
            self.assertRan(result)
            report = result.first("volatile")
            received = report["received"]
            self.assertEqual(received, sorted(set(received)), result.describe())
            self.assertTrue(set(received) <= set(range(count)), result.describe())
            self.assertEqual(self.received(result, "volatile", "volatile-done"), [[count]])
            if report["transport"] == "polling":
                # one GET was pending: a burst cannot all fit in it
                self.assertLess(len(received), count, result.describe())
            else:
                # an idle WebSocket is writable
                self.assertGreaterEqual(len(received), 1, result.describe())

    async def test_disconnect_reasons(self) -> None:
        """Client namespace disconnect, server disconnect() and disconnect(close=True), a
        forced transport close and disconnect_sockets() on a room: both sides see Node's
        reasons."""
        server = await self.start()
        result = await run_node(CLIENT, "disconnects", server.url)
        self.assertRan(result)
        connects = self.by_who(result, "connect")
        disconnects = self.by_who(result, "disconnect")
        expected = {
            # who: (namespace, client's reason, server's reason)
            "X/chat": ("/chat", "io client disconnect", "client namespace disconnect"),
            "X": ("/", "io server disconnect", "server namespace disconnect"),
            "Z": ("/", "io server disconnect", "server namespace disconnect"),
            "Y": ("/", "forced close", "transport close"),
            "V": ("/", "io server disconnect", "server namespace disconnect"),
            "W": ("/", "io server disconnect", "server namespace disconnect"),
            "K": ("/", "io client disconnect", "client namespace disconnect"),
        }
        self.assertEqual(
            {who: disconnects[who]["reason"] for who in disconnects},
            {who: client for who, (_, client, _) in expected.items()},
            result.describe(),
        )
        # "/" stayed connected after the client left "/chat" on the same session
        self.assertEqual(self.ack(result, "whoami", "X")[0]["id"], connects["X"]["id"])
        await self.assertServerReasons(
            server,
            {(nsp, connects[who]["id"]): reason for who, (nsp, _, reason) in expected.items()},
        )

    async def test_malformed_packets(self) -> None:
        """A broken Socket.IO packet closes the connection with "forced close", a broken
        Engine.IO packet with "parse error", as Node's socket.io 4.8 (the reference); the
        server keeps serving."""
        server = await self.start()
        results = await gather(
            run_node(CLIENT, "malformed", server.url),
            run_node(CLIENT, "malformed", server.url, {"frame": "9x"}),
        )
        reasons = []
        for result in results:
            self.assertRan(result)
            frames = [e["text"] for e in result.named("frame")]
            self.assertTrue(frames[0].startswith("0{"), result.describe())
            self.assertTrue(frames[1].startswith('40{"sid":'), result.describe())
            self.assertNotIn("41", frames, result.describe())
            result.first("closed")
            sid = json.loads(frames[1][2:])["sid"]
            event = await server.log.first("disconnect", nsp="/", id=sid)
            reasons.append(event["reason"])
        # Node's reasons (issue 15 made txsio's the same as the reference's).
        self.assertEqual(reasons, ["forced close", "parse error"], f"{server.log}")

    async def test_connect_timeout(self) -> None:
        """A client that opens a session but joins no namespace is closed after
        connect_timeout."""
        server = await self.start(connect_timeout=0.5)
        result = await run_node(CLIENT, "idle", server.url)
        self.assertRan(result)
        frames = [e["text"] for e in result.named("frame")]
        self.assertTrue(frames[0].startswith("0{"), result.describe())
        self.assertEqual(set(frames[1:]) - {"2"}, set(), result.describe())
        # An upper bound only: the client's clock starts when the open packet arrives, after
        # the server's timer did, so a lower bound on it is a flaky test on a loaded machine.
        # The exact timing is pinned by ConnectTimeoutTests on a Clock.
        closed = result.first("closed")["afterOpen"]
        self.assertLess(closed, 1500, result.describe())
        self.assertEqual(server.log.events, [])

    async def test_connection_state_recovery(self) -> None:
        """After a forced transport close, a reconnecting client gets its id and rooms back,
        recovered is true, the missed room and direct broadcasts arrive, and middlewares are
        skipped."""
        server = await self.start(
            connection_state_recovery={"max_disconnection_duration": 120, "skip_middlewares": True}
        )
        result = await run_node(CLIENT, "recovery", server.url)
        self.assertRan(result)
        connects = [e for e in result.named("connect") if e["who"] == "A"]
        self.assertEqual(
            [(e["id"], e["recovered"]) for e in connects],
            [(connects[0]["id"], False), (connects[0]["id"], True)],
            result.describe(),
        )
        sid = connects[0]["id"]
        first_gone = next(e for e in result.named("disconnect") if e["who"] == "A")
        self.assertEqual(first_gone["reason"], "forced close")
        news = bytes_from_json(result.first("news")["args"])
        # each broadcast ends with its offset, a string the client keeps for recovery
        for args in news:
            self.assertIsInstance(args[-1], str, result.describe())
        self.assertEqual(
            typed([args[:-1] for args in news]),
            typed([["before"], ["missed 1", b"\x01\x02"], ["missed 2"]]),
            result.describe(),
        )
        whoami = self.ack(result, "whoami", "A")[0]
        self.assertEqual(
            (whoami["id"], whoami["recovered"], whoami["rooms"]),
            (sid, True, sorted([sid, "news"])),
        )
        self.assertFalse(self.by_who(result, "connect")["C"]["recovered"])
        # the server side
        log = server.log
        await self.assertServerReasons(server, {("/", sid): "transport close"})
        second = await log.wait_for(
            lambda: (lambda c: c[1] if len(c) > 1 else None)(log.where("connection", id=sid)),
            "the recovered connection",
        )
        self.assertTrue(second["recovered"], f"{log}")
        self.assertEqual(len(log.where("middleware", id=sid)), 1, f"{log}")


class SocketIOClient2Tests(SocketIOInteropTestCase):
    """socket.io-client 2.x (Engine.IO v3, Socket.IO v4) against allow_eio3=True."""

    async def test_basic(self) -> None:
        """On polling only, WebSocket only and with an upgrade: connect, query, events and
        acks with nested binary both ways, and an emit_with_ack timeout."""
        server = await self.start(allow_eio3=True)
        variants = {
            "polling": ["polling"],
            "websocket": ["websocket"],
            "upgrade": ["polling", "websocket"],
        }
        results = await gather(
            *(
                run_node(
                    CLIENT,
                    "basic",
                    server.url,
                    {"client": "v2", "tag": f"v2-{name}", "transports": transports},
                )
                for name, transports in variants.items()
            )
        )
        for result, transport in zip(results, variants, strict=True):
            await self.assertBasic(
                server,
                result,
                transport=transport,
                auth={},
                tag=f"v2-{transport}",
                recovered=None,
            )

    async def test_namespaces(self) -> None:
        """ "/", "/chat" and a dynamic "/dyn-7" on one session; an unknown namespace and a
        refusing middleware give the 2.x client an error event."""
        server = await self.start(allow_eio3=True)
        result = await run_node(CLIENT, "namespaces", server.url, {"client": "v2"})
        self.assertRan(result)
        connects = self.by_who(result, "connect")
        expected = {"root": "/", "chat": "/chat", "dyn": "/dyn-7"}
        self.assertEqual(set(connects), set(expected), result.describe())
        for who, nsp in expected.items():
            whoami = self.ack(result, "whoami", who)[0]
            self.assertEqual((whoami["nsp"], whoami["id"]), (nsp, connects[who]["id"]))
            self.assertEqual(
                typed(self.ack(result, "echo", who)), typed([who, {"bin": who.encode()}])
            )
        errors = self.by_who(result, "connect_error")
        # Node sends the message as an object for an unknown namespace, and a middleware
        # error's data (or else its message) for a refusal; a plain string is the spec's form.
        self.assertIn(
            errors["nope"]["message"], ("Invalid namespace", {"message": "Invalid namespace"})
        )
        self.assertIn(
            errors["private-bad"]["message"],
            ("not authorized", {"code": 401, "reason": "bad token"}),
        )
        await self.assertServerReasons(
            server,
            {
                (nsp, connects[who]["id"]): "client namespace disconnect"
                for who, nsp in expected.items()
            },
        )


class PythonSocketIOClientTests(SocketIOInteropTestCase):
    """python-socketio's synchronous client."""

    async def test_events_acks_namespaces_binary(self) -> None:
        """On polling and with an upgrade, python-socketio joins "/", "/chat" and "/dyn-7" and
        exchanges events and acks with nested binary both ways."""
        server = await self.start()
        auth = {"user": "py"}
        payload = bytes_to_json(PAYLOAD)
        results = await gather(
            run_python(
                PY_CLIENT,
                "basic",
                server.url,
                {"transports": ["polling"], "auth": auth, "payload": payload},
            ),
            run_python(PY_CLIENT, "basic", server.url, {"auth": auth, "payload": payload}),
        )
        for result, transport in zip(results, ("polling", "websocket"), strict=True):
            self.assertRan(result)
            self.assertEqual(result.first("transport")["transport"], transport)
            connects = {e["nsp"]: e["id"] for e in result.named("connect")}
            self.assertEqual(set(connects), {"/", "/chat", "/dyn-7"}, result.describe())
            for nsp, sid in connects.items():
                acks = self.acks(result, nsp)
                self.assertEqual(
                    acks["whoami"],
                    [
                        {
                            "nsp": nsp,
                            "id": sid,
                            "auth": auth,
                            "tag": None,
                            "recovered": False,
                            "rooms": [sid],
                            "data": {},
                        }
                    ],
                    result.describe(),
                )
                self.assertEqual(typed(acks["echo"]), typed(PAYLOAD), result.describe())
                echoes = [
                    bytes_from_json(e["args"])
                    for e in result.named("received")
                    if e["nsp"] == nsp and e["name"] == "echo"
                ]
                self.assertEqual(typed(echoes), typed([PAYLOAD]), result.describe())
                # python-socketio acks with the handler's return value, so it always answers
                self.assertEqual(
                    typed(acks["ask-echo"]),
                    typed([{"answer": {"bin": b"\x09\x08\x07\x00\xff"}, "count": 1}]),
                )
                self.assertEqual(typed(acks["ask-two"]), typed([ANSWERS["ask-two"]]))
                self.assertEqual(typed(acks["ask-none"]), typed([ANSWERS["ask-none"]]))
                echo = await server.log.first("client-event", nsp=nsp, id=sid, name="echo")
                self.assertEqual(typed(echo["args"]), typed(PAYLOAD), f"{server.log}")
            # python-socketio's disconnect() queues its DISCONNECT and close packets, then may
            # close the WebSocket or (polling) end its write loop before they are sent, so the
            # server sees them, a transport close, or nothing until the ping timeout (against
            # Node's server too).
            await self.assertServerReasons(
                server,
                {
                    (nsp, sid): ("client namespace disconnect", "transport close", "ping timeout")
                    for nsp, sid in connects.items()
                },
            )

    async def test_refused(self) -> None:
        """A refusing async middleware reaches python-socketio's connect_error with message and
        data."""
        server = await self.start()
        result = await run_python(PY_CLIENT, "refused", server.url)
        self.assertRan(result)
        self.assertEqual(
            result.first("connect_error")["data"],
            {"message": "not authorized", "data": {"code": 401, "reason": "bad token"}},
        )
        middleware = await server.log.first("middleware", which="private")
        self.assertEqual(middleware["auth"], {"token": "wrong"})
        self.assertEqual(server.log.where("connection"), [])
