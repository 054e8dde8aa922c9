"""The sharded Redis adapter (Node's ``createShardedAdapter``: SPUBLISH / SSUBSCRIBE, Redis 7).

Unit tests, on a Clock with in-memory connections, check its messages byte for byte against
traffic captured from two Node nodes (``tests/fixtures/redis/sharded/``, see the README
there), its own-echo rules and its room channels; the cluster tests run a txsio node beside a
Node node (socket.io 4.8 + @socket.io/redis-adapter 8.3, ``createShardedAdapter``) on a real
``redis-server``, with the helpers of ``tests/test_redis_cluster.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from twisted.internet import defer, task
from twisted.logger import LogLevel, capturedLogs
from twisted.trial.unittest import SynchronousTestCase

from txsio.redis import (
    MessageType,
    RedisError,
    RedisUnavailableError,
    RemoteSocket,
    ShardedRedisAdapter,
    decode_message,
    encode_cluster_message,
    redis_adapter,
)

from . import test_redis_cluster as cluster
from .test_redis_cluster import FAST, TxsioNode, _async, _ids, until
from .test_redis_unit import _Node, bounded_work, node_notation, push

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "redis" / "sharded"
INDEX: list[dict[str, Any]] = json.loads((FIXTURES / "index.json").read_text("utf-8"))
MAIN = "socket.io#/#"


def fixture(label: str) -> tuple[str, bytes, Any]:
    """The channel, bytes and Node's decoding of the sharded fixture named ``label``."""
    [entry] = [e for e in INDEX if e["file"][3:].startswith(label)]
    return entry["channel"], (FIXTURES / entry["file"]).read_bytes(), entry["decoded"]


class _ShardedNode(_Node):
    """A txsio server on a Clock with the sharded adapter over in-memory connections."""

    def __init__(self, **options: Any) -> None:
        super().__init__(sharded=True, **options)
        assert isinstance(self.adapter, ShardedRedisAdapter)
        self.sharded: ShardedRedisAdapter = self.adapter

    def message(self, channel: str, data: bytes) -> None:
        """``data`` arrives on the sharded ``channel``."""
        self.sub.protocol.dataReceived(push(b"smessage", channel.encode(), data))

    def to_me(self, data: bytes) -> None:
        """``data`` arrives on this adapter's own response channel."""
        self.message(self.sharded.response_channel, data)


