"""The controller's one database: versioned schema, migrations at open, a
newer file refused, and the old two-file layout imported once."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import pytest

from controller.store import LiveRun, open_store
from controller.store.schema import VERSION, NewerDatabase
from controller.store.sqlite import FILE, SqliteDatabase

pytestmark = pytest.mark.unit

OLD_HISTORY = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, title TEXT NOT NULL, status TEXT NOT NULL,
  deviated INTEGER NOT NULL, reason TEXT NOT NULL, started TEXT NOT NULL, ended TEXT,
  duration REAL, targets INTEGER NOT NULL, journal_path TEXT NOT NULL, journal TEXT NOT NULL);
INSERT INTO runs VALUES ('20250101-000000-abcdef', 'old run', 'completed', 0, '',
  '2025-01-01T00:00:00', '2025-01-01T00:01:00', 60.0, 3, '/j.json', '{"status": "completed"}');
"""
OLD_SERVICE = """
CREATE TABLE kill_switch (id INTEGER PRIMARY KEY CHECK (id = 1), engaged INTEGER NOT NULL,
  reason TEXT NOT NULL, by TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE experiments (name TEXT PRIMARY KEY, title TEXT NOT NULL, doc TEXT NOT NULL,
  by TEXT NOT NULL, at TEXT NOT NULL);
CREATE TABLE live_runs (run_id TEXT PRIMARY KEY, title TEXT NOT NULL, journal_path TEXT NOT NULL,
  by TEXT NOT NULL, started TEXT NOT NULL, agents TEXT NOT NULL);
INSERT INTO kill_switch VALUES (1, 1, 'freeze', 'token:alice', '2025-01-01T00:00:00');
INSERT INTO experiments VALUES ('cpu', 'CPU', '{"title": "CPU"}', 'token:alice', 'x');
"""


def test_a_new_database_is_at_this_release_and_reopening_changes_nothing(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    db = SqliteDatabase(tmp_path / FILE)
    assert db.version() == VERSION >= 1
    store.state.run_started(LiveRun("r1", "t", "/j", "me", "2026", ["a:1"]))
    again = open_store(tmp_path)
    assert [r.run_id for r in again.state.live_runs()] == ["r1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [FILE]


def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / FILE) as raw:
        raw.execute(f"PRAGMA user_version = {VERSION + 1}")
    with pytest.raises(NewerDatabase, match="upgrade Brownout"):
        open_store(tmp_path)
    with contextlib.closing(sqlite3.connect(tmp_path / FILE)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "delete"  # left as it was


def test_reads_are_answered_while_a_writer_holds_the_file(tmp_path: Path) -> None:
    """A commit stalled on a busy disk (here: a connection holding the
    exclusive lock) must not lock the service's pages and scheduler out."""
    store = open_store(tmp_path)
    store.schedules.put("s", {"name": "s"}, "api", "me")
    with contextlib.closing(sqlite3.connect(tmp_path / FILE, isolation_level=None)) as writer:
        assert writer.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("DELETE FROM schedules")
        t0 = time.monotonic()
        stored = store.schedules.get("s")
        waited = time.monotonic() - t0
        writer.execute("ROLLBACK")
    assert stored is not None and stored.name == "s"
    assert waited < 5.0, f"the read waited {waited:.1f} s for the writer"


def test_the_two_file_layout_is_imported_once(tmp_path: Path) -> None:
    for name, sql in (("history.db", OLD_HISTORY), ("service.db", OLD_SERVICE)):
        with sqlite3.connect(tmp_path / name) as raw:
            raw.executescript(sql)
    store = open_store(tmp_path)
    [run] = store.history.runs()
    assert run.title == "old run" and run.targets == 3
    assert store.history.get("20250101")[1] == {"status": "completed"}
    ks = store.state.kill_switch()
    assert ks.engaged and ks.reason == "freeze"  # an engaged switch survives the upgrade
    assert [e.name for e in store.state.experiments()] == ["cpu"]
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == [FILE, "history.db.imported", "service.db.imported"]
    store.state.set_kill_switch(False, "", "bob")
    assert not open_store(tmp_path).state.kill_switch().engaged  # not imported twice
