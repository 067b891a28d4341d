"""Probe providers against real loopback servers and processes, and stop-condition timing."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from controller.experiments import probes
from controller.experiments import tolerances as tol
from controller.experiments.model import (
    Activity,
    HttpProvider,
    ProcessProvider,
    PrometheusProvider,
    StopCondition,
)
from controller.experiments.stopconditions import Breach, StopMonitor, Sustain
from tests.controller_servers import Service, serving, vector

pytestmark = pytest.mark.unit


def probe(provider: object, tolerance: object = None) -> Activity:
    t = None if tolerance is None else tol.parse(tolerance, "t")
    return Activity("probe", "p", provider, t, raw={"name": "p"})  # type: ignore[arg-type]


def test_http_probe_reports_status_body_and_latency() -> None:
    service = Service()
    with serving(service.respond) as server:
        run = probes.execute(probe(HttpProvider(server.url + "/health"), 200))
        assert run.tolerance_met and run.output["body"] == "ok"
        assert 0 < run.output["latency"] < 1
        service.status, service.body = 503, "overloaded"
        run = probes.execute(probe(HttpProvider(server.url), {"type": "regex", "pattern": "ok"}))
        assert run.status == "succeeded"  # a 503 is an answer, not a probe failure
        assert run.output["status"] == 503 and not run.tolerance_met
    run = probes.execute(probe(HttpProvider(server.url, timeout=1), 200))
    assert run.status == "failed" and not run.tolerance_met
    assert run.record()["exception"]


def test_prometheus_probe_reads_one_number() -> None:
    answers = {"value": vector(0.02)}

    def respond(path: str) -> tuple[int, str, str]:
        assert path.startswith("/api/v1/query?query=")
        return 200, answers["value"], "application/json"

    with serving(respond) as server:
        p = PrometheusProvider(server.url, "sum(rate(errors[1m]))")
        assert probes.prometheus(p) == 0.02
        assert probes.execute(probe(p, [None, 0.05])).tolerance_met
        answers["value"] = vector(None)
        with pytest.raises(probes.ProbeError, match="no series"):
            probes.prometheus(p)
        assert probes.prometheus(PrometheusProvider(server.url, "q", empty=0.0)) == 0.0
        answers["value"] = '{"status":"error","errorType":"bad_data","error":"parse error"}'
        with pytest.raises(probes.ProbeError, match="parse error"):
            probes.prometheus(p)


def test_process_probe_exit_code_and_stdout() -> None:
    p = ProcessProvider(sys.executable, ("-c", "print('ready'); raise SystemExit(3)"))
    out = probes.process(p)
    assert out["status"] == 3 and out["stdout"] == "ready\n"
    assert probes.execute(probe(p, {"type": "regex", "pattern": "^ready$"})).tolerance_met
    assert not probes.execute(probe(p, 0)).tolerance_met
    with pytest.raises(probes.ProbeError, match="timed out"):
        probes.process(ProcessProvider(sys.executable, ("-c", "import time; time.sleep(5)"), 0.2))


def test_sustain_fires_only_after_a_continuous_breach() -> None:
    s = Sustain(10)
    assert not s.update(False, 0)
    assert not s.update(False, 9)
    assert not s.update(True, 9.5)  # recovered: the clock restarts
    assert not s.update(False, 12)
    assert s.update(False, 22)
    assert Sustain(0).update(False, 0)


def test_monitor_aborts_within_sustain_plus_one_interval() -> None:
    value = {"v": 0.0}
    with serving(lambda _path: (200, vector(value["v"]), "application/json")) as server:
        cond = StopCondition(
            "errors",
            probe(PrometheusProvider(server.url, "q"), [None, 0.05]),
            sustain=0.6,
            interval=0.1,
        )
        fired: list[Breach] = []
        done = threading.Event()

        def on_breach(b: Breach) -> None:
            fired.append(b)
            done.set()

        monitor = StopMonitor((cond,), on_breach)
        monitor.start()
        time.sleep(0.3)
        assert not fired
        value["v"] = 0.5
        t0 = time.monotonic()
        assert done.wait(5)
        elapsed = time.monotonic() - t0
        monitor.stop()
    assert 0.6 <= elapsed <= 0.6 + 0.1 + 0.15, elapsed
    assert fired[0].condition == "errors" and "0.5" in fired[0].reason
    report = monitor.report()[0]
    assert report["fired"] and report["evaluations"] >= 6
