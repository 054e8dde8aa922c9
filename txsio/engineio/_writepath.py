"""The direct write path: bytes for an idle plain TCP connection go to its socket at the end of
the reactor turn, without registering the socket as a writer with the reactor.

Twisted's ``transport.write`` only buffers: it registers the socket as a writer, the reactor's
next poll reports it writable, ``doWrite`` sends, and the socket is unregistered — two
``epoll_ctl`` calls and a poll for every write to an idle connection.  A broadcast of one
message to a thousand idle sockets pays that a thousand times.  A :class:`DirectWriter` instead
keeps what a connection writes during the current reactor turn and, once the turn's callbacks
are done, hands it to the kernel with one ``send()`` (or, for large pieces such as a binary
frame's header and payload, one ``sendmsg()`` that gathers them where joining would copy them);
only what the kernel does not take goes to Twisted's buffered ``write`` (and so to writer
registration), exactly as if Twisted had buffered it all and sent the first part.

Called by the WebSocket frame writer (:class:`~txsio.engineio._wsfast.FastServerProtocol`):
:func:`direct_writer` once per connection, then :meth:`DirectWriter.write` for each frame and
:meth:`DirectWriter.flush` before anything else writes to, or closes, the transport.  Called
the same way by :class:`~txsio.engineio.EngineSite`'s HTTP channel for its responses (a
polling answer, headers and body, in one ``send()``), which flushes when a response is done.
Called by the reactor: the turn's flush (:class:`_Turn`), one ``callLater(0)`` for all
connections.

Theory of operation
-------------------
When the turn's flush runs: Twisted's ``mainLoop`` runs ``runUntilCurrent`` (timed calls) and
then ``doIteration`` (poll, then reads and writes) in turn.  A ``callLater(0)`` made while the
poll's events are handled (a frame read, a broadcast it triggers) runs in the very next
``runUntilCurrent``, before the next poll: no extra poll, and every write of that turn to one
connection — a burst of messages — leaves in one ``send()``.  One made by a timed call runs
after one more poll, with a zero timeout.

Eager writers (the WebSocket's): a connection written to from elsewhere (one recipient of a
broadcast) sends its first bytes of the turn at once rather than after the whole broadcast,
so that its peer reads while the server writes to the others, and keeps the rest of the turn's
for the flush (a burst of messages costs two ``send()`` calls).  While the connection handles
what it read (:meth:`DirectWriter.hold`), its own answers are kept and leave in one ``send()``
when the read is handled (:meth:`DirectWriter.release`).

Order: bytes never overtake one another.  A connection keeps bytes only while Twisted's buffer
is empty; once Twisted holds bytes for it (the kernel did not take everything), every write
goes to Twisted's ``write`` behind them until its ``doWrite`` has drained the buffer.  Other
writers of the same transport (Autobahn's queued and chopped writes, its close) flush the kept
bytes first (:meth:`DirectWriter.flush`).

Producers: the bytes a connection keeps count towards Twisted's ``bufferSize`` as Twisted's
buffer would: past it they are sent at once, and what the kernel leaves goes to Twisted's
``write``, which pauses the registered streaming producer as it always does (and resumes it
when its buffer is empty).  The user-space bytes of a connection — kept here plus Twisted's
buffer — never pass ``bufferSize`` without the producer being paused, so txsio's bounded send
buffers (:mod:`txsio.engineio.session`, ``max_buffered_bytes``) stand on the same signals.

Closing: while the transport is closing (``loseConnection``), half-closed
(``loseWriteConnection``) or aborted (``abortConnection``), kept bytes go to Twisted's ``write``,
which sends them before it closes, or drops them after an abort, as it would have.  Errors: a
send the kernel refuses for want of room (``EAGAIN``, ``ENOBUFS``) leaves the bytes to Twisted;
any other error (``ECONNRESET``, ``EPIPE``: the peer is gone) stops reading and leaves the bytes
to Twisted too, whose own ``doWrite`` meets the error and reports ``connectionLost`` with
``ConnectionLost``, exactly as it reports a failed write of its own.

Where: only a plain TCP connection (:class:`twisted.internet.tcp.Connection`, without
``startTLS``, whose writing methods are Twisted's own) on a POSIX reactor; any other transport
(TLS, a wrapper, a test's transport) keeps the normal path.  Everything read from Twisted's
transport beyond its public API is listed in :data:`TWISTED_INTERNALS`; a test checks each still
exists, so a Twisted upgrade that moves one fails the suite instead of silently breaking the
write path.
"""

from __future__ import annotations

import errno
from typing import Any
from weakref import WeakKeyDictionary, ref

from twisted.internet import tcp
from twisted.logger import Logger
from twisted.python.runtime import platform

__all__ = ["TWISTED_INTERNALS", "DirectWriter", "direct_writer"]

log = Logger()

