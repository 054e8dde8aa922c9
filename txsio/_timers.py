"""Many timers of one delay on one reactor timer: the Engine.IO heartbeat's.

Every open session has a heartbeat timer (the next ping, or the wait for the client's answer),
all with the same delay.  A Twisted ``DelayedCall`` per session costs about 450 bytes (the
call, its bound methods, an empty keyword dict) and a place in the reactor's heap, and every
timer cancelled by a pong stays in that heap until the reactor purges it.  Since the timers
of one delay fall due in the order they are set, they queue here instead, in a deque, behind
one reactor timer for the earliest: a timer is a 72-byte :class:`Timer`.

Called by the session: :func:`call_later` (through :func:`timer_queue`), and
:meth:`Timer.cancel` (through :func:`~txsio._twisted.cancel_call`).

A timer set at time ``t`` fires at ``t + delay`` exactly as a ``callLater`` would (with a
:class:`~twisted.internet.task.Clock` too); timers due at the same time fire in the order
they were set; one that raises is logged and does not stop the others.  When the last timer
of a queue is cancelled, its reactor timer is cancelled too, so a clock with no session has
no delayed call left.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any
from weakref import WeakKeyDictionary, ref

from twisted.internet.error import AlreadyCalled
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

__all__ = ["Timer", "TimerQueue", "call_later", "timer_queue"]

log = Logger()


@implementer(IDelayedCall)
class Timer:
    """One timer of a :class:`TimerQueue`: ``func(target)`` at :meth:`getTime`."""

    __slots__ = ("_due", "_func", "_queue", "_target")

    def __init__(self, queue: TimerQueue, due: float, func: Callable[[Any], object],
                 target: object) -> None:
        self._queue = queue
        self._due = due
        self._func: Callable[[Any], object] | None = func
        self._target = target

    def getTime(self) -> float:
        """When the timer fires (or fired)."""
        return self._due

    def active(self) -> bool:
        """Whether it has neither fired nor been cancelled."""
        return self._func is not None

    def cancel(self) -> None:
        """Do not fire.

        :raises AlreadyCalled: once it fired or was cancelled (as a ``DelayedCall`` raises).
        """
        if self._func is None:
            raise AlreadyCalled()
        self._func = self._target = None
        self._queue._cancelled()

    def delay(self, secondsLater: float) -> None:
        """Not supported: the queue keeps its timers in the order they fall due."""
        raise NotImplementedError("a queued timer cannot be moved")

    def reset(self, secondsFromNow: float) -> None:
        """Not supported: the queue keeps its timers in the order they fall due."""
        raise NotImplementedError("a queued timer cannot be moved")


class TimerQueue:
    """The timers of one delay on one clock, behind one reactor timer (see the module
    docstring)."""

    def __init__(self, clock: IReactorTime, delay: float) -> None:
        # Held weakly: the module's table of queues is keyed weakly by the clock, and a queue
        # holding its clock would keep the entry (and every test's Clock) alive for good.
        self._clock_ref = ref(clock)
        self._delay = delay
        self._timers: deque[Timer] = deque()
        self._active = 0
        self._call: IDelayedCall | None = None
        #: the due time the reactor timer was set for (the clock may round its own)
        self._next = 0.0
        self._firing = False

    def call_later(self, func: Callable[[Any], object], target: object) -> Timer:
        """``func(target)`` after the queue's delay (``func`` unbound: no bound method is
        kept per timer)."""
        due = self._clock().seconds() + self._delay
        timer = Timer(self, due, func, target)
        self._timers.append(timer)
        self._active += 1
        if self._call is None and not self._firing:
            self._schedule(due, self._delay)
        return timer

    def _clock(self) -> IReactorTime:
        clock = self._clock_ref()
        assert clock is not None  # a queue is only reached through its living clock
        return clock

    def _schedule(self, due: float, delay: float) -> None:
        self._next = due
        self._call = self._clock().callLater(delay, self._fire)

    def _fire(self) -> None:
        self._call = None
        self._firing = True
        timers = self._timers
        # What the reactor timer was set for is due, whatever rounding the clock did.
        limit = max(self._clock().seconds(), self._next)
        try:
            while timers and timers[0]._due <= limit:
                timer = timers.popleft()
                func, target = timer._func, timer._target
                if func is None:
                    continue  # cancelled
                timer._func = timer._target = None
                self._active -= 1
                try:
                    func(target)
                except Exception:
                    log.failure("timer {func!r} failed", func=func)
        finally:
            self._firing = False
        while timers and timers[0]._func is None:
            timers.popleft()
        if timers and self._call is None:
            due = timers[0]._due
            self._schedule(due, max(due - self._clock().seconds(), 0.0))

    def _cancelled(self) -> None:
        self._active -= 1
        if self._active == 0 and not self._firing:
            # Nothing left to fire: no reactor timer either.
            self._timers.clear()
            if self._call is not None:
                self._call.cancel()
                self._call = None


_queues: WeakKeyDictionary[IReactorTime, dict[float, TimerQueue]] = WeakKeyDictionary()


def timer_queue(clock: IReactorTime, delay: float) -> TimerQueue:
    """The queue of the timers of ``delay`` seconds on ``clock`` (one per clock and delay)."""
    by_delay = _queues.get(clock)
    if by_delay is None:
        by_delay = _queues[clock] = {}
    queue = by_delay.get(delay)
    if queue is None:
        queue = by_delay[delay] = TimerQueue(clock, delay)
    return queue


def call_later(clock: IReactorTime, delay: float, func: Callable[[Any], object],
               target: object) -> Timer:
    """``func(target)`` in ``delay`` seconds on ``clock``, queued with the other timers of
    that delay."""
    return timer_queue(clock, delay).call_later(func, target)
