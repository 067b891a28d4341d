"""brownout inject memory --size 1GiB|--percent 30 [--rate 256MiB/s] [--cgroup P|--pid N]"""

from __future__ import annotations

import argparse
import math

from brownout.units import parse_size
from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes
from controller.cli.kinds.common import add_process_target, process_target

NAME = "memory"
HELP = "leak resident memory, at a rate, up to a size"
MIB = 1024 * 1024


def rate(text: str) -> float:
    """MiB/s from '256MiB/s', '1GiB/s' or a bare number of MiB/s."""
    s = text.strip().removesuffix("/s")
    try:
        value = float(s)
    except ValueError:
        try:
            return parse_size(s) / MIB
        except ValueError:
            raise ValueError(f"invalid rate {text!r}: use e.g. 256MiB/s or 64 (MiB/s)") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid rate {text!r}: must be a finite number of MiB/s >= 0")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--size", type=argtypes.positive_size, help="bytes to leak, e.g. 1GiB")
    size.add_argument("--percent", type=argtypes.positive_percent, help="percent of total memory")
    p.add_argument(
        "--rate",
        type=argtypes.checked(rate),
        default=0.0,
        help="ramp, e.g. 256MiB/s (default 0: all at once)",
    )
    add_process_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.MemorySpec(rate_mib_per_second=args.rate)
    if args.size is not None:
        spec.bytes = args.size
    else:
        spec.percent = args.percent
    return pb.FaultSpec(memory=spec), process_target(args)
