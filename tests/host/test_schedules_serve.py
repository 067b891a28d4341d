"""Schedules in a real `brownout serve` over real agents: a cron with seconds
runs on time for a minute while a blackout skips exactly the two occurrences
it covers; the concurrency policies against a run still going; occurrences
missed while the server was down are recorded as missed; and the CLI's
`brownout schedules` verbs through the API."""

from __future__ import annotations

import math
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import doc
from tests.host.schedules import EVERY_5S, occurrences, put, quick
from tests.host.serveproc import OPERATOR, VIEWER, ServeProc

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


def long() -> dict[str, Any]:
    return doc(
        duration="60s", brownout={"lease-ttl": "3s", "ramp": {"steps": [100], "hold": "30s"}}
    )


def at_boundary(step: float, after: float) -> datetime:
    """The first multiple of step seconds (UTC) at least `after` seconds from now."""
    t = math.ceil((time.time() + after) / step) * step
    return datetime.fromtimestamp(t, UTC)


def test_a_cron_with_seconds_runs_on_time_and_a_blackout_skips_exactly_its_two(
    serve: ServeProc, fleet: list[AgentProc]
) -> None:
    assert serve.call("PUT", "/api/v1/experiments/tick", {"experiment": quick()}).status == 200
    first = at_boundary(5, 4)
    dark_from, dark_to = first + timedelta(seconds=9.5), first + timedelta(seconds=15.5)
    blackout = f"{dark_from:%Y-%m-%dT%H:%M:%S.%f}Z..{dark_to:%Y-%m-%dT%H:%M:%S.%f}Z"
    put(serve, {"name": "tick", "experiments": ["tick"], "cron": EVERY_5S,
                "blackouts": [{"name": "incident", "dates": blackout}]})  # fmt: skip
    planned = serve.call("GET", "/api/v1/schedules/tick/next?count=6", token=VIEWER).body["next"]
    skipped = [o["due"] for o in planned if o["runs"] == "no"]
    assert len(skipped) == 2 and all("blackout incident" in o["skip"] for o in planned
                                      if o["runs"] == "no"), planned  # fmt: skip
    end = first + timedelta(seconds=30)
    assert wait_for(lambda: datetime.now(UTC) > end + timedelta(seconds=3), 60, 0.5)
    put(serve, {"name": "tick", "experiments": ["tick"], "cron": EVERY_5S, "paused": True})
    seen = [
        o for o in occurrences(serve, "tick") if first <= datetime.fromisoformat(o["due"]) <= end
    ]
    assert len(seen) == 7, seen  # every occurrence of the half minute, each recorded once
    assert [o["due"] for o in seen if o["outcome"] == "skipped"] == skipped
    assert all(o["kind"] == "blackout" for o in seen if o["outcome"] == "skipped")
    lateness = []
    for o in seen:
        if o["outcome"] != "started":
            continue
        journal = serve.call("GET", f"/api/v1/runs/{o['run_id']}", token=VIEWER).body
        started = datetime.fromisoformat(journal["start"])
        lateness.append((started - datetime.fromisoformat(o["due"])).total_seconds())
        assert journal["status"] in ("completed", "running"), journal["status"]
    print(f"\nlateness of 5 scheduled starts: max {max(lateness) * 1000:.0f} ms")
    assert len(lateness) == 5 and all(0 <= x <= 1.0 for x in lateness), lateness


@pytest.mark.parametrize("policy", ["forbid", "allow", "replace"])
def test_concurrency_policies_against_a_run_still_going(
    serve: ServeProc, fleet: list[AgentProc], policy: str
) -> None:
    assert serve.call("PUT", "/api/v1/experiments/long", {"experiment": long()}).status == 200
    put(serve, {"name": "c", "experiments": ["long"], "cron": EVERY_5S, "concurrency": policy})
    # Decided ones: a replace waits for the old run's revert while its occurrence is claimed.
    assert wait_for(lambda: len(occurrences(serve, "c")) >= 2, 30, 0.2)
    put(serve, {"name": "c", "experiments": ["long"], "cron": EVERY_5S, "paused": True})
    first, second = occurrences(serve, "c")[:2]
    assert first["outcome"] == "started"
    runs = {r["run_id"]: r for r in serve.call("GET", "/api/v1/runs", token=VIEWER).body["runs"]}
    if policy == "forbid":
        assert second["outcome"] == "skipped" and second["kind"] == "running", second
        assert first["run_id"] in second["detail"]
    elif policy == "allow":
        assert second["outcome"] == "started"
        assert runs[first["run_id"]]["live"] and runs[second["run_id"]]["live"]
    else:
        assert second["outcome"] == "started"
        old = serve.call("GET", f"/api/v1/runs/{first['run_id']}", token=VIEWER).body
        assert old["status"] == "aborted", old["status"]
        assert "replaced" in str(old), "the journal says why it ended"
    for run_id in {first["run_id"], second.get("run_id", "")} - {""}:
        serve.call("POST", f"/api/v1/runs/{run_id}/abort", {"reason": "test over"})


