"""The tests' own client for checking an agent from outside: a typed, blocking
wrapper over the generated gRPC stub. The controller talks to agents only
through its async fleet (controller/agents); tests that call an agent
directly, from plain threads, use this."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from brownout.units import to_duration
from brownout.v1 import agent_pb2 as pb
from brownout.v1 import agent_pb2_grpc as pb_grpc
from controller.agents.tls import ClientTls


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
        validate_only: bool = False,
    ) -> pb.Fault:
        return self.stub.InjectFault(
            pb.InjectFaultRequest(
                lease_id=lease_id,
                spec=spec,
                duration=to_duration(duration),
                target=target or pb.Target(),
                request_id=request_id,
                validate_only=validate_only,
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
