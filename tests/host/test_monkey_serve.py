"""A monkey in a real `brownout serve` over real agents in groups of two,
each agent with a small service process of its own that the test started
(its marker in its command line, named by the agent's `svc` label), and
each group's health endpoint named by its `health` label:

- one monkey day compressed into a 25-second window kills exactly one
  process in each healthy group, never both of a group of two; the group
  whose probe fails is skipped with the reason and keeps both; so is the
  group whose other member's process is gone (its agent checks); the tracker
  and the CLI say which, as psutil sees it from outside;
- a stop instead of a kill: with the controller SIGKILLed mid-fault, the
  stopped process runs again within the lease TTL + 1 s."""

from __future__ import annotations

import json
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
from tests.controller_servers import Service, serving
from tests.host.serveproc import VIEWER, ServeProc
from tests.host.test_schedules_serve import cli, console

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

GROUPS = 3  # healthy ones; one more answers its probe with 500
TTL = 5.0  # the monkey's lease


def start_members(
    agent_factory: list[AgentProc], tmp_path: Path, groups: int, health: dict[int, int]
) -> dict[str, Any]:
    """Two agents per group, and each one's service process."""
    services: dict[str, subprocess.Popen[bytes]] = {}
    agents: dict[str, AgentProc] = {}
    for g in range(groups):
        for n in range(2):
            tag = f"g{g}-n{n}"
            labels = f"brownout.io/monkey=enabled,app=web{g},svc={tag},health={health[g]}"
            a = AgentProc(tmp_path / tag, extra_args=["--labels", labels]).start()
            agent_factory.append(a)
            agents[tag] = a
            services[tag] = subprocess.Popen(
                [sys.executable, "-c", "import time; time.sleep(600)", f"monkey-svc-{tag}"]
            )
    return {"agents": agents, "services": services}


@pytest.fixture
def health() -> Iterator[tuple[int, int]]:
    """Two health endpoints: one answers 200, the other 500."""
    ok, sick = Service(), Service()
    sick.status = 500
    with serving(ok.respond) as a, serving(sick.respond) as b:
        yield port(a.url), port(b.url)


def port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


@pytest.fixture
def services() -> Iterator[list[dict[str, Any]]]:
    """Whatever start_members started; every service process is reaped."""
    started: list[dict[str, Any]] = []
    yield started
    for m in started:
        for p in m["services"].values():
            if p.poll() is None:
                p.kill()
            p.wait(10)


def monkey(start: datetime, end: datetime, action: dict[str, Any] | None = None) -> dict[str, Any]:
    kill = {
        "fault": "process",
        "arguments": {
            "action": "kill",
            "signal": "KILL",
            "count": 1,
            "cmdline": "monkey-svc-${label_svc}$",
        },
    }
    return {
        "name": "web",
        "opt-in": "brownout.io/monkey=enabled",
        "group-by": "app",
        "actions": [action or kill],
        "mean-work-days-between-kills": 1,  # every group, every day
        "min-work-days-between-kills": 0,
        "workdays": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        "timezone": "UTC",
        "planning-hour": "00:00",
        "window": f"{start:%H:%M:%S}-{end:%H:%M:%S}",
        "probe": {
            "type": "probe",
            "name": "group-healthy",
            "tolerance": 200,
            "provider": {"type": "http", "url": "http://127.0.0.1:${label_health}/", "timeout": 2},
        },
    }


def window(seconds: float) -> tuple[datetime, datetime]:
    """From a few seconds from now, not across midnight (the window is a time of day)."""
    now = datetime.now(UTC)
    if (now + timedelta(seconds=seconds + 20)).date() != now.date():
        time.sleep(seconds + 25)
        now = datetime.now(UTC)
    return now + timedelta(seconds=8), now + timedelta(seconds=8 + seconds)


