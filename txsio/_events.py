"""A small event emitter shared by the Engine.IO and Socket.IO layers.

Handlers registered with :meth:`EventEmitter.on` are called in registration order.  An
exception raised by a handler is logged and never propagates into the caller: a user's bug in
one handler must not break the transport that is delivering the event, nor other sessions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

_F = TypeVar("_F", bound=Callable[..., Any])

log = Logger()


class EventEmitter:
    """Named events with any number of handlers each.

    ``on(event, f)`` registers ``f``; ``@on(event)`` does the same as a decorator.
    """

    __slots__ = ("_handlers",)

    def __init__(self) -> None:
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    @overload
    def on(self, event: str) -> Callable[[_F], _F]: ...

    @overload
    def on(self, event: str, handler: _F) -> _F: ...

    def on(self, event: str, handler: _F | None = None) -> _F | Callable[[_F], _F]:
        """Register ``handler`` for ``event``; without ``handler``, return a decorator.

        :param event: the event name.
        :param handler: the callable to run when the event is emitted.
        :returns: ``handler`` itself (or a decorator that registers and returns it).
        """
        if handler is None:

            def decorator(f: _F) -> _F:
                self._handlers.setdefault(event, []).append(f)
                return f

            return decorator
        self._handlers.setdefault(event, []).append(handler)
        return handler

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        """Remove ``handler`` from ``event``, or every handler of ``event`` when omitted.

        :param event: the event name.
        :param handler: the handler to remove; a handler that is not registered is ignored.
        """
        if handler is None:
            self._handlers.pop(event, None)
            return
        handlers = self._handlers.get(event)
        if handlers and handler in handlers:
            handlers.remove(handler)

    def has_listeners(self, event: str) -> bool:
        """Whether ``event`` has at least one handler.

        :param event: the event name.
        :returns: ``True`` when a handler is registered.
        """
        return bool(self._handlers.get(event))

    def handlers(self, event: str) -> tuple[Callable[..., Any], ...]:
        """The handlers of ``event``, in registration order (a snapshot).

        :param event: the event name.
        """
        return tuple(self._handlers.get(event, ()))

    def emit(self, event: str, *args: Any) -> None:
        """Call every handler of ``event`` with ``args``, logging (not raising) their errors.

        A handler that returns a :class:`~twisted.internet.defer.Deferred` (or a coroutine,
        run as one) gets an errback that logs its failure, so no "Unhandled error in Deferred"
        is left behind.

        :param event: the event name.
        :param args: the handlers' positional arguments.
        """
        handlers = self._handlers.get(event)
        if not handlers:
            return
        for handler in tuple(handlers):
            try:
                result = handler(*args)
            except Exception:
                log.failure("error in the handler of the {event!r} event", event=event)
                continue
            if inspect.iscoroutine(result):
                result = Deferred.fromCoroutine(result)
            if isinstance(result, Deferred):
                result.addErrback(_log_handler_failure, event)


def _log_handler_failure(failure: Failure, event: str) -> None:
    log.failure("error in the handler of the {event!r} event", failure, event=event)
