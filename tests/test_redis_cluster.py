"""The Redis adapter in a real cluster: a ``redis-server`` started on a free loopback port,
two txsio nodes in this process, and a txsio node beside a Node node (``socket.io`` 4.8 with
``@socket.io/redis-adapter`` 8.3, and ``@socket.io/redis-emitter`` 5.1), both driven through
``tests/node/redis_node.mjs``, whose socket.io-client 4.8 clients connect to every node; and two
txsio nodes with in-memory clients streaming broadcasts while Redis is paused or killed.

Every wait is bounded; nothing sleeps.  The tests fail (they are not skipped) when
``redis-server`` or Node is missing: ``apt-get install redis-server``, ``npm ci`` in tests/node.
"""

from __future__ import annotations

import itertools
import json
import shutil
import signal
import socket
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

from twisted.internet import defer, protocol, task
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import ILogObserver, LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource

import txsio
from txsio.redis import (
    Emitter,
    RedisAdapterFactory,
    RedisAddress,
    RedisConnection,
    RedisUnavailableError,
    RemoteSocket,
)
from txsio.redis.connection import _endpoint

from .sio_memory import MemoryClient
from .support import NODE_DIR, EventLog, LoopbackSite, PeerSetupError, require_node, serve, spawn

DOCS_DIR = Path(__file__).resolve().parent.parent / "docs"

#: Reconnect fast: the tests restart Redis.
FAST: dict[str, Any] = {"min_reconnect_delay": 0.05, "max_reconnect_delay": 0.5}


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _RedisProtocol(protocol.ProcessProtocol):
    def __init__(self) -> None:
        self.output = b""
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.ended: defer.Deferred[None] = defer.Deferred()

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if not self.ready.called and b"Ready to accept connections" in self.output:
            self.ready.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Failure) -> None:
        if not self.ready.called:
            self.ready.errback(AssertionError(
                "redis-server ended before it was ready:\n"
                + self.output.decode("utf-8", "replace")[-2000:]))
        self.ended.callback(None)


