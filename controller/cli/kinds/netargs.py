"""Arguments shared by the network inject subcommands: rates, ports, filters, namespaces."""

from __future__ import annotations

import argparse
import re

from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes

_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)?", re.IGNORECASE)
_RATE_SCALE = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "t": 1_000_000_000_000}
PROTOCOLS = {
    "any": pb.PROTOCOL_ANY,
    "tcp": pb.PROTOCOL_TCP,
    "udp": pb.PROTOCOL_UDP,
    "icmp": pb.PROTOCOL_ICMP,
}


def parse_rate(text: str) -> int:
    """Bits per second from '10mbit', '1.5gbit', '500kbit' or a bare number of bits.
    'bps' means bits per second here too (tc's 'bps' is bytes: not accepted to avoid
    a silent 8x error)."""
    m = _RATE.fullmatch(text.strip())
    if m is None or (m.group(3) or "bit").lower() != "bit":
        raise ValueError(f"invalid rate {text!r}: use e.g. 10mbit, 1gbit, 500kbit")
    return int(float(m.group(1)) * _RATE_SCALE[m.group(2).lower()])


def parse_positive_rate(text: str) -> int:
    rate = parse_rate(text)
    if rate <= 0:
        raise ValueError(f"invalid rate {text!r}: must be more than 0")
    return rate


def parse_port_range(text: str) -> pb.PortRange:
    """'80' or '8000-8100', ports 1-65535."""
    first, sep, last = text.strip().partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise ValueError(f"invalid port {text!r}: use e.g. 80 or 8000-8100")
    lo, hi = int(first), int(last) if sep else int(first)
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"invalid port range {text!r}: ports are 1-65535, first <= last")
    return pb.PortRange(first=lo, last=hi if sep else 0)


def add_target(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--netns",
        type=argtypes.text,
        help="network namespace: a name under /var/run/netns or a path to its file",
    )
    group.add_argument("--pid", type=argtypes.pid, help="the network namespace of this process")


def target(args: argparse.Namespace) -> pb.Target:
    if args.pid is not None:
        return pb.Target(pid=args.pid)
    if args.netns:
        if "/" in args.netns:
            return pb.Target(netns_path=args.netns)
        return pb.Target(netns_name=args.netns)
    return pb.Target()


def add_cidrs(p: argparse.ArgumentParser, flag: str, help: str, required: bool = False) -> None:
    """A repeatable flag of IP addresses or CIDRs."""
    p.add_argument(flag, action="append", type=argtypes.cidr, required=required,
                   default=None if required else [], metavar="CIDR", help=help)  # fmt: skip


def add_ports(p: argparse.ArgumentParser, flag: str, help: str) -> None:
    """A repeatable flag of ports or port ranges."""
    p.add_argument(flag, action="append", type=argtypes.checked(parse_port_range),
                   default=[], metavar="P[-Q]", help=help)  # fmt: skip


def add_filter(p: argparse.ArgumentParser) -> None:
    add_cidrs(p, "--to", "only traffic to these (repeat)")
    add_ports(p, "--port", "only these destination ports (repeat)")
    add_ports(p, "--source-port", "only these source ports (repeat)")
    p.add_argument("--protocol", choices=sorted(PROTOCOLS), default="any")
    add_cidrs(p, "--exclude", "never touch these (repeat)")
    p.add_argument(
        "--interface",
        type=argtypes.interface,
        default=None,
        help="default: the default route's interface",
    )
    p.add_argument(
        "--replace-existing-qdisc",
        action="store_true",
        help="replace a root qdisc Brownout cannot restore (revert leaves the kernel default)",
    )


def traffic_filter(args: argparse.Namespace) -> pb.TrafficFilter:
    return pb.TrafficFilter(
        destinations=args.to,
        destination_ports=args.port,
        source_ports=args.source_port,
        protocol=PROTOCOLS[args.protocol],
        exclude=args.exclude,
    )
