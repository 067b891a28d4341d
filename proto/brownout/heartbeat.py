"""Lease heartbeats by datagram: the wire layout, shared by the agent and the
controller (standard library only).

A holder that acquired leases over the authenticated gRPC channel got a
heartbeat key for them (a 16-byte id and a 32-byte secret) and the agent's
heartbeat UDP port. It renews by sending one datagram naming its leases on
that agent, with a counter that only goes up, under an HMAC-SHA256 of both;
the agent renews only on a valid MAC and a higher counter, and answers with
each lease's state and two generations: the agent's (it moves whenever any
fault there changes state) and each lease's (it moves whenever a fault under
that lease does). A holder fetches its faults over gRPC only when its lease's
generation moves. No command ever travels by datagram.

Request, controller -> agent (big-endian):

    magic    4   b"BOh1"
    counter  8   uint64, strictly increasing per key
    key id   16
    count    1   leases named, 1..64
    leases   8 x count   each lease id's 8 random bytes ("lease-" + 16 hex digits)
    mac      32  HMAC-SHA256(key, everything above)

Answer, agent -> controller:

    magic    4   b"BOa1"
    counter  8   the request's, echoed
    key id   16
    generation 8 uint64
    count    1
    leases   17 x count   8-byte id, 1-byte state (1 live, 0 gone), uint32 ms left,
                          uint32 the lease's fault generation
    mac      32  HMAC-SHA256(key, everything above)

A one-lease request is 69 bytes, its answer 86: far under any MTU.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import socket
import struct
from dataclasses import dataclass

REQUEST_MAGIC = b"BOh1"
ANSWER_MAGIC = b"BOa1"
KEY_ID_BYTES = 16
KEY_BYTES = 32
MAC_BYTES = 32
MAX_LEASES = 64
LEASE_PREFIX = "lease-"

_REQ_HEAD = struct.Struct(">4sQ16sB")
_ANS_HEAD = struct.Struct(">4sQ16sQB")
_ANS_LEASE = struct.Struct(">8sBII")


# A socket's receive buffer: room for a second of 10,000 answers while its
# reader is busy (each small datagram takes about 1 KiB of it; the default,
# ~208 KiB, holds a couple of hundred).
RECEIVE_BUFFER = 16 << 20
SO_RCVBUFFORCE = 33  # Linux's; the socket module does not name it


def widen_receive_buffer(sock: socket.socket, size: int = RECEIVE_BUFFER) -> None:
    """Past net.core.rmem_max where allowed (SO_RCVBUFFORCE needs CAP_NET_ADMIN),
    else as far as it goes."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


class Malformed(ValueError):
    """Not a heartbeat datagram of this version (dropped and counted)."""


class Forged(ValueError):
    """The MAC does not match: not from the key's holder (dropped and counted)."""


def new_key() -> tuple[bytes, bytes]:
    """A fresh (key id, key)."""
    return secrets.token_bytes(KEY_ID_BYTES), secrets.token_bytes(KEY_BYTES)


def lease_bytes(lease_id: str) -> bytes:
    if not lease_id.startswith(LEASE_PREFIX) or len(lease_id) != len(LEASE_PREFIX) + 16:
        raise Malformed(f"not a lease id: {lease_id!r}")
    try:
        return bytes.fromhex(lease_id[len(LEASE_PREFIX) :])
    except ValueError:
        raise Malformed(f"not a lease id: {lease_id!r}") from None


def lease_id(raw: bytes) -> str:
    return LEASE_PREFIX + raw.hex()


def _mac(key: bytes, body: bytes) -> bytes:
    return hmac.digest(key, body, hashlib.sha256)


@dataclass(frozen=True)
class Request:
    counter: int
    key_id: bytes
    leases: tuple[str, ...]


@dataclass(frozen=True)
class LeaseState:
    lease_id: str
    live: bool
    remaining: float  # seconds
    generation: int = 0  # moves when any fault under the lease changes state


@dataclass(frozen=True)
class Answer:
    counter: int
    key_id: bytes
    generation: int
    leases: tuple[LeaseState, ...]


