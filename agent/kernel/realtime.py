"""The node's realtime clock, set relative to CLOCK_BOOTTIME: boottime never
jumps and keeps counting across an agent's restart, so "realtime = boottime
+ delta" names a wall-clock time that stays right however long ago it was
written down."""

from __future__ import annotations

import time
from pathlib import Path

CAP_SYS_TIME = 25


def delta_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_BOOTTIME, now."""
    boot = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    real = time.clock_gettime_ns(time.CLOCK_REALTIME)
    return real - boot


def set_delta_ns(delta: int) -> None:
    """Set CLOCK_REALTIME to CLOCK_BOOTTIME + delta (needs CAP_SYS_TIME)."""
    time.clock_settime_ns(time.CLOCK_REALTIME, time.clock_gettime_ns(time.CLOCK_BOOTTIME) + delta)


def can_set() -> str:
    """Why this process cannot set the clock ("" when it can)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            if int(line.split()[1], 16) & (1 << CAP_SYS_TIME):
                return ""
            return "the agent lacks CAP_SYS_TIME"
    return "cannot read the agent's capabilities from /proc/self/status"
