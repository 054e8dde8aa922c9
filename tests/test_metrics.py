"""The Prometheus metrics of a server (``io.metrics_resource()``), scraped through twisted.web
and read by ``prometheus_client``'s own parsers of the text format and of OpenMetrics: on a
Clock, with in-memory clients."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

from prometheus_client import REGISTRY
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.test.requesthelper import DummyRequest

import txsio
from txsio._stats import EngineStats, Histogram, ServerStats
from txsio._tap_metrics import MetricsListener
from txsio.engineio.handshake import HandshakeRequest
from txsio.engineio.packet import Packet as EnginePacket
from txsio.engineio.packet import PacketType as EnginePacketType
from txsio.engineio.session import EngineSession
from txsio.redis import dumps
from txsio.testing import MemoryTransport, TestClient, TestSocket

from .sio_memory import MemoryClient
from .test_redis_unit import _Node
from .test_resource import WebSocketClient
from .test_tap import make, parse


class Scrape:
    """One scrape's families by name (a counter's name without ``_total``)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = {f.name: f for f in families}

    def value(self, sample: str, **labels: str) -> float:
        """The value of the sample ``sample`` with exactly ``labels``."""
        found = [s.value for f in self.families.values() for s in f.samples
                 if s.name == sample and s.labels == labels]
        if len(found) != 1:
            raise AssertionError(f"{len(found)} samples {sample}{labels}")
        return float(found[0])

    def labels(self, sample: str, label: str) -> set[str]:
        """The values of ``label`` among the samples ``sample``."""
        return {s.labels[label] for f in self.families.values() for s in f.samples
                if s.name == sample and label in s.labels}


def get(io: txsio.Server, test: SynchronousTestCase,
        headers: dict[bytes, list[bytes]] | None = None) -> tuple[Any, bytes]:
    """GET ``io.metrics_resource()`` through twisted.web: the response and its body."""
    # Any: StubTreq sets its treq functions as attributes at run time.
    stub: Any = StubTreq(io.metrics_resource())
    d = stub.get("http://node/metrics", headers=headers or {})
    stub.flush()
    response = test.successResultOf(d)
    body: bytes = test.successResultOf(stub.content(response))
    return response, body


def scrape(io: txsio.Server, test: SynchronousTestCase) -> Scrape:
    """The families ``io`` serves now, read by the Prometheus text format's parser."""
    response, body = get(io, test)
    test.assertEqual(response.code, 200)
    return Scrape(list(text_string_to_metric_families(body.decode("utf-8"))))


def polling_session(io: txsio.Server) -> tuple[EngineSession, MemoryTransport]:
    """A long-polling session with no GET pending, joined to the main namespace."""
    transport = MemoryTransport("polling", writable=False)
    request = HandshakeRequest(method="GET", url="/socket.io/?EIO=4&transport=polling",
                               headers={}, query={"EIO": "4", "transport": "polling"},
                               address="127.0.0.1", secure=False)
    session = io.engine.create_session(4, transport, request)
    session.receive("0", transport)
    return session, transport


