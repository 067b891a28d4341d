"""Runs one experiment across the fleet and always cleans up after itself.

Order: run window -> pre-flight (targets, capabilities, limits) -> steady
state before (the health gate) -> one lease per target -> for each
blast-radius step: the method on the newly added agents, then the step's
hold -> steady state after -> revert everything -> rollbacks.

End states: completed; failed (the hypothesis was not met, or the faults did
not run as planned: an injection failed, a lease was lost, a fault ended
early); aborted (a stop condition fired, or pre-flight refused); interrupted
(SIGINT/SIGTERM). Every end state reverts every fault this run injected and
records each agent's result. Signals only set a flag, so a second Ctrl-C cannot cut the reverts
short; if the controller itself dies, each agent's lease expires and the
agent reverts on its own.
"""

from __future__ import annotations

import functools
import getpass
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import grpc
import tenacity
from google.protobuf import json_format

from brownout.v1 import agent_pb2 as pb
from controller import journal as jr
from controller import probes
from controller.client import AgentClient
from controller.experiment import Activity, Experiment, FaultProvider, StopCondition
from controller.fault_watch import FaultWatch
from controller.fleet import Fleet
from controller.history import History
from controller.metrics import ControllerMetrics
from controller.planning import Plan, PreflightAbort, make_plan
from controller.progress import Quiet, Reporter
from controller.render import reason_name, state_name
from controller.stopconditions import Breach, StopMonitor

T = TypeVar("T")
_TRANSIENT = {grpc.StatusCode.UNAVAILABLE}
# How a fault may end before the run reverts it without anything going wrong.
_EXPECTED_ENDS = frozenset(
    {pb.END_REASON_CLIENT_REVERT, pb.END_REASON_DURATION_ELAPSED, pb.END_REASON_LEASE_RELEASED}
)
_ENDED = frozenset({pb.FAULT_STATE_REVERTED, pb.FAULT_STATE_FAILED})


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def default_holder() -> str:
    return f"brownout:{getpass.getuser()}@{socket.gethostname()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def _retry(call: Callable[[], T]) -> T:
    """A few quick retries for a connection blip; idempotent calls only."""
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(
            lambda e: isinstance(e, grpc.RpcError) and e.code() in _TRANSIENT
        ),
        wait=tenacity.wait_fixed(0.2),
        stop=tenacity.stop_after_attempt(3),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable")


def _rpc_error(exc: grpc.RpcError) -> str:
    code = exc.code()
    return f"{code.name if code else 'UNKNOWN'}: {exc.details()}"


class WindowClosed(Exception):
    pass


@dataclass
class RunOptions:
    run_id: str = field(default_factory=new_run_id)
    holder: str = field(default_factory=default_holder)
    seed: int | None = None
    override_window: bool = False
    journal_path: Path | None = None
    history: History | None = None
    clock: Callable[[], datetime] = utcnow


