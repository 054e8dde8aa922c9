"""The Socket.IO server in memory: namespaces, middlewares, events, acks, rooms, broadcasts,
disconnections, connection state recovery, EIO3 and bad input — on a Clock, with no sockets.

Each client is a :class:`~tests.sio_memory.MemoryClient`: an Engine.IO session on a fake
transport, fed Socket.IO packets, its output decoded with :class:`txsio.protocol.Decoder`.
Node's ``socket.io`` 4.x is the reference for the behaviour checked here.
"""

from __future__ import annotations

import builtins
import gc
import json
import re
from typing import Any

from twisted.internet.defer import Deferred, fail
from twisted.internet.task import Clock
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio import (
    AckTimeoutError,
    ConnectionRefusedError,
    DisconnectedError,
    Namespace,
    Server,
    Socket,
)
from txsio.engineio.session import CloseReason
from txsio.namespace import ParentNamespace
from txsio.protocol import (
    BINARY_EVENT,
    CONNECT,
    CONNECT_ERROR,
    EVENT,
    PacketType,
    SocketIOParseError,
)

from .sio_memory import MemoryClient
from .typed import recorded


def texts(events: Any, level: LogLevel | None = None) -> list[str]:
    """The formatted text of captured log events (at ``level`` if given)."""
    return [formatEvent(e) for e in events if level is None or e.get("log_level") is level]


class ServerTestCase(SynchronousTestCase):
    """A server on a Clock, its main namespace's sockets recorded in ``self.sockets``."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.io = self.server()

    def server(self, **options: Any) -> Server:
        """A new server on ``self.clock``; its main namespace's sockets go to ``self.sockets``."""
        io = Server(clock=self.clock, **options)
        self.sockets: list[Socket] = []
        io.on("connection", self.sockets.append)
        return io

    def client(self, io: Server | None = None, **kwargs: Any) -> MemoryClient:
        return MemoryClient(io or self.io, **kwargs)

    def joined(self, nsp: str = "/", auth: dict[str, Any] | None = None,
               io: Server | None = None) -> tuple[MemoryClient, Socket]:
        """A client connected to ``nsp``, and its server-side socket."""
        io = io or self.io
        client = self.client(io)
        sid = client.connect_ok(nsp, auth)["sid"]
        return client, io.of(nsp).sockets[sid]

    def reasons(self, socket: Socket) -> list[str]:
        """The reasons ``socket``'s ``disconnect`` event fires with, as they come."""
        seen: list[str] = []
        socket.on("disconnect", seen.append)
        return seen


# -- connecting ------------------------------------------------------------------------------


class ConnectTests(ServerTestCase):
    """CONNECT to the main and custom namespaces, auth, unknown namespaces."""

    def test_connect_main_namespace(self) -> None:
        """CONNECT to "/" is answered ``0{"sid":...}`` with a socket id that is not the
        Engine.IO sid, and the connection handler gets the socket."""
        client = self.client()
        client.connect()
        [reply] = client.raw()
        assert isinstance(reply, str)
        self.assertTrue(reply.startswith('0{"sid":'), reply)
        sid = json.loads(reply[1:])["sid"]
        self.assertNotEqual(sid, client.session.id)
        [socket] = self.sockets
        self.assertEqual(socket.id, sid)
        self.assertTrue(socket.connected)
        self.assertIs(socket.nsp, self.io.sockets)
        self.assertIs(self.io.sockets.sockets[sid], socket)
        self.assertFalse(socket.recovered)

    def test_connect_custom_namespace(self) -> None:
        """CONNECT to "/chat" is answered ``0/chat,{"sid":...}`` with its own socket id."""
        chat: list[Socket] = []
        self.io.of("/chat").on("connection", chat.append)
        client = self.client()
        main_sid = client.connect_ok()["sid"]
        client.connect("/chat")
        [reply] = client.raw()
        assert isinstance(reply, str)
        self.assertTrue(reply.startswith('0/chat,{"sid":'), reply)
        sid = json.loads(reply[len("0/chat,"):])["sid"]
        self.assertNotIn(sid, (main_sid, client.session.id))
        self.assertEqual([s.id for s in chat], [sid])
        self.assertEqual(chat[0].nsp.name, "/chat")
        self.assertEqual(len(self.sockets), 1)

    def test_flow_without_coroutines_when_nothing_waits(self) -> None:
        """A CONNECT to a namespace that exists, with no middleware and nothing to restore,
        runs its flow at once without coroutines; a middleware (its own or its parent's),
        a session to restore or a namespace still to find take the full flow, with the same
        outcome."""
        from txsio.namespace import Namespace

        flows: list[str] = []
        add = Namespace._add

        def counted(nsp: Namespace, conn: Any, auth: dict[str, Any]) -> Any:
            flows.append(nsp.name)
            return add(nsp, conn, auth)

        self.patch(Namespace, "_add", counted)
        self.client().connect_ok()
        self.assertEqual((flows, len(self.sockets)), ([], 1))
        self.io.of("/guarded").use(lambda socket: None)
        self.client().connect_ok("/guarded")
        self.assertEqual(flows, ["/guarded"])
        self.io.of(re.compile(r"^/dyn-\d+$")).use(lambda socket: None)
        self.client().connect_ok("/dyn-1")  # found by its parent: the full flow
        self.client().connect_ok("/dyn-1")  # exists now; the parent's middleware still runs
        self.assertEqual(flows, ["/guarded", "/dyn-1", "/dyn-1"])
        io = self.server(connection_state_recovery=True)
        self.patch(Namespace, "_add", counted)
        self.client(io).connect_ok("/", {"pid": "unknown", "offset": "0-0"})
        self.assertEqual(flows[-1], "/")
        self.assertEqual(len(self.sockets), 1)

    def test_failure_in_flow_logged(self) -> None:
        """An error of the flow run at once is logged, as the full flow's is, and the
        connection may connect again."""
        from txsio.namespace import Namespace

        def broken(nsp: Namespace, conn: Any, auth: dict[str, Any]) -> None:
            raise RuntimeError("broken")

        self.patch(Namespace, "_connect_now", broken)
        client = self.client()
        with capturedLogs() as events:
            client.connect()
        self.assertEqual(client.received(), [])
        self.assertTrue(any("connecting" in text and "failed" in text
                            for text in texts(events)), texts(events))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIsNone(self.io.connections[client.session.id]._connecting)

    def test_custom_namespace_without_main(self) -> None:
        """A client may join a custom namespace without joining "/" first."""
        self.io.of("/chat")
        client = self.client()
        client.connect_ok("/chat")
        self.assertEqual(self.sockets, [])
        self.assertEqual(list(self.io.connections[client.session.id].sockets), ["/chat"])

    def test_of_adds_the_slash(self) -> None:
        """``io.of("chat")`` is the namespace "/chat", the same object each time."""
        self.assertIs(self.io.of("chat"), self.io.of("/chat"))
        self.assertEqual(self.io.of("chat").name, "/chat")
        self.assertIsInstance(self.io.of("/chat"), Namespace)

    def test_auth_on_handshake(self) -> None:
        """The CONNECT payload is ``socket.handshake.auth``; the request fills the rest."""
        client = MemoryClient(self.io, headers={"user-agent": "ua", "host": "h"},
                              query={"x": "1"}, address="10.0.0.1")
        client.connect_ok("/", {"token": "abc", "n": 1})
        [socket] = self.sockets
        handshake = socket.handshake
        self.assertEqual(handshake.auth, {"token": "abc", "n": 1})
        self.assertEqual(handshake.headers["user-agent"], "ua")
        self.assertEqual(handshake.query["x"], "1")
        self.assertEqual(handshake.address, "10.0.0.1")
        self.assertFalse(handshake.secure)
        self.assertEqual(handshake.issued, 0)

    def test_auth_defaults_to_empty(self) -> None:
        """Without a CONNECT payload the auth is an empty dict."""
        self.joined()
        self.assertEqual(self.sockets[0].handshake.auth, {})

    def test_unknown_namespace(self) -> None:
        """CONNECT to a namespace that does not exist is refused with CONNECT_ERROR
        ``{"message":"Invalid namespace"}``; the connection stays open."""
        client = self.client()
        client.connect("/nope")
        self.assertEqual(client.raw(), ['4/nope,{"message":"Invalid namespace"}'])
        self.assertFalse(client.closed)
        client.connect_ok()

    def test_connect_twice(self) -> None:
        """A second CONNECT to a namespace already joined closes the connection, as Node's
        socket.io 4.8 does (the reference here): "forced close" on a WebSocket."""
        client, socket = self.joined()
        reasons = self.reasons(socket)
        client.connect()
        self.assertEqual(client.raw(), [])
        self.assertEqual(self.sockets, [socket])
        self.assertTrue(client.closed)
        self.assertEqual(reasons, ["forced close"])

    def test_connection_handler_error(self) -> None:
        """An exception in a connection handler is logged and the socket stays connected."""

        @self.io.on("connection")
        def broken(socket: Socket) -> None:
            raise RuntimeError("oops")

        with capturedLogs() as events:
            client, socket = self.joined()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertTrue(any("connection" in t for t in texts(events)))
        self.assertTrue(socket.connected)
        self.assertFalse(client.closed)

    def test_async_connection_handler(self) -> None:
        """An ``async def`` connection handler runs, and its failure is logged."""
        gate: Deferred[str] = Deferred()
        seen: list[str] = []

        @self.io.on("connection")
        async def connected(socket: Socket) -> None:
            seen.append("started")
            seen.append(await gate)
            raise RuntimeError("after await")

        self.joined()
        self.assertEqual(seen, ["started"])
        gate.callback("resumed")
        self.assertEqual(seen, ["started", "resumed"])
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_connect_alias(self) -> None:
        """``on("connect")`` is the same event as ``on("connection")``."""
        seen: list[Socket] = []
        self.io.on("connect", seen.append)
        self.io.of("/chat").on("connect", seen.append)
        client = self.client()
        client.connect_ok()
        client.connect_ok("/chat")
        self.assertEqual([s.nsp.name for s in seen], ["/", "/chat"])


