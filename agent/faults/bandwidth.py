"""Bandwidth limit: tbf at the root, or an HTB class at the rate when filtered."""

from __future__ import annotations

from google.protobuf.message import Message

from agent.errors import InvalidArgument
from agent.faults.shaping import Request, Shape, ShapingInjector
from agent.faults.traffic import parse_filter
from agent.tcwire import U32_MAX, bfifo, tbf
from agent.validation import duration_seconds
from brownout.v1 import agent_pb2 as pb

MIN_RATE_BITS = 8_000
MIN_BURST = 1_600  # one full-size Ethernet frame, or the bucket never passes one
DEFAULT_LATENCY_S = 0.05
MAX_LATENCY_S = 60.0


def default_burst(rate_bps: int) -> int:
    """10 ms at the rate, at least 16 KiB (a GSO-sized packet): what keeps a
    token bucket accurate for TCP without letting bursts dominate."""
    return min(U32_MAX, max(16 * 1024, rate_bps // 100))


def parse_bandwidth(spec: pb.BandwidthSpec) -> tuple[int, int, int]:
    """(rate bytes/s, burst bytes, queue limit bytes)."""
    if spec.rate_bits_per_second < MIN_RATE_BITS:
        raise InvalidArgument(
            "bandwidth.rate_bits_per_second",
            f"must be at least {MIN_RATE_BITS} bit/s, got {spec.rate_bits_per_second}",
        )
    rate = spec.rate_bits_per_second // 8
    burst = spec.burst_bytes or default_burst(rate)
    if not MIN_BURST <= burst <= U32_MAX:
        raise InvalidArgument(
            "bandwidth.burst_bytes", f"must be between {MIN_BURST} and {U32_MAX}, got {burst}"
        )
    if spec.limit_bytes and spec.HasField("latency"):
        raise InvalidArgument("bandwidth.limit_bytes", "set limit_bytes or latency, not both")
    if spec.limit_bytes:
        limit = spec.limit_bytes
        if not burst <= limit <= U32_MAX:
            raise InvalidArgument(
                "bandwidth.limit_bytes",
                f"must be between the burst ({burst}) and {U32_MAX}, got {limit}",
            )
    else:
        latency = duration_seconds(
            "bandwidth.latency", spec.latency, maximum=MAX_LATENCY_S, required=False
        )
        limit = min(U32_MAX, burst + int(rate * (latency or DEFAULT_LATENCY_S)))
    return rate, burst, limit


class BandwidthInjector(ShapingInjector):
    kind = "bandwidth"
    proto_kind = pb.FAULT_KIND_BANDWIDTH
    spec_field = "bandwidth"
    survives_reboot = False
    needs = {
        "tbf": "CONFIG_NET_SCH_TBF",
        "htb": "CONFIG_NET_SCH_HTB",
        "bfifo": "CONFIG_NET_SCH_FIFO",
        "u32": "CONFIG_NET_CLS_U32",
    }

    def parse(self, spec: Message) -> Request:
        assert isinstance(spec, pb.BandwidthSpec)
        rate, burst, limit = parse_bandwidth(spec)
        return Request(
            field="bandwidth",
            shape=Shape(
                root_kind="tbf",
                root_options=tbf(rate, burst, limit),
                class_rate=rate,
                class_burst=burst,
                leaf_kind="bfifo",
                leaf_options=bfifo(limit),
                summary={
                    "rate": f"{rate * 8}bit/s",
                    "burst_bytes": str(burst),
                    "limit_bytes": str(limit),
                },
            ),
            filter=parse_filter("bandwidth.filter", spec.filter),
            interface=spec.interface,
            replace_existing=spec.replace_existing_qdisc,
        )
