"""The client's WebSocket transport, over Autobahn: :class:`WebSocketTransport`.

Made by :class:`~txsio.engineio.client.EngineClient` for ``"websocket"`` (opened first, or as
the upgrade's probe); driven by the engine through the
:class:`~txsio.engineio.client.transport.ClientTransport` methods.  It connects through a
:data:`WebSocketConnector` (:func:`default_ws_connector`: TCP, or TLS for ``wss``).  Called by
Autobahn: :class:`_WebSocketClientProtocol`'s ``onOpen`` / ``onMessage`` / ``onClose``, which
hand over to the transport.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from autobahn.twisted.websocket import WebSocketClientFactory, WebSocketClientProtocol
from twisted.internet.defer import CancelledError, Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..._twisted import default_reactor
from .._compression import marked_uncompressed
from ..packet import EngineIOParseError, Packet, decode_packet, encode_packet
from .transport import DEFAULT_MAX_PAYLOAD, ClientTransport, TransportState, describe_failure
from .url import EngineURL, store_cookies

if TYPE_CHECKING:
    from http.cookiejar import CookieJar

    from twisted.internet.interfaces import IReactorTime
    from twisted.web.iweb import IPolicyForHTTPS

__all__ = ["WebSocketConnector", "WebSocketTransport", "default_ws_connector"]

log = Logger()


class _WebSocketClientProtocol(WebSocketClientProtocol):
    """Autobahn's side of :class:`WebSocketTransport`.

    Called by Autobahn: ``onOpen``, ``onMessage``, ``onClose``.  Called by the transport:
    ``sendMessage``, ``sendClose``, ``dropConnection``.
    """

    factory: _WebSocketClientFactory

    def onConnect(self, response: Any) -> None:
        # The handshake's raw response: its Set-Cookie fields one by one (Autobahn's parsed
        # headers join repeated fields with ", ", which cookie dates contain).
        owner = self.factory.owner
        if owner is not None:
            owner._ws_response(getattr(self, "http_response_data", b""))

    def onOpen(self) -> None:
        owner = self.factory.owner
        if owner is not None:
            owner._ws_open(self)

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        owner = self.factory.owner
        if owner is not None:
            owner._ws_message(payload, isBinary)

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        # Autobahn leaves the close handshake timer behind when the server drops the TCP
        # connection before answering our close frame.
        timer = self.closeHandshakeTimeoutCall
        if timer is not None:
            self.closeHandshakeTimeoutCall = None
            try:
                timer.cancel()
            except Exception:  # already fired
                pass
        owner = self.factory.owner
        if owner is not None:
            owner._ws_closed(self, wasClean, code, reason)


class _WebSocketClientFactory(WebSocketClientFactory):
    protocol = _WebSocketClientProtocol  # type: ignore[assignment]  # (typeshed: a callable)
    owner: WebSocketTransport | None = None


#: Connects a WebSocket client factory: ``connect(factory, url) -> Deferred[protocol]``.
WebSocketConnector = Callable[[WebSocketClientFactory, EngineURL], "Deferred[Any]"]


def default_ws_connector(reactor: Any, tls: IPolicyForHTTPS | None = None) -> WebSocketConnector:
    """A :data:`WebSocketConnector` over TCP (and TLS for ``wss``) on *reactor*.

    :param reactor: an ``IReactorTCP`` and ``IReactorTime``.
    :param tls: the TLS policy (default: the system's trust roots, with host name checks).
    """

    def connect(factory: WebSocketClientFactory, url: EngineURL) -> Deferred[Any]:
        from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

        endpoint: Any = HostnameEndpoint(reactor, url.host, url.port)
        if url.secure:
            if tls is None:
                from twisted.internet.ssl import optionsForClientTLS

                creator: Any = optionsForClientTLS(url.host)
            else:
                creator = tls.creatorForNetloc(url.host.encode("idna"), url.port)
            endpoint = wrapClientTLS(creator, endpoint)
        return cast("Deferred[Any]", endpoint.connect(factory))

    return connect


class WebSocketTransport(ClientTransport):
    """The WebSocket transport: one Engine.IO packet per frame, over Autobahn.

    Called by Autobahn through :class:`_WebSocketClientProtocol`: ``_ws_open``,
    ``_ws_message``, ``_ws_closed``.  Autobahn's auto-ping is off (the Engine.IO heartbeat
    is the server's), and it refuses messages larger than ``max_payload``.

    :param url: the endpoint.
    :param query: see :class:`ClientTransport`.
    :param clock: see :class:`ClientTransport`.
    :param connector: how to connect (default: TCP/TLS on the global reactor).
    :param headers: extra HTTP headers for the opening handshake.
    :param max_payload: the largest message accepted, in bytes.
    :param close_timeout: see :class:`ClientTransport`.
    :param cookie_jar: where the cookies the handshake's response sets go (the engine's jar,
        which polling fills too), as a browser keeps them; none: they are not kept.
    """

    name = "websocket"

    def __init__(
        self,
        url: EngineURL,
        query: dict[str, str],
        *,
        clock: IReactorTime,
        connector: WebSocketConnector | None = None,
        headers: Mapping[str, str] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        close_timeout: float = 2.0,
        cookie_jar: CookieJar | None = None,
    ) -> None:
        super().__init__(query, clock=clock, close_timeout=close_timeout)
        self._cookie_jar = cookie_jar
        if connector is None:
            connector = default_ws_connector(default_reactor())
        self._url = url
        self._connector = connector
        self._headers = dict(headers or {})
        self._max_payload = max_payload
        self._connecting: Deferred[Any] | None = None
        self._protocol: _WebSocketClientProtocol | None = None
        self._connected = False

    def _do_open(self) -> None:
        factory = _WebSocketClientFactory(self._url.ws(self.query), headers=self._headers or None)
        factory.owner = self
        factory.setProtocolOptions(
            autoPingInterval=0,
            maxFramePayloadSize=self._max_payload,
            maxMessagePayloadSize=self._max_payload,
            closeHandshakeTimeout=self._close_timeout,
            serverConnectionDropTimeout=self._close_timeout,
        )
        self._factory = factory
        try:
            d = self._connecting = self._connector(factory, self._url)
        except Exception as e:
            self._clock.callLater(0, self._on_error, "websocket error", str(e))
            return
        d.addCallbacks(self._on_connected, self._on_connect_failed)
        d.addErrback(lambda f: log.failure("connecting a WebSocket", f))

    def _on_connected(self, protocol: Any) -> None:
        self._connecting = None
        self._connected = True
        self._protocol = protocol
        if self.state is TransportState.CLOSED:
            protocol.dropConnection(abort=True)

    def _on_connect_failed(self, failure: Failure) -> None:
        self._connecting = None
        if self.state is not TransportState.CLOSED and not failure.check(CancelledError):
            self._on_error("websocket error", describe_failure(failure))
        self._check_released()

    # -- called by the protocol ------------------------------------------------------------

    def _ws_response(self, raw: bytes) -> None:
        if self._cookie_jar is None:
            return
        lines = raw.split(b"\r\n")[1:]
        values = [line.partition(b":")[2].strip().decode("latin-1") for line in lines
                  if line.partition(b":")[0].strip().lower() == b"set-cookie"]
        if values:
            store_cookies(self._cookie_jar, self._url.http(self.query), values)

    def _ws_open(self, protocol: _WebSocketClientProtocol) -> None:
        self._protocol = protocol
        if self.state is TransportState.OPENING:
            self._on_open()

    def _ws_message(self, payload: bytes, is_binary: bool) -> None:
        if self.state not in (TransportState.OPEN, TransportState.PAUSED):
            return
        try:
            packet = decode_packet(payload if is_binary else payload.decode("utf-8"))
        except (UnicodeDecodeError, EngineIOParseError) as e:
            self._on_error("parse error", str(e))
            return
        self._on_packet(packet)

    def _ws_closed(
        self, protocol: _WebSocketClientProtocol, clean: bool, code: int | None,
        reason: str | None,
    ) -> None:
        self._connected = False
        self._protocol = None
        self._factory.owner = None
        if self.state is TransportState.OPENING:
            self._on_error("websocket error", reason or f"closed with code {code}")
        elif self.state is not TransportState.CLOSED:
            self._on_close("websocket connection closed")
        self._check_released()

    # -- the transport ---------------------------------------------------------------------

    def _write(self, packets: Sequence[Packet]) -> None:
        protocol = self._protocol
        if protocol is not None:
            for packet in packets:
                frame = encode_packet(packet)
                payload = frame if isinstance(frame, bytes) else frame.encode("utf-8")
                if marked_uncompressed(packet.data):
                    # Emitted with compress(False): never deflated.
                    protocol.sendMessage(payload, isBinary=isinstance(frame, bytes),
                                         doNotCompress=True)
                else:
                    protocol.sendMessage(payload, isBinary=isinstance(frame, bytes))
        # Frames are written at once: the transport stays writable.
        self.writable = True
        self._on_drain()

    def _do_close(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        elif self._protocol is not None:
            if self.state is TransportState.OPENING:
                self._protocol.dropConnection(abort=True)
            else:
                self._protocol.sendClose(1000)

    def _io_done(self) -> bool:
        return self._connecting is None and not self._connected

    def _cut(self) -> None:
        if self._connecting is not None:
            self._connecting.cancel()
        protocol = self._protocol
        if protocol is not None and protocol.transport is not None:
            cast(Any, protocol.transport).abortConnection()

