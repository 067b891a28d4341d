"""The fault manager: one registry of faults, their leases, journal and reverts.

Order of operations for an inject: validate everything, journal the intent,
apply (the injector checkpoints its undo record before each kernel change),
journal the undo record, mark active. A revert runs the injector's idempotent
revert and then deletes the journal record (which needs no free space).
Faults are serialised by a per-fault lock, so a lease that expires during an
apply reverts right after the apply finishes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import queue
import secrets
import signal
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
import tenacity
from google.protobuf import json_format
from google.protobuf.duration_pb2 import Duration

from agent.api.convert import STATE_TO_PB, fault_to_pb, timestamp
from agent.core.clock import Clock
from agent.core.errors import (
    AgentError,
    ApplyError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from agent.core.journal import Journal
from agent.core.leases import Lease, LeaseTable
from agent.core.metrics import Metrics
from agent.core.model import ENDED, EndReason, Fault, State
from agent.core.scheduler import Scheduler
from agent.core.validation import duration_seconds
from agent.faults.base import Capability, Injector, Limits, RequestContext
from agent.kernel.errors import Gone
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger(__name__)
audit_log = structlog.get_logger("audit")

HISTORY_LIMIT = 1000
WATCH_QUEUE_LIMIT = 1000

# Test-only crash points for the reliability suite (tests/reliability): when
# BROWNOUT_TEST_CRASH_AT names a step, the agent SIGKILLs itself there. Unset
# (always, outside tests) it does nothing. Steps: after_intent, after_checkpoint
# (undo journaled, kernel not yet changed), after_apply, after_revert.
_TEST_CRASH_AT = os.environ.get("BROWNOUT_TEST_CRASH_AT", "")


def _test_crash_point(step: str) -> None:
    if step == _TEST_CRASH_AT:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass
class Watcher:
    lease_id: str
    events: queue.Queue[pb.FaultEvent | None]
    overflowed: bool = False


class FaultManager:
    def __init__(
        self,
        injectors: dict[str, Injector],
        journal: Journal,
        clock: Clock,
        limits: Limits,
        metrics: Metrics,
        boot_id: str = "",
    ) -> None:
        self._injectors = injectors
        self._journal = journal
        self._clock = clock
        self.limits = limits
        self._metrics = metrics
        self._boot_id = boot_id
        self.leases = LeaseTable(clock)
        self._scheduler = Scheduler(clock)
        self._lock = threading.RLock()
        self._faults: dict[str, Fault] = {}  # live and recently ended, oldest first
        self._live: dict[str, Fault] = {}  # not yet ended (pending ... revert_failed)
        self._watchers: list[Watcher] = []
        self._halted = False
        self._closed = threading.Event()
        self._reverters = ThreadPoolExecutor(max_workers=8, thread_name_prefix="revert")
        self._retrying: set[str] = set()
        self.capabilities: dict[str, Capability] = {}
        metrics.register_live_state(
            lambda: self._count_by_kind(State.ACTIVE),
            lambda: self._count_by_kind(State.REVERT_FAILED),
            self.leases.count,
            self._overdue_by_kind,
        )

    # ------------------------------------------------------------ lifecycle

    def start(self, run_scheduler: bool = True) -> None:
        self.capabilities = {kind: inj.probe() for kind, inj in self._injectors.items()}
        for kind, cap in self.capabilities.items():
            log.info("capability", kind=kind, available=cap.available, reason=cap.reason)
        if run_scheduler:
            self._scheduler.start()

    def healthy(self) -> bool:
        """The dead-man's switch is running: the deadline thread is alive."""
        return self._scheduler.alive() and not self._closed.is_set()

    def run_due(self) -> None:
        """Fire every deadline that has passed (the scheduler thread does this by itself)."""
        for callback in self._scheduler.pop_due(self._clock.monotonic()):
            callback()

    def recover(self, reason: EndReason = EndReason.AGENT_RESTART) -> list[Fault]:
        """Revert every fault the journal holds, then sweep marked leftovers."""
        recovered: list[Fault] = []
        for fault_id, record in self._journal.load().items():
            try:
                fault = self._fault_from_record(fault_id, record)
            except FailedPrecondition as exc:
                # Left in the journal for an agent version that knows the kind.
                log.error("cannot recover journaled fault", fault_id=fault_id, error=str(exc))
                continue
            with self._lock:
                self._faults[fault.id] = fault
                self._live[fault.id] = fault
            log.warning("recovering journaled fault", fault_id=fault.id, kind=fault.kind)
            recovered.append(self.revert(fault.id, reason))
        self.sweep()
        return recovered

    def sweep(self) -> list[str]:
        swept: list[str] = []
        for kind, injector in self._injectors.items():
            try:
                found = injector.sweep()
            except Exception as exc:
                log.error("sweep failed", kind=kind, error=str(exc))
                continue
            for item in found:
                log.warning("swept leftover", kind=kind, item=item)
            swept += found
        return swept

    def shutdown(self, reason: EndReason = EndReason.AGENT_SHUTDOWN) -> list[Fault]:
        """Revert everything, then stop background threads."""
        reverted = self.revert_all(reason)
        self._closed.set()
        self._scheduler.stop()
        self._reverters.shutdown(wait=True, cancel_futures=False)
        with self._lock:
            for w in self._watchers:
                w.events.put(None)
        return reverted

    # --------------------------------------------------------------- leases

    def acquire_lease(self, holder: str, ttl: Duration, peer: str = "") -> Lease:
        if not holder.strip():
            raise InvalidArgument("holder", "must name who holds the lease, e.g. 'controller@host'")
        if len(holder) > 256:
            raise InvalidArgument("holder", f"must be at most 256 characters, got {len(holder)}")
        seconds = duration_seconds(
            "ttl", ttl, maximum=self.limits.max_lease_ttl, minimum=self.limits.min_lease_ttl
        )
        lease = self.leases.acquire(holder, seconds, peer)
        self._arm_lease(lease)
        log.info("lease acquired", lease_id=lease.id, holder=holder, ttl=seconds)
        return lease

    def renew_lease(self, lease_id: str, peer: str = "") -> Lease:
        lease = self.leases.renew(lease_id, peer)
        self._arm_lease(lease)
        return lease

    def release_lease(self, lease_id: str) -> list[Fault]:
        lease = self.leases.remove(lease_id)
        if lease is None:
            raise NotFound(f"lease {lease_id!r} not found or expired: its faults are reverted")
        self._scheduler.cancel(("lease", lease_id))
        log.info("lease released", lease_id=lease_id)
        return self._revert_many(self._lease_ended(lease_id), EndReason.LEASE_RELEASED)

    def lease_wall_deadline(self, lease: Lease) -> float:
        return self._clock.wall() + (lease.deadline - self._clock.monotonic())

    def _arm_lease(self, lease: Lease) -> None:
        self._scheduler.set(
            ("lease", lease.id), lease.deadline, lambda: self._on_lease_deadline(lease.id)
        )

    def _on_lease_deadline(self, lease_id: str) -> None:
        lease = self.leases.expire_if_due(lease_id)
        if lease is None:
            return
        self._metrics.lease_expirations_total.inc()
        faults = self._lease_ended(lease_id)
        log.warning(
            "lease expired: holder stopped renewing",
            lease_id=lease_id,
            holder=lease.holder,
            faults=[f.id for f in faults],
        )
        for fault in faults:
            self._submit_revert(fault.id, EndReason.LEASE_EXPIRED)

    def _lease_ended(self, lease_id: str) -> list[Fault]:
        """The lease's live faults, each stamped with when its lease ended."""
        now = self._clock.wall()
        with self._lock:
            faults = self._live_faults(lease_id)
            for f in faults:
                f.lease_ended_at = f.lease_ended_at or now
        return faults

    def _submit_revert(self, fault_id: str, reason: EndReason) -> None:
        if not self._closed.is_set():
            self._reverters.submit(self.revert, fault_id, reason)

    # --------------------------------------------------------------- inject

    def inject(
        self,
        lease_id: str,
        spec: pb.FaultSpec,
        duration: Duration,
        target: pb.Target,
        request_id: str = "",
        caller: str = "",
        caller_peer: str = "",
    ) -> Fault:
        kind = spec.WhichOneof("spec")
        if kind is None:
            raise InvalidArgument(
                "spec", f"no fault kind set; set one of {', '.join(sorted(self._injectors))}"
            )
        injector = self._injectors.get(kind)
        if injector is None:
            raise FailedPrecondition(f"fault kind {kind!r} is not supported by this agent version")
        try:
            lease_peer = self.leases.get_live(lease_id).peer
            request = RequestContext(caller_peer=caller_peer, lease_peer=lease_peer)
            plan = self._validate(injector, spec, duration, target, request)
        except AgentError:
            self._metrics.faults_total.labels(kind, "rejected").inc()
            raise
        seconds = duration.ToNanoseconds() / 1e9

        with self._lock:
            if self._halted:
                raise FailedPrecondition(
                    "agent is halted (Halt with latch); call Resume before injecting new faults"
                )
            lease = self.leases.get_live(lease_id)
            if request_id:
                for existing in self._faults.values():
                    if existing.lease_id == lease_id and existing.request_id == request_id:
                        return self._copy(existing)
            if len(self._live) >= self.limits.max_active_faults:
                raise ResourceExhausted(
                    f"this agent already holds {self.limits.max_active_faults} faults"
                    " (max_active_faults); revert some first"
                )
            fault = Fault(
                id="fault-" + secrets.token_hex(8),
                kind=kind,
                lease_id=lease_id,
                holder=lease.holder,
                spec=spec,
                target=target,
                duration=seconds,
                created_at=self._clock.wall(),
                request_id=request_id,
            )
            try:
                self._journal.write(
                    fault.id, self._record(fault, phase="intent"), injector.survives_reboot
                )
            except OSError as exc:
                self._metrics.faults_total.labels(kind, "failed").inc()
                raise ResourceExhausted(
                    f"cannot journal the fault in {self._journal.dir}: {exc.strerror or exc};"
                    " nothing was applied"
                ) from exc
            _test_crash_point("after_intent")
            self._faults[fault.id] = fault
            self._live[fault.id] = fault
            self._prune_history()
        bound = log.bind(fault_id=fault.id, lease_id=lease_id, kind=kind, caller=caller)
        self._publish(fault, None)

        journaled: list[str] = []  # the undo record as last written

        def checkpoint(undo: dict[str, Any]) -> None:
            journaled[:] = [self._checkpoint(fault, undo)]

        with fault.lock:
            try:
                applied = injector.apply(fault.id, plan, checkpoint)
                _test_crash_point("after_apply")
                fault.undo = applied.undo
                fault.applied = applied.summary
                # Recovery needs only the undo record: write again only if the
                # injector's final one differs from its last checkpoint.
                if journaled != [_undo_json(applied.undo)]:
                    self._journal.write(
                        fault.id, self._record(fault, phase="applied"), injector.survives_reboot
                    )
            except Exception as exc:
                self._metrics.faults_total.labels(kind, "failed").inc()
                bound.error("apply failed; rolling back", error=str(exc))
                self._rollback_failed_apply(injector, fault, exc)
                raise ApplyError(
                    f"{kind} fault {fault.id} could not be applied: {exc}; the partial change"
                    " was rolled back"
                ) from exc
            self._metrics.faults_total.labels(kind, "applied").inc()
            with self._lock:
                prev = fault.state
                fault.state = State.ACTIVE
                fault.activated_at = self._clock.wall()
                fault.expires_at = fault.activated_at + seconds
            deadline = self._clock.monotonic() + seconds
            self._scheduler.set(
                ("fault", fault.id),
                deadline,
                lambda: self._submit_revert(fault.id, EndReason.DURATION_ELAPSED),
            )
            bound.info("fault active", applied=fault.applied, duration=seconds)
            self._publish(fault, prev)
        # The lease may have died while we applied: its callback saw this
        # fault as pending and queued a revert, which now runs; make sure.
        try:
            self.leases.get_live(lease_id)
        except NotFound:
            # Released leases stamp their faults and revert them themselves.
            if fault.lease_ended_at is None:
                self.revert(fault.id, EndReason.LEASE_EXPIRED)
        return self._copy(fault)

    def _validate(
        self,
        injector: Injector,
        spec: pb.FaultSpec,
        duration: Duration,
        target: pb.Target,
        request: RequestContext,
    ) -> Any:
        duration_seconds("duration", duration, maximum=self.limits.max_fault_duration)
        capability = self.capabilities.get(injector.kind) or injector.probe()
        if not capability.available:
            raise FailedPrecondition(
                f"{injector.kind} faults are unavailable on this node: {capability.reason}"
            )
        return injector.validate(getattr(spec, injector.spec_field), target, request)

    def _checkpoint(self, fault: Fault, undo: dict[str, Any]) -> str:
        """Journal the undo record before the kernel change it covers; returns it as JSON."""
        fault.undo = undo
        durable = self._injectors[fault.kind].survives_reboot
        self._journal.write(fault.id, self._record(fault, phase="applying"), durable)
        _test_crash_point("after_checkpoint")
        return _undo_json(undo)

    def _rollback_failed_apply(self, injector: Injector, fault: Fault, exc: Exception) -> None:
        prev = fault.state
        try:
            injector.revert(fault.id, fault.undo)
        except Exception as revert_exc:
            with self._lock:
                fault.state = State.REVERT_FAILED
                fault.end_reason = EndReason.APPLY_FAILED
                fault.error = f"apply failed: {exc}; rollback failed: {revert_exc}"
            self._publish(fault, prev)
            self._retry_revert(fault)
            return
        self._journal.remove(fault.id, self._injectors[fault.kind].survives_reboot)
        with self._lock:
            fault.state = State.FAILED
            self._live.pop(fault.id, None)
            fault.end_reason = EndReason.APPLY_FAILED
            fault.error = str(exc)
            fault.ended_at = self._clock.wall()
        self._publish(fault, prev)

    # --------------------------------------------------------------- revert

    def revert(self, fault_id: str, reason: EndReason) -> Fault:
        fault = self._get(fault_id)
        with fault.lock:
            if fault.state in ENDED or fault.state == State.REVERTING:
                return self._copy(fault)
            self._scheduler.cancel(("fault", fault.id))
            bound = log.bind(fault_id=fault.id, lease_id=fault.lease_id, kind=fault.kind)
            with self._lock:
                prev = fault.state
                fault.state = State.REVERTING
                fault.end_reason = fault.end_reason or reason
            self._publish(fault, prev)
            try:
                note = self._run_revert(fault)
            except Exception as exc:
                self._mark_revert_failed(fault, exc)
                self._retry_revert(fault)
                return self._copy(fault)
            _test_crash_point("after_revert")
            self._mark_reverted(fault, note)
            bound.info("fault reverted", reason=str(fault.end_reason), note=note)
            return self._copy(fault)

    def worker_died(self, fault_id: str, why: str) -> None:
        """A worker of fault_id exited without being killed (called by the
        spawner's exit watch): end the fault as failed and revert the rest of it."""
        with self._lock:
            fault = self._live.get(fault_id)
        if fault is not None and not self._closed.is_set():
            self._reverters.submit(self._end_dead, fault, why)

    def _end_dead(self, fault: Fault, why: str) -> None:
        with fault.lock:  # waits for an apply in progress to finish
            if fault.state != State.ACTIVE:
                return  # already ending: its own revert killed the worker
            log.error(
                "worker died: ending its fault as failed",
                fault_id=fault.id,
                lease_id=fault.lease_id,
                kind=fault.kind,
                error=why,
            )
            with self._lock:
                fault.end_reason = EndReason.WORKER_DIED
                fault.error = why
            ended = self.revert(fault.id, EndReason.WORKER_DIED)
        result = "OK" if ended.state == State.FAILED else ended.state.upper()
        audit_log.warning(
            "audit",
            caller="brownout-agent",
            method="WorkerDied",
            result=result,
            detail=why,
            fault_id=fault.id,
            lease_id=fault.lease_id,
            kind=fault.kind,
        )
        self._metrics.audit_total.labels("WorkerDied", result).inc()

    def revert_all(self, reason: EndReason) -> list[Fault]:
        return self._revert_many(self._live_faults(None), reason)

    def _revert_many(self, faults: list[Fault], reason: EndReason) -> list[Fault]:
        if self._closed.is_set():
            return [self.revert(f.id, reason) for f in faults]
        futures = [self._reverters.submit(self.revert, f.id, reason) for f in faults]
        wait(futures)
        return [f.result() for f in futures]

    def _run_revert(self, fault: Fault) -> str:
        """Run the injector's revert; a vanished target ends the fault as TARGET_GONE."""
        try:
            self._injectors[fault.kind].revert(fault.id, fault.undo)
        except Gone as gone:
            with self._lock:
                fault.end_reason = EndReason.TARGET_GONE
            return str(gone)
        return ""

    def _mark_reverted(self, fault: Fault, note: str = "") -> None:
        self._journal.remove(fault.id, self._injectors[fault.kind].survives_reboot)
        with self._lock:
            prev = fault.state
            # A fault whose worker died did not do what was asked: it failed,
            # and its error keeps saying why.
            died = fault.end_reason == EndReason.WORKER_DIED
            fault.state = State.FAILED if died else State.REVERTED
            self._live.pop(fault.id, None)
            fault.ended_at = self._clock.wall()
            fault.error = "; ".join(filter(None, [fault.error if died else "", note]))
        self._metrics.fault_reverts_total.labels(fault.kind, str(fault.end_reason)).inc()
        self._publish(fault, prev)

    def _mark_revert_failed(self, fault: Fault, exc: Exception) -> None:
        log.error(
            "revert failed; will retry",
            fault_id=fault.id,
            lease_id=fault.lease_id,
            kind=fault.kind,
            error=str(exc),
        )
        self._metrics.revert_failures_total.labels(fault.kind).inc()
        with self._lock:
            prev = fault.state
            fault.state = State.REVERT_FAILED
            fault.revert_attempts += 1
            fault.error = f"revert failed: {exc}"
        self._publish(fault, prev)

    def _retry_revert(self, fault: Fault) -> None:
        """Keep retrying a failed revert with backoff until it succeeds or we stop."""
        with self._lock:
            if fault.id in self._retrying:
                return
            self._retrying.add(fault.id)

        def attempt() -> None:
            with fault.lock:
                if fault.state != State.REVERT_FAILED:
                    return
                try:
                    note = self._run_revert(fault)
                except Exception as exc:
                    self._mark_revert_failed(fault, exc)
                    raise
                self._mark_reverted(fault, note)
                log.info("fault reverted after retry", fault_id=fault.id)

        def run() -> None:
            try:
                tenacity.Retrying(
                    wait=tenacity.wait_exponential(multiplier=0.25, max=30),
                    stop=lambda _state: self._closed.is_set(),
                    sleep=self._sleep,
                    reraise=True,
                )(attempt)
            except Exception:
                log.error("giving up revert retries at shutdown", fault_id=fault.id)
            finally:
                with self._lock:
                    self._retrying.discard(fault.id)

        threading.Thread(target=run, name=f"retry-{fault.id}", daemon=True).start()

    def _sleep(self, seconds: float) -> None:
        self._closed.wait(seconds)

    # ------------------------------------------------------------ halt etc.

    def halt(self, latch: bool, reason: str) -> tuple[list[Fault], bool]:
        with self._lock:
            if latch:
                self._halted = True
        log.warning("halt", latch=latch, reason=reason)
        return self.revert_all(EndReason.HALT), self._halted

    def resume(self) -> bool:
        with self._lock:
            was, self._halted = self._halted, False
        return was

    @property
    def halted(self) -> bool:
        return self._halted

    # -------------------------------------------------------------- queries

    def get(self, fault_id: str) -> Fault:
        return self._copy(self._get(fault_id))

    def list_faults(
        self, lease_id: str = "", states: frozenset[State] = frozenset()
    ) -> list[Fault]:
        with self._lock:
            return [
                self._copy(f)
                for f in self._faults.values()
                if (not lease_id or f.lease_id == lease_id) and (not states or f.state in states)
            ]

    def journal_ids(self) -> list[str]:
        return self._journal.fault_ids()

    def active_count(self) -> int:
        with self._lock:
            return len(self._live)

    def to_pb(self, fault: Fault) -> pb.Fault:
        return fault_to_pb(fault, self._injectors[fault.kind].proto_kind)

    @contextmanager
    def watch(self, lease_id: str, include_existing: bool) -> Iterator[Watcher]:
        watcher = Watcher(lease_id, queue.Queue(maxsize=WATCH_QUEUE_LIMIT))
        with self._lock:
            if include_existing:
                for f in self._faults.values():
                    if not lease_id or f.lease_id == lease_id:
                        watcher.events.put_nowait(self._event(f, None))
            self._watchers.append(watcher)
        try:
            yield watcher
        finally:
            with self._lock:
                self._watchers.remove(watcher)

    # ------------------------------------------------------------- internal

    def _get(self, fault_id: str) -> Fault:
        with self._lock:
            fault = self._faults.get(fault_id)
        if fault is None:
            raise NotFound(f"fault {fault_id!r} not found on this agent (see ListFaults)")
        return fault

    def _live_faults(self, lease_id: str | None) -> list[Fault]:
        with self._lock:
            return [f for f in self._live.values() if lease_id is None or f.lease_id == lease_id]

    def _overdue_by_kind(self) -> dict[str, float]:
        """Seconds past the earlier of its lease's deadline and its own end, per kind
        (worst fault). Nonzero means the dead-man's switch is late: alert on it."""
        now_wall = self._clock.wall()
        now = self._clock.monotonic()
        worst = dict.fromkeys(self._injectors, 0.0)
        with self._lock:
            applied = [
                f for f in self._faults.values() if f.state in (State.ACTIVE, State.REVERT_FAILED)
            ]
        for f in applied:
            ends = [t for t in (f.expires_at, f.lease_ended_at) if t is not None]
            lease = self.leases.peek(f.lease_id)
            if lease is not None:
                ends.append(now_wall - (now - lease.deadline))
            if ends:
                worst[f.kind] = max(worst[f.kind], now_wall - min(ends))
        return worst

    def _count_by_kind(self, state: State) -> dict[str, int]:
        counts = dict.fromkeys(self._injectors, 0)
        with self._lock:
            for f in self._faults.values():
                if f.state == state:
                    counts[f.kind] += 1
        return counts

    def _copy(self, fault: Fault) -> Fault:
        with self._lock:
            return dataclasses.replace(fault, applied=dict(fault.applied))

    def _event(self, fault: Fault, prev: State | None) -> pb.FaultEvent:
        return pb.FaultEvent(
            fault=self.to_pb(fault),
            previous_state=STATE_TO_PB[prev] if prev else pb.FAULT_STATE_UNSPECIFIED,
            at=timestamp(self._clock.wall()),
        )

    def _publish(self, fault: Fault, prev: State | None) -> None:
        with self._lock:
            if not self._watchers:
                return
            event = self._event(fault, prev)
            for w in self._watchers:
                if (w.lease_id and w.lease_id != fault.lease_id) or w.overflowed:
                    continue
                try:
                    w.events.put_nowait(event)
                except queue.Full:
                    # A watcher that cannot keep up is cut off rather than
                    # slowing the agent; the server ends its stream.
                    w.overflowed = True

    def _prune_history(self) -> None:
        """Forget the oldest ended faults beyond HISTORY_LIMIT."""
        excess = len(self._faults) - len(self._live) - HISTORY_LIMIT
        if excess <= 0:
            return
        doomed: list[str] = []
        for f in self._faults.values():  # oldest first: the first ended ones go
            if f.ended:
                doomed.append(f.id)
                if len(doomed) == excess:
                    break
        for fault_id in doomed:
            del self._faults[fault_id]

    def _record(self, fault: Fault, phase: str) -> dict[str, Any]:
        return {
            "fault_id": fault.id,
            "kind": fault.kind,
            "phase": phase,
            "lease_id": fault.lease_id,
            "holder": fault.holder,
            "request_id": fault.request_id,
            "spec": json_format.MessageToDict(fault.spec),
            "target": json_format.MessageToDict(fault.target),
            "duration": fault.duration,
            "created_at": fault.created_at,
            "boot_id": self._boot_id,
            "undo": fault.undo,
        }

    def _fault_from_record(self, fault_id: str, record: dict[str, Any]) -> Fault:
        spec = pb.FaultSpec()
        target = pb.Target()
        try:
            json_format.ParseDict(record.get("spec", {}), spec)
            json_format.ParseDict(record.get("target", {}), target)
        except json_format.ParseError as exc:
            log.error("journal record spec unreadable", fault_id=fault_id, error=str(exc))
        kind = str(record["kind"])
        if kind not in self._injectors:
            raise FailedPrecondition(f"journal holds fault {fault_id} of unknown kind {kind!r}")
        return Fault(
            id=fault_id,
            kind=kind,
            lease_id=str(record.get("lease_id", "")),
            holder=str(record.get("holder", "")),
            spec=spec,
            target=target,
            duration=float(record.get("duration", 0.0)),
            created_at=float(record.get("created_at", 0.0)),
            request_id=str(record.get("request_id", "")),
            state=State.ACTIVE,
            undo=record.get("undo"),
        )


def _undo_json(undo: dict[str, Any] | None) -> str:
    return json.dumps(undo, sort_keys=True, default=str)
