"""Where the team stands on the practice's maturity model, from what the
controller itself recorded (plain facts passed in, on a given clock), and the
next step.

The levels, each one needing the ones below it:

1. experiments run (in CI or staging: any run that ended, outside production
   or not);
2. ad hoc production runs or game days: a run started by a person (not a
   schedule or a monkey) whose targets carried the production label, or a
   game day;
3. scheduled runs: a schedule started a run;
4. continuous small experiments: a monkey killed a member, or a rotation (a
   schedule over more than one experiment) started a run;
5. the practice at scale: the monkeys reached most of their groups (at least
   half of the groups they planned for had a kill), and a game day was held
   in every 30 days of the window.

Everything counts within the window (90 days by default). Organizational
parts (an on-call rotation, postmortems) cannot be seen from the history:
they are shown as the team declared them, never counted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

WINDOW_DAYS = 90
PERIOD_DAYS = 30  # level 5: a game day in every period of the window
MOST = 0.5  # level 5: the share of groups a monkey must reach


@dataclass(frozen=True)
class RunFact:
    run_id: str
    day: date
    status: str
    production: bool | None  # None: the run recorded no target labels
    source: str  # "person", "schedule:NAME", "rotation:NAME" or "monkey:NAME"


@dataclass(frozen=True)
class KillFact:
    monkey: str
    group: str
    day: date
    killed: bool


@dataclass(frozen=True)
class Facts:
    today: date
    runs: Sequence[RunFact]
    kills: Sequence[KillFact]
    gamedays: Sequence[date]  # held (recorded or declared)
    declared: Mapping[str, str] = field(default_factory=dict)  # shown, never counted
    days: int = WINDOW_DAYS


@dataclass(frozen=True)
class Level:
    number: int
    name: str
    met: bool
    evidence: list[str]
    next_step: str

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


NAMES = {
    1: "experiments in CI or staging",
    2: "ad hoc production runs and game days",
    3: "scheduled runs",
    4: "continuous small experiments (rotation or a monkey)",
    5: "the practice at scale",
}


def _span(days: Sequence[date]) -> str:
    return f"first {min(days).isoformat()}, last {max(days).isoformat()}" if days else "none"


def assess(f: Facts) -> dict[str, Any]:
    since = f.today - timedelta(days=f.days - 1)
    runs = [r for r in f.runs if r.day >= since]
    kills = [k for k in f.kills if k.day >= since]
    gamedays = sorted(d for d in f.gamedays if since <= d <= f.today)
    levels = [
        _level1(runs),
        _level2(runs, gamedays),
        _level3(runs),
        _level4(runs, kills),
        _level5(kills, gamedays, since, f.today),
    ]
    reached = 0
    for lv in levels:
        if not lv.met:
            break
        reached = lv.number
    nxt = next((lv for lv in levels if not lv.met), None)
    return {
        "level": reached,
        "name": NAMES.get(reached, "no experiments yet"),
        "since": since.isoformat(),
        "until": f.today.isoformat(),
        "next_step": nxt.next_step if nxt else "keep it up: every level is met",
        "levels": [lv.as_dict() for lv in levels],
        "declared": dict(f.declared),
    }


def _level1(runs: Sequence[RunFact]) -> Level:
    outside = [r.day for r in runs if r.production is not True]
    inside = [r.day for r in runs if r.production is True]
    evidence = [
        f"{len(runs)} run(s) ({_span([r.day for r in runs])})",
        f"{len(outside)} outside production, {len(inside)} in production",
    ]
    unknown = sum(1 for r in runs if r.production is None)
    if unknown:
        evidence.append(f"{unknown} recorded no target labels (counted outside production)")
    step = "run an experiment against a staging fleet, or in CI with `brownout run`"
    return Level(1, NAMES[1], bool(runs), evidence, step)


def _level2(runs: Sequence[RunFact], gamedays: Sequence[date]) -> Level:
    adhoc = [r.day for r in runs if r.production is True and r.source == "person"]
    evidence = [
        f"{len(adhoc)} ad hoc production run(s) ({_span(adhoc)})",
        f"{len(gamedays)} game day(s) ({_span(gamedays)})",
    ]
    return Level(2, NAMES[2], bool(adhoc or gamedays), evidence,
                 "run an experiment in production by hand, or hold a game day")  # fmt: skip


def _level3(runs: Sequence[RunFact]) -> Level:
    scheduled = [r for r in runs if r.source.startswith(("schedule:", "rotation:"))]
    names = sorted({r.source.split(":", 1)[1] for r in scheduled})
    evidence = [
        f"{len(scheduled)} scheduled run(s) ({_span([r.day for r in scheduled])})",
        f"schedules: {', '.join(names) or 'none'}",
    ]
    return Level(3, NAMES[3], bool(scheduled), evidence,
                 "schedule an experiment (`brownout schedules add`)")  # fmt: skip


def _level4(runs: Sequence[RunFact], kills: Sequence[KillFact]) -> Level:
    killed = [k for k in kills if k.killed]
    rotations = [r for r in runs if r.source.startswith("rotation:")]
    evidence = [
        f"{len(killed)} monkey kill(s) ({_span([k.day for k in killed])})"
        f" by {', '.join(sorted({k.monkey for k in killed})) or 'no monkey'}",
        f"{len(rotations)} rotation run(s) ({_span([r.day for r in rotations])})",
    ]
    return Level(4, NAMES[4], bool(killed or rotations), evidence,
                 "let a monkey loose on one group (`brownout monkey add`), or rotate"
                 " a schedule over several experiments")  # fmt: skip


def _level5(kills: Sequence[KillFact], gamedays: Sequence[date], since: date, today: date) -> Level:
    planned = {(k.monkey, k.group) for k in kills}
    reached = {(k.monkey, k.group) for k in kills if k.killed}
    share = len(reached) / len(planned) if planned else 0.0
    periods = []
    start = since
    while start <= today:
        end = min(start + timedelta(days=PERIOD_DAYS - 1), today)
        periods.append((start, end, any(start <= d <= end for d in gamedays)))
        start = end + timedelta(days=1)
    missing = [f"{a.isoformat()}..{b.isoformat()}" for a, b, held in periods if not held]
    evidence = [
        f"monkeys reached {len(reached)} of the {len(planned)} group(s) they planned for"
        f" ({share:.0%}; most means at least {MOST:.0%})",
        f"game days in {len(periods) - len(missing)} of {len(periods)} {PERIOD_DAYS}-day"
        f" period(s)" + (f"; none in {', '.join(missing)}" if missing else ""),
    ]
    met = bool(planned) and share >= MOST and not missing
    if not planned or share < MOST:
        step = "widen the monkeys' opt-in until they reach most of your groups"
    else:
        step = f"hold a game day every {PERIOD_DAYS} days"
    return Level(5, NAMES[5], met, evidence, step)
