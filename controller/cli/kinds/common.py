"""Argument helpers shared by the inject subcommands."""

from __future__ import annotations

import argparse

from brownout.v1 import agent_pb2 as pb
from controller.cli import argtypes


def add_process_target(p: argparse.ArgumentParser) -> None:
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--cgroup",
        type=argtypes.cgroup,
        help="run inside this cgroup (path under the cgroup mount)",
    )
    group.add_argument("--pid", type=argtypes.pid, help="target the cgroup of this process")


def process_target(args: argparse.Namespace) -> pb.Target:
    if getattr(args, "cgroup", None):
        return pb.Target(cgroup=args.cgroup)
    if getattr(args, "pid", None):
        return pb.Target(pid=args.pid)
    return pb.Target()
