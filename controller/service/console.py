"""The web console of `brownout serve`, server-rendered for the people who run
a game day: the fleet, the runs with a live view of each, a run's journal,
and the kill switch on every page (for operators; a viewer sees its state).

No CDN and no build step: the templates and the one stylesheet and script
are in the package. It works without JavaScript (the live view then has a
refresh link); with it, the live view follows the run's event stream.

Sign-in stores the API token in an HttpOnly, SameSite=Strict cookie; every
form also carries a CSRF value derived from the token, checked on POST.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from controller.experiments.history import NotFound
from controller.service.auth import Caller, Role
from controller.service.http import ApiError, read_body
from controller.service.runs import Refused
from controller.service.state import Service

HERE = Path(__file__).parent
COOKIE = "brownout_token"
templates = Jinja2Templates(directory=str(HERE / "templates"))


def csrf(token: str) -> str:
    return hmac.new(token.encode(), b"brownout-console-csrf", hashlib.sha256).hexdigest()


def _caller(svc: Service, request: Request) -> tuple[Caller, str] | None:
    token = request.cookies.get(COOKIE, "")
    caller = svc.tokens.caller(token) if token else None
    return None if caller is None else (caller, token)


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (all the console sends), read within the body limit."""
    raw = await read_body(request)
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        return {}
    return dict(pairs)


