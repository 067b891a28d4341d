"""`brownout inject KIND` flags, made from the fault-spec tables."""

from __future__ import annotations

import argparse

from brownout import faultspecs
from brownout.faultspecs import Kind, Option
from brownout.v1 import agent_pb2 as pb
from controller.cli.argtypes import checked


def _add(target: argparse.ArgumentParser | argparse._MutuallyExclusiveGroup, o: Option) -> None:
    help = o.help.replace("%", "%%")  # argparse formats help with %
    if o.switch:
        target.add_argument(o.flag, dest=o.name, action="store_true", help=help)
    elif o.choices:
        target.add_argument(o.flag, dest=o.name, choices=o.choices, default=o.default,
                            required=o.required, help=help or None)  # fmt: skip
    else:
        assert o.parse is not None
        target.add_argument(o.flag, dest=o.name, type=checked(o.parse),
                            action="append" if o.repeat else "store",
                            default=None if o.repeat and o.required else o.absent(),
                            required=o.required, metavar=o.metavar, help=help or None)  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser, kind: Kind) -> None:
    groups: dict[str, argparse._MutuallyExclusiveGroup] = {}
    for o in kind.options:
        if o.group and o.group not in groups:
            groups[o.group] = parser.add_mutually_exclusive_group(
                required=o.group in kind.required_groups
            )
        _add(groups[o.group] if o.group else parser, o)


def build(args: argparse.Namespace) -> tuple[pb.FaultSpec, pb.Target]:
    """The spec and target of `brownout inject KIND` from its parsed flags."""
    kind = faultspecs.by_name(args.kind)
    return kind.build({o.name: getattr(args, o.name) for o in kind.options})
