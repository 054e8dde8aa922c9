"""txsio.admin: the protocol of the Socket.IO Admin UI (npm ``@socket.io/admin-ui`` 0.5).

The unit tests drive the ``/admin`` namespace with :class:`txsio.testing.TestClient` on a
``Clock``; :class:`AdminUIBrowserTests` serves the npm package's built page (``ui/dist``),
opens it in headless Chromium (``tests/browser/admin.mjs``), logs in to a txsio server and
checks that the page lists its sockets and rooms.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any
from unittest import mock

import bcrypt
from twisted.internet import defer
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.static import File

import txsio
from txsio.admin import InMemoryStore, Instrumentation, instrument
from txsio.engineio.handshake import HandshakeRequest
from txsio.engineio.packet import Packet, PacketType
from txsio.engineio.session import EngineSession
from txsio.testing import MemoryTransport, TestClient, TestSocket

from .support import NODE_DIR, TESTS_DIR, run_process, serve, spawn
from .test_browser import require_browser

#: 2023-11-14T22:13:20Z: the clock's start, so that timestamps are recognisable.
START = 1_700_000_000
STAMP = "2023-11-14T22:13:20.000Z"
PASSWORD = "changeit"
#: bcrypt's cheapest cost: the tests check the protocol, not the hash's strength.
HASH = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
BASIC = {"type": "basic", "username": "admin", "password": HASH}
ALL_FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT",
                "AGGREGATED_EVENTS", "ALL_EVENTS"]


def _app(io: txsio.Server) -> None:
    """A small app: sockets join the rooms named in their auth; ``hi`` is acknowledged and
    answered with ``back``; ``shout`` is broadcast."""

    @io.on("connection")
    def connected(socket: txsio.Socket) -> None:
        rooms = socket.handshake.auth.get("rooms")
        if rooms:
            socket.join(rooms)

        @socket.on("hi")
        def hi(value: Any) -> str:
            socket.emit("back", value)
            return "ok"

        @socket.on("shout")
        def shout(text: str) -> None:
            io.emit("shouted", text)


class AdminTestCase(SynchronousTestCase):
    """A server with the app, on a Clock; helpers to connect admins and users."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.clock.advance(START)
        self.io = txsio.Server(clock=self.clock)
        _app(self.io)

    def instrument(self, **options: Any) -> Instrumentation:
        options.setdefault("auth", False)
        return instrument(self.io, **options)

    def admin(self, auth: dict[str, Any] | None = None, nsp: str = "/admin") -> TestSocket:
        return self.successResultOf(TestClient(self.io).connect(nsp, auth))

    def refused(self, auth: dict[str, Any] | None = None) -> str:
        failure = self.failureResultOf(TestClient(self.io).connect("/admin", auth),
                                       txsio.ConnectionRefusedError)
        return str(failure.value.message)

    def user(self, *rooms: str, nsp: str = "/") -> TestSocket:
        auth = {"rooms": list(rooms)} if rooms else None
        return self.successResultOf(TestClient(self.io).connect(nsp, auth))

    def server_socket(self, client: TestSocket) -> txsio.Socket:
        assert client.id is not None
        return self.io.namespaces[client.nsp].sockets[client.id]

    def since(self, admin: TestSocket, mark: int) -> list[tuple[str, tuple[Any, ...]]]:
        """The events ``admin`` received after the first ``mark`` ones."""
        return admin.received[mark:]


