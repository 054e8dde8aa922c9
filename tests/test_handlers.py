"""The peer-socket core (:mod:`txsio._handlers`): dispatch, the ack table, emit flags."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from txsio import AckTimeoutError, DisconnectedError
from txsio._handlers import (
    EmitFlags,
    FlaggedEmitter,
    Listeners,
    PendingAcks,
    ack_args,
    ack_value,
    event_name,
)


class ValueTests(SynchronousTestCase):
    """Acknowledgement values and event names."""

    def test_ack_round_trip(self) -> None:
        """``ack_value`` is the inverse of ``ack_args`` for none, one and several values."""
        for value in [None, 1, "x", (1, 2), ()]:
            self.assertEqual(ack_value(ack_args(value)), None if value == () else value)

    def test_event_name(self) -> None:
        """Numbers name the event of their text, as Node keys its listeners."""
        self.assertEqual([event_name(x) for x in ["a", 1, 1.0, 1.5, True]],
                         ["a", "1", "1", "1.5", "True"])


class ListenersTests(SynchronousTestCase):
    """:class:`Listeners.dispatch`: catch-alls, then handlers; the first one answers."""

    def test_first_handler_answers(self) -> None:
        """Only the first handler's result is the ack; catch-alls never answer."""
        listeners = Listeners("owner")
        answers: list[Any] = []
        listeners.catch_alls().append(lambda *args: "catch-all")
        listeners.on("e", lambda x: x + 1)
        listeners.on("e", lambda x: x + 2)
        listeners.dispatch("e", [1], answers.append)
        self.assertEqual(answers, [2])

    def test_deferred_answer(self) -> None:
        """A Deferred result answers when it fires."""
        listeners = Listeners("owner")
        answers: list[Any] = []
        later: Deferred[str] = Deferred()
        listeners.on("e", lambda: later)
        listeners.dispatch("e", [], answers.append)
        self.assertEqual(answers, [])
        later.callback("done")
        self.assertEqual(answers, ["done"])

    def test_no_handler_no_answer(self) -> None:
        """An event without a handler is not answered."""
        listeners = Listeners("owner")
        answers: list[Any] = []
        listeners.dispatch("e", [], answers.append)
        self.assertEqual(answers, [])


class EmitLocalTests(SynchronousTestCase):
    """The socket's own events reach handlers of any arity, as JavaScript listeners."""

    def test_arguments_fitted(self) -> None:
        """A lifecycle handler taking fewer (or more) arguments than the event has is called
        with what fits, not failed with a TypeError."""
        listeners = Listeners("owner")
        seen: list[Any] = []
        listeners.on("disconnect", lambda: seen.append("none"))
        listeners.on("disconnect", lambda reason: seen.append(reason))
        listeners.on("disconnect", lambda reason, details: seen.append((reason, details)))
        listeners.emit_local("disconnect", "transport close")
        self.assertEqual(seen, ["none", "transport close", ("transport close", None)])


class PendingAcksTests(SynchronousTestCase):
    """:class:`PendingAcks`: every entry goes exactly once, timers included."""

    def test_resolve(self) -> None:
        """An answered ack fires its Deferred and cancels its timer."""
        clock = Clock()
        acks = PendingAcks(clock)
        d = acks.deferred(1, timeout=5)
        self.assertTrue(acks.resolve(1, ["a", "b"]))
        self.assertEqual(self.successResultOf(d), ("a", "b"))
        self.assertEqual((len(acks), clock.getDelayedCalls()), (0, []))
        self.assertFalse(acks.resolve(1, []))

    def test_timeout(self) -> None:
        """An ack not answered in time fails with AckTimeoutError and is forgotten."""
        clock = Clock()
        acks = PendingAcks(clock)
        d = acks.deferred(1, timeout=5)
        clock.advance(5)
        self.failureResultOf(d, AckTimeoutError)
        self.assertEqual(len(acks), 0)

    def test_cancel(self) -> None:
        """Cancelling the Deferred forgets the ack and its timer."""
        clock = Clock()
        acks = PendingAcks(clock)
        d = acks.deferred(1, timeout=5)
        d.cancel()
        self.failureResultOf(d, CancelledError)
        self.assertEqual((len(acks), clock.getDelayedCalls()), (0, []))

    def test_forget_only_own_callback(self) -> None:
        """``forget`` with a callback leaves an entry that another callback replaced."""
        acks = PendingAcks(Clock())
        first_acks: list[list[Any]] = []
        second_acks: list[list[Any]] = []
        first, second = first_acks.append, second_acks.append
        acks.expect(1, first)
        acks.expect(1, second)
        acks.forget(1, first)
        self.assertIn(1, acks)
        acks.forget(1, second)
        self.assertNotIn(1, acks)

    def test_fail_all(self) -> None:
        """``fail_all`` ends every wait but those kept, and cancels their timers."""
        clock = Clock()
        acks = PendingAcks(clock)
        gone, kept = acks.deferred(1, timeout=5), acks.deferred(2)
        acks.expect(3, lambda args: None)  # no on_error: just dropped
        acks.fail_all(DisconnectedError("bye"), keep={2})
        self.failureResultOf(gone, DisconnectedError)
        self.assertNoResult(kept)
        self.assertEqual((len(acks), clock.getDelayedCalls()), (1, []))


class FlaggedEmitterTests(SynchronousTestCase):
    """``timeout(s)`` / ``volatile`` build up flags without touching the socket."""

    def test_flags(self) -> None:
        """Each modifier returns a new emitter; emits carry the flags set."""
        sent: list[tuple[str, tuple[Any, ...], EmitFlags]] = []

        def with_ack(event: str, args: tuple[Any, ...], flags: EmitFlags) -> Deferred[Any]:
            sent.append((event, args, flags))
            return Deferred()

        base = FlaggedEmitter(lambda e, a, f: sent.append((e, a, f)), with_ack, EmitFlags())
        base.volatile.timeout(2).emit_with_ack("q", 1)
        base.send("hi")
        self.assertEqual(sent, [("q", (1,), EmitFlags(timeout=2.0, volatile=True)),
                                ("message", ("hi",), EmitFlags())])
