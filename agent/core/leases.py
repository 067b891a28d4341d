"""Leases: the dead-man's switch. Deadlines live on the monotonic clock.

The table is pure bookkeeping; the fault manager asks the scheduler to call
back at each deadline and reverts the lease's faults then.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass

from agent.core.clock import Clock
from agent.core.errors import NotFound


@dataclass
class Lease:
    id: str
    holder: str
    ttl: float
    deadline: float  # monotonic
    peer: str = ""  # gRPC peer that last acquired or renewed it
    # Moves whenever a fault under the lease changes state, except by the
    # holder's own InjectFault and RevertFault (their replies say how); datagram
    # answers carry it, so the holder fetches its faults only when it moves.
    generation: int = 0


class LeaseTable:
    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[str, Lease] = {}

    def acquire(self, holder: str, ttl: float, peer: str = "") -> Lease:
        lease = Lease(
            id="lease-" + secrets.token_hex(8),
            holder=holder,
            ttl=ttl,
            deadline=self._clock.monotonic() + ttl,
            peer=peer,
        )
        with self._lock:
            self._leases[lease.id] = lease
        return Lease(**vars(lease))

    def get_live(self, lease_id: str) -> Lease:
        """The lease if it exists and its deadline has not passed; else NotFound.

        Checked against the clock, not only against the expiry callback, so a
        late scheduler never lets a dead lease renew or take new faults.
        """
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None or lease.deadline <= self._clock.monotonic():
                raise NotFound(
                    f"lease {lease_id!r} not found or expired: its faults have been or are being"
                    " reverted; acquire a new lease"
                )
            return Lease(**vars(lease))

    def renew(self, lease_id: str, peer: str = "") -> Lease:
        with self._lock:
            lease = self._leases.get(lease_id)
            now = self._clock.monotonic()
            if lease is None or lease.deadline <= now:
                raise NotFound(
                    f"lease {lease_id!r} not found or expired: its faults have been or are being"
                    " reverted; acquire a new lease"
                )
            lease.deadline = now + lease.ttl
            if peer:
                lease.peer = peer
            return Lease(**vars(lease))

    def bump(self, lease_id: str, replying_to: str = "") -> None:
        """A fault under the lease changed state (nothing if the lease is gone),
        unless inside a call from the lease's own peer, whose reply says so."""
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is not None and not (replying_to and replying_to == lease.peer):
                lease.generation += 1

    def is_live(self, lease_id: str) -> bool:
        with self._lock:
            lease = self._leases.get(lease_id)
            return lease is not None and lease.deadline > self._clock.monotonic()

    def remove(self, lease_id: str) -> Lease | None:
        with self._lock:
            return self._leases.pop(lease_id, None)

    def expire_if_due(self, lease_id: str) -> Lease | None:
        """Remove and return the lease if its deadline has passed (a renew may have won)."""
        with self._lock:
            lease = self._leases.get(lease_id)
            if lease is None or lease.deadline > self._clock.monotonic():
                return None
            return self._leases.pop(lease_id)

    def expired(self) -> list[Lease]:
        """Remove and return every lease past its deadline."""
        now = self._clock.monotonic()
        with self._lock:
            gone = [lease for lease in self._leases.values() if lease.deadline <= now]
            for lease in gone:
                del self._leases[lease.id]
            return gone

    def peek(self, lease_id: str) -> Lease | None:
        """The lease as recorded, even past its deadline (for monitoring)."""
        with self._lock:
            lease = self._leases.get(lease_id)
            return None if lease is None else Lease(**vars(lease))

    def count(self) -> int:
        with self._lock:
            return len(self._leases)
