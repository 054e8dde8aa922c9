"""The WebSocket frame fast path: unfragmented data frames read and written without
Autobahn's per-frame machinery, on top of Autobahn's server protocol.

Everything here leans on Autobahn internals, listed in :data:`AUTOBAHN_INTERNALS` (and the C
functions of its native masker, ``_nvx_xormasker``, which unmask large payloads:
:data:`NVX_INTERNALS`); a test checks each still exists on the installed Autobahn, so an
upgrade that moves one fails the suite instead of silently disabling (or breaking) the fast
path.  The Engine.IO adapter (:mod:`txsio.engineio.websocket`) subclasses
:class:`FastServerProtocol` and uses Autobahn's public API only.

Called by Autobahn (Twisted's reactor underneath): :meth:`FastServerProtocol.dataReceived`,
``sendData``, ``onMessage``, ``onClose``.  Called by the subclass:
:meth:`FastServerProtocol.write_frame`.  The subclass implements the hooks
:meth:`~FastServerProtocol.text_received`, :meth:`~FastServerProtocol.binary_received` and
:meth:`~FastServerProtocol.closed`.

Theory of operation
-------------------
Reading: almost every frame a Socket.IO client sends is one masked, unfragmented text or
binary frame, often several in one read, and a binary attachment often larger than one read
(Twisted reads 64 KiB at most).  While the connection is open and Autobahn holds no partial
frame and no message in progress (a fragmented one whose last frame has not come: a data
frame then is a protocol error, which only Autobahn knows to look for), such frames, up to
Autobahn's own size limits (``max_http_buffer_size``), are unmasked and dispatched here,
which skips Autobahn's per-frame machinery (a masker object, several callbacks and
Deferreds, debug formatting, and for a payload over several reads a copy of its buffer on
each read and three more to unmask it) — most of the server's time under load.

A frame cut by the read is completed by the next reads: a cut header (a few bytes) is kept
and put before the next read; a cut payload is kept as it came, in pieces (views of the
reads, never more than ``_MAX_PIECES``: past that they are joined into one growing
buffer, so a peer sending a byte per read costs a byte per byte), never more than the
frame's length, which is within the limit before anything of it is kept.  A whole payload is
joined once into one buffer, unmasked there in place by Autobahn's native masker, and made
``bytes``: two copies and the XOR, whatever the reads.

Anything else — control frames (ping, pong, close), fragments, oversized frames, lengths not
in their shortest form, unmasked frames, invalid UTF-8, or any state but open — goes to
Autobahn from the frame's first byte on, as it came (a kept header or payload included),
which then handles it (and fails the connection where the RFC says so) exactly as it would
have.  One exception: a close frame arriving alone (how a client ends a connection) is read
here too and handed to Autobahn's close handler, which answers it and closes as always.

Failing: Autobahn fails a connection (a protocol error, invalid UTF-8, a message too big) by
dropping it at once (``failByDrop``), without a word; as Node's ``ws`` does, the close frame
with the code (1002, 1007, 1009) is written first and the TCP connection closed after it, so
the peer learns why (RFC 6455 section 7.1.7).

Writing: for a message not to be compressed (no permessage-deflate, or marked not to),
with nothing queued, no frame logging and no auto-fragmentation, a message is written as one
unmasked frame straight to the transport (a large payload not joined to its header: both
are handed over as they are); otherwise Autobahn's
``sendMessage`` writes it.  ``sendData``, Autobahn's frame writer, skips its per-frame debug
logging on the same common case.  On a plain TCP connection both write through an eager
:class:`~txsio.engineio._writepath.DirectWriter`, without the reactor's writer registration:
the answers to one read leave together once it is handled, a connection's first frame of a
turn written from elsewhere (a broadcast) at once, later ones at the end of the turn.
Anything Autobahn writes or closes itself flushes it first, so bytes keep their order and are
sent before the connection closes.

Counting: every data message read (either path) and written by :meth:`write_frame` adds one
packet and its payload's length in bytes (a text's UTF-8 bytes as they came on the wire,
frame headers not included) to :attr:`FastServerProtocol.traffic`, whose reference the
subclass sets once per connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.util import encode_truncate
from autobahn.websocket import USES_NVX
from twisted.logger import Logger

from .._stats import TransportStats
from ._writepath import DirectWriter, direct_writer

#: What a payload may come in: the bytes of a read, or a view of part of them.
Buffer = bytes | bytearray | memoryview

__all__ = ["AUTOBAHN_INTERNALS", "FastServerProtocol"]

log = Logger()

#: The Autobahn internals this module touches: attributes of an open
#: ``WebSocketServerProtocol`` (dotted where nested).  Each is read or called below.
AUTOBAHN_INTERNALS: tuple[str, ...] = (
    # reading
    "state",                    # compared with STATE_OPEN (and STATE_CLOSING when writing)
    "STATE_OPEN",
    "STATE_CLOSING",
    "data",                     # Autobahn's receive buffer: empty between frames
    "current_frame",            # None between frames
    "inside_message",           # a fragmented message is in progress
    "_perMessageCompress",      # None without permessage-deflate
    "logOctets",
    "maxMessagePayloadSize",
    "maxFramePayloadSize",
    "_dataReceived",            # Autobahn's frame reader, given what the fast path leaves
    "onCloseFrame",             # Autobahn's handler of the peer's close frame
    # writing
    "sendData",                 # Autobahn's frame writer, overridden below
    "send_queue",               # empty unless Autobahn is chopping or syncing
    "logFrames",
    "autoFragmentSize",
    "trafficStats.outgoingOctetsWireLevel",
    "trafficStats.incomingOctetsWireLevel",
    # closing
    "closeHandshakeTimeoutCall",
    "failedByMe",
    "wasClean",
    "wasNotCleanReason",
    "failByDrop",
    "_fail_connection",         # Autobahn's way to fail the connection, overridden below
    "dropConnection",
    "_closeConnection",         # Autobahn's TCP close, overridden below
)


# From this payload size on, Autobahn's native masker (its NVX extension) unmasks: the cost
# of the big-int XOR below grows faster than the payload (about 14 us for 4 KiB, 0.3 ms for
# 16 KiB, 0.7 ms for 64 KiB, where the native masker takes 4 to 7 us for any of them).
# Without the extension Autobahn's masker is pure Python, slower still: the big ints stay.
_NATIVE_UNMASK_FROM = 2048 if USES_NVX else 1 << 62

#: The C functions of Autobahn's native masker (its cffi module ``_nvx_xormasker``) called
#: here, with Autobahn's NVX extension.
NVX_INTERNALS: tuple[str, ...] = ("nvx_xormask_new", "nvx_xormask_process",
                                  "nvx_xormask_free")

if USES_NVX:
    # Called directly: Autobahn's masker object copies a payload three times (a zeroed
    # buffer, the payload into it, bytes out of it); here the payload is XORed in place in
    # the one buffer it is joined into.
    from _nvx_xormasker import ffi as _nvx_ffi  # type: ignore[import-not-found]
    from _nvx_xormasker import lib as _nvx_lib


def _unmask(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XOR the repeated 4-byte ``mask`` (RFC 6455 section 5.3), via big ints
    (small payloads) or Autobahn's native masker."""
    n = len(payload)
    if not n:
        return b""
    if n >= _NATIVE_UNMASK_FROM:
        return _unmask_parts((payload,), mask)
    repeats = n // 4 + 1
    key = int.from_bytes(mask * repeats, "big") >> (8 * (4 * repeats - n))
    return (int.from_bytes(payload, "big") ^ key).to_bytes(n, "big")


