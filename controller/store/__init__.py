"""The controller's one store: the run history, the service's state and the
schedules, in one database with a versioned schema (schema.py), queried in
the SQL both backends share (sql.py): SQLite in the data dir, the embedded
default, or PostgreSQL by DSN, for several controllers on one history."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from controller.store.records import (
    KillSwitch,
    LiveRun,
    MonkeyKill,
    NotFound,
    Replica,
    Run,
    ScheduledOccurrence,
    StoredExperiment,
    StoredGameDay,
    StoredSchedule,
    now_iso,
)
from controller.store.schema import NewerDatabase, StoreUnavailable
from controller.store.sql import (
    Claim,
    Database,
    SqlGameDays,
    SqlHistory,
    SqlMonkeys,
    SqlSchedules,
    SqlServiceState,
)
from controller.store.sqlite import open_database


class History(Protocol):
    def record(self, journal: dict[str, Any], journal_path: Path) -> None: ...
    def runs(self, limit: int = 20, status: str | None = None) -> list[Run]: ...
    def get(self, run_id: str) -> tuple[Run, dict[str, Any]]: ...
    def since(self, started: str) -> list[tuple[Run, dict[str, Any]]]: ...


class ServiceState(Protocol):
    def kill_switch(self) -> KillSwitch: ...
    def set_kill_switch(self, engaged: bool, reason: str, by: str) -> KillSwitch: ...
    def put_experiment(self, name: str, title: str, doc: dict[str, Any], by: str) -> None: ...
    def experiment(self, name: str) -> StoredExperiment | None: ...
    def experiments(self) -> list[StoredExperiment]: ...
    def delete_experiment(self, name: str) -> bool: ...
    def run_started(self, run: LiveRun) -> None: ...
    def run_ended(self, run_id: str) -> None: ...
    def live_runs(self) -> list[LiveRun]: ...
    def request_abort(self, run_id: str, reason: str) -> bool: ...
    def take_run(self, run: LiveRun, replica: str, stale: float | None) -> bool: ...
    def replica_beat(
        self, replica: Replica, journals: dict[str, str | None]
    ) -> list[tuple[str, str]]: ...
    def replicas(self) -> list[Replica]: ...
    def replica_gone(self, replica: str, stale: float | None = None) -> None: ...


class Schedules(Protocol):
    def put(self, name: str, doc: dict[str, Any], source: str, by: str) -> None: ...
    def get(self, name: str) -> StoredSchedule | None: ...
    def all(self) -> list[StoredSchedule]: ...
    def delete(self, name: str) -> bool: ...
    def claim(self, name: str, due: str, by: str) -> Claim: ...
    def record(self, occ: ScheduledOccurrence, keep: int) -> None: ...
    def occurrences(self, name: str, limit: int = 100) -> list[ScheduledOccurrence]: ...
    def last_due(self, name: str) -> str | None: ...


class Monkeys(Protocol):
    def put(self, name: str, doc: dict[str, Any], source: str, by: str) -> None: ...
    def get(self, name: str) -> StoredSchedule | None: ...
    def all(self) -> list[StoredSchedule]: ...
    def delete(self, name: str) -> bool: ...
    def claim(self, kill: MonkeyKill) -> bool: ...
    def update(self, kill: MonkeyKill) -> None: ...
    def kills(self, name: str, limit: int = 1000) -> list[MonkeyKill]: ...
    def last_kills(self, name: str) -> dict[str, str]: ...


class GameDays(Protocol):
    def put(self, g: StoredGameDay) -> None: ...
    def get(self, gameday_id: str) -> StoredGameDay | None: ...
    def all(self, limit: int = 100) -> list[StoredGameDay]: ...


@dataclass(frozen=True)
class Store:
    history: History
    state: ServiceState
    schedules: Schedules
    db: Database
    monkeys: Monkeys
    gamedays: GameDays

    @property
    def where(self) -> str:
        return self.db.where

    def close(self) -> None:
        self.db.close()


def open_store(data_dir: Path, database: str | None = None) -> Store:
    """PostgreSQL if a DSN is given, else DATA_DIR/brownout.db; migrated to this
    release's schema either way."""
    if database:
        from controller.store.postgres import PostgresDatabase  # psycopg only when asked

        db: Database = PostgresDatabase(database)
    else:
        db = open_database(data_dir)
    return Store(
        SqlHistory(db), SqlServiceState(db), SqlSchedules(db), db, SqlMonkeys(db), SqlGameDays(db)
    )


__all__ = [
    "Claim",
    "Database",
    "GameDays",
    "History",
    "KillSwitch",
    "LiveRun",
    "MonkeyKill",
    "Monkeys",
    "NewerDatabase",
    "NotFound",
    "Replica",
    "Run",
    "ScheduledOccurrence",
    "Schedules",
    "ServiceState",
    "Store",
    "StoreUnavailable",
    "StoredExperiment",
    "StoredGameDay",
    "StoredSchedule",
    "now_iso",
    "open_store",
]
