"""The `brownout` CLI against a real agent: foreground inject, Ctrl-C, SIGKILL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.processes import any_running

pytestmark = pytest.mark.host


def brownout(agent: AgentProc, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", "--agent", agent.address, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_inject(agent: AgentProc, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "--agent", agent.address, "inject", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def read_active(proc: subprocess.Popen[str]) -> tuple[str, list[int]]:
    assert proc.stdout is not None
    for _ in range(5):
        line = proc.stdout.readline()
        m = re.match(r"fault (\S+) active cpu .*worker_pids=([\d,]+)", line)
        if m:
            return m.group(1), [int(p) for p in m.group(2).split(",")]
    raise AssertionError("no active fault line from the CLI")


def running(pids: list[int]) -> bool:
    return any_running(pids)


def test_inject_holds_the_fault_for_its_duration_then_reverts(agent: AgentProc) -> None:
    t0 = time.monotonic()
    out = brownout(
        agent,
        "inject",
        "cpu",
        "--cores",
        "1",
        "--load",
        "20",
        "--duration",
        "2s",
        "--lease-ttl",
        "1s",
    )
    assert out.returncode == 0, out.stderr
    assert time.monotonic() - t0 >= 2.0
    lines = out.stdout.splitlines()
    assert re.match(r"lease lease-\w+ acquired \(ttl 1s\)", lines[0])
    assert re.match(
        r"fault fault-\w+ active cpu cores=\d load_percent=20 worker_pids=\d+", lines[1]
    )
    assert lines[2].endswith("reason=duration_elapsed") and " reverted " in lines[2]


def test_ctrl_c_reverts_the_fault(agent: AgentProc) -> None:
    proc = start_inject(agent, "cpu", "--cores", "1", "--load", "20", "--duration", "60s")
    fault_id, pids = read_active(proc)
    assert running(pids)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "SIGINT: reverting" in err
    assert "reason=client_revert" in out
    assert not running(pids)
    with agent.client() as c:
        assert c.get_fault(fault_id).end_reason == pb.END_REASON_CLIENT_REVERT
        assert c.info().active_leases == 0


def test_sigkill_of_the_cli_leaves_the_agent_to_revert_within_the_ttl(agent: AgentProc) -> None:
    ttl = 1.0
    proc = start_inject(
        agent, "cpu", "--cores", "1", "--load", "20", "--duration", "60s", "--lease-ttl", "1s"
    )
    fault_id, pids = read_active(proc)
    proc.kill()
    killed_at = time.monotonic()
    proc.communicate(timeout=10)
    # The last renewal happened at most ttl/3 before the kill.
    assert wait_for(lambda: not running(pids), ttl + 0.5)
    assert time.monotonic() - killed_at <= ttl + 0.5
    with agent.client() as c:
        assert c.get_fault(fault_id).end_reason == pb.END_REASON_LEASE_EXPIRED


def test_read_only_commands(agent: AgentProc) -> None:
    info = brownout(agent, "info")
    assert info.returncode == 0 and "cpu        available" in info.stdout
    faults = brownout(agent, "faults")
    assert faults.returncode == 0 and faults.stdout.startswith("ID")
    bad = brownout(agent, "revert", "fault-nope")
    assert bad.returncode == 2 and "NOT_FOUND: fault 'fault-nope' not found" in bad.stderr
    halt = brownout(agent, "halt")
    assert halt.returncode == 0
    header, row = halt.stdout.splitlines()
    assert header.split() == ["ADDRESS", "RESULT", "REVERTED", "LATCHED", "DETAIL"]
    assert row.split()[:4] == [agent.address, "ok", "0", "no"]


def test_cli_rejects_nan_and_negative_durations_before_calling(agent: AgentProc) -> None:
    for value in ("nan", "-5s", "inf"):
        out = brownout(agent, "inject", "cpu", "--cores", "1", "--load", "5", f"--duration={value}")
        assert out.returncode == 2 and "invalid duration" in out.stderr
    with agent.client() as c:
        assert c.info().active_leases == 0
