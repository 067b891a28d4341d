"""brownout inject memory --size 1GiB|--percent 30 [--rate 256MiB/s] [--cgroup P|--pid N]"""

from __future__ import annotations

import argparse

from agent.units import parse_size
from brownout.v1 import agent_pb2 as pb
from controller.kinds.common import add_process_target, percent, process_target, typed

NAME = "memory"
HELP = "leak resident memory, at a rate, up to a size"
MIB = 1024 * 1024


def rate(text: str) -> float:
    """MiB/s from '256MiB/s', '1GiB/s' or a bare number of MiB/s."""
    s = text.strip().removesuffix("/s")
    try:
        return float(s)
    except ValueError:
        return parse_size(s) / MIB


def add_arguments(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--size", type=typed(parse_size), help="bytes to leak, e.g. 1GiB")
    size.add_argument("--percent", type=typed(percent), help="percent of total memory")
    p.add_argument(
        "--rate", type=typed(rate), default=0.0, help="ramp, e.g. 256MiB/s (default 0: all at once)"
    )
    add_process_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.MemorySpec(rate_mib_per_second=args.rate)
    if args.size is not None:
        spec.bytes = args.size
    else:
        spec.percent = args.percent
    return pb.FaultSpec(memory=spec), process_target(args)