#: The Twisted internals this module touches: attributes of an open
#: ``twisted.internet.tcp.Server`` beyond the public API (``write``, ``writeSequence``,
#: ``getHandle``, ``stopReading``, ``bufferSize``, ``reactor``).  Each is read below.
TWISTED_INTERNALS: tuple[str, ...] = (
    "connected",             # false once connectionLost ran
    "disconnecting",         # loseConnection was called: Twisted writes, then closes
    "_writeDisconnecting",   # loseWriteConnection was called: Twisted writes, then shuts down
    "_aborting",             # abortConnection was called: nothing more is sent
    "TLS",                   # startTLS was called: writes go through the TLS layer
    "dataBuffer",            # Twisted's send buffer: b"" once doWrite has sent it all
    "_tempDataLen",          # bytes written since doWrite last took them: 0 when idle
    # The methods whose behaviour the path reproduces: a subclass that overrides one of them
    # writes differently, and keeps the normal path.
    "writeSomeData",
    "doWrite",
)

#: Errors of ``send()`` that mean "no room now", not "the connection is gone" (as Twisted's
#: ``writeSomeData`` reads them).
_NO_ROOM = frozenset({errno.EWOULDBLOCK, errno.EAGAIN, errno.ENOBUFS})

#: From this many bytes kept on, several pieces are sent with one ``sendmsg()`` (gathered by
#: the kernel) rather than joined first; for fewer, joining costs less than gathering.
_GATHER_FROM = 16384
#: The most pieces one ``sendmsg()`` gathers (the kernel's ``IOV_MAX`` is 1024).
_MAX_GATHER = 64

#: The writing methods of Twisted's own TCP connection (see :func:`direct_writer`).
_TWISTED_WRITING = tuple((name, getattr(tcp.Connection, name))
                         for name in ("write", "writeSequence", "writeSomeData", "doWrite"))


def direct_writer(transport: object, *, eager: bool = False) -> DirectWriter | None:
    """A :class:`DirectWriter` for ``transport``, or ``None`` if the direct path is not safe
    for it (anything but Twisted's own plain TCP connection on a POSIX reactor).

    :param eager: send a connection's first write of a turn at once (see :class:`DirectWriter`).
    """
    if not isinstance(transport, tcp.Connection) or platform.getType() != "posix":
        return None
    cls = type(transport)
    for name, method in _TWISTED_WRITING:
        if getattr(cls, name, None) is not method:
            return None
    if transport.TLS:
        return None
    return DirectWriter(transport, _turn_of(transport.reactor), eager)


class _Turn:
    """The flush at the end of the reactor's turn: one ``callLater(0)`` for every connection
    that kept bytes during the turn."""

    __slots__ = ("_call", "_flushing", "_reactor", "_writers", "generation")

    def __init__(self, reactor: Any) -> None:
        # Weakly: the turns are kept by reactor, weakly (a test's reactor goes with the test).
        self._reactor = ref(reactor)
        self._writers: list[DirectWriter] = []
        self._call: Any = None
        #: counts the turn's flushes: a writer that sent during one notes it, and keeps its
        #: next bytes for the flush (an eager writer sends once per generation at most)
        self.generation = 0
        self._flushing = False

    def add(self, writer: DirectWriter) -> None:
        """``writer`` kept bytes: flush it at the end of this turn."""
        self._writers.append(writer)
        if self._call is None:
            self._schedule()

    def sent(self) -> None:
        """An eager writer sent during this turn: the turn's end must still come (and
        count), so that its next turn's first bytes go at once again."""
        if self._call is None and not self._flushing:
            self._schedule()

    def _schedule(self) -> None:
        reactor = self._reactor()
        if reactor is not None:  # always, while a connection on it writes
            self._call = reactor.callLater(0, self._run)

    def _run(self) -> None:
        self._call = None
        writers, self._writers = self._writers, []
        self._flushing = True  # the sends below are this turn's end: nothing to schedule
        try:
            for writer in writers:
                try:
                    writer.flush()
                except Exception:
                    # One connection's failure (a producer's callback raising) must not
                    # keep the others' bytes.
                    log.failure("flushing a connection's writes")
        finally:
            self._flushing = False
        self.generation += 1


#: One turn per reactor (weakly: a test's reactor goes with the test).
_turns: WeakKeyDictionary[Any, _Turn] = WeakKeyDictionary()


def _turn_of(reactor: Any) -> _Turn:
    turn = _turns.get(reactor)
    if turn is None:
        turn = _turns[reactor] = _Turn(reactor)
    return turn


