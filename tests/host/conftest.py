"""Fixtures of the worker tests: a spawner of its own, under a fresh instance marker."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from agent.kernel import procs


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
