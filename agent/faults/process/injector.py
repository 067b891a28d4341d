"""Process faults: kill (a signal, once or every interval for the duration,
matching afresh each round) or stop (SIGSTOP, held until the fault ends).

A stop ends like every other fault. Revert (by the client, lease expiry, the
duration, a halt, the agent's shutdown) sends SIGCONT; so do a restarted
agent and `brownout-agent sweep`, from the journal: each process is
checkpointed (pid and start time) before it is stopped, and only a process
whose start time still matches is continued, so a recycled pid is never
touched. Every signal goes through a pidfd checked against that start time.

Refused before anything is signalled, naming the process and the reason:
pid 1, the agent, its ancestors, its workers and fork server, kernel threads,
the processes holding the lease holder's or the caller's connection when
they run on this node, the denylist (unless allow_denylisted), and a match
larger than the cap (unless allow_many).
"""

from __future__ import annotations

import dataclasses
import functools
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypedDict

import structlog
from google.protobuf.message import Message

from agent.core.errors import ApplyError, FailedPrecondition, InvalidArgument
from agent.core.injector import Applied, Capability, Checkpoint, InjectorContext, RequestContext
from agent.core.validation import duration_seconds, number_in_range
from agent.faults import targets
from agent.faults.process import matching
from agent.faults.process.guard import request_guard
from agent.faults.process.matching import Filters, Guard
from agent.kernel import cgroups
from agent.kernel.procs import ProcRef, table
from agent.kernel.procs.table import ProcInfo
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)

MIN_INTERVAL = 0.1  # seconds between kill rounds
STOP_SETTLE = 1.0  # seconds to wait for a stopped process to show state T


class StoppedRecord(TypedDict):
    pid: int
    start_time: int


class ProcessUndo(TypedDict):
    action: str
    stopped: list[StoppedRecord]


@dataclass(frozen=True)
class Scope:
    """Where matches are looked for: one pid, a cgroup's processes, or the host."""

    pid: int = 0
    cgroup: cgroups.Placement = ()

    def pids(self) -> list[int] | None:
        if self.pid:
            return [self.pid]
        if self.cgroup:
            return sorted({p for c in self.cgroup for p in table.cgroup_pids(c.dir)})
        return None  # every process

    def describe(self) -> str:
        if self.pid:
            return f"pid {self.pid}"
        if self.cgroup:
            return f"cgroup {cgroups.describe(self.cgroup)}"
        return "this node"


@dataclass(frozen=True)
class ProcessPlan:
    action: str  # "kill" or "stop"
    signal: int
    interval: float  # 0: once
    scope: Scope
    filters: Filters
    count: int
    percent: float
    order: str
    children: bool
    guard: Guard
    matched: tuple[ProcInfo, ...]
    chosen: tuple[ProcInfo, ...]  # with their descendants when children


