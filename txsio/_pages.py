"""What ``twistd sio`` serves beside the Socket.IO endpoint: the root router and the pages.

:func:`txsio.tap.makeService` builds one :class:`_Root`, which twisted.web asks for every
request: it hands ``<path>`` to the Engine.IO resource (which serves ``--client-js``, the
server's ``serve_client``, at ``<path>/socket.io.js``: :mod:`txsio._client_files`), and
everything else to the site's own root, which is one of

- :class:`_StaticFiles`: the ``--static`` directory (no listings, nothing hidden, nothing
  outside it);
- :class:`_DemoFiles`: the demo chat's page (``txsio/demo/``), served with :data:`DEMO_CSP`;
- :class:`_Placeholder`: a small page naming the endpoint, when there is neither.

Beside those, the root serves a few leaves each at one exact path: ``--health``'s
:class:`Health`, and ``--metrics``' :class:`Mount`; :class:`_MountOnly` is the root of the
site of ``--metrics-port``, which serves the metrics alone.

Files are served here rather than by twisted.web's ``File``, which follows an encoded slash
and symlinks out of its directory, answers a NUL with a 500, blocks on a FIFO, and honours
any number of byte ranges.  :class:`_StaticFile` serves one regular file, whole or one range,
through :class:`_FileProducer`, which closes it however the response ends.  Errors are plain
text (:class:`_PlainError`), never twisted.web's HTML error pages.
"""

from __future__ import annotations

import html
import math
import os
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import quote

from twisted.internet.interfaces import IPullProducer
from twisted.web import http
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET
from twisted.web.static import File, getTypeAndEncoding
from zope.interface import implementer

if TYPE_CHECKING:
    from twisted.web.server import Request


@dataclass(frozen=True)
class Mount:
    """A leaf resource that the root serves at one exact path (``--metrics PATH``).

    :ivar segments: the path's segments.
    :ivar resource: what answers there.
    """

    segments: list[bytes]
    resource: IResource

    @classmethod
    def at(cls, path: str, resource: IResource) -> Mount:
        """``resource`` at ``path``."""
        return cls(_segments(path), resource)


class _Root(Resource):
    """Routes ``<path>`` to the Engine.IO resource (a leaf, which serves the client file of
    ``serve_client`` too), ``--health``'s and ``--metrics``' paths to the health check and
    the metrics, and everything else to the site's own root."""

    def __init__(self, engine: IResource, path: str, site_root: IResource,
                 health: Health | None = None,
                 metrics: Mount | None = None) -> None:
        super().__init__()
        self._engine = engine
        self._segments = _segments(path)
        self._site_root = site_root
        self._health = health
        self._metrics = metrics

    @staticmethod
    def segments_of(path: str) -> list[bytes]:
        """The segments a path given as an option matches."""
        return _segments(path)

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        """Match the whole endpoint path, whatever its depth, before the site's root."""
        # Twisted already moved ``path`` from request.postpath to request.prepath.
        health = self._health
        if health is not None and [path, *(request.postpath or [])] == health.segments:
            _consume(request, len(health.segments) - 1)
            return health
        metrics = self._metrics
        if metrics is not None and [path, *(request.postpath or [])] == metrics.segments:
            _consume(request, len(metrics.segments) - 1)
            return metrics.resource
        n = len(self._segments)
        segments = [path, *(request.postpath or [])[: n - 1]]
        if segments != self._segments:
            return self._site_root.getChildWithDefault(path, request)
        _consume(request, n - 1)
        return self._engine

    def render(self, request: Request) -> bytes | int:
        """The site root renders a request for the root itself."""
        result: bytes | int = self._site_root.render(request)
        return result


def _segments(path: str) -> list[bytes]:
    return [s.encode("utf-8") for s in path.strip("/").split("/")]


class _MountOnly(Resource):
    """The root of a site that serves one :class:`Mount` and nothing else (``--metrics-port``):
    a plain 404 at any other path."""

    def __init__(self, mount: Mount) -> None:
        super().__init__()
        self._mount = mount

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        """The mount's resource at its exact path; a 404 elsewhere."""
        if [path, *(request.postpath or [])] == self._mount.segments:
            _consume(request, len(self._mount.segments) - 1)
            return self._mount.resource
        return _NotFound()

    def render(self, request: Request) -> bytes:
        """Nothing at ``/``."""
        return _NotFound().render(request)


