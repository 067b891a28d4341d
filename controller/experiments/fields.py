"""Checks of single fields of an experiment file, each raising ConfigError
naming where the value is; and Chaos Toolkit's `configuration` values with
their ${name} substitution."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
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


_ENV_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": lambda v: str(v).strip().lower() in ("1", "true", "yes", "on"),
    "json": json.loads,
}


def _from_env(value: Mapping[str, Any], where: str) -> Any:
    key = value.get("key")
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{where}.key", "the environment variable's name is required")
    if key not in os.environ and "default" not in value:
        raise ConfigError(where, f"environment variable {key} is not set")
    raw = os.environ.get(key, value.get("default"))
    kind = value.get("env_var_type", "str")
    if kind not in _ENV_TYPES:
        raise ConfigError(f"{where}.env_var_type", f"one of {', '.join(_ENV_TYPES)}, got {kind!r}")
    if raw is None or (key not in os.environ and kind == "str"):
        return raw
    try:
        return _ENV_TYPES[kind](raw)
    except ValueError as exc:
        raise ConfigError(where, f"{key}={raw!r} is not {kind}: {exc}") from None


def configuration(raw: object) -> dict[str, Any]:
    """Chaos Toolkit configuration: plain values (kept with their type), or
    {type: env, key, default, env_var_type}."""
    values: dict[str, Any] = {}
    for name, value in mapping(raw or {}, "configuration").items():
        where = f"configuration.{name}"
        if isinstance(value, Mapping) and "type" in value:
            if value["type"] != "env":
                raise ConfigError(f"{where}.type", "only {type: env, key: NAME} is supported")
            values[str(name)] = _from_env(value, where)
        else:
            values[str(name)] = value
    return values


def secrets(raw: object) -> dict[str, dict[str, Any]]:
    """Chaos Toolkit secrets, scope -> name -> value: inline values,
    {type: env, key}, or (Brownout) {type: file, path}, read now so that a
    missing source stops the run before anything is injected."""
    out: dict[str, dict[str, Any]] = {}
    for scope, keys in mapping(raw or {}, "secrets").items():
        out[str(scope)] = {}
        for name, value in mapping(keys, f"secrets.{scope}").items():
            where = f"secrets.{scope}.{name}"
            if not isinstance(value, Mapping):
                out[str(scope)][str(name)] = value
                continue
            kind = value.get("type")
            if kind == "env":
                if value.get("key") not in os.environ:
                    raise ConfigError(where, f"environment variable {value.get('key')} is not set")
                out[str(scope)][str(name)] = _from_env(value, where)
            elif kind == "file":
                path = value.get("path")
                if not isinstance(path, str) or not path:
                    raise ConfigError(f"{where}.path", "the file's path is required")
                try:
                    out[str(scope)][str(name)] = Path(path).read_text().strip()
                except OSError as exc:
                    raise ConfigError(
                        f"{where}.path", f"cannot read {path}: {exc.strerror}"
                    ) from None
            else:
                raise ConfigError(f"{where}.type", f"use env or file, got {kind!r}")
    return out


def redacted(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The experiment as journaled: inline secret values replaced (the
    definitions of env and file secrets name no value and are kept)."""
    out = dict(doc)
    raw = doc.get("secrets")
    if isinstance(raw, Mapping):
        out["secrets"] = {
            scope: (
                {k: v if isinstance(v, Mapping) else "***" for k, v in keys.items()}
                if isinstance(keys, Mapping)
                else "***"
            )
            for scope, keys in raw.items()
        }
    return out


def flat(secret_scopes: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    return {k: v for keys in secret_scopes.values() for k, v in keys.items()}


def substitute(node: Any, values: Mapping[str, Any]) -> Any:
    """${name} replaced, everywhere; a string that is only `${name}` takes
    the value with its type (a number stays a number), as chaoslib does."""
    if isinstance(node, str):
        whole = _VAR.fullmatch(node)
        if whole is not None and whole[1] in values:
            return values[whole[1]]

        def repl(m: re.Match[str]) -> str:
            if m[1] not in values:
                raise ConfigError("configuration", f"${{{m[1]}}} is used but not defined")
            return str(values[m[1]])

        return _VAR.sub(repl, node)
    if isinstance(node, list):
        return [substitute(x, values) for x in node]
    if isinstance(node, Mapping):
        return {k: substitute(v, values) for k, v in node.items()}
    return node