class Encoding(SynchronousTestCase):
    """txsio reads Node's sharded messages as Node does and writes them byte for byte."""

    def setUp(self) -> None:
        self.node = _ShardedNode()
        self.io = self.node.io

    def test_fixtures_decode_as_node_decodes_them(self) -> None:
        """Every captured message (JSON, or msgpack when it carries binary) decodes to what
        Node decoded."""
        self.assertEqual(len(INDEX), 19)
        for entry in INDEX:
            data = (FIXTURES / entry["file"]).read_bytes()
            self.assertEqual(entry["encoding"], "json" if data[:1] == b"{" else "msgpack")
            self.assertEqual(node_notation(decode_message(data)), entry["decoded"],
                             entry["file"])

    def _as(self, label: str) -> tuple[str, bytes, Any]:
        channel, data, decoded = fixture(label)
        self.node.sharded.uid = decoded["uid"]
        return channel, data, decoded

    def test_broadcasts(self) -> None:
        """Broadcasts: a room's own channel, except + binary (msgpack), several rooms +
        volatile, a socket id (the namespace's channel), another namespace."""
        cases = [
            ("broadcast-one-room", lambda: self.io.to("r1").emit("news", {"n": 1})),
            ("broadcast-except-binary", lambda: self.io.except_("r3").emit(
                "bin", {"data": bytes([0, 1, 2, 253, 254, 255])}, "tail")),
            ("broadcast-rooms-volatile", lambda: self.io.to(["r1", "r2"]).volatile.emit(
                "multi", 1.5, -3, 70000, 2 ** 40, "ünï ✓", None, True, [1, [2]])),
            ("broadcast-dates", lambda: self.io.emit("dates", "2026-11-27T02:20:12.497Z",
                                                      "1970-01-01T00:00:00.000Z")),
        ]
        for label, action in cases:
            channel, data, _ = self._as(label)
            action()
            self.assertEqual(self.node.published(), [(channel, data)], label)
        channel, data, decoded = self._as("broadcast-socket-id")
        [sid] = decoded["data"]["opts"]["rooms"]
        self.io.to(sid).emit("direct", "to-b1")
        self.assertEqual(self.node.published(), [(channel, data)])
        self.assertEqual(channel, MAIN)
        channel, data, decoded = fixture("broadcast-namespace")
        chat = self.io.of("/chat")
        assert isinstance(chat.adapter, ShardedRedisAdapter)
        chat.adapter.uid = decoded["uid"]
        chat.emit("hello", "chat")
        self.assertEqual(self.node.published(), [(channel, data)])

    def test_operations(self) -> None:
        """sockets_join / sockets_leave / disconnect_sockets and server-side emits."""
        cases = [
            ("sockets-join", lambda: self.io.in_("r1").sockets_join("r2")),
            ("sockets-leave", lambda: self.io.in_("r1").sockets_leave("r2")),
            ("disconnect-sockets", lambda: self.io.in_("r3").disconnect_sockets(True)),
            ("server-side-emit-1", lambda: self.io.server_side_emit("hello", {"q": 1})),
            ("server-side-emit-buffer", lambda: self.io.server_side_emit("buf", b"\x01\x02")),
        ]
        for label, action in cases:
            channel, data, _ = self._as(label)
            action()
            self.assertEqual(self.node.published(), [(channel, data)], label)

    def _request_id(self, decoded: Any) -> None:
        request_id = decoded["data"]["requestId"]
        self.node.sharded._new_id = lambda: request_id  # type: ignore[method-assign]

    def test_requests_and_their_answers(self) -> None:
        """fetch_sockets, server_side_emit_with_ack and a broadcast with acks send Node's
        requests (counting nodes with SHARDNUMSUB) and read Node's answers."""
        self.node.redis.nodes = 2
        channel, data, decoded = self._as("fetch-sockets-1")
        self._request_id(decoded)
        d = self.io.in_("r1").fetch_sockets()
        self.assertEqual(self.node.published(), [(channel, data)])
        self.assertIn([b"PUBSUB", b"SHARDNUMSUB", MAIN.encode()], self.node.redis.commands)
        answer_channel, answer, _ = fixture("fetch-sockets-2")
        self.assertEqual(answer_channel, f"{MAIN}{decoded['uid']}#")
        self.node.to_me(answer)
        [remote] = self.successResultOf(d)
        self.assertIsInstance(remote, RemoteSocket)
        self.assertEqual(remote.data, {"node": "node-B", "name": "b1"})

        channel, data, decoded = fixture("server-side-emit-ack-1")
        self._request_id(decoded)
        d = self.io.server_side_emit_with_ack("ping", {"q": "from-A"})
        self.assertEqual(self.node.published(), [(channel, data)])
        self.node.to_me(fixture("server-side-emit-ack-2")[1])
        self.assertEqual(self.successResultOf(d),
                         [{"node": "node-B", "echo": {"q": "from-A"}}])

        channel, data, decoded = fixture("broadcast-ack-1")
        self._request_id(decoded)
        d = self.io.to("r1").timeout(3).emit_with_ack("question", {"q": 42})
        self.assertEqual(self.node.published(), [(channel, data)])
        self.node.to_me(fixture("broadcast-ack-2")[1])
        self.node.to_me(fixture("broadcast-ack-3")[1])
        self.assertEqual(self.successResultOf(d), [{"from": "b1", "payload": {"q": 42}}])

    def test_answers_to_node_requests(self) -> None:
        """Node's requests get the answers Node's nodes give, on the requester's channel."""
        client, sid = self.node.client(name="b1")
        self.node.sharded.add_all(sid, ["r1"])
        self.io.on("ping", lambda arg: {"node": "node-B", "echo": arg})
        self.node.published()
        channel, data, decoded = fixture("server-side-emit-ack-1")
        self.node.message(channel, data)
        requester = f"{MAIN}{decoded['uid']}#"
        expected_channel, expected, _ = fixture("server-side-emit-ack-2")
        self.assertEqual(requester, expected_channel)
        [(answer_channel, answer)] = self.node.published()
        self.assertEqual(answer_channel, requester)
        self.assertEqual(json.loads(answer)["data"], json.loads(expected)["data"])
        self.assertEqual(json.loads(answer)["uid"], self.node.sharded.uid)

        self.node.message(*fixture("fetch-sockets-1")[:2])
        [(answer_channel, answer)] = self.node.published()
        body = json.loads(answer)
        self.assertEqual((answer_channel, body["type"]),
                         (requester, MessageType.FETCH_SOCKETS_RESPONSE))
        self.assertEqual([s["id"] for s in body["data"]["sockets"]], [sid])
        self.assertEqual(body["data"]["sockets"][0]["rooms"], [sid, "r1"])

        self.node.message(*fixture("broadcast-ack-1")[:2])
        [(_, count)] = self.node.published()
        self.assertEqual(json.loads(count)["data"]["clientCount"], 1)
        [packet] = client.received()
        assert packet.id is not None
        client.ack(packet.id, {"from": "b1", "payload": {"q": 42}})
        [(_, ack)] = self.node.published()
        self.assertEqual(json.loads(ack)["data"], json.loads(fixture("broadcast-ack-3")[1])
                         ["data"])

    def test_node_messages_reach_clients_and_own_echoes_do_not(self) -> None:
        """Node's broadcasts and operations act here; messages with this adapter's uid or
        another namespace's name do not."""
        client, sid = self.node.client(name="b1")
        self.node.sharded.add_all(sid, ["r1"])
        self.node.message(*fixture("broadcast-one-room")[:2])
        self.node.message(*fixture("broadcast-except-binary")[:2])
        self.assertEqual(client.events(), [["news", {"n": 1}],
                                           ["bin", {"data": bytes([0, 1, 2, 253, 254, 255])},
                                            "tail"]])
        self.node.message(*fixture("sockets-join")[:2])
        self.assertIn("r2", self.io.sockets.sockets[sid].rooms)
        self.node.message(*fixture("sockets-leave")[:2])
        self.assertNotIn("r2", self.io.sockets.sockets[sid].rooms)
        seen: list[Any] = []
        self.io.on("buf", lambda *args: seen.append(args))
        self.node.message(*fixture("server-side-emit-buffer")[:2])
        self.assertEqual(seen, [(b"\x01\x02",)])
        own = encode_cluster_message(MessageType.BROADCAST, {
            "packet": {"type": 2, "data": ["echo"]}, "opts": {"rooms": [], "except": []}},
            self.node.sharded.uid, "/")
        other_nsp = encode_cluster_message(MessageType.BROADCAST, {
            "packet": {"type": 2, "data": ["elsewhere"]}, "opts": {"rooms": []}}, "x", "/chat")
        self.node.message(MAIN, own)
        self.node.message(MAIN, other_nsp)
        self.assertEqual(client.events(), [])
        self.node.message(*fixture("disconnect-sockets")[:2])
        self.assertIn(sid, self.io.sockets.sockets)  # in r1, not r3

    def test_no_all_rooms(self) -> None:
        """The sharded format has no all_rooms request: it fails plainly."""
        self.failureResultOf(self.node.sharded.all_rooms(), RedisError)


