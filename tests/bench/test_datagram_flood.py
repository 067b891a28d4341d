"""A flood of forged lease datagrams against a real agent, side by side with
no flood in the same run: it renews nothing (a lease left alone expires on
time, its fault reverted), a lease the controller holds is not lost (if the
flood crowds out its datagrams, it moves to the stream), and what the flood
does to lease-expiry accuracy and inject latency is reported.

The flood is one process sending as fast as asked (BROWNOUT_FLOOD_RATE, default
100,000 a second); the figures say what rate it reached on this machine.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.fleet import Fleet
from tests.agentproc import AgentProc, wait_for
from tests.bench.common import report
from tests.paths import ROOT

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]

RATE = float(os.environ.get("BROWNOUT_FLOOD_RATE", "100000"))
TTL = 1.5
EXPIRIES = 5
INJECTS = 30


def cpu() -> pb.FaultSpec:
    return pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))


def forged_count(agent: AgentProc) -> float:
    url = f"http://127.0.0.1:{agent.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in body.splitlines()
        if line.startswith("brownout_lease_datagrams_total{")
        and ('result="forged"' in line or 'result="unknown_key"' in line)
    )


@contextmanager
def flood(agent: AgentProc, lease: pb.Lease, seconds: float) -> Iterator[dict[str, Any]]:
    out: dict[str, Any] = {}
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.flood", "127.0.0.1", str(agent.heartbeat_port),
         lease.heartbeat_key_id.hex(), lease.lease_id, str(RATE), str(seconds)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # up to speed
        yield out
    finally:
        stdout, _ = proc.communicate(timeout=seconds + 30)
        out.update(json.loads(stdout.strip().splitlines()[-1]))


def expiry_latencies(agent: AgentProc) -> list[float]:
    """Seconds from each lease's deadline (nobody renews it) to its fault reverted."""
    out = []
    with agent.client() as c:
        for _ in range(EXPIRIES):
            lease = c.acquire_lease("left-alone", TTL)
            fault = c.inject(lease.lease_id, cpu(), 60)
            deadline = c.renew_lease(lease.lease_id).deadline.ToNanoseconds() / 1e9
            assert wait_for(
                lambda f=fault: c.get_fault(f.id).state == pb.FAULT_STATE_REVERTED,
                TTL + 5, 0.002,
            )  # fmt: skip
            out.append(time.time() - deadline)
    return out


def inject_latencies(agent: AgentProc) -> list[float]:
    out = []
    with agent.client() as c:
        lease = c.acquire_lease("injects", 30)
        for _ in range(INJECTS):
            t0 = time.perf_counter()
            fault = c.inject(lease.lease_id, cpu(), 60)
            out.append(time.perf_counter() - t0)
            c.revert(fault.id)
        c.release_lease(lease.lease_id)
    return out


def ms(xs: list[float]) -> dict[str, float]:
    return {"p50_ms": round(1e3 * statistics.median(xs), 1), "max_ms": round(1e3 * max(xs), 1)}


def measure(agent: AgentProc) -> dict[str, Any]:
    """A lease held by a fleet over datagrams through it all, the expiries, the injects."""
    with Fleet(inventory.build(agents=[agent.address]), timeout=5) as fleet:
        fleet.acquire_leases([agent.address], "held", TTL)
        hold = fleet.keepers[agent.address]
        expiries, injects = expiry_latencies(agent), inject_latencies(agent)
        held = {"lost": hold.lost.is_set(), "mode": hold.mode, "heartbeats": hold.heartbeats}
    return {"expiry_after_deadline": ms(expiries), "inject": ms(injects), "held_lease": held}


def test_a_flood_of_forged_datagrams_renews_nothing(tmp_path: Path) -> None:
    agent = AgentProc(tmp_path / "state", ["--min-lease-ttl", "1s"]).start()
    try:
        quiet = measure(agent)
        with agent.client() as c:
            target = c.acquire_lease("flood-target", TTL)  # the key id and lease it names
            fault = c.inject(target.lease_id, cpu(), 60)
        before = forged_count(agent)
        with flood(agent, target, 20.0 + EXPIRIES * TTL) as sent:
            # The named lease is renewed by nobody but the flood: it must end.
            with agent.client() as c:
                assert wait_for(
                    lambda: c.get_fault(fault.id).state == pb.FAULT_STATE_REVERTED, TTL + 1.0
                ), "a forged datagram renewed the lease"
            flooded = measure(agent)
        refused = forged_count(agent) - before
    finally:
        agent.stop()
    figures = {"asked_rate": RATE, "flood": sent, "refused_by_the_agent": refused,
               "no_flood": quiet, "flood_on": flooded}  # fmt: skip
    report("datagram_flood", figures)
    assert refused > 0
    assert not quiet["held_lease"]["lost"] and not flooded["held_lease"]["lost"]
