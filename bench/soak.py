"""Soak: many WebSocket connections held for minutes against a txsio server, by hand.

Usage (after ``npm ci`` in tests/node)::

    python3 bench/soak.py --connections 10000 --minutes 10

The server (``bench/soak_server.py``: echo with ack, rooms, periodic broadcasts, probes and
polls with acks) runs pinned to CPU 0 and the load (``bench/soak_load.mjs``: raw Engine.IO
framing on npm's ``ws``) to CPU 1 when the machine has two.  Among the connections, a fraction
churn (hold a few seconds, leave by a Socket.IO disconnect, a WebSocket close or a dropped TCP
connection, connect again) and a fraction are slow consumers (stop reading for a few seconds,
then read again; they get a ``bulk`` broadcast to fall behind on).  Everyone answers the
heartbeat; a trickle of emits with ack goes out and every answer is checked.

Reported at the baseline (after a warm-up, no client), at the start (every connection open),
every ``--report-every`` seconds, at the end (load stopped, every ack settled) and after every
client left: the server's resident memory and open descriptors (from /proc), its event-loop
lag (max and average since the previous line), sessions, acks sent / answered / lost, and the
disconnect reasons.  The verdict: nothing lost (every ack answered, no gap in the tick
sequence), no client dropped (a slow consumer disconnected past the send buffer's bound is
reported, with its pending acks, and does not fail the run) and nothing leaked (sessions,
sockets and rooms back to 0, descriptors back to the baseline).  Memory is reported, not
judged, as resident memory (freed memory need not go back to the system: Python keeps partly
used arenas) and as what is still allocated after a garbage collection, Python's small blocks
and malloc's bytes: a leak grows those with the connections.

``--json`` adds one JSON line at the end (``{"event": "summary", ...}``) for
tests/test_soak_smoke.py, which runs this script small.  Exit status 1 when the verdict fails.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import IO, Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
NODE_MODULES = ROOT / "tests" / "node" / "node_modules"
#: descriptors a process keeps beside its connections (listener, epoll, pipes, logs)
FD_MARGIN = 200
#: why the server saw clients go when they left on purpose (churn, the end of the run)
LEAVING = {"transport close", "client namespace disconnect"}
#: why it may drop a client by design: a slow consumer past the send buffer's bound
BY_DESIGN = {"send buffer full"}
#: seconds the server has to close everything once every client left
SETTLE = 30.0


def pinned(cpu: int) -> list[str]:
    if (os.cpu_count() or 1) > 1 and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)]
    return []


def proc_status(pid: int) -> dict[str, float]:
    """Resident memory now and at its peak (MiB), and open descriptors, of process *pid*."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mib": fields["VmRSS"], "peak_rss_mib": fields["VmHWM"],
            "fds": float(len(os.listdir(f"/proc/{pid}/fd")))}


def ns_range(text: str) -> list[float]:
    lo, _, hi = text.partition(",")
    return [float(lo), float(hi or lo)]


