"""Partitions on this kernel, between namespace test hosts: real TCP, UDP and
ICMP fail silently in the asked direction only, others keep working, and
revert restores connectivity and leaves no nftables residue."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.nethosts import (
    Capture,
    NetBed,
    Server,
    details,
    net_bed,
    nft_tables,
    nsrun,
    ping,
    run,
    tcp_connect,
    udp_exchange,
)

pytestmark = pytest.mark.host

OPEN, OTHER, CLOSED = 5001, 5002, 5999


@pytest.fixture
def bed() -> Iterator[NetBed]:
    with net_bed() as t:
        for host in (t.b.ns, t.c.ns, t.a):
            t.serve(Server(host, "tcp", OPEN))
            t.serve(Server(host, "tcp", OTHER))
            t.serve(Server(host, "udp", OPEN))
        yield t


def partition(peers: list[str], **kw: object) -> pb.FaultSpec:
    return pb.FaultSpec(partition=pb.PartitionSpec(peers=peers, **kw))  # type: ignore[arg-type]


def inject(agent: AgentProc, spec: pb.FaultSpec, ns: str) -> tuple[pb.Fault, str]:
    with agent.client() as c:
        lease = c.acquire_lease("test", 60)
        fault = c.inject(lease.lease_id, spec, 60, pb.Target(netns_name=ns))
    assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
    return fault, lease.lease_id


def revert(agent: AgentProc, fault: pb.Fault) -> None:
    with agent.client() as c:
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED


def test_partition_both_ways_is_silent_and_reverts(agent: AgentProc, bed: NetBed) -> None:
    b, c = bed.b, bed.c
    # Baseline: everything answers, and closed ports answer loudly (RST / ICMP).
    assert tcp_connect(bed.a, b.v4, OPEN) == "ok"
    assert tcp_connect(b.ns, bed.a_b.v4, CLOSED) == "refused"
    assert udp_exchange(b.ns, bed.a_b.v4, CLOSED) == "refused"
    assert ping(bed.a, b.v4) == 3

    fault, _ = inject(agent, partition([b.v4, b.v6]), bed.a)
    assert fault.applied["nft_table"].startswith("inet brownout_")
    with Capture(b.ns, b.ifname) as cap:
        for addr, mine in ((b.v4, bed.a_b.v4), (b.v6, bed.a_b.v6)):
            assert tcp_connect(bed.a, addr, OPEN) == "timeout"
            assert tcp_connect(b.ns, mine, OPEN) == "timeout"
            assert tcp_connect(b.ns, mine, CLOSED) == "timeout"  # no RST from A
            assert udp_exchange(b.ns, mine, OPEN) == "timeout"
            assert udp_exchange(b.ns, mine, CLOSED) == "timeout"  # no port unreachable
            assert ping(b.ns, mine, 2) == 0
        # A's own UDP to B never reaches the wire (the kernel refuses the send).
        assert udp_exchange(bed.a, b.v4, OPEN) in ("timeout", "error:EPERM")
    assert cap.rst == 0 and cap.icmp_errors == 0, (cap.rst, cap.icmp_errors)
    # Another peer is untouched.
    assert tcp_connect(bed.a, c.v4, OPEN) == "ok"
    assert udp_exchange(bed.a, c.v6, OPEN) == "reply"
    assert ping(bed.a, c.v4) == 3

    revert(agent, fault)
    assert "brownout" not in nft_tables(bed.a)
    assert tcp_connect(bed.a, b.v4, OPEN) == "ok"
    assert ping(bed.a, b.v4) == 3
    # Neighbour discovery was cut too (as in a real partition): IPv6 comes
    # back once the neighbour entry is resolved again.
    assert wait_for(lambda: tcp_connect(b.ns, bed.a_b.v6, OPEN) == "ok", 10.0, interval=0.5)


@pytest.mark.parametrize("direction", ["egress", "ingress"])
def test_partition_in_one_direction_only(agent: AgentProc, bed: NetBed, direction: str) -> None:
    b = bed.b
    a_server = next(s for s in bed.servers if s.ns == bed.a and s.proto == "udp")
    b_server = next(s for s in bed.servers if s.ns == b.ns and s.proto == "udp")
    value = pb.DIRECTION_EGRESS if direction == "egress" else pb.DIRECTION_INGRESS
    fault, _ = inject(agent, partition([b.v4], direction=value), bed.a)
    a_got, b_got = len(a_server.received), len(b_server.received)
    # A -> B: the request reaches B only when egress is open; its reply never
    # comes back either way (one direction or the other is cut).
    assert udp_exchange(bed.a, b.v4, OPEN, payload=b"a-to-b") in ("timeout", "error:EPERM")
    # B -> A likewise, mirrored.
    assert udp_exchange(b.ns, bed.a_b.v4, OPEN, payload=b"b-to-a") == "timeout"
    reached_b = b"a-to-b" in b_server.received[b_got:]
    reached_a = b"b-to-a" in a_server.received[a_got:]
    if direction == "egress":
        assert (reached_b, reached_a) == (False, True)
    else:
        assert (reached_b, reached_a) == (True, False)
    revert(agent, fault)
    assert udp_exchange(bed.a, b.v4, OPEN) == "reply"


def test_ports_and_exclusions_are_respected(agent: AgentProc, bed: NetBed) -> None:
    b, c = bed.b, bed.c
    by_port, _ = inject(
        agent, partition([b.v4], ports=[pb.PortRange(first=OPEN)], protocol=pb.PROTOCOL_TCP), bed.a
    )
    assert tcp_connect(bed.a, b.v4, OPEN) == "timeout"
    assert tcp_connect(bed.a, b.v4, OTHER) == "ok"
    assert udp_exchange(bed.a, b.v4, OPEN) == "reply"  # tcp only
    # A second partition on the whole /16 except C; reverting it leaves the first.
    wide, _ = inject(agent, partition(["10.231.0.0/16"], exclude=[c.v4]), bed.a)
    assert tcp_connect(bed.a, b.v4, OTHER) == "timeout"
    assert tcp_connect(bed.a, c.v4, OPEN) == "ok"
    revert(agent, wide)
    rules = nsrun(bed.a, "nft", "-a", "list", "ruleset")
    assert by_port.id in rules and wide.id not in rules
    assert tcp_connect(bed.a, b.v4, OTHER) == "ok"
    assert tcp_connect(bed.a, b.v4, OPEN) == "timeout"
    revert(agent, by_port)
    assert "brownout" not in nft_tables(bed.a)
    assert tcp_connect(bed.a, b.v4, OPEN) == "ok"


def test_host_namespace_partition_keeps_the_controller_and_listener(agent: AgentProc) -> None:
    # A documentation-range peer that no traffic goes to: only the rules are inspected.
    fault, lease = inject_host(agent, partition(["203.0.113.77/32"]))
    try:
        table = fault.applied["nft_table"].split()[-1]
        rules = nsrun_host("nft", "list", "table", "inet", table)
        assert 'iif "lo" accept' in rules and 'oif "lo" accept' in rules
        assert f"tcp dport {agent.port} accept" in rules
        assert f"tcp sport {agent.port} accept" in rules
        assert "ip saddr 127.0.0.1 accept" in rules  # the lease holder's peer
        # Lease heartbeats and their answers (invariant 6 covers both channels).
        assert agent.heartbeat_port
        assert f"udp dport {agent.heartbeat_port} accept" in rules
        assert f"udp sport {agent.heartbeat_port} accept" in rules
        assert f"udp port {agent.heartbeat_port}" in fault.applied["excluded"]
        assert str(agent.port) in fault.applied["excluded"]
        with agent.client() as c:
            c.renew_lease(lease)  # the controller still reaches the agent
    finally:
        revert(agent, fault)
    assert table not in nsrun_host("nft", "list", "tables")


def inject_host(agent: AgentProc, spec: pb.FaultSpec) -> tuple[pb.Fault, str]:
    with agent.client() as c:
        lease = c.acquire_lease("test", 60)
        fault = c.inject(lease.lease_id, spec, 60)
    return fault, lease.lease_id


def nsrun_host(*argv: str) -> str:
    return run(*argv)


@pytest.mark.parametrize(
    ("spec", "target", "field"),
    [
        (partition(["10.0.0.0/33"]), None, "partition.peers[0]"),
        (partition(["10.0.0.1"], ports=[pb.PortRange(first=0)]), None, "partition.ports[0].first"),
        (
            partition(["10.0.0.1"], ports=[pb.PortRange(first=70000)]),
            None,
            "partition.ports[0].first",
        ),
        (partition(["10.0.0.1"]), pb.Target(netns_name="bo-no-such-ns"), "target.netns_name"),
        (partition(["10.0.0.1"]), pb.Target(netns_path="/tmp"), "target.netns_path"),
        (partition(["10.0.0.1"]), pb.Target(pid=2**22 + 7), "target.pid"),
    ],
)
def test_bad_partition_input_is_refused_and_nothing_applied(
    agent: AgentProc, spec: pb.FaultSpec, target: pb.Target | None, field: str
) -> None:
    before = nsrun_host("nft", "list", "tables")
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        with pytest.raises(grpc.RpcError) as err:
            c.inject(lease.lease_id, spec, 30, target)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(err.value).startswith(field + ":"), details(err.value)
        assert list(c.list_faults()) == []
    assert nsrun_host("nft", "list", "tables") == before
