"""brownout inject netem --delay 50ms [--jitter 5ms] [--loss 1%] [filters] [--netns NS|--pid P]"""

from __future__ import annotations

import argparse

from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes
from controller.cli.kinds import netargs

NAME = "netem"
HELP = "delay, lose, duplicate, corrupt or reorder packets on an interface"

DISTRIBUTIONS = {
    "uniform": pb.DISTRIBUTION_UNIFORM,
    "normal": pb.DISTRIBUTION_NORMAL,
    "pareto": pb.DISTRIBUTION_PARETO,
    "paretonormal": pb.DISTRIBUTION_PARETONORMAL,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--delay", type=argtypes.duration, default=0.0, help="e.g. 50ms")
    p.add_argument("--jitter", type=argtypes.duration, default=0.0, help="e.g. 5ms")
    p.add_argument("--correlation", type=argtypes.percent, default=0.0, help="delay correlation %%")
    p.add_argument("--distribution", choices=sorted(DISTRIBUTIONS), default="uniform")
    p.add_argument("--loss", type=argtypes.percent, default=0.0, help="e.g. 1%%")
    p.add_argument("--loss-correlation", type=argtypes.percent, default=0.0)
    p.add_argument("--duplicate", type=argtypes.percent, default=0.0)
    p.add_argument("--corrupt", type=argtypes.percent, default=0.0)
    p.add_argument("--reorder", type=argtypes.percent, default=0.0, help="needs --delay")
    p.add_argument("--reorder-correlation", type=argtypes.percent, default=0.0)
    p.add_argument("--gap", type=argtypes.int_in(0, 2**32 - 1), default=0, help="reorder gap")
    p.add_argument(
        "--rate", type=argtypes.checked(netargs.parse_rate), default=0, help="e.g. 10mbit"
    )
    netargs.add_filter(p)
    netargs.add_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.NetemSpec(
        delay_correlation_percent=args.correlation,
        distribution=DISTRIBUTIONS[args.distribution],
        loss_percent=args.loss,
        loss_correlation_percent=args.loss_correlation,
        duplicate_percent=args.duplicate,
        corrupt_percent=args.corrupt,
        reorder_percent=args.reorder,
        reorder_correlation_percent=args.reorder_correlation,
        reorder_gap=args.gap,
        rate_bits_per_second=args.rate,
        interface=args.interface or "",
        filter=netargs.traffic_filter(args),
        replace_existing_qdisc=args.replace_existing_qdisc,
    )
    if args.delay:
        spec.delay.CopyFrom(to_duration(args.delay))
    if args.jitter:
        spec.jitter.CopyFrom(to_duration(args.jitter))
    return pb.FaultSpec(netem=spec), netargs.target(args)
