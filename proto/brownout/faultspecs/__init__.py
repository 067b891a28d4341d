"""Fault specs from named values: the one place a `FaultSpec` and its `Target`
are built from what a person wrote.

Each kind is a table of options (name, value parser, default, required,
exclusive group). The CLI turns the table into flags for `brownout inject
KIND`; an experiment's `arguments:` mapping goes through `from_mapping`. Both
end in the kind's `build`, so a flag and a mapping key mean the same thing and
are checked by the same parser.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from google.protobuf import json_format

from brownout import kinds
from brownout.errors import ConfigError
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


def _mapping(raw: object, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(raw).__name__}")
    return raw


def fault(
    name: str,
    arguments: object = None,
    spec: object = None,
    target: object = None,
    where: str = "",
) -> tuple[pb.FaultSpec, pb.Target]:
    """A fault action as a file writes it, in an experiment (`type: brownout`) or
    for the Chaos Toolkit extension (`inject_fault`): a kind and either
    `arguments` (as for `brownout inject`) or `spec` (the proto's fields), and
    optionally `target` (the proto's fields). Errors name the key under `where`."""
    pre = f"{where}." if where else ""
    if name not in kinds.NAMES:
        raise ConfigError(f"{pre}fault", f"unknown fault {name!r}; one of {', '.join(kinds.NAMES)}")
    if (arguments is None) == (spec is None):
        raise ConfigError(
            where, "give either arguments: (as for `brownout inject`) or spec: (proto fields)"
        )
    if spec is not None:
        built = pb.FaultSpec()
        try:
            json_format.ParseDict({name: dict(_mapping(spec, f"{pre}spec"))}, built)
        except json_format.ParseError as exc:
            raise ConfigError(f"{pre}spec", str(exc)) from None
        aim = pb.Target()
    else:
        try:
            kind = by_name(name)
        except KeyError:
            names = ", ".join(k.name for k in KINDS)
            raise ConfigError(
                f"{pre}fault",
                f"no argument mapping for {name!r} (available: {names}); give spec: instead",
            ) from None
        values = from_mapping(kind, _mapping(arguments, f"{pre}arguments"), f"{pre}arguments")
        built, aim = kind.build(values)
    if target:
        aim = pb.Target()
        try:
            json_format.ParseDict(dict(_mapping(target, f"{pre}target")), aim)
        except json_format.ParseError as exc:
            raise ConfigError(f"{pre}target", str(exc)) from None
    return built, aim


__all__ = ["KINDS", "Kind", "Option", "Values", "build", "by_name", "fault", "from_mapping"]
