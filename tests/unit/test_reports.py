"""A run's report from a journal whose timeline is known: the recovery
figures (time to detect, time to recover, availability), the resilience
score, the findings, and the charts as SVG (parsed: the fault spans per step,
the tolerance band, the samples in and out, the marks); HTML that needs
nothing from outside, Markdown with its chart files, JSON."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from controller.cli.main import main as cli
from controller.reports import figures, render
from controller.store import open_store

pytestmark = pytest.mark.unit

NS = {"s": "http://www.w3.org/2000/svg"}
START = "2026-12-06T10:00:00+00:00"


def journal(samples: list[list[Any]] | None = None) -> dict[str, Any]:
    """Faults on from T+5 (step 1) and T+7 (step 2) to T+12; the probe (latency,
    tolerance [0, 0.2]) out of tolerance from T+10 until T+14."""
    rows = samples or [[t, 0.5 if 10 <= t < 14 else 0.05, not 10 <= t < 14,
                        "during" if 5 <= t <= 12 else "recovery" if t > 12 else "before"]
                       for t in range(0, 20, 2)]  # fmt: skip
    fault = {"kind": "fault", "fault": "cpu", "activity": "burn"}
    events = [
        {"t": 5.0, **fault, "agent": "a:1", "fault_id": "f1", "state": "active", "step": 0},
        {"t": 7.0, **fault, "agent": "a:2", "fault_id": "f2", "state": "active", "step": 1},
        {"t": 12.0, **fault, "agent": "a:1", "fault_id": "f1", "state": "reverted", "step": 0},
        {"t": 12.0, **fault, "agent": "a:2", "fault_id": "f2", "state": "reverted", "step": 1},
        {"t": 9.0, "kind": "note", "text": "p99 <up> & alarming", "by": "token:alice"},
        {"t": 11.0, "kind": "lease_lost", "agent": "a:2", "reason": "deadline"},
    ]
    timeline = {"start": START, "interval": 2, "recovery": 60,
                "probes": {"latency": {"kind": "hypothesis", "tolerance": {
                    "describe": "in [0, 0.2] on latency", "kind": "range", "low": 0, "high": 0.2}}},
                "samples": {"latency": rows}, "downsampled": {}, "events": events}  # fmt: skip
    steps = [
        {
            "index": 0,
            "percent": 50,
            "agents": ["a:1"],
            "blast_radius_percent": 50.0,
            "start": "2026-12-06T10:00:05+00:00",
            "end": "2026-12-06T10:00:07+00:00",
        },
        {
            "index": 1,
            "percent": 100,
            "agents": ["a:1", "a:2"],
            "blast_radius_percent": 100.0,
            "start": "2026-12-06T10:00:07+00:00",
            "end": "2026-12-06T10:00:12+00:00",
        },
    ]
    agents = {a: {"faults": [{"fault_id": f, "revert": {"state": "reverted"}}]}
              for a, f in (("a:1", "f1"), ("a:2", "f2"))}  # fmt: skip
    return {
        "experiment": {"title": "CPU <burn>", "steady-state-hypothesis": {
            "title": "fast", "probes": [{"name": "latency", "weight": 2}]}},
        "status": "completed", "deviated": False, "start": START, "end": START,
        "duration": 19.0, "steady_states": {"before": None, "after": None},
        "extensions": [{"name": "brownout", "run_id": "run-1", "reason": "",
                        "selection": {"targets": ["a:1", "a:2"]}, "steps": steps,
                        "agents": agents, "timeline": timeline, "fault_problems": []}],
    }  # fmt: skip


def test_the_recovery_figures_score_and_findings() -> None:
    r = figures.build(journal())
    [p] = r.probes
    assert p.time_to_detect == 5.0  # first fault at T+5, first sample out at T+10
    assert p.time_to_recover == 2.0 and p.recovered is True  # reverted T+12, back in at T+14
    assert p.availability == 0.5  # T+6, T+8 in; T+10, T+12 out
    assert (p.passed, p.checks) == (8, 10) and r.score == 80.0
    assert p.deviations == [(10, 14)]
    assert r.findings == ["latency out of tolerance (in [0, 0.2] on latency) from T+10.0s to"
                          " T+14.0s"]  # fmt: skip
    assert [(s.step, s.start, s.end) for s in r.spans] == [(0, 5.0, 12.0), (1, 7.0, 12.0)]
    assert r.blast_radius == 100.0 and r.agents["a:1"] == "1 fault(s), reverted"


def test_a_probe_that_never_deviates_or_never_recovers() -> None:
    steady = [[t, 0.05, True, "during"] for t in range(0, 20, 2)]
    p = figures.build(journal(steady)).probes[0]
    assert p.time_to_detect is None and p.time_to_recover == 0.0 and p.availability == 1.0
    down = [[t, 0.05 if t < 10 else 0.9, t < 10, "during"] for t in range(0, 20, 2)]
    r = figures.build(journal(down))
    assert r.probes[0].recovered is False and r.probes[0].time_to_recover is None
    assert "had not recovered" in r.findings[-1]


def svg_of(html: str, i: int) -> ET.Element:
    m = re.search(rf'<svg[^>]*id="chart-{i}".*?</svg>', html, re.S)
    assert m, "no chart"
    return ET.fromstring(m.group(0))


def test_the_html_is_one_file_with_a_chart_per_probe() -> None:
    html = render.html(figures.build(journal()))
    # Self-contained: nothing fetched from anywhere.
    assert not re.search(r'(src|href)="(?!#|https://docs\.litmuschaos)', html)
    assert "<script" not in html and "@import" not in html and "url(http" not in html
    assert "CPU &lt;burn&gt;" in html and "p99 &lt;up&gt; &amp; alarming" in html
    chart = svg_of(html, 0)
    spans = chart.findall(".//s:g[@class='fault-span']", NS)
    assert [g.get("data-step") for g in spans] == ["1", "2"]
    assert len(chart.findall(".//s:g[@class='tolerance-band']", NS)) == 1
    assert len(chart.findall(".//s:circle[@class='sample met']", NS)) == 8
    assert len(chart.findall(".//s:path[@class='sample out']", NS)) == 2
    assert {g.get("class") for g in chart.findall(".//s:g", NS) if "mark" in (g.get("class") or "")
            } == {"mark note", "mark lease_lost"}  # fmt: skip
    # The spans sit where the faults were: x grows with time.
    xs = [float(g.find("s:rect", NS).get("x", "")) for g in spans]  # type: ignore[union-attr]
    assert xs[0] < xs[1]
    assert "5.0 s" in html and "2.0 s" in html and "50.0 %" in html and "80 %" in html


def test_markdown_json_and_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    text, charts = render.markdown(figures.build(journal()), lambda i: f"r-probe-{i}.svg")
    assert "![latency: in [0, 0.2] on latency](r-probe-0.svg)" in text
    assert ET.fromstring(charts["r-probe-0.svg"]).get("data-probe") == "latency"
    assert "| latency | 5.0 s | 2.0 s | 50.0 % | 8 of 10 |" in text
    store = open_store(tmp_path)
    store.history.record(journal(), tmp_path / "j.json")
    store.close()
    out = tmp_path / "out" / "run.md"
    out.parent.mkdir()
    capsys.readouterr()
    assert cli(["report", "run-1", "--data-dir", str(tmp_path), "--format", "md",
                "-o", str(out)]) == 0  # fmt: skip
    assert (out.parent / "run-probe-0.svg").exists() and "run-probe-0.svg" in out.read_text()
    assert cli(["report", "run-1", "--data-dir", str(tmp_path), "--format", "json"]) == 0
    figs = json.loads(capsys.readouterr().out)
    assert figs["resilience_score"] == 80.0
    assert figs["probes"][0]["time_to_recover_s"] == 2.0
    assert cli(["report", "nope", "--data-dir", str(tmp_path)]) == 2


def test_a_probes_weight_and_impact_are_checked() -> None:
    from controller.errors import ConfigError
    from controller.experiments import parse as exp

    def doc(**extra: Any) -> dict[str, Any]:
        probe = {"type": "probe", "name": "p", "tolerance": 200,
                 "provider": {"type": "http", "url": "http://127.0.0.1:1/"}, **extra}  # fmt: skip
        return {"title": "t", "steady-state-hypothesis": {"title": "h", "probes": [probe]},
                "method": [probe]}  # fmt: skip

    p = exp.parse(doc(weight=2.5, impact=True)).method[0]
    assert p.weight == 2.5 and p.impact is True
    cases: list[tuple[dict[str, Any], str]] = [
        ({"weight": 0}, "weight"),
        ({"weight": "heavy"}, "weight"),
        ({"impact": "yes"}, "impact"),
    ]
    for bad, where in cases:
        with pytest.raises(ConfigError, match=where):
            exp.parse(doc(**bad))
    action = {"type": "action", "name": "a", "impact": True,
              "provider": {"type": "http", "url": "http://127.0.0.1:1/"}}  # fmt: skip
    with pytest.raises(ConfigError, match="impact"):
        exp.parse({"title": "t", "method": [action]})