class Console:
    def __init__(self, svc: Service) -> None:
        self.svc = svc

    def page(
        self,
        request: Request,
        name: str,
        who: tuple[Caller, str] | None,
        status: int = 200,
        **context: Any,
    ) -> Response:
        caller, token = who if who else (None, "")
        ks = self.svc.lever.state()
        return templates.TemplateResponse(
            request,
            name,
            {
                "caller": caller,
                "operator": caller is not None and caller.role is Role.OPERATOR,
                "csrf": csrf(token) if token else "",
                "kill_switch": ks,
                **context,
            },
            status_code=status,
        )

    def _guard(self, request: Request, operator: bool = False) -> tuple[Caller, str] | Response:
        who = _caller(self.svc, request)
        if who is None:
            return RedirectResponse(f"/console/login?next={request.url.path}", status_code=303)
        if operator and who[0].role is not Role.OPERATOR:
            return self.page(
                request,
                "message.html",
                who,
                403,
                title="Not allowed",
                message="This needs the operator role; you are signed in as a viewer.",
            )
        return who

    async def _post(self, request: Request) -> tuple[tuple[Caller, str], dict[str, str]] | Response:
        who = self._guard(request, operator=True)
        if isinstance(who, Response):
            return who
        try:
            form = await _form(request)
        except ApiError as exc:
            return self.page(
                request, "message.html", who, exc.status, title="Not accepted", message=exc.message
            )
        if not hmac.compare_digest(form.get("csrf", ""), csrf(who[1])):
            return self.page(
                request,
                "message.html",
                who,
                403,
                title="Form expired",
                message="The form's check value is wrong; reload the page.",
            )
        return who, form

    # --------------------------------------------------------------- pages

    async def login(self, request: Request) -> Response:
        nxt = request.query_params.get("next", "/console/")
        if request.method == "GET":
            return self.page(request, "login.html", None, next=nxt)
        try:
            form = await _form(request)
        except ApiError as exc:
            return self.page(request, "login.html", None, exc.status, next=nxt, error=exc.message)
        token = form.get("token", "").strip()
        if not token or self.svc.tokens.caller(token) is None:
            return self.page(
                request,
                "login.html",
                None,
                401,
                next=nxt,
                error="That token is not known to this controller.",
            )
        target = nxt if nxt.startswith("/console/") else "/console/"
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https"
        )
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/console/login", status_code=303)
        response.delete_cookie(COOKIE)
        return response

    async def fleet(self, request: Request) -> Response:
        who = self._guard(request)
        if isinstance(who, Response):
            return who
        agents = await asyncio.to_thread(self.svc.fleet_status)
        return self.page(request, "fleet.html", who, agents=agents)

    async def runs(self, request: Request) -> Response:
        who = self._guard(request)
        if isinstance(who, Response):
            return who
        runs = await asyncio.to_thread(self.svc.run_list, 50)
        experiments = await asyncio.to_thread(self.svc.store.experiments)
        return self.page(request, "runs.html", who, runs=runs, experiments=experiments)

    async def start(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        who, form = got
        try:
            e = self.svc.resolve_experiment(form.get("experiment", ""))
            run = await asyncio.to_thread(self.svc.runs.start, e, who[0].identity)
        except (ApiError, Refused) as exc:
            msg = exc.message if isinstance(exc, ApiError) else str(exc)
            return self.page(request, "message.html", who, 409, title="Not started", message=msg)
        return RedirectResponse(f"/console/runs/{run.run_id}", status_code=303)

    def _run_context(self, run_id: str) -> dict[str, Any]:
        journal = self.svc.run_journal(run_id)
        ext = next(e for e in journal.get("extensions", []) if e.get("name") == "brownout")
        live = self.svc.runs.get(run_id)
        return {
            "run_id": run_id,
            "journal": journal,
            "b": ext,
            "live": live is not None and not live.done.is_set(),
            "events": [e.as_dict() for e in live.events.since(0)] if live else [],
        }

    def _no_run(self, request: Request, who: tuple[Caller, str], run_id: str) -> Response:
        return self.page(
            request,
            "message.html",
            who,
            404,
            title="No such run",
            message=f"No run {run_id} on this controller.",
        )

    async def run(self, request: Request) -> Response:
        who = self._guard(request)
        if isinstance(who, Response):
            return who
        run_id = str(request.path_params["run_id"])
        try:
            ctx = await asyncio.to_thread(self._run_context, run_id)
        except NotFound:
            return self._no_run(request, who, run_id)
        name = "run_panel.html" if request.query_params.get("panel") else "run.html"
        return self.page(request, name, who, **ctx)

    async def journal(self, request: Request) -> Response:
        who = self._guard(request)
        if isinstance(who, Response):
            return who
        run_id = str(request.path_params["run_id"])
        try:
            journal = await asyncio.to_thread(self.svc.run_journal, run_id)
        except NotFound:
            return self._no_run(request, who, run_id)
        text = json.dumps(journal, indent=2, default=str)
        return self.page(request, "journal.html", who, run_id=run_id, text=text)

    async def abort(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        who, form = got
        run_id = str(request.path_params["run_id"])
        reason = f"aborted by {who[0].identity}: {form.get('reason') or 'from the console'}"
        self.svc.runs.abort(run_id, reason)
        return RedirectResponse(f"/console/runs/{run_id}", status_code=303)

    async def confirm(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        who, form = got
        reason = form.get("reason", "").strip()
        if not reason:
            return self.page(
                request,
                "message.html",
                who,
                400,
                title="A reason is needed",
                message="Say why you engage the kill switch; it is recorded.",
            )
        return self.page(
            request, "confirm.html", who, reason=reason, back=form.get("back", "/console/")
        )

    async def engage(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        who, form = got
        if form.get("confirm") != "yes" or not form.get("reason", "").strip():
            return self.page(
                request,
                "message.html",
                who,
                400,
                title="Not engaged",
                message="The kill switch needs a reason and the confirmation.",
            )
        result = await asyncio.to_thread(
            self.svc.lever.engage, form["reason"].strip(), who[0].identity
        )
        return self.page(request, "engaged.html", who, result=result)

    async def disengage(self, request: Request) -> Response:
        got = await self._post(request)
        if isinstance(got, Response):
            return got
        who, _ = got
        await asyncio.to_thread(self.svc.lever.disengage, who[0].identity)
        return RedirectResponse("/console/", status_code=303)


def routes(svc: Service) -> list[Route | Mount]:
    c = Console(svc)

    async def home(request: Request) -> Response:
        return RedirectResponse("/console/", status_code=303)

    return [
        Route("/", home),
        Route("/console/", c.fleet),
        Route("/console/login", c.login, methods=["GET", "POST"]),
        Route("/console/logout", c.logout, methods=["POST"]),
        Route("/console/runs", c.runs),
        Route("/console/runs/start", c.start, methods=["POST"]),
        Route("/console/runs/{run_id}", c.run),
        Route("/console/runs/{run_id}/journal", c.journal),
        Route("/console/runs/{run_id}/abort", c.abort, methods=["POST"]),
        Route("/console/kill-switch/confirm", c.confirm, methods=["POST"]),
        Route("/console/kill-switch/engage", c.engage, methods=["POST"]),
        Route("/console/kill-switch/disengage", c.disengage, methods=["POST"]),
        Mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
