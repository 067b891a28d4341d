"""The controller's test fleet: five real brownout-agent processes (module
scope), the helpers that write experiments for them and read their journals,
and the stand-ins for the systems under test (an HTTP service, a Prometheus
HTTP API that sums the agents' brownout_faults_active gauges)."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.fleet import Fleet
from controller.experiments import parse as exp
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.runner import Runner, RunOptions
from controller.store import open_store
from tests.agentproc import AgentProc
from tests.processes import all_gone

LIVE = [pb.FAULT_STATE_PENDING, pb.FAULT_STATE_ACTIVE, pb.FAULT_STATE_REVERTING]
DEAD_AGENT = "127.0.0.1:1"  # nothing listens on port 1: connection refused
N = 5  # agents


def live_faults(agents: list[AgentProc]) -> list[pb.Fault]:
    out: list[pb.Fault] = []
    for a in agents:
        with a.client() as c:
            out += c.list_faults(states=LIVE)
    return out


def worker_pids(journal: dict[str, Any]) -> list[int]:
    return [
        int(pid)
        for agent in ext(journal)["agents"].values()
        for f in agent["faults"]
        for pid in f.get("applied", {}).get("worker_pids", "").split(",")
        if pid
    ]


def ext(journal: dict[str, Any]) -> dict[str, Any]:
    return dict(journal["extensions"][0])


def http_probe(url: str, name: str = "service-ok") -> dict[str, Any]:
    return {
        "type": "probe",
        "name": name,
        "tolerance": 200,
        "provider": {"type": "http", "url": url, "timeout": 2},
    }


def doc(
    hypothesis: list[dict[str, Any]] | None = None,
    brownout: dict[str, Any] | None = None,
    duration: str = "60s",
) -> dict[str, Any]:
    d: dict[str, Any] = {
        "version": "1.0.0",
        "title": "controller host test",
        "description": "cpu hog on the test agents",
        "method": [
            {
                "type": "action",
                "name": "cpu-hog",
                "provider": {
                    "type": "brownout",
                    "fault": "cpu",
                    "arguments": {"cores": 1, "load": 10},
                    "duration": duration,
                },
            }
        ],
        "extensions": [{"name": "brownout", "lease-ttl": "3s", **(brownout or {})}],
    }
    if hypothesis is not None:
        d["steady-state-hypothesis"] = {"title": "healthy", "probes": hypothesis}
    return d


def run(
    d: dict[str, Any],
    addresses: list[str],
    tmp_path: Path,
    metrics: ControllerMetrics | None = None,
) -> dict[str, Any]:
    e = exp.parse(d)
    opts = RunOptions(journal_path=tmp_path / "journal.json", history=open_store(tmp_path).history)
    with Fleet(inventory.build(agents=addresses), timeout=5) as f:
        return Runner(e, f, opts, metrics=metrics).run()


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def agent_flags(agents: list[AgentProc]) -> list[str]:
    return [x for a in agents for x in ("--agent", a.address)]


def ts(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def assert_all_reverted(journal: dict[str, Any], expected_faults: int) -> None:
    faults = [f for a in ext(journal)["agents"].values() for f in a["faults"]]
    assert len(faults) == expected_faults
    assert all(f["revert"]["state"] == "reverted" for f in faults), faults
    pids = worker_pids(journal)
    assert len(pids) == expected_faults
    assert all_gone(pids), "workers still running"


# --------------------------------------------------------------------- tests
