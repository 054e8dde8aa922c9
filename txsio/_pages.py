"""What ``twistd sio`` serves beside the Socket.IO endpoint: the root router and the pages.

:func:`txsio.tap.makeService` builds one :class:`_Root`, which twisted.web asks for every
request: it hands ``<path>/socket.io.js`` to the ``--client-js`` file, the rest of ``<path>``
to the Engine.IO resource, and everything else to the site's own root, which is one of

- :class:`_StaticFiles`: the ``--static`` directory (no listings, no dotfiles);
- :class:`_DemoFiles`: the demo chat's page (``txsio/demo/``), served with :data:`DEMO_CSP`;
- :class:`_Placeholder`: a small page naming the endpoint, when there is neither.

Errors are plain text (:class:`_NotFound`), never twisted.web's HTML error pages.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING
from urllib.parse import quote

from twisted.web.resource import IResource, Resource
from twisted.web.static import File

if TYPE_CHECKING:
    from twisted.web.server import Request


class _Root(Resource):
    """Routes ``<path>/socket.io.js`` to the client file, the rest of ``<path>`` to the
    Engine.IO resource (a leaf), and everything else to the site's own root."""

    def __init__(self, engine: IResource, path: str, site_root: IResource,
                 client_js: IResource | None) -> None:
        super().__init__()
        self._engine = engine
        self._segments = [s.encode("utf-8") for s in path.strip("/").split("/")]
        self._site_root = site_root
        self._client_js = client_js

    def getChildWithDefault(self, path: bytes, request: Request) -> IResource:
        """Match the whole endpoint path, whatever its depth, before the site's root."""
        # Twisted already moved ``path`` from request.postpath to request.prepath.
        n = len(self._segments)
        segments = [path, *(request.postpath or [])[: n - 1]]
        if segments != self._segments:
            return self._site_root.getChildWithDefault(path, request)
        _consume(request, n - 1)
        if self._client_js is not None and request.postpath == [b"socket.io.js"]:
            _consume(request, 1)
            return self._client_js
        return self._engine

    def render(self, request: Request) -> bytes | int:
        """The site root renders a request for the root itself."""
        result: bytes | int = self._site_root.render(request)
        return result


def _consume(request: Request, count: int) -> None:
    assert request.prepath is not None and request.postpath is not None
    for _ in range(count):
        request.prepath.append(request.postpath.pop(0))


class _NotFound(Resource):
    """A plain-text 404 (no HTML error page)."""

    isLeaf = True

    def render(self, request: Request) -> bytes:
        request.setResponseCode(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return b"Not found\n"


class _StaticFiles(File):
    """``--static``: files and ``index.html``, no directory listings, no dotfiles."""

    indexNames = ["index.html"]
    # Twisted's own is an HTML error page.
    childNotFound = _NotFound()  # type: ignore[assignment]

    def hidden(self, name: str) -> bool:
        """Whether a file or directory name is not served."""
        return name.startswith(".")

    def getChild(self, path: bytes, request: Request) -> IResource:
        name = path.decode("utf-8", "replace")
        if self.hidden(name):
            return self.childNotFound
        child: IResource = super().getChild(path, request)
        return child

    def directoryListing(self) -> IResource:
        return self.childNotFound


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

    def render(self, request: Request) -> bytes | int:
        request.setHeader(b"content-security-policy", DEMO_CSP.encode("ascii"))
        request.setHeader(b"x-content-type-options", b"nosniff")
        result: bytes | int = super().render(request)
        return result

    def hidden(self, name: str) -> bool:
        return super().hidden(name) or name.startswith("_") or name.endswith((".py", ".pyc"))

    def getChild(self, path: bytes, request: Request) -> IResource:
        if (path == b"" and not request.postpath and self.sio_path != "/socket.io"
                and b"path" not in (request.args or {})):
            return _Redirect("/?path=" + quote(self.sio_path, safe="/"))
        return super().getChild(path, request)


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
