"""The simulated fleet: one grpc.aio process that answers brownout.v1.Agent
on one port for every address 127.A.B.C, with real lease deadlines.

It binds 0.0.0.0 inside a network namespace the benchmark made, where only
loopback exists, so every 127.A.B.C reaches it and nothing outside does. An
"agent" is an address: the benchmark puts each agent's address on that
loopback, so that it is the source of every connection to it
(procs.give_addresses), and a lease belongs to the agent whose address last
acquired or renewed it (Halt reverts those), over whichever connection.

Faults are bookkeeping only (nothing touches the kernel); what is real is the
lease clock: a lease whose deadline passes with an active fault is counted as
lost with faults, the figure the benchmark must keep at 0.

With --datagrams it also announces `lease_datagrams` and renews leases from
authenticated datagrams (brownout/heartbeat.py) on the same port number over
UDP, as an agent does: a key per holder and peer, the MAC and the counter
checked, an answer MAC'd with the key.

Commands on stdin, answers on stdout as one JSON line: `stats`, `quit`.
"""

from __future__ import annotations

import argparse
import asyncio
import heapq
import itertools
import json
import resource
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import psutil
from google.protobuf.duration_pb2 import Duration
from grpc import aio

from brownout import features
from brownout.v1 import agent_pb2 as pb
from brownout.v1 import agent_pb2_grpc as pb_grpc
from brownout.version import __version__
from tests.fleetsim.leaseclock import LeaseClock
from tests.fleetsim.limits import raise_fd_limit


@dataclass
class SimLease:
    id: str
    n: int  # its slot in the lease clock
    ttl: float
    clock: LeaseClock
    peer: str
    faults: dict[str, pb.Fault] = field(default_factory=dict)

    @property
    def deadline(self) -> float:  # the responder process renews it too
        return float(self.clock.a.deadline[self.n])

    @deadline.setter
    def deadline(self, value: float) -> None:
        self.clock.a.deadline[self.n] = value

    def changed(self) -> None:
        """One of its faults changed state: its lease generation moves."""
        self.clock.a.generation[self.n] = (self.clock.a.generation[self.n] + 1) & 0xFFFFFFFF


def _seconds(d: Duration) -> float:
    return d.seconds + d.nanos / 1e9


def _duration(seconds: float) -> Duration:
    d = Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def agent_of(context: Any) -> str:
    """The simulated agent a call was made to: its peer's address, without
    the port ("ipv4:127.1.0.7:41234" -> "ipv4:127.1.0.7")."""
    return str(context.peer()).rsplit(":", 1)[0]


GONE = "lease not found or expired: its faults have been or are being reverted"