class Health(Resource):
    """``--health PATH``: ``200 {"status": "ok"}`` while the server serves, ``503
    {"status": "draining"}`` once a graceful stop began (so that a load balancer stops
    sending new clients before the server disconnects its own).  Never cached.

    The service sets :attr:`draining`; the root router serves this at :attr:`segments`.
    """

    isLeaf = True

    def __init__(self, path: str) -> None:
        super().__init__()
        #: the path's segments
        self.segments = _segments(path)
        #: whether the server is stopping
        self.draining = False

    def render_GET(self, request: Request) -> bytes:
        request.setResponseCode(503 if self.draining else 200)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return b'{"status":"draining"}' if self.draining else b'{"status":"ok"}'

    render_HEAD = render_GET


def _consume(request: Request, count: int) -> None:
    assert request.prepath is not None and request.postpath is not None
    for _ in range(count):
        request.prepath.append(request.postpath.pop(0))


class _PlainError(Resource):
    """A plain-text error (no HTML error page): :attr:`code` and :attr:`text`."""

    isLeaf = True
    code = 404
    text = b"Not found\n"

    def render(self, request: Request) -> bytes:
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return self.text


class _NotFound(_PlainError):
    """A plain-text 404."""


class _BadRequest(_PlainError):
    """A plain-text 400, for a path that names no file at all (not UTF-8, a NUL)."""

    code = 400
    text = b"Bad request\n"


class _NotAllowed(_PlainError):
    """A plain-text 405: files answer GET and HEAD only."""

    code = 405
    text = b"Method not allowed\n"

    def render(self, request: Request) -> bytes:
        request.setHeader(b"allow", b"GET, HEAD")
        return super().render(request)


#: How much of a file is read and written at a time.
_CHUNK = 64 * 1024

#: O_NONBLOCK: opening a FIFO would wait for a writer, blocking the reactor; O_NOFOLLOW: a
#: symlink swapped in after the path was resolved and checked is not followed.
_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
               | getattr(os, "O_CLOEXEC", 0))


