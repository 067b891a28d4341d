"""A report of a real run, read in a real browser: a real agent stops a real
HTTP service (a process the test started) for the run's hold; the service
then warms up for WARMUP seconds (503) before it answers 200 again, as a
service does after a stall. `brownout report` writes one HTML file, headless
Debian chromium renders it (screenshot kept under the test's tmp dir), and
the chart, its fault span and the recovery figures are checked against what
the service is known to do."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil
import pytest
from selenium.webdriver.common.by import By

from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import cli, run
from tests.host.test_console import browser, shot

pytestmark = [pytest.mark.host, pytest.mark.concurrent]

__all__ = ["browser"]  # the fixture, used by name

WARMUP = 3.0  # seconds of 503 after the service notices it was stalled
HOLD = 4.0  # seconds the service stays stopped

SERVICE = """
import sys, threading, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WARMUP = float(sys.argv[1])
last_tick = time.monotonic()
sick_until = 0.0
lock = threading.Lock()

def stalled(now):
    # A gap in the ticks means the process was stopped: warm up again.
    global sick_until, last_tick
    with lock:
        if now - last_tick > 0.5:
            sick_until = now + WARMUP
        last_tick = now
        return now < sick_until

def tick():
    while True:
        stalled(time.monotonic())
        time.sleep(0.05)

class H(BaseHTTPRequestHandler):
    def do_GET(self):
        code = 503 if stalled(time.monotonic()) else 200
        self.send_response(code)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a):
        pass

server = ThreadingHTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=tick, daemon=True).start()
print(server.server_address[1], flush=True)
server.serve_forever()
"""


def experiment(port: int, marker: str) -> dict[str, Any]:
    return {
        "title": "stall the web service",
        "steady-state-hypothesis": {"title": "web answers 200", "probes": [
            {"type": "probe", "name": "web-ok", "tolerance": 200,
             "provider": {"type": "http", "url": f"http://127.0.0.1:{port}/", "timeout": 0.5}}]},
        "method": [{"type": "action", "name": "stall", "provider": {
            "type": "brownout", "fault": "process",
            "arguments": {"action": "stop", "cmdline": marker}, "duration": "60s"}}],
        "extensions": [{"name": "brownout", "lease-ttl": "5s",
                        "ramp": {"steps": [100], "hold": f"{HOLD}s"},
                        "timeline": {"interval": "0.5s", "recovery": "20s"}}],
    }  # fmt: skip


def test_a_real_runs_report_renders_its_chart_and_the_right_recovery(
    agent: AgentProc, browser: Any, tmp_path: Path
) -> None:
    script = tmp_path / "web.py"
    script.write_text(SERVICE)
    marker = f"brownout-report-web-{tmp_path.name}"
    web = subprocess.Popen([sys.executable, str(script), str(WARMUP), marker],
                           stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert web.stdout is not None
        port = int(web.stdout.readline())
        journal = run(experiment(port, marker), [agent.address], tmp_path)
        # The promise first: the stopped service runs again.
        assert wait_for(lambda: psutil.Process(web.pid).status() != psutil.STATUS_STOPPED, 5)
    finally:
        web.kill()
        web.wait(10)
    # The hypothesis is checked again after the method, while the stall holds:
    # the run fails, deviated, and the report says so.
    assert journal["status"] == "failed" and journal["deviated"] is True, journal["status"]
    run_id = journal["extensions"][0]["run_id"]
    figures = cli("report", run_id, "--data-dir", str(tmp_path), "--format", "json")
    assert figures.returncode == 0, figures.stderr
    [probe] = json.loads(figures.stdout)["probes"]
    # Stopped: every sample while the fault was on timed out. The revert is the
    # agent's SIGCONT; the service then answers 503 for WARMUP seconds.
    assert probe["availability"] == 0.0, probe
    assert probe["time_to_detect_s"] is not None and probe["time_to_detect_s"] <= 1.5, probe
    assert probe["recovered"] is True
    assert WARMUP - 0.1 <= probe["time_to_recover_s"] <= WARMUP + 1.0, probe
    html = tmp_path / "report.html"
    written = cli("report", run_id, "--data-dir", str(tmp_path), "-o", str(html))
    assert written.returncode == 0, written.stderr
    browser.get(html.as_uri())
    charts = browser.find_elements(By.CSS_SELECTOR, "svg.probe-chart")
    assert [c.get_attribute("data-probe") for c in charts] == ["web-ok"]
    assert charts[0].size["width"] > 300 and charts[0].size["height"] > 100
    span = charts[0].find_elements(By.CSS_SELECTOR, "g.fault-span")
    assert [s.get_attribute("data-step") for s in span] == ["1"]
    assert span[0].find_element(By.TAG_NAME, "rect").size["width"] > 20  # 4 s of a ~10 s run
    assert len(charts[0].find_elements(By.CSS_SELECTOR, ".sample.out")) >= 5
    row = browser.find_element(By.CSS_SELECTOR, '#recovery tr[data-probe="web-ok"]').text
    assert f"{probe['time_to_recover_s']:.1f} s" in row and "0.0 %" in row, row
    assert "stall the web service" in browser.title
    findings = browser.find_element(By.ID, "findings").text
    assert "steady state deviated after the method" in findings, findings
    shot(browser, tmp_path, "report")
