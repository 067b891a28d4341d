"""1,000 schedules on one controller: the scheduler's CPU per hour and how late
occurrences start (goal: p99 at most 1 s), over a minute of real time with a
real SQLite store. Each schedule fires every 10 to 60 s (about 35
occurrences a second in all). Runs are recorded, not driven: what is measured
is the scheduler (parsing, planning, the store, the gates' absence), not the
agents. No peer tool schedules host faults this way; the figures stand alone
against the goal.

Figures are printed and written to bench-results/schedules.json.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from controller.experiments.metrics import ControllerMetrics
from controller.service.notify import Notifier
from controller.service.scheduler import Scheduler
from controller.store import open_store
from tests.bench.common import percentile, report
from tests.service.conftest import pure_doc

pytestmark = [pytest.mark.bench, pytest.mark.timeout(300)]

SCHEDULES = 1000
SECONDS = 60.0


@dataclass
class Started:
    run_id: str
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class Runs:
    """Records each start (its lateness) instead of driving agents."""

    notifier: Notifier = field(default_factory=lambda: Notifier([]))
    late: list[float] = field(default_factory=list)
    runs: dict[str, Started] = field(default_factory=dict)

    def start(self, experiment: Any, by: str) -> Started:
        run = Started(f"run-{len(self.runs)}")
        run.done.set()
        self.runs[run.run_id] = run
        return run

    def get(self, run_id: str) -> Started | None:
        return self.runs.get(run_id)

    def abort(self, run_id: str, reason: str, label: str) -> bool:
        return False


class Timed(Scheduler):
    """The scheduler, noting how late each occurrence is handled."""

    def _handle(self, entry: Any, occ: Any, now: datetime) -> None:
        self.runs.late.append((datetime.now(UTC) - occ.at).total_seconds())  # type: ignore[attr-defined]
        super()._handle(entry, occ, now)


def test_a_thousand_schedules_on_one_core(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.state.put_experiment("e", "no faults", pure_doc(), "bench")
    for i in range(SCHEDULES):
        every = 10 + i % 51
        store.schedules.put(f"s{i}", {"name": f"s{i}", "experiments": ["e"],
                                      "every": f"{every}s"}, "api", "bench")  # fmt: skip
    runs = Runs()
    scheduler = Timed(store.schedules, store.state, runs, ControllerMetrics())  # type: ignore[arg-type]
    cpu: list[float] = []

    def measured() -> None:
        t0 = time.thread_time()
        try:
            Scheduler._loop(scheduler)
        finally:
            cpu.append(time.thread_time() - t0)

    thread = threading.Thread(target=measured)
    thread.start()
    time.sleep(SECONDS)
    scheduler._stop.set()
    scheduler._wake.set()
    thread.join(30)
    late = runs.late
    cpu_per_hour = cpu[0] * 3600 / SECONDS
    figures = {
        "schedules": SCHEDULES,
        "seconds": SECONDS,
        "occurrences": len(late),
        "started": len(runs.runs),
        "lateness_p50_ms": round(percentile(late, 50) * 1000, 1),
        "lateness_p99_ms": round(percentile(late, 99) * 1000, 1),
        "lateness_max_ms": round(max(late) * 1000, 1),
        "scheduler_cpu_seconds_per_hour": round(cpu_per_hour, 1),
        "scheduler_cpu_share_of_a_core": round(cpu[0] / SECONDS, 4),
        "goal_p99_ms": 1000,
    }
    report("schedules", figures)
    assert len(late) > SCHEDULES  # every schedule fired at least once
    assert percentile(late, 99) <= 1.0
