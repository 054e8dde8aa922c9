"""Prometheus metrics of a :class:`txsio.Server`, through ``prometheus_client``.

::

    import txsio
    from twisted.web.resource import Resource

    io = txsio.Server()
    root = Resource()
    root.putChild(b"socket.io", io.resource())
    root.putChild(b"metrics", io.metrics_resource())       # or twistd sio --metrics /metrics

Who calls what: :meth:`txsio.Server.metrics_resource` serves :attr:`txsio.Server.metrics_registry`,
a registry of the server's own (never ``prometheus_client``'s global one: several servers may
share a process, and so do tests) holding one :class:`ServerCollector`.  Prometheus's scrape
renders :class:`MetricsResource`, which asks the registry, which calls
:meth:`ServerCollector.collect`: it reads the counters the server layers keep
(:mod:`txsio._stats`, plain integers incremented where things happen) and the live state
they do not count (connections, sockets, pending acknowledgements, Redis connections), in the
reactor thread, so nothing is locked anywhere.

The families, their labels and what bounds those are listed in ``docs/metrics.rst``.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString
from twisted.web.resource import Resource

from ._stats import REQUEST_BUCKETS, EngineStats, Histogram, ServerStats, count

if TYPE_CHECKING:
    from twisted.web.server import Request

    from .server import Server

__all__ = ["MetricsResource", "ServerCollector", "add_process_metrics", "server_registry"]

#: The kinds of cluster requests (exported at 0 before the first one).
REQUEST_KINDS = ("fetch_sockets", "server_side_emit")


def server_registry(io: Server) -> CollectorRegistry:
    """A new registry holding ``io``'s :class:`ServerCollector` (what
    :attr:`txsio.Server.metrics_registry` is made with)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ServerCollector(io))
    return registry


def add_process_metrics(registry: CollectorRegistry) -> None:
    """Add the process's CPU, memory and file descriptors (``process_…``), Python's
    version (``python_info``) and its garbage collector (``python_gc_…``) to ``registry``:
    ``twistd sio --metrics`` does, for the process is the server's alone there."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


class ServerCollector:
    """The ``txsio_…`` metrics of one server, read when Prometheus scrapes
    (a ``prometheus_client`` collector: ``registry.register(ServerCollector(io))``).

    :param io: the server.
    """

    def __init__(self, io: Server) -> None:
        self.io = io

    def collect(self) -> Iterator[Metric]:
        """Every family, from the server's counters and its live state."""
        io = self.io
        transports = list(io.engine.options.transports)
        yield from _connections(io, io.stats, transports)
        yield from _namespaces(io, io.stats, transports)
        yield from _cluster(io)
        yield from _redis(io)
        yield from _engine(io.engine.stats)


def _counter(name: str, documentation: str, labels: list[str],
             values: Iterable[tuple[list[str], float]]) -> Metric:
    return _filled(CounterMetricFamily(name, documentation, labels=labels), values)


def _gauge(name: str, documentation: str, labels: list[str],
           values: Iterable[tuple[list[str], float]]) -> Metric:
    return _filled(GaugeMetricFamily(name, documentation, labels=labels), values)


def _filled(family: CounterMetricFamily | GaugeMetricFamily,
            values: Iterable[tuple[list[str], float]]) -> Metric:
    for label_values, value in values:
        family.add_metric(label_values, value)
    return family


def _buckets(histogram: Histogram) -> list[tuple[str, float]]:
    return [(floatToGoString(bound), n) for bound, n in histogram.cumulative()]


def _labelled(table: dict[str, int]) -> list[tuple[list[str], float]]:
    return [([key], value) for key, value in sorted(table.items())]


