"""The asyncio client for one agent over a grpc.aio channel, and the async
retry rule for its idempotent calls. Every fleet call goes through it, on the
fleet's one event loop."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar, cast

import grpc
import tenacity
from grpc import aio

from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb
from brownout.v1 import agent_pb2_grpc as pb_grpc
from controller.agents.idle import IdleChannels

T = TypeVar("T")
# Worth another try: the agent was not reached, or did not answer in time.
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


# gRPC call metadata: a run's W3C traceparent, for the agent's logs.
Metadata = tuple[tuple[str, str], ...]


def transient(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and exc.code() in TRANSIENT


def rpc_error(exc: grpc.RpcError) -> str:
    code = exc.code()
    return f"{code.name if code else 'UNKNOWN'}: {exc.details()}"


# Reconnect quickly after a broken connection: a lease must be renewed again
# within its TTL, and gRPC's default backoff starts at 1 s and grows to 120 s.
# (Not grpc.min_reconnect_backoff_ms: that is also the connect timeout, and a
# short one fails connections that a busy listener accepts a little late.)
# No BDP probes: they add a ping to every burst of reads, and a heartbeat
# stream never needs a bigger window.
CHANNEL_OPTIONS = [
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
    ("grpc.http2.bdp_probe", 0),
    # Nothing reads channelz here, and its nodes and trace buffers cost
    # 3.4 KiB per agent's channel: 34 MiB at 10,000 agents.
    ("grpc.enable_channelz", 0),
]


async def retrying(call: Callable[[], Awaitable[T]], attempts: int = 3, wait: float = 0.2) -> T:
    """await call() again after a transient error, a few times: for idempotent
    calls only (InjectFault with a request_id, RevertFault, ReleaseLease)."""
    # The first attempt goes straight: tenacity's machinery costs 20-27 us of
    # CPU per call (some 5 % of a fan-out's call), and nearly every call
    # succeeds at once.
    try:
        return await call()
    except grpc.RpcError as exc:
        if attempts <= 1 or not transient(exc):
            raise
    await asyncio.sleep(wait)
    async for attempt in tenacity.AsyncRetrying(
        retry=tenacity.retry_if_exception(transient),
        wait=tenacity.wait_fixed(wait),
        stop=tenacity.stop_after_attempt(attempts - 1),
        reraise=True,
    ):
        with attempt:
            return await call()
    raise AssertionError("unreachable")


class _Recorder:
    """Stands in for a channel once, to read what the generated stub asks of one."""

    def __getattr__(self, kind: str) -> Callable[..., tuple[str, str, dict[str, Any]]]:
        return lambda path, **kw: (kind, path, kw)


# Each method of the generated stub: (multicallable kind, path, its arguments).
_METHODS: dict[str, tuple[str, str, dict[str, Any]]] = dict(
    vars(pb_grpc.AgentStub(cast(grpc.Channel, _Recorder())))
)


class _LazyStub:
    """The generated stub makes a callable per method of the service for each
    channel, about 10 KiB per agent at fleet scale; this makes only those the
    controller calls on that agent, at first use. With a client given, each
    call counts as in flight on it until it ends (idle.py)."""

    def __init__(self, channel: aio.Channel, client: AsyncAgentClient | None = None) -> None:
        self._channel = channel
        self._client = client

    def __getattr__(self, name: str) -> Any:
        kind, path, kw = _METHODS[name]
        call = getattr(self._channel, kind)(path, **kw)
        if self._client is not None:
            call = _counted(kind, call, self._client)
        setattr(self, name, call)  # found directly from now on
        return call


def _counted(kind: str, multicallable: Any, client: AsyncAgentClient) -> Any:
    """The multicallable, counting its calls in client.busy while they run."""

    def ended(*_: object) -> None:
        client.busy -= 1
        client.used = time.monotonic()

    if kind == "unary_unary":

        async def unary(*args: Any, **kw: Any) -> Any:
            client.busy += 1
            try:
                return await multicallable(*args, **kw)
            finally:
                ended()

        return unary

    def streaming(*args: Any, **kw: Any) -> Any:
        call = multicallable(*args, **kw)
        client.busy += 1
        call.add_done_callback(ended)
        return call

    return streaming


class AsyncAgentClient:
    """Create on the event loop that will use it: a grpc.aio channel is bound to it.

    With `idle` (a fleet with more agents than descriptors), the channel is
    made at the first call, and closed by `idle` once no call has run on it
    for a while; the next call makes another."""

    def __init__(
        self,
        address: str,
        timeout: float = 10.0,
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
        idle: IdleChannels | None = None,
    ) -> None:
        self.address = address
        self.timeout = timeout
        self._credentials = credentials
        self._options = [*CHANNEL_OPTIONS, *options]
        self._idle = idle
        self.busy = 0  # calls and streams in flight, counted only with `idle`
        self.used = 0.0  # monotonic time the last of them ended
        self._channel: aio.Channel | None = None
        self._stub: pb_grpc.AgentAsyncStub | None = None
        if idle is None:
            self._open()

    def _open(self) -> pb_grpc.AgentAsyncStub:
        if self._credentials is None:
            channel = aio.insecure_channel(self.address, options=self._options)
        else:
            channel = aio.secure_channel(self.address, self._credentials, options=self._options)
        self._channel = channel
        counted = self if self._idle is not None else None
        self._stub = cast("pb_grpc.AgentAsyncStub", _LazyStub(channel, counted))
        if self._idle is not None:
            self.used = time.monotonic()
            self._idle.opened(self)
        return self._stub

    @property
    def stub(self) -> pb_grpc.AgentAsyncStub:
        return self._stub if self._stub is not None else self._open()

    def detach(self) -> aio.Channel | None:
        """Take the channel away, for the caller to close; the next call makes another."""
        channel, self._channel, self._stub = self._channel, None, None
        return channel

    async def close(self) -> None:
        channel = self.detach()
        if channel is not None:
            await channel.close(grace=None)

    async def info(self) -> pb.AgentInfo:
        return await self.stub.GetInfo(pb.GetInfoRequest(), timeout=self.timeout)

    async def acquire_lease(self, holder: str, ttl: float) -> pb.Lease:
        request = pb.AcquireLeaseRequest(holder=holder, ttl=to_duration(ttl))
        return await self.stub.AcquireLease(request, timeout=self.timeout)

    async def renew_lease(self, lease_id: str, timeout: float | None = None) -> pb.Lease:
        request = pb.RenewLeaseRequest(lease_id=lease_id)
        return await self.stub.RenewLease(request, timeout=timeout or self.timeout)

    async def release_lease(self, lease_id: str) -> pb.ReleaseLeaseResponse:
        request = pb.ReleaseLeaseRequest(lease_id=lease_id)
        return await self.stub.ReleaseLease(request, timeout=self.timeout)

    async def inject(
        self,
        lease_id: str,
        spec: pb.FaultSpec,
        duration: float,
        target: pb.Target | None = None,
        request_id: str = "",
        validate_only: bool = False,
        metadata: Metadata = (),
    ) -> pb.Fault:
        request = pb.InjectFaultRequest(
            lease_id=lease_id,
            spec=spec,
            duration=to_duration(duration),
            target=target or pb.Target(),
            request_id=request_id,
            validate_only=validate_only,
        )
        return await self.stub.InjectFault(request, timeout=self.timeout, metadata=metadata)

    async def list_faults(
        self, lease_id: str = "", states: list[pb.FaultState.ValueType] | None = None
    ) -> list[pb.Fault]:
        request = pb.ListFaultsRequest(lease_id=lease_id, states=states or [])
        return list((await self.stub.ListFaults(request, timeout=self.timeout)).faults)

    async def revert(self, fault_id: str, metadata: Metadata = ()) -> pb.Fault:
        request = pb.RevertFaultRequest(fault_id=fault_id)
        return await self.stub.RevertFault(request, timeout=self.timeout, metadata=metadata)

    async def get_fault(self, fault_id: str) -> pb.Fault:
        request = pb.GetFaultRequest(fault_id=fault_id)
        return await self.stub.GetFault(request, timeout=self.timeout)

    async def halt(self, latch: bool = False, reason: str = "") -> pb.HaltResponse:
        request = pb.HaltRequest(latch=latch, reason=reason)
        return await self.stub.Halt(request, timeout=self.timeout)

    async def resume(self) -> pb.ResumeResponse:
        return await self.stub.Resume(pb.ResumeRequest(), timeout=self.timeout)

    def watch(
        self, lease_id: str = "", include_existing: bool = True
    ) -> aio.UnaryStreamCall[pb.WatchFaultsRequest, pb.FaultEvent]:
        request = pb.WatchFaultsRequest(lease_id=lease_id, include_existing=include_existing)
        return self.stub.WatchFaults(request)

    def keep_leases(self) -> aio.StreamStreamCall[pb.LeaseHeartbeat, pb.LeaseStates]:
        return self.stub.KeepLeases()
