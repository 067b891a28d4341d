"""The agent's state dir on a scratch tmpfs filled to 100 %: injects are refused
with RESOURCE_EXHAUSTED and apply nothing, faults already running keep their
journal records, reverts (by RPC, by lease expiry and by recovery after a
kill -9 and a restart on the still-full filesystem) all go ahead."""

from __future__ import annotations

import contextlib
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.scratch import tmpfs
from tests.reliability.common import MIB, bump, figure, scale

pytestmark = [pytest.mark.host, pytest.mark.reliability]

ROUNDS = scale("BROWNOUT_FULL_DISK_ROUNDS", 2, 10)
NAME = "full state disk"


def cpu() -> pb.FaultSpec:
    return pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))


def memory() -> pb.FaultSpec:
    return pb.FaultSpec(memory=pb.MemorySpec(bytes=8 * MIB))


def fill(mnt: Path) -> Path:
    """Write until ENOSPC: not one free block is left."""
    filler = mnt / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        size = 65536
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                size //= 2
    finally:
        os.close(fd)
    assert os.statvfs(mnt).f_bavail == 0
    return filler


@pytest.fixture
def state(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """(state dir, its mount): a symlink into a 1 MiB tmpfs, so the agent's log
    and ready file stay outside while its journal and lock live on the tmpfs."""
    with tmpfs(tmp_path, "1m") as mnt:
        (mnt / "state").mkdir()
        link = tmp_path / "state"
        link.symlink_to(mnt / "state")
        yield link, mnt


def test_full_state_disk_refuses_injects_and_still_reverts(
    state: tuple[Path, Path], agent_factory: list[AgentProc]
) -> None:
    state_dir, mnt = state
    a = AgentProc(state_dir).start()
    agent_factory.append(a)
    for _ in range(ROUNDS):
        with a.client() as c:
            lease = c.acquire_lease("reliability-full-disk", 30)
            short = c.acquire_lease("reliability-full-disk-short", 1.5)
            running = [c.inject(lease.lease_id, s, 60) for s in (cpu(), memory(), cpu())]
            expiring = c.inject(short.lease_id, cpu(), 60)
            filler = fill(mnt)
            # 100 % full: every running fault still has its record; new ones are refused.
            ids = {f.id for f in [*running, expiring]}
            assert {n.removesuffix(".json") for n in a.journal_files()} == ids
            before = len(a.marked_processes())
            for spec in (cpu(), memory(), cpu(), memory()):
                with pytest.raises(grpc.RpcError) as err:
                    c.inject(lease.lease_id, spec, 60)
                assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
                bump(NAME, "injects_refused_when_full")
            assert len(a.marked_processes()) == before, "a refused inject left a process"
            assert len([f for f in c.list_faults() if f.state == pb.FAULT_STATE_ACTIVE]) == 4

            # Reverts on the full disk: by RPC and by lease expiry.
            assert c.revert(running[0].id).state == pb.FAULT_STATE_REVERTED
            bump(NAME, "reverted_by_rpc_when_full")
            assert wait_for(
                lambda e=expiring.id: c.get_fault(e).state == pb.FAULT_STATE_REVERTED, 3
            ), "a lease expired on a full disk but its fault was not reverted"
            bump(NAME, "reverted_by_lease_expiry_when_full")
            fill(mnt)  # the removed records freed their blocks: take them too
            survivors = {f.id for f in running[1:]}
            assert {n.removesuffix(".json") for n in a.journal_files()} == survivors

        # kill -9 with the disk still full: the restart (on the full disk) reverts them.
        a.kill()
        bump(NAME, "kills_when_full")
        a.start()
        with a.client() as c:
            for fault_id in survivors:
                after = c.get_fault(fault_id)
                assert after.state == pb.FAULT_STATE_REVERTED, after
                assert after.end_reason == pb.END_REASON_AGENT_RESTART
                bump(NAME, "recovered_after_kill_when_full")
        assert a.journal_files() == []
        assert a.marked_processes() == []
        with contextlib.suppress(FileNotFoundError):
            filler.unlink()
    figure(NAME, rounds=ROUNDS, lost_records=0)
    a.stop()
