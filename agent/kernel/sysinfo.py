"""Facts about this host and this process: boot id, usable CPUs, page size,
listening ports."""

from __future__ import annotations

import mmap
import os
from pathlib import Path

import psutil

PAGE_SIZE = mmap.PAGESIZE


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity, which a cpuset narrows)."""
    return sorted(os.sched_getaffinity(0))


def bound_udp_ports() -> set[int]:
    """UDP ports this process has bound (its lease-heartbeat socket)."""
    ports: set[int] = set()
    try:
        for conn in psutil.Process().net_connections("udp"):
            if conn.laddr and not conn.raddr:
                ports.add(conn.laddr.port)
    except psutil.Error:
        pass
    return ports


def listening_tcp_ports() -> set[int]:
    """TCP ports this process listens on (its gRPC and metrics listeners)."""
    ports: set[int] = set()
    try:
        for conn in psutil.Process().net_connections("tcp"):
            if conn.status == psutil.CONN_LISTEN and conn.laddr:
                ports.add(conn.laddr.port)
    except psutil.Error:
        pass
    return ports
