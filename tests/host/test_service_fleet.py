"""`brownout serve` owns one fleet: every run borrows its loop and channels and
holds leases of its own on it, and the kill switch halts through the same
channels."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from controller.agents import inventory
from controller.agents.connection import AgentConnection
from controller.experiments import parse as exp
from controller.experiments.metrics import ControllerMetrics
from controller.service.auth import Tokens
from controller.service.errors import KillSwitchEngaged
from controller.service.state import Service
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import doc, live_faults

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

RUNS = 10


def service(fleet: list[AgentProc], tmp_path: Path) -> Service:
    agents = inventory.build(agents=[a.address for a in fleet])
    return Service.build(AgentConnection.of(agents), tmp_path, Tokens([]), ControllerMetrics())


def loops() -> int:
    return sum(t.name == "fleet-loop" for t in threading.enumerate())


def test_concurrent_runs_share_one_loop_and_one_channel_per_agent(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    before = loops()
    svc = service(fleet, tmp_path)
    try:
        assert loops() == before + 1 and svc.fleet.channels == len(fleet)
        experiment = exp.parse(doc(brownout={"ramp": {"steps": [100], "hold": "1s"}}))
        runs = [svc.runs.start(experiment, "test") for _ in range(RUNS)]
        # Every run holds its own leases on the service's channels.
        assert wait_for(lambda: all(r.runner.journal.steps for r in runs), 30)
        peak = loops()
        leases = {lid for r in runs for lid in r.runner.fleet.lease_ids().values()}
        for r in runs:
            assert r.runner.fleet._clients is svc.fleet._clients
            assert r.runner.fleet.loop is svc.fleet.loop
        assert peak == before + 1, f"{peak - before} fleet loops for {RUNS} runs"
        assert len(leases) == RUNS * len(fleet)
        assert svc.runs.wait_all(60)
        statuses = [r.journal()["status"] for r in runs]
        assert statuses == ["completed"] * RUNS, [r.journal().get("reason") for r in runs]
        assert not live_faults(fleet)
        # A dry run borrows the fleet too, and leaves it whole.
        report = svc.dry_run(experiment)
        assert report["ok"] and len(report["selection"]["targets"]) == len(fleet)
        assert svc.fleet.channels == len(fleet)
    finally:
        svc.close()
    deadline = time.monotonic() + 10
    while loops() > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert loops() == before


def test_the_kill_switch_halts_every_run_through_the_shared_fleet(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    svc = service(fleet, tmp_path)
    try:
        experiment = exp.parse(doc(brownout={"ramp": {"steps": [100], "hold": "60s"}}))
        runs = [svc.runs.start(experiment, "test") for _ in range(3)]
        assert wait_for(lambda: len(live_faults(fleet)) == 3 * len(fleet), 30)
        t0 = time.monotonic()
        engaged = svc.lever.engage("test", "tester")
        assert not live_faults(fleet)
        assert time.monotonic() - t0 < 1.0, engaged["seconds"]
        assert sorted(engaged["runs_aborted"]) == sorted(r.run_id for r in runs)
        assert svc.runs.wait_all(30)
        assert all(r.journal()["status"] == "aborted" for r in runs)
        svc.lever.disengage("tester")
    finally:
        svc.close()


def test_the_kill_switch_during_a_burst_of_starts_lets_no_run_keep_going(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    """20 starts race one engage: each start is refused or aborted by the switch."""
    svc = service(fleet, tmp_path)
    experiment = exp.parse(doc(brownout={"ramp": {"steps": [100], "hold": "60s"}}))
    started: list[str] = []
    refused: list[str] = []
    go = threading.Barrier(21)

    def start() -> None:
        go.wait()
        try:
            started.append(svc.runs.start(experiment, "burst").run_id)
        except KillSwitchEngaged as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=start) for _ in range(20)]
    try:
        for t in threads:
            t.start()
        go.wait()
        time.sleep(0.01)  # some starts land before the switch, some after
        engaged = svc.lever.engage("burst test", "tester")
        for t in threads:
            t.join(30)
        assert len(started) + len(refused) == 20
        assert sorted(engaged["runs_aborted"]) == sorted(started), (engaged, started)
        assert svc.runs.wait_all(30)
        for run_id in started:
            run = svc.runs.get(run_id)
            assert run is not None and run.journal()["status"] == "aborted"
        assert not live_faults(fleet)
        svc.lever.disengage("tester")
    finally:
        svc.close()
