"""Domain <-> wire conversions, kept out of the servicer so both stay small."""

from __future__ import annotations

from google.protobuf.duration_pb2 import Duration
from google.protobuf.timestamp_pb2 import Timestamp

from agent.core.model import EndReason, Fault, State
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


def timestamp(wall: float) -> Timestamp:
    ts = Timestamp()
    ts.FromNanoseconds(int(wall * 1e9))
    return ts


def duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def fault_to_pb(fault: Fault, kind_pb: pb.FaultKind.ValueType) -> pb.Fault:
    msg = pb.Fault(
        id=fault.id,
        kind=kind_pb,
        state=STATE_TO_PB[fault.state],
        lease_id=fault.lease_id,
        holder=fault.holder,
        spec=fault.spec,
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
