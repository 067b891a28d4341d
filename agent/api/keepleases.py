"""KeepLeases: one long-lived stream per holder renews all its leases on this
agent, one LeaseHeartbeat every TTL/3 answered by one LeaseStates.

Only a heartbeat renews. The stream being open, or HTTP/2 pings on it, renew
nothing, so a holder that is wedged (alive but not sending) loses its leases
at TTL like one that died. A stream that breaks reverts nothing: the leases
simply stop being renewed, and a holder that reconnects within the TTL keeps
its faults.

Audit: renewing is the same act as RenewLease, but one line per heartbeat at
fleet scale would drown the log. The stream is audited when it opens and
when it ends (with the caller, the leases it kept and the heartbeat count),
and every lease it names that is not live is audited as it is answered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import grpc
import structlog

from agent.api.audit import caller_identity
from agent.api.convert import duration
from agent.api.streams import StreamSlots
from agent.core.errors import NotFound
from agent.core.manager import FaultManager
from agent.core.metrics import Metrics
from brownout.v1 import agent_pb2 as pb

log = structlog.get_logger("audit")

MAX_LEASES_PER_HEARTBEAT = 64
MAX_LEASE_ID_CHARS = 128
METHOD = "KeepLeases"


def _check(hb: pb.LeaseHeartbeat) -> str:
    if len(hb.lease_ids) > MAX_LEASES_PER_HEARTBEAT:
        return (
            f"lease_ids: at most {MAX_LEASES_PER_HEARTBEAT} leases per heartbeat,"
            f" got {len(hb.lease_ids)}"
        )
    for i, lease_id in enumerate(hb.lease_ids):
        if not lease_id or len(lease_id) > MAX_LEASE_ID_CHARS:
            return f"lease_ids[{i}]: must be 1-{MAX_LEASE_ID_CHARS} characters"
    return ""


class LeaseKeeping:
    def __init__(self, manager: FaultManager, metrics: Metrics, slots: StreamSlots) -> None:
        self._manager = manager
        self._metrics = metrics
        self._slots = slots

    def _state(self, lease_id: str, peer: str) -> pb.LeaseState:
        try:
            lease = self._manager.renew_lease(lease_id, peer=peer)
        except NotFound as exc:
            return pb.LeaseState(lease_id=lease_id, live=False, reason=str(exc))
        remaining = max(0.0, lease.deadline - time.monotonic())
        return pb.LeaseState(lease_id=lease_id, live=True, remaining=duration(remaining))

    def serve(
        self, heartbeats: Iterator[pb.LeaseHeartbeat], context: grpc.ServicerContext
    ) -> Iterator[pb.LeaseStates]:
        self._slots.take(context)
        caller, peer = caller_identity(context), context.peer()
        kept: set[str] = set()
        gone: set[str] = set()
        count, code, detail = 0, grpc.StatusCode.OK, ""
        log.info("audit", caller=caller, method=METHOD, result="OK", detail="stream opened")
        try:
            for hb in heartbeats:
                start = time.perf_counter()
                problem = _check(hb)
                if problem:
                    code, detail = grpc.StatusCode.INVALID_ARGUMENT, problem
                    context.abort(code, problem)
                count += 1
                states = [self._state(lease_id, peer) for lease_id in hb.lease_ids]
                for s in states:
                    if s.live:
                        kept.add(s.lease_id)
                    elif s.lease_id not in gone:
                        gone.add(s.lease_id)
                        self._audit_gone(caller, s)
                self._metrics.rpc_duration_seconds.labels(METHOD).observe(
                    time.perf_counter() - start
                )
                yield pb.LeaseStates(seq=hb.seq, leases=states)
        except grpc.RpcError:
            code, detail = grpc.StatusCode.CANCELLED, "stream broken"
            raise
        finally:
            self._slots.give()
            log.info(
                "audit",
                caller=caller,
                method=METHOD,
                result=code.name,
                detail=detail or "stream ended",
                heartbeats=count,
                lease_ids=sorted(kept),
            )
            self._metrics.audit_total.labels(METHOD, code.name).inc()

    def _audit_gone(self, caller: str, state: pb.LeaseState) -> None:
        log.info(
            "audit",
            caller=caller,
            method=METHOD,
            result=grpc.StatusCode.NOT_FOUND.name,
            detail=state.reason,
            lease_id=state.lease_id,
        )
        self._metrics.audit_total.labels(METHOD, grpc.StatusCode.NOT_FOUND.name).inc()
