"""The injector contract every fault kind implements.

An injector is the fault's logic: validate a spec into a plan, apply the plan
(checkpointing its undo record before each kernel change), revert from an
undo record (idempotently, even from a partial one), and sweep anything that
carries Brownout's markers. It touches the system only through agent.kernel.

It lives in the core, which runs injectors, and knows the wire format only
as opaque values: a spec and a target arrive from agent.api and are handed to
validate unread. Each injector types them as its own messages.

The contract is generic in the plan: validate returns a PlanT and apply takes
one, so each injector's plan is a typed value from one call to the next.
Undo records are JSON objects (they are journaled), typed per kind as
TypedDicts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from agent.core.limits import Limits

PlanT = TypeVar("PlanT")
# The kind's spec message and the request's Target, opaque to the core.
Spec = Any
Target = Any


@dataclass(frozen=True)
class Capability:
    available: bool
    reason: str = ""


@dataclass(frozen=True)
class Markers:
    """What identifies this agent's leftovers in the kernel.

    `instance` is derived from the state dir, so two agents on one machine
    (as in tests) never sweep each other's processes.
    """

    instance: str
    state_dir: Path


@dataclass(frozen=True)
class InjectorContext:
    limits: Limits
    markers: Markers
    agent_pid: int
    # The agent's own gRPC listen address (host:port), never cut off.
    listen: str = "127.0.0.1:7070"


@dataclass(frozen=True)
class RequestContext:
    """Who asked, for faults that must never cut the asker off."""

    caller_peer: str = ""  # gRPC peer of the InjectFault call, e.g. "ipv4:10.0.0.5:41234"
    lease_peer: str = ""  # gRPC peer that last acquired or renewed the lease


@dataclass
class Applied:
    """What apply did: the final undo record and a summary for the caller."""

    undo: Mapping[str, Any]
    summary: dict[str, str] = field(default_factory=dict)


# Persist the undo record so far; called before each kernel change.
Checkpoint = Callable[[Mapping[str, Any]], None]


@dataclass(frozen=True)
class WatchedTarget:
    """A process whose end means a fault's target is gone (a container's init)."""

    label: str  # for people, and the fault's applied summary
    pid: int
    start_time: int


class TargetWatch(Protocol):
    """Ends faults whose target ends: resolves a request's target to the process
    that stands for it, and says when that process exits (see manager.target_gone)."""

    def resolve(self, target: Target) -> WatchedTarget | None: ...

    def watch(self, fault_id: str, target: WatchedTarget) -> None: ...

    def unwatch(self, fault_id: str) -> None: ...


class NoTargetWatch:
    """For runtimes (tests, the sweep) that watch no target."""

    def resolve(self, target: Target) -> WatchedTarget | None:
        return None

    def watch(self, fault_id: str, target: WatchedTarget) -> None:
        pass

    def unwatch(self, fault_id: str) -> None:
        pass


class Injector(Protocol[PlanT]):
    kind: str  # the row of brownout.kinds this injector serves
    # Whether the fault's effects outlive a reboot (files on disk). Only then
    # are its journal records fsynced: an agent crash keeps the page cache,
    # and a machine crash takes qdiscs, rules and processes with it.
    survives_reboot: bool

    def probe(self) -> Capability:
        """Is this kind possible on this kernel, and if not, why (shown in GetInfo)."""
        ...

    def validate(self, spec: Spec, target: Target, request: RequestContext) -> PlanT:
        """Return a plan, or raise InvalidArgument naming the field and the limit."""
        ...

    def apply(self, fault_id: str, plan: PlanT, checkpoint: Checkpoint) -> Applied: ...

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        """Undo the fault. Idempotent; undo may be None or partial after a crash."""
        ...

    def sweep(self) -> list[str]:
        """Remove every leftover bearing this agent's markers; describe each."""
        ...