class ProcessInjector:
    kind = "process"
    survives_reboot = False

    def __init__(self, ctx: InjectorContext) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._rounds: dict[str, tuple[threading.Event, threading.Thread]] = {}
        # Processes live stop faults hold, and by which fault: a second stop
        # of one would be ended by the first one's SIGCONT, so it is refused.
        self._held: dict[ProcRef, str] = {}

    def probe(self) -> Capability:
        why = table.pidfd_supported()
        return Capability(not why, why)

    # ----------------------------------------------------------- validate

    def validate(self, spec: Message, target: pb.Target, request: RequestContext) -> ProcessPlan:
        assert isinstance(spec, pb.ProcessSpec)
        action = {pb.PROCESS_ACTION_KILL: "kill", pb.PROCESS_ACTION_STOP: "stop"}.get(spec.action)
        if action is None:
            raise InvalidArgument("process.action", "is required: kill or stop")
        signum, interval = self._kill_options(spec, action)
        if spec.count < 0:
            raise InvalidArgument("process.count", f"must be positive, got {spec.count}")
        if spec.count and spec.percent:
            raise InvalidArgument("process.count", "set either count or percent, not both")
        if spec.percent:
            number_in_range("process.percent", spec.percent, 0.001, 100, "%")
        if spec.order not in matching.ORDERS:
            raise InvalidArgument("process.order", f"unknown order {spec.order}")
        filters = Filters(
            matching.compile_pattern("process.comm", spec.comm),
            matching.compile_pattern("process.cmdline", spec.cmdline),
            matching.user_id("process.user", spec.user),
        )
        scope = self._scope(target)
        if not scope.pid and not scope.cgroup and not filters.any:
            raise InvalidArgument(
                "process",
                "give a target (pid, cgroup) or a match (comm, cmdline, user):"
                " refusing to match every process on the node",
            )
        guard = request_guard(self._ctx, request, spec.allow_denylisted)
        matched = self._match(scope, filters, guard)
        if not matched:
            raise FailedPrecondition(f"no process on {scope.describe()} matches {_shown(spec)}")
        cap = self._ctx.limits.process_match_cap
        if len(matched) > cap and not spec.allow_many:
            raise FailedPrecondition(
                f"{len(matched)} processes match {_shown(spec)}, more than this agent's cap of"
                f" {cap} (--process-match-cap): narrow the match, or set allow_many"
            )
        plan = ProcessPlan(
            action, signum, interval, scope, filters, spec.count, spec.percent,
            matching.ORDERS[spec.order], spec.children, guard, tuple(matched), (),
        )  # fmt: skip
        chosen = _draw(plan, matched, random.Random())
        # Every match, not only the chosen: a refusal must not depend on the draw.
        matching.refuse_unsafe({p.pid: p for p in [*matched, *chosen]}.values(), guard)
        if action == "stop":
            with self._lock:
                self._refuse_held(chosen)
        return dataclasses.replace(plan, chosen=tuple(chosen))

    def _refuse_held(self, chosen: Iterable[ProcInfo]) -> None:
        """Under the lock: FailedPrecondition if another live stop holds one of chosen."""
        for p in chosen:
            holder = self._held.get(p.ref)
            if holder:
                raise FailedPrecondition(
                    f"{matching.describe(p)} is already stopped by fault {holder}; a second"
                    " stop would end when the first one does"
                )

    def _kill_options(self, spec: pb.ProcessSpec, action: str) -> tuple[int, float]:
        has_interval = spec.HasField("interval")
        if action == "stop":
            if spec.signal:
                raise InvalidArgument("process.signal", "is for kill; stop always sends SIGSTOP")
            if has_interval:
                raise InvalidArgument("process.interval", "is for kill; a stop is held")
            return table.SIGSTOP, 0.0
        signum = spec.signal or table.SIGKILL
        if problem := table.signal_problem(signum):
            raise InvalidArgument("process.signal", problem)
        if signum in (table.SIGSTOP, table.SIGCONT):
            raise InvalidArgument(
                "process.signal", "use action stop, which continues what it stopped when it ends"
            )
        interval = 0.0
        if has_interval:
            interval = duration_seconds(
                "process.interval",
                spec.interval.seconds,
                spec.interval.nanos,
                maximum=self._ctx.limits.max_fault_duration,
                minimum=MIN_INTERVAL,
            )
        return signum, interval

    @staticmethod
    def _scope(target: pb.Target) -> Scope:
        which = target.WhichOneof("selector")
        if which is None:
            return Scope()
        if which == "pid":
            if target.pid <= 0:
                raise InvalidArgument("target.pid", f"must be a positive pid, got {target.pid}")
            if table.read(target.pid) is None:
                raise InvalidArgument("target.pid", f"no process {target.pid} on this node")
            return Scope(pid=target.pid)
        if which in ("cgroup", "container"):
            located = targets.locate(target, "process")
            assert located is not None
            return Scope(cgroup=located[1])  # a container's processes: its cgroup's
        raise InvalidArgument(
            f"target.{which}",
            "process faults target a pid, a cgroup or a container, not a network namespace",
        )

    @staticmethod
    def _match(scope: Scope, filters: Filters, guard: Guard) -> list[ProcInfo]:
        """The processes of scope that every filter matches. A pattern or user
        match leaves out the asker's own processes (a local `brownout inject
        process --cmdline X` matches itself); a pid names them, and is refused."""
        found = [p for p in table.scan(scope.pids()) if filters.match(p)]
        if scope.pid:
            return found
        return [p for p in found if not guard.connection(p.pid)]

    # -------------------------------------------------------------- apply

    def preview(self, plan: ProcessPlan) -> dict[str, str]:
        """What an inject of plan would reach now (validate_only's answer)."""
        return {
            "action": plan.action,
            "matched": str(len(plan.matched)),
            "processes": "; ".join(
                f"{p.pid} start={p.start_time} {p.command[:120]}" for p in plan.chosen
            ),
        }

    def apply(self, fault_id: str, plan: ProcessPlan, checkpoint: Checkpoint) -> Applied:
        summary = self.preview(plan)
        if plan.action == "stop":
            return self._stop(fault_id, plan, checkpoint, summary)
        hit = _signal(plan.chosen, plan.signal)
        if not hit:
            raise ApplyError("every chosen process ended before it was signalled")
        summary |= {"signal": table.signal_name(plan.signal), "signalled": _pids(hit)}
        if plan.interval:
            summary["interval_seconds"] = f"{plan.interval:g}"
            self._start_rounds(fault_id, plan)
        return Applied({"action": "kill", "stopped": []}, summary)

    def _stop(
        self, fault_id: str, plan: ProcessPlan, checkpoint: Checkpoint, summary: dict[str, str]
    ) -> Applied:
        stopped: list[StoppedRecord] = []
        undo: ProcessUndo = {"action": "stop", "stopped": stopped}
        with self._lock:  # a concurrent stop may have taken one since validate
            self._refuse_held(plan.chosen)
            self._held.update((p.ref, fault_id) for p in plan.chosen)
        for p in plan.chosen:
            # In the journal before the signal: whoever reverts continues it.
            stopped.append({"pid": p.pid, "start_time": p.start_time})
            checkpoint(undo)
            table.send(p.ref, table.SIGSTOP)
        held = _settled([ProcRef(s["pid"], s["start_time"]) for s in stopped])
        if not held:
            raise ApplyError("every chosen process ended before it was stopped")
        summary |= {"signal": "SIGSTOP", "stopped": _pids(held)}
        return Applied(undo, summary)

    # ------------------------------------------------------ repeated kills

    def _start_rounds(self, fault_id: str, plan: ProcessPlan) -> None:
        stop = threading.Event()
        rng = random.Random()

        def rounds() -> None:
            n = 0
            while not stop.wait(plan.interval):
                n += 1
                try:
                    # What became unsafe since the inject is left out, not refused.
                    found = self._match(plan.scope, plan.filters, plan.guard)
                    safe = functools.partial(matching.safe, guard=plan.guard)
                    hit = _signal(_draw(plan, safe(found), rng, safe), plan.signal)
                except OSError as exc:
                    log.warning("process kill round failed", fault_id=fault_id, error=str(exc))
                    continue
                log.info("process kill round", fault_id=fault_id, round=n, signalled=hit)

        thread = threading.Thread(target=rounds, name=f"kill-rounds-{fault_id}", daemon=True)
        with self._lock:
            self._rounds[fault_id] = (stop, thread)
        thread.start()

    # ------------------------------------------------------------- revert

    def revert(self, fault_id: str, undo: Mapping[str, Any] | None) -> None:
        with self._lock:
            rounds = self._rounds.pop(fault_id, None)
        if rounds is not None:
            rounds[0].set()
            rounds[1].join()
        for s in (undo or {}).get("stopped", []):
            # Only the process that was stopped: send() checks its start time.
            table.send(ProcRef(int(s["pid"]), int(s["start_time"])), table.SIGCONT)
        with self._lock:  # only now may another stop take these processes
            for ref in [r for r, f in self._held.items() if f == fault_id]:
                del self._held[ref]

    def sweep(self) -> list[str]:
        # Nothing of a process fault carries a marker: what a stop left is in
        # the journal, which recovery reverts before the sweep.
        return []


