"""The fault-kind table covers the wire contract, both ways, and the CLI."""

from __future__ import annotations

import pytest

from brownout import faultspecs, kinds
from brownout.v1 import agent_pb2 as pb

pytestmark = pytest.mark.unit


def test_every_enum_value_and_spec_arm_has_exactly_one_row() -> None:
    values = {v for v in pb.FaultKind.values() if v != pb.FAULT_KIND_UNSPECIFIED}
    arms = {f.name for f in pb.FaultSpec.DESCRIPTOR.oneofs_by_name["spec"].fields}
    assert {k.value for k in kinds.KINDS} == values
    assert {k.field for k in kinds.KINDS} == arms
    assert len({k.name for k in kinds.KINDS}) == len(kinds.KINDS)


def test_each_row_agrees_with_the_enum_and_the_cli() -> None:
    for k in kinds.KINDS:
        assert pb.FaultKind.Name(k.value) == f"FAULT_KIND_{k.name.upper()}"
        assert kinds.by_name(k.name) is k and kinds.by_value(k.value) is k
        assert k.cli == faultspecs.by_name(k.cli).name
    assert [f.name for f in faultspecs.KINDS] == [k.cli for k in kinds.KINDS]


def test_specs_wrap_and_unwrap() -> None:
    spec = kinds.by_name("cpu").wrap(pb.CpuSpec(cores=2, load_percent=10))
    assert kinds.of_spec(spec) is kinds.by_name("cpu")
    assert kinds.by_name("cpu").spec_of(spec) == pb.CpuSpec(cores=2, load_percent=10)
    assert kinds.of_spec(pb.FaultSpec()) is None
    assert kinds.name_of(pb.FAULT_KIND_NETEM) == "netem"
    assert kinds.name_of(99) == "kind 99"  # a newer agent's kind still renders
    with pytest.raises(KeyError, match="known: cpu, memory"):
        kinds.by_name("container")
