"""The benchmark (``bench/run.py``) run tiny, as CI's smoke of it.

The benchmark itself is run by hand (three runs of every scenario against four servers); here
each of its six scenarios runs once against txsio and Node's socket.io with a handful of
connections and a fraction of a second of load, and only this is checked: it completes, with
a row per scenario for both servers and no failed measurement, and every throughput row carries
the load generator's CPU per operation and busy share (in the table and in ``--json``).  No
figure is asserted: timings depend on the machine.  The generator's own WebSocket client
(``bench/rawws.mjs``) is checked against a scripted server by ``bench/rawws_check.mjs``.
Needs ``npm ci`` in ``tests/node`` (a missing peer is an error, not a skip).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from twisted.trial.unittest import TestCase

from .support import require_node, run_process

RUN = Path(__file__).resolve().parent.parent / "bench" / "run.py"
#: the check of the load generator's own WebSocket client (bench/rawws.mjs)
RAWWS_CHECK = RUN.parent / "rawws_check.mjs"

#: the cases rawws_check.mjs runs, each against a scripted loopback server
RAWWS_CASES = [
    "request", "messages", "client frames", "closed after the close handshake", "client close",
    "refused: not 101", "refused: wrong accept", "refused: extension answered",
    "refused: masked server frame", "refused: reserved bit", "refused: fragmented ping",
    "refused: continuation without a start", "dropped by the server",
]

#: Every default scenario, two servers, one run, the smallest counts that still exercise each
#: generator mode (and no pinning: a CI machine's second core may be busy).
ARGS = [
    "--runs", "1", "--servers", "txsio,node", "--no-pin", "--seconds", "0.2",
    "--clients", "2", "--inflight", "2", "--fanout-sockets", "10",
    "--binary-sockets", "1", "--binary-inflight", "1", "--binary-size", "4096",
    "--connect-concurrency", "2", "--idle", "10", "--settle", "0", "--poll-sessions", "2",
]

#: The first words of each scenario's row in the table.
ROWS = ["echo+ack ws", "fan-out", "binary echo", "connect", "idle memory", "echo+ack polling"]


class BenchSmokeTests(TestCase):
    """bench/run.py with tiny counts: it completes with a row per scenario and server."""

    timeout = 120

    async def test_tiny_benchmark_prints_every_row(self) -> None:
        """Each default scenario, once for txsio and for Node: a table row each, none failed."""
        require_node()
        with tempfile.TemporaryDirectory() as tmp:
            figures_file = Path(tmp) / "figures.json"
            result = await run_process(
                [sys.executable, str(RUN), *ARGS, "--json", str(figures_file)], timeout=100)
            self.assertEqual(result.exit_code, 0, result.describe())
            figures = json.loads(figures_file.read_text())
        table = result.other_output[result.other_output.index(next(
            line for line in result.other_output if line.startswith("== medians"))):]
        header = table[1].split()
        self.assertEqual(header[-6:], ["gen", "us/op", "gen", "busy", "gen", "wait"],
                         result.describe())
        self.assertTrue(any(line.startswith("gen-bound:") for line in table), result.describe())
        for row in ROWS:
            first = [i for i, line in enumerate(table) if line.startswith(row)]
            self.assertEqual(len(first), 1, f"{row!r}\n{result.describe()}")
            # The scenario's row names txsio; the next one (the label left blank) names node.
            self.assertIn("txsio", table[first[0]].split(), result.describe())
            self.assertEqual(table[first[0] + 1].split()[0], "node", result.describe())
            self.assertNotIn("failed", table[first[0]] + table[first[0] + 1])
        # One successful figure per scenario and server.
        self.assertEqual(len(figures), 2 * len(ROWS), figures)
        for key, runs in figures.items():
            self.assertEqual([run["error"] for run in runs], [""], key)
        # The generator's figures: present for every throughput row, bounded, consistent.
        throughput = {key: runs[0] for key, runs in figures.items()
                      if not key.startswith("idle")}
        self.assertEqual(len(throughput), 2 * (len(ROWS) - 1), figures)
        for key, run in throughput.items():
            self.assertGreaterEqual(run["gen_cpu_us"], 0, key)
            # One Node process: CPU seconds per wall second stay near one core (GC threads);
            # its main thread waits for a CPU at most the whole window.
            self.assertTrue(0 <= run["gen_busy"] < 2.5, (key, run))
            self.assertTrue(0 <= run["gen_wait"] <= 1.05, (key, run))
            mark = ("gen-bound" if run["gen_busy"] >= 0.9 else
                    "gen-starved" if run["gen_busy"] + run["gen_wait"] >= 0.9 else "")
            self.assertEqual(run["gen_mark"], mark, (key, run))
        # CPU time is read in clock ticks: a short window may read 0, but not every one.
        self.assertTrue(any(run["gen_cpu_us"] > 0 for run in throughput.values()), figures)


    async def test_python_floor_speaks_its_scenarios(self) -> None:
        """``--servers pyfloor`` (bench/floor_python.py) completes ack, fan-out and connect,
        and is left out of the scenarios it does not speak."""
        require_node()
        args = list(ARGS)
        args[args.index("--servers") + 1] = "pyfloor"
        result = await run_process(
            [sys.executable, str(RUN), *args, "--scenarios", "ack,fanout,connect,binary"],
            timeout=60)
        self.assertEqual(result.exit_code, 0, result.describe())
        table = result.other_output[result.other_output.index(next(
            line for line in result.other_output if line.startswith("== medians"))):]
        rows = [line.split()[0] for line in table[2:] if "pyfloor" in line.split()]
        self.assertEqual(rows, ["echo+ack", "fan-out", "connect"], result.describe())


class RawWebSocketClientTests(TestCase):
    """The generator's WebSocket client against a server that sends its frames in pieces."""

    timeout = 60

    async def test_rawws_check_passes_every_case(self) -> None:
        """bench/rawws_check.mjs: the upgrade request and the accept check, frames split and
        packed across reads (7/16/64-bit lengths, fragments, ping -> masked pong, close), a
        non-zero masking key, and a refusal for each bad answer."""
        node = require_node()
        result = await run_process([node, str(RAWWS_CHECK)], timeout=50)
        self.assertEqual([event.get("case") for event in result.events], RAWWS_CASES,
                         result.describe())
        failed = [event for event in result.events if event.get("ok") is not True]
        self.assertEqual(failed, [], result.describe())
        self.assertEqual(result.exit_code, 0, result.describe())
