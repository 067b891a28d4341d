"""Ending faults: revert, the retries of a failed revert, and the end of a
fault whose worker died.

A revert runs the injector's idempotent revert, then deletes the journal
record. One that fails leaves the fault revert_failed, still journaled and
visible, and is retried with backoff until it succeeds. A vanished target
ends the fault as target_gone: there is nothing left to undo.
"""

from __future__ import annotations

from typing import Any

import structlog

from agent.core.crashpoints import crash_point
from agent.core.injector import Injector
from agent.core.model import ENDED, EndReason, Fault, State
from agent.core.retry import RevertRetries
from agent.core.shared import Shared
from agent.kernel.errors import Gone

log = structlog.get_logger(__name__)
audit_log = structlog.get_logger("audit")


class Reverts:
    def __init__(self, shared: Shared) -> None:
        self._s = shared
        self._retries = RevertRetries(shared.closed)

    def revert(self, fault_id: str, reason: EndReason) -> Fault:
        s = self._s
        fault = s.table.get(fault_id)
        with fault.lock:
            if fault.state in ENDED or fault.state == State.REVERTING:
                return fault.snapshot()
            s.scheduler.cancel(("fault", fault.id))
            with s.lock:
                prev = fault.state
                fault.state = State.REVERTING
                fault.end_reason = fault.end_reason or reason
            s.publish(fault, prev)
            try:
                note = self._run(fault)
            except Exception as exc:
                self._failed(fault, exc)
                self._retry(fault)
                return fault.snapshot()
            crash_point("after_revert")
            self._reverted(fault, note)
            log.info(
                "fault reverted",
                fault_id=fault.id,
                lease_id=fault.lease_id,
                kind=fault.kind,
                reason=str(fault.end_reason),
                note=note,
            )
            return fault.snapshot()

    def submit(self, fault_id: str, reason: EndReason) -> None:
        """Revert in the background (from deadline callbacks)."""
        if not self._s.closed.is_set():
            self._s.pool.submit(self.revert, fault_id, reason)

    def revert_many(self, faults: list[Fault], reason: EndReason) -> list[Fault]:
        if self._s.closed.is_set():
            return [self.revert(f.id, reason) for f in faults]
        futures = [self._s.pool.submit(self.revert, f.id, reason) for f in faults]
        return [f.result() for f in futures]

    def roll_back(self, injector: Injector[Any], fault: Fault, exc: Exception) -> None:
        """Undo what a failed apply changed; the fault ends failed (apply_failed)."""
        s = self._s
        prev = fault.state
        try:
            injector.revert(fault.id, fault.undo)
        except Exception as revert_exc:
            with s.lock:
                fault.state = State.REVERT_FAILED
                fault.end_reason = EndReason.APPLY_FAILED
                fault.error = f"apply failed: {exc}; rollback failed: {revert_exc}"
            s.publish(fault, prev)
            self._retry(fault)
            return
        s.forget(fault)
        with s.lock:
            fault.state = State.FAILED
            s.table.ended(fault)
            fault.end_reason = EndReason.APPLY_FAILED
            fault.error = str(exc)
            fault.ended_at = s.clock.wall()
        s.publish(fault, prev)

    # --------------------------------------------------------- dead workers

    def worker_died(self, fault_id: str, why: str) -> None:
        """A worker of fault_id exited without being killed (called by the
        spawner's exit watch): end the fault as failed and revert the rest of it."""
        self._end_early(fault_id, EndReason.WORKER_DIED, why)

    def target_gone(self, fault_id: str, why: str) -> None:
        """The process that stood for fault_id's target (a container's init)
        exited: end the fault as target_gone, reverting what is left of it."""
        self._end_early(fault_id, EndReason.TARGET_GONE, why)

    def _end_early(self, fault_id: str, reason: EndReason, why: str) -> None:
        fault = self._s.table.live_one(fault_id)
        if fault is not None and not self._s.closed.is_set():
            self._s.pool.submit(self._end, fault, reason, why)

    def _end(self, fault: Fault, reason: EndReason, why: str) -> None:
        """End an active fault for what happened to it, audited as the agent's act."""
        died = reason == EndReason.WORKER_DIED
        with fault.lock:  # waits for an apply in progress to finish
            if fault.state != State.ACTIVE:
                return  # already ending: its own revert killed the worker, or so
            (log.error if died else log.warning)(
                "worker died: ending its fault as failed"
                if died
                else "target gone: ending its fault",
                fault_id=fault.id,
                lease_id=fault.lease_id,
                kind=fault.kind,
                error=why,
            )
            with self._s.lock:
                fault.end_reason = reason
                fault.error = why
            ended = self.revert(fault.id, reason)
        expected = State.FAILED if died else State.REVERTED
        result = "OK" if ended.state == expected else ended.state.upper()
        method = "WorkerDied" if died else "TargetGone"
        audit_log.warning(
            "audit",
            caller="brownout-agent",
            method=method,
            result=result,
            detail=why,
            fault_id=fault.id,
            lease_id=fault.lease_id,
            kind=fault.kind,
        )
        self._s.metrics.audit_total.labels(method, result).inc()

    # ------------------------------------------------------------- internal

    def _run(self, fault: Fault) -> str:
        """Run the injector's revert; a vanished target ends the fault as TARGET_GONE."""
        try:
            self._s.injectors[fault.kind].revert(fault.id, fault.undo)
        except Gone as gone:
            with self._s.lock:
                fault.end_reason = EndReason.TARGET_GONE
            return str(gone)
        return ""

    def _reverted(self, fault: Fault, note: str = "") -> None:
        s = self._s
        s.targets.unwatch(fault.id)
        s.forget(fault)
        with s.lock:
            prev = fault.state
            # A fault whose worker died did not do what was asked: it failed,
            # and its error keeps saying why.
            died = fault.end_reason == EndReason.WORKER_DIED
            fault.state = State.FAILED if died else State.REVERTED
            s.table.ended(fault)
            fault.ended_at = s.clock.wall()
            gone = fault.end_reason == EndReason.TARGET_GONE
            fault.error = "; ".join(filter(None, [fault.error if died or gone else "", note]))
        s.metrics.fault_reverts_total.labels(fault.kind, str(fault.end_reason)).inc()
        s.publish(fault, prev)

    def _failed(self, fault: Fault, exc: Exception) -> None:
        s = self._s
        log.error(
            "revert failed; will retry",
            fault_id=fault.id,
            lease_id=fault.lease_id,
            kind=fault.kind,
            error=str(exc),
        )
        s.metrics.revert_failures_total.labels(fault.kind).inc()
        with s.lock:
            prev = fault.state
            fault.state = State.REVERT_FAILED
            fault.revert_attempts += 1
            fault.error = f"revert failed: {exc}"
        s.publish(fault, prev)

    def _retry(self, fault: Fault) -> None:
        def attempt() -> None:
            with fault.lock:
                if fault.state != State.REVERT_FAILED:
                    return
                try:
                    note = self._run(fault)
                except Exception as exc:
                    self._failed(fault, exc)
                    raise
                self._reverted(fault, note)
                log.info("fault reverted after retry", fault_id=fault.id)

        self._retries.start(fault.id, attempt)
