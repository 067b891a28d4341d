"""Bandwidth limits on this kernel, measured with real TCP transfers between
namespace test hosts: within 10 % of the rate, and unmatched traffic free."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc
from tests.host.nethosts import NetBed, net_bed, qdisc_show, throughput

pytestmark = pytest.mark.host

RATE = 20_000_000


@pytest.fixture
def bed() -> Iterator[NetBed]:
    with net_bed() as t:
        yield t


def inject(agent: AgentProc, spec: pb.BandwidthSpec, ns: str) -> pb.Fault:
    with agent.client() as c:
        lease = c.acquire_lease("test", 60)
        fault = c.inject(lease.lease_id, pb.FaultSpec(bandwidth=spec), 60, pb.Target(netns_name=ns))
    assert fault.state == pb.FAULT_STATE_ACTIVE, fault.error
    return fault


def within(measured: float, rate: float, tolerance: float = 0.10) -> bool:
    return abs(measured - rate) <= tolerance * rate


def test_whole_interface_rate_is_measured_within_10_percent(agent: AgentProc, bed: NetBed) -> None:
    dev = bed.a_to_b
    before = qdisc_show(bed.a, dev)
    free = throughput(bed.a, bed.b.ns, bed.b.v4, 5201, seconds=2.0)
    fault = inject(agent, pb.BandwidthSpec(rate_bits_per_second=RATE, interface=dev), bed.a)
    assert fault.applied["qdisc"].startswith("tbf ")
    limited = throughput(bed.a, bed.b.ns, bed.b.v4, 5202)
    other = throughput(bed.a, bed.c.ns, bed.c.v4, 5203, seconds=2.0)
    print(f"free {free / 1e6:.1f} Mbit/s, limited {limited / 1e6:.2f} Mbit/s (rate 20),"
          f" other interface {other / 1e6:.1f} Mbit/s")  # fmt: skip
    assert within(limited, RATE), f"measured {limited / 1e6:.2f} Mbit/s for a 20 Mbit/s limit"
    assert free > 10 * RATE and other > 10 * RATE
    with agent.client() as c:
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
    assert qdisc_show(bed.a, dev) == before
    assert throughput(bed.a, bed.b.ns, bed.b.v4, 5204, seconds=2.0) > 10 * RATE


def test_filtered_rate_leaves_unmatched_traffic_alone(agent: AgentProc, bed: NetBed) -> None:
    spec = pb.BandwidthSpec(
        rate_bits_per_second=RATE,
        interface=bed.a_to_b,
        filter=pb.TrafficFilter(
            destinations=[bed.b.v4, bed.b.v6],
            destination_ports=[pb.PortRange(first=5301, last=5301)],
            protocol=pb.PROTOCOL_TCP,
        ),
    )
    fault = inject(agent, spec, bed.a)
    assert fault.applied["qdisc"].startswith("htb ")
    assert fault.applied["u32_filters"] == "2"  # one IPv4, one IPv6 match
    matched = throughput(bed.a, bed.b.ns, bed.b.v4, 5301)
    matched6 = throughput(bed.a, bed.b.ns, bed.b.v6, 5301, seconds=3.0)
    unmatched = throughput(bed.a, bed.b.ns, bed.b.v4, 5302, seconds=2.0)
    print(f"matched {matched / 1e6:.2f} / {matched6 / 1e6:.2f} Mbit/s (rate 20),"
          f" unmatched {unmatched / 1e6:.1f} Mbit/s")  # fmt: skip
    assert within(matched, RATE), f"measured {matched / 1e6:.2f} Mbit/s"
    assert within(matched6, RATE), f"measured {matched6 / 1e6:.2f} Mbit/s over IPv6"
    assert unmatched > 10 * RATE
    with agent.client() as c:
        assert c.revert(fault.id).state == pb.FAULT_STATE_REVERTED
    assert "noqueue" in qdisc_show(bed.a, bed.a_to_b)
