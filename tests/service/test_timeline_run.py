"""A run's timeline through the service, over the fleet simulator: the
hypothesis's probe sampled before, during (every interval), after and in
recovery; each fault's active and reverted states with its activity and
step; the steps, the method's edges and the revert; and notes added through
the API while it runs (refused once it has ended, or empty)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from controller.service.api import OPS
from tests.controller_servers import Service, serving
from tests.service.conftest import VIEWER, Api
from tests.service.test_api_operations import documented, wait_ended

pytestmark = pytest.mark.unit


def held(url: str) -> dict[str, Any]:
    return {
        "title": "timeline",
        "steady-state-hypothesis": {"title": "up", "probes": [
            {"type": "probe", "name": "web", "tolerance": 200, "impact": True, "weight": 2,
             "provider": {"type": "http", "url": url, "timeout": 2}}]},
        "method": [{"type": "action", "name": "cpu", "provider": {
            "type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 5},
            "duration": "1m"}}],
        "extensions": [{"name": "brownout", "lease-ttl": "3s",
                        "ramp": {"steps": [50, 100], "hold": "1s"},
                        "timeline": {"interval": "0.2s", "recovery": "5s"}}],
    }  # fmt: skip


def test_a_run_records_its_timeline_and_takes_notes(sim_api: Api) -> None:
    web = Service()
    with serving(web.respond) as server:
        started = sim_api.call("POST", "/api/v1/runs", {"experiment": held(server.url)})
        run_id = started.json()["run_id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            run = sim_api.svc.runs.get(run_id)
            if run is not None and run.runner.journal.steps:
                break
            time.sleep(0.05)
        # While the fault is on, the annotation series says so.
        metrics = sim_api.svc.runs.metrics.registry
        live = {"kind": "cpu", "run": run_id}

        def active() -> float | None:
            agents = [
                s.labels["agent"]
                for m in metrics.collect()
                for s in m.samples
                if s.name == "chaos_fault_active" and s.labels["run"] == run_id
            ]
            if not agents:
                return None
            return metrics.get_sample_value("chaos_fault_active", {**live, "agent": agents[0]})

        assert active() == 1.0
        op = next(o for o in OPS if o.handler.__name__ == "note_run")
        noted = sim_api.call("POST", f"/api/v1/runs/{run_id}/notes", {"text": "p99 up on web"})
        assert noted.status_code == op.status, noted.text
        documented(sim_api, op, op.status)
        assert noted.json()["by"] == "token:alice"
        empty = sim_api.call("POST", f"/api/v1/runs/{run_id}/notes", {"text": "  "})
        assert empty.status_code == 400 and empty.json()["field"] == "text"
        refused = sim_api.call("POST", f"/api/v1/runs/{run_id}/notes", {"text": "x"}, token=VIEWER)
        assert refused.status_code == 403
        journal = wait_ended(sim_api, run_id)
    late = sim_api.call("POST", f"/api/v1/runs/{run_id}/notes", {"text": "after"})
    assert late.status_code == 409 and "has ended" in late.json()["error"]
    assert journal["status"] == "completed", journal["extensions"][0]["reason"]
    # The metrics: the annotation series gone, one fault reverted, the impact probe's figures.
    assert active() is None
    assert metrics.get_sample_value("chaos_rollbacks_total", {"rollback_type": "fault_revert"}) == 1
    assert metrics.get_sample_value("chaos_impact_availability", {"probe": "web"}) == 1.0
    assert metrics.get_sample_value("chaos_impact_error_rate", {"probe": "web"}) == 0.0
    latencies = metrics.get_sample_value("chaos_impact_latency_seconds_count", {"probe": "web"})
    assert latencies is not None and latencies >= 5
    tl = journal["extensions"][0]["timeline"]
    assert tl["start"] == journal["start"] and tl["interval"] == 0.2
    assert tl["probes"]["web"] == {"kind": "hypothesis",
                                   "tolerance": {"describe": "== 200", "kind": "exact",
                                                 "low": 200.0, "high": 200.0}}  # fmt: skip
    samples = tl["samples"]["web"]
    phases = [s[3] for s in samples]
    assert phases[0] == "before" and "after" in phases and phases[-1] == "recovery"
    assert phases.count("during") >= 5, phases  # 2 s of holds at 0.2 s
    assert all(s[1] == 200.0 and s[2] is True for s in samples)
    times = [s[0] for s in samples]
    assert times == sorted(times) and 0 <= times[0] < times[-1] <= journal["duration"] + 0.5
    events = tl["events"]
    kinds = [e["kind"] for e in events]
    assert kinds.count("step") == 2 and kinds.count("step_end") == 2
    assert {"method", "reverted", "note"} <= set(kinds)
    faults = [e for e in events if e["kind"] == "fault"]
    states = {(e["fault_id"], e["state"]) for e in faults}
    ids = {f for f, _ in states}
    assert len(ids) == 1 and {s for _, s in states} == {"active", "reverted"}, faults
    assert all(e["activity"] == "cpu" and e["step"] == 0 and e["fault"] == "cpu" for e in faults)
    [note] = [e for e in events if e["kind"] == "note"]
    assert note["text"] == "p99 up on web" and note["by"] == "token:alice"
    active = next(e["t"] for e in faults if e["state"] == "active")
    reverted = next(e["t"] for e in faults if e["state"] == "reverted")
    assert active < note["t"] < reverted