def pack_leases(leases: list[str]) -> bytes:
    """Lease ids as a request carries them: a holder that renews the same
    leases every period packs them once."""
    if not 1 <= len(leases) <= MAX_LEASES:
        raise ValueError(f"a heartbeat names 1 to {MAX_LEASES} leases, got {len(leases)}")
    return b"".join(lease_bytes(x) for x in leases)


def encode_request(key_id: bytes, key: bytes, counter: int, leases: list[str] | bytes) -> bytes:
    """A request renewing `leases`: ids, or what pack_leases made of them."""
    if not isinstance(leases, bytes):
        packed = pack_leases(leases)  # checks the count
    elif not leases or len(leases) % 8 or len(leases) > 8 * MAX_LEASES:
        raise ValueError(f"{len(leases)} bytes are not 1 to {MAX_LEASES} packed lease ids")
    else:
        packed = leases
    body = _REQ_HEAD.pack(REQUEST_MAGIC, counter, key_id, len(packed) // 8) + packed
    return body + _mac(key, body)


def request_key_id(data: bytes) -> bytes:
    """The key id of a request, to find its key (before the MAC is checked)."""
    if len(data) < _REQ_HEAD.size + 8 + MAC_BYTES or data[:4] != REQUEST_MAGIC:
        raise Malformed("not a heartbeat request")
    return data[12:28]


def decode_request(data: bytes, key: bytes) -> Request:
    """The request if it is well formed and its MAC is the key's."""
    if len(data) < _REQ_HEAD.size + 8 + MAC_BYTES:
        raise Malformed(f"{len(data)} bytes: too short")
    magic, counter, key_id, count = _REQ_HEAD.unpack_from(data)
    if magic != REQUEST_MAGIC:
        raise Malformed("not a heartbeat request")
    if not 1 <= count <= MAX_LEASES or len(data) != _REQ_HEAD.size + 8 * count + MAC_BYTES:
        raise Malformed(f"{len(data)} bytes do not hold {count} leases")
    body, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise Forged("MAC mismatch")
    start = _REQ_HEAD.size
    leases = tuple(lease_id(body[start + 8 * i : start + 8 * (i + 1)]) for i in range(count))
    return Request(counter, key_id, leases)


def encode_answer(
    key_id: bytes, key: bytes, counter: int, generation: int, leases: list[LeaseState]
) -> bytes:
    body = _ANS_HEAD.pack(ANSWER_MAGIC, counter, key_id, generation, len(leases))
    for s in leases:
        ms = max(0, min(0xFFFFFFFF, int(s.remaining * 1000)))
        gen = s.generation & 0xFFFFFFFF  # wraps; holders compare for change only
        body += _ANS_LEASE.pack(lease_bytes(s.lease_id), 1 if s.live else 0, ms, gen)
    return body + _mac(key, body)


def answer_key_id(data: bytes) -> bytes:
    if len(data) < _ANS_HEAD.size + MAC_BYTES or data[:4] != ANSWER_MAGIC:
        raise Malformed("not a heartbeat answer")
    return data[12:28]


def decode_answer(data: bytes, key: bytes) -> Answer:
    if len(data) < _ANS_HEAD.size + MAC_BYTES:
        raise Malformed(f"{len(data)} bytes: too short")
    magic, counter, key_id, generation, count = _ANS_HEAD.unpack_from(data)
    if magic != ANSWER_MAGIC:
        raise Malformed("not a heartbeat answer")
    if count > MAX_LEASES or len(data) != _ANS_HEAD.size + _ANS_LEASE.size * count + MAC_BYTES:
        raise Malformed(f"{len(data)} bytes do not hold {count} lease states")
    body, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if not hmac.compare_digest(mac, _mac(key, body)):
        raise Forged("MAC mismatch")
    states = []
    for i in range(count):
        raw, live, ms, gen = _ANS_LEASE.unpack_from(body, _ANS_HEAD.size + _ANS_LEASE.size * i)
        states.append(LeaseState(lease_id(raw), live == 1, ms / 1000, gen))
    return Answer(counter, key_id, generation, tuple(states))
