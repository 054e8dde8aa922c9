"""The engine's hooks into each request, as Node's ``engine.io`` offers them: middlewares
(``engine.use``), extra response headers (the ``initial_headers`` and ``headers`` events),
and the ``connection_error`` event for each request refused.

Called by :class:`~txsio.engineio.resource.EngineIOResource`:

- :func:`run_middlewares` for every request, before the checks (when any is registered);
- :func:`add_headers` for every response of a session (``initial``: the handshake's), polling
  and WebSocket alike, before the response goes out;
- :func:`refuse` for every request it refuses: the ``connection_error`` event, then the answer
  (JSON for HTTP; for a WebSocket upgrade, Node's plain ``400 Bad Request`` with the
  message as its text body).

:class:`~txsio.engineio.EngineServer` holds the middlewares and emits the events.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ..exceptions import ConnectionRefusedError
from .errors import EngineRequestError, ErrorCode

if TYPE_CHECKING:
    from twisted.web.server import Request

    from .server import EngineServer

__all__ = [
    "ConnectionErrorEvent",
    "Middleware",
    "ResponseHeaders",
    "add_headers",
    "refusal",
    "refuse",
    "run_middlewares",
]

log = Logger()

#: A middleware: ``f(request)`` with the twisted.web request, returning nothing (or a Deferred
#: or coroutine, awaited) to let the request go on; raising refuses it (see
#: :meth:`~txsio.engineio.EngineServer.use`).
Middleware = Callable[["Request"], Any]

#: The headers the ``initial_headers`` / ``headers`` handlers add: a name and a value, or a
#: list of values for a header sent several times (``Set-Cookie``).
ResponseHeaders = dict[str, Union[str, list[str]]]  # noqa: UP007


@dataclass(frozen=True)
class ConnectionErrorEvent:
    """What the ``connection_error`` event carries: a request the server refused.

    :ivar request: the twisted.web request (Node: ``err.req``, also readable as :attr:`req`).
    :ivar code: the Engine.IO error code (:class:`~txsio.engineio.ErrorCode`).
    :ivar message: the code's standard message (Node: ``err.message``): ``"Forbidden"`` even
        when ``allow_request`` refused with a message of its own, which is in the context.
    :ivar context: what Node's ``err.context`` holds for the same refusal, keys as Node spells
        them: ``{"transport": ...}``, ``{"sid": ...}``, ``{"method": ...}``,
        ``{"protocol": 3}``, ``{"name": "TRANSPORT_MISMATCH", "transport": ...,
        "previousTransport": ...}``, ``{"name": "TRANSPORT_HANDSHAKE_ERROR"}``,
        ``{"name": "MIDDLEWARE_FAILURE"}``, ``{"message": ...}`` (``allow_request``)...
    """

    request: Any
    code: int
    message: str
    context: Mapping[str, Any] = field(default_factory=dict)

    @property
    def req(self) -> Any:
        """Node's name for :attr:`request`."""
        return self.request


def refusal(error: BaseException) -> EngineRequestError | None:
    """The answer an ``allow_request`` refusal raised with asks for: an
    :class:`EngineRequestError` as it is, a :class:`~txsio.ConnectionRefusedError` as 403
    ``Forbidden`` with its message (Node's ``callback(message, false)``); ``None`` for any
    other error (a bug: logged, and refused as ``Forbidden``)."""
    if isinstance(error, EngineRequestError):
        return error
    if isinstance(error, ConnectionRefusedError):
        return EngineRequestError(ErrorCode.FORBIDDEN, 403, error.message,
                                  context={"message": error.message})
    return None


def refuse(server: EngineServer, request: Request, error: EngineRequestError,
           *, upgrade: bool) -> bytes:
    """Emit ``connection_error`` for ``error``, then answer ``request`` with it.

    :param upgrade: whether the request asked for a WebSocket: then the answer is Node's,
        ``400 Bad Request``, ``text/html``, the message as the body, the connection closed.
    :returns: the body, for ``render`` to return (or to write).
    """
    if server.has_listeners("connection_error"):
        # As Node: the code's standard message (an application's own is in the context).
        server.emit("connection_error", ConnectionErrorEvent(
            request, int(error.code), ErrorCode.MESSAGES[error.code], dict(error.context)))
    if not upgrade:
        return error.render(request)
    request.setResponseCode(400)
    request.setHeader(b"content-type", b"text/html")
    request.setHeader(b"connection", b"close")
    return error.message.encode("utf-8")


def add_headers(server: EngineServer, request: Request, *, initial: bool,
                into: ResponseHeaders | None = None) -> ResponseHeaders:
    """Ask the ``initial_headers`` (when ``initial``) then ``headers`` handlers for extra
    response headers, each called with the dict so far and the request.

    :param into: where to collect them (a WebSocket's, which Autobahn writes); without it,
        they are set on ``request``'s response at once (polling).
    :returns: the headers collected.
    """
    headers: ResponseHeaders = {} if into is None else into
    if not server.has_listeners("headers") and not (
            initial and server.has_listeners("initial_headers")):
        return headers  # the common case: nobody adds any
    if initial:
        server.emit("initial_headers", headers, request)
    server.emit("headers", headers, request)
    for name, value in list(headers.items()):
        # A line break in a name or value would end the header (and let what follows be
        # read as another): replaced, as twisted.web does for the headers it writes.
        values = [_one_line(v) for v in ([value] if isinstance(value, str) else value)]
        headers[name] = values[0] if isinstance(value, str) else values
        if into is None:
            request.responseHeaders.setRawHeaders(_one_line(name).encode("latin-1"),
                                                  [v.encode("latin-1") for v in values])
    if into is not None and any(_one_line(name) != name for name in headers):
        for name in list(headers):
            headers[_one_line(name)] = headers.pop(name)
    return headers


def _one_line(text: str) -> str:
    return text.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def run_middlewares(middlewares: Iterable[Middleware], request: Request,
                    ) -> Deferred[EngineRequestError | None]:
    """Run ``middlewares`` in order on ``request``, each after the previous one is done.

    :returns: a Deferred firing with ``None`` when every one let the request through, or
        with the refusal to answer: the :class:`EngineRequestError` one raised, or Node's
        ``400 Bad request`` (``MIDDLEWARE_FAILURE``) for any other error (logged).
    """
    async def run() -> EngineRequestError | None:
        for middleware in middlewares:
            try:
                result = middleware(request)
                if inspect.isawaitable(result):
                    await result
            except EngineRequestError as e:
                if not e.context:
                    e.context = {"name": "MIDDLEWARE_FAILURE"}
                return e
            except Exception:
                log.failure("an engine middleware failed: refusing {uri}",
                            Failure(), uri=request.uri.decode("latin-1"))
                return EngineRequestError(ErrorCode.BAD_REQUEST,
                                          context={"name": "MIDDLEWARE_FAILURE"})
            if request.finished:
                return None  # the middleware answered the request itself
        return None

    return Deferred.fromCoroutine(run())
