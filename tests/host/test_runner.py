"""The controller against real agents: ramps, stop conditions, end states, reverts.

Five real brownout-agent processes with real CPU faults (small loads, one
core each). The system under test is a loopback HTTP service; a Prometheus
HTTP API stand-in answers queries with the sum of the agents' live
brownout_faults_active gauges, scraped from their metrics endpoints.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from brownout.v1 import agent_pb2 as pb
from controller.experiments.metrics import ControllerMetrics
from controller.store import open_store
from tests.agentproc import AgentProc, wait_for
from tests.controller_servers import FakePrometheus
from tests.host.fleet import (
    DEAD_AGENT,
    N,
    agent_flags,
    assert_all_reverted,
    cli,
    doc,
    ext,
    http_probe,
    live_faults,
    run,
    ts,
)
from tests.processes import all_gone

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


def test_ramp_picks_the_right_agents_per_step_and_completes(
    fleet: list[AgentProc], service: str, tmp_path: Path
) -> None:
    steps = [1, 5, 10, 25, 50, 100]
    d = doc([http_probe(service)], {"ramp": {"steps": steps, "hold": "0.2s"}})
    journal = run(d, [a.address for a in fleet], tmp_path)

    assert journal["status"] == "completed", ext(journal)["reason"]
    assert journal["deviated"] is False
    b = ext(journal)
    targets = b["selection"]["targets"]
    assert sorted(targets) == sorted(a.address for a in fleet)
    # Of 5 agents: 1..25 % round down to 1 agent (at least one), 50 % to 2, 100 % to 5.
    counts = [1, 1, 1, 1, 2, 5]
    assert [len(s["agents"]) for s in b["steps"]] == counts
    assert [s["agents"] for s in b["steps"]] == [targets[:n] for n in counts]  # a growing prefix
    assert [len(s["added"]) for s in b["steps"]] == [1, 0, 0, 0, 1, 3]
    assert [s["blast_radius_percent"] for s in b["steps"]] == [20, 20, 20, 20, 40, 100]
    # Each agent got exactly one fault, applied, then reverted at the end.
    for a in b["agents"].values():
        assert [f["state"] for f in a["faults"]] == ["active"]
        assert a["released"] is True
    assert_all_reverted(journal, N)
    assert journal["steady_states"]["before"]["steady_state_met"]
    assert journal["steady_states"]["after"]["steady_state_met"]
    # One run record per step that added agents.
    assert [len(r["output"]["agents"]) for r in journal["run"]] == [1, 1, 3]
    assert all(r["status"] == "succeeded" for r in journal["run"])
    assert len(journal["rollbacks"]) == N
    on_disk = json.loads((tmp_path / "journal.json").read_text())
    assert on_disk["status"] == "completed" and on_disk["run"] == journal["run"]
    assert open_store(tmp_path).history.runs()[0].status == "completed"


def test_stop_condition_breach_aborts_and_reverts_everything(
    fleet: list[AgentProc], prometheus: tuple[str, FakePrometheus], tmp_path: Path
) -> None:
    url, fake = prometheus
    sustain, interval = 1.0, 0.25
    d = doc(
        brownout={
            "ramp": {"steps": [{"percent": 34, "hold": "1s"}, {"percent": 100, "hold": "20s"}]},
            "stop-conditions": [
                {
                    "name": "fleet-faults",
                    "provider": {
                        "type": "prometheus",
                        "url": url,
                        "query": "sum(brownout_faults_active)",
                    },
                    "tolerance": [None, 1],  # at most one faulty agent at a time
                    "for": sustain,
                    "interval": interval,
                }
            ],
        }
    )
    metrics = ControllerMetrics()
    t0 = time.monotonic()
    journal = run(d, [a.address for a in fleet], tmp_path, metrics)
    took = time.monotonic() - t0

    b = ext(journal)
    assert journal["status"] == "aborted"
    assert b["reason"].startswith(f"stop condition fleet-faults: {float(N)} violates")
    assert took < 8, "the last step's 20 s hold should have been cut short"
    assert fake.queries and fake.queries[0] == "sum(brownout_faults_active)"
    # Step 1 (one agent) was within tolerance; step 2 (three) breached.
    records = b["stop_conditions"][0]["records"]
    first_breach = next(r for r in records if not r["tolerance_met"])
    assert first_breach["output"] >= 2.0  # the query may land between two injections
    assert all(r["tolerance_met"] for r in records[: records.index(first_breach)])
    reverts_started = ts(journal["rollbacks"][0]["start"])
    assert reverts_started - ts(first_breach["start"]) <= sustain + interval + 0.5
    assert_all_reverted(journal, N)
    assert not live_faults(fleet)
    assert metrics.safety_aborts_total.labels("fleet-faults")._value.get() == 1
    assert metrics.experiments_total.labels("aborted")._value.get() == 1


def test_deviated_hypothesis_fails_the_run(
    fleet: list[AgentProc], prometheus: tuple[str, FakePrometheus], tmp_path: Path
) -> None:
    url, _ = prometheus
    no_faults = {
        "type": "probe",
        "name": "no-active-faults",
        "tolerance": 0,
        "provider": {"type": "prometheus", "url": url, "query": "sum(brownout_faults_active)"},
    }
    journal = run(doc([no_faults]), [a.address for a in fleet], tmp_path)

    assert journal["status"] == "failed" and journal["deviated"] is True
    assert journal["steady_states"]["before"]["steady_state_met"] is True
    after = journal["steady_states"]["after"]
    assert after["steady_state_met"] is False and after["probes"][0]["output"] == float(N)
    assert_all_reverted(journal, N)


def test_unreachable_agent_is_skipped_or_aborts_per_setting(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    addresses = [a.address for a in fleet] + [DEAD_AGENT]
    journal = run(doc(brownout={"targets": {"on-unreachable": "skip"}}), addresses, tmp_path)
    assert journal["status"] == "completed"
    sel = ext(journal)["selection"]
    assert DEAD_AGENT not in sel["targets"] and len(sel["targets"]) == N
    assert sel["skipped"][DEAD_AGENT].startswith("unreachable: UNAVAILABLE")
    assert_all_reverted(journal, N)

    journal = run(doc(brownout={"targets": {"on-unreachable": "abort"}}), addresses, tmp_path)
    assert journal["status"] == "aborted"
    assert DEAD_AGENT in ext(journal)["reason"]
    assert not any(a["faults"] for a in ext(journal)["agents"].values()), "nothing injected"


def test_dry_run_checks_limits_and_injects_nothing(fleet: list[AgentProc], tmp_path: Path) -> None:
    before = {a.address: len(a.client().list_faults()) for a in fleet}
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(doc(duration="2h")))  # agents allow at most 1h
    out = cli(
        "run", str(path), "--dry-run", "--json", "--data-dir", str(tmp_path), *agent_flags(fleet)
    )
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["ok"] is False
    assert all("exceeds the agent's 3600s" in a["problems"][0] for a in report["agents"].values())

    path.write_text(yaml.safe_dump(doc(duration="30s")))
    out = cli("run", str(path), "--dry-run", "--data-dir", str(tmp_path), *agent_flags(fleet))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "OK" in out.stdout.splitlines()[0]
    for a in fleet:
        with a.client() as c:
            assert len(c.list_faults()) == before[a.address]
            assert c.info().active_leases == 0
    assert not (tmp_path / "brownout.db").exists() or not open_store(tmp_path).history.runs()


def start_run(
    fleet: list[AgentProc], tmp_path: Path, ttl: str = "3s"
) -> tuple[subprocess.Popen[str], Path]:
    path = tmp_path / "e.yaml"
    d = doc(brownout={"lease-ttl": ttl, "ramp": {"steps": [100], "hold": "60s"}})
    path.write_text(yaml.safe_dump(d))
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "run",
            str(path),
            "--data-dir",
            str(data),
            *agent_flags(fleet),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    ok = wait_for(
        lambda: (
            proc.poll() is None
            and len([f for f in live_faults(fleet) if f.state == pb.FAULT_STATE_ACTIVE]) == N
        ),
        15,
        0.05,
    )
    if not ok:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"faults never became active:\n{out}\n{err}")
    return proc, data


def test_ctrl_c_twice_interrupts_and_still_reverts_everything(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    proc, data = start_run(fleet, tmp_path)
    # Ctrl-C, an impatient second one, then a SIGTERM: back to back, so they land
    # while the first is being handled (two SIGINTs may merge in the kernel; the
    # SIGTERM cannot), and none of them may cut the reverts short. One agent is
    # stopped for a second, well inside the TTL, so the reverts are surely still
    # going when the later signals land: five reverts can otherwise finish before
    # a descheduled test sends its SIGTERM, and a signal after the run is not its.
    os.kill(fleet[0].pid, signal.SIGSTOP)
    try:
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGINT)
        proc.send_signal(signal.SIGTERM)
        time.sleep(1.0)
    finally:
        os.kill(fleet[0].pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "status    interrupted" in out

    journal = json.loads(next((data / "journals").glob("*.json")).read_text())
    assert journal["status"] == "interrupted"
    assert ext(journal)["reason"] == "interrupted by SIGINT"
    assert ext(journal)["signals_ignored"] >= 1
    assert_all_reverted(journal, N)
    assert all(
        f["revert"]["end_reason"] == "client_revert"
        for a in ext(journal)["agents"].values()
        for f in a["faults"]
    )

    # The SQLite history has it, and `show` reads it back.
    listing = cli("history", "--data-dir", str(data))
    run_id = ext(journal)["run_id"]
    assert run_id in listing.stdout and "interrupted" in listing.stdout
    shown = cli("show", run_id[:17], "--data-dir", str(data), "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["status"] == "interrupted"
    assert "status    interrupted" in cli("show", run_id, "--data-dir", str(data)).stdout


def test_sigkill_of_the_controller_agents_revert_within_ttl(
    fleet: list[AgentProc], tmp_path: Path
) -> None:
    ttl = 2.0
    proc, data = start_run(fleet, tmp_path, ttl=f"{ttl}s")
    faults = {a.address: live_faults([a]) for a in fleet}
    pids = [
        int(p) for fs in faults.values() for f in fs for p in f.applied["worker_pids"].split(",")
    ]
    proc.kill()
    killed = time.monotonic()
    proc.communicate()
    assert wait_for(lambda: not live_faults(fleet), ttl + 1, 0.02)
    elapsed = time.monotonic() - killed
    assert elapsed <= ttl + 1, elapsed
    assert all_gone(pids)
    for a in fleet:
        with a.client() as c:
            assert [c.get_fault(f.id).end_reason for f in faults[a.address]] == [
                pb.END_REASON_LEASE_EXPIRED
            ]
    # The journal written at start says the run never finished.
    journal = json.loads(next((data / "journals").glob("*.json")).read_text())
    assert journal["status"] == "running"


def test_halt_reverts_on_every_agent_in_parallel(fleet: list[AgentProc]) -> None:
    faults = []
    for a in fleet:
        with a.client() as c:
            lease = c.acquire_lease("halt-test", 10)
            faults.append(
                c.inject(lease.lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)), 30)
            )
    out = cli("halt", "--reason", "test", *agent_flags(fleet), "--agent", DEAD_AGENT)
    assert out.returncode == 2, out.stderr  # one agent could not be reached
    rows = {line.split()[0]: line.split()[1:] for line in out.stdout.splitlines()[1:]}
    assert rows[DEAD_AGENT][0] == "error"
    for a in fleet:
        assert rows[a.address][:2] == ["ok", "1"]
    for a, f in zip(fleet, faults, strict=True):
        with a.client() as c:
            assert c.get_fault(f.id).end_reason == pb.END_REASON_HALT
            c.release_lease(f.lease_id)
    # The single-agent form still works.
    single = cli("--agent", fleet[0].address, "halt")
    assert single.returncode == 0 and "ok" in single.stdout


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line.startswith("chaos_")
    }


def test_serve_runs_on_schedule_and_exports_metrics(
    fleet: list[AgentProc], service: str, tmp_path: Path
) -> None:
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(doc([http_probe(service)])))
    ready, data = tmp_path / "ready.json", tmp_path / "data"
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "serve",
            str(path),
            "--metrics-listen",
            "127.0.0.1:0",
            "--listen",
            "127.0.0.1:0",
            "--rounds",
            "1",
            "--ready-file",
            str(ready),
            "--data-dir",
            str(data),
            *agent_flags(fleet),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert wait_for(ready.exists, 15, 0.05), "serve did not start"
        port = json.loads(ready.read_text())["metrics_port"]
        db = data / "brownout.db"
        assert wait_for(lambda: db.exists() and bool(open_store(data).history.runs()), 30, 0.1)
        m = scrape(port)
        assert m['chaos_experiments_total{result="completed"}'] == 1
        assert m['chaos_experiments_total{result="aborted"}'] == 0
        assert m["chaos_experiment_duration_seconds_count"] == 1
        assert m['chaos_rollbacks_total{rollback_type="fault_revert"}'] == N
        assert m["chaos_blast_radius_percentage"] == 0
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert os.path.exists(data / "journals")
