"""The fault kinds: one table from a kind's name to its wire enum, its FaultSpec
arm and its `brownout inject` subcommand.

The name ("cpu") is what the agent's injectors, its journal, the experiment
file (`fault: cpu`) and the metrics' `kind` label use. Adding a kind adds a
row here, a message, an arm and an enum value in the proto, and an injector.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from brownout.v1 import agent_pb2 as pb


@dataclass(frozen=True)
class Kind:
    name: str  # "cpu"
    value: pb.FaultKind.ValueType  # pb.FAULT_KIND_CPU
    field: str  # the FaultSpec oneof arm: FaultSpec.cpu
    cli: str  # `brownout inject cpu`

    def spec_of(self, spec: pb.FaultSpec) -> Message:
        """This kind's message inside a FaultSpec."""
        message: Message = getattr(spec, self.field)
        return message

    def wrap(self, message: Message) -> pb.FaultSpec:
        """A FaultSpec holding message as this kind's arm."""
        spec = pb.FaultSpec()
        getattr(spec, self.field).CopyFrom(message)
        return spec


KINDS: tuple[Kind, ...] = (
    Kind("cpu", pb.FAULT_KIND_CPU, "cpu", "cpu"),
    Kind("memory", pb.FAULT_KIND_MEMORY, "memory", "memory"),
    Kind("disk", pb.FAULT_KIND_DISK, "disk", "disk"),
    Kind("io", pb.FAULT_KIND_IO, "io", "io"),
    Kind("netem", pb.FAULT_KIND_NETEM, "netem", "netem"),
    Kind("bandwidth", pb.FAULT_KIND_BANDWIDTH, "bandwidth", "bandwidth"),
    Kind("partition", pb.FAULT_KIND_PARTITION, "partition", "partition"),
    Kind("dns", pb.FAULT_KIND_DNS, "dns", "dns"),
    Kind("clock", pb.FAULT_KIND_CLOCK, "clock", "clock"),
    Kind("process", pb.FAULT_KIND_PROCESS, "process", "process"),
    Kind("pause", pb.FAULT_KIND_PAUSE, "pause", "pause"),
)
NAMES = tuple(k.name for k in KINDS)
_BY_NAME = {k.name: k for k in KINDS}
_BY_FIELD = {k.field: k for k in KINDS}


def by_name(name: str) -> Kind:
    """The kind called name; KeyError names the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"unknown fault kind {name!r}; known: {', '.join(NAMES)}") from None


def by_value(value: int) -> Kind | None:
    return next((k for k in KINDS if k.value == value), None)


def of_spec(spec: pb.FaultSpec) -> Kind | None:
    """The kind a FaultSpec holds, or None when no arm is set."""
    field = spec.WhichOneof("spec")
    return None if field is None else _BY_FIELD.get(field)


def name_of(value: int) -> str:
    """A FaultKind value as its name ("cpu"). A value this version does not know
    (a newer agent's kind) renders as "kind 8" rather than failing."""
    kind = by_value(value)
    if kind is not None:
        return kind.name
    if value in pb.FaultKind.values():
        return pb.FaultKind.Name(value).removeprefix("FAULT_KIND_").lower()  # type: ignore[arg-type]
    return f"kind {value}"
