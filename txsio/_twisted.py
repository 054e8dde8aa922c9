"""The small Twisted helpers every layer shares: the default reactor, cancelling a timer.

Every object with timers takes a clock (or reactor) argument and calls
:func:`default_reactor` only when it was given none, so that tests hand it a
:class:`~twisted.internet.task.Clock`.  The global reactor is imported inside the call, never
at import time: importing txsio must not install a reactor before twistd or the user picks one.

:func:`cancel_call` is what every timer owner does when it stops caring about a timer that
may have fired already: cancel it only while it is pending.

This module imports nothing from Twisted when it is imported.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, TypeVar, overload

if TYPE_CHECKING:
    from twisted.internet.interfaces import IDelayedCall

__all__ = ["cancel_call", "default_reactor"]

_R = TypeVar("_R")


@overload
def default_reactor(reactor: None = None) -> Any: ...


@overload
def default_reactor(reactor: _R | None) -> _R: ...


def default_reactor(reactor: Any = None) -> Any:
    """``reactor``, or the global reactor when it is ``None``.

    :param reactor: the reactor or clock a caller was given, if any.
    :returns: ``reactor`` itself, else ``twisted.internet.reactor`` (imported now, which
        installs the default reactor if none is installed yet).
    """
    if reactor is None:
        from twisted.internet import reactor as global_reactor

        return global_reactor
    return reactor


def cancel_call(call: IDelayedCall | None) -> None:
    """Cancel a timer that is still pending; do nothing for ``None`` or one that has fired
    or been cancelled already (where ``cancel`` itself would raise).

    :param call: what ``callLater`` returned, or ``None``.
    """
    if call is not None and call.active():
        call.cancel()
