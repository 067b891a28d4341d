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
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import yaml
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from controller.gamedays import report as gd_report
from controller.practice.maturity import WINDOW_DAYS
from controller.reports import render
from controller.service.audit import audit
from controller.service.auth import Caller, Role
from controller.service.errors import Invalid, ServiceError, status_of
from controller.service.fleet_view import STATES as FLEET_STATES
from controller.service.gameday_ops import GameDayOps
from controller.service.http import read_body
from controller.service.monkey_ops import MonkeyOps
from controller.service.operations import SEED_MAX, Operations
from controller.service.state import Service

HERE = Path(__file__).parent
FLEET_PAGE = 200  # agents per page of the fleet page
COOKIE = "brownout_token"
templates = Jinja2Templates(directory=str(HERE / "templates"))
TITLES = {
    400: "Not accepted",
    403: "Not allowed",
    404: "Not found",
    409: "Not now",
    413: "Too large",
}


def csrf(token: str) -> str:
    return hmac.new(token.encode(), b"brownout-console-csrf", hashlib.sha256).hexdigest()


async def _form(request: Request) -> dict[str, str]:
    """An urlencoded form (all the console sends), read within the body limit."""
    raw = await read_body(request)
    try:
        pairs = parse_qsl(raw.decode(), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Invalid("the form is not urlencoded text") from None
    return dict(pairs)


@dataclass(frozen=True)
class Who:
    """The signed-in caller of a console request, and for a POST its form."""

    caller: Caller
    token: str
    form: dict[str, str]


Page = Callable[[Request, Who], Awaitable[Response]]


class Console:
    def __init__(self, svc: Service) -> None:
        self.svc = svc
        self.ops = Operations(svc)

    async def page(
        self, request: Request, name: str, who: Who | None, status: int = 200, **context: Any
    ) -> Response:
        ks = await self.ops.kill_switch()
        return templates.TemplateResponse(
            request,
            name,
            {
                "caller": who.caller if who else None,
                "operator": who is not None and who.caller.role is Role.OPERATOR,
                "csrf": csrf(who.token) if who else "",
                "kill_switch": ks,
                **context,
            },
            status_code=status,
        )

    async def message(
        self, request: Request, who: Who | None, status: int, title: str, message: str
    ) -> Response:
        return await self.page(request, "message.html", who, status, title=title, message=message)

    def signed_in(self, handler: Page, role: Role = Role.VIEWER, post: bool = False) -> Any:
        """The one guard of every console page and action: signed in (else to
        the sign-in page), the role, and for a POST the form and its CSRF
        value; a POST is audited like an API call, whatever its outcome."""

        async def endpoint(request: Request) -> Response:
            token = request.cookies.get(COOKIE, "")
            caller = self.svc.tokens.caller(token) if token else None
            if caller is None:
                response: Response = RedirectResponse(
                    f"/console/login?next={request.url.path}", status_code=303
                )
                if post:
                    audit(None, request, 401, "console")
                return response
            who = Who(caller, token, {})
            try:
                if role is Role.OPERATOR and caller.role is not Role.OPERATOR:
                    response = await self.message(
                        request, who, 403, "Not allowed",
                        "This needs the operator role; you are signed in as a viewer.",
                    )  # fmt: skip
                elif post:
                    who = Who(caller, token, await _form(request))
                    if not hmac.compare_digest(who.form.get("csrf", ""), csrf(token)):
                        response = await self.message(
                            request, who, 403, "Form expired",
                            "The form's check value is wrong; reload the page.",
                        )  # fmt: skip
                    else:
                        response = await handler(request, who)
                else:
                    response = await handler(request, who)
            except ServiceError as exc:
                code = status_of(exc)
                title = TITLES.get(code, "Not accepted")
                response = await self.message(request, who, code, title, exc.message)
            if post:
                audit(caller, request, response.status_code, "console")
            return response

        return endpoint

    # --------------------------------------------------------------- pages

    async def login(self, request: Request) -> Response:
        nxt = request.query_params.get("next", "/console/")
        if request.method == "GET":
            return await self.page(request, "login.html", None, next=nxt)
        try:
            form = await _form(request)
        except ServiceError as exc:
            return await self.page(
                request, "login.html", None, status_of(exc), next=nxt, error=exc.message
            )
        token = form.get("token", "").strip()
        if not token or self.svc.tokens.caller(token) is None:
            return await self.page(
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

    async def fleet(self, request: Request, who: Who) -> Response:
        q = request.query_params
        raw_page = q.get("page", "1")
        if not raw_page.isdigit() or int(raw_page) < 1:
            raise Invalid(f"page must be a whole number from 1, got {raw_page[:40]!r}", "page")
        state = q.get("state", "")  # checked by ops.fleet
        selector = q.get("selector", "")
        view = await self.ops.fleet(selector, state, int(raw_page), FLEET_PAGE)
        replicas = await self.ops.replicas()
        return await self.page(request, "fleet.html", who, view=view, agents=view["agents"],
                               replicas=replicas, selector=selector, state=state,
                               states=FLEET_STATES)  # fmt: skip

    async def runs(self, request: Request, who: Who) -> Response:
        runs = await self.ops.runs(50)
        experiments = await self.ops.experiments()
        return await self.page(request, "runs.html", who, runs=runs, experiments=experiments)

    async def start(self, request: Request, who: Who) -> Response:
        raw_seed = who.form.get("seed", "").strip()
        if raw_seed and not raw_seed.isdigit():
            raise Invalid(f"seed must be a whole number from 0 to {SEED_MAX}", "seed")
        run = await self.ops.start(
            who.form.get("experiment", ""),
            who.caller.identity,
            int(raw_seed) if raw_seed else None,
            who.form.get("override_window") == "yes",
        )
        return RedirectResponse(f"/console/runs/{run.run_id}", status_code=303)

    async def run(self, request: Request, who: Who) -> Response:
        run_id = str(request.path_params["run_id"])
        journal = await self.ops.journal(run_id)
        ext = next(e for e in journal.get("extensions", []) if e.get("name") == "brownout")
        live = self.svc.runs.get(run_id)
        name = "run_panel.html" if request.query_params.get("panel") else "run.html"
        return await self.page(
            request,
            name,
            who,
            run_id=run_id,
            journal=journal,
            b=ext,
            live=live is not None and not live.done.is_set(),
            events=[e.as_dict() for e in live.events.since(0)] if live else [],
        )

    async def journal(self, request: Request, who: Who) -> Response:
        run_id = str(request.path_params["run_id"])
        journal = await self.ops.journal(run_id)
        text = json.dumps(journal, indent=2, default=str)
        return await self.page(request, "journal.html", who, run_id=run_id, text=text)

    async def report(self, request: Request, who: Who) -> Response:
        """The run's report: the same self-contained file `brownout report` writes."""
        report = await self.ops.report(str(request.path_params["run_id"]))
        return HTMLResponse(await asyncio.to_thread(render.html, report))

    async def abort(self, request: Request, who: Who) -> Response:
        run_id = str(request.path_params["run_id"])
        await self.ops.abort(
            run_id, who.caller.identity, who.form.get("reason") or "from the console"
        )
        return RedirectResponse(f"/console/runs/{run_id}", status_code=303)

    async def note(self, request: Request, who: Who) -> Response:
        run_id = str(request.path_params["run_id"])
        await self.ops.note(run_id, who.form.get("text", ""), who.caller.identity)
        return RedirectResponse(f"/console/runs/{run_id}", status_code=303)

    async def schedules(self, request: Request, who: Who) -> Response:
        return await self.page(request, "schedules.html", who, schedules=await self.ops.schedules())

    async def schedule(self, request: Request, who: Who) -> Response:
        s = await self.ops.schedule(str(request.path_params["name"]), 20)
        return await self.page(request, "schedule.html", who, s=s)

    async def pause(self, request: Request, who: Who) -> Response:
        name = str(request.path_params["name"])
        paused = request.url.path.endswith("/pause")
        await self.ops.pause_schedule(name, paused, who.caller.identity)
        return RedirectResponse(f"/console/schedules/{name}", status_code=303)

    async def gamedays(self, request: Request, who: Who) -> Response:
        days = await GameDayOps(self.svc).list()
        return await self.page(request, "gamedays.html", who, gamedays=days)

    async def gameday(self, request: Request, who: Who) -> Response:
        g = await GameDayOps(self.svc).get(str(request.path_params["gameday_id"]))
        return await self.page(request, "gameday.html", who, g=g)

    async def gameday_start(self, request: Request, who: Who) -> Response:
        try:
            plan = yaml.safe_load(who.form.get("plan", ""))
        except yaml.YAMLError as exc:
            raise Invalid(f"the plan is not YAML: {exc}", "plan") from None
        g = await GameDayOps(self.svc).start(plan, who.caller.identity)
        return RedirectResponse(f"/console/gamedays/{g['id']}", status_code=303)

    async def gameday_note(self, request: Request, who: Who) -> Response:
        gid = str(request.path_params["gameday_id"])
        await GameDayOps(self.svc).note(gid, who.form.get("text", ""), who.caller.identity)
        return RedirectResponse(f"/console/gamedays/{gid}", status_code=303)

    async def gameday_control(self, request: Request, who: Who) -> Response:
        gid, action = str(request.path_params["gameday_id"]), str(request.path_params["action"])
        await GameDayOps(self.svc).control(gid, action, who.caller.identity)
        return RedirectResponse(f"/console/gamedays/{gid}", status_code=303)

    async def gameday_report(self, request: Request, who: Who) -> Response:
        d = await GameDayOps(self.svc).report(str(request.path_params["gameday_id"]))
        return HTMLResponse(await asyncio.to_thread(gd_report.html, d))

    async def maturity(self, request: Request, who: Who) -> Response:
        return await self.page(
            request, "maturity.html", who, m=await self.ops.maturity(WINDOW_DAYS)
        )

    async def monkeys(self, request: Request, who: Who) -> Response:
        monkeys = await MonkeyOps(self.svc).list()
        return await self.page(request, "monkeys.html", who, monkeys=monkeys)

    async def monkey(self, request: Request, who: Who) -> Response:
        m = await MonkeyOps(self.svc).get(str(request.path_params["name"]), kills=50)
        return await self.page(request, "monkey.html", who, m=m)

    async def pause_monkey(self, request: Request, who: Who) -> Response:
        name = str(request.path_params["name"])
        paused = request.url.path.endswith("/pause")
        await MonkeyOps(self.svc).pause(name, paused, who.caller.identity)
        return RedirectResponse(f"/console/monkeys/{name}", status_code=303)

    async def confirm(self, request: Request, who: Who) -> Response:
        reason = who.form.get("reason", "").strip()
        if not reason:
            return await self.message(
                request, who, 400, "A reason is needed",
                "Say why you engage the kill switch; it is recorded.",
            )  # fmt: skip
        back = who.form.get("back", "/console/")
        return await self.page(request, "confirm.html", who, reason=reason, back=back)

    async def engage(self, request: Request, who: Who) -> Response:
        if who.form.get("confirm") != "yes":
            raise Invalid("The kill switch needs a reason and the confirmation.", "confirm")
        result = await self.ops.engage(who.form.get("reason", ""), who.caller.identity)
        return await self.page(request, "engaged.html", who, result=result)

    async def disengage(self, request: Request, who: Who) -> Response:
        await self.ops.disengage(who.caller.identity)
        return RedirectResponse("/console/", status_code=303)


def routes(svc: Service) -> list[Route | Mount]:
    c = Console(svc)
    view, op = Role.VIEWER, Role.OPERATOR

    async def home(request: Request) -> Response:
        return RedirectResponse("/console/", status_code=303)

    def action(handler: Page) -> Any:
        return c.signed_in(handler, op, post=True)

    return [
        Route("/", home),
        Route("/console/", c.signed_in(c.fleet, view)),
        Route("/console/login", c.login, methods=["GET", "POST"]),
        Route("/console/logout", c.logout, methods=["POST"]),
        Route("/console/runs", c.signed_in(c.runs, view)),
        Route("/console/runs/start", action(c.start), methods=["POST"]),
        Route("/console/runs/{run_id}", c.signed_in(c.run, view)),
        Route("/console/runs/{run_id}/journal", c.signed_in(c.journal, view)),
        Route("/console/runs/{run_id}/abort", action(c.abort), methods=["POST"]),
        Route("/console/runs/{run_id}/notes", action(c.note), methods=["POST"]),
        Route("/console/runs/{run_id}/report", c.signed_in(c.report, view)),
        Route("/console/schedules", c.signed_in(c.schedules, view)),
        Route("/console/schedules/{name}", c.signed_in(c.schedule, view)),
        Route("/console/schedules/{name}/pause", action(c.pause), methods=["POST"]),
        Route("/console/schedules/{name}/resume", action(c.pause), methods=["POST"]),
        Route("/console/maturity", c.signed_in(c.maturity, view)),
        Route("/console/gamedays", c.signed_in(c.gamedays, view)),
        Route("/console/gamedays/start", action(c.gameday_start), methods=["POST"]),
        Route("/console/gamedays/{gameday_id}", c.signed_in(c.gameday, view)),
        Route("/console/gamedays/{gameday_id}/notes", action(c.gameday_note), methods=["POST"]),
        Route("/console/gamedays/{gameday_id}/report", c.signed_in(c.gameday_report, view)),
        Route(
            "/console/gamedays/{gameday_id}/{action}", action(c.gameday_control), methods=["POST"]
        ),
        Route("/console/monkeys", c.signed_in(c.monkeys, view)),
        Route("/console/monkeys/{name}", c.signed_in(c.monkey, view)),
        Route("/console/monkeys/{name}/pause", action(c.pause_monkey), methods=["POST"]),
        Route("/console/monkeys/{name}/resume", action(c.pause_monkey), methods=["POST"]),
        Route("/console/kill-switch/confirm", action(c.confirm), methods=["POST"]),
        Route("/console/kill-switch/engage", action(c.engage), methods=["POST"]),
        Route("/console/kill-switch/disengage", action(c.disengage), methods=["POST"]),
        Mount("/console/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
