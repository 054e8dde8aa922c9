"""Engine.IO's pure value modules: error codes, close reasons, cookies and wire formats."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from txsio.engineio import CloseReason, EngineRequestError, ErrorCode, HandshakeRequest
from txsio.engineio import server as engine_server
from txsio.engineio.handshake import CookieOptions, cookie_options
from txsio.engineio.packet import EngineIOParseError, Packet, PacketType
from txsio.engineio.wire import V3, V4, wire_format


class ErrorTests(SynchronousTestCase):
    """ErrorCode and EngineRequestError."""

    def test_codes_are_ints_with_messages(self) -> None:
        """Each code is its number on the wire and carries Node's message."""
        self.assertEqual(ErrorCode.UNKNOWN_SID, 1)
        self.assertEqual(ErrorCode.FORBIDDEN.message, "Forbidden")
        self.assertEqual(ErrorCode.MESSAGES[5], "Unsupported protocol version")

    def test_old_import_path(self) -> None:
        """The value types are still importable from txsio.engineio.server."""
        self.assertIs(engine_server.ErrorCode, ErrorCode)
        self.assertIs(engine_server.EngineRequestError, EngineRequestError)
        self.assertIs(engine_server.HandshakeRequest, HandshakeRequest)


class CloseReasonTests(SynchronousTestCase):
    """Close reasons are an enum whose members are their text."""

    def test_equal_to_text(self) -> None:
        """Each reason compares, formats and serialises as Node's text for it."""
        reason = CloseReason.PING_TIMEOUT
        self.assertEqual(reason, "ping timeout")
        self.assertEqual(str(reason), "ping timeout")
        self.assertEqual(f"{reason}", "ping timeout")
        self.assertEqual(json.dumps(reason), '"ping timeout"')
        self.assertIs(CloseReason("transport close"), CloseReason.TRANSPORT_CLOSE)


class CookieOptionsTests(SynchronousTestCase):
    """The cookie option's forms and checks (the header itself: test_resource.CookieTests)."""

    def test_refused_when_configured(self) -> None:
        """Options a browser or twisted.web would refuse fail when the server is built."""
        for bad in ({"same_site": "sometimes"}, {"same_site": "None"},
                    {"extra": ("a; b",)}, {"extra": ("a\r\nSet-Cookie: x",)}):
            self.assertRaises(ValueError, cookie_options, bad)

    def test_option_forms(self) -> None:
        """False / None mean no cookie, True the io cookie, a string its name."""
        self.assertIsNone(cookie_options(False))
        self.assertIsNone(cookie_options(None))
        self.assertEqual(cookie_options(True), CookieOptions())
        self.assertEqual(cookie_options("s"), CookieOptions(name="s"))


class WireFormatTests(SynchronousTestCase):
    """What differs between Engine.IO v4 and v3 on the wire."""

    def test_chosen_by_revision(self) -> None:
        """Revisions 4 and 3 have their format; no other exists."""
        self.assertIs(wire_format(4), V4)
        self.assertIs(wire_format(3), V3)
        self.assertRaises(ValueError, wire_format, 5)

    def test_heartbeat_direction(self) -> None:
        """The v4 server pings; a v3 client does."""
        self.assertTrue(V4.server_pings)
        self.assertFalse(V3.server_pings)

    def test_binary_frames(self) -> None:
        """A binary message's frame is its bytes (v4), or 0x04 and its bytes (v3)."""
        self.assertEqual(V4.binary_prefix + b"ab", b"ab")
        self.assertEqual(V3.binary_prefix + b"ab", b"\x04ab")
        self.assertEqual(V4.decode_binary_frame(b"\x02ab"), b"\x02ab")
        self.assertEqual(V3.decode_binary_frame(b"\x04ab"), b"ab")
        for bad in (b"", b"\x02ab"):
            self.assertRaises(EngineIOParseError, V3.decode_binary_frame, bad)

    def test_v4_poll_drops_record_separator(self) -> None:
        """A v4 poll leaves out (and counts) messages holding U+001E; a noop if none is left."""
        body = V4.encode_poll([Packet(PacketType.MESSAGE, "a\x1e"),
                               Packet(PacketType.MESSAGE, "b")], jsonp=None, b64=False)
        self.assertEqual((body.body, body.dropped), (b"4b", 1))
        only = V4.encode_poll([Packet(PacketType.MESSAGE, "\x1e")], jsonp=None, b64=False)
        self.assertEqual((only.body, only.dropped), (b"6", 1))

    def test_v3_poll_forms(self) -> None:
        """A v3 poll is binary for XHR2 clients, base64 text on request, JSONP when asked."""
        packets = [Packet(PacketType.MESSAGE, b"\x01")]
        self.assertEqual(V3.encode_poll(packets, jsonp=None, b64=False).content_type,
                         b"application/octet-stream")
        self.assertEqual(V3.encode_poll(packets, jsonp=None, b64=True).body, b"6:b4AQ==")
        jsonp = V3.encode_poll(packets, jsonp="2", b64=False)
        self.assertEqual(jsonp.body, b'___eio[2]("6:b4AQ==");')

    def test_poll_bodies_decode(self) -> None:
        """POST bodies decode per revision: v4 records, v3 lengths, binary and JSONP forms."""
        self.assertEqual(V4.decode_poll(b"4a\x1e4b", binary=False, jsonp=False,
                                        max_packets=10),
                         [Packet(PacketType.MESSAGE, "a"), Packet(PacketType.MESSAGE, "b")])
        self.assertEqual(V3.decode_poll(b"2:4a", binary=False, jsonp=False, max_packets=10),
                         [Packet(PacketType.MESSAGE, "a")])
        self.assertEqual(V3.decode_poll(b"d=2%3A4a", binary=False, jsonp=True, max_packets=10),
                         [Packet(PacketType.MESSAGE, "a")])
        self.assertRaises(EngineIOParseError, V4.decode_poll, b"\xff", binary=False,
                          jsonp=False, max_packets=10)
