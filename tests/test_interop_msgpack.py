"""Interop of the msgpack parser with npm ``socket.io-msgpack-parser`` 3.0.2.

The Socket.IO interop scenarios run again with both ends on the msgpack parser:

- socket.io-client 4.8 with the npm parser against ``txsio.Server(parser="msgpack")``: every
  scenario of :class:`tests.test_interop_socketio.SocketIOClient4Tests` (polling, WebSocket,
  the upgrade; binary and acks both ways; namespaces and refusals; rooms, broadcasts with
  binary and with acks; disconnects; recovery...);
- ``txsio.Client(parser="msgpack")`` against Node's ``socket.io`` 4.8 with the npm parser,
  and against ``txsio.Server(parser="msgpack")``: every scenario of
  :mod:`tests.test_client_interop`;
- a Redis cluster whose nodes use different parsers: a node sends packets, not their encoding,
  so each node encodes another's broadcast with its own parser (as Node's redis adapter);
- the codec itself, packet by packet: what the npm parser encodes, txsio decodes to the same
  packet, and what txsio encodes, the npm parser decodes and accepts (``tests/node/
  msgpack_codec.mjs``).

Needs ``npm ci`` in ``tests/node`` and ``redis-server`` (a missing peer is an error, not a
skip).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from twisted.internet import defer, task
from twisted.internet.interfaces import IReactorTime
from twisted.trial.unittest import TestCase

import txsio
from txsio.parser import MsgpackParser
from txsio.protocol import Packet, PacketType
from txsio.testing import TestClient

from . import test_client_interop as client_interop
from . import test_interop_socketio as server_interop
from .support import (
    ProcessResult,
    SocketIOServer,
    TxsioSocketIOServer,
    bytes_from_json,
    bytes_to_json,
    require_node,
    run_node,
)
from .test_redis_cluster import FAST, RedisServer, TxsioNode, until


def _with_msgpack(options: dict[str, Any] | None) -> dict[str, Any]:
    return {**(options or {}), "parser": "msgpack"}


class NodeClientMsgpackTests(server_interop.SocketIOClient4Tests):
    """socket.io-client 4.8 with ``socket.io-msgpack-parser`` against ``txsio.Server(parser=
    "msgpack")``: the scenarios of socket.io-client 4.8 on the default parser."""

    def setUp(self) -> None:
        super().setUp()

        def run_node_msgpack(script: str, scenario: str, url: str,
                             options: dict[str, Any] | None = None,
                             **kwargs: Any) -> defer.Deferred[ProcessResult]:
            return run_node(script, scenario, url, _with_msgpack(options), **kwargs)

        # Every scenario's client is told to use the npm parser.
        self.patch(server_interop, "run_node", run_node_msgpack)

    async def start(self, **options: Any) -> SocketIOServer:
        """The test app on a server using the msgpack parser."""
        options.setdefault("parser", "msgpack")
        return await super().start(**options)

    async def test_malformed_packets(self) -> None:
        """A client that joins in the default parser's text format (``40``) is closed with
        "forced close" (Node's socket.io 4.8 is the reference), without an answer; the server
        keeps serving."""
        server = await self.start()
        result = await run_node(server_interop.CLIENT, "malformed", server.url)
        self.assertRan(result)
        frames = [e["text"] for e in result.named("frame")]
        self.assertEqual(len(frames), 1, result.describe())
        self.assertTrue(frames[0].startswith("0{"), result.describe())
        result.first("closed")
        if isinstance(server, TxsioSocketIOServer):
            self.assertEqual(server.io.stats.connections_closed, {"forced close": 1})
        await self._basic("websocket")


class MsgpackTxsioAppServer(client_interop.TxsioAppServer):
    """The client interop app on ``txsio.Server(parser="msgpack")``."""

    server_options = {"parser": "msgpack"}


class MsgpackNodeAppServer(client_interop.NodeAppServer):
    """The client interop app on Node's ``socket.io`` with ``socket.io-msgpack-parser``."""

    def argv(self, options: dict[str, Any]) -> list[str]:
        return super().argv(_with_msgpack(options))


class _MsgpackClient:
    """The scenarios' clients use the msgpack parser."""

    def client(self, **options: Any) -> txsio.Client:
        options.setdefault("parser", "msgpack")
        client: txsio.Client = super().client(**options)  # type: ignore[misc]
        return client


class TxsioClientNodeServerMsgpackTests(_MsgpackClient, client_interop._RecoveryScenario,
                                        client_interop._Scenarios, TestCase):
    """``txsio.Client(parser="msgpack")`` against Node's ``socket.io`` 4.8 with
    ``socket.io-msgpack-parser``."""

    server_class = MsgpackNodeAppServer


class TxsioClientTxsioServerMsgpackTests(_MsgpackClient, client_interop._RecoveryScenario,
                                         client_interop._Scenarios, TestCase):
    """``txsio.Client(parser="msgpack")`` against ``txsio.Server(parser="msgpack")``."""

    server_class = MsgpackTxsioAppServer


#: Packets both codecs must agree on: every type, binary nested and at the top level, acks,
#: namespaces, big and negative integers, floats, unicode.
PACKETS: list[Packet] = [
    Packet(PacketType.CONNECT, "/", {"token": "abc", "n": 1}),
    Packet(PacketType.CONNECT, "/admin", None),
    Packet(PacketType.CONNECT, "/", {"sid": "s1", "pid": "p1"}),
    Packet(PacketType.DISCONNECT, "/chat"),
    Packet(PacketType.EVENT, "/", ["hello", "wörld ✓ 😀", 1, -1, 2**40, -(2**40), 1.5, None,
                                   True, False]),
    Packet(PacketType.EVENT, "/chat", ["bin", b"\x00\x01\xff", {"nested": [b"", b"x" * 300]}],
           12),
    Packet(PacketType.ACK, "/", ["answer", {"k": [1, 2, {"deep": b"\x07"}]}], 2**31),
    Packet(PacketType.ACK, "/", [], 0),
    Packet(PacketType.CONNECT_ERROR, "/private", {"message": "not authorized",
                                                  "data": {"code": 401}}),
    Packet(PacketType.CONNECT_ERROR, "/", {"message": "Invalid namespace"}),
]


class MsgpackCodecInteropTests(TestCase):
    """txsio's msgpack parser and npm ``socket.io-msgpack-parser`` 3.0.2 read each other's
    packets."""

    timeout = 60

    def setUp(self) -> None:
        require_node()

    async def test_both_ways(self) -> None:
        """Each packet txsio encodes, the npm parser decodes and checks to the same packet; each
        packet the npm parser encodes, txsio decodes to the same packet."""
        parser = MsgpackParser()
        sent = [bytes_to_json({"type": int(p.type), "nsp": p.nsp, "data": p.data, "id": p.id,
                               "encoded": parser.encode(p)[0]}) for p in PACKETS]
        result = await run_node("msgpack_codec.mjs", sent, timeout=30)
        self.assertEqual(result.exit_code, 0, result.describe())
        answers = [bytes_from_json(e) for e in result.named("packet")]
        self.assertEqual(len(answers), len(PACKETS), result.describe())
        decoder = parser.decoder()
        for packet, answer in zip(PACKETS, answers, strict=True):
            # What the npm parser read from txsio's bytes.
            self.assertEqual((answer["decoded"]["type"], answer["decoded"]["nsp"],
                              answer["decoded"].get("data"), answer["decoded"].get("id")),
                             (int(packet.type), packet.nsp, packet.data, packet.id))
            # What txsio reads from the npm parser's bytes.
            self.assertEqual(decoder.feed(answer["encoded"]), packet)
        # JavaScript's own values: a Date as its toJSON() text, a typed array as bytes,
        # undefined as None; socket.io-client's "options" key ignored.
        extras = bytes_from_json(result.first("extras")["encoded"])
        self.assertEqual(
            decoder.feed(extras),
            Packet(PacketType.EVENT, "/", ["extras", "2024-01-31T12:00:00.005Z", b"\x01\x02\x03",
                                           None, {"u": None, "n": None}]))


def _stopper(node: TxsioNode) -> Callable[[], defer.Deferred[None]]:
    return lambda: defer.Deferred.fromCoroutine(node.stop())


def _answer_later(clock: IReactorTime, n: int, question: Any) -> defer.Deferred[list[Any]]:
    # Answered on a later turn, as a client over the network would: an in-memory client's
    # answer during the fan-out would reach the requesting node before the client count.
    return task.deferLater(clock, 0.01, lambda: [question, n])


class ParsersAcrossTheClusterTests(TestCase):
    """Two txsio nodes on one Redis, one on the default parser, one on msgpack."""

    timeout = 30

    async def test_broadcasts_and_acks(self) -> None:
        """A broadcast with binary reaches the clients of both nodes, each in its node's format;
        a broadcast with acks collects the answers of both."""
        from twisted.internet import reactor

        clock: IReactorTime = reactor
        redis = RedisServer(reactor)
        await redis.start()
        self.addCleanup(lambda: defer.Deferred.fromCoroutine(redis.stop()))
        nodes = [TxsioNode("text", redis.url, reactor, **FAST),
                 TxsioNode("msgpack", redis.url, reactor, parser="msgpack", **FAST)]
        for node in nodes:
            self.addCleanup(_stopper(node))
        await defer.gatherResults([node.factory.ready() for node in nodes])
        clients = [TestClient(node.io) for node in nodes]
        sockets = [await c.connect(auth={"name": n.name, "rooms": ["r"]})
                   for c, n in zip(clients, nodes, strict=True)]
        nodes[0].io.to("r").emit("news", b"\x00\xff", {"k": [b"\x01"]})
        nodes[1].io.to("r").emit("more", b"\x02")
        for sock in sockets:
            for name, args in (("news", (b"\x00\xff", {"k": [b"\x01"]})), ("more", (b"\x02",))):
                got = await until(clock, partial(sock.events, name), f"{name} on {sock}")
                self.assertEqual(got, [args])
        # On the wire: the default format's text and attachments, msgpack's one binary message.
        wires = [[p.data for p in c._transport.sent if p.data is not None] for c in clients]
        self.assertIn(b"\x00\xff", [m for m in wires[0] if isinstance(m, bytes)])
        self.assertTrue(any(isinstance(m, str) and '"news"' in m for m in wires[0]))
        news = [m for m in wires[1] if isinstance(m, bytes) and b"news" in m]
        self.assertEqual(len(news), 1, wires[1])
        self.assertFalse([m for m in wires[1][1:] if isinstance(m, str)], wires[1])
        for n, sock in enumerate(sockets):
            sock.on("question", partial(_answer_later, clock, n))
        answers = await nodes[1].io.to("r").timeout(5).emit_with_ack("question", b"?")
        self.assertEqual(sorted(answers), [[b"?", 0], [b"?", 1]])
