"""Every operation of the API table answers its documented success, and every
kind of bad input on every route gets a JSON 4xx that names the field, with
the answer's status declared in the served OpenAPI description."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from controller.service.api import OPS, TEXT_QUERIES, Op
from tests.service.conftest import OPERATOR, VIEWER, Api, pure_doc

pytestmark = pytest.mark.unit

# Needs a run that is still live: below, against the fleet simulator.
LIVE_ONLY = {"abort_run", "note_run"}  # note_run: tests/service/test_timeline_run.py
# Game days need the fleet simulator: tests/service/test_gamedays.py.
LIVE_ONLY |= {"start_gameday", "gameday_dry_run", "list_gamedays", "get_gameday",
              "control_gameday", "gameday_report", "note_gameday"}  # fmt: skip


def documented(api: Api, op: Op, status: int) -> None:
    spec = api.call("GET", "/api/v1/openapi.json", token=None).json()
    entry = spec["paths"][f"/api/v1{op.path}"][op.method.lower()]
    assert str(status) in entry["responses"], (op.handler.__name__, status)


def wait_ended(api: Api, run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        journal = api.call("GET", f"/api/v1/runs/{run_id}", token=VIEWER).json()
        if journal["status"] != "running":
            return dict(journal)
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} still running")


def test_every_operation_answers_its_documented_success(api: Api) -> None:
    seen: dict[str, int] = {}

    def call(op_name: str, path: str, body: Any = None, token: str = OPERATOR) -> Any:
        op = next(o for o in OPS if o.handler.__name__ == op_name)
        answer = api.call(op.method, f"/api/v1{path}", body, token=token)
        assert answer.status_code == op.status, (op_name, answer.status_code, answer.text)
        documented(api, op, answer.status_code)
        seen[op_name] = answer.status_code
        return answer

    assert call("fleet", "/fleet", token=VIEWER).json()["agents"][0]["reachable"] is False
    reps = call("replicas", "/replicas", token=VIEWER).json()
    assert [r["replica"] for r in reps["replicas"]] == [reps["replica"]]
    assert reps["replicas"][0]["pid"] == os.getpid() and not reps["replicas"][0]["lost"]
    assert call("validate", "/experiments/validate", {"experiment": pure_doc()}).json() == {
        "valid": True,
        "title": "no faults",
    }
    call("put_experiment", "/experiments/demo", {"experiment": pure_doc("stored")})
    listed = call("list_experiments", "/experiments", token=VIEWER).json()["experiments"]
    assert [e["name"] for e in listed] == ["demo"]
    got = call("get_experiment", "/experiments/demo", token=VIEWER).json()
    assert got["title"] == "stored" and got["experiment"] == pure_doc("stored")
    dry = call("dry_run", "/experiments/demo/dry-run").json()
    assert dry["dry_run"] is True and dry["title"] == "stored"
    started = call("start_run", "/runs", {"experiment": "demo", "seed": 3}).json()
    run_id = started["run_id"]
    assert started["url"] == f"/api/v1/runs/{run_id}"
    journal = wait_ended(api, run_id)
    call("get_run", f"/runs/{run_id}", token=VIEWER)
    report = call("run_report", f"/runs/{run_id}/report", token=VIEWER).json()
    assert report["run_id"] == run_id and report["title"] == "stored" and report["probes"] == []
    assert journal["experiment"]["title"] == "stored"
    runs = call("list_runs", "/runs?limit=5", token=VIEWER).json()["runs"]
    assert runs[0]["run_id"] == run_id
    events = call("run_events", f"/runs/{run_id}/events", token=VIEWER).text
    assert "event: end" in events
    rows = call("history", f"/history?limit=5&status={journal['status']}", token=VIEWER).json()
    mat = call("maturity", "/maturity?days=30", token=VIEWER).json()
    assert mat["level"] == 1 and mat["levels"][0]["evidence"][0].startswith("1 run(s)"), mat
    bad_days = api.call("GET", "/api/v1/maturity?days=0", token=VIEWER)
    assert bad_days.status_code == 400 and bad_days.json()["field"] == "days"
    assert [r["run_id"] for r in rows["runs"]] == [run_id]
    assert call("kill_switch", "/kill-switch", token=VIEWER).json()["engaged"] is False
    engaged = call("set_kill_switch", "/kill-switch", {"engaged": True, "reason": "drill"})
    assert engaged.json()["engaged"] is True and engaged.json()["by"] == "token:alice"
    refused = api.call("POST", "/api/v1/runs", {"experiment": "demo"})
    assert refused.status_code == 409 and "kill switch" in refused.json()["error"]
    call("set_kill_switch", "/kill-switch", {"engaged": False})
    sched = {"experiments": ["demo"], "cron": "0 12 * * *", "timezone": "Europe/Berlin",
             "blackouts": ["FREQ=WEEKLY;BYDAY=SA,SU"]}  # fmt: skip
    put = call("put_schedule", "/schedules/noon", {"schedule": sched}).json()
    assert put == {"name": "noon", "trigger": "cron '0 12 * * *' Europe/Berlin", "paused": False}
    listed_s = call("list_schedules", "/schedules", token=VIEWER).json()["schedules"]
    assert [x["name"] for x in listed_s] == ["noon"] and listed_s[0]["source"] == "api"
    nxt = call("schedule_next", "/schedules/noon/next?count=7", token=VIEWER).json()["next"]
    assert len(nxt) == 7 and sum(o["runs"] == "no" for o in nxt) == 2  # the weekend
    assert call("pause_schedule", "/schedules/noon/pause").json()["paused"] is True
    one = call("get_schedule", "/schedules/noon?count=3", token=VIEWER).json()
    assert one["paused"] is True and {o["skip"] for o in one["next"]} == {"the schedule is paused"}
    assert call("resume_schedule", "/schedules/noon/resume").json()["paused"] is False
    call("delete_schedule", "/schedules/noon")
    assert api.call("GET", "/api/v1/schedules/noon", token=VIEWER).status_code == 404
    call("delete_experiment", "/experiments/demo")
    assert api.call("GET", "/api/v1/experiments/demo", token=VIEWER).status_code == 404
    monkey = {
        "opt-in": "monkey=yes",
        "group-by": "app",
        "window": "10:00-16:00",
        "actions": [{"fault": "process", "arguments": {"action": "kill", "comm": "x"}}],
    }
    assert call("put_monkey", "/monkeys/m1", {"monkey": monkey}).json()["actions"] == ["process"]
    assert [
        m["name"] for m in call("list_monkeys", "/monkeys", token=VIEWER).json()["monkeys"]
    ] == ["m1"]
    got = call("get_monkey", "/monkeys/m1", token=VIEWER).json()
    assert got["monkey"]["group-by"] == "app" and got["kills"] == []
    sunday = call("monkey_plan", "/monkeys/m1/plan/2026-12-06", token=VIEWER).json()
    assert sunday == {"day": "2026-12-06", "closed": "Sunday is not a workday", "groups": [],
                      "unusable": {}}  # fmt: skip
    bad = api.call("GET", "/api/v1/monkeys/m1/plan/2026-13-45", token=VIEWER)
    assert bad.status_code == 400 and bad.json()["field"] == "day"
    assert call("pause_monkey", "/monkeys/m1/pause").json() == {"name": "m1", "paused": True}
    assert call("get_monkey", "/monkeys/m1", token=VIEWER).json()["paused"] is True
    assert call("resume_monkey", "/monkeys/m1/resume").json()["paused"] is False
    call("delete_monkey", "/monkeys/m1")
    assert set(seen) | LIVE_ONLY == {o.handler.__name__ for o in OPS}


def test_abort_answers_200_for_a_live_run_then_409(sim_api: Api) -> None:
    op = next(o for o in OPS if o.handler.__name__ == "abort_run")
    held = {
        "title": "held",
        "method": [{"type": "action", "name": "cpu", "provider": {
            "type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 5},
            "duration": "5m"}}],
        "extensions": [{"name": "brownout", "lease-ttl": "3s",
                        "ramp": {"steps": [100], "hold": "5m"}}],
    }  # fmt: skip
    run_id = sim_api.call("POST", "/api/v1/runs", {"experiment": held}).json()["run_id"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        run = sim_api.svc.runs.get(run_id)
        if run is not None and run.runner.journal.steps:
            break
        time.sleep(0.05)
    answer = sim_api.call("POST", f"/api/v1/runs/{run_id}/abort", {"reason": "enough"})
    assert answer.status_code == op.status == 200, answer.text
    documented(sim_api, op, 200)
    assert answer.json()["reason"] == "aborted by token:alice: enough"
    again = sim_api.call("POST", f"/api/v1/runs/{run_id}/abort", {})
    assert again.status_code == 409
    journal = wait_ended(sim_api, run_id)
    assert journal["status"] == "aborted"
    faults = [f for a in journal["extensions"][0]["agents"].values() for f in a["faults"]]
    assert faults and all(f["revert"]["state"] == "reverted" for f in faults)


def _path(op: Op) -> str:
    path = op.path.replace("{name}", "demo").replace("{run_id}", "no-such-run")
    return "/api/v1" + path.replace("{gameday_id}", "no-such-day").replace("{action}", "pause")


def _cases(op: Op) -> list[tuple[str, dict[str, Any], int, str]]:
    """(what, request, status, field named) for one operation."""
    path = _path(op)
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        ("no token", {"token": None}, 401, ""),
        ("bad token", {"token": "not-a-token"}, 401, ""),
        ("bad scheme", {"token": None, "headers": {"Authorization": "Basic eDp5"}}, 401, ""),
        ("unknown query", {"path": path + "?colour=red"}, 400, "colour"),
    ]
    if op.role == "operator":
        cases.append(("viewer", {"token": VIEWER, "body": {}}, 403, ""))
    if op.body is not None:
        typed = next(iter(op.body))
        cases += [
            ("malformed JSON", {"raw": b'{"experiment": '}, 400, ""),
            ("not an object", {"raw": b"[1, 2]"}, 400, ""),
            ("unknown field", {"body": {"nonsense": 1}}, 400, "nonsense"),
            ("oversized", {"raw": b'{"reason": "' + b"x" * (2 << 20) + b'"}'}, 413, ""),
            ("wrong type", {"body": {typed: 12345}}, 400, typed),
        ]
        required = [n for n, f in op.body.items() if f.required]
        if required:
            cases.append(("empty body", {"raw": b""}, 400, ""))
    else:
        cases.append(("body where none is taken", {"raw": b'{"a": 1}'}, 400, ""))
    for q in op.queries:
        cases += [
            (f"{q.name} not a number", {"path": f"{path}?{q.name}=ten"}, 400, q.name),
            (f"{q.name} too big", {"path": f"{path}?{q.name}={q.hi + 1}"}, 400, q.name),
        ]
    for name, values in TEXT_QUERIES.get(op.handler.__name__, {}).items():
        if values is not None:
            cases.append((f"{name} not one of its values", {"path": f"{path}?{name}=nonsense"},
                          400, name))  # fmt: skip
    if "{name}" in op.path:
        bad = "/api/v1" + op.path.replace("{name}", "Bad%20Name").replace("{run_id}", "x")
        cases.append(("bad name", {"path": bad}, 400, "name"))
    if "{run_id}" in op.path:
        cases.append(("bad run id", {"path": "/api/v1" + op.path.replace("{run_id}", "..%20x")},
                      400, "run_id"))  # fmt: skip
    return cases


@pytest.mark.parametrize("op", OPS, ids=[f"{o.method} {o.path}" for o in OPS])
def test_bad_input_on_every_route_gets_a_json_4xx(api: Api, op: Op) -> None:
    for what, kw, status, field in _cases(op):
        path = kw.pop("path", _path(op))
        kw.setdefault("token", OPERATOR)
        answer = api.call(op.method, path, **kw)
        assert answer.status_code == status, (what, answer.status_code, answer.text[:300])
        body = answer.json()
        assert body["status"] == status and body["error"], (what, body)
        if field:
            assert body.get("field") == field, (what, body)
        if status == 401:
            assert answer.headers.get("www-authenticate") == "Bearer"
        documented(api, op, status)
    assert api.call("GET", "/healthz", token=None).json()["ok"]


def test_wrong_method_is_405_with_allow(api: Api) -> None:
    answer = api.call("PATCH", "/api/v1/experiments/demo")
    assert answer.status_code == 405 and answer.json()["status"] == 405
    allowed = {m.strip() for m in answer.headers["allow"].split(",")}
    assert {"GET", "PUT", "DELETE"} <= allowed


def test_openapi_declares_parameters_bodies_and_constraints(api: Api) -> None:
    spec = api.call("GET", "/api/v1/openapi.json", token=None).json()
    for op in OPS:
        entry = spec["paths"][f"/api/v1{op.path}"][op.method.lower()]
        declared = {p["name"] for p in entry.get("parameters", []) if p["in"] == "path"}
        assert declared == set(op.path_params), op.path
        for p in entry.get("parameters", []):
            if p["in"] == "path":
                assert p["required"] and p["schema"]["pattern"]
        if op.body and any(f.required for f in op.body.values()):
            assert entry["requestBody"]["required"] is True
    seed = spec["paths"]["/api/v1/runs"]["post"]["requestBody"]["content"]["application/json"]
    assert seed["schema"]["properties"]["seed"]["maximum"] == 2**63 - 1