class OptionsTests(AdminTestCase):
    """What instrument() accepts, as Node's instrument(io, options)."""

    def test_auth_is_required(self) -> None:
        """As in Node, ``auth`` must be given (False to go without): no server is left open
        by forgetting it."""
        with self.assertRaises(TypeError):
            instrument(self.io)  # type: ignore[call-arg]

    def test_invalid_options(self) -> None:
        """An unknown auth type, a password that is not a bcrypt hash and an unknown mode are
        refused at once."""
        for auth in ({"type": "digest"}, {"type": "basic", "username": "admin",
                                           "password": "changeit"}, {"type": "basic"}, None):
            with self.assertRaises(ValueError):
                instrument(self.io, auth=auth)  # type: ignore[arg-type]
        with self.assertRaises(ValueError):
            instrument(self.io, auth=False, mode="staging")  # type: ignore[arg-type]

    def test_missing_bcrypt(self) -> None:
        """Basic authentication without the bcrypt package says how to install it."""
        with mock.patch.dict(sys.modules, {"bcrypt": None}):
            with self.assertRaises(ImportError) as raised:
                instrument(self.io, auth=BASIC)
        self.assertIn("pip install bcrypt", str(raised.exception))

    def test_custom_namespace_and_server_id(self) -> None:
        """``namespace_name`` moves the admin namespace; ``server_id`` names the server."""
        self.instrument(namespace_name="/custom", server_id="node-1")
        admin = self.admin(nsp="/custom")
        stats = admin.events("server_stats")[0][0]
        self.assertEqual(stats["serverId"], "node-1")
        self.assertNotIn("/admin", self.io.namespaces)

    def test_namespaces_view(self) -> None:
        """``io.namespaces`` is a live, read-only view: the children of a dynamic namespace,
        not the dynamic parent."""
        view = self.io.namespaces
        self.io.of(re.compile(r"/dynamic-\d+"))
        self.io.of("/chat")
        self.user(nsp="/dynamic-7")
        self.assertEqual(sorted(view), ["/", "/chat", "/dynamic-7"])
        with self.assertRaises(TypeError):
            view["/x"] = self.io.of("/x")  # type: ignore[index]


class AuthenticationTests(AdminTestCase):
    """Basic authentication against a bcrypt hash, then a session id, as the npm package."""

    def test_refuses_anonymous_and_wrong_credentials(self) -> None:
        """No credentials, a wrong password, a wrong user name or an unknown session id are
        refused with "invalid credentials"."""
        self.instrument(auth=BASIC)
        self.assertEqual(self.refused(), "invalid credentials")
        self.assertEqual(self.refused({"username": "admin", "password": "wrong"}),
                         "invalid credentials")
        self.assertEqual(self.refused({"username": "root", "password": PASSWORD}),
                         "invalid credentials")
        self.assertEqual(self.refused({"sessionId": "1234"}), "invalid credentials")
        self.assertEqual(self.refused({"username": "admin", "password": 42}),
                         "invalid credentials")
        self.assertEqual(self.refused({"username": "\ud800", "password": "\ud800\x00"}),
                         "invalid credentials")
        self.assertEqual(self.refused({"username": "admin", "password": "\ud800\x00"}),
                         "invalid credentials")

    def test_accepts_password_then_session_id(self) -> None:
        """The right password connects and gets a session id first; the id alone connects
        again (the UI's reconnection)."""
        self.instrument(auth=BASIC)
        admin = self.admin({"username": "admin", "password": PASSWORD})
        names = [name for name, _ in admin.received]
        self.assertLess(names.index("session"), names.index("config"))
        [(session_id,)] = admin.events("session")
        self.assertRegex(session_id, r"^[0-9a-f]{16}$")
        again = self.admin({"sessionId": session_id})
        self.assertTrue(again.connected)
        self.assertEqual(again.events("session"), [])

    def test_long_password(self) -> None:
        """As bcryptjs, only a password's first 72 bytes count."""
        password = "é" * 50  # 100 bytes
        hashed = bcrypt.hashpw(password.encode()[:72], bcrypt.gensalt(4)).decode()
        self.instrument(auth={"type": "basic", "username": "admin", "password": hashed})
        self.assertTrue(self.admin({"username": "admin", "password": password}).connected)

    def test_custom_store(self) -> None:
        """Session ids go to the given store, which may answer with a Deferred."""
        saved: list[str] = []

        class Store:
            def does_session_exist(self, session_id: str) -> Deferred[bool]:
                return succeed(session_id in saved)

            def save_session(self, session_id: str) -> None:
                saved.append(session_id)

        self.instrument(auth=BASIC, store=Store())
        admin = self.admin({"username": "admin", "password": PASSWORD})
        self.assertEqual(saved, [admin.events("session")[0][0]])
        self.assertTrue(self.admin({"sessionId": saved[0]}).connected)
        self.assertEqual(self.refused({"sessionId": "0" * 16}), "invalid credentials")

    def test_in_memory_store(self) -> None:
        """The default store keeps the saved ids."""
        store = InMemoryStore()
        store.save_session("abc")
        self.assertTrue(store.does_session_exist("abc"))
        self.assertFalse(store.does_session_exist("abd"))


