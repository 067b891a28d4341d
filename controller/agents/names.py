"""Names of the agent's wire enums, as people read them (logs, journals, tables)."""

from __future__ import annotations

from brownout import kinds
from brownout.v1 import agent_pb2 as pb


def state_name(state: pb.FaultState.ValueType) -> str:
    return pb.FaultState.Name(state).removeprefix("FAULT_STATE_").lower()


def kind_name(kind: pb.FaultKind.ValueType) -> str:
    return kinds.name_of(kind)


def reason_name(reason: pb.EndReason.ValueType) -> str:
    return pb.EndReason.Name(reason).removeprefix("END_REASON_").lower()
