"""Optional parts of the wire contract, as listed in AgentInfo.features: a
client tells agent versions apart by these, never by version strings."""

from __future__ import annotations

# The KeepLeases stream; without it, keep leases with RenewLease.
KEEP_LEASES = "keep_leases"

ALL = (KEEP_LEASES,)