class MetricsTestCase(SynchronousTestCase):
    """A server on a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.io = txsio.Server(clock=self.clock)

    def connect(self, nsp: str = "/", client: TestClient | None = None) -> TestSocket:
        """A socket of a (new) in-memory client connected to ``nsp``."""
        client = client if client is not None else TestClient(self.io)
        return self.successResultOf(client.connect(nsp))

    def scrape(self) -> Scrape:
        """What the server serves now."""
        return scrape(self.io, self)


class ConnectionTests(MetricsTestCase):
    """Connections and sockets, by transport and namespace; why they ended."""

    def test_open_connections_and_sockets(self) -> None:
        """Open connections by transport, sockets by namespace and transport, and how many
        opened; closed ones leave the gauges and are counted by reason."""
        self.io.of("/chat")
        first = TestClient(self.io)
        self.connect("/", first)
        self.connect("/chat", first)
        self.connect("/chat")
        polling_session(self.io)
        metrics = self.scrape()
        self.assertEqual(metrics.value("txsio_connections", transport="websocket"), 2)
        self.assertEqual(metrics.value("txsio_connections", transport="polling"), 1)
        self.assertEqual(metrics.value("txsio_connections_opened_total", transport="polling"),
                         1)
        sockets = {(ns, t): metrics.value("txsio_sockets", namespace=ns, transport=t)
                   for ns in ("/", "/chat") for t in ("polling", "websocket")}
        self.assertEqual(sockets, {("/", "polling"): 1, ("/", "websocket"): 1,
                                   ("/chat", "polling"): 0, ("/chat", "websocket"): 2})
        self.assertEqual(metrics.value("txsio_socket_connects_total", namespace="/chat"), 2)
        first.close()
        metrics = self.scrape()
        self.assertEqual(metrics.value("txsio_connections", transport="websocket"), 1)
        self.assertEqual(metrics.value("txsio_connections_opened_total",
                                       transport="websocket"), 2)
        self.assertEqual(metrics.value("txsio_connections_closed_total",
                                       reason="transport close"), 1)
        self.assertEqual(metrics.value("txsio_sockets", namespace="/chat",
                                       transport="websocket"), 1)
        self.assertEqual(metrics.value("txsio_socket_disconnects_total", namespace="/",
                                       reason="transport close"), 1)

    def test_disconnect_reasons(self) -> None:
        """Each of Node's reasons is its own label; any other reason is "other", so an
        application's reasons cannot grow the number of series."""
        self.connect().disconnect()
        server_side = self.connect()
        assert server_side.id is not None
        self.io.sockets.sockets[server_side.id].disconnect()
        silent = TestClient(self.io)
        self.connect(client=silent)
        silent.auto_pong = False
        self.clock.advance(25)  # the ping
        self.clock.advance(20)  # no pong
        custom = TestClient(self.io)
        self.connect(client=custom)
        custom.session.close(f"the app's reason {id(custom)}")
        metrics = self.scrape()
        disconnects = {reason: metrics.value("txsio_socket_disconnects_total", namespace="/",
                                             reason=reason)
                       for reason in metrics.labels("txsio_socket_disconnects_total", "reason")}
        self.assertEqual(disconnects, {"client namespace disconnect": 1,
                                       "server namespace disconnect": 1, "ping timeout": 1,
                                       "other": 1})
        self.assertEqual(metrics.labels("txsio_connections_closed_total", "reason"),
                         {"ping timeout", "other"})

    def test_refused_connections(self) -> None:
        """A middleware's refusal counts as a connect error of its namespace, not as a
        connect."""
        def refuse(socket: txsio.Socket) -> None:
            raise txsio.ConnectionRefusedError("no")

        self.io.of("/private").use(refuse)
        self.failureResultOf(TestClient(self.io).connect("/private"),
                             txsio.ConnectionRefusedError)
        metrics = self.scrape()
        self.assertEqual(metrics.value("txsio_socket_connect_errors_total",
                                       namespace="/private"), 1)
        self.assertEqual(metrics.value("txsio_socket_connects_total", namespace="/private"),
                         0)


class NamespaceLabelTests(MetricsTestCase):
    """The namespace label stays bounded whatever names clients choose."""

    def test_dynamic_children_share_their_parent_label(self) -> None:
        """The children of a dynamic namespace are counted under its pattern (or its
        function's name), never under the names clients chose."""
        self.io.of(re.compile(r"/room-\d+"))

        def allowed(name: str, auth: dict[str, Any]) -> bool:
            return name.startswith("/user-")

        self.io.of(allowed)
        for name in ("/room-1", "/room-2", "/room-2", "/user-x"):
            self.connect(name)
        metrics = self.scrape()
        self.assertEqual(metrics.labels("txsio_sockets", "namespace"),
                         {"/", r"/room-\d+", f"{allowed.__qualname__}()"})
        self.assertEqual(metrics.value("txsio_sockets", namespace=r"/room-\d+",
                                       transport="websocket"), 3)
        self.assertEqual(metrics.value("txsio_socket_connects_total",
                                       namespace=f"{allowed.__qualname__}()"), 1)

    def test_namespace_cap(self) -> None:
        """Beyond ``max_namespaces`` labels, namespaces share the label "other"."""
        self.io.stats.max_namespaces = 3
        for name in ("/a", "/b", "/c", "/d"):
            self.io.of(name)
            self.connect(name)
        metrics = self.scrape()
        self.assertEqual(metrics.labels("txsio_socket_connects_total", "namespace"),
                         {"/", "/a", "/b", "other"})
        self.assertEqual(metrics.value("txsio_socket_connects_total", namespace="other"), 2)


