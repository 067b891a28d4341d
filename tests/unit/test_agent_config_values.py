"""Every flag, config-file key and environment variable of brownout-agent,
fed out-of-range, malformed and empty values: each gets a clear error that
names where the value came from, exit code 2, and nothing is started (no
state dir, and the daemon is never reached). A completeness check walks the
parser, so a new option without bad values here fails.
"""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent import cli as agent_cli
from agent import config, daemon
from tests.unit.parsers import walk

pytestmark = pytest.mark.unit

DURATION = ["", "soon", "-5s", "0", "1x"]
SIZE = ["", "lots", "-1", "1.5.5GiB"]
ADDRESS = ["", "nohost", "127.0.0.1:99999", "127.0.0.1:-1", "::1:80", "bad_host!:80", "h:port"]
PATH = ["", "a\0b"]

AGENT_BAD: dict[str, list[str]] = {
    "state_dir": PATH,
    "log_level": ["", "loud"],
    "listen": ADDRESS,
    "metrics_listen": ADDRESS[1:],  # empty disables it
    "heartbeat_port": ["", "udp", "-1", "65536", "7070x"],
    "labels": ["novalue", "=x", "a=1,a=2"],
    "max_fault_duration": DURATION,
    "max_lease_ttl": DURATION,
    "min_lease_ttl": DURATION,
    "memory_reserve": SIZE,
    "disk_reserve": SIZE,
    "max_active_faults": ["", "many", "0", "-3", "10001"],
    "process_match_cap": ["", "lots", "0", "-1", "100001"],
    "max_clock_offset": DURATION,
    "process_denylist": ["(", "sshd,[z-a]"],
    "oom_score_adj": ["", "low", "-1001", "1001"],
    "tls_cert": PATH,
    "tls_key": PATH,
    "tls_client_ca": PATH,
    "insecure_allow_remote": ["maybe", "2"],
    "ready_file": ["", "/nonexistent-dir/ready.json"],
}
# Any text is a valid value: identity lists (a CN may hold spaces; empty means none).
AGENT_FREE = {"operators", "viewers"}


@pytest.fixture
def no_daemon(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Records whether main() got as far as starting the daemon."""
    started: list[str] = []

    def serve(cfg: config.AgentConfig) -> int:
        started.append("serve")
        return 0

    def sweep(cfg: config.AgentConfig) -> dict[str, object]:
        started.append("sweep")
        return {"remaining_journal": []}

    monkeypatch.setattr(daemon, "serve", serve)
    monkeypatch.setattr(daemon, "sweep", sweep)
    for key in list(os.environ):
        if key.startswith("BROWNOUT_"):
            monkeypatch.delenv(key)
    return started


def run_agent(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            code = agent_cli.main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = int(exc.code or 0)
    return code, err.getvalue()


def agent_cases() -> Iterator[tuple[str, str, str]]:
    for dest, values in AGENT_BAD.items():
        for value in values:
            for source in ("flag", "env", "file"):
                option = next(o for o in config.SERVE if o.dest == dest)
                if source != "flag" and option.flag_only:
                    continue
                if source == "flag" and option.switch:
                    continue  # a switch takes no value; its variable and key do
                if source == "env" and "\0" in value:
                    continue  # the environment cannot hold a NUL
                yield dest, value, source


@pytest.mark.parametrize(("dest", "value", "source"), list(agent_cases()))
def test_agent_refuses_bad_values_naming_their_source(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_daemon: list[str],
    dest: str,
    value: str,
    source: str,
) -> None:
    option = next(o for o in config.SERVE if o.dest == dest)
    state = tmp_path / "state"
    argv = ["serve", "--state-dir", str(state)] if dest != "state_dir" else ["serve"]
    if source == "flag":
        argv += [f"{option.flag}={value}"]
        named = option.flag
    elif source == "env":
        monkeypatch.setenv(option.env, value)
        named = option.env
    else:
        if dest == "labels":
            pytest.skip("labels in a file are a mapping, checked by test_config")
        f = tmp_path / "agent.yaml"
        tls = dest.removeprefix("tls_")
        doc = {"tls": {tls: value}} if tls != dest else {dest: value}
        f.write_text(yaml.safe_dump(doc))
        argv += ["--config", str(f)]
        named = f"{f}: {dest}"
    code, err = run_agent(argv)
    assert code == 2, (argv, err)
    assert named in err, f"error does not name {named}: {err!r}"
    assert no_daemon == [], "the agent started despite the bad value"
    assert not state.exists()


def test_agent_refuses_an_empty_config_variable(no_daemon: list[str], tmp_path: Path) -> None:
    os.environ["BROWNOUT_CONFIG"] = ""
    try:
        code, err = run_agent(["serve", "--state-dir", str(tmp_path / "s")])
    finally:
        del os.environ["BROWNOUT_CONFIG"]
    assert code == 2 and "BROWNOUT_CONFIG" in err and no_daemon == []


def test_agent_refuses_a_missing_config_file(no_daemon: list[str], tmp_path: Path) -> None:
    code, err = run_agent(["serve", "--config", str(tmp_path / "nope.yaml")])
    assert code == 2 and "nope.yaml" in err and no_daemon == []


def test_agent_min_lease_ttl_above_max_is_refused(no_daemon: list[str]) -> None:
    code, err = run_agent(["serve", "--min-lease-ttl", "10m", "--max-lease-ttl", "5m"])
    assert code == 2 and "--min-lease-ttl" in err and no_daemon == []


def test_agent_accepts_the_edges(no_daemon: list[str], tmp_path: Path) -> None:
    argv = ["serve", "--state-dir", str(tmp_path / "s"), "--listen", "[::1]:65535"]
    argv += ["--metrics-listen", "", "--oom-score-adj", "-1000", "--max-active-faults", "1"]
    code, err = run_agent(argv)
    assert code == 0 and no_daemon == ["serve"], err


def test_every_agent_option_has_bad_values_here() -> None:
    dests = {o.dest for o in config.SERVE}
    assert dests == set(AGENT_BAD) | AGENT_FREE
    flags = {a.dest for a in walk(agent_cli.build_parser()) if a.option_strings}
    assert flags - {"help", "version", "config"} == dests


def test_the_agent_binary_refuses_port_99999_and_binds_nothing(tmp_path: Path) -> None:
    """The reported case, end to end: the port was taken modulo 65536 (34463)."""
    state = tmp_path / "state"
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--listen", "127.0.0.1:99999",
         "--state-dir", str(state), "--metrics-listen", ""],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 2, out.stderr
    assert "--listen: '127.0.0.1:99999': port 99999 is out of range" in out.stderr
    assert not state.exists()
