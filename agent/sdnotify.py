"""systemd readiness and watchdog notifications (Type=notify, WatchdogSec).

Speaks the sd_notify datagram protocol directly; a no-op when the agent does
not run under systemd (no NOTIFY_SOCKET).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


def notify(message: str) -> bool:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError as exc:
        log.warning("sd_notify failed", message=message, error=str(exc))
        return False
    return True


def watchdog_interval() -> float | None:
    """Half of WatchdogSec when systemd asked this process for keep-alives."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return int(usec) / 1e6 / 2


def start_watchdog(healthy: Callable[[], bool], stop: threading.Event) -> threading.Thread | None:
    """Ping WATCHDOG=1 while healthy() holds; stop pinging (so systemd restarts
    the agent) when it does not, e.g. when the lease scheduler has died."""
    interval = watchdog_interval()
    if interval is None:
        return None

    def run() -> None:
        while not stop.wait(interval):
            if healthy():
                notify("WATCHDOG=1")
            else:
                log.error("watchdog: agent unhealthy, withholding keep-alive")

    thread = threading.Thread(target=run, name="sd-watchdog", daemon=True)
    thread.start()
    return thread
