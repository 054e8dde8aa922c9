"""python-engineio's (sync) client as an interop peer, run as a subprocess by the tests.

    python pyeio_client.py <scenario> <url> [json-options]

Prints one JSON object per line on stdout, the same events as ``tests/node/eio_client.mjs``
(``open``, ``upgrade``, ``message``, ``close``, ``timeout``), and exits by itself: 0 when the
scenario ran to its end, 1 when it went wrong, 3 at the deadline (``options["deadline"]``
seconds, default 10).

Scenarios:

- ``polling`` / ``websocket``: connect with that transport only, send ``options["messages"]``
  (``[{"text": ...} | {"bytes": [...]}]``), wait for every echo, disconnect.
- ``upgrade``: connect on polling; python-engineio upgrades to WebSocket inside
  ``connect()``; then the same as above.
- ``server-close``: send ``"close-me"`` and wait for the server to end the session.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from typing import TYPE_CHECKING, Any

import engineio

if TYPE_CHECKING:
    # mypy sees this directory as the package tests.peers; at run time the script's own
    # directory is on sys.path and peerlib is a top-level module.
    from tests.peers.peerlib import emit, on, start_deadline
else:
    from peerlib import emit, on, start_deadline

DEFAULT_MESSAGES: list[dict[str, Any]] = [
    {"text": "hello"},
    {"text": "ünïcödé ✓ 😀 €"},
    {"bytes": [0, 1, 2, 3, 253, 254, 255]},
    {"bytes": [i % 256 for i in range(2000)]},
]

def describe(data: str | bytes) -> dict[str, Any]:
    if isinstance(data, str):
        return {"data": data, "binary": False}
    return {"data": list(data), "binary": True}


def to_wire(message: dict[str, Any]) -> str | bytes:
    return message["text"] if "text" in message else bytes(message["bytes"])


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: pyeio_client.py <scenario> <url> [json-options]\n")
        return 2
    scenario, url = argv[0], argv[1]
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    path = options.get("path", "/engine.io").strip("/")
    messages = options.get("messages", DEFAULT_MESSAGES)

    start_deadline(options.get("deadline", 10.0))

    client = engineio.Client(request_timeout=5, handle_sigint=False)
    received: queue.Queue[str | bytes] = queue.Queue()
    closed = threading.Event()

    @on(client, "connect")
    def on_connect() -> None:
        emit({"event": "open", "transport": client.transport(), "sid": client.sid, "protocol": 4})

    @on(client, "message")
    def on_message(data: str | bytes) -> None:
        emit({"event": "message", **describe(data), "transport": client.transport()})
        received.put(data)

    @on(client, "disconnect")
    def on_disconnect(reason: str | None = None) -> None:
        emit({"event": "close", "reason": reason})
        closed.set()

    transports = {
        "polling": ["polling"],
        "websocket": ["websocket"],
        "upgrade": ["polling", "websocket"],
        "server-close": options.get("transports", ["polling"]),
    }.get(scenario)
    if transports is None:
        sys.stderr.write(f"unknown scenario: {scenario}\n")
        return 2
    client.connect(url, transports=transports, engineio_path=path)
    if scenario == "upgrade":
        if client.transport() != "websocket":
            emit({"event": "error", "message": "no upgrade", "transport": client.transport()})
            return 1
        emit({"event": "upgrade", "transport": client.transport()})

    if scenario == "server-close":
        client.send("close-me")
        if not closed.wait(options.get("deadline", 10.0)):
            return 3
        # No client.wait(): after a server-side close, python-engineio's write loop may idle
        # for pingInterval + 5 s before it notices (against Node's server too); its threads
        # are daemons, so exiting now loses nothing.
        return 0

    for message in messages:
        client.send(to_wire(message))
    for _ in messages:
        received.get(timeout=options.get("deadline", 10.0))
    client.disconnect()
    return 0 if closed.is_set() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
