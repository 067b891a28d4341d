"""Fault specs from named values: the one place a `FaultSpec` and its `Target`
are built from what a person wrote.

Each kind is a table of options (name, value parser, default, required,
exclusive group). The CLI turns the table into flags for `brownout inject
KIND`; an experiment's `arguments:` mapping goes through `from_mapping`. Both
end in the kind's `build`, so a flag and a mapping key mean the same thing and
are checked by the same parser.
"""

from __future__ import annotations

from brownout.faultspecs import network, process, resource, system
from brownout.faultspecs.options import Kind, Option, Values, from_mapping
from brownout.v1 import agent_pb2 as pb

KINDS: tuple[Kind, ...] = (*resource.KINDS, *network.KINDS, *system.KINDS, *process.KINDS)


def by_name(name: str) -> Kind:
    for kind in KINDS:
        if kind.name == name:
            return kind
    raise KeyError(name)


def build(kind: str, values: Values) -> tuple[pb.FaultSpec, pb.Target]:
    """The spec and target from parsed values (every option of the kind present)."""
    return by_name(kind).build(values)


__all__ = ["KINDS", "Kind", "Option", "Values", "build", "by_name", "from_mapping"]
