"""Hypothesis strategies for arbitrary protobuf messages, built from their descriptors.

Nothing here knows the Brownout messages by name: `messages(pb.InjectFaultRequest)`
walks the descriptor, so a new fault kind (a new FaultSpec arm) or a new field
is fuzzed as soon as it is in the generated stubs. Values lean on the edges:
integer extremes and negatives, NaN/inf/huge doubles, empty/unicode/very long/
path-like strings, unknown enum values, invalid Durations and Timestamps, and
fields this agent has never heard of. `raw_requests` goes below that, to bytes
that may not parse at all.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Literal, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
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


class _Builder:
    """Strategies per descriptor, cached, with a depth bound for recursive types.

    A wild builder draws every value from the edges. A plausible one draws most
    values from ordinary ones and one in PLAUSIBLE_ODDS from the edges, so that
    validation gets past the first field and meets the odd one deeper down.
    """

    def __init__(self, with_unknown: bool, plausible: bool) -> None:
        self._with_unknown = with_unknown
        self._plausible = plausible
        self._cache: dict[tuple[str, int], st.SearchStrategy[Message]] = {}

    def _pick(
        self, wild: st.SearchStrategy[T], usual: st.SearchStrategy[T]
    ) -> st.SearchStrategy[T]:
        return weighted(usual, PLAUSIBLE_ODDS - 1, wild) if self._plausible else wild

    def message(self, desc: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        key = (desc.full_name, depth)
        if key not in self._cache:
            self._cache[key] = self._build(desc, depth)
        return self._cache[key]

    def _build(self, desc: Descriptor, depth: int) -> st.SearchStrategy[Message]:
        cls = GetMessageClass(desc)
        if desc.full_name in WELL_KNOWN:
            wild, usual = WELL_KNOWN[desc.full_name]
            return self._pick(wild(cls), usual(cls))
        # Fields without presence (proto3 scalars, repeated) are always drawn:
        # their zero values are among the draws. Fields with presence (messages,
        # `optional` scalars) may be left unset (None), seldom if plausible.
        values: dict[str, st.SearchStrategy[Any]] = {}
        for field in desc.fields:
            if field.containing_oneof is None:
                value = self.field(field, depth)
                if value is not None and field.has_presence:
                    value = self._pick(st.one_of(st.none(), value), value)
                if value is not None:
                    values[field.name] = value
        # A oneof has no arm set, or one. Plausibly none half of the time: an
        # unset Target, say, is what most requests have.
        arms = []
        for oneof in desc.oneofs:
            choices = [
                st.tuples(st.just(f.name), value)
                for f in oneof.fields
                if (value := self.field(f, depth)) is not None
            ]
            unset: st.SearchStrategy[Any] = st.none()
            if not choices:  # every arm is below the depth bound
                arms.append(unset)
            elif self._plausible:
                arms.append(weighted(unset, len(choices), st.one_of(*choices)))
            else:
                arms.append(st.one_of(unset, *choices))
        # Unknown fields at the top only: nested ones exercise the same parser
        # and make every example much slower to generate.
        unknown = (
            st.one_of(st.just(b""), unknown_fields(desc))
            if self._with_unknown and depth == 0
            else st.just(b"")
        )

        def build(drawn: Mapping[str, Any], chosen: tuple[Any, ...], extra: bytes) -> Message:
            msg = cls()
            for name, value in drawn.items():
                if value is not None:
                    _set(msg, desc.fields_by_name[name], value)
            for arm in chosen:
                if arm is not None:
                    _set(msg, desc.fields_by_name[arm[0]], arm[1])
            if extra:
                msg.MergeFromString(extra)
            return msg

        return st.builds(build, st.fixed_dictionaries(values), st.tuples(*arms), unknown)

    def field(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        """A strategy for the field's value (a list if repeated, a dict if a map),
        or None when the depth bound leaves a message field unset."""
        mt = field.message_type
        if mt is not None and mt.GetOptions().map_entry:
            key = self.single(mt.fields_by_name["key"], depth + 1)
            value = self.single(mt.fields_by_name["value"], depth + 1)
            if key is None or value is None:
                return None
            return st.dictionaries(key, value, max_size=MAX_REPEATED)
        single = self.single(field, depth)
        if single is None:
            return None
        if field.is_repeated:
            return st.lists(single, max_size=MAX_REPEATED)
        return single

    def single(self, field: FieldDescriptor, depth: int) -> st.SearchStrategy[Any] | None:
        t = field.type
        if t in INT_RANGES:
            lo, hi = INT_RANGES[t]
            return self._pick(int_values(lo, hi), plausible_ints(lo, hi))
        if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
            width: Width = 64 if t == F.TYPE_DOUBLE else 32
            return self._pick(doubles(width), plausible_doubles(width))
        if t == F.TYPE_BOOL:
            return st.booleans()
        if t == F.TYPE_STRING:
            return self._pick(strings(), plausible_strings())
        if t == F.TYPE_BYTES:
            return st.one_of(st.binary(max_size=64), strings().map(str.encode))
        if t == F.TYPE_ENUM:
            assert field.enum_type is not None
            known = st.sampled_from([v.number for v in field.enum_type.values])
            # proto3 enums are open: any int32 is a legal value on the wire.
            return self._pick(st.one_of(known, int_values(*INT32)), known)
        if t in (F.TYPE_MESSAGE, F.TYPE_GROUP):
            if depth >= MAX_DEPTH or field.message_type is None:
                return None
            return self.message(field.message_type, depth + 1)
        raise AssertionError(f"unhandled field type {t} of {field.full_name}")


def _set(msg: Message, field: FieldDescriptor, value: Any) -> None:
    target = getattr(msg, field.name)
    mt = field.message_type
    if mt is not None and mt.GetOptions().map_entry:
        composite = mt.fields_by_name["value"].message_type is not None
        for k, v in value.items():
            if composite:
                target[k].CopyFrom(v)
            else:
                target[k] = v
    elif field.is_repeated:
        for item in value:
            if mt is not None:
                target.add().CopyFrom(item)
            else:
                target.append(item)
    elif mt is not None:
        target.CopyFrom(value)
    else:
        setattr(msg, field.name, value)


def messages(
    message: type[Message] | Descriptor, with_unknown: bool = True
) -> st.SearchStrategy[Message]:
    """Arbitrary instances of a message type (a class or its DESCRIPTOR), with
    fields it does not define unless `with_unknown` is false. A third are wild,
    the rest plausible with the odd wild value (see _Builder)."""
    desc = message if isinstance(message, Descriptor) else descriptor(message)
    return _messages(desc, with_unknown)


@functools.cache
def _messages(desc: Descriptor, with_unknown: bool) -> st.SearchStrategy[Message]:
    # Cached: hypothesis inspects every new strategy object, which costs more
    # than drawing from it when a test asks for one per example.
    plausible = _Builder(with_unknown, plausible=True).message(desc, 0)
    return weighted(plausible, 2, _Builder(with_unknown, plausible=False).message(desc, 0))


def descriptor(message: Message | type[Message]) -> Descriptor:
    # The stubs give DESCRIPTOR the upb class, which mypy sees as another type.
    return message.DESCRIPTOR  # type: ignore[return-value]


def edge_values(field: FieldDescriptor) -> list[Any]:
    """The edge values of a scalar field, or [] for a message field."""
    t = field.type
    if t in INT_RANGES:
        return list(int_specials(*INT_RANGES[t]))
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return double_specials(64 if t == F.TYPE_DOUBLE else 32)
    if t == F.TYPE_STRING:
        return SPECIAL_STRINGS + PLAUSIBLE_STRINGS + ["a" * 5000, "💥" * 2000]
    if t == F.TYPE_BYTES:
        return [b"", b"\x00", b"\xff" * 300]
    if t == F.TYPE_BOOL:
        return [False, True]
    if t == F.TYPE_ENUM:
        assert field.enum_type is not None
        return [v.number for v in field.enum_type.values] + [-1, 99, INT32[0], INT32[1]]
    return []


def usual_values(field: FieldDescriptor) -> list[Any]:
    """A few ordinary values of a field: scalars, Durations, Timestamps."""
    t = field.type
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return [v for v in PLAUSIBLE_INTS if lo <= v <= hi]
    if t in (F.TYPE_DOUBLE, F.TYPE_FLOAT):
        return list(PLAUSIBLE_DOUBLES)
    if t == F.TYPE_STRING:
        return list(PLAUSIBLE_STRINGS)
    if t == F.TYPE_BOOL:
        return [True]
    if t == F.TYPE_ENUM:
        assert field.enum_type is not None
        return [v.number for v in field.enum_type.values]
    mt = field.message_type
    if mt is not None and mt.full_name in WELL_KNOWN:
        cls = GetMessageClass(mt)
        return [cls(seconds=1), cls(nanos=100_000_000), cls(seconds=2)]
    return []


def single_field_messages(cls: type[Message]) -> Iterator[Message]:
    """Messages with one top-level field set to an ordinary value: a place to
    look for a valid message when random ones rarely are."""
    for field in descriptor(cls).fields:
        for value in usual_values(field):
            msg = cls()
            if field.is_repeated:
                getattr(msg, field.name).append(value)
            elif field.message_type is not None:
                getattr(msg, field.name).CopyFrom(value)
            else:
                setattr(msg, field.name, value)
            yield msg


def one_field_off(message: Message) -> Iterator[Message]:
    """Copies of `message`, each with one top-level scalar field set to one of
    its edge values: from a message that passes validation, each copy tests
    one check with all the others passed."""
    for field in descriptor(message).fields:
        for value in edge_values(field):
            copy = type(message)()
            copy.CopyFrom(message)
            if field.is_repeated:
                getattr(copy, field.name)[:] = [value]
            else:
                setattr(copy, field.name, value)
            yield copy


def _mutate(data: bytes, how: int, where: int, junk: bytes) -> bytes:
    if not data:
        return junk
    i = where % (len(data) + 1)
    if how == 0:  # truncate
        return data[:i]
    if how == 1:  # flip a byte
        j = min(i, len(data) - 1)
        return data[:j] + bytes([data[j] ^ (junk[0] if junk else 0xFF)]) + data[j + 1 :]
    if how == 2:  # insert
        return data[:i] + junk + data[i:]
    if how == 3:  # overwrite
        return data[:i] + junk + data[i + len(junk) :]
    return data + junk  # append


def raw_requests(message: type[Message]) -> st.SearchStrategy[bytes]:
    """Bytes for a method taking `message`: random bytes, mangled encodings of
    real requests, and known field numbers with the wrong wire type, invalid
    UTF-8 or lengths past the end. Most do not parse; some do."""
    desc = message.DESCRIPTOR
    known = sorted(desc.fields_by_number) or [1]
    mangled = st.builds(
        _mutate,
        messages(message).map(lambda m: m.SerializeToString()),
        st.integers(0, 4),
        st.integers(0, 2**16),
        st.binary(min_size=1, max_size=16),
    )
    bad_lengths = st.builds(
        lambda n, claimed, data: _varint((n << 3) | 2) + _varint(claimed) + data,
        st.sampled_from(known),
        st.one_of(st.integers(0, 64), st.integers(*UINT64)),
        st.binary(max_size=16),
    )
    bad_utf8 = st.builds(
        lambda n, data: _wire_field(n, 2, data),
        st.sampled_from(known),
        st.sampled_from(
            [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"a\xe2\x82", b"\xf8\x88\x80\x80\x80"]
        ),
    )
    overlong_varint = st.builds(
        lambda n, k: _varint(n << 3) + b"\xff" * k + b"\x01",
        st.sampled_from(known),
        st.integers(9, 12),
    )
    return st.one_of(
        st.binary(max_size=128),
        mangled,
        _wire_fields(st.sampled_from(known)),
        bad_lengths,
        bad_utf8,
        overlong_varint,
        st.builds(bytes.__add__, _wire_fields(st.sampled_from(known)), st.binary(max_size=8)),
    )
