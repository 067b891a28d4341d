"""Pre-flight: resolve targets once, check every planned fault against each agent.

The plan is computed before anything is injected and recorded in the journal:
who was eligible, who was skipped and why, the seed and the ramp order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from brownout.kinds import name_of as kind_name
from brownout.v1 import agent_pb2 as pb
from controller.agents.fleet import AgentStatus
from controller.experiments.model import Experiment, FaultProvider
from controller.experiments.selection import Selection, new_seed, ramp_counts, select

# Added to the planned time when an action gives no duration: the fault must
# outlive the run's last step, and the controller reverts it at the end anyway.
DURATION_MARGIN = 60.0


class PreflightAbort(Exception):
    """The run must not start; the message says why."""

    def __init__(self, reason: str, label: str) -> None:
        super().__init__(reason)
        self.label = label  # low-cardinality reason for chaos_safety_aborts_total


@dataclass
class Step:
    index: int
    percent: float
    hold: float
    agents: list[str]

    def added(self, previous: list[str]) -> list[str]:
        return [a for a in self.agents if a not in previous]


@dataclass
class Plan:
    statuses: dict[str, AgentStatus]
    selection: Selection
    steps: list[Step]
    durations: dict[str, float]
    problems: dict[str, list[str]] = field(default_factory=dict)

    @property
    def targets(self) -> list[str]:
        return self.selection.targets

    def steps_record(self) -> list[dict[str, Any]]:
        return [
            {"index": s.index, "percent": s.percent, "hold": s.hold, "agents": s.agents}
            for s in self.steps
        ]


def planned_seconds(experiment: Experiment, steps: int) -> float:
    pauses = sum(a.pause_before + a.pause_after for a in experiment.method)
    return sum(s.hold for s in experiment.settings.ramp) + steps * pauses


def fault_durations(experiment: Experiment) -> dict[str, float]:
    default = planned_seconds(experiment, len(experiment.settings.ramp)) + DURATION_MARGIN
    out: dict[str, float] = {}
    for a in experiment.fault_actions:
        assert isinstance(a.provider, FaultProvider)
        out[a.name] = a.provider.duration if a.provider.duration is not None else default
    return out


def _skip_reason(status: AgentStatus, kinds: set[pb.FaultKind.ValueType]) -> str:
    if status.info is None:
        return f"unreachable: {status.error}"
    if status.info.halted:
        return "halted (latched): resume it first"
    caps = {c.kind: c for c in status.info.capabilities}
    for kind in sorted(kinds):
        cap = caps.get(kind)
        if cap is None:
            return f"does not know fault kind {kind_name(kind)} (older agent)"
        if not cap.available:
            return f"cannot run {kind_name(kind)}: {cap.reason}"
    return ""


def limit_problems(
    info: pb.AgentInfo, experiment: Experiment, durations: dict[str, float]
) -> list[str]:
    """What this agent's limits would refuse, found before anything is injected."""
    lim = info.limits
    problems: list[str] = []
    ttl = experiment.settings.lease_ttl
    lo, hi = lim.min_lease_ttl.ToTimedelta(), lim.max_lease_ttl.ToTimedelta()
    if not lo.total_seconds() <= ttl <= hi.total_seconds():
        problems.append(f"lease-ttl {ttl:g}s outside the agent's {lo}..{hi}")
    max_duration = lim.max_fault_duration.ToTimedelta().total_seconds()
    for name, d in durations.items():
        if max_duration and d > max_duration:
            problems.append(f"action {name}: duration {d:g}s exceeds the agent's {max_duration:g}s")
    needed = len(durations)
    free = lim.max_active_faults - info.active_faults if lim.max_active_faults else needed
    if needed > free:
        problems.append(f"needs {needed} fault slot(s), the agent has {free} free")
    return problems


def make_plan(
    experiment: Experiment,
    statuses: dict[str, AgentStatus],
    seed: int | None = None,
) -> Plan:
    s = experiment.settings
    matching = [a for a, st in statuses.items() if s.selector.matches(st.labels)]
    unreachable = [a for a in matching if not statuses[a].reachable]
    if unreachable and s.on_unreachable == "abort":
        detail = "; ".join(f"{a} ({statuses[a].error})" for a in unreachable)
        raise PreflightAbort(
            f"unreachable agent(s) and on-unreachable is abort: {detail}", "unreachable"
        )
    kinds = set()
    for a in experiment.fault_actions:
        assert isinstance(a.provider, FaultProvider)
        kinds.add(a.provider.kind)
    skipped = {a: r for a in matching if (r := _skip_reason(statuses[a], kinds))}
    eligible = [a for a in matching if a not in skipped]
    chosen_seed = seed if seed is not None else s.seed if s.seed is not None else new_seed()
    selection = select(
        eligible, s.mode, chosen_seed, len(statuses), s.max_fleet_percent, s.selector.text
    )
    selection.skipped = skipped
    selection.target_labels = {a: statuses[a].labels for a in selection.targets}
    counts = ramp_counts([r.percent for r in s.ramp], len(selection.targets))
    steps = [
        Step(i, r.percent, r.hold, selection.targets[:n])
        for i, (r, n) in enumerate(zip(s.ramp, counts, strict=True))
    ]
    durations = fault_durations(experiment)
    problems: dict[str, list[str]] = {}
    for address in selection.targets:
        info = statuses[address].info
        assert info is not None
        found = limit_problems(info, experiment, durations)
        if found:
            problems[address] = found
    return Plan(statuses, selection, steps, durations, problems)
