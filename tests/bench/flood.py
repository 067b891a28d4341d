"""Floods an agent's heartbeat port with forged lease datagrams: well formed,
naming a real key id and lease, with counters that only go up, and a wrong MAC
(and a share with unknown key ids). Run as a process of its own; prints one
JSON line: how many were sent and over how long.

    python -m tests.bench.flood HOST PORT KEY_ID_HEX LEASE_ID RATE SECONDS
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time

from brownout import heartbeat as hb

BATCH = 500


def forged(key_id: bytes, lease_id: str, n: int) -> list[bytes]:
    """n datagrams, every one refused: a MAC from a key that is not the holder's."""
    wrong = os.urandom(hb.KEY_BYTES)
    out = []
    for i in range(n):
        kid = key_id if i % 4 else os.urandom(hb.KEY_ID_BYTES)  # a quarter unknown keys
        out.append(hb.encode_request(kid, wrong, time.time_ns() + i, [lease_id]))
    return out


def main() -> None:
    host, port, key_hex, lease_id = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    rate, seconds = float(sys.argv[5]), float(sys.argv[6])
    datagrams = forged(bytes.fromhex(key_hex), lease_id, 4096)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setblocking(False)
    addr = (host, port)
    sent = dropped = 0
    t0 = time.monotonic()
    while (elapsed := time.monotonic() - t0) < seconds:
        due = int(elapsed * rate) - sent - dropped
        if due <= 0:
            time.sleep(BATCH / rate / 4)
            continue
        for _ in range(min(due, BATCH)):
            try:
                s.sendto(datagrams[(sent + dropped) % len(datagrams)], addr)
                sent += 1
            except BlockingIOError:  # our own send buffer is full: count, go on
                dropped += 1
    took = time.monotonic() - t0
    print(json.dumps({"sent": sent, "send_refused": dropped, "seconds": round(took, 3),
                      "rate": round(sent / took)}))  # fmt: skip


if __name__ == "__main__":
    main()
