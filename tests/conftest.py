"""Shared fixtures. Host-tier tests run a real agent process; nothing mocks it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agentproc import AgentProc, is_root


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if is_root():
        return
    skip = pytest.mark.skip(reason="host tier needs root")
    for item in items:
        if "host" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[list[AgentProc]]:
    """Start agents with agent_factory-created AgentProc(...).start(); all are
    stopped at teardown and must leave no marked process and no journal."""
    started: list[AgentProc] = []
    yield started
    problems = []
    # Stop them all first: two AgentProcs may share a state dir (a restart), and
    # a live one's fork server would count as the other's leftover.
    for a in started:
        if a.proc is not None and a.proc.poll() is None:
            a.stop()
    for a in started:
        leftovers = a.marked_processes()
        if leftovers:
            problems.append(f"agent {a.state_dir}: processes left behind: {leftovers}")
        if a.journal_files():
            problems.append(f"agent {a.state_dir}: journal left behind: {a.journal_files()}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def agent(
    request: pytest.FixtureRequest, tmp_path: Path, agent_factory: list[AgentProc]
) -> AgentProc:
    """One running agent with its own state dir; checked for residue at teardown.
    A test module's AGENT_FIXTURE_ARGS, if it has them, are added to its command line."""
    args = list(getattr(request.module, "AGENT_FIXTURE_ARGS", []))
    a = AgentProc(tmp_path / "state", extra_args=args).start()
    agent_factory.append(a)
    return a
