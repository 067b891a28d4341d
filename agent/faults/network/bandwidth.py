"""Bandwidth limit: an HTB class at the rate, with a bfifo queue under it.

Always the classful tree (see shaping.py), filtered or not: HTB paces GSO/TSO
super-packets correctly (it charges a packet's full length and lets its tokens
go negative), so one shaper serves every case and measures like the kernel's
own `tc class add ... htb rate R`.

The queue is where low rates used to fail. With GSO/TSO a qdisc sees TCP's
segments in packets of up to 64 KiB of data plus a header per segment
(GSO_PACKET_BYTES), and a bfifo counts those bytes. A queue that cannot hold
one such packet drops every one of them (TCP stalls: 1-8 Mbit/s delivered a
tenth of the rate); one that holds only a couple drops a burst of them as
TCP's slow start ends. So the default queue is the rate x 50 ms, but at least
DEFAULT_QUEUE_PACKETS full GSO packets; a limit or latency the user gives is
kept, raised only to one GSO packet, and the reply says so (`raised`).
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf.message import Message

from agent.core.errors import InvalidArgument
from agent.core.validation import duration_seconds
from agent.faults.network.qdisc_tree import Shape
from agent.faults.network.shaping import Request, ShapingInjector
from agent.faults.network.traffic import parse_filter
from agent.kernel.net.tcwire import U32_MAX, bfifo
from brownout.v1 import agent_pb2 as pb

MIN_RATE_BITS = 8_000
MIN_BURST = 1_600  # one full-size Ethernet frame, or the bucket never passes one
DEFAULT_LATENCY_S = 0.05
MAX_LATENCY_S = 60.0
# The largest packet a qdisc sees from GSO/TSO: 64 KiB of data and the headers
# of its (at most 45) segments, rounded up.
GSO_PACKET_BYTES = 70_000
# The default queue holds this many: enough for TCP's slow-start burst on a
# short path (measured: 2 still dropped 20-odd packets at 1-5 Mbit/s, 5 none).
DEFAULT_QUEUE_PACKETS = 5


def default_burst(rate_bps: int) -> int:
    """10 ms at the rate, at least 16 KiB: what keeps a token bucket accurate
    for TCP without letting bursts dominate."""
    return min(U32_MAX, max(16 * 1024, rate_bps // 100))


@dataclass(frozen=True)
class Sizing:
    rate: int  # bytes/s
    burst: int  # bytes
    limit: int  # bytes the queue holds
    raised: str = ""  # what was raised from the user's values, and why


def parse_bandwidth(spec: pb.BandwidthSpec) -> Sizing:
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
        if not burst <= spec.limit_bytes <= U32_MAX:
            raise InvalidArgument(
                "bandwidth.limit_bytes",
                f"must be between the burst ({burst}) and {U32_MAX}, got {spec.limit_bytes}",
            )
        return _at_least_one_gso(rate, burst, spec.limit_bytes, "limit_bytes")
    latency = duration_seconds(
        "bandwidth.latency",
        spec.latency.seconds,
        spec.latency.nanos,
        maximum=MAX_LATENCY_S,
        required=False,
    )
    if latency:
        limit = min(U32_MAX, burst + int(rate * latency))
        return _at_least_one_gso(rate, burst, limit, f"latency {latency:g}s")
    limit = burst + int(rate * DEFAULT_LATENCY_S)
    return Sizing(rate, burst, min(U32_MAX, max(limit, DEFAULT_QUEUE_PACKETS * GSO_PACKET_BYTES)))


def _at_least_one_gso(rate: int, burst: int, limit: int, given: str) -> Sizing:
    if limit >= GSO_PACKET_BYTES:
        return Sizing(rate, burst, limit)
    why = (
        f"limit_bytes raised from {limit} to {GSO_PACKET_BYTES} (from {given}): the queue must"
        f" hold one {GSO_PACKET_BYTES}-byte GSO/TSO packet, or every such packet is dropped"
        " and TCP stalls"
    )
    return Sizing(rate, burst, GSO_PACKET_BYTES, why)


class BandwidthInjector(ShapingInjector):
    kind = "bandwidth"
    survives_reboot = False
    needs = {
        "htb": "CONFIG_NET_SCH_HTB",
        "bfifo": "CONFIG_NET_SCH_FIFO",
        "u32": "CONFIG_NET_CLS_U32",
    }

    def parse(self, spec: Message) -> Request:
        assert isinstance(spec, pb.BandwidthSpec)
        size = parse_bandwidth(spec)
        summary = {
            "rate": f"{size.rate * 8}bit/s",
            "burst_bytes": str(size.burst),
            "limit_bytes": str(size.limit),
        }
        if size.raised:
            summary["raised"] = size.raised
        return Request(
            field="bandwidth",
            shape=Shape(
                root_kind=None,
                root_options=b"",
                class_rate=size.rate,
                class_burst=size.burst,
                leaf_kind="bfifo",
                leaf_options=bfifo(size.limit),
                summary=summary,
            ),
            filter=parse_filter("bandwidth.filter", spec.filter),
            interface=spec.interface,
            replace_existing=spec.replace_existing_qdisc,
        )
