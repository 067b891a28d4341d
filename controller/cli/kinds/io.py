"""brownout inject io --path DIR --workers N --mode read|write|mixed --block-size 4KiB"""

from __future__ import annotations

import argparse

from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes
from controller.cli.kinds.common import add_process_target, process_target

NAME = "io"
HELP = "block IO from workers on the filesystem holding a directory"
MODES = {"read": pb.IO_MODE_READ, "write": pb.IO_MODE_WRITE, "mixed": pb.IO_MODE_MIXED}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--path",
        type=argtypes.text,
        required=True,
        help="absolute path to a directory on the filesystem",
    )
    p.add_argument(
        "--workers", type=argtypes.int_in(1, 64), default=1, help="worker processes (default 1)"
    )
    p.add_argument("--mode", choices=sorted(MODES), required=True)
    p.add_argument("--block-size", type=argtypes.positive_size, default=4096, help="default 4KiB")
    p.add_argument(
        "--bytes-per-worker",
        type=argtypes.positive_size,
        default=0,
        help="size of each worker's file (default 64MiB)",
    )
    p.add_argument("--direct", action="store_true", help="O_DIRECT: bypass the page cache")
    add_process_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.IoSpec(
        path=args.path,
        workers=args.workers,
        mode=MODES[args.mode],
        block_size_bytes=args.block_size,
        direct=args.direct,
        bytes_per_worker=args.bytes_per_worker,
    )
    return pb.FaultSpec(io=spec), process_target(args)
