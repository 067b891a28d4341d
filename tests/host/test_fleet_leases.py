"""The controller's fleet keeps leases from its one event loop: on KeepLeases
streams, through a cut connection, falling back to RenewLease when an agent
cannot serve a stream, and losing them when its own loop is wedged."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.fleet import Fleet
from tests.agentproc import AgentProc, wait_for
from tests.fleetsim.procs import quit_sim
from tests.host.leasestream import Stream
from tests.paths import ROOT

pytestmark = pytest.mark.host
# These are the gRPC paths (KeepLeases, RenewLease): the path of agents with
# lease datagrams off or blocked. Datagrams: tests/host/test_lease_datagrams.py.
AGENT_FIXTURE_ARGS = ["--heartbeat-port", "off"]

CPU = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))


@pytest.fixture
def fleet(agent: AgentProc) -> Iterator[Fleet]:
    with Fleet(inventory.build(agents=[agent.address]), timeout=5) as f:
        yield f


def inject(fleet: Fleet, agent: AgentProc) -> pb.Fault:
    lease_id = fleet.keepers[agent.address].lease_id

    async def call(c: AsyncAgentClient) -> pb.Fault:
        return await c.inject(lease_id, CPU, 60)

    fault = fleet.map(call)[agent.address].value
    assert fault is not None and fault.state == pb.FAULT_STATE_ACTIVE
    return fault


def state(agent: AgentProc, fault: pb.Fault) -> pb.Fault:
    with agent.client() as c:
        return c.get_fault(fault.id)


def test_a_fleet_keeps_its_lease_on_a_stream_and_releases_it(
    agent: AgentProc, fleet: Fleet
) -> None:
    ttl = 1.5
    assert fleet.acquire_leases([agent.address], "test", ttl)[agent.address].ok
    fault = inject(fleet, agent)
    time.sleep(3 * ttl)
    hold = fleet.keepers[agent.address]
    assert hold.mode == "KeepLeases" and hold.heartbeats >= 6 and not fleet.lost()
    assert state(agent, fault).state == pb.FAULT_STATE_ACTIVE
    released = fleet.loop.run(fleet.release(agent.address))
    assert released is not None
    assert [f.end_reason for f in released.faults] == [pb.END_REASON_LEASE_RELEASED]
    events = [e for e in agent.log_events() if e.get("method") == "KeepLeases"]
    assert [e["detail"] for e in events] == ["stream opened", "stream ended"]
    assert events[-1]["result"] == "OK" and int(str(events[-1]["heartbeats"])) == hold.heartbeats


def test_a_cut_connection_is_reopened_inside_the_ttl_and_the_fault_stays(
    agent: AgentProc, fleet: Fleet
) -> None:
    ttl = 3.0
    fleet.acquire_leases([agent.address], "test", ttl)
    fault = inject(fleet, agent)
    hold = fleet.keepers[agent.address]
    assert wait_for(lambda: hold.heartbeats >= 1, ttl)
    port = agent.address.rsplit(":", 1)[1]
    for _ in range(3):
        # Kill every TCP connection to the agent's port, from outside.
        subprocess.run(["ss", "-K", "dst", "127.0.0.1", "dport", "=", port], check=True,
                       capture_output=True)  # fmt: skip
        time.sleep(ttl / 2)
    count = hold.heartbeats
    assert wait_for(lambda: hold.heartbeats > count, ttl)
    assert hold.reconnects >= 1, "the cut was not noticed"
    assert not fleet.lost()
    assert state(agent, fault).state == pb.FAULT_STATE_ACTIVE


def test_an_agent_at_its_stream_limit_is_kept_by_renew_lease(
    agent: AgentProc, fleet: Fleet
) -> None:
    ttl = 1.5
    with agent.client() as c:
        other = c.acquire_lease("other", 30)
        taken = [Stream(c) for _ in range(8)]
        for s in taken:
            s.send(other.lease_id)
        fleet.acquire_leases([agent.address], "test", ttl)
        fault = inject(fleet, agent)
        hold = fleet.keepers[agent.address]
        time.sleep(3 * ttl)
        assert hold.mode == "RenewLease" and hold.heartbeats >= 4 and not fleet.lost()
        assert state(agent, fault).state == pb.FAULT_STATE_ACTIVE
        for s in taken:
            s.close()
        c.release_lease(other.lease_id)


def test_a_wedged_controller_loop_loses_the_lease_and_the_agent_reverts(
    agent: AgentProc, fleet: Fleet
) -> None:
    """The connection and its HTTP/2 machinery stay; only our code stops."""
    ttl = 1.5
    fleet.acquire_leases([agent.address], "test", ttl)
    fault = inject(fleet, agent)
    hold = fleet.keepers[agent.address]
    assert wait_for(lambda: hold.heartbeats >= 2, 2 * ttl)
    wedged = threading.Event()

    def wedge() -> None:
        wedged.set()
        time.sleep(2 * ttl)  # blocks the loop: no heartbeat is sent

    fleet.loop.loop.call_soon_threadsafe(wedge)
    assert wedged.wait(1)
    last = hold.confirmed
    assert wait_for(lambda: state(agent, fault).state == pb.FAULT_STATE_REVERTED, 2 * ttl)
    assert time.monotonic() - last <= ttl + 0.5 + ttl / 3
    assert state(agent, fault).end_reason == pb.END_REASON_LEASE_EXPIRED
    # Unwedged, the fleet counts the lease lost: past the TTL with no answer,
    # or told so by the agent, whichever it notices first.
    assert wait_for(lambda: agent.address in fleet.lost(), 2 * ttl)
    reason = fleet.lost()[agent.address]
    assert "no heartbeat answered" in reason or "not found or expired" in reason, reason


def test_calls_run_concurrently_on_one_loop(agent: AgentProc, fleet: Fleet) -> None:
    """20 GetInfo calls that each wait 0.5 s on the loop finish together."""

    async def slow_info(c: AsyncAgentClient) -> pb.AgentInfo:
        await asyncio.sleep(0.5)
        return await c.info()

    t0 = time.monotonic()
    outs = fleet.loop.run(fleet.amap(slow_info, [agent.address] * 20))
    assert time.monotonic() - t0 < 1.5
    assert all(o.ok for o in outs.values())
    assert threading.active_count() < 20


@contextlib.contextmanager
def old_agent(*flags: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """The fleet simulator serving an older contract, on loopback; ended after."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "tests.fleetsim.server", "--old-agent", *flags,
         "--listen", "127.0.0.1:0"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sim.stdin is not None and sim.stdout is not None
    try:
        yield sim, f"127.0.0.1:{json.loads(sim.stdout.readline())['listening']}"
    finally:
        quit_sim(sim)


