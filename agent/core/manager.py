"""The fault manager: faults under leases, through their journal and reverts.

The facade the API and the daemon use. Injects (core.injects) are admitted
(validated, then their intent journaled before anything is applied),
applied (the injector checkpoints its undo record before each kernel
change), then reconciled with their lease. Reverts (core.reverts) run the
injector's idempotent revert and then delete the journal record; a failed
one is retried until it succeeds. Apply and revert of one fault are
serialised by its lock, so a lease that expires during an apply reverts
right after the apply finishes. Leases are the dead-man's switch: their
deadlines, and each fault's own duration, live on one monotonic scheduler.

Specs and targets pass through opaquely (see core.model); the API converts
them and a SpecCodec writes them to the journal.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import structlog

from agent.core.clock import Clock
from agent.core.errors import InvalidArgument, NotFound
from agent.core.events import Event, Watcher
from agent.core.injector import Capability, Injector, TargetWatch
from agent.core.injects import InjectRequest, Injects, Span
from agent.core.journal import Journal
from agent.core.leases import Lease, LeaseTable
from agent.core.limits import Limits
from agent.core.metrics import Metrics
from agent.core.model import EndReason, Fault, State
from agent.core.records import SpecCodec, fault_from
from agent.core.reverts import Reverts
from agent.core.shared import Shared
from agent.core.validation import duration_seconds

log = structlog.get_logger(__name__)

__all__ = ["FaultManager", "InjectRequest", "Span"]


class FaultManager:
    def __init__(
        self,
        injectors: Mapping[str, Injector[Any]],
        journal: Journal,
        clock: Clock,
        limits: Limits,
        metrics: Metrics,
        codec: SpecCodec,
        boot_id: str = "",
        targets: TargetWatch | None = None,
    ) -> None:
        self._s = Shared(dict(injectors), journal, clock, limits, metrics, codec, boot_id)
        if targets is not None:
            self._s.targets = targets
        self.limits = limits
        self._halted = False
        self.capabilities: dict[str, Capability] = {}
        self._reverts = Reverts(self._s)
        self._injects = Injects(
            self._s, self._reverts, lambda: self.capabilities, lambda: self._halted
        )
        metrics.register_live_state(
            lambda: self._count_by_kind(State.ACTIVE),
            lambda: self._count_by_kind(State.REVERT_FAILED),
            self._s.leases.count,
            self._overdue_by_kind,
        )

    @property
    def leases(self) -> LeaseTable:
        return self._s.leases

    @property
    def generation(self) -> int:
        """Moves whenever any fault changes state."""
        return self._s.generation

    @property
    def kinds(self) -> list[str]:
        return sorted(self._s.injectors)

    # ------------------------------------------------------------ lifecycle

    def start(self, run_scheduler: bool = True) -> None:
        self.capabilities = {kind: inj.probe() for kind, inj in self._s.injectors.items()}
        for kind, cap in self.capabilities.items():
            log.info("capability", kind=kind, available=cap.available, reason=cap.reason)
        if run_scheduler:
            self._s.scheduler.start()

    def healthy(self) -> bool:
        """The dead-man's switch is running: the deadline thread is alive."""
        return self._s.scheduler.alive() and not self._s.closed.is_set()

    def run_due(self) -> None:
        """Fire every deadline that has passed (the scheduler thread does this by itself)."""
        for callback in self._s.scheduler.pop_due(self._s.clock.monotonic()):
            callback()

    def recover(self, reason: EndReason = EndReason.AGENT_RESTART) -> list[Fault]:
        """Revert every fault the journal holds, then sweep marked leftovers."""
        recovered: list[Fault] = []
        for fault_id, rec in self._s.journal.load().items():
            kind = str(rec.get("kind"))
            if kind not in self._s.injectors:
                # Left in the journal for an agent version that knows the kind.
                log.error(
                    "cannot recover journaled fault",
                    fault_id=fault_id,
                    error=f"journal holds fault {fault_id} of unknown kind {kind!r}",
                )
                continue

            def unreadable(error: str, fault_id: str = fault_id) -> None:
                log.error("journal record spec unreadable", fault_id=fault_id, error=error)

            fault = fault_from(fault_id, rec, self._s.codec, unreadable)
            self._s.table.add(fault)
            log.warning("recovering journaled fault", fault_id=fault.id, kind=fault.kind)
            recovered.append(self.revert(fault.id, reason))
        self.sweep()
        return recovered

    def sweep(self) -> list[str]:
        swept: list[str] = []
        for kind, injector in self._s.injectors.items():
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
        self._s.closed.set()
        self._s.scheduler.stop()
        self._s.pool.shutdown(wait=True, cancel_futures=False)
        self._s.events.close()
        return reverted

    # --------------------------------------------------------------- leases

    def acquire_lease(self, holder: str, ttl: Span, peer: str = "") -> Lease:
        if not holder.strip():
            raise InvalidArgument("holder", "must name who holds the lease, e.g. 'controller@host'")
        if len(holder) > 256:
            raise InvalidArgument("holder", f"must be at most 256 characters, got {len(holder)}")
        limits = self.limits
        seconds = duration_seconds(
            "ttl", *ttl, maximum=limits.max_lease_ttl, minimum=limits.min_lease_ttl
        )
        lease = self._s.leases.acquire(holder, seconds, peer)
        self._arm_lease(lease)
        log.info("lease acquired", lease_id=lease.id, holder=holder, ttl=seconds)
        return lease

    def renew_lease(self, lease_id: str, peer: str = "") -> Lease:
        lease = self._s.leases.renew(lease_id, peer)
        self._arm_lease(lease)
        return lease

    def release_lease(self, lease_id: str) -> list[Fault]:
        lease = self._s.leases.remove(lease_id)
        if lease is None:
            raise NotFound(f"lease {lease_id!r} not found or expired: its faults are reverted")
        self._s.scheduler.cancel(("lease", lease_id))
        log.info("lease released", lease_id=lease_id)
        return self._reverts.revert_many(self._lease_ended(lease_id), EndReason.LEASE_RELEASED)

    def lease_wall_deadline(self, lease: Lease) -> float:
        return self._s.clock.wall() + (lease.deadline - self._s.clock.monotonic())

    def _arm_lease(self, lease: Lease) -> None:
        self._s.scheduler.set(
            ("lease", lease.id), lease.deadline, lambda: self._on_lease_deadline(lease.id)
        )

    def _on_lease_deadline(self, lease_id: str) -> None:
        lease = self._s.leases.expire_if_due(lease_id)
        if lease is None:
            return
        self._s.metrics.lease_expirations_total.inc()
        faults = self._lease_ended(lease_id)
        log.warning(
            "lease expired: holder stopped renewing",
            lease_id=lease_id,
            holder=lease.holder,
            faults=[f.id for f in faults],
        )
        for fault in faults:
            self._reverts.submit(fault.id, EndReason.LEASE_EXPIRED)

    def _lease_ended(self, lease_id: str) -> list[Fault]:
        """The lease's live faults, each stamped with when its lease ended."""
        now = self._s.clock.wall()
        with self._s.lock:
            faults = self._s.table.live(lease_id)
            for f in faults:
                f.lease_ended_at = f.lease_ended_at or now
        return faults

    # -------------------------------------------------------- faults' lives

    def inject(self, req: InjectRequest) -> Fault:
        with self._s.replying(req.caller_peer):
            return self._injects.inject(req)

    def check_inject(self, req: InjectRequest) -> dict[str, str]:
        return self._injects.check(req)

    def revert(self, fault_id: str, reason: EndReason, peer: str = "") -> Fault:
        """peer: the caller's, whose reply reports the revert."""
        with self._s.replying(peer):
            return self._reverts.revert(fault_id, reason)

    def worker_died(self, fault_id: str, why: str) -> None:
        self._reverts.worker_died(fault_id, why)

    def target_gone(self, fault_id: str, why: str) -> None:
        self._reverts.target_gone(fault_id, why)

    def revert_all(self, reason: EndReason) -> list[Fault]:
        return self._reverts.revert_many(self._s.table.live(), reason)

    def halt(self, latch: bool, reason: str) -> tuple[list[Fault], bool]:
        with self._s.lock:
            if latch:
                self._halted = True
        log.warning("halt", latch=latch, reason=reason)
        return self.revert_all(EndReason.HALT), self._halted

    def resume(self) -> bool:
        with self._s.lock:
            was, self._halted = self._halted, False
        return was

    @property
    def halted(self) -> bool:
        return self._halted

    # -------------------------------------------------------------- queries

    def get(self, fault_id: str) -> Fault:
        return self._s.table.get(fault_id).snapshot()

    def list_faults(
        self, lease_id: str = "", states: frozenset[State] = frozenset()
    ) -> list[Fault]:
        return self._s.table.snapshots(lease_id, states)

    def journal_ids(self) -> list[str]:
        return self._s.journal.fault_ids()

    def active_count(self) -> int:
        return self._s.table.live_count()

    def watch(self, lease_id: str, include_existing: bool) -> AbstractContextManager[Watcher]:
        """Events of lease_id's faults ("" for all), from now on; with
        include_existing, each matching fault's current state first."""
        with self._s.lock:
            now = self._s.clock.wall()
            existing = (
                [Event(f, None, now) for f in self._s.table.snapshots(lease_id)]
                if include_existing
                else []
            )
            return self._s.events.watch(lease_id, existing)

    # -------------------------------------------------------------- metrics

    def _overdue_by_kind(self) -> dict[str, float]:
        """Seconds past the earlier of its lease's deadline and its own end, per kind
        (worst fault). Nonzero means the dead-man's switch is late: alert on it."""
        now_wall = self._s.clock.wall()
        now = self._s.clock.monotonic()
        worst = dict.fromkeys(self._s.injectors, 0.0)
        for f in self._s.table.in_states(State.ACTIVE, State.REVERT_FAILED):
            ends = [t for t in (f.expires_at, f.lease_ended_at) if t is not None]
            lease = self._s.leases.peek(f.lease_id)
            if lease is not None:
                ends.append(now_wall - (now - lease.deadline))
            if ends:
                worst[f.kind] = max(worst[f.kind], now_wall - min(ends))
        return worst

    def _count_by_kind(self, state: State) -> dict[str, int]:
        counts = dict.fromkeys(self._s.injectors, 0)
        for f in self._s.table.in_states(state):
            counts[f.kind] += 1
        return counts