class TrafficTests(MetricsTestCase):
    """Packets, acknowledgements and broadcasts."""

    def test_packets(self) -> None:
        """Socket.IO packets received and sent (a broadcast once per recipient); volatile
        packets a client was not ready for are counted as dropped, not as sent."""
        socket = self.connect()  # CONNECT received, CONNECT sent
        for n in range(3):
            socket.emit("hello", n)
        self.connect()
        self.io.emit("news", 1)  # to both
        polling_session(self.io)  # its CONNECT answer waits for a GET: sent, queued
        self.io.volatile.emit("tick")  # the polling client is not ready for it
        metrics = self.scrape()
        self.assertEqual(metrics.value("txsio_packets_received_total"), 1 + 3 + 1 + 1)
        self.assertEqual(metrics.value("txsio_packets_sent_total"), 1 + 1 + 2 + 1 + 2)
        self.assertEqual(metrics.value("txsio_volatile_packets_dropped_total"), 1)

    def test_acks_pending_and_timed_out(self) -> None:
        """Acknowledgements waited for are a gauge; those that did not come in time are
        counted, for one socket's emit and for each silent recipient of a broadcast."""
        answering = self.connect()
        answering.on("question", lambda: "yes")
        silent = self.connect()
        assert silent.id is not None
        server_socket = self.io.sockets.sockets[silent.id]
        d = server_socket.timeout(5).emit_with_ack("question")
        broadcast = self.io.timeout(2).emit_with_ack("question")
        metrics = self.scrape()
        self.assertEqual(metrics.value("txsio_acks_pending", namespace="/"), 2)
        self.clock.advance(2)
        self.failureResultOf(broadcast, txsio.AckTimeoutError)
        self.assertEqual(self.scrape().value("txsio_acks_timed_out_total", namespace="/"), 1)
        self.clock.advance(3)
        self.failureResultOf(d, txsio.AckTimeoutError)
        metrics = self.scrape()
        self.assertEqual(metrics.value("txsio_acks_timed_out_total", namespace="/"), 2)
        self.assertEqual(metrics.value("txsio_acks_pending", namespace="/"), 0)

    def test_broadcast_fanout(self) -> None:
        """Each broadcast's recipients go into a histogram: its count is the broadcasts, its
        sum the recipients."""
        for _ in range(3):
            socket = self.connect()
            assert socket.id is not None
            self.io.sockets.sockets[socket.id].join("room")
        self.io.to("room").emit("a")
        self.io.to("nobody").emit("b")
        self.io.emit("c")
        metrics = self.scrape()

        def bucket(le: str) -> float:
            return metrics.value("txsio_broadcast_recipients_bucket", namespace="/", le=le)

        self.assertEqual([bucket(le) for le in ("0.0", "1.0", "10.0", "+Inf")], [1, 1, 3, 3])
        self.assertEqual(metrics.value("txsio_broadcast_recipients_count", namespace="/"), 3)
        self.assertEqual(metrics.value("txsio_broadcast_recipients_sum", namespace="/"), 6)