def _unmask_parts(parts: Sequence[Buffer], mask: bytes) -> bytes:
    """The concatenation of ``parts`` (a payload as it came, in pieces), unmasked: joined
    once into a buffer that is unmasked in place, then made ``bytes``."""
    buf = bytearray().join(parts)
    n = len(buf)
    if n < _NATIVE_UNMASK_FROM:
        return _unmask(bytes(buf), mask)
    masker = _nvx_lib.nvx_xormask_new(mask)
    if masker == _nvx_ffi.NULL:
        raise MemoryError("no memory for a masker")
    try:
        _nvx_lib.nvx_xormask_process(masker, _nvx_ffi.from_buffer(buf), n)
    finally:
        _nvx_lib.nvx_xormask_free(masker)
    return bytes(buf)


#: From this payload size on, a frame's header and payload are written as two pieces, not
#: joined first (a copy of the payload).
_GATHER_FROM = 4096

#: A frame's payload arriving in pieces is kept in at most this many of them: past it they
#: are joined into one growing buffer (so a peer sending a byte per read costs a byte, not
#: an object, per byte).
_MAX_PIECES = 32


class _Partial:
    """A data frame the fast path is reading whose payload did not all come yet."""

    __slots__ = ("first", "header", "length", "mask", "need", "pieces")

    def __init__(self, header: bytes, mask: bytes, length: int, need: int,
                 piece: Buffer) -> None:
        #: the frame's header as it came (mask included), to give it back to Autobahn
        self.header = header
        #: the frame's first byte (FIN + opcode)
        self.first = header[0]
        self.mask = mask
        #: the payload's length
        self.length = length
        #: the payload bytes still to come
        self.need = need
        #: the (masked) payload so far; the first piece may be a joined ``bytearray``
        self.pieces: list[Buffer] = [piece]

    def add(self, piece: Buffer) -> None:
        """More of the payload (not the end of it)."""
        pieces = self.pieces
        pieces.append(piece)
        self.need -= len(piece)
        if len(pieces) > _MAX_PIECES:
            joined = pieces[0]
            if not isinstance(joined, bytearray):
                joined = bytearray(joined)
            for rest in pieces[1:]:
                joined += rest
            self.pieces = [joined]

    def raw(self) -> bytes:
        """The frame as it came so far, header and masked payload."""
        return b"".join([self.header, *self.pieces])


