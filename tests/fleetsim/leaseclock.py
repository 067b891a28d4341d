"""The simulated fleet's lease clocks in shared memory, and the process that
renews them from lease datagrams (brownout/heartbeat.py).

The datagrams are answered by a process of their own, as each real agent
answers on a thread of its own: in the gRPC process they would wait on the
GIL behind 10,000 agents' setup calls (a thread that blocks in recvfrom gets
the GIL back once per switch interval, about 200 datagrams a second), and the
controller would rightly call them unanswered.

Lease n (lease id "lease-" + n in 16 hex digits) has slot n: its deadline and
TTL (float64, CLOCK_MONOTONIC, which both processes share) and its fault
generation (uint32). Its heartbeat key id is n's 8 bytes and 8 random ones;
its key is HMAC-SHA256(master, key id), so the responder derives every key
from the master secret it was started with and needs nothing else.
"""

from __future__ import annotations

import ctypes
import hashlib
import hmac
import multiprocessing
import os
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from multiprocessing import shared_memory
from typing import Any

from brownout import heartbeat as hb

PR_SET_PDEATHSIG = 1
SLOTS = 1 << 18  # leases per simulator run
STATS = ("datagrams", "datagrams_dropped")


def _key(master: bytes, key_id: bytes) -> bytes:
    return hmac.digest(master, key_id, hashlib.sha256)


@dataclass
class Arrays:
    deadline: ctypes.Array[ctypes.c_double]
    ttl: ctypes.Array[ctypes.c_double]
    generation: ctypes.Array[ctypes.c_uint32]
    stats: ctypes.Array[ctypes.c_uint64]  # by STATS


def _attach(blocks: dict[str, shared_memory.SharedMemory]) -> Arrays:
    def of(name: str, kind: type[ctypes._SimpleCData[Any]]) -> Any:
        buf = blocks[name].buf
        assert buf is not None
        return (kind * (len(buf) // ctypes.sizeof(kind))).from_buffer(buf)

    return Arrays(
        of("deadline", ctypes.c_double),
        of("ttl", ctypes.c_double),
        of("generation", ctypes.c_uint32),
        of("stats", ctypes.c_uint64),
    )


SIZES = {"deadline": 8 * SLOTS, "ttl": 8 * SLOTS, "generation": 4 * SLOTS, "stats": 8 * len(STATS)}


class LeaseClock:
    """The gRPC process's side: owns the shared memory and the responder."""

    def __init__(self) -> None:
        self.master = secrets.token_bytes(32)
        self._blocks = {
            k: shared_memory.SharedMemory(create=True, size=n) for k, n in SIZES.items()
        }
        self.a = _attach(self._blocks)
        self.responder: multiprocessing.process.BaseProcess | None = None

    def key(self, n: int) -> tuple[bytes, bytes]:
        key_id = n.to_bytes(8, "big") + secrets.token_bytes(8)
        return key_id, _key(self.master, key_id)

    def set(self, n: int, deadline: float, ttl: float) -> None:
        self.a.ttl[n], self.a.deadline[n] = ttl, deadline

    def stat(self, name: str) -> int:
        return int(self.a.stats[STATS.index(name)])

    def serve(self, host: str, port: int) -> None:
        """Answer datagrams on host:port (UDP) from a process of its own."""
        names = {k: b.name for k, b in self._blocks.items()}
        ctx = multiprocessing.get_context("spawn")  # never fork a gRPC process
        self.responder = ctx.Process(
            target=respond, args=(names, self.master, host, port, os.getpid()), daemon=True
        )
        self.responder.start()

    def close(self) -> None:
        if self.responder is not None:
            self.responder.kill()
            self.responder.join(5)
        del self.a  # the arrays export the buffers: gone before they close
        for b in self._blocks.values():
            b.close()
            b.unlink()


def respond(names: dict[str, str], master: bytes, host: str, port: int, parent: int) -> None:
    """The responder process: renew on a valid MAC and a higher counter, as the
    agent's DatagramServer does; one lease per key here. It dies with the
    simulator, even one killed with SIGKILL (which runs no clean-up)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the simulator died before the prctl
        return
    blocks = {k: shared_memory.SharedMemory(name=v) for k, v in names.items()}
    a = _attach(blocks)
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    hb.widen_receive_buffer(sock)
    sock.bind((host, port))
    counters: dict[int, int] = {}
    while True:
        data, addr = sock.recvfrom(2048)
        try:
            key_id = hb.request_key_id(data)
            key = _key(master, key_id)
            req = hb.decode_request(data, key)
        except (hb.Malformed, hb.Forged):
            a.stats[1] += 1
            continue
        n = int.from_bytes(key_id[:8], "big")
        if n >= SLOTS or req.counter <= counters.get(n, 0):
            a.stats[1] += 1
            continue
        counters[n] = req.counter
        now = time.monotonic()
        states = []
        for lease_id in req.leases:
            if hb.lease_bytes(lease_id) != n.to_bytes(8, "big") or a.deadline[n] <= now:
                states.append(hb.LeaseState(lease_id, False, 0.0))
                continue
            a.deadline[n] = now + a.ttl[n]
            states.append(hb.LeaseState(lease_id, True, a.ttl[n], a.generation[n]))
        a.stats[0] += 1
        sock.sendto(hb.encode_answer(key_id, key, req.counter, a.generation[n], states), addr)
