"""The Engine.IO layer's counters (``engine.stats``): packets and bytes per transport, counted
by real polling and WebSocket traffic through the in-memory resource, and abandoned upgrades."""

from __future__ import annotations

import json

from txsio._stats import TransportStats
from txsio.adapter import EncodedPacket
from txsio.engineio import EngineSession
from txsio.engineio.session import EngineOptions
from txsio.testing import MemoryTransport

from .test_resource import ResourceTestCase, WebSocketClient, _client_frame


def _counts(stats: TransportStats) -> tuple[int, int, int, int]:
    return stats.packets_in, stats.bytes_in, stats.packets_out, stats.bytes_out


class PollingCountTests(ResourceTestCase):
    """Polling counts the packets and bytes of its POST bodies and of its GETs' answers."""

    def test_exchange(self) -> None:
        """A handshake, a POST of two packets and the GET that echoes them are counted; the
        WebSocket counters stay at zero."""
        stats = self.server.stats
        opened = self.get()
        self.assertEqual(_counts(stats.polling), (0, 0, 1, len(opened.body)))
        sid = json.loads(opened.text[1:])["sid"]
        body = "4héllo\x1e4ab".encode()
        self.assertEqual(self.post(sid, body).text, "ok")
        self.assertEqual(_counts(stats.polling)[:2], (2, len(body)))
        echoed = self.get(sid)
        self.assertEqual(echoed.body, body)
        self.assertEqual(_counts(stats.polling),
                         (2, len(body), 3, len(opened.body) + len(body)))
        self.assertEqual(_counts(stats.websocket), (0, 0, 0, 0))

    def test_malformed_post_not_counted(self) -> None:
        """A POST body that does not parse carries no packets but those before its bad record,
        which are delivered as Node's engine.io 6 delivers them (the reference; before, none
        were)."""
        sid, _ = self.handshake()
        self.post(sid, "x\x1e4a")
        self.assertEqual(self.server.stats.polling.packets_in, 0)
        sid, _ = self.handshake()
        self.post(sid, "4a\x1e")
        self.assertEqual(self.server.stats.polling.packets_in, 1)


class WebSocketCountTests(ResourceTestCase):
    """A WebSocket counts each message it reads (fast path or Autobahn's) and writes."""

    def test_exchange(self) -> None:
        """The open packet, a text and a binary message echoed: packets and payload bytes
        (a text's UTF-8 bytes) both ways; polling's counters stay at zero."""
        stats = self.server.stats.websocket
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        opened = client.frames()
        self.assertEqual(_counts(stats), (0, 0, 1, len(opened[0][1])))
        client.send_text("4héllo")
        client.send_binary(b"\x01\x02\x03")
        echoed = client.frames()
        self.assertEqual(echoed, [(1, "4héllo".encode()), (2, b"\x01\x02\x03")])
        self.assertEqual(_counts(stats), (2, 7 + 3, 3, len(opened[0][1]) + 7 + 3))
        self.assertEqual(_counts(self.server.stats.polling), (0, 0, 0, 0))

    def test_autobahn_path(self) -> None:
        """A fragmented message goes through Autobahn, and is counted once; so is a frame
        cut by the read (the fast path completes it)."""
        stats = self.server.stats.websocket
        client = WebSocketClient(self.server, "EIO=4&transport=websocket")
        first = bytearray(_client_frame(b"4frag"))
        first[0] = 0x01  # not FIN, text
        last = bytearray(_client_frame(b"ment", 0))
        last[0] = 0x80  # FIN, continuation
        client.protocol.dataReceived(bytes(first + last))
        self.assertEqual(client.texts()[1:], ["4fragment"])
        self.assertEqual((stats.packets_in, stats.bytes_in), (1, 9))
        frame = _client_frame(b"4cut")
        client.protocol.dataReceived(frame[:3])
        client.protocol.dataReceived(frame[3:])
        self.assertEqual(client.texts(), ["4cut"])
        self.assertEqual((stats.packets_in, stats.bytes_in), (2, 13))

    def test_prepared_frame(self) -> None:
        """A broadcast's frame, prepared once, is counted for each connection it is written
        to, with its payload's bytes."""
        stats = self.server.stats.websocket
        clients = [WebSocketClient(self.server, "EIO=4&transport=websocket")
                   for _ in range(2)]
        before = stats.packets_out, stats.bytes_out
        encoded = EncodedPacket(['2["hi"]'])
        for session in self.sessions:
            session.send_encoded(encoded.engine_packets, encoded)
        for client in clients:
            self.assertEqual(client.texts()[-1], '42["hi"]')
        self.assertEqual((stats.packets_out - before[0], stats.bytes_out - before[1]),
                         (2, 2 * len('42["hi"]')))


class UpgradeFailureTests(ResourceTestCase):
    """The engine counts the upgrades its sessions abandon."""

    def test_probe_gone(self) -> None:
        """A probe connection that goes away before the upgrade is counted once, its
        traffic as WebSocket's."""
        sid, _ = self.handshake()
        client = WebSocketClient(self.server, f"EIO=4&transport=websocket&sid={sid}")
        client.send_text("2probe")
        self.assertEqual(client.texts(), ["3probe"])
        client.lose()
        self.assertFalse(self.server.sessions[sid].upgrading)
        self.assertEqual(self.server.stats.upgrade_failures, 1)
        self.assertEqual(self.server.stats.upgrades, 0)
        self.assertEqual(self.server.stats.websocket.packets_in, 1)

    def test_timeout(self) -> None:
        """A probe that does not complete within upgrade_timeout is counted."""
        sid, _ = self.handshake()
        session = self.server.sessions[sid]
        session.begin_upgrade(MemoryTransport("websocket"))
        self.clock.advance(self.server.options.upgrade_timeout)
        self.assertFalse(session.upgrading)
        self.assertEqual(self.server.stats.upgrade_failures, 1)

    def test_completed_not_counted(self) -> None:
        """A completed upgrade is no failure, and neither is a later transport error."""
        sid, _ = self.handshake()
        client = WebSocketClient(self.server, f"EIO=4&transport=websocket&sid={sid}")
        client.send_text("2probe")
        client.send_text("5")
        self.assertTrue(self.server.sessions[sid].upgraded)
        client.lose()
        self.assertEqual(self.closed, {sid: "transport close"})
        self.assertEqual((self.server.stats.upgrades, self.server.stats.upgrade_failures),
                         (1, 0))

    def test_session_without_stats(self) -> None:
        """A session made without an engine's counters abandons an upgrade all the same."""
        session = EngineSession("s", EngineOptions(), 4, MemoryTransport("polling"),
                                clock=self.clock)
        session.begin_upgrade(MemoryTransport("websocket"))
        session.transport_error(MemoryTransport(), "unrelated")
        self.clock.advance(EngineOptions().upgrade_timeout)
        self.assertFalse(session.upgrading)
