"""Ten concurrent runs against 1,000 simulated agents, side by side in one
run: through `brownout serve`'s one fleet, and with a fleet per run (as the
service did before). Figures: channels, loop threads, RSS at the peak, their
ratio, and how the runs ended. Ten runs on 1,000 agents are 10,000 leases on
one controller core, kept by datagram as agents offer. Through the one fleet
every run must complete; the layout of before is reported (it may fail at
setup). That no fault outlives its lease is asserted in every case."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from tests.bench.common import ask, report, scratch_netns
from tests.fleetsim.procs import in_netns, quit_sim, simulator
from tests.paths import ROOT

AGENTS = int(os.environ.get("BROWNOUT_SERVICE_RUNS_AGENTS", "1000"))
RUNS = 10
pytestmark = [pytest.mark.bench, pytest.mark.timeout(1800)]


@pytest.fixture
def netns() -> Iterator[str]:
    with scratch_netns("bo-runs", agents=AGENTS) as name:
        yield name


def _mode(ns: str, mode: str) -> dict[str, Any]:
    with simulator(ns, "datagram") as (sim, port):
        out = subprocess.run(
            in_netns(ns, "tests.fleetsim.service_runs", "--agents", str(AGENTS),
                     "--port", str(port), "--runs", str(RUNS), "--mode", mode),
            cwd=ROOT, capture_output=True, text=True, timeout=1200,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr[-3000:]
        row: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
        row["simulator_faults_active_after"] = ask(sim, "stats")["faults_active"]
        quit_sim(sim)
        return row


def test_concurrent_runs_share_one_fleet(netns: str) -> None:
    shared, per_run = _mode(netns, "shared"), _mode(netns, "per-run")
    for row in (shared, per_run):
        print(f"\n[bench] service_runs {row['mode']}: {json.dumps(row, sort_keys=True)}")
        assert row["simulator_faults_active_after"] == 0
    assert shared["channels"] == AGENTS and shared["loop_threads"] == 1
    assert shared["statuses"] == ["completed"], shared  # the one fleet holds all 10,000
    assert per_run["channels"] == AGENTS * RUNS
    growth = {
        r["mode"]: round(r["rss_mib_peak"] - r["rss_mib_before"], 1) for r in (shared, per_run)
    }
    report(
        "service_runs",
        {
            "agents": AGENTS,
            "runs": RUNS,
            "shared": shared,
            "per_run": per_run,
            "rss_peak_ratio_per_run_to_shared": round(
                per_run["rss_mib_peak"] / shared["rss_mib_peak"], 2
            ),
            "rss_growth_mib": growth,
            "all_completed": {r["mode"]: r["statuses"] == ["completed"] for r in (shared, per_run)},
        },
    )
