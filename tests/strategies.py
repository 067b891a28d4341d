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
from collections.abc import Iterator, Mapping
from typing import Any, Literal, TypeVar

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

from tests.fuzz_values import (
    INT32,
    INT_RANGES,
    MAX_DEPTH,
    MAX_REPEATED,
    PLAUSIBLE_DOUBLES,
    PLAUSIBLE_INTS,
    PLAUSIBLE_ODDS,
    PLAUSIBLE_STRINGS,
    SPECIAL_STRINGS,
    UINT64,
    WELL_KNOWN,
    _varint,
    _wire_field,
    _wire_fields,
    double_specials,
    doubles,
    int_specials,
    int_values,
    plausible_doubles,
    plausible_ints,
    plausible_strings,
    strings,
    unknown_fields,
    weighted,
)

F = FieldDescriptor
Width = Literal[32, 64]
T = TypeVar("T")


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
