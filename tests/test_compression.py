"""Compression: gzip / deflate polling responses (``http_compression``), permessage-deflate
WebSocket messages (``per_message_deflate``) and the per-emit ``compress(False)`` flag.

The wire is checked with real peers: the ``ws`` package (its frames read from the TCP stream
by ``tests/node/compression_client.mjs``) and socket.io-client 4.8 on fetch() polling; the
polling responses' encodings also in memory, through StubTreq.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from treq.testing import RequestTraversalAgent
from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.client import readBody
from twisted.web.http_headers import Headers

import txsio
from txsio.adapter import BroadcastFlags, BroadcastOptions
from txsio.cluster import decode_options, encode_options
from txsio.engineio._compression import (
    DeflateOptions,
    HttpCompression,
    deflate_options,
    http_compression_options,
    negotiate_encoding,
)

from .support import NODE_DIR, ProcessResult, TxsioSocketIOServer, require_node, run_node, spawn
from .test_resource import ResourceTestCase, Response

CLIENT = "compression_client.mjs"


class OptionTests(SynchronousTestCase):
    """The options as the servers read them."""

    def test_http_compression_values(self) -> None:
        """True is Node's defaults, False / None off, a mapping sets the fields."""
        self.assertEqual(http_compression_options(True), HttpCompression(threshold=1024))
        self.assertIsNone(http_compression_options(False))
        self.assertIsNone(http_compression_options(None))
        self.assertEqual(http_compression_options({"threshold": 10}),
                         HttpCompression(threshold=10))
        self.assertRaises(ValueError, http_compression_options, {"threshold": -1})
        self.assertRaises(TypeError, http_compression_options, {"thresold": 1})

    def test_deflate_values(self) -> None:
        """False (Node's default) is off, True is a 1024-byte threshold."""
        self.assertIsNone(deflate_options(False))
        self.assertEqual(deflate_options(True), DeflateOptions(threshold=1024))
        self.assertEqual(deflate_options({"threshold": 0}), DeflateOptions(threshold=0))
        self.assertRaises(ValueError, deflate_options, {"mem_level": 0})

    def test_server_defaults(self) -> None:
        """txsio.Server compresses polling by default and WebSocket only when asked, as Node."""
        io = txsio.Server()
        self.assertEqual(io.engine.options.http_compression, HttpCompression())
        self.assertIsNone(io.engine.options.per_message_deflate)
        io = txsio.Server(http_compression=False, per_message_deflate={"threshold": 10})
        self.assertIsNone(io.engine.options.http_compression)
        self.assertEqual(io.engine.options.per_message_deflate, DeflateOptions(threshold=10))

    def test_negotiation(self) -> None:
        """Accept-Encoding picks gzip or deflate as Node's ``accepts`` does."""
        cases = {
            None: None,
            "": None,
            "identity": None,
            "br": None,
            "gzip": "gzip",
            "deflate": "deflate",
            "gzip, deflate, br": "gzip",
            "deflate, gzip": "deflate",
            "gzip;q=0.5, deflate": "deflate",
            "gzip;q=0, *": "deflate",
            "*": "gzip",
            "*;q=0": None,
            "GZIP": "gzip",
            "deflate;q=0.8, gzip;q=0.8": "deflate",
        }
        for header, expected in cases.items():
            self.assertEqual(negotiate_encoding(header), expected, header)


