"""The counters txsio keeps for its metrics: plain integers, incremented where things happen.

Who calls what: the server layers increment these with ``+= 1`` (no lock, no call into a
metrics library: the echo and broadcast paths are benchmarked), and :mod:`txsio.metrics`
reads them, with the live state they do not count (open connections, sockets, pending acks),
when Prometheus scrapes.  Stdlib only, so that every layer may import it without importing
``prometheus_client``.

- :class:`ServerStats` (``io.stats``): one :class:`~txsio.Server`'s connections
  (:class:`~txsio.server.Connection` counts), its Socket.IO packets, and a
  :class:`NamespaceStats` per namespace *label* (:meth:`ServerStats.namespace`);
- :class:`NamespaceStats`: connects, refusals, disconnections by reason, ack timeouts and the
  broadcasts' fan-out of one namespace, or of every child of one dynamic namespace (their
  names are chosen by clients: one label for them all keeps the metrics bounded);
- :class:`Histogram`: bucket counts, for the fan-out and the cluster's request round trips;
- :class:`EngineStats`: what only the Engine.IO layer can count (packets and bytes per
  transport, upgrades and abandoned ones, send-buffer drops): the engine, its sessions and
  its transports increment it, each transport in the :class:`TransportStats` it was given
  when it was made.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Callable, Iterable
from typing import Any

__all__ = [
    "BROADCAST_BUCKETS",
    "CLOSE_REASONS",
    "OTHER",
    "REQUEST_BUCKETS",
    "EngineStats",
    "Histogram",
    "NamespaceStats",
    "ServerStats",
    "TransportStats",
    "count",
    "namespace_label",
    "reason_label",
]

#: Node's disconnection reasons (Engine.IO's close reasons and Socket.IO's own): a reason
#: outside this set is counted as :data:`OTHER`, so an application's own reasons (given to
#: ``session.close(reason)``) cannot grow the number of time series.
CLOSE_REASONS = frozenset({
    "transport close", "transport error", "ping timeout", "parse error", "forced close",
    "server shutting down", "forced server close", "server namespace disconnect",
    "client namespace disconnect", "send buffer full",
})

#: The label of what a bound puts together: reasons outside :data:`CLOSE_REASONS`,
#: namespaces beyond :attr:`ServerStats.max_namespaces`.
OTHER = "other"

#: The upper bounds of the fan-out histogram (recipients of one broadcast).
BROADCAST_BUCKETS = (0.0, 1.0, 10.0, 100.0, 1_000.0, 10_000.0)

#: The upper bounds of the cluster request round-trip histogram, in seconds.
REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def reason_label(reason: str) -> str:
    """``reason`` if it is one of :data:`CLOSE_REASONS`, else :data:`OTHER`."""
    return reason if reason in CLOSE_REASONS else OTHER


def count(table: dict[str, int], key: str) -> None:
    """Add one to ``table[key]``."""
    table[key] = table.get(key, 0) + 1


class Histogram:
    """Observations counted in buckets (``le`` upper bounds, then +Inf), and their sum.

    :param bounds: the buckets' upper bounds, ascending.
    :ivar counts: the observations of each bucket alone (not cumulative), +Inf's last.
    :ivar sum: the sum of every observation.
    """

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Iterable[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        """Count one observation of ``value``."""
        # bisect_left: the first bound >= value, as Prometheus's "le" means.
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add(self, other: Histogram) -> None:
        """Count ``other``'s observations too (its buckets are the same)."""
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.sum += other.sum

    @property
    def count(self) -> int:
        """How many observations there were."""
        return sum(self.counts)

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, count)`` pairs as Prometheus wants them: cumulative, infinity
        last."""
        pairs: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            pairs.append((bound, total))
        return pairs


class NamespaceStats:
    """The counters of one namespace label (see :meth:`ServerStats.namespace`).

    :ivar label: the ``namespace`` label of its metrics.
    :ivar connects: sockets that connected.
    :ivar connect_errors: connections a middleware refused.
    :ivar disconnects: disconnections by reason (:func:`reason_label`).
    :ivar acks_timed_out: acknowledgements the clients did not send in time (an
        ``emit_with_ack`` with a timeout, or one recipient of a broadcast with one).
    :ivar fanout: the number of recipients of each broadcast (:data:`BROADCAST_BUCKETS`).
    """

    __slots__ = ("acks_timed_out", "connect_errors", "connects", "disconnects", "fanout",
                 "label")

    def __init__(self, label: str) -> None:
        self.label = label
        self.connects = 0
        self.connect_errors = 0
        self.disconnects: dict[str, int] = {}
        self.acks_timed_out = 0
        self.fanout = Histogram(BROADCAST_BUCKETS)

    def disconnected(self, reason: str) -> None:
        """Count a socket that disconnected for ``reason``."""
        count(self.disconnects, reason_label(reason))


class ServerStats:
    """The counters of one :class:`~txsio.Server` (``io.stats``).

    :param max_namespaces: the most namespace labels; the namespaces created after that many
        share the label :data:`OTHER`.
    :ivar connections_opened: connections (Engine.IO sessions) opened, by the transport they
        opened on.
    :ivar connections_closed: connections closed, by reason (:func:`reason_label`).
    :ivar packets_received: Socket.IO packets received (binary attachments reassembled).
    :ivar packets_sent: Socket.IO packets sent (a broadcast counts once per recipient).
    :ivar volatile_dropped: volatile packets dropped because their client was not ready.
    :ivar namespaces: the :class:`NamespaceStats` by label.
    """

    __slots__ = ("connections_closed", "connections_opened", "max_namespaces", "namespaces",
                 "packets_received", "packets_sent", "volatile_dropped")

    def __init__(self, max_namespaces: int = 100) -> None:
        self.max_namespaces = max_namespaces
        self.connections_opened: dict[str, int] = {}
        self.connections_closed: dict[str, int] = {}
        self.packets_received = 0
        self.packets_sent = 0
        self.volatile_dropped = 0
        self.namespaces: dict[str, NamespaceStats] = {}

    def namespace(self, label: str) -> NamespaceStats:
        """The counters of ``label``, made on first use (:data:`OTHER`'s once there are
        :attr:`max_namespaces` labels)."""
        stats = self.namespaces.get(label)
        if stats is None:
            if len(self.namespaces) >= self.max_namespaces:
                label = OTHER
                stats = self.namespaces.get(label)
            if stats is None:
                stats = self.namespaces[label] = NamespaceStats(label)
        return stats


def namespace_label(matcher: re.Pattern[str] | Callable[..., Any]) -> str:
    """The label of every child of a dynamic namespace: its regex's pattern, or its
    function's name followed by ``()``."""
    if isinstance(matcher, re.Pattern):
        return matcher.pattern
    name = getattr(matcher, "__qualname__", None) or type(matcher).__qualname__
    return f"{name}()"


