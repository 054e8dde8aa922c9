"""Engine.IO's pure value modules: error codes, close reasons and cookies."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from txsio.engineio import CloseReason, EngineRequestError, ErrorCode, HandshakeRequest
from txsio.engineio import server as engine_server
from txsio.engineio.handshake import CookieOptions, cookie_options


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
