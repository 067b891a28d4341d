"""Bounded-concurrency dispatch to many agents from one event loop, and one
lease hold per agent.

Every call goes through AsyncAgentClient on the fleet's loop: a run is a task
on that loop and awaits the `a*` methods; other threads (the CLI's one-shot
commands, the service's blocking operations) call the plain ones and wait. A failure on
one agent is an Outcome with the status code, never an exception that stops
the others, and a slow or dead agent holds one slot until its own timeout.

A long-running controller owns one Fleet (one loop, one channel per agent)
and lends it out: `borrow()` gives a run its own leases and watches on the
same loop and channels, and closing the borrowed view ends only those. Halts
have slots of their own, so the kill switch never queues behind a run's calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc
import structlog

from brownout import features
from brownout.v1 import agent_pb2 as pb
from controller.agents import descriptors, heap, inventory
from controller.agents.aio_fault_watch import AsyncFaultWatch
from controller.agents.aioclient import AsyncAgentClient
from controller.agents.connection import AgentConnection
from controller.agents.datagrams import DatagramPort
from controller.agents.idle import IdleChannels
from controller.agents.inventory import AgentRef
from controller.agents.keeper import Keeper
from controller.agents.latch import Latch
from controller.agents.lease_hold import DatagramTarget, LeaseHold
from controller.agents.loop import LoopThread
from controller.agents.tls import ClientTls

T = TypeVar("T")
log = structlog.get_logger(__name__)

# Calls in flight at once. One loop on one core is saturated well below this,
# so more only queues inside gRPC: at 1,024 first connections at once, a few
# in a thousand calls failed CANCELLED at once (tests/bench/test_fleet_scale.py
# at 5,000 agents); at 256 none did, and no fan-out got slower.
CONCURRENCY = 256
# Halts and resumes (the kill switch) pass through slots of their own.
URGENT = 256


@dataclass
class Outcome(Generic[T]):
    address: str
    value: T | None = None
    error: str = ""
    code: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.error

    @property
    def unreachable(self) -> bool:
        return self.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")


@dataclass
class AgentStatus:
    ref: AgentRef
    info: pb.AgentInfo | None
    error: str = ""

    @property
    def address(self) -> str:
        return self.ref.address

    @property
    def reachable(self) -> bool:
        return self.info is not None

    @property
    def labels(self) -> dict[str, str]:
        reported = dict(self.info.labels) if self.info is not None else {}
        return {**reported, **self.ref.labels}

    def as_dict(self) -> dict[str, Any]:
        """For JSON (`brownout agents --json`, the service's fleet)."""
        i = self.info
        return {
            "address": self.address,
            "reachable": self.reachable,
            "error": self.error,
            "labels": self.labels,
            "hostname": i.hostname if i else "",
            "version": i.version if i else "",
            "halted": i.halted if i else None,
            "active_faults": i.active_faults if i else None,
            "active_leases": i.active_leases if i else None,
            "features": list(i.features) if i else [],
        }


def _describe(exc: grpc.RpcError) -> tuple[str, str]:
    code = exc.code()
    name = code.name if code is not None else "UNKNOWN"
    return name, f"{name}: {exc.details()}"


AgentCall = Callable[[AsyncAgentClient], Awaitable[T]]


class Held(Protocol):
    """What halt_order reads of a lease hold (LeaseHold)."""

    address: str
    abandoned: bool

    @property
    def lost(self) -> Latch: ...

    def runs_until(self) -> float: ...


def halt_order(addresses: Iterable[str], holds: Iterable[Held], now: float) -> list[str]:
    """Halt first where waiting would take longest. An agent where no lease of
    this fleet lives comes first: only a Halt ends what runs there. The rest
    follow by when their leases run out by themselves (the kill switch gives
    them up first), latest first, since the others end meanwhile. That order
    makes the last fault end soonest where the fan-out outlasts the TTL: at
    10,000 simulated agents, 2.5 s after the engage instead of the TTL (3 s).
    Ties keep the fleet's order."""
    ends: dict[str, float] = {}
    for h in holds:
        end = h.runs_until()
        if end > now and (h.abandoned or not h.lost.is_set()):
            ends[h.address] = max(ends.get(h.address, end), end)
    return sorted(addresses, key=lambda a: -ends.get(a, math.inf))


class Fleet:
    def __init__(
        self,
        refs: Sequence[AgentRef],
        timeout: float = 5.0,
        concurrency: int = CONCURRENCY,
        tls: ClientTls | None = None,
        fd_limit: int | None = None,  # the process's (descriptors.py) unless given
    ) -> None:
        self.refs: dict[str, AgentRef] = {r.address: r for r in refs}
        self.timeout = timeout
        self.tls = tls
        self.keepers: dict[str, LeaseHold] = {}
        # Every view's holds, for the kill switch (a view's are also in its keepers).
        self._holds: set[LeaseHold] = set()
        # Halt fan-outs announced or under way, shared by every view like
        # _holds: a run reverting meanwhile waits for them (after_halts).
        self._halting: set[Future[None]] = set()
        self._halting_lock = threading.Lock()
        self.infos: dict[str, pb.AgentInfo] = {}
        self._watches: list[AsyncFaultWatch] = []
        # Read the key and certificates once, not once per channel.
        credentials = tls.credentials() if tls is not None else None
        options: list[tuple[str, Any]] = [*(tls.options() if tls is not None else [])]
        limit = descriptors.raise_soft_limit() if fd_limit is None else fd_limit
        # More agents than descriptors: a channel lives only while it has work.
        self.idle: IdleChannels | None = None
        if not descriptors.fits(len(self.refs), limit):
            self.idle = IdleChannels(descriptors.IDLE_CLOSE_S)
            log.info("more agents than descriptors: connections close when idle",
                     agents=len(self.refs), fd_limit=limit,
                     idle_close_s=descriptors.IDLE_CLOSE_S)  # fmt: skip
        # One UDP socket (per address family) for every lease's datagrams.
        self.datagrams = DatagramPort()
        self.keeper = Keeper(self.datagrams)  # sends every lease's datagrams
        self.loop = LoopThread()
        self._owner = True
        self._clients = self.loop.run(self._connect(credentials, options, concurrency))
        heap.widen()
        heap.settle()

    async def _connect(
        self,
        credentials: grpc.ChannelCredentials | None,
        options: list[tuple[str, Any]],
        concurrency: int,
    ) -> dict[str, AsyncAgentClient]:
        self._width = max(1, concurrency)
        self._slots = asyncio.Semaphore(self._width)
        self._urgent = asyncio.Semaphore(URGENT)
        return {
            a: AsyncAgentClient(a, self.timeout, credentials, options, self.idle) for a in self.refs
        }

    @staticmethod
    def connect(connection: AgentConnection, concurrency: int = CONCURRENCY) -> Fleet:
        return Fleet(connection.refs, connection.timeout, concurrency, connection.tls)

    @property
    def connection(self) -> AgentConnection:
        return AgentConnection(tuple(self.refs.values()), self.timeout, self.tls)

    def borrow(self, only: Iterable[str] | None = None) -> Fleet:
        """A view for one user (a run, a dry run): this fleet's loop, channels,
        call slots and agent infos, with leases and watches of its own, of
        every agent or `only` those. Closing it stops those, and leaves the
        channels open."""
        view = copy.copy(self)  # shares the loop, channels, slots and infos
        view.keepers, view._watches, view._owner = {}, [], False
        if only is not None:
            view.refs = {a: self.refs[a] for a in only}
        return view

    @property
    def channels(self) -> int:
        return len(self._clients)

    # ------------------------------------------------------------ calling

    async def _call(self, address: str, fn: AgentCall[T], urgent: bool = False) -> Outcome[T]:
        async with self._urgent if urgent else self._slots:
            t0 = time.monotonic()
            try:
                value = await fn(self._clients[address])
            except grpc.RpcError as exc:
                code, error = _describe(exc)
                return Outcome(address, None, error, code, time.monotonic() - t0)
            return Outcome(address, value, seconds=time.monotonic() - t0)

    async def amap(
        self, fn: AgentCall[T], addresses: Iterable[str] | None = None, urgent: bool = False
    ) -> dict[str, Outcome[T]]:
        """On the loop: fn on each agent, at most `concurrency` at once.

        As many workers as slots take the agents in turn, rather than a task
        per agent queued on the slots: at 10,000 agents those were 10,000
        tasks, frames and futures alive through the fan-out, for the
        collector to walk again and again. The slots still bound the calls
        of every view of the fleet together."""
        targets = list(self.refs if addresses is None else addresses)
        results: dict[str, Outcome[T]] = {}
        turns = iter(targets)

        async def worker() -> None:
            for address in turns:
                results[address] = await self._call(address, fn, urgent)

        width = min(len(targets), URGENT if urgent else self._width)
        await asyncio.gather(*(worker() for _ in range(width)))
        return {a: results[a] for a in targets}

    def map(
        self, fn: AgentCall[T], addresses: Iterable[str] | None = None, urgent: bool = False
    ) -> dict[str, Outcome[T]]:
        """From another thread: fn on each agent; results keyed by address, in input order."""
        return self.loop.run(self.amap(fn, addresses, urgent))

    async def astatuses(self, addresses: Iterable[str] | None = None) -> dict[str, AgentStatus]:
        out = await self.amap(lambda c: c.info(), addresses)
        for a, o in out.items():
            if o.value is not None:
                self.infos[a] = o.value
        return {a: AgentStatus(self.refs[a], o.value, o.error) for a, o in out.items()}

    def statuses(self, addresses: Iterable[str] | None = None) -> dict[str, AgentStatus]:
        return self.loop.run(self.astatuses(addresses))

    def halt(self, latch: bool = False, reason: str = "") -> dict[str, Outcome[pb.HaltResponse]]:
        return self.loop.run(self.ahalt(latch, reason))

    async def ahalt(self, latch: bool, reason: str) -> dict[str, Outcome[pb.HaltResponse]]:
        """On the loop: Halt on every agent, in halt_order; results in the
        fleet's order."""
        order = halt_order(self.refs, self._holds, time.monotonic())
        out = await self.amap(lambda c: c.halt(latch, reason), order, urgent=True)
        return {a: out[a] for a in self.refs}

    @contextlib.contextmanager
    def halting(self) -> Iterator[None]:
        """Around a kill switch's aborts and Halt fan-out, from any thread: the
        runs it aborts revert after the Halts, not beside them. The Halt
        reverts every fault on its agent, so the Halts get the loop and the
        slots first; the runs' reverts then only read how each fault ended,
        for their journals."""
        done: Future[None] = Future()
        with self._halting_lock:
            self._halting.add(done)
        try:
            yield
        finally:
            with self._halting_lock:
                self._halting.discard(done)
            done.set_result(None)

    async def after_halts(self) -> None:
        """On the loop: until every Halt fan-out announced by halting() has ended."""
        with self._halting_lock:
            pending = [asyncio.wrap_future(f) for f in self._halting]
        if pending:
            await asyncio.wait(pending)

    def resume(self) -> dict[str, Outcome[pb.ResumeResponse]]:
        return self.map(lambda c: c.resume(), urgent=True)

    # ------------------------------------------------------------- leases

    async def _acquire(self, c: AsyncAgentClient, holder: str, ttl: float) -> pb.Lease:
        # No GetInfo just for this: an agent that offers datagrams says so in
        # the lease, and one without KeepLeases refuses the stream, which moves
        # the hold to RenewLease (one round trip per agent at setup, not two).
        info = self.infos.get(c.address)
        lease = await c.acquire_lease(holder, ttl)
        streaming = info is None or features.KEEP_LEASES in info.features
        datagram = None
        offered = info is None or features.LEASE_DATAGRAMS in info.features
        if offered and lease.heartbeat_port:
            host = inventory.host_of(c.address)
            key = self.datagrams.key(lease.heartbeat_key_id, lease.heartbeat_key)
            datagram = DatagramTarget(self.keeper, (host, lease.heartbeat_port), key)
        hold = LeaseHold(c, lease.lease_id, ttl, streaming, datagram).start()
        self.keepers[c.address] = hold
        self._holds.add(hold)
        return lease

    async def aacquire_leases(
        self, addresses: Iterable[str], holder: str, ttl: float
    ) -> dict[str, Outcome[pb.Lease]]:
        """One lease per agent, each kept alive at TTL/3: on a KeepLeases stream
        where the agent serves it (GetInfo features), else by RenewLease."""
        out = await self.amap(lambda c: self._acquire(c, holder, ttl), addresses)
        heap.settle()  # the holds live as long as the run
        return out

    def acquire_leases(
        self, addresses: Iterable[str], holder: str, ttl: float
    ) -> dict[str, Outcome[pb.Lease]]:
        return self.loop.run(self.aacquire_leases(addresses, holder, ttl))

    def lost(self) -> dict[str, str]:
        """Agents whose lease is gone: the agent has reverted their faults itself."""
        return {a: k.lost_reason for a, k in self.keepers.items() if k.lost.is_set()}

    def lease_ids(self) -> Mapping[str, str]:
        return {a: k.lease_id for a, k in self.keepers.items()}

    async def release(self, address: str) -> pb.ReleaseLeaseResponse | None:
        """On the loop: stop heartbeating and release the agent's lease (its
        faults revert). None if this fleet holds no lease there."""
        hold = self.keepers.get(address)
        if hold is None:
            return None
        await hold.stop()
        self._holds.discard(hold)
        return await self._clients[address].release_lease(hold.lease_id)

    async def _stop_keepers(self) -> None:
        await asyncio.gather(*(k.stop() for k in self.keepers.values()))
        self._holds.difference_update(self.keepers.values())

    async def aabandon_leases(self, reason: str) -> int:
        """Stop heartbeating every lease that any view of this fleet holds, and
        count each as lost for `reason`: every agent reverts their faults by
        itself within the TTL, even one that no call reaches. The kill switch
        does this before its Halt fan-out, which at fleet scale, or to an
        agent cut off from gRPC, may take longer than a TTL. How many."""
        holds = [h for h in self._holds if not h.lost.is_set()]
        for h in holds:
            h.abandon(reason)
        return len(holds)

    def abandon_leases(self, reason: str) -> int:
        return self.loop.run(self.aabandon_leases(reason))

    def stop_keepers(self) -> None:
        self.loop.run(self._stop_keepers())

    # ------------------------------------------------------------ watches

    async def awatch_faults(
        self, on_event: Callable[[str, pb.FaultEvent], None], streams: bool = False
    ) -> None:
        """Follow the faults under every held lease; on_event runs on the loop.
        A lease kept by datagram is followed on its answers, with no stream
        (an end is seen within TTL/3), unless `streams` asks for WatchFaults
        everywhere (one agent, whose user waits for the end to the moment)."""
        for address, hold in self.keepers.items():
            watch = AsyncFaultWatch(
                self._clients[address], hold.lease_id, on_event, hold=None if streams else hold
            )
            self._watches.append(watch.start())
        heap.settle()

    @property
    def watches(self) -> list[AsyncFaultWatch]:
        return list(self._watches)

    async def astop_watches(self) -> None:
        watches, self._watches = self._watches, []
        await _gather_stops(watches)

    def watch_faults(
        self, on_event: Callable[[str, pb.FaultEvent], None], streams: bool = False
    ) -> None:
        self.loop.run(self.awatch_faults(on_event, streams))

    def stop_watches(self) -> None:
        self.loop.run(self.astop_watches())

    # -------------------------------------------------------------- close

    async def aclose(self) -> None:
        """On the loop: stop this view's leases and watches (a borrowed view's
        whole close; the owner closes with close())."""
        await self._stop_keepers()
        await self.astop_watches()
        heap.unsettle()  # their cycles may be collected again
        if self._owner:
            if self.idle is not None:
                await self.idle.stop()
            await asyncio.gather(*(c.close() for c in self._clients.values()))
            await self.keeper.stop()
            self.datagrams.close()

    def close(self) -> None:
        """Stop this view's leases and watches; the owner also closes the
        channels and the loop."""
        try:
            self.loop.run(self.aclose(), timeout=30)
        finally:
            if self._owner:
                self.loop.stop()
                heap.release()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _gather_stops(watches: list[AsyncFaultWatch]) -> None:
    await asyncio.gather(*(w.stop() for w in watches))
