"""The store's queries, in the SQL SQLite and PostgreSQL share (upserts with
ON CONFLICT, `?` placeholders that the PostgreSQL backend turns into its own,
"by" quoted because PostgreSQL reserves it). A backend gives connections, each
one transaction: committed when its block ends, rolled back on an error."""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
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


class Claim(enum.Enum):
    CLAIMED = "claimed"
    TAKEN = "taken"
    BUSY = "busy"


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...


class Database(Protocol):
    @property
    def where(self) -> str:
        """The file, or the server and database (never a password), for messages."""
        ...

    @property
    def now(self) -> str:
        """SQL for the database's clock in epoch seconds: replicas judge each
        other's heartbeats by it, not by their own clocks."""
        ...

    @property
    def lock_rows(self) -> str:
        """What makes a SELECT lock its rows against other replicas, skipping
        rows another holds (PostgreSQL); '' where transaction() locks it all."""
        ...

    def connect(self) -> AbstractContextManager[Connection]: ...
    def transaction(self) -> AbstractContextManager[Connection]:
        """A transaction that writes, its write lock taken at the start."""
        ...

    def close(self) -> None: ...


def _brownout(journal: dict[str, Any]) -> dict[str, Any]:
    return next((dict(e) for e in journal.get("extensions", []) if e.get("name") == "brownout"), {})


class SqlHistory:
    """The runs, one row each with its whole journal."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, journal: dict[str, Any], journal_path: Any) -> None:
        b = _brownout(journal)
        sel = b.get("selection") or {}
        row = (
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
        )
        with self.db.connect() as db:
            db.execute(
                "INSERT INTO runs VALUES (?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (run_id) DO UPDATE"
                " SET title = excluded.title, status = excluded.status,"
                " deviated = excluded.deviated, reason = excluded.reason,"
                " started = excluded.started, ended = excluded.ended,"
                " duration = excluded.duration, targets = excluded.targets,"
                " journal_path = excluded.journal_path, journal = excluded.journal",
                row,
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

    def since(self, started: str) -> list[tuple[Run, dict[str, Any]]]:
        """Every run started at or after `started` (ISO), oldest first, with its journal."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE started >= ? ORDER BY started", (started,)
            ).fetchall()
        return [(_run(r), json.loads(r[10])) for r in rows]

    def get(self, run_id: str) -> tuple[Run, dict[str, Any]]:
        """A run by id or unique id prefix, with its journal."""
        prefix = run_id.replace("\\", "").replace("%", "").replace("_", r"\_") + "%"
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ? ESCAPE '\\'", (run_id, prefix)
            ).fetchall()
        exact = [r for r in rows if r[0] == run_id]
        if exact:
            rows = exact
        if not rows:
            raise NotFound(f"no run {run_id!r} in {self.db.where}")
        if len(rows) > 1:
            raise NotFound(f"{run_id!r} matches {len(rows)} runs; give more of the id")
        return _run(rows[0]), json.loads(rows[0][10])


def _run(r: Sequence[Any]) -> Run:
    return Run(r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7], r[8], r[9])


