"""systemd integration: READY=1 once serving, watchdog keep-alives, STOPPING=1."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from tests.agentproc import AgentProc

pytestmark = pytest.mark.host


def messages(sock: socket.socket, until: str, timeout: float) -> list[str]:
    got: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            got.append(sock.recv(4096).decode())
        except TimeoutError:
            break
        if until in got[-1]:
            break
    return got


def test_ready_watchdog_and_stopping(tmp_path: Path, agent_factory: list[AgentProc]) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        a = AgentProc(
            tmp_path / "state", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000"}
        )
        a.start()
        agent_factory.append(a)
        got = messages(sock, "READY=1", 5)
        assert any(m.startswith("READY=1") for m in got), got
        got = messages(sock, "WATCHDOG=1", 2)
        assert "WATCHDOG=1" in got, got
        pings = messages(sock, "never", 1.0)
        # WatchdogSec/2 = 100 ms: about ten keep-alives a second.
        assert 5 <= pings.count("WATCHDOG=1") <= 15, pings
        assert a.stop() == 0
        got = messages(sock, "STOPPING=1", 5)
        assert any(m.startswith("STOPPING=1") for m in got), got
