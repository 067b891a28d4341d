"""Leases renewed by authenticated datagram, against real agents: the lease
lives on datagrams alone; a replayed or forged datagram renews nothing (and is
counted); a controller stopped by SIGSTOP loses its faults within TTL + 100 ms;
datagrams that get no answer move the lease to the KeepLeases stream without
losing it, and back once they are answered again."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import UTC

import pytest

from brownout import features
from brownout import heartbeat as hb
from brownout.v1 import agent_pb2 as pb
from controller.agents import inventory, lease_hold
from controller.agents.aio_fault_watch import AsyncFaultWatch
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.fleet import Fleet
from controller.agents.lease_hold import LeaseHold
from tests.agentproc import AgentProc, wait_for
from tests.host.udpgate import UdpGate

pytestmark = pytest.mark.host

LIVE = [pb.FAULT_STATE_PENDING, pb.FAULT_STATE_ACTIVE, pb.FAULT_STATE_REVERTING]


def samples(agent: AgentProc, name: str, label: str) -> dict[str, float]:
    """One metric family's samples from the agent's /metrics, by one label."""
    url = f"http://127.0.0.1:{agent.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = resp.read().decode()
    out: dict[str, float] = {}
    for line in body.splitlines():
        if line.startswith(name + "{"):
            value = line.split(f'{label}="', 1)[1].split('"', 1)[0]
            out[value] = float(line.rsplit(" ", 1)[1])
    return out


def datagrams(agent: AgentProc) -> dict[str, float]:
    return samples(agent, "brownout_lease_datagrams_total", "result")


def streams(agent: AgentProc) -> dict[str, float]:
    open_ = samples(agent, "brownout_open_streams", "method")
    return {m: open_.get(m, 0.0) for m in ("KeepLeases", "WatchFaults")}


def held_and_watched(
    fleet: Fleet, agent: AgentProc, holder: str, ttl: float
) -> tuple[str, LeaseHold, AsyncFaultWatch, list[pb.Fault]]:
    """A lease on the agent held by the fleet, and a fault watch on it that
    records every fault it reports."""
    got = fleet.acquire_leases([agent.address], holder, ttl)
    lease_id = got[agent.address].value.lease_id  # type: ignore[union-attr]
    seen: list[pb.Fault] = []
    fleet.watch_faults(lambda _a, e: seen.append(e.fault))
    return lease_id, fleet.keepers[agent.address], fleet.watches[0], seen


def send(agent: AgentProc, data: bytes, wait: float = 1.0) -> bytes | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(wait)
        s.sendto(data, ("127.0.0.1", agent.heartbeat_port))
        try:
            return s.recv(2048)
        except TimeoutError:
            return None


def test_the_agent_announces_datagrams_and_hands_out_one_key_per_holder(
    agent: AgentProc,
) -> None:
    assert agent.heartbeat_port == agent.port  # `same`: the gRPC port's number, on UDP
    with agent.client() as c:
        assert features.LEASE_DATAGRAMS in c.info().features
        a, b = c.acquire_lease("holder-a", 5), c.acquire_lease("holder-a", 5)
        other = c.acquire_lease("holder-b", 5)
        assert a.heartbeat_port == agent.heartbeat_port
        assert len(a.heartbeat_key) == hb.KEY_BYTES and a.heartbeat_key == b.heartbeat_key
        assert other.heartbeat_key_id != a.heartbeat_key_id
        # Renewing by RenewLease hands out no key.
        assert not c.renew_lease(a.lease_id).heartbeat_key
        for lease in (a, b, other):
            c.release_lease(lease.lease_id)


def test_a_lease_lives_on_datagrams_alone(agent: AgentProc) -> None:
    ttl = 1.5
    with Fleet(inventory.build(agents=[agent.address]), timeout=5) as fleet:
        got = fleet.acquire_leases([agent.address], "datagram-holder", ttl)
        lease_id = got[agent.address].value.lease_id  # type: ignore[union-attr]
        hold = fleet.keepers[agent.address]
        assert hold.mode == "datagram"
        with agent.client() as c:
            fault = c.inject(lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)), 60)
            time.sleep(4 * ttl)
            assert c.get_fault(fault.id).state == pb.FAULT_STATE_ACTIVE
            assert hold.mode == "datagram" and not hold.lost.is_set()
            assert hold.heartbeats >= 8
            assert hold.generation >= 1  # the inject moved the agent's fault generation
            counts = datagrams(agent)
            assert counts.get("renewed", 0) >= hold.heartbeats
            assert not {k: v for k, v in counts.items() if k != "renewed" and v}
            c.revert(fault.id)
    # No KeepLeases stream and no RenewLease was used to keep it.
    methods = [e.get("method") for e in agent.log_events() if e.get("event") == "audit"]
    assert "KeepLeases" not in methods and "RenewLease" not in methods


def test_a_fault_end_is_seen_from_the_answers_with_no_stream_open(agent: AgentProc) -> None:
    """A run's watch under a datagram-kept lease opens no WatchFaults stream:
    the answers carry the lease's fault generation, and when it moves the
    watch fetches the lease's faults. A fault that ends by itself is reported
    within the TTL of its end."""
    ttl = 1.5
    with Fleet(inventory.build(agents=[agent.address]), timeout=5) as fleet:
        got = fleet.acquire_leases([agent.address], "generation-holder", ttl)
        lease_id = got[agent.address].value.lease_id  # type: ignore[union-attr]
        seen: list[tuple[float, pb.Fault]] = []
        fleet.watch_faults(lambda _a, e: seen.append((time.time(), e.fault)))
        watch = fleet.watches[0]
        with agent.client() as c:
            fault = c.inject(lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)), 1.0)
            ended_seen = lambda: any(f.id == fault.id and f.state not in LIVE for _, f in seen)  # noqa: E731
            assert wait_for(ended_seen, 1.0 + 2 * ttl), seen
            open_streams = samples(agent, "brownout_open_streams", "method")
        at, ended = next((t, f) for t, f in seen if f.state not in LIVE)
        assert ended.state == pb.FAULT_STATE_REVERTED
        assert ended.end_reason == pb.END_REASON_DURATION_ELAPSED
        assert at - ended.ended_at.ToDatetime().replace(tzinfo=UTC).timestamp() <= ttl
        assert watch.mode == "generation" and watch.reconnects == 0
        assert 1 <= watch.fetches <= 3  # after the inject and after the end, not per answer
        assert open_streams == {"KeepLeases": 0, "WatchFaults": 0}


def test_a_holders_leases_on_one_agent_share_one_datagram(agent: AgentProc) -> None:
    """Two runs on one service (two views of its fleet) under one holder name
    hold a lease each on the agent: one key, so one datagram a period renews
    both, and the agent counts one renewal per round, not one per lease."""
    ttl = 1.5
    with Fleet(inventory.build(agents=[agent.address]), timeout=5) as fleet:
        views = [fleet.borrow(), fleet.borrow()]
        for v in views:
            v.acquire_leases([agent.address], "shared-holder", ttl)
        holds = [v.keepers[agent.address] for v in views]
        assert holds[0].datagram.key is holds[1].datagram.key  # type: ignore[union-attr]
        time.sleep(4 * ttl)
        rounds, renewed = fleet.keeper.rounds, datagrams(agent).get("renewed", 0)
        assert all(h.mode == "datagram" and not h.lost.is_set() for h in holds)
        assert rounds >= 8
        assert abs(sum(h.heartbeats for h in holds) - 2 * rounds) <= 2  # both leases each round
        assert rounds <= renewed <= rounds + 2  # one datagram each (and none resent here)
        for v in views:
            v.close()


def test_replayed_and_forged_datagrams_renew_nothing(agent: AgentProc) -> None:
    ttl = 2.0
    with agent.client() as c:
        lease = c.acquire_lease("replay-test", ttl)
        fault = c.inject(lease.lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)), 60)
        key_id, key = lease.heartbeat_key_id, lease.heartbeat_key
        genuine = hb.encode_request(key_id, key, 10, [lease.lease_id])
        answer = send(agent, genuine)
        assert answer is not None
        decoded = hb.decode_answer(answer, lease.heartbeat_key)
        assert decoded.leases[0].live and decoded.counter == 10
        renewed_at = time.monotonic()
        forged = hb.encode_request(key_id, hb.new_key()[1], 11, [lease.lease_id])
        old = hb.encode_request(key_id, key, 9, [lease.lease_id])
        # Keep replaying and forging: none of it may keep the lease alive.
        while time.monotonic() - renewed_at < ttl + 1:
            for data in (genuine, forged, old, b"BOh1" + bytes(80), b"junk"):
                assert send(agent, data, wait=0.05) is None
            if c.list_faults(states=LIVE) == []:
                break
        gone = time.monotonic() - renewed_at
        assert c.list_faults(states=LIVE) == [], "replays kept the lease alive"
        assert gone <= ttl + 0.5, f"expired {gone:.2f}s after the last genuine renewal"
        assert c.get_fault(fault.id).end_reason == pb.END_REASON_LEASE_EXPIRED
    counts = datagrams(agent)
    assert counts["renewed"] == 1
    assert counts["replayed"] >= 1 and counts["forged"] >= 1 and counts["stale"] >= 1
    assert counts["malformed"] >= 2


def test_a_stopped_controller_loses_its_faults_within_the_ttl(agent: AgentProc) -> None:
    """`brownout inject` keeps its lease by datagram; SIGSTOP it: the agent
    reverts when the TTL runs out, within 100 ms."""
    ttl = 2.0
    cli = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "--agent", agent.address, "inject", "cpu",
         "--cores", "1", "--load", "5", "--duration", "60s", "--lease-ttl", f"{ttl:g}s"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        with agent.client() as c:
            assert wait_for(lambda: c.list_faults(states=LIVE), 20), "no fault injected"
            time.sleep(2 * ttl)  # held by datagrams, several TTLs
            assert c.list_faults(states=LIVE)
            cli.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()
            assert wait_for(lambda: not c.list_faults(states=LIVE), ttl + 2, interval=0.005)
            took = time.monotonic() - stopped
    finally:
        cli.send_signal(signal.SIGCONT)
        cli.kill()
        cli.wait()
    assert took <= ttl + 0.1, f"reverted {took:.3f}s after the controller stopped (TTL {ttl:g}s)"
    assert datagrams(agent).get("renewed", 0) >= 3


def test_a_lost_lease_watch_follows_the_stream_and_sees_the_end(agent: AgentProc) -> None:
    """A lease lost while kept by datagram (here released by someone else):
    its fault watch moves to WatchFaults for good and reports the fault's end,
    without reopening the stream over and over."""
    ttl = 1.5
    with Fleet(inventory.build(agents=[agent.address]), timeout=5) as fleet:
        lease_id, hold, watch, seen = held_and_watched(fleet, agent, "lost-holder", ttl)
        with agent.client() as c:
            fault = c.inject(lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)),
                             60)  # fmt: skip
            assert wait_for(lambda: watch.mode == "generation", 1.0)
            c.release_lease(lease_id)
            assert wait_for(hold.lost.is_set, 2 * ttl)
            assert hold.datagram is not None  # lost on datagrams
            assert wait_for(
                lambda: any(f.id == fault.id and f.state == pb.FAULT_STATE_REVERTED for f in seen),
                2.0,
            ), seen
            assert wait_for(lambda: watch.mode == "WatchFaults", 1.0)
            reconnects = watch.reconnects
            time.sleep(1.0)
            assert watch.reconnects <= reconnects + 1, watch.reconnects
            assert wait_for(lambda: streams(agent)["WatchFaults"] == 1, 2.0)


def test_a_wedged_fleet_loop_loses_its_leases(agent: AgentProc) -> None:
    """Datagrams are sent from the fleet's event loop: a loop stuck (here in a
    blocking sleep) renews nothing, and the agent reverts the fault by itself
    within the TTL."""
    ttl = 1.5
    with Fleet(inventory.build(agents=[agent.address]), timeout=5) as fleet:
        got = fleet.acquire_leases([agent.address], "wedged-holder", ttl)
        lease_id = got[agent.address].value.lease_id  # type: ignore[union-attr]
        with agent.client() as c:
            fault = c.inject(lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)),
                             60)  # fmt: skip
            time.sleep(ttl)  # renewed by datagram meanwhile
            assert fleet.keepers[agent.address].mode == "datagram"
            wedged = time.time()
            fleet.loop.loop.call_soon_threadsafe(time.sleep, 3 * ttl)
            assert wait_for(lambda: c.get_fault(fault.id).state not in LIVE, 3 * ttl)
            ended = c.get_fault(fault.id)
    assert ended.end_reason == pb.END_REASON_LEASE_EXPIRED
    took = ended.ended_at.ToNanoseconds() / 1e9 - wedged
    assert took <= ttl + 0.2, took


def test_unanswered_datagrams_move_the_lease_to_the_stream_and_back(
    agent: AgentProc, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Datagrams sent where nothing answers (a firewall on the path): within
    TTL/3 the hold keeps the lease over KeepLeases instead, and loses nothing.
    Once the path carries datagrams again, a probe finds it: the lease and its
    fault watch go back to datagrams and close their streams."""
    ttl = 1.5
    monkeypatch.setattr(lease_hold, "PROBE_S", (1.0, 2.0))
    with (
        UdpGate(("127.0.0.1", agent.heartbeat_port)) as gate,
        Fleet(inventory.build(agents=[agent.address]), timeout=5) as fleet,
    ):
        acquire = AsyncAgentClient.acquire_lease

        async def through_the_gate(c: AsyncAgentClient, holder: str, ttl: float) -> pb.Lease:
            lease = await acquire(c, holder, ttl)
            lease.heartbeat_port = gate.port
            return lease

        monkeypatch.setattr(AsyncAgentClient, "acquire_lease", through_the_gate)
        lease_id, hold, watch, seen = held_and_watched(fleet, agent, "fallback-holder", ttl)
        assert hold.datagram is not None
        with agent.client() as c:
            fault = c.inject(lease_id, pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5)),
                             60)  # fmt: skip
            assert wait_for(lambda: hold.mode == "KeepLeases", 3 * ttl)
            # The watch rode on the answers; with none coming, it follows the stream.
            assert wait_for(lambda: watch.mode == "WatchFaults", 1.0)
            # The mode is set as the watch opens its stream: the agent sees it a moment later.
            assert wait_for(lambda: streams(agent) == {"KeepLeases": 1, "WatchFaults": 1}, 2.0)
            time.sleep(2 * ttl)
            assert not hold.lost.is_set(), hold.lost_reason
            assert c.get_fault(fault.id).state == pb.FAULT_STATE_ACTIVE
            renewed = datagrams(agent).get("renewed", 0)

            gate.open = True
            assert wait_for(lambda: hold.mode == "datagram", 4.0)
            assert wait_for(lambda: watch.mode == "generation", 1.0)
            assert hold.returns == 1
            assert wait_for(lambda: streams(agent) == {"KeepLeases": 0, "WatchFaults": 0}, 2.0)
            time.sleep(2 * ttl)  # kept by datagrams alone
            assert datagrams(agent).get("renewed", 0) >= renewed + 3
            assert not hold.lost.is_set(), hold.lost_reason
            assert c.get_fault(fault.id).state == pb.FAULT_STATE_ACTIVE
            c.revert(fault.id)  # not the holder's call: its generation moves
            assert wait_for(lambda: any(f.state == pb.FAULT_STATE_REVERTED for f in seen), 2.0), (
                seen
            )
    methods = [e.get("method") for e in agent.log_events() if e.get("event") == "audit"]
    assert "KeepLeases" in methods
