"""Clock skew: move the node's realtime clock by an offset, and drop NTP
(UDP to port 123) so that no daemon steps it back, for the fault's duration.

The clock is set as "CLOCK_BOOTTIME + delta": at apply the journal records
the delta the node had before the fault, and every revert (the client, lease
expiry, the duration, a halt, a restarted agent, the offline sweep) sets the
clock to boottime + that delta. That keeps the time that passed during the
fault (Steadybit's behaviour), and setting it twice, as a crash mid-revert
may, gives the same clock: revert is idempotent. No ptrace and no vDSO
patching: nothing that a restart of the agent would lose.

The agent's own leases and deadlines run on the monotonic clock, so a jump
of the realtime clock either way moves none of them. One clock fault at a
time: two would compound, and each revert would undo the other's.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import structlog
from google.protobuf.message import Message

from agent.core.errors import FailedPrecondition, InvalidArgument
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.core.validation import duration_seconds
from agent.faults.network.dns import EVERY_RESOLVER, port_block_messages
from agent.faults.network.traffic import Proto
from agent.kernel import realtime
from agent.kernel.errors import Gone
from agent.kernel.net import netns
from agent.kernel.net.nftables import Nft
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)

NTP_PORT = 123
NS = 1_000_000_000


class ClockUndo(TypedDict):
    delta_ns: int  # realtime - boottime before the fault
    offset_ns: int
    netns: dict[str, Any]
    table: str


@dataclass(frozen=True)
class ClockPlan:
    offset_ns: int


def table_prefix(instance: str) -> str:
    return f"brownout_{instance}_ntp_"


class ClockInjector:
    kind = "clock"
    survives_reboot = False  # a reboot sets the clock from the RTC and NTP again

    def __init__(self, ctx: InjectorContext) -> None:
        self._ctx = ctx
        self._prefix = table_prefix(ctx.markers.instance)
        self._lock = threading.Lock()
        self._live: str = ""  # the fault that holds the clock

    def probe(self) -> Capability:
        why = realtime.can_set()
        return Capability(not why, why)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> ClockPlan:
        assert isinstance(spec, pb.ClockSpec)
        which = target.WhichOneof("selector")
        if which is not None:
            raise InvalidArgument(
                f"target.{which}", "the realtime clock is the node's: a clock fault takes no target"
            )
        cap = self._ctx.limits.max_clock_offset
        secs, nanos = spec.offset.seconds, spec.offset.nanos
        if secs == 0 and nanos == 0:
            raise InvalidArgument(
                "clock.offset", f"is required: a non-zero offset, at most {cap:g}s"
            )
        size = duration_seconds(
            "clock.offset", abs(secs), abs(nanos), maximum=cap, minimum=0.000001
        )
        with self._lock:
            if self._live:
                raise FailedPrecondition(
                    f"fault {self._live} holds the clock already: two offsets would compound,"
                    " and each revert would undo the other"
                )
        sign = -1 if secs < 0 or nanos < 0 else 1
        return ClockPlan(sign * round(size * NS))

    def apply(self, fault_id: str, plan: ClockPlan, checkpoint: Checkpoint) -> Applied:
        with self._lock:
            if self._live:
                raise FailedPrecondition(f"fault {self._live} holds the clock already")
            self._live = fault_id
        table = self._prefix + fault_id.removeprefix("fault-")
        own = netns.own()
        undo: ClockUndo = {
            "delta_ns": realtime.delta_ns(),
            "offset_ns": plan.offset_ns,
            "netns": own.record(),
            "table": table,
        }
        checkpoint(undo)  # before either change: whoever reverts restores both
        with Nft.open(own) as nft:
            msgs = port_block_messages(table, EVERY_RESOLVER, NTP_PORT, (Proto.UDP,), fault_id)
            nft.commit(msgs, f"clock {fault_id}: drop NTP")
        realtime.set_delta_ns(undo["delta_ns"] + plan.offset_ns)
        achieved = realtime.delta_ns() - undo["delta_ns"]
        summary = {
            "offset_seconds": f"{plan.offset_ns / NS:g}",
            "achieved_offset_seconds": f"{achieved / NS:.6f}",
            "ntp_blocked": f"udp port 123, nft table inet {table}",
        }
        return Applied(undo, summary)

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        try:
            if undo and "delta_ns" in undo:
                # Absolute, from boottime: the same clock however often it runs.
                realtime.set_delta_ns(int(undo["delta_ns"]))
                with Nft.open(netns.NetnsRef.from_record(undo["netns"])) as nft:
                    nft.drop_table(str(undo["table"]))
        finally:
            with self._lock:
                if self._live == fault_id:
                    self._live = ""

    def sweep(self) -> list[str]:
        # The clock itself is the journal's to restore; leftover NTP blocks go here.
        try:
            with Nft.open(netns.own()) as nft:
                mine = nft.drop_tables(self._prefix)
        except (OSError, Gone) as exc:
            log.warning("clock sweep skipped", error=str(exc))
            return []
        return [f"nft table inet {t}" for t in mine]
