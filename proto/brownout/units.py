"""Human units: durations ("1m30s"), sizes ("1GiB") and percents, parsed and
rendered; and durations to and from protobuf's Duration."""

from __future__ import annotations

import argparse
import math
import re
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.duration_pb2 import Duration

T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_DURATION_SCALE = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgtp]?i?b?)", re.IGNORECASE)
_SIZE_SCALE = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1024,
    "ki": 1024,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1024**2,
    "mi": 1024**2,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1024**3,
    "gi": 1024**3,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1024**4,
    "ti": 1024**4,
}


def parse_duration(text: str) -> float:
    """Seconds from '30s', '1m30s', '250ms' or a bare number of seconds."""
    s = text.strip()
    try:
        value = float(s)
    except ValueError:
        pos, total = 0, 0.0
        for m in _DURATION_PART.finditer(s):
            if m.start() != pos:
                break
            total += float(m.group(1)) * _DURATION_SCALE[m.group(2)]
            pos = m.end()
        if pos != len(s) or not s:
            raise ValueError(f"invalid duration {text!r}: use e.g. 30s, 1m30s, 250ms") from None
        return total
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"invalid duration {text!r}: must be a finite, non-negative number")
    return value


def parse_size(text: str) -> int:
    """Bytes from '1GiB', '500MiB', '100M' (decimal) or a bare number of bytes."""
    m = _SIZE.fullmatch(text.strip())
    if m is None or m.group(2).lower() not in _SIZE_SCALE:
        raise ValueError(f"invalid size {text!r}: use e.g. 512MiB, 2GiB, 100MB")
    return int(float(m.group(1)) * _SIZE_SCALE[m.group(2).lower()])


def parse_percent(text: str) -> float:
    """A percent from '30%' or '30'; finite, 0..100."""
    s = text.strip().removesuffix("%")
    try:
        value = float(s)
    except ValueError:
        raise ValueError(f"invalid percent {text!r}: use e.g. 30%") from None
    if not math.isfinite(value) or not 0 <= value <= 100:
        raise ValueError(f"invalid percent {text!r}: must be between 0 and 100")
    return value


def format_duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"


def argtype(parse: Callable[[str], T]) -> Callable[[str], T]:
    """Wrap a ValueError-raising parser so argparse prints its message."""

    def convert(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    convert.__name__ = parse.__name__
    return convert


def to_duration(seconds: float) -> Duration:
    """Seconds as a protobuf Duration, rounded to the nearest nanosecond. The
    one conversion both the agent and the controller use."""
    d = Duration()
    d.FromNanoseconds(round(seconds * 1e9))
    return d


def from_duration(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9