class SimAgent(pb_grpc.AgentServicer):
    def __init__(self, keep_leases: bool, datagrams: bool = False) -> None:
        self.datagram_port = 0  # set once bound, with --datagrams
        self.clock = LeaseClock()
        self._lease_numbers = itertools.count(1)
        self.generation = 0
        self.leases: dict[str, SimLease] = {}
        self.by_peer: dict[str, set[str]] = {}  # agent -> its leases
        self.agents: set[str] = set()  # every agent that acquired a lease
        self.faults: dict[str, pb.Fault] = {}
        self.by_request: dict[tuple[str, str], pb.Fault] = {}
        self.watchers: dict[str, list[asyncio.Queue[pb.FaultEvent]]] = {}
        self.halted: set[str] = set()
        self._heap: list[tuple[float, str]] = []
        self._ids = itertools.count(1)
        self.active = 0  # faults active now
        self.last_end_at = 0.0  # wall-clock time an active fault last ended
        self.last_end_by: dict[str, float] = {}  # end reason name -> that time
        self.ended_by: Counter[str] = Counter()  # end reason name -> faults
        self.stats = {
            "leases_acquired": 0,
            "leases_expired": 0,
            "leases_lost_with_active_faults": 0,
            "heartbeats": 0,
            "renewals": 0,
            "injects": 0,
            "reverts": 0,
            "streams_open": 0,
        }
        self.info = pb.AgentInfo(
            version=__version__,
            hostname="fleetsim",
            capabilities=[pb.Capability(kind=pb.FAULT_KIND_CPU, available=True)],
            limits=pb.Limits(
                max_fault_duration=_duration(3600),
                max_lease_ttl=_duration(600),
                min_lease_ttl=_duration(1),
                max_active_faults=16,
            ),
            cpu_count=2,
            features=[features.KEEP_LEASES] * keep_leases + [features.LEASE_DATAGRAMS] * datagrams,
        )

    # ----------------------------------------------------------- leases

    def _live(self, lease_id: str) -> SimLease | None:
        lease = self.leases.get(lease_id)
        if lease is None or lease.deadline <= time.monotonic():
            return None
        return lease

    def _renew(self, lease_id: str, peer: str) -> SimLease | None:
        lease = self._live(lease_id)
        if lease is not None:
            lease.deadline = time.monotonic() + lease.ttl
            self._place(lease, peer)
            heapq.heappush(self._heap, (lease.deadline, lease.id))
            self.stats["renewals"] += 1
        return lease

    def sweep(self) -> None:
        now = time.monotonic()
        while self._heap and self._heap[0][0] <= now:
            _, lease_id = heapq.heappop(self._heap)
            lease = self.leases.get(lease_id)
            if lease is None:
                continue
            if lease.deadline > now:  # renewed since (perhaps by datagram)
                heapq.heappush(self._heap, (lease.deadline, lease_id))
                continue
            self._remove(lease)
            self.stats["leases_expired"] += 1
            if any(f.state == pb.FAULT_STATE_ACTIVE for f in lease.faults.values()):
                self.stats["leases_lost_with_active_faults"] += 1
            self._end_all(lease, pb.END_REASON_LEASE_EXPIRED)

    def _lease_pb(self, lease: SimLease) -> pb.Lease:
        remaining = max(0.0, lease.deadline - time.monotonic())
        return pb.Lease(lease_id=lease.id, ttl=_duration(lease.ttl), remaining=_duration(remaining))

    async def GetInfo(self, request: pb.GetInfoRequest, context: Any) -> pb.AgentInfo:
        return self.info

    async def AcquireLease(self, request: pb.AcquireLeaseRequest, context: Any) -> pb.Lease:
        ttl = _seconds(request.ttl)
        n = next(self._lease_numbers)
        lease = SimLease(f"lease-{n:016x}", n, ttl, self.clock, "")
        self.clock.set(n, time.monotonic() + ttl, ttl)
        self.leases[lease.id] = lease
        self._place(lease, agent := agent_of(context))
        self.agents.add(agent)
        heapq.heappush(self._heap, (lease.deadline, lease.id))
        self.stats["leases_acquired"] += 1
        out = self._lease_pb(lease)
        if self.datagram_port:
            # A key per lease (the responder derives it from the lease's slot):
            # with one lease per holder and agent, as the benches take them,
            # that is a key per holder and agent, as a real agent gives.
            out.heartbeat_key_id, out.heartbeat_key = self.clock.key(n)
            out.heartbeat_port = self.datagram_port
        return out

    async def RenewLease(self, request: pb.RenewLeaseRequest, context: Any) -> pb.Lease:
        lease = self._renew(request.lease_id, agent_of(context))
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, GONE)
        assert lease is not None
        self.stats["heartbeats"] += 1
        return self._lease_pb(lease)

    async def KeepLeases(  # type: ignore[override]  # the reader/writer style
        self, request_iterator: AsyncIterator[pb.LeaseHeartbeat], context: Any
    ) -> None:
        # context.read()/write(): a little cheaper than an async generator,
        # and the simulator is the side that saturates first.
        peer = agent_of(context)
        self.stats["streams_open"] += 1
        try:
            while (hb := await context.read()) is not aio.EOF:
                self.stats["heartbeats"] += 1
                states = []
                for lease_id in hb.lease_ids:
                    lease = self._renew(lease_id, peer)
                    if lease is None:
                        states.append(pb.LeaseState(lease_id=lease_id, live=False, reason=GONE))
                    else:
                        left = _duration(lease.ttl)
                        states.append(pb.LeaseState(lease_id=lease_id, live=True, remaining=left))
                await context.write(pb.LeaseStates(seq=hb.seq, leases=states))
        finally:
            self.stats["streams_open"] -= 1

    async def ReleaseLease(
        self, request: pb.ReleaseLeaseRequest, context: Any
    ) -> pb.ReleaseLeaseResponse:
        lease = self._live(request.lease_id)
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, GONE)
        assert lease is not None
        self._remove(lease)
        lease.deadline = 0.0  # no datagram renews it now
        return pb.ReleaseLeaseResponse(faults=self._end_all(lease, pb.END_REASON_LEASE_RELEASED))

    # ----------------------------------------------------------- faults

    def _end(
        self, fault: pb.Fault, reason: pb.EndReason.ValueType, replying_to: str = ""
    ) -> pb.Fault:
        if fault.state == pb.FAULT_STATE_ACTIVE:
            previous = fault.state
            fault.state, fault.end_reason = pb.FAULT_STATE_REVERTED, reason
            self.stats["reverts"] += 1
            self.active -= 1
            self.last_end_at = time.time()
            self.ended_by[pb.EndReason.Name(reason)] += 1
            self.last_end_by[pb.EndReason.Name(reason)] = self.last_end_at
            self._notify(fault, previous, replying_to)
        return fault

    def _end_all(self, lease: SimLease, reason: pb.EndReason.ValueType) -> list[pb.Fault]:
        return [self._end(f, reason) for f in lease.faults.values()]

    def _notify(
        self, fault: pb.Fault, previous: pb.FaultState.ValueType, replying_to: str = ""
    ) -> None:
        self.generation += 1
        lease = self.leases.get(fault.lease_id)
        # As the agent: the holder's own inject and revert are told by their replies.
        if lease is not None and not (replying_to and replying_to == lease.peer):
            lease.changed()
        for q in self.watchers.get(fault.lease_id, []):
            q.put_nowait(pb.FaultEvent(fault=fault, previous_state=previous))

    async def InjectFault(self, request: pb.InjectFaultRequest, context: Any) -> pb.Fault:
        lease = self._live(request.lease_id)
        if lease is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, GONE)
        assert lease is not None
        if request.spec.WhichOneof("spec") is None:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "spec: no fault kind set")
        if lease.peer in self.halted:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "agent is halted")
        key = (lease.id, request.request_id)
        if request.request_id and key in self.by_request:
            return self.by_request[key]
        fault = pb.Fault(
            id=f"fault-{next(self._ids):08x}",
            kind=pb.FAULT_KIND_CPU,
            state=pb.FAULT_STATE_ACTIVE,
            lease_id=lease.id,
        )
        lease.faults[fault.id] = self.faults[fault.id] = fault
        if request.request_id:
            self.by_request[key] = fault
        self.stats["injects"] += 1
        self.active += 1
        self._notify(fault, pb.FAULT_STATE_PENDING, agent_of(context))
        return fault

    async def RevertFault(self, request: pb.RevertFaultRequest, context: Any) -> pb.Fault:
        fault = self.faults.get(request.fault_id)
        if fault is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"fault {request.fault_id!r} not found")
        assert fault is not None
        return self._end(fault, pb.END_REASON_CLIENT_REVERT, agent_of(context))

    async def GetFault(self, request: pb.GetFaultRequest, context: Any) -> pb.Fault:
        fault = self.faults.get(request.fault_id)
        if fault is None:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"fault {request.fault_id!r} not found")
        assert fault is not None
        return fault

    def _place(self, lease: SimLease, peer: str) -> None:
        """The lease is now this agent's (indexed: a Halt to
        each of 10,000 agents must not scan every lease)."""
        if lease.peer != peer:
            self._remove_from_peer(lease)
            lease.peer = peer
            self.by_peer.setdefault(peer, set()).add(lease.id)

    def _remove_from_peer(self, lease: SimLease) -> None:
        ids = self.by_peer.get(lease.peer)
        if ids is not None:
            ids.discard(lease.id)
            if not ids:
                del self.by_peer[lease.peer]

    def _remove(self, lease: SimLease) -> None:
        del self.leases[lease.id]
        self._remove_from_peer(lease)

    def _peer_faults(self, peer: str) -> list[pb.Fault]:
        leases = [self.leases[i] for i in self.by_peer.get(peer, ())]
        return [f for lease in leases for f in lease.faults.values()]

    async def ListFaults(
        self, request: pb.ListFaultsRequest, context: Any
    ) -> pb.ListFaultsResponse:
        if request.lease_id:  # a lease is its holder's, whichever agent is asked
            lease = self.leases.get(request.lease_id)
            return pb.ListFaultsResponse(faults=lease.faults.values() if lease else ())
        return pb.ListFaultsResponse(faults=self._peer_faults(agent_of(context)))

    async def Halt(self, request: pb.HaltRequest, context: Any) -> pb.HaltResponse:
        peer = agent_of(context)
        if request.latch:
            self.halted.add(peer)
        # As the agent: the faults this Halt ended, not those already ended.
        live = [f for f in self._peer_faults(peer) if f.state == pb.FAULT_STATE_ACTIVE]
        faults = [self._end(f, pb.END_REASON_HALT) for f in live]
        return pb.HaltResponse(faults=faults, latched=request.latch)

    async def Resume(self, request: pb.ResumeRequest, context: Any) -> pb.ResumeResponse:
        peer = agent_of(context)
        was = peer in self.halted
        self.halted.discard(peer)
        return pb.ResumeResponse(was_latched=was)

    async def WatchFaults(
        self, request: pb.WatchFaultsRequest, context: Any
    ) -> AsyncIterator[pb.FaultEvent]:
        q: asyncio.Queue[pb.FaultEvent] = asyncio.Queue()
        self.watchers.setdefault(request.lease_id, []).append(q)
        try:
            await context.send_initial_metadata(())
            if request.include_existing:
                lease = self.leases.get(request.lease_id)
                for f in lease.faults.values() if lease is not None else ():
                    yield pb.FaultEvent(fault=f)
            while True:
                yield await q.get()
        finally:
            self.watchers[request.lease_id].remove(q)


