"""``EngineSite``: a twisted.web ``Site`` that bounds request bodies as they arrive.

twisted.web reads a whole request body before it calls ``render`` (spooling it to a temporary
file past 100 kB), with no limit.  Mounted in any ``Site``, the Engine.IO resource still checks
a body's length before reading it, but the bytes have been received and stored by then.  In an
:class:`EngineSite`, each request counts its body bytes as they arrive and stops storing them
past ``max_request_body``; the Engine.IO resource then refuses the request (413) and closes the
session, as Node does.  Memory and disk stay bounded whatever the client sends.

The site also notes which polling sessions have a POST *arriving* (headers received, body
not yet complete), so that a second POST on a session whose first one is still arriving is
refused with 400 and the session closed, as the protocol requires (Node: "data request
overlap from client").  The sid is read from the request target by
:func:`~txsio.engineio.handshake.target_query`, the resource's own reading, so the two never
disagree about which session a POST is for.  A plain twisted.web ``Site`` cannot do this: it
hands a request to the resource only once its body is complete, so no POST is ever seen
arriving.

Called by twisted.web: :meth:`EngineRequest.gotLength`,
:meth:`EngineRequest.handleContentChunk`, :meth:`EngineRequest.connectionLost`,
:meth:`EngineRequest.finish`.  Called by the polling transport: :func:`body_too_large`,
:func:`posts_arriving`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.web.resource import IResource
from twisted.web.server import Request, Site

from .errors import EngineRequestError
from .handshake import target_query

__all__ = ["EngineRequest", "EngineSite", "body_too_large", "posts_arriving"]


class EngineRequest(Request):
    """A request that stops storing its body past its site's ``max_request_body``."""

    def _site(self) -> EngineSite:
        site: EngineSite = self.channel.site  # type: ignore[attr-defined]
        return site

    _too_large = False
    _received = 0
    _arriving_sid: str | None = None

    def gotLength(self, length: int | None) -> None:
        """Headers are in: refuse to store a body announced too large; note arriving POSTs."""
        site = self._site()
        limit: int = site.max_request_body
        command = getattr(self.channel, "_command", b"")
        if command == b"POST":
            sid = _sid_of(getattr(self.channel, "_path", b""))
            if sid is not None:
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
    """A ``Site`` whose requests bound their bodies (see the module docstring).

    :param resource: the root resource.
    :param max_request_body: the largest request body stored, in bytes; give it the largest
        ``max_http_buffer_size`` of the Engine.IO servers mounted in the site.
    :param kwargs: passed to ``twisted.web.server.Site``.
    """

    def __init__(self, resource: IResource, *, max_request_body: int = 1_000_000,
                 **kwargs: Any) -> None:
        kwargs.setdefault("requestFactory", EngineRequest)
        super().__init__(resource, **kwargs)
        self.max_request_body = max_request_body
        #: sid -> number of POST requests whose body is still arriving or being handled
        self.arriving_posts: Counter[str] = Counter()


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


def _sid_of(target: bytes) -> str | None:
    # Read as the resource reads it (one parser), so both see the same sid.
    try:
        return target_query(target).get("sid")
    except EngineRequestError:
        return None  # the resource refuses the request before any session sees it
