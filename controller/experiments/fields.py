"""Checks of single fields of an experiment file, each raising ConfigError
naming where the value is; and Chaos Toolkit's `configuration` values with
their ${name} substitution."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from brownout.units import parse_duration
from controller.errors import ConfigError


def duration(raw: object, where: str, allow_zero: bool = True) -> float:
    if isinstance(raw, bool) or not isinstance(raw, int | float | str):
        raise ConfigError(
            where, f"expected a duration like 30s or a number of seconds, got {raw!r}"
        )
    try:
        value = float(raw) if not isinstance(raw, str) else parse_duration(raw)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None
    if value < 0 or (value == 0 and not allow_zero):
        raise ConfigError(where, f"must be {'>= 0' if allow_zero else '> 0'}, got {raw!r}")
    return value


def mapping(raw: object, where: str) -> Mapping[str, Any]:
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"expected a mapping, got {type(raw).__name__}")
    return raw


def no_unknown(raw: Mapping[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ConfigError(where, f"unknown key(s) {unknown}; allowed: {sorted(allowed)}")


def string(raw: Mapping[str, Any], key: str, where: str, required: bool = True) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value):
        raise ConfigError(f"{where}.{key}", "a non-empty string is required")
    return value


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def configuration(raw: object) -> dict[str, str]:
    """Chaos Toolkit configuration: plain values, or {type: env, key, default}."""
    values: dict[str, str] = {}
    for name, value in mapping(raw or {}, "configuration").items():
        if isinstance(value, Mapping):
            if value.get("type") != "env" or not isinstance(value.get("key"), str):
                raise ConfigError(
                    f"configuration.{name}", "only {type: env, key: NAME} is supported"
                )
            env = os.environ.get(value["key"], value.get("default"))
            if env is None:
                raise ConfigError(
                    f"configuration.{name}", f"environment variable {value['key']} is not set"
                )
            values[str(name)] = str(env)
        else:
            values[str(name)] = str(value)
    return values


def substitute(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):

        def repl(m: re.Match[str]) -> str:
            if m[1] not in values:
                raise ConfigError("configuration", f"${{{m[1]}}} is used but not defined")
            return values[m[1]]

        return _VAR.sub(repl, node)
    if isinstance(node, list):
        return [substitute(x, values) for x in node]
    if isinstance(node, Mapping):
        return {k: substitute(v, values) for k, v in node.items()}
    return node