class RedisServer:
    """A ``redis-server`` on 127.0.0.1 (no persistence), which a test can stop and start again
    on the same port."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}"
        self._process: Any = None
        self._protocol: _RedisProtocol | None = None

    async def start(self) -> None:
        """Start it; return once it accepts connections."""
        executable = shutil.which("redis-server")
        if executable is None:
            raise PeerSetupError("redis-server is not on PATH: apt-get install redis-server")
        proto = _RedisProtocol()
        self._protocol = proto
        argv = [executable, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--daemonize", "no"]
        self._process = self.reactor.spawnProcess(proto, executable, argv, env=None)
        await proto.ready.addTimeout(10, self.reactor)

    async def stop(self) -> None:
        """Kill it (SIGKILL: Redis gone without a goodbye) and wait until it is gone."""
        proto = self._protocol
        if proto is None or proto.ended.called:
            return
        try:
            self._process.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
        await proto.ended.addTimeout(10, self.reactor)

    def pause(self) -> None:
        """SIGSTOP it: its connections stay open, nothing is answered."""
        self._process.signalProcess("STOP")

    def resume(self) -> None:
        """SIGCONT it after :meth:`pause` (nothing if it is gone)."""
        try:
            self._process.signalProcess(signal.SIGCONT)
        except ProcessExitedAlready:
            pass


class NodePeer:
    """``node tests/node/redis_node.mjs``: commands go to its stdin, events come back."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self.log = EventLog(reactor)
        self._ids = itertools.count(1)
        self.process = spawn([require_node(), str(NODE_DIR / "redis_node.mjs")],
                             on_event=self.log.add, cwd=NODE_DIR, reactor=reactor)

    async def call(self, cmd: str, timeout: float = 10.0, **fields: Any) -> Any:
        """Run one command; its result (an :class:`AssertionError` for an error reply)."""
        reply = await self.request(cmd, timeout, **fields)
        if "error" in reply:
            raise AssertionError(f"{cmd}: {reply['error']} (responses: {reply.get('responses')})")
        return reply["result"]

    async def request(self, cmd: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
        """Run one command; its whole reply (``result`` or ``error`` and ``responses``)."""
        request_id = next(self._ids)
        # PeerProcess keeps its process transport private; stdin is this peer's command pipe.
        transport = self.process._transport
        transport.write(json.dumps({"id": request_id, "cmd": cmd, **fields}).encode() + b"\n")
        replies = await self.log.wait_for(
            lambda: self.log.where("reply", id=request_id) or None, f"reply to {cmd}", timeout)
        return dict(replies[0])

    def received(self, who: str, name: str) -> list[list[Any]]:
        """The arguments of every ``name`` event client ``who`` got so far."""
        return [e["args"] for e in self.log.where("received", who=who, name=name)]

    async def wait_received(self, who: str, name: str, count: int = 1,
                            timeout: float = 5.0) -> list[list[Any]]:
        """Wait until client ``who`` got ``count`` events named ``name``; return their args."""
        def check() -> list[list[Any]] | None:
            got = self.received(who, name)
            return got if len(got) >= count else None

        result: list[list[Any]] = await self.log.wait_for(
            check, f"{count} {name!r} event(s) for {who}", timeout)
        return result

    async def wait_event(self, what: str, timeout: float = 5.0, **match: Any) -> dict[str, Any]:
        """Wait for an event ``what`` whose fields equal ``match``."""
        events = await self.log.wait_for(lambda: self.log.where(what, **match) or None,
                                         f"{what} {match}", timeout)
        return dict(events[0])

    async def stop(self) -> None:
        """Close its stdin (it shuts down) and wait, bounded, for it to end."""
        await self.process.stop()


class ProxyProcess:
    """nginx or HAProxy running a configuration file of ``docs/`` on free loopback ports."""

    def __init__(self, reactor: Any, kind: str, directory: str, backends: list[int]) -> None:
        self.reactor = reactor
        self.kind = kind
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        source = DOCS_DIR / ("nginx-socketio.conf" if kind == "nginx" else "haproxy-socketio.cfg")
        text = source.read_text("utf-8").replace("127.0.0.1:8080", f"127.0.0.1:{self.port}")
        for default, port in zip(("8081", "8082"), backends, strict=True):
            text = text.replace(f"127.0.0.1:{default}", f"127.0.0.1:{port}")
        base = Path(directory)
        (base / "logs").mkdir()
        config = base / source.name
        config.write_text(text, "utf-8")
        name = "nginx" if kind == "nginx" else "haproxy"
        executable = shutil.which(name) or next(
            (p for p in (f"/usr/sbin/{name}",) if Path(p).exists()), None)
        if executable is None:
            raise PeerSetupError(f"{name} is not installed: apt-get install "
                                 + ("nginx-light" if kind == "nginx" else "haproxy"))
        if kind == "nginx":
            argv = [executable, "-c", str(config), "-p", str(base),
                    "-g", f"daemon off; pid {base / 'nginx.pid'}; error_log stderr;"]
        else:
            argv = [executable, "-db", "-f", str(config)]
        self.process = spawn(argv, reactor=reactor)

    async def started(self) -> str:
        """Wait (bounded) until it accepts connections; its URL."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", self.port, timeout=1)
        deadline = self.reactor.seconds() + 10
        while True:
            try:
                connected = await endpoint.connect(protocol.Factory.forProtocol(protocol.Protocol))
            except Exception:
                if self.reactor.seconds() > deadline or self.process.result().exit_code is not None:
                    raise AssertionError(f"{self.kind} did not start\n"
                                         f"{self.process.result().describe()}") from None
                await task.deferLater(self.reactor, 0.05, lambda: None)
                continue
            assert isinstance(connected, protocol.Protocol) and connected.transport is not None
            connected.transport.loseConnection()
            return self.url

    async def stop(self) -> None:
        await self.process.stop()


class TxsioNode:
    """A ``txsio.Server`` with the Redis adapter, served on 127.0.0.1.

    Its connection handlers (on ``/`` and ``/chat``) join ``auth["rooms"]`` and set
    ``socket.data = {"node": name, "name": auth["name"]}``; ``io.on("ping")`` answers
    ``{"node", "echo"}``, ``io.on("notify")`` records its arguments in :attr:`notified`.
    """

    def __init__(self, name: str, redis_url: str, reactor: Any, *, parser: str = "default",
                 **options: Any) -> None:
        self.name = name
        self.factory = RedisAdapterFactory(redis_url, reactor=reactor, **options)
        self.io = txsio.Server(adapter=self.factory, clock=reactor, parser=parser)
        self.notified: list[list[Any]] = []
        self.log = EventLog(reactor)

        def on_connection(sock: txsio.Socket) -> None:
            auth = sock.handshake.auth
            sock.data = {"node": name, "name": auth.get("name")}
            rooms = auth.get("rooms") or []
            if rooms:
                sock.join(rooms)

        self.io.on("connection", on_connection)
        self.io.of("/chat").on("connection", on_connection)
        self.io.on("ping", lambda arg: {"node": name, "echo": arg})

        def notify(*args: Any) -> None:
            self.notified.append(list(args))
            self.log.add({"event": "notify", "args": list(args)})

        self.io.on("notify", notify)
        root = Resource()
        root.putChild(b"socket.io", self.io.resource())
        self.site: LoopbackSite = serve(root, reactor=reactor)
        self.url = self.site.url

    async def stop(self) -> None:
        """Close the server, its connections and the Redis connections."""
        self.io.close()
        await self.factory.close()
        await self.site.stop()


async def numsub(reactor: Any, redis_url: str, channel: str) -> int:
    """``PUBSUB NUMSUB channel`` on a connection of its own."""
    address = RedisAddress.parse(redis_url)
    connection = RedisConnection(_endpoint(reactor, address, 5.0), address, clock=reactor)
    connection.start()
    try:
        reply = await connection.command(b"PUBSUB", b"NUMSUB", channel)
        return int(reply[1])
    finally:
        await connection.close()


async def wait_numsub(reactor: Any, redis_url: str, channel: str, count: int,
                      timeout: float = 10.0) -> None:
    """Poll (every 50 ms, at most ``timeout`` s) until ``channel`` has ``count`` subscribers."""
    deadline = reactor.seconds() + timeout
    seen = -1
    while reactor.seconds() < deadline:
        try:
            seen = await numsub(reactor, redis_url, channel)
        except Exception:
            seen = -1
        if seen == count:
            return
        await task.deferLater(reactor, 0.05, lambda: None)
    raise AssertionError(f"{channel} has {seen} subscribers, not {count}, after {timeout} s")


async def until(reactor: Any, check: Callable[[], Any], what: str, timeout: float = 5.0) -> Any:
    """Poll ``check()`` every 20 ms until it is truthy (bounded); return its value."""
    deadline = reactor.seconds() + timeout
    while True:
        value = check()
        if value:
            return value
        if reactor.seconds() >= deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        await task.deferLater(reactor, 0.02, lambda: None)




def _async(f: Callable[..., Any]) -> Callable[..., defer.Deferred[Any]]:
    # trial runs a test method that returns a Deferred; write the tests as coroutines.
    def run(self: Any) -> defer.Deferred[Any]:
        return defer.Deferred.fromCoroutine(f(self))

    run.__name__ = f.__name__
    run.__doc__ = f.__doc__
    return run


def _ids(sockets: list[Any]) -> list[str]:
    return sorted(s.id for s in sockets)


class _Cluster(TestCase):
    """Redis, the Node peer (always: its clients reach every node), and txsio nodes."""

    timeout = 30

    # trial waits for the Deferred that setUp returns; unittest's annotation says None.
    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]
        return defer.Deferred.fromCoroutine(self._setup())

    async def _setup(self) -> None:
        from twisted.internet import reactor

        self.reactor = reactor
        self.redis = RedisServer(reactor)
        await self.redis.start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(self.redis.stop()))
        self.create_nodes()
        # Cleanups run last first: the clients go before the servers.
        self.peer = NodePeer(reactor)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(self.peer.stop()))
        await self.start_nodes()

    def create_nodes(self) -> None:
        raise NotImplementedError

    async def start_nodes(self) -> None:
        raise NotImplementedError

    def txsio_node(self, name: str) -> TxsioNode:
        node = TxsioNode(name, self.redis.url, self.reactor, **FAST)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(node.stop()))
        return node

    async def connect(self, who: str, url: str, nsp: str = "/",
                      options: dict[str, Any] | None = None, **auth: Any) -> str:
        result = await self.peer.call("connect", who=who, url=url, nsp=nsp,
                                      auth={"name": who, **auth}, **(options or {}))
        return str(result["id"])

    def received(self, who: str, name: str, count: int = 1) -> defer.Deferred[list[Any]]:
        return defer.Deferred.fromCoroutine(self.peer.wait_received(who, name, count))


class TwoTxsioNodes(_Cluster):
    """Two txsio servers in this process on one Redis."""

    def create_nodes(self) -> None:
        self.a = self.txsio_node("py-A")
        self.b = self.txsio_node("py-B")

    async def start_nodes(self) -> None:
        await defer.gatherResults([self.a.factory.ready(), self.b.factory.ready()])
        self.a1 = await self.connect("a1", self.a.url, rooms=["r1"])
        self.a2 = await self.connect("a2", self.a.url, rooms=["r2"])
        self.b1 = await self.connect("b1", self.b.url, rooms=["r1"])
        self.b2 = await self.connect("b2", self.b.url, rooms=["r2"])

    @_async
    async def test_broadcasts_both_ways(self) -> None:
        """Room broadcasts, binary, except, namespaces and ``local`` across two txsio nodes."""
        self.a.io.to("r1").emit("news", {"n": 1}, b"\x00\x01\xff")
        self.assertEqual(await self.received("b1", "news"),
                         [[{"n": 1}, {"$bytes": [0, 1, 255]}]])
        await self.received("a1", "news")
        self.b.io.except_("r1").emit("all-but-r1", "from-B")
        await self.received("a2", "all-but-r1")
        await self.received("b2", "all-but-r1")
        self.b.io.to(["r1", "r2"]).except_("r2").emit("two-rooms")
        await self.received("a1", "two-rooms")
        await self.received("b1", "two-rooms")
        await self.connect("c1", self.a.url, nsp="/chat")
        await self.connect("c2", self.b.url, nsp="/chat")
        self.b.io.of("/chat").emit("chat", "hello")
        await self.received("c1", "chat")
        self.a.io.local.emit("local-only")
        await self.received("a1", "local-only")
        await self.received("a2", "local-only")
        # A later broadcast from A arrives after anything "local-only" would have.
        self.a.io.emit("fence")
        await self.received("b1", "fence")
        self.assertEqual(self.peer.received("b1", "local-only"), [])
        self.assertEqual(self.peer.received("b2", "news"), [])
        self.assertEqual(self.peer.received("a1", "all-but-r1"), [])
        for who in ("a2", "b2"):
            self.assertEqual(self.peer.received(who, "two-rooms"), [])

    @_async
    async def test_fetch_sockets_and_remote_sockets(self) -> None:
        """``fetch_sockets`` returns local sockets and :class:`RemoteSocket`\\ s whose
        methods act through the cluster."""
        sockets = await self.a.io.in_("r1").fetch_sockets()
        self.assertEqual(_ids(sockets), sorted([self.a1, self.b1]))
        remote = next(s for s in sockets if isinstance(s, RemoteSocket))
        local = next(s for s in sockets if isinstance(s, txsio.Socket))
        self.assertEqual(local.id, self.a1)
        self.assertEqual(remote.id, self.b1)
        self.assertEqual(remote.rooms, {self.b1, "r1"})
        self.assertEqual(remote.data, {"node": "py-B", "name": "b1"})
        self.assertEqual(remote.handshake.auth, {"name": "b1", "rooms": ["r1"]})
        self.assertIn("host", remote.handshake.headers)
        self.assertTrue(remote.handshake.url.startswith("/socket.io/?EIO=4"))
        remote.emit("direct", 1)
        self.assertEqual(await self.received("b1", "direct"), [[1]])
        remote.join("vip")
        await until(self.reactor, lambda: "vip" in self.b.io.sockets.sockets[self.b1].rooms,
                    "remote join")
        remote.leave("vip")
        await until(self.reactor, lambda: "vip" not in self.b.io.sockets.sockets[self.b1].rooms,
                    "remote leave")
        answer = await remote.timeout(3).emit_with_ack("question", "q")
        self.assertEqual(answer, {"from": "b1", "payload": "q"})
        remote.disconnect()
        event = await self.peer.wait_event("disconnect", who="b1")
        self.assertEqual(event["reason"], "io server disconnect")
        everyone = await self.b.io.fetch_sockets()
        self.assertEqual(_ids(everyone), sorted([self.a1, self.a2, self.b2]))
        only_local = await self.b.io.local.fetch_sockets()
        self.assertEqual(_ids(only_local), [self.b2])

    @_async
    async def test_sockets_join_leave_disconnect(self) -> None:
        """``sockets_join`` / ``sockets_leave`` / ``disconnect_sockets`` act on both nodes,
        once each."""
        self.a.io.in_("r1").sockets_join("x")
        await until(self.reactor, lambda: "x" in self.b.io.sockets.sockets[self.b1].rooms,
                    "join on B")
        self.assertIn("x", self.a.io.sockets.sockets[self.a1].rooms)
        rooms = await self.a.io.sockets.adapter.all_rooms()
        self.assertLessEqual({"r1", "r2", "x", self.a1, self.b1}, rooms)
        self.b.io.in_("x").sockets_leave("x")
        await until(self.reactor, lambda: "x" not in self.a.io.sockets.sockets[self.a1].rooms,
                    "leave on A")
        self.b.io.in_("r2").disconnect_sockets(True)
        await self.peer.wait_event("disconnect", who="a2")
        await self.peer.wait_event("disconnect", who="b2")
        self.assertEqual(await self.a.io.sockets.adapter.server_count(), 2)

    @_async
    async def test_server_side_emit_with_acks(self) -> None:
        """``server_side_emit`` reaches the other node's ``io.on`` handlers; with acks,
        answers come back, and a timeout reports the answers that arrived."""
        self.a.io.server_side_emit("notify", {"k": 1}, "two")
        await self.b.log.wait_for(lambda: self.b.notified or None, "notify on B")
        self.assertEqual(self.b.notified, [[{"k": 1}, "two"]])
        self.assertEqual(self.a.notified, [])
        answers = await self.a.io.server_side_emit_with_ack("ping", {"q": 1})
        self.assertEqual(answers, [{"node": "py-B", "echo": {"q": 1}}])
        self.b.io.on("slow", lambda: defer.Deferred())  # never answers
        failure = None
        try:
            await self.a.io.timeout(0.3).server_side_emit_with_ack("slow")
        except txsio.AckTimeoutError as e:
            failure = e
        assert failure is not None
        self.assertEqual(failure.responses, [])

    @_async
    async def test_broadcast_with_acks_both_ways(self) -> None:
        """A broadcast with acknowledgements collects the answers of the clients of both
        nodes."""
        answers = await self.a.io.to("r1").timeout(3).emit_with_ack("question", "hi")
        self.assertEqual(sorted(a["from"] for a in answers), ["a1", "b1"])
        answers = await self.b.io.timeout(3).emit_with_ack("question", "all")
        self.assertEqual(sorted(a["from"] for a in answers), ["a1", "a2", "b1", "b2"])
        answers = await self.b.io.to("nobody").timeout(3).emit_with_ack("question", "none")
        self.assertEqual(answers, [])


class _MixedNodes(_Cluster):
    """A txsio node and a Node node (socket.io 4.8 + @socket.io/redis-adapter 8.3)."""

    def create_nodes(self) -> None:
        self.py = self.txsio_node("py")

    async def start_nodes(self) -> None:
        started = await self.peer.call("start-server", redis=self.redis.url, node="js")
        self.js_url = started["url"]
        await self.py.factory.ready()
        await wait_numsub(self.reactor, self.redis.url, "socket.io-request#/#", 2)
        self.p1 = await self.connect("p1", self.py.url, rooms=["r1"])
        self.p2 = await self.connect("p2", self.py.url, rooms=["r2"])
        self.j1 = await self.connect("j1", self.js_url, rooms=["r1"])
        self.j2 = await self.connect("j2", self.js_url, rooms=["r2"])

    async def _fetch_until(self, rooms: list[str], ids: set[str]) -> list[Any]:
        deadline = self.reactor.seconds() + 5
        while True:
            found = await self.peer.call("fetch", rooms=rooms)
            if {s["id"] for s in found} == ids:
                return list(found)
            if self.reactor.seconds() > deadline:
                raise AssertionError(f"fetch {rooms}: {found}, not {ids}")
            await task.deferLater(self.reactor, 0.02, lambda: None)


class MixedCluster(_MixedNodes):
    """Cluster operations between a txsio node and a Node node, both ways."""

    @_async
    async def test_broadcasts_both_ways(self) -> None:
        """Room broadcasts with binary arguments, except and namespaces, txsio to Node and
        Node to txsio."""
        self.py.io.to("r1").emit("news", {"n": 1}, b"\x00\x01\xff", [b"", "x"])
        self.assertEqual(await self.received("j1", "news"),
                         [[{"n": 1}, {"$bytes": [0, 1, 255]}, [{"$bytes": []}, "x"]]])
        await self.received("p1", "news")
        await self.peer.call("emit", rooms=["r1", "r2"], event="js-news",
                             args=[{"$bytes": [9, 8]}, "ünï ✓"])
        self.assertEqual(await self.received("p1", "js-news"),
                         [[{"$bytes": [9, 8]}, "ünï ✓"]])
        await self.received("p2", "js-news")
        # "except" is a Python keyword, so a dict; typed Any like the fields it stands among.
        excluded: dict[str, Any] = {"except": ["r2"]}
        await self.peer.call("emit", event="all", args=[1.5, None, True], **excluded)
        self.assertEqual(await self.received("p1", "all"), [[1.5, None, True]])
        self.py.io.except_("r1").emit("not-r1")
        await self.received("j2", "not-r1")
        await self.connect("c1", self.py.url, nsp="/chat")
        await self.connect("c2", self.js_url, nsp="/chat")
        await wait_numsub(self.reactor, self.redis.url, "socket.io-request#/chat#", 2)
        self.py.io.of("/chat").emit("chat", "from-py")
        await self.received("c2", "chat")
        await self.peer.call("emit", nsp="/chat", event="chat-js", args=["from-js"])
        await self.received("c1", "chat-js")
        await self.peer.call("emit", event="fence")
        await self.received("p2", "fence")
        self.py.io.emit("fence-py")
        await self.received("j1", "fence-py")
        self.assertEqual(self.peer.received("j2", "news"), [])
        self.assertEqual(self.peer.received("p2", "all"), [])
        self.assertEqual(self.peer.received("j1", "not-r1"), [])

    @_async
    async def test_fetch_sockets_both_ways(self) -> None:
        """Each side fetches the other's sockets with Node's handshake shape, rooms and data,
        and acts on them."""
        sockets = await self.py.io.in_("r1").fetch_sockets()
        self.assertEqual(_ids(sockets), sorted([self.p1, self.j1]))
        remote = next(s for s in sockets if isinstance(s, RemoteSocket))
        self.assertEqual(remote.data, {"node": "js", "name": "j1"})
        self.assertEqual(remote.rooms, {self.j1, "r1"})
        self.assertEqual(remote.handshake.auth, {"name": "j1", "rooms": ["r1"]})
        self.assertEqual(remote.handshake.address, "127.0.0.1")
        self.assertTrue(remote.handshake.time)
        self.assertGreater(remote.handshake.issued, 1_600_000_000_000)
        found = await self.peer.call("fetch", rooms=["r1"])
        self.assertEqual([s["id"] for s in found], sorted([self.p1, self.j1]))
        mine = next(s for s in found if s["id"] == self.p1)
        self.assertEqual(mine["rooms"], sorted([self.p1, "r1"]))
        self.assertEqual(mine["data"], {"node": "py", "name": "p1"})
        handshake = mine["handshake"]
        self.assertEqual(set(handshake), {"headers", "time", "address", "xdomain", "secure",
                                          "issued", "url", "query", "auth"})
        self.assertEqual(handshake["auth"], {"name": "p1", "rooms": ["r1"]})
        self.assertEqual(handshake["query"]["EIO"], "4")
        remote.emit("direct", {"to": "j1"})
        self.assertEqual(await self.received("j1", "direct"), [[{"to": "j1"}]])
        answer = await remote.timeout(3).emit_with_ack("question", 7)
        self.assertEqual(answer, {"from": "j1", "payload": 7})
        remote.join("vip")
        await self._fetch_until(["vip"], {self.j1})
        await self.peer.call("emit", rooms=["vip"], event="vip")
        await self.received("j1", "vip")
        remote.disconnect()
        event = await self.peer.wait_event("disconnect", who="j1")
        self.assertEqual(event["reason"], "io server disconnect")

    @_async
    async def test_sockets_join_leave_disconnect_both_ways(self) -> None:
        """``sockets_join`` / ``sockets_leave`` / ``disconnect_sockets`` from either side act
        on both nodes."""
        self.py.io.in_("r1").sockets_join("x")
        self.assertIn("x", self.py.io.sockets.sockets[self.p1].rooms)
        # the Node node applies it when the request arrives: look until it has
        await self._fetch_until(["x"], {self.p1, self.j1})
        await self.peer.call("sockets-join", rooms=["r2"], room="y")
        await until(self.reactor, lambda: "y" in self.py.io.sockets.sockets[self.p2].rooms,
                    "join from Node")
        await self.peer.call("sockets-leave", rooms=["r2"], room="y")
        await until(self.reactor, lambda: "y" not in self.py.io.sockets.sockets[self.p2].rooms,
                    "leave from Node")
        self.py.io.in_("x").sockets_leave("x")
        await self._fetch_until(["x"], set())
        await self.peer.call("disconnect-sockets", rooms=["r2"], close=True)
        await self.peer.wait_event("disconnect", who="p2")
        await self.peer.wait_event("disconnect", who="j2")
        self.py.io.in_("r1").disconnect_sockets()
        await self.peer.wait_event("disconnect", who="p1")
        await self.peer.wait_event("disconnect", who="j1")

    @_async
    async def test_server_side_emit_with_acks_both_ways(self) -> None:
        """Server-side events and their acknowledgements travel both ways."""
        answers = await self.py.io.server_side_emit_with_ack("ping", {"q": "py"})
        self.assertEqual(answers, [{"node": "js", "echo": {"q": "py"}}])
        answers = await self.peer.call("server-side-emit-with-ack", event="ping",
                                       args=[{"q": "js"}])
        self.assertEqual(answers, [{"node": "py", "echo": {"q": "js"}}])
        await self.peer.call("server-side-emit", event="notify", args=["from-js", 2])
        await self.py.log.wait_for(lambda: self.py.notified or None, "notify from js")
        self.assertEqual(self.py.notified, [["from-js", 2]])
        self.py.io.server_side_emit("notify", {"from": "py"})
        event = await self.peer.wait_event("server-event", name="notify")
        self.assertEqual(event["args"], [{"from": "py"}])
        # Node's node has no handler for "nothing": it never answers; the wait is bounded.
        try:
            await self.py.io.timeout(0.3).server_side_emit_with_ack("nothing")
        except txsio.AckTimeoutError as e:
            self.assertEqual(e.responses, [])
        else:
            self.fail("no AckTimeoutError")

    @_async
    async def test_broadcast_with_acks_both_ways(self) -> None:
        """Broadcasts with acknowledgements count and collect the clients of both nodes."""
        answers = await self.py.io.to("r1").timeout(3).emit_with_ack("question", "py")
        self.assertEqual(sorted(a["from"] for a in answers), ["j1", "p1"])
        answers = await self.peer.call("emit-with-ack", event="question", args=["js"],
                                       ackTimeout=3000)
        self.assertEqual(sorted(a["from"] for a in answers), ["j1", "j2", "p1", "p2"])
        self.assertEqual({a["payload"] for a in answers}, {"js"})

    @_async
    async def test_all_rooms_and_server_count(self) -> None:
        """``all_rooms`` and the node count agree on both sides."""
        rooms = await self.py.io.sockets.adapter.all_rooms()
        expected = {"r1", "r2", self.p1, self.p2, self.j1, self.j2}
        self.assertEqual(rooms, expected)
        self.assertEqual(set(await self.peer.call("all-rooms")), expected)
        self.assertEqual(await self.py.io.sockets.adapter.server_count(), 2)
        self.assertEqual(await self.peer.call("server-count"), 2)

    @_async
    async def test_redis_restart_heals_the_cluster(self) -> None:
        """Redis killed: local delivery goes on, cluster operations fail at once, the outage
        is logged once; Redis back: both nodes are full peers again without a restart."""
        events: list[dict[str, Any]] = []
        # Twisted annotates observers as ILogObserver, but any callable of an event serves.
        observer = cast(ILogObserver, events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        await self.redis.stop()
        await until(self.reactor, lambda: not self.py.factory.pub.ready, "the loss noticed")
        self.py.io.to("r1").emit("during", 1)
        self.py.io.to("r1").emit("during", 2)
        self.assertEqual(await self.received("p1", "during", 2), [[1], [2]])
        with self.assertRaises(RedisUnavailableError):
            await self.py.io.fetch_sockets()
        with self.assertRaises(RedisUnavailableError):
            await self.py.io.to("r1").timeout(1).emit_with_ack("question", "x")
        with self.assertRaises(RedisUnavailableError):
            await self.py.io.server_side_emit_with_ack("ping")
        self.py.io.sockets_join("during-outage")  # local part still applied
        self.assertIn("during-outage", self.py.io.sockets.sockets[self.p1].rooms)
        await self.redis.start()
        await self.py.factory.ready().addTimeout(10, self.reactor)
        await wait_numsub(self.reactor, self.redis.url, "socket.io-request#/#", 2)
        self.py.io.to("r1").emit("after", "py")
        await self.received("j1", "after")
        await self.peer.call("emit", rooms=["r2"], event="after-js")
        await self.received("p2", "after-js")
        sockets = await self.py.io.fetch_sockets()
        self.assertEqual(_ids(sockets), sorted([self.p1, self.p2, self.j1, self.j2]))
        answers = await self.peer.call("server-side-emit-with-ack", event="ping", args=[1])
        self.assertEqual(answers, [{"node": "py", "echo": 1}])
        texts = [formatEvent(e) for e in events if e.get("log_namespace") == "txsio.redis"
                 and e["log_level"] >= LogLevel.info]
        self.assertEqual(len([t for t in texts if "is unavailable" in t]), 1, texts)
        self.assertEqual(len([t for t in texts if "is back after" in t]), 1, texts)


class MixedClusterEmitters(_MixedNodes):
    """Node's @socket.io/redis-emitter and txsio's Emitter reaching both kinds of node."""

    @_async
    async def test_node_emitter_reaches_txsio_clients(self) -> None:
        """``@socket.io/redis-emitter`` reaches txsio's clients: rooms, binary, namespaces,
        socketsJoin / socketsLeave / disconnectSockets and serverSideEmit."""
        url = self.redis.url
        await self.peer.call("emitter", redis=url, op="emit", rooms=["r1"], event="e-news",
                             args=[{"bin": {"$bytes": [0, 1, 2, 253, 254, 255]}}, "t"])
        self.assertEqual(await self.received("p1", "e-news"),
                         [[{"bin": {"$bytes": [0, 1, 2, 253, 254, 255]}}, "t"]])
        await self.received("j1", "e-news")
        excluded: dict[str, Any] = {"except": ["r1"]}
        await self.peer.call("emitter", op="emit", event="e-all", args=[1], **excluded)
        await self.received("p2", "e-all")
        await self.connect("c1", self.py.url, nsp="/chat")
        await self.peer.call("emitter", op="emit", nsp="/chat", event="e-chat", args=[])
        await self.received("c1", "e-chat")
        await self.peer.call("emitter", op="sockets-join", rooms=["r2"], room="joined")
        await until(self.reactor, lambda: "joined" in self.py.io.sockets.sockets[self.p2].rooms,
                    "emitter join")
        await self.peer.call("emitter", op="sockets-leave", rooms=["r2"], room="joined")
        await until(self.reactor,
                    lambda: "joined" not in self.py.io.sockets.sockets[self.p2].rooms,
                    "emitter leave")
        await self.peer.call("emitter", op="server-side-emit", event="notify", args=["e"])
        await self.py.log.wait_for(lambda: self.py.notified or None, "emitter notify")
        self.assertEqual(self.py.notified, [["e"]])
        await self.peer.call("emitter", op="disconnect-sockets", rooms=["r2"], close=False)
        await self.peer.wait_event("disconnect", who="p2")
        self.assertEqual(self.peer.received("p2", "e-news"), [])

    @_async
    async def test_python_emitter(self) -> None:
        """txsio's :class:`Emitter` reaches Node and txsio clients and servers."""
        emitter = Emitter(self.redis.url, reactor=self.reactor)
        self.addCleanup(emitter.close)
        reached = await emitter.to("r1").emit("py-e", b"\x07", {"k": [1, 2]})
        self.assertEqual(reached, 2)  # the pattern subscriptions of the two nodes
        for who in ("p1", "j1"):
            self.assertEqual(await self.received(who, "py-e"),
                             [[{"$bytes": [7]}, {"k": [1, 2]}]])
        await emitter.of("chat").emit("nobody-here")
        await emitter.in_("r2").sockets_join("z")
        await until(self.reactor, lambda: "z" in self.py.io.sockets.sockets[self.p2].rooms,
                    "emitter join")
        await self._fetch_until(["z"], {self.p2, self.j2})
        await emitter.server_side_emit("notify", "py-emitter")
        event = await self.peer.wait_event("server-event", name="notify")
        self.assertEqual(event["args"], ["py-emitter"])
        await self.py.log.wait_for(lambda: self.py.notified or None, "emitter notify")
        await emitter.in_("z").disconnect_sockets(True)
        await self.peer.wait_event("disconnect", who="p2")
        await self.peer.wait_event("disconnect", who="j2")


class BehindProxies(_Cluster):
    """The sticky-session configurations of ``docs/`` in front of two txsio nodes."""

    def create_nodes(self) -> None:
        self.a = self.txsio_node("py-A")
        self.b = self.txsio_node("py-B")

    async def start_nodes(self) -> None:
        await defer.gatherResults([self.a.factory.ready(), self.b.factory.ready()])

    async def proxy(self, kind: str) -> str:
        directory = tempfile.TemporaryDirectory(prefix=f"txsio-{kind}-")
        self.addCleanup(directory.cleanup)
        proxy = ProxyProcess(self.reactor, kind, directory.name, [self.a.site.port,
                                                                 self.b.site.port])
        # stopped after the clients, before the servers
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(proxy.stop()))
        return await proxy.started()

    async def where(self) -> dict[str, list[str]]:
        """The clients' names on each node."""
        found = {}
        for node in (self.a, self.b):
            sockets = await node.io.local.fetch_sockets()
            found[node.name] = sorted(s.data["name"] for s in sockets)
        return found

    @_async
    async def test_haproxy_cookie(self) -> None:
        """HAProxy spreads handshakes over both nodes and keeps each client (long-polling,
        or upgrading to WebSocket) on its node; broadcasts reach all of them through Redis."""
        url = await self.proxy("haproxy")
        names = ["h0", "h1", "h2", "h3"]
        for who in names:
            await self.connect(who, url, options={"transports": ["polling"],
                                                  "withCredentials": True})
        await self.connect("w", url, options={"transports": ["polling", "websocket"],
                                              "withCredentials": True})
        where = await self.where()
        self.assertEqual(sorted(where["py-A"] + where["py-B"]), [*names, "w"])
        self.assertTrue(where["py-A"] and where["py-B"], where)
        self.a.io.emit("hello", b"\x01")
        self.b.io.emit("hello", "again")
        for who in [*names, "w"]:
            # one arrives locally, the other through Redis: in either order
            self.assertCountEqual(await self.received(who, "hello", 2),
                                  [[{"$bytes": [1]}], ["again"]])

    @_async
    async def test_nginx_ip_hash(self) -> None:
        """nginx keeps a client address on one node; polling and WebSocket clients behind it
        get the other node's broadcasts through Redis."""
        url = await self.proxy("nginx")
        await self.connect("n0", url, options={"transports": ["polling"]})
        await self.connect("n1", url, options={"transports": ["polling", "websocket"]})
        await self.connect("n2", url)
        where = await self.where()
        self.assertIn(sorted(where["py-A"] + where["py-B"]), [["n0", "n1", "n2"]])
        # one address: one node; the other one broadcasts
        other = self.b if where["py-A"] else self.a
        other.io.emit("hello", "from the other node")
        for who in ("n0", "n1", "n2"):
            self.assertEqual(await self.received(who, "hello"), [["from the other node"]])


