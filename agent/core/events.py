"""Fault state changes as domain events, and the watchers that receive them.

Each change is published to every watcher of its lease (or of every lease)
as an Event holding a snapshot of the fault. A watcher that falls
WATCH_QUEUE_LIMIT events behind is cut off rather than slowing the agent;
the API ends its stream and the client reconnects with include_existing.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from agent.core.model import Fault, State

WATCH_QUEUE_LIMIT = 1000


@dataclass(frozen=True)
class Event:
    fault: Fault  # as it was right after the change
    previous: State | None  # None: first sight (a new fault, or include_existing)
    at: float  # wall clock


@dataclass
class Watcher:
    lease_id: str  # "" for every lease
    events: queue.Queue[Event | None] = field(
        default_factory=lambda: queue.Queue(maxsize=WATCH_QUEUE_LIMIT)
    )
    overflowed: bool = False

    def wants(self, fault: Fault) -> bool:
        return not self.lease_id or self.lease_id == fault.lease_id

    def offer(self, event: Event) -> None:
        if self.overflowed:
            return
        try:
            self.events.put_nowait(event)
        except queue.Full:
            self.overflowed = True

    def wake(self) -> None:
        """End the watcher's wait (with a full queue it is busy anyway)."""
        with suppress(queue.Full):
            self.events.put_nowait(None)


class EventHub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watchers: list[Watcher] = []

    def __bool__(self) -> bool:
        return bool(self._watchers)

    @contextmanager
    def watch(self, lease_id: str, existing: Iterable[Event] = ()) -> Iterator[Watcher]:
        """A watcher of lease_id ("" for all), first given `existing` events."""
        watcher = Watcher(lease_id)
        with self._lock:
            for event in existing:
                if watcher.wants(event.fault):
                    watcher.offer(event)
            self._watchers.append(watcher)
        try:
            yield watcher
        finally:
            with self._lock:
                self._watchers.remove(watcher)

    def publish(self, event: Event) -> None:
        with self._lock:
            for w in self._watchers:
                if w.wants(event.fault):
                    w.offer(event)

    def close(self) -> None:
        with self._lock:
            for w in self._watchers:
                w.wake()
