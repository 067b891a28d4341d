"""brownout inject partition --to CIDR [--port P] [--protocol P] [--direction D] [--exclude CIDR]"""

from __future__ import annotations

import argparse

from brownout.v1 import agent_pb2 as pb
from controller.cli.kinds import netargs

NAME = "partition"
HELP = "silently drop traffic to and from peers (nftables)"

DIRECTIONS = {
    "both": pb.DIRECTION_BOTH,
    "egress": pb.DIRECTION_EGRESS,
    "ingress": pb.DIRECTION_INGRESS,
}


def add_arguments(p: argparse.ArgumentParser) -> None:
    netargs.add_cidrs(p, "--to", "peers to cut off (repeat)", required=True)
    netargs.add_ports(p, "--port", "only the peers' ports (repeat)")
    p.add_argument("--protocol", choices=sorted(netargs.PROTOCOLS), default="any")
    p.add_argument("--direction", choices=sorted(DIRECTIONS), default="both")
    netargs.add_cidrs(p, "--exclude", "never cut these (repeat)")
    netargs.add_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.PartitionSpec(
        peers=args.to,
        ports=args.port,
        protocol=netargs.PROTOCOLS[args.protocol],
        direction=DIRECTIONS[args.direction],
        exclude=args.exclude,
    )
    return pb.FaultSpec(partition=spec), netargs.target(args)