def test_a_compressed_monkey_day_kills_exactly_one_member_per_healthy_group(
    agent_factory: list[AgentProc],
    services: list[dict[str, Any]],
    health: tuple[int, int],
    tmp_path: Path,
) -> None:
    ok, sick = health
    members = start_members(
        agent_factory, tmp_path, GROUPS + 2, {0: ok, 1: ok, 2: ok, 3: sick, 4: ok}
    )
    services.append(members)
    # web4's first member has lost its service: its agent says the target is
    # absent, and the other member is the group's last healthy one.
    members["services"]["g4-n0"].kill()
    members["services"]["g4-n0"].wait(10)
    start, end = window(25)
    path = tmp_path / "monkeys.yaml"
    path.write_text(yaml.safe_dump({"monkeys": [monkey(start, end)]}))
    agents: dict[str, AgentProc] = members["agents"]
    procs: dict[str, subprocess.Popen[bytes]] = members["services"]
    serve = ServeProc(tmp_path / "data", list(agents.values()), ["--monkeys", str(path)]).start()
    try:
        plan = serve.call("GET", "/api/v1/monkeys/web", token=VIEWER).body["plan"]
        assert [g["group"] for g in plan["groups"]] == [f"web{g}" for g in range(5)], plan
        assert all(len(g["kills"]) == 1 and len(g["members"]) == 2 for g in plan["groups"]), plan
        assert wait_for(lambda: datetime.now(UTC) > end + timedelta(seconds=5), 90, 0.5)

        def settled() -> list[dict[str, Any]]:
            kills = serve.call("GET", "/api/v1/monkeys/web", token=VIEWER).body["kills"]
            return [k for k in kills if k["outcome"] not in ("claimed", "started")]

        assert wait_for(lambda: len(settled()) == GROUPS + 2, 20, 0.5), settled()
        [skipped] = [k for k in settled() if k["group"] == "web3"]
        [absent] = [k for k in settled() if k["group"] == "web4"]
        kills = [k for k in settled() if k["group"] not in ("web3", "web4")]
        # The CLI shows the same tracker, and any day's draw without touching anything.
        history = cli(serve, "monkey", "history", "web")
        assert history.returncode == 0 and history.stdout.count(" killed ") == GROUPS, history
        sunday = cli(serve, "monkey", "plan", "web", "--day", "2026-12-06")
        assert "2026-12-06: a workday" in sunday.stdout, sunday  # every day is one here
        assert sunday.stdout.count("members: 127.0.0.1:") == GROUPS + 2, sunday.stdout
        plan_json = json.loads(cli(serve, "monkey", "plan", "web", "--json").stdout)
        assert {g["group"] for g in plan_json["groups"]} == {f"web{g}" for g in range(5)}
        # The console shows the same draw and tracker, and a pause.
        page = console(serve, "/console/monkeys/web")
        assert page.count('class="kill outcome-killed"') == GROUPS, page
        assert page.count('class="kill outcome-skipped"') == 2, page
        assert all(k["run_id"] in page for k in kills) and "never the last healthy member" in page
        assert page.count('class="group"') == 5 and "Pause this monkey" in page
        assert cli(serve, "monkey", "pause", "web").returncode == 0
        assert "paused" in console(serve, "/console/monkeys")
        assert "paused: no kills are drawn" in console(serve, "/console/monkeys/web")
        assert "[paused]" in cli(serve, "monkey", "list").stdout
        # The practice, from this controller's own history: the monkey's runs
        # (outside production: no env label) and kills.
        mat = json.loads(cli(serve, "maturity", "--json").stdout)
        assert [lv["met"] for lv in mat["levels"]] == [True, False, False, True, False], mat
        runs = GROUPS + 1  # and web3's, ended by its probe
        assert mat["levels"][0]["evidence"][1] == f"{runs} outside production, 0 in production"
        assert mat["levels"][3]["evidence"][0].endswith(") by web") and mat["level"] == 1
        assert mat["levels"][3]["evidence"][0].startswith(f"{GROUPS} monkey kill(s)")
        practice_page = console(serve, "/console/maturity")
        assert "Level 1: experiments in CI or staging" in practice_page
        assert practice_page.count('class="level met"') == 2, practice_page
    finally:
        assert serve.stop() == 0, serve.logs()[-3000:]
    # From outside: exactly one of each healthy group's two service processes is gone.
    dead = {tag for tag, p in procs.items() if p.poll() is not None} - {"g4-n0"}
    assert len(dead) == GROUPS, dead
    assert {tag.split("-")[0] for tag in dead} == {f"g{g}" for g in range(GROUPS)}
    for tag in set(procs) - dead - {"g4-n0"}:
        assert psutil.pid_exists(procs[tag].pid)
    # The group whose probe failed kept both, and the tracker says why.
    assert skipped["outcome"] == "skipped" and skipped["detail"].startswith("probe failed")
    assert skipped["record"]["probes_before"]["steady_state_met"] is False, skipped
    # The group whose other member lost its process kept its last one.
    assert absent["outcome"] == "skipped", absent
    assert "never the last healthy member: 1 of 2" in absent["detail"], absent
    assert (
        f"{agents['g4-n0'].address} target: FAILED_PRECONDITION: no process on this node"
        in absent["detail"]
    ), absent
    assert procs["g4-n1"].poll() is None
    # The tracker agrees: each group's kill, on the agent whose service died, by pid.
    assert {k["outcome"] for k in kills} == {"killed"}, kills
    by_agent = {a.address: tag for tag, a in agents.items()}
    assert {by_agent[k["agent"]] for k in kills} == dead
    for k in kills:
        pid = str(procs[by_agent[k["agent"]]].pid)
        assert k["record"]["process"]["signalled"] == pid, k
        assert k["record"]["probes_before"]["steady_state_met"] is True
        assert start <= datetime.fromisoformat(k["due"]) < end
    assert all(procs[t].returncode == -9 for t in dead)


