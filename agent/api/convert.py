"""Domain <-> wire conversions, kept out of the servicer so both stay small.

Also the journal's SpecCodec: a fault's spec and target are written as the
JSON form of their proto messages (the spec wrapped in its FaultSpec arm),
as every version of the agent has written them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from agent.core.errors import InvalidArgument
from agent.core.events import Event
from agent.core.injects import InjectRequest
from agent.core.model import EndReason, Fault, State
from brownout import kinds
from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb

STATE_TO_PB: dict[State, pb.FaultState.ValueType] = {
    State.PENDING: pb.FAULT_STATE_PENDING,
    State.ACTIVE: pb.FAULT_STATE_ACTIVE,
    State.REVERTING: pb.FAULT_STATE_REVERTING,
    State.REVERTED: pb.FAULT_STATE_REVERTED,
    State.FAILED: pb.FAULT_STATE_FAILED,
    State.REVERT_FAILED: pb.FAULT_STATE_REVERT_FAILED,
}
PB_TO_STATE = {v: k for k, v in STATE_TO_PB.items()}

REASON_TO_PB: dict[EndReason, pb.EndReason.ValueType] = {
    EndReason.CLIENT_REVERT: pb.END_REASON_CLIENT_REVERT,
    EndReason.LEASE_EXPIRED: pb.END_REASON_LEASE_EXPIRED,
    EndReason.LEASE_RELEASED: pb.END_REASON_LEASE_RELEASED,
    EndReason.DURATION_ELAPSED: pb.END_REASON_DURATION_ELAPSED,
    EndReason.HALT: pb.END_REASON_HALT,
    EndReason.AGENT_RESTART: pb.END_REASON_AGENT_RESTART,
    EndReason.AGENT_SHUTDOWN: pb.END_REASON_AGENT_SHUTDOWN,
    EndReason.APPLY_FAILED: pb.END_REASON_APPLY_FAILED,
    EndReason.SWEEP: pb.END_REASON_SWEEP,
    EndReason.TARGET_GONE: pb.END_REASON_TARGET_GONE,
    EndReason.WORKER_DIED: pb.END_REASON_WORKER_DIED,
}

duration = to_duration


def timestamp(wall: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(wall * 1e9))
    return ts


def inject_request(
    req: pb.InjectFaultRequest, known: list[str], caller: str, caller_peer: str
) -> InjectRequest:
    """The domain request; the kind comes from the spec's arm."""
    kind = kinds.of_spec(req.spec)
    if kind is None:
        raise InvalidArgument("spec", f"no fault kind set; set one of {', '.join(known)}")
    return InjectRequest(
        lease_id=req.lease_id,
        kind=kind.name,
        spec=kind.spec_of(req.spec),
        target=req.target,
        duration=(req.duration.seconds, req.duration.nanos),
        request_id=req.request_id,
        caller=caller,
        caller_peer=caller_peer,
    )


def fault_to_pb(fault: Fault) -> pb.Fault:
    kind = kinds.by_name(fault.kind)
    assert isinstance(fault.spec, Message) and isinstance(fault.target, pb.Target)
    msg = pb.Fault(
        id=fault.id,
        kind=kind.value,
        state=STATE_TO_PB[fault.state],
        lease_id=fault.lease_id,
        holder=fault.holder,
        spec=kind.wrap(fault.spec),
        target=fault.target,
        duration=duration(fault.duration),
        created_at=timestamp(fault.created_at),
        error=fault.error,
        applied=fault.applied,
        request_id=fault.request_id,
        revert_attempts=fault.revert_attempts,
    )
    if fault.activated_at is not None:
        msg.activated_at.CopyFrom(timestamp(fault.activated_at))
    if fault.ended_at is not None:
        msg.ended_at.CopyFrom(timestamp(fault.ended_at))
    if fault.expires_at is not None:
        msg.expires_at.CopyFrom(timestamp(fault.expires_at))
    if fault.end_reason is not None:
        msg.end_reason = REASON_TO_PB[fault.end_reason]
    return msg


def event_to_pb(event: Event) -> pb.FaultEvent:
    return pb.FaultEvent(
        fault=fault_to_pb(event.fault),
        previous_state=STATE_TO_PB[event.previous]
        if event.previous
        else pb.FAULT_STATE_UNSPECIFIED,
        at=timestamp(event.at),
    )


class ProtoCodec:
    """core.records.SpecCodec for proto specs and targets."""

    def dump(
        self, kind: str, spec: object, target: object
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        assert isinstance(spec, Message) and isinstance(target, Message)
        wrapped = kinds.by_name(kind).wrap(spec)
        return json_format.MessageToDict(wrapped), json_format.MessageToDict(target)

    def load(
        self, kind: str, spec: Mapping[str, Any], target: Mapping[str, Any]
    ) -> tuple[object, object]:
        full, where = pb.FaultSpec(), pb.Target()
        try:
            json_format.ParseDict(dict(spec), full)
            json_format.ParseDict(dict(target), where)
        except json_format.ParseError as exc:
            raise ValueError(str(exc)) from exc
        return kinds.by_name(kind).spec_of(full), where
