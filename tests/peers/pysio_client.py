"""python-socketio's (sync) client as an interop peer, run as a subprocess by the tests.

    python pysio_client.py <scenario> <url> [json-options]

The server runs the test app described in ``tests/node/sio_reference_server.mjs``. Prints
one JSON object per line on stdout, like ``tests/node/sio_client.mjs`` (binary values as
``{"$bytes": [...]}``): ``connect``, ``connect_error``, ``ack``, ``received``,
``disconnect``, ``done``, ``error``, ``timeout``; exits by itself: 0 when the scenario ran to
its end, 1 when it went wrong, 2 on bad usage, 3 at the deadline (``options["deadline"]``
seconds, default 10).

Scenarios:

- ``basic``: connect to ``options["namespaces"]`` (default ``/``, ``/chat``, ``/dyn-7``)
  with ``options["auth"]`` over ``options["transports"]`` (default polling then
  WebSocket); on each namespace: whoami; echo ``options["payload"]`` (several arguments,
  nested binary) with an ack; echo-event (the server emits the payload back); ask the server
  to emit_with_ack "question", answered with the arguments ("echo"), two values ("two") and
  none ("none"); then disconnect.
- ``refused``: connect to ``/private`` with a wrong token; report the connect_error.
"""

from __future__ import annotations

import json
import queue
import sys
import threading
from typing import TYPE_CHECKING, Any

import socketio

if TYPE_CHECKING:
    # mypy sees this directory as the package tests.peers; at run time the script's own
    # directory is on sys.path and peerlib is a top-level module.
    from tests.peers.peerlib import emit, from_json, on, start_deadline
else:
    from peerlib import emit, from_json, on, start_deadline

DEFAULT_PAYLOAD: list[Any] = [
    "text ünïcödé ✓ 😀",
    42,
    {
        "nested": {"buf": {"$bytes": [1, 2, 3]}, "n": None, "ok": True},
        "list": [{"$bytes": list(range(256))}, "x", {"deep": {"$bytes": []}}],
    },
    {"$bytes": [i % 251 for i in range(2000)]},
]

def ack_args(value: Any) -> list[Any]:
    """python-socketio's ``call()`` result as the list of ack arguments."""
    if value is None:
        return []
    return list(value) if isinstance(value, tuple) else [value]


def answer(mode: str, *rest: Any) -> Any:
    """The client's answer to the server's "question" (a tuple is several ack arguments)."""
    if mode == "echo":
        return tuple(rest)
    if mode == "two":
        return ("a", {"n": 2})
    return None


def basic(client: socketio.Client, url: str, options: dict[str, Any]) -> int:
    namespaces = options.get("namespaces", ["/", "/chat", "/dyn-7"])
    payload = from_json(options.get("payload", DEFAULT_PAYLOAD))
    echoes: dict[str, queue.Queue[tuple[Any, ...]]] = {n: queue.Queue() for n in namespaces}
    gone = {n: threading.Event() for n in namespaces}

    for nsp in namespaces:

        def on_connect(nsp: str = nsp) -> None:
            emit(
                {
                    "event": "connect",
                    "who": "py",
                    "nsp": nsp,
                    "id": client.get_sid(nsp),
                    "transport": client.transport(),
                }
            )

        def on_question(mode: str, *rest: Any, nsp: str = nsp) -> Any:
            emit(
                {
                    "event": "received",
                    "who": "py",
                    "nsp": nsp,
                    "name": "question",
                    "args": [mode, *rest],
                }
            )
            return answer(mode, *rest)

        def on_echo(*args: Any, nsp: str = nsp) -> None:
            emit({"event": "received", "who": "py", "nsp": nsp, "name": "echo", "args": args})
            echoes[nsp].put(args)

        def on_disconnect(reason: str | None = None, nsp: str = nsp) -> None:
            emit({"event": "disconnect", "who": "py", "nsp": nsp, "reason": reason})
            gone[nsp].set()

        client.on("connect", on_connect, namespace=nsp)
        client.on("question", on_question, namespace=nsp)
        client.on("echo", on_echo, namespace=nsp)
        client.on("disconnect", on_disconnect, namespace=nsp)

    client.connect(
        url,
        auth=options.get("auth", {"user": "py"}),
        namespaces=namespaces,
        transports=options.get("transports"),
        wait_timeout=5,
    )
    timeout = options.get("deadline", 10.0)

    def call(nsp: str, step: str, event: str, *args: Any) -> list[Any]:
        result = ack_args(client.call(event, args, namespace=nsp, timeout=timeout))
        emit({"event": "ack", "who": "py", "nsp": nsp, "step": step, "args": result})
        return result

    for nsp in namespaces:
        call(nsp, "whoami", "whoami")
        call(nsp, "echo", "echo", *payload)
        call(nsp, "echo-event", "echo-event", *payload)
        echoes[nsp].get(timeout=timeout)
        question = {"event": "question", "timeout": 3}
        echo = ["echo", {"bin": b"\x09\x08\x07\x00\xff"}]
        call(nsp, "ask-echo", "ask", {**question, "args": echo})
        call(nsp, "ask-two", "ask", {**question, "args": ["two"]})
        call(nsp, "ask-none", "ask", {**question, "args": ["none"]})
    emit({"event": "transport", "who": "py", "transport": client.transport()})
    client.disconnect()
    for nsp in namespaces:
        if not gone[nsp].wait(timeout):
            emit({"event": "error", "message": f"no disconnect event on {nsp}"})
            return 1
    return 0


def refused(client: socketio.Client, url: str, options: dict[str, Any]) -> int:
    errors: list[Any] = []

    @on(client, "connect_error", namespace="/private")
    def on_connect_error(data: Any = None) -> None:
        emit({"event": "connect_error", "who": "py", "nsp": "/private", "data": data})
        errors.append(data)

    try:
        client.connect(
            url,
            auth={"token": "wrong"},
            namespaces=["/private"],
            wait_timeout=5,
            transports=options.get("transports"),
        )
    except socketio.exceptions.ConnectionError as e:
        emit({"event": "refused", "who": "py", "message": str(e)})
    else:
        emit({"event": "error", "message": "the connection was not refused"})
        client.disconnect()
        return 1
    client.disconnect()
    return 0 if errors else 1


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        sys.stderr.write("usage: pysio_client.py <scenario> <url> [json-options]\n")
        return 2
    scenario, url = argv[0], argv[1]
    options = json.loads(argv[2]) if len(argv) > 2 else {}
    run = {"basic": basic, "refused": refused}.get(scenario)
    if run is None:
        sys.stderr.write(f"unknown scenario: {scenario}\n")
        return 2

    start_deadline(options.get("deadline", 10.0))
    client = socketio.Client(reconnection=False, request_timeout=5, handle_sigint=False)
    try:
        code = run(client, url, options)
    except Exception as e:  # reported, then a failed run
        emit({"event": "error", "message": f"{type(e).__name__}: {e}"})
        code = 1
    if code == 0:
        emit({"event": "done"})
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