class SqlServiceState:
    """What `brownout serve` keeps across restarts: the kill switch, stored
    experiments, and the runs that are live."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def kill_switch(self) -> KillSwitch:
        with self.db.connect() as db:
            row = db.execute('SELECT engaged, reason, "by", at FROM kill_switch').fetchone()
        return KillSwitch(False) if row is None else KillSwitch(bool(row[0]), *row[1:])

    def set_kill_switch(self, engaged: bool, reason: str, by: str) -> KillSwitch:
        state = KillSwitch(engaged, reason, by, now_iso())
        with self.db.connect() as db:
            db.execute(
                "INSERT INTO kill_switch VALUES (1, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE"
                ' SET engaged = excluded.engaged, reason = excluded.reason, "by" = excluded."by",'
                " at = excluded.at",
                (int(engaged), reason, by, state.at),
            )
        return state

    def put_experiment(self, name: str, title: str, doc: dict[str, Any], by: str) -> None:
        with self.db.connect() as db:
            db.execute(
                "INSERT INTO experiments VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE"
                ' SET title = excluded.title, doc = excluded.doc, "by" = excluded."by",'
                " at = excluded.at",
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
                "INSERT INTO live_runs (run_id, title, journal_path, \"by\", started, agents,"
                f" replica, heartbeat) VALUES (?, ?, ?, ?, ?, ?, ?, {self.db.now})"
                " ON CONFLICT (run_id) DO NOTHING",
                (run.run_id, run.title, run.journal_path, run.by, run.started,
                 json.dumps(run.agents), run.replica),
            )  # fmt: skip

    def run_ended(self, run_id: str) -> None:
        with self.db.connect() as db:
            db.execute("DELETE FROM live_runs WHERE run_id = ?", (run_id,))

    def live_runs(self) -> list[LiveRun]:
        with self.db.connect() as db:
            rows = db.execute(f"SELECT {_LIVE} FROM live_runs ORDER BY started").fetchall()
        return [_live(r) for r in rows]

    def request_abort(self, run_id: str, reason: str) -> bool:
        """Ask the replica driving a run to abort it (at its next heartbeat)."""
        with self.db.connect() as db:
            sql = "UPDATE live_runs SET abort_reason = ? WHERE run_id = ?"
            return db.execute(sql, (reason, run_id)).rowcount > 0

    def take_run(self, run: LiveRun, replica: str, stale: float | None) -> bool:
        """Make `replica` the owner of a run whose replica is gone: dead (stale
        None) or silent for `stale` seconds. Exactly one replica wins."""
        where = "run_id = ? AND replica = ?"
        if stale is not None:
            where += f" AND heartbeat < {self.db.now} - ?"
        with self.db.connect() as db:
            sql = f"UPDATE live_runs SET replica = ?, heartbeat = {self.db.now} WHERE {where}"
            params = (replica, run.run_id, run.replica, *(() if stale is None else (stale,)))
            return db.execute(sql, params).rowcount > 0

    def replica_beat(
        self, replica: Replica, journals: dict[str, str | None]
    ) -> list[tuple[str, str]]:
        """The replica's heartbeat, and its live runs' with their journals as
        they stand (None: unchanged); the aborts other replicas asked of it:
        (run_id, reason)."""
        now = self.db.now
        with self.db.connect() as db:
            db.execute(
                f"INSERT INTO replicas VALUES (?, ?, ?, ?, {now}) ON CONFLICT (replica)"
                " DO UPDATE SET heartbeat = excluded.heartbeat",
                (replica.replica, replica.host, replica.pid, replica.started),
            )
            for run_id, journal in journals.items():
                db.execute(
                    f"UPDATE live_runs SET heartbeat = {now}, journal = COALESCE(?, journal)"
                    " WHERE run_id = ? AND replica = ?",
                    (journal, run_id, replica.replica),
                )
            rows = db.execute(
                "SELECT run_id, abort_reason FROM live_runs WHERE replica = ?"
                " AND abort_reason != ''",
                (replica.replica,),
            ).fetchall()
        return [(r[0], r[1]) for r in rows]

    def replicas(self) -> list[Replica]:
        with self.db.connect() as db:
            rows = db.execute(
                f"SELECT replica, host, pid, started, heartbeat, {self.db.now} - heartbeat"
                " FROM replicas ORDER BY started"
            ).fetchall()
        return [Replica(r[0], r[1], int(r[2]), r[3], float(r[4]), float(r[5])) for r in rows]

    def replica_gone(self, replica: str, stale: float | None = None) -> None:
        """Forget a replica that stopped (stale None), or that is silent for
        `stale` seconds and drives no run any more."""
        with self.db.connect() as db:
            if stale is None:
                db.execute("DELETE FROM replicas WHERE replica = ?", (replica,))
            else:
                db.execute(
                    f"DELETE FROM replicas WHERE replica = ? AND heartbeat < {self.db.now} - ?"
                    " AND replica NOT IN (SELECT replica FROM live_runs)",
                    (replica, stale),
                )


_LIVE = (
    'run_id, title, journal_path, "by", started, agents, replica, heartbeat, journal, abort_reason'
)


def _live(r: Sequence[Any]) -> LiveRun:
    return LiveRun(r[0], r[1], r[2], r[3], r[4], json.loads(r[5]), r[6], float(r[7]), r[8], r[9])


def _stored(row: Sequence[Any]) -> StoredExperiment:
    return StoredExperiment(row[0], row[1], json.loads(row[2]), row[3], row[4])


class _SqlDeclared:
    """Documents people declare (schedules, monkeys): by name, with where each
    came from (the API, or the file it is declared in)."""

    table = ""
    cascade: tuple[str, ...] = ()  # statements deleting what the document leaves behind

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, name: str, doc: dict[str, Any], source: str, by: str) -> None:
        with self.db.connect() as db:
            db.execute(
                f"INSERT INTO {self.table} VALUES (?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE"
                ' SET doc = excluded.doc, source = excluded.source, "by" = excluded."by",'
                " at = excluded.at",
                (name, json.dumps(doc), source, by, now_iso()),
            )

    def get(self, name: str) -> StoredSchedule | None:
        with self.db.connect() as db:
            row = db.execute(f"SELECT * FROM {self.table} WHERE name = ?", (name,)).fetchone()
        return None if row is None else StoredSchedule(row[0], json.loads(row[1]), *row[2:])

    def all(self) -> list[StoredSchedule]:
        with self.db.connect() as db:
            rows = db.execute(f"SELECT * FROM {self.table} ORDER BY name").fetchall()
        return [StoredSchedule(r[0], json.loads(r[1]), *r[2:]) for r in rows]

    def delete(self, name: str) -> bool:
        with self.db.connect() as db:  # with what hangs on it, in one transaction
            for sql in self.cascade:
                db.execute(sql, (name,))
            return db.execute(f"DELETE FROM {self.table} WHERE name = ?", (name,)).rowcount > 0


class SqlSchedules(_SqlDeclared):
    """Schedules, what became of each occurrence, and the last occurrence each
    one handled (so a restart knows which it missed)."""

    table = "schedules"
    cascade = ("DELETE FROM schedule_marks WHERE schedule = ?",)

    def record(self, occ: ScheduledOccurrence, keep: int) -> None:
        """Keep what became of a claimed occurrence, and only the newest `keep`
        of the schedule."""
        with self.db.connect() as db:
            db.execute(
                "INSERT INTO schedule_occurrences VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (schedule, due) DO UPDATE SET at = excluded.at,"
                " outcome = excluded.outcome, kind = excluded.kind, detail = excluded.detail,"
                " run_id = excluded.run_id, experiment = excluded.experiment",
                (occ.schedule, occ.due, occ.at, occ.outcome, occ.kind, occ.detail, occ.run_id,
                 occ.experiment),
            )  # fmt: skip
            db.execute(
                "DELETE FROM schedule_occurrences WHERE schedule = ? AND due NOT IN"
                " (SELECT due FROM schedule_occurrences WHERE schedule = ?"
                "  ORDER BY due DESC LIMIT ?)",
                (occ.schedule, occ.schedule, keep),
            )

    def claim(self, name: str, due: str, by: str) -> Claim:
        """Take an occurrence for one replica, exactly once: under the
        schedule's row lock, an occurrence after the schedule's mark moves the
        mark to it and is recorded as claimed. BUSY: another replica holds the
        lock now (ask again shortly); TAKEN: handled already, or the schedule
        is gone."""
        with self.db.transaction() as db:
            sql = f"SELECT name FROM schedules WHERE name = ?{self.db.lock_rows}"
            if db.execute(sql, (name,)).fetchone() is None:
                there = db.execute("SELECT 1 FROM schedules WHERE name = ?", (name,)).fetchone()
                return Claim.BUSY if there else Claim.TAKEN
            sql = "SELECT last_due FROM schedule_marks WHERE schedule = ?"
            mark = db.execute(sql, (name,)).fetchone()
            if mark is not None and datetime.fromisoformat(mark[0]) >= datetime.fromisoformat(due):
                return Claim.TAKEN
            db.execute(
                "INSERT INTO schedule_occurrences VALUES (?, ?, ?, 'claimed', '', ?, '', '')"
                " ON CONFLICT (schedule, due) DO NOTHING",
                (name, due, now_iso(), f"claimed by {by}"),
            )
            db.execute(
                "INSERT INTO schedule_marks VALUES (?, ?)"
                " ON CONFLICT (schedule) DO UPDATE SET last_due = excluded.last_due",
                (name, due),
            )
        return Claim.CLAIMED

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


class SqlGameDays:
    """Game days, one row each, rewritten as the day goes."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def put(self, g: StoredGameDay) -> None:
        row = (g.id, g.title, json.dumps(g.plan, default=str), g.state, g.by, g.started, g.ended,
               json.dumps(g.scenarios, default=str), json.dumps(g.notes, default=str),
               g.replica)  # fmt: skip
        with self.db.connect() as db:
            db.execute(
                "INSERT INTO gamedays VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state, ended = excluded.ended,"
                " scenarios = excluded.scenarios, notes = excluded.notes",
                row,
            )

    def get(self, gameday_id: str) -> StoredGameDay | None:
        with self.db.connect() as db:
            row = db.execute("SELECT * FROM gamedays WHERE id = ?", (gameday_id,)).fetchone()
        return _gameday(row) if row else None

    def all(self, limit: int = 100) -> list[StoredGameDay]:
        """Newest first."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT * FROM gamedays ORDER BY started DESC LIMIT ?", (limit,)
            ).fetchall()
        return [_gameday(r) for r in rows]


def _gameday(r: Any) -> StoredGameDay:
    return StoredGameDay(
        r[0],
        r[1],
        json.loads(r[2]),
        r[3],
        r[4],
        r[5],
        r[6],
        json.loads(r[7]),
        json.loads(r[8]),
        r[9],
    )


class SqlMonkeys(_SqlDeclared):
    """Monkeys, and the tracker: one row per planned kill slot. A slot is
    claimed by inserting its row, so across replicas and restarts exactly one
    controller acts on it."""

    table = "monkeys"

    def claim(self, kill: MonkeyKill) -> bool:
        """Take a slot (its row, outcome claimed); False if it was taken before."""
        with self.db.connect() as db:
            return (
                db.execute(
                    "INSERT INTO monkey_kills VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                    " ON CONFLICT (monkey, slot) DO NOTHING",
                    _kill_row(kill),
                ).rowcount
                > 0
            )

    def update(self, kill: MonkeyKill) -> None:
        with self.db.connect() as db:
            db.execute(
                "UPDATE monkey_kills SET at = ?, outcome = ?, detail = ?, agent = ?, action = ?,"
                " run_id = ?, record = ? WHERE monkey = ? AND slot = ?",
                (kill.at, kill.outcome, kill.detail, kill.agent, kill.action, kill.run_id,
                 json.dumps(kill.record or {}, default=str), kill.monkey, kill.slot),
            )  # fmt: skip

    def kills(self, name: str, limit: int = 1000) -> list[MonkeyKill]:
        """The tracker's rows, newest slot first."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT * FROM monkey_kills WHERE monkey = ? ORDER BY due DESC LIMIT ?",
                (name, limit),
            ).fetchall()
        return [_kill(r) for r in rows]

    def last_kills(self, name: str) -> dict[str, str]:
        """Each group's last day with a kill (or a kill under way)."""
        with self.db.connect() as db:
            rows = db.execute(
                "SELECT grp, max(day) FROM monkey_kills WHERE monkey = ?"
                " AND outcome IN ('started', 'killed') GROUP BY grp",
                (name,),
            ).fetchall()
        return {r[0]: r[1] for r in rows}


def _kill(r: Sequence[Any]) -> MonkeyKill:
    return MonkeyKill(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10],
                      json.loads(r[11]))  # fmt: skip


def _kill_row(k: MonkeyKill) -> tuple[Any, ...]:
    return (k.monkey, k.slot, k.group, k.day, k.due, k.at, k.outcome, k.detail, k.agent,
            k.action, k.run_id, json.dumps(k.record or {}, default=str))  # fmt: skip
