"""The extension under the real Chaos Toolkit CLI, against a real agent: the
fault is applied (the CPU burned is measured) and reverted; `chaos` killed
leaves the agent to revert by its lease; Ctrl-C reverts at once through the
control; and `brownout run` of the same file gives an equivalent journal."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.controller_servers import Service, serving
from tests.ctk import roundtrip as rt
from tests.paths import ROOT
from tests.processes import all_gone

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
DEMO = ROOT / "examples" / "local-demo.yaml"
LIVE = [pb.FAULT_STATE_PENDING, pb.FAULT_STATE_ACTIVE, pb.FAULT_STATE_REVERTING]
TTL = 5.0  # the demo's brownout_lease_ttl


@pytest.fixture
def service_url() -> Iterator[str]:
    with serving(Service().respond) as server:
        yield server.url + "/"


def env_for(agent: AgentProc, service_url: str, tmp_path: Path) -> dict[str, str]:
    return rt.environment(service_url, tmp_path / "trace", {"BROWNOUT_AGENTS": agent.address})


def faults(agent: AgentProc, live: bool = True) -> list[pb.Fault]:
    with agent.client() as c:
        return list(c.list_faults(states=LIVE if live else []))


def cpu_share(pids: list[int], seconds: float = 1.5) -> float:
    """The workers' CPU, in percent of one core, over `seconds`."""
    procs = [psutil.Process(p) for p in pids]
    t0 = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    time.sleep(seconds)
    t1 = sum(p.cpu_times().user + p.cpu_times().system for p in procs)
    return 100 * (t1 - t0) / seconds


