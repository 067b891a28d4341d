"""The SQLite backend: one file, DATA_DIR/brownout.db, for `brownout run` and
`brownout serve` alike. Short-lived connections, one per operation: the
service records from several runs at once, and the CLI reads while a run may
be writing. Callers in the service call these off the event loop."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import structlog

from controller.store.records import (
    KillSwitch,
    LiveRun,
    NotFound,
    Run,
    ScheduledOccurrence,
    StoredExperiment,
    StoredSchedule,
    now_iso,
)
from controller.store.schema import LEGACY, MIGRATIONS, VERSION

log = structlog.get_logger("brownout.store")
FILE = "brownout.db"


class NewerDatabase(RuntimeError):
    """The file was written by a newer release: refuse rather than guess."""


class Database:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.migrate()

    @contextlib.contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=10)
        try:
            with db:  # one transaction: committed on success, rolled back on error
                yield db
        finally:
            db.close()

    def version(self) -> int:
        with self.connect() as db:
            return int(db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait
            current = int(db.execute("PRAGMA user_version").fetchone()[0])
            if current > VERSION:
                raise NewerDatabase(
                    f"{self.path} has schema version {current}; this release knows up to"
                    f" {VERSION}: upgrade Brownout, or point --data-dir elsewhere"
                )
            for number, (what, sql) in enumerate(MIGRATIONS[current:], start=current + 1):
                for statement in filter(str.strip, sql.split(";")):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")
                log.info("database migrated", path=str(self.path), version=number, what=what)
        self._import_legacy()

    def _import_legacy(self) -> None:
        """Rows of the two-file layout beside this file, copied in once; each old
        file is then renamed *.imported, so it is never read twice."""
        for name, tables in LEGACY.items():
            old = self.path.parent / name
            if not old.exists():
                continue
            with self.connect() as db:
                db.execute("ATTACH DATABASE ? AS legacy", (str(old),))
                try:
                    for table in tables:
                        found = db.execute(
                            "SELECT 1 FROM legacy.sqlite_master WHERE type='table' AND name=?",
                            (table,),
                        ).fetchone()
                        if found:
                            copy = f"INSERT OR IGNORE INTO {table} SELECT * FROM legacy.{table}"
                            db.execute(copy)
                finally:
                    db.commit()
                    db.execute("DETACH DATABASE legacy")
            old.rename(old.with_name(old.name + ".imported"))
            log.info("imported a database of the old layout", path=str(old), into=str(self.path))


def open_database(data_dir: Path) -> Database:
    return Database(data_dir / FILE)


def _brownout(journal: dict[str, Any]) -> dict[str, Any]:
    return next((dict(e) for e in journal.get("extensions", []) if e.get("name") == "brownout"), {})


class SqliteHistory:
    """The runs, one row each with its whole journal."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def path(self) -> Path:
        return self.db.path

    def record(self, journal: dict[str, Any], journal_path: Path) -> None:
        b = _brownout(journal)
        sel = b.get("selection") or {}
        with self.db.connect() as db:
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
        with self.db.connect() as db:
            rows = db.execute(query, (*params, limit)).fetchall()
        return [_run(r) for r in rows]

    def get(self, run_id: str) -> tuple[Run, dict[str, Any]]:
        """A run by id or unique id prefix, with its journal."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ? ESCAPE '\\'"
                " ORDER BY run_id = ? DESC",
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


class SqliteServiceState:
    """What `brownout serve` keeps across restarts: the kill switch, stored
    experiments, and the runs that are live."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def kill_switch(self) -> KillSwitch:
        with self.db.connect() as db:
            row = db.execute("SELECT engaged, reason, by, at FROM kill_switch").fetchone()
        return KillSwitch(False) if row is None else KillSwitch(bool(row[0]), *row[1:])

    def set_kill_switch(self, engaged: bool, reason: str, by: str) -> KillSwitch:
        state = KillSwitch(engaged, reason, by, now_iso())
        with self.db.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO kill_switch VALUES (1, ?, ?, ?, ?)",
                (int(engaged), reason, by, state.at),
            )
        return state

    def put_experiment(self, name: str, title: str, doc: dict[str, Any], by: str) -> None:
        with self.db.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO experiments VALUES (?, ?, ?, ?, ?)",
                (name, title, json.dumps(doc), by, now_iso()),
            )

    def experiment(self, name: str) -> StoredExperiment | None:
        with self.db.connect() as db:
            row = db.execute("SELECT * FROM experiments WHERE name = ?", (name,)).fetchone()
        return None if row is None else _stored(row)

    def experiments(self) -> list[StoredExperiment]:
        with self.db.connect() as db:
            rows = db.execute("SELECT * FROM experiments ORDER BY name").fetchall()
        return [_stored(r) for r in rows]

    def delete_experiment(self, name: str) -> bool:
        with self.db.connect() as db:
            return db.execute("DELETE FROM experiments WHERE name = ?", (name,)).rowcount > 0

    def run_started(self, run: LiveRun) -> None:
        with self.db.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO live_runs VALUES (?, ?, ?, ?, ?, ?)",
                (run.run_id, run.title, run.journal_path, run.by, run.started,
                 json.dumps(run.agents)),
            )  # fmt: skip

    def run_ended(self, run_id: str) -> None:
        with self.db.connect() as db:
            db.execute("DELETE FROM live_runs WHERE run_id = ?", (run_id,))

    def live_runs(self) -> list[LiveRun]:
        with self.db.connect() as db:
            rows = db.execute("SELECT * FROM live_runs ORDER BY started").fetchall()
        return [LiveRun(r[0], r[1], r[2], r[3], r[4], json.loads(r[5])) for r in rows]