class RoomChannels(SynchronousTestCase):
    """The subscription modes: which channels the node SSUBSCRIBEs, and where one-room
    broadcasts go."""

    def subscribed(self, node: _ShardedNode) -> list[list[bytes]]:
        return [[c[0], *c[1:]] for c in node.subscriptions()]

    def test_dynamic(self) -> None:
        """``dynamic``: a channel per public room while it exists; none for socket ids."""
        node = _ShardedNode()
        uid = node.sharded.uid
        self.assertEqual(self.subscribed(node), [
            [b"SSUBSCRIBE", MAIN.encode(), f"{MAIN}{uid}#".encode()]])
        _, sid = node.client(name="a")
        self.assertEqual(self.subscribed(node), [])
        node.sharded.add_all(sid, ["lobby"])
        self.assertEqual(self.subscribed(node), [[b"SSUBSCRIBE", b"socket.io#/#lobby#"]])
        node.io.to("lobby").emit("hi")
        [(channel, _)] = node.published()
        self.assertEqual(channel, "socket.io#/#lobby#")
        node.sharded.delete(sid, "lobby")
        self.assertEqual(self.subscribed(node), [[b"SUNSUBSCRIBE", b"socket.io#/#lobby#"]])

    def test_dynamic_private_and_static(self) -> None:
        """``dynamic-private`` also gives socket ids a channel; ``static`` gives no room one
        and publishes everything on the namespace's channel."""
        node = _ShardedNode(subscription_mode="dynamic-private")
        node.subscriptions()
        _, sid = node.client(name="a")
        self.assertEqual(self.subscribed(node), [[b"SSUBSCRIBE", f"{MAIN}{sid}#".encode()]])
        node.io.to(sid).emit("hi")
        self.assertEqual([c for c, _ in node.published()], [f"{MAIN}{sid}#"])
        node = _ShardedNode(subscription_mode="static")
        node.subscriptions()
        _, sid = node.client(name="a")
        node.sharded.add_all(sid, ["lobby"])
        self.assertEqual(self.subscribed(node), [])
        node.io.to("lobby").emit("hi")
        self.assertEqual([c for c, _ in node.published()], [MAIN])
        with self.assertRaises(ValueError):
            redis_adapter(sharded=True, subscription_mode="everything")

    def test_resubscribes_after_reconnecting(self) -> None:
        """A new subscriber connection SSUBSCRIBEs every channel again, room channels
        included."""
        node = _ShardedNode()
        _, sid = node.client(name="a")
        node.sharded.add_all(sid, ["lobby"])
        node.subscriptions()
        node.sub.loseConnection()
        node.clock.advance(1)
        [command] = self.subscribed(node)
        self.assertEqual(command[0], b"SSUBSCRIBE")
        self.assertEqual(set(command[1:]), {MAIN.encode(),
                                            node.sharded.response_channel.encode(),
                                            b"socket.io#/#lobby#"})