class PollingCompressionTests(ResourceTestCase):
    """Polling responses, in memory: encoding, threshold, Accept-Encoding, the flag."""

    def poll_after(self, sid: str, message: str, headers: Any = None) -> Response:
        """Queue ``message`` for the session, then poll with ``headers`` (names as given:
        this agent, unlike treq's, neither adds Accept-Encoding nor decodes)."""
        self.sessions[-1].send(message)
        raw = Headers({name.encode("ascii"): [v.encode("latin-1") for v in values]
                       for name, values in (headers or {}).items()})
        agent: RequestTraversalAgent = self.stub._agent
        d = agent.request(b"GET", self.url(sid).encode("ascii"), raw)
        agent.flush()
        response = self.successResultOf(d)
        body = readBody(response)
        agent.flush()
        return Response(response.code, response.headers, self.successResultOf(body))

    def test_gzip_above_threshold(self) -> None:
        """A GET asking for gzip gets a gzipped body once it reaches 1024 bytes."""
        sid, _ = self.handshake()
        response = self.poll_after(sid, "x" * 2000, {"accept-encoding": ["gzip, deflate"]})
        self.assertEqual(response.header("content-encoding"), "gzip")
        self.assertEqual(zlib.decompress(response.body, 31), b"4" + b"x" * 2000)

    def test_deflate(self) -> None:
        """A GET asking for deflate only gets zlib-wrapped deflate (Node's createDeflate)."""
        sid, _ = self.handshake()
        response = self.poll_after(sid, "y" * 3000, {"accept-encoding": ["deflate"]})
        self.assertEqual(response.header("content-encoding"), "deflate")
        self.assertEqual(zlib.decompress(response.body), b"4" + b"y" * 3000)

    def test_not_below_threshold(self) -> None:
        """1023 bytes go as they are; 1024 are compressed (Node: length < threshold)."""
        sid, _ = self.handshake()
        response = self.poll_after(sid, "z" * 1021, {"accept-encoding": ["gzip"]})
        self.assertIsNone(response.header("content-encoding"))
        self.assertEqual(len(response.body), 1022)
        response = self.poll_after(sid, "z" * 1023, {"accept-encoding": ["gzip"]})
        self.assertEqual(response.header("content-encoding"), "gzip")

    def test_not_without_accept_encoding(self) -> None:
        """No Accept-Encoding (or one naming neither coding), no compression."""
        sid, _ = self.handshake()
        response = self.poll_after(sid, "x" * 5000)
        self.assertIsNone(response.header("content-encoding"))
        self.assertEqual(response.body, b"4" + b"x" * 5000)
        response = self.poll_after(sid, "x" * 5000, {"accept-encoding": ["br"]})
        self.assertIsNone(response.header("content-encoding"))

    def test_off(self) -> None:
        """http_compression=False: never compressed."""
        self.start(http_compression=False)
        sid, _ = self.handshake()
        response = self.poll_after(sid, "x" * 5000, {"accept-encoding": ["gzip"]})
        self.assertIsNone(response.header("content-encoding"))

    def test_custom_threshold(self) -> None:
        """A mapping sets the threshold."""
        self.start(http_compression={"threshold": 10})
        sid, _ = self.handshake()
        response = self.poll_after(sid, "x" * 20, {"accept-encoding": ["gzip"]})
        self.assertEqual(response.header("content-encoding"), "gzip")


def install_big(io: txsio.Server, log: object) -> None:
    """The app of the wire tests: ``big(n, compress)`` emits ``n`` characters back as
    ``big`` (``compress`` false: with ``socket.compress(False)``); ``all(n, compress)`` does
    the same as a broadcast, ``io.compress(...)``."""

    def connected(socket: txsio.Socket) -> None:
        socket.on("big", lambda n, compress=True:
                  socket.compress(compress is not False).emit("big", "a" * n))
        socket.on("all", lambda n, compress=True:
                  io.compress(compress is not False).emit("big", "a" * n))

    io.on("connection", connected)


async def run_client(scenario: str, options: dict[str, Any],
                     **server_options: Any) -> ProcessResult:
    """Run a scenario of the probe against the big app on a txsio server."""
    server = TxsioSocketIOServer(install_big, **server_options)
    try:
        return await run_node(CLIENT, scenario, server.url, options)
    finally:
        await server.stop()


async def run_against_node(runs: list[tuple[str, dict[str, Any]]],
                           node_options: dict[str, Any]) -> list[ProcessResult]:
    """Run scenarios of the probe, one after the other, against the same app on one Node
    socket.io 4.8 server, whose options are ``node_options`` (Node's spelling)."""
    from twisted.internet import reactor

    listening: Deferred[int] = Deferred()
    server = spawn([require_node(), str(NODE_DIR / CLIENT), "server", "-",
                    json.dumps({"server": node_options})],
                   on_event=lambda e: listening.callback(e["port"])
                   if e.get("event") == "listening" else None, cwd=NODE_DIR)
    try:
        port = await listening.addTimeout(10, reactor)
        return [await run_node(CLIENT, scenario, f"http://127.0.0.1:{port}", options)
                for scenario, options in runs]
    finally:
        await server.stop()


