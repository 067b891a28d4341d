"""The facts `brownout maturity` and the console's practice panel weigh,
read from the store: the runs of the window (each one's source from the
schedules' and the monkeys' records, its environment from the labels its
targets announced), the monkeys' tracker, the game days held (recorded by
`brownout gameday`, or declared), and what the team declared."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from controller.errors import ConfigError
from controller.experiments import journal as jr
from controller.experiments.selection import Selector, parse_selector
from controller.practice import declared, maturity
from controller.practice.declared import Practice
from controller.practice.maturity import Facts, KillFact, RunFact
from controller.store import Store

# Where a run's targets must be to count as production, unless told otherwise.
PRODUCTION = "env in (prod,production)"


def read_practice(path: Path | None) -> Practice:
    if path is None:
        return Practice()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    return declared.parse(raw, str(path))


def _sources(store: Store) -> dict[str, str]:
    """run id -> what started it: schedule:NAME, rotation:NAME or monkey:NAME."""
    out: dict[str, str] = {}
    for s in store.schedules.all():
        kind = "rotation" if len(s.doc.get("experiments") or []) > 1 else "schedule"
        for occ in store.schedules.occurrences(s.name, 100_000):
            if occ.run_id:
                out[occ.run_id] = f"{kind}:{s.name}"
    for m in store.monkeys.all():
        for k in store.monkeys.kills(m.name, 100_000):
            if k.run_id:
                out[k.run_id] = f"monkey:{m.name}"
    return out


def _production(journal: dict[str, Any], production: Selector) -> bool | None:
    try:
        labels = (jr.brownout(journal).get("selection") or {}).get("target_labels")
    except KeyError:
        return None
    if not labels:
        return None
    return any(production.matches(v) for v in labels.values())


def facts(
    store: Store,
    today: date,
    practice: Practice,
    production: str = PRODUCTION,
    days: int = maturity.WINDOW_DAYS,
) -> Facts:
    where = parse_selector(production, "production")
    since = today - timedelta(days=days - 1)
    sources = _sources(store)
    runs = [
        RunFact(
            run.run_id,
            datetime.fromisoformat(run.started).date(),
            run.status,
            _production(journal, where),
            sources.get(run.run_id, "person"),
        )
        for run, journal in store.history.since(since.isoformat())
    ]
    kills = [
        KillFact(k.monkey, k.group, date.fromisoformat(k.day), k.outcome == "killed")
        for m in store.monkeys.all()
        for k in store.monkeys.kills(m.name, 100_000)
        if k.day >= since.isoformat()
    ]
    held = [datetime.fromisoformat(g.started).date() for g in store.gamedays.all(10_000)
            if g.started >= since.isoformat()]  # fmt: skip
    return Facts(today, runs, kills, [*practice.gamedays, *held], practice.declared, days)


def assess(
    store: Store,
    today: date,
    practice: Practice,
    production: str = PRODUCTION,
    days: int = maturity.WINDOW_DAYS,
) -> dict[str, Any]:
    result = maturity.assess(facts(store, today, practice, production, days))
    result["production"] = production
    return result
