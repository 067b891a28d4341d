"""Lease expiry and the deadline scheduler, on a clock the test moves."""

from __future__ import annotations

import pytest

from agent.core.clock import FakeClock
from agent.core.errors import NotFound
from agent.core.leases import LeaseTable
from agent.core.scheduler import Scheduler

pytestmark = pytest.mark.unit


def test_lease_lives_until_its_deadline_and_not_after() -> None:
    clock = FakeClock()
    table = LeaseTable(clock)
    lease = table.acquire("ctl", ttl=3.0)
    clock.advance(2.999)
    assert table.get_live(lease.id).id == lease.id
    clock.advance(0.001)
    with pytest.raises(NotFound, match="expired"):
        table.get_live(lease.id)
    # A late renew must not resurrect it, even before the expiry callback ran.
    with pytest.raises(NotFound):
        table.renew(lease.id)


def test_renew_moves_the_deadline_by_one_ttl_from_now() -> None:
    clock = FakeClock()
    table = LeaseTable(clock)
    lease = table.acquire("ctl", ttl=3.0)
    clock.advance(2.0)
    renewed = table.renew(lease.id, peer="ipv4:127.0.0.1:1")
    assert renewed.deadline == pytest.approx(clock.monotonic() + 3.0)
    assert renewed.peer == "ipv4:127.0.0.1:1"
    clock.advance(2.9)
    assert table.expire_if_due(lease.id) is None
    clock.advance(0.1)
    expired = table.expire_if_due(lease.id)
    assert expired is not None and expired.id == lease.id
    assert table.count() == 0


def test_expired_returns_only_the_leases_past_deadline() -> None:
    clock = FakeClock()
    table = LeaseTable(clock)
    short = table.acquire("a", ttl=1.0)
    long = table.acquire("b", ttl=5.0)
    clock.advance(1.5)
    assert [lease.id for lease in table.expired()] == [short.id]
    assert table.get_live(long.id).holder == "b"


def test_unknown_lease_is_not_found() -> None:
    table = LeaseTable(FakeClock())
    with pytest.raises(NotFound, match="lease 'nope'"):
        table.renew("nope")
    assert table.remove("nope") is None


def test_scheduler_fires_due_callbacks_in_deadline_order() -> None:
    clock = FakeClock()
    sched = Scheduler(clock)
    fired: list[str] = []
    sched.set("b", clock.monotonic() + 2, lambda: fired.append("b"))
    sched.set("a", clock.monotonic() + 1, lambda: fired.append("a"))
    sched.set("c", clock.monotonic() + 3, lambda: fired.append("c"))
    assert sched.next_deadline() == clock.monotonic() + 1
    clock.advance(2.5)
    for cb in sched.pop_due(clock.monotonic()):
        cb()
    assert fired == ["a", "b"]
    assert sched.next_deadline() == pytest.approx(clock.monotonic() + 0.5)


def test_scheduler_replaced_and_cancelled_entries_never_fire() -> None:
    clock = FakeClock()
    sched = Scheduler(clock)
    fired: list[str] = []
    sched.set("lease", clock.monotonic() + 1, lambda: fired.append("old"))
    sched.set("lease", clock.monotonic() + 5, lambda: fired.append("renewed"))
    sched.set("fault", clock.monotonic() + 1, lambda: fired.append("fault"))
    sched.cancel("fault")
    clock.advance(2)
    assert sched.pop_due(clock.monotonic()) == []
    clock.advance(3)
    for cb in sched.pop_due(clock.monotonic()):
        cb()
    assert fired == ["renewed"]
    assert sched.next_deadline() is None


def test_scheduler_thread_fires_without_polling() -> None:
    import threading
    import time

    from agent.core.clock import SystemClock

    clock = SystemClock()
    sched = Scheduler(clock)
    sched.start()
    try:
        done = threading.Event()
        fired_at: list[float] = []
        deadline = clock.monotonic() + 0.2

        def fire() -> None:
            fired_at.append(clock.monotonic())
            done.set()

        sched.set("x", deadline, fire)
        assert done.wait(2.0)
        assert fired_at[0] >= deadline
        # The thread sleeps exactly to the deadline: no poll interval to wait out.
        assert fired_at[0] - deadline < 0.05
    finally:
        sched.stop()
    time.sleep(0)