def _connections(io: Server, stats: ServerStats,
                 transports: list[str]) -> Iterator[Metric]:
    open_now = dict.fromkeys(transports, 0)
    for conn in list(io.connections.values()):
        count(open_now, conn.session.transport.name)
    yield _gauge("txsio_connections", "Open connections (Engine.IO sessions), by the "
                 "transport they use now.", ["transport"], _labelled(open_now))
    opened = {**dict.fromkeys(transports, 0), **stats.connections_opened}
    yield _counter("txsio_connections_opened", "Connections opened, by the transport they "
                   "opened on.", ["transport"], _labelled(opened))
    yield _counter("txsio_connections_closed", "Connections closed, by reason.", ["reason"],
                   _labelled(stats.connections_closed))
    yield _counter("txsio_packets_received", "Socket.IO packets received (binary "
                   "attachments reassembled).", [], [([], stats.packets_received)])
    yield _counter("txsio_packets_sent", "Socket.IO packets sent (a broadcast counts once "
                   "per recipient).", [], [([], stats.packets_sent)])
    yield _counter("txsio_volatile_packets_dropped", "Volatile packets dropped because "
                   "their client was not ready to receive them.", [],
                   [([], stats.volatile_dropped)])


def _namespaces(io: Server, stats: ServerStats,
                transports: list[str]) -> Iterator[Metric]:
    labels = sorted(stats.namespaces)
    sockets = {(label, t): 0 for label in labels for t in transports}
    acks = dict.fromkeys(labels, 0)
    for nsp in list(io._nsps.values()):
        label = nsp.stats.label
        for socket in list(nsp.sockets.values()):
            key = (label, socket.conn.session.transport.name)
            sockets[key] = sockets.get(key, 0) + 1
            acks[label] += len(socket._acks)
    yield _gauge("txsio_sockets", "Connected sockets, by namespace and transport.",
                 ["namespace", "transport"],
                 [([label, t], n) for (label, t), n in sorted(sockets.items())])
    yield _gauge("txsio_acks_pending", "Acknowledgements the server waits for from its "
                 "clients, by namespace.", ["namespace"], _labelled(acks))
    by_label = [stats.namespaces[label] for label in labels]
    yield _counter("txsio_socket_connects", "Sockets connected to a namespace.",
                   ["namespace"], [([s.label], s.connects) for s in by_label])
    yield _counter("txsio_socket_connect_errors", "Namespace connections refused by a "
                   "middleware.", ["namespace"], [([s.label], s.connect_errors) for s in by_label])
    yield _counter("txsio_socket_disconnects", "Sockets disconnected, by namespace and "
                   "reason.", ["namespace", "reason"],
                   [([s.label, reason], n) for s in by_label
                    for reason, n in sorted(s.disconnects.items())])
    yield _counter("txsio_acks_timed_out", "Acknowledgements a client did not send in time, "
                   "by namespace.", ["namespace"],
                   [([s.label], s.acks_timed_out) for s in by_label])
    fanout = HistogramMetricFamily("txsio_broadcast_recipients", "Recipients of each "
                                   "broadcast on this node, by namespace.",
                                   labels=["namespace"])
    for s in by_label:
        fanout.add_metric([s.label], _buckets(s.fanout), s.fanout.sum)
    yield fanout


def _cluster(io: Server) -> Iterator[Metric]:
    from .cluster import ClusterAdapter

    adapters = [nsp.adapter for nsp in list(io._nsps.values())
                if isinstance(nsp.adapter, ClusterAdapter)]
    if not adapters:
        return
    # The adapters of one factory share their counters: each once.
    counters = list({id(a.counters): a.counters for a in adapters}.values())
    yield _gauge("txsio_cluster_requests_pending", "Requests of this node waiting for the "
                 "other nodes' answers.", [], [([], sum(a.pending_requests for a in adapters))])
    durations = HistogramMetricFamily(
        "txsio_cluster_request_duration_seconds", "Round trips of this node's requests to "
        "the other nodes (fetch_sockets, server_side_emit with acknowledgements) that every "
        "node answered, by kind.", labels=["kind"])
    timeouts = dict.fromkeys(REQUEST_KINDS, 0)
    dropped: dict[str, int] = {}
    kinds = sorted({*REQUEST_KINDS, *(k for c in counters for k in c.request_seconds)})
    for kind in kinds:
        merged = Histogram(REQUEST_BUCKETS)  # the buckets of every ClusterCounters
        for c in counters:
            histogram = c.request_seconds.get(kind)
            if histogram is not None:
                merged.add(histogram)
        durations.add_metric([kind], _buckets(merged), merged.sum)
    for c in counters:
        for kind, n in c.request_timeouts.items():
            timeouts[kind] = timeouts.get(kind, 0) + n
        for reason, n in c.dropped_by_reason.items():
            dropped[reason] = dropped.get(reason, 0) + n
    yield durations
    yield _counter("txsio_cluster_request_timeouts", "Requests of this node that some node "
                   "did not answer in time, by kind.", ["kind"], _labelled(timeouts))
    yield _counter("txsio_cluster_encode_failures", "Messages not sent to the other nodes: "
                   "the cluster's encoding refused them.", [],
                   [([], sum(c.encode_failures for c in counters))])
    yield _counter("txsio_cluster_messages_dropped", "Messages of other nodes dropped "
                   "(malformed, or beyond a limit), by reason.", ["reason"], _labelled(dropped))


