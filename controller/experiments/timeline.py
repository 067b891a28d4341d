"""A run's timeline: every probe and stop-condition sample (value, met or
not), every fault state change on every agent, the steps, pauses, aborts,
lost leases and the people's notes, each at its time.

It is written from several threads (the sampler, the stop conditions, the
fleet's loop, an API call adding a note) and read whole into the journal.
Its size is bounded: a probe's samples are halved when they reach
MAX_SAMPLES (every other one kept, and every change between met and not met,
so no deviation's edges are lost), and the factor is reported; events other
than fault changes and notes are capped at MAX_EVENTS. Fault events are
never dropped.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Any

from controller.experiments import tolerances as tol

MAX_SAMPLES = 4096  # per probe, before halving
MAX_EVENTS = 5000  # steps, pauses, activities, lost leases (fault events and notes: never dropped)
MAX_NOTES = 1000
MAX_NOTE = 2000  # characters
DEFAULT_INTERVAL = 5.0
DEFAULT_RECOVERY = 60.0

# Events that are never dropped.
KEPT = frozenset({"fault", "note"})


def note_text(text: str) -> str:
    """A note's text, trimmed; ValueError if empty or longer than MAX_NOTE."""
    text = text.strip()
    if not text:
        raise ValueError("a note needs some text")
    if len(text) > MAX_NOTE:
        raise ValueError(f"a note is at most {MAX_NOTE} characters, this one {len(text)}")
    return text


def chartable(value: object) -> float | None:
    """A sample's value as a number for a chart, or None (text, missing)."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    return None


def band(t: tol.Tolerance | None) -> dict[str, Any]:
    """The tolerance as a chart draws it."""
    if t is None:
        return {"describe": "no tolerance"}
    out: dict[str, Any] = {"describe": t.describe(), "kind": t.kind}
    if t.kind == "range":
        out["low"], out["high"] = t.low, t.high
    elif t.kind == "exact" and chartable(t.value) is not None:
        out["low"] = out["high"] = chartable(t.value)
    return out


class Timeline:
    def __init__(
        self,
        interval: float = DEFAULT_INTERVAL,
        recovery: float = DEFAULT_RECOVERY,
        max_samples: int = MAX_SAMPLES,
    ) -> None:
        self.interval = interval
        self.recovery = recovery
        self._max = max_samples
        self._lock = threading.Lock()
        self._t0 = time.time()
        self._start = datetime.now(UTC).isoformat()
        self._probes: dict[str, dict[str, Any]] = {}
        self._samples: dict[str, list[list[Any]]] = {}
        self._seen: dict[str, int] = {}
        self._factor: dict[str, int] = {}
        self._events: list[dict[str, Any]] = []
        self._dropped = 0
        self._others = 0
        self._notes = 0
        self._faults: dict[tuple[str, str, str], dict[str, Any]] = {}  # (agent, id, state)

    def begin(self, start_iso: str) -> None:
        """The run's start: times are seconds from here."""
        with self._lock:
            self._start = start_iso
            self._t0 = datetime.fromisoformat(start_iso).timestamp()

    def _t(self, at: float | None = None) -> float:
        return round((time.time() if at is None else at) - self._t0, 3)

    # ------------------------------------------------------------ samples

    def probe(self, name: str, kind: str, tolerance: tol.Tolerance | None) -> None:
        with self._lock:
            self._probes.setdefault(name, {"kind": kind, "tolerance": band(tolerance)})

    def sample(
        self, name: str, observed: object, met: bool, phase: str, error: str = "", at: str = ""
    ) -> None:
        """One probe result, timed when the probe started (at, ISO) or now."""
        t = self._t(datetime.fromisoformat(at).timestamp()) if at else self._t()
        row: list[Any] = [t, chartable(observed), met, phase]
        if error:
            row.append(error[:200])
        elif chartable(observed) is None and observed is not None:
            row.append(str(observed)[:200])
        with self._lock:
            rows = self._samples.setdefault(name, [])
            rows.append(row)
            self._seen[name] = self._seen.get(name, 0) + 1
            if len(rows) >= self._max:
                self._samples[name] = _halve(rows)
                self._factor[name] = self._factor.get(name, 1) * 2

    # ------------------------------------------------------------- events

    def event(self, kind: str, **data: Any) -> None:
        at = data.pop("at", None)
        t = self._t(datetime.fromisoformat(at).timestamp()) if isinstance(at, str) else self._t()
        with self._lock:
            if kind not in KEPT:
                if self._others >= MAX_EVENTS:
                    self._dropped += 1
                    return
                self._others += 1
            self._events.append({"t": t, "kind": kind, **data})

    def fault(self, agent: str, fault_id: str, state: str, **data: Any) -> None:
        """A fault's state change, once per (agent, fault, state) however many
        ways it is heard of (the watch stream, the inject and revert answers)."""
        at = data.pop("at", None)
        t = self._t(datetime.fromisoformat(at).timestamp()) if isinstance(at, str) else self._t()
        with self._lock:
            key = (agent, fault_id, state)
            seen = self._faults.get(key)
            if seen is not None:  # heard before: fill in what that one lacked
                seen.update({k: v for k, v in data.items() if v not in ("", -1, None)})
                return
            event = {"t": t, "kind": "fault", "agent": agent, "fault_id": fault_id,
                     "state": state, **data}  # fmt: skip
            self._faults[key] = event
            self._events.append(event)

    def note(self, text: str, by: str) -> dict[str, Any]:
        text = note_text(text)
        with self._lock:
            if self._notes >= MAX_NOTES:
                raise ValueError(f"this run already holds {MAX_NOTES} notes")
            self._notes += 1
        at = datetime.now(UTC).isoformat()
        self.event("note", at=at, text=text, by=by)
        return {"at": at, "text": text, "by": by}

    # -------------------------------------------------------------- read

    def to_dict(self) -> dict[str, Any]:
        with self._lock:
            return {
                "start": self._start,
                "interval": self.interval,
                "recovery": self.recovery,
                "probes": {k: dict(v) for k, v in self._probes.items()},
                # By start time: the sampler and the hypothesis may overlap.
                "samples": {
                    k: sorted((list(r) for r in v), key=lambda r: r[0])
                    for k, v in self._samples.items()
                },
                "downsampled": {
                    k: {"factor": f, "seen": self._seen[k], "kept": len(self._samples[k])}
                    for k, f in self._factor.items()
                },
                "events": sorted((dict(e) for e in self._events), key=lambda e: e["t"]),
                "events_dropped": self._dropped,
            }


def _halve(rows: list[list[Any]]) -> list[list[Any]]:
    """Every other sample, and every sample where met changes (a deviation's
    edges), and the last one."""
    kept = []
    for i, row in enumerate(rows):
        edge = i > 0 and row[2] != rows[i - 1][2]
        after = i + 1 < len(rows) and rows[i + 1][2] != row[2]
        if i % 2 == 0 or edge or after or i == len(rows) - 1:
            kept.append(row)
    if len(kept) > len(rows) * 3 // 4:  # a probe flapping every sample: plain halving
        kept = rows[::2]
    return kept
