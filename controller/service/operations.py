"""Every action of `brownout serve`, once: the API, the console and (through
the API) the CLI all call these. Each checks its input, raises the domain
errors of controller.service.errors, and runs its blocking work (SQLite, agent
calls, probes, waiting on runs) on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from controller.errors import ConfigError
from controller.experiments import parse as exp
from controller.experiments.model import Experiment
from controller.service.errors import Invalid, NotFound, Refused
from controller.service.runs import ActiveRun
from controller.service.state import Service
from controller.store import KillSwitch, Run, StoredExperiment
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


class Operations:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    # ------------------------------------------------------------- reads

    async def fleet(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.svc.fleet_status)

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

    async def history(self, limit: int, status: str | None) -> list[Run]:
        return await asyncio.to_thread(self.svc.history.runs, limit, status)

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

    # ------------------------------------------------------- kill switch

    async def engage(self, reason: str, by: str) -> dict[str, Any]:
        if not reason.strip():
            raise Invalid("reason is required to engage the kill switch", "reason")
        return await asyncio.to_thread(self.svc.lever.engage, reason.strip(), by)

    async def disengage(self, by: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.svc.lever.disengage, by)