def _redis(io: Server) -> Iterator[Metric]:
    factory = io._adapter_factory
    if factory is None:
        return
    from .redis.connection import RedisConnection

    connections = [(name, getattr(factory, attribute, None))
                   for name, attribute in (("publish", "pub"), ("subscribe", "sub"))]
    found = [(name, c) for name, c in connections if isinstance(c, RedisConnection)]
    if not found:
        return
    yield _gauge("txsio_redis_connection_up", "Whether the connection to Redis is usable "
                 "(1) or not (0).", ["connection"], [([n], int(c.ready)) for n, c in found])
    yield _gauge("txsio_redis_commands_pending", "Commands waiting for Redis's replies.",
                 ["connection"], [([n], c.pending_commands) for n, c in found])
    yield _counter("txsio_redis_commands_refused", "Commands failed at once because too "
                   "much waited for Redis.", ["connection"],
                   [([n], c.refused_commands) for n, c in found])
    yield _counter("txsio_redis_connects", "Connections made to Redis (the first included).",
                   ["connection"], [([n], c.connects) for n, c in found])
    yield _counter("txsio_redis_connection_failures", "Connections to Redis lost, or "
                   "attempts that failed.", ["connection"], [([n], c.failures) for n, c in found])


#: The families of each transport's TransportStats: name, documentation, attribute.
_TRANSPORT_FAMILIES = (
    ("packets_received", "Engine.IO packets received, by transport.", "packets_in"),
    ("packets_sent", "Engine.IO packets sent, by transport.", "packets_out"),
    ("received_bytes", "Bytes received (WebSocket message payloads, polling request "
     "bodies), by transport.", "bytes_in"),
    ("sent_bytes", "Bytes sent (WebSocket message payloads, polling response bodies), by "
     "transport.", "bytes_out"),
)


def _engine(stats: EngineStats) -> Iterator[Metric]:
    # What the Engine.IO server and its transports count.
    transports = [("polling", stats.polling), ("websocket", stats.websocket)]
    for family, documentation, attribute in _TRANSPORT_FAMILIES:
        yield _counter(f"txsio_engineio_{family}", documentation, ["transport"],
                       [([name], getattr(t, attribute)) for name, t in transports])
    yield _counter("txsio_engineio_upgrade_failures", "Upgrades to WebSocket abandoned.", [],
                   [([], stats.upgrade_failures)])
    yield _counter("txsio_engineio_upgrades", "Upgrades to WebSocket completed.", [],
                   [([], stats.upgrades)])
    yield _counter("txsio_engineio_send_buffer_full", "Sessions closed because more than "
                   "max_buffered_bytes waited for a client that did not read.", [],
                   [([], stats.send_buffer_full)])


class MetricsResource(Resource):
    """Serves a registry to Prometheus: its text format, or OpenMetrics when the scraper's
    ``Accept`` asks for it; gzip when its ``Accept-Encoding`` allows.  Rendered in the
    reactor thread (the collectors read live state), never cached.

    :param registry: what to serve.
    """

    isLeaf = True

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__()
        self.registry = registry

    def render_GET(self, request: Request) -> bytes:
        accept = request.getHeader(b"accept")
        encoder, content_type = choose_encoder(accept.decode("latin-1") if accept else "")
        output = encoder(self.registry)
        encodings = request.getHeader(b"accept-encoding")
        if encodings and gzip_accepted(encodings.decode("latin-1")):
            output = gzip.compress(output)
            request.setHeader(b"content-encoding", b"gzip")
        request.setHeader(b"content-type", content_type.encode("ascii"))
        request.setHeader(b"cache-control", b"no-store")
        return output

    render_HEAD = render_GET
