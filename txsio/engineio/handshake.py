"""What a request carried, read once from the twisted.web request for both transports.

Called by :class:`~txsio.engineio.resource.EngineIOResource`, once per request: it parses the
query with :func:`request_query` (the one reading of a request target, which
:class:`~txsio.engineio.site.EngineSite` uses too, through :func:`target_query`) and, for a
request that opens a session (polling or WebSocket alike), builds the
:class:`HandshakeRequest` the session keeps for the layers above (Socket.IO's
``socket.handshake``), its client address read through :class:`TrustedProxies` when the
server trusts proxies.  :class:`CookieOptions` sets the ``io`` cookie on a polling
handshake's response.

Nothing here imports Twisted at runtime: the request is only read (and, for the cookie, given
one ``addCookie`` call).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network, IPv6Address, IPv6Network, ip_address, ip_network
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from .errors import EngineRequestError, ErrorCode

if TYPE_CHECKING:
    from twisted.web.server import Request

__all__ = ["CookieOptions", "HandshakeRequest", "TrustedProxies", "request_query",
           "target_query"]


@dataclass(frozen=True, slots=True)
class HandshakeRequest:
    """What the request that opened a session carried, for the layers above.

    :ivar method: the HTTP method.
    :ivar url: the request target (path and query).
    :ivar headers: the request headers, names lower-cased (repeated headers joined by ``,``).
    :ivar query: the query parameters (the first value of each).
    :ivar address: the client's IP address: the peer's, or, when the peer is a trusted proxy
        (:class:`TrustedProxies`), the one its ``Forwarded`` / ``X-Forwarded-For`` header
        names.
    :ivar secure: whether the request came over TLS.
    """

    method: str
    url: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    address: str
    secure: bool

    @classmethod
    def of(cls, request: Request, query: Mapping[str, str],
           trusted: TrustedProxies | None = None) -> HandshakeRequest:
        """The record of a twisted.web ``request`` whose query was parsed as ``query``.

        :param request: the request that opens the session.
        :param query: its query parameters (:func:`request_query`).
        :param trusted: the proxies whose forwarding headers name the client.
        """
        headers: dict[str, str] = {}
        names = _NAMES
        for name, values in request.requestHeaders.getAllRawHeaders():
            key = names.get(name)
            if key is None:
                key = _shared(name.decode("latin-1").lower())
                if len(names) < _SHARED_MAX and len(name) <= _SHARED_LENGTH:
                    names[name] = key  # (a long name, never shared, is not kept either)
            value = values[0].decode("latin-1") if len(values) == 1 else ",".join(
                v.decode("latin-1") for v in values)
            headers[key] = value if key in _UNIQUE_HEADERS else _shared(value)
        address = getattr(request.getClientAddress(), "host", "")
        if trusted is not None:
            address = trusted.client_address(address, headers)
        return cls(
            method=_shared(request.method.decode("ascii", "replace")),
            url=_shared(request.uri.decode("utf-8", "replace")),
            headers=headers,
            query={_shared(key): _shared(value) for key, value in query.items()},
            address=_shared(address),
            secure=request.isSecure(),
        )


#: One copy of each string that recurs from one session's record to the next (header names
#: and most values, the query's keys and values, the URL of a WebSocket, the client address
#: behind a proxy): a record lives as long as its session, and thousands of records would
#: otherwise hold thousands of copies.  Bounded: the first strings seen are kept, and once
#: full, later strings are not shared (which costs memory, not correctness).
_SHARED: dict[str, str] = {}
_SHARED_MAX = 1024
_SHARED_LENGTH = 256
#: The record's name of each raw header name seen (as twisted.web spells it), as many as
#: :data:`_SHARED` holds.
_NAMES: dict[bytes, str] = {}
#: Headers whose values differ on every request: not worth a place among the shared.
_UNIQUE_HEADERS = frozenset({"sec-websocket-key", "cookie", "authorization"})


def _shared(text: str) -> str:
    """The shared copy of ``text`` (see :data:`_SHARED`), or ``text`` itself."""
    kept = _SHARED.get(text)
    if kept is not None:
        return kept
    if len(_SHARED) < _SHARED_MAX and len(text) <= _SHARED_LENGTH:
        _SHARED[text] = text
    return text


class TrustedProxies:
    """The proxies (networks, CIDR notation) whose forwarding headers are believed.

    A request from one of them may name the client in ``Forwarded: for=...`` (RFC 7239; read
    when present) or ``X-Forwarded-For``.  The chain of addresses, the peer's last, is read
    from the right: each address from a trusted proxy passes the request on from the address
    before it, and the first one that is not trusted is the client.  A request from any other
    peer keeps the peer's address whatever it claims, so a client cannot choose its own.

    :param networks: ``"10.0.0.0/8"``, ``"127.0.0.1"``, ``"::1"``..., or
        :mod:`ipaddress` networks.
    :raises ValueError: for a value that is not an address or network.
    """

    def __init__(self, networks: Iterable[str | IPv4Network | IPv6Network]) -> None:
        parsed: list[IPv4Network | IPv6Network] = []
        for network in networks:
            try:
                parsed.append(ip_network(network, strict=False))
            except ValueError:
                raise ValueError(f"trusted proxy {network!r:.60}: not an IP address or "
                                 "network (e.g. 10.0.0.0/8 or 127.0.0.1)") from None
        self.networks = tuple(parsed)

    def trusts(self, address: str) -> bool:
        """Whether ``address`` (text) is in one of the networks."""
        try:
            ip = ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def client_address(self, peer: str, headers: Mapping[str, str]) -> str:
        """The client's address for a request from ``peer`` with ``headers`` (lower-case
        names)."""
        if not self.trusts(peer):
            return peer
        forwarded = headers.get("forwarded")
        chain = (_forwarded_for(forwarded) if forwarded is not None
                 else [a.strip() for a in headers.get("x-forwarded-for", "").split(",")])
        client = peer
        for address in reversed([a for a in chain if a]):
            if not _is_ip(address):
                break  # "unknown", an obfuscated name: the chain is not to be followed
            client = address
            if not self.trusts(address):
                break
        return client


def _is_ip(text: str) -> bool:
    try:
        ip_address(text)
    except ValueError:
        return False
    return True


def _forwarded_for(value: str) -> list[str]:
    # RFC 7239: elements separated by ",", pairs by ";"; for= may be quoted, an IPv6 address
    # in brackets, with a port after it.
    found: list[str] = []
    for element in value.split(","):
        for pair in element.split(";"):
            name, _, node = pair.strip().partition("=")
            if name.strip().lower() != "for":
                continue
            node = node.strip().strip('"')
            if node.startswith("["):
                node = node[1:node.find("]")] if "]" in node else node[1:]
            elif node.count(":") == 1:
                node = node.partition(":")[0]  # an IPv4 address and its port
            found.append(node)
    return found


def request_query(request: Request) -> dict[str, str]:
    """The query parameters of ``request``'s URL (the first value of each), read by
    :func:`target_query`.

    Read from the URL only: twisted.web also merges form-encoded POST bodies into
    ``request.args``, and a body must not override ``sid``, ``EIO`` or ``transport``.

    :raises EngineRequestError: for a target holding ``#``.
    """
    uri = request.uri
    # An EngineSite's request read its target already, when its headers came in.
    read = getattr(request, "target_read", None)
    if read is not None and read[0] == uri:
        query: dict[str, str] = read[1]
        return query
    return target_query(uri)


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
    text = raw.decode("latin-1")
    query: dict[str, str] = {}
    if "%" in text or "+" in text:
        pairs = parse_qsl(text, keep_blank_values=True)
    else:
        # Nothing to decode (the query of an Engine.IO client, as a rule): a split gives what
        # parse_qsl gives, in a fifth of its time.
        pairs = [(k, v) for k, _, v in (f.partition("=") for f in text.split("&") if f)]
    for key, value in pairs:
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
