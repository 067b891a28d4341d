"""The timeline's bounds: a probe's samples halved at the cap with the factor
reported and every met/not-met edge kept, fault events never dropped and
heard once, other events capped and counted, notes checked."""

from __future__ import annotations

import pytest

from controller.experiments import tolerances as tol
from controller.experiments.timeline import MAX_EVENTS, MAX_NOTE, Timeline, band

pytestmark = pytest.mark.unit


def test_samples_are_halved_at_the_cap_keeping_every_deviation_edge() -> None:
    tl = Timeline(max_samples=100)
    for i in range(1000):
        tl.sample("p", float(i), not 500 <= i < 503, "during")
    d = tl.to_dict()
    rows = d["samples"]["p"]
    assert len(rows) < 100 and d["downsampled"]["p"]["seen"] == 1000
    assert d["downsampled"]["p"]["factor"] >= 8 and d["downsampled"]["p"]["kept"] == len(rows)
    values = [r[1] for r in rows]
    assert 500.0 in values and 502.0 in values and 503.0 in values  # the deviation's edges
    assert values == sorted(values) and values[-1] == 999.0


def test_a_flapping_probe_is_still_bounded() -> None:
    tl = Timeline(max_samples=64)
    for i in range(5000):
        tl.sample("p", i, i % 2 == 0, "during")
    assert len(tl.to_dict()["samples"]["p"]) < 64


def test_fault_events_are_never_dropped_and_heard_once() -> None:
    tl = Timeline()
    for i in range(MAX_EVENTS + 10):
        tl.event("activity", name=f"a{i}")
    for i in range(50):
        tl.fault("a:1", f"f{i}", "active")
        tl.fault("a:1", f"f{i}", "active", activity="cpu", step=0)  # the inject's answer
    d = tl.to_dict()
    faults = [e for e in d["events"] if e["kind"] == "fault"]
    assert len(faults) == 50 and all(e["activity"] == "cpu" and e["step"] == 0 for e in faults)
    assert d["events_dropped"] == 10


def test_notes_are_checked() -> None:
    tl = Timeline()
    note = tl.note("  latency up on web-3  ", "token:alice")
    assert note["text"] == "latency up on web-3" and note["by"] == "token:alice"
    with pytest.raises(ValueError, match="needs some text"):
        tl.note("   ", "x")
    with pytest.raises(ValueError, match=f"at most {MAX_NOTE}"):
        tl.note("x" * (MAX_NOTE + 1), "x")
    [event] = tl.to_dict()["events"]
    assert event["kind"] == "note" and event["text"] == "latency up on web-3"


def test_a_sample_keeps_text_values_for_people_and_numbers_for_charts() -> None:
    tl = Timeline()
    tl.sample("status", 200, True, "before")
    tl.sample("body", "degraded", False, "during")
    tl.sample("down", None, False, "during", "GET http://x: refused")
    rows = tl.to_dict()["samples"]
    assert rows["status"][0][1:] == [200.0, True, "before"]
    assert rows["body"][0][1:] == [None, False, "during", "degraded"]
    assert rows["down"][0][4] == "GET http://x: refused"
    assert band(tol.parse([0, 0.2], "t")) == {"describe": "in [0, 0.2]", "kind": "range",
                                              "low": 0, "high": 0.2}  # fmt: skip
    assert band(tol.parse(200, "t"))["low"] == 200.0
