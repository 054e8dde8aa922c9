"""Small typed helpers the unit tests call where a one-liner would hide its types from mypy.

- :func:`recorded` and :func:`appended` are for one-line handlers that note their call in a
  list (``lambda x: recorded(seen, x, "answer")``): ``seen.append(x) or "answer"`` would use
  the ``None`` that ``append`` returns, which mypy refuses.
- :func:`delayed_calls` gives a :class:`~twisted.internet.task.Clock`'s pending calls as the
  ``DelayedCall`` objects they are, whose ``func`` and ``args`` a test may look at (the
  clock's ``getDelayedCalls`` promises only ``IDelayedCall``, which has neither).
"""

from __future__ import annotations

from typing import TypeVar

from twisted.internet.base import DelayedCall
from twisted.internet.task import Clock

_T = TypeVar("_T")
_R = TypeVar("_R")


def recorded(log: list[_T], item: _T, result: _R) -> _R:
    """Append *item* to *log*, then return *result*."""
    log.append(item)
    return result


def appended(log: list[_T], item: _T) -> _T:
    """Append *item* to *log*, then return it."""
    log.append(item)
    return item


def delayed_calls(clock: Clock) -> list[DelayedCall]:
    """The calls pending on *clock*, in its order."""
    calls = []
    for call in clock.getDelayedCalls():
        assert isinstance(call, DelayedCall)
        calls.append(call)
    return calls
