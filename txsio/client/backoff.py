"""The reconnection delays of the Socket.IO client: :class:`Backoff` (socket.io-client's
``backo2``).

Called by the :class:`~txsio.client.Manager`: :meth:`Backoff.duration` before each
reconnection attempt, :meth:`Backoff.reset` once connected or given up.
"""

from __future__ import annotations

import math
import random as _random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Exponential backoff with jitter, as socket.io-client's ``backo2``.

    The *n*-th :meth:`duration` (from 0) is ``min * factor**n``; with jitter ``j``, one
    random draw ``r`` moves it by ``floor(r * j * ms)`` milliseconds, down when
    ``floor(r * 10)`` is even, up when odd; the result is capped at ``max`` and truncated to
    whole milliseconds.

    :param min: the first delay, in seconds.
    :param max: the largest delay, in seconds.
    :param jitter: the randomization factor, in ``(0, 1]``; anything else means none.
    :param factor: the growth factor.
    :param random: a function returning a float in ``[0, 1)``.
    """

    def __init__(self, min: float = 0.1, max: float = 10.0, jitter: float = 0.0,
                 factor: float = 2.0, random: Callable[[], float] = _random.random) -> None:
        self.ms = min * 1000
        self.max = max * 1000
        self.factor = factor
        self.jitter = jitter if 0 < jitter <= 1 else 0.0
        self.random = random
        #: the attempts made since the last :meth:`reset`
        self.attempts = 0

    def duration(self) -> float:
        """The next delay, in seconds; counts an attempt."""
        # Past 2**1000 the float overflows; the cap has long applied by then.
        ms = self.ms * self.factor ** min(self.attempts, 1000)
        self.attempts += 1
        if self.jitter:
            rand = self.random()
            deviation = math.floor(rand * self.jitter * ms)
            ms = ms - deviation if math.floor(rand * 10) & 1 == 0 else ms + deviation
        return math.floor(min(ms, self.max)) / 1000

    def reset(self) -> None:
        """Start again from the first delay."""
        self.attempts = 0
