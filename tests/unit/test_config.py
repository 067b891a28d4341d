"""The agent's config: file < environment < flags, and the shipped files are valid."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from agent import config, config_file
from agent.cli import parse_args
from agent.core.limits import Limits
from tests.paths import ROOT

pytestmark = pytest.mark.unit

SHIPPED = ROOT / "systemd" / "agent.yaml"
UNIT = ROOT / "systemd" / "brownout-agent.service"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("BROWNOUT_"):
            monkeypatch.delenv(key)


def test_shipped_config_documents_every_key_at_its_default() -> None:
    data = yaml.safe_load(SHIPPED.read_text())
    assert set(data) == config_file.ALL_KEYS
    from_file = config.from_args(parse_args(["serve", "--config", str(SHIPPED)]))
    built_in = config.from_args(parse_args(["serve"]))
    assert from_file == built_in
    assert built_in.limits == Limits()


def test_file_then_env_then_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(
        "listen: 127.0.0.1:7171\n"
        "max_fault_duration: 10m\n"
        "labels: {zone: a, rack: r1}\n"
        "operators: [spiffe://x/ctl]\n"
        "tls: {cert: /c.pem, key: /k.pem, client_ca: /ca.pem}\n"
    )
    cfg = config.from_args(parse_args(["serve", "--config", str(f)]))
    assert cfg.listen == "127.0.0.1:7171"
    assert cfg.limits.max_fault_duration == 600
    assert cfg.labels == {"zone": "a", "rack": "r1"}
    assert cfg.operators == frozenset({"spiffe://x/ctl"})
    assert cfg.tls_client_ca == Path("/ca.pem")

    monkeypatch.setenv("BROWNOUT_LISTEN", "127.0.0.1:7272")
    cfg = config.from_args(parse_args(["serve", "--config", str(f)]))
    assert cfg.listen == "127.0.0.1:7272"
    assert cfg.limits.max_fault_duration == 600

    cfg = config.from_args(parse_args(["serve", "--config", str(f), "--listen", "[::1]:1"]))
    assert cfg.listen == "[::1]:1"


def test_sweep_reads_the_state_dir_from_the_file(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(f"state_dir: {tmp_path / 'st'}\nlisten: 127.0.0.1:1\n")
    args = parse_args(["sweep", "--config", str(f)])
    assert args.state_dir == tmp_path / "st"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lisen: 1.2.3.4:5\n", "unknown key(s) lisen"),
        ("tls: {certificate: x}\n", "tls takes only"),
        ("insecure_allow_remote: yes-please\n", "must be true or false"),
        ("- a\n- b\n", "must be a mapping"),
        ("listen: [a, b]\n", "listen must be a single value"),
    ],
)
def test_bad_files_are_refused_with_the_key_named(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text(text)
    with pytest.raises(
        config_file.ConfigFileError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        config_file.load(f)


def test_agent_refuses_to_start_on_a_bad_file(tmp_path: Path) -> None:
    f = tmp_path / "agent.yaml"
    f.write_text("lisen: x\n")
    out = subprocess.run(
        [sys.executable, "-m", "agent.cli", "serve", "--config", str(f)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert out.returncode == 2 and "unknown key(s) lisen" in out.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # verify insists the binaries exist: point them at this venv's entry point.
    agent_bin = Path(sys.executable).parent / "brownout-agent"
    assert agent_bin.exists()
    unit = tmp_path / UNIT.name
    unit.write_text(
        UNIT.read_text().replace("/opt/brownout/venv/bin/brownout-agent", str(agent_bin))
    )
    out = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "brownout-agent" not in out.stderr, out.stderr  # no warnings about our unit


def test_unit_keeps_its_promises() -> None:
    text = UNIT.read_text()
    for line in (
        "Type=notify",
        "Restart=always",
        "StateDirectory=brownout",
        "OOMScoreAdjust=-900",
        "ExecStopPost=/opt/brownout/venv/bin/brownout-agent sweep"
        " --config /etc/brownout/agent.yaml",
        "WatchdogSec=",
    ):
        assert line in text, line
    caps = next(ln for ln in text.splitlines() if ln.startswith("CapabilityBoundingSet="))
    for cap in caps.split("=", 1)[1].split():
        assert f"#   {cap}" in text, f"{cap} is granted but not documented"