class ExpositionTests(MetricsTestCase):
    """What the resource answers, and which registry it serves."""

    def test_text_format(self) -> None:
        """Prometheus's text format by default, never cached; HEAD too."""
        response, body = get(self.io, self)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/plain; version=0.0.4; charset=utf-8"])
        self.assertEqual(response.headers.getRawHeaders(b"cache-control"), [b"no-store"])
        self.assertIn(b"# TYPE txsio_connections gauge\n", body)
        stub: Any = StubTreq(self.io.metrics_resource())
        d = stub.head("http://node/metrics")
        stub.flush()
        self.assertEqual(self.successResultOf(d).code, 200)

    def test_openmetrics(self) -> None:
        """OpenMetrics when the scraper asks for it, read by the OpenMetrics parser."""
        response, body = get(self.io, self, {
            b"accept": [b"application/openmetrics-text; version=1.0.0,text/plain;q=0.5"]})
        [content_type] = response.headers.getRawHeaders(b"content-type")
        self.assertTrue(content_type.startswith(b"application/openmetrics-text"), content_type)
        text = body.decode("utf-8")
        self.assertTrue(text.endswith("# EOF\n"))
        names = {f.name for f in openmetrics_families(text)}
        self.assertIn("txsio_connections_opened", names)
        self.assertIn("txsio_broadcast_recipients", names)

    def test_gzip(self) -> None:
        """gzip when the scraper accepts it (as Prometheus does), plain text otherwise."""
        resource = self.io.metrics_resource()
        for encoding in (b"gzip", None):
            request = DummyRequest([b""])
            if encoding is not None:
                request.requestHeaders.setRawHeaders(b"accept-encoding", [encoding])
            body = resource.render(request)
            self.assertEqual(request.responseHeaders.getRawHeaders(b"content-encoding"),
                             None if encoding is None else [b"gzip"])
            text = gzip.decompress(body) if encoding is not None else body
            self.assertIn(b"\ntxsio_packets_sent_total 0.0\n", text)

    def test_one_registry_per_server(self) -> None:
        """Each server has its own registry, the global one has none of txsio's metrics, and
        what the application registers in a server's registry is served with txsio's."""
        other = txsio.Server(clock=self.clock)
        self.connect()
        from prometheus_client import Counter

        Counter("chat_messages", "Messages.", registry=self.io.metrics_registry).inc(4)
        self.assertIs(self.io.metrics_registry, self.io.metrics_registry)
        self.assertEqual(self.scrape().value("chat_messages_total"), 4)
        self.assertEqual(scrape(other, self).value("txsio_connections", transport="websocket"),
                         0)
        self.assertFalse([m for m in REGISTRY.collect() if m.name.startswith("txsio_")])


class EngineTests(MetricsTestCase):
    """What the Engine.IO server counts: packets and bytes per transport, upgrades, abandoned
    upgrades and sessions closed for a full send buffer."""

    def test_engine_families(self) -> None:
        """Each counter of ``io.engine.stats`` is served, the transports' after real traffic
        over polling and WebSocket."""
        stats = self.io.engine.stats
        self.assertIsInstance(stats, EngineStats)
        stats.upgrades += 3
        stats.send_buffer_full += 2
        stats.upgrade_failures += 4
        # Any: StubTreq sets its treq functions as attributes at run time.
        stub: Any = StubTreq(self.io.engine.resource())
        d = stub.get("http://node/?EIO=4&transport=polling")
        stub.flush()
        opened = self.successResultOf(stub.content(self.successResultOf(d)))
        client = WebSocketClient(self.io.engine, "EIO=4&transport=websocket")
        client.send_text("40")
        self.assertEqual(len(client.frames()), 2)
        metrics = self.scrape()
        self.assertEqual(metrics.value("txsio_engineio_upgrades_total"), 3)
        self.assertEqual(metrics.value("txsio_engineio_send_buffer_full_total"), 2)
        self.assertEqual(metrics.value("txsio_engineio_upgrade_failures_total"), 4)
        for name, transport, value in [
                ("packets_received", "polling", 0), ("packets_sent", "polling", 1),
                ("received_bytes", "polling", 0), ("sent_bytes", "polling", len(opened)),
                ("packets_received", "websocket", 1), ("packets_sent", "websocket", 2),
                ("received_bytes", "websocket", 2),
                ("sent_bytes", "websocket", stats.websocket.bytes_out)]:
            self.assertEqual(metrics.value(f"txsio_engineio_{name}_total",
                                           transport=transport), value, (name, transport))
        self.assertGreater(stats.websocket.bytes_out, 2)

    def test_upgrade_counted(self) -> None:
        """A session that completes an upgrade is counted by its engine."""
        transport = MemoryTransport("polling")
        session = self.io.engine.create_session(4, transport, HandshakeRequest(
            method="GET", url="/", headers={}, query={}, address="127.0.0.1", secure=False))
        probe = MemoryTransport()
        session.begin_upgrade(probe)
        session.receive(EnginePacket(EnginePacketType.PING, "probe"), probe)
        session.receive(EnginePacket(EnginePacketType.UPGRADE), probe)
        self.assertEqual(self.io.engine.stats.upgrades, 1)