class ConnectionTests(AdminTestCase):
    """What an admin socket gets when it connects."""

    def test_config(self) -> None:
        """``config`` lists the features as Node's: everything by default, no commands when
        read-only, no per-socket events in production mode."""
        cases: list[tuple[dict[str, Any], list[str]]] = [
            ({}, ALL_FEATURES),
            ({"read_only": True}, ["AGGREGATED_EVENTS", "ALL_EVENTS"]),
            ({"read_only": True, "mode": "production"}, ["AGGREGATED_EVENTS"]),
            ({"mode": "production"}, ALL_FEATURES[:-1]),
        ]
        for options, features in cases:
            self.setUp()
            self.instrument(**options)
            config = self.admin().events("config")
            self.assertEqual(config, [({"supportedFeatures": features},)], options)

    def test_all_sockets(self) -> None:
        """``all_sockets`` lists every socket of every namespace, the admin's own included,
        with its client, transport, rooms, data and handshake."""
        self.instrument()
        user = self.user("lobby", "games")
        self.server_socket(user).data["name"] = "ada"
        admin = self.admin()
        [(sockets,)] = admin.events("all_sockets")
        by_id = {s["id"]: s for s in sockets}
        self.assertEqual(sorted(by_id), sorted([_id(user), _id(admin)]))
        mine = by_id[user.id]
        session_id = self.server_socket(user).conn.id
        self.assertEqual(mine["clientId"], session_id[:12])
        self.assertEqual(mine["transport"], "websocket")
        self.assertEqual(mine["nsp"], "/")
        self.assertEqual(mine["rooms"], sorted([_id(user), "lobby", "games"]))
        self.assertEqual(mine["data"], {"name": "ada"})
        handshake = self.server_socket(user).handshake
        self.assertEqual(mine["handshake"], {
            "address": "127.0.0.1", "headers": {}, "query": handshake.query,
            "issued": START * 1000, "secure": False, "time": handshake.time,
            "url": handshake.url, "xdomain": False})
        self.assertEqual(by_id[admin.id]["nsp"], "/admin")
        # The admin's own key in socket.data (Node's _admin) is not shown.
        self.assertEqual(self.server_socket(user).data["_admin"],
                         {"clientId": session_id[:12], "transport": "websocket"})

    def test_order(self) -> None:
        """The admin socket gets config, then the server's statistics, then all sockets."""
        self.instrument()
        admin = self.admin()
        names = [name for name, _ in admin.received]
        self.assertEqual(names[-3:], ["config", "server_stats", "all_sockets"])


