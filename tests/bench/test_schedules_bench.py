"""1,000 schedules on one controller: the scheduler's CPU per hour and how late
occurrences start (goal: p99 at most 1 s), over a minute of real time. Each
schedule fires every 10 to 60 s (about 35 occurrences a second in all). Runs
are recorded, not driven: what is measured is the scheduler (parsing,
planning, claiming, the store, the gates' absence), not the agents. No peer
tool schedules host faults this way; the figures stand alone against the goal.

Three set-ups, side by side: one scheduler on SQLite (the embedded default),
one on a real PostgreSQL (tests/postgres.py), and three replicas' schedulers
on that PostgreSQL claiming the same occurrences (each must be started once).

Figures are printed and written to bench-results/schedules*.json.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
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
    """Records each start (its lateness) instead of driving agents; shared by
    the replicas' schedulers."""

    notifier: Notifier = field(default_factory=lambda: Notifier([]))
    late: list[float] = field(default_factory=list)
    runs: dict[str, Started] = field(default_factory=dict)
    ids: Iterator[int] = field(default_factory=itertools.count)

    def start(self, experiment: Any, by: str) -> Started:
        run = Started(f"run-{next(self.ids)}")  # count's next is atomic under the GIL
        run.done.set()
        self.runs[run.run_id] = run
        return run

    def get(self, run_id: str) -> Started | None:
        return self.runs.get(run_id)

    def abort(self, run_id: str, reason: str, label: str) -> bool:
        return False


class Timed(Scheduler):
    """The scheduler, noting how late each occurrence is handled."""

    def _handle(self, entry: Any, occ: Any, now: datetime, turn: Any = None) -> None:
        self.runs.late.append((datetime.now(UTC) - occ.at).total_seconds())  # type: ignore[attr-defined]
        super()._handle(entry, occ, now, turn)


@pytest.mark.parametrize(("backend", "replicas"), [("sqlite", 1), ("postgres", 1), ("postgres", 3)])
def test_a_thousand_schedules_on_one_core(
    request: pytest.FixtureRequest, tmp_path: Path, backend: str, replicas: int
) -> None:
    dsn = request.getfixturevalue("pg_dsn") if backend == "postgres" else None
    store = open_store(tmp_path, dsn)
    store.state.put_experiment("e", "no faults", pure_doc(), "bench")
    for i in range(SCHEDULES):
        every = 10 + i % 51
        store.schedules.put(f"s{i}", {"name": f"s{i}", "experiments": ["e"],
                                      "every": f"{every}s"}, "api", "bench")  # fmt: skip
    runs = Runs()
    schedulers = [
        Timed(store.schedules, store.state, runs, ControllerMetrics(), replica=f"r{n}")  # type: ignore[arg-type]
        for n in range(replicas)
    ]
    cpu: list[float] = []

    def measured(scheduler: Scheduler) -> None:
        t0 = time.thread_time()
        try:
            Scheduler._loop(scheduler)
        finally:
            cpu.append(time.thread_time() - t0)

    threads = [threading.Thread(target=measured, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    time.sleep(SECONDS)
    for scheduler in schedulers:
        scheduler._stop.set()
        scheduler._wake.set()
    for thread in threads:
        thread.join(30)
    late = runs.late
    started = [
        o for i in range(SCHEDULES) for o in store.schedules.occurrences(f"s{i}", 1000)
        if o.outcome == "started"
    ]  # fmt: skip
    store.close()
    figures = {
        "backend": backend,
        "replicas": replicas,
        "schedules": SCHEDULES,
        "seconds": SECONDS,
        "occurrences": len(late),
        "started": len(runs.runs),
        "lateness_p50_ms": round(percentile(late, 50) * 1000, 1),
        "lateness_p99_ms": round(percentile(late, 99) * 1000, 1),
        "lateness_max_ms": round(max(late) * 1000, 1),
        "scheduler_cpu_seconds_per_hour": round(sum(cpu) * 3600 / SECONDS, 1),
        "scheduler_cpu_share_of_a_core": round(sum(cpu) / SECONDS, 4),
        "goal_p99_ms": 1000,
    }
    name = "schedules" if backend == "sqlite" else f"schedules-{backend}-{replicas}"
    report(name, figures)
    assert len(late) > SCHEDULES  # every schedule fired at least once
    # Exactly once: as many runs as occurrences handled, each recorded started once.
    assert len(runs.runs) == len(late) == len(started)
    assert len({(o.schedule, o.due) for o in started}) == len(started)
    assert percentile(late, 99) <= 1.0
