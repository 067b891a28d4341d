"""Every action of `brownout serve`, once: the API, the console and (through
the API) the CLI all call these. Each checks its input, raises the domain
errors of controller.service.errors, and runs its blocking work (SQLite, agent
calls, probes, waiting on runs) on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import re
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from controller.errors import ConfigError
from controller.experiments import parse as exp
from controller.experiments.model import Experiment
from controller.experiments.selection import parse_selector
from controller.reports import figures
from controller.reports.figures import Report
from controller.schedules import model as schedule_model
from controller.schedules.model import Schedule
from controller.service import practice
from controller.service.errors import Invalid, NotFound, Refused
from controller.service.fleet_view import STATES as FLEET_STATES
from controller.service.runs import ActiveRun
from controller.service.state import Service
from controller.store import KillSwitch, Run, StoredExperiment, StoredSchedule
from controller.store import NotFound as NoSuchRun

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
NAME_RULE = "1-64 of a-z 0-9 . _ - starting with a letter or digit"
SEED_MAX = 2**63 - 1


def check_name(name: str, field: str = "name") -> str:
    if not NAME.fullmatch(name):
        raise Invalid(f"{field} must be {NAME_RULE}, got {name[:80]!r}", field)
    return name


def parse_experiment(doc: Any, where: str = "experiment") -> Experiment:
    try:
        return exp.parse(doc, where)
    except ConfigError as exc:
        raise Invalid(str(exc), exc.where) from None


def named_doc(name: str, doc: Any, what: str) -> dict[str, Any]:
    """A declared document (schedule, monkey) for PUT .../NAME: a mapping, its
    name the path's (filled in if absent)."""
    check_name(name)
    if not isinstance(doc, dict):
        raise Invalid(f"{what} must be a mapping", what)
    named: dict[str, Any] = {**doc, "name": doc.get("name", name)}
    if named["name"] != name:
        raise Invalid(f"{what}.name {named['name']!r} is not {name!r} (the path's)", "name")
    return named


def same_source(stored: StoredSchedule | None, source: str, what: str, verb: str) -> None:
    """A document declared in a file is changed there, not through the API."""
    if stored is not None and stored.source != source:
        raise Refused(f"{what} {stored.name!r} is declared in {stored.source}: {verb} it there")


def parse_schedule(doc: Any) -> Schedule:
    try:
        return schedule_model.parse(doc, "schedule")
    except ConfigError as exc:
        raise Invalid(str(exc), exc.where) from None


def _summary(stored: StoredSchedule, s: Schedule | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": stored.name, "source": stored.source, "by": stored.by,
                           "at": stored.at}  # fmt: skip
    if s is not None:
        out |= {
            "trigger": s.describe(),
            "experiments": list(s.experiments),
            "paused": s.paused,
            "concurrency": str(s.concurrency),
            "blast_radius": s.blast_radius,
        }
    return out


