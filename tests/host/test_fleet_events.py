"""A run over more agents than PER_AGENT_LINES says what happened in counts,
not in a line per agent, and keeps every agent's detail in its journal: the
service's run over 200 simulated agents (tests/fleetsim) in a scratch
network namespace."""

from __future__ import annotations

import json
import subprocess

import pytest

from controller.experiments.progress import NAMED, PER_AGENT_LINES
from tests.bench.common import ask, scratch_netns
from tests.fleetsim.procs import in_netns, simulator
from tests.paths import ROOT

pytestmark = pytest.mark.host
N = 200


def test_a_run_over_many_agents_reports_counts_and_journals_each_agent() -> None:
    assert N > PER_AGENT_LINES
    with scratch_netns("bo-events", agents=N) as ns, simulator(ns, "datagram") as (sim, port):
        done = subprocess.run(
            in_netns(ns, "tests.fleetsim.run_events", "--agents", str(N), "--port", str(port)),
            cwd=ROOT, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        agents = ask(sim, "stats")["agents"]
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    events: list[str] = out["events"]
    assert out["status"] == "completed", events
    assert out["faulted"] == N and out["reverted"] == N
    assert agents == N  # the simulator saw each agent apart
    assert f"cpu on {N} agent(s): {N} active" in events
    assert f"reverted on {N} agent(s): {N} reverted" in events
    # No line per agent for what went as planned.
    assert not [e for e in events if e.startswith(("cpu on 127.", "reverted on 127."))]
    step = next(e for e in events if e.startswith("step 1/1"))
    assert step.endswith(f"and {N - NAMED} more"), step
    assert step.count("127.") == NAMED
    assert len(events) < 20, events
