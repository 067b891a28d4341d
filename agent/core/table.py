"""The faults an agent knows: the live ones, and a bounded history of ended ones.

Live faults (pending through revert_failed) are kept apart from the history,
so an inject never scans the ended ones; the history keeps the last
HISTORY_LIMIT ended faults for ListFaults and GetFault. Every read hands out
snapshots, so callers never see a fault change under them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from agent.core.errors import NotFound
from agent.core.model import Fault, State

HISTORY_LIMIT = 1000


class FaultTable:
    def __init__(self, lock: threading.RLock) -> None:
        self.lock = lock  # shared with the manager: state changes and reads agree
        self._faults: dict[str, Fault] = {}  # live and recently ended, oldest first
        self._live: dict[str, Fault] = {}

    def add(self, fault: Fault) -> None:
        with self.lock:
            self._faults[fault.id] = fault
            if not fault.ended:
                self._live[fault.id] = fault
            self._prune()

    def ended(self, fault: Fault) -> None:
        """fault has just reached an ended state (the caller holds the lock)."""
        self._live.pop(fault.id, None)

    def get(self, fault_id: str) -> Fault:
        """The fault itself (not a snapshot), for the manager's own use."""
        with self.lock:
            fault = self._faults.get(fault_id)
        if fault is None:
            raise NotFound(f"fault {fault_id!r} not found on this agent (see ListFaults)")
        return fault

    def live(self, lease_id: str | None = None) -> list[Fault]:
        with self.lock:
            return [f for f in self._live.values() if lease_id is None or f.lease_id == lease_id]

    def live_one(self, fault_id: str) -> Fault | None:
        with self.lock:
            return self._live.get(fault_id)

    def live_count(self) -> int:
        with self.lock:
            return len(self._live)

    def find_request(self, lease_id: str, request_id: str) -> Fault | None:
        """The fault an earlier InjectFault with this idempotency key made."""
        with self.lock:
            return next(
                (
                    f
                    for f in self._faults.values()
                    if f.lease_id == lease_id and f.request_id == request_id
                ),
                None,
            )

    def snapshots(self, lease_id: str = "", states: Iterable[State] = ()) -> list[Fault]:
        wanted = frozenset(states)
        with self.lock:
            return [
                f.snapshot()
                for f in self._faults.values()
                if (not lease_id or f.lease_id == lease_id) and (not wanted or f.state in wanted)
            ]

    def in_states(self, *states: State) -> list[Fault]:
        with self.lock:
            return [f for f in self._faults.values() if f.state in states]

    def _prune(self) -> None:
        """Forget the oldest ended faults beyond HISTORY_LIMIT (holds the lock)."""
        excess = len(self._faults) - len(self._live) - HISTORY_LIMIT
        if excess <= 0:
            return
        doomed: list[str] = []
        for f in self._faults.values():  # oldest first: the first ended ones go
            if f.ended:
                doomed.append(f.id)
                if len(doomed) == excess:
                    break
        for fault_id in doomed:
            del self._faults[fault_id]
