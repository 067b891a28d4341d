"""The worker start-up handshake: ready, placement, go, setup, running."""

from __future__ import annotations

import os
import secrets

import psutil
import pytest

from agent.kernel import procs
from tests.agentproc import wait_for

pytestmark = pytest.mark.host


def burn_argv(instance: str, core: int, load: float = 1) -> list[str]:
    args = ["--core", str(core), "--load", str(load)]
    return procs.worker_argv("agent.workers.cpu_burn", args, instance, "fault-test")


def test_placement_runs_before_go_and_the_worker_burns_only_after(
    spawner: procs.Spawner,
) -> None:
    instance = secrets.token_hex(5)
    core = max(os.sched_getaffinity(0))
    seen: list[tuple[int, str, list[int]]] = []

    def place(pid: int) -> None:
        p = psutil.Process(pid)
        # It blocks reading "go" (it may take a moment to get there after "ready").
        wait_for(lambda: p.status() == psutil.STATUS_SLEEPING, 2.0)
        seen.append((pid, p.status(), p.cpu_affinity()))

    ref = spawner.spawn(burn_argv(instance, core), before_go=place)
    try:
        # At placement the worker was blocked waiting for "go", not yet pinned;
        # its setup (pinning) came after.
        assert seen == [(ref.pid, psutil.STATUS_SLEEPING, sorted(os.sched_getaffinity(0)))]
        assert psutil.Process(ref.pid).cpu_affinity() == [core]
    finally:
        assert procs.kill(ref, spawner)


def test_a_failing_placement_kills_the_worker(spawner: procs.Spawner) -> None:
    instance = secrets.token_hex(5)

    def place(pid: int) -> None:
        raise OSError(16, "cgroup busy")

    with pytest.raises(OSError, match="cgroup busy"):
        spawner.spawn(burn_argv(instance, 0), before_go=place)
    assert procs.find_marked(instance) == []


def test_setup_errors_after_go_reach_the_caller(spawner: procs.Spawner) -> None:
    instance = secrets.token_hex(5)
    with pytest.raises(procs.SpawnError, match=r"failed to start: .*Invalid argument"):
        spawner.spawn(burn_argv(instance, 4095))  # no such CPU: sched_setaffinity fails
    assert procs.find_marked(instance) == []
