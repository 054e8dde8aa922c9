"""The Redis adapter without Redis: its messages against bytes captured from Node's packages,
channel and room mapping, own-echo rules, failure handling, and the RESP client — on a Clock,
with in-memory connections.

The fixtures in ``tests/fixtures/redis/`` are real traffic of two Node nodes (socket.io 4.8,
@socket.io/redis-adapter 8.3) and @socket.io/redis-emitter 5.1 (see the README there):
``index.json`` lists each message with its channel and its decoding by Node itself.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgpack
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.error import ConnectionRefusedError as TCPConnectionRefusedError
from twisted.internet.interfaces import IProtocol, IProtocolFactory, IStreamClientEndpoint
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

import txsio
import txsio.redis as redis_module
import txsio.redis.classic as classic_module
from txsio._timers import TimerQueue
from txsio.adapter import BroadcastFlags, BroadcastOptions
from txsio.engineio.session import EngineSession
from txsio.protocol import Packet, PacketType
from txsio.redis import (
    Emitter,
    RedisAdapter,
    RedisAdapterFactory,
    RedisAddress,
    RedisClusterAdapter,
    RedisConnection,
    RedisProtocolError,
    RedisReplyError,
    RedisUnavailableError,
    RemoteSocket,
    RequestTimeoutError,
    RespParser,
    broadcast_channel,
    decode_message,
    dumps,
    encode_broadcast,
    encode_command,
    pack,
    unpack,
)
from txsio.redis.connection import _RedisProtocol
from txsio.redis.resp import push_reader

from .sio_memory import MemoryClient

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "redis"
INDEX: list[dict[str, Any]] = json.loads((FIXTURES / "index.json").read_text("utf-8"))
EVENT = PacketType.EVENT


def fixture(label: str) -> tuple[str, bytes, Any]:
    """The channel, bytes and Node's decoding of the fixture whose file name has ``label``."""
    [entry] = [e for e in INDEX if e["file"][3:].startswith(label)]
    return entry["channel"], (FIXTURES / entry["file"]).read_bytes(), entry["decoded"]


def node_notation(value: Any) -> Any:
    """Our decoding in the fixtures' notation: bytes as {"$bin": hex}."""
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, list):
        return [node_notation(v) for v in value]
    if isinstance(value, dict):
        return {k: node_notation(v) for k, v in value.items()}
    return value


def dates_as_text(value: Any) -> Any:
    """Node's decoding with dates as the text a client would see (Date.toJSON)."""
    if isinstance(value, list):
        return [dates_as_text(v) for v in value]
    if isinstance(value, dict):
        if list(value) == ["$date"]:
            return value["$date"]
        return {k: dates_as_text(v) for k, v in value.items()}
    return value


# -- in-memory Redis connections --------------------------------------------------------------


class _Transport(StringTransport):
    """A transport that hands what is written to a fake Redis, and whose closing reaches the
    protocol at once."""

    def __init__(self, redis: FakeRedis | None = None) -> None:
        super().__init__()
        self.redis = redis
        self.protocol: Any = None

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.redis is not None:
            self.redis.written(self, data)

    def loseConnection(self) -> None:
        if not self.disconnecting:
            super().loseConnection()
            self.protocol.connectionLost(Failure(ConnectionError("closed")))

    def abortConnection(self) -> None:
        self.loseConnection()


#: The peer address the fake endpoints hand their protocol factory, as a TCP endpoint does.
REDIS_PEER = IPv4Address("TCP", "127.0.0.1", 6379)


def commands(transport: StringTransport) -> list[list[bytes]]:
    """The commands written on ``transport`` since the last call."""
    data = transport.value()
    transport.clear()
    return RespParser().feed(data)


def bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def push(kind: bytes, *parts: bytes) -> bytes:
    return b"*%d\r\n" % (len(parts) + 1) + bulk(kind) + b"".join(bulk(p) for p in parts)


@implementer(IStreamClientEndpoint)
class FakeRedis:
    """An endpoint whose connections answer at once as Redis would (``PUBLISH``: 1,
    ``PUBSUB NUMSUB``: :attr:`nodes`, subscriptions confirmed), or not at all when
    :attr:`answer` is false; connecting fails while :attr:`refuse` is set."""

    def __init__(self) -> None:
        self.transports: list[_Transport] = []
        self.refuse = False
        self.answer = True
        self.attempts = 0
        self.nodes = 1
        self.published: list[tuple[str, bytes]] = []
        self.subscribed: list[list[bytes]] = []
        #: every command, in order
        self.commands: list[list[bytes]] = []

    def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
        self.attempts += 1
        if self.refuse:
            return fail(TCPConnectionRefusedError("refused"))
        proto = factory.buildProtocol(REDIS_PEER)
        assert proto is not None
        transport = _Transport(self)
        transport.protocol = proto
        proto.makeConnection(transport)
        self.transports.append(transport)
        return succeed(proto)

    def written(self, transport: _Transport, data: bytes) -> None:
        for command in RespParser().feed(data):
            self.commands.append(command)
            name = command[0].upper()
            if name in (b"PUBLISH", b"SPUBLISH"):
                self.published.append((command[1].decode(), command[2]))
                reply = b":1\r\n"
            elif name == b"PUBSUB":
                reply = b"*2\r\n" + bulk(command[2]) + b":%d\r\n" % self.nodes
            elif name.endswith(b"SUBSCRIBE"):
                self.subscribed.append(command)
                reply = b"".join(b"*3\r\n" + bulk(name.lower()) + bulk(channel) + b":1\r\n"
                                 for channel in command[1:])
            else:
                reply = b"+OK\r\n"
            if self.answer:
                transport.protocol.dataReceived(reply)


class _Node:
    """A txsio server on a Clock with a Redis adapter over in-memory connections."""

    def __init__(self, **options: Any) -> None:
        self.clock = Clock()
        self.redis = FakeRedis()
        self.factory = RedisAdapterFactory("redis://127.0.0.1:6379", reactor=self.clock,
                                           endpoint=self.redis, **options)
        self.io = txsio.Server(adapter=self.factory, clock=self.clock)
        self.pub, self.sub = self.redis.transports
        adapter = self.io.sockets.adapter
        assert isinstance(adapter, RedisClusterAdapter)
        self.adapter = adapter

    def subscriptions(self) -> list[list[bytes]]:
        """The (P)(UN)SUBSCRIBE commands sent since the last call."""
        sent, self.redis.subscribed = self.redis.subscribed, []
        return sent

    def published(self) -> list[tuple[str, bytes]]:
        """``(channel, message)`` of each PUBLISH since the last call."""
        sent, self.redis.published = self.redis.published, []
        return sent

    def request(self, message: bytes, nsp: str = "/") -> None:
        channel = f"socket.io-request#{nsp}#".encode()
        self.sub.protocol.dataReceived(push(b"message", channel, message))

    def response(self, message: bytes, nsp: str = "/") -> None:
        channel = f"socket.io-response#{nsp}#".encode()
        self.sub.protocol.dataReceived(push(b"message", channel, message))

    def broadcast(self, channel: str, message: bytes) -> None:
        prefix, nsp = channel.split("#")[:2]
        pattern = f"{prefix}#{nsp}#*".encode()
        self.sub.protocol.dataReceived(push(b"pmessage", pattern, channel.encode(), message))

    def client(self, nsp: str = "/", **auth: Any) -> tuple[MemoryClient, str]:
        client = MemoryClient(self.io)
        sid = client.connect_ok(nsp, auth)["sid"]
        return client, str(sid)


class TooMuchWork(Exception):
    """Raised by :func:`bounded_work` when the code under test does more than its budget."""


@contextmanager
def bounded_work(budget: int) -> Iterator[Callable[[], int]]:
    """Count the Python and builtin calls made in the block (``sys.setprofile``), raising
    :class:`TooMuchWork` into the code past ``budget`` of them: a bound on work, not time, that
    turns a hang or a quadratic cost into a failure.  Yields a function giving the count."""
    count = 0

    def profile(frame: Any, event: str, arg: Any) -> None:
        nonlocal count
        count += 1
        if count > budget:
            raise TooMuchWork(f"more than {budget} calls")

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield lambda: count
    finally:
        sys.setprofile(previous)


def _no_failures(test: SynchronousTestCase, events: Sequence[dict[str, Any]]) -> None:
    test.assertEqual([e for e in events if e["log_level"] >= LogLevel.error], [])


# -- the captured messages ------------------------------------------------------------------


