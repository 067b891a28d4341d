"""Traffic filters: validation messages, and u32 matches checked against a
reference predicate by evaluating them on synthetic packet headers."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.errors import InvalidArgument
from agent.faults.network.traffic import (
    Filter,
    PortSpan,
    Proto,
    U32Match,
    check_size,
    parse_filter,
    peer_addresses,
    port_blocks,
    protect_matches,
    u32_matches,
)
from agent.kernel.net.tcwire import ETH_P_IP, ETH_P_IPV6
from brownout.v1 import agent_pb2 as pb

pytestmark = pytest.mark.unit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


# ----------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (pb.TrafficFilter(destinations=["10.0.0.0/8", "10.0.0.300"]), "f.destinations[1]"),
        (pb.TrafficFilter(destinations=["fd00::/200"]), "f.destinations[0]"),
        (pb.TrafficFilter(exclude=["nonsense"]), "f.exclude[0]"),
        (
            pb.TrafficFilter(destination_ports=[pb.PortRange(first=0)]),
            "f.destination_ports[0].first",
        ),
        (
            pb.TrafficFilter(source_ports=[pb.PortRange(first=80), pb.PortRange(first=65536)]),
            "f.source_ports[1].first",
        ),
        (
            pb.TrafficFilter(destination_ports=[pb.PortRange(first=90, last=80)]),
            "f.destination_ports[0].last",
        ),
        (
            pb.TrafficFilter(destination_ports=[pb.PortRange(first=80, last=70000)]),
            "f.destination_ports[0].last",
        ),
        (
            pb.TrafficFilter(protocol=pb.PROTOCOL_ICMP, destination_ports=[pb.PortRange(first=1)]),
            "f.protocol",
        ),
    ],
)
def test_bad_filters_name_the_field(spec: pb.TrafficFilter, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_filter("f", spec)
    assert err.value.field == field
    assert str(err.value).startswith(field + ":")


def test_filter_normalises_cidrs_and_ports() -> None:
    flt = parse_filter(
        "f",
        pb.TrafficFilter(
            destinations=["10.1.2.3/24", "2001:db8::1"],
            destination_ports=[pb.PortRange(first=80), pb.PortRange(first=8000, last=8100)],
            protocol=pb.PROTOCOL_TCP,
        ),
    )
    assert [str(n) for n in flt.destinations] == ["10.1.2.0/24", "2001:db8::1/128"]
    assert flt.destination_ports == (PortSpan(80, 80), PortSpan(8000, 8100))
    assert not flt.matches_all
    assert parse_filter("f", pb.TrafficFilter()).matches_all


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5555", ["127.0.0.1"]),
        ("ipv6:[::1]:5555", ["::1"]),
        ("ipv6:%5B::1%5D:5555", ["::1"]),
        ("ipv6:[::ffff:10.0.0.5]:1", ["::ffff:a00:5", "10.0.0.5"]),
        ("unix:/run/brownout.sock", []),
        ("", []),
    ],
)
def test_peer_addresses(peer: str, expected: list[str]) -> None:
    assert [str(a) for a in peer_addresses(peer)] == expected


# ------------------------------------------------------------ port blocks


@given(st.integers(1, 65535), st.integers(0, 65535))
def test_port_blocks_cover_the_range_exactly(first: int, length: int) -> None:
    last = min(65535, first + length)
    covered: set[int] = set()
    for value, mask in port_blocks(PortSpan(first, last)):
        assert value & ~mask & 0xFFFF == 0
        size = (~mask & 0xFFFF) + 1
        block = set(range(value, value + size))
        assert not covered & block
        covered |= block
    assert covered == set(range(first, last + 1))


# ------------------------------------------------------ u32 against a model


def packet(src: Address, dst: Address, proto: int, sport: int, dport: int, ihl: int = 5) -> bytes:
    if isinstance(dst, ipaddress.IPv4Address):
        header = struct.pack(
            ">BBHHHBBH4s4s", 0x40 | ihl, 0, 40, 1, 0, 64, proto, 0, src.packed, dst.packed
        )
        header += b"\0" * (4 * ihl - 20)
    else:
        header = struct.pack(">IHBB16s16s", 6 << 28, 20, proto, 64, src.packed, dst.packed)
    return header + struct.pack(">HH", sport, dport) + b"\0" * 16


def classify(matches: list[U32Match], eth: int, pkt: bytes) -> str:
    """The first matching filter's verdict: 'exclude', 'shape', or 'none'."""
    order = sorted((m for m in matches if m.eth_protocol == eth), key=lambda m: not m.exclude)
    for m in order:
        if all(struct.unpack_from(">I", pkt, k.offset)[0] & k.mask == k.value for k in m.keys):
            return "exclude" if m.exclude else "shape"
    return "none"


def expected(flt: Filter, dst: Address, proto: int, sport: int, dport: int) -> bool:
    if any(dst in n for n in flt.exclude):
        return False
    if flt.destinations and not any(dst in n for n in flt.destinations):
        return False
    has_ports = bool(flt.source_ports or flt.destination_ports)
    if (flt.protocol == Proto.TCP and proto != 6) or (flt.protocol == Proto.UDP and proto != 17):
        return False
    if flt.protocol == Proto.ICMP and proto != (1 if dst.version == 4 else 58):
        return False
    if has_ports and proto not in (6, 17):
        return False
    if flt.source_ports and not any(s.first <= sport <= s.last for s in flt.source_ports):
        return False
    return not flt.destination_ports or any(
        s.first <= dport <= s.last for s in flt.destination_ports
    )