class StatsTests(SynchronousTestCase):
    """The plain counters."""

    def test_histogram(self) -> None:
        """Observations land in the first bucket whose bound is at least them (Prometheus's
        ``le``), the rest in +Inf; cumulative counts are what Prometheus wants."""
        histogram = Histogram((1.0, 10.0))
        for value in (0, 1, 1.5, 10, 11):
            histogram.observe(value)
        self.assertEqual(histogram.counts, [2, 2, 1])
        self.assertEqual(histogram.cumulative(), [(1.0, 2), (10.0, 4), (float("inf"), 5)])
        self.assertEqual((histogram.count, histogram.sum), (5, 23.5))

    def test_namespace_labels_are_kept(self) -> None:
        """A label keeps its counters; the one past the cap is "other" for good."""
        stats = ServerStats(max_namespaces=1)
        first = stats.namespace("/")
        self.assertIs(stats.namespace("/"), first)
        self.assertIs(stats.namespace("/x"), stats.namespace("/y"))
        self.assertEqual(stats.namespace("/x").label, "other")


class ClusterTests(SynchronousTestCase):
    """The Redis adapter's connections and the cluster's requests."""

    def setUp(self) -> None:
        self.node = _Node(requests_timeout=2)

    def test_redis_connections(self) -> None:
        """Each connection's state, what waits on it, and how often it was made and lost."""
        node = self.node
        metrics = scrape(node.io, self)
        for connection in ("publish", "subscribe"):
            self.assertEqual(metrics.value("txsio_redis_connection_up", connection=connection),
                             1)
            self.assertEqual(metrics.value("txsio_redis_connects_total", connection=connection),
                             1)
        node.redis.answer = False
        node.io.server_side_emit("x")
        metrics = scrape(node.io, self)
        self.assertEqual(metrics.value("txsio_redis_commands_pending", connection="publish"), 1)
        node.pub.loseConnection()
        metrics = scrape(node.io, self)
        self.assertEqual(metrics.value("txsio_redis_connection_up", connection="publish"), 0)
        self.assertEqual(metrics.value("txsio_redis_connection_failures_total",
                                       connection="publish"), 1)
        self.assertEqual(metrics.value("txsio_redis_commands_refused_total",
                                       connection="subscribe"), 0)

    def test_request_round_trips_and_timeouts(self) -> None:
        """A request every node answered is a round trip in the histogram of its kind; one
        that some node did not answer in time is counted as a timeout; while waiting, it is
        pending."""
        node = self.node
        node.redis.nodes = 2
        d = node.io.fetch_sockets()
        [(_, message)] = node.published()
        self.assertEqual(scrape(node.io, self).value("txsio_cluster_requests_pending"), 1)
        node.clock.advance(0.02)
        node.response(dumps({"requestId": _request_id(message), "sockets": []}))
        self.successResultOf(d)
        failed = node.io.timeout(1).server_side_emit_with_ack("ping")
        node.clock.advance(1)
        self.failureResultOf(failed, txsio.AckTimeoutError)
        metrics = scrape(node.io, self)

        def bucket(le: str) -> float:
            return metrics.value("txsio_cluster_request_duration_seconds_bucket",
                                 kind="fetch_sockets", le=le)

        self.assertEqual([bucket("0.01"), bucket("0.025")], [0, 1])
        self.assertAlmostEqual(metrics.value("txsio_cluster_request_duration_seconds_sum",
                                             kind="fetch_sockets"), 0.02)
        self.assertEqual(metrics.value("txsio_cluster_request_duration_seconds_count",
                                       kind="server_side_emit"), 0)
        self.assertEqual(metrics.value("txsio_cluster_request_timeouts_total",
                                       kind="server_side_emit"), 1)
        self.assertEqual(metrics.value("txsio_cluster_requests_pending"), 0)

    def test_dropped_messages(self) -> None:
        """Messages of other nodes that were dropped are counted by reason."""
        self.node.request(b"\xc1 not msgpack")
        metrics = scrape(self.node.io, self)
        self.assertEqual(metrics.value("txsio_cluster_messages_dropped_total",
                                       reason="malformed"), 1)
        self.assertEqual(metrics.value("txsio_cluster_encode_failures_total"), 0)

    def test_no_cluster_families_in_memory(self) -> None:
        """A server with the in-memory adapter serves no cluster or Redis family."""
        metrics = scrape(txsio.Server(clock=Clock()), self)
        self.assertFalse([n for n in metrics.families
                          if n.startswith(("txsio_cluster", "txsio_redis"))])