class DynamicNamespaceTests(ServerTestCase):
    """Namespaces matched by a regex or a callable."""

    def test_regex(self) -> None:
        """A regex parent creates a child for each matching name; others are refused."""
        parent = self.io.of(re.compile(r"/dyn-\d+"))
        seen: list[Socket] = []
        parent.on("connection", seen.append)
        client = self.client()
        client.connect_ok("/dyn-1")
        [socket] = seen
        self.assertEqual(socket.nsp.name, "/dyn-1")
        self.assertIs(self.io.of("/dyn-1"), socket.nsp)
        client.connect("/dyn-x")
        self.assertEqual(client.raw(), ['4/dyn-x,{"message":"Invalid namespace"}'])
        # Node's behaviour is the reference: its regex is tested as JavaScript's
        # RegExp.test, unanchored, so "/dyn-1/more" matches /dyn-\d+/ (anchor it with ^ and
        # $ to refuse it).  This asserted a full match before txsio followed Node.
        client.connect("/dyn-1/more")
        self.assertEqual(client.received()[0].type, CONNECT)

    def test_new_namespace_event(self) -> None:
        """``io.on("new_namespace")`` sees each namespace made after the server: named ones
        and the children of dynamic ones, once each."""
        made: list[str] = []
        self.io.on("new_namespace", lambda nsp: made.append(nsp.name))
        self.io.of("/chat")
        self.io.of("/chat")
        self.io.of(re.compile(r"/dyn-\d+"))
        self.client().connect_ok("/dyn-7")
        self.assertEqual(made, ["/chat", "/dyn-7"])

    def test_empty_children_cleaned_up(self) -> None:
        """With ``cleanup_empty_child_namespaces``, a dynamic child goes (adapter closed) when
        its last socket leaves, and comes back for the next client; without it, it stays."""
        closed: list[str] = []

        class RecordingAdapter(txsio.Adapter):
            def close(self) -> None:
                closed.append(self.nsp.name)

        for cleanup in (True, False):
            io = self.server(cleanup_empty_child_namespaces=cleanup, adapter=RecordingAdapter)
            parent = io.of(re.compile(r"/dyn-\d+"))
            assert isinstance(parent, ParentNamespace)
            first, second = self.client(io), self.client(io)
            first.connect_ok("/dyn-1")
            second.connect_ok("/dyn-1")
            first.disconnect("/dyn-1")
            self.assertIn("/dyn-1", io._nsps)
            second.disconnect("/dyn-1")
            self.assertEqual("/dyn-1" not in io._nsps, cleanup)
            self.assertEqual(len(parent.children), 0 if cleanup else 1)
            self.client(io).connect_ok("/dyn-1")
            self.assertIn("/dyn-1", io._nsps)
        self.assertEqual(closed, ["/dyn-1"])

    def test_callable(self) -> None:
        """A callable parent gets the name and the auth and decides."""
        calls: list[tuple[str, dict[str, Any]]] = []

        def matcher(name: str, auth: dict[str, Any]) -> bool:
            calls.append((name, auth))
            return bool(auth.get("ok"))

        seen: list[Socket] = []
        self.io.of(matcher).on("connection", seen.append)
        client = self.client()
        client.connect("/room", {"ok": False})
        self.assertEqual(client.raw(), ['4/room,{"message":"Invalid namespace"}'])
        client.connect_ok("/room", {"ok": True})
        self.assertEqual(calls, [("/room", {"ok": False}), ("/room", {"ok": True})])
        self.assertEqual([s.nsp.name for s in seen], ["/room"])

    def test_callable_returning_deferred(self) -> None:
        """A callable may answer with a Deferred; the CONNECT reply waits for it."""
        pending: list[Deferred[bool]] = []

        def matcher(name: str, auth: dict[str, Any]) -> Deferred[bool]:
            d: Deferred[bool] = Deferred()
            pending.append(d)
            return d

        self.io.of(matcher)
        client = self.client()
        client.connect("/later")
        self.assertEqual(client.raw(), [])
        pending[0].callback(True)
        [reply] = client.received()
        self.assertEqual((reply.type, reply.nsp), (CONNECT, "/later"))
        client.connect("/never")
        pending[1].callback(False)
        self.assertEqual(client.received()[0].type, CONNECT_ERROR)

    def test_callable_raising(self) -> None:
        """A callable that raises is logged and counts as no match."""

        def matcher(name: str, auth: dict[str, Any]) -> bool:
            raise ValueError("bad matcher")

        self.io.of(matcher)
        client = self.client()
        client.connect("/x")
        self.assertEqual(client.received()[0].type, CONNECT_ERROR)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)
        self.assertFalse(client.closed)

    def test_child_reused(self) -> None:
        """A second client connecting to the same dynamic name joins the same child."""
        parent = self.io.of(re.compile(r"/d\d"))
        seen: list[Socket] = []
        parent.on("connection", seen.append)
        self.client().connect_ok("/d1")
        self.client().connect_ok("/d1")
        self.assertIs(seen[0].nsp, seen[1].nsp)
        self.assertEqual(len(seen[0].nsp.sockets), 2)

    def test_parent_middleware_applies_to_children(self) -> None:
        """The parent's middlewares run for its children, even those added after a child."""
        parent = self.io.of(re.compile(r"/d\d"))
        order: list[str] = []
        parent.use(lambda s: order.append("first " + s.nsp.name))
        self.client().connect_ok("/d1")

        def refuse(socket: Socket) -> None:
            order.append("second " + socket.nsp.name)
            raise ConnectionRefusedError("no")

        parent.use(refuse)
        client = self.client()
        client.connect("/d1")
        self.assertEqual(client.raw(), ['4/d1,{"message":"no"}'])
        self.assertEqual(order, ["first /d1", "first /d1", "second /d1"])

    def test_child_handlers_stay_with_the_child(self) -> None:
        """A child's own middleware and handler apply to it alone, after the parent's."""
        parent = self.io.of(re.compile(r"/d\d"))
        order: list[str] = []
        parent.on("connection", lambda s: order.append("parent " + s.nsp.name))
        self.client().connect_ok("/d1")
        self.client().connect_ok("/d2")
        d1 = self.io.of("/d1")
        d1.on("connection", lambda s: order.append("child " + s.nsp.name))
        d1.use(lambda s: order.append("child middleware"))
        order.clear()
        self.client().connect_ok("/d2")
        self.assertEqual(order, ["parent /d2"])
        order.clear()
        self.client().connect_ok("/d1")
        self.assertEqual(order, ["child middleware", "parent /d1", "child /d1"])
        self.assertFalse(parent.has_listeners("never"))

    def test_parent_emit_reaches_children(self) -> None:
        """``io.of(regex).emit`` reaches the sockets of every child, each in its namespace."""
        parent = self.io.of(re.compile(r"/d\d"))
        a = self.client()
        a.connect_ok("/d1")
        b = self.client()
        b.connect_ok("/d2")
        other = self.client()
        other.connect_ok("/")
        parent.emit("hello", 1)
        self.assertEqual(a.raw(), ['2/d1,["hello",1]'])
        self.assertEqual(b.raw(), ['2/d2,["hello",1]'])
        self.assertEqual(other.raw(), [])

    def test_parent_to_room_and_fetch(self) -> None:
        """A room broadcast and ``fetch_sockets`` on the parent cover every child."""
        parent = self.io.of(re.compile(r"/d\d"))
        seen: list[Socket] = []
        parent.on("connection", seen.append)
        a = self.client()
        a.connect_ok("/d1")
        b = self.client()
        b.connect_ok("/d2")
        seen[1].join("r")
        parent.to("r").emit("x")
        self.assertEqual(a.raw(), [])
        self.assertEqual(b.raw(), ['2/d2,["x"]'])
        sockets = self.successResultOf(parent.fetch_sockets())
        self.assertEqual(set(sockets), set(seen))

    def test_static_namespace_wins(self) -> None:
        """A namespace created by name is used before any dynamic parent is asked."""
        asked: list[str] = []
        self.io.of(lambda name, auth: recorded(asked, name, True))
        self.io.of("/static")
        self.client().connect_ok("/static")
        self.assertEqual(asked, [])


class MiddlewareTests(ServerTestCase):
    """``io.use`` / ``nsp.use``."""

    def test_middlewares_run_in_order_before_connection(self) -> None:
        """Middlewares run in order with the socket (auth visible), then ``connection``."""
        order: list[str] = []
        self.io.use(lambda s: order.append(f"one {s.handshake.auth}"))
        self.io.use(lambda s: order.append("two"))
        self.io.on("connection", lambda s: order.append("connection"))
        self.client().connect_ok("/", {"k": 1})
        self.assertEqual(order, ["one {'k': 1}", "two", "connection"])

    def test_namespace_middleware_is_per_namespace(self) -> None:
        """``nsp.use`` applies to that namespace only."""
        seen: list[str] = []
        chat = self.io.of("/chat")
        chat.use(lambda s: seen.append(s.nsp.name))
        client = self.client()
        client.connect_ok("/")
        client.connect_ok("/chat")
        self.assertEqual(seen, ["/chat"])

    def test_deferred_middleware(self) -> None:
        """A middleware returning a Deferred holds the CONNECT reply until it fires."""
        gate: Deferred[None] = Deferred()
        after: list[str] = []
        self.io.use(lambda s: gate)
        self.io.use(lambda s: after.append("second"))
        client = self.client()
        client.connect()
        self.assertEqual((client.raw(), after, self.sockets), ([], [], []))
        gate.callback(None)
        self.assertEqual(after, ["second"])
        self.assertEqual(client.received()[0].type, CONNECT)
        self.assertEqual(len(self.sockets), 1)

    def test_coroutine_middleware(self) -> None:
        """An ``async def`` middleware may await a Deferred."""
        gate: Deferred[str] = Deferred()

        async def middleware(socket: Socket) -> None:
            socket.data["user"] = await gate

        self.io.use(middleware)
        client = self.client()
        client.connect()
        self.assertEqual(client.raw(), [])
        gate.callback("alice")
        self.assertEqual(client.received()[0].type, CONNECT)
        self.assertEqual(self.sockets[0].data, {"user": "alice"})

    def test_refused_with_data(self) -> None:
        """``ConnectionRefusedError("msg", data=...)`` gives ``4{"message":"msg","data":...}``,
        no connection event, and the later middlewares do not run."""
        later: list[Socket] = []

        def refuse(socket: Socket) -> None:
            raise ConnectionRefusedError("not authorized", data={"content": "retry later"})

        self.io.use(refuse)
        self.io.use(later.append)
        client = self.client()
        client.connect()
        self.assertEqual(client.raw(),
                         ['4{"message":"not authorized","data":{"content":"retry later"}}'])
        self.assertEqual((later, self.sockets, self.io.sockets.sockets), ([], [], {}))
        self.assertFalse(client.closed)

    def test_refused_without_data(self) -> None:
        """Without data the CONNECT_ERROR payload has the message only."""
        self.io.of("/chat").use(lambda s: fail(ConnectionRefusedError("go away")))
        client = self.client()
        client.connect("/chat")
        self.assertEqual(client.raw(), ['4/chat,{"message":"go away"}'])

    def test_refused_by_failed_deferred(self) -> None:
        """A Deferred failing with ConnectionRefusedError refuses the connection."""
        gate: Deferred[None] = Deferred()
        self.io.use(lambda s: gate)
        client = self.client()
        client.connect()
        gate.errback(ConnectionRefusedError("late no", data=[1]))
        self.assertEqual(client.raw(), ['4{"message":"late no","data":[1]}'])

    def test_raising_middleware(self) -> None:
        """Any other exception refuses with CONNECT_ERROR carrying its text, and is logged."""
        later: list[Socket] = []

        def broken(socket: Socket) -> None:
            raise KeyError("missing")

        self.io.use(broken)
        self.io.use(later.append)
        with capturedLogs() as events:
            client = self.client()
            client.connect()
        [reply] = client.received()
        self.assertEqual(reply.type, CONNECT_ERROR)
        self.assertIn("missing", reply.data["message"])
        self.assertEqual(later, [])
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)
        self.assertTrue(any("middleware" in t for t in texts(events)))
        self.assertFalse(client.closed)

    def test_refused_socket_leaves_rooms(self) -> None:
        """Rooms a middleware joined are left when the connection is refused."""

        def join_then_refuse(socket: Socket) -> None:
            socket.join("vip")
            raise ConnectionRefusedError("no")

        self.io.use(join_then_refuse)
        client = self.client()
        client.connect()
        self.assertEqual(client.received()[0].type, CONNECT_ERROR)
        self.assertEqual(self.io.sockets.adapter.rooms, {})
        self.assertEqual(self.io.sockets.adapter.sids, {})

    def test_retry_after_refusal(self) -> None:
        """A refused client may CONNECT again and be accepted."""
        answers = [ConnectionRefusedError("first no"), None]

        def middleware(socket: Socket) -> None:
            answer = answers.pop(0)
            if answer is not None:
                raise answer

        self.io.use(middleware)
        client = self.client()
        client.connect()
        self.assertEqual(client.received()[0].type, CONNECT_ERROR)
        client.connect_ok()
        self.assertEqual(len(self.sockets), 1)

    def test_client_gone_during_middleware(self) -> None:
        """A client that closes while a middleware is pending never gets a socket."""
        gate: Deferred[None] = Deferred()
        self.io.use(lambda s: gate)
        client = self.client()
        client.connect()
        client.close_engine()
        gate.callback(None)
        self.assertEqual((self.sockets, self.io.sockets.sockets), ([], {}))


