"""Memory leak worker: grow resident anonymous memory at a rate, then hold it.

Memory comes in mappings of at most 64 MiB, each exactly as large as what it
will hold, and every page is written as it is taken, so resident memory (not
just virtual) grows at the requested rate. Before each step the worker checks
MemAvailable and waits rather than eat into the agent's reserve.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import time

from agent.workers.common import bind_to_parent, parser, ready, running

PAGE = mmap.PAGESIZE
SEGMENT = 64 * 1024 * 1024
STEP = 0.01  # seconds between growth steps
MADV_POPULATE_WRITE = 23  # Linux 5.14; older kernels answer EINVAL


def available() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


class Leak:
    def __init__(self, total: int) -> None:
        self.total = total + (-total % PAGE)
        self.touched = 0
        self._segments: list[mmap.mmap] = []
        self._mapped = 0

    def grow(self, nbytes: int) -> None:
        """Take and touch `nbytes` more (a multiple of the page size)."""
        while nbytes > 0:
            if self.touched == self._mapped:
                size = min(SEGMENT, self.total - self._mapped)
                # Private, like a heap: counted as RssAnon (a shared one is shmem).
                flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS
                self._segments.append(mmap.mmap(-1, size, flags=flags))
                self._mapped += size
            seg = self._segments[-1]
            start = len(seg) - (self._mapped - self.touched)
            n = min(nbytes, len(seg) - start)
            # Faulting pages in one call is faster than one fault per page.
            with contextlib.suppress(OSError):
                seg.madvise(MADV_POPULATE_WRITE, start, n)
            # One byte written per page makes it resident either way.
            seg[start : start + n : PAGE] = b"\x5a" * (n // PAGE)
            self.touched += n
            nbytes -= n


def run(total: int, rate: float, reserve: int) -> None:
    leak = Leak(total)
    t0 = time.monotonic()
    while leak.touched < leak.total:
        due = leak.total if rate <= 0 else min(leak.total, int(rate * (time.monotonic() - t0)))
        want = min(due - leak.touched, SEGMENT)
        want -= want % PAGE
        if want > 0 and reserve > 0:
            room = available() - reserve
            want = min(want, room - room % PAGE)
        if want > 0:
            try:
                leak.grow(want)
            except OSError as exc:
                if exc.errno != errno.ENOMEM:
                    raise
                want = 0  # overcommit refused this mapping: try again later
        # Caught up with the schedule (or held back): wait for the next step.
        if want <= 0 or (rate > 0 and due - leak.touched < SEGMENT):
            time.sleep(STEP)
    while True:
        time.sleep(3600)


# Built on import, so that workers forked by the fork server do not build it again.
PARSER = parser("leak resident memory at a rate and hold it", __file__)
PARSER.add_argument("--bytes", type=int, required=True)
PARSER.add_argument("--rate", type=float, required=True, help="bytes per second; 0: all at once")
PARSER.add_argument("--reserve", type=int, default=0, help="keep this much MemAvailable")


def main() -> None:
    args = PARSER.parse_args()
    bind_to_parent(args.parent_pid)
    ready()
    running()
    run(args.bytes, args.rate, args.reserve)


if __name__ == "__main__":
    main()
