"""python-socketio's server (``AsyncServer`` on aiohttp) running the client interop test app.

The same app as ``tests/node/sio_server_for_client.mjs`` (whose header describes it), for
``tests/test_client_interop.py``; connection state recovery and ``drop`` excepted (python-
socketio has no recovery).

    python pysio_server.py '{"port": 0, "pingInterval": 500, "pingTimeout": 500,
                             "transports": ["polling", "websocket"]}'

Prints one JSON object per line on stdout (binary values as ``{"$bytes": [...]}``), starting
with ``{"event": "listening", "port": N}``.  Exits when stdin closes or on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import threading
from typing import TYPE_CHECKING, Any

import socketio
from aiohttp import web

if TYPE_CHECKING:
    # mypy sees this directory as the package tests.peers; at run time the script's own
    # directory is on sys.path and peerlib is a top-level module.
    from tests.peers.peerlib import emit, from_json
else:
    from peerlib import emit, from_json


def make_app(options: dict[str, Any]) -> web.Application:
    """The test app on a new ``AsyncServer``."""
    # python-engineio announces int(ping_interval) * 1000 in its handshake: a fraction of a
    # second would be announced as 0, so whole seconds only.
    sio = socketio.AsyncServer(
        async_mode="aiohttp",
        ping_interval=max(1, math.ceil(options.get("pingInterval", 1000) / 1000)),
        ping_timeout=max(1, math.ceil(options.get("pingTimeout", 1000) / 1000)),
        transports=options.get("transports", ["polling", "websocket"]),
        cors_allowed_origins=[],
    )
    app = web.Application()
    sio.attach(app)

    def install(nsp: str) -> None:
        async def connect(sid: str, environ: dict[str, Any], auth: Any) -> None:
            if nsp == "/private" and not (isinstance(auth, dict) and auth.get("token") == "secret"):
                raise socketio.exceptions.ConnectionRefusedError(
                    "not authorized", {"code": 401, "reason": "bad token"}
                )
            emit({"event": "connection", "nsp": nsp, "id": sid, "auth": auth or {},
                  "recovered": False})
            await sio.emit("hello", nsp, to=sid, namespace=nsp)

        async def disconnect(sid: str, reason: Any = None) -> None:
            emit({"event": "disconnect", "nsp": nsp, "id": sid, "reason": str(reason)})

        async def echo(sid: str, *args: Any) -> Any:
            return args

        async def echo_event(sid: str, *args: Any) -> str:
            await sio.emit("echo", args if len(args) != 1 else args[0], to=sid, namespace=nsp)
            return "sent"

        async def whoami(sid: str, *args: Any) -> dict[str, Any]:
            return {"nsp": nsp, "id": sid, "recovered": False}

        async def ask(sid: str, request: dict[str, Any]) -> dict[str, Any]:
            answered = asyncio.Event()
            answers: list[Any] = []

            def callback(*args: Any) -> None:
                answers.extend(args)
                answered.set()

            args = from_json(request.get("args", []))
            await sio.emit(request["event"], tuple(args) if len(args) != 1 else args[0],
                           to=sid, namespace=nsp, callback=callback)
            try:
                await asyncio.wait_for(answered.wait(), request["timeout"])
            except asyncio.TimeoutError:
                return {"error": "timeout"}
            return {"answer": answers}

        async def record(sid: str, *args: Any) -> str:
            emit({"event": "record", "nsp": nsp, "args": list(args)})
            return "recorded"

        async def disconnect_me(sid: str, *args: Any) -> None:
            await sio.disconnect(sid, namespace=nsp)

        sio.on("connect", connect, namespace=nsp)
        sio.on("disconnect", disconnect, namespace=nsp)
        for name, handler in [("echo", echo), ("echo-event", echo_event), ("whoami", whoami),
                              ("ask", ask), ("record", record),
                              ("disconnect-me", disconnect_me)]:
            sio.on(name, handler, namespace=nsp)

    for nsp in ("/", "/chat", "/private"):
        install(nsp)
    return app


async def main(options: dict[str, Any]) -> None:
    """Serve until stdin closes."""
    runner = web.AppRunner(make_app(options), handle_signals=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", options.get("port", 0), reuse_address=True)
    await site.start()
    port = runner.addresses[0][1]
    emit({"event": "listening", "port": port})
    loop = asyncio.get_running_loop()
    done = asyncio.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        loop.call_soon_threadsafe(done.set)

    threading.Thread(target=watch_stdin, daemon=True).start()
    await done.wait()
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}))
    os._exit(0)
