"""Notifications: the webhook list as people write it (URLs from the
environment or a file, never echoed), each event once to the webhooks that
want it, bounded retries, and send() never waiting on a slow receiver."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from tenacity import wait_none

from controller.errors import ConfigError
from controller.service import notify
from controller.service.notify import Notifier, Webhook

pytestmark = pytest.mark.unit

SECRET = "https://hooks.example/T000/B000/very-secret-token"


def test_urls_come_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_URL", SECRET)
    (tmp_path / "url").write_text(SECRET + "\n")
    hooks = notify.parse({"notifications": [
        {"name": "a", "url-env": "SLACK_URL", "format": "slack", "events": ["aborted"]},
        {"name": "b", "url-file": str(tmp_path / "url")},
    ]}, "n")  # fmt: skip
    assert [h.url for h in hooks] == [SECRET, SECRET]
    assert hooks[0].events == {"aborted"} and hooks[1].events == set(notify.EVENTS)


@pytest.mark.parametrize(
    ("item", "where"),
    [
        ({"name": "a"}, "n.notifications[0]"),
        ({"name": "a", "url-env": "NOT_SET_ANYWHERE"}, "n.notifications[0].url-env"),
        ({"name": "a", "url-file": "/nonexistent/url"}, "n.notifications[0].url-file"),
        ({"name": "a", "url": "ftp://x/very-secret-token"}, "n.notifications[0].url"),
        ({"name": "a", "url": SECRET, "format": "xml"}, "n.notifications[0].format"),
        ({"name": "a", "url": SECRET, "events": ["lunch"]}, "n.notifications[0].events"),
    ],
)
def test_bad_webhooks_name_the_field_and_never_echo_a_url(item: dict[str, Any], where: str) -> None:
    with pytest.raises(ConfigError) as err:
        notify.parse({"notifications": [item]}, "n")
    assert err.value.where == where, err.value
    assert "secret" not in str(err.value)


def test_each_event_goes_once_to_the_webhooks_that_want_it() -> None:
    got: list[tuple[str, dict[str, Any]]] = []
    hooks = [Webhook("all", "http://a", "json", frozenset(notify.EVENTS)),
             Webhook("slack", "http://s", "slack", frozenset({"aborted"}))]  # fmt: skip
    n = Notifier(hooks, post=lambda url, body: got.append((url, json.loads(body))))
    n.send("run_started", run_id="r1", title="t", by="alice")
    n.send("aborted", run_id="r1", title="t", reason="stop condition p99 > 300ms: 412ms")
    n.close()
    assert [(u, b.get("event")) for u, b in got] == [
        ("http://a", "run_started"), ("http://a", "aborted"), ("http://s", None),
    ]  # fmt: skip
    assert got[2][1] == {"text": "Brownout run r1 ABORTED: stop condition p99 > 300ms: 412ms (t)"}


def test_retries_are_bounded_and_a_failure_logs_the_name_not_the_url() -> None:
    calls: list[int] = []

    def flaky(url: str, body: bytes) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionRefusedError

    n = Notifier([Webhook("ops", SECRET, "json", frozenset(notify.EVENTS))], flaky, wait_none())
    n.send("ended", run_id="r", status="completed")
    n.close()
    assert len(calls) == 3  # two failures, then delivered

    def down(url: str, body: bytes) -> None:
        calls.append(1)
        raise ConnectionRefusedError

    calls.clear()
    with capture_logs() as logs:
        n = Notifier([Webhook("ops", SECRET, "json", frozenset(notify.EVENTS))], down, wait_none())
        n.send("ended", run_id="r", status="completed")
        n.close()
    assert len(calls) == notify.ATTEMPTS
    assert any(e.get("notification") == "ops" for e in logs), logs
    assert "secret" not in repr(logs)


def test_send_never_waits_on_a_slow_receiver() -> None:
    release = threading.Event()

    def slow(url: str, body: bytes) -> None:
        release.wait(10)

    n = Notifier([Webhook("slow", "http://x", "json", frozenset(notify.EVENTS))], slow)
    t0 = time.perf_counter()
    for i in range(100):
        n.send("step", run_id="r", step=i)
    assert time.perf_counter() - t0 < 0.05
    release.set()
    n.close()
