"""brownout inject disk --path DIR --fill 90%|--write 2GiB|--leave 500MiB [--allow-full]"""

from __future__ import annotations

import argparse

from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes

NAME = "disk"
HELP = "fill the filesystem holding a directory"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--path",
        type=argtypes.text,
        required=True,
        help="absolute path to a directory on the filesystem",
    )
    amount = p.add_mutually_exclusive_group(required=True)
    amount.add_argument(
        "--fill", type=argtypes.positive_percent, help="target percent used, as df shows it"
    )
    amount.add_argument("--write", type=argtypes.positive_size, help="bytes to write, e.g. 2GiB")
    amount.add_argument("--leave", type=argtypes.size, help="bytes to leave free, e.g. 500MiB")
    p.add_argument("--allow-full", action="store_true", help="may consume the agent's disk reserve")


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.DiskSpec(path=args.path, allow_full=args.allow_full)
    if args.fill is not None:
        spec.fill_percent = args.fill
    elif args.write is not None:
        spec.write_bytes = args.write
    else:
        spec.leave_free_bytes = args.leave
    return pb.FaultSpec(disk=spec), pb.Target()
