"""The keeper's timing wheel: items fire in due order, within a tick and never
early; a reschedule or a removal leaves nothing behind to fire."""

from __future__ import annotations

import pytest

from controller.agents.wheel import Wheel

pytestmark = pytest.mark.unit


def test_items_fire_in_order_within_a_tick_and_never_early() -> None:
    w: Wheel[str] = Wheel(0.005)
    w.put("b", 1.0071)
    w.put("a", 1.0004)
    w.put("a2", 1.0021)  # the same tick as a
    w.put("c", 2.5)
    assert w.pop_due(1.0) == []
    assert w.first() == pytest.approx(1.005)
    assert w.pop_due(1.00499) == []
    assert w.pop_due(1.005) == ["a", "a2"]
    assert w.pop_due(1.0099) == []
    assert w.pop_due(1.01) == ["b"]
    assert len(w) == 1 and "c" in w and "a" not in w
    assert w.pop_due(2.499) == []
    assert w.pop_due(9.0) == ["c"]
    assert w.first() is None and len(w) == 0


def test_a_rescheduled_item_fires_once_at_its_new_time() -> None:
    w: Wheel[str] = Wheel(0.005)
    w.put("x", 1.0)
    w.put("x", 3.0)  # later: the place at 1.0 is stale
    w.put("y", 1.0)
    w.put("y", 1.0)  # the same slot again: still one place
    assert w.pop_due(2.0) == ["y"]
    w.put("z", 2.0)
    w.put("z", 0.5)  # earlier than before
    assert w.pop_due(2.0) == ["z"]
    assert w.pop_due(5.0) == ["x"]
    assert w.pop_due(99.0) == []


def test_a_removed_item_never_fires() -> None:
    w: Wheel[str] = Wheel(0.005)
    w.put("x", 1.0)
    w.put("y", 1.0)
    w.remove("x")
    w.remove("never scheduled")
    assert w.pop_due(1.0) == ["y"]
    assert len(w) == 0


def test_an_item_put_back_into_a_slot_it_left_fires_once() -> None:
    w: Wheel[str] = Wheel(0.005)
    w.put("x", 1.0)
    w.put("x", 2.0)
    w.put("x", 1.0)  # back: the slot at 1.0 now lists it twice, one place live
    assert w.pop_due(1.0) == ["x"]
    assert w.pop_due(3.0) == []