class OldAgent(SimAgent):
    """An agent from before KeepLeases: GetInfo lists no features, the stream is
    unknown. With watch=False, from before WatchFaults too."""

    def __init__(self, watch: bool = True) -> None:
        super().__init__(keep_leases=False)
        self.watch = watch

    async def WatchFaults(
        self, request: pb.WatchFaultsRequest, context: Any
    ) -> AsyncIterator[pb.FaultEvent]:
        if not self.watch:
            await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        async for event in super().WatchFaults(request, context):
            yield event

    async def KeepLeases(  # type: ignore[override]
        self, request_iterator: AsyncIterator[pb.LeaseHeartbeat], context: Any
    ) -> pb.LeaseStates:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not found!")
        raise AssertionError("unreachable")


async def _sweeper(sim: SimAgent) -> None:
    while True:
        sim.sweep()
        await asyncio.sleep(0.05)


async def _commands(sim: SimAgent, server: aio.Server) -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode().strip():
        if line == "stats":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            responder_cpu, responder_rss = 0.0, 0.0
            if sim.clock.responder is not None and sim.clock.responder.pid is not None:
                child = psutil.Process(sim.clock.responder.pid)
                t = child.cpu_times()
                responder_cpu, responder_rss = t.user + t.system, child.memory_info().rss / 2**20
            datagrams = sim.clock.stat("datagrams")
            out = {
                **sim.stats,
                "leases_live": len(sim.leases),
                "agents": len(sim.agents),
                "faults_active": sim.active,
                "last_fault_end_at": sim.last_end_at,
                "last_fault_end_at_by": sim.last_end_by,
                "faults_ended_by": dict(sim.ended_by),
                "heartbeats": sim.stats["heartbeats"] + datagrams,
                "datagrams": datagrams,
                "datagrams_dropped": sim.clock.stat("datagrams_dropped"),
                # Both processes: the gRPC one and the datagram responder.
                "cpu_s": round(usage.ru_utime + usage.ru_stime + responder_cpu, 3),
                "datagram_cpu_s": round(responder_cpu, 3),
                "max_rss_mib": round(usage.ru_maxrss / 1024 + responder_rss, 1),
            }
            print(json.dumps(out), flush=True)
        elif line == "quit":
            break
    await server.stop(None)
    sim.clock.close()


