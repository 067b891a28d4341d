"""One controller service: its inventory, stores, runs and kill switch, and
the read-side queries its API and console share."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.agents.connection import AgentConnection
from controller.agents.fleet import Fleet
from controller.agents.inventory import AgentRef
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.model import Experiment
from controller.experiments.runner import Runner, RunOptions
from controller.practice.declared import Practice
from controller.service import replicas
from controller.service.auth import Tokens
from controller.service.fleet_view import FleetView
from controller.service.gamedays import GameDayHost
from controller.service.killswitch import KillSwitchLever
from controller.service.monkeys import MonkeyKeeper
from controller.service.notify import Notifier
from controller.service.practice import PRODUCTION
from controller.service.replicas import ReplicaSync
from controller.service.runs import RunManager
from controller.service.scheduler import Scheduler
from controller.service.tls import CertRoles
from controller.store import History, Monkeys, Schedules, ServiceState, Store, open_store


@dataclass
class Service:
    refs: list[AgentRef]
    data_dir: Path
    tokens: Tokens
    store: ServiceState
    history: History
    runs: RunManager
    lever: KillSwitchLever
    fleet: Fleet
    schedules: Schedules
    scheduler: Scheduler
    opened: Store  # the database behind store, history and schedules
    sync: ReplicaSync
    keeper: MonkeyKeeper
    view: FleetView  # the fleet page's status, refreshed in the background
    cert_roles: CertRoles | None = None  # with mutual TLS: client identities' roles
    gamedays: GameDayHost = field(default_factory=GameDayHost)
    # How `brownout maturity` weighs the history here (serve --production, --practice).
    practice: Practice = field(default_factory=Practice)
    production: str = PRODUCTION

    @staticmethod
    def build(
        agents: AgentConnection,
        data_dir: Path,
        tokens: Tokens,
        metrics: ControllerMetrics,
        cert_roles: CertRoles | None = None,
        notifier: Notifier | None = None,
        database: str | None = None,
        replica_timeout: float = replicas.TIMEOUT,
    ) -> Service:
        opened = open_store(data_dir, database)  # migrated
        store, history = opened.state, opened.history
        # The service's one fleet: one loop and one channel per agent, lent to
        # every run, dry run, the kill switch, recovery and the fleet page.
        fleet = Fleet.connect(agents)
        me = replicas.identity()
        runs = RunManager(fleet, data_dir, history, store, metrics, notifier, me.replica)
        lever = KillSwitchLever(fleet, store, runs)
        refs = list(agents.refs)
        scheduler = Scheduler(opened.schedules, store, runs, metrics, replica=me.replica)
        sync = ReplicaSync(me, store, history, runs, lever, replica_timeout, opened.gamedays)
        keeper = MonkeyKeeper(opened.monkeys, store, runs, me.replica)
        view = fleet.loop.run(_start_view(fleet))
        return Service(
            refs, data_dir, tokens, store, history, runs, lever, fleet, opened.schedules,
            scheduler, opened, sync, keeper, view, cert_roles,
        )  # fmt: skip

    @property
    def monkeys(self) -> Monkeys:
        return self.opened.monkeys

    def close(self) -> None:
        self.scheduler.stop()
        self.keeper.stop()
        self.gamedays.stop_all("the controller stopped")
        self.sync.stop()  # after the drain: its runs have ended
        self.fleet.loop.run(self.view.stop())
        self.fleet.close()
        self.runs.notifier.close()  # what is queued still goes out, within its bound
        self.opened.close()

    # --------------------------------------------------------------- reads

    def replica_status(self) -> dict[str, Any]:
        """The replicas on the store, this one first; a lost one is past the
        replica timeout (its runs are marked interrupted as it is noticed)."""
        runs: dict[str, list[str]] = {}
        for live in self.store.live_runs():
            runs.setdefault(live.replica, []).append(live.run_id)
        me = self.sync.me.replica
        listed = sorted(self.store.replicas(), key=lambda r: r.replica != me)
        return {
            "replica": me,
            "timeout": self.sync.timeout,
            "replicas": [
                {**r.as_dict(), "age": round(r.age, 3), "lost": r.age > self.sync.timeout,
                 "runs": runs.get(r.replica, [])}
                for r in listed
            ],
        }  # fmt: skip

    def dry_run(self, experiment: Experiment) -> dict[str, Any]:
        with self.fleet.borrow() as fleet:
            return Runner(experiment, fleet, RunOptions()).dry_run()

    def run_list(self, limit: int) -> list[dict[str, Any]]:
        mine = [r.summary() for r in self.runs.recent()]
        seen = {r["run_id"] for r in mine}
        past = [
            {
                "run_id": r.run_id,
                "title": r.title,
                "status": r.status,
                "started": r.started,
                "live": False,
                "by": "",
            }
            for r in self.history.runs(limit)
            if r.run_id not in seen
        ]
        return (mine + past)[:limit]

    def run_journal(self, run_id: str) -> dict[str, Any]:
        live = self.runs.get(run_id)
        if live is not None:
            return live.journal()
        _, journal = self.history.get(run_id)
        return journal


async def _start_view(fleet: Fleet) -> FleetView:
    return FleetView(fleet).start()
