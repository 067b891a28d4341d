"""What one `POST /api/v1/runs` crosses on its way to the agent's InjectFault:
every controller module whose code runs, and every thread it runs on, traced
with a profile hook from the request until the fault is injected, on the
service as `brownout serve` runs it (uvicorn on the fleet's loop). The rules
held: nothing on the path is the CLI, and it crosses two execution contexts,
the one loop and the worker threads its blocking steps go to. The figures
are printed (and in docs/architecture.md)."""

from __future__ import annotations

import json
import re
import sys
import threading
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

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
    """A thread's role: the loop's worker threads are numbered, the others named."""
    if name.startswith(("fleet-loop-worker", "asyncio_")):
        return "a worker thread of the loop (asyncio.to_thread)"
    if name == "fleet-loop":
        return "the service's one event loop (uvicorn, runs, agent calls)"
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
    sock = app.bind("127.0.0.1:0", tls=False)
    http = app.server(svc, sock, {})
    serving = svc.fleet.loop.submit(http.serve(sockets=[sock]))
    try:
        assert wait_for(lambda: http.started, 10)
        port = sock.getsockname()[1]
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/runs",
            data=json.dumps({"experiment": d}).encode(),
            headers={"Authorization": f"Bearer {OPERATOR}", "Content-Type": "application/json"},
        )
        sys.setprofile(profile)
        armed.set()  # from the request on
        with urllib.request.urlopen(request, timeout=10) as started:
            assert started.status == 202
        assert wait_for(injected.is_set, 30)
        sys.setprofile(None)
        threading.setprofile(None)
        assert svc.runs.wait_all(60)
    finally:
        sys.setprofile(None)
        threading.setprofile(None)
        http.should_exit = True
        serving.result(30)
        svc.close()
    contexts = sorted({context(t) for t in threads})
    print(f"\nPOST /api/v1/runs -> InjectFault: {len(modules)} controller modules,"
          f" {len(contexts)} execution contexts")  # fmt: skip
    for c in contexts:
        print("  context:", c)
    print("  modules:", ", ".join(sorted(modules)))
    assert not [m for m in modules if m.startswith("controller.cli")], sorted(modules)
    assert "controller.service.operations" in modules and "controller.agents.fleet" in modules
    assert set(contexts) <= {
        context("fleet-loop"),
        context("fleet-loop-worker_0"),
    }, contexts
