"""Chaos Toolkit tolerances: an exact value, a [lo, hi] range, or a regex.

A probe's value is either a plain value (Prometheus: a number) or a mapping
(HTTP: status/body/latency; process: status/stdout/stderr). Against a mapping
a tolerance checks one key: `target` when given, otherwise "status" for exact
numbers and ranges and the text key ("body"/"stdout") for strings and regexes.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from controller.errors import ConfigError

Kind = Literal["exact", "range", "regex"]


@dataclass(frozen=True)
class Tolerance:
    kind: Kind
    value: object = None
    low: float | None = None
    high: float | None = None
    pattern: str = ""
    target: str | None = None

    def describe(self) -> str:
        on = f" on {self.target}" if self.target else ""
        if self.kind == "exact":
            return f"== {self.value!r}{on}"
        if self.kind == "range":
            lo = "-inf" if self.low is None else f"{self.low:g}"
            hi = "+inf" if self.high is None else f"{self.high:g}"
            return f"in [{lo}, {hi}]{on}"
        return f"matches /{self.pattern}/{on}"


@dataclass(frozen=True)
class Verdict:
    ok: bool
    observed: object
    detail: str


def _number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _bound(raw: object, where: str) -> float | None:
    if raw is None:
        return None
    if not _number(raw):
        raise ConfigError(where, f"range bounds must be numbers or null, got {raw!r}")
    assert isinstance(raw, int | float)
    return float(raw)


def _range(raw: object, where: str, target: str | None) -> Tolerance:
    if not isinstance(raw, list) or len(raw) != 2:
        raise ConfigError(where, f"a range is [low, high], got {raw!r}")
    low, high = _bound(raw[0], f"{where}[0]"), _bound(raw[1], f"{where}[1]")
    if low is None and high is None:
        raise ConfigError(where, "a range needs at least one bound")
    if low is not None and high is not None and low > high:
        raise ConfigError(where, f"low {low:g} is above high {high:g}")
    return Tolerance("range", low=low, high=high, target=target)


def parse(raw: object, where: str) -> Tolerance:
    """Parse a tolerance as written in an experiment file."""
    if isinstance(raw, bool | int | float | str):
        return Tolerance("exact", value=raw)
    if isinstance(raw, list):
        return _range(raw, where, None)
    if not isinstance(raw, Mapping):
        raise ConfigError(where, f"expected a value, [low, high] or a mapping, got {raw!r}")
    kind = raw.get("type")
    target = raw.get("target")
    if target is not None and not isinstance(target, str):
        raise ConfigError(f"{where}.target", "must be a string")
    if kind == "range":
        if "range" in raw:
            return _range(raw["range"], f"{where}.range", target)
        return _range([raw.get("min"), raw.get("max")], where, target)
    if kind in ("regex", "regexp"):
        pattern = raw.get("pattern")
        if not isinstance(pattern, str):
            raise ConfigError(f"{where}.pattern", "a regex tolerance needs a string pattern")
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ConfigError(f"{where}.pattern", f"invalid regex: {exc}") from None
        return Tolerance("regex", pattern=pattern, target=target)
    if kind == "exact":
        if "value" not in raw:
            raise ConfigError(f"{where}.value", "an exact tolerance needs a value")
        return Tolerance("exact", value=raw["value"], target=target)
    raise ConfigError(
        f"{where}.type", f"unknown tolerance type {kind!r}: use range, regex or exact"
    )


def _select(tol: Tolerance, value: object, text_key: str) -> tuple[object, str | None]:
    if not isinstance(value, Mapping):
        return value, None
    key = tol.target
    if key is None:
        textual = tol.kind == "regex" or (tol.kind == "exact" and isinstance(tol.value, str))
        key = text_key if textual else "status"
    return value.get(key), key


def check(tol: Tolerance, value: object, text_key: str = "body") -> Verdict:
    observed, key = _select(tol, value, text_key)
    shown = repr(observed)
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    label = f"{key}={shown}" if key else shown
    if observed is None:
        return Verdict(False, None, f"no value{f' for {key}' if key else ''}")
    if tol.kind == "exact":
        if _number(tol.value) and _number(observed):
            assert isinstance(tol.value, int | float) and isinstance(observed, int | float)
            ok = math.isclose(float(tol.value), float(observed))
        elif isinstance(tol.value, str) and isinstance(observed, str):
            ok = tol.value.strip() == observed.strip()
        else:
            ok = tol.value == observed
    elif tol.kind == "range":
        try:
            x = float(observed)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return Verdict(False, observed, f"{label} is not a number")
        ok = (tol.low is None or x >= tol.low) and (tol.high is None or x <= tol.high)
    else:
        ok = re.search(tol.pattern, str(observed)) is not None
    return Verdict(ok, observed, f"{label} {'meets' if ok else 'violates'} {tol.describe()}")