class Cycles(SynchronousTestCase):
    """A reference cycle in what is sent fails at once, as with the in-memory adapter."""

    def test_a_cyclic_argument_raises_value_error_at_once(self) -> None:
        """``emit``, ``server_side_emit`` and ``server_side_emit_with_ack`` with a cyclic
        argument raise ValueError within a small bound of work (the search for binary used
        to walk the cycle forever), and publish nothing."""
        node = _ShardedNode()
        node.redis.nodes = 2
        _, sid = node.client(name="a")
        node.published()
        cyclic: list[Any] = ["x"]
        cyclic.append(cyclic)
        with bounded_work(100_000):
            self.assertRaises(ValueError, node.io.emit, "x", cyclic)
            self.assertRaises(ValueError, node.io.to(sid).emit, "x", {"deep": cyclic})
            self.assertRaises(ValueError, node.io.server_side_emit, "x", cyclic)
            self.failureResultOf(node.io.server_side_emit_with_ack("x", cyclic), ValueError)
        self.assertEqual(node.published(), [])


class LoneSurrogateRooms(SynchronousTestCase):
    """A room name with a lone surrogate (JSON carries it, UTF-8 cannot) gets the channel
    Node's Redis clients name for it, its lone surrogates as U+FFFD."""

    CHANNEL = "socket.io#/#a\ufffd#"

    def test_joining_and_broadcasting(self) -> None:
        """Joining does not raise and SSUBSCRIBEs Node's channel; a broadcast to the room is
        published there as JSON and reaches the members of other nodes; with binary (msgpack,
        which has no lone surrogates) it reaches the local members only, counted and
        logged."""
        node = _ShardedNode()
        client, sid = node.client(name="a")
        node.subscriptions()
        node.io.sockets.sockets[sid].join("a\ud800")
        self.assertEqual(node.subscriptions(), [[b"SSUBSCRIBE", self.CHANNEL.encode()]])
        node.io.to("a\ud800").emit("news", "lone \udc00")
        self.assertEqual(client.events(), [["news", "lone \udc00"]])
        [(channel, message)] = node.published()
        self.assertEqual(channel, self.CHANNEL)
        self.assertEqual(json.loads(message)["data"]["opts"]["rooms"], ["a\ud800"])
        with capturedLogs() as events:
            node.io.to("a\ud800").emit("bin", b"\x01")
        self.assertEqual(client.events(), [["bin", b"\x01"]])
        self.assertEqual(node.published(), [])
        self.assertEqual(node.factory.counters.encode_failures, 1)
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertIn("cannot be published", warning["log_format"])
        other = encode_cluster_message(MessageType.BROADCAST, {
            "packet": {"type": 2, "data": ["from-node"]},
            "opts": {"rooms": ["a\ud800"], "except": []}}, "node-b", "/")
        node.message(self.CHANNEL, other)
        self.assertEqual(client.events(), [["from-node"]])

    def test_rooms_sharing_a_channel(self) -> None:
        """Rooms that differ only by lone surrogates share one channel: subscribed once, and
        unsubscribed when the last of them is gone."""
        node = _ShardedNode()
        _, a = node.client(name="a")
        _, b = node.client(name="b")
        node.subscriptions()
        node.sharded.add_all(a, ["a\ud800"])
        node.sharded.add_all(b, ["a\udfff"])
        self.assertEqual(node.subscriptions(), [[b"SSUBSCRIBE", self.CHANNEL.encode()]])
        node.sharded.delete(a, "a\ud800")
        self.assertEqual(node.subscriptions(), [])
        node.sharded.delete(b, "a\udfff")
        self.assertEqual(node.subscriptions(), [[b"SUNSUBSCRIBE", self.CHANNEL.encode()]])


