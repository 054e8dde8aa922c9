"""The client's options from engine.io-client and socket.io-client: ``upgrade``,
``remember_upgrade``, ``try_all_transports``, ``auto_connect``, ``disconnected``, and the
cookie jar on the WebSocket handshake — on fake transports (and a cookie against Node's
server, in ``tests/test_node_options.py``)."""

from __future__ import annotations

from http.cookiejar import Cookie, CookieJar
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

import txsio
from txsio.engineio._compression import marked_uncompressed, uncompressed
from txsio.engineio.client.url import EngineURL, cookie_header, store_cookies
from txsio.engineio.client.websocket import WebSocketTransport
from txsio.engineio.packet import Packet as EPacket
from txsio.engineio.packet import PacketType as EType
from txsio.protocol import Packet as SPacket
from txsio.protocol import PacketType as SType

from .sio_memory import MemoryClient
from .test_client_unit import URL, ClientCase, EngineCase, handshake


class EngineOptionTests(EngineCase):
    """``upgrade`` and ``try_all_transports`` on the engine."""

    def test_upgrade_off(self) -> None:
        """With ``upgrade=False`` no probe is made though the server offers WebSocket."""
        engine, polling = self.opened(upgrades=["websocket"], upgrade=False)
        self.assertEqual([t.name for t in self.transports.made], ["polling"])
        self.assertIs(engine.transport, polling)

    def test_try_all_transports(self) -> None:
        """A first transport that fails to open gives way to the next (no error, no
        close); without the option, the failure closes the engine."""
        engine = self.engine(transports=["websocket", "polling"], try_all_transports=True)
        engine.open()
        first = self.transports.last
        first.fail("websocket error")
        self.assertTrue(first.discarded)
        second = self.transports.last
        self.assertEqual(second.name, "polling")
        handshake(second)
        self.assertEqual(self.names(), ["open"])
        # The last transport failing fails the engine.
        self.events.clear()
        engine = self.engine(transports=["websocket", "polling"], try_all_transports=True)
        engine.open()
        self.transports.last.fail("websocket error")
        self.transports.last.fail("xhr poll error")
        self.assertEqual(self.names(), ["error", "close"])

    def test_without_try_all(self) -> None:
        """By default the first transport's failure fails the engine."""
        engine = self.engine(transports=["websocket", "polling"])
        engine.open()
        self.transports.last.fail("websocket error")
        self.assertEqual(self.names(), ["error", "close"])
        self.assertEqual(len(self.transports.made), 1)


class CookieTests(EngineCase):
    """The engine's cookie jar goes with the WebSocket handshake."""

    def test_cookie_header(self) -> None:
        """A cookie of the server's domain and path is in the header for its WebSocket URL;
        one of another domain is not; an empty jar gives none."""
        jar = CookieJar()
        self.assertIsNone(cookie_header(jar, "http://127.0.0.1:9/socket.io/"))
        for domain, name in (("127.0.0.1", "io"), ("other.example", "x")):
            jar.set_cookie(Cookie(0, name, "v-" + name, None, False, domain, False, False,
                                  "/", True, False, None, False, None, None, {}))
        self.assertEqual(cookie_header(jar, "http://127.0.0.1:9/socket.io/?EIO=4"), "io=v-io")

    def test_store_cookies(self) -> None:
        """Each Set-Cookie value is stored whole (an Expires date holds a comma); one for
        another domain is refused by the jar's policy."""
        jar = CookieJar()
        url = "http://127.0.0.1:9/socket.io/?EIO=4&transport=websocket"
        store_cookies(jar, url, ["io=abc; Path=/; HttpOnly; SameSite=Lax",
                                 "lb=n1; Expires=Wed, 21 Oct 2099 07:28:00 GMT; Path=/",
                                 "x=1; Domain=other.example; Path=/"])
        self.assertEqual(sorted((c.name, c.value) for c in jar), [("io", "abc"), ("lb", "n1")])
        self.assertEqual(cookie_header(jar, url), "io=abc; lb=n1")

    def test_websocket_response_cookies(self) -> None:
        """The cookies the WebSocket handshake's response sets go into the transport's jar
        (as a browser keeps them; engine.io-client in Node keeps only polling's)."""
        jar = CookieJar()
        transport = WebSocketTransport(
            EngineURL.parse("http://127.0.0.1:9"), {"EIO": "4", "transport": "websocket"},
            clock=Clock(), connector=lambda factory, url: Deferred(), cookie_jar=jar)
        transport._ws_response(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                               b"Set-Cookie: io=s1; Path=/\r\nset-cookie: lb=n2; Path=/\r\n\r\n")
        self.assertEqual(sorted((c.name, c.value) for c in jar), [("io", "s1"), ("lb", "n2")])