class Lines:
    """The JSON lines a child process prints, read by a thread, waited for by event name."""

    def __init__(self, stream: IO[str], name: str) -> None:
        self.name = name
        self.queue: queue.Queue[dict[str, Any] | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            try:
                event = json.loads(line)
            except ValueError:
                print(f"{self.name}: {line.rstrip()}", file=sys.stderr)
                continue
            if isinstance(event, dict):
                self.queue.put(event)
        self.queue.put(None)

    def wait(self, event: str, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise SystemExit(f"{self.name}: no {event!r} within {timeout:.0f} s") from None
            if item is None:
                raise SystemExit(f"{self.name} exited before {event!r}")
            if item.get("event") == event:
                return item


class Soak:
    """One run: the two processes, the samples taken, the report printed."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.t0 = time.monotonic()
        self.samples: dict[str, dict[str, Any]] = {}
        self.logs = tempfile.TemporaryDirectory(prefix="soak-")
        self.server: subprocess.Popen[str] | None = None
        self.load: subprocess.Popen[str] | None = None
        self.port = 0
        self.log_files: list[IO[str]] = []

    def log(self, name: str) -> IO[str]:
        """A file for a child's stderr, shown (its end) when the run is over."""
        log = open(Path(self.logs.name) / name, "w")  # closed in stop()
        self.log_files.append(log)
        return log

    # -- the processes ---------------------------------------------------------------------

    def start_server(self) -> None:
        a = self.args
        options = {"ping_interval": a.ping_interval, "ping_timeout": a.ping_timeout,
                   "rooms": a.rooms, "bulk_bytes": a.bulk_bytes}
        env = {**os.environ, "PYTHONPATH": str(a.txsio)}
        self.server = subprocess.Popen(
            [*pinned(0), sys.executable, str(HERE / "soak_server.py"), json.dumps(options)],
            env=env, text=True, stdout=subprocess.PIPE,
            stderr=self.log("server.err"))
        assert self.server.stdout is not None
        ready = Lines(self.server.stdout, "server").wait("ready", 30)
        self.port = int(ready["port"])

    def start_load(self) -> Lines:
        a = self.args
        options = {
            "url": f"ws://127.0.0.1:{self.port}/socket.io/?EIO=4&transport=websocket",
            "connections": a.connections, "churn": a.churn, "slow": a.slow, "rooms": a.rooms,
            "churnHold": a.churn_hold, "slowRead": a.slow_read, "slowPause": a.slow_pause,
            "ackRate": a.ack_rate, "rampConcurrency": a.ramp_concurrency,
            "grace": a.grace,
        }
        env = {**os.environ, "NODE_PATH": str(NODE_MODULES)}
        self.load = subprocess.Popen(
            [*pinned(1), "node", str(HERE / "soak_load.mjs"), json.dumps(options)],
            env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log("load.err"))
        assert self.load.stdout is not None
        return Lines(self.load.stdout, "load")

    def command(self, lines: Lines, command: str, answer: str, timeout: float) -> dict[str, Any]:
        assert self.load is not None and self.load.stdin is not None
        self.load.stdin.write(command + "\n")
        self.load.stdin.flush()
        return lines.wait(answer, timeout)

    def status(self, **query: int) -> dict[str, Any]:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        url = f"http://127.0.0.1:{self.port}/status?{qs}"
        with urllib.request.urlopen(url, timeout=60) as response:
            result: dict[str, Any] = json.load(response)
        return result

    def stop(self) -> None:
        for proc in (self.load, self.server):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        for log in self.log_files:
            log.close()
        for name in ("server.err", "load.err"):
            text = (Path(self.logs.name) / name).read_text().strip()
            if text:
                print(f"--- {name} (last lines)\n" + "\n".join(text.splitlines()[-20:]),
                      file=sys.stderr)
        self.logs.cleanup()

    # -- samples ---------------------------------------------------------------------------

    def fds(self) -> float:
        assert self.server is not None
        return proc_status(self.server.pid)["fds"]

    def sample(self, label: str, load: dict[str, Any] | None, **query: int) -> dict[str, Any]:
        assert self.server is not None
        # /proc first: the status request's own connection is not the server's to count.
        process = proc_status(self.server.pid)
        server = self.status(**query)
        sample = {"t": time.monotonic() - self.t0, **process, "server": server, "load": load}
        self.samples[label] = sample
        self.print_sample(label, sample)
        return sample

    def print_sample(self, label: str, s: dict[str, Any]) -> None:
        srv, load = s["server"], s["load"]
        minutes, seconds = divmod(int(s["t"]), 60)
        line = (f"[{minutes:3d}:{seconds:02d}] {label:9} rss {s['rss_mib']:7.1f} MiB "
                f"fds {s['fds']:6.0f}  lag max {srv['lag_max_ms']:6.1f} "
                f"avg {srv['lag_avg_ms']:5.2f} ms (gc max {srv['gc_max_ms']:5.1f} ms)  "
                f"sessions {srv['sessions']:6d}")
        if load is not None:
            line += (f"  open {load['open']:6d} paused {load['paused']:4d}"
                     f"  acks {load['acksSent']}/{load['acksAnswered']}"
                     f" pending {load['acksPending']} lost {load['lost']}"
                     f" (+{load['lostOnDropped']} on dropped connections)"
                     f"  rtt max {load['rttMaxMs']:.0f} ms"
                     f"  probes {srv.get('probes_answered', 0)}/{srv.get('probes_sent', 0)}"
                     f" polls {srv.get('poll_answers', 0)}/{srv.get('poll_answers_expected', 0)}"
                     f"  churn {load['churnCloses']}  gaps {load['tickGaps']}"
                     f"  load lag max {load['lagMaxMs']:.0f} ms")
        print(line, flush=True)
        if load is not None and (load["unexpectedCloses"] or load["connectErrors"]
                                 or load["heartbeatMissed"]):
            print(f"{'':16}client side: unexpected closes {load['unexpectedCloses']}, "
                  f"connect errors {load['connectErrors']}, "
                  f"heartbeats missed {load['heartbeatMissed']}", flush=True)

    # -- the run ---------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        a = self.args
        self.start_server()
        lines = self.start_load()
        lines.wait("warm", 60)
        self.sample("baseline", None, gc=1)
        self.status(restart=1)
        ready = self.command(lines, "go", "ready", max(60, a.connections / 20))
        print(f"{'':16}{a.connections} connections open in {ready['rampSeconds']:.1f} s",
              flush=True)
        start = self.sample("start", ready, objects=1)
        started = time.monotonic()
        duration = a.seconds if a.seconds is not None else a.minutes * 60
        n = 0
        while time.monotonic() - started < duration:
            n += 1
            due = started + min(n * a.report_every, duration)
            time.sleep(max(0.0, due - time.monotonic()))
            for proc in (self.server, self.load):
                assert proc is not None
                if proc.poll() is not None:
                    raise SystemExit(f"{proc.args!r} exited early: {proc.returncode}")
            if time.monotonic() - started < duration - 0.5:
                self.sample(f"+{int(time.monotonic() - started)}s", self.command(
                    lines, "stats", "stats", 60))
        self.status(quiesce=1, peek=1)
        stopped = self.command(lines, "stop", "stopped", a.grace + 60)
        deadline = time.monotonic() + a.grace
        while self.status(peek=1)["pending"] and time.monotonic() < deadline:
            time.sleep(0.2)
        end = self.sample("end", stopped)
        closed = self.command(lines, "close", "closed", 120)
        deadline = time.monotonic() + SETTLE
        baseline = self.samples["baseline"]
        while time.monotonic() < deadline:
            srv = self.status(peek=1)
            time.sleep(0.5)  # also lets the server close this status request's connection
            if not srv["sessions"] and self.fds() <= baseline["fds"]:
                break
        after = self.sample("after", None, gc=1)
        return self.verdict(baseline, start, end, after, closed)

    def verdict(self, baseline: dict[str, Any], start: dict[str, Any], end: dict[str, Any],
                after: dict[str, Any], closed: dict[str, Any]) -> dict[str, Any]:
        load, srv, gone = end["load"], end["server"], after["server"]
        lost = {
            "client_acks": load["lost"],
            "client_acks_wrong": load["acksWrong"] + load["acksUnknown"],
            "probes": srv.get("probes_timed_out", 0) + srv.get("probes_failed", 0),
            "poll_answers": srv.get("poll_answers_expected", 0) - srv.get("poll_answers", 0),
            "tick_gaps": load["tickGaps"],
        }
        reasons = gone["reasons"]
        dropped = {
            # Any other reason: the server dropped a client it should have kept.
            "by_server": {r: n for r, n in reasons.items() if r not in LEAVING | BY_DESIGN},
            "by_design": {r: n for r, n in reasons.items() if r in BY_DESIGN},
            "seen_by_clients": load["unexpectedCloses"],
            "heartbeats_missed": load["heartbeatMissed"],
            "acks_on_dropped": load["lostOnDropped"],
        }
        by_design = sum(dropped["by_design"].values())
        unexplained = (bool(dropped["by_server"]) or bool(dropped["heartbeats_missed"])
                       or sum(load["unexpectedCloses"].values()) > by_design)
        leaked = {
            "sessions": gone["sessions"], "sockets": gone["sockets"], "rooms": gone["rooms"],
            "adapter_sids": gone["adapter_sids"], "pending": gone["pending"],
            "fds_over_baseline": max(0, int(after["fds"] - baseline["fds"])),
        }
        summary = {
            "event": "summary",
            "connections": self.args.connections,
            "ok": not any(lost.values()) and not any(leaked.values()) and not unexplained,
            "lost": lost, "leaked": leaked, "dropped": dropped,
            "acks": {"client_sent": load["acksSent"], "client_answered": load["acksAnswered"],
                     "probes_sent": srv.get("probes_sent", 0),
                     "probes_answered": srv.get("probes_answered", 0),
                     "probes_disconnected": srv.get("probes_disconnected", 0),
                     "polls_sent": srv.get("polls_sent", 0),
                     "poll_answers": srv.get("poll_answers", 0)},
            "churn_closes": load["churnCloses"], "pauses": load["pauses"],
            "connect_errors": load["connectErrors"],
            "pings": load["pings"],
            "disconnect_reasons": gone["reasons"],
            "server_log": gone["log"],
            "closed": closed,
            "rss_mib": {k: round(s["rss_mib"], 1) for k, s in
                        (("baseline", baseline), ("start", start), ("end", end),
                         ("after", after))} | {"peak": round(after["peak_rss_mib"], 1)},
            "fds": {k: int(s["fds"]) for k, s in
                    (("baseline", baseline), ("start", start), ("end", end), ("after", after))},
            "lag_ms": {"max": round(gone["lag_total_max_ms"], 1),
                       "avg": round(gone["lag_total_avg_ms"], 2)},
            "allocated_blocks": {"baseline": baseline["server"]["allocated_blocks"],
                                 "after": gone["allocated_blocks"]},
            "gc_objects": {"baseline": baseline["server"]["gc_objects"],
                           "start": start["server"]["gc_objects"],
                           "after": gone["gc_objects"]},
            "malloc_in_use_mib": {
                "baseline": round(baseline["server"]["malloc_in_use"] / 2**20, 1),
                "after": round(gone["malloc_in_use"] / 2**20, 1)},
        }
        print(f"lost: {lost}\nleaked: {leaked}\ndropped: {dropped}")
        if by_design:
            print(f"{by_design} slow consumers were disconnected past the send buffer's bound "
                  f"(reason {sorted(BY_DESIGN)}), with {load['lostOnDropped']} acks pending: "
                  "pause them more briefly (--slow-pause) or send less (--bulk-bytes)")
        print(f"memory: baseline {summary['rss_mib']['baseline']} MiB, "
              f"peak {summary['rss_mib']['peak']} MiB, after {summary['rss_mib']['after']} MiB;"
              f" allocated blocks {summary['allocated_blocks']['baseline']} -> "
              f"{summary['allocated_blocks']['after']}, objects "
              f"{summary['gc_objects']['baseline']} -> {summary['gc_objects']['start']} (start) "
              f"-> {summary['gc_objects']['after']}, "
              f"malloc in use {summary['malloc_in_use_mib']['baseline']} -> "
              f"{summary['malloc_in_use_mib']['after']} MiB")
        print(f"event-loop lag over the run: max {summary['lag_ms']['max']} ms, "
              f"avg {summary['lag_ms']['avg']} ms; disconnect reasons {gone['reasons']}; "
              f"server log events {gone['log']}")
        print("verdict: " + ("nothing lost, nothing leaked, no client dropped"
                             if summary["ok"] else "FAILED"),
              flush=True)
        return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--minutes", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, help="the duration in seconds (over --minutes)")
    parser.add_argument("--report-every", type=float, default=60.0, help="seconds")
    parser.add_argument("--churn", type=float, default=0.1, help="fraction that churn")
    parser.add_argument("--churn-hold", type=ns_range, default=[5.0, 30.0],
                        help="seconds a churning connection holds: LO,HI")
    parser.add_argument("--slow", type=float, default=0.02, help="fraction of slow consumers")
    parser.add_argument("--slow-read", type=ns_range, default=[5.0, 15.0],
                        help="seconds a slow consumer reads between pauses: LO,HI")
    parser.add_argument("--slow-pause", type=ns_range, default=[2.0, 6.0],
                        help="seconds it stops reading: LO,HI")
    parser.add_argument("--bulk-bytes", type=int, default=2048,
                        help="the bulk broadcast to slow consumers, 10 a second")
    parser.add_argument("--ack-rate", type=float, default=100, help="emits with ack per second")
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--ping-interval", type=float, default=25.0)
    parser.add_argument("--ping-timeout", type=float, default=20.0)
    parser.add_argument("--ramp-concurrency", type=int, default=100)
    parser.add_argument("--grace", type=float, default=40.0,
                        help="seconds the end waits for the last acks")
    parser.add_argument("--txsio", type=Path, default=ROOT,
                        help="the checkout whose txsio the server runs (default: this one)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary line")
    args = parser.parse_args()
    if not (NODE_MODULES / "ws").is_dir():
        raise SystemExit("tests/node/node_modules is missing: run `npm ci` in tests/node")
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.connections + FD_MARGIN > hard:
        raise SystemExit(f"the descriptor limit (ulimit -n) is {hard}: each process holds one "
                         f"per connection, so at most {hard - FD_MARGIN} connections")
    # The children inherit the raised soft limit.
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    soak = Soak(args)
    try:
        summary = soak.run()
    finally:
        soak.stop()
    if args.json:
        print(json.dumps(summary), flush=True)
    sys.exit(0 if summary["ok"] else 1)


if __name__ == "__main__":
    main()
