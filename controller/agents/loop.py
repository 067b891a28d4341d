"""The controller's one event loop for agent I/O, on its own thread.

Every channel, call, lease stream and fault watch of a fleet lives on this
loop: no thread per agent, per lease or per run. What blocks by nature (a
probe, a journal fsync, SQLite) goes to the loop's worker threads with
asyncio.to_thread, so it never stalls the heartbeats; other threads hand
coroutines over with run().
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

# Blocking steps in flight at once: each live run holds at most one (a probe,
# a journal write), and the service's operations one per request.
WORKERS = 64
# How long the main thread waits at a time: a signal may be delivered to any
# thread, and Python runs its handler only once the main thread is back in
# Python code, so a wait there must come back now and then.
SIGNAL_SLICE = 0.1
# Items of per-agent bookkeeping between yields to the loop: a fan-out's
# results at 10,000 agents, at 100-200 us each, would otherwise hold the loop
# for seconds, and the lease keeper's renewals with it.
SLICE = 256


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel a task on this loop and wait until it has ended."""
    if task is not None and not task.done():
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def in_slices(items: Iterable[T], size: int = SLICE) -> AsyncIterator[T]:
    """Each item in turn, letting the loop run its timers and I/O after every
    `size` of them."""
    for i, item in enumerate(items):
        if i and i % size == 0:
            await asyncio.sleep(0)
        yield item


class LoopThread:
    def __init__(self, name: str = "fleet-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(
            ThreadPoolExecutor(WORKERS, thread_name_prefix=f"{name}-worker")
        )
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()
        # Let cancelled tasks run their cleanup before the loop goes.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        if pending:
            self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.run_until_complete(self.loop.shutdown_default_executor())
        self.loop.close()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run coro on the loop and wait for its result from this (other) thread."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("LoopThread.run called from the loop itself: await instead")
        future = self.submit(coro)
        if threading.current_thread() is not threading.main_thread():
            return future.result(timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = SIGNAL_SLICE if deadline is None else deadline - time.monotonic()
            try:
                return future.result(max(0.0, min(left, SIGNAL_SLICE)))
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