class Operations:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    # ------------------------------------------------------------- reads

    async def fleet(
        self, selector: str = "", state: str = "", page: int = 1, per_page: int = 100
    ) -> dict[str, Any]:
        """A page of the fleet's status, from memory (fleet_view.py), on the loop."""
        if state and state not in FLEET_STATES:
            listed = ", ".join(FLEET_STATES)
            raise Invalid(f"state must be one of {listed}, got {state[:40]!r}", "state")
        try:
            parsed = parse_selector(selector, "selector") if selector else None
        except ConfigError as exc:
            raise Invalid(str(exc), "selector") from None
        return await self.svc.view.page(parsed, state, page, per_page)

    async def replicas(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.svc.replica_status)

    async def experiments(self) -> list[StoredExperiment]:
        return await asyncio.to_thread(self.svc.store.experiments)

    async def experiment(self, name: str, field: str = "name") -> StoredExperiment:
        stored = await asyncio.to_thread(self.svc.store.experiment, check_name(name, field))
        if stored is None:
            raise NotFound(f"no stored experiment {name!r}", field)
        return stored

    async def runs(self, limit: int) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.svc.run_list, limit)

    async def journal(self, run_id: str) -> dict[str, Any]:
        try:
            return await asyncio.to_thread(self.svc.run_journal, run_id)
        except NoSuchRun as exc:
            raise NotFound(str(exc), "run_id") from None

    async def report(self, run_id: str) -> Report:
        journal = await self.journal(run_id)
        return await asyncio.to_thread(figures.build, journal)

    async def history(self, limit: int, status: str | None) -> list[Run]:
        return await asyncio.to_thread(self.svc.history.runs, limit, status)

    async def maturity(self, days: int) -> dict[str, Any]:
        today = datetime.now(UTC).date()
        svc = self.svc
        return await asyncio.to_thread(
            practice.assess, svc.opened, today, svc.practice, svc.production, days
        )

    async def kill_switch(self) -> KillSwitch:
        return await asyncio.to_thread(self.svc.lever.state)

    def live_run(self, run_id: str) -> ActiveRun:
        run = self.svc.runs.get(run_id)
        if run is None:
            raise NotFound(f"no run {run_id!r} started by this controller process", "run_id")
        return run

    # ------------------------------------------------------- experiments

    async def resolve(self, ref: Any, field: str = "experiment") -> Experiment:
        """A stored experiment by name, or an inline document."""
        if isinstance(ref, str):
            ref = (await self.experiment(ref, field)).doc
        return parse_experiment(ref)

    async def validate(self, doc: Any) -> Experiment:
        return parse_experiment(doc)

    async def put_experiment(self, name: str, doc: Any, by: str) -> Experiment:
        e = parse_experiment(doc)
        await asyncio.to_thread(self.svc.store.put_experiment, check_name(name), e.title, doc, by)
        return e

    async def delete_experiment(self, name: str) -> None:
        if not await asyncio.to_thread(self.svc.store.delete_experiment, check_name(name)):
            raise NotFound(f"no stored experiment {name!r}", "name")

    async def dry_run(self, name: str) -> dict[str, Any]:
        e = await self.resolve(name, "name")
        return await asyncio.to_thread(self.svc.dry_run, e)

    # -------------------------------------------------------------- runs

    async def start(
        self, ref: Any, by: str, seed: int | None = None, override_window: bool = False
    ) -> ActiveRun:
        if seed is not None and not 0 <= seed <= SEED_MAX:
            raise Invalid(f"seed must be 0 to {SEED_MAX}, got {seed}", "seed")
        e = await self.resolve(ref)
        return await asyncio.to_thread(self.svc.runs.start, e, by, seed, override_window)

    async def abort(self, run_id: str, by: str, reason: str) -> str:
        if self.svc.runs.get(run_id) is None:
            raise NotFound(f"no live run {run_id!r} on this controller", "run_id")
        why = f"aborted by {by}: {reason.strip() or 'no reason given'}"
        if not await asyncio.to_thread(self.svc.runs.abort, run_id, why):
            raise Refused(f"run {run_id!r} is already ending")
        return why

    async def note(self, run_id: str, text: str, by: str) -> dict[str, Any]:
        """A timestamped observation in a live run's timeline (the scribe's log)."""
        run = self.svc.runs.get(run_id)
        if run is None:
            raise NotFound(f"no live run {run_id!r} on this controller", "run_id")
        if run.done.is_set():
            raise Refused(f"run {run_id!r} has ended: notes go into a live run's timeline")
        try:
            return {"run_id": run_id, **run.runner.note(text, by)}
        except ValueError as exc:
            raise Invalid(str(exc), "text") from None

    # --------------------------------------------------------- schedules

    async def schedules(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self._schedule_list)

    def _schedule_list(self) -> list[dict[str, Any]]:
        out = []
        for stored in self.svc.schedules.all():
            try:
                s = schedule_model.parse(stored.doc, f"schedule {stored.name}")
            except ConfigError as exc:
                out.append({**_summary(stored), "error": str(exc)})
                continue
            upcoming = self.svc.scheduler.plan(s, 1)
            nxt = upcoming[0].as_dict(ZoneInfo(s.timezone)) if upcoming else None
            out.append({**_summary(stored, s), "next": nxt})
        return out

    async def schedule(self, name: str, count: int = 10) -> dict[str, Any]:
        stored = await self._stored_schedule(name)
        s = parse_schedule(stored.doc)

        def read() -> dict[str, Any]:
            return {
                **_summary(stored, s),
                "schedule": stored.doc,
                "next": [
                    o.as_dict(ZoneInfo(s.timezone)) for o in self.svc.scheduler.plan(s, count)
                ],
                "occurrences": [
                    o.as_dict() for o in self.svc.schedules.occurrences(name, s.history_limit)
                ],
            }

        return await asyncio.to_thread(read)

    async def schedule_next(self, name: str, count: int) -> list[dict[str, str]]:
        s = parse_schedule((await self._stored_schedule(name)).doc)
        planned = await asyncio.to_thread(self.svc.scheduler.plan, s, count)
        return [o.as_dict(ZoneInfo(s.timezone)) for o in planned]

    async def put_schedule(self, name: str, doc: Any, by: str, source: str = "api") -> Schedule:
        doc = named_doc(name, doc, "schedule")
        s = parse_schedule(doc)
        existing = await asyncio.to_thread(self.svc.schedules.get, name)
        same_source(existing, source, "schedule", "change")
        await asyncio.to_thread(self.svc.schedules.put, name, doc, source, by)
        self.svc.scheduler.changed()
        return s

    async def delete_schedule(self, name: str) -> None:
        stored = await self._stored_schedule(name)
        same_source(stored, "api", "schedule", "remove")
        await asyncio.to_thread(self.svc.schedules.delete, name)
        self.svc.scheduler.changed()

    async def pause_schedule(self, name: str, paused: bool, by: str) -> dict[str, Any]:
        """Pause or resume; also for a schedule declared in a file (until the file
        is loaded again, which sets what it says)."""
        stored = await self._stored_schedule(name)
        doc = {**stored.doc, "paused": paused}
        await asyncio.to_thread(self.svc.schedules.put, name, doc, stored.source, by)
        self.svc.scheduler.changed()
        return {"name": name, "paused": paused}

    async def _stored_schedule(self, name: str) -> StoredSchedule:
        stored = await asyncio.to_thread(self.svc.schedules.get, check_name(name))
        if stored is None:
            raise NotFound(f"no schedule {name!r}", "name")
        return stored

    # ------------------------------------------------------- kill switch

    async def engage(self, reason: str, by: str) -> dict[str, Any]:
        if not reason.strip():
            raise Invalid("reason is required to engage the kill switch", "reason")
        return await asyncio.to_thread(self.svc.lever.engage, reason.strip(), by)

    async def disengage(self, by: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.svc.lever.disengage, by)
