"""Injecting a fault: admit, apply, reconcile.

Admit validates everything (lease, duration, capability, the spec) and only
then registers the fault and journals its intent, so bad input leaves
nothing behind. Apply runs the injector under the fault's lock; the
injector checkpoints its undo record before each kernel change, and a
failure rolls the partial change back. Reconcile catches a lease that died
while the apply ran.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from agent.core.crashpoints import crash_point
from agent.core.errors import (
    AgentError,
    ApplyError,
    FailedPrecondition,
    NotFound,
    ResourceExhausted,
    TargetGone,
)
from agent.core.injector import Capability, Injector, RequestContext, WatchedTarget
from agent.core.model import EndReason, Fault, State
from agent.core.records import Phase, undo_json
from agent.core.reverts import Reverts
from agent.core.shared import Shared
from agent.core.validation import duration_seconds
from agent.kernel.errors import Gone

log = structlog.get_logger(__name__)

# A duration as protobuf carries it: (seconds, nanos).
Span = tuple[int, int]


@dataclass(frozen=True)
class InjectRequest:
    lease_id: str
    kind: str
    spec: object  # for the kind's injector
    target: object
    duration: Span
    request_id: str = ""
    caller: str = ""  # who asked, for the logs
    caller_peer: str = ""  # their address, never to be cut off


class Checkpointer:
    """The checkpoint an injector calls before each kernel change: journals
    the undo record so far, and remembers the last one written."""

    def __init__(self, fault: Fault, write: Callable[[Fault, Phase], None]) -> None:
        self._fault = fault
        self._write = write
        self.last: str | None = None

    def __call__(self, undo: Mapping[str, Any]) -> None:
        self._fault.undo = dict(undo)
        self._write(self._fault, "applying")
        crash_point("after_checkpoint")
        self.last = undo_json(undo)


class Injects:
    def __init__(
        self,
        shared: Shared,
        reverts: Reverts,
        capabilities: Callable[[], Mapping[str, Capability]],
        halted: Callable[[], bool],
    ) -> None:
        self._s = shared
        self._reverts = reverts
        self._capabilities = capabilities
        self._halted = halted

    def inject(self, req: InjectRequest) -> Fault:
        admitted = self._admit(req)
        if isinstance(admitted, Fault):
            return admitted  # an earlier call with the same request_id made it
        injector, fault, plan, watched = admitted
        self._apply(injector, fault, plan, req.caller, watched)
        self._reconcile(fault)
        return fault.snapshot()

    def check(self, req: InjectRequest) -> dict[str, str]:
        """validate_only: every check an inject makes, and what it would reach
        now (the injector's preview); nothing is journaled or touched. The
        lease is checked only when one is named."""
        injector, _, plan, _ = self._checked(req, lease=bool(req.lease_id))
        if self._halted():
            raise FailedPrecondition(
                "agent is halted (Halt with latch); call Resume before injecting new faults"
            )
        preview: Callable[[Any], dict[str, str]] | None = getattr(injector, "preview", None)
        return preview(plan) if preview is not None else {}

    def _checked(
        self, req: InjectRequest, lease: bool = True
    ) -> tuple[Injector[Any], float, Any, WatchedTarget | None]:
        """The injector, the duration in seconds, the plan and the watched target."""
        s = self._s
        injector = s.injectors.get(req.kind)
        if injector is None:
            raise FailedPrecondition(
                f"fault kind {req.kind!r} is not supported by this agent version"
            )
        try:
            lease_peer = s.leases.get_live(req.lease_id).peer if lease else ""
            request = RequestContext(caller_peer=req.caller_peer, lease_peer=lease_peer)
            seconds = duration_seconds(
                "duration", *req.duration, maximum=s.limits.max_fault_duration
            )
            plan = self._validate(injector, req, request)
            watched = s.targets.resolve(req.target)
        except AgentError:
            s.metrics.faults_total.labels(req.kind, "rejected").inc()
            raise
        return injector, seconds, plan, watched

    def _admit(
        self, req: InjectRequest
    ) -> tuple[Injector[Any], Fault, Any, WatchedTarget | None] | Fault:
        """Validate everything, then register the fault and journal its intent;
        or the fault an earlier call with this request_id made."""
        s = self._s
        injector, seconds, plan, watched = self._checked(req)
        with s.lock:
            if self._halted():
                raise FailedPrecondition(
                    "agent is halted (Halt with latch); call Resume before injecting new faults"
                )
            lease = s.leases.get_live(req.lease_id)
            if req.request_id:
                existing = s.table.find_request(req.lease_id, req.request_id)
                if existing is not None:
                    return existing.snapshot()
            if s.table.live_count() >= s.limits.max_active_faults:
                raise ResourceExhausted(
                    f"this agent already holds {s.limits.max_active_faults} faults"
                    " (max_active_faults); revert some first"
                )
            fault = Fault(
                id="fault-" + secrets.token_hex(8),
                kind=req.kind,
                lease_id=req.lease_id,
                holder=lease.holder,
                spec=req.spec,
                target=req.target,
                duration=seconds,
                created_at=s.clock.wall(),
                request_id=req.request_id,
            )
            try:
                s.write(fault, "intent")
            except OSError as exc:
                s.metrics.faults_total.labels(req.kind, "failed").inc()
                raise ResourceExhausted(
                    f"cannot journal the fault in {s.journal.dir}: {exc.strerror or exc};"
                    " nothing was applied"
                ) from exc
            crash_point("after_intent")
            s.table.add(fault)
        s.publish(fault, None)
        return injector, fault, plan, watched

    def _validate(
        self, injector: Injector[Any], req: InjectRequest, request: RequestContext
    ) -> Any:
        capability = self._capabilities().get(req.kind) or injector.probe()
        if not capability.available:
            raise FailedPrecondition(
                f"{req.kind} faults are unavailable on this node: {capability.reason}"
            )
        try:
            return injector.validate(req.spec, req.target, request)
        except Gone as exc:
            if isinstance(exc, AgentError):
                raise
            raise TargetGone(str(exc)) from exc

    def _apply(
        self,
        injector: Injector[Any],
        fault: Fault,
        plan: Any,
        caller: str,
        watched: WatchedTarget | None,
    ) -> None:
        """Apply under the fault's lock; mark it active, arm its duration and
        watch its target."""
        s = self._s
        bound = log.bind(fault_id=fault.id, lease_id=fault.lease_id, kind=fault.kind, caller=caller)
        checkpoint = Checkpointer(fault, s.write)
        with fault.lock:
            try:
                applied = injector.apply(fault.id, plan, checkpoint)
                crash_point("after_apply")
                fault.undo = dict(applied.undo)
                fault.applied = applied.summary
                if watched is not None:
                    fault.applied = {**applied.summary, "target": watched.label}
                # Recovery needs only the undo record: write again only if the
                # injector's final one differs from its last checkpoint.
                if checkpoint.last != undo_json(applied.undo):
                    s.write(fault, "applied")
            except Exception as exc:
                s.metrics.faults_total.labels(fault.kind, "failed").inc()
                bound.error("apply failed; rolling back", error=str(exc))
                self._reverts.roll_back(injector, fault, exc)
                raise ApplyError(
                    f"{fault.kind} fault {fault.id} could not be applied: {exc}; the partial"
                    " change was rolled back"
                ) from exc
            s.metrics.faults_total.labels(fault.kind, "applied").inc()
            with s.lock:
                prev = fault.state
                fault.state = State.ACTIVE
                fault.activated_at = s.clock.wall()
                fault.expires_at = fault.activated_at + fault.duration
            s.scheduler.set(
                ("fault", fault.id),
                s.clock.monotonic() + fault.duration,
                lambda: self._reverts.submit(fault.id, EndReason.DURATION_ELAPSED),
            )
            if watched is not None:
                s.targets.watch(fault.id, watched)  # an exit already happened reports at once
            bound.info("fault active", applied=fault.applied, duration=fault.duration)
            s.publish(fault, prev)

    def _reconcile(self, fault: Fault) -> None:
        """The lease may have died while we applied: its callback saw this fault
        as pending and queued a revert, which now runs; make sure."""
        try:
            self._s.leases.get_live(fault.lease_id)
        except NotFound:
            # Released leases stamp their faults and revert them themselves.
            if fault.lease_ended_at is None:
                self._reverts.revert(fault.id, EndReason.LEASE_EXPIRED)
