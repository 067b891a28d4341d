"""KeepLeases on a real agent: heartbeats renew, an open but silent stream
does not, a broken stream reverts nothing before the TTL, and bad heartbeats
get INVALID_ARGUMENT with nothing changed."""

from __future__ import annotations

import time

import grpc
import pytest

from brownout import features
from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.leasestream import Stream
from tests.processes import all_gone

pytestmark = pytest.mark.host

CPU = pb.FaultSpec(cpu=pb.CpuSpec(cores=1, load_percent=5))


def pids(fault: pb.Fault) -> list[int]:
    return [int(p) for p in fault.applied["worker_pids"].split(",")]


def test_getinfo_lists_keep_leases(agent: AgentProc) -> None:
    with agent.client() as c:
        assert features.KEEP_LEASES in c.info().features


def test_heartbeats_keep_a_fault_past_its_ttl_and_answer_each_lease(agent: AgentProc) -> None:
    ttl = 1.0
    with agent.client() as c:
        a, b = c.acquire_lease("test", ttl), c.acquire_lease("test", ttl)
        fault = c.inject(a.lease_id, CPU, 60)
        s = Stream(c)
        deadline = time.monotonic() + 3 * ttl
        while time.monotonic() < deadline:
            reply = s.send(a.lease_id, b.lease_id, "lease-unknown")
            assert [x.lease_id for x in reply.leases] == [a.lease_id, b.lease_id, "lease-unknown"]
            assert [x.live for x in reply.leases] == [True, True, False]
            assert reply.leases[0].remaining.ToNanoseconds() / 1e9 == pytest.approx(ttl, abs=0.1)
            assert "not found or expired" in reply.leases[2].reason
            time.sleep(ttl / 3)
        assert c.get_fault(fault.id).state == pb.FAULT_STATE_ACTIVE
        assert not all_gone(pids(fault))
        s.close()
        assert list(s.call) == []  # a clean end: the agent ends the stream OK
        assert s.call.code() == grpc.StatusCode.OK
        c.release_lease(a.lease_id)
        c.release_lease(b.lease_id)
    ends = [e for e in agent.log_events() if e.get("method") == "KeepLeases"]
    assert [e["detail"] for e in ends if e["result"] == "OK"] == ["stream opened", "stream ended"]
    assert ends[-1]["lease_ids"] == sorted([a.lease_id, b.lease_id])
    assert any(e["result"] == "NOT_FOUND" and e["lease_id"] == "lease-unknown" for e in ends)


def test_an_open_stream_without_heartbeats_loses_the_lease_at_its_ttl(agent: AgentProc) -> None:
    """A wedged holder keeps its connection and stream, and sends nothing."""
    ttl = 1.5
    with agent.client() as c:
        lease = c.acquire_lease("test", ttl)
        fault = c.inject(lease.lease_id, CPU, 60)
        s = Stream(c)
        assert s.send(lease.lease_id).leases[0].live
        renewed = time.monotonic()
        assert wait_for(lambda: all_gone(pids(fault)), ttl + 1.0)
        took = time.monotonic() - renewed
        assert ttl - 0.1 <= took <= ttl + 0.5, took
        after = c.get_fault(fault.id)
        assert after.end_reason == pb.END_REASON_LEASE_EXPIRED
        # The same stream, still open, now hears that the lease is gone.
        state = s.send(lease.lease_id).leases[0]
        assert not state.live and "expired" in state.reason
        s.close()


def test_a_broken_stream_reverts_nothing_and_a_reconnect_keeps_the_fault(
    agent: AgentProc,
) -> None:
    ttl = 2.0
    with agent.client() as c:
        lease = c.acquire_lease("test", ttl)
        fault = c.inject(lease.lease_id, CPU, 60)
        first = Stream(c)
        first.send(lease.lease_id)
        first.cancel()
        time.sleep(ttl * 0.6)
        assert c.get_fault(fault.id).state == pb.FAULT_STATE_ACTIVE
        second = Stream(c)
        assert second.send(lease.lease_id).leases[0].live
        renewed = time.monotonic()
        time.sleep(ttl * 0.6)  # past the first heartbeat's deadline
        assert c.get_fault(fault.id).state == pb.FAULT_STATE_ACTIVE
        second.cancel()
        # Broken again, and nobody reconnects: the TTL, and only it, ends the fault.
        assert wait_for(lambda: all_gone(pids(fault)), ttl + 1.0)
        assert time.monotonic() - renewed >= ttl - 0.1
        assert c.get_fault(fault.id).end_reason == pb.END_REASON_LEASE_EXPIRED


@pytest.mark.parametrize(
    ("lease_ids", "message"),
    [
        ([f"lease-{i}" for i in range(64)], "lease_ids: at most 64 leases per heartbeat, got 65"),
        (["lease-ok", ""], "lease_ids[2]: must be 1-128 characters"),
        (["x" * 129], "lease_ids[1]: must be 1-128 characters"),
    ],
)
def test_bad_heartbeats_are_refused_and_renew_nothing(
    agent: AgentProc, lease_ids: list[str], message: str
) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 1.0)
        s = Stream(c)
        with pytest.raises(grpc.RpcError) as err:
            s.send(lease.lease_id, *lease_ids)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert err.value.details() == message
        time.sleep(1.2)
        with pytest.raises(grpc.RpcError) as gone:
            c.renew_lease(lease.lease_id)
        assert gone.value.code() == grpc.StatusCode.NOT_FOUND
        assert c.info().version  # still serving


def test_streams_past_the_limit_are_refused_with_resource_exhausted(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        open_streams = [Stream(c) for _ in range(8)]
        for s in open_streams:
            assert s.send(lease.lease_id).leases[0].live
        extra = Stream(c)
        with pytest.raises(grpc.RpcError) as err:
            extra.send(lease.lease_id)
        assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "at most 8 KeepLeases streams" in (err.value.details() or "")
        open_streams[0].close()
        assert list(open_streams[0].call) == []
        again = Stream(c)
        assert again.send(lease.lease_id).leases[0].live  # a slot is free again
        for s in [*open_streams[1:], again]:
            s.close()
        c.release_lease(lease.lease_id)
