"""Host-tier fixtures: a spawner of its own under a fresh instance marker (the
worker tests), and the controller's fleet of five real agents with the
systems under test beside it (the controller tests; see tests/host/fleet.py)."""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from agent.kernel import procs
from tests.agentproc import AgentProc, wait_for
from tests.controller_servers import FakePrometheus, Service, serving
from tests.host.fleet import N, live_faults
from tests.host.serveproc import ServeProc


@pytest.fixture
def instance() -> str:
    return secrets.token_hex(5)


@pytest.fixture
def spawner(instance: str) -> Iterator[procs.Spawner]:
    """Its fork server already started; shutting down must stop it."""
    s = procs.Spawner(instance)
    s.start()
    yield s
    s.shutdown()
    assert procs.find_zygotes(instance) == [], "shutdown left the fork server running"


@pytest.fixture(scope="module")
def agents(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[AgentProc]]:
    base = tmp_path_factory.mktemp("fleet")
    procs = [AgentProc(base / f"agent{i}") for i in range(N)]
    threads = [threading.Thread(target=p.start) for p in procs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not all(p.port for p in procs):
        for p in procs:  # no agent outlives a failed start
            if p.proc is not None:
                p.stop()
        pytest.fail("an agent failed to start")
    yield procs
    problems = []
    for p in procs:
        p.stop()
        if p.marked_processes():
            problems.append(f"{p.state_dir}: processes left: {p.marked_processes()}")
        if p.journal_files():
            problems.append(f"{p.state_dir}: journal left: {p.journal_files()}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def fleet(agents: list[AgentProc]) -> Iterator[list[AgentProc]]:
    """The shared agents; each test must leave no live fault behind."""
    yield agents
    assert wait_for(lambda: not live_faults(agents), 5), live_faults(agents)


@pytest.fixture
def service() -> Iterator[str]:
    with serving(Service().respond) as server:
        yield server.url


@pytest.fixture
def prometheus(agents: list[AgentProc]) -> Iterator[tuple[str, FakePrometheus]]:
    fake = FakePrometheus(
        "brownout_faults_active", [f"http://127.0.0.1:{a.metrics_port}/metrics" for a in agents]
    )
    with serving(fake.respond) as server:
        yield server.url, fake


@pytest.fixture
def serve(fleet: list[AgentProc], tmp_path: Path) -> Iterator[ServeProc]:
    """`brownout serve` over the five agents; stopped cleanly, and the agents
    resumed (a test may have engaged the kill switch)."""
    s = ServeProc(tmp_path / "data", fleet).start()
    yield s
    if s.proc is not None:
        assert s.stop() == 0, s.logs()[-3000:]
    for a in fleet:
        with a.client() as c:
            c.resume()
