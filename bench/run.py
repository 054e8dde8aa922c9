"""txsio against Node's socket.io 4.8, python-socketio and the bare Twisted floors, in one run.

Usage (after ``pip install -e .[bench]`` and ``npm ci`` in tests/node)::

    python bench/run.py [--runs 3] [--scenarios ack,fanout,...] [--servers txsio,node,...]
    python bench/run.py --profile --scenarios fanout     # txsio under py-spy: its top frames

Every measurement starts a fresh server pinned to CPU 0 and a load generator
(``bench/load.mjs``: raw Engine.IO/Socket.IO framing over a minimal WebSocket client of its
own, ``bench/rawws.mjs``, or Node's http with keep-alive for polling; ``LOAD_CLIENT=ws`` in the
environment runs the WebSocket modes on the ``ws`` package instead) pinned to CPU 1.  The
generator opens its connections, then the measured window begins; the server's CPU time
(user + system, all threads, from ``/proc``) over that window divided by the operations done
in it is its CPU cost per operation.  The generator's CPU time is read the same way: its CPU
per operation, and its busy share (CPU seconds / wall seconds of the window).  A generator
busy 90% of the window or more (``GEN_BOUND``) is the bound of that row, marked "gen-bound"
(``gen_mark`` in ``--json``): the server could have gone faster, and a ratio of rates then
understates the gen-bound side (the faster server, when only one of the two is gen-bound).
On a shared machine the generator may instead wait for a CPU that other processes hold: the
share of the window its main thread waited, runnable (``/proc/PID/schedstat``), is "gen
wait", and busy + wait >= 90% marks the row "gen-starved" (the machine's load set its rate).

Scenarios (``--scenarios``; the default is all but ``burst``):

- ``ack``: echo with ack over WebSocket, ``--clients`` sockets each keeping ``--inflight``
  emits in flight for ``--seconds``: acks per second;
- ``fanout``: ``--fanout-sockets`` sockets in one room; one emit to the room per round, the
  next round when every socket got it (round-trip bound): deliveries per second;
- ``binary``: echo with ack of one ``--binary-size`` attachment, ``--binary-sockets`` x
  ``--binary-inflight``: MB per second each way;
- ``connect``: Engine.IO handshake + Socket.IO CONNECT over WebSocket, then close, from
  ``--connect-concurrency`` loops: connects per second;
- ``idle``: resident memory growth per idle WebSocket connection, for each count in ``--idle``
  (default 2000,10000; ``RLIMIT_NOFILE`` is raised to its hard limit for that);
- ``polling``: echo with ack over HTTP long-polling, ``--poll-sessions`` x ``--poll-inflight``;
- ``burst`` (the earlier broadcast figure): ``--broadcast-clients`` sockets, bursts of
  ``--burst`` emits to all of them, ``--rounds`` times.  Bursts let Twisted coalesce many
  messages into one ``send()`` per socket; ``fanout`` shows the cost of single emits.

Servers (``--servers``): ``txsio`` (``txsio_server.py``, importing txsio from ``--txsio-path``,
by default this tree), ``node`` (socket.io 4.8 from tests/node/node_modules),
``python-socketio`` (5.x, ASGI on uvicorn) and ``floor``: bare Twisted + Autobahn for the
WebSocket scenarios (``floor_ws.py``), a bare twisted.web Resource for polling
(``floor_polling.py``), each speaking just enough of the protocol for the generator.  On
request only, ``pyfloor``: ``floor_python.py``, no framework at all (the standard library's
epoll and sockets) for ``ack``, ``fanout`` and ``connect``: the kernel's cost plus a bare
Python loop, under which no Python server goes.

The table gives, per scenario and server, the median over ``--runs`` of the throughput, of
the server CPU microseconds per operation (KiB per connection for ``idle``), the ratios to
Node's figures, and the generator's CPU microseconds per operation and busy share.  The
numbers compare servers within one invocation on one machine; they are not absolute, and a
shared machine makes them noisy (CPU per operation is the steadier one).

``--profile`` runs only txsio, once per selected scenario, with ``py-spy record`` attached for
the measured window, and prints the functions with the most samples (own and inclusive).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"


@dataclass(frozen=True)
class Scenario:
    """One row of the table: which generator mode it runs and how its figures read."""

    key: str
    label: str
    #: the throughput's unit; "" for a memory scenario
    unit: str
    #: the generator's operation, for "us CPU per ..."
    op: str
    polling: bool = False
    #: for a memory scenario, how many idle connections
    idle: int = 0


@dataclass
class Figure:
    """One measurement of one server in one scenario."""

    rate: float = 0.0
    cpu_us: float = 0.0
    kib: float = 0.0
    #: the load generator's CPU microseconds per operation, over the same window
    gen_cpu_us: float = 0.0
    #: the generator's CPU seconds / the window's wall seconds (1.0: one core all the time)
    gen_busy: float = 0.0
    #: the share of the window the generator's main thread waited, runnable, for a CPU that
    #: other processes held (a shared machine)
    gen_wait: float = 0.0
    error: str = ""


@dataclass
class Table:
    """Every figure, by scenario key and server name, in run order."""

    figures: dict[tuple[str, str], list[Figure]] = field(default_factory=dict)

    def add(self, scenario: str, server: str, figure: Figure) -> None:
        self.figures.setdefault((scenario, server), []).append(figure)


SERVERS = ("txsio", "node", "python-socketio", "floor", "pyfloor")
#: the servers run unless ``--servers`` says otherwise
DEFAULT_SERVERS = ("txsio", "node", "python-socketio", "floor")
#: the scenarios ``pyfloor`` (``floor_python.py``) speaks
PYFLOOR_SCENARIOS = ("ack", "fanout", "connect")
#: the generator's busy share from which it, not the server, is taken to bound a row
GEN_BOUND = 0.9
ALL_SCENARIOS = ("ack", "fanout", "binary", "connect", "idle", "polling", "burst")
DEFAULT_SCENARIOS = ("ack", "fanout", "binary", "connect", "idle", "polling")


def scenarios_for(names: list[str], args: argparse.Namespace) -> list[Scenario]:
    """The selected scenarios in table order, ``idle`` expanded to one per count."""
    table: list[Scenario] = []
    for name in ALL_SCENARIOS:
        if name not in names:
            continue
        if name == "ack":
            table.append(Scenario("ack", f"echo+ack ws {args.clients}x{args.inflight}",
                                  "acks/s", "ack"))
        elif name == "fanout":
            table.append(Scenario("fanout", f"fan-out {args.fanout_sockets} in a room",
                                  "deliveries/s", "delivery"))
        elif name == "binary":
            table.append(Scenario("binary", f"binary echo {args.binary_size // 1024} KiB",
                                  "MB/s", "echo"))
        elif name == "connect":
            table.append(Scenario("connect", "connect (handshake+CONNECT)", "connects/s",
                                  "connect"))
        elif name == "idle":
            for count in args.idle:
                table.append(Scenario(f"idle-{count}", f"idle memory, {count:,} ws", "", "",
                                      idle=count))
        elif name == "polling":
            table.append(Scenario("polling", f"echo+ack polling {args.poll_sessions}x"
                                  f"{args.poll_inflight}", "acks/s", "ack", polling=True))
        elif name == "burst":
            table.append(Scenario("burst", f"burst {args.broadcast_clients}x{args.burst}",
                                  "deliveries/s", "delivery"))
    return table


# -- processes ----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def run_delay_seconds(pid: int) -> float:
    """How long process ``pid``'s main thread has waited, runnable, for a CPU (the
    scheduler's ``run_delay``, 0 where the kernel keeps no schedstats)."""
    try:
        return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


