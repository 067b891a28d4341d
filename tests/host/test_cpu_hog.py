"""CPU hog on a real agent: the workers burn what was asked, and nothing more."""

from __future__ import annotations

import time
from typing import Any

import psutil
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.processes import all_gone

pytestmark = pytest.mark.host


def cpu_spec(load: float, cores: int = 1) -> pb.FaultSpec:
    return pb.FaultSpec(cpu=pb.CpuSpec(cores=cores, load_percent=load))


def worker_pids(fault: pb.Fault) -> list[int]:
    return [int(p) for p in fault.applied["worker_pids"].split(",")]


def _busy(t: Any) -> float:
    return float(t.user + t.nice + t.system + t.irq + t.softirq + t.steal)


def _total(t: Any) -> float:
    return _busy(t) + float(t.idle + t.iowait)


def measure(pids: list[int], core: int, seconds: float) -> tuple[float, float]:
    """(workers' CPU share of one core, that core's utilisation), both in percent."""
    workers = [psutil.Process(p) for p in pids]
    cpu0 = sum(w.cpu_times().user + w.cpu_times().system for w in workers)
    core0 = psutil.cpu_times(percpu=True)[core]
    t0 = time.monotonic()
    time.sleep(seconds)
    cpu1 = sum(w.cpu_times().user + w.cpu_times().system for w in workers)
    core1 = psutil.cpu_times(percpu=True)[core]
    wall = time.monotonic() - t0
    core_util = (_busy(core1) - _busy(core0)) / max(1e-9, _total(core1) - _total(core0))
    return 100 * (cpu1 - cpu0) / wall, 100 * core_util


def test_cpu_hog_burns_half_a_core_then_reverts(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 10)
        fault = c.inject(lease.lease_id, cpu_spec(50), duration=30)
        assert fault.state == pb.FAULT_STATE_ACTIVE
        pids = worker_pids(fault)
        core = int(fault.applied["cores"])
        assert len(pids) == 1
        assert psutil.Process(pids[0]).cpu_affinity() == [core]
        share, core_util = measure(pids, core, 3.0)
        assert 45 <= share <= 55, f"workers burned {share:.1f}% of a core, asked 50%"
        assert core_util >= 45, f"core {core} only {core_util:.1f}% busy"

        reverted = c.revert(fault.id)
        assert reverted.state == pb.FAULT_STATE_REVERTED
        assert reverted.end_reason == pb.END_REASON_CLIENT_REVERT
        assert all_gone(pids)
        assert agent.journal_files() == []
        # Idempotent: a second revert is a no-op that reports the same end.
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        c.release_lease(lease.lease_id)


def test_fault_duration_ends_it(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 10)
        fault = c.inject(lease.lease_id, cpu_spec(20), duration=1.0)
        pids = worker_pids(fault)
        assert wait_for(lambda: c.get_fault(fault.id).state == pb.FAULT_STATE_REVERTED, 3.0)
        assert c.get_fault(fault.id).end_reason == pb.END_REASON_DURATION_ELAPSED
        assert all_gone(pids)
