"""python-socketio 5 on uvicorn running the benchmark's app: the Python peer.

Usage: python psio_server.py <port>.  The same app as ``txsio_server.py`` ("echo", "join",
"fanout", "burst"), on python-socketio's ASGI server under uvicorn (asyncio, its default
WebSocket and HTTP implementations: whatever of ``websockets``/``wsproto`` and ``httptools``
is installed).  Needs ``pip install -e .[bench]``.
"""

import sys

import socketio  # type: ignore[import-untyped]
import uvicorn

sio = socketio.AsyncServer(async_mode="asgi", transports=["polling", "websocket"])
NEWS = {"text": "hello world, this is a broadcast message", "n": 42}


@sio.on("echo")  # type: ignore[misc]
async def echo(sid: str, data: object) -> object:
    return data


@sio.on("join")  # type: ignore[misc]
async def join(sid: str) -> bool:
    await sio.enter_room(sid, "room")
    return True


@sio.on("fanout")  # type: ignore[misc]
async def fanout(sid: str) -> None:
    await sio.emit("news", NEWS, room="room")


@sio.on("burst")  # type: ignore[misc]
async def burst(sid: str, n: int) -> None:
    for _ in range(n):
        await sio.emit("news", NEWS)


app = socketio.ASGIApp(sio)
print("ready", flush=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
            access_log=False, lifespan="off")
