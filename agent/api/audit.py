"""The audit log: one `audit` line for every mutating call, with the caller's
identity (its TLS identity when there is one, else its address), the method,
the lease and fault ids, a summary of the request and the result code;
counted in brownout_audit_events_total{method,code}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import structlog
from google.protobuf.message import Message

from agent.api.authz import peer_identities
from agent.core.metrics import Metrics
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger("audit")


def caller_identity(context: grpc.ServicerContext) -> str:
    """The TLS identity when there is one (SAN, then CN), else the peer address."""
    identities = peer_identities(context)
    return identities[0] if identities else str(context.peer())


def summary(request: Message) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("lease_id", "fault_id", "holder", "request_id", "reason", "latch"):
        if name in request.DESCRIPTOR.fields_by_name:
            value = getattr(request, name)
            if value:
                out[name] = value
    if isinstance(request, pb.InjectFaultRequest):
        kind = request.spec.WhichOneof("spec")
        out["kind"] = kind
        if kind:
            out["spec"] = str(getattr(request.spec, kind)).replace("\n", " ").strip()
        out["duration_s"] = request.duration.ToNanoseconds() / 1e9
        selector = request.target.WhichOneof("selector")
        if selector:
            out["target"] = f"{selector}={getattr(request.target, selector)}"
    if isinstance(request, pb.AcquireLeaseRequest):
        out["ttl_s"] = request.ttl.ToNanoseconds() / 1e9
    return out


def denied_auditor(metrics: Metrics) -> Callable[[str, str, grpc.StatusCode, str], None]:
    """Audit calls the authorisation layer refused, like any other call."""

    def audit_denied(method: str, caller: str, code: grpc.StatusCode, detail: str) -> None:
        log.warning("audit", caller=caller, method=method, result=code.name, detail=detail)
        metrics.audit_total.labels(method, code.name).inc()

    return audit_denied


def audit(
    metrics: Metrics,
    method: str,
    request: Message,
    result: object,
    context: grpc.ServicerContext,
    code: grpc.StatusCode,
    detail: str,
) -> None:
    fields = summary(request)
    if isinstance(result, pb.Fault):
        fields["fault_id"] = result.id
        fields["lease_id"] = result.lease_id
    elif isinstance(result, pb.Lease):
        fields["lease_id"] = result.lease_id
    log.info(
        "audit",
        caller=caller_identity(context),
        method=method,
        result=code.name,
        detail=detail,
        **fields,
    )
    metrics.audit_total.labels(method, code.name).inc()
