"""Schedules on an injected clock: cron with and without seconds in named time
zones across both DST changes (Europe/Berlin, America/New_York), intervals,
jitter and spread, blackouts (dates, ranges, yearly ranges, RRULEs), run
windows, the daily cap, and the checks that name a bad field."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from controller.errors import ConfigError
from controller.experiments import window
from controller.schedules import blackouts, model, picking
from controller.schedules.plan import draw, occurrences, plan

pytestmark = pytest.mark.unit

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")


def schedule(**doc: Any) -> model.Schedule:
    return model.parse({"name": "s", "experiments": ["e"], **doc})


def times(s: model.Schedule, after: datetime, n: int, tz: ZoneInfo) -> list[str]:
    return [o.at.astimezone(tz).isoformat() for o in itertools.islice(occurrences(s, after), n)]


def test_daily_berlin_fires_once_a_day_across_both_dst_changes() -> None:
    s = schedule(cron="30 2 * * *", timezone="Europe/Berlin")
    spring = times(s, datetime(2026, 3, 28, 12, tzinfo=BERLIN), 3, BERLIN)
    # 02:30 does not exist on Mar 29: it fires when the clocks reach 03:00.
    assert spring == [
        "2026-03-29T03:00:00+02:00",
        "2026-03-30T02:30:00+02:00",
        "2026-03-31T02:30:00+02:00",
    ]
    autumn = times(s, datetime(2026, 10, 24, 12, tzinfo=BERLIN), 3, BERLIN)
    # 02:30 happens twice on Oct 25: a fixed time fires once, at the first.
    assert autumn == [
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
        "2026-10-27T02:30:00+01:00",
    ]


def test_every_30_minutes_keeps_real_time_through_new_yorks_repeated_hour() -> None:
    s = schedule(cron="*/30 * * * *", timezone="America/New_York")
    got = times(s, datetime(2026, 11, 1, 0, 45, tzinfo=NEW_YORK), 6, NEW_YORK)
    assert got == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:30:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T01:30:00-05:00",
        "2026-11-01T02:00:00-05:00",
        "2026-11-01T02:30:00-05:00",
    ]
    gaps = {b - a for a, b in itertools.pairwise(o.at for o in itertools.islice(
        occurrences(s, datetime(2026, 11, 1, 0, 45, tzinfo=NEW_YORK)), 6))}  # fmt: skip
    assert gaps == {timedelta(minutes=30)}


def test_new_yorks_spring_gap_moves_a_fixed_time_to_the_change() -> None:
    s = schedule(cron="15 2 * * *", timezone="America/New_York")
    got = times(s, datetime(2026, 3, 7, 12, tzinfo=NEW_YORK), 2, NEW_YORK)
    assert got == ["2026-03-08T03:00:00-04:00", "2026-03-09T02:15:00-04:00"]


def test_six_fields_put_seconds_first() -> None:
    s = schedule(cron="*/5 * * * * *")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    assert [o.at.second for o in itertools.islice(occurrences(s, start), 4)] == [5, 10, 15, 20]


def test_an_interval_ticks_on_a_fixed_grid() -> None:
    s = schedule(every="90s")
    a = list(itertools.islice(occurrences(s, datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)), 3))
    b = list(itertools.islice(occurrences(s, datetime(2026, 1, 1, 0, 0, 59, tzinfo=UTC)), 3))
    assert a == b and [o.at.strftime("%M:%S") for o in a] == ["01:30", "03:00", "04:30"]


def test_jitter_and_spread_are_bounded_and_the_same_each_time() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    jittered = schedule(cron="0 * * * *", jitter="10m")
    spread = schedule(cron="0 * * * *", spread=True)
    for s, width in ((jittered, 600), (spread, 3600)):
        occs = list(itertools.islice(occurrences(s, start), 50))
        offsets = [(o.at - o.due).total_seconds() for o in occs]
        assert all(0 <= x < width for x in offsets)
        assert len(set(offsets)) > 40  # drawn per occurrence
        assert occs == list(itertools.islice(occurrences(s, start), 50))  # the plan is the act


@pytest.mark.parametrize(
    ("spec", "inside", "outside"),
    [
        ("2026-12-24", [date(2026, 12, 24)], [date(2026, 12, 23), date(2026, 12, 25)]),
        ("2026-12-20..2027-01-03", [date(2026, 12, 20), date(2027, 1, 3)], [date(2027, 1, 4)]),
        ("12-20..01-03", [date(2030, 12, 31), date(2031, 1, 2)], [date(2030, 12, 19)]),
        ("02-01..02-29", [date(2028, 2, 29)], [date(2028, 3, 1)]),
        ("FREQ=MONTHLY;BYDAY=-1FR", [date(2026, 12, 25), date(2027, 1, 29)],
         [date(2026, 12, 18), date(2027, 1, 22)]),
        ("RRULE:FREQ=WEEKLY;BYDAY=SA,SU", [date(2026, 12, 5), date(2026, 12, 6)],
         [date(2026, 12, 7)]),
    ],
)  # fmt: skip
def test_blackouts_cover_their_days(spec: str, inside: list[date], outside: list[date]) -> None:
    b = blackouts.parse(spec, "b")
    assert all(b.covers(d) for d in inside)
    assert not any(b.covers(d) for d in outside)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("2026-13-01", "not a date"),
        ("2027-01-03..2026-12-20", "ends before it starts"),
        ("13-01..01-03", "not a month and day"),
        ("every friday", "expected 2026-12-24"),
        ("FREQ=SOMETIMES", "not an RRULE"),
        ({"name": "x"}, "either dates or rule"),
    ],
)
def test_bad_blackouts_say_what_is_wrong(spec: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        blackouts.parse(spec, "blackouts[0]")


def test_a_range_of_times_holds_from_its_start_to_before_its_end() -> None:
    b = blackouts.parse("2026-12-06T14:00..2026-12-06T14:30", "b")
    at = datetime(2026, 12, 6, 14, tzinfo=BERLIN)
    assert b.holds(at, BERLIN) and b.holds(at + timedelta(minutes=29), BERLIN)
    assert not b.holds(at + timedelta(minutes=30), BERLIN)
    assert not b.holds(at, NEW_YORK)  # naive times are the schedule's zone's: 08:00 there
    utc = blackouts.parse("2026-12-06T13:00Z..2026-12-06T13:30Z", "b")
    assert utc.holds(at, NEW_YORK)  # 14:00 Berlin is 13:00 UTC, whatever the zone given
    with pytest.raises(ConfigError, match="offset on both ends"):
        blackouts.parse("2026-12-06T13:00Z..2026-12-06T13:30", "b")


def test_the_plan_skips_a_blackout_range_covering_the_next_two_occurrences() -> None:
    s = schedule(cron="0 12 * * *", timezone="Europe/Berlin",
                 blackouts=[{"name": "freeze", "dates": "2026-12-07..2026-12-08"}])  # fmt: skip
    got = plan(s, datetime(2026, 12, 6, 13, tzinfo=BERLIN), 3, {})
    assert [(o.at.astimezone(BERLIN).day, o.skip[:16]) for o in got] == [
        (7, "blackout freeze "),
        (8, "blackout freeze "),
        (9, ""),
    ]
    assert got[0].reason == "blackout"


def test_the_plan_applies_windows_the_daily_cap_pause_and_the_kill_switch() -> None:
    s = schedule(cron="0 * * * *", timezone="Europe/Berlin", **{"max-runs-per-day": 2})
    office = window.parse("mon-fri 10:00-16:00 Europe/Berlin")
    now = datetime(2026, 12, 7, 8, 30, tzinfo=BERLIN)  # a Monday
    got = plan(s, now, 8, {"e": office}, {"2026-12-07": 1})
    runs = [o.at.astimezone(BERLIN).hour for o in got if not o.skip]
    assert runs == [10]  # one already ran today: one more allowed, inside the window
    kinds = [o.reason for o in got]  # 09:00 .. 16:00
    assert kinds == ["window", "", *["max_runs"] * 5, "window"]
    paused = model.parse({**s.doc, "paused": True})
    assert {o.reason for o in plan(paused, now, 3, {})} == {"paused"}
    ks = plan(s, now, 2, {}, kill_switch="incident 42")
    assert ks[0].reason == "kill_switch" and "incident 42" in ks[0].skip


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"cron": "* * *"}, "schedule.cron"),
        ({"cron": "99 * * * *"}, "schedule.cron"),
        ({"cron": "* * * * *", "every": "1m"}, "schedule"),
        ({}, "schedule"),
        ({"every": "0s"}, "schedule.every"),
        ({"every": "1m", "timezone": "Mars/Olympus"}, "schedule.timezone"),
        ({"every": "1m", "blast-radius": "150%"}, "schedule.blast-radius"),
        ({"every": "1m", "concurrency": "sometimes"}, "schedule.concurrency"),
        ({"every": "1m", "jitter": "1m", "spread": True}, "schedule"),
        ({"every": "1m", "max-runs-per-day": 0}, "schedule.max-runs-per-day"),
        ({"every": "1m", "experiments": []}, "schedule.experiments"),
        ({"every": "1m", "blackouts": ["soon"]}, "schedule.blackouts[0]"),
        ({"every": "1m", "colour": "red"}, "schedule"),
        ({"every": "1m", "name": "Bad Name"}, "schedule.name"),
    ],
)
def test_bad_schedules_name_the_field(doc: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        model.parse({"name": "s", "experiments": ["e"], **doc})
    assert err.value.where == where, err.value


def test_a_rotation_runs_new_experiments_first_then_the_least_recent() -> None:
    names = ("a", "b", "c")
    assert picking.pick(names, {"a": "2026-01-02"}) == ("b", "never run by this schedule")
    last = {"a": "2026-01-03", "b": "2026-01-01", "c": "2026-01-02"}
    assert picking.pick(names, last)[0] == "b"
    assert picking.pick(("a",), {})[1] == "the schedule's only experiment"


@pytest.mark.parametrize(
    ("gates", "where"),
    [
        ({"alertmanager": {"url": "ftp://x"}}, "schedule.gates.alertmanager.url"),
        ({"alertmanager": {"url": "http://am:9093"}}, "schedule.gates.alertmanager.matchers"),
        ({"alertmanager": {"url": "http://am:9093", "matchers": ["sev critical"]}},
         "schedule.gates.alertmanager.matchers[0]"),
        ({"alertmanager": {"url": "http://am:9093", "matchers": ["env=~(prod"]}},
         "schedule.gates.alertmanager.matchers[0]"),
        ({"webhook": {"url": "http://veto", "timeout": "0s"}}, "schedule.gates.webhook.timeout"),
        ({"probes": [{"type": "probe", "name": "up",
                      "provider": {"type": "http", "url": "http://x"}}]},
         "schedule.gates.probes[0]"),
        ({"pager": {}}, "schedule.gates"),
    ],
)  # fmt: skip
def test_bad_gates_name_the_field(gates: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        schedule(every="1m", gates=gates)
    assert err.value.where == where, err.value


def test_gates_take_alertmanagers_matcher_syntax_and_merge_with_the_services() -> None:
    mine = schedule(
        every="1m",
        gates={
            "alertmanager": {
                "url": "http://am:9093/",
                "matchers": ["severity=critical", 'env=~"prod.*"', "team!=x"],
            }
        },
    )
    am = mine.gates.alertmanager
    assert am is not None and am.url == "http://am:9093"
    assert am.matchers == ('severity="critical"', 'env=~"prod.*"', 'team!="x"')
    service = schedule(every="1m", gates={"webhook": {"url": "http://veto/x"}}).gates
    both = mine.gates.merged(service)
    assert both.alertmanager == am and both.webhook == service.webhook and bool(both)


def test_an_exploration_share_of_picks_is_random_and_fixed_per_occurrence() -> None:
    names = ("a", "b", "c")
    last = {"a": "2026-01-03", "b": "2026-01-01", "c": "2026-01-02"}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    picks = []
    for k in range(2000):
        due = start + timedelta(minutes=k)
        draws = (draw("s", due, "explore"), draw("s", due, "which"))
        picks.append(picking.pick(names, last, 0.2, draws))
    explored = [name for name, why in picks if why.startswith("exploration")]
    assert 0.17 < len(explored) / len(picks) < 0.23
    assert min(explored.count(n) for n in names) > len(explored) / 3 * 0.7  # all three, evenly
    rest = {name for name, why in picks if not why.startswith("exploration")}
    assert rest == {"b"}  # otherwise the least recently run
    assert picking.pick(names, last, 0.0, (0.0, 0.9))[0] == "b"  # no exploration asked
