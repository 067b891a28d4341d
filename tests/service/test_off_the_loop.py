"""Nothing blocking runs on the service's event loop: a whole API run, the
console pages and the kill switch, with every database connection, every wait on
the fleet's loop and every wait for runs recorded with the thread it ran on.
The check is deterministic: a blocking call made while an event loop runs on
its thread is a failure, however fast it was. asyncio's debug mode then lists
the slowest callbacks of the same scenario, printed, not asserted."""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.agents import inventory
from controller.agents.connection import AgentConnection
from controller.agents.loop import LoopThread
from controller.experiments.metrics import ControllerMetrics
from controller.service import app
from controller.service.auth import Tokens
from controller.service.console import csrf
from controller.service.runs import RunManager
from controller.service.state import Service
from controller.store.sqlite import SqliteDatabase
from tests.host.serveproc import write_tokens
from tests.service.conftest import DEAD_AGENT, OPERATOR, Api, pure_doc

pytestmark = pytest.mark.unit

BLOCKING: list[tuple[type, str]] = [
    (SqliteDatabase, "connect"),
    (LoopThread, "run"),
    (RunManager, "wait_all"),
]


def on_a_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.fixture
def watched(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(call, thread) of every blocking call made on a thread running a loop."""
    bad: list[tuple[str, str]] = []
    calls: list[str] = []
    for cls, name in BLOCKING:
        original: Callable[..., Any] = getattr(cls, name)

        def wrapper(
            *a: Any, _o: Any = original, _n: str = f"{cls.__name__}.{name}", **kw: Any
        ) -> Any:
            calls.append(_n)
            if on_a_loop():
                bad.append((_n, threading.current_thread().name))
            return _o(*a, **kw)

        monkeypatch.setattr(cls, name, functools.wraps(original)(wrapper))
    yield bad
    assert {c.split(".")[0] for c in calls} >= {"SqliteDatabase", "LoopThread", "RunManager"}


def slow_loop(inner: Any) -> Any:
    """An ASGI wrapper that makes the loop's debug mode report callbacks over 5 ms."""

    async def asgi(scope: Any, receive: Any, send: Any) -> None:
        asyncio.get_running_loop().slow_callback_duration = 0.005
        await inner(scope, receive, send)

    return asgi


def test_no_blocking_call_runs_on_the_loop(
    watched: list[tuple[str, str]], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tokens = Tokens.load(write_tokens(tmp_path / "tokens.yaml"))
    agents = AgentConnection.of(inventory.build(agents=[DEAD_AGENT]), 1.0)
    svc = Service.build(agents, tmp_path / "d", tokens, ControllerMetrics())
    caplog.set_level(logging.WARNING, logger="asyncio")
    try:
        client = TestClient(slow_loop(app.app(svc)), backend_options={"debug": True})
        with client:
            api = Api(client, svc)
            assert api.call(
                "PUT", "/api/v1/experiments/demo", {"experiment": pure_doc()}
            ).is_success
            run_id = api.call("POST", "/api/v1/runs", {"experiment": "demo"}).json()["run_id"]
            assert api.call("POST", "/api/v1/experiments/demo/dry-run").is_success
            assert api.call("GET", "/healthz", token=None).is_success
            client.cookies.set("brownout_token", OPERATOR)
            for page in ("/console/", "/console/runs", f"/console/runs/{run_id}",
                         f"/console/runs/{run_id}/journal"):  # fmt: skip
                assert client.get(page).status_code == 200, page
            engaged = client.post("/console/kill-switch/engage",
                                  data={"csrf": csrf(OPERATOR), "reason": "drill",
                                        "confirm": "yes"})  # fmt: skip
            assert engaged.status_code == 200
            off = api.call("POST", "/api/v1/kill-switch", {"engaged": False})
            assert off.is_success
            assert api.call("GET", "/api/v1/history", token=OPERATOR).is_success
        # Leaving the client ran the lifespan's shutdown, which waits for runs.
    finally:
        svc.close()
    slow = [r.getMessage() for r in caplog.records if "took" in r.getMessage()]
    print(f"\nslowest loop callbacks over 5 ms ({len(slow)}):")
    for line in sorted(slow, key=lambda m: -float(m.rsplit("took ", 1)[1].split()[0]))[:10]:
        print("  ", line[:200])
    assert not watched, watched
