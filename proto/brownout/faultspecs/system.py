"""Faults of the node itself: its realtime clock."""

from __future__ import annotations

from brownout.faultspecs import values as v
from brownout.faultspecs.options import Kind, Option, Values
from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb


def _clock(values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.ClockSpec(offset=to_duration(values["offset"]))
    return pb.FaultSpec(clock=spec), pb.Target()


CLOCK = Kind(
    "clock",
    "move the node's realtime clock by an offset and block NTP (moved back at the end)",
    (
        Option("offset", v.signed_duration, "e.g. 30s, or --offset=-5m back (at most the agent's"
               " --max-clock-offset, 1h by default)", required=True, metavar="[+-]DURATION"),
    ),
    _clock,
)  # fmt: skip

KINDS = (CLOCK,)
