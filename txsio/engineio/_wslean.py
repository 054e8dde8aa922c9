"""What an idle WebSocket connection holds of Autobahn's server protocol: as little as
Autobahn allows.

A stock Autobahn connection keeps, for its whole life, its own copy of each of its factory's
~30 options, the raw bytes and parsed headers of its opening handshake, ~30 state flags at
their initial values, and a ``deque`` for chopped writes: together a ~3.3 KB ``__dict__``
(92 attributes) and ~3 KB of objects hanging from it, about a quarter of an idle txsio
connection's memory.  This module keeps an open, idle connection to the state it needs:

- options: :class:`LeanServerFactory` builds its connections from a subclass of its protocol
  class made for it (:func:`options_class`), which holds the factory's options as class
  attributes, so Autobahn finds them on the class and copies none onto the connection (made
  anew whenever ``setProtocolOptions`` or ``resetProtocolOptions`` changes them);
- initial state: :class:`LeanServerProtocol` declares the value each of Autobahn's state
  attributes has on an open, idle connection (:data:`IDLE_STATE`), and
  :meth:`~LeanServerProtocol.shed` drops the connection's own copy of any attribute equal to
  its class's, and the handshake leftovers (:data:`HANDSHAKE_LEFTOVERS`), then packs what is
  left into a dict sized for it (a dict never shrinks by itself).  Attributes that change
  later are set on the connection again by Autobahn as usual.  The TCP transport's attributes
  are packed the same way (Twisted's, unchanged);
- the queue of chopped and synced writes is a list (:class:`SendQueue`), 56 bytes empty
  where a ``deque`` takes 624 plus its block;
- the events a connection may fire (Autobahn's ``ObservableMixin``: always just
  ``"message"``) are declared once on the class, read-only, instead of a list and a dict per
  connection;
- the incremental UTF-8 validator (~330 bytes with its native state) is made on first use:
  only text messages that Autobahn reads itself need it (the fast path validates by
  decoding), and Autobahn resets it before each one.

Everything here leans on Autobahn internals, listed in :data:`AUTOBAHN_INTERNALS`; a test
opens a stock Autobahn connection and checks each, so an Autobahn upgrade that moves one
fails the suite.

Called by Twisted: :meth:`LeanServerFactory.buildProtocol`,
:meth:`LeanServerProtocol.connectionMade`.
Called by the subclass once its connection is open: :meth:`LeanServerProtocol.shed`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any
from weakref import WeakKeyDictionary

from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
from autobahn.websocket.utf8validator import Utf8Validator

__all__ = [
    "AUTOBAHN_INTERNALS",
    "HANDSHAKE_LEFTOVERS",
    "IDLE_STATE",
    "LeanServerFactory",
    "LeanServerProtocol",
    "SendQueue",
    "options_class",
]

#: Attributes Autobahn's opening handshake sets on a server connection that nothing reads
#: once it is open (Autobahn reads them in ``processHandshake`` and ``succeedHandshake``
#: only; txsio keeps what it needs of the request in its own handshake record).  An open
#: connection reads them as ``None``.
HANDSHAKE_LEFTOVERS: tuple[str, ...] = (
    "http_request_data",
    "http_status_line",
    "http_headers",
    "http_request_uri",
    "http_request_path",
    "http_request_params",
    "http_request_host",
    "websocket_protocols",
    "websocket_origin",
    "websocket_extensions",
    "_wskey",
    "http_response_data",
)

#: Autobahn's per-connection state, with the value each has on an open connection with no
#: compression, no timing, no auto-ping and nothing in progress: set on every connection by
#: Autobahn's ``_connectionMade`` and ``succeedHandshake``.
IDLE_STATE: dict[str, object] = {
    "_perMessageCompress": None,
    "trackedTimings": None,
    "send_state": WebSocketServerProtocol.SEND_STATE_GROUND,
    "data": b"",
    "triggered": False,
    "wasMaxFramePayloadSizeExceeded": False,
    "wasMaxMessagePayloadSizeExceeded": False,
    "closedByMe": False,
    "failedByMe": False,
    "droppedByMe": False,
    "wasClean": False,
    "wasNotCleanReason": None,
    "wasServerConnectionDropTimeout": False,
    "wasOpenHandshakeTimeout": False,
    "wasCloseHandshakeTimeout": False,
    "wasServingFlashSocketPolicyFile": False,
    "localCloseCode": None,
    "localCloseReason": None,
    "remoteCloseCode": None,
    "remoteCloseReason": None,
    "openHandshakeTimeoutCall": None,
    "closeHandshakeTimeoutCall": None,
    "autoPingTimeoutCall": None,
    "autoPingPending": None,
    "autoPingPendingCall": None,
    "autoPingPendingSeq": 0,
    "autoPingPendingSent": None,
    "websocket_protocol_in_use": None,
    "inside_message": False,
    "current_frame": None,
}

#: The Autobahn internals this module touches: class attributes of
#: ``WebSocketServerProtocol`` and attributes of an open connection.
AUTOBAHN_INTERNALS: tuple[str, ...] = (
    "CONFIG_ATTRS",     # the options Autobahn copies from the factory, unless already there
    "send_queue",       # chopped and synced writes: append, popleft, len only
    "utf8validator",    # reset before each text message, then validate
    "set_valid_events", # called with ["message"] by every connection's __init__
    "_valid_events",    # read by ObservableMixin.on/fire: `in`, join
    "_results",         # written by ObservableMixin.fire only (not called: onMessage is ours)
    *HANDSHAKE_LEFTOVERS,
    *IDLE_STATE,
)

# Immutable values compared by equality (others only by identity) when shedding.
_SCALARS = (bool, int, float, str, bytes, type(None))


class SendQueue(list[Any]):
    """Autobahn's queue of chopped and synced writes, as a list: it is almost always empty,
    and a list is small when it is (Autobahn calls ``append``, ``popleft`` and ``len``)."""

    __slots__ = ()

    def popleft(self) -> Any:
        """The oldest write (the queue is short: a handful of chops at most)."""
        return self.pop(0)


_EVENTS = ("message",)


class _MadeOnUse:
    """A class attribute standing for an instance attribute that is made when first read
    (then found on the instance: this descriptor defines no ``__set__``)."""

    def __init__(self, name: str, make: Any) -> None:
        self._name = name
        self._make = make

    def __get__(self, instance: Any, owner: Any = None) -> Any:
        if instance is None:
            return self
        value = self._make()
        instance.__dict__[self._name] = value
        return value


class LeanServerProtocol(WebSocketServerProtocol):
    """An Autobahn server protocol that holds no copy of its factory's options and, once
    open, none of its initial state or handshake (see the module docstring)."""

    utf8validator = _MadeOnUse("utf8validator", Utf8Validator)
    # Autobahn's fire() writes _results; it is only called by the onMessage this protocol's
    # subclasses replace: were it called, the read-only mapping would say so.
    _valid_events: Any = _EVENTS
    _results: Any = MappingProxyType(dict.fromkeys(_EVENTS))

    def set_valid_events(self, valid_events: Any = None) -> None:
        """Autobahn's, sharing the class's list when it is the usual one."""
        if valid_events is None or tuple(valid_events) != _EVENTS:
            super().set_valid_events(valid_events)  # type: ignore[no-untyped-call]

    def connectionMade(self) -> None:
        """Autobahn sets up the connection; its write queue becomes a list."""
        super().connectionMade()
        # Autobahn annotates a deque; it uses append, popleft and len only.
        self.send_queue = SendQueue()  # type: ignore[assignment]

    def shed(self) -> None:
        """Drop what an open connection holds for nothing: attributes equal to their class's
        (options, :data:`IDLE_STATE`) and the handshake leftovers; pack the rest, and the TCP
        transport's attributes."""
        defaults = _class_values(type(self))
        kept: dict[str, Any] = {}
        for name, value in vars(self).items():
            if name in _LEFTOVER_NAMES or name in _MADE_ON_USE:
                continue
            default = defaults.get(name, _MISSING)
            if value is default or (type(value) is type(default) and type(value) in _SCALARS
                                    and value == default):
                continue
            kept[name] = value
        # A new dict sized for what is left (deleting keys would not shrink the old one).
        self.__dict__ = kept
        # The TCP transport's dict grew while twisted.web and Autobahn set it up (to a table
        # twice the size its ~17 attributes need): repacked, it holds the same.
        transport = getattr(self.transport, "__dict__", None)
        if type(transport) is dict:
            self.transport.__dict__ = dict(transport)


