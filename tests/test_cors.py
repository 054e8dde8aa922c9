"""The ``cors`` option: its checks when the server is built and its policy (no sockets)."""

from __future__ import annotations

import re

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio.engineio import EngineServer
from txsio.engineio.cors import CorsPolicy, cors_policy

from .test_resource import ResourceTestCase


class CheckedWhenBuiltTests(SynchronousTestCase):
    """A ``cors`` value that cannot work is refused by the constructor, clearly."""

    def refused(self, error: type[Exception], **options: object) -> str:
        raised = self.assertRaises(error, txsio.Server, clock=Clock(), **options)
        return str(raised)

    def test_origin_without_scheme(self) -> None:
        """An origin no browser sends (no scheme), alone or in a list, is a ValueError that
        shows the right form."""
        for origin in ("app.example", ["https://ok.example", "app.example"]):
            message = self.refused(ValueError, cors={"origin": origin})
            self.assertIn("'https://app.example'", message)

    def test_unknown_and_node_spellings(self) -> None:
        """An unknown key is named with the known ones; Node's camelCase says the Python
        spelling."""
        self.assertIn("credentials", self.refused(ValueError, cors={"origins": "*"}))
        self.assertIn("'allowed_headers'",
                      self.refused(ValueError, cors={"allowedHeaders": ["x-a"]}))
        self.assertIn("'max_age'", self.refused(ValueError, cors={"maxAge": 5}))

    def test_bad_values(self) -> None:
        """Credentials not a bool, a negative or fractional max age, a header name with a
        space, an origin of another type: each refused."""
        self.refused(TypeError, cors={"credentials": "yes"})
        self.refused(ValueError, cors={"max_age": -1})
        self.refused(ValueError, cors={"max_age": 1.5})
        self.refused(ValueError, cors={"allowed_headers": "x token"})
        self.refused(TypeError, cors={"origin": [42]})
        self.refused(TypeError, cors="https://app.example")

    def test_not_both(self) -> None:
        """``cors`` and its shorthand ``cors_allowed_origins`` together are refused."""
        self.refused(ValueError, cors={}, cors_allowed_origins="*")

    def test_false_origin_is_no_cors(self) -> None:
        """``origin`` False or None turns CORS off, as in Node."""
        for origin in (False, None):
            self.assertIsNone(EngineServer(cors={"origin": origin}, clock=Clock()).cors)
        self.assertIsNone(cors_policy(None, None))


class PolicyTests(SynchronousTestCase):
    """:class:`CorsPolicy` decides as npm cors does."""

    def test_regex_unanchored(self) -> None:
        """A regex matches anywhere in the origin, as JavaScript's ``RegExp.test``."""
        policy = CorsPolicy(origin=re.compile(r"good\.example"))
        self.assertIs(policy.allows("https://a.good.example:8443"), True)
        self.assertIs(policy.allows("https://bad.example"), False)

    def test_true_reflects_any(self) -> None:
        """``origin=True`` allows any origin and reflects it (with ``Vary: Origin``)."""
        policy = CorsPolicy(origin=True)
        self.assertEqual(policy.headers("https://x.example"), [
            ("Access-Control-Allow-Origin", "https://x.example"), ("Vary", "Origin")])

    def test_credentials_only_when_asked(self) -> None:
        """``Access-Control-Allow-Credentials`` appears only with ``credentials=True``; the
        shorthand keeps sending it for listed origins (as before), not for "*"."""
        names = [n for n, _ in CorsPolicy(origin=["https://a.example"]).headers("https://a.example")]
        self.assertNotIn("Access-Control-Allow-Credentials", names)
        shorthand = cors_policy(None, ["https://a.example"])
        assert shorthand is not None
        self.assertIn(("Access-Control-Allow-Credentials", "true"),
                      shorthand.headers("https://a.example"))
        star = cors_policy(None, "*")
        assert star is not None
        self.assertEqual(star.headers("https://a.example"),
                         [("Access-Control-Allow-Origin", "*")])

    def test_function_failure_refuses(self) -> None:
        """An origin function whose Deferred fails refuses the origin, logged."""
        d: Deferred[bool] = Deferred()
        answer = CorsPolicy(origin=lambda origin: d).allows("https://a.example")
        assert isinstance(answer, Deferred)
        d.errback(ZeroDivisionError())
        self.assertIs(self.successResultOf(answer), False)
        self.assertTrue(self.flushLoggedErrors(ZeroDivisionError))


class PendingOriginTests(ResourceTestCase):
    """A request waits for an origin function's Deferred (in memory)."""

    def test_waits(self) -> None:
        """The request is answered (with the CORS headers) once the Deferred fires."""
        pending: list[Deferred[bool]] = []

        def origin(value: str) -> Deferred[bool]:
            pending.append(Deferred())
            return pending[-1]

        self.start(cors={"origin": origin})
        d = self.start_request("GET", self.url(), headers={"Origin": ["https://a.example"]})
        self.assertNoResult(d)
        pending[0].callback(True)
        response = self.finish(d)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("access-control-allow-origin"), "https://a.example")
        self.assertEqual(len(self.server.sessions), 1)
