"""Pause: a cgroup the test creates, holding a process that counts, is frozen
(the count stops) until revert, lease expiry, an agent's kill -9 and restart,
or the offline sweep thaws it; and every refusal leaves it running."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.scratch import CGROUP_ROOT, cgroup

pytestmark = [
    pytest.mark.host,
    # The root of a v1 freezer hierarchy has no freezer.* files: only children do.
    pytest.mark.skipif(
        not (CGROUP_ROOT / "freezer" / "cgroup.procs").exists(),
        reason="needs the v1 freezer hierarchy",
    ),
]

# Counts, replacing the file whole each time: a reader never sees it empty.
COUNTER = (
    "import os, sys, time\n"
    "n = 0\n"
    "while True:\n"
    "    n += 1\n"
    "    open(sys.argv[1] + '.tmp', 'w').write(str(n))\n"
    "    os.replace(sys.argv[1] + '.tmp', sys.argv[1])\n"
    "    time.sleep(0.01)\n"
)


@dataclass
class Box:
    """A freezer cgroup of the test's, with a process in it that counts."""

    name: str
    counter: Path
    proc: subprocess.Popen[bytes]

    @property
    def dir(self) -> Path:
        return CGROUP_ROOT / "freezer" / self.name.lstrip("/")

    def state(self) -> str:
        return (self.dir / "freezer.state").read_text().strip()

    def count(self) -> int:
        text = self.counter.read_text() if self.counter.exists() else ""
        return int(text) if text.isdigit() else 0

    def counting(self, seconds: float = 0.3) -> bool:
        before = self.count()
        time.sleep(seconds)
        return self.count() > before


@pytest.fixture
def box(tmp_path: Path) -> Iterator[Box]:
    with cgroup(["freezer"]) as name:
        counter = tmp_path / "count"
        proc = subprocess.Popen([sys.executable, "-c", COUNTER, str(counter)])
        b = Box(name, counter, proc)
        try:
            (b.dir / "cgroup.procs").write_text(str(proc.pid))
            assert wait_for(lambda: b.count() > 0, 10)
            yield b
        finally:
            (b.dir / "freezer.state").write_text("THAWED")  # a failed test must not leave it
            proc.kill()
            proc.wait(10)


def pause(allow_denylisted: bool = False) -> pb.FaultSpec:
    return pb.FaultSpec(pause=pb.PauseSpec(allow_denylisted=allow_denylisted))


def test_pause_freezes_the_cgroup_until_revert(agent: AgentProc, box: Box) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(lease, pause(), 30, pb.Target(cgroup=box.name))
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        assert fault.applied["state"] == "FROZEN"
        assert fault.applied["processes"] == "1"
        assert box.state() == "FROZEN"
        assert not box.counting(), "a frozen process must not run"
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        assert box.state() == "THAWED"
        assert box.counting()
        c.release_lease(lease)


def test_a_pid_target_freezes_its_cgroup_and_the_lease_ends_it(agent: AgentProc, box: Box) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 2).lease_id
        c.inject(lease, pause(), 30, pb.Target(pid=box.proc.pid))
        assert box.state() == "FROZEN"
        t0 = time.monotonic()
        assert wait_for(lambda: box.state() == "THAWED", 5)
        assert time.monotonic() - t0 <= 2 + 1.0
        assert box.counting()


@pytest.mark.parametrize("recovery", ["restart", "sweep"])
def test_a_pause_outlives_no_agent_kill(agent: AgentProc, box: Box, recovery: str) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 60).lease_id
        c.inject(lease, pause(), 60, pb.Target(cgroup=box.name))
    agent.kill()
    assert box.state() == "FROZEN"
    if recovery == "restart":
        agent.start()
    else:
        agent.sweep()
    assert wait_for(lambda: box.state() == "THAWED", 5)
    assert box.counting()


def refused(agent: AgentProc, target: pb.Target, code: grpc.StatusCode,
            spec: pb.FaultSpec | None = None) -> str:  # fmt: skip
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        with pytest.raises(grpc.RpcError) as err:
            c.inject(lease, spec or pause(), 30, target)
        assert c.list_faults(lease) == []
        c.release_lease(lease)
    assert err.value.code() == code, err.value.details()
    return err.value.details() or ""


def test_what_a_pause_refuses(agent: AgentProc, box: Box) -> None:
    invalid, precondition = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION
    assert "root cgroup" in refused(agent, pb.Target(cgroup="/"), invalid)
    assert "root cgroup" in refused(agent, pb.Target(pid=agent.pid), invalid)
    assert "target.pid or target.container" in refused(agent, pb.Target(), invalid)
    (box.dir / "freezer.state").write_text("FROZEN")  # someone else's freeze
    assert wait_for(lambda: box.state() == "FROZEN", 5)
    assert "frozen already" in refused(agent, pb.Target(cgroup=box.name), precondition)
    assert box.state() == "FROZEN", "a refused pause does not thaw it either"
    (box.dir / "freezer.state").write_text("THAWED")
    assert box.counting()


def test_a_cgroup_holding_the_agent_or_a_denylisted_process_is_refused(
    tmp_path: Path, box: Box, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "boxed")
    agent_factory.append(a)
    a.start()
    (box.dir / "cgroup.procs").write_text(str(a.pid))
    try:
        details = refused(a, pb.Target(cgroup=box.name), grpc.StatusCode.FAILED_PRECONDITION)
        assert "the agent itself" in details and "nothing was frozen" in details
    finally:
        (box.dir.parent / "cgroup.procs").write_text(str(a.pid))
    sshd = subprocess.Popen(
        [sys.executable, "-c",
         "import ctypes, time; ctypes.CDLL(None).prctl(15, b'sshd', 0, 0, 0); time.sleep(600)"],
    )  # fmt: skip
    try:
        (box.dir / "cgroup.procs").write_text(str(sshd.pid))
        assert wait_for(lambda: Path(f"/proc/{sshd.pid}/comm").read_text().strip() == "sshd", 5)
        details = refused(a, pb.Target(cgroup=box.name), grpc.StatusCode.FAILED_PRECONDITION)
        assert "denylist" in details
        assert box.state() == "THAWED"
        with a.client() as c:
            lease = c.acquire_lease("test", 30).lease_id
            fault = c.inject(lease, pause(allow_denylisted=True), 30, pb.Target(cgroup=box.name))
            assert fault.applied["processes"] == "2"
            c.release_lease(lease)
        assert wait_for(lambda: box.state() == "THAWED", 5)
    finally:
        sshd.kill()
        sshd.wait(10)