def test_a_rotation_runs_each_experiment_then_the_least_recent_and_history_shows_it(
    serve: ServeProc, fleet: list[AgentProc]
) -> None:
    for name in ("one", "two", "three"):
        assert (
            serve.call("PUT", f"/api/v1/experiments/{name}", {"experiment": quick()}).status == 200
        )
    rot = {"name": "rot", "experiments": ["one", "two", "three"], "cron": EVERY_5S}
    put(serve, rot)

    def started() -> list[dict[str, Any]]:
        return [o for o in occurrences(serve, "rot") if o["outcome"] == "started"]

    assert wait_for(lambda: len(started()) >= 4, 40, 0.2), occurrences(serve, "rot")
    put(serve, {**rot, "paused": True})
    picks = [(o["experiment"], o["detail"]) for o in started()[:4]]
    assert [p[0] for p in picks] == ["one", "two", "three", "one"], picks
    assert [p[1].split(" (")[0] for p in picks] == [
        *["never run by this schedule"] * 3, "least recently run",
    ]  # fmt: skip
    shown = subprocess.run(
        [sys.executable, "-m", "controller.cli", "history", "--schedule", "rot",
         "--data-dir", str(serve.data_dir)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "started" in line]
    assert len(lines) >= 4 and "never run by this schedule" in shown.stdout
    assert all(("completed" in line) or ("running" in line) for line in lines[-4:]), lines


def test_occurrences_missed_while_the_server_was_down_are_recorded(
    serve: ServeProc, fleet: list[AgentProc]
) -> None:
    assert serve.call("PUT", "/api/v1/experiments/tick", {"experiment": quick()}).status == 200
    put(serve, {"name": "m", "experiments": ["tick"], "cron": EVERY_5S,
                "starting-deadline": "2s"})  # fmt: skip
    assert wait_for(lambda: any(o["outcome"] == "started" for o in occurrences(serve, "m")), 15)
    assert serve.stop() == 0
    down_from = datetime.now(UTC)
    time.sleep(12)
    down_to = datetime.now(UTC)
    serve.start()
    assert wait_for(
        lambda: any(datetime.fromisoformat(o["due"]) > down_to and o["outcome"] == "started"
                    for o in occurrences(serve, "m")), 15)  # fmt: skip
    put(serve, {"name": "m", "experiments": ["tick"], "cron": EVERY_5S, "paused": True})
    down = [o for o in occurrences(serve, "m")
            if down_from < datetime.fromisoformat(o["at"]) < down_to]  # fmt: skip
    assert len(down) >= 2, down
    assert all(o["outcome"] == "skipped" and o["kind"] == "missed" for o in down), down
    assert "not running" in down[0]["detail"]
    metrics = serve.metrics()
    assert 'chaos_runs_skipped_total{reason="missed"}' in metrics


def console(s: ServeProc, path: str) -> str:
    req = urllib.request.Request(s.url + path, headers={"Cookie": f"brownout_token={OPERATOR}"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return str(resp.read().decode())


def cli(s: ServeProc, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "--server", s.url, *argv],
        capture_output=True,
        text=True,
        env={"BROWNOUT_TOKEN": OPERATOR, "PATH": "/usr/bin:/bin"},
        timeout=30,
    )


def test_the_cli_adds_lists_plans_pauses_and_removes(serve: ServeProc, tmp_path: Path) -> None:
    assert serve.call("PUT", "/api/v1/experiments/tick", {"experiment": quick()}).status == 200
    added = cli(serve, "schedules", "add", "daily", "--experiment", "tick", "--cron",
                "0 12 * * *", "--timezone", "Europe/Berlin", "--blackout", "12-20..01-03",
                "--paused")  # fmt: skip
    assert added.returncode == 0, added.stderr
    listed = cli(serve, "schedules", "list")
    assert "daily  [paused] cron '0 12 * * *' Europe/Berlin" in listed.stdout, listed.stdout
    assert cli(serve, "schedules", "resume", "daily").returncode == 0
    nxt = cli(serve, "schedules", "next", "daily", "--count", "400")  # more than a year
    lines = nxt.stdout.splitlines()
    assert len(lines) == 400 and any("12:00:00+01:00  runs" in line for line in lines), lines
    assert any("skipped: blackout 12-20..01-03" in line for line in lines)
    assert all(("skipped: blackout" in line) == (line[5:10] >= "12-20" or line[5:10] <= "01-03")
               for line in lines), lines  # fmt: skip
    page = console(serve, "/console/schedules/daily")
    assert "skipped" in page and "blackout 12-20..01-03" in page and "Pause this schedule" in page
    assert cli(serve, "schedules", "pause", "daily").returncode == 0
    assert "skipped: the schedule is paused" in cli(serve, "schedules", "next", "daily").stdout
    assert "paused" in console(serve, "/console/schedules")
    bad = cli(serve, "schedules", "add", "bad", "--experiment", "tick", "--cron", "* * *")
    assert bad.returncode == 2 and "argument --cron" in bad.stderr, bad.stderr
    odd = tmp_path / "odd.yaml"
    odd.write_text("experiments: [tick]\nevery: 1m\ncolour: red\n")
    refused = cli(serve, "schedules", "add", "odd", "--file", str(odd))
    assert refused.returncode == 2 and "colour" in refused.stderr, refused.stderr
    assert cli(serve, "schedules", "remove", "daily").returncode == 0
    assert "daily" not in cli(serve, "schedules", "list").stdout
