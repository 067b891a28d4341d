"""HTTP plumbing for the API: the JSON form of the service's errors (their
status from the one table in errors.py), a bounded body read, request bodies
checked against a small schema (unknown fields are refused, types are
checked), and bearer-token authorisation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from controller.service.auth import Caller, Role, Tokens
from controller.service.errors import (
    Forbidden,
    Invalid,
    ServiceError,
    TooLarge,
    Unauthenticated,
    status_of,
)
from controller.service.tls import CertRoles

MAX_BODY = 1 << 20  # 1 MiB: an experiment is a few KiB


def error_response(exc: ServiceError) -> JSONResponse:
    status = status_of(exc)
    body: dict[str, Any] = {"error": exc.message, "status": status}
    if exc.field:
        body["field"] = exc.field
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, headers=headers)


@dataclass(frozen=True)
class Field:
    type: type | tuple[type, ...]
    required: bool = False
    description: str = ""


Schema = dict[str, Field]

_JSON_TYPES = {
    str: "string",
    bool: "boolean",
    int: "integer",
    float: "number",
    dict: "object",
    list: "array",
}


def json_type(t: type | tuple[type, ...]) -> str:
    first = t[0] if isinstance(t, tuple) else t
    return _JSON_TYPES.get(first, "object")


async def read_body(request: Request) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise TooLarge(f"request body is {declared} bytes; the limit is {MAX_BODY}")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise TooLarge(f"request body is over the {MAX_BODY}-byte limit")
    return bytes(data)


async def json_body(request: Request, schema: Schema) -> dict[str, Any]:
    raw = await read_body(request)
    if not raw.strip():
        if any(f.required for f in schema.values()):
            raise Invalid("a JSON object body is required")
        return {}
    try:
        doc = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise Invalid(f"body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise Invalid(f"body must be a JSON object, not {type(doc).__name__}")
    for name in doc:
        if name not in schema:
            known = ", ".join(sorted(schema)) or "none"
            raise Invalid(f"unknown field {name!r} (known: {known})", name)
    for name, f in schema.items():
        if name not in doc:
            if f.required:
                raise Invalid(f"{name} is required", name)
            continue
        value = doc[name]
        ok = isinstance(value, f.type) and not (isinstance(value, bool) and f.type in (int, float))
        if not ok:
            raise Invalid(f"{name} must be a {json_type(f.type)}", name)
    return doc


def authorize(
    request: Request, tokens: Tokens, role: Role, certs: CertRoles | None = None
) -> Caller:
    """A bearer token (or the console's cookie) if one is sent; else, with
    mutual TLS, the client certificate's identity."""
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not header:
        token = request.cookies.get("brownout_token", "")
        if not token:
            caller = _cert_caller(request, certs)
            if caller is None:
                raise Unauthenticated(
                    "authentication required: send Authorization: Bearer TOKEN"
                    + (", or a client certificate" if certs is not None else "")
                )
            return _allowed(caller, role)
    elif scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer TOKEN'")
    found = tokens.caller(token.strip())
    if found is None:
        raise Unauthenticated("unknown or revoked token")
    return _allowed(found, role)


def _cert_caller(request: Request, certs: CertRoles | None) -> Caller | None:
    if certs is None:
        return None
    ids: list[str] = request.scope.get("state", {}).get("peer_identities") or []
    matched = certs.role_of(ids)
    if matched is None:
        if ids:
            raise Forbidden(f"client certificate {ids[0]!r} is not on the operator or viewer list")
        return None
    return Caller(matched[0], matched[1], via="cert")


def _allowed(caller: Caller, role: Role) -> Caller:
    if role is Role.OPERATOR and caller.role is not Role.OPERATOR:
        raise Forbidden(f"this needs the operator role; {caller.identity} is a viewer", caller)
    return caller
