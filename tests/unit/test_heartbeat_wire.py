"""The lease-datagram wire (brownout/heartbeat.py): it round-trips, a changed
byte is never accepted, and the parsers answer any bytes with Malformed or
Forged only (Hypothesis, as the RPC fuzzing does for the agent)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brownout import heartbeat as hb

pytestmark = pytest.mark.unit

LEASES = ["lease-0123456789abcdef", "lease-fedcba9876543210"]


def test_request_and_answer_round_trip() -> None:
    key_id, key = hb.new_key()
    data = hb.encode_request(key_id, key, 42, LEASES)
    assert len(hb.encode_request(key_id, key, 1, LEASES[:1])) == 69
    assert hb.request_key_id(data) == key_id
    assert hb.decode_request(data, key) == hb.Request(42, key_id, tuple(LEASES))
    states = [hb.LeaseState(LEASES[0], True, 2.5, 3), hb.LeaseState(LEASES[1], False, 0.0)]
    answer = hb.encode_answer(key_id, key, 42, 7, states)
    assert len(hb.encode_answer(key_id, key, 1, 1, states[:1])) == 86
    assert hb.answer_key_id(answer) == key_id
    decoded = hb.decode_answer(answer, key)
    assert (decoded.counter, decoded.generation) == (42, 7)
    assert decoded.leases == tuple(states)


def test_every_changed_byte_is_refused() -> None:
    key_id, key = hb.new_key()
    data = hb.encode_request(key_id, key, 42, LEASES)
    for i in range(len(data)):
        bad = bytearray(data)
        bad[i] ^= 0x01
        with pytest.raises((hb.Malformed, hb.Forged)):
            hb.decode_request(bytes(bad), key)
    with pytest.raises(hb.Forged):
        hb.decode_request(data, hb.new_key()[1])  # another holder's key
    answer = hb.encode_answer(key_id, key, 42, 7, [hb.LeaseState(LEASES[0], True, 1)])
    with pytest.raises(hb.Forged):
        hb.decode_answer(answer[:-1] + bytes([answer[-1] ^ 1]), key)


@pytest.mark.parametrize("bad", ["lease-xyz", "0123456789abcdef", "lease-0123456789abcdeg"])
def test_only_lease_ids_are_encoded(bad: str) -> None:
    with pytest.raises(hb.Malformed):
        hb.lease_bytes(bad)


def test_a_request_names_one_to_64_leases() -> None:
    key_id, key = hb.new_key()
    with pytest.raises(ValueError):
        hb.encode_request(key_id, key, 1, [])
    with pytest.raises(ValueError):
        hb.encode_request(key_id, key, 1, [f"lease-{i:016x}" for i in range(65)])
    assert (
        hb.decode_request(
            hb.encode_request(key_id, key, 1, [f"lease-{i:016x}" for i in range(64)]), key
        ).leases[-1]
        == "lease-000000000000003f"
    )


def test_leases_packed_once_encode_as_the_ids_do() -> None:
    key_id, key = hb.new_key()
    packed = hb.pack_leases(LEASES)
    assert hb.encode_request(key_id, key, 9, packed) == hb.encode_request(key_id, key, 9, LEASES)
    for bad in (b"", b"\x00" * 7, b"\x00" * 8 * 65):
        with pytest.raises(ValueError):
            hb.encode_request(key_id, key, 1, bad)
    with pytest.raises(ValueError):
        hb.pack_leases([])


KEY = hb.new_key()


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=1200))
def test_the_parsers_refuse_any_bytes_cleanly(data: bytes) -> None:
    for parse in (
        lambda: hb.decode_request(data, KEY[1]),
        lambda: hb.decode_answer(data, KEY[1]),
        lambda: hb.request_key_id(data),
        lambda: hb.answer_key_id(data),
    ):
        with contextlib.suppress(hb.Malformed, hb.Forged):
            parse()


@settings(max_examples=500, deadline=None)
@given(
    st.integers(0, 2**64 - 1),
    st.lists(st.binary(min_size=8, max_size=8), min_size=1, max_size=64),
    st.integers(0, 2**64 - 1),
)
def test_valid_datagrams_decode_to_what_was_sent(
    counter: int, raw: list[bytes], generation: int
) -> None:
    key_id, key = KEY
    leases = [hb.lease_id(r) for r in raw]
    assert hb.decode_request(hb.encode_request(key_id, key, counter, leases), key).leases == tuple(
        leases
    )
    states = [hb.LeaseState(x, True, 1.0) for x in leases]
    assert (
        hb.decode_answer(hb.encode_answer(key_id, key, counter, generation, states), key).generation
        == generation
    )
