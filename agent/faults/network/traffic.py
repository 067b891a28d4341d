"""Which packets a network fault touches: validated CIDRs, ports and protocols,
and their translation into u32 matches for shaping faults.

Pure logic. u32 matches assume the plain header layouts: IPv4 without options
(IHL 5, so an IPv4 packet with options is never matched: left untouched) and
IPv6 without extension headers before the transport header. Port matches
also require the first IPv4 fragment, where the ports are.
"""

from __future__ import annotations

import ipaddress
import itertools
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from agent.core.errors import InvalidArgument
from agent.kernel.net.tcwire import ETH_P_IP, ETH_P_IPV6, U32Key
from brownout.v1 import agent_pb2 as pb

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
MAX_U32_MATCHES = 256


class Proto(StrEnum):
    ANY = "any"
    TCP = "tcp"
    UDP = "udp"
    ICMP = "icmp"


PROTO_FROM_PB = {
    pb.PROTOCOL_ANY: Proto.ANY,
    pb.PROTOCOL_TCP: Proto.TCP,
    pb.PROTOCOL_UDP: Proto.UDP,
    pb.PROTOCOL_ICMP: Proto.ICMP,
}
IPPROTO = {Proto.TCP: 6, Proto.UDP: 17}
ICMP_FOR_VERSION = {4: 1, 6: 58}


@dataclass(frozen=True)
class PortSpan:
    first: int
    last: int

    def __str__(self) -> str:
        return str(self.first) if self.first == self.last else f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Filter:
    destinations: tuple[Network, ...] = ()
    source_ports: tuple[PortSpan, ...] = ()
    destination_ports: tuple[PortSpan, ...] = ()
    protocol: Proto = Proto.ANY
    exclude: tuple[Network, ...] = ()

    @property
    def matches_all(self) -> bool:
        return not (
            self.destinations
            or self.source_ports
            or self.destination_ports
            or self.protocol != Proto.ANY
            or self.exclude
        )

    def describe(self) -> str:
        parts = []
        if self.destinations:
            parts.append("to " + ",".join(map(str, self.destinations)))
        if self.protocol != Proto.ANY:
            parts.append(str(self.protocol))
        if self.source_ports:
            parts.append("sport " + ",".join(map(str, self.source_ports)))
        if self.destination_ports:
            parts.append("dport " + ",".join(map(str, self.destination_ports)))
        if self.exclude:
            parts.append("except " + ",".join(map(str, self.exclude)))
        return " ".join(parts) or "all traffic"


# -------------------------------------------------------------- validation


