"""The journal record of a fault: what recovery needs to revert it.

A record is written at intent (before anything is applied), before each
kernel change (with the undo record so far: "applying"), and once more
after apply if the final undo record differs from the last checkpoint
("applied"). Specs and targets are written through a SpecCodec, which the
composition root supplies: the core does not know their wire format. The
shape of a record is stable across versions, so a newer agent recovers an
older one's journal.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol, TypedDict

from agent.core.model import Fault, State

Phase = Literal["intent", "applying", "applied"]


class Record(TypedDict):
    fault_id: str
    kind: str
    phase: Phase
    lease_id: str
    holder: str
    request_id: str
    spec: dict[str, Any]
    target: dict[str, Any]
    duration: float
    created_at: float
    boot_id: str
    undo: dict[str, Any] | None


class SpecCodec(Protocol):
    """Specs and targets to and from the JSON a record holds."""

    def dump(
        self, kind: str, spec: object, target: object
    ) -> tuple[dict[str, Any], dict[str, Any]]: ...

    def load(
        self, kind: str, spec: Mapping[str, Any], target: Mapping[str, Any]
    ) -> tuple[object, object]:
        """Raises ValueError if the JSON does not parse (the fault is still recovered)."""
        ...


def record(fault: Fault, phase: Phase, boot_id: str, codec: SpecCodec) -> Record:
    spec, target = codec.dump(fault.kind, fault.spec, fault.target)
    return {
        "fault_id": fault.id,
        "kind": fault.kind,
        "phase": phase,
        "lease_id": fault.lease_id,
        "holder": fault.holder,
        "request_id": fault.request_id,
        "spec": spec,
        "target": target,
        "duration": fault.duration,
        "created_at": fault.created_at,
        "boot_id": boot_id,
        "undo": None if fault.undo is None else dict(fault.undo),
    }


def fault_from(
    fault_id: str,
    rec: Mapping[str, Any],
    codec: SpecCodec,
    on_unreadable: Callable[[str], None],
) -> Fault:
    """The fault a record describes, as active (recovery reverts it next).
    A spec that no longer parses is reported and left empty: the undo record
    is all a revert needs."""
    kind = str(rec["kind"])
    try:
        spec, target = codec.load(kind, rec.get("spec", {}), rec.get("target", {}))
    except ValueError as exc:
        on_unreadable(str(exc))
        spec, target = codec.load(kind, {}, {})
    return Fault(
        id=fault_id,
        kind=kind,
        lease_id=str(rec.get("lease_id", "")),
        holder=str(rec.get("holder", "")),
        spec=spec,
        target=target,
        duration=float(rec.get("duration", 0.0)),
        created_at=float(rec.get("created_at", 0.0)),
        request_id=str(rec.get("request_id", "")),
        state=State.ACTIVE,
        undo=rec.get("undo"),
    )


def undo_json(undo: Mapping[str, Any] | None) -> str:
    """An undo record as canonical JSON, to tell whether it changed."""
    return json.dumps(undo, sort_keys=True, default=str)