class Runner:
    def __init__(
        self,
        experiment: Experiment,
        fleet: Fleet,
        options: RunOptions | None = None,
        reporter: Reporter | None = None,
        metrics: ControllerMetrics | None = None,
    ) -> None:
        self.experiment = experiment
        self.fleet = fleet
        self.options = options or RunOptions()
        self.report = reporter or Quiet()
        self.metrics = metrics or ControllerMetrics()
        self._stop = threading.Event()
        self._lock = threading.RLock()
        self._end: tuple[str, str, str] | None = None  # status, reason, metric label
        self._noticed_end = False
        self.signals_ignored = 0
        self._agents: dict[str, dict[str, Any]] = {}
        self._affected: list[str] = []
        self._journal: dict[str, Any] = {}
        self._watches: list[FaultWatch] = []
        self._reverting = False  # from here on, fault ends are the run's own
        self._problems: list[dict[str, str]] = []
        self._ended_early: dict[str, dict[str, str]] = {}  # fault id -> how

    # ------------------------------------------------------- fault problems

    def _record_problem(self, agent: str, kind: str, detail: str, fault_id: str = "") -> None:
        entry = {"agent": agent, "problem": kind, "detail": detail}
        if fault_id:
            entry["fault_id"] = fault_id
        with self._lock:
            self._problems.append(entry)
        self.report.event(f"agent {agent}: {kind}: {detail}")

    def _problem(self, agent: str, kind: str, detail: str, fault_id: str = "") -> None:
        """Record that the faults did not run as planned; with on-fault-error
        abort, end the run now."""
        self._record_problem(agent, kind, detail, fault_id)
        abort = self.experiment.settings.on_fault_error == "abort"
        if abort and self._end_with("failed", f"{kind} on {agent}: {detail}", "fault_error"):
            self.report.event("on-fault-error is abort: reverting everything")

    def _on_fault_event(self, agent: str, event: pb.FaultEvent) -> None:
        """From a watch thread: a fault that ends before the run reverts it,
        for a reason other than its own duration, ended early."""
        f = event.fault
        if self._reverting or f.state not in _ENDED or f.end_reason in _EXPECTED_ENDS:
            return
        if f.end_reason == pb.END_REASON_APPLY_FAILED:
            return  # the inject reply says so, as a failed injection
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
        self._problem(
            agent, "fault ended early", detail + (f": {f.error}" if f.error else ""), f.id
        )

    # ------------------------------------------------------------ control

    def interrupt(self, why: str) -> None:
        """Called from a signal handler: sets flags only, no I/O and no blocking."""
        if not self._end_with("interrupted", f"interrupted by {why}", ""):
            self.signals_ignored += 1

    def _end_with(self, status: str, reason: str, label: str) -> bool:
        with self._lock:
            if self._end is not None:
                return False
            self._end = (status, reason, label)
        self._stop.set()
        return True

    def _on_breach(self, breach: Breach) -> None:
        if self._end_with("aborted", breach.reason, breach.condition):
            self.report.event(f"ABORT {breach.reason}: reverting everything")

    def _stopping(self) -> bool:
        if self._stop.is_set() and not self._noticed_end and self._end is not None:
            self._noticed_end = True
            if self._end[0] == "interrupted":
                self.report.event(f"{self._end[1]}: reverting (further signals are ignored)")
        return self._stop.is_set()

    def _sleep(self, seconds: float) -> bool:
        """Wait, noticing lost leases; True as soon as the run must stop."""
        deadline = time.monotonic() + seconds
        while True:
            self._note_lost()
            if self._stopping():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._stop.wait(min(left, 0.25))

    def _note_lost(self) -> None:
        for address, reason in self.fleet.lost().items():
            rec = self._agents.setdefault(address, _agent_record())
            if not rec["lost"]:
                rec["lost"] = reason
                self.report.event(
                    f"agent {address}: lease lost ({reason}); the agent reverts its faults itself"
                )
                if not self._reverting:
                    self._problem(address, "lease lost", reason)

    # ------------------------------------------------------------- window

    def check_window(self) -> str:
        w = self.experiment.settings.window
        if w is None:
            return "no run window"
        now = self.options.clock()
        if w.contains(now):
            return f"inside run window {w.describe()}"
        if self.options.override_window:
            return f"outside run window {w.describe()}: overridden"
        opening = w.next_opening(now)
        raise WindowClosed(
            f"outside the run window {w.describe()} (next opening {opening:%a %Y-%m-%d %H:%M %Z});"
            " use --override-window to run anyway"
        )

    # --------------------------------------------------------- hypothesis

    def _hypothesis(self, phase: str) -> dict[str, Any] | None:
        h = self.experiment.hypothesis
        if h is None:
            return None
        records, met = [], True
        for probe in h.probes:
            run = probes.execute(probe)
            records.append(run.record())
            met = met and run.tolerance_met
            detail = run.verdict.detail if run.verdict else run.error
            self.report.event(f"steady state {phase}: {probe.name}: {detail}")
        return {"steady_state_met": met, "probes": records}

    # ---------------------------------------------------------- dry run

    def dry_run(self) -> dict[str, Any]:
        """Resolve targets, check each agent's capabilities and limits, run the
        before-hypothesis; inject nothing."""
        report: dict[str, Any] = {
            "dry_run": True,
            "title": self.experiment.title,
            "ok": True,
        }
        try:
            report["window"] = self.check_window()
        except WindowClosed as exc:
            report["window"], report["ok"] = str(exc), False
        statuses = self.fleet.statuses()
        try:
            plan = make_plan(self.experiment, statuses, self.options.seed)
        except PreflightAbort as exc:
            report.update(ok=False, error=str(exc))
            return report
        report["selection"] = plan.selection.as_dict()
        report["steps"] = plan.steps_record()
        report["faults"] = [
            {
                "action": a.name,
                "kind": a.provider.fault,
                "duration": plan.durations[a.name],
                "spec": json_format.MessageToDict(
                    a.provider.spec, preserving_proto_field_name=True
                ),
            }
            for a in self.experiment.fault_actions
            if isinstance(a.provider, FaultProvider)
        ]
        report["agents"] = {
            a: {
                "reachable": st.reachable,
                "hostname": st.info.hostname if st.info else "",
                "labels": st.labels,
                "target": a in plan.targets,
                "skipped": plan.selection.skipped.get(a, ""),
                "problems": plan.problems.get(a, []),
            }
            for a, st in statuses.items()
        }
        for a in plan.targets:
            self.report.event(f"dry run: {a}: {'; '.join(plan.problems.get(a, [])) or 'ok'}")
        before = self._hypothesis("before")
        report["steady_state_before"] = before
        if (
            not plan.targets
            or plan.problems
            or (before is not None and not before["steady_state_met"])
        ):
            report["ok"] = False
        return report

    # --------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        started_at, t0 = probes.now_iso(), time.monotonic()
        self._journal = j = jr.new(self.experiment, self.options.run_id, started_at)
        ext = j["extensions"][0]
        ext["agents"] = self._agents
        j["status"] = "running"
        monitor: StopMonitor | None = None
        before: dict[str, Any] | None = None
        after: dict[str, Any] | None = None
        try:
            self._save()
            plan = self._preflight(ext)
            if plan is not None and not self._stopping():
                before = j["steady_states"]["before"] = self._hypothesis("before")
                if (before is None or before["steady_state_met"]) and not self._stopping():
                    self._acquire(plan)
                    monitor = self._start_monitor()
                    self._execute(plan, ext)
                    if not self._stopping():
                        after = j["steady_states"]["after"] = self._hypothesis("after")
        except Exception as exc:  # a bug must still end in reverts and a journal
            self._end_with("aborted", f"controller error: {exc!r}", "error")
            self.report.event(f"controller error: {exc!r}; reverting\n{traceback.format_exc()}")
        finally:
            if monitor is not None:
                monitor.stop()
                ext["stop_conditions"] = monitor.report()
            self._note_lost()
            self._reverting = True
            self._revert_all()
            for w in self._watches:
                w.stop()
            self._rollbacks()
        status, reason = self._verdict(before, after)
        j.update(status=status, end=probes.now_iso(), duration=round(time.monotonic() - t0, 3))
        j["deviated"] = after is not None and not after["steady_state_met"]
        ext["reason"] = reason
        ext["on_fault_error"] = self.experiment.settings.on_fault_error
        ext["faults_ok"] = not self._problems
        ext["fault_problems"] = self._problems
        ext["signals_ignored"] = self.signals_ignored
        self._record_metrics(status, j["duration"])
        self._save(final=True)
        self.report.event(f"run {self.options.run_id} {status}{f': {reason}' if reason else ''}")
        return j

    def _verdict(
        self, before: dict[str, Any] | None, after: dict[str, Any] | None
    ) -> tuple[str, str]:
        problems = ""
        if self._problems:
            shown = "; ".join(
                f"{p['agent']}: {p['problem']} ({p['detail']})" for p in self._problems[:5]
            )
            more = len(self._problems) - 5
            problems = (
                f"the faults did not run as planned: {len(self._problems)} problem(s): {shown}"
            )
            problems += f"; and {more} more" if more > 0 else ""
        if self._end is not None:
            status, reason = self._end[0], self._end[1]
            if problems and self._end[2] != "fault_error":
                reason = f"{reason}; {problems}"
            return status, reason
        if before is not None and not before["steady_state_met"]:
            return "failed", "steady state not met before the method: nothing was injected"
        if after is not None and not after["steady_state_met"]:
            deviated = "steady state deviated after the method"
            return "failed", f"{deviated}; {problems}" if problems else deviated
        if problems:
            return "failed", problems
        return "completed", ""

    def _save(self, final: bool = False) -> None:
        if self.options.journal_path is not None:
            jr.write(self._journal, self.options.journal_path)
        if final and self.options.history is not None:
            self.options.history.record(self._journal, self.options.journal_path or Path("-"))

    # ---------------------------------------------------------- pre-flight

    def _preflight(self, ext: dict[str, Any]) -> Plan | None:
        try:
            ext["window"] = self.check_window()
        except WindowClosed as exc:
            self._end_with("aborted", str(exc), "window")
            return None
        statuses = self.fleet.statuses()
        for a, st in statuses.items():
            rec = self._agents.setdefault(a, _agent_record())
            rec["hostname"] = st.info.hostname if st.info else ""
        try:
            plan = make_plan(self.experiment, statuses, self.options.seed)
        except PreflightAbort as exc:
            self._end_with("aborted", str(exc), exc.label)
            return None
        ext["selection"] = plan.selection.as_dict()
        ext["planned_steps"] = plan.steps_record()
        sel = plan.selection
        self.report.event(
            f"targets: {len(sel.targets)} of {sel.fleet_size} agent(s)"
            f" (eligible {len(sel.eligible)}, mode {sel.mode}, seed {sel.seed}"
            f"{', capped by max-fleet-percent' if sel.capped else ''})"
        )
        for a, why in sel.skipped.items():
            self.report.event(f"skipping {a}: {why}")
            self._agents[a]["skipped"] = why
        if plan.problems:
            detail = "; ".join(f"{a}: {', '.join(p)}" for a, p in plan.problems.items())
            self._end_with("aborted", f"pre-flight refused: {detail}", "preflight")
            return None
        if not sel.targets:
            self._end_with("aborted", "no eligible agent matches the selection", "no_targets")
            return None
        return plan

    def _acquire(self, plan: Plan) -> None:
        ttl = self.experiment.settings.lease_ttl
        holder = f"{self.options.holder} run={self.options.run_id}"
        for a, o in self.fleet.acquire_leases(plan.targets, holder, ttl).items():
            rec = self._agents[a]
            if o.value is not None:
                rec["lease_id"] = o.value.lease_id
                continue
            rec["skipped"] = f"lease refused: {o.error}"
            self.report.event(f"agent {a}: lease refused ({o.error})")
            if o.unreachable and self.experiment.settings.on_unreachable == "abort":
                self._end_with("aborted", f"agent {a} unreachable: {o.error}", "unreachable")
        self.report.event(f"leases held on {len(self.fleet.keepers)} agent(s), ttl {ttl:g}s")
        if not self.fleet.keepers:
            self._end_with("aborted", "no target agent granted a lease", "unreachable")
        for address, keeper in self.fleet.keepers.items():
            client = self.fleet.client(address)
            self._watches.append(FaultWatch(client, keeper.lease_id, self._on_fault_event).start())

    def _start_monitor(self) -> StopMonitor | None:
        conditions = self.experiment.settings.stop_conditions
        if not conditions:
            return None

        def seen(c: StopCondition, run: probes.ProbeRun) -> None:
            detail = run.verdict.detail if run.verdict else run.error
            self.report.event(f"stop condition {c.name}: {detail}")

        return StopMonitor(conditions, self._on_breach, seen).start()

    # ------------------------------------------------------------- method

    def _execute(self, plan: Plan, ext: dict[str, Any]) -> None:
        fleet_size = len(self.fleet.refs)
        for step in plan.steps:
            if self._stopping():
                return
            lost = self.fleet.lost()
            live = [a for a in step.agents if a in self.fleet.keepers and a not in lost]
            added = [a for a in live if a not in self._affected]
            record = {
                "index": step.index,
                "percent": step.percent,
                "hold": step.hold,
                "agents": live,
                "added": added,
                "blast_radius_percent": 0.0,
                "start": probes.now_iso(),
                "end": None,
            }
            ext["steps"].append(record)
            self.report.event(
                f"step {step.index + 1}/{len(plan.steps)}: {step.percent:g}% -> {len(live)}"
                f" agent(s), {len(added)} new: {', '.join(added) or '-'}"
            )
            for index, activity in enumerate(self.experiment.method):
                if self._sleep(activity.pause_before):
                    break
                if isinstance(activity.provider, FaultProvider):
                    if added:
                        self._inject(activity, index, added, plan)
                else:
                    run = probes.execute(activity)
                    self._journal["run"].append(run.record())
                    self.report.event(
                        f"{activity.type} {activity.name}: {run.status}"
                        f"{f' ({run.error})' if run.error else ''}"
                    )
                if self._sleep(activity.pause_after):
                    break
            self._affected += [a for a in added if a not in self._affected]
            radius = 100.0 * len(self._affected) / fleet_size if fleet_size else 0.0
            record["blast_radius_percent"] = round(radius, 3)
            self.metrics.blast_radius_percentage.set(radius)
            stopped = self._stopping() or self._sleep(step.hold)
            record["end"] = probes.now_iso()
            if stopped:
                return

    def _inject(self, activity: Activity, index: int, agents: list[str], plan: Plan) -> None:
        p = activity.provider
        assert isinstance(p, FaultProvider)
        duration = plan.durations[activity.name]
        request_id = f"{self.options.run_id}/{index}"
        start, t0 = probes.now_iso(), time.monotonic()

        def call(c: AgentClient) -> pb.Fault:
            lease_id = self.fleet.keepers[c.address].lease_id
            return _retry(lambda: c.inject(lease_id, p.spec, duration, p.target, request_id))

        outcomes = self.fleet.map(call, agents)
        output: dict[str, Any] = {}
        for a, o in outcomes.items():
            rec: dict[str, Any] = {
                "action": activity.name,
                "kind": p.fault,
                "duration": duration,
                "injected_at": probes.now_iso(),
                "seconds": round(o.seconds, 6),
            }
            if o.value is not None:
                f = o.value
                rec.update(fault_id=f.id, state=state_name(f.state), applied=dict(f.applied))
                if f.error:
                    rec["error"] = f.error
            else:
                rec["error"] = o.error
                if o.unreachable and self.experiment.settings.on_unreachable == "abort":
                    self._end_with("aborted", f"agent {a} unreachable: {o.error}", "unreachable")
            self._agents[a]["faults"].append(rec)
            if "error" in rec:
                self._problem(a, "injection failed", f"{activity.name} ({p.fault}): {rec['error']}")
            output[a] = {k: rec[k] for k in ("fault_id", "state", "error") if k in rec}
            self.report.event(
                f"{p.fault} on {a}: "
                + (f"{rec['state']} {rec['fault_id']}" if "fault_id" in rec else rec["error"])
            )
        ok = all("error" not in v for v in output.values())
        self._journal["run"].append(
            {
                "activity": dict(activity.raw),
                "status": "succeeded" if ok else "failed",
                "output": {"agents": output},
                "start": start,
                "end": probes.now_iso(),
                "duration": round(time.monotonic() - t0, 6),
            }
        )

    # ------------------------------------------------------------- revert

    def _revert_all(self) -> None:
        """Revert every fault of this run on every agent at once, then release leases."""
        addresses = [a for a, r in self._agents.items() if r["faults"] or a in self.fleet.keepers]
        if not addresses:
            return
        self.report.event(f"reverting on {len(addresses)} agent(s)")
        start, t0 = probes.now_iso(), time.monotonic()

        def undo(c: AgentClient) -> None:
            rec = self._agents[c.address]
            for f in rec["faults"]:
                if "fault_id" not in f:
                    continue
                try:
                    fault = _retry(functools.partial(c.revert, str(f["fault_id"])))
                except grpc.RpcError as exc:
                    f["revert"] = {"error": _rpc_error(exc), "at": probes.now_iso()}
                    self._record_problem(
                        c.address, "revert failed", f"fault {f['fault_id']}: {_rpc_error(exc)}",
                        str(f["fault_id"]),
                    )  # fmt: skip
                    continue
                f["revert"] = {
                    "state": state_name(fault.state),
                    "end_reason": reason_name(fault.end_reason) if fault.end_reason else "",
                    "error": fault.error,
                    "at": probes.now_iso(),
                }
                if fault.state == pb.FAULT_STATE_REVERTED:
                    self.metrics.rollbacks_total.inc()
                self._note_revert(c.address, f, fault)
            keeper = self.fleet.keepers.get(c.address)
            if keeper is not None:
                keeper.stop()
                try:
                    _retry(lambda: c.release_lease(keeper.lease_id))
                    rec["released"] = True
                except grpc.RpcError as exc:
                    # NOT_FOUND: the lease expired, and with it the faults.
                    rec["release_error"] = _rpc_error(exc)

        self.fleet.map(undo, addresses)
        self._note_lost()
        self.metrics.blast_radius_percentage.set(0)
        for a in addresses:
            rec = self._agents[a]
            results = [f.get("revert", {}) for f in rec["faults"] if "fault_id" in f]
            ok = all(r.get("state") == "reverted" for r in results)
            self._journal["rollbacks"].append(
                {
                    "activity": {
                        "type": "action",
                        "name": f"revert brownout faults on {a}",
                        "provider": {"type": "brownout", "agent": a},
                    },
                    "status": "succeeded" if ok else "failed",
                    "output": {"faults": results, "released": rec.get("released", False)},
                    "start": start,
                    "end": probes.now_iso(),
                    "duration": round(time.monotonic() - t0, 6),
                }
            )
            self.report.event(
                f"reverted on {a}: "
                + (", ".join(r.get("state") or r.get("error", "?") for r in results) or "no faults")
            )

    def _note_revert(self, agent: str, record: dict[str, Any], fault: pb.Fault) -> None:
        """A revert reply for a fault that had already ended unexpectedly (its
        lease expired while cut off, say) is how the watch's blind spots show."""
        fresh: dict[str, str] | None = None
        with self._lock:
            seen = self._ended_early.get(fault.id)
            if seen is None and fault.end_reason not in _EXPECTED_ENDS:
                seen = fresh = self._ended_early[fault.id] = dict(record["revert"])
        if seen is not None:
            record["ended_early"] = seen
        if fresh is not None:
            self._record_problem(
                agent, "fault ended early", f"fault {fault.id} ended {fresh['state']}"
                f" ({fresh['end_reason']}) before the run reverted it", fault.id,
            )  # fmt: skip

    def _rollbacks(self) -> None:
        for activity in self.experiment.rollbacks:
            run = probes.execute(activity)
            self._journal["rollbacks"].append(run.record())
            self.metrics.rollbacks_total.inc()
            self.report.event(f"rollback {activity.name}: {run.status}")

    def _record_metrics(self, status: str, duration: float) -> None:
        self.metrics.experiments_total.labels(status).inc()
        self.metrics.experiment_duration_seconds.observe(duration)
        if status == "aborted" and self._end is not None:
            self.metrics.safety_aborts_total.labels(self._end[2] or "other").inc()


def _agent_record() -> dict[str, Any]:
    return {"hostname": "", "lease_id": "", "faults": [], "lost": "", "skipped": ""}
