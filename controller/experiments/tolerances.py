"""Chaos Toolkit tolerances: an exact value, a [lo, hi] range, a list of
allowed values, a regex, a JSONPath, or a probe that judges the value.

A probe's value is either a plain value (Prometheus: a number) or a mapping
(HTTP: status/body/latency; process: status/stdout/stderr). Against a mapping
a tolerance checks one key: `target` when given, otherwise "status" for exact
numbers and ranges and the text key ("body"/"stdout") for strings and regexes.

A two-number list is a range (Brownout's reading; chaoslib reads it as the
allowed statuses when the value is an HTTP answer); any other list is the
set of allowed values. A JSONPath tolerance reads as chaoslib's: the value
(or its `target` key), parsed as JSON when it is text, matches the path at
least once, or `count` times, or its matches equal `expect`.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from jsonpath_ng.ext.parser import parse as jsonpath

from brownout.errors import ConfigError

Kind = Literal["exact", "range", "regex", "members", "jsonpath", "probe"]
_NO_EXPECT = object()


@dataclass(frozen=True)
class Tolerance:
    kind: Kind
    value: object = None
    low: float | None = None
    high: float | None = None
    pattern: str = ""
    target: str | None = None
    members: tuple[object, ...] = ()
    count: int | None = None
    expect: object = _NO_EXPECT
    probe: Any = None  # a probe Activity whose python function gets value=

    def describe(self) -> str:
        on = f" on {self.target}" if self.target else ""
        if self.kind == "exact":
            return f"== {self.value!r}{on}"
        if self.kind == "members":
            return f"in {list(self.members)!r}{on}"
        if self.kind == "jsonpath":
            want = f" == {self.expect!r}" if self.expect is not _NO_EXPECT else ""
            want += f" x{self.count}" if self.count is not None else ""
            return f"matches jsonpath {self.pattern}{want}{on}"
        if self.kind == "probe":
            return f"accepted by probe {getattr(self.probe, 'name', '?')}"
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


def _jsonpath(raw: Mapping[str, Any], where: str, target: str | None) -> Tolerance:
    path = raw.get("path")
    if not isinstance(path, str) or not path.strip():
        raise ConfigError(f"{where}.path", "a jsonpath tolerance needs a path, e.g. $.status")
    try:
        jsonpath(path.strip())
    except Exception as exc:  # the parser raises several types, some undocumented
        raise ConfigError(f"{where}.path", f"not a JSONPath: {path!r} ({exc})") from None
    count = raw.get("count")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ConfigError(f"{where}.count", f"must be a whole number >= 0, got {count!r}")
    expect = raw.get("expect", _NO_EXPECT)
    return Tolerance("jsonpath", pattern=path.strip(), target=target, count=count, expect=expect)


def parse(raw: object, where: str) -> Tolerance:
    """Parse a tolerance as written in an experiment file (probe tolerances
    are parsed by the caller, who knows providers)."""
    if isinstance(raw, bool | int | float | str):
        return Tolerance("exact", value=raw)
    if isinstance(raw, list):
        if len(raw) == 2 and all(x is None or _number(x) for x in raw):
            return _range(raw, where, None)
        if not raw:
            raise ConfigError(where, "an empty list allows nothing")
        return Tolerance("members", members=tuple(raw))
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
    if kind == "jsonpath":
        return _jsonpath(raw, where, target)
    raise ConfigError(
        f"{where}.type",
        f"unknown tolerance type {kind!r}: use range, regex, exact, jsonpath or probe",
    )


def _json_matches(tol: Tolerance, value: object) -> tuple[bool, list[object]]:
    if tol.target and isinstance(value, Mapping):
        value = value.get(tol.target, value)
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    found = [m.value for m in jsonpath(tol.pattern).find(value)]
    ok = bool(found)
    if tol.count is not None:
        ok = len(found) == tol.count
    if tol.expect is not _NO_EXPECT:
        ok = found == (tol.expect if isinstance(tol.expect, list) else [tol.expect])
    return ok, found


def _select(tol: Tolerance, value: object, text_key: str) -> tuple[object, str | None]:
    if not isinstance(value, Mapping):
        return value, None
    key = tol.target
    if key is None:
        textual = (
            tol.kind == "regex"
            or (tol.kind == "exact" and isinstance(tol.value, str))
            or (tol.kind == "members" and all(isinstance(m, str) for m in tol.members))
        )
        key = text_key if textual else "status"
    return value.get(key), key


def check(tol: Tolerance, value: object, text_key: str = "body") -> Verdict:
    if tol.kind == "jsonpath":
        ok, found = _json_matches(tol, value)
        shown = repr(found)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        verb = "meets" if ok else "violates"
        return Verdict(ok, found, f"found {shown}: {verb} {tol.describe()}")
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
    elif tol.kind == "members":
        ok = any(
            math.isclose(float(m), float(observed))  # type: ignore[arg-type]
            if _number(m) and _number(observed)
            else m == observed
            for m in tol.members
        )
    else:
        ok = re.search(tol.pattern, str(observed)) is not None
    return Verdict(ok, observed, f"{label} {'meets' if ok else 'violates'} {tol.describe()}")
