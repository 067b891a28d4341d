"""A run's progress lines, kept for late readers and pushed to live ones.

The runner reports from its own thread; each subscriber is an asyncio queue
on the server's loop, fed with call_soon_threadsafe, so a slow browser never
blocks the run. Bounded: the oldest lines go first, and a reader that falls
behind is told how many it missed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import dataclass

import structlog

log = structlog.get_logger("brownout.run")

KEEP = 5000


@dataclass(frozen=True)
class Event:
    seq: int
    at: float
    message: str

    def as_dict(self) -> dict[str, object]:
        return {"seq": self.seq, "at": self.at, "message": self.message}


# None marks the end of the run.
Item = Event | None


class RunEvents:
    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._lock = threading.Lock()
        self._events: deque[Event] = deque(maxlen=KEEP)
        self._seq = 0
        self._closed = False
        self._subscribers: list[tuple[asyncio.AbstractEventLoop, asyncio.Queue[Item]]] = []

    def event(self, message: str) -> None:
        """The runner's Reporter: from any thread."""
        log.info(message, run_id=self.run_id)
        with self._lock:
            self._seq += 1
            e = Event(self._seq, time.time(), message)
            self._events.append(e)
            subscribers = list(self._subscribers)
        for loop, q in subscribers:
            loop.call_soon_threadsafe(q.put_nowait, e)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            subscribers, self._subscribers = self._subscribers, []
        for loop, q in subscribers:
            loop.call_soon_threadsafe(q.put_nowait, None)

    def since(self, seq: int = 0) -> list[Event]:
        with self._lock:
            return [e for e in self._events if e.seq > seq]

    def subscribe(self, after: int = 0) -> tuple[list[Event], asyncio.Queue[Item]]:
        """On the server's loop: the backlog after `after`, and a queue for the rest."""
        q: asyncio.Queue[Item] = asyncio.Queue()
        with self._lock:
            backlog = [e for e in self._events if e.seq > after]
            if self._closed:
                q.put_nowait(None)
            else:
                self._subscribers.append((asyncio.get_running_loop(), q))
        return backlog, q

    def unsubscribe(self, q: asyncio.Queue[Item]) -> None:
        with self._lock:
            self._subscribers = [(lp, s) for lp, s in self._subscribers if s is not q]