class FastServerProtocol(WebSocketServerProtocol):
    """An Autobahn server protocol whose small data frames take the fast path.

    Every complete data message, whichever path it took, reaches :meth:`text_received` or
    :meth:`binary_received`; the end of the connection reaches :meth:`closed`.
    """

    #: the largest payload the fast path reads (set when the connection is made)
    _fast_limit = 0
    #: a data frame whose payload the fast path is reading, across reads
    _partial: _Partial | None = None
    #: the start of a frame header cut by the last read, for the next
    _head = b""
    #: where the messages read and written are counted: the subclass sets its engine's
    #: counters when the connection is made; this class-wide sink counts the others'.
    traffic: TransportStats = TransportStats()
    #: the direct write path of a plain TCP connection (None: the transport's own write)
    _direct: DirectWriter | None = None

    # Autobahn's options, copied from the factory onto each connection when it is made
    # (declared for mypy only: a class attribute would stop Autobahn from copying them).
    logOctets: bool
    logFrames: bool
    autoFragmentSize: int
    maxMessagePayloadSize: int
    maxFramePayloadSize: int
    failByDrop: bool

    # -- hooks for the subclass --------------------------------------------------------------

    def text_received(self, text: str) -> None:
        """A text message arrived (valid UTF-8, decoded)."""
        raise NotImplementedError

    def binary_received(self, payload: bytes) -> None:
        """A binary message arrived."""
        raise NotImplementedError

    def closed(self, failure: str | None) -> None:
        """The connection is gone: ``failure`` says why Autobahn failed it (a bad frame,
        invalid UTF-8, a message over the size limit...), ``None`` for a normal end."""
        raise NotImplementedError

    # -- called by Twisted and Autobahn ------------------------------------------------------

    def connectionMade(self) -> None:
        """Autobahn copies its options onto the connection; the fast path's bound follows."""
        super().connectionMade()
        self._direct = direct_writer(self.transport, eager=True)
        # Autobahn's own limits (0 means none; then frames past 64 KiB are Autobahn's).
        bounds = [bound for bound in (self.maxMessagePayloadSize, self.maxFramePayloadSize)
                  if bound]
        self._fast_limit = min(bounds) if bounds else 65535

    def dataReceived(self, data: bytes) -> None:
        """Read what arrived; the answers it causes on this connection leave together once
        it is read (one ``send()`` on the direct write path)."""
        direct = self._direct
        if direct is None:
            self._read(data)
            return
        direct.hold()
        try:
            self._read(data)
        finally:
            direct.release()

    def _read(self, data: bytes) -> None:
        # Unfragmented data frames are read here; the rest is left to Autobahn (see the
        # module docstring).
        pos = 0
        partial = self._partial
        if partial is not None:
            self._partial = None
            pos = self._complete(partial, data)
            if pos < 0:
                return
        elif self._head:
            # A frame header cut by the previous read: a handful of bytes.
            data = self._head + data
            self._head = b""
        if (self.state != self.STATE_OPEN or self.data or self.current_frame is not None
                or self.inside_message or self._perMessageCompress is not None
                or self.logOctets):
            self._dataReceived(data[pos:] if pos else data)
            return
        end = len(data)
        limit = self._fast_limit
        # Counted once per read, after the loop: the same figures, a fraction of the cost.
        packets = octets = 0
        while pos < end:
            if pos + 2 > end:
                self._head = data[pos:]  # the next read tells what it is
                pos = end
                break
            first = data[pos]
            second = data[pos + 1]
            if (first != 0x81 and first != 0x82) or second < 0x80:
                break  # not FIN + text/binary, or not masked: Autobahn's
            length = second & 0x7F
            start = pos + 2
            if length == 126:
                start += 2
                if start <= end:
                    length = (data[pos + 2] << 8) | data[pos + 3]
                    if length < 126:
                        break  # not the shortest form: Autobahn fails the connection
            elif length == 127:
                start += 8
                if start <= end:
                    length = int.from_bytes(data[pos + 2:start], "big")
                    if length < 65536:
                        break  # not the shortest form (or past 2**63): Autobahn fails it
            if start + 4 > end:
                self._head = data[pos:]  # the header is cut: the next read completes it
                pos = end
                break
            if length > limit:
                break  # Autobahn refuses it (1009)
            begin = start + 4
            stop = begin + length
            mask = data[start:begin]
            if stop > end:
                # The payload goes on in the next reads: kept, at most ``limit`` bytes.
                self._partial = _Partial(data[pos:begin], mask, length, stop - end,
                                         memoryview(data)[begin:])
                pos = end
                break
            if length < _NATIVE_UNMASK_FROM:
                payload = _unmask(data[begin:stop], mask)
            else:
                payload = _unmask_parts((memoryview(data)[begin:stop],), mask)
            if first == 0x81:
                try:
                    text = payload.decode("utf-8")
                except UnicodeDecodeError:
                    break  # Autobahn fails the connection (1007)
                pos = stop
                self.text_received(text)
            else:
                pos = stop
                self.binary_received(payload)
            packets += 1
            octets += length
            if self.state != self.STATE_OPEN:
                break
        if packets:
            traffic = self.traffic
            traffic.packets_in += packets
            traffic.bytes_in += octets
        if pos < end:
            self._dataReceived(data[pos:] if pos else data)

    def _complete(self, partial: _Partial, data: bytes) -> int:
        # More of the payload of a data frame started in an earlier read: where the frames
        # after it start in ``data``, or -1 if nothing of ``data`` is left to read.
        if self.state != self.STATE_OPEN:
            # Closing: Autobahn reads the rest, from the frame's first byte.
            self._dataReceived(partial.raw() + data)
            return -1
        need = partial.need
        end = len(data)
        if end < need:
            partial.add(data)
            self._partial = partial
            return -1
        pieces = partial.pieces
        pieces.append(data if end == need else memoryview(data)[:need])
        payload = _unmask_parts(pieces, partial.mask)
        if partial.first == 0x81:
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                # Autobahn reads the frame again, and fails the connection (1007).
                self._dataReceived(partial.raw() + data[need:])
                return -1
            self.text_received(text)
        else:
            self.binary_received(payload)
        traffic = self.traffic
        traffic.packets_in += 1
        traffic.bytes_in += partial.length
        return need if need < end else -1

    def onMessage(self, payload: bytes, isBinary: bool) -> None:
        """A message Autobahn assembled (the path for what the fast path leaves to it)."""
        traffic = self.traffic
        traffic.packets_in += 1
        traffic.bytes_in += len(payload)
        if isBinary:
            self.binary_received(payload)
        else:
            self.text_received(payload.decode("utf-8"))  # Autobahn validated the UTF-8

    def onClose(self, wasClean: bool, code: int | None, reason: str | None) -> None:
        """Clean up after Autobahn, then report the end to :meth:`closed`."""
        # Autobahn leaves its close handshake timer behind when the peer drops the TCP
        # connection before answering our close frame: cancel it, or it outlives us.
        timer, self.closeHandshakeTimeoutCall = self.closeHandshakeTimeoutCall, None
        if timer is not None:
            with suppress(Exception):  # already fired or cancelled
                timer.cancel()
        self.closed(f"WebSocket failed: {self.wasNotCleanReason}" if self.failedByMe else None)

    def _fail_connection(self, code: int = 1001, reason: str = "going away") -> None:
        """Autobahn's failure of the connection: the close frame first, then the TCP close
        (see the module docstring), where Autobahn would drop it without a word."""
        if self.state != self.STATE_OPEN or not self.failByDrop:
            super()._fail_connection(code, reason)  # closing already, or configured otherwise
            return
        log.warn("failing WebSocket connection (code={code}): {reason}", code=code,
                 reason=reason)
        self.failedByMe = True
        self.wasClean = False
        self.wasNotCleanReason = f"I dropped the WebSocket TCP connection: {reason}"
        self.sendFrame(opcode=8, payload=code.to_bytes(2, "big") + encode_truncate(reason, 123))
        # Not an abort: the transport writes the close frame before it closes.
        self.dropConnection(abort=False)

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:
        """Autobahn's frame writer, minus its per-frame debug logging on the common path.

        Autobahn formats (colours) the arguments of a debug log line for every frame it
        writes, even with debug logging off: a tenth of the server's time under load.  The
        common case — an open or closing connection (its close frame), nothing queued, no
        chopping — writes directly (counted as Autobahn counts: while open only).
        """
        transport = self.transport
        direct = self._direct
        state = self.state
        if (chopsize or sync or self.send_queue or self.logOctets or transport is None
                or (state != self.STATE_OPEN and state != self.STATE_CLOSING)):
            if direct is not None:
                direct.flush()  # Autobahn writes to the transport itself: after these
            super().sendData(data, sync, chopsize)
            return
        if direct is not None:
            direct.write(data)
        else:
            transport.write(data)
        if state == self.STATE_OPEN:
            self.trafficStats.outgoingOctetsWireLevel += len(data)

    def _closeConnection(self, abort: bool = False) -> None:
        """Autobahn's TCP close: what the direct write path kept is written first (dropped
        by an abort, as Twisted drops its buffer)."""
        direct = self._direct
        if direct is not None:
            if abort:
                direct.drop()
            else:
                direct.flush()
        super()._closeConnection(abort)

    def _dataReceived(self, data: bytes) -> None:
        """Autobahn's frame reader, given what the fast path leaves; but a lone close frame
        from the peer (how most connections end) is read here and handed to Autobahn's close
        handler, ``onCloseFrame``, as Autobahn's reader would hand it (its code, its reason),
        without Autobahn's per-frame machinery.  Anything else, a close frame Autobahn would
        refuse before its handler (a 1-byte payload, past the size limit) included, goes to
        Autobahn."""
        size = len(data)
        if (6 <= size <= 131 and data[0] == 0x88 and data[1] & 0x80
                and size == 6 + (data[1] & 0x7F) and size != 7
                and size - 6 <= self._fast_limit and self.state == self.STATE_OPEN
                and not self.data and self.current_frame is None and not self.inside_message
                and not self.logOctets):
            payload = _unmask(data[6:], data[2:6])
            self.trafficStats.incomingOctetsWireLevel += size  # as Autobahn's reader counts
            self.onCloseFrame(int.from_bytes(payload[:2], "big") if payload else None,
                              payload[2:] if size > 8 else None)
            return
        super()._dataReceived(data)

    # -- called by the subclass --------------------------------------------------------------

    def write_frame(self, payload: bytes, binary: bool, compress: bool = False) -> None:
        """Write one message: a text (UTF-8) or binary ``payload``, in one frame if it can
        (counted in :attr:`traffic`: one packet, the payload's bytes); ``compress``: with
        permessage-deflate, when the connection negotiated it."""
        transport = self.transport
        traffic = self.traffic
        length = len(payload)
        traffic.packets_out += 1
        traffic.bytes_out += length
        if ((self._perMessageCompress is None or not compress) and not self.send_queue
                and transport is not None and not self.logFrames
                and not self.autoFragmentSize):
            # One unmasked, unfragmented frame (RFC 6455 section 5.2), written directly:
            # what Autobahn's sendMessage would write, without its per-frame machinery.
            opcode = 0x82 if binary else 0x81
            if length < 126:
                header = bytes((opcode, length))
            elif length < 65536:
                header = bytes((opcode, 126)) + length.to_bytes(2, "big")
            else:
                header = bytes((opcode, 127)) + length.to_bytes(8, "big")
            direct = self._direct
            if length < _GATHER_FROM:
                frame = header + payload
                if direct is not None:
                    direct.write(frame)
                else:
                    transport.write(frame)
            elif direct is not None:
                # Not joined here: the direct writer hands both to the kernel as they are,
                # together (held: an eager writer would send the header alone at once).
                direct.hold()
                try:
                    direct.write(header)
                    direct.write(payload)
                finally:
                    direct.release()
            else:
                transport.writeSequence((header, payload))
            return
        limit = self.maxMessagePayloadSize
        if limit and length > limit:
            # The size limit bounds what the peer sends, but Autobahn's sendMessage applies it
            # to outgoing messages too and raises: send a larger message as one frame.
            self.sendFrame(opcode=2 if binary else 1, payload=payload)
        else:
            self.sendMessage(payload, binary, doNotCompress=not compress)

