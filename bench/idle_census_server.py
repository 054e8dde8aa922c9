"""The benchmark's txsio server (``txsio_server.py``) under ``tracemalloc``, for
``idle_memory.py --census``.

Usage: python idle_census_server.py <port>.  ``SIGUSR1`` takes the "before" snapshot,
``SIGUSR2`` the "after" one and prints, per connection opened in between, where the bytes
were allocated (grouped by traceback) and the objects holding them (count and
``sys.getsizeof`` per type, an instance's ``__dict__`` counted with it), and the attributes
of one connection's objects.
"""

from __future__ import annotations

import gc
import runpy
import signal
import sys
import tracemalloc
from collections import Counter
from pathlib import Path
from types import FrameType
from typing import Any

tracemalloc.start(8)

from twisted.internet import reactor  # noqa: E402

import txsio  # noqa: E402


def sockets() -> list[txsio.Socket]:
    gc.collect()
    return [o for o in gc.get_objects() if isinstance(o, txsio.Socket)]

def census() -> tuple[Counter[str], Counter[str]]:
    gc.collect()
    counts: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = f"{kind.__module__}.{kind.__qualname__}"
        size = sys.getsizeof(obj)
        d = getattr(obj, "__dict__", None) if not isinstance(obj, type) else None
        if isinstance(d, dict):
            size += sys.getsizeof(d)
        counts[name] += 1
        sizes[name] += size
    return counts, sizes


state: dict[str, Any] = {}


def before() -> None:
    state["n"] = len(sockets())
    state["census"] = census()
    state["snapshot"] = tracemalloc.take_snapshot()
    print(f"before: {len(sockets())} sockets", file=sys.stderr, flush=True)


def after() -> None:
    n = len(sockets()) - state["n"]
    counts0, sizes0 = state["census"]
    counts1, sizes1 = census()
    snapshot = tracemalloc.take_snapshot()
    out = sys.stderr
    print(f"after: {n} more sockets", file=out)
    stats = snapshot.compare_to(state["snapshot"], "traceback")
    total = sum(s.size_diff for s in stats)
    print(f"tracemalloc: {total / n:.0f} bytes per connection, top tracebacks:", file=out)
    for stat in stats[:25]:
        if stat.size_diff / n < 40:
            break
        print(f"--- {stat.size_diff / n:7.0f} B/conn, {stat.count_diff / n:5.2f} blocks/conn",
              file=out)
        for line in stat.traceback.format(limit=6, most_recent_first=True):
            print("   " + line, file=out)
    by_line = snapshot.compare_to(state["snapshot"], "lineno")
    print("tracemalloc by line:", file=out)
    for stat in by_line[:30]:
        print(f"{stat.size_diff / n:7.0f} B/conn {stat.count_diff / n:5.2f} blocks  "
              f"{stat.traceback[0]}", file=out)
    print("objects (gc-tracked) per connection: count, bytes (getsizeof + __dict__):", file=out)
    rows = sorted(((sizes1[k] - sizes0[k], counts1[k] - counts0[k], k) for k in sizes1),
                  reverse=True)
    for size, count, name in rows[:40]:
        if size / n < 16:
            break
        print(f"{count / n:6.2f} {size / n:7.0f} B  {name}", file=out)
    one_connection()
    print("census done", file=out, flush=True)


def describe(label: str, obj: object) -> None:
    """One per-connection object: its size, its ``__dict__``'s, and its attributes'."""
    out = sys.stderr
    d = getattr(obj, "__dict__", None)
    dict_size = sys.getsizeof(d) if isinstance(d, dict) else 0
    print(f"{label}: {type(obj).__qualname__} {sys.getsizeof(obj)} B + __dict__ {dict_size} B "
          f"({len(d) if isinstance(d, dict) else 0} attributes)", file=out)
    if isinstance(d, dict):
        for key, value in d.items():
            size = sys.getsizeof(value)
            vd = getattr(value, "__dict__", None)
            if isinstance(vd, dict) and not isinstance(value, type):
                size += sys.getsizeof(vd)
            print(f"    {key:32} {size:6} B  {type(value).__qualname__}", file=out)


def one_connection() -> None:
    socket = sockets()[-1]
    describe("socket", socket)
    conn = socket.conn  # type: ignore[attr-defined]
    describe("conn", conn)
    session = conn.session
    describe("session", session)
    describe("handshake", getattr(socket, "handshake", None))
    protocol = session.transport
    describe("protocol", protocol)
    describe("tcp transport", protocol.transport)
    for name in ("_transport_details", "trafficStats", "send_queue", "utf8validator"):
        value = getattr(protocol, name, None)
        if value is not None:
            describe(name, value)


def on_signal(number: int, frame: FrameType | None) -> None:
    reactor.callFromThread(before if number == signal.SIGUSR1 else after)  # type: ignore[attr-defined]


signal.signal(signal.SIGUSR1, on_signal)
signal.signal(signal.SIGUSR2, on_signal)

runpy.run_path(str(Path(__file__).with_name("txsio_server.py")), run_name="__main__")