class StatsTests(AdminTestCase):
    """``server_stats`` every 2 seconds while an admin is connected."""

    def test_server_stats(self) -> None:
        """The statistics count clients, polling clients and each namespace's sockets, and
        aggregate connections, disconnections and incoming packets per second."""
        self.instrument(server_id="here")
        admin = self.admin()
        [(first,)] = admin.events("server_stats")
        self.assertEqual(first["serverId"], "here")
        self.assertEqual((first["clientsCount"], first["pollingClientsCount"]), (1, 0))
        self.assertEqual(first["namespaces"], [{"name": "/", "socketsCount": 0},
                                               {"name": "/admin", "socketsCount": 1}])
        self.assertEqual(first["aggregatedEvents"], [])
        self.assertIsInstance(first["pid"], int)
        user = TestClient(self.io)
        self.successResultOf(user.connect("/"))
        _polling_session(self.io)
        user.socket("/").emit("hi", "x" * 10)
        user.close()
        self.clock.advance(2)
        [_, (stats,)] = admin.events("server_stats")
        self.assertEqual(stats["uptime"], 2.0)
        self.assertEqual((stats["clientsCount"], stats["pollingClientsCount"]), (2, 1))
        self.assertEqual(stats["namespaces"][0], {"name": "/", "socketsCount": 1})
        counts = {(e["type"], e.get("subType")): e["count"] for e in stats["aggregatedEvents"]}
        self.assertEqual(counts[("rawConnection", None)], 2)
        self.assertEqual(counts[("rawDisconnection", "transport close")], 1)
        # The admin's CONNECT (counted once the admin watches), the user's and the polling
        # client's, and the event: 4 messages in.
        self.assertEqual(counts[("packetsIn", None)], 4)
        self.assertEqual(counts[("bytesIn", None)],
                         len("0/admin,") + 1 + 1 + len('2["hi","xxxxxxxxxx"]'))
        self.assertEqual({e["timestamp"] for e in stats["aggregatedEvents"]}, {START * 1000})
        self.clock.advance(2)
        self.assertEqual(admin.events("server_stats")[2][0]["aggregatedEvents"], [])

    def test_timer_only_while_watched(self) -> None:
        """No timer runs before an admin connects nor after the last one leaves."""
        self.instrument()
        self.assertEqual(_ticks(self.clock), 0)
        first, second = self.admin(), self.admin()
        self.assertEqual(_ticks(self.clock), 1)
        first.disconnect()
        self.assertEqual(_ticks(self.clock), 1)
        second.client.close()
        self.assertEqual(_ticks(self.clock), 0)


class DevelopmentEventTests(AdminTestCase):
    """The per-socket events of development mode (the default)."""

    def test_socket_lifecycle(self) -> None:
        """A socket's connection, rooms and disconnection reach the admin, with timestamps."""
        self.instrument()
        admin = self.admin()
        mark = len(admin.received)
        user = self.user("lobby")
        sid = user.id
        events = self.since(admin, mark)
        self.assertEqual(events[:2], [("room_joined", ("/", sid, sid, STAMP)),
                                      ("room_joined", ("/", "lobby", sid, STAMP))])
        name, (details, stamp) = events[2]
        self.assertEqual((name, details["id"], details["nsp"], stamp),
                         ("socket_connected", sid, "/", STAMP))
        self.assertEqual(details["rooms"], sorted([sid, "lobby"]))
        mark = len(admin.received)
        self.server_socket(user).leave("lobby")
        user.disconnect()
        self.assertEqual(self.since(admin, mark), [
            ("room_left", ("/", "lobby", sid, STAMP)),
            ("room_left", ("/", sid, sid, STAMP)),
            ("socket_disconnected", ("/", sid, "client namespace disconnect", STAMP)),
        ])

    def test_events_received_and_sent(self) -> None:
        """Incoming events (without their ack callback) and outgoing ones, broadcasts
        included, reach the admin; the admin's own traffic does not."""
        self.instrument()
        admin = self.admin()
        user = self.user()
        mark = len(admin.received)
        self.assertEqual(self.successResultOf(user.emit_with_ack("hi", {"n": 1})), "ok")
        user.emit("shout", "hey")
        self.assertEqual(self.since(admin, mark), [
            ("event_received", ("/", user.id, ["hi", {"n": 1}], STAMP)),
            ("event_sent", ("/", user.id, ["back", {"n": 1}], STAMP)),
            ("event_received", ("/", user.id, ["shout", "hey"], STAMP)),
            ("event_sent", ("/", user.id, ["shouted", "hey"], STAMP)),
        ])

    def test_dynamic_namespace(self) -> None:
        """Sockets of a namespace made after instrument(), a dynamic child too, are seen."""
        self.instrument()
        self.io.of(re.compile(r"/dynamic-\d+"))
        admin = self.admin()
        mark = len(admin.received)
        user = self.user(nsp="/dynamic-101")
        connected = [args for name, args in self.since(admin, mark)
                     if name == "socket_connected"]
        self.assertEqual([(d["id"], d["nsp"]) for d, _ in connected],
                         [(user.id, "/dynamic-101")])

    def test_existing_sockets(self) -> None:
        """Sockets connected before instrument() are listed, and their later events seen."""
        user = self.user("early")
        self.instrument()
        admin = self.admin()
        [(sockets,)] = admin.events("all_sockets")
        mine = next(s for s in sockets if s["id"] == user.id)
        self.assertEqual((mine["transport"], mine["rooms"]),
                         ("websocket", sorted([_id(user), "early"])))
        mark = len(admin.received)
        user.disconnect()
        self.assertEqual(self.since(admin, mark)[-1][0], "socket_disconnected")

    def test_upgrade(self) -> None:
        """A socket's upgrade from polling to WebSocket is a ``socket_updated``."""
        self.instrument()
        admin = self.admin()
        session, _ = _polling_session(self.io)
        [sid] = self.io.namespaces["/"].sockets
        [(details, _)] = admin.events("socket_connected")[-1:]
        self.assertEqual((details["id"], details["transport"]), (sid, "polling"))
        mark = len(admin.received)
        probe = MemoryTransport("websocket")
        session.begin_upgrade(probe)
        session.receive(Packet(PacketType.PING, "probe"), probe)
        session.receive(Packet(PacketType.UPGRADE), probe)
        self.assertEqual(self.since(admin, mark), [
            ("socket_updated", ({"id": sid, "nsp": "/", "transport": "websocket"},))])

    def test_data_changes(self) -> None:
        """A change of ``socket.data`` reaches the admin as ``socket_updated`` within the
        2 s of a statistics tick; values JSON cannot carry are shown as text."""
        self.instrument()
        admin = self.admin()
        user = self.user()
        self.clock.advance(2)
        self.assertEqual(admin.events("socket_updated"), [])
        data = self.server_socket(user).data
        data["score"] = [1]
        self.clock.advance(2)
        data["score"].append(2)
        data["when"] = {3}
        data["what"] = object
        self.clock.advance(2)
        self.assertEqual(admin.events("socket_updated"), [
            ({"id": user.id, "nsp": "/", "data": {"score": [1]}},),
            ({"id": user.id, "nsp": "/", "data": {"score": [1, 2], "when": [3],
                                                  "what": "<class 'object'>"}},),
        ])


