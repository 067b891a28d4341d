"""SQLite history of runs: one row per run, with its whole journal."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.experiments.journal import brownout

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id       TEXT PRIMARY KEY,
    title        TEXT NOT NULL,
    status       TEXT NOT NULL,
    deviated     INTEGER NOT NULL,
    reason       TEXT NOT NULL,
    started      TEXT NOT NULL,
    ended        TEXT,
    duration     REAL,
    targets      INTEGER NOT NULL,
    journal_path TEXT NOT NULL,
    journal      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
"""


@dataclass(frozen=True)
class Run:
    run_id: str
    title: str
    status: str
    deviated: bool
    reason: str
    started: str
    ended: str | None
    duration: float | None
    targets: int
    journal_path: str


class NotFound(LookupError):
    pass


class History:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        with self._connect() as db:
            db.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        # One short-lived connection per operation: `brownout serve` records from
        # several runs, and the CLI reads while a run may be writing.
        return sqlite3.connect(self.path, timeout=10)

    def record(self, journal: dict[str, Any], journal_path: Path) -> None:
        b = brownout(journal)
        sel = b.get("selection") or {}
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    b["run_id"],
                    journal["experiment"].get("title", ""),
                    journal["status"],
                    int(bool(journal.get("deviated"))),
                    b.get("reason", ""),
                    journal["start"],
                    journal.get("end"),
                    journal.get("duration"),
                    len(sel.get("targets", [])),
                    str(journal_path),
                    json.dumps(journal, default=str),
                ),
            )

    def runs(self, limit: int = 20, status: str | None = None) -> list[Run]:
        query = "SELECT * FROM runs"
        params: tuple[Any, ...] = ()
        if status:
            query += " WHERE status = ?"
            params = (status,)
        query += " ORDER BY started DESC LIMIT ?"
        with self._connect() as db:
            rows = db.execute(query, (*params, limit)).fetchall()
        return [_run(r) for r in rows]

    def get(self, run_id: str) -> tuple[Run, dict[str, Any]]:
        """A run by id or unique id prefix, with its journal."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ? ORDER BY run_id = ? DESC",
                (run_id, run_id.replace("%", "").replace("_", r"\_") + "%", run_id),
            ).fetchall()
        exact = [r for r in rows if r[0] == run_id]
        if exact:
            rows = exact
        if not rows:
            raise NotFound(f"no run {run_id!r} in {self.path}")
        if len(rows) > 1:
            raise NotFound(f"{run_id!r} matches {len(rows)} runs; give more of the id")
        return _run(rows[0]), json.loads(rows[0][10])


def _run(r: tuple[Any, ...]) -> Run:
    return Run(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])
