"""What this agent allows clients to ask for, and what it keeps in reserve."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    max_fault_duration: float = 3600.0
    max_lease_ttl: float = 300.0
    min_lease_ttl: float = 1.0
    memory_reserve_bytes: int = 256 * 1024 * 1024
    memory_reserve_percent: float = 5.0
    disk_reserve_bytes: int = 100 * 1024 * 1024
    disk_reserve_percent: float = 1.0
    max_active_faults: int = 64
