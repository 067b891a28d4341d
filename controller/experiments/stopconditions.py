"""Stop conditions, evaluated continuously while faults are active.

Each condition polls its probe every `interval`. When the probe leaves its
tolerance (or cannot be evaluated: a blind controller must not keep a fault
going) a breach starts; once it has lasted `for`, the monitor fires once with
the reason and the runner reverts everything. So an abort comes at most
`for + interval` (plus one probe's time) after a breach begins.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller.experiments import probes
from controller.experiments.model import StopCondition

MAX_RECORDS = 1000


@dataclass
class Sustain:
    """Tracks how long a condition has been breached, continuously."""

    sustain: float
    since: float | None = None

    def update(self, ok: bool, now: float) -> bool:
        """Feed one evaluation; True when the breach has lasted long enough to fire."""
        if ok:
            self.since = None
            return False
        if self.since is None:
            self.since = now
        return now - self.since >= self.sustain


@dataclass
class Breach:
    condition: str
    reason: str


@dataclass
class _Watch:
    condition: StopCondition
    tracker: Sustain
    records: list[dict[str, Any]] = field(default_factory=list)
    evaluations: int = 0


class StopMonitor:
    def __init__(
        self,
        conditions: tuple[StopCondition, ...],
        on_breach: Callable[[Breach], None],
        on_evaluation: Callable[[StopCondition, probes.ProbeRun], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._watches = [_Watch(c, Sustain(c.sustain)) for c in conditions]
        self._on_breach = on_breach
        self._on_evaluation = on_evaluation
        self._clock = clock
        self._stop = threading.Event()
        self._fired = threading.Lock()
        self.breach: Breach | None = None
        self._threads: list[threading.Thread] = []

    def start(self) -> StopMonitor:
        for w in self._watches:
            t = threading.Thread(
                target=self._loop, args=(w,), name=f"stop-{w.condition.name}", daemon=True
            )
            t.start()
            self._threads.append(t)
        return self

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _fire(self, breach: Breach) -> None:
        with self._fired:
            if self.breach is not None:
                return
            self.breach = breach
        self._on_breach(breach)

    def evaluate(self, w: _Watch) -> bool:
        """One evaluation of one condition; True if it fired."""
        c = w.condition
        run = probes.execute(c.probe)
        now = self._clock()
        ok = run.tolerance_met
        fire = w.tracker.update(ok, now)
        w.evaluations += 1
        if len(w.records) < MAX_RECORDS:
            rec = run.record()
            rec["breached_for"] = (
                0.0 if w.tracker.since is None else round(now - w.tracker.since, 3)
            )
            w.records.append(rec)
        if self._on_evaluation is not None:
            self._on_evaluation(c, run)
        if fire:
            detail = run.verdict.detail if run.verdict else run.error
            held = "" if c.sustain == 0 else f" for {now - (w.tracker.since or now):.1f}s"
            self._fire(Breach(c.name, f"stop condition {c.name}: {detail}{held}"))
        return fire

    def _loop(self, w: _Watch) -> None:
        while not self._stop.is_set():
            t0 = self._clock()
            if self.evaluate(w):
                return
            self._stop.wait(max(0.0, w.condition.interval - (self._clock() - t0)))

    def report(self) -> list[dict[str, Any]]:
        return [
            {
                "name": w.condition.name,
                "tolerance": w.condition.probe.tolerance.describe()
                if w.condition.probe.tolerance
                else "",
                "for": w.condition.sustain,
                "interval": w.condition.interval,
                "evaluations": w.evaluations,
                "fired": self.breach is not None and self.breach.condition == w.condition.name,
                "records": w.records,
            }
            for w in self._watches
        ]
