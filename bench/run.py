"""txsio against Node's socket.io 4.8, measured in the same run on the same machine.

Usage (after ``bash .ci/run`` or ``npm ci`` in tests/node)::

    python bench/run.py [--clients 50] [--inflight 10] [--seconds 5]
                        [--broadcast-clients 200] [--burst 200] [--rounds 10] [--idle 1000]

Each server runs pinned to CPU 0 and the load generator (npm socket.io-client, WebSocket
only) to CPU 1 when the machine has two.  Three measurements per server:

- echo with ack: ``--clients`` connections each keeping ``--inflight`` emits-with-ack in
  flight for ``--seconds``: acks per second, and server CPU microseconds per ack;
- broadcast: ``--broadcast-clients`` connections; the server emits bursts of ``--burst``
  events to all of them, ``--rounds`` times: deliveries per second, and server CPU
  microseconds per delivery;
- idle memory: the server's resident memory growth per connection for ``--idle`` idle
  WebSocket connections.

Then the ratios txsio / Node.  The numbers compare servers within one invocation on one
machine; they are not absolute.
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


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def run_load(script: str, port: int, env: dict[str, str], *args: object,
             timeout: float = 120) -> dict[str, float]:
    out = subprocess.run(
        [*pinned(1), "node", str(HERE / script), f"http://127.0.0.1:{port}",
         *[str(a) for a in args]],
        env=env, text=True, capture_output=True, timeout=timeout, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(name: str, argv: list[str], args: argparse.Namespace) -> dict[str, float]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NODE_PATH": str(NODE_MODULES)}
    server = subprocess.Popen([*pinned(0), *argv, str(port)], env=env, text=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_ready(server, port)
        # Idle memory first, on a fresh process.
        base = rss_kib(server.pid)
        idle = subprocess.Popen(
            [*pinned(1), "node", str(HERE / "load_idle.mjs"), f"http://127.0.0.1:{port}",
             str(args.idle)], env=env, text=True, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE)
        assert idle.stdout is not None and idle.stdin is not None
        if idle.stdout.readline().strip() != "ready":
            raise SystemExit("the idle clients did not connect")
        time.sleep(1.0)  # let the server settle (a measurement pause, not a test wait)
        per_connection = (rss_kib(server.pid) - base) / args.idle
        idle.stdin.close()
        idle.wait(timeout=30)

        before = cpu_seconds(server.pid)
        echo = run_load("load_ack.mjs", port, env, args.clients, args.inflight, args.seconds,
                        timeout=args.seconds + 60)
        ack_cpu = (cpu_seconds(server.pid) - before) * 1e6 / max(echo["acks"], 1)

        before = cpu_seconds(server.pid)
        bcast = run_load("load_broadcast.mjs", port, env, args.broadcast_clients, args.burst,
                         args.rounds)
        bcast_cpu = (cpu_seconds(server.pid) - before) * 1e6 / max(bcast["deliveries"], 1)
    finally:
        server.terminate()
        server.wait(timeout=10)
    print(f"{name:6} echo {echo['rate']:>8,.0f} acks/s ({ack_cpu:5.1f} us CPU/ack)   "
          f"broadcast {bcast['rate']:>9,.0f} deliveries/s ({bcast_cpu:5.2f} us CPU/delivery)   "
          f"idle {per_connection:5.1f} KiB/connection")
    return {"rate": echo["rate"], "cpu_us": ack_cpu, "bcast": bcast["rate"],
            "bcast_cpu": bcast_cpu, "idle_kib": per_connection}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--broadcast-clients", type=int, default=200)
    parser.add_argument("--burst", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--idle", type=int, default=1000)
    args = parser.parse_args()
    if not NODE_MODULES.is_dir():
        raise SystemExit("tests/node/node_modules is missing: run `npm ci` in tests/node")
    node = measure("node", ["node", str(HERE / "node_server.mjs")], args)
    txsio = measure("txsio", [sys.executable, str(HERE / "txsio_server.py")], args)
    print(f"txsio/node: echo throughput {txsio['rate'] / node['rate']:.2f}, "
          f"CPU per ack {txsio['cpu_us'] / node['cpu_us']:.2f}; "
          f"broadcast deliveries/s {txsio['bcast'] / node['bcast']:.2f}, "
          f"CPU per delivery {txsio['bcast_cpu'] / node['bcast_cpu']:.2f}; "
          f"idle memory per connection {txsio['idle_kib'] / node['idle_kib']:.2f}")


if __name__ == "__main__":
    main()