def parse_cidr(field: str, text: str) -> Network:
    """A CIDR or bare address; host bits are allowed and cleared (10.0.0.5/24 -> 10.0.0.0/24)."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise InvalidArgument(
            field, f"{text!r} is not a CIDR or IP address (e.g. 10.0.0.0/24, 2001:db8::/64)"
        ) from None


def parse_cidrs(field: str, texts: Iterable[str]) -> tuple[Network, ...]:
    return tuple(parse_cidr(f"{field}[{i}]", t) for i, t in enumerate(texts))


def parse_ports(field: str, ranges: Sequence[pb.PortRange]) -> tuple[PortSpan, ...]:
    spans = []
    for i, r in enumerate(ranges):
        f = f"{field}[{i}]"
        if not 1 <= r.first <= 65535:
            raise InvalidArgument(
                f"{f}.first", f"must be a port between 1 and 65535, got {r.first}"
            )
        last = r.last or r.first
        if not r.first <= last <= 65535:
            raise InvalidArgument(
                f"{f}.last",
                f"must be 0 (a single port) or between {r.first} and 65535, got {r.last}",
            )
        spans.append(PortSpan(r.first, last))
    return tuple(spans)


def parse_protocol(field: str, value: int) -> Proto:
    try:
        return PROTO_FROM_PB[value]  # type: ignore[index]
    except KeyError:
        raise InvalidArgument(field, f"unknown protocol {value}") from None


def parse_filter(field: str, spec: pb.TrafficFilter) -> Filter:
    flt = Filter(
        destinations=parse_cidrs(f"{field}.destinations", spec.destinations),
        source_ports=parse_ports(f"{field}.source_ports", spec.source_ports),
        destination_ports=parse_ports(f"{field}.destination_ports", spec.destination_ports),
        protocol=parse_protocol(f"{field}.protocol", spec.protocol),
        exclude=parse_cidrs(f"{field}.exclude", spec.exclude),
    )
    if flt.protocol == Proto.ICMP and (flt.source_ports or flt.destination_ports):
        raise InvalidArgument(f"{field}.protocol", "icmp has no ports: drop the port filters")
    return flt


def peer_addresses(peer: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """Addresses of a gRPC peer string ('ipv4:10.0.0.5:4242', 'ipv6:[::1]:4242');
    an IPv4-mapped IPv6 peer yields both forms. Other transports yield none."""
    scheme, _, rest = urllib.parse.unquote(peer).partition(":")
    if scheme not in ("ipv4", "ipv6") or not rest:
        return []
    host = rest.rsplit(":", 1)[0] if scheme == "ipv4" else rest.rpartition("]")[0].lstrip("[")
    try:
        addr = ipaddress.ip_address(host.split("%")[0])
    except ValueError:
        return []
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return [addr, addr.ipv4_mapped]
    return [addr]


# --------------------------------------------------------------------- u32


def port_blocks(span: PortSpan) -> list[tuple[int, int]]:
    """The fewest (value, mask) pairs covering first..last exactly."""
    blocks = []
    lo, hi = span.first, span.last
    while lo <= hi:
        size = lo & -lo if lo else 1 << 16
        while size > hi - lo + 1:
            size >>= 1
        blocks.append((lo, 0xFFFF & ~(size - 1)))
        lo += size
    return blocks


def _prefix_keys(net: Network, base: int) -> list[U32Key]:
    """Keys matching the address at header offset base against net, word by word."""
    words = net.network_address.packed
    mask = net.netmask.packed
    keys = []
    for i in range(0, len(words), 4):
        m = int.from_bytes(mask[i : i + 4], "big")
        if m:
            keys.append(U32Key(int.from_bytes(words[i : i + 4], "big"), m, base + i))
    return keys


@dataclass(frozen=True)
class U32Match:
    """One u32 filter: all keys must match. exclude: send the packet past the fault."""

    eth_protocol: int
    keys: tuple[U32Key, ...]
    exclude: bool = False


def _merge(keys: Iterable[U32Key]) -> tuple[U32Key, ...]:
    by_offset: dict[int, U32Key] = {}
    for k in keys:
        prev = by_offset.get(k.offset)
        if prev is None:
            by_offset[k.offset] = k
        else:
            by_offset[k.offset] = U32Key(prev.value | k.value, prev.mask | k.mask, k.offset)
    return tuple(by_offset[o] for o in sorted(by_offset))


# Per IP version: (ethertype, dst address offset, l4 offset, protocol key builder)
_V4 = (ETH_P_IP, 16, 20)
_V6 = (ETH_P_IPV6, 24, 40)


def _proto_key(version: int, ipproto: int) -> U32Key:
    if version == 4:
        return U32Key(ipproto << 16, 0x00FF0000, 8)
    return U32Key(ipproto << 8, 0x0000FF00, 4)


def u32_matches(flt: Filter, protect: Sequence[U32Match] = ()) -> list[U32Match]:
    """Exclusions first (protect, then the filter's), then the matches."""
    out = list(protect)
    versions = sorted({n.version for n in flt.destinations}) or [4, 6]
    for net in flt.exclude:
        eth, dst_off, _ = _V4 if net.version == 4 else _V6
        out.append(U32Match(eth, _merge(_prefix_keys(net, dst_off)), exclude=True))
    has_ports = bool(flt.source_ports or flt.destination_ports)
    if flt.protocol == Proto.ANY:
        protos: list[Proto | None] = [Proto.TCP, Proto.UDP] if has_ports else [None]
    else:
        protos = [flt.protocol]
    sport_blocks: list[tuple[int, int] | None] = [
        b for s in flt.source_ports for b in port_blocks(s)
    ] or [None]
    dport_blocks: list[tuple[int, int] | None] = [
        b for s in flt.destination_ports for b in port_blocks(s)
    ] or [None]
    for version in versions:
        eth, dst_off, l4 = _V4 if version == 4 else _V6
        dests: list[Network | None] = [n for n in flt.destinations if n.version == version] or [
            None
        ]
        for dest, proto, sp, dp in itertools.product(dests, protos, sport_blocks, dport_blocks):
            keys: list[U32Key] = []
            if proto is not None:
                num = ICMP_FOR_VERSION[version] if proto == Proto.ICMP else IPPROTO[proto]
                keys.append(_proto_key(version, num))
            if has_ports and version == 4:
                keys.append(U32Key(0x05000000, 0x0F000000, 0))  # IHL 5: ports at offset 20
                keys.append(U32Key(0, 0x00001FFF, 4))  # first fragment: ports present
            if dest is not None:
                keys += _prefix_keys(dest, dst_off)
            if sp is not None:
                keys.append(U32Key(sp[0] << 16, sp[1] << 16, l4))
            if dp is not None:
                keys.append(U32Key(dp[0], dp[1], l4))
            out.append(U32Match(eth, _merge(keys)))
    return out


def check_size(field: str, matches: Sequence[U32Match]) -> None:
    if len(matches) > MAX_U32_MATCHES:
        raise InvalidArgument(
            field,
            f"expands to {len(matches)} u32 matches (at most {MAX_U32_MATCHES}):"
            " give fewer CIDRs, port ranges or unaligned ranges",
        )


def host_network(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> Network:
    return ipaddress.ip_network(addr)


def protect_matches(
    peers: Iterable[ipaddress.IPv4Address | ipaddress.IPv6Address],
    listen_ports: Iterable[int],
    udp_ports: Iterable[int] = (),
) -> list[U32Match]:
    """Exclusions that keep the controller's traffic and the agent's listeners
    (TCP, and the lease-heartbeat UDP port) unshaped."""
    out = []
    for addr in peers:
        eth, dst_off, _ = _V4 if addr.version == 4 else _V6
        out.append(U32Match(eth, _merge(_prefix_keys(host_network(addr), dst_off)), exclude=True))
    ports = [(6, p) for p in listen_ports] + [(17, p) for p in udp_ports]
    for ipproto, port in ports:
        out.append(
            U32Match(
                ETH_P_IP,
                _merge(
                    [
                        _proto_key(4, ipproto),
                        U32Key(0x05000000, 0x0F000000, 0),
                        U32Key(port << 16, 0xFFFF0000, 20),
                    ]
                ),
                exclude=True,
            )
        )
        out.append(
            U32Match(
                ETH_P_IPV6,
                _merge([_proto_key(6, ipproto), U32Key(port << 16, 0xFFFF0000, 40)]),
                exclude=True,
            )
        )
    return out
