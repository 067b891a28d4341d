"""SIGKILL the agent at chosen and random points of inject and revert, for every
fault kind this kernel runs (netem is absent here: see docs/reliability.md), and
prove each restart leaves zero residue, an empty journal and every fault reverted.

Chosen points use the agent's test-only BROWNOUT_TEST_CRASH_AT hook (see
agent/manager.py); after_intent and after_checkpoint fall between a journal write
and the kernel change it describes. Random points are a timer's SIGKILL."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc
from tests.reliability.common import Rig, agent_args, bump, figure, rig, scale

pytestmark = [pytest.mark.host, pytest.mark.reliability]

KINDS = [
    *("cpu", "memory", "disk", "io", "bandwidth", "partition", "process", "pause"),
    *("dns", "dns_answers"),
]
POINTS = [
    "after_intent",  # intent journaled, nothing applied
    "after_checkpoint",  # undo journaled, the kernel change not yet made
    "after_apply",  # applied, the applied record not yet written
    "after_revert",  # reverted, the record not yet removed
    "random_inject",  # SIGKILL at a random moment of an inject
    "random_revert",  # SIGKILL at a random moment of a revert
]
KILLS = scale("BROWNOUT_KILLS", 20, 100)


@pytest.fixture(scope="module")
def the_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(tmp_path_factory.mktemp("kills")) as r:
        yield r


def wait_dead(a: AgentProc, timeout: float = 10.0) -> None:
    assert a.proc is not None
    try:
        a.proc.wait(timeout)
    except Exception:
        a.kill()
        raise


def arm(a: AgentProc, point: str) -> AgentProc:
    """(Re)start the agent armed to crash at `point`; starting recovers the last kill."""
    a.env = {"BROWNOUT_TEST_CRASH_AT": point} if point.startswith("after_") else {}
    return a.start()


def one_kill(
    a: AgentProc, point: str, spec: pb.FaultSpec, target: pb.Target, rng: random.Random
) -> None:
    """Drive an inject (and a revert) on the armed agent and see it die at `point`."""
    timer: threading.Timer | None = None
    with a.client(timeout=5) as c:
        lease = c.acquire_lease("reliability-kills", 30)
        if point == "random_inject":
            timer = threading.Timer(rng.uniform(0.0, 0.25), a.proc.kill)  # type: ignore[union-attr]
            timer.start()
        try:
            fault = c.inject(lease.lease_id, spec, 30, target)
            assert point in ("after_revert", "random_inject", "random_revert"), (
                f"inject survived crash point {point}"
            )
            assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
            if point == "random_revert":
                timer = threading.Timer(rng.uniform(0.0, 0.05), a.proc.kill)  # type: ignore[union-attr]
                timer.start()
            if point in ("after_revert", "random_revert"):
                c.revert(fault.id)
                assert point == "random_revert", "revert survived crash point after_revert"
        except grpc.RpcError as err:
            assert err.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED), err
    if timer is not None:
        timer.join()
    if point.startswith("random_"):
        a.kill()  # the operation may have finished first: kill the agent anyway
    wait_dead(a)


def check_restart(a: AgentProc, journaled: list[str], r: Rig) -> list[str]:
    """After a restart: journal empty, journaled faults reverted, nothing live, no residue."""
    problems = []
    if a.journal_files():
        problems.append(f"journal after restart: {a.journal_files()}")
    with a.client() as c:
        listed = {f.id: f for f in c.list_faults()}
    for name in journaled:
        fault_id = name.removesuffix(".json")
        f = listed.get(fault_id)
        if f is None or f.state != pb.FAULT_STATE_REVERTED:
            problems.append(f"journaled {fault_id} not reported reverted: {f}")
        elif f.end_reason != pb.END_REASON_AGENT_RESTART:
            problems.append(f"{fault_id} ended as {f.end_reason}")
    live = [f.id for f in listed.values() if f.state != pb.FAULT_STATE_REVERTED]
    if live:
        problems.append(f"faults not reverted: {live}")
    problems += r.residue(a)
    return problems


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_at_every_point_leaves_nothing(
    kind: str, the_rig: Rig, tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    spec, target = the_rig.specs[kind]
    a = AgentProc(tmp_path / "state", extra_args=agent_args())
    agent_factory.append(a)
    name = f"agent kills ({kind})"
    problems: list[str] = []
    t0 = time.monotonic()
    journaled: list[str] = []
    for i in range(KILLS + 1):
        point = POINTS[i % len(POINTS)] if i < len(POINTS) else rng.choice(POINTS)
        # Recovery reverts too, so an agent armed at after_revert would die
        # recovering: recover (and check) unarmed first, then arm a clean agent.
        armed = point if i < KILLS else ""
        arm(a, "" if armed == "after_revert" and journaled else armed)
        if i:  # this start recovered what the last kill left: check it first
            found = check_restart(a, journaled, the_rig)
            bump(name, "residue_found", len([p for p in found if "journal" not in p]))
            problems += [f"kill {i - 1} (seed {seed}): {p}" for p in found]
        if problems or i == KILLS:
            break
        if a.env.get("BROWNOUT_TEST_CRASH_AT", "") != armed:
            a.kill()  # it holds nothing now
            journaled = []
            arm(a, armed)
        one_kill(a, point, spec, target, rng)
        bump(name, "kills")
        journaled = [n for n in a.journal_files() if not n.startswith(".tmp-")]
        bump(name, "faults_in_journal_at_kill", len(journaled))
        bump(name, "torn_journal_writes", len(a.journal_files()) - len(journaled))
    a.stop()
    figure(name, seconds=round(time.monotonic() - t0, 1), seed=seed)
    assert not problems, "\n".join(problems)
