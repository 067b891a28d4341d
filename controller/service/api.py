"""The JSON API of `brownout serve`, under /api/v1, described at
/api/v1/openapi.json. One table (OPS) names every operation: its method and
path, the role it needs, its body schema and its handler; the routes and the
OpenAPI document are both made from it.

The handlers are thin: each reads its input and calls the one operations
layer (operations.py), which the console calls too. Every error is a 4xx JSON
object {"error", "status", "field"?}, its status from errors.py's table; a
body, query parameter or path parameter the operation does not take is an
error too. Every mutating call is audited (one `audit` log line with the
caller). Blocking work runs on worker threads, never on the loop.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from controller.experiments.records import RunStatus
from controller.practice.maturity import WINDOW_DAYS
from controller.service.audit import audit
from controller.service.auth import Caller, Role
from controller.service.errors import Forbidden, Invalid, ServiceError
from controller.service.fleet_view import STATES as FLEET_STATES
from controller.service.gameday_ops import GameDayOps
from controller.service.http import (
    Field,
    Schema,
    authorize,
    error_response,
    json_body,
    json_type,
    read_body,
)
from controller.service.monkey_ops import MonkeyOps
from controller.service.operations import NAME, SEED_MAX, Operations, check_name
from controller.service.state import Service

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
Handler = Callable[[Operations, Request, Caller, dict[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class Query:
    name: str
    default: int
    lo: int
    hi: int
    description: str


@dataclass(frozen=True)
class Op:
    method: str
    path: str
    role: Role
    summary: str
    handler: Handler
    body: Schema | None = None
    queries: tuple[Query, ...] = ()
    status: int = 200  # the success status
    errors: tuple[int, ...] = ()  # 4xx this operation may answer beyond 400/401/403

    @property
    def mutating(self) -> bool:
        return self.method != "GET"

    @property
    def path_params(self) -> list[str]:
        return re.findall(r"{(\w+)}", self.path)


def _name(request: Request) -> str:
    return check_name(str(request.path_params["name"]))


def _run_id(request: Request) -> str:
    run_id = str(request.path_params["run_id"])
    if not RUN_ID.fullmatch(run_id):
        raise Invalid(f"run_id must be 1-64 of A-Z a-z 0-9 . _ -, got {run_id[:80]!r}", "run_id")
    return run_id


def _gameday_id(request: Request) -> str:
    gid = str(request.path_params["gameday_id"])
    if not RUN_ID.fullmatch(gid):
        raise Invalid(
            f"gameday_id must be 1-64 of A-Z a-z 0-9 . _ -, got {gid[:80]!r}", "gameday_id"
        )
    return gid


def _query(request: Request, op: Op, name: str) -> int:
    q = next(q for q in op.queries if q.name == name)
    raw = request.query_params.get(name)
    if raw is None:
        return q.default
    if not raw.isdigit() or not q.lo <= int(raw) <= q.hi:
        raise Invalid(f"{name} must be an integer from {q.lo} to {q.hi}, got {raw[:40]!r}", name)
    return int(raw)


# ----------------------------------------------------------------- fleet


async def fleet(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    state = request.query_params.get("state", "")  # checked by ops.fleet
    page, per_page = _query(request, OP["fleet"], "page"), _query(request, OP["fleet"], "per_page")
    return await ops.fleet(request.query_params.get("selector", ""), state, page, per_page)


async def replicas(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.replicas()


# ----------------------------------------------------------- experiments


async def list_experiments(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return {"experiments": [e.summary() for e in await ops.experiments()]}


async def put_experiment(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    e = await ops.put_experiment(name, body["experiment"], caller.identity)
    return {"name": name, "title": e.title, "valid": True}


async def get_experiment(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    stored = await ops.experiment(_name(request))
    return {**stored.summary(), "experiment": stored.doc}


async def delete_experiment(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    await ops.delete_experiment(name)
    return {"name": name, "deleted": True}


async def validate(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    e = await ops.validate(body["experiment"])
    return {"valid": True, "title": e.title}


async def dry_run(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.dry_run(_name(request))


# ------------------------------------------------------------------ runs


async def start_run(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    run = await ops.start(
        body["experiment"], caller.identity, body.get("seed"), bool(body.get("override_window"))
    )
    return {"run_id": run.run_id, "title": run.title, "url": f"/api/v1/runs/{run.run_id}"}


async def list_runs(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return {"runs": await ops.runs(_query(request, OP["list_runs"], "limit"))}


async def get_run(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.journal(_run_id(request))


async def abort_run(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    run_id = _run_id(request)
    reason = await ops.abort(run_id, caller.identity, str(body.get("reason") or ""))
    return {"run_id": run_id, "aborting": True, "reason": reason}


async def run_report(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return (await ops.report(_run_id(request))).as_dict()


async def note_run(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.note(_run_id(request), str(body["text"]), caller.identity)


async def run_events(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    after = _query(request, OP["run_events"], "after")
    run = ops.live_run(_run_id(request))

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


STATUSES = tuple(str(s) for s in RunStatus)


async def history(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    limit = _query(request, OP["history"], "limit")
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise Invalid(f"status must be one of {', '.join(STATUSES)}, got {status[:40]!r}", "status")
    return {"runs": [r.__dict__ for r in await ops.history(limit, status)]}


# ------------------------------------------------------------ schedules


async def list_schedules(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return {"schedules": await ops.schedules()}


async def get_schedule(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.schedule(_name(request), _query(request, OP["get_schedule"], "count"))


async def put_schedule(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    s = await ops.put_schedule(name, body["schedule"], caller.identity)
    return {"name": name, "trigger": s.describe(), "paused": s.paused}


async def delete_schedule(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    await ops.delete_schedule(name)
    return {"name": name, "deleted": True}


async def pause_schedule(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.pause_schedule(_name(request), True, caller.identity)


async def resume_schedule(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.pause_schedule(_name(request), False, caller.identity)


async def schedule_next(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    count = _query(request, OP["schedule_next"], "count")
    return {"name": _name(request), "next": await ops.schedule_next(_name(request), count)}


# ---------------------------------------------------------------- monkeys


async def list_monkeys(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return {"monkeys": await MonkeyOps(ops.svc).list()}


async def get_monkey(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await MonkeyOps(ops.svc).get(_name(request))


async def monkey_plan(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    raw = str(request.path_params["day"])
    try:
        day = date.fromisoformat(raw) if DAY.fullmatch(raw) else None
    except ValueError:
        day = None
    if day is None:
        raise Invalid(f"day must be a date YYYY-MM-DD, got {raw[:40]!r}", "day")
    return (await MonkeyOps(ops.svc).get(_name(request), day, kills=0))["plan"]


async def put_monkey(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    m = await MonkeyOps(ops.svc).put(name, body["monkey"], caller.identity)
    return {"name": name, "paused": m.paused, "actions": [a.describe() for a in m.actions]}


# -------------------------------------------------------------- game days


async def start_gameday(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await GameDayOps(ops.svc).start(body["plan"], caller.identity)


async def gameday_dry_run(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await GameDayOps(ops.svc).dry_run(body["plan"])


async def list_gamedays(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return {"gamedays": await GameDayOps(ops.svc).list()}


async def get_gameday(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await GameDayOps(ops.svc).get(_gameday_id(request))


async def control_gameday(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    action = str(request.path_params["action"])
    return await GameDayOps(ops.svc).control(_gameday_id(request), action, caller.identity)


async def note_gameday(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    gid = _gameday_id(request)
    return await GameDayOps(ops.svc).note(gid, str(body["text"]), caller.identity)


async def gameday_report(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return (await GameDayOps(ops.svc).report(_gameday_id(request))).as_dict()


async def maturity(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await ops.maturity(_query(request, OP["maturity"], "days"))


async def pause_monkey(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await MonkeyOps(ops.svc).pause(_name(request), True, caller.identity)


async def resume_monkey(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return await MonkeyOps(ops.svc).pause(_name(request), False, caller.identity)


async def delete_monkey(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    name = _name(request)
    await MonkeyOps(ops.svc).delete(name)
    return {"name": name, "deleted": True}


# ----------------------------------------------------------- kill switch


async def kill_switch(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    return (await ops.kill_switch()).as_dict()


async def set_kill_switch(ops: Operations, request: Request, caller: Caller, body: Any) -> Any:
    if body["engaged"]:
        return await ops.engage(str(body.get("reason", "")), caller.identity)
    return await ops.disengage(caller.identity)


EXPERIMENT = Field((dict,), True, "the experiment document (as its YAML/JSON file holds it)")
LIMIT = "how many runs, newest first"
OPS: list[Op] = [
    Op("GET", "/fleet", Role.VIEWER,
       "The inventory's agents, a page at a time, with their last GetInfo and counts by"
       " state, zone and version over all that match", fleet,
       queries=(Query("page", 1, 1, 1_000_000, "the page, from 1"),
                Query("per_page", 100, 1, 1000, "agents per page"))),
    Op("GET", "/replicas", Role.VIEWER,
       "The controller replicas on this store: heartbeat age, lost or not, and the runs each"
       " drives", replicas),
    Op("GET", "/experiments", Role.VIEWER, "Stored experiments", list_experiments),
    Op("GET", "/monkeys", Role.VIEWER, "Every monkey", list_monkeys),
    Op("PUT", "/monkeys/{name}", Role.OPERATOR, "Validate and store a monkey", put_monkey,
       {"monkey": Field((dict,), True, "the monkey (as its YAML/JSON holds it)")},
       errors=(409,)),
    Op("GET", "/monkeys/{name}", Role.VIEWER,
       "A monkey, today's draw (groups, kill times, usable members and why not) and its"
       " tracker", get_monkey, errors=(404,)),
    Op("GET", "/monkeys/{name}/plan/{day}", Role.VIEWER,
       "A day's draw, touching nothing (brownout monkey plan --day)", monkey_plan,
       errors=(404,)),
    Op("POST", "/monkeys/{name}/pause", Role.OPERATOR, "Pause a monkey: it draws no kills",
       pause_monkey, errors=(404,)),
    Op("POST", "/monkeys/{name}/resume", Role.OPERATOR, "Resume a paused monkey",
       resume_monkey, errors=(404,)),
    Op("DELETE", "/monkeys/{name}", Role.OPERATOR, "Remove a monkey", delete_monkey,
       errors=(404, 409)),
    Op("POST", "/experiments/validate", Role.VIEWER, "Validate an experiment, store nothing",
       validate, {"experiment": EXPERIMENT}),
    Op("PUT", "/experiments/{name}", Role.OPERATOR, "Validate and store an experiment",
       put_experiment, {"experiment": EXPERIMENT}),
    Op("GET", "/experiments/{name}", Role.VIEWER, "One stored experiment", get_experiment,
       errors=(404,)),
    Op("DELETE", "/experiments/{name}", Role.OPERATOR, "Forget a stored experiment",
       delete_experiment, errors=(404,)),
    Op("POST", "/experiments/{name}/dry-run", Role.OPERATOR,
       "Resolve targets, check the agents, run the before-hypothesis; inject nothing", dry_run,
       errors=(404,)),
    Op("POST", "/runs", Role.OPERATOR, "Start a run of a stored (by name) or inline experiment",
       start_run,
       {
           "experiment": Field((str, dict), True, "a stored experiment's name, or a document"),
           "seed": Field((int,), False, "seed for the random target pick, 0 to 2**63-1"),
           "override_window": Field((bool,), False, "run outside the experiment's window"),
       },
       status=202, errors=(404, 409)),
    Op("GET", "/runs", Role.VIEWER, "This controller's runs, newest first, then the history",
       list_runs, queries=(Query("limit", 20, 1, 1000, LIMIT),)),
    Op("GET", "/runs/{run_id}", Role.VIEWER, "A run's journal (live while it runs)", get_run,
       errors=(404,)),
    Op("POST", "/runs/{run_id}/abort", Role.OPERATOR, "Abort a live run: revert everything",
       abort_run, {"reason": Field((str,), False, "recorded in the journal")},
       errors=(404, 409)),
    Op("GET", "/runs/{run_id}/report", Role.VIEWER,
       "A run's report as figures: recovery, availability, resilience score, findings"
       " (the console serves it as HTML)", run_report, errors=(404,)),
    Op("POST", "/runs/{run_id}/notes", Role.OPERATOR,
       "Add a timestamped note to a live run's timeline (brownout note)", note_run,
       {"text": Field((str,), True, "the observation, at most 2000 characters")},
       errors=(404, 409)),
    Op("GET", "/runs/{run_id}/events", Role.VIEWER,
       "The run's progress as server-sent events (ends with event: end)", run_events,
       queries=(Query("after", 0, 0, 2**62, "resume after this event id"),), errors=(404,)),
    Op("GET", "/history", Role.VIEWER, "Past runs from the history", history,
       queries=(Query("limit", 20, 1, 100_000, LIMIT),)),
    Op("GET", "/schedules", Role.VIEWER, "Every schedule with its next occurrence",
       list_schedules),
    Op("PUT", "/schedules/{name}", Role.OPERATOR, "Validate and store a schedule", put_schedule,
       {"schedule": Field((dict,), True, "the schedule (as its YAML/JSON holds it)")},
       errors=(409,)),
    Op("GET", "/schedules/{name}", Role.VIEWER,
       "A schedule, its next occurrences (would each run, and why not) and what became of"
       " its past ones", get_schedule,
       queries=(Query("count", 10, 1, 1000, "how many next occurrences"),), errors=(404,)),
    Op("DELETE", "/schedules/{name}", Role.OPERATOR, "Remove a schedule", delete_schedule,
       errors=(404, 409)),
    Op("POST", "/schedules/{name}/pause", Role.OPERATOR, "Pause a schedule", pause_schedule,
       errors=(404,)),
    Op("POST", "/schedules/{name}/resume", Role.OPERATOR, "Resume a paused schedule",
       resume_schedule, errors=(404,)),
    Op("GET", "/schedules/{name}/next", Role.VIEWER,
       "The next occurrences, and which would be skipped and why", schedule_next,
       queries=(Query("count", 10, 1, 1000, "how many"),), errors=(404,)),
    Op("POST", "/gamedays", Role.OPERATOR,
       "Start a game day from its plan: the scenarios run in order at their offsets",
       start_gameday, {"plan": Field((dict,), True, "the game-day plan (as its YAML holds it)")},
       status=201, errors=(409,)),
    Op("POST", "/gamedays/dry-run", Role.VIEWER,
       "A plan's schedule in wall-clock time, each experiment and criterion checked, and each"
       " experiment's dry run on the fleet; nothing runs", gameday_dry_run,
       {"plan": Field((dict,), True, "the game-day plan")}),
    Op("GET", "/gamedays", Role.VIEWER, "The game days, newest first", list_gamedays),
    Op("GET", "/gamedays/{gameday_id}", Role.VIEWER,
       "A game day and each scenario's live state, run and verdicts", get_gameday,
       errors=(404,)),
    Op("POST", "/gamedays/{gameday_id}/notes", Role.OPERATOR,
       "The scribe's timestamped note for the game day (brownout gameday note)", note_gameday,
       {"text": Field((str,), True, "the observation, at most 2000 characters")},
       errors=(404, 409)),
    Op("POST", "/gamedays/{gameday_id}/{action}", Role.OPERATOR,
       "The commander's controls: pause, resume, advance, skip, abort", control_gameday,
       errors=(404, 409)),
    Op("GET", "/gamedays/{gameday_id}/report", Role.VIEWER,
       "The game day's report as figures: criteria, timeline, MTTR, availability, findings"
       " (the console serves it as HTML)", gameday_report, errors=(404,)),
    Op("GET", "/maturity", Role.VIEWER,
       "The team's level on the practice's maturity model, each level's evidence and the"
       " next step (brownout maturity)", maturity,
       queries=(Query("days", WINDOW_DAYS, 1, 3660, "the window weighed, in days"),)),
    Op("GET", "/kill-switch", Role.VIEWER, "Whether the kill switch is engaged", kill_switch),
    Op("POST", "/kill-switch", Role.OPERATOR,
       "Engage (reverts every fault on every agent, latched; aborts every run) or disengage",
       set_kill_switch,
       {
           "engaged": Field((bool,), True, "true to engage, false to disengage"),
           "reason": Field((str,), False, "required to engage"),
       }),
]  # fmt: skip
OP = {op.handler.__name__: op for op in OPS}
# Query parameters that are not integers, by operation.
# Text queries by handler: their allowed values, or None for free text that
# the handler checks (a label selector).
TEXT_QUERIES: dict[str, dict[str, tuple[str, ...] | None]] = {
    "history": {"status": STATUSES},
    "fleet": {"state": FLEET_STATES, "selector": None},
}


async def _no_body(request: Request) -> None:
    if (await read_body(request)).strip():
        raise Invalid("this operation takes no request body")


def _check_path(request: Request, op: Op) -> None:
    """Path parameters first: a bad name is named, whatever the body."""
    if "name" in op.path_params:
        _name(request)
    if "run_id" in op.path_params:
        _run_id(request)


def _check_queries(request: Request, op: Op) -> None:
    known = {q.name for q in op.queries} | set(TEXT_QUERIES.get(op.handler.__name__, ()))
    for name in request.query_params:
        if name not in known:
            listed = ", ".join(sorted(known)) or "none"
            raise Invalid(f"unknown query parameter {name!r} (known: {listed})", name)


def endpoint(ops: Operations, op: Op) -> Callable[[Request], Awaitable[Response]]:
    async def call(request: Request) -> Response:
        caller: Caller | None = None
        try:
            caller = authorize(request, ops.svc.tokens, op.role, ops.svc.cert_roles)
            _check_path(request, op)
            _check_queries(request, op)
            if op.body is not None:
                body = await json_body(request, op.body)
            else:
                await _no_body(request)
                body = {}
            result = await op.handler(ops, request, caller, body)
            response = result if isinstance(result, Response) else JSONResponse(result, op.status)
        except ServiceError as exc:
            response = error_response(exc)
            if isinstance(exc, Forbidden) and exc.caller is not None:
                caller = exc.caller
        if op.mutating:
            audit(caller, request, response.status_code, "api")
        return response

    return call


def _param_schema(name: str) -> dict[str, Any]:
    pattern = {"name": NAME.pattern, "day": DAY.pattern}.get(name, RUN_ID.pattern)
    return {"type": "string", "pattern": f"^{pattern}$"}


def _responses(op: Op) -> dict[str, Any]:
    ok = "server-sent events" if op.handler is run_events else "JSON"
    out: dict[str, Any] = {str(op.status): {"description": f"OK ({ok})"}}
    error = {"description": "JSON {error, status, field?}", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}  # fmt: skip
    for code in sorted({400, 401, 403, *op.errors, *((413,) if op.body else ())}):
        out[str(code)] = error
    return out


def openapi() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for op in OPS:
        entry: dict[str, Any] = {
            "operationId": op.handler.__name__,
            "summary": op.summary,
            "security": [{"bearer": []}],
            "x-brownout-role": str(op.role),
            "responses": _responses(op),
        }
        params: list[dict[str, Any]] = [
            {"name": p, "in": "path", "required": True, "schema": _param_schema(p)}
            for p in op.path_params
        ]
        for q in op.queries:
            params.append({"name": q.name, "in": "query", "required": False,
                           "description": q.description, "schema": {
                               "type": "integer", "minimum": q.lo, "maximum": q.hi,
                               "default": q.default}})  # fmt: skip
        for name, values in TEXT_QUERIES.get(op.handler.__name__, {}).items():
            schema: dict[str, Any] = {"type": "string"}
            if values is not None:
                schema["enum"] = list(values)
            params.append({"name": name, "in": "query", "required": False, "schema": schema})
        if params:
            entry["parameters"] = params
        if op.body:
            props: dict[str, Any] = {}
            for n, f in op.body.items():
                types = f.type if isinstance(f.type, tuple) else (f.type,)
                kinds = [{"type": json_type(t)} for t in types]
                prop: dict[str, Any] = kinds[0] if len(kinds) == 1 else {"oneOf": kinds}
                props[n] = {**prop, "description": f.description}
            if "seed" in props:
                props["seed"].update(minimum=0, maximum=SEED_MAX)
            required = [n for n, f in op.body.items() if f.required]
            entry["requestBody"] = {
                "required": bool(required),
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "properties": props,
                            "required": required,
                            "additionalProperties": False,
                        }
                    }
                },
            }
        paths.setdefault(f"/api/v1{op.path}", {})[op.method.lower()] = entry
    return {
        "openapi": "3.1.0",
        "info": {"title": "Brownout controller", "version": "v1"},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "status"],
                    "properties": {
                        "error": {"type": "string"},
                        "status": {"type": "integer"},
                        "field": {"type": "string"},
                    },
                }
            },
        },
        "paths": paths,
    }


def routes(svc: Service) -> list[Route]:
    ops = Operations(svc)
    # One route per path, so a 405 lists every method the path allows.
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for op in OPS:
        by_path.setdefault(op.path, {})[op.method] = endpoint(ops, op)

    def dispatch(
        methods: dict[str, Callable[[Request], Awaitable[Response]]],
    ) -> Callable[[Request], Awaitable[Response]]:
        async def call(request: Request) -> Response:
            method = "GET" if request.method == "HEAD" else request.method
            return await methods[method](request)

        return call

    table = [
        Route(f"/api/v1{path}", dispatch(methods), methods=list(methods))
        for path, methods in by_path.items()
    ]
    doc = openapi()

    async def openapi_json(request: Request) -> Response:
        return JSONResponse(doc)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"ok": True, "kill_switch": (await ops.kill_switch()).engaged})

    return [*table, Route("/api/v1/openapi.json", openapi_json), Route("/healthz", healthz)]
