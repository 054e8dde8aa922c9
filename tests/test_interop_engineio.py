"""Interop: txsio's Engine.IO server against real clients over loopback.

The peers are Node's ``engine.io-client`` 6.x and 3.x (``tests/node/eio_client.mjs``, which
also has raw ``ws`` / ``fetch`` clients) and python-engineio's client
(``tests/peers/pyeio_client.py``), each run as a subprocess printing JSON events. The server
is the echo app of :mod:`tests.support`; ``TXSIO_INTEROP_SERVER=node`` runs the same tests
against Node's reference ``engine.io`` server, to check the expectations themselves.

Needs ``npm ci`` in ``tests/node`` (a missing ``node_modules`` is an error, not a skip).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.trial.unittest import TestCase

from .support import (
    EchoServer,
    ProcessResult,
    event_data,
    gather,
    messages_to_wire,
    require_node,
    run_node,
    run_python,
    start_echo_server,
)

CLIENT = "eio_client.mjs"
PY_CLIENT = "pyeio_client.py"

#: Heartbeat settings for most tests (seconds): short, so that idle tests see many pings.
PING_INTERVAL = 0.3
PING_TIMEOUT = 0.2

#: What the clients send: plain and multi-byte text (the emoji is two UTF-16 code units,
#: which v3 polling lengths count), short binary with high bytes, and 2000 bytes of binary.
MESSAGES: list[dict[str, Any]] = [
    {"text": "hello"},
    {"text": "ünïcödé ✓ 😀 €"},
    {"bytes": [0, 1, 2, 3, 253, 254, 255]},
    {"bytes": [i % 256 for i in range(2000)]},
]
WIRE = messages_to_wire(MESSAGES)


def typed(values: list[str | bytes]) -> list[tuple[str, str | bytes]]:
    """Pair each value with its type name, so str and bytes are compared without -bb noise."""
    return [(type(v).__name__, v) for v in values]


class InteropTestCase(TestCase):
    """Starts the echo server and holds the assertions the interop tests share."""

    #: trial's bound for one test, far above what any test here needs
    timeout = 60

    def setUp(self) -> None:
        require_node()

    async def start(self, **options: Any) -> EchoServer:
        """Start the echo server (stopped at cleanup) with short heartbeats by default."""
        options.setdefault("ping_interval", PING_INTERVAL)
        options.setdefault("ping_timeout", PING_TIMEOUT)
        server = await start_echo_server(**options)
        self.addCleanup(server.stop)
        return server

    def assertRan(self, result: ProcessResult) -> None:
        """The peer ran its scenario to the end (exit code 0)."""
        self.assertEqual(result.exit_code, 0, f"the peer failed\n{result.describe()}")

    def echoes(self, result: ProcessResult) -> list[tuple[str, str | bytes]]:
        return typed([event_data(e) for e in result.named("message")])

    def assertHandshake(
        self,
        result: ProcessResult,
        *,
        upgrades: list[str],
        ping_interval: float = PING_INTERVAL,
        ping_timeout: float = PING_TIMEOUT,
        max_payload: int | None = 1_000_000,
    ) -> None:
        """The open packet carried the server's settings, in milliseconds."""
        handshake = result.first("handshake")
        self.assertEqual(handshake["upgrades"], upgrades, result.describe())
        self.assertEqual(handshake["pingInterval"], round(ping_interval * 1000))
        self.assertEqual(handshake["pingTimeout"], round(ping_timeout * 1000))
        if max_payload is not None:
            self.assertEqual(handshake["maxPayload"], max_payload)

    async def assertServerSaw(
        self,
        server: EchoServer,
        result: ProcessResult,
        *,
        protocol: int,
        messages: list[str | bytes],
        close_reason: str,
    ) -> None:
        """The server saw the peer's session with this protocol, messages and close reason."""
        sid = result.first("open")["sid"]
        record = await server.record.session(sid)
        self.assertEqual(record.protocol, protocol)
        reason = await server.record.close_reason(sid)
        self.assertEqual(typed(record.messages), typed(messages), f"{server.record}")
        self.assertEqual(reason, close_reason, f"{server.record}\n{result.describe()}")

    def assertUpgradedEchoes(self, result: ProcessResult, expected: list[str | bytes]) -> None:
        """Every echo came back, and those after the upgrade came over WebSocket."""
        self.assertEqual(self.echoes(result), typed(expected), result.describe())
        self.assertEqual(result.first("upgrade")["transport"], "websocket")
        after = result.events[result.events.index(result.first("upgrade")) + 1 :]
        transports = [e["transport"] for e in after if e["event"] == "message"]
        self.assertGreaterEqual(len(transports), len(MESSAGES), result.describe())
        self.assertEqual(set(transports), {"websocket"}, result.describe())


