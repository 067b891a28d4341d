"""The injector interface every fault kind implements.

An injector is the fault's logic: validate a spec into a plan, apply the plan
(checkpointing its undo record before each kernel change), revert from an
undo record (idempotently, even from a partial one), and sweep anything that
carries Brownout's markers. Kernel access goes through agent.procs,
agent.cgroups and agent.netlink only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from google.protobuf.message import Message

from brownout.v1 import agent_pb2 as pb


@dataclass(frozen=True)
class Capability:
    available: bool
    reason: str = ""


@dataclass(frozen=True)
class Limits:
    max_fault_duration: float = 3600.0
    max_lease_ttl: float = 300.0
    min_lease_ttl: float = 1.0
    memory_reserve_bytes: int = 256 * 1024 * 1024
    memory_reserve_percent: float = 5.0
    disk_reserve_bytes: int = 100 * 1024 * 1024
    disk_reserve_percent: float = 1.0
    max_active_faults: int = 64


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

    undo: dict[str, Any]
    summary: dict[str, str] = field(default_factory=dict)


# Persist the undo record so far; called before and after each kernel change.
Checkpoint = Callable[[dict[str, Any]], None]


class Injector(Protocol):
    kind: str
    proto_kind: pb.FaultKind.ValueType
    spec_field: str  # the FaultSpec oneof arm
    # Whether the fault's effects outlive a reboot (files on disk). Only then
    # are its journal records fsynced: an agent crash keeps the page cache,
    # and a machine crash takes qdiscs, rules and processes with it.
    survives_reboot: bool

    def probe(self) -> Capability: ...

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> Any:
        """Return a plan, or raise InvalidArgument naming the field and the limit."""
        ...

    def apply(self, fault_id: str, plan: Any, checkpoint: Checkpoint) -> Applied: ...

    def revert(self, fault_id: str, undo: dict[str, Any] | None) -> None:
        """Undo the fault. Idempotent; undo may be None or partial after a crash."""
        ...

    def sweep(self) -> list[str]:
        """Remove every leftover bearing this agent's markers; describe each."""
        ...
