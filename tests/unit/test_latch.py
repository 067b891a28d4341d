"""The lease's lost flag, waited on from another thread."""

from __future__ import annotations

import threading
import time

import pytest

from controller.agents.latch import Latch

pytestmark = pytest.mark.unit


def test_a_waiter_wakes_when_it_is_set_from_another_thread() -> None:
    latch = Latch()
    assert not latch.is_set()
    woke: list[bool] = []
    waiter = threading.Thread(target=lambda: woke.append(latch.wait(5)))
    waiter.start()
    time.sleep(0.05)  # waiting by now
    t0 = time.monotonic()
    latch.set()
    waiter.join(5)
    assert woke == [True] and time.monotonic() - t0 < 1
    assert latch.is_set() and latch.wait(0)


def test_a_wait_times_out_unset() -> None:
    latch = Latch()
    t0 = time.monotonic()
    assert latch.wait(0.05) is False
    assert 0.04 <= time.monotonic() - t0 < 1
    assert not latch.is_set()
