"""The JSON API of `brownout serve`, under /api/v1, described at
/api/v1/openapi.json. One table (OPS) names every operation: its method and
path, the role it needs, its body schema and its handler; the routes and the
OpenAPI document are both made from it.

Every error is a 4xx (or 5xx) JSON object {"error", "status", "field"?}.
Every mutating call is audited (one `audit` log line with the caller).
Blocking work (SQLite, agent calls, probes) runs on worker threads.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import structlog
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from controller.errors import ConfigError
from controller.experiments import parse as exp
from controller.experiments.history import NotFound
from controller.experiments.model import Experiment
from controller.service.auth import Caller, Role
from controller.service.http import ApiError, Field, Schema, authorize, json_body, json_type
from controller.service.runs import Refused
from controller.service.state import Service

audit_log = structlog.get_logger("audit")

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
Handler = Callable[[Service, Request, Caller, dict[str, Any]], Awaitable[Response | dict[str, Any]]]


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    role: Role
    summary: str
    handler: Handler
    body: Schema | None = None

    @property
    def mutating(self) -> bool:
        return self.method != "GET"


def _name(request: Request) -> str:
    name = str(request.path_params["name"])
    if not NAME.fullmatch(name):
        raise ApiError(
            400, "name must be 1-64 of a-z 0-9 . _ - starting with a letter or digit", "name"
        )
    return name


def _experiment(doc: Any, where: str = "experiment") -> Experiment:
    try:
        return exp.parse(doc, where)
    except ConfigError as exc:
        raise ApiError(400, str(exc), exc.where) from None


# ----------------------------------------------------------------- fleet


async def fleet(svc: Service, request: Request, caller: Caller, body: dict[str, Any]) -> Any:
    return {"agents": await asyncio.to_thread(svc.fleet_status)}


# ----------------------------------------------------------- experiments


async def list_experiments(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    items = await asyncio.to_thread(svc.store.experiments)
    return {"experiments": [e.summary() for e in items]}


async def put_experiment(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    e = _experiment(body["experiment"])
    await asyncio.to_thread(
        svc.store.put_experiment, name, e.title, body["experiment"], caller.identity
    )
    return {"name": name, "title": e.title, "valid": True}


async def get_experiment(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    stored = await asyncio.to_thread(svc.store.experiment, name)
    if stored is None:
        raise ApiError(404, f"no stored experiment {name!r}", "name")
    return {**stored.summary(), "experiment": stored.doc}


async def delete_experiment(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    if not await asyncio.to_thread(svc.store.delete_experiment, name):
        raise ApiError(404, f"no stored experiment {name!r}", "name")
    return {"name": name, "deleted": True}


async def validate(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    e = _experiment(body["experiment"])
    return {"valid": True, "title": e.title}


async def dry_run(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    e = svc.resolve_experiment(_name(request))
    return await asyncio.to_thread(svc.dry_run, e)


# ------------------------------------------------------------------ runs


async def start_run(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    e = svc.resolve_experiment(body["experiment"])
    seed = body.get("seed")
    if seed is not None and not 0 <= seed < 2**63:
        raise ApiError(400, "seed must be 0 to 2**63-1", "seed")
    try:
        run = await asyncio.to_thread(
            svc.runs.start, e, caller.identity, seed, bool(body.get("override_window"))
        )
    except Refused as exc:
        raise ApiError(409, str(exc)) from None
    return JSONResponse(
        {"run_id": run.run_id, "title": run.title, "url": f"/api/v1/runs/{run.run_id}"},
        status_code=202,
    )


async def list_runs(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    limit = _int_query(request, "limit", 20, 1, 1000)
    return {"runs": await asyncio.to_thread(svc.run_list, limit)}


async def get_run(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    run_id = str(request.path_params["run_id"])
    try:
        return await asyncio.to_thread(svc.run_journal, run_id)
    except NotFound as exc:
        raise ApiError(404, str(exc), "run_id") from None


async def abort_run(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    run_id = str(request.path_params["run_id"])
    if svc.runs.get(run_id) is None:
        raise ApiError(404, f"no live run {run_id!r} on this controller", "run_id")
    reason = f"aborted by {caller.identity}: {body.get('reason') or 'no reason given'}"
    if not svc.runs.abort(run_id, reason):
        raise ApiError(409, f"run {run_id!r} is already ending")
    return {"run_id": run_id, "aborting": True, "reason": reason}


async def run_events(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    run_id = str(request.path_params["run_id"])
    run = svc.runs.get(run_id)
    if run is None:
        raise ApiError(404, f"no run {run_id!r} started by this controller process", "run_id")
    after = _int_query(request, "after", 0, 0, 2**62)

    async def stream() -> AsyncIterator[str]:
        backlog, q = run.events.subscribe(after)
        try:
            for e in backlog:
                yield f"id: {e.seq}\ndata: {json.dumps(e.as_dict())}\n\n"
            while True:
                try:
                    item = await asyncio.wait_for(q.get(), 15)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if item is None:
                    status = run.journal()["status"]
                    yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                    return
                yield f"id: {item.seq}\ndata: {json.dumps(item.as_dict())}\n\n"
        finally:
            run.events.unsubscribe(q)

    return StreamingResponse(
        stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


async def history(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    limit = _int_query(request, "limit", 20, 1, 100_000)
    status = request.query_params.get("status") or None
    runs = await asyncio.to_thread(svc.history.runs, limit, status)
    return {"runs": [r.__dict__ for r in runs]}


# ----------------------------------------------------------- kill switch


async def kill_switch(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    return svc.lever.state().as_dict()


async def set_kill_switch(svc: Service, request: Request, caller: Caller, body: Any) -> Any:
    if body["engaged"]:
        reason = str(body.get("reason", "")).strip()
        if not reason:
            raise ApiError(400, "reason is required to engage the kill switch", "reason")
        return await asyncio.to_thread(svc.lever.engage, reason, caller.identity)
    return await asyncio.to_thread(svc.lever.disengage, caller.identity)


def _int_query(request: Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ApiError(400, f"{name} must be an integer from {lo} to {hi}", name)
    return int(raw)


EXPERIMENT = Field((dict,), True, "the experiment document (as its YAML/JSON file holds it)")
OPS: list[Op] = [
    Op("GET", "/fleet", Role.VIEWER, "Every agent of the inventory with its GetInfo", fleet),
    Op("GET", "/experiments", Role.VIEWER, "Stored experiments", list_experiments),
    Op(
        "POST",
        "/experiments/validate",
        Role.VIEWER,
        "Validate an experiment, store nothing",
        validate,
        {"experiment": EXPERIMENT},
    ),
    Op(
        "PUT",
        "/experiments/{name}",
        Role.OPERATOR,
        "Validate and store an experiment",
        put_experiment,
        {"experiment": EXPERIMENT},
    ),
    Op("GET", "/experiments/{name}", Role.VIEWER, "One stored experiment", get_experiment),
    Op(
        "DELETE",
        "/experiments/{name}",
        Role.OPERATOR,
        "Forget a stored experiment",
        delete_experiment,
    ),
    Op(
        "POST",
        "/experiments/{name}/dry-run",
        Role.OPERATOR,
        "Resolve targets, check the agents, run the before-hypothesis; inject nothing",
        dry_run,
    ),
    Op(
        "POST",
        "/runs",
        Role.OPERATOR,
        "Start a run of a stored (by name) or inline experiment",
        start_run,
        {
            "experiment": Field((str, dict), True, "a stored experiment's name, or a document"),
            "seed": Field((int,), False, "seed for the random target pick"),
            "override_window": Field((bool,), False, "run outside the experiment's window"),
        },
    ),
    Op(
        "GET",
        "/runs",
        Role.VIEWER,
        "This controller's runs, newest first, then the history",
        list_runs,
    ),
    Op("GET", "/runs/{run_id}", Role.VIEWER, "A run's journal (live while it runs)", get_run),
    Op(
        "POST",
        "/runs/{run_id}/abort",
        Role.OPERATOR,
        "Abort a live run: revert everything",
        abort_run,
        {"reason": Field((str,), False, "recorded in the journal")},
    ),
    Op(
        "GET",
        "/runs/{run_id}/events",
        Role.VIEWER,
        "The run's progress as server-sent events (ends with event: end)",
        run_events,
    ),
    Op("GET", "/history", Role.VIEWER, "Past runs from the history", history),
    Op("GET", "/kill-switch", Role.VIEWER, "Whether the kill switch is engaged", kill_switch),
    Op(
        "POST",
        "/kill-switch",
        Role.OPERATOR,
        "Engage (reverts every fault on every agent, latched; aborts every run) or disengage",
        set_kill_switch,
        {
            "engaged": Field((bool,), True, "true to engage, false to disengage"),
            "reason": Field((str,), False, "required to engage"),
        },
    ),
]


def endpoint(svc: Service, op: Op) -> Callable[[Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        caller: Caller | None = None
        status = 500
        try:
            caller = authorize(request, svc.tokens, op.role)
            body = await json_body(request, op.body) if op.body is not None else {}
            result = await op.handler(svc, request, caller, body)
            response = result if isinstance(result, Response) else JSONResponse(result)
        except ApiError as exc:
            response = exc.response()
        status = response.status_code
        if op.mutating:
            audit_log.info(
                "audit",
                caller=caller.identity if caller else _peer(request),
                role=str(caller.role) if caller else "",
                method=op.method,
                path=request.url.path,
                result=status,
            )
        return response

    return call


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "unknown"


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        entry: dict[str, Any] = {
            "summary": op.summary,
            "security": [{"bearer": []}],
            "x-brownout-role": str(op.role),
            "responses": {
                "200": {"description": "OK (JSON)"},
                "4XX": {"description": "JSON {error, status, field?}"},
            },
        }
        if op.body:
            props = {
                n: {"type": json_type(f.type), "description": f.description}
                for n, f in op.body.items()
            }
            required = [n for n, f in op.body.items() if f.required]
            entry["requestBody"] = {
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": props,
                            "required": required,
                            "additionalProperties": False,
                        }
                    }
                }
            }
        paths.setdefault(f"/api/v1{op.path}", {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Brownout controller", "version": "v1"},
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "paths": paths,
    }


def routes(svc: Service) -> list[Route]:
    table = [Route(f"/api/v1{op.path}", endpoint(svc, op), methods=[op.method]) for op in OPS]
    doc = openapi()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "kill_switch": svc.lever.state().engaged})

    return [*table, Route("/api/v1/openapi.json", openapi_json), Route("/healthz", healthz)]
