"""The PostgreSQL backend, for several controllers on one history: psycopg 3
with a connection pool, chosen by a postgresql:// DSN. The schema is the same
numbered migrations as SQLite's, recorded in brownout_schema and applied at
open under an advisory lock, so replicas starting together migrate once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
import structlog
from psycopg import conninfo
from psycopg_pool import ConnectionPool, PoolTimeout

from controller.store.schema import StoreUnavailable, pending
from controller.store.sql import Cursor

log = structlog.get_logger("brownout.store")

POOL_MAX = 8  # the service's threads that touch the store at once: API, scheduler, runs
CONNECT_TIMEOUT = 10.0
MIGRATION_LOCK = 0x62726F77  # "brow": the advisory lock key of schema changes


def is_dsn(text: str) -> bool:
    return text.startswith(("postgresql://", "postgres://"))


def check_dsn(dsn: str) -> None:
    try:
        conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise ValueError(f"not a valid DSN: {str(exc).splitlines()[0]}") from None


def redact(dsn: str) -> str:
    """user@host:port/dbname: what a log or an error may show of a DSN."""
    try:
        parts = conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "postgresql://(unparseable DSN)"
    user = f"{parts['user']}@" if parts.get("user") else ""
    host = parts.get("host") or "localhost"
    port = f":{parts['port']}" if parts.get("port") else ""
    return f"postgresql://{user}{host}{port}/{parts.get('dbname', '')}"


class _Connection:
    """A pooled connection that takes the shared SQL's `?` placeholders."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql.replace("?", "%s"), params)


def _ddl(sql: str) -> str:
    # SQLite's REAL is 8 bytes; PostgreSQL's is 4, too coarse for durations.
    return sql.replace(" REAL", " DOUBLE PRECISION")


class PostgresDatabase:
    def __init__(self, dsn: str) -> None:
        self.where = redact(dsn)
        try:  # once, directly: libpq's own words say what is wrong (refused, auth, no db)
            psycopg.connect(dsn, connect_timeout=int(CONNECT_TIMEOUT)).close()
        except psycopg.OperationalError as exc:
            why = " ".join(str(exc).split())
            raise StoreUnavailable(f"cannot connect to {self.where}: {why}") from None
        self._pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=POOL_MAX,
            timeout=CONNECT_TIMEOUT,
            check=ConnectionPool.check_connection,  # a server restart costs one retry, not errors
            kwargs={"connect_timeout": int(CONNECT_TIMEOUT), "application_name": "brownout"},
            name="brownout",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self._pool.close()
            raise StoreUnavailable(
                f"cannot connect to {self.where} within {CONNECT_TIMEOUT:g}s: check that the"
                " server is up and the DSN's host, port, user, password and database"
            ) from None
        try:
            self.migrate()
        except BaseException:
            self._pool.close()
            raise

    @contextlib.contextmanager
    def connect(self) -> Iterator[_Connection]:
        """One transaction: committed when the block ends, rolled back on an error."""
        with self._pool.connection() as conn:
            yield _Connection(conn)

    now = "extract(epoch from clock_timestamp())::float8"
    lock_rows = " FOR UPDATE SKIP LOCKED"

    def transaction(self) -> contextlib.AbstractContextManager[_Connection]:
        return self.connect()  # row locks are taken by the statements

    def close(self) -> None:
        self._pool.close()

    def version(self) -> int:
        with self.connect() as db:
            row = db.execute("SELECT max(version) FROM brownout_schema").fetchone()
        return int(row[0] or 0)

    def migrate(self) -> None:
        with self.connect() as db:
            db.execute("SELECT pg_advisory_xact_lock(?)", (MIGRATION_LOCK,))
            db.execute(
                "CREATE TABLE IF NOT EXISTS brownout_schema"
                " (version INTEGER PRIMARY KEY, what TEXT NOT NULL, at TEXT NOT NULL)"
            )
            row = db.execute("SELECT max(version) FROM brownout_schema").fetchone()
            current = int(row[0] or 0)
            for number, what, statements in pending(current, self.where, "give another database"):
                for statement in statements:
                    db.execute(_ddl(statement))
                db.execute("INSERT INTO brownout_schema VALUES (?, ?, now()::text)", (number, what))
                log.info("database migrated", database=self.where, version=number, what=what)
