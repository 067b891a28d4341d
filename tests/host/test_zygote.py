"""The worker fork server: workers forked from it behave as exec'd ones did, die
with it (and it with the agent), and the spawner falls back to exec'ing them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from agent.kernel import cgroups, procs
from agent.workers import zygote
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.scratch import cgroup, cgroup_of, v1_available

pytestmark = pytest.mark.host

CPU_BURN = "agent.workers.cpu_burn"
CORE = max(os.sched_getaffinity(0))


def burn_argv(instance: str, load: float = 1, fault_id: str = "fault-test") -> list[str]:
    args = ["--core", str(CORE), "--load", str(load)]
    return procs.worker_argv(CPU_BURN, args, instance, fault_id)


def gone(pid: int) -> bool:
    """No such process, not even a zombie (the fork server reaps its children)."""
    return not Path(f"/proc/{pid}").exists()


def cmdline(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")


def cpuacct_seconds(name: str) -> float:
    return int(Path(f"/sys/fs/cgroup/cpuacct{name}/cpuacct.usage").read_text()) / 1e9


@pytest.mark.skipif(not v1_available("cpuacct"), reason="needs the cgroup v1 cpuacct controller")
def test_a_forked_worker_burns_in_its_cgroup_only_after_go(
    spawner: procs.Spawner, instance: str
) -> None:
    with cgroup(["cpuacct"]) as name:
        placement = cgroups.find(name)
        at_go: list[float] = []

        def place(pid: int) -> None:
            assert psutil.Process(pid).ppid() == spawner.zygote_pid  # forked, not exec'd
            cgroups.attach(pid, placement)
            time.sleep(0.2)  # a worker that did not wait for "go" would burn meanwhile
            at_go.append(cpuacct_seconds(name))

        ref = spawner.spawn(burn_argv(instance, load=50), before_go=place)
        try:
            assert at_go[0] < 0.005, f"{at_go[0]:.3f}s of CPU burned in the cgroup before go"
            assert cgroup_of(ref.pid, "cpuacct") == name
            time.sleep(0.5)
            burned = cpuacct_seconds(name) - at_go[0]
            assert burned > 0.1, f"only {burned:.3f}s of CPU burned in the cgroup after go"
        finally:
            assert procs.kill(ref, spawner)
        assert wait_for(lambda: gone(ref.pid), 2.0), "the killed worker lingers (zombie?)"


def test_a_forked_worker_looks_like_an_execd_one(spawner: procs.Spawner, instance: str) -> None:
    argv = burn_argv(instance)
    ref = spawner.spawn(argv)
    try:
        zygote_pid = spawner.zygote_pid
        assert zygote_pid is not None and psutil.Process(ref.pid).ppid() == zygote_pid
        # The command line the sweep reads: today's worker argv, bound to its real parent.
        expected = [*argv]
        expected[expected.index("--parent-pid") + 1] = str(zygote_pid)
        assert cmdline(ref.pid) == expected
        assert Path(f"/proc/{ref.pid}/comm").read_text() == "brownout-cpu\n"
        found = procs.find_marked(instance, "fault-test", CPU_BURN)
        assert found == [procs.MarkedProc(ref.pid, ref.start_time, "fault-test")]
        assert procs.find_marked(instance) == found  # the fork server is not a worker
        assert [z.pid for z in procs.find_zygotes(instance)] == [zygote_pid]
        # Own session, cwd /, only the three pipes open (not the control socket).
        assert os.getsid(ref.pid) == ref.pid
        assert os.readlink(f"/proc/{ref.pid}/cwd") == "/"
        assert sorted(os.listdir(f"/proc/{ref.pid}/fd")) == ["0", "1", "2"]
        # The server's SIGCHLD handler is reset, and no signal is blocked.
        status = dict(
            line.split(":\t", 1)
            for line in Path(f"/proc/{ref.pid}/status").read_text().splitlines()
        )
        assert int(status["SigCgt"], 16) & 1 << (signal.SIGCHLD - 1) == 0
        assert int(status["SigBlk"], 16) == 0
        assert psutil.Process(ref.pid).cpu_affinity() == [CORE]
    finally:
        assert procs.kill(ref, spawner)
    assert wait_for(lambda: gone(ref.pid), 2.0), "the killed worker lingers (zombie?)"


def test_killing_the_fork_server_kills_its_workers_and_the_next_spawn_restarts_it(
    spawner: procs.Spawner, instance: str
) -> None:
    refs = [spawner.spawn(burn_argv(instance)) for _ in range(2)]
    first = spawner.zygote_pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    # Orphans now: init reaps them (alive() counts a zombie as dead).
    assert wait_for(lambda: not any(procs.alive(r) for r in refs), 2.0), "workers outlived it"
    ref = spawner.spawn(burn_argv(instance))
    try:
        second = spawner.zygote_pid
        assert second not in (None, first)
        assert psutil.Process(ref.pid).ppid() == second
    finally:
        assert procs.kill(ref, spawner)


def test_a_hung_fork_server_is_replaced_and_the_worker_execd(
    spawner: procs.Spawner, instance: str
) -> None:
    hung = spawner.zygote_pid
    assert hung is not None
    os.kill(hung, signal.SIGSTOP)
    ref = spawner.spawn(burn_argv(instance), ready_timeout=2.0)
    try:
        assert psutil.Process(ref.pid).ppid() == os.getpid()  # exec'd by us
        assert procs.find_marked(instance, "fault-test", CPU_BURN)[0].pid == ref.pid
        assert wait_for(lambda: gone(hung), 2.0), "the hung server was not killed"
    finally:
        assert procs.kill(ref, spawner)
    ref = spawner.spawn(burn_argv(instance))  # and the next one is forked by a new server
    try:
        assert psutil.Process(ref.pid).ppid() not in (hung, os.getpid())
    finally:
        assert procs.kill(ref, spawner)


@pytest.mark.parametrize("how", ["fork=False", "argv too long", "not a worker module"])
def test_the_exec_path_still_works(spawner: procs.Spawner, instance: str, how: str) -> None:
    if how == "not a worker module":
        # Not one the server runs: a copy of cpu_burn under another name.
        argv = burn_argv(instance)
        argv[1:3] = ["-c", "from agent.workers.cpu_burn import main; main()"]
    else:
        fault_id = "fault-" + "x" * (zygote.PADDING if how == "argv too long" else 4)
        argv = burn_argv(instance, fault_id=fault_id)
    ref = spawner.spawn(argv, fork=how != "fork=False")
    try:
        assert psutil.Process(ref.pid).ppid() == os.getpid()
        assert cmdline(ref.pid) == argv
        assert psutil.Process(ref.pid).cpu_affinity() == [CORE]
    finally:
        assert procs.kill(ref, spawner)
    assert spawner.zygote_pid is not None  # declining a request is no failure


@pytest.mark.parametrize("fork", [True, False])
def test_errors_before_ready_reach_the_caller(
    spawner: procs.Spawner, instance: str, fork: bool
) -> None:
    argv = burn_argv(instance)
    argv[argv.index("--load") + 1] = "lots"
    with pytest.raises(procs.SpawnError, match=r"(?s)did not start: .*invalid float value: 'lots'"):
        spawner.spawn(argv, fork=fork)
    assert procs.find_marked(instance) == []


@pytest.mark.parametrize("fork", [True, False])
def test_setup_errors_after_go_reach_the_caller(
    spawner: procs.Spawner, instance: str, fork: bool
) -> None:
    argv = burn_argv(instance)
    argv[argv.index("--core") + 1] = "4095"  # no such CPU: sched_setaffinity fails
    with pytest.raises(procs.SpawnError, match=r"failed to start: .*Invalid argument"):
        spawner.spawn(argv, fork=fork)
    assert procs.find_marked(instance) == []


@pytest.mark.parametrize("fork", [True, False])
def test_a_revert_kills_the_workers_its_record_missed_from_what_the_spawner_remembers(
    spawner: procs.Spawner, instance: str, fork: bool
) -> None:
    """A worker started for a fault but never written to its undo record (say
    the checkpoint failed) is still killed at revert. The spawner remembers it,
    so no search of the host's processes is needed: here the search, told of
    another agent instance, would find nothing."""
    ref = spawner.spawn(burn_argv(instance, fault_id="fault-unrecorded"), fork=fork)
    assert spawner.started_for("fault-unrecorded", CPU_BURN) == [ref]
    assert spawner.started_for("fault-unrecorded", "agent.workers.memory_leak") is None
    procs.kill_fault_workers("other-agent", "fault-unrecorded", CPU_BURN, [], spawner, "cpu")
    assert not procs.alive(ref)
    assert spawner.started_for("fault-unrecorded", CPU_BURN) is None  # forgotten once gone
    # A second revert (idempotent) falls back to the search by marker.
    procs.kill_fault_workers(instance, "fault-unrecorded", CPU_BURN, [], spawner, "cpu")


def test_agent_kill9_kills_its_fork_server_and_workers(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state").start()
    agent_factory.append(a)
    with a.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)), 60)
    (worker,) = procs.find_marked(a.instance, fault.id, CPU_BURN)
    (server,) = procs.find_zygotes(a.instance)
    assert psutil.Process(server.pid).ppid() == a.pid
    assert psutil.Process(worker.pid).ppid() == server.pid
    a.kill()
    worker_ref = procs.ProcRef(worker.pid, worker.start_time)
    assert wait_for(lambda: not procs.alive(worker_ref) and not procs.alive(server), 2.0)
    a.start()  # reverts the journaled fault; leaves no process behind (agent_factory)


def stray_zygote(instance: str) -> tuple[subprocess.Popen[bytes], socket.socket]:
    """A fork server as an agent of `instance` would start it (here bound to us)."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    proc = subprocess.Popen(
        zygote.command(sys.executable, os.getpid(), instance),
        stdin=theirs.fileno(),
        cwd=zygote.package_root(),
    )
    theirs.close()
    assert wait_for(lambda: procs.find_zygotes(instance) != [], 5.0)
    return proc, ours


def test_the_offline_sweep_and_a_starting_agent_kill_a_stray_fork_server(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state")
    proc, sock = stray_zygote(a.instance)
    with sock:
        assert procs.find_marked(a.instance) == []  # not a worker: fault sweeps leave it
        out = a.sweep()
        assert proc.wait(timeout=5) == -signal.SIGKILL
        assert f"fork server pid {proc.pid}" in out.stderr

    proc, sock = stray_zygote(a.instance)
    with sock:
        agent_factory.append(a.start())
        assert proc.wait(timeout=5) == -signal.SIGKILL
        (own,) = procs.find_zygotes(a.instance)
        assert psutil.Process(own.pid).ppid() == a.pid
