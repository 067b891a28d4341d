"""Load on a SQLite store for tests/bench/test_store_reads.py, in a process of
its own: `writer DATA NAME SECONDS` upserts an experiment through the store
every 20 ms; `disk PATH SECONDS` rewrites 8 MiB at PATH and fsyncs it, again
and again. Each says "ready" on stdout, starts at a "go" line on stdin, and
ends after SECONDS."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from controller.store import open_store


def main(argv: list[str]) -> int:
    role, where, seconds = argv[0], Path(argv[1]), float(argv[-1])
    store = open_store(where) if role == "writer" else None  # (opening sets WAL)
    print("ready", flush=True)
    sys.stdin.readline()
    until = time.time() + seconds
    if store is not None:
        name = argv[2]
        doc = {"title": name, "method": [], "padding": "x" * 2000}
        while time.time() < until:
            store.state.put_experiment(name, name, doc, "bench")
            time.sleep(0.02)
        return 0
    chunk = os.urandom(1 << 20)
    with where.open("wb") as f:
        while time.time() < until:
            f.seek(0)
            for _ in range(8):
                f.write(chunk)
            os.fsync(f.fileno())
    where.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
