"""``serve_client``: socket.io-client's browser bundle served at ``<path>/socket.io.js``.

:class:`txsio.Server` builds one :class:`ClientFiles` from its ``serve_client`` option (and
``twistd sio --client-js``, which is the same option) and hands its :attr:`ClientFiles.leaves`
to the Engine.IO resource, which renders them for a request naming one of them directly under
its mount point, before any origin check (a ``<script>`` is not a CORS request; Node serves
the bundle to any page too).

What Node's ``serveClient`` does, with a file the user brings (Node ships one in its
package): the file at ``socket.io.js``, and the other files of Node's list (``socket.io.min.js``,
the ESM and msgpack builds, and each one's ``.map``) when they lie beside it, with
``Cache-Control: public, max-age=0``, Node's content types, an ``ETag`` and a 304 to an
``If-None-Match`` naming it.  Node's ETag is its package's version; this one is made of the
file's size and modification time, so a replaced file is never answered with a stale 304.
The bytes are sent by :class:`~txsio._pages._StaticFile` (one byte range at most, streamed, the
file closed however the response ends).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, BinaryIO

from twisted.web import http
from twisted.web.resource import IResource

from ._pages import _StaticFile

if TYPE_CHECKING:
    from twisted.web.server import Request

__all__ = ["CLIENT_FILES", "ClientFiles"]

#: The names Node's socket.io serves under its path (``socket.io/dist/index.js``).
CLIENT_FILES = (
    "socket.io.js", "socket.io.js.map",
    "socket.io.min.js", "socket.io.min.js.map",
    "socket.io.esm.min.js", "socket.io.esm.min.js.map",
    "socket.io.msgpack.min.js", "socket.io.msgpack.min.js.map",
)


class _ClientFile(_StaticFile):
    """One file of the bundle: :class:`~txsio._pages._StaticFile` with Node's caching
    headers and content type, and a 304 for a matching ``If-None-Match``."""

    def __init__(self, path: str, source_map: bool) -> None:
        super().__init__(path)
        self._type = (b"application/json; charset=utf-8" if source_map
                      else b"application/javascript; charset=utf-8")

    def _respond(self, request: Request, file: BinaryIO, info: os.stat_result) -> bytes | int:
        etag = b'"%x-%x"' % (info.st_size, info.st_mtime_ns)
        request.setHeader(b"cache-control", b"public, max-age=0")
        request.setHeader(b"etag", etag)
        wanted = request.getHeader(b"if-none-match")
        if wanted is not None:
            if _matches(wanted, etag):
                request.setResponseCode(http.NOT_MODIFIED)
                return b""
            # RFC 9110 §13.1.3: If-Modified-Since is ignored beside If-None-Match.
            request.requestHeaders.removeHeader(b"if-modified-since")
        body = super()._respond(request, file, info)
        if request.code != http.REQUESTED_RANGE_NOT_SATISFIABLE:
            request.setHeader(b"content-type", self._type)
        return body


def _matches(header: bytes, etag: bytes) -> bool:
    """Whether an ``If-None-Match`` header names ``etag`` (weak comparison, as Node's:
    ``W/"x"`` names ``"x"``) or is ``*``."""
    for tag in header.split(b","):
        tag = tag.strip()
        if tag == b"*" or tag.removeprefix(b"W/") == etag:
            return True
    return False


class ClientFiles:
    """The bundle's files, from the path of its ``socket.io.js``.

    :param path: a built ``socket.io.js`` (e.g. npm socket.io-client's
        ``dist/socket.io.js``), served at ``socket.io.js`` whatever its own name.
    :raises ValueError: ``path`` is not a regular file.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        main = os.path.abspath(os.fspath(path))
        if not os.path.isfile(main):
            raise ValueError(f"serve_client: {os.fspath(path)!r} is not a file; get one with "
                             "`npm pack socket.io-client` or from its dist/ folder")
        #: the file served at ``socket.io.js``
        self.path = main
        directory = os.path.dirname(main)
        #: the resource of each name, by name: the others of Node's list are those found
        #: beside the main file now (one that goes later is a 404 from its resource)
        self.leaves: dict[bytes, IResource] = {}
        for name in CLIENT_FILES:
            target = main if name == "socket.io.js" else os.path.join(directory, name)
            if name != "socket.io.js" and not os.path.isfile(target):
                continue
            self.leaves[name.encode("ascii")] = _ClientFile(target, name.endswith(".map"))
