"""Brownout node agent: injects host faults under leases and always reverts them."""
