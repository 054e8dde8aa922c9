"""Where the Engine.IO endpoint is: :class:`EngineURL`, on :mod:`hyperlink`.

Made by :class:`~txsio.engineio.client.EngineClient` (and checked early by the Socket.IO
client's manager) from the user's URL; the transports call :meth:`EngineURL.http` and
:meth:`EngineURL.ws` for each request or connection, and the WebSocket connector reads its
host, port and ``secure``.  :func:`cookie_header` gives the WebSocket handshake the cookies
of the engine's jar, and :func:`store_cookies` puts those its response sets there.
"""

from __future__ import annotations

import email.message
import io
import urllib.request
import urllib.response
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.cookiejar import CookieJar

from hyperlink import URL, DecodedURL

__all__ = ["EngineURL", "cookie_header", "store_cookies"]

_SCHEMES = ("http", "https", "ws", "wss")


@dataclass(frozen=True)
class EngineURL:
    """Where the Engine.IO endpoint is: scheme, host, port, path and the user's query.

    :ivar secure: TLS (``https`` / ``wss``).
    :ivar host: the host name or address (an IPv6 address without brackets).
    :ivar port: the TCP port.
    :ivar path: the endpoint path, with a trailing slash (``/engine.io/``).
    :ivar query: the user's query parameters, in order.
    """

    secure: bool
    host: str
    port: int
    path: str
    query: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(
        cls, url: str, path: str = "/engine.io", query: Mapping[str, str] | None = None
    ) -> EngineURL:
        """Read ``http(s)://`` or ``ws(s)://`` *url*; its path is ignored for *path*.

        :param url: the server's URL; its query string is kept.
        :param path: the endpoint path (a trailing slash is added, as Node's client does).
        :param query: more query parameters, after the URL's.
        :raises ValueError: for another scheme, no host, a port out of range, or a query
            that is not UTF-8 percent-encoding.
        """
        try:
            parsed = DecodedURL.from_text(url)  # (its URLParseError is a ValueError)
        except UnicodeDecodeError:
            raise ValueError(f"the query of {url!r} is not UTF-8 percent-encoding") from None
        scheme = parsed.scheme.lower()
        if scheme not in _SCHEMES:
            raise ValueError(f"an Engine.IO URL is http(s):// or ws(s)://, not {url!r}")
        # The host as written (DecodedURL's would turn punycode into Unicode), lower-cased.
        host = parsed.encoded_url.host.lower()
        if not host:
            raise ValueError(f"no host in {url!r}")
        secure = scheme in ("https", "wss")
        # (hyperlink knows no default port for an upper-case scheme: port None.)
        port = parsed.port or (443 if secure else 80)
        if not 0 < port <= 0xFFFF:
            raise ValueError(f"port out of range in {url!r}")
        # As a form decoder reads a query: "a&&b" has no empty pair, "b" is "b=".
        pairs = [(k, v or "") for k, v in parsed.query if k or v is not None]
        if query:
            pairs.extend((str(k), str(v)) for k, v in query.items())
        return cls(
            secure=secure,
            host=host,
            port=port,
            path=path.rstrip("/") + "/",
            query=tuple(pairs),
        )

    def http(self, query: Mapping[str, str]) -> str:
        """The polling URL with *query* (``EIO``, ``transport``, ``sid``) after the user's."""
        return self._url("https" if self.secure else "http", query)

    def ws(self, query: Mapping[str, str]) -> str:
        """The WebSocket URL with *query* after the user's."""
        return self._url("wss" if self.secure else "ws", query)

    def _url(self, scheme: str, query: Mapping[str, str]) -> str:
        # hyperlink brackets an IPv6 host, leaves a default port out and percent-encodes
        # each query name and value whole (a space as %20, as encodeURIComponent does).
        url = DecodedURL(URL()).replace(
            scheme=scheme, host=self.host, port=self.port,
            path=tuple(self.path.lstrip("/").split("/")),
            query=(*self.query, *query.items()),
        )
        return url.to_text()


def cookie_header(jar: CookieJar, url: str) -> str | None:
    """The ``Cookie`` header ``jar`` gives a request for ``url`` (an ``http(s)`` URL: the
    WebSocket's, which cookies match as its HTTP twin), or ``None`` when it has none."""
    request = urllib.request.Request(url)
    jar.add_cookie_header(request)
    value = request.get_header("Cookie")
    return value if isinstance(value, str) else None


def store_cookies(jar: CookieJar, url: str, set_cookies: Iterable[str]) -> None:
    """Store the ``Set-Cookie`` values of a response to ``url`` (an ``http(s)`` URL, as for
    :func:`cookie_header`) in ``jar``, by the jar's own policy (domain, path, expiry)."""
    message = email.message.Message()
    for value in set_cookies:
        message["Set-Cookie"] = value  # a Message keeps repeated fields, each whole
    if message.get_all("Set-Cookie"):
        response = urllib.response.addinfourl(io.BytesIO(), message, url)
        jar.extract_cookies(response, urllib.request.Request(url))  # type: ignore[arg-type]
