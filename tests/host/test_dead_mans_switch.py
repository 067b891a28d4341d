"""The dead-man's switch on a real agent: lease expiry, kill -9, restart, sweep."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from agent.kernel import procs
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.processes import all_gone

pytestmark = pytest.mark.host


def cpu(load: float = 30, cores: int = 1) -> pb.FaultSpec:
    return pb.FaultSpec(cpu=pb.CpuSpec(cores=cores, load_percent=load))


def pids_of(fault: pb.Fault) -> list[int]:
    return [int(p) for p in fault.applied["worker_pids"].split(",")]


def gone(pids: list[int]) -> bool:
    return all_gone(pids)


def test_lease_expiry_reverts_within_ttl_plus_half_a_second(agent: AgentProc) -> None:
    ttl = 1.5
    with agent.client() as c:
        lease = c.acquire_lease("test", ttl)
        renewed_at = time.monotonic()
        fault = c.inject(lease.lease_id, cpu(), duration=60)
        pids = pids_of(fault)
        assert not gone(pids)
        # Stop heartbeating: nothing renews the lease from here on.
        assert wait_for(lambda: gone(pids), ttl + 0.5 - (time.monotonic() - renewed_at) + 0.0)
        elapsed = time.monotonic() - renewed_at
        assert elapsed <= ttl + 0.5, f"workers outlived the lease by {elapsed - ttl:.3f}s"
        # The record follows the kill: the agent marks the fault reverted once the
        # revert has finished (journal included), so it may still read REVERTING at
        # the instant the workers are gone (seen in CI). It must not stay there.
        assert wait_for(lambda: c.get_fault(fault.id).state == pb.FAULT_STATE_REVERTED, 1.0)
        after = c.get_fault(fault.id)
        assert after.state == pb.FAULT_STATE_REVERTED
        assert after.end_reason == pb.END_REASON_LEASE_EXPIRED
        with pytest.raises(grpc.RpcError) as err:
            c.renew_lease(lease.lease_id)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert agent.journal_files() == []


def test_renewing_keeps_the_fault_alive(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 1.0)
        fault = c.inject(lease.lease_id, cpu(), duration=60)
        for _ in range(8):  # 2.4 s, well past the 1 s TTL
            time.sleep(0.3)
            c.renew_lease(lease.lease_id)
        assert c.get_fault(fault.id).state == pb.FAULT_STATE_ACTIVE
        released = c.release_lease(lease.lease_id)
        assert [f.end_reason for f in released.faults] == [pb.END_REASON_LEASE_RELEASED]
        assert gone(pids_of(fault))


def test_kill9_kills_workers_and_restart_reports_agent_restart(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state").start()
    agent_factory.append(a)
    with a.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, cpu(cores=min(2, len(os.sched_getaffinity(0)))), 60)
    pids = pids_of(fault)
    assert a.journal_files() == [f"{fault.id}.json"]
    a.kill()
    # PR_SET_PDEATHSIG: the workers die with the agent, before any restart.
    assert wait_for(lambda: gone(pids), 2.0), "workers outlived the agent"
    assert a.journal_files() == [f"{fault.id}.json"]  # the record survives the crash

    a.start()
    with a.client() as c:
        after = c.get_fault(fault.id)
        assert after.state == pb.FAULT_STATE_REVERTED
        assert after.end_reason == pb.END_REASON_AGENT_RESTART
        assert after.kind == pb.FAULT_KIND_CPU
        assert after.lease_id == lease.lease_id
    assert a.journal_files() == []


def test_sweep_reverts_a_leftover_record_offline(tmp_path: Path) -> None:
    """A worker whose agent never recorded the revert (here: started by hand
    with the markers, as the agent would have) is found and killed."""
    state = tmp_path / "state"
    a = AgentProc(state)  # not started: only used for its marker
    fault_id = "fault-leftover01"
    worker = subprocess.Popen(
        procs.worker_argv(
            "agent.workers.cpu_burn", ["--core", "0", "--load", "5"], a.instance, fault_id
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert worker.stdout is not None and worker.stdout.readline() == b"ready\n"
    assert worker.stdin is not None
    worker.stdin.write(b"go\n")  # the handshake the agent's spawner does
    worker.stdin.flush()
    assert worker.stdout.readline() == b"running\n"
    st = procs.start_time(worker.pid)
    journal = state / "journal"
    journal.mkdir(parents=True)
    (journal / f"{fault_id}.json").write_text(
        json.dumps(
            {
                "version": 1,
                "fault_id": fault_id,
                "kind": "cpu",
                "phase": "applied",
                "undo": {"workers": [{"pid": worker.pid, "start_time": st, "core": 0}]},
            }
        )
    )
    stray = subprocess.Popen(
        procs.worker_argv(
            "agent.workers.cpu_burn", ["--core", "0", "--load", "5"], a.instance, "fault-unknown"
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert stray.stdout is not None and stray.stdout.readline() == b"ready\n"
    assert stray.stdin is not None
    stray.stdin.write(b"go\n")
    stray.stdin.flush()
    assert stray.stdout.readline() == b"running\n"

    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "sweep", "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["reverted"] == [{"fault_id": fault_id, "kind": "cpu", "state": "reverted"}]
    assert report["remaining_journal"] == []
    assert worker.wait(timeout=5) == -signal.SIGKILL
    assert stray.wait(timeout=5) == -signal.SIGKILL  # swept by marker, not by record
    assert procs.find_marked(a.instance) == []
    assert list(journal.iterdir()) == []


def test_sweep_refuses_while_the_agent_runs(agent: AgentProc) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "sweep", "--state-dir", str(agent.state_dir)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert "another brownout-agent holds" in out.stderr


def test_sigterm_reverts_everything_and_exits_zero(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state").start()
    agent_factory.append(a)
    with a.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, cpu(), 60)
    assert a.stop() == 0
    assert gone(pids_of(fault))
    assert a.journal_files() == []
    events = [e for e in a.log_events() if e.get("event") == "fault reverted"]
    assert [e["reason"] for e in events] == ["agent_shutdown"]