def frames(result: ProcessResult) -> list[tuple[int, bool]]:
    """The (length, compressed) of each EVENT frame the server wrote: the last data frames,
    one per event received (the open packet and the CONNECT answer came first)."""
    events = len(result.named("received"))
    return [(f["length"], f["rsv1"]) for f in result.named("frame")][-events:]


#: The options that make the threshold apply (as in ws, only without context takeover).
NO_TAKEOVER = {"server_no_context_takeover": True}


class WebSocketDeflateTests(TestCase):
    """permessage-deflate against the ``ws`` package, frames read on the wire."""

    async def test_every_message_with_context_takeover(self) -> None:
        """Negotiated when on; with the compressor's context kept (the default), every
        message is deflated, a small one too, as ws does; the client reads them."""
        result = await run_client("ws", {"emits": [["big", 5000], ["big", 100]], "expect": 2},
                                  per_message_deflate=True)
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertIn("permessage-deflate", result.first("extensions")["value"])
        self.assertEqual([e["size"] for e in result.named("received")], [5000, 100])
        written = frames(result)
        self.assertEqual([compressed for _, compressed in written], [True, True],
                         result.describe())
        self.assertLess(written[0][0], 200)

    async def test_threshold(self) -> None:
        """Without context takeover, messages under the threshold (1024 bytes) go as they
        are."""
        result = await run_client("ws", {"emits": [["big", 5000], ["big", 100]], "expect": 2},
                                  per_message_deflate=NO_TAKEOVER)
        self.assertEqual(result.exit_code, 0, result.describe())
        written = frames(result)
        self.assertTrue(written[0][1], result.describe())
        self.assertEqual(written[1], (len('42["big",""]') + 100, False))

    async def test_threshold_option(self) -> None:
        """A threshold of 50 compresses a 100-character event."""
        result = await run_client("ws", {"emits": [["big", 100]], "expect": 1},
                                  per_message_deflate={"threshold": 50, **NO_TAKEOVER})
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertTrue(frames(result)[0][1], result.describe())

    async def test_compress_false(self) -> None:
        """socket.compress(False) and io.compress(False) send a large event uncompressed; the
        same events without the flag are compressed."""
        size = len('42["big",""]') + 5000
        result = await run_client("ws", {"emits": [["big", 5000, False], ["big", 5000, True],
                                                   ["all", 5000, False], ["all", 5000]],
                                         "expect": 4}, per_message_deflate=True)
        self.assertEqual(result.exit_code, 0, result.describe())
        written = frames(result)
        self.assertEqual([compressed for _, compressed in written], [False, True, False, True],
                         result.describe())
        self.assertEqual((written[0][0], written[2][0]), (size, size))

    async def test_off_by_default(self) -> None:
        """Without the option the offer is declined: no extension, plain frames."""
        result = await run_client("ws", {"emits": [["big", 5000]], "expect": 1})
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertEqual(result.first("extensions")["value"], "")
        self.assertEqual(frames(result), [(len('42["big",""]') + 5000, False)])

    async def test_inflation_bound(self) -> None:
        """A frame of a few hundred bytes that inflates past max_http_buffer_size closes the
        connection with 1009, as an uncompressed message that large does."""
        result = await run_client("ws", {"flood": 200_000}, per_message_deflate=True,
                                  max_http_buffer_size=100_000)
        self.assertEqual(result.first("close")["code"], 1009, result.describe())


