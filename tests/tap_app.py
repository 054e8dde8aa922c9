"""What ``tests/test_tap.py`` runs ``twistd sio`` with: apps, a log observer and a client.

- ``--app tests.tap_app:setup``: ``echo`` acknowledges with its arguments; each socket's
  connection and disconnection is logged (namespace ``tests.tap_app``, fields ``sid`` and
  ``reason``).  :func:`setup_soon` registers the same once the reactor has turned (it returns
  a Deferred), :func:`setup_async` from a coroutine, :func:`setup_deferred` when the test
  fires the Deferred it left in :data:`PENDING`; :func:`setup_fails`,
  :func:`setup_async_fails` and :func:`setup_async_fails_at_once` fail.
- ``--logger tests.tap_app.json_log``: twistd's log as one JSON event per line on stdout,
  so the test reads fields (the port it listens on) instead of parsing text.
- ``python -m tests.tap_app URL [PATH]``: two python-socketio clients, one on long-polling and
  one on WebSocket, each connecting, asking ``echo`` for an acknowledgement, then waiting for
  the server to go.  Prints one JSON object per line: ``ack`` (``who``, ``args``), ``ready``
  (``who``), ``disconnect`` (``who``, ``reason``), ``error``; exits 0 once both clients saw
  their disconnect, 3 after 20 s.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.logger import ILogObserver, Logger, jsonFileLogObserver

if TYPE_CHECKING:
    import txsio

log = Logger()

#: Deferreds :func:`setup_deferred` returned, for the test to fire.
PENDING: list[Deferred[None]] = []


def setup(io: txsio.Server) -> None:
    """Register the test app's handlers on ``io``."""

    @io.on("connection")
    def connected(socket: txsio.Socket) -> None:
        sid = socket.id
        log.info("app: socket {sid} connected", sid=sid)

        @socket.on("echo")
        def echo(*args: Any) -> tuple[Any, ...]:
            return args

        @socket.on("disconnect")
        def disconnected(reason: str) -> None:
            log.info("app: socket {sid} disconnected: {reason}", sid=sid, reason=reason)


def setup_soon(io: Any) -> Deferred[None]:
    """:func:`setup`, once the reactor has turned: a Deferred the service waits for."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    return deferLater(reactor, 0, setup, io)


async def setup_async(io: Any) -> None:
    """:func:`setup` from a coroutine function."""
    setup(io)


def setup_deferred(io: Any) -> Deferred[None]:
    """:func:`setup` once the test fires the Deferred left in :data:`PENDING`."""
    d: Deferred[None] = Deferred()
    d.addCallback(lambda _: setup(io))
    PENDING.append(d)
    return d


async def setup_async_fails(io: Any) -> None:
    """An ``async def`` app that fails once the reactor has turned (its database is down)."""
    from twisted.internet import reactor
    from twisted.internet.task import deferLater

    await deferLater(reactor, 0, lambda: None)
    raise RuntimeError("no database at db.example:5432")


async def setup_async_fails_at_once(io: Any) -> None:
    """An ``async def`` app that fails before it awaits anything."""
    raise RuntimeError("no database at db.example:5432")


def setup_fails(io: Any) -> Deferred[None]:
    """An app whose Deferred fails."""
    d: Deferred[None] = Deferred()
    PENDING.append(d)
    return d


#: Not callable, for the usage error.
not_callable = 42


def json_log() -> ILogObserver:
    """twistd's ``--logger``: every event as one line of JSON on the real stdout."""
    assert sys.__stdout__ is not None
    return jsonFileLogObserver(sys.__stdout__, recordSeparator="")


# -- the client ---------------------------------------------------------------------------------

_print_lock = threading.Lock()


def _emit(event: dict[str, Any]) -> None:
    with _print_lock:
        sys.stdout.write(json.dumps(event) + "\n")
        sys.stdout.flush()


def _client(who: str, url: str, path: str, transports: list[str], gone: threading.Event) -> None:
    import socketio

    client = socketio.Client(reconnection=False)

    @client.event  # type: ignore[untyped-decorator]  # python-socketio has no types
    def disconnect(reason: Any = None) -> None:
        _emit({"event": "disconnect", "who": who, "reason": reason})
        gone.set()

    try:
        client.connect(url, socketio_path=path, transports=transports, wait_timeout=5)
        answer = client.call("echo", ["hi", 42], timeout=5)
        _emit({"event": "ack", "who": who, "args": answer})
        _emit({"event": "ready", "who": who, "transport": client.transport()})
    except Exception as e:
        _emit({"event": "error", "who": who, "message": f"{type(e).__name__}: {e}"})
        gone.set()


def main(argv: list[str]) -> int:
    """Run the two clients (see the module docstring)."""
    url = argv[0]
    path = argv[1] if len(argv) > 1 else "socket.io"
    events = []
    for who, transports in (("polling", ["polling"]), ("websocket", ["websocket"])):
        gone = threading.Event()
        events.append(gone)
        threading.Thread(target=_client, args=(who, url, path, transports, gone),
                         daemon=True).start()
    for gone in events:
        if not gone.wait(20):
            _emit({"event": "timeout"})
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
