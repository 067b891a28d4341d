"""The database schema as numbered migrations, applied in order at open.

A database records the last one applied (SQLite: PRAGMA user_version), so a
new release adds a migration and never edits an old one. The SQL is the
common subset of SQLite and PostgreSQL (TEXT, INTEGER, REAL; no AUTOINCREMENT)
so both backends apply the same list ("by" is quoted: PostgreSQL reserves it;
quoting it changed nothing in a SQLite database made before)."""

from __future__ import annotations

from collections.abc import Iterator


class NewerDatabase(RuntimeError):
    """The database was written by a newer release: refuse rather than guess."""


class StoreUnavailable(RuntimeError):
    """The database cannot be reached or opened: the message says which and why."""


MIGRATIONS: list[tuple[str, str]] = [
    (
        "history and service state in one database",
        """
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
        CREATE TABLE IF NOT EXISTS kill_switch (
            id       INTEGER PRIMARY KEY CHECK (id = 1),
            engaged  INTEGER NOT NULL,
            reason   TEXT NOT NULL,
            "by"     TEXT NOT NULL,
            at       TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS experiments (
            name     TEXT PRIMARY KEY,
            title    TEXT NOT NULL,
            doc      TEXT NOT NULL,
            "by"     TEXT NOT NULL,
            at       TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS live_runs (
            run_id       TEXT PRIMARY KEY,
            title        TEXT NOT NULL,
            journal_path TEXT NOT NULL,
            "by"         TEXT NOT NULL,
            started      TEXT NOT NULL,
            agents       TEXT NOT NULL
        );
        """,
    ),
    (
        "schedules, their occurrences and where each left off",
        """
        CREATE TABLE IF NOT EXISTS schedules (
            name     TEXT PRIMARY KEY,
            doc      TEXT NOT NULL,
            source   TEXT NOT NULL,
            "by"     TEXT NOT NULL,
            at       TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS schedule_occurrences (
            schedule   TEXT NOT NULL,
            due        TEXT NOT NULL,
            at         TEXT NOT NULL,
            outcome    TEXT NOT NULL,
            kind       TEXT NOT NULL,
            detail     TEXT NOT NULL,
            run_id     TEXT NOT NULL,
            experiment TEXT NOT NULL,
            PRIMARY KEY (schedule, due)
        );
        CREATE TABLE IF NOT EXISTS schedule_marks (
            schedule TEXT PRIMARY KEY,
            last_due TEXT NOT NULL
        );
        """,
    ),
    (
        "replicas: which one drives each live run, and their heartbeats",
        """
        ALTER TABLE live_runs ADD COLUMN replica TEXT NOT NULL DEFAULT '';
        ALTER TABLE live_runs ADD COLUMN heartbeat REAL NOT NULL DEFAULT 0;
        ALTER TABLE live_runs ADD COLUMN journal TEXT NOT NULL DEFAULT '';
        ALTER TABLE live_runs ADD COLUMN abort_reason TEXT NOT NULL DEFAULT '';
        CREATE TABLE IF NOT EXISTS replicas (
            replica   TEXT PRIMARY KEY,
            host      TEXT NOT NULL,
            pid       INTEGER NOT NULL,
            started   TEXT NOT NULL,
            heartbeat REAL NOT NULL
        );
        """,
    ),
    (
        "monkeys and their tracker: every planned kill slot, claimed once",
        """
        CREATE TABLE IF NOT EXISTS monkeys (
            name     TEXT PRIMARY KEY,
            doc      TEXT NOT NULL,
            source   TEXT NOT NULL,
            "by"     TEXT NOT NULL,
            at       TEXT NOT NULL
        );
        CREATE TABLE IF NOT EXISTS monkey_kills (
            monkey   TEXT NOT NULL,
            slot     TEXT NOT NULL,
            grp      TEXT NOT NULL,
            day      TEXT NOT NULL,
            due      TEXT NOT NULL,
            at       TEXT NOT NULL,
            outcome  TEXT NOT NULL,
            detail   TEXT NOT NULL,
            agent    TEXT NOT NULL,
            action   TEXT NOT NULL,
            run_id   TEXT NOT NULL,
            record   TEXT NOT NULL,
            PRIMARY KEY (monkey, slot)
        );
        CREATE INDEX IF NOT EXISTS monkey_kills_due ON monkey_kills (monkey, due);
        """,
    ),
    (
        "game days: the plan, its state and each scenario's outcome",
        """
        CREATE TABLE IF NOT EXISTS gamedays (
            id        TEXT PRIMARY KEY,
            title     TEXT NOT NULL,
            plan      TEXT NOT NULL,
            state     TEXT NOT NULL,
            "by"      TEXT NOT NULL,
            started   TEXT NOT NULL,
            ended     TEXT NOT NULL,
            scenarios TEXT NOT NULL,
            notes     TEXT NOT NULL,
            replica   TEXT NOT NULL
        );
        CREATE INDEX IF NOT EXISTS gamedays_started ON gamedays (started);
        """,
    ),
]

VERSION = len(MIGRATIONS)
# Tables a database of the two-file layout (history.db, service.db) held, by file.
LEGACY = {"history.db": ["runs"], "service.db": ["kill_switch", "experiments", "live_runs"]}


def pending(current: int, where: str, elsewhere: str) -> Iterator[tuple[int, str, list[str]]]:
    """The migrations a database at version `current` still needs, in order:
    (number, what, statements). A newer database is refused, saying what to do."""
    if current > VERSION:
        raise NewerDatabase(
            f"{where} has schema version {current}; this release knows up to {VERSION}:"
            f" upgrade Brownout, or {elsewhere}"
        )
    for number, (what, sql) in enumerate(MIGRATIONS[current:], start=current + 1):
        yield number, what, [statement for statement in sql.split(";") if statement.strip()]