class DecodeFixtures(SynchronousTestCase):
    """Our decoder reads every captured message as Node does."""

    def test_every_message_decodes_as_node_decodes_it(self) -> None:
        """Each fixture (JSON or msgpack, told apart by the first byte) decodes to what
        notepack.io / JSON.parse gave, dates as their JSON text."""
        self.assertEqual(len(INDEX), 27)
        for entry in INDEX:
            data = (FIXTURES / entry["file"]).read_bytes()
            ours = decode_message(data)
            self.assertEqual(node_notation(ours), dates_as_text(entry["decoded"]), entry["file"])
            self.assertEqual(entry["encoding"], "json" if data[:1] == b"{" else "msgpack")

    def test_dates_are_their_json_text(self) -> None:
        """notepack.io's timestamp extensions (64 and 32 bits) become Date.toJSON text."""
        _, data, _ = fixture("broadcast-dates")
        self.assertEqual(unpack(data)[1]["data"][1:],
                         ["2026-11-27T02:20:12.497Z", "1970-01-01T00:00:00.000Z"])

    def test_legacy_extensions(self) -> None:
        """notepack.io's legacy ext 0 forms: undefined, date and ArrayBuffer."""
        self.assertIsNone(unpack(b"\xd4\x00\x00"))
        self.assertEqual(unpack(b"\xd7\x00" + (1000).to_bytes(8, "big")),
                         "1970-01-01T00:00:01.000Z")
        self.assertEqual(unpack(b"\xc7\x03\x00abc"), b"abc")
        self.assertEqual(unpack(b"\xd5\x05ab"), [5, b"ab"])

    def test_round_trip_is_byte_exact(self) -> None:
        """Re-encoding each decoded message gives Node's bytes back."""
        for entry in INDEX:
            data = (FIXTURES / entry["file"]).read_bytes()
            if data[:1] == b"{":
                self.assertEqual(dumps(json.loads(data)), data, entry["file"])
            elif "dates" not in entry["file"]:
                self.assertEqual(pack(unpack(data)), data, entry["file"])


class EncodeAsNode(SynchronousTestCase):
    """What txsio sends is byte for byte what Node sends for the same operation."""

    def setUp(self) -> None:
        self.node = _Node()
        self.adapter = self.node.adapter

    def test_broadcasts(self) -> None:
        """Broadcast messages and their channels: one room, except + binary, several rooms +
        volatile, a socket's broadcast, another namespace."""
        cases = [
            ("broadcast-one-room", ["news", {"n": 1}], BroadcastOptions(frozenset({"r1"}))),
            ("broadcast-except-binary",
             ["bin", {"data": bytes([0, 1, 2, 253, 254, 255])}, "tail"],
             BroadcastOptions(except_rooms=frozenset({"r3"}))),
            ("broadcast-rooms-volatile",
             ["multi", 1.5, -3, 70000, 2 ** 40, "ünï ✓", None, True, [1, [2]]],
             BroadcastOptions(frozenset({"r1", "r2"}), flags=BroadcastFlags(volatile=True))),
        ]
        for label, data, opts in cases:
            channel, expected, decoded = fixture(label)
            uid = decoded[0]
            message = encode_broadcast(uid, Packet(EVENT, "/", data), opts)
            self.assertEqual(message, expected, label)
            self.assertEqual(broadcast_channel("socket.io#/#", opts.rooms), channel)
        channel, expected, decoded = fixture("broadcast-socket-broadcast")
        opts = BroadcastOptions(except_rooms=frozenset(decoded[2]["except"]))
        self.assertEqual(encode_broadcast(decoded[0], Packet(EVENT, "/", ["relayed", "x"]),
                                          opts), expected)
        channel, expected, decoded = fixture("broadcast-namespace")
        self.assertEqual(encode_broadcast(decoded[0], Packet(EVENT, "/chat", ["hello", "chat"]),
                                          BroadcastOptions()), expected)
        self.assertEqual(channel, "socket.io#/chat#")

    def test_the_adapter_publishes_broadcasts_once(self) -> None:
        """``io.to(room).emit`` publishes one message on the one-room channel."""
        channel, expected, decoded = fixture("broadcast-one-room")
        self.adapter.uid = decoded[0]
        self.node.io.to("r1").emit("news", {"n": 1})
        self.assertEqual(self.node.published(), [(channel, expected)])

    def _ids(self, *ids: str) -> None:
        it = iter(ids)
        self.patch(classic_module, "new_uid", lambda: next(it))

    def test_requests(self) -> None:
        """fetchSockets, allRooms, socketsJoin / socketsLeave / disconnectSockets,
        serverSideEmit with and without ack, and broadcast with ack requests."""
        node = self.node
        for label, start in [
            ("all-rooms-1", lambda: node.adapter.all_rooms()),
            ("fetch-sockets-1", lambda: node.io.in_("r1").fetch_sockets()),
            ("server-side-emit-ack-1",
             lambda: node.io.server_side_emit_with_ack("ping", {"q": "from-A"})),
        ]:
            channel, expected, decoded = fixture(label)
            self.adapter.uid = decoded["uid"]
            self._ids(decoded["requestId"])
            node.redis.nodes = 2
            d = start()
            self.assertEqual(node.published(), [(channel, expected)], label)
            node.clock.advance(5)
            self.failureResultOf(d)
        simple = [
            ("sockets-join", lambda: node.io.in_("r1").sockets_join("r2")),
            ("sockets-leave", lambda: node.io.in_("r1").sockets_leave("r2")),
            ("disconnect-sockets-1", lambda: node.io.in_("r3").disconnect_sockets(True)),
            ("server-side-emit-1", lambda: node.io.server_side_emit("hello", {"q": 1})),
            ("server-side-emit-buffer", lambda: node.io.server_side_emit("buf", b"\x01\x02")),
        ]
        for label, start in simple:
            channel, expected, decoded = fixture(label)
            self.adapter.uid = decoded["uid"]
            start()
            self.assertEqual(node.published(), [(channel, expected)], label)
        channel, expected, decoded = fixture("broadcast-ack-1")
        self.adapter.uid = decoded["uid"]
        self._ids(decoded["requestId"])
        d = node.io.to("r1").timeout(3).emit_with_ack("question", {"q": 42})
        self.assertEqual(node.published(), [(channel, expected)])
        node.clock.advance(3)
        self.failureResultOf(d, txsio.AckTimeoutError)

    def test_responses(self) -> None:
        """allRooms, serverSideEmit-ack, client count and client-ack responses."""
        node = self.node
        channel, expected, decoded = fixture("all-rooms-2")
        ids = [r for r in decoded["rooms"] if r not in ("r1", "r3")]
        for sid, room in zip(ids, ["r1", "r3"], strict=True):
            node.adapter.add_all(sid, [sid, room])
        _, request, _ = fixture("all-rooms-1")
        node.request(request)
        self.assertEqual(node.published(), [(channel, expected)])

        @node.io.on("ping")
        def ping(arg: Any) -> Any:
            return {"node": "node-B", "echo": arg}

        channel, expected, _ = fixture("server-side-emit-ack-2")
        _, request, _ = fixture("server-side-emit-ack-1")
        node.request(request)
        self.assertEqual(node.published(), [(channel, expected)])

        client, sid = node.client(name="b1")
        node.adapter.add_all(sid, ["r1"])
        _, request, decoded = fixture("broadcast-ack-1")
        node.request(request)
        channel, expected, _ = fixture("broadcast-ack-2")
        self.assertEqual(node.published(), [(channel, expected)])
        [packet] = client.received()
        self.assertEqual(packet.data, ["question", {"q": 42}])
        assert packet.id is not None
        client.ack(packet.id, {"from": "b1", "payload": {"q": 42}})
        channel, expected, _ = fixture("broadcast-ack-3")
        self.assertEqual(node.published(), [(channel, expected)])

    def test_fetch_response_shape(self) -> None:
        """A fetchSockets answer has Node's shape: id, handshake (Node's keys, ``time`` text,
        ``issued`` ms), rooms (own id first) and data."""
        node = self.node
        _, sid = node.client(name="b1")
        node.adapter.add_all(sid, ["r1"])
        node.io.sockets.sockets[sid].data = {"node": "node-B", "name": "b1", "raw": b"\x01"}
        _, request, _ = fixture("fetch-sockets-1")
        node.request(request)
        [(channel, message)] = node.published()
        _, _, node_decoded = fixture("fetch-sockets-2")
        self.assertEqual(channel, "socket.io-response#/#")
        ours = json.loads(message)
        self.assertEqual(list(ours), list(node_decoded))
        [socket] = ours["sockets"]
        [theirs] = node_decoded["sockets"]
        self.assertEqual(list(socket), list(theirs))
        self.assertEqual(list(socket["handshake"]), list(theirs["handshake"]))
        self.assertEqual(socket["rooms"], [sid, "r1"])
        self.assertEqual(socket["data"], {"node": "node-B", "name": "b1",
                                          "raw": {"type": "Buffer", "data": [1]}})
        self.assertIsInstance(socket["handshake"]["time"], str)
        self.assertIsInstance(socket["handshake"]["issued"], int)

    def test_emitter(self) -> None:
        """txsio's Emitter writes what @socket.io/redis-emitter writes, on the same channels."""
        sent: list[tuple[str, bytes]] = []
        emitter = Emitter(publish=lambda channel, message: sent.append((channel, message)))
        emitter.to("r1").emit("news", {"from": "emitter"})
        emitter.except_("r3").emit("bin", {"data": bytes([0, 1, 2, 253, 254, 255])})
        emitter.of("chat").to("lobby").volatile.emit("hi", 1)
        emitter.in_("r1").sockets_join("r4")
        emitter.in_("r1").sockets_leave(["r4", "r5"])
        emitter.in_("r1").disconnect_sockets()
        emitter.server_side_emit("hello", "from emitter")
        expected = [fixture(label)[:2] for label in (
            "emitter-room", "emitter-except-binary", "emitter-namespace",
            "emitter-sockets-join", "emitter-sockets-leave", "emitter-disconnect-sockets",
            "emitter-server-side-emit")]
        self.assertEqual(sent, expected)
        self.assertRaises(ValueError, emitter.emit, "connect")
        self.assertRaises(ValueError, emitter.server_side_emit, "disconnect")


