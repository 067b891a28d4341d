"""Game days through the service, over the fleet simulator: a plan's
scenarios at their offsets, the commander's controls (pause, resume,
advance, skip, abort) each doing what it says, criteria judged from the
runs, one game day at a time, a dry run in wall-clock time, bad plans
named by field, and the day's report."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import pytest
import yaml

from controller.service.api import OPS
from tests.controller_servers import Service, serving
from tests.service.conftest import OPERATOR, VIEWER, Api
from tests.service.test_api_operations import documented
from tests.service.test_console_audit import post, sign_in

pytestmark = pytest.mark.unit


def experiment(url: str, hold: str = "1s") -> dict[str, Any]:
    return {
        "title": "cpu on the fleet",
        "steady-state-hypothesis": {"title": "up", "probes": [
            {"type": "probe", "name": "web", "tolerance": 200,
             "provider": {"type": "http", "url": url, "timeout": 2}}]},
        "method": [{"type": "action", "name": "cpu", "provider": {
            "type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 5},
            "duration": "5m"}}],
        "extensions": [{"name": "brownout", "lease-ttl": "3s",
                        "ramp": {"steps": [100], "hold": hold},
                        "timeline": {"interval": "0.2s", "recovery": "3s"}}],
    }  # fmt: skip


def plan() -> dict[str, Any]:
    return {"gameday": {
        "title": "Payments game day", "date": "2026-12-10",
        "roles": {"commander": "alice", "scribe": "bob", "observers": ["dave"]},
        "scenarios": [
            {"name": "first", "at": "T+0", "experiment": "quick", "expect": "web stays up",
             "criteria": [{"name": "no errors", "probe": "web", "no-deviation": True},
                          {"name": "recovers", "probe": "web", "recovers-within": "5s"}]},
            {"name": "second", "at": "T+1h", "experiment": "long"},
            {"name": "third", "at": "T+2h", "experiment": "quick"},
        ]}}  # fmt: skip


def op(name: str) -> Any:
    return next(o for o in OPS if o.handler.__name__ == name)


def wait(api: Api, gid: str, check: Any, seconds: float = 20) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        g = api.call("GET", f"/api/v1/gamedays/{gid}", token=VIEWER).json()
        if check(g):
            return dict(g)
        time.sleep(0.1)
    raise AssertionError(f"game day never got there: {g}")


def state(g: dict[str, Any], name: str) -> str:
    return str(next(s["state"] for s in g["scenarios"] if s["name"] == name))


def test_a_game_day_under_its_commander(sim_api: Api) -> None:
    web = Service()
    with serving(web.respond) as server:
        for name, hold in (("quick", "1s"), ("long", "5m")):
            put = sim_api.call("PUT", f"/api/v1/experiments/{name}",
                               {"experiment": experiment(server.url, hold)})  # fmt: skip
            assert put.status_code == 200, put.text
        # The dry run: the schedule in wall-clock time, each check; nothing runs.
        dry = sim_api.call("POST", "/api/v1/gamedays/dry-run", {"plan": plan()}, token=VIEWER)
        assert dry.status_code == 200, dry.text
        documented(sim_api, op("gameday_dry_run"), 200)
        first, second = dry.json()["scenarios"][:2]
        gap = datetime.fromisoformat(second["at"]) - datetime.fromisoformat(first["at"])
        assert gap.total_seconds() == 3600 and first["faults"] == ["cpu"]
        assert dry.json()["agents"]["first"]["ok"] is True
        assert sim_api.svc.runs.active() == []
        started = sim_api.call("POST", "/api/v1/gamedays", {"plan": plan()})
        assert started.status_code == 201, started.text
        documented(sim_api, op("start_gameday"), 201)
        gid = started.json()["id"]
        again = sim_api.call("POST", "/api/v1/gamedays", {"plan": plan()})
        assert again.status_code == 409 and "one game day at a time" in again.json()["error"]
        g = wait(sim_api, gid, lambda g: state(g, "first") == "done")
        [first_sc] = [s for s in g["scenarios"] if s["name"] == "first"]
        assert [v["passed"] for v in first_sc["verdicts"]] == [True, True], first_sc
        assert first_sc["status"] == "completed" and state(g, "second") == "waiting"

        def control(action: str, status: int = 200) -> dict[str, Any]:
            answer = sim_api.call("POST", f"/api/v1/gamedays/{gid}/{action}")
            assert answer.status_code == status, (action, answer.text)
            return dict(answer.json())

        noted = sim_api.call("POST", f"/api/v1/gamedays/{gid}/notes",
                             {"text": "between scenarios: all quiet"})  # fmt: skip
        assert noted.status_code == 200 and noted.json()["by"] == "token:alice", noted.text
        documented(sim_api, op("note_gameday"), 200)
        empty = sim_api.call("POST", f"/api/v1/gamedays/{gid}/notes", {"text": " "})
        assert empty.status_code == 400 and empty.json()["field"] == "text"
        assert control("pause")["state"] == "paused"
        assert "already paused" in control("pause", 409)["error"]
        time.sleep(0.5)
        # The console shows the day and the commander's controls, and resumes it.
        sign_in(sim_api, OPERATOR)
        page = sim_api.client.get(f"/console/gamedays/{gid}").text
        assert 'id="gameday-resume"' in page and 'id="gameday-abort"' in page
        assert page.count('class="scenario state-') == 3 and "&#10003; passed" in page
        resumed = post(sim_api, f"/console/gamedays/{gid}/resume", OPERATOR)
        assert resumed.status_code == 303, resumed.text
        assert 'id="gameday-pause"' in sim_api.client.get(resumed.headers["location"]).text
        assert state(wait(sim_api, gid, lambda g: g["state"] == "running"), "second") == "waiting"
        documented(sim_api, op("control_gameday"), 200)
        control("advance")  # the second starts now, not in an hour
        g = wait(sim_api, gid, lambda g: state(g, "second") == "running")
        run_id = next(s["run_id"] for s in g["scenarios"] if s["name"] == "second")
        control("skip")  # its run is aborted, the scenario skipped
        g = wait(sim_api, gid, lambda g: state(g, "second") == "skipped")
        assert sim_api.svc.runs.get(run_id).journal()["status"] == "aborted"  # type: ignore[union-attr]
        control("abort")
        g = wait(sim_api, gid, lambda g: g["state"] == "aborted")
        assert state(g, "third") == "aborted" and g["ended"]
        assert "has aborted" in control("pause", 409)["error"]
        assert control("explode", 400)["field"] == "action"
    deadline = time.monotonic() + 5  # the store has the last state a moment after the day
    while time.monotonic() < deadline:
        listed = sim_api.call("GET", "/api/v1/gamedays", token=VIEWER).json()["gamedays"]
        if listed[0]["state"] == "aborted":
            break
        time.sleep(0.05)
    assert [x["id"] for x in listed] == [gid] and listed[0]["state"] == "aborted"
    documented(sim_api, op("list_gamedays"), 200)
    documented(sim_api, op("get_gameday"), 200)
    rep = sim_api.call("GET", f"/api/v1/gamedays/{gid}/report", token=VIEWER)
    assert rep.status_code == 200, rep.text
    documented(sim_api, op("gameday_report"), 200)
    r = rep.json()
    html = sim_api.client.get(f"/console/gamedays/{gid}/report").text
    assert "Executive summary" in html and 'class="criterion passed"' in html
    assert gid in sim_api.client.get("/console/gamedays").text
    assert r["criteria_passed"] == 2 and len(r["criteria"]) == 2
    assert r["summary"].startswith("Payments game day: aborted. 1 of 3 scenario(s) ran;")
    whats = [e["what"] for e in r["timeline"]]
    assert any(w.startswith("started: quick") for w in whats) and "faults reverted" in whats
    assert any("third: aborted" in f for f in r["findings"]), r["findings"]
    assert [n["text"] for n in r["notes"]] == ["between scenarios: all quiet"]
    late = sim_api.call("POST", f"/api/v1/gamedays/{gid}/notes", {"text": "after"})
    assert late.status_code == 409 and "has aborted" in late.json()["error"]


def test_the_console_starts_a_game_day_from_a_pasted_plan(sim_api: Api) -> None:
    web = Service()
    with serving(web.respond) as server:
        sim_api.call("PUT", "/api/v1/experiments/quick", {"experiment": experiment(server.url)})
        sim_api.call("PUT", "/api/v1/experiments/long", {"experiment": experiment(server.url)})
        sign_in(sim_api, OPERATOR)
        bad = post(sim_api, "/console/gamedays/start", OPERATOR, plan="gameday: [")
        assert bad.status_code == 400 and "not YAML" in bad.text
        started = post(sim_api, "/console/gamedays/start", OPERATOR, plan=yaml.safe_dump(plan()))
        assert started.status_code == 303, started.text
        gid = started.headers["location"].rsplit("/", 1)[1]
        wait(sim_api, gid, lambda g: state(g, "first") == "done")
        noted = post(sim_api, f"/console/gamedays/{gid}/notes", OPERATOR, text="scribe here")
        assert noted.status_code == 303
        page = sim_api.client.get(f"/console/gamedays/{gid}").text
        assert "scribe here" in page and 'id="add-gameday-note"' in page
        assert post(sim_api, f"/console/gamedays/{gid}/abort", OPERATOR).status_code == 303
        wait(sim_api, gid, lambda g: g["state"] == "aborted")


def test_bad_plans_are_named_by_field(sim_api: Api) -> None:
    sim_api.call("PUT", "/api/v1/experiments/quick", {"experiment": experiment("http://x/")})
    cases = [
        ({"gameday": {"title": "t", "roles": {"scribe": "b"}, "scenarios": []}},
         "gameday.roles.commander"),
        ({"gameday": {"title": "t", "roles": {"commander": "a"},
                      "scenarios": [{"name": "a", "experiment": "nope"}]}},
         "gameday.scenarios[0].experiment"),
        ({"gameday": {"title": "t", "roles": {"commander": "a"}, "scenarios": [
            {"name": "a", "experiment": "quick",
             "criteria": [{"name": "x", "probe": "missing", "no-deviation": True}]}]}},
         "gameday.scenarios[0].criteria[0].probe"),
        ({"gameday": {"title": "t", "roles": {"commander": "a"}, "scenarios": [
            {"name": "a", "at": "T+1h", "experiment": "quick"},
            {"name": "b", "at": "T+5m", "experiment": "quick"}]}}, "gameday.scenarios"),
        ({"gameday": {"title": "t", "roles": {"commander": "a"}, "scenarios": [
            {"name": "a", "at": "noon", "experiment": "quick"}]}}, "gameday.scenarios[0].at"),
    ]  # fmt: skip
    for doc, where in cases:
        answer = sim_api.call("POST", "/api/v1/gamedays", {"plan": doc})
        assert answer.status_code == 400 and answer.json()["field"] == where, answer.text
    assert sim_api.call("GET", "/api/v1/gamedays", token=VIEWER).json()["gamedays"] == []


def test_a_game_day_whose_controller_is_gone_ends_interrupted(sim_api: Api) -> None:
    """Its state in the store would otherwise say running forever."""
    from controller.store import StoredGameDay, now_iso

    store = sim_api.svc.opened.gamedays
    scenarios = [{"name": "a", "state": "done", "reason": ""},
                 {"name": "b", "state": "running", "reason": ""},
                 {"name": "c", "state": "waiting", "reason": ""}]  # fmt: skip
    gone = StoredGameDay("gd-gone", "t", {}, "running", "token:alice", now_iso(), "", scenarios,
                         replica="another-host/4242/abcdef")  # fmt: skip
    mine = StoredGameDay("gd-mine", "t", {}, "paused", "token:alice", now_iso(), "", scenarios,
                         replica=sim_api.svc.sync.me.replica)  # fmt: skip
    store.put(gone)
    store.put(mine)
    sim_api.svc.sync.take_over()
    g = store.get("gd-gone")
    assert g is not None and g.state == "interrupted" and g.ended
    assert [s["state"] for s in g.scenarios] == ["done", "interrupted", "interrupted"]
    assert "another-host/4242/abcdef" in g.scenarios[1]["reason"]
    assert "no heartbeat on record" in g.scenarios[1]["reason"]
    assert store.get("gd-mine").state == "paused"  # type: ignore[union-attr]
