"""Shaping faults and the state around them: the previous root qdisc comes
back exactly, unrestorable roots are refused unless replacing is asked for,
one fault holds an interface, kill -9 and restart leave nothing behind,
a vanished namespace is reported, netem is refused here naming the missing
kernel option, and bad input changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.nethosts import NetBed, details, net_bed, nsrun, qdisc_show, residue, run

pytestmark = pytest.mark.host

TBF = ["root", "handle", "5:", "tbf", "rate", "3mbit", "burst", "12k", "latency", "70ms"]


@pytest.fixture
def bed() -> Iterator[NetBed]:
    with net_bed() as t:
        yield t


def bandwidth(dev: str, filtered: bool = True, replace: bool = False) -> pb.FaultSpec:
    flt = pb.TrafficFilter(destinations=["10.231.1.0/24"]) if filtered else pb.TrafficFilter()
    return pb.FaultSpec(
        bandwidth=pb.BandwidthSpec(
            rate_bits_per_second=5_000_000,
            interface=dev,
            filter=flt,
            replace_existing_qdisc=replace,
        )
    )


def tc_detail(ns: str, dev: str) -> str:
    return nsrun(ns, "tc", "-d", "qdisc", "show", "dev", dev)


def lease(agent: AgentProc, ttl: float = 60) -> str:
    with agent.client() as c:
        return c.acquire_lease("test", ttl).lease_id


def test_previous_root_qdisc_is_restored_exactly(agent: AgentProc, bed: NetBed) -> None:
    dev = bed.a_to_b
    nsrun(bed.a, "tc", "qdisc", "add", "dev", dev, *TBF)
    before = tc_detail(bed.a, dev)
    with agent.client() as c:
        fault = c.inject(lease(agent), bandwidth(dev), 60, pb.Target(netns_name=bed.a))
        assert fault.applied["previous_qdisc"] == "tbf 5:"
        assert "htb" in qdisc_show(bed.a, dev)
        c.revert(fault.id)
    assert tc_detail(bed.a, dev) == before
    assert nsrun(bed.a, "tc", "filter", "show", "dev", dev) == ""


def test_unrestorable_root_is_refused_unless_replacing(agent: AgentProc, bed: NetBed) -> None:
    dev = bed.a_to_b
    nsrun(bed.a, "tc", "qdisc", "add", "dev", dev, "root", "handle", "7:", "htb", "default", "1")
    nsrun(bed.a, "tc", "class", "add", "dev", dev, "parent", "7:", "classid", "7:1", "htb",
          "rate", "1gbit")  # fmt: skip
    before = tc_detail(bed.a, dev)
    lease_id = lease(agent)
    with agent.client() as c:
        with pytest.raises(grpc.RpcError) as err:
            c.inject(lease_id, bandwidth(dev), 60, pb.Target(netns_name=bed.a))
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "htb 7:" in details(err.value)
        assert "replace_existing_qdisc" in details(err.value)
        assert tc_detail(bed.a, dev) == before
        fault = c.inject(lease_id, bandwidth(dev, replace=True), 60, pb.Target(netns_name=bed.a))
        assert "not restored" in fault.applied["previous_qdisc"]
        c.revert(fault.id)
    assert "noqueue" in qdisc_show(bed.a, dev)


def test_second_shaping_fault_on_an_interface_names_the_holder(
    agent: AgentProc, bed: NetBed
) -> None:
    lease_id = lease(agent)
    target = pb.Target(netns_name=bed.a)
    with agent.client() as c:
        first = c.inject(lease_id, bandwidth(bed.a_to_b), 60, target)
        with pytest.raises(grpc.RpcError) as err:
            c.inject(lease_id, bandwidth(bed.a_to_b, filtered=False), 60, target)
        assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS
        assert first.id in details(err.value)
        other = c.inject(lease_id, bandwidth(bed.a_to_c), 60, target)  # another interface: fine
        c.revert(first.id)
        again = c.inject(lease_id, bandwidth(bed.a_to_b, filtered=False), 60, target)
        c.revert(again.id)
        c.revert(other.id)
    for dev in (bed.a_to_b, bed.a_to_c):
        assert "noqueue" in qdisc_show(bed.a, dev)


def test_kill_9_then_restart_reverts_everything(
    tmp_path: Path, agent_factory: list[AgentProc], bed: NetBed
) -> None:
    dev = bed.a_to_b
    nsrun(bed.a, "tc", "qdisc", "add", "dev", dev, *TBF)
    before = residue(bed.a, dev)
    before_detail = tc_detail(bed.a, dev)
    agent = AgentProc(tmp_path / "state").start()
    agent_factory.append(agent)
    target = pb.Target(netns_name=bed.a)
    with agent.client() as c:
        lease_id = c.acquire_lease("test", 60).lease_id
        shaping = c.inject(lease_id, bandwidth(dev), 60, target)
        cut = c.inject(
            lease_id, pb.FaultSpec(partition=pb.PartitionSpec(peers=[bed.b.v4])), 60, target
        )
    during = residue(bed.a, dev)
    assert "htb" in during["qdisc"] and "u32" in during["filters"] and "brownout" in during["nft"]
    agent.kill()
    assert residue(bed.a, dev) == during  # nothing reverted the faults but the agent

    restarted = AgentProc(tmp_path / "state").start()
    agent_factory.append(restarted)
    assert residue(bed.a, dev) == before
    assert tc_detail(bed.a, dev) == before_detail
    assert restarted.journal_files() == []
    with restarted.client() as c:
        ended = {f.id: f for f in c.list_faults()}
    for fault in (shaping, cut):
        assert ended[fault.id].state == pb.FAULT_STATE_REVERTED
        assert ended[fault.id].end_reason == pb.END_REASON_AGENT_RESTART


def test_restart_reports_a_namespace_that_is_gone(
    tmp_path: Path, agent_factory: list[AgentProc], bed: NetBed
) -> None:
    agent = AgentProc(tmp_path / "state").start()
    agent_factory.append(agent)
    with agent.client() as c:
        lease_id = c.acquire_lease("test", 60).lease_id
        fault = c.inject(lease_id, bandwidth(bed.a_to_b), 60, pb.Target(netns_name=bed.a))
    agent.kill()
    run("ip", "netns", "del", bed.a)
    restarted = AgentProc(tmp_path / "state").start()
    agent_factory.append(restarted)
    with restarted.client() as c:
        ended = c.get_fault(fault.id)
    assert ended.state == pb.FAULT_STATE_REVERTED
    assert ended.end_reason == pb.END_REASON_TARGET_GONE
    assert f"netns {bed.a}" in ended.error and "gone" in ended.error
    assert restarted.journal_files() == []


def test_netem_is_unavailable_on_this_kernel_and_probing_touched_nothing(
    agent_factory: list[AgentProc], tmp_path: Path
) -> None:
    namespaces = run("ip", "netns", "list")
    host_qdiscs = run("tc", "qdisc", "show")
    agent = AgentProc(tmp_path / "state").start()
    agent_factory.append(agent)
    assert run("ip", "netns", "list") == namespaces
    assert run("tc", "qdisc", "show") == host_qdiscs
    with agent.client() as c:
        caps = {cap.kind: cap for cap in c.info().capabilities}
        netem = caps[pb.FAULT_KIND_NETEM]
        assert not netem.available and "CONFIG_NET_SCH_NETEM" in netem.reason
        assert caps[pb.FAULT_KIND_BANDWIDTH].available, caps[pb.FAULT_KIND_BANDWIDTH].reason
        assert caps[pb.FAULT_KIND_PARTITION].available, caps[pb.FAULT_KIND_PARTITION].reason
        spec = pb.NetemSpec(loss_percent=1)
        with pytest.raises(grpc.RpcError) as err:
            c.inject(c.acquire_lease("test", 30).lease_id, pb.FaultSpec(netem=spec), 30)
        assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "CONFIG_NET_SCH_NETEM" in details(err.value)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"interface": "bo-nosuchif"}, "bandwidth.interface"),
        (
            {"filter": pb.TrafficFilter(destinations=["10.1.2.0/99"])},
            "bandwidth.filter.destinations[0]",
        ),
        (
            {"filter": pb.TrafficFilter(destination_ports=[pb.PortRange(first=0)])},
            "bandwidth.filter.destination_ports[0].first",
        ),
        (
            {"filter": pb.TrafficFilter(source_ports=[pb.PortRange(first=65536)])},
            "bandwidth.filter.source_ports[0].first",
        ),
        ({"target": pb.Target(netns_name="bo-missing")}, "target.netns_name"),
    ],
)
def test_bad_shaping_input_is_refused_and_nothing_applied(
    agent: AgentProc, bed: NetBed, change: dict[str, object], field: str
) -> None:
    dev = bed.a_to_b
    target = change.pop("target", pb.Target(netns_name=bed.a))
    assert isinstance(target, pb.Target)
    spec = pb.BandwidthSpec(rate_bits_per_second=5_000_000, interface=dev)
    for key, value in change.items():
        if isinstance(value, pb.TrafficFilter):
            spec.filter.CopyFrom(value)
        else:
            setattr(spec, key, value)
    before = residue(bed.a, dev)
    with agent.client() as c:
        with pytest.raises(grpc.RpcError) as err:
            c.inject(lease(agent), pb.FaultSpec(bandwidth=spec), 30, target)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert details(err.value).startswith(field + ":"), details(err.value)
        assert c.list_faults() == []
    assert residue(bed.a, dev) == before


def test_lease_expiry_reverts_shaping(agent: AgentProc, bed: NetBed) -> None:
    with agent.client() as c:
        lease_id = c.acquire_lease("test", 1.0).lease_id
        c.inject(lease_id, bandwidth(bed.a_to_b), 60, pb.Target(netns_name=bed.a))
    assert "htb" in qdisc_show(bed.a, bed.a_to_b)
    assert wait_for(lambda: "noqueue" in qdisc_show(bed.a, bed.a_to_b), 5.0, interval=0.1)
