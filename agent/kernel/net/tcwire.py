"""Binary TCA_OPTIONS payloads for the qdiscs, classes and filters Brownout uses.

Pure functions (no kernel access, but for reading iproute2's distribution
tables), so each layout is unit tested. We encode
these ourselves rather than through pyroute2's per-kind helpers because those
cannot express what we need: netem's 64-bit latency and jitter, its delay
distribution table, HTB's direct queue length and 64-bit rates. Layouts
follow include/uapi/linux/pkt_sched.h and pkt_cls.h. Rates in tc_ratespec
are bytes per second; times in ticks are PSCHED ticks of 64 ns.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from agent.kernel.net.nlsock import attr

PSCHED_SHIFT = 6  # one psched tick is 2**6 ns
TC_LINKLAYER_ETHERNET = 1  # a known link layer: the kernel wants no rate table
U32_MAX = 0xFFFFFFFF
TC_H_ROOT = 0xFFFFFFFF
TC_U32_TERMINAL = 1
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD

# TCA_HTB_*
HTB_PARMS, HTB_INIT, HTB_DIRECT_QLEN, HTB_RATE64, HTB_CEIL64 = 1, 2, 5, 6, 7
# TCA_NETEM_*
NETEM_CORR, NETEM_DELAY_DIST, NETEM_REORDER, NETEM_CORRUPT = 1, 2, 3, 4
NETEM_RATE, NETEM_RATE64, NETEM_LATENCY64, NETEM_JITTER64 = 6, 8, 10, 11
# TCA_U32_*
U32_CLASSID, U32_SEL = 1, 5


def handle(major: int, minor: int = 0) -> int:
    return ((major & 0xFFFF) << 16) | (minor & 0xFFFF)


def format_handle(value: int) -> str:
    return f"{value >> 16:x}:{value & 0xFFFF:x}" if value & 0xFFFF else f"{value >> 16:x}:"


def probability(percent: float) -> int:
    """A percent as netem's u32 probability, rounded as tc rounds it."""
    return min(U32_MAX, max(0, round(percent / 100.0 * U32_MAX)))


def ticks(seconds: float) -> int:
    return min(U32_MAX, round(seconds * 1e9) >> PSCHED_SHIFT)


def ratespec(bytes_per_second: int) -> bytes:
    """struct tc_ratespec; rates above 32 bits travel in a separate 64-bit attribute."""
    return struct.pack("=BBHhHI", 0, TC_LINKLAYER_ETHERNET, 0, 0, 0, min(bytes_per_second, U32_MAX))


def transmit_ticks(size_bytes: int, bytes_per_second: int) -> int:
    return ticks(size_bytes / bytes_per_second)


# ------------------------------------------------------------------ qdiscs


def htb_qdisc(default_class: int, direct_qlen: int) -> bytes:
    """Root HTB: unclassified packets use default_class; 0 sends them direct (unshaped)."""
    glob = struct.pack("=IIIII", 3, 10, default_class, 0, 0)  # version, r2q, defcls, debug, direct
    return attr(HTB_INIT, glob) + attr(HTB_DIRECT_QLEN, struct.pack("=I", direct_qlen))


