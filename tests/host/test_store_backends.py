"""The store's contract, kept by both backends: SQLite in the data dir and a
real PostgreSQL (tests/postgres.py). Same calls, same answers."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from controller.store import (
    Claim,
    LiveRun,
    MonkeyKill,
    NewerDatabase,
    NotFound,
    Replica,
    ScheduledOccurrence,
    Store,
    StoreUnavailable,
    open_store,
)
from controller.store.schema import MIGRATIONS, VERSION

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


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


def test_schedules_claim_each_occurrence_once_and_keep_the_newest(store: Store) -> None:
    sc = store.schedules
    sc.put("nightly", {"cron": "0 3 * * *"}, "api", "token:alice")
    assert sc.get("nightly") is not None and sc.last_due("nightly") is None
    for hour in range(5):
        due = f"2026-12-06T0{hour}:00:00+00:00"
        assert sc.claim("nightly", due, "replica-a") is Claim.CLAIMED
        assert sc.claim("nightly", due, "replica-b") is Claim.TAKEN  # once
        sc.record(ScheduledOccurrence("nightly", due, due, "skipped", "blackout", "freeze"), keep=3)
    assert [o.due[11:13] for o in sc.occurrences("nightly")] == ["04", "03", "02"]
    assert sc.last_due("nightly") == "2026-12-06T04:00:00+00:00"
    # Compared as instants: 04:30+01:00 is 03:30 UTC, before the mark.
    assert sc.claim("nightly", "2026-12-06T04:30:00+01:00", "replica-b") is Claim.TAKEN
    assert sc.claim("nightly", "2026-12-06T05:00:00+00:00", "replica-b") is Claim.CLAIMED
    [claimed] = [o for o in sc.occurrences("nightly") if o.outcome == "claimed"]
    assert claimed.detail == "claimed by replica-b"  # visible if replica-b dies before recording
    assert sc.delete("nightly") and sc.get("nightly") is None and sc.last_due("nightly") is None
    assert sc.claim("nightly", "2026-12-06T06:00:00+00:00", "replica-a") is Claim.TAKEN


def test_postgres_skips_an_occurrence_another_replica_is_claiming(
    pg_dsn: str, tmp_path: Path
) -> None:
    store = open_store(tmp_path, pg_dsn)
    store.schedules.put("s", {"every": "1s"}, "api", "me")
    with psycopg.connect(pg_dsn) as other:  # a replica inside its claim: the row locked
        other.execute("SELECT name FROM schedules WHERE name = 's' FOR UPDATE")
        t0 = time.monotonic()
        assert store.schedules.claim("s", "2026-12-06T00:00:00+00:00", "me") is Claim.BUSY
        assert time.monotonic() - t0 < 1.0  # skipped, not waited for
    assert store.schedules.claim("s", "2026-12-06T00:00:00+00:00", "me") is Claim.CLAIMED
    store.close()


def test_a_run_is_taken_over_by_one_replica_only_once_silent(store: Store) -> None:
    st = store.state
    st.replica_beat(Replica("host/1/aa", "host", 1, "t0"), {})
    st.run_started(LiveRun("r1", "t", "/j.json", "me", "t0", ["a:1"], "host/1/aa"))
    [live] = st.live_runs()
    assert live.heartbeat > 0 and live.replica == "host/1/aa"
    assert not st.take_run(live, "host/2/bb", stale=5.0)  # it beat just now
    assert st.request_abort("r1", "replaced")
    asks = st.replica_beat(Replica("host/1/aa", "host", 1, "t0"), {"r1": '{"status": "running"}'})
    assert asks == [("r1", "replaced")]
    assert st.live_runs()[0].journal == '{"status": "running"}'
    st.replica_beat(Replica("host/1/aa", "host", 1, "t0"), {"r1": None})  # unchanged
    assert st.live_runs()[0].journal == '{"status": "running"}'
    time.sleep(0.3)
    assert st.take_run(live, "host/2/bb", stale=0.2)
    assert not st.take_run(live, "host/3/cc", stale=0.2)  # the old owner is no longer on it
    assert st.live_runs()[0].replica == "host/2/bb"
    [rep] = st.replicas()
    assert rep.replica == "host/1/aa" and rep.age >= 0.3
    st.replica_beat(Replica("host/2/bb", "host", 2, "t1"), {})
    st.replica_gone("host/1/aa", stale=0.2)  # silent, and drives no run any more
    st.replica_gone("host/2/bb", stale=0.2)  # drives r1: kept
    assert [r.replica for r in st.replicas()] == ["host/2/bb"]


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


def test_the_monkey_tracker_claims_each_slot_once_and_keeps_the_last_kill(store: Store) -> None:
    mk = store.monkeys
    mk.put("web", {"name": "web"}, "api", "token:alice")
    assert [m.name for m in mk.all()] == ["web"]
    slot = MonkeyKill("web", "2026-12-07/web0/0", "web0", "2026-12-07",
                      "2026-12-07T10:00:00+00:00", "t", "claimed", "claimed by a")  # fmt: skip
    assert mk.claim(slot)
    assert not mk.claim(slot)  # once, whoever asks again
    mk.update(MonkeyKill(**{**slot.__dict__, "outcome": "killed", "agent": "a:1",
                            "record": {"process": {"signalled": "42"}}}))  # fmt: skip
    [row] = mk.kills("web")
    assert (row.outcome, row.agent, row.record) == (
        "killed",
        "a:1",
        {"process": {"signalled": "42"}},
    )
    assert mk.last_kills("web") == {"web0": "2026-12-07"}
    skipped = MonkeyKill("web", "2026-12-08/web0/0", "web0", "2026-12-08",
                         "2026-12-08T10:00:00+00:00", "t", "skipped", "gate")  # fmt: skip
    assert mk.claim(skipped)
    assert mk.last_kills("web") == {"web0": "2026-12-07"}  # a skip is no kill
    assert mk.delete("web") and mk.get("web") is None
