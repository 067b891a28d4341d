"""The SQLite backend, the embedded default: one file, DATA_DIR/brownout.db,
for `brownout run` and `brownout serve` alike. Short-lived connections, one
per operation: the service records from several runs at once, and the CLI
reads while a run may be writing. Callers in the service call these off the
event loop."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import structlog

from controller.store.schema import LEGACY, pending

log = structlog.get_logger("brownout.store")
FILE = "brownout.db"


class SqliteDatabase:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.migrate()  # first: a newer release's file is refused untouched
        self._write_ahead()

    def _write_ahead(self) -> None:
        """Readers never wait for a writer. In the default rollback-journal
        mode a commit locks readers out through its fsyncs, and with a busy
        disk the service's pages and its scheduler waited out the 10 s
        timeout ("database is locked"). The mode is kept in the file."""
        db = sqlite3.connect(self.path, timeout=10)
        try:
            mode = str(db.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        finally:
            db.close()
        if mode.lower() != "wal":  # a filesystem without shared memory, say
            log.warning("database not in WAL mode: a commit blocks readers", path=str(self.path),
                        mode=mode)  # fmt: skip

    @property
    def where(self) -> str:
        return str(self.path)

    now = "((julianday('now') - 2440587.5) * 86400.0)"
    lock_rows = ""  # transaction() holds the file's write lock instead

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self.connect() as db:
            db.execute("BEGIN IMMEDIATE")  # writers queue here (up to the timeout)
            yield db

    def close(self) -> None:
        pass  # connections are per operation

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
            for number, what, statements in pending(
                current, self.where, "point --data-dir elsewhere"
            ):
                for statement in statements:
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
                        # By the old table's columns: later migrations added some.
                        found = db.execute(f"PRAGMA legacy.table_info({table})").fetchall()
                        if found:
                            cols = ", ".join(f'"{c[1]}"' for c in found)
                            copy = (
                                f"INSERT OR IGNORE INTO {table} ({cols})"
                                f" SELECT {cols} FROM legacy.{table}"
                            )
                            db.execute(copy)
                finally:
                    db.commit()
                    db.execute("DETACH DATABASE legacy")
            old.rename(old.with_name(old.name + ".imported"))
            log.info("imported a database of the old layout", path=str(old), into=str(self.path))


def open_database(data_dir: Path) -> SqliteDatabase:
    return SqliteDatabase(data_dir / FILE)
