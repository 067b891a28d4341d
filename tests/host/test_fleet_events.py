"""A run over more agents than PER_AGENT_LINES says what happened in counts,
not in a line per agent, and keeps every agent's detail in its journal: the
service's run over 200 simulated agents (tests/fleetsim) in a scratch
network namespace."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from controller.experiments.progress import NAMED, PER_AGENT_LINES
from tests.bench.common import scratch_netns
from tests.fleetsim.quit import quit_sim

pytestmark = pytest.mark.host
ROOT = Path(__file__).resolve().parents[2]
N = 200


def _in(ns: str, module: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-m", module, *args]


def test_a_run_over_many_agents_reports_counts_and_journals_each_agent() -> None:
    assert N > PER_AGENT_LINES
    with scratch_netns("bo-events") as ns:
        sim = subprocess.Popen(
            _in(ns, "tests.fleetsim.server", "--datagrams"),
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert sim.stdout is not None
            port = json.loads(sim.stdout.readline())["listening"]
            done = subprocess.run(
                _in(ns, "tests.fleetsim.run_events", "--agents", str(N), "--port", str(port)),
                cwd=ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip
        finally:
            quit_sim(sim)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    events: list[str] = out["events"]
    assert out["status"] == "completed", events
    assert out["faulted"] == N and out["reverted"] == N
    assert f"cpu on {N} agent(s): {N} active" in events
    assert f"reverted on {N} agent(s): {N} reverted" in events
    # No line per agent for what went as planned.
    assert not [e for e in events if e.startswith(("cpu on 127.", "reverted on 127."))]
    step = next(e for e in events if e.startswith("step 1/1"))
    assert step.endswith(f"and {N - NAMED} more"), step
    assert step.count("127.") == NAMED
    assert len(events) < 20, events
