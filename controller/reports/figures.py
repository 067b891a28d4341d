"""What a run's report says, computed from its journal and timeline alone:
the summary, each probe's samples with the fault spans, the recovery
figures, the resilience score and the findings.

- **Fault spans**: each fault from its activation to its end, as the agent
  timed them, grouped by the ramp step that injected it.
- **Time to detect**: from the first fault's activation to the first sample
  out of tolerance after it (none if the probe never deviated).
- **Time to recover**: from the last fault's end (the revert) until the
  probe met its tolerance again: the first sample in tolerance at or after
  the revert, when the last sample before it was out (0 if it never was).
  Its precision is the recovery sampling step (at most 1 s).
- **Availability**: the share of the samples taken while faults were on
  that met the tolerance.
- **Resilience score** (Litmus's definition): the weighted share of probe
  checks that passed, in percent. Each probe weighs its `weight` (default
  1); a probe's share is the samples in tolerance over all its samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from controller.experiments import journal as jr

LITMUS_SCORE = "https://docs.litmuschaos.io/docs/concepts/resilience-score"


@dataclass(frozen=True)
class Span:
    agent: str
    fault_id: str
    fault: str
    activity: str
    step: int
    start: float
    end: float | None  # None: still on when the journal was written


@dataclass
class ProbeFigures:
    name: str
    kind: str
    tolerance: dict[str, Any]
    samples: list[list[Any]]  # [t, value, met, phase, (text)]
    weight: float = 1.0
    time_to_detect: float | None = None
    time_to_recover: float | None = None
    recovered: bool | None = None  # None: no revert to recover from
    availability: float | None = None
    passed: int = 0
    checks: int = 0
    deviations: list[tuple[float, float]] = field(default_factory=list)  # (from, to) seconds
    downsampled: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "tolerance": self.tolerance.get("describe", ""),
            "weight": self.weight,
            "samples": len(self.samples),
            "checks_passed": self.passed,
            "checks": self.checks,
            "time_to_detect_s": self.time_to_detect,
            "time_to_recover_s": self.time_to_recover,
            "recovered": self.recovered,
            "availability": self.availability,
            "deviations": [{"from_s": a, "to_s": b} for a, b in self.deviations],
            "downsampled": self.downsampled,
        }


@dataclass
class Report:
    run_id: str
    title: str
    hypothesis: str
    status: str
    reason: str
    started: str
    duration: float | None
    targets: list[str]
    blast_radius: float
    agents: dict[str, str]  # address -> outcome
    steps: list[dict[str, Any]]
    spans: list[Span]
    first_active: float | None
    last_end: float | None
    probes: list[ProbeFigures]
    marks: list[dict[str, Any]]  # aborts, kill switch, lost leases, notes
    notes: list[dict[str, Any]]
    findings: list[str]
    score: float | None
    deviated: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "title": self.title,
            "hypothesis": self.hypothesis,
            "status": self.status,
            "reason": self.reason,
            "started": self.started,
            "duration_s": self.duration,
            "deviated": self.deviated,
            "targets": self.targets,
            "blast_radius_percent": self.blast_radius,
            "agents": self.agents,
            "steps": self.steps,
            "faults": [s.__dict__ for s in self.spans],
            "probes": [p.as_dict() for p in self.probes],
            "resilience_score": self.score,
            "resilience_score_definition": LITMUS_SCORE,
            "notes": self.notes,
            "findings": self.findings,
        }


def _seconds(start: str, at: str | None) -> float | None:
    if not at:
        return None
    return round(
        datetime.fromisoformat(at).timestamp() - datetime.fromisoformat(start).timestamp(), 3
    )


def spans(timeline: dict[str, Any]) -> list[Span]:
    """Each fault's [activation, end] from its timeline events."""
    by_id: dict[tuple[str, str], dict[str, Any]] = {}
    for e in timeline.get("events", []):
        if e.get("kind") != "fault":
            continue
        key = (e["agent"], e["fault_id"])
        rec = by_id.setdefault(key, {"agent": e["agent"], "fault_id": e["fault_id"],
                                     "fault": "", "activity": "", "step": -1,
                                     "start": None, "end": None})  # fmt: skip
        for k in ("fault", "activity", "step"):
            if e.get(k) not in (None, "", -1):
                rec[k] = e[k]
        if e["state"] in ("active",):
            rec["start"] = e["t"] if rec["start"] is None else min(rec["start"], e["t"])
        elif e["state"] in ("reverted", "failed"):
            rec["end"] = e["t"] if rec["end"] is None else min(rec["end"], e["t"])
    out = [Span(**r) for r in by_id.values() if r["start"] is not None]
    return sorted(out, key=lambda s: (s.start, s.agent))


