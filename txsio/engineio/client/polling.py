"""The client's long-polling transport, over treq: :class:`HTTPPollingTransport`.

Made by :class:`~txsio.engineio.client.EngineClient` for ``"polling"``; driven by the engine
through the :class:`~txsio.engineio.client.transport.ClientTransport` methods.  Called by treq
(through Deferreds): the completion of each GET and POST.  (The server's polling transport is
:class:`txsio.engineio.polling.PollingTransport`; ``PollingTransport`` here is this class's
former name, kept.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..._twisted import default_reactor
from ..packet import EngineIOParseError, Packet, PacketType, decode_payload, encode_payload
from .transport import DEFAULT_MAX_PAYLOAD, ClientTransport, TransportState, describe_failure

if TYPE_CHECKING:
    from http.cookiejar import CookieJar

    from twisted.internet.interfaces import IReactorTime
    from twisted.web.iweb import IPolicyForHTTPS, IResponse

    from .url import EngineURL

__all__ = ["HTTPPollingTransport", "PollingTransport"]

log = Logger()


class _HTTPStatusError(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(f"HTTP {code}")
        self.code = code


class _TooLarge(Exception):
    pass


class HTTPPollingTransport(ClientTransport):
    """Long-polling over treq: one GET always out, POSTs one at a time.

    Called by treq (through Deferreds): the completion of each GET and POST.  The engine
    batches the packets of each POST; the transport decodes each GET's payload.

    :param url: the endpoint.
    :param query: see :class:`ClientTransport`.
    :param clock: see :class:`ClientTransport`.
    :param reactor: the reactor of the default HTTP client (a persistent connection pool).
    :param http: an HTTP client with treq's ``request(method, url, *, headers, data,
        unbuffered)`` (a :class:`treq.client.HTTPClient`, or :class:`treq.testing.StubTreq`);
        default: one on a persistent pool of its own, closed when the transport is released.
    :param headers: extra HTTP headers for every request.
    :param max_payload: the largest response body accepted, in bytes.
    :param tls: the TLS policy of the default HTTP client (default: the system's trust
        roots, with host name checks).
    :param close_timeout: see :class:`ClientTransport`.
    :param cookie_jar: the cookies of the HTTP client made here (the engine's, shared with
        the WebSocket handshake); ``None``: a jar of its own.
    """

    name = "polling"

    def __init__(
        self,
        url: EngineURL,
        query: dict[str, str],
        *,
        clock: IReactorTime,
        reactor: Any = None,
        http: Any = None,
        headers: Mapping[str, str] | None = None,
        max_payload: int = DEFAULT_MAX_PAYLOAD,
        tls: IPolicyForHTTPS | None = None,
        close_timeout: float = 2.0,
        cookie_jar: CookieJar | None = None,
    ) -> None:
        super().__init__(query, clock=clock, close_timeout=close_timeout)
        self._url = url
        self._pool: Any = None
        if http is None:
            from treq.client import HTTPClient
            from twisted.web.client import Agent, HTTPConnectionPool

            reactor = default_reactor(reactor)
            self._pool = HTTPConnectionPool(reactor, persistent=True)
            agent = (Agent(reactor, pool=self._pool) if tls is None
                     else Agent(reactor, contextFactory=tls, pool=self._pool))
            # (treq annotates its subclass, but works with any http.cookiejar.CookieJar.)
            http = HTTPClient(agent, cookiejar=cast(Any, cookie_jar))
        self._http = http
        # Header names as bytes only (str and bytes names mixed trip BytesWarning).
        self._headers = {k.encode("latin-1"): [v.encode("latin-1")]
                         for k, v in (headers or {}).items()}
        self._max_payload = max_payload
        self._requests: set[Deferred[bytes]] = set()
        self._polling = False
        self._get: Deferred[bytes] | None = None
        self._pause_callback: Callable[[], None] | None = None

    # -- requests --------------------------------------------------------------------------

    def _request(self, method: str, body: bytes | None = None) -> Deferred[bytes]:
        headers = dict(self._headers)
        if body is not None:
            headers[b"Content-Type"] = [b"text/plain;charset=UTF-8"]
        url = self._url.http(self.query)
        d = Deferred.fromCoroutine(self._fetch(method, url, headers, body))
        self._requests.add(d)

        def done(result: object) -> object:
            self._requests.discard(d)
            self._check_released()
            return result

        return d.addBoth(done)

    async def _fetch(
        self, method: str, url: str, headers: dict[bytes, list[bytes]], body: bytes | None
    ) -> bytes:
        import treq

        response: IResponse = await self._http.request(
            method, url, headers=headers, data=body, unbuffered=True
        )
        length = response.length
        if isinstance(length, int) and length > self._max_payload:
            response.deliverBody(_Discard())
            raise _TooLarge()
        chunks: list[bytes] = []
        size = 0

        def collect(chunk: bytes) -> None:
            nonlocal size
            size += len(chunk)
            if size > self._max_payload:
                raise _TooLarge()
            chunks.append(chunk)

        await treq.collect(response, collect)
        if response.code != 200:
            raise _HTTPStatusError(response.code)
        return b"".join(chunks)

    def _io_done(self) -> bool:
        return not self._requests

    def _cut(self) -> None:
        for d in list(self._requests):
            d.cancel()

    def _release_resources(self) -> Deferred[None]:
        if self._pool is None:
            return succeed(None)
        pool, self._pool = self._pool, None
        # On the next turn: a connection whose response just ended goes back to the pool
        # after the response's callbacks have run.
        d: Deferred[None] = Deferred()

        def close_pool() -> None:
            pool.closeCachedConnections().chainDeferred(d)

        self._clock.callLater(0, close_pool)
        return d

    # -- the transport ---------------------------------------------------------------------

    def _do_open(self) -> None:
        self._poll()

    def _poll(self) -> None:
        self._polling = True
        d = self._get = self._request("GET")
        d.addCallbacks(self._on_poll_data, self._on_poll_failure)
        d.addErrback(lambda f: log.failure("polling", f))

    def _on_poll_failure(self, failure: Failure) -> None:
        self._get = None
        self._polling = False
        if self.state is TransportState.CLOSED or failure.check(CancelledError):
            return
        self._on_error("xhr poll error", _describe(failure))

    def _on_poll_data(self, body: bytes) -> None:
        self._get = None
        if self.state is TransportState.CLOSED:
            return
        try:
            packets = decode_payload(body.decode("utf-8"))
        except (UnicodeDecodeError, EngineIOParseError) as e:
            self._polling = False
            self._on_error("parse error", str(e))
            return
        for packet in packets:
            if self.state is TransportState.OPENING and packet.type is PacketType.OPEN:
                self._on_open()
            if packet.type is PacketType.CLOSE:
                self._polling = False
                self._on_close("transport closed by the server")
                return
            self._on_packet(packet)
            if self._is_closed():
                return
        self._polling = False
        if self.state is TransportState.PAUSING:
            self._maybe_paused()
        elif self.state is TransportState.OPEN:
            self._poll()
        elif self.state is TransportState.OPENING:
            # No handshake in the first response: a protocol error.
            self._on_error("parse error", "the first response has no handshake")

    def _write(self, packets: Sequence[Packet]) -> None:
        # EIO v4 polling cannot carry a text packet with the record separator in it; such a
        # packet (never produced by Socket.IO, whose JSON escapes it) is dropped.
        carried = [p for p in packets if not (isinstance(p.data, str) and "\x1e" in p.data)]
        if len(carried) != len(packets):
            log.warn("polling cannot carry a message containing \\x1e: dropped")
        self.writable = False
        if not carried:
            self.writable = True
            self._on_drain()
            return
        d = self._request("POST", encode_payload(carried).encode("utf-8"))
        d.addCallbacks(self._on_post_done, self._on_post_failure)
        d.addErrback(lambda f: log.failure("posting", f))

    def _on_post_done(self, _: bytes) -> None:
        self.writable = True
        if self.state is TransportState.PAUSING:
            self._maybe_paused()
        else:
            self._on_drain()

    def _on_post_failure(self, failure: Failure) -> None:
        if self.state is TransportState.CLOSED or failure.check(CancelledError):
            return
        self._on_error("xhr post error", _describe(failure))

    def _do_close(self) -> None:
        if self.state is TransportState.OPENING:
            # No session yet (or not known): nothing to tell the server.
            self._cut()
            return
        if self.writable:
            # (Not while a POST is out: overlapping POSTs break the session anyway.)
            d = self._request("POST", b"1")
            d.addErrback(lambda f: None)
        # The server answers the pending GET when it reads the close packet; the grace
        # period cuts it otherwise.

    def _do_discard(self) -> None:
        # After an upgrade the session lives on, on the WebSocket: no close packet.  Paused,
        # no request is out; anything left is cut by the grace period.
        pass

    def pause(self, on_paused: Callable[[], None]) -> None:
        """Wait for the pending GET (the server releases it) and POST, then *on_paused*."""
        self.state = TransportState.PAUSING
        self._pause_callback = on_paused
        self._maybe_paused()

    def _maybe_paused(self) -> None:
        if self.state is not TransportState.PAUSING or self._polling or not self.writable:
            return
        self.state = TransportState.PAUSED
        callback, self._pause_callback = self._pause_callback, None
        if callback is not None:
            callback()

    def resume(self) -> None:
        """Poll again after a failed upgrade."""
        if self.state not in (TransportState.PAUSING, TransportState.PAUSED):
            return
        self.state = TransportState.OPEN
        self._pause_callback = None
        if not self._polling:
            self._poll()
        if self.writable:
            self._on_drain()




#: The former name of :class:`HTTPPollingTransport`.
PollingTransport = HTTPPollingTransport


class _Discard:
    # An IProtocol that swallows a response body.
    def makeConnection(self, transport: Any) -> None:
        transport.stopProducing()

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Failure) -> None:
        pass


def _describe(failure: Failure) -> Any:
    if failure.check(_HTTPStatusError):
        return cast(_HTTPStatusError, failure.value).code
    if failure.check(_TooLarge):
        return "response too large"
    return describe_failure(failure)
