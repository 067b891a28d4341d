"""A game day in progress: the plan's scenarios run in order, each at its
offset from the start (the clock stops while the commander pauses) or as
soon as the commander advances, one run each through the service's runs
(leases, journal, timeline, report). After a scenario's run, its success
criteria are judged from the run's report (and Prometheus, for an alert,
once its window has passed). The state is written to the store at every
change, so every replica and the console see the day as it goes.

The commander's controls: pause (no new scenario starts; a running one goes
on), resume, advance (the next scenario starts now), skip (the next
scenario, or the running one, whose run is aborted) and abort (the running
run is aborted and the day ends).
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import structlog

from controller.experiments.model import Experiment
from controller.experiments.timeline import MAX_NOTES, note_text
from controller.gamedays.plan import Criterion, GameDay, Scenario, judge
from controller.reports import figures
from controller.service.runs import RunManager
from controller.store import GameDays, StoredGameDay, now_iso

log = structlog.get_logger("brownout.gameday")

CONTROLS = ("pause", "resume", "advance", "skip", "abort")
TICK = 0.2


class Control(Exception):
    """A control that does not apply now (e.g. resume when not paused)."""


def alert_peak(c: Criterion, start: float) -> tuple[float | None, str]:
    """The highest value the alert's query took from start to start + within
    (None if it had no value), or why Prometheus could not say."""
    assert c.alert is not None
    step = max(1.0, c.alert.within / 200)
    end = start + c.alert.within
    q = urllib.parse.urlencode(
        {"query": c.alert.query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
    )
    try:
        with urllib.request.urlopen(f"{c.alert.url}/api/v1/query_range?{q}", timeout=10) as resp:
            doc = json.load(resp)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))
    if doc.get("status") != "success":
        return None, f"{doc.get('errorType', '')} {doc.get('error', '')}".strip()
    values = [float(v[1]) for series in doc["data"]["result"] for v in series["values"]]
    return (max(values) if values else None), ""


class GameDayRun:
    def __init__(
        self,
        gameday_id: str,
        plan: GameDay,
        by: str,
        runs: RunManager,
        store: GameDays,
        experiment: Callable[[str], Experiment],
        clock: Callable[[], float] = time.monotonic,
        replica: str = "",
    ) -> None:
        self.id = gameday_id
        self.replica = replica
        self.plan = plan
        self.by = by
        self._runs = runs
        self._store = store
        self._experiment = experiment
        self._clock = clock
        self._lock = threading.RLock()  # as_dict reads the elapsed time under it
        self._wake = threading.Event()
        self._saving = threading.Lock()
        self.state = "running"
        self.started = now_iso()
        self.ended = ""
        self._t0 = clock()
        self._paused_at: float | None = None
        self._paused_for = 0.0
        self._advance = False
        self._skip: int | None = None  # the scenario index to skip
        self._abort = ""
        self._current = 0
        self.notes: list[dict[str, Any]] = []
        self.scenarios: list[dict[str, Any]] = [
            {
                "name": s.name,
                "at": s.at,
                "experiment": s.experiment,
                "expect": s.expect,
                "state": "waiting",
                "run_id": "",
                "status": "",
                "started": "",
                "ended": "",
                "reason": "",
                "criteria": [c.describe() for c in s.criteria],
                "verdicts": [],
            }
            for s in plan.scenarios
        ]
        self._thread = threading.Thread(target=self._go, name=f"gameday-{gameday_id}", daemon=True)

    def start(self) -> GameDayRun:
        self._save()
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def done(self) -> bool:
        return self.state in ("ended", "aborted")

    # ------------------------------------------------------------ controls

    def control(self, action: str, by: str) -> dict[str, Any]:
        with self._lock:
            if self.done:
                raise Control(f"game day {self.id} has {self.state}")
            if action == "pause":
                if self._paused_at is not None:
                    raise Control("already paused")
                self._paused_at, self.state = self._clock(), "paused"
            elif action == "resume":
                if self._paused_at is None:
                    raise Control("not paused")
                self._paused_for += self._clock() - self._paused_at
                self._paused_at, self.state = None, "running"
            elif action == "advance":
                self._advance = True
            elif action == "skip":
                self._skip = self._current
            elif action == "abort":
                self._abort = f"aborted by {by}"
            else:
                raise Control(f"unknown control {action!r}: one of {', '.join(CONTROLS)}")
        log.warning("game day control", gameday=self.id, action=action, by=by)
        self._wake.set()
        self._save()
        return self.as_dict()

    def note(self, text: str, by: str) -> dict[str, Any]:
        """The scribe's observation for the day, at its time (ValueError if
        empty or too long). Notes during a run go into that run's timeline."""
        text = note_text(text)
        with self._lock:
            if len(self.notes) >= MAX_NOTES:
                raise ValueError(f"this game day already holds {MAX_NOTES} notes")
            note = {"at": now_iso(), "by": by, "text": text}
            self.notes.append(note)
        self._save()
        return note

    # ----------------------------------------------------------------- run

    def _elapsed(self) -> float:
        with self._lock:
            paused = self._paused_for
            if self._paused_at is not None:
                paused += self._clock() - self._paused_at
        return self._clock() - self._t0 - paused

    def _go(self) -> None:
        try:
            for i, scenario in enumerate(self.plan.scenarios):
                with self._lock:
                    self._current = i
                if self._abort:
                    self._mark(i, "aborted", self._abort)
                    continue
                if self._wait(i, scenario):
                    self._scenario(i, scenario)
        except Exception as exc:  # the day must end, recorded, whatever happens
            log.exception("game day failed", gameday=self.id)
            self._abort = self._abort or f"controller error: {exc!r}"
        with self._lock:
            self.state = "aborted" if self._abort else "ended"
            self.ended = now_iso()
        self._save()
        log.info("game day ended", gameday=self.id, state=self.state)

    def _wait(self, i: int, s: Scenario) -> bool:
        """Until the scenario's offset (paused time not counted) or an advance;
        False if it was skipped or the day aborted meanwhile."""
        skipped = False
        while True:
            with self._lock:
                if self._abort:
                    break
                if self._skip == i:
                    self._skip = None
                    skipped = True
                    break
                if self._advance:
                    self._advance = False
                    return True
                paused = self._paused_at is not None
            if not paused and self._elapsed() >= s.at:
                return True
            self._wake.wait(TICK)
            self._wake.clear()
        if self._abort:
            self._mark(i, "aborted", self._abort)
        elif skipped:
            self._mark(i, "skipped", "skipped by the commander")
        return False

    def _scenario(self, i: int, s: Scenario) -> None:
        sc = self.scenarios[i]
        try:
            run = self._runs.start(self._experiment(s.experiment), f"gameday:{self.id}")
        except Exception as exc:  # a missing experiment, the kill switch: recorded, go on
            self._mark(i, "failed", f"could not start: {exc}")
            return
        with self._lock:
            sc.update(state="running", run_id=run.run_id, started=now_iso())
        self._save()
        log.info("game day scenario started", gameday=self.id, scenario=s.name, run_id=run.run_id)
        while not run.done.wait(TICK):
            with self._lock:
                why = self._abort or ("skipped by the commander" if self._skip == i else "")
                if self._skip == i:
                    self._skip = None
            if why:
                self._runs.abort(run.run_id, f"game day {self.id}: {why}", "gameday")
                with self._lock:
                    sc["reason"] = why
        journal = run.journal()
        report = figures.build(journal).as_dict()
        verdicts = [self._judge(c, report, journal) for c in s.criteria]
        with self._lock:
            state = "skipped" if sc["reason"].startswith("skipped") else "done"
            state = "aborted" if self._abort and sc["reason"] == self._abort else state
            sc.update(
                state=state,
                status=journal.get("status", ""),
                ended=now_iso(),
                verdicts=verdicts,
                reason=sc["reason"] or str(report.get("reason") or ""),
            )
        self._save()

    def _judge(
        self, c: Criterion, report: dict[str, Any], journal: dict[str, Any]
    ) -> dict[str, Any]:
        value: float | None = None
        error = ""
        if c.alert is not None:
            first = min((f["start"] for f in report["faults"]), default=None)
            if first is None:
                error = "no fault was activated"
            else:
                at = datetime.fromisoformat(journal["start"]).timestamp() + first
                left = at + c.alert.within - time.time()
                if left > 0:  # the window must have passed to say it never fired
                    time.sleep(min(left, c.alert.within))
                value, error = alert_peak(c, at)
        v = judge(c, report, value, error)
        return v.__dict__

    def _mark(self, i: int, state: str, reason: str) -> None:
        with self._lock:
            self.scenarios[i].update(state=state, reason=reason)
        self._save()

    # -------------------------------------------------------------- record

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "id": self.id,
                "title": self.plan.title,
                "state": self.state,
                "by": self.by,
                "started": self.started,
                "ended": self.ended,
                "elapsed_s": round(self._elapsed(), 1),
                "roles": dict(self.plan.roles),
                "scenarios": [dict(s) for s in self.scenarios],
                "notes": [dict(n) for n in self.notes],
            }

    def _save(self) -> None:
        """The state as it is now, into the store. Serialised, with the snapshot
        taken inside: the last write is always the latest state."""
        with self._saving:
            self._write(self.as_dict())

    def _write(self, d: dict[str, Any]) -> None:
        plan = dict(self.plan.doc)
        g = StoredGameDay(
            self.id,
            self.plan.title,
            plan,
            d["state"],
            self.by,
            self.started,
            self.ended,
            d["scenarios"],
            d["notes"],
            self.replica,
        )
        self._store.put(g)


class GameDayHost:
    """The service's live game days."""

    def __init__(self) -> None:
        self.live: dict[str, GameDayRun] = {}
        self.lock = threading.Lock()

    def stop_all(self, why: str) -> None:
        for g in list(self.live.values()):
            if not g.done:
                g.control("abort", why)
        for g in list(self.live.values()):
            g.join(30)


def new_id() -> str:
    return datetime.now(UTC).strftime("gd-%Y%m%d-%H%M%S-") + f"{time.time_ns() % 10**6:06d}"