class ProductionTests(AdminTestCase):
    """Production mode: statistics and counts only, as Node's."""

    def test_production_mode(self) -> None:
        """No socket list, no per-socket events; statistics still flow, and the socket.data
        of the app is left alone."""
        self.instrument(mode="production")
        admin = self.admin()
        user = self.user("lobby")
        self.successResultOf(user.emit_with_ack("hi", 1))
        user.disconnect()
        self.clock.advance(2)
        self.assertEqual([name for name, _ in admin.received],
                         ["config", "server_stats", "server_stats"])


class CommandTests(AdminTestCase):
    """The UI's commands: emit, join, leave and _disconnect."""

    def test_emit(self) -> None:
        """``emit`` reaches the sockets of a room (a socket's own id included), or the whole
        namespace; reserved event names and unknown namespaces are ignored."""
        self.instrument()
        admin = self.admin()
        ada, bob = self.user("lobby"), self.user()
        admin.emit("emit", "/", ada.id, "hello", "world", 1)
        admin.emit("emit", "/", "", "all", True)
        admin.emit("emit", "/", None, "disconnect")
        admin.emit("emit", "/nowhere", None, "lost")
        self.assertEqual(ada.received, [("hello", ("world", 1)), ("all", (True,))])
        self.assertEqual(bob.received, [("all", (True,))])
        self.assertNotIn("/nowhere", self.io.namespaces)

    def test_join_and_leave(self) -> None:
        """``join`` / ``leave`` move a socket (by its id), a room's sockets, or every socket
        of the namespace."""
        self.instrument()
        admin = self.admin()
        ada, bob = self.user("lobby"), self.user()
        admin.emit("join", "/", "vip", ada.id)
        self.assertIn("vip", self.server_socket(ada).rooms)
        self.assertNotIn("vip", self.server_socket(bob).rooms)
        admin.emit("join", "/", "everyone")
        self.assertIn("everyone", self.server_socket(bob).rooms)
        admin.emit("leave", "/", "everyone", "lobby")
        self.assertNotIn("everyone", self.server_socket(ada).rooms)
        self.assertIn("everyone", self.server_socket(bob).rooms)
        admin.emit("leave", "/", "vip", ada.id)
        self.assertEqual(self.server_socket(ada).rooms, {ada.id, "lobby"})

    def test_disconnect(self) -> None:
        """``_disconnect`` leaves the namespace (``close`` false) or closes the connection."""
        self.instrument()
        admin = self.admin()
        ada, bob = self.user(), self.user()
        admin.emit("_disconnect", "/", False, ada.id)
        self.assertEqual(ada.disconnect_reason, "io server disconnect")
        self.assertFalse(ada.client.closed)
        admin.emit("_disconnect", "/", True, bob.id)
        self.assertTrue(bob.client.closed)
        self.assertTrue(admin.connected)

    def test_read_only(self) -> None:
        """A read-only server refuses every command."""
        self.instrument(read_only=True)
        admin = self.admin()
        ada = self.user()
        admin.emit("emit", "/", None, "hello")
        admin.emit("join", "/", "vip")
        admin.emit("leave", "/", ada.id)
        admin.emit("_disconnect", "/", True)
        self.assertEqual(ada.received, [])
        self.assertEqual(self.server_socket(ada).rooms, {ada.id})
        self.assertTrue(ada.connected)