class UnencodableServerSideEmits(SynchronousTestCase):
    """A server-side emit has no local part: what the cluster's encoding refuses fails at
    once, counted, with nothing published."""

    def test_refusals_fail_at_once_and_are_counted(self) -> None:
        """With binary (msgpack), a lone surrogate raises from ``server_side_emit`` and an
        integer from 2**64 fails ``server_side_emit_with_ack``; both are counted, neither is
        logged (the caller has the error) and nothing is published; without binary (JSON)
        the lone surrogate travels."""
        node = _ShardedNode()
        node.redis.nodes = 2
        node.published()
        with capturedLogs() as events:
            self.assertRaises(UnicodeEncodeError, node.io.server_side_emit, "x", b"\x01",
                              "\ud800")
            self.failureResultOf(node.io.server_side_emit_with_ack("x", b"\x01", 2**64),
                                 OverflowError)
        self.assertEqual(node.published(), [])
        self.assertEqual(node.factory.counters.encode_failures, 2)
        self.assertEqual([e for e in events if e["log_level"] >= LogLevel.warn], [])
        self.assertEqual(node.sharded._requests, {})
        node.io.server_side_emit("x", "\ud800")
        [(_, message)] = node.published()
        self.assertEqual(json.loads(message)["data"]["packet"], ["x", "\ud800"])


class ShardedHostilePeers(SynchronousTestCase):
    """The sharded format's channels have the same bounds: garbage is dropped and counted,
    forged answers keep nothing, a peer's ack timeout is clamped."""

    def test_garbage_and_forged_answers(self) -> None:
        """Oversized, malformed and unknown-type messages on the namespace's channel and on
        this node's own are dropped (one log line); answers to requests this node did not
        make keep nothing; Node's messages without data (heartbeats) are no garbage."""
        node = _ShardedNode()
        client, _ = node.client(name="a")
        with capturedLogs() as events:
            node.message(MAIN, b"{" + b" " * 2_000_000 + b"}")
            node.to_me(b"\xc1")
            node.message(MAIN, json.dumps({"type": 99, "data": {}, "nsp": "/"}).encode())
            node.message(MAIN, json.dumps({"type": 3, "data": [], "nsp": "/"}).encode())
            for i in range(500):
                node.to_me(encode_cluster_message(MessageType.FETCH_SOCKETS_RESPONSE, {
                    "requestId": f"R{i}", "sockets": [{"id": "x"}]}, "peer", "/"))
        self.assertEqual(node.factory.counters.dropped_by_reason,
                         {"too large": 1, "malformed": 3})
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.warn]), 1)
        self.assertEqual((node.sharded._requests, node.sharded._ack_requests), ({}, {}))
        self.assertEqual(client.events(), [])
        for mtype in (MessageType.HEARTBEAT, MessageType.ADAPTER_CLOSE):  # Node's: no data
            node.message(MAIN, json.dumps({"type": mtype, "uid": "peer", "nsp": "/"}).encode())
        self.assertEqual(node.factory.counters.dropped, 4)

    def test_a_peers_ack_timeout_is_clamped(self) -> None:
        """A broadcast with acknowledgements asking for 1e300 ms keeps this node's client's
        ack for ``max_ack_timeout`` (here 2 s) at most."""
        node = _ShardedNode(max_ack_timeout=2)
        _, sid = node.client(name="a")
        socket = node.io.sockets.sockets[sid]
        node.message(MAIN, encode_cluster_message(MessageType.BROADCAST, {
            "requestId": "B1", "packet": {"type": 2, "data": ["q"]},
            "opts": {"rooms": [], "except": [], "flags": {"timeout": 1e300}}}, "peer", "/"))
        self.assertEqual(len(socket._acks), 1)
        node.clock.advance(2)
        self.assertEqual(len(socket._acks), 0)


