"""The peer-socket core: what both ends' sockets share about events and acknowledgements.

The server's :class:`~txsio.socket.Socket`, the client's :class:`~txsio.client.ClientSocket`
and the test socket of :mod:`txsio.testing` all receive events from a peer, call the user's
handlers, answer acknowledgements and wait for their own.  This module is that logic, once:

- :func:`call_handler` calls a user handler the way JavaScript calls a listener (missing
  arguments as ``None``, surplus ones dropped) and turns a coroutine into a Deferred;
- :func:`ack_args` / :func:`ack_value` convert between a handler's return value and an
  acknowledgement's arguments;
- :func:`event_name` is the name a peer's event is dispatched under (Node keys listeners by the
  name's text, so the event ``1`` reaches ``on("1")`` on both ends);
- :class:`Listeners` holds one socket's user handlers (per event and catch-all) and dispatches
  an incoming event to them, sending the first handler's result as the ack;
- :class:`PendingAcks` is the table of acknowledgements a socket waits for, with their timers;
- :class:`EmitFlags` and :class:`FlaggedEmitter` are ``socket.timeout(s)`` / ``socket.volatile``;
- :func:`run_middlewares` runs a list of middlewares in order, awaiting those that return a
  Deferred or a coroutine.

A socket *holds* a :class:`Listeners` (its handlers) and a :class:`PendingAcks`; it *is* neither,
so ``emit`` on a socket always means "send to the peer".  Errors in user code are logged with
:mod:`twisted.logger` and never reach the transport that delivered the event.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Container, Iterable
from dataclasses import dataclass, replace
from types import CoroutineType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from ._events import EventEmitter
from ._twisted import cancel_call
from .exceptions import AckTimeoutError

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall, IReactorTime

    from ._stats import NamespaceStats

__all__ = [
    "EmitFlags",
    "EventMethods",
    "FlaggedEmitter",
    "HandlerMethods",
    "Listeners",
    "PendingAcks",
    "ack_args",
    "ack_value",
    "call_handler",
    "event_name",
    "fit_arguments",
    "run_middlewares",
]

log = Logger()

_F = TypeVar("_F", bound=Callable[..., Any])

# What handlers mostly return, which cannot be a Deferred: checked first, because
# isinstance(x, Deferred) goes through ABCMeta (Deferred is an Awaitable), a tenth of a
# microsecond or more on every event.
_PLAIN = frozenset({type(None), str, int, float, bool, list, dict, tuple, bytes})


# -- calling user code --------------------------------------------------------------------------


def call_handler(handler: Callable[..., Any], *args: Any) -> Any:
    """Call a user handler; its result, or a Deferred of it for Deferreds and coroutines.

    As a JavaScript listener would, a handler gets ``None`` for arguments the peer did not
    send, and extra arguments are dropped when it takes no ``*args`` (see
    :func:`fit_arguments`).  Exceptions propagate to the caller, which logs them.
    """
    try:
        result = handler(*args)
    except TypeError:
        fitted = fit_arguments(handler, args)
        if fitted is None:
            raise
        result = handler(*fitted)
    if isinstance(result, CoroutineType):  # inspect.iscoroutine, without its call
        return Deferred.fromCoroutine(result)
    return result


def fit_arguments(handler: Callable[..., Any], args: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """``args`` fitted to ``handler``'s positional parameters, or ``None`` if they fit already.

    Only called after a ``TypeError``: when ``args`` do not bind to the signature, the handler's
    body never ran, so calling it again with missing arguments as ``None`` (JavaScript's
    ``undefined``) and surplus ones dropped is safe.
    """
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*args)
        return None  # the TypeError came from inside the handler
    except TypeError:
        pass
    params = list(signature.parameters.values())
    if any(p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
           for p in params):
        return None
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in params)
    fitted = args if variadic else args[:len(positional)]
    required = sum(1 for p in positional if p.default is inspect.Parameter.empty)
    if len(fitted) < required:
        fitted = fitted + (None,) * (required - len(fitted))
    try:
        signature.bind(*fitted)
    except TypeError:
        return None
    return fitted


def _names_two(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` names at least two positional parameters."""
    function = getattr(handler, "__func__", handler)
    code = getattr(function, "__code__", None)
    if code is not None and not hasattr(function, "__wrapped__"):
        # A plain function or method: its code says, without inspect.signature's tens of
        # microseconds (paid per handler and socket on every disconnect otherwise).
        bound = 1 if function is not handler and getattr(handler, "__self__", None) is not None \
            else 0
        return bool(code.co_argcount - bound >= 2)
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    return sum(1 for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                inspect.Parameter.POSITIONAL_OR_KEYWORD)) >= 2


