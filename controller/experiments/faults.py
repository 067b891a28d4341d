"""A run's faults on the fleet: inject them step by step, follow them over
WatchFaults while the run is live, revert them all at the end, and record
every way they did not run as planned (a failed injection, a lost lease, a
fault that ended early, a failed revert) as the run's fault problems.

With on-fault-error abort, the first problem ends the run (through the
runner's end callback); with continue it is recorded and the run goes on.

Everything here runs on the fleet's loop, as part of the run's task.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from datetime import UTC
from typing import Any

import grpc

from brownout.v1 import agent_pb2 as pb
from controller.agents.aioclient import AsyncAgentClient, retrying, rpc_error
from controller.agents.fleet import Fleet
from controller.agents.loop import in_slices
from controller.agents.names import kind_name, reason_name, state_name
from controller.experiments import probes
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.model import Activity, FaultProvider
from controller.experiments.progress import PER_AGENT_LINES, Reporter, counts
from controller.experiments.records import FaultRecord, Problem, RunJournal
from controller.experiments.tracing import RunTrace

# How a fault may end before the run reverts it without anything going wrong.
EXPECTED_ENDS = frozenset(
    {pb.END_REASON_CLIENT_REVERT, pb.END_REASON_DURATION_ELAPSED, pb.END_REASON_LEASE_RELEASED}
)
ENDED = frozenset({pb.FAULT_STATE_REVERTED, pb.FAULT_STATE_FAILED})


class RunFaults:
    def __init__(
        self,
        fleet: Fleet,
        journal: RunJournal,
        report: Reporter,
        metrics: ControllerMetrics,
        end_run: Callable[[str, str], None],
        on_fault_error: str,
        on_halt: Callable[[str, str], None] = lambda agent, fault_id: None,
    ) -> None:
        self._fleet = fleet
        self._j = journal
        self._report = report
        self._metrics = metrics
        self._end_run = end_run  # (reason, label) -> the run ends failed
        self._on_halt = on_halt  # (agent, fault id): someone halted the agent under the run
        self._abort = on_fault_error == "abort"
        self._lock = threading.Lock()
        self._reverting = False  # from here on, fault ends are the run's own
        self._ended_early: dict[str, dict[str, str]] = {}  # fault id -> how
        self._expected = set(EXPECTED_ENDS)
        self._activity: dict[str, tuple[str, int]] = {}  # fault id -> (activity, step index)
        self._run_id = ""
        self._ended: set[str] = set()  # fault ids heard ended
        self.trace: RunTrace | None = None  # the run's spans, once it has started

    def expect(self, reason: pb.EndReason.ValueType) -> None:
        """Ends for this reason are the run's own doing from now on (the kill
        switch aborts the run and halts its agents: those halts are not problems)."""
        self._expected.add(reason)

    # ------------------------------------------------------------ problems

    def _record(self, agent: str, kind: str, detail: str, fault_id: str = "") -> None:
        with self._lock:
            self._j.problems.append(Problem(agent, kind, detail, fault_id))
        self._report.event(f"agent {agent}: {kind}: {detail}")

    def problem(self, agent: str, kind: str, detail: str, fault_id: str = "") -> None:
        """Record that the faults did not run as planned; with on-fault-error
        abort, end the run now."""
        self._record(agent, kind, detail, fault_id)
        if self._abort:
            self._end_run(f"{kind} on {agent}: {detail}", "fault_error")

    def lease_lost(self, agent: str, reason: str) -> None:
        # Not a problem once the run ends them itself, or the kill switch gave them up.
        if not self._reverting and pb.END_REASON_LEASE_EXPIRED not in self._expected:
            self.problem(agent, "lease lost", reason)

    def _timeline(self, agent: str, f: pb.Fault) -> None:
        """A fault's state as the agent timed it, into the run's timeline."""
        tl = self._j.timeline
        if tl is None or not f.id or f.state == pb.FAULT_STATE_UNSPECIFIED:
            return
        stamp = f.ended_at if f.state in ENDED else f.activated_at
        at = stamp.ToDatetime(tzinfo=UTC).isoformat() if stamp.seconds else probes.now_iso()
        activity, step = self._activity.get(f.id, ("", -1))
        series = (kind_name(f.kind), agent, self._run_id)
        reason = reason_name(f.end_reason) if f.end_reason else ""
        if f.state in ENDED:
            self._ended.add(f.id)
            with contextlib.suppress(KeyError):
                self._metrics.fault_active.remove(*series)
            if self.trace is not None:
                self.trace.fault_ended(agent, f.id, state_name(f.state), reason)
        elif f.state == pb.FAULT_STATE_ACTIVE and f.id not in self._ended:  # not a late event
            if self.trace is not None:
                self.trace.fault(agent, f.id, series[0], f.lease_id, step, activity)
            self._metrics.fault_active.labels(*series).set(1)
        tl.fault(agent, f.id, state_name(f.state), at=at, fault=kind_name(f.kind),
                 activity=activity, step=step,
                 reason=reason_name(f.end_reason) if f.end_reason else "")  # fmt: skip

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        return self.trace.metadata() if self.trace is not None else ()

    def _on_event(self, agent: str, event: pb.FaultEvent) -> None:
        """On the fleet's loop: a fault that ends before the run reverts it,
        for a reason other than its own duration, ended early."""
        f = event.fault
        self._timeline(agent, f)
        if self._reverting or f.state not in ENDED or f.end_reason in self._expected:
            return
        if f.end_reason == pb.END_REASON_APPLY_FAILED:
            return  # the inject reply says so, as a failed injection
        if f.end_reason == pb.END_REASON_HALT:  # an operator's act, not a fault going wrong
            self._on_halt(agent, f.id)
            return
        with self._lock:
            if f.id in self._ended_early:
                return
            how = {
                "reason": reason_name(f.end_reason) if f.end_reason else "",
                "state": state_name(f.state),
                "error": f.error,
                "at": probes.now_iso(),
            }
            self._ended_early[f.id] = how
        detail = f"fault {f.id} ended {how['state']} ({how['reason']})"
        self.problem(agent, "fault ended early", detail + (f": {f.error}" if f.error else ""), f.id)

    # -------------------------------------------------------------- watch

    async def watch(self) -> None:
        """Follow every leased agent's faults while the run is live."""
        await self._fleet.awatch_faults(self._on_event)

    # -------------------------------------------------------------- inject

    async def inject(
        self, activity: Activity, index: int, agents: list[str], duration: float, run_id: str
    ) -> None:
        """The activity's fault on each agent, in parallel (idempotent: one request id)."""
        p = activity.provider
        assert isinstance(p, FaultProvider)
        request_id = f"{run_id}/{index}"
        self._run_id = run_id
        start, t0 = probes.now_iso(), time.monotonic()

        async def call(c: AsyncAgentClient) -> pb.Fault:
            lease_id = self._fleet.keepers[c.address].lease_id
            return await retrying(
                lambda: c.inject(
                    lease_id, p.spec, duration, p.target, request_id, metadata=self._metadata()
                )
            )

        outcomes = await self._fleet.amap(call, agents)
        output: dict[str, Any] = {}
        each = len(outcomes) <= PER_AGENT_LINES
        async for a, o in in_slices(outcomes.items()):
            rec = FaultRecord(
                activity.name, p.fault, duration, probes.now_iso(), round(o.seconds, 6)
            )
            if o.value is not None:
                f = o.value
                rec.fault_id, rec.state, rec.applied = f.id, state_name(f.state), dict(f.applied)
                rec.error = f.error
                self._activity[f.id] = (activity.name, len(self._j.steps) - 1)
                self._timeline(a, f)
            else:
                rec.error = o.error
            self._j.agent(a).faults.append(rec)
            output[a] = {
                k: v
                for k, v in (("fault_id", rec.fault_id), ("state", rec.state), ("error", rec.error))
                if v
            }
            if each:
                self._report.event(
                    f"{p.fault} on {a}: "
                    + (f"{rec.state} {rec.fault_id}" if rec.fault_id else rec.error)
                )
            if rec.error:
                self.problem(a, "injection failed", f"{activity.name} ({p.fault}): {rec.error}")
        if not each:
            states = (v.get("state") or "failed" for v in output.values())
            self._report.event(f"{p.fault} on {len(output)} agent(s): {counts(states)}")
        ok = all("error" not in v for v in output.values())
        self._j.run.append(
            {
                "activity": dict(activity.raw),
                "status": "succeeded" if ok else "failed",
                "output": {"agents": output},
                "start": start,
                "end": probes.now_iso(),
                "duration": round(time.monotonic() - t0, 6),
            }
        )

    # -------------------------------------------------------------- revert

    async def revert_all(self) -> None:
        """Revert every fault of this run on every agent at once, release the
        leases, and record one rollback per agent."""
        self._reverting = True
        agents = self._j.agents
        addresses = [a for a, r in agents.items() if r.faults or a in self._fleet.keepers]
        if not addresses:
            await self._fleet.astop_watches()
            return
        self._report.event(f"reverting on {len(addresses)} agent(s)")
        start, t0 = probes.now_iso(), time.monotonic()
        # The watches end first: each revert's answer says how its fault ended
        # (and catches an early end they missed), and a fetch per agent for
        # the reverts' own state changes would only slow them at fleet scale.
        await self._fleet.astop_watches()
        await self._fleet.after_halts()  # the kill switch's come first
        await self._fleet.amap(self._undo, addresses)
        self._metrics.blast_radius_percentage.set(0)
        each, ends = len(addresses) <= PER_AGENT_LINES, list[str]()
        async for a in in_slices(addresses):
            rec = agents[a]
            results = [f.revert or {} for f in rec.faults if f.fault_id]
            ok = all(r.get("state") == "reverted" for r in results)
            self._j.rollbacks.append(
                {
                    "activity": {
                        "type": "action",
                        "name": f"revert brownout faults on {a}",
                        "provider": {"type": "brownout", "agent": a},
                    },
                    "status": "succeeded" if ok else "failed",
                    "output": {"faults": results, "released": rec.released},
                    "start": start,
                    "end": probes.now_iso(),
                    "duration": round(time.monotonic() - t0, 6),
                }
            )
            if each:
                said = ", ".join(r.get("state") or r.get("error", "?") for r in results)
                self._report.event(f"reverted on {a}: {said or 'no faults'}")
            else:
                ends += [r.get("state") or "failed" for r in results] or ["no faults"]
        if not each:
            self._report.event(f"reverted on {len(addresses)} agent(s): {counts(ends)}")

    async def _undo(self, c: AsyncAgentClient) -> None:
        rec = self._j.agents[c.address]
        for f in rec.faults:
            if not f.fault_id:
                continue
            try:
                fault = await retrying(functools.partial(c.revert, f.fault_id, self._metadata()))
            except grpc.RpcError as exc:
                f.revert = {"error": rpc_error(exc), "at": probes.now_iso()}
                self._record(
                    c.address, "revert failed", f"fault {f.fault_id}: {rpc_error(exc)}", f.fault_id
                )
                continue
            f.revert = {
                "state": state_name(fault.state),
                "end_reason": reason_name(fault.end_reason) if fault.end_reason else "",
                "error": fault.error,
                "at": probes.now_iso(),
            }
            if fault.state == pb.FAULT_STATE_REVERTED:
                self._metrics.rollbacks_total.labels("fault_revert").inc()
            self._timeline(c.address, fault)
            self._note_revert(c.address, f, fault)
        if c.address in self._fleet.keepers:
            try:
                await retrying(lambda: self._fleet.release(c.address))
                rec.released = True
            except grpc.RpcError as exc:
                # NOT_FOUND: the lease expired, and with it the faults.
                rec.release_error = rpc_error(exc)

    def _note_revert(self, agent: str, record: FaultRecord, fault: pb.Fault) -> None:
        """A revert reply for a fault that had already ended unexpectedly (its
        lease expired while cut off, say) is how the watch's blind spots show."""
        fresh: dict[str, str] | None = None
        with self._lock:
            seen = self._ended_early.get(fault.id)
            if seen is None and fault.end_reason not in self._expected:
                seen = fresh = self._ended_early[fault.id] = dict(record.revert or {})
        if seen is not None:
            record.ended_early = seen
        if fresh is not None:
            self._record(
                agent, "fault ended early", f"fault {fault.id} ended {fresh['state']}"
                f" ({fresh['end_reason']}) before the run reverted it", fault.id,
            )  # fmt: skip