def _open_regular(path: str) -> tuple[BinaryIO, os.stat_result] | None:
    """*path* opened for reading and its status, if it is a regular file; else None."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (OSError, ValueError):
        return None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return os.fdopen(fd, "rb"), info


def _number(text: bytes) -> int | None:
    """A Range header's decimal number; None if it is not one (bytes.isdigit is ASCII-only).
    More digits than any file size needs count as "huge", not as an int to parse."""
    text = text.strip()
    if not text.isdigit():
        return None
    return int(text) if len(text) <= 18 else 10**18


def _byte_range(header: bytes, size: int) -> range | None:
    """The one byte range a Range *header* asks for in a file of *size* bytes.

    None sends the whole file: no range, a malformed one, or several (RFC 9110 §14.2 lets a
    server ignore Range; a multipart answer to overlapping ranges would cost many times the
    file).  An empty range cannot be satisfied (416).
    """
    unit, equals, ranges = header.partition(b"=")
    if not equals or unit.strip().lower() != b"bytes":
        return None
    specs = [spec for spec in ranges.split(b",") if spec.strip()]
    if len(specs) != 1:
        return None
    first_text, dash, last_text = specs[0].partition(b"-")
    last = _number(last_text)
    if not dash or (last is None and last_text.strip()):
        return None
    if not first_text.strip():
        # A suffix: the last ``last`` bytes (none of an empty file, none for ``-0``).
        return None if last is None else range(max(0, size - last), size)
    first = _number(first_text)
    if first is None or (last is not None and last < first):
        return None
    return range(first, size if last is None else min(last + 1, size))


@implementer(IPullProducer)
class _FileProducer:
    """Writes ``length`` bytes of a file, from its offset, to a request: a chunk each time
    the connection asks for one.  :class:`_StaticFile` starts it; the file is closed when
    the response is complete, when the connection stops it, and when the client goes."""

    def __init__(self, request: Request, file: BinaryIO, length: int) -> None:
        self._request = request
        self._file: BinaryIO | None = file
        self._remaining = length

    def start(self) -> None:
        """Register with the request and close the file whenever the request ends."""
        self._request.notifyFinish().addBoth(self._close)
        self._request.registerProducer(self, False)

    def resumeProducing(self) -> None:
        if self._file is None:
            return
        try:
            data = self._file.read(min(_CHUNK, self._remaining))
        except OSError:
            data = b""
        if not data:
            # The file shrank or failed under us: the response cannot have its length, so
            # the client must see it cut rather than wait for the rest.
            self._close()
            self._request.unregisterProducer()
            self._request.loseConnection()
            return
        self._remaining -= len(data)
        self._request.write(data)
        if not self._remaining:
            self._close()
            self._request.unregisterProducer()
            self._request.finish()

    def stopProducing(self) -> None:
        self._close()

    def _close(self, result: object = None) -> None:
        # Returns None: a lost connection is not an error to log.
        if self._file is not None:
            self._file.close()
            self._file = None


class _StaticFile(Resource):
    """One regular file, for GET and HEAD, whole or one byte range, with
    ``X-Content-Type-Options: nosniff``: the ``--client-js`` file, and each file
    :class:`_StaticFiles` serves."""

    isLeaf = True
    #: Twisted's File guesses text/html for an unknown extension: a download is safer.
    default_type = "application/octet-stream"

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def render(self, request: Request) -> bytes | int:
        if request.method not in (b"GET", b"HEAD"):
            return _NotAllowed().render(request)
        request.setHeader(b"x-content-type-options", b"nosniff")
        opened = _open_regular(self._path)
        if opened is None:
            return _NotFound().render(request)
        file, info = opened
        body: bytes | int = b""
        try:
            body = self._respond(request, file, info)
        finally:
            if body is not NOT_DONE_YET:
                file.close()
        return body

    def _respond(self, request: Request, file: BinaryIO, info: os.stat_result) -> bytes | int:
        content_type, encoding = getTypeAndEncoding(
            os.path.basename(self._path), File.contentTypes, File.contentEncodings,
            self.default_type)
        request.setHeader(b"content-type", content_type.encode("ascii"))
        if encoding:
            request.setHeader(b"content-encoding", encoding.encode("ascii"))
        request.setHeader(b"accept-ranges", b"bytes")
        if request.setLastModified(info.st_mtime) is http.CACHED:
            return b""
        size = info.st_size
        wanted = range(size)
        header = request.getHeader(b"range")
        if header is not None and request.method == b"GET" and self._if_range(request, info):
            asked = _byte_range(header, size)
            if asked is not None and not asked:
                request.setResponseCode(http.REQUESTED_RANGE_NOT_SATISFIABLE)
                request.setHeader(b"content-range", b"bytes */%d" % size)
                request.setHeader(b"content-type", b"text/plain; charset=utf-8")
                return b"Range not satisfiable\n"
            if asked is not None:
                wanted = asked
                request.setResponseCode(http.PARTIAL_CONTENT)
                request.setHeader(b"content-range", b"bytes %d-%d/%d" % (
                    asked.start, asked.stop - 1, size))
        request.setHeader(b"content-length", b"%d" % len(wanted))
        if request.method == b"HEAD" or not wanted:
            return b""
        file.seek(wanted.start)
        _FileProducer(request, file, len(wanted)).start()
        return NOT_DONE_YET

    @staticmethod
    def _if_range(request: Request, info: os.stat_result) -> bool:
        """Whether If-Range, if any, names this file's Last-Modified (as sent: whole seconds,
        rounded up): an entity tag never does (none is sent)."""
        validator = request.getHeader(b"if-range")
        return validator is None or validator.strip() == http.datetimeToString(
            math.ceil(info.st_mtime))


class _StaticFiles(Resource):
    """``--static``: the regular files under one directory and its directories'
    ``index.html``; no listings, nothing :meth:`hidden`, nothing outside the directory.

    The rules apply to the names the request path makes once decoded (an encoded slash
    separates names like a slash), then again to the path with its symlinks resolved, which
    must stay under the directory's own resolved path.  ``..``, ``.``, empty names and
    :meth:`hidden` ones anywhere are 404s, a path that is not UTF-8 or holds a NUL is a 400.
    """

    index_name = "index.html"

    def __init__(self, root: str) -> None:
        super().__init__()
        self._root = os.path.realpath(root)

    def hidden(self, name: str) -> bool:
        """Whether a file or directory name is not served (dot names include ``..``)."""
        return name.startswith(".")

    def set_headers(self, request: Request) -> None:
        """The headers of every answer from this directory, errors included."""
        request.setHeader(b"x-content-type-options", b"nosniff")

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        """Take the rest of the path at once: its names are checked together."""
        assert request.prepath is not None and request.postpath is not None
        mount = request.prepath[:-1]
        segments = [path, *request.postpath]
        _consume(request, len(request.postpath))
        self.set_headers(request)
        return self.route(segments, mount, request)

    def render(self, request: Request) -> bytes | int:
        """A request for the directory itself is one for its index."""
        self.set_headers(request)
        result: bytes | int = self.route([b""], [], request).render(request)
        return result

    def route(self, segments: list[bytes], mount: list[bytes], request: Request) -> IResource:
        """What answers the path *segments* (percent-decoded by twisted.web) under *mount*."""
        try:
            text = b"/".join(segments).decode("utf-8")
        except UnicodeDecodeError:
            return _BadRequest()
        if "\x00" in text:
            return _BadRequest()
        names = text.split("/")
        directory = names[-1] == ""
        if directory:
            names.pop()
        if any(not name or self.hidden(name) for name in names):
            return _NotFound()
        target = self._resolved(os.path.join(self._root, *names))
        if target is None:
            return _NotFound()
        if os.path.isdir(target):
            index = self._resolved(os.path.join(target, self.index_name))
            if index is None or not os.path.isfile(index):
                return _NotFound()
            if not directory:
                return _Redirect(_slash_location([*mount, *names], request))
            target = index
        elif directory:
            return _NotFound()
        return _StaticFile(target)

    def _resolved(self, path: str) -> str | None:
        """*path* with its symlinks resolved, if that is under the root and names nothing
        hidden there; else None."""
        real = os.path.realpath(path)
        if os.path.commonpath([self._root, real]) != self._root:
            return None
        relative = os.path.relpath(real, self._root)
        if relative != os.curdir and any(self.hidden(name) for name in relative.split(os.sep)):
            return None
        return real


def _slash_location(names: list[bytes | str], request: Request) -> str:
    """The path of *names* with a final slash, with the request's query, all in ASCII."""
    path = "".join("/" + quote(name, safe="") for name in names) + "/"
    _, mark, query = (request.uri or b"").partition(b"?")
    if not mark:
        return path
    # Printable ASCII but a space stays as it is; anything else is percent-encoded.
    return path + "?" + quote(query, safe="!#$%&'()*+,-./:;=?@[]^_`{|}~")


