"""Idle memory per WebSocket connection: the server's resident memory at N idle connections.

Usage (after ``npm ci`` in tests/node; raise the open-file limit for 10,000)::

    ulimit -n 65536
    python bench/idle_memory.py [--connections 1000 10000] [--runs 3]
                                [--tree PATH ...] [--logging] [--census]

For each tree (a checkout whose ``txsio`` package is imported; default: this one; ``node``
for Node's socket.io 4.8, ``node_server.mjs``, in the same run), each
count N and each run, a fresh ``bench/txsio_server.py`` is started pinned to CPU 0, and the
load generator (``load.mjs idle``: raw Engine.IO framing over WebSocket) opens idle
connections from CPU 1 in two steps: a tenth of N, then the rest.  Two figures per run:

- ``total``: (RSS at N - RSS of the fresh server) / N, the figure of ``bench/run.py`` and
  of the performance issue (it includes what the first connections load or allocate once);
- ``marginal``: (RSS at N - RSS at N/10) / (0.9 N), what one more connection costs.

The table gives the median of the runs.  ``--logging`` measures the server with logging
begun, as deployed (``idle_logging_server.py``): without it, as ``bench/run.py`` runs it,
Twisted's start-up buffer of log events counts too.  ``--census`` instead runs the server of
the (first) tree under ``tracemalloc`` (``idle_census_server.py``) and prints where the bytes
of the marginal connections were allocated, grouped by traceback, and the objects they are
held in (counts and ``sys.getsizeof`` per type, ``__dict__`` included).
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
#: the load generator's npm packages (``TXSIO_NODE_MODULES`` to take them from elsewhere)
NODE_MODULES = Path(os.environ.get("TXSIO_NODE_MODULES", ROOT / "tests" / "node" / "node_modules"))

sys.path.insert(0, str(HERE))
from run import free_port, pinned, rss_kib, wait_ready  # noqa: E402


def open_idle(port: int, env: dict[str, str], count: int) -> subprocess.Popen[str]:
    """Start a load generator holding ``count`` idle connections; return once they are up."""
    idle = subprocess.Popen(
        [*pinned(1), "node", str(HERE / "load.mjs"), "idle", f"http://127.0.0.1:{port}",
         str(count)], env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert idle.stdout is not None
    if idle.stdout.readline().strip() != "ready":
        raise SystemExit("the idle clients did not connect")
    return idle


def close_idle(idle: subprocess.Popen[str]) -> None:
    assert idle.stdin is not None
    idle.stdin.close()
    idle.wait(timeout=60)


def settle() -> None:
    time.sleep(1.0)  # let the server finish the last handshakes (a measurement pause)


#: the ``--tree`` standing for Node's socket.io server (``node_server.mjs``)
NODE = Path("node")


def wait_for(server: subprocess.Popen[str], marker: str) -> None:
    """Echo the census server's output until a line starting with ``marker``."""
    assert server.stderr is not None
    for line in server.stderr:
        print(line, end="", file=sys.stderr)
        if line.startswith(marker):
            return
    raise SystemExit("the census server ended early")


def measure(tree: Path, count: int, census: bool = False,
            logging: bool = False) -> tuple[float, float]:
    """One run: (total, marginal) KiB per connection for ``count`` connections."""
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(tree), "NODE_PATH": str(NODE_MODULES)}
    script = ("idle_census_server.py" if census else
              "idle_logging_server.py" if logging else "txsio_server.py")
    argv = ([sys.executable, str(HERE / script)] if tree != NODE else
            ["node", str(HERE / "node_server.mjs")])
    server = subprocess.Popen([*pinned(0), *argv, str(port)],
                              env=env, text=True,
                              stdout=None if census else subprocess.DEVNULL,
                              stderr=subprocess.PIPE if census else None)
    clients: list[subprocess.Popen[str]] = []
    try:
        wait_ready(server, port, timeout=120)
        base = rss_kib(server.pid)
        warm = max(count // 10, 1)
        clients.append(open_idle(port, env, warm))
        settle()
        if census:
            server.send_signal(signal.SIGUSR1)  # the census's "before"
            wait_for(server, "before:")
        warm_rss = rss_kib(server.pid)
        clients.append(open_idle(port, env, count - warm))
        settle()
        if census:
            server.send_signal(signal.SIGUSR2)  # the census's "after", printed by the server
            wait_for(server, "census done")
        full = rss_kib(server.pid)
        for idle in clients:
            close_idle(idle)
    finally:
        server.terminate()
        server.wait(timeout=300)
    return (full - base) / count, (full - warm_rss) / (count - warm)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tree", type=Path, nargs="+", default=[ROOT])
    parser.add_argument("--logging", action="store_true")
    parser.add_argument("--census", action="store_true")
    args = parser.parse_args()
    if not NODE_MODULES.is_dir():
        raise SystemExit("tests/node/node_modules is missing: run `npm ci` in tests/node")
    if args.census:
        measure(args.tree[0].resolve(), args.connections[0], census=True)
        return
    rows = []
    for tree in args.tree:
        for count in args.connections:
            totals, marginals = [], []
            for _ in range(args.runs):
                total, marginal = measure(tree if tree == NODE else tree.resolve(), count,
                                          logging=args.logging)
                totals.append(total)
                marginals.append(marginal)
                print(f"{tree} {count:>6}: total {total:5.2f} KiB, marginal {marginal:5.2f} KiB",
                      flush=True)
            rows.append((tree, count, totals, marginals))
    print(f"\n{'tree':40} {'N':>6}  {'total KiB/conn (median; runs)':34} marginal (median)")
    for tree, count, totals, marginals in rows:
        runs = " ".join(f"{t:.2f}" for t in totals)
        print(f"{tree!s:40} {count:>6}  {statistics.median(totals):5.2f} ({runs:24})  "
              f"{statistics.median(marginals):5.2f}")


if __name__ == "__main__":
    main()
