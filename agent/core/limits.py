"""What this agent allows clients to ask for, and what it keeps in reserve."""

from __future__ import annotations

from dataclasses import dataclass

# Processes whose loss takes the node's access, logs, containers or
# Kubernetes membership with it: refused unless a request overrides it.
PROCESS_DENYLIST = (
    "sshd",
    "systemd-journal",  # systemd-journald, as comm holds it (15 bytes)
    "systemd-logind",
    "containerd",
    "containerd-shim.*",
    "dockerd",
    "crio",
    "conmon",
    "kubelet",
)


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
    # Process faults: the most processes one request may match without
    # allow_many, and the comm patterns refused without allow_denylisted.
    process_match_cap: int = 50
    process_denylist: tuple[str, ...] = PROCESS_DENYLIST
    max_clock_offset: float = 3600.0  # seconds, either way
