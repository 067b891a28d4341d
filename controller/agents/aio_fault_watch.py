"""Follows one agent's fault state changes for a lease, as a task on the
fleet's event loop (the asyncio twin of fault_watch, which serves the
single-agent CLI).

While the lease is renewed by datagram, no stream stays open: each answer
carries the lease's fault generation, and only when it moves does the watch
fetch the lease's faults (ListFaults) and report what changed. Otherwise, and
while the lease's hold is off datagrams, it follows WatchFaults; when the hold
goes back to datagrams, so does the watch (closing its stream). A broken
stream is reopened with include_existing, so an end that happened while it
was down is still seen.

A transient error (the agent restarting, a cut connection) is retried with
exponential backoff and jitter, so a thousand watches do not reconnect in
step. A permanent one (UNIMPLEMENTED from an older agent, PERMISSION_DENIED,
INVALID_ARGUMENT) is not retried: the watch polls ListFaults for the lease
instead and reports each change of state as an event, so a fault's end is
still seen, one poll late at most.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import grpc
import structlog
from grpc import aio

from brownout.v1 import agent_pb2 as pb
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.lease_hold import LeaseHold
from controller.agents.loop import cancel

log = structlog.get_logger(__name__)
_Call = aio.UnaryStreamCall[pb.WatchFaultsRequest, pb.FaultEvent]

RETRY_S = 0.5  # the first reconnect; doubled per failure up to MAX_RETRY_S
MAX_RETRY_S = 10.0
POLL_S = 2.0
PERMANENT = frozenset(
    {
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)


def backoff(failures: int, base: float = RETRY_S, cap: float = MAX_RETRY_S) -> float:
    """Full jitter (AWS's): uniform in [0, min(cap, base * 2**failures)], at least base/2."""
    return max(base / 2, random.uniform(0, min(cap, base * 2**failures)))


class AsyncFaultWatch:
    def __init__(
        self,
        client: AsyncAgentClient,
        lease_id: str,
        on_event: Callable[[str, pb.FaultEvent], None],
        poll_s: float = POLL_S,
        hold: LeaseHold | None = None,
    ) -> None:
        self.client = client
        self.lease_id = lease_id
        self.hold = hold  # the lease's hold, whose datagram answers say when to look
        self.fetches = 0
        self._on_event = on_event
        self._poll_s = poll_s
        self._task: asyncio.Task[None] | None = None
        self.mode = "WatchFaults"
        self.reconnects = 0
        self._failures = 0  # stream failures since the last event
        self._seen: dict[str, tuple[int, int]] = {}  # fault id -> (state, end reason)

    def start(self) -> AsyncFaultWatch:
        """On the event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        await cancel(self._task)

    def _deliver(self, fault: pb.Fault, previous: int = pb.FAULT_STATE_UNSPECIFIED) -> None:
        self._seen[fault.id] = (fault.state, fault.end_reason)
        event = pb.FaultEvent(fault=fault, previous_state=previous)  # type: ignore[arg-type]
        self._on_event(self.client.address, event)

    def _changes(self, faults: list[pb.Fault]) -> None:
        """An event for each fault whose state is new to this watch."""
        for f in faults:
            before = self._seen.get(f.id)
            if before != (f.state, f.end_reason):
                self._deliver(f, before[0] if before else pb.FAULT_STATE_UNSPECIFIED)

    async def _follow(self, hold: LeaseHold) -> None:
        """While the hold renews by datagram: fetch the lease's faults whenever
        its generation moves (a new lease's is 0, so anything since the acquire
        is fetched at once). Returns when the hold leaves datagrams or ends."""
        self.mode = "generation"
        known, failures = 0, 0
        while _on_datagrams(hold):
            if hold.lease_generation == known:
                hold.changed.clear()
                if hold.lease_generation == known:  # not moved since the check
                    await hold.changed.wait()
                continue
            target = hold.lease_generation  # the fetch sees at least this much
            try:
                faults = await self.client.list_faults(self.lease_id)
            except grpc.RpcError as exc:
                if failures == 0:
                    log.info("fault fetch failed; retrying with backoff",
                             agent=self.client.address, lease_id=self.lease_id,
                             code=exc.code().name if exc.code() else "UNKNOWN")  # fmt: skip
                failures += 1
                await asyncio.sleep(backoff(failures))
                continue
            failures = 0
            self.fetches += 1
            known = target
            self._changes(faults)
        self.mode = "WatchFaults"

    async def _run(self) -> None:
        while True:
            if self.hold is not None and _on_datagrams(self.hold):
                await self._follow(self.hold)
            if self.hold is not None and self.hold.abandoned:
                # Given up on purpose (the kill switch): no stream per agent
                # now; the run's reverts say how each fault ended.
                return
            call = self.client.watch(self.lease_id, include_existing=True)
            try:
                if await self._stream_until_back(call):
                    continue
            except grpc.RpcError as exc:
                code = exc.code()
                if code in PERMANENT:
                    log.warning(
                        "WatchFaults refused; polling ListFaults instead",
                        agent=self.client.address, lease_id=self.lease_id, code=code.name,
                    )  # fmt: skip
                    self.mode = "ListFaults"
                    await self._poll()
                    return
                if self._failures == 0:  # one line per outage, not one per retry
                    log.info(
                        "fault watch broken; reconnecting with backoff",
                        agent=self.client.address, lease_id=self.lease_id,
                        code=code.name if code else "UNKNOWN",
                    )  # fmt: skip
                self._failures += 1
            finally:
                call.cancel()
            self.reconnects += 1
            await asyncio.sleep(backoff(self._failures))

    async def _stream_until_back(self, call: _Call) -> bool:
        """Deliver the stream's events until it ends (False; an error is raised)
        or the hold goes back to datagrams (True)."""
        consume = asyncio.ensure_future(self._consume(call))
        hold = self.hold
        if hold is None or hold.home is None:
            await consume
            return False
        back = asyncio.ensure_future(_back_on_datagrams(hold))
        try:
            await asyncio.wait([consume, back], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel(back)
            if not consume.done():
                await cancel(consume)
        if consume.cancelled():
            return True
        consume.result()  # the stream's error, if it failed
        return False

    async def _consume(self, call: _Call) -> None:
        async for event in call:
            self._failures = 0
            self._deliver(event.fault, event.previous_state)

    async def _poll(self) -> None:
        """Until stopped: every poll_s, an event for each fault whose state changed."""
        failures = 0
        while True:
            try:
                faults = await self.client.list_faults(self.lease_id)
                failures = 0
            except grpc.RpcError:
                failures += 1
                await asyncio.sleep(backoff(failures, self._poll_s))
                continue
            self._changes(faults)
            await asyncio.sleep(self._poll_s * random.uniform(0.8, 1.2))


def _on_datagrams(hold: LeaseHold) -> bool:
    # A lost lease's hold keeps its datagram target; its faults' ends come
    # by stream, for good.
    return hold.datagram is not None and not hold.lost.is_set()


async def _back_on_datagrams(hold: LeaseHold) -> None:
    """Returns once the hold renews by datagram again (never, once it is lost)."""
    while not _on_datagrams(hold):
        hold.changed.clear()
        if not _on_datagrams(hold):  # not back since the check
            await hold.changed.wait()
