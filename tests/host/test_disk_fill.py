"""Disk fill on a real agent, measured with statvfs on filesystems the test mounts."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc
from tests.host.scratch import expect_error, loopfs, tmpfs, used_percent

pytestmark = pytest.mark.host

MIB = 1024 * 1024
INVALID = grpc.StatusCode.INVALID_ARGUMENT


# The default 100 MiB disk reserve is more than these test filesystems hold.
AGENT_FIXTURE_ARGS = ["--disk-reserve", "1MiB"]


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path, "64m") as m:
        yield m
        assert not (m / ".brownout").exists(), os.listdir(m / ".brownout")


def disk(path: Path | str, **amount: float | int | bool) -> pb.FaultSpec:
    return pb.FaultSpec(disk=pb.DiskSpec(path=str(path), **amount))  # type: ignore[arg-type]


@pytest.mark.parametrize("percent", [30.0, 90.0])
def test_fill_percent_lands_within_half_a_percent(
    agent: AgentProc, mnt: Path, percent: float
) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, disk(mnt, fill_percent=percent), 30)
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        measured = used_percent(mnt)
        assert abs(measured - percent) <= 0.5, f"asked {percent}%, statvfs says {measured:.3f}%"
        assert fault.applied["mount"] == str(mnt)
        assert fault.applied["method"] == "fallocate"
        fill = Path(fault.applied["file"])
        assert fill.parent == mnt / ".brownout" and fault.id in fill.name
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        assert used_percent(mnt) < 0.5 and not fill.exists()
        c.release_lease(lease.lease_id)


def test_write_bytes_and_leave_free_bytes(agent: AgentProc, mnt: Path) -> None:
    total = os.statvfs(mnt).f_blocks * os.statvfs(mnt).f_frsize
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, disk(mnt, write_bytes=16 * MIB), 30)
        st = os.statvfs(mnt)
        used = (st.f_blocks - st.f_bfree) * st.f_frsize
        assert abs(used - 16 * MIB) <= total * 0.005
        c.revert(fault.id)
        fault = c.inject(lease.lease_id, disk(mnt, leave_free_bytes=8 * MIB), 30)
        st = os.statvfs(mnt)
        assert abs(st.f_bavail * st.f_frsize - 8 * MIB) <= total * 0.005
        c.revert(fault.id)
        c.release_lease(lease.lease_id)


def test_symlinks_are_resolved_and_the_resolved_path_reported(
    agent: AgentProc, mnt: Path, tmp_path: Path
) -> None:
    (mnt / "data").mkdir()
    link = tmp_path / "link"
    link.symlink_to(mnt / "data")
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, disk(link, write_bytes=MIB), 30)
        assert fault.applied["path"] == str(mnt / "data")
        assert fault.applied["mount"] == str(mnt)
        c.release_lease(lease.lease_id)
    (mnt / "data").rmdir()


def test_reserve_caps_the_fill_unless_allow_full_and_revert_works_when_full(
    agent: AgentProc, mnt: Path
) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        capped = c.inject(lease.lease_id, disk(mnt, fill_percent=100), 30)
        assert capped.applied["capped"] == "true"
        assert int(capped.applied["reserve_bytes"]) == MIB
        st = os.statvfs(mnt)
        assert st.f_bavail * st.f_frsize >= MIB, "the reserve was consumed"
        c.revert(capped.id)

        full = c.inject(lease.lease_id, disk(mnt, fill_percent=100, allow_full=True), 30)
        assert full.applied["capped"] == "false"
        assert os.statvfs(mnt).f_bavail == 0, "allow_full should fill to the last block"
        reverted = c.revert(full.id)
        assert reverted.state == pb.FAULT_STATE_REVERTED, reverted.error
        assert used_percent(mnt) < 0.5
        c.release_lease(lease.lease_id)


def test_falls_back_to_writes_where_fallocate_is_unsupported(
    agent: AgentProc, tmp_path: Path
) -> None:
    with loopfs(tmp_path, 48, "ext2") as m, agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, disk(m, fill_percent=50), 30)
        assert fault.applied["method"] == "write"
        assert abs(used_percent(m) - 50) <= 0.5, used_percent(m)
        c.release_lease(lease.lease_id)
        assert not (m / ".brownout").exists()


def test_a_second_fill_on_one_filesystem_is_refused(
    agent: AgentProc, mnt: Path, tmp_path: Path
) -> None:
    with tmpfs(tmp_path, "16m") as other, agent.client() as c:
        lease = c.acquire_lease("test", 30)
        first = c.inject(lease.lease_id, disk(mnt, fill_percent=40), 30)
        details = expect_error(
            c,
            lease.lease_id,
            disk(mnt, write_bytes=MIB),
            grpc.StatusCode.FAILED_PRECONDITION,
            f"disk fill {first.id} is already active",
        )
        assert "revert it first" in details
        assert abs(used_percent(mnt) - 40) <= 0.5
        # Another filesystem is independent.
        assert (
            c.inject(lease.lease_id, disk(other, fill_percent=40), 30).state
            == pb.FAULT_STATE_ACTIVE
        )
        c.release_lease(lease.lease_id)


def test_bad_input_is_refused_by_field_and_leaves_nothing(
    agent: AgentProc, mnt: Path, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("x")
    cases: list[tuple[pb.FaultSpec, str]] = [
        (disk("", fill_percent=10), "disk.path: is required"),
        (disk("relative/dir", fill_percent=10), "disk.path: must be an absolute path"),
        (disk(tmp_path / "missing", fill_percent=10), "disk.path: "),
        (disk(tmp_path / "file", fill_percent=10), "disk.path: "),
        (disk("/proc", fill_percent=10), "disk.path: /proc: /proc is a proc filesystem"),
        (disk(mnt), "disk.amount: set one of"),
        (disk(mnt, fill_percent=0), "disk.fill_percent: must be > 0"),
        (disk(mnt, fill_percent=101), "disk.fill_percent: must be between 0 and 100%"),
        (disk(mnt, fill_percent=float("nan")), "disk.fill_percent: must be a finite number"),
        (disk(mnt, write_bytes=0), "disk.write_bytes: must be > 0"),
        (disk(mnt, write_bytes=-5), "disk.write_bytes: must be > 0"),
        (disk(mnt, leave_free_bytes=-1), "disk.leave_free_bytes: must be >= 0"),
        (disk(mnt, leave_free_bytes=1 << 40), "disk.leave_free_bytes: "),
    ]
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        for spec, prefix in cases:
            expect_error(c, lease.lease_id, spec, INVALID, prefix)
        expect_error(
            c, lease.lease_id, disk(mnt, write_bytes=MIB), INVALID, "target:", pb.Target(pid=1)
        )
        # More than fits outside the reserve: refused, saying it was refused.
        subprocess.run(["fallocate", "-l", str(63 * MIB), str(mnt / "ballast")], check=True)
        expect_error(
            c,
            lease.lease_id,
            disk(mnt, write_bytes=MIB),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "disk.write_bytes: refused",
        )
        (mnt / "ballast").unlink()
        assert c.list_faults() == []
        c.release_lease(lease.lease_id)
    assert agent.journal_files() == []


def test_kill9_with_the_journal_on_the_full_filesystem_then_restart_removes_the_fill(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    with tmpfs(tmp_path, "32m") as m:
        # The state dir (journal) lives on the filesystem being filled.
        (m / "state").mkdir()
        (tmp_path / "state").symlink_to(m / "state")
        a = AgentProc(tmp_path / "state").start()
        agent_factory.append(a)
        with a.client() as c:
            lease = c.acquire_lease("test", 30)
            fault = c.inject(lease.lease_id, disk(m, fill_percent=100, allow_full=True), 60)
            fill = Path(fault.applied["file"])
            # The agent kept a headroom for its journal; take that too: 100% full.
            free = os.statvfs(m).f_bavail * os.statvfs(m).f_frsize
            assert 0 < free <= 2 * MIB
            subprocess.run(["fallocate", "-l", str(free), str(m / "ballast")], check=True)
            assert os.statvfs(m).f_bavail == 0
        a.kill()
        assert fill.exists() and a.journal_files() == [f"{fault.id}.json"]
        a.start()
        assert not fill.exists(), "the restarted agent did not remove the fill on a full disk"
        assert a.journal_files() == []
        with a.client() as c:
            assert c.get_fault(fault.id).end_reason == pb.END_REASON_AGENT_RESTART
        a.stop()
        (m / "ballast").unlink()
        assert not (m / ".brownout").exists()


def test_the_sweep_finds_fill_files_by_marker_when_the_journal_is_lost(
    tmp_path: Path, agent_factory: list[AgentProc], mnt: Path
) -> None:
    a = AgentProc(tmp_path / "state", extra_args=["--disk-reserve", "1MiB"]).start()
    agent_factory.append(a)
    with a.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, disk(mnt, fill_percent=50), 60)
    a.kill()
    (a.state_dir / "journal" / f"{fault.id}.json").unlink()
    # Another agent's file (another instance marker) must be left alone.
    foreign = mnt / ".brownout" / f"fault-0.{'0' * 10}.fill"
    foreign.write_bytes(b"x")
    result = a.sweep()
    assert not Path(fault.applied["file"]).exists(), result.stdout + result.stderr
    assert "swept leftover" in result.stdout + result.stderr
    assert foreign.exists()
    foreign.unlink()
    (mnt / ".brownout").rmdir()
