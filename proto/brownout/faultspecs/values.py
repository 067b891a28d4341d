"""Value parsers for fault options: text in, a value out, ValueError with a
message a person can act on. The CLI wraps them as argparse types."""

from __future__ import annotations

import ipaddress
import math
import re
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from brownout.dnsnames import parse_pattern
from brownout.units import parse_duration, parse_percent, parse_size
from brownout.v1 import agent_pb2 as pb

N = TypeVar("N", int, float)
IFNAMSIZ = 16  # the kernel's limit on interface names, NUL included
MIB = 1024 * 1024


def whole(text: str) -> int:
    try:
        return int(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a whole number") from None


def int_in(lo: int, hi: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = whole(text)
        if value < lo or (hi is not None and value > hi):
            bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
            raise ValueError(f"must be {bound}, got {value}")
        return value

    return parse


def bounded(parse: Callable[[str], N], ok: Callable[[N], bool], rule: str) -> Callable[[str], N]:
    """parse, then refuse a value that is not ok, saying the rule."""

    def check(text: str) -> N:
        value = parse(text)
        if not ok(value):
            raise ValueError(f"must be {rule}, got {text!r}")
        return value

    check.__name__ = getattr(parse, "__name__", "value")
    return check


duration = parse_duration
positive_duration = bounded(parse_duration, lambda v: v > 0, "more than 0")
size = parse_size
positive_size = bounded(parse_size, lambda v: v > 0, "more than 0 bytes")
percent = parse_percent
load_percent = bounded(parse_percent, lambda v: v >= 1, "between 1 and 100%")
positive_percent = bounded(parse_percent, lambda v: v > 0, "more than 0% and at most 100%")
pid = int_in(1, 2**22)


def text(value: str) -> str:
    if not value.strip():
        raise ValueError("is empty")
    if "\0" in value:
        raise ValueError("must not contain a NUL byte")
    return value


def cidr(value: str) -> str:
    try:
        ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address or CIDR (e.g. 10.0.0.0/24)") from None
    return value.strip()


CONTAINER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,127}$")


def container_id(value: str) -> str:
    if not CONTAINER_ID.match(value.strip()):
        raise ValueError(f"{value!r} is not a container id (letters, digits, '_.+-')")
    return value.strip()


def ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value.strip())
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    return value.strip()


def dns_name(value: str) -> str:
    parse_pattern(value)
    return value.strip()


def interface(value: str) -> str:
    name = text(value)
    if len(name.encode()) >= IFNAMSIZ or "/" in name or name.strip() != name or name in ".":
        raise ValueError(f"{name!r} is not an interface name (at most 15 bytes, no '/')")
    return name


def cgroup(value: str) -> str:
    path = text(value)
    if ".." in Path(path).parts:
        raise ValueError(f"{path!r} must not contain '..'")
    return path


def core_list(value: str) -> list[int]:
    """'0,2-3' -> [0, 2, 3]; the agent checks that the cores exist."""
    cores: list[int] = []
    for part in value.split(","):
        first, sep, last = part.strip().partition("-")
        if not first.isdigit() or (sep and not last.isdigit()):
            raise ValueError(f"invalid core list {value!r}: use e.g. 0,2-3")
        lo, hi = int(first), int(last) if sep else int(first)
        if hi < lo:
            raise ValueError(f"invalid core range {part.strip()!r}: {hi} is below {lo}")
        cores += range(lo, hi + 1)
    if len(set(cores)) != len(cores):
        raise ValueError(f"invalid core list {value!r}: a core is listed twice")
    return cores


def memory_rate(value: str) -> float:
    """MiB/s from '256MiB/s', '1GiB/s' or a bare number of MiB/s."""
    s = value.strip().removesuffix("/s")
    try:
        number = float(s)
    except ValueError:
        try:
            return parse_size(s) / MIB
        except ValueError:
            raise ValueError(f"invalid rate {value!r}: use e.g. 256MiB/s or 64 (MiB/s)") from None
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"invalid rate {value!r}: must be a finite number of MiB/s >= 0")
    return number


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)(bit|bps)?", re.IGNORECASE)
_RATE_SCALE = {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000, "t": 1_000_000_000_000}


def bit_rate(value: str) -> int:
    """Bits per second from '10mbit', '1.5gbit', '500kbit' or a bare number of bits.
    'bps' means bits per second here too (tc's 'bps' is bytes: not accepted to avoid
    a silent 8x error)."""
    m = _RATE.fullmatch(value.strip())
    if m is None or (m.group(3) or "bit").lower() != "bit":
        raise ValueError(f"invalid rate {value!r}: use e.g. 10mbit, 1gbit, 500kbit")
    return int(float(m.group(1)) * _RATE_SCALE[m.group(2).lower()])


positive_bit_rate = bounded(bit_rate, lambda v: v > 0, "more than 0")


def port_range(value: str) -> pb.PortRange:
    """'80' or '8000-8100', ports 1-65535."""
    first, sep, last = value.strip().partition("-")
    if not first.isdigit() or (sep and not last.isdigit()):
        raise ValueError(f"invalid port {value!r}: use e.g. 80 or 8000-8100")
    lo, hi = int(first), int(last) if sep else int(first)
    if not 1 <= lo <= hi <= 65535:
        raise ValueError(f"invalid port range {value!r}: ports are 1-65535, first <= last")
    return pb.PortRange(first=lo, last=hi if sep else 0)


def signal_number(value: str) -> int:
    """A signal by name (KILL, SIGTERM) or number (9)."""
    text = value.strip()
    if text.isdigit():
        number = int(text)
        if number not in signal.valid_signals():
            raise ValueError(f"{number} is not a signal number")
        return number
    name = text.upper()
    name = name if name.startswith("SIG") else f"SIG{name}"
    try:
        return int(signal.Signals[name])
    except KeyError:
        raise ValueError(f"{value!r} is not a signal name (e.g. KILL, TERM, INT, 9)") from None


def signed_duration(value: str) -> float:
    """A duration with an optional sign: +30s, -5m, 90s."""
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    seconds = parse_duration(text[1:] if text[:1] in ("+", "-") else text)
    if seconds <= 0:
        raise ValueError(f"{value!r}: give a non-zero offset, e.g. +30s or -5m")
    return sign * seconds
