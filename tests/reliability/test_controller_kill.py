"""SIGKILL `brownout run` at random moments of a fleet run (while it connects,
injects or holds): every agent reverts within the lease TTL + 1 s of the kill.
The fixed-moment case lives in tests/host/test_runner.py; this reuses
its helpers and adds random kill points and repetitions."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import agent_flags, doc, live_faults
from tests.processes import all_gone
from tests.reliability.common import bump, figure, scale

pytestmark = [pytest.mark.host, pytest.mark.reliability]

AGENTS = 3
TTL = 2.0
ROUNDS = scale("BROWNOUT_CONTROLLER_KILLS", 4, 30)


@pytest.fixture
def fleet(tmp_path: Path, agent_factory: list[AgentProc]) -> Iterator[list[AgentProc]]:
    agents = [AgentProc(tmp_path / f"agent{i}") for i in range(AGENTS)]
    threads = [threading.Thread(target=a.start) for a in agents]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    agent_factory.extend(agents)
    assert all(a.port for a in agents), "an agent failed to start"
    yield agents


def test_random_controller_kills_agents_revert_within_ttl_plus_1s(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    seed = random.randrange(1 << 32)
    rng = random.Random(seed)
    path = tmp_path / "e.yaml"
    d = doc(brownout={"lease-ttl": f"{TTL}s", "ramp": {"steps": [100], "hold": "60s"}})
    path.write_text(yaml.safe_dump(d))
    name = "controller kills"
    worst = 0.0
    for i in range(ROUNDS):
        proc = subprocess.Popen(
            [sys.executable, "-m", "controller.cli", "run", str(path),
             "--data-dir", str(tmp_path / f"data{i}"), *agent_flags(fleet)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        # Half the rounds kill once every fault is active, half at a random moment
        # of start-up, lease acquisition and injects.
        if i % 2 == 0:
            assert wait_for(
                lambda: (
                    len([f for f in live_faults(fleet) if f.state == pb.FAULT_STATE_ACTIVE])
                    == AGENTS
                ),
                20,
                0.05,
            ), "faults never became active"
            time.sleep(rng.uniform(0, TTL))
        else:
            time.sleep(rng.uniform(0.3, 2.5))
        live = live_faults(fleet)
        pids = [int(p) for f in live for p in f.applied.get("worker_pids", "").split(",") if p]
        proc.kill()
        killed = time.monotonic()
        proc.wait()
        bump(name, "kills")
        bump(name, "faults_live_at_kill", len(live))
        # An inject in flight at the kill still lands, and its lease expires:
        # nothing may be live TTL + 1 s after the kill.
        assert wait_for(lambda: not live_faults(fleet), TTL + 1, 0.02), (
            f"round {i} (seed {seed}): still live {live_faults(fleet)}"
        )
        elapsed = time.monotonic() - killed
        worst = max(worst, elapsed)
        assert elapsed <= TTL + 1, f"round {i} (seed {seed}): {elapsed:.2f}s"
        assert all_gone(pids), "workers outlived the revert"
        assert all(not a.journal_files() for a in fleet)
        assert all(not a.marked_processes() for a in fleet)
    figure(name, agents=AGENTS, ttl_s=TTL, worst_revert_after_kill_s=round(worst, 2), seed=seed)
