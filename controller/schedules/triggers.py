"""When a schedule is due: a cron expression in a named time zone (croniter),
or a fixed interval.

Cron takes 5 fields (minute first) or 6 with seconds first, as Chaos Mesh
and Quartz write them. Daylight saving follows Vixie cron: a time the clocks
skip fires right after the change; a fixed time the clocks repeat fires once
(its first occurrence), while an expression whose hour field is a wildcard
or step keeps firing in real time through the repeated hour.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter

from controller.errors import ConfigError


def zone(name: str, where: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(where, f"unknown time zone {name!r} (e.g. Europe/Berlin, UTC)") from None


@dataclass(frozen=True)
class Cron:
    expression: str
    timezone: str = "UTC"

    @classmethod
    def parse(cls, expression: str, timezone: str, where: str) -> Cron:
        fields = expression.split()
        if len(fields) not in (5, 6):
            raise ConfigError(
                where,
                f"{expression!r} has {len(fields)} fields: give 5 (minute hour day month"
                " weekday) or 6 (seconds first)",
            )
        zone(timezone, f"{where}.timezone")
        cron = cls(" ".join(fields), timezone)
        try:
            cron._iter(datetime.now(UTC))
        except (CroniterError, ValueError, KeyError) as exc:
            raise ConfigError(where, f"{expression!r} is not a cron expression: {exc}") from None
        return cron

    @property
    def seconds(self) -> bool:
        return len(self.expression.split()) == 6

    def _iter(self, after: datetime) -> croniter:
        local = after.astimezone(ZoneInfo(self.timezone))
        return croniter(self.expression, local, second_at_beginning=self.seconds)

    @property
    def _fixed_hour(self) -> bool:
        hour = self.expression.split()[2 if self.seconds else 1]
        return "*" not in hour and "/" not in hour

    def after(self, moment: datetime) -> Iterator[datetime]:
        """The occurrences strictly after moment (aware), in order, as UTC."""
        it = self._iter(moment)
        previous: datetime | None = None
        while True:
            nxt: datetime = it.get_next(datetime)
            wall = nxt.replace(tzinfo=None)
            if self._fixed_hour and previous is not None and wall == previous:
                continue  # the repeated hour of a DST fall-back: a fixed time fires once
            previous = wall
            yield nxt.astimezone(UTC)

    def describe(self) -> str:
        return f"cron '{self.expression}' {self.timezone}"


@dataclass(frozen=True)
class Interval:
    seconds: float
    anchor: datetime  # occurrences are anchor + k * seconds

    def after(self, moment: datetime) -> Iterator[datetime]:
        step = timedelta(seconds=self.seconds)
        k = max(0, int((moment - self.anchor) / step) + 1)
        t = self.anchor + k * step
        while t <= moment:
            t += step
        while True:
            yield t
            t += step

    def describe(self) -> str:
        return f"every {self.seconds:g}s"


Trigger = Cron | Interval
