"""The fault record the manager keeps: states, end reasons, timestamps.

A fault's spec and target are opaque here: the injector of its kind reads
them, the API converts them, and the journal stores them through a codec
(records.SpecCodec). The core only moves them around.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any


class State(StrEnum):
    PENDING = "pending"
    ACTIVE = "active"
    REVERTING = "reverting"
    REVERTED = "reverted"
    FAILED = "failed"
    REVERT_FAILED = "revert_failed"


ENDED = frozenset({State.REVERTED, State.FAILED})


class EndReason(StrEnum):
    CLIENT_REVERT = "client_revert"
    LEASE_EXPIRED = "lease_expired"
    LEASE_RELEASED = "lease_released"
    DURATION_ELAPSED = "duration_elapsed"
    HALT = "halt"
    AGENT_RESTART = "agent_restart"
    AGENT_SHUTDOWN = "agent_shutdown"
    APPLY_FAILED = "apply_failed"
    SWEEP = "sweep"
    TARGET_GONE = "target_gone"
    WORKER_DIED = "worker_died"


@dataclass
class Fault:
    id: str
    kind: str
    lease_id: str
    holder: str
    spec: object  # the kind's spec (for the injector of `kind`)
    target: object  # where it applies (for the injector of `kind`)
    duration: float
    created_at: float  # wall clock, for display
    request_id: str = ""
    state: State = State.PENDING
    activated_at: float | None = None
    ended_at: float | None = None
    expires_at: float | None = None  # wall clock rendering of the duration deadline
    lease_ended_at: float | None = None  # wall clock: when its lease expired or was released
    end_reason: EndReason | None = None
    error: str = ""
    applied: dict[str, str] = field(default_factory=dict)
    undo: dict[str, Any] | None = None
    revert_attempts: int = 0
    # Serialises apply and revert of this one fault.
    lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.state in ENDED

    def snapshot(self) -> Fault:
        """A copy that later changes to this fault do not touch."""
        return replace(self, applied=dict(self.applied))