async def main(listen: str, old: bool, watch: bool = True, datagrams: bool = False) -> None:
    raise_fd_limit()
    sim = OldAgent(watch) if old else SimAgent(keep_leases=True, datagrams=datagrams)
    server = aio.server(options=[("grpc.max_concurrent_streams", 64), ("grpc.so_reuseport", 0)])
    pb_grpc.add_AgentServicer_to_server(sim, server)
    bound = server.add_insecure_port(listen)
    await server.start()
    if datagrams:
        sim.clock.serve(listen.rsplit(":", 1)[0], bound)
        sim.datagram_port = bound
    print(json.dumps({"listening": bound}), flush=True)
    sweeper = asyncio.create_task(_sweeper(sim))
    await _commands(sim, server)
    sweeper.cancel()


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--listen", default="0.0.0.0:0", help="HOST:PORT (0.0.0.0 only inside a netns of its own)"
    )
    ap.add_argument("--old-agent", action="store_true", help="serve the contract before KeepLeases")
    ap.add_argument(
        "--no-watch", action="store_true", help="with --old-agent: from before WatchFaults too"
    )
    ap.add_argument(
        "--datagrams", action="store_true", help="renew leases by datagram on the same UDP port"
    )
    args = ap.parse_args()
    asyncio.run(main(args.listen, args.old_agent, not args.no_watch, args.datagrams))
