"""Run windows in a named time zone, across DST, overnight, and their errors."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controller.errors import ConfigError
from controller.experiments import window

pytestmark = pytest.mark.unit


def utc(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def test_weekday_hours_in_berlin_follow_daylight_saving() -> None:
    w = window.parse(
        {"timezone": "Europe/Berlin", "days": "weekdays", "start": "10:00", "end": "16:00"}
    )
    # Wed 2026-01-14: CET (UTC+1). 09:30 UTC is 10:30 local.
    assert w.contains(utc(2026, 1, 14, 9, 30))
    assert not w.contains(utc(2026, 1, 14, 8, 59))
    # Wed 2026-07-15: CEST (UTC+2). 08:30 UTC is 10:30 local, 14:00 UTC is 16:00 (closed).
    assert w.contains(utc(2026, 7, 15, 8, 30))
    assert not w.contains(utc(2026, 7, 15, 14, 0))
    # Saturday
    assert not w.contains(utc(2026, 7, 18, 10, 0))


def test_compact_form_and_next_opening() -> None:
    w = window.parse("mon-fri 10:00-16:00 America/New_York")
    assert w.describe() == "mon,tue,wed,thu,fri 10:00-16:00 America/New_York"
    # Friday 2026-07-17 20:00 New York -> next opening Monday 10:00 local.
    opening = w.next_opening(utc(2026, 7, 18, 0, 0))
    assert (opening.weekday(), opening.hour, opening.minute) == (0, 10, 0)
    assert opening.tzinfo is not None and str(opening.tzinfo) == "America/New_York"


def test_overnight_window_belongs_to_the_day_it_opens() -> None:
    w = window.parse({"timezone": "UTC", "days": ["fri"], "start": "22:00", "end": "02:00"})
    assert w.contains(utc(2026, 7, 17, 23, 0))  # Friday night
    assert w.contains(utc(2026, 7, 18, 1, 0))  # early Saturday, still Friday's window
    assert not w.contains(utc(2026, 7, 18, 23, 0))  # Saturday night


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"days": "mon", "start": "10:00", "end": "11:00"}, "time zone is required"),
        ({"timezone": "Mars/Olympus", "start": "10:00"}, "unknown time zone"),
        ({"timezone": "UTC", "days": "funday"}, "unknown day"),
        ({"timezone": "UTC", "start": "25:00"}, "hh:mm"),
        ({"timezone": "UTC", "hours": "9-5"}, "unknown keys"),
        ("sometimes", "expected e.g."),
    ],
)
def test_invalid_windows(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        window.parse(raw)
