"""Memory leak: one worker that touches every page of a growing anonymous mapping.

The memory is resident, not just reserved: each page is written. Safety: the
leak child runs at oom_score_adj 1000 (the OOM killer's first choice), and no
leak may leave less than the memory reserve available. A request that would
is capped to what fits (the reply says `capped`), or refused when nothing
fits. The worker also stops growing whenever MemAvailable nears the reserve,
so memory taken by others during a slow ramp is still respected.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, TypedDict

from google.protobuf.message import Message

from agent.core.errors import InvalidArgument, ResourceExhausted
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.core.limits import Limits
from agent.core.validation import finite_number, number_in_range
from agent.faults import targets
from agent.faults.resource.workers import WorkerInjector, WorkerRecord
from agent.kernel import cgroups, meminfo, procs, sysinfo
from brownout.v1 import agent_pb2 as pb

LEAK_OOM_SCORE_ADJ = 1000
MIB = 1024 * 1024
PAGE = sysinfo.PAGE_SIZE


def reserve_bytes(total: int, limits: Limits) -> int:
    """Memory no leak may take: the larger of --memory-reserve and 5 % of RAM."""
    return max(limits.memory_reserve_bytes, int(total * limits.memory_reserve_percent / 100))


@dataclass(frozen=True)
class LeakSize:
    bytes: int
    requested: int
    capped: bool


def size_leak(field: str, requested: int, available: int, pending: int, reserve: int) -> LeakSize:
    """Cap `requested` so that `reserve` stays available after this leak and the
    `pending` growth of leaks still ramping; refuse if not one page fits."""
    room = available - pending - reserve
    room -= room % PAGE
    if room < PAGE:
        raise ResourceExhausted(
            f"{field}: refused: only {available // MIB} MiB is available"
            + (
                f" ({pending // MIB} MiB more is promised to leaks still growing)"
                if pending
                else ""
            )
            + f" and the memory reserve is {reserve // MIB} MiB"
            " (the larger of --memory-reserve and 5% of RAM); nothing can be leaked"
        )
    if requested > room:
        return LeakSize(room, requested, True)
    return LeakSize(requested, requested, False)


@dataclass(frozen=True)
class MemoryPlan:
    size: LeakSize
    rate_bytes: float  # per second; 0 = all at once
    reserve: int
    available: int
    placement: cgroups.Placement | None


@dataclass
class _Leak:
    ref: procs.ProcRef
    bytes: int


class MemoryUndo(TypedDict):
    workers: list[WorkerRecord]


class MemoryInjector(WorkerInjector):
    kind = "memory"
    survives_reboot = False
    module = "agent.workers.memory_leak"
    what = "memory leak worker"

    def __init__(self, ctx: InjectorContext, spawner: procs.Spawner) -> None:
        super().__init__(ctx, spawner)
        self._lock = threading.Lock()
        self._leaks: dict[str, _Leak] = {}

    def probe(self) -> Capability:
        try:
            info = meminfo.read()
        except OSError as exc:
            return Capability(False, f"/proc/meminfo unreadable: {exc.strerror}")
        if "MemAvailable" not in info:
            return Capability(False, "/proc/meminfo has no MemAvailable (kernel older than 3.14)")
        return Capability(True)

    def _pending(self) -> int:
        """Growth still to come from leaks that are ramping."""
        with self._lock:
            leaks = list(self._leaks.values())
        pending = 0
        for leak in leaks:
            rss = meminfo.rss_anon(leak.ref.pid)
            if rss is not None and procs.alive(leak.ref):
                pending += max(0, leak.bytes - rss)
        return pending

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> MemoryPlan:
        assert isinstance(spec, pb.MemorySpec)
        info = meminfo.read()
        total = info["MemTotal"]
        rate = finite_number("memory.rate_mib_per_second", spec.rate_mib_per_second)
        if rate < 0:
            raise InvalidArgument(
                "memory.rate_mib_per_second", f"must be >= 0 (0: all at once), got {rate:g}"
            )
        placement = targets.placement(target, self.kind, controller="memory")
        which = spec.WhichOneof("size")
        if which == "bytes":
            field = "memory.bytes"
            if not PAGE <= spec.bytes <= total:
                raise InvalidArgument(
                    field,
                    f"must be between {PAGE} (one page) and the {total} bytes of RAM,"
                    f" got {spec.bytes}",
                )
            requested = spec.bytes
        elif which == "percent":
            field = "memory.percent"
            number_in_range(field, spec.percent, 0, 100, "%")
            if spec.percent == 0:
                raise InvalidArgument(field, "must be > 0 and at most 100%, got 0%")
            requested = int(total * spec.percent / 100)
        else:
            raise InvalidArgument("memory.size", "set memory.bytes or memory.percent")
        reserve = reserve_bytes(total, self._ctx.limits)
        available = info["MemAvailable"]
        # Whole pages are leaked; the reply still reports what was asked.
        size = size_leak(field, requested + -requested % PAGE, available, self._pending(), reserve)
        size = replace(size, requested=requested)
        return MemoryPlan(size, rate * MIB, reserve, available, placement)

    def apply(self, fault_id: str, plan: MemoryPlan, checkpoint: Checkpoint) -> Applied:
        placement = plan.placement

        def place(pid: int) -> None:
            # Before "go": the OOM killer's first choice, charged to the target.
            procs.set_oom_score_adj(pid, LEAK_OOM_SCORE_ADJ)
            if placement:
                cgroups.attach(pid, placement)

        args = ["--bytes", str(plan.size.bytes), "--rate", repr(plan.rate_bytes)]
        ref = self.spawn(fault_id, [*args, "--reserve", str(plan.reserve)], before_go=place)
        undo: MemoryUndo = {"workers": [{"pid": ref.pid, "start_time": ref.start_time}]}
        checkpoint(undo)
        with self._lock:
            self._leaks[fault_id] = _Leak(ref, plan.size.bytes)
        summary = {
            "bytes": str(plan.size.bytes),
            "requested_bytes": str(plan.size.requested),
            "capped": "true" if plan.size.capped else "false",
            "reserve_bytes": str(plan.reserve),
            "available_bytes": str(plan.available),
            "rate_mib_per_second": f"{plan.rate_bytes / MIB:g}",
            "worker_pid": str(ref.pid),
            "oom_score_adj": str(procs.get_oom_score_adj(ref.pid)),
            "agent_oom_score_adj": str(procs.get_oom_score_adj(self._ctx.agent_pid)),
        }
        if placement:
            summary["cgroup"] = cgroups.describe(placement)
            limit = cgroups.memory_limit(placement)
            summary["cgroup_memory_limit"] = "none" if limit is None else str(limit)
        return Applied(undo, summary)

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        with self._lock:
            self._leaks.pop(fault_id, None)
        self.kill_workers(fault_id, undo)
