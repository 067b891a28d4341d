"""Which agents an experiment touches: label selectors, a mode, a fleet-wide cap.

The random pick is made once, from a recorded seed, so a run can be explained
(and replayed) afterwards. Its order is also the ramp order: each blast-radius
step takes a longer prefix of it, so agents join and never leave.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from controller.errors import ConfigError

_REQ = re.compile(
    r"""^\s*(?:
        (?P<not>!)\s*(?P<nkey>[\w./-]+)                          # !key
      | (?P<skey>[\w./-]+)\s*(?P<setop>in|notin)\s*\((?P<vals>[^)]*)\)  # key in (a,b)
      | (?P<key>[\w./-]+)\s*(?P<op>==|=|!=)\s*(?P<val>[\w./-]*)  # key=value
      | (?P<ekey>[\w./-]+)                                       # key
    )\s*$""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Requirement:
    key: str
    op: Literal["=", "!=", "in", "notin", "exists", "!exists"]
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        return value not in self.values  # != and notin match a missing key, as in Kubernetes


@dataclass(frozen=True)
class Selector:
    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def parse_selector(raw: object, where: str = "selector") -> Selector:
    """Kubernetes-style 'role=web,zone in (a,b),!canary' or a mapping of equalities."""
    if raw is None or raw == "":
        return Selector()
    if isinstance(raw, Mapping):
        pairs = tuple(Requirement(str(k), "=", (str(v),)) for k, v in sorted(raw.items()))
        return Selector(pairs, ",".join(f"{r.key}={r.values[0]}" for r in pairs))
    if not isinstance(raw, str):
        raise ConfigError(where, f"expected a string or a mapping of labels, got {raw!r}")
    reqs: list[Requirement] = []
    for part in _split_top(raw):
        m = _REQ.match(part)
        if m is None:
            raise ConfigError(
                where,
                f"cannot parse {part.strip()!r}: use key=value, key!=value,"
                " key in (a,b), key notin (a,b), key or !key",
            )
        if m["nkey"]:
            reqs.append(Requirement(m["nkey"], "!exists"))
        elif m["skey"]:
            vals = tuple(v.strip() for v in m["vals"].split(",") if v.strip())
            if not vals:
                raise ConfigError(where, f"{part.strip()!r} lists no values")
            reqs.append(Requirement(m["skey"], "in" if m["setop"] == "in" else "notin", vals))
        elif m["key"]:
            reqs.append(Requirement(m["key"], "!=" if m["op"] == "!=" else "=", (m["val"],)))
        else:
            reqs.append(Requirement(m["ekey"], "exists"))
    return Selector(tuple(reqs), raw.strip())


@dataclass(frozen=True)
class Mode:
    kind: Literal["all", "count", "percent"]
    amount: float = 0

    def __str__(self) -> str:
        if self.kind == "all":
            return "ALL"
        if self.kind == "count":
            return f"COUNT({int(self.amount)})"
        return f"PERCENT({self.amount:g})"

    def count(self, n: int) -> int:
        if self.kind == "all":
            return n
        if self.kind == "count":
            return min(n, int(self.amount))
        return percent_of(self.amount, n)


_MODE = re.compile(r"^\s*(ALL|COUNT|PERCENT)\s*(?:\(\s*([0-9.]+)\s*%?\s*\))?\s*$", re.IGNORECASE)


def parse_mode(raw: object, where: str = "mode") -> Mode:
    m = _MODE.match(str(raw)) if isinstance(raw, str) else None
    if m is None:
        raise ConfigError(where, f"expected ALL, COUNT(n) or PERCENT(p), got {raw!r}")
    name, arg = m[1].upper(), m[2]
    if name == "ALL":
        if arg is not None:
            raise ConfigError(where, "ALL takes no argument")
        return Mode("all")
    if arg is None:
        raise ConfigError(where, f"{name} needs an argument, e.g. {name}(2)")
    amount = float(arg)
    if name == "COUNT":
        if amount != int(amount) or amount < 1:
            raise ConfigError(where, f"COUNT needs a whole number >= 1, got {arg}")
        return Mode("count", amount)
    if not 0 < amount <= 100:
        raise ConfigError(where, f"PERCENT must be in (0, 100], got {arg}")
    return Mode("percent", amount)


def percent_of(percent: float, n: int) -> int:
    """Agents for a percent of n: rounded down, so a step never exceeds its share,
    but at least one, so 1 % of a small fleet still tests something."""
    if percent <= 0 or n <= 0:
        return 0
    # round() first so that float noise cannot turn 3.0000000001 into 4 or 2.9999999 into 2.
    return min(n, max(1, math.floor(round(percent * n / 100, 9))))


@dataclass
class Selection:
    seed: int
    fleet_size: int
    eligible: list[str]
    targets: list[str]
    mode: str
    selector: str
    max_fleet_percent: float
    capped: bool = False
    skipped: dict[str, str] = field(default_factory=dict)
    # Each target's labels as it announced them: where the run happened
    # (production or not), read later by `brownout maturity`.
    target_labels: dict[str, dict[str, str]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "fleet_size": self.fleet_size,
            "selector": self.selector,
            "mode": self.mode,
            "max_fleet_percent": self.max_fleet_percent,
            "eligible": self.eligible,
            "targets": self.targets,
            "capped": self.capped,
            "skipped": self.skipped,
            "target_labels": self.target_labels,
        }


def new_seed() -> int:
    return random.SystemRandom().randrange(2**32)


def select(
    eligible: Sequence[str],
    mode: Mode,
    seed: int,
    fleet_size: int,
    max_fleet_percent: float = 100.0,
    selector: str = "",
) -> Selection:
    """Pick targets from eligible addresses; the result's order is the ramp order."""
    pool = sorted(set(eligible))
    random.Random(seed).shuffle(pool)
    chosen = pool[: mode.count(len(pool))]
    cap = math.floor(round(max_fleet_percent * fleet_size / 100, 9))
    capped = len(chosen) > cap
    return Selection(
        seed=seed,
        fleet_size=fleet_size,
        eligible=sorted(set(eligible)),
        targets=chosen[:cap],
        mode=str(mode),
        selector=selector,
        max_fleet_percent=max_fleet_percent,
        capped=capped,
    )


def ramp_counts(percents: Sequence[float], n: int) -> list[int]:
    """How many of n targets each ramp step covers; never shrinking."""
    counts: list[int] = []
    for p in percents:
        counts.append(max(percent_of(p, n), counts[-1] if counts else 0))
    return counts
