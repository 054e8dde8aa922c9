"""Echo with ack over long-polling, and connects per second, against the bare floors and Node.

Usage::

    python bench/poll_connect.py [--runs 3] [--seconds 5] [--sessions 50] [--parallel 20]
                                 [--servers node,floor,txsio,txsio-site]
                                 [--tree label=/path/to/checkout ...]

Servers (each pinned to CPU 0, the load generator to CPU 1): ``node`` (socket.io 4.8,
``node_server.mjs``), ``floor`` (bare twisted.web + Autobahn, ``floor_server.py``), ``txsio``
(``txsio_server.py``: a plain ``Site``) and ``txsio-site`` (``txsio_site_server.py``: an
``EngineSite``).  The txsio servers run once per ``--tree`` (default: this checkout), so one
invocation compares two commits.  Scenarios: ``load_polling.mjs`` (acks per second) and
``load_connect.mjs`` (handshake + CONNECT per second), with the server's CPU time per
operation (``/proc/PID/stat`` utime + stime).  Prints one line per run and a table of medians.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import HERE, NODE_MODULES, ROOT, cpu_seconds, free_port, pinned, run_load, wait_ready

SCRIPTS = {"node": ["node", str(HERE / "node_server.mjs")],
           "floor": [sys.executable, str(HERE / "floor_server.py")],
           "txsio": [sys.executable, str(HERE / "txsio_server.py")],
           "txsio-site": [sys.executable, str(HERE / "txsio_site_server.py")]}


@contextmanager
def serving(argv: list[str], tree: Path) -> Iterator[tuple[int, int, dict[str, str]]]:
    """A server started from ``argv`` with ``tree`` first on its path: (port, pid, env)."""
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(tree), NODE_PATH=str(NODE_MODULES))
    with subprocess.Popen([*pinned(0), *argv, str(port)], env=env, text=True,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as server:
        try:
            wait_ready(server, port)
            yield port, server.pid, env
        finally:
            server.terminate()
            server.wait(timeout=10)


def one(argv: list[str], tree: Path, scenario: str,
        args: argparse.Namespace) -> tuple[float, float]:
    """One scenario against a fresh server: (operations per second, CPU microseconds per
    operation)."""
    script, count, width = {"polling": ("load_polling.mjs", "acks", args.sessions),
                            "connect": ("load_connect.mjs", "connects", args.parallel)}[scenario]
    with serving(argv, tree) as (port, pid, env):
        before = cpu_seconds(pid)
        out = run_load(script, port, env, width, args.seconds, timeout=args.seconds + 60)
        cpu = (cpu_seconds(pid) - before) * 1e6 / max(out[count], 1)
    return out["rate"], cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--parallel", type=int, default=20)
    parser.add_argument("--servers", default="node,floor,txsio,txsio-site")
    parser.add_argument("--scenarios", default="polling,connect")
    parser.add_argument("--tree", action="append", default=[],
                        help="label=path of a txsio checkout (repeatable; default: this one)")
    args = parser.parse_args()
    trees = dict(t.split("=", 1) for t in args.tree) or {"this": str(ROOT)}
    rows: list[tuple[str, str]] = []
    for name in args.servers.split(","):
        if name.startswith("txsio"):
            rows += [(f"{name}@{label}", name) for label in trees]
        else:
            rows.append((name, name))
    results: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for run in range(args.runs):
        for scenario in args.scenarios.split(","):
            for row, name in rows:
                label = row.partition("@")[2]
                tree = Path(trees[label]) if label else ROOT
                rate, cpu = one(SCRIPTS[name], tree, scenario, args)
                results.setdefault((row, scenario), []).append((rate, cpu))
                print(f"run {run + 1} {scenario:8} {row:22} {rate:>8,.0f}/s "
                      f"{cpu:8.1f} us CPU/op", flush=True)
    print(f"\nmedians of {args.runs} run(s)")
    print(f"{'server':22} {'scenario':8} {'ops/s':>8} {'us CPU/op':>10} {'/node':>6} {'/floor':>7}")
    for scenario in args.scenarios.split(","):
        med = {row: (statistics.median(r for r, _ in results[(row, scenario)]),
                     statistics.median(c for _, c in results[(row, scenario)]))
               for row, _ in rows}
        for row, _ in rows:
            rate, cpu = med[row]
            node = f"{rate / med['node'][0]:.2f}" if "node" in med else "-"
            floor = f"{rate / med['floor'][0]:.2f}" if "floor" in med else "-"
            print(f"{row:22} {scenario:8} {rate:>8,.0f} {cpu:>10.1f} {node:>6} {floor:>7}")


if __name__ == "__main__":
    main()
