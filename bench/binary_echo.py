"""Binary echo: txsio (and Node's socket.io 4.8) acknowledging 64 KiB attachments.

Usage (next to :mod:`run`, whose servers and helpers it uses)::

    python bench/binary_echo.py [--clients 20] [--inflight 4] [--seconds 5] [--size 65536]
                                [--runs 3] [--no-node]

Each server runs pinned to CPU 0, the load generator (npm socket.io-client, WebSocket only,
``load_binary.mjs``) to CPU 1.  Per run: echoes per second, MB/s each way, and server CPU
microseconds per echo; then the medians of ``--runs`` runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import HERE, NODE_MODULES, ROOT, cpu_seconds, free_port, pinned


def measure(argv: list[str], args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODE_PATH": str(NODE_MODULES)}
    server = subprocess.Popen([*pinned(0), *argv, str(port)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert server.stdout is not None
        if server.stdout.readline().strip() != "ready":  # both servers say so when listening
            raise SystemExit(f"{argv[-1]} did not start")
        before = cpu_seconds(server.pid)
        out = subprocess.run(
            [*pinned(1), "node", str(HERE / "load_binary.mjs"), f"http://127.0.0.1:{port}",
             *[str(a) for a in (args.clients, args.inflight, args.seconds, args.size)]],
            env=env, text=True, capture_output=True, timeout=args.seconds + 60)
        cpu = cpu_seconds(server.pid) - before
    finally:
        server.terminate()
        server.wait(timeout=10)
    if out.returncode:
        raise SystemExit(f"the load generator failed: {out.stderr.strip()[-500:]}")
    echo: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return {"rate": echo["rate"], "mbps": echo["mbps"], "cpu_us": cpu * 1e6 / max(echo["acks"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--inflight", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--size", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-node", action="store_true", help="measure txsio only")
    args = parser.parse_args()
    servers = {"txsio": [sys.executable, str(HERE / "txsio_server.py")]}
    if not args.no_node:
        servers["node"] = ["node", str(HERE / "node_server.mjs")]
    for name, argv in servers.items():
        runs = [measure(argv, args) for _ in range(args.runs)]
        for r in runs:
            print(f"{name:6} binary echo {r['rate']:>7,.0f} echoes/s {r['mbps']:>5,.0f} MB/s "
                  f"({r['cpu_us']:6.1f} us CPU/echo)")
        print(f"{name:6} median      {statistics.median(r['rate'] for r in runs):>7,.0f} "
              f"echoes/s {statistics.median(r['mbps'] for r in runs):>5,.0f} MB/s "
              f"({statistics.median(r['cpu_us'] for r in runs):6.1f} us CPU/echo)")


if __name__ == "__main__":
    main()
