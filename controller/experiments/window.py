"""Run windows: experiments start only on given weekdays between two local times.

The window is in a named time zone so that "10:00-16:00 Europe/Berlin" means
the same hours across daylight-saving changes. A window whose end is before
its start runs overnight and belongs to the day it opens on.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from controller.errors import ConfigError

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_ALIASES = {
    "weekdays": "mon-fri",
    "weekends": "sat-sun",
    "daily": "mon-sun",
    "everyday": "mon-sun",
}
_COMPACT = re.compile(
    r"^\s*(?P<days>\S+)\s+(?P<start>\d{1,2}:\d{2})\s*-\s*(?P<end>\d{1,2}:\d{2})"
    r"\s+(?P<tz>\S+)\s*$"
)


class WindowClosed(Exception):
    """A run may not start: it is outside its run window."""


@dataclass(frozen=True)
class RunWindow:
    timezone: str
    days: frozenset[int]
    start: time
    end: time

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def contains(self, now: datetime) -> bool:
        """Whether an aware datetime falls inside the window."""
        local = now.astimezone(self.zone)
        t, day = local.time().replace(tzinfo=None), local.weekday()
        if self.start < self.end:
            return day in self.days and self.start <= t < self.end
        if self.start == self.end:  # whole days
            return day in self.days
        return (day in self.days and t >= self.start) or (
            (day - 1) % 7 in self.days and t < self.end
        )

    def next_opening(self, now: datetime) -> datetime:
        """The next time the window opens at or after now (aware, in the window's zone)."""
        local = now.astimezone(self.zone)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            if day.weekday() not in self.days:
                continue
            opening = datetime.combine(day, self.start, tzinfo=self.zone)
            if opening >= local:
                return opening
        raise AssertionError("a window with at least one day opens within a week")

    def describe(self) -> str:
        days = ",".join(DAYS[d] for d in sorted(self.days))
        return f"{days} {self.start:%H:%M}-{self.end:%H:%M} {self.timezone}"


def _parse_days(raw: object, where: str) -> frozenset[int]:
    items: list[str]
    if isinstance(raw, str):
        items = [p.strip() for p in raw.split(",")]
    elif isinstance(raw, list) and all(isinstance(x, str) for x in raw):
        items = [str(x).strip() for x in raw]
    else:
        raise ConfigError(where, f"expected day names like mon-fri or [mon, wed], got {raw!r}")
    days: set[int] = set()
    for item in items:
        item = _ALIASES.get(item.lower(), item.lower())
        first, sep, last = item.partition("-")
        try:
            a = DAYS.index(first[:3])
            b = DAYS.index(last[:3]) if sep else a
        except ValueError:
            raise ConfigError(
                where, f"unknown day {item!r}: use mon..sun, weekdays, weekends or daily"
            ) from None
        days.update(range(a, b + 1) if a <= b else [*range(a, 7), *range(0, b + 1)])
    if not days:
        raise ConfigError(where, "no days given")
    return frozenset(days)


def _parse_time(raw: object, where: str) -> time:
    try:
        hh, mm = str(raw).split(":")
        return time(int(hh), int(mm))
    except ValueError:
        raise ConfigError(where, f"expected hh:mm, got {raw!r}") from None


def _zone(raw: object, where: str) -> str:
    if not isinstance(raw, str) or not raw:
        raise ConfigError(where, "a named time zone is required, e.g. Europe/Berlin or UTC")
    try:
        ZoneInfo(raw)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(where, f"unknown time zone {raw!r}") from None
    return raw


def parse(raw: object, where: str = "run-window") -> RunWindow:
    """From {timezone, days, start, end} or the compact 'mon-fri 10:00-16:00 Europe/Berlin'."""
    if isinstance(raw, str):
        m = _COMPACT.match(raw)
        if m is None:
            raise ConfigError(
                where, f"expected e.g. 'mon-fri 10:00-16:00 Europe/Berlin', got {raw!r}"
            )
        raw = {"days": m["days"], "start": m["start"], "end": m["end"], "timezone": m["tz"]}
    if not isinstance(raw, Mapping):
        raise ConfigError(where, "expected a mapping with timezone, days, start and end")
    unknown = set(raw) - {"timezone", "days", "start", "end"}
    if unknown:
        raise ConfigError(where, f"unknown keys {sorted(unknown)}")
    return RunWindow(
        timezone=_zone(raw.get("timezone"), f"{where}.timezone"),
        days=_parse_days(raw.get("days", "daily"), f"{where}.days"),
        start=_parse_time(raw.get("start", "00:00"), f"{where}.start"),
        end=_parse_time(raw.get("end", "00:00"), f"{where}.end"),
    )
