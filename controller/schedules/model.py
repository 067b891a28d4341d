"""A schedule, as people write it (YAML or JSON, through the API, the CLI or a
file the service loads) and as the store keeps it (`doc`, the mapping it was
parsed from, so it round-trips).

    name: web-latency-small
    experiments: [web-latency]        # stored experiment names; more than one rotates
    cron: "*/30 * * * *"              # or `every: 30m`
    timezone: Europe/Berlin
    blast-radius: 5%                  # the cap on this schedule's runs
    exploration: 20%                  # with several experiments: random picks among them
    jitter: 2m                        # or `spread: true`: anywhere before the next one
    max-runs-per-day: 10
    concurrency: forbid               # forbid | allow | replace
    starting-deadline: 5m             # a run missed by more (controller down) is skipped
    history-limit: 100
    blackouts: ["12-20..01-03", {name: last Friday, rule: "FREQ=MONTHLY;BYDAY=-1FR"}]
    gates: {alertmanager: {url: http://alertmanager:9093, matchers: [severity=critical]}}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from brownout.units import parse_percent
from controller.errors import ConfigError
from controller.experiments import fields, gates
from controller.experiments.gates import Gates
from controller.schedules import blackouts as bl
from controller.schedules.triggers import Cron, Interval, Trigger, zone

NAME = re.compile(r"^[a-z0-9]([a-z0-9._-]{0,61}[a-z0-9])?$")
KEYS = {
    "name", "experiments", "cron", "every", "timezone", "blast-radius", "jitter", "spread",
    "max-runs-per-day", "concurrency", "starting-deadline", "history-limit", "blackouts",
    "paused", "gates", "exploration",
}  # fmt: skip
DEFAULT_DEADLINE = 300.0
DEFAULT_HISTORY = 100
INTERVAL_ANCHOR = datetime(2000, 1, 1, tzinfo=UTC)  # intervals tick on a fixed grid


class Concurrency(StrEnum):
    FORBID = "forbid"  # skip an occurrence while the previous run goes on
    ALLOW = "allow"  # start it anyway, side by side
    REPLACE = "replace"  # abort the previous run (it reverts), then start


@dataclass(frozen=True)
class Schedule:
    name: str
    experiments: tuple[str, ...]
    trigger: Trigger
    timezone: str
    blast_radius: float | None  # percent of the fleet at most, None: the experiment's own
    jitter: float  # seconds, a random delay in [0, jitter)
    spread: bool  # a random time between this occurrence and the next
    max_runs_per_day: int | None
    concurrency: Concurrency
    starting_deadline: float
    history_limit: int
    blackouts: tuple[bl.Blackout, ...]
    paused: bool
    doc: Mapping[str, Any]
    gates: Gates = field(default_factory=Gates)
    exploration: float = 0.0  # the share of random picks among several experiments

    def describe(self) -> str:
        return self.trigger.describe()


def _int(raw: Mapping[str, Any], key: str, where: str, low: int) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{where}.{key}", f"expected a whole number >= {low}, got {value!r}")
    return value


def _experiments(raw: object, where: str) -> tuple[str, ...]:
    names = [raw] if isinstance(raw, str) else raw
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise ConfigError(where, "name one stored experiment, or a list of them")
    if len(set(names)) != len(names):
        raise ConfigError(where, "an experiment is listed twice")
    return tuple(names)


def named_in_zone(doc: Mapping[str, Any], where: str) -> tuple[str, str]:
    """The name and time zone of a schedule (or a monkey), checked."""
    name = fields.string(doc, "name", where)
    if not NAME.match(name):
        raise ConfigError(
            f"{where}.name", f"{name!r}: lower-case letters, digits, '.', '_', '-' (1-63)"
        )
    tz = doc.get("timezone", "UTC")
    if not isinstance(tz, str):
        raise ConfigError(f"{where}.timezone", f"expected a zone name, got {tz!r}")
    zone(tz, f"{where}.timezone")
    return name, tz


def parse(raw: object, where: str = "schedule") -> Schedule:
    doc = fields.mapping(raw, where)
    fields.no_unknown(doc, KEYS, where)
    name, tz = named_in_zone(doc, where)
    trigger: Trigger
    if ("cron" in doc) == ("every" in doc):
        raise ConfigError(where, "give either cron (5 or 6 fields) or every (an interval)")
    if "cron" in doc:
        if not isinstance(doc["cron"], str):
            raise ConfigError(f"{where}.cron", f"expected a string, got {doc['cron']!r}")
        trigger = Cron.parse(doc["cron"], tz, f"{where}.cron")
    else:
        every = fields.duration(doc["every"], f"{where}.every", allow_zero=False)
        trigger = Interval(every, INTERVAL_ANCHOR)
    radius = None
    if doc.get("blast-radius") is not None:
        try:
            radius = parse_percent(str(doc["blast-radius"]))
        except ValueError as exc:
            raise ConfigError(f"{where}.blast-radius", str(exc)) from None
        if not 0 < radius <= 100:
            raise ConfigError(f"{where}.blast-radius", f"must be in (0, 100] %, got {radius:g}")
    spread = doc.get("spread", False)
    paused = doc.get("paused", False)
    for key, value in (("spread", spread), ("paused", paused)):
        if not isinstance(value, bool):
            raise ConfigError(f"{where}.{key}", f"expected true or false, got {value!r}")
    jitter = fields.duration(doc.get("jitter", 0), f"{where}.jitter")
    if spread and jitter:
        raise ConfigError(where, "give jitter or spread, not both")
    try:
        concurrency = Concurrency(str(doc.get("concurrency", "forbid")).lower())
    except ValueError:
        raise ConfigError(
            f"{where}.concurrency", f"{doc['concurrency']!r}: use forbid, allow or replace"
        ) from None
    return Schedule(
        name=name,
        experiments=_experiments(doc.get("experiments"), f"{where}.experiments"),
        trigger=trigger,
        timezone=tz,
        blast_radius=radius,
        jitter=jitter,
        spread=spread,
        max_runs_per_day=_int(doc, "max-runs-per-day", where, 1),
        concurrency=concurrency,
        starting_deadline=fields.duration(
            doc.get("starting-deadline", DEFAULT_DEADLINE), f"{where}.starting-deadline"
        ),
        history_limit=_int(doc, "history-limit", where, 1) or DEFAULT_HISTORY,
        blackouts=bl.parse_all(doc.get("blackouts", []), f"{where}.blackouts"),
        paused=paused,
        doc=dict(doc),
        gates=gates.parse(doc["gates"], f"{where}.gates") if doc.get("gates") else Gates(),
        exploration=_share(doc.get("exploration"), f"{where}.exploration"),
    )


def _share(raw: object, where: str) -> float:
    if raw is None:
        return 0.0
    try:
        return parse_percent(str(raw)) / 100
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None