# -- events and acknowledgements ---------------------------------------------------------------


class IncomingEventTests(ServerTestCase):
    """Events from the client, and the acknowledgements the server sends back."""

    def setUp(self) -> None:
        super().setUp()
        self.client_, self.socket = self.joined()

    def test_event_arguments(self) -> None:
        """A handler gets the event's arguments; without an ack id nothing is sent back."""
        seen: list[tuple[Any, ...]] = []
        self.socket.on("chat", lambda *args: seen.append(args))
        self.client_.emit("chat", "hi", {"n": 1}, [1, 2])
        self.assertEqual(seen, [("hi", {"n": 1}, [1, 2])])
        self.assertEqual(self.client_.raw(), [])

    def test_decorator(self) -> None:
        """``@socket.on(event)`` registers the decorated function."""

        @self.socket.on("ev")
        def handler(x: int) -> int:
            return x + 1

        self.client_.emit("ev", 1, ack_id=0)
        self.assertEqual(self.client_.raw(), ["30[2]"])

    def test_ack_plain_value(self) -> None:
        """A plain return value is sent as the single ack argument: ``3<id>[value]``."""
        self.socket.on("ferret", lambda name, word: f"{name} says {word}")
        self.client_.emit("ferret", "tobi", "woot", ack_id=7)
        self.assertEqual(self.client_.raw(), ['37["tobi says woot"]'])

    def test_ack_tuple(self) -> None:
        """A tuple is sent as several ack arguments."""
        self.socket.on("multi", lambda: ("a", 2, None))
        self.client_.emit("multi", ack_id=1)
        self.assertEqual(self.client_.raw(), ['31["a",2,null]'])

    def test_ack_none(self) -> None:
        """``None`` is an ack with no arguments."""
        self.socket.on("nothing", lambda: None)
        self.client_.emit("nothing", ack_id=2)
        self.assertEqual(self.client_.raw(), ["32[]"])

    def test_ack_list_is_one_argument(self) -> None:
        """A list is one argument, not several."""
        self.socket.on("list", lambda: [1, 2])
        self.client_.emit("list", ack_id=3)
        self.assertEqual(self.client_.raw(), ["33[[1,2]]"])

    def test_ack_deferred(self) -> None:
        """A Deferred's result is the ack, sent when it fires."""
        later: Deferred[str] = Deferred()
        self.socket.on("slow", lambda: later)
        self.client_.emit("slow", ack_id=4)
        self.assertEqual(self.client_.raw(), [])
        later.callback("done")
        self.assertEqual(self.client_.raw(), ['34["done"]'])

    def test_ack_coroutine(self) -> None:
        """An ``async def`` handler's result is the ack, sent when it returns."""
        gate: Deferred[int] = Deferred()

        async def slow(x: int) -> tuple[int, int]:
            y = await gate
            return x, y

        self.socket.on("slow", slow)
        self.client_.emit("slow", 1, ack_id=5)
        self.assertEqual(self.client_.raw(), [])
        gate.callback(2)
        self.assertEqual(self.client_.raw(), ["35[1,2]"])

    def test_ack_in_namespace(self) -> None:
        """The ack of an event in "/chat" is sent in "/chat"."""
        self.io.of("/chat").on("connection",
                               lambda s: s.on("q", lambda: "a"))
        self.client_.connect_ok("/chat")
        self.client_.emit("q", nsp="/chat", ack_id=9)
        self.assertEqual(self.client_.raw(), ['3/chat,9["a"]'])

    def test_no_handler_no_ack(self) -> None:
        """An event nobody handles gets no ack."""
        self.client_.emit("unhandled", ack_id=1)
        self.assertEqual(self.client_.raw(), [])

    def test_only_first_handler_acks(self) -> None:
        """With several handlers, every one runs and the first one's result is the ack."""
        seen: list[str] = []
        self.socket.on("e", lambda: recorded(seen, "one", "first"))
        self.socket.on("e", lambda: recorded(seen, "two", "second"))
        self.client_.emit("e", ack_id=1)
        self.assertEqual(seen, ["one", "two"])
        self.assertEqual(self.client_.raw(), ['31["first"]'])

    def test_off(self) -> None:
        """``off`` removes a handler, or all of an event's handlers."""
        seen: list[int] = []
        one = self.socket.on("e", lambda x: seen.append(x))
        self.socket.on("e", lambda x: seen.append(-x))
        self.socket.off("e", one)
        self.client_.emit("e", 1)
        self.socket.off("e")
        self.client_.emit("e", 2)
        self.assertEqual(seen, [-1])

    def test_handler_error_logged(self) -> None:
        """An exception in a handler is logged with the event name; the connection stays up,
        no ack is sent, and later events are handled."""

        def broken(x: int) -> int:
            raise ZeroDivisionError("nope")

        self.socket.on("boom", broken)
        self.socket.on("ok", lambda: "fine")
        with capturedLogs() as events:
            self.client_.emit("boom", 1, ack_id=1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(any("'boom'" in t for t in texts(events, LogLevel.critical)),
                        texts(events))
        self.assertEqual(self.client_.raw(), [])
        self.assertTrue(self.socket.connected)
        self.assertFalse(self.client_.closed)
        self.client_.emit("ok", ack_id=2)
        self.assertEqual(self.client_.raw(), ['32["fine"]'])

    def test_ack_not_json_logged(self) -> None:
        """An ack value JSON cannot carry is logged with the event name; nothing is sent."""
        self.socket.on("bad", lambda: {1, 2})
        with capturedLogs() as events:
            self.client_.emit("bad", ack_id=1)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
        self.assertTrue(any("'bad'" in t for t in texts(events)), texts(events))
        self.assertEqual(self.client_.raw(), [])
        self.assertTrue(self.socket.connected)

    def test_failed_deferred_logged(self) -> None:
        """A handler's failing Deferred (or coroutine) is logged with the event name."""

        async def broken() -> None:
            raise LookupError("gone")

        self.socket.on("later", broken)
        with capturedLogs() as events:
            self.client_.emit("later", ack_id=3)
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)
        self.assertTrue(any("'later'" in t for t in texts(events)))
        self.assertEqual(self.client_.raw(), [])
        self.assertTrue(self.socket.connected)

    def test_on_any(self) -> None:
        """``on_any`` handlers get every event's name and arguments, before the handlers."""
        seen: list[tuple[Any, ...]] = []
        self.socket.on_any(lambda *args: seen.append(("any", *args)))
        self.socket.on("a", lambda x: seen.append(("a", x)))
        self.client_.emit("a", 1)
        self.client_.emit("b", 2, 3)
        self.assertEqual(seen, [("any", "a", 1), ("a", 1), ("any", "b", 2, 3)])
        self.socket.off_any()
        self.client_.emit("c")
        self.assertEqual(len(seen), 3)

    def test_failing_async_catch_all_logged(self) -> None:
        """A catch-all coroutine that fails is logged with the event name (no "Unhandled
        error in Deferred"), and the event's own handler still answers the ack."""

        async def broken(event: str, *args: Any) -> None:
            raise LookupError("catch-all gone")

        self.socket.on_any(broken)
        self.socket.on("e", lambda: "handled")
        with capturedLogs() as events:
            self.client_.emit("e", ack_id=4)
            gc.collect()  # an unhandled failing Deferred would be reported here
        self.assertEqual(len(self.flushLoggedErrors(LookupError)), 1)
        self.assertTrue(any("'e'" in t for t in texts(events, LogLevel.critical)),
                        texts(events))
        self.assertEqual(self.client_.raw(), ['34["handled"]'])

    def test_catch_all_before_middleware(self) -> None:
        """As Node: catch-alls see an incoming event before the socket's middlewares, so they
        see an event a middleware refuses too."""
        seen: list[Any] = []

        def refuse(packet: list[Any]) -> None:
            seen.append(("middleware", packet[0]))
            raise PermissionError("no")

        self.socket.use(refuse)
        self.socket.on("error", lambda e: None)
        self.socket.on_any(lambda event, *args: seen.append(("any", event, *args)))
        self.socket.on("e", lambda x: seen.append(("handler", x)))
        self.client_.emit("e", 1)
        self.assertEqual(seen, [("any", "e", 1), ("middleware", "e")])

    def test_catch_all_family(self) -> None:
        """``prepend_any`` runs first, ``listeners_any`` is a copy in calling order, and
        ``off_any`` removes one catch-all or all of them."""
        seen: list[str] = []

        def last(*args: Any) -> None:
            seen.append("last")

        def first(*args: Any) -> None:
            seen.append("first")

        self.socket.on_any(last)
        self.socket.prepend_any(first)
        self.assertEqual(self.socket.listeners_any(), [first, last])
        self.socket.listeners_any().clear()  # a copy
        self.client_.emit("e")
        self.assertEqual(seen, ["first", "last"])
        self.socket.off_any(first)
        self.assertEqual(self.socket.listeners_any(), [last])
        self.socket.off_any()
        self.assertEqual(self.socket.listeners_any(), [])

    def test_message_event(self) -> None:
        """The client's ``send`` is the ``message`` event."""
        seen: list[Any] = []
        self.socket.on("message", seen.append)
        self.client_.emit("message", "hello")
        self.assertEqual(seen, ["hello"])

    def test_numeric_event_name(self) -> None:
        """A numeric event name (Node accepts one) is not dispatched and harms nothing."""
        self.client_.send_raw("2[1,2]")
        self.assertFalse(self.client_.closed)
        self.assertTrue(self.socket.connected)

    def test_socket_middleware(self) -> None:
        """``socket.use`` runs before the handlers; raising drops the event and emits
        ``error`` on the socket."""
        seen: list[Any] = []
        errors: list[Exception] = []

        def middleware(packet: list[Any]) -> None:
            if packet[0] == "blocked":
                raise PermissionError("blocked")

        self.socket.use(middleware)
        self.socket.on("error", errors.append)
        self.socket.on("ok", lambda: recorded(seen, "ok", "acked"))
        self.socket.on("blocked", lambda: seen.append("blocked"))
        self.client_.emit("ok", ack_id=1)
        self.client_.emit("blocked", ack_id=2)
        self.assertEqual(seen, ["ok"])
        self.assertEqual([type(e) for e in errors], [PermissionError])
        self.assertEqual(self.client_.raw(), ['31["acked"]'])


