"""The kill switch's Halt order (fleet.halt_order): agents where no lease of
the fleet lives first, then by when their leases run out, latest first; a
lease lost (not given up) counts as none, and ties keep the fleet's order."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Iterator

import pytest

from controller.agents import inventory
from controller.agents.fleet import Fleet, halt_order
from controller.agents.lease_hold import DatagramTarget, LeaseHold

pytestmark = pytest.mark.unit

ADDRESSES = [f"127.0.0.{i}:1" for i in range(1, 7)]
NOW = 1000.0


@pytest.fixture
def fleet() -> Iterator[Fleet]:
    with Fleet(inventory.build(agents=ADDRESSES), timeout=1) as f:
        yield f


def hold(fleet: Fleet, i: int, confirmed: float, ttl: float = 3.0) -> LeaseHold:
    h = LeaseHold(fleet._clients[ADDRESSES[i]], f"lease-{i}", ttl, streaming=True)
    h.confirmed = h.sent = confirmed
    return h


def test_agents_without_a_live_lease_first_then_the_latest_to_expire(fleet: Fleet) -> None:
    holds = [
        hold(fleet, 0, NOW - 2.5),  # ends in 0.5 s
        hold(fleet, 1, NOW - 0.1),  # ends in 2.9 s
        hold(fleet, 2, NOW - 1.0, ttl=10.0),  # ends in 9 s
        hold(fleet, 3, NOW - 5.0),  # ran out 2 s ago: none lives there
        hold(fleet, 4, NOW - 0.5),  # lost (the agent said so): none lives there
    ]
    holds[4].lost.set()
    # Agent 5 has no hold at all; 3, 4 and 5 tie and keep the fleet's order.
    assert halt_order(ADDRESSES, holds, NOW) == [ADDRESSES[i] for i in (3, 4, 5, 2, 1, 0)]


def test_a_lease_given_up_still_runs_until_its_ttl(fleet: Fleet) -> None:
    early, late = hold(fleet, 0, NOW - 2.0), hold(fleet, 1, NOW - 1.0)
    for h in (early, late):
        h.abandon("kill switch")
    assert early.lost.is_set() and early.abandoned
    assert halt_order(ADDRESSES[:2], [early, late], NOW) == [ADDRESSES[1], ADDRESSES[0]]


def test_a_heartbeat_on_its_way_counts_as_renewing(fleet: Fleet) -> None:
    """A round sent and not yet answered renews the lease when it arrives:
    the agent's lease may run a TTL past that send, not past the last answer."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:  # reads nothing
        sink.bind(("127.0.0.1", 0))
        key = fleet.datagrams.key(os.urandom(16), os.urandom(32))
        target = DatagramTarget(fleet.keeper, sink.getsockname(), key)
        h = LeaseHold(fleet._clients[ADDRESSES[0]], "lease-" + "0" * 16, 3.0, False, target)
        h.confirmed = h.sent = time.monotonic() - 0.9  # answered 0.9 s ago

        async def join() -> float:
            await fleet.keeper.join(target.dest, key, h, 1.0)
            await asyncio.sleep(0.05)  # the keeper sends the round at once
            return time.monotonic()

        after = fleet.loop.run(join())
        sent = fleet.keeper.sent(h)
        assert after - 0.1 < sent < after, sent
        assert h.runs_until() == sent + 3.0 > h.confirmed + 3.0
        h.abandon("kill switch")  # leaves the keeper, keeps what was sent
        assert fleet.keeper.sent(h) == 0.0 and h.runs_until() == sent + 3.0
        assert halt_order(ADDRESSES[:1], [h], after) == ADDRESSES[:1]
        data, _ = sink.recvfrom(2048)
        assert data  # the round went out


def test_the_newest_of_two_holds_on_one_agent_sets_its_place(fleet: Fleet) -> None:
    holds = [hold(fleet, 0, NOW - 2.0), hold(fleet, 0, NOW - 0.2), hold(fleet, 1, NOW - 1.0)]
    assert halt_order(ADDRESSES[:2], holds, NOW) == [ADDRESSES[0], ADDRESSES[1]]


def test_halt_answers_come_in_the_fleets_order(fleet: Fleet) -> None:
    # Nothing listens on port 1: every Halt fails, and each is still answered.
    fleet._holds.add(hold(fleet, 2, NOW))
    out = fleet.halt(latch=False, reason="test")
    assert list(out) == ADDRESSES
    assert all(o.code == "UNAVAILABLE" for o in out.values()), out