NETS4 = ["10.1.0.0/16", "10.1.2.0/24", "10.9.9.9/32", "0.0.0.0/0"]
NETS6 = ["fd00:1::/64", "fd00:1::5/128", "::/0"]
ADDRS = [
    ipaddress.ip_address(a)
    for a in ["10.1.2.3", "10.1.9.9", "10.9.9.9", "192.0.2.1", "fd00:1::5", "fd00:1::6", "fd99::1"]
]
spans = st.builds(
    lambda a, n: PortSpan(a, min(65535, a + n)), st.integers(1, 65535), st.integers(0, 3000)
)
filters = st.builds(
    Filter,
    destinations=st.lists(st.sampled_from(NETS4 + NETS6), max_size=2).map(
        lambda xs: tuple(ipaddress.ip_network(x) for x in xs)
    ),
    source_ports=st.lists(spans, max_size=1).map(tuple),
    destination_ports=st.lists(spans, max_size=2).map(tuple),
    protocol=st.sampled_from(list(Proto)),
    exclude=st.lists(st.sampled_from(NETS4[1:3] + NETS6[1:2]), max_size=1).map(
        lambda xs: tuple(ipaddress.ip_network(x) for x in xs)
    ),
)


@settings(max_examples=300, deadline=None)
@given(
    flt=filters,
    dst=st.sampled_from(ADDRS),
    proto=st.sampled_from([1, 6, 17, 58, 47]),
    sport=st.integers(1, 65535),
    dport=st.integers(1, 65535),
)
def test_u32_matches_agree_with_the_filter(
    flt: Filter, dst: Address, proto: int, sport: int, dport: int
) -> None:
    if flt.protocol == Proto.ICMP and (flt.source_ports or flt.destination_ports):
        return  # rejected by validation
    matches = u32_matches(flt)
    src: Address = (
        ipaddress.ip_address("10.200.0.1") if dst.version == 4 else ipaddress.ip_address("fd77::1")
    )
    eth = ETH_P_IP if dst.version == 4 else ETH_P_IPV6
    got = classify(matches, eth, packet(src, dst, proto, sport, dport))
    assert (got == "shape") == expected(flt, dst, proto, sport, dport), matches


def test_ipv4_options_are_never_matched_by_port_filters() -> None:
    flt = Filter(destination_ports=(PortSpan(80, 80),), protocol=Proto.TCP)
    src, dst = ipaddress.ip_address("10.0.0.1"), ipaddress.ip_address("10.0.0.2")
    assert classify(u32_matches(flt), ETH_P_IP, packet(src, dst, 6, 1234, 80)) == "shape"
    assert classify(u32_matches(flt), ETH_P_IP, packet(src, dst, 6, 1234, 80, ihl=6)) == "none"


def test_protected_traffic_is_excluded_first() -> None:
    peer = ipaddress.ip_address("10.1.2.3")
    matches = u32_matches(Filter(), protect_matches([peer], [7070]))
    src = ipaddress.ip_address("10.200.0.1")
    assert classify(matches, ETH_P_IP, packet(src, peer, 6, 40000, 443)) == "exclude"
    other = ipaddress.ip_address("10.1.9.9")
    assert classify(matches, ETH_P_IP, packet(src, other, 6, 7070, 5555)) == "exclude"
    assert classify(matches, ETH_P_IP, packet(src, other, 6, 7071, 5555)) == "shape"
    six = ipaddress.ip_address("fd00:1::6")
    assert classify(matches, ETH_P_IPV6, packet(six, six, 6, 7070, 1)) == "exclude"


def test_too_many_matches_is_refused_naming_the_filter() -> None:
    flt = Filter(
        destinations=tuple(ipaddress.ip_network(f"10.0.{i}.0/24") for i in range(20)),
        destination_ports=(PortSpan(1, 1000),),
    )
    with pytest.raises(InvalidArgument) as err:
        check_size("bandwidth.filter", u32_matches(flt))
    assert err.value.field == "bandwidth.filter"


def test_the_heartbeat_port_is_excluded_on_udp_only() -> None:
    """Lease heartbeat answers leave from the agent's UDP port: never shaped;
    TCP from that port number, or UDP from another, is."""
    peer = ipaddress.ip_address("10.1.2.3")
    matches = u32_matches(Filter(), protect_matches([peer], [7070], [7071]))
    src, other = ipaddress.ip_address("10.200.0.1"), ipaddress.ip_address("10.1.9.9")
    assert classify(matches, ETH_P_IP, packet(src, other, 17, 7071, 5555)) == "exclude"
    assert classify(matches, ETH_P_IP, packet(src, other, 6, 7071, 5555)) == "shape"
    assert classify(matches, ETH_P_IP, packet(src, other, 17, 7072, 5555)) == "shape"
    six = ipaddress.ip_address("fd00:1::6")
    assert classify(matches, ETH_P_IPV6, packet(six, six, 17, 7071, 1)) == "exclude"
