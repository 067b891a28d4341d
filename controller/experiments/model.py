"""The experiment model: what an experiment file means once parsed (see
parse.py). Chaos Toolkit's shape, with Brownout's settings from its
extension; every value here has been checked."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from brownout import kinds
from brownout.v1 import agent_pb2 as pb
from controller.experiments import tolerances as tol
from controller.experiments import window as win
from controller.experiments.selection import Mode, Selector

FAULT_KINDS = kinds.NAMES  # cpu, memory, disk, io, netem, bandwidth, partition


@dataclass(frozen=True)
class HttpProvider:
    url: str
    method: str = "GET"
    headers: Mapping[str, str] = field(default_factory=dict)
    body: str | None = None
    timeout: float = 5.0
    text_key = "body"


@dataclass(frozen=True)
class PrometheusProvider:
    url: str
    query: str
    timeout: float = 5.0
    # Value to use when the query returns no series (e.g. a rate with no errors).
    empty: float | None = None
    text_key = "value"


@dataclass(frozen=True)
class ProcessProvider:
    path: str
    arguments: tuple[str, ...] = ()
    timeout: float = 30.0
    text_key = "stdout"


@dataclass(frozen=True)
class FaultProvider:
    fault: str
    spec: pb.FaultSpec
    target: pb.Target
    duration: float | None = None
    text_key = "state"

    @property
    def kind(self) -> pb.FaultKind.ValueType:
        return kinds.by_name(self.fault).value


@dataclass(frozen=True)
class PythonProvider:
    """Chaos Toolkit's `python` provider: module.func(**arguments), checked
    when the file is read. `arguments` has the configuration substituted;
    secrets are substituted only when called, so they stay out of journals."""

    module: str
    func: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    secrets: tuple[str, ...] = ()  # the scopes passed as `secrets=`
    timeout: float = 300.0
    # The experiment's values, for `configuration=`, `secrets=` and ${} in
    # the arguments at call time; never shown.
    configuration: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    all_secrets: Mapping[str, Mapping[str, Any]] = field(
        default_factory=dict, repr=False, compare=False
    )
    text_key = "value"

    @property
    def qualname(self) -> str:
        return f"{self.module}.{self.func}"


@dataclass(frozen=True)
class NativeProvider:
    """A chaosbrownout action that `brownout run` does itself (revert_faults:
    the run reverts its faults before the rollbacks, in every end state)."""

    func: str
    text_key = "value"


Provider = (
    HttpProvider
    | PrometheusProvider
    | ProcessProvider
    | FaultProvider
    | PythonProvider
    | NativeProvider
)


@dataclass(frozen=True)
class Control:
    """A Chaos Toolkit control: a module whose *_control functions are called
    around the experiment, the hypothesis, the method, the rollbacks and each
    activity (chaoslib's order)."""

    name: str
    module: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    scope: Literal["before", "after"] | None = None
    automatic: bool = True


@dataclass(frozen=True)
class Activity:
    type: Literal["probe", "action"]
    name: str
    provider: Provider
    tolerance: tol.Tolerance | None = None
    pause_before: float = 0.0
    pause_after: float = 0.0
    raw: Mapping[str, Any] = field(default_factory=dict)
    weight: float = 1.0  # in the resilience score
    impact: bool = False  # feeds the chaos_impact_* metrics while sampled
    background: bool = False  # the method goes on; the activity is awaited at its end
    controls: tuple[Control, ...] = ()  # the activity's own (refs resolved)


@dataclass(frozen=True)
class Hypothesis:
    title: str
    probes: tuple[Activity, ...]


@dataclass(frozen=True)
class StopCondition:
    name: str
    probe: Activity
    sustain: float
    interval: float


@dataclass(frozen=True)
class RampStep:
    percent: float
    hold: float


@dataclass(frozen=True)
class Settings:
    selector: Selector = field(default_factory=Selector)
    mode: Mode = field(default_factory=lambda: Mode("all"))
    seed: int | None = None
    max_fleet_percent: float = 100.0
    on_unreachable: Literal["skip", "abort"] = "skip"
    # A failed injection, a lost lease or a fault that ended early: stop the
    # run at once (abort), or carry on and report it (continue). Either way
    # the run ends failed, not completed.
    on_fault_error: Literal["abort", "continue"] = "abort"
    ramp: tuple[RampStep, ...] = (RampStep(100.0, 0.0),)
    stop_conditions: tuple[StopCondition, ...] = ()
    lease_ttl: float = 15.0
    window: win.RunWindow | None = None
    # The timeline: the hypothesis's probes sampled this often while the
    # faults are on, and after the revert for at most `recovery` seconds
    # until they meet their tolerance again (0: not at all).
    sample_interval: float = 5.0
    recovery: float = 60.0


RollbackStrategy = Literal["default", "always", "never", "deviated"]
HypothesisStrategy = Literal[
    "default", "before-method-only", "after-method-only", "during-method-only", "continuously"
]


@dataclass(frozen=True)
class Runtime:
    """Chaos Toolkit's `runtime:`. The rollback strategy decides the file's
    rollbacks only: Brownout reverts its faults in every end state."""

    rollbacks: RollbackStrategy = "default"
    hypothesis: HypothesisStrategy = "default"
    frequency: float = 1.0  # between two hypotheses during the method
    fail_fast: bool = False  # a deviation during the method fails the run at once

    @property
    def before(self) -> bool:
        return self.hypothesis in ("default", "before-method-only", "continuously")

    @property
    def during(self) -> bool:
        return self.hypothesis in ("during-method-only", "continuously")

    @property
    def after(self) -> bool:
        return self.hypothesis in ("default", "after-method-only", "continuously")


@dataclass(frozen=True)
class Experiment:
    title: str
    description: str
    tags: tuple[str, ...]
    hypothesis: Hypothesis | None
    method: tuple[Activity, ...]
    rollbacks: tuple[Activity, ...]
    settings: Settings
    raw: Mapping[str, Any]
    source: str = ""
    runtime: Runtime = field(default_factory=Runtime)
    controls: tuple[Control, ...] = ()
    # Values for `configuration=` and `secrets=` arguments; never journaled.
    configuration: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def fault_actions(self) -> list[Activity]:
        return [a for a in self.method if isinstance(a.provider, FaultProvider)]
