"""The in-process service tier: `brownout serve`'s ASGI app, with its lifespan,
driven by Starlette's test client (httpx on the app, no socket). The fleet is
one agent address where nothing listens (loopback port 1), or (`sim_api`) the
fleet simulator on loopback answering as one agent, so everything that does not
need a real agent's effects is tried here, fast and without root; what needs
real agents lives in tests/host."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from controller.agents import inventory
from controller.agents.connection import AgentConnection
from controller.experiments.metrics import ControllerMetrics
from controller.service import app
from controller.service.auth import Tokens
from controller.service.state import Service
from tests.fleetsim.procs import quit_sim
from tests.host.serveproc import OPERATOR, VIEWER, write_tokens
from tests.paths import ROOT

DEAD_AGENT = "127.0.0.1:1"


def pure_doc(title: str = "no faults") -> dict[str, Any]:
    """An experiment with a probe and no fault action."""
    return {
        "title": title,
        "method": [
            {"type": "probe", "name": "true", "provider": {"type": "process", "path": "true"}}
        ],
    }


@dataclass
class Api:
    client: TestClient
    svc: Service

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = OPERATOR,
        raw: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        h = dict(headers or {})
        if token is not None:
            h.setdefault("Authorization", f"Bearer {token}")
        content = raw if raw is not None else (None if body is None else _json(body))
        if content is not None:
            h.setdefault("Content-Type", "application/json")
        return self.client.request(method, path, content=content, headers=h)


def _json(body: Any) -> bytes:
    return json.dumps(body).encode()


@contextlib.contextmanager
def serving(address: str, tmp_path: Path) -> Iterator[Api]:
    tokens = Tokens.load(write_tokens(tmp_path / "tokens.yaml"))
    agents = AgentConnection.of(inventory.build(agents=[address]), 1.0)
    svc = Service.build(agents, tmp_path / "data", tokens, ControllerMetrics())
    try:
        app.prepare(svc)  # as serve does: this replica on the store, cut-off runs recovered
        with TestClient(app.app(svc), follow_redirects=False) as client:
            yield Api(client, svc)
    finally:
        svc.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    with serving(DEAD_AGENT, tmp_path) as a:
        yield a


@pytest.fixture
def sim_api(tmp_path: Path) -> Iterator[Api]:
    """The service over the fleet simulator (tests/fleetsim) as one agent on loopback:
    real leases, faults as bookkeeping."""
    sim = subprocess.Popen(
        [sys.executable, "-m", "tests.fleetsim.server", "--listen", "127.0.0.1:0"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert sim.stdout is not None
        port = json.loads(sim.stdout.readline())["listening"]
        with serving(f"127.0.0.1:{port}", tmp_path) as a:
            yield a
    finally:
        quit_sim(sim)


__all__ = ["OPERATOR", "VIEWER", "Api", "pure_doc"]
