"""The fault watch's reconnect delays: jittered, growing, capped, never zero."""

from __future__ import annotations

import pytest

from controller.agents.aio_fault_watch import MAX_RETRY_S, PERMANENT, RETRY_S, backoff

pytestmark = pytest.mark.unit


def test_backoff_is_jittered_growing_and_capped() -> None:
    first = [backoff(1) for _ in range(500)]
    late = [backoff(10) for _ in range(500)]
    assert all(RETRY_S / 2 <= d <= 2 * RETRY_S for d in first)
    assert all(RETRY_S / 2 <= d <= MAX_RETRY_S for d in late)
    assert len(set(first)) > 100, "no jitter: watches would reconnect in step"
    assert max(late) > 4 * max(first)


def test_only_errors_that_retrying_cannot_fix_are_permanent() -> None:
    names = {c.name for c in PERMANENT}
    assert {"UNIMPLEMENTED", "PERMISSION_DENIED", "INVALID_ARGUMENT"} <= names
    assert not names & {"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED", "INTERNAL"}
