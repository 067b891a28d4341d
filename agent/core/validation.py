"""Checks shared by request and spec validators. Each raises InvalidArgument
naming the field. Durations arrive as protobuf's (seconds, nanos) pair, as
plain ints: the core never sees the wire type."""

from __future__ import annotations

import math

from agent.core.errors import InvalidArgument

MAX_PROTO_DURATION_SECONDS = 315_576_000_000  # protobuf's own bound (10,000 years)


def finite_number(field: str, value: float) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value}")
    return value


def number_in_range(field: str, value: float, low: float, high: float, unit: str = "") -> float:
    finite_number(field, value)
    if not low <= value <= high:
        raise InvalidArgument(
            field, f"must be between {low:g} and {high:g}{unit}, got {value:g}{unit}"
        )
    return value


def duration_seconds(
    field: str,
    secs: int,
    nanos: int,
    *,
    maximum: float,
    minimum: float = 0.0,
    required: bool = True,
) -> float:
    """A duration given as (seconds, nanos), checked against (minimum, maximum]."""
    if secs == 0 and nanos == 0:
        if required:
            raise InvalidArgument(field, f"is required and must be > 0 (at most {maximum:g}s)")
        return 0.0
    if not -999_999_999 <= nanos <= 999_999_999 or (secs > 0 > nanos) or (secs < 0 < nanos):
        raise InvalidArgument(field, f"is not a valid duration (seconds={secs}, nanos={nanos})")
    if abs(secs) > MAX_PROTO_DURATION_SECONDS:
        raise InvalidArgument(field, f"is out of range ({secs}s)")
    total = secs + nanos / 1e9
    if total <= 0:
        raise InvalidArgument(field, f"must be > 0, got {total:g}s")
    if total < minimum:
        raise InvalidArgument(field, f"must be at least {minimum:g}s, got {total:g}s")
    if total > maximum:
        raise InvalidArgument(
            field, f"{total:g}s exceeds this agent's limit of {maximum:g}s (see GetInfo limits)"
        )
    return total
