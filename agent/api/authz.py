"""Authorisation by client-certificate identity: viewers read, operators act.

Identities are matched exactly against the certificate's SANs (URI, DNS) and
its CN. The check wraps every handler, so no method escapes it; health checks
are open to any authenticated client so probes need no role.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import grpc

AGENT = "/brownout.v1.Agent/"
VIEWER_METHODS = frozenset(
    AGENT + m for m in ("GetInfo", "ListFaults", "GetFault", "WatchFaults")
) | frozenset(
    {
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    }
)
OPEN_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


class Role(StrEnum):
    VIEWER = "viewer"
    OPERATOR = "operator"


@dataclass(frozen=True)
class Allowlist:
    operators: frozenset[str]
    viewers: frozenset[str]

    def role_of(self, identities: Iterable[str]) -> Role | None:
        ids = set(identities)
        if ids & self.operators:
            return Role.OPERATOR
        if ids & self.viewers:
            return Role.VIEWER
        return None


def peer_identities(context: grpc.ServicerContext) -> list[str]:
    """SANs then CN of the verified client certificate; empty without TLS."""
    auth: dict[str, list[bytes]] = dict(context.auth_context())  # type: ignore[arg-type]
    out: list[str] = []
    for key in (
        "x509_subject_alternative_name",
        "x509_uri_subject_alternative_name",
        "x509_dns_subject_alternative_name",
        "x509_common_name",
    ):
        for value in auth.get(key, []):
            text = value.decode(errors="replace")
            if text not in out:
                out.append(text)
    return out


def decide(
    method: str, identities: list[str], allow: Allowlist
) -> tuple[grpc.StatusCode, str] | None:
    """None if allowed, else the status and an actionable message."""
    if not identities:
        return grpc.StatusCode.UNAUTHENTICATED, "a verified client certificate is required"
    if method in OPEN_METHODS:
        return None
    role = allow.role_of(identities)
    if role is None:
        return (
            grpc.StatusCode.PERMISSION_DENIED,
            f"identity {identities[0]!r} is not in this agent's allowlist"
            " (--operators / --viewers)",
        )
    if role is Role.OPERATOR or method in VIEWER_METHODS:
        return None
    return (
        grpc.StatusCode.PERMISSION_DENIED,
        f"{method.rsplit('/', 1)[-1]} needs the operator role; identity {identities[0]!r}"
        " is a viewer",
    )


# Called with (method, identity or peer, status, detail) for every refused call.
OnDenied = Callable[[str, str, grpc.StatusCode, str], None]


def _guard(
    behavior: Callable[..., Any], method: str, allow: Allowlist, on_denied: OnDenied
) -> Callable[..., Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        identities = peer_identities(context)
        denied = decide(method, identities, allow)
        if denied is not None:
            who = identities[0] if identities else str(context.peer())
            on_denied(method.rsplit("/", 1)[-1], who, *denied)
            context.abort(*denied)
        return behavior(request, context)

    return guarded


class AuthzInterceptor(grpc.ServerInterceptor):
    def __init__(self, allow: Allowlist, on_denied: OnDenied) -> None:
        self._allow = allow
        self._on_denied = on_denied

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler[Any, Any] | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method
        wrap: dict[str, Callable[..., grpc.RpcMethodHandler[Any, Any]]] = {
            "unary_unary": grpc.unary_unary_rpc_method_handler,
            "unary_stream": grpc.unary_stream_rpc_method_handler,
            "stream_unary": grpc.stream_unary_rpc_method_handler,
            "stream_stream": grpc.stream_stream_rpc_method_handler,
        }
        for kind, make in wrap.items():
            behavior = getattr(handler, kind)
            if behavior is not None:
                return make(
                    _guard(behavior, method, self._allow, self._on_denied),
                    request_deserializer=handler.request_deserializer,
                    response_serializer=handler.response_serializer,
                )
        return handler
