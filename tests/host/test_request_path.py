"""What one `POST /api/v1/runs` crosses on its way to the agent's InjectFault:
every controller module whose code runs, and every thread it runs on, traced
with a profile hook from the request until the fault is injected. The rule
held: nothing on the path is the CLI. The figures are printed (and in
docs/architecture.md)."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.agents import inventory
from controller.agents.connection import AgentConnection
from controller.experiments.metrics import ControllerMetrics
from controller.service import app
from controller.service.auth import Tokens
from controller.service.state import Service
from tests.agentproc import AgentProc, wait_for
from tests.host.fleet import doc
from tests.host.serveproc import OPERATOR, write_tokens

pytestmark = pytest.mark.host
OURS = re.compile(r"(controller|brownout)(\.|$)")


def context(name: str) -> str:
    """A thread's role: asyncio's worker threads are numbered, the others named."""
    if name.startswith("asyncio_"):
        return "worker thread (asyncio.to_thread)"
    if name.startswith("run-"):
        return "the run's thread"
    if name == "fleet-loop":
        return "the fleet's event loop"
    if "portal" in name or "anyio" in name.lower():
        return "the service's event loop (uvicorn's; the test client's portal here)"
    return name


def test_a_run_request_reaches_inject_fault_without_the_cli(
    agent: AgentProc, tmp_path: Path
) -> None:
    modules: set[str] = set()
    threads: set[str] = set()
    armed, injected = threading.Event(), threading.Event()

    def profile(frame: FrameType, event: str, _arg: Any) -> None:
        if not armed.is_set() or injected.is_set() or event != "call":
            return
        module = str(frame.f_globals.get("__name__", ""))
        if OURS.match(module):
            modules.add(module)
            threads.add(threading.current_thread().name)
            if module == "controller.agents.aioclient" and frame.f_code.co_name == "inject":
                injected.set()

    d = doc(brownout={"ramp": {"steps": [100], "hold": "0.5s"}}, duration="30s")
    threading.setprofile(profile)  # every thread started from now on: the fleet's loop too
    tokens = Tokens.load(write_tokens(tmp_path / "tokens.yaml"))
    agents = AgentConnection.of(inventory.build(agents=[agent.address]))
    svc = Service.build(agents, tmp_path / "d", tokens, ControllerMetrics())
    try:
        with TestClient(app.app(svc)) as client:
            sys.setprofile(profile)
            armed.set()  # from the request on
            started = client.post("/api/v1/runs", json={"experiment": d},
                                  headers={"Authorization": f"Bearer {OPERATOR}"})  # fmt: skip
            assert started.status_code == 202, started.text
            assert wait_for(injected.is_set, 30)
            sys.setprofile(None)
            threading.setprofile(None)
            assert svc.runs.wait_all(60)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        svc.close()
    contexts = sorted({context(t) for t in threads})
    print(f"\nPOST /api/v1/runs -> InjectFault: {len(modules)} controller modules,"
          f" {len(contexts)} execution contexts")  # fmt: skip
    for c in contexts:
        print("  context:", c)
    print("  modules:", ", ".join(sorted(modules)))
    assert not [m for m in modules if m.startswith("controller.cli")], sorted(modules)
    assert "controller.service.operations" in modules and "controller.agents.fleet" in modules
