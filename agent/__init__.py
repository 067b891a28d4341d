"""Brownout node agent: injects host faults under leases and always reverts them."""

__version__ = "0.1.0"