class OutgoingEventTests(ServerTestCase):
    """Events to the client, and the acknowledgements it sends back."""

    def setUp(self) -> None:
        super().setUp()
        self.client_, self.socket = self.joined()

    def test_emit(self) -> None:
        """``socket.emit`` writes ``2[event,...args]``."""
        self.socket.emit("news", {"hello": "world"}, 1, None, "é")
        self.assertEqual(self.client_.raw(), ['2["news",{"hello":"world"},1,null,"é"]'])

    def test_send(self) -> None:
        """``socket.send`` is the ``message`` event."""
        self.socket.send("a", 1)
        self.assertEqual(self.client_.raw(), ['2["message","a",1]'])

    def test_emit_in_namespace(self) -> None:
        """An emit on a "/chat" socket carries the namespace."""
        self.io.of("/chat")
        sid = self.client_.connect_ok("/chat")["sid"]
        self.io.of("/chat").sockets[sid].emit("x")
        self.assertEqual(self.client_.raw(), ['2/chat,["x"]'])

    def test_emit_reserved(self) -> None:
        """Emitting a reserved event name raises ValueError (and emit_with_ack fails)."""
        for name in ("connect", "connect_error", "disconnect", "disconnecting",
                     "newListener", "removeListener"):
            self.assertRaises(ValueError, self.socket.emit, name)
            self.failureResultOf(self.socket.emit_with_ack(name), ValueError)
            self.assertRaises(ValueError, self.io.emit, name)
        self.assertEqual(self.client_.raw(), [])

    def test_emit_with_ack_single(self) -> None:
        """The client's single ack argument is the Deferred's result."""
        d = self.socket.emit_with_ack("question", 42)
        [packet] = self.client_.received()
        self.assertEqual((packet.type, packet.data), (EVENT, ["question", 42]))
        assert packet.id is not None
        self.assertNoResult(d)
        self.client_.ack(packet.id, "answer")
        self.assertEqual(self.successResultOf(d), "answer")

    def test_emit_with_ack_several_and_none(self) -> None:
        """Several ack arguments give a tuple, none give ``None``."""
        d1 = self.socket.emit_with_ack("q1")
        d2 = self.socket.emit_with_ack("q2")
        p1, p2 = self.client_.received()
        self.assertNotEqual(p1.id, p2.id)
        assert p1.id is not None and p2.id is not None
        self.client_.ack(p2.id)
        self.client_.ack(p1.id, 1, [2], {"3": 3})
        self.assertEqual(self.successResultOf(d1), (1, [2], {"3": 3}))
        self.assertIsNone(self.successResultOf(d2))

    def test_ack_only_once(self) -> None:
        """A second ACK with the same id is ignored."""
        d = self.socket.emit_with_ack("q")
        [packet] = self.client_.received()
        assert packet.id is not None
        self.client_.ack(packet.id, 1)
        self.client_.ack(packet.id, 2)
        self.assertEqual(self.successResultOf(d), 1)
        self.assertFalse(self.client_.closed)

    def test_timeout(self) -> None:
        """``timeout(s).emit_with_ack`` fails with AckTimeoutError at exactly ``s`` seconds,
        and a late ack is ignored."""
        d = self.socket.timeout(5).emit_with_ack("q")
        [packet] = self.client_.received()
        assert packet.id is not None
        self.clock.advance(4.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        self.failureResultOf(d, AckTimeoutError)
        self.client_.ack(packet.id, "late")
        self.assertFalse(self.client_.closed)

    def test_timeout_answered_in_time(self) -> None:
        """An ack before the timeout fires the Deferred and cancels the timer."""
        d = self.socket.timeout(5).emit_with_ack("q")
        [packet] = self.client_.received()
        assert packet.id is not None
        self.client_.ack(packet.id, "ok")
        self.assertEqual(self.successResultOf(d), "ok")
        self.assertEqual([c for c in self.clock.getDelayedCalls()
                          if c.getTime() == 5], [])

    def test_cancel(self) -> None:
        """Cancelling the Deferred forgets the ack; a late ack is ignored."""
        d = self.socket.timeout(5).emit_with_ack("q")
        [packet] = self.client_.received()
        assert packet.id is not None
        d.cancel()
        self.failureResultOf(d)
        self.client_.ack(packet.id, "late")
        self.clock.advance(10)
        self.assertFalse(self.client_.closed)

    def test_pending_acks_fail_on_disconnect(self) -> None:
        """Pending acks fail with DisconnectedError carrying the reason."""
        d1 = self.socket.emit_with_ack("q")
        d2 = self.socket.timeout(30).emit_with_ack("q")
        self.client_.disconnect()
        for d in (d1, d2):
            failure = self.failureResultOf(d, DisconnectedError)
            self.assertEqual(failure.value.reason, "client namespace disconnect")
        self.assertEqual(self.clock.getDelayedCalls()[0].getTime(), 25)  # only the ping

    def test_emit_with_ack_when_disconnected(self) -> None:
        """``emit_with_ack`` on a disconnected socket fails at once."""
        self.socket.disconnect()
        self.failureResultOf(self.socket.emit_with_ack("q"), DisconnectedError)

    def test_emit_when_disconnected(self) -> None:
        """``emit`` on a disconnected socket sends nothing."""
        self.socket.disconnect()
        self.client_.raw()
        self.socket.emit("x")
        self.assertEqual(self.client_.raw(), [])

    def test_ack_for_unknown_id(self) -> None:
        """An ACK for an id the server never sent is ignored."""
        with capturedLogs():
            self.client_.send_raw('3999["x"]')
            self.client_.send_raw("3[]")
        self.assertFalse(self.client_.closed)
        self.assertTrue(self.socket.connected)

    def test_volatile_socket(self) -> None:
        """``socket.volatile.emit`` is dropped while the transport is not writable; a normal
        emit is queued and delivered later."""
        self.client_.transport.writable = False
        self.socket.volatile.emit("dropped")
        self.socket.emit("kept")
        self.client_.transport.writable = True
        self.client_.session.flush()
        self.assertEqual(self.client_.raw(), ['2["kept"]'])
        self.socket.volatile.emit("sent")
        self.assertEqual(self.client_.raw(), ['2["sent"]'])

    def test_volatile_dropped_before_encoding(self) -> None:
        """A volatile packet for a client that is not ready is dropped (and counted) before
        it is encoded: not even data JSON cannot carry is looked at."""
        self.client_.transport.writable = False
        self.socket.volatile.emit("dropped", object())
        self.assertEqual(self.io.stats.volatile_dropped, 1)
        self.client_.transport.writable = True
        self.assertRaises(TypeError, self.socket.volatile.emit, "sent", object())


class BinaryTests(ServerTestCase):
    """Binary attachments both ways."""

    def setUp(self) -> None:
        super().setUp()
        self.client_, self.socket = self.joined()

    def test_emit_binary(self) -> None:
        """Nested bytes are sent as BINARY_EVENT with placeholders and attachments in order."""
        self.socket.emit("file", {"name": "a", "data": b"\x00\x01"}, [b"\xff", "x"])
        raw = self.client_.raw()
        self.assertEqual(raw, [
            '52-["file",{"name":"a","data":{"_placeholder":true,"num":0}},'
            '[{"_placeholder":true,"num":1},"x"]]',
            b"\x00\x01", b"\xff",
        ])

    def test_emit_binary_decoded(self) -> None:
        """The client decodes the attachments back in place."""
        self.socket.emit("file", b"abc")
        [packet] = self.client_.received()
        self.assertEqual((packet.type, packet.data), (BINARY_EVENT, ["file", b"abc"]))

    def test_incoming_binary(self) -> None:
        """Incoming attachments are reassembled before the handler runs."""
        seen: list[Any] = []
        self.socket.on("upload", lambda *args: seen.append(args))
        self.client_.send_raw('52-["upload",{"a":{"_placeholder":true,"num":1}},'
                              '{"_placeholder":true,"num":0}]')
        self.client_.send_raw(b"first")
        self.assertEqual(seen, [])
        self.client_.send_raw(b"second")
        self.assertEqual(seen, [({"a": b"second"}, b"first")])

    def test_binary_ack_both_ways(self) -> None:
        """A handler returning bytes sends BINARY_ACK; a BINARY_ACK answers emit_with_ack."""
        self.socket.on("echo", lambda data: data)
        self.client_.emit("echo", b"\x01\x02", ack_id=3)
        self.assertEqual(self.client_.raw(),
                         ['61-3[{"_placeholder":true,"num":0}]', b"\x01\x02"])
        d = self.socket.emit_with_ack("give")
        [packet] = self.client_.received()
        assert packet.id is not None
        self.client_.ack(packet.id, b"bytes", "text")
        self.assertEqual(self.successResultOf(d), (b"bytes", "text"))

    def test_binary_broadcast(self) -> None:
        """A binary broadcast reaches every client with its attachments."""
        other, _ = self.joined()
        self.io.emit("b", b"\x00")
        for client in (self.client_, other):
            self.assertEqual(client.raw(), ['51-["b",{"_placeholder":true,"num":0}]', b"\x00"])


# -- rooms and broadcasts ------------------------------------------------------------------------


class RoomTests(ServerTestCase):
    """Rooms, and broadcasts to them."""

    def setUp(self) -> None:
        super().setUp()
        # a in r1; b in r1 and r2; c in r2
        self.a, self.sa = self.joined()
        self.b, self.sb = self.joined()
        self.c, self.sc = self.joined()
        self.sa.join("r1")
        self.sb.join(["r1", "r2"])
        self.sc.join("r2")

    def got(self) -> list[str]:
        """Which of a, b, c received something (each at most once)."""
        names = []
        for name, client in (("a", self.a), ("b", self.b), ("c", self.c)):
            raw = client.raw()
            self.assertLessEqual(len(raw), 1, raw)
            if raw:
                names.append(name)
        return names

    def test_adapter_room_events(self) -> None:
        """The adapter emits create-room, join-room, leave-room and delete-room as Node's
        does (only for real changes)."""
        seen: list[tuple[Any, ...]] = []
        adapter = self.io.sockets.adapter
        for event in ("create-room", "join-room", "leave-room", "delete-room"):
            adapter.on(event, lambda *args, event=event: seen.append((event, *args)))
        self.sa.join(["r1", "new"])  # already in r1: no event for it
        self.sa.leave("new")
        self.sa.leave("new")
        self.sb.leave("r1")
        self.assertEqual(seen, [
            ("create-room", "new"), ("join-room", "new", self.sa.id),
            ("leave-room", "new", self.sa.id), ("delete-room", "new"),
            ("leave-room", "r1", self.sb.id)])
        seen.clear()
        _, socket = self.joined()
        self.assertEqual(seen, [("create-room", socket.id), ("join-room", socket.id, socket.id)])

    def test_room_names_are_strings(self) -> None:
        """Joining, leaving or selecting a room that is not a string raises a TypeError that
        says what a room is and what was given (not "'int' object is not iterable")."""
        for call in (lambda: self.sa.join(42),  # type: ignore[arg-type]
                     lambda: self.sa.join(["ok", 7]),  # type: ignore[list-item]
                     lambda: self.sa.leave(42),  # type: ignore[arg-type]
                     lambda: self.io.to(42),  # type: ignore[arg-type]
                     lambda: self.io.except_(b"r1")):  # type: ignore[arg-type]
            error = self.assertRaises(TypeError, call)
            self.assertRegex(str(error), r"^a room (name )?is a string")
        self.assertEqual(self.sa.rooms, {self.sa.id, "r1"})

    def test_rooms(self) -> None:
        """A socket is in the room of its own id; join and leave change ``rooms``, which is a
        copy."""
        self.assertEqual(self.sa.rooms, {self.sa.id, "r1"})
        self.assertEqual(self.sb.rooms, {self.sb.id, "r1", "r2"})
        self.sb.leave("r1")
        self.sb.leave("never-joined")
        self.assertEqual(self.sb.rooms, {self.sb.id, "r2"})
        rooms = self.sa.rooms
        rooms.add("fake")
        self.assertEqual(self.sa.rooms, {self.sa.id, "r1"})
        self.assertEqual(self.successResultOf(self.io.sockets.adapter.all_rooms()),
                         {self.sa.id, self.sb.id, self.sc.id, "r1", "r2"})

    def test_rooms_emptied_on_disconnect(self) -> None:
        """A disconnected socket is in no room, and empty rooms disappear."""
        self.sc.disconnect()
        self.assertEqual(self.sc.rooms, set())
        self.assertNotIn(self.sc.id, self.io.sockets.adapter.rooms)
        self.assertEqual(self.io.sockets.adapter.rooms["r2"], {self.sb.id})
        self.sb.disconnect()
        self.assertNotIn("r2", self.io.sockets.adapter.rooms)

    def test_emit_all(self) -> None:
        """``io.emit`` reaches every socket of "/", once."""
        self.io.emit("x")
        self.assertEqual(self.got(), ["a", "b", "c"])

    def test_to(self) -> None:
        """``to(room)`` reaches the room's sockets."""
        self.io.to("r1").emit("x", 1)
        self.assertEqual(self.a.raw(), ['2["x",1]'])
        self.assertEqual(self.b.raw(), ['2["x",1]'])
        self.assertEqual(self.c.raw(), [])

    def test_to_several_rooms_once(self) -> None:
        """Several rooms (chained or a list) reach each socket once."""
        self.io.to("r1").to("r2").emit("x")
        self.assertEqual(self.got(), ["a", "b", "c"])
        self.io.to(["r1", "r2"]).emit("x")
        self.assertEqual(self.got(), ["a", "b", "c"])
        self.io.in_("r2").in_("nobody").emit("x")
        self.assertEqual(self.got(), ["b", "c"])

    def test_except(self) -> None:
        """``except_`` leaves out the room's sockets, alone or after ``to``."""
        self.io.except_("r2").emit("x")
        self.assertEqual(self.got(), ["a"])
        self.io.to("r1").except_("r2").emit("x")
        self.assertEqual(self.got(), ["a"])
        self.io.to("r2").except_(self.sb.id).emit("x")
        self.assertEqual(self.got(), ["c"])
        self.io.except_(["r1", "r2"]).emit("x")
        self.assertEqual(self.got(), [])

    def test_to_socket_id(self) -> None:
        """A socket id is a room: ``io.to(sid)`` reaches that socket."""
        self.io.to(self.sc.id).emit("private")
        self.assertEqual(self.c.raw(), ['2["private"]'])
        self.assertEqual(self.got(), [])

    def test_operators_immutable(self) -> None:
        """A modifier returns a new operator; the first one is unchanged."""
        op = self.io.to("r1")
        op.except_("r2")
        op.emit("x")
        self.assertEqual(self.got(), ["a", "b"])

    def test_socket_broadcast(self) -> None:
        """``socket.broadcast.emit`` reaches every other socket of the namespace."""
        self.sa.broadcast.emit("x")
        self.assertEqual(self.got(), ["b", "c"])

    def test_socket_to_excludes_sender(self) -> None:
        """``socket.to(room)`` leaves out the sender even when it is in the room."""
        self.sb.to("r1").emit("x")
        self.assertEqual(self.got(), ["a"])
        self.sb.to("r2").emit("x")
        self.assertEqual(self.got(), ["c"])
        self.sa.in_("r2").emit("x")
        self.assertEqual(self.got(), ["b", "c"])
        self.sa.except_("r2").emit("x")
        self.assertEqual(self.got(), [])

    def test_namespaces_separate(self) -> None:
        """Rooms and broadcasts of "/chat" do not touch "/"."""
        self.io.of("/chat")
        chat_sid = self.a.connect_ok("/chat")["sid"]
        self.io.of("/chat").sockets[chat_sid].join("r2")
        self.io.of("/chat").to("r2").emit("x")
        self.assertEqual(self.a.raw(), ['2/chat,["x"]'])
        self.assertEqual(self.got(), [])
        self.io.to("r2").emit("y")
        self.assertEqual(self.got(), ["b", "c"])

    def test_volatile_broadcast(self) -> None:
        """A volatile broadcast skips clients whose transport is not writable."""
        self.b.transport.writable = False
        self.io.volatile.emit("v")
        self.io.emit("kept")
        self.b.transport.writable = True
        self.b.session.flush()
        self.assertEqual(self.a.raw(), ['2["v"]', '2["kept"]'])
        self.assertEqual(self.b.raw(), ['2["kept"]'])
        self.assertEqual(self.c.raw(), ['2["v"]', '2["kept"]'])
        self.io.to("r2").volatile.emit("v2")
        self.assertEqual(self.got(), ["b", "c"])

    def test_local(self) -> None:
        """``local`` broadcasts reach this node's sockets (all of them, in memory)."""
        self.io.local.to("r1").emit("x")
        self.assertEqual(self.got(), ["a", "b"])

    def test_broadcast_send(self) -> None:
        """``send`` on the server and on operators is the ``message`` event."""
        self.io.send("hi")
        self.assertEqual(self.a.raw(), ['2["message","hi"]'])
        self.got()
        self.io.to("r2").send("yo")
        self.assertEqual(self.c.raw(), ['2["message","yo"]'])

    def test_broadcast_with_ack(self) -> None:
        """``timeout(s).emit_with_ack`` collects every recipient's answer."""
        d = self.io.to("r1").timeout(5).emit_with_ack("q", 1)
        [pa] = self.a.received()
        [pb] = self.b.received()
        self.assertEqual(self.c.received(), [])
        self.assertEqual(pa.data, ["q", 1])
        self.assertEqual(pa.id, pb.id)
        assert pa.id is not None
        self.b.ack(pa.id, "from b")
        self.assertNoResult(d)
        self.a.ack(pa.id, "from a", 2)
        self.assertEqual(self.successResultOf(d), ["from b", ("from a", 2)])
        self.assertEqual([c for c in self.clock.getDelayedCalls() if c.getTime() == 5], [])

    def test_broadcast_with_ack_timeout(self) -> None:
        """On a partial answer the Deferred fails with AckTimeoutError at ``s`` seconds,
        ``.responses`` holding what arrived."""
        d = self.io.timeout(2).emit_with_ack("q")
        ack_id = self.a.received()[0].id
        assert ack_id is not None
        self.a.ack(ack_id, "a")
        self.c.ack(ack_id)
        self.clock.advance(1.999)
        self.assertNoResult(d)
        self.clock.advance(0.001)
        failure = self.failureResultOf(d, AckTimeoutError)
        self.assertEqual(failure.value.responses, ["a", None])
        self.b.ack(ack_id, "late")
        self.assertFalse(self.b.closed)

    def test_outgoing_catch_alls(self) -> None:
        """``on_any_outgoing`` sees what is sent to its socket: its own emits (with ack too)
        and the broadcasts that reach it, not those that do not; ``prepend_any_outgoing`` runs
        first; ``off_any_outgoing`` removes."""
        seen: list[tuple[Any, ...]] = []

        def watch(*args: Any) -> None:
            seen.append(args)

        self.sa.on_any_outgoing(watch)
        self.sa.prepend_any_outgoing(lambda *args: seen.append(("first", *args)))
        self.assertEqual(len(self.sa.listeners_any_outgoing()), 2)
        self.sa.emit("direct", 1)
        self.sa.emit_with_ack("question")
        self.io.to("r1").emit("room", 2)
        self.io.to("r2").emit("elsewhere")  # a is not in r2
        self.io.to("r1").timeout(5).emit_with_ack("poll")
        self.assertEqual(seen, [
            ("first", "direct", 1), ("direct", 1), ("first", "question"), ("question",),
            ("first", "room", 2), ("room", 2), ("first", "poll"), ("poll",)])
        self.sa.off_any_outgoing()
        self.sa.emit("quiet")
        self.assertEqual(len(seen), 8)

    def test_broadcast_acks_forgotten(self) -> None:
        """Every broadcast ack a socket was registered for goes when the broadcast times out
        or completes: sockets that never answer keep nothing, and no timer is left."""
        waits = [self.io.timeout(1).emit_with_ack("q") for _ in range(50)]
        for socket in (self.sa, self.sb, self.sc):
            self.assertEqual(len(socket._acks), 50)
        self.clock.advance(1)
        for d in waits:
            self.failureResultOf(d, AckTimeoutError)
        for socket in (self.sa, self.sb, self.sc):
            self.assertEqual(len(socket._acks), 0)
        # Only the sessions' heartbeat timers are left.
        self.assertEqual([c for c in self.clock.getDelayedCalls()
                          if c.getTime() <= self.clock.seconds()], [])

    def test_broadcast_with_ack_no_recipient(self) -> None:
        """With no recipient the Deferred fires at once with an empty list."""
        d = self.io.to("empty").timeout(5).emit_with_ack("q")
        self.assertEqual(self.successResultOf(d), [])

    def test_broadcast_with_ack_needs_timeout(self) -> None:
        """``emit_with_ack`` on a broadcast without ``timeout`` fails with ValueError."""
        self.failureResultOf(self.io.sockets.emit_with_ack("q"), ValueError)
        self.failureResultOf(self.io.to("r1").emit_with_ack("q"), ValueError)
        self.assertEqual(self.got(), [])

    def test_socket_broadcast_with_ack(self) -> None:
        """``socket.broadcast.timeout(s).emit_with_ack`` asks the other sockets."""
        d = self.sa.broadcast.timeout(5).emit_with_ack("q")
        self.assertEqual(self.a.received(), [])
        for client in (self.b, self.c):
            [p] = client.received()
            assert p.id is not None
            client.ack(p.id, "ok")
        self.assertEqual(self.successResultOf(d), ["ok", "ok"])

    def test_fetch_sockets(self) -> None:
        """``fetch_sockets`` gives the selected sockets, data included."""
        self.sa.data["name"] = "alice"
        everyone = self.successResultOf(self.io.fetch_sockets())
        self.assertEqual(set(everyone), {self.sa, self.sb, self.sc})
        in_r1 = self.successResultOf(self.io.in_("r1").fetch_sockets())
        self.assertEqual(set(in_r1), {self.sa, self.sb})
        only_a = self.successResultOf(self.io.in_("r1").except_("r2").fetch_sockets())
        self.assertEqual([s.data for s in only_a], [{"name": "alice"}])
        self.assertEqual(self.successResultOf(self.io.of("/chat").fetch_sockets()), [])

    def test_sockets_join_and_leave(self) -> None:
        """``sockets_join`` / ``sockets_leave`` change the selected sockets' rooms."""
        self.io.in_("r1").sockets_join("r3")
        self.assertEqual({self.sa.id, self.sb.id}, self.io.sockets.adapter.rooms["r3"])
        self.io.sockets_join(["r4", "r5"])
        self.assertEqual(self.sc.rooms, {self.sc.id, "r2", "r4", "r5"})
        self.io.except_("r2").sockets_leave("r3")
        self.assertEqual(self.io.sockets.adapter.rooms["r3"], {self.sb.id})
        self.io.sockets_leave(["r4", "r5", "r3"])
        self.assertEqual(self.sb.rooms, {self.sb.id, "r1", "r2"})

    def test_disconnect_sockets(self) -> None:
        """``disconnect_sockets()`` sends DISCONNECT and keeps the connections open."""
        seen_a, seen_b = self.reasons(self.sa), self.reasons(self.sb)
        self.io.in_("r1").disconnect_sockets()
        self.assertEqual(self.a.raw(), ["1"])
        self.assertEqual(self.b.raw(), ["1"])
        self.assertEqual(self.c.raw(), [])
        self.assertEqual(seen_a + seen_b, ["server namespace disconnect"] * 2)
        self.assertFalse(self.a.closed or self.b.closed)
        self.assertEqual(set(self.io.sockets.sockets), {self.sc.id})

    def test_disconnect_sockets_close(self) -> None:
        """``disconnect_sockets(close=True)`` closes the underlying connections too."""
        self.io.of("/chat")
        chat_sid = self.a.connect_ok("/chat")["sid"]
        chat_socket = self.io.of("/chat").sockets[chat_sid]
        chat_reasons = self.reasons(chat_socket)
        self.io.to("r2").except_("r1").disconnect_sockets(close=True)
        self.assertTrue(self.c.closed)
        self.assertFalse(self.a.closed or self.b.closed)
        self.io.disconnect_sockets(True)
        self.assertTrue(self.a.closed and self.b.closed)
        self.assertEqual(chat_reasons, ["server namespace disconnect"])
        self.assertEqual(self.io.connections, {})


# -- disconnections ------------------------------------------------------------------------------


class DisconnectTests(ServerTestCase):
    """Why and how sockets disconnect."""

    def test_client_disconnect(self) -> None:
        """A client DISCONNECT gives "client namespace disconnect"; the connection and its
        other namespaces stay."""
        client, socket = self.joined()
        chat = self.io.of("/chat").sockets[client.connect_ok("/chat")["sid"]]
        reasons = self.reasons(socket)
        client.disconnect()
        self.assertEqual(reasons, ["client namespace disconnect"])
        self.assertFalse(socket.connected)
        self.assertEqual(self.io.sockets.sockets, {})
        self.assertTrue(chat.connected)
        self.assertFalse(client.closed)
        self.assertEqual(client.raw(), [])

    def test_client_can_reconnect_namespace(self) -> None:
        """After a DISCONNECT the client may join the namespace again as a new socket."""
        client, socket = self.joined()
        client.disconnect()
        again = client.connect_ok()["sid"]
        self.assertNotEqual(again, socket.id)
        self.assertEqual(len(self.sockets), 2)

    def test_server_disconnect(self) -> None:
        """``socket.disconnect()`` sends DISCONNECT with "server namespace disconnect" and
        keeps the connection."""
        client, socket = self.joined()
        reasons = self.reasons(socket)
        self.assertIs(socket.disconnect(), socket)
        self.assertEqual(client.raw(), ["1"])
        self.assertEqual(reasons, ["server namespace disconnect"])
        self.assertFalse(client.closed)
        socket.disconnect()
        self.assertEqual(reasons, ["server namespace disconnect"])

    def test_server_disconnect_namespace(self) -> None:
        """A "/chat" socket's DISCONNECT is ``1/chat,``."""
        self.io.of("/chat")
        client = self.client()
        sid = client.connect_ok("/chat")["sid"]
        self.io.of("/chat").sockets[sid].disconnect()
        self.assertEqual(client.raw(), ["1/chat,"])

    def test_server_disconnect_close(self) -> None:
        """``socket.disconnect(close=True)`` disconnects every namespace and closes."""
        client, socket = self.joined()
        chat = self.io.of("/chat").sockets[client.connect_ok("/chat")["sid"]]
        reasons = self.reasons(socket)
        chat_reasons = self.reasons(chat)
        socket.disconnect(close=True)
        self.assertEqual(reasons, ["server namespace disconnect"])
        self.assertEqual(chat_reasons, ["server namespace disconnect"])
        self.assertEqual(client.raw(), ["1", "1/chat,"])
        self.assertFalse(socket.connected)
        self.assertTrue(client.closed)
        self.assertNotIn(client.session.id, self.io.connections)

    def test_transport_close(self) -> None:
        """The engine closing (client close packet) gives "transport close"."""
        client, socket = self.joined()
        reasons = self.reasons(socket)
        client.close_engine()
        self.assertEqual(reasons, ["transport close"])
        self.assertTrue(client.closed)
        self.assertEqual(self.io.connections, {})
        self.assertEqual(self.io.sockets.sockets, {})

    def test_transport_gone(self) -> None:
        """The transport going away gives "transport close"."""
        client, socket = self.joined()
        reasons = self.reasons(socket)
        client.session.transport_closed(client.transport)
        self.assertEqual(reasons, ["transport close"])

    def test_ping_timeout(self) -> None:
        """A client that does not answer the ping gives "ping timeout"."""
        io = self.server(ping_interval=10, ping_timeout=5)
        client, socket = self.joined(io=io)
        reasons = self.reasons(socket)
        self.clock.advance(10)
        client.pong()
        self.clock.advance(10)  # the next ping
        self.clock.advance(4.5)
        self.assertEqual(reasons, [])
        self.clock.advance(0.5)
        self.assertEqual(reasons, ["ping timeout"])
        self.assertTrue(client.closed)

    def test_disconnecting_sees_rooms(self) -> None:
        """``disconnecting`` fires with the rooms still visible; ``disconnect`` after."""
        client, socket = self.joined()
        socket.join("lobby")
        seen: list[tuple[str, str, set[str]]] = []
        socket.on("disconnecting", lambda r: seen.append(("disconnecting", r, socket.rooms)))
        socket.on("disconnect", lambda r: seen.append(("disconnect", r, socket.rooms)))
        client.disconnect()
        self.assertEqual(seen, [
            ("disconnecting", "client namespace disconnect", {socket.id, "lobby"}),
            ("disconnect", "client namespace disconnect", set()),
        ])

    def test_disconnect_handler_error(self) -> None:
        """An exception in a ``disconnect`` handler is logged and cleanup still completes."""
        client, socket = self.joined()

        def broken(reason: str) -> None:
            raise RuntimeError("bad")

        socket.on("disconnect", broken)
        client.close_engine()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertEqual(self.io.connections, {})

    def test_server_close(self) -> None:
        """``io.close()`` disconnects every socket of every namespace with "server shutting
        down" and closes every session."""
        a, sa = self.joined()
        b, sb = self.joined()
        chat = self.io.of("/chat").sockets[b.connect_ok("/chat")["sid"]]
        seen: list[str] = []
        for s in (sa, sb, chat):
            s.on("disconnect", seen.append)
        self.io.close()
        self.assertEqual(seen, [CloseReason.SERVER_SHUTTING_DOWN] * 3)
        self.assertEqual(seen[0], "server shutting down")
        self.assertTrue(a.closed and b.closed)
        self.assertEqual(self.io.connections, {})
        self.assertEqual(self.io.engine.sessions, {})


class ServerCloseTests(ServerTestCase):
    """``io.close()`` beyond the sockets."""

    def test_timers_cancelled(self) -> None:
        """After ``io.close()`` no timer is left: heartbeats, connect timeouts, ack timeouts."""
        _, socket = self.joined()
        self.client()  # not joined: its connect timeout is pending
        d = socket.timeout(100).emit_with_ack("q")
        self.io.close()
        self.failureResultOf(d, DisconnectedError)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_adapters_closed(self) -> None:
        """``io.close()`` closes the adapter of every namespace (built by ``adapter=``)."""
        closed: list[str] = []

        class RecordingAdapter(txsio.Adapter):
            def close(self) -> None:
                closed.append(self.nsp.name)

        io = self.server(adapter=RecordingAdapter)
        self.assertIsInstance(io.of("/chat").adapter, RecordingAdapter)
        io.close()
        self.assertEqual(sorted(closed), ["/", "/chat"])

    def test_close_returns_deferred(self) -> None:
        """``io.close()`` returns a Deferred (``await io.close()`` works) that fires once every
        adapter closed; an adapter that fails to close is logged and does not fail it."""
        closing: list[Deferred[None]] = []

        class SlowAdapter(txsio.Adapter):
            def close(self) -> Deferred[None]:
                closing.append(Deferred())
                return closing[-1]

        io = self.server(adapter=SlowAdapter)
        io.of("/chat")
        done = io.close()
        self.assertIsInstance(done, Deferred)
        self.assertNoResult(done)
        closing[0].callback(None)
        self.assertNoResult(done)
        closing[1].errback(RuntimeError("broker away"))
        self.assertIsNone(self.successResultOf(done))
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


class ConnectTimeoutTests(ServerTestCase):
    """A connection that joins no namespace in time is closed."""

    def setUp(self) -> None:
        super().setUp()
        self.io = self.server(connect_timeout=5)

    def test_closed_without_namespace(self) -> None:
        """No CONNECT within ``connect_timeout``: the session is closed."""
        client = self.client()
        self.clock.advance(4.9)
        self.assertFalse(client.closed)
        self.clock.advance(0.1)
        self.assertTrue(client.closed)
        self.assertEqual(self.io.connections, {})

    def test_refused_connection_closed(self) -> None:
        """A client whose CONNECT was refused has joined nothing: it is closed too."""
        self.io.use(lambda s: fail(ConnectionRefusedError("no")))
        client = self.client()
        client.connect()
        self.clock.advance(5)
        self.assertTrue(client.closed)

    def test_joined_stays(self) -> None:
        """A client that joined a namespace in time stays, even after leaving it."""
        client = self.client()
        self.clock.advance(3)
        client.connect_ok()
        client.disconnect()
        self.clock.advance(10)
        client.pong()
        self.assertFalse(client.closed)
        self.assertEqual(list(self.io.connections), [client.session.id])

    def test_default_is_45(self) -> None:
        """Node's default: 45 seconds."""
        io = self.server(ping_interval=100)
        client = self.client(io)
        self.clock.advance(44.9)
        self.assertFalse(client.closed)
        self.clock.advance(0.1)
        self.assertTrue(client.closed)


# -- connection state recovery -----------------------------------------------------------------


class RecoveryTests(ServerTestCase):
    """``connection_state_recovery=True``."""

    def setUp(self) -> None:
        super().setUp()
        self.io = self.server(connection_state_recovery=True, ping_interval=1000,
                              ping_timeout=1000)

    def last_offset(self, client: MemoryClient) -> str:
        events = client.events()
        self.assertTrue(events)
        offset = events[-1][-1]
        assert isinstance(offset, str)
        return offset

    def test_pid_and_offsets(self) -> None:
        """The CONNECT reply has a ``pid``; broadcasts and emits carry an offset last;
        acks and volatile packets do not."""
        client = self.client()
        reply = client.connect_ok()
        self.assertEqual(set(reply), {"sid", "pid"})
        self.assertNotEqual(reply["pid"], reply["sid"])
        [socket] = self.sockets
        self.assertEqual(socket.pid, reply["pid"])
        self.io.emit("b", 1)
        socket.emit("e", 2)
        self.io.volatile.emit("v", 3)
        socket.emit_with_ack("q", 4)
        (b, e, v, q) = client.received()
        self.assertEqual(b.data[:2], ["b", 1])
        self.assertEqual(len(b.data), 3)
        self.assertEqual(e.data[:2], ["e", 2])
        self.assertEqual(len(e.data), 3)
        self.assertNotEqual(b.data[2], e.data[2])
        self.assertEqual(v.data, ["v", 3])
        self.assertEqual(q.data, ["q", 4])

    def test_recover(self) -> None:
        """A reconnect with pid and offset in time restores the id, rooms and data, sets
        ``recovered`` and replays the missed broadcasts."""
        client = self.client()
        reply = client.connect_ok()
        [socket] = self.sockets
        socket.join("lobby")
        socket.data["user"] = "alice"
        self.io.emit("seen", 0)
        offset = self.last_offset(client)
        client.close_engine()
        self.io.to("lobby").emit("missed", 1)
        self.io.to("elsewhere").emit("not for you", 2)
        self.io.emit("missed", 3)
        self.clock.advance(60)
        again = self.client()
        again.connect("/", {"pid": reply["pid"], "offset": offset, "token": "t"})
        back, *missed = again.received()
        self.assertEqual((back.type, back.data), (CONNECT, reply))
        restored = self.sockets[-1]
        self.assertIsNot(restored, socket)
        self.assertTrue(restored.recovered)
        self.assertEqual(restored.id, socket.id)
        self.assertEqual(restored.rooms, {socket.id, "lobby"})
        self.assertEqual(restored.data, {"user": "alice"})
        self.assertEqual(restored.handshake.auth, {"token": "t"})
        self.assertEqual([p.data[:2] for p in missed], [["missed", 1], ["missed", 3]])
        self.io.to("lobby").emit("live")
        self.assertEqual(again.events()[0][0], "live")

    def test_recover_custom_namespace_binary_and_private(self) -> None:
        """Recovery in "/chat" replays binary broadcasts and emits to the socket's own id."""
        self.io.of("/chat")
        client = self.client()
        reply = client.connect_ok("/chat")
        self.io.of("/chat").emit("x")
        offset = self.last_offset(client)
        client.close_engine()
        self.io.of("/chat").emit("bin", b"\x01", {"k": b"\x02"})
        self.io.of("/chat").to(reply["sid"]).emit("private", 1)
        self.io.emit("main only")
        again = self.client()
        again.connect("/chat", {"pid": reply["pid"], "offset": offset})
        back, *missed = again.received()
        self.assertEqual((back.nsp, back.data), ("/chat", reply))
        self.assertEqual([(p.type, p.nsp, p.data[:-1]) for p in missed], [
            (BINARY_EVENT, "/chat", ["bin", b"\x01", {"k": b"\x02"}]),
            (EVENT, "/chat", ["private", 1]),
        ])

    def test_recover_skips_middlewares(self) -> None:
        """A recovered socket skips the middlewares (Node's default ``skipMiddlewares``)."""
        calls: list[Socket] = []
        self.io.use(calls.append)
        client = self.client()
        pid = client.connect_ok()["pid"]
        self.io.emit("x")
        offset = self.last_offset(client)
        client.close_engine()
        self.client().connect_ok("/", {"pid": pid, "offset": offset})
        self.assertEqual(len(calls), 1)
        self.assertTrue(self.sockets[-1].recovered)

    def test_expired(self) -> None:
        """After ``max_disconnection_duration`` the reconnect is a fresh socket."""
        client = self.client()
        reply = client.connect_ok()
        self.sockets[0].join("lobby")
        self.io.emit("x")
        offset = self.last_offset(client)
        client.close_engine()
        self.clock.advance(121)
        again = self.client()
        back = again.connect_ok("/", {"pid": reply["pid"], "offset": offset})
        self.assertNotEqual(back["sid"], reply["sid"])
        self.assertNotEqual(back["pid"], reply["pid"])
        fresh = self.sockets[-1]
        self.assertFalse(fresh.recovered)
        self.assertEqual(fresh.rooms, {fresh.id})
        self.assertEqual(fresh.data, {})
        self.assertEqual(again.received(), [])

    def test_not_after_client_disconnect(self) -> None:
        """A deliberate client disconnect is not recoverable."""
        client = self.client()
        reply = client.connect_ok()
        self.io.emit("x")
        offset = self.last_offset(client)
        client.disconnect()
        back = self.client().connect_ok("/", {"pid": reply["pid"], "offset": offset})
        self.assertNotEqual(back["sid"], reply["sid"])
        self.assertFalse(self.sockets[-1].recovered)

    def test_unknown_offset(self) -> None:
        """An offset the server does not know gives a fresh socket."""
        client = self.client()
        reply = client.connect_ok()
        client.close_engine()
        back = self.client().connect_ok("/", {"pid": reply["pid"], "offset": "nope"})
        self.assertNotEqual(back["sid"], reply["sid"])

    def test_recover_only_once(self) -> None:
        """A session is restored once; a second reconnect with the same pid is fresh."""
        client = self.client()
        reply = client.connect_ok()
        self.io.emit("x")
        offset = self.last_offset(client)
        client.close_engine()
        auth = {"pid": reply["pid"], "offset": offset}
        self.assertEqual(self.client().connect_ok("/", auth)["sid"], reply["sid"])
        self.assertNotEqual(self.client().connect_ok("/", auth)["sid"], reply["sid"])

    def test_packet_log_bounded(self) -> None:
        """Broadcasts older than ``max_disconnection_duration`` leave the log even when no
        socket disconnects."""
        client = self.client()
        client.connect_ok()
        adapter = self.io.sockets.adapter
        for _ in range(5):
            self.io.emit("tick")
            self.clock.advance(100)
            client.pong()
        self.assertLessEqual(len(adapter._packets), 2)  # type: ignore[attr-defined]

    def test_off_by_default(self) -> None:
        """Without recovery there is no pid and no offset."""
        io = self.server()
        client = self.client(io)
        self.assertEqual(set(client.connect_ok()), {"sid"})
        io.emit("x", 1)
        self.assertEqual(client.events(), [["x", 1]])


# -- EIO3 / Socket.IO v4 ---------------------------------------------------------------------------


class EIO3Tests(ServerTestCase):
    """socket.io-client 2.x: Engine.IO v3, Socket.IO v4."""

    def setUp(self) -> None:
        super().setUp()
        self.io = self.server(allow_eio3=True)

    def test_auto_connect(self) -> None:
        """The client is connected to "/" without CONNECT; the socket id is the engine sid
        and the reply is a bare ``0``."""
        client = self.client(eio=3)
        self.assertEqual(client.raw(), ["0"])
        [socket] = self.sockets
        self.assertEqual(socket.id, client.session.id)
        socket.emit("hi", 1)
        self.assertEqual(client.raw(), ['2["hi",1]'])

    def test_custom_namespace(self) -> None:
        """A v4 CONNECT to "/chat" (query in the namespace) is answered ``0/chat,`` with the
        id ``/chat#<sid>``, and the query becomes the auth."""
        chat: list[Socket] = []
        self.io.of("/chat").on("connection", chat.append)
        client = self.client(eio=3)
        client.raw()
        client.send_raw("0/chat?token=abc,")
        self.assertEqual(client.raw(), ["0/chat,"])
        [socket] = chat
        self.assertEqual(socket.id, "/chat#" + client.session.id)
        self.assertEqual(socket.handshake.auth, {"token": "abc"})

    def test_connect_error_is_a_string(self) -> None:
        """CONNECT_ERROR carries a plain string."""
        self.io.use(lambda s: fail(ConnectionRefusedError("no way")))
        client = self.client(eio=3)
        self.assertEqual(client.raw(), ['4"no way"'])
        client.send_raw("0/nope,")
        self.assertEqual(client.raw(), ['4/nope,"Invalid namespace"'])

    def test_events_and_acks(self) -> None:
        """Events and acks work as in v5."""
        client = self.client(eio=3)
        client.raw()
        [socket] = self.sockets
        socket.on("q", lambda x: x * 2)
        client.emit("q", 21, ack_id=1)
        self.assertEqual(client.raw(), ["31[42]"])

    def test_disconnect_reason(self) -> None:
        """An EIO3 socket disconnects with the same reasons ("transport close" here)."""
        client = self.client(eio=3)
        reasons = self.reasons(self.sockets[0])
        client.close_engine()
        self.assertEqual(reasons, ["transport close"])


# -- bad input -------------------------------------------------------------------------------------


class BadInputTests(ServerTestCase):
    """A misbehaving client is closed (or ignored), logged, and harms no one else."""

    def setUp(self) -> None:
        super().setUp()
        self.bad, self.bad_socket = self.joined()
        self.good, self.good_socket = self.joined()
        self.bad_reasons = self.reasons(self.bad_socket)

    def assertParseError(self, *messages: str | bytes) -> None:
        """Feeding ``messages`` gives the bad socket's ``error`` handlers the parse error and
        closes the bad client with "forced close" (Node's socket.io 4.8, the reference, closes
        its connection so), logged as a warning, and the good client still works."""
        errors: list[Exception] = []
        self.bad_socket.on("error", errors.append)
        with capturedLogs() as events:
            for message in messages:
                self.bad.send_raw(message)
        self.assertTrue(self.bad.closed)
        self.assertEqual(self.bad.session.close_reason, CloseReason.FORCED_CLOSE)
        self.assertEqual(self.bad_reasons, ["forced close"])
        self.assertEqual([type(e) for e in errors], [SocketIOParseError])
        self.assertEqual(self.io.sockets.sockets, {self.good_socket.id: self.good_socket})
        warnings = texts(events, LogLevel.warn)
        self.assertTrue(any(self.bad.session.id in t for t in warnings), texts(events))
        self.assertEqual(texts(events, LogLevel.critical), [])
        self.assertGoodUnaffected()

    def assertGoodUnaffected(self) -> None:
        self.good.raw()
        self.io.emit("still", "here")
        self.assertEqual(self.good.raw(), ['2["still","here"]'])
        self.assertFalse(self.good.closed)

    def test_malformed(self) -> None:
        """An unparseable packet closes the connection with "forced close"."""
        self.assertParseError('2["unterminated')

    def test_unknown_type(self) -> None:
        """An unknown packet type is a parse error."""
        self.assertParseError("9")

    def test_empty(self) -> None:
        """An empty message is a parse error."""
        self.assertParseError("")

    def test_bad_event_payload(self) -> None:
        """An EVENT whose payload is not a non-empty array is a parse error."""
        self.assertParseError('2{"a":1}')

    def test_too_many_attachments(self) -> None:
        """An attachment count beyond ``max_attachments`` (default 10) is a parse error."""
        self.assertParseError('511-["x",' + ",".join(
            f'{{"_placeholder":true,"num":{i}}}' for i in range(11)) + "]")

    def test_max_attachments_option(self) -> None:
        """``Server(max_attachments=n)`` bounds the count."""
        io = self.server(max_attachments=1)
        client, socket = self.joined(io=io)
        seen: list[Any] = []
        socket.on("x", lambda *a: seen.append(a))
        client.send_raw('51-["x",{"_placeholder":true,"num":0}]')
        client.send_raw(b"1")
        self.assertEqual(seen, [(b"1",)])
        with capturedLogs():
            client.send_raw('52-["x",{"_placeholder":true,"num":0},'
                            '{"_placeholder":true,"num":1}]')
        self.assertTrue(client.closed)
        self.assertEqual(client.session.close_reason, "forced close")

    def test_deep_json(self) -> None:
        """JSON nested 100000 deep is a parse error, not a RecursionError."""
        depth = 100_000
        self.assertParseError('2["x",' + "[" * depth + "]" * depth + "]")

    def test_deep_json_objects(self) -> None:
        """Deep objects are refused the same way."""
        depth = 100_000
        self.assertParseError('2["x",' + '{"a":' * depth + "1" + "}" * depth + "]")

    def test_unexpected_attachment(self) -> None:
        """Binary data when no attachment is awaited is a parse error."""
        self.assertParseError(b"\x00")

    def test_text_instead_of_attachment(self) -> None:
        """A text packet while attachments are awaited is a parse error."""
        self.assertParseError('51-["x",{"_placeholder":true,"num":0}]', '2["y"]')

    def test_bad_placeholder(self) -> None:
        """A placeholder out of range is a parse error."""
        self.assertParseError('51-["x",{"_placeholder":true,"num":5}]')

    def test_reserved_event(self) -> None:
        """A reserved event name from the client never runs a lifecycle handler: Node's parser
        refuses it as an invalid payload, so the connection closes as for a parse error."""
        names = ["disconnect", "disconnecting", "connect", "connect_error", "newListener",
                 "removeListener"]
        for text in [json_event(name, "x") for name in names] + ['21["disconnect"]']:
            client, socket = self.joined()
            lifecycle: list[Any] = []
            record = lifecycle.append
            for name in names:
                socket.on(name, lambda *a, name=name, record=record: record((name, a)))
            socket.on_any(lambda *a, record=record: record(("any", a)))
            errors: list[Exception] = []
            socket.on("error", errors.append)
            with capturedLogs() as events:
                client.send_raw(text)
            self.assertEqual([(n, a[0]) for n, a in lifecycle],
                             [("disconnecting", "forced close"),
                              ("disconnect", "forced close")], text)
            self.assertEqual([type(e) for e in errors], [SocketIOParseError], text)
            self.assertTrue(client.closed, text)
            self.assertEqual(client.raw(), [])
            self.assertEqual(len(texts(events, LogLevel.warn)), 1)
        self.assertGoodUnaffected()

    def test_ack_unknown_id(self) -> None:
        """An ACK for an unknown id is ignored (logged at debug level)."""
        with capturedLogs() as events:
            self.bad.send_raw("35[1]")
            self.bad.send_raw("6" + '1-7[{"_placeholder":true,"num":0}]')
            self.bad.send_raw(b"x")
        self.assertEqual(len([t for t in texts(events, LogLevel.debug) if "unknown id" in t]), 2)
        self.assertFalse(self.bad.closed)
        self.assertTrue(self.bad_socket.connected)
        self.assertGoodUnaffected()

    def test_namespace_not_joined(self) -> None:
        """A packet for a namespace the client has not joined closes the connection, as Node's
        socket.io 4.8 does (the reference): no ``error``, the reason "forced close" on a
        WebSocket; the good client stays."""
        seen: list[Any] = []
        self.io.of("/chat").on("connection", lambda s: s.on("x", seen.append))
        for text in ['2/chat,["x",1]', '2/nowhere,["x",1]', "3/chat,1[]", "1/chat,"]:
            client, socket = self.joined()
            reasons = self.reasons(socket)
            errors: list[Exception] = []
            socket.on("error", errors.append)
            with capturedLogs() as events:
                client.send_raw(text)
            self.assertEqual(len([t for t in texts(events, LogLevel.info)
                                  if "not joined" in t]), 1, text)
            self.assertTrue(client.closed, text)
            self.assertEqual(reasons, ["forced close"], text)
            self.assertEqual(errors, [])
            self.assertEqual(client.raw(), [])
        self.assertEqual(seen, [])
        self.assertGoodUnaffected()

    def test_connect_error_from_client(self) -> None:
        """A CONNECT_ERROR from the client (the server's to send) closes the connection, as
        Node's socket.io 4.8 does (the reference)."""
        with capturedLogs() as events:
            self.bad.send_raw('4{"message":"x"}')
        self.assertTrue(self.bad.closed)
        self.assertEqual(self.bad_reasons, ["forced close"])
        self.assertTrue(texts(events, LogLevel.info))
        self.assertGoodUnaffected()

    def test_non_dict_auth(self) -> None:
        """A CONNECT payload that is not an object is a parse error."""
        self.assertParseError('0/chat,[1]')

    def test_handler_error_leaves_others(self) -> None:
        """An exception in a user handler is logged with the event name; the connection and
        other clients stay."""
        self.bad_socket.on("boom", lambda: 1 / 0)
        with capturedLogs() as events:
            self.bad.emit("boom", ack_id=1)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.assertTrue(any("'boom'" in t for t in texts(events)))
        self.assertFalse(self.bad.closed)
        self.assertTrue(self.bad_socket.connected)
        self.assertGoodUnaffected()

    def test_packets_after_parse_error_ignored(self) -> None:
        """Nothing from a client reaches a handler after its parse error."""
        seen: list[Any] = []
        self.bad_socket.on("x", seen.append)
        with capturedLogs():
            self.bad.send_raw("garbage")
        self.bad.send_raw('2["x",1]')
        self.assertEqual(seen, [])


def json_event(name: str, *args: Any) -> str:
    """The text of an EVENT packet in "/"."""
    return "2" + json.dumps([name, *args], separators=(",", ":"))


# -- the public names ------------------------------------------------------------------------------


class PublicAPITests(SynchronousTestCase):
    """``txsio.__all__``."""

    def test_upgrade_options(self) -> None:
        """``allow_upgrades`` and ``upgrade_timeout`` reach the Engine.IO server, as Node's
        options of the same names (they were a TypeError on txsio.Server)."""
        io = Server(allow_upgrades=False, upgrade_timeout=3, clock=Clock())
        self.assertEqual((io.engine.options.allow_upgrades, io.engine.options.upgrade_timeout),
                         (False, 3.0))
        self.assertEqual(io.engine.upgrades_for("polling"), [])
        default = Server(clock=Clock()).engine.options
        self.assertEqual((default.allow_upgrades, default.upgrade_timeout), (True, 10.0))

    def test_exports_are_the_implementations(self) -> None:
        """Each exported name is the implementation object of its module."""
        from txsio import adapter, broadcast, exceptions, namespace, server, socket
        from txsio import client as txsio_client

        expected = {
            "AckTimeoutError": exceptions.AckTimeoutError,
            "Adapter": adapter.Adapter,
            "BroadcastOperator": broadcast.BroadcastOperator,
            "ConnectionRefusedError": exceptions.ConnectionRefusedError,
            "DisconnectedError": exceptions.DisconnectedError,
            "Handshake": socket.Handshake,
            "Namespace": namespace.Namespace,
            "Server": server.Server,
            "SessionAwareAdapter": adapter.SessionAwareAdapter,
            "Socket": socket.Socket,
            "SocketIOError": exceptions.SocketIOError,
            "Client": txsio_client.Client,
            "ClientSocket": txsio_client.ClientSocket,
            "ConnectError": exceptions.ConnectError,
        }
        self.assertEqual(set(txsio.__all__), set(expected) | {"__version__"})
        for name, obj in expected.items():
            self.assertIs(getattr(txsio, name), obj, name)
        self.assertIsInstance(txsio.__version__, str)

    def test_exception_family(self) -> None:
        """The errors share ``SocketIOError``; ``ConnectionRefusedError`` is txsio's own."""
        for cls in (AckTimeoutError, ConnectionRefusedError, DisconnectedError):
            self.assertTrue(issubclass(cls, txsio.SocketIOError))
        self.assertIsNot(ConnectionRefusedError, builtins.ConnectionRefusedError)
        error = ConnectionRefusedError("m", data={"d": 1})
        self.assertEqual((error.message, error.data, str(error)), ("m", {"d": 1}, "m"))
        self.assertEqual(AckTimeoutError(responses=[1]).responses, [1])
        self.assertEqual(AckTimeoutError().responses, [])
        self.assertEqual(DisconnectedError("why").reason, "why")



class HandlerArityTests(SynchronousTestCase):
    """Handlers get missing arguments as None and lose surplus ones, as JS listeners do."""

    def _server_with(self, handler: Any) -> tuple[txsio.Server, MemoryClient]:
        io = txsio.Server(clock=Clock())
        io.on("connection", lambda socket: socket.on("ev", handler))
        client = MemoryClient(io)
        client.connect_ok()
        return io, client

    def test_missing_arguments_are_none(self) -> None:
        """A client sending fewer arguments than the handler takes still gets its ack."""
        _, client = self._server_with(lambda a, b, c=3: [a, b, c])
        client.emit("ev", 1, ack_id=7)
        [ack] = client.received()
        self.assertEqual((ack.type, ack.id, ack.data), (PacketType.ACK, 7, [[1, None, 3]]))

    def test_surplus_arguments_dropped(self) -> None:
        """A client sending more arguments than the handler takes still reaches it."""
        _, client = self._server_with(lambda a: a)
        client.emit("ev", 1, 2, 3, ack_id=8)
        [ack] = client.received()
        self.assertEqual(ack.data, [1])

    def test_type_error_inside_handler_not_retried(self) -> None:
        """A TypeError raised by the handler's own body is logged once, not retried."""
        calls: list[Any] = []

        def handler(a: Any) -> Any:
            calls.append(a)
            raise TypeError("bug in the handler")

        _, client = self._server_with(handler)
        client.emit("ev", 1, ack_id=9)
        self.assertEqual(calls, [1])
        self.assertEqual(client.received(), [])
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)
