"""Notifications from a real `brownout serve` over real agents to a webhook
receiver on loopback: every event once (a completed run, an aborted one with
its reason, a gate skip, the kill switch both ways), in JSON with the URL
taken from the environment; and with the receiver down, runs still complete
and revert on time and the server stops cleanly."""

from __future__ import annotations

import http.server
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import live_faults
from tests.host.nethosts import free_port
from tests.host.schedules import EVERY_5S, put, quick
from tests.host.serveproc import ServeProc
from tests.host.test_serve_api import active_on_all, held, wait_status

pytestmark = [pytest.mark.host, pytest.mark.concurrent]


class Receiver(http.server.BaseHTTPRequestHandler):
    got: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        Receiver.got.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Receiver.got.clear()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()


def serving(tmp_path: Path, fleet: list[AgentProc], url: str) -> ServeProc:
    config = tmp_path / "notify.yaml"
    config.write_text("notifications:\n  - {name: ops, url-env: BROWNOUT_TEST_HOOK}\n")
    os.environ["BROWNOUT_TEST_HOOK"] = url  # the server process inherits it
    try:
        return ServeProc(tmp_path / "data", fleet, ["--notify", str(config)]).start()
    finally:
        del os.environ["BROWNOUT_TEST_HOOK"]


def events(run_id: str) -> list[str]:
    return [e["event"] for e in Receiver.got if e.get("run_id") == run_id]


def test_every_event_reaches_the_webhook_once(
    tmp_path: Path, fleet: list[AgentProc], receiver: str
) -> None:
    s = serving(tmp_path, fleet, receiver)
    try:
        assert s.call("PUT", "/api/v1/experiments/quick", {"experiment": quick()}).status == 200
        done = s.call("POST", "/api/v1/runs", {"experiment": "quick"}).body["run_id"]
        assert wait_status(s, done)["status"] == "completed"
        held_run = s.call("POST", "/api/v1/runs", {"experiment": held()}).body["run_id"]
        assert wait_for(lambda: active_on_all(fleet, len(fleet)), 20)
        s.call("POST", f"/api/v1/runs/{held_run}/abort", {"reason": "test says stop"})
        assert wait_status(s, held_run)["status"] == "aborted"
        s.call("POST", "/api/v1/kill-switch", {"engaged": True, "reason": "drill"})
        s.call("POST", "/api/v1/kill-switch", {"engaged": False})
        gate = {"alertmanager": {"url": f"http://127.0.0.1:{free_port()}", "matchers": ["a=b"]}}
        put(s, {"name": "gated", "experiments": ["quick"], "cron": EVERY_5S, "gates": gate})
        assert wait_for(lambda: any(e["event"] == "gate_skipped" for e in Receiver.got), 15)
        put(s, {"name": "gated", "experiments": ["quick"], "cron": EVERY_5S, "paused": True})
    finally:
        assert s.stop() == 0, s.logs()[-2000:]
    assert wait_for(lambda: events(held_run)[-1:] == ["ended"], 5)
    assert events(done) == ["run_started", "step", "ended"]
    assert events(held_run) == ["run_started", "step", "aborted", "ended"]
    aborted = next(e for e in Receiver.got if e["event"] == "aborted")
    assert "test says stop" in aborted["reason"] and aborted["title"] and aborted["text"]
    ended = [e for e in Receiver.got if e["event"] == "ended"]
    assert [e["status"] for e in ended] == ["completed", "aborted"]
    switch = [(e["engaged"], e["by"]) for e in Receiver.got if e["event"] == "kill_switch"]
    assert switch == [(True, "token:alice"), (False, "token:alice")]
    skipped = next(e for e in Receiver.got if e["event"] == "gate_skipped")
    assert skipped["schedule"] == "gated" and skipped["gate"] == "alertmanager"
    assert receiver not in s.logs(), "the webhook URL is a secret"


def test_a_receiver_that_is_down_delays_nothing(tmp_path: Path, fleet: list[AgentProc]) -> None:
    s = serving(tmp_path, fleet, f"http://127.0.0.1:{free_port()}/nobody")
    try:
        assert s.call("PUT", "/api/v1/experiments/quick", {"experiment": quick()}).status == 200
        t0 = time.monotonic()
        run_id = s.call("POST", "/api/v1/runs", {"experiment": "quick"}).body["run_id"]
        journal = wait_status(s, run_id)
        took = time.monotonic() - t0
        assert journal["status"] == "completed"
        assert took < 8, f"a 1 s hold took {took:.1f}s with the receiver down"
        assert wait_for(lambda: not live_faults(fleet), 5), "every fault reverted"
    finally:
        t1 = time.monotonic()
        assert s.stop() == 0
        assert time.monotonic() - t1 < 20
    assert "notification not delivered" in s.logs() and "/nobody" not in s.logs()
