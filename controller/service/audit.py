"""One audit line per mutating request, from the API or the console: who
(token name and role, or the peer when unauthenticated), what, and the result."""

from __future__ import annotations

import structlog
from starlette.requests import Request

from controller.service.auth import Caller

audit_log = structlog.get_logger("audit")


def peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def audit(caller: Caller | None, request: Request, result: int, via: str) -> None:
    audit_log.info(
        "audit",
        caller=caller.identity if caller else peer(request),
        role=str(caller.role) if caller else "",
        method=request.method,
        path=request.url.path,
        result=result,
        via=via,
    )
