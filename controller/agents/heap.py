"""The cyclic garbage collector at fleet scale.

A fleet's channels, lease holds and watches live as long as the fleet or its
run, and at 10,000 agents they are about a million objects. Each full pass
of the collector walks all of them: 280 ms at a time, eight times in a 30 s
hold (tests/fleetsim/driver.py reports `gc_by_phase`), a stalled loop and
late heartbeats each time. Once made, they are moved out of its reach
(gc.freeze); they are still freed by reference counting as usual, and a
view's close hands them back, so that cycles among them are collected.
"""

from __future__ import annotations

import gc

# Young collections once per this many new container objects, not 700: a
# fan-out keeps 256 calls in flight, each some dozens of objects living
# ~100 ms, and at 700 they were all old enough to be promoted, and then
# walked again by full passes, before their call ended.
YOUNG = 50_000


def widen() -> None:
    """The controller's collector thresholds for fleet work (once per process)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG), middle, old)


def settle() -> None:
    """Take what exists now out of the collector's passes: after a fleet's
    long-lived objects are made. The young generations are collected first,
    so that little garbage is frozen with them."""
    gc.collect(1)
    gc.freeze()


def unsettle() -> None:
    """Hand every frozen object back to the collector (a fleet view closes)."""
    gc.unfreeze()


def release() -> None:
    """After a fleet's loop has stopped: collect what it leaves now, while the
    interpreter is whole. Left to the collection at interpreter exit, which
    runs after grpc's exit handler has shut its asyncio support down, a fleet
    of 10,000 agents aborted the process ("Fatal Python error: none_dealloc",
    from FutureObj_clear under Py_FinalizeEx); docs/controller.md."""
    gc.collect()
