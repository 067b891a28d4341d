"""`make run` keeps working: the demo starts an agent and a service, runs the
example experiment through the controller, and leaves nothing behind; and
`make console` serves the console with the demo experiment stored."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pytest

from tests.agentproc import wait_for
from tests.processes import all_gone

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


def test_the_demo_injects_reverts_and_leaves_nothing() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "controller.cli.demo"], capture_output=True, text=True, timeout=110
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "status    completed" in out.stdout
    assert "== residue: 0 worker process(es) left" in out.stdout
    assert out.stdout.rstrip().endswith("OK, experiment completed and reverted")


def start_console() -> tuple[subprocess.Popen[str], str, list[str]]:
    """`make console` on a free port: the process, the console's URL, its lines."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "controller.cli.console_demo"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "BROWNOUT_CONSOLE_LISTEN": "127.0.0.1:0"},
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("== Ctrl-C"):
            break
    console = next(x for x in lines if x.startswith("== console: ")).split()[-1]
    return proc, console, lines


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_make_console_killed_outright_leaves_no_server_or_agent() -> None:
    proc, console, _ = start_console()
    port = int(console.split(":")[2].split("/")[0])
    children = psutil.Process(proc.pid).children(recursive=True)
    assert listening(port) and children
    proc.kill()
    proc.wait(10)
    assert wait_for(lambda: not listening(port), 30), "the console's port is still bound"
    assert wait_for(lambda: all_gone(c.pid for c in children), 30), children


def test_make_console_serves_the_console_with_the_demo_experiment() -> None:
    proc, console, lines = start_console()
    try:
        token_file = next(x for x in lines if "operator token in" in x).split()[-1]
        token = Path(token_file).read_text().strip()
        req = urllib.request.Request(console.replace("/console/", "/api/v1/experiments"))
        req.add_header("Authorization", f"Bearer {token}")
        with urllib.request.urlopen(req, timeout=10) as resp:
            names = [e["name"] for e in json.loads(resp.read())["experiments"]]
        assert names == ["local-demo"]
        with urllib.request.urlopen(
            console.replace("/console/", "/console/login"), timeout=10
        ) as r:
            assert b"API token" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
