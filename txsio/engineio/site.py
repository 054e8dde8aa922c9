"""``EngineSite``: a twisted.web ``Site`` that bounds request bodies as they arrive, and the
time a connection may take to send its request.

twisted.web reads a whole request body before it calls ``render`` (spooling it to a temporary
file past 100 kB), with no limit.  Mounted in any ``Site``, the Engine.IO resource still checks
a body's length before reading it, but the bytes have been received and stored by then.  In an
:class:`EngineSite`, each request counts its body bytes as they arrive and stops storing them
past ``max_request_body``; the Engine.IO resource then refuses the request with a bare 413 and
the session lives on, as Node's.  Memory and disk stay bounded whatever the client sends.

The site also notes which polling sessions have a POST *arriving* (headers received, body
not yet complete), so that a second POST on a session whose first one is still arriving is
refused with 400 and the session closed, as the protocol requires (Node: "data request
overlap from client").  The sid is read from the request target by
:func:`~txsio.engineio.handshake.target_query`, the resource's own reading, so the two never
disagree about which session a POST is for.  A plain twisted.web ``Site`` cannot do this: it
hands a request to the resource only once its body is complete, so no POST is ever seen
arriving.

Deadlines (theory of operation)
-------------------------------
twisted.web's own timeout closes a connection that has been silent for a minute, and every byte
restarts it: a peer that sends a byte of its request every few seconds keeps a connection, and
its descriptor, forever.  An :class:`EngineSite`'s connections have deadlines that bytes do not
move.  Each connection is in one of these states (:class:`_Wait`), and each state has its
deadline, counted from when the connection entered it:

- ``NEW``: accepted, nothing received yet (a TLS handshake included): ``idle_timeout``;
- ``HEADERS``: a request has begun, its headers are not all in: ``headers_timeout``;
- ``BODY``: the headers are in, the body is not: ``body_timeout``;
- no deadline while a request is being handled: a long-poll GET held open, a WebSocket (which
  takes the connection over and never leaves this state), any slow resource.  The Engine.IO
  heartbeat governs those;
- ``IDLE``: kept alive after a response, no byte of a next request yet: ``idle_timeout``;
- ``CLOSING``: closed for a deadline; aborted if still open after ``abortTimeout`` (15 s,
  twisted.web's own grace for a connection that does not go).

A connection past its deadline is closed, with a ``408`` first when a request had begun
(twisted.web's inactivity timeout still runs beside the deadlines; when it fires first, it
closes the connection the same way).  At most ``max_pending_connections`` connections may wait
in ``NEW``, ``HEADERS`` or ``BODY`` at once: one more, and the one that has waited longest is
closed (with a ``503`` when a request had begun), so that a flood of connections that never
finish a request cannot use up the process's descriptors, while a client that sends its
request in the round trip after it connected is served.

One periodic check closes what is due (every second, or a quarter of the shortest deadline when
that is shorter), as Node's ``connectionsCheckingInterval`` does, instead of a timer per
connection: each state keeps its connections in the order they entered it, so the first ones
are the first due and a check looks at those only; a state change costs two dictionary updates
(about 0.3 µs and 50 bytes a connection, against 3.8 µs and 400 bytes for scheduling and
cancelling a reactor timer).  The check runs while the site listens (as twisted.web's clock for
its log does), and after that while some connection is in a state with a deadline.

Called by twisted.web: :meth:`EngineRequest.gotLength`,
:meth:`EngineRequest.handleContentChunk`, :meth:`EngineRequest.requestReceived`,
:meth:`EngineRequest.connectionLost`,
:meth:`EngineRequest.finish`, and the ``_DeadlineChannel`` methods (``connectionMade``,
``dataReceived``, ``allHeadersReceived``, ``allContentReceived``, ``requestDone``,
``connectionLost``, ``timeoutConnection``).  Called by the polling transport:
:func:`body_too_large`, :func:`posts_arriving`.
"""

from __future__ import annotations

import math
from collections import Counter, OrderedDict
from enum import Enum
from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.web.http import HTTPChannel, _GenericHTTPChannelProtocol
from twisted.web.http_headers import Headers
from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from ._writepath import DirectWriter, direct_writer
from .errors import EngineRequestError
from .handshake import target_query

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall
    from twisted.python.failure import Failure

__all__ = ["EngineRequest", "EngineSite", "body_too_large", "posts_arriving"]

log = Logger()

