"""The gRPC surface of a real agent: bad input, health, reflection, watch, metrics."""

from __future__ import annotations

import os
import urllib.request

import grpc
import pytest
from google.protobuf.duration_pb2 import Duration
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from brownout.v1 import agent_pb2 as pb
from tests.agentproc import AgentProc

pytestmark = pytest.mark.host

NCPU = len(os.sched_getaffinity(0))


def raw_duration(seconds: int, nanos: int = 0) -> Duration:
    return Duration(seconds=seconds, nanos=nanos)


def cpu(load: float = 20, cores: int = 1) -> pb.FaultSpec:
    return pb.FaultSpec(cpu=pb.CpuSpec(cores=cores, load_percent=load))


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    assert callable(call)
    with pytest.raises(grpc.RpcError) as err:
        call()
    return err.value.code(), err.value.details() or ""


BAD_TTLS = [
    (raw_duration(-5), "ttl: must be > 0"),
    (raw_duration(0), "ttl: is required"),
    (raw_duration(0, 100), "ttl: must be at least 1s"),
    (raw_duration(10**9), "ttl: 1e+09s exceeds this agent's limit of 300s"),
    (raw_duration(5, -3), "ttl: is not a valid duration"),
]

BAD_DURATIONS = [
    (raw_duration(-1), "duration: must be > 0"),
    (raw_duration(0), "duration: is required"),
    (raw_duration(86400 * 365), "duration: 3.1536e+07s exceeds this agent's limit of 3600s"),
    (raw_duration(0, -1), "duration: must be > 0"),
]


