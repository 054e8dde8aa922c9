"""What a message of another node may cost (:class:`PeerLimits`), and what the cluster adapter
counts and logs of what it cannot send or will not take (:class:`ClusterCounters`).

Who calls what: the Redis formats (:mod:`txsio.redis`) check a message's size and shape
against the :class:`PeerLimits` of their factory, the cluster core (:mod:`txsio.cluster`) its
lists and timeouts; both raise :class:`PeerMessageError` for what breaks a bound, which the
format's entry point drops.  They report to one :class:`ClusterCounters` (per adapter factory,
shared by the adapters of its namespaces): a message this node could not encode for the cluster
(:meth:`~ClusterCounters.encode_failed`), a message of a peer that was dropped
(:meth:`~ClusterCounters.dropped_message`).  It counts each, for monitoring, and logs a few
lines of each kind per ``log_interval`` at most, each with the number of those not logged
before: what a peer (or a client, through the application) sends must not turn into as many
log lines.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from twisted.logger import Logger

from ._jsjson import DEFAULT_MAX_DEPTH
from ._stats import REQUEST_BUCKETS, Histogram, count

if TYPE_CHECKING:
    from twisted.internet.interfaces import IReactorTime

__all__ = ["ClusterCounters", "PeerLimits", "PeerMessageError", "log_excerpt"]

log = Logger(namespace="txsio.cluster")


@dataclasses.dataclass(frozen=True, slots=True)
class PeerLimits:
    """What one message on the cluster's channels may cost this node: anything beyond is
    dropped (counted and logged by :class:`ClusterCounters`), except ``max_timeout``, which
    clamps.

    :ivar max_message_size: bytes; a longer message is dropped before it is decoded (1 MiB).
    :ivar max_depth: how deeply containers may nest in a message (72: the 64 of what clients
        may send, and the message around it).
    :ivar max_items: the most rooms in one list (a broadcast's ``rooms`` or ``except``, the
        rooms of ``sockets_join`` / ``sockets_leave``, of a remote socket), sockets in one
        ``fetch_sockets`` answer, and binary values (msgpack ``bin`` and extension types) in
        one message (10,000).  An ``all_rooms`` answer is bounded by its size only.
    :ivar max_timeout: seconds; another node's broadcast with acknowledgements keeps this
        node's clients' acknowledgements at most this long, whatever its timeout says (60).
    """

    max_message_size: int = 1 << 20
    max_depth: int = DEFAULT_MAX_DEPTH + 8
    max_items: int = 10_000
    max_timeout: float = 60.0


class PeerMessageError(ValueError):
    """A message on the cluster's channels is malformed or breaks a bound of
    :class:`PeerLimits`: it is dropped.

    :ivar reason: the kind, as :attr:`ClusterCounters.dropped_by_reason` counts it.
    """

    def __init__(self, reason: str, why: str) -> None:
        super().__init__(why)
        self.reason = reason


def log_excerpt(why: object) -> str:
    """An error's text for a log line, at most 200 characters (it may quote what a peer
    sent)."""
    text = why.decode("utf-8", "replace") if isinstance(why, bytes) else str(why)
    return text if len(text) <= 200 else text[:200] + "..."


class _Throttle:
    # At most `burst` log lines in a window of `interval` seconds that starts with the first;
    # counts what it held back, for the next line to say.
    __slots__ = ("_burst", "_clock", "_ends", "_interval", "_left", "held_back")

    def __init__(self, clock: IReactorTime, interval: float, burst: int) -> None:
        self._clock = clock
        self._interval = interval
        self._burst = burst
        self._ends = float("-inf")
        self._left = 0
        self.held_back = 0

    def allow(self) -> bool:
        now = self._clock.seconds()
        if now >= self._ends:
            self._ends = now + self._interval
            self._left = self._burst
        if self._left <= 0:
            self.held_back += 1
            return False
        self._left -= 1
        return True

    def take_held_back(self) -> int:
        count, self.held_back = self.held_back, 0
        return count


class ClusterCounters:
    """What the cluster adapters of one server could not send and would not take, for
    monitoring (read the attributes), and the rate-limited log lines that say so.

    :param clock: for the log rate.
    :param logger: where the lines go.
    :param log_interval: the window of the log rate, in seconds: at most ten lines of encoding
        failures and one of dropped messages in each.
    :ivar encode_failures: messages not sent to the other nodes because the cluster's
        encoding refused them (msgpack has no lone surrogates and no integers from
        ``2**64``); what had to happen locally happened.
    :ivar dropped: messages on the adapter's channels that were dropped (malformed, or
        beyond a bound of :class:`~txsio.cluster.PeerLimits`).
    :ivar dropped_by_reason: ``dropped``, by reason (``"too large"``, ``"malformed"``,
        ``"too deep"``, ``"too many items"``, ``"unexpected"``, ``"error"``).
    :ivar request_seconds: the round trips of this node's requests (``fetch_sockets``,
        ``server_side_emit`` with acknowledgements) that every node answered, by kind.
    :ivar request_timeouts: this node's requests that some node did not answer in time, by
        kind.
    """

    def __init__(self, clock: IReactorTime, *, logger: Logger = log,
                 log_interval: float = 10.0) -> None:
        self.encode_failures = 0
        self.dropped = 0
        self.dropped_by_reason: dict[str, int] = {}
        self.request_seconds: dict[str, Histogram] = {}
        self.request_timeouts: dict[str, int] = {}
        self._log = logger
        self._log_interval = log_interval
        # An application's failures may come in a burst worth reading; a peer's garbage not.
        self._encode_lines = _Throttle(clock, log_interval, 10)
        self._drop_lines = _Throttle(clock, log_interval, 1)
        self._failure_lines = _Throttle(clock, log_interval, 1)

    def encode_failed(self, what: str, nsp: str, why: object, *, log_it: bool = True) -> None:
        """Count ``what`` (e.g. "a broadcast") of namespace ``nsp`` that could not be encoded
        for the cluster; log it (rate-limited) unless the caller raises it instead."""
        self.encode_failures += 1
        if log_it and self._encode_lines.allow():
            self._log.warn(
                "{what} of namespace {nsp} stays on this node: it cannot be published, the "
                "cluster's encoding refused it ({why}); {held_back} more not logged before",
                what=what, nsp=log_excerpt(nsp), why=log_excerpt(why),
                held_back=self._encode_lines.take_held_back())

    def request_answered(self, kind: str, seconds: float) -> None:
        """Count a request of ``kind`` that every node answered after ``seconds``."""
        histogram = self.request_seconds.get(kind)
        if histogram is None:
            histogram = self.request_seconds[kind] = Histogram(REQUEST_BUCKETS)
        histogram.observe(seconds)

    def request_timed_out(self, kind: str) -> None:
        """Count a request of ``kind`` that some node did not answer in time."""
        count(self.request_timeouts, kind)

    def dropped_message(self, reason: str, why: object, where: object) -> None:
        """Count a message that arrived on ``where`` (a channel) and was dropped for
        ``reason``; log it (rate-limited, peer text cut to 200 characters)."""
        self.dropped += 1
        self.dropped_by_reason[reason] = self.dropped_by_reason.get(reason, 0) + 1
        if self._drop_lines.allow():
            self._log.warn(
                "dropped a message on {where} ({reason}: {why}); {held_back} more dropped "
                "and not logged before", where=log_excerpt(where), reason=reason,
                why=log_excerpt(why), held_back=self._drop_lines.take_held_back())

    def handling_failed(self, where: object) -> None:
        """Count a message on ``where`` whose handling raised (a bug, called in the
        ``except`` block), and log the failure (rate-limited)."""
        self.dropped += 1
        self.dropped_by_reason["error"] = self.dropped_by_reason.get("error", 0) + 1
        if self._failure_lines.allow():
            self._log.failure("error handling a message on {where}; {held_back} more not "
                              "logged before", where=log_excerpt(where),
                              held_back=self._failure_lines.take_held_back())
