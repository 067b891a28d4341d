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
        ([], "allows nothing"),
        ({"type": "range", "range": [1, "a"]}, "bounds must be numbers"),
        ({"type": "regex", "pattern": "("}, "invalid regex"),
        ({"type": "xpath"}, "unknown tolerance type"),
        ({"type": "jsonpath"}, "needs a path"),
        ({"type": "jsonpath", "path": "$.[?(@.a =="}, "not a JSONPath"),
        ({"type": "jsonpath", "path": "$.a", "count": -1}, "whole number"),
    ],
)
def test_invalid_tolerances_name_the_problem(raw: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        tol.parse(raw, "probes[0].tolerance")
    assert err.value.where.startswith("probes[0].tolerance")


def test_a_list_other_than_two_numbers_is_the_set_of_allowed_values() -> None:
    """Chaos Toolkit's list membership: on an HTTP answer it reads the status,
    on text the text; two numbers stay Brownout's range."""
    allowed = tol.parse([200, 201, 204], "t")
    assert allowed.kind == "members"
    assert tol.check(allowed, {"status": 204, "body": ""}).ok
    assert not tol.check(allowed, {"status": 202, "body": ""}).ok
    words = tol.parse(["green", "yellow"], "t")
    assert tol.check(words, {"status": 200, "body": "yellow\n"}, "body").ok is False
    assert tol.check(words, "green").ok and not tol.check(words, "red").ok
    assert tol.check(tol.parse([1.0, "x", None], "t"), 1).ok
    assert tol.parse([0, 300], "t").kind == "range"


def test_jsonpath_reads_as_chaoslib() -> None:
    """Matches at least once; `count` matches exactly; `expect` equals the
    matches; text is parsed as JSON first; `target` picks a key."""
    answer = {"status": 200, "body": '{"items": [{"ok": true}, {"ok": false}], "v": 3}'}

    def judge(**t: object) -> bool:
        return tol.check(tol.parse({"type": "jsonpath", **t}, "t"), answer).ok

    assert judge(path="$.items[*].ok", target="body")
    assert judge(path="$.items[*].ok", target="body", count=2)
    assert not judge(path="$.items[*].ok", target="body", count=1)
    assert judge(path="$.v", target="body", expect=3)
    assert not judge(path="$.v", target="body", expect=4)
    assert judge(path="$.items[*].ok", target="body", expect=[True, False])
    assert not judge(path="$.missing", target="body")
    assert judge(path="$.items[?(@.ok == true)]", target="body", count=1)
    verdict = tol.check(tol.parse({"type": "jsonpath", "path": "$.v", "expect": 4}, "t"), {"v": 3})
    assert not verdict.ok and "found [3]" in verdict.detail
