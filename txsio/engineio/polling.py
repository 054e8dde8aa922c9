"""HTTP long-polling: the twisted.web side of one polling transport.

:class:`PollingTransport` is an adapter between twisted.web requests and an
:class:`~txsio.engineio.session.EngineSession`.

Called by :class:`~txsio.engineio.resource.EngineIOResource` (for each request of the session,
with the query it parsed once): :meth:`~PollingTransport.handle_get`,
:meth:`~PollingTransport.handle_post`.

Called by the session: :attr:`~PollingTransport.writable`, :meth:`~PollingTransport.send`,
:meth:`~PollingTransport.close`.

At most one GET (the long poll) and one POST are in flight: a second GET is a protocol
violation (the new request gets a bare 400, no body, as Node's engine.io 6 answers it, and the
session closes with ``"transport error"``), and so is a POST while another POST of the session
is still arriving, which only an :class:`~txsio.engineio.site.EngineSite` can see (see
:mod:`txsio.engineio.site`), and a binary POST from an EIO4 client.  A GET
whose client goes away closes the session as well, as Node does; nothing is written to a
request after it finished.  The session's :class:`~txsio.engineio.wire.WireFormat` reads and
writes the bodies.

Backpressure on the receiving side: while the session's send queue is congested (more than
half of ``max_buffered_bytes`` waits for a GET), a POST is held, unread, until a GET takes the
queue; then its packets are handed to the session and it is answered.  A client that sends
without reading what the server answers is thus not read either (its next POST would overlap
the held one).  A held POST whose session closes is answered as a POST for an unknown session
would be (400, code 1); one whose client goes away closes the session, as Node closes a
session whose POST goes before it is answered.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.server import NOT_DONE_YET

from .._stats import TransportStats
from ._compression import compress_poll
from .errors import EngineRequestError, ErrorCode
from .packet import EngineIOParseError, Packet, PacketType
from .session import SessionState
from .site import body_too_large, posts_arriving

if TYPE_CHECKING:
    from twisted.web.server import Request

    from .session import EngineSession, Outgoing
    from .wire import WireFormat

__all__ = ["PollingTransport"]

log = Logger()

_CLOSE = Packet(PacketType.CLOSE)
_NOOP = Packet(PacketType.NOOP)


class PollingTransport:
    """The long-polling transport of one session.

    :param wire: the session's wire format.
    :param max_body: the largest POST body accepted, in bytes.
    :param max_packets: the most packets accepted in one POST body.
    :param stats: where its traffic is counted (its engine's ``stats.polling``): the packets
        of each POST body decoded and the body's bytes, the packets of each GET answered and
        the answer's body bytes (a POST's ``ok`` is not counted).
    """

    name = "polling"
    upgrades_to: tuple[str, ...] = ("websocket",)

    def __init__(self, wire: WireFormat, *, max_body: int, max_packets: int,
                 stats: TransportStats | None = None) -> None:
        self.wire = wire
        self._stats = TransportStats() if stats is None else stats
        self.session: EngineSession | None = None
        self._max_body = max_body
        self._max_packets = max_packets
        self._get: Request | None = None
        self._get_query: Mapping[str, str] = {}
        self._close_pending = False
        #: a POST waiting for the send queue to drain, with its query and binary flag
        self._held: tuple[Request, Mapping[str, str], bool] | None = None

    # -- called by the session -------------------------------------------------------------

    @property
    def writable(self) -> bool:
        """Whether a GET is waiting for packets."""
        return self._get is not None

    def send(self, data: Outgoing) -> bool:
        """Answer the pending GET with packets (and the close packet, when one is due).

        Polling writes packets only: a lone message or a broadcast's frame is refused
        (``False``), so the session queues it for the next GET.
        """
        if not isinstance(data, list):
            return False
        request = self._get
        if request is None:  # pragma: no cover - the session checks writable first
            return False
        self._get = None
        closing = self._close_pending
        if closing:
            self._close_pending = False
            data = [*data, _CLOSE]
        self._write(request, data)
        if closing:
            self._refuse_held()
            if self.session is not None:
                self.session.close_delivered(self)
        elif self._held is not None:
            self._release()
        return True

    def close(self, *, graceful: bool) -> bool:
        """Deliver the close packet: now if a GET is pending, else to the next GET if graceful.

        :returns: whether nothing is left to deliver.
        """
        self._close_pending = True
        if self._get is not None:
            self.send([])
            return True
        if not graceful:
            self._close_pending = False
            self._refuse_held()
            return True
        return False

    # -- called by the resource ------------------------------------------------------------

    def handle_get(self, request: Request, query: Mapping[str, str]) -> int | bytes:
        """Serve a long-poll GET: answer now if packets are queued, else hold the request.

        :param request: the GET.
        :param query: its query parameters (JSONP and base64 are asked for there).
        """
        session = self.session
        assert session is not None
        if self._get is not None:
            session.transport_error(self, "overlapping GET requests")
            return _bare(request, 400)
        self._get = request
        self._get_query = query
        request.notifyFinish().addBoth(self._get_finished, request)
        # Queued packets first (a graceful close delivers them); send() appends the close packet.
        session.transport_ready(self)
        if self._close_pending and self._get is request:
            self.send([])
        return NOT_DONE_YET

    def handle_post(self, request: Request, query: Mapping[str, str]) -> int | bytes:
        """Serve a POST: decode its packets and hand them to the session (held while the send
        queue is congested).

        :param request: the POST.
        :param query: its query parameters (a JSONP POST carries ``j``).
        """
        session = self.session
        assert session is not None
        content_type = request.getHeader(b"content-type") or b""
        binary = content_type.split(b";")[0].strip().lower() == b"application/octet-stream"
        if binary and not self.wire.binary_polling:
            session.transport_error(self, "binary POST body from an EIO4 client")
            return _bare(request, 400)
        if self._held is not None or posts_arriving(request, session.id) > 1:
            session.transport_error(self, "overlapping POST requests")
            return _bare(request, 400)
        if session.congested:
            # The client does not take what the server answers: wait for a GET to take it.
            self._held = (request, query, binary)
            request.notifyFinish().addErrback(self._held_gone, request)
            return NOT_DONE_YET
        return self._read_post(request, query, binary)

    def _read_post(self, request: Request, query: Mapping[str, str], binary: bool) -> bytes:
        session = self.session
        assert session is not None
        body = None if body_too_large(request) else _read_body(request, self._max_body)
        if body is None:
            # As Node's engine.io: a bare 413 (no body, no headers of its own), and the session
            # lives on; what the POST carried is dropped (its client sees the POST fail).
            log.info("session {sid}: POST body larger than max_http_buffer_size, refused",
                     sid=session.id)
            return _bare(request, 413)
        try:
            packets = self.wire.decode_poll(body, binary=binary, jsonp="j" in query,
                                            max_packets=self._max_packets)
        except EngineIOParseError as e:
            # As Node's engine.io: the packets before the bad record are delivered, then the
            # session closes with "parse error" (a pending GET gets the close packet, a later
            # one "Session ID unknown"), and the POST is answered "ok" all the same.
            if e.packets:
                self._deliver(e.packets, len(body))
            session.parse_error(self, e)
        else:
            self._deliver(packets, len(body))
        request.setHeader(b"content-type", b"text/html")
        return b"ok"

    def _deliver(self, packets: Sequence[Packet], size: int) -> None:
        # Hand a POST's packets (``size`` bytes of body) to the session, in order.
        session = self.session
        assert session is not None
        stats = self._stats
        stats.packets_in += len(packets)
        stats.bytes_in += size
        for packet in packets:
            if packet.type is PacketType.CLOSE and self._get is not None:
                # The client closes: release its pending poll, as Node does.
                self.send([_NOOP])
            session.receive(packet, self)

    def _release(self) -> None:
        # A GET took the queue: the held POST is read now, unless the queue is congested
        # still (its client's next GET releases it).
        session = self.session
        held = self._held
        if held is None or session is None or session.congested \
                or session.state is not SessionState.OPEN:
            return
        self._held = None
        request, query, binary = held
        _answer(request, self._read_post(request, query, binary))

    def _refuse_held(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            request = held[0]
            _answer(request, EngineRequestError(ErrorCode.UNKNOWN_SID).render(request))

    def _held_gone(self, failure: Failure, request: Request) -> None:
        if self._held is not None and self._held[0] is request:
            self._held = None
            if self.session is not None:
                # As Node closes a session whose POST went before it was answered.
                self.session.transport_error(self, "data request connection closed "
                                                   "prematurely")

    # -- helpers ---------------------------------------------------------------------------

    def _write(self, request: Request, packets: list[Packet]) -> None:
        query = self._get_query
        body, content_type, dropped = self.wire.encode_poll(
            packets, jsonp=query.get("j"), b64="b64" in query)
        if dropped:
            log.warn("dropped {count} message(s) containing U+001E, which polling cannot carry",
                     count=dropped)
        stats = self._stats
        stats.packets_out += len(packets) - dropped
        stats.bytes_out += len(body)
        body = compress_poll(request, body, self.session, packets)
        request.setHeader(b"content-type", content_type)
        request.setHeader(b"content-length", b"%d" % len(body))
        request.write(body)
        request.finish()

    def _get_finished(self, result: object, request: Request) -> None:
        if self._get is not request:
            return  # answered by us
        self._get = None
        if isinstance(result, Failure) and self.session is not None:
            # The client went away while its poll was pending (Node: "poll connection closed
            # prematurely").
            self.session.transport_error(self, "poll connection closed prematurely")


def _bare(request: Request, code: int) -> bytes:
    # A refusal as Node's engine.io writes it (writeHead(code).end()): the status only, no
    # body and no headers of the transport's (no content type, no cache-control).
    request.setResponseCode(code)
    request.responseHeaders.removeHeader(b"cache-control")
    return b""


def _answer(request: Request, body: bytes) -> None:
    # Finish a request answered after render returned NOT_DONE_YET (a held POST: one whose
    # client went away was forgotten when it went, see _held_gone).
    request.setHeader(b"content-length", b"%d" % len(body))
    request.write(body)
    request.finish()


def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` when it is larger than ``limit`` bytes.

    twisted.web has spooled the body already (to a temporary file past 100 kB); the length is
    checked before anything is read into memory.
    """
    length = request.getHeader(b"content-length")
    if length is not None:
        try:
            if int(length) > limit:
                return None
        except ValueError:
            return None
    content = request.content
    if content is None:
        return b""
    content.seek(0)
    data = content.read(limit + 1)
    if len(data) > limit:
        return None
    return data