def htb_class(rate_bps: int, burst_bytes: int, ceil_bps: int | None = None) -> bytes:
    """An HTB class at rate (and ceil) in bytes/s with the given burst."""
    ceil = rate_bps if ceil_bps is None else ceil_bps
    quantum = min(200_000, max(1_600, rate_bps // 10))
    parms = (
        ratespec(rate_bps)
        + ratespec(ceil)
        + struct.pack(
            "=IIIII",
            transmit_ticks(burst_bytes, rate_bps),
            transmit_ticks(burst_bytes, ceil),
            quantum,
            0,  # level
            0,  # prio
        )
    )
    out = attr(HTB_PARMS, parms)
    if rate_bps > U32_MAX:
        out += attr(HTB_RATE64, struct.pack("=Q", rate_bps))
    if ceil > U32_MAX:
        out += attr(HTB_CEIL64, struct.pack("=Q", ceil))
    return out


def bfifo(limit_bytes: int) -> bytes:
    return struct.pack("=I", limit_bytes)


@dataclass(frozen=True)
class NetemParams:
    delay_s: float = 0.0
    jitter_s: float = 0.0
    delay_correlation: float = 0.0  # percent
    loss: float = 0.0
    loss_correlation: float = 0.0
    duplicate: float = 0.0
    corrupt: float = 0.0
    reorder: float = 0.0
    reorder_correlation: float = 0.0
    gap: int = 0
    rate_bps: int = 0  # bytes per second, 0: none
    limit_packets: int = 10_000
    distribution: tuple[int, ...] = ()  # netem table, empty: uniform


def netem(p: NetemParams) -> bytes:
    """struct tc_netem_qopt followed by its attributes, as tc sends them."""
    gap = p.gap if p.reorder else 0
    if p.reorder and gap == 0:
        gap = 1  # as tc: reordering needs a gap
    qopt = struct.pack(
        "=IIIIII",
        ticks(p.delay_s),
        p.limit_packets,
        probability(p.loss),
        gap,
        probability(p.duplicate),
        ticks(p.jitter_s),
    )
    attrs = b""
    if p.delay_correlation or p.loss_correlation:
        attrs += attr(
            NETEM_CORR,
            struct.pack(
                "=III", probability(p.delay_correlation), probability(p.loss_correlation), 0
            ),
        )
    if p.distribution:
        attrs += attr(NETEM_DELAY_DIST, struct.pack(f"={len(p.distribution)}h", *p.distribution))
    if p.reorder:
        attrs += attr(
            NETEM_REORDER,
            struct.pack("=II", probability(p.reorder), probability(p.reorder_correlation)),
        )
    if p.corrupt:
        attrs += attr(NETEM_CORRUPT, struct.pack("=II", probability(p.corrupt), 0))
    if p.rate_bps:
        attrs += attr(NETEM_RATE, struct.pack("=IiIi", min(p.rate_bps, U32_MAX), 0, 0, 0))
        if p.rate_bps > U32_MAX:
            attrs += attr(NETEM_RATE64, struct.pack("=Q", p.rate_bps))
    attrs += attr(NETEM_LATENCY64, struct.pack("=q", round(p.delay_s * 1e9)))
    attrs += attr(NETEM_JITTER64, struct.pack("=q", round(p.jitter_s * 1e9)))
    return qopt + attrs


# ----------------------------------------------------------------- filters


@dataclass(frozen=True)
class U32Key:
    """Match (32-bit word at offset & mask) == value, offsets from the network header."""

    value: int
    mask: int
    offset: int


def u32_filter(keys: Sequence[U32Key], classid: int) -> bytes:
    """A terminal u32 match sending packets to classid."""
    keys = list(keys) or [U32Key(0, 0, 0)]  # no key: match everything, as tc does
    sel = struct.pack("=BBBxHHhhI", TC_U32_TERMINAL, 0, len(keys), 0, 0, 0, 0, 0)
    for k in keys:
        sel += struct.pack(">II", k.mask, k.value & k.mask) + struct.pack("=ii", k.offset, 0)
    return attr(U32_CLASSID, struct.pack("=I", classid)) + attr(U32_SEL, sel)


def filter_info(prio: int, protocol: int) -> int:
    """tcm_info of a filter: priority in the high half, protocol in network order."""
    return (prio << 16) | int(struct.unpack("=H", struct.pack(">H", protocol))[0])


NETEM_DIST_MAX = 16384


def read_distribution(name: str, dirs: tuple[str, ...]) -> tuple[int, ...]:
    """iproute2's netem delay table for name (normal.dist, ...), from the first of
    dirs that has it; ValueError saying where it looked or what is wrong."""
    for d in dirs:
        path = Path(d) / f"{name}.dist"
        try:
            text = path.read_text()
        except OSError:
            continue
        values = [
            int(tok)
            for line in text.splitlines()
            if not line.lstrip().startswith("#")
            for tok in line.split()
        ]
        if (
            not values
            or len(values) > NETEM_DIST_MAX
            or not all(-32768 <= v <= 32767 for v in values)
        ):
            raise ValueError(f"netem distribution table {path} is malformed")
        return tuple(values)
    raise ValueError(
        f"no netem table for the {name} distribution on this node (looked for {name}.dist in"
        f" {', '.join(dirs)}; Debian's iproute2 package provides it)"
    )