_MISSING = object()
_class_values_cache: WeakKeyDictionary[type, dict[str, Any]] = WeakKeyDictionary()


def _class_values(cls: type) -> dict[str, Any]:
    """The attributes a class defines or inherits, as its dicts hold them (a ``getattr`` of
    each name missing from the class would cost a raised error per name and connection)."""
    values = _class_values_cache.get(cls)
    if values is None:
        values = {}
        for klass in reversed(cls.__mro__):
            values.update(vars(klass))
        _class_values_cache[cls] = values
    return values
_LEFTOVER_NAMES = frozenset(HANDSHAKE_LEFTOVERS)
# Made again when read (no message is in progress when the connection opens).
_MADE_ON_USE = frozenset({"utf8validator"})

for _name, _value in IDLE_STATE.items():
    setattr(LeanServerProtocol, _name, _value)
for _name in HANDSHAKE_LEFTOVERS:
    setattr(LeanServerProtocol, _name, None)


def options_class(base: type[Any], factory: WebSocketServerFactory) -> type[Any]:
    """A subclass of ``base`` holding the options of ``factory`` (Autobahn's
    ``CONFIG_ATTRS``) as class attributes: Autobahn copies an option onto a connection only
    when the connection has no attribute of that name."""
    # Autobahn's list of options, not ``base``'s: a subclass may empty its own to copy them
    # itself (EngineWebSocketProtocol does, to skip Autobahn's formatting of them).
    options = {name: getattr(factory, name) for name in WebSocketServerProtocol.CONFIG_ATTRS}
    for name, value in options.items():
        if callable(value):
            # An option that is a function (perMessageCompressionAccept) is read as the
            # function itself, as from the connection's own attribute, not as a method.
            options[name] = staticmethod(value)
    return type(base.__name__, (base,), {
        **options, "__module__": base.__module__, "__qualname__": base.__qualname__})


class LeanServerFactory(WebSocketServerFactory):
    """An Autobahn server factory whose connections share its options (see
    :func:`options_class`).  Options set with ``setProtocolOptions`` or
    ``resetProtocolOptions`` apply to the connections made afterwards, as with Autobahn."""

    _options_class: type[Any] | None = None

    def setProtocolOptions(self, *args: Any, **kwargs: Any) -> None:
        """Autobahn's; the connections made from now on get the new options."""
        super().setProtocolOptions(*args, **kwargs)  # type: ignore[no-untyped-call]
        self._options_class = None

    def resetProtocolOptions(self) -> None:
        """Autobahn's; the connections made from now on get the default options."""
        super().resetProtocolOptions()  # type: ignore[no-untyped-call]
        self._options_class = None

    def buildProtocol(self, addr: Any) -> Any:
        """A connection of the options class for the current options."""
        cls = self._options_class
        if cls is None or cls.__base__ is not self.protocol:
            cls = self._options_class = options_class(self.protocol, self)
        protocol = cls()
        protocol.factory = self
        return protocol