def test_bad_input_gets_a_named_field_and_leaves_nothing(agent: AgentProc) -> None:
    with agent.client() as c:
        stub = c.stub
        for ttl, message in BAD_TTLS:
            code, detail = code_of(
                lambda ttl=ttl: stub.AcquireLease(pb.AcquireLeaseRequest(holder="t", ttl=ttl))
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (ttl, detail)
            assert detail.startswith(message), detail

        lease = c.acquire_lease("test", 30)
        for dur, message in BAD_DURATIONS:
            code, detail = code_of(
                lambda dur=dur: stub.InjectFault(
                    pb.InjectFaultRequest(lease_id=lease.lease_id, spec=cpu(), duration=dur)
                )
            )
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (dur, detail)
            assert detail.startswith(message), detail

        cases = [
            (cpu(load=0), grpc.StatusCode.INVALID_ARGUMENT, "cpu.load_percent: must be between"),
            (cpu(load=101), grpc.StatusCode.INVALID_ARGUMENT, "cpu.load_percent: must be between"),
            (
                cpu(load=float("nan")),
                grpc.StatusCode.INVALID_ARGUMENT,
                "cpu.load_percent: must be a finite number",
            ),
            (
                cpu(cores=NCPU + 1),
                grpc.StatusCode.INVALID_ARGUMENT,
                f"cpu.cores: {NCPU + 1} exceeds the {NCPU} CPUs",
            ),
            (pb.FaultSpec(), grpc.StatusCode.INVALID_ARGUMENT, "spec: no fault kind set"),
        ]
        for spec, want, message in cases:
            code, detail = code_of(lambda spec=spec: c.inject(lease.lease_id, spec, 10))
            assert (code, detail[: len(message)]) == (want, message), detail

        code, detail = code_of(lambda: c.inject("lease-nope", cpu(), 10))
        assert code == grpc.StatusCode.NOT_FOUND and "lease 'lease-nope'" in detail
        code, detail = code_of(lambda: c.inject("", cpu(), 10))
        assert code == grpc.StatusCode.INVALID_ARGUMENT and detail.startswith("lease_id:")
        code, detail = code_of(lambda: c.revert("fault-nope"))
        assert code == grpc.StatusCode.NOT_FOUND and "fault 'fault-nope'" in detail
        code, detail = code_of(lambda: c.renew_lease("lease-nope"))
        assert code == grpc.StatusCode.NOT_FOUND
        code, detail = code_of(lambda: c.release_lease("lease-nope"))
        assert code == grpc.StatusCode.NOT_FOUND

        # Still up, and nothing was left anywhere.
        assert c.info().active_faults == 0
        assert c.list_faults() == []
        assert agent.journal_files() == []
        assert agent.marked_processes() == []
        c.release_lease(lease.lease_id)


def test_halt_latch_and_resume(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, cpu(), 60)
        resp = c.halt(latch=True, reason="incident 42")
        assert resp.latched
        assert [(f.id, f.end_reason) for f in resp.faults] == [(fault.id, pb.END_REASON_HALT)]
        assert c.info().halted
        code, detail = code_of(lambda: c.inject(lease.lease_id, cpu(), 10))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "Resume" in detail
        assert c.resume().was_latched
        again = c.inject(lease.lease_id, cpu(), 10)
        assert again.state == pb.FAULT_STATE_ACTIVE
        c.release_lease(lease.lease_id)


def test_health_serving_and_reflection_lists_the_service(agent: AgentProc) -> None:
    with grpc.insecure_channel(agent.address) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for service in ("", "brownout.v1.Agent"):
            resp = health.Check(  # type: ignore[attr-defined]  # stub lacks methods
                health_pb2.HealthCheckRequest(service=service), timeout=5
            )
            assert resp.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        responses = refl.ServerReflectionInfo(  # type: ignore[operator]  # untyped stub
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5
        )
        names = {s.name for r in responses for s in r.list_services_response.service}
        assert {"brownout.v1.Agent", "grpc.health.v1.Health"} <= names


def test_info_reports_identity_capabilities_and_limits(agent: AgentProc) -> None:
    with agent.client() as c:
        info = c.info()
    assert info.version and info.hostname
    assert len(info.boot_id) == 36
    assert info.cpu_count == NCPU
    caps = {pb.FaultKind.Name(cap.kind): cap for cap in info.capabilities}
    assert caps["FAULT_KIND_CPU"].available
    assert len(caps) == len(pb.FaultKind.values()) - 1
    assert all(cap.available or cap.reason for cap in caps.values())
    assert info.limits.max_fault_duration.seconds == 3600
    assert info.limits.max_lease_ttl.seconds == 300


def test_watch_streams_every_state_change(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        stream = c.stub.WatchFaults(pb.WatchFaultsRequest(lease_id=lease.lease_id), timeout=20)
        stream.initial_metadata()  # the watch is registered
        fault = c.inject(lease.lease_id, cpu(), 60)
        c.revert(fault.id)
        states = []
        for event in stream:
            assert event.fault.id == fault.id
            states.append(event.fault.state)
            if event.fault.state == pb.FAULT_STATE_REVERTED:
                break
        stream.cancel()
        assert states == [
            pb.FAULT_STATE_PENDING,
            pb.FAULT_STATE_ACTIVE,
            pb.FAULT_STATE_REVERTING,
            pb.FAULT_STATE_REVERTED,
        ]
        c.release_lease(lease.lease_id)


def test_metrics_count_faults_reverts_and_leases(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("test", 30)
        fault = c.inject(lease.lease_id, cpu(), 60)
        body = scrape(agent)
        assert 'brownout_faults_active{kind="cpu"} 1.0' in body
        assert "brownout_leases_active 1.0" in body
        c.revert(fault.id)
        c.release_lease(lease.lease_id)
    body = scrape(agent)
    assert 'brownout_faults_active{kind="cpu"} 0.0' in body
    assert 'brownout_faults_total{kind="cpu",result="applied"} 1.0' in body
    assert 'brownout_fault_reverts_total{kind="cpu",reason="client_revert"} 1.0' in body
    assert 'brownout_rpc_duration_seconds_count{method="InjectFault"} 1.0' in body
    assert 'brownout_audit_events_total{code="OK",method="InjectFault"} 1.0' in body
    assert 'brownout_fault_overdue_seconds{kind="cpu"} 0.0' in body
    assert "process_resident_memory_bytes" in body


def scrape(agent: AgentProc) -> str:
    url = f"http://127.0.0.1:{agent.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as resp:
        return str(resp.read().decode())


def test_every_mutating_call_is_audited_with_the_caller(agent: AgentProc) -> None:
    with agent.client() as c:
        lease = c.acquire_lease("auditor", 30)
        fault = c.inject(lease.lease_id, cpu(), 60)
        c.revert(fault.id)
        code_of(lambda: c.inject(lease.lease_id, cpu(load=500), 10))
        c.release_lease(lease.lease_id)
    audits = [e for e in agent.log_events() if e.get("event") == "audit"]
    methods = [(e["method"], e["result"]) for e in audits]
    assert methods == [
        ("AcquireLease", "OK"),
        ("InjectFault", "OK"),
        ("RevertFault", "OK"),
        ("InjectFault", "INVALID_ARGUMENT"),
        ("ReleaseLease", "OK"),
    ]
    for e in audits:
        assert str(e["caller"]).startswith("ipv4:127.0.0.1:")
        assert e["lease_id"] == lease.lease_id
    assert audits[1]["fault_id"] == fault.id and audits[2]["fault_id"] == fault.id
    assert "load_percent: 500" in str(audits[3]["spec"])
