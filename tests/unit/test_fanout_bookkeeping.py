"""What a fan-out's results cost the loop and the run's event lines: the
per-agent bookkeeping lets the loop's timers in between slices (the lease
keeper's renewals run there), and a fan-out over many agents is told in
counts."""

from __future__ import annotations

import asyncio

import pytest

from controller.agents.loop import in_slices
from controller.experiments.progress import NAMED, agent_list, counts

pytestmark = pytest.mark.unit


def test_a_timer_due_meanwhile_runs_between_slices_not_after_the_last() -> None:
    async def main() -> tuple[list[int], list[int]]:
        loop = asyncio.get_running_loop()
        fired: list[int] = []
        seen: list[int] = []
        loop.call_soon(lambda: fired.append(len(seen)))
        async for i in in_slices(range(1000), size=100):
            seen.append(i)
        return fired, seen

    fired, seen = asyncio.run(main())
    assert seen == list(range(1000))
    assert fired == [100]  # after the first slice, not at the end


def test_agent_lists_name_a_few_and_count_the_rest() -> None:
    assert agent_list([]) == "-"
    assert agent_list(["a", "b"]) == "a, b"
    many = [f"10.0.0.{i}:7070" for i in range(25)]
    said = agent_list(many)
    assert said.endswith(f"and {25 - NAMED} more")
    assert said.count("10.0.0.") == NAMED


def test_counts_put_the_most_first() -> None:
    assert counts(["active"] * 3 + ["failed"]) == "3 active, 1 failed"
    assert counts([]) == ""