async def running_redis(test: TestCase, reactor: Any) -> RedisServer:
    """A :class:`RedisServer` started for ``test`` and killed when it ends."""
    redis = RedisServer(reactor)
    await redis.start()
    test.addCleanup(lambda: defer.Deferred.fromCoroutine(redis.stop()))
    return redis


class _StreamNode:
    """A ``txsio.Server`` on the Redis adapter with one in-memory client in room ``r``."""

    def __init__(self, redis_url: str, reactor: Any, **options: Any) -> None:
        self.factory = RedisAdapterFactory(redis_url, reactor=reactor, **options)
        self.io = txsio.Server(adapter=self.factory, clock=reactor)
        self.client = MemoryClient(self.io)
        sid = self.client.connect_ok()["sid"]
        self.io.sockets.sockets[sid].join("r")
        self.ticks: list[int] = []

    def received(self) -> list[int]:
        """The numbers of every ``tick`` its client got so far."""
        self.ticks.extend(args[0] for name, *args in self.client.events() if name == "tick")
        return self.ticks

    def pending(self) -> int:
        """The commands waiting for Redis's replies on its publishing connection."""
        proto = self.factory.pub.protocol
        return 0 if proto is None else len(proto._pending)


class RedisPausedOrKilled(TestCase):
    """A Redis paused (SIGSTOP) or killed during a stream of broadcasts from node A: A's own
    client gets every broadcast, what waits for Redis stays within its bound, and node B's
    client gets them again once Redis is back."""

    timeout = 60
    BOUND = 50

    def setUp(self) -> defer.Deferred[None]:  # type: ignore[override]  # trial waits on it
        from twisted.internet import reactor

        self.reactor = reactor
        return defer.Deferred.fromCoroutine(self._start_streaming())

    async def _start_streaming(self) -> None:
        reactor = self.reactor
        self.redis = await running_redis(self, reactor)
        options = {**FAST, "command_timeout": 0.5, "max_pending_commands": self.BOUND}
        self.a = _StreamNode(self.redis.url, reactor, **options)
        self.b = _StreamNode(self.redis.url, reactor, **options)
        for node in (self.a, self.b):
            self.addCleanup(node.io.close)
        await defer.gatherResults([self.a.factory.ready(), self.b.factory.ready()]
                                  ).addTimeout(10, reactor)
        self.sent = 0
        self.most_pending = 0
        self.events: list[dict[str, Any]] = []
        observer = cast(ILogObserver, self.events.append)
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)
        self.stream = task.LoopingCall(self._tick)
        self.stream.clock = reactor
        self.stream.start(0.002)
        self.addCleanup(self.stream.stop)

    def _tick(self) -> None:
        self.a.io.to("r").emit("tick", self.sent)
        self.sent += 1
        self.most_pending = max(self.most_pending, self.a.pending())

    async def b_gets_ticks_from(self, first: int, what: str) -> None:
        """Wait (bounded) until B's client got a tick numbered ``first`` or later."""
        await until(self.reactor, lambda: any(n >= first for n in self.b.received()), what,
                    timeout=15)

    def assert_local_delivery(self) -> None:
        """A's client got every tick sent so far, in order."""
        self.assertEqual(self.a.received(), list(range(self.sent)))

    def lines(self, text: str) -> int:
        """How many txsio.redis lines of the test hold ``text``."""
        return len([e for e in self.events if e.get("log_namespace") == "txsio.redis"
                    and text in formatEvent(e)])

    @_async
    async def test_a_paused_redis(self) -> None:
        """SIGSTOP: broadcasts beyond the bound fail at once while the watchdog drops the
        silent connection and makes it again, logged once; SIGCONT: B hears A again."""
        await self.b_gets_ticks_from(0, "a tick through Redis")
        self.redis.pause()
        self.addCleanup(self.redis.resume)
        first = self.a.factory.pub.protocol
        await until(self.reactor, lambda: self.a.factory.pub.refused_commands > 0
                    and self.a.factory.pub.protocol not in (None, first),
                    "refusals and a new connection", timeout=15)
        self.assert_local_delivery()
        self.assertLessEqual(self.most_pending, self.BOUND)
        self.redis.resume()
        await self.b_gets_ticks_from(self.sent, "a tick after SIGCONT")
        self.assert_local_delivery()
        await until(self.reactor, lambda: self.lines("caught up"), "caught up", timeout=15)
        self.assertEqual(self.lines("wait for Redis"), 1)
        self.assertLessEqual(self.most_pending, self.BOUND)

    @_async
    async def test_a_killed_redis(self) -> None:
        """SIGKILL: broadcasts fail at once (nothing waits) and reach A's client; Redis
        restarted: B hears A again."""
        await self.b_gets_ticks_from(0, "a tick through Redis")
        await self.redis.stop()
        await until(self.reactor, lambda: not self.a.factory.pub.ready, "the loss noticed")
        during = self.sent
        await until(self.reactor, lambda: self.sent > during + 100, "broadcasts meanwhile")
        self.assert_local_delivery()
        self.assertEqual(self.a.pending(), 0)
        await self.redis.start()
        await defer.gatherResults([self.a.factory.ready(), self.b.factory.ready()]
                                  ).addTimeout(15, self.reactor)
        await self.b_gets_ticks_from(self.sent, "a tick after the restart")
        self.assert_local_delivery()
        self.assertLessEqual(self.most_pending, self.BOUND)
