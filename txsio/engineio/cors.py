"""CORS as Node's ``cors`` option: which origins are allowed and the headers they get.

:class:`CorsPolicy` is built once by :class:`~txsio.engineio.EngineServer` from its ``cors``
mapping (Node's ``cors`` option in snake_case) or from the ``cors_allowed_origins`` shorthand,
and validated then, so a value no browser could match fails at start-up rather than refusing
every browser later.  :class:`~txsio.engineio.resource.EngineIOResource` asks it per request:
:meth:`CorsPolicy.allows` (a bool, or a Deferred of one when the user's function answers
later), then :meth:`CorsPolicy.headers` or :meth:`CorsPolicy.preflight_headers`.

The headers follow npm ``cors`` (what Node's engine.io uses): ``"*"`` answers ``*``; any other
allowed origin is reflected with ``Vary: Origin``; ``Access-Control-Allow-Credentials`` only when
``credentials`` is true; a preflight reflects the requested headers unless ``allowed_headers``
says which.  One difference is kept on purpose: an origin the policy does not allow is refused
with 403 by the resource (Node answers without CORS headers and leaves the refusal to the
browser, which a non-browser client ignores) — see :doc:`/migration`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger

__all__ = ["CorsOrigin", "CorsOrigins", "CorsPolicy", "cors_policy"]

log = Logger()

#: What ``cors_allowed_origins`` accepts: ``None`` (no CORS), ``"*"``, a list of origins, or a
#: callable taking the ``Origin`` header and returning whether it is allowed.
CorsOrigins = Union[None, str, Iterable[str], Callable[[str], bool]]  # noqa: UP007

#: What ``cors["origin"]`` accepts (Node's ``origin``): ``"*"`` or ``True`` (any), ``False`` or
#: ``None`` (no CORS), an origin string, a compiled regex, a list of strings and regexes, or a
#: function ``f(origin) -> bool`` (or a Deferred firing with one).
CorsOrigin = Union[
    None, bool, str, "re.Pattern[str]", Iterable[Union[str, "re.Pattern[str]"]],
    Callable[[str], Union[bool, "Deferred[bool]"]],
]

#: npm cors's default ``methods``.
NODE_METHODS = "GET,HEAD,PUT,PATCH,POST,DELETE"

_KEYS = ("origin", "credentials", "methods", "allowed_headers", "exposed_headers", "max_age")
# Node's spellings, so a mapping copied from a Node app is told what to write instead.
_CAMEL = {"allowedHeaders": "allowed_headers", "exposedHeaders": "exposed_headers",
          "maxAge": "max_age", "headers": "allowed_headers"}
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def check_origin_value(value: object, option: str = "cors_allowed_origins") -> str:
    """An allowed origin as browsers send it (``scheme://host[:port]``, no trailing slash).

    :raises ValueError: for anything else, such as ``"app.example"`` (no scheme): a browser
        never sends it, so it would refuse every browser without a word.
    """
    if not isinstance(value, str):
        raise TypeError(f"an allowed origin is a string, not {type(value).__name__}")
    origin = value.rstrip("/")
    scheme, sep, host = origin.partition("://")
    if not sep or not scheme or not host or "/" in host or scheme.lower() != scheme:
        raise ValueError(f"{option}: {value!r:.80} is not an origin; write it "
                         "as a browser sends it, e.g. 'https://app.example' or "
                         "'http://localhost:8080'")
    return origin


def _header_list(name: str, value: object) -> str | None:
    """A header list option (a string or strings) as one header value, checked."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)  # type: ignore[call-overload]
    parts: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"cors[{name!r}]: {item!r:.40} is not a string")
        parts.extend(p.strip() for p in item.split(",") if p.strip())
    for part in parts:
        if not _TOKEN.fullmatch(part):
            raise ValueError(f"cors[{name!r}]: {part!r:.40} is not a header or method name")
    # As npm cors: a string is sent as written, a list joined with commas.
    return value if isinstance(value, str) else ",".join(parts)


