"""A monkey's day: which groups lose a member, and when. The same code draws
the plan at the planning hour (the service), prints it (`brownout monkey
plan --day DATE`) and replays thirty days in a test, on a clock the caller
gives.

As Netflix's chaosmonkey: on a workday outside every blackout, each group
gets a kill with probability 1/mean (mean work days between kills), unless
its last kill is fewer than `min` work days ago. As kube-monkey: the kill
times are drawn at random inside the day's window. Every draw is a hash of
the monkey, the day, the group and what it is for, so a restarted
controller draws the same plan, and each slot has a stable key that the
tracker claims once (a slot is never killed twice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from controller.monkey.model import Monkey
from controller.schedules import blackouts
from controller.schedules.plan import draw


@dataclass(frozen=True)
class Slot:
    monkey: str
    day: date
    group: str
    index: int  # the group's n-th kill of the day
    at: datetime  # UTC
    action: int  # which of the monkey's actions

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}/{self.group}/{self.index}"


@dataclass(frozen=True)
class GroupDay:
    group: str
    members: tuple[str, ...]
    slots: tuple[Slot, ...] = ()
    why_not: str = ""  # why no kill is planned for the group today

    def as_dict(self, tz: ZoneInfo) -> dict[str, object]:
        return {
            "group": self.group,
            "members": list(self.members),
            "kills": [
                {"slot": s.key, "at": s.at.astimezone(tz).isoformat(), "action": s.action}
                for s in self.slots
            ],
            "why_not": self.why_not,
        }


@dataclass
class DayPlan:
    day: date
    closed: str  # why the whole day has no kills (not a workday, a blackout), or ''
    groups: list[GroupDay] = field(default_factory=list)

    @property
    def slots(self) -> list[Slot]:
        return sorted((s for g in self.groups for s in g.slots), key=lambda s: s.at)


def _at(day: date, clock: time, tz: ZoneInfo) -> datetime:
    return datetime.combine(day, clock, tz).astimezone(ZoneInfo("UTC"))


def closed(m: Monkey, day: date) -> str:
    """Why the monkey does not kill on that day at all, or ''."""
    if day.weekday() not in m.workdays:
        return f"{day:%A} is not a workday"
    tz = ZoneInfo(m.timezone)
    for b in m.blackouts:
        if b.covers(day) or b.holds(_at(day, m.window[0], tz), tz):
            return b.reason()
    return ""


def work_days_between(m: Monkey, since: date, day: date) -> int:
    """Work days after `since` up to and including `day`, blackouts left out."""
    n, d = 0, since
    while d < day:
        d += timedelta(days=1)
        n += not closed(m, d)
    return n


def plan_day(
    m: Monkey, day: date, groups: Mapping[str, tuple[str, ...]], last_kill: Mapping[str, date]
) -> DayPlan:
    """The day's draw for each group (group -> its members' addresses), given
    each group's last kill day."""
    tz = ZoneInfo(m.timezone)
    plan = DayPlan(day, "paused" if m.paused else closed(m, day))
    midnight = datetime.combine(day, time(), tz)
    start, end = _at(day, m.window[0], tz), _at(day, m.window[1], tz)
    weights = [a.weight for a in m.actions]
    for group in sorted(groups):
        members = groups[group]
        why = _why_not(m, plan.closed, group, members, last_kill.get(group), day)
        if why:
            plan.groups.append(GroupDay(group, members, why_not=why))
            continue
        slots = []
        for i in range(m.max_per_day):
            if draw(m.name, midnight, f"{group}|kill{i}") >= 1 / m.mean_days:
                break
            at = start + (end - start) * draw(m.name, midnight, f"{group}|time{i}")
            action = _weighted(weights, draw(m.name, midnight, f"{group}|action{i}"))
            slots.append(Slot(m.name, day, group, i, at.replace(microsecond=0), action))
        if slots:
            plan.groups.append(GroupDay(group, members, tuple(sorted(slots, key=lambda s: s.at))))
        else:
            why = f"drawn no kill today ({100 / m.mean_days:.0f}% a work day)"
            plan.groups.append(GroupDay(group, members, why_not=why))
    return plan


def _weighted(weights: list[float], r: float) -> int:
    """The index r (in [0, 1)) falls on, each index as wide as its weight."""
    left = r * sum(weights)
    for i, w in enumerate(weights):
        left -= w
        if left < 0:
            return i
    return len(weights) - 1


def _why_not(
    m: Monkey, day_closed: str, group: str, members: tuple[str, ...], last: date | None, day: date
) -> str:
    if group in m.except_groups or group.rpartition("/")[2] in m.except_groups:
        return "an exception"
    if day_closed:
        return day_closed
    if len(members) < 2:
        return f"{len(members)} member(s): a group is never left without a healthy member"
    if last is not None and work_days_between(m, last, day) < m.min_days:
        return f"its last kill was on {last.isoformat()}, fewer than {m.min_days:g} work day(s) ago"
    return ""


def in_window(m: Monkey, moment: datetime) -> bool:
    tz = ZoneInfo(m.timezone)
    local = moment.astimezone(tz)
    return m.window[0] <= local.time() < m.window[1] and not closed(m, local.date())


def blocked_by_blackout(m: Monkey, moment: datetime) -> str:
    tz = ZoneInfo(m.timezone)
    b = blackouts.blocking(m.blackouts, moment, tz)
    return b.reason() if b else ""
