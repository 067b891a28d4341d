"""Runs one experiment across the fleet and always cleans up after itself.

Order: run window -> pre-flight (targets, capabilities, limits) -> steady
state before (the health gate) -> one lease per target -> for each
blast-radius step: the method on the newly added agents, then the step's
hold -> steady state after -> revert everything -> rollbacks.

End states (records.RunStatus): completed; failed (the hypothesis was not
met, or the faults did not run as planned: an injection failed, a lease was
lost, a fault ended early); aborted (a stop condition fired, or pre-flight
refused); interrupted (SIGINT/SIGTERM). Every end state reverts every fault
this run injected and records each agent's result. Signals only set a flag,
so a second Ctrl-C cannot cut the reverts short; if the controller itself
dies, each agent's lease expires and the agent reverts on its own.

A run is a task on its fleet's loop (`arun`): agent calls are awaited there,
and the steps that block by nature (probes, journal writes with fsync, the
history row) go to worker threads one at a time. `run()` is the same from a
thread that is not the loop's (the CLI's main thread).
"""

from __future__ import annotations

import asyncio
import contextlib
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
from typing import Any

import structlog

from brownout.v1 import agent_pb2 as pb
from controller.agents.fleet import Fleet
from controller.agents.loop import in_slices
from controller.experiments import dryrun, probes
from controller.experiments import journal as jr
from controller.experiments.controls import Controls, Interrupted
from controller.experiments.faults import RunFaults
from controller.experiments.impact import Impact
from controller.experiments.metrics import ControllerMetrics
from controller.experiments.model import Activity, Experiment, FaultProvider, StopCondition
from controller.experiments.planning import Plan, PreflightAbort, make_plan
from controller.experiments.progress import PER_AGENT_LINES, Quiet, Reporter, agent_list
from controller.experiments.records import RunJournal, RunStatus, StepRecord
from controller.experiments.sampler import Sampler, record_run, recover
from controller.experiments.stopconditions import Breach, StopMonitor
from controller.experiments.timeline import Timeline
from controller.experiments.tracing import RunTrace
from controller.experiments.window import WindowClosed
from controller.store import History


def new_run_id() -> str:
    return f"{datetime.now(UTC):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def default_holder() -> str:
    return f"brownout:{getpass.getuser()}@{socket.gethostname()}"


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunOptions:
    run_id: str = field(default_factory=new_run_id)
    holder: str = field(default_factory=default_holder)
    seed: int | None = None
    override_window: bool = False
    journal_path: Path | None = None
    history: History | None = None
    clock: Callable[[], datetime] = utcnow
    # Told of milestones ("step", "aborted") with their fields: notifications.
    on_milestone: Callable[..., None] | None = None
    # Why the agents were halted, if the caller knows (a service: its kill
    # switch, engaged maybe by another replica); asked off the loop when a
    # halt it did not expect ends one of the run's faults.
    halted: Callable[[], str] | None = None