def with_pause(tmp_path: Path, seconds: float) -> Path:
    """The demo, holding its fault `seconds` (long enough to kill chaos in)."""
    doc = yaml.safe_load(DEMO.read_text())
    doc["method"][0]["pauses"] = {"after": seconds}
    path = tmp_path / "held.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def start_chaos(path: Path, tmp_path: Path, env: dict[str, str]) -> subprocess.Popen[str]:
    work = tmp_path / "chaos"
    work.mkdir(exist_ok=True)
    return subprocess.Popen(
        rt.argv("chaos", path, work), env=env, cwd=work, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip


def the_fault(agent: AgentProc, timeout: float = 30) -> pb.Fault:
    """The one fault, once applied (listed while PENDING, it has no workers yet)."""

    def active() -> list[pb.Fault]:
        return [f for f in faults(agent) if f.state == pb.FAULT_STATE_ACTIVE]

    assert wait_for(active, timeout), f"no fault was applied: {faults(agent)}"
    (fault,) = active()
    return fault


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_passes_chaos_validate(path: Path, tmp_path: Path) -> None:
    done = subprocess.run(
        [str(rt.BIN / "chaos"), "--no-version-check", "validate", str(path)],
        env=rt.environment("http://127.0.0.1:1", tmp_path / "t"), cwd=tmp_path,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "experiment syntax and semantic look valid" in done.stdout + done.stderr


def test_chaos_discover_lists_the_extension(tmp_path: Path) -> None:
    out = tmp_path / "discovery.json"
    done = subprocess.run(
        [str(rt.BIN / "chaos"), "--no-version-check", "discover", "--no-system-info",
         "--no-install", "--discovery-path", str(out), "chaostoolkit-brownout"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    names = {a["name"] for a in json.loads(out.read_text())["activities"]}
    assert {"inject_fault", "revert_faults", "halt", "active_faults", "agent_info"} <= names


def test_chaos_run_burns_the_cpu_then_reverts_and_brownout_run_agrees(
    agent: AgentProc, service_url: str, tmp_path: Path
) -> None:
    env = env_for(agent, service_url, tmp_path)
    proc = start_chaos(DEMO, tmp_path, env)
    fault = the_fault(agent)
    assert fault.state == pb.FAULT_STATE_ACTIVE and fault.spec.cpu.load_percent == 50
    pids = [int(p) for p in fault.applied["worker_pids"].split(",")]
    share = cpu_share(pids)
    assert 40 <= share <= 60, f"the workers burned {share:.0f}% of a core, asked 50%"
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out[-3000:]
    assert faults(agent) == [], "a fault outlived chaos run"
    assert all_gone(pids)
    (done,) = [f for f in faults(agent, live=False) if f.id == fault.id]
    assert done.end_reason == pb.END_REASON_CLIENT_REVERT  # the control, not the TTL
    chaos = json.loads((tmp_path / "chaos" / "chaos.json").read_text())

    brownout = rt.run("brownout", DEMO, tmp_path / "brownout", env,
                      extra=("--agent", agent.address))  # fmt: skip
    assert brownout.code == 0, brownout.output[-3000:]
    assert rt.view(brownout.journal) == rt.view(chaos)
    assert [r["activity"]["name"] for r in chaos["run"]] == ["cpu-hog"]
    assert faults(agent) == []
    # chaostoolkit-reporting reads the Brownout journal of a fault run.
    text = rt.report(tmp_path / "brownout" / "brownout.json", tmp_path / "r.md", env)
    assert "demo service" in text


def test_chaos_killed_the_agent_reverts_within_the_ttl(
    agent: AgentProc, service_url: str, tmp_path: Path
) -> None:
    proc = start_chaos(with_pause(tmp_path, 60), tmp_path, env_for(agent, service_url, tmp_path))
    try:
        fault = the_fault(agent)
        pids = [int(p) for p in fault.applied["worker_pids"].split(",")]
        proc.kill()
        killed = time.monotonic()
        proc.wait(timeout=10)
        assert wait_for(lambda: not faults(agent), TTL + 5), "the lease did not expire"
        took = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took <= TTL + 1, f"reverted {took:.2f}s after chaos died; TTL is {TTL:g}s"
    (done,) = [f for f in faults(agent, live=False) if f.id == fault.id]
    assert done.end_reason == pb.END_REASON_LEASE_EXPIRED
    assert all_gone(pids)


def test_ctrl_c_reverts_at_once_through_the_control(
    agent: AgentProc, service_url: str, tmp_path: Path
) -> None:
    proc = start_chaos(with_pause(tmp_path, 60), tmp_path, env_for(agent, service_url, tmp_path))
    try:
        fault = the_fault(agent)
        time.sleep(0.5)  # inside the pause
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        assert wait_for(lambda: not faults(agent), TTL + 5)
        took = time.monotonic() - sent
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert took < TTL / 2, f"reverted {took:.2f}s after Ctrl-C: by the lease, not the control"
    (done,) = [f for f in faults(agent, live=False) if f.id == fault.id]
    assert done.end_reason == pb.END_REASON_CLIENT_REVERT, out[-2000:]
    journal: dict[str, Any] = json.loads((tmp_path / "chaos" / "chaos.json").read_text())
    assert journal["status"] == "interrupted"
    assert journal["rollbacks"] == []  # chaoslib skipped them; the control reverted anyway
    assert os.path.exists(tmp_path / "chaos" / "chaos.json")


def test_the_ramp_example_runs_under_both_tools(
    agent: AgentProc, agent_factory: list[AgentProc], service_url: str, tmp_path: Path
) -> None:
    """examples/cpu-steady-state.yaml, shortened through its configuration,
    on two agents labelled role=web: chaos run injects on both through the
    extension; brownout run ramps within its max-fleet-percent (50 %: one
    agent, one injection), with its stop conditions on a Prometheus that has
    no errors. Same status, deviation and activities; no fault left."""
    example = ROOT / "examples" / "cpu-steady-state.yaml"
    other = AgentProc(tmp_path / "other").start()
    agent_factory.append(other)
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"agents": [
        {"address": a.address, "labels": {"role": "web"}} for a in (agent, other)]}))  # fmt: skip
    empty = json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}})
    with serving(lambda _path: (200, empty, "application/json")) as prometheus:
        env = rt.environment(service_url, tmp_path / "trace", {
            "SERVICE_URL": service_url + "healthz", "PROMETHEUS_URL": prometheus.url,
            "FAULT_DURATION": "60s", "RAMP_HOLD": "0.2s", "SETTLE_SECONDS": "0.5",
            "BROWNOUT_INVENTORY": str(inventory),
        })  # fmt: skip
        chaos = rt.run("chaos", example, tmp_path / "chaos", env)
        assert chaos.code == 0, chaos.output[-3000:]
        assert sorted(chaos.journal["run"][0]["output"]) == sorted([agent.address, other.address])
        assert faults(agent) == faults(other) == []
        # Its run window (mon-fri 10:00-16:00 Berlin) is Brownout's: overridden here.
        flags = ("--inventory", str(inventory), "--override-window")
        brownout = rt.run("brownout", example, tmp_path / "brownout", env, run_flags=flags)
        assert faults(agent) == []
    assert brownout.journal, brownout.output[-3000:]
    assert rt.view(brownout.journal) == rt.view(chaos.journal), brownout.output[-3000:]
    assert [r["activity"]["name"] for r in chaos.journal["run"]] == ["cpu-hog"]
    steps = rt_ext(brownout.journal)["steps"]
    assert len(steps) == 5 and len(steps[0]["added"]) == 1
    assert faults(agent) == faults(other) == []


def rt_ext(journal: dict[str, Any]) -> dict[str, Any]:
    return next(e for e in journal["extensions"] if e.get("name") == "brownout")
