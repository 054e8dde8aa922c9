"""What a request carried, read once from the twisted.web request for both transports.

Called by :class:`~txsio.engineio.resource.EngineIOResource`, once per request: it parses the
query with :func:`request_query` (the one reading of a request target, which
:class:`~txsio.engineio.site.EngineSite` uses too, through :func:`target_query`) and, for a
request that opens a session (polling or WebSocket alike), builds the
:class:`HandshakeRequest` the session keeps for the layers above (Socket.IO's
``socket.handshake``).  :class:`CookieOptions` sets the ``io`` cookie on a polling
handshake's response.

Nothing here imports Twisted at runtime: the request is only read (and, for the cookie, given
one ``addCookie`` call).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .errors import EngineRequestError, ErrorCode

if TYPE_CHECKING:
    from twisted.web.server import Request

__all__ = ["CookieOptions", "HandshakeRequest", "request_query", "target_query"]


@dataclass(frozen=True)
class HandshakeRequest:
    """What the request that opened a session carried, for the layers above.

    :ivar method: the HTTP method.
    :ivar url: the request target (path and query).
    :ivar headers: the request headers, names lower-cased (repeated headers joined by ``,``).
    :ivar query: the query parameters (the first value of each).
    :ivar address: the peer's IP address.
    :ivar secure: whether the request came over TLS.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    address: str
    secure: bool

    @classmethod
    def of(cls, request: Request, query: Mapping[str, str]) -> HandshakeRequest:
        """The record of a twisted.web ``request`` whose query was parsed as ``query``.

        :param request: the request that opens the session.
        :param query: its query parameters (:func:`request_query`).
        """
        headers: dict[str, str] = {}
        for name, values in request.requestHeaders.getAllRawHeaders():
            headers[name.decode("latin-1").lower()] = ",".join(v.decode("latin-1")
                                                               for v in values)
        peer = request.getClientAddress()
        return cls(
            method=request.method.decode("ascii", "replace"),
            url=request.uri.decode("utf-8", "replace"),
            headers=headers,
            query=query,
            address=getattr(peer, "host", ""),
            secure=request.isSecure(),
        )


def request_query(request: Request) -> dict[str, str]:
    """The query parameters of ``request``'s URL (the first value of each), read by
    :func:`target_query`.

    Read from the URL only: twisted.web also merges form-encoded POST bodies into
    ``request.args``, and a body must not override ``sid``, ``EIO`` or ``transport``.

    :raises EngineRequestError: for a target holding ``#``.
    """
    return target_query(request.uri)


def target_query(target: bytes) -> dict[str, str]:
    """The query parameters of a request target as the request line carries it (the first
    value of each): everything after the first ``?``, split on ``&``, percent-decoded.

    The one reading of a target: the resource's (:func:`request_query`) and that of
    :class:`~txsio.engineio.site.EngineSite`'s tracker of arriving POSTs, which must agree on
    the ``sid`` of a request or the check of overlapping POSTs could be slipped past.

    A target holding ``#`` is refused.  A fragment is never part of a request target (RFC
    9112, section 3.2) and no client sends one; a reader that stops at it (as a URL parser
    does) and one that does not would see different queries in ``?a=1#&sid=X``, so neither
    guess is made: Autobahn refuses such a WebSocket request too.  An encoded ``%23`` is data.

    :param target: the request target (path and query).
    :raises EngineRequestError: 400, "Bad request", for a target holding ``#``.
    """
    if b"#" in target:
        raise EngineRequestError(ErrorCode.BAD_REQUEST)
    _, _, raw = target.partition(b"?")
    query: dict[str, str] = {}
    for key, value in parse_qsl(raw.decode("latin-1"), keep_blank_values=True):
        query.setdefault(key, value)
    return query


@dataclass(frozen=True)
class CookieOptions:
    """The ``io`` cookie for sticky load balancing (Node's defaults).

    :ivar name: the cookie name.
    :ivar path: its ``Path``.
    :ivar http_only: whether it is ``HttpOnly``.
    :ivar same_site: ``"Lax"``, ``"Strict"``, ``"None"`` (which needs ``secure``) or ``None``.
    :ivar secure: whether it is ``Secure``.
    :ivar domain: its ``Domain``, if any.
    :ivar max_age: its ``Max-Age`` in seconds, if any.
    :ivar extra: further attributes, each written as given (``"Partitioned"``).
    :raises ValueError: for a ``same_site`` twisted.web refuses, or an attribute holding ``;``
        or a line break.
    """

    name: str = "io"
    path: str = "/"
    http_only: bool = True
    same_site: str | None = "Lax"
    secure: bool = False
    domain: str | None = None
    max_age: int | None = None
    extra: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        # Refused here, when the server is configured, rather than by addCookie on a request.
        if self.same_site is not None:
            same_site = self.same_site.lower()
            if same_site not in ("lax", "strict", "none"):
                raise ValueError(f"same_site must be Lax, Strict or None: {self.same_site!r}")
            if same_site == "none" and not self.secure:
                raise ValueError('same_site="None" needs secure=True')
        if any(c in attribute for attribute in self.extra for c in ";\r\n"):
            raise ValueError("a cookie attribute cannot hold ';' or a line break")

    def set(self, request: Request, sid: str) -> None:
        """Set the cookie for the session ``sid`` on ``request``'s response.

        :param request: the handshake request.
        :param sid: the session id, the cookie's value.
        """
        request.addCookie(
            self.name, sid, path=self.path, domain=self.domain,
            max_age=None if self.max_age is None else str(self.max_age),
            secure=self.secure, httpOnly=self.http_only, sameSite=self.same_site)
        if self.extra:
            # addCookie has no parameter for other attributes: append them to its line.
            request.cookies[-1] += "".join(f"; {a}" for a in self.extra).encode("latin-1")


def cookie_options(cookie: bool | str | Mapping[str, Any] | None) -> CookieOptions | None:
    """The :class:`CookieOptions` of the server's ``cookie`` option (``None``: no cookie)."""
    if cookie is None or cookie is False:
        return None
    if cookie is True:
        return CookieOptions()
    if isinstance(cookie, str):
        return CookieOptions(name=cookie)
    return CookieOptions(**dict(cookie))