def _draw(
    plan: ProcessPlan,
    found: Sequence[ProcInfo],
    rng: random.Random,
    keep: Callable[[list[ProcInfo]], list[ProcInfo]] = list,
) -> list[ProcInfo]:
    """The plan's count, percent or all of found, by its order; with children,
    their descendants too (those `keep` keeps)."""
    chosen = matching.choose(found, plan.count, plan.percent, plan.order, rng)
    if plan.children and chosen:
        chosen += keep(table.descendants([p.pid for p in chosen], table.scan()))
    return chosen


def _signal(chosen: Iterable[ProcInfo], signum: int) -> list[int]:
    """Send signum to each, deepest first (a parent killed before its children
    cannot respawn them); the pids it reached."""
    return [p.pid for p in reversed(list(chosen)) if table.send(p.ref, signum)]


def _pids(pids: list[int]) -> str:
    return ",".join(str(p) for p in pids)


def _shown(spec: pb.ProcessSpec) -> str:
    parts = [f"{k}={v!r}" for k, v in (("comm", spec.comm), ("cmdline", spec.cmdline),
                                        ("user", spec.user)) if v]  # fmt: skip
    return ", ".join(parts) or "the target"


def _settled(refs: list[ProcRef]) -> list[int]:
    """The pids among refs that show as stopped, waiting up to STOP_SETTLE for
    the signal to land (a process in uninterruptible sleep stops when it wakes)."""
    deadline = time.monotonic() + STOP_SETTLE
    while True:
        alive = [p for r in refs if (p := table.read(r.pid)) and p.start_time == r.start_time]
        held = [p.pid for p in alive if p.stopped]
        if len(held) == len(alive) or time.monotonic() > deadline:
            return held
        time.sleep(0.001)
