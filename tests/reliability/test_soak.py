"""The long soak (`make soak` only, never in CI): an hour of random faults on
short leases that end every way a fault can end (revert, release, lease expiry,
duration). Every minute the load pauses and the agent must hold zero faults,
zero residue and an empty journal; its RSS may grow at most 5 % over the run,
measured from the first check at which the agent's history of ended faults
(HISTORY_LIMIT, kept by design) is full. BROWNOUT_SOAK_SECONDS shortens
it (e.g. to try the test itself)."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psutil
import pytest

from agent.core.table import HISTORY_LIMIT
from brownout.v1 import agent_pb2 as pb
from tests.agentclient import AgentClient
from tests.agentproc import AgentProc, wait_for
from tests.leasekeeper import LeaseKeeper
from tests.reliability.common import LIVE, SOAK, Rig, agent_args, bump, figure, rig, scale
from tests.reliability.test_concurrency import specs

pytestmark = [
    pytest.mark.host,
    pytest.mark.reliability,
    pytest.mark.skipif(not SOAK, reason="the 1 h soak runs in `make soak` only"),
]

SECONDS = scale("BROWNOUT_SOAK_SECONDS", 3600, 3600)
CHECK_EVERY = min(60.0, SECONDS / 4)
WORKERS = 4
NAME = "soak"


@pytest.fixture
def the_rig(tmp_path: Path) -> Iterator[Rig]:
    with rig(tmp_path) as r:
        yield r


def test_an_hour_of_random_faults_leaves_nothing_and_rss_stays_flat(
    tmp_path: Path, the_rig: Rig, agent_factory: list[AgentProc]
) -> None:
    a = AgentProc(tmp_path / "state", extra_args=agent_args()).start()
    agent_factory.append(a)
    seed = random.randrange(1 << 32)
    running = threading.Event()
    running.set()
    idle = [threading.Event() for _ in range(WORKERS)]
    done = threading.Event()
    errors: list[str] = []

    def cycle(c: AgentClient, n: int, rng: random.Random) -> None:
        ttl = rng.uniform(1.0, 3.0)
        lease = c.acquire_lease(f"reliability-soak-{n}", ttl)
        kind, spec, target = specs(the_rig, rng)
        duration = rng.uniform(0.5, 4.0)
        try:
            fault = c.inject(lease.lease_id, spec, duration, target)
        except grpc.RpcError as err:
            if err.code() not in (grpc.StatusCode.ALREADY_EXISTS,
                                  grpc.StatusCode.FAILED_PRECONDITION):  # fmt: skip
                errors.append(f"inject {kind}: {err.code()} {err.details()}")
            c.release_lease(lease.lease_id)
            return
        bump(NAME, f"faults_{kind}")
        end = rng.choice(["revert", "release", "expire", "duration"])
        bump(NAME, f"ended_by_{end}")
        if end == "revert":
            c.revert(fault.id)
            c.release_lease(lease.lease_id)
        elif end == "release":
            c.release_lease(lease.lease_id)
        elif end == "expire":  # the holder goes quiet: the dead-man's switch ends it
            if not wait_for(lambda: c.get_fault(fault.id).state == pb.FAULT_STATE_REVERTED,
                            ttl + 1.0, 0.05):  # fmt: skip
                errors.append(f"{kind} {fault.id} outlived its lease by > 1 s")
        else:
            keeper = LeaseKeeper(c, lease.lease_id, ttl).start()
            try:
                if not wait_for(lambda: c.get_fault(fault.id).state == pb.FAULT_STATE_REVERTED,
                                duration + 1.0, 0.05):  # fmt: skip
                    errors.append(f"{kind} {fault.id} outlived its duration by > 1 s")
            finally:
                keeper.stop()
            c.release_lease(lease.lease_id)

    def worker(n: int) -> None:
        rng = random.Random(seed + n)
        with a.client(timeout=30) as c:
            while not done.is_set():
                if not running.is_set():
                    idle[n].set()
                    running.wait(1)
                    continue
                idle[n].clear()
                try:
                    cycle(c, n, rng)
                except Exception as exc:
                    errors.append(f"worker {n}: {exc!r}")
        idle[n].set()

    threads = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(WORKERS)]
    for t in threads:
        t.start()
    t0 = time.monotonic()
    rss: list[int] = []
    try:
        while time.monotonic() - t0 < SECONDS:
            time.sleep(min(CHECK_EVERY, max(0.0, SECONDS - (time.monotonic() - t0))))
            running.clear()  # quiesce, then check
            assert all(e.wait(60) for e in idle), "a soak worker is stuck (deadlock?)"
            with a.client() as c:
                live = c.list_faults(states=LIVE)
                history = len(c.list_faults())
            residue = the_rig.residue(a) + [f"journal {n}" for n in a.journal_files()]
            bump(NAME, "checks")
            bump(NAME, "residue_found", len(residue) + len(live))
            assert not live and not residue, (live, residue)
            assert not errors, errors[:10]
            # The agent keeps the last HISTORY_LIMIT ended faults by design: RSS is
            # judged from the first check at which that history is full.
            if history >= HISTORY_LIMIT:
                rss.append(psutil.Process(a.pid).memory_info().rss)
            running.set()
    finally:
        done.set()
        running.set()
        for t in threads:
            t.join(30)
    if len(rss) < 2:
        figure(NAME, seconds=SECONDS, rss_growth="not judged: the fault history never filled")
        pytest.skip(f"RSS not judged: fewer than 2 checks after {HISTORY_LIMIT} faults ended")
    growth = 100.0 * (rss[-1] - rss[0]) / rss[0]
    figure(
        NAME,
        seconds=SECONDS,
        rss_first_full_history_check_mib=round(rss[0] / 2**20, 1),
        rss_last_check_mib=round(rss[-1] / 2**20, 1),
        rss_growth_percent=round(growth, 2),
        seed=seed,
    )
    assert growth <= 5.0, f"agent RSS grew {growth:.1f}% ({rss})"
