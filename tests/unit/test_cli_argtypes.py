"""Every flag, positional and environment variable of the `brownout` command,
fed out-of-range, malformed and empty values: each gets a clear error that
names it, exit code 2, and no agent is contacted (a listening socket where
the agent would be counts connections). A completeness check walks the
parser, so a new flag without bad values here fails.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from controller.cli import main as controller_cli
from tests.paths import ROOT
from tests.unit.parsers import walk

pytestmark = pytest.mark.unit


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
# Not PostgreSQL, and a DSN libpq cannot parse.
DSN = ["", "sqlite:///x.db", "/var/lib/brownout.db", "postgresql://h/db?sslmode=bogus x"]
CTL_BAD: list[tuple[str, str, list[str], str]] = [
    ("", "--agent", ADDR, "info"),
    ("", "--timeout", DUR, "info"),
    ("", "--log-level", ["", "loud", "INFO1"], "info"),
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
    ("inject dns", "--resolver", CIDR, C),
    ("inject dns", "--container", ["", "-x", "a b", "x/y"], C),
    ("inject pause", "--container", ["", "-x", "a b"], C),
    ("inject dns", "--name", ["", "a b", "x.*.test", "-x.test", "a..b"], C),
    ("inject dns", "--answer", CHOICE, f"--name x.test {C}"),
    ("inject dns", "--spoof", ["", "10.0.0.0/8", "host"], f"--name x.test --answer spoof {C}"),
    ("inject clock", "--offset", ["", "soon", "0", "+0s", "--5s"], C),
    ("inject process", "--action", CHOICE, f"--pid 5 {C}"),
    ("inject process", "--comm", [""], f"--action kill {C}"),
    ("inject process", "--cmdline", [""], f"--action kill {C}"),
    ("inject process", "--user", [""], f"--action kill {C}"),
    ("inject process", "--count", [*INT, "0", "-1"], f"--action kill --comm x {C}"),
    ("inject process", "--order", CHOICE, f"--action kill --comm x {C}"),
    ("inject process", "--signal", ["", "NOPE", "0", "999"], f"--action kill --comm x {C}"),
    ("inject process", "--interval", DUR, f"--action kill --comm x {C}"),
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
    ("history", "--database", DSN, ""),
    ("run EXP", "--database", DSN, ""),
    ("show", "--database", DSN, "RUN"),
    ("serve EXP", "--database", DSN, ""),
    ("serve EXP", "--replica-timeout", [*DUR, "2s"], ""),
    ("show", "--data-dir", [""], "RUN"),
    ("serve EXP", "--metrics-listen", ADDR, ""),
    ("serve EXP", "--every", DUR, ""),
    ("serve EXP", "--rounds", [*INT, "-1"], ""),
    ("serve EXP", "--ready-file", ["", "/nonexistent-dir/r.json"], ""),
    ("serve EXP", "--data-dir", [""], ""),
    ("serve", "--listen", ADDR, ""),
    ("serve", "--tokens", ["", "/nonexistent/tokens.yaml"], ""),
    ("serve", "--schedules", ["", "/nonexistent/schedules.yaml"], ""),
    ("serve", "--gates", ["", "/nonexistent/gates.yaml"], ""),
    ("serve", "--python-module", ["", "os.", "not a module", "a..b"], ""),
    ("serve", "--monkeys", ["", "/nonexistent/monkeys.yaml"], ""),
    ("serve", "--notify", ["", "/nonexistent/notify.yaml"], ""),
    ("history", "--schedule", ["", "Bad Name"], ""),
    ("maturity", "--days", [*INT, "0", "3661"], ""),
    ("report", "--format", [*CHOICE, "pdf"], "RUN"),
    ("gameday report", "--format", [*CHOICE, "pdf"], "gd-1"),
    ("gameday report", "-o", ["", "/nonexistent-dir/r.html"], "gd-1"),
    ("report", "-o", ["", "/nonexistent-dir/r.html"], "RUN"),
    ("report", "--data-dir", [""], "RUN"),
    ("maturity", "--production", ["env in (", "=x"], ""),
    ("maturity", "--practice", ["", "/nonexistent/practice.yaml"], ""),
    ("maturity", "--data-dir", [""], ""),
    ("serve", "--production", ["env in (", "=x"], ""),
    ("serve", "--practice", ["", "/nonexistent/practice.yaml"], ""),
    ("schedules add s", "--experiment", ["", "Bad Name"], ""),
    ("monkey plan web", "--day", ["", "2026-13-01", "tomorrow"], ""),
    ("schedules add s", "--cron", ["", "* * *", "99 * * * *"], ""),
    ("schedules add s", "--every", DUR, ""),
    ("schedules add s", "--timezone", ["", "Mars/Olympus"], ""),
    ("schedules add s", "--blast-radius", [*PCT, "0"], ""),
    ("schedules add s", "--jitter", DUR, ""),
    ("schedules add s", "--max-runs-per-day", [*INT, "0"], ""),
    ("schedules add s", "--concurrency", CHOICE, ""),
    ("schedules add s", "--starting-deadline", DUR, ""),
    ("schedules add s", "--history-limit", [*INT, "0"], ""),
    ("schedules add s", "--blackout", ["", "soon", "2026-13-01", "FREQ=SOMETIMES"], ""),
    ("schedules add s", "--file", ["", "/nonexistent/s.yaml"], ""),
    ("schedules next s", "--count", [*INT, "0", "1001"], ""),
    ("serve", "--tls-server-cert", ["", "/nonexistent/c.pem"], ""),
    ("serve", "--tls-client-ca", ["", "/nonexistent/ca.pem"], ""),
    ("serve", "--tls-operators", ["", "x" * 300], ""),
    ("serve", "--tls-viewers", ["", "\0"], ""),
    ("serve", "--tls-server-key", ["", "/nonexistent/k.pem"], ""),
    ("token", "--file", ["", "/nonexistent-dir/t.yaml"], "--name a --role viewer"),
    ("token", "--name", [""], "--file /tmp/brownout-t.yaml --role viewer"),
    ("token", "--role", [*CHOICE, "admin"], "--file /tmp/brownout-t.yaml --name a"),
    ("", "--server", ["", "ftp://h:1", "http://", "127.0.0.1:8470", "http://h:1/x"], "info"),
    ("", "--token-file", ["", "/nonexistent/token"], "info"),
]
# Positionals, fed as the value itself.
CTL_POSITIONAL: list[tuple[str, str, list[str]]] = [
    ("revert", "fault_id", [""]),
    ("show", "RUN", [""]),
    ("report", "RUN", [""]),
    ("run", "experiment", [""]),
    ("serve", "EXPERIMENT", [""]),
    ("kill-switch", "action", ["", "explode"]),
    ("schedules", "action", ["", "explode"]),
    ("schedules pause", "name", ["", "Bad Name", "x/y"]),
    ("monkey add", "file", ["", "/nonexistent/monkey.yaml"]),
    ("monkey plan", "name", ["", "Bad Name"]),
    ("monkey pause", "name", ["", "Bad Name"]),
    ("monkey resume", "name", ["", "Bad Name"]),
    ("monkey remove", "name", ["", "Bad Name"]),
    ("certs init", "dir", ["", "/etc/hostname"]),
    ("convert", "FILE", ["", "/nonexistent/experiment.yaml"]),
    ("note run-1", "text", [""]),
    ("gameday run", "plan", ["", "/nonexistent/plan.yaml"]),
    ("gameday dry-run", "plan", ["", "/nonexistent/plan.yaml"]),
    ("gameday status", "ID", [""]),
    ("gameday pause", "ID", [""]),
    ("gameday resume", "ID", [""]),
    ("gameday advance", "ID", [""]),
    ("gameday skip", "ID", [""]),
    ("gameday abort", "ID", [""]),
    ("gameday report", "ID", [""]),
    ("gameday note", "ID", [""]),
    ("gameday note gd-1", "text", [""]),
]
# Flags whose every value is valid: free text, or switches.
CTL_FREE = {"--reason"}
CTL_ENV: list[tuple[str, list[str], str]] = [
    ("BROWNOUT_AGENT", ADDR, "info"),
    ("BROWNOUT_INVENTORY", ["", "/nonexistent/inv.yaml"], "agents"),
    ("BROWNOUT_DATA_DIR", ["", "/etc/hostname"], "history"),
    ("BROWNOUT_DATABASE", DSN, "history"),
    ("BROWNOUT_TLS_CA", ["", "/nonexistent/ca.pem"], "info"),
    ("BROWNOUT_TLS_CERT", ["", "/nonexistent/c.pem"], "info"),
    ("BROWNOUT_TLS_KEY", ["", "/nonexistent/k.pem"], "info"),
    ("BROWNOUT_SERVER", ["", "ftp://h:1", "http://h:1/x"], "info"),
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
    exp.write_text((ROOT / "examples/cpu-steady-state.yaml").read_text())
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
