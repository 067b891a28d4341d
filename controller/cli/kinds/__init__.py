"""`brownout inject KIND` subcommands: one module per fault kind.

Each module has NAME, HELP, add_arguments(parser) and build(args) returning
(FaultSpec, Target). Register new kinds in KINDS.
"""

from __future__ import annotations

import argparse
from types import ModuleType

from brownout.v1 import agent_pb2 as pb
from controller.cli.kinds import bandwidth, cpu, disk, io, memory, netem, partition

KINDS: list[ModuleType] = [cpu, memory, disk, io, netem, bandwidth, partition]


def by_name(name: str) -> ModuleType:
    for module in KINDS:
        if name == module.NAME:
            return module
    raise KeyError(name)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    spec, target = by_name(args.kind).build(args)
    assert isinstance(spec, pb.FaultSpec) and isinstance(target, pb.Target)
    return spec, target
