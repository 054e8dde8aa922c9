"""Fan-out rounds of single emits to many idle WebSocket sockets: server CPU per delivery and,
with ``--strace``, the server's system calls per delivery.

Usage (needs tests/node/node_modules; ``--strace`` needs strace and ptrace rights)::

    python bench/fanout_strace.py [--clients 1000] [--seconds 5] [--runs 3] [--strace]
                                  [--txsio CHECKOUT]

The server is bench/txsio_server.py (twisted.web ``Site`` on ``listenTCP``), pinned to CPU 0,
importing txsio from ``--txsio`` (default: this checkout), so that two trees compare with the
same command.  The load generator (bench/fanout_load.mjs, raw Engine.IO on bench/rawws.mjs, CPU 1)
connects the clients, then runs rounds for ``--seconds``: one client emits ``burst`` (1), the
server emits ``news`` once to every socket, and the round ends when all got it.  Each run
prints deliveries per second and server CPU microseconds per delivery; with ``--strace`` the
last run is traced (``strace -c -f -p``) and its table printed with ``sendto`` and
``epoll_ctl`` per delivery (tracing slows the server: its CPU figures are left out of the
medians).  A benchmark, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"


def cpu_ns(pid: int) -> int:
    """The CPU time of process ``pid``'s main thread, in nanoseconds (the scheduler's own
    count: finer than the clock ticks of /proc/PID/stat)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[0])


def on_cpu(cpu: int) -> list[str]:
    """The command prefix pinning to ``cpu`` (none on a one-core machine)."""
    if (os.cpu_count() or 1) < 2:
        return []
    return ["taskset", "-c", str(cpu)]


def strace_counts(table: str) -> dict[str, int]:
    """The calls per system call of a ``strace -c`` table."""
    counts = {}
    for line in table.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[-1].isidentifier() and parts[3].isdigit():
            counts[parts[-1]] = int(parts[3])
    return counts


def one_run(args: argparse.Namespace, trace: bool) -> dict[str, float]:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = int(probe.getsockname()[1])
    env = {**os.environ, "PYTHONPATH": str(Path(args.txsio).resolve()),
           "NODE_PATH": str(NODE_MODULES)}
    server = subprocess.Popen([*on_cpu(0), sys.executable, str(HERE / "txsio_server.py"),
                               str(port)], env=env, text=True, stdout=subprocess.PIPE)
    load = None
    tracer = None
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("the server did not start")
        load = subprocess.Popen(
            [*on_cpu(1), "node", str(HERE / "fanout_load.mjs"),
             f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket",
             str(args.clients), str(args.seconds)],
            env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert load.stdout is not None and load.stdin is not None
        if load.stdout.readline().strip() != "connected":
            raise SystemExit("the clients did not connect")
        time.sleep(0.5)  # let the server settle after the connects (a measurement pause)
        table_file = tempfile.NamedTemporaryFile("r", suffix=".strace")
        if trace:
            tracer = subprocess.Popen(["strace", "-c", "-f", "-p", str(server.pid),
                                       "-o", table_file.name], stderr=subprocess.DEVNULL)
            time.sleep(1.0)  # strace attaches
        before = cpu_ns(server.pid)
        load.stdin.write("go\n")
        load.stdin.flush()
        result: dict[str, float] = json.loads(load.stdout.readline())
        result["cpu_us"] = (cpu_ns(server.pid) - before) / 1e3 / max(result["deliveries"], 1)
        if tracer is not None:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(timeout=30)
            table = table_file.read()
            counts = strace_counts(table)
            print(table.rstrip())
            for name in ("sendto", "epoll_ctl", "epoll_wait"):
                print(f"{name} per delivery: {counts.get(name, 0) / result['deliveries']:.3f}")
        load.wait(timeout=30)
        return result
    finally:
        for proc in (tracer, load, server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--strace", action="store_true", help="trace one more run")
    parser.add_argument("--txsio", default=str(ROOT), help="the checkout to import txsio from")
    args = parser.parse_args()
    if not NODE_MODULES.is_dir():
        raise SystemExit("tests/node/node_modules is missing: run `npm ci` in tests/node")
    results = []
    for run in range(args.runs):
        result = one_run(args, trace=False)
        results.append(result)
        print(f"run {run + 1}: {result['rate']:>8,.0f} deliveries/s, "
              f"{result['cpu_us']:5.2f} us server CPU/delivery ({result['rounds']} rounds)",
              flush=True)
    if results:
        print(f"median: {statistics.median(r['rate'] for r in results):,.0f} deliveries/s, "
              f"{statistics.median(r['cpu_us'] for r in results):.2f} us CPU/delivery")
    if args.strace:
        result = one_run(args, trace=True)
        print(f"traced run: {result['rate']:,.0f} deliveries/s ({result['rounds']} rounds)")


if __name__ == "__main__":
    main()
