"""The gRPC servicer: thin. Maps wire <-> domain (convert), errors to status
codes, audits every mutating call with the caller's identity (audit) and
times every call."""

from __future__ import annotations

import functools
import os
import queue
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import grpc
import structlog
from google.protobuf.message import Message

from agent.api import tracecontext
from agent.api.audit import audit, caller_identity
from agent.api.convert import (
    PB_TO_STATE,
    duration,
    event_to_pb,
    fault_to_pb,
    inject_request,
    timestamp,
)
from agent.api.datagrams import DatagramServer
from agent.api.keepleases import LeaseKeeping
from agent.api.streams import StreamSlots
from agent.core.errors import (
    AgentError,
    AlreadyExists,
    ApplyError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    TargetGone,
)
from agent.core.leases import Lease
from agent.core.manager import FaultManager
from agent.core.metrics import Metrics
from agent.core.model import EndReason
from brownout import features, kinds
from brownout.v1 import agent_pb2 as pb
from brownout.v1 import agent_pb2_grpc as pb_grpc
from brownout.version import __version__

# Each stream holds one of the server's 32 threads while it is open.
MAX_WATCHERS = 16
MAX_LEASE_STREAMS = 8
MAX_DETAIL_BYTES = 1024
_CODES: list[tuple[type[AgentError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (NotFound, grpc.StatusCode.NOT_FOUND),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ApplyError, grpc.StatusCode.FAILED_PRECONDITION),
    # The target (namespace, cgroup, process) vanished while we looked at it.
    (TargetGone, grpc.StatusCode.FAILED_PRECONDITION),
]

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp")
Handler = Callable[[Any, Req, grpc.ServicerContext], Resp]


def status_code(exc: AgentError) -> grpc.StatusCode:
    for cls, code in _CODES:
        if isinstance(exc, cls):
            return code
    return grpc.StatusCode.INTERNAL


def clip_detail(detail: str) -> str:
    """Status details travel in a trailer, percent-encoded, and clients drop
    trailers over 8 KiB (the caller would see RESOURCE_EXHAUSTED instead of
    our answer). They may echo the caller's input, so they are clipped; the
    audit log keeps the whole text."""
    data = detail.encode()
    if len(data) <= MAX_DETAIL_BYTES:
        return detail
    return data[:MAX_DETAIL_BYTES].decode(errors="ignore") + " ... (clipped)"


def rpc(mutating: bool) -> Callable[[Handler[Req, Resp]], Handler[Req, Resp]]:
    """Time the call, map domain errors to statuses, audit mutating calls."""

    def decorate(fn: Handler[Req, Resp]) -> Handler[Req, Resp]:
        method = fn.__name__

        @functools.wraps(fn)
        def wrapper(self: AgentServicer, request: Req, context: grpc.ServicerContext) -> Resp:
            # The caller's trace id on every log line of the call, the audit's too.
            traced = tracecontext.trace_id(context.invocation_metadata())
            with structlog.contextvars.bound_contextvars(
                **({"trace_id": traced} if traced else {})
            ):
                return call(self, request, context)

        def call(self: AgentServicer, request: Req, context: grpc.ServicerContext) -> Resp:
            start = time.perf_counter()
            code = grpc.StatusCode.OK
            detail = ""
            result: Resp | None = None
            try:
                result = fn(self, request, context)
                return result
            except AgentError as exc:
                code, detail = status_code(exc), str(exc)
                context.abort(code, clip_detail(detail))
            except Exception as exc:
                code = grpc.StatusCode.INTERNAL
                detail = f"internal error in {method}: {exc}; see the agent's logs"
                structlog.get_logger(__name__).exception("rpc failed", method=method)
                context.abort(code, clip_detail(detail))
            finally:
                self.metrics.rpc_duration_seconds.labels(method).observe(
                    time.perf_counter() - start
                )
                if mutating:
                    audit(self.metrics, method, request, result, context, code, detail)
            raise AssertionError("unreachable: context.abort raises")

        return wrapper

    return decorate


class AgentServicer(pb_grpc.AgentServicer):
    def __init__(
        self,
        manager: FaultManager,
        metrics: Metrics,
        labels: dict[str, str],
        boot_id: str,
        started_at: float,
        datagrams: DatagramServer | None = None,
    ) -> None:
        self.manager = manager
        self.datagrams = datagrams
        self.metrics = metrics
        self._labels = labels
        self._boot_id = boot_id
        self._started_at = started_at
        self._watchers = StreamSlots("WatchFaults", MAX_WATCHERS)
        keeping = StreamSlots("KeepLeases", MAX_LEASE_STREAMS)
        self._keeping = LeaseKeeping(manager, metrics, keeping)
        metrics.register_streams(lambda: {s.what: s.open for s in (self._watchers, keeping)})

    def _lease_pb(self, lease: Lease) -> pb.Lease:
        remaining = max(0.0, lease.deadline - time.monotonic())
        return pb.Lease(
            lease_id=lease.id,
            holder=lease.holder,
            ttl=duration(lease.ttl),
            deadline=timestamp(self.manager.lease_wall_deadline(lease)),
            remaining=duration(remaining),
        )

    @rpc(mutating=False)
    def GetInfo(self, request: pb.GetInfoRequest, context: grpc.ServicerContext) -> pb.AgentInfo:
        limits = self.manager.limits
        caps = []
        for kind in kinds.KINDS:
            cap = self.manager.capabilities.get(kind.name)
            if cap is None:
                caps.append(
                    pb.Capability(
                        kind=kind.value,
                        available=False,
                        reason=f"not implemented by brownout-agent {__version__}",
                    )
                )
            else:
                caps.append(
                    pb.Capability(kind=kind.value, available=cap.available, reason=cap.reason)
                )
        return pb.AgentInfo(
            version=__version__,
            hostname=socket.gethostname(),
            labels=self._labels,
            boot_id=self._boot_id,
            capabilities=caps,
            limits=pb.Limits(
                max_fault_duration=duration(limits.max_fault_duration),
                max_lease_ttl=duration(limits.max_lease_ttl),
                min_lease_ttl=duration(limits.min_lease_ttl),
                memory_reserve_bytes=limits.memory_reserve_bytes,
                memory_reserve_percent=limits.memory_reserve_percent,
                disk_reserve_bytes=limits.disk_reserve_bytes,
                disk_reserve_percent=limits.disk_reserve_percent,
                max_active_faults=limits.max_active_faults,
                process_match_cap=limits.process_match_cap,
                process_denylist=list(limits.process_denylist),
                max_clock_offset=duration(limits.max_clock_offset),
            ),
            cpu_count=len(os.sched_getaffinity(0)),
            halted=self.manager.halted,
            started_at=timestamp(self._started_at),
            active_faults=self.manager.active_count(),
            active_leases=self.manager.leases.count(),
            features=[
                f
                for f in features.ALL
                if f != features.LEASE_DATAGRAMS or (self.datagrams and self.datagrams.port)
            ],
        )

    @rpc(mutating=True)
    def AcquireLease(
        self, request: pb.AcquireLeaseRequest, context: grpc.ServicerContext
    ) -> pb.Lease:
        holder = request.holder or caller_identity(context)
        ttl = (request.ttl.seconds, request.ttl.nanos)
        lease = self.manager.acquire_lease(holder, ttl, peer=context.peer())
        out = self._lease_pb(lease)
        if self.datagrams is not None and self.datagrams.port:
            # One key per authenticated caller and holder: only they can renew.
            k = self.datagrams.keys.bind(caller_identity(context), holder, lease.id)
            out.heartbeat_key_id, out.heartbeat_key = k.key_id, k.key
            out.heartbeat_port = self.datagrams.port
        return out

    @rpc(mutating=True)
    def RenewLease(self, request: pb.RenewLeaseRequest, context: grpc.ServicerContext) -> pb.Lease:
        return self._lease_pb(self.manager.renew_lease(request.lease_id, peer=context.peer()))

    @rpc(mutating=True)
    def ReleaseLease(
        self, request: pb.ReleaseLeaseRequest, context: grpc.ServicerContext
    ) -> pb.ReleaseLeaseResponse:
        faults = self.manager.release_lease(request.lease_id)
        return pb.ReleaseLeaseResponse(faults=[fault_to_pb(f) for f in faults])

    @rpc(mutating=True)
    def InjectFault(
        self, request: pb.InjectFaultRequest, context: grpc.ServicerContext
    ) -> pb.Fault:
        if not request.lease_id and not request.validate_only:
            raise InvalidArgument("lease_id", "is required: acquire a lease first")
        if len(request.request_id) > 128:
            raise InvalidArgument("request_id", "must be at most 128 characters")
        req = inject_request(
            request, self.manager.kinds, caller=caller_identity(context), caller_peer=context.peer()
        )
        if request.validate_only:
            reach = self.manager.check_inject(req)
            return pb.Fault(kind=kinds.by_name(req.kind).value, lease_id=request.lease_id,
                            spec=request.spec, target=request.target, duration=request.duration,
                            applied=reach, request_id=request.request_id)  # fmt: skip
        return fault_to_pb(self.manager.inject(req))

    @rpc(mutating=True)
    def RevertFault(
        self, request: pb.RevertFaultRequest, context: grpc.ServicerContext
    ) -> pb.Fault:
        return fault_to_pb(
            self.manager.revert(request.fault_id, EndReason.CLIENT_REVERT, context.peer())
        )

    @rpc(mutating=False)
    def GetFault(self, request: pb.GetFaultRequest, context: grpc.ServicerContext) -> pb.Fault:
        return fault_to_pb(self.manager.get(request.fault_id))

    @rpc(mutating=False)
    def ListFaults(
        self, request: pb.ListFaultsRequest, context: grpc.ServicerContext
    ) -> pb.ListFaultsResponse:
        states = set()
        for i, value in enumerate(request.states):
            state = PB_TO_STATE.get(value)
            if state is None:
                raise InvalidArgument(f"states[{i}]", f"unknown fault state {value}")
            states.add(state)
        faults = self.manager.list_faults(request.lease_id, frozenset(states))
        return pb.ListFaultsResponse(faults=[fault_to_pb(f) for f in faults])

    @rpc(mutating=True)
    def Halt(self, request: pb.HaltRequest, context: grpc.ServicerContext) -> pb.HaltResponse:
        faults, latched = self.manager.halt(request.latch, request.reason)
        return pb.HaltResponse(faults=[fault_to_pb(f) for f in faults], latched=latched)

    @rpc(mutating=True)
    def Resume(self, request: pb.ResumeRequest, context: grpc.ServicerContext) -> pb.ResumeResponse:
        return pb.ResumeResponse(was_latched=self.manager.resume())

    def KeepLeases(
        self, request_iterator: Iterator[pb.LeaseHeartbeat], context: grpc.ServicerContext
    ) -> Iterator[pb.LeaseStates]:
        return self._keeping.serve(request_iterator, context)

    def WatchFaults(
        self, request: pb.WatchFaultsRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.FaultEvent]:
        self._watchers.take(context)
        try:
            with self.manager.watch(request.lease_id, request.include_existing) as watcher:
                # End the loop as soon as the client cancels or its deadline
                # passes, not at the next poll: a gone client must not hold a
                # watcher slot and a server thread.
                context.add_callback(watcher.wake)
                # Headers now tell the client the watch is live (see the proto).
                context.send_initial_metadata(())
                while context.is_active():
                    if watcher.overflowed:
                        context.abort(
                            grpc.StatusCode.RESOURCE_EXHAUSTED,
                            "watcher fell too far behind; reconnect with include_existing",
                        )
                    try:
                        event = watcher.events.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if event is None:
                        return
                    yield event_to_pb(event)
        finally:
            self._watchers.give()
