"""Tolerances as Chaos Toolkit users write them: exact, [lo, hi], regex."""

from __future__ import annotations

import pytest

from controller.errors import ConfigError
from controller.experiments import tolerances as tol

pytestmark = pytest.mark.unit

HTTP = {"status": 200, "body": "all good\n", "latency": 0.042}


@pytest.mark.parametrize(
    ("raw", "value", "ok"),
    [
        (200, HTTP, True),  # a number checks an HTTP probe's status
        (503, HTTP, False),
        ("all good", HTTP, True),  # a string checks the body, whitespace-trimmed
        ([200, 299], HTTP, True),  # a range checks the status by default
        ({"type": "range", "range": [0, 0.05], "target": "latency"}, HTTP, True),
        ({"type": "range", "max": 0.01, "target": "latency"}, HTTP, False),
        ({"type": "regex", "pattern": "^all"}, HTTP, True),
        ({"type": "regex", "pattern": "bad"}, HTTP, False),
        ([None, 0.05], 0.04, True),  # a Prometheus value under a threshold
        ([None, 0.05], 0.08, False),
        ([1, None], 1, True),
        ({"type": "exact", "value": 0}, 0.0, True),
        (True, True, True),
    ],
)
def test_check(raw: object, value: object, ok: bool) -> None:
    verdict = tol.check(tol.parse(raw, "t"), value)
    assert verdict.ok is ok, verdict.detail


def test_process_output_uses_stdout_for_text() -> None:
    out = {"status": 0, "stdout": "ready\n", "stderr": ""}
    assert tol.check(tol.parse(0, "t"), out, "stdout").ok
    assert tol.check(tol.parse({"type": "regex", "pattern": "ready"}, "t"), out, "stdout").ok


def test_missing_value_and_non_numbers_fail_with_a_reason() -> None:
    assert not tol.check(tol.parse([0, 1], "t"), None).ok
    verdict = tol.check(tol.parse([0, 1], "t"), "abc")
    assert not verdict.ok and "not a number" in verdict.detail


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([2, 1], "above high"),
        ([None, None], "at least one bound"),
        ([1, 2, 3], "[low, high]"),
        ({"type": "regex", "pattern": "("}, "invalid regex"),
        ({"type": "jsonpath"}, "unknown tolerance type"),
        (["a", 1], "bounds must be numbers"),
    ],
)
def test_invalid_tolerances_name_the_problem(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        tol.parse(raw, "probes[0].tolerance")
    assert err.value.where.startswith("probes[0].tolerance")
