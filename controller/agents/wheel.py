"""Due times for many timers at a coarse tick: a timing wheel.

The lease keeper reschedules every beat at least once a period (10,000 a
second at fleet scale). A heap of (due, order, beat) tuples made an object
per schedule that lived about a period: old enough to reach the collector's
oldest generation, which then ran full passes over the whole fleet. Here a
schedule is a slot number (an int) and a place in that slot's list; an item
rescheduled elsewhere leaves a stale place behind, skipped when its slot
comes up. Items fire at most one tick late, never early.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Hashable
from typing import Generic, TypeVar

T = TypeVar("T", bound=Hashable)
# A wakeup a hair before a slot's time (float rounding, the loop's clock
# resolution) still takes that slot, rather than sleeping another tick.
EARLY = 1e-6


class Wheel(Generic[T]):
    def __init__(self, tick: float) -> None:
        self.tick = tick
        self._slots: dict[int, list[T]] = {}
        self._order: list[int] = []  # a heap of the slots' numbers
        self._at: dict[T, int] = {}  # each scheduled item's slot

    def __len__(self) -> int:
        return len(self._at)

    def __contains__(self, item: T) -> bool:
        return item in self._at

    def put(self, item: T, due: float) -> None:
        """Schedule item at `due` (replacing any earlier schedule of it)."""
        k = math.ceil(due / self.tick)
        if self._at.get(item) == k:
            return  # already there: one place per item and slot
        self._at[item] = k
        slot = self._slots.get(k)
        if slot is None:
            slot = self._slots[k] = []
            heapq.heappush(self._order, k)
        slot.append(item)

    def remove(self, item: T) -> None:
        self._at.pop(item, None)

    def first(self) -> float | None:
        """The time of the earliest slot with any place in it (perhaps only
        stale ones), or None if nothing is scheduled."""
        return self._order[0] * self.tick if self._order else None

    def pop_due(self, now: float) -> list[T]:
        """The items due by `now`, in slot order; they are no longer scheduled."""
        out: list[T] = []
        while self._order and self._order[0] * self.tick <= now + EARLY:
            k = heapq.heappop(self._order)
            for item in self._slots.pop(k):
                if self._at.get(item) == k:
                    del self._at[item]
                    out.append(item)
        return out
