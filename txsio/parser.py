"""Parsers: how Socket.IO packets become Engine.IO messages and back (pure: stdlib and msgpack).

A server (``txsio.Server(parser=...)``) or a client (``txsio.Client(parser=...)``) chooses its
parser once; every packet it sends or reads goes through it: emits, broadcasts (encoded once
for all their recipients), acknowledgements, CONNECT, CONNECT_ERROR and DISCONNECT.  Both ends
of a connection must use the same parser, as with Node's ``parser`` option.

- ``"default"`` (:class:`DefaultParser`): Socket.IO's text format, binary values sent as
  attachments in their own messages (:mod:`txsio.protocol`); what socket.io-client uses unless
  told otherwise.
- ``"msgpack"`` (:class:`MsgpackParser`): the format of npm ``socket.io-msgpack-parser`` 3.x,
  each packet one binary message.
- any object with the :class:`Parser` interface: an ``encode`` method and a ``decoder``
  factory whose decoders have ``feed`` and ``reset`` (:doc:`/parsers` has an example).

Who calls what: the server's :class:`~txsio.server.Connection` makes one decoder per client
(:meth:`Parser.decoder`) and encodes what it writes with :meth:`Parser.encode`; the adapter
encodes each broadcast once (:meth:`txsio.adapter.EncodedPacket.of`); the client's manager and
sockets do the same on their side, and :class:`txsio.testing.TestClient` uses its server's
parser.  A cluster adapter sends packets to the other nodes in its own format, whatever the
parser: each node encodes them for its clients with its own.
"""

from __future__ import annotations

from typing import Protocol

from ._msgpack_parser import MsgpackParser
from .protocol import DEFAULT_MAX_ATTACHMENTS, Decoder, Packet, encode

__all__ = [
    "DefaultParser",
    "MsgpackParser",
    "PacketDecoder",
    "Parser",
    "resolve_parser",
]


class PacketDecoder(Protocol):
    """The decoder of one connection: fed the Engine.IO messages the peer sent, in order.

    :class:`txsio.protocol.Decoder` is one.
    """

    def feed(self, data: str | bytes) -> Packet | None:
        """Decode one message: a text message (``str``) or a binary one (``bytes``).

        :returns: the packet it completes, or ``None`` when more messages are needed (the
            default format's attachments).
        :raises txsio.protocol.SocketIOParseError: if the peer broke the format (the
            connection is then closed); the only exception raised on peer data.
        """

    def reset(self) -> None:
        """Drop a packet still waiting for more messages, if any (the connection closed)."""


class Parser(Protocol):
    """What ``txsio.Server(parser=...)`` and ``txsio.Client(parser=...)`` take.

    One parser serves every connection of its server or client: :meth:`encode` must not keep
    state between calls, and each connection gets its own decoder from :meth:`decoder`.
    """

    def encode(self, packet: Packet, *, protocol: int = 5) -> list[str | bytes]:
        """Encode ``packet`` as the Engine.IO messages to send, in order.

        :param packet: the packet (EVENT and ACK data may hold ``bytes``).
        :param protocol: the peer's Socket.IO protocol: 5, or 4 for socket.io-client 2.x
            (see :func:`txsio.protocol.payload_for`).
        :returns: each message: ``str`` sent as text, ``bytes`` as binary.
        :raises TypeError: for a value the format cannot carry.
        :raises ValueError: for data it cannot encode (a reference cycle, say).
        """

    def decoder(self, *, protocol: int = 5,
                max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> PacketDecoder:
        """A new decoder for one connection.

        :param protocol: the peer's Socket.IO protocol, 5 or 4.
        :param max_attachments: the most binary attachments one packet may announce, for a
            format that sends them apart (the server's ``max_attachments``).
        """


class DefaultParser:
    """Socket.IO's own format (:mod:`txsio.protocol`): a packet is a text message, then one
    binary message per attachment."""

    #: :func:`txsio.protocol.encode` itself: the default costs no call of its own
    encode = staticmethod(encode)

    def decoder(self, *, protocol: int = 5,
                max_attachments: int = DEFAULT_MAX_ATTACHMENTS) -> PacketDecoder:
        """A :class:`txsio.protocol.Decoder` with the default bounds otherwise."""
        return Decoder(protocol=protocol, max_attachments=max_attachments)


#: The parser of servers and clients that choose none.
DEFAULT_PARSER = DefaultParser()


def resolve_parser(parser: str | Parser | None) -> Parser:
    """The parser an option names.

    :param parser: ``"default"`` (or ``None``), ``"msgpack"``, or an object with the
        :class:`Parser` interface.
    :raises ValueError: for another name.
    :raises TypeError: for an object without ``encode`` and ``decoder`` methods.
    """
    if parser is None or parser == "default":
        return DEFAULT_PARSER
    if parser == "msgpack":
        return MsgpackParser()
    if isinstance(parser, str):
        raise ValueError(f"parser must be 'default', 'msgpack' or a Parser, not {parser!r:.40}")
    if not (callable(getattr(parser, "encode", None))
            and callable(getattr(parser, "decoder", None))):
        raise TypeError(f"a parser has encode() and decoder() methods; "
                        f"a {type(parser).__name__!r} has not")
    return parser
