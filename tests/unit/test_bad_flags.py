"""Every flag, config-file key and environment variable of both binaries, fed
out-of-range, malformed and empty values: each gets a clear error that names
where the value came from, exit code 2, and nothing is started.

"Nothing started" is checked from outside: the agent creates no state dir and
never reaches its daemon; the controller never connects to the agent address
it was given (a listening socket counts connections). A completeness check
walks both argument parsers, so a new flag without bad values here fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from agent import cli as agent_cli
from agent import config, daemon
from controller.cli import main as controller_cli

pytestmark = pytest.mark.unit

# ------------------------------------------------------------ the agent

DURATION = ["", "soon", "-5s", "0", "1x"]
SIZE = ["", "lots", "-1", "1.5.5GiB"]
ADDRESS = ["", "nohost", "127.0.0.1:99999", "127.0.0.1:-1", "::1:80", "bad_host!:80", "h:port"]
PATH = ["", "a\0b"]

AGENT_BAD: dict[str, list[str]] = {
    "state_dir": PATH,
    "log_level": ["", "loud"],
    "listen": ADDRESS,
    "metrics_listen": ADDRESS[1:],  # empty disables it
    "labels": ["novalue", "=x", "a=1,a=2"],
    "max_fault_duration": DURATION,
    "max_lease_ttl": DURATION,
    "min_lease_ttl": DURATION,
    "memory_reserve": SIZE,
    "disk_reserve": SIZE,
    "max_active_faults": ["", "many", "0", "-3", "10001"],
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


# -------------------------------------------------------- the controller


@pytest.fixture
def agent_port() -> Iterator[tuple[int, list[int]]]:
    """A listening socket standing where an agent would be: counts connections."""
    accepted: list[int] = []
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.1)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            accepted.append(1)
            conn.close()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield srv.getsockname()[1], accepted
    stop.set()
    t.join(2)
    srv.close()


DUR = ["", "later", "-1s", "0"]
PCT = ["", "lots", "150", "-1", "nan"]
SZ = ["", "big", "-5"]
INT = ["", "x", "1.5"]
CIDR = ["", "10.0.0.0/40", "not-an-ip"]
PORT = ["", "0", "70000", "9-3", "http"]
CHOICE = ["", "bogus"]
ADDR = ["", "nohost", "127.0.0.1:99999", "::1:80"]

# (command words before the flag, the flag, bad values, words after it)
INJECT = ["inject"]
C = "--duration 10s"
CTL_BAD: list[tuple[str, str, list[str], str]] = [
    ("", "--agent", ADDR, "info"),
    ("", "--timeout", DUR, "info"),
    ("", "--tls-ca", ["", "/nonexistent/ca.pem"], "info"),
    ("", "--tls-cert", ["", "/nonexistent/c.pem"], "info"),
    ("", "--tls-key", ["", "/nonexistent/k.pem"], "info"),
    ("", "--tls-server-name", ["bad name!", "-x-"], "info"),
    ("faults", "--lease", [""], ""),
    ("halt", "--agent", ADDR, ""),
    ("halt", "--dns", ["", "bad_name!", "svc:99999"], ""),
    ("halt", "--inventory", [""], ""),
    ("inject cpu", "--cores", [*INT, "0", "-2"], f"--load 5 {C}"),
    ("inject cpu", "--core-list", ["", "a", "3-1", "1,1", "-1"], f"--load 5 {C}"),
    ("inject cpu", "--load", [*PCT, "0"], f"--cores 1 {C}"),
    ("inject cpu", "--cgroup", ["", "../etc"], f"--cores 1 --load 5 {C}"),
    ("inject cpu", "--pid", [*INT, "0", "-1"], f"--cores 1 --load 5 {C}"),
    ("inject cpu", "--duration", DUR, "--cores 1 --load 5"),
    ("inject cpu", "--lease-ttl", DUR, f"--cores 1 --load 5 {C}"),
    ("inject cpu", "--holder", ["", "x" * 300], f"--cores 1 --load 5 {C}"),
    ("inject memory", "--size", [*SZ, "0"], C),
    ("inject memory", "--percent", [*PCT, "0"], C),
    ("inject memory", "--rate", ["", "fast", "-1", "inf"], f"--size 1MiB {C}"),
    ("inject disk", "--path", [""], f"--fill 50 {C}"),
    ("inject disk", "--fill", [*PCT, "0"], f"--path /tmp {C}"),
    ("inject disk", "--write", [*SZ, "0"], f"--path /tmp {C}"),
    ("inject disk", "--leave", SZ, f"--path /tmp {C}"),
    ("inject io", "--path", [""], f"--mode read {C}"),
    ("inject io", "--workers", [*INT, "0", "65"], f"--path /tmp --mode read {C}"),
    ("inject io", "--mode", CHOICE, f"--path /tmp {C}"),
    ("inject io", "--block-size", [*SZ, "0"], f"--path /tmp --mode read {C}"),
    ("inject io", "--bytes-per-worker", [*SZ, "0"], f"--path /tmp --mode read {C}"),
    *[
        ("inject netem", flag, PCT, f"--delay 1ms {C}")
        for flag in (
            "--correlation",
            "--loss",
            "--loss-correlation",
            "--duplicate",
            "--corrupt",
            "--reorder",
            "--reorder-correlation",
        )
    ],
    ("inject netem", "--delay", ["", "slow", "-1ms"], C),
    ("inject netem", "--jitter", ["", "slow", "-1ms"], f"--delay 1ms {C}"),
    ("inject netem", "--distribution", CHOICE, f"--delay 1ms {C}"),
    ("inject netem", "--gap", [*INT, "-1", str(2**32)], f"--delay 1ms {C}"),
    ("inject netem", "--rate", ["", "fast", "10mbps", "-1"], f"--delay 1ms {C}"),
    ("inject netem", "--to", CIDR, f"--delay 1ms {C}"),
    ("inject netem", "--port", PORT, f"--delay 1ms {C}"),
    ("inject netem", "--source-port", PORT, f"--delay 1ms {C}"),
    ("inject netem", "--protocol", CHOICE, f"--delay 1ms {C}"),
    ("inject netem", "--exclude", CIDR, f"--delay 1ms {C}"),
    ("inject netem", "--interface", ["", "a/b", "x" * 16], f"--delay 1ms {C}"),
    ("inject netem", "--netns", [""], f"--delay 1ms {C}"),
    ("inject netem", "--pid", [*INT, "0"], f"--delay 1ms {C}"),
    ("inject bandwidth", "--rate", ["", "fast", "0", "10mbps"], C),
    ("inject bandwidth", "--burst", [*SZ, "0"], f"--rate 1mbit {C}"),
    ("inject bandwidth", "--limit", [*SZ, "0"], f"--rate 1mbit {C}"),
    ("inject bandwidth", "--latency", DUR, f"--rate 1mbit {C}"),
    ("inject bandwidth", "--to", CIDR, f"--rate 1mbit {C}"),
    ("inject bandwidth", "--port", PORT, f"--rate 1mbit {C}"),
    ("inject bandwidth", "--source-port", PORT, f"--rate 1mbit {C}"),
    ("inject bandwidth", "--protocol", CHOICE, f"--rate 1mbit {C}"),
    ("inject bandwidth", "--exclude", CIDR, f"--rate 1mbit {C}"),
    ("inject bandwidth", "--interface", ["", "a/b"], f"--rate 1mbit {C}"),
    ("inject bandwidth", "--netns", [""], f"--rate 1mbit {C}"),
    ("inject bandwidth", "--pid", [*INT, "0"], f"--rate 1mbit {C}"),
    ("inject partition", "--to", CIDR, C),
    ("inject partition", "--port", PORT, f"--to 10.9.0.0/24 {C}"),
    ("inject partition", "--protocol", CHOICE, f"--to 10.9.0.0/24 {C}"),
    ("inject partition", "--direction", CHOICE, f"--to 10.9.0.0/24 {C}"),
    ("inject partition", "--exclude", CIDR, f"--to 10.9.0.0/24 {C}"),
    ("inject partition", "--netns", [""], f"--to 10.9.0.0/24 {C}"),
    ("inject partition", "--pid", [*INT, "0"], f"--to 10.9.0.0/24 {C}"),
    ("run EXP", "--seed", [*INT, "-1"], ""),
    ("run EXP", "--metrics", ADDR, ""),
    ("run EXP", "--journal", ["", "/nonexistent-dir/j.json", "/tmp"], ""),
    ("run EXP", "--data-dir", ["", "/etc/hostname"], ""),
    ("run EXP", "--agent", ADDR, ""),
    ("run EXP", "--dns", ["", "bad_name!"], ""),
    ("run EXP", "--inventory", [""], ""),
    ("agents", "--agent", ADDR, ""),
    ("history", "--limit", [*INT, "0"], ""),
    ("history", "--status", CHOICE, ""),
    ("history", "--data-dir", [""], ""),
    ("show", "--data-dir", [""], "RUN"),
    ("serve EXP", "--metrics-listen", ADDR, ""),
    ("serve EXP", "--every", DUR, ""),
    ("serve EXP", "--rounds", [*INT, "-1"], ""),
    ("serve EXP", "--ready-file", ["", "/nonexistent-dir/r.json"], ""),
    ("serve EXP", "--data-dir", [""], ""),
]
# Positionals, fed as the value itself.
CTL_POSITIONAL: list[tuple[str, str, list[str]]] = [
    ("revert", "fault_id", [""]),
    ("show", "RUN", [""]),
    ("run", "experiment", [""]),
    ("serve", "EXPERIMENT", [""]),
    ("certs init", "dir", ["", "/etc/hostname"]),
]
# Flags whose every value is valid: free text, or switches.
CTL_FREE = {"--reason"}
CTL_ENV: list[tuple[str, list[str], str]] = [
    ("BROWNOUT_AGENT", ADDR, "info"),
    ("BROWNOUT_INVENTORY", ["", "/nonexistent/inv.yaml"], "agents"),
    ("BROWNOUT_DATA_DIR", ["", "/etc/hostname"], "history"),
    ("BROWNOUT_TLS_CA", ["", "/nonexistent/ca.pem"], "info"),
    ("BROWNOUT_TLS_CERT", ["", "/nonexistent/c.pem"], "info"),
    ("BROWNOUT_TLS_KEY", ["", "/nonexistent/k.pem"], "info"),
]


def run_controller(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = controller_cli.main(argv)
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, err.getvalue()


@pytest.fixture
def ctl_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in list(os.environ):
        if key.startswith("BROWNOUT_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        (Path(__file__).resolve().parents[2] / "examples/cpu-steady-state.yaml").read_text()
    )
    return exp


def words(text: str, exp: Path) -> list[str]:
    return [str(exp) if w == "EXP" else w for w in text.split()]


def ctl_cases() -> Iterator[tuple[str, str, str, str]]:
    for before, flag, values, after in CTL_BAD:
        for value in values:
            yield before, flag, value, after


@pytest.mark.parametrize(("before", "flag", "value", "after"), list(ctl_cases()))
def test_controller_refuses_bad_flags_before_contacting_anyone(
    agent_port: tuple[int, list[int]],
    ctl_env: Path,
    before: str,
    flag: str,
    value: str,
    after: str,
) -> None:
    port, accepted = agent_port
    target = [] if flag == "--agent" and not before else ["--agent", f"127.0.0.1:{port}"]
    fleet = ["--agent", f"127.0.0.1:{port}"] if before.split()[:1] in (["halt"], ["run"]) else []
    argv = [*target, "--timeout", "2s", *words(before, ctl_env)]
    argv += [*([] if flag == "--agent" else fleet), f"{flag}={value}", *words(after, ctl_env)]
    code, err = run_controller(argv)
    assert code == 2, (argv, err)
    assert f"argument {flag}" in err, f"error does not name {flag}: {err!r}"
    assert accepted == [], f"{argv}: the controller connected despite the bad value"


@pytest.mark.parametrize(
    ("before", "name", "value"),
    [(b, n, v) for b, n, vs in CTL_POSITIONAL for v in vs],
)
def test_controller_refuses_bad_positionals(
    agent_port: tuple[int, list[int]], ctl_env: Path, before: str, name: str, value: str
) -> None:
    port, accepted = agent_port
    code, err = run_controller(["--agent", f"127.0.0.1:{port}", *before.split(), value])
    assert code == 2 and f"argument {name}" in err, err
    assert accepted == []


@pytest.mark.parametrize(
    ("name", "value", "command"), [(n, v, c) for n, vs, c in CTL_ENV for v in vs]
)
def test_controller_refuses_bad_variables_naming_them(
    agent_port: tuple[int, list[int]],
    ctl_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    command: str,
) -> None:
    port, accepted = agent_port
    monkeypatch.setenv(name, value)
    argv = [command] if name == "BROWNOUT_AGENT" else ["--agent", f"127.0.0.1:{port}", command]
    if command == "agents" and name != "BROWNOUT_AGENT":
        argv = ["agents"]
    code, err = run_controller(argv)
    assert code == 2, err
    assert name in err, f"error does not name {name}: {err!r}"
    assert accepted == []


def walk(parser: argparse.ArgumentParser) -> Iterator[argparse.Action]:
    for action in parser._actions:
        yield action
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from walk(sub)


def test_every_controller_flag_has_bad_values_here() -> None:
    listed = {flag for _, flag, _, _ in CTL_BAD} | CTL_FREE
    listed |= {name for _, name, _ in CTL_POSITIONAL}
    missing = set()
    for action in walk(controller_cli.build_parser()):
        if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.nargs == 0:  # a switch: no value to get wrong
            continue
        names = action.option_strings or [str(action.metavar or action.dest)]
        if not set(names) & listed:
            missing.add(names[0])
    assert not missing, f"flags with no bad values in this test: {sorted(missing)}"


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