class PollingClientTests(TestCase):
    """socket.io-client 4.8 on fetch() polling, which asks for gzip and decodes it."""

    async def test_gzip_for_large_polls(self) -> None:
        """The poll carrying a 5000-character event comes gzipped and is read; small polls
        (the handshake, the CONNECT answer) come as they are."""
        result = await run_client("polling", {"emits": [["big", 5000]], "expect": 1})
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertEqual([e["size"] for e in result.named("received")], [5000])
        encodings = [p["encoding"] for p in result.named("poll") if p["method"] == "GET"]
        self.assertEqual(encodings[0], None, result.describe())
        self.assertIn("gzip", encodings, result.describe())

    async def test_off(self) -> None:
        """http_compression=False: every poll comes as it is."""
        result = await run_client("polling", {"emits": [["big", 5000]], "expect": 1},
                                        http_compression=False)
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertEqual({p["encoding"] for p in result.named("poll")}, {None})

    async def test_compress_false(self) -> None:
        """A poll holding only an event sent with compress(False) comes as it is (Node: a
        response is compressed when any packet in it may be)."""
        result = await run_client("polling", {"emits": [["big", 5000, False]], "expect": 1})
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertEqual({p["encoding"] for p in result.named("poll")}, {None},
                         result.describe())


class ClusterFlagTests(SynchronousTestCase):
    """The flag across a cluster, spelled as Node's adapters send it."""

    def test_wire(self) -> None:
        """compress(False) travels as ``"compress": false``; absent, it is true."""
        flags = BroadcastFlags(compress=False)
        wire = encode_options(BroadcastOptions(frozenset(["r"]), flags=flags))
        self.assertEqual(wire["flags"], {"compress": False})
        self.assertFalse(decode_options(wire).flags.compress)
        self.assertTrue(decode_options({"rooms": [], "except": [], "flags": {}}).flags.compress)
        self.assertEqual(encode_options(BroadcastOptions())["flags"], {})


class NodeReferenceTests(TestCase):
    """The same probes against Node's socket.io 4.8: the expectations above are Node's."""

    async def test_defaults(self) -> None:
        """By default Node declines permessage-deflate, gzips the large poll, and not a poll
        holding only a compress(false) event."""
        ws, polled, uncompressed = await run_against_node([
            ("ws", {"emits": [["big", 5000]], "expect": 1}),
            ("polling", {"emits": [["big", 5000]], "expect": 1}),
            ("polling", {"emits": [["big", 5000, False]], "expect": 1}),
        ], {})
        self.assertEqual(ws.first("extensions")["value"], "", ws.describe())
        self.assertEqual(polled.exit_code, 0, polled.describe())
        self.assertIn("gzip", [p["encoding"] for p in polled.named("poll")], polled.describe())
        self.assertEqual(uncompressed.exit_code, 0, uncompressed.describe())
        self.assertEqual({p["encoding"] for p in uncompressed.named("poll")}, {None},
                         uncompressed.describe())

    async def test_deflate(self) -> None:
        """With perMessageDeflate, Node deflates every message while its compressor keeps its
        context, a compress(false) one too (its WebSocket transport does not pass the flag
        to ws: the difference txsio documents), and closes with 1009 when a small frame
        inflates past maxHttpBufferSize."""
        every, flagged, flood = await run_against_node([
            ("ws", {"emits": [["big", 5000], ["big", 100]], "expect": 2}),
            ("ws", {"emits": [["big", 5000, False]], "expect": 1}),
            ("ws", {"flood": 200_000}),
        ], {"perMessageDeflate": True, "maxHttpBufferSize": 100_000})
        self.assertEqual([c for _, c in frames(every)], [True, True], every.describe())
        self.assertEqual([c for _, c in frames(flagged)], [True], flagged.describe())
        self.assertEqual(flood.first("close")["code"], 1009, flood.describe())

    async def test_threshold_without_context_takeover(self) -> None:
        """Without context takeover, Node applies the 1024-byte threshold."""
        [result] = await run_against_node(
            [("ws", {"emits": [["big", 5000], ["big", 100]], "expect": 2})],
            {"perMessageDeflate": {"serverNoContextTakeover": True}})
        self.assertEqual(result.exit_code, 0, result.describe())
        self.assertEqual([c for _, c in frames(result)], [True, False], result.describe())
