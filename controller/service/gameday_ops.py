"""Game days on the service: start one from a plan (every scenario's
experiment checked first), follow it, the commander's controls, a dry run
(the schedule in wall-clock time, every experiment and criterion checked),
and the day's report. Live days are driven here; ended ones are read from
the store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from controller.errors import ConfigError
from controller.experiments import parse as exp
from controller.experiments.model import Experiment
from controller.gamedays import plan as gd
from controller.gamedays import report as gd_report
from controller.service.errors import Invalid, NotFound, Refused
from controller.service.gamedays import Control, GameDayHost, GameDayRun, new_id
from controller.service.state import Service
from controller.store import StoredGameDay


def _experiment(svc: Service, name: str) -> Experiment:
    stored = svc.store.experiment(name)
    if stored is None:
        raise ConfigError("experiment", f"no stored experiment {name!r}")
    return exp.parse(stored.doc, f"experiment {name}")


def _probes_of(svc: Service, name: str) -> set[str]:
    e = _experiment(svc, name)
    return {p.name for p in e.hypothesis.probes} if e.hypothesis else set()


def parse_plan(svc: Service, doc: Any) -> gd.GameDay:
    """The plan, with every scenario's experiment found and parsed, and every
    criterion naming one of its probes."""
    try:
        return gd.parse(doc, "gameday", lambda name: _probes_of(svc, name))
    except ConfigError as exc:
        raise Invalid(str(exc), exc.where) from None


class GameDayOps:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    @property
    def host(self) -> GameDayHost:
        return self.svc.gamedays

    async def start(self, doc: Any, by: str) -> dict[str, Any]:
        plan = await asyncio.to_thread(parse_plan, self.svc, doc)
        with self.host.lock:
            running = [g.id for g in self.host.live.values() if not g.done]
            if running:
                raise Refused(f"game day {running[0]} is still going: one game day at a time")
            g = GameDayRun(
                new_id(),
                plan,
                by,
                self.svc.runs,
                self.svc.opened.gamedays,
                lambda name: _experiment(self.svc, name),
                replica=self.svc.sync.me.replica,
            )
            self.host.live[g.id] = g
        await asyncio.to_thread(g.start)
        return g.as_dict()

    async def dry_run(self, doc: Any, start: datetime | None = None) -> dict[str, Any]:
        """The schedule in wall-clock time and each scenario's checks; nothing runs."""
        plan = await asyncio.to_thread(parse_plan, self.svc, doc)
        at = start or datetime.now(UTC)
        scenarios = []
        for s in plan.scenarios:
            experiment = await asyncio.to_thread(_experiment, self.svc, s.experiment)
            kinds = sorted({a.provider.fault for a in experiment.fault_actions})  # type: ignore[union-attr]
            scenarios.append(
                {
                    "name": s.name,
                    "at": (at + timedelta(seconds=s.at)).isoformat(),
                    "offset_s": s.at,
                    "experiment": s.experiment,
                    "title": experiment.title,
                    "faults": kinds,
                    "expect": s.expect,
                    "criteria": [c.describe() for c in s.criteria],
                }
            )
        dry = await asyncio.to_thread(self._capabilities, plan)
        return {
            "title": plan.title,
            "roles": dict(plan.roles),
            "scenarios": scenarios,
            "agents": dry,
        }

    def _capabilities(self, plan: gd.GameDay) -> dict[str, Any]:
        """Each experiment's dry run on the fleet: would a real run start?"""
        from controller.experiments.runner import Runner, RunOptions

        out: dict[str, Any] = {}
        for s in plan.scenarios:
            e = _experiment(self.svc, s.experiment)
            with self.svc.fleet.borrow() as fleet:
                report = Runner(e, fleet, RunOptions()).dry_run()
            out[s.name] = {
                "ok": report.get("ok"),
                "error": report.get("error", ""),
                "agents": {
                    a: v.get("problems")
                    for a, v in (report.get("agents") or {}).items()
                    if v.get("target")
                },
            }
        return out

    async def get(self, gameday_id: str) -> dict[str, Any]:
        live = self.host.live.get(gameday_id)
        if live is not None:
            return live.as_dict()
        return (await self._stored(gameday_id)).as_dict()

    async def list(self) -> list[dict[str, Any]]:
        stored = await asyncio.to_thread(self.svc.opened.gamedays.all, 100)
        return [{k: v for k, v in g.as_dict().items() if k != "plan"} for g in stored]

    async def control(self, gameday_id: str, action: str, by: str) -> dict[str, Any]:
        if action not in ("pause", "resume", "advance", "skip", "abort"):
            raise Invalid(
                f"unknown control {action!r}: pause, resume, advance, skip or abort", "action"
            )
        live = await self._live(gameday_id)
        try:
            return await asyncio.to_thread(live.control, action, by)
        except Control as exc:
            raise Refused(str(exc)) from None

    async def note(self, gameday_id: str, text: str, by: str) -> dict[str, Any]:
        live = await self._live(gameday_id)
        if live.done:
            raise Refused(f"game day {gameday_id} has {live.state}")
        try:
            return {"gameday_id": gameday_id, **await asyncio.to_thread(live.note, text, by)}
        except ValueError as exc:
            raise Invalid(str(exc), "text") from None

    async def report(self, gameday_id: str) -> gd_report.DayReport:
        g = await self._stored(gameday_id)

        def build() -> gd_report.DayReport:
            journals = {}
            for sc in g.scenarios:
                if sc.get("run_id"):
                    try:
                        journals[sc["run_id"]] = self.svc.run_journal(sc["run_id"])
                    except Exception:  # a run still being written, or gone from the history
                        continue
            return gd_report.build(g, journals)

        return await asyncio.to_thread(build)

    async def _live(self, gameday_id: str) -> GameDayRun:
        """The game day this controller drives; 404 if unknown, 409 if not here."""
        live = self.host.live.get(gameday_id)
        if live is None:
            await self._stored(gameday_id)  # 404 if unknown
            raise Refused(f"game day {gameday_id} is not going on this controller")
        return live

    async def _stored(self, gameday_id: str) -> StoredGameDay:
        g = await asyncio.to_thread(self.svc.opened.gamedays.get, gameday_id)
        if g is None:
            raise NotFound(f"no game day {gameday_id!r}", "gameday_id")
        return g
