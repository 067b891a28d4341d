"""A monkey, as people write it (YAML or JSON: the API, `brownout monkey`, or
a file the service loads): Chaos Monkey's random terminations, one member of
a group at a time, under the schedules' calendar and gates.

    name: web-monkey
    opt-in: brownout.io/monkey=enabled        # agents must match; no label, no kills
    group-by: app                             # the unit of every limit
    zone-label: zone                          # with regions: independent, a group per zone
    regions: independent                      # or together
    actions:                                  # one, or weighted (the seed's random pick);
                                              # ${label_KEY}: the victim's label KEY
      - {weight: 3, fault: process, arguments: {action: kill, comm: nginx, signal: KILL}}
      - {weight: 1, fault: process, arguments: {action: stop, comm: nginx}, duration: 30s}
    mean-work-days-between-kills: 2           # each group's daily chance is 1/mean
    min-work-days-between-kills: 1
    max-kills-per-day: 1                      # per group
    timezone: Europe/Berlin
    workdays: [mon, tue, wed, thu, fri]
    window: "10:00-16:00"                     # kill times are drawn inside it (HH:MM[:SS])
    planning-hour: "08:00"                    # the day's draw is made (and shown) then
    blackouts: ["12-20..01-03"]               # as schedules'
    exceptions: {groups: [payments], labels: ["tier=critical"]}
    max-down: 1                               # members of a group under a monkey fault at once
    probe: {type: probe, name: ok, provider: {type: http, url: ...}, tolerance: 200}
                                              # ${label_KEY}: the victim's label KEY
    probe-backoff: 10m                        # a group whose probe fails waits this long
    gates: {alertmanager: {url: ..., matchers: [severity=critical]}}
    paused: false
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time
from enum import StrEnum
from typing import Any

from controller.errors import ConfigError
from controller.experiments import fields, gates
from controller.experiments import parse as exp
from controller.experiments.gates import Gates
from controller.experiments.model import Activity, FaultProvider
from controller.experiments.selection import Selector, parse_selector
from controller.schedules import blackouts as bl
from controller.schedules.model import named_in_zone

KEYS = {
    "name", "opt-in", "group-by", "zone-label", "regions", "actions",
    "mean-work-days-between-kills", "min-work-days-between-kills", "max-kills-per-day",
    "timezone", "workdays", "window", "planning-hour", "blackouts", "exceptions", "max-down",
    "probe", "probe-backoff", "gates", "paused",
}  # fmt: skip
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")


class Regions(StrEnum):
    INDEPENDENT = "independent"  # a group per (zone, group-by value): zones counted apart
    TOGETHER = "together"  # a group per group-by value across zones


@dataclass(frozen=True)
class Action:
    weight: float
    provider: FaultProvider

    def describe(self) -> str:
        return self.provider.fault


@dataclass(frozen=True)
class Monkey:
    name: str
    opt_in: Selector
    group_by: str
    zone_label: str
    regions: Regions
    actions: tuple[Action, ...]
    mean_days: float  # work days between kills in a group, on average
    min_days: float  # work days at least between two kills in a group
    max_per_day: int
    timezone: str
    workdays: frozenset[int]  # Monday 0
    window: tuple[time, time]  # [start, end) local
    planning: time
    blackouts: tuple[bl.Blackout, ...]
    except_groups: frozenset[str]
    except_labels: tuple[Selector, ...]
    max_down: int
    probe: Activity | None
    probe_backoff: float
    paused: bool
    doc: Mapping[str, Any]
    gates: Gates = field(default_factory=Gates)

    def excepted(self, labels: Mapping[str, str]) -> bool:
        return any(s.matches(labels) for s in self.except_labels)

    def group_of(self, labels: Mapping[str, str]) -> str | None:
        """An opted-in agent's group: its group-by value (and zone, when zones
        are independent); None for an agent outside every group."""
        value = labels.get(self.group_by)
        if not value or not self.opt_in.matches(labels) or self.excepted(labels):
            return None
        if self.regions is Regions.INDEPENDENT and self.zone_label:
            return f"{labels.get(self.zone_label, '-')}/{value}"
        return value


def _clock(raw: object, where: str) -> time:
    m = CLOCK.match(str(raw).strip()) if isinstance(raw, str) else None
    if m is None:
        raise ConfigError(where, f"expected a time of day like 10:00 (or 10:00:30), got {raw!r}")
    return time(int(m.group(1)), int(m.group(2)), int(m.group(3) or 0))


def _window(raw: object, where: str) -> tuple[time, time]:
    if not isinstance(raw, str) or raw.count("-") != 1:
        raise ConfigError(where, f"expected HH:MM-HH:MM, got {raw!r}")
    start, end = (_clock(p, where) for p in raw.split("-"))
    if end <= start:
        raise ConfigError(where, f"the window must end after it starts, got {raw!r}")
    return start, end


def _number(doc: Mapping[str, Any], key: str, where: str, default: float, low: float) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value < low:
        raise ConfigError(f"{where}.{key}", f"expected a number >= {low:g}, got {value!r}")
    return float(value)


def _actions(raw: object, where: str) -> tuple[Action, ...]:
    if not isinstance(raw, list) or not raw:
        raise ConfigError(where, "give a list of one or more actions (fault, arguments, weight)")
    out = []
    for i, item in enumerate(raw):
        at = f"{where}[{i}]"
        doc = dict(fields.mapping(item, at))
        weight = _number(doc, "weight", at, 1.0, 0.0)
        doc.pop("weight", None)
        if weight <= 0:
            raise ConfigError(f"{at}.weight", "must be more than 0")
        # Checked with every ${label_KEY} standing for a label's value.
        out.append(Action(weight, exp.fault_provider(fields.substitute(doc, _AnyLabel()), at)))
    return tuple(out)


def label_values(labels: Mapping[str, str]) -> dict[str, str]:
    """An agent's labels as ${label_KEY} values (KEY's other characters as _)."""
    return {"label_" + re.sub(r"\W", "_", k): v for k, v in labels.items()}


class _AnyLabel(dict[str, str]):
    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.startswith("label_")

    def __getitem__(self, key: str) -> str:
        return "0"  # passes for a port, a regex or a name alike


def _workdays(raw: object, where: str) -> frozenset[int]:
    if not isinstance(raw, list) or not raw or not all(isinstance(d, str) for d in raw):
        raise ConfigError(where, f"expected a list of days ({', '.join(DAYS)})")
    days = set()
    for d in raw:
        if d.lower()[:3] not in DAYS:
            raise ConfigError(where, f"{d!r} is not a day ({', '.join(DAYS)})")
        days.add(DAYS.index(d.lower()[:3]))
    return frozenset(days)


def _exceptions(raw: object, where: str) -> tuple[frozenset[str], tuple[Selector, ...]]:
    doc = fields.mapping(raw or {}, where)
    fields.no_unknown(doc, {"groups", "labels"}, where)
    groups, labels = doc.get("groups", []), doc.get("labels", [])
    if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
        raise ConfigError(f"{where}.groups", "expected a list of group names")
    if not isinstance(labels, list):
        raise ConfigError(f"{where}.labels", "expected a list of label selectors")
    selectors = tuple(parse_selector(s, f"{where}.labels[{i}]") for i, s in enumerate(labels))
    return frozenset(groups), selectors


def parse(raw: object, where: str = "monkey") -> Monkey:
    doc = fields.mapping(raw, where)
    fields.no_unknown(doc, KEYS, where)
    name, tz = named_in_zone(doc, where)
    if not doc.get("opt-in"):
        raise ConfigError(f"{where}.opt-in", "a label selector is required: no label, no kills")
    opt_in = parse_selector(doc["opt-in"], f"{where}.opt-in")
    try:
        regions = Regions(str(doc.get("regions", "independent")).lower())
    except ValueError:
        raise ConfigError(f"{where}.regions", "use independent or together") from None
    mean = _number(doc, "mean-work-days-between-kills", where, 5.0, 1.0)
    least = _number(doc, "min-work-days-between-kills", where, 1.0, 0.0)
    if least > mean:
        raise ConfigError(where, "min-work-days-between-kills is more than the mean")
    except_groups, except_labels = _exceptions(doc.get("exceptions"), f"{where}.exceptions")
    paused = doc.get("paused", False)
    if not isinstance(paused, bool):
        raise ConfigError(f"{where}.paused", f"expected true or false, got {paused!r}")
    max_down = int(_number(doc, "max-down", where, 1, 1))
    max_per_day = int(_number(doc, "max-kills-per-day", where, 1, 1))
    return Monkey(
        name=name,
        opt_in=opt_in,
        group_by=fields.string(doc, "group-by", where),
        zone_label=fields.string(doc, "zone-label", where, required=False),
        regions=regions,
        actions=_actions(doc.get("actions"), f"{where}.actions"),
        mean_days=mean,
        min_days=least,
        max_per_day=max_per_day,
        timezone=tz,
        workdays=_workdays(doc.get("workdays", list(DAYS[:5])), f"{where}.workdays"),
        window=_window(doc.get("window", "10:00-16:00"), f"{where}.window"),
        planning=_clock(doc.get("planning-hour", "08:00"), f"{where}.planning-hour"),
        blackouts=bl.parse_all(doc.get("blackouts", []), f"{where}.blackouts"),
        except_groups=except_groups,
        except_labels=except_labels,
        max_down=max_down,
        probe=(
            exp.probe(fields.substitute(doc["probe"], _AnyLabel()), f"{where}.probe")
            if doc.get("probe")
            else None
        ),
        probe_backoff=fields.duration(doc.get("probe-backoff", "10m"), f"{where}.probe-backoff"),
        paused=paused,
        doc=dict(doc),
        gates=gates.parse(doc["gates"], f"{where}.gates") if doc.get("gates") else Gates(),
    )
