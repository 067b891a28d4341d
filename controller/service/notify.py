"""Notifications: webhooks on what a person on call wants to hear about.

Events: run_started, step (a ramp step advanced), aborted (with the reason:
the stop condition and its value, or who aborted), ended (status and
summary), gate_skipped (a scheduled occurrence a safety gate blocked), and
kill_switch (engaged or disengaged).

    notifications:
      - name: sre-slack
        url-env: SLACK_WEBHOOK_URL     # or url-file: /run/secrets/slack, or url:
        format: slack                  # {"text": ...}; json (default): the event and its fields
        events: [run_started, aborted, ended, gate_skipped, kill_switch]   # default: all

Sending never delays a run or a revert: send() only queues, and one thread
posts, retrying each delivery a bounded number of times (tenacity) before it
gives up and logs that it did. A webhook URL is a secret: it is read from the
environment or a file, and logs and journals name the notification, never its
URL.
"""

from __future__ import annotations

import json
import os
import queue
import threading
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import structlog
import yaml
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

from controller.errors import ConfigError
from controller.experiments import fields

log = structlog.get_logger("brownout.notify")

EVENTS = ("run_started", "step", "aborted", "ended", "gate_skipped", "kill_switch")
FORMATS = ("json", "slack")
ATTEMPTS = 4
TIMEOUT = 5.0
QUEUE = 1000  # events waiting; beyond, the newest are dropped and counted


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str
    format: str
    events: frozenset[str]


def _url(raw: Mapping[str, Any], where: str) -> str:
    given = [k for k in ("url", "url-env", "url-file") if raw.get(k)]
    if len(given) != 1:
        raise ConfigError(where, "give one of url-env, url-file or url")
    key = given[0]
    value = str(raw[key])
    if key == "url-env":
        url = os.environ.get(value, "").strip()
        if not url:
            raise ConfigError(f"{where}.url-env", f"the environment has no {value}")
    elif key == "url-file":
        try:
            url = Path(value).read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}.url-file", f"cannot read {value}: {exc.strerror}") from None
    else:
        url = value
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        # Never echo the URL: it may hold a token.
        raise ConfigError(f"{where}.{key}", "is not an http(s) URL")
    return url


def parse(raw: object, where: str) -> list[Webhook]:
    doc = fields.mapping(raw, where)
    fields.no_unknown(doc, {"notifications"}, where)
    items = doc.get("notifications")
    if not isinstance(items, list) or not items:
        raise ConfigError(f"{where}.notifications", "expected a list of webhooks")
    hooks = []
    for i, item in enumerate(items):
        w = f"{where}.notifications[{i}]"
        h = fields.mapping(item, w)
        fields.no_unknown(h, {"name", "url", "url-env", "url-file", "format", "events"}, w)
        name = fields.string(h, "name", w)
        fmt = h.get("format", "json")
        if fmt not in FORMATS:
            raise ConfigError(f"{w}.format", f"{fmt!r}: use json or slack")
        events = h.get("events", list(EVENTS))
        if not isinstance(events, list) or not events or set(events) - set(EVENTS):
            raise ConfigError(f"{w}.events", f"a list of {', '.join(EVENTS)}")
        hooks.append(Webhook(name, _url(h, w), fmt, frozenset(events)))
    if len({h.name for h in hooks}) != len(hooks):
        raise ConfigError(f"{where}.notifications", "a name appears twice")
    return hooks


def load(path: Path) -> list[Webhook]:
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(str(path), f"cannot read: {exc}") from None
    return parse(raw, str(path))


def text(event: str, data: Mapping[str, Any]) -> str:
    """One line for people (Slack's text)."""
    title = data.get("title", "")
    run = data.get("run_id", "")
    if event == "run_started":
        return f"Brownout run {run} started: {title} (by {data.get('by', '?')})"
    if event == "step":
        return f"Brownout run {run}: step {data.get('step')} at {data.get('percent')}% ({title})"
    if event == "aborted":
        return f"Brownout run {run} ABORTED: {data.get('reason', '')} ({title})"
    if event == "ended":
        return f"Brownout run {run} ended {data.get('status')}: {data.get('summary', '')}"
    if event == "gate_skipped":
        return f"Brownout schedule {data.get('schedule')}: skipped, {data.get('reason', '')}"
    state = "ENGAGED" if data.get("engaged") else "disengaged"
    return f"Brownout kill switch {state} by {data.get('by', '?')}: {data.get('reason', '')}"


def _post(url: str, body: bytes) -> None:
    req = urllib.request.Request(
        url, body, method="POST", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
        resp.read(1 << 16)


class Notifier:
    def __init__(
        self,
        hooks: list[Webhook],
        post: Callable[[str, bytes], None] = _post,
        wait: Any = None,
    ) -> None:
        self.hooks = hooks
        self._post = post
        self._wait = wait or wait_exponential(multiplier=0.5, max=4)
        self._queue: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue(QUEUE)
        self.dropped = 0
        self._thread: threading.Thread | None = None
        if hooks:
            self._thread = threading.Thread(target=self._loop, name="notify", daemon=True)
            self._thread.start()

    def send(self, event: str, **data: Any) -> None:
        """Queue an event for the webhooks that want it; never blocks."""
        assert event in EVENTS, event
        if not any(event in h.events for h in self.hooks):
            return
        data = {"event": event, "at": datetime.now(UTC).isoformat(), **data}
        try:
            self._queue.put_nowait((event, data))
        except queue.Full:
            self.dropped += 1
            log.warning("notification dropped: the queue is full", notify_event=event)

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued (within timeout), then stop."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            event, data = item
            for hook in self.hooks:
                if event in hook.events:
                    self._deliver(hook, event, data)

    def _deliver(self, hook: Webhook, event: str, data: dict[str, Any]) -> None:
        payload = {"text": text(event, data)} if hook.format == "slack" else {
            **data, "text": text(event, data)}  # fmt: skip
        body = json.dumps(payload, default=str).encode()
        try:
            for attempt in Retrying(
                stop=stop_after_attempt(ATTEMPTS),
                wait=self._wait,
                retry=retry_if_exception_type(OSError),
                reraise=True,
            ):
                with attempt:
                    self._post(hook.url, body)
        except OSError as exc:
            # The URL is a secret: the log names the notification only.
            reason = getattr(exc, "code", None) or type(exc).__name__
            log.warning("notification not delivered", notification=hook.name,
                        notify_event=event, attempts=ATTEMPTS, reason=str(reason))  # fmt: skip
