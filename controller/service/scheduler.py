"""The service's scheduler: starts each schedule's occurrences through the
RunManager, or records why it did not.

One thread wakes at the next occurrence's start (or every TICK, to see new
or changed schedules). For each occurrence due, in order: the starting
deadline (a start later than it is a miss), then the plan's static reasons
(paused, kill switch, blackout, run window, daily cap), then the concurrency
policy against the schedule's runs still going, then the pick and the start.
Whatever happens is recorded with the occurrence (started with its run id,
or skipped with the reason) and counted in chaos_runs_skipped_total{reason}.

Each occurrence is first claimed in the store (SqlSchedules.claim: a row
lock on the schedule, and its mark moved to the occurrence), so with several
replicas on one store exactly one handles it, and a restarted service knows
which it missed: the ones past their starting deadline are recorded as
missed; the latest one still within it runs. A schedule's runs still going
are counted across replicas (the store's live runs), and Replace asks the
replica driving one to abort it.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from controller.errors import ConfigError
from controller.experiments import gates
from controller.experiments import parse as exp
from controller.experiments.gates import Gates
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.model import Experiment
from controller.experiments.window import RunWindow
from controller.schedules import model, picking
from controller.schedules.model import Concurrency, Schedule
from controller.schedules.plan import (
    Occurrence,
    draw,
    local_day,
    occurrences,
    plan,
    static_skip,
)
from controller.service.errors import Refused
from controller.service.runs import RunManager
from controller.store import (
    Claim,
    LiveRun,
    ScheduledOccurrence,
    Schedules,
    ServiceState,
    StoredExperiment,
)

log = structlog.get_logger("brownout.scheduler")

TICK = 1.0  # the longest sleep: how soon a new or changed schedule is seen
BUSY = 0.2  # another replica holds an occurrence's claim: ask again this soon
REPLACE_WAIT = 120.0  # how long a replaced run may take to revert before the next starts
MAX_MISSED = 100_000  # occurrences looked at after a long downtime


def planned(s: Schedule, occ: Occurrence, name: str, experiment: Experiment) -> dict[str, Any]:
    """The run a veto webhook is asked about."""
    settings = experiment.settings
    return {
        "schedule": s.name,
        "occurrence": occ.due.isoformat(),
        "experiment": name,
        "title": experiment.title,
        "targets": settings.selector.text or "every agent",
        "blast_radius_percent": max(step.percent for step in settings.ramp),
        "max_fleet_percent": settings.max_fleet_percent,
        "faults": [a.name for a in experiment.fault_actions],
        "by": f"schedule:{s.name}",
    }


@dataclass(frozen=True)
class _Context:
    experiments: dict[str, Experiment | str]  # loaded, or why not
    windows: dict[str, RunWindow | None]
    per_day: Counter[str]  # runs started, by local day
    kill_switch: str  # its reason if engaged
    last_started: dict[str, str]  # by experiment


@dataclass
class _Turn:
    """What one turn of the loop reads once for every occurrence it handles:
    a turn lasts a second or two, and a start checks the kill switch anyway."""

    kill_switch: str | None = None
    live: list[LiveRun] | None = None
    experiments: dict[str, StoredExperiment | None] = field(default_factory=dict)


@dataclass
class _Entry:
    schedule: Schedule
    doc: str  # the JSON it was parsed from: a changed doc is parsed again
    next: Occurrence
    runs: list[str] = field(default_factory=list)  # run ids it started, newest last


class Scheduler:
    def __init__(
        self,
        schedules: Schedules,
        state: ServiceState,
        runs: RunManager,
        metrics: ControllerMetrics,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        service_gates: Gates | None = None,
        replica: str = "",
    ) -> None:
        self.schedules = schedules
        self.replica = replica or "this controller"
        self.gates = service_gates or Gates()  # before every scheduled run, with the schedule's
        self.state = state
        self.runs = runs
        self.metrics = metrics
        self._now = now
        self._entries: dict[str, _Entry] = {}
        self._parsed: dict[str, tuple[str, Experiment]] = {}  # stored experiments by name
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(10)

    def changed(self) -> None:
        """A schedule was added, changed or removed: look again now."""
        self._wake.set()

    def plan(self, schedule: Schedule, count: int) -> list[Occurrence]:
        """The next `count` occurrences and whether each would run, as the loop
        would decide now (what only the moment knows, a run still going, aside)."""
        c = self._context(schedule)
        return plan(schedule, self._now(), count, c.windows, c.per_day, c.kill_switch)

    def _context(self, s: Schedule, turn: _Turn | None = None) -> _Context:
        """What the rules need to judge an occurrence of s, read once (and what
        every schedule shares, once per turn of the loop)."""
        turn = turn or _Turn()
        loaded = {n: self._experiment(n, turn) for n in s.experiments}
        # The starts so far matter to a daily cap and to a rotation only.
        needed = s.max_runs_per_day is not None or len(s.experiments) > 1
        started = self._started(s) if needed else []
        if turn.kill_switch is None:
            ks = self.state.kill_switch()
            turn.kill_switch = ks.reason if ks.engaged else ""
        return _Context(
            loaded,
            {n: e.settings.window for n, e in loaded.items() if not isinstance(e, str)},
            Counter(local_day(s, datetime.fromisoformat(o.at)) for o in started),
            turn.kill_switch,
            {o.experiment: o.at for o in reversed(started)},  # the newest start wins
        )

    # ---------------------------------------------------------------- loop

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.tick()
            except Exception:  # one bad turn must not end the schedules
                log.exception("scheduler turn failed")
                wait = TICK
            self._wake.wait(max(0.0, min(wait, TICK)))
            self._wake.clear()

    def tick(self) -> float:
        """Handle every occurrence due by now; seconds until the next one."""
        now = self._now()
        stored = {s.name: s for s in self.schedules.all()}
        for gone in set(self._entries) - set(stored):
            del self._entries[gone]
        wait = TICK
        turn = _Turn()
        for name, s in stored.items():
            doc = json.dumps(s.doc, sort_keys=True)
            entry = self._entries.get(name)
            if entry is None or entry.doc != doc:
                try:
                    schedule = model.parse(s.doc, f"schedule {name}")
                except ConfigError as exc:
                    log.error("schedule unreadable: skipped", schedule=name, error=str(exc))
                    continue
                entry = _Entry(schedule, doc, self._resume(schedule, now))
                self._entries[name] = entry
            while entry.next.at <= now and not self._stop.is_set():
                got = self.schedules.claim(name, entry.next.due.isoformat(), self.replica)
                if got is Claim.BUSY:  # another replica is at it: see what it made of it
                    wait = min(wait, BUSY)
                    break
                if got is Claim.CLAIMED:
                    self._handle(entry, entry.next, now, turn)
                entry.next = next(occurrences(entry.schedule, entry.next.due))
                now = self._now()
            wait = min(wait, (entry.next.at - now).total_seconds())
        return wait

    def _resume(self, schedule: Schedule, now: datetime) -> Occurrence:
        """The first occurrence to handle: after the schedule's mark, recording
        as missed the ones past their starting deadline; after now for a new one."""
        mark = self.schedules.last_due(schedule.name)
        if mark is None:  # new: nothing to catch up on (its first record marks it)
            return next(occurrences(schedule, now))
        deadline = timedelta(seconds=schedule.starting_deadline)
        it: Iterator[Occurrence] = occurrences(schedule, datetime.fromisoformat(mark))
        missed: list[Occurrence] = []
        for _ in range(MAX_MISSED):
            occ = next(it)
            if occ.at >= now - deadline:
                break
            missed.append(occ)
        else:
            occ = next(occurrences(schedule, now))
        if missed:
            self.metrics.runs_skipped_total.labels("missed").inc(len(missed))
            keep = missed[-schedule.history_limit :]
            for m in keep:
                if self.schedules.claim(schedule.name, m.due.isoformat(), self.replica) is not (
                    Claim.CLAIMED
                ):
                    continue  # another replica recorded it
                why = (
                    f"missed: the controller was not running at {m.at.isoformat()} and its"
                    f" starting deadline of {schedule.starting_deadline:g}s passed"
                )
                self._record(schedule, m, "skipped", "missed", why, count=False)
            log.warning("missed occurrences", schedule=schedule.name, count=len(missed))
        return occ

    # ----------------------------------------------------------- occurrence

    def _handle(
        self, entry: _Entry, occ: Occurrence, now: datetime, turn: _Turn | None = None
    ) -> None:
        turn = turn or _Turn()
        s = entry.schedule
        late = (now - occ.at).total_seconds()
        if late > s.starting_deadline:
            why = (
                f"missed: started {late:.0f}s late, past its starting deadline"
                f" {s.starting_deadline:g}s"
            )
            self._record(s, occ, "skipped", "missed", why)
            return
        c = self._context(s, turn)
        why, kind = static_skip(s, occ.at, c.windows, c.kill_switch)
        day = local_day(s, occ.at)
        if not why and s.max_runs_per_day is not None and c.per_day[day] >= s.max_runs_per_day:
            why, kind = f"max-runs-per-day {s.max_runs_per_day} reached on {day}", "max_runs"
        live = self._still_going(entry, f"schedule:{s.name}", turn)
        if not why and live and s.concurrency is Concurrency.FORBID:
            why = f"run {live[-1]} of this schedule is still going (concurrency forbid)"
            kind = "running"
        if why:
            self._record(s, occ, "skipped", kind, why)
            return
        draws = (draw(s.name, occ.due, "explore"), draw(s.name, occ.due, "which"))
        name, because = picking.pick(s.experiments, c.last_started, s.exploration, draws)
        chosen = c.experiments[name]
        if isinstance(chosen, str):
            self._record(s, occ, "skipped", "experiment", chosen, experiment=name)
            return
        chosen = picking.cap_blast_radius(chosen, s.blast_radius)
        blocked = gates.check(s.gates.merged(self.gates), planned(s, occ, name, chosen))
        if blocked is not None:
            self._record(s, occ, "skipped", f"gate_{blocked.gate}", str(blocked), experiment=name)
            self.runs.notifier.send(
                "gate_skipped", schedule=s.name, occurrence=occ.due.isoformat(),
                experiment=name, gate=blocked.gate, reason=str(blocked),
            )  # fmt: skip
            return
        if live and s.concurrency is Concurrency.REPLACE:
            why = self._replace(live)
            if why:
                self._record(s, occ, "skipped", "running", why, experiment=name)
                return
        try:
            run = self.runs.start(chosen, f"schedule:{s.name}")
        except Refused as exc:
            self._record(s, occ, "skipped", "refused", str(exc), experiment=name)
            return
        entry.runs.append(run.run_id)
        self.metrics.scheduled_runs_total.labels(s.name).inc()
        log.info("scheduled run started", schedule=s.name, run_id=run.run_id, experiment=name)
        self._record(s, occ, "started", "", because, run.run_id, name)

    def _still_going(self, entry: _Entry, by: str, turn: _Turn) -> list[str]:
        """The schedule's runs still going, on any replica, oldest first (the
        other replicas' as the turn began: one occurrence of a schedule a turn)."""
        entry.runs = [
            r for r in entry.runs if (a := self.runs.get(r)) is not None and not a.done.is_set()
        ]
        mine = set(entry.runs)
        if turn.live is None:
            turn.live = self.state.live_runs()
        others = [
            r.run_id
            for r in turn.live
            if r.by == by and r.run_id not in mine and r.replica != self.replica
        ]
        return others + entry.runs

    def _replace(self, live: list[str]) -> str:
        """Abort the runs (they revert) and wait for them; why not, if one hangs
        on. Another replica's run is aborted by it, asked through the store."""
        reason = "replaced by the schedule's next occurrence"
        for run_id in live:
            if self.runs.get(run_id) is not None:
                self.runs.abort(run_id, reason, "schedule")
            else:
                self.state.request_abort(run_id, reason)
        deadline = time.monotonic() + REPLACE_WAIT
        for run_id in live:
            active = self.runs.get(run_id)
            if active is not None:
                ended = active.done.wait(max(0.0, deadline - time.monotonic()))
            else:
                ended = self._gone_by(run_id, deadline)
            if not ended:
                return f"run {run_id} did not end within {REPLACE_WAIT:g}s of its abort"
        return ""

    def _gone_by(self, run_id: str, deadline: float) -> bool:
        """Whether another replica's run leaves the store's live runs in time."""
        while run_id in {r.run_id for r in self.state.live_runs()}:
            if time.monotonic() > deadline:
                return False
            time.sleep(BUSY)
        return True

    def _experiment(self, ref: str, turn: _Turn) -> Experiment | str:
        """A stored experiment by name, or a file; else why not (a string)."""
        if ref not in turn.experiments:
            turn.experiments[ref] = self.state.experiment(ref)
        stored = turn.experiments[ref]
        try:
            if stored is not None:
                key = json.dumps(stored.doc, sort_keys=True)
                cached = self._parsed.get(ref)
                if cached is None or cached[0] != key:
                    cached = key, exp.parse(stored.doc, f"experiment {ref}")
                    self._parsed[ref] = cached
                return cached[1]
            if ref.endswith((".yaml", ".yml", ".json")):
                return exp.load(Path(ref))
        except ConfigError as exc:
            return f"experiment {ref} is invalid: {exc}"
        return f"no stored experiment {ref!r}"

    def _started(self, s: Schedule) -> list[ScheduledOccurrence]:
        """This schedule's recorded starts, newest first."""
        limit = max(s.history_limit, (s.max_runs_per_day or 0) + 1)
        return [o for o in self.schedules.occurrences(s.name, limit) if o.outcome == "started"]

    def _record(
        self,
        s: Schedule,
        occ: Occurrence,
        outcome: str,
        kind: str,
        detail: str,
        run_id: str = "",
        experiment: str = "",
        count: bool = True,
    ) -> None:
        if outcome == "skipped":
            if count:
                self.metrics.runs_skipped_total.labels(kind).inc()
            log.info("scheduled occurrence skipped", schedule=s.name, due=occ.due.isoformat(),
                     reason=kind, detail=detail)  # fmt: skip
        record = ScheduledOccurrence(
            s.name, occ.due.isoformat(), occ.at.isoformat(), outcome, kind, detail, run_id,
            experiment,
        )  # fmt: skip
        keep = max(s.history_limit, (s.max_runs_per_day or 0) + 1)
        self.schedules.record(record, keep)  # and marks the schedule, in one transaction