def test_a_stopped_member_runs_again_within_the_ttl_when_the_controller_dies(
    agent_factory: list[AgentProc],
    services: list[dict[str, Any]],
    health: tuple[int, int],
    tmp_path: Path,
) -> None:
    members = start_members(agent_factory, tmp_path, 1, {0: health[0]})
    services.append(members)
    start, end = window(6)
    stop = {
        "fault": "process",
        "duration": "60s",
        "arguments": {"action": "stop", "count": 1, "cmdline": "monkey-svc-${label_svc}$"},
    }
    path = tmp_path / "monkeys.yaml"
    path.write_text(yaml.safe_dump({"monkeys": [monkey(start, end, stop)]}))
    procs: dict[str, subprocess.Popen[bytes]] = members["services"]
    serve = ServeProc(tmp_path / "data", list(members["agents"].values()),
                      ["--monkeys", str(path)]).start()  # fmt: skip

    def stopped() -> list[str]:
        return [t for t, p in procs.items() if psutil.Process(p.pid).status() == "stopped"]

    try:
        assert wait_for(lambda: len(stopped()) == 1, 30, 0.05), stopped()
    finally:
        assert serve.proc is not None
        serve.proc.kill()  # SIGKILL: no revert from the controller
        killed = time.monotonic()
        serve.proc.wait(10)
        serve.proc = None
    [victim] = stopped()
    assert wait_for(lambda: not stopped(), TTL + 5, 0.05), "still stopped"
    resumed = time.monotonic() - killed
    print(f"\nresumed {resumed:.2f}s after the controller was SIGKILLed (TTL {TTL:g}s)")
    assert resumed <= TTL + 1, resumed
    assert psutil.Process(procs[victim].pid).status() in ("sleeping", "running")


def test_two_controllers_on_one_postgres_act_on_each_planned_kill_once(
    agent_factory: list[AgentProc],
    services: list[dict[str, Any]],
    health: tuple[int, int],
    pg_dsn: str,
    tmp_path: Path,
) -> None:
    members = start_members(agent_factory, tmp_path, 2, {0: health[0], 1: health[0]})
    services.append(members)
    start, end = window(15)
    path = tmp_path / "monkeys.yaml"
    path.write_text(yaml.safe_dump({"monkeys": [monkey(start, end)]}))
    procs: dict[str, subprocess.Popen[bytes]] = members["services"]
    agents = list(members["agents"].values())
    extra = ["--monkeys", str(path), "--database", pg_dsn]
    replicas = [ServeProc(tmp_path / f"r{i}", agents, extra) for i in range(2)]
    for r in replicas:
        r.start()
    try:
        assert wait_for(lambda: datetime.now(UTC) > end + timedelta(seconds=5), 60, 0.5)

        def settled() -> list[dict[str, Any]]:
            kills = replicas[0].call("GET", "/api/v1/monkeys/web", token=VIEWER).body["kills"]
            return [k for k in kills if k["outcome"] not in ("claimed", "started")]

        assert wait_for(lambda: len(settled()) == 2, 20, 0.5), settled()
        kills = settled()
    finally:
        for r in replicas:
            assert r.stop() == 0, r.logs()[-3000:]
    assert {k["outcome"] for k in kills} == {"killed"}, kills
    started = sum(r.logs().count('"event": "monkey kill started"') for r in replicas)
    assert started == 2  # one per planned slot, whichever replica claimed it
    dead = {tag for tag, p in procs.items() if p.poll() is not None}
    assert {t.split("-")[0] for t in dead} == {"g0", "g1"} and len(dead) == 2, dead
