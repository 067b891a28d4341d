"""A memory leak at the limit of a memory-limited cgroup that holds the agent
too: the cgroup's OOM killer takes the leak child (oom_score_adj 1000), never the
agent, which keeps serving and reverts cleanly.

On this machine the agent lacks CAP_SYS_RESOURCE, so it cannot lower its own
oom_score_adj to -900 (it logs that and keeps the 0 it inherited); the leak's
1000 alone decides the OOM killer's choice here, and the test checks that. The
fault then ends failed (WORKER_DIED), its error naming the OOM kill."""

from __future__ import annotations

from pathlib import Path

import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.scratch import CGROUP_ROOT, cgroup, cgroup_of, v1_available
from tests.processes import running
from tests.reliability.common import MIB, bump, figure, scale

pytestmark = [
    pytest.mark.host,
    pytest.mark.reliability,
    pytest.mark.skipif(not v1_available("memory"), reason="needs the cgroup v1 memory controller"),
]

LIMIT = 192 * MIB
ROUNDS = scale("BROWNOUT_OOM_ROUNDS", 2, 10)
NAME = "memory pressure (cgroup OOM)"


def gone(pid: int) -> bool:
    return not running(pid)


def oom_kills(d: Path) -> int:
    for line in (d / "memory.oom_control").read_text().splitlines():
        if line.startswith("oom_kill "):
            return int(line.split()[1])
    return -1


def test_leak_at_the_cgroup_limit_is_the_oom_victim_and_the_agent_survives(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state").start()
    agent_factory.append(a)
    settings = {
        "memory.limit_in_bytes": str(LIMIT),
        "memory.swappiness": "0",
    }
    with cgroup(["memory"], settings) as name:
        d = CGROUP_ROOT / "memory" / name.lstrip("/")
        try:
            (d / "cgroup.procs").write_text(str(a.pid))
            assert cgroup_of(a.pid, "memory") == name
            agent_adj = int(Path(f"/proc/{a.pid}/oom_score_adj").read_text())
            assert agent_adj < 1000
            for _ in range(ROUNDS):
                kills_before = oom_kills(d)
                with a.client() as c:
                    lease = c.acquire_lease("reliability-oom", 30)
                    # As much as the whole limit: with the leak's interpreter and the
                    # agent's new pages charged here, the cgroup OOMs before it is done.
                    # (This kernel refuses memory.move_charge_at_immigrate, so pages the
                    # agent had before the move stay charged to the root cgroup.)
                    fault = c.inject(lease.lease_id, pb.FaultSpec(memory=pb.MemorySpec(
                        bytes=LIMIT)), 60, pb.Target(cgroup=name))  # fmt: skip
                    assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
                    pid = int(fault.applied["worker_pid"])
                    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "1000"
                    assert cgroup_of(pid, "memory") == name
                    assert wait_for(lambda p=pid: gone(p), 20, 0.05), "the leak never hit the limit"
                    assert oom_kills(d) > kills_before, "the leak died, but not by the OOM killer"
                    bump(NAME, "oom_kills_of_leak")
                    # The agent survived, still serves, and ends the fault cleanly.
                    assert a.proc is not None and a.proc.poll() is None, (
                        "the OOM killer took the agent"
                    )
                    # Nothing leaks any more: the fault is not called active, but
                    # failed, because the OOM killer took its worker.
                    assert wait_for(
                        lambda f=fault.id: c.get_fault(f).state == pb.FAULT_STATE_FAILED, 1.0
                    ), c.get_fault(fault.id)
                    after = c.revert(fault.id)  # a no-op now: it has ended
                    assert after.state == pb.FAULT_STATE_FAILED, after
                    assert after.end_reason == pb.END_REASON_WORKER_DIED, after
                    assert f"worker pid {pid} was killed by signal 9" in after.error, after.error
                    assert "by the OOM killer (oom_kill in memory cgroup" in after.error, after
                    bump(NAME, "faults_failed_worker_died_oom")
                    bump(NAME, "agent_survived")
                    c.release_lease(lease.lease_id)
                assert a.marked_processes() == [] and a.journal_files() == []
            figure(NAME, cgroup_limit_mib=LIMIT // MIB, agent_oom_score_adj=agent_adj,
                   leak_oom_score_adj=1000, agent_killed=0)  # fmt: skip
        finally:
            a.stop()
