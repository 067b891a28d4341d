"""Several `brownout serve` replicas on one real PostgreSQL over real agents:
each scheduled occurrence runs exactly once (50 occurrences, 3 replicas); a
replica SIGKILLed mid-run loses its run to a survivor, which marks it
interrupted once its heartbeat is stale, while the agents revert by lease and
the schedule goes on; and the kill switch engaged on one replica stops the
runs of the others.

One replica of the failover test runs in a UTS namespace of its own, under
another host name, so the survivor cannot see that its process died and must
judge it by its heartbeat alone, as across machines."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import doc, live_faults
from tests.host.schedules import occurrences, put
from tests.host.serveproc import VIEWER, ServeProc
from tests.host.test_schedules_serve import at_boundary

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

TIMEOUT = 3.0  # --replica-timeout


def light(hold: str = "0.5s", duration: str = "2s") -> dict[str, Any]:
    """A CPU fault on one agent of the five (20 %), held briefly."""
    return doc(duration=duration,
               brownout={"lease-ttl": "3s", "ramp": {"steps": [20], "hold": hold}})  # fmt: skip


def held() -> dict[str, Any]:
    return doc(
        duration="60s", brownout={"lease-ttl": "3s", "ramp": {"steps": [100], "hold": "40s"}}
    )


@pytest.fixture
def replicas(
    fleet: list[AgentProc], pg_dsn: str, tmp_path: Path
) -> Iterator[Callable[..., ServeProc]]:
    """Start replicas on one database; all stopped (or reaped) at the end, and
    the agents resumed (a test engages the kill switch)."""
    started: list[ServeProc] = []

    def start(name: str, host: str = "") -> ServeProc:
        prefix = ["unshare", "--uts", "--", "sh", "-c", f'hostname {host} && exec "$@"', "sh"]
        s = ServeProc(tmp_path / name, fleet, ["--database", pg_dsn, "--replica-timeout",
                      f"{TIMEOUT:g}s"], prefix if host else [])  # fmt: skip
        started.append(s.start())
        return s

    yield start
    for s in started:
        if s.proc is not None:
            assert s.stop() == 0, s.logs()[-3000:]
    for a in fleet:
        with a.client() as c:
            c.resume()


def held_faults(fleet: list[AgentProc]) -> list[pb.Fault]:
    """The live faults of held() (60 s), not the schedule's short ones."""
    return [f for f in live_faults(fleet) if f.duration.seconds == 60]


def scheduled_runs(s: ServeProc) -> int:
    found = re.findall(r"^chaos_scheduled_runs_total\{[^}]*\} (\S+)$", s.metrics(), re.M)
    return int(sum(float(v) for v in found))


