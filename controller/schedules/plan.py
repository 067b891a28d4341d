"""A schedule's occurrences and whether each would run: the same rules for
`brownout schedules next` (the plan) and the service's scheduler (the act),
on a clock the caller gives.

An occurrence is due at the trigger's time; it starts at that time plus its
offset (jitter, or a random point before the next occurrence with spread).
The offset is drawn from the schedule's name and the due time, so the plan
shows the time the scheduler will use. The static reasons to skip are
checked here, in order: paused, the kill switch, a blackout, no run window
open, the daily cap. The scheduler adds the ones only the moment knows
(a missed start, a run still going).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from controller.experiments.window import RunWindow
from controller.schedules import blackouts
from controller.schedules.model import Schedule

MAX_SCAN = 10_000  # occurrences looked at to find N, so a schedule that is always skipped ends


@dataclass(frozen=True)
class Occurrence:
    due: datetime  # the trigger's time (UTC); it names the occurrence
    at: datetime  # when it starts: due plus its offset
    skip: str = ""  # why it would not run; empty: it runs
    reason: str = ""  # the skip's kind, for metrics: paused, kill_switch, blackout, ...

    def as_dict(self, tz: ZoneInfo | None = None) -> dict[str, str]:
        """For people: times in tz (the schedule's), else UTC."""
        return {
            "due": self.due.astimezone(tz).isoformat() if tz else self.due.isoformat(),
            "at": self.at.astimezone(tz).isoformat() if tz else self.at.isoformat(),
            "runs": "no" if self.skip else "yes",
            "skip": self.skip,
        }


def draw(name: str, due: datetime, purpose: str = "") -> float:
    """A fraction in [0, 1) fixed by the schedule, the occurrence and what it is for."""
    digest = hashlib.sha256(f"{name}|{due.isoformat()}|{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def occurrences(schedule: Schedule, after: datetime) -> Iterator[Occurrence]:
    """Every occurrence due after `after`, with its start time (no skips yet)."""
    dues = schedule.trigger.after(after)
    current = next(dues)
    for following in dues:
        gap = (following - current).total_seconds()
        width = gap if schedule.spread else min(schedule.jitter, gap)
        offset = timedelta(seconds=draw(schedule.name, current) * width) if width else timedelta()
        yield Occurrence(current, current + offset)
        current = following


def static_skip(
    schedule: Schedule,
    at: datetime,
    windows: Mapping[str, RunWindow | None],
    kill_switch: str = "",
) -> tuple[str, str]:
    """(why, kind) if an occurrence starting at `at` must not run, else ("", "")."""
    if schedule.paused:
        return "the schedule is paused", "paused"
    if kill_switch:
        return f"the kill switch is engaged ({kill_switch})", "kill_switch"
    tz = ZoneInfo(schedule.timezone)
    if (b := blackouts.blocking(schedule.blackouts, at, tz)) is not None:
        return (
            f"{b.reason()} (at {at.astimezone(tz):%a %Y-%m-%d %H:%M:%S} {schedule.timezone})",
            "blackout",
        )
    open_ = [w is None or w.contains(at) for w in windows.values()]
    if open_ and not any(open_):
        shown = "; ".join(w.describe() for w in windows.values() if w is not None)
        return f"outside the run window ({shown})", "window"
    return "", ""


def local_day(schedule: Schedule, at: datetime) -> str:
    return at.astimezone(ZoneInfo(schedule.timezone)).date().isoformat()


def plan(
    schedule: Schedule,
    now: datetime,
    count: int,
    windows: Mapping[str, RunWindow | None],
    runs_per_day: Mapping[str, int] | None = None,
    kill_switch: str = "",
) -> list[Occurrence]:
    """The next `count` occurrences after now and whether each would run.
    runs_per_day: runs already started, by local day (YYYY-MM-DD)."""
    started = dict(runs_per_day or {})
    out: list[Occurrence] = []
    for occ in itertools.islice(occurrences(schedule, now), MAX_SCAN):
        if len(out) >= count:
            break
        why, kind = static_skip(schedule, occ.at, windows, kill_switch)
        day = local_day(schedule, occ.at)
        cap = schedule.max_runs_per_day
        if not why and cap is not None and started.get(day, 0) >= cap:
            why, kind = f"max-runs-per-day {cap} reached on {day}", "max_runs"
        if not why:
            started[day] = started.get(day, 0) + 1
        out.append(Occurrence(occ.due, occ.at, why, kind))
    return out