class DirectWriter:
    """The write path of one plain TCP connection (see the module docstring).

    :meth:`write` takes the bytes a caller would give ``transport.write``; :meth:`flush` sends
    what it kept now (the turn's flush calls it; so must anyone about to write to, or close,
    the transport otherwise).

    An *eager* writer (a WebSocket's) sends its first bytes of a turn at once instead of
    keeping them: a broadcast's frame reaches the first recipients while it is still being
    written to the others, whose peers then read it in parallel; later writes of the same turn
    are kept and leave together at the turn's flush (a burst costs two ``send()`` calls, not
    one per message).  While :meth:`hold` is in effect (the connection is handling what it
    read) its writes are kept whatever the mode, and :meth:`release` sends them in one
    ``send()``: the answers to one read leave together, as soon as the read is handled.
    """

    __slots__ = ("_eager", "_held", "_kept", "_kept_size", "_sent_in", "_socket", "_transport",
                 "_turn")

    def __init__(self, transport: tcp.Connection, turn: _Turn, eager: bool = False) -> None:
        # Any: Twisted's FileDescriptor methods are untyped.
        self._transport: Any = transport
        #: the connection's socket (its handle for the life of the connection)
        self._socket: Any = transport.getHandle()
        self._turn = turn
        self._eager = eager
        #: how many :meth:`hold` calls wait for their :meth:`release` (writes are kept
        #: while any does)
        self._held = 0
        #: the turn generation of this writer's last send (it keeps bytes for the turn's
        #: flush once it sent in the current one)
        self._sent_in = -1
        #: the bytes kept this turn (None: none)
        self._kept: list[bytes] | None = None
        self._kept_size = 0

    def write(self, data: bytes) -> None:
        """Write ``data``: kept for the end of the turn (or sent at once, by an eager writer
        not held that has not sent this turn) while Twisted holds nothing for the
        connection, else given to Twisted's ``write`` behind what it holds."""
        kept = self._kept
        if kept is not None:
            kept.append(data)
            self._kept_size += len(data)
            if self._kept_size > self._transport.bufferSize:
                self.flush()  # as much as Twisted buffers before it pauses its producer
            return
        transport = self._transport
        if (transport.dataBuffer or transport._tempDataLen or not transport.connected
                or transport.disconnecting or transport._writeDisconnecting
                or transport._aborting or transport.TLS):  # not _open(transport), inline
            transport.write(data)
            return
        if self._eager and not self._held:
            turn = self._turn
            if self._sent_in != turn.generation:
                # The first bytes of the turn: at once (_send, inline: once per recipient of
                # every broadcast).
                self._sent_in = turn.generation
                if turn._call is None and not turn._flushing:
                    turn._schedule()  # turn.sent(), inline
                try:
                    sent = self._socket.send(data)
                except OSError as e:
                    if e.errno not in _NO_ROOM:
                        transport.stopReading()  # the connection is gone: see _send
                    sent = 0
                if sent < len(data):
                    transport.write(data[sent:] if sent else data)
                return
        self._kept = [data]
        self._kept_size = len(data)
        if len(data) > transport.bufferSize:
            self.flush()
        elif not self._held:
            self._turn.add(self)

    def hold(self) -> None:
        """Keep every write until :meth:`release` (the connection handles what it read, or
        writes the pieces of one frame).  Holds nest."""
        self._held += 1

    def release(self) -> None:
        """End a :meth:`hold`: once none is left, send what was kept meanwhile, now."""
        self._held -= 1
        if not self._held and self._kept is not None:
            self.flush()

    def drop(self) -> None:
        """Forget what was kept: the connection is being aborted (Twisted drops its buffer)."""
        self._kept = None

    def flush(self) -> None:
        """Send what was kept now; what the kernel does not take goes to Twisted's buffer."""
        kept = self._kept
        if kept is None:
            return
        self._kept = None
        transport = self._transport
        if transport.dataBuffer or transport._tempDataLen or not _open(transport):
            # Behind what Twisted holds; or Twisted closes after it.
            transport.writeSequence(kept)
            return
        if self._eager:
            turn = self._turn
            if self._sent_in != turn.generation:
                self._sent_in = turn.generation
                turn.sent()
        size = self._kept_size
        sock = self._socket
        try:
            if len(kept) == 1:
                sent = sock.send(kept[0])
            elif size >= _GATHER_FROM and len(kept) <= _MAX_GATHER:
                # Large pieces (a binary frame's payload, its header): handed to the kernel
                # as they are, where joining them would copy them once more.
                sent = sock.sendmsg(kept)
            else:
                data = b"".join(kept)
                kept = [data]
                sent = sock.send(data)
        except OSError as e:
            if e.errno not in _NO_ROOM:
                # The connection is gone.  Twisted's doWrite meets the error again (the
                # socket is closed for writing) and reports it with connectionLost; not
                # reading first keeps it from reading an end of file instead, the error
                # having gone to this send.
                transport.stopReading()
            sent = 0
        if sent < size:
            transport.writeSequence(_unsent(kept, sent))


def _unsent(pieces: list[bytes], sent: int) -> list[bytes]:
    """What is left of ``pieces`` once the first ``sent`` bytes of them are sent."""
    for index, piece in enumerate(pieces):
        if sent < len(piece):
            rest = pieces[index:]
            if sent:
                rest[0] = piece[sent:]
            return rest
        sent -= len(piece)
    return []


def _open(transport: Any) -> bool:
    """Whether ``transport`` is open for writing with no close or half-close under way."""
    return bool(transport.connected and not transport.disconnecting
                and not transport._writeDisconnecting and not transport._aborting
                and not transport.TLS)