# -- applying what other nodes send ---------------------------------------------------------


class ApplyRemote(SynchronousTestCase):
    """What other nodes publish reaches this node's clients; own echoes do not."""

    def setUp(self) -> None:
        self.node = _Node()
        self.a, self.a_id = self.node.client(name="a")
        self.b, self.b_id = self.node.client(name="b")
        self.node.adapter.add_all(self.a_id, ["r1"])
        self.node.adapter.add_all(self.b_id, ["r3"])

    def test_node_broadcasts(self) -> None:
        """Node's broadcasts reach the selected clients, binary as attachments."""
        channel, data, _ = fixture("broadcast-one-room")
        self.node.broadcast(channel, data)
        self.assertEqual(self.a.events(), [["news", {"n": 1}]])
        self.assertEqual(self.b.events(), [])
        channel, data, _ = fixture("broadcast-except-binary")
        self.node.broadcast(channel, data)
        [packet] = self.a.received()
        self.assertEqual(packet.type, PacketType.BINARY_EVENT)
        self.assertEqual(packet.data, ["bin", {"data": bytes([0, 1, 2, 253, 254, 255])},
                                       "tail"])
        self.assertEqual(self.b.events(), [])
        channel, data, _ = fixture("broadcast-dates")
        self.node.broadcast(channel, data)
        self.assertEqual(self.b.events(), [["dates", "2026-11-27T02:20:12.497Z",
                                            "1970-01-01T00:00:00.000Z"]])

    def test_emitter_messages(self) -> None:
        """The emitter's messages (no uid on requests) are applied."""
        channel, data, _ = fixture("emitter-room")
        self.node.broadcast(channel, data)
        self.assertEqual(self.a.events(), [["news", {"from": "emitter"}]])
        self.node.request(fixture("emitter-sockets-join")[1])
        self.assertIn("r4", self.node.io.sockets.sockets[self.a_id].rooms)
        self.node.request(fixture("emitter-sockets-leave")[1])
        self.assertNotIn("r4", self.node.io.sockets.sockets[self.a_id].rooms)
        seen: list[Any] = []
        self.node.io.on("hello", lambda *args: seen.append(args))
        self.node.request(fixture("emitter-server-side-emit")[1])
        self.assertEqual(seen, [("from emitter",)])
        self.node.request(fixture("emitter-disconnect-sockets")[1])
        self.assertNotIn(self.a_id, self.node.io.sockets.sockets)
        self.assertIn(self.b_id, self.node.io.sockets.sockets)

    def test_own_broadcast_echo_is_dropped(self) -> None:
        """A broadcast carrying this adapter's uid is not delivered again."""
        self.node.io.to("r1").emit("mine", 1)
        [(channel, message)] = self.node.published()
        self.assertEqual(self.a.events(), [["mine", 1]])
        self.node.broadcast(channel, message)
        self.assertEqual(self.a.events(), [])

    def test_other_namespace_and_unknown_room_are_dropped(self) -> None:
        """A broadcast for another namespace, or for a room without members here (not even
        decoded), is dropped; a missing ``nsp`` means ``/``."""
        other = pack(["x", {"type": 2, "data": ["n"], "nsp": "/chat"}, {"rooms": []}])
        self.node.broadcast("socket.io#/#", other)
        with capturedLogs() as events:
            self.node.broadcast("socket.io#/#nowhere#", b"\xc1 not msgpack")
        self.assertEqual(events, [])
        no_nsp = pack(["x", {"type": 2, "data": ["plain"]}, {"rooms": ["r1"]}])
        self.node.broadcast("socket.io#/#r1#", no_nsp)
        self.assertEqual(self.a.events(), [["plain"]])

    def test_rooms_with_hashes_and_numbers(self) -> None:
        """The room is the channel minus the prefix and the last ``#`` (rooms may hold
        ``#``); numeric room names are read as their text."""
        self.node.adapter.add_all(self.a_id, ["a#b", "5"])
        self.node.broadcast("socket.io#/#a#b#", pack(["x", {"type": 2, "data": ["h"],
                                                            "nsp": "/"}, {"rooms": ["a#b"]}]))
        self.node.broadcast("socket.io#/#5#", pack(["x", {"type": 2, "data": ["n"], "nsp": "/"},
                                                   {"rooms": [5], "except": []}]))
        self.assertEqual(self.a.events(), [["h"], ["n"]])
        self.assertEqual(broadcast_channel("socket.io#/#", ["a#b"]), "socket.io#/#a#b#")
        self.assertEqual(broadcast_channel("socket.io#/#", []), "socket.io#/#")
        self.assertEqual(broadcast_channel("socket.io#/#", ["a", "b"]), "socket.io#/#")

    def test_glob_characters_in_namespaces_are_escaped(self) -> None:
        """The broadcast pattern matches the namespace literally."""
        nsp = self.node.io.of("/a*[b]")
        adapter = nsp.adapter
        assert isinstance(adapter, RedisAdapter)
        self.assertEqual(adapter.pattern, "socket.io#/a\\*\\[b\\]#*")
        subscribed = self.node.subscriptions()
        self.assertIn([b"PSUBSCRIBE", b"socket.io#/a\\*\\[b\\]#*"], subscribed)

    def test_sockets_join_echo_applied_once(self) -> None:
        """``sockets_join`` applies locally when called; its own echo is ignored; the same
        request from another node is applied."""
        self.node.io.in_("r1").sockets_join("x")
        self.assertIn("x", self.node.io.sockets.sockets[self.a_id].rooms)
        [(_, message)] = self.node.published()
        self.node.io.sockets.sockets[self.a_id].leave("x")
        self.node.request(message)  # our echo
        self.assertNotIn("x", self.node.io.sockets.sockets[self.a_id].rooms)
        self.node.request(fixture("sockets-join")[1].replace(b"r2", b"x"))  # Node's
        self.assertIn("x", self.node.io.sockets.sockets[self.a_id].rooms)
        self.node.request(fixture("sockets-leave")[1].replace(b"r2", b"x"))
        self.assertNotIn("x", self.node.io.sockets.sockets[self.a_id].rooms)

    def test_remote_disconnect(self) -> None:
        """Node's disconnectSockets(true) closes the selected clients' connections."""
        self.node.request(fixture("disconnect-sockets")[1])
        self.assertNotIn(self.b_id, self.node.io.sockets.sockets)
        self.assertTrue(self.b.closed)
        self.assertFalse(self.a.closed)

    def test_server_side_emit_own_echo_ignored(self) -> None:
        """A server-side emit carrying this adapter's uid does not reach its handlers."""
        seen: list[Any] = []
        self.node.io.on("hello", lambda *args: seen.append(args))
        self.node.io.on("buf", lambda *args: seen.append(args))
        self.node.io.server_side_emit("hello", 1)
        [(_, message)] = self.node.published()
        self.node.request(message)
        self.assertEqual(seen, [])
        self.node.request(fixture("server-side-emit-1")[1])
        self.assertEqual(seen, [({"q": 1},)])
        self.node.request(fixture("server-side-emit-buffer")[1])
        self.assertEqual(seen[-1], ({"type": "Buffer", "data": [1, 2]},))

    def test_server_side_emit_acks(self) -> None:
        """With a requestId the first handler's value answers, once, on the shared response
        channel; a Deferred answers when it fires; no handler answers null; reserved events
        are refused."""
        pending: Deferred[Any] = Deferred()
        self.node.io.on("later", lambda: pending)
        self.node.io.of("/").on("later", lambda: "second handler")
        self.node.request(dumps({"uid": "other", "requestId": "R1", "type": 6,
                                 "data": ["later"]}))
        self.assertEqual(self.node.published(), [])
        pending.callback(("first", "dropped"))
        self.assertEqual(self.node.published(), [
            ("socket.io-response#/#", b'{"type":6,"requestId":"R1","data":"first"}')])
        self.node.request(dumps({"uid": "other", "requestId": "R2", "type": 6,
                                 "data": ["unknown"]}))
        self.assertEqual(self.node.published(), [
            ("socket.io-response#/#", b'{"type":6,"requestId":"R2"}')])
        with capturedLogs() as events:
            self.node.request(dumps({"uid": "o", "type": 6, "data": ["connection", 1]}))
        self.assertEqual(len(events), 1)

    def test_requests_this_node_is_waiting_for_are_not_answered(self) -> None:
        """allRooms / fetchSockets / broadcast-with-ack requests are skipped by requestId
        when they are this node's own, and always answered otherwise (empty answers too)."""
        node = self.node
        node.redis.nodes = 2
        d = node.adapter.all_rooms()
        [(_, own)] = node.published()
        node.request(own)
        self.assertEqual(node.published(), [])
        node.request(dumps({"uid": "o", "requestId": "F1", "type": 5,
                            "opts": {"rooms": ["nobody"], "except": []}}))
        self.assertEqual(node.published(), [
            ("socket.io-response#/#", b'{"requestId":"F1","sockets":[]}')])
        node.request(pack({"uid": "o", "requestId": "B1", "type": 7,
                           "packet": {"type": 2, "data": ["q"], "nsp": "/"},
                           "opts": {"rooms": ["nobody"], "except": [], "flags": {}}}))
        self.assertEqual(node.published(), [
            ("socket.io-response#/#", b'{"type":8,"requestId":"B1","clientCount":0}')])
        answer = {"requestId": json.loads(own)["requestId"], "rooms": ["elsewhere"]}
        node.response(dumps(answer))
        self.assertEqual(self.successResultOf(d), {self.a_id, self.b_id, "r1", "r3",
                                                   "elsewhere"})

    def test_specific_response_channel(self) -> None:
        """With ``publish_on_specific_response_channel``, answers go to the requester's
        channel (serverSideEmit acks excepted, as in Node)."""
        node = _Node(publish_on_specific_response_channel=True)
        node.request(dumps({"uid": "ABCDEF", "requestId": "A1", "type": 1}))
        [(channel, _)] = node.published()
        self.assertEqual(channel, "socket.io-response#/#ABCDEF#")

    def test_legacy_single_socket_requests(self) -> None:
        """8.x never sends them, but the legacy forms (sid + room) are answered."""
        self.node.request(dumps({"uid": "o", "requestId": "L1", "type": 2,
                                 "sid": self.a_id, "room": "old"}))
        self.assertIn("old", self.node.io.sockets.sockets[self.a_id].rooms)
        self.assertEqual(self.node.published(), [
            ("socket.io-response#/#", b'{"requestId":"L1"}')])
        self.node.request(dumps({"uid": "o", "requestId": "S1", "type": 0, "rooms": ["r1"]}))
        self.assertEqual(json.loads(self.node.published()[0][1])["sockets"], [self.a_id])

    def test_malformed_messages_are_ignored(self) -> None:
        """Garbage on any channel is dropped without an error."""
        with capturedLogs() as events:
            self.node.request(b"{not json")
            self.node.request(b"\xc1")
            self.node.request(b"[1,2]")
            self.node.request(dumps({"type": 99}))
            self.node.response(b"\xc1")
            self.node.broadcast("socket.io#/#", b"\xc1")
            self.node.broadcast("socket.io#/#", pack(["x", {"data": "not a list"}, {}]))
        _no_failures(self, events)


