"""Many clients inject and revert faults of mixed kinds at once against one
agent. At the end: zero faults live, zero residue, an empty journal, and the run
finished within its bound (no deadlock). CI runs 10 clients x 20 pairs;
`make soak` runs 50 x 200 (BROWNOUT_CLIENTS / BROWNOUT_PAIRS override)."""

from __future__ import annotations

import collections
import os
import random
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc
from tests.leasekeeper import LeaseKeeper
from tests.reliability.common import LIVE, MIB, Rig, agent_args, figure, rig, scale

pytestmark = [pytest.mark.host, pytest.mark.reliability]

CLIENTS = scale("BROWNOUT_CLIENTS", 10, 50)
PAIRS = scale("BROWNOUT_PAIRS", 20, 200)
BOUND = 90.0 if CLIENTS * PAIRS <= 400 else 3 * 3600.0
# Refusals a busy agent may rightly give (a second shaping qdisc on one interface
# or a second fill on one filesystem: ALREADY_EXISTS / FAILED_PRECONDITION;
# max_active_faults reached); anything else fails the test.
REFUSALS = {
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
    grpc.StatusCode.ALREADY_EXISTS,
}


@pytest.fixture
def the_rig(tmp_path: Path) -> Iterator[Rig]:
    with rig(tmp_path) as r:
        yield r


def specs(r: Rig, rng: random.Random) -> tuple[str, pb.FaultSpec, pb.Target]:
    """A random small fault of a random kind."""
    kinds = ["cpu", "memory", "disk", "io", "bandwidth", "partition", "process", "dns"]
    kind = rng.choice(kinds)
    ns = pb.Target(netns_name=r.bed.a)
    if kind == "cpu":
        return kind, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)), pb.Target()
    if kind == "memory":
        return kind, pb.FaultSpec(memory=pb.MemorySpec(bytes=4 * MIB)), pb.Target()
    if kind == "disk":
        spec = pb.DiskSpec(path=str(r.disk_mnt), write_bytes=256 * 1024)
        return kind, pb.FaultSpec(disk=spec), pb.Target()
    if kind == "io":
        io = pb.IoSpec(path=str(r.io_mnt), workers=1, mode=pb.IO_MODE_WRITE,
                       bytes_per_worker=MIB, block_size_bytes=64 * 1024)  # fmt: skip
        return kind, pb.FaultSpec(io=io), pb.Target()
    if kind == "process":  # one victim: a second stop of it at once is refused
        stop = pb.ProcessSpec(action=pb.PROCESS_ACTION_STOP)
        return kind, pb.FaultSpec(process=stop), pb.Target(pid=r.victim)
    if kind == "dns":
        return kind, pb.FaultSpec(dns=pb.DnsSpec()), ns
    if kind == "bandwidth":
        dev = rng.choice([r.bed.a_to_b, r.bed.a_to_c])
        bw = pb.BandwidthSpec(rate_bits_per_second=rng.choice([10, 50, 100]) * 1_000_000,
                              interface=dev)  # fmt: skip
        return kind, pb.FaultSpec(bandwidth=bw), ns
    peer = rng.choice([r.bed.b, r.bed.c])
    return kind, pb.FaultSpec(partition=pb.PartitionSpec(peers=[peer.v4, peer.v6])), ns


