"""Spec validation: every bad field is named, with the limit it broke."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from agent.core.errors import InvalidArgument
from agent.core.injector import InjectorContext, Markers, RequestContext
from agent.core.limits import Limits
from agent.core.validation import duration_seconds
from agent.faults.resource.cpu import CpuInjector
from agent.kernel import procs
from brownout.v1 import agent_pb2 as pb

pytestmark = pytest.mark.unit

NCPU = len(os.sched_getaffinity(0))


@pytest.fixture
def cpu() -> CpuInjector:
    ctx = InjectorContext(Limits(), Markers("test", Path("/nonexistent")), os.getpid())
    return CpuInjector(ctx, procs.Spawner("test"))


def check(cpu: CpuInjector, spec: pb.CpuSpec, field: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        cpu.validate(spec, pb.Target(), RequestContext())
    assert err.value.field == field
    assert fragment in str(err.value)
    assert str(err.value).startswith(field + ":")


@pytest.mark.parametrize("load", [0, 101, -5, float("nan"), float("inf")])
def test_load_out_of_range(cpu: CpuInjector, load: float) -> None:
    check(cpu, pb.CpuSpec(cores=1, load_percent=load), "cpu.load_percent", "")


def test_load_message_names_the_limit(cpu: CpuInjector) -> None:
    check(cpu, pb.CpuSpec(cores=1, load_percent=101), "cpu.load_percent", "between 1 and 100")


def test_more_cores_than_the_host_has(cpu: CpuInjector) -> None:
    check(
        cpu,
        pb.CpuSpec(cores=NCPU + 1, load_percent=50),
        "cpu.cores",
        f"exceeds the {NCPU} CPUs available",
    )


@pytest.mark.parametrize("cores", [0, -1])
def test_no_cores(cpu: CpuInjector, cores: int) -> None:
    check(cpu, pb.CpuSpec(cores=cores, load_percent=50), "cpu.cores", "at least 1")


def test_core_list_problems(cpu: CpuInjector) -> None:
    check(
        cpu, pb.CpuSpec(core_list=[NCPU + 7], load_percent=5), "cpu.core_list[0]", "not available"
    )
    check(cpu, pb.CpuSpec(core_list=[0, 0], load_percent=5), "cpu.core_list[1]", "listed twice")
    check(cpu, pb.CpuSpec(cores=1, core_list=[0], load_percent=5), "cpu.cores", "not both")


def test_valid_plans(cpu: CpuInjector) -> None:
    plan = cpu.validate(pb.CpuSpec(cores=1, load_percent=50), pb.Target(), RequestContext())
    assert len(plan.cores) == 1 and plan.load_percent == 50
    plan = cpu.validate(pb.CpuSpec(core_list=[0], load_percent=100), pb.Target(), RequestContext())
    assert plan.cores == (0,)


def dur(seconds: int, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        (dur(0), "is required and must be > 0"),
        (dur(-5), "must be > 0"),
        (dur(0, -1), "must be > 0"),
        (dur(5, -1), "not a valid duration"),
        (dur(0, 2_000_000_000), "not a valid duration"),
        (dur(3601), "exceeds this agent's limit of 3600s"),
        (dur(10**15), "out of range"),
    ],
)
def test_bad_durations(value: Duration, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        duration_seconds("duration", value.seconds, value.nanos, maximum=3600)
    assert err.value.field == "duration"
    assert fragment in str(err.value)


def test_minimum_is_enforced() -> None:
    with pytest.raises(InvalidArgument, match="at least 1s"):
        duration_seconds("ttl", 0, 500_000_000, maximum=300, minimum=1)
    assert duration_seconds("ttl", 1, 500_000_000, maximum=300, minimum=1) == 1.5
