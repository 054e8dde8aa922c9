"""Whose word a server takes for the client's address: :class:`TrustedProxies`."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from txsio.engineio.handshake import TrustedProxies

PROXIES = TrustedProxies(["10.0.0.0/8", "::1", "192.0.2.7"])


def client(peer: str, **headers: str) -> str:
    """The client address the proxies above give a request from *peer* with *headers*."""
    return PROXIES.client_address(peer, {k.replace("_", "-"): v for k, v in headers.items()})


class TrustedProxiesTests(SynchronousTestCase):
    """The chain is read from the right, through trusted proxies only."""

    def test_untrusted_peer_keeps_its_address(self) -> None:
        """A peer that is no trusted proxy cannot choose the address it is logged under."""
        self.assertEqual(client("203.0.113.5", x_forwarded_for="1.2.3.4"), "203.0.113.5")
        self.assertEqual(client("203.0.113.5", forwarded="for=1.2.3.4"), "203.0.113.5")

    def test_x_forwarded_for(self) -> None:
        """Through trusted proxies, the first untrusted address from the right is the
        client's; what the client itself put in front does not count."""
        self.assertEqual(client("10.0.0.1", x_forwarded_for="1.2.3.4"), "1.2.3.4")
        self.assertEqual(client("10.0.0.1", x_forwarded_for="6.6.6.6, 1.2.3.4, 10.1.1.1"),
                         "1.2.3.4")
        self.assertEqual(client("10.0.0.1", x_forwarded_for="10.2.2.2, 10.1.1.1"),
                         "10.2.2.2")  # every hop trusted: the farthest one
        self.assertEqual(client("10.0.0.1"), "10.0.0.1")  # no header
        self.assertEqual(client("10.0.0.1", x_forwarded_for="not-an-ip, 1.2.3.4"), "1.2.3.4")
        self.assertEqual(client("10.0.0.1", x_forwarded_for="1.2.3.4, garbage"), "10.0.0.1")

    def test_forwarded(self) -> None:
        """RFC 7239's ``Forwarded`` wins over ``X-Forwarded-For``: quoted IPv6 with a port,
        an IPv4 address with a port, several elements; "unknown" stops the walk."""
        self.assertEqual(client("::1", forwarded='for="[2001:db8::17]:4711";proto=https',
                                x_forwarded_for="1.2.3.4"), "2001:db8::17")
        self.assertEqual(client("10.0.0.1", forwarded="for=6.6.6.6, for=198.51.100.3:80"),
                         "198.51.100.3")
        self.assertEqual(client("10.0.0.1", forwarded="for=unknown"), "10.0.0.1")

    def test_mapped_and_single_addresses(self) -> None:
        """An IPv4-mapped IPv6 peer is its IPv4 address; a single address is a /32."""
        self.assertEqual(client("::ffff:192.0.2.7", x_forwarded_for="1.2.3.4"), "1.2.3.4")
        self.assertEqual(client("192.0.2.8", x_forwarded_for="1.2.3.4"), "192.0.2.8")

    def test_bad_network(self) -> None:
        """A value that is no address or network is refused when configured."""
        error = self.assertRaises(ValueError, TrustedProxies, ["10.0.0.0/8", "proxy.local"])
        self.assertIn("proxy.local", str(error))
