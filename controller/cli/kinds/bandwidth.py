"""brownout inject bandwidth --rate 10mbit [--burst SIZE] [--limit SIZE|--latency T] [filters]"""

from __future__ import annotations

import argparse

from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes
from controller.cli.kinds import netargs

NAME = "bandwidth"
HELP = "limit an interface's egress rate (an HTB class, optionally filtered)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--rate", type=argtypes.checked(netargs.parse_positive_rate), required=True,
        help="e.g. 10mbit",
    )  # fmt: skip
    p.add_argument(
        "--burst", type=argtypes.positive_size, default=0, help="bucket size, e.g. 32KiB"
    )
    queue = p.add_mutually_exclusive_group()
    queue.add_argument("--limit", type=argtypes.positive_size, default=0, help="queue bytes")
    queue.add_argument("--latency", type=argtypes.positive_duration, default=0.0, help="queue time")
    netargs.add_filter(p)
    netargs.add_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.BandwidthSpec(
        rate_bits_per_second=args.rate,
        burst_bytes=args.burst,
        limit_bytes=args.limit,
        interface=args.interface or "",
        filter=netargs.traffic_filter(args),
        replace_existing_qdisc=args.replace_existing_qdisc,
    )
    if args.latency:
        spec.latency.CopyFrom(to_duration(args.latency))
    return pb.FaultSpec(bandwidth=spec), netargs.target(args)
