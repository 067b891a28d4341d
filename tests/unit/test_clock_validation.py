"""The clock fault's validation, which runs before anything is touched: only
validate() is called here, never apply() (this machine's clock is never
changed; the kernel-VM tier moves the guest's)."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.core.errors import InvalidArgument
from agent.core.injector import InjectorContext, Markers, RequestContext
from agent.core.limits import Limits
from agent.faults.clock import ClockInjector
from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb

pytestmark = pytest.mark.unit


def injector(cap: float = 3600.0) -> ClockInjector:
    return ClockInjector(InjectorContext(Limits(max_clock_offset=cap), Markers("t", Path("/x")), 1))


def offset(seconds: float) -> pb.ClockSpec:
    return pb.ClockSpec(offset=to_duration(seconds))


@pytest.mark.parametrize("seconds", [30.0, -30.0, 0.25, -3600.0])
def test_an_offset_either_way_up_to_the_cap_is_planned(seconds: float) -> None:
    plan = injector().validate(offset(seconds), pb.Target(), RequestContext())
    assert plan.offset_ns == round(seconds * 1e9)


@pytest.mark.parametrize(
    ("spec", "target", "message"),
    [
        (pb.ClockSpec(), pb.Target(), "clock.offset: is required"),
        (offset(3601), pb.Target(), "clock.offset: 3601s exceeds this agent's limit of 3600s"),
        (offset(-3601), pb.Target(), "clock.offset: 3601s exceeds"),
        (offset(5), pb.Target(pid=7), "target.pid: the realtime clock is the node's"),
    ],
)
def test_what_a_clock_fault_refuses(spec: pb.ClockSpec, target: pb.Target, message: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        injector().validate(spec, target, RequestContext())
    assert str(err.value).startswith(message), err.value
