"""Optional parts of the wire contract, as listed in AgentInfo.features: a
client tells agent versions apart by these, never by version strings."""

from __future__ import annotations

# The KeepLeases stream; without it, keep leases with RenewLease.
KEEP_LEASES = "keep_leases"

# InjectFaultRequest.validate_only: check an inject without making it.
VALIDATE_ONLY = "validate_only"

# Lease.heartbeat_*: renew leases by authenticated datagram (brownout.heartbeat).
LEASE_DATAGRAMS = "lease_datagrams"

ALL = (KEEP_LEASES, VALIDATE_ONLY, LEASE_DATAGRAMS)
