"""txsio.testing: the in-memory test client users test their own handlers with."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio.testing import TestClient, TestSocket


def _chat_app(io: txsio.Server) -> None:
    """A small app: auth by name, rooms, acks, a slow Deferred ack and server-side asks."""

    @io.of("/chat").use
    def named(socket: txsio.Socket) -> None:
        name = socket.handshake.auth.get("name")
        if not name:
            raise txsio.ConnectionRefusedError("name required", data={"field": "name"})
        socket.data["name"] = name

    @io.of("/chat").on("connection")
    def connected(socket: txsio.Socket) -> None:
        socket.join("lobby")
        io.of("/chat").to("lobby").emit("count", len(io.of("/chat").sockets))

        @socket.on("say")
        def say(text: str) -> str:
            socket.to("lobby").emit("said", socket.data["name"], text)
            return "delivered"

        @socket.on("slow")
        def slow() -> Deferred[str]:
            d: Deferred[str] = Deferred()
            io.clock.callLater(5, d.callback, "done")
            return d

        @socket.on("quiz")
        async def quiz() -> Any:
            return await socket.timeout(3).emit_with_ack("question", 6, 7)


class TestClientTests(SynchronousTestCase):
    """The test client drives real handlers in memory, with time stepped by a Clock."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.io = txsio.Server(clock=self.clock, ping_interval=10, ping_timeout=5)
        _chat_app(self.io)

    def _join(self, name: str) -> TestSocket:
        return self.successResultOf(TestClient(self.io).connect("/chat", auth={"name": name}))

    def test_connect_and_broadcast(self) -> None:
        """Connected sockets get an id; room broadcasts reach the others, not the sender."""
        ada = self._join("ada")
        bob = self._join("bob")
        self.assertTrue(ada.connected)
        self.assertIsNotNone(ada.id)
        self.assertEqual(ada.events("count"), [(1,), (2,)])
        self.assertEqual(self.successResultOf(bob.emit_with_ack("say", "hi")), "delivered")
        self.assertEqual(ada.events("said"), [("bob", "hi")])
        self.assertEqual(bob.events("said"), [])

    def test_refused(self) -> None:
        """A refusing middleware fails connect with the message and data."""
        failure = self.failureResultOf(TestClient(self.io).connect("/chat"),
                                       txsio.ConnectionRefusedError)
        self.assertEqual(failure.value.message, "name required")
        self.assertEqual(failure.value.data, {"field": "name"})

    def test_deferred_ack_stepped(self) -> None:
        """A handler's Deferred ack arrives when the clock reaches it, not before."""
        ada = self._join("ada")
        d = ada.emit_with_ack("slow")
        self.clock.advance(4.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertEqual(self.successResultOf(d), "done")

    def test_server_asks_client(self) -> None:
        """The server's emit_with_ack is answered by the test socket's handler."""
        ada = self._join("ada")
        ada.on("question", lambda a, b: a * b)
        self.assertEqual(self.successResultOf(ada.emit_with_ack("quiz")), 42)

    def test_broadcast_answered_at_once(self) -> None:
        """A broadcast with acknowledgements collects the answers that test sockets send
        while it is still being written to the others."""
        for name in ("ada", "bob"):
            self._join(name).on("question", lambda a, b: a + b)
        d = self.io.of("/chat").timeout(5).emit_with_ack("question", 1, 2)
        self.assertEqual(self.successResultOf(d), [3, 3])

    def test_server_ack_timeout(self) -> None:
        """Unanswered, the server's ack times out on the clock; its handler's failure is
        logged and no ack comes back."""
        ada = self._join("ada")
        d = ada.emit_with_ack("quiz", timeout=5)
        self.clock.advance(3)
        self.assertEqual(len(self.flushLoggedErrors(txsio.AckTimeoutError)), 1)
        self.assertNoResult(d)
        self.clock.advance(2)
        self.failureResultOf(d, txsio.AckTimeoutError)

    def test_client_ack_timeout(self) -> None:
        """The test socket's own ack timeout runs on the server's clock."""
        ada = self._join("ada")
        d = ada.emit_with_ack("nobody-listens", timeout=2)
        self.clock.advance(2)
        self.failureResultOf(d, txsio.AckTimeoutError)

    def test_heartbeats_answered(self) -> None:
        """Pings are answered, so the connection survives any number of intervals."""
        ada = self._join("ada")
        for _ in range(10):
            self.clock.advance(10)
        self.assertTrue(ada.connected)

    def test_silent_client_dropped(self) -> None:
        """With auto_pong off the server drops the client at ping_interval + ping_timeout."""
        client = TestClient(self.io)
        ada = self.successResultOf(client.connect("/chat", auth={"name": "ada"}))
        client.auto_pong = False
        self.clock.advance(10)
        self.clock.advance(5)
        self.assertTrue(client.closed)
        self.assertEqual(ada.disconnect_reason, "transport close")

    def test_disconnects(self) -> None:
        """Leaving and server-side disconnects are seen on both sides."""
        reasons: list[str] = []
        self.io.of("/chat").on("connection",
                               lambda s: s.on("disconnect", reasons.append))
        ada = self._join("ada")
        ada.disconnect()
        self.assertEqual(reasons, ["client namespace disconnect"])
        bob = self._join("bob")
        self.io.of("/chat").disconnect_sockets()
        self.assertEqual(bob.disconnect_reason, "io server disconnect")
        self.assertEqual(reasons[-1], "server namespace disconnect")

    def test_binary(self) -> None:
        """Bytes travel both ways as binary attachments."""
        self.io.on("connection", lambda s: s.on("echo", lambda data: data))
        sock = self.successResultOf(TestClient(self.io).connect())
        self.assertEqual(self.successResultOf(sock.emit_with_ack("echo", {"b": b"\x00\xff"})),
                         {"b": b"\x00\xff"})