def test_clients_inject_and_revert_at_once_and_leave_nothing(
    tmp_path: Path, the_rig: Rig, agent_factory: list[AgentProc]
) -> None:
    # PYTHONFAULTHANDLER: on a stall the test SIGABRTs the agent for its thread dump.
    a = AgentProc(tmp_path / "state", extra_args=agent_args(), env={"PYTHONFAULTHANDLER": "1"})
    a.start()
    agent_factory.append(a)
    seed = random.randrange(1 << 32)
    counts: collections.Counter[str] = collections.Counter()
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(n: int) -> None:
        rng = random.Random(seed + n)
        try:
            with a.client(timeout=60) as c:
                lease = c.acquire_lease(f"reliability-client-{n}", 10)
                keeper = LeaseKeeper(c, lease.lease_id, 10).start()
                try:
                    start.wait(30)
                    for _ in range(PAIRS):
                        kind, spec, target = specs(the_rig, rng)
                        try:
                            fault = c.inject(lease.lease_id, spec, 60, target)
                        except grpc.RpcError as err:
                            with lock:
                                if err.code() in REFUSALS:
                                    counts[f"refused {kind}"] += 1
                                else:
                                    errors.append(
                                        f"client {n} inject {kind}: {err.code()} {err.details()}"
                                    )
                            continue
                        reverted = c.revert(fault.id)
                        with lock:
                            if reverted.state != pb.FAULT_STATE_REVERTED:
                                errors.append(f"client {n} revert {kind}: {reverted}")
                            counts[f"pairs {kind}"] += 1
                    c.release_lease(lease.lease_id)
                finally:
                    keeper.stop()
        except Exception as exc:
            with lock:
                errors.append(f"client {n}: {exc!r}")

    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(CLIENTS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(max(0.0, BOUND - (time.monotonic() - t0)))
    elapsed = time.monotonic() - t0
    stuck = [t.name for t in threads if t.is_alive()]
    if stuck:
        os.kill(a.pid, signal.SIGABRT)  # faulthandler writes every thread's stack
        a.proc.wait(10)  # type: ignore[union-attr]
        dump = a.logs()[a.logs().rfind("Fatal Python error") :]
        pytest.fail(f"deadlock: {len(stuck)} clients still running after {BOUND}s\n{dump}")
    assert not errors, "\n".join(errors[:20])

    with a.client() as c:
        live = c.list_faults(states=LIVE)
    residue = the_rig.residue(a)
    pairs = sum(v for k, v in counts.items() if k.startswith("pairs"))
    figure(
        "concurrency",
        clients=CLIENTS,
        pairs_per_client=PAIRS,
        pairs_done=pairs,
        refused=sum(v for k, v in counts.items() if k.startswith("refused")),
        by_kind=dict(sorted(counts.items())),
        seconds=round(elapsed, 1),
        live_at_end=len(live),
        residue_found=len(residue),
        seed=seed,
    )
    assert live == [], live
    assert residue == [], residue
    assert a.journal_files() == []
    assert pairs >= CLIENTS * PAIRS * 0.5, f"only {pairs} pairs went through: {counts}"


def test_racing_disk_fills_do_not_deadlock(
    tmp_path: Path, the_rig: Rig, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state", extra_args=agent_args()).start()
    agent_factory.append(a)
    spec = pb.FaultSpec(disk=pb.DiskSpec(path=str(the_rig.disk_mnt), write_bytes=256 * 1024))
    outcomes: list[str] = []
    go = threading.Barrier(6)

    def racer(n: int) -> None:
        try:
            with a.client(timeout=60) as c:
                lease = c.acquire_lease(f"reliability-disk-race-{n}", 60)
                go.wait(10)
                for _ in range(10):
                    try:
                        c.revert(c.inject(lease.lease_id, spec, 60).id)
                        outcomes.append("pair")
                    except grpc.RpcError as err:
                        outcomes.append(err.code().name)
                c.release_lease(lease.lease_id)
        except Exception as exc:  # the agent killed under a stuck racer, say
            outcomes.append(f"error {exc!r}")

    threads = [threading.Thread(target=racer, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 10
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    if any(t.is_alive() for t in threads):
        # Clean up what the deadlocked agent holds: kill -9, recover, stop.
        a.kill()
        a.start()
        a.stop()
        pytest.fail(f"disk injects deadlocked after {len(outcomes)} calls")
    assert set(outcomes) <= {"pair", "FAILED_PRECONDITION", "ALREADY_EXISTS"}, outcomes
