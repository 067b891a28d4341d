"""Journals keep Chaos Toolkit's shape; the SQLite history stores and finds them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controller.experiments import journal as jr
from controller.experiments import parse as exp
from controller.store import NotFound, open_store

pytestmark = pytest.mark.unit

CTK_KEYS = {
    "chaoslib-version",
    "platform",
    "node",
    "experiment",
    "start",
    "end",
    "duration",
    "status",
    "deviated",
    "steady_states",
    "run",
    "rollbacks",
}

DOC = {
    "title": "journal test",
    "description": "",
    "method": [
        {
            "type": "action",
            "name": "burn",
            "provider": {"type": "brownout", "fault": "cpu", "arguments": {"cores": 1, "load": 9}},
        }
    ],
}


def finished(run_id: str, status: str, start: str) -> dict[str, object]:
    j = jr.new(exp.parse(DOC), run_id, start)
    j.update(status=status, end=start, duration=1.5)
    ext = j["extensions"][0]
    ext["selection"] = {"targets": ["127.0.0.1:1"], "fleet_size": 1, "mode": "ALL", "seed": 3}
    ext["reason"] = "because"
    return j


def test_new_journal_has_the_chaostoolkit_shape() -> None:
    j = jr.new(exp.parse(DOC), "r1", "2026-01-01T00:00:00+00:00")
    assert set(j) >= CTK_KEYS
    assert set(j["steady_states"]) == {"before", "after", "during"}
    assert j["experiment"]["title"] == "journal test"
    assert jr.brownout(j)["run_id"] == "r1"
    json.dumps(j)  # serialisable as is


def test_write_is_atomic_and_readable(tmp_path: Path) -> None:
    j = finished("r1", "completed", "2026-01-01T00:00:00+00:00")
    path = tmp_path / "journals" / "r1.json"
    jr.write(j, path)
    assert json.loads(path.read_text())["status"] == "completed"
    assert [p.name for p in path.parent.iterdir()] == ["r1.json"]  # no temp files left
    assert "status    completed" in jr.summary(j)


def test_history_records_lists_and_finds_by_prefix(tmp_path: Path) -> None:
    h = open_store(tmp_path).history
    h.record(finished("20260101-000000-aaaaaa", "completed", "2026-01-01T00:00:00"), Path("a"))
    h.record(finished("20260102-000000-bbbbbb", "aborted", "2026-01-02T00:00:00"), Path("b"))
    runs = h.runs()
    assert [r.status for r in runs] == ["aborted", "completed"]  # newest first
    assert runs[0].targets == 1 and runs[0].reason == "because"
    assert [r.run_id for r in h.runs(status="completed")] == ["20260101-000000-aaaaaa"]
    run, journal = h.get("20260102")
    assert run.journal_path == "b" and journal["status"] == "aborted"
    with pytest.raises(NotFound, match="matches 2 runs"):
        h.get("2026")
    with pytest.raises(NotFound, match="no run"):
        h.get("zzz")