@dataclass(frozen=True)
class _End:
    status: RunStatus
    reason: str
    label: str  # for chaos_safety_aborts_total{reason}, or "fault_error"


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
        # Set from any thread when the run must end, so a sleeping run wakes.
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.RLock()
        self._end: _End | None = None
        self._noticed_end = False
        self.signals_ignored = 0
        self._affected: list[str] = []
        self.journal = RunJournal(experiment, self.options.run_id, "")
        settings = experiment.settings
        self.timeline = Timeline(settings.sample_interval, settings.recovery)
        self.impact = Impact(self.metrics)
        self.journal.timeline = self.timeline
        for probe in experiment.hypothesis.probes if experiment.hypothesis else ():
            self.timeline.probe(probe.name, "hypothesis", probe.tolerance)
        for c in settings.stop_conditions:
            self.timeline.probe(c.name, "stop_condition", c.probe.tolerance)
        self.log = structlog.get_logger("brownout.run").bind(run_id=self.options.run_id)
        self.faults = RunFaults(
            fleet,
            self.journal,
            self.report,
            self.metrics,
            lambda reason, label: self._fault_error(reason, label),
            experiment.settings.on_fault_error,
            self._halt_seen,
        )
        self._tasks: set[asyncio.Task[None]] = set()
        self.trace: RunTrace | None = None  # made as the run starts
        self.controls = Controls(experiment)
        self._continuous: threading.Thread | None = None
        self._method_done = threading.Event()

    # ------------------------------------------------------------ control

    def interrupt(self, why: str) -> None:
        """Called from a signal handler: sets flags only, no I/O and no blocking."""
        if not self._end_with(RunStatus.INTERRUPTED, f"interrupted by {why}", ""):
            self.signals_ignored += 1

    def abort(self, reason: str, label: str) -> bool:
        """From any thread (an API call, the kill switch): end the run aborted
        and revert everything. False if it was already ending."""
        if label in ("kill_switch", "halt"):
            self.faults.expect(pb.END_REASON_HALT)
        if label == "kill_switch":
            # It also gives up the run's leases: their expiry is its doing.
            self.faults.expect(pb.END_REASON_LEASE_EXPIRED)
        if self._end_with(RunStatus.ABORTED, reason, label):
            self.report.event(f"ABORT {reason}: reverting everything")
            self._milestone("aborted", reason=reason, label=label)
            return True
        return False

    def _halt_seen(self, agent: str, fault_id: str) -> None:
        """On the fleet's loop: a halt ended one of the run's faults. The run
        is aborted (the hypothesis can no longer be tested), with the kill
        switch's reason if the caller can tell it."""
        task = asyncio.get_running_loop().create_task(self._halted(agent, fault_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _halted(self, agent: str, fault_id: str) -> None:
        why = await asyncio.to_thread(self.options.halted) if self.options.halted else ""
        if why:
            self.abort(why, "kill_switch")
        else:
            self.abort(f"agent {agent} was halted under the run (fault {fault_id} reverted):"
                       " brownout halt, or another controller's kill switch", "halt")  # fmt: skip

    def note(self, text: str, by: str) -> dict[str, Any]:
        """A person's timestamped observation, from any thread (ValueError if
        empty, too long, or one too many)."""
        note = self.timeline.note(text, by)
        self.log.info("note", by=by, text=note["text"])
        return note

    def _milestone(self, kind: str, **data: object) -> None:
        if self.options.on_milestone is not None:
            self.options.on_milestone(kind, **data)

    def _end_with(self, status: RunStatus, reason: str, label: str) -> bool:
        with self._lock:
            if self._end is not None:
                return False
            self._end = _End(status, reason, label)
        kind = "kill_switch" if label == "kill_switch" else str(status)
        self.timeline.event(kind, reason=reason, label=label)
        self._stop.set()
        loop, wake = self._loop, self._wake
        if loop is not None and wake is not None and not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)
        return True

    def _fault_error(self, reason: str, label: str) -> None:
        if self._end_with(RunStatus.FAILED, reason, label):
            self.report.event("on-fault-error is abort: reverting everything")

    def _on_breach(self, breach: Breach) -> None:
        if self._end_with(RunStatus.ABORTED, breach.reason, breach.condition):
            self.report.event(f"ABORT {breach.reason}: reverting everything")
            self._milestone("aborted", reason=breach.reason, label=breach.condition)

    def _stopping(self) -> bool:
        end = self._end
        if self._stop.is_set() and not self._noticed_end and end is not None:
            self._noticed_end = True
            if end.status == RunStatus.INTERRUPTED:
                self.report.event(f"{end.reason}: reverting (further signals are ignored)")
        return self._stop.is_set()

    async def _sleep(self, seconds: float) -> bool:
        """Wait, noticing lost leases; True as soon as the run must stop."""
        assert self._wake is not None
        deadline = time.monotonic() + seconds
        while True:
            await self._note_lost()
            if self._stopping():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            # Woken at once by an end; every 0.25 s to look at the leases.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), min(left, 0.25))

    async def _note_lost(self) -> None:
        fresh: dict[str, list[str]] = {}  # reason -> agents
        # A mass loss (the kill switch's, a partition's) is thousands of
        # records: in slices, so the shared fleet's other leases are renewed.
        async for address, reason in in_slices(self.fleet.lost().items()):  # a fresh dict
            rec = self.journal.agent(address)
            if not rec.lost:
                rec.lost = reason
                fresh.setdefault(reason, []).append(address)
                self.faults.lease_lost(address, reason)
                self.timeline.event("lease_lost", agent=address, reason=reason)
        for reason, agents in fresh.items():
            if len(agents) > PER_AGENT_LINES:  # the kill switch gave them all up, say
                self.report.event(
                    f"{len(agents)} leases lost ({reason}); each agent reverts its faults"
                    f" itself within the TTL: {agent_list(agents)}"
                )
                continue
            for address in agents:
                self.report.event(
                    f"agent {address}: lease lost ({reason}); the agent reverts its faults itself"
                )

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

    def hypothesis(self, phase: str) -> dict[str, Any] | None:
        h = self.experiment.hypothesis
        if h is None:
            return None
        context = self.experiment.raw.get("steady-state-hypothesis") or {}
        self._control("before", "hypothesis", context)
        records, met = [], True
        for probe in h.probes:
            self._control("before", "activity", probe.raw, own=probe.controls)
            run = probes.execute(probe)
            self._sampled(run, phase)
            records.append(run.record())
            self._control("after", "activity", probe.raw, records[-1], probe.controls)
            met = met and run.tolerance_met
            detail = run.verdict.detail if run.verdict else run.error
            self.report.event(f"steady state {phase}: {probe.name}: {detail}")
        state = {"steady_state_met": met, "probes": records}
        self._control("after", "hypothesis", context, state)
        return state

    def _control(
        self,
        scope: str,
        level: str,
        context: Any,
        state: Any = None,
        own: tuple[Any, ...] = (),
    ) -> None:
        """The declared controls at this point of the run, on this thread; a
        control's InterruptExecution interrupts the run."""
        if not self.controls:
            return
        try:
            if scope == "before":
                self.controls.before(level, context, own)
            else:
                self.controls.after(level, context, state, own)
        except Interrupted as exc:
            self._end_with(RunStatus.INTERRUPTED, str(exc), "control")

    async def _acontrol(self, *args: Any) -> None:
        if self.controls:
            await asyncio.to_thread(self._control, *args)

    def dry_run(self) -> dict[str, Any]:
        """Resolve targets, check each agent's capabilities and limits, run the
        before-hypothesis; inject nothing."""
        return dryrun.report(self)

    # --------------------------------------------------------------- run

    def run(self) -> dict[str, Any]:
        """The whole run, from a thread other than the fleet loop's."""
        return self.fleet.loop.run(self.arun())

    async def arun(self) -> dict[str, Any]:
        """The whole run, as a task on the fleet's loop."""
        self._loop, self._wake = asyncio.get_running_loop(), asyncio.Event()
        if self._stop.is_set():
            self._wake.set()
        j = self.journal
        j.start, t0 = probes.now_iso(), time.monotonic()
        self.timeline.begin(j.start)
        self.trace = self.faults.trace = RunTrace(self.options.run_id, self.experiment.title)
        self.log = self.log.bind(trace_id=self.trace.trace_id)
        # Every log line of the run, from any module, on this task and the
        # threads it hands work to: the run's task has its own context, so
        # the binding ends with it.
        structlog.contextvars.bind_contextvars(
            run_id=self.options.run_id, trace_id=self.trace.trace_id
        )
        sampler: Sampler | None = None
        self.log.info("run started", title=self.experiment.title, holder=self.options.holder)
        monitor: StopMonitor | None = None
        runtime = self.experiment.runtime
        try:
            await self._save()
            if self.controls:
                await asyncio.to_thread(self.controls.configure)
            await self._acontrol("before", "experiment", self.experiment.raw)
            # An experiment with no Brownout fault needs no agent at all.
            faults = bool(self.experiment.fault_actions)
            plan = None
            if faults:
                plan = await self._preflight()
            else:
                self._window_open()
            ready = (plan is not None or not faults) and not self._stopping()
            if ready and runtime.before:
                j.before = await asyncio.to_thread(self.hypothesis, "before")
                self.trace.hypothesis("before", j.before)
            met = j.before is None or j.before["steady_state_met"]
            if ready and met and not self._stopping():
                if plan is not None:
                    await self._acquire(plan)
                monitor = self._start_monitor()
                # The timeline samples the hypothesis while faults are on and
                # after; with no fault the probes run only when the hypothesis
                # does, as chaoslib runs them.
                if faults:
                    sampler = Sampler(self._probes(), self.timeline, self._sampled).start()
                if runtime.during and self.experiment.hypothesis is not None:
                    self._continuous = threading.Thread(
                        target=self._during, name="hypothesis-during", daemon=True
                    )
                    self._continuous.start()
                self.timeline.event("method", phase="start")
                await self._acontrol("before", "method", self.experiment.raw)
                await self._execute(plan)
                await self._acontrol("after", "method", self.experiment.raw, j.run)
                self.timeline.event("method", phase="end")
                await self._end_during()
                if not self._stopping() and runtime.after:
                    j.after = await asyncio.to_thread(self.hypothesis, "after")
                    self.trace.hypothesis("after", j.after)
        except Exception as exc:  # a bug must still end in reverts and a journal
            self._end_with(RunStatus.ABORTED, f"controller error: {exc!r}", "error")
            self.report.event(f"controller error: {exc!r}; reverting\n{traceback.format_exc()}")
        finally:
            await self._end_during()
            if monitor is not None:
                await asyncio.to_thread(monitor.stop)
                j.stop_conditions = monitor.report()
            await self._note_lost()
            await self.faults.revert_all()
            if sampler is not None:
                await asyncio.to_thread(sampler.stop)
                self.timeline.event("reverted")
                # How long until the service is itself again (a second signal cuts it).
                await asyncio.to_thread(
                    recover, self._probes(), self.timeline, lambda: self.signals_ignored > 0,
                    self._sampled,
                )  # fmt: skip
            await asyncio.to_thread(self._rollbacks)
        j.status, j.reason = self._verdict()
        j.end, j.duration = probes.now_iso(), round(time.monotonic() - t0, 3)
        j.deviated = j.after is not None and not j.after["steady_state_met"]
        j.on_fault_error = self.experiment.settings.on_fault_error
        j.signals_ignored = self.signals_ignored
        j.ended = True
        j.controls = list(self.controls.calls)
        self._record_metrics(j.status, j.duration)
        self.trace.end(str(j.status), j.reason, j.deviated)
        await self._acontrol("after", "experiment", self.experiment.raw, j.to_dict())
        if self.controls:
            await asyncio.to_thread(self.controls.cleanup)
            j.controls = list(self.controls.calls)
        result = await self._save(final=True)
        self.log.info("run ended", status=str(j.status), reason=j.reason, duration=j.duration)
        self.report.event(
            f"run {self.options.run_id} {j.status}{f': {j.reason}' if j.reason else ''}"
        )
        return result

    def _verdict(self) -> tuple[RunStatus, str]:
        j = self.journal
        problems = ""
        if j.problems:
            shown = "; ".join(f"{p.agent}: {p.problem} ({p.detail})" for p in j.problems[:5])
            more = len(j.problems) - 5
            missed = {p.agent for p in j.problems if p.problem == "target not reached"}
            targets = j.selection.get("targets") if j.selection else None
            planned = len(targets) if isinstance(targets, list) else 0
            problems = "the faults did not run as planned: "
            if missed and planned:
                problems += f"reached {planned - len(missed)} of {planned} planned targets; "
            problems += f"{len(j.problems)} problem(s): {shown}"
            problems += f"; and {more} more" if more > 0 else ""
        if self._end is not None:
            reason = self._end.reason
            if problems and self._end.label != "fault_error":
                reason = f"{reason}; {problems}"
            return self._end.status, reason
        if j.before is not None and not j.before["steady_state_met"]:
            return RunStatus.FAILED, "steady state not met before the method: nothing was injected"
        if j.after is not None and not j.after["steady_state_met"]:
            deviated = "steady state deviated after the method"
            return RunStatus.FAILED, f"{deviated}; {problems}" if problems else deviated
        if problems:
            return RunStatus.FAILED, problems
        return RunStatus.COMPLETED, ""

    async def _save(self, final: bool = False) -> dict[str, Any]:
        # Built on the loop, where the fault watches write to the journal;
        # written (fsync) and recorded off it.
        journal = self.journal.to_dict()
        await asyncio.to_thread(self._write, journal, final)
        return journal

    def _write(self, journal: dict[str, Any], final: bool) -> None:
        if self.options.journal_path is not None:
            jr.write(journal, self.options.journal_path)
        if final and self.options.history is not None:
            self.options.history.record(journal, self.options.journal_path or Path("-"))

    # ---------------------------------------------------------- pre-flight

    async def _preflight(self) -> Plan | None:
        j = self.journal
        if not self._window_open():
            return None
        statuses = await self.fleet.astatuses()
        for a, st in statuses.items():
            j.agent(a).hostname = st.info.hostname if st.info else ""
        try:
            plan = make_plan(self.experiment, statuses, self.options.seed)
        except PreflightAbort as exc:
            self._end_with(RunStatus.ABORTED, str(exc), exc.label)
            return None
        j.selection = plan.selection.as_dict()
        j.planned_steps = plan.steps_record()
        sel = plan.selection
        self.report.event(
            f"targets: {len(sel.targets)} of {sel.fleet_size} agent(s)"
            f" (eligible {len(sel.eligible)}, mode {sel.mode}, seed {sel.seed}"
            f"{', capped by max-fleet-percent' if sel.capped else ''})"
        )
        for a, why in sel.skipped.items():
            self.report.event(f"skipping {a}: {why}")
            j.agent(a).skipped = why
        if plan.problems:
            detail = "; ".join(f"{a}: {', '.join(p)}" for a, p in plan.problems.items())
            self._end_with(RunStatus.ABORTED, f"pre-flight refused: {detail}", "preflight")
            return None
        if not sel.targets:
            self._end_with(
                RunStatus.ABORTED, "no eligible agent matches the selection", "no_targets"
            )
            return None
        return plan

    def _window_open(self) -> bool:
        """The run window's check (all the pre-flight an experiment without
        faults has): recorded in the journal, or the run ends aborted."""
        try:
            self.journal.window = self.check_window()
        except WindowClosed as exc:
            self._end_with(RunStatus.ABORTED, str(exc), "window")
            return False
        return True

    # ------------------------------------------- the hypothesis, continuously

    def _during(self) -> None:
        """runtime.hypothesis strategy during-method-only or continuously: the
        hypothesis every `frequency` seconds while the method runs (chaoslib's
        pace: the wait starts after each hypothesis); with fail-fast, the
        first deviation fails the run at once."""
        rt, j = self.experiment.runtime, self.journal
        while not self._method_done.is_set() and not self._stopping():
            state = self.hypothesis("during")
            if state is None:
                return
            j.during.append(state)
            if not state["steady_state_met"] and rt.fail_fast:
                self._end_with(
                    RunStatus.FAILED,
                    "steady state deviated during the method (fail-fast)",
                    "hypothesis",
                )
                return
            self._method_done.wait(rt.frequency)

    async def _end_during(self) -> None:
        self._method_done.set()
        t, self._continuous = self._continuous, None
        if t is not None:
            await asyncio.to_thread(t.join)

    async def _acquire(self, plan: Plan) -> None:
        ttl = self.experiment.settings.lease_ttl
        holder = f"{self.options.holder} run={self.options.run_id}"
        held = await self.fleet.aacquire_leases(plan.targets, holder, ttl)
        async for a, o in in_slices(held.items()):
            rec = self.journal.agent(a)
            if o.value is not None:
                rec.lease_id = o.value.lease_id
                continue
            rec.skipped = f"lease refused: {o.error}"
            if o.unreachable and self.experiment.settings.on_unreachable == "abort":
                self.report.event(f"agent {a}: lease refused ({o.error})")
                self._end_with(
                    RunStatus.ABORTED, f"agent {a} unreachable: {o.error}", "unreachable"
                )
            else:
                # A planned target the run cannot reach: the run may go on
                # without it, but it did not do what was planned.
                self.faults.problem(a, "target not reached", f"lease refused: {o.error}")
        self.report.event(f"leases held on {len(self.fleet.keepers)} agent(s), ttl {ttl:g}s")
        if not self.fleet.keepers:
            self._end_with(RunStatus.ABORTED, "no target agent granted a lease", "unreachable")
        await self.faults.watch()

    def _sampled(self, run: probes.ProbeRun, phase: str) -> None:
        """A hypothesis probe's result: into the timeline, and the impact metrics."""
        record_run(self.timeline, run, phase)
        if run.activity.impact:
            self.impact.observe(run, phase)

    def _probes(self) -> tuple[Activity, ...]:
        h = self.experiment.hypothesis
        return h.probes if h is not None else ()

    def _start_monitor(self) -> StopMonitor | None:
        conditions = self.experiment.settings.stop_conditions
        if not conditions:
            return None

        def seen(c: StopCondition, run: probes.ProbeRun) -> None:
            record_run(self.timeline, run, "during")
            detail = run.verdict.detail if run.verdict else run.error
            self.report.event(f"stop condition {c.name}: {detail}")

        return StopMonitor(conditions, self._on_breach, seen).start()

    # ------------------------------------------------------------- method

    async def _execute(self, plan: Plan | None) -> None:
        if plan is None:  # no fault: the method once, on no agent
            await self._method([], {})
            return
        fleet_size = len(self.fleet.refs)
        for step in plan.steps:
            if self._stopping():
                return
            lost = self.fleet.lost()
            live = [a for a in step.agents if a in self.fleet.keepers and a not in lost]
            added = [a for a in live if a not in self._affected]
            record = StepRecord(step.index, step.percent, step.hold, live, added, probes.now_iso())
            self.journal.steps.append(record)
            self.timeline.event("step", step=step.index, percent=step.percent, agents=len(live),
                                added=len(added))  # fmt: skip
            if self.trace is not None:
                self.trace.step(step.index, step.percent, len(live))
            self.report.event(
                f"step {step.index + 1}/{len(plan.steps)}: {step.percent:g}% -> {len(live)}"
                f" agent(s), {len(added)} new: {agent_list(added)}"
            )
            self._milestone(
                "step", step=step.index + 1, steps=len(plan.steps), percent=step.percent,
                agents=len(live),
            )  # fmt: skip
            await self._method(added, plan.durations)
            self._affected += [a for a in added if a not in self._affected]
            radius = 100.0 * len(self._affected) / fleet_size if fleet_size else 0.0
            record.blast_radius_percent = round(radius, 3)
            self.metrics.blast_radius_percentage.set(radius)
            stopped = self._stopping() or await self._sleep(step.hold)
            record.end = probes.now_iso()
            self.timeline.event("step_end", step=step.index)
            if self.trace is not None:
                self.trace.step_end(record.blast_radius_percent)
            if stopped:
                return

    async def _method(self, added: list[str], durations: dict[str, float]) -> None:
        """One pass of the method over the agents this step adds. Background
        activities run beside the others and are awaited at the pass's end."""
        background: list[asyncio.Task[bool]] = []
        for index, activity in enumerate(self.experiment.method):
            one = self._activity(activity, index, added, durations)
            if activity.background:
                background.append(asyncio.get_running_loop().create_task(one))
            elif await one:
                break
        if background:
            await asyncio.gather(*background)

    async def _activity(
        self, activity: Activity, index: int, added: list[str], durations: dict[str, float]
    ) -> bool:
        """One activity with its pauses and controls; True if the run must stop."""
        if self._stopping():
            return True
        if activity.pause_before:
            self.timeline.event("pause", seconds=activity.pause_before,
                                activity=activity.name, when="before")  # fmt: skip
        if await self._sleep(activity.pause_before):
            return True
        await self._acontrol("before", "activity", activity.raw, None, activity.controls)
        if isinstance(activity.provider, FaultProvider):
            if added:
                await self.faults.inject(
                    activity, index, added, durations[activity.name], self.options.run_id
                )
                # On disk before the next step: a controller restarted
                # mid-run checks these faults on each agent.
                await self._save()
            state: Any = self.journal.run[-1] if self.journal.run else None
        else:
            # Where chaoslib puts it: in order of start, filled in when done.
            state = {"activity": dict(activity.raw), "output": None, "start": probes.now_iso()}
            self.journal.run.append(state)
            run = await asyncio.to_thread(probes.execute, activity)
            state.clear()
            state.update(run.record())
            self.timeline.event("activity", name=activity.name, type=activity.type,
                                status=run.status)  # fmt: skip
            self.report.event(
                f"{activity.type} {activity.name}: {run.status}"
                f"{f' ({run.error})' if run.error else ''}"
            )
        await self._acontrol("after", "activity", activity.raw, state, activity.controls)
        if activity.pause_after:
            self.timeline.event("pause", seconds=activity.pause_after,
                                activity=activity.name, when="after")  # fmt: skip
        return await self._sleep(activity.pause_after)

    # ---------------------------------------------------------- rollbacks

    def _play_rollbacks(self) -> bool:
        """runtime.rollbacks.strategy, read as chaoslib reads it. Brownout's
        faults are reverted before this, in every end state, whatever it says."""
        strategy, j = self.experiment.runtime.rollbacks, self.journal
        deviated = j.after is not None and not j.after["steady_state_met"]
        if strategy in ("always", "never"):
            return strategy == "always"
        if strategy == "deviated":
            return deviated
        # default: not when the run was interrupted or failed (chaoslib's
        # "failed": a hypothesis probe could not run, or fail-fast), but
        # yes when it deviated.
        end = self._end
        if end is not None and end.status == RunStatus.INTERRUPTED:
            return False
        if end is not None and end.label == "hypothesis":
            return False
        states = [s for s in (j.before, j.after) if s is not None]
        return not any(p["status"] == "failed" for s in states for p in s["probes"])

    def _rollbacks(self) -> None:
        if not self._play_rollbacks():
            if self.experiment.rollbacks:
                self.report.event(
                    f"rollbacks not played (runtime.rollbacks.strategy"
                    f" {self.experiment.runtime.rollbacks})"
                )
            return
        self._control("before", "rollback", self.experiment.raw)
        for activity in self.experiment.rollbacks:
            self._control("before", "activity", activity.raw, None, activity.controls)
            run = probes.execute(activity)
            self.journal.rollbacks.append(run.record())
            self._control("after", "activity", activity.raw, run.record(), activity.controls)
            self.metrics.rollbacks_total.labels("action").inc()
            self.report.event(f"rollback {activity.name}: {run.status}")
        self._control("after", "rollback", self.experiment.raw, self.journal.rollbacks)

    def _record_metrics(self, status: RunStatus, duration: float) -> None:
        self.metrics.experiments_total.labels(str(status)).inc()
        self.metrics.experiment_duration_seconds.observe(duration)
        if status == RunStatus.ABORTED and self._end is not None:
            self.metrics.safety_aborts_total.labels(self._end.label or "other").inc()