# -- cluster requests -----------------------------------------------------------------------


class Requests(SynchronousTestCase):
    """Node counting, answers, timeouts and partial results."""

    def setUp(self) -> None:
        self.node = _Node(requests_timeout=2)
        self.client, self.sid = self.node.client(name="a")

    def test_fetch_alone_asks_nobody(self) -> None:
        """With one node (NUMSUB 1) fetch_sockets answers locally, publishing nothing."""
        d = self.node.io.fetch_sockets()
        [socket] = self.successResultOf(d)
        self.assertIs(socket, self.node.io.sockets.sockets[self.sid])
        self.assertEqual(self.node.published(), [])

    def test_fetch_collects_remote_sockets(self) -> None:
        """Remote answers become RemoteSockets; the request completes with NUMSUB - 1
        answers."""
        self.node.redis.nodes = 3
        d = self.node.io.fetch_sockets()
        [(_, message)] = self.node.published()
        request_id = json.loads(message)["requestId"]
        _, _, decoded = fixture("fetch-sockets-2")
        node_socket = decoded["sockets"][0]
        self.node.response(dumps({"requestId": request_id, "sockets": [node_socket]}))
        self.assertNoResult(d)
        self.node.response(dumps({"requestId": "someone-else's", "sockets": []}))
        self.assertNoResult(d)
        self.node.response(dumps({"requestId": request_id, "sockets": []}))
        local, remote = self.successResultOf(d)
        self.assertEqual(local.id, self.sid)
        self.assertIsInstance(remote, RemoteSocket)
        self.assertEqual(remote.id, node_socket["id"])
        self.assertEqual(remote.rooms, set(node_socket["rooms"]))
        self.assertEqual(remote.data, {"node": "node-B", "name": "b1"})
        self.assertEqual(remote.handshake.headers["host"], node_socket["handshake"]["headers"]
                         ["host"])
        self.assertEqual(remote.handshake.issued, node_socket["handshake"]["issued"])

    def test_remote_socket_acknowledgements(self) -> None:
        """``remote.timeout(s).emit_with_ack`` fires with the client's answer; fails at once
        when every node counted no such client, and when Redis cannot count the nodes."""
        self.node.redis.nodes = 2
        d = self.node.io.fetch_sockets()
        [(_, message)] = self.node.published()
        _, _, decoded = fixture("fetch-sockets-2")
        self.node.response(dumps({"requestId": json.loads(message)["requestId"],
                                  "sockets": decoded["sockets"]}))
        _, remote = self.successResultOf(d)
        for answer in (True, False):
            d = remote.timeout(3).emit_with_ack("question", 7)
            [(_, message)] = self.node.published()
            request = unpack(message)
            self.assertEqual(request["opts"]["rooms"], [remote.id])
            rid = request["requestId"]
            self.assertNoResult(d)
            self.node.response(dumps({"type": 8, "requestId": rid,
                                      "clientCount": 1 if answer else 0}))
            if answer:
                self.assertNoResult(d)
                self.node.response(pack({"type": 9, "requestId": rid, "packet": "yes"}))
                self.assertEqual(self.successResultOf(d), "yes")
            else:
                self.failureResultOf(d, txsio.AckTimeoutError)
        self.node.pub.loseConnection()
        self.failureResultOf(remote.timeout(3).emit_with_ack("question", 7),
                             RedisUnavailableError)
        self.assertEqual(self.client.events(), [])

    def test_fetch_timeout(self) -> None:
        """A node that does not answer fails the request after ``requests_timeout``, with
        what arrived."""
        self.node.redis.nodes = 3
        d = self.node.io.fetch_sockets()
        [(_, message)] = self.node.published()
        self.node.response(dumps({"requestId": json.loads(message)["requestId"],
                                  "sockets": []}))
        self.node.clock.advance(2)
        error = self.failureResultOf(d, RequestTimeoutError).value
        self.assertEqual([s.id for s in error.responses], [self.sid])

    def test_server_side_emit_with_ack(self) -> None:
        """Answers are expected from NUMSUB - 1 nodes; none expected: ``[]`` at once; a
        timeout reports the answers that arrived."""
        d = self.node.io.server_side_emit_with_ack("ping")
        self.assertEqual(self.successResultOf(d), [])
        self.assertEqual(self.node.published(), [])
        self.node.redis.nodes = 3
        d = self.node.io.timeout(0.5).server_side_emit_with_ack("ping", 1)
        [(_, message)] = self.node.published()
        request_id = json.loads(message)["requestId"]
        self.node.response(dumps({"type": 6, "requestId": request_id, "data": "pong"}))
        self.node.clock.advance(0.5)
        error = self.failureResultOf(d, txsio.AckTimeoutError).value
        self.assertEqual(error.responses, ["pong"])
        self.assertIn("only 1 responses received out of 2", str(error))

    def test_broadcast_with_ack_counts_every_node(self) -> None:
        """The requester waits for every node's client count (NUMSUB of them, itself
        included) and every client's answer."""
        self.node.redis.answer = False  # NUMSUB answered below
        d = self.node.io.timeout(5).emit_with_ack("question", 1)
        [(_, message)] = self.node.published()
        request = unpack(message)
        self.assertNotIn("id", request["packet"])
        self.assertEqual(request["opts"]["flags"], {"timeout": 5000})
        [packet] = self.client.received()
        assert packet.id is not None
        self.client.ack(packet.id, "local")
        self.assertNoResult(d)
        self.node.pub.protocol.dataReceived(b":1\r\n")  # the PUBLISH
        self.node.pub.protocol.dataReceived(b"*2\r\n" + bulk(b"x") + b":2\r\n")  # NUMSUB
        self.assertNoResult(d)
        rid = request["requestId"]
        self.node.response(dumps({"type": 8, "requestId": rid, "clientCount": 2}))
        self.node.response(pack({"type": 9, "requestId": rid, "packet": {"b": 1}}))
        self.assertNoResult(d)
        self.node.response(pack({"type": 9, "requestId": rid}))
        self.assertEqual(self.successResultOf(d), ["local", {"b": 1}, None])

    def test_local_operations_never_touch_redis(self) -> None:
        """``local`` emits, fetches and room operations publish nothing and ask nothing."""
        sent = len(self.node.redis.commands)
        self.node.io.local.emit("x", 1)
        self.node.io.local.sockets_join("y")
        d = self.node.io.local.to("y").timeout(1).emit_with_ack("q")
        found = self.successResultOf(self.node.io.local.fetch_sockets())
        self.assertEqual([s.id for s in found], [self.sid])
        self.assertEqual(self.node.redis.commands[sent:], [])
        packets = self.client.received()
        assert packets[1].id is not None
        self.client.ack(packets[1].id, "yes")
        self.assertEqual(self.successResultOf(d), ["yes"])
        self.assertEqual(packets[0].data, ["x", 1])

    def test_a_broadcast_does_not_wait_for_redis(self) -> None:
        """Local clients get a broadcast before Redis answered anything."""
        self.node.io.emit("now", 1)
        self.assertEqual(self.client.events(), [["now", 1]])
        self.assertEqual(len(self.node.published()), 1)

    def test_close_fails_pending_requests(self) -> None:
        """Closing the server fails requests still waiting and closes the connections."""
        self.node.redis.nodes = 2
        d = self.node.io.fetch_sockets()
        self.node.io.close()
        self.failureResultOf(d, redis_module.RedisError)
        self.assertTrue(self.node.pub.disconnecting)
        self.assertTrue(self.node.sub.disconnecting)
        self.assertEqual(self.node.clock.getDelayedCalls(), [])


