"""The txsio server under soak (started by bench/soak.py; usable alone).

Usage: python bench/soak_server.py '<options as JSON>'   (see ``DEFAULTS``)

A realistic app on ``txsio.Server`` with the default options except the heartbeat:

- ``echo``: the client's emit-with-ack, answered with its own argument;
- ``join``: joins the rooms the client names (``room-K``, ``steady-K``, ``churn``, ``slow``),
  answered with how many rooms the socket is in;
- periodic broadcasts: a ``tick`` to everyone each second (with a sequence number the clients
  check for gaps), a ``news`` to one ``room-K`` after the other, a ``bulk`` payload to the
  ``slow`` room (what the slow consumers have to keep up with), a ``probe`` emit-with-ack to
  one random socket and a ``poll`` broadcast-with-ack to one ``steady-K`` room, whose answers
  are counted (a timeout counts as lost).

A timer firing every 50 ms measures the event loop's lag (how late it fires), and
``gc.callbacks`` the longest pause of the garbage collector (a likely cause of lag).
``GET /status`` answers JSON: the lag and the longest GC pause since the previous read, the lag
overall, sessions and sockets, rooms left in the adapter, the disconnect reasons, the probe and
poll counts, log events by level, and the allocation counters.  ``?gc=1`` collects garbage
(and returns freed heap to the system) for the leak check; ``?restart=1`` starts the overall
lag figures anew; ``?peek=1`` leaves the lag figures out (their window goes on);
``?objects=1`` counts the objects the garbage collector tracks; ``?quiesce=1`` stops starting
probes and polls.  The process prints ``ready`` once listening.
"""

from __future__ import annotations

import ctypes
import gc
import json
import random
import resource
import sys
import time
from collections import Counter
from typing import Any

from twisted.internet import reactor as _reactor
from twisted.internet.interfaces import IReactorCore, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import LogLevel, globalLogBeginner, textFileLogObserver
from twisted.web.resource import Resource
from twisted.web.server import Request, Site

import txsio
from txsio.exceptions import AckTimeoutError, DisconnectedError

reactor: Any = _reactor

DEFAULTS: dict[str, Any] = {
    "port": 0,
    "ping_interval": 25.0,
    "ping_timeout": 20.0,
    "rooms": 50,  # room-0 .. room-49, and as many steady-K rooms
    "news_every": 0.1,  # seconds between two news broadcasts (to one room each)
    "bulk_every": 0.1,  # seconds between two bulk broadcasts to the slow room
    "bulk_bytes": 2048,
    "probe_every": 1.0,
    "poll_every": 2.0,
    "ack_timeout": 30.0,  # seconds a probe or poll waits for its answers
    "backlog": 1024,
}

LAG_EVERY = 0.05


