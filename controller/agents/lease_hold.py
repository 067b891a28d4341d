"""Keeps one lease alive from the fleet's event loop: a heartbeat every TTL/3
by authenticated datagram where the agent announces it (brownout/heartbeat.py),
else on a KeepLeases stream, else by RenewLease calls. When datagrams get no
answer within TTL/3 (a firewall, a lossy path), the hold moves to the stream
(and from there to RenewLease) at once, without losing the lease. From there it
probes the datagram path now and then (PROBE_S, doubling), and goes back to it
when the agent answers: a fan-out that kept the loop busy, or a firewall rule
since lifted, does not leave the lease on a stream for good.

A heartbeat is sent by this code and only after the previous one was answered,
so a wedged controller stops renewing and loses its leases. A broken stream
is reopened at once; the agent reverts nothing while the TTL lasts, so a
reconnect inside it keeps the faults. The lease counts as lost when the agent
says it is not live, or when no heartbeat sent in the last TTL was answered;
then this stops heartbeating, so the agent surely reverts by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass

import grpc
import structlog
from grpc import aio

from brownout import heartbeat as hb
from brownout.v1 import agent_pb2 as pb
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.datagrams import Key
from controller.agents.keeper import Keeper
from controller.agents.latch import Latch
from controller.agents.loop import cancel

log = structlog.get_logger(__name__)

# When the agent cannot serve the stream (too old, or at its stream limit).
FALL_BACK = frozenset({grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.RESOURCE_EXHAUSTED})
# Seconds on gRPC before the datagram path is tried again; doubled after each
# probe left unanswered, up to the second figure.
PROBE_S = (10.0, 120.0)


class _Gone(Exception):
    """The agent said the lease is not live."""


class _Broken(Exception):
    """The stream ended or failed; reopen it while the TTL lasts."""


class _NoAnswer(Exception):
    """No datagram answer within TTL/3: fall back to gRPC."""


class _Back(Exception):
    """A probe was answered: back to datagrams."""


@dataclass(frozen=True)
class DatagramTarget:
    """Where and under which key this lease is renewed by datagram."""

    keeper: Keeper  # the fleet's, which sends every lease's datagrams
    dest: tuple[str, int]  # the agent's host, its heartbeat UDP port
    key: Key


class LeaseHold:
    def __init__(
        self,
        client: AsyncAgentClient,
        lease_id: str,
        ttl: float,
        streaming: bool,
        datagram: DatagramTarget | None = None,
    ) -> None:
        self.client = client
        self.datagram = datagram
        self.home = datagram  # where datagrams go, kept while the hold is on gRPC
        self.returns = 0  # times it went back to datagrams
        self._probe_at = 0.0  # monotonic time of the next probe, while on gRPC
        self._probe_every = PROBE_S[0]
        self.generation = 0  # the agent's fault generation, from datagram answers
        # The lease's own fault generation, from datagram answers; `changed` is
        # set when it moves, and when the hold leaves datagrams or ends, so a
        # fault watch riding on the answers knows to look (aio_fault_watch).
        self.lease_generation = 0
        self.changed = asyncio.Event()
        self.address = client.address
        self.lease_id = lease_id
        self.ttl = ttl
        self.streaming = streaming
        self.lost = Latch()  # read from the runner's thread
        self.lost_reason = ""
        self.abandoned = False  # lost on purpose (abandon)
        self.heartbeats = 0
        self.reconnects = 0
        # Monotonic send time of the newest answered heartbeat (or the acquire).
        self.confirmed = time.monotonic()
        # And of the newest sent on gRPC, answered or not (the keeper knows
        # the datagrams'): on its way, it renews the lease too (runs_until).
        self.sent = self.confirmed
        self._seq = 0
        self._datagram_end: asyncio.Future[bool] | None = None  # True: gone
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> LeaseHold:
        """On the event loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.lease_id)
        return self

    async def stop(self) -> None:
        """Stop heartbeating; a stream is closed cleanly (the agent audits its end)."""
        self._stopping = True
        await cancel(self._task)

    def abandon(self, reason: str) -> None:
        """On the loop: stop heartbeating at once and count the lease as lost,
        on purpose. The agent reverts its faults by itself within the TTL,
        whether or not any call reaches it (the kill switch's backstop). Its
        task ends in the background: at 10,000 leases, awaiting each end
        would hold back the kill switch's Halts by most of a second."""
        self.abandoned = True
        self._lose(reason, logged=False)  # one line for them all, by whoever gave them up
        self._stopping = True
        if self.datagram is not None:
            self.sent = max(self.sent, self.datagram.keeper.sent(self))
            self.datagram.keeper.leave(self)  # not one more datagram for it
        if self._task is not None:
            self._task.cancel()  # a stream is still closed cleanly (_stream)

    def runs_until(self) -> float:
        """Monotonic: when the agent's lease runs out at the latest unless
        renewed again, a TTL after the newest heartbeat sent (the agent renews
        on receipt, a little later). The kill switch's Halts go first where
        that is latest (fleet.halt_order)."""
        sent = self.sent
        if self.datagram is not None and not self.abandoned:
            sent = max(sent, self.datagram.keeper.sent(self))
        return max(sent, self.confirmed) + self.ttl

    @property
    def mode(self) -> str:
        if self.datagram is not None:
            return "datagram"
        return "KeepLeases" if self.streaming else "RenewLease"

    def _lose(self, reason: str, logged: bool = True) -> None:
        self.changed.set()
        if not self.lost.is_set():
            self.lost_reason = reason
            self.lost.set()
            if logged:
                log.warning("lease lost", agent=self.address, lease_id=self.lease_id,
                            reason=reason)  # fmt: skip

    async def _run(self) -> None:
        period = self.ttl / 3
        # Spread a fleet's heartbeats over the period instead of one burst.
        await asyncio.sleep(period * random.uniform(0.5, 1.0))
        backoff = 0.05
        while not self._stopping:
            try:
                if self.datagram is not None:
                    await self._datagrams(period)
                    if self._stopping:
                        return
                await (self._stream(period) if self.streaming else self._renew(period))
            except _Gone as exc:
                self._lose(str(exc))
                return
            except _NoAnswer:
                log.warning("lease datagrams unanswered; keeping the lease over gRPC",
                            agent=self.address, lease_id=self.lease_id,
                            fallback="KeepLeases" if self.streaming else "RenewLease")  # fmt: skip
                self.datagram = None
                self._probe_every = PROBE_S[0]
                self._probe_at = time.monotonic() + self._probe_every
                self.changed.set()
                continue
            except _Back:
                log.info("lease datagrams answered again; leaving gRPC", agent=self.address,
                         lease_id=self.lease_id)  # fmt: skip
                self.datagram = self.home
                self.returns += 1
                self.changed.set()
                continue
            except grpc.RpcError as exc:
                code = exc.code()
                if self.streaming and code in FALL_BACK:
                    log.info("KeepLeases refused; renewing with RenewLease", agent=self.address,
                             code=code.name)  # fmt: skip
                    self.streaming = False
                    continue
                if code == grpc.StatusCode.NOT_FOUND:
                    self._lose(f"NOT_FOUND: {exc.details()}")
                    return
                why = f"{code.name}: {exc.details()}"
            except (_Broken, TimeoutError, asyncio.InvalidStateError) as exc:
                why = str(exc) or type(exc).__name__
            silent = time.monotonic() - self.confirmed
            if silent + backoff >= self.ttl:
                self._lose(
                    f"no heartbeat answered for {silent:.1f}s of the {self.ttl:g}s TTL ({why}):"
                    " the agent reverts the faults by itself"
                )
                return
            self.reconnects += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, period / 2)

    async def _probe(self, period: float) -> None:
        """On gRPC after datagrams went unanswered: now and then, one datagram;
        _Back if the agent answers it."""
        home = self.home
        if home is None or time.monotonic() < self._probe_at:
            return
        if await home.keeper.probe(home.dest, home.key, self.lease_id, min(period / 2, 0.5)):
            raise _Back()
        self._probe_every = min(self._probe_every * 2, PROBE_S[1])
        self._probe_at = time.monotonic() + self._probe_every

    def _left(self) -> float:
        """Seconds until no answer means the lease may be gone."""
        return max(0.0, self.confirmed + self.ttl - time.monotonic())

    async def _wait_period(self, sent: float, period: float) -> None:
        await asyncio.sleep(max(0.0, sent + period - time.monotonic()))

    async def _stream(self, period: float) -> None:
        call = self.client.keep_leases()
        try:
            while True:
                sent = self.sent = time.monotonic()
                self._seq += 1
                await call.write(pb.LeaseHeartbeat(lease_ids=[self.lease_id], seq=self._seq))
                # A slow answer is waited for, not retried: reopening streams
                # on a busy agent only adds load. Past the TTL it is lost.
                async with asyncio.timeout(self._left()):
                    reply = await call.read()
                if reply is aio.EOF:
                    raise _Broken("the agent ended the KeepLeases stream")
                assert isinstance(reply, pb.LeaseStates)
                if len(reply.leases) != 1 or reply.leases[0].lease_id != self.lease_id:
                    raise _Broken(f"KeepLeases answered for other leases: {reply}")
                state = reply.leases[0]
                if not state.live:
                    # Worded as RenewLease's answer, whichever way it was kept.
                    raise _Gone(f"NOT_FOUND: {state.reason or 'the lease is not live'}")
                self.confirmed = sent
                self.heartbeats += 1
                await self._probe(period)
                await self._wait_period(sent, period)
        except _Back:
            await _close(call)  # the agent sees a clean end
            raise
        except asyncio.CancelledError:
            if self._stopping:
                await _close(call)
            raise
        finally:
            call.cancel()

    async def _datagrams(self, period: float) -> None:
        """Kept by the fleet's keeper (keeper.py) until the agent says the lease
        is gone, or a whole period brings no answer."""
        assert self.datagram is not None
        d = self.datagram
        self._datagram_end = asyncio.get_running_loop().create_future()
        await d.keeper.join(d.dest, d.key, self, period)
        try:
            gone = await self._datagram_end
        finally:
            d.keeper.leave(self)
        if gone:
            raise _Gone("NOT_FOUND: the agent says the lease is not live")
        raise _NoAnswer()

    def answered(self, sent: float, state: hb.LeaseState, generation: int) -> None:
        """The keeper's: an answer to the round sent at `sent` (monotonic)."""
        if not state.live:
            self._end_datagrams(gone=True)
            return
        self.confirmed = sent
        self.heartbeats += 1
        self.generation = generation
        if state.generation != self.lease_generation:
            self.lease_generation = state.generation
            self.changed.set()

    def unanswered(self) -> None:
        """The keeper's: no answer for a whole period."""
        self._end_datagrams(gone=False)

    def _end_datagrams(self, gone: bool) -> None:
        if self._datagram_end is not None and not self._datagram_end.done():
            self._datagram_end.set_result(gone)

    async def _renew(self, period: float) -> None:
        while True:
            sent = self.sent = time.monotonic()
            await self.client.renew_lease(self.lease_id, timeout=max(0.001, self._left()))
            self.confirmed = sent
            self.heartbeats += 1
            await self._probe(period)
            await self._wait_period(sent, period)


async def _close(call: aio.StreamStreamCall[pb.LeaseHeartbeat, pb.LeaseStates]) -> None:
    """Half-close and drain, so the agent sees a clean end, not a cancel."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(1.0):
            await call.done_writing()
            while await call.read() is not aio.EOF:
                pass
