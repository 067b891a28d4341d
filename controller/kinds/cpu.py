"""brownout inject cpu --cores N|--core-list 0,2 --load P [--cgroup PATH|--pid PID]"""

from __future__ import annotations

import argparse

from brownout.v1 import agent_pb2 as pb
from controller.kinds.common import add_process_target, percent, process_target, typed

NAME = "cpu"
HELP = "burn CPU at a duty cycle on some cores"


def core_list(text: str) -> list[int]:
    cores: list[int] = []
    for part in text.split(","):
        first, sep, last = part.strip().partition("-")
        if sep:
            cores += range(int(first), int(last) + 1)
        else:
            cores.append(int(first))
    return cores


def add_arguments(p: argparse.ArgumentParser) -> None:
    cores = p.add_mutually_exclusive_group(required=True)
    cores.add_argument("--cores", type=int, help="number of cores (the agent picks them)")
    cores.add_argument("--core-list", type=typed(core_list), help="explicit cores, e.g. 0,2-3")
    p.add_argument(
        "--load",
        type=typed(percent),
        required=True,
        help="percent per core, 1-100; with a target that has a CPU quota, of that quota",
    )
    add_process_target(p)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec = pb.CpuSpec(cores=args.cores or 0, core_list=args.core_list or [], load_percent=args.load)
    return pb.FaultSpec(cpu=spec), process_target(args)
