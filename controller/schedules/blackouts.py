"""Blackouts: when no scheduled run may start, whatever its trigger says.

Each is one of:
- a date, `2026-12-24`, or a range of dates, `2026-12-20..2027-01-03`
  (whole days, both ends included);
- a range of times, `2026-12-06T14:00..2026-12-06T18:30` (an incident, a
  maintenance; start included, end excluded; an offset may be given, else the
  schedule's time zone applies);
- a yearly range, `12-20..01-03` (every year; it may wrap the new year);
- a recurring rule of whole days, as an RFC 5545 RRULE (dateutil's rrule):
  `FREQ=MONTHLY;BYDAY=-1FR` (every last Friday), `FREQ=WEEKLY;BYDAY=SA,SU`.

Days are in the schedule's time zone. Each has an optional name, which is the
reason a skipped occurrence gives.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time
from zoneinfo import ZoneInfo

from dateutil.rrule import rrulestr

from controller.errors import ConfigError

_DATE = r"\d{4}-\d{2}-\d{2}"
_DAY = r"\d{2}-\d{2}"
DATE_RANGE = re.compile(rf"^({_DATE})(?:\s*\.\.\s*({_DATE}))?$")
_TIME = rf"{_DATE}T\d{{2}}:\d{{2}}(?::\d{{2}}(?:\.\d+)?)?(?:Z|[+-]\d{{2}}:\d{{2}})?"
TIME_RANGE = re.compile(rf"^({_TIME})\s*\.\.\s*({_TIME})$")
YEARLY = re.compile(rf"^({_DAY})\s*\.\.\s*({_DAY})$")
RRULE_START = datetime(2000, 1, 1)  # rules count whole days from here


@dataclass(frozen=True)
class Blackout:
    spec: str
    name: str
    first: date | None = None  # a date or a range
    last: date | None = None
    yearly: tuple[tuple[int, int], tuple[int, int]] | None = None  # (month, day) each
    rule: str = ""
    since: datetime | None = None  # a range of times: [since, until)
    until: datetime | None = None

    def holds(self, moment: datetime, tz: ZoneInfo) -> bool:
        """Whether moment (aware) is inside, days counted in tz."""
        if self.since is not None and self.until is not None:
            since, until = (
                t if t.tzinfo else t.replace(tzinfo=tz) for t in (self.since, self.until)
            )
            return since <= moment < until
        return self.covers(moment.astimezone(tz).date())

    def covers(self, day: date) -> bool:
        """Whether the whole day is inside (a range of times never covers one)."""
        if self.since is not None:
            return False
        if self.first is not None and self.last is not None:
            return self.first <= day <= self.last
        if self.yearly is not None:
            (m1, d1), (m2, d2) = self.yearly
            md = (day.month, day.day)
            if (m1, d1) <= (m2, d2):
                return (m1, d1) <= md <= (m2, d2)
            return md >= (m1, d1) or md <= (m2, d2)
        start = datetime.combine(day, time())
        return bool(rrulestr(self.rule, dtstart=RRULE_START).after(start, inc=True) == start)

    def reason(self) -> str:
        return f"blackout {self.name}" if self.name != self.spec else f"blackout {self.spec}"


def _date(text: str, where: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(where, f"{text!r} is not a date (YYYY-MM-DD)") from None


def _datetime(text: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(where, f"{text!r} is not a time (YYYY-MM-DDTHH:MM)") from None


def _month_day(text: str, where: str) -> tuple[int, int]:
    try:
        day = date.fromisoformat(f"2000-{text}")  # a leap year: 02-29 is a day
    except ValueError:
        raise ConfigError(where, f"{text!r} is not a month and day (MM-DD)") from None
    return day.month, day.day


def parse(raw: object, where: str) -> Blackout:
    """From a string, or {name, dates|rule} (dates: any of the string forms)."""
    name = ""
    if isinstance(raw, Mapping):
        unknown = set(raw) - {"name", "dates", "rule"}
        if unknown:
            raise ConfigError(where, f"unknown keys {sorted(unknown)}: use name, dates or rule")
        name = str(raw.get("name") or "")
        if ("dates" in raw) == ("rule" in raw):
            raise ConfigError(where, "give either dates or rule")
        raw = raw.get("dates") or f"RRULE:{raw.get('rule')}"
    if not isinstance(raw, str) or not raw.strip():
        raise ConfigError(where, f"expected a date, a range, MM-DD..MM-DD or a rule, got {raw!r}")
    spec = raw.strip()
    if m := DATE_RANGE.match(spec):
        first = _date(m[1], where)
        last = _date(m[2], where) if m[2] else first
        if last < first:
            raise ConfigError(where, f"{spec!r} ends before it starts")
        return Blackout(spec, name or spec, first=first, last=last)
    if m := TIME_RANGE.match(spec):
        since, until = (_datetime(t, where) for t in (m[1], m[2]))
        if (since.tzinfo is None) != (until.tzinfo is None):
            raise ConfigError(where, f"{spec!r}: give an offset on both ends or on neither")
        if until <= since:
            raise ConfigError(where, f"{spec!r} ends before it starts")
        return Blackout(spec, name or spec, since=since, until=until)
    if m := YEARLY.match(spec):
        yearly = (_month_day(m[1], where), _month_day(m[2], where))
        return Blackout(spec, name or spec, yearly=yearly)
    rule = spec.removeprefix("RRULE:")
    if not rule.upper().startswith("FREQ="):
        raise ConfigError(
            where,
            f"{spec!r}: expected 2026-12-24, 2026-12-20..2027-01-03, 12-20..01-03,"
            " 2026-12-06T14:00..2026-12-06T18:00 or an RRULE such as FREQ=MONTHLY;BYDAY=-1FR"
            " (every last Friday)",
        )
    try:
        rrulestr(rule, dtstart=RRULE_START)
    except (ValueError, TypeError) as exc:
        raise ConfigError(where, f"{rule!r} is not an RRULE: {exc}") from None
    return Blackout(spec, name or spec, rule=rule)


def parse_all(raw: object, where: str) -> tuple[Blackout, ...]:
    """A schedule's (or a monkey's) `blackouts:` list."""
    if not isinstance(raw, list):
        raise ConfigError(where, "expected a list")
    return tuple(parse(b, f"{where}[{i}]") for i, b in enumerate(raw))


def blocking(blackouts: tuple[Blackout, ...], moment: datetime, tz: ZoneInfo) -> Blackout | None:
    """The first blackout that holds at moment (days in tz), if any."""
    return next((b for b in blackouts if b.holds(moment, tz)), None)
