"""cgroup v2 for real, on Debian's kernel in the QEMU guest (this machine's v2
hierarchy has no controllers): the CPU hog's load is relative to a cpu.max
quota, a memory leak is charged to memory.current, and a pause freezes a v2
cgroup through cgroup.freeze (the shell counting in it stops, and the thaw
lets it go on). The guest (tests/kernelvm/guest.py) measures; this judges."""

from __future__ import annotations

from typing import Any

import pytest

from tests.kernelvm.vm import GuestRun

pytestmark = [pytest.mark.kernelvm, pytest.mark.timeout(300)]


@pytest.fixture
def resources(guest: GuestRun) -> dict[str, Any]:
    result: dict[str, Any] = guest.result["resources_v2"]
    assert "error" not in result, result["error"]
    return result


def test_cpu_load_is_relative_to_a_v2_quota(resources: dict[str, Any]) -> None:
    cpu = resources["cpu"]
    print(f"\ncpu v2: {cpu['summary']}; burned {cpu['cpus_burned']:.3f} CPUs")
    assert cpu["summary"]["quota_cpus"] == "0.5"
    assert cpu["summary"]["worker_duty_percent"] == "25"
    # 50 % of a 0.5-CPU quota, charged to the cgroup (cpu.stat usage_usec).
    assert 0.18 <= cpu["cpus_burned"] <= 0.32, cpu["cpus_burned"]
    assert cpu["procs_after_revert"] == []
    assert cpu["cpus_after_revert"] < 0.02


def test_a_leak_is_charged_to_a_v2_memory_cgroup(resources: dict[str, Any]) -> None:
    memory = resources["memory"]
    mib = 1 << 20
    print(f"\nmemory v2: charged {memory['charged'] / mib:.1f} MiB, {memory['summary']}")
    assert 48 * mib <= memory["charged"] <= 56 * mib
    assert memory["after_revert"] < 4 * mib


@pytest.fixture
def pause(guest: GuestRun) -> dict[str, Any]:
    result: dict[str, Any] = guest.result["pause_v2"]
    assert "error" not in result, result["error"]
    return result


def test_a_pause_freezes_a_v2_cgroup_until_its_revert(pause: dict[str, Any]) -> None:
    print(f"\npause v2: {pause['summary']}; counted {pause['count_while_frozen']} while frozen,"
          f" {pause['count_after_thaw']} after the thaw")  # fmt: skip
    assert pause["version"] == 2
    assert pause["summary"]["state"] == "FROZEN"
    # The shell, and the sleep or mv it is running, born in its cgroup.
    assert int(pause["summary"]["processes"]) >= 1
    assert "frozen 1" in pause["frozen_events"]
    assert pause["count_while_frozen"] == 0, "a frozen shell must not count"
    assert "frozen 0" in pause["thawed_events"]
    assert pause["count_after_thaw"] >= 1, "the thawed shell counts again"
