"""What the service keeps across restarts, in SQLite beside the history: the
kill switch, the stored experiments, and the runs that are live (a run still
listed here at startup was cut off by a restart)."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS kill_switch (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    engaged  INTEGER NOT NULL,
    reason   TEXT NOT NULL,
    by       TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS experiments (
    name     TEXT PRIMARY KEY,
    title    TEXT NOT NULL,
    doc      TEXT NOT NULL,
    by       TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS live_runs (
    run_id       TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    journal_path TEXT NOT NULL,
    by           TEXT NOT NULL,
    started      TEXT NOT NULL,
    agents       TEXT NOT NULL
);
"""


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class KillSwitch:
    engaged: bool
    reason: str = ""
    by: str = ""
    at: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"engaged": self.engaged, "reason": self.reason, "by": self.by, "at": self.at}


@dataclass(frozen=True)
class LiveRun:
    run_id: str
    title: str
    journal_path: str
    by: str
    started: str
    agents: list[str]


@dataclass(frozen=True)
class StoredExperiment:
    name: str
    title: str
    doc: dict[str, Any]
    by: str
    at: str

    def summary(self) -> dict[str, Any]:
        return {"name": self.name, "title": self.title, "by": self.by, "at": self.at}


class ServiceStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=10)

    # ---------------------------------------------------------- kill switch

    def kill_switch(self) -> KillSwitch:
        with self._connect() as db:
            row = db.execute("SELECT engaged, reason, by, at FROM kill_switch").fetchone()
        return KillSwitch(False) if row is None else KillSwitch(bool(row[0]), *row[1:])

    def set_kill_switch(self, engaged: bool, reason: str, by: str) -> KillSwitch:
        state = KillSwitch(engaged, reason, by, now_iso())
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO kill_switch VALUES (1, ?, ?, ?, ?)",
                (int(engaged), reason, by, state.at),
            )
        return state

    # ---------------------------------------------------------- experiments

    def put_experiment(self, name: str, title: str, doc: dict[str, Any], by: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?)",
                (name, title, json.dumps(doc), by, now_iso()),
            )

    def experiment(self, name: str) -> StoredExperiment | None:
        with self._connect() as db:
            row = db.execute("SELECT * FROM experiments WHERE name = ?", (name,)).fetchone()
        return None if row is None else _stored(row)

    def experiments(self) -> list[StoredExperiment]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM experiments ORDER BY name").fetchall()
        return [_stored(r) for r in rows]

    def delete_experiment(self, name: str) -> bool:
        with self._connect() as db:
            return db.execute("DELETE FROM experiments WHERE name = ?", (name,)).rowcount > 0

    # ------------------------------------------------------------ live runs

    def run_started(self, run: LiveRun) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO live_runs VALUES (?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.title,
                    run.journal_path,
                    run.by,
                    run.started,
                    json.dumps(run.agents),
                ),
            )

    def run_ended(self, run_id: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM live_runs WHERE run_id = ?", (run_id,))

    def live_runs(self) -> list[LiveRun]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM live_runs ORDER BY started").fetchall()
        return [LiveRun(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


def _stored(row: tuple[Any, ...]) -> StoredExperiment:
    return StoredExperiment(row[0], row[1], json.loads(row[2]), row[3], row[4])
