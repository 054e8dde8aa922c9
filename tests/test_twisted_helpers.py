"""The shared Twisted helpers of :mod:`txsio._twisted`: the default reactor, cancelling a timer."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txsio._twisted import cancel_call, default_reactor


class DefaultReactorTests(SynchronousTestCase):
    """``default_reactor``: the given reactor, else the global one."""

    def test_given(self) -> None:
        """A reactor or clock that was given is returned as it is."""
        clock = Clock()
        self.assertIs(default_reactor(clock), clock)

    def test_global(self) -> None:
        """Without one (``None`` or no argument), the global reactor."""
        from twisted.internet import reactor

        self.assertIs(default_reactor(None), reactor)
        self.assertIs(default_reactor(), reactor)

    def test_import_installs_no_reactor(self) -> None:
        """Importing the module imports no reactor: twistd or the user installs theirs first."""
        code = ("import sys, txsio._twisted; "
                "print('twisted.internet.reactor' in sys.modules)")
        # From the checkout's root, so that its txsio is the one imported.
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                cwd=Path(__file__).resolve().parent.parent, timeout=60,
                                check=True)
        self.assertEqual(result.stdout.strip(), "False")


class CancelCallTests(SynchronousTestCase):
    """``cancel_call``: cancel a pending timer, leave every other one alone."""

    def test_pending(self) -> None:
        """A pending timer is cancelled and never runs."""
        clock = Clock()
        fired: list[int] = []
        call = clock.callLater(1, fired.append, 1)
        cancel_call(call)
        self.assertFalse(call.active())
        clock.advance(2)
        self.assertEqual(fired, [])

    def test_fired_cancelled_or_none(self) -> None:
        """A timer that fired or was cancelled, and ``None``, are no error."""
        clock = Clock()
        fired = clock.callLater(1, lambda: None)
        clock.advance(1)
        cancelled = clock.callLater(1, lambda: None)
        cancelled.cancel()
        for call in (fired, cancelled, None):
            cancel_call(call)
        self.assertEqual(clock.getDelayedCalls(), [])
