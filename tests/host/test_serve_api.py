"""`brownout serve` against five real agents: runs over the API are the same
runs as `brownout run`; the kill switch reverts everything within 1 s and
survives a restart; a SIGKILLed server's runs end by lease and are marked
interrupted after a restart; every route answers bad input with a JSON 4xx
and stays up."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from controller.service.api import OPS
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import doc, ext, live_faults
from tests.host.serveproc import OPERATOR, VIEWER, ServeProc

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

CPU = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))


def held(hold: str = "30s", ttl: str = "3s") -> dict[str, Any]:
    d = doc(duration="120s", brownout={"lease-ttl": ttl, "ramp": {"steps": [100], "hold": hold}})
    return d


def wait_status(s: ServeProc, run_id: str, timeout: float = 60) -> dict[str, Any]:
    journal: dict[str, Any] = {}

    def ended() -> bool:
        nonlocal journal
        journal = s.call("GET", f"/api/v1/runs/{run_id}", token=VIEWER).body
        return journal.get("status") not in (None, "running")

    assert wait_for(ended, timeout, 0.1), journal.get("status")
    return journal


def active_on_all(fleet: list[AgentProc], n: int) -> bool:
    return len([f for f in live_faults(fleet) if f.state == pb.FAULT_STATE_ACTIVE]) >= n


def test_fleet_and_openapi(serve: ServeProc, fleet: list[AgentProc]) -> None:
    agents = serve.call("GET", "/api/v1/fleet", token=VIEWER)
    assert agents.status == 200
    assert sorted(a["address"] for a in agents.body["agents"]) == sorted(a.address for a in fleet)
    assert all(a["reachable"] and "keep_leases" in a["features"] for a in agents.body["agents"])
    assert agents.body["total"] == 5 and agents.body["summary"]["by_state"] == {"serving": 5}
    # A page at a time, filtered, from memory.
    last = serve.call("GET", "/api/v1/fleet?per_page=2&page=3", token=VIEWER).body
    assert (last["pages"], len(last["agents"])) == (3, 1)
    assert last["agents"][0]["address"] == max(a.address for a in fleet)
    none = serve.call("GET", "/api/v1/fleet?selector=role%3Dnone&state=serving", token=VIEWER)
    assert (none.body["total"], none.body["agents"], none.body["inventory"]) == (0, [], 5)
    bad = serve.call("GET", "/api/v1/fleet?selector=role+in+(", token=VIEWER)
    assert bad.status == 400 and bad.body["field"] == "selector", bad.body
    bad = serve.call("GET", "/api/v1/fleet?state=asleep", token=VIEWER)
    assert bad.status == 400 and bad.body["field"] == "state", bad.body
    spec = serve.call("GET", "/api/v1/openapi.json", token=None).body
    assert spec["openapi"].startswith("3.")
    for op in OPS:
        assert op.method.lower() in spec["paths"][f"/api/v1{op.path}"], op.path


def test_a_run_over_the_api_is_a_run_with_journal_and_history(
    serve: ServeProc, fleet: list[AgentProc]
) -> None:
    d = doc(brownout={"lease-ttl": "3s", "ramp": {"steps": [100], "hold": "2s"}})
    assert serve.call("PUT", "/api/v1/experiments/cpu", {"experiment": d}).status == 200
    listed = serve.call("GET", "/api/v1/experiments", token=VIEWER).body["experiments"]
    assert [e["name"] for e in listed] == ["cpu"] and listed[0]["by"] == "token:alice"
    started = serve.call("POST", "/api/v1/runs", {"experiment": "cpu", "seed": 7})
    assert started.status == 202, started.body
    run_id = started.body["run_id"]
    messages = []
    end: dict[str, Any] = {}
    for kind, data in serve.events(run_id):
        if kind == "end":
            end = data
            break
        messages.append(data["message"])
    assert end == {"status": "completed"}
    assert any(m.startswith("step 1/1: 100%") for m in messages), messages
    journal = serve.call("GET", f"/api/v1/runs/{run_id}", token=VIEWER).body
    assert journal["status"] == "completed"
    faults = [f for a in ext(journal)["agents"].values() for f in a["faults"]]
    assert len(faults) == len(fleet) and all(f["revert"]["state"] == "reverted" for f in faults)
    assert Path(serve.data_dir / "journals" / f"{run_id}.json").exists()
    rows = serve.call("GET", "/api/v1/history", token=VIEWER).body["runs"]
    assert [r["run_id"] for r in rows] == [run_id] and rows[0]["status"] == "completed"
    assert not live_faults(fleet)


def test_abort_over_the_api_reverts_everything(serve: ServeProc, fleet: list[AgentProc]) -> None:
    run_id = serve.call("POST", "/api/v1/runs", {"experiment": held()}).body["run_id"]
    assert wait_for(lambda: active_on_all(fleet, len(fleet)), 20)
    denied = serve.call("POST", f"/api/v1/runs/{run_id}/abort", {}, token=VIEWER)
    assert denied.status == 403 and "operator" in denied.body["error"]
    answer = serve.call("POST", f"/api/v1/runs/{run_id}/abort", {"reason": "enough"})
    assert answer.status == 200, answer.body
    journal = wait_status(serve, run_id)
    assert journal["status"] == "aborted"
    assert ext(journal)["reason"] == "aborted by token:alice: enough"
    assert not live_faults(fleet)


def test_kill_switch_reverts_10_faults_on_5_agents_within_1s_and_survives_a_restart(
    serve: ServeProc, fleet: list[AgentProc]
) -> None:
    run_id = serve.call("POST", "/api/v1/runs", {"experiment": held()}).body["run_id"]
    assert wait_for(lambda: active_on_all(fleet, len(fleet)), 20)
    outsiders = []  # one more fault per agent, from another holder
    for a in fleet:
        with a.client() as c:
            lease = c.acquire_lease("someone-else", 60)
            outsiders.append(c.inject(lease.lease_id, CPU, 60))
    assert active_on_all(fleet, 2 * len(fleet))
    gone_at: list[float] = []

    def watch() -> None:
        wait_for(lambda: not live_faults(fleet), 10, 0.01)
        gone_at.append(time.monotonic())

    watcher = threading.Thread(target=watch)
    t0 = time.monotonic()
    watcher.start()
    engaged = serve.call("POST", "/api/v1/kill-switch", {"engaged": True, "reason": "pager"})
    watcher.join()
    assert engaged.status == 200, engaged.body
    took = gone_at[0] - t0
    print(
        f"\n[figure] kill switch, 5 agents, 10 faults: all gone {took:.3f}s after the request"
        f" (the lever's own time {engaged.body.get('seconds')}s)"
    )
    assert took <= 1.0, f"faults outlived the kill switch by {took:.3f}s"
    assert engaged.body["runs_aborted"] == [run_id] and not engaged.body["agents_failed"]
    journal = wait_status(serve, run_id)
    assert journal["status"] == "aborted" and ext(journal)["reason"] == "kill switch: pager"
    # The run reverted after the Halts (Fleet.halting): its reverts read how
    # the Halt ended each fault instead of racing it.
    ends = [f["revert"]["end_reason"] for r in ext(journal)["agents"].values() for f in r["faults"]]
    assert ends == ["halt"] * len(fleet), ends
    refused = serve.call("POST", "/api/v1/runs", {"experiment": held()})
    assert refused.status == 409 and "kill switch is engaged (pager" in refused.body["error"]

    assert serve.stop() == 0
    serve.start()
    state = serve.call("GET", "/api/v1/kill-switch", token=VIEWER).body
    assert state["engaged"] and state["reason"] == "pager" and state["by"] == "token:alice"
    assert serve.call("POST", "/api/v1/runs", {"experiment": held()}).status == 409
    with fleet[0].client() as c, pytest.raises(grpc.RpcError) as err:
        c.inject(c.acquire_lease("t", 10).lease_id, CPU, 10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION  # still latched
    off = serve.call("POST", "/api/v1/kill-switch", {"engaged": False})
    assert off.status == 200 and not off.body["engaged"] and not off.body["agents_failed"]
    with fleet[0].client() as c:
        lease = c.acquire_lease("t", 10)
        c.inject(lease.lease_id, CPU, 10)
        c.release_lease(lease.lease_id)


def test_sigkill_of_serve_mid_run_agents_revert_by_lease_and_the_run_is_interrupted(
    serve: ServeProc, fleet: list[AgentProc]
) -> None:
    ttl = 2.0
    run_id = serve.call("POST", "/api/v1/runs", {"experiment": held(ttl="2s")}).body["run_id"]
    assert wait_for(lambda: active_on_all(fleet, len(fleet)), 20)
    time.sleep(0.5)  # the journal is on disk after the step's injections
    serve.kill()
    killed = time.monotonic()
    assert wait_for(lambda: not live_faults(fleet), ttl + 1.0, 0.02)
    assert time.monotonic() - killed <= ttl + 1.0
    serve.start()
    assert serve.ready["interrupted"] == [run_id]
    journal = serve.call("GET", f"/api/v1/runs/{run_id}", token=VIEWER).body
    assert journal["status"] == "interrupted"
    assert ext(journal)["reason"].startswith("interrupted: the controller stopped mid-run")
    after = [f["after_restart"] for a in ext(journal)["agents"].values() for f in a["faults"]]
    assert len(after) == len(fleet)
    assert all(x == {"state": "reverted", "end_reason": "lease_expired"} for x in after), after
    rows = serve.call("GET", "/api/v1/history", token=VIEWER).body["runs"]
    assert rows[0]["run_id"] == run_id and rows[0]["status"] == "interrupted"


def test_bad_experiments_name_the_field(serve: ServeProc) -> None:
    bad = doc()
    bad["method"][0]["provider"]["arguments"] = {"cores": "many"}
    answer = serve.call("POST", "/api/v1/experiments/validate", {"experiment": bad})
    assert answer.status == 400 and answer.body["field"].startswith("method[0]")
    missing = serve.call("POST", "/api/v1/runs", {"experiment": "no-such"})
    assert missing.status == 404 and missing.body["field"] == "experiment"
    name = serve.call("PUT", "/api/v1/experiments/Bad%20Name", {"experiment": doc()})
    assert name.status == 400 and name.body["field"] == "name"
    assert serve.call("GET", "/api/v1/nowhere", token=VIEWER).status == 404


def test_plaintext_off_loopback_is_refused(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2
    assert "refusing to serve the API in plaintext on 0.0.0.0:0" in out.stderr
    assert not (tmp_path / "brownout.db").exists()


def test_the_cli_runs_and_halts_through_a_server(
    serve: ServeProc, fleet: list[AgentProc], tmp_path: Path
) -> None:
    import yaml

    path = tmp_path / "e.yaml"
    path.write_text(
        yaml.safe_dump(doc(brownout={"lease-ttl": "3s", "ramp": {"steps": [100], "hold": "1s"}}))
    )
    env = {**os.environ, "BROWNOUT_TOKEN": OPERATOR}
    cli = [sys.executable, "-m", "controller.cli", "--server", serve.url]
    out = subprocess.run(
        [*cli, "run", str(path)], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert "completed" in out.stdout and "step 1/1" in out.stderr
    rows = serve.call("GET", "/api/v1/history", token=VIEWER).body["runs"]
    assert rows[0]["status"] == "completed"
    halted = subprocess.run(
        [*cli, "halt", "--reason", "from the cli"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert halted.returncode == 0, halted.stderr
    state = serve.call("GET", "/api/v1/kill-switch", token=VIEWER).body
    assert state["engaged"] and state["reason"] == "from the cli"
    viewer = subprocess.run(
        [*cli, "kill-switch", "disengage"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "BROWNOUT_TOKEN": VIEWER},
    )
    assert viewer.returncode == 2 and "HTTP 403" in viewer.stderr
    off = subprocess.run(
        [*cli, "kill-switch", "disengage"], capture_output=True, text=True, timeout=60, env=env
    )
    assert off.returncode == 0, off.stderr
