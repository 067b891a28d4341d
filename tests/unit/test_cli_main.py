"""The controller CLI without agents: the run window refuses, bad files are named,
unreachable agents are reported."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from controller.experiments.window import DAYS

pytestmark = pytest.mark.unit

DEAD_AGENT = "127.0.0.1:1"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args], capture_output=True, text=True, timeout=60
    )


def experiment(tmp_path: Path, window: str | None) -> Path:
    ext: dict[str, object] = {"name": "brownout"}
    if window:
        ext["run-window"] = window
    doc = {
        "title": "cli",
        "description": "",
        "method": [
            {
                "type": "action",
                "name": "burn",
                "provider": {
                    "type": "brownout",
                    "fault": "cpu",
                    "arguments": {"cores": 1, "load": 5},
                },
            }
        ],
        "extensions": [ext],
    }
    path = tmp_path / "e.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_outside_the_run_window_the_run_refuses_to_start(tmp_path: Path) -> None:
    tomorrow = DAYS[(datetime.now(UTC).weekday() + 1) % 7]
    path = experiment(tmp_path, f"{tomorrow} 00:00-23:59 UTC")
    out = cli("run", str(path), "--agent", DEAD_AGENT, "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert "refusing to start: outside the run window" in out.stderr
    assert "--override-window" in out.stderr
    assert not (tmp_path / "journals").exists()

    # Overridden, it starts; the only agent is unreachable, so pre-flight aborts it.
    out = cli(
        "run", str(path), "--agent", DEAD_AGENT, "--data-dir", str(tmp_path), "--override-window"
    )
    assert out.returncode == 3, out.stderr
    assert "status    aborted" in out.stdout and "no eligible agent" in out.stdout
    assert "aborted" in cli("history", "--data-dir", str(tmp_path)).stdout


def test_invalid_experiment_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("title: x\nmethod: []\n")
    out = cli("run", str(path), "--agent", DEAD_AGENT, "--data-dir", str(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip() == "brownout: method: a non-empty list of activities is required"


def test_agents_reports_the_unreachable(tmp_path: Path) -> None:
    out = cli("agents", "--agent", DEAD_AGENT)
    assert out.returncode == 1
    row = out.stdout.splitlines()[1].split()
    assert row[:2] == [DEAD_AGENT, "no"] and "UNAVAILABLE" in out.stdout
    assert cli("show", "nope", "--data-dir", str(tmp_path)).returncode == 2


def test_run_json_prints_only_the_journal_on_stdout_and_json_logs_on_stderr(
    tmp_path: Path,
) -> None:
    path = experiment(tmp_path, None)
    out = cli("run", str(path), "--agent", DEAD_AGENT, "--data-dir", str(tmp_path), "--json")
    assert out.returncode == 3, out.stderr
    journal = json.loads(out.stdout)  # the whole of stdout is the journal
    run_id = journal["extensions"][0]["run_id"]
    lines = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    started = [x for x in lines if x["event"] == "run started"]
    ended = [x for x in lines if x["event"] == "run ended"]
    assert [x["run_id"] for x in started + ended] == [run_id, run_id]
    assert ended[0]["status"] == "aborted" and ended[0]["level"] == "info"
    quiet = cli("--log-level", "warning", "run", str(path), "--agent", DEAD_AGENT,
                "--data-dir", str(tmp_path), "--json")  # fmt: skip
    assert not [line for line in quiet.stderr.splitlines() if line.startswith("{")]
