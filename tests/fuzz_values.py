"""The values fuzzed requests are made of: integers, doubles and strings that
lean on the edges (and plausible ones), Durations and Timestamps valid and
not, and raw protobuf wire fields for unknown field numbers. Used by
tests/strategies.py to fill messages."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

F = FieldDescriptor
Width = Literal[32, 64]
T = TypeVar("T")
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
UINT32 = (0, 2**32 - 1)
UINT64 = (0, 2**64 - 1)
INT_RANGES: dict[int, tuple[int, int]] = {
    F.TYPE_INT32: INT32,
    F.TYPE_SINT32: INT32,
    F.TYPE_SFIXED32: INT32,
    F.TYPE_INT64: INT64,
    F.TYPE_SINT64: INT64,
    F.TYPE_SFIXED64: INT64,
    F.TYPE_UINT32: UINT32,
    F.TYPE_FIXED32: UINT32,
    F.TYPE_UINT64: UINT64,
    F.TYPE_FIXED64: UINT64,
}
MAX_PROTO_DURATION_SECONDS = 315_576_000_000
NANOS = 1_000_000_000
MAX_REPEATED = 4
MAX_DEPTH = 6
# In a plausible message, one value in this many is drawn from the edges.
PLAUSIBLE_ODDS = 12

PLAUSIBLE_STRINGS = [
    "",
    "/",
    "/tmp",
    "/dev/shm",
    "lo",
    "fuzz",
    "127.0.0.1",
    "127.0.0.1/32",
    "::1",
    "::1/128",
    "10.0.0.0/8",
    "192.0.2.1",
]
SPECIAL_STRINGS = [
    "",
    " ",
    "\t\n",
    "0",
    "-1",
    ".",
    "..",
    "../",
    "../../../../etc/passwd",
    "/",
    "//",
    "/.",
    "/..",
    "/tmp",
    "/tmp/../tmp/./",
    "/etc/passwd",
    "/dev/null",
    "/dev/zero",
    "/dev/shm",
    "/proc",
    "/proc/self/root",
    "/proc/1/ns/net",
    "/proc/self/fd/0",
    "/sys/fs/cgroup",
    "/sys/fs/cgroup/cpu",
    "/sys/fs/cgroup/memory/..",
    "/system.slice",
    "/var/run/netns",
    "/var/run/netns/../../../etc",
    "relative/path",
    "~root",
    "C:\\Windows",
    "a\x00b",
    "\x00",
    "-rf",
    "--help",
    "$(reboot)",
    "`id`",
    "; rm -rf / #",
    "&& true",
    "%s%n%x",
    "{}",
    "lease-",
    "fault-",
    "lease-0000000000000000",
    "fault-0000000000000000",
    "lo",
    "eth0",
    "veth0@if2",
    "127.0.0.1",
    "127.0.0.1:7070",
    "::1",
    "[::1]:7070",
    "0.0.0.0/0",
    "::/0",
    "10.0.0.0/8",
    "10.0.0.1/33",
    "256.256.256.256",
    "fe80::1%lo",
    "localhost",
    "*",
    # NAME_MAX and PATH_MAX, and one past each.
    "a" * 255,
    "a" * 256,
    "/" + "a" * 256,
    "/a" * 2048,
    "a" * 4097,
    "\u202eevil",
    "\ufeff",
    "é",
    "💥",
    "ﬁ",
]
SEGMENTS = ["", ".", "..", "tmp", "proc", "self", "sys", "fs", "cgroup", "netns", "a", "..."]


PLAUSIBLE_INTS = [0, 1, 2, 3, 4, 8, 16, 64, 100, 512, 1000, 1024, 4096, 65535]
PLAUSIBLE_INTS += [10**6, 8 * 10**6, 2**20, 2**30]
PLAUSIBLE_DOUBLES = [0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 99.0, 100.0]


def int_specials(lo: int, hi: int) -> list[int]:
    return sorted(
        {v for v in (lo, lo + 1, hi - 1, hi, 0, 1, -1, 2, 3, 100, 101, 1024) if lo <= v <= hi}
    )


def int_values(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.sampled_from(int_specials(lo, hi)),
        st.integers(max(lo, -8), min(hi, 300)),
        st.integers(lo, hi),
    )


def plausible_ints(lo: int, hi: int) -> st.SearchStrategy[int]:
    return st.one_of(
        st.integers(max(lo, 0), min(hi, 4)),
        st.sampled_from([v for v in PLAUSIBLE_INTS if lo <= v <= hi]),
    )


def double_specials(width: Width = 64) -> list[float]:
    return [
        0.0,
        -0.0,
        math.nan,
        -math.nan,
        math.inf,
        -math.inf,
        1.0,
        50.0,
        99.9999,
        100.0,
        100.0000001,
        -1.0,
        1e-9,
        5e-324,
    ] + ([1e308, -1e308, 1.7976931348623157e308] if width == 64 else [3.4e38, -3.4e38])


def doubles(width: Width = 64) -> st.SearchStrategy[float]:
    return st.one_of(
        st.sampled_from(double_specials(width)),
        st.floats(-10.0, 200.0, width=width),
        st.floats(allow_nan=True, allow_infinity=True, width=width),
    )


def plausible_doubles(width: Width = 64) -> st.SearchStrategy[float]:
    return st.one_of(st.sampled_from(PLAUSIBLE_DOUBLES), st.floats(0.0, 100.0, width=width))


def strings() -> st.SearchStrategy[str]:
    chars = st.characters(exclude_categories=["Cs"])  # protobuf strings are UTF-8
    return st.one_of(
        st.sampled_from(SPECIAL_STRINGS),
        st.text(chars, max_size=24),
        st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=8).map("/".join),
        st.builds(
            lambda unit, n: unit * n,
            st.sampled_from(["a", "../", "/x", "é", "💥", "\x00"]),
            st.integers(64, 5000),
        ),
    )


def plausible_strings() -> st.SearchStrategy[str]:
    return st.sampled_from(PLAUSIBLE_STRINGS)


def durations(cls: type[Message]) -> st.SearchStrategy[Message]:
    """google.protobuf.Duration, valid or not: out-of-range seconds, nanos out
    of +-999,999,999 or of the wrong sign."""
    seconds = st.one_of(
        st.sampled_from(
            [
                0,
                1,
                2,
                3,
                -1,
                MAX_PROTO_DURATION_SECONDS,
                MAX_PROTO_DURATION_SECONDS + 1,
                -MAX_PROTO_DURATION_SECONDS - 1,
                *INT64,
            ]
        ),
        st.integers(-5, 10),
        st.integers(*INT64),
    )
    nanos = st.one_of(
        st.sampled_from([0, 1, -1, NANOS - 1, NANOS, -NANOS + 1, -NANOS, 500_000_000, *INT32]),
        st.integers(0, NANOS - 1),
        st.integers(*INT32),
    )
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)


def plausible_durations(cls: type[Message]) -> st.SearchStrategy[Message]:
    return st.builds(
        lambda s, n: cls(seconds=s, nanos=n),
        st.integers(0, 3),
        st.sampled_from([0, 1, 10_000_000, 100_000_000, 500_000_000, NANOS - 1]),
    )


def timestamps(cls: type[Message]) -> st.SearchStrategy[Message]:
    """google.protobuf.Timestamp, valid or not (before year 1, after 9999, bad nanos)."""
    seconds = st.one_of(
        st.sampled_from([0, -62_135_596_801, 253_402_300_800, 1_700_000_000, *INT64]),
        st.integers(*INT64),
    )
    nanos = st.one_of(st.sampled_from([0, -1, NANOS - 1, NANOS]), st.integers(*INT32))
    return st.builds(lambda s, n: cls(seconds=s, nanos=n), seconds, nanos)


def plausible_timestamps(cls: type[Message]) -> st.SearchStrategy[Message]:
    return st.builds(lambda s: cls(seconds=s), st.integers(1_600_000_000, 2_000_000_000))


WellKnown = Callable[[type[Message]], st.SearchStrategy[Message]]
# (wild, plausible) strategies for the well-known types used in the protos.
WELL_KNOWN: dict[str, tuple[WellKnown, WellKnown]] = {
    "google.protobuf.Duration": (durations, plausible_durations),
    "google.protobuf.Timestamp": (timestamps, plausible_timestamps),
}


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _wire_field(number: int, wire_type: int, payload: Any) -> bytes:
    tag = _varint((number << 3) | wire_type)
    if wire_type == 0:
        return tag + _varint(int(payload))
    if wire_type == 1:
        return tag + int(payload).to_bytes(8, "little", signed=False)
    if wire_type == 5:
        return tag + int(payload).to_bytes(4, "little", signed=False)
    data = bytes(payload)
    return tag + _varint(len(data)) + data


def _wire_fields(numbers: st.SearchStrategy[int]) -> st.SearchStrategy[bytes]:
    """Well-formed wire-format fields with the given numbers and any payload."""
    field = st.one_of(
        st.builds(_wire_field, numbers, st.just(0), st.integers(*UINT64)),
        st.builds(_wire_field, numbers, st.just(1), st.integers(*UINT64)),
        st.builds(_wire_field, numbers, st.just(5), st.integers(*UINT32)),
        st.builds(_wire_field, numbers, st.just(2), st.binary(max_size=32)),
    )
    return st.lists(field, min_size=1, max_size=3).map(b"".join)


def unknown_fields(desc: Descriptor) -> st.SearchStrategy[bytes]:
    """Fields a newer client might send: numbers this descriptor does not define."""
    numbers = st.one_of(st.integers(1, 64), st.integers(1, 2**29 - 1)).filter(
        lambda n: n not in desc.fields_by_number and not 19000 <= n <= 19999
    )
    return _wire_fields(numbers)


def _copy(strategy: st.SearchStrategy[T]) -> st.SearchStrategy[T]:
    def same(value: T) -> T:
        return value

    return strategy.map(same)


def weighted(
    often: st.SearchStrategy[T], times: int, rest: st.SearchStrategy[T]
) -> st.SearchStrategy[T]:
    """`often` `times` times as likely as `rest`. one_of draws its branches
    evenly but merges equal ones, hence copies made distinct by their own pack."""
    return st.one_of(*[_copy(often) for _ in range(times)], rest)
