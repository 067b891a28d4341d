"""Process faults on processes the test starts: kill (once, with children,
every interval), stop held until revert, lease expiry, an agent's kill -9 and
the offline sweep, and every refusal, which leaves every process as it was."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest
from google.protobuf.duration_pb2 import Duration

from brownout.v1 import agent_pb2 as pb
from tests.agentclient import AgentClient
from tests.agentproc import AgentProc, wait_for
from tests.processes import running

pytestmark = pytest.mark.host

PR_SET_NAME = 15


class Victims:
    """Processes the test owns, told apart by a token on their command line."""

    def __init__(self) -> None:
        self.token = f"brownout-victim-{uuid.uuid4().hex[:12]}"
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, code: str = "import time; time.sleep(600)", tag: str = "") -> int:
        p = subprocess.Popen(
            [sys.executable, "-c", code, f"{self.token}{tag}"], start_new_session=True
        )
        self.procs.append(p)
        assert wait_for(lambda: f"{self.token}{tag}" in " ".join(_cmdline(p.pid)), 10)
        return p.pid

    def cleanup(self) -> None:
        for p in self.procs:
            for member in _tree(p.pid):
                with contextlib.suppress(psutil.NoSuchProcess):
                    member.resume()
                    member.kill()
            p.kill()
            p.wait(10)


def _cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [*root.children(recursive=True), root]
    except psutil.NoSuchProcess:
        return []


def stopped(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


@pytest.fixture
def victims() -> Iterator[Victims]:
    v = Victims()
    try:
        yield v
    finally:
        v.cleanup()


def process(action: int, **kw: object) -> pb.FaultSpec:
    return pb.FaultSpec(process=pb.ProcessSpec(action=action, **kw))  # type: ignore[arg-type]


KILL, STOP = pb.PROCESS_ACTION_KILL, pb.PROCESS_ACTION_STOP


def refused(c: AgentClient, lease: str, spec: pb.FaultSpec, target: pb.Target | None = None,
            code: grpc.StatusCode = grpc.StatusCode.FAILED_PRECONDITION) -> str:  # fmt: skip
    with pytest.raises(grpc.RpcError) as err:
        c.inject(lease, spec, 30, target)
    assert err.value.code() == code, err.value.details()
    return err.value.details() or ""


def test_kill_the_oldest_two_of_three_by_command_line(agent: AgentProc, victims: Victims) -> None:
    pids = [victims.start() for _ in range(3)]
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(
            lease,
            process(KILL, cmdline=victims.token, count=2, order=pb.PROCESS_ORDER_OLDEST),
            30,
        )
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        assert fault.applied["matched"] == "3"
        assert fault.applied["signal"] == "SIGKILL"
        assert sorted(map(int, fault.applied["signalled"].split(","))) == pids[:2]
        for pid in pids[:2]:
            assert f"{pid} start=" in fault.applied["processes"]
        assert wait_for(lambda: not running(pids[0]) and not running(pids[1]), 5)
        assert running(pids[2])
        c.release_lease(lease)


def test_validate_only_names_what_an_inject_would_reach_and_touches_nothing(
    agent: AgentProc, victims: Victims
) -> None:
    pids = sorted(victims.start() for _ in range(2))
    with agent.client() as c:
        journal_before = agent.journal_files()
        # No lease needed: nothing happens.
        check = c.inject("", process(STOP, cmdline=victims.token), 30, validate_only=True)
        assert check.id == "" and check.state == pb.FAULT_STATE_UNSPECIFIED
        assert check.kind == pb.FAULT_KIND_PROCESS
        assert check.applied["matched"] == "2" and check.applied["action"] == "stop"
        assert sorted(map(int, re.findall(r"(\d+) start=", check.applied["processes"]))) == pids
        assert "validate_only" in c.info().features
        # Every refusal an inject gives, validate_only gives too.
        with pytest.raises(grpc.RpcError) as err:
            c.inject("", process(KILL, cmdline="no-such-process-x"), 30, validate_only=True)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "no process on" in (err.value.details() or "")
        with pytest.raises(grpc.RpcError) as err:
            c.inject("no-such-lease", process(KILL, cmdline=victims.token), 30,
                     validate_only=True)  # fmt: skip
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        assert c.list_faults() == [] and agent.journal_files() == journal_before
        c.halt(latch=True, reason="test")
        with pytest.raises(grpc.RpcError) as err:
            c.inject("", process(KILL, cmdline=victims.token), 30, validate_only=True)
        assert "halted" in (err.value.details() or "")
        c.resume()
    assert all(running(p) and not stopped(p) for p in pids)


def test_kill_with_a_signal_and_the_children(agent: AgentProc, victims: Victims) -> None:
    parent = victims.start(
        "import subprocess, time; subprocess.Popen(['sleep', '600']); time.sleep(600)"
    )
    assert wait_for(lambda: len(_tree(parent)) == 2, 10)
    child = _tree(parent)[0].pid
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(lease, process(KILL, signal=15, children=True), 30, pb.Target(pid=parent))
        assert fault.applied["signal"] == "SIGTERM"
        assert set(map(int, fault.applied["signalled"].split(","))) == {parent, child}
        assert wait_for(lambda: not running(parent) and not running(child), 5)
        c.release_lease(lease)


def test_kill_every_interval_matches_afresh_until_the_fault_ends(
    agent: AgentProc, victims: Victims, tmp_path: Path
) -> None:
    """A supervisor restarts its worker whenever it dies: each round kills the
    new one (the supervisor's own command line does not match)."""
    count = tmp_path / "restarts"
    supervisor = (
        "import os, subprocess, sys, time\n"
        f"n = 0\n"
        "while True:\n"
        f"    w = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)',"
        f" '{victims.token}' + '-worker'])\n"  # not the worker's token itself
        "    w.wait(); n += 1\n"
        # Replaced whole: a reader never sees the file empty.
        f"    open({str(count)!r} + '.tmp', 'w').write(str(n))\n"
        f"    os.replace({str(count)!r} + '.tmp', {str(count)!r})\n"
    )
    victims.start(supervisor, tag="-supervisor")
    assert wait_for(lambda: _worker(victims) is not None, 10)

    def restarts() -> int:
        return int(count.read_text() or 0) if count.exists() else 0

    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        spec = process(
            KILL, cmdline=f"{victims.token}-worker", interval=Duration(nanos=300_000_000)
        )
        fault = c.inject(lease, spec, 2.5)
        assert fault.applied["interval_seconds"] == "0.3"
        assert wait_for(lambda: c.get_fault(fault.id).state == pb.FAULT_STATE_REVERTED, 10)
        killed = restarts()
        assert killed >= 4, f"{killed} kills in 2.5 s at a 0.3 s interval"
        # Once the fault has ended, the worker lives.
        time.sleep(1.0)
        assert restarts() == killed
        assert _worker(victims) is not None
        c.release_lease(lease)


def _worker(victims: Victims) -> int | None:
    for p in psutil.process_iter(["pid", "cmdline"]):
        if f"{victims.token}-worker" in (p.info["cmdline"] or []):
            return int(p.info["pid"])
    return None


def test_stop_holds_until_revert_then_continues(agent: AgentProc, victims: Victims) -> None:
    pid = victims.start()
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(lease, process(STOP), 30, pb.Target(pid=pid))
        assert fault.applied["stopped"] == str(pid)
        assert stopped(pid)
        time.sleep(0.3)
        assert stopped(pid), "the stop must hold while the fault is active"
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        assert wait_for(lambda: running(pid) and not stopped(pid), 2)
        c.release_lease(lease)


def test_a_stop_ends_when_its_lease_expires(agent: AgentProc, victims: Victims) -> None:
    pid = victims.start()
    with agent.client() as c:
        lease = c.acquire_lease("test", 2).lease_id
        c.inject(lease, process(STOP, cmdline=victims.token), 30)
        assert stopped(pid)
        t0 = time.monotonic()
        assert wait_for(lambda: not stopped(pid), 5)
        assert time.monotonic() - t0 <= 2 + 1.0
        assert running(pid)


@pytest.mark.parametrize("recovery", ["restart", "sweep"])
def test_a_stop_outlives_no_agent_kill(agent: AgentProc, victims: Victims, recovery: str) -> None:
    """kill -9 the agent mid-stop: the restarted agent, or the offline sweep,
    continues the process from its journal."""
    pid = victims.start()
    with agent.client() as c:
        lease = c.acquire_lease("test", 60).lease_id
        c.inject(lease, process(STOP), 60, pb.Target(pid=pid))
    assert stopped(pid)
    agent.kill()
    time.sleep(0.2)
    assert stopped(pid), "nothing but the agent continues it"
    if recovery == "restart":
        agent.start()
    else:
        agent.sweep()
    assert wait_for(lambda: not stopped(pid), 5)
    assert running(pid)


def test_a_recycled_pid_is_never_continued(agent: AgentProc, victims: Victims) -> None:
    """Revert continues only the process it stopped: same pid, same start time."""
    pid = victims.start()
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        fault = c.inject(lease, process(STOP), 30, pb.Target(pid=pid))
        # Someone else kills it while it is stopped; the fault's revert is a no-op.
        os.kill(pid, 9)
        assert wait_for(lambda: not running(pid), 5)
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        c.release_lease(lease)


def test_every_unsafe_target_is_refused_before_anything_happens(
    agent: AgentProc, victims: Victims
) -> None:
    pid = victims.start()
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        assert "pid 1 (init)" in refused(c, lease, process(KILL), pb.Target(pid=1))
        assert "the agent itself" in refused(c, lease, process(STOP), pb.Target(pid=agent.pid))
        assert "an ancestor of the agent" in refused(
            c, lease, process(STOP), pb.Target(pid=os.getpid())
        )
        assert "a kernel thread" in refused(c, lease, process(STOP), pb.Target(pid=2))
        assert "a Brownout worker or fork server" in refused(
            c, lease, process(STOP, cmdline="--brownout-zygote")
        )
        # A match that includes the agent is refused as a whole, whatever the draw.
        details = refused(c, lease, process(KILL, cmdline=f"{victims.token}|-m agent", count=1))
        assert "the agent itself" in details
        assert "no process on" in refused(c, lease, process(KILL, cmdline="no-such-process-x"))
        assert "refusing to match every process" in refused(
            c, lease, process(KILL), code=grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "process.action" in refused(
            c, lease, process(0, cmdline=victims.token), code=grpc.StatusCode.INVALID_ARGUMENT
        )
        assert "is for kill" in refused(
            c, lease, process(STOP, signal=15, cmdline=victims.token),
            code=grpc.StatusCode.INVALID_ARGUMENT,
        )  # fmt: skip
        assert c.list_faults(lease) == [], "a refused request leaves no fault"
    assert running(pid) and not stopped(pid)


def test_the_denylist_is_refused_unless_the_request_overrides_it(
    agent: AgentProc, victims: Victims
) -> None:
    pid = victims.start(
        f"import ctypes, time; ctypes.CDLL(None).prctl({PR_SET_NAME}, b'sshd', 0, 0, 0);"
        " time.sleep(600)"
    )
    assert wait_for(lambda: psutil.Process(pid).name() == "sshd", 5)
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        spec = process(STOP, comm="sshd", cmdline=victims.token)
        assert "denylist" in refused(c, lease, spec)
        assert not stopped(pid)
        spec.process.allow_denylisted = True
        fault = c.inject(lease, spec, 30)
        assert fault.applied["stopped"] == str(pid)
        c.revert(fault.id)
        assert wait_for(lambda: not stopped(pid), 2)
        c.release_lease(lease)


def test_a_match_over_the_cap_needs_allow_many(
    tmp_path: Path, victims: Victims, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "capped", extra_args=["--process-match-cap", "2"])
    agent_factory.append(a)
    a.start()
    pids = [victims.start() for _ in range(3)]
    with a.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        spec = process(STOP, cmdline=victims.token)
        assert "more than this agent's cap of 2" in refused(c, lease, spec)
        assert not any(stopped(p) for p in pids)
        spec.process.allow_many = True
        fault = c.inject(lease, spec, 30)
        assert sorted(map(int, fault.applied["stopped"].split(","))) == pids
        c.release_lease(lease)
        assert wait_for(lambda: not any(stopped(p) for p in pids), 2)


def test_the_lease_holders_own_process_is_refused_when_local(
    agent: AgentProc, victims: Victims
) -> None:
    """A controller on this node cannot stop itself: its connection names it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, agent.address],
        stdout=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None
        lease = holder.stdout.readline().strip()
        assert lease, "the holder did not report its lease"
        with agent.client() as c:
            details = refused(c, lease, process(STOP), pb.Target(pid=holder.pid))
            assert "holds the lease holder's connection" in details
        assert not stopped(holder.pid)
    finally:
        holder.kill()
        holder.wait(10)


_HOLDER = """
import sys, time
from tests.agentclient import AgentClient
with AgentClient(sys.argv[1]) as c:
    lease = c.acquire_lease("local-holder", 30)
    print(lease.lease_id, flush=True)
    while True:
        time.sleep(1)
        c.renew_lease(lease.lease_id)
"""


def test_a_second_stop_of_a_held_process_is_refused(agent: AgentProc, victims: Victims) -> None:
    """The first stop's end would continue it under the second: refused instead."""
    pid = victims.start()
    with agent.client() as c:
        lease = c.acquire_lease("test", 30).lease_id
        first = c.inject(lease, process(STOP), 30, pb.Target(pid=pid))
        assert f"already stopped by fault {first.id}" in refused(
            c, lease, process(STOP, cmdline=victims.token)
        )
        c.revert(first.id)
        assert wait_for(lambda: not stopped(pid), 2)
        second = c.inject(lease, process(STOP), 30, pb.Target(pid=pid))
        assert stopped(pid)
        c.revert(second.id)
        assert wait_for(lambda: not stopped(pid), 2)
        c.release_lease(lease)


def test_brownout_inject_process_stops_for_the_duration(agent: AgentProc, victims: Victims) -> None:
    pid = victims.start()
    cli = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "--agent", agent.address, "inject", "process",
         "--action", "stop", "--cmdline", victims.token, "--duration", "1.5s"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert wait_for(lambda: stopped(pid), 10), "the CLI's stop did not land"
        out, err = cli.communicate(timeout=30)
    finally:
        cli.kill()
    assert cli.returncode == 0, err
    assert f"stopped={pid}" in out, out
    assert running(pid) and not stopped(pid)
