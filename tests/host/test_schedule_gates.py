"""Safety gates before scheduled runs, in a real `brownout serve` over real
agents: a real Alertmanager (Debian's prometheus-alertmanager, started here)
with a firing critical alert blocks the occurrence and resolving it lets the
next one run; a veto webhook answering 500 blocks, one that hangs is timed
out, one answering 204 lets the run go and was shown the planned run."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProc, wait_for
from tests.host.nethosts import free_port
from tests.host.schedules import EVERY_5S, occurrences, put, quick
from tests.host.serveproc import ServeProc

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("prometheus-alertmanager")
    if binary is None:
        pytest.fail("needs Debian's prometheus-alertmanager (make system-deps installs it)")
    config = tmp_path / "alertmanager.yml"
    config.write_text("route: {receiver: nobody}\nreceivers: [{name: nobody}]\n")
    port = free_port()
    log = (tmp_path / "alertmanager.log").open("wb")
    proc = subprocess.Popen(
        [binary, f"--config.file={config}", f"--storage.path={tmp_path / 'am'}",
         f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
        stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{url}/-/ready", timeout=1) as r:
                    return bool(r.status == 200)
            except OSError:
                return False

        assert wait_for(ready, 30, 0.2), (tmp_path / "alertmanager.log").read_text()[-2000:]
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)
        log.close()


def post_alert(url: str, name: str, severity: str, ends: datetime) -> None:
    alert = [{"labels": {"alertname": name, "severity": severity},
              "startsAt": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
              "endsAt": ends.isoformat()}]  # fmt: skip
    req = urllib.request.Request(
        f"{url}/api/v2/alerts", json.dumps(alert).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.status == 200


def test_a_firing_alert_blocks_the_run_and_its_resolution_lets_the_next_go(
    serve: ServeProc, fleet: list[AgentProc], alertmanager: str
) -> None:
    assert serve.call("PUT", "/api/v1/experiments/tick", {"experiment": quick()}).status == 200
    post_alert(alertmanager, "DiskFull", "warning", datetime.now(UTC) + timedelta(hours=1))
    post_alert(alertmanager, "ApiDown", "critical", datetime.now(UTC) + timedelta(hours=1))
    gates = {"alertmanager": {"url": alertmanager, "matchers": ["severity=critical"]}}
    put(serve, {"name": "g", "experiments": ["tick"], "cron": EVERY_5S, "gates": gates})
    assert wait_for(lambda: len(occurrences(serve, "g")) >= 1, 15, 0.2)
    blocked = occurrences(serve, "g")[0]
    assert blocked["outcome"] == "skipped" and blocked["kind"] == "gate_alertmanager", blocked
    assert "ApiDown" in blocked["detail"] and "DiskFull" not in blocked["detail"], blocked
    post_alert(alertmanager, "ApiDown", "critical", datetime.now(UTC) - timedelta(seconds=1))
    assert wait_for(
        lambda: any(o["outcome"] == "started" for o in occurrences(serve, "g")), 20, 0.2
    ), occurrences(serve, "g")
    put(serve, {"name": "g", "experiments": ["tick"], "cron": EVERY_5S, "paused": True})
    assert 'chaos_runs_skipped_total{reason="gate_alertmanager"}' in serve.metrics()


class Veto(http.server.BaseHTTPRequestHandler):
    answer = 500
    hang = 0.0
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        Veto.seen.append(json.loads(self.rfile.read(length)))
        time.sleep(Veto.hang)
        self.send_response(Veto.answer)
        self.end_headers()
        if Veto.answer >= 400:
            self.wfile.write(b"change freeze in effect")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def veto() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Veto)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Veto.seen.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/preflight"
    finally:
        Veto.hang = 0.0
        server.shutdown()
        server.server_close()


def test_a_veto_webhook_blocks_on_500_and_on_a_hang_and_sees_the_planned_run(
    serve: ServeProc, fleet: list[AgentProc], veto: str
) -> None:
    assert serve.call("PUT", "/api/v1/experiments/tick", {"experiment": quick()}).status == 200
    sched = {"name": "v", "experiments": ["tick"], "cron": EVERY_5S, "blast-radius": "40%",
             "gates": {"webhook": {"url": veto, "timeout": "1s"}}}  # fmt: skip
    Veto.answer = 500
    put(serve, sched)
    assert wait_for(lambda: len(occurrences(serve, "v")) >= 1, 15, 0.2)
    Veto.hang = 3.0
    Veto.answer = 204
    assert wait_for(lambda: len(occurrences(serve, "v")) >= 2, 15, 0.2)
    Veto.hang = 0.0
    assert wait_for(lambda: len(occurrences(serve, "v")) >= 3, 15, 0.2)
    put(serve, {**sched, "paused": True})
    first, second, third = occurrences(serve, "v")[:3]
    assert first["kind"] == "gate_webhook" and "HTTP 500: change freeze" in first["detail"], first
    assert second["kind"] == "gate_webhook" and "within 1s" in second["detail"], second
    assert third["outcome"] == "started", third
    asked = Veto.seen[-1]
    assert asked["schedule"] == "v" and asked["experiment"] == "tick", asked
    assert asked["blast_radius_percent"] == 40.0 and asked["faults"] == ["cpu-hog"], asked
