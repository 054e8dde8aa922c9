"""The soak (``bench/soak.py``) run small, as CI's smoke of it.

The soak itself is run by hand (10,000 connections for 10 minutes); here the same script holds
200 WebSocket connections for about 12 seconds against its txsio server, with churn, slow
consumers, heartbeats every few seconds and a trickle of emits with ack, and its summary is
checked: nothing lost (every ack answered, no gap in the broadcast sequence), no client
dropped, and nothing leaked (sessions, sockets and rooms back to 0, descriptors back to the
baseline).  No timing is asserted.  Needs ``npm ci`` in ``tests/node`` (a missing peer is an
error, not a skip).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from .support import ProcessResult, require_node, run_process

SOAK = Path(__file__).resolve().parent.parent / "bench" / "soak.py"

#: Small numbers, every behaviour of the real soak: 10% churn (holding 1 to 3 s), 5% slow
#: consumers (reading 1 to 3 s, pausing 0.5 to 1.5 s), a heartbeat every 2 s with a roomy
#: timeout (a loaded machine may answer late; heartbeats are not what is judged here).
ARGS = [
    "--connections", "200", "--seconds", "12", "--report-every", "4",
    "--churn", "0.1", "--churn-hold", "1,3",
    "--slow", "0.05", "--slow-read", "1,3", "--slow-pause", "0.5,1.5",
    "--ack-rate", "50", "--ping-interval", "2", "--ping-timeout", "10",
    "--grace", "15", "--json",
]


class SoakSmokeTests(TestCase):
    """bench/soak.py with 200 connections: nothing lost, no client dropped, nothing leaked."""

    timeout = 120

    async def test_small_soak_loses_and_leaks_nothing(self) -> None:
        """200 connections with churn and slow consumers: every ack answered, nothing left over."""
        require_node()
        result = await run_process([sys.executable, str(SOAK), *ARGS], timeout=100)
        summary = self.summary(result)
        self.assertEqual(summary["lost"], dict.fromkeys(summary["lost"], 0), result.describe())
        self.assertEqual(summary["leaked"], dict.fromkeys(summary["leaked"], 0),
                         result.describe())
        # No client dropped by the server (the slow consumers stay far below any send bound).
        self.assertEqual(summary["dropped"]["by_server"], {}, result.describe())
        self.assertEqual(summary["dropped"]["by_design"], {}, result.describe())
        self.assertEqual(summary["dropped"]["seen_by_clients"], {}, result.describe())
        # The run did what a soak is for: acks both ways, heartbeats, churn and pauses.
        acks = summary["acks"]
        self.assertGreater(acks["client_sent"], 0)
        self.assertEqual(acks["client_answered"], acks["client_sent"])
        self.assertGreater(acks["probes_answered"], 0)
        self.assertGreater(acks["poll_answers"], 0)
        self.assertGreater(summary["pings"], 0)
        self.assertGreater(summary["churn_closes"], 0)
        self.assertGreater(summary["pauses"], 0)
        self.assertTrue(summary["ok"])
        self.assertEqual(result.exit_code, 0, result.describe())

    def summary(self, result: ProcessResult) -> dict[str, Any]:
        """The script's summary line, or a failure showing what it printed."""
        lines = result.named("summary")
        if not lines:
            self.fail(f"bench/soak.py printed no summary\n{result.describe()}")
        return lines[-1]
