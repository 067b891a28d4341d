"""The store's contract, kept by both backends: SQLite in the data dir and a
real PostgreSQL (tests/postgres.py). Same calls, same answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from controller.store import (
    LiveRun,
    NewerDatabase,
    NotFound,
    ScheduledOccurrence,
    Store,
    StoreUnavailable,
    open_store,
)
from controller.store.schema import MIGRATIONS, VERSION

pytestmark = pytest.mark.host


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgres" else None
    s = open_store(tmp_path, dsn)
    yield s
    s.close()


def journal(
    run_id: str, status: str = "completed", duration: float = 61.234567
) -> dict[str, object]:
    return {
        "status": status,
        "deviated": status == "failed",
        "start": f"2026-12-06T10:00:0{run_id[-1]}+00:00",
        "end": "2026-12-06T10:01:00+00:00",
        "duration": duration,
        "experiment": {"title": f"title of {run_id}"},
        "extensions": [
            {
                "name": "brownout",
                "run_id": run_id,
                "reason": "why",
                "selection": {"targets": ["a", "b"]},
            }
        ],
    }


def test_history_records_replaces_lists_and_finds_by_prefix(store: Store, tmp_path: Path) -> None:
    h = store.history
    h.record(journal("20261206-a1"), tmp_path / "a.json")
    h.record(journal("20261206-b2", "failed"), tmp_path / "b.json")
    h.record(journal("20261206-a1", "aborted"), tmp_path / "a.json")  # the same run, again
    runs = h.runs()
    assert [r.run_id for r in runs] == ["20261206-b2", "20261206-a1"]
    assert runs[1].status == "aborted" and runs[0].deviated and runs[0].targets == 2
    assert runs[0].duration == 61.234567  # 8-byte floats on both
    assert [r.run_id for r in h.runs(status="failed")] == ["20261206-b2"]
    run, j = h.get("20261206-b")
    assert run.run_id == "20261206-b2" and j["status"] == "failed"
    with pytest.raises(NotFound, match="matches 2 runs"):
        h.get("20261206")
    with pytest.raises(NotFound, match="no run"):
        h.get("2026_%")  # LIKE's wildcards are taken literally


def test_service_state_round_trips(store: Store) -> None:
    st = store.state
    assert not st.kill_switch().engaged
    st.set_kill_switch(True, "incident 42", "token:alice")
    ks = st.kill_switch()
    assert (ks.engaged, ks.reason, ks.by) == (True, "incident 42", "token:alice")
    st.set_kill_switch(False, "", "token:bob")
    assert not st.kill_switch().engaged and st.kill_switch().by == "token:bob"
    st.put_experiment("cpu", "CPU", {"title": "CPU"}, "token:alice")
    st.put_experiment("cpu", "CPU v2", {"title": "CPU v2"}, "token:bob")
    [e] = st.experiments()
    assert (e.title, e.doc, e.by) == ("CPU v2", {"title": "CPU v2"}, "token:bob")
    assert st.delete_experiment("cpu") and not st.delete_experiment("cpu")
    st.run_started(LiveRun("r1", "t", "/j.json", "me", "2026-12-06T10:00:00+00:00", ["a:1"]))
    assert [(r.run_id, r.agents) for r in st.live_runs()] == [("r1", ["a:1"])]
    st.run_ended("r1")
    assert st.live_runs() == []


def test_schedules_keep_their_newest_occurrences_and_mark(store: Store) -> None:
    sc = store.schedules
    sc.put("nightly", {"cron": "0 3 * * *"}, "api", "token:alice")
    assert sc.get("nightly") is not None and sc.last_due("nightly") is None
    for hour in range(5):
        due = f"2026-12-06T0{hour}:00:00+00:00"
        sc.record(ScheduledOccurrence("nightly", due, due, "skipped", "blackout", "freeze"), keep=3)
    assert [o.due[11:13] for o in sc.occurrences("nightly")] == ["04", "03", "02"]
    assert sc.last_due("nightly") == "2026-12-06T04:00:00+00:00"
    assert sc.delete("nightly") and sc.get("nightly") is None and sc.last_due("nightly") is None


def test_postgres_migrates_once_when_replicas_open_together(pg_dsn: str, tmp_path: Path) -> None:
    opened: list[Store] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(open_store(tmp_path, pg_dsn))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with psycopg.connect(pg_dsn) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM brownout_schema ORDER BY 1")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))
    for s in opened:
        s.close()


def test_postgres_from_a_newer_release_is_refused(pg_dsn: str, tmp_path: Path) -> None:
    open_store(tmp_path, pg_dsn).close()
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("INSERT INTO brownout_schema VALUES (%s, 'future', 'x')", (VERSION + 1,))
    with pytest.raises(NewerDatabase, match="upgrade Brownout"):
        open_store(tmp_path, pg_dsn)


def test_an_unreachable_postgres_is_a_clear_error_without_the_password(tmp_path: Path) -> None:
    with socket.socket() as s:  # a loopback port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dsn = f"postgresql://brownout:s3cret@127.0.0.1:{port}/db?connect_timeout=1"
    with pytest.raises(StoreUnavailable) as info:
        open_store(tmp_path, dsn)
    message = str(info.value)
    assert f"127.0.0.1:{port}/db" in message and "s3cret" not in message
