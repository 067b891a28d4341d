"""A PromQL stop condition backed by a real Prometheus server.

Prometheus (Debian package `prometheus`) scrapes three real agents and the
service under test every second. The stop condition allows at most one agent
with an active fault; the ramp's second step puts faults on all three, the
condition breaches, and the run aborts and reverts everything.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.fleet import Fleet
from controller.experiments import parse as exp
from controller.experiments.runner import Runner, RunOptions
from tests.agentproc import AgentProc, wait_for
from tests.controller_servers import Service, serving
from tests.host.nethosts import free_port
from tests.processes import all_gone

pytestmark = [
    pytest.mark.host,
    pytest.mark.concurrent,
    pytest.mark.skipif(shutil.which("prometheus") is None, reason="needs Debian's prometheus"),
]


def query(url: str, promql: str) -> list[dict[str, object]]:
    q = urllib.parse.urlencode({"query": promql})
    with urllib.request.urlopen(f"{url}/api/v1/query?{q}", timeout=2) as resp:
        return list(json.load(resp)["data"]["result"])


@pytest.fixture
def three_agents(tmp_path: Path, agent_factory: list[AgentProc]) -> list[AgentProc]:
    procs = [AgentProc(tmp_path / f"agent{i}") for i in range(3)]
    threads = [threading.Thread(target=p.start) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    agent_factory.extend(procs)
    assert all(p.port for p in procs)
    return procs


@pytest.fixture
def prometheus(tmp_path: Path, three_agents: list[AgentProc]) -> Iterator[tuple[str, str]]:
    service = Service()
    with serving(service.respond) as svc:
        port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [
                {
                    "job_name": "agents",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{a.metrics_port}" for a in three_agents]}
                    ],
                },
                {
                    "job_name": "service",
                    "static_configs": [{"targets": [svc.url.removeprefix("http://")]}],
                },
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        log = (tmp_path / "prometheus.log").open("wb")
        proc = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:

            def all_up() -> bool:
                try:
                    result = query(url, "sum(up)")
                except OSError:
                    return False
                return bool(result) and float(result[0]["value"][1]) == 4  # type: ignore[index]

            assert wait_for(all_up, 20, 0.2), (tmp_path / "prometheus.log").read_text()[-2000:]
            yield url, svc.url
        finally:
            proc.terminate()
            proc.wait(timeout=20)
            log.close()


def test_promql_stop_condition_aborts_the_ramp(
    three_agents: list[AgentProc], prometheus: tuple[str, str], tmp_path: Path
) -> None:
    prom_url, service_url = prometheus
    sustain, interval = 2.0, 0.5
    doc = {
        "title": "real prometheus stop condition",
        "description": "",
        "steady-state-hypothesis": {
            "title": "service answers",
            "probes": [
                {
                    "type": "probe",
                    "name": "ok",
                    "tolerance": 200,
                    "provider": {"type": "http", "url": service_url},
                }
            ],
        },
        "method": [
            {
                "type": "action",
                "name": "cpu-hog",
                "provider": {
                    "type": "brownout",
                    "fault": "cpu",
                    "arguments": {"cores": 1, "load": 10},
                    "duration": "60s",
                },
            }
        ],
        "extensions": [
            {
                "name": "brownout",
                "lease-ttl": "3s",
                "ramp": {"steps": [{"percent": 34, "hold": "4s"}, {"percent": 100, "hold": "30s"}]},
                "stop-conditions": [
                    {
                        "name": "fleet-faults",
                        "provider": {
                            "type": "prometheus",
                            "url": prom_url,
                            "query": 'sum(brownout_faults_active{job="agents"})',
                            "empty": 0,
                        },
                        "tolerance": [None, 1],
                        "for": sustain,
                        "interval": interval,
                    }
                ],
            }
        ],
    }
    t0 = time.monotonic()
    with Fleet(inventory.build(agents=[a.address for a in three_agents])) as fleet:
        journal = Runner(exp.parse(doc), fleet, RunOptions()).run()
    took = time.monotonic() - t0

    b = journal["extensions"][0]
    assert journal["status"] == "aborted", b["reason"]
    assert b["reason"].startswith("stop condition fleet-faults")
    assert took < 20, "the 30 s hold was not cut short"
    records = b["stop_conditions"][0]["records"]
    assert any(r["output"] == 1.0 and r["tolerance_met"] for r in records), "step 1 never seen"
    first_breach = next(r for r in records if not r["tolerance_met"])
    assert first_breach["output"] >= 2.0  # scrapes of the three agents are staggered
    started = datetime.fromisoformat(journal["rollbacks"][0]["start"]).timestamp()
    breach = datetime.fromisoformat(first_breach["start"]).timestamp()
    assert started - breach <= sustain + interval + 0.5
    faults = [f for a in b["agents"].values() for f in a["faults"]]
    assert len(faults) == 3 and all(f["revert"]["state"] == "reverted" for f in faults)
    pids = [int(f["applied"]["worker_pids"]) for f in faults]
    assert all_gone(pids)
    for a in three_agents:
        with a.client() as c:
            assert not c.list_faults(states=[pb.FAULT_STATE_ACTIVE])
    # Prometheus saw the faults come and go on the agents' own gauge.
    assert wait_for(
        lambda: float(query(prom_url, "sum(brownout_faults_active)")[0]["value"][1]) == 0,  # type: ignore[index]
        5,
        0.2,
    )
