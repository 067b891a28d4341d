"""Netem, bandwidth and partition specs: validation, wire encodings, nft rules, CLI."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import pytest
from google.protobuf.duration_pb2 import Duration

from agent.core.errors import FailedPrecondition, InvalidArgument
from agent.faults.network.bandwidth import DEFAULT_QUEUE_PACKETS, GSO_PACKET_BYTES, parse_bandwidth
from agent.faults.network.netem import load_distribution, parse_netem
from agent.faults.network.partition import PartitionPlan, build_messages, parse_partition
from agent.faults.network.protect import Protected
from agent.faults.network.traffic import PortSpan, Proto
from agent.kernel.net import tcwire
from agent.kernel.net.netns import NetnsRef
from brownout.v1 import agent_pb2 as pb
from controller.cli import faultflags
from controller.cli import main as cli

pytestmark = pytest.mark.unit


def dur(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


# ------------------------------------------------------------------ netem


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (pb.NetemSpec(delay=dur(3601)), "netem.delay"),
        (pb.NetemSpec(delay=dur(-1)), "netem.delay"),
        (pb.NetemSpec(loss_percent=101), "netem.loss_percent"),
        (pb.NetemSpec(loss_percent=-0.5), "netem.loss_percent"),
        (pb.NetemSpec(duplicate_percent=float("nan")), "netem.duplicate_percent"),
        (pb.NetemSpec(delay=dur(0.05), corrupt_percent=200), "netem.corrupt_percent"),
        (pb.NetemSpec(reorder_percent=10), "netem.reorder_percent"),
        (pb.NetemSpec(jitter=dur(0.01)), "netem.jitter"),
        (pb.NetemSpec(delay=dur(0.05), jitter=dur(3)), "netem.jitter"),
        (pb.NetemSpec(loss_correlation_percent=5, delay=dur(1)), "netem.loss_correlation_percent"),
        (
            pb.NetemSpec(delay=dur(0.05), distribution=pb.DISTRIBUTION_NORMAL),
            "netem.distribution",
        ),
        (pb.NetemSpec(delay=dur(0.05), reorder_gap=3), "netem.reorder_gap"),
        (pb.NetemSpec(), "netem"),
    ],
)
def test_bad_netem_names_the_field(spec: pb.NetemSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_netem(spec)
    assert err.value.field == field


def test_netem_encoding_carries_64_bit_times_and_probabilities() -> None:
    p = parse_netem(
        pb.NetemSpec(
            delay=dur(300), jitter=dur(0.01), loss_percent=20, reorder_percent=5, reorder_gap=2
        )
    )
    raw = tcwire.netem(p)
    latency, limit, loss, gap, dup, jitter = struct.unpack_from("=IIIIII", raw)
    assert limit == 10_000
    assert latency == tcwire.U32_MAX  # 300 s overflows 32-bit ticks: LATENCY64 carries it
    assert loss == round(0.2 * tcwire.U32_MAX) and gap == 2 and dup == 0
    assert jitter == round(0.01e9) >> 6
    attrs = _attrs(raw[24:])
    assert struct.unpack("=q", attrs[tcwire.NETEM_LATENCY64])[0] == 300 * 10**9
    assert struct.unpack("=q", attrs[tcwire.NETEM_JITTER64])[0] == 10**7
    assert struct.unpack("=II", attrs[tcwire.NETEM_REORDER])[0] == round(0.05 * tcwire.U32_MAX)


def test_distribution_tables_are_read_from_iproute2_files(tmp_path: Path) -> None:
    (tmp_path / "normal.dist").write_text("# comment\n 1 -2 3\n4 5\n")
    assert load_distribution("normal", (str(tmp_path),)) == (1, -2, 3, 4, 5)
    with pytest.raises(FailedPrecondition, match=r"pareto\.dist"):
        load_distribution("pareto", (str(tmp_path),))
    (tmp_path / "bad.dist").write_text("99999\n")
    with pytest.raises(FailedPrecondition, match="malformed"):
        load_distribution("bad", (str(tmp_path),))


def _attrs(raw: bytes) -> dict[int, bytes]:
    out, off = {}, 0
    while off < len(raw):
        length, kind = struct.unpack_from("=HH", raw, off)
        out[kind] = raw[off + 4 : off + length]
        off += (length + 3) & ~3
    return out


# -------------------------------------------------------------- bandwidth


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (pb.BandwidthSpec(), "bandwidth.rate_bits_per_second"),
        (pb.BandwidthSpec(rate_bits_per_second=10**7, burst_bytes=100), "bandwidth.burst_bytes"),
        (
            pb.BandwidthSpec(rate_bits_per_second=10**7, limit_bytes=10**6, latency=dur(0.1)),
            "bandwidth.limit_bytes",
        ),
        (pb.BandwidthSpec(rate_bits_per_second=10**7, latency=dur(61)), "bandwidth.latency"),
    ],
)
def test_bad_bandwidth_names_the_field(spec: pb.BandwidthSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_bandwidth(spec)
    assert err.value.field == field


def test_bandwidth_defaults_hold_five_gso_packets() -> None:
    size = parse_bandwidth(pb.BandwidthSpec(rate_bits_per_second=10_000_000))
    assert (size.rate, size.burst) == (1_250_000, 16 * 1024)
    # 50 ms at 10 Mbit/s is 62 KB: less than one GSO packet, so the floor rules.
    assert size.limit == DEFAULT_QUEUE_PACKETS * GSO_PACKET_BYTES and not size.raised
    fast = parse_bandwidth(pb.BandwidthSpec(rate_bits_per_second=10**9))
    assert fast.limit == fast.burst + int(fast.rate * 0.05)
    big = _attrs(tcwire.htb_class(10**10, 10**6))
    assert struct.unpack("=Q", big[tcwire.HTB_RATE64])[0] == 10**10


@pytest.mark.parametrize(
    ("spec", "limit", "raised"),
    [
        (pb.BandwidthSpec(rate_bits_per_second=10**7, limit_bytes=20_000), 70_000, "20000"),
        (pb.BandwidthSpec(rate_bits_per_second=10**7, latency=dur(0.01)), 70_000, "latency"),
        (pb.BandwidthSpec(rate_bits_per_second=10**7, limit_bytes=90_000), 90_000, ""),
        (pb.BandwidthSpec(rate_bits_per_second=10**8, latency=dur(0.02)), 375_000, ""),
    ],
)
def test_a_users_queue_is_kept_unless_it_cannot_hold_a_gso_packet(
    spec: pb.BandwidthSpec, limit: int, raised: str
) -> None:
    size = parse_bandwidth(spec)
    assert size.limit == limit
    if raised:
        assert raised in size.raised and "GSO" in size.raised
    else:
        assert not size.raised


def test_u32_filter_layout() -> None:
    raw = tcwire.u32_filter([tcwire.U32Key(0x0A000000, 0xFF000000, 16)], 0xB0010001)
    attrs = _attrs(raw)
    assert struct.unpack("=I", attrs[tcwire.U32_CLASSID])[0] == 0xB0010001
    sel = attrs[tcwire.U32_SEL]
    flags, _, nkeys = struct.unpack_from("=BBB", sel)
    assert (flags, nkeys) == (tcwire.TC_U32_TERMINAL, 1)
    assert struct.unpack_from(">II", sel, 16) == (0xFF000000, 0x0A000000)
    assert struct.unpack_from("=i", sel, 24)[0] == 16
    assert tcwire.filter_info(3, tcwire.ETH_P_IP) == (3 << 16) | 0x0008


# -------------------------------------------------------------- partition


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (pb.PartitionSpec(), "partition.peers"),
        (pb.PartitionSpec(peers=["10.0.0.0/33"]), "partition.peers[0]"),
        (
            pb.PartitionSpec(peers=["10.0.0.1"], ports=[pb.PortRange(first=0)]),
            "partition.ports[0].first",
        ),
        (
            pb.PartitionSpec(
                peers=["10.0.0.1"], protocol=pb.PROTOCOL_ICMP, ports=[pb.PortRange(first=1)]
            ),
            "partition.protocol",
        ),
        (pb.PartitionSpec(peers=["10.0.0.1"], exclude=["x"]), "partition.exclude[0]"),
    ],
)
def test_bad_partition_names_the_field(spec: pb.PartitionSpec, field: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        parse_partition(spec)
    assert err.value.field == field


def _rules(msgs: list[object]) -> list[tuple[str, bool, str]]:
    """(chain, at head, verdict) of each rule message."""
    out = []
    for m in msgs:
        if m["header"]["type"] & 0xFF != 6:  # type: ignore[index]
            continue
        attrs = dict(m["attrs"])  # type: ignore[index]
        last = attrs["NFTA_RULE_EXPRESSIONS"][-1]["attrs"][1][1]["attrs"][1][1]["attrs"][0][1]
        code = dict(last["attrs"])["NFTA_VERDICT_CODE"]
        head = not m["header"]["flags"] & 0x800  # type: ignore[index]
        out.append(
            (
                attrs["NFTA_RULE_CHAIN"],
                head,
                {0: "drop", 1: "accept", -3: "jump", -5: "return"}[code],
            )
        )
    return out


def test_partition_rules_put_exclusions_before_drops() -> None:
    plan = PartitionPlan(
        netns=NetnsRef("host", "/proc/self/ns/net", 0, 0, True),
        peers=(ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64")),
        ports=(PortSpan(80, 80), PortSpan(8000, 8100)),
        protocol=Proto.ANY,
        ingress=True,
        egress=True,
        exclude=(ipaddress.ip_network("10.0.0.7/32"),),
        guard=Protected((ipaddress.ip_address("10.0.0.9"),), (7070,)),
    )
    rules = _rules(build_messages(plan, "brownout_x", "fault-1"))
    for base, own in (("input", "fault-1-in"), ("output", "fault-1-out")):
        in_base = [r for r in rules if r[0] == base]
        # loopback, listener port, controller peer: accepted at the head
        assert [r[2] for r in in_base if r[1]] == ["accept"] * 3
        assert [r[2] for r in in_base if not r[1]] == ["jump"]
        chain = [r[2] for r in rules if r[0] == own]
        assert chain == ["return"] + ["drop"] * (2 * 2 * 2)  # peers x tcp/udp x ranges
    egress_only = PartitionPlan(**{**plan.__dict__, "ingress": False})
    assert {r[0] for r in _rules(build_messages(egress_only, "t", "f"))} == {"output", "f-out"}


# -------------------------------------------------------------------- CLI


def test_cli_builds_network_specs() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(
        [
            "inject",
            "netem",
            "--delay",
            "50ms",
            "--jitter",
            "5ms",
            "--loss",
            "1%",
            "--to",
            "10.0.0.0/24",
            "--port",
            "80",
            "--port",
            "8000-8100",
            "--protocol",
            "tcp",
            "--netns",
            "web1",
            "--duration",
            "30s",
        ]
    )
    spec, target = faultflags.build(args)
    assert spec.netem.delay.ToNanoseconds() == 50_000_000
    assert spec.netem.loss_percent == 1
    assert [(p.first, p.last) for p in spec.netem.filter.destination_ports] == [
        (80, 0),
        (8000, 8100),
    ]
    assert target == pb.Target(netns_name="web1")
    args = parser.parse_args(
        ["inject", "bandwidth", "--rate", "10mbit", "--pid", "42", "--duration", "1m"]
    )
    spec, target = faultflags.build(args)
    assert spec.bandwidth.rate_bits_per_second == 10_000_000 and target.pid == 42
    args = parser.parse_args(
        [
            "inject",
            "partition",
            "--to",
            "10.0.0.5",
            "--direction",
            "ingress",
            "--netns",
            "/proc/7/ns/net",
            "--duration",
            "10s",
        ]
    )
    spec, target = faultflags.build(args)
    assert spec.partition.direction == pb.DIRECTION_INGRESS
    assert target.netns_path == "/proc/7/ns/net"


@pytest.mark.parametrize(
    ("text", "bits"), [("10mbit", 10**7), ("1.5gbit", 15 * 10**8), ("800", 800)]
)
def test_rates(text: str, bits: int) -> None:
    from brownout.faultspecs.values import bit_rate as parse_rate

    assert parse_rate(text) == bits


def test_tc_bps_is_refused_rather_than_misread() -> None:
    from brownout.faultspecs.values import bit_rate as parse_rate

    with pytest.raises(ValueError):
        parse_rate("10mbps")