class DocsExampleTests(SynchronousTestCase):
    """The example of docs/admin.rst runs as written."""

    def test_example(self) -> None:
        """The app module of the page instruments the server it is given."""
        text = (TESTS_DIR.parent / "docs" / "admin.rst").read_text(encoding="utf-8")
        blocks = re.findall(r"\.\. code-block:: python\n\n((?:    .*\n|\n)+)", text)
        self.assertTrue(blocks)
        namespace: dict[str, Any] = {}
        exec("\n".join(line[4:] for line in blocks[0].splitlines()), namespace)
        io = txsio.Server(clock=Clock())
        namespace["setup"](io)
        client = TestClient(io)
        refused = client.connect("/admin")
        self.failureResultOf(refused, txsio.ConnectionRefusedError)
        admin = self.successResultOf(TestClient(io).connect(
            "/admin", {"username": "admin", "password": "changeit"}))
        self.assertEqual(admin.events("config")[0][0]["supportedFeatures"],
                         ["AGGREGATED_EVENTS", "ALL_EVENTS"])


def _id(client: TestSocket) -> str:
    """The id of a connected test socket."""
    assert client.id is not None
    return client.id


def _ticks(clock: Clock) -> int:
    """How many statistics timers are pending."""
    return len([call for call in clock.getDelayedCalls() if "Instrumentation._tick" in repr(call)])


def _polling_session(io: txsio.Server) -> tuple[EngineSession, MemoryTransport]:
    """A client on long-polling (in memory) connected to ``/``."""
    transport = MemoryTransport("polling")
    query = {"EIO": "4", "transport": "polling"}
    request = HandshakeRequest(method="GET", url="/socket.io/?EIO=4&transport=polling",
                               headers={}, query=query, address="127.0.0.1", secure=False)
    session = io.engine.create_session(4, transport, request)
    session.receive("0", transport)
    return session, transport


UI_DIST = NODE_DIR / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
ADMIN_SCRIPT = TESTS_DIR / "browser" / "admin.mjs"
#: How a hash is made by bcryptjs, the npm package's own bcrypt (a cheap cost: a test).
BCRYPTJS_HASH = ("const b = require('bcryptjs'); console.log(JSON.stringify("
                 "{event: 'hash', hash: b.hashSync(process.argv[1], 4)}))")


