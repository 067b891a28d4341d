"""A fault whose worker dies is not "active": SIGKILL each kind's worker from
outside and the agent ends the fault as failed (WORKER_DIED) within 1 s,
names the pid and the signal, reverts the rest of it (sibling workers, IO
files), and says so in WatchFaults, the audit log and the metrics."""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.kernel import procs
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.scratch import loopfs
from tests.processes import all_gone, running

pytestmark = pytest.mark.host

MIB = 1024 * 1024
ENDED = (pb.FAULT_STATE_FAILED, pb.FAULT_STATE_REVERTED)


# The default 100 MiB disk reserve is more than these test filesystems hold.
AGENT_FIXTURE_ARGS = ["--disk-reserve", "1MiB"]


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    with loopfs(tmp_path, 64, "ext4") as m:
        yield m


def pids_of(fault: pb.Fault) -> list[int]:
    text = fault.applied.get("worker_pids") or fault.applied["worker_pid"]
    return [int(p) for p in text.split(",")]


def specs(mnt: Path) -> dict[str, pb.FaultSpec]:
    cores = min(2, len(os.sched_getaffinity(0)))
    return {
        "cpu": pb.FaultSpec(cpu=pb.CpuSpec(cores=cores, load_percent=10)),
        "memory": pb.FaultSpec(memory=pb.MemorySpec(bytes=32 * MIB)),
        "io": pb.FaultSpec(
            io=pb.IoSpec(path=str(mnt), workers=2, mode=pb.IO_MODE_WRITE, bytes_per_worker=MIB)
        ),
    }


def scrape(agent: AgentProc) -> str:
    url = f"http://127.0.0.1:{agent.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        return str(r.read().decode())


@pytest.mark.parametrize("kind", ["cpu", "memory", "io"])
def test_a_worker_killed_from_outside_fails_its_fault_within_a_second(
    agent: AgentProc, mnt: Path, kind: str
) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        stream = c.stub.WatchFaults(pb.WatchFaultsRequest(lease_id=lease.lease_id), timeout=20)
        stream.initial_metadata()  # the watch is registered
        fault = c.inject(lease.lease_id, specs(mnt)[kind], 60)
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        pids = pids_of(fault)
        files = [Path(f) for f in fault.applied.get("files", "").split(",") if f]
        victim = pids[0]
        killed_at = time.monotonic()
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: c.get_fault(fault.id).state in ENDED, 1.0), (
            f"{kind} fault still {c.get_fault(fault.id).state} 1 s after its worker died"
        )
        print(f"{kind}: ended {time.monotonic() - killed_at:.3f}s after the kill")
        ended = c.get_fault(fault.id)
        assert ended.state == pb.FAULT_STATE_FAILED
        assert ended.end_reason == pb.END_REASON_WORKER_DIED
        assert f"worker pid {victim} was killed by signal 9 (SIGKILL)" in ended.error, ended.error
        assert "OOM" not in ended.error
        # The rest of the fault is reverted: its other workers and its files.
        assert wait_for(lambda: all_gone(pids), 1.0), [p for p in pids if running(p)]
        assert not any(f.exists() for f in files)
        assert agent.journal_files() == []
        assert not c.list_faults(states=[pb.FAULT_STATE_ACTIVE])
        events = []
        for event in stream:
            events.append(event)
            if event.fault.state == pb.FAULT_STATE_FAILED:
                break
        stream.cancel()
    assert [e.fault.state for e in events] == [
        pb.FAULT_STATE_PENDING,
        pb.FAULT_STATE_ACTIVE,
        pb.FAULT_STATE_REVERTING,
        pb.FAULT_STATE_FAILED,
    ]
    assert events[-1].fault.end_reason == pb.END_REASON_WORKER_DIED
    metrics = scrape(agent)
    assert f'brownout_fault_reverts_total{{kind="{kind}",reason="worker_died"}} 1.0' in metrics
    assert f'brownout_faults_active{{kind="{kind}"}} 0.0' in metrics
    audits = [
        e for e in agent.log_events() if e.get("event") == "audit" and e["method"] == "WorkerDied"
    ]
    assert len(audits) == 1 and audits[0]["fault_id"] == fault.id, audits
    assert audits[0]["caller"] == "brownout-agent" and str(victim) in str(audits[0]["detail"])


def test_workers_that_die_with_their_fork_server_fail_their_faults(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        spec = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))
        fault = c.inject(lease.lease_id, spec, 60)
        assert fault.state == pb.FAULT_STATE_ACTIVE
        (server,) = [z.pid for z in procs.find_zygotes(agent.instance)]
        os.kill(server, signal.SIGKILL)
        assert wait_for(lambda: c.get_fault(fault.id).state in ENDED, 1.0)
        ended = c.get_fault(fault.id)
        assert ended.state == pb.FAULT_STATE_FAILED
        assert ended.end_reason == pb.END_REASON_WORKER_DIED
        assert f"worker pid {pids_of(fault)[0]}" in ended.error, ended.error
        assert all_gone(pids_of(fault))
        # The agent starts a new fork server and injects again.
        again = c.inject(lease.lease_id, spec, 60)
        assert again.state == pb.FAULT_STATE_ACTIVE, again.error
        assert c.revert(again.id).state == pb.FAULT_STATE_REVERTED
        c.release_lease(lease.lease_id)


def test_a_revert_does_not_count_as_a_worker_death(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)), 60)
        reverted = c.revert(fault.id)
        assert reverted.state == pb.FAULT_STATE_REVERTED
        assert reverted.end_reason == pb.END_REASON_CLIENT_REVERT
        time.sleep(0.5)  # any late exit report would land by now
        assert c.get_fault(fault.id).end_reason == pb.END_REASON_CLIENT_REVERT
        c.release_lease(lease.lease_id)
    assert "worker_died" not in scrape(agent)