#: The most connections waiting for their request when the descriptor limit is unknown.
_MAX_PENDING_CEILING = 10_000
#: What a connection closed for a deadline, or to make room, is told when a request had begun.
_TIMED_OUT = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_TOO_BUSY = (b"HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
             b"Content-Length: 0\r\n\r\n")


class EngineRequest(Request):
    """A request that stops storing its body past its site's ``max_request_body``, and does
    not read a body's ``Content-Type`` that cannot make it a form."""

    def _site(self) -> EngineSite:
        site: EngineSite = self.channel.site  # type: ignore[attr-defined]
        return site

    _too_large = False
    _received = 0
    _arriving_sid: str | None = None
    #: the request target and its query, when read as the headers came in (a POST's, for its
    #: sid): :func:`~txsio.engineio.handshake.request_query` reads it rather than the target
    target_read: tuple[bytes, dict[str, str]] | None = None

    def gotLength(self, length: int | None) -> None:
        """Headers are in: refuse to store a body announced too large; note arriving POSTs."""
        site = self._site()
        limit: int = site.max_request_body
        command = getattr(self.channel, "_command", b"")
        if command == b"POST":
            target = getattr(self.channel, "_path", b"")
            read = _sid_of(target)
            if read is not None:
                sid, query = read
                self.target_read = target, query
                self._arriving_sid = sid
                site.arriving_posts[sid] += 1
        if length is not None and length > limit:
            self._too_large = True
            super().gotLength(0)
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        """Store a chunk of body unless the body went past the bound."""
        if self._too_large:
            return
        self._received += len(data)
        if self._received > self._site().max_request_body:
            self._too_large = True
            if self.content is not None:
                self.content.seek(0)
                self.content.truncate()
            return
        super().handleContentChunk(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        """All of the request is in: let twisted.web parse its body as a form only when its
        ``Content-Type`` may name one."""
        # twisted.web reads the Content-Type of every POST with a body through the email
        # package to learn whether it is a form: more than half the cost of a polling POST.
        # A type that does not hold "form" cannot be one (an encoded word, "=?", could hide
        # it: that one is left to twisted.web).
        content_type = self.requestHeaders.getRawHeaders(b"content-type")
        if content_type is not None and not _may_be_form(content_type[0]):
            self._parsePOSTFormSubmission = False
        super().requestReceived(command, path, version)

    def finish(self) -> Any:
        """Forget the arriving POST, then finish."""
        self._forget_post()
        return super().finish()

    def connectionLost(self, reason: Any) -> None:
        """Forget the arriving POST, then let twisted.web clean up."""
        self._forget_post()
        super().connectionLost(reason)

    def _forget_post(self) -> None:
        sid, self._arriving_sid = self._arriving_sid, None
        if sid is not None:
            arriving = self._site().arriving_posts
            arriving[sid] -= 1
            if arriving[sid] <= 0:
                del arriving[sid]


class EngineSite(Site):
    """A ``Site`` whose requests bound their bodies as they arrive, and whose connections have
    deadlines (:doc:`engineio` tells how).

    :param resource: the root resource.
    :param max_request_body: the largest request body stored, in bytes; give it the largest
        ``max_http_buffer_size`` of the Engine.IO servers mounted in the site.
    :param idle_timeout: seconds a connection may stay open with no request in progress: a new
        one before its first byte, a kept-alive one after a response (Node's
        ``keepAliveTimeout`` is 5 s too); ``None``: no limit.
    :param headers_timeout: seconds from the first byte of a request to the end of its
        headers, however the bytes trickle in (Node's ``headersTimeout``); ``None``: no limit.
    :param body_timeout: seconds from the end of a request's headers to the end of its body;
        ``None``: no limit.
    :param max_pending_connections: the most connections at once that wait for a request
        (new ones, and those whose request's headers or body is still arriving); one more
        closes the one that has waited longest.  Default: a quarter of the process's
        descriptor limit (``RLIMIT_NOFILE``), between 64 and 10,000, so that connections
        that never finish a request leave three quarters of the descriptors to the clients
        being served.
    :param access_log: whether a line is logged per request (twisted.web's access log, in
        its ``logFormatter``'s format).  Default: only when ``logPath`` names a file for it;
        without one twisted.web would send every line to the Twisted log, a seventh of the
        cost of a polling request, and each poll is a request (Node logs none; nor does
        ``twistd sio`` unless ``--access-log``).
    :param kwargs: passed to ``twisted.web.server.Site``; its ``timeout`` (twisted.web's
        inactivity timeout, 60 s) still applies, and is the only one over HTTP/2.
    :ivar deadline_closes: how many connections were closed, by cause: ``"idle"``,
        ``"headers"``, ``"body"`` (past that deadline), ``"pending"`` (to stay within
        ``max_pending_connections``), ``"aborted"`` (still open ``abortTimeout`` seconds
        after being closed).
    """

    def __init__(self, resource: IResource, *, max_request_body: int = 1_000_000,
                 idle_timeout: float | None = 5.0, headers_timeout: float | None = 60.0,
                 body_timeout: float | None = 60.0, max_pending_connections: int | None = None,
                 access_log: bool | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("requestFactory", EngineRequest)
        super().__init__(resource, **kwargs)
        self.access_log = kwargs.get("logPath") is not None if access_log is None \
            else access_log
        self.max_request_body = max_request_body
        #: sid -> number of POST requests whose body is still arriving or being handled
        self.arriving_posts: Counter[str] = Counter()
        for name, value in (("idle_timeout", idle_timeout),
                            ("headers_timeout", headers_timeout),
                            ("body_timeout", body_timeout)):
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds or None, "
                                 f"not {value!r}")
        if max_pending_connections is None:
            max_pending_connections = _default_max_pending()
        elif max_pending_connections < 1:
            raise ValueError("max_pending_connections must be at least 1, "
                             f"not {max_pending_connections!r}")
        self.idle_timeout = idle_timeout
        self.headers_timeout = headers_timeout
        self.body_timeout = body_timeout
        self.max_pending_connections = max_pending_connections
        self.deadline_closes: Counter[str] = Counter()
        self._deadlines = _Deadlines(self)

    # twisted.web's protocol for a connection (it turns into HTTP/2 when TLS negotiates it)
    # around the channel that keeps the deadlines.
    def protocol(self) -> _GenericHTTPChannelProtocol:
        """The protocol of a new connection (called by ``buildProtocol``)."""
        return _GenericHTTPChannelProtocol(_DeadlineChannel())

    def log(self, request: Any) -> None:
        """Log ``request``'s access line, if :attr:`access_log` asks for one."""
        if self.access_log:
            super().log(request)

    def stopFactory(self) -> None:
        """No longer listening: the deadline check stops once no connection waits."""
        super().stopFactory()
        if not self._deadlines._tracked:
            self._deadlines._idle()

    @property
    def pending_connections(self) -> int:
        """How many connections wait for a request now (``NEW``, ``HEADERS`` or ``BODY``)."""
        return self._deadlines.pending


def _default_max_pending() -> int:
    """A quarter of the descriptor limit, between 64 and 10,000 (1,024 assumed unknown)."""
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        unlimited = soft == resource.RLIM_INFINITY
    except (ImportError, OSError, ValueError):  # pragma: no cover - not POSIX
        soft, unlimited = 1024, False
    if unlimited:
        return _MAX_PENDING_CEILING
    return max(64, min(_MAX_PENDING_CEILING, soft // 4))


class _Wait(Enum):
    """What a connection waits for, each with its deadline (see the module docstring)."""

    #: accepted, nothing received yet
    NEW = "new"
    #: kept alive after a response, nothing of the next request received yet
    IDLE = "idle"
    #: a request's headers are arriving
    HEADERS = "headers"
    #: a request's body is arriving
    BODY = "body"
    #: closed for a deadline, waiting to go
    CLOSING = "closing"

    # Members are singletons: hash them as objects (Enum's own hash is Python code, and runs
    # several times a request).
    __hash__ = object.__hash__


#: the states counted against ``max_pending_connections``
_PENDING = frozenset({_Wait.NEW, _Wait.HEADERS, _Wait.BODY})
#: the states before a request: its first byte moves the connection on to ``HEADERS``
_BEFORE_REQUEST = frozenset({_Wait.NEW, _Wait.IDLE})
#: per state with a deadline: the cause counted in ``deadline_closes``, and what the peer is
#: told (a request had begun: it gets an answer)
_EXPIRY: dict[_Wait, tuple[str, bytes | None]] = {
    _Wait.NEW: ("idle", None), _Wait.IDLE: ("idle", None),
    _Wait.HEADERS: ("headers", _TIMED_OUT), _Wait.BODY: ("body", _TIMED_OUT),
}


class _DeadlineChannel(HTTPChannel):
    """An HTTP/1.1 channel that tells its site's :class:`_Deadlines` what it waits for, and
    writes its responses through the direct write path.

    twisted.web calls the methods below, in this order for each request; a WebSocket takeover
    leaves the channel in the middle (handling its request) for good.

    Responses: on a plain TCP connection, what a request writes (``writeHeaders``, ``write``,
    ``writeSequence``) goes to the connection's :class:`~txsio.engineio._writepath.DirectWriter`,
    so that a response (a polling answer: headers and body) leaves in one ``send()`` without
    the reactor's writer registration.  Anything else that writes to or closes the transport
    comes after what the writer kept: the channel flushes it when the response is complete
    (``requestDone``), before twisted.web reads the next request (twisted.web answers some
    itself, ``100 Continue`` or ``400``, straight to the transport; and the next request may
    be a WebSocket upgrade, after which the transport is the WebSocket's, with its own
    writer), and before it closes the connection (``Connection: close``, HTTP/1.0, a
    deadline).  A response written over several reactor turns (a stream) leaves once per
    turn.
    Producers need nothing more: the channel is the transport's producer, and the writer
    pauses it as Twisted's buffer would (see :mod:`~txsio.engineio._writepath`).
    """

    #: the site's deadline keeper (set when connected, in an EngineSite)
    _keeper: _Deadlines | None = None
    #: what the channel waits for now; ``None``: nothing with a deadline
    _waiting: _Wait | None = None
    #: the connection's local address, once asked for
    _host: Any = None
    #: the connection's direct write path, made with its first response (a connection taken
    #: over by a WebSocket never needs one); ``None`` where the transport cannot take it
    _direct: DirectWriter | None = None
    #: whether :attr:`_direct` was looked for
    _direct_known = False

    def _writer(self) -> DirectWriter | None:
        """The direct write path for a response, or ``None``: the transport's own
        ``write`` (TLS, a wrapper; and a transport taken over, which the channel no longer
        has)."""
        if self._direct_known:
            return self._direct if self.transport is not None else None
        self._direct_known = True
        if self.transport is not None:
            self._direct = direct_writer(self.transport)
        return self._direct

    def _flush(self) -> None:
        """Send what the direct write path kept, before anything else writes or closes."""
        direct = self._direct
        if direct is not None:
            direct.flush()

    def writeHeaders(self, version: bytes, code: bytes, reason: bytes, headers: Any) -> None:
        direct = self._writer()
        if direct is None or not isinstance(headers, Headers):
            # (twisted.web's Request always gives Headers; anything else is sanitised by
            # twisted.web's own method, behind what was kept)
            self._flush()
            super().writeHeaders(version, code, reason, headers)
            return
        head = [version, b" ", code, b" ", reason, b"\r\n"]
        for name, values in headers.getAllRawHeaders():
            for value in values:
                head += (name, b": ", value, b"\r\n")
        head.append(b"\r\n")
        direct.write(b"".join(head))

    def write(self, data: bytes) -> None:
        direct = self._writer()
        if direct is None:
            super().write(data)
        else:
            direct.write(data)

    def writeSequence(self, iovec: Any) -> None:
        direct = self._writer()
        if direct is None:
            super().writeSequence(iovec)
        else:
            direct.write(b"".join(iovec))

    def loseConnection(self) -> None:
        # Twisted closes once its own buffer is empty: what was kept must be in it by then.
        self._flush()
        super().loseConnection()

    def getHost(self) -> Any:
        # Every request asks (twisted.web's Request reads it when it is made), and each ask is
        # a getsockname() system call: a connection's own address does not change.
        host = self._host
        if host is None:
            host = self._host = super().getHost()
        return host

    def connectionMade(self) -> None:
        super().connectionMade()
        keeper = getattr(getattr(self, "site", None), "_deadlines", None)
        if isinstance(keeper, _Deadlines):
            self._keeper = keeper
            keeper.wait(self, _Wait.NEW)

    def dataReceived(self, data: bytes) -> None:
        # A first byte starts a request, whose headers then have their own deadline.
        if self._waiting in _BEFORE_REQUEST:
            self._keeper.wait(self, _Wait.HEADERS)  # type: ignore[union-attr]
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        super().allHeadersReceived()
        if self._waiting is _Wait.HEADERS and self.length != 0:
            self._keeper.wait(self, _Wait.BODY)  # type: ignore[union-attr]

    def allContentReceived(self) -> None:
        # The request is handled from here on: no deadline, however long that takes.
        if self._waiting is not None and self._waiting is not _Wait.CLOSING:
            self._keeper.forget(self)  # type: ignore[union-attr]
        super().allContentReceived()

    def requestDone(self, request: Any) -> None:
        # The response is complete: send it now, before twisted.web reads the next request
        # (pipelined in the same segment, or replayed from its buffer), so that whatever
        # answers that one (twisted.web's own 100 or 400, a WebSocket taking the transport
        # over) comes after it.  So the writer keeps bytes only while a request is answered,
        # and twisted.web reads no request then.
        self._flush()
        # Idle before twisted.web replays what arrived meanwhile (the next request's bytes
        # move the channel on to HEADERS at once).
        if self._keeper is not None and self._waiting is None and self.persistent:
            self._keeper.wait(self, _Wait.IDLE)
        super().requestDone(request)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self._keeper is not None:
            self._keeper.forget(self)
        super().connectionLost(reason)

    def timeoutConnection(self) -> None:
        # twisted.web's inactivity timeout (the site's ``timeout``) fired before the deadline
        # of the channel's state, or with it: close as that deadline does (counted and logged
        # with the others, a 408 if a request had begun) rather than with a log line each.
        if self._waiting is None:
            super().timeoutConnection()
        else:
            self._keeper.expire(self)  # type: ignore[union-attr]


class _Deadlines:
    """The deadlines of an :class:`EngineSite`'s connections (see the module docstring).

    :class:`_DeadlineChannel` calls :meth:`wait` and :meth:`forget`; the site's reactor calls
    :meth:`_check` while some connection waits.
    """

    def __init__(self, site: EngineSite) -> None:
        self.site = site
        self._clock = site.reactor
        #: per state, its connections and when each entered it, in that order
        self.since: dict[_Wait, OrderedDict[_DeadlineChannel, float]] = {
            state: OrderedDict() for state in _Wait}
        #: how many connections are in a state of ``_PENDING``
        self.pending = 0
        self._tracked = 0
        self._call: IDelayedCall | None = None
        #: closes since the last log line, by cause
        self._unlogged: Counter[str] = Counter()

    def wait(self, channel: _DeadlineChannel, state: _Wait) -> None:
        """``channel`` waits for ``state``'s event from now on."""
        # On every request's path (twice): no more than a few dictionary operations.
        old = channel._waiting
        was_pending = False
        if old is None:
            self._tracked += 1
        else:
            del self.since[old][channel]
            was_pending = old in _PENDING
        if state in _PENDING:
            if not was_pending:
                self._make_room()
                self.pending += 1
        elif was_pending:
            self.pending -= 1
        channel._waiting = state
        self.since[state][channel] = self._clock.seconds()
        if self._call is None:
            self._call = self._clock.callLater(self._interval(), self._check)

    def forget(self, channel: _DeadlineChannel) -> None:
        """``channel`` has no deadline any more (handling a request, or gone)."""
        state = channel._waiting
        if state is None:
            return
        channel._waiting = None
        del self.since[state][channel]
        self._tracked -= 1
        if state in _PENDING:
            self.pending -= 1
        if not self._tracked:
            self._idle()

    def _idle(self) -> None:
        """Nothing waits: stop checking, unless the site is listening (then the check goes
        on, once a second as twisted.web's own clock for its log, rather than stopping and
        starting again with each request of a lone client)."""
        if self._call is not None and not self.site.numPorts:
            # No timer left behind once the site stopped listening (a test's reactor stays
            # clean).
            self._call.cancel()
            self._call = None

    def _timeout(self, state: _Wait) -> float:
        site = self.site
        seconds = {
            _Wait.NEW: site.idle_timeout, _Wait.IDLE: site.idle_timeout,
            _Wait.HEADERS: site.headers_timeout, _Wait.BODY: site.body_timeout,
            _Wait.CLOSING: _DeadlineChannel.abortTimeout,
        }[state]
        return math.inf if seconds is None else float(seconds)

    def _interval(self) -> float:
        shortest = min(self._timeout(state) for state in (_Wait.NEW, _Wait.HEADERS, _Wait.BODY))
        return max(0.05, min(1.0, shortest / 4))

    def _check(self) -> None:
        """Close every connection past its deadline; abort those that did not go."""
        self._call = None
        now = self._clock.seconds()
        # CLOSING first, so that a connection closed by this check gets its full grace.
        for state in (_Wait.CLOSING, _Wait.NEW, _Wait.IDLE, _Wait.HEADERS, _Wait.BODY):
            due_before = now - self._timeout(state)
            due = []
            for channel, since in self.since[state].items():
                if since > due_before:
                    break  # the others entered the state later: not due either
                due.append(channel)
            for channel in due:
                self.expire(channel)
        self._report()
        if (self._tracked or self.site.numPorts) and self._call is None:
            self._call = self._clock.callLater(self._interval(), self._check)

    def expire(self, channel: _DeadlineChannel) -> None:
        """``channel`` is past the deadline of its state: close it (abort it if closing)."""
        state = channel._waiting
        if state is _Wait.CLOSING:
            self._abort(channel)
        elif state is not None:
            cause, answer = _EXPIRY[state]
            self._close(channel, answer, cause)

    def _make_room(self) -> None:
        """Close the connections that have waited longest until one more may wait."""
        while self.pending >= self.site.max_pending_connections:
            oldest: tuple[float, _Wait, _DeadlineChannel] | None = None
            for state in (_Wait.NEW, _Wait.HEADERS, _Wait.BODY):
                waiting = self.since[state]
                if waiting:
                    channel, since = next(iter(waiting.items()))
                    if oldest is None or since < oldest[0]:
                        oldest = (since, state, channel)
            if oldest is None:  # pragma: no cover - pending counts these states
                return
            _, state, channel = oldest
            self._close(channel, None if state is _Wait.NEW else _TOO_BUSY, "pending")

    def _close(self, channel: _DeadlineChannel, answer: bytes | None, cause: str) -> None:
        transport = channel.transport
        if transport is None or getattr(transport, "negotiatedProtocol", None) == b"h2":
            # Taken over (HTTP/2 replaced this channel): no longer an HTTP/1.1 connection.
            self.forget(channel)
            return
        channel._flush()  # the answer comes after a response already written
        if answer is not None and not getattr(transport, "disconnecting", False):
            transport.write(answer)
        self._count(cause)
        self.wait(channel, _Wait.CLOSING)
        channel.loseConnection()

    def _abort(self, channel: _DeadlineChannel) -> None:
        self.forget(channel)
        transport = channel.transport
        if channel._direct is not None:
            channel._direct.drop()  # as Twisted drops its buffer
        if transport is not None:
            self._count("aborted")
            getattr(transport, "abortConnection", transport.loseConnection)()

    def _count(self, cause: str) -> None:
        self.site.deadline_closes[cause] += 1
        if cause != "idle":  # closing idle connections is routine
            self._unlogged[cause] += 1

    def _report(self) -> None:
        if not self._unlogged:
            return
        causes, self._unlogged = self._unlogged, Counter()
        evicted = causes.pop("pending", 0)
        if evicted:
            log.warn("closed {count} connection(s) waiting for a request, to keep at most "
                     "{limit} waiting (max_pending_connections)", count=evicted,
                     limit=self.site.max_pending_connections)
        if causes:
            log.info("closed {count} connection(s) past their deadline: {causes}",
                     count=sum(causes.values()), causes=", ".join(
                         f"{n} {c}" for c, n in sorted(causes.items())))


def body_too_large(request: Any) -> bool:
    """Whether an :class:`EngineRequest` dropped its body for being past the bound."""
    return bool(getattr(request, "_too_large", False))


def posts_arriving(request: Any, sid: str) -> int:
    """How many POSTs for ``sid`` the request's site has in flight (0 outside an EngineSite)."""
    site = getattr(getattr(request, "channel", None), "site", None)
    arriving = getattr(site, "arriving_posts", None)
    if arriving is None:
        return 0
    return int(arriving.get(sid, 0))


def _may_be_form(content_type: bytes) -> bool:
    lowered = content_type.lower()
    return b"form" in lowered or b"=?" in lowered


def _sid_of(target: bytes) -> tuple[str, dict[str, str]] | None:
    # Read as the resource reads it (one parser, and the resource is given this reading), so
    # both see the same sid.
    try:
        query = target_query(target)
    except EngineRequestError:
        return None  # the resource refuses the request before any session sees it
    sid = query.get("sid")
    return None if sid is None else (sid, query)
