"""The maturity model from facts on a given day, and from a real store: each
level's rule and evidence, levels needing the ones below them, level 5's
game day in every 30 days and its share of groups, and what is declared."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from controller.cli.main import main as cli
from controller.errors import ConfigError
from controller.practice import declared
from controller.practice.maturity import Facts, KillFact, RunFact, assess
from controller.service import practice
from controller.store import MonkeyKill, ScheduledOccurrence, open_store

pytestmark = pytest.mark.unit

TODAY = date(2026, 12, 6)


def run(days_ago: int, production: bool | None = None, source: str = "person") -> RunFact:
    return RunFact(f"r{days_ago}{source}", TODAY - timedelta(days=days_ago), "completed",
                   production, source)  # fmt: skip


def kills(groups: int, killed: int, monkey: str = "m") -> list[KillFact]:
    return [KillFact(monkey, f"g{i}", TODAY - timedelta(days=i % 20), i < killed)
            for i in range(groups)]  # fmt: skip


def met(a: dict[str, Any]) -> list[bool]:
    return [lv["met"] for lv in a["levels"]]


def test_nothing_recorded_is_level_zero_and_the_next_step_is_the_first() -> None:
    a = assess(Facts(TODAY, [], [], []))
    assert a["level"] == 0 and met(a) == [False] * 5
    assert "staging" in a["next_step"] and a["since"] == "2026-09-08"


def test_each_level_needs_the_ones_below_it() -> None:
    # A monkey and a schedule, but nothing by hand in production and no game day.
    facts = Facts(TODAY, [run(3), run(2, source="schedule:nightly")], kills(4, 4), [])
    a = assess(facts)
    assert met(a) == [True, False, True, True, False]
    assert a["level"] == 1 and "by hand" in a["next_step"]
    assert "1 scheduled run(s)" in a["levels"][2]["evidence"][0]
    assert a["levels"][2]["evidence"][1] == "schedules: nightly"


def test_an_ad_hoc_production_run_or_a_game_day_is_level_two() -> None:
    prod = assess(Facts(TODAY, [run(5, production=True)], [], []))
    assert prod["level"] == 2 and "1 ad hoc production run(s)" in prod["levels"][1]["evidence"][0]
    # A scheduled production run is not ad hoc; a game day is.
    sched = assess(Facts(TODAY, [run(5, True, "schedule:s")], [], []))
    assert sched["level"] == 1
    game = assess(Facts(TODAY, [run(5)], [], [TODAY - timedelta(days=1)]))
    assert game["level"] == 2 and "1 game day(s)" in game["levels"][1]["evidence"][1]


def test_runs_outside_the_window_do_not_count() -> None:
    a = assess(Facts(TODAY, [run(90, production=True)], kills(2, 2), [], days=90))
    assert a["level"] == 0 and a["levels"][0]["evidence"][0] == "0 run(s) (none)"
    assert assess(Facts(TODAY, [run(89)], [], []))["level"] == 1


def test_level_five_needs_most_groups_and_a_game_day_every_thirty_days() -> None:
    runs = [run(10, production=True), run(3, source="rotation:r")]
    monthly = [TODAY - timedelta(days=d) for d in (5, 40, 70)]
    a = assess(Facts(TODAY, runs, kills(10, 5), monthly))
    assert a["level"] == 5 and met(a) == [True] * 5, a
    assert "reached 5 of the 10 group(s)" in a["levels"][4]["evidence"][0]
    assert a["levels"][4]["evidence"][1] == "game days in 3 of 3 30-day period(s)"
    few = assess(Facts(TODAY, runs, kills(10, 4), monthly))
    assert few["level"] == 4 and "widen" in few["next_step"]
    gap = assess(Facts(TODAY, runs, kills(10, 5), monthly[:2]))
    assert gap["level"] == 4 and "every 30 days" in gap["next_step"]
    assert "none in 2026-09-08..2026-10-07" in gap["levels"][4]["evidence"][1]


def test_declared_parts_are_shown_never_counted() -> None:
    p = declared.parse({"practice": {"on-call": "weekly", "game-days": ["2026-12-01"]}}, "f")
    assert p.declared == {"on-call": "weekly"} and p.gamedays == (date(2026, 12, 1),)
    a = assess(Facts(TODAY, [run(1)], [], p.gamedays, p.declared))
    assert a["declared"] == {"on-call": "weekly"} and a["level"] == 2
    for bad, says in [
        ({"practice": {"game-days": ["soon"]}}, "'soon' is not a date"),
        ({"practice": {"game-days": "2026-12-01"}}, "a list of dates"),
        ({"practice": {"on-call": ["a"]}}, "expected text"),
        ({"practice": {"on-call": "x" * 501}}, "at most 500"),
        ({"on-call": "weekly"}, "practice: {...}"),
    ]:
        with pytest.raises(ConfigError, match=says):
            declared.parse(bad, "f")


def journal(run_id: str, started: str, labels: dict[str, str] | None) -> dict[str, Any]:
    sel: dict[str, Any] = {"targets": ["a:1"]}
    if labels is not None:
        sel["target_labels"] = {"a:1": labels}
    return {"experiment": {"title": run_id}, "status": "completed", "start": started,
            "end": started, "duration": 1.0,
            "extensions": [{"name": "brownout", "run_id": run_id, "selection": sel}]}  # fmt: skip


def test_from_a_store_by_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The facts as the controller records them: runs with their targets'
    labels, a schedule's and a rotation's occurrences, a monkey's tracker."""
    store = open_store(tmp_path)
    today = datetime.now(UTC).date()  # the CLI weighs the window up to today
    day = (today - timedelta(days=1)).isoformat()
    for run_id, labels in [("staging", {"env": "staging"}), ("prod", {"env": "production"}),
                           ("old", None), ("sched", {"env": "prod"}), ("rot", {})]:  # fmt: skip
        store.history.record(journal(run_id, f"{day}T10:00:00+00:00", labels), tmp_path / "j")
    for name, experiments, run_id in [("nightly", ["a"], "sched"), ("rotate", ["a", "b"], "rot")]:
        store.schedules.put(name, {"every": "1d", "experiments": experiments}, "api", "t")
        occ = ScheduledOccurrence(name, f"{day}T10:00:00+00:00", "x", "started", "", "", run_id)
        store.schedules.record(occ, 100)
    store.monkeys.put("web", {"name": "web"}, "api", "t")
    for group, outcome in [("g1", "killed"), ("g2", "skipped")]:
        kill = MonkeyKill("web", f"{day}/{group}/0", group, day, day, day, outcome, "")
        assert store.monkeys.claim(kill)
    a = practice.assess(store, today, declared.Practice({"on-call": "weekly"}))
    store.close()
    ev = {lv["number"]: lv["evidence"] for lv in a["levels"]}
    span = f"(first {day}, last {day})"
    assert ev[1][:3] == [f"5 run(s) {span}",
                         "3 outside production, 2 in production",
                         "1 recorded no target labels (counted outside production)"]  # fmt: skip
    assert ev[2][0].startswith("1 ad hoc production run(s)")  # "sched" is not ad hoc
    assert ev[3] == [f"2 scheduled run(s) {span}",
                     "schedules: nightly, rotate"]  # fmt: skip
    assert ev[4][0] == f"1 monkey kill(s) {span} by web"
    assert ev[5][0].startswith("monkeys reached 1 of the 2 group(s)")
    assert a["level"] == 4 and a["declared"] == {"on-call": "weekly"}
    practice_file = tmp_path / "practice.yaml"
    practice_file.write_text("practice:\n  on-call: weekly\n")
    capsys.readouterr()  # the store's logs so far
    assert cli(["maturity", "--data-dir", str(tmp_path), "--practice", str(practice_file),
                "--json"]) == 0  # fmt: skip
    shown = json.loads(capsys.readouterr().out)
    assert shown["level"] == 4 and shown["declared"] == {"on-call": "weekly"}
    assert shown["levels"] == a["levels"]
