"""Fleet.amap without agents (the calls never reach a channel): at most the
fleet's concurrency in flight, across every borrowed view together; results
in input order; the kill switch's urgent slots never queue behind a run's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from controller.agents import inventory
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.fleet import Fleet

pytestmark = pytest.mark.unit

ADDRESSES = [f"127.0.0.{i}:1" for i in range(1, 41)]


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(inventory.build(agents=ADDRESSES), timeout=1, concurrency=3) as f:
        yield f


class InFlight:
    def __init__(self) -> None:
        self.now = self.most = 0

    async def call(self, c: AsyncAgentClient) -> str:
        self.now += 1
        self.most = max(self.most, self.now)
        await asyncio.sleep(0.005)
        self.now -= 1
        return c.address


def test_results_in_input_order_and_never_more_in_flight_than_the_slots(fleet: Fleet) -> None:
    counter = InFlight()
    order = list(reversed(ADDRESSES))
    out = fleet.map(counter.call, order)
    assert list(out) == order
    assert all(o.ok and o.value == a for a, o in out.items())
    assert counter.most == 3


def test_borrowed_views_share_the_slots(fleet: Fleet) -> None:
    counter = InFlight()
    a, b = fleet.borrow(ADDRESSES[:20]), fleet.borrow(ADDRESSES[20:])

    async def both() -> None:
        await asyncio.gather(a.amap(counter.call), b.amap(counter.call))

    fleet.loop.run(both())
    assert counter.most == 3


def test_urgent_calls_pass_while_the_slots_are_taken(fleet: Fleet) -> None:
    release = asyncio.Event()

    async def stuck(c: AsyncAgentClient) -> str:
        await release.wait()
        return c.address

    async def scenario() -> bool:
        run = asyncio.ensure_future(fleet.amap(stuck, ADDRESSES[:10]))
        await asyncio.sleep(0.05)  # every slot is now held by a stuck call
        urgent = await asyncio.wait_for(
            fleet.amap(InFlight().call, ADDRESSES, urgent=True), timeout=5
        )
        release.set()
        await run
        return all(o.ok for o in urgent.values())

    assert fleet.loop.run(scenario())
