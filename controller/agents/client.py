"""A typed wrapper over the generated gRPC stub for one agent, and the retry
rule for its idempotent calls."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TypeVar

import grpc
import tenacity

from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb
from brownout.v1 import agent_pb2_grpc as pb_grpc
from controller.agents.tls import ClientTls

T = TypeVar("T")
# Worth another try: the agent was not reached, or did not answer in time.
TRANSIENT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})


def transient(exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) and exc.code() in TRANSIENT


def retrying(call: Callable[[], T], attempts: int = 3, wait: float = 0.2) -> T:
    """call() again after a transient error, a few times: for idempotent calls
    only (lease renewal, InjectFault with a request_id, RevertFault, release)."""
    for attempt in tenacity.Retrying(
        retry=tenacity.retry_if_exception(transient),
        wait=tenacity.wait_fixed(wait),
        stop=tenacity.stop_after_attempt(attempts),
        reraise=True,
    ):
        with attempt:
            return call()
    raise AssertionError("unreachable")


def rpc_error(exc: grpc.RpcError) -> str:
    code = exc.code()
    return f"{code.name if code else 'UNKNOWN'}: {exc.details()}"


class AgentClient:
    def __init__(self, address: str, timeout: float = 10.0, tls: ClientTls | None = None) -> None:
        self.address = address
        self.timeout = timeout
        if tls is None:
            self._channel = grpc.insecure_channel(address)
        else:
            self._channel = grpc.secure_channel(address, tls.credentials(), tls.options())
        self.stub = pb_grpc.AgentStub(self._channel)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> AgentClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def info(self) -> pb.AgentInfo:
        return self.stub.GetInfo(pb.GetInfoRequest(), timeout=self.timeout)

    def acquire_lease(self, holder: str, ttl: float) -> pb.Lease:
        return self.stub.AcquireLease(
            pb.AcquireLeaseRequest(holder=holder, ttl=to_duration(ttl)), timeout=self.timeout
        )

    def renew_lease(self, lease_id: str, timeout: float | None = None) -> pb.Lease:
        return self.stub.RenewLease(
            pb.RenewLeaseRequest(lease_id=lease_id), timeout=timeout or self.timeout
        )

    def release_lease(self, lease_id: str) -> pb.ReleaseLeaseResponse:
        return self.stub.ReleaseLease(
            pb.ReleaseLeaseRequest(lease_id=lease_id), timeout=self.timeout
        )

    def inject(
        self,
        lease_id: str,
        spec: pb.FaultSpec,
        duration: float,
        target: pb.Target | None = None,
        request_id: str = "",
    ) -> pb.Fault:
        return self.stub.InjectFault(
            pb.InjectFaultRequest(
                lease_id=lease_id,
                spec=spec,
                duration=to_duration(duration),
                target=target or pb.Target(),
                request_id=request_id,
            ),
            timeout=self.timeout,
        )

    def revert(self, fault_id: str) -> pb.Fault:
        return self.stub.RevertFault(pb.RevertFaultRequest(fault_id=fault_id), timeout=self.timeout)

    def get_fault(self, fault_id: str) -> pb.Fault:
        return self.stub.GetFault(pb.GetFaultRequest(fault_id=fault_id), timeout=self.timeout)

    def list_faults(
        self, lease_id: str = "", states: list[pb.FaultState.ValueType] | None = None
    ) -> list[pb.Fault]:
        resp = self.stub.ListFaults(
            pb.ListFaultsRequest(lease_id=lease_id, states=states or []), timeout=self.timeout
        )
        return list(resp.faults)

    def halt(self, latch: bool = False, reason: str = "") -> pb.HaltResponse:
        return self.stub.Halt(pb.HaltRequest(latch=latch, reason=reason), timeout=self.timeout)

    def resume(self) -> pb.ResumeResponse:
        return self.stub.Resume(pb.ResumeRequest(), timeout=self.timeout)

    def watch(self, lease_id: str = "", include_existing: bool = True) -> Iterator[pb.FaultEvent]:
        return iter(
            self.stub.WatchFaults(
                pb.WatchFaultsRequest(lease_id=lease_id, include_existing=include_existing)
            )
        )