def db_rows(dsn: str, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as conn:
        return list(conn.execute(sql, params).fetchall())


def history_status(s: ServeProc, run_id: str) -> dict[str, Any]:
    answer = s.call("GET", f"/api/v1/runs/{run_id}", token=VIEWER)
    return dict(answer.body) if answer.status == 200 else {}


def reason(journal: dict[str, Any]) -> str:
    return next(str(e.get("reason", "")) for e in journal["extensions"] if e["name"] == "brownout")


def test_each_occurrence_runs_exactly_once_across_three_replicas(
    replicas: Callable[..., ServeProc], fleet: list[AgentProc], pg_dsn: str
) -> None:
    r = [replicas(f"r{i}") for i in range(3)]
    assert r[0].call("PUT", "/api/v1/experiments/light", {"experiment": light()}).status == 200
    first = at_boundary(2, 4)
    last = first + timedelta(seconds=18)  # 10 occurrences of each of 5 schedules
    for i in range(5):
        put(r[i % 3], {"name": f"s{i}", "experiments": ["light"], "cron": "*/2 * * * * *",
                       "concurrency": "allow"})  # fmt: skip
    assert wait_for(lambda: datetime.now(UTC) > last + timedelta(seconds=1), 60, 0.5)
    for i in range(5):
        put(r[0], {"name": f"s{i}", "experiments": ["light"], "cron": "*/2 * * * * *",
                   "paused": True})  # fmt: skip
    every = [o for i in range(5) for o in occurrences(r[i % 3], f"s{i}", claimed=True)]
    rows = [o for o in every if first <= datetime.fromisoformat(o["due"]) <= last]
    assert len(rows) == 50, rows
    assert [o for o in rows if o["outcome"] != "started"] == []
    started = [o for o in every if o["outcome"] == "started"]  # the window's, and a few around it
    run_ids = {o["run_id"] for o in started}
    assert len(run_ids) == len(started)  # each occurrence one run
    per_replica = [scheduled_runs(s) for s in r]
    assert sum(per_replica) == len(started), per_replica  # no occurrence started twice
    assert sum(1 for n in per_replica if n) >= 2, per_replica  # the work was shared
    assert not [o for o in every if o["outcome"] == "claimed"]
    # Every run ended, once, in the shared history.
    assert wait_for(lambda: len(db_rows(pg_dsn, "SELECT run_id FROM runs WHERE run_id = ANY(%s)",
                                        list(run_ids))) == len(run_ids), 30, 0.5)  # fmt: skip
    statuses = db_rows(pg_dsn, "SELECT status, count(*) FROM runs GROUP BY status")
    assert statuses == [("completed", len(run_ids))], statuses
    # The CLI reads the same history from the database.
    cli = subprocess.run(
        [sys.executable, "-m", "controller.cli", "history", "--database", pg_dsn, "--json",
         "--limit", "1000"], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    assert {r["run_id"] for r in json.loads(cli.stdout)} == run_ids
    assert wait_for(lambda: not live_faults(fleet), 10)


def test_a_sigkilled_replica_loses_its_run_to_a_survivor_by_heartbeat(
    replicas: Callable[..., ServeProc], fleet: list[AgentProc], pg_dsn: str
) -> None:
    a = replicas("a", host="replica-a-host")  # another host, for the survivor
    b = replicas("b")
    assert a.call("PUT", "/api/v1/experiments/light", {"experiment": light()}).status == 200
    put(a, {"name": "tick", "experiments": ["light"], "cron": "*/2 * * * * *",
            "concurrency": "allow"})  # fmt: skip
    run_id = a.call("POST", "/api/v1/runs", {"experiment": held()}).body["run_id"]
    assert wait_for(lambda: len(held_faults(fleet)) == len(fleet), 20, 0.1), live_faults(fleet)
    listed = b.call("GET", "/api/v1/replicas", token=VIEWER).body
    mine = {x["replica"]: x for x in listed["replicas"]}
    assert mine[a.ready["replica"]]["host"] == "replica-a-host"
    assert run_id in mine[a.ready["replica"]]["runs"]

    assert a.proc is not None
    a.proc.send_signal(signal.SIGKILL)
    a.proc.wait(10)
    a.proc = None
    # Staleness counts from its last heartbeat (up to a beat before the kill),
    # on the store's clock: PostgreSQL's, this host's wall clock.
    [(last_beat,)] = db_rows(pg_dsn, "SELECT heartbeat FROM replicas WHERE replica = %s",
                             a.ready["replica"])  # fmt: skip
    # The agents revert by lease (TTL 3 s), whatever the replicas do.
    assert wait_for(lambda: not held_faults(fleet), 10, 0.1), held_faults(fleet)
    journal: dict[str, Any] = {}

    def interrupted() -> bool:
        journal.update(history_status(b, run_id))
        return journal.get("status") == "interrupted"

    assert wait_for(interrupted, 20, 0.2), journal
    silent = time.time() - last_beat  # when it was seen interrupted: no earlier than marked
    assert TIMEOUT <= silent <= TIMEOUT + 5, silent  # once stale, and soon after
    why = reason(journal)
    assert f"replica {a.ready['replica']} driving it stopped heartbeating" in why, why
    assert b.ready["replica"] in why
    # What its agents said of its faults, asked by the survivor.
    ext = next(e for e in journal["extensions"] if e["name"] == "brownout")
    states = [f["after_restart"] for r in ext["agents"].values() for f in r.get("faults", [])]
    assert len(states) == len(fleet), states
    assert all(x == {"state": "reverted", "end_reason": "lease_expired"} for x in states), states
    # The schedule goes on, on the survivor alone, every occurrence handled.
    resumed = datetime.now(UTC) + timedelta(seconds=1)
    before = scheduled_runs(b)
    assert wait_for(lambda: scheduled_runs(b) >= before + 3, 20, 0.5)
    later = [o for o in occurrences(b, "tick") if datetime.fromisoformat(o["due"]) >= resumed]
    assert later and all(o["outcome"] == "started" for o in later[:3]), later
    put(b, {"name": "tick", "experiments": ["light"], "cron": "*/2 * * * * *", "paused": True})
    listed = b.call("GET", "/api/v1/replicas", token=VIEWER).body["replicas"]
    [lost] = [x for x in listed if x["replica"] == a.ready["replica"]]
    assert lost["lost"] and lost["runs"] == [] and lost["age"] > TIMEOUT, lost
    metrics = b.metrics()
    assert 'chaos_controller_replicas{state="lost"} 1.0' in metrics
    # The held run and any of the schedule's that a was driving: each taken once.
    taken = re.search(r"^chaos_runs_taken_over_total (\S+)$", metrics, re.M)
    assert taken is not None and float(taken.group(1)) >= 1
    [(cut_off,)] = db_rows(pg_dsn, "SELECT count(*) FROM runs WHERE status = 'interrupted'")
    assert cut_off == float(taken.group(1))
    left = db_rows(pg_dsn, "SELECT run_id FROM live_runs WHERE replica = %s", a.ready["replica"])
    assert left == []


def test_the_kill_switch_engaged_on_one_replica_stops_runs_on_the_others(
    replicas: Callable[..., ServeProc], fleet: list[AgentProc]
) -> None:
    a, b = replicas("a"), replicas("b")
    run_id = b.call("POST", "/api/v1/runs", {"experiment": held()}).body["run_id"]
    assert wait_for(lambda: len(live_faults(fleet)) >= len(fleet), 20, 0.1)
    engaged = a.call("POST", "/api/v1/kill-switch", {"engaged": True, "reason": "drill"})
    assert engaged.status == 200, engaged.body
    t0 = time.monotonic()
    journal: dict[str, Any] = {}

    def ended() -> bool:
        journal.update(b.call("GET", f"/api/v1/runs/{run_id}", token=VIEWER).body)
        return journal.get("status") != "running"

    assert wait_for(ended, 10, 0.1), journal
    assert time.monotonic() - t0 < 5
    assert journal["status"] == "aborted" and reason(journal) == "kill switch: drill", journal
    refused = b.call("POST", "/api/v1/runs", {"experiment": light()})
    assert refused.status == 409 and "kill switch" in refused.body["error"], refused.body
    assert b.call("GET", "/api/v1/kill-switch", token=VIEWER).body["engaged"] is True
    assert wait_for(lambda: "kill switch engaged by another replica" in b.logs(), 5, 0.2)
    # Disengaged on the other one: b follows, resumes its agents and runs again.
    assert b.call("POST", "/api/v1/kill-switch", {"engaged": False}).status == 200
    assert wait_for(lambda: "kill switch disengaged by another replica" in a.logs(), 10, 0.2)
    again = a.call("POST", "/api/v1/runs", {"experiment": light()})
    assert again.status == 202, again.body
    assert wait_for(lambda: history_status(a, again.body["run_id"]).get("status") == "completed",
                    30, 0.2)  # fmt: skip