# -- failures -------------------------------------------------------------------------------


class Outage(SynchronousTestCase):
    """Redis going away and coming back."""

    def setUp(self) -> None:
        self.node = _Node(min_reconnect_delay=0.1, max_reconnect_delay=1)
        self.client, self.sid = self.node.client()

    def _lose(self) -> None:
        self.node.redis.refuse = True
        self.node.pub.loseConnection()
        self.node.sub.loseConnection()

    def test_local_delivery_goes_on_and_cluster_operations_fail_fast(self) -> None:
        """While Redis is away, broadcasts reach local clients and cluster operations fail at
        once with RedisUnavailableError; the outage is logged once."""
        with capturedLogs() as events:
            self._lose()
            for i in range(3):
                self.node.io.emit("during", i)
            self.failureResultOf(self.node.io.fetch_sockets(), RedisUnavailableError)
            self.failureResultOf(self.node.io.sockets.adapter.all_rooms(),
                                 RedisUnavailableError)
            self.failureResultOf(self.node.io.server_side_emit_with_ack("x"),
                                 RedisUnavailableError)
            self.failureResultOf(self.node.io.timeout(1).emit_with_ack("q"),
                                 RedisUnavailableError)
            self.node.io.server_side_emit("fire-and-forget")
            self.node.clock.advance(30)  # many failed reconnection attempts
        self.assertEqual(self.client.events()[:3], [["during", 0], ["during", 1], ["during", 2]])
        warnings = [e for e in events if e["log_level"] >= LogLevel.warn]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("is unavailable", warnings[0]["log_format"])
        _no_failures(self, events)
        error = self.failureResultOf(self.node.io.fetch_sockets()).value
        self.assertIn("Redis at 127.0.0.1:6379 is unavailable", str(error))

    def test_reconnect_with_backoff_and_resubscribe(self) -> None:
        """Reconnection attempts back off (doubling, capped); once back, every channel is
        subscribed again, once."""
        self._lose()
        attempts = self.node.redis.attempts
        times = []
        connection = self.node.factory.pub
        for _ in range(8):
            call = connection._retry
            assert call is not None
            times.append(call.getTime() - self.node.clock.seconds())
            self.node.clock.advance(times[-1])
        self.assertGreater(self.node.redis.attempts, attempts)
        self.assertLessEqual(max(times), 1.0)
        self.assertGreater(times[3], times[0] * 4)  # doubling, with jitter of at most 20%
        self.assertGreater(times[-1], 0.75)
        self.node.redis.refuse = False
        self.node.subscriptions()
        with capturedLogs() as events:
            self.node.clock.advance(1)
        pub, sub = self.node.redis.transports[-2:]
        subscribed = self.node.subscriptions()
        self.assertEqual(sorted(c[0] for c in subscribed), [b"PSUBSCRIBE", b"SUBSCRIBE"])
        channels = sorted(name for c in subscribed for name in c[1:])
        self.assertEqual(channels, sorted([b"socket.io#/#*", b"socket.io-request#/#",
                                           b"socket.io-response#/#",
                                           f"socket.io-response#/#{self.node.adapter.uid}#"
                                           .encode()]))
        self.assertTrue(any("is back" in e["log_format"] for e in events))
        self.node.pub, self.node.sub = pub, sub
        self.node.io.emit("after")
        self.assertEqual(len(self.node.published()), 1)

    def test_unanswered_command_drops_the_connection(self) -> None:
        """A command without a reply for ``command_timeout`` fails, and the connection is
        dropped and made again."""
        self.node.redis.answer = False
        d = self.node.io.fetch_sockets()
        self.node.clock.advance(5)
        self.failureResultOf(d, RedisUnavailableError)
        self.assertTrue(self.node.pub.disconnecting)
        self.node.clock.advance(1)
        self.assertEqual(len(self.node.redis.transports), 3)


class WaitingForRedis(SynchronousTestCase):
    """What waits for Redis's replies is bounded: beyond, commands fail at once, logged once
    per overflow, and local delivery goes on."""

    def test_an_unanswering_redis_holds_a_bounded_backlog(self) -> None:
        """With Redis silent (paused), 10 broadcasts reach the local client, 3 wait for
        Redis and 7 fail at once; across the reconnection the watchdog makes, the overflow is
        logged once, and once more when Redis has caught up."""
        node = _Node(max_pending_commands=3)
        client, _ = node.client()
        node.redis.answer = False
        pub = node.factory.pub
        with capturedLogs() as events:
            for i in range(10):
                node.io.emit("tick", i)
            self.assertEqual(len(client.events()), 10)
            self.assertEqual(len(node.published()), 3)
            assert pub.protocol is not None
            self.assertEqual((len(pub.protocol._pending), pub.refused_commands), (3, 7))
            node.clock.advance(5)  # the watchdog drops the silent connection
            node.clock.advance(1)
            assert pub.protocol is not None
            for i in range(10):
                node.io.emit("tock", i)
            self.assertEqual(len(client.events()), 10)
            self.assertEqual((len(pub.protocol._pending), pub.refused_commands), (3, 14))
            pub.protocol.dataReceived(b":1\r\n" * 3)  # Redis is back
            node.redis.answer = True
            node.io.emit("after")
        texts = [formatEvent(e) for e in events if e.get("log_namespace") == "txsio.redis"]
        self.assertEqual(len([t for t in texts if "wait for Redis" in t]), 1, texts)
        self.assertEqual(len([t for t in texts if "caught up" in t]), 1, texts)
        self.assertEqual(pub.refused_commands, 14)
        self.assertEqual(len(pub.protocol._pending), 0)

    def test_bytes_waiting_are_bounded_but_a_lone_command_goes(self) -> None:
        """``max_pending_bytes`` refuses what would pile up beyond it; a single command larger
        than the bound is still sent when nothing waits."""
        node = _Node(max_pending_bytes=1000)
        node.redis.answer = False
        node.io.emit("big", "x" * 5000)
        node.io.emit("small")
        self.assertEqual(len(node.published()), 1)
        self.assertEqual(node.factory.pub.refused_commands, 1)

    def test_the_first_attempt_queue_is_bounded(self) -> None:
        """Commands sent while the first connection attempt is in progress wait for it, two
        at most here; more fail at once."""
        @implementer(IStreamClientEndpoint)
        class Endpoint:
            def connect(self, factory: Any) -> Deferred[Any]:
                return Deferred()

        connection = RedisConnection(Endpoint(), RedisAddress(), clock=Clock(),
                                     max_pending_commands=2)
        connection.start()
        waiting = [connection.command(b"PING") for _ in range(5)]
        for d in waiting[:2]:
            self.assertNoResult(d)
        for d in waiting[2:]:
            self.failureResultOf(d, RedisUnavailableError)
        self.assertEqual(connection.refused_commands, 3)
        connection.close()
        for d in waiting[:2]:
            self.failureResultOf(d, RedisUnavailableError)