class CorsPolicy:
    """Which origins may call the endpoint from a browser, and the CORS headers they get.

    Built by :func:`cors_policy`; the options are Node's (see the module docstring).

    :param origin: the allowed origins (see :data:`CorsOrigin`).
    :param credentials: send ``Access-Control-Allow-Credentials: true`` (Node: false).
    :param methods: the preflight's allowed methods (Node: ``GET,HEAD,PUT,PATCH,POST,DELETE``).
    :param allowed_headers: the preflight's allowed headers; ``None`` reflects the request's.
    :param exposed_headers: ``Access-Control-Expose-Headers`` (none by default).
    :param max_age: seconds a browser may cache a preflight (none by default).
    """

    __slots__ = (
        "_any",
        "_callable",
        "_exact",
        "_patterns",
        "_reflect_all",
        "allowed_headers",
        "credentials",
        "exposed_headers",
        "max_age",
        "methods",
    )

    def __init__(self, *, origin: CorsOrigin = "*", credentials: bool = False,
                 methods: str | Iterable[str] = NODE_METHODS,
                 allowed_headers: str | Iterable[str] | None = None,
                 exposed_headers: str | Iterable[str] | None = None,
                 max_age: int | None = None) -> None:
        self._any = False
        self._reflect_all = False
        self._exact: frozenset[str] = frozenset()
        self._patterns: tuple[re.Pattern[str], ...] = ()
        self._callable: Callable[[str], bool | Deferred[bool]] | None = None
        if origin == "*":
            self._any = True
        elif origin is True:
            self._reflect_all = True
        elif origin is None or origin is False:
            raise ValueError("cors: an origin of None or False is no CORS; pass cors=None")
        elif isinstance(origin, str):
            self._exact = frozenset([check_origin_value(origin, "cors['origin']")])
        elif isinstance(origin, re.Pattern):
            self._patterns = (origin,)
        elif callable(origin):
            self._callable = origin
        else:
            exact, patterns = [], []
            for item in origin:
                if isinstance(item, re.Pattern):
                    patterns.append(item)
                else:
                    exact.append(check_origin_value(item, "cors['origin']"))
            self._exact, self._patterns = frozenset(exact), tuple(patterns)
        if not isinstance(credentials, bool):
            raise TypeError(f"cors['credentials'] is True or False, not {credentials!r:.40}")
        self.credentials = credentials
        self.methods = _header_list("methods", methods) or ""
        self.allowed_headers = _header_list("allowed_headers", allowed_headers)
        self.exposed_headers = _header_list("exposed_headers", exposed_headers)
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int)
                                    or max_age < 0):
            raise ValueError(f"cors['max_age'] is a whole number of seconds, not {max_age!r}")
        self.max_age = max_age

    def allows(self, origin: str) -> bool | Deferred[bool]:
        """Whether ``origin`` (a request's ``Origin`` header) is allowed.

        A function's exception refuses the origin (logged); so does its Deferred's failure.
        """
        if self._any or self._reflect_all or origin in self._exact:
            return True
        # Unanchored, as JavaScript's RegExp.test that Node's cors calls.
        if any(p.search(origin) for p in self._patterns):
            return True
        if self._callable is None:
            return False
        try:
            answer = self._callable(origin)
        except Exception:
            log.failure("the CORS origin function raised for {origin!r}", origin=origin)
            return False
        if isinstance(answer, Deferred):
            return answer.addCallbacks(bool, _refused, errbackArgs=(origin,))
        return bool(answer)

    def headers(self, origin: str) -> list[tuple[str, str]]:
        """The CORS headers of an answer to an allowed ``origin`` (not a preflight)."""
        headers = self._origin_headers(origin)
        if self.exposed_headers:
            headers.append(("Access-Control-Expose-Headers", self.exposed_headers))
        return headers

    def preflight_headers(self, origin: str,
                          requested_headers: str | None) -> list[tuple[str, str]]:
        """The headers of the 204 answer to an allowed ``origin``'s preflight.

        :param requested_headers: its ``Access-Control-Request-Headers``, reflected unless
            ``allowed_headers`` was given.
        """
        headers = self._origin_headers(origin)
        headers.append(("Access-Control-Allow-Methods", self.methods))
        allowed = self.allowed_headers
        if allowed is None:
            # Reflected: caches must key the answer on the request's headers too.
            allowed = requested_headers
            _vary(headers, "Access-Control-Request-Headers")
        if allowed:
            headers.append(("Access-Control-Allow-Headers", allowed))
        if self.max_age is not None:
            headers.append(("Access-Control-Max-Age", str(self.max_age)))
        if self.exposed_headers:
            headers.append(("Access-Control-Expose-Headers", self.exposed_headers))
        return headers

    def _origin_headers(self, origin: str) -> list[tuple[str, str]]:
        headers: list[tuple[str, str]] = []
        if self._any:
            headers.append(("Access-Control-Allow-Origin", "*"))
        else:
            headers.append(("Access-Control-Allow-Origin", origin))
            headers.append(("Vary", "Origin"))
        if self.credentials:
            headers.append(("Access-Control-Allow-Credentials", "true"))
        return headers


