"""How long the service's reads of its SQLite store wait while other processes
write to it and the disk is busy with fsyncs: the store as it is (WAL), side
by side in one run with the same store switched back to SQLite's default
rollback journal, where a commit keeps readers out through its fsyncs (the
service's pages once waited out the 10 s busy timeout that way).

Two writer processes upsert an experiment every 20 ms through the store, as
replicas' heartbeats and a scheduler's records do; a third rewrites 8 MiB in
the test's directory and fsyncs it, again and again (tests/bench/store_load.py).
The reader reads a schedule through the store every 10 ms. Figures go to
bench-results/store_reads.json.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from controller.store import open_store
from controller.store.sqlite import FILE
from tests.bench.common import report, summary_ms
from tests.paths import ROOT

pytestmark = pytest.mark.bench

SECONDS = float(os.environ.get("BROWNOUT_STORE_READS_S", "15"))


def _reads(data: Path, mode: str) -> dict[str, Any]:
    store = open_store(data)
    store.schedules.put("s", {"name": "s"}, "api", "bench")
    roles = [
        ["writer", str(data), "w1"],
        ["writer", str(data), "w2"],
        ["disk", str(data / "disk.bin")],
    ]
    helpers = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.bench.store_load", *role, str(SECONDS)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for role in roles
    ]
    waits: list[float] = []
    errors = 0
    try:
        for h in helpers:  # each writer has opened the store (which sets WAL)
            assert h.stdout is not None and h.stdout.readline().strip() == "ready"
        with contextlib.closing(sqlite3.connect(data / FILE, timeout=10)) as db:
            set_to = db.execute(f"PRAGMA journal_mode = {mode}").fetchone()[0]
        assert set_to == mode.lower(), set_to
        for h in helpers:
            assert h.stdin is not None
            h.stdin.write("go\n")
            h.stdin.flush()
        until = time.time() + SECONDS
        while time.time() < until:
            t0 = time.monotonic()
            try:
                assert store.schedules.get("s") is not None
            except sqlite3.OperationalError:
                errors += 1
            waits.append(time.monotonic() - t0)
            time.sleep(0.01)
    finally:
        for h in helpers:
            try:
                h.communicate(timeout=SECONDS + 30)
            except subprocess.TimeoutExpired:
                h.kill()
                h.communicate()
    assert all(h.returncode == 0 for h in helpers), [h.returncode for h in helpers]
    return {"mode": mode.lower(), "errors": errors, "reads": summary_ms(waits)}


def test_reads_do_not_wait_for_commits(tmp_path: Path) -> None:
    wal = _reads(tmp_path / "wal", "WAL")
    rollback = _reads(tmp_path / "rollback", "DELETE")
    ratio = rollback["reads"]["max_ms"] / max(wal["reads"]["max_ms"], 0.001)
    report(
        "store_reads",
        {
            "seconds_each": SECONDS,
            "wal": wal,
            "rollback_journal": rollback,
            "worst_read_rollback_over_wal": round(ratio, 1),
        },
    )
    # The goal: no read ever fails, and none comes near the 10 s timeout.
    assert wal["errors"] == 0, wal
    assert wal["reads"]["max_ms"] < 1000, wal
