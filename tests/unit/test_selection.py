"""Selection: label selectors, ALL/COUNT/PERCENT, the seeded pick, the cap, the ramp."""

from __future__ import annotations

import pytest

from controller.errors import ConfigError
from controller.experiments.selection import (
    parse_mode,
    parse_selector,
    percent_of,
    ramp_counts,
    select,
)

pytestmark = pytest.mark.unit

FLEET = [f"10.0.0.{i}:7070" for i in range(1, 21)]


@pytest.mark.parametrize(
    ("selector", "labels", "ok"),
    [
        ("role=web", {"role": "web"}, True),
        ("role==web", {"role": "db"}, False),
        ("role!=db", {}, True),  # != matches a missing key, as in Kubernetes
        ("zone in (a, b),role=web", {"zone": "b", "role": "web"}, True),
        ("zone notin (a,b)", {"zone": "a"}, False),
        ("canary", {"canary": ""}, True),
        ("!canary", {"canary": "yes"}, False),
        ("app.kubernetes.io/name=brownout", {"app.kubernetes.io/name": "brownout"}, True),
        ("", {"anything": "x"}, True),
    ],
)
def test_selector(selector: str, labels: dict[str, str], ok: bool) -> None:
    assert parse_selector(selector).matches(labels) is ok


def test_selector_as_mapping_and_errors() -> None:
    assert parse_selector({"role": "web"}).matches({"role": "web", "x": "y"})
    with pytest.raises(ConfigError, match="cannot parse"):
        parse_selector("role=(web")
    with pytest.raises(ConfigError, match="lists no values"):
        parse_selector("zone in ()")


@pytest.mark.parametrize(
    ("text", "n", "count"),
    [
        ("ALL", 20, 20),
        ("count(3)", 20, 3),
        ("COUNT(50)", 20, 20),
        ("PERCENT(25)", 20, 5),
        ("PERCENT(1)", 20, 1),
        ("PERCENT(10%)", 30, 3),
        ("PERCENT(34)", 3, 1),
    ],
)
def test_modes(text: str, n: int, count: int) -> None:
    assert parse_mode(text).count(n) == count


@pytest.mark.parametrize(
    "text", ["SOME", "COUNT", "COUNT(0)", "COUNT(1.5)", "PERCENT(0)", "PERCENT(101)", "ALL(3)"]
)
def test_bad_modes(text: str) -> None:
    with pytest.raises(ConfigError):
        parse_mode(text, "targets.mode")


def test_percent_rounds_down_but_keeps_one() -> None:
    assert [percent_of(p, 5) for p in (1, 5, 10, 25, 50, 100)] == [1, 1, 1, 1, 2, 5]
    assert percent_of(0, 5) == 0
    assert ramp_counts([1, 5, 10, 25, 50], 100) == [1, 5, 10, 25, 50]
    assert ramp_counts([1, 5, 10, 25, 50], 10) == [1, 1, 1, 2, 5]


def test_the_pick_is_reproducible_from_its_seed_and_order_is_the_ramp_order() -> None:
    a = select(FLEET, parse_mode("COUNT(5)"), seed=42, fleet_size=20)
    b = select(list(reversed(FLEET)), parse_mode("COUNT(5)"), seed=42, fleet_size=20)
    c = select(FLEET, parse_mode("COUNT(5)"), seed=43, fleet_size=20)
    assert a.targets == b.targets  # input order does not matter, only the seed
    assert a.targets != c.targets
    assert len(set(a.targets)) == 5 and set(a.targets) <= set(FLEET)
    everyone = select(FLEET, parse_mode("ALL"), seed=42, fleet_size=20)
    assert everyone.targets[:5] == a.targets  # a larger pick extends a smaller one
    assert a.as_dict()["seed"] == 42


def test_fleet_wide_cap_limits_the_fraction_affected() -> None:
    s = select(FLEET[:10], parse_mode("ALL"), seed=1, fleet_size=20, max_fleet_percent=25)
    assert len(s.targets) == 5 and s.capped
    s = select(FLEET[:4], parse_mode("ALL"), seed=1, fleet_size=20, max_fleet_percent=25)
    assert len(s.targets) == 4 and not s.capped
