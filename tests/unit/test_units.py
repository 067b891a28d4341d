"""Human unit parsing used by the CLI and the agent's flags."""

from __future__ import annotations

import pytest

from brownout.units import (
    format_duration,
    from_duration,
    parse_duration,
    parse_percent,
    parse_size,
    to_duration,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), ("2.5", 2.5), ("0", 0)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["nan", "inf", "-1", "-5s", "5x", "", "s", "1s2"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "size"),
    [("1GiB", 1 << 30), ("512MiB", 512 << 20), ("100MB", 100_000_000), ("4KiB", 4096), ("7", 7)],
)
def test_sizes(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["-1GiB", "1 parsecs", "GiB", "nan"])
def test_bad_sizes(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


def test_percents() -> None:
    assert parse_percent("30%") == 30
    for bad in ("101", "-1", "nan", "x%"):
        with pytest.raises(ValueError, match="percent"):
            parse_percent(bad)


def test_format_duration() -> None:
    assert format_duration(3600) == "1h"
    assert format_duration(90) == "90s"
    assert format_duration(120) == "2m"


@pytest.mark.parametrize(
    ("seconds", "nanos"),
    [(0.0, 0), (1.5, 1_500_000_000), (0.1, 100_000_000), (2.9999999996, 3_000_000_000),
     (1e-9, 1), (0.4e-9, 0), (0.6e-9, 1), (-1.25, -1_250_000_000)],
)  # fmt: skip
def test_to_duration_rounds_to_the_nearest_nanosecond(seconds: float, nanos: int) -> None:
    d = to_duration(seconds)
    assert d.ToNanoseconds() == nanos
    assert abs(from_duration(d) - nanos / 1e9) < 1e-12