class Connection(SynchronousTestCase):
    """The RESP client."""

    def test_parser(self) -> None:
        """Every RESP2 type, fed one byte at a time."""
        data = (b"+OK\r\n-ERR bad\r\n:42\r\n$3\r\n\x00\r\n\r\n$-1\r\n*2\r\n$1\r\na\r\n*1\r\n:1\r\n"
                b"*-1\r\n$0\r\n\r\n")
        parser = RespParser()
        replies: list[Any] = []
        for i in range(len(data)):
            replies.extend(parser.feed(data[i:i + 1]))
        self.assertEqual(replies[0], "OK")
        self.assertIsInstance(replies[1], RedisReplyError)
        self.assertEqual(str(replies[1]), "ERR bad")
        self.assertEqual(replies[2:], [42, b"\x00\r\n", None, [b"a", [1]], None, b""])
        self.assertRaises(RedisProtocolError, RespParser().feed, b"?what\r\n")
        self.assertRaises(RedisProtocolError, RespParser().feed, b":x\r\n")
        self.assertRaises(RedisProtocolError, RespParser(max_depth=2).feed,
                          b"*1\r\n*1\r\n*1\r\n:1\r\n")
        self.assertEqual(encode_command([b"PUBLISH", "ch", 5]),
                         b"*3\r\n$7\r\nPUBLISH\r\n$2\r\nch\r\n$1\r\n5\r\n")

    def test_payloads_stay_bytes(self) -> None:
        """Bulk replies are never decoded: UTF-8-valid and numeric payloads stay bytes."""
        self.assertEqual(RespParser().feed(b"$2\r\n42\r\n$2\r\n\xc3\xa9\r\n"), [b"42", b"\xc3\xa9"])

    def test_auth_select_and_first_attempt_queue(self) -> None:
        """AUTH and SELECT run first; commands sent during the first attempt wait for it."""
        clock = Clock()
        pending: Deferred[Any] = Deferred()

        @implementer(IStreamClientEndpoint)
        class Endpoint:
            def connect(self, factory: IProtocolFactory) -> Deferred[IProtocol]:
                proto = factory.buildProtocol(REDIS_PEER)
                assert proto is not None
                self.proto = proto
                self.transport = _Transport()
                self.transport.protocol = self.proto
                self.proto.makeConnection(self.transport)
                return pending

        endpoint = Endpoint()
        address = RedisAddress.parse("redis://user:s%40cret@example:6380/2")
        self.assertEqual((address.host, address.port, address.username, address.password,
                          address.db), ("example", 6380, "user", "s@cret", 2))
        connection = RedisConnection(endpoint, address, clock=clock)
        connection.start()
        d = connection.command(b"PING")
        pending.callback(endpoint.proto)
        self.assertEqual(commands(endpoint.transport), [[b"AUTH", b"user", b"s@cret"]])
        endpoint.proto.dataReceived(b"+OK\r\n")
        self.assertEqual(commands(endpoint.transport), [[b"SELECT", b"2"]])
        endpoint.proto.dataReceived(b"+OK\r\n")
        self.assertEqual(commands(endpoint.transport), [[b"PING"]])
        endpoint.proto.dataReceived(b"+PONG\r\n")
        self.assertEqual(self.successResultOf(d), "PONG")
        closing = connection.close()
        self.successResultOf(closing)
        self.failureResultOf(connection.command(b"PING"), RedisUnavailableError)

    def test_urls(self) -> None:
        """Only redis:// URLs with a numeric database are accepted."""
        self.assertEqual(RedisAddress.parse("redis://"), RedisAddress())
        self.assertRaises(ValueError, RedisAddress.parse, "rediss://host")
        self.assertRaises(ValueError, RedisAddress.parse, "redis://host/db")
        self.assertRaises(ValueError, RedisAddress.parse, "redis://host:port")

    def test_json(self) -> None:
        """JSON as JSON.stringify writes it: compact, UTF-8, NaN as null, Buffers."""
        self.assertEqual(dumps({"a": [1.5, float("nan")], "b": "é", "c": b"\x01"}),
                         '{"a":[1.5,null],"b":"é","c":{"type":"Buffer","data":[1]}}'.encode())
        self.assertRaises(TypeError, dumps, {"x": object()})
        self.assertEqual(dumps({"x": object()}, lenient=True), b'{"x":null}')
        self.assertEqual(dumps("\ud800"), b'"\\ud800"')

    def test_one_factory_per_server(self) -> None:
        """Two servers on one factory would count as one node: refused."""
        node = _Node()
        self.assertRaises(ValueError, txsio.Server, adapter=node.factory, clock=node.clock)


class Readers(SynchronousTestCase):
    """The RESP readers keep an unfinished reply as far as they read it."""

    @staticmethod
    def _long_reply(n: int) -> bytes:
        return b"*%d\r\n" % n + b"".join(b"$5\r\nitem%d\r\n" % (i % 10) for i in range(n))

    def _feed(self, reader: Any, data: bytes, chunk: int) -> list[Any]:
        replies: list[Any] = []
        for i in range(0, len(data), chunk):
            replies.extend(reader.feed(data[i:i + chunk]))
        return replies

    def test_a_long_reply_in_small_chunks_costs_linear_work(self) -> None:
        """A 20,000-item reply fed 7 bytes at a time costs the pure parser a few times what
        it costs fed at once, not a restart from its first byte on every chunk."""
        data = self._long_reply(20_000)
        with bounded_work(10**9) as whole:
            [reply] = self._feed(RespParser(), data, len(data))
        at_once = whole()
        with bounded_work(5 * at_once):
            [chunked] = self._feed(RespParser(), data, 7)
        self.assertEqual(chunked, reply)
        self.assertEqual(len(reply), 20_000)
        self.assertEqual(reply[:2], [b"item0", b"item1"])

    def test_subscribed_connections_read_with_hiredis(self) -> None:
        """The reader of a subscribed connection is hiredis's, with RespParser's error
        classes, fed byte by byte as well as at once."""
        import hiredis

        reader = push_reader()
        self.assertIsInstance(getattr(reader, "_reader", None), hiredis.Reader)
        data = (push(b"message", b"ch", b"\x00\xff") + b"-ERR no\r\n*2\r\n*1\r\n:1\r\n$-1\r\n"
                + self._long_reply(3))
        replies = self._feed(reader, data, 1)
        self.assertEqual(replies[0], [b"message", b"ch", b"\x00\xff"])
        self.assertIsInstance(replies[1], RedisReplyError)
        self.assertEqual(str(replies[1]), "ERR no")
        self.assertEqual(replies[2:], [[[1], None], [b"item0", b"item1", b"item2"]])
        self.assertRaises(RedisProtocolError, push_reader().feed, b"?what\r\n")


