"""The WebSocket opening handshake of a request twisted.web has parsed already: checked once,
answered with one write, and the connection handed to Autobahn's protocol in the open state.

Autobahn's ``WebSocketResource`` takes a connection over by writing the request twisted.web
parsed back into bytes and feeding them to a new protocol, which parses them again
(``processHandshake``), asks ``onConnect`` through a Deferred, and writes its ``101`` through
Twisted's buffered write: about a third of the server's work for a connect.  Here the request
is read once, from twisted.web's parsed headers, with Autobahn's own rules; when it passes
every one of them, the ``101`` Autobahn would have written is written through the
connection's direct write path (:mod:`~txsio.engineio._writepath`; with the open packet, one
``send()``), and the protocol is moved to the open state as Autobahn's ``succeedHandshake``
moves it.

Only requests Autobahn would accept as they are take this path: a ``GET`` whose target is a
plain path and query, one ``Host`` (a valid port, when it names one), ``Upgrade: websocket``,
``Connection: upgrade``, ``Sec-WebSocket-Version: 13``, a well-formed ``Sec-WebSocket-Key``,
an ``Origin`` Autobahn's origin rules let through, no ``Sec-WebSocket-Protocol`` (Engine.IO
speaks none), header names and values Autobahn's strict parser accepts, and a factory with no
option that changes the handshake (``maxConnections``, ``externalPort``,
``trustXForwardedFor``, auto-ping, timing).  :func:`read_opening` returns ``None`` for
anything else, and the request goes to Autobahn's resource as before, which answers it,
refusals included, exactly as it always has.  ``permessage-deflate`` offers are negotiated
here as Autobahn negotiates them (its offer parser, the factory's accept function, its
extension objects), and a bad offer fails the handshake as Autobahn fails it.

Everything here that is Autobahn's beyond its public API is listed in
:data:`AUTOBAHN_INTERNALS`; a test checks each on a stock Autobahn connection, and compares
the answer of this path with Autobahn's own for the same requests.

Called by :class:`~txsio.engineio.websocket.EngineWebSocketFactory`: :func:`read_opening`,
then :func:`attach` and :meth:`OpeningServerProtocol.accept_opening`.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from autobahn.twisted.websocket import WebSocketServerProtocol
from autobahn.websocket import protocol as _autobahn_protocol
from autobahn.websocket.compress import PERMESSAGE_COMPRESSION_EXTENSION
from twisted.protocols.policies import ProtocolWrapper

if TYPE_CHECKING:
    from autobahn.twisted.websocket import WebSocketServerFactory
    from twisted.web.server import Request

__all__ = ["AUTOBAHN_INTERNALS", "Opening", "OpeningServerProtocol", "attach", "read_opening"]

#: The Autobahn internals this module touches: attributes of a server protocol (and its
#: factory's options, which a connection copies); the module functions ``_url_to_origin`` and
#: ``_is_same_origin`` of ``autobahn.websocket.protocol`` (its origin rules) are checked too.
AUTOBAHN_INTERNALS: tuple[str, ...] = (
    # the factory's options read before the handshake is taken over
    "maxConnections",
    "externalPort",
    "trustXForwardedFor",
    "autoPingInterval",
    "trackTimings",
    "versions",
    "allowNullOrigin",
    "allowedOriginsPatterns",
    "isSecure",
    "port",
    "server",
    "headers",
    # the protocol's state, set as succeedHandshake sets it
    "state",
    "STATE_OPEN",
    "websocket_version",
    "websocket_extensions_in_use",
    "_perMessageCompress",
    "perMessageCompressionAccept",
    "_parseExtensionsHeader",
    "failHandshake",
    "openHandshakeTimeoutCall",
    "inside_message",
    "current_frame",
    "trafficStats",
    "is_open",
    "_onOpen",
)

# Autobahn's origin rules (untyped).
_url_to_origin: Any = _autobahn_protocol._url_to_origin
_is_same_origin: Any = _autobahn_protocol._is_same_origin
#: Autobahn's permessage-compress extensions, by name: each its offer and extension classes
_EXTENSIONS: dict[str, Any] = PERMESSAGE_COMPRESSION_EXTENSION

#: RFC 6455, section 1.3
_WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#: Autobahn's rules for the request it re-parses (``parseHttpHeader``): a token as the name,
#: no control character but HTAB in a value, none at all in the request line.
_FIELD_NAME = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE_INVALID = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_TARGET_INVALID = re.compile(rb"[\x00-\x20\x7f-\xff]")
#: 16 bytes in base64, as Autobahn checks it
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")


@dataclass(frozen=True, slots=True)
class Opening:
    """A WebSocket opening handshake that Autobahn would accept as it is.

    :ivar key: the ``Sec-WebSocket-Key``.
    :ivar extensions: the ``Sec-WebSocket-Extensions`` offered, if any.
    """

    key: str
    extensions: str | None


def _has_token(value: str, token: str) -> bool:
    """Whether the comma-separated ``value`` holds ``token`` (case-insensitive), as
    Autobahn reads ``Upgrade`` and ``Connection``."""
    lowered = value.lower()
    if lowered == token:
        return True  # the usual value, alone
    return token in lowered and any(part.strip() == token for part in lowered.split(","))


def read_opening(request: Request, factory: WebSocketServerFactory) -> Opening | None:
    """The opening handshake ``request`` carries, when Autobahn would accept it as it is (see
    the module docstring); ``None`` for any other request, which Autobahn then reads (and
    refuses, or accepts) itself."""
    if request.method != b"GET":
        return None
    target = request.uri
    # A path and query only: no scheme, authority or fragment for Autobahn's URL parser to
    # find, nothing its request-line check or split would stop at.
    if (target[:1] != b"/" or target[:2] == b"//" or b"#" in target
            or _TARGET_INVALID.search(target)):
        return None
    if (factory.maxConnections > 0 or factory.externalPort or factory.trustXForwardedFor
            or factory.autoPingInterval or factory.trackTimings or 13 not in factory.versions):
        return None
    # One value per name, joined as Autobahn's resource joins them when it replays them.
    headers: dict[bytes, str] = {}
    for name, values in request.requestHeaders.getAllRawHeaders():
        value = values[0] if len(values) == 1 else b",".join(values)
        if not _FIELD_NAME.fullmatch(name) or _FIELD_VALUE_INVALID.search(value):
            return None
        headers[name.lower()] = value.decode("latin-1")
    host = headers.get(b"host")
    if host is None:
        return None
    host = host.strip()
    if ":" in host and not host.endswith("]"):
        try:
            int(host.rsplit(":", 1)[1].strip())
        except ValueError:
            return None
    upgrade = headers.get(b"upgrade")
    connection = headers.get(b"connection")
    version = headers.get(b"sec-websocket-version")
    if (upgrade is None or not _has_token(upgrade, "websocket") or connection is None
            or not _has_token(connection, "upgrade") or version is None
            or b"sec-websocket-protocol" in headers):
        return None
    try:
        if int(version) != 13:
            return None
    except ValueError:
        return None
    origin = headers.get(b"origin")
    if origin is not None:
        try:
            origin_tuple = _url_to_origin(origin.strip())
        except ValueError:
            return None
        if not (origin_tuple == "null" and factory.allowNullOrigin) and not _is_same_origin(
                origin_tuple, "https" if factory.isSecure else "http",
                factory.externalPort or factory.port, factory.allowedOriginsPatterns):
            return None
    key = headers.get(b"sec-websocket-key")
    if key is None:
        return None
    key = key.strip()
    if not _KEY.fullmatch(key):
        return None
    return Opening(key, headers.get(b"sec-websocket-extensions"))


def attach(protocol: Any, request: Request) -> Any:
    """Hand ``request``'s connection to ``protocol`` (as Autobahn's ``WebSocketResource``
    does: the HTTP channel lets go of the transport, which feeds the protocol from now on);
    returns the transport."""
    channel = request.channel
    transport: Any = channel.transport
    channel.transport = None
    if isinstance(transport, ProtocolWrapper):
        transport.wrappedProtocol = protocol  # TLS, as a wrapping protocol
    elif isinstance(transport.protocol, ProtocolWrapper):
        transport.protocol.wrappedProtocol = protocol  # TLS over a TCP transport
    else:
        transport.protocol = protocol
    protocol.makeConnection(transport)
    # twisted.web paused the transport while it handled the request; no request follows.
    producer = getattr(transport, "_networkProducer", None)
    if producer is not None:
        producer.resumeProducing()
    elif hasattr(transport, "resumeProducing"):
        transport.resumeProducing()
    return transport


class OpeningServerProtocol(WebSocketServerProtocol):
    """An Autobahn server protocol that can be opened with a handshake checked already."""

    # Autobahn's, untyped (set on the connection or its options class).
    perMessageCompressionAccept: Any
    _parseExtensionsHeader: Any
    current_frame: Any
    is_open: Any

    def accept_opening(self, opening: Opening, headers: Any) -> bool:
        """Answer ``opening`` with ``101`` and the extra ``headers`` (a mapping, or ``None``),
        as Autobahn's ``succeedHandshake`` answers it, then open the connection.

        :returns: whether it opened (not when the extension offers are bad: the handshake
            fails as Autobahn fails it).
        """
        self.websocket_version = 13
        in_use: list[Any] = []
        agreed = None
        if opening.extensions is not None:
            offers = []
            for extension, params in self._parseExtensionsHeader(opening.extensions):
                pmce = _EXTENSIONS.get(extension)
                if pmce is None:
                    continue  # an extension Autobahn does not know: not answered
                try:
                    offers.append(pmce["Offer"].parse(params))
                except Exception as e:
                    self.failHandshake(str(e))
                    return False
            if offers:
                accept = self.perMessageCompressionAccept(offers)
                if accept is not None:
                    pmce = _EXTENSIONS[accept.EXTENSION_NAME]
                    self._perMessageCompress = pmce["PMCE"].create_from_offer_accept(
                        True, accept)
                    in_use.append(self._perMessageCompress)
                    agreed = accept.get_extension_string()
        self.websocket_extensions_in_use = in_use
        factory = self.factory
        lines = ["HTTP/1.1 101 Switching Protocols"]
        if factory.server:
            lines.append(f"Server: {factory.server}")
        lines += ("Upgrade: WebSocket", "Connection: Upgrade")
        for source in (factory.headers, headers or {}):
            for name, value in source.items():
                if isinstance(value, str):
                    lines.append(f"{name}: {value}")
                else:
                    try:
                        values = iter(value)
                    except TypeError:
                        values = iter((value,))
                    lines.extend(f"{name}: {v}" for v in values)
        digest = hashlib.sha1(opening.key.encode("utf8") + _WS_GUID).digest()
        lines.append(f"Sec-WebSocket-Accept: {base64.b64encode(digest).decode()}")
        if agreed is not None:
            lines.append(f"Sec-WebSocket-Extensions: {agreed}")
        lines.append("\r\n")
        response = "\r\n".join(lines).encode("utf8")
        direct = getattr(self, "_direct", None)  # the frame writer's, on plain TCP
        if direct is not None:
            # Held: the 101 and what opening writes (the open packet) leave in one send().
            direct.hold()
        try:
            if direct is not None:
                direct.write(response)
            elif self.transport is not None:
                self.transport.write(response)
            self.trafficStats.preopenOutgoingOctetsWireLevel += len(response)
            self.state = self.STATE_OPEN
            timer, self.openHandshakeTimeoutCall = self.openHandshakeTimeoutCall, None
            if timer is not None:
                timer.cancel()
            self.inside_message = False
            self.current_frame = None
            self._onOpen()
            self.is_open.callback(None)  # txaio's resolve, on Twisted
        finally:
            if direct is not None:
                direct.release()
        return True
