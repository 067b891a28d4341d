"""A run's status tells the truth about its faults, against five real agents:
a lost lease, an agent stopped past its TTL, an injection one agent refuses,
a worker that dies mid-run. None of these runs is completed: each is failed
(exit 4), with the problem in the journal, whether on-fault-error stops the
run at once (abort) or lets it go on (continue)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from brownout.v1 import agent_pb2 as pb
from controller.cli.commands import EXIT_FAULT_ERROR, exit_code
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import (
    N,
    assert_all_reverted,
    doc,
    ext,
    live_faults,
    run,
)
from tests.processes import all_gone

pytestmark = pytest.mark.host


def run_in_thread(
    d: dict[str, Any], addresses: list[str], tmp_path: Path
) -> tuple[threading.Thread, dict[str, Any]]:
    result: dict[str, Any] = {}
    t = threading.Thread(target=lambda: result.update(run(d, addresses, tmp_path)))
    t.start()
    return t, result


def problems(journal: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["agent"], p["problem"]) for p in ext(journal)["fault_problems"]]


def test_a_lost_lease_fails_the_run_at_once(fleet: list[AgentProc], tmp_path: Path) -> None:
    d = doc(brownout={"lease-ttl": "1.5s", "ramp": {"steps": [100], "hold": "20s"}})
    runner, result = run_in_thread(d, [a.address for a in fleet], tmp_path)
    victim = fleet[0]
    assert wait_for(
        lambda: [f.state for f in live_faults([victim])] == [pb.FAULT_STATE_ACTIVE], 10, 0.05
    )
    lease_id = live_faults([victim])[0].lease_id
    with victim.client() as c:
        c.release_lease(lease_id)  # as if the agent had restarted: the lease is gone
    runner.join(timeout=30)

    assert result["status"] == "failed" and result["deviated"] is False
    assert result["duration"] < 15, "on-fault-error abort stops the run at once"
    assert ("lease lost" in ext(result)["reason"]) and victim.address in ext(result)["reason"]
    assert (victim.address, "lease lost") in problems(result)
    assert exit_code(result) == EXIT_FAULT_ERROR
    agents = ext(result)["agents"]
    assert agents[victim.address]["lost"].startswith("NOT_FOUND")
    assert not any(agents[a.address]["lost"] for a in fleet[1:])
    [fault] = agents[victim.address]["faults"]
    assert fault["revert"] == {
        **fault["revert"],
        "state": "reverted",
        "end_reason": "lease_released",
    }
    assert_all_reverted(result, N)


def test_an_agent_stopped_past_its_ttl_fails_the_run(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    """SIGSTOP one agent for longer than the TTL: its lease is lost (the
    controller cannot renew it), the agent reverts by itself once it runs
    again, and the run says so, even carrying on (on-fault-error continue)."""
    brownout = {
        "lease-ttl": "1.5s",
        "on-fault-error": "continue",
        "ramp": {"steps": [100], "hold": "6s"},
    }
    runner, result = run_in_thread(doc(brownout=brownout), [a.address for a in fleet], tmp_path)
    victim = fleet[1]
    assert wait_for(lambda: len(live_faults(fleet)) == N, 10, 0.05)
    assert victim.proc is not None
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(3.5)
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    runner.join(timeout=60)

    assert result["status"] == "failed" and result["deviated"] is False, ext(result)["reason"]
    assert result["duration"] >= 6, "on-fault-error continue runs the method to its end"
    found = problems(result)
    assert (victim.address, "lease lost") in found, found
    assert {a for a, _ in found} == {victim.address}, "the other agents ran as planned"
    [fault] = ext(result)["agents"][victim.address]["faults"]
    assert fault["revert"]["end_reason"] == "lease_expired"
    assert fault["ended_early"]["reason"] == "lease_expired"
    assert exit_code(result) == EXIT_FAULT_ERROR


def test_an_injection_refused_on_one_agent_of_five_fails_the_run(
    fleet: list[AgentProc], tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    """One agent keeps a memory reserve larger than the machine: it refuses the
    leak that the other four inject. The run stops (abort, the default) and is
    failed, not completed; with continue it runs on and is failed all the same."""
    tight = AgentProc(tmp_path / "tight", ["--memory-reserve", "1TiB"]).start()
    agent_factory.append(tight)
    d = doc(brownout={"ramp": {"steps": [100], "hold": "4s"}})
    d["method"][0]["provider"] = {
        "type": "brownout", "fault": "memory", "arguments": {"size": "16MiB"}, "duration": "60s",
    }  # fmt: skip
    addresses = [a.address for a in fleet[:4]] + [tight.address]
    for mode, ran_on in (("abort", False), ("continue", True)):
        d["extensions"][0]["on-fault-error"] = mode
        journal = run(d, addresses, tmp_path)
        assert journal["status"] == "failed" and journal["deviated"] is False, mode
        assert problems(journal) == [(tight.address, "injection failed")], mode
        assert "RESOURCE_EXHAUSTED" in ext(journal)["fault_problems"][0]["detail"]
        assert "injection failed" in ext(journal)["reason"]
        assert (journal["duration"] >= 4) is ran_on, (mode, journal["duration"])
        assert exit_code(journal) == EXIT_FAULT_ERROR
        good = [f for a in fleet[:4] for f in ext(journal)["agents"][a.address]["faults"]]
        assert len(good) == 4 and all(f["revert"]["state"] == "reverted" for f in good)
        assert all_gone(int(f["applied"]["worker_pid"]) for f in good)
        assert [r["status"] for r in journal["run"]] == ["failed"]


def test_a_worker_that_dies_mid_run_is_a_fault_that_ended_early(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    d = doc(brownout={"on-fault-error": "continue", "ramp": {"steps": [100], "hold": "4s"}})
    runner, result = run_in_thread(d, [a.address for a in fleet], tmp_path)
    victim = fleet[2]
    assert wait_for(
        lambda: [f.state for f in live_faults([victim])] == [pb.FAULT_STATE_ACTIVE], 10, 0.05
    )
    [fault] = live_faults([victim])
    os.kill(int(fault.applied["worker_pids"]), signal.SIGKILL)
    runner.join(timeout=30)

    assert result["status"] == "failed" and result["deviated"] is False
    assert problems(result) == [(victim.address, "fault ended early")]
    assert "worker_died" in ext(result)["fault_problems"][0]["detail"]
    [rec] = ext(result)["agents"][victim.address]["faults"]
    assert rec["ended_early"]["reason"] == "worker_died"
    assert "was killed by signal 9" in rec["ended_early"]["error"]
    assert rec["revert"]["state"] == "failed" and rec["revert"]["end_reason"] == "worker_died"
    others = [
        f for a in fleet if a is not victim for f in ext(result)["agents"][a.address]["faults"]
    ]
    assert all(f["revert"]["state"] == "reverted" for f in others)


def test_a_planned_target_that_cannot_be_leased_keeps_the_run_from_completing(
    fleet: list[AgentProc], tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    """A sixth agent answers pre-flight, then is stopped (by the before-hypothesis
    probe, so between pre-flight and the leases): its lease times out. The run
    goes on with the other five (on-fault-error continue) and ends failed,
    naming the shortfall, not completed."""
    late = AgentProc(tmp_path / "late").start()
    agent_factory.append(late)
    stop = {
        "type": "probe",
        "name": "stop-one",
        "tolerance": 0,
        "provider": {"type": "process", "path": "kill", "arguments": ["-STOP", str(late.pid)]},
    }
    d = doc([stop], {"on-fault-error": "continue", "ramp": {"steps": [100], "hold": "1s"}})
    try:
        journal = run(d, [a.address for a in fleet] + [late.address], tmp_path)
    finally:
        os.kill(late.pid, signal.SIGCONT)
    assert journal["status"] == "failed", ext(journal)["reason"]
    assert problems(journal) == [(late.address, "target not reached")]
    assert "reached 5 of 6 planned targets" in ext(journal)["reason"]
    assert "DEADLINE_EXCEEDED" in ext(journal)["fault_problems"][0]["detail"]
    good = [f for a in fleet for f in ext(journal)["agents"][a.address]["faults"]]
    assert len(good) == 5 and all(f["revert"]["state"] == "reverted" for f in good)
