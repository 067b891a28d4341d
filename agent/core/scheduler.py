"""Deadline scheduler: fires callbacks when monotonic deadlines pass.

One thread sleeps exactly until the earliest deadline (a condition variable,
not a poll), so a lease that expires is acted on at once. Setting a key again
replaces its deadline; cancelled or replaced entries never fire.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable, Hashable

import structlog

from agent.core.clock import Clock

log = structlog.get_logger(__name__)

Callback = Callable[[], None]


class Scheduler:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Hashable]] = []
        self._entries: dict[Hashable, tuple[float, int, Callback]] = {}
        self._seq = itertools.count()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def set(self, key: Hashable, deadline: float, callback: Callback) -> None:
        with self._cond:
            seq = next(self._seq)
            self._entries[key] = (deadline, seq, callback)
            heapq.heappush(self._heap, (deadline, seq, key))
            self._cond.notify()

    def cancel(self, key: Hashable) -> None:
        with self._cond:
            self._entries.pop(key, None)

    def next_deadline(self) -> float | None:
        with self._cond:
            self._drop_stale()
            return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Callback]:
        """Remove and return the callbacks whose deadline is <= now, earliest first."""
        with self._cond:
            due: list[Callback] = []
            self._drop_stale()
            while self._heap and self._heap[0][0] <= now:
                _, seq, key = heapq.heappop(self._heap)
                entry = self._entries.get(key)
                if entry is not None and entry[1] == seq:
                    del self._entries[key]
                    due.append(entry[2])
                self._drop_stale()
            return due

    def _drop_stale(self) -> None:
        while self._heap:
            _, seq, key = self._heap[0]
            entry = self._entries.get(key)
            if entry is not None and entry[1] == seq:
                return
            heapq.heappop(self._heap)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="scheduler", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stopping:
                    return
                self._drop_stale()
                if self._heap:
                    timeout = self._heap[0][0] - self._clock.monotonic()
                    if timeout > 0:
                        self._cond.wait(timeout)
                else:
                    self._cond.wait()
                if self._stopping:
                    return
            for callback in self.pop_due(self._clock.monotonic()):
                try:
                    callback()
                except Exception:
                    log.exception("scheduled callback failed")