class EngineIOClient6Tests(InteropTestCase):
    """engine.io-client 6.x (Engine.IO v4)."""

    async def test_polling_echo(self) -> None:
        """On polling only, text and binary messages are echoed and reach the server as str and
        bytes.
        """
        server = await self.start()
        result = await run_node(CLIENT, "polling", server.url, {"messages": MESSAGES})
        self.assertRan(result)
        self.assertHandshake(result, upgrades=["websocket"])
        self.assertEqual(result.first("open")["transport"], "polling")
        self.assertEqual(self.echoes(result), typed(WIRE), result.describe())
        self.assertEqual({e["transport"] for e in result.named("message")}, {"polling"})
        self.assertEqual(result.names()[-1], "close")
        await self.assertServerSaw(
            server, result, protocol=4, messages=WIRE, close_reason="transport close"
        )

    async def test_websocket_echo(self) -> None:
        """On WebSocket only, the handshake offers no upgrade and text and binary messages are
        echoed.
        """
        server = await self.start()
        result = await run_node(CLIENT, "websocket", server.url, {"messages": MESSAGES})
        self.assertRan(result)
        self.assertHandshake(result, upgrades=[])
        self.assertEqual(result.first("open")["transport"], "websocket")
        self.assertEqual(self.echoes(result), typed(WIRE), result.describe())
        self.assertEqual({e["transport"] for e in result.named("message")}, {"websocket"})
        await self.assertServerSaw(
            server, result, protocol=4, messages=WIRE, close_reason="transport close"
        )

    async def test_upgrade_echo(self) -> None:
        """A polling session upgrades to WebSocket and messages sent before and after it are all
        echoed.
        """
        server = await self.start()
        result = await run_node(CLIENT, "upgrade", server.url, {"messages": MESSAGES})
        self.assertRan(result)
        self.assertHandshake(result, upgrades=["websocket"])
        self.assertEqual(result.first("open")["transport"], "polling")
        self.assertUpgradedEchoes(result, WIRE * 2)
        await self.assertServerSaw(
            server, result, protocol=4, messages=WIRE * 2, close_reason="transport close"
        )

    async def test_server_close(self) -> None:
        """session.close() on polling and on WebSocket delivers the pending echo, then closes the
        client with "transport close".
        """
        server = await self.start()
        results = await gather(
            run_node(CLIENT, "server-close", server.url, {"transports": ["polling"]}),
            run_node(CLIENT, "server-close", server.url, {"transports": ["websocket"]}),
        )
        for result in results:
            self.assertRan(result)
            self.assertEqual(
                result.names(), ["handshake", "open", "message", "close"], result.describe()
            )
            self.assertEqual(self.echoes(result), typed(["close-me"]))
            self.assertEqual(result.first("close")["reason"], "transport close")
            await self.assertServerSaw(
                server, result, protocol=4, messages=["close-me"], close_reason="forced close"
            )

    async def test_server_close_flushes_buffered_polling_message(self) -> None:
        """A message sent just before session.close(), while no GET is pending, reaches the next
        polls ahead of the close packet.
        """
        server = await self.start()
        result = await run_node(CLIENT, "raw-close-me", server.url)
        self.assertRan(result)
        self.assertEqual(result.names(), ["open", "message", "close"], result.describe())
        self.assertEqual(self.echoes(result), typed(["close-me"]))
        await self.assertServerSaw(
            server, result, protocol=4, messages=["close-me"], close_reason="forced close"
        )

    async def test_idle_keepalive(self) -> None:
        """Idle sessions on polling, WebSocket and after an upgrade live through ~6 heartbeats, then
        still echo.
        """
        server = await self.start()
        idle_ms = 2000
        results = await gather(
            *(
                run_node(CLIENT, "idle", server.url, {"idleMs": idle_ms, "transports": t})
                for t in (["polling"], ["websocket"], ["polling", "websocket"])
            )
        )
        for result in results:
            self.assertRan(result)
            names = result.names()
            self.assertNotIn("close", names[: names.index("idle-done")], result.describe())
            pings = result.first("idle-done")["pings"]
            # One ping per interval: ~6 in 2 s, never more; fewer when the machine is loaded,
            # so the lower bound is "heartbeats happened", not a count tied to real time (the
            # Clock-driven session tests pin the schedule).
            self.assertGreaterEqual(pings, 1, result.describe())
            self.assertLessEqual(pings, idle_ms // round(PING_INTERVAL * 1000) + 1)
            self.assertEqual(self.echoes(result), typed(["still-here"]))
            await self.assertServerSaw(
                server, result, protocol=4, messages=["still-here"], close_reason="transport close"
            )

    async def test_silent_client_dropped(self) -> None:
        """A raw client that never answers pings (WebSocket, polling) is dropped with "ping timeout"
        at pingInterval + pingTimeout.
        """
        interval, timeout = 0.4, 0.2
        server = await self.start(ping_interval=interval, ping_timeout=timeout)
        results = await gather(
            run_node(CLIENT, "silent", server.url, {"transport": "websocket"}),
            run_node(CLIENT, "silent", server.url, {"transport": "polling"}),
        )
        due_ms = round((interval + timeout) * 1000)
        for result in results:
            self.assertRan(result)
            close = result.first("close")
            # Dropped after the first ping and before a second one would have come: the order
            # of events is the lower bound (the client's own clock starts when the open packet
            # arrives, so on a loaded machine its elapsed time can be short of the server's
            # timer; the exact timing is pinned by the session's Clock-driven tests).  The
            # upper bound allows for a loaded machine, not for another interval.
            self.assertEqual(close["pings"], 1, result.describe())
            self.assertLessEqual(close["elapsed"], due_ms + 350, result.describe())
            if result.first("open")["transport"] == "polling":
                self.assertIn(close["reason"], ("close packet", "http error"))
            await self.assertServerSaw(
                server, result, protocol=4, messages=[], close_reason="ping timeout"
            )


class EngineIOClient3Tests(InteropTestCase):
    """engine.io-client 3.x (Engine.IO v3) against a server with allow_eio3=True."""

    async def test_polling_echo(self) -> None:
        """On polling, with binary payloads and with forceBase64, v3 text and binary messages are
        echoed.
        """
        server = await self.start(allow_eio3=True)
        results = await gather(
            run_node(CLIENT, "polling", server.url, {"client": "v3", "messages": MESSAGES}),
            run_node(
                CLIENT,
                "polling",
                server.url,
                {"client": "v3", "messages": MESSAGES, "forceBase64": True},
            ),
        )
        for result in results:
            self.assertRan(result)
            self.assertHandshake(result, upgrades=["websocket"], max_payload=None)
            self.assertEqual(result.first("open")["transport"], "polling")
            self.assertEqual(self.echoes(result), typed(WIRE), result.describe())
            await self.assertServerSaw(
                server, result, protocol=3, messages=WIRE, close_reason="transport close"
            )

    async def test_websocket_echo(self) -> None:
        """On WebSocket only, v3 text and binary messages are echoed."""
        server = await self.start(allow_eio3=True)
        result = await run_node(
            CLIENT, "websocket", server.url, {"client": "v3", "messages": MESSAGES}
        )
        self.assertRan(result)
        self.assertHandshake(result, upgrades=[], max_payload=None)
        self.assertEqual(result.first("open")["transport"], "websocket")
        self.assertEqual(self.echoes(result), typed(WIRE), result.describe())
        await self.assertServerSaw(
            server, result, protocol=3, messages=WIRE, close_reason="transport close"
        )

    async def test_upgrade_echo(self) -> None:
        """A v3 polling session upgrades to WebSocket; messages before and after it are echoed."""
        server = await self.start(allow_eio3=True)
        result = await run_node(
            CLIENT, "upgrade", server.url, {"client": "v3", "messages": MESSAGES}
        )
        self.assertRan(result)
        self.assertEqual(result.first("open")["transport"], "polling")
        self.assertUpgradedEchoes(result, WIRE * 2)
        await self.assertServerSaw(
            server, result, protocol=3, messages=WIRE * 2, close_reason="transport close"
        )

    async def test_idle_keepalive(self) -> None:
        """Idle v3 clients (polling, WebSocket) get pongs to their pings and stay connected, then
        still echo.
        """
        server = await self.start(allow_eio3=True)
        results = await gather(
            *(
                run_node(
                    CLIENT, "idle", server.url, {"client": "v3", "idleMs": 2000, "transports": t}
                )
                for t in (["polling"], ["websocket"])
            )
        )
        for result in results:
            self.assertRan(result)
            names = result.names()
            self.assertNotIn("close", names[: names.index("idle-done")], result.describe())
            # v3: the client pings every pingInterval and counts the server's pongs (at least
            # one: a count tied to real time would be flaky on a loaded machine).
            self.assertGreaterEqual(result.first("idle-done")["pongs"], 1, result.describe())
            self.assertEqual(self.echoes(result), typed(["still-here"]))
            await self.assertServerSaw(
                server, result, protocol=3, messages=["still-here"], close_reason="transport close"
            )

    async def test_silent_client_dropped(self) -> None:
        """A raw v3 client that never pings is not pinged by the server and is dropped after
        pingInterval + pingTimeout.
        """
        interval, timeout = 0.4, 0.2
        server = await self.start(allow_eio3=True, ping_interval=interval, ping_timeout=timeout)
        results = await gather(
            run_node(CLIENT, "silent", server.url, {"transport": "websocket", "eio": 3}),
            run_node(CLIENT, "silent", server.url, {"transport": "polling", "eio": 3}),
        )
        due_ms = round((interval + timeout) * 1000)
        for result in results:
            self.assertRan(result)
            close = result.first("close")
            # No lower bound on the client's clock (see the v4 test above); the timing itself
            # is pinned by the session's Clock-driven tests.
            self.assertEqual(close["pings"], 0, result.describe())
            self.assertLessEqual(close["elapsed"], due_ms + 350, result.describe())
            await self.assertServerSaw(
                server, result, protocol=3, messages=[], close_reason="ping timeout"
            )

    async def test_refused_without_allow_eio3(self) -> None:
        """With allow_eio3=False a v3 client (polling, WebSocket) fails with a transport error and
        the handshake answers 400, code 5.
        """
        server = await self.start(allow_eio3=False)
        results = await gather(
            run_node(CLIENT, "refused", server.url, {"client": "v3", "transports": ["polling"]}),
            run_node(CLIENT, "refused", server.url, {"client": "v3", "transports": ["websocket"]}),
        )
        for result in results:
            self.assertRan(result)
            http = result.first("http")
            self.assertEqual(http["status"], 400, result.describe())
            self.assertIsInstance(http["body"], dict, result.describe())
            self.assertEqual(http["body"]["code"], 5, result.describe())
            self.assertNotIn("open", result.names(), result.describe())
            result.first("error")
            self.assertEqual(result.first("close")["reason"], "transport error")
        self.assertEqual(server.record.sessions, {})


class PythonEngineIOClientTests(InteropTestCase):
    """python-engineio's synchronous client (Engine.IO v4)."""

    async def _echo(self, scenario: str) -> tuple[EchoServer, ProcessResult]:
        server = await self.start()
        result = await run_python(PY_CLIENT, scenario, server.url, {"messages": MESSAGES})
        self.assertRan(result)
        # python-engineio's synchronous client runs each message handler in a thread of its
        # own, so the order it reports is not the order of the wire: compare the echoes as a
        # multiset here (the server's order is checked below, and the other peers' in order).
        self.assertEqual(Counter(self.echoes(result)), Counter(typed(WIRE)), result.describe())
        self.assertEqual(result.first("close")["reason"], "client disconnect")
        await self.assertServerSaw(
            server, result, protocol=4, messages=WIRE, close_reason="transport close"
        )
        return server, result

    async def test_polling_echo(self) -> None:
        """python-engineio on polling only gets its text and binary messages echoed."""
        _, result = await self._echo("polling")
        self.assertEqual(result.first("open")["transport"], "polling")
        self.assertEqual({e["transport"] for e in result.named("message")}, {"polling"})

    async def test_websocket_echo(self) -> None:
        """python-engineio on WebSocket only gets its text and binary messages echoed."""
        _, result = await self._echo("websocket")
        self.assertEqual(result.first("open")["transport"], "websocket")
        self.assertEqual({e["transport"] for e in result.named("message")}, {"websocket"})

    async def test_upgrade_echo(self) -> None:
        """python-engineio connects on polling, upgrades to WebSocket, and gets its messages echoed
        there.
        """
        _, result = await self._echo("upgrade")
        self.assertEqual(result.first("open")["transport"], "polling")
        self.assertEqual(result.first("upgrade")["transport"], "websocket")
        self.assertEqual({e["transport"] for e in result.named("message")}, {"websocket"})

    async def test_server_close(self) -> None:
        """session.close() ends python-engineio's session on polling and on WebSocket after the
        echo.
        """
        server = await self.start()
        results = await gather(
            run_python(PY_CLIENT, "server-close", server.url, {"transports": ["polling"]}),
            run_python(PY_CLIENT, "server-close", server.url, {"transports": ["websocket"]}),
        )
        for result in results:
            self.assertRan(result)
            self.assertEqual(result.names(), ["open", "message", "close"], result.describe())
            self.assertEqual(self.echoes(result), typed(["close-me"]))
            await self.assertServerSaw(
                server, result, protocol=4, messages=["close-me"], close_reason="forced close"
            )
