"""Process faults, side by side in one run: a kill from the RPC until the
process is gone against `kill(1)` run as a process, and a stop -> continue
round trip against `kill -STOP` then `kill -CONT` from kill(1).

Run with `make bench`; figures are printed and written to bench-results/*.json.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentclient import AgentClient
from tests.agentproc import AgentProc
from tests.bench.common import report, summary_ms

pytestmark = pytest.mark.bench

RUNS = 40


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])


def state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat[stat.rindex(")") + 2]


def until(pid: int, done: Callable[[str], bool]) -> None:
    while not done(state(pid)):
        time.sleep(0.0002)


def gone(s: str) -> bool:
    return s in ("gone", "Z", "X")


def timed_kills(kill: Callable[[int], None]) -> list[float]:
    samples = []
    for _ in range(RUNS):
        p = sleeper()
        until(p.pid, lambda s: s == "S")
        t0 = time.perf_counter()
        kill(p.pid)
        until(p.pid, gone)
        samples.append(time.perf_counter() - t0)
        p.wait()
    return samples


def timed_round_trips(stop: Callable[[int], Callable[[], None]]) -> list[float]:
    """stop(pid) stops it and returns how to continue it."""
    samples = []
    p = sleeper()
    until(p.pid, lambda s: s == "S")
    try:
        for _ in range(RUNS):
            t0 = time.perf_counter()
            resume = stop(p.pid)
            until(p.pid, lambda s: s == "T")
            resume()
            until(p.pid, lambda s: s != "T")
            samples.append(time.perf_counter() - t0)
    finally:
        p.kill()
        p.wait()
    return samples


def test_process_kill_and_stop_against_kill1(tmp_path: Path) -> None:
    agent = AgentProc(tmp_path / "state").start()
    try:
        with agent.client() as c:
            lease = c.acquire_lease("bench", 60).lease_id

            def brownout_kill(pid: int) -> None:
                spec = pb.FaultSpec(process=pb.ProcessSpec(action=pb.PROCESS_ACTION_KILL))
                fault = c.inject(lease, spec, 60, pb.Target(pid=pid))
                c.revert(fault.id)

            def brownout_stop(pid: int) -> Callable[[], None]:
                return _stop_via(c, lease, pid)

            ours_kill = timed_kills(brownout_kill)
            peer_kill = timed_kills(lambda pid: _kill1("-KILL", pid))
            ours_stop = timed_round_trips(brownout_stop)
            peer_stop = timed_round_trips(_stop_via_kill1)
            c.release_lease(lease)
    finally:
        agent.stop()
    kill_ours, kill_peer = summary_ms(ours_kill), summary_ms(peer_kill)
    stop_ours, stop_peer = summary_ms(ours_stop), summary_ms(peer_stop)
    report(
        "process_faults",
        {
            "kill_rpc_until_gone": kill_ours,
            "kill1_process_until_gone": kill_peer,
            "kill_ratio_p50": round(kill_ours["p50_ms"] / kill_peer["p50_ms"], 2),
            "stop_continue_rpc_round_trip": stop_ours,
            "kill1_stop_continue_round_trip": stop_peer,
            "stop_ratio_p50": round(stop_ours["p50_ms"] / stop_peer["p50_ms"], 2),
            "cpus": os.cpu_count(),
        },
    )
    assert len(ours_kill) == len(peer_kill) == RUNS


def _stop_via(c: AgentClient, lease: str, pid: int) -> Callable[[], None]:
    spec = pb.FaultSpec(process=pb.ProcessSpec(action=pb.PROCESS_ACTION_STOP))
    fault = c.inject(lease, spec, 60, pb.Target(pid=pid))

    def resume() -> None:
        c.revert(fault.id)

    return resume


def _stop_via_kill1(pid: int) -> Callable[[], None]:
    _kill1("-STOP", pid)
    return lambda: _kill1("-CONT", pid)


def _kill1(signal: str, pid: int) -> None:
    subprocess.run(["kill", signal, str(pid)], check=True)
