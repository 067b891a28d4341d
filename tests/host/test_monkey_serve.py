"""A monkey in a real `brownout serve` over six real agents in three groups,
each agent with a small service process of its own that the test started
(its marker in its command line, named by the agent's `svc` label): one
monkey day compressed into a 40-second window kills exactly one process per
group, never both of a group of two, and the tracker says which, as psutil
sees it from outside."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.agentproc import AgentProc, wait_for
from tests.host.serveproc import VIEWER, ServeProc

pytestmark = pytest.mark.host

GROUPS = 3


@pytest.fixture
def members(agent_factory: list[AgentProc], tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Six agents, two per group, and each one's service process."""
    services: dict[str, subprocess.Popen[bytes]] = {}
    agents: dict[str, AgentProc] = {}
    for g in range(GROUPS):
        for n in range(2):
            tag = f"g{g}-n{n}"
            labels = f"brownout.io/monkey=enabled,app=web{g},svc={tag}"
            a = AgentProc(tmp_path / tag, extra_args=["--labels", labels]).start()
            agent_factory.append(a)
            agents[tag] = a
            services[tag] = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(600)", f"monkey-svc-{tag}"]
            )
    yield {"agents": agents, "services": services}
    for p in services.values():
        if p.poll() is None:
            p.kill()
        p.wait(10)


def monkey(start: datetime, end: datetime) -> dict[str, Any]:
    return {
        "name": "web",
        "opt-in": "brownout.io/monkey=enabled",
        "group-by": "app",
        "actions": [
            {
                "fault": "process",
                "arguments": {
                    "action": "kill",
                    "signal": "KILL",
                    "count": 1,
                    "cmdline": "monkey-svc-${label_svc}$",
                },
            }
        ],
        "mean-work-days-between-kills": 1,  # every group, every day
        "min-work-days-between-kills": 0,
        "workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "timezone": "UTC",
        "planning-hour": "00:00",
        "window": f"{start:%H:%M:%S}-{end:%H:%M:%S}",
    }


def test_a_compressed_monkey_day_kills_exactly_one_member_per_group(
    members: dict[str, Any], tmp_path: Path
) -> None:
    now = datetime.now(UTC)
    if (now + timedelta(seconds=60)).date() != now.date():  # the window must not cross midnight
        time.sleep(65)
        now = datetime.now(UTC)
    start, end = now + timedelta(seconds=8), now + timedelta(seconds=48)
    path = tmp_path / "monkeys.yaml"
    path.write_text(yaml.safe_dump({"monkeys": [monkey(start, end)]}))
    agents: dict[str, AgentProc] = members["agents"]
    services: dict[str, subprocess.Popen[bytes]] = members["services"]
    serve = ServeProc(tmp_path / "data", list(agents.values()), ["--monkeys", str(path)]).start()
    try:
        plan = serve.call("GET", "/api/v1/monkeys/web", token=VIEWER).body["plan"]
        assert [g["group"] for g in plan["groups"]] == ["web0", "web1", "web2"], plan
        assert all(len(g["kills"]) == 1 and len(g["members"]) == 2 for g in plan["groups"]), plan
        assert wait_for(lambda: datetime.now(UTC) > end + timedelta(seconds=5), 90, 0.5)

        def settled() -> list[dict[str, Any]]:
            kills = serve.call("GET", "/api/v1/monkeys/web", token=VIEWER).body["kills"]
            return [k for k in kills if k["outcome"] not in ("claimed", "started")]

        assert wait_for(lambda: len(settled()) == GROUPS, 20, 0.5), settled()
        kills = settled()
    finally:
        assert serve.stop() == 0, serve.logs()[-3000:]
    # From outside: exactly one of each group's two service processes is gone.
    dead = {tag for tag, p in services.items() if p.poll() is not None}
    assert len(dead) == GROUPS, dead
    assert {tag.split("-")[0] for tag in dead} == {f"g{g}" for g in range(GROUPS)}
    for tag in set(services) - dead:
        assert psutil.pid_exists(services[tag].pid)
    # The tracker agrees: each group's kill, on the agent whose service died, by pid.
    assert {k["outcome"] for k in kills} == {"killed"}, kills
    by_agent = {a.address: tag for tag, a in agents.items()}
    assert {by_agent[k["agent"]] for k in kills} == dead
    for k in kills:
        pid = str(services[by_agent[k["agent"]]].pid)
        assert k["record"]["process"]["signalled"] == pid, k
        assert start <= datetime.fromisoformat(k["due"]) < end
    assert all(services[t].returncode == -9 for t in dead)