class LagMeter:
    """How late a 50 ms timer fires: the event loop's lag, per window and overall."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self.window_max = self.window_sum = 0.0
        self.window_n = 0
        self.total_max = self.total_sum = 0.0
        self.total_n = 0
        self._due = clock.seconds() + LAG_EVERY
        self._discard = False
        clock.callLater(LAG_EVERY, self._fire)

    def discard_next(self) -> None:
        """Not count the next firing (late because of the status request's own work)."""
        self._discard = True

    def _fire(self) -> None:
        now = self.clock.seconds()
        lag = 0.0 if self._discard else max(0.0, now - self._due)
        self._discard = False
        self.window_max = max(self.window_max, lag)
        self.window_sum += lag
        self.window_n += 1
        self.total_max = max(self.total_max, lag)
        self.total_sum += lag
        self.total_n += 1
        # Scheduled from now, not from the due time: one long stall is one late firing.
        self._due = now + LAG_EVERY
        self.clock.callLater(LAG_EVERY, self._fire)

    def read(self, restart: bool = False) -> dict[str, float]:
        """The figures in milliseconds; starts a new window (``restart``: a new total too)."""
        out = {
            "lag_max_ms": self.window_max * 1e3,
            "lag_avg_ms": self.window_sum / max(self.window_n, 1) * 1e3,
            "lag_total_max_ms": self.total_max * 1e3,
            "lag_total_avg_ms": self.total_sum / max(self.total_n, 1) * 1e3,
        }
        self.window_max = self.window_sum = 0.0
        self.window_n = 0
        if restart:
            self.total_max = self.total_sum = 0.0
            self.total_n = 0
        return out


class GCPauses:
    """How long the cyclic garbage collector held the loop: its longest pause per window."""

    def __init__(self) -> None:
        self.started = 0.0
        self.window_max = 0.0
        self.window_n = 0
        self.ignore = False
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if self.ignore:
            return
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.window_max = max(self.window_max, time.perf_counter() - self.started)
            self.window_n += 1

    def read(self) -> dict[str, float]:
        out = {"gc_max_ms": self.window_max * 1e3, "gc_runs": float(self.window_n)}
        self.window_max = 0.0
        self.window_n = 0
        return out


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _libc() -> Any:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None  # not glibc (>= 2.33): the figures below are left out
    return libc


LIBC = _libc()


def _trim_heap() -> None:
    """Give freed heap back to the system, so RSS says what is still in use."""
    if LIBC is not None:
        LIBC.malloc_trim(0)


def _malloc_in_use() -> int:
    """Bytes malloc has handed out and not got back: where large buffers live (Python's own
    small objects live in its arenas, counted by ``sys.getallocatedblocks``)."""
    if LIBC is None:
        return -1
    info = LIBC.mallinfo2()
    return int(info.uordblks + info.hblkhd)


class SoakApp:
    """The app: handlers, periodic broadcasts and the counters ``/status`` reports."""

    def __init__(self, io: txsio.Server, options: dict[str, Any]) -> None:
        self.io = io
        self.options = options
        self.nsp = io.of("/")
        self.reasons: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.pending = 0  # probes and polls waiting for answers
        self.quiescent = False
        self.tick_seq = 0
        self._news_room = 0
        self._poll_room = 0
        self.gc_pauses = GCPauses()
        self.log = LogCounter()
        self.bulk = {"pad": "x" * int(options["bulk_bytes"])}
        io.on("connection", self.connected)
        self.loops = [
            LoopingCall(self.tick),
            LoopingCall(self.news),
            LoopingCall(self.send_bulk),
            LoopingCall(self.probe),
            LoopingCall(self.poll),
        ]
        everies = [1.0, options["news_every"], options["bulk_every"], options["probe_every"],
                   options["poll_every"]]
        for loop, every in zip(self.loops, everies, strict=True):
            loop.clock = io.clock
            loop.start(float(every), now=False)

    def connected(self, socket: txsio.Socket) -> None:
        self.counts["connections"] += 1

        def echo(data: Any) -> Any:
            self.counts["echoes"] += 1
            return data

        def join(rooms: list[str]) -> int:
            socket.join(rooms)
            return len(socket.rooms)

        def disconnected(reason: str) -> None:
            self.reasons[reason] += 1

        socket.on("echo", echo)
        socket.on("join", join)
        socket.on("disconnect", disconnected)

    # -- periodic work ----------------------------------------------------------------------

    def tick(self) -> None:
        self.tick_seq += 1
        self.io.emit("tick", {"seq": self.tick_seq})

    def news(self) -> None:
        room = f"room-{self._news_room}"
        self._news_room = (self._news_room + 1) % int(self.options["rooms"])
        self.io.to(room).emit("news", {"room": room, "text": "a little news for the room"})

    def send_bulk(self) -> None:
        self.io.to("slow").emit("bulk", self.bulk)

    def probe(self) -> None:
        if self.quiescent or not self.nsp.sockets:
            return
        socket = self.nsp.sockets[random.choice(list(self.nsp.sockets))]
        self.counts["probes_sent"] += 1
        self.pending += 1
        d = socket.timeout(float(self.options["ack_timeout"])).emit_with_ack("probe", 1)

        def answered(_: Any) -> None:
            self.counts["probes_answered"] += 1

        def failed(failure: Any) -> None:
            # The socket left before answering: not an answer lost by the server.
            if failure.check(DisconnectedError):
                self.counts["probes_disconnected"] += 1
            elif failure.check(AckTimeoutError):
                self.counts["probes_timed_out"] += 1
            else:
                self.counts["probes_failed"] += 1

        d.addCallbacks(answered, failed).addBoth(self._settled)

    def poll(self) -> None:
        if self.quiescent:
            return
        room = f"steady-{self._poll_room}"
        self._poll_room = (self._poll_room + 1) % int(self.options["rooms"])
        expected = len(self.nsp.adapter.rooms.get(room, ()))
        if not expected:
            return
        self.counts["polls_sent"] += 1
        self.counts["poll_answers_expected"] += expected
        self.pending += 1
        d = self.io.to(room).timeout(float(self.options["ack_timeout"])).emit_with_ack("poll", 1)

        def answered(responses: list[Any]) -> None:
            self.counts["polls_answered"] += 1
            self.counts["poll_answers"] += len(responses)

        def failed(failure: Any) -> None:
            if failure.check(AckTimeoutError):
                self.counts["polls_timed_out"] += 1
                self.counts["poll_answers"] += len(failure.value.responses)
            else:
                self.counts["polls_failed"] += 1

        d.addCallbacks(answered, failed).addBoth(self._settled)

    def _settled(self, _: Any) -> None:
        self.pending -= 1

    # -- status ------------------------------------------------------------------------------

    def status(self, lag: LagMeter, collect: bool, restart: bool, peek: bool,
               objects: bool) -> dict[str, Any]:
        figures = {} if peek else {**lag.read(restart), **self.gc_pauses.read()}
        if collect:
            # The measurement's own pause is not the server's lag.
            self.gc_pauses.ignore = True
            gc.collect()
            _trim_heap()
            self.gc_pauses.ignore = False
            lag.discard_next()
        adapter = self.nsp.adapter
        return {
            **figures,
            "sessions": len(self.io.engine.sessions),
            "sockets": len(self.nsp.sockets),
            "rooms": len(adapter.rooms),
            "room_members": sum(len(m) for m in adapter.rooms.values()),
            "adapter_sids": len(adapter.sids),
            "pending": self.pending,
            "ticks": self.tick_seq,
            "reasons": dict(self.reasons),
            "log": dict(self.log.counts),
            **self.counts,
            "allocated_blocks": sys.getallocatedblocks(),
            "malloc_in_use": _malloc_in_use(),
            # Listing every object takes a while with many connections: only when asked.
            "gc_objects": len(gc.get_objects()) if collect or objects else -1,
        }


class StatusResource(Resource):
    """``GET /status``: the app's figures as JSON."""

    isLeaf = True

    def __init__(self, app: SoakApp, lag: LagMeter) -> None:
        super().__init__()
        self.app = app
        self.lag = lag

    def render_GET(self, request: Request) -> bytes:
        args = request.args or {}
        if args.get(b"quiesce"):
            self.app.quiescent = True
        body = self.app.status(self.lag, collect=bool(args.get(b"gc")),
                               restart=bool(args.get(b"restart")),
                               peek=bool(args.get(b"peek")),
                               objects=bool(args.get(b"objects")))
        request.setHeader(b"content-type", b"application/json")
        return json.dumps(body).encode()


class LogCounter:
    """Counts the server's log events by level and writes warnings and worse to stderr (which
    the soak shows at its end); the rest are dropped, as a production server at level warn."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._text = textFileLogObserver(sys.stderr)

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level", LogLevel.info)
        self.counts[level.name] += 1
        if level >= LogLevel.warn:
            self._text(event)


def main() -> None:
    options = {**DEFAULTS, **(json.loads(sys.argv[1]) if len(sys.argv) > 1 else {})}
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    io = txsio.Server(ping_interval=float(options["ping_interval"]),
                      ping_timeout=float(options["ping_timeout"]))
    app = SoakApp(io, options)
    globalLogBeginner.beginLoggingTo([app.log], redirectStandardIO=False)
    lag = LagMeter(reactor)
    root = Resource()
    root.putChild(b"socket.io", io.resource())
    root.putChild(b"status", StatusResource(app, lag))
    site = Site(root)
    site.noisy = False
    port = reactor.listenTCP(int(options["port"]), site, backlog=int(options["backlog"]),
                         interface="127.0.0.1")
    print(json.dumps({"event": "ready", "port": port.getHost().port, "nofile": hard}),
          flush=True)
    core: IReactorCore = reactor
    core.run()


if __name__ == "__main__":
    main()