class ClientOptionTests(ClientCase):
    """``remember_upgrade``, ``auto_connect`` and ``disconnected`` on the client."""

    def upgraded(self, client: Any) -> None:
        """Connect ``client`` over polling, join "/", and upgrade to WebSocket."""
        d = client.connect(URL)
        polling = self.transports.last
        handshake(polling, upgrades=["websocket"])
        self.accept(transport=polling)
        self.successResultOf(d)
        probe = self.transports.last
        probe.accept()
        probe.deliver(EPacket(EType.PONG, "probe"))
        self.assertEqual(client.transport, "websocket")

    def test_remember_upgrade(self) -> None:
        """After an upgrade, the next connection starts on WebSocket; a failed WebSocket
        makes the one after start on polling again; off by default."""
        client = self.client(remember_upgrade=True, reconnection_delay=1,
                             reconnection_delay_max=1)
        self.upgraded(client)
        self.transports.last.server_close()
        self.clock.advance(1)
        self.assertEqual(self.transports.last.name, "websocket")
        self.transports.last.fail("websocket error")
        self.clock.advance(1)
        self.assertEqual(self.transports.last.name, "polling")
        client.disconnect()

        client = self.client(reconnection_delay=1)
        self.upgraded(client)
        self.transports.last.server_close()
        self.clock.advance(1)
        self.assertEqual(self.transports.last.name, "polling")
        client.disconnect()

    def test_auto_connect_off(self) -> None:
        """With ``auto_connect=False`` a socket made while connected waits for its own
        ``connect()``; by default it joins at once."""
        client = self.connected(auto_connect=False)
        chat = client.socket("/chat")
        self.assertEqual(self.taken(), [])
        self.assertTrue(chat.disconnected)
        d = chat.connect()
        self.assertEqual([(p.type, p.nsp) for p in self.taken()], [(SType.CONNECT, "/chat")])
        self.accept("/chat", "c1")
        self.successResultOf(d)
        self.assertFalse(chat.disconnected)

        client = self.connected()
        client.socket("/chat")
        self.assertEqual([(p.type, p.nsp) for p in self.taken()], [(SType.CONNECT, "/chat")])

    def test_disconnected(self) -> None:
        """``disconnected`` is the opposite of ``connected``, on the client and a socket."""
        client = self.client()
        self.assertTrue(client.disconnected)
        client = self.connected(client)
        self.assertFalse(client.disconnected)
        self.reply(SPacket(SType.DISCONNECT, "/"))
        self.assertTrue(client.disconnected)


class ServerSocketTests(SynchronousTestCase):
    """Server sockets have ``disconnected`` too, as Node's."""

    def test_disconnected(self) -> None:
        """False while connected, true once the socket left."""
        io = txsio.Server(clock=Clock())
        client = MemoryClient(io)
        sid = client.connect_ok("/")["sid"]
        socket = io.of("/").sockets[sid]
        self.assertFalse(socket.disconnected)
        socket.disconnect()
        self.assertTrue(socket.disconnected)


class CompressTests(ClientCase):
    """``socket.compress(False)``, socket.io-client's flag, reaches the transport."""

    def test_flag_marks_messages(self) -> None:
        """The messages of an emit with ``compress(False)`` (its attachments too, and one
        buffered before the connection) are marked uncompressed; others are not."""
        client = self.client()
        client.compress(False).emit("early")
        self.connected(client)
        transport = self.transports.last
        client.compress(False).emit("a", b"\x01")
        client.emit("b")
        client.compress(True).timeout(5).emit("c")
        sent = [p.data for p in transport.sent if p.type is EType.MESSAGE]
        self.assertEqual([marked_uncompressed(d) for d in sent[-5:]],
                         [True, True, True, False, False])
        self.assertEqual(sent[-5], '2["early"]')
        self.assertEqual([p.data[0] for p in self.taken(transport)][-4:], ["early", "a", "b", "c"])

    def test_websocket_does_not_deflate_them(self) -> None:
        """The WebSocket transport sends a marked message with Autobahn's ``doNotCompress``."""
        calls: list[tuple[bytes, bool, bool]] = []

        class Protocol:
            def sendMessage(self, payload: bytes, isBinary: bool = False,
                            doNotCompress: bool = False) -> None:
                calls.append((payload, isBinary, doNotCompress))

        transport = WebSocketTransport(
            EngineURL.parse("http://127.0.0.1:9"), {"EIO": "4", "transport": "websocket"},
            clock=Clock(), connector=lambda factory, url: Deferred())
        transport._protocol = Protocol()  # type: ignore[assignment]
        transport._write([EPacket(EType.MESSAGE, uncompressed("x")), EPacket(EType.MESSAGE, "y"),
                          EPacket(EType.MESSAGE, uncompressed(b"\x01"))])
        self.assertEqual(calls, [(b"4x", False, True), (b"4y", False, False),
                                 (b"\x01", True, True)])
