"""A one-way flag for other threads to check: a threading.Event that costs a
bool until someone waits on it. A fleet holds one per lease, and an Event
(a Condition, a lock and a deque) is 1.5 KiB: 15 MiB at 10,000 leases."""

from __future__ import annotations

import threading

_LOCK = threading.Lock()  # creating a waiter's Event; set() is rare


class Latch:
    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        with _LOCK:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def wait(self, timeout: float | None = None) -> bool:
        with _LOCK:
            if self._set:
                return True
            if self._event is None:
                self._event = threading.Event()
            event = self._event
        return event.wait(timeout)
