"""The monkeys' operations, for the API (and the CLI through it): what the
store keeps, a day's draw against the fleet as it answers now, and the
tracker. Blocking work runs on worker threads, never on the loop."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from typing import Any
from zoneinfo import ZoneInfo

from controller.errors import ConfigError
from controller.monkey import model
from controller.monkey.model import Monkey
from controller.service.errors import Invalid, NotFound
from controller.service.operations import check_name, named_doc, same_source
from controller.service.state import Service
from controller.store import StoredSchedule


def parse_monkey(doc: Any) -> Monkey:
    try:
        return model.parse(doc, "monkey")
    except ConfigError as exc:
        raise Invalid(str(exc), exc.where) from None


def _summary(stored: StoredSchedule) -> dict[str, Any]:
    return {"name": stored.name, "source": stored.source, "by": stored.by, "at": stored.at,
            "paused": bool(stored.doc.get("paused", False))}  # fmt: skip


def _settings(m: Monkey) -> dict[str, Any]:
    """The parsed monkey as a person reads it (defaults filled in)."""
    return {
        "opt_in": m.doc.get("opt-in", ""),
        "group_by": m.group_by,
        "mean_work_days": m.mean_days,
        "min_work_days": m.min_days,
        "max_kills_per_day": m.max_per_day,
        "max_down": m.max_down,
        "workdays": [model.DAYS[d] for d in sorted(m.workdays)],
        "window": f"{m.window[0].isoformat()}-{m.window[1].isoformat()}",
        "timezone": m.timezone,
        "planning_hour": m.planning.isoformat(),
        "actions": [a.describe() for a in m.actions],
        "probe": m.probe.name if m.probe is not None else "",
    }


class MonkeyOps:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    async def list(self) -> list[dict[str, Any]]:
        return [_summary(s) for s in await asyncio.to_thread(self.svc.monkeys.all)]

    async def get(self, name: str, day: date | None = None, kills: int = 100) -> dict[str, Any]:
        """The monkey, the day's draw (today in its zone by default: which groups,
        when, which members are usable and why not) and its tracker."""
        stored = await self._stored(name)
        m = parse_monkey(stored.doc)

        def read() -> dict[str, Any]:
            tz = ZoneInfo(m.timezone)
            when = day or datetime.now(UTC).astimezone(tz).date()
            plan, unusable = self.svc.keeper.plan(m, when)
            return {
                **_summary(stored),
                "monkey": stored.doc,
                "settings": _settings(m),
                "plan": {
                    "day": when.isoformat(),
                    "closed": plan.closed,
                    "groups": [g.as_dict(tz) for g in plan.groups],
                    "unusable": unusable,
                },
                "kills": [k.as_dict() for k in self.svc.monkeys.kills(name, kills)],
            }

        return await asyncio.to_thread(read)

    async def put(self, name: str, doc: Any, by: str, source: str = "api") -> Monkey:
        doc = named_doc(name, doc, "monkey")
        m = parse_monkey(doc)
        existing = await asyncio.to_thread(self.svc.monkeys.get, name)
        same_source(existing, source, "monkey", "change")
        await asyncio.to_thread(self.svc.monkeys.put, name, doc, source, by)
        return m

    async def pause(self, name: str, paused: bool, by: str) -> dict[str, Any]:
        """Pause or resume; also a monkey declared in a file (until the file is
        loaded again, which sets what it says). A paused monkey draws no kills."""
        stored = await self._stored(name)
        doc = {**stored.doc, "paused": paused}
        await asyncio.to_thread(self.svc.monkeys.put, name, doc, stored.source, by)
        return {"name": name, "paused": paused}

    async def delete(self, name: str) -> None:
        stored = await self._stored(name)
        same_source(stored, "api", "monkey", "remove")
        await asyncio.to_thread(self.svc.monkeys.delete, name)

    async def _stored(self, name: str) -> StoredSchedule:
        stored = await asyncio.to_thread(self.svc.monkeys.get, check_name(name))
        if stored is None:
            raise NotFound(f"no monkey {name!r}", "name")
        return stored