class AdminUIBrowserTests(TestCase):
    """The real Admin UI page in headless Chromium against an instrumented txsio server."""

    timeout = 90

    @defer.inlineCallbacks
    def test_ui_lists_sockets_and_rooms(self) -> Any:
        """The npm package's page logs in (a hash made by bcryptjs; a wrong password is
        refused), lists the server's sockets and rooms, sees a client that connects later
        and shows the server; screenshots go to the test's directory."""
        node = require_browser(self)
        if not (UI_DIST / "index.html").is_file():
            self.fail(f"{UI_DIST} is missing: run `npm ci` in tests/node")
        from twisted.internet import reactor

        made = yield run_process([node, "-e", BCRYPTJS_HASH, PASSWORD], 15, cwd=NODE_DIR)
        hashed = made.first("hash")["hash"]
        self.assertTrue(hashed.startswith("$2"), hashed)

        ui = serve(File(str(UI_DIST)))
        self.addCleanup(ui.stop)
        io = txsio.Server(cors_allowed_origins=[ui.url])
        _app(io)
        instrument(io, auth={"type": "basic", "username": "admin", "password": hashed},
                   server_id="txsio-browser-test")
        root = Resource()
        root.putChild(b"socket.io", io.resource())
        server = serve(root)
        self.addCleanup(server.stop)
        self.addCleanup(io.close)

        clients: list[txsio.Client] = []

        async def connect(*rooms: str) -> str:
            client = txsio.Client(reconnection=False, timeout=10)
            clients.append(client)
            await client.connect(server.url, auth={"rooms": list(rooms)})
            sid = client.socket("/").id
            assert sid is not None
            return sid

        async def disconnect_all() -> None:
            for client in clients:
                await client.disconnect()

        self.addCleanup(lambda: Deferred.fromCoroutine(disconnect_all()))
        ada = yield Deferred.fromCoroutine(connect("lobby", "games"))
        bob = yield Deferred.fromCoroutine(connect("lobby"))
        late: list[str] = []

        def on_event(event: dict[str, Any]) -> None:
            if event.get("event") == "listed" and not late:
                late.append("connecting")
                d = Deferred.fromCoroutine(connect("late"))
                d.addCallback(late.append)
                d.addErrback(lambda f: late.append(f"failed: {f.value}"))

        # Kept after the test (the screenshots are its output to look at).
        out_dir = Path(tempfile.mkdtemp(prefix="txsio-admin-ui-"))
        options = {"uiUrl": ui.url + "/", "serverUrl": server.url, "username": "admin",
                   "password": PASSWORD, "sockets": [ada, bob],
                   "rooms": {"lobby": 2, "games": 1}, "serverId": "txsio-browser-test",
                   "hostname": socket.gethostname(), "pid": os.getpid(), "clients": 4,
                   "outDir": str(out_dir), "deadline": 50000}
        browser = spawn([node, str(ADMIN_SCRIPT), json.dumps(options)], on_event=on_event,
                        cwd=NODE_DIR, reactor=reactor)
        run = yield browser.wait(60)
        if run.exit_code != 0 or run.names()[-1:] != ["done"]:
            raise AssertionError(f"the browser script failed\n{run.describe()}")
        listed = run.first("listed")
        result = run.first("result")
        self.assertEqual(result["invalid"], "Invalid credentials")

        # The Sockets page: id, address, transport; at first, then with the late client.
        self.assertEqual(sorted(row[0] for row in listed["sockets"]), sorted([ada, bob]))
        self.assertEqual(late[0], "connecting")
        self.assertEqual(len(late), 2, late)
        rows = {row[0]: row for row in result["sockets"]}
        self.assertEqual(sorted(rows), sorted([ada, bob, late[1]]))
        for row in rows.values():
            self.assertEqual(row[1:3], ["127.0.0.1", "WebSocket"], row)
        # The Rooms page: public rooms with their number of sockets.
        rooms = {row[0]: row[2] for row in listed["rooms"]}
        self.assertEqual(rooms, {"lobby": "2", "games": "1"})
        rooms = {row[0]: row[2] for row in result["rooms"]}
        self.assertEqual(rooms, {"lobby": "2", "games": "1", "late": "1"})
        # The Servers page: this server, its host, process and clients (3 users and the
        # page), healthy.
        [server_row] = result["servers"]
        self.assertEqual(server_row[:3], ["txsio-browser-test", socket.gethostname(),
                                          str(os.getpid())])
        self.assertRegex(server_row[3], r"^\d+s$")
        self.assertEqual(server_row[4:7:2], ["4", "HEALTHY"])
        for shot in result["screenshots"]:
            self.assertGreater(Path(shot).stat().st_size, 10_000, shot)
        print(f"\nadmin UI screenshots: {out_dir}")
