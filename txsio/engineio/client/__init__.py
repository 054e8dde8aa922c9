"""The Engine.IO v4 client: long-polling over treq, WebSocket over Autobahn, and the upgrade.

Like Node's ``engine.io-client`` 6:

.. test-setup:
   from txsio.engineio import EngineServer
   server = EngineServer()
   server.on("connection", lambda session: session.on("message", session.send))
   serve(server)

::

    from txsio.engineio.client import EngineClient

    engine = EngineClient("http://127.0.0.1:8080", path="/engine.io")
    engine.on("open", lambda: engine.send("hello"))
    engine.on("message", print)
    engine.on("close", lambda reason, description: print("closed:", reason))
    engine.open()

.. test-check:
   from twisted.internet.defer import Deferred
   echoed = Deferred()
   engine.on("message", echoed.callback)
   assert await wait(echoed) == "hello"

Called by the user (or by :class:`txsio.Client`): :meth:`EngineClient.open`,
:meth:`~EngineClient.send`, :meth:`~EngineClient.close`, :meth:`~EngineClient.on`.  Called by
the transports (the engine is their :class:`TransportListener`): ``transport_open``,
``transport_packet``, ``transport_error``, ``transport_close``, ``transport_drain``.  Called by
treq and Autobahn: the transports' request callbacks and the Autobahn client protocol's
``onOpen`` / ``onMessage`` / ``onClose``.

The package, one concept a module (this module re-exports their public names):

- :mod:`~txsio.engineio.client.engine`: :class:`EngineClient`, the session state machine
  (handshake, heartbeat, write buffer, upgrade); it imports neither treq nor Autobahn.
- :mod:`~txsio.engineio.client.transport`: :class:`ClientTransport`, the base the transports
  share, :class:`TransportState`, :class:`TransportListener`, :class:`TransportError`.
- :mod:`~txsio.engineio.client.url`: :class:`EngineURL`, on ``hyperlink``.
- :mod:`~txsio.engineio.client.polling`: :class:`HTTPPollingTransport` (treq).
- :mod:`~txsio.engineio.client.websocket`: :class:`WebSocketTransport`, its Autobahn client
  protocol and the connector.

Theory of operation
-------------------
States of the engine (:class:`EngineState`)::

    NEW ─open()─► OPENING ─handshake (open packet)─► OPEN ─close()─► CLOSING ─drained─► CLOSED
                     │                                  │                                 ▲
                     └── transport error / close / ping timeout / bad handshake ──────────┘

- ``OPENING``: the first transport (``transports[0]``) is opening; the first packet must be the
  handshake, ``0{"sid", "upgrades", "pingInterval", "pingTimeout", "maxPayload"}``.  Anything
  else is a protocol error (``"transport error"``).
- ``OPEN``: messages flow.  Outgoing packets wait in the write buffer until the transport is
  *writable* (polling: no POST in flight; WebSocket: always) and no upgrade is under way, then
  go out together: one POST carries the whole buffer (at most ``maxPayload`` bytes of it).
- ``CLOSING``: :meth:`EngineClient.close` waits for the write buffer to drain (bounded by
  ``close_timeout``) and for an upgrade in progress to settle, then closes with
  ``"forced close"``.
- ``CLOSED``: terminal.  ``close`` has fired once with the reason: ``"forced close"``,
  ``"transport close"`` (the server closed), ``"transport error"`` (an HTTP error, a refused
  connection, garbage), or ``"ping timeout"``.

Heartbeat (EIO v4): the server pings, the client answers ``pong`` at once.  Silence for
``pingInterval + pingTimeout`` after the handshake or the last ping means the connection is
lost (``"ping timeout"``).

Upgrade: once open on polling, for each transport of ``upgrades`` that the caller allows, the
client opens a WebSocket with the sid, sends ``2probe`` and expects ``3probe``; then it pauses
polling (waits for the pending GET, which the server releases with a ``noop``, and the pending
POST), switches to the WebSocket, sends ``5`` and flushes the buffer there.  A probe that fails
is closed and reported as ``upgrade_error``; the session carries on polling.

Every transport reports when its I/O is over (:meth:`ClientTransport.wait_released`): the
requests finished or were cancelled ``close_timeout`` after the close, the TCP connection gone,
the connection pool's idle connections closed.  :meth:`EngineClient.close` returns a Deferred
of that, so a test can end with a clean reactor.
"""

from __future__ import annotations

from .engine import PROTOCOL, EngineClient, EngineState, TransportFactory
from .polling import HTTPPollingTransport, PollingTransport
from .transport import (
    DEFAULT_MAX_PAYLOAD,
    ClientTransport,
    TransportError,
    TransportListener,
    TransportState,
)
from .url import EngineURL
from .websocket import WebSocketConnector, WebSocketTransport, default_ws_connector

__all__ = [
    "DEFAULT_MAX_PAYLOAD",
    "PROTOCOL",
    "ClientTransport",
    "EngineClient",
    "EngineState",
    "EngineURL",
    "HTTPPollingTransport",
    "PollingTransport",
    "TransportError",
    "TransportFactory",
    "TransportListener",
    "TransportState",
    "WebSocketConnector",
    "WebSocketTransport",
    "default_ws_connector",
]