def _request_id(message: bytes) -> str:
    request_id: str = json.loads(message)["requestId"]
    return request_id


def http_get(factory: Any, path: str) -> bytes:
    """What a listening factory's site answers a GET of ``path`` on a new connection."""
    answer: bytes = http_connection(factory, path).value()
    return answer


def http_connection(factory: Any, path: str) -> StringTransport:
    """The transport of a new connection to a listening factory's site, which sent a GET of
    ``path`` (and keeps the connection)."""
    protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    protocol.makeConnection(transport)
    protocol.dataReceived(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return transport


def parse_answer(test: SynchronousTestCase, answer: bytes) -> Scrape:
    """The families of an HTTP answer of 200 in the text format."""
    head, _, body = answer.partition(b"\r\n\r\n")
    test.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
    return Scrape(list(text_string_to_metric_families(body.decode("utf-8"))))


class TwistdOptionTests(SynchronousTestCase):
    """``twistd sio --metrics PATH`` and ``--metrics-port ENDPOINT``, on a memory reactor."""

    def test_options(self) -> None:
        """A path other than the endpoint's and the health check's; an endpoint that parses,
        its errors naming the option."""
        self.assertEqual((parse()["metrics"], parse()["metrics-port"]), (None, None))
        options = parse("--metrics", "/-/metrics", "--metrics-port", "9100")
        self.assertEqual((options["metrics"], options["metrics-port"]),
                         ("/-/metrics", "tcp:9100"))
        for argv in (["--metrics", "metrics"], ["--metrics", "/"], ["--metrics", "/m?x"],
                     ["--metrics", "/socket.io/"],
                     ["--metrics", "/health", "--health", "/health"]):
            self.assertRaises(usage.UsageError, parse, *argv)
        error = self.assertRaises(usage.UsageError, parse, "--metrics-port", "nonsense:1")
        self.assertTrue(str(error).startswith("--metrics-port 'nonsense:1': "), str(error))
        # On its own listener, the metrics may use any path.
        parse("--metrics", "/socket.io", "--metrics-port", "9100")

    def test_metrics_on_every_port(self) -> None:
        """``--metrics PATH`` serves the server's metrics and the process's at PATH of the
        site."""
        service, _ = make("--port", "tcp:0:interface=127.0.0.1", "--app", "tests.tap_app:setup",
                          "--metrics", "/-/metrics")
        service.privilegedStartService()
        service.startService()
        MemoryClient(service.io).connect()
        metrics = parse_answer(self, http_get(service.connections, "/-/metrics"))
        self.assertEqual(metrics.value("txsio_connections", transport="websocket"), 1)
        self.assertIn("process_cpu_seconds", metrics.families)
        self.assertIn("python_info", metrics.families)
        self.assertIn(b" 404 ", http_get(service.connections, "/-/metrics/more"))

    def test_metrics_port(self) -> None:
        """``--metrics-port`` serves the metrics on a listener of its own, at ``/metrics``
        (nothing else there), and not on ``--port``; stopping closes its connections."""
        service, reactor = make("--port", "tcp:8080:interface=127.0.0.1", "--metrics-port",
                                "tcp:9100:interface=127.0.0.1")
        [listener] = [s for s in service if isinstance(s, MetricsListener)]
        service.privilegedStartService()
        service.startService()
        self.assertEqual([port for port, *_ in reactor.tcpServers], [8080, 9100])
        self.assertIn(b" 404 ", http_get(service.connections, "/metrics"))
        metrics = parse_answer(self, http_get(listener.factory, "/metrics"))
        self.assertEqual(metrics.value("txsio_connections", transport="polling"), 0)
        for path in ("/", "/socket.io/?EIO=4&transport=polling", "/metrics/x"):
            self.assertIn(b" 404 ", http_get(listener.factory, path))
        transport = http_connection(listener.factory, "/metrics")  # kept alive
        self.assertFalse(transport.disconnecting)
        with capturedLogs():
            service.stopService()
            reactor.advance(0)
        self.assertTrue(transport.disconnecting)
