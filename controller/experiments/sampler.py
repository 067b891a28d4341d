"""The run's probes sampled into its timeline: the hypothesis's probes every
interval while the faults are on ("during"), and after the revert
("recovery") until each meets its tolerance again or the recovery window
ends. Stop conditions sample themselves (stopconditions.py) and are fed in
by the runner."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from controller.experiments import probes
from controller.experiments.model import Activity
from controller.experiments.timeline import Timeline


def record_run(timeline: Timeline, run: probes.ProbeRun, phase: str) -> None:
    """One probe run as a sample: the value its tolerance judged, met or not."""
    observed = run.verdict.observed if run.verdict is not None else run.output
    timeline.sample(run.activity.name, observed, run.tolerance_met, phase, run.error, run.start)


class Sampler:
    """A thread sampling each probe every interval until stopped."""

    def __init__(
        self,
        probes_: Sequence[Activity],
        timeline: Timeline,
        on_run: Callable[[probes.ProbeRun, str], None] | None = None,
    ) -> None:
        self._probes = tuple(probes_)
        self._timeline = timeline
        self._on_run = on_run or (lambda run, phase: record_run(timeline, run, phase))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Sampler:
        if self._probes:
            self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            longest = max(getattr(p.provider, "timeout", 5.0) for p in self._probes)
            self._thread.join(longest + 5)

    def _loop(self) -> None:
        while not self._stop.wait(self._timeline.interval):
            for p in self._probes:
                if self._stop.is_set():
                    return
                self._on_run(probes.execute(p), "during")


def recover(
    probes_: Sequence[Activity],
    timeline: Timeline,
    cut: Callable[[], bool],
    on_run: Callable[[probes.ProbeRun, str], None] | None = None,
) -> None:
    """After the revert: sample every probe until all meet their tolerance
    again (each at least once), or the recovery window ends, or cut()."""
    if not probes_ or timeline.recovery <= 0:
        return
    step = min(timeline.interval, 1.0)
    deadline = time.monotonic() + timeline.recovery
    while not cut():
        met = True
        for p in probes_:
            run = probes.execute(p)
            (on_run or (lambda r, phase: record_run(timeline, r, phase)))(run, "recovery")
            met = met and run.tolerance_met
        if met or time.monotonic() + step > deadline:
            return
        time.sleep(step)