class ShardedMixedCluster(cluster.MixedCluster):
    """A txsio node and a Node node, both with the sharded adapter, on a real Redis: the
    mixed-cluster tests of the classic adapter (fetch_sockets, sockets_join / leave,
    disconnect_sockets, server_side_emit and broadcasts with acks, both ways), and those
    that differ here."""

    def create_nodes(self) -> None:
        node = TxsioNode("py", self.redis.url, self.reactor, sharded=True, **FAST)
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(node.stop()))
        self.py = node

    async def start_nodes(self) -> None:
        started = await self.peer.call("start-server", redis=self.redis.url, node="js",
                                       sharded=True)
        self.js_url = started["url"]
        await self.py.factory.ready()
        await self.wait_nodes(2)
        self.p1 = await self.connect("p1", self.py.url, rooms=["r1"])
        self.p2 = await self.connect("p2", self.py.url, rooms=["r2"])
        self.j1 = await self.connect("j1", self.js_url, rooms=["r1"])
        self.j2 = await self.connect("j2", self.js_url, rooms=["r2"])

    async def wait_nodes(self, count: int) -> None:
        """Wait (bounded) until both sides count ``count`` nodes (SHARDNUMSUB)."""
        async def counted() -> bool:
            try:
                mine = await self.py.io.sockets.adapter.server_count()
            except RedisUnavailableError:
                return False
            return mine == count and await self.peer.call("server-count") == count

        deadline = self.reactor.seconds() + 10
        while not await counted():
            if self.reactor.seconds() > deadline:
                raise AssertionError(f"the nodes do not count {count} nodes")
            await task.deferLater(self.reactor, 0.05, lambda: None)

    @_async
    async def test_all_rooms_and_server_count(self) -> None:
        """Both sides count two nodes; all_rooms does not exist in this format."""
        self.assertEqual(await self.py.io.sockets.adapter.server_count(), 2)
        self.assertEqual(await self.peer.call("server-count"), 2)
        with self.assertRaises(RedisError):
            await self.py.io.sockets.adapter.all_rooms()


    @_async
    async def test_broadcasts_both_ways(self) -> None:
        """Room broadcasts (room channels and the namespace's), binary included, txsio to
        Node and Node to txsio."""
        self.py.io.to("r1").emit("news", {"n": 1}, b"\x00\xff")
        self.assertEqual(await self.received("j1", "news"), [[{"n": 1}, {"$bytes": [0, 255]}]])
        await self.peer.call("emit", rooms=["r2"], event="js-news", args=["ünï"])
        self.assertEqual(await self.received("p2", "js-news"), [["ünï"]])
        await self.peer.call("emit", rooms=["r1", "r2"], event="both", args=[{"$bytes": [7]}])
        self.assertEqual(await self.received("p1", "both"), [[{"$bytes": [7]}]])
        self.py.io.except_("r1").emit("not-r1")
        await self.received("j2", "not-r1")
        await self.peer.call("emit", rooms=[self.p1], event="to-socket")
        await self.received("p1", "to-socket")
        self.py.io.emit("fence")
        await self.received("j1", "fence")
        self.assertEqual(self.peer.received("j2", "news"), [])
        self.assertEqual(self.peer.received("j1", "not-r1"), [])

    @_async
    async def test_redis_restart_heals_the_cluster(self) -> None:
        """Redis killed: local delivery goes on and cluster operations fail at once; Redis
        back: the txsio node re-subscribes (room channels too) and is a full peer again."""
        await self.redis.stop()
        await until(self.reactor, lambda: not self.py.factory.pub.ready, "the loss noticed")
        self.py.io.to("r1").emit("during", 1)
        self.assertEqual(await self.received("p1", "during"), [[1]])
        with self.assertRaises(RedisUnavailableError):
            await self.py.io.fetch_sockets()
        await self.redis.start()
        await self.py.factory.ready().addTimeout(10, self.reactor)
        await self.wait_nodes(2)
        await self.peer.call("emit", rooms=["r2"], event="after-js")
        await self.received("p2", "after-js")
        self.py.io.to("r1").emit("after", "py")
        await self.received("j1", "after")
        sockets = await self.py.io.fetch_sockets()
        self.assertEqual(_ids(sockets), sorted([self.p1, self.p2, self.j1, self.j2]))
        answers = await self.peer.call("server-side-emit-with-ack", event="ping", args=[1])
        self.assertEqual(answers, [{"node": "py", "echo": 1}])