class TransportStats:
    """What one kind of Engine.IO transport carried, every session's together.

    Incremented by the transports: WebSocket connections (:mod:`txsio.engineio._wsfast`, and
    the broadcast path of :mod:`txsio.engineio.websocket`) and polling transports
    (:mod:`txsio.engineio.polling`), each holding the reference once.

    :ivar packets_in: Engine.IO packets received (each WebSocket message; each packet of a
        POST body).
    :ivar packets_out: Engine.IO packets sent (each WebSocket message; each packet of a GET's
        answer).
    :ivar bytes_in: bytes received: WebSocket message payloads (a text's UTF-8 bytes as they
        arrived, frame headers not included), polling POST bodies.
    :ivar bytes_out: bytes sent: WebSocket message payloads, the bodies of polling GETs'
        answers.
    """

    __slots__ = ("bytes_in", "bytes_out", "packets_in", "packets_out")

    def __init__(self) -> None:
        self.packets_in = 0
        self.packets_out = 0
        self.bytes_in = 0
        self.bytes_out = 0


class EngineStats:
    """Counters of an :class:`~txsio.engineio.EngineServer`'s life (``engine.stats``), which
    :mod:`txsio.metrics` exports (``txsio_engineio_…``).

    The engine counts :attr:`upgrades` and :attr:`send_buffer_full`, its sessions
    :attr:`upgrade_failures`, and its transports their own :attr:`polling` or
    :attr:`websocket` counts.

    :ivar polling: the :class:`TransportStats` of long-polling.
    :ivar websocket: the :class:`TransportStats` of WebSocket.
    :ivar upgrades: sessions that completed an upgrade to WebSocket.
    :ivar upgrade_failures: upgrades abandoned (the probe closed, timed out, or sent something
        else).
    :ivar send_buffer_full: sessions closed with ``"send buffer full"``: more than
        ``max_buffered_bytes`` waited for a client that did not read.
    """

    __slots__ = ("polling", "send_buffer_full", "upgrade_failures", "upgrades", "websocket")

    def __init__(self) -> None:
        self.polling = TransportStats()
        self.websocket = TransportStats()
        self.upgrades = 0
        self.upgrade_failures = 0
        self.send_buffer_full = 0

    def transport(self, name: str) -> TransportStats:
        """The :class:`TransportStats` of the transport ``name``."""
        return self.websocket if name == "websocket" else self.polling
