"""Shared fixtures. Host-tier tests run a real agent process; nothing mocks it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import postgres, residue
from tests.agentproc import AgentProc, is_root

_BEFORE: residue.Snapshot | None = None


def pytest_sessionstart(session: pytest.Session) -> None:
    """As root, the machine's namespaces, tables, qdiscs, cgroups and mounts
    are noted, to find what the run leaves behind. Residue is told by
    difference, so a second run on the machine at the same time would take
    the first one's for its own: BROWNOUT_RESIDUE=off turns the check off for
    a side run of tests that create none (e.g. the unit tier)."""
    global _BEFORE
    # Under pytest-xdist (the unit tier) the controller process checks the
    # whole run; a worker would take another worker's live tests for residue.
    if "PYTEST_XDIST_WORKER" in os.environ:
        return
    if is_root() and os.environ.get("BROWNOUT_RESIDUE") != "off":
        _BEFORE = residue.Snapshot()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A run that leaves a process, namespace, table, qdisc, cgroup or mount
    behind fails, naming each; they are reaped either way."""
    if _BEFORE is None:
        return
    basetemp = session.config._tmp_path_factory.getbasetemp()  # type: ignore[attr-defined]
    found = residue.residue(_BEFORE, basetemp)
    if not found:
        return
    residue.reap(_BEFORE, basetemp)
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = ["the test run left these behind (now reaped):", *found]
    if reporter is not None:
        reporter.write_sep("=", "residue", red=True)
        for line in lines:
            reporter.write_line(line)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One real PostgreSQL for the session (see tests/postgres.py)."""
    why = postgres.available()
    if why:
        pytest.fail(f"PostgreSQL tests cannot run: {why}")
    with postgres.server() as pg:
        yield pg


@pytest.fixture
def pg_dsn(postgres_server: postgres.PostgresServer) -> str:
    """A fresh database of the session's server."""
    return postgres_server.create_database()