#: whether servers go to CPU 0 and generators to CPU 1 (``--no-pin`` turns it off)
PIN = {"on": True}


def pinned(cpu: int) -> list[str]:
    """The ``taskset`` prefix that keeps a process on ``cpu``, when pinning is possible."""
    if not PIN["on"] or (os.cpu_count() or 1) < 2 or shutil.which("taskset") is None:
        return []
    return ["taskset", "-c", str(cpu)]


def raise_nofile(needed: int) -> None:
    """Raise this process's descriptor limit (children inherit it) as far as ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, needed))
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if hard != resource.RLIM_INFINITY and hard < needed:
        print(f"warning: RLIMIT_NOFILE hard limit {hard} < {needed}: raise it (ulimit -Hn) "
              "for the largest idle count", file=sys.stderr)


class Lines:
    """A child's stdout read line by line on a thread, so that waits can be bounded."""

    def __init__(self, stream: IO[str]) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def next(self, timeout: float, what: str) -> str:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"no {what} within {timeout:.0f} s") from None
        if line is None:
            raise RuntimeError(f"the load generator ended before its {what}")
        return line


def wait_ready(process: subprocess.Popen[str], port: int, timeout: float = 15.0) -> None:
    """Return once ``process`` accepts connections on ``port``; raise ``RuntimeError`` if it
    exits or ``timeout`` seconds pass first (the scripts beside this one use it too)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early ({process.returncode})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def run_load(script: str, port: int, env: dict[str, str], *args: object,
             timeout: float = 120) -> dict[str, float]:
    """Run the Node load generator ``script`` (in bench/) against ``port`` on CPU 1; return
    the JSON object its last line prints."""
    out = subprocess.run(
        [*pinned(1), "node", str(HERE / script), f"http://127.0.0.1:{port}",
         *[str(a) for a in args]],
        env=env, text=True, capture_output=True, timeout=timeout, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


class ServerProcess:
    """A benchmark server started on a free port, pinned to CPU 0; stopped on exit."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.port = free_port()
        self.errors = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [*pinned(0), *argv, str(self.port)], env=env, text=True,
            stdout=subprocess.DEVNULL, stderr=self.errors)
        self.pid = self.process.pid

    def __enter__(self) -> ServerProcess:
        try:
            wait_ready(self.process, self.port, timeout=30)
        except RuntimeError as e:
            raise RuntimeError(f"{e}: {self.stderr()}") from None
        return self

    def __exit__(self, *exc: object) -> None:
        # Nothing of a benchmark server's state matters once measured: no graceful stop
        # (Twisted's takes a few hundred milliseconds of every measurement).
        self.process.kill()
        self.process.wait()
        self.errors.close()

    def stderr(self) -> str:
        self.errors.seek(0)
        return self.errors.read()[-2000:]


