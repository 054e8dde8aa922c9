"""Echo-with-ack throughput and CPU per ack: txsio against Node's socket.io, same run.

Usage (after ``bash .ci/run`` or ``npm ci`` in tests/node)::

    python bench/run.py [--clients 50] [--inflight 10] [--seconds 5]

Each server runs pinned to CPU 0 and the load generator (npm socket.io-client, WebSocket only,
``--clients`` connections each keeping ``--inflight`` emits-with-ack in flight) to CPU 1 when
the machine has two.  Prints one line per server (acks per second, server CPU microseconds per
ack) and the ratios txsio / Node.  The numbers are for comparing servers in one invocation on
one machine, not absolute.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if (os.cpu_count() or 1) > 1 else []


def wait_ready(proc: subprocess.Popen[str], port: int, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited early: {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("server did not start")


def measure(name: str, argv: list[str], args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODE_PATH": str(NODE_MODULES)}
    server = subprocess.Popen([*pinned(0), *argv, str(port)], env=env, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(server, port)
        before = cpu_seconds(server.pid)
        out = subprocess.run(
            [*pinned(1), "node", str(HERE / "load_ack.mjs"), f"http://127.0.0.1:{port}",
             str(args.clients), str(args.inflight), str(args.seconds)],
            env=env, text=True, capture_output=True, timeout=args.seconds + 60, check=True)
        after = cpu_seconds(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=10)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    cpu_us = (after - before) * 1e6 / max(result["acks"], 1)
    print(f"{name:8} {result['rate']:>9,} acks/s  {cpu_us:6.1f} us server CPU per ack")
    return {"rate": float(result["rate"]), "cpu_us": cpu_us}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5)
    args = parser.parse_args()
    if not NODE_MODULES.is_dir():
        raise SystemExit("tests/node/node_modules is missing: run `npm ci` in tests/node")
    node = measure("node", ["node", str(HERE / "node_server.mjs")], args)
    txsio = measure("txsio", [sys.executable, str(HERE / "txsio_server.py")], args)
    print(f"txsio/node: throughput {txsio['rate'] / node['rate']:.2f}, "
          f"CPU per ack {txsio['cpu_us'] / node['cpu_us']:.2f}")


if __name__ == "__main__":
    main()
