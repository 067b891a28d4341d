"""CPU hog: one worker per selected core, each burning a measured duty cycle.

With a cgroup or pid target the workers join the target's cgroups before
they burn, and the load is relative to what the selected cores can get under
the cgroup's CPU quota: N cores at P % under a quota of Q CPUs burn
P % x min(N, Q) CPUs in all, spread evenly over the N workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypedDict

from google.protobuf.message import Message

from agent.core.errors import InvalidArgument
from agent.core.injector import Applied, Capability, Checkpoint, RequestContext
from agent.core.validation import number_in_range
from agent.faults import targets
from agent.faults.resource.workers import WorkerInjector, WorkerRecord
from agent.kernel import cgroups, sysinfo
from brownout.v1 import agent_pb2 as pb


class CpuWorker(WorkerRecord):
    core: int


class CpuUndo(TypedDict):
    workers: list[CpuWorker]


@dataclass(frozen=True)
class CpuPlan:
    cores: tuple[int, ...]
    load_percent: float
    placement: cgroups.Placement | None = None
    quota_cpus: float | None = None  # the target's CPU quota, if it has one

    @property
    def duty_percent(self) -> float:
        """Each worker's busy share of its core."""
        return duty_percent(self.load_percent, len(self.cores), self.quota_cpus)


def duty_percent(load_percent: float, cores: int, quota_cpus: float | None) -> float:
    """Per-core duty cycle for `load_percent` of what `cores` cores get under a quota."""
    if quota_cpus is None:
        return load_percent
    return load_percent * min(float(cores), quota_cpus) / cores


def _ranges(cores: list[int]) -> str:
    return ",".join(str(c) for c in cores)


class CpuInjector(WorkerInjector):
    kind = "cpu"
    survives_reboot = False
    module = "agent.workers.cpu_burn"
    what = "cpu worker"

    def probe(self) -> Capability:
        try:
            sysinfo.allowed_cpus()
        except OSError as exc:
            return Capability(False, f"sched_getaffinity unavailable: {exc.strerror}")
        return Capability(True)

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> CpuPlan:
        assert isinstance(spec, pb.CpuSpec)
        load = number_in_range("cpu.load_percent", spec.load_percent, 1, 100, "%")
        placement = targets.placement(target, self.kind)
        quota = cgroups.cpu_quota(placement) if placement else None
        allowed = sysinfo.allowed_cpus()
        cpuset = cgroups.effective_cpus(placement) if placement else None
        if cpuset is not None:
            # The workers join the target's cpuset: only its CPUs can be burned.
            allowed = sorted(set(allowed) & cpuset)
            if not allowed:
                raise InvalidArgument(
                    "target",
                    f"the target's cpuset ({_ranges(sorted(cpuset))}) shares no CPU"
                    " with the agent's",
                )
        if spec.cores and spec.core_list:
            raise InvalidArgument("cpu.cores", "set either cpu.cores or cpu.core_list, not both")
        if spec.core_list:
            seen: set[int] = set()
            for i, core in enumerate(spec.core_list):
                if core not in allowed:
                    raise InvalidArgument(
                        f"cpu.core_list[{i}]",
                        f"CPU {core} is not available to the agent (available: {_ranges(allowed)})",
                    )
                if core in seen:
                    raise InvalidArgument(f"cpu.core_list[{i}]", f"CPU {core} is listed twice")
                seen.add(core)
            return CpuPlan(tuple(spec.core_list), load, placement, quota)
        if spec.cores < 1:
            raise InvalidArgument(
                "cpu.cores", f"must be at least 1 (or give cpu.core_list), got {spec.cores}"
            )
        if spec.cores > len(allowed):
            raise InvalidArgument(
                "cpu.cores",
                f"{spec.cores} exceeds the {len(allowed)} CPUs available to the agent"
                f" ({_ranges(allowed)})",
            )
        # Highest-numbered first: CPU 0 usually carries more of the system's interrupts.
        return CpuPlan(tuple(sorted(allowed, reverse=True)[: spec.cores]), load, placement, quota)

    def apply(self, fault_id: str, plan: CpuPlan, checkpoint: Checkpoint) -> Applied:
        workers: list[CpuWorker] = []
        undo: CpuUndo = {"workers": workers}
        placement = plan.placement

        def place(pid: int) -> None:
            if placement:
                cgroups.attach(pid, placement)

        for core in plan.cores:
            args = ["--core", str(core), "--load", repr(plan.duty_percent)]
            ref = self.spawn(fault_id, args, before_go=place)
            workers.append({"pid": ref.pid, "start_time": ref.start_time, "core": core})
            checkpoint(undo)
        summary = {
            "cores": _ranges(list(plan.cores)),
            "load_percent": f"{plan.load_percent:g}",
            "worker_pids": ",".join(str(w["pid"]) for w in workers),
        }
        if placement:
            summary["cgroup"] = cgroups.describe(placement)
            summary["worker_duty_percent"] = f"{plan.duty_percent:g}"
            summary["quota_cpus"] = "none" if plan.quota_cpus is None else f"{plan.quota_cpus:g}"
        return Applied(undo, summary)