async def run_middlewares(middlewares: Iterable[Callable[..., Any]], *args: Any) -> None:
    """Run each middleware with ``args`` in order, awaiting a Deferred or coroutine result.

    The first one that raises (or fails) stops the chain: its exception propagates.
    """
    for middleware in middlewares:
        result = call_handler(middleware, *args)
        if isinstance(result, Deferred):
            await result


# -- acknowledgement values ---------------------------------------------------------------------


def ack_value(args: list[Any]) -> Any:
    """An acknowledgement's arguments as one value: ``None``, the single one, or a tuple."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


def ack_args(result: Any) -> list[Any]:
    """A handler's return value as acknowledgement arguments: none for ``None``, a tuple's
    items, or the single value (the inverse of :func:`ack_value`)."""
    if result is None:
        return []
    if isinstance(result, tuple):
        return list(result)
    return [result]


def event_name(raw: Any) -> str:
    """The name a peer's event is dispatched under.

    Node's parser accepts a number as an event name, and its listeners are keyed by the
    name's text: ``1`` (or ``1.0``) is the event ``"1"``.
    """
    if isinstance(raw, str):
        return raw
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw)


# -- handlers -----------------------------------------------------------------------------------


class Listeners:
    """One socket's user handlers: per event (an :class:`EventEmitter`), and the catch-alls
    of incoming and of outgoing events.

    The socket calls :meth:`dispatch` (or :meth:`notify_any` then :meth:`call_handlers`, when
    middlewares run between them, as on the server) with each event its peer sent,
    :meth:`notify_outgoing` with each event it sends, and :meth:`emit_local` for its own
    lifecycle events (``"connect"``, ``"disconnect"``, ``"error"``…).

    :param owner: what the log lines name (the socket, through its ``repr``).
    :ivar outgoing: the catch-alls of outgoing events, in calling order (empty when none: a
        sender checks it before building anything for :meth:`notify_outgoing`).
    """

    __slots__ = ("_any", "_events", "_owner", "outgoing")

    def __init__(self, owner: object) -> None:
        self._owner = owner
        self._events = EventEmitter()
        self._any: list[Callable[..., Any]] = []
        self.outgoing: list[Callable[..., Any]] = []

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        """Register ``handler`` for ``event``."""
        self._events.on(event, handler)

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        """Remove ``handler`` (every handler of ``event`` when omitted)."""
        self._events.off(event, handler)

    def has_listeners(self, event: str) -> bool:
        """Whether ``event`` has a handler."""
        return self._events.has_listeners(event)

    def catch_alls(self, outgoing: bool = False) -> list[Callable[..., Any]]:
        """The catch-all handlers of incoming (or ``outgoing``) events, in calling order:
        the list itself, for :class:`HandlerMethods` to add to and remove from."""
        return self.outgoing if outgoing else self._any

    @property
    def has_outgoing(self) -> bool:
        """Whether a catch-all watches outgoing events (cheap: checked on every send)."""
        return bool(self.outgoing)

    def emit_local(self, event: str, *args: Any) -> None:
        """Call the handlers of one of the socket's own events (errors logged), fitting the
        arguments to each as for a peer's event (``"disconnect"``'s description is given by
        :meth:`emit_described`)."""
        for handler in self._events.handlers(event):
            self._call(handler, event, args, None)

    def emit_described(self, event: str, reason: str, description: object) -> None:
        """Call the handlers of a ``"disconnect"``-like event with Node's ``(reason,
        description)``: the description goes to the handlers that name a second positional
        parameter; one that takes the reason alone, or ``*args``, gets the reason alone (as
        before descriptions were given, so a catch-all's recording keeps its shape)."""
        for handler in self._events.handlers(event):
            args = (reason, description) if _names_two(handler) else (reason,)
            self._call(handler, event, args, None)

    def dispatch(self, event: str, params: list[Any],
                 ack: Callable[[Any], None] | None = None) -> None:
        """Call the catch-alls, then the handlers of ``event``, with the peer's ``params``
        (:meth:`notify_any`, then :meth:`call_handlers`)."""
        self.notify_any(event, params)
        self.call_handlers(event, params, ack)

    def notify_any(self, event: str, params: list[Any]) -> None:
        """Call the catch-alls of incoming events with ``event`` and ``params``."""
        if not self._any:
            return  # the common case, on every event: no snapshot to take
        for handler in tuple(self._any):
            self._call(handler, event, (event, *params), None)

    def notify_outgoing(self, event: str, params: Iterable[Any]) -> None:
        """Call the catch-alls of outgoing events with ``event`` and ``params``."""
        for handler in tuple(self.outgoing):
            self._call(handler, event, (event, *params), None)

    def call_handlers(self, event: str, params: list[Any],
                      ack: Callable[[Any], None] | None = None) -> None:
        """Call the handlers of ``event`` with the peer's ``params``.

        :param ack: when the peer asked for an acknowledgement, what sends it: it gets the
            first handler's result (a Deferred's or coroutine's result when it fires).
            Nothing is sent when no handler exists or the first one raised.
        """
        for handler in self._events.handlers(event):
            self._call(handler, event, params, ack)
            ack = None  # only the first handler answers

    def _call(self, handler: Callable[..., Any], event: str, args: Iterable[Any],
              ack: Callable[[Any], None] | None) -> None:
        try:
            result = call_handler(handler, *args)
        except Exception:
            log.failure("error in a handler of event {event!r} of {owner}",
                        event=event, owner=self._owner)
            return
        if result.__class__ not in _PLAIN and isinstance(result, Deferred):
            if ack is not None:
                result.addCallback(ack)
            result.addErrback(self._failed, event)
        elif ack is not None:
            try:
                ack(result)
            except Exception:  # e.g. a value JSON cannot carry
                log.failure("cannot send the ack of event {event!r} of {owner}",
                            event=event, owner=self._owner)

    def _failed(self, failure: Failure, event: str) -> None:
        log.failure("error in a handler of event {event!r} of {owner}", failure,
                    event=event, owner=self._owner)


class EventMethods:
    """``on`` / ``off`` / ``has_listeners`` of a socket or namespace, on its
    :class:`Listeners`.

    A class mixes this in and sets ``self.listeners`` in its constructor.
    """

    __slots__ = ()

    listeners: Listeners

    @overload
    def on(self, event: str) -> Callable[[_F], _F]: ...

    @overload
    def on(self, event: str, handler: _F) -> _F: ...

    def on(self, event: str, handler: _F | None = None) -> _F | Callable[[_F], _F]:
        """Register ``handler`` for ``event``; without ``handler``, return a decorator.

        :param event: the event name.
        :param handler: the callable to run when the event arrives.
        :returns: ``handler`` itself (or a decorator that registers and returns it).
        """
        if handler is None:
            def decorator(f: _F) -> _F:
                self.listeners.on(event, f)
                return f

            return decorator
        self.listeners.on(event, handler)
        return handler

    def off(self, event: str, handler: Callable[..., Any] | None = None) -> None:
        """Remove ``handler`` from ``event``, or every handler of ``event`` when omitted."""
        self.listeners.off(event, handler)

    def has_listeners(self, event: str) -> bool:
        """Whether ``event`` has at least one handler."""
        return self.listeners.has_listeners(event)


class HandlerMethods(EventMethods):
    """:class:`EventMethods` and the catch-alls of a socket: ``handler(event, *args)`` for
    every incoming event (``on_any``…) or every outgoing one (``on_any_outgoing``…), as
    Node's ``onAny`` / ``onAnyOutgoing`` family."""

    __slots__ = ()

    def on_any(self, handler: _F) -> _F:
        """Register ``handler(event, *args)`` for every incoming event (before the socket's
        middlewares and handlers).

        :returns: ``handler`` (so it works as a decorator).
        """
        self.listeners.catch_alls().append(handler)
        return handler

    def prepend_any(self, handler: _F) -> _F:
        """Like :meth:`on_any`, called before the catch-alls registered so far.

        :returns: ``handler``.
        """
        self.listeners.catch_alls().insert(0, handler)
        return handler

    def off_any(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove ``handler``, or every catch-all of incoming events when omitted."""
        _remove(self.listeners.catch_alls(), handler)

    def listeners_any(self) -> list[Callable[..., Any]]:
        """The catch-alls of incoming events, in calling order (a copy)."""
        return list(self.listeners.catch_alls())

    def on_any_outgoing(self, handler: _F) -> _F:
        """Register ``handler(event, *args)`` for every event sent to the peer (broadcasts
        that reach this socket included).

        :returns: ``handler`` (so it works as a decorator).
        """
        self.listeners.catch_alls(outgoing=True).append(handler)
        return handler

    def prepend_any_outgoing(self, handler: _F) -> _F:
        """Like :meth:`on_any_outgoing`, called before those registered so far.

        :returns: ``handler``.
        """
        self.listeners.catch_alls(outgoing=True).insert(0, handler)
        return handler

    def off_any_outgoing(self, handler: Callable[..., Any] | None = None) -> None:
        """Remove ``handler``, or every catch-all of outgoing events when omitted."""
        _remove(self.listeners.catch_alls(outgoing=True), handler)

    def listeners_any_outgoing(self) -> list[Callable[..., Any]]:
        """The catch-alls of outgoing events, in calling order (a copy)."""
        return list(self.listeners.catch_alls(outgoing=True))


def _remove(handlers: list[Callable[..., Any]], handler: Callable[..., Any] | None) -> None:
    if handler is None:
        handlers.clear()
    elif handler in handlers:
        handlers.remove(handler)


# -- acknowledgements a socket waits for --------------------------------------------------------


class _Pending:
    __slots__ = ("on_ack", "on_error", "timer")

    def __init__(self, on_ack: Callable[[list[Any]], None],
                 on_error: Callable[[Exception], object] | None) -> None:
        self.on_ack = on_ack
        self.on_error = on_error
        self.timer: IDelayedCall | None = None

    def stop_timer(self) -> None:
        timer, self.timer = self.timer, None
        cancel_call(timer)


class PendingAcks:
    """The acknowledgements one socket waits for, by ack id, each with an optional timeout.

    Each entry is removed exactly once: by its ack (:meth:`resolve`), its timeout (its
    ``on_error`` gets :class:`~txsio.AckTimeoutError`), :meth:`forget`, or :meth:`fail_all`
    when the socket disconnects.  Nothing is left behind, timers included.

    :param clock: the clock of the timeouts.
    :param stats: where timeouts are counted (a server socket's namespace), if anywhere.
    """

    __slots__ = ("_clock", "_pending", "_stats")

    def __init__(self, clock: IReactorTime, stats: NamespaceStats | None = None) -> None:
        self._clock = clock
        self._pending: dict[int, _Pending] = {}
        self._stats = stats

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, ack_id: object) -> bool:
        return ack_id in self._pending

    def expect(self, ack_id: int, on_ack: Callable[[list[Any]], None], *,
               timeout: float | None = None,
               on_error: Callable[[Exception], object] | None = None) -> None:
        """Call ``on_ack`` with the ack's arguments when ``ack_id`` is answered.

        :param timeout: seconds after which the wait ends with ``on_error``.
        :param on_error: gets :class:`~txsio.AckTimeoutError` or the error of
            :meth:`fail_all`; without it, the entry just goes.
        """
        pending = _Pending(on_ack, on_error)
        previous = self._pending.get(ack_id)
        if previous is not None:
            previous.stop_timer()
        self._pending[ack_id] = pending
        if timeout is not None:
            pending.timer = self._clock.callLater(timeout, self._timed_out, ack_id, pending)

    def deferred(self, ack_id: int, timeout: float | None = None) -> Deferred[Any]:
        """A Deferred of the ack of ``ack_id`` (:func:`ack_value` of its arguments).

        It fails with :class:`~txsio.AckTimeoutError` after ``timeout`` seconds, or with the
        error of :meth:`fail_all`; cancelling it forgets the ack.
        """
        d: Deferred[Any] = Deferred(lambda _: self.forget(ack_id))
        self.expect(ack_id, lambda args: d.callback(ack_value(args)), timeout=timeout,
                    on_error=d.errback)
        return d

    def resolve(self, ack_id: int, args: list[Any]) -> bool:
        """The peer answered ``ack_id`` with ``args``: call its ``on_ack``.

        :returns: whether ``ack_id`` was waited for.
        """
        pending = self._pending.pop(ack_id, None)
        if pending is None:
            return False
        pending.stop_timer()
        pending.on_ack(args)
        return True

    def forget(self, ack_id: int, on_ack: Callable[[list[Any]], None] | None = None) -> None:
        """Stop waiting for ``ack_id`` (only if ``on_ack`` is still its callback, when given)."""
        pending = self._pending.get(ack_id)
        if pending is None or (on_ack is not None and pending.on_ack is not on_ack):
            return
        del self._pending[ack_id]
        pending.stop_timer()

    def fail_all(self, error: Exception, keep: Container[int] = ()) -> None:
        """End every wait but those in ``keep`` with ``error`` (the socket disconnected)."""
        failed = [ack_id for ack_id in self._pending if ack_id not in keep]
        for ack_id in failed:
            pending = self._pending.pop(ack_id)
            pending.stop_timer()
            if pending.on_error is not None:
                pending.on_error(error)

    def _timed_out(self, ack_id: int, pending: _Pending) -> None:
        pending.timer = None
        if self._pending.get(ack_id) is pending:
            del self._pending[ack_id]
            if self._stats is not None:
                self._stats.acks_timed_out += 1
            if pending.on_error is not None:
                pending.on_error(AckTimeoutError())


# -- socket.timeout(s) / socket.volatile ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EmitFlags:
    """The flags of one emit: ``timeout`` (seconds to wait for the ack), ``volatile``
    (dropped unless it can be written now) and ``compress`` (``False``: sent uncompressed)."""

    timeout: float | None = None
    volatile: bool = False
    compress: bool = True


NO_FLAGS = EmitFlags()

#: What a :class:`FlaggedEmitter` sends an event with (and an event expecting an ack).
EmitWithFlags = Callable[[str, tuple[Any, ...], EmitFlags], object]
EmitWithAckAndFlags = Callable[[str, tuple[Any, ...], EmitFlags], "Deferred[Any]"]


class FlaggedEmitter:
    """``socket.timeout(s)`` / ``socket.volatile``: the socket's emits with flags set.

    :param emit: the socket's emit with flags.
    :param emit_with_ack: the socket's emit with an ack, with flags.
    :param flags: the flags set so far.
    """

    __slots__ = ("_emit", "_emit_with_ack", "_flags")

    def __init__(self, emit: EmitWithFlags, emit_with_ack: EmitWithAckAndFlags,
                 flags: EmitFlags) -> None:
        self._emit = emit
        self._emit_with_ack = emit_with_ack
        self._flags = flags

    def timeout(self, seconds: float) -> FlaggedEmitter:
        """Fail :meth:`emit_with_ack` with :class:`~txsio.AckTimeoutError` after ``seconds``."""
        return FlaggedEmitter(self._emit, self._emit_with_ack,
                              replace(self._flags, timeout=float(seconds)))

    @property
    def volatile(self) -> FlaggedEmitter:
        """Drop the packet unless the peer can be written to now."""
        return FlaggedEmitter(self._emit, self._emit_with_ack,
                              replace(self._flags, volatile=True))

    def compress(self, compress: bool) -> FlaggedEmitter:
        """``False``: send without compression (permessage-deflate, or gzip / deflate for a
        polling response holding nothing else), as Node's ``compress(false)``."""
        return FlaggedEmitter(self._emit, self._emit_with_ack,
                              replace(self._flags, compress=bool(compress)))

    def emit(self, event: str, *args: Any) -> None:
        """Emit ``event`` with ``args``."""
        self._emit(event, args, self._flags)

    def send(self, *args: Any) -> None:
        """Emit the ``message`` event."""
        self._emit("message", args, self._flags)

    def emit_with_ack(self, event: str, *args: Any) -> Deferred[Any]:
        """Emit ``event`` and return a Deferred of the peer's acknowledgement."""
        return self._emit_with_ack(event, args, self._flags)
