"""What a run records, as typed values: its status, each agent's faults and
their reverts, the ramp's steps, the fault problems, and the journal that
holds them all. to_dict() gives Chaos Toolkit's journal shape (journal.py
writes it); Brownout's records go under extensions[name=brownout].
"""

from __future__ import annotations

import json
import platform
import socket
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from brownout.version import __version__
from controller.experiments.model import Experiment
from controller.experiments.timeline import Timeline


class RunStatus(StrEnum):
    RUNNING = "running"  # still (or a controller that died mid-run)
    COMPLETED = "completed"
    FAILED = "failed"
    ABORTED = "aborted"
    INTERRUPTED = "interrupted"


ENDED = tuple(s for s in RunStatus if s != RunStatus.RUNNING)


@dataclass
class FaultRecord:
    """One injection on one agent, and how it ended."""

    action: str
    kind: str
    duration: float
    injected_at: str
    seconds: float  # the InjectFault call's time
    fault_id: str = ""
    state: str = ""
    applied: dict[str, str] = field(default_factory=dict)
    error: str = ""  # the injection failed
    revert: dict[str, str] | None = None  # state, end_reason, error, at (or error, at)
    ended_early: dict[str, str] | None = None  # how it ended before the run reverted it

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "action": self.action,
            "kind": self.kind,
            "duration": self.duration,
            "injected_at": self.injected_at,
            "seconds": self.seconds,
        }
        if self.fault_id:
            out.update(fault_id=self.fault_id, state=self.state, applied=self.applied)
        if self.error:
            out["error"] = self.error
        if self.revert is not None:
            out["revert"] = self.revert
        if self.ended_early is not None:
            out["ended_early"] = self.ended_early
        return out


@dataclass
class AgentRecord:
    hostname: str = ""
    lease_id: str = ""
    faults: list[FaultRecord] = field(default_factory=list)
    lost: str = ""  # why its lease went
    skipped: str = ""  # why it was not a target
    released: bool = False
    release_error: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "hostname": self.hostname,
            "lease_id": self.lease_id,
            "faults": [f.to_dict() for f in self.faults],
            "lost": self.lost,
            "skipped": self.skipped,
        }
        if self.released:
            out["released"] = True
        if self.release_error:
            out["release_error"] = self.release_error
        return out


@dataclass
class StepRecord:
    index: int
    percent: float
    hold: float
    agents: list[str]
    added: list[str]
    start: str
    blast_radius_percent: float = 0.0
    end: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "percent": self.percent,
            "hold": self.hold,
            "agents": self.agents,
            "added": self.added,
            "blast_radius_percent": self.blast_radius_percent,
            "start": self.start,
            "end": self.end,
        }


@dataclass(frozen=True)
class Problem:
    """The faults did not run as planned on one agent."""

    agent: str
    problem: str  # injection failed | lease lost | fault ended early | revert failed
    detail: str
    fault_id: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"agent": self.agent, "problem": self.problem, "detail": self.detail}
        if self.fault_id:
            out["fault_id"] = self.fault_id
        return out


@dataclass
class RunJournal:
    experiment: Experiment
    run_id: str
    start: str
    status: RunStatus = RunStatus.RUNNING
    end: str | None = None
    duration: float | None = None
    deviated: bool = False
    before: dict[str, Any] | None = None  # steady state before the method
    after: dict[str, Any] | None = None
    run: list[dict[str, Any]] = field(default_factory=list)  # one record per activity
    rollbacks: list[dict[str, Any]] = field(default_factory=list)
    # Brownout's extension
    reason: str = ""
    window: str = ""
    selection: dict[str, object] | None = None
    planned_steps: list[dict[str, Any]] | None = None
    steps: list[StepRecord] = field(default_factory=list)
    agents: dict[str, AgentRecord] = field(default_factory=dict)
    stop_conditions: list[dict[str, Any]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    on_fault_error: str = ""
    signals_ignored: int = 0
    ended: bool = False  # the run's end fields below are set
    timeline: Timeline | None = None
    during: list[dict[str, Any]] = field(default_factory=list)  # runtime.hypothesis
    controls: list[str] = field(default_factory=list)  # control:function, as called

    def agent(self, address: str) -> AgentRecord:
        return self.agents.setdefault(address, AgentRecord())

    def to_dict(self) -> dict[str, Any]:
        ext: dict[str, Any] = {
            "name": "brownout",
            "run_id": self.run_id,
            "dry_run": False,
            "reason": self.reason,
            "selection": self.selection,
            "steps": [s.to_dict() for s in self.steps],
            # list(): one step under the GIL. `brownout serve` renders a live
            # run's journal from another thread while the runner adds agents.
            "agents": {a: r.to_dict() for a, r in list(self.agents.items())},
            "stop_conditions": self.stop_conditions,
            "user_rollbacks": [],
        }
        if self.window:
            ext["window"] = self.window
        if self.controls:
            ext["controls"] = self.controls
        if self.timeline is not None:
            ext["timeline"] = self.timeline.to_dict()
        if self.planned_steps is not None:
            ext["planned_steps"] = self.planned_steps
        if self.ended:
            ext.update(
                on_fault_error=self.on_fault_error,
                faults_ok=not self.problems,
                fault_problems=[p.to_dict() for p in self.problems],
                signals_ignored=self.signals_ignored,
            )
        return {
            "chaoslib-version": None,
            "brownout-version": __version__,
            "platform": platform.platform(),
            "node": socket.gethostname(),
            "experiment": json.loads(json.dumps(self.experiment.raw, default=str)),
            "start": self.start,
            "end": self.end,
            "duration": self.duration,
            "status": str(self.status),
            "deviated": self.deviated,
            "steady_states": {
                "before": self.before,
                "after": self.after,
                "during": list(self.during),
            },
            "run": self.run,
            "rollbacks": self.rollbacks,
            "extensions": [ext],
        }
