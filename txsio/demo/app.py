"""The demo chat's handlers: nicknames, rooms, live user counts, acknowledged messages, and
images sent as binary.

``twistd -n sio`` calls :func:`setup` with its :class:`txsio.Server` when no ``--app`` is given
and serves the page (``index.html`` next to this module) at ``/``.  The same chat mounts in any
site::

    import txsio
    import txsio.demo.app
    from twisted.web.resource import Resource

    io = txsio.Server()
    txsio.demo.app.setup(io)
    root = Resource()
    root.putChild(b"socket.io", io.resource())

What the page emits; every handler's return value is the acknowledgement, a dict with
``"ok": True`` and the details, or ``"ok": False`` and an ``"error"`` to show:

- ``nick(name)``: choose or change the nickname.
- ``join(room)``: move to ``room`` (created on first use); the ack carries the members and
  the room's recent messages.
- ``leave()``: leave the current room.
- ``message(text)``: say something in the room; the ack (``id``, ``time``) is the delivery
  receipt.
- ``image({"name": ..., "data": <bytes>})``: share a PNG, JPEG, GIF or WebP image with the
  room; its bytes travel as a binary attachment both ways.

What the server emits: ``welcome`` (to a new socket: its id, nickname, room and the counts),
``presence`` (to everyone when a count changes: users online and per room), ``members`` (to a
room when its members change), ``notice`` (joins, departures, renames), ``message`` and
``image`` (to the others in the room).

A page may pass ``{"nick": ..., "room": ...}`` as its connection ``auth``: the server then
restores both as the socket connects, so a page that reconnects (after a network failure or a
server restart) is back in its room without asking.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections import deque
from typing import Any

from twisted.logger import Logger

from txsio import Server, Socket

__all__ = ["DEFAULT_ROOMS", "MAX_IMAGE_BYTES", "Chat", "setup"]

log = Logger()

#: The rooms the page always lists, even when empty.
DEFAULT_ROOMS = ("lobby", "random", "twisted")
#: The largest image accepted, in bytes (under the server's default message size of 1 MB).
MAX_IMAGE_BYTES = 800_000
#: How many text messages a room keeps for the people who join it later.
HISTORY = 30
MAX_TEXT = 2000
MAX_NAME = 24

_ROOM_RE = re.compile(r"[\w][\w .\-]*")
_WHITESPACE = re.compile(r"\s+")

Ack = dict[str, Any]


def _error(message: str) -> Ack:
    return {"ok": False, "error": message}


def _clean_name(value: object) -> str | None:
    """A nickname or room name trimmed to one line, or None if unusable."""
    if not isinstance(value, str):
        return None
    text = "".join(ch for ch in value if unicodedata.category(ch)[0] != "C")
    text = _WHITESPACE.sub(" ", text).strip()
    if not text or len(text) > MAX_NAME:
        return None
    return text


def _clean_room(value: object) -> str | None:
    name = _clean_name(value)
    if name is None:
        return None
    name = name.lower()
    return name if _ROOM_RE.fullmatch(name) else None


def sniff_image(data: bytes) -> str | None:
    """The MIME type of an image from its first bytes (the client's claim is not trusted)."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class _Room:
    __slots__ = ("history", "members", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        #: socket id -> nickname
        self.members: dict[str, str] = {}
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)


class Chat:
    """The chat's state and handlers on one :class:`txsio.Server` (see :func:`setup`)."""

    def __init__(self, io: Server) -> None:
        self.io = io
        self.rooms: dict[str, _Room] = {name: _Room(name) for name in DEFAULT_ROOMS}
        self._ids = itertools.count(1)
        io.on("connection", self.connected)

    # -- helpers ---------------------------------------------------------------------------

    def _now(self) -> int:
        return int(self.io.clock.seconds() * 1000)

    def _next_id(self) -> str:
        return f"m{next(self._ids)}"

    def presence(self) -> dict[str, Any]:
        """Users online, and per room (the default rooms first, then the others by name)."""
        extra = sorted(name for name in self.rooms if name not in DEFAULT_ROOMS)
        return {
            "online": len(self.io.sockets.sockets),
            "rooms": [{"name": name, "count": len(self.rooms[name].members)}
                      for name in (*DEFAULT_ROOMS, *extra)],
        }

    def _announce_presence(self) -> None:
        self.io.emit("presence", self.presence())

    def _announce_members(self, room: _Room) -> None:
        self.io.to(room.name).emit(
            "members", {"room": room.name, "nicks": sorted(room.members.values(), key=str.lower)})

    def _notice(self, room: _Room, text: str) -> None:
        self.io.to(room.name).emit("notice", {"room": room.name, "text": text,
                                              "time": self._now()})

    # -- room membership -------------------------------------------------------------------

    def _enter(self, socket: Socket, name: str) -> _Room:
        self._exit(socket, announce_presence=False)
        room = self.rooms.get(name)
        if room is None:
            room = self.rooms[name] = _Room(name)
        nick = socket.data["nick"]
        socket.join(name)
        socket.data["room"] = name
        room.members[socket.id] = nick
        # To the others: the page that joins says so itself.
        socket.to(name).emit("notice", {"room": name, "text": f"{nick} joined",
                                        "time": self._now()})
        self._announce_members(room)
        self._announce_presence()
        return room

    def _exit(self, socket: Socket, *, announce_presence: bool = True) -> str | None:
        name = socket.data.get("room")
        if name is None:
            return None
        socket.data["room"] = None
        if socket.connected:
            socket.leave(name)
        room = self.rooms.get(name)
        if room is not None:
            nick = room.members.pop(socket.id, socket.data.get("nick"))
            if room.members or name in DEFAULT_ROOMS:
                self._notice(room, f"{nick} left")
                self._announce_members(room)
            else:
                del self.rooms[name]
        if announce_presence:
            self._announce_presence()
        return str(name)

    def _joined(self, room: _Room) -> Ack:
        return {"ok": True, "room": room.name,
                "members": sorted(room.members.values(), key=str.lower),
                "history": list(room.history)}

    # -- handlers --------------------------------------------------------------------------

    def connected(self, socket: Socket) -> None:
        """A new socket: restore its nickname and room from its auth, register its handlers."""
        auth = socket.handshake.auth
        socket.data["nick"] = _clean_name(auth.get("nick"))
        socket.data["room"] = None
        room_name = _clean_room(auth.get("room"))
        room = (self._enter(socket, room_name)
                if socket.data["nick"] is not None and room_name is not None else None)
        log.info("demo: {sid} connected as {nick!r} (room {room!r})", sid=socket.conn.id,
                 nick=socket.data["nick"], room=room_name)

        def nick(name: object = None, *_: object) -> Ack:
            new = _clean_name(name)
            if new is None:
                return _error(f"a nickname has 1 to {MAX_NAME} characters")
            old = socket.data["nick"]
            socket.data["nick"] = new
            current = self.rooms.get(socket.data["room"] or "")
            if current is not None and old != new:
                current.members[socket.id] = new
                self._notice(current, f"{old} is now {new}")
                self._announce_members(current)
            return {"ok": True, "nick": new}

        def join(name: object = None, *_: object) -> Ack:
            if socket.data["nick"] is None:
                return _error("choose a nickname first")
            room_name = _clean_room(name)
            if room_name is None:
                return _error(f"a room name has 1 to {MAX_NAME} letters, digits, spaces, "
                              "dots, dashes or underscores")
            current = self.rooms.get(socket.data["room"] or "")
            if current is not None and current.name == room_name:
                return self._joined(current)
            return self._joined(self._enter(socket, room_name))

        def leave(*_: object) -> Ack:
            left = self._exit(socket)
            return {"ok": True, "room": left}

        def message(text: object = None, *_: object) -> Ack:
            current = self.rooms.get(socket.data["room"] or "")
            if current is None:
                return _error("join a room first")
            if not isinstance(text, str) or not text.strip():
                return _error("say something")
            if len(text) > MAX_TEXT:
                return _error(f"a message has at most {MAX_TEXT} characters")
            entry = {"id": self._next_id(), "room": current.name, "nick": socket.data["nick"],
                     "text": text.strip(), "time": self._now()}
            current.history.append(entry)
            socket.to(current.name).emit("message", entry)
            # The acknowledgement is the delivery receipt the sender's page shows.
            return {"ok": True, "id": entry["id"], "time": entry["time"],
                    "recipients": len(current.members) - 1}

        def image(payload: object = None, *_: object) -> Ack:
            current = self.rooms.get(socket.data["room"] or "")
            if current is None:
                return _error("join a room first")
            if not isinstance(payload, dict):
                return _error("an image is sent as {name, data}")
            data, name = payload.get("data"), payload.get("name")
            if not isinstance(data, bytes):
                return _error("an image travels as binary data")
            if len(data) > MAX_IMAGE_BYTES:
                return _error(f"images are limited to {MAX_IMAGE_BYTES // 1000} kB")
            mime = sniff_image(data)
            if mime is None:
                return _error("only PNG, JPEG, GIF and WebP images are shared")
            entry = {"id": self._next_id(), "room": current.name, "nick": socket.data["nick"],
                     "name": name[:100] if isinstance(name, str) else "image",
                     "type": mime, "size": len(data), "time": self._now()}
            socket.to(current.name).emit("image", {**entry, "data": data})
            return {"ok": True, "id": entry["id"], "time": entry["time"], "type": mime,
                    "size": len(data), "recipients": len(current.members) - 1}

        def disconnect(reason: object = None, *_: object) -> None:
            log.info("demo: {sid} ({nick!r}) left: {reason}", sid=socket.conn.id,
                     nick=socket.data.get("nick"), reason=reason)
            if self._exit(socket) is None:
                self._announce_presence()

        socket.on("nick", nick)
        socket.on("join", join)
        socket.on("leave", leave)
        socket.on("message", message)
        socket.on("image", image)
        socket.on("disconnect", disconnect)
        socket.emit("welcome", {
            "id": socket.id,
            "nick": socket.data["nick"],
            "room": self._joined(room) if room is not None else None,
            "presence": self.presence(),
            "max_image_bytes": MAX_IMAGE_BYTES,
        })
        if room is None:
            self._announce_presence()


def setup(io: Server) -> None:
    """Register the demo chat's handlers on ``io`` (its main namespace)."""
    Chat(io)