#: The demo's Content-Security-Policy: scripts from this origin and the one CDN file the page
#: pins by its hash (its fallback without ``--client-js``), connections to this origin (its
#: WebSocket included) and to the ``blob:`` URLs of received images, nothing inline.
DEMO_CSP = (
    "default-src 'self'; script-src 'self' https://cdn.socket.io/4.8.3/socket.io.min.js; "
    "connect-src 'self' blob:; img-src 'self' blob:; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class _DemoFiles(_StaticFiles):
    """The demo page's directory, without its Python modules, served with :data:`DEMO_CSP`.

    The page finds the endpoint at ``?path=`` (default ``/socket.io``): with another
    ``--path``, ``/`` redirects to ``/?path=<path>`` so that the page finds this server's.
    """

    sio_path = "/socket.io"

    def set_headers(self, request: Request) -> None:
        super().set_headers(request)
        request.setHeader(b"content-security-policy", DEMO_CSP.encode("ascii"))

    def hidden(self, name: str) -> bool:
        return super().hidden(name) or name.startswith("_") or name.endswith((".py", ".pyc"))

    def route(self, segments: list[bytes], mount: list[bytes], request: Request) -> IResource:
        if (segments == [b""] and self.sio_path != "/socket.io"
                and b"path" not in (request.args or {})):
            return _Redirect("/?path=" + quote(self.sio_path, safe="/"))
        return super().route(segments, mount, request)


class _Redirect(Resource):
    """A 302 to ``location``."""

    isLeaf = True

    def __init__(self, location: str) -> None:
        super().__init__()
        self._location = location.encode("ascii")

    def render(self, request: Request) -> bytes:
        request.setResponseCode(302)
        request.setHeader(b"location", self._location)
        request.setHeader(b"content-length", b"0")
        return b""


class _Placeholder(Resource):
    """The page at ``/`` when there is neither ``--static`` nor the demo."""

    def __init__(self, path: str) -> None:
        super().__init__()
        self._path = path

    def getChild(self, path: bytes, request: Request) -> IResource:
        if path == b"" and not request.postpath:
            return self
        return _NotFound()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", b"text/html; charset=utf-8")
        path = html.escape(self._path)
        return (
            "<!doctype html>\n<meta charset=utf-8>\n<title>txsio</title>\n"
            "<h1>txsio is running</h1>\n"
            f"<p>The Socket.IO endpoint is at <code>{path}/</code>. "
            "Serve your page with <code>--static DIR</code> and your handlers with "
            "<code>--app module:callable</code>.</p>\n"
        ).encode()

    render_HEAD = render_GET
