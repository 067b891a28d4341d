"""IO stress worker: block reads and/or writes at random offsets of one file.

The file (created empty by the agent) is first laid out with data, so reads
hit blocks rather than holes. Without O_DIRECT the worker syncs and drops the
file's page cache every 1/16 of a pass, so the IO reaches the device.
"""

from __future__ import annotations

import mmap
import os
import random

from agent.workers.common import bind_to_parent, parser, ready, running

DROP_FRACTION = 16


def drop_cache(fd: int) -> None:
    os.fdatasync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def stress(fd: int, buf: mmap.mmap, mode: str, block: int, nblocks: int, direct: bool) -> None:
    for i in range(nblocks):
        os.pwrite(fd, buf, i * block)
    if not direct:
        drop_cache(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)  # no readahead
    every = max(1, nblocks // DROP_FRACTION)
    rng = random.Random()
    ops = 0
    while True:
        offset = rng.randrange(nblocks) * block
        if mode == "read" or (mode == "mixed" and rng.random() < 0.5):
            os.preadv(fd, [buf], offset)
        else:
            os.pwrite(fd, buf, offset)
        ops += 1
        if not direct and ops % every == 0:
            drop_cache(fd)


# Built on import, so that workers forked by the fork server do not build it again.
PARSER = parser("block IO at random offsets of one file", __file__)
PARSER.add_argument("--file", required=True)
PARSER.add_argument("--mode", choices=["read", "write", "mixed"], required=True)
PARSER.add_argument("--block-size", type=int, required=True)
PARSER.add_argument("--bytes", type=int, required=True)
PARSER.add_argument("--direct", action="store_true")


def main() -> None:
    args = PARSER.parse_args()
    bind_to_parent(args.parent_pid)
    ready()
    # After "go", inside the target's cgroups (blkio/io accounting).
    flags = os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW | (os.O_DIRECT if args.direct else 0)
    fd = os.open(args.file, flags)
    # Page-aligned, as O_DIRECT needs; random data defeats compression.
    buf = mmap.mmap(-1, args.block_size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    buf.write(os.urandom(args.block_size))
    os.pwrite(fd, buf, 0)  # fails here, before "running", if O_DIRECT is refused
    running()
    stress(fd, buf, args.mode, args.block_size, args.bytes // args.block_size, args.direct)


if __name__ == "__main__":
    main()