def test_an_agent_without_watch_faults_is_polled_and_a_fault_end_is_still_seen() -> None:
    """WatchFaults answers UNIMPLEMENTED: the watch does not retry it (no reconnect
    loop), it polls ListFaults and reports the fault's end from a Halt."""
    with (
        old_agent("--no-watch") as (_, address),
        Fleet(inventory.build(agents=[address]), timeout=5) as f,
    ):
        assert f.acquire_leases([address], "test", 3.0)[address].ok
        lease_id = f.keepers[address].lease_id
        fault = f.map(lambda c: c.inject(lease_id, CPU, 60))[address].value
        assert fault is not None
        seen: list[pb.FaultEvent] = []
        f.watch_faults(lambda _a, e: seen.append(e))
        assert wait_for(lambda: any(e.fault.state == pb.FAULT_STATE_ACTIVE for e in seen), 5)
        assert f.halt()[address].ok
        assert wait_for(lambda: any(e.fault.end_reason == pb.END_REASON_HALT for e in seen), 5)
        watch = f.watches[0]
        assert watch.mode == "ListFaults" and watch.reconnects == 0
        assert [e.fault.state for e in seen] == [pb.FAULT_STATE_ACTIVE, pb.FAULT_STATE_REVERTED]


def test_an_agent_without_keep_leases_is_kept_by_renew_lease() -> None:
    """An agent from before KeepLeases (the fleet simulator in that mode: its
    GetInfo lists no features, and the stream is unknown to it)."""
    with old_agent() as (sim, address):
        assert sim.stdin is not None and sim.stdout is not None
        ttl = 1.5
        with Fleet(inventory.build(agents=[address]), timeout=5) as f:
            assert f.statuses()[address].info is not None
            assert f.acquire_leases([address], "test", ttl)[address].ok
            time.sleep(3 * ttl)
            hold = f.keepers[address]
            assert hold.mode == "RenewLease" and hold.heartbeats >= 6 and not f.lost()
            sim.stdin.write("stats\n")
            sim.stdin.flush()
            stats = json.loads(sim.stdout.readline())
            assert stats["leases_expired"] == 0 and stats["renewals"] >= 6
            assert stats["streams_open"] == 0


def test_a_stopped_agent_delays_no_other_beyond_its_own_timeout(
    tmp_path: Path, agent_factory: list[AgentProc]
) -> None:
    """One agent SIGSTOPped and one address that refuses: the healthy agents'
    answers come at their own pace, the stopped one ends at its timeout."""
    agents = [AgentProc(tmp_path / f"a{i}").start() for i in range(3)]
    agent_factory.extend(agents)
    stopped, dead = agents[0], "127.0.0.1:1"
    addresses = [a.address for a in agents] + [dead]
    timeout = 2.0
    with Fleet(inventory.build(agents=addresses), timeout=timeout) as f:
        f.statuses()  # connect first
        os.kill(stopped.pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            out = f.map(lambda c: c.info())
            took = time.monotonic() - t0
        finally:
            os.kill(stopped.pid, signal.SIGCONT)
    for a in agents[1:]:
        assert out[a.address].ok and out[a.address].seconds < 0.5, out[a.address]
    assert out[stopped.address].code == "DEADLINE_EXCEEDED"
    assert timeout - 0.1 <= out[stopped.address].seconds <= timeout + 0.5
    assert out[dead].code == "UNAVAILABLE" and out[dead].seconds < timeout
    assert took <= timeout + 0.5
