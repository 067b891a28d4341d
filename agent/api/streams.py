"""A bound on concurrent server streams of one kind (WatchFaults, KeepLeases):
each open stream holds one of the sync server's threads."""

from __future__ import annotations

import threading

import grpc


class StreamSlots:
    """At most `limit` concurrent streams of one kind: each holds a server thread."""

    def __init__(self, what: str, limit: int) -> None:
        self.what = what
        self.limit = limit
        self._n = 0
        self._lock = threading.Lock()

    def take(self, context: grpc.ServicerContext) -> None:
        with self._lock:
            if self._n >= self.limit:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"this agent serves at most {self.limit} {self.what} streams at once",
                )
            self._n += 1

    @property
    def open(self) -> int:
        return self._n

    def give(self) -> None:
        with self._lock:
            self._n -= 1
