"""``txsio.Server(serve_client=FILE)``: txsio's own rules beyond Node's (compared in
``tests/test_node_options.py``), over loopback."""

from __future__ import annotations

import os

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web import http

import txsio

from .test_node_options import fetch, start_txsio
from .test_tap import temp_dir


def bundle(test: SynchronousTestCase, data: bytes = b"window.io = 1;") -> str:
    """A bundle file in a directory of its own."""
    path = str(temp_dir(test) / "socket.io.js")
    with open(path, "wb") as f:
        f.write(data)
    return path


class CheckedTests(SynchronousTestCase):
    """The option is checked when the server is built."""

    def test_not_a_file(self) -> None:
        """A missing file or a directory is a ValueError saying where to get the bundle."""
        for path in (str(temp_dir(self) / "missing.js"), os.getcwd()):
            error = self.assertRaises(ValueError, txsio.Server, serve_client=path,
                                      clock=Clock())
            self.assertIn("socket.io-client", str(error))


class ValidatorTests(TestCase):
    """ETag and the other validators."""

    async def test_etag_wins_and_changes(self) -> None:
        """If-None-Match decides alone (an If-Modified-Since beside it is ignored); a
        replaced file gets a new ETag; ranges still work."""
        path = bundle(self)
        url = start_txsio(self, serve_client=path) + "/socket.io/socket.io.js"
        code, headers, _ = await fetch(url)
        etag = headers.getRawHeaders(b"etag", [b""])[0].decode()
        modified = headers.getRawHeaders(b"last-modified", [b""])[0].decode()
        self.assertEqual((await fetch(url, if_none_match='"x"',
                                      if_modified_since=modified))[0], 200)
        code, _, body = await fetch(url, if_none_match=etag)
        self.assertEqual((code, body), (http.NOT_MODIFIED, b""))
        code, _, body = await fetch(url, range="bytes=0-5")
        self.assertEqual((code, body), (206, b"window"))
        with open(path, "wb") as f:
            f.write(b"window.io = 22;")
        os.utime(path, ns=(0, 10**9))
        code, headers, body = await fetch(url, if_none_match=etag)
        self.assertEqual((code, body), (200, b"window.io = 22;"))
        self.assertNotEqual(headers.getRawHeaders(b"etag", [b""])[0].decode(), etag)

    async def test_any_origin(self) -> None:
        """The bundle is served to a page of any origin (a script, not a CORS request), while
        the endpoint still refuses that origin."""
        base = start_txsio(self, serve_client=bundle(self))
        code, _, _ = await fetch(base + "/socket.io/socket.io.js", origin="https://x.example")
        self.assertEqual(code, 200)
        code, _, _ = await fetch(base + "/socket.io/?EIO=4&transport=polling",
                                 origin="https://x.example")
        self.assertEqual(code, 403)
