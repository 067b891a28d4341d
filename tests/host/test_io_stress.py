"""IO stress on a real agent, checked with the workers' block-layer IO counters
on a loop-mounted ext4 the test creates."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.scratch import cgroup, cgroup_of, expect_error, loopfs, v1_available
from tests.processes import all_gone

pytestmark = pytest.mark.host

KIB, MIB = 1024, 1024 * 1024


# The default 100 MiB disk reserve is more than these test filesystems hold.
AGENT_FIXTURE_ARGS = ["--disk-reserve", "1MiB"]


@pytest.fixture
def mnt(tmp_path: Path) -> Iterator[Path]:
    with loopfs(tmp_path, 96, "ext4") as m:
        yield m
        assert not (m / ".brownout").exists()


def io(
    path: Path, mode: pb.IoMode.ValueType, workers: int = 1, direct: bool = False, **kw: int
) -> pb.FaultSpec:
    kw.setdefault("bytes_per_worker", 8 * MIB)
    return pb.FaultSpec(
        io=pb.IoSpec(path=str(path), workers=workers, mode=mode, direct=direct, **kw)
    )


def counters(pids: list[int]) -> tuple[int, int]:
    """(read_bytes, write_bytes) that reached the block layer, summed."""
    totals = [psutil.Process(p).io_counters() for p in pids]
    return sum(t.read_bytes for t in totals), sum(t.write_bytes for t in totals)


def io_over(pids: list[int], seconds: float) -> tuple[int, int]:
    r0, w0 = counters(pids)
    time.sleep(seconds)
    r1, w1 = counters(pids)
    return r1 - r0, w1 - w0


@pytest.mark.parametrize(
    ("mode", "direct", "reads", "writes"),
    [
        (pb.IO_MODE_WRITE, True, False, True),
        (pb.IO_MODE_READ, False, True, False),  # page cache dropped: reads reach the disk
        (pb.IO_MODE_MIXED, True, True, True),
    ],
)
def test_workers_do_block_io_then_revert_removes_them_and_their_files(
    agent: AgentProc, mnt: Path, mode: pb.IoMode.ValueType, direct: bool, reads: bool, writes: bool
) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        spec = io(mnt, mode, workers=2, direct=direct, block_size_bytes=16 * KIB)
        fault = c.inject(lease.lease_id, spec, 30)
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
        pids = [int(p) for p in fault.applied["worker_pids"].split(",")]
        files = [Path(f) for f in fault.applied["files"].split(",")]
        assert len(pids) == 2 and all(f.parent == mnt / ".brownout" for f in files)
        time.sleep(0.5)  # past laying out the files
        read, written = io_over(pids, 1.0)
        assert (read > MIB) == reads, f"read {read} bytes from the device"
        assert (written > MIB) == writes, f"wrote {written} bytes to the device"
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
        assert all_gone(p for p in pids if p)
        assert not any(f.exists() for f in files)
        c.release_lease(lease.lease_id)


@pytest.mark.skipif(not v1_available("blkio"), reason="needs the cgroup v1 blkio controller")
def test_workers_run_in_the_target_cgroup(agent: AgentProc, mnt: Path) -> None:
    with cgroup(["blkio"]) as name, agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, io(mnt, pb.IO_MODE_WRITE), 30, pb.Target(cgroup=name))
        assert cgroup_of(int(fault.applied["worker_pids"]), "blkio") == name
        assert fault.applied["cgroup"] == f"/sys/fs/cgroup/blkio{name}"
        c.release_lease(lease.lease_id)


def test_bad_input_is_refused_by_field_and_leaves_nothing(agent: AgentProc, mnt: Path) -> None:
    invalid = grpc.StatusCode.INVALID_ARGUMENT
    w = pb.IO_MODE_WRITE
    cases: list[tuple[pb.FaultSpec, str]] = [
        (io(Path("rel"), w), "io.path: must be an absolute path"),
        (io(mnt / "missing", w), "io.path: "),
        (io(mnt, pb.IO_MODE_UNSPECIFIED), "io.mode: must be read, write or mixed"),
        (io(mnt, w, workers=0), "io.workers: must be between 1 and 64"),
        (io(mnt, w, workers=65), "io.workers: must be between 1 and 64"),
        (io(mnt, w, block_size_bytes=100), "io.block_size_bytes: must be between 512"),
        (io(mnt, w, block_size_bytes=1 << 30), "io.block_size_bytes: must be between"),
        (io(mnt, w, direct=True, block_size_bytes=1000), "io.block_size_bytes: must be a multi"),
        (io(mnt, w, bytes_per_worker=5000), "io.bytes_per_worker: must be a positive multiple"),
    ]
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        for spec, prefix in cases:
            expect_error(c, lease.lease_id, spec, invalid, prefix)
        expect_error(
            c,
            lease.lease_id,
            io(mnt, w, workers=4, bytes_per_worker=64 * MIB),
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            "io.bytes_per_worker: refused",
        )
        expect_error(
            c,
            lease.lease_id,
            io(mnt, w),
            invalid,
            "target.pid: no process",
            pb.Target(pid=2**22 + 9),
        )
        assert c.list_faults() == []
        c.release_lease(lease.lease_id)


def test_kill9_then_restart_leaves_no_worker_and_no_file(
    tmp_path: Path, agent_factory: list[AgentProc], mnt: Path
) -> None:
    a = AgentProc(tmp_path / "state9", extra_args=["--disk-reserve", "1MiB"]).start()
    agent_factory.append(a)
    with a.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, io(mnt, pb.IO_MODE_MIXED, workers=2), 60)
    pids = [int(p) for p in fault.applied["worker_pids"].split(",")]
    files = [Path(f) for f in fault.applied["files"].split(",")]
    a.kill()
    assert wait_for(lambda: all_gone(pids), 2.0)
    assert all(f.exists() for f in files)
    a.start()
    assert not any(f.exists() for f in files)
    assert a.marked_processes() == [] and a.journal_files() == []
    a.stop()