class SqliteSchedules:
    """Schedules, what became of each occurrence, and the last occurrence each
    one handled (so a restart knows which it missed)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, name: str, doc: dict[str, Any], source: str, by: str) -> None:
        with self.db.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO schedules VALUES (?, ?, ?, ?, ?)",
                (name, json.dumps(doc), source, by, now_iso()),
            )

    def get(self, name: str) -> StoredSchedule | None:
        with self.db.connect() as db:
            row = db.execute("SELECT * FROM schedules WHERE name = ?", (name,)).fetchone()
        return None if row is None else StoredSchedule(row[0], json.loads(row[1]), *row[2:])

    def all(self) -> list[StoredSchedule]:
        with self.db.connect() as db:
            rows = db.execute("SELECT * FROM schedules ORDER BY name").fetchall()
        return [StoredSchedule(r[0], json.loads(r[1]), *r[2:]) for r in rows]

    def delete(self, name: str) -> bool:
        with self.db.connect() as db:
            db.execute("DELETE FROM schedule_marks WHERE schedule = ?", (name,))
            return db.execute("DELETE FROM schedules WHERE name = ?", (name,)).rowcount > 0

    def record(self, occ: ScheduledOccurrence, keep: int) -> None:
        """Keep what became of an occurrence, and only the newest `keep` of the
        schedule; the schedule's mark moves to it."""
        with self.db.connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO schedule_occurrences VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (occ.schedule, occ.due, occ.at, occ.outcome, occ.kind, occ.detail, occ.run_id,
                 occ.experiment),
            )  # fmt: skip
            db.execute(
                "DELETE FROM schedule_occurrences WHERE schedule = ? AND due NOT IN"
                " (SELECT due FROM schedule_occurrences WHERE schedule = ?"
                "  ORDER BY due DESC LIMIT ?)",
                (occ.schedule, occ.schedule, keep),
            )
            db.execute(
                "INSERT OR REPLACE INTO schedule_marks VALUES (?, ?)", (occ.schedule, occ.due)
            )

    def occurrences(self, name: str, limit: int = 100) -> list[ScheduledOccurrence]:
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT * FROM schedule_occurrences WHERE schedule = ? ORDER BY due DESC LIMIT ?",
                (name, limit),
            ).fetchall()
        return [ScheduledOccurrence(*r) for r in rows]

    def last_due(self, name: str) -> str | None:
        with self.db.connect() as db:
            row = db.execute(
                "SELECT last_due FROM schedule_marks WHERE schedule = ?", (name,)
            ).fetchone()
        return None if row is None else str(row[0])


def _stored(row: tuple[Any, ...]) -> StoredExperiment:
    return StoredExperiment(row[0], row[1], json.loads(row[2]), row[3], row[4])