def _vary(headers: list[tuple[str, str]], name: str) -> None:
    for i, (key, value) in enumerate(headers):
        if key == "Vary":
            headers[i] = (key, f"{value}, {name}")
            return
    headers.append(("Vary", name))


def _refused(failure: Any, origin: str) -> bool:
    log.failure("the CORS origin function failed for {origin!r}", failure, origin=origin)
    return False


def cors_policy(cors: Mapping[str, Any] | None,
                cors_allowed_origins: CorsOrigins) -> CorsPolicy | None:
    """The policy of a server's ``cors`` and ``cors_allowed_origins`` options (``None``: no
    CORS, only same-origin browser requests are served).

    ``cors_allowed_origins`` is the shorthand of python-socketio and earlier txsio, kept as it
    was: credentials allowed for listed origins, ``GET, POST, OPTIONS`` and a day's preflight
    cache.

    :raises ValueError: both given, an unknown key, or a value that cannot work.
    """
    if cors is not None and cors_allowed_origins is not None:
        raise ValueError("give cors or cors_allowed_origins, not both "
                         "(cors_allowed_origins=X is cors={'origin': X, 'credentials': True})")
    if cors is not None:
        if not isinstance(cors, Mapping):
            raise TypeError(f"cors is a mapping of {', '.join(_KEYS)}, not "
                            f"{type(cors).__name__}")
        for key in cors:
            if key in _CAMEL:
                raise ValueError(f"cors: write {_CAMEL[key]!r}, not Node's {key!r}")
            if key not in _KEYS:
                raise ValueError(f"cors: unknown option {key!r} (known: {', '.join(_KEYS)})")
        if "origin" in cors and (cors["origin"] is None or cors["origin"] is False):
            return None  # Node: a false origin turns CORS off
        return CorsPolicy(**cors)
    if cors_allowed_origins is None:
        return None
    if isinstance(cors_allowed_origins, str) and cors_allowed_origins == "*":
        return CorsPolicy(origin="*", methods="GET, POST, OPTIONS", max_age=86400)
    if not isinstance(cors_allowed_origins, str) and not callable(cors_allowed_origins):
        cors_allowed_origins = [check_origin_value(o) for o in cors_allowed_origins]
    elif isinstance(cors_allowed_origins, str):
        cors_allowed_origins = check_origin_value(cors_allowed_origins)
    return CorsPolicy(origin=cors_allowed_origins, credentials=True,
                      methods="GET, POST, OPTIONS", max_age=86400)
