"""brownout inject cpu --cores N|--core-list 0,2 --load P [--cgroup PATH|--pid PID]"""

from __future__ import annotations

import argparse

from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes
from controller.cli.kinds.common import add_process_target, process_target

NAME = "cpu"
HELP = "burn CPU at a duty cycle on some cores"


def core_list(text: str) -> list[int]:
    """'0,2-3' -> [0, 2, 3]; the agent checks that the cores exist."""
    cores: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(f"invalid core list {text!r}: use e.g. 0,2-3")
        lo, hi = int(first), int(last) if sep else int(first)
        if hi < lo:
            raise ValueError(f"invalid core range {part.strip()!r}: {hi} is below {lo}")
        cores += range(lo, hi + 1)
    if len(set(cores)) != len(cores):
        raise ValueError(f"invalid core list {text!r}: a core is listed twice")
    return cores


def add_arguments(p: argparse.ArgumentParser) -> None:
    cores = p.add_mutually_exclusive_group(required=True)
    cores.add_argument(
        "--cores", type=argtypes.int_in(1, 4096), help="number of cores (the agent picks them)"
    )
    cores.add_argument(
        "--core-list", type=argtypes.checked(core_list), help="explicit cores, e.g. 0,2-3"
    )
    p.add_argument(
        "--load",
        type=argtypes.load_percent,
        required=True,
        help="percent per core, 1-100; with a target that has a CPU quota, of that quota",
    )
    add_process_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.CpuSpec(cores=args.cores or 0, core_list=args.core_list or [], load_percent=args.load)
    return pb.FaultSpec(cpu=spec), process_target(args)
