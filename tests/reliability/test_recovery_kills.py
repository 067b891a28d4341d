"""SIGKILL the agent while it recovers: a restart reverts what the journal
holds, and a kill in the middle of that (after the kernel change is undone,
before the record goes, or at a random moment) must leave the next restart
just as able to finish. For every fault kind this kernel runs."""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc
from tests.reliability.common import Rig, agent_args, bump, figure, rig, scale
from tests.reliability.test_agent_kills import KINDS, check_restart, wait_dead

pytestmark = [pytest.mark.host, pytest.mark.reliability]

ROUNDS = scale("BROWNOUT_RECOVERY_KILLS", 4, 20)


@pytest.fixture(scope="module")
def the_rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    with rig(tmp_path_factory.mktemp("recovery-kills")) as r:
        yield r


def leave_a_fault(a: AgentProc, spec: pb.FaultSpec, target: pb.Target) -> list[str]:
    """Inject one fault, SIGKILL the agent: the journal holds it, the kernel too."""
    a.env = {}
    a.start()
    with a.client(timeout=10) as c:
        lease = c.acquire_lease("reliability-recovery-kills", 30)
        fault = c.inject(lease.lease_id, spec, 30, target)
        assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
    a.kill()
    journaled = [n for n in a.journal_files() if not n.startswith(".tmp-")]
    assert journaled == [f"{fault.id}.json"], journaled
    return journaled


def kill_while_recovering(a: AgentProc, how: str, rng: random.Random) -> None:
    if how == "after_revert":
        # Recovery reverts the fault, then the hook kills the agent before the
        # record is removed: the next start finds a fault already undone.
        a.env = {"BROWNOUT_TEST_CRASH_AT": "after_revert"}
        with pytest.raises(RuntimeError, match="agent exited"):
            a.start()
        return
    a.env = {}
    a.start(wait_ready=False)
    time.sleep(rng.uniform(0.0, 0.4))  # start-up and recovery take a few hundred ms
    a.kill()
    wait_dead(a)


@pytest.mark.parametrize("kind", KINDS)
def test_sigkill_during_recovery_leaves_nothing(
    kind: str, the_rig: Rig, tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    spec, target = the_rig.specs[kind]
    a = AgentProc(tmp_path / "state", extra_args=agent_args())
    agent_factory.append(a)
    name = f"recovery kills ({kind})"
    problems: list[str] = []
    for i in range(ROUNDS):
        how = "after_revert" if i % 2 == 0 else "random"
        journaled = leave_a_fault(a, spec, target)
        kill_while_recovering(a, how, rng)
        bump(name, "kills_during_recovery")
        # Whatever the kill left (the record, or nothing if recovery finished), the
        # next start must finish the job.
        left = [n for n in a.journal_files() if not n.startswith(".tmp-")]
        a.env = {}
        a.start()
        found = check_restart(a, left, the_rig)
        bump(name, "residue_found", len(found))
        problems += [f"round {i} ({how}, seed {seed}, journaled {journaled}): {p}" for p in found]
        a.stop()
        if problems:
            break
    figure(name, rounds=ROUNDS, seed=seed)
    assert not problems, "\n".join(problems)
