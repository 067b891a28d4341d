"""brownout inject netem --delay 50ms [--jitter 5ms] [--loss 1%] [filters] [--netns NS|--pid P]"""

from __future__ import annotations

import argparse

from agent.units import parse_duration
from brownout.v1 import agent_pb2 as pb
from controller.client import to_duration
from controller.kinds import netargs
from controller.kinds.common import percent, typed

NAME = "netem"
HELP = "delay, lose, duplicate, corrupt or reorder packets on an interface"

DISTRIBUTIONS = {
    "uniform": pb.DISTRIBUTION_UNIFORM,
    "normal": pb.DISTRIBUTION_NORMAL,
    "pareto": pb.DISTRIBUTION_PARETO,
    "paretonormal": pb.DISTRIBUTION_PARETONORMAL,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--delay", type=typed(parse_duration), default=0.0, help="e.g. 50ms")
    p.add_argument("--jitter", type=typed(parse_duration), default=0.0, help="e.g. 5ms")
    p.add_argument("--correlation", type=typed(percent), default=0.0, help="delay correlation %%")
    p.add_argument("--distribution", choices=sorted(DISTRIBUTIONS), default="uniform")
    p.add_argument("--loss", type=typed(percent), default=0.0, help="e.g. 1%%")
    p.add_argument("--loss-correlation", type=typed(percent), default=0.0)
    p.add_argument("--duplicate", type=typed(percent), default=0.0)
    p.add_argument("--corrupt", type=typed(percent), default=0.0)
    p.add_argument("--reorder", type=typed(percent), default=0.0, help="needs --delay")
    p.add_argument("--reorder-correlation", type=typed(percent), default=0.0)
    p.add_argument("--gap", type=int, default=0, help="reorder gap")
    p.add_argument("--rate", type=typed(netargs.parse_rate), default=0, help="e.g. 10mbit")
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
        interface=args.interface,
        filter=netargs.traffic_filter(args),
        replace_existing_qdisc=args.replace_existing_qdisc,
    )
    if args.delay:
        spec.delay.CopyFrom(to_duration(args.delay))
    if args.jitter:
        spec.jitter.CopyFrom(to_duration(args.jitter))
    return pb.FaultSpec(netem=spec), netargs.target(args)