def _probe(name: str, meta: dict[str, Any], rows: list[list[Any]], first: float | None,
           last: float | None, weights: dict[str, float]) -> ProbeFigures:  # fmt: skip
    p = ProbeFigures(name, meta.get("kind", ""), meta.get("tolerance", {}), rows,
                     weights.get(name, 1.0))  # fmt: skip
    p.checks, p.passed = len(rows), sum(1 for r in rows if r[2])
    start: float | None = None
    for r in rows:  # deviations: runs of samples out of tolerance
        if not r[2] and start is None:
            start = r[0]
        elif r[2] and start is not None:
            p.deviations.append((start, r[0]))
            start = None
    if start is not None:
        p.deviations.append((start, rows[-1][0]))
    if first is not None:
        out = next((r[0] for r in rows if r[0] >= first and not r[2]), None)
        p.time_to_detect = None if out is None else round(out - first, 3)
        during = [r for r in rows if first <= r[0] <= (last if last is not None else r[0])]
        during = [r for r in during if r[3] == "during"] or during
        if during:
            p.availability = round(sum(1 for r in during if r[2]) / len(during), 4)
    if last is not None:
        before = [r for r in rows if r[0] < last]
        if before and not before[-1][2]:
            back = next((r[0] for r in rows if r[0] >= last and r[2]), None)
            p.recovered = back is not None
            p.time_to_recover = None if back is None else round(back - last, 3)
        else:
            p.recovered, p.time_to_recover = True, 0.0
    return p


def build(journal: dict[str, Any]) -> Report:
    b = jr.brownout(journal)
    tl = b.get("timeline") or {"samples": {}, "probes": {}, "events": []}
    start = journal["start"]
    fault_spans = spans(tl)
    first = min((s.start for s in fault_spans), default=None)
    ends = [s.end for s in fault_spans if s.end is not None]
    last = max(ends) if ends and len(ends) == len(fault_spans) else None
    experiment = journal.get("experiment") or {}
    hyp = experiment.get("steady-state-hypothesis") or {}
    weights = {p.get("name", ""): float(p.get("weight", 1))
               for p in hyp.get("probes", []) if isinstance(p, dict)}  # fmt: skip
    probes = [
        _probe(name, tl["probes"].get(name, {}), rows, first, last, weights)
        for name, rows in tl.get("samples", {}).items()
    ]
    for p in probes:
        p.downsampled = (tl.get("downsampled") or {}).get(p.name)
    total = sum(p.weight for p in probes if p.checks)
    score = (
        round(100 * sum(p.weight * p.passed / p.checks for p in probes if p.checks) / total, 1)
        if total else None
    )  # fmt: skip
    sel = b.get("selection") or {}
    agents: dict[str, str] = {}
    for address, rec in (b.get("agents") or {}).items():
        faults = rec.get("faults", [])
        if rec.get("skipped"):
            agents[address] = f"skipped: {rec['skipped']}"
        elif rec.get("lost"):
            agents[address] = f"lease lost: {rec['lost']}"
        elif any(f.get("error") for f in faults):
            agents[address] = "injection failed: " + "; ".join(f["error"] for f in faults
                                                                if f.get("error"))  # fmt: skip
        elif faults:
            ok = all((f.get("revert") or {}).get("state") == "reverted" for f in faults)
            agents[address] = f"{len(faults)} fault(s), " + (
                "reverted" if ok else "NOT all reverted"
            )
    steps = [{"step": s["index"] + 1, "percent": s["percent"], "agents": len(s["agents"]),
              "blast_radius_percent": s.get("blast_radius_percent"),
              "start_s": _seconds(start, s.get("start")), "end_s": _seconds(start, s.get("end"))}
             for s in b.get("steps", [])]  # fmt: skip
    events = tl.get("events", [])
    marks = [e for e in events if e["kind"] in ("aborted", "kill_switch", "failed", "interrupted",
                                                 "lease_lost", "note")]  # fmt: skip
    notes = [{"t": e["t"], "by": e.get("by", ""), "text": e.get("text", "")}
             for e in events if e["kind"] == "note"]  # fmt: skip
    findings = []
    for p in probes:
        for a, z in p.deviations:
            findings.append(f"{p.name} out of tolerance ({p.tolerance.get('describe', '')})"
                            f" from T+{a:.1f}s to T+{z:.1f}s")  # fmt: skip
        if p.recovered is False:
            findings.append(f"{p.name} had not recovered when the recovery window ended")
    for problem in b.get("fault_problems", []):
        findings.append(f"{problem['agent']}: {problem['problem']}: {problem['detail']}")
    if b.get("reason") and journal.get("status") != "completed":
        findings.append(f"the run ended {journal.get('status')}: {b['reason']}")
    return Report(
        run_id=b["run_id"],
        title=experiment.get("title", ""),
        hypothesis=hyp.get("title", ""),
        status=str(journal.get("status", "")),
        reason=b.get("reason", ""),
        started=start,
        duration=journal.get("duration"),
        targets=list(sel.get("targets", [])),
        blast_radius=max(
            (s.get("blast_radius_percent") or 0 for s in b.get("steps", [])), default=0.0
        ),
        agents=agents,
        steps=steps,
        spans=fault_spans,
        first_active=first,
        last_end=last,
        probes=probes,
        marks=marks,
        notes=notes,
        findings=findings,
        score=score,
        deviated=bool(journal.get("deviated")),
    )
