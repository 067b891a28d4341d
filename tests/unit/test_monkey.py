"""The monkey's calendar and draw: thirty simulated days over 40 groups at a
mean of 2 work days and a minimum of 1 (kills per group against a binomial
bound; the minimum never broken; no kills on weekends, blackout dates or
outside the window), the opt-in and exceptions, the regions, the weighted
actions, and each bad field named."""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.errors import ConfigError
from controller.monkey import model
from controller.monkey.planning import closed, plan_day, work_days_between

pytestmark = pytest.mark.unit

BERLIN = ZoneInfo("Europe/Berlin")
KILL = {"fault": "process", "arguments": {"action": "kill", "comm": "svc", "signal": "KILL"}}
STOP = {"fault": "process", "arguments": {"action": "stop", "comm": "svc"}, "duration": "30s"}


def doc(**over: Any) -> dict[str, Any]:
    d: dict[str, Any] = {
        "name": "m",
        "opt-in": "brownout.io/monkey=enabled",
        "group-by": "app",
        "actions": [KILL],
        "mean-work-days-between-kills": 2,
        "min-work-days-between-kills": 1,
        "timezone": "Europe/Berlin",
        "window": "10:00-16:00",
        "blackouts": ["2026-12-24..2026-12-26"],
    }
    d.update(over)
    return d


def groups(n: int) -> dict[str, tuple[str, ...]]:
    return {f"g{i:02}": tuple(f"10.0.{i}.{j}:7070" for j in range(3)) for i in range(n)}


def test_thirty_days_over_forty_groups_keep_the_mean_the_minimum_and_the_calendar() -> None:
    m = model.parse(doc())
    g = groups(40)
    last: dict[str, date] = {}
    kills: list[tuple[str, date]] = []
    first = date(2026, 12, 1)
    for n in range(30):
        day = first + timedelta(days=n)
        for slot in plan_day(m, day, g, last).slots:
            local = slot.at.astimezone(BERLIN)
            assert local.weekday() < 5, slot  # never on a weekend
            assert not date(2026, 12, 24) <= local.date() <= date(2026, 12, 26), slot
            assert m.window[0] <= local.time() < m.window[1], slot  # inside the window
            if slot.group in last:  # the minimum: at least one work day between kills
                assert work_days_between(m, last[slot.group], day) >= 1
            last[slot.group] = day
            kills.append((slot.group, day))
    eligible = sum(not closed(m, first + timedelta(days=n)) for n in range(30))
    assert eligible == 20  # 22 weekdays in December 1-30, less the 24th and 25th
    per_group = Counter(group for group, _ in kills)
    mean, sd = eligible / 2, math.sqrt(eligible * 0.25)
    counts = [per_group.get(group, 0) for group in g]
    print(f"\nkills per group over {eligible} work days: {sorted(counts)} (binomial mean {mean})")
    assert all(abs(c - mean) <= 4 * sd for c in counts), counts  # each within 4 sigma
    total_sd = math.sqrt(40 * eligible * 0.25)
    assert abs(sum(counts) - 40 * mean) <= 3 * total_sd, sum(counts)
    assert len(set(kills)) == len(kills)  # at most one kill per group per day


def test_the_same_day_draws_the_same_plan_and_a_new_day_another() -> None:
    m = model.parse(doc())
    g = groups(10)
    a, b = plan_day(m, date(2026, 12, 7), g, {}), plan_day(m, date(2026, 12, 7), g, {})
    assert [s.key for s in a.slots] == [s.key for s in b.slots] and a.slots
    assert [s.at for s in a.slots] == [s.at for s in b.slots]
    c = plan_day(m, date(2026, 12, 8), g, {})
    assert [s.at.time() for s in c.slots] != [s.at.time() for s in a.slots]


def test_a_day_off_says_why_and_small_groups_and_exceptions_are_left_alone() -> None:
    m = model.parse(doc(exceptions={"groups": ["g01"]}))
    saturday = plan_day(m, date(2026, 12, 5), groups(3), {})
    assert saturday.closed == "Saturday is not a workday" and not saturday.slots
    holiday = plan_day(m, date(2026, 12, 24), groups(3), {})
    assert holiday.closed == "blackout 2026-12-24..2026-12-26"
    g = {**groups(3), "solo": ("10.9.0.1:7070",)}
    monday = {x.group: x.why_not for x in plan_day(m, date(2026, 12, 7), g, {}).groups}
    assert monday["g01"] == "an exception"
    assert monday["solo"].startswith("1 member(s): a group is never left without")
    recent = plan_day(m, date(2026, 12, 7), g, {"g00": date(2026, 12, 7)})
    assert "fewer than 1 work day(s) ago" in {x.group: x.why_not for x in recent.groups}["g00"]
    paused = plan_day(model.parse(doc(paused=True)), date(2026, 12, 7), g, {})
    assert paused.closed == "paused" and not paused.slots


def test_groups_come_from_opted_in_labels_by_zone_or_together() -> None:
    independent = model.parse(doc(**{"zone-label": "zone", "exceptions": {"labels": ["tier=db"]}}))
    together = model.parse(doc(**{"zone-label": "zone", "regions": "together"}))
    web_a = {"brownout.io/monkey": "enabled", "app": "web", "zone": "a"}
    assert independent.group_of(web_a) == "a/web"
    assert together.group_of(web_a) == "web"
    assert independent.group_of({**web_a, "brownout.io/monkey": "no"}) is None  # no opt-in
    assert independent.group_of({**web_a, "tier": "db"}) is None  # an exception
    assert independent.group_of({"brownout.io/monkey": "enabled"}) is None  # no group label


def test_weighted_actions_are_picked_in_proportion() -> None:
    m = model.parse(doc(**{"actions": [{**KILL, "weight": 3}, {**STOP, "weight": 1}],
                           "mean-work-days-between-kills": 1}))  # fmt: skip
    picks = Counter(
        s.action
        for n in range(60)
        for s in plan_day(m, date(2026, 12, 1) + timedelta(days=n), groups(20), {}).slots
    )
    share = picks[0] / (picks[0] + picks[1])
    assert 0.65 < share < 0.85, picks  # 3 to 1
    assert m.actions[1].provider.duration == 30.0


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"opt-in": ""}, "monkey.opt-in"),
        ({"group-by": ""}, "monkey.group-by"),
        ({"actions": []}, "monkey.actions"),
        (
            {"actions": [{"fault": "process", "arguments": {"action": "explode"}}]},
            "monkey.actions[0]",
        ),
        ({"actions": [{**KILL, "weight": 0}]}, "monkey.actions[0].weight"),
        ({"mean-work-days-between-kills": 0.5}, "monkey.mean-work-days-between-kills"),
        ({"min-work-days-between-kills": 3}, "monkey"),
        ({"window": "16:00-10:00"}, "monkey.window"),
        ({"window": "10-16"}, "monkey.window"),
        ({"planning-hour": "25:00"}, "monkey.planning-hour"),
        ({"workdays": ["mon", "funday"]}, "monkey.workdays"),
        ({"timezone": "Mars/Olympus"}, "monkey.timezone"),
        ({"regions": "apart"}, "monkey.regions"),
        ({"max-down": 0}, "monkey.max-down"),
        ({"exceptions": {"hosts": []}}, "monkey.exceptions"),
        ({"paused": "yes"}, "monkey.paused"),
        ({"cron": "* * * * *"}, "monkey"),
    ],
)
def test_bad_fields_are_named(over: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        model.parse(doc(**over))
    assert info.value.where.startswith(field), (info.value.where, str(info.value))
