"""Reports at size, and what the timeline costs a run.

- The HTML report of a 24-hour run with 10 probes sampled every 5 s (172,800
  samples, a deviation every hour, a fault span per hour): built from the
  timeline as a run stores it (bounded, downsampled), and from all the
  samples at full resolution (the renderer's worst case). Goal: under 5 s and
  under 5 MB each.
- The timeline's cost during a run: 10 HTTP probes sampled every second for
  20 s against a service in another process, the controller's CPU with the
  sampler on against the same 20 s idle.

No peer builds these reports without pandoc (chaostoolkit-reporting); the
figures stand against the goals. Printed, and written to
bench-results/report*.json.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from controller.experiments import parse as exp
from controller.experiments.sampler import Sampler
from controller.experiments.timeline import Timeline
from controller.reports import figures, render
from tests.bench.common import report

pytestmark = [pytest.mark.bench, pytest.mark.timeout(600)]

PROBES = 10
DAY = 24 * 3600
EVERY = 5.0
START = "2026-12-06T00:00:00+00:00"


def day_journal(timeline: dict[str, Any]) -> dict[str, Any]:
    return {
        "experiment": {"title": "a day of chaos"}, "status": "completed", "deviated": False,
        "start": START, "end": START, "duration": float(DAY),
        "steady_states": {"before": None, "after": None},
        "extensions": [{"name": "brownout", "run_id": "day", "reason": "", "steps": [],
                        "selection": {"targets": ["a:1"]}, "agents": {}, "timeline": timeline,
                        "fault_problems": []}],
    }  # fmt: skip


def day_timeline(max_samples: int) -> tuple[dict[str, Any], float]:
    """The day through a Timeline (its bounds at max_samples), and the seconds
    the recording took."""
    tl = Timeline(EVERY, 60, max_samples=max_samples)
    tl.begin(START)
    t0 = datetime.fromisoformat(START).timestamp()
    tol = exp.parse({"title": "t", "method": [{"type": "probe", "name": "p", "tolerance": [0, 1],
                     "provider": {"type": "http", "url": "http://127.0.0.1:1/"}}]}
                    ).method[0].tolerance  # fmt: skip
    for p in range(PROBES):
        tl.probe(f"probe-{p}", "hypothesis", tol)
    began = time.perf_counter()
    for hour in range(24):
        start, end = hour * 3600 + 600, hour * 3600 + 900
        tl.fault("a:1", f"f{hour}", "active", at=_iso(t0 + start), fault="cpu", step=0)
        tl.fault("a:1", f"f{hour}", "reverted", at=_iso(t0 + end), fault="cpu", step=0)
    for i in range(int(DAY / EVERY)):
        t = i * EVERY
        out = 700 <= t % 3600 < 760  # a minute out of tolerance each hour
        for p in range(PROBES):
            tl.sample(f"probe-{p}", 1.5 if out else 0.2, not out, "during", at=_iso(t0 + t))
    return tl.to_dict(), time.perf_counter() - began


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat()


def build(timeline: dict[str, Any]) -> tuple[float, int]:
    t0 = time.perf_counter()
    html = render.html(figures.build(day_journal(timeline)))
    return time.perf_counter() - t0, len(html.encode())


def test_a_day_long_report_builds_fast_and_small() -> None:
    stored, recording = day_timeline(4096)
    full, _ = day_timeline(10**9)
    stored_s, stored_bytes = build(stored)
    full_s, full_bytes = build(full)
    samples = sum(len(v) for v in full["samples"].values())
    figs = {
        "samples_in_the_day": samples,
        "recording_s": round(recording, 3),
        "recording_us_per_sample": round(1e6 * recording / samples, 2),
        "stored_samples": sum(len(v) for v in stored["samples"].values()),
        "stored_build_s": round(stored_s, 3),
        "stored_html_mib": round(stored_bytes / 2**20, 3),
        "full_resolution_build_s": round(full_s, 3),
        "full_resolution_html_mib": round(full_bytes / 2**20, 3),
        "goal_s": 5.0,
        "goal_mib": 5.0,
    }
    report("report_day", figs)
    assert samples == PROBES * int(DAY / EVERY)
    assert stored_s < 5 and stored_bytes < 5 * 2**20
    assert full_s < 5 and full_bytes < 5 * 2**20


SERVICE = """
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "2"); self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *a): pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"""


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def test_the_timeline_costs_a_run_little_cpu() -> None:
    web = subprocess.Popen([sys.executable, "-c", SERVICE], stdout=subprocess.PIPE, text=True)
    try:
        assert web.stdout is not None
        port = int(web.stdout.readline())
        probes = exp.parse({"title": "t", "method": [
            {"type": "probe", "name": f"p{i}", "tolerance": 200,
             "provider": {"type": "http", "url": f"http://127.0.0.1:{port}/"}}
            for i in range(PROBES)]}).method  # fmt: skip
        seconds = 20.0
        c0 = _cpu()
        time.sleep(seconds)
        idle = _cpu() - c0
        tl = Timeline(1.0, 0)
        sampler = Sampler(probes, tl).start()
        c1 = _cpu()
        time.sleep(seconds)
        busy = _cpu() - c1
        sampler.stop()
    finally:
        web.kill()
        web.wait(10)
    taken = sum(len(v) for v in tl.to_dict()["samples"].values())
    figs = {
        "probes": PROBES,
        "interval_s": 1.0,
        "seconds": seconds,
        "samples": taken,
        "controller_cpu_percent_sampling": round(100 * busy / seconds, 2),
        "controller_cpu_percent_idle": round(100 * idle / seconds, 2),
        "cpu_ms_per_sample": round(1000 * (busy - idle) / max(taken, 1), 3),
    }
    report("report_timeline_overhead", figs)
    assert taken >= PROBES * (seconds - 2)
