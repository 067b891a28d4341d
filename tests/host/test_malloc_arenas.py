"""The agent caps glibc's malloc arenas at 2 (agent/kernel/libc.py): many
concurrent clients leave it with one arena beside the main heap, not one per
gRPC thread. Counted from outside in /proc/PID/maps, where each extra arena is
a 64 MiB-aligned anonymous reservation of exactly 64 MiB."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tests.agentproc import AgentProc

pytestmark = pytest.mark.host

HEAP_MAX = 64 << 20  # glibc's HEAP_MAX_SIZE on 64-bit: one non-main arena


def extra_arenas(pid: int) -> int:
    maps = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        fields = line.split()
        start, end = (int(x, 16) for x in fields[0].split("-"))
        maps.append((start, end, len(fields) > 5))  # a named mapping is not a heap
    arenas = 0
    for i, (start, end, named) in enumerate(maps):
        if named or start % HEAP_MAX:
            continue
        # An arena is its used (rw) part followed by its reserved (---p) rest.
        for next_start, next_end, next_named in maps[i + 1 :]:
            if next_start != end or next_named or end - start >= HEAP_MAX:
                break
            end = next_end
        arenas += end - start == HEAP_MAX
    return arenas


def test_concurrent_clients_leave_one_arena_beside_the_main_heap(agent: AgentProc) -> None:
    def client() -> None:
        with agent.client() as c:
            for _ in range(200):
                c.release_lease(c.acquire_lease("arenas", 10).lease_id)

    threads = [threading.Thread(target=client) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Without the cap the same load leaves 15 here (8 per core on this machine's 2).
    assert extra_arenas(agent.pid) <= 1
