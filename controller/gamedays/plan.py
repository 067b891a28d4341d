"""A game-day plan as people write it, and its success criteria judged
against what the runs measured.

    gameday:
      title: Payments game day
      date: 2026-12-10
      roles: {commander: alice, scribe: bob, communications: carol,
              observers: [dave, erin]}
      scenarios:
        - name: db-latency
          at: T+0                       # offset from the start: T+45m, T+1h30m
          experiment: db-latency        # a stored experiment, by name
          expect: checkout slows down, never fails
          criteria:
            - {name: recovers within 30 s, probe: checkout, recovers-within: 30s}
            - {name: no errors, probe: checkout, no-deviation: true}
            - name: the alert fires
              alert: {url: "http://prometheus:9090",
                      query: 'ALERTS{alertname="CheckoutSlow",alertstate="firing"}',
                      within: 2m}

A criterion is judged from the scenario's run: `recovers-within` by the
probe's time to recover, `no-deviation` by its samples never leaving
tolerance, `alert` by the query turning true (a non-zero value) within
`within` of the first fault's activation, asked of Prometheus over that
window after the fact.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from controller.errors import ConfigError
from controller.experiments import fields

ROLES = ("commander", "scribe", "communications", "observers")
_OFFSET = re.compile(r"^T\+(.+)$")
NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")


@dataclass(frozen=True)
class Alert:
    url: str
    query: str
    within: float


@dataclass(frozen=True)
class Criterion:
    name: str
    probe: str = ""
    recovers_within: float | None = None
    no_deviation: bool = False
    alert: Alert | None = None

    def describe(self) -> str:
        if self.recovers_within is not None:
            return f"{self.probe} recovers within {self.recovers_within:g} s"
        if self.no_deviation:
            return f"{self.probe} never leaves its tolerance"
        assert self.alert is not None
        return f"{self.alert.query} turns true within {self.alert.within:g} s of injection"


@dataclass(frozen=True)
class Scenario:
    name: str
    at: float  # seconds from the game day's start
    experiment: str
    expect: str
    criteria: tuple[Criterion, ...]


@dataclass(frozen=True)
class GameDay:
    title: str
    day: date | None
    roles: Mapping[str, Any]
    scenarios: tuple[Scenario, ...]
    doc: Mapping[str, Any] = field(default_factory=dict)


def _offset(raw: object, where: str) -> float:
    text = str(raw).strip().replace(" ", "")
    m = _OFFSET.match(text)
    if not m:
        raise ConfigError(where, f"expected an offset like T+0, T+45m or T+1h30m, got {raw!r}")
    if m.group(1) == "0":
        return 0.0
    return fields.duration(m.group(1), where)


def _criterion(raw: object, where: str, probes: set[str] | None) -> Criterion:
    c = fields.mapping(raw, where)
    fields.no_unknown(c, {"name", "probe", "recovers-within", "no-deviation", "alert"}, where)
    name = str(c.get("name") or "").strip()
    if not name:
        raise ConfigError(f"{where}.name", "is required: what the team expects, in words")
    kinds = [k for k in ("recovers-within", "no-deviation", "alert") if k in c]
    if len(kinds) != 1:
        raise ConfigError(where, "give exactly one of recovers-within, no-deviation or alert")
    if kinds[0] == "alert":
        a = fields.mapping(c["alert"], f"{where}.alert")
        fields.no_unknown(a, {"url", "query", "within"}, f"{where}.alert")
        url, query = str(a.get("url") or ""), str(a.get("query") or "")
        if not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"{where}.alert.url", f"expected Prometheus's http(s) URL, got {url!r}"
            )
        if not query:
            raise ConfigError(f"{where}.alert.query", "is required (PromQL)")
        within = fields.duration(a.get("within", "5m"), f"{where}.alert.within", False)
        return Criterion(name, alert=Alert(url.rstrip("/"), query, within))
    probe = str(c.get("probe") or "")
    if not probe:
        raise ConfigError(f"{where}.probe", "names the hypothesis probe this criterion judges")
    if probes is not None and probe not in probes:
        known = ", ".join(sorted(probes)) or "none"
        raise ConfigError(
            f"{where}.probe", f"no probe {probe!r} in the experiment's hypothesis (it has: {known})"
        )
    if kinds[0] == "recovers-within":
        limit = fields.duration(c["recovers-within"], f"{where}.recovers-within")
        return Criterion(name, probe, recovers_within=limit)
    if c["no-deviation"] is not True:
        raise ConfigError(f"{where}.no-deviation", "is true, or leave it out")
    return Criterion(name, probe, no_deviation=True)


def parse(raw: object, where: str = "gameday", probes_of: Any = None) -> GameDay:
    """The plan; probes_of(experiment name) -> its hypothesis's probe names
    (None: unknown), to check each criterion names a real probe."""
    top = fields.mapping(raw, where)
    if "gameday" in top:
        top = fields.mapping(top["gameday"], f"{where}.gameday")
    fields.no_unknown(top, {"title", "date", "roles", "scenarios"}, where)
    title = str(top.get("title") or "").strip()
    if not title:
        raise ConfigError(f"{where}.title", "is required")
    day = None
    if top.get("date") is not None:
        raw_day = top["date"]
        try:
            day = raw_day if isinstance(raw_day, date) else date.fromisoformat(str(raw_day))
        except ValueError:
            raise ConfigError(f"{where}.date", f"{raw_day!r} is not a date (YYYY-MM-DD)") from None
    roles = fields.mapping(top.get("roles") or {}, f"{where}.roles")
    fields.no_unknown(roles, set(ROLES), f"{where}.roles")
    if "commander" not in roles:
        raise ConfigError(f"{where}.roles.commander", "a game day needs an incident commander")
    raw_scenarios = top.get("scenarios")
    if not isinstance(raw_scenarios, list) or not raw_scenarios:
        raise ConfigError(f"{where}.scenarios", "expected a list of scenarios")
    scenarios = []
    for i, s in enumerate(raw_scenarios):
        at = f"{where}.scenarios[{i}]"
        m = fields.mapping(s, at)
        fields.no_unknown(m, {"name", "at", "experiment", "expect", "criteria"}, at)
        name = str(m.get("name") or "")
        if not NAME.match(name):
            raise ConfigError(f"{at}.name", f"{name!r}: lowercase letters, digits, . _ -")
        experiment = str(m.get("experiment") or "")
        if not experiment:
            raise ConfigError(f"{at}.experiment", "names a stored experiment")
        try:
            probes = probes_of(experiment) if probes_of is not None else None
        except ConfigError as exc:  # not stored, or not a valid experiment
            raise ConfigError(f"{at}.experiment", exc.message) from None
        criteria = tuple(
            _criterion(c, f"{at}.criteria[{j}]", probes)
            for j, c in enumerate(m.get("criteria") or [])
        )
        scenarios.append(
            Scenario(
                name,
                _offset(m.get("at", "T+0"), f"{at}.at"),
                experiment,
                str(m.get("expect") or ""),
                criteria,
            )
        )
    names = [s.name for s in scenarios]
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}.scenarios", "scenario names must be unique")
    offsets = [s.at for s in scenarios]
    if offsets != sorted(offsets):
        raise ConfigError(f"{where}.scenarios", "scenarios run in order: their offsets must grow")
    return GameDay(title, day, dict(roles), tuple(scenarios), dict(top))


@dataclass(frozen=True)
class Verdict:
    criterion: str
    describe: str
    passed: bool | None  # None: could not be judged (why in measured)
    measured: str


def judge(
    c: Criterion, report: Mapping[str, Any], alert_value: float | None = None, alert_error: str = ""
) -> Verdict:
    """A criterion against the scenario run's report figures (and, for an
    alert, the highest value its query took in the window)."""
    if c.alert is not None:
        if alert_error:
            return Verdict(c.name, c.describe(), None, f"could not ask Prometheus: {alert_error}")
        fired = alert_value is not None and alert_value != 0
        shown = "no value" if alert_value is None else f"{alert_value:g}"
        return Verdict(c.name, c.describe(), fired, f"highest value in the window: {shown}")
    probe = next((p for p in report.get("probes", []) if p["name"] == c.probe), None)
    if probe is None or not probe.get("samples"):
        return Verdict(c.name, c.describe(), None, f"no sample of {c.probe} in the run")
    if c.no_deviation:
        n = len(probe.get("deviations") or [])
        return Verdict(
            c.name,
            c.describe(),
            n == 0,
            "never left" if n == 0 else f"left its tolerance {n} time(s)",
        )
    assert c.recovers_within is not None
    if probe.get("recovered") is False:
        return Verdict(c.name, c.describe(), False, "did not recover in the recovery window")
    ttr = probe.get("time_to_recover_s")
    if ttr is None:
        return Verdict(c.name, c.describe(), None, "no revert to recover from")
    return Verdict(c.name, c.describe(), ttr <= c.recovers_within, f"recovered in {ttr:.1f} s")
