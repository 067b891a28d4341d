"""The runs a service drives, through the same Runner as `brownout run`, so the
journal and the history row are the same. Each run borrows the service's one
fleet (its loop and channels), holds its own leases on it, and is a task on
that loop (no thread per run; its blocking steps, probes and journal writes,
go to the loop's worker threads one at a time). The
service keeps a row per live run in its store, so a restart can tell which
runs it cut off."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller import store as st
from controller.agents.fleet import Fleet
from controller.experiments import window
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.model import Experiment
from controller.experiments.runner import Runner, RunOptions
from controller.service.errors import KillSwitchEngaged, WindowClosed
from controller.service.events import RunEvents
from controller.service.notify import Notifier
from controller.store import History


@dataclass
class ActiveRun:
    run_id: str
    title: str
    by: str
    started: str
    runner: Runner
    events: RunEvents
    journal_path: Path
    done: threading.Event = field(default_factory=threading.Event)
    result: dict[str, Any] | None = None
    task: Future[None] | None = None  # the run's task on the fleet's loop

    def journal(self) -> dict[str, Any]:
        return self.result if self.result is not None else self.runner.journal.to_dict()

    def summary(self) -> dict[str, Any]:
        j = self.journal()
        return {
            "run_id": self.run_id,
            "title": self.title,
            "by": self.by,
            "status": j["status"],
            "started": self.started,
            "live": not self.done.is_set(),
        }


class RunManager:
    def __init__(
        self,
        fleet: Fleet,
        data_dir: Path,
        history: History,
        store: st.ServiceState,
        metrics: ControllerMetrics,
        notifier: Notifier | None = None,
        replica: str = "",
    ) -> None:
        self.fleet = fleet
        self.replica = replica  # this service process, on the store its live runs are kept in
        self.notifier = notifier or Notifier([])
        self.data_dir = data_dir
        self.history = history
        self.store = store
        self.metrics = metrics
        self._lock = threading.Lock()
        self._runs: dict[str, ActiveRun] = {}
        # Held from the kill-switch check to the run's registration, and by
        # the switch from storing itself to aborting every registered run: a
        # start either sees the switch engaged or is registered in time to be
        # aborted by it.
        self.gate = threading.Lock()

    def start(
        self,
        experiment: Experiment,
        by: str,
        seed: int | None = None,
        override_window: bool = False,
        only: list[str] | None = None,
    ) -> ActiveRun:
        """Start a run over the fleet, or `only` those agents of it."""
        with self.gate:
            return self._start(experiment, by, seed, override_window, only)

    def _start(
        self,
        experiment: Experiment,
        by: str,
        seed: int | None,
        override_window: bool,
        only: list[str] | None,
    ) -> ActiveRun:
        ks = self.store.kill_switch()
        if ks.engaged:
            raise KillSwitchEngaged(
                f"the kill switch is engaged ({ks.reason}, by {ks.by} at {ks.at});"
                " disengage it to start runs"
            )
        options = RunOptions(seed=seed, override_window=override_window, history=self.history)
        options.holder = f"brownout-serve:{by}"
        options.journal_path = self.data_dir / "journals" / f"{options.run_id}.json"
        about = {"run_id": options.run_id, "title": experiment.title, "by": by}
        options.on_milestone = lambda kind, **data: self.notifier.send(kind, **about, **data)
        options.halted = self._kill_switch_reason
        events = RunEvents(options.run_id)
        fleet = self.fleet.borrow(only)
        runner = Runner(experiment, fleet, options, events, self.metrics)
        try:
            events.event(runner.check_window())
        except window.WindowClosed as exc:
            fleet.close()
            raise WindowClosed(str(exc), "override_window") from None
        run = ActiveRun(
            options.run_id, experiment.title, by, st.now_iso(), runner, events, options.journal_path
        )
        self.store.run_started(
            st.LiveRun(
                run.run_id,
                run.title,
                str(run.journal_path),
                by,
                run.started,
                list(fleet.refs),
                self.replica,
            )
        )
        with self._lock:
            self._runs[run.run_id] = run
        self.notifier.send("run_started", **about)
        run.task = self.fleet.loop.submit(self._drive(run, fleet))
        return run

    def _kill_switch_reason(self) -> str:
        ks = self.store.kill_switch()
        return f"kill switch: {ks.reason}" if ks.engaged else ""

    async def _drive(self, run: ActiveRun, fleet: Fleet) -> None:
        try:
            run.result = await run.runner.arun()
        finally:
            await fleet.aclose()
            await asyncio.to_thread(self.store.run_ended, run.run_id)
            j = run.journal()
            reason = next((e.get("reason", "") for e in j.get("extensions", [])
                           if e.get("name") == "brownout"), "")  # fmt: skip
            self.notifier.send(
                "ended", run_id=run.run_id, title=run.title, by=run.by, status=j["status"],
                summary=reason or j["status"], duration=j.get("duration"),
            )  # fmt: skip
            run.done.set()
            run.events.close()

    def get(self, run_id: str) -> ActiveRun | None:
        with self._lock:
            return self._runs.get(run_id)

    def active(self) -> list[ActiveRun]:
        with self._lock:
            return [r for r in self._runs.values() if not r.done.is_set()]

    def recent(self) -> list[ActiveRun]:
        with self._lock:
            return sorted(self._runs.values(), key=lambda r: r.started, reverse=True)

    def abort(self, run_id: str, reason: str, label: str = "api") -> bool:
        run = self.get(run_id)
        return run is not None and run.runner.abort(reason, label)

    def abort_all(self, reason: str, label: str) -> list[str]:
        return [r.run_id for r in self.active() if r.runner.abort(reason, label)]

    def interrupt_all(self, why: str) -> None:
        for r in self.active():
            r.runner.interrupt(why)

    def wait_all(self, timeout: float) -> bool:
        return all(r.done.wait(timeout) for r in list(self._runs.values()))