class Generator:
    """``node bench/load.mjs <mode> ...`` pinned to CPU 1, driven over its stdin/stdout."""

    def __init__(self, mode: str, port: int, env: dict[str, str], *args: object) -> None:
        self.process = subprocess.Popen(
            [*pinned(1), "node", str(HERE / "load.mjs"), mode, f"http://127.0.0.1:{port}",
             *[str(a) for a in args]],
            env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stdin is not None
        self.lines = Lines(self.process.stdout)
        self.stdin = self.process.stdin

    def wait_ready(self, timeout: float) -> None:
        line = self.lines.next(timeout, "connections")
        if line != "ready":
            raise RuntimeError(f"load generator said {line!r}")

    def go(self, timeout: float) -> dict[str, float]:
        self.stdin.write("go\n")
        self.stdin.flush()
        result: dict[str, float] = json.loads(self.lines.next(timeout, "result"))
        return result

    def close(self) -> str:
        """End the generator; return the tail of what it wrote to stderr."""
        try:
            self.stdin.close()
        except OSError:
            pass
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        assert self.process.stderr is not None
        return self.process.stderr.read()[-2000:]


# -- one measurement ----------------------------------------------------------------------------

def server_argv(server: str, scenario: Scenario) -> list[str]:
    if server == "txsio":
        return [sys.executable, str(HERE / "txsio_server.py")]
    if server == "node":
        return ["node", str(HERE / "node_server.mjs")]
    if server == "python-socketio":
        return [sys.executable, str(HERE / "psio_server.py")]
    if server == "pyfloor":
        return [sys.executable, str(HERE / "floor_python.py")]
    floor = "floor_polling.py" if scenario.polling else "floor_ws.py"
    return [sys.executable, str(HERE / floor)]


def generator_args(scenario: Scenario, args: argparse.Namespace) -> tuple[str, list[object]]:
    key = scenario.key
    if key == "ack":
        return "ack", [args.clients, args.inflight, args.seconds]
    if key == "fanout":
        return "fanout", [args.fanout_sockets, args.seconds]
    if key == "binary":
        return "binary", [args.binary_sockets, args.binary_inflight, args.binary_size,
                          args.seconds]
    if key == "connect":
        return "connect", [args.connect_concurrency, args.seconds]
    if key == "polling":
        return "polling", [args.poll_sessions, args.poll_inflight, args.seconds]
    if key == "burst":
        return "burst", [args.broadcast_clients, args.burst, args.rounds]
    return "idle", [scenario.idle]


def measure(server: str, scenario: Scenario, args: argparse.Namespace,
            profile: Path | None = None) -> Figure:
    """Start ``server``, load it as ``scenario`` says, and return what was measured."""
    env = {**os.environ, "PYTHONPATH": str(args.txsio_path), "NODE_PATH": str(NODE_MODULES)}
    mode, load_args = generator_args(scenario, args)
    # Connecting takes longer with more connections, and on a loaded machine.
    setup_timeout = 60 + max(scenario.idle, args.fanout_sockets) / 50
    with ServerProcess(server_argv(server, scenario), env) as srv:
        base = rss_kib(srv.pid)
        gen = Generator(mode, srv.port, env, *load_args)
        spy = None
        try:
            gen.wait_ready(setup_timeout)
            if scenario.idle:
                time.sleep(args.settle)  # the server settles: a measurement pause
                return Figure(kib=(rss_kib(srv.pid) - base) / scenario.idle)
            if profile is not None:
                spy = start_profiler(srv.pid, profile)
            before, gen_before = cpu_seconds(srv.pid), cpu_seconds(gen.process.pid)
            wait_before = run_delay_seconds(gen.process.pid)
            wall_before = time.monotonic()
            result = gen.go(args.seconds + 120)
            cpu, gen_cpu = cpu_seconds(srv.pid) - before, cpu_seconds(gen.process.pid) - gen_before
            gen_wait = run_delay_seconds(gen.process.pid) - wait_before
            wall = time.monotonic() - wall_before
        except (RuntimeError, ValueError) as e:
            raise RuntimeError(f"{e}\n{gen.close()}\n{srv.stderr()}") from None
        finally:
            if spy is not None:
                stop_profiler(spy)
            tail = gen.close()
        if gen.process.returncode:
            raise RuntimeError(f"load generator failed: {tail}\n{srv.stderr()}")
    ops = max(result["ops"], 1)
    rate = result["mbytes_per_s"] if scenario.key == "binary" else result["rate"]
    return Figure(rate=rate, cpu_us=cpu * 1e6 / ops, gen_cpu_us=gen_cpu * 1e6 / ops,
                  gen_busy=gen_cpu / wall if wall > 0 else 0.0,
                  gen_wait=gen_wait / wall if wall > 0 else 0.0)


# -- profiling ----------------------------------------------------------------------------------

def start_profiler(pid: int, out: Path) -> subprocess.Popen[bytes]:
    spy = subprocess.Popen(
        [*pinned(1), "py-spy", "record", "--pid", str(pid), "--rate", "250", "--function",
         "--nonblocking", "--format", "raw", "-o", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)  # py-spy attaches before the measured window opens
    if spy.poll() is not None:
        assert spy.stderr is not None
        raise RuntimeError(f"py-spy failed: {spy.stderr.read().decode()[-1000:]}")
    return spy


def stop_profiler(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)
    try:
        spy.wait(timeout=60)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


def top_frames(collapsed: str, top: int) -> str:
    """The functions with the most samples in py-spy's raw (collapsed) output."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    if not total:
        return "  (no samples)"
    lines = [f"  {total} samples while busy; own time:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  inclusive (the frame or anything it called):")
    # The reactor's loop and the module run under everything: skip frames above 95%.
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in inclusive.most_common()
              if n < 0.95 * total][:top]
    return "\n".join(lines)


def profile(scenarios: list[Scenario], args: argparse.Namespace) -> None:
    if shutil.which("py-spy") is None:
        raise SystemExit("py-spy is not installed: pip install -e .[bench]")
    for scenario in scenarios:
        if scenario.idle:
            print(f"{scenario.label}: a memory figure, nothing to profile (see tracemalloc)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "profile.txt"
            figure = measure("txsio", scenario, args, profile=out)
            print(f"== {scenario.label}: txsio under py-spy: {figure.rate:,.0f} "
                  f"{scenario.unit}, {figure.cpu_us:.1f} us CPU/{scenario.op} "
                  "(the profiler's cost included)")
            print(top_frames(out.read_text() if out.exists() else "", args.profile_top))


# -- the table ----------------------------------------------------------------------------------

def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def summary(figures: list[Figure]) -> tuple[Figure, int]:
    """The medians of the successful runs, and how many failed."""
    good = [f for f in figures if not f.error]
    return Figure(rate=median([f.rate for f in good]), cpu_us=median([f.cpu_us for f in good]),
                  kib=median([f.kib for f in good]),
                  gen_cpu_us=median([f.gen_cpu_us for f in good]),
                  gen_busy=median([f.gen_busy for f in good]),
                  gen_wait=median([f.gen_wait for f in good])), len(figures) - len(good)


def ratio(figures: list[Figure], node: list[Figure] | None, metric: str) -> str:
    """The median over runs of ``metric`` / Node's ``metric`` in the same run.

    Each run measures every server within minutes, so a same-run ratio cancels most of what
    a shared machine's load does to both; runs where either failed are left out.
    """
    if not node:
        return "-"
    ratios = [getattr(f, metric) / getattr(n, metric) for f, n in zip(figures, node, strict=False)
              if not f.error and not n.error and getattr(n, metric)]
    return f"{median(ratios):.2f}" if ratios else "-"


def generator_mark(figure: Figure) -> str:
    """"gen-bound", "gen-starved" or "": what a figure's generator shares say of its rate."""
    if figure.gen_busy >= GEN_BOUND:
        return "gen-bound"
    if figure.gen_busy + figure.gen_wait >= GEN_BOUND:
        return "gen-starved"
    return ""


LEGEND = f"""\
us CPU/op: the server's CPU (user+sys) per operation; gen us/op, gen busy: the load
generator's CPU per operation and its CPU seconds / wall seconds over the same window;
gen wait: the share of the window its main thread was runnable but waiting for a CPU.
gen-bound: the generator was busy >= {GEN_BOUND:.0%} of the window (the median), so it, not the
server, set the rate: that server's rate is a lower bound, and a rate/node ratio understates
the side that is gen-bound (the faster server, when only one is); if both are, the rates say
little: compare us CPU/op.  gen-starved: busy + wait >= {GEN_BOUND:.0%}: the generator ran or
waited for a CPU held by other processes all the time, so the machine's other load set the
rate; read that row's rates the same way."""


def print_table(table: Table, scenarios: list[Scenario], servers: list[str], runs: int) -> None:
    print(f"\n== medians over {runs} run(s); ratios: the median of server / node in each run "
          "(idle rows: KiB per connection, and its ratio) ==")
    print(f"{'scenario':30} {'server':16} {'throughput':>22} {'us CPU/op':>10} "
          f"{'rate/node':>9} {'CPU/node':>9} {'gen us/op':>10} {'gen busy':>8} {'gen wait':>8}")
    for scenario in scenarios:
        node = table.figures.get((scenario.key, "node"))
        for i, server in enumerate(servers):
            first = scenario.label if i == 0 else ""
            figures = table.figures.get((scenario.key, server), [])
            if not figures:
                continue  # not run: a scenario this server does not speak
            figure, failed = summary(figures)
            note = f"  ({failed} run(s) failed)" if failed else ""
            if failed == len(figures):
                print(f"{first:30} {server:16} {'failed':>22}{note}")
            elif scenario.idle:
                print(f"{first:30} {server:16} {figure.kib:>14.1f} KiB/conn {'':>10} "
                      f"{ratio(figures, node, 'kib'):>9} {'':>9}{note}")
            else:
                throughput = f"{figure.rate:,.{1 if figure.rate < 100 else 0}f} {scenario.unit}"
                mark = generator_mark(figure)
                print(f"{first:30} {server:16} {throughput:>22} {figure.cpu_us:>10.2f} "
                      f"{ratio(figures, node, 'rate'):>9} "
                      f"{ratio(figures, node, 'cpu_us'):>9} {figure.gen_cpu_us:>10.2f} "
                      f"{figure.gen_busy:>8.0%} {figure.gen_wait:>8.0%}"
                      f"{'  ' + mark if mark else ''}{note}")
    print(LEGEND)


def describe(scenario: Scenario, figure: Figure) -> str:
    if figure.error:
        return "failed: " + figure.error.strip().splitlines()[0][:200]
    if scenario.idle:
        return f"{figure.kib:.1f} KiB/connection"
    mark = generator_mark(figure)
    return (f"{figure.rate:,.1f} {scenario.unit}, {figure.cpu_us:.2f} us CPU/{scenario.op}; "
            f"generator {figure.gen_cpu_us:.2f} us/{scenario.op}, {figure.gen_busy:.0%} busy, "
            f"{figure.gen_wait:.0%} waiting{', ' + mark if mark else ''}")


# -- command line -------------------------------------------------------------------------------

def names(text: str, allowed: tuple[str, ...]) -> list[str]:
    chosen = [n.strip() for n in text.split(",") if n.strip()]
    unknown = sorted(set(chosen) - set(allowed))
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown {unknown}; choose from {', '.join(allowed)}")
    return chosen


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (the median)")
    parser.add_argument("--scenarios", type=lambda t: names(t, ALL_SCENARIOS),
                        default=list(DEFAULT_SCENARIOS),
                        help=f"comma-separated, of {', '.join(ALL_SCENARIOS)}")
    parser.add_argument("--servers", type=lambda t: names(t, SERVERS),
                        default=list(DEFAULT_SERVERS),
                        help=f"comma-separated, of {', '.join(SERVERS)}")
    parser.add_argument("--seconds", type=float, default=5, help="each timed window")
    parser.add_argument("--clients", type=int, default=50, help="ack: sockets")
    parser.add_argument("--inflight", type=int, default=10, help="ack: emits in flight each")
    parser.add_argument("--fanout-sockets", type=int, default=1000)
    parser.add_argument("--binary-sockets", type=int, default=10)
    parser.add_argument("--binary-inflight", type=int, default=2)
    parser.add_argument("--binary-size", type=int, default=65536, help="bytes per attachment")
    parser.add_argument("--connect-concurrency", type=int, default=10)
    parser.add_argument("--idle", type=lambda t: [int(n) for n in t.split(",")],
                        default=[2000, 10000], help="idle: connection counts, comma-separated")
    parser.add_argument("--settle", type=float, default=1.0,
                        help="idle: seconds between connecting and reading the memory")
    parser.add_argument("--poll-sessions", type=int, default=50)
    parser.add_argument("--poll-inflight", type=int, default=1)
    parser.add_argument("--broadcast-clients", type=int, default=200, help="burst: sockets")
    parser.add_argument("--burst", type=int, default=200, help="burst: emits per round")
    parser.add_argument("--rounds", type=int, default=10, help="burst: rounds")
    parser.add_argument("--txsio-path", type=Path, default=ROOT,
                        help="the tree txsio is imported from (another checkout to compare)")
    parser.add_argument("--no-pin", action="store_true",
                        help="let the scheduler place server and generator (on a machine "
                        "whose CPU 1 is busy with other work, pinning slows round trips)")
    parser.add_argument("--json", type=Path, help="also write every figure to this file")
    parser.add_argument("--profile", action="store_true",
                        help="run txsio once per scenario under py-spy; print its top frames")
    parser.add_argument("--profile-top", type=int, default=25)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    PIN["on"] = not args.no_pin
    if not NODE_MODULES.is_dir():
        raise SystemExit("tests/node/node_modules is missing: run `npm ci` in tests/node")
    scenarios = scenarios_for(args.scenarios, args)
    # The server and the generator each hold one descriptor per connection, and more.
    raise_nofile(max([s.idle for s in scenarios] + [args.fanout_sockets]) + 1000)
    if args.profile:
        profile(scenarios, args)
        return 0
    servers = [s for s in SERVERS if s in args.servers]
    table = Table()
    for run in range(1, args.runs + 1):
        for scenario in scenarios:
            for server in servers:
                if server == "pyfloor" and scenario.key not in PYFLOOR_SCENARIOS:
                    continue
                try:
                    figure = measure(server, scenario, args)
                except (RuntimeError, OSError, subprocess.SubprocessError) as e:
                    figure = Figure(error=str(e))
                table.add(scenario.key, server, figure)
                print(f"run {run}/{args.runs}  {scenario.label:30} {server:16} "
                      f"{describe(scenario, figure)}", flush=True)
    print_table(table, scenarios, servers, args.runs)
    if args.json:
        args.json.write_text(json.dumps(
            {f"{scenario}/{server}": [{**vars(f), "gen_mark": generator_mark(f)}
                                      for f in figures]
             for (scenario, server), figures in table.figures.items()}, indent=1))
    failed = [f.error for figures in table.figures.values() for f in figures if f.error]
    for error in failed:
        print(f"\nfailed: {error}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
