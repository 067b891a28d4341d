"""What the manager's parts (injects, reverts, the facade) share: the fault
table, the journal, the scheduler, the event hub, and one lock over every
fault's state, plus the few operations they all perform."""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from agent.core.clock import Clock
from agent.core.events import Event, EventHub
from agent.core.injector import Injector, NoTargetWatch, TargetWatch
from agent.core.journal import Journal
from agent.core.leases import LeaseTable
from agent.core.limits import Limits
from agent.core.metrics import Metrics
from agent.core.model import Fault, State
from agent.core.records import Phase, SpecCodec, record
from agent.core.scheduler import Scheduler
from agent.core.table import FaultTable


@dataclass
class Shared:
    injectors: Mapping[str, Injector[Any]]
    journal: Journal
    clock: Clock
    limits: Limits
    metrics: Metrics
    codec: SpecCodec
    boot_id: str = ""
    targets: TargetWatch = field(default_factory=NoTargetWatch)
    lock: threading.RLock = field(default_factory=threading.RLock)
    events: EventHub = field(default_factory=EventHub)
    closed: threading.Event = field(default_factory=threading.Event)
    table: FaultTable = field(init=False)
    leases: LeaseTable = field(init=False)
    scheduler: Scheduler = field(init=False)
    # Moves on every fault state change (next() of a count is atomic).
    generation: int = field(init=False, default=0)
    _generations: Iterator[int] = field(init=False, default_factory=lambda: itertools.count(1))
    _replying: threading.local = field(init=False, default_factory=threading.local)
    # Reverts run here: lease expiry and release revert many faults at once.
    pool: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(max_workers=8, thread_name_prefix="revert")
    )

    def __post_init__(self) -> None:
        self.table = FaultTable(self.lock)
        self.leases = LeaseTable(self.clock)
        self.scheduler = Scheduler(self.clock)

    def durable(self, kind: str) -> bool:
        return self.injectors[kind].survives_reboot

    def write(self, fault: Fault, phase: Phase) -> None:
        """Journal the fault's record (atomically; fsynced if it outlives a reboot)."""
        rec = record(fault, phase, self.boot_id, self.codec)
        self.journal.write(fault.id, dict(rec), self.durable(fault.kind))

    def forget(self, fault: Fault) -> None:
        """Remove the fault's journal record: it is ended. Needs no free space."""
        self.journal.remove(fault.id, self.durable(fault.kind))

    @contextlib.contextmanager
    def replying(self, peer: str) -> Iterator[None]:
        """Within: state changes made for a call from `peer`, whose reply tells
        it; they do not move the lease's generation when the peer holds it."""
        self._replying.peer = peer
        try:
            yield
        finally:
            self._replying.peer = ""

    def publish(self, fault: Fault, prev: State | None) -> None:
        """Tell the watchers (if any) about the fault's new state, and move the
        agent's and the lease's generations, which lease-datagram answers carry."""
        self.generation = next(self._generations)
        self.leases.bump(fault.lease_id, getattr(self._replying, "peer", ""))
        if self.events:
            with self.lock:
                event = Event(fault.snapshot(), prev, self.clock.wall())
            self.events.publish(event)