class Unencodable(SynchronousTestCase):
    """What the cluster's encoding cannot carry never stops local delivery."""

    def test_msgpack_refusals_still_reach_local_clients(self) -> None:
        """A lone surrogate or an integer from 2**64 (msgpack has no form for them) in
        ``io.to(room).emit`` reaches the room's local clients; the broadcast is not published,
        and that is logged."""
        node = _Node()
        client, sid = node.client()
        node.adapter.add_all(sid, ["r1"])
        node.published()
        for value in ("lone \ud800", 2**64):
            with capturedLogs() as events:
                node.io.to("r1").emit("odd", value)
            self.assertEqual(client.events(), [["odd", value]])
            self.assertEqual(node.published(), [])
            [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
            self.assertIn("cannot be published", warning["log_format"])
        node.io.to("r1").emit("plain", 1)
        self.assertEqual(len(node.published()), 1)

    def test_refusals_from_redis_are_logged_truncated(self) -> None:
        """An error reply of Redis to a PUBLISH is logged once, cut to 200 characters."""
        node = _Node()
        node.redis.answer = False
        with capturedLogs() as events:
            node.io.emit("x", 1)
            node.pub.protocol.dataReceived(b"-ERR " + b"y" * 5000 + b"\r\n")
        [warning] = [e for e in events if e["log_level"] == LogLevel.warn]
        self.assertLessEqual(len(warning["why"]), 203)
        self.assertTrue(warning["why"].startswith("ERR yyy"))


class UnencodableElsewhere(SynchronousTestCase):
    """The other paths of what the cluster's encoding cannot carry: local delivery goes on,
    and the failure is counted, its log lines rate-limited."""

    def test_broadcast_with_ack_reaches_local_clients(self) -> None:
        """``emit_with_ack`` with a lone surrogate or an integer from 2**64 reaches the local
        clients, whose answers come back when the wait ends at its timeout; nothing is
        published or left waiting, and each failure is counted."""
        node = _Node()
        node.redis.nodes = 2
        client, sid = node.client()
        node.adapter.add_all(sid, ["r1"])
        node.published()
        for count, value in enumerate(("lone \ud800", 2**64), 1):
            d = node.io.to("r1").timeout(1).emit_with_ack("odd", value)
            [packet] = client.received()
            self.assertEqual(packet.data, ["odd", value])
            assert packet.id is not None
            client.ack(packet.id, "seen")
            self.assertEqual(node.published(), [])
            self.assertEqual(node.factory.counters.encode_failures, count)
            node.clock.advance(1)
            error = self.failureResultOf(d, txsio.AckTimeoutError).value
            self.assertEqual(error.responses, ["seen"])
        self.assertEqual(node.adapter._ack_requests, {})

    def test_log_lines_are_rate_limited(self) -> None:
        """50 broadcasts that cannot be published are 50 counted failures but 10 log lines;
        the next window's first line says how many were not logged."""
        node = _Node()
        with capturedLogs() as events:
            for _ in range(50):
                node.io.emit("odd", "\udfff")
        self.assertEqual(node.factory.counters.encode_failures, 50)
        self.assertEqual(len([e for e in events if e["log_level"] == LogLevel.warn]), 10)
        node.clock.advance(10)
        with capturedLogs() as events:
            node.io.emit("odd", 2**64)
        [warning] = events
        self.assertEqual(warning["held_back"], 40)

    def test_the_emitter_refuses_at_once(self) -> None:
        """The emitter has no local part: what msgpack cannot carry raises at once and
        publishes nothing; the next emit goes out."""
        sent: list[tuple[str, bytes]] = []
        emitter = Emitter(publish=lambda channel, message: sent.append((channel, message)))
        self.assertRaises(UnicodeEncodeError, emitter.to("r1").emit, "x", "\ud800")
        self.assertRaises(UnicodeEncodeError, emitter.to("\ud800").emit, "x")
        self.assertRaises(OverflowError, emitter.emit, "x", 2**64)
        self.assertEqual(sent, [])
        emitter.emit("x", 1)
        self.assertEqual(len(sent), 1)


def warnings(events: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of ``events`` at the warn level."""
    return [e for e in events if e["log_level"] == LogLevel.warn]


class HostilePeers(SynchronousTestCase):
    """Garbage published on the adapter's channels is dropped with a counter and a
    rate-limited log line, and costs what the bounds allow: nothing is kept once its (clamped)
    timeouts have passed."""

    def setUp(self) -> None:
        self.node = _Node()
        self.client, self.sid = self.node.client()
        self.node.adapter.add_all(self.sid, ["r1"])
        self.counters = self.node.factory.counters
        self.socket = self.node.io.sockets.sockets[self.sid]

    def advance(self, seconds: int) -> None:
        """Let ``seconds`` pass, the client answering the server's pings."""
        for _ in range(seconds):
            self.node.clock.advance(1)
            self.client.pong()

    def kept(self) -> tuple[int, int, int]:
        """What the node keeps: requests, broadcasts with acks, its client's pending acks."""
        adapter = self.node.adapter
        return len(adapter._requests), len(adapter._ack_requests), len(self.socket._acks)

    def timers(self) -> list[Any]:
        """The node's timers but the Redis connections' watchdogs and the heartbeat."""
        return [call for call in self.node.clock.getDelayedCalls()
                if not isinstance(getattr(getattr(call, "func", None), "__self__", None),
                                  (_RedisProtocol, EngineSession, TimerQueue))]

    def event(self, data: list[Any], rooms: list[Any] | None = None, **more: Any) -> bytes:
        """A classic broadcast (msgpack) of ``data`` to ``rooms``."""
        return pack(["other", {"type": 2, "data": data, "nsp": "/"},
                     {"rooms": rooms or [], "except": [], **more}])

    def test_oversized_messages_are_dropped_unread(self) -> None:
        """8 MB on the request, response and broadcast channels is dropped before anything
        decodes it, with one log line; ``max_message_size`` sets the bound."""
        small = _Node(max_message_size=100)
        client, _ = small.client()
        small.broadcast("socket.io#/#", self.event(["big", "y" * 100]))
        small.broadcast("socket.io#/#", self.event(["small"]))
        self.assertEqual(client.events(), [["small"]])
        self.assertEqual(small.factory.counters.dropped, 1)

        def never(data: bytes) -> Any:
            raise AssertionError("decoded")

        self.patch(redis_module.base, "decode_message", never)
        self.patch(classic_module, "unpack", never)
        blob = b"\x92" + b"x" * 8_000_000
        with capturedLogs() as events:
            self.node.request(blob)
            self.node.response(blob)
            self.node.broadcast("socket.io#/#", blob)
        self.assertEqual(self.counters.dropped_by_reason, {"too large": 3})
        [line] = warnings(events)
        self.assertLess(len(formatEvent(line)), 600)
        self.assertEqual(self.client.events(), [])

    def test_deep_messages_are_dropped(self) -> None:
        """A JSON request 100,000 deep (beyond Python's recursion) and messages nested deeper
        than ``max_message_depth`` are dropped, with no error logged; 60 deep is delivered."""
        deep: Any = "x"
        for _ in range(100):
            deep = [deep]
        with capturedLogs() as events:
            self.node.request(b'{"type":5,"opts":' + b"[" * 100_000)
            self.node.broadcast("socket.io#/#", self.event(["deep", deep]))
            self.node.request(dumps({"uid": "o", "type": 2, "opts": {"rooms": [deep]},
                                     "rooms": ["x"]}))
        _no_failures(self, events)
        self.assertEqual(self.counters.dropped_by_reason, {"malformed": 1, "too deep": 2})
        self.assertEqual(self.client.events(), [])
        shallow: Any = "x"
        for _ in range(60):
            shallow = [shallow]
        self.node.broadcast("socket.io#/#", self.event(["shallow", shallow]))
        self.assertEqual(len(self.client.events()), 1)

    def test_binary_and_extension_floods_are_dropped(self) -> None:
        """A broadcast of more than ``max_message_items`` binary or extension values is
        dropped; a few are delivered (extensions as notepack.io decodes them)."""
        self.node.broadcast("socket.io#/#", self.event(
            ["ext", [msgpack.ExtType(5, b"") for _ in range(10_001)]]))
        self.node.broadcast("socket.io#/#", self.event(["bin", [b""] * 10_001]))
        self.assertEqual(self.counters.dropped_by_reason, {"too many items": 2})
        self.assertEqual(self.client.events(), [])
        self.node.broadcast("socket.io#/#", self.event(["ext", msgpack.ExtType(5, b"ab")]))
        self.assertEqual(self.client.events(), [["ext", [5, b"ab"]]])

    def test_absurd_timeouts_are_clamped(self) -> None:
        """2,000 broadcasts with acknowledgements whose timeout is "1e300 ms" (or an integer
        too large for a float) keep their acks and timers for ``max_ack_timeout`` at most;
        those that reach no client keep nothing."""
        clock = self.node.clock
        self.assertEqual(self.timers(), [])
        for i in range(2_000):
            timeout: Any = 1e300 if i % 2 else 10**400
            self.node.request(pack({
                "uid": "o", "requestId": f"B{i}", "type": 7,
                "packet": {"type": 2, "data": ["q"], "nsp": "/"},
                "opts": {"rooms": [], "except": [], "flags": {"timeout": 1e300}}})
                if i % 2 else dumps({
                    "uid": "o", "requestId": f"B{i}", "type": 7,
                    "packet": {"type": 2, "data": ["q"], "nsp": "/"},
                    "opts": {"rooms": [], "except": [], "flags": {"timeout": timeout}}}))
        self.assertEqual(self.kept(), (0, 0, 2_000))
        self.assertEqual(len(self.timers()), 2_000)
        self.assertLessEqual(max(call.getTime() for call in self.timers()), clock.seconds() + 60)
        self.advance(60)
        self.assertEqual((self.kept(), self.timers()), ((0, 0, 0), []))
        self.node.request(pack({"uid": "o", "requestId": "N", "type": 7,
                                "packet": {"type": 2, "data": ["q"], "nsp": "/"},
                                "opts": {"rooms": ["nobody"], "flags": {"timeout": 1e300}}}))
        self.assertEqual((self.kept(), self.timers()), ((0, 0, 0), []))

    def test_responses_only_for_own_requests_and_no_more(self) -> None:
        """Answers to requests this node did not make keep nothing (on the shared channel
        they are other nodes' business: neither counted nor logged); a request takes the
        answers it expects and no more; a broadcast's acknowledgements, no more than the
        clients counted."""
        node = self.node
        with capturedLogs() as events:
            for i in range(1_000):
                node.response(dumps({"requestId": f"F{i}", "sockets": [{"id": "x" * 20}]}))
                node.response(dumps({"type": 6, "requestId": f"S{i}", "data": "x"}))
                node.response(dumps({"type": 8, "requestId": f"B{i}", "clientCount": 10**6}))
                node.response(pack({"type": 9, "requestId": f"B{i}", "packet": "x"}))
        self.assertEqual((warnings(events), self.counters.dropped), ([], 0))
        self.assertEqual(self.kept(), (0, 0, 0))
        node.redis.nodes = 3
        d = node.io.fetch_sockets()
        [(_, message)] = node.published()
        request_id = json.loads(message)["requestId"]
        many = [{"id": f"s{i}"} for i in range(10_001)]
        node.response(dumps({"requestId": request_id, "sockets": many}))
        self.assertEqual(self.counters.dropped_by_reason, {"too many items": 1})
        node.response(dumps({"requestId": request_id, "sockets": [{"id": "b1"}]}))
        node.response(dumps({"requestId": request_id, "sockets": [{"id": "c1"}]}))
        node.response(dumps({"requestId": request_id, "sockets": [{"id": "d1"}]}))
        self.assertEqual([s.id for s in self.successResultOf(d)], [self.sid, "b1", "c1"])
        node.redis.nodes = 2
        d = node.io.to("nobody").timeout(5).emit_with_ack("q")
        [(_, message)] = node.published()
        request_id = unpack(message)["requestId"]
        node.response(dumps({"type": 8, "requestId": request_id, "clientCount": -5}))
        node.response(dumps({"type": 8, "requestId": request_id, "clientCount": 1}))
        node.response(pack({"type": 9, "requestId": request_id, "packet": "first"}))
        node.response(pack({"type": 9, "requestId": request_id, "packet": "forged"}))
        self.assertEqual(self.successResultOf(d), ["first"])
        self.assertEqual(self.counters.dropped_by_reason,
                         {"too many items": 1, "malformed": 1, "unexpected": 1})
        node.clock.advance(5)
        self.assertEqual(self.kept(), (0, 0, 0))

    def test_room_lists_are_bounded(self) -> None:
        """``sockets_join`` of 50,000 rooms, a broadcast excepting 10,001 rooms and a remote
        socket in 10,001 rooms are dropped; an ``all_rooms`` answer is bounded by its size
        only."""
        rooms = [f"room-{i}" for i in range(50_000)]
        self.node.request(dumps({"uid": "o", "type": 2, "opts": {"rooms": [], "except": []},
                                 "rooms": rooms}))
        self.assertEqual(self.socket.rooms, {self.sid, "r1"})
        self.node.broadcast("socket.io#/#", self.event(["x"], **{"except": rooms[:10_001]}))
        self.assertEqual(self.client.events(), [])
        self.node.redis.nodes = 2
        d = self.node.io.fetch_sockets()
        [(_, message)] = self.node.published()
        request_id = json.loads(message)["requestId"]
        self.node.response(dumps({"requestId": request_id,
                                  "sockets": [{"id": "b1", "rooms": rooms[:10_001]}]}))
        self.assertEqual(self.counters.dropped_by_reason, {"too many items": 3})
        self.node.clock.advance(5)
        self.failureResultOf(d, RequestTimeoutError)
        rooms_d = self.node.adapter.all_rooms()
        [(_, message)] = self.node.published()
        self.node.response(dumps({"requestId": json.loads(message)["requestId"],
                                  "rooms": rooms[:20_000]}))
        self.assertEqual(len(self.successResultOf(rooms_d)), 20_002)

    def test_drops_are_counted_and_logged_at_a_rate(self) -> None:
        """100 dropped messages are counted by reason and logged once, the peer's text cut to
        200 characters; the next line, a window later, says how many were not logged."""
        with capturedLogs() as events:
            for _ in range(100):
                self.node.request(dumps({"uid": "o", "type": "x" * 10_000}))
        self.assertEqual(self.counters.dropped_by_reason, {"unexpected": 100})
        [line] = warnings(events)
        self.assertLessEqual(len(line["why"]), 203)
        self.node.clock.advance(10)
        with capturedLogs() as events:
            self.node.request(b"[]")
        [line] = warnings(events)
        self.assertEqual((line["reason"], line["held_back"]), ("malformed", 99))

    def test_what_peers_send_never_raises_into_the_connection(self) -> None:
        """Values a decoder accepts but Python cannot turn into numbers (an infinite
        ``issued``) are read as absent; a handler's error is counted and logged at a rate."""
        self.node.redis.nodes = 2
        d = self.node.io.fetch_sockets()
        [(_, message)] = self.node.published()
        request_id = json.loads(message)["requestId"]
        self.node.response(b'{"requestId":"' + request_id.encode()
                           + b'","sockets":[{"id":"b1","handshake":{"issued":1e999}}]}')
        [_, remote] = self.successResultOf(d)
        self.assertEqual(remote.handshake.issued, 0)

        def broken(adapter: Any, request: Any) -> None:
            raise RuntimeError("a bug")

        # A handler table with a bug in it (the adapter's own, replaced for the test).
        setattr(self.node.adapter, "_classic_handlers", {0: broken})  # noqa: B010
        with capturedLogs() as events:
            for _ in range(5):
                self.node.request(dumps({"type": 0}))
        self.assertEqual(self.counters.dropped_by_reason, {"error": 5})
        self.assertEqual(len([e for e in events if e["log_level"] >= LogLevel.error]), 1)
        self.flushLoggedErrors(RuntimeError)


class ServerAPI(SynchronousTestCase):
    """The server-side pieces the cluster adapter relies on."""

    def test_in_memory_server_side_emit(self) -> None:
        """Without a cluster, server_side_emit_with_ack fires with no answers and reserved
        event names are refused."""
        io = txsio.Server(clock=Clock())
        self.assertEqual(self.successResultOf(io.server_side_emit_with_ack("x", 1)), [])
        self.assertEqual(self.successResultOf(io.timeout(1).server_side_emit_with_ack("x")), [])
        self.assertRaises(ValueError, io.server_side_emit, "disconnect")
        self.failureResultOf(io.server_side_emit_with_ack("connect"), ValueError)

    def test_dynamic_namespaces(self) -> None:
        """A dynamic namespace's parent is no cluster member; its children are."""
        import re

        node = _Node()
        node.subscriptions()
        parent = node.io.of(re.compile(r"^/team-\d+$"))
        self.assertEqual(node.subscriptions(), [])
        self.assertNotIsInstance(parent.adapter, RedisAdapter)
        client = MemoryClient(node.io)
        client.connect_ok("/team-7")
        child = node.io.of("/team-7").adapter
        assert isinstance(child, RedisAdapter)
        self.assertIn([b"SUBSCRIBE", b"socket.io-request#/team-7#",
                       b"socket.io-response#/team-7#",
                       f"socket.io-response#/team-7#{child.uid}#".encode()],
                      node.subscriptions())
