"""``twistd sio --metrics PATH`` and ``--metrics-port ENDPOINT``: where Prometheus scrapes.

:func:`txsio.tap.makeService` calls :func:`serve_metrics`: with ``--metrics`` alone, the
metrics are a :class:`~txsio._pages.Mount` of the root router, on every ``--port``; with
``--metrics-port`` they are served there only, by a site of their own that a
:class:`MetricsListener` (a child of the service, like the other listeners) listens with, so
the public port never shows them.  Either way the registry is the server's
(:attr:`txsio.Server.metrics_registry`), with the process's own metrics added
(:func:`txsio.metrics.add_process_metrics`): under twistd the process is the server's alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred, DeferredList

from ._pages import Mount, _MountOnly
from ._service import SHUTDOWN_TIMEOUT, _ConnectionTracker, _Listener, _TapSite

if TYPE_CHECKING:
    from twisted.python import usage

    from .server import Server

__all__ = ["DEFAULT_PATH", "MetricsListener", "serve_metrics"]

#: Where ``--metrics-port`` serves the metrics without ``--metrics``.
DEFAULT_PATH = "/metrics"

#: The largest request body the metrics' own site reads (it answers GET and HEAD only).
_MAX_BODY = 64 * 1024


def serve_metrics(options: usage.Options, io: Server,
                  reactor: Any) -> tuple[Mount | None, MetricsListener | None]:
    """What serves the metrics of ``io`` for ``options``: the mount for the root router (on
    the ``--port`` listeners), or the listener of ``--metrics-port``; ``(None, None)``
    without either option."""
    path, endpoint = options["metrics"], options["metrics-port"]
    if path is None and endpoint is None:
        return None, None
    from .metrics import add_process_metrics

    add_process_metrics(io.metrics_registry)
    mount = Mount.at(path or DEFAULT_PATH, io.metrics_resource())
    if endpoint is None:
        return mount, None
    site = _TapSite(_MountOnly(mount), max_request_body=_MAX_BODY,
                    access_log=bool(options["access-log"]), reactor=reactor)
    return None, MetricsListener(endpoint, _ConnectionTracker(site, reactor), reactor)


class MetricsListener(_Listener):
    """Listens on ``--metrics-port``; when stopping, also closes the connections it accepted
    (the graceful stop closes those of the ``--port`` listeners only), so a scraper's
    keep-alive connection does not outlive the service."""

    def stopService(self) -> Deferred[object] | None:
        stopping = super().stopService()
        closing: Deferred[Any] = Deferred.fromCoroutine(self.factory.close_all(SHUTDOWN_TIMEOUT))
        waits: list[Deferred[Any]] = [closing]
        if stopping is not None:
            waits.append(stopping)
        return DeferredList(waits).addCallback(lambda _: None)
