"""The chaos_impact_* metrics, fed by the samples of probes marked
`impact: true`: the share of the last ERROR_WINDOW samples out of tolerance,
the latency an HTTP probe measured, and the share of samples in tolerance
while the run's faults are on."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping

from controller.experiments.metrics import ControllerMetrics
from controller.experiments.probes import ProbeRun

ERROR_WINDOW = 20


class Impact:
    def __init__(self, metrics: ControllerMetrics) -> None:
        self._m = metrics
        self._lock = threading.Lock()
        self._recent: dict[str, deque[bool]] = {}
        self._during: dict[str, list[int]] = {}  # probe -> [in tolerance, samples]

    def observe(self, run: ProbeRun, phase: str) -> None:
        name = run.activity.name
        with self._lock:
            recent = self._recent.setdefault(name, deque(maxlen=ERROR_WINDOW))
            recent.append(run.tolerance_met)
            errors = sum(1 for ok in recent if not ok) / len(recent)
            during = self._during.setdefault(name, [0, 0])
            if phase == "during":
                during[0] += int(run.tolerance_met)
                during[1] += 1
            availability = during[0] / during[1] if during[1] else None
        self._m.impact_error_rate.labels(name).set(errors)
        if availability is not None:
            self._m.impact_availability.labels(name).set(availability)
        latency = run.output.get("latency") if isinstance(run.output, Mapping) else None
        if isinstance(latency, int | float):
            self._m.impact_latency_seconds.labels(name).observe(latency)
