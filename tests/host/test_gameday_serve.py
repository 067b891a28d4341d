"""A game day on a real `brownout serve` over three real agents, with a
real Prometheus scraping them: `brownout gameday run PLAN` follows the day
to its end; the criteria are judged from the run's report and from
Prometheus over the alert's window after injection (one query turns true,
one never does); `brownout gameday report` writes the day's HTML, and
`brownout maturity` counts the game day."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.agentproc import AgentProc
from tests.host.serveproc import OPERATOR, ServeProc
from tests.host.test_probes_prometheus import prometheus, three_agents

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

__all__ = ["prometheus", "three_agents"]  # fixtures, used by name


def cli(serve: ServeProc, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "--server", serve.url, *argv],
        capture_output=True, text=True, timeout=timeout,
        env={"BROWNOUT_TOKEN": OPERATOR, "PATH": "/usr/bin:/bin"},
    )  # fmt: skip


def experiment(service_url: str) -> dict[str, Any]:
    return {
        "title": "cpu on every agent",
        "steady-state-hypothesis": {"title": "the service answers", "probes": [
            {"type": "probe", "name": "service-ok", "tolerance": 200,
             "provider": {"type": "http", "url": service_url, "timeout": 2}}]},
        "method": [{"type": "action", "name": "cpu", "provider": {
            "type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 5},
            "duration": "1m"}}],
        "extensions": [{"name": "brownout", "lease-ttl": "5s",
                        "ramp": {"steps": [100], "hold": "4s"},
                        "timeline": {"interval": "0.5s", "recovery": "10s"}}],
    }  # fmt: skip


def test_a_game_day_judges_its_criteria_against_the_run_and_prometheus(
    three_agents: list[AgentProc], prometheus: tuple[str, str], tmp_path: Path
) -> None:
    prom, service_url = prometheus
    serve = ServeProc(tmp_path / "data", three_agents).start()
    try:
        put = serve.call("PUT", "/api/v1/experiments/cpu", {"experiment": experiment(service_url)})
        assert put.status == 200, put.body
        plan = {"gameday": {
            "title": "CPU game day", "roles": {"commander": "alice", "scribe": "bob"},
            "scenarios": [{"name": "cpu", "at": "T+0", "experiment": "cpu",
                           "expect": "the service does not notice", "criteria": [
                {"name": "recovers", "probe": "service-ok", "recovers-within": "10s"},
                {"name": "the fault shows", "alert": {
                    "url": prom, "query": "sum(brownout_faults_active) > 0", "within": "8s"}},
                {"name": "never this", "alert": {
                    "url": prom, "query": "sum(brownout_faults_active) > 100", "within": "5s"}},
            ]}]}}  # fmt: skip
        path = tmp_path / "plan.yaml"
        path.write_text(yaml.safe_dump(plan))
        dry = cli(serve, "gameday", "dry-run", str(path))
        assert dry.returncode == 0 and "T+0s  cpu: cpu on every agent (cpu); fleet ok" in dry.stdout
        day = cli(serve, "gameday", "run", str(path), timeout=120)
        # One criterion failed: the command says so by its exit code.
        assert day.returncode == 1, (day.stdout, day.stderr)
        assert "cpu: running (run " in day.stdout and "cpu: done" in day.stdout, day.stdout
        gid = day.stdout.split()[2]
        got = json.loads(cli(serve, "gameday", "status", gid, "--json").stdout)
        [sc] = got["scenarios"]
        verdicts = {v["criterion"]: v for v in sc["verdicts"]}
        assert verdicts["recovers"]["passed"] is True, verdicts
        assert verdicts["the fault shows"]["passed"] is True, verdicts
        assert verdicts["the fault shows"]["measured"] == "highest value in the window: 3"
        assert verdicts["never this"]["passed"] is False
        assert verdicts["never this"]["measured"] == "highest value in the window: no value"
        html = tmp_path / "day.html"
        assert cli(serve, "gameday", "report", gid, "-o", str(html)).returncode == 0
        text = html.read_text()
        assert "Executive summary" in text and "2 of 3 success criteria passed" in text
        assert 'class="criterion failed"' in text and "<svg" in text
        maturity = json.loads(cli(serve, "maturity", "--json").stdout)
        assert maturity["levels"][1]["evidence"][1].startswith("1 game day(s)"), maturity
    finally:
        assert serve.stop() == 0, serve.logs()[-3000:]
